/* cli_check.c: `clnorm check`: runs every operation the library has, forward
 * and backward, over a grid of shapes, layouts, dtypes and hostile data on
 * one device, against the double-precision C reference (tests/ref), and
 * prints one table row per operation, direction and shape.
 *
 * Errors are normwise: max|got - ref| / max|ref| per output (a row reports
 * the output whose error is largest relative to its tolerance). Backward
 * rows feed the reference the statistics the device saved (their own rows
 * check those), as the backward calls take them as inputs. dX is measured
 * against max(max|dX|, max|scale| * max|invstd| * max|dY|), the size of the
 * terms whose difference it is, so that a dX that cancels to ~0 (rows of one
 * element) is not judged against its own rounding noise. Tolerances
 * per storage type, for outputs of magnitude ~1 computed from inputs that
 * the reference sees exactly as the device does (rounded to the storage):
 *  - f32: Y 2e-5 and dX 5e-5 (a few ulp of fp32 through invstd and the
 *    products; the kernels keep x - mean exact to a few ulp even at mean/std
 *    = 1e4), dscale/dB 1e-4 (fp32 sums of up to 10^5 terms), mean and
 *    running mean 1e-5, invstd and running variance 1e-4 (the variance bound
 *    the design asks for).
 *  - f16/bf16: tensors are stored rounded to 11/8 significant bits, so Y and
 *    dX get 2 ulp of the storage (1e-3 / 8e-3); statistics and parameter
 *    gradients are fp32 and keep the f32 bounds.
 *  - f64: 1e-10 (mean 1e-12), far below what any fp32 slip gives (1e-7) and
 *    with room for the log10(|mean|/std) digits x - mean loses at mean 1e4
 *    when the mean is exact to an ulp but not carried as two terms. */
#include "cli.h"
#include "ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage_check[] =
    "usage: clnorm check [--device SEL] [--quick]\n"
    "\n"
    "Runs every operation of the library, forward and backward, on the device\n"
    "against the double-precision C reference, over a grid of shapes, layouts,\n"
    "dtypes and hostile data (mean 1e4 with std 1, constant channels), and\n"
    "prints one row per operation, direction and shape: the largest absolute\n"
    "error, the largest normwise relative error (max|got - ref| / max|ref|) of\n"
    "the output named under 'worst', its tolerance, and PASS or FAIL (dX is\n"
    "measured against max|scale|*max|invstd|*max|dY| where that is larger).\n"
    "Directions: fwd-train (batch statistics and running-average update),\n"
    "fwd-infer (running statistics), bwd (gradient through the statistics),\n"
    "bwd-frozen (running statistics held constant); fwd and bwd for the others.\n"
    "float64 cases run where the device has cl_khr_fp64. Backward rows take the\n"
    "statistics the forward saved on the device as their inputs.\n"
    "\n"
    "Tolerances (normwise): f32 Y 2e-5, dX 5e-5, dscale and dB 1e-4, mean 1e-5,\n"
    "invstd and running variance 1e-4; f16 and bf16 Y and dX 1e-3 and 8e-3 (the\n"
    "rounding of the storage), statistics and parameter gradients as f32; f64\n"
    "1e-10 (mean 1e-12).\n"
    "\n"
    "Options:\n"
    "  --device SEL  device by P:D, flat index or name substring\n"
    "  --quick       a small grid that runs in seconds (first run includes the\n"
    "                kernel builds; later runs use the program cache)\n"
    "\n"
    "Exits 1 if any check fails.\n";

enum data_kind { D_NORMAL, D_MEAN_1E4, D_CONSTANT, D_OUTLIER };

static const char *const data_label[] = {"", " mean=1e4", " const-ch", " outlier"};

typedef struct check_case {
    cli_op         op;
    clnorm_dtype   dtype;
    enum data_kind data;
    int            quick;
    clnorm_bn_mode mode;   /* batch norm */
    clnorm_layout  layout; /* batch, group and instance norm */
    int            axis;   /* layer and RMS norm */
    size_t         groups; /* group norm; 0 for instance norm */
    size_t         ndim;
    size_t         dims[6];
} check_case;

#define F32 CLNORM_F32
#define F64 CLNORM_F64
#define F16 CLNORM_F16
#define BF16 CLNORM_BF16
#define NCHW CLNORM_NCHW
#define NHWC CLNORM_NHWC
/* clang-format off */
#define BN(q, dt, dk, lay, nd, ...) {CLI_OP_BN, dt, dk, q, CLNORM_BN_SPATIAL, lay, 0, 0, nd, {__VA_ARGS__}}
#define BN_PA(q, dt, dk, nd, ...) {CLI_OP_BN, dt, dk, q, CLNORM_BN_PER_ACTIVATION, NCHW, 0, 0, nd, {__VA_ARGS__}}
#define LN(q, dt, dk, axis, nd, ...) {CLI_OP_LN, dt, dk, q, 0, NCHW, axis, 0, nd, {__VA_ARGS__}}
#define RMS(q, dt, dk, axis, nd, ...) {CLI_OP_RMS, dt, dk, q, 0, NCHW, axis, 0, nd, {__VA_ARGS__}}
#define GN(q, dt, dk, lay, g, nd, ...) {CLI_OP_GN, dt, dk, q, 0, lay, 0, g, nd, {__VA_ARGS__}}
#define IN(q, dt, dk, lay, nd, ...) {CLI_OP_GN, dt, dk, q, 0, lay, 0, 0, nd, {__VA_ARGS__}}
/* clang-format on */

static const check_case cases[] = {
    /* batch norm: layouts, modes, edge shapes, hostile data; quick ones first */
    BN(1, F32, D_NORMAL, NCHW, 4, 3, 5, 33, 17),
    BN(1, F32, D_NORMAL, NHWC, 4, 3, 33, 17, 5),
    BN_PA(1, F32, D_NORMAL, 2, 100, 37),
    BN(1, F32, D_MEAN_1E4, NCHW, 4, 8, 4, 16, 16),
    BN(0, F32, D_NORMAL, NCHW, 4, 1, 8, 5, 7),
    BN(0, F32, D_NORMAL, NCHW, 4, 4, 1, 9, 11),
    BN(0, F32, D_NORMAL, NCHW, 4, 16, 32, 1, 1),
    BN(0, F32, D_NORMAL, NHWC, 4, 16, 1, 1, 32),
    BN(0, F32, D_NORMAL, NCHW, 4, 1, 16, 1, 1),
    BN(0, F32, D_NORMAL, NCHW, 4, 8, 64, 28, 28),
    BN(0, F32, D_NORMAL, NHWC, 4, 8, 28, 28, 64),
    BN(0, F32, D_NORMAL, NCHW, 4, 2, 3, 256, 256),
    BN(0, F32, D_NORMAL, NHWC, 4, 4, 7, 7, 512),
    BN(0, F32, D_NORMAL, NCHW, 5, 2, 3, 4, 5, 6),
    BN(0, F32, D_NORMAL, NHWC, 5, 2, 4, 5, 6, 3),
    BN(0, F32, D_NORMAL, NCHW, 2, 50, 7),
    BN_PA(0, F32, D_NORMAL, 2, 7, 4096),
    BN_PA(0, F32, D_NORMAL, 4, 6, 4, 5, 3),
    BN(0, F32, D_MEAN_1E4, NHWC, 4, 8, 16, 16, 4),
    BN_PA(0, F32, D_MEAN_1E4, 2, 5000, 6),
    BN(0, F32, D_CONSTANT, NCHW, 4, 3, 4, 10, 10),
    BN(0, F32, D_OUTLIER, NHWC, 4, 4, 20, 20, 3),
    BN(1, F64, D_NORMAL, NCHW, 4, 3, 5, 33, 17),
    BN(0, F64, D_NORMAL, NHWC, 4, 3, 33, 17, 5),
    BN_PA(0, F64, D_MEAN_1E4, 2, 300, 9),
    BN(0, F16, D_NORMAL, NCHW, 4, 3, 5, 33, 17),
    BN(0, F16, D_NORMAL, NHWC, 4, 3, 33, 17, 5),
    BN(0, BF16, D_NORMAL, NCHW, 4, 3, 5, 33, 17),
    BN_PA(0, BF16, D_NORMAL, 2, 100, 37),
    /* layer norm */
    LN(1, F32, D_NORMAL, -1, 2, 37, 300),
    LN(1, F32, D_MEAN_1E4, -1, 2, 16, 1024),
    LN(0, F32, D_NORMAL, -1, 2, 1, 1),
    LN(0, F32, D_NORMAL, -1, 2, 1000, 7),
    LN(0, F32, D_NORMAL, -1, 2, 8, 8193),
    LN(0, F32, D_NORMAL, -1, 3, 4, 128, 768),
    LN(0, F32, D_NORMAL, 1, 4, 2, 3, 5, 7),
    LN(0, F32, D_NORMAL, 0, 2, 6, 5),
    LN(0, F32, D_CONSTANT, -1, 2, 16, 100),
    LN(0, F64, D_NORMAL, -1, 2, 37, 300),
    LN(0, F16, D_NORMAL, -1, 2, 37, 300),
    LN(0, BF16, D_NORMAL, -1, 2, 37, 300),
    /* RMS norm */
    RMS(1, F32, D_NORMAL, -1, 2, 37, 300),
    RMS(0, F32, D_NORMAL, -1, 2, 1, 1),
    RMS(0, F32, D_NORMAL, -1, 2, 1000, 7),
    RMS(0, F32, D_NORMAL, -1, 2, 8, 8193),
    RMS(0, F32, D_NORMAL, 1, 3, 4, 6, 50),
    RMS(0, F32, D_MEAN_1E4, -1, 2, 16, 1024),
    RMS(0, F64, D_NORMAL, -1, 2, 37, 300),
    RMS(0, F16, D_NORMAL, -1, 2, 37, 300),
    /* group norm */
    GN(1, F32, D_NORMAL, NCHW, 4, 4, 3, 12, 5, 7),
    GN(0, F32, D_NORMAL, NHWC, 4, 4, 3, 5, 7, 12),
    GN(0, F32, D_MEAN_1E4, NCHW, 2, 3, 4, 8, 64),
    GN(0, F32, D_NORMAL, NCHW, 3, 2, 1, 6),
    GN(0, F32, D_NORMAL, NCHW, 32, 4, 2, 64, 28, 28),
    GN(0, F32, D_NORMAL, NHWC, 32, 4, 2, 28, 28, 64),
    GN(0, F32, D_NORMAL, NCHW, 1, 4, 2, 32, 33, 17),
    GN(0, F64, D_NORMAL, NCHW, 4, 4, 3, 12, 5, 7),
    GN(0, BF16, D_NORMAL, NCHW, 4, 4, 3, 12, 5, 7),
    /* instance norm */
    IN(1, F32, D_NORMAL, NCHW, 4, 3, 5, 7, 11),
    IN(0, F32, D_NORMAL, NHWC, 4, 3, 7, 11, 5),
    IN(0, F32, D_NORMAL, NCHW, 4, 2, 16, 56, 56),
    IN(0, F32, D_MEAN_1E4, NCHW, 3, 2, 3, 500),
    IN(0, F16, D_NORMAL, NCHW, 4, 3, 5, 7, 11),
};

/* ------------------------------------------------------------------------ */

typedef struct tolerances {
    double y, dx, dparam, mean, invstd;
} tolerances;

static tolerances tol_for(clnorm_dtype dt)
{
    tolerances t = {2e-5, 5e-5, 1e-4, 1e-5, 1e-4};
    if (dt == CLNORM_F16) {
        t.y  = 1e-3;
        t.dx = 1e-3;
    } else if (dt == CLNORM_BF16) {
        t.y  = 8e-3;
        t.dx = 8e-3;
    } else if (dt == CLNORM_F64) {
        t = (tolerances){1e-10, 1e-10, 1e-10, 1e-12, 1e-10};
    }
    return t;
}

/* One table row: the worst output (by error / tolerance) of a direction. */
typedef struct row {
    double      abs, rel, tol;
    const char *worst;
    int         any;
} row;

static double max_abs(const double *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; ++i)
        if (fabs(x[i]) > m)
            m = fabs(x[i]);
    return m;
}

/* Adds one output to a row: error normwise against max|ref|, or against
 * floor when that is larger (see dx_floor). */
static void row_add(row *r, const char *name, const double *got, const double *ref, size_t n, double tol,
                    double floor)
{
    double amax = 0, rmax = 0;
    for (size_t i = 0; i < n; ++i) {
        double d = fabs(got[i] - ref[i]);
        if (isnan(got[i]) != isnan(ref[i]) || isinf(d))
            d = INFINITY;
        else if (isnan(d))
            d = 0; /* NaN where the reference has NaN too */
        if (d > amax)
            amax = d;
        if (fabs(ref[i]) > rmax)
            rmax = fabs(ref[i]);
    }
    if (floor > rmax)
        rmax = floor;
    double rel = amax == 0 ? 0 : isinf(amax) ? INFINITY : amax / (rmax > 1e-300 ? rmax : 1e-300);
    if (!r->any || rel / tol > r->rel / r->tol) {
        r->abs   = amax;
        r->rel   = rel;
        r->tol   = tol;
        r->worst = name;
        r->any   = 1;
    }
}

typedef struct tally {
    int rows, failed;
} tally;

static const char *op_label(const check_case *c)
{
    switch (c->op) {
    case CLI_OP_BN: return "batchnorm";
    case CLI_OP_LN: return "layernorm";
    case CLI_OP_RMS: return "rmsnorm";
    case CLI_OP_GN: return c->groups ? "groupnorm" : "instancenorm";
    }
    return "?";
}

static void shape_label(const check_case *c, char *buf, size_t len)
{
    size_t k = 0;
    if (c->op == CLI_OP_BN || c->op == CLI_OP_GN)
        k = (size_t)snprintf(buf, len, "%s ",
                             c->op == CLI_OP_BN && c->mode == CLNORM_BN_PER_ACTIVATION ? "PA"
                             : c->layout == CLNORM_NCHW                                ? "NCHW"
                                                                                       : "NHWC");
    for (size_t i = 0; i < c->ndim && k < len; ++i)
        k += (size_t)snprintf(buf + k, len - k, "%s%zu", i ? "x" : "", c->dims[i]);
    if ((c->op == CLI_OP_LN || c->op == CLI_OP_RMS) && k < len)
        k += (size_t)snprintf(buf + k, len - k, " axis=%d", c->axis);
    if (c->op == CLI_OP_GN && c->groups && k < len)
        k += (size_t)snprintf(buf + k, len - k, " G=%zu", c->groups);
    if (k < len)
        snprintf(buf + k, len - k, "%s", data_label[c->data]);
}

static void print_header(void)
{
    printf("%-13s %-10s %-5s %-26s %9s %9s %9s %-12s %s\n", "op", "direction", "dtype", "shape", "max abs",
           "max rel", "tol", "worst", "result");
}

static void print_row(tally *t, const check_case *c, const char *dir, const row *r, const char *error)
{
    char shape[64];
    shape_label(c, shape, sizeof shape);
    int fail = error != NULL || !(r->rel <= r->tol);
    t->rows++;
    t->failed += fail;
    if (error) {
        printf("%-13s %-10s %-5s %-26s %s\n", op_label(c), dir, cli_dtype_name(c->dtype), shape, "ERROR");
        printf("    %s\n", error);
    } else {
        printf("%-13s %-10s %-5s %-26s %9.2e %9.2e %9.1e %-12s %s\n", op_label(c), dir,
               cli_dtype_name(c->dtype), shape, r->abs, r->rel, r->tol, r->worst, fail ? "FAIL" : "PASS");
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------------ */

/* Host arrays of one case: doubles as the reference sees them, and the
 * device's storage (tensors) or parameter type (vectors). */
typedef struct arr {
    double *d;
    void   *s;
    size_t  n;
} arr;

static int arr_make(arr *a, size_t n, size_t elem)
{
    a->n = n;
    a->d = calloc(n ? n : 1, sizeof(double));
    a->s = calloc(n ? n : 1, elem);
    return a->d && a->s;
}

static void arr_free(arr *a)
{
    free(a->d);
    free(a->s);
    memset(a, 0, sizeof *a);
}

/* Rounds a->d through the storage type, so both sides see the same values. */
static void arr_tensor_in(arr *a, clnorm_dtype dt)
{
    cli_to_tensor(dt, a->d, a->n, a->s);
    cli_from_tensor(dt, a->s, a->n, a->d);
}

static void arr_param_in(arr *a, clnorm_dtype dt)
{
    cli_to_param(dt, a->d, a->n, a->s);
    cli_from_param(dt, a->s, a->n, a->d);
}

/* Fills x viewed as (outer, channels, inner). */
static void fill_x(enum data_kind k, ref_rng *r, double *x, size_t outer, size_t ch, size_t inner)
{
    size_t n = outer * ch * inner;
    switch (k) {
    case D_NORMAL: ref_fill_normal(r, x, n, 0.5, 2.0); break;
    case D_MEAN_1E4: ref_fill_normal(r, x, n, 1e4, 1.0); break;
    case D_CONSTANT:
        ref_fill_normal(r, x, n, 0.0, 1.0);
        for (size_t o = 0; o < outer; ++o)
            for (size_t i = 0; i < inner; ++i)
                x[o * ch * inner + i] = 3.25; /* channel 0 (or row 0) constant */
        break;
    case D_OUTLIER:
        ref_fill_normal(r, x, n, 1.0, 1.0);
        for (size_t c = 0; c < ch; ++c)
            x[c * inner] = 1e4;
        break;
    }
}

enum { A_X, A_DY, A_G, A_B, A_RM, A_RV, A_Y, A_SM, A_SI, A_RMO, A_RVO, A_DX, A_DG, A_DB, A_COUNT };

static int run_bn(clnorm_context *ctx, const check_case *c, tally *t)
{
    cli_job j;
    memset(&j, 0, sizeof j);
    j.op    = CLI_OP_BN;
    j.dtype = c->dtype;
    if (clnorm_bn_desc_init(&j.bn, c->mode, c->layout, c->ndim, c->dims) != CLNORM_SUCCESS) {
        cli_error("check: bad case: %s", clnorm_last_error(NULL));
        return -1;
    }
    size_t   n = cli_job_count(&j), C = cli_job_channels(&j);
    size_t   ts = cli_tensor_size(c->dtype), ps = c->dtype == CLNORM_F64 ? 8 : 4;
    ref_view v;
    if (c->mode == CLNORM_BN_PER_ACTIVATION)
        v = (ref_view){c->dims[0], C, 1};
    else if (c->layout == CLNORM_NCHW)
        v = (ref_view){c->dims[0], C, n / (c->dims[0] * C)};
    else
        v = (ref_view){n / C, C, 1};
    size_t M                  = v.outer * v.inner;
    j.bn.epsilon              = 1e-5;
    j.bn.exp_avg_factor       = 0.1;
    j.bn.unbiased_running_var = M > 1;

    arr    a[A_COUNT];
    size_t sizes[A_COUNT] = {n, n, C, C, C, C, n, C, C, C, C, n, C, C};
    int    ok             = 1;
    memset(a, 0, sizeof a);
    for (int i = 0; i < A_COUNT; ++i)
        ok &= arr_make(&a[i], sizes[i],
                       sizes[i] == n && (i == A_X || i == A_DY || i == A_Y || i == A_DX) ? ts : ps);
    if (!ok) {
        for (int i = 0; i < A_COUNT; ++i)
            arr_free(&a[i]);
        cli_error("check: out of host memory");
        return -1;
    }
    ref_rng r = ref_rng_seed(1234 + n + C);
    fill_x(c->data, &r, a[A_X].d, v.outer, v.channels, v.inner);
    arr_tensor_in(&a[A_X], c->dtype);
    ref_fill_normal(&r, a[A_DY].d, n, 0.1, 1.0);
    arr_tensor_in(&a[A_DY], c->dtype);
    ref_fill_uniform(&r, a[A_G].d, C, 0.5, 1.5);
    ref_fill_uniform(&r, a[A_B].d, C, -1.0, 1.0);
    ref_fill_uniform(&r, a[A_RM].d, C, -0.5, 0.5);
    ref_fill_uniform(&r, a[A_RV].d, C, 0.5, 2.0);
    for (int i = A_G; i <= A_RV; ++i)
        arr_param_in(&a[i], c->dtype);

    j.grad            = 1;
    j.x               = a[A_X].s;
    j.dy              = a[A_DY].s;
    j.gamma           = a[A_G].s;
    j.beta            = a[A_B].s;
    j.running_mean_in = a[A_RM].s;
    j.running_var_in  = a[A_RV].s;
    j.y               = a[A_Y].s;
    j.saved_mean      = a[A_SM].s;
    j.saved_invstd    = a[A_SI].s;
    j.running_mean    = a[A_RMO].s;
    j.running_var     = a[A_RVO].s;
    j.dx              = a[A_DX].s;
    j.dgamma          = a[A_DG].s;
    j.dbeta           = a[A_DB].s;

    tolerances tol = tol_for(c->dtype);
    double    *ry = calloc(n, sizeof *ry), *rdx = calloc(n, sizeof *rdx);
    double    *rv[6];
    for (int i = 0; i < 6; ++i)
        rv[i] = calloc(C, sizeof(double));
    char err[CLI_ERRLEN];

    for (int train = 1; train >= 0; --train) {
        j.training        = train;
        clnorm_status st  = cli_job_run(ctx, &j, err, sizeof err);
        row           fwd = {0}, bwd = {0};
        const char   *dirs[2][2] = {{"fwd-infer", "bwd-frozen"}, {"fwd-train", "bwd"}};
        if (st != CLNORM_SUCCESS) {
            print_row(t, c, dirs[train][0], &fwd, err);
            continue;
        }
        cli_from_tensor(c->dtype, a[A_Y].s, n, a[A_Y].d);
        cli_from_tensor(c->dtype, a[A_DX].s, n, a[A_DX].d);
        for (int i = A_SM; i <= A_RVO; ++i)
            cli_from_param(c->dtype, a[i].s, C, a[i].d);
        cli_from_param(c->dtype, a[A_DG].s, C, a[A_DG].d);
        cli_from_param(c->dtype, a[A_DB].s, C, a[A_DB].d);
        /* rv: mean, invstd, running mean, running var, dgamma, dbeta */
        if (train) {
            memcpy(rv[2], a[A_RM].d, C * sizeof(double));
            memcpy(rv[3], a[A_RV].d, C * sizeof(double));
            ref_bn_forward_training(v, a[A_X].d, a[A_G].d, a[A_B].d, j.bn.epsilon, j.bn.exp_avg_factor,
                                    j.bn.unbiased_running_var, ry, rv[0], rv[1], rv[2], rv[3]);
            /* backward is checked as a function of its inputs, the saved
             * statistics included, which the forward rows check themselves:
             * the fp32 saved mean alone moves dscale by ulp(mean)/std * sum(dY) */
            ref_bn_backward(v, a[A_X].d, a[A_DY].d, a[A_G].d, a[A_SM].d, a[A_SI].d, rdx, rv[4], rv[5]);
            row_add(&fwd, "Y", a[A_Y].d, ry, n, tol.y, 0);
            row_add(&fwd, "mean", a[A_SM].d, rv[0], C, tol.mean, 0);
            row_add(&fwd, "invstd", a[A_SI].d, rv[1], C, tol.invstd, 0);
            row_add(&fwd, "running_mean", a[A_RMO].d, rv[2], C, tol.mean, 0);
            row_add(&fwd, "running_var", a[A_RVO].d, rv[3], C, tol.invstd, 0);
        } else {
            ref_bn_forward_inference(v, a[A_X].d, a[A_G].d, a[A_B].d, a[A_RM].d, a[A_RV].d, j.bn.epsilon, ry);
            ref_bn_backward_frozen(v, a[A_X].d, a[A_DY].d, a[A_G].d, a[A_RM].d, a[A_RV].d, j.bn.epsilon, rdx,
                                   rv[4], rv[5]);
            row_add(&fwd, "Y", a[A_Y].d, ry, n, tol.y, 0);
        }
        double inv_max = 0;
        for (size_t k = 0; k < C; ++k) {
            double inv = train ? rv[1][k] : 1.0 / sqrt(a[A_RV].d[k] + j.bn.epsilon);
            inv_max    = inv > inv_max ? inv : inv_max;
        }
        double dxf = max_abs(a[A_G].d, C) * inv_max * max_abs(a[A_DY].d, n);
        row_add(&bwd, "dX", a[A_DX].d, rdx, n, tol.dx, dxf);
        row_add(&bwd, "dscale", a[A_DG].d, rv[4], C, tol.dparam, 0);
        row_add(&bwd, "dB", a[A_DB].d, rv[5], C, tol.dparam, 0);
        print_row(t, c, dirs[train][0], &fwd, NULL);
        print_row(t, c, dirs[train][1], &bwd, NULL);
    }
    free(ry);
    free(rdx);
    for (int i = 0; i < 6; ++i)
        free(rv[i]);
    for (int i = 0; i < A_COUNT; ++i)
        arr_free(&a[i]);
    return 0;
}

/* Layer, RMS, group and instance norm: forward (Y and the saved statistics)
 * and backward (dX, dscale, dB) in one job. */
static int run_family(clnorm_context *ctx, const check_case *c, tally *t)
{
    cli_job j;
    memset(&j, 0, sizeof j);
    j.op              = c->op;
    j.dtype           = c->dtype;
    j.epsilon         = 1e-5;
    j.grad            = 1;
    j.instance        = c->op == CLI_OP_GN && c->groups == 0;
    clnorm_status ist = c->op == CLI_OP_GN
                            ? clnorm_groupnorm_desc_init(&j.gn, c->layout, c->ndim, c->dims, c->groups)
                            : clnorm_norm_desc_init(&j.norm, c->ndim, c->dims, c->axis);
    if (ist != CLNORM_SUCCESS) {
        cli_error("check: bad case: %s", clnorm_last_error(NULL));
        return -1;
    }
    size_t rows = 0, cols = 0, gn = 0, gc = 0, gs = 0, gg = 0;
    int    nhwc = c->layout == CLNORM_NHWC;
    if (c->op == CLI_OP_GN)
        cli_job_groups(&j, &gn, &gc, &gs, &gg);
    else
        cli_job_rows(&j, &rows, &cols);
    size_t n = cli_job_count(&j), C = cli_job_channels(&j), S = cli_job_stats(&j);
    size_t ts = cli_tensor_size(c->dtype), ps = c->dtype == CLNORM_F64 ? 8 : 4;
    int    rms = c->op == CLI_OP_RMS;

    arr a[A_COUNT];
    memset(a, 0, sizeof a);
    size_t sizes[A_COUNT] = {n, n, C, C, 0, 0, n, S, S, 0, 0, n, C, C};
    int    ok             = 1;
    for (int i = 0; i < A_COUNT; ++i)
        ok &= arr_make(&a[i], sizes[i], (i == A_X || i == A_DY || i == A_Y || i == A_DX) ? ts : ps);
    double *ry = calloc(n ? n : 1, sizeof *ry), *rdx = calloc(n ? n : 1, sizeof *rdx);
    double *rm = calloc(S, sizeof *rm), *ri = calloc(S, sizeof *ri);
    double *rdg = calloc(C, sizeof *rdg), *rdb = calloc(C, sizeof *rdb);
    if (!ok || !ry || !rdx || !rm || !ri || !rdg || !rdb) {
        cli_error("check: out of host memory");
        ok = 0;
        goto done;
    }
    ref_rng r = ref_rng_seed(4321 + n + C);
    if (c->op != CLI_OP_GN)
        fill_x(c->data, &r, a[A_X].d, 1, rows, cols); /* D_CONSTANT: row 0 */
    else if (nhwc)
        fill_x(c->data, &r, a[A_X].d, gn * gs, gc, 1);
    else
        fill_x(c->data, &r, a[A_X].d, gn, gc, gs);
    arr_tensor_in(&a[A_X], c->dtype);
    ref_fill_normal(&r, a[A_DY].d, n, 0.1, 1.0);
    arr_tensor_in(&a[A_DY], c->dtype);
    ref_fill_uniform(&r, a[A_G].d, C, 0.5, 1.5);
    ref_fill_uniform(&r, a[A_B].d, C, -1.0, 1.0);
    arr_param_in(&a[A_G], c->dtype);
    arr_param_in(&a[A_B], c->dtype);

    j.x            = a[A_X].s;
    j.dy           = a[A_DY].s;
    j.gamma        = a[A_G].s;
    j.beta         = rms ? NULL : a[A_B].s;
    j.y            = a[A_Y].s;
    j.saved_mean   = rms ? NULL : a[A_SM].s;
    j.saved_invstd = a[A_SI].s;
    j.dx           = a[A_DX].s;
    j.dgamma       = a[A_DG].s;
    j.dbeta        = rms ? NULL : a[A_DB].s;

    char          err[CLI_ERRLEN];
    clnorm_status st  = cli_job_run(ctx, &j, err, sizeof err);
    row           fwd = {0}, bwd = {0};
    if (st != CLNORM_SUCCESS) {
        print_row(t, c, "fwd", &fwd, err);
        goto done;
    }
    cli_from_tensor(c->dtype, a[A_Y].s, n, a[A_Y].d);
    cli_from_tensor(c->dtype, a[A_DX].s, n, a[A_DX].d);
    for (int i = A_SM; i <= A_SI; ++i)
        cli_from_param(c->dtype, a[i].s, S, a[i].d);
    cli_from_param(c->dtype, a[A_DG].s, C, a[A_DG].d);
    cli_from_param(c->dtype, a[A_DB].s, C, a[A_DB].d);

    tolerances tol = tol_for(c->dtype);
    switch (c->op) {
    case CLI_OP_LN:
        ref_layernorm_forward(rows, cols, a[A_X].d, a[A_G].d, a[A_B].d, j.epsilon, ry, rm, ri);
        ref_layernorm_backward(rows, cols, a[A_X].d, a[A_DY].d, a[A_G].d, a[A_SM].d, a[A_SI].d, rdx, rdg,
                               rdb);
        break;
    case CLI_OP_RMS:
        ref_rmsnorm_forward(rows, cols, a[A_X].d, a[A_G].d, j.epsilon, ry, ri);
        ref_rmsnorm_backward(rows, cols, a[A_X].d, a[A_DY].d, a[A_G].d, a[A_SI].d, rdx, rdg);
        break;
    default:
        ref_groupnorm_forward(gn, gc, gs, gg, nhwc, a[A_X].d, a[A_G].d, a[A_B].d, j.epsilon, ry, rm, ri);
        ref_groupnorm_backward(gn, gc, gs, gg, nhwc, a[A_X].d, a[A_DY].d, a[A_G].d, a[A_SM].d, a[A_SI].d, rdx,
                               rdg, rdb);
        break;
    }
    row_add(&fwd, "Y", a[A_Y].d, ry, n, tol.y, 0);
    if (!rms)
        row_add(&fwd, "mean", a[A_SM].d, rm, S, tol.mean, 0);
    row_add(&fwd, rms ? "invrms" : "invstd", a[A_SI].d, ri, S, tol.invstd, 0);
    double dxf = max_abs(a[A_G].d, C) * max_abs(ri, S) * max_abs(a[A_DY].d, n);
    row_add(&bwd, "dX", a[A_DX].d, rdx, n, tol.dx, dxf);
    row_add(&bwd, "dscale", a[A_DG].d, rdg, C, tol.dparam, 0);
    if (!rms)
        row_add(&bwd, "dB", a[A_DB].d, rdb, C, tol.dparam, 0);
    print_row(t, c, "fwd", &fwd, NULL);
    print_row(t, c, "bwd", &bwd, NULL);
done:
    free(ry);
    free(rdx);
    free(rm);
    free(ri);
    free(rdg);
    free(rdb);
    for (int i = 0; i < A_COUNT; ++i)
        arr_free(&a[i]);
    return ok ? 0 : -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_check(int argc, char **argv)
{
    const char *selector = NULL;
    int         quick    = 0;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_check, stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            selector = argv[++i];
        } else if (!strncmp(argv[i], "--device=", 9)) {
            selector = argv[i] + 9;
        } else {
            cli_error("check: unexpected argument '%s' (see clnorm check --help)", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    double          t0  = now_s();
    clnorm_context *ctx = cli_open(selector);
    if (!ctx)
        return CLI_EXIT_FAIL;
    clnorm_device_info info;
    char               why[256] = "";
    cl_device_id       dev;
    clnorm_context_device_info(ctx, &info);
    if (clnorm_select_device(selector, NULL, &dev, why, sizeof why) != CLNORM_SUCCESS)
        why[0] = '\0';
    printf("clnorm %s check%s on \"%s\" (%s%s%s)\n\n", clnorm_version_string(), quick ? " --quick" : "",
           info.name, info.platform_name, *why ? "; " : "", why);
    print_header();

    tally t         = {0, 0};
    int   skip_fp64 = 0, skip_family = 0, rc = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases && rc == 0; ++i) {
        const check_case *c = &cases[i];
        if (quick && !c->quick)
            continue;
        if (c->op != CLI_OP_BN && !cli_have_family()) {
            ++skip_family;
            continue;
        }
        if (c->dtype == CLNORM_F64 && !info.has_fp64) {
            ++skip_fp64;
            continue;
        }
        rc = c->op == CLI_OP_BN ? run_bn(ctx, c, &t) : run_family(ctx, c, &t);
    }
    clnorm_context_destroy(ctx);
    if (rc != 0)
        return CLI_EXIT_FAIL;
    printf("\nmax rel = max|got - ref| / max|ref| of the output named under 'worst' (dX: at least\n"
           "max|scale| * max|invstd| * max|dY|); tolerances per dtype: see clnorm check --help.\n");
    printf("%d checks, %d failed", t.rows, t.failed);
    if (skip_fp64)
        printf(", %d f64 case(s) skipped (the device has no cl_khr_fp64)", skip_fp64);
    if (skip_family)
        printf(", %d case(s) skipped (this build has no layer/RMS/group/instance norm)", skip_family);
    printf("; %.1f s\n", now_s() - t0);
    printf("%s\n", t.failed ? "FAIL" : "PASS");
    return t.failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
