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

/* Shape class: direction, walk kind, and the binary magnitudes of the
 * per-channel slice (in pairs of octaves) and of the channel count. */
unsigned clnorm_shape_key(char dir, int rows, size_t slice, size_t channels)
{
    return ((unsigned)(unsigned char)dir << 16) | ((unsigned)(rows != 0) << 15) |
           ((lg2(slice) / 2) << 8) | lg2(channels);
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

typedef struct tune_case {
    clnorm_bn_desc desc;
    clnorm_bn_args args;
    char           dir;
} tune_case;

static clnorm_status run_case(clnorm_context *ctx, const tune_case *c)
{
    cl_command_queue q = ctx->queue;
    clnorm_status    st;
    if (c->dir == 'f')
        st = clnorm_bn_forward_training(ctx, q, &c->desc, &c->args, 0, NULL, NULL);
    else if (c->dir == 'i')
        st = clnorm_bn_forward_inference(ctx, q, &c->desc, &c->args, 0, NULL, NULL);
    else
        st = clnorm_bn_backward(ctx, q, &c->desc, &c->args, 0, NULL, NULL);
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

/* Measures every candidate for one shape and direction; adds the winner. */
static clnorm_status tune_shape(clnorm_context *ctx, clnorm_layout layout, clnorm_bn_mode mode,
                                const size_t *dims, char dir, int reps, clnorm_report_fn report,
                                void *user)
{
    tune_case c;
    memset(&c, 0, sizeof c);
    clnorm_status st = clnorm_bn_desc_init(&c.desc, mode, layout, 4, dims);
    if (mode == CLNORM_BN_PER_ACTIVATION)
        c.desc.ndim = 2;
    if (st != CLNORM_SUCCESS)
        return st;
    c.dir    = dir;
    size_t n = c.desc.ndim == 2 ? dims[0] * dims[1] : dims[0] * dims[1] * dims[2] * dims[3];
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
    unsigned key = clnorm_shape_key(dir, I >= ctx->tune.rows_min_inner, O * I, C);
    for (size_t i = 0; i < ctx->ntuned; ++i)
        if (ctx->tuned[i].key == key)
            return CLNORM_SUCCESS; /* class already measured */
    if (ctx->ntuned >= CLNORM_MAX_TUNED)
        return CLNORM_SUCCESS;

    cl_mem m[12] = {0};
    cl_int err   = CL_SUCCESS;
    float  one   = 1.0f, half = 0.5f;
    for (int i = 0; i < 12 && err == CL_SUCCESS; ++i) {
        size_t bytes = (i < 4 ? n : C) * sizeof(float);
        m[i]         = clCreateBuffer(ctx->clctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err == CL_SUCCESS)
            err = clEnqueueFillBuffer(ctx->queue, m[i], i == 9 ? &one : &half, sizeof(float), 0, bytes, 0,
                                      NULL, NULL);
    }
    if (err != CL_SUCCESS) {
        release_all(m, 12);
        return clnorm_fail(ctx, (clnorm_status)err, "clnorm_tune: allocating %zu values failed (%d)", n, err);
    }
    c.args.x            = clnorm_buf(m[0], 0);
    c.args.y            = clnorm_buf(m[1], 0);
    c.args.dy           = clnorm_buf(m[2], 0);
    c.args.dx           = clnorm_buf(m[3], 0);
    c.args.gamma        = clnorm_buf(m[4], 0);
    c.args.beta         = clnorm_buf(m[5], 0);
    c.args.saved_mean   = clnorm_buf(m[6], 0);
    c.args.saved_invstd = clnorm_buf(m[7], 0);
    c.args.running_mean = clnorm_buf(m[8], 0);
    c.args.running_var  = clnorm_buf(m[9], 0);
    c.args.dgamma       = clnorm_buf(m[10], 0);
    c.args.dbeta        = clnorm_buf(m[11], 0);

    size_t        cu    = ctx->info.compute_units ? ctx->info.compute_units : 1;
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
    (void)cu;
    double best = INFINITY, heur = 0;
    size_t besti = 0;
    ctx->forcing = 1;
    for (size_t i = 0; i < nc && st == CLNORM_SUCCESS; ++i) {
        double t = 0;
        ctx->force = cands[i];
        st         = time_case(ctx, &c, reps, &t);
        if (i == 0)
            heur = t;
        if (st == CLNORM_SUCCESS && t < best) {
            best  = t;
            besti = i;
        }
    }
    ctx->forcing = 0;
    if (st == CLNORM_SUCCESS) {
        clnorm_tuned *t = &ctx->tuned[ctx->ntuned++];
        t->key          = key;
        t->choice       = cands[besti];
        if (report) {
            char line[256];
            snprintf(line, sizeof line,
                     "%s %-4s %-5s (%zu,%zu,%zu,%zu): heuristic %.3f ms, best %.3f ms (%s, chunk %zu, "
                     "parallel %zu)",
                     dir == 'f' ? "fwd-train" : dir == 'i' ? "fwd-infer" : "bwd      ",
                     mode == CLNORM_BN_PER_ACTIVATION ? "PA" : layout == CLNORM_NCHW ? "NCHW" : "NHWC",
                     I >= ctx->tune.rows_min_inner ? "rows" : "cols", dims[0], dims[1], dims[2], dims[3],
                     heur * 1e3, best * 1e3,
                     t->choice.fused < 0 ? "heuristic" : t->choice.fused ? "fused" : "staged", t->choice.chunk,
                     t->choice.par);
            report(user, line);
        }
    }
    release_all(m, 12);
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
