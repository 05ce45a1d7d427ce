/* tune.c: the tuner. Measures kernel variants per (direction, shape class)
 * on the device, and keeps the winners in a per-device file that every
 * context reads at creation. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned lg2(size_t v)
{
    unsigned l = 0;
    while (v > 1) {
        v >>= 1;
        ++l;
    }
    return l;
}

/* Shape class: direction, walk kind (CLNORM_WALK_*), and the binary
 * magnitudes of the per-channel slice (in pairs of octaves) and of the
 * channel count. Channels-last columns and columns over an inner extent
 * (NCHW with small H*W) are different walks with different best choices: a
 * (32,2048,7,7) tensor and its NHWC form have the same slice and channel
 * count, and the fused kernel that wins for the first is 25 times slower
 * for the second on an H100. */
unsigned clnorm_shape_key(char dir, int walk, size_t slice, size_t channels)
{
    return ((unsigned)(unsigned char)dir << 16) | ((unsigned)(walk == CLNORM_WALK_ROWS) << 15) |
           ((unsigned)(walk == CLNORM_WALK_INNER_COLS) << 14) | ((lg2(slice) / 2) << 8) | lg2(channels);
}

int clnorm_bn_walk(const clnorm_context *ctx, size_t I)
{
    return I >= ctx->tune.rows_min_inner ? CLNORM_WALK_ROWS : I > 1 ? CLNORM_WALK_INNER_COLS : CLNORM_WALK_COLS;
}

clnorm_choice clnorm_lookup_choice(const clnorm_context *ctx, unsigned key)
{
    clnorm_choice none = {-1, 0, 0};
    for (size_t i = 0; i < ctx->ntuned; ++i)
        if (ctx->tuned[i].key == key)
            return ctx->tuned[i].choice;
    return none;
}

static int tuning_path(const clnorm_context *ctx, char *dir, size_t dn, char *path, size_t pn)
{
    if (!clnorm_cache_dir(dir, dn))
        return 0;
    clnorm_hash128 h = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
    clnorm_hash_str(&h, ctx->info.name);
    clnorm_hash_str(&h, ctx->info.vendor);
    clnorm_hash_str(&h, ctx->info.driver_version);
    clnorm_hash_str(&h, ctx->info.platform_version);
    clnorm_hash_str(&h, clnorm_version_string());
    clnorm_hash_str(&h, ctx->tune.cpu_style ? "cpu" : "gpu");
    clnorm_hash_str(&h, "keys-2"); /* the class key layout; files of an older one are not read */
    int w = snprintf(path, pn, "%s/tune-%016llx.txt", dir, (unsigned long long)h.a);
    return w > 0 && (size_t)w < pn;
}

void clnorm_load_tuning(clnorm_context *ctx)
{
    char        dir[4096], path[4200];
    const char *off = getenv("CLNORM_TUNE");
    ctx->ntuned     = 0;
    if ((off && strcmp(off, "0") == 0) || !tuning_path(ctx, dir, sizeof dir, path, sizeof path))
        return;
    size_t         len  = 0;
    unsigned char *data = clnorm_read_file(path, &len);
    if (!data)
        return;
    /* lines: "key fused chunk par"; anything malformed ends the reading */
    char  *text = malloc(len + 1);
    if (text) {
        memcpy(text, data, len);
        text[len] = '\0';
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line && ctx->ntuned < CLNORM_MAX_TUNED;
             line = strtok_r(NULL, "\n", &save)) {
            unsigned           key;
            int                fused;
            unsigned long long chunk, par;
            if (line[0] == '#')
                continue;
            if (sscanf(line, "%u %d %llu %llu", &key, &fused, &chunk, &par) != 4 || fused < -1 ||
                fused > 1 || chunk > ((size_t)1 << 24) || par > ((size_t)1 << 24))
                break;
            clnorm_tuned *t = &ctx->tuned[ctx->ntuned++];
            t->key          = key;
            t->choice.fused = fused;
            t->choice.chunk = (size_t)chunk;
            t->choice.par   = (size_t)par;
        }
        free(text);
    }
    free(data);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One op call the tuner times: a batch norm direction ('f', 'i', 'b'), or
 * layer norm / group norm forward ('l', 'g') or backward ('L', 'G'). */
typedef struct tune_case {
    char                  dir;
    clnorm_bn_desc        bn;
    clnorm_bn_args        bargs;
    clnorm_norm_desc      ln;
    clnorm_groupnorm_desc gn;
    clnorm_norm_args      nargs;
} tune_case;

static clnorm_status run_case(clnorm_context *ctx, const tune_case *c)
{
    cl_command_queue q = ctx->queue;
    clnorm_status    st;
    switch (c->dir) {
    case 'f': st = clnorm_bn_forward_training(ctx, q, &c->bn, &c->bargs, 0, NULL, NULL); break;
    case 'i': st = clnorm_bn_forward_inference(ctx, q, &c->bn, &c->bargs, 0, NULL, NULL); break;
    case 'b': st = clnorm_bn_backward(ctx, q, &c->bn, &c->bargs, 0, NULL, NULL); break;
    case 'l': st = clnorm_layernorm_forward(ctx, q, &c->ln, &c->nargs, 0, NULL, NULL); break;
    case 'L': st = clnorm_layernorm_backward(ctx, q, &c->ln, &c->nargs, 0, NULL, NULL); break;
    case 'g': st = clnorm_groupnorm_forward(ctx, q, &c->gn, &c->nargs, 0, NULL, NULL); break;
    default: st = clnorm_groupnorm_backward(ctx, q, &c->gn, &c->nargs, 0, NULL, NULL); break;
    }
    if (st == CLNORM_SUCCESS) {
        cl_int err = clFinish(q);
        if (err != CL_SUCCESS)
            st = clnorm_fail(ctx, (clnorm_status)err, "clnorm_tune: clFinish failed (%d)", err);
    }
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static clnorm_status time_case(clnorm_context *ctx, const tune_case *c, int reps, double *median)
{
    double        t[16];
    clnorm_status st = run_case(ctx, c);
    for (int i = 0; i < reps && st == CLNORM_SUCCESS; ++i) {
        double t0 = now();
        st        = run_case(ctx, c);
        t[i]      = now() - t0;
    }
    if (st == CLNORM_SUCCESS) {
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        *median = t[reps / 2];
    }
    return st;
}

static void release_all(cl_mem *m, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (m[i])
            clReleaseMemObject(m[i]);
}

/* Creates n buffers of counts[i] floats, filled with 0.5 (1 where i == one). */
static clnorm_status make_buffers(clnorm_context *ctx, cl_mem *m, const size_t *counts, int n, int one)
{
    cl_int err = CL_SUCCESS;
    float  v1 = 1.0f, half = 0.5f;
    for (int i = 0; i < n && err == CL_SUCCESS; ++i) {
        size_t bytes = counts[i] * sizeof(float);
        m[i]         = clCreateBuffer(ctx->clctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err == CL_SUCCESS)
            err = clEnqueueFillBuffer(ctx->queue, m[i], i == one ? &v1 : &half, sizeof(float), 0, bytes, 0,
                                      NULL, NULL);
    }
    if (err == CL_SUCCESS)
        return CLNORM_SUCCESS;
    release_all(m, (size_t)n);
    return clnorm_fail(ctx, (clnorm_status)err, "clnorm_tune: allocating %zu values failed (%d)", counts[0],
                       err);
}

/* Times every candidate (the first is the built-in heuristic), keeps the
 * fastest as the choice for key and reports it after what. */
static clnorm_status measure(clnorm_context *ctx, unsigned key, const tune_case *c,
                             const clnorm_choice *cands, size_t nc, int reps, const char *what,
                             clnorm_report_fn report, void *user)
{
    double        best = INFINITY, heur = 0;
    size_t        besti = 0;
    clnorm_status st    = CLNORM_SUCCESS;
    ctx->forcing        = 1;
    for (size_t i = 0; i < nc && st == CLNORM_SUCCESS; ++i) {
        double t   = 0;
        ctx->force = cands[i];
        st         = time_case(ctx, c, reps, &t);
        if (i == 0)
            heur = t;
        if (st == CLNORM_SUCCESS && t < best) {
            best  = t;
            besti = i;
        }
    }
    ctx->forcing = 0;
    if (st != CLNORM_SUCCESS)
        return st;
    clnorm_tuned *t = &ctx->tuned[ctx->ntuned++];
    t->key          = key;
    t->choice       = cands[besti];
    if (report) {
        /* 0 and -1 in a choice: the heuristic's own value */
        char line[256], chunk[24] = "auto", par[24] = "auto";
        if (t->choice.chunk)
            snprintf(chunk, sizeof chunk, "%zu", t->choice.chunk);
        if (t->choice.par)
            snprintf(par, sizeof par, "%zu", t->choice.par);
        snprintf(line, sizeof line, "%s: heuristic %.3f ms, best %.3f ms (fused %s, chunk %s, parallel %s)",
                 what, heur * 1e3, best * 1e3,
                 t->choice.fused < 0 ? "auto" : t->choice.fused ? "on" : "off", chunk, par);
        report(user, line);
    }
    return CLNORM_SUCCESS;
}

/* Whether key's class is measured already, or no room is left for it. */
static int tuned_or_full(const clnorm_context *ctx, unsigned key)
{
    for (size_t i = 0; i < ctx->ntuned; ++i)
        if (ctx->tuned[i].key == key)
            return 1;
    return ctx->ntuned >= CLNORM_MAX_TUNED;
}

/* Measures every candidate for one batch norm shape and direction. */
static clnorm_status tune_shape(clnorm_context *ctx, clnorm_layout layout, clnorm_bn_mode mode,
                                const size_t *dims, char dir, int reps, clnorm_report_fn report,
                                void *user)
{
    tune_case c;
    memset(&c, 0, sizeof c);
    clnorm_status st = clnorm_bn_desc_init(&c.bn, mode, layout, 4, dims);
    if (mode == CLNORM_BN_PER_ACTIVATION)
        c.bn.ndim = 2;
    if (st != CLNORM_SUCCESS)
        return st;
    c.dir    = dir;
    size_t n = c.bn.ndim == 2 ? dims[0] * dims[1] : dims[0] * dims[1] * dims[2] * dims[3];
    size_t O, C, I;
    if (mode == CLNORM_BN_PER_ACTIVATION) {
        O = dims[0];
        C = dims[1];
        I = 1;
    } else if (layout == CLNORM_NCHW) {
        O = dims[0];
        C = dims[1];
        I = dims[2] * dims[3];
    } else {
        C = dims[3];
        O = n / C;
        I = 1;
    }
    unsigned key = clnorm_shape_key(dir, clnorm_bn_walk(ctx, I), O * I, C);
    if (tuned_or_full(ctx, key))
        return CLNORM_SUCCESS;

    cl_mem m[12] = {0};
    size_t counts[12];
    for (int i = 0; i < 12; ++i)
        counts[i] = i < 4 ? n : C;
    st = make_buffers(ctx, m, counts, 12, 9);
    if (st != CLNORM_SUCCESS)
        return st;
    c.bargs.x            = clnorm_buf(m[0], 0);
    c.bargs.y            = clnorm_buf(m[1], 0);
    c.bargs.dy           = clnorm_buf(m[2], 0);
    c.bargs.dx           = clnorm_buf(m[3], 0);
    c.bargs.gamma        = clnorm_buf(m[4], 0);
    c.bargs.beta         = clnorm_buf(m[5], 0);
    c.bargs.saved_mean   = clnorm_buf(m[6], 0);
    c.bargs.saved_invstd = clnorm_buf(m[7], 0);
    c.bargs.running_mean = clnorm_buf(m[8], 0);
    c.bargs.running_var  = clnorm_buf(m[9], 0);
    c.bargs.dgamma       = clnorm_buf(m[10], 0);
    c.bargs.dbeta        = clnorm_buf(m[11], 0);

    clnorm_choice cands[16];
    size_t        nc = 0;
    cands[nc++]      = (clnorm_choice){-1, 0, 0}; /* the built-in heuristic */
    cands[nc++]      = (clnorm_choice){1, 0, 0};
    if (dir != 'i' || !ctx->tune.cpu_style) {
        static const size_t chunks[] = {4096, 16384, 65536};
        size_t              pars[2]  = {ctx->tune.min_parallel, ctx->tune.min_parallel * 4};
        for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 2; ++b)
                cands[nc++] = (clnorm_choice){0, chunks[a], pars[b]};
    } else {
        cands[nc++] = (clnorm_choice){0, 0, 0};
    }
    char what[128];
    snprintf(what, sizeof what, "%s %-4s %-5s (%zu,%zu,%zu,%zu)",
             dir == 'f' ? "fwd-train" : dir == 'i' ? "fwd-infer" : "bwd      ",
             mode == CLNORM_BN_PER_ACTIVATION ? "PA" : layout == CLNORM_NCHW ? "NCHW" : "NHWC",
             I >= ctx->tune.rows_min_inner ? "rows" : "cols", dims[0], dims[1], dims[2], dims[3]);
    st = measure(ctx, key, &c, cands, nc, reps, what, report, user);
    release_all(m, 12);
    return st;
}

/* Measures the candidates for one layer norm (R rows of L; G == 0) or
 * group norm ((N, C, H, W) NCHW or its NHWC form, G groups) shape, forward
 * ('l', 'g') or backward ('L', 'G'): the heuristic, the fused walks off and
 * on, and the row walk's sizes a quarter and four times the defaults. The
 * class keys are those rownorm.c looks up. */
static clnorm_status tune_norm_shape(clnorm_context *ctx, const size_t *dims, size_t G, int nhwc, char dir,
                                     int reps, clnorm_report_fn report, void *user)
{
    tune_case c;
    memset(&c, 0, sizeof c);
    c.dir = dir;
    clnorm_status st;
    size_t        n, np, ns, slice;
    unsigned      key;
    char          what[128];
    int           bwd = dir == 'L' || dir == 'G';
    if (G == 0) {
        st    = clnorm_norm_desc_init(&c.ln, 2, dims, -1);
        n     = dims[0] * dims[1];
        np    = dims[1];
        ns    = dims[0];
        slice = dims[1];
        key   = clnorm_shape_key(dir, CLNORM_WALK_COLS, slice, ns);
        snprintf(what, sizeof what, "layernorm %s (%zu,%zu)", bwd ? "bwd" : "fwd", dims[0], dims[1]);
    } else {
        size_t d[4] = {dims[0], dims[1], dims[2], dims[3]}; /* NCHW */
        if (nhwc) {
            d[1] = dims[2];
            d[2] = dims[3];
            d[3] = dims[1];
        }
        st    = clnorm_groupnorm_desc_init(&c.gn, nhwc ? CLNORM_NHWC : CLNORM_NCHW, 4, d, G);
        n     = dims[0] * dims[1] * dims[2] * dims[3];
        np    = dims[1];
        ns    = dims[0] * G;
        slice = n / ns;
        key   = clnorm_shape_key(dir, nhwc ? CLNORM_WALK_ROWS : CLNORM_WALK_COLS, slice, ns);
        snprintf(what, sizeof what, "groupnorm %s %s (%zu,%zu,%zu,%zu) G=%zu", bwd ? "bwd" : "fwd",
                 nhwc ? "NHWC" : "NCHW", d[0], d[1], d[2], d[3], G);
    }
    if (st != CLNORM_SUCCESS || tuned_or_full(ctx, key))
        return st;
    cl_mem m[10]      = {0};
    size_t counts[10] = {n, n, n, n, np, np, np, np, ns, ns};
    st                = make_buffers(ctx, m, counts, 10, 9);
    if (st != CLNORM_SUCCESS)
        return st;
    c.nargs.x      = clnorm_buf(m[0], 0);
    c.nargs.y      = clnorm_buf(m[1], 0);
    c.nargs.dy     = clnorm_buf(m[2], 0);
    c.nargs.dx     = clnorm_buf(m[3], 0);
    c.nargs.gamma  = clnorm_buf(m[4], 0);
    c.nargs.beta   = clnorm_buf(m[5], 0);
    c.nargs.dgamma = clnorm_buf(m[6], 0);
    c.nargs.dbeta  = clnorm_buf(m[7], 0);
    c.nargs.mean   = clnorm_buf(m[8], 0);
    c.nargs.invstd = clnorm_buf(m[9], 0);

    clnorm_choice cands[16];
    size_t        nc = 0, ch = ctx->tune.chunk, par = ctx->tune.min_parallel;
    cands[nc++]      = (clnorm_choice){-1, 0, 0};
    if (bwd || (G && !nhwc)) {
        cands[nc++] = (clnorm_choice){0, 0, 0};
        cands[nc++] = (clnorm_choice){1, 0, 0};
    }
    size_t chunks[3] = {ch / 4, ch, ch * 4}, pars[3] = {par / 4 ? par / 4 : 1, par, par * 4};
    for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b)
            if (a != 1 || b != 1)
                cands[nc++] = (clnorm_choice){-1, chunks[a], pars[b]};
    st = measure(ctx, key, &c, cands, nc, reps, what, report, user);
    release_all(m, 10);
    return st;
}

clnorm_status clnorm_tune(clnorm_context *ctx, int quick, clnorm_report_fn report, void *user)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_CONTEXT, "clnorm_tune: ctx is NULL");
    /* representative shapes: ResNet-50's batch norms, per-activation layers */
    static const size_t shapes[][4] = {{64, 112, 112, 0}, {64, 56, 56, 0},   {256, 56, 56, 0},
                                       {128, 28, 28, 0},  {512, 28, 28, 0},  {256, 14, 14, 0},
                                       {1024, 14, 14, 0}, {2048, 7, 7, 0},   {3, 224, 224, 0},
                                       {32, 8, 8, 0}};
    size_t        N = quick ? 4 : 32, ns = sizeof shapes / sizeof *shapes;
    int           reps = quick ? 3 : 7;
    clnorm_status st = CLNORM_SUCCESS;
    size_t        saved = ctx->ntuned;
    ctx->ntuned       = 0; /* measure afresh */
    static const char dirs[] = {'f', 'b', 'i'};
    for (size_t s = 0; s < ns && st == CLNORM_SUCCESS; ++s)
        for (int l = 0; l < 2 && st == CLNORM_SUCCESS; ++l)
            for (int d = 0; d < 3 && st == CLNORM_SUCCESS; ++d) {
                size_t dims[4];
                if (l == 0) {
                    dims[0] = N; dims[1] = shapes[s][0]; dims[2] = shapes[s][1]; dims[3] = shapes[s][2];
                } else {
                    dims[0] = N; dims[1] = shapes[s][1]; dims[2] = shapes[s][2]; dims[3] = shapes[s][0];
                }
                st = tune_shape(ctx, l == 0 ? CLNORM_NCHW : CLNORM_NHWC, CLNORM_BN_SPATIAL, dims, dirs[d],
                                reps, report, user);
            }
    static const size_t pa[][4] = {{512, 4096, 1, 1}, {16384, 64, 1, 1}, {256, 1024, 1, 1}};
    for (size_t s = 0; s < 3 && st == CLNORM_SUCCESS; ++s)
        for (int d = 0; d < 3 && st == CLNORM_SUCCESS; ++d)
            st = tune_shape(ctx, CLNORM_NCHW, CLNORM_BN_PER_ACTIVATION, pa[s], dirs[d], reps, report, user);
    /* layer norm rows x columns (transformer widths; RMS norm shares the
     * classes), then group norm with 32 groups in both layouts */
    static const size_t ln[][2] = {{8192, 768}, {2048, 4096}, {32768, 128}, {16384, 1024}};
    size_t              div     = quick ? 8 : 1;
    for (size_t s = 0; s < 4 && st == CLNORM_SUCCESS; ++s)
        for (int d = 0; d < 2 && st == CLNORM_SUCCESS; ++d) {
            size_t dims[2] = {ln[s][0] / div, ln[s][1]};
            st = tune_norm_shape(ctx, dims, 0, 0, d ? 'L' : 'l', reps, report, user);
        }
    for (int l = 0; l < 2 && st == CLNORM_SUCCESS; ++l)
        for (int d = 0; d < 2 && st == CLNORM_SUCCESS; ++d) {
            size_t dims[4] = {N, 256, 56, 56};
            st = tune_norm_shape(ctx, dims, 32, l, d ? 'G' : 'g', reps, report, user);
        }
    if (st != CLNORM_SUCCESS) {
        ctx->ntuned = saved < ctx->ntuned ? ctx->ntuned : saved;
        return st;
    }
    char dir[4096], path[4200];
    if (tuning_path(ctx, dir, sizeof dir, path, sizeof path)) {
        size_t cap = 64 + ctx->ntuned * 64, len = 0;
        char  *text = malloc(cap);
        if (!text)
            return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_HOST_MEMORY, "clnorm_tune: out of memory");
        len += (size_t)snprintf(text + len, cap - len, "# clnorm tuning: key fused chunk par\n");
        for (size_t i = 0; i < ctx->ntuned; ++i)
            len += (size_t)snprintf(text + len, cap - len, "%u %d %zu %zu\n", ctx->tuned[i].key,
                                    ctx->tuned[i].choice.fused, ctx->tuned[i].choice.chunk,
                                    ctx->tuned[i].choice.par);
        if (clnorm_mkdir_p(dir) == 0)
            clnorm_write_file_atomic(dir, path, (const unsigned char *)text, len);
        free(text);
        if (report) {
            char line[4300];
            snprintf(line, sizeof line, "wrote %zu choices to %s", ctx->ntuned, path);
            report(user, line);
        }
    }
    return CLNORM_SUCCESS;
}
