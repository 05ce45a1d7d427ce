/* Plain C reference of every clnorm operation: the oracle for the device tests.
 * Everything is double with double accumulation; clarity wins over speed, but every op is O(n). */
#include "ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Test-only code: running out of memory here is a broken test run, not a condition to report. */
static double *xcalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "ref: out of memory (%zu doubles)\n", n);
        abort();
    }
    return p;
}

static double gamma_at(const double *gamma, size_t c) { return gamma ? gamma[c] : 1.0; }
static double beta_at(const double *beta, size_t c) { return beta ? beta[c] : 0.0; }

/* Variance from deviations about an approximate mean: the (sum d)^2/m term is the
 * Chan-Golub-LeVeque correction that cancels the rounding error of that mean. */
static double corrected_var(double sum_d, double sum_d2, double m)
{
    double var = (sum_d2 - sum_d * sum_d / m) / m;
    return var > 0.0 ? var : 0.0;
}

/* ---------------------------------------------------------------- batch norm */

/* The loops below walk memory in storage order (o, c, i) with one accumulator per
 * channel, so NHWC views stream through memory instead of striding per channel. */

void ref_bn_stats(ref_view v, const double *x, double *mean, double *var)
{
    const size_t C = v.channels, inner = v.inner;
    const double M = (double)(v.outer * v.inner);
    double *sum = xcalloc(C), *sum_d = xcalloc(C), *sum_d2 = xcalloc(C);

    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++)
                sum[c] += x[(o * C + c) * inner + i];
    for (size_t c = 0; c < C; c++)
        mean[c] = M > 0 ? sum[c] / M : 0.0;

    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++) {
                double d = x[(o * C + c) * inner + i] - mean[c];
                sum_d[c] += d;
                sum_d2[c] += d * d;
            }
    for (size_t c = 0; c < C; c++)
        var[c] = M > 0 ? corrected_var(sum_d[c], sum_d2[c], M) : 0.0;

    free(sum);
    free(sum_d);
    free(sum_d2);
}

void ref_bn_forward_training(ref_view v, const double *x, const double *gamma, const double *beta,
                             double eps, double f, int unbiased, double *y, double *mean, double *invstd,
                             double *running_mean, double *running_var)
{
    const size_t C = v.channels, inner = v.inner, M = v.outer * v.inner;
    double *mu = xcalloc(C), *var = xcalloc(C), *is = xcalloc(C);

    ref_bn_stats(v, x, mu, var);
    for (size_t c = 0; c < C; c++)
        is[c] = 1.0 / sqrt(var[c] + eps);

    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                y[k] = gamma_at(gamma, c) * (x[k] - mu[c]) * is[c] + beta_at(beta, c);
            }

    for (size_t c = 0; c < C; c++) {
        if (mean)
            mean[c] = mu[c];
        if (invstd)
            invstd[c] = is[c];
        if (running_mean)
            running_mean[c] = (1.0 - f) * running_mean[c] + f * mu[c];
        if (running_var) {
            double bessel = (unbiased && M > 1) ? (double)M / (double)(M - 1) : 1.0;
            running_var[c] = (1.0 - f) * running_var[c] + f * var[c] * bessel;
        }
    }
    free(mu);
    free(var);
    free(is);
}

void ref_bn_forward_inference(ref_view v, const double *x, const double *gamma, const double *beta,
                              const double *running_mean, const double *running_var, double eps, double *y)
{
    const size_t C = v.channels, inner = v.inner;
    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++) {
            double is = 1.0 / sqrt(running_var[c] + eps);
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                y[k] = gamma_at(gamma, c) * (x[k] - running_mean[c]) * is + beta_at(beta, c);
            }
        }
}

void ref_bn_backward(ref_view v, const double *x, const double *dy, const double *gamma,
                     const double *mean, const double *invstd, double *dx, double *dgamma, double *dbeta)
{
    const size_t C = v.channels, inner = v.inner;
    const double M = (double)(v.outer * v.inner);
    double *sdy = xcalloc(C), *sdyx = xcalloc(C);

    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                double xhat = (x[k] - mean[c]) * invstd[c];
                sdy[c] += dy[k];
                sdyx[c] += dy[k] * xhat;
            }

    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                double xhat = (x[k] - mean[c]) * invstd[c];
                dx[k] = gamma_at(gamma, c) * invstd[c] / M * (M * dy[k] - sdy[c] - xhat * sdyx[c]);
            }

    for (size_t c = 0; c < C; c++) {
        if (dbeta)
            dbeta[c] = sdy[c];
        if (dgamma)
            dgamma[c] = sdyx[c];
    }
    free(sdy);
    free(sdyx);
}

/* Kept deliberately close to the textbook graph (mu -> xmu -> var -> sqrtvar -> ivar -> xhat -> y)
 * so that it is an independent check of the closed form, not a rearrangement of it. */
void ref_bn_backward_staged(ref_view v, const double *x, const double *dy, const double *gamma, double eps,
                            double *dx, double *dgamma, double *dbeta)
{
    const size_t C = v.channels, inner = v.inner;
    const double M = (double)(v.outer * v.inner);
    double *mu = xcalloc(C), *var = xcalloc(C), *ivar = xcalloc(C);
    double *dgam = xcalloc(C), *dbet = xcalloc(C), *divar = xcalloc(C), *dvar = xcalloc(C), *dmu = xcalloc(C);

    ref_bn_stats(v, x, mu, var);
    for (size_t c = 0; c < C; c++)
        ivar[c] = 1.0 / sqrt(var[c] + eps);

    /* y = gamma*xhat + beta, and xhat = xmu*ivar: gradients reaching ivar. */
    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                double xmu = x[k] - mu[c];
                double dxhat = dy[k] * gamma_at(gamma, c);
                dbet[c] += dy[k];
                dgam[c] += dy[k] * xmu * ivar[c];
                divar[c] += dxhat * xmu;
            }

    /* ivar = 1/sqrtvar, sqrtvar = sqrt(var + eps). */
    for (size_t c = 0; c < C; c++) {
        double sqrtvar = sqrt(var[c] + eps);
        double dsqrtvar = -divar[c] / (sqrtvar * sqrtvar);
        dvar[c] = 0.5 / sqrtvar * dsqrtvar;
    }

    /* Path 1 (through xhat) plus path 2 (var = mean(xmu^2)) both arrive at xmu. */
    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                double xmu = x[k] - mu[c];
                double dxmu1 = dy[k] * gamma_at(gamma, c) * ivar[c];
                double dxmu2 = 2.0 * xmu * dvar[c] / M;
                dx[k] = dxmu1 + dxmu2;
                dmu[c] -= dx[k];
            }

    /* Path 3: xmu = x - mu, mu = mean(x). */
    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < inner; i++)
                dx[(o * C + c) * inner + i] += dmu[c] / M;

    for (size_t c = 0; c < C; c++) {
        if (dgamma)
            dgamma[c] = dgam[c];
        if (dbeta)
            dbeta[c] = dbet[c];
    }
    free(mu);
    free(var);
    free(ivar);
    free(dgam);
    free(dbet);
    free(divar);
    free(dvar);
    free(dmu);
}

void ref_bn_backward_frozen(ref_view v, const double *x, const double *dy, const double *gamma,
                            const double *running_mean, const double *running_var, double eps,
                            double *dx, double *dgamma, double *dbeta)
{
    const size_t C = v.channels, inner = v.inner;
    double *sdy = xcalloc(C), *sdyx = xcalloc(C);

    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < C; c++) {
            double is = 1.0 / sqrt(running_var[c] + eps);
            for (size_t i = 0; i < inner; i++) {
                size_t k = (o * C + c) * inner + i;
                dx[k] = gamma_at(gamma, c) * is * dy[k];
                sdy[c] += dy[k];
                sdyx[c] += dy[k] * (x[k] - running_mean[c]) * is;
            }
        }
    for (size_t c = 0; c < C; c++) {
        if (dgamma)
            dgamma[c] = sdyx[c];
        if (dbeta)
            dbeta[c] = sdy[c];
    }
    free(sdy);
    free(sdyx);
}

/* ---------------------------------------------------------------- row-wise ops */

void ref_layernorm_forward(size_t rows, size_t cols, const double *x, const double *gamma, const double *beta,
                           double eps, double *y, double *mean, double *invstd)
{
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols;
        double *yr = y + r * cols;
        double sum = 0.0, sum_d = 0.0, sum_d2 = 0.0;
        for (size_t j = 0; j < cols; j++)
            sum += xr[j];
        double mu = cols ? sum / (double)cols : 0.0;
        for (size_t j = 0; j < cols; j++) {
            double d = xr[j] - mu;
            sum_d += d;
            sum_d2 += d * d;
        }
        double var = cols ? corrected_var(sum_d, sum_d2, (double)cols) : 0.0;
        double is = 1.0 / sqrt(var + eps);
        for (size_t j = 0; j < cols; j++)
            yr[j] = gamma_at(gamma, j) * (xr[j] - mu) * is + beta_at(beta, j);
        if (mean)
            mean[r] = mu;
        if (invstd)
            invstd[r] = is;
    }
}

void ref_layernorm_backward(size_t rows, size_t cols, const double *x, const double *dy, const double *gamma,
                            const double *mean, const double *invstd, double *dx, double *dgamma, double *dbeta)
{
    const double K = (double)cols;
    if (dgamma)
        for (size_t j = 0; j < cols; j++)
            dgamma[j] = 0.0;
    if (dbeta)
        for (size_t j = 0; j < cols; j++)
            dbeta[j] = 0.0;

    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols, *dyr = dy + r * cols;
        double *dxr = dx + r * cols;
        /* Same closed form as batch norm, with g = dy*gamma playing the role of dy
         * because gamma varies along the normalized axis here. */
        double sg = 0.0, sgx = 0.0;
        for (size_t j = 0; j < cols; j++) {
            double xhat = (xr[j] - mean[r]) * invstd[r];
            double g = dyr[j] * gamma_at(gamma, j);
            sg += g;
            sgx += g * xhat;
            if (dgamma)
                dgamma[j] += dyr[j] * xhat;
            if (dbeta)
                dbeta[j] += dyr[j];
        }
        for (size_t j = 0; j < cols; j++) {
            double xhat = (xr[j] - mean[r]) * invstd[r];
            double g = dyr[j] * gamma_at(gamma, j);
            dxr[j] = invstd[r] / K * (K * g - sg - xhat * sgx);
        }
    }
}

void ref_rmsnorm_forward(size_t rows, size_t cols, const double *x, const double *gamma, double eps,
                         double *y, double *invrms)
{
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols;
        double sum2 = 0.0;
        for (size_t j = 0; j < cols; j++)
            sum2 += xr[j] * xr[j];
        double ir = 1.0 / sqrt((cols ? sum2 / (double)cols : 0.0) + eps);
        for (size_t j = 0; j < cols; j++)
            y[r * cols + j] = xr[j] * ir * gamma_at(gamma, j);
        if (invrms)
            invrms[r] = ir;
    }
}

void ref_rmsnorm_backward(size_t rows, size_t cols, const double *x, const double *dy, const double *gamma,
                          const double *invrms, double *dx, double *dgamma)
{
    if (dgamma)
        for (size_t j = 0; j < cols; j++)
            dgamma[j] = 0.0;

    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols, *dyr = dy + r * cols;
        const double ir = invrms[r];
        /* d(invrms)/dx_j = -invrms^3 * x_j / cols. */
        double sgx = 0.0;
        for (size_t j = 0; j < cols; j++) {
            sgx += dyr[j] * gamma_at(gamma, j) * xr[j];
            if (dgamma)
                dgamma[j] += dyr[j] * xr[j] * ir;
        }
        for (size_t j = 0; j < cols; j++) {
            double g = dyr[j] * gamma_at(gamma, j);
            dx[r * cols + j] = ir * (g - xr[j] * ir * ir * sgx / (double)cols);
        }
    }
}

/* ---------------------------------------------------------------- group norm */

static size_t gn_at(size_t c, size_t spatial, int channels_last, size_t in, size_t ic, size_t is)
{
    return channels_last ? (in * spatial + is) * c + ic : (in * c + ic) * spatial + is;
}

void ref_groupnorm_forward(size_t n, size_t c, size_t spatial, size_t groups, int channels_last,
                           const double *x, const double *gamma, const double *beta, double eps,
                           double *y, double *mean, double *invstd)
{
    const size_t cpg = c / groups;
    const double K = (double)(cpg * spatial);
    for (size_t in = 0; in < n; in++)
        for (size_t g = 0; g < groups; g++) {
            double sum = 0.0, sum_d = 0.0, sum_d2 = 0.0;
            for (size_t ic = g * cpg; ic < (g + 1) * cpg; ic++)
                for (size_t is = 0; is < spatial; is++)
                    sum += x[gn_at(c, spatial, channels_last, in, ic, is)];
            double mu = K > 0 ? sum / K : 0.0;
            for (size_t ic = g * cpg; ic < (g + 1) * cpg; ic++)
                for (size_t is = 0; is < spatial; is++) {
                    double d = x[gn_at(c, spatial, channels_last, in, ic, is)] - mu;
                    sum_d += d;
                    sum_d2 += d * d;
                }
            double var = K > 0 ? corrected_var(sum_d, sum_d2, K) : 0.0;
            double istd = 1.0 / sqrt(var + eps);
            for (size_t ic = g * cpg; ic < (g + 1) * cpg; ic++)
                for (size_t is = 0; is < spatial; is++) {
                    size_t k = gn_at(c, spatial, channels_last, in, ic, is);
                    y[k] = gamma_at(gamma, ic) * (x[k] - mu) * istd + beta_at(beta, ic);
                }
            if (mean)
                mean[in * groups + g] = mu;
            if (invstd)
                invstd[in * groups + g] = istd;
        }
}

void ref_groupnorm_backward(size_t n, size_t c, size_t spatial, size_t groups, int channels_last,
                            const double *x, const double *dy, const double *gamma,
                            const double *mean, const double *invstd, double *dx, double *dgamma, double *dbeta)
{
    const size_t cpg = c / groups;
    const double K = (double)(cpg * spatial);
    if (dgamma)
        for (size_t ic = 0; ic < c; ic++)
            dgamma[ic] = 0.0;
    if (dbeta)
        for (size_t ic = 0; ic < c; ic++)
            dbeta[ic] = 0.0;

    for (size_t in = 0; in < n; in++)
        for (size_t g = 0; g < groups; g++) {
            const double mu = mean[in * groups + g], istd = invstd[in * groups + g];
            /* As layer norm: statistics over the group, gamma per channel inside it. */
            double sg = 0.0, sgx = 0.0;
            for (size_t ic = g * cpg; ic < (g + 1) * cpg; ic++)
                for (size_t is = 0; is < spatial; is++) {
                    size_t k = gn_at(c, spatial, channels_last, in, ic, is);
                    double xhat = (x[k] - mu) * istd;
                    double gd = dy[k] * gamma_at(gamma, ic);
                    sg += gd;
                    sgx += gd * xhat;
                    if (dgamma)
                        dgamma[ic] += dy[k] * xhat;
                    if (dbeta)
                        dbeta[ic] += dy[k];
                }
            for (size_t ic = g * cpg; ic < (g + 1) * cpg; ic++)
                for (size_t is = 0; is < spatial; is++) {
                    size_t k = gn_at(c, spatial, channels_last, in, ic, is);
                    double xhat = (x[k] - mu) * istd;
                    double gd = dy[k] * gamma_at(gamma, ic);
                    dx[k] = istd / K * (K * gd - sg - xhat * sgx);
                }
        }
}

/* ---------------------------------------------------------------- comparison */

ref_err ref_compare(const double *got, const double *ref, size_t n, double rel_floor)
{
    ref_err e = { 0.0, 0.0, 0, 0 };
    for (size_t k = 0; k < n; k++) {
        double a = got[k], r = ref[k];
        if (isnan(a) || isnan(r)) {
            if (isnan(a) && isnan(r))
                continue;
            if (e.nan_mismatch == 0)
                e.worst = k;
            e.nan_mismatch++;
            e.max_abs = INFINITY;
            e.max_rel = INFINITY;
            continue;
        }
        if (a == r)   /* also makes equal infinities exact instead of inf - inf = NaN */
            continue;
        double abs_err = fabs(a - r);
        double denom = fmax(fabs(r), rel_floor);
        /* An infinity on either side would give inf/inf = NaN, which no '>' would record. */
        double rel_err = (isinf(abs_err) || denom == 0.0) ? INFINITY : abs_err / denom;
        if (abs_err > e.max_abs)
            e.max_abs = abs_err;
        if (rel_err > e.max_rel) {
            e.max_rel = rel_err;
            if (e.nan_mismatch == 0)
                e.worst = k;
        }
    }
    return e;
}

/* ---------------------------------------------------------------- test data */

ref_rng ref_rng_seed(uint64_t seed)
{
    ref_rng r = { seed };
    return r;
}

/* splitmix64: tiny, full-period, and good enough for test data. */
uint64_t ref_rng_next(ref_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double ref_rng_uniform(ref_rng *r, double lo, double hi)
{
    double u = (double)(ref_rng_next(r) >> 11) * 0x1.0p-53;   /* [0, 1) with 53 random bits */
    return lo + (hi - lo) * u;
}

double ref_rng_normal(ref_rng *r, double mean, double std)
{
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    double u1 = 1.0 - ref_rng_uniform(r, 0.0, 1.0);
    double u2 = ref_rng_uniform(r, 0.0, 1.0);
    const double two_pi = 6.283185307179586476925286766559;
    return mean + std * sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

void ref_fill_uniform(ref_rng *r, double *x, size_t n, double lo, double hi)
{
    for (size_t k = 0; k < n; k++)
        x[k] = ref_rng_uniform(r, lo, hi);
}

void ref_fill_normal(ref_rng *r, double *x, size_t n, double mean, double std)
{
    for (size_t k = 0; k < n; k++)
        x[k] = ref_rng_normal(r, mean, std);
}
