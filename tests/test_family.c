/* test_family.c: layer norm, RMS norm, group norm and instance norm on the
 * default OpenCL device against the double-precision C reference, over row
 * lengths and counts from 1 to 10^6, every axis, groups 1..C, both layouts,
 * hostile data, determinism, workspaces, offsets and bad input.
 *
 * Errors are measured per statistics row (a layer/RMS norm row, a group norm
 * (n, group)): max |got - ref| over the row divided by the row's natural
 * magnitude (max |ref| for y; for dx also invstd*max|gamma*dy|, the size of
 * its leading term, so rows whose exact dx cancels to ~0 are not judged
 * relative to 0). Per-row errors are stricter than one normwise figure over
 * the whole tensor, where a row with large values would hide the others.
 *
 * Tolerances (fp32 storage, fp32 accumulation), with the largest errors
 * measured on PoCL (CPU and GPU variants, every case) in brackets:
 *  - y: 2e-6 [8.5e-7]. Each output is a few fp32 roundings (x - mean from a
 *    two-term mean, one product with invstd*gamma, one add, u = 6e-8 each)
 *    plus the invstd error below, scaled by |xhat| <= ~6: under 16 ulp.
 *  - invstd: relative 2e-6 [4.7e-7]: Welford/Chan partials in fp32 keep the
 *    variance to a few ulp at any |mean|/std (1e4 and 1e6 included).
 *  - mean: |err| <= 2 ulp(|mean|) + 1e-6 std [0.5 ulp]; fp32 holds no better.
 *  - dx: 1e-5 [4.0e-7]: three terms per element after fp32 row sums of up to
 *    10^6 products, accumulated with compensated (Neumaier) sums.
 *  - dgamma, dbeta: normwise relative 1e-5 [9.5e-7] over compensated sums of
 *    up to 10^6 terms whose exact sum cancels to ~sqrt(n) of their size.
 *  - half / bfloat16 / double storage (other_dtypes): the storage rounding of
 *    the outputs with a factor 2 of margin: 1e-3 [4.2e-4], 8e-3 [3.5e-3],
 *    1e-12 [1.4e-13].
 * Constant rows or groups must give y == beta exactly with no NaN, and with a
 * constant dy and no gamma dx == 0 exactly.
 *
 * Set FAMILY_ERRORS=1 to print the measured errors of every case. */
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_Y 2e-6
#define TOL_INV 2e-6
#define TOL_DX 1e-5
#define TOL_DPARAM 1e-5
#define EPS 1e-5
#define SENTINEL 42.0f

enum op_kind { LN, RMS, GN, IN };
enum data_kind {
    DATA_NORMAL,
    DATA_MEAN_1E4, /* mean 1e4, std 1 */
    DATA_MEAN_1E6, /* mean 1e6, std 1 */
    DATA_CONSTANT, /* every third row (group) constant, dy normal */
    DATA_ZERO,     /* every third row (group) zero: RMS norm's degenerate case */
    DATA_CONST_ALL /* every row constant and dy = 0.25: dx must be exactly 0 */
};
enum affine_kind { AFF_NONE, AFF_BOTH, AFF_BETA };

static const char *op_name(int op)
{
    static const char *const n[] = {"layernorm", "rmsnorm", "groupnorm", "instancenorm"};
    return n[op];
}

/* ---- buffers with an offset ------------------------------------------------ */

/* A device buffer of off + n floats: SENTINEL in the first off, then x (or
 * fill when x is NULL). */
static cl_mem dev_at(const double *x, size_t n, size_t off, float fill)
{
    float *tmp = malloc((off + n + 1) * sizeof *tmp);
    cr_assert_not_null(tmp);
    for (size_t i = 0; i < off; ++i)
        tmp[i] = SENTINEL;
    for (size_t i = 0; i < n; ++i)
        tmp[off + i] = x ? (float)x[i] : fill;
    cl_int err;
    cl_mem m = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, (off + n) * sizeof(float), tmp,
                              &err);
    free(tmp);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer(%zu floats): %d", off + n, err);
    return m;
}

/* Reads n floats at off; checks the padding before off is untouched. */
static void read_at(cl_mem m, size_t n, size_t off, double *out, const char *what)
{
    float *tmp = malloc((off + n + 1) * sizeof *tmp);
    cr_assert_not_null(tmp);
    dev_read(m, (off + n) * sizeof(float), tmp);
    for (size_t i = 0; i < off; ++i)
        cr_expect_eq(tmp[i], SENTINEL, "%s: padding before the offset was overwritten", what);
    for (size_t i = 0; i < n; ++i)
        out[i] = tmp[off + i];
    free(tmp);
}

/* ---- error measures ------------------------------------------------------- */

/* Per statistics row: max |got - ref| / max(max |ref|, floor[row]) over the
 * row's elements; row_of maps element -> row. */
static double rowwise_err(const double *got, const double *ref, size_t n, const size_t *row_of,
                          size_t nrows, const double *floor)
{
    double *scale = dalloc(nrows), *err = dalloc(nrows), worst = 0;
    for (size_t e = 0; e < n; ++e) {
        size_t r = row_of[e];
        if (fabs(ref[e]) > scale[r])
            scale[r] = fabs(ref[e]);
        double d = fabs(got[e] - ref[e]);
        if (isnan(got[e]) || isnan(ref[e]))
            d = INFINITY;
        if (d > err[r])
            err[r] = d;
    }
    for (size_t r = 0; r < nrows; ++r) {
        double s = scale[r];
        if (floor && floor[r] > s)
            s = floor[r];
        if (s < 1e-30)
            s = 1e-30;
        if (err[r] / s > worst)
            worst = err[r] / s;
    }
    free(scale);
    free(err);
    return worst;
}

static double ulp_of(double v)
{
    float f = (float)fabs(v);
    return (double)nextafterf(f, INFINITY) - (double)f;
}

/* ---- one case: forward and backward against the reference ---------------- */

typedef struct fam_case {
    char     name[48];
    int      op;
    int      layout; /* group/instance norm */
    size_t   ndim;
    size_t   dims[5];
    int      axis;   /* layer/RMS norm */
    size_t   groups; /* group norm */
    int      data;
    int      affine;
    int      offset; /* place every buffer at a nonzero element offset */
} fam_case;

/* The case's shape as the reference sees it. */
typedef struct shape {
    size_t n;           /* elements */
    size_t rows, cols;  /* layer/RMS norm */
    size_t N, C, Sp, G; /* group norm */
    int    nhwc;
    size_t nstat, nparam;
    size_t *row_of;     /* element -> statistics row */
} shape;

static shape shape_of(const fam_case *tc)
{
    shape s;
    memset(&s, 0, sizeof s);
    s.n = 1;
    for (size_t i = 0; i < tc->ndim; ++i)
        s.n *= tc->dims[i];
    s.row_of = malloc(s.n * sizeof *s.row_of);
    cr_assert_not_null(s.row_of);
    if (tc->op == LN || tc->op == RMS) {
        size_t axis = (size_t)(tc->axis < 0 ? tc->axis + (int)tc->ndim : tc->axis);
        s.rows = 1;
        for (size_t i = 0; i < axis; ++i)
            s.rows *= tc->dims[i];
        s.cols   = s.n / s.rows;
        s.nstat  = s.rows;
        s.nparam = s.cols;
        for (size_t e = 0; e < s.n; ++e)
            s.row_of[e] = e / s.cols;
    } else {
        s.nhwc = tc->layout == CLNORM_NHWC;
        s.N    = tc->dims[0];
        s.C    = s.nhwc ? tc->dims[tc->ndim - 1] : tc->dims[1];
        s.Sp   = s.n / (s.N * s.C);
        s.G    = tc->op == IN ? s.C : tc->groups;
        s.nstat  = s.N * s.G;
        s.nparam = s.C;
        size_t cpg = s.C / s.G;
        for (size_t e = 0; e < s.n; ++e) {
            size_t nn = e / (s.C * s.Sp);
            size_t c  = s.nhwc ? e % s.C : (e / s.Sp) % s.C;
            s.row_of[e] = nn * s.G + c / cpg;
        }
    }
    return s;
}

static void fill_x(const fam_case *tc, const shape *s, double *x, ref_rng *r)
{
    switch (tc->data) {
    case DATA_MEAN_1E4: ref_fill_normal(r, x, s->n, 1e4, 1.0); break;
    case DATA_MEAN_1E6: ref_fill_normal(r, x, s->n, 1e6, 1.0); break;
    default: ref_fill_normal(r, x, s->n, 0.5, 2.0); break;
    }
    if (tc->data == DATA_CONSTANT || tc->data == DATA_ZERO || tc->data == DATA_CONST_ALL) {
        double v = tc->data == DATA_ZERO ? 0.0 : 3.25;
        for (size_t e = 0; e < s->n; ++e)
            if (tc->data == DATA_CONST_ALL || s->row_of[e] % 3 == 0)
                x[e] = v;
    }
    round_to_float(x, s->n);
}

/* Prints a measured error when FAMILY_ERRORS is set (see the top). */
static void report(const fam_case *tc, const char *what, double err)
{
    if (getenv("FAMILY_ERRORS"))
        fprintf(stderr, "ERR %-12s %-36s %-7s %.3e\n", op_name(tc->op), tc->name, what, err);
}

static clnorm_status call_fwd(const fam_case *tc, const void *desc, const clnorm_norm_args *a)
{
    switch (tc->op) {
    case LN: return clnorm_layernorm_forward(H.ctx, H.q, desc, a, 0, NULL, NULL);
    case RMS: return clnorm_rmsnorm_forward(H.ctx, H.q, desc, a, 0, NULL, NULL);
    case GN: return clnorm_groupnorm_forward(H.ctx, H.q, desc, a, 0, NULL, NULL);
    default: return clnorm_instancenorm_forward(H.ctx, H.q, desc, a, 0, NULL, NULL);
    }
}

static clnorm_status call_bwd(const fam_case *tc, const void *desc, const clnorm_norm_args *a)
{
    switch (tc->op) {
    case LN: return clnorm_layernorm_backward(H.ctx, H.q, desc, a, 0, NULL, NULL);
    case RMS: return clnorm_rmsnorm_backward(H.ctx, H.q, desc, a, 0, NULL, NULL);
    case GN: return clnorm_groupnorm_backward(H.ctx, H.q, desc, a, 0, NULL, NULL);
    default: return clnorm_instancenorm_backward(H.ctx, H.q, desc, a, 0, NULL, NULL);
    }
}

/* Fills the descriptor of a case (either kind) into storage. */
typedef union any_desc {
    clnorm_norm_desc      norm;
    clnorm_groupnorm_desc gn;
} any_desc;

static void make_desc(const fam_case *tc, any_desc *d)
{
    if (tc->op == LN || tc->op == RMS) {
        cr_assert_eq(clnorm_norm_desc_init(&d->norm, tc->ndim, tc->dims, tc->axis), CLNORM_SUCCESS);
        d->norm.epsilon = EPS;
    } else {
        size_t g = tc->op == IN ? 0 : tc->groups; /* instance norm ignores num_groups */
        cr_assert_eq(clnorm_groupnorm_desc_init(&d->gn, (clnorm_layout)tc->layout, tc->ndim, tc->dims, g),
                     CLNORM_SUCCESS);
        d->gn.epsilon = EPS;
    }
}

static void run_case(const fam_case *tc)
{
    any_desc d;
    make_desc(tc, &d);
    shape   s   = shape_of(tc);
    size_t  n   = s.n, P = s.nparam, M = s.nstat;
    size_t  off = tc->offset ? 3 : 0, voff = tc->offset ? 5 : 0;
    int     rms = tc->op == RMS;
    ref_rng r   = ref_rng_seed(1000 + n + (size_t)tc->op * 7 + (size_t)tc->data * 131);

    double *x = dalloc(n), *dy = dalloc(n), *g = dalloc(P), *b = dalloc(P);
    fill_x(tc, &s, x, &r);
    if (tc->data == DATA_CONST_ALL)
        for (size_t e = 0; e < n; ++e)
            dy[e] = 0.25;
    else
        ref_fill_normal(&r, dy, n, 0.1, 1.0);
    round_to_float(dy, n);
    ref_fill_uniform(&r, g, P, 0.5, 1.5);
    ref_fill_uniform(&r, b, P, -1.0, 1.0);
    round_to_float(g, P);
    round_to_float(b, P);
    const double *gp = tc->affine == AFF_BOTH ? g : NULL;
    const double *bp = tc->affine != AFF_NONE ? b : NULL;

    /* ---- forward ---- */
    cl_mem mx = dev_at(x, n, off, 0), my = dev_at(NULL, n, off, NAN);
    cl_mem mg = dev_at(g, P, voff, 0), mb = dev_at(b, P, voff, 0);
    cl_mem mm = dev_at(NULL, M, voff, NAN), mi = dev_at(NULL, M, voff, NAN);
    clnorm_norm_args a;
    memset(&a, 0, sizeof a);
    a.x      = clnorm_buf(mx, off);
    a.y      = clnorm_buf(my, off);
    a.mean   = clnorm_buf(mm, voff);
    a.invstd = clnorm_buf(mi, voff);
    if (gp)
        a.gamma = clnorm_buf(mg, voff);
    if (bp)
        a.beta = clnorm_buf(mb, voff);
    clnorm_status st = call_fwd(tc, &d, &a);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: forward: %s: %s", tc->name, clnorm_status_name(st),
                 clnorm_last_error(H.ctx));

    double *ry = dalloc(n), *rm = dalloc(M), *ri = dalloc(M);
    double *gy = dalloc(n), *gm = dalloc(M), *gi = dalloc(M);
    if (tc->op == LN)
        ref_layernorm_forward(s.rows, s.cols, x, gp, bp, EPS, ry, rm, ri);
    else if (rms)
        ref_rmsnorm_forward(s.rows, s.cols, x, gp, EPS, ry, ri);
    else
        ref_groupnorm_forward(s.N, s.C, s.Sp, s.G, s.nhwc, x, gp, bp, EPS, ry, rm, ri);
    read_at(my, n, off, gy, "y");
    read_at(mi, M, voff, gi, "invstd");
    read_at(mm, M, voff, gm, "mean");

    cr_expect(!any_nan(gy, n), "%s: y has NaN", tc->name);
    double ey = rowwise_err(gy, ry, n, s.row_of, M, NULL);
    report(tc, "y", ey);
    cr_expect(ey <= TOL_Y, "%s: y error %.3g > %.3g", tc->name, ey, TOL_Y);
    double einv = 0, emean = 0;
    for (size_t k = 0; k < M; ++k) {
        double e = fabs(gi[k] - ri[k]) / ri[k];
        if (e > einv)
            einv = e;
        cr_expect(e <= TOL_INV, "%s: invstd[%zu] %.9g vs %.9g", tc->name, k, gi[k], ri[k]);
        if (rms) {
            cr_expect(gm[k] != gm[k], "%s: RMS norm wrote mean[%zu]", tc->name, k); /* still NaN */
            continue;
        }
        double sd   = sqrt(fmax(1.0 / (ri[k] * ri[k]) - EPS, 0.0));
        double mtol = 2 * ulp_of(rm[k]) + 1e-6 * sd + 1e-30;
        double em   = fabs(gm[k] - rm[k]) / (ulp_of(rm[k]) + 1e-6 * sd + 1e-30);
        if (em > emean)
            emean = em;
        cr_expect(fabs(gm[k] - rm[k]) <= mtol, "%s: mean[%zu] %.9g vs %.9g (tol %.3g)", tc->name, k, gm[k],
                  rm[k], mtol);
    }
    report(tc, "invstd", einv);
    if (!rms)
        report(tc, "mean/ulp", emean);
    if (tc->data == DATA_CONSTANT || tc->data == DATA_CONST_ALL) {
        size_t bad = 0;
        for (size_t e = 0; e < n; ++e) {
            if (tc->data != DATA_CONST_ALL && s.row_of[e] % 3 != 0)
                continue;
            if (tc->op == RMS)
                continue; /* y = x*invrms*gamma there, checked against the reference */
            size_t p = tc->op == LN ? e % s.cols : (s.nhwc ? e % s.C : (e / s.Sp) % s.C);
            double want = bp ? bp[p] : 0.0;
            bad += gy[e] != want;
        }
        cr_expect_eq(bad, 0, "%s: %zu elements of constant rows are not exactly beta", tc->name, bad);
    }

    /* ---- backward with the statistics the device saved ---- */
    cl_mem mdy = dev_at(dy, n, off, 0), mdx = dev_at(NULL, n, off, NAN);
    cl_mem mdg = dev_at(NULL, P, voff, NAN), mdb = dev_at(NULL, P, voff, NAN);
    a.dy     = clnorm_buf(mdy, off);
    a.dx     = clnorm_buf(mdx, off);
    a.dgamma = clnorm_buf(mdg, voff);
    a.dbeta  = clnorm_buf(mdb, voff);
    st       = call_bwd(tc, &d, &a);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: backward: %s: %s", tc->name, clnorm_status_name(st),
                 clnorm_last_error(H.ctx));
    double *rdx = dalloc(n), *rdg = dalloc(P), *rdb = dalloc(P);
    double *gdx = dalloc(n), *gdg = dalloc(P), *gdb = dalloc(P);
    if (tc->op == LN)
        ref_layernorm_backward(s.rows, s.cols, x, dy, gp, gm, gi, rdx, rdg, rdb);
    else if (rms)
        ref_rmsnorm_backward(s.rows, s.cols, x, dy, gp, gi, rdx, rdg);
    else
        ref_groupnorm_backward(s.N, s.C, s.Sp, s.G, s.nhwc, x, dy, gp, gm, gi, rdx, rdg, rdb);
    read_at(mdx, n, off, gdx, "dx");
    read_at(mdg, P, voff, gdg, "dgamma");
    read_at(mdb, P, voff, gdb, "dbeta");

    /* dx is judged against invstd * max |gamma*dy| of its row as well */
    double *fl = dalloc(M);
    for (size_t e = 0; e < n; ++e) {
        size_t p = tc->op == LN || rms ? e % s.cols : (s.nhwc ? e % s.C : (e / s.Sp) % s.C);
        double t = gi[s.row_of[e]] * fabs(dy[e] * (gp ? gp[p] : 1.0));
        if (t > fl[s.row_of[e]])
            fl[s.row_of[e]] = t;
    }
    cr_expect(!any_nan(gdx, n), "%s: dx has NaN", tc->name);
    double edx = rowwise_err(gdx, rdx, n, s.row_of, M, fl);
    report(tc, "dx", edx);
    cr_expect(edx <= TOL_DX, "%s: dx error %.3g > %.3g", tc->name, edx, TOL_DX);
    double edg = normwise_err(gdg, rdg, P, 1e-30);
    report(tc, "dgamma", edg);
    cr_expect(edg <= TOL_DPARAM, "%s: dgamma error %.3g > %.3g", tc->name, edg, TOL_DPARAM);
    if (rms) {
        for (size_t k = 0; k < P; ++k)
            cr_expect(gdb[k] != gdb[k], "%s: RMS norm wrote dbeta[%zu]", tc->name, k);
    } else {
        double edb = normwise_err(gdb, rdb, P, 1e-30);
        report(tc, "dbeta", edb);
        cr_expect(edb <= TOL_DPARAM, "%s: dbeta error %.3g > %.3g", tc->name, edb, TOL_DPARAM);
    }
    if (tc->data == DATA_CONST_ALL) {
        size_t bad = 0;
        for (size_t e = 0; e < n; ++e)
            bad += gdx[e] != 0.0;
        cr_expect_eq(bad, 0, "%s: %zu elements of dx are not exactly 0 for constant x and dy", tc->name, bad);
        for (size_t k = 0; k < P; ++k)
            cr_expect_eq(gdg[k], 0.0, "%s: dgamma[%zu] = %g, not 0", tc->name, k, gdg[k]);
    }

    cl_mem all[] = {mx, my, mg, mb, mm, mi, mdy, mdx, mdg, mdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
    double *hs[] = {x, dy, g, b, ry, rm, ri, gy, gm, gi, rdx, rdg, rdb, gdx, gdg, gdb, fl};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; ++i)
        free(hs[i]);
    free(s.row_of);
}

/* ---- the grids ------------------------------------------------------------ */

#define NCHW CLNORM_NCHW
#define NHWC CLNORM_NHWC
#define ROWS(nm, op, r, c, data, aff) {nm, op, 0, 2, {r, c}, -1, 0, data, aff, 0}

static fam_case row_cases[] = {
    /* row lengths 1..10^6 at one row and many rows */
    ROWS("1x1", LN, 1, 1, DATA_NORMAL, AFF_BOTH),
    ROWS("100000x1", LN, 100000, 1, DATA_NORMAL, AFF_BOTH),
    ROWS("1x3", LN, 1, 3, DATA_NORMAL, AFF_BOTH),
    ROWS("100000x3", LN, 100000, 3, DATA_NORMAL, AFF_BOTH),
    ROWS("100000x8", LN, 100000, 8, DATA_NORMAL, AFF_BOTH),
    ROWS("1x127", LN, 1, 127, DATA_NORMAL, AFF_BOTH),
    ROWS("3000x127", LN, 3000, 127, DATA_NORMAL, AFF_BOTH),
    ROWS("1x768", LN, 1, 768, DATA_NORMAL, AFF_BOTH),
    ROWS("2000x768", LN, 2000, 768, DATA_NORMAL, AFF_BOTH),
    ROWS("1x4096", LN, 1, 4096, DATA_NORMAL, AFF_BOTH),
    ROWS("300x4096", LN, 300, 4096, DATA_NORMAL, AFF_BOTH),
    ROWS("1x1000003", LN, 1, 1000003, DATA_NORMAL, AFF_BOTH),
    ROWS("2x1000003", LN, 2, 1000003, DATA_NORMAL, AFF_BOTH),
    ROWS("3000x127 no affine", LN, 3000, 127, DATA_NORMAL, AFF_NONE),
    /* GPUs give short rows runs of 2, 4, 8... lanes, LX/runs rows at once:
     * row counts that leave the last work-group part empty */
    ROWS("5001x40", LN, 5001, 40, DATA_NORMAL, AFF_BOTH),
    ROWS("mean 1e4 7777x24", LN, 7777, 24, DATA_MEAN_1E4, AFF_BOTH),
    ROWS("999x200", LN, 999, 200, DATA_NORMAL, AFF_BOTH),
    /* GPUs keep dgamma/dbeta sums in registers for rows of 512..2048
     * (multiples of 8): a last owner with fewer rows, lanes with 1..4 blocks */
    ROWS("1001x520", LN, 1001, 520, DATA_NORMAL, AFF_BOTH),
    ROWS("mean 1e4 777x2048", LN, 777, 2048, DATA_MEAN_1E4, AFF_BOTH),
    ROWS("1000x2056", LN, 1000, 2056, DATA_NORMAL, AFF_BOTH),
    ROWS("2x1000003 beta only", LN, 2, 1000003, DATA_NORMAL, AFF_BETA),
    /* CPUs: whole rows longer than a statistics span (16 KB), the last
     * span part full and ending off a vector */
    ROWS("mean 1e4 40x10007", LN, 40, 10007, DATA_MEAN_1E4, AFF_BOTH),
    {"40x10007 offsets", LN, 0, 2, {40, 10007}, -1, 0, DATA_NORMAL, AFF_BOTH, 1},
    /* CPUs take rows of whole vectors up to 128 values 16 at a time, their
     * horizontal sums transposed: row counts that leave a last block part
     * full, and rows of different means (every third constant) */
    ROWS("100000x16", LN, 100000, 16, DATA_NORMAL, AFF_BOTH),
    ROWS("20001x32", LN, 20001, 32, DATA_NORMAL, AFF_BOTH),
    ROWS("mean 1e4 30000x48 no affine", LN, 30000, 48, DATA_MEAN_1E4, AFF_NONE),
    ROWS("7001x128", LN, 7001, 128, DATA_NORMAL, AFF_BETA),
    ROWS("constant rows 50000x16", LN, 50000, 16, DATA_CONSTANT, AFF_BOTH),
    ROWS("constant x, dy 40000x16", LN, 40000, 16, DATA_CONST_ALL, AFF_BETA),
    ROWS("20001x49 beta only", LN, 20001, 49, DATA_NORMAL, AFF_BETA), /* vectors across rows */
    /* rows shorter than a vector: 16 at a time, transposed (rows of 8 in
     * registers, other lengths through memory) */
    ROWS("20001x12 beta only", LN, 20001, 12, DATA_NORMAL, AFF_BETA),
    ROWS("mean 1e4 30000x8 no affine", LN, 30000, 8, DATA_MEAN_1E4, AFF_NONE),
    ROWS("constant rows 50000x8", LN, 50000, 8, DATA_CONSTANT, AFF_BOTH),
    ROWS("constant x, dy 40000x5", LN, 40000, 5, DATA_CONST_ALL, AFF_BETA),
    ROWS("33333x15", LN, 33333, 15, DATA_NORMAL, AFF_BOTH),
    /* every axis of a 4-D tensor, and the negative spellings */
    {"4-D axis 0", LN, 0, 4, {3, 5, 7, 11}, 0, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis 1", LN, 0, 4, {3, 5, 7, 11}, 1, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis 2", LN, 0, 4, {3, 5, 7, 11}, 2, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis 3", LN, 0, 4, {3, 5, 7, 11}, 3, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis -1", LN, 0, 4, {3, 5, 7, 11}, -1, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis -2", LN, 0, 4, {3, 5, 7, 11}, -2, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis -3", LN, 0, 4, {3, 5, 7, 11}, -3, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis -4", LN, 0, 4, {3, 5, 7, 11}, -4, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"1-D axis 0", LN, 0, 1, {1000}, 0, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis 1 offsets", LN, 0, 4, {3, 5, 7, 11}, 1, 0, DATA_NORMAL, AFF_BOTH, 1},
    {"2x1000003 offsets", LN, 0, 2, {2, 1000003}, -1, 0, DATA_NORMAL, AFF_BOTH, 1},
    /* hostile data */
    ROWS("mean 1e4 100000x8", LN, 100000, 8, DATA_MEAN_1E4, AFF_BOTH),
    ROWS("mean 1e4 2000x768", LN, 2000, 768, DATA_MEAN_1E4, AFF_BOTH),
    ROWS("mean 1e4 2x1000003", LN, 2, 1000003, DATA_MEAN_1E4, AFF_BOTH),
    ROWS("mean 1e6 2000x768", LN, 2000, 768, DATA_MEAN_1E6, AFF_BOTH),
    ROWS("mean 1e6 1x1000003", LN, 1, 1000003, DATA_MEAN_1E6, AFF_BOTH),
    ROWS("constant rows 100000x3", LN, 100000, 3, DATA_CONSTANT, AFF_BOTH),
    ROWS("constant rows 2000x768", LN, 2000, 768, DATA_CONSTANT, AFF_BOTH),
    ROWS("constant rows 3x1000003", LN, 3, 1000003, DATA_CONSTANT, AFF_BOTH),
    ROWS("constant x, dy 100000x8", LN, 100000, 8, DATA_CONST_ALL, AFF_BETA),
    ROWS("constant x, dy 300x4096", LN, 300, 4096, DATA_CONST_ALL, AFF_BETA),
    ROWS("constant x, dy 2x1000003", LN, 2, 1000003, DATA_CONST_ALL, AFF_BETA),

    ROWS("1x1", RMS, 1, 1, DATA_NORMAL, AFF_BOTH),
    ROWS("100000x1", RMS, 100000, 1, DATA_NORMAL, AFF_BOTH),
    ROWS("1x3", RMS, 1, 3, DATA_NORMAL, AFF_BOTH),
    ROWS("100000x3", RMS, 100000, 3, DATA_NORMAL, AFF_BOTH),
    ROWS("100000x8", RMS, 100000, 8, DATA_NORMAL, AFF_BOTH),
    ROWS("1x127", RMS, 1, 127, DATA_NORMAL, AFF_BOTH),
    ROWS("3000x127", RMS, 3000, 127, DATA_NORMAL, AFF_BOTH),
    ROWS("1x768", RMS, 1, 768, DATA_NORMAL, AFF_BOTH),
    ROWS("2000x768", RMS, 2000, 768, DATA_NORMAL, AFF_BOTH),
    ROWS("1x4096", RMS, 1, 4096, DATA_NORMAL, AFF_BOTH),
    ROWS("300x4096", RMS, 300, 4096, DATA_NORMAL, AFF_BOTH),
    ROWS("1x1000003", RMS, 1, 1000003, DATA_NORMAL, AFF_BOTH),
    ROWS("2x1000003", RMS, 2, 1000003, DATA_NORMAL, AFF_BOTH),
    ROWS("3000x127 no gamma", RMS, 3000, 127, DATA_NORMAL, AFF_NONE),
    ROWS("5001x40", RMS, 5001, 40, DATA_NORMAL, AFF_BOTH),
    ROWS("mean 1e4 7777x24", RMS, 7777, 24, DATA_MEAN_1E4, AFF_BOTH),
    ROWS("1001x520", RMS, 1001, 520, DATA_NORMAL, AFF_BOTH),
    ROWS("mean 1e4 40x10007", RMS, 40, 10007, DATA_MEAN_1E4, AFF_BOTH),
    {"40x10007 offsets", RMS, 0, 2, {40, 10007}, -1, 0, DATA_NORMAL, AFF_BOTH, 1},
    ROWS("100000x16", RMS, 100000, 16, DATA_NORMAL, AFF_BOTH),
    ROWS("20001x64 no gamma", RMS, 20001, 64, DATA_NORMAL, AFF_NONE),
    ROWS("zero rows 50000x16", RMS, 50000, 16, DATA_ZERO, AFF_BOTH),
    ROWS("zero rows 50000x8", RMS, 50000, 8, DATA_ZERO, AFF_BOTH),
    ROWS("20001x12 no gamma", RMS, 20001, 12, DATA_NORMAL, AFF_NONE),
    ROWS("mean 1e4 30000x8", RMS, 30000, 8, DATA_MEAN_1E4, AFF_BOTH),
    {"4-D axis 0", RMS, 0, 4, {3, 5, 7, 11}, 0, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis 2", RMS, 0, 4, {3, 5, 7, 11}, 2, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"4-D axis -3", RMS, 0, 4, {3, 5, 7, 11}, -3, 0, DATA_NORMAL, AFF_BOTH, 0},
    {"2x1000003 offsets", RMS, 0, 2, {2, 1000003}, -1, 0, DATA_NORMAL, AFF_BOTH, 1},
    ROWS("mean 1e4 100000x8", RMS, 100000, 8, DATA_MEAN_1E4, AFF_BOTH),
    ROWS("mean 1e4 2x1000003", RMS, 2, 1000003, DATA_MEAN_1E4, AFF_BOTH),
    ROWS("zero rows 100000x3", RMS, 100000, 3, DATA_ZERO, AFF_BOTH),
    ROWS("zero rows 3x1000003", RMS, 3, 1000003, DATA_ZERO, AFF_BOTH),
    ROWS("constant rows 2000x768", RMS, 2000, 768, DATA_CONSTANT, AFF_BOTH),
};

#define GNC(nm, op, lay, nd, data, aff, g, ...) {nm, op, lay, nd, {__VA_ARGS__}, 0, g, data, aff, 0}

static fam_case gn_cases[] = {
    GNC("2x6x5x7 G=1", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 1, 2, 6, 5, 7),
    GNC("2x6x5x7 G=2", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 2, 2, 6, 5, 7),
    GNC("2x6x5x7 G=C", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 6, 2, 6, 5, 7),
    GNC("2x5x7x6 G=1", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 1, 2, 5, 7, 6),
    GNC("2x5x7x6 G=2", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 2, 2, 5, 7, 6),
    GNC("2x5x7x6 G=C", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 6, 2, 5, 7, 6),
    GNC("4x32x16x16 G=8", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 8, 4, 32, 16, 16),
    GNC("4x16x16x32 G=8", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 8, 4, 16, 16, 32),
    GNC("1x4x512x512 G=2", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 2, 1, 4, 512, 512),
    GNC("1x512x512x4 G=2", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 2, 1, 512, 512, 4),
    GNC("1x2x1000003 G=1", GN, NCHW, 3, DATA_NORMAL, AFF_BOTH, 1, 1, 2, 1000003),
    GNC("2-D 100000x8 G=4", GN, NCHW, 2, DATA_NORMAL, AFF_BOTH, 4, 100000, 8),
    GNC("2-D 100000x8 NHWC G=2", GN, NHWC, 2, DATA_NORMAL, AFF_BOTH, 2, 100000, 8),
    GNC("3-D spatial 2x4x3x5x7 G=2", GN, NCHW, 5, DATA_NORMAL, AFF_BOTH, 2, 2, 4, 3, 5, 7),
    GNC("3-D spatial 2x3x5x7x4 G=2", GN, NHWC, 5, DATA_NORMAL, AFF_BOTH, 2, 2, 3, 5, 7, 4),
    GNC("3x12x9x9 no affine", GN, NCHW, 4, DATA_NORMAL, AFF_NONE, 3, 3, 12, 9, 9),
    GNC("mean 1e4 4x32x16x16 G=8", GN, NCHW, 4, DATA_MEAN_1E4, AFF_BOTH, 8, 4, 32, 16, 16),
    GNC("mean 1e4 4x16x16x32 G=8", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 8, 4, 16, 16, 32),
    GNC("mean 1e6 1x4x512x512 G=2", GN, NCHW, 4, DATA_MEAN_1E6, AFF_BOTH, 2, 1, 4, 512, 512),
    /* channels first, groups of 20402 values over 64 rows: whole rows
     * of several statistics spans with a part-full last one */
    GNC("mean 1e4 8x16x101x101 G=8", GN, NCHW, 4, DATA_MEAN_1E4, AFF_BOTH, 8, 8, 16, 101, 101),
    /* channels last with whole panels of vectors (C = 128) and many rows */
    GNC("mean 1e6 2x24x24x128 G=32", GN, NHWC, 4, DATA_MEAN_1E6, AFF_BOTH, 32, 2, 24, 24, 128),
    {"2x24x24x128 G=16 offsets", GN, NHWC, 4, {2, 24, 24, 128}, 0, 16, DATA_NORMAL, AFF_BOTH, 1},
    GNC("1x300x300x16 G=4", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 4, 1, 300, 300, 16),
    {"2x20x20x14 G=7 offsets", GN, NHWC, 4, {2, 20, 20, 14}, 0, 7, DATA_NORMAL, AFF_BOTH, 1},
    GNC("3x33x17x15 G=5", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 5, 3, 33, 17, 15),
    GNC("constant groups 3x12x9x9 G=3", GN, NCHW, 4, DATA_CONSTANT, AFF_BOTH, 3, 3, 12, 9, 9),
    GNC("constant groups 3x9x9x12 G=3", GN, NHWC, 4, DATA_CONSTANT, AFF_BOTH, 3, 3, 9, 9, 12),
    GNC("constant x, dy 2x8x33x33 G=4", GN, NCHW, 4, DATA_CONST_ALL, AFF_BETA, 4, 2, 8, 33, 33),
    GNC("constant x, dy 2x33x33x8 G=4", GN, NHWC, 4, DATA_CONST_ALL, AFF_BETA, 4, 2, 33, 33, 8),
    /* channels last, 4 work-items or more on a 2-unit CPU: each owns whole
     * groups of a sample (gn_fwd_cfused, gn_bwd_cfused): groups of 3 in
     * blocks of 48 channels, of 32 and 64 in blocks of 64, rows that end a
     * part-full block of 16 (36, 100, 25, 63), constant groups and a
     * constant tensor */
    GNC("mean 1e4 8x6x6x96 G=32", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 32, 8, 6, 6, 96),
    GNC("mean 1e6 8x10x10x128 G=4", GN, NHWC, 4, DATA_MEAN_1E6, AFF_BOTH, 4, 8, 10, 10, 128),
    GNC("16x5x5x64 G=1 no affine", GN, NHWC, 4, DATA_NORMAL, AFF_NONE, 1, 16, 5, 5, 64),
    {"mean 1e4 4x9x7x256 G=16 offsets", GN, NHWC, 4, {4, 9, 7, 256}, 0, 16, DATA_MEAN_1E4, AFF_BOTH, 1},
    GNC("constant groups 16x5x5x64 G=4", GN, NHWC, 4, DATA_CONSTANT, AFF_BOTH, 4, 16, 5, 5, 64),
    GNC("constant x, dy 16x4x4x32 G=2", GN, NHWC, 4, DATA_CONST_ALL, AFF_BETA, 2, 16, 4, 4, 32),
    GNC("mean 1e4 24x5x7x64 G=8", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 8, 24, 5, 7, 64), /* 3 blocks per work-item */
    /* blocks of 80 channels (5 vectors): groups of 10, 20 and 40 (32 groups
     * of 320, 640, 1280), and of 16 where 80 divides C but 64 does not; two
     * blocks per work-item in the first */
    GNC("mean 1e4 8x6x6x160 G=16", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 16, 8, 6, 6, 160),
    GNC("mean 1e6 4x7x9x320 G=16", GN, NHWC, 4, DATA_MEAN_1E6, AFF_BOTH, 16, 4, 7, 9, 320),
    GNC("mean 1e4 4x5x5x1280 G=32", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 32, 4, 5, 5, 1280),
    GNC("constant groups 8x4x5x160 G=10", GN, NHWC, 4, DATA_CONSTANT, AFF_BOTH, 10, 8, 4, 5, 160),
    {"6x5x6x240 G=24 offsets", GN, NHWC, 4, {6, 5, 6, 240}, 0, 24, DATA_NORMAL, AFF_BETA, 1},
    /* 1.15 MB blocks of whole rows: the column streams here, blocks past the
     * 1 MB budget under test_family_stream (every tensor "large") */
    GNC("mean 1e4 4x60x60x80 G=8", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 8, 4, 60, 60, 80),
    /* 1.3 MB: blocks as for tensors of one block's budget (one launch) */
    GNC("mean 1e4 1x16x16x1280 G=32", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 32, 1, 16, 16, 1280),
    /* two blocks in all: one work-item per compute unit on small tensors */
    GNC("mean 1e6 1x12x10x128 G=32", GN, NHWC, 4, DATA_MEAN_1E6, AFF_BOTH, 32, 1, 12, 10, 128),
    /* 4 - 32 MB, rows of 8 blocks or more: blocks of 80 channels both ways
     * (5.2 MB), of 64 backward only (6.3 MB; the streams forward) */
    GNC("mean 1e4 2x32x32x640 G=32", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 32, 2, 32, 32, 640),
    GNC("mean 1e6 3x32x32x512 G=32", GN, NHWC, 4, DATA_MEAN_1E6, AFF_BOTH, 32, 3, 32, 32, 512),

    GNC("2x6x5x7", IN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 0, 2, 6, 5, 7),
    GNC("2x5x7x6", IN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 0, 2, 5, 7, 6),
    GNC("8x64x1x1", IN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 0, 8, 64, 1, 1),
    GNC("8x1x1x64", IN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 0, 8, 1, 1, 64),
    GNC("1x3x512x512", IN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 0, 1, 3, 512, 512),
    GNC("1x512x512x3", IN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 0, 1, 512, 512, 3),
    GNC("16x64x7x7", IN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 0, 16, 64, 7, 7),
    GNC("16x7x7x64 no affine", IN, NHWC, 4, DATA_NORMAL, AFF_NONE, 0, 16, 7, 7, 64),
    /* CPUs take maps of 16..128 values 16 at a time: partial last blocks */
    GNC("20x37x5x5 beta only", IN, NCHW, 4, DATA_NORMAL, AFF_BETA, 0, 20, 37, 5, 5),
    GNC("constant 8x40x4x4", IN, NCHW, 4, DATA_CONSTANT, AFF_BOTH, 0, 8, 40, 4, 4),
    GNC("mean 1e4 6x50x11x11", IN, NCHW, 4, DATA_MEAN_1E4, AFF_BOTH, 0, 6, 50, 11, 11),
    GNC("mean 1e4 4x8x32x32", IN, NCHW, 4, DATA_MEAN_1E4, AFF_BOTH, 0, 4, 8, 32, 32),
    GNC("mean 1e4 4x32x32x8", IN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 0, 4, 32, 32, 8),
    GNC("mean 1e4 16x3x3x32", IN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 0, 16, 3, 3, 32),
    GNC("constant 3x6x10x10", IN, NCHW, 4, DATA_CONSTANT, AFF_BOTH, 0, 3, 6, 10, 10),
    GNC("constant x, dy 2x10x10x6", IN, NHWC, 4, DATA_CONST_ALL, AFF_BETA, 0, 2, 10, 10, 6),
};

ParameterizedTestParameters(family_rows, grid)
{
    return cr_make_param_array(fam_case, row_cases, sizeof row_cases / sizeof *row_cases);
}

ParameterizedTest(fam_case *tc, family_rows, grid, .init = harness_init, .fini = harness_fini,
                  .timeout = 600)
{
    run_case(tc);
}

ParameterizedTestParameters(family_groups, grid)
{
    return cr_make_param_array(fam_case, gn_cases, sizeof gn_cases / sizeof *gn_cases);
}

ParameterizedTest(fam_case *tc, family_groups, grid, .init = harness_init, .fini = harness_fini,
                  .timeout = 600)
{
    run_case(tc);
}

/* ---- determinism ---------------------------------------------------------- */

/* Forward and backward of a case, every output read back as raw floats. */
static float *run_raw(const fam_case *tc, const double *x, const double *dy, const double *g,
                      const double *b, size_t *count, clnorm_buffer ws)
{
    any_desc d;
    make_desc(tc, &d);
    shape  s = shape_of(tc);
    size_t n = s.n, P = s.nparam, M = s.nstat;
    cl_mem mx = dev_at(x, n, 0, 0), my = dev_at(NULL, n, 0, 0), mdy = dev_at(dy, n, 0, 0);
    cl_mem mdx = dev_at(NULL, n, 0, 0), mg = dev_at(g, P, 0, 0), mb = dev_at(b, P, 0, 0);
    cl_mem mm = dev_at(NULL, M, 0, 0), mi = dev_at(NULL, M, 0, 0);
    cl_mem mdg = dev_at(NULL, P, 0, 0), mdb = dev_at(NULL, P, 0, 0);
    clnorm_norm_args a;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(mx, 0);
    a.y = clnorm_buf(my, 0);
    a.dy = clnorm_buf(mdy, 0);
    a.dx = clnorm_buf(mdx, 0);
    a.gamma = clnorm_buf(mg, 0);
    a.beta = clnorm_buf(mb, 0);
    a.mean = clnorm_buf(mm, 0);
    a.invstd = clnorm_buf(mi, 0);
    a.dgamma = clnorm_buf(mdg, 0);
    a.dbeta = clnorm_buf(mdb, 0);
    a.workspace = ws;
    clnorm_status st = call_fwd(tc, &d, &a);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: %s", tc->name, clnorm_last_error(H.ctx));
    st = call_bwd(tc, &d, &a);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s: %s", tc->name, clnorm_last_error(H.ctx));
    float *out = malloc((2 * n + 4 * P + 2 * M) * sizeof *out);
    cr_assert_not_null(out);
    size_t k = 0;
    cl_mem big[] = {my, mdx}, vec[] = {mdg, mdb}, st_[] = {mm, mi};
    for (int i = 0; i < 2; ++i, k += n)
        dev_read(big[i], n * 4, out + k);
    for (int i = 0; i < 2; ++i, k += P)
        dev_read(vec[i], P * 4, out + k);
    for (int i = 0; i < 2; ++i, k += M)
        dev_read(st_[i], M * 4, out + k);
    *count = k;
    cl_mem all[] = {mx, my, mdy, mdx, mg, mb, mm, mi, mdg, mdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
    free(s.row_of);
    return out;
}

static void same_bits_twice(const fam_case *tc, int with_workspace)
{
    shape   s = shape_of(tc);
    size_t  n = s.n, P = s.nparam;
    ref_rng r = ref_rng_seed(99 + n);
    double *x = dalloc(n), *dy = dalloc(n), *g = dalloc(P), *b = dalloc(P);
    ref_fill_normal(&r, x, n, 3.0, 2.0);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, P, 0.5, 1.5);
    ref_fill_uniform(&r, b, P, -1.0, 1.0);
    clnorm_buffer none = {NULL, 0}, ws = none;
    cl_mem        wsm  = NULL;
    if (with_workspace) {
        any_desc d;
        make_desc(tc, &d);
        size_t        bytes = 0;
        clnorm_status st    = tc->op == LN || tc->op == RMS
                                  ? clnorm_norm_workspace_size(H.ctx, &d.norm, &bytes)
                              : tc->op == GN ? clnorm_groupnorm_workspace_size(H.ctx, &d.gn, &bytes)
                                             : clnorm_instancenorm_workspace_size(H.ctx, &d.gn, &bytes);
        cr_assert_eq(st, CLNORM_SUCCESS);
        wsm = dev_bytes(bytes + 256, 0xff);
        ws  = clnorm_buf(wsm, 128); /* a 128-byte aligned offset into a caller buffer */
    }
    size_t m1 = 0, m2 = 0;
    float *o1 = run_raw(tc, x, dy, g, b, &m1, none);
    float *o2 = run_raw(tc, x, dy, g, b, &m2, ws);
    cr_assert_eq(m1, m2);
    cr_expect(memcmp(o1, o2, m1 * sizeof *o1) == 0, "%s: two runs differ%s", tc->name,
              with_workspace ? " (second with a caller workspace)" : "");
    if (wsm)
        clReleaseMemObject(wsm);
    free(o1);
    free(o2);
    free(x);
    free(dy);
    free(g);
    free(b);
    free(s.row_of);
}

Test(family, deterministic, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    static const fam_case cases[] = {
        ROWS("ln 100000x8", LN, 100000, 8, DATA_NORMAL, AFF_BOTH),
        ROWS("ln 2000x768", LN, 2000, 768, DATA_NORMAL, AFF_BOTH),
        ROWS("ln 2x1000003", LN, 2, 1000003, DATA_NORMAL, AFF_BOTH),
        ROWS("rms 2x1000003", RMS, 2, 1000003, DATA_NORMAL, AFF_BOTH),
        GNC("gn 4x32x16x16", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 8, 4, 32, 16, 16),
        GNC("gn 1x512x512x4", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 2, 1, 512, 512, 4),
        GNC("in 1x3x512x512", IN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 0, 1, 3, 512, 512),
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i)
        same_bits_twice(&cases[i], 0);
}

/* Group norm channels last on CPUs, forward: a work-item that owns several
 * blocks of groups reads the next block while it writes this one's y; the
 * statistics go the same way, so the outputs are bitwise those of a context
 * made with CLNORM_NO_PFUSED (a block per work-item). 24 blocks of 64
 * channels: three per work-item on a 2-unit CPU; 35 rows, a part-full
 * last block of rows; with streaming stores forced on and off. */
static clnorm_context *family_context_with(const char *var, const char *stream)
{
    if (var)
        setenv(var, "1", 1);
    if (stream)
        setenv("CLNORM_STREAM_MIN_BYTES", stream, 1);
    clnorm_context *c  = NULL;
    clnorm_status   st = clnorm_context_create(H.cl, clnorm_context_device(H.ctx), &c);
    unsetenv("CLNORM_STREAM_MIN_BYTES");
    if (var)
        unsetenv(var);
    cr_assert_eq(st, CLNORM_SUCCESS, "context: %s", clnorm_last_error(NULL));
    return c;
}

/* tc's outputs (run_raw: forward, then backward) in contexts a and b from
 * the same inputs, x with an outlier first: bitwise equal. */
static void expect_same_bits(const fam_case *tc, unsigned seed, clnorm_context *a, clnorm_context *b,
                             const char *what)
{
    shape   s = shape_of(tc);
    size_t  n = s.n, P = s.nparam;
    ref_rng r = ref_rng_seed(seed);
    double *x = dalloc(n), *dy = dalloc(n), *g = dalloc(P), *bt = dalloc(P);
    fill_x(tc, &s, x, &r);
    x[0] = 1e4 + 900.0; /* an outlier first */
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, P, 0.5, 1.5);
    ref_fill_uniform(&r, bt, P, -1.0, 1.0);
    clnorm_buffer   none = {NULL, 0};
    clnorm_context *own  = H.ctx;
    float          *out[2];
    size_t          cnt[2] = {0, 0};
    for (int c = 0; c < 2; ++c) {
        H.ctx  = c ? b : a;
        out[c] = run_raw(tc, x, dy, g, bt, &cnt[c], none);
    }
    H.ctx = own;
    cr_assert_eq(cnt[0], cnt[1]);
    cr_expect(memcmp(out[0], out[1], cnt[0] * sizeof *out[0]) == 0, "%s: %s", tc->name, what);
    free(out[0]);
    free(out[1]);
    free(x);
    free(dy);
    free(g);
    free(bt);
    free(s.row_of);
}

Test(family, groupnorm_pipelined_same_bits, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    static const fam_case tc =
        GNC("gn 24x5x7x64 G=8", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 8, 24, 5, 7, 64);
    for (int nt = 0; nt < 2; ++nt) {
        const char     *stream = nt ? "0" : "1099511627776";
        clnorm_context *a = family_context_with(NULL, stream), *b = family_context_with("CLNORM_NO_PFUSED", stream);
        expect_same_bits(&tc, 7, a, b,
                         nt ? "pipelined and one block per work-item differ (streaming stores on)"
                            : "pipelined and one block per work-item differ (streaming stores off)");
        clnorm_context_destroy(a);
        clnorm_context_destroy(b);
    }
}

/* Group norm channels first on CPUs with streaming stores: a work-item
 * reads rows `lead` rows ahead of the ones it writes (gn_fwd_lead). Made
 * to take it on small rows (CLNORM_GN_LEAD_BYTES: 3 rows ahead in both
 * cases on a 2-unit CPU), the outputs are within the tolerances of the
 * reference, and bitwise the same one row ahead (the same spans merged in
 * the same order at any depth). Rows of 4620 values (spans of 1024 and a
 * short one, channel segments across spans' ends) and of 198 (segments of
 * 99, across vectors), 128 and 148 rows (runs of 16; of 19 with a short
 * last one), an outlier first. */
Test(family, groupnorm_lead, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    static const struct {
        fam_case    tc;
        const char *bytes;
    } cases[] = {
        {GNC("lead mean 1e4 32x16x33x35 G=4", GN, NCHW, 4, DATA_MEAN_1E4, AFF_BOTH, 4, 32, 16, 33, 35), "40000"},
        {GNC("lead 37x8x9x11 G=4 beta", GN, NCHW, 4, DATA_NORMAL, AFF_BETA, 4, 37, 8, 9, 11), "1600"},
    };
    clnorm_context *own = H.ctx;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
        clnorm_context *ctx[2];
        for (int c = 0; c < 2; ++c) {
            setenv("CLNORM_GN_LEAD_BYTES", c ? "1" : cases[i].bytes, 1);
            ctx[c] = family_context_with(NULL, "0");
            unsetenv("CLNORM_GN_LEAD_BYTES");
        }
        H.ctx = ctx[0];
        run_case(&cases[i].tc);
        H.ctx = own;
        expect_same_bits(&cases[i].tc, 11 + (unsigned)i, ctx[0], ctx[1], "3 rows ahead and 1 differ");
        clnorm_context_destroy(ctx[0]);
        clnorm_context_destroy(ctx[1]);
    }
}

/* ---- tuned choices -------------------------------------------------------- */

/* Every kind of choice the tuner can store for this family (clnorm_tune:
 * the fused walks off and on, the row walk's chunk and parallelism a
 * quarter and four times the defaults) computes within the tolerances. */
#include "internal.h"

typedef struct forced_choice {
    char name[24]; /* an array: Criterion copies parameters into the test's process */
    int  fused, chunk_x4, par_x4; /* x4: -1 a quarter, 0 default, 1 four times */
} forced_choice;

static forced_choice forced_choices[] = {
    {"fused off", 0, 0, 0},          {"fused on", 1, 0, 0},
    {"small chunk, low par", -1, -1, -1}, {"large chunk, high par", -1, 1, 1},
    {"small chunk, high par", -1, -1, 1}, {"large chunk, low par", -1, 1, -1},
};

static size_t scaled(size_t v, int x4) { return x4 < 0 ? (v / 4 ? v / 4 : 1) : x4 > 0 ? v * 4 : v; }

ParameterizedTestParameters(family_tuned, choices)
{
    return cr_make_param_array(forced_choice, forced_choices,
                               sizeof forced_choices / sizeof *forced_choices);
}

ParameterizedTest(forced_choice *fc, family_tuned, choices, .init = harness_init, .fini = harness_fini,
                  .timeout = 600)
{
    static const fam_case cases[] = {
        ROWS("ln 3000x127", LN, 3000, 127, DATA_NORMAL, AFF_BOTH),
        ROWS("ln 2000x768", LN, 2000, 768, DATA_NORMAL, AFF_BOTH),
        ROWS("ln 300x4096", LN, 300, 4096, DATA_NORMAL, AFF_BOTH),
        ROWS("ln mean 1e4 100000x8", LN, 100000, 8, DATA_MEAN_1E4, AFF_BOTH),
        ROWS("rms 2000x768", RMS, 2000, 768, DATA_NORMAL, AFF_BOTH),
        GNC("gn 4x32x16x16 G=8", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 8, 4, 32, 16, 16),
        GNC("gn 1x4x512x512 G=2", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 2, 1, 4, 512, 512),
        GNC("gn 4x16x16x32 G=8", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 8, 4, 16, 16, 32),
        GNC("gn 1x512x512x4 G=2", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 2, 1, 512, 512, 4),
        GNC("in 16x7x7x64", IN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 0, 16, 7, 7, 64),
    };
    H.ctx->forcing = 1;
    H.ctx->force   = (clnorm_choice){fc->fused, scaled(H.ctx->tune.chunk, fc->chunk_x4),
                                     scaled(H.ctx->tune.min_parallel, fc->par_x4)};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
        fam_case tc = cases[i];
        snprintf(tc.name, sizeof tc.name, "%.23s, %.22s", cases[i].name, fc->name);
        run_case(&tc);
    }
}

/* A caller workspace of the queried size gives the same bits as the
 * context's own scratch. */
Test(family, caller_workspace, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    static const fam_case cases[] = {
        ROWS("ln 2x1000003", LN, 2, 1000003, DATA_NORMAL, AFF_BOTH),
        ROWS("ln 100000x8", LN, 100000, 8, DATA_NORMAL, AFF_BOTH),
        ROWS("rms 1x1000003", RMS, 1, 1000003, DATA_NORMAL, AFF_BOTH),
        GNC("gn 4x16x16x32", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 8, 4, 16, 16, 32),
        GNC("in 2x6x5x7", IN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 0, 2, 6, 5, 7),
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i)
        same_bits_twice(&cases[i], 1);
}

/* Instance norm is group norm with G = C: same bits either way. */
Test(family, instancenorm_is_groupnorm_with_c_groups, .init = harness_init, .fini = harness_fini)
{
    static const fam_case in = GNC("in", IN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 0, 3, 9, 11, 10);
    static const fam_case gn = GNC("gn", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 10, 3, 9, 11, 10);
    size_t   n = 3 * 9 * 11 * 10, m1, m2;
    ref_rng  r = ref_rng_seed(5);
    double  *x = dalloc(n), *dy = dalloc(n), *g = dalloc(10), *b = dalloc(10);
    ref_fill_normal(&r, x, n, 1.0, 3.0);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, 10, 0.5, 1.5);
    ref_fill_uniform(&r, b, 10, -1, 1);
    clnorm_buffer none = {NULL, 0};
    float *o1 = run_raw(&in, x, dy, g, b, &m1, none), *o2 = run_raw(&gn, x, dy, g, b, &m2, none);
    cr_assert_eq(m1, m2);
    cr_expect(memcmp(o1, o2, m1 * sizeof *o1) == 0);
    free(o1);
    free(o2);
    free(x);
    free(dy);
    free(g);
    free(b);
}

/* An out-of-order queue and a user event in the wait list: the commands of
 * one call are chained by events and wait for the caller's. */
Test(family, out_of_order_queue_and_events, .init = harness_init, .fini = harness_fini)
{
    cl_int           err;
    cl_command_queue q = clCreateCommandQueue(H.cl, clnorm_context_device(H.ctx),
                                              CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    if (err != CL_SUCCESS)
        q = clCreateCommandQueue(H.cl, clnorm_context_device(H.ctx), 0, &err);
    cr_assert_eq(err, CL_SUCCESS);
    size_t dims[2] = {2, 300001}, n = 2 * 300001;
    clnorm_norm_desc d;
    clnorm_norm_desc_init(&d, 2, dims, -1);
    ref_rng r = ref_rng_seed(77);
    double *x = dalloc(n), *ry = dalloc(n), *gy = dalloc(n);
    ref_fill_normal(&r, x, n, -2.0, 0.5);
    round_to_float(x, n);
    cl_mem mx = dev_at(x, n, 0, 0), my = dev_at(NULL, n, 0, NAN);
    clnorm_norm_args a;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(mx, 0);
    a.y = clnorm_buf(my, 0);
    cl_event user = clCreateUserEvent(H.cl, &err), done = NULL;
    cr_assert_eq(err, CL_SUCCESS);
    clnorm_status st = clnorm_layernorm_forward(H.ctx, q, &d, &a, 1, &user, &done);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s", clnorm_last_error(H.ctx));
    cr_assert_not_null(done);
    cl_int state = 0;
    clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state, NULL);
    cr_expect_neq(state, CL_COMPLETE, "ran before its wait list completed");
    clSetUserEventStatus(user, CL_COMPLETE);
    clWaitForEvents(1, &done);
    float *tmp = malloc(n * sizeof *tmp);
    clEnqueueReadBuffer(q, my, CL_TRUE, 0, n * 4, tmp, 0, NULL, NULL);
    for (size_t i = 0; i < n; ++i)
        gy[i] = tmp[i];
    ref_layernorm_forward(2, 300001, x, NULL, NULL, d.epsilon, ry, NULL, NULL);
    double e = normwise_err(gy, ry, n, 1e-30);
    cr_expect(e <= TOL_Y, "error %.3g", e);
    free(tmp);
    clReleaseEvent(done);
    clReleaseEvent(user);
    clReleaseMemObject(mx);
    clReleaseMemObject(my);
    clReleaseCommandQueue(q);
    free(x);
    free(ry);
    free(gy);
}

/* ---- bad input -------------------------------------------------------------- */

/* The call returned want and (word not NULL) its message names word. */
static void expect_status(clnorm_status got, clnorm_status want, const char *word, const char *call)
{
    const char *msg = clnorm_last_error(got == CLNORM_ERROR_NULL_CONTEXT ? NULL : H.ctx);
    cr_expect_eq(got, want, "%s: got %s, want %s (%s)", call, clnorm_status_name(got),
                 clnorm_status_name(want), msg);
    if (word)
        cr_expect(strstr(msg, word) != NULL, "%s: message \"%s\" does not name \"%s\"", call, msg, word);
}
#define EXPECT_STATUS(call, want, word) expect_status((call), (want), (word), #call)

/* Every output of a set of buffers, filled with SENTINEL, checked after all
 * the bad calls. */
typedef struct outs {
    cl_mem m[6];
    size_t n[6];
} outs;

static void outs_check(const outs *o)
{
    clFinish(H.q);
    for (int i = 0; i < 6; ++i) {
        if (!o->m[i])
            continue;
        double *v = dalloc(o->n[i]);
        dev_to_double(o->m[i], o->n[i], v);
        for (size_t k = 0; k < o->n[i]; ++k)
            cr_expect_eq(v[k], SENTINEL, "output %d [%zu] was written by a rejected call", i, k);
        free(v);
    }
}

typedef clnorm_status (*norm_fn)(clnorm_context *, cl_command_queue, const clnorm_norm_desc *,
                                 const clnorm_norm_args *, cl_uint, const cl_event *, cl_event *);

static void bad_norm_calls(norm_fn fn, int backward, int rms)
{
    size_t           dims[2] = {4, 16}, n = 64;
    clnorm_norm_desc d, bad;
    cr_assert_eq(clnorm_norm_desc_init(&d, 2, dims, 1), CLNORM_SUCCESS);
    cl_mem mx = dev_from_double(NULL, n, 1.5f), mdy = dev_from_double(NULL, n, 0.5f);
    cl_mem mg = dev_from_double(NULL, 16, 1.0f), mst = dev_from_double(NULL, 4, 1.0f);
    cl_mem short_t = dev_from_double(NULL, n - 1, SENTINEL), short_v = dev_from_double(NULL, 15, SENTINEL);
    outs   o;
    memset(&o, 0, sizeof o);
    size_t on[6] = {n, n, 4, 4, 16, 16};
    for (int i = 0; i < 6; ++i) {
        o.m[i] = dev_from_double(NULL, on[i], SENTINEL);
        o.n[i] = on[i];
    }
    clnorm_norm_args a, b;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(mx, 0);
    a.gamma = clnorm_buf(mg, 0);
    a.beta = clnorm_buf(mg, 0);
    if (backward) {
        a.dy = clnorm_buf(mdy, 0);
        a.dx = clnorm_buf(o.m[1], 0);
        a.mean = clnorm_buf(mst, 0);
        a.invstd = clnorm_buf(mst, 0);
        a.dgamma = clnorm_buf(o.m[4], 0);
        a.dbeta = clnorm_buf(o.m[5], 0);
    } else {
        a.y = clnorm_buf(o.m[0], 0);
        a.mean = clnorm_buf(o.m[2], 0);
        a.invstd = clnorm_buf(o.m[3], 0);
    }
    cl_event ev = NULL;

    EXPECT_STATUS(fn(NULL, H.q, &d, &a, 0, NULL, NULL), CLNORM_ERROR_NULL_CONTEXT, "ctx");
    EXPECT_STATUS(fn(H.ctx, H.q, NULL, &a, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "desc");
    EXPECT_STATUS(fn(H.ctx, H.q, &d, NULL, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "args");
    EXPECT_STATUS(fn(H.ctx, NULL, &d, &a, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "queue");
    EXPECT_STATUS(fn(H.ctx, H.q, &d, &a, 1, NULL, NULL), CLNORM_ERROR_INVALID_WAIT_LIST, NULL);
    EXPECT_STATUS(fn(H.ctx, H.q, &d, &a, 0, &ev, NULL), CLNORM_ERROR_INVALID_WAIT_LIST, NULL);
    b = a;
    b.x.mem = NULL;
    EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "x");
    if (backward) {
        const char *names[] = {"dy", "dx", "invstd", "mean"};
        for (int i = 0; i < (rms ? 3 : 4); ++i) {
            b = a;
            clnorm_buffer *f = i == 0 ? &b.dy : i == 1 ? &b.dx : i == 2 ? &b.invstd : &b.mean;
            f->mem = NULL;
            EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, names[i]);
        }
        b = a;
        b.dx = clnorm_buf(short_t, 0);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "dx");
        b = a;
        b.dgamma = clnorm_buf(short_v, 0);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "dgamma");
        b = a;
        b.invstd = clnorm_buf(mst, 1);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "invstd");
    } else {
        b = a;
        b.y.mem = NULL;
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "y");
        b = a;
        b.y = clnorm_buf(short_t, 0);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "y");
        b = a;
        b.y = clnorm_buf(o.m[0], 1);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "y");
        b = a;
        b.invstd = clnorm_buf(short_v, 12);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "invstd");
    }
    b = a;
    b.gamma = clnorm_buf(short_v, 0);
    EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "gamma");
    b = a;
    b.x = clnorm_buf(mx, SIZE_MAX - 10);
    EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_SIZE_OVERFLOW, "x");

    int axes[] = {2, 3, -3, 100, -100};
    for (size_t i = 0; i < 5; ++i) {
        bad      = d;
        bad.axis = axes[i];
        EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_AXIS, "axis");
    }
    double epss[] = {0.0, -1e-5, NAN, INFINITY};
    for (size_t i = 0; i < 4; ++i) {
        bad         = d;
        bad.epsilon = epss[i];
        EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_EPSILON, "epsilon");
    }
    bad         = d;
    bad.dims[1] = 0;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_SHAPE, "dims[1]");
    bad      = d;
    bad.ndim = 0;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_SHAPE, "ndim");
    bad      = d;
    bad.ndim = CLNORM_MAX_DIMS + 1;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_SHAPE, "ndim");
    bad         = d;
    bad.dims[0] = SIZE_MAX / 2;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_SIZE_OVERFLOW, "dims[1]");
    bad         = d;
    bad.dims[0] = (size_t)1 << 40;
    bad.dims[1] = (size_t)1 << 20;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_SIZE_OVERFLOW, "elements");
    bad       = d;
    bad.dtype = (clnorm_dtype)7;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_DTYPE, "dtype");
    clnorm_device_info info;
    clnorm_context_device_info(H.ctx, &info);
    if (!info.has_fp64) {
        bad       = d;
        bad.dtype = CLNORM_F64;
        EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_UNSUPPORTED_DTYPE, "fp64");
    }
    outs_check(&o);

    cl_mem rel[] = {mx, mdy, mg, mst, short_t, short_v};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; ++i)
        clReleaseMemObject(rel[i]);
    for (int i = 0; i < 6; ++i)
        clReleaseMemObject(o.m[i]);
}

Test(family_misuse, layernorm_forward, .init = harness_init, .fini = harness_fini)
{
    bad_norm_calls(clnorm_layernorm_forward, 0, 0);
}
Test(family_misuse, layernorm_backward, .init = harness_init, .fini = harness_fini)
{
    bad_norm_calls(clnorm_layernorm_backward, 1, 0);
}
Test(family_misuse, rmsnorm_forward, .init = harness_init, .fini = harness_fini)
{
    bad_norm_calls(clnorm_rmsnorm_forward, 0, 1);
}
Test(family_misuse, rmsnorm_backward, .init = harness_init, .fini = harness_fini)
{
    bad_norm_calls(clnorm_rmsnorm_backward, 1, 1);
}

typedef clnorm_status (*gn_fn)(clnorm_context *, cl_command_queue, const clnorm_groupnorm_desc *,
                               const clnorm_norm_args *, cl_uint, const cl_event *, cl_event *);

static void bad_gn_calls(gn_fn fn, int backward, int instance)
{
    /* N=2, C=4, 3x5 positions; G=2 (instance norm: 4) */
    size_t                dims[4] = {2, 4, 3, 5}, n = 120, G = instance ? 4 : 2, M = 2 * G;
    clnorm_groupnorm_desc d, bad;
    cr_assert_eq(clnorm_groupnorm_desc_init(&d, CLNORM_NCHW, 4, dims, 2), CLNORM_SUCCESS);
    cl_mem mx = dev_from_double(NULL, n, 1.5f), mdy = dev_from_double(NULL, n, 0.5f);
    cl_mem mg = dev_from_double(NULL, 4, 1.0f), mst = dev_from_double(NULL, M, 1.0f);
    cl_mem short_v = dev_from_double(NULL, 3, SENTINEL), short_s = dev_from_double(NULL, M - 1, SENTINEL);
    outs   o;
    memset(&o, 0, sizeof o);
    size_t on[6] = {n, n, M, M, 4, 4};
    for (int i = 0; i < 6; ++i) {
        o.m[i] = dev_from_double(NULL, on[i], SENTINEL);
        o.n[i] = on[i];
    }
    clnorm_norm_args a, b;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(mx, 0);
    a.gamma = clnorm_buf(mg, 0);
    a.beta = clnorm_buf(mg, 0);
    if (backward) {
        a.dy = clnorm_buf(mdy, 0);
        a.dx = clnorm_buf(o.m[1], 0);
        a.mean = clnorm_buf(mst, 0);
        a.invstd = clnorm_buf(mst, 0);
        a.dgamma = clnorm_buf(o.m[4], 0);
        a.dbeta = clnorm_buf(o.m[5], 0);
    } else {
        a.y = clnorm_buf(o.m[0], 0);
        a.mean = clnorm_buf(o.m[2], 0);
        a.invstd = clnorm_buf(o.m[3], 0);
    }
    EXPECT_STATUS(fn(NULL, H.q, &d, &a, 0, NULL, NULL), CLNORM_ERROR_NULL_CONTEXT, "ctx");
    EXPECT_STATUS(fn(H.ctx, H.q, NULL, &a, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "desc");
    EXPECT_STATUS(fn(H.ctx, H.q, &d, NULL, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "args");
    EXPECT_STATUS(fn(H.ctx, NULL, &d, &a, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "queue");
    b = a;
    b.x.mem = NULL;
    EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "x");
    bad        = d;
    bad.layout = (clnorm_layout)2;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_LAYOUT, "layout");
    if (!instance) {
        size_t groups[] = {0, 3, 5, 8};
        for (size_t i = 0; i < 4; ++i) {
            bad            = d;
            bad.num_groups = groups[i];
            EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_GROUPS, "num_groups");
        }
    }
    bad      = d;
    bad.ndim = 1;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_SHAPE, "ndim");
    bad         = d;
    bad.dims[3] = 0;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_SHAPE, "dims[3]");
    bad         = d;
    bad.dims[2] = SIZE_MAX / 4;
    EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_SIZE_OVERFLOW, "dims");
    double epss[] = {0.0, -1.0, NAN};
    for (size_t i = 0; i < 3; ++i) {
        bad         = d;
        bad.epsilon = epss[i];
        EXPECT_STATUS(fn(H.ctx, H.q, &bad, &a, 0, NULL, NULL), CLNORM_ERROR_INVALID_EPSILON, "epsilon");
    }
    b = a;
    b.gamma = clnorm_buf(short_v, 0);
    EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "gamma");
    b = a;
    b.invstd = clnorm_buf(short_s, 0);
    EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "invstd");
    if (backward) {
        b = a;
        b.mean.mem = NULL;
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "mean");
        b = a;
        b.dbeta = clnorm_buf(short_v, 0);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "dbeta");
        cl_mem tiny = dev_bytes(16, 0);
        b = a;
        b.workspace = clnorm_buf(tiny, 0);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "workspace");
        clReleaseMemObject(tiny);
    } else {
        b = a;
        b.mean = clnorm_buf(short_s, 0);
        EXPECT_STATUS(fn(H.ctx, H.q, &d, &b, 0, NULL, NULL), CLNORM_ERROR_BUFFER_TOO_SMALL, "mean");
    }
    outs_check(&o);
    cl_mem rel[] = {mx, mdy, mg, mst, short_v, short_s};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; ++i)
        clReleaseMemObject(rel[i]);
    for (int i = 0; i < 6; ++i)
        clReleaseMemObject(o.m[i]);
}

Test(family_misuse, groupnorm_forward, .init = harness_init, .fini = harness_fini)
{
    bad_gn_calls(clnorm_groupnorm_forward, 0, 0);
}
Test(family_misuse, groupnorm_backward, .init = harness_init, .fini = harness_fini)
{
    bad_gn_calls(clnorm_groupnorm_backward, 1, 0);
}
Test(family_misuse, instancenorm_forward, .init = harness_init, .fini = harness_fini)
{
    bad_gn_calls(clnorm_instancenorm_forward, 0, 1);
}
Test(family_misuse, instancenorm_backward, .init = harness_init, .fini = harness_fini)
{
    bad_gn_calls(clnorm_instancenorm_backward, 1, 1);
}

Test(family_misuse, descriptors_and_workspace_queries, .init = harness_init, .fini = harness_fini)
{
    size_t                dims[3] = {2, 4, 6}, bytes = 12345;
    clnorm_norm_desc      d;
    clnorm_groupnorm_desc g;
    EXPECT_STATUS(clnorm_norm_desc_init(NULL, 3, dims, -1), CLNORM_ERROR_NULL_ARGUMENT, NULL);
    EXPECT_STATUS(clnorm_norm_desc_init(&d, 3, NULL, -1), CLNORM_ERROR_NULL_ARGUMENT, NULL);
    EXPECT_STATUS(clnorm_norm_desc_init(&d, 0, dims, -1), CLNORM_ERROR_INVALID_SHAPE, NULL);
    EXPECT_STATUS(clnorm_groupnorm_desc_init(NULL, CLNORM_NCHW, 3, dims, 2), CLNORM_ERROR_NULL_ARGUMENT, NULL);
    EXPECT_STATUS(clnorm_groupnorm_desc_init(&g, CLNORM_NCHW, 1, dims, 2), CLNORM_ERROR_INVALID_SHAPE, NULL);
    cr_assert_eq(clnorm_norm_desc_init(&d, 3, dims, -1), CLNORM_SUCCESS);
    cr_expect_eq(d.epsilon, 1e-5);
    cr_expect_eq(d.dtype, CLNORM_F32);
    cr_assert_eq(clnorm_groupnorm_desc_init(&g, CLNORM_NHWC, 3, dims, 3), CLNORM_SUCCESS);
    EXPECT_STATUS(clnorm_norm_workspace_size(NULL, &d, &bytes), CLNORM_ERROR_NULL_CONTEXT, "ctx");
    EXPECT_STATUS(clnorm_norm_workspace_size(H.ctx, NULL, &bytes), CLNORM_ERROR_NULL_ARGUMENT, "desc");
    EXPECT_STATUS(clnorm_norm_workspace_size(H.ctx, &d, NULL), CLNORM_ERROR_NULL_ARGUMENT, "bytes");
    d.axis = 3;
    EXPECT_STATUS(clnorm_norm_workspace_size(H.ctx, &d, &bytes), CLNORM_ERROR_INVALID_AXIS, "axis");
    g.num_groups = 4; /* C = 6 */
    EXPECT_STATUS(clnorm_groupnorm_workspace_size(H.ctx, &g, &bytes), CLNORM_ERROR_INVALID_GROUPS, "num_groups");
    cr_expect_eq(bytes, 12345, "a failed query wrote its output");
    EXPECT_STATUS(clnorm_instancenorm_workspace_size(H.ctx, &g, &bytes), CLNORM_SUCCESS, NULL);
    EXPECT_STATUS(clnorm_instancenorm_workspace_size(H.ctx, NULL, &bytes), CLNORM_ERROR_NULL_ARGUMENT, "desc");
}

/* ---- other storage types ---------------------------------------------------- */

/* fp32 -> fp16 bits, round to nearest even (normal range only: test data). */
static uint16_t to_half(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, e = (u >> 23) & 0xffu, m = u & 0x7fffffu;
    if (e < 103)
        return (uint16_t)sign;
    if (e < 113) { /* subnormal half */
        m |= 0x800000u;
        uint32_t sh = 126 - e, h = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        h += rem > half || (rem == half && (h & 1));
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((e - 112) << 10) | (m >> 13), rem = m & 0x1fffu;
    h += rem > 0x1000u || (rem == 0x1000u && (h & 1));
    return (uint16_t)(sign | h);
}

static double from_half(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : ldexp(m + 1024, e - 25);
    return (h & 0x8000) ? -v : v;
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static double from_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float    f;
    memcpy(&f, &u, 4);
    return f;
}

/* A device tensor in dtype from doubles, rounding x in place to what the
 * device holds. */
static cl_mem dev_typed(clnorm_dtype dt, double *x, size_t n)
{
    size_t         es = dt == CLNORM_F64 ? 8 : dt == CLNORM_F32 ? 4 : 2;
    unsigned char *b  = malloc(n * es + 1);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; ++i) {
        if (dt == CLNORM_F64) {
            memcpy(b + 8 * i, &x[i], 8);
        } else if (dt == CLNORM_F16) {
            uint16_t h = to_half((float)x[i]);
            memcpy(b + 2 * i, &h, 2);
            x[i] = from_half(h);
        } else {
            uint16_t h = to_bf16((float)x[i]);
            memcpy(b + 2 * i, &h, 2);
            x[i] = from_bf16(h);
        }
    }
    cl_int err;
    cl_mem m = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * es, b, &err);
    free(b);
    cr_assert_eq(err, CL_SUCCESS);
    return m;
}

static void read_typed(clnorm_dtype dt, cl_mem m, size_t n, double *out)
{
    size_t         es = dt == CLNORM_F64 ? 8 : 2;
    unsigned char *b  = malloc(n * es + 1);
    cr_assert_not_null(b);
    dev_read(m, n * es, b);
    for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        if (dt == CLNORM_F64) {
            memcpy(&out[i], b + 8 * i, 8);
            continue;
        }
        memcpy(&h, b + 2 * i, 2);
        out[i] = dt == CLNORM_F16 ? from_half(h) : from_bf16(h);
    }
    free(b);
}

/* Parameters (gamma, beta, statistics) are fp32, or fp64 with fp64 storage. */
static cl_mem dev_param(clnorm_dtype dt, const double *x, size_t n)
{
    if (dt != CLNORM_F64)
        return dev_from_double(x, n, 0);
    double *c = dalloc(n);
    if (x)
        memcpy(c, x, n * sizeof *c);
    cl_mem m = dev_typed(CLNORM_F64, c, n);
    free(c);
    return m;
}

static void read_param(clnorm_dtype dt, cl_mem m, size_t n, double *out)
{
    if (dt == CLNORM_F64)
        read_typed(dt, m, n, out);
    else
        dev_to_double(m, n, out);
}

/* Layer norm (fused rows and split rows) and group norm NHWC in half,
 * bfloat16 and (where the device has it) double storage. The reference runs
 * on the inputs as stored; the tolerances are the storage rounding of the
 * outputs (2^-11 for half, 2^-8 for bfloat16) with a factor 2 of margin, and
 * 1e-12 for double. */
Test(family, other_dtypes, .init = harness_init, .fini = harness_fini, .timeout = 600)
{
    static const fam_case cases[] = {
        ROWS("ln 37x300", LN, 37, 300, DATA_NORMAL, AFF_BOTH),
        ROWS("ln 600x300", LN, 600, 300, DATA_NORMAL, AFF_BOTH), /* dgamma fused into dx */
        ROWS("ln 4001x16", LN, 4001, 16, DATA_NORMAL, AFF_BOTH),   /* short rows, 16 at a time */
        ROWS("ln 999x64", LN, 999, 64, DATA_NORMAL, AFF_BETA),
        ROWS("ln 2001x49", LN, 2001, 49, DATA_NORMAL, AFF_BOTH),
        ROWS("ln 4001x8", LN, 4001, 8, DATA_NORMAL, AFF_BOTH),   /* shorter than a vector */
        ROWS("ln 3001x11", LN, 3001, 11, DATA_NORMAL, AFF_BETA),
        GNC("gn 2x12x9x9 G=3", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 3, 2, 12, 9, 9),
        ROWS("ln 2x100003", LN, 2, 100003, DATA_MEAN_1E4, AFF_BOTH),
        GNC("gn 2x9x9x12 G=3", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 3, 2, 9, 9, 12),
        GNC("gn 8x6x6x96 G=32", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 32, 8, 6, 6, 96), /* sample blocks */
        GNC("gn 16x5x5x64 G=4", GN, NHWC, 4, DATA_MEAN_1E4, AFF_BOTH, 4, 16, 5, 5, 64),
        GNC("gn 8x6x6x160 G=16", GN, NHWC, 4, DATA_NORMAL, AFF_BOTH, 16, 8, 6, 6, 160), /* 80-channel blocks */
        GNC("gn 32x8x9x11 G=4", GN, NCHW, 4, DATA_NORMAL, AFF_BOTH, 4, 32, 8, 9, 11), /* gn_fwd_lead (test_family_lead) */
    };
    clnorm_device_info info;
    clnorm_context_device_info(H.ctx, &info);
    clnorm_dtype dts[] = {CLNORM_F16, CLNORM_BF16, CLNORM_F64};
    for (size_t t = 0; t < 3; ++t) {
        clnorm_dtype dt = dts[t];
        if (dt == CLNORM_F64 && !info.has_fp64)
            continue;
        double tol = dt == CLNORM_F16 ? 1e-3 : dt == CLNORM_BF16 ? 8e-3 : 1e-12;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
            const fam_case *tc = &cases[i];
            if (dt != CLNORM_F64 && tc->data == DATA_MEAN_1E4)
                continue; /* 1e4 +- 1 is not representable in 16 bits */
            any_desc d;
            make_desc(tc, &d);
            if (tc->op == LN)
                d.norm.dtype = dt;
            else
                d.gn.dtype = dt;
            shape   s = shape_of(tc);
            size_t  n = s.n, P = s.nparam, M = s.nstat;
            ref_rng r = ref_rng_seed(31 + t);
            double *x = dalloc(n), *dy = dalloc(n), *g = dalloc(P), *b = dalloc(P);
            fill_x(tc, &s, x, &r);
            ref_fill_normal(&r, dy, n, 0.1, 1.0);
            ref_fill_uniform(&r, g, P, 0.5, 1.5);
            ref_fill_uniform(&r, b, P, -1.0, 1.0);
            round_to_float(g, P);
            round_to_float(b, P);
            cl_mem mx = dev_typed(dt, x, n), mdy = dev_typed(dt, dy, n);
            cl_mem my = dev_typed(dt, dy, n), mdx = dev_typed(dt, dy, n); /* overwritten */
            cl_mem mg = dev_param(dt, g, P), mb = dev_param(dt, b, P);
            cl_mem mm = dev_param(dt, NULL, M), mi = dev_param(dt, NULL, M);
            cl_mem mdg = dev_param(dt, NULL, P), mdb = dev_param(dt, NULL, P);
            clnorm_norm_args a;
            memset(&a, 0, sizeof a);
            a.x = clnorm_buf(mx, 0);
            a.y = clnorm_buf(my, 0);
            a.dy = clnorm_buf(mdy, 0);
            a.dx = clnorm_buf(mdx, 0);
            a.gamma = clnorm_buf(mg, 0);
            a.beta = clnorm_buf(mb, 0);
            a.mean = clnorm_buf(mm, 0);
            a.invstd = clnorm_buf(mi, 0);
            a.dgamma = clnorm_buf(mdg, 0);
            a.dbeta = clnorm_buf(mdb, 0);
            clnorm_status st = call_fwd(tc, &d, &a);
            cr_assert_eq(st, CLNORM_SUCCESS, "%s dtype %d: %s", tc->name, (int)dt, clnorm_last_error(H.ctx));
            st = call_bwd(tc, &d, &a);
            cr_assert_eq(st, CLNORM_SUCCESS, "%s dtype %d: %s", tc->name, (int)dt, clnorm_last_error(H.ctx));
            double *gy = dalloc(n), *gdx = dalloc(n), *gm = dalloc(M), *gi = dalloc(M);
            double *ry = dalloc(n), *rdx = dalloc(n), *rdg = dalloc(P), *rdb = dalloc(P), *gdg = dalloc(P);
            read_typed(dt, my, n, gy);
            read_typed(dt, mdx, n, gdx);
            read_param(dt, mm, M, gm);
            read_param(dt, mi, M, gi);
            read_param(dt, mdg, P, gdg);
            if (tc->op == LN) {
                ref_layernorm_forward(s.rows, s.cols, x, g, b, EPS, ry, NULL, NULL);
                ref_layernorm_backward(s.rows, s.cols, x, dy, g, gm, gi, rdx, rdg, rdb);
            } else {
                ref_groupnorm_forward(s.N, s.C, s.Sp, s.G, s.nhwc, x, g, b, EPS, ry, NULL, NULL);
                ref_groupnorm_backward(s.N, s.C, s.Sp, s.G, s.nhwc, x, dy, g, gm, gi, rdx, rdg, rdb);
            }
            double ey = rowwise_err(gy, ry, n, s.row_of, M, NULL);
            double ex = normwise_err(gdx, rdx, n, 1e-30), eg = normwise_err(gdg, rdg, P, 1e-30);
            report(tc, dt == CLNORM_F16 ? "y f16" : dt == CLNORM_BF16 ? "y bf16" : "y f64", ey);
            cr_expect(ey <= tol && ex <= tol && eg <= tol,
                      "%s dtype %d: y %.3g, dx %.3g, dgamma %.3g (tol %.3g)", tc->name, (int)dt, ey, ex, eg,
                      tol);
            cl_mem all[] = {mx, mdy, my, mdx, mg, mb, mm, mi, mdg, mdb};
            for (size_t k = 0; k < sizeof all / sizeof *all; ++k)
                clReleaseMemObject(all[k]);
            double *hs[] = {x, dy, g, b, gy, gdx, gm, gi, ry, rdx, rdg, rdb, gdg};
            for (size_t k = 0; k < sizeof hs / sizeof *hs; ++k)
                free(hs[k]);
            free(s.row_of);
        }
    }
}
