/* rownorm.c: the normalization family (layer, RMS, group and instance norm):
 * argument checks, how rows are spread over the device, and the kernel
 * sequences. Kernels are in kernels/rownorm.cl. */
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* Kernel indices, in the order of program.c's rownorm_kernels. The row
 * kernels come in pairs: +0 lanes own tasks, +1 a work-group shares each. */
enum {
    K_FWD,
    K_STATS = 2,
    K_GN_STATS_COLS = 4,
    K_STATS_COMBINE,
    K_APPLY,
    K_BWD,
    K_BWD_PART = 9,
    K_GN_BWD_COLS = 11,
    K_BWD_COMBINE,
    K_DX,
    K_COL_PART,
    K_COL_COMBINE,
    K_COL_PLANES,
    K_GN_FWD,
    K_GN_BWD = K_GN_FWD + 2,
    K_GN_MEAN_COLS = K_GN_BWD + 2,
    K_FWD_SUB, /* K_FWD, K_BWD for lanes sharing short rows (1 < lpr < LX) */
    K_BWD_SUB,
    K_BWD_REGS,
    K_GN_APPLY_COLS,
    K_GN_DX_COLS,
    K_GN_FWD_LEAD
};

#define GN_ROWS 8 /* gn_apply_cols, gn_dx_cols: rows per work-item, as rownorm.cl */

#define RN_NB 4 /* rn_bwd_regs: blocks of 8 columns per lane, as rownorm.cl */
#define PLANES_W 16 /* rn_col_planes on CPUs: columns per work-item, as rownorm.cl */
#define GN_CF_CHANNELS 80 /* gn_fwd_cfused, gn_bwd_cfused: most channels per block, as batchnorm.cl */
#define GN_LEAD_MAX 16    /* gn_fwd_lead: most rows ahead, as rownorm.cl */

enum rn_op { OP_LN, OP_RMS, OP_GN };

/* A shape and how its work is split on this device. Layer/RMS norm: R rows
 * of L. Group norm: N samples, C channels (G groups of cpg), Sp positions;
 * NCHW walks its N*C (n, c) rows of Sp values like rows. */
typedef struct rn_plan {
    enum rn_op op;
    clnorm_dtype dtype;
    size_t esize, psize, total;
    size_t R, L;              /* the row view the row kernels walk */
    size_t N, C, Sp, G, cpg;  /* group norm */
    int    nhwc;
    int    gn_fused;          /* group norm NCHW: one row of cpg*Sp per (n, g) */
    size_t gn_cw;             /* > 0: group norm NHWC on CPUs, gn_cw channels of a sample per work-item */
    size_t nstat, nper;       /* statistics rows and values per statistic */
    /* row walk: S segments of Lseg per row (S == 1: fused), lanes per task
     * (1, or LX sharing it), tasks per lane or work-group, work-groups */
    size_t S, Lseg, lpr, tpi, groups;
    int    sub_ok; /* set before plan_rows: lpr may lie between 1 and LX */
    size_t Rc, Kc;            /* group norm NHWC column walk: Kc chunks of Rc rows per sample */
    int    cs;                /* ... through batch norm's column streams (CPUs) */
    size_t state_off, mtab_off; /* their state and (backward) per-(n, c) means, bytes into scratch */
    size_t Q;                 /* partials per statistics row */
    size_t RC, K;             /* layer/RMS norm dgamma/dbeta: K chunks of RC rows */
    /* layer/RMS norm backward with dgamma/dbeta fused into the row walk
     * (owners > 0): owners of 6 column planes each, tasks per lane or
     * work-group and work-groups of that walk */
    size_t owners, btpi, bgroups;
    int    regs;                /* GPUs: those sums in registers (rn_bwd_regs), partials for rn_col_combine */
    size_t coef_n, part_n, col_n; /* scratch real4 counts */
    size_t chunk, par;        /* values per lane or work-group, work-items to fill the device */
    int    fused;             /* -1 heuristic; 0, 1: the fused walk off, on where it applies */
    size_t part_off, col_off, fwd_bytes, bwd_bytes;
} rn_plan;

static size_t align128(size_t v) { return clnorm_round_up(v, 128); }

/* The sizes and fused choice for a shape class (direction dir, walk kind,
 * values per statistic, statistics): the tuner's, where it measured the
 * class (or the one it forces while measuring), else the heuristic's. */
static void plan_choice(const clnorm_context *ctx, rn_plan *p, char dir, int walk, size_t slice,
                        size_t count)
{
    clnorm_choice ch = ctx->forcing ? ctx->force
                                    : clnorm_lookup_choice(ctx, clnorm_shape_key(dir, walk, slice, count));
    p->chunk = ch.chunk ? ch.chunk : ctx->tune.chunk;
    p->par   = ch.par ? ch.par : ctx->tune.min_parallel;
    p->fused = ctx->tune.no_fused ? 0 : ch.fused;
}

/* Splits R rows of L values into tasks: lanes per task (1, or the whole
 * work-group once a row fills it), segments per row (only when the rows
 * alone cannot fill the device and a segment stays long), tasks per lane or
 * work-group so that each walks about p->chunk values. */
static void plan_rows(const clnorm_context *ctx, size_t R, size_t L, rn_plan *p)
{
    const clnorm_tuning *t  = &ctx->tune;
    size_t               lx = t->lx, minp = p->par;
    p->lpr                  = lx > 1 && L >= 8 * lx ? lx : 1;
    if (lx > 1 && p->lpr == 1 && p->sub_ok) {
        /* GPUs, short rows: a run of lanes per row, two blocks of 8 each,
         * rather than a lone lane walking a row (strided lanes, and a
         * quarter of the work-items: 32768 rows of 128 left an H100 at half
         * its copy speed) */
        size_t want = clnorm_div_up(L, 16), lpr = 1;
        while (lpr < want)
            lpr *= 2;
        p->lpr = lpr;
    }
    p->S                    = 1;
    /* GPUs: rows split into segments (a pass more) only when they fill
     * less than a quarter of min_parallel: 2048 rows of 4096 on an H100
     * ran faster whole (0.049 ms) than in three segments (0.055 ms) */
    size_t segp = t->cpu_style ? minp : minp / 4;
    if (R * p->lpr < segp) {
        size_t want    = clnorm_div_up(segp, R * p->lpr);
        size_t seg_min = t->cpu_style ? p->chunk : 32 * lx;
        size_t most    = L / seg_min;
        p->S           = want < most ? want : most;
        if (p->S < 1)
            p->S = 1;
    }
    p->Lseg = L;
    if (p->S > 1) {
        p->Lseg = clnorm_round_up(clnorm_div_up(L, p->S), 8);
        p->S    = clnorm_div_up(L, p->Lseg);
    }
    size_t tasks = R * p->S, len = p->S > 1 ? p->Lseg : L;
    size_t tpi = p->chunk / len, cap = tasks * p->lpr / minp;
    /* CPUs: a lane prefetches its next row while it writes the current
     * one, so even long rows come several to a lane: only a lane's first
     * row is read without that overlap */
    if (t->cpu_style && tpi < t->row_min_tpi)
        tpi = t->row_min_tpi;
    if (tpi > cap)
        tpi = cap;
    /* GPUs, lanes sharing rows: a task per work-group; the device's own
     * scheduler spreads them (layer norm 16384x1024 on an H100: 0.063 ms,
     * against 0.069 ms at 3 tasks each) */
    if (!t->cpu_style && p->lpr > 1)
        tpi = 1;
    p->tpi    = tpi < 1 ? 1 : tpi;
    p->groups = clnorm_div_up(tasks, p->tpi * (lx / p->lpr)); /* lx/lpr tasks at once */
}

/* Scratch: apply/dx coefficients, partials, then column partials (layer/RMS
 * dgamma/dbeta) or the per-(n, c) table (group norm dgamma/dbeta). */
static void plan_scratch(rn_plan *p)
{
    size_t r4  = 4 * p->psize;
    p->part_off  = align128(p->coef_n * r4);
    p->col_off   = p->part_off + align128(p->part_n * r4);
    p->fwd_bytes = p->col_off;
    p->bwd_bytes = p->col_off + align128(p->col_n * r4);
}

/* Columns one rn_col_part work-item sums: 8*COLV, COLV as the kernel
 * derives it from LX (8 vectors on coarse CPU work-items, 1 on GPUs). */
static size_t col_width(const clnorm_context *ctx) { return ctx->tune.lx == 1 ? 64 : 8; }

static void plan_norm(const clnorm_context *ctx, rn_plan *p, int backward)
{
    plan_choice(ctx, p, backward ? 'L' : 'l', CLNORM_WALK_COLS, p->L, p->R);
    p->sub_ok = 1; /* rn_fwd_sub and rn_bwd_sub take 1 < lpr < LX */
    plan_rows(ctx, p->R, p->L, p);
    p->nstat = p->R;
    p->nper  = p->L;
    p->Q     = p->S;
    if (p->S > 1) {
        p->coef_n = p->R;
        p->part_n = p->R * p->S;
    }
    /* dgamma/dbeta fused into the dx walk: each owner of rows keeps 6 planes
     * of L column sums in scratch (rownorm.cl). Worth it while those planes
     * cost well under the two tensor reads of a separate column pass:
     * owners <= R/16. Fewer, longer owners than the plain walk, but
     * enough to fill the device (a tuned choice can take it regardless). */
    const clnorm_tuning *t = &ctx->tune;
    int sub = p->lpr > 1 && p->lpr < t->lx; /* rn_bwd_sub: rows of at most 16*lpr */
    /* GPUs: the sums in registers (below), where the rows make at least
     * half the owners wanted at 16 rows each: 196 owners ran 8192x768
     * slower than the separate pass (0.129 against 0.093 ms), and 128
     * owners of 4096-value rows (sums in local memory, reverted) 2048x4096
     * (0.223 against 0.118 ms). */
    if (!t->cpu_style && p->S == 1 && p->fused != 0 && (p->lpr == t->lx || sub) && p->L % 8 == 0 &&
        p->L <= RN_NB * 8 * t->lx && (p->R / 16 >= 3 * p->par / 2048 || p->fused == 1)) {
        /* GPUs, rows of up to RN_NB blocks of 8 per lane: rn_bwd_regs (or
         * rn_bwd_sub for short rows) keeps each lane's column sums in
         * registers over its owner's rows and writes them once as partials
         * for rn_col_combine: a read of x and dy in all, plus 16 bytes per
         * column per owner. About 6 owners per compute unit (3*par/1024),
         * of 16 to 64 rows: measured on an H100, 16384x1024 ran in 0.141 ms
         * with 512 owners of 32 rows and 0.196 ms with 2048 of 8 (the
         * partials and their merge), 8192x768 in 0.129 ms with 196 owners
         * of 42 (too few to fill it; the separate pass took 0.093), and
         * 32768x128 in 0.062 ms with 1024 owners of 32 against 0.080 with
         * 2048 of 16. */
        size_t owners = 3 * p->par / 1024, per = clnorm_div_up(p->R, owners ? owners : 1);
        per           = per < 16 ? 16 : per > 64 ? 64 : per;
        if (sub) {
            size_t rpt = t->lx / p->lpr; /* whole tasks of lx/lpr rows */
            per        = clnorm_round_up(per, rpt);
            if (per > clnorm_round_up(p->R, rpt))
                per = clnorm_round_up(p->R, rpt);
        } else if (per > p->R) {
            per = p->R;
        }
        p->regs    = 1;
        p->btpi    = per;
        p->bgroups = clnorm_div_up(p->R, per);
        p->owners  = p->bgroups;
        p->K       = p->owners;
        p->col_n   = p->owners * p->L;
        plan_scratch(p);
        return;
    }
    /* The planes on GPUs: only when a tuned choice asks for them, for
     * rows the register sums do not take. The planes live in memory there,
     * not in a core's cache: their read-modify-writes per row, and owners
     * capped at R/16, made them slower on an H100 than the separate column
     * pass (16384x1024: 0.153 ms against 0.201 ms with the planes). */
    if (p->S == 1 && p->fused != 0 && (t->cpu_style || (p->lpr == t->lx && p->fused == 1))) {
        size_t want = t->cpu_style ? 2 * p->par : p->par / (8 * t->lx);
        size_t need = t->cpu_style ? p->par : want / 2;
        size_t cap  = p->R / 16;
        if (want < 1)
            want = 1;
        if (p->fused == 1 && cap < need)
            need = cap = cap < 1 ? 1 : cap;
        if (cap >= need && cap >= 1) {
            size_t owners = want < cap ? want : cap;
            size_t per    = clnorm_div_up(p->R, owners); /* rows per owner */
            /* an owner is a work-group: of one lane (CPUs) or sharing rows */
            p->btpi    = per;
            p->bgroups = clnorm_div_up(p->R, p->btpi);
            p->owners  = p->bgroups;
            p->col_n = clnorm_div_up(p->owners * p->L * 6, 4); /* 6 planes of L */
            plan_scratch(p);
            return;
        }
    }
    /* dgamma/dbeta in their own pass: enough (column block, row chunk)
     * work-items to fill the device; one chunk writes the outputs directly. */
    size_t ncb = clnorm_div_up(p->L, col_width(ctx));
    p->K       = clnorm_div_up(p->par, ncb);
    if (p->K > p->R)
        p->K = p->R;
    p->RC = clnorm_div_up(p->R, p->K);
    if (p->RC < t->part_rows_min)
        p->RC = t->part_rows_min < p->R ? t->part_rows_min : p->R;
    p->K = clnorm_div_up(p->R, p->RC);
    if (p->K > 1)
        p->col_n = p->K * p->L;
    plan_scratch(p);
}

/* Group norm channels last on a CPU (gn_fwd_cfused, gn_bwd_cfused): the
 * channels a work-item owns, whole groups in whole vectors of 16 (the
 * width the kernels' walks take on CPUs), 32 to 80 and dividing C, with
 * the sample's rows of them within the channels-last fused block (cached
 * between the two walks) and work-items enough to keep every compute unit
 * busy; the widest such, or 0. */
static size_t gn_cf_width(const clnorm_context *ctx, const rn_plan *p, int backward)
{
    const clnorm_tuning *t = &ctx->tune;
    size_t a = p->cpg, b = 16;
    while (b) {
        size_t r = a % b;
        a        = b;
        b        = r;
    }
    size_t u = p->cpg / a * 16; /* lcm(cpg, 16) */
    if (!t->cpu_style || t->no_gncf || p->fused == 0 || u > GN_CF_CHANNELS || p->C % u ||
        p->Sp * p->cpg >= ((size_t)1 << 23) || p->N * p->C > UINT_MAX)
        return 0;
    /* Mid-sized tensors mostly stay with the column streams, whose second
     * read the last-level cache serves there (4.7 - 16 MB on a 32 MB L3,
     * rows of 4 blocks or less: blocks at 0.79 - 1.09x of their speed
     * forward, 0.87 - 1.15x backward): blocks on tensors of up to four
     * blocks' budget, where one launch against four pays (1.3 - 2.6 MB:
     * 1.29 - 2.94x forward, 1.41 - 3.66x backward; 4 MB, (2,64,64,128):
     * 0.89x and 1.15x), or past twice the streaming-store threshold (1.1 -
     * 1.6x at 32 - 100 MB). Between the two, rows of 8 blocks or more
     * (below). */
    size_t bytes = p->total * p->esize;
    int    mid   = bytes > 4 * t->cfuse_max_block && bytes / 2 < t->nt_min_bytes;
    /* two work-items per compute unit (or the tuner's fewer) balance well
     * enough; on tensors of up to four budgets one does, against the
     * streams' launches ((1,32,32,128) and (2,16,16,64), two blocks: 1.37 -
     * 1.46x forward, 1.61 - 1.74x backward) */
    size_t cu = ctx->info.compute_units ? ctx->info.compute_units : 1, least = 2 * cu;
    if (bytes <= 4 * t->cfuse_max_block)
        least = cu;
    if (least > p->par)
        least = p->par;
    /* Past twice the threshold the column streams read memory twice, and a
     * block may outgrow L2 (its second walk then partly from the last-level
     * cache) up to 2.5 budgets, when it holds a quarter of each row or more:
     * on the 2-core EPYC (1 MB L2, 32 MB L3) blocks of 1.3 - 2.4 MB so ran
     * 1.04 - 1.15x forward and 1.12 - 1.46x backward; blocks of 3.2 and
     * 4.2 MB, or of an eighth of the row or less (2.1 MB), 0.70 - 1.0x. */
    int big = bytes / 2 >= t->nt_min_bytes;
    for (size_t cw = GN_CF_CHANNELS / u * u; cw >= u && cw >= 32; cw -= u) { /* 16: measured slower */
        size_t block = p->Sp * cw * p->esize;
        if (p->C % cw == 0 && p->N * (p->C / cw) >= least &&
            (block <= t->cfuse_max_block || (big && 4 * cw >= p->C && 2 * block <= 5 * t->cfuse_max_block))) {
            /* Mid-sized tensors whose rows hold 8 blocks or more (C >= 512)
             * took them, alternated with the streams in one process on the
             * EPYC (2 cores, 1 MB L2, 32 MB L3), 5 - 31 MB: backward 1.10 -
             * 1.73x in 14 shapes of 14 (C = 512 - 2560); forward 1.05 -
             * 1.70x with blocks of 80 channels (groups of 20, 40, 80: the
             * diffusion U-Nets' 32 groups of 640, 1280, 2560) in 9 of 9,
             * but 0.76 - 1.14x with 64 (C = 512, 1024) */
            if (mid && (8 * cw > p->C || (!backward && cw < GN_CF_CHANNELS)))
                return 0;
            return cw;
        }
    }
    return 0;
}

static void plan_groupnorm(const clnorm_context *ctx, rn_plan *p, int backward)
{
    const clnorm_tuning *t = &ctx->tune;
    p->nstat               = p->N * p->G;
    p->nper                = p->cpg * p->Sp;
    plan_choice(ctx, p, backward ? 'G' : 'g', p->nhwc ? CLNORM_WALK_ROWS : CLNORM_WALK_COLS, p->nper,
                p->nstat);
    if (p->nhwc && (p->gn_cw = gn_cf_width(ctx, p, backward)) != 0) {
        p->col_n = p->N * p->C; /* the (n, c) table for dgamma/dbeta */
        plan_scratch(p);
        return;
    }
    if (p->nhwc && t->cpu_style && p->N * p->Sp <= UINT_MAX && p->C <= UINT_MAX / 4) {
        /* CPUs: batch norm's column streams, a sample at a time: a work-item
         * walks whole rows of C in memory order, in chunks enough to fill
         * the device but of 16 rows at least (the streams' blocks), and
         * under 2^23 rows (exact fp32 counts) */
        size_t kc = clnorm_div_up(p->par, p->N), most = clnorm_div_up(p->Sp, 16);
        if (kc > most)
            kc = most;
        size_t rc = clnorm_div_up(p->Sp, kc ? kc : 1);
        if (rc > ((size_t)1 << 23))
            rc = (size_t)1 << 23;
        p->cs = 1;
        p->Rc = rc;
        p->Kc = clnorm_div_up(p->Sp, rc);
        p->Q  = p->cpg * p->Kc;
    } else if (p->nhwc) {
        size_t rc = p->chunk < p->Sp ? p->chunk : p->Sp;
        while (p->N * p->C * clnorm_div_up(p->Sp, rc) < p->par && rc / 2 >= t->part_rows_min)
            rc /= 2;
        p->Rc = rc;
        p->Kc = clnorm_div_up(p->Sp, rc);
        p->Q  = p->cpg * p->Kc;
    } else {
        /* a group of a sample is contiguous: cpg*Sp values. While the groups
         * alone fill the device, one walk per group (twice, cache-hot);
         * otherwise (n, c) rows of Sp, split further when long. */
        p->R = p->N * p->G;
        p->L = p->cpg * p->Sp;
        plan_rows(ctx, p->R, p->L, p);
        if (p->S == 1 && p->fused != 0) {
            p->gn_fused = 1;
            p->col_n    = p->N * p->C; /* the (n, c) table for dgamma/dbeta */
            plan_scratch(p);
            return;
        }
        p->R = p->N * p->C;
        p->L = p->Sp;
        plan_rows(ctx, p->R, p->L, p);
        p->Q = p->cpg * p->S;
    }
    p->coef_n = p->N * p->C;
    p->part_n = p->nstat * p->Q;
    p->col_n  = p->N * p->C;
    if (p->cs) {
        /* after the partials: the streams' state (a real4 per column per
         * work-item), then the table of means */
        size_t r4    = 4 * p->psize;
        p->state_off = align128(p->coef_n * r4) + p->part_n * r4;
        p->mtab_off  = p->state_off + p->N * p->Kc * p->C * r4;
        p->part_n += p->N * p->Kc * p->C + clnorm_div_up(p->N * p->C, 4);
    }
    plan_scratch(p);
}

/* Shape checks shared by the descriptors: dims nonzero, the element count
 * within what the kernels index. */
static clnorm_status check_dims(clnorm_context *ctx, const char *fn, size_t ndim, size_t lo,
                                const size_t *dims, size_t *total)
{
    if (ndim < lo || ndim > CLNORM_MAX_DIMS)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_SHAPE, "%s: desc->ndim is %zu, expected %zu..%d", fn,
                           ndim, lo, CLNORM_MAX_DIMS);
    size_t t = 1;
    for (size_t i = 0; i < ndim; ++i) {
        if (dims[i] == 0)
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_SHAPE, "%s: desc->dims[%zu] is 0", fn, i);
        if (!clnorm_mul_ok(t, dims[i], &t))
            return clnorm_fail(ctx, CLNORM_ERROR_SIZE_OVERFLOW,
                               "%s: the element count overflows size_t at desc->dims[%zu]", fn, i);
    }
    /* element indices are 64-bit in the kernels; keep byte sizes far from
     * overflow, as batch norm does */
    if (t > ((size_t)1 << 52) / 8)
        return clnorm_fail(ctx, CLNORM_ERROR_SIZE_OVERFLOW,
                           "%s: %zu elements exceed the kernels' index range (2^49)", fn, t);
    *total = t;
    return CLNORM_SUCCESS;
}

#define CHECK(expr)               \
    do {                          \
        st = (expr);              \
        if (st != CLNORM_SUCCESS) \
            return st;            \
    } while (0)

#define CHECK_SEQ(expr)           \
    do {                          \
        st = (expr);              \
        if (st != CLNORM_SUCCESS) \
            goto done;            \
    } while (0)

static clnorm_status check_norm_desc(clnorm_context *ctx, const char *fn, const clnorm_norm_desc *d,
                                     enum rn_op op, int backward, rn_plan *p)
{
    clnorm_status st;
    memset(p, 0, sizeof *p);
    if (!d)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "%s: desc is NULL", fn);
    CHECK(clnorm_check_dtype(ctx, d->dtype));
    size_t total = 0;
    CHECK(check_dims(ctx, fn, d->ndim, 1, d->dims, &total));
    long n = (long)d->ndim;
    if (d->axis < -n || d->axis >= n)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_AXIS, "%s: desc->axis is %d, expected %ld..%ld", fn,
                           d->axis, -n, n - 1);
    size_t axis = (size_t)(d->axis < 0 ? d->axis + n : d->axis);
    CHECK(clnorm_check_epsilon(ctx, fn, d->dtype, d->epsilon));
    p->op    = op;
    p->dtype = d->dtype;
    p->esize = clnorm_dtype_size(d->dtype);
    p->psize = clnorm_param_size(d->dtype);
    p->total = total;
    p->R     = 1;
    for (size_t i = 0; i < axis; ++i)
        p->R *= d->dims[i];
    p->L = total / p->R;
    plan_norm(ctx, p, backward);
    return CLNORM_SUCCESS;
}

static clnorm_status check_gn_desc(clnorm_context *ctx, const char *fn, const clnorm_groupnorm_desc *d,
                                   int instance, int backward, rn_plan *p)
{
    clnorm_status st;
    memset(p, 0, sizeof *p);
    if (!d)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "%s: desc is NULL", fn);
    if (d->layout != CLNORM_NCHW && d->layout != CLNORM_NHWC)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_LAYOUT,
                           "%s: desc->layout %d is not a clnorm_layout", fn, (int)d->layout);
    CHECK(clnorm_check_dtype(ctx, d->dtype));
    size_t total = 0;
    CHECK(check_dims(ctx, fn, d->ndim, 2, d->dims, &total));
    int    nhwc = d->layout == CLNORM_NHWC;
    size_t N = d->dims[0], C = nhwc ? d->dims[d->ndim - 1] : d->dims[1];
    size_t G = instance ? C : d->num_groups;
    if (G == 0 || C % G != 0)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_GROUPS,
                           "%s: desc->num_groups is %zu; it must be positive and divide C = %zu", fn, G,
                           C);
    CHECK(clnorm_check_epsilon(ctx, fn, d->dtype, d->epsilon));
    p->op    = OP_GN;
    p->dtype = d->dtype;
    p->esize = clnorm_dtype_size(d->dtype);
    p->psize = clnorm_param_size(d->dtype);
    p->total = total;
    p->N     = N;
    p->C     = C;
    p->Sp    = total / (N * C);
    p->G     = G;
    p->cpg   = C / G;
    p->nhwc  = nhwc;
    plan_groupnorm(ctx, p, backward);
    return CLNORM_SUCCESS;
}

/* ---- public: descriptors and workspace ------------------------------------ */

clnorm_status clnorm_norm_desc_init(clnorm_norm_desc *desc, size_t ndim, const size_t *dims, int axis)
{
    if (!desc || !dims)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_ARGUMENT, "clnorm_norm_desc_init: %s is NULL",
                           desc ? "dims" : "desc");
    if (ndim < 1 || ndim > CLNORM_MAX_DIMS)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_SHAPE,
                           "clnorm_norm_desc_init: ndim is %zu, expected 1..%d", ndim, CLNORM_MAX_DIMS);
    memset(desc, 0, sizeof *desc);
    desc->dtype = CLNORM_F32;
    desc->ndim  = ndim;
    memcpy(desc->dims, dims, ndim * sizeof *dims);
    desc->axis    = axis;
    desc->epsilon = 1e-5;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_groupnorm_desc_init(clnorm_groupnorm_desc *desc, clnorm_layout layout, size_t ndim,
                                         const size_t *dims, size_t num_groups)
{
    if (!desc || !dims)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_ARGUMENT, "clnorm_groupnorm_desc_init: %s is NULL",
                           desc ? "dims" : "desc");
    if (ndim < 2 || ndim > CLNORM_MAX_DIMS)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_SHAPE,
                           "clnorm_groupnorm_desc_init: ndim is %zu, expected 2..%d", ndim,
                           CLNORM_MAX_DIMS);
    memset(desc, 0, sizeof *desc);
    desc->dtype  = CLNORM_F32;
    desc->layout = layout;
    desc->ndim   = ndim;
    memcpy(desc->dims, dims, ndim * sizeof *dims);
    desc->num_groups = num_groups;
    desc->epsilon    = 1e-5;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_norm_workspace_size(clnorm_context *ctx, const clnorm_norm_desc *desc, size_t *bytes)
{
    static const char fn[] = "clnorm_norm_workspace_size";
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_CONTEXT, "%s: ctx is NULL", fn);
    if (!bytes)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "%s: bytes is NULL", fn);
    /* either direction's plan (tuned choices can differ) */
    rn_plan       f, b;
    clnorm_status st;
    CHECK(check_norm_desc(ctx, fn, desc, OP_LN, 0, &f));
    CHECK(check_norm_desc(ctx, fn, desc, OP_LN, 1, &b));
    *bytes = f.fwd_bytes > b.bwd_bytes ? f.fwd_bytes : b.bwd_bytes;
    return CLNORM_SUCCESS;
}

static clnorm_status gn_workspace(clnorm_context *ctx, const char *fn, const clnorm_groupnorm_desc *desc,
                                  int instance, size_t *bytes)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_CONTEXT, "%s: ctx is NULL", fn);
    if (!bytes)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "%s: bytes is NULL", fn);
    rn_plan       f, b;
    clnorm_status st;
    CHECK(check_gn_desc(ctx, fn, desc, instance, 0, &f));
    CHECK(check_gn_desc(ctx, fn, desc, instance, 1, &b));
    *bytes = f.fwd_bytes > b.bwd_bytes ? f.fwd_bytes : b.bwd_bytes;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_groupnorm_workspace_size(clnorm_context *ctx, const clnorm_groupnorm_desc *desc,
                                              size_t *bytes)
{
    return gn_workspace(ctx, "clnorm_groupnorm_workspace_size", desc, 0, bytes);
}

clnorm_status clnorm_instancenorm_workspace_size(clnorm_context *ctx, const clnorm_groupnorm_desc *desc,
                                                 size_t *bytes)
{
    return gn_workspace(ctx, "clnorm_instancenorm_workspace_size", desc, 1, bytes);
}

/* ---- enqueue helpers ------------------------------------------------------ */

/* Scalar kernel arguments in the compute type. */
typedef union { float f; double d; } real_arg;
static real_arg mk_real(const rn_plan *p, double v)
{
    real_arg r;
    if (p->psize == 8)
        r.d = v;
    else
        r.f = (float)v;
    return r;
}
#define KREAL(p, v) { (p)->psize, &(v) }

/* Scratch of the given size, or none at all when nothing is needed and the
 * caller gave no workspace (no allocation for the fused paths). */
static clnorm_status get_scratch(clnorm_context *ctx, const clnorm_norm_args *a, size_t bytes, cl_mem *ws,
                                 size_t *wsoff)
{
    *ws    = NULL;
    *wsoff = 0;
    if (bytes == 0 && !a->workspace.mem)
        return CLNORM_SUCCESS;
    return clnorm_get_scratch(ctx, a->workspace, bytes, ws, wsoff);
}

/* Runs a row kernel over the plan's work-groups. */
static clnorm_status run_groups(clnorm_context *ctx, clnorm_seq *seq, cl_kernel k, size_t groups)
{
    size_t lx = ctx->tune.lx, g[1] = {groups * lx}, l[1] = {lx};
    return clnorm_seq_run(ctx, seq, k, 1, g, l);
}

static clnorm_status run_rows(clnorm_context *ctx, clnorm_seq *seq, cl_kernel k, const rn_plan *p)
{
    return run_groups(ctx, seq, k, p->groups);
}

/* Runs a kernel with one work-item per index in [0, n). */
static clnorm_status run_1d(clnorm_context *ctx, clnorm_seq *seq, cl_kernel k, size_t n)
{
    size_t lc = n < 64 ? n : 64, g[1] = {clnorm_round_up(n, lc)}, l[1] = {lc};
    return clnorm_seq_run(ctx, seq, k, 1, g, l);
}

/* Runs a per-row merge (rn_stats_combine, rn_bwd_combine) over n rows: a
 * work-item per row, or with lanes a work-group per row. */
static clnorm_status run_rowmerge(clnorm_context *ctx, clnorm_seq *seq, cl_kernel k, size_t n)
{
    return ctx->tune.lx == 1 ? run_1d(ctx, seq, k, n) : run_groups(ctx, seq, k, n);
}

/* Runs a column merge (rn_col_planes, rn_col_combine) over n columns: a
 * work-item per column, or with 16 lanes or more a work-group per 8
 * columns (the kernels' CSLICE_W), its lanes splitting the terms. */
static clnorm_status run_colmerge(clnorm_context *ctx, clnorm_seq *seq, cl_kernel k, size_t n)
{
    return ctx->tune.lx < 16 ? run_1d(ctx, seq, k, n) : run_groups(ctx, seq, k, clnorm_div_up(n, 8));
}

/* Group norm channels last on GPUs: launches gn_apply_cols or gn_dx_cols
 * over blocks of GN_ROWS rows, B per sample. */
static clnorm_status run_gn_cols(clnorm_context *ctx, clnorm_seq *seq, cl_kernel k, const rn_plan *p,
                                 size_t B)
{
    size_t lw = p->C < 64 ? p->C : 64;
    size_t g[2] = {clnorm_round_up(p->C, lw), p->N * B}, l[2] = {lw, 1};
    return clnorm_seq_run(ctx, seq, k, 2, g, l);
}

/* Runs a group norm NHWC column kernel: work-items (c, k, n). */
static clnorm_status run_cols(clnorm_context *ctx, clnorm_seq *seq, cl_kernel k, const rn_plan *p)
{
    size_t lw = p->C < 64 ? p->C : 64;
    size_t g[3] = {clnorm_round_up(p->C, lw), p->Kc, p->N}, l[3] = {lw, 1, 1};
    return clnorm_seq_run(ctx, seq, k, 3, g, l);
}

/* The row length of the elementwise passes (rn_apply, rn_dx): a row per
 * coefficient, (n, c) rows of Sp for group norm channels first. */
static cl_ulong ew_len(const rn_plan *p) { return p->op == OP_GN ? p->Sp : p->L; }

/* Whether the tensor-sized output goes out with streaming stores. */
static cl_int stream_out(const clnorm_context *ctx, const rn_plan *p)
{
    return ctx->tune.nt && p->total * p->esize >= ctx->tune.nt_min_bytes;
}

/* Group norm channels last through batch norm's column streams (p->cs): the
 * tensor as N*Sp rows of C in N segments of Sp rows, each in Kc chunks; the
 * coefficients as 4 planes of C per sample at the start of scratch. */
static clnorm_cstream cstream_of(const rn_plan *p, const clnorm_norm_args *a, size_t wsoff, cl_mem ws)
{
    clnorm_cstream c = {.dtype = p->dtype, .O = (cl_uint)(p->N * p->Sp), .W = (cl_uint)p->C,
                        .Sp = (cl_uint)p->Sp, .R = (cl_uint)p->Rc, .Kc = (cl_uint)p->Kc,
                        .K = (cl_uint)(p->N * p->Kc), .x = a->x.mem, .xoff = a->x.offset, .ws = ws,
                        .soff = (wsoff + p->state_off) / p->psize, .cofs = wsoff / p->psize, .I = 1};
    /* rows per work-item of the elementwise passes, as batch norm's */
    size_t r = clnorm_div_up(p->chunk * 4, p->C), most = p->N * p->Sp / (2 * p->par);
    if (r > most)
        r = most;
    c.rpw = (cl_uint)(r < 1 ? 1 : r);
    return c;
}

/* Group norm channels last, fused on a CPU (p->gn_cw): what both directions pass. */
static clnorm_gncf gncf_of(const rn_plan *p, const clnorm_norm_args *a)
{
    clnorm_gncf g = {.dtype = p->dtype, .psize = p->psize, .N = (cl_uint)p->N, .Sp = (cl_uint)p->Sp,
                     .C = (cl_uint)p->C, .cpg = (cl_uint)p->cpg, .cw = (cl_uint)p->gn_cw,
                     .x = a->x.mem, .xoff = a->x.offset, .gamma = a->gamma.mem, .goff = a->gamma.offset,
                     .beta = a->beta.mem, .boff = a->beta.offset, .mean = a->mean.mem,
                     .moff = a->mean.offset, .inv = a->invstd.mem, .ioff = a->invstd.offset};
    return g;
}

/* Group norm channels first on a CPU with streaming stores: whether its
 * rows take gn_fwd_lead, how many rows deep (*lead: gn_lead_bytes of rows
 * ahead, 1 for rows that long) and over how many work-items (*items: four
 * per compute unit, each with a run of four depths' rows or more). */
static int gn_lead(const clnorm_context *ctx, const rn_plan *p, cl_int stream, size_t *lead, size_t *items)
{
    const clnorm_tuning *t = &ctx->tune;
    if (!t->cpu_style || t->lx != 1 || !stream || t->no_pfused || t->gn_lead_bytes == 0 || p->R > UINT_MAX)
        return 0;
    size_t row = p->L * p->esize, d = clnorm_div_up(t->gn_lead_bytes, row);
    size_t cu  = ctx->info.compute_units ? ctx->info.compute_units : 1;
    if (d > GN_LEAD_MAX || p->R < 4 * cu * 4 * d)
        return 0;
    *lead  = d;
    *items = 4 * cu;
    return 1;
}

/* ---- forward -------------------------------------------------------------- */

static clnorm_status enqueue_forward(clnorm_context *ctx, clnorm_seq *seq, const rn_plan *p,
                                     const clnorm_norm_args *a, double eps, cl_mem ws, size_t wsoff)
{
    clnorm_status st;
    cl_kernel     k;
    clnorm_dtype  dt   = p->dtype;
    size_t        r4   = 4 * p->psize;
    cl_ulong      xoff = a->x.offset, yoff = a->y.offset, goff = a->gamma.offset, boff = a->beta.offset;
    cl_ulong      moff = a->mean.offset, ioff = a->invstd.offset;
    cl_ulong      cofs = wsoff / r4, poff = (wsoff + p->part_off) / r4;
    cl_ulong      R = p->R, L = p->L, S = p->S, Lseg = p->Lseg;
    cl_uint       tpi    = (cl_uint)p->tpi, lpr = (cl_uint)p->lpr;
    unsigned      shared = p->lpr > 1; /* the *_groups variant */
    int           sub    = p->lpr > 1 && p->lpr < ctx->tune.lx;
    cl_int        rms   = p->op == OP_RMS;
    real_arg      reps  = mk_real(p, eps);
    cl_mem        nomem = NULL;
    cl_mem        mean  = rms ? nomem : a->mean.mem;
    cl_mem        beta  = rms ? nomem : a->beta.mem;
    cl_int        stream = stream_out(ctx, p);
    size_t        lead = 0, items = 0;

    if (p->gn_fused) {
        /* rows read ahead of the rows written (gn_fwd_lead), or the walk by row */
        int      ahead = gn_lead(ctx, p, stream, &lead, &items);
        cl_ulong G = p->G, cpg = p->cpg, Sp = p->Sp;
        cl_uint  tpi_g  = ahead ? (cl_uint)clnorm_div_up(p->R, items) : tpi, lead_l = (cl_uint)lead;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, ahead ? K_GN_FWD_LEAD : K_GN_FWD + shared, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->y.mem), KARG(yoff),
                              KARG(a->gamma.mem), KARG(goff), KARG(a->beta.mem), KARG(boff),
                              KARG(a->mean.mem), KARG(moff), KARG(a->invstd.mem), KARG(ioff),
                              KARG(R), KARG(G), KARG(cpg), KARG(Sp), KARG(tpi_g), KREAL(p, reps),
                              KARG(stream), KARG(lead_l)};
        CHECK(clnorm_set_args(ctx, k, args, ahead ? 20 : 19));
        if (ahead)
            return run_groups(ctx, seq, k, items);
        return run_rows(ctx, seq, k, p);
    }
    if (p->gn_cw) {
        clnorm_gncf g = gncf_of(p, a);
        g.out         = a->y.mem;
        g.ooff        = yoff;
        g.eps         = eps;
        g.stream      = stream;
        /* blocks in a row per work-item, about four work-items per compute
         * unit, each reading its next block while writing this one's y */
        size_t cu = ctx->info.compute_units ? ctx->info.compute_units : 1;
        size_t nb = p->N * (p->C / p->gn_cw), per = ctx->tune.no_pfused ? 1 : nb / (4 * cu);
        g.nbw = (cl_uint)(per > 1 ? per : 1);
        return clnorm_gncf_run(ctx, seq, &g, 0);
    }
    if (p->op != OP_GN && p->S == 1) {
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, sub ? K_FWD_SUB : K_FWD + shared, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->y.mem), KARG(yoff),
                              KARG(a->gamma.mem), KARG(goff), KARG(beta), KARG(boff),
                              KARG(mean), KARG(moff), KARG(a->invstd.mem), KARG(ioff),
                              KARG(R), KARG(L), KARG(tpi), KARG(rms), KREAL(p, reps), KARG(stream),
                              KARG(lpr)};
        CHECK(clnorm_set_args(ctx, k, args, 19));
        return run_rows(ctx, seq, k, p);
    }
    if (p->cs) {
        clnorm_cstream c = cstream_of(p, a, wsoff, ws);
        c.poff           = poff;
        CHECK(clnorm_cs_run(ctx, seq, &c, 's'));
    } else if (p->op == OP_GN && p->nhwc) {
        cl_ulong C = p->C, Sp = p->Sp, Rc = p->Rc, Kc = p->Kc;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_GN_STATS_COLS, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(C), KARG(Sp), KARG(Rc), KARG(Kc),
                              KARG(ws), KARG(poff)};
        CHECK(clnorm_set_args(ctx, k, args, 8));
        CHECK(run_cols(ctx, seq, k, p));
    } else {
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_STATS + shared, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(R), KARG(L), KARG(S), KARG(Lseg),
                              KARG(tpi), KARG(rms), KARG(ws), KARG(poff)};
        CHECK(clnorm_set_args(ctx, k, args, 10));
        CHECK(run_rows(ctx, seq, k, p));
    }
    {
        /* layer/RMS norm: one coefficient per row, gamma and beta applied per
         * column; group norm: per (n, c), gamma and beta folded in */
        int      gn   = p->op == OP_GN;
        cl_ulong rows = p->nstat, Q = p->Q, cpg = gn ? p->cpg : 1, G = gn ? p->G : 1;
        cl_ulong Kcs  = p->cs ? p->Kc : 0;
        real_arg rn   = mk_real(p, (double)p->nper);
        cl_mem   cg = gn ? a->gamma.mem : nomem, cb = gn ? a->beta.mem : nomem;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_STATS_COMBINE, &k));
        clnorm_karg args[] = {KARG(ws),   KARG(poff), KARG(rows), KARG(Q),    KARG(cpg),
                              KARG(G),    KREAL(p, rn), KREAL(p, reps), KARG(rms), KARG(cg),
                              KARG(goff), KARG(cb),   KARG(boff), KARG(mean), KARG(moff),
                              KARG(a->invstd.mem), KARG(ioff), KARG(ws), KARG(cofs), KARG(Kcs)};
        CHECK(clnorm_set_args(ctx, k, args, 20));
        CHECK(run_rowmerge(ctx, seq, k, p->nstat));
    }
    if (p->cs) {
        clnorm_cstream c = cstream_of(p, a, wsoff, ws);
        c.out            = a->y.mem;
        c.ooff           = yoff;
        c.stream         = stream;
        return clnorm_cs_run(ctx, seq, &c, 'a');
    }
    if (p->op == OP_GN && p->nhwc) {
        cl_ulong C = p->C, Sp = p->Sp, B = clnorm_div_up(p->Sp, GN_ROWS);
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_GN_APPLY_COLS, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->y.mem), KARG(yoff), KARG(C),
                              KARG(Sp),       KARG(B),    KARG(ws),       KARG(cofs)};
        CHECK(clnorm_set_args(ctx, k, args, 9));
        return run_gn_cols(ctx, seq, k, p, B);
    }
    {
        cl_ulong total = p->total, EL = ew_len(p);
        cl_mem   ag = p->op == OP_GN ? nomem : a->gamma.mem, ab = p->op == OP_GN ? nomem : beta;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_APPLY, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->y.mem), KARG(yoff),
                              KARG(total),    KARG(EL),   KARG(ag),       KARG(goff),
                              KARG(ab),       KARG(boff), KARG(ws),       KARG(cofs)};
        CHECK(clnorm_set_args(ctx, k, args, 12));
        return run_1d(ctx, seq, k, clnorm_div_up(p->total, 8));
    }
}

/* ---- backward ------------------------------------------------------------- */

static clnorm_status enqueue_backward(clnorm_context *ctx, clnorm_seq *seq, const rn_plan *p,
                                      const clnorm_norm_args *a, cl_mem ws, size_t wsoff)
{
    clnorm_status st;
    cl_kernel     k;
    clnorm_dtype  dt   = p->dtype;
    size_t        r4   = 4 * p->psize;
    cl_ulong      xoff = a->x.offset, dyoff = a->dy.offset, dxoff = a->dx.offset;
    cl_ulong      goff = a->gamma.offset, moff = a->mean.offset, ioff = a->invstd.offset;
    cl_ulong      dgoff = a->dgamma.offset, dboff = a->dbeta.offset;
    cl_ulong      cofs = wsoff / r4, poff = (wsoff + p->part_off) / r4, tofs = (wsoff + p->col_off) / r4;
    cl_ulong      R = p->R, L = p->L, S = p->S, Lseg = p->Lseg;
    cl_uint       tpi    = (cl_uint)p->tpi, lpr = (cl_uint)p->lpr;
    unsigned      shared = p->lpr > 1; /* the *_groups variant */
    int           sub    = p->lpr > 1 && p->lpr < ctx->tune.lx;
    cl_int        rms   = p->op == OP_RMS;
    cl_mem        nomem = NULL;
    cl_mem        mean  = rms ? nomem : a->mean.mem;
    cl_mem        dbeta = rms ? nomem : a->dbeta.mem;
    int           grads = a->dgamma.mem || dbeta;
    cl_int        stream = stream_out(ctx, p);

    if (p->op != OP_GN) {
        int fused = grads && p->owners > 0;
        if (grads && !fused) {
            /* dgamma/dbeta first: they read x and dy, which dx may overwrite */
            cl_ulong RC = p->RC, K = p->K;
            CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_COL_PART, &k));
            clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff),  KARG(a->dy.mem), KARG(dyoff),
                                  KARG(mean),     KARG(moff),  KARG(a->invstd.mem), KARG(ioff),
                                  KARG(R),        KARG(L),     KARG(RC),       KARG(K),
                                  KARG(rms),      KARG(ws),    KARG(tofs),     KARG(a->dgamma.mem),
                                  KARG(dgoff),    KARG(dbeta), KARG(dboff)};
            CHECK(clnorm_set_args(ctx, k, args, 19));
            size_t ncb = clnorm_div_up(p->L, col_width(ctx)), lc = ncb < ctx->tune.lx ? ncb : ctx->tune.lx;
            size_t g[2] = {clnorm_round_up(ncb, lc), p->K}, l[2] = {lc, 1};
            CHECK(clnorm_seq_run(ctx, seq, k, 2, g, l));
            if (p->K > 1) {
                CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_COL_COMBINE, &k));
                clnorm_karg cargs[] = {KARG(ws),    KARG(tofs),  KARG(K),     KARG(L),
                                       KARG(a->dgamma.mem), KARG(dgoff), KARG(dbeta), KARG(dboff)};
                CHECK(clnorm_set_args(ctx, k, cargs, 8));
                CHECK(run_colmerge(ctx, seq, k, p->L));
            }
        }
        if (p->S == 1) {
            /* the dx walk; with fused column sums, then their merge over
             * owners: registers' partials (rn_bwd_regs, rn_bwd_sub) through
             * rn_col_combine, the planes through rn_col_planes */
            cl_mem   cacc  = fused ? ws : nomem;
            cl_ulong caoff = fused ? tofs * 4 : 0, K = p->owners;
            cl_uint  btpi  = fused ? (cl_uint)p->btpi : tpi;
            int      kid   = sub ? K_BWD_SUB : K_BWD + shared;
            if (fused && p->regs && !sub)
                kid = K_BWD_REGS;
            if (fused && sub)
                btpi = (cl_uint)(p->btpi / (ctx->tune.lx / p->lpr)); /* rn_bwd_sub counts tasks of lx/lpr rows */
            CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, kid, &k));
            clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->dy.mem),     KARG(dyoff),
                                  KARG(a->dx.mem), KARG(dxoff), KARG(a->gamma.mem), KARG(goff),
                                  KARG(mean),     KARG(moff), KARG(a->invstd.mem), KARG(ioff),
                                  KARG(R),        KARG(L),    KARG(btpi),          KARG(rms),
                                  KARG(cacc),     KARG(caoff), KARG(stream),       KARG(lpr)};
            CHECK(clnorm_set_args(ctx, k, args, 20));
            CHECK(run_groups(ctx, seq, k, fused ? p->bgroups : p->groups));
            if (!fused)
                return CLNORM_SUCCESS;
            cl_ulong moff2 = p->regs ? tofs : caoff;
            CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, p->regs ? K_COL_COMBINE : K_COL_PLANES, &k));
            clnorm_karg cargs[] = {KARG(ws),    KARG(moff2), KARG(K),     KARG(L),
                                   KARG(a->dgamma.mem), KARG(dgoff), KARG(dbeta), KARG(dboff)};
            CHECK(clnorm_set_args(ctx, k, cargs, 8));
            if (!p->regs && ctx->tune.lx == 1)
                return run_1d(ctx, seq, k, clnorm_div_up(p->L, PLANES_W));
            return run_colmerge(ctx, seq, k, p->L);
        }
    }

    if (p->gn_cw) {
        clnorm_gncf g = gncf_of(p, a);
        g.dy          = a->dy.mem;
        g.dyoff       = dyoff;
        g.out         = a->dx.mem;
        g.ooff        = dxoff;
        g.tab         = grads ? ws : nomem;
        g.tofs        = tofs;
        g.stream      = stream;
        CHECK(clnorm_gncf_run(ctx, seq, &g, 1));
        goto col_combine;
    }
    if (p->gn_fused) {
        cl_ulong G = p->G, cpg = p->cpg, Sp = p->Sp;
        cl_mem   tab = grads ? ws : nomem;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_GN_BWD + shared, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->dy.mem),     KARG(dyoff),
                              KARG(a->dx.mem), KARG(dxoff), KARG(a->gamma.mem), KARG(goff),
                              KARG(mean),     KARG(moff), KARG(a->invstd.mem), KARG(ioff),
                              KARG(R),        KARG(G),    KARG(cpg),           KARG(Sp),
                              KARG(tpi),      KARG(tab),  KARG(tofs),          KARG(stream)};
        CHECK(clnorm_set_args(ctx, k, args, 20));
        CHECK(run_rows(ctx, seq, k, p));
        goto col_combine;
    }
    /* partial sums */
    if (p->cs) {
        /* the streams take per-column means: each (n, c)'s group mean */
        cl_ulong G = p->G, cpg = p->cpg, NC = p->N * p->C, mtab = (wsoff + p->mtab_off) / p->psize;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_GN_MEAN_COLS, &k));
        clnorm_karg margs[] = {KARG(mean), KARG(moff), KARG(G), KARG(cpg), KARG(NC), KARG(ws), KARG(mtab)};
        CHECK(clnorm_set_args(ctx, k, margs, 7));
        CHECK(run_1d(ctx, seq, k, p->N * p->C));
        clnorm_cstream c = cstream_of(p, a, wsoff, ws);
        c.dy             = a->dy.mem;
        c.dyoff          = dyoff;
        c.mean           = ws;
        c.moff           = mtab;
        c.mstride        = (cl_uint)p->C;
        c.poff           = poff;
        CHECK(clnorm_cs_run(ctx, seq, &c, 'b'));
    } else if (p->op == OP_GN && p->nhwc) {
        cl_ulong C = p->C, Sp = p->Sp, cpg = p->cpg, Rc = p->Rc, Kc = p->Kc;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_GN_BWD_COLS, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->dy.mem), KARG(dyoff), KARG(mean),
                              KARG(moff),     KARG(C),    KARG(Sp),        KARG(cpg),   KARG(Rc),
                              KARG(Kc),       KARG(ws),   KARG(poff)};
        CHECK(clnorm_set_args(ctx, k, args, 13));
        CHECK(run_cols(ctx, seq, k, p));
    } else {
        cl_ulong mdiv = p->op == OP_GN ? p->cpg : 1;
        cl_mem   g    = p->op == OP_GN ? nomem : a->gamma.mem;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_BWD_PART + shared, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->dy.mem), KARG(dyoff), KARG(g),
                              KARG(goff),     KARG(mean), KARG(moff),      KARG(R),     KARG(L),
                              KARG(S),        KARG(Lseg), KARG(tpi),       KARG(mdiv),  KARG(rms),
                              KARG(ws),       KARG(poff)};
        CHECK(clnorm_set_args(ctx, k, args, 17));
        CHECK(run_rows(ctx, seq, k, p));
    }
    /* per statistics row: dx coefficients (and group norm's (n, c) table) */
    int gn = p->op == OP_GN;
    {
        cl_ulong rows = p->nstat, Q = p->Q, cpg = gn ? p->cpg : 1, G = gn ? p->G : 1;
        cl_ulong Kcs  = p->cs ? p->Kc : 0;
        real_arg rn   = mk_real(p, (double)p->nper);
        cl_mem   g    = gn ? a->gamma.mem : nomem;
        cl_mem   tab  = gn && grads ? ws : nomem;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_BWD_COMBINE, &k));
        clnorm_karg args[] = {KARG(ws),   KARG(poff), KARG(rows),          KARG(Q),    KARG(cpg),
                              KARG(G),    KREAL(p, rn), KARG(rms),         KARG(g),    KARG(goff),
                              KARG(mean), KARG(moff), KARG(a->invstd.mem), KARG(ioff), KARG(ws),
                              KARG(cofs), KARG(tab),  KARG(tofs),          KARG(Kcs)};
        CHECK(clnorm_set_args(ctx, k, args, 19));
        CHECK(run_rowmerge(ctx, seq, k, p->nstat));
    }
    if (p->cs) {
        clnorm_cstream c = cstream_of(p, a, wsoff, ws);
        c.dy             = a->dy.mem;
        c.dyoff          = dyoff;
        c.out            = a->dx.mem;
        c.ooff           = dxoff;
        c.stream         = stream;
        c.use_x          = 1;
        c.gform          = 1;
        CHECK(clnorm_cs_run(ctx, seq, &c, 'd'));
    } else if (gn && p->nhwc) {
        cl_ulong C = p->C, Sp = p->Sp, B = clnorm_div_up(p->Sp, GN_ROWS);
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_GN_DX_COLS, &k));
        clnorm_karg args[] = {KARG(a->x.mem), KARG(xoff), KARG(a->dy.mem), KARG(dyoff), KARG(a->dx.mem),
                              KARG(dxoff),    KARG(C),    KARG(Sp),        KARG(B),     KARG(ws),
                              KARG(cofs)};
        CHECK(clnorm_set_args(ctx, k, args, 11));
        CHECK(run_gn_cols(ctx, seq, k, p, B));
    } else {
        cl_ulong total = p->total, EL = ew_len(p);
        cl_mem   g     = gn ? nomem : a->gamma.mem;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_DX, &k));
        clnorm_karg args[] = {KARG(a->x.mem),  KARG(xoff),  KARG(a->dy.mem), KARG(dyoff),
                              KARG(a->dx.mem), KARG(dxoff), KARG(total),     KARG(EL),
                              KARG(g),         KARG(goff),  KARG(ws),        KARG(cofs)};
        CHECK(clnorm_set_args(ctx, k, args, 12));
        CHECK(run_1d(ctx, seq, k, clnorm_div_up(p->total, 8)));
    }
col_combine:
    if (p->op == OP_GN && grads) {
        cl_ulong K = p->N, W = p->C;
        CHECK(clnorm_get_kernel(ctx, FAMILY_ROWNORM, dt, K_COL_COMBINE, &k));
        clnorm_karg args[] = {KARG(ws), KARG(tofs), KARG(K), KARG(W), KARG(a->dgamma.mem),
                              KARG(dgoff), KARG(a->dbeta.mem), KARG(dboff)};
        CHECK(clnorm_set_args(ctx, k, args, 8));
        CHECK(run_colmerge(ctx, seq, k, p->C));
    }
    return CLNORM_SUCCESS;
}

/* ---- entry points --------------------------------------------------------- */

/* Buffer checks: the tensor, and the vectors (params of L or C values,
 * statistics of nstat values). */
static clnorm_status check_tensor(clnorm_context *ctx, const rn_plan *p, const char *name, clnorm_buffer b)
{
    return clnorm_check_buffer(ctx, name, b, 1, p->total, p->esize);
}

static clnorm_status check_param(clnorm_context *ctx, const rn_plan *p, const char *name, clnorm_buffer b)
{
    return clnorm_check_buffer(ctx, name, b, 0, p->op == OP_GN ? p->C : p->L, p->psize);
}

static clnorm_status check_stat(clnorm_context *ctx, const rn_plan *p, const char *name, clnorm_buffer b,
                                int required)
{
    return clnorm_check_buffer(ctx, name, b, required, p->nstat, p->psize);
}

/* Everything after the descriptor: queue, buffers, scratch, then the
 * commands. No command is enqueued unless every check passed. */
static clnorm_status run_op(clnorm_context *ctx, int backward, const rn_plan *p, double eps,
                            cl_command_queue queue, const clnorm_norm_args *a, cl_uint nwait,
                            const cl_event *wait, cl_event *event)
{
    clnorm_status st;
    int           rms = p->op == OP_RMS;
    CHECK(clnorm_check_queue(ctx, queue, nwait, wait));
    CHECK(check_tensor(ctx, p, "x", a->x));
    if (!backward) {
        CHECK(check_tensor(ctx, p, "y", a->y));
        CHECK(check_param(ctx, p, "gamma", a->gamma));
        if (!rms) {
            CHECK(check_param(ctx, p, "beta", a->beta));
            CHECK(check_stat(ctx, p, "mean", a->mean, 0));
        }
        CHECK(check_stat(ctx, p, "invstd", a->invstd, 0));
    } else {
        CHECK(check_tensor(ctx, p, "dy", a->dy));
        CHECK(check_tensor(ctx, p, "dx", a->dx));
        CHECK(check_param(ctx, p, "gamma", a->gamma));
        CHECK(check_param(ctx, p, "dgamma", a->dgamma));
        if (!rms) {
            CHECK(check_param(ctx, p, "dbeta", a->dbeta));
            CHECK(check_stat(ctx, p, "mean", a->mean, 1));
        }
        CHECK(check_stat(ctx, p, "invstd", a->invstd, 1));
    }
    cl_mem ws;
    size_t wsoff;
    size_t need = backward ? p->bwd_bytes : p->fwd_bytes;
    if (backward && p->op != OP_GN && !a->dgamma.mem && (rms || !a->dbeta.mem))
        need = p->col_off; /* no column partials */
    CHECK(clnorm_prepare(ctx, FAMILY_ROWNORM, p->dtype));
    if (p->cs)
        CHECK(clnorm_cs_prepare(ctx, p->dtype, backward));
    if (p->gn_cw)
        CHECK(clnorm_gncf_prepare(ctx, p->dtype, backward));
    CHECK(get_scratch(ctx, a, need, &ws, &wsoff));
    clnorm_seq seq;
    CHECK(clnorm_seq_begin(ctx, &seq, queue, nwait, wait, event != NULL));
    if (backward)
        CHECK_SEQ(enqueue_backward(ctx, &seq, p, a, ws, wsoff));
    else
        CHECK_SEQ(enqueue_forward(ctx, &seq, p, a, eps, ws, wsoff));
done:
    return clnorm_seq_end(&seq, st, event);
}

static clnorm_status norm_entry(clnorm_context *ctx, const char *fn, enum rn_op op, int backward,
                                cl_command_queue queue, const clnorm_norm_desc *desc,
                                const clnorm_norm_args *args, cl_uint nwait, const cl_event *wait,
                                cl_event *event)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_CONTEXT, "%s: ctx is NULL", fn);
    if (!args)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "%s: args is NULL", fn);
    rn_plan       p;
    clnorm_status st;
    CHECK(check_norm_desc(ctx, fn, desc, op, backward, &p));
    return run_op(ctx, backward, &p, desc->epsilon, queue, args, nwait, wait, event);
}

static clnorm_status gn_entry(clnorm_context *ctx, const char *fn, int instance, int backward,
                              cl_command_queue queue, const clnorm_groupnorm_desc *desc,
                              const clnorm_norm_args *args, cl_uint nwait, const cl_event *wait,
                              cl_event *event)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_CONTEXT, "%s: ctx is NULL", fn);
    if (!args)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "%s: args is NULL", fn);
    rn_plan       p;
    clnorm_status st;
    CHECK(check_gn_desc(ctx, fn, desc, instance, backward, &p));
    return run_op(ctx, backward, &p, desc->epsilon, queue, args, nwait, wait, event);
}

clnorm_status clnorm_layernorm_forward(clnorm_context *ctx, cl_command_queue queue,
                                       const clnorm_norm_desc *desc, const clnorm_norm_args *args,
                                       cl_uint nwait, const cl_event *wait, cl_event *event)
{
    return norm_entry(ctx, "clnorm_layernorm_forward", OP_LN, 0, queue, desc, args, nwait, wait, event);
}

clnorm_status clnorm_layernorm_backward(clnorm_context *ctx, cl_command_queue queue,
                                        const clnorm_norm_desc *desc, const clnorm_norm_args *args,
                                        cl_uint nwait, const cl_event *wait, cl_event *event)
{
    return norm_entry(ctx, "clnorm_layernorm_backward", OP_LN, 1, queue, desc, args, nwait, wait, event);
}

clnorm_status clnorm_rmsnorm_forward(clnorm_context *ctx, cl_command_queue queue,
                                     const clnorm_norm_desc *desc, const clnorm_norm_args *args,
                                     cl_uint nwait, const cl_event *wait, cl_event *event)
{
    return norm_entry(ctx, "clnorm_rmsnorm_forward", OP_RMS, 0, queue, desc, args, nwait, wait, event);
}

clnorm_status clnorm_rmsnorm_backward(clnorm_context *ctx, cl_command_queue queue,
                                      const clnorm_norm_desc *desc, const clnorm_norm_args *args,
                                      cl_uint nwait, const cl_event *wait, cl_event *event)
{
    return norm_entry(ctx, "clnorm_rmsnorm_backward", OP_RMS, 1, queue, desc, args, nwait, wait, event);
}

clnorm_status clnorm_groupnorm_forward(clnorm_context *ctx, cl_command_queue queue,
                                       const clnorm_groupnorm_desc *desc, const clnorm_norm_args *args,
                                       cl_uint nwait, const cl_event *wait, cl_event *event)
{
    return gn_entry(ctx, "clnorm_groupnorm_forward", 0, 0, queue, desc, args, nwait, wait, event);
}

clnorm_status clnorm_groupnorm_backward(clnorm_context *ctx, cl_command_queue queue,
                                        const clnorm_groupnorm_desc *desc, const clnorm_norm_args *args,
                                        cl_uint nwait, const cl_event *wait, cl_event *event)
{
    return gn_entry(ctx, "clnorm_groupnorm_backward", 0, 1, queue, desc, args, nwait, wait, event);
}

clnorm_status clnorm_instancenorm_forward(clnorm_context *ctx, cl_command_queue queue,
                                          const clnorm_groupnorm_desc *desc, const clnorm_norm_args *args,
                                          cl_uint nwait, const cl_event *wait, cl_event *event)
{
    return gn_entry(ctx, "clnorm_instancenorm_forward", 1, 0, queue, desc, args, nwait, wait, event);
}

clnorm_status clnorm_instancenorm_backward(clnorm_context *ctx, cl_command_queue queue,
                                           const clnorm_groupnorm_desc *desc,
                                           const clnorm_norm_args *args, cl_uint nwait,
                                           const cl_event *wait, cl_event *event)
{
    return gn_entry(ctx, "clnorm_instancenorm_backward", 1, 1, queue, desc, args, nwait, wait, event);
}
