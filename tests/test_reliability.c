/* test_reliability.c: non-finite inputs and concurrency.
 *
 * Non-finite values (documented behaviour, clnorm.h): batch statistics are
 * per channel, so a NaN or an infinity in x makes that channel's statistics
 * and outputs NaN and leaves every other channel bit-identical to a run
 * without it; the elementwise calls (inference, the dx of frozen backward)
 * affect only the element itself. Checked on every kernel path (fused,
 * rows walk, split rows, columns walk, per-activation) and both variants.
 *
 * Concurrency (the contract above clnorm_context in clnorm.h): several
 * threads, each with its own clnorm context, on one shared cl_context and
 * device, on one shared queue, or each on its own cl_context, give the bits
 * one thread gives; the context-free functions run concurrently too. */
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers that never assert (usable from threads) ---------------- */

static cl_mem buf_from(cl_context cl, const float *v, size_t n, cl_int *err)
{
    return clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof *v, (void *)v, err);
}

static uint64_t mix(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill(float *v, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = 0; i < n; ++i)
        v[i] = lo + (hi - lo) * (float)((mix(&s) >> 11) * (1.0 / 9007199254740992.0));
}

/* ---- batch norm with one bad value ----------------------------------------- */

typedef struct bn_shape {
    char           name[48];
    clnorm_bn_mode mode;
    clnorm_layout  layout;
    size_t         ndim, dims[4];
    size_t         O, C, I; /* the (outer, channels, inner) view */
} bn_shape;

enum { O_Y, O_SM, O_SI, O_RM, O_RV, O_YI, O_DX, O_DG, O_DB, O_DXF, O_DGF, O_DBF, NOUT };
static const char *const out_names[NOUT] = {"y",  "saved_mean", "saved_invstd", "running_mean",
                                            "running_var", "inference y", "dx", "dgamma",
                                            "dbeta", "frozen dx", "frozen dgamma", "frozen dbeta"};

typedef struct bn_run {
    float *o[NOUT];
    size_t len[NOUT];
} bn_run;

/* All four calls on x and dy; inference and frozen backward use the clean
 * running statistics, backward uses saved statistics given by the caller
 * (those of the clean run) so that each call sees only its own bad input. */
static void bn_all(const bn_shape *s, const float *x, const float *dy, const float *sm_in, const float *si_in,
                   bn_run *r)
{
    size_t n = s->O * s->C * s->I, C = s->C;
    clnorm_bn_desc d;
    cr_assert_eq(clnorm_bn_desc_init(&d, s->mode, s->layout, s->ndim, s->dims), CLNORM_SUCCESS);
    d.exp_avg_factor = 0.25;
    float *g = malloc(C * 4), *b = malloc(C * 4), *rm = malloc(C * 4), *rv = malloc(C * 4);
    fill(g, C, 1, 0.5f, 1.5f);
    fill(b, C, 2, -1.0f, 1.0f);
    fill(rm, C, 3, -0.5f, 0.5f);
    fill(rv, C, 4, 0.5f, 2.0f);
    cl_int err;
    cl_mem mx = buf_from(H.cl, x, n, &err), mdy = buf_from(H.cl, dy, n, &err);
    cl_mem mg = buf_from(H.cl, g, C, &err), mb = buf_from(H.cl, b, C, &err);
    cl_mem mrm = buf_from(H.cl, rm, C, &err), mrv = buf_from(H.cl, rv, C, &err);
    cl_mem crm = buf_from(H.cl, rm, C, &err), crv = buf_from(H.cl, rv, C, &err);
    cl_mem out[NOUT];
    for (int k = 0; k < NOUT; ++k) {
        r->len[k] = (k == O_Y || k == O_YI || k == O_DX || k == O_DXF) ? n : C;
        r->o[k]   = malloc(r->len[k] * sizeof(float));
        cr_assert_not_null(r->o[k]);
        out[k] = k == O_RM ? mrm : k == O_RV ? mrv : clCreateBuffer(H.cl, CL_MEM_READ_WRITE, r->len[k] * 4, NULL, &err);
        cr_assert_eq(err, CL_SUCCESS);
    }
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x            = clnorm_buf(mx, 0);
    a.y            = clnorm_buf(out[O_Y], 0);
    a.gamma        = clnorm_buf(mg, 0);
    a.beta         = clnorm_buf(mb, 0);
    a.saved_mean   = clnorm_buf(out[O_SM], 0);
    a.saved_invstd = clnorm_buf(out[O_SI], 0);
    a.running_mean = clnorm_buf(mrm, 0);
    a.running_var  = clnorm_buf(mrv, 0);
    cr_assert_eq(clnorm_bn_forward_training(H.ctx, H.q, &d, &a, 0, NULL, NULL), CLNORM_SUCCESS, "%s",
                 clnorm_last_error(H.ctx));
    a.running_mean = clnorm_buf(crm, 0);
    a.running_var  = clnorm_buf(crv, 0);
    a.y            = clnorm_buf(out[O_YI], 0);
    cr_assert_eq(clnorm_bn_forward_inference(H.ctx, H.q, &d, &a, 0, NULL, NULL), CLNORM_SUCCESS);
    cl_mem bsm = out[O_SM], bsi = out[O_SI];
    if (sm_in) {
        bsm = buf_from(H.cl, sm_in, C, &err);
        bsi = buf_from(H.cl, si_in, C, &err);
    }
    a.saved_mean   = clnorm_buf(bsm, 0);
    a.saved_invstd = clnorm_buf(bsi, 0);
    a.dy           = clnorm_buf(mdy, 0);
    a.dx           = clnorm_buf(out[O_DX], 0);
    a.dgamma       = clnorm_buf(out[O_DG], 0);
    a.dbeta        = clnorm_buf(out[O_DB], 0);
    cr_assert_eq(clnorm_bn_backward(H.ctx, H.q, &d, &a, 0, NULL, NULL), CLNORM_SUCCESS);
    a.dx     = clnorm_buf(out[O_DXF], 0);
    a.dgamma = clnorm_buf(out[O_DGF], 0);
    a.dbeta  = clnorm_buf(out[O_DBF], 0);
    cr_assert_eq(clnorm_bn_backward_frozen(H.ctx, H.q, &d, &a, 0, NULL, NULL), CLNORM_SUCCESS);
    for (int k = 0; k < NOUT; ++k) {
        dev_read(out[k], r->len[k] * 4, r->o[k]);
        clReleaseMemObject(out[k]);
    }
    if (sm_in) {
        clReleaseMemObject(bsm);
        clReleaseMemObject(bsi);
    }
    cl_mem all[] = {mx, mdy, mg, mb, crm, crv};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
    free(g);
    free(b);
    free(rm);
    free(rv);
}

static void bn_free(bn_run *r)
{
    for (int k = 0; k < NOUT; ++k)
        free(r->o[k]);
}

typedef struct nf_case {
    bn_shape shape;
    float    bad;     /* NaN, +Inf or -Inf */
    int      in_dy;   /* the bad value is in dy instead of x */
    int      gpu;     /* CLNORM_VARIANT=gpu */
} nf_case;

static const bn_shape nf_shapes[] = {
    {"NCHW 2x3x5x7 (fused)", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, {2, 3, 5, 7}, 2, 3, 35},
    {"NCHW 8x64x7x7", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, {8, 64, 7, 7}, 8, 64, 49},
    {"NCHW 4x3x64x64 (rows)", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, {4, 3, 64, 64}, 4, 3, 4096},
    {"NCHW 2x2x300x300 (split rows)", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, {2, 2, 300, 300}, 2, 2, 90000},
    {"NHWC 4x8x8x6", CLNORM_BN_SPATIAL, CLNORM_NHWC, 4, {4, 8, 8, 6}, 256, 6, 1},
    {"NHWC 64x32x32x3 (columns)", CLNORM_BN_SPATIAL, CLNORM_NHWC, 4, {64, 32, 32, 3}, 65536, 3, 1},
    {"per-activation 64x10", CLNORM_BN_PER_ACTIVATION, CLNORM_NCHW, 2, {64, 10}, 64, 10, 1},
    {"NCHW 1x4x5x7 (one row per channel)", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, {1, 4, 5, 7}, 1, 4, 35},
    {"NHWC 2x2x2x1024 (channels-last one kernel)", CLNORM_BN_SPATIAL, CLNORM_NHWC, 4, {2, 2, 2, 1024}, 8,
     1024, 1},
};

ParameterizedTestParameters(nonfinite, batchnorm)
{
    size_t   ns = sizeof nf_shapes / sizeof *nf_shapes, n = ns * 3 * 2 * 2, k = 0;
    nf_case *t  = cr_malloc(n * sizeof *t);
    cr_assert_not_null(t);
    const float bads[3] = {NAN, INFINITY, -INFINITY};
    for (size_t s = 0; s < ns; ++s)
        for (int b = 0; b < 3; ++b)
            for (int w = 0; w < 2; ++w)
                for (int g = 0; g < 2; ++g) {
                    t[k].shape = nf_shapes[s];
                    t[k].bad   = bads[b];
                    t[k].in_dy = w;
                    t[k].gpu   = g;
                    ++k;
                }
    return cr_make_param_array(nf_case, t, n, NULL);
}

static void variant_init(int gpu)
{
    setenv("CLNORM_VARIANT", gpu ? "gpu" : "cpu", 1);
    harness_init();
}

static int same(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Checks one output: elements of the bad channel must satisfy want (one of
 * "nan", "same", "elem": only the bad element differs and is non-finite);
 * everything else bitwise equal. */
static void check_out(const nf_case *tc, const char *what, const bn_run *clean, const bn_run *bad, int k,
                      size_t bc, size_t be, const char *want)
{
    const bn_shape *s = &tc->shape;
    size_t          n = clean->len[k];
    size_t          wrong_other = 0, wrong_ch = 0, first = SIZE_MAX;
    for (size_t e = 0; e < n; ++e) {
        size_t c  = n == s->C ? e : (e / s->I) % s->C;
        float  g  = bad->o[k][e], r = clean->o[k][e];
        int    ok = 1;
        if (c != bc)
            ok = same(g, r);
        else if (strcmp(want, "nan") == 0)
            ok = isnan(g);
        else if (strcmp(want, "same") == 0)
            ok = same(g, r);
        else /* elem */
            ok = (n == s->C || e != be) ? same(g, r) : !isfinite(g);
        if (!ok) {
            if (c != bc)
                wrong_other++;
            else
                wrong_ch++;
            if (first == SIZE_MAX)
                first = e;
        }
    }
    cr_expect(wrong_other == 0 && wrong_ch == 0,
              "%s (%s, %g in %s, %s variant): %s: %zu elements of other channels changed, %zu elements of the "
              "bad channel are not \"%s\" (first at %zu: %g, clean %g)",
              s->name, what, (double)tc->bad, tc->in_dy ? "dy" : "x", tc->gpu ? "gpu" : "cpu", out_names[k],
              wrong_other, wrong_ch, want, first, first < n ? (double)bad->o[k][first] : 0.0,
              first < n ? (double)clean->o[k][first] : 0.0);
}

ParameterizedTest(nf_case *tc, nonfinite, batchnorm, .timeout = 300)
{
    variant_init(tc->gpu);
    const bn_shape *s = &tc->shape;
    size_t          n = s->O * s->C * s->I;
    float          *x = malloc(n * 4), *dy = malloc(n * 4), *bx = malloc(n * 4), *bdy = malloc(n * 4);
    fill(x, n, 11, -2.0f, 3.0f);
    fill(dy, n, 12, -1.0f, 1.0f);
    /* the bad value: middle channel, middle outer index, middle inner index */
    size_t bc = s->C / 2, be = ((s->O / 2) * s->C + bc) * s->I + s->I / 2;
    memcpy(bx, x, n * 4);
    memcpy(bdy, dy, n * 4);
    (tc->in_dy ? bdy : bx)[be] = tc->bad;

    bn_run clean, bad;
    bn_all(s, x, dy, NULL, NULL, &clean);
    bn_all(s, bx, bdy, clean.o[O_SM], clean.o[O_SI], &bad);
    if (!tc->in_dy) {
        check_out(tc, "x", &clean, &bad, O_Y, bc, be, "nan");
        check_out(tc, "x", &clean, &bad, O_SM, bc, be, "nan");
        check_out(tc, "x", &clean, &bad, O_SI, bc, be, "nan");
        check_out(tc, "x", &clean, &bad, O_RM, bc, be, "nan");
        check_out(tc, "x", &clean, &bad, O_RV, bc, be, "nan");
        check_out(tc, "x", &clean, &bad, O_YI, bc, be, "elem");
        check_out(tc, "x", &clean, &bad, O_DX, bc, be, "nan");
        check_out(tc, "x", &clean, &bad, O_DG, bc, be, "nan");
        check_out(tc, "x", &clean, &bad, O_DB, bc, be, "same");
        /* frozen dx: nonfinite.frozen_dx_ignores_x */
        check_out(tc, "x", &clean, &bad, O_DGF, bc, be, "nan");
        check_out(tc, "x", &clean, &bad, O_DBF, bc, be, "same");
    } else {
        for (int k = O_Y; k <= O_YI; ++k)
            check_out(tc, "dy", &clean, &bad, k, bc, be, "same");
        check_out(tc, "dy", &clean, &bad, O_DX, bc, be, "nan");
        check_out(tc, "dy", &clean, &bad, O_DG, bc, be, "nan");
        check_out(tc, "dy", &clean, &bad, O_DB, bc, be, "nan");
        check_out(tc, "dy", &clean, &bad, O_DXF, bc, be, "elem");
        check_out(tc, "dy", &clean, &bad, O_DGF, bc, be, "nan");
        check_out(tc, "dy", &clean, &bad, O_DBF, bc, be, "nan");
    }
    bn_free(&clean);
    bn_free(&bad);
    free(x);
    free(dy);
    free(bx);
    free(bdy);
    harness_fini();
}

/* Frozen backward's dx = gamma*dy/sqrt(running_var + eps) does not depend on
 * x: a non-finite x leaves all of dx bit-identical (x only feeds dgamma). */
ParameterizedTestParameters(nonfinite, frozen_dx_ignores_x)
{
    size_t   ns = sizeof nf_shapes / sizeof *nf_shapes, n = ns * 3 * 2, k = 0;
    nf_case *t  = cr_malloc(n * sizeof *t);
    cr_assert_not_null(t);
    const float bads[3] = {NAN, INFINITY, -INFINITY};
    for (size_t s = 0; s < ns; ++s)
        for (int b = 0; b < 3; ++b)
            for (int g = 0; g < 2; ++g) {
                t[k].shape = nf_shapes[s];
                t[k].bad   = bads[b];
                t[k].in_dy = 0;
                t[k].gpu   = g;
                ++k;
            }
    return cr_make_param_array(nf_case, t, n, NULL);
}

ParameterizedTest(nf_case *tc, nonfinite, frozen_dx_ignores_x, .timeout = 300)
{
    variant_init(tc->gpu);
    const bn_shape *s = &tc->shape;
    size_t          n = s->O * s->C * s->I;
    float          *x = malloc(n * 4), *dy = malloc(n * 4), *bx = malloc(n * 4);
    fill(x, n, 11, -2.0f, 3.0f);
    fill(dy, n, 12, -1.0f, 1.0f);
    size_t bc = s->C / 2, be = ((s->O / 2) * s->C + bc) * s->I + s->I / 2;
    memcpy(bx, x, n * 4);
    bx[be] = tc->bad;
    bn_run clean, bad;
    bn_all(s, x, dy, NULL, NULL, &clean);
    bn_all(s, bx, dy, clean.o[O_SM], clean.o[O_SI], &bad);
    check_out(tc, "x", &clean, &bad, O_DXF, bc, be, "same");
    bn_free(&clean);
    bn_free(&bad);
    free(x);
    free(dy);
    free(bx);
    harness_fini();
}

/* Layer norm: a bad value in one row makes that row's outputs NaN and leaves
 * every other row bit-identical. */
Test(nonfinite, layernorm_rows, .init = harness_init, .fini = harness_fini)
{
    const size_t rows = 6, cols = 40, n = rows * cols, dims[2] = {rows, cols};
    clnorm_norm_desc d;
    cr_assert_eq(clnorm_norm_desc_init(&d, 2, dims, 1), CLNORM_SUCCESS);
    const float bads[3] = {NAN, INFINITY, -INFINITY};
    float      *x = malloc(n * 4), *ref = malloc(n * 4), *got = malloc(n * 4);
    fill(x, n, 21, -1.0f, 2.0f);
    for (int pass = 0; pass < 4; ++pass) {
        if (pass > 0)
            x[3 * cols + 17] = bads[pass - 1];
        cl_int err;
        cl_mem mx = buf_from(H.cl, x, n, &err), my = clCreateBuffer(H.cl, CL_MEM_READ_WRITE, n * 4, NULL, &err);
        clnorm_norm_args a;
        memset(&a, 0, sizeof a);
        a.x = clnorm_buf(mx, 0);
        a.y = clnorm_buf(my, 0);
        cr_assert_eq(clnorm_layernorm_forward(H.ctx, H.q, &d, &a, 0, NULL, NULL), CLNORM_SUCCESS, "%s",
                     clnorm_last_error(H.ctx));
        dev_read(my, n * 4, pass ? got : ref);
        clReleaseMemObject(mx);
        clReleaseMemObject(my);
        if (pass == 0)
            continue;
        for (size_t e = 0; e < n; ++e) {
            if (e / cols == 3)
                cr_expect(isnan(got[e]), "bad %g: row 3 y[%zu] = %g, not NaN", (double)bads[pass - 1], e,
                          (double)got[e]);
            else
                cr_expect(same(got[e], ref[e]), "bad %g: row %zu changed", (double)bads[pass - 1], e / cols);
        }
    }
    free(x);
    free(ref);
    free(got);
}

/* ---- concurrency ----------------------------------------------------------- */

/* One thread's workload: batch norm on three kernel paths (all four calls),
 * layer norm and group norm, each twice; every output appended to out. */
#define WL_SHAPES 3
static const bn_shape wl_shapes[WL_SHAPES] = {
    {"fused", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, {2, 3, 5, 7}, 2, 3, 35},
    {"rows", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, {2, 4, 48, 48}, 2, 4, 2304},
    {"columns", CLNORM_BN_SPATIAL, CLNORM_NHWC, 4, {16, 24, 24, 5}, 9216, 5, 1},
};
#define WL_MAX_OUT (1 << 21)

typedef struct worker {
    clnorm_context  *ctx;        /* made by the thread unless given */
    cl_context       shared_cl;  /* non-NULL: make ctx on it */
    cl_device_id     device;
    cl_command_queue shared_q;   /* non-NULL: enqueue here */
    int              own_cl;     /* make ctx with clnorm_context_create_default */
    int              reps;
    float           *out;
    size_t           nout;
    char             err[512];
    pthread_barrier_t *start;
} worker;

#define WFAIL(w, ...)                                         \
    do {                                                      \
        snprintf((w)->err, sizeof (w)->err, __VA_ARGS__);     \
        goto done;                                            \
    } while (0)

static int put(worker *w, cl_command_queue q, cl_mem m, size_t n)
{
    if (w->nout + n > WL_MAX_OUT)
        return -1;
    cl_int err = clEnqueueReadBuffer(q, m, CL_TRUE, 0, n * 4, w->out + w->nout, 0, NULL, NULL);
    w->nout += n;
    return err;
}

static void *workload(void *arg)
{
    worker          *w = arg;
    cl_mem           m[16];
    int              nm = 0;
    clnorm_status    st;
    cl_int           err;
    cl_context       cl;
    cl_command_queue q;
    if (w->own_cl)
        st = clnorm_context_create_default(NULL, &w->ctx);
    else if (w->shared_cl)
        st = clnorm_context_create(w->shared_cl, w->device, &w->ctx);
    else
        st = CLNORM_SUCCESS;
    if (w->start)
        pthread_barrier_wait(w->start);
    if (st != CLNORM_SUCCESS)
        WFAIL(w, "context: %s (%s)", clnorm_status_name(st), clnorm_last_error(NULL));
    cl = clnorm_context_cl_context(w->ctx);
    q  = w->shared_q ? w->shared_q : clnorm_context_queue(w->ctx);
    for (int rep = 0; rep < w->reps; ++rep) {
        for (int s = 0; s < WL_SHAPES; ++s) {
            const bn_shape *sh = &wl_shapes[s];
            size_t          n = sh->O * sh->C * sh->I, C = sh->C;
            float          *x = malloc(n * 4), *dy = malloc(n * 4), v[64];
            fill(x, n, 100 + (uint64_t)s, -3.0f, 5.0f);
            fill(dy, n, 200 + (uint64_t)s, -1.0f, 1.0f);
            fill(v, C, 300 + (uint64_t)s, 0.5f, 1.5f);
            nm    = 0;
            m[nm++] = buf_from(cl, x, n, &err);          /* 0 x */
            m[nm++] = buf_from(cl, dy, n, &err);         /* 1 dy */
            m[nm++] = buf_from(cl, v, C, &err);          /* 2 gamma, also running_var */
            m[nm++] = buf_from(cl, v, C, &err);          /* 3 running_mean */
            m[nm++] = buf_from(cl, v, C, &err);          /* 4 running_var */
            for (int k = 0; k < 3; ++k)
                m[nm++] = clCreateBuffer(cl, CL_MEM_READ_WRITE, n * 4, NULL, &err); /* 5 y, 6 dx, 7 dxf */
            for (int k = 0; k < 4; ++k)
                m[nm++] = clCreateBuffer(cl, CL_MEM_READ_WRITE, C * 4, NULL, &err); /* 8 sm 9 si 10 dg 11 db */
            free(x);
            free(dy);
            if (err != CL_SUCCESS)
                WFAIL(w, "buffers: %d", err);
            clnorm_bn_desc d;
            clnorm_bn_desc_init(&d, sh->mode, sh->layout, sh->ndim, sh->dims);
            clnorm_bn_args a;
            memset(&a, 0, sizeof a);
            a.x = clnorm_buf(m[0], 0);
            a.dy = clnorm_buf(m[1], 0);
            a.gamma = clnorm_buf(m[2], 0);
            a.running_mean = clnorm_buf(m[3], 0);
            a.running_var = clnorm_buf(m[4], 0);
            a.y = clnorm_buf(m[5], 0);
            a.saved_mean = clnorm_buf(m[8], 0);
            a.saved_invstd = clnorm_buf(m[9], 0);
            a.dgamma = clnorm_buf(m[10], 0);
            a.dbeta = clnorm_buf(m[11], 0);
            if ((st = clnorm_bn_forward_training(w->ctx, q, &d, &a, 0, NULL, NULL)) != CLNORM_SUCCESS)
                WFAIL(w, "%s forward_training: %s", sh->name, clnorm_last_error(w->ctx));
            if (put(w, q, m[5], n) || put(w, q, m[8], C) || put(w, q, m[9], C) || put(w, q, m[3], C) ||
                put(w, q, m[4], C))
                WFAIL(w, "read back");
            if ((st = clnorm_bn_forward_inference(w->ctx, q, &d, &a, 0, NULL, NULL)) != CLNORM_SUCCESS)
                WFAIL(w, "%s forward_inference: %s", sh->name, clnorm_last_error(w->ctx));
            if (put(w, q, m[5], n))
                WFAIL(w, "read back");
            a.dx = clnorm_buf(m[6], 0);
            if ((st = clnorm_bn_backward(w->ctx, q, &d, &a, 0, NULL, NULL)) != CLNORM_SUCCESS)
                WFAIL(w, "%s backward: %s", sh->name, clnorm_last_error(w->ctx));
            if (put(w, q, m[6], n) || put(w, q, m[10], C) || put(w, q, m[11], C))
                WFAIL(w, "read back");
            a.dx = clnorm_buf(m[7], 0);
            if ((st = clnorm_bn_backward_frozen(w->ctx, q, &d, &a, 0, NULL, NULL)) != CLNORM_SUCCESS)
                WFAIL(w, "%s backward_frozen: %s", sh->name, clnorm_last_error(w->ctx));
            if (put(w, q, m[7], n) || put(w, q, m[10], C) || put(w, q, m[11], C))
                WFAIL(w, "read back");
            /* the same tensor as layer norm over everything after the batch
             * dim, and as group norm (NCHW shapes) in C groups */
            clnorm_norm_desc nd;
            size_t           nd_dims[2] = {sh->dims[0], n / sh->dims[0]};
            clnorm_norm_desc_init(&nd, 2, nd_dims, 1);
            clnorm_norm_args na;
            memset(&na, 0, sizeof na);
            na.x = clnorm_buf(m[0], 0);
            na.y = clnorm_buf(m[5], 0);
            if ((st = clnorm_layernorm_forward(w->ctx, q, &nd, &na, 0, NULL, NULL)) != CLNORM_SUCCESS)
                WFAIL(w, "%s layernorm_forward: %s", sh->name, clnorm_last_error(w->ctx));
            if (put(w, q, m[5], n))
                WFAIL(w, "read back");
            if (sh->layout == CLNORM_NCHW) {
                clnorm_groupnorm_desc gd;
                clnorm_groupnorm_desc_init(&gd, CLNORM_NCHW, sh->ndim, sh->dims, sh->C);
                if ((st = clnorm_groupnorm_forward(w->ctx, q, &gd, &na, 0, NULL, NULL)) != CLNORM_SUCCESS)
                    WFAIL(w, "%s groupnorm_forward: %s", sh->name, clnorm_last_error(w->ctx));
                if (put(w, q, m[5], n))
                    WFAIL(w, "read back");
            }
            for (int k = 0; k < nm; ++k)
                clReleaseMemObject(m[k]);
            nm = 0;
        }
    }
done:
    for (int k = 0; k < nm; ++k)
        clReleaseMemObject(m[k]);
    return NULL;
}

static float *reference_run(size_t *n)
{
    worker w;
    memset(&w, 0, sizeof w);
    w.ctx  = H.ctx;
    w.reps = 1;
    w.out  = malloc(WL_MAX_OUT * sizeof(float));
    cr_assert_not_null(w.out);
    workload(&w);
    cr_assert(w.err[0] == '\0', "reference run: %s", w.err);
    *n = w.nout;
    return w.out;
}

enum { MODE_SHARED_CL, MODE_SHARED_QUEUE, MODE_OWN_CL };

static void run_threads(int mode, int nthreads)
{
    size_t nref;
    float *ref = reference_run(&nref);
    cr_assert_gt(nref, 100000, "the workload produced only %zu values", nref);
    worker            w[8];
    pthread_t         th[8];
    pthread_barrier_t start;
    cr_assert_leq(nthreads, 8);
    pthread_barrier_init(&start, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; ++i) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].reps  = 2;
        w[i].start = &start;
        w[i].out   = malloc(WL_MAX_OUT * sizeof(float));
        cr_assert_not_null(w[i].out);
        if (mode == MODE_OWN_CL) {
            w[i].own_cl = 1;
        } else {
            w[i].shared_cl = H.cl;
            w[i].device    = clnorm_context_device(H.ctx);
            if (mode == MODE_SHARED_QUEUE)
                w[i].shared_q = H.q;
        }
        cr_assert_eq(pthread_create(&th[i], NULL, workload, &w[i]), 0);
    }
    for (int i = 0; i < nthreads; ++i)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < nthreads; ++i) {
        cr_expect(w[i].err[0] == '\0', "thread %d: %s", i, w[i].err);
        cr_expect_eq(w[i].nout, 2 * nref, "thread %d: %zu outputs, expected %zu", i, w[i].nout, 2 * nref);
        if (w[i].err[0] == '\0' && w[i].nout == 2 * nref)
            for (int rep = 0; rep < 2; ++rep) {
                size_t diff = 0, first = 0;
                for (size_t e = 0; e < nref; ++e)
                    if (!same(w[i].out[rep * nref + e], ref[e]) && diff++ == 0)
                        first = e;
                cr_expect_eq(diff, 0, "thread %d repetition %d: %zu of %zu values differ from one thread's "
                             "(first at %zu)", i, rep, diff, nref, first);
            }
        clnorm_context_destroy(w[i].ctx);
        free(w[i].out);
    }
    free(ref);
}

/* Every context in these tests must make the same kernel choices: the
 * built-in heuristics, not a tuning file that a context made later in a
 * fresh cache directory would not see. */
static void conc_init(void)
{
    setenv("CLNORM_TUNE", "0", 1);
    harness_init();
}

Test(concurrency, contexts_on_one_cl_context, .init = conc_init, .fini = harness_fini, .timeout = 600)
{
    run_threads(MODE_SHARED_CL, 4);
}

Test(concurrency, contexts_on_one_queue, .init = conc_init, .fini = harness_fini, .timeout = 600)
{
    run_threads(MODE_SHARED_QUEUE, 4);
}

/* Each thread its own cl_context, all building their programs at the same
 * time into one fresh disk cache (atomic writes, no torn binaries). */
Test(concurrency, own_cl_contexts_fresh_cache, .init = conc_init, .fini = harness_fini, .timeout = 600)
{
    char dir[] = "/tmp/clnorm-conc-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    setenv("CLNORM_CACHE_DIR", dir, 1);
    run_threads(MODE_OWN_CL, 4);
    /* and again, now loading what the threads stored */
    run_threads(MODE_OWN_CL, 4);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* The context-free functions: device selection and query, status texts and
 * the per-thread message of a failed context-free call. */
typedef struct sel_worker {
    int  id;
    char err[256];
} sel_worker;

static void *select_worker(void *arg)
{
    sel_worker *w = arg;
    for (int it = 0; it < 50; ++it) {
        cl_device_id dev = NULL;
        char         why[128];
        if (clnorm_select_device(NULL, NULL, &dev, why, sizeof why) != CLNORM_SUCCESS || !dev) {
            snprintf(w->err, sizeof w->err, "select_device failed: %s", clnorm_last_error(NULL));
            return NULL;
        }
        clnorm_device_info info;
        if (clnorm_query_device(dev, &info) != CLNORM_SUCCESS || info.name[0] == '\0') {
            snprintf(w->err, sizeof w->err, "query_device failed: %s", clnorm_last_error(NULL));
            return NULL;
        }
        char sel[64];
        snprintf(sel, sizeof sel, "no-such-device-%d-%d", w->id, it);
        clnorm_context *ctx = NULL;
        if (clnorm_context_create_default(sel, &ctx) != CLNORM_ERROR_DEVICE_NOT_FOUND || ctx) {
            snprintf(w->err, sizeof w->err, "selector %s was not refused", sel);
            return NULL;
        }
        if (!strstr(clnorm_last_error(NULL), sel)) {
            snprintf(w->err, sizeof w->err, "thread %d's message names another thread's selector: %s", w->id,
                     clnorm_last_error(NULL));
            return NULL;
        }
        if (strcmp(clnorm_status_name(CLNORM_ERROR_INVALID_GROUPS), "CLNORM_ERROR_INVALID_GROUPS") != 0) {
            snprintf(w->err, sizeof w->err, "status name");
            return NULL;
        }
    }
    return NULL;
}

Test(concurrency, context_free_functions)
{
    sel_worker w[6];
    pthread_t  th[6];
    for (int i = 0; i < 6; ++i) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        cr_assert_eq(pthread_create(&th[i], NULL, select_worker, &w[i]), 0);
    }
    for (int i = 0; i < 6; ++i) {
        pthread_join(th[i], NULL);
        cr_expect(w[i].err[0] == '\0', "thread %d: %s", i, w[i].err);
    }
}
