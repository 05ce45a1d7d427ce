/* test_fault.c: fault injection. For every OpenCL call the library makes in a
 * full run (context creation, forward training, inference, backward, frozen
 * backward, destroy), the shim (clfault.c) makes exactly that call fail, and
 * the test checks: the library call returns an error status (or, when it
 * absorbed the fault, success with bit-identical outputs); nothing leaks once
 * the context is destroyed; the same call succeeds on the same context when
 * faults are off, with the outputs of an unfaulted run. Faults are armed only
 * around library calls, so the test's own OpenCL calls are never hit. */
#include "clfault.h"
#include "clnorm/clnorm.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the suites ------------------------------------------------------------ */

/* A suite is a set of buffers and a sequence of library calls on them; each
 * call lists the buffers it writes. Calls later in the sequence read what
 * earlier ones wrote, so each call's outputs are compared bit for bit with an
 * unfaulted run before the next one starts. */
#define MAXBUF 32
#define MAXOPS 8

enum fill { F_DATA, F_SMALL, F_POSITIVE, F_GAMMA, F_SENTINEL };

typedef struct suite suite;
typedef clnorm_status (*op_fn)(const suite *s, int op, clnorm_context *ctx, cl_command_queue q, cl_mem *m,
                               cl_event *ev);

typedef struct op_def {
    const char *name;
    op_fn       fn;
    int         outputs[8]; /* -1 terminated */
} op_def;

struct suite {
    const char           *name;
    int                   nbuf, nops;
    size_t                len[MAXBUF];
    enum fill             fill[MAXBUF];
    op_def                ops[MAXOPS];
    clnorm_bn_desc        bn;
    clnorm_norm_desc      nd;
    clnorm_groupnorm_desc gd;
};

/* -- batch norm: forward training, inference, backward, frozen backward -- */

enum { B_X, B_DY, B_G, B_B, B_RM, B_RV, B_Y, B_SM, B_SI, B_Y2, B_DX, B_DG, B_DB, B_DX2, B_DG2, B_DB2, NBN };

static clnorm_status bn_call(const suite *s, int op, clnorm_context *ctx, cl_command_queue q, cl_mem *m,
                             cl_event *ev)
{
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x     = clnorm_buf(m[B_X], 0);
    a.gamma = clnorm_buf(m[B_G], 0);
    switch (op) {
    case 0:
        a.y            = clnorm_buf(m[B_Y], 0);
        a.beta         = clnorm_buf(m[B_B], 0);
        a.saved_mean   = clnorm_buf(m[B_SM], 0);
        a.saved_invstd = clnorm_buf(m[B_SI], 0);
        a.running_mean = clnorm_buf(m[B_RM], 0);
        a.running_var  = clnorm_buf(m[B_RV], 0);
        return clnorm_bn_forward_training(ctx, q, &s->bn, &a, 0, NULL, ev);
    case 1:
        a.y            = clnorm_buf(m[B_Y2], 0);
        a.beta         = clnorm_buf(m[B_B], 0);
        a.running_mean = clnorm_buf(m[B_RM], 0);
        a.running_var  = clnorm_buf(m[B_RV], 0);
        return clnorm_bn_forward_inference(ctx, q, &s->bn, &a, 0, NULL, ev);
    case 2:
        a.dy           = clnorm_buf(m[B_DY], 0);
        a.dx           = clnorm_buf(m[B_DX], 0);
        a.dgamma       = clnorm_buf(m[B_DG], 0);
        a.dbeta        = clnorm_buf(m[B_DB], 0);
        a.saved_mean   = clnorm_buf(m[B_SM], 0);
        a.saved_invstd = clnorm_buf(m[B_SI], 0);
        return clnorm_bn_backward(ctx, q, &s->bn, &a, 0, NULL, ev);
    default:
        a.dy           = clnorm_buf(m[B_DY], 0);
        a.dx           = clnorm_buf(m[B_DX2], 0);
        a.dgamma       = clnorm_buf(m[B_DG2], 0);
        a.dbeta        = clnorm_buf(m[B_DB2], 0);
        a.running_mean = clnorm_buf(m[B_RM], 0);
        a.running_var  = clnorm_buf(m[B_RV], 0);
        return clnorm_bn_backward_frozen(ctx, q, &s->bn, &a, 0, NULL, ev);
    }
}

static void bn_suite(suite *s, const char *name, clnorm_bn_mode mode, clnorm_layout layout, size_t ndim,
                     const size_t *dims)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    cr_assert_eq(clnorm_bn_desc_init(&s->bn, mode, layout, ndim, dims), CLNORM_SUCCESS);
    s->bn.exp_avg_factor = 0.25;
    size_t n = 1;
    for (size_t i = 0; i < ndim; ++i)
        n *= dims[i];
    size_t C = mode == CLNORM_BN_PER_ACTIVATION ? n / dims[0] : layout == CLNORM_NCHW ? dims[1] : dims[ndim - 1];
    s->nbuf = NBN;
    for (int b = 0; b < NBN; ++b) {
        int tensor = b == B_X || b == B_DY || b == B_Y || b == B_Y2 || b == B_DX || b == B_DX2;
        s->len[b]  = tensor ? n : C;
        s->fill[b] = b == B_X ? F_DATA : b == B_DY ? F_SMALL : b == B_G ? F_GAMMA : b == B_RV ? F_POSITIVE
                   : (b == B_B || b == B_RM) ? F_SMALL : F_SENTINEL;
    }
    s->nops   = 4;
    s->ops[0] = (op_def){"bn_forward_training", bn_call, {B_Y, B_SM, B_SI, B_RM, B_RV, -1}};
    s->ops[1] = (op_def){"bn_forward_inference", bn_call, {B_Y2, -1}};
    s->ops[2] = (op_def){"bn_backward", bn_call, {B_DX, B_DG, B_DB, -1}};
    s->ops[3] = (op_def){"bn_backward_frozen", bn_call, {B_DX2, B_DG2, B_DB2, -1}};
}

/* -- the family: layer, RMS, group and instance norm, forward and backward -- */

enum {
    R_X, R_DY, R_GL, R_BL, R_GC, R_BC,
    R_LY, R_LM, R_LI, R_LDX, R_LDG, R_LDB,
    R_RY, R_RI, R_RDX, R_RDG,
    R_GY, R_GM, R_GI, R_GDX, R_GDG, R_GDB,
    R_IY, R_IM, R_II, R_IDX, R_IDG, R_IDB,
    NFAM
};

static clnorm_status family_call(const suite *s, int op, clnorm_context *ctx, cl_command_queue q, cl_mem *m,
                                 cl_event *ev)
{
    clnorm_norm_args a;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(m[R_X], 0);
    int row = op < 4, gn = op == 4 || op == 5;
    a.gamma = clnorm_buf(m[row ? R_GL : R_GC], 0);
    if (op != 2 && op != 3)
        a.beta = clnorm_buf(m[row ? R_BL : R_BC], 0);
    /* (y, mean, invstd, dx, dgamma, dbeta) of each op pair */
    static const int bufs[4][6] = {{R_LY, R_LM, R_LI, R_LDX, R_LDG, R_LDB},
                                   {R_RY, -1, R_RI, R_RDX, R_RDG, -1},
                                   {R_GY, R_GM, R_GI, R_GDX, R_GDG, R_GDB},
                                   {R_IY, R_IM, R_II, R_IDX, R_IDG, R_IDB}};
    const int *b = bufs[op / 2];
    if (b[1] >= 0)
        a.mean = clnorm_buf(m[b[1]], 0);
    a.invstd = clnorm_buf(m[b[2]], 0);
    if (op % 2 == 0) {
        a.y = clnorm_buf(m[b[0]], 0);
    } else {
        a.dy     = clnorm_buf(m[R_DY], 0);
        a.dx     = clnorm_buf(m[b[3]], 0);
        a.dgamma = clnorm_buf(m[b[4]], 0);
        if (b[5] >= 0)
            a.dbeta = clnorm_buf(m[b[5]], 0);
    }
    (void)gn;
    switch (op) {
    case 0: return clnorm_layernorm_forward(ctx, q, &s->nd, &a, 0, NULL, ev);
    case 1: return clnorm_layernorm_backward(ctx, q, &s->nd, &a, 0, NULL, ev);
    case 2: return clnorm_rmsnorm_forward(ctx, q, &s->nd, &a, 0, NULL, ev);
    case 3: return clnorm_rmsnorm_backward(ctx, q, &s->nd, &a, 0, NULL, ev);
    case 4: return clnorm_groupnorm_forward(ctx, q, &s->gd, &a, 0, NULL, ev);
    case 5: return clnorm_groupnorm_backward(ctx, q, &s->gd, &a, 0, NULL, ev);
    case 6: return clnorm_instancenorm_forward(ctx, q, &s->gd, &a, 0, NULL, ev);
    default: return clnorm_instancenorm_backward(ctx, q, &s->gd, &a, 0, NULL, ev);
    }
}

/* (N, C, H, W) = (2, 4, 3, 5): layer/RMS norm over everything after N (2
 * rows of 60), group norm in 2 groups, instance norm. */
static void family_suite(suite *s, clnorm_layout layout)
{
    memset(s, 0, sizeof *s);
    s->name = layout == CLNORM_NCHW ? "family NCHW 2x4x3x5" : "family NHWC 2x3x5x4";
    const size_t nchw[4] = {2, 4, 3, 5}, nhwc[4] = {2, 3, 5, 4};
    const size_t *dims = layout == CLNORM_NCHW ? nchw : nhwc;
    cr_assert_eq(clnorm_norm_desc_init(&s->nd, 4, dims, 1), CLNORM_SUCCESS);
    cr_assert_eq(clnorm_groupnorm_desc_init(&s->gd, layout, 4, dims, 2), CLNORM_SUCCESS);
    const size_t n = 120, L = 60, rows = 2, C = 4, NG = 4, NC = 8;
    s->nbuf = NFAM;
    for (int b = 0; b < NFAM; ++b) {
        s->fill[b] = F_SENTINEL;
        s->len[b]  = n;
    }
    s->fill[R_X]  = F_DATA;
    s->fill[R_DY] = F_SMALL;
    s->fill[R_GL] = s->fill[R_GC] = F_GAMMA;
    s->fill[R_BL] = s->fill[R_BC] = F_SMALL;
    s->len[R_GL] = s->len[R_BL] = s->len[R_LDG] = s->len[R_LDB] = s->len[R_RDG] = L;
    s->len[R_GC] = s->len[R_BC] = s->len[R_GDG] = s->len[R_GDB] = s->len[R_IDG] = s->len[R_IDB] = C;
    s->len[R_LM] = s->len[R_LI] = s->len[R_RI] = rows;
    s->len[R_GM] = s->len[R_GI] = NG;
    s->len[R_IM] = s->len[R_II] = NC;
    s->nops   = 8;
    s->ops[0] = (op_def){"layernorm_forward", family_call, {R_LY, R_LM, R_LI, -1}};
    s->ops[1] = (op_def){"layernorm_backward", family_call, {R_LDX, R_LDG, R_LDB, -1}};
    s->ops[2] = (op_def){"rmsnorm_forward", family_call, {R_RY, R_RI, -1}};
    s->ops[3] = (op_def){"rmsnorm_backward", family_call, {R_RDX, R_RDG, -1}};
    s->ops[4] = (op_def){"groupnorm_forward", family_call, {R_GY, R_GM, R_GI, -1}};
    s->ops[5] = (op_def){"groupnorm_backward", family_call, {R_GDX, R_GDG, R_GDB, -1}};
    s->ops[6] = (op_def){"instancenorm_forward", family_call, {R_IY, R_IM, R_II, -1}};
    s->ops[7] = (op_def){"instancenorm_backward", family_call, {R_IDX, R_IDG, R_IDB, -1}};
}

/* ---- the run ----------------------------------------------------------------- */

typedef struct run_opts {
    int ooo;        /* an out-of-order queue made by the test instead of the context's */
    int want_event; /* ask for the output event */
    int sticky;     /* every call from the k-th on fails */
} run_opts;

/* Host data and the outputs of the unfaulted run. */
static struct {
    const suite *s;
    float       *init[MAXBUF]; /* initial contents (sentinel for outputs) */
    float       *ref[MAXBUF];  /* after the unfaulted run */
    long         ncalls;       /* eligible calls in the unfaulted run */
} G;

/* What the sweep saw. */
typedef struct sweep_stats {
    long points, errors, absorbed, create_errors, partial_writes;
    char surfaced[4096]; /* "function->status" pairs seen */
    char partial[2048];  /* "op:function" pairs that left partial results */
} sweep_stats;

static float sentinel(void)
{
    uint32_t u = 0x7fc0deadu; /* a quiet NaN with a payload no kernel produces */
    float    f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void setup_host(const suite *s)
{
    memset(&G, 0, sizeof G);
    G.s        = s;
    uint64_t r = 0x9e3779b97f4a7c15ULL;
    for (int b = 0; b < s->nbuf; ++b) {
        G.init[b] = malloc(s->len[b] * sizeof(float));
        G.ref[b]  = malloc(s->len[b] * sizeof(float));
        cr_assert(G.init[b] && G.ref[b]);
        for (size_t i = 0; i < s->len[b]; ++i) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            float u = (float)((r >> 11) * (1.0 / 9007199254740992.0)); /* [0, 1) */
            switch (s->fill[b]) {
            case F_DATA: G.init[b][i] = 3.0f + 4.0f * u; break;
            case F_SMALL: G.init[b][i] = u - 0.5f; break;
            case F_GAMMA: G.init[b][i] = 0.5f + u; break;
            case F_POSITIVE: G.init[b][i] = 0.5f + u; break;
            default: G.init[b][i] = sentinel(); break;
            }
        }
    }
}

static void free_host(void)
{
    for (int b = 0; b < G.s->nbuf; ++b) {
        free(G.init[b]);
        free(G.ref[b]);
    }
}

static void write_buf(cl_command_queue q, cl_mem m, const float *src, size_t len)
{
    cl_int err = clEnqueueWriteBuffer(q, m, CL_TRUE, 0, len * sizeof(float), src, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS, "clEnqueueWriteBuffer: %d", err);
}

static void read_buf(cl_command_queue q, cl_mem m, float *dst, size_t len)
{
    cl_int err = clEnqueueReadBuffer(q, m, CL_TRUE, 0, len * sizeof(float), dst, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS, "clEnqueueReadBuffer: %d", err);
}

static void live_snapshot(long *out)
{
    for (int k = 0; k < CLFAULT_KIND_COUNT; ++k)
        out[k] = clfault_live((enum clfault_kind)k);
}

static int expect_no_leak(const long *base, long k, const char *when)
{
    int ok = 1;
    for (int i = 0; i < CLFAULT_KIND_COUNT; ++i) {
        long now = clfault_live((enum clfault_kind)i);
        if (now != base[i]) {
            ok = 0;
            cr_expect_eq(now, base[i], "fault %ld (%s) %s: %ld %s reference(s) live, expected %ld", k,
                         clfault_call_name(k), when, now, clfault_kind_name((enum clfault_kind)i), base[i]);
        }
    }
    return ok;
}

static void note_surfaced(sweep_stats *s, const char *fn, clnorm_status st)
{
    char item[160];
    snprintf(item, sizeof item, " %s->%s", fn, st == CLNORM_SUCCESS ? "absorbed" : clnorm_status_name(st));
    if (!strstr(s->surfaced, item) && strlen(s->surfaced) + strlen(item) + 1 < sizeof s->surfaced)
        strcat(s->surfaced, item);
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* One full run with fault k (0: none, record the outputs as the reference).
 * Every op's outputs start as G.init, and the only op that updates one of its
 * inputs (batch norm's training forward: the running statistics) comes first,
 * so G.init is also the state to restore before retrying a failed op. */
static void run_once(long k, const run_opts *o, sweep_stats *s)
{
    long base[CLFAULT_KIND_COUNT];
    live_snapshot(base);
    clfault_arm(k, o->sticky);

    clnorm_context *ctx = NULL;
    clnorm_status   st  = clnorm_context_create_default(NULL, &ctx);
    clfault_pause();
    if (st != CLNORM_SUCCESS) {
        cr_expect(k > 0 && clfault_fired() > 0, "context creation failed without a fault: %s (%s)",
                  clnorm_status_name(st), clnorm_last_error(NULL));
        cr_expect(ctx == NULL, "fault %ld: ctx written on failure", k);
        cr_expect(clnorm_last_error(NULL)[0] != '\0', "fault %ld (%s): no message", k, clfault_fired_name());
        note_surfaced(s, clfault_fired_name(), st);
        s->errors++;
        s->create_errors++;
        clfault_disarm();
        expect_no_leak(base, k, "after failed context creation");
        /* creation works again once the fault is gone */
        clnorm_context *again = NULL;
        cr_expect_eq(clnorm_context_create_default(NULL, &again), CLNORM_SUCCESS,
                     "fault %ld: creation fails after the fault", k);
        clnorm_context_destroy(again);
        expect_no_leak(base, k, "after recreating the context");
        s->points++;
        return;
    }

    if (clfault_fired() > 0) { /* creation absorbed it (e.g. a device-type query in the default rule) */
        s->absorbed++;
        note_surfaced(s, clfault_fired_name(), CLNORM_SUCCESS);
    }
    cl_context       cl = clnorm_context_cl_context(ctx);
    cl_command_queue q  = clnorm_context_queue(ctx);
    cl_command_queue own = NULL;
    if (o->ooo) {
        cl_int err;
        own = clCreateCommandQueue(cl, clnorm_context_device(ctx), CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE,
                                   &err);
        cr_assert_eq(err, CL_SUCCESS, "out-of-order queue: %d", err);
        q = own;
    }
    const suite *su = G.s;
    cl_mem       m[MAXBUF];
    size_t       maxlen = 1;
    for (int b = 0; b < su->nbuf; ++b) {
        if (su->len[b] > maxlen)
            maxlen = su->len[b];
        cl_int err;
        m[b] = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, su->len[b] * sizeof(float), G.init[b],
                              &err);
        cr_assert_eq(err, CL_SUCCESS);
    }

    float *tmp = malloc(maxlen * sizeof *tmp);
    cr_assert_not_null(tmp);
    int failed_before = 0;
    for (int op = 0; op < su->nops; ++op) {
        const op_def *od = &su->ops[op];
        cl_event ev = (cl_event)(uintptr_t)0x5eed;
        long     fired_before = clfault_fired();
        clfault_resume();
        st = od->fn(su, op, ctx, q, m, o->want_event ? &ev : NULL);
        clfault_pause();
        int fired_here = clfault_fired() > fired_before;
        clFinish(q);
        if (st != CLNORM_SUCCESS) {
            cr_expect(k > 0 && fired_here, "fault %ld: %s failed without a fault here: %s (%s)", k,
                      od->name, clnorm_status_name(st), clnorm_last_error(ctx));
            cr_expect(clnorm_last_error(ctx)[0] != '\0', "fault %ld (%s): %s: empty last error", k,
                      clfault_fired_name(), od->name);
            cr_expect(strcmp(clnorm_status_string(st), "unknown status") != 0,
                      "fault %ld: status %d has no text", k, (int)st);
            if (o->want_event)
                cr_expect(ev == (cl_event)(uintptr_t)0x5eed || ev == NULL,
                          "fault %ld: %s wrote an event on failure", k, od->name);
            note_surfaced(s, clfault_fired_name(), st);
            s->errors++;
            /* Did the failed call leave partial results behind? */
            for (const int *b = od->outputs; *b >= 0; ++b) {
                read_buf(q, m[*b], tmp, su->len[*b]);
                if (!same_bits(tmp, G.init[*b], su->len[*b])) {
                    char item[160];
                    s->partial_writes++;
                    snprintf(item, sizeof item, " %s:%s", od->name, clfault_fired_name());
                    if (!strstr(s->partial, item) && strlen(s->partial) + strlen(item) + 1 < sizeof s->partial)
                        strcat(s->partial, item);
                    break;
                }
            }
            if (o->sticky) {
                failed_before = 1;
                continue;
            }
            /* the same call succeeds on the same context once the fault is gone,
             * from the state before the failed call */
            for (const int *b = od->outputs; *b >= 0; ++b)
                write_buf(q, m[*b], G.init[*b], su->len[*b]);
            ev = (cl_event)(uintptr_t)0x5eed;
            st = od->fn(su, op, ctx, q, m, o->want_event ? &ev : NULL);
            cr_expect_eq(st, CLNORM_SUCCESS, "fault %ld (%s): %s fails again without a fault: %s (%s)", k,
                         clfault_fired_name(), od->name, clnorm_status_name(st), clnorm_last_error(ctx));
            if (st != CLNORM_SUCCESS) {
                failed_before = 1;
                continue;
            }
        } else if (fired_here) {
            s->absorbed++;
            note_surfaced(s, clfault_fired_name(), st);
        }
        if (o->want_event) {
            cr_expect(ev != (cl_event)(uintptr_t)0x5eed && ev != NULL, "%s: no event returned", od->name);
            if (ev != (cl_event)(uintptr_t)0x5eed && ev != NULL) {
                cr_expect_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
                clReleaseEvent(ev);
            }
        }
        clFinish(q);
        if (failed_before)
            continue; /* later ops see different inputs; only leaks matter now */
        for (const int *b = od->outputs; *b >= 0; ++b) {
            read_buf(q, m[*b], tmp, su->len[*b]);
            if (k == 0)
                memcpy(G.ref[*b], tmp, su->len[*b] * sizeof *tmp);
            else
                cr_expect(same_bits(tmp, G.ref[*b], su->len[*b]),
                          "fault %ld (%s): %s output %d differs from the unfaulted run", k,
                          clfault_fired_name(), od->name, *b);
        }
    }
    free(tmp);
    if (k == 0)
        G.ncalls = clfault_calls();
    for (int b = 0; b < su->nbuf; ++b)
        clReleaseMemObject(m[b]);
    if (own)
        clReleaseCommandQueue(own);
    clnorm_context_destroy(ctx);
    if (k > 0 && k <= G.ncalls && !o->sticky)
        cr_expect(clfault_fired() == 1, "fault %ld: the fault did not fire exactly once (%ld)", k,
                  clfault_fired());
    clfault_disarm();
    expect_no_leak(base, k, "after clnorm_context_destroy");
    s->points++;
}

static void sweep(const suite *su, const run_opts *o, const char *label)
{
    setup_host(su);
    sweep_stats s;
    memset(&s, 0, sizeof s);
    run_opts plain = *o;
    plain.sticky   = 0;
    run_once(0, &plain, &s); /* warm-up: fills the program cache */
    run_once(0, &plain, &s); /* reference outputs, and the number of calls */
    if (getenv("CLFAULT_TRACE"))
        for (long k = 1; k <= G.ncalls; ++k)
            fprintf(stderr, "call %ld: %s\n", k, clfault_call_name(k));
    cr_assert_gt(G.ncalls, 10, "the shim saw only %ld OpenCL calls: is it interposed?", G.ncalls);
    for (int op = 0; op < su->nops; ++op)
        for (const int *b = su->ops[op].outputs; *b >= 0; ++b)
            for (size_t i = 0; i < su->len[*b]; ++i)
                cr_assert(!isnan(G.ref[*b][i]), "%s: unfaulted %s output %d[%zu] is NaN", label, su->ops[op].name,
                          *b, i);
    memset(&s, 0, sizeof s);
    for (long k = 1; k <= G.ncalls; ++k)
        run_once(k, o, &s);
    /* one past the last call: nothing fires, everything must match */
    run_once(G.ncalls + 1, &plain, &s);
    fprintf(stderr,
            "fault sweep %s, %s: %ld OpenCL calls per run, %ld runs survived; %ld faults surfaced as errors "
            "(%ld at context creation), %ld absorbed with identical results; %ld failed calls left partial "
            "results\n  surfaced as:%s\n  partial results (call:failed OpenCL call):%s\n",
            su->name, label, G.ncalls, s.points, s.errors, s.create_errors, s.absorbed, s.partial_writes,
            s.surfaced, s.partial[0] ? s.partial : " none");
    free_host();
}

/* ---- tests --------------------------------------------------------------- */

static char cache_dir[64];

static void fault_init(void)
{
    /* a private program cache: the first run fills it, the sweeps load from it */
    snprintf(cache_dir, sizeof cache_dir, "/tmp/clnorm-fault-XXXXXX");
    cr_assert_not_null(mkdtemp(cache_dir));
    setenv("CLNORM_CACHE_DIR", cache_dir, 1);
    cl_uint n = 0;
    clGetPlatformIDs(0, NULL, &n);
    cr_assert(clfault_active(), "the clfault shim is not in front of libOpenCL (link order?)");
}

static void fault_fini(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", cache_dir);
}

static const size_t small_nchw[4] = {2, 3, 5, 7}, nhwc[4] = {2, 5, 3, 4};

/* Small tensors take the fused one-kernel path. */
Test(fault, bn_fused, .init = fault_init, .fini = fault_fini, .timeout = 900)
{
    suite su;
    bn_suite(&su, "batch norm NCHW 2x3x5x7", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, small_nchw);
    run_opts o = {0, 0, 0};
    sweep(&su, &o, "context queue");
}

/* The multi-kernel sequences (statistics, combine, apply). */
Test(fault, bn_unfused, .init = fault_init, .fini = fault_fini, .timeout = 900)
{
    setenv("CLNORM_NO_FUSED", "1", 1);
    suite su;
    bn_suite(&su, "batch norm NCHW 2x3x5x7, CLNORM_NO_FUSED", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, small_nchw);
    run_opts o = {0, 1, 0};
    sweep(&su, &o, "context queue, output events");
}

Test(fault, bn_nhwc_ooo_events, .init = fault_init, .fini = fault_fini, .timeout = 900)
{
    setenv("CLNORM_NO_FUSED", "1", 1);
    suite su;
    bn_suite(&su, "batch norm NHWC 2x5x3x4, CLNORM_NO_FUSED", CLNORM_BN_SPATIAL, CLNORM_NHWC, 4, nhwc);
    run_opts o = {1, 1, 0};
    sweep(&su, &o, "out-of-order queue, output events");
}

/* Programs built from source (no disk cache): the build and build-log paths. */
Test(fault, bn_source_build, .init = fault_init, .fini = fault_fini, .timeout = 900)
{
    setenv("CLNORM_CACHE", "0", 1);
    suite su;
    bn_suite(&su, "batch norm NCHW 2x3x5x7", CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, small_nchw);
    run_opts o = {0, 1, 0};
    sweep(&su, &o, "no program cache, output events");
}

/* Every call from the k-th on fails: errors everywhere, no crash, no leak. */
Test(fault, bn_sticky, .init = fault_init, .fini = fault_fini, .timeout = 900)
{
    setenv("CLNORM_NO_FUSED", "1", 1);
    suite su;
    bn_suite(&su, "batch norm NHWC 2x5x3x4, CLNORM_NO_FUSED", CLNORM_BN_SPATIAL, CLNORM_NHWC, 4, nhwc);
    run_opts o = {0, 1, 1};
    sweep(&su, &o, "every call from k on fails");
}

Test(fault, family_nchw, .init = fault_init, .fini = fault_fini, .timeout = 900)
{
    suite su;
    family_suite(&su, CLNORM_NCHW);
    run_opts o = {0, 1, 0};
    sweep(&su, &o, "context queue, output events");
}

Test(fault, family_nhwc_ooo, .init = fault_init, .fini = fault_fini, .timeout = 900)
{
    suite su;
    family_suite(&su, CLNORM_NHWC);
    run_opts o = {1, 0, 0};
    sweep(&su, &o, "out-of-order queue");
}

/* A device without cl_khr_fp64 (emulated by hiding the extension): F64 is
 * refused with a clear status and nothing is written. */
Test(fault, f64_without_fp64, .init = fault_init, .fini = fault_fini)
{
    clfault_hide_extension("cl_khr_fp64");
    clnorm_context *ctx = NULL;
    cr_assert_eq(clnorm_context_create_default(NULL, &ctx), CLNORM_SUCCESS);
    clnorm_device_info info;
    cr_assert_eq(clnorm_context_device_info(ctx, &info), CLNORM_SUCCESS);
    cr_assert_eq(info.has_fp64, 0, "the shim did not hide cl_khr_fp64");
    size_t         dims[2] = {4, 3};
    clnorm_bn_desc d;
    cr_assert_eq(clnorm_bn_desc_init(&d, CLNORM_BN_PER_ACTIVATION, CLNORM_NCHW, 2, dims), CLNORM_SUCCESS);
    d.dtype = CLNORM_F64;
    double  init[12];
    for (int i = 0; i < 12; ++i)
        init[i] = 42.0 + i;
    cl_int  err;
    cl_mem  x = clCreateBuffer(clnorm_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                               sizeof init, init, &err);
    cl_mem  y = clCreateBuffer(clnorm_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                               sizeof init, init, &err);
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x = clnorm_buf(x, 0);
    a.y = clnorm_buf(y, 0);
    cl_command_queue q = clnorm_context_queue(ctx);
    cr_expect_eq(clnorm_bn_forward_training(ctx, q, &d, &a, 0, NULL, NULL), CLNORM_ERROR_UNSUPPORTED_DTYPE);
    cr_expect(strstr(clnorm_last_error(ctx), "cl_khr_fp64") != NULL, "message: %s", clnorm_last_error(ctx));
    size_t ws = 0;
    cr_expect_eq(clnorm_bn_workspace_size(ctx, &d, &ws), CLNORM_ERROR_UNSUPPORTED_DTYPE);
    double out[12];
    clFinish(q);
    cr_assert_eq(clEnqueueReadBuffer(q, y, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL), CL_SUCCESS);
    cr_expect(memcmp(out, init, sizeof out) == 0, "y written by a refused call");
    /* F32 on the same context is unaffected */
    d.dtype = CLNORM_F32;
    cr_expect_eq(clnorm_bn_forward_training(ctx, q, &d, &a, 0, NULL, NULL), CLNORM_SUCCESS, "%s",
                 clnorm_last_error(ctx));
    clFinish(q);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
    clnorm_context_destroy(ctx);
    clfault_hide_extension(NULL);
    for (int k = 0; k < CLFAULT_KIND_COUNT; ++k)
        cr_expect_eq(clfault_live((enum clfault_kind)k), 0, "%s leaked", clfault_kind_name((enum clfault_kind)k));
}
