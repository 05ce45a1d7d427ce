/* Self-checks of the C reference (tests/ref): every backward against finite differences,
 * the closed-form batch-norm backward against the staged graph, hand-computed semantics,
 * and proof that these checks fail on known-wrong formulations. No OpenCL here. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* ------------------------------------------------------------------ helpers */

static double *alloc_d(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    cr_assert_not_null(p, "out of memory");
    return p;
}

static double max_abs(const double *x, size_t n)
{
    double m = 0.0;
    for (size_t k = 0; k < n; k++)
        m = fmax(m, fabs(x[k]));
    return m;
}

static int all_finite(const double *x, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!isfinite(x[k]))
            return 0;
    return 1;
}

/* Relative error scaled by the largest component, so entries that are almost zero
 * through cancellation do not demand more digits than the whole vector carries. */
static ref_err compare_scaled(const double *got, const double *ref, size_t n, double frac)
{
    return ref_compare(got, ref, n, fmax(frac * max_abs(ref, n), 1e-300));
}

static size_t view_size(ref_view v) { return v.outer * v.channels * v.inner; }

/* A forward op as a function of (x, gamma, beta); ctx holds its shape and constants. */
typedef void (*fwd_fn)(const void *ctx, const double *x, const double *gamma, const double *beta, double *y);

static double loss(fwd_fn f, const void *ctx, const double *x, const double *g, const double *b,
                   const double *w, size_t ny, double *ybuf)
{
    f(ctx, x, g, b, ybuf);
    double L = 0.0;
    for (size_t k = 0; k < ny; k++)
        L += ybuf[k] * w[k];
    return L;
}

/* Central differences of L = sum(y*w) with respect to each element of p, which is
 * x, gamma or beta (perturbed in place and restored). */
static void fd_grad(fwd_fn f, const void *ctx, double *x, double *g, double *b, const double *w,
                    size_t ny, double *p, size_t np, double *grad)
{
    double *y = alloc_d(ny);
    for (size_t k = 0; k < np; k++) {
        double orig = p[k], h = 1e-5 * fmax(fabs(orig), 1.0);
        double xp = orig + h, xm = orig - h;
        p[k] = xp;
        double lp = loss(f, ctx, x, g, b, w, ny, y);
        p[k] = xm;
        double lm = loss(f, ctx, x, g, b, w, ny, y);
        p[k] = orig;
        grad[k] = (lp - lm) / (xp - xm);   /* the step actually taken, after rounding */
    }
    free(y);
}

/* Largest relative disagreement (scaled as compare_scaled) between an analytic gradient and FD. */
static double fd_error(fwd_fn f, const void *ctx, double *x, double *g, double *b, const double *w,
                       size_t ny, double *p, size_t np, const double *analytic)
{
    double *fd = alloc_d(np);
    fd_grad(f, ctx, x, g, b, w, ny, p, np, fd);
    ref_err e = compare_scaled(analytic, fd, np, 1e-2);
    free(fd);
    return e.max_rel;
}

#define FD_TOL 1e-6

/* Checks dx, dgamma and (if given) dbeta against FD; also that the gradients are not
 * trivially zero, which would make the comparison vacuous. */
static void check_fd(const char *what, fwd_fn f, const void *ctx, size_t nx, double *x, size_t ng,
                     double *gamma, double *beta, const double *w,
                     const double *dx, const double *dgamma, const double *dbeta)
{
    cr_assert_gt(max_abs(dx, nx), 1e-3, "%s: dx is (almost) zero, test would be vacuous", what);
    double e = fd_error(f, ctx, x, gamma, beta, w, nx, x, nx, dx);
    cr_expect_lt(e, FD_TOL, "%s: dx vs finite differences, rel err %g", what, e);
    if (dgamma) {
        e = fd_error(f, ctx, x, gamma, beta, w, nx, gamma, ng, dgamma);
        cr_expect_lt(e, FD_TOL, "%s: dgamma vs finite differences, rel err %g", what, e);
    }
    if (dbeta) {
        e = fd_error(f, ctx, x, gamma, beta, w, nx, beta, ng, dbeta);
        cr_expect_lt(e, FD_TOL, "%s: dbeta vs finite differences, rel err %g", what, e);
    }
}

/* Channels get different offsets and scales so that a per-channel indexing slip shows. */
static void fill_channels(ref_rng *r, ref_view v, double *x)
{
    for (size_t c = 0; c < v.channels; c++) {
        double mu = ref_rng_uniform(r, -3.0, 3.0), sd = ref_rng_uniform(r, 0.5, 2.0);
        for (size_t o = 0; o < v.outer; o++)
            for (size_t i = 0; i < v.inner; i++)
                x[(o * v.channels + c) * v.inner + i] = ref_rng_normal(r, mu, sd);
    }
}

/* ------------------------------------------------------------------ forward wrappers */

typedef struct { ref_view v; double eps; } bn_ctx;

static void bn_train_fwd(const void *p, const double *x, const double *g, const double *b, double *y)
{
    const bn_ctx *c = p;
    ref_bn_forward_training(c->v, x, g, b, c->eps, 0.0, 0, y, NULL, NULL, NULL, NULL);
}

typedef struct { ref_view v; double eps; const double *rm, *rv; } bn_inf_ctx;

static void bn_inf_fwd(const void *p, const double *x, const double *g, const double *b, double *y)
{
    const bn_inf_ctx *c = p;
    ref_bn_forward_inference(c->v, x, g, b, c->rm, c->rv, c->eps, y);
}

typedef struct { size_t rows, cols; double eps; } row_ctx;

static void ln_fwd(const void *p, const double *x, const double *g, const double *b, double *y)
{
    const row_ctx *c = p;
    ref_layernorm_forward(c->rows, c->cols, x, g, b, c->eps, y, NULL, NULL);
}

static void rms_fwd(const void *p, const double *x, const double *g, const double *b, double *y)
{
    const row_ctx *c = p;
    (void)b;
    ref_rmsnorm_forward(c->rows, c->cols, x, g, c->eps, y, NULL);
}

typedef struct { size_t n, c, s, groups; int cl; double eps; } gn_ctx;

static void gn_fwd(const void *p, const double *x, const double *g, const double *b, double *y)
{
    const gn_ctx *c = p;
    ref_groupnorm_forward(c->n, c->c, c->s, c->groups, c->cl, x, g, b, c->eps, y, NULL, NULL);
}

/* ------------------------------------------------------------------ batch norm: FD */

static void bn_training_fd(ref_view v, double eps, uint64_t seed, int use_staged)
{
    size_t n = view_size(v), C = v.channels;
    double *x = alloc_d(n), *w = alloc_d(n), *y = alloc_d(n), *dx = alloc_d(n);
    double *g = alloc_d(C), *b = alloc_d(C), *mean = alloc_d(C), *invstd = alloc_d(C);
    double *dg = alloc_d(C), *db = alloc_d(C);
    ref_rng r = ref_rng_seed(seed);
    fill_channels(&r, v, x);
    ref_fill_normal(&r, w, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, C, 0.5, 1.5);
    ref_fill_uniform(&r, b, C, -1.0, 1.0);

    ref_bn_forward_training(v, x, g, b, eps, 0.1, 1, y, mean, invstd, NULL, NULL);
    if (use_staged)
        ref_bn_backward_staged(v, x, w, g, eps, dx, dg, db);
    else
        ref_bn_backward(v, x, w, g, mean, invstd, dx, dg, db);

    bn_ctx ctx = { v, eps };
    check_fd(use_staged ? "bn staged" : "bn closed form", bn_train_fwd, &ctx, n, x, C, g, b, w, dx, dg, db);
    free(x); free(w); free(y); free(dx); free(g); free(b); free(mean); free(invstd); free(dg); free(db);
}

Test(ref_bn, fd_training_nchw) { bn_training_fd((ref_view){ 2, 3, 5 }, 1e-3, 1, 0); }
Test(ref_bn, fd_training_nhwc) { bn_training_fd((ref_view){ 10, 3, 1 }, 1e-3, 2, 0); }
Test(ref_bn, fd_training_per_activation) { bn_training_fd((ref_view){ 7, 4, 1 }, 1e-5, 3, 0); }
Test(ref_bn, fd_training_n1) { bn_training_fd((ref_view){ 1, 2, 9 }, 1e-1, 4, 0); }
Test(ref_bn, fd_staged_nchw) { bn_training_fd((ref_view){ 2, 3, 5 }, 1e-3, 5, 1); }
Test(ref_bn, fd_staged_nhwc) { bn_training_fd((ref_view){ 6, 2, 1 }, 1e-3, 6, 1); }

Test(ref_bn, fd_frozen)
{
    ref_view v = { 2, 3, 5 };
    size_t n = view_size(v), C = v.channels;
    double *x = alloc_d(n), *w = alloc_d(n), *dx = alloc_d(n);
    double *g = alloc_d(C), *b = alloc_d(C), *rm = alloc_d(C), *rv = alloc_d(C), *dg = alloc_d(C), *db = alloc_d(C);
    ref_rng r = ref_rng_seed(7);
    fill_channels(&r, v, x);
    ref_fill_normal(&r, w, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, C, 0.5, 1.5);
    ref_fill_uniform(&r, b, C, -1.0, 1.0);
    ref_fill_uniform(&r, rm, C, -1.0, 1.0);
    ref_fill_uniform(&r, rv, C, 0.5, 3.0);

    ref_bn_backward_frozen(v, x, w, g, rm, rv, 1e-3, dx, dg, db);
    bn_inf_ctx ctx = { v, 1e-3, rm, rv };
    check_fd("bn frozen", bn_inf_fwd, &ctx, n, x, C, g, b, w, dx, dg, db);

    /* Frozen statistics make dx purely elementwise: no cross-element term. */
    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < v.inner; i++) {
                size_t k = (o * C + c) * v.inner + i;
                cr_expect_float_eq(dx[k], g[c] * w[k] / sqrt(rv[c] + 1e-3), 1e-14);
            }
    free(x); free(w); free(dx); free(g); free(b); free(rm); free(rv); free(dg); free(db);
}

/* ------------------------------------------------------------------ batch norm: closed form vs staged */

Test(ref_bn, closed_form_matches_staged)
{
    const ref_view views[] = {
        { 2, 3, 5 },     /* NCHW */
        { 1, 4, 7 },     /* N = 1 */
        { 10, 3, 1 },    /* NHWC-like, inner = 1 */
        { 7, 4, 1 },     /* per-activation (N, D) */
        { 3, 1, 1 },     /* one channel */
        { 4, 2, 16 },
        { 1, 3, 1 },     /* M = 1: dx must be exactly 0 */
    };
    const double epss[] = { 1e-5, 1e-3, 1e-1 };
    for (size_t t = 0; t < sizeof views / sizeof views[0]; t++)
        for (size_t e = 0; e < sizeof epss / sizeof epss[0]; e++) {
            ref_view v = views[t];
            size_t n = view_size(v), C = v.channels;
            double *x = alloc_d(n), *dy = alloc_d(n), *y = alloc_d(n), *dx1 = alloc_d(n), *dx2 = alloc_d(n);
            double *g = alloc_d(C), *mean = alloc_d(C), *invstd = alloc_d(C);
            double *dg1 = alloc_d(C), *dg2 = alloc_d(C), *db1 = alloc_d(C), *db2 = alloc_d(C);
            ref_rng r = ref_rng_seed(100 + t * 10 + e);
            fill_channels(&r, v, x);
            ref_fill_normal(&r, dy, n, 0.0, 1.0);
            ref_fill_uniform(&r, g, C, -1.5, 1.5);

            ref_bn_forward_training(v, x, g, NULL, epss[e], 0.0, 0, y, mean, invstd, NULL, NULL);
            ref_bn_backward(v, x, dy, g, mean, invstd, dx1, dg1, db1);
            ref_bn_backward_staged(v, x, dy, g, epss[e], dx2, dg2, db2);

            ref_err ex = compare_scaled(dx2, dx1, n, 1e-3);
            ref_err eg = compare_scaled(dg2, dg1, C, 1e-3);
            ref_err eb = compare_scaled(db2, db1, C, 1e-3);
            cr_expect_lt(ex.max_rel, 1e-10, "view %zu eps %g: dx rel err %g at %zu", t, epss[e], ex.max_rel, ex.worst);
            cr_expect_lt(eg.max_rel, 1e-10, "view %zu eps %g: dgamma rel err %g", t, epss[e], eg.max_rel);
            cr_expect_lt(eb.max_rel, 1e-10, "view %zu eps %g: dbeta rel err %g", t, epss[e], eb.max_rel);
            if (v.outer * v.inner == 1)
                for (size_t k = 0; k < n; k++)
                    cr_expect_eq(dx1[k], 0.0, "M = 1: dx[%zu] = %g, expected 0", k, dx1[k]);
            else
                cr_expect_gt(max_abs(dx1, n), 1e-3, "view %zu: dx vacuously small", t);

            free(x); free(dy); free(y); free(dx1); free(dx2); free(g); free(mean); free(invstd);
            free(dg1); free(dg2); free(db1); free(db2);
        }
}

Test(ref_bn, null_gamma_beta_mean_one_and_zero)
{
    ref_view v = { 3, 2, 4 };
    size_t n = view_size(v), C = v.channels;
    double *x = alloc_d(n), *dy = alloc_d(n), *y1 = alloc_d(n), *y2 = alloc_d(n), *dx1 = alloc_d(n), *dx2 = alloc_d(n);
    double ones[2] = { 1.0, 1.0 }, zeros[2] = { 0.0, 0.0 }, mean[2], invstd[2], rm[2] = { 0.5, 0.5 }, rv[2] = { 2.0, 2.0 };
    ref_rng r = ref_rng_seed(8);
    fill_channels(&r, v, x);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);

    ref_bn_forward_training(v, x, NULL, NULL, 1e-5, 0.0, 0, y1, mean, invstd, NULL, NULL);
    ref_bn_forward_training(v, x, ones, zeros, 1e-5, 0.0, 0, y2, NULL, NULL, NULL, NULL);
    cr_expect_arr_eq(y1, y2, n * sizeof *y1, "training forward: NULL gamma/beta differ from 1/0");
    ref_bn_forward_inference(v, x, NULL, NULL, rm, rv, 1e-5, y1);
    ref_bn_forward_inference(v, x, ones, zeros, rm, rv, 1e-5, y2);
    cr_expect_arr_eq(y1, y2, n * sizeof *y1, "inference forward: NULL gamma/beta differ from 1/0");
    ref_bn_backward(v, x, dy, NULL, mean, invstd, dx1, NULL, NULL);
    ref_bn_backward(v, x, dy, ones, mean, invstd, dx2, NULL, NULL);
    cr_expect_arr_eq(dx1, dx2, n * sizeof *dx1, "backward: NULL gamma differs from 1");
    ref_bn_backward_frozen(v, x, dy, NULL, rm, rv, 1e-5, dx1, NULL, NULL);
    ref_bn_backward_frozen(v, x, dy, ones, rm, rv, 1e-5, dx2, NULL, NULL);
    cr_expect_arr_eq(dx1, dx2, n * sizeof *dx1, "frozen backward: NULL gamma differs from 1");
    cr_expect_gt(max_abs(dx1, n), 1e-3, "vacuous: dx is zero");
    (void)C;
    free(x); free(dy); free(y1); free(y2); free(dx1); free(dx2);
}

/* ------------------------------------------------------------------ mutations: the checks can fail */

enum mutation { MUT_NONE, MUT_UNBIASED_NORMALIZATION, MUT_NO_MEAN_PATH, MUT_NO_VARIANCE_PATH };

/* A second copy of the staged graph with switchable, historically common mistakes:
 * normalizing by the unbiased variance, and dropping the gradient through mu or var. */
static void staged_mutant(enum mutation m, ref_view v, const double *x, const double *dy, const double *gamma,
                          double eps, double *dx)
{
    size_t C = v.channels, inner = v.inner;
    double M = (double)(v.outer * v.inner);
    double *mu = alloc_d(C), *var = alloc_d(C), *divar = alloc_d(C), *dmu = alloc_d(C);
    ref_bn_stats(v, x, mu, var);
    if (m == MUT_UNBIASED_NORMALIZATION)
        for (size_t c = 0; c < C; c++)
            var[c] *= M / (M - 1.0);

    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                divar[c] += dy[k] * gamma[c] * (x[k] - mu[c]);
            }
    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                double sv = sqrt(var[c] + eps);
                double dvar = 0.5 / sv * (-divar[c] / (sv * sv));
                dx[k] = dy[k] * gamma[c] / sv;
                if (m != MUT_NO_VARIANCE_PATH)
                    dx[k] += 2.0 * (x[k] - mu[c]) * dvar / M;
                dmu[c] -= dx[k];
            }
    if (m != MUT_NO_MEAN_PATH)
        for (size_t o = 0; o < v.outer; o++)
            for (size_t c = 0; c < C; c++)
                for (size_t i = 0; i < inner; i++)
                    dx[(o * C + c) * inner + i] += dmu[c] / M;
    free(mu); free(var); free(divar); free(dmu);
}

/* Relative disagreement between a mutant and the closed form on a fixed problem. */
static double mutant_error(enum mutation m, ref_view v, double eps)
{
    size_t n = view_size(v), C = v.channels;
    double *x = alloc_d(n), *dy = alloc_d(n), *y = alloc_d(n), *dx = alloc_d(n), *dxm = alloc_d(n);
    double *g = alloc_d(C), *mean = alloc_d(C), *invstd = alloc_d(C);
    ref_rng r = ref_rng_seed(42);
    fill_channels(&r, v, x);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, C, 0.5, 1.5);
    ref_bn_forward_training(v, x, g, NULL, eps, 0.0, 0, y, mean, invstd, NULL, NULL);
    ref_bn_backward(v, x, dy, g, mean, invstd, dx, NULL, NULL);
    staged_mutant(m, v, x, dy, g, eps, dxm);
    double e = compare_scaled(dxm, dx, n, 1e-3).max_rel;
    free(x); free(dy); free(y); free(dx); free(dxm); free(g); free(mean); free(invstd);
    return e;
}

Test(ref_mutation, unmutated_copy_agrees)
{
    /* Otherwise the failures below could come from the copy, not from the mutation. */
    double e = mutant_error(MUT_NONE, (ref_view){ 2, 3, 5 }, 1e-3);
    cr_assert_lt(e, 1e-10, "unmutated staged copy disagrees with closed form: %g", e);
}

Test(ref_mutation, unbiased_normalization_detected)
{
    const ref_view views[] = { { 2, 3, 5 }, { 10, 3, 1 }, { 7, 4, 1 } };
    for (size_t t = 0; t < 3; t++) {
        double e = mutant_error(MUT_UNBIASED_NORMALIZATION, views[t], 1e-3);
        cr_expect_gt(e, 1e-4, "view %zu: unbiased-variance mutant not detected (err %g)", t, e);
    }
}

Test(ref_mutation, dropped_mean_path_detected)
{
    const ref_view views[] = { { 2, 3, 5 }, { 10, 3, 1 }, { 7, 4, 1 } };
    for (size_t t = 0; t < 3; t++) {
        double e = mutant_error(MUT_NO_MEAN_PATH, views[t], 1e-3);
        cr_expect_gt(e, 1e-4, "view %zu: dropped-mean-path mutant not detected (err %g)", t, e);
    }
}

Test(ref_mutation, dropped_variance_path_detected)
{
    const ref_view views[] = { { 2, 3, 5 }, { 10, 3, 1 }, { 7, 4, 1 } };
    for (size_t t = 0; t < 3; t++) {
        double e = mutant_error(MUT_NO_VARIANCE_PATH, views[t], 1e-3);
        cr_expect_gt(e, 1e-4, "view %zu: dropped-variance-path mutant not detected (err %g)", t, e);
    }
}

Test(ref_mutation, finite_differences_reject_mutant)
{
    /* The FD harness itself must be able to fail, not only the closed-vs-staged comparison. */
    ref_view v = { 2, 3, 5 };
    size_t n = view_size(v), C = v.channels;
    double *x = alloc_d(n), *w = alloc_d(n), *dx = alloc_d(n), *g = alloc_d(C), *b = alloc_d(C);
    ref_rng r = ref_rng_seed(9);
    fill_channels(&r, v, x);
    ref_fill_normal(&r, w, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, C, 0.5, 1.5);
    bn_ctx ctx = { v, 1e-3 };
    const enum mutation muts[] = { MUT_UNBIASED_NORMALIZATION, MUT_NO_MEAN_PATH, MUT_NO_VARIANCE_PATH };
    for (size_t t = 0; t < 3; t++) {
        staged_mutant(muts[t], v, x, w, g, 1e-3, dx);
        double e = fd_error(bn_train_fwd, &ctx, x, g, b, w, n, x, n, dx);
        cr_expect_gt(e, 1e-4, "mutation %zu passes the finite-difference check (err %g)", t, e);
    }
    free(x); free(w); free(dx); free(g); free(b);
}

/* ------------------------------------------------------------------ batch norm: semantics */

Test(ref_bn, forward_output_moments)
{
    ref_view v = { 4, 3, 10 };
    size_t n = view_size(v), C = v.channels;
    const double eps = 0.1;   /* large, so var/(var+eps) is visibly below 1 */
    double *x = alloc_d(n), *y = alloc_d(n);
    double mean[3], var[3], ym[3], yv[3], g[3] = { 2.0, -0.5, 1.0 }, b[3] = { 1.0, 0.0, -3.0 };
    ref_rng r = ref_rng_seed(10);
    fill_channels(&r, v, x);
    ref_bn_stats(v, x, mean, var);

    ref_bn_forward_training(v, x, NULL, NULL, eps, 0.0, 0, y, NULL, NULL, NULL, NULL);
    ref_bn_stats(v, y, ym, yv);
    for (size_t c = 0; c < C; c++) {
        cr_expect_lt(fabs(ym[c]), 1e-12, "channel %zu: mean of xhat %g", c, ym[c]);
        cr_expect_lt(fabs(yv[c] / (var[c] / (var[c] + eps)) - 1.0), 1e-12, "channel %zu: var of xhat %g", c, yv[c]);
        cr_expect_lt(var[c] / (var[c] + eps), 0.99, "eps too small for this check to mean anything");
    }

    ref_bn_forward_training(v, x, g, b, eps, 0.0, 0, y, NULL, NULL, NULL, NULL);
    ref_bn_stats(v, y, ym, yv);
    for (size_t c = 0; c < C; c++) {
        cr_expect_lt(fabs(ym[c] - b[c]), 1e-12, "channel %zu: mean of y %g, beta %g", c, ym[c], b[c]);
        double want = g[c] * g[c] * var[c] / (var[c] + eps);
        cr_expect_lt(fabs(yv[c] / want - 1.0), 1e-12, "channel %zu: var of y %g, want %g", c, yv[c], want);
    }
    free(x); free(y);
}

Test(ref_bn, stats_and_running_update_hand_computed)
{
    /* view (2, 2, 2); channel 0 holds {1, 2, 3, 6}: mean 3, sum sq dev 14;
     * channel 1 holds {10, 10, 10, 14}: mean 11, sum sq dev 12. */
    ref_view v = { 2, 2, 2 };
    const double x[8] = { 1, 2, 10, 10, 3, 6, 10, 14 };
    double y[8], mean[2], var[2], invstd[2];

    ref_bn_stats(v, x, mean, var);
    cr_expect_float_eq(mean[0], 3.0, 1e-15);
    cr_expect_float_eq(mean[1], 11.0, 1e-15);
    cr_expect_float_eq(var[0], 14.0 / 4, 1e-15);
    cr_expect_float_eq(var[1], 12.0 / 4, 1e-15);

    double rm[2] = { 1.0, 0.0 }, rv[2] = { 2.0, 1.0 };
    ref_bn_forward_training(v, x, NULL, NULL, 1e-5, 0.1, 1, y, mean, invstd, rm, rv);
    cr_expect_float_eq(rm[0], 0.9 * 1.0 + 0.1 * 3.0, 1e-15);
    cr_expect_float_eq(rm[1], 0.9 * 0.0 + 0.1 * 11.0, 1e-15);
    cr_expect_float_eq(rv[0], 0.9 * 2.0 + 0.1 * 14.0 / 3, 1e-15);   /* unbiased: M - 1 = 3 */
    cr_expect_float_eq(rv[1], 0.9 * 1.0 + 0.1 * 12.0 / 3, 1e-15);
    cr_expect_float_eq(invstd[0], 1.0 / sqrt(3.5 + 1e-5), 1e-15);   /* normalization stays biased */
    cr_expect_float_eq(invstd[1], 1.0 / sqrt(3.0 + 1e-5), 1e-15);
    cr_expect_float_eq(y[0], (1.0 - 3.0) / sqrt(3.5 + 1e-5), 1e-15);

    double rm2[2] = { 1.0, 0.0 }, rv2[2] = { 2.0, 1.0 };
    ref_bn_forward_training(v, x, NULL, NULL, 1e-5, 0.1, 0, y, NULL, NULL, rm2, rv2);
    cr_expect_float_eq(rm2[0], 1.2, 1e-15);
    cr_expect_float_eq(rv2[0], 0.9 * 2.0 + 0.1 * 3.5, 1e-15);        /* biased: M = 4 */
    cr_expect_float_eq(rv2[1], 0.9 * 1.0 + 0.1 * 3.0, 1e-15);

    /* f = 1 replaces the running values outright; f = 0 leaves them alone. */
    double rm3[2] = { 7.0, 7.0 }, rv3[2] = { 7.0, 7.0 };
    ref_bn_forward_training(v, x, NULL, NULL, 1e-5, 1.0, 0, y, NULL, NULL, rm3, rv3);
    cr_expect_float_eq(rm3[1], 11.0, 1e-15);
    cr_expect_float_eq(rv3[1], 3.0, 1e-15);
    ref_bn_forward_training(v, x, NULL, NULL, 1e-5, 0.0, 1, y, NULL, NULL, rm3, rv3);
    cr_expect_float_eq(rm3[0], 3.0, 1e-15);
    cr_expect_float_eq(rv3[0], 3.5, 1e-15);
}

Test(ref_bn, unbiased_running_var_with_single_value_is_finite)
{
    ref_view v = { 1, 2, 1 };
    const double x[2] = { 5.0, -1.0 };
    double y[2], rm[2] = { 0.0, 0.0 }, rv[2] = { 1.0, 1.0 };
    ref_bn_forward_training(v, x, NULL, NULL, 1e-5, 0.5, 1, y, NULL, NULL, rm, rv);
    cr_expect(all_finite(rv, 2) && all_finite(y, 2), "M = 1 produced a non-finite value");
    cr_expect_float_eq(rv[0], 0.5, 1e-15);   /* documented: biased (zero) variance when M = 1 */
    cr_expect_float_eq(rm[1], -0.5, 1e-15);
    cr_expect_eq(y[0], 0.0);
}

Test(ref_bn, inference_equals_training_with_batch_stats)
{
    const ref_view views[] = { { 2, 3, 5 }, { 10, 3, 1 } };
    for (size_t t = 0; t < 2; t++) {
        ref_view v = views[t];
        size_t n = view_size(v), C = v.channels;
        double *x = alloc_d(n), *y1 = alloc_d(n), *y2 = alloc_d(n);
        double *g = alloc_d(C), *b = alloc_d(C), *mean = alloc_d(C), *var = alloc_d(C);
        ref_rng r = ref_rng_seed(11 + t);
        fill_channels(&r, v, x);
        ref_fill_uniform(&r, g, C, 0.5, 1.5);
        ref_fill_uniform(&r, b, C, -1.0, 1.0);
        ref_bn_forward_training(v, x, g, b, 1e-3, 0.0, 0, y1, NULL, NULL, NULL, NULL);
        ref_bn_stats(v, x, mean, var);
        ref_bn_forward_inference(v, x, g, b, mean, var, 1e-3, y2);
        ref_err e = ref_compare(y2, y1, n, 1e-3);
        cr_expect_lt(e.max_rel, 1e-13, "view %zu: inference vs training rel err %g", t, e.max_rel);
        cr_expect_gt(max_abs(y1, n), 0.5, "vacuous");
        free(x); free(y1); free(y2); free(g); free(b); free(mean); free(var);
    }
}

Test(ref_bn, constant_channel)
{
    /* Channel 0 is constant at 0.1 (not exactly representable, so mean and x may differ
     * by an ulp); channel 1 is ordinary data. */
    ref_view v = { 3, 2, 4 };
    size_t n = view_size(v), M = v.outer * v.inner;
    const double eps = 1e-5;
    double *x = alloc_d(n), *y = alloc_d(n), *dy = alloc_d(n), *dx = alloc_d(n), *dxs = alloc_d(n);
    double g[2] = { 1.5, 0.7 }, b[2] = { -0.25, 2.0 }, mean[2], invstd[2], dg[2], db[2];
    ref_rng r = ref_rng_seed(12);
    fill_channels(&r, v, x);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    for (size_t o = 0; o < v.outer; o++)
        for (size_t i = 0; i < v.inner; i++)
            x[(o * 2 + 0) * v.inner + i] = 0.1;

    ref_bn_forward_training(v, x, g, b, eps, 0.1, 1, y, mean, invstd, NULL, NULL);
    ref_bn_backward(v, x, dy, g, mean, invstd, dx, dg, db);
    ref_bn_backward_staged(v, x, dy, g, eps, dxs, NULL, NULL);
    cr_assert(all_finite(y, n) && all_finite(dx, n) && all_finite(dxs, n), "NaN/inf from constant channel");
    cr_expect_float_eq(invstd[0], 1.0 / sqrt(eps), 1e-9);

    double sdy = 0.0;
    for (size_t o = 0; o < v.outer; o++)
        for (size_t i = 0; i < v.inner; i++)
            sdy += dy[(o * 2 + 0) * v.inner + i];
    cr_expect_lt(fabs(dg[0]), 1e-12, "dgamma of constant channel %g", dg[0]);
    cr_expect_float_eq(db[0], sdy, 1e-14);
    for (size_t o = 0; o < v.outer; o++)
        for (size_t i = 0; i < v.inner; i++) {
            size_t k = (o * 2 + 0) * v.inner + i;
            cr_expect_lt(fabs(y[k] - b[0]), 1e-12, "y[%zu] = %.17g, want beta %g", k, y[k], b[0]);
            /* With eps > 0 the layer still has slope gamma/sqrt(eps) through x - mean, so dx is
             * the centred dy, not zero; it vanishes only when dy is constant over the channel. */
            double want = g[0] / sqrt(eps) * (dy[k] - sdy / (double)M);
            cr_expect_lt(fabs(dx[k] - want), 1e-12 * fabs(g[0] / sqrt(eps)), "dx[%zu] = %g want %g", k, dx[k], want);
            cr_expect_lt(fabs(dxs[k] - want), 1e-12 * fabs(g[0] / sqrt(eps)), "staged dx[%zu] = %g want %g", k, dxs[k], want);
        }

    /* Constant dy over the constant channel: dx is exactly what it should be, zero. */
    for (size_t k = 0; k < n; k++)
        dy[k] = 0.5;
    ref_bn_backward(v, x, dy, g, mean, invstd, dx, NULL, NULL);
    for (size_t o = 0; o < v.outer; o++)
        for (size_t i = 0; i < v.inner; i++) {
            size_t k = (o * 2 + 0) * v.inner + i;
            cr_expect_lt(fabs(dx[k]), 1e-9, "dx[%zu] = %g with constant dy", k, dx[k]);
        }
    free(x); free(y); free(dy); free(dx); free(dxs);
}

Test(ref_bn, fd_constant_channel)
{
    /* The closed form stays differentiable through a constant channel because eps > 0. */
    ref_view v = { 2, 2, 3 };
    size_t n = view_size(v);
    double *x = alloc_d(n), *y = alloc_d(n), *w = alloc_d(n), *dx = alloc_d(n);
    double g[2] = { 1.2, 0.8 }, b[2] = { 0.3, -0.3 }, mean[2], invstd[2], dg[2], db[2];
    ref_rng r = ref_rng_seed(13);
    fill_channels(&r, v, x);
    ref_fill_normal(&r, w, n, 0.0, 1.0);
    for (size_t o = 0; o < v.outer; o++)
        for (size_t i = 0; i < v.inner; i++)
            x[(o * 2 + 1) * v.inner + i] = 4.0;
    ref_bn_forward_training(v, x, g, b, 1e-2, 0.0, 0, y, mean, invstd, NULL, NULL);
    ref_bn_backward(v, x, w, g, mean, invstd, dx, dg, db);
    bn_ctx ctx = { v, 1e-2 };
    check_fd("bn constant channel", bn_train_fwd, &ctx, n, x, 2, g, b, w, dx, dg, db);
    free(x); free(y); free(w); free(dx);
}

/* Data on a 1/1024 grid so that offset + z is exact and the exact statistics of the
 * shifted data are known: those of z, shifted. */
static void grid_data(ref_rng *r, double *z, size_t n)
{
    for (size_t k = 0; k < n; k++)
        z[k] = (double)((int64_t)(ref_rng_next(r) % 4097) - 2048) / 1024.0;
}

Test(ref_bn, large_mean_stats_accurate)
{
    ref_view v = { 16, 2, 64 };
    size_t n = view_size(v);
    double *z = alloc_d(n), *x = alloc_d(n), *y = alloc_d(n);
    double mz[2], vz[2], mx[2], vx[2], ym[2], yv[2];
    ref_rng r = ref_rng_seed(14);
    grid_data(&r, z, n);
    const double offsets[] = { 1e4, 1e6, 1e8 };
    for (size_t t = 0; t < 3; t++) {
        for (size_t k = 0; k < n; k++)
            x[k] = z[k] + offsets[t];
        ref_bn_stats(v, z, mz, vz);
        ref_bn_stats(v, x, mx, vx);
        for (size_t c = 0; c < 2; c++) {
            cr_expect_lt(fabs(mx[c] - offsets[t] - mz[c]), 1e-9, "offset %g: mean error %g", offsets[t], mx[c] - offsets[t] - mz[c]);
            cr_expect_lt(fabs(vx[c] / vz[c] - 1.0), 1e-12, "offset %g: var %.17g want %.17g", offsets[t], vx[c], vz[c]);
        }
        ref_bn_forward_training(v, x, NULL, NULL, 1e-5, 0.0, 0, y, NULL, NULL, NULL, NULL);
        ref_bn_stats(v, y, ym, yv);
        for (size_t c = 0; c < 2; c++) {
            cr_expect_lt(fabs(ym[c]), 1e-9, "offset %g: mean of xhat %g", offsets[t], ym[c]);
            cr_expect_lt(fabs(yv[c] - vz[c] / (vz[c] + 1e-5)), 1e-9, "offset %g: var of xhat %g", offsets[t], yv[c]);
        }
    }

    /* The same tolerance does reject E[x^2] - E[x]^2 at offset 1e6, so the check has teeth. */
    double s = 0.0, s2 = 0.0;
    size_t m = 0;
    for (size_t o = 0; o < v.outer; o++)
        for (size_t i = 0; i < v.inner; i++) {
            double xv = z[(o * 2) * v.inner + i] + 1e6;
            s += xv;
            s2 += xv * xv;
            m++;
        }
    ref_bn_stats(v, z, mz, vz);
    double naive = s2 / (double)m - (s / (double)m) * (s / (double)m);
    cr_expect_gt(fabs(naive / vz[0] - 1.0), 1e-12, "naive variance unexpectedly accurate: %.17g vs %.17g", naive, vz[0]);
    free(z); free(x); free(y);
}

/* ------------------------------------------------------------------ layer norm, RMS norm, group norm */

static void rows_fd(size_t rows, size_t cols, double eps, uint64_t seed, int rms)
{
    size_t n = rows * cols;
    double *x = alloc_d(n), *w = alloc_d(n), *y = alloc_d(n), *dx = alloc_d(n);
    double *g = alloc_d(cols), *b = alloc_d(cols), *dg = alloc_d(cols), *db = alloc_d(cols);
    double *mean = alloc_d(rows), *invstd = alloc_d(rows);
    ref_rng r = ref_rng_seed(seed);
    for (size_t i = 0; i < rows; i++)
        ref_fill_normal(&r, x + i * cols, cols, ref_rng_uniform(&r, -2.0, 2.0), ref_rng_uniform(&r, 0.5, 2.0));
    ref_fill_normal(&r, w, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, cols, 0.5, 1.5);
    ref_fill_uniform(&r, b, cols, -1.0, 1.0);
    row_ctx ctx = { rows, cols, eps };
    if (rms) {
        ref_rmsnorm_forward(rows, cols, x, g, eps, y, invstd);
        ref_rmsnorm_backward(rows, cols, x, w, g, invstd, dx, dg);
        check_fd("rmsnorm", rms_fwd, &ctx, n, x, cols, g, b, w, dx, dg, NULL);
    } else {
        ref_layernorm_forward(rows, cols, x, g, b, eps, y, mean, invstd);
        ref_layernorm_backward(rows, cols, x, w, g, mean, invstd, dx, dg, db);
        check_fd("layernorm", ln_fwd, &ctx, n, x, cols, g, b, w, dx, dg, db);
    }
    free(x); free(w); free(y); free(dx); free(g); free(b); free(dg); free(db); free(mean); free(invstd);
}

Test(ref_family, fd_layernorm) { rows_fd(3, 7, 1e-3, 20, 0); }
Test(ref_family, fd_layernorm_one_row) { rows_fd(1, 16, 1e-5, 21, 0); }
Test(ref_family, fd_rmsnorm) { rows_fd(3, 7, 1e-3, 22, 1); }
Test(ref_family, fd_rmsnorm_small_eps) { rows_fd(2, 5, 1e-6, 23, 1); }

static void gn_fd(size_t n, size_t c, size_t s, size_t groups, int cl, uint64_t seed)
{
    size_t total = n * c * s, ng = n * groups;
    double *x = alloc_d(total), *w = alloc_d(total), *y = alloc_d(total), *dx = alloc_d(total);
    double *g = alloc_d(c), *b = alloc_d(c), *dg = alloc_d(c), *db = alloc_d(c);
    double *mean = alloc_d(ng), *invstd = alloc_d(ng);
    ref_rng r = ref_rng_seed(seed);
    ref_fill_normal(&r, x, total, 1.0, 2.0);
    ref_fill_normal(&r, w, total, 0.0, 1.0);
    ref_fill_uniform(&r, g, c, 0.5, 1.5);
    ref_fill_uniform(&r, b, c, -1.0, 1.0);
    ref_groupnorm_forward(n, c, s, groups, cl, x, g, b, 1e-3, y, mean, invstd);
    ref_groupnorm_backward(n, c, s, groups, cl, x, w, g, mean, invstd, dx, dg, db);
    gn_ctx ctx = { n, c, s, groups, cl, 1e-3 };
    check_fd(cl ? "groupnorm NHWC" : "groupnorm NCHW", gn_fwd, &ctx, total, x, c, g, b, w, dx, dg, db);
    free(x); free(w); free(y); free(dx); free(g); free(b); free(dg); free(db); free(mean); free(invstd);
}

Test(ref_family, fd_groupnorm_nchw) { gn_fd(2, 6, 5, 3, 0, 30); }
Test(ref_family, fd_groupnorm_nhwc) { gn_fd(2, 6, 5, 2, 1, 31); }
Test(ref_family, fd_instancenorm_nhwc) { gn_fd(2, 3, 4, 3, 1, 32); }
Test(ref_family, fd_groupnorm_one_group) { gn_fd(1, 4, 3, 1, 0, 33); }

Test(ref_family, layernorm_hand_computed)
{
    const double x[4] = { 1, 2, 3, 6 }, g[4] = { 1, 2, 1, 1 }, b[4] = { 0, 0, 5, 0 };
    double y[4], mean, invstd;
    ref_layernorm_forward(1, 4, x, g, b, 0.0, y, &mean, &invstd);
    cr_expect_float_eq(mean, 3.0, 1e-15);
    cr_expect_float_eq(invstd, 1.0 / sqrt(3.5), 1e-15);
    cr_expect_float_eq(y[0], -2.0 / sqrt(3.5), 1e-15);
    cr_expect_float_eq(y[1], -2.0 / sqrt(3.5), 1e-15);
    cr_expect_float_eq(y[2], 5.0, 1e-15);
    cr_expect_float_eq(y[3], 3.0 / sqrt(3.5), 1e-15);
}

Test(ref_family, layernorm_single_column_gives_beta)
{
    const double x[3] = { 4.0, -1e6, 0.1 }, g[1] = { 3.0 }, b[1] = { 0.75 }, dy[3] = { 1.0, -2.0, 0.5 };
    double y[3], mean[3], invstd[3], dx[3], dg[1], db[1];
    ref_layernorm_forward(3, 1, x, g, b, 1e-5, y, mean, invstd);
    ref_layernorm_backward(3, 1, x, dy, g, mean, invstd, dx, dg, db);
    for (size_t k = 0; k < 3; k++) {
        cr_expect_eq(y[k], 0.75, "y[%zu] = %g, want beta", k, y[k]);
        cr_expect_eq(mean[k], x[k]);
        cr_expect_eq(dx[k], 0.0, "dx[%zu] = %g", k, dx[k]);
    }
    cr_expect_eq(dg[0], 0.0);
    cr_expect_float_eq(db[0], -0.5, 1e-15);
}

Test(ref_family, rmsnorm_hand_computed)
{
    const double x[4] = { 3, 4, 0, -2 }, g[2] = { 1, 2 };
    double y[4], invrms[2];
    ref_rmsnorm_forward(2, 2, x, g, 0.0, y, invrms);
    cr_expect_float_eq(invrms[0], 1.0 / sqrt(12.5), 1e-15);
    cr_expect_float_eq(invrms[1], 1.0 / sqrt(2.0), 1e-15);
    cr_expect_float_eq(y[0], 3.0 / sqrt(12.5), 1e-15);
    cr_expect_float_eq(y[1], 8.0 / sqrt(12.5), 1e-15);
    cr_expect_eq(y[2], 0.0);
    cr_expect_float_eq(y[3], -4.0 / sqrt(2.0), 1e-15);
}

Test(ref_family, layernorm_equals_groupnorm_one_group)
{
    size_t rows = 4, cols = 9, n = rows * cols;
    double *x = alloc_d(n), *dy = alloc_d(n), *y1 = alloc_d(n), *y2 = alloc_d(n), *dx1 = alloc_d(n), *dx2 = alloc_d(n);
    double g[9], b[9], dg1[9], dg2[9], db1[9], db2[9], m1[4], m2[4], s1[4], s2[4];
    ref_rng r = ref_rng_seed(40);
    ref_fill_normal(&r, x, n, 3.0, 2.0);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, cols, 0.5, 1.5);
    ref_fill_uniform(&r, b, cols, -1.0, 1.0);
    ref_layernorm_forward(rows, cols, x, g, b, 1e-5, y1, m1, s1);
    ref_groupnorm_forward(rows, cols, 1, 1, 0, x, g, b, 1e-5, y2, m2, s2);
    ref_layernorm_backward(rows, cols, x, dy, g, m1, s1, dx1, dg1, db1);
    ref_groupnorm_backward(rows, cols, 1, 1, 0, x, dy, g, m2, s2, dx2, dg2, db2);
    cr_expect_lt(ref_compare(y2, y1, n, 1e-3).max_rel, 1e-13);
    cr_expect_lt(ref_compare(s2, s1, rows, 1e-3).max_rel, 1e-13);
    cr_expect_lt(compare_scaled(dx2, dx1, n, 1e-3).max_rel, 1e-12);
    cr_expect_lt(compare_scaled(dg2, dg1, cols, 1e-3).max_rel, 1e-12);
    cr_expect_lt(compare_scaled(db2, db1, cols, 1e-3).max_rel, 1e-12);
    free(x); free(dy); free(y1); free(y2); free(dx1); free(dx2);
}

Test(ref_family, instancenorm_equals_batchnorm_per_sample)
{
    /* GroupNorm with groups = C over (N, C, S) is batch norm over the view (1, N*C, S). */
    size_t N = 3, C = 4, S = 10, n = N * C * S;
    double *x = alloc_d(n), *dy = alloc_d(n), *y1 = alloc_d(n), *y2 = alloc_d(n), *dx1 = alloc_d(n), *dx2 = alloc_d(n);
    double m1[12], m2[12], s1[12], s2[12];
    ref_rng r = ref_rng_seed(41);
    ref_view v = { 1, N * C, S };
    fill_channels(&r, v, x);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    ref_groupnorm_forward(N, C, S, C, 0, x, NULL, NULL, 1e-5, y1, m1, s1);
    ref_bn_forward_training(v, x, NULL, NULL, 1e-5, 0.0, 0, y2, m2, s2, NULL, NULL);
    ref_groupnorm_backward(N, C, S, C, 0, x, dy, NULL, m1, s1, dx1, NULL, NULL);
    ref_bn_backward(v, x, dy, NULL, m2, s2, dx2, NULL, NULL);
    cr_expect_lt(ref_compare(y2, y1, n, 1e-3).max_rel, 1e-13);
    cr_expect_lt(ref_compare(m2, m1, N * C, 1e-3).max_rel, 1e-13);
    cr_expect_lt(compare_scaled(dx2, dx1, n, 1e-3).max_rel, 1e-12);
    free(x); free(dy); free(y1); free(y2); free(dx1); free(dx2);
}

Test(ref_family, groupnorm_nhwc_is_transposed_nchw)
{
    size_t N = 2, C = 6, S = 5, G = 3, n = N * C * S;
    double *xc = alloc_d(n), *xl = alloc_d(n), *dyc = alloc_d(n), *dyl = alloc_d(n);
    double *yc = alloc_d(n), *yl = alloc_d(n), *dxc = alloc_d(n), *dxl = alloc_d(n);
    double g[6], b[6], dgc[6], dgl[6], dbc[6], dbl[6], mc[6], ml[6], sc[6], sl[6];
    ref_rng r = ref_rng_seed(42);
    ref_fill_normal(&r, xc, n, 1.0, 3.0);
    ref_fill_normal(&r, dyc, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, C, 0.5, 1.5);
    ref_fill_uniform(&r, b, C, -1.0, 1.0);
    for (size_t in = 0; in < N; in++)
        for (size_t ic = 0; ic < C; ic++)
            for (size_t is = 0; is < S; is++) {
                xl[(in * S + is) * C + ic] = xc[(in * C + ic) * S + is];
                dyl[(in * S + is) * C + ic] = dyc[(in * C + ic) * S + is];
            }
    ref_groupnorm_forward(N, C, S, G, 0, xc, g, b, 1e-5, yc, mc, sc);
    ref_groupnorm_forward(N, C, S, G, 1, xl, g, b, 1e-5, yl, ml, sl);
    ref_groupnorm_backward(N, C, S, G, 0, xc, dyc, g, mc, sc, dxc, dgc, dbc);
    ref_groupnorm_backward(N, C, S, G, 1, xl, dyl, g, ml, sl, dxl, dgl, dbl);
    for (size_t in = 0; in < N; in++)
        for (size_t ic = 0; ic < C; ic++)
            for (size_t is = 0; is < S; is++) {
                size_t kc = (in * C + ic) * S + is, kl = (in * S + is) * C + ic;
                cr_expect_float_eq(yl[kl], yc[kc], 1e-12, "y (%zu,%zu,%zu)", in, ic, is);
                cr_expect_float_eq(dxl[kl], dxc[kc], 1e-12, "dx (%zu,%zu,%zu)", in, ic, is);
            }
    cr_expect_lt(ref_compare(ml, mc, N * G, 1e-3).max_rel, 1e-13);
    cr_expect_lt(compare_scaled(dgl, dgc, C, 1e-3).max_rel, 1e-12);
    cr_expect_lt(compare_scaled(dbl, dbc, C, 1e-3).max_rel, 1e-12);
    free(xc); free(xl); free(dyc); free(dyl); free(yc); free(yl); free(dxc); free(dxl);
}

Test(ref_family, large_mean_rows_accurate)
{
    size_t rows = 3, cols = 256, n = rows * cols;
    double *z = alloc_d(n), *x = alloc_d(n), *yz = alloc_d(n), *yx = alloc_d(n);
    double mz[3], mx[3], sz[3], sx[3], gmz[3], gmx[3], gsz[3], gsx[3];
    ref_rng r = ref_rng_seed(43);
    grid_data(&r, z, n);
    for (size_t k = 0; k < n; k++)
        x[k] = z[k] + 1e6;
    ref_layernorm_forward(rows, cols, z, NULL, NULL, 1e-5, yz, mz, sz);
    ref_layernorm_forward(rows, cols, x, NULL, NULL, 1e-5, yx, mx, sx);
    ref_groupnorm_forward(rows, cols, 1, 1, 1, z, NULL, NULL, 1e-5, yz, gmz, gsz);
    ref_groupnorm_forward(rows, cols, 1, 1, 1, x, NULL, NULL, 1e-5, yx, gmx, gsx);
    for (size_t i = 0; i < rows; i++) {
        cr_expect_lt(fabs(mx[i] - 1e6 - mz[i]), 1e-9);
        cr_expect_lt(fabs(sx[i] / sz[i] - 1.0), 1e-12, "layernorm invstd %.17g vs %.17g", sx[i], sz[i]);
        cr_expect_lt(fabs(gsx[i] / gsz[i] - 1.0), 1e-12, "groupnorm invstd %.17g vs %.17g", gsx[i], gsz[i]);
    }
    cr_expect_lt(ref_compare(yx, yz, n, 1e-3).max_rel, 1e-9);
    free(z); free(x); free(yz); free(yx);
}

/* ------------------------------------------------------------------ ref_compare */

Test(ref_compare, identical_is_zero)
{
    const double a[3] = { 1.0, -2.0, 0.0 };
    ref_err e = ref_compare(a, a, 3, 1e-6);
    cr_expect_eq(e.max_abs, 0.0);
    cr_expect_eq(e.max_rel, 0.0);
    cr_expect_eq(e.nan_mismatch, 0);
}

Test(ref_compare, known_errors_and_worst)
{
    const double got[4] = { 1.0, 2.5, -3.0, 10.0 }, ref[4] = { 1.0, 2.0, -3.3, 10.4 };
    ref_err e = ref_compare(got, ref, 4, 1e-6);
    cr_expect_float_eq(e.max_abs, 0.5, 1e-15);
    cr_expect_float_eq(e.max_rel, 0.25, 1e-15);
    cr_expect_eq(e.worst, 1);
    cr_expect_eq(e.nan_mismatch, 0);
}

Test(ref_compare, floor_guards_small_references)
{
    const double got[3] = { 1e-6, 0.0, 2.0 }, ref[3] = { 0.0, 1e-8, 2.0 };
    ref_err e = ref_compare(got, ref, 3, 1e-3);
    cr_expect_float_eq(e.max_rel, 1e-3, 1e-15);
    cr_expect_float_eq(e.max_abs, 1e-6, 1e-18);
    cr_expect_eq(e.worst, 0);
    e = ref_compare(got, ref, 3, 0.0);   /* no floor: a nonzero result against an exact 0 is infinitely wrong */
    cr_expect(isinf(e.max_rel));
}

Test(ref_compare, nan_mismatch_detected)
{
    const double ref[4] = { 1.0, 2.0, NAN, 4.0 };
    const double got1[4] = { 1.0, NAN, NAN, 4.0 };      /* NaN where ref is finite */
    const double got2[4] = { 1.0, 2.0, 3.0, 4.0 };      /* finite where ref is NaN */
    ref_err e = ref_compare(got1, ref, 4, 1e-6);
    cr_expect_eq(e.nan_mismatch, 1);
    cr_expect_eq(e.worst, 1);
    cr_expect(isinf(e.max_rel) && isinf(e.max_abs), "a NaN mismatch must also fail a tolerance check");
    e = ref_compare(got2, ref, 4, 1e-6);
    cr_expect_eq(e.nan_mismatch, 1);
    cr_expect_eq(e.worst, 2);
    cr_expect(!(e.max_rel < 1e-3), "tolerance check passes despite NaN mismatch");
    const double got3[4] = { 1.0, 2.0, NAN, 4.0 };      /* NaN against NaN is agreement */
    e = ref_compare(got3, ref, 4, 1e-6);
    cr_expect_eq(e.nan_mismatch, 0);
    cr_expect_eq(e.max_rel, 0.0);
}

Test(ref_compare, infinities)
{
    const double ref[2] = { INFINITY, -INFINITY };
    const double same[2] = { INFINITY, -INFINITY }, other[2] = { INFINITY, 1e300 };
    ref_err e = ref_compare(same, ref, 2, 1e-6);
    cr_expect_eq(e.max_rel, 0.0);
    cr_expect_eq(e.nan_mismatch, 0);
    e = ref_compare(other, ref, 2, 1e-6);
    cr_expect(isinf(e.max_abs));
    cr_expect_eq(e.worst, 1);
}

Test(ref_compare, empty)
{
    ref_err e = ref_compare(NULL, NULL, 0, 1e-6);
    cr_expect_eq(e.max_abs, 0.0);
    cr_expect_eq(e.max_rel, 0.0);
    cr_expect_eq(e.worst, 0);
    cr_expect_eq(e.nan_mismatch, 0);
}

/* ------------------------------------------------------------------ test data */

Test(ref_rng, deterministic_and_distributed)
{
    ref_rng a = ref_rng_seed(0), b = ref_rng_seed(0);
    /* First splitmix64 output for seed 0: pins the stream across platforms. */
    cr_expect_eq(ref_rng_next(&a), UINT64_C(0xE220A8397B1DCDAF));
    (void)ref_rng_next(&b);
    for (int k = 0; k < 100; k++)
        cr_expect_eq(ref_rng_next(&a), ref_rng_next(&b));

    size_t n = 200000;
    double *x = alloc_d(n), m, v;
    ref_fill_normal(&a, x, n, 2.0, 3.0);
    ref_bn_stats((ref_view){ 1, 1, n }, x, &m, &v);
    cr_expect_lt(fabs(m - 2.0), 0.03, "normal mean %g", m);
    cr_expect_lt(fabs(sqrt(v) - 3.0), 0.03, "normal std %g", sqrt(v));
    ref_fill_uniform(&a, x, n, -1.0, 1.0);
    for (size_t k = 0; k < n; k++)
        cr_assert(x[k] >= -1.0 && x[k] < 1.0, "uniform out of range: %g", x[k]);
    free(x);
}
