/* test_bn.c: batch normalization on the default OpenCL device against the
 * double-precision C reference, over a grid of shapes, layouts and hostile
 * data, plus determinism.
 *
 * Tolerances (fp32 storage, fp32 accumulation):
 *  - y, dx: normwise relative error <= 2e-5 (2e-4 for the 1e6-mean data, whose
 *    saved mean is rounded to fp32 before backward uses it). The kernels form
 *    x - mean from a two-term mean, so y keeps its digits at any |mean|/std;
 *    what is left is fp32 rounding of invstd and the products (a few ulp).
 *  - mean: |err| <= 2 ulp(|mean|) + 1e-5 std (fp32 cannot hold the mean closer).
 *  - variance (from invstd and from the running variance): relative error
 *    <= 1e-4, the bound the design asks for at mean/std = 1e6.
 *  - dgamma, dbeta: normwise relative error <= 1e-4 over sums of up to 10^6
 *    terms accumulated with compensated fp32 sums. */
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* DATA_STEP_1E6: mean 1e6, std 1, and 3 more in the second half of the
 * rows, so that the spans of a long channel after the first sit away from
 * the mean of those before them (the walks' shifted one-pass spans). */
enum data_kind { DATA_NORMAL, DATA_MEAN_1E4, DATA_MEAN_1E6, DATA_CONSTANT, DATA_OUTLIER_FIRST, DATA_STEP_1E6 };

typedef struct bn_case {
    char           name[40];
    clnorm_bn_mode mode;
    clnorm_layout  layout;
    size_t         ndim;
    size_t         dims[6];
    enum data_kind data;
    int            affine;
    int            unbiased;
} bn_case;

/* The tensor as the reference sees it. */
static ref_view view_of(const clnorm_bn_desc *d, size_t *total)
{
    size_t t = 1;
    for (size_t i = 0; i < d->ndim; ++i)
        t *= d->dims[i];
    *total = t;
    ref_view v;
    if (d->mode == CLNORM_BN_PER_ACTIVATION) {
        v.outer = d->dims[0];
        v.channels = t / d->dims[0];
        v.inner = 1;
    } else if (d->layout == CLNORM_NCHW) {
        v.outer = d->dims[0];
        v.channels = d->dims[1];
        v.inner = t / (d->dims[0] * d->dims[1]);
    } else {
        v.channels = d->dims[d->ndim - 1];
        v.outer = t / v.channels;
        v.inner = 1;
    }
    return v;
}

static void fill_data(enum data_kind kind, ref_view v, double *x, size_t n, ref_rng *r)
{
    switch (kind) {
    case DATA_NORMAL:
        ref_fill_normal(r, x, n, 0.5, 2.0);
        break;
    case DATA_MEAN_1E4:
        ref_fill_normal(r, x, n, 1e4, 1.0);
        break;
    case DATA_MEAN_1E6:
        ref_fill_normal(r, x, n, 1e6, 1.0);
        break;
    case DATA_CONSTANT:
        ref_fill_normal(r, x, n, 0.0, 1.0);
        /* channel 0 constant; the others normal */
        for (size_t o = 0; o < v.outer; ++o)
            for (size_t i = 0; i < v.inner; ++i)
                x[(o * v.channels) * v.inner + i] = 3.25;
        break;
    case DATA_STEP_1E6:
        ref_fill_normal(r, x, n, 1e6, 1.0);
        for (size_t o = v.outer / 2; o < v.outer; ++o)
            for (size_t e = o * v.channels * v.inner; e < (o + 1) * v.channels * v.inner; ++e)
                x[e] += 3.0;
        break;
    case DATA_OUTLIER_FIRST:
        ref_fill_normal(r, x, n, 1.0, 1.0);
        for (size_t c = 0; c < v.channels; ++c)
            x[c * v.inner] = 1e4; /* first element of every channel */
        break;
    }
    round_to_float(x, n);
}

static double ulp_of(double v)
{
    float f = (float)fabs(v);
    return (double)nextafterf(f, INFINITY) - (double)f;
}

static void check_vec(const char *what, const char *name, const double *got, const double *ref, size_t n,
                      double tol)
{
    double e = normwise_err(got, ref, n, 1e-30);
    cr_expect(e <= tol, "%s: %s normwise error %.3g > %.3g", name, what, e, tol);
}

#define BIG_MEAN(k) ((k) == DATA_MEAN_1E6 || (k) == DATA_STEP_1E6)

static void run_case(const bn_case *tc)
{
    clnorm_bn_desc d;
    cr_assert_eq(clnorm_bn_desc_init(&d, tc->mode, tc->layout, tc->ndim, tc->dims), CLNORM_SUCCESS);
    d.unbiased_running_var = tc->unbiased;
    d.exp_avg_factor       = 0.25;
    d.epsilon              = 1e-5;
    size_t   n;
    ref_view v = view_of(&d, &n);
    size_t   C = v.channels;
    ref_rng  r = ref_rng_seed(12345 + n);

    double *x = dalloc(n), *dy = dalloc(n), *g = dalloc(C), *b = dalloc(C), *rm = dalloc(C), *rv = dalloc(C);
    fill_data(tc->data, v, x, n, &r);
    ref_fill_normal(&r, dy, n, 0.1, 1.0);
    round_to_float(dy, n);
    ref_fill_uniform(&r, g, C, 0.5, 1.5);
    ref_fill_uniform(&r, b, C, -1.0, 1.0);
    ref_fill_uniform(&r, rm, C, -0.5, 0.5);
    ref_fill_uniform(&r, rv, C, 0.5, 2.0);
    round_to_float(g, C);
    round_to_float(b, C);
    round_to_float(rm, C);
    round_to_float(rv, C);

    /* ---- forward training ---- */
    cl_mem mx = dev_from_double(x, n, 0), my = dev_from_double(NULL, n, NAN);
    cl_mem mg = dev_from_double(g, C, 0), mb = dev_from_double(b, C, 0);
    cl_mem mrm = dev_from_double(rm, C, 0), mrv = dev_from_double(rv, C, 0);
    cl_mem msm = dev_from_double(NULL, C, NAN), msi = dev_from_double(NULL, C, NAN);
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(mx, 0);
    a.y = clnorm_buf(my, 0);
    if (tc->affine) {
        a.gamma = clnorm_buf(mg, 0);
        a.beta  = clnorm_buf(mb, 0);
    }
    a.saved_mean   = clnorm_buf(msm, 0);
    a.saved_invstd = clnorm_buf(msi, 0);
    a.running_mean = clnorm_buf(mrm, 0);
    a.running_var  = clnorm_buf(mrv, 0);
    clnorm_status st = clnorm_bn_forward_training(H.ctx, H.q, &d, &a, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: forward_training: %s: %s", tc->name, clnorm_status_string(st),
                 clnorm_last_error(H.ctx));
    clFinish(H.q);

    const double *gp = tc->affine ? g : NULL, *bp = tc->affine ? b : NULL;
    double *ry = dalloc(n), *rmean = dalloc(C), *rinv = dalloc(C), *rrm = dalloc(C), *rrv = dalloc(C);
    memcpy(rrm, rm, C * sizeof *rm);
    memcpy(rrv, rv, C * sizeof *rv);
    ref_bn_forward_training(v, x, gp, bp, d.epsilon, d.exp_avg_factor, tc->unbiased, ry, rmean, rinv, rrm,
                            rrv);
    double *gy = dalloc(n), *gm = dalloc(C), *gi = dalloc(C), *grm = dalloc(C), *grv = dalloc(C);
    dev_to_double(my, n, gy);
    dev_to_double(msm, C, gm);
    dev_to_double(msi, C, gi);
    dev_to_double(mrm, C, grm);
    dev_to_double(mrv, C, grv);

    double tol_y = BIG_MEAN(tc->data) ? 2e-4 : 2e-5;
    cr_expect(!any_nan(gy, n), "%s: y has NaN", tc->name);
    check_vec("y", tc->name, gy, ry, n, tol_y);
    double *var_ref = dalloc(C), *mean_ref = dalloc(C);
    ref_bn_stats(v, x, mean_ref, var_ref);
    for (size_t c = 0; c < C; ++c) {
        double std = sqrt(var_ref[c]);
        double mtol = 2 * ulp_of(mean_ref[c]) + 1e-5 * std + 1e-30;
        cr_expect(fabs(gm[c] - rmean[c]) <= mtol, "%s: mean[%zu] %.9g vs %.9g (tol %.3g)", tc->name, c,
                  gm[c], rmean[c], mtol);
        /* variance relative error from invstd: var = 1/invstd^2 - eps */
        double vg = 1.0 / (gi[c] * gi[c]) - d.epsilon, vr = var_ref[c];
        double vtol = 1e-4 * vr + 2e-7 * d.epsilon * 10;
        cr_expect(fabs(vg - vr) <= vtol, "%s: var[%zu] %.9g vs %.9g", tc->name, c, vg, vr);
        cr_expect(fabs(gi[c] - rinv[c]) <= 1e-4 * rinv[c], "%s: invstd[%zu] %.9g vs %.9g", tc->name, c,
                  gi[c], rinv[c]);
        cr_expect(fabs(grm[c] - rrm[c]) <= 2 * ulp_of(rrm[c]) + 1e-5 * std * d.exp_avg_factor + 1e-30,
                  "%s: running_mean[%zu] %.9g vs %.9g", tc->name, c, grm[c], rrm[c]);
        cr_expect(fabs(grv[c] - rrv[c]) <= 1e-4 * rrv[c] + 1e-7, "%s: running_var[%zu] %.9g vs %.9g",
                  tc->name, c, grv[c], rrv[c]);
    }
    if (tc->data == DATA_CONSTANT) {
        for (size_t o = 0; o < v.outer; ++o)
            for (size_t i = 0; i < v.inner; ++i) {
                size_t e = (o * C) * v.inner + i;
                cr_expect_eq(gy[e], bp ? bp[0] : 0.0, "%s: constant channel y[%zu] = %.9g, not beta",
                             tc->name, e, gy[e]);
            }
    }

    /* ---- forward inference with the updated running statistics ---- */
    cl_mem my2 = dev_from_double(NULL, n, NAN);
    a.y = clnorm_buf(my2, 0);
    st  = clnorm_bn_forward_inference(H.ctx, H.q, &d, &a, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: inference: %s", tc->name, clnorm_last_error(H.ctx));
    double *ry2 = dalloc(n), *gy2 = dalloc(n);
    ref_bn_forward_inference(v, x, gp, bp, grm, grv, d.epsilon, ry2);
    dev_to_double(my2, n, gy2);
    check_vec("inference y", tc->name, gy2, ry2, n, BIG_MEAN(tc->data) ? 1e-4 : 2e-5);

    /* ---- backward with the saved statistics the device produced ---- */
    cl_mem mdy = dev_from_double(dy, n, 0), mdx = dev_from_double(NULL, n, NAN);
    cl_mem mdg = dev_from_double(NULL, C, NAN), mdb = dev_from_double(NULL, C, NAN);
    a.dy     = clnorm_buf(mdy, 0);
    a.dx     = clnorm_buf(mdx, 0);
    a.dgamma = clnorm_buf(mdg, 0);
    a.dbeta  = clnorm_buf(mdb, 0);
    st       = clnorm_bn_backward(H.ctx, H.q, &d, &a, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: backward: %s", tc->name, clnorm_last_error(H.ctx));
    double *rdx = dalloc(n), *rdg = dalloc(C), *rdb = dalloc(C);
    double *gdx = dalloc(n), *gdg = dalloc(C), *gdb = dalloc(C);
    ref_bn_backward(v, x, dy, gp, gm, gi, rdx, rdg, rdb);
    dev_to_double(mdx, n, gdx);
    dev_to_double(mdg, C, gdg);
    dev_to_double(mdb, C, gdb);
    double tol_dx = BIG_MEAN(tc->data) ? 2e-4 : 5e-5;
    cr_expect(!any_nan(gdx, n), "%s: dx has NaN", tc->name);
    check_vec("dx", tc->name, gdx, rdx, n, tol_dx);
    check_vec("dgamma", tc->name, gdg, rdg, C, 1e-4);
    check_vec("dbeta", tc->name, gdb, rdb, C, 1e-4);

    /* ---- backward with frozen running statistics ---- */
    cl_mem mdx2 = dev_from_double(NULL, n, NAN);
    a.dx        = clnorm_buf(mdx2, 0);
    st          = clnorm_bn_backward_frozen(H.ctx, H.q, &d, &a, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: backward_frozen: %s", tc->name, clnorm_last_error(H.ctx));
    ref_bn_backward_frozen(v, x, dy, gp, grm, grv, d.epsilon, rdx, rdg, rdb);
    dev_to_double(mdx2, n, gdx);
    dev_to_double(mdg, C, gdg);
    dev_to_double(mdb, C, gdb);
    check_vec("frozen dx", tc->name, gdx, rdx, n, 2e-5);
    check_vec("frozen dgamma", tc->name, gdg, rdg, C, BIG_MEAN(tc->data) ? 1e-3 : 1e-4);
    check_vec("frozen dbeta", tc->name, gdb, rdb, C, 1e-4);

    /* frozen dx alone: x, dgamma and dbeta absent */
    cl_mem mdx3 = dev_from_double(NULL, n, NAN);
    clnorm_bn_args fa = a;
    fa.x      = clnorm_buf(NULL, 0);
    fa.dgamma = clnorm_buf(NULL, 0);
    fa.dbeta  = clnorm_buf(NULL, 0);
    fa.dx     = clnorm_buf(mdx3, 0);
    st        = clnorm_bn_backward_frozen(H.ctx, H.q, &d, &fa, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: backward_frozen dx only: %s", tc->name, clnorm_last_error(H.ctx));
    dev_to_double(mdx3, n, gdx);
    check_vec("frozen dx only", tc->name, gdx, rdx, n, 2e-5);
    clReleaseMemObject(mdx3);

    cl_mem all[] = {mx, my, mg, mb, mrm, mrv, msm, msi, my2, mdy, mdx, mdg, mdb, mdx2};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
    double *hs[] = {x, dy, g, b, rm, rv, ry, rmean, rinv, rrm, rrv, gy, gm, gi, grm, grv,
                    var_ref, mean_ref, ry2, gy2, rdx, rdg, rdb, gdx, gdg, gdb};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; ++i)
        free(hs[i]);
}

#define SP CLNORM_BN_SPATIAL
#define PA CLNORM_BN_PER_ACTIVATION
#define NCHW CLNORM_NCHW
#define NHWC CLNORM_NHWC

static bn_case cases[] = {
    {"N=1 NCHW", SP, NCHW, 4, {1, 8, 5, 7}, DATA_NORMAL, 1, 1},
    {"N=1 NHWC", SP, NHWC, 4, {1, 5, 7, 8}, DATA_NORMAL, 1, 1},
    {"C=1 NCHW", SP, NCHW, 4, {4, 1, 9, 11}, DATA_NORMAL, 1, 1},
    {"C=1 NHWC", SP, NHWC, 4, {4, 9, 11, 1}, DATA_NORMAL, 0, 0},
    {"spatial 1 NCHW", SP, NCHW, 4, {16, 32, 1, 1}, DATA_NORMAL, 1, 1},
    {"spatial 1 NHWC", SP, NHWC, 4, {16, 1, 1, 32}, DATA_NORMAL, 1, 1},
    {"3x5x33x17 NCHW", SP, NCHW, 4, {3, 5, 33, 17}, DATA_NORMAL, 1, 1},
    {"3x5x33x17 NHWC", SP, NHWC, 4, {3, 33, 17, 5}, DATA_NORMAL, 1, 0},
    /* few channels: the elementwise passes walk rows as one run of vectors
     * with the coefficients expanded over a period of C/gcd(C, 16) vectors */
    {"4x31x29x15 NHWC", SP, NHWC, 4, {4, 31, 29, 15}, DATA_NORMAL, 1, 1},
    {"mean 1e4 4x31x29x7 NHWC", SP, NHWC, 4, {4, 31, 29, 7}, DATA_MEAN_1E4, 1, 1},
    {"4x31x29x12 NHWC", SP, NHWC, 4, {4, 31, 29, 12}, DATA_OUTLIER_FIRST, 1, 1},
    {"3x5x33x17 no affine", SP, NCHW, 4, {3, 5, 33, 17}, DATA_NORMAL, 0, 1},
    {"2x3x512x512 NCHW", SP, NCHW, 4, {2, 3, 512, 512}, DATA_NORMAL, 1, 1},
    {"2x3x512x512 NHWC", SP, NHWC, 4, {2, 512, 512, 3}, DATA_NORMAL, 1, 1},
    {"4x2048x3x3 NCHW", SP, NCHW, 4, {4, 2048, 3, 3}, DATA_NORMAL, 1, 1},
    {"4x2048x3x3 NHWC", SP, NHWC, 4, {4, 3, 3, 2048}, DATA_NORMAL, 1, 1},
    {"3-D spatial NCHW", SP, NCHW, 5, {2, 3, 4, 5, 6}, DATA_NORMAL, 1, 1},
    {"3-D spatial NHWC", SP, NHWC, 5, {2, 4, 5, 6, 3}, DATA_NORMAL, 1, 1},
    {"rank 2 spatial", SP, NCHW, 2, {50, 7}, DATA_NORMAL, 1, 1},
    {"per-activation 1000x3", PA, NCHW, 2, {1000, 3}, DATA_NORMAL, 1, 1},
    {"per-activation 7x4096", PA, NCHW, 2, {7, 4096}, DATA_NORMAL, 1, 1},
    {"per-activation 6x4x5x3", PA, NHWC, 4, {6, 4, 5, 3}, DATA_NORMAL, 1, 0},
    {"mean 1e4 NCHW", SP, NCHW, 4, {8, 4, 16, 16}, DATA_MEAN_1E4, 1, 1},
    {"mean 1e4 NHWC", SP, NHWC, 4, {8, 16, 16, 4}, DATA_MEAN_1E4, 1, 1},
    {"mean 1e6 NCHW", SP, NCHW, 4, {8, 4, 16, 16}, DATA_MEAN_1E6, 1, 1},
    {"mean 1e6 NHWC", SP, NHWC, 4, {8, 16, 16, 4}, DATA_MEAN_1E6, 1, 1},
    {"mean 1e6 long NCHW", SP, NCHW, 4, {4, 2, 300, 300}, DATA_MEAN_1E6, 1, 1},
    {"mean 1e6 per-activation", PA, NCHW, 2, {5000, 6}, DATA_MEAN_1E6, 1, 1},
    /* long channels (90000-value rows): every span after a channel's first
     * is one pass about the mean so far; the step moves that mean */
    {"step 1e6 long NCHW", SP, NCHW, 4, {4, 2, 300, 300}, DATA_STEP_1E6, 1, 1},
    {"step 1e6 NCHW 6x3x64x64", SP, NCHW, 4, {6, 3, 64, 64}, DATA_STEP_1E6, 1, 1},
    /* slices of up to 8192 values: the first row by two passes, then
     * chunks of 1, 2, 4, 8 and 9 rows about the mean so far; the step at
     * row 12 lands inside a chunk */
    {"step 1e6 NCHW 24x4x9x9", SP, NCHW, 4, {24, 4, 9, 9}, DATA_STEP_1E6, 1, 1},
    {"constant channel NCHW", SP, NCHW, 4, {3, 4, 10, 10}, DATA_CONSTANT, 1, 1},
    {"constant channel NHWC", SP, NHWC, 4, {3, 10, 10, 4}, DATA_CONSTANT, 1, 1},
    {"outlier first NCHW", SP, NCHW, 4, {4, 3, 20, 20}, DATA_OUTLIER_FIRST, 1, 1},
    {"outlier first NHWC", SP, NHWC, 4, {4, 20, 20, 3}, DATA_OUTLIER_FIRST, 1, 1},
    {"N*spatial = 1 biased", SP, NCHW, 4, {1, 16, 1, 1}, DATA_NORMAL, 1, 0},
    /* channels-last shapes the CPU one-kernel column walk takes (C % 16 == 0;
     * on a 2-unit CPU C >= 1024, or C >= 128 for tensors up to 4 MB) */
    {"mean 1e6 NHWC C=256", SP, NHWC, 4, {8, 16, 16, 256}, DATA_MEAN_1E6, 1, 1},
    {"step 1e6 NHWC C=256", SP, NHWC, 4, {8, 16, 16, 256}, DATA_STEP_1E6, 1, 1},
    {"step 1e6 per-activation 512x128", PA, NCHW, 2, {512, 128}, DATA_STEP_1E6, 1, 1},
    {"outlier first NHWC C=512", SP, NHWC, 4, {3, 7, 9, 512}, DATA_OUTLIER_FIRST, 1, 1},
    {"constant channel per-activation 37x1024", PA, NCHW, 2, {37, 1024}, DATA_CONSTANT, 1, 1},
    {"mean 1e4 per-activation 100x256", PA, NCHW, 2, {100, 256}, DATA_MEAN_1E4, 1, 1},
    {"outlier first per-activation 300x128", PA, NCHW, 2, {300, 128}, DATA_OUTLIER_FIRST, 1, 1},
    /* C a multiple of 16 but not of 64: the last work-item owns fewer channels */
    {"per-activation 6x6x6x6x6", PA, NHWC, 5, {6, 6, 6, 6, 6}, DATA_NORMAL, 1, 1},
    {"NHWC 3x2x5x1040", SP, NHWC, 4, {3, 2, 5, 1040}, DATA_MEAN_1E4, 1, 1},
    /* rows enough for the CPU column streams (not the one-kernel walk), C a
     * multiple of 16: frozen backward forms dx in the gradient sums' walk */
    {"NHWC 3x50x40x80", SP, NHWC, 4, {3, 50, 40, 80}, DATA_NORMAL, 1, 1},
    {"mean 1e4 per-activation 9000x48", PA, NCHW, 2, {9000, 48}, DATA_MEAN_1E4, 1, 1},
    /* C >= 1024 and rows enough for several per work-item: the column
     * streams' apply takes rows four at a time (bn_apply_cstream, CS_RG),
     * with two or three rows left over per work-item */
    {"mean 1e4 NHWC 3x9x9x1024", SP, NHWC, 4, {3, 9, 9, 1024}, DATA_MEAN_1E4, 1, 1},
    {"outlier first per-activation 300x2048", PA, NCHW, 2, {300, 2048}, DATA_OUTLIER_FIRST, 1, 1},
    /* backward: 2048 channels or more take blocks of 128 (bn_bwd_cfused);
     * 2080 leaves the last work-item two vectors */
    {"mean 1e4 per-activation 40x2080", PA, NCHW, 2, {40, 2080}, DATA_MEAN_1E4, 1, 1},
    /* ... and past 1024 rows, training forward takes the column streams
     * too (CF_WIDE_MAX_BLOCK) */
    {"mean 1e4 per-activation 1100x1024", PA, NCHW, 2, {1100, 1024}, DATA_MEAN_1E4, 1, 1},
    /* channels first, small maps: CPUs walk blocks of channels in memory
     * order (bn_fwd_bfused, bn_bwd_bfused); 70 channels leave the last
     * work-item's block part-full, 8x16 is whole vectors, 6x6 and 5x9 end
     * on a tail */
    {"small maps mean 1e4 4x70x7x7", SP, NCHW, 4, {4, 70, 7, 7}, DATA_MEAN_1E4, 1, 1},
    {"small maps outlier 5x48x8x16", SP, NCHW, 4, {5, 48, 8, 16}, DATA_OUTLIER_FIRST, 1, 1},
    {"small maps mean 1e6 3x40x6x6", SP, NCHW, 4, {3, 40, 6, 6}, DATA_MEAN_1E6, 1, 1},
    {"small maps constant 2x64x5x9", SP, NCHW, 4, {2, 64, 5, 9}, DATA_CONSTANT, 0, 1},
    /* the forward block walk's statistics take the first row by two
     * passes, then chunks of rows (1, 2, 4, ...) in one pass about the mean
     * so far: 3 more from row 6 of 12 (from row 20 of 40) puts a chunk
     * away from its shift */
    {"small maps step 1e6 12x40x7x7", SP, NCHW, 4, {12, 40, 7, 7}, DATA_STEP_1E6, 1, 1},
    {"tiny maps step 1e6 40x48x3x3", SP, NCHW, 4, {40, 48, 3, 3}, DATA_STEP_1E6, 1, 1},
    /* maps of 129 - 256 values: the block walk backward only */
    {"small maps mean 1e4 3x50x14x15", SP, NCHW, 4, {3, 50, 14, 15}, DATA_MEAN_1E4, 1, 1},
    {"small maps mean 1e6 3x40x27x29", SP, NCHW, 4, {3, 40, 27, 29}, DATA_MEAN_1E6, 1, 1},
    /* maps under 32 values (the column streams' range) take the same walk
     * on small tensors: 16, 9, 25 and 4 values, blocks of 2 - 4 channels */
    {"tiny maps mean 1e4 8x64x4x4", SP, NCHW, 4, {8, 64, 4, 4}, DATA_MEAN_1E4, 1, 1},
    {"tiny maps outlier 6x40x3x3", SP, NCHW, 4, {6, 40, 3, 3}, DATA_OUTLIER_FIRST, 1, 1},
    {"tiny maps mean 1e6 5x48x5x5", SP, NCHW, 4, {5, 48, 5, 5}, DATA_MEAN_1E6, 1, 1},
    {"tiny maps constant 4x36x2x2", SP, NCHW, 4, {4, 36, 2, 2}, DATA_CONSTANT, 1, 1},
    /* few channels: tiny maps through the column streams (CPUs), whose
     * backward spreads the channel means over the columns */
    {"tiny maps mean 1e4 300x8x3x3", SP, NCHW, 4, {300, 8, 3, 3}, DATA_MEAN_1E4, 1, 1},
};

ParameterizedTestParameters(bn, grid)
{
    return cr_make_param_array(bn_case, cases, sizeof cases / sizeof *cases);
}

ParameterizedTest(bn_case *tc, bn, grid, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    run_case(tc);
}

/* Two runs of every operation on the same inputs give the same bits. */
static void run_all(const clnorm_bn_desc *d, size_t n, size_t C, const double *x, const double *dy,
                    float *out, size_t *out_n)
{
    cl_mem mx = dev_from_double(x, n, 0), mdy = dev_from_double(dy, n, 0);
    cl_mem my = dev_from_double(NULL, n, 0), mdx = dev_from_double(NULL, n, 0);
    cl_mem vecs[6];
    for (int i = 0; i < 6; ++i)
        vecs[i] = dev_from_double(NULL, C, i == 3 ? 1.0f : 0.0f);
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(mx, 0);
    a.y = clnorm_buf(my, 0);
    a.dy = clnorm_buf(mdy, 0);
    a.dx = clnorm_buf(mdx, 0);
    a.saved_mean = clnorm_buf(vecs[0], 0);
    a.saved_invstd = clnorm_buf(vecs[1], 0);
    a.running_mean = clnorm_buf(vecs[2], 0);
    a.running_var = clnorm_buf(vecs[3], 0);
    a.dgamma = clnorm_buf(vecs[4], 0);
    a.dbeta = clnorm_buf(vecs[5], 0);
    cr_assert_eq(clnorm_bn_forward_training(H.ctx, H.q, d, &a, 0, NULL, NULL), CLNORM_SUCCESS);
    cr_assert_eq(clnorm_bn_backward(H.ctx, H.q, d, &a, 0, NULL, NULL), CLNORM_SUCCESS);
    size_t k = 0;
    dev_read(my, n * 4, out + k);
    k += n;
    dev_read(mdx, n * 4, out + k);
    k += n;
    for (int i = 0; i < 6; ++i, k += C)
        dev_read(vecs[i], C * 4, out + k);
    *out_n = k;
    cl_mem all[] = {mx, mdy, my, mdx};
    for (int i = 0; i < 4; ++i)
        clReleaseMemObject(all[i]);
    for (int i = 0; i < 6; ++i)
        clReleaseMemObject(vecs[i]);
}

Test(bn, deterministic, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    static const struct { clnorm_layout l; size_t dims[4]; } shapes[] = {
        {CLNORM_NCHW, {4, 6, 129, 131}}, {CLNORM_NHWC, {4, 129, 131, 6}}};
    for (size_t s = 0; s < 2; ++s) {
        clnorm_bn_desc d;
        clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, shapes[s].l, 4, shapes[s].dims);
        size_t n = 4 * 6 * 129 * 131, C = 6, m1 = 0, m2 = 0;
        ref_rng r = ref_rng_seed(7);
        double *x = dalloc(n), *dy = dalloc(n);
        ref_fill_normal(&r, x, n, 3.0, 2.0);
        ref_fill_normal(&r, dy, n, 0.0, 1.0);
        float *o1 = malloc((2 * n + 6 * C) * sizeof *o1), *o2 = malloc((2 * n + 6 * C) * sizeof *o2);
        run_all(&d, n, C, x, dy, o1, &m1);
        run_all(&d, n, C, x, dy, o2, &m2);
        cr_assert_eq(m1, m2);
        cr_expect(memcmp(o1, o2, m1 * sizeof *o1) == 0, "layout %d: two runs differ", (int)shapes[s].l);
        free(x);
        free(dy);
        free(o1);
        free(o2);
    }
}

/* A second context on H's device, made while the environment holds the
 * given variables (pairs of name and value, NULL-terminated); they are
 * removed again at once. */
static clnorm_context *context_with_env(const char *const *vars)
{
    for (size_t i = 0; vars[i]; i += 2)
        setenv(vars[i], vars[i + 1], 1);
    clnorm_context *c  = NULL;
    clnorm_status   st = clnorm_context_create(H.cl, clnorm_context_device(H.ctx), &c);
    for (size_t i = 0; vars[i]; i += 2)
        unsetenv(vars[i]);
    cr_assert_eq(st, CLNORM_SUCCESS, "second context: %s", clnorm_last_error(NULL));
    return c;
}

static void free_all(double **p, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        free(p[i]);
}

/* Inference and frozen dx alone, channels first, through buffers at odd
 * element offsets: on CPUs these walk rows in memory order, a run of rows
 * per work-item (655 rows here: the last work-item's run is part-full;
 * rows of 63 values: a vector tail on every row, and streaming stores that
 * start mid-line). Checked against the reference, the values before each
 * offset untouched, and bitwise against a context made with CLNORM_NO_FLAT
 * (the walk by channel, the same arithmetic per value). */
static void infer_offsets_run(clnorm_context *ctx, const clnorm_bn_desc *d, cl_mem mx, cl_mem mv[4], cl_mem my,
                              cl_mem mdx)
{
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x            = clnorm_buf(mx, 3);
    a.y            = clnorm_buf(my, 5);
    a.gamma        = clnorm_buf(mv[0], 2);
    a.beta         = clnorm_buf(mv[1], 2);
    a.running_mean = clnorm_buf(mv[2], 2);
    a.running_var  = clnorm_buf(mv[3], 2);
    clnorm_status st = clnorm_bn_forward_inference(ctx, H.q, d, &a, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "inference: %s", clnorm_last_error(ctx));
    clnorm_bn_args f;
    memset(&f, 0, sizeof f);
    f.dy           = clnorm_buf(mx, 3);
    f.dx           = clnorm_buf(mdx, 5);
    f.gamma        = clnorm_buf(mv[0], 2);
    f.running_mean = clnorm_buf(mv[2], 2);
    f.running_var  = clnorm_buf(mv[3], 2);
    st             = clnorm_bn_backward_frozen(ctx, H.q, d, &f, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "backward_frozen dx alone: %s", clnorm_last_error(ctx));
    clFinish(H.q);
}

Test(bn, inference_offsets_flat_walk, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    size_t         dims[4] = {5, 131, 7, 9}, C = 131, n = 5 * 131 * 63;
    clnorm_bn_desc d;
    cr_assert_eq(clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, dims), CLNORM_SUCCESS);
    ref_view v = {.outer = 5, .channels = C, .inner = 63};
    ref_rng  r = ref_rng_seed(99);
    double  *x = dalloc(n + 3), *vec[4];
    ref_fill_normal(&r, x, n + 3, 0.5, 2.0);
    round_to_float(x, n + 3);
    for (int i = 0; i < 4; ++i) {
        vec[i] = dalloc(C + 2);
        ref_fill_uniform(&r, vec[i], C + 2, i == 3 ? 0.5 : -1.0, i == 3 ? 2.0 : 1.0);
        round_to_float(vec[i], C + 2);
    }
    cl_mem mx = dev_from_double(x, n + 3, 0), mv[4];
    for (int i = 0; i < 4; ++i)
        mv[i] = dev_from_double(vec[i], C + 2, 0);
    cl_mem out[2][2]; /* [context][y, dx] */
    clnorm_context *noflat = context_with_env((const char *const[]){"CLNORM_NO_FLAT", "1", NULL});
    for (int c = 0; c < 2; ++c) {
        out[c][0] = dev_from_double(NULL, n + 5, NAN);
        out[c][1] = dev_from_double(NULL, n + 5, NAN);
        infer_offsets_run(c ? noflat : H.ctx, &d, mx, mv, out[c][0], out[c][1]);
    }
    double *ry = dalloc(n), *rdx = dalloc(n), *rdg = dalloc(C), *rdb = dalloc(C), *got = dalloc(n + 5);
    ref_bn_forward_inference(v, x + 3, vec[0] + 2, vec[1] + 2, vec[2] + 2, vec[3] + 2, d.epsilon, ry);
    ref_bn_backward_frozen(v, x + 3, x + 3, vec[0] + 2, vec[2] + 2, vec[3] + 2, d.epsilon, rdx, rdg, rdb);
    for (int k = 0; k < 2; ++k) {
        dev_to_double(out[0][k], n + 5, got);
        for (size_t i = 0; i < 5; ++i)
            cr_expect(isnan(got[i]), "%s: value %zu before the offset written", k ? "dx" : "y", i);
        check_vec(k ? "frozen dx alone" : "inference y", "offsets 5x131x7x9", got + 5, k ? rdx : ry, n, 2e-5);
        float *a = malloc((n + 5) * sizeof *a), *b = malloc((n + 5) * sizeof *b);
        dev_read(out[0][k], (n + 5) * sizeof *a, a);
        dev_read(out[1][k], (n + 5) * sizeof *b, b);
        cr_expect(memcmp(a + 5, b + 5, n * sizeof *a) == 0, "%s: the flat walk and the walk by channel differ",
                  k ? "dx" : "y");
        free(a);
        free(b);
    }
    clnorm_context_destroy(noflat);
    for (int c = 0; c < 2; ++c)
        for (int k = 0; k < 2; ++k)
            clReleaseMemObject(out[c][k]);
    clReleaseMemObject(mx);
    for (int i = 0; i < 4; ++i)
        clReleaseMemObject(mv[i]);
    double *hs[] = {x, ry, rdx, rdg, rdb, got, vec[0], vec[1], vec[2], vec[3]};
    free_all(hs, sizeof hs / sizeof *hs);
}

/* Training forward and backward, channels first with small maps, through
 * buffers at element offsets and with streaming stores forced on: on CPUs
 * the walk in memory order by blocks of channels (bn_fwd_bfused,
 * bn_bwd_bfused), whose rows of 49 values start mid-vector at every
 * channel. 75 channels: the last work-item's block is part-full. Against
 * the reference, nothing before an offset written, and the same bits from
 * a second call. */
Test(bn, small_maps_offsets, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    size_t         C = 75, I = 49, n = 3 * 75 * 49, dims[4] = {3, 75, 7, 7};
    clnorm_bn_desc d;
    cr_assert_eq(clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, dims), CLNORM_SUCCESS);
    d.epsilon = 1e-5;
    ref_view v = {.outer = 3, .channels = C, .inner = I};
    ref_rng  r = ref_rng_seed(31);
    double  *x = dalloc(n + 3), *dy = dalloc(n + 1), *g = dalloc(C + 2), *b = dalloc(C + 2);
    ref_fill_normal(&r, x, n + 3, 1e4, 3.0);
    ref_fill_normal(&r, dy, n + 1, 0.1, 1.0);
    ref_fill_uniform(&r, g, C + 2, 0.5, 1.5);
    ref_fill_uniform(&r, b, C + 2, -1.0, 1.0);
    round_to_float(x, n + 3);
    round_to_float(dy, n + 1);
    round_to_float(g, C + 2);
    round_to_float(b, C + 2);
    double *ry = dalloc(n), *rm = dalloc(C), *ri = dalloc(C), *rdx = dalloc(n), *rdg = dalloc(C),
           *rdb = dalloc(C), *got = dalloc(n + 16);
    ref_bn_forward_training(v, x + 3, g + 2, b + 2, d.epsilon, 0.1, 1, ry, rm, ri, NULL, NULL);
    cl_mem mx = dev_from_double(x, n + 3, 0), mdy = dev_from_double(dy, n + 1, 0);
    cl_mem mg = dev_from_double(g, C + 2, 0), mb = dev_from_double(b, C + 2, 0);
    clnorm_context *sc = context_with_env((const char *const[]){"CLNORM_STREAM_MIN_BYTES", "0", NULL});
    float *bits[2];
    for (int k = 0; k < 2; ++k) {
        cl_mem my = dev_from_double(NULL, n + 16, NAN), mdx = dev_from_double(NULL, n + 5, NAN);
        cl_mem msm = dev_from_double(NULL, C + 1, NAN), msi = dev_from_double(NULL, C + 1, NAN);
        cl_mem mdg = dev_from_double(NULL, C, NAN), mdb = dev_from_double(NULL, C, NAN);
        clnorm_bn_args a;
        memset(&a, 0, sizeof a);
        a.x            = clnorm_buf(mx, 3);
        a.y            = clnorm_buf(my, 16);
        a.gamma        = clnorm_buf(mg, 2);
        a.beta         = clnorm_buf(mb, 2);
        a.saved_mean   = clnorm_buf(msm, 1);
        a.saved_invstd = clnorm_buf(msi, 1);
        clnorm_status st = clnorm_bn_forward_training(sc, H.q, &d, &a, 0, NULL, NULL);
        cr_assert_eq(st, CLNORM_SUCCESS, "forward_training: %s", clnorm_last_error(sc));
        a.dy     = clnorm_buf(mdy, 1);
        a.dx     = clnorm_buf(mdx, 5);
        a.dgamma = clnorm_buf(mdg, 0);
        a.dbeta  = clnorm_buf(mdb, 0);
        st       = clnorm_bn_backward(sc, H.q, &d, &a, 0, NULL, NULL);
        cr_assert_eq(st, CLNORM_SUCCESS, "backward: %s", clnorm_last_error(sc));
        clFinish(H.q);
        double gm[76], gi[76];
        dev_to_double(msm, C + 1, gm);
        dev_to_double(msi, C + 1, gi);
        cr_expect(isnan(gm[0]) && isnan(gi[0]), "saved statistics written before their offset");
        check_vec("saved mean", "small maps offsets", gm + 1, rm, C, 3e-7);
        check_vec("saved invstd", "small maps offsets", gi + 1, ri, C, 1e-4);
        dev_to_double(my, n + 16, got);
        for (size_t i = 0; i < 16; ++i)
            cr_expect(isnan(got[i]), "y[%zu] before the offset written", i);
        check_vec("y", "small maps offsets", got + 16, ry, n, 2e-5);
        ref_bn_backward(v, x + 3, dy + 1, g + 2, gm + 1, gi + 1, rdx, rdg, rdb);
        dev_to_double(mdx, n + 5, got);
        for (size_t i = 0; i < 5; ++i)
            cr_expect(isnan(got[i]), "dx[%zu] before the offset written", i);
        check_vec("dx", "small maps offsets", got + 5, rdx, n, 5e-5);
        dev_to_double(mdg, C, got);
        check_vec("dgamma", "small maps offsets", got, rdg, C, 1e-4);
        dev_to_double(mdb, C, got);
        check_vec("dbeta", "small maps offsets", got, rdb, C, 1e-4);
        bits[k] = malloc((2 * n + 2 * C) * sizeof(float));
        dev_read(my, n * sizeof(float), bits[k]); /* y's first n floats: offset and all */
        dev_read(mdx, n * sizeof(float), bits[k] + n);
        dev_read(msm, C * sizeof(float), bits[k] + 2 * n);
        dev_read(msi, C * sizeof(float), bits[k] + 2 * n + C);
        cl_mem all[] = {my, mdx, msm, msi, mdg, mdb};
        for (size_t i = 0; i < 6; ++i)
            clReleaseMemObject(all[i]);
    }
    cr_expect(memcmp(bits[0], bits[1], (2 * n + 2 * C) * sizeof(float)) == 0, "two calls differ");
    free(bits[0]);
    free(bits[1]);
    clnorm_context_destroy(sc);
    cl_mem all[] = {mx, mdy, mg, mb};
    for (size_t i = 0; i < 4; ++i)
        clReleaseMemObject(all[i]);
    double *hs[] = {x, dy, g, b, ry, rm, ri, rdx, rdg, rdb, got};
    free_all(hs, sizeof hs / sizeof *hs);
}

/* Channels first with slices over 8192 values: on CPUs a work-item owns a
 * run of channels and reads the next one's rows while it writes this one's
 * (bn_fwd_pfused). The same statistics in the same order as the kernel per
 * channel: the same bits as a context made with CLNORM_NO_PFUSED, and the
 * reference's values. (4,19,50,50): runs of 3 channels, the last one 1;
 * (2,9,300,300) with streaming stores forced: slices of 720 KB, past the
 * per-channel kernel's read-ahead, and y at an offset that starts mid-line;
 * (4,37,50,50) with streaming stores: slices of 40 KB, three stages (runs
 * of 5 channels on 2 compute units, 3 on 4, the last one shorter). */
static void pipelined_case(const size_t dims[4], int stream, size_t yoff)
{
    size_t         C = dims[1], I = dims[2] * dims[3], n = dims[0] * C * I;
    clnorm_bn_desc d;
    cr_assert_eq(clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, dims), CLNORM_SUCCESS);
    d.exp_avg_factor = 0.25;
    ref_view v = {.outer = dims[0], .channels = C, .inner = I};
    ref_rng  r = ref_rng_seed(77 + n);
    double  *x = dalloc(n), *vec[4];
    ref_fill_normal(&r, x, n, 1e4, 2.0);
    x[0] = 3e4; /* an outlier first */
    round_to_float(x, n);
    for (int i = 0; i < 4; ++i) {
        vec[i] = dalloc(C);
        ref_fill_uniform(&r, vec[i], C, i == 3 ? 0.5 : -1.0, i == 3 ? 2.0 : 1.0);
        round_to_float(vec[i], C);
    }
    double *ry = dalloc(n), *rm = dalloc(C), *ri = dalloc(C), *got = dalloc(n + yoff);
    double *rrm = dalloc(C), *rrv = dalloc(C);
    memcpy(rrm, vec[2], C * sizeof *rrm);
    memcpy(rrv, vec[3], C * sizeof *rrv);
    ref_bn_forward_training(v, x, vec[0], vec[1], d.epsilon, 0.25, 1, ry, rm, ri, rrm, rrv);
    const char *sb = stream ? "0" : "1099511627776";
    clnorm_context *cx[2] = {
        context_with_env((const char *const[]){"CLNORM_STREAM_MIN_BYTES", sb, NULL}),
        context_with_env((const char *const[]){"CLNORM_STREAM_MIN_BYTES", sb, "CLNORM_NO_PFUSED", "1", NULL})};
    cl_mem mx = dev_from_double(x, n, 0), mg = dev_from_double(vec[0], C, 0), mb = dev_from_double(vec[1], C, 0);
    float *bits[2];
    for (int c = 0; c < 2; ++c) {
        cl_mem my = dev_from_double(NULL, n + yoff, NAN), msm = dev_from_double(NULL, C, NAN);
        cl_mem msi = dev_from_double(NULL, C, NAN), mrm = dev_from_double(vec[2], C, 0);
        cl_mem mrv = dev_from_double(vec[3], C, 0);
        clnorm_bn_args a;
        memset(&a, 0, sizeof a);
        a.x              = clnorm_buf(mx, 0);
        a.y              = clnorm_buf(my, yoff);
        a.gamma          = clnorm_buf(mg, 0);
        a.beta           = clnorm_buf(mb, 0);
        a.saved_mean     = clnorm_buf(msm, 0);
        a.saved_invstd   = clnorm_buf(msi, 0);
        a.running_mean   = clnorm_buf(mrm, 0);
        a.running_var    = clnorm_buf(mrv, 0);
        clnorm_status st = clnorm_bn_forward_training(cx[c], H.q, &d, &a, 0, NULL, NULL);
        cr_assert_eq(st, CLNORM_SUCCESS, "forward_training: %s", clnorm_last_error(cx[c]));
        clFinish(H.q);
        const char *name = c ? "per channel" : "pipelined";
        dev_to_double(my, n + yoff, got);
        for (size_t i = 0; i < yoff; ++i)
            cr_expect(isnan(got[i]), "%s: y[%zu] before the offset written", name, i);
        check_vec("y", name, got + yoff, ry, n, 2e-5);
        dev_to_double(msm, C, got);
        check_vec("saved mean", name, got, rm, C, 3e-7);
        dev_to_double(msi, C, got);
        check_vec("saved invstd", name, got, ri, C, 1e-4);
        dev_to_double(mrv, C, got);
        check_vec("running var", name, got, rrv, C, 1e-4);
        bits[c] = malloc((n + 4 * C) * sizeof(float));
        dev_read(my, n * sizeof(float), bits[c]);
        cl_mem vs[4] = {msm, msi, mrm, mrv};
        for (int k = 0; k < 4; ++k)
            dev_read(vs[k], C * sizeof(float), bits[c] + n + k * C);
        cl_mem all[] = {my, msm, msi, mrm, mrv};
        for (size_t i = 0; i < 5; ++i)
            clReleaseMemObject(all[i]);
    }
    cr_expect(memcmp(bits[0], bits[1], (n + 4 * C) * sizeof(float)) == 0,
              "(%zu,%zu,%zu,%zu): the pipelined walk and the walk by channel differ", dims[0], dims[1],
              dims[2], dims[3]);
    free(bits[0]);
    free(bits[1]);
    for (int c = 0; c < 2; ++c)
        clnorm_context_destroy(cx[c]);
    clReleaseMemObject(mx);
    clReleaseMemObject(mg);
    clReleaseMemObject(mb);
    double *hs[] = {x, ry, rm, ri, got, rrm, rrv, vec[0], vec[1], vec[2], vec[3]};
    free_all(hs, sizeof hs / sizeof *hs);
}

Test(bn, pipelined_same_bits, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    pipelined_case((const size_t[]){4, 19, 50, 50}, 0, 0);
    pipelined_case((const size_t[]){2, 9, 300, 300}, 1, 5);
    pipelined_case((const size_t[]){4, 37, 50, 50}, 1, 3);
}

/* Frozen backward with dgamma/dbeta, where dx comes out of the gradient
 * sums' walk: channels last with rows enough for the CPU column streams
 * (bitwise against a context made with CLNORM_NO_FLAT, the separate dx
 * pass), and channels first through the one-kernel walks, per channel and
 * (maps of up to 128 values) per block of channels (bitwise against their
 * two walks, -DFROZEN_ONE_WALK=0), on maps over SPAN values and on short
 * ones. With dx at offsets 16 and 3; with streaming stores (stream, forced
 * on for these small tensors) rows that do not start vector-aligned
 * (offset 3, 30x30 and 7x7 maps) take the two walks. Against the
 * reference. */
static void frozen_dx_case(clnorm_layout layout, size_t hh, size_t ww, int stream)
{
    int            last = layout == CLNORM_NHWC;
    size_t         C = 80, n = 2 * hh * ww * 80;
    size_t         dims[4] = {2, last ? hh : C, last ? ww : hh, last ? C : ww};
    clnorm_bn_desc d;
    cr_assert_eq(clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, layout, 4, dims), CLNORM_SUCCESS);
    ref_view v = {.outer = last ? 2 * hh * ww : 2, .channels = C, .inner = last ? 1 : hh * ww};
    ref_rng  r = ref_rng_seed(5);
    double  *x = dalloc(n), *dy = dalloc(n), *vec[3];
    ref_fill_normal(&r, x, n, 2.0, 1.5);
    ref_fill_normal(&r, dy, n, 0.1, 1.0);
    round_to_float(x, n);
    round_to_float(dy, n);
    for (int i = 0; i < 3; ++i) {
        vec[i] = dalloc(C);
        ref_fill_uniform(&r, vec[i], C, i == 2 ? 0.5 : -1.0, i == 2 ? 2.0 : 1.0);
        round_to_float(vec[i], C);
    }
    double *rdx = dalloc(n), *rdg = dalloc(C), *rdb = dalloc(C), *got = dalloc(n + 16);
    ref_bn_backward_frozen(v, x, dy, vec[0], vec[1], vec[2], d.epsilon, rdx, rdg, rdb);
    cl_mem mx = dev_from_double(x, n, 0), mdy = dev_from_double(dy, n, 0), mv[3];
    for (int i = 0; i < 3; ++i)
        mv[i] = dev_from_double(vec[i], C, 0);
    const char     *smin  = stream ? "0" : "1073741824";
    clnorm_context *cx[2] = {
        context_with_env((const char *const[]){"CLNORM_STREAM_MIN_BYTES", smin, NULL}),
        last ? context_with_env((const char *const[]){"CLNORM_STREAM_MIN_BYTES", smin, "CLNORM_NO_FLAT", "1", NULL})
             : context_with_env((const char *const[]){"CLNORM_STREAM_MIN_BYTES", smin, "CLNORM_BUILD_OPTIONS",
                                                      "-DFROZEN_ONE_WALK=0", NULL})};
    static const size_t offs[2] = {16, 3};
    for (int o = 0; o < 2; ++o) {
        size_t off = offs[o];
        float *bits[2];
        double gs[2][2 * 80];
        for (int c = 0; c < 2; ++c) {
            cl_mem         mdx = dev_from_double(NULL, n + off, NAN);
            cl_mem         mdg = dev_from_double(NULL, C, NAN), mdb = dev_from_double(NULL, C, NAN);
            clnorm_bn_args a;
            memset(&a, 0, sizeof a);
            a.x            = clnorm_buf(mx, 0);
            a.dy           = clnorm_buf(mdy, 0);
            a.dx           = clnorm_buf(mdx, off);
            a.gamma        = clnorm_buf(mv[0], 0);
            a.running_mean = clnorm_buf(mv[1], 0);
            a.running_var  = clnorm_buf(mv[2], 0);
            a.dgamma       = clnorm_buf(mdg, 0);
            a.dbeta        = clnorm_buf(mdb, 0);
            clnorm_status st = clnorm_bn_backward_frozen(cx[c], H.q, &d, &a, 0, NULL, NULL);
            cr_assert_eq(st, CLNORM_SUCCESS, "backward_frozen: %s", clnorm_last_error(cx[c]));
            clFinish(H.q);
            dev_to_double(mdx, n + off, got);
            for (size_t i = 0; i < off; ++i)
                cr_expect(isnan(got[i]), "offset %zu: dx[%zu] before the offset written", off, i);
            check_vec("frozen dx", c ? "separate dx walk" : "dx in the sums walk", got + off, rdx, n, 2e-5);
            dev_to_double(mdg, C, gs[c]);
            dev_to_double(mdb, C, gs[c] + C);
            check_vec("frozen dgamma", "dx in the sums walk", gs[c], rdg, C, 1e-4);
            check_vec("frozen dbeta", "dx in the sums walk", gs[c] + C, rdb, C, 1e-4);
            bits[c] = malloc((n + off) * sizeof(float));
            dev_read(mdx, (n + off) * sizeof(float), bits[c]);
            clReleaseMemObject(mdx);
            clReleaseMemObject(mdg);
            clReleaseMemObject(mdb);
        }
        cr_expect(memcmp(bits[0], bits[1], (n + off) * sizeof(float)) == 0,
                  "offset %zu: dx from the sums walk and from the dx pass differ", off);
        cr_expect(memcmp(gs[0], gs[1], sizeof gs[0]) == 0, "offset %zu: dgamma/dbeta differ", off);
        free(bits[0]);
        free(bits[1]);
    }
    for (int c = 0; c < 2; ++c)
        clnorm_context_destroy(cx[c]);
    clReleaseMemObject(mx);
    clReleaseMemObject(mdy);
    for (int i = 0; i < 3; ++i)
        clReleaseMemObject(mv[i]);
    double *hs[] = {x, dy, rdx, rdg, rdb, got, vec[0], vec[1], vec[2]};
    free_all(hs, sizeof hs / sizeof *hs);
}

Test(bn, frozen_dx_in_sums_walk, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    frozen_dx_case(CLNORM_NHWC, 60, 60, 1);
    frozen_dx_case(CLNORM_NCHW, 60, 60, 1);
    frozen_dx_case(CLNORM_NCHW, 28, 28, 1);
    frozen_dx_case(CLNORM_NCHW, 30, 30, 1);
    frozen_dx_case(CLNORM_NCHW, 8, 8, 1);
    frozen_dx_case(CLNORM_NCHW, 7, 7, 1);
    frozen_dx_case(CLNORM_NCHW, 7, 7, 0);
    frozen_dx_case(CLNORM_NCHW, 30, 30, 0);
}

/* The unbiased running variance is undefined for one value per channel:
 * a specific status, and nothing written. */
Test(bn, single_value_unbiased_rejected, .init = harness_init, .fini = harness_fini)
{
    size_t dims[4] = {1, 16, 1, 1};
    clnorm_bn_desc d;
    clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, dims);
    cl_mem mx = dev_from_double(NULL, 16, 1.0f), my = dev_from_double(NULL, 16, 42.0f);
    cl_mem rv = dev_from_double(NULL, 16, 7.0f);
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(mx, 0);
    a.y = clnorm_buf(my, 0);
    a.running_var = clnorm_buf(rv, 0);
    cr_assert_eq(clnorm_bn_forward_training(H.ctx, H.q, &d, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_SHAPE);
    cr_expect(strstr(clnorm_last_error(H.ctx), "running variance") != NULL, "message: %s",
              clnorm_last_error(H.ctx));
    double out[16];
    dev_to_double(my, 16, out);
    for (int i = 0; i < 16; ++i)
        cr_expect_eq(out[i], 42.0);
    dev_to_double(rv, 16, out);
    for (int i = 0; i < 16; ++i)
        cr_expect_eq(out[i], 7.0);
    clReleaseMemObject(mx);
    clReleaseMemObject(my);
    clReleaseMemObject(rv);
}

/* The tuner measures (batch norm, layer norm and group norm classes),
 * writes its per-device file, and a new context reads it back and still
 * computes correctly; CLNORM_TUNE=0 ignores the file. Every kind of choice
 * it stores for the family is checked in test_family (family_tuned). */
#include "internal.h"
#include <stdlib.h>

/* counts the report's lines, and those of the NHWC form of (N,2048,7,7),
 * whose slice and channel count equal the NCHW form's but whose walk does
 * not: it must be a class of its own */
typedef struct tune_seen {
    int lines, nhwc_7x7;
} tune_seen;

static void tune_line(void *user, const char *line)
{
    tune_seen *s = user;
    ++s->lines;
    s->nhwc_7x7 += strstr(line, "NHWC cols  (4,7,7,2048)") != NULL;
}

Test(bn, tuner_round_trip, .timeout = 900)
{
    char dir[] = "/tmp/clnorm-tune-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    setenv("CLNORM_CACHE_DIR", dir, 1);
    harness_init();
    tune_seen     seen = {0, 0};
    clnorm_status st   = clnorm_tune(H.ctx, 1, tune_line, &seen);
    cr_assert_eq(st, CLNORM_SUCCESS, "tune: %s", clnorm_last_error(H.ctx));
    cr_expect_gt(seen.lines, 10, "report lines: %d", seen.lines);
    cr_expect_eq(seen.nhwc_7x7, 3, "NHWC (4,7,7,2048) measured in %d of 3 directions", seen.nhwc_7x7);
    size_t measured = H.ctx->ntuned;
    /* layer norm and group norm classes too, both directions */
    int fam = 0;
    for (size_t i = 0; i < measured; ++i) {
        char d = (char)(H.ctx->tuned[i].key >> 16);
        fam |= d == 'l' ? 1 : d == 'L' ? 2 : d == 'g' ? 4 : d == 'G' ? 8 : 0;
    }
    cr_expect_eq(fam, 15, "layer/group norm classes measured: mask %d of 15", fam);
    harness_fini();

    harness_init();
    cr_expect_eq(H.ctx->ntuned, measured, "a new context reads %zu of %zu tuned choices", H.ctx->ntuned,
                 measured);
    bn_case tc = {"tuned 3x5x33x17 NCHW", SP, NCHW, 4, {3, 5, 33, 17}, DATA_NORMAL, 1, 1};
    run_case(&tc);
    bn_case tc2 = {"tuned 8x9x9x64 NHWC", SP, NHWC, 4, {8, 9, 9, 64}, DATA_MEAN_1E4, 1, 1};
    run_case(&tc2);
    harness_fini();

    setenv("CLNORM_TUNE", "0", 1);
    harness_init();
    cr_expect_eq(H.ctx->ntuned, 0, "CLNORM_TUNE=0 still read %zu choices", H.ctx->ntuned);
    harness_fini();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Every kind of choice a tuning file can store for batch norm computes
 * within the tolerances: the fused one-kernel walks (which the GPU
 * heuristic now keeps for small tensors only), and the staged passes at
 * the tuner's chunk sizes and degrees of parallelism. */
typedef struct bn_forced {
    char   name[24];
    int    fused;
    size_t chunk, par_x4; /* par_x4: min_parallel times 4 when 1 */
} bn_forced;

static bn_forced bn_forced_choices[] = {
    {"fused on", 1, 0, 0},
    {"fused off, 4096", 0, 4096, 0},
    {"fused off, 65536, x4", 0, 65536, 1},
};

ParameterizedTestParameters(bn_tuned, choices)
{
    return cr_make_param_array(bn_forced, bn_forced_choices, sizeof bn_forced_choices / sizeof *bn_forced_choices);
}

ParameterizedTest(bn_forced *fc, bn_tuned, choices, .timeout = 600)
{
    static const bn_case tcases[] = {
        {"forced 8x96x14x14 NCHW", SP, NCHW, 4, {8, 96, 14, 14}, DATA_NORMAL, 1, 1},
        {"forced 4x24x60x60 NCHW", SP, NCHW, 4, {4, 24, 60, 60}, DATA_MEAN_1E4, 1, 1},
        {"forced 16x40x7x7 NCHW", SP, NCHW, 4, {16, 40, 7, 7}, DATA_NORMAL, 1, 1},
        {"forced 8x14x14x96 NHWC", SP, NHWC, 4, {8, 14, 14, 96}, DATA_MEAN_1E4, 1, 1},
        {"forced 3000x40 PA", PA, NCHW, 2, {3000, 40}, DATA_NORMAL, 1, 1},
    };
    harness_init();
    H.ctx->forcing = 1;
    H.ctx->force   = (clnorm_choice){fc->fused, fc->chunk,
                                     fc->par_x4 ? H.ctx->tune.min_parallel * 4 : 0};
    for (size_t i = 0; i < sizeof tcases / sizeof *tcases; ++i) {
        bn_case tc = tcases[i];
        snprintf(tc.name, sizeof tc.name, "%.21s, %.16s", tcases[i].name, fc->name);
        run_case(&tc);
    }
    harness_fini();
}
