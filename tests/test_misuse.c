/* test_misuse.c: every public entry point called with each wrong argument it
 * can receive. Each case checks the exact status, that clnorm_last_error
 * names the argument, and that nothing was written: every buffer the case
 * made (inputs, outputs, running statistics) holds its initial bytes after
 * clFinish. A few correct calls sit among them (marked "ok") so the checks
 * are seen to pass on success too.
 *
 * The operation cases are generated from rules (which buffers each call
 * reads and writes, which are required) into one table; the cases on
 * context, device and descriptor functions are a second table. */
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the operations -------------------------------------------------------- */

enum fn_id {
    F_BN_FT, F_BN_FI, F_BN_BW, F_BN_BF, F_BN_WS,
    F_LN_F, F_LN_B, F_RMS_F, F_RMS_B, F_NORM_WS,
    F_GN_F, F_GN_B, F_GN_WS, F_IN_F, F_IN_B, F_IN_WS,
    F_COUNT
};
static const char *const fn_names[F_COUNT] = {
    "bn_forward_training", "bn_forward_inference", "bn_backward", "bn_backward_frozen",
    "bn_workspace_size", "layernorm_forward", "layernorm_backward", "rmsnorm_forward",
    "rmsnorm_backward", "norm_workspace_size", "groupnorm_forward", "groupnorm_backward",
    "groupnorm_workspace_size", "instancenorm_forward", "instancenorm_backward",
    "instancenorm_workspace_size"};

enum family { FAM_BN, FAM_NORM, FAM_GN };
static enum family fam_of(int f) { return f <= F_BN_WS ? FAM_BN : f <= F_NORM_WS ? FAM_NORM : FAM_GN; }
static int is_ws(int f) { return f == F_BN_WS || f == F_NORM_WS || f == F_GN_WS || f == F_IN_WS; }
static int is_instance(int f) { return f == F_IN_F || f == F_IN_B || f == F_IN_WS; }
static int is_backward(int f)
{
    return f == F_BN_BW || f == F_BN_BF || f == F_LN_B || f == F_RMS_B || f == F_GN_B || f == F_IN_B;
}

enum bid { BX, BY, BDY, BDX, BG, BB, BDG, BDB, BSM, BSI, BRM, BRV, BMEAN, BINV, NB };
static const char *const bid_names[NB] = {"x",      "y",          "dy",           "dx",
                                          "gamma",  "beta",       "dgamma",       "dbeta",
                                          "saved_mean", "saved_invstd", "running_mean", "running_var",
                                          "mean",   "invstd"};

/* How each call uses each buffer: R required, O optional, '.' ignored.
 * Backward-frozen needs x because dgamma is present in the base case. */
static const char *const use_table[F_COUNT] = {
    /*            x y dy dx g b dg db sm si rm rv mean inv */
    [F_BN_FT]  = "RR..OO..OOOO..",
    [F_BN_FI]  = "RR..OO....RR..",
    [F_BN_BW]  = "R.RRO.OORR....",
    [F_BN_BF]  = "R.RRO.OO..RR..",
    [F_BN_WS]  = "..............",
    [F_LN_F]   = "RR..OO......OO",
    [F_LN_B]   = "R.RRO.OO....RR",
    [F_RMS_F]  = "RR..O........O",
    [F_RMS_B]  = "R.RRO.O......R",
    [F_NORM_WS] = "..............",
    [F_GN_F]   = "RR..OO......OO",
    [F_GN_B]   = "R.RRO.OO....RR",
    [F_GN_WS]  = "..............",
    [F_IN_F]   = "RR..OO......OO",
    [F_IN_B]   = "R.RRO.OO....RR",
    [F_IN_WS]  = "..............",
};
static char use_of(int f, int b) { return use_table[f][b]; }
/* A field the call must ignore (the test puts a buffer of another cl_context
 * there and expects success). */
static const int ignored_field[F_COUNT] = {
    [F_BN_FT] = BDY, [F_BN_FI] = BSM, [F_BN_BW] = BY,   [F_BN_BF] = BSI, [F_BN_WS] = -1,
    [F_LN_F] = BDY,  [F_LN_B] = BY,   [F_RMS_F] = BB,   [F_RMS_B] = BDB, [F_NORM_WS] = -1,
    [F_GN_F] = BDX,  [F_GN_B] = BY,   [F_GN_WS] = -1,   [F_IN_F] = BDY,  [F_IN_B] = BY,
    [F_IN_WS] = -1};

/* Base shapes: BN NCHW (2,3,4,5); layer/RMS norm (4,6,5) over axis 1 (4 rows
 * of 30); group norm NCHW (2,4,3,5) in 2 groups. */
static const size_t bn_dims[4]   = {2, 3, 4, 5};
static const size_t norm_dims[3] = {4, 6, 5};
static const size_t gn_dims[4]   = {2, 4, 3, 5};
#define TENSOR_N 120

static size_t len_of(int f, int b)
{
    if (b == BX || b == BY || b == BDY || b == BDX)
        return TENSOR_N;
    switch (fam_of(f)) {
    case FAM_BN: return 3;
    case FAM_NORM: return (b == BMEAN || b == BINV) ? 4 : 30;
    default: return (b == BMEAN || b == BINV) ? (is_instance(f) ? 8 : 4) : 4;
    }
}

/* ---- the cases ------------------------------------------------------------ */

enum mut {
    M_NONE, M_CTX_NULL, M_DESC_NULL, M_ARGS_NULL, M_BYTES_NULL, M_QUEUE_NULL, M_QUEUE_OTHER,
    M_WAIT_COUNT_NO_LIST, M_WAIT_LIST_NO_COUNT, M_WAIT_NULL_ENTRY, M_WAIT_OK,
    M_MODE, M_LAYOUT, M_DTYPE, M_NDIM, M_DIMS, M_EPS, M_MOMENTUM, M_AXIS, M_GROUPS, M_UNBIASED_ONE,
    M_BUF_NULL, M_BUF_SHORT, M_BUF_OFFSET, M_BUF_OTHER, M_IGNORED_OTHER,
    M_WS_EXACT, M_WS_SHORT, M_WS_MISALIGNED, M_WS_OTHER, M_WS_OFFSET128
};

typedef struct mcase {
    char          name[112];
    int           fn, mut, bid;
    long long     ival;
    size_t        zval;
    double        dval;
    size_t        ndim, dims[CLNORM_MAX_DIMS];
    clnorm_status want;
    char          msg[48]; /* a word the last error must contain ("" on success) */
    int           may_ignore; /* success is accepted too when this call needs less
                               * workspace than the query (or none); a foreign or
                               * misaligned workspace must then be left alone */
} mcase;

static mcase *gen_out;
static size_t gen_n;

static mcase *add(int fn, int mut, clnorm_status want, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static mcase *add(int fn, int mut, clnorm_status want, const char *msg, const char *fmt, ...)
{
    static mcase scratch;
    mcase       *c = gen_out ? &gen_out[gen_n] : &scratch;
    gen_n++;
    memset(c, 0, sizeof *c);
    c->fn   = fn;
    c->mut  = mut;
    c->bid  = -1;
    c->want = want;
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    char    what[80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(c->name, sizeof c->name, "%s: %s", fn_names[fn], what);
    return c;
}

static void add_dims(int fn, clnorm_status want, const char *msg, const char *what, size_t ndim,
                     const size_t *dims)
{
    if (is_ws(fn) && want == CLNORM_ERROR_BUFFER_TOO_SMALL) /* a valid shape; no buffers here */
        want = CLNORM_SUCCESS, msg = "";
    mcase *c = add(fn, M_DIMS, want, msg, "%s", what);
    c->ndim  = ndim;
    memcpy(c->dims, dims, ndim * sizeof *dims);
}

#define S32 ((size_t)1 << 32)

static void gen_bn_desc(int f)
{
    static const long long bad_enum[] = {2, -1, 1000};
    for (size_t i = 0; i < 3; ++i) {
        add(f, M_MODE, CLNORM_ERROR_INVALID_MODE, "mode", "mode %lld", bad_enum[i])->ival = bad_enum[i];
        add(f, M_LAYOUT, CLNORM_ERROR_INVALID_LAYOUT, "layout", "layout %lld", bad_enum[i])->ival =
            bad_enum[i];
    }
    add(f, M_DTYPE, CLNORM_ERROR_INVALID_DTYPE, "dtype", "dtype 4")->ival  = 4;
    add(f, M_DTYPE, CLNORM_ERROR_INVALID_DTYPE, "dtype", "dtype -1")->ival = -1;
    static const size_t bad_ndim[] = {0, 1, CLNORM_MAX_DIMS + 1, SIZE_MAX};
    for (size_t i = 0; i < 4; ++i)
        add(f, M_NDIM, CLNORM_ERROR_INVALID_SHAPE, "ndim", "ndim %zu", bad_ndim[i])->zval = bad_ndim[i];
    for (size_t k = 0; k < 4; ++k) {
        size_t d[4] = {2, 3, 4, 5};
        char   w[16];
        d[k] = 0;
        snprintf(w, sizeof w, "dims[%zu]", k);
        add_dims(f, CLNORM_ERROR_INVALID_SHAPE, w, w, 4, d);
    }
    {
        size_t d[4] = {S32, 3, 4, 5}; /* outer = 2^32 */
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "4294967296", "outer 2^32", 4, d);
        size_t e[4] = {1, S32, 1, 1}; /* channels = 2^32 */
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "4294967296", "channels 2^32", 4, e);
        size_t g[4] = {1, 1, 1 << 16, 1 << 16}; /* inner = 2^32 */
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "4294967296", "inner 2^32", 4, g);
        size_t h[3] = {(size_t)1 << 31, 2, 3}; /* NHWC-style outer via per-activation: C = 6 */
        add_dims(f, CLNORM_ERROR_BUFFER_TOO_SMALL, "x", "outer 2^31 (fits)", 3, h);
        size_t m[4] = {S32 - 1, 3, 4, 5}; /* each below 2^32: the shape is valid */
        add_dims(f, CLNORM_ERROR_BUFFER_TOO_SMALL, "x", "outer 2^32-1 (fits)", 4, m);
        size_t p[4] = {(size_t)1 << 62, (size_t)1 << 3, 1, 1}; /* product overflows size_t */
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "overflows", "product overflows size_t", 4, p);
        size_t q[4] = {SIZE_MAX, 2, 1, 1};
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "overflows", "dims[0] SIZE_MAX", 4, q);
        size_t r[4] = {(size_t)1 << 20, 1 << 10, 1 << 10, 1 << 10}; /* 2^50 elements */
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "index", "2^50 elements", 4, r);
        size_t s[4] = {1, 1 << 16, 1 << 16, 1}; /* channels*inner = 2^32 */
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "channels", "channels*inner 2^32", 4, s);
    }
    /* 1e-50 and 1e300 are finite doubles that fp32 parameters turn into 0 and inf */
    static const double bad_eps[] = {0.0, -0.0, -1e-5, NAN, INFINITY, -INFINITY, 1e-50, 1e300};
    static const char *const eps_names[] = {"0", "-0", "-1e-5", "NaN", "+Inf", "-Inf", "1e-50", "1e300"};
    for (size_t i = 0; i < sizeof bad_eps / sizeof *bad_eps; ++i)
        add(f, M_EPS, CLNORM_ERROR_INVALID_EPSILON, "epsilon", "epsilon %s", eps_names[i])->dval = bad_eps[i];
}

static void gen_norm_desc(int f)
{
    add(f, M_DTYPE, CLNORM_ERROR_INVALID_DTYPE, "dtype", "dtype 4")->ival  = 4;
    add(f, M_DTYPE, CLNORM_ERROR_INVALID_DTYPE, "dtype", "dtype -1")->ival = -1;
    static const size_t bad_ndim[] = {0, CLNORM_MAX_DIMS + 1, SIZE_MAX};
    for (size_t i = 0; i < 3; ++i)
        add(f, M_NDIM, CLNORM_ERROR_INVALID_SHAPE, "ndim", "ndim %zu", bad_ndim[i])->zval = bad_ndim[i];
    for (size_t k = 0; k < 3; ++k) {
        size_t d[3] = {4, 6, 5};
        char   w[16];
        d[k] = 0;
        snprintf(w, sizeof w, "dims[%zu]", k);
        add_dims(f, CLNORM_ERROR_INVALID_SHAPE, w, w, 3, d);
    }
    static const long long bad_axis[] = {3, -4, 1000, -1000};
    for (size_t i = 0; i < 4; ++i)
        add(f, M_AXIS, CLNORM_ERROR_INVALID_AXIS, "axis", "axis %lld", bad_axis[i])->ival = bad_axis[i];
    {
        size_t p[3] = {(size_t)1 << 62, 8, 1};
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "overflows", "product overflows size_t", 3, p);
        size_t r[3] = {(size_t)1 << 25, (size_t)1 << 25, 1}; /* 2^50 elements */
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "index", "2^50 elements", 3, r);
        size_t m[3] = {S32, 6, 5}; /* 2^32 rows: the kernels index rows with 64 bits */
        add_dims(f, CLNORM_ERROR_BUFFER_TOO_SMALL, "x", "2^32 rows (fits)", 3, m);
    }
    static const double bad_eps[] = {0.0, -1e-5, NAN, INFINITY, 1e-50};
    static const char *const eps_names[] = {"0", "-1e-5", "NaN", "+Inf", "1e-50"};
    for (size_t i = 0; i < sizeof bad_eps / sizeof *bad_eps; ++i)
        add(f, M_EPS, CLNORM_ERROR_INVALID_EPSILON, "epsilon", "epsilon %s", eps_names[i])->dval = bad_eps[i];
}

static void gen_gn_desc(int f)
{
    add(f, M_LAYOUT, CLNORM_ERROR_INVALID_LAYOUT, "layout", "layout 2")->ival  = 2;
    add(f, M_LAYOUT, CLNORM_ERROR_INVALID_LAYOUT, "layout", "layout -1")->ival = -1;
    add(f, M_DTYPE, CLNORM_ERROR_INVALID_DTYPE, "dtype", "dtype 4")->ival      = 4;
    static const size_t bad_ndim[] = {0, 1, CLNORM_MAX_DIMS + 1};
    for (size_t i = 0; i < 3; ++i)
        add(f, M_NDIM, CLNORM_ERROR_INVALID_SHAPE, "ndim", "ndim %zu", bad_ndim[i])->zval = bad_ndim[i];
    for (size_t k = 0; k < 4; ++k) {
        size_t d[4] = {2, 4, 3, 5};
        char   w[16];
        d[k] = 0;
        snprintf(w, sizeof w, "dims[%zu]", k);
        add_dims(f, CLNORM_ERROR_INVALID_SHAPE, w, w, 4, d);
    }
    static const size_t bad_groups[] = {0, 3, 8, SIZE_MAX};
    for (size_t i = 0; i < 4; ++i) {
        if (is_instance(f)) /* instance norm ignores num_groups */
            add(f, M_GROUPS, CLNORM_SUCCESS, "", "ok: num_groups %zu ignored", bad_groups[i])->zval =
                bad_groups[i];
        else
            add(f, M_GROUPS, CLNORM_ERROR_INVALID_GROUPS, "num_groups", "num_groups %zu", bad_groups[i])->zval =
                bad_groups[i];
    }
    {
        size_t p[4] = {(size_t)1 << 62, 4, 16, 1};
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "overflows", "product overflows size_t", 4, p);
        size_t r[4] = {(size_t)1 << 20, 4, 1 << 14, 1 << 14}; /* 2^50 elements */
        add_dims(f, CLNORM_ERROR_SIZE_OVERFLOW, "index", "2^50 elements", 4, r);
    }
    static const double bad_eps[] = {0.0, -1e-5, NAN, -INFINITY, 1e-50};
    static const char *const eps_names[] = {"0", "-1e-5", "NaN", "-Inf", "1e-50"};
    for (size_t i = 0; i < sizeof bad_eps / sizeof *bad_eps; ++i)
        add(f, M_EPS, CLNORM_ERROR_INVALID_EPSILON, "epsilon", "epsilon %s", eps_names[i])->dval = bad_eps[i];
}

static size_t generate(mcase *out)
{
    gen_out = out;
    gen_n   = 0;
    for (int f = 0; f < F_COUNT; ++f) {
        add(f, M_NONE, CLNORM_SUCCESS, "", "ok: base case");
        add(f, M_CTX_NULL, CLNORM_ERROR_NULL_CONTEXT, "ctx", "ctx NULL");
        add(f, M_DESC_NULL, CLNORM_ERROR_NULL_ARGUMENT, "desc", "desc NULL");
        if (is_ws(f)) {
            add(f, M_BYTES_NULL, CLNORM_ERROR_NULL_ARGUMENT, "bytes", "bytes NULL");
        } else {
            add(f, M_ARGS_NULL, CLNORM_ERROR_NULL_ARGUMENT, "args", "args NULL");
            add(f, M_QUEUE_NULL, CLNORM_ERROR_NULL_ARGUMENT, "queue", "queue NULL");
            add(f, M_QUEUE_OTHER, CLNORM_ERROR_INVALID_QUEUE, "queue", "queue of another cl_context");
            add(f, M_WAIT_COUNT_NO_LIST, CLNORM_ERROR_INVALID_WAIT_LIST, "num_events_in_wait_list",
                "wait count 1, list NULL");
            add(f, M_WAIT_LIST_NO_COUNT, CLNORM_ERROR_INVALID_WAIT_LIST, "num_events_in_wait_list",
                "wait count 0, list not NULL");
            add(f, M_WAIT_NULL_ENTRY, CLNORM_ERROR_INVALID_WAIT_LIST, "event_wait_list",
                "wait list entry NULL");
            add(f, M_WAIT_OK, CLNORM_SUCCESS, "", "ok: a completed event in the wait list");
        }
        switch (fam_of(f)) {
        case FAM_BN: gen_bn_desc(f); break;
        case FAM_NORM: gen_norm_desc(f); break;
        default: gen_gn_desc(f); break;
        }
        if (f == F_BN_FT) {
            static const double bad_f[] = {-0.1, 1.0000001, NAN, INFINITY, -INFINITY, -DBL_MIN};
            static const char *const names[] = {"-0.1", "1.0000001", "NaN", "+Inf", "-Inf", "-DBL_MIN"};
            for (size_t i = 0; i < 6; ++i)
                add(f, M_MOMENTUM, CLNORM_ERROR_INVALID_MOMENTUM, "exp_avg_factor", "exp_avg_factor %s",
                    names[i])->dval = bad_f[i];
            add(f, M_MOMENTUM, CLNORM_SUCCESS, "", "ok: exp_avg_factor 0")->dval = 0.0;
            add(f, M_MOMENTUM, CLNORM_SUCCESS, "", "ok: exp_avg_factor 1")->dval = 1.0;
            add(f, M_UNBIASED_ONE, CLNORM_ERROR_INVALID_SHAPE, "variance",
                "unbiased running variance of one value per channel");
        }
        if (f == F_BN_FI || f == F_BN_BW || f == F_BN_BF) /* momentum is a training-forward field */
            add(f, M_MOMENTUM, CLNORM_SUCCESS, "", "ok: exp_avg_factor NaN ignored")->dval = NAN;
        if (is_ws(f))
            continue;
        for (int b = 0; b < NB; ++b) {
            char u = use_of(f, b);
            if (u == '.')
                continue;
            const char *n = bid_names[b];
            if (u == 'R')
                add(f, M_BUF_NULL, CLNORM_ERROR_NULL_ARGUMENT, n, "%s NULL", n)->bid = b;
            else
                add(f, M_BUF_NULL, CLNORM_SUCCESS, "", "ok: optional %s absent", n)->bid = b;
            add(f, M_BUF_SHORT, CLNORM_ERROR_BUFFER_TOO_SMALL, n, "%s one element short", n)->bid = b;
            mcase *c = add(f, M_BUF_OFFSET, CLNORM_ERROR_BUFFER_TOO_SMALL, n, "%s offset 1", n);
            c->bid   = b;
            c->zval  = 1;
            c        = add(f, M_BUF_OFFSET, CLNORM_ERROR_SIZE_OVERFLOW, n, "%s offset SIZE_MAX", n);
            c->bid   = b;
            c->zval  = SIZE_MAX;
            c        = add(f, M_BUF_OFFSET, CLNORM_ERROR_SIZE_OVERFLOW, n, "%s offset SIZE_MAX/4", n);
            c->bid   = b;
            c->zval  = SIZE_MAX / 4;
            add(f, M_BUF_OTHER, CLNORM_ERROR_INVALID_BUFFER, n, "%s of another cl_context", n)->bid = b;
        }
        if (ignored_field[f] >= 0)
            add(f, M_IGNORED_OTHER, CLNORM_SUCCESS, "", "ok: ignored field %s holds a foreign buffer",
                bid_names[ignored_field[f]])
                ->bid = ignored_field[f];
        add(f, M_WS_EXACT, CLNORM_SUCCESS, "", "ok: caller workspace of the queried size");
        add(f, M_WS_OFFSET128, CLNORM_SUCCESS, "", "ok: caller workspace at offset 128");
        add(f, M_WS_SHORT, CLNORM_ERROR_BUFFER_TOO_SMALL, "workspace", "workspace one byte short")->may_ignore = 1;
        add(f, M_WS_MISALIGNED, CLNORM_ERROR_INVALID_ARGUMENT, "workspace", "workspace offset 64 bytes")
            ->may_ignore = 1;
        add(f, M_WS_OTHER, CLNORM_ERROR_INVALID_BUFFER, "workspace", "workspace of another cl_context")
            ->may_ignore = 1;
    }
    return gen_n;
}

static void free_cases(struct criterion_test_params *crp) { cr_free(crp->params); }

ParameterizedTestParameters(misuse, ops)
{
    size_t n = generate(NULL);
    mcase *t = cr_malloc(n * sizeof *t);
    cr_assert_not_null(t);
    generate(t);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i)
        bad += t[i].want != CLNORM_SUCCESS;
    fprintf(stderr, "misuse: %zu operation cases (%zu wrong calls, %zu correct ones)\n", n, bad, n - bad);
    return cr_make_param_array(mcase, t, n, free_cases);
}

/* ---- running a case -------------------------------------------------------- */

typedef struct tracked {
    cl_mem         mem;
    cl_command_queue q;
    size_t         bytes;
    unsigned char *init;
} tracked;

typedef struct world {
    tracked          t[64];
    size_t           nt;
    cl_context       other;
    cl_command_queue other_q;
    cl_mem           other_mem;
    cl_event         user_ev;
} world;

static void track(world *w, cl_mem m, cl_command_queue q, size_t bytes, const void *init)
{
    cr_assert_lt(w->nt, sizeof w->t / sizeof *w->t);
    tracked *t = &w->t[w->nt++];
    t->mem     = m;
    t->q       = q;
    t->bytes   = bytes;
    t->init    = malloc(bytes);
    cr_assert_not_null(t->init);
    memcpy(t->init, init, bytes);
}

/* A buffer of n floats from a pattern: inputs get valid data, outputs NaN
 * with a payload no kernel writes. */
static cl_mem make_floats(world *w, size_t n, int b)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    cr_assert_not_null(v);
    for (size_t i = 0; i < n; ++i) {
        switch (b) {
        case BX: v[i] = (float)(1.0 + 0.37 * (double)((i * 7919) % 23)); break;
        case BDY: v[i] = (float)(0.25 - 0.02 * (double)((i * 31) % 17)); break;
        case BG: case BSI: case BRV: case BINV: v[i] = 0.5f + 0.125f * (float)(i % 5); break;
        case BB: case BSM: case BRM: case BMEAN: v[i] = 0.1f * (float)(i % 7) - 0.2f; break;
        default: {
            uint32_t u = 0x7fc0dead;
            memcpy(&v[i], &u, sizeof u);
        }
        }
    }
    cl_int err;
    cl_mem m = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof *v, v, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer: %d", err);
    track(w, m, H.q, n * sizeof *v, v);
    free(v);
    return m;
}

static cl_mem make_bytes(world *w, size_t n)
{
    unsigned char *v = malloc(n ? n : 1);
    cr_assert_not_null(v);
    memset(v, 0xa5, n ? n : 1);
    cl_int err;
    cl_mem m = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n ? n : 1, v, &err);
    cr_assert_eq(err, CL_SUCCESS);
    track(w, m, H.q, n ? n : 1, v);
    free(v);
    return m;
}

static void make_other(world *w)
{
    if (w->other)
        return;
    cl_int       err;
    cl_device_id dev = clnorm_context_device(H.ctx);
    w->other         = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS);
    w->other_q = clCreateCommandQueue(w->other, dev, 0, &err);
    cr_assert_eq(err, CL_SUCCESS);
    unsigned char v[4096];
    memset(v, 0x5a, sizeof v);
    w->other_mem = clCreateBuffer(w->other, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof v, v, &err);
    cr_assert_eq(err, CL_SUCCESS);
    track(w, w->other_mem, w->other_q, sizeof v, v);
}

static void world_free(world *w)
{
    for (size_t i = 0; i < w->nt; ++i) {
        clReleaseMemObject(w->t[i].mem);
        free(w->t[i].init);
    }
    if (w->user_ev)
        clReleaseEvent(w->user_ev);
    if (w->other_q)
        clReleaseCommandQueue(w->other_q);
    if (w->other)
        clReleaseContext(w->other);
}

/* Whether msg holds word with no identifier character glued to either end. */
static int names_word(const char *msg, const char *word)
{
    size_t n = strlen(word);
    if (n == 0)
        return 1;
    for (const char *p = msg; (p = strstr(p, word)) != NULL; ++p) {
        int before = p == msg || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        int after  = !(isalnum((unsigned char)p[n]) || p[n] == '_');
        if (before && after)
            return 1;
    }
    return 0;
}

static void set_bn_buf(clnorm_bn_args *a, int b, clnorm_buffer v)
{
    switch (b) {
    case BX: a->x = v; break;
    case BY: a->y = v; break;
    case BDY: a->dy = v; break;
    case BDX: a->dx = v; break;
    case BG: a->gamma = v; break;
    case BB: a->beta = v; break;
    case BDG: a->dgamma = v; break;
    case BDB: a->dbeta = v; break;
    case BSM: a->saved_mean = v; break;
    case BSI: a->saved_invstd = v; break;
    case BRM: a->running_mean = v; break;
    case BRV: a->running_var = v; break;
    default: break;
    }
}

static void set_norm_buf(clnorm_norm_args *a, int b, clnorm_buffer v)
{
    switch (b) {
    case BX: a->x = v; break;
    case BY: a->y = v; break;
    case BDY: a->dy = v; break;
    case BDX: a->dx = v; break;
    case BG: a->gamma = v; break;
    case BB: a->beta = v; break;
    case BDG: a->dgamma = v; break;
    case BDB: a->dbeta = v; break;
    case BMEAN: a->mean = v; break;
    case BINV: a->invstd = v; break;
    default: break;
    }
}

/* Everything one call takes. */
typedef struct call {
    clnorm_context        *ctx;
    cl_command_queue       q;
    clnorm_bn_desc         bn;
    clnorm_norm_desc       nd;
    clnorm_groupnorm_desc  gd;
    clnorm_bn_args         ba;
    clnorm_norm_args       na;
    int                    desc_null, args_null, bytes_null;
    cl_uint                nwait;
    const cl_event        *wait;
    cl_event               waitbuf[2];
    size_t                 bytes;
} call;

static clnorm_status invoke(int f, call *c, cl_event *ev)
{
    const clnorm_bn_desc        *bd = c->desc_null ? NULL : &c->bn;
    const clnorm_norm_desc      *nd = c->desc_null ? NULL : &c->nd;
    const clnorm_groupnorm_desc *gd = c->desc_null ? NULL : &c->gd;
    const clnorm_bn_args        *ba = c->args_null ? NULL : &c->ba;
    const clnorm_norm_args      *na = c->args_null ? NULL : &c->na;
    size_t                      *by = c->bytes_null ? NULL : &c->bytes;
    switch (f) {
    case F_BN_FT: return clnorm_bn_forward_training(c->ctx, c->q, bd, ba, c->nwait, c->wait, ev);
    case F_BN_FI: return clnorm_bn_forward_inference(c->ctx, c->q, bd, ba, c->nwait, c->wait, ev);
    case F_BN_BW: return clnorm_bn_backward(c->ctx, c->q, bd, ba, c->nwait, c->wait, ev);
    case F_BN_BF: return clnorm_bn_backward_frozen(c->ctx, c->q, bd, ba, c->nwait, c->wait, ev);
    case F_BN_WS: return clnorm_bn_workspace_size(c->ctx, bd, by);
    case F_LN_F: return clnorm_layernorm_forward(c->ctx, c->q, nd, na, c->nwait, c->wait, ev);
    case F_LN_B: return clnorm_layernorm_backward(c->ctx, c->q, nd, na, c->nwait, c->wait, ev);
    case F_RMS_F: return clnorm_rmsnorm_forward(c->ctx, c->q, nd, na, c->nwait, c->wait, ev);
    case F_RMS_B: return clnorm_rmsnorm_backward(c->ctx, c->q, nd, na, c->nwait, c->wait, ev);
    case F_NORM_WS: return clnorm_norm_workspace_size(c->ctx, nd, by);
    case F_GN_F: return clnorm_groupnorm_forward(c->ctx, c->q, gd, na, c->nwait, c->wait, ev);
    case F_GN_B: return clnorm_groupnorm_backward(c->ctx, c->q, gd, na, c->nwait, c->wait, ev);
    case F_GN_WS: return clnorm_groupnorm_workspace_size(c->ctx, gd, by);
    case F_IN_F: return clnorm_instancenorm_forward(c->ctx, c->q, gd, na, c->nwait, c->wait, ev);
    case F_IN_B: return clnorm_instancenorm_backward(c->ctx, c->q, gd, na, c->nwait, c->wait, ev);
    default: return clnorm_instancenorm_workspace_size(c->ctx, gd, by);
    }
}

/* The workspace size of the base case. */
static size_t base_workspace(int f, call *c)
{
    size_t bytes = 0;
    clnorm_status st;
    switch (fam_of(f)) {
    case FAM_BN: st = clnorm_bn_workspace_size(H.ctx, &c->bn, &bytes); break;
    case FAM_NORM: st = clnorm_norm_workspace_size(H.ctx, &c->nd, &bytes); break;
    default:
        st = is_instance(f) ? clnorm_instancenorm_workspace_size(H.ctx, &c->gd, &bytes)
                            : clnorm_groupnorm_workspace_size(H.ctx, &c->gd, &bytes);
    }
    cr_assert_eq(st, CLNORM_SUCCESS, "workspace size: %s", clnorm_last_error(H.ctx));
    return bytes;
}

static void set_buf(int f, call *c, int b, clnorm_buffer v)
{
    if (fam_of(f) == FAM_BN)
        set_bn_buf(&c->ba, b, v);
    else
        set_norm_buf(&c->na, b, v);
}

static void run_case(const mcase *tc)
{
    world w;
    memset(&w, 0, sizeof w);
    call c;
    memset(&c, 0, sizeof c);
    int f = tc->fn;
    c.ctx = H.ctx;
    c.q   = H.q;
    c.bytes = (size_t)0xdeadbeef;
    cr_assert_eq(clnorm_bn_desc_init(&c.bn, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, bn_dims), CLNORM_SUCCESS);
    cr_assert_eq(clnorm_norm_desc_init(&c.nd, 3, norm_dims, 1), CLNORM_SUCCESS);
    cr_assert_eq(clnorm_groupnorm_desc_init(&c.gd, CLNORM_NCHW, 4, gn_dims, 2), CLNORM_SUCCESS);

    /* every buffer the call may touch */
    cl_mem mem[NB] = {0};
    for (int b = 0; b < NB; ++b)
        if (use_of(f, b) != '.') {
            mem[b] = make_floats(&w, len_of(f, b), b);
            set_buf(f, &c, b, clnorm_buf(mem[b], 0));
        }

    /* the mutation */
    switch (tc->mut) {
    case M_NONE: break;
    case M_CTX_NULL: c.ctx = NULL; break;
    case M_DESC_NULL: c.desc_null = 1; break;
    case M_ARGS_NULL: c.args_null = 1; break;
    case M_BYTES_NULL: c.bytes_null = 1; break;
    case M_QUEUE_NULL: c.q = NULL; break;
    case M_QUEUE_OTHER: make_other(&w); c.q = w.other_q; break;
    case M_WAIT_COUNT_NO_LIST: c.nwait = 1; break;
    case M_WAIT_LIST_NO_COUNT:
    case M_WAIT_NULL_ENTRY:
    case M_WAIT_OK: {
        cl_int err;
        w.user_ev = clCreateUserEvent(H.cl, &err);
        cr_assert_eq(err, CL_SUCCESS);
        cr_assert_eq(clSetUserEventStatus(w.user_ev, CL_COMPLETE), CL_SUCCESS);
        c.waitbuf[0] = w.user_ev;
        c.waitbuf[1] = NULL;
        c.wait       = c.waitbuf;
        c.nwait      = tc->mut == M_WAIT_LIST_NO_COUNT ? 0 : tc->mut == M_WAIT_NULL_ENTRY ? 2 : 1;
        break;
    }
    case M_MODE: c.bn.mode = (clnorm_bn_mode)tc->ival; break;
    case M_LAYOUT:
        c.bn.layout = (clnorm_layout)tc->ival;
        c.gd.layout = (clnorm_layout)tc->ival;
        break;
    case M_DTYPE:
        c.bn.dtype = (clnorm_dtype)tc->ival;
        c.nd.dtype = (clnorm_dtype)tc->ival;
        c.gd.dtype = (clnorm_dtype)tc->ival;
        break;
    case M_NDIM:
        c.bn.ndim = c.nd.ndim = c.gd.ndim = tc->zval;
        break;
    case M_DIMS:
        c.bn.ndim = c.nd.ndim = c.gd.ndim = tc->ndim;
        memcpy(c.bn.dims, tc->dims, sizeof c.bn.dims);
        memcpy(c.nd.dims, tc->dims, sizeof c.nd.dims);
        memcpy(c.gd.dims, tc->dims, sizeof c.gd.dims);
        if (fam_of(f) == FAM_BN && tc->ndim == 3)
            c.bn.mode = CLNORM_BN_PER_ACTIVATION;
        break;
    case M_EPS: c.bn.epsilon = c.nd.epsilon = c.gd.epsilon = tc->dval; break;
    case M_MOMENTUM: c.bn.exp_avg_factor = tc->dval; break;
    case M_AXIS: c.nd.axis = (int)tc->ival; break;
    case M_GROUPS: c.gd.num_groups = tc->zval; break;
    case M_UNBIASED_ONE: {
        size_t one[4] = {1, 3, 1, 1};
        memcpy(c.bn.dims, one, sizeof one);
        c.bn.unbiased_running_var = 1;
        break;
    }
    case M_BUF_NULL: set_buf(f, &c, tc->bid, clnorm_buf(NULL, 0)); break;
    case M_BUF_SHORT: {
        cl_mem m = make_floats(&w, len_of(f, tc->bid) - 1, tc->bid);
        set_buf(f, &c, tc->bid, clnorm_buf(m, 0));
        break;
    }
    case M_BUF_OFFSET: set_buf(f, &c, tc->bid, clnorm_buf(mem[tc->bid], tc->zval)); break;
    case M_BUF_OTHER:
    case M_IGNORED_OTHER:
        make_other(&w);
        set_buf(f, &c, tc->bid, clnorm_buf(w.other_mem, 0));
        break;
    case M_WS_EXACT:
    case M_WS_OFFSET128:
    case M_WS_SHORT:
    case M_WS_MISALIGNED:
    case M_WS_OTHER: {
        size_t need = base_workspace(f, &c);
        clnorm_buffer ws;
        if (tc->mut == M_WS_OTHER) {
            make_other(&w);
            ws = clnorm_buf(w.other_mem, 0);
        } else if (tc->mut == M_WS_SHORT) {
            if (need == 0)
                cr_skip_test("the base case needs no workspace");
            ws = clnorm_buf(make_bytes(&w, need - 1), 0);
        } else if (tc->mut == M_WS_EXACT) {
            ws = clnorm_buf(make_bytes(&w, need), 0);
        } else {
            size_t off = tc->mut == M_WS_OFFSET128 ? 128 : 64;
            ws         = clnorm_buf(make_bytes(&w, need + off), off);
        }
        c.ba.workspace = ws;
        c.na.workspace = ws;
        break;
    }
    }

    cl_event sentinel_ev = (cl_event)(uintptr_t)0x5eed, ev = sentinel_ev;
    clnorm_status st = invoke(f, &c, is_ws(f) ? NULL : &ev);
    const char   *msg = clnorm_last_error(c.ctx);
    cl_mem        ws_mem = fam_of(f) == FAM_BN ? c.ba.workspace.mem : c.na.workspace.mem;
    int           ignored = tc->may_ignore && st == CLNORM_SUCCESS;
    if (ignored)
        fprintf(stderr, "note: %s: accepted (this call needs less workspace, or none)\n", tc->name);
    else
        cr_expect_eq(st, tc->want, "%s: status %s (%d), expected %s; message: %s", tc->name, clnorm_status_name(st),
                 (int)st, clnorm_status_name(tc->want), msg);
    if (tc->want != CLNORM_SUCCESS && !ignored) {
        cr_expect(msg[0] != '\0', "%s: empty last error", tc->name);
        cr_expect(names_word(msg, tc->msg), "%s: the message does not name \"%s\": %s", tc->name, tc->msg,
                  msg);
    }
    if (st == CLNORM_SUCCESS && !is_ws(f)) {
        cr_expect(ev != sentinel_ev && ev != NULL, "%s: no event", tc->name);
        if (ev != sentinel_ev && ev != NULL) {
            cr_expect_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
            clReleaseEvent(ev);
        }
    } else if (!is_ws(f)) {
        cr_expect(ev == sentinel_ev, "%s: event written by a failed call", tc->name);
    }
    if (is_ws(f)) {
        if (st == CLNORM_SUCCESS)
            cr_expect(c.bytes != (size_t)0xdeadbeef, "%s: bytes not written", tc->name);
        else
            cr_expect_eq(c.bytes, (size_t)0xdeadbeef, "%s: bytes written by a failed call", tc->name);
    }

    /* what the buffers hold now */
    clFinish(H.q);
    if (w.other_q)
        clFinish(w.other_q);
    int primary = is_backward(f) ? BDX : BY;
    for (size_t i = 0; i < w.nt; ++i) {
        tracked       *t   = &w.t[i];
        unsigned char *now = malloc(t->bytes);
        cr_assert_not_null(now);
        cr_assert_eq(clEnqueueReadBuffer(t->q, t->mem, CL_TRUE, 0, t->bytes, now, 0, NULL, NULL), CL_SUCCESS);
        int same = memcmp(now, t->init, t->bytes) == 0;
        if (st != CLNORM_SUCCESS)
            cr_expect(same, "%s: buffer %zu written by a failed call", tc->name, i);
        else if (ignored && t->mem == ws_mem && tc->mut != M_WS_SHORT)
            cr_expect(same, "%s: a workspace the call refused to check was written", tc->name);
        else if (!is_ws(f) && t->mem == mem[primary] && tc->mut != M_BUF_OFFSET)
            cr_expect(!same, "%s: the output was not written by a successful call", tc->name);
        free(now);
    }
    world_free(&w);
}

ParameterizedTest(mcase *tc, misuse, ops, .init = harness_init, .fini = harness_fini, .timeout = 120)
{
    run_case(tc);
}

/* ---- context, device and descriptor functions ------------------------------ */

typedef struct acase {
    char name[96];
    int  id;
} acase;

enum {
    A_CREATE_CLCTX_NULL, A_CREATE_DEVICE_NULL, A_CREATE_OUT_NULL, A_CREATE_FOREIGN_DEVICE,
    A_CREATE_OK_SHARED, A_DEFAULT_OUT_NULL, A_DEFAULT_BAD_NAME,
    A_DEFAULT_BAD_INDEX, A_DEFAULT_BAD_PAIR, A_DEFAULT_BAD_ENV, A_DEFAULT_EMPTY_SELECTOR,
    A_SELECT_DEVICE_NULL, A_SELECT_WHY_SHORT, A_SELECT_WHY_NULL, A_SELECT_BAD_COLON,
    A_QUERY_DEVICE_NULL, A_QUERY_INFO_NULL, A_CTXINFO_CTX_NULL,
    A_CTXINFO_INFO_NULL, A_ACCESSORS_NULL, A_DESTROY_NULL, A_LAST_ERROR_NULL_CTX,
    A_STATUS_STRINGS, A_VERSION, A_BN_INIT_DESC_NULL, A_BN_INIT_DIMS_NULL, A_BN_INIT_NDIM_0,
    A_BN_INIT_NDIM_1, A_BN_INIT_NDIM_9, A_BN_INIT_BAD_MODE, A_BN_INIT_BAD_LAYOUT,
    A_NORM_INIT_DESC_NULL, A_NORM_INIT_DIMS_NULL, A_NORM_INIT_NDIM_0, A_NORM_INIT_NDIM_9,
    A_NORM_INIT_BAD_AXIS, A_GN_INIT_DESC_NULL, A_GN_INIT_DIMS_NULL, A_GN_INIT_NDIM_1,
    A_GN_INIT_NDIM_9, A_GN_INIT_BAD_GROUPS, A_F64_WHERE_SUPPORTED, A_TUNE_CTX_NULL, A_COUNT
};
static const char *const api_names[A_COUNT] = {
    "context_create: cl_ctx NULL", "context_create: device NULL", "context_create: ctx NULL",
    "context_create: device not of cl_ctx (sub-device)",
    "ok: context_create twice on one cl_context", "context_create_default: ctx NULL",
    "context_create_default: no device by that name", "context_create_default: index out of range",
    "context_create_default: P:D out of range", "context_create_default: bad CLNORM_DEVICE",
    "ok: context_create_default: empty selector", "select_device: device NULL",
    "ok: select_device: why of 1 byte", "ok: select_device: why NULL", "select_device: \"0:\"",
    "query_device: device NULL", "query_device: info NULL",
    "context_device_info: ctx NULL", "context_device_info: info NULL", "ok: accessors with NULL",
    "ok: context_destroy(NULL)", "ok: last_error(NULL) without a failure", "ok: status strings",
    "ok: version", "bn_desc_init: desc NULL", "bn_desc_init: dims NULL", "bn_desc_init: ndim 0",
    "bn_desc_init: ndim 1", "bn_desc_init: ndim 9", "bn_desc_init: mode 7 (here or at use)",
    "bn_desc_init: layout 7 (here or at use)", "norm_desc_init: desc NULL", "norm_desc_init: dims NULL",
    "norm_desc_init: ndim 0", "norm_desc_init: ndim 9", "norm_desc_init: axis 5 (here or at use)",
    "groupnorm_desc_init: desc NULL", "groupnorm_desc_init: dims NULL", "groupnorm_desc_init: ndim 1",
    "groupnorm_desc_init: ndim 9", "groupnorm_desc_init: 3 groups of 4 channels (here or at use)",
    "F64 where the device reports cl_khr_fp64 (else UNSUPPORTED_DTYPE)", "tune: ctx NULL"};

static void free_api(struct criterion_test_params *crp) { cr_free(crp->params); }

ParameterizedTestParameters(misuse, api)
{
    acase *t = cr_malloc(A_COUNT * sizeof *t);
    cr_assert_not_null(t);
    for (int i = 0; i < A_COUNT; ++i) {
        t[i].id = i;
        snprintf(t[i].name, sizeof t[i].name, "%s", api_names[i]);
    }
    fprintf(stderr, "misuse: %d context/device/descriptor cases\n", A_COUNT);
    return cr_make_param_array(acase, t, A_COUNT, free_api);
}

#define EXPECT_STATUS(call_, want_, word_)                                                                 \
    do {                                                                                                  \
        clnorm_status st_ = (call_);                                                                      \
        cr_expect_eq(st_, want_, "%s: %s, expected %s (%s)", tc->name, clnorm_status_name(st_),           \
                     clnorm_status_name(want_), clnorm_last_error(NULL));                                 \
        cr_expect(names_word(clnorm_last_error(NULL), word_), "%s: message does not name \"%s\": %s",    \
                  tc->name, word_, clnorm_last_error(NULL));                                              \
    } while (0)

static clnorm_context *const CTX_SENTINEL = (clnorm_context *)(uintptr_t)0xc0ffee;

/* A bn call on desc that must be refused with want. */
static void bn_use_refused(const clnorm_bn_desc *d, clnorm_status want, const char *name)
{
    size_t bytes = 0;
    clnorm_status st = clnorm_bn_workspace_size(H.ctx, d, &bytes);
    cr_expect_eq(st, want, "%s: using the descriptor gave %s", name, clnorm_status_name(st));
}

static void run_api(const acase *tc)
{
    clnorm_context *out = CTX_SENTINEL;
    cl_device_id    dev = clnorm_context_device(H.ctx);
    switch (tc->id) {
    case A_CREATE_CLCTX_NULL:
        EXPECT_STATUS(clnorm_context_create(NULL, dev, &out), CLNORM_ERROR_NULL_ARGUMENT, "cl_ctx");
        break;
    case A_CREATE_DEVICE_NULL:
        EXPECT_STATUS(clnorm_context_create(H.cl, NULL, &out), CLNORM_ERROR_NULL_ARGUMENT, "device");
        break;
    case A_CREATE_OUT_NULL:
        EXPECT_STATUS(clnorm_context_create(H.cl, dev, NULL), CLNORM_ERROR_NULL_ARGUMENT, "ctx");
        break;
    case A_CREATE_FOREIGN_DEVICE: {
        cl_device_partition_property props[] = {CL_DEVICE_PARTITION_EQUALLY, 1, 0};
        cl_device_id                 sub[64];
        cl_uint                      nsub = 0;
        if (clCreateSubDevices(dev, props, 64, sub, &nsub) != CL_SUCCESS || nsub == 0)
            cr_skip_test("the device cannot be partitioned");
        EXPECT_STATUS(clnorm_context_create(H.cl, sub[0], &out), CLNORM_ERROR_INVALID_ARGUMENT, "device");
        for (cl_uint i = 0; i < nsub && i < 64; ++i)
            clReleaseDevice(sub[i]);
        break;
    }
    case A_CREATE_OK_SHARED: {
        clnorm_context *a = NULL, *b = NULL;
        cr_expect_eq(clnorm_context_create(H.cl, dev, &a), CLNORM_SUCCESS);
        cr_expect_eq(clnorm_context_create(H.cl, dev, &b), CLNORM_SUCCESS);
        cr_expect(a && b && a != b);
        cr_expect_eq(clnorm_context_cl_context(a), H.cl);
        cr_expect_eq(clnorm_context_device(b), dev);
        clnorm_context_destroy(a);
        clnorm_context_destroy(b);
        out = NULL;
        break;
    }
    case A_DEFAULT_OUT_NULL:
        EXPECT_STATUS(clnorm_context_create_default(NULL, NULL), CLNORM_ERROR_NULL_ARGUMENT, "ctx");
        break;
    case A_DEFAULT_BAD_NAME:
        EXPECT_STATUS(clnorm_context_create_default("no-such-device-xyz", &out), CLNORM_ERROR_DEVICE_NOT_FOUND,
                      "no-such-device-xyz");
        break;
    case A_DEFAULT_BAD_INDEX:
        EXPECT_STATUS(clnorm_context_create_default("63", &out), CLNORM_ERROR_DEVICE_NOT_FOUND, "63");
        break;
    case A_DEFAULT_BAD_PAIR:
        EXPECT_STATUS(clnorm_context_create_default("0:63", &out), CLNORM_ERROR_DEVICE_NOT_FOUND, "0:63");
        break;
    case A_DEFAULT_BAD_ENV:
        setenv("CLNORM_DEVICE", "no-such-device-xyz", 1);
        EXPECT_STATUS(clnorm_context_create_default(NULL, &out), CLNORM_ERROR_DEVICE_NOT_FOUND, "CLNORM_DEVICE");
        unsetenv("CLNORM_DEVICE");
        break;
    case A_DEFAULT_EMPTY_SELECTOR: {
        /* "" means no selector: the environment or the default rule */
        clnorm_context *c = NULL;
        cr_expect_eq(clnorm_context_create_default("", &c), CLNORM_SUCCESS, "%s", clnorm_last_error(NULL));
        clnorm_context_destroy(c);
        out = NULL;
        break;
    }
    case A_SELECT_DEVICE_NULL:
        EXPECT_STATUS(clnorm_select_device(NULL, NULL, NULL, NULL, 0), CLNORM_ERROR_NULL_ARGUMENT, "device");
        break;
    case A_SELECT_WHY_SHORT: {
        char         why[1] = {'x'};
        cl_device_id d      = NULL;
        cr_expect_eq(clnorm_select_device(NULL, NULL, &d, why, 1), CLNORM_SUCCESS);
        cr_expect_eq(why[0], '\0');
        cr_expect_not_null(d);
        out = NULL;
        break;
    }
    case A_SELECT_WHY_NULL: {
        cl_device_id d = NULL;
        cr_expect_eq(clnorm_select_device(NULL, NULL, &d, NULL, 100), CLNORM_SUCCESS);
        cr_expect_not_null(d);
        out = NULL;
        break;
    }
    case A_SELECT_BAD_COLON: {
        cl_device_id d = (cl_device_id)(uintptr_t)0x1234;
        EXPECT_STATUS(clnorm_select_device("0:", NULL, &d, NULL, 0), CLNORM_ERROR_DEVICE_NOT_FOUND, "0:");
        cr_expect_eq(d, (cl_device_id)(uintptr_t)0x1234, "device written on failure");
        break;
    }
    case A_QUERY_DEVICE_NULL: {
        clnorm_device_info info;
        EXPECT_STATUS(clnorm_query_device(NULL, &info), CLNORM_ERROR_NULL_ARGUMENT, "device");
        break;
    }
    case A_QUERY_INFO_NULL:
        EXPECT_STATUS(clnorm_query_device(dev, NULL), CLNORM_ERROR_NULL_ARGUMENT, "info");
        break;
    case A_CTXINFO_CTX_NULL: {
        clnorm_device_info info;
        EXPECT_STATUS(clnorm_context_device_info(NULL, &info), CLNORM_ERROR_NULL_CONTEXT, "ctx");
        break;
    }
    case A_CTXINFO_INFO_NULL: {
        clnorm_status st = clnorm_context_device_info(H.ctx, NULL);
        cr_expect_eq(st, CLNORM_ERROR_NULL_ARGUMENT);
        cr_expect(names_word(clnorm_last_error(H.ctx), "info"), "%s", clnorm_last_error(H.ctx));
        break;
    }
    case A_ACCESSORS_NULL:
        cr_expect_null(clnorm_context_cl_context(NULL));
        cr_expect_null(clnorm_context_device(NULL));
        cr_expect_null(clnorm_context_queue(NULL));
        out = NULL;
        break;
    case A_DESTROY_NULL:
        clnorm_context_destroy(NULL);
        out = NULL;
        break;
    case A_LAST_ERROR_NULL_CTX:
        /* a fresh thread's message is empty; never NULL */
        cr_expect_not_null(clnorm_last_error(NULL));
        cr_expect_not_null(clnorm_last_error(H.ctx));
        out = NULL;
        break;
    case A_STATUS_STRINGS:
        for (long s = -3000; s <= 10; ++s) {
            const char *a = clnorm_status_string((clnorm_status)s), *b = clnorm_status_name((clnorm_status)s);
            cr_assert(a && *a && b && *b, "status %ld has a NULL or empty text", s);
        }
        cr_expect_str_eq(clnorm_status_name(CLNORM_ERROR_INVALID_EPSILON), "CLNORM_ERROR_INVALID_EPSILON");
        cr_expect_str_eq(clnorm_status_name((clnorm_status)CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
        cr_expect_str_eq(clnorm_status_string((clnorm_status)INT32_MIN), "unknown status");
        out = NULL;
        break;
    case A_VERSION:
        cr_expect_eq(clnorm_version_number(), (unsigned)CLNORM_VERSION_NUMBER);
        {
            char v[32];
            snprintf(v, sizeof v, "%d.%d.%d", CLNORM_VERSION_MAJOR, CLNORM_VERSION_MINOR, CLNORM_VERSION_PATCH);
            cr_expect_str_eq(clnorm_version_string(), v);
        }
        out = NULL;
        break;
    case A_BN_INIT_DESC_NULL:
        EXPECT_STATUS(clnorm_bn_desc_init(NULL, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, bn_dims),
                      CLNORM_ERROR_NULL_ARGUMENT, "desc");
        break;
    case A_BN_INIT_DIMS_NULL: {
        clnorm_bn_desc d;
        EXPECT_STATUS(clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, NULL), CLNORM_ERROR_NULL_ARGUMENT,
                      "dims");
        break;
    }
    case A_BN_INIT_NDIM_0:
    case A_BN_INIT_NDIM_1:
    case A_BN_INIT_NDIM_9: {
        clnorm_bn_desc d;
        memset(&d, 0x77, sizeof d);
        size_t nd = tc->id == A_BN_INIT_NDIM_0 ? 0 : tc->id == A_BN_INIT_NDIM_1 ? 1 : 9;
        size_t dims[9] = {2, 3, 4, 5, 6, 7, 8, 9, 10};
        EXPECT_STATUS(clnorm_bn_desc_init(&d, CLNORM_BN_SPATIAL, CLNORM_NCHW, nd, dims),
                      CLNORM_ERROR_INVALID_SHAPE, "ndim");
        unsigned char ref[sizeof d];
        memset(ref, 0x77, sizeof ref);
        cr_expect(memcmp(&d, ref, sizeof d) == 0, "desc written on failure");
        break;
    }
    case A_BN_INIT_BAD_MODE:
    case A_BN_INIT_BAD_LAYOUT: {
        /* Rejected by desc_init or, if it stores the value, by the first use. */
        clnorm_bn_desc d;
        int            mode = tc->id == A_BN_INIT_BAD_MODE;
        clnorm_status  want = mode ? CLNORM_ERROR_INVALID_MODE : CLNORM_ERROR_INVALID_LAYOUT;
        clnorm_status  st   = clnorm_bn_desc_init(&d, mode ? (clnorm_bn_mode)7 : CLNORM_BN_SPATIAL,
                                                  mode ? CLNORM_NCHW : (clnorm_layout)7, 4, bn_dims);
        cr_expect(st == CLNORM_SUCCESS || st == want, "desc_init: %s", clnorm_status_name(st));
        if (st == CLNORM_SUCCESS)
            bn_use_refused(&d, want, tc->name);
        else
            cr_expect(names_word(clnorm_last_error(NULL), mode ? "mode" : "layout"), "%s",
                      clnorm_last_error(NULL));
        break;
    }
    case A_NORM_INIT_DESC_NULL:
        EXPECT_STATUS(clnorm_norm_desc_init(NULL, 3, norm_dims, 1), CLNORM_ERROR_NULL_ARGUMENT, "desc");
        break;
    case A_NORM_INIT_DIMS_NULL: {
        clnorm_norm_desc d;
        EXPECT_STATUS(clnorm_norm_desc_init(&d, 3, NULL, 1), CLNORM_ERROR_NULL_ARGUMENT, "dims");
        break;
    }
    case A_NORM_INIT_NDIM_0:
    case A_NORM_INIT_NDIM_9: {
        clnorm_norm_desc d;
        size_t           dims[9] = {2, 3, 4, 5, 6, 7, 8, 9, 10};
        EXPECT_STATUS(clnorm_norm_desc_init(&d, tc->id == A_NORM_INIT_NDIM_0 ? 0 : 9, dims, 0),
                      CLNORM_ERROR_INVALID_SHAPE, "ndim");
        break;
    }
    case A_NORM_INIT_BAD_AXIS: {
        clnorm_norm_desc d;
        clnorm_status    st = clnorm_norm_desc_init(&d, 3, norm_dims, 5);
        cr_expect(st == CLNORM_SUCCESS || st == CLNORM_ERROR_INVALID_AXIS, "%s", clnorm_status_name(st));
        if (st == CLNORM_SUCCESS) {
            size_t b = 0;
            cr_expect_eq(clnorm_norm_workspace_size(H.ctx, &d, &b), CLNORM_ERROR_INVALID_AXIS);
        }
        break;
    }
    case A_GN_INIT_DESC_NULL:
        EXPECT_STATUS(clnorm_groupnorm_desc_init(NULL, CLNORM_NCHW, 4, gn_dims, 2), CLNORM_ERROR_NULL_ARGUMENT,
                      "desc");
        break;
    case A_GN_INIT_DIMS_NULL: {
        clnorm_groupnorm_desc d;
        EXPECT_STATUS(clnorm_groupnorm_desc_init(&d, CLNORM_NCHW, 4, NULL, 2), CLNORM_ERROR_NULL_ARGUMENT,
                      "dims");
        break;
    }
    case A_GN_INIT_NDIM_1:
    case A_GN_INIT_NDIM_9: {
        clnorm_groupnorm_desc d;
        size_t                dims[9] = {2, 3, 4, 5, 6, 7, 8, 9, 10};
        EXPECT_STATUS(clnorm_groupnorm_desc_init(&d, CLNORM_NCHW, tc->id == A_GN_INIT_NDIM_1 ? 1 : 9, dims, 1),
                      CLNORM_ERROR_INVALID_SHAPE, "ndim");
        break;
    }
    case A_GN_INIT_BAD_GROUPS: {
        clnorm_groupnorm_desc d;
        clnorm_status         st = clnorm_groupnorm_desc_init(&d, CLNORM_NCHW, 4, gn_dims, 3);
        cr_expect(st == CLNORM_SUCCESS || st == CLNORM_ERROR_INVALID_GROUPS, "%s", clnorm_status_name(st));
        if (st == CLNORM_SUCCESS) {
            size_t b = 0;
            cr_expect_eq(clnorm_groupnorm_workspace_size(H.ctx, &d, &b), CLNORM_ERROR_INVALID_GROUPS);
        }
        break;
    }
    case A_TUNE_CTX_NULL:
        EXPECT_STATUS(clnorm_tune(NULL, 1, NULL, NULL), CLNORM_ERROR_NULL_CONTEXT, "ctx");
        break;
    case A_F64_WHERE_SUPPORTED: {
        clnorm_device_info info;
        cr_assert_eq(clnorm_context_device_info(H.ctx, &info), CLNORM_SUCCESS);
        size_t         dims[2] = {5, 3};
        clnorm_bn_desc d;
        cr_assert_eq(clnorm_bn_desc_init(&d, CLNORM_BN_PER_ACTIVATION, CLNORM_NCHW, 2, dims), CLNORM_SUCCESS);
        d.dtype = CLNORM_F64;
        double x[15], y[15], sm[3], si[3];
        for (int i = 0; i < 15; ++i) {
            x[i] = 1.0 + (i % 3) * 10.0 + (i / 3) * 0.25;
            y[i] = -7.0;
        }
        cl_int err;
        cl_mem mx = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, x, &err);
        cl_mem my = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof y, y, &err);
        cl_mem msm = clCreateBuffer(H.cl, CL_MEM_READ_WRITE, sizeof sm, NULL, &err);
        cl_mem msi = clCreateBuffer(H.cl, CL_MEM_READ_WRITE, sizeof si, NULL, &err);
        clnorm_bn_args a;
        memset(&a, 0, sizeof a);
        a.x            = clnorm_buf(mx, 0);
        a.y            = clnorm_buf(my, 0);
        a.saved_mean   = clnorm_buf(msm, 0);
        a.saved_invstd = clnorm_buf(msi, 0);
        clnorm_status st = clnorm_bn_forward_training(H.ctx, H.q, &d, &a, 0, NULL, NULL);
        clFinish(H.q);
        if (!info.has_fp64) {
            cr_expect_eq(st, CLNORM_ERROR_UNSUPPORTED_DTYPE);
            cr_expect(strstr(clnorm_last_error(H.ctx), "cl_khr_fp64") != NULL, "%s", clnorm_last_error(H.ctx));
        } else {
            cr_expect_eq(st, CLNORM_SUCCESS, "%s", clnorm_last_error(H.ctx));
            cr_assert_eq(clEnqueueReadBuffer(H.q, msm, CL_TRUE, 0, sizeof sm, sm, 0, NULL, NULL), CL_SUCCESS);
            cr_assert_eq(clEnqueueReadBuffer(H.q, my, CL_TRUE, 0, sizeof y, y, 0, NULL, NULL), CL_SUCCESS);
            for (int c = 0; c < 3; ++c) {
                double m = 1.0 + c * 10.0 + 0.5; /* rows add 0, .25, .5, .75, 1 */
                cr_expect(fabs(sm[c] - m) < 1e-12, "F64 mean[%d] = %.17g, expected %.17g", c, sm[c], m);
            }
            /* y of the middle row is exactly 0 in every channel */
            for (int c = 0; c < 3; ++c)
                cr_expect(fabs(y[2 * 3 + c]) < 1e-12, "F64 y = %.17g", y[6 + c]);
        }
        clReleaseMemObject(mx);
        clReleaseMemObject(my);
        clReleaseMemObject(msm);
        clReleaseMemObject(msi);
        out = NULL;
        break;
    }
    }
    if (out != NULL)
        cr_expect_eq(out, CTX_SENTINEL, "%s: ctx written by a failed call", tc->name);
}

ParameterizedTest(acase *tc, misuse, api, .init = harness_init, .fini = harness_fini, .timeout = 120)
{
    run_api(tc);
}
