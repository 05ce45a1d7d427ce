/* fuzz_bn_args.c: libFuzzer harness for the batch norm entry points' argument
 * checks. The input is decoded into a call (which entry point, descriptor,
 * buffers with their sizes, offsets and contexts, workspace, queue, wait
 * list); an independent model of the documented rules lists every rule the
 * call breaks, and the harness checks that
 *   - the call succeeds exactly when it breaks none (a caller workspace that
 *     this call does not need may be ignored),
 *   - otherwise its status is the status of one of the broken rules and no
 *     buffer changed,
 *   - a successful call wrote only the buffers it documents, and for fp32 and
 *     fp64 its results match the C reference (tests/ref/ref.c).
 * One clnorm context serves the whole process; tensors stay small. */
#include "clnorm/clnorm.h"
#include "ref.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static clnorm_context  *ctx;
static cl_context       cl, other_cl;
static cl_command_queue q, other_q;
static cl_mem           other_mem; /* a buffer of another cl_context */
static int              has_fp64;

#define MAX_ELEMS ((size_t)1 << 14) /* tensors above this get token buffers */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_bn_args: setup: %s\n", what);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (clnorm_context_create_default(NULL, &ctx) != CLNORM_SUCCESS)
        die(clnorm_last_error(NULL));
    cl = clnorm_context_cl_context(ctx);
    q  = clnorm_context_queue(ctx);
    cl_device_id dev = clnorm_context_device(ctx);
    cl_int       err;
    other_cl = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        die("second cl_context");
    other_q   = clCreateCommandQueue(other_cl, dev, 0, &err);
    other_mem = clCreateBuffer(other_cl, CL_MEM_READ_WRITE, 1 << 20, NULL, &err);
    if (err != CL_SUCCESS)
        die("foreign buffer");
    clnorm_device_info info;
    clnorm_context_device_info(ctx, &info);
    has_fp64 = info.has_fp64;
    return 0;
}

/* ---- input decoding ---------------------------------------------------------- */

typedef struct reader {
    const uint8_t *p;
    size_t         n;
} reader;

static unsigned u8(reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

enum { OP_FT, OP_FI, OP_BW, OP_BF, OP_WS, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"forward_training", "forward_inference", "backward",
                                               "backward_frozen", "workspace_size"};
enum { S_X, S_Y, S_DY, S_DX, S_G, S_B, S_DG, S_DB, S_SM, S_SI, S_RM, S_RV, NSLOT };
static const char *const slot_names[NSLOT] = {"x",      "y",     "dy",         "dx",
                                              "gamma",  "beta",  "dgamma",     "dbeta",
                                              "saved_mean", "saved_invstd", "running_mean", "running_var"};
/* how a slot is filled */
enum { B_EXACT, B_ABSENT, B_FOREIGN, B_SHORT, B_OFFSET1, B_OFFSET2_OK, B_OFFSET_HUGE, B_OFFSET_OVF };

/* Use of each slot per op: 'R' required, 'O' optional, '.' ignored; 'W' in
 * the second table marks what the op writes. Frozen backward needs x only
 * when dgamma is present (handled in the model). */
static const char *const use_of[OP_COUNT] = {"RR..OO..OOOO", "RR..OO....RR", "R.RRO.OORR..", "O.RRO.OO..RR",
                                             "............"};
static const char *const writes[OP_COUNT] = {".W......WWWW", ".W..........", "...W..WW....", "...W..WW....",
                                             "............"};

static const size_t special_dims[] = {0,
                                      8,
                                      17,
                                      64,
                                      (size_t)1 << 16,
                                      ((size_t)1 << 31) + 1,
                                      ((size_t)1 << 32) - 1,
                                      (size_t)1 << 32,
                                      ((size_t)1 << 32) + 1,
                                      (size_t)1 << 62,
                                      SIZE_MAX};
static const double special_eps[] = {0.0, -0.0, -1e-5, NAN, INFINITY, -INFINITY, 1e30, 1e-3};
static const double special_f[]   = {-0.1, 1.5, NAN, INFINITY, -INFINITY, 1.0 + 1e-12};

typedef struct call {
    int            op;
    clnorm_bn_desc d;
    int            ctx_null, desc_null, args_null, bytes_null;
    int            queue_kind; /* 0 context queue, 1 NULL, 2 foreign */
    int            wait_kind;  /* 0 none, 1 count without list, 2 list without count, 3 NULL entry, 4 valid */
    int            slot[NSLOT];
    int            ws_kind;    /* 0 absent, 1 exact, 2 short, 3 offset 64, 4 offset 128 ok, 5 foreign */
    uint64_t       seed;
} call;

static void decode(reader *r, call *c)
{
    memset(c, 0, sizeof *c);
    unsigned v;
    c->op = (int)(u8(r) % OP_COUNT);
    size_t dims[CLNORM_MAX_DIMS] = {0};
    v                            = u8(r);
    size_t ndim                  = v < 224 ? 2 + v % 4 : v % 11;
    for (size_t i = 0; i < ndim && i < CLNORM_MAX_DIMS; ++i) {
        v       = u8(r);
        dims[i] = v < 232 ? 1 + v % 7 : special_dims[v % (sizeof special_dims / sizeof *special_dims)];
    }
    v                  = u8(r);
    clnorm_bn_mode m   = v < 120 ? CLNORM_BN_SPATIAL : v < 240 ? CLNORM_BN_PER_ACTIVATION : (clnorm_bn_mode)(v % 2 ? 2 : -1);
    v                  = u8(r);
    clnorm_layout  lay = v < 120 ? CLNORM_NCHW : v < 240 ? CLNORM_NHWC : (clnorm_layout)(v % 2 ? 2 : -7);
    clnorm_bn_desc_init(&c->d, CLNORM_BN_SPATIAL, CLNORM_NCHW, 2, dims); /* defaults */
    c->d.mode   = m;
    c->d.layout = lay;
    c->d.ndim   = ndim;
    memcpy(c->d.dims, dims, sizeof dims);
    v          = u8(r);
    c->d.dtype = v < 176 ? CLNORM_F32 : v < 200 ? CLNORM_F64 : v < 220 ? CLNORM_F16 : v < 240 ? CLNORM_BF16
                                                                                 : (clnorm_dtype)(v % 2 ? 4 : -1);
    v            = u8(r);
    c->d.epsilon = v < 208 ? 1e-5 * (1 + v % 5) : special_eps[v % (sizeof special_eps / sizeof *special_eps)];
    v            = u8(r);
    c->d.exp_avg_factor = v < 208 ? (v % 11) / 10.0 : special_f[v % (sizeof special_f / sizeof *special_f)];
    c->d.unbiased_running_var = u8(r) & 1;
    for (int s = 0; s < NSLOT; ++s) {
        v          = u8(r);
        c->slot[s] = v < 176 ? B_EXACT : (int)(1 + v % 7);
    }
    v          = u8(r);
    c->ws_kind = v < 160 ? 0 : (int)(1 + v % 5);
    v          = u8(r);
    c->queue_kind = v < 240 ? 0 : (int)(1 + v % 2);
    v             = u8(r);
    c->wait_kind  = v < 232 ? 0 : (int)(1 + v % 4);
    v             = u8(r);
    c->ctx_null   = v == 255;
    c->desc_null  = v == 254;
    c->args_null  = v == 253;
    c->bytes_null = v == 252;
    for (int i = 0; i < 8; ++i)
        c->seed = c->seed * 257 + u8(r);
}

/* ---- the model of the rules ------------------------------------------------ */

typedef struct model {
    clnorm_status allowed[64];
    int           n;
    int           ws_only; /* every broken rule is about the caller's workspace */
    int           shape_ok;
    size_t        O, C, I, total, esize, psize;
} model;

static void breaks(model *m, clnorm_status st, int workspace_rule)
{
    if (m->n < 64)
        m->allowed[m->n++] = st;
    if (!workspace_rule)
        m->ws_only = 0;
}

static int mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

/* The shape rules; fills O, C, I when the shape is usable. */
static void model_desc(const call *c, model *m)
{
    const clnorm_bn_desc *d = &c->d;
    int mode_ok = d->mode == CLNORM_BN_SPATIAL || d->mode == CLNORM_BN_PER_ACTIVATION;
    int lay_ok  = d->layout == CLNORM_NCHW || d->layout == CLNORM_NHWC;
    if (!mode_ok)
        breaks(m, CLNORM_ERROR_INVALID_MODE, 0);
    if (!lay_ok)
        breaks(m, CLNORM_ERROR_INVALID_LAYOUT, 0);
    int dtype_ok = d->dtype == CLNORM_F32 || d->dtype == CLNORM_F16 || d->dtype == CLNORM_BF16 ||
                   d->dtype == CLNORM_F64;
    if (!dtype_ok)
        breaks(m, CLNORM_ERROR_INVALID_DTYPE, 0);
    else if (d->dtype == CLNORM_F64 && !has_fp64)
        breaks(m, CLNORM_ERROR_UNSUPPORTED_DTYPE, 0);
    if (!(d->epsilon > 0) || !isfinite(d->epsilon))
        breaks(m, CLNORM_ERROR_INVALID_EPSILON, 0);
    if (d->ndim < 2 || d->ndim > CLNORM_MAX_DIMS) {
        breaks(m, CLNORM_ERROR_INVALID_SHAPE, 0);
        return;
    }
    size_t nonzero = 1, total = 1;
    int    zero = 0, ovf = 0;
    for (size_t i = 0; i < d->ndim; ++i) {
        if (d->dims[i] == 0)
            zero = 1;
        else if (!mul_ok(nonzero, d->dims[i], &nonzero))
            ovf = 1;
    }
    if (zero)
        breaks(m, CLNORM_ERROR_INVALID_SHAPE, 0);
    if (ovf)
        breaks(m, CLNORM_ERROR_SIZE_OVERFLOW, 0);
    if (zero || ovf || !mode_ok || !lay_ok || !dtype_ok)
        return;
    total = nonzero;
    size_t O, C, I = 1;
    if (d->mode == CLNORM_BN_PER_ACTIVATION) {
        O = d->dims[0];
        C = total / O;
    } else if (d->layout == CLNORM_NCHW) {
        O = d->dims[0];
        C = d->dims[1];
        I = total / (O * C);
    } else {
        C = d->dims[d->ndim - 1];
        O = total / C;
    }
    const size_t lim = (size_t)1 << 32;
    if (O >= lim || C >= lim || I >= lim || C * I >= lim || total > ((size_t)1 << 49)) {
        breaks(m, CLNORM_ERROR_SIZE_OVERFLOW, 0);
        return;
    }
    m->shape_ok = 1;
    m->O        = O;
    m->C        = C;
    m->I        = I;
    m->total    = total;
    m->esize    = d->dtype == CLNORM_F64 ? 8 : d->dtype == CLNORM_F32 ? 4 : 2;
    m->psize    = d->dtype == CLNORM_F64 ? 8 : 4;
}

/* ---- buffers ------------------------------------------------------------------ */

typedef struct slotbuf {
    cl_mem         mem;    /* NULL when absent */
    size_t         offset; /* elements */
    size_t         bytes;  /* allocated (ours only) */
    int            ours;
    unsigned char *init;
} slotbuf;

static size_t slot_count(const model *m, int s)
{
    return (s <= S_DX) ? m->total : m->C;
}

static size_t slot_esize(const model *m, int s) { return s <= S_DX ? m->esize : m->psize; }

static void fill_bytes(unsigned char *p, size_t n, uint64_t *st, int s, const model *m, size_t off)
{
    /* values: inputs in a sane range; statistics positive where they must be */
    size_t es = slot_esize(m, s);
    for (size_t i = 0; i < n / (es ? es : 1); ++i) {
        *st ^= *st << 13;
        *st ^= *st >> 7;
        *st ^= *st << 17;
        double u = (double)(*st >> 11) / 9007199254740992.0;
        double v = (s == S_SI || s == S_RV) ? 0.25 + 2 * u : (s == S_G ? 0.5 + u : 4 * u - 2);
        (void)off;
        if (es == 8) {
            memcpy(p + i * 8, &v, 8);
        } else if (es == 4) {
            float f = (float)v;
            memcpy(p + i * 4, &f, 4);
        } else {
            /* half or bfloat16: take the top 16 bits of the float (bf16),
             * which as half is some finite or non-finite value: the checks
             * here are about statuses only */
            float    f = (float)v;
            uint32_t b;
            memcpy(&b, &f, 4);
            uint16_t h = (uint16_t)(b >> 16);
            memcpy(p + i * 2, &h, 2);
        }
    }
    for (size_t i = (n / (es ? es : 1)) * es; i < n; ++i)
        p[i] = 0;
}

static void make_slot(const call *c, const model *m, int s, slotbuf *b, uint64_t *st, model *mm)
{
    memset(b, 0, sizeof *b);
    int kind = c->slot[s];
    if (kind == B_ABSENT)
        return;
    if (kind == B_FOREIGN) {
        b->mem = other_mem;
        return;
    }
    size_t es = m->shape_ok ? slot_esize(m, s) : 4;
    size_t n  = m->shape_ok && m->total <= MAX_ELEMS ? slot_count(m, s) : 16;
    size_t elems = n;
    switch (kind) {
    case B_SHORT: elems = n > 1 ? n - 1 : 0; break;
    case B_OFFSET1: b->offset = 1; break;
    case B_OFFSET2_OK: b->offset = 2; elems = n + 2; break;
    case B_OFFSET_HUGE: b->offset = SIZE_MAX; break;
    case B_OFFSET_OVF: b->offset = SIZE_MAX / 4; break;
    default: break;
    }
    b->bytes = elems > 0 ? elems * es : 1;
    b->init  = malloc(b->bytes);
    if (!b->init)
        die("malloc");
    fill_bytes(b->init, b->bytes, st, s, m->shape_ok ? m : mm, b->offset);
    cl_int err;
    b->mem  = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, b->bytes, b->init, &err);
    b->ours = 1;
    if (err != CL_SUCCESS)
        die("clCreateBuffer");
}

/* The buffer rules for a slot the op checks. */
static void model_slot(const call *c, model *m, int s, const slotbuf *b, int required)
{
    (void)c;
    if (!b->mem) {
        if (required)
            breaks(m, CLNORM_ERROR_NULL_ARGUMENT, 0);
        return;
    }
    if (!b->ours) {
        breaks(m, CLNORM_ERROR_INVALID_BUFFER, 0);
        return;
    }
    size_t count = slot_count(m, s), es = slot_esize(m, s), need, bytes;
    if (b->offset > SIZE_MAX - count || !mul_ok(b->offset + count, es, &bytes)) {
        breaks(m, CLNORM_ERROR_SIZE_OVERFLOW, 0);
        return;
    }
    need = bytes;
    if (need > b->bytes)
        breaks(m, CLNORM_ERROR_BUFFER_TOO_SMALL, 0);
}

/* ---- the reference ------------------------------------------------------------ */

static double *to_doubles(const slotbuf *b, const model *m, int s)
{
    size_t  n  = slot_count(m, s), es = slot_esize(m, s);
    double *out = malloc((n ? n : 1) * sizeof *out);
    if (!out)
        die("malloc");
    for (size_t i = 0; i < n; ++i) {
        const unsigned char *p = b->init + (b->offset + i) * es;
        if (es == 8) {
            memcpy(&out[i], p, 8);
        } else {
            float f;
            memcpy(&f, p, 4);
            out[i] = f;
        }
    }
    return out;
}

static double *read_doubles(const slotbuf *b, const model *m, int s)
{
    size_t         n = slot_count(m, s), es = slot_esize(m, s);
    unsigned char *raw = malloc(n * es);
    double        *out = malloc((n ? n : 1) * sizeof *out);
    if (!raw || !out)
        die("malloc");
    if (clEnqueueReadBuffer(q, b->mem, CL_TRUE, b->offset * es, n * es, raw, 0, NULL, NULL) != CL_SUCCESS)
        die("read");
    for (size_t i = 0; i < n; ++i) {
        if (es == 8) {
            memcpy(&out[i], raw + i * 8, 8);
        } else {
            float f;
            memcpy(&f, raw + i * 4, 4);
            out[i] = f;
        }
    }
    free(raw);
    return out;
}

static void fail_call(const call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_call(const call *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_bn_args: %s, mode %d layout %d dtype %d ndim %zu dims", op_names[c->op],
            (int)c->d.mode, (int)c->d.layout, (int)c->d.dtype, c->d.ndim);
    for (size_t i = 0; i < c->d.ndim && i < CLNORM_MAX_DIMS; ++i)
        fprintf(stderr, " %zu", c->d.dims[i]);
    fprintf(stderr, " eps %g f %g unbiased %d slots", c->d.epsilon, c->d.exp_avg_factor,
            c->d.unbiased_running_var);
    for (int s = 0; s < NSLOT; ++s)
        fprintf(stderr, " %s=%d", slot_names[s], c->slot[s]);
    fprintf(stderr, " ws %d queue %d wait %d ctxnull %d descnull %d argsnull %d\n  ", c->ws_kind,
            c->queue_kind, c->wait_kind, c->ctx_null, c->desc_null, c->args_null);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  last error: %s\n", clnorm_last_error(c->ctx_null ? NULL : ctx));
    abort();
}

/* Normwise: max |got - want| over max(max |want|, 1). */
static void compare(const call *c, const char *what, const double *got, const double *want, size_t n,
                    double tol)
{
    double scale = 1, err = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; ++i) {
        if (fabs(want[i]) > scale)
            scale = fabs(want[i]);
        double e = fabs(got[i] - want[i]);
        if (isnan(got[i]) != isnan(want[i]) || e > err) {
            err   = isnan(e) ? INFINITY : e;
            worst = i;
        }
    }
    if (!(err / scale <= tol))
        fail_call(c, "%s differs from the reference: normwise %.3g at %zu (got %.9g, want %.9g), tol %.1g", what,
                  err / scale, worst, got[worst], want[worst], tol);
}

static void check_results(const call *c, const model *m, slotbuf *b)
{
    ref_view v   = {m->O, m->C, m->I};
    size_t   n   = m->total, C = m->C;
    double   tol = c->d.dtype == CLNORM_F64 ? 1e-9 : 2e-3;
    double  *x   = b[S_X].mem && (c->op != OP_BF || b[S_DG].mem) ? to_doubles(&b[S_X], m, S_X) : NULL;
    double  *g   = b[S_G].mem ? to_doubles(&b[S_G], m, S_G) : NULL;
    /* only what the op reads: an ignored slot may hold anything */
    double  *be  = b[S_B].mem && use_of[c->op][S_B] != '.' ? to_doubles(&b[S_B], m, S_B) : NULL;
    double   eps = c->d.epsilon;
    if (c->d.dtype == CLNORM_F32)
        eps = (float)eps; /* what the kernels add */
    if (c->op == OP_FT) {
        double *y = calloc(n, sizeof *y), *mean = calloc(C, 8), *inv = calloc(C, 8);
        double *rm = b[S_RM].mem ? to_doubles(&b[S_RM], m, S_RM) : NULL;
        double *rv = b[S_RV].mem ? to_doubles(&b[S_RV], m, S_RV) : NULL;
        ref_bn_forward_training(v, x, g, be, eps, c->d.exp_avg_factor, c->d.unbiased_running_var, y, mean, inv,
                                rm, rv);
        double *gy = read_doubles(&b[S_Y], m, S_Y);
        compare(c, "y", gy, y, n, tol);
        free(gy);
        if (b[S_SM].mem) {
            double *t = read_doubles(&b[S_SM], m, S_SM);
            compare(c, "saved_mean", t, mean, C, tol);
            free(t);
        }
        if (b[S_SI].mem) {
            double *t = read_doubles(&b[S_SI], m, S_SI);
            compare(c, "saved_invstd", t, inv, C, tol);
            free(t);
        }
        if (rm) {
            double *t = read_doubles(&b[S_RM], m, S_RM);
            compare(c, "running_mean", t, rm, C, tol);
            free(t);
        }
        if (rv) {
            double *t = read_doubles(&b[S_RV], m, S_RV);
            compare(c, "running_var", t, rv, C, tol);
            free(t);
        }
        free(y);
        free(mean);
        free(inv);
        free(rm);
        free(rv);
    } else if (c->op == OP_FI) {
        double *y  = calloc(n, sizeof *y);
        double *rm = to_doubles(&b[S_RM], m, S_RM), *rv = to_doubles(&b[S_RV], m, S_RV);
        ref_bn_forward_inference(v, x, g, be, rm, rv, eps, y);
        double *gy = read_doubles(&b[S_Y], m, S_Y);
        compare(c, "y", gy, y, n, tol);
        free(gy);
        free(y);
        free(rm);
        free(rv);
    } else {
        double *dy = to_doubles(&b[S_DY], m, S_DY);
        double *dx = calloc(n, sizeof *dx), *dg = calloc(C, 8), *db = calloc(C, 8);
        if (c->op == OP_BW) {
            double *sm = to_doubles(&b[S_SM], m, S_SM), *si = to_doubles(&b[S_SI], m, S_SI);
            ref_bn_backward(v, x, dy, g, sm, si, dx, dg, db);
            free(sm);
            free(si);
        } else {
            double *rm = to_doubles(&b[S_RM], m, S_RM), *rv = to_doubles(&b[S_RV], m, S_RV);
            double *xx = x ? x : calloc(n, sizeof *xx);
            ref_bn_backward_frozen(v, xx, dy, g, rm, rv, eps, dx, dg, db);
            if (!x)
                free(xx);
            free(rm);
            free(rv);
        }
        double *t = read_doubles(&b[S_DX], m, S_DX);
        compare(c, "dx", t, dx, n, tol);
        free(t);
        if (b[S_DG].mem) {
            t = read_doubles(&b[S_DG], m, S_DG);
            compare(c, "dgamma", t, dg, C, tol);
            free(t);
        }
        if (b[S_DB].mem) {
            t = read_doubles(&b[S_DB], m, S_DB);
            compare(c, "dbeta", t, db, C, tol);
            free(t);
        }
        free(dy);
        free(dx);
        free(dg);
        free(db);
    }
    free(x);
    free(g);
    free(be);
}

/* ---- one input ------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    call   c;
    decode(&r, &c);
    model m;
    memset(&m, 0, sizeof m);
    m.ws_only = 1;
    uint64_t st = c.seed | 1;

    /* context, descriptor and, for the enqueue calls, queue and wait list */
    if (c.ctx_null)
        breaks(&m, CLNORM_ERROR_NULL_CONTEXT, 0);
    if (c.desc_null)
        breaks(&m, CLNORM_ERROR_NULL_ARGUMENT, 0);
    else
        model_desc(&c, &m);
    int      enq = c.op != OP_WS;
    cl_event user = NULL, waits[2] = {NULL, NULL};
    cl_uint  nwait = 0;
    const cl_event *wait = NULL;
    cl_command_queue queue = q;
    if (enq) {
        if (c.args_null)
            breaks(&m, CLNORM_ERROR_NULL_ARGUMENT, 0);
        if (c.queue_kind == 1) {
            queue = NULL;
            breaks(&m, CLNORM_ERROR_NULL_ARGUMENT, 0);
        } else if (c.queue_kind == 2) {
            queue = other_q;
            breaks(&m, CLNORM_ERROR_INVALID_QUEUE, 0);
        }
        if (c.wait_kind) {
            cl_int err;
            user = clCreateUserEvent(cl, &err);
            clSetUserEventStatus(user, CL_COMPLETE);
            waits[0] = user;
            wait     = waits;
            nwait    = c.wait_kind == 1 ? 1 : c.wait_kind == 2 ? 0 : c.wait_kind == 3 ? 2 : 1;
            if (c.wait_kind == 1)
                wait = NULL;
            if (c.wait_kind != 4)
                breaks(&m, CLNORM_ERROR_INVALID_WAIT_LIST, 0);
        }
        if (c.op == OP_FT && !(c.d.exp_avg_factor >= 0 && c.d.exp_avg_factor <= 1))
            breaks(&m, CLNORM_ERROR_INVALID_MOMENTUM, 0);
    } else if (c.bytes_null) {
        breaks(&m, CLNORM_ERROR_NULL_ARGUMENT, 0);
    }

    /* buffers (also for an unusable shape: token sizes) */
    model   tokens = m;
    slotbuf b[NSLOT];
    tokens.esize = tokens.psize = 4;
    tokens.total = tokens.C = 16;
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    clnorm_buffer *fields[NSLOT] = {&a.x,      &a.y,     &a.dy,         &a.dx,
                                    &a.gamma,  &a.beta,  &a.dgamma,     &a.dbeta,
                                    &a.saved_mean, &a.saved_invstd, &a.running_mean, &a.running_var};
    for (int s = 0; s < NSLOT; ++s) {
        make_slot(&c, &m, s, &b[s], &st, &tokens);
        *fields[s] = clnorm_buf(b[s].mem, b[s].offset);
    }
    if (enq && !c.args_null && !c.desc_null && m.shape_ok) {
        const char *u = use_of[c.op];
        for (int s = 0; s < NSLOT; ++s) {
            char k = u[s];
            if (c.op == OP_BF && s == S_X)
                k = b[S_DG].mem ? 'R' : 'O';
            if (k != '.')
                model_slot(&c, &m, s, &b[s], k == 'R');
        }
        if (c.op == OP_FT && b[S_RV].mem && c.d.unbiased_running_var && m.O * m.I == 1)
            breaks(&m, CLNORM_ERROR_INVALID_SHAPE, 0);
    }

    /* workspace */
    slotbuf ws;
    memset(&ws, 0, sizeof ws);
    size_t ws_need = 0;
    if (enq && c.ws_kind && m.shape_ok && !c.desc_null &&
        clnorm_bn_workspace_size(ctx, &c.d, &ws_need) == CLNORM_SUCCESS && ws_need <= ((size_t)16 << 20)) {
        size_t bytes = ws_need, off = 0;
        switch (c.ws_kind) {
        case 2: bytes = ws_need ? ws_need - 1 : 0; breaks(&m, CLNORM_ERROR_BUFFER_TOO_SMALL, 1); break;
        case 3: off = 64; bytes += 64; breaks(&m, CLNORM_ERROR_INVALID_ARGUMENT, 1); break;
        case 4: off = 128; bytes += 128; break;
        default: break;
        }
        if (c.ws_kind == 5) {
            ws.mem = other_mem;
            breaks(&m, CLNORM_ERROR_INVALID_BUFFER, 1);
        } else if (bytes > 0) {
            ws.bytes = bytes;
            ws.init  = calloc(1, bytes);
            cl_int err;
            ws.mem  = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, ws.init, &err);
            ws.ours = 1;
            if (err != CL_SUCCESS)
                die("workspace");
        }
        a.workspace = clnorm_buf(ws.mem, off);
    }

    /* the call */
    cl_event        sentinel = (cl_event)(uintptr_t)0x5eed, ev = sentinel;
    clnorm_context *cx       = c.ctx_null ? NULL : ctx;
    const clnorm_bn_desc *dp = c.desc_null ? NULL : &c.d;
    const clnorm_bn_args *ap = c.args_null ? NULL : &a;
    size_t          bytes_out = 0xabcdef;
    clnorm_status   got;
    switch (c.op) {
    case OP_FT: got = clnorm_bn_forward_training(cx, queue, dp, ap, nwait, wait, &ev); break;
    case OP_FI: got = clnorm_bn_forward_inference(cx, queue, dp, ap, nwait, wait, &ev); break;
    case OP_BW: got = clnorm_bn_backward(cx, queue, dp, ap, nwait, wait, &ev); break;
    case OP_BF: got = clnorm_bn_backward_frozen(cx, queue, dp, ap, nwait, wait, &ev); break;
    default: got = clnorm_bn_workspace_size(cx, dp, c.bytes_null ? NULL : &bytes_out); break;
    }

    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_bn_args: %s -> %s (%d rule(s) broken)\n", op_names[c.op], clnorm_status_name(got),
                m.n);

    /* the verdict */
    int ok = 0;
    if (m.n == 0)
        ok = got == CLNORM_SUCCESS;
    else if (got == CLNORM_SUCCESS)
        ok = m.ws_only; /* a workspace this call does not need may be ignored */
    else
        for (int i = 0; i < m.n; ++i)
            ok |= got == m.allowed[i];
    if (!ok) {
        char list[512] = "";
        for (int i = 0; i < m.n; ++i) {
            strncat(list, " ", sizeof list - strlen(list) - 1);
            strncat(list, clnorm_status_name(m.allowed[i]), sizeof list - strlen(list) - 1);
        }
        fail_call(&c, "status %s, expected %s", clnorm_status_name(got), m.n ? list : "CLNORM_SUCCESS");
    }
    if (got != CLNORM_SUCCESS && enq && ev != sentinel)
        fail_call(&c, "a failed call wrote the event");
    if (got == CLNORM_SUCCESS && enq) {
        if (ev == sentinel || ev == NULL)
            fail_call(&c, "no event");
        clWaitForEvents(1, &ev);
        clReleaseEvent(ev);
    }
    if (c.op == OP_WS && got != CLNORM_SUCCESS && bytes_out != 0xabcdef)
        fail_call(&c, "a failed workspace query wrote bytes");
    clFinish(q);

    /* what the buffers hold */
    for (int s = 0; s < NSLOT; ++s) {
        if (!b[s].ours)
            continue;
        int may_write = got == CLNORM_SUCCESS && writes[c.op][s] == 'W';
        if (may_write)
            continue;
        unsigned char *now = malloc(b[s].bytes);
        if (!now)
            die("malloc");
        clEnqueueReadBuffer(q, b[s].mem, CL_TRUE, 0, b[s].bytes, now, 0, NULL, NULL);
        if (memcmp(now, b[s].init, b[s].bytes) != 0)
            fail_call(&c, "%s changed by a %s call", slot_names[s], got == CLNORM_SUCCESS ? "successful" : "failed");
        free(now);
    }
    if (got == CLNORM_SUCCESS && enq && m.shape_ok && m.total <= MAX_ELEMS &&
        (c.d.dtype == CLNORM_F32 || c.d.dtype == CLNORM_F64))
        check_results(&c, &m, b);

    for (int s = 0; s < NSLOT; ++s)
        if (b[s].ours) {
            clReleaseMemObject(b[s].mem);
            free(b[s].init);
        }
    if (ws.ours) {
        clReleaseMemObject(ws.mem);
        free(ws.init);
    }
    if (user)
        clReleaseEvent(user);
    return 0;
}
