/* test_dtypes.c: batch norm with half, bfloat16 and fp64 storage, through the
 * same kernels as fp32 (the storage type is a build option), against the
 * double reference.
 *
 * Inputs are rounded to the storage type before the reference sees them, so
 * the only differences are the kernels' arithmetic and the rounding of the
 * outputs to storage: half keeps 11 significant bits (relative rounding
 * 2^-11 = 4.9e-4), bfloat16 8 bits (2^-8 = 3.9e-3); both compute in fp32 and
 * their statistics (fp32 vectors) are as accurate as fp32's. fp64 computes
 * and stores in double.
 *
 * Tolerances, normwise relative: y and dx 1e-3 (half), 8e-3 (bfloat16),
 * 1e-12 (fp64, plus 16 ulp of |mean|/std, the reference's own limit); mean and invstd 1e-5 (half, bfloat16: fp32 statistics of the
 * same inputs), 1e-12 (fp64); dgamma and dbeta 1e-4 / 1e-11. */
#include "cli.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct dt_case {
    clnorm_dtype  dtype;
    clnorm_layout layout;
    size_t        dims[4];
    double        mean; /* data mean (std 1.5) */
} dt_case;

static cl_mem upload(const double *x, size_t n, clnorm_dtype dtype, int param)
{
    size_t esz = param ? (dtype == CLNORM_F64 ? 8 : 4) : cli_tensor_size(dtype);
    void  *tmp = malloc(n * esz + 8);
    cr_assert_not_null(tmp);
    if (param)
        cli_to_param(dtype, x, n, tmp);
    else
        cli_to_tensor(dtype, x, n, tmp);
    cl_int err;
    cl_mem m = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * esz, tmp, &err);
    free(tmp);
    cr_assert_eq(err, CL_SUCCESS);
    return m;
}

static void download(cl_mem m, size_t n, clnorm_dtype dtype, int param, double *out)
{
    size_t esz = param ? (dtype == CLNORM_F64 ? 8 : 4) : cli_tensor_size(dtype);
    void  *tmp = malloc(n * esz + 8);
    cr_assert_not_null(tmp);
    dev_read(m, n * esz, tmp);
    if (param)
        cli_from_param(dtype, tmp, n, out);
    else
        cli_from_tensor(dtype, tmp, n, out);
    free(tmp);
}

/* Rounds x through the storage type, as the device will see it. */
static void round_storage(double *x, size_t n, clnorm_dtype dtype, int param)
{
    size_t esz = param ? (dtype == CLNORM_F64 ? 8 : 4) : cli_tensor_size(dtype);
    void  *tmp = malloc(n * esz + 8);
    cr_assert_not_null(tmp);
    if (param) {
        cli_to_param(dtype, x, n, tmp);
        cli_from_param(dtype, tmp, n, x);
    } else {
        cli_to_tensor(dtype, x, n, tmp);
        cli_from_tensor(dtype, tmp, n, x);
    }
    free(tmp);
}

/* Values of got farther from ref than half an ulp of the storage type
 * (half: 11 significant bits, bfloat16: 8) plus slop for fp32's own error
 * (relative 1e-4 of the tensor's largest magnitude). */
static size_t rounding_misses(const double *got, const double *ref, size_t n, clnorm_dtype dt)
{
    int    bits = dt == CLNORM_F16 ? 11 : 8;
    double big  = 0;
    for (size_t i = 0; i < n; ++i)
        big = fmax(big, fabs(ref[i]));
    size_t miss = 0;
    for (size_t i = 0; i < n; ++i) {
        int e;
        frexp(ref[i], &e); /* |ref| in [2^(e-1), 2^e) */
        double ulp = ldexp(1.0, e - bits);
        if (dt == CLNORM_F16 && ulp < ldexp(1.0, -24))
            ulp = ldexp(1.0, -24); /* half's subnormal spacing */
        if (!(fabs(got[i] - ref[i]) <= 0.5 * ulp + 1e-4 * big))
            ++miss;
    }
    return miss;
}

static dt_case cases[] = {
    {CLNORM_F16, CLNORM_NCHW, {4, 6, 9, 11}, 0.5},    {CLNORM_F16, CLNORM_NHWC, {4, 9, 11, 6}, 0.5},
    {CLNORM_F16, CLNORM_NCHW, {2, 3, 40, 40}, 100.0}, {CLNORM_BF16, CLNORM_NCHW, {4, 6, 9, 11}, 0.5},
    {CLNORM_BF16, CLNORM_NHWC, {4, 9, 11, 6}, 0.5},   {CLNORM_F64, CLNORM_NCHW, {4, 6, 9, 11}, 0.5},
    {CLNORM_F64, CLNORM_NHWC, {4, 9, 11, 6}, 0.5},    {CLNORM_F64, CLNORM_NCHW, {2, 3, 40, 40}, 1e6},
    /* channels first, small maps: CPUs' walk by blocks of channels */
    {CLNORM_F16, CLNORM_NCHW, {4, 40, 7, 7}, 0.5},    {CLNORM_BF16, CLNORM_NCHW, {3, 50, 6, 6}, 0.5},
    {CLNORM_F64, CLNORM_NCHW, {4, 40, 7, 7}, 1e6},
    /* channels first, slices over 8192 values: CPUs' pipelined walk */
    {CLNORM_F16, CLNORM_NCHW, {2, 12, 70, 70}, 0.5}, {CLNORM_BF16, CLNORM_NCHW, {2, 12, 70, 70}, 0.5},
    {CLNORM_F64, CLNORM_NCHW, {2, 12, 70, 70}, 1e6},
};

ParameterizedTestParameters(dtypes, bn)
{
    return cr_make_param_array(dt_case, cases, sizeof cases / sizeof *cases);
}

ParameterizedTest(dt_case *tc, dtypes, bn, .init = harness_init, .fini = harness_fini)
{
    clnorm_device_info info;
    clnorm_context_device_info(H.ctx, &info);
    clnorm_bn_desc d;
    cr_assert_eq(clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, tc->layout, 4, tc->dims), CLNORM_SUCCESS);
    d.dtype = tc->dtype;
    if (tc->dtype == CLNORM_F64 && !info.has_fp64) {
        clnorm_bn_args a;
        memset(&a, 0, sizeof a);
        cr_assert_eq(clnorm_bn_forward_training(H.ctx, H.q, &d, &a, 0, NULL, NULL),
                     CLNORM_ERROR_UNSUPPORTED_DTYPE);
        return;
    }
    size_t   n = tc->dims[0] * tc->dims[1] * tc->dims[2] * tc->dims[3];
    size_t   C = tc->layout == CLNORM_NCHW ? tc->dims[1] : tc->dims[3];
    ref_view v = tc->layout == CLNORM_NCHW ? (ref_view){tc->dims[0], C, tc->dims[2] * tc->dims[3]}
                                           : (ref_view){n / C, C, 1};
    ref_rng  r = ref_rng_seed(99 + n + (size_t)tc->dtype);
    double  *x = dalloc(n), *dy = dalloc(n), *g = dalloc(C), *b = dalloc(C);
    ref_fill_normal(&r, x, n, tc->mean, 1.5);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, C, 0.5, 1.5);
    ref_fill_uniform(&r, b, C, -1, 1);
    round_storage(x, n, tc->dtype, 0);
    round_storage(dy, n, tc->dtype, 0);
    round_storage(g, C, tc->dtype, 1);
    round_storage(b, C, tc->dtype, 1);

    double *zero = dalloc(n);
    cl_mem  mx = upload(x, n, tc->dtype, 0), mdy = upload(dy, n, tc->dtype, 0);
    cl_mem  my = upload(zero, n, tc->dtype, 0), mdx = upload(zero, n, tc->dtype, 0);
    cl_mem  mg = upload(g, C, tc->dtype, 1), mb = upload(b, C, tc->dtype, 1);
    cl_mem  mm = upload(zero, C, tc->dtype, 1), mi = upload(zero, C, tc->dtype, 1);
    cl_mem  mdg = upload(zero, C, tc->dtype, 1), mdb = upload(zero, C, tc->dtype, 1);
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(mx, 0);
    a.y = clnorm_buf(my, 0);
    a.dy = clnorm_buf(mdy, 0);
    a.dx = clnorm_buf(mdx, 0);
    a.gamma = clnorm_buf(mg, 0);
    a.beta = clnorm_buf(mb, 0);
    a.saved_mean = clnorm_buf(mm, 0);
    a.saved_invstd = clnorm_buf(mi, 0);
    a.dgamma = clnorm_buf(mdg, 0);
    a.dbeta = clnorm_buf(mdb, 0);
    clnorm_status st = clnorm_bn_forward_training(H.ctx, H.q, &d, &a, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "forward: %s", clnorm_last_error(H.ctx));
    st = clnorm_bn_backward(H.ctx, H.q, &d, &a, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "backward: %s", clnorm_last_error(H.ctx));

    double *ry = dalloc(n), *rm = dalloc(C), *ri = dalloc(C), *rdx = dalloc(n), *rdg = dalloc(C),
           *rdb = dalloc(C);
    double *gy = dalloc(n), *gm = dalloc(C), *gi = dalloc(C), *gdx = dalloc(n), *gdg = dalloc(C),
           *gdb = dalloc(C);
    ref_bn_forward_training(v, x, g, b, d.epsilon, 0.1, 1, ry, rm, ri, NULL, NULL);
    download(my, n, tc->dtype, 0, gy);
    download(mm, C, tc->dtype, 1, gm);
    download(mi, C, tc->dtype, 1, gi);
    /* backward from the device's saved statistics, as a framework would */
    ref_bn_backward(v, x, dy, g, gm, gi, rdx, rdg, rdb);
    download(mdx, n, tc->dtype, 0, gdx);
    download(mdg, C, tc->dtype, 1, gdg);
    download(mdb, C, tc->dtype, 1, gdb);

    int    f64    = tc->dtype == CLNORM_F64;
    /* fp64: the double reference itself holds the mean only to ulp(|mean|),
     * which is 16 * DBL_EPSILON * |mean| / std of y's scale at most */
    double tol_t  = f64 ? 1e-12 + 16 * DBL_EPSILON * fabs(tc->mean) / 1.5
                        : tc->dtype == CLNORM_F16 ? 1e-3 : 8e-3;
    double tol_s  = f64 ? 1e-12 : 1e-5;
    double tol_g  = f64 ? 1e-11 : 1e-4;
    /* mean: relative to the spread too, since |mean| can dwarf it */
    for (size_t c = 0; c < C; ++c)
        cr_expect(fabs(gm[c] - rm[c]) <= tol_s * (fabs(rm[c]) + 1.5), "dtype %d mean[%zu] %.17g vs %.17g",
                  (int)tc->dtype, c, gm[c], rm[c]);
    cr_expect(normwise_err(gi, ri, C, 0) <= tol_s, "dtype %d invstd %.3g", (int)tc->dtype,
              normwise_err(gi, ri, C, 0));
    cr_expect(normwise_err(gy, ry, n, 0) <= tol_t, "dtype %d y %.3g", (int)tc->dtype, normwise_err(gy, ry, n, 0));
    cr_expect(normwise_err(gdx, rdx, n, 0) <= tol_t, "dtype %d dx %.3g", (int)tc->dtype,
              normwise_err(gdx, rdx, n, 0));
    /* half and bfloat16: every stored value is the rounding to nearest of
     * an fp32 result, so within half a storage ulp of the reference plus
     * fp32's error; a truncating or double-rounding store (up to a whole
     * ulp) fails this on many values */
    if (!f64) {
        size_t by = rounding_misses(gy, ry, n, tc->dtype), bdx = rounding_misses(gdx, rdx, n, tc->dtype);
        cr_expect(by == 0, "dtype %d: %zu of %zu y values off by more than half an ulp", (int)tc->dtype, by, n);
        cr_expect(bdx == 0, "dtype %d: %zu of %zu dx values off by more than half an ulp", (int)tc->dtype, bdx,
                  n);
    }
    cr_expect(normwise_err(gdg, rdg, C, 0) <= tol_g, "dtype %d dgamma %.3g", (int)tc->dtype,
              normwise_err(gdg, rdg, C, 0));
    cr_expect(normwise_err(gdb, rdb, C, 0) <= tol_g, "dtype %d dbeta %.3g", (int)tc->dtype,
              normwise_err(gdb, rdb, C, 0));

    cl_mem all[] = {mx, mdy, my, mdx, mg, mb, mm, mi, mdg, mdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
    double *hs[] = {x, dy, g, b, zero, ry, rm, ri, rdx, rdg, rdb, gy, gm, gi, gdx, gdg, gdb};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; ++i)
        free(hs[i]);
}
