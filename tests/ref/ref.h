/* Plain C reference of every clnorm operation (double in, double out, double accumulation):
 * the oracle that device tests compare against. Built for clarity, not speed, yet O(n). */
#ifndef CLNORM_TESTS_REF_H
#define CLNORM_TESTS_REF_H

#include <stddef.h>
#include <stdint.h>

/* A tensor seen as (outer, channels, inner): element (o, c, i) lives at (o*channels + c)*inner + i.
 * NCHW spatial batch norm: outer=N, channels=C, inner=H*W. NHWC: outer=N*H*W, channels=C, inner=1.
 * Per-activation (N, D): outer=N, channels=D, inner=1. */
typedef struct { size_t outer, channels, inner; } ref_view;

/* Batch norm statistics per channel: mean and biased variance (two-pass in double). */
void ref_bn_stats(ref_view v, const double *x, double *mean, double *var);
/* Training forward. gamma/beta may be NULL (1 and 0). mean/invstd outputs may be NULL.
 * running_mean/running_var (in/out) may be NULL; f = weight of the new batch;
 * unbiased != 0 -> running var uses var*M/(M-1) (M = outer*inner), else biased var.
 * With M == 1 the unbiased factor is undefined; the reference then uses the biased
 * variance (which is 0) rather than producing NaN. */
void ref_bn_forward_training(ref_view v, const double *x, const double *gamma, const double *beta,
                             double eps, double f, int unbiased, double *y, double *mean, double *invstd,
                             double *running_mean, double *running_var);
void ref_bn_forward_inference(ref_view v, const double *x, const double *gamma, const double *beta,
                              const double *running_mean, const double *running_var, double eps, double *y);
/* Closed-form backward with saved mean/invstd (DESIGN.md section 1). gamma NULL = 1. dgamma/dbeta may be NULL. */
void ref_bn_backward(ref_view v, const double *x, const double *dy, const double *gamma,
                     const double *mean, const double *invstd, double *dx, double *dgamma, double *dbeta);
/* Staged computational-graph backward: recomputes mean/var from x with eps, then back-propagates
 * through xhat, the variance and the mean separately (the three paths), as in the classic derivation. */
void ref_bn_backward_staged(ref_view v, const double *x, const double *dy, const double *gamma, double eps,
                            double *dx, double *dgamma, double *dbeta);
/* Backward with frozen running statistics: dx = gamma*dy/sqrt(rv+eps); dgamma = sum dy*xhat_running; dbeta = sum dy. */
void ref_bn_backward_frozen(ref_view v, const double *x, const double *dy, const double *gamma,
                            const double *running_mean, const double *running_var, double eps,
                            double *dx, double *dgamma, double *dbeta);

/* Row-wise ops: rows x cols, each row normalized over its cols (layer norm with axis flattening). */
void ref_layernorm_forward(size_t rows, size_t cols, const double *x, const double *gamma, const double *beta,
                           double eps, double *y, double *mean, double *invstd);   /* gamma/beta len cols, NULL ok; mean/invstd len rows, NULL ok */
/* gamma NULL = 1; mean/invstd are the saved forward outputs (required); dgamma/dbeta may be NULL. */
void ref_layernorm_backward(size_t rows, size_t cols, const double *x, const double *dy, const double *gamma,
                            const double *mean, const double *invstd, double *dx, double *dgamma, double *dbeta);
/* RMS norm: y = x / sqrt(mean(x^2) + eps) * gamma ; invrms per row output (NULL ok). */
void ref_rmsnorm_forward(size_t rows, size_t cols, const double *x, const double *gamma, double eps,
                         double *y, double *invrms);
/* gamma NULL = 1; invrms is the saved forward output (required); dgamma may be NULL. */
void ref_rmsnorm_backward(size_t rows, size_t cols, const double *x, const double *dy, const double *gamma,
                          const double *invrms, double *dx, double *dgamma);
/* Group norm over x of logical shape (N, C, spatial) stored NCHW (channels_last=0) or NHWC (channels_last=1);
 * statistics per (n, group) over (C/groups)*spatial values; gamma/beta per channel (NULL ok); mean/invstd len N*groups, NULL ok.
 * groups must divide c. InstanceNorm is groups == c. */
void ref_groupnorm_forward(size_t n, size_t c, size_t spatial, size_t groups, int channels_last,
                           const double *x, const double *gamma, const double *beta, double eps,
                           double *y, double *mean, double *invstd);
/* mean/invstd are the saved forward outputs (required); dgamma/dbeta may be NULL. */
void ref_groupnorm_backward(size_t n, size_t c, size_t spatial, size_t groups, int channels_last,
                            const double *x, const double *dy, const double *gamma,
                            const double *mean, const double *invstd, double *dx, double *dgamma, double *dbeta);

/* Comparison helper used by all device tests: max abs error and max relative error
 * (|a-r| / max(|r|, floor)) between a float-or-double result (as double array) and the reference;
 * returns index of the worst element (by relative error).
 * Equal values (including equal infinities, and NaN against NaN) count as error 0.
 * nan_mismatch counts elements where exactly one side is NaN; each such element sets
 * max_abs and max_rel to INFINITY and the first one becomes `worst`, so a tolerance
 * check on max_rel alone still fails. */
typedef struct { double max_abs, max_rel; size_t worst; int nan_mismatch; } ref_err;
ref_err ref_compare(const double *got, const double *ref, size_t n, double rel_floor);

/* Deterministic test data, identical on every platform (no libc rand()). */
typedef struct { uint64_t state; } ref_rng;
ref_rng ref_rng_seed(uint64_t seed);
uint64_t ref_rng_next(ref_rng *r);
double ref_rng_uniform(ref_rng *r, double lo, double hi);   /* [lo, hi) */
double ref_rng_normal(ref_rng *r, double mean, double std);
void ref_fill_uniform(ref_rng *r, double *x, size_t n, double lo, double hi);
void ref_fill_normal(ref_rng *r, double *x, size_t n, double mean, double std);

#endif
