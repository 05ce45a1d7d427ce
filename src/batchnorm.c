/* batchnorm.c: batch normalization entry points: argument checks, the
 * reduction plan for a shape on this device, and the kernel sequences. */
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* Kernel indices, in the order of program.c's bn_kernels. */
enum {
    K_STATS_ROWS,
    K_STATS_COLS,
    K_STATS_COMBINE,
    K_COEF_RUNNING,
    K_APPLY_ROWS,
    K_APPLY_COLS,
    K_BWD_ROWS,
    K_BWD_COLS,
    K_BWD_COMBINE,
    K_DX_ROWS,
    K_DX_COLS,
    K_STATS_CSTREAM,
    K_BWD_CSTREAM,
    K_APPLY_CSTREAM,
    K_DX_CSTREAM,
    K_FWD_FUSED,
    K_BWD_FUSED,
    K_INFER_FUSED,
    K_FWD_CFUSED,
    K_BWD_CFUSED,
    K_INFER_FLAT,
    K_FWD_BFUSED,
    K_BWD_BFUSED,
    K_FWD_PFUSED,
    K_GN_FWD_CFUSED,
    K_GN_BWD_CFUSED,
    K_DX_FLAT
};

#define APPLY_ROWS 8      /* matches the kernels' defaults */

#define COL_BLOCK 16
#define BF_MAXC 128 /* matches the kernels' default */
#define SLICE_TWO_PASS 8192 /* matches the kernels' default */
#define CS_RG_MIN_C 1024 /* matches the kernels' default */
#define BN_CF_BWD_CHANNELS 128 /* matches the kernels' default */
#define CF_WIDE_MAX_BLOCK ((size_t)256 << 10)
#define PF_BYTES (512 * 1024) /* matches the kernels' default */

/* The tensor as (O, C, I) and how its reduction is split. */
typedef struct bn_plan {
    size_t O, C, I, total;
    int    rows;          /* rows walk (I large) or columns walk */
    size_t R, S, L, K;    /* rows per chunk, segments per row, segment length, chunks */
    size_t W, Ip;         /* partial columns, partials per channel per chunk */
    size_t coef_bytes, part_bytes, part_off, state_off, state_bytes;
    int    stream;        /* CPU column stream: a work-item owns whole rows */
    int    fused;         /* one work-group per channel does the whole op */
    size_t cf_nv;         /* > 0: channels-last fused (CPUs), 16*cf_nv channels per work-item (the
                           * last one may have fewer) */
    size_t bf_cw;         /* > 0: channels first, small maps, fused (CPUs): bf_cw channels per
                           * work-item walked in memory order (the last one may have fewer) */
    size_t pf_cw;         /* > 0: channels first, large slices, fused (CPUs): pf_cw channels per
                           * work-item, pipelined (the last one may have fewer) */
    int    pf_ahead;      /* pf_cw with streaming stores: three stages (bn_fwd_pfused) */
    size_t psize;         /* bytes of one parameter (float or double) */
    size_t esize;         /* bytes of one tensor element */
} bn_plan;

/* Rows one work-item of the channels-last elementwise passes (CPUs) walks:
 * about 4*chunk values, so that per-work-item overhead stays small, while
 * leaving work-items enough to fill the device. */
static cl_uint stream_rows(const clnorm_context *ctx, const bn_plan *p)
{
    size_t r = 4 * ctx->tune.chunk / p->C, most = p->O / (2 * ctx->tune.min_parallel);
    if (r > most)
        r = most;
    return (cl_uint)(r < 1 ? 1 : r);
}

static size_t align128(size_t v) { return clnorm_round_up(v, 128); }

/* dir: 'f' forward, 'b' backward; the tuned choice for the shape class, if
 * any, replaces the heuristic sizes. */
static void plan_reduction(const clnorm_context *ctx, bn_plan *p, char dir)
{
    const clnorm_tuning *t  = &ctx->tune;
    size_t               lx = t->lx;
    p->rows                 = p->I >= t->rows_min_inner;
    clnorm_choice ch        = ctx->forcing ? ctx->force
                                           : clnorm_lookup_choice(ctx, clnorm_shape_key(dir, clnorm_bn_walk(ctx, p->I),
                                                                                        p->O * p->I, p->C));
    size_t chunk = ch.chunk ? ch.chunk : t->chunk, par = ch.par ? ch.par : t->min_parallel;
    /* Channels first with maps of fewer values than that on a CPU, tensors
     * of up to four channels-last block budgets (4 MB): the block walk
     * below (bn_fwd_bfused, bn_bwd_bfused) where blocks of two channels'
     * slices or more fit its budget, in place of the column streams' three
     * launches: (32,256,4,4) ran 2.4x forward and 6.4x backward,
     * (64,128,5,5) 1.8x and 2.7x, (128,64,3,3) 1.3x and 1.5x, (32,512,2,2)
     * 1.6x and 2.5x. Larger, short runs of a block's rows lost: 0.6x
     * forward on (2048,512,4,4), 0.65 - 0.78x backward on (1024,256,3,3).
     * The rows sizing below then only serves a fallback. */
    if (!p->rows && t->cpu_style && p->I > 1 && !t->no_bfused && !t->no_fused && ch.fused != 0 &&
        p->C >= t->fuse_min_channels && p->O * p->I <= t->fuse_max_slice &&
        p->total * p->esize <= 4 * t->cfuse_max_block) {
        size_t per = p->O * p->I * 4 * (dir == 'b' ? 2 : 1);
        if (2 * per <= t->bfuse_max_block && p->C / par >= 2)
            p->rows = 1;
    }
    if (p->rows) {
        size_t target = chunk;
        for (;;) {
            if (p->I <= target) {
                p->S = 1;
                p->L = p->I;
                p->R = target / p->I;
                if (p->R > p->O)
                    p->R = p->O;
                p->K = clnorm_div_up(p->O, p->R);
            } else {
                p->R = 1;
                p->S = clnorm_div_up(p->I, target);
                p->L = clnorm_round_up(clnorm_div_up(p->I, p->S), 8);
                p->S = clnorm_div_up(p->I, p->L);
                p->K = p->O * p->S;
            }
            if (p->C * p->K * lx >= par || target <= 64 * lx)
                break;
            target /= 2;
        }
        p->W  = p->C;
        p->Ip = 1;
    } else {
        if (t->cpu_style) {
            /* a work-item streams whole rows; enough of them to fill the device */
            size_t k = clnorm_div_up(p->O, COL_BLOCK);
            if (k > par)
                k = par;
            if (k < clnorm_div_up(p->O, (size_t)1 << 23))
                k = clnorm_div_up(p->O, (size_t)1 << 23); /* fp32 counts stay exact */
            p->stream = 1;
            p->W      = p->C * p->I;
            p->R      = clnorm_div_up(p->O, k);
            p->K      = clnorm_div_up(p->O, p->R);
            p->S      = 1;
            p->L      = 0;
            p->Ip     = p->I;
            goto sized;
        }
        /* columns walk (GPUs): chunks of rows, halved while the device is
         * not full, down to part_rows_min */
        p->W = p->C * p->I;
        p->R = chunk < p->O ? chunk : p->O;
        while (p->W * clnorm_div_up(p->O, p->R) < par && p->R / 2 >= t->part_rows_min)
            p->R /= 2;
        p->K  = clnorm_div_up(p->O, p->R);
        p->S  = 1;
        p->L  = 0;
        p->Ip = p->I;
    }
sized:
    /* A channel's slice small enough to stay in cache between the two walks
     * and channels enough to fill the device; or a small tensor, where one
     * launch beats three. */
    p->fused = (p->rows && p->C >= t->fuse_min_channels && p->O * p->I <= t->fuse_max_slice) ||
               p->total <= t->fuse_small_total;
    if (ch.fused >= 0)
        p->fused = ch.fused;
    if (t->no_fused)
        p->fused = 0;
    /* Channels last on a CPU: one work-item can own a few vectors of whole
     * channels when those columns of all rows fit its cache (one read of x
     * from memory) and there are channels enough for every work-item. */
    if (t->cpu_style && !p->rows && p->I == 1 && !p->fused && !t->no_fused && ch.fused != 0 &&
        p->C % 16 == 0 && p->O < ((size_t)1 << 23)) {
        /* four vectors (256 bytes of each row in fp32): with fewer, the
         * strided rows defeat the prefetchers (measured slower) */
        size_t nv = 4;
        /* work-items: par, or for tensors of up to four blocks' budget one
         * per compute unit, where one launch against the streams' three
         * pays: per-activation (256,256) and (128,512) ran 2x, (64,256)
         * 1.4x, (256,128) 1.3x, channels last (8,14,14,256) 1.2 - 1.5x,
         * (4,28,28,128) 1.1x; at 4 - 8 MB 0.85 - 1.17x */
        size_t cu = ctx->info.compute_units ? ctx->info.compute_units : 1, least = par;
        if (p->total * p->esize <= 4 * t->cfuse_max_block && cu < par)
            least = cu;
        /* Training forward on rows of 1024 channels or more, where
         * bn_apply_cstream takes four rows per coefficient load: past
         * blocks of 256 KB (1024 rows) the column streams, which read whole
         * rows, beat the block's strided 256-byte pieces: (32,7,7,2048)
         * 1.18 - 1.5x, (64,7,7,2048) 1.3x, (32,7,7,1024) 1.2x, while
         * (16,7,7,2048) and per-activation (1024,4096) kept the blocks
         * (0.72 - 0.88x with the streams). */
        size_t most = t->cfuse_max_block;
        if (dir == 'f' && p->C >= CS_RG_MIN_C && most > CF_WIDE_MAX_BLOCK)
            most = CF_WIDE_MAX_BLOCK;
        if (p->C / (16 * nv) >= least && p->O * 16 * nv * 4 <= most)
            p->cf_nv = nv;
        /* Backward on rows wide enough for par work-items of 128 channels
         * (bn_bwd_cfused's BN_CF_BWD_CHANNELS): 512 bytes of every row in
         * place of 256 ran per-activation (512,4096) 1.15 - 1.29x,
         * (256,8192) 1.11x, (16,7,7,2048) 1.26x, (32,7,7,2048) 1.13 - 1.26x
         * (1.0 in the bench, whose buffers are colder) */
        size_t wide = BN_CF_BWD_CHANNELS / 16;
        if (p->cf_nv && dir == 'b' && p->C / (16 * wide) >= par && p->O * 16 * wide * 4 <= most)
            p->cf_nv = wide;
    }
    /* Channels first with small maps on a CPU: a work-item owns a block of
     * channels whose slice fits L2 and walks it in memory order. The
     * backward also on maps of up to twice bfuse_max_inner (the 14x14 and
     * 16x16 layers) below the streaming-store threshold (no streaming
     * stores: its runs start mid-vector): (32,512,14,14)
     * 1.15 - 1.19x, (32,256,14,14) 1.08 - 1.18x (frozen 1.1x), (32,256,16,16)
     * 1.35x, (64,256,14,14) 1.01 - 1.1x; with streaming stores it lost
     * ((32,1024,14,14) 0.84 - 0.88x), as did the forward (0.79 - 1.03x). */
    int    nt_out = t->nt && p->total * p->esize >= t->nt_min_bytes;
    size_t bf_in = t->bfuse_max_inner, bf_block = t->bfuse_max_block;
    if (dir == 'b' && !nt_out) {
        /* ... and on maps of up to 1024 values (28x28), with blocks of up
         * to twice the budget: (32,128,28,28) 1.16x, (32,64,28,28) 1.14 -
         * 1.27x; (32,512,28,28), 51 MB with streaming stores, lost (0.88x) */
        if (p->I > 2 * bf_in)
            bf_block *= 2;
        bf_in *= 8;
    }
    if (t->cpu_style && p->rows && p->fused && !t->no_bfused && p->I <= bf_in) {
        size_t per = p->O * p->I * 4 * (dir == 'b' ? 2 : 1);
        size_t cw  = per ? bf_block / per : 0;
        if (cw > p->C / par)
            cw = p->C / par;
        if (cw > BF_MAXC)
            cw = BF_MAXC;
        if (cw >= 2)
            p->bf_cw = cw;
    }
    /* Training forward, channels first, with slices over SLICE_TWO_PASS
     * values on a CPU: a work-item owns a run of channels and reads the
     * next one's rows while it writes this one's (about four work-items per
     * compute unit). Not where the per-channel kernel's second walk, with
     * streaming stores, prefetches the whole next slice (PF_BYTES):
     * measured slower there (0.83 - 0.95x on (32,512,28,28) and
     * (32,256,56,56)); but where three slices fit PF_BYTES, with a third
     * stage (pf_ahead: the walk that writes channel c and sums c + 1 from
     * cache prefetches c + 2), which keeps the writes going while the
     * statistics are summed: (32,512,28,28) 1.10 - 1.13x, (32,256,28,28)
     * 1.02 - 1.15x against the per-channel kernel. Slices of 200 KB and
     * more went either way ((64,512,28,28) 1.02 - 1.10x, (16,256,56,56)
     * 0.81 - 0.94x, (32,256,56,56) 0.78 - 0.92x): the three no longer stay
     * in L2 (1 MB on the 2-core EPYC). */
    int stream = nt_out;
    if (t->cpu_style && p->rows && p->fused && !p->bf_cw && !t->no_pfused && dir == 'f' &&
        p->O * p->I > SLICE_TWO_PASS) {
        size_t cu = ctx->info.compute_units ? ctx->info.compute_units : 1;
        size_t cw = clnorm_div_up(p->C, 4 * cu);
        size_t sl = p->O * p->I * p->esize;
        int    ahead = stream && 3 * sl <= PF_BYTES;
        if (cw >= 2 && (ahead || !stream || sl > PF_BYTES)) {
            p->pf_cw    = cw;
            p->pf_ahead = ahead;
        }
    }
    p->coef_bytes  = align128(p->C * 4 * p->psize);
    p->part_off    = p->coef_bytes;
    p->part_bytes  = align128(p->K * p->W * 4 * p->psize);
    p->state_off   = p->part_off + p->part_bytes;
    /* bn_bwd_cstream's s1, s2, c1, c2 and, channels first, the columns'
     * means (bn_stats_cstream takes three) */
    p->state_bytes = p->stream ? align128(p->K * p->W * (p->I > 1 ? 5 : 4) * p->psize) : 0;
    p->part_bytes += p->state_bytes; /* callers size the scratch as coef + part */
}

/* Local and global sizes of a launch over (lanes, channels[, chunks]). On
 * CPUs a work-group takes several channels so that PoCL does not pay its
 * per-group cost thousands of times for small slices. */
static void channel_launch(const clnorm_context *ctx, size_t C, size_t K, size_t per_item, size_t *g,
                           size_t *l)
{
    size_t lx = ctx->tune.lx, cb = 1;
    if (lx == 1 && per_item < 16384) {
        /* only small slices: PoCL vectorizes across the channels of a group,
         * which turns a long contiguous walk into gathers */
        size_t cu     = ctx->info.compute_units ? ctx->info.compute_units : 1;
        size_t groups = cu * 8;
        cb            = C * K / groups;
        if (cb * per_item > 16384)
            cb = 16384 / (per_item ? per_item : 1);
        if (cb < 1)
            cb = 1;
        if (cb > C)
            cb = C;
        if (cb > 64)
            cb = 64;
    }
    g[0] = lx;
    g[1] = clnorm_round_up(C, cb);
    g[2] = K;
    l[0] = lx;
    l[1] = cb;
    l[2] = 1;
}

/* The launch of a combine kernel (bn_stats_combine, bn_bwd_combine): a
 * work-item per channel, or with LX > 1 lanes a work-group per channel;
 * returns the number of dimensions. */
static cl_uint combine_launch(const clnorm_context *ctx, size_t C, size_t *g, size_t *l)
{
    if (ctx->tune.lx > 1) {
        g[0] = l[0] = ctx->tune.lx;
        g[1]        = C;
        l[1]        = 1;
        return 2;
    }
    l[0] = C < 64 ? C : 64;
    g[0] = clnorm_round_up(C, l[0]);
    return 1;
}

/* Checks everything about desc that does not depend on buffers. */
static clnorm_status check_desc(clnorm_context *ctx, const char *fn, const clnorm_bn_desc *desc,
                                char dir, bn_plan *p)
{
    if (!desc)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "%s: desc is NULL", fn);
    if (desc->mode != CLNORM_BN_SPATIAL && desc->mode != CLNORM_BN_PER_ACTIVATION)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_MODE, "%s: desc->mode %d is not a clnorm_bn_mode",
                           fn, (int)desc->mode);
    if (desc->layout != CLNORM_NCHW && desc->layout != CLNORM_NHWC)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_LAYOUT,
                           "%s: desc->layout %d is not a clnorm_layout", fn, (int)desc->layout);
    clnorm_status st = clnorm_check_dtype(ctx, desc->dtype);
    if (st != CLNORM_SUCCESS)
        return st;
    if (desc->ndim < 2 || desc->ndim > CLNORM_MAX_DIMS)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_SHAPE, "%s: desc->ndim is %zu, expected 2..%d", fn,
                           desc->ndim, CLNORM_MAX_DIMS);
    size_t total = 1;
    for (size_t i = 0; i < desc->ndim; ++i) {
        if (desc->dims[i] == 0)
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_SHAPE, "%s: desc->dims[%zu] is 0", fn, i);
        if (!clnorm_mul_ok(total, desc->dims[i], &total))
            return clnorm_fail(ctx, CLNORM_ERROR_SIZE_OVERFLOW,
                               "%s: the element count overflows size_t at desc->dims[%zu]", fn, i);
    }
    size_t n = desc->ndim, O, C, I = 1;
    if (desc->mode == CLNORM_BN_PER_ACTIVATION) {
        O = desc->dims[0];
        C = total / O;
    } else if (desc->layout == CLNORM_NCHW) {
        O = desc->dims[0];
        C = desc->dims[1];
        I = total / (O * C);
    } else {
        C = desc->dims[n - 1];
        O = total / C;
    }
    /* kernels index rows and channels with 32 bits and elements with 64 */
    if (O > UINT_MAX || C > UINT_MAX || I > UINT_MAX || C * I > UINT_MAX ||
        total > ((size_t)1 << 52) / 8)
        return clnorm_fail(ctx, CLNORM_ERROR_SIZE_OVERFLOW,
                           "%s: shape (outer %zu, channels %zu, inner %zu) exceeds the kernels' "
                           "index range (each, and channels*inner, below 2^32)",
                           fn, O, C, I);
    clnorm_status est = clnorm_check_epsilon(ctx, fn, desc->dtype, desc->epsilon);
    if (est != CLNORM_SUCCESS)
        return est;
    memset(p, 0, sizeof *p);
    p->O     = O;
    p->C     = C;
    p->I     = I;
    p->total = total;
    p->psize = clnorm_param_size(desc->dtype);
    p->esize = clnorm_dtype_size(desc->dtype);
    plan_reduction(ctx, p, dir);
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_bn_desc_init(clnorm_bn_desc *desc, clnorm_bn_mode mode, clnorm_layout layout,
                                  size_t ndim, const size_t *dims)
{
    if (!desc || !dims)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_ARGUMENT, "clnorm_bn_desc_init: %s is NULL",
                           desc ? "dims" : "desc");
    if (ndim < 2 || ndim > CLNORM_MAX_DIMS)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_SHAPE,
                           "clnorm_bn_desc_init: ndim is %zu, expected 2..%d", ndim, CLNORM_MAX_DIMS);
    if (mode != CLNORM_BN_SPATIAL && mode != CLNORM_BN_PER_ACTIVATION)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_MODE, "clnorm_bn_desc_init: mode %d is not a clnorm_bn_mode",
                           (int)mode);
    if (layout != CLNORM_NCHW && layout != CLNORM_NHWC)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_LAYOUT,
                           "clnorm_bn_desc_init: layout %d is not a clnorm_layout", (int)layout);
    memset(desc, 0, sizeof *desc);
    desc->mode   = mode;
    desc->layout = layout;
    desc->dtype  = CLNORM_F32;
    desc->ndim   = ndim;
    memcpy(desc->dims, dims, ndim * sizeof *dims);
    desc->epsilon              = 1e-5;
    desc->exp_avg_factor       = 0.1;
    desc->unbiased_running_var = 1;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_bn_workspace_size(clnorm_context *ctx, const clnorm_bn_desc *desc, size_t *bytes)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_CONTEXT, "clnorm_bn_workspace_size: ctx is NULL");
    if (!bytes)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "clnorm_bn_workspace_size: bytes is NULL");
    bn_plan       p;
    clnorm_status st = check_desc(ctx, "clnorm_bn_workspace_size", desc, 'f', &p);
    if (st != CLNORM_SUCCESS)
        return st;
    bn_plan b;
    check_desc(ctx, "clnorm_bn_workspace_size", desc, 'b', &b);
    size_t fwd = p.coef_bytes + p.part_bytes, bwd = b.coef_bytes + b.part_bytes;
    *bytes     = fwd > bwd ? fwd : bwd;
    return CLNORM_SUCCESS;
}

/* Common prologue: context, desc, args, queue and wait list. */
static clnorm_status prologue(clnorm_context *ctx, const char *fn, char dir, cl_command_queue queue,
                              const clnorm_bn_desc *desc, const clnorm_bn_args *args, cl_uint nwait,
                              const cl_event *wait, bn_plan *p)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_CONTEXT, "%s: ctx is NULL", fn);
    if (!args)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "%s: args is NULL", fn);
    clnorm_status st = check_desc(ctx, fn, desc, dir, p);
    if (st == CLNORM_SUCCESS)
        st = clnorm_check_queue(ctx, queue, nwait, wait);
    if (st == CLNORM_SUCCESS)
        st = clnorm_check_workspace(ctx, args->workspace);
    return st;
}

/* After every argument check: the kernels exist before anything is enqueued. */
static clnorm_status ready(clnorm_context *ctx, const clnorm_bn_desc *desc)
{
    return clnorm_prepare(ctx, FAMILY_BN, desc->dtype);
}

#define CHECK(expr)                   \
    do {                              \
        st = (expr);                  \
        if (st != CLNORM_SUCCESS)     \
            return st;                \
    } while (0)

clnorm_status clnorm_cs_prepare(clnorm_context *ctx, clnorm_dtype dtype, int backward)
{
    cl_kernel     k;
    clnorm_status st = clnorm_get_kernel(ctx, FAMILY_BN, dtype, backward ? K_BWD_CSTREAM : K_STATS_CSTREAM, &k);
    if (st == CLNORM_SUCCESS)
        st = clnorm_get_kernel(ctx, FAMILY_BN, dtype, backward ? K_DX_CSTREAM : K_APPLY_CSTREAM, &k);
    return st;
}

clnorm_status clnorm_gncf_prepare(clnorm_context *ctx, clnorm_dtype dtype, int backward)
{
    cl_kernel k;
    return clnorm_get_kernel(ctx, FAMILY_BN, dtype, backward ? K_GN_BWD_CFUSED : K_GN_FWD_CFUSED, &k);
}

clnorm_status clnorm_gncf_run(clnorm_context *ctx, clnorm_seq *seq, const clnorm_gncf *g, int backward)
{
    clnorm_status st;
    cl_kernel     k;
    size_t        nb    = (size_t)g->N * (g->C / g->cw); /* blocks */
    size_t        gs[1] = {backward ? nb : clnorm_div_up(nb, g->nbw)}, l[1] = {1};
    if (backward) {
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, g->dtype, K_GN_BWD_CFUSED, &k));
        clnorm_karg args[] = {KARG(g->x),     KARG(g->xoff), KARG(g->dy),    KARG(g->dyoff),
                              KARG(g->out),   KARG(g->ooff), KARG(g->N),     KARG(g->Sp),
                              KARG(g->C),     KARG(g->cpg),  KARG(g->cw),    KARG(g->gamma),
                              KARG(g->goff),  KARG(g->mean), KARG(g->moff),  KARG(g->inv),
                              KARG(g->ioff),  KARG(g->tab),  KARG(g->tofs),  KARG(g->stream)};
        CHECK(clnorm_set_args(ctx, k, args, 20));
    } else {
        float  ef = (float)g->eps;
        double ed = g->eps;
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, g->dtype, K_GN_FWD_CFUSED, &k));
        clnorm_karg args[] = {KARG(g->x),    KARG(g->xoff), KARG(g->out),  KARG(g->ooff),
                              KARG(g->N),    KARG(g->Sp),   KARG(g->C),    KARG(g->cpg),
                              KARG(g->cw),   KARG(g->nbw),
                              {g->psize, g->psize == 8 ? (const void *)&ed : (const void *)&ef},
                              KARG(g->gamma), KARG(g->goff), KARG(g->beta), KARG(g->boff),
                              KARG(g->mean), KARG(g->moff), KARG(g->inv),  KARG(g->ioff),
                              KARG(g->stream)};
        CHECK(clnorm_set_args(ctx, k, args, 20));
    }
    return clnorm_seq_run(ctx, seq, k, 1, gs, l);
}

clnorm_status clnorm_cs_run(clnorm_context *ctx, clnorm_seq *seq, const clnorm_cstream *c, char pass)
{
    clnorm_status st;
    cl_kernel     k;
    size_t        l[1] = {1}, g[1] = {pass == 's' || pass == 'b' ? c->K : clnorm_div_up(c->O, c->rpw)};
    if (pass == 's') {
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, c->dtype, K_STATS_CSTREAM, &k));
        clnorm_karg args[] = {KARG(c->x),    KARG(c->xoff), KARG(c->O),  KARG(c->W),
                              KARG(c->R),    KARG(c->K),    KARG(c->ws), KARG(c->poff),
                              KARG(c->ws),   KARG(c->soff), KARG(c->Sp), KARG(c->Kc)};
        CHECK(clnorm_set_args(ctx, k, args, 12));
    } else if (pass == 'b') {
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, c->dtype, K_BWD_CSTREAM, &k));
        cl_mem   dxm  = c->sums_dx ? c->out : NULL;
        cl_ulong dxo  = c->sums_dx ? c->ooff : 0, cof = c->sums_dx ? c->cofs : 0;
        cl_int   nt   = c->sums_dx ? c->stream : 0;
        clnorm_karg args[] = {KARG(c->x),    KARG(c->xoff), KARG(c->dy),   KARG(c->dyoff),
                              KARG(c->mean), KARG(c->moff), KARG(c->O),    KARG(c->W),
                              KARG(c->I),    KARG(c->R),    KARG(c->K),    KARG(c->ws),
                              KARG(c->poff), KARG(c->ws),   KARG(c->soff), KARG(c->Sp),
                              KARG(c->Kc),   KARG(c->mstride), KARG(dxm),  KARG(dxo),
                              KARG(c->ws),   KARG(cof),     KARG(nt)};
        CHECK(clnorm_set_args(ctx, k, args, 23));
    } else if (pass == 'a') {
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, c->dtype, K_APPLY_CSTREAM, &k));
        clnorm_karg args[] = {KARG(c->x),    KARG(c->xoff),   KARG(c->out), KARG(c->ooff),
                              KARG(c->W),    KARG(c->O),      KARG(c->ws),  KARG(c->cofs),
                              KARG(c->stream), KARG(c->rpw),  KARG(c->Sp)};
        CHECK(clnorm_set_args(ctx, k, args, 11));
    } else {
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, c->dtype, K_DX_CSTREAM, &k));
        clnorm_karg args[] = {KARG(c->x),    KARG(c->xoff),   KARG(c->dy),  KARG(c->dyoff),
                              KARG(c->out),  KARG(c->ooff),   KARG(c->W),   KARG(c->O),
                              KARG(c->use_x), KARG(c->ws),    KARG(c->cofs), KARG(c->stream),
                              KARG(c->rpw),  KARG(c->Sp),     KARG(c->gform)};
        CHECK(clnorm_set_args(ctx, k, args, 15));
    }
    return clnorm_seq_run(ctx, seq, k, 1, g, l);
}

#define CHECK_SEQ(expr)               \
    do {                              \
        st = (expr);                  \
        if (st != CLNORM_SUCCESS)     \
            goto done;                \
    } while (0)

/* Checks the tensor buffers named (NULL-terminated list of name, buffer,
 * required) against the tensor size, and the channel vectors likewise. */
static clnorm_status check_tensor(clnorm_context *ctx, const clnorm_bn_desc *d, const bn_plan *p,
                                  const char *name, clnorm_buffer b)
{
    return clnorm_check_buffer(ctx, name, b, 1, p->total, clnorm_dtype_size(d->dtype));
}

static clnorm_status check_vec(clnorm_context *ctx, const bn_plan *p, const char *name, clnorm_buffer b,
                               int required)
{
    return clnorm_check_buffer(ctx, name, b, required, p->C, p->psize);
}

/* Scalar kernel arguments in the compute type. */
typedef union { float f; double d; } real_arg;
static real_arg mk_real(const bn_plan *p, double v)
{
    real_arg r;
    if (p->psize == 8)
        r.d = v;
    else
        r.f = (float)v;
    return r;
}
#define KREAL(p, v) { (p)->psize, &(v) }

/* Rows (o, c) per work-item of bn_infer_flat's walk in memory order over a
 * channels-first tensor: about 64 work-items (a copy's best launch here is
 * 128 work-items over 256 MB). */
static cl_uint flat_rows(cl_ulong rows) { return (cl_uint)clnorm_div_up(rows, 64); }

/* Enqueues the statistics partials for x and the combine. */
static clnorm_status enqueue_stats(clnorm_context *ctx, clnorm_seq *seq, const clnorm_bn_desc *d,
                                   const bn_plan *p, const clnorm_bn_args *a, cl_mem ws, size_t wsoff)
{
    clnorm_status st;
    cl_kernel     k;
    cl_ulong      xoff = a->x.offset, poff = (wsoff + p->part_off) / (4 * p->psize);
    cl_ulong      cofs = wsoff / p->psize;
    cl_uint       O = (cl_uint)p->O, C = (cl_uint)p->C, I = (cl_uint)p->I, R = (cl_uint)p->R;
    cl_uint       S = (cl_uint)p->S, L = (cl_uint)p->L, K = (cl_uint)p->K, W = (cl_uint)p->W;
    if (p->rows) {
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, K_STATS_ROWS, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(O), KARG(C), KARG(I), KARG(R),
                              KARG(S),        KARG(L),    KARG(K), KARG(ws), KARG(poff)};
        CHECK(clnorm_set_args(ctx, k, args, 11));
        size_t g[3], l[3];
        channel_launch(ctx, p->C, p->K, p->R * (p->S > 1 ? p->L : p->I), g, l);
        CHECK(clnorm_seq_run(ctx, seq, k, 3, g, l));
    } else if (p->stream) {
        clnorm_cstream c = {.dtype = d->dtype, .O = O, .W = W, .Sp = O, .R = R, .Kc = K, .K = K,
                            .x = a->x.mem, .xoff = xoff, .ws = ws, .poff = poff,
                            .soff = (wsoff + p->state_off) / p->psize};
        CHECK(clnorm_cs_run(ctx, seq, &c, 's'));
    } else {
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, K_STATS_COLS, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(O), KARG(W), KARG(R), KARG(K),
                              KARG(ws),       KARG(poff)};
        CHECK(clnorm_set_args(ctx, k, args, 8));
        size_t lw = p->W < 64 ? p->W : 64;
        size_t g[2] = {clnorm_round_up(p->W, lw), p->K}, l[2] = {lw, 1};
        CHECK(clnorm_seq_run(ctx, seq, k, 2, g, l));
    }

    double   M      = (double)p->O * (double)p->I;
    double   bessel = d->unbiased_running_var && M > 1 ? M / (M - 1) : 1.0;
    real_arg rM = mk_real(p, M), reps = mk_real(p, d->epsilon), rf = mk_real(p, d->exp_avg_factor);
    real_arg rb = mk_real(p, bessel);
    cl_uint  Ip = (cl_uint)p->Ip;
    cl_ulong goff = a->gamma.offset, boff = a->beta.offset, smoff = a->saved_mean.offset;
    cl_ulong sioff = a->saved_invstd.offset, rmoff = a->running_mean.offset;
    cl_ulong rvoff = a->running_var.offset;
    CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, K_STATS_COMBINE, &k));
    clnorm_karg cargs[] = {KARG(ws),
                           KARG(poff),
                           KARG(K),
                           KARG(C),
                           KARG(Ip),
                           KREAL(p, rM),
                           KREAL(p, reps),
                           KREAL(p, rf),
                           KREAL(p, rb),
                           KARG(a->gamma.mem),
                           KARG(goff),
                           KARG(a->beta.mem),
                           KARG(boff),
                           KARG(a->saved_mean.mem),
                           KARG(smoff),
                           KARG(a->saved_invstd.mem),
                           KARG(sioff),
                           KARG(a->running_mean.mem),
                           KARG(rmoff),
                           KARG(a->running_var.mem),
                           KARG(rvoff),
                           KARG(ws),
                           KARG(cofs)};
    CHECK(clnorm_set_args(ctx, k, cargs, 23));
    size_t g[2], l[2];
    return clnorm_seq_run(ctx, seq, k, combine_launch(ctx, p->C, g, l), g, l);
}

/* Whether a fused kernel writes its tensor-sized output with streaming
 * stores (large outputs on devices built with them). */
static cl_int stream_out(const clnorm_context *ctx, const clnorm_bn_desc *d, const bn_plan *p)
{
    return ctx->tune.nt && p->total * clnorm_dtype_size(d->dtype) >= ctx->tune.nt_min_bytes;
}

/* The whole training forward as one kernel: a work-group per channel, or
 * (cf_nv, channels last on CPUs) a work-item per 16*cf_nv channels. */
static clnorm_status enqueue_fwd_fused(clnorm_context *ctx, clnorm_seq *seq, const clnorm_bn_desc *d,
                                       const bn_plan *p, const clnorm_bn_args *a)
{
    clnorm_status st;
    cl_kernel     k;
    int           cf     = p->cf_nv > 0;
    double        M      = (double)p->O * (double)p->I;
    double        bessel = d->unbiased_running_var && M > 1 ? M / (M - 1) : 1.0;
    real_arg      rM = mk_real(p, M), reps = mk_real(p, d->epsilon), rf = mk_real(p, d->exp_avg_factor);
    real_arg      rb = mk_real(p, bessel);
    cl_uint       O = (cl_uint)p->O, C = (cl_uint)p->C, I = (cl_uint)(cf ? 16 * p->cf_nv : p->I);
    cl_ulong      xoff = a->x.offset, yoff = a->y.offset, goff = a->gamma.offset, boff = a->beta.offset;
    cl_ulong      smoff = a->saved_mean.offset, sioff = a->saved_invstd.offset;
    cl_ulong      rmoff = a->running_mean.offset, rvoff = a->running_var.offset;
    cl_int        stream = stream_out(ctx, d, p);
    if (p->bf_cw || p->pf_cw) {
        cl_uint cw = (cl_uint)(p->bf_cw ? p->bf_cw : p->pf_cw);
        cl_int  sflags = stream | (p->pf_ahead ? 2 : 0);
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, p->bf_cw ? K_FWD_BFUSED : K_FWD_PFUSED, &k));
        clnorm_karg bargs[] = {KARG(a->x.mem),   KARG(xoff),  KARG(a->y.mem),   KARG(yoff),
                               KARG(O),          KARG(C),     KARG(I),          KARG(cw),
                               KREAL(p, rM),     KREAL(p, reps), KREAL(p, rf),  KREAL(p, rb),
                               KARG(a->gamma.mem), KARG(goff), KARG(a->beta.mem), KARG(boff),
                               KARG(a->saved_mean.mem), KARG(smoff), KARG(a->saved_invstd.mem),
                               KARG(sioff),      KARG(a->running_mean.mem), KARG(rmoff),
                               KARG(a->running_var.mem), KARG(rvoff), KARG(sflags)};
        CHECK(clnorm_set_args(ctx, k, bargs, 25));
        size_t g[1] = {clnorm_div_up(p->C, cw)}, l[1] = {1};
        return clnorm_seq_run(ctx, seq, k, 1, g, l);
    }
    CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, cf ? K_FWD_CFUSED : K_FWD_FUSED, &k));
    clnorm_karg args[] = {KARG(a->x.mem),   KARG(xoff),  KARG(a->y.mem),   KARG(yoff),
                          KARG(O),          KARG(C),     KARG(I),          KREAL(p, rM),
                          KREAL(p, reps),   KREAL(p, rf), KREAL(p, rb),    KARG(a->gamma.mem),
                          KARG(goff),       KARG(a->beta.mem), KARG(boff), KARG(a->saved_mean.mem),
                          KARG(smoff),      KARG(a->saved_invstd.mem), KARG(sioff),
                          KARG(a->running_mean.mem), KARG(rmoff), KARG(a->running_var.mem), KARG(rvoff),
                          KARG(stream)};
    CHECK(clnorm_set_args(ctx, k, args, 24));
    size_t g[3] = {cf ? clnorm_div_up(p->C, 16 * p->cf_nv) : 0}, l[3] = {1};
    if (!cf)
        channel_launch(ctx, p->C, 1, p->O * p->I, g, l);
    return clnorm_seq_run(ctx, seq, k, cf ? 1 : 2, g, l);
}

/* Whether inference (and frozen dx) walks rows in memory order
 * (bn_infer_flat): CPUs, channels first. */
static int infer_flat(const clnorm_context *ctx, const bn_plan *p)
{
    return ctx->tune.cpu_style && p->I > 1 && !ctx->tune.no_flat;
}

/* bn_infer_flat (CPUs: a work-item per run of rows (o, c) in memory
 * order): y from the running statistics, or with coef (no statistics
 * buffers then) from the coefficient planes at cofs. */
static clnorm_status enqueue_flat(clnorm_context *ctx, clnorm_seq *seq, const clnorm_bn_desc *d,
                                  const bn_plan *p, clnorm_buffer x, clnorm_buffer y, clnorm_buffer mean,
                                  clnorm_buffer var, clnorm_buffer gamma, clnorm_buffer beta, cl_mem coef,
                                  cl_ulong cofs)
{
    clnorm_status st;
    cl_kernel     k;
    real_arg      reps = mk_real(p, d->epsilon);
    cl_uint       C = (cl_uint)p->C, I = (cl_uint)p->I;
    cl_ulong      xoff = x.offset, yoff = y.offset, moff = mean.offset, voff = var.offset;
    cl_ulong      goff = gamma.offset, boff = beta.offset, rows = (cl_ulong)p->O * p->C;
    cl_uint       rpw    = flat_rows(rows);
    cl_int        stream = stream_out(ctx, d, p);
    CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, K_INFER_FLAT, &k));
    clnorm_karg args[] = {KARG(x.mem),     KARG(xoff), KARG(y.mem),     KARG(yoff), KARG(C),
                          KARG(I),         KARG(rows), KARG(rpw),       KREAL(p, reps),
                          KARG(mean.mem),  KARG(moff), KARG(var.mem),   KARG(voff),
                          KARG(gamma.mem), KARG(goff), KARG(beta.mem),  KARG(boff),
                          KARG(stream),    KARG(coef), KARG(cofs)};
    CHECK(clnorm_set_args(ctx, k, args, 20));
    size_t g[1] = {clnorm_div_up(rows, rpw)}, l[1] = {1};
    return clnorm_seq_run(ctx, seq, k, 1, g, l);
}

/* y = gamma*(x - mean)/sqrt(var + eps) + beta from per-channel vectors as
 * one kernel; with x = dy, no mean and no beta it is the frozen dx. */
static clnorm_status enqueue_infer_fused(clnorm_context *ctx, clnorm_seq *seq, const clnorm_bn_desc *d,
                                         const bn_plan *p, clnorm_buffer x, clnorm_buffer y,
                                         clnorm_buffer mean, clnorm_buffer var, clnorm_buffer gamma,
                                         clnorm_buffer beta)
{
    clnorm_status st;
    cl_kernel     k;
    real_arg      reps = mk_real(p, d->epsilon);
    cl_uint       O = (cl_uint)p->O, C = (cl_uint)p->C, I = (cl_uint)p->I;
    cl_ulong      xoff = x.offset, yoff = y.offset, moff = mean.offset, voff = var.offset;
    cl_ulong      goff = gamma.offset, boff = beta.offset;
    cl_int        stream = stream_out(ctx, d, p);
    if (infer_flat(ctx, p))
        return enqueue_flat(ctx, seq, d, p, x, y, mean, var, gamma, beta, NULL, 0);
    CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, K_INFER_FUSED, &k));
    clnorm_karg args[] = {KARG(x.mem),     KARG(xoff), KARG(y.mem),     KARG(yoff), KARG(O),
                          KARG(C),         KARG(I),    KREAL(p, reps),  KARG(mean.mem), KARG(moff),
                          KARG(var.mem),   KARG(voff), KARG(gamma.mem), KARG(goff), KARG(beta.mem),
                          KARG(boff),      KARG(stream)};
    CHECK(clnorm_set_args(ctx, k, args, 17));
    size_t g[3], l[3];
    channel_launch(ctx, p->C, 1, p->O * p->I, g, l);
    return clnorm_seq_run(ctx, seq, k, 2, g, l);
}

/* Launch of bn_apply_rows / bn_dx_rows over rows of I values, 8 per
 * work-item: the row's work-items split evenly into at most 64 lanes, and
 * on GPUs short rows several to a work-group (a row of 7x7 alone made
 * work-groups of 7 work-items); the kernels skip the rows past the end. */
static void rows_launch(const clnorm_context *ctx, size_t I, size_t rows, size_t *g, size_t *l)
{
    size_t t = clnorm_div_up(I, 8), nb = clnorm_div_up(t, 64), lt = clnorm_div_up(t, nb), lr = 1;
    if (ctx->tune.cpu_style)
        lt = t < 64 ? t : 64; /* PoCL: as measured before; 64 vectorizes across work-items */
    else {
        size_t most = ctx->info.max_work_group_size < 128 ? ctx->info.max_work_group_size : 128;
        lr          = lt < most ? most / lt : 1;
    }
    g[0] = clnorm_round_up(t, lt);
    g[1] = clnorm_round_up(rows, lr);
    l[0] = lt;
    l[1] = lr;
}

/* Enqueues y = ((x - hi) - lo) * scale + shift with coefficients in ws. */
static clnorm_status enqueue_apply(clnorm_context *ctx, clnorm_seq *seq, const clnorm_bn_desc *d,
                                   const bn_plan *p, const clnorm_bn_args *a, cl_mem ws, size_t wsoff)
{
    clnorm_status st;
    cl_kernel     k;
    cl_ulong      xoff = a->x.offset, yoff = a->y.offset, cofs = wsoff / p->psize;
    cl_uint       C = (cl_uint)p->C, I = (cl_uint)p->I, O = (cl_uint)p->O;
    if (p->I > 1 && infer_flat(ctx, p)) {
        /* CPUs: bn_infer_flat's walk in memory order on the coefficient
         * planes; bn_apply_rows' work-items of 8 values, in work-groups of
         * a row's, took 1.7 - 1.9 ms of the 3 on (512,512,4,4) */
        clnorm_buffer none = {0};
        return enqueue_flat(ctx, seq, d, p, a->x, a->y, none, none, none, none, ws, cofs);
    }
    if (p->I > 1) {
        cl_ulong rows = (cl_ulong)p->O * p->C;
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, K_APPLY_ROWS, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->y.mem), KARG(yoff), KARG(C),
                              KARG(I),        KARG(rows), KARG(ws),       KARG(cofs)};
        CHECK(clnorm_set_args(ctx, k, args, 9));
        size_t g[2], l[2];
        rows_launch(ctx, p->I, rows, g, l);
        return clnorm_seq_run(ctx, seq, k, 2, g, l);
    }
    if (ctx->tune.cpu_style) {
        clnorm_cstream c = {.dtype = d->dtype, .O = O, .W = C, .Sp = O, .rpw = stream_rows(ctx, p),
                            .x = a->x.mem, .xoff = xoff, .out = a->y.mem, .ooff = yoff, .ws = ws,
                            .cofs = cofs, .stream = stream_out(ctx, d, p)};
        return clnorm_cs_run(ctx, seq, &c, 'a');
    }
    CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, K_APPLY_COLS, &k));
    clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->y.mem), KARG(yoff),
                          KARG(C),        KARG(O),    KARG(ws),       KARG(cofs)};
    CHECK(clnorm_set_args(ctx, k, args, 8));
    size_t lc = p->C < 64 ? p->C : 64;
    size_t g[2] = {clnorm_round_up(p->C, lc), clnorm_div_up(p->O, APPLY_ROWS)}, l[2] = {lc, 1};
    return clnorm_seq_run(ctx, seq, k, 2, g, l);
}

clnorm_status clnorm_bn_forward_training(clnorm_context *ctx, cl_command_queue queue,
                                         const clnorm_bn_desc *desc, const clnorm_bn_args *args,
                                         cl_uint nwait, const cl_event *wait, cl_event *event)
{
    static const char fn[] = "clnorm_bn_forward_training";
    bn_plan           p;
    clnorm_status     st;
    CHECK(prologue(ctx, fn, 'f', queue, desc, args, nwait, wait, &p));
    if (!(desc->exp_avg_factor >= 0 && desc->exp_avg_factor <= 1))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_MOMENTUM,
                           "%s: desc->exp_avg_factor is %g, must lie in [0, 1]", fn, desc->exp_avg_factor);
    CHECK(check_tensor(ctx, desc, &p, "x", args->x));
    CHECK(check_tensor(ctx, desc, &p, "y", args->y));
    CHECK(check_vec(ctx, &p, "gamma", args->gamma, 0));
    CHECK(check_vec(ctx, &p, "beta", args->beta, 0));
    CHECK(check_vec(ctx, &p, "saved_mean", args->saved_mean, 0));
    CHECK(check_vec(ctx, &p, "saved_invstd", args->saved_invstd, 0));
    CHECK(check_vec(ctx, &p, "running_mean", args->running_mean, 0));
    CHECK(check_vec(ctx, &p, "running_var", args->running_var, 0));
    if (args->running_var.mem && desc->unbiased_running_var && p.O * p.I == 1)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_SHAPE,
                           "%s: the unbiased running variance needs more than one value per channel "
                           "(N*spatial is 1); use a biased running variance or omit running_var",
                           fn);
    CHECK(ready(ctx, desc));
    cl_mem ws    = NULL;
    size_t wsoff = 0;
    if (!p.fused && !p.cf_nv)
        CHECK(clnorm_get_scratch(ctx, args->workspace, p.coef_bytes + p.part_bytes, &ws, &wsoff));
    clnorm_seq seq;
    CHECK(clnorm_seq_begin(ctx, &seq, queue, nwait, wait, event != NULL));
    if (p.fused || p.cf_nv) {
        CHECK_SEQ(enqueue_fwd_fused(ctx, &seq, desc, &p, args));
    } else {
        CHECK_SEQ(enqueue_stats(ctx, &seq, desc, &p, args, ws, wsoff));
        CHECK_SEQ(enqueue_apply(ctx, &seq, desc, &p, args, ws, wsoff));
    }
done:
    return clnorm_seq_end(&seq, st, event);
}

/* The coefficient planes (running mean, 0, gamma/sqrt(running var + eps),
 * beta) into ws at wsoff: inference's, and frozen backward's when the sums
 * walk writes dx (the a plane is bn_bwd_combine's for frozen, bit for bit). */
static clnorm_status enqueue_coef_running(clnorm_context *ctx, clnorm_seq *seq, const clnorm_bn_desc *d,
                                          const bn_plan *p, const clnorm_bn_args *args, cl_mem ws,
                                          size_t wsoff)
{
    clnorm_status st;
    cl_kernel     k;
    cl_uint       C    = (cl_uint)p->C;
    real_arg      reps = mk_real(p, d->epsilon);
    cl_ulong      rmoff = args->running_mean.offset, rvoff = args->running_var.offset;
    cl_ulong      goff = args->gamma.offset, boff = args->beta.offset, cofs = wsoff / p->psize;
    CHECK(clnorm_get_kernel(ctx, FAMILY_BN, d->dtype, K_COEF_RUNNING, &k));
    clnorm_karg a[] = {KARG(C),          KREAL(p, reps),          KARG(args->running_mean.mem),
                       KARG(rmoff),      KARG(args->running_var.mem), KARG(rvoff),
                       KARG(args->gamma.mem), KARG(goff),         KARG(args->beta.mem),
                       KARG(boff),       KARG(ws),                KARG(cofs)};
    CHECK(clnorm_set_args(ctx, k, a, 12));
    size_t lc = p->C < 64 ? p->C : 64, g[1] = {clnorm_round_up(p->C, lc)}, l[1] = {lc};
    return clnorm_seq_run(ctx, seq, k, 1, g, l);
}

clnorm_status clnorm_bn_forward_inference(clnorm_context *ctx, cl_command_queue queue,
                                          const clnorm_bn_desc *desc, const clnorm_bn_args *args,
                                          cl_uint nwait, const cl_event *wait, cl_event *event)
{
    static const char fn[] = "clnorm_bn_forward_inference";
    bn_plan           p;
    clnorm_status     st;
    CHECK(prologue(ctx, fn, 'i', queue, desc, args, nwait, wait, &p));
    CHECK(check_tensor(ctx, desc, &p, "x", args->x));
    CHECK(check_tensor(ctx, desc, &p, "y", args->y));
    CHECK(check_vec(ctx, &p, "gamma", args->gamma, 0));
    CHECK(check_vec(ctx, &p, "beta", args->beta, 0));
    CHECK(check_vec(ctx, &p, "running_mean", args->running_mean, 1));
    CHECK(check_vec(ctx, &p, "running_var", args->running_var, 1));
    CHECK(ready(ctx, desc));
    clnorm_seq seq;
    if (p.fused || infer_flat(ctx, &p)) {
        CHECK(clnorm_seq_begin(ctx, &seq, queue, nwait, wait, event != NULL));
        st = enqueue_infer_fused(ctx, &seq, desc, &p, args->x, args->y, args->running_mean,
                                 args->running_var, args->gamma, args->beta);
        return clnorm_seq_end(&seq, st, event);
    }
    cl_mem ws;
    size_t wsoff;
    CHECK(clnorm_get_scratch(ctx, args->workspace, p.coef_bytes, &ws, &wsoff));
    CHECK(clnorm_seq_begin(ctx, &seq, queue, nwait, wait, event != NULL));
    CHECK_SEQ(enqueue_coef_running(ctx, &seq, desc, &p, args, ws, wsoff));
    CHECK_SEQ(enqueue_apply(ctx, &seq, desc, &p, args, ws, wsoff));
done:
    return clnorm_seq_end(&seq, st, event);
}

/* Backward as one kernel (checks already done): a work-group per channel,
 * or a work-item per 16*cf_nv channels, as enqueue_fwd_fused. */
static clnorm_status backward_fused(clnorm_context *ctx, int frozen, cl_command_queue queue,
                                    const clnorm_bn_desc *desc, const bn_plan *p,
                                    const clnorm_bn_args *args, cl_uint nwait, const cl_event *wait,
                                    cl_event *event)
{
    clnorm_status st;
    cl_kernel     k;
    int           cf   = p->cf_nv > 0;
    clnorm_buffer mean = frozen ? args->running_mean : args->saved_mean;
    clnorm_buffer inv  = frozen ? args->running_var : args->saved_invstd;
    real_arg      rM = mk_real(p, (double)p->O * (double)p->I), reps = mk_real(p, desc->epsilon);
    cl_int        fz = frozen;
    cl_uint       O = (cl_uint)p->O, C = (cl_uint)p->C, I = (cl_uint)(cf ? 16 * p->cf_nv : p->I);
    cl_ulong      xoff = args->x.offset, dyoff = args->dy.offset, dxoff = args->dx.offset;
    cl_ulong      moff = mean.offset, ioff = inv.offset, goff = args->gamma.offset;
    cl_ulong      dgoff = args->dgamma.offset, dboff = args->dbeta.offset;
    cl_int        stream = stream_out(ctx, desc, p);
    clnorm_seq    seq;
    if (p->bf_cw) {
        cl_uint cw = (cl_uint)p->bf_cw;
        CHECK(clnorm_get_kernel(ctx, FAMILY_BN, desc->dtype, K_BWD_BFUSED, &k));
        clnorm_karg b[] = {KARG(args->x.mem), KARG(xoff), KARG(args->dy.mem), KARG(dyoff),
                           KARG(args->dx.mem), KARG(dxoff), KARG(O), KARG(C), KARG(I), KARG(cw),
                           KREAL(p, rM), KARG(fz), KREAL(p, reps), KARG(mean.mem), KARG(moff),
                           KARG(inv.mem), KARG(ioff), KARG(args->gamma.mem), KARG(goff),
                           KARG(args->dgamma.mem), KARG(dgoff), KARG(args->dbeta.mem), KARG(dboff),
                           KARG(stream)};
        CHECK(clnorm_set_args(ctx, k, b, 24));
        CHECK(clnorm_seq_begin(ctx, &seq, queue, nwait, wait, event != NULL));
        size_t g[1] = {clnorm_div_up(p->C, cw)}, l[1] = {1};
        st = clnorm_seq_run(ctx, &seq, k, 1, g, l);
        return clnorm_seq_end(&seq, st, event);
    }
    CHECK(clnorm_get_kernel(ctx, FAMILY_BN, desc->dtype, cf ? K_BWD_CFUSED : K_BWD_FUSED, &k));
    clnorm_karg a[] = {KARG(args->x.mem), KARG(xoff), KARG(args->dy.mem), KARG(dyoff),
                       KARG(args->dx.mem), KARG(dxoff), KARG(O), KARG(C), KARG(I), KREAL(p, rM),
                       KARG(fz), KREAL(p, reps), KARG(mean.mem), KARG(moff), KARG(inv.mem), KARG(ioff),
                       KARG(args->gamma.mem), KARG(goff), KARG(args->dgamma.mem), KARG(dgoff),
                       KARG(args->dbeta.mem), KARG(dboff), KARG(stream)};
    CHECK(clnorm_set_args(ctx, k, a, 23));
    CHECK(clnorm_seq_begin(ctx, &seq, queue, nwait, wait, event != NULL));
    size_t g[3] = {cf ? clnorm_div_up(p->C, 16 * p->cf_nv) : 0}, l[3] = {1};
    if (!cf)
        channel_launch(ctx, p->C, 1, p->O * p->I, g, l);
    st = clnorm_seq_run(ctx, &seq, k, cf ? 1 : 2, g, l);
    return clnorm_seq_end(&seq, st, event);
}

/* Backward, both kinds: frozen selects the running statistics. */
static clnorm_status backward(clnorm_context *ctx, const char *fn, int frozen, cl_command_queue queue,
                              const clnorm_bn_desc *desc, const clnorm_bn_args *args, cl_uint nwait,
                              const cl_event *wait, cl_event *event)
{
    bn_plan       p;
    clnorm_status st;
    CHECK(prologue(ctx, fn, 'b', queue, desc, args, nwait, wait, &p));
    int need_sums = !frozen || args->dgamma.mem || args->dbeta.mem;
    int need_x    = !frozen || args->dgamma.mem;
    if (need_x)
        CHECK(check_tensor(ctx, desc, &p, "x", args->x));
    else
        CHECK(clnorm_check_buffer(ctx, "x", args->x, 0, p.total, clnorm_dtype_size(desc->dtype)));
    CHECK(check_tensor(ctx, desc, &p, "dy", args->dy));
    CHECK(check_tensor(ctx, desc, &p, "dx", args->dx));
    CHECK(check_vec(ctx, &p, "gamma", args->gamma, 0));
    CHECK(check_vec(ctx, &p, "dgamma", args->dgamma, 0));
    CHECK(check_vec(ctx, &p, "dbeta", args->dbeta, 0));
    clnorm_buffer mean = frozen ? args->running_mean : args->saved_mean;
    clnorm_buffer inv  = frozen ? args->running_var : args->saved_invstd;
    CHECK(check_vec(ctx, &p, frozen ? "running_mean" : "saved_mean", mean, 1));
    CHECK(check_vec(ctx, &p, frozen ? "running_var" : "saved_invstd", inv, 1));
    CHECK(ready(ctx, desc));

    if (need_sums && need_x && (p.fused || p.cf_nv))
        return backward_fused(ctx, frozen, queue, desc, &p, args, nwait, wait, event);
    if (!need_sums && (p.fused || infer_flat(ctx, &p))) {
        /* frozen dx alone: gamma/sqrt(var + eps) * dy */
        clnorm_seq    seq;
        clnorm_buffer none = {NULL, 0};
        CHECK(clnorm_seq_begin(ctx, &seq, queue, nwait, wait, event != NULL));
        st = enqueue_infer_fused(ctx, &seq, desc, &p, args->dy, args->dx, none, args->running_var,
                                 args->gamma, none);
        return clnorm_seq_end(&seq, st, event);
    }
    cl_mem ws;
    size_t wsoff;
    CHECK(clnorm_get_scratch(ctx, args->workspace, p.coef_bytes + (need_sums ? p.part_bytes : 0), &ws,
                             &wsoff));
    clnorm_seq seq;
    CHECK(clnorm_seq_begin(ctx, &seq, queue, nwait, wait, event != NULL));
    cl_kernel k;
    cl_ulong  xoff = args->x.offset, dyoff = args->dy.offset, dxoff = args->dx.offset;
    cl_ulong  moff = mean.offset, ioff = inv.offset, goff = args->gamma.offset;
    cl_ulong  dgoff = args->dgamma.offset, dboff = args->dbeta.offset;
    cl_ulong  poff = (wsoff + p.part_off) / (4 * p.psize), cofs = wsoff / p.psize;
    /* frozen channels last on CPUs: the sums walk forms dx too (dy read once) */
    int sums_dx = frozen && need_sums && p.stream && !p.rows && ctx->tune.cpu_style && p.I == 1 &&
                  p.W % 16 == 0 && !ctx->tune.no_flat;
    cl_uint   O = (cl_uint)p.O, C = (cl_uint)p.C, I = (cl_uint)p.I, R = (cl_uint)p.R;
    cl_uint   S = (cl_uint)p.S, L = (cl_uint)p.L, K = need_sums ? (cl_uint)p.K : 0, W = (cl_uint)p.W;
    cl_uint   Ip = (cl_uint)p.Ip;
    /* x is never read when it is not needed; dy stands in as a valid cl_mem */
    cl_mem    xmem = need_x ? args->x.mem : args->dy.mem;
    if (!need_x)
        xoff = dyoff;
    if (need_sums) {
        if (p.rows) {
            CHECK_SEQ(clnorm_get_kernel(ctx, FAMILY_BN, desc->dtype, K_BWD_ROWS, &k));
            clnorm_karg a[] = {KARG(xmem), KARG(xoff), KARG(args->dy.mem), KARG(dyoff), KARG(mean.mem),
                               KARG(moff), KARG(O),    KARG(C),            KARG(I),     KARG(R),
                               KARG(S),    KARG(L),    KARG(K),            KARG(ws),    KARG(poff)};
            CHECK_SEQ(clnorm_set_args(ctx, k, a, 15));
            size_t g[3], l[3];
            channel_launch(ctx, p.C, p.K, p.R * (p.S > 1 ? p.L : p.I), g, l);
            CHECK_SEQ(clnorm_seq_run(ctx, &seq, k, 3, g, l));
        } else if (p.stream) {
            clnorm_cstream c = {.dtype = desc->dtype, .O = O, .W = W, .Sp = O, .R = R, .Kc = K, .K = K,
                                .x = xmem, .xoff = xoff, .dy = args->dy.mem, .dyoff = dyoff,
                                .mean = mean.mem, .moff = moff, .I = I, .ws = ws, .poff = poff,
                                .soff = (wsoff + p.state_off) / p.psize};
            if (sums_dx) {
                /* frozen: dx = a*dy in the same walk, a from the running
                 * statistics (planes at cofs, rewritten alike by the combine) */
                CHECK_SEQ(enqueue_coef_running(ctx, &seq, desc, &p, args, ws, wsoff));
                c.sums_dx = 1;
                c.out     = args->dx.mem;
                c.ooff    = dxoff;
                c.cofs    = cofs;
                c.stream  = stream_out(ctx, desc, &p) && (dxoff * clnorm_dtype_size(desc->dtype)) % 64 == 0;
            }
            CHECK_SEQ(clnorm_cs_run(ctx, &seq, &c, 'b'));
        } else {
            CHECK_SEQ(clnorm_get_kernel(ctx, FAMILY_BN, desc->dtype, K_BWD_COLS, &k));
            clnorm_karg a[] = {KARG(xmem), KARG(xoff), KARG(args->dy.mem), KARG(dyoff),
                               KARG(mean.mem), KARG(moff), KARG(O), KARG(W), KARG(I), KARG(R),
                               KARG(K), KARG(ws), KARG(poff)};
            CHECK_SEQ(clnorm_set_args(ctx, k, a, 13));
            size_t lw = p.W < 64 ? p.W : 64;
            size_t g[2] = {clnorm_round_up(p.W, lw), p.K}, l[2] = {lw, 1};
            CHECK_SEQ(clnorm_seq_run(ctx, &seq, k, 2, g, l));
        }
    }
    {
        real_arg rM = mk_real(&p, (double)p.O * (double)p.I), reps = mk_real(&p, desc->epsilon);
        cl_int   fz = frozen;
        CHECK_SEQ(clnorm_get_kernel(ctx, FAMILY_BN, desc->dtype, K_BWD_COMBINE, &k));
        clnorm_karg a[] = {KARG(ws),   KARG(poff),  KARG(K),           KARG(C),
                           KARG(Ip),   KREAL(&p, rM), KARG(fz),        KREAL(&p, reps),
                           KARG(mean.mem), KARG(moff), KARG(inv.mem),  KARG(ioff),
                           KARG(args->gamma.mem), KARG(goff), KARG(args->dgamma.mem), KARG(dgoff),
                           KARG(args->dbeta.mem), KARG(dboff), KARG(ws), KARG(cofs)};
        CHECK_SEQ(clnorm_set_args(ctx, k, a, 20));
        size_t g[2], l[2];
        CHECK_SEQ(clnorm_seq_run(ctx, &seq, k, combine_launch(ctx, p.C, g, l), g, l));
    }
    if (!sums_dx) {
        cl_int use_x = !frozen;
        if (frozen) {
            xmem = args->dy.mem;
            xoff = dyoff;
        }
        if (p.I > 1 && infer_flat(ctx, &p)) {
            cl_ulong rows = (cl_ulong)p.O * p.C;
            cl_uint  rpw  = flat_rows(rows);
            cl_int   nt   = stream_out(ctx, desc, &p);
            CHECK_SEQ(clnorm_get_kernel(ctx, FAMILY_BN, desc->dtype, K_DX_FLAT, &k));
            clnorm_karg a[] = {KARG(xmem), KARG(xoff),         KARG(args->dy.mem), KARG(dyoff),
                               KARG(args->dx.mem), KARG(dxoff), KARG(C),           KARG(I),
                               KARG(rows), KARG(rpw),          KARG(use_x),        KARG(ws),
                               KARG(cofs), KARG(nt)};
            CHECK_SEQ(clnorm_set_args(ctx, k, a, 14));
            size_t g[1] = {clnorm_div_up(rows, rpw)}, l[1] = {1};
            CHECK_SEQ(clnorm_seq_run(ctx, &seq, k, 1, g, l));
        } else if (p.I > 1) {
            cl_ulong rows = (cl_ulong)p.O * p.C;
            CHECK_SEQ(clnorm_get_kernel(ctx, FAMILY_BN, desc->dtype, K_DX_ROWS, &k));
            clnorm_karg a[] = {KARG(xmem), KARG(xoff), KARG(args->dy.mem), KARG(dyoff),
                               KARG(args->dx.mem), KARG(dxoff), KARG(C), KARG(I), KARG(rows),
                               KARG(use_x), KARG(ws), KARG(cofs)};
            CHECK_SEQ(clnorm_set_args(ctx, k, a, 12));
            size_t g[2], l[2];
            rows_launch(ctx, p.I, rows, g, l);
            CHECK_SEQ(clnorm_seq_run(ctx, &seq, k, 2, g, l));
        } else if (ctx->tune.cpu_style) {
            clnorm_cstream c = {.dtype = desc->dtype, .O = O, .W = C, .Sp = O, .rpw = stream_rows(ctx, &p),
                                .x = xmem, .xoff = xoff, .dy = args->dy.mem, .dyoff = dyoff,
                                .out = args->dx.mem, .ooff = dxoff, .ws = ws, .cofs = cofs,
                                .stream = stream_out(ctx, desc, &p), .use_x = use_x};
            CHECK_SEQ(clnorm_cs_run(ctx, &seq, &c, 'd'));
        } else {
            CHECK_SEQ(clnorm_get_kernel(ctx, FAMILY_BN, desc->dtype, K_DX_COLS, &k));
            clnorm_karg a[] = {KARG(xmem), KARG(xoff), KARG(args->dy.mem), KARG(dyoff),
                               KARG(args->dx.mem), KARG(dxoff), KARG(C), KARG(O), KARG(use_x),
                               KARG(ws), KARG(cofs)};
            CHECK_SEQ(clnorm_set_args(ctx, k, a, 11));
            size_t lc = p.C < 64 ? p.C : 64;
            size_t g[2] = {clnorm_round_up(p.C, lc), clnorm_div_up(p.O, APPLY_ROWS)}, l[2] = {lc, 1};
            CHECK_SEQ(clnorm_seq_run(ctx, &seq, k, 2, g, l));
        }
    }
done:
    return clnorm_seq_end(&seq, st, event);
}

clnorm_status clnorm_bn_backward(clnorm_context *ctx, cl_command_queue queue, const clnorm_bn_desc *desc,
                                 const clnorm_bn_args *args, cl_uint nwait, const cl_event *wait,
                                 cl_event *event)
{
    return backward(ctx, "clnorm_bn_backward", 0, queue, desc, args, nwait, wait, event);
}

clnorm_status clnorm_bn_backward_frozen(clnorm_context *ctx, cl_command_queue queue,
                                        const clnorm_bn_desc *desc, const clnorm_bn_args *args,
                                        cl_uint nwait, const cl_event *wait, cl_event *event)
{
    return backward(ctx, "clnorm_bn_backward_frozen", 1, queue, desc, args, nwait, wait, event);
}
