/* rownorm.cl: the normalization family. Layer norm and RMS norm normalize
 * rows (R rows of L contiguous values); group norm (and instance norm, its
 * groups == C case) merges per-(n, c) partials over the channels of a group.
 * Stages as in batchnorm.cl: partials -> per-row combine -> elementwise, or
 * one fused kernel when a work-item or work-group owns whole rows. Every
 * reduction has a fixed order: no atomics, bitwise-reproducible results. */

#ifndef COLV
/* vectors of 8 columns one work-item sums in rn_col_part: many on CPUs
 * (LX == 1: coarse work-items walking contiguous rows), one on GPUs
 * (neighbouring lanes, neighbouring columns); rownorm.c mirrors this */
#if LX == 1
#define COLV 8
#else
#define COLV 1
#endif
#endif

/* ---- shared pieces -------------------------------------------------------- */

/* Merges two compensated pairs of sums (sums in .xy, corrections in .zw). */
inline real4 sum_merge(real4 a, real4 b)
{
    a = sum2_add(a, b.xy);
    a.zw += b.zw;
    return a;
}

/* Neumaier accumulation of 8 independent sums (s) with corrections (c). */
inline void nsum8(real8 *s, real8 *c, real8 v)
{
    real8 t = *s + v;
    *c += select((v - t) + *s, (*s - t) + v, isgreaterequal(fabs(*s), fabs(v)));
    *s = t;
}


/* A lone lane's statistics of a long row (layer and group norm) go by
 * spans of ROW_SPAN values, 16 KB of the stored type (read from L1 for
 * the first span's second pass; later spans take one, stat_span_next),
 * rather than SPAN: every span costs its horizontal sums
 * and a merge, and fewer of them ran layer norm forward on rows of 4096
 * and 8192 fp32 values 1.07-1.10x faster on a 2-core EPYC. RS_PF: a span
 * prefetches the next span of its row (into L2) as it reads (1.07-1.08x
 * more there, same bits); a row's first span comes from the walk before.
 * A/B: -DROW_SPAN=1024 -DRS_PF=0 is the walk before. */
#ifndef RS_PF
#define RS_PF 1
#endif
#ifndef ROW_SPAN
#define ROW_SPAN (16384 / (ulong)sizeof(store_t))
#endif
/* Statistics of p[i0, i1) as seen by one lane (first block at i0 + first,
 * stride step; exactly one lane reaches the tail): (count, mean_hi, mean_lo,
 * M2), or with rms the compensated sum of squares (sum, 0, correction, 0).
 * A lone lane (step 8) walks spans of ROW_SPAN (RMS: SPAN); lanes sharing a
 * row interleave blocks of 8 so that neighbouring lanes read neighbouring
 * addresses. */
inline real4 range_stats(__global const store_t *p, ulong i0, ulong i1, uint first, uint step, int rms)
{
    real4 acc = (real4)0;
    ulong i   = i0 + first;
    if (rms && step == 8) {
        /* a lone lane: plain vector sums of squares over spans of SPAN (64
         * positive terms per vector lane), each span's total folded into the
         * compensated sum; per 8 values, the horizontal sum and the
         * compensated step were a dependency chain that ran at a third of
         * the memory's speed */
        for (; i < i1; i += SPAN) {
            ulong e = min(i1, i + SPAN), j = i;
            realv s = (realv)0;
            real  t = 0;
            __global const store_t *pf = RS_PF && e < i1 ? p + SPAN : NOPF;
            for (; j + SPAN_VEC <= e; j += SPAN_VEC) {
                PREFETCH_R(pf, j);
                realv v = LOADV(p, j);
                s       = fma(v, v, s);
            }
            for (; j < e; ++j) {
                real v = LOAD1(p, j);
                t      = fma(v, v, t);
            }
            acc = sum2_add(acc, (real2)(sumv(s) + t, (real)0));
        }
    } else if (rms) {
        for (; i + 8 <= i1; i += step) {
            real8 v = LOAD8(p, i);
            acc     = sum2_add(acc, (real2)(sum8(v * v), (real)0));
        }
        for (; i < i1; ++i) {
            real v = LOAD1(p, i);
            acc    = sum2_add(acc, (real2)(v * v, (real)0));
        }
    } else if (step == 8) {
        for (; i < i1; i += ROW_SPAN)
            acc = stat_span_next(acc, p + i, min((ulong)ROW_SPAN, i1 - i),
                                 RS_PF && i + ROW_SPAN < i1 ? p + i + ROW_SPAN : NOPF);
    } else {
        for (; i + 8 <= i1; i += step)
            acc = stat_merge(acc, stat_block8(LOAD8(p, i)));
        for (; i < i1; ++i)
            acc = stat_merge(acc, stat_one(LOAD1(p, i)));
    }
    return acc;
}

/* Compensated (sum g*dy, sum g*dy*(x - m)) over [i0, i1) for one lane, with
 * g = gamma[goff + i] (1 when gamma is absent). */
inline real4 bwd_range(__global const store_t *x, __global const store_t *dy,
                       __global const real *gamma, ulong goff, ulong i0, ulong i1, uint first,
                       uint step, real m)
{
    real4 acc = (real4)0;
    ulong i   = i0 + first;
    if (step == 8) {
        /* a lone lane: plain vector sums over spans of SPAN, each span's
         * totals folded into the compensated pair */
        for (; i < i1; i += SPAN) {
            ulong e = min(i1, i + SPAN), j = i;
            realv s1 = (realv)0, s2 = (realv)0;
            real  t1 = 0, t2 = 0;
            /* the row's next span read ahead, as range_stats */
            __global const store_t *pfd = RS_PF && e < i1 ? dy + SPAN : NOPF;
            __global const store_t *pfx = RS_PF && e < i1 ? x + SPAN : NOPF;
            for (; j + SPAN_VEC <= e; j += SPAN_VEC) {
                PREFETCH_R(pfd, j);
                PREFETCH_R(pfx, j);
                realv d = LOADV(dy, j);
                if (gamma)
                    d *= VLOADV(gamma + goff + j);
                s1 += d;
                s2 = fma(d, LOADV(x, j) - m, s2);
            }
            for (; j < e; ++j) {
                real d = LOAD1(dy, j);
                if (gamma)
                    d *= gamma[goff + j];
                t1 += d;
                t2 = fma(d, LOAD1(x, j) - m, t2);
            }
            acc = sum2_add(acc, (real2)(sumv(s1) + t1, sumv(s2) + t2));
        }
        return acc;
    }
    for (; i + 8 <= i1; i += step) {
        real8 d = LOAD8(dy, i);
        if (gamma)
            d *= GLD(real, 8, gamma + goff + i);
        acc = sum2_add(acc, (real2)(sum8(d), sum8(d * (LOAD8(x, i) - m))));
    }
    for (; i < i1; ++i) {
        real d = LOAD1(dy, i);
        if (gamma)
            d *= gamma[goff + i];
        acc = sum2_add(acc, (real2)(d, d * (LOAD1(x, i) - m)));
    }
    return acc;
}

/* Fixed-tree merge of the partials of each run of lpr lanes (a power of
 * two dividing LX; lanes that share a row); every lane gets its run's
 * result. Every lane of the work-group must call it. */
inline real4 lanes_merge_sub(__local real4 *sh, real4 acc, int sums, uint lpr)
{
    uint lane = get_local_id(0), i = lane & (lpr - 1);
    sh[lane]  = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = lpr / 2; h > 0; h >>= 1) {
        if (i < h)
            sh[lane] = sums ? sum_merge(sh[lane], sh[lane + h]) : stat_merge(sh[lane], sh[lane + h]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    acc = sh[lane - i];
    barrier(CLK_LOCAL_MEM_FENCE); /* sh is reused by the next task */
    return acc;
}

/* The same over the whole work-group, with the constant LX: the
 * whole-row kernels keep the code they were measured with (lanes_merge_sub
 * with lpr == LX would compute the same, with run-time masks). */
inline real4 lanes_merge(__local real4 *sh, real4 acc, int sums)
{
    uint lane = get_local_id(0);
    sh[lane]  = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = LX / 2; h > 0; h >>= 1) {
        if (lane < h)
            sh[lane] = sums ? sum_merge(sh[lane], sh[lane + h]) : stat_merge(sh[lane], sh[lane + h]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    acc = sh[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* sh is reused by the next task */
    return acc;
}

/* (mean_hi, mean_lo, invstd, 0) from a row's merged statistics over n values;
 * RMS norm: (0, 0, 1/sqrt(mean(x^2) + eps), 0). */
inline real4 row_coef(real4 acc, real n, real eps, int rms)
{
    if (rms)
        return (real4)((real)0, (real)0, (real)1 / sqrt((acc.x + acc.z) / n + eps), (real)0);
    return (real4)(acc.y, acc.z, (real)1 / sqrt(acc.w / n + eps), (real)0);
}

/* dx coefficients (m, k, a, b) for dx = a*g*dy - b - (x - m)*k from the sums
 * sg = sum g*dy and sy = sum g*dy*(x - m) over n values:
 * dx = inv*(g*dy - sg/n - xhat*sum(g*dy*xhat)/n); RMS norm has no mean term. */
inline real4 bwd_coef(real sg, real sy, real m, real inv, real n, int rms)
{
    real sgx = inv * sy;
    return (real4)(m, inv * inv * sgx / n, inv, rms ? (real)0 : inv * (sg / n));
}

/* ---- forward -------------------------------------------------------------- */

/* Row kernels come in two shapes: *_items, where each lane owns whole tasks
 * (rows or row segments) and no barrier is needed, and *_groups, where the
 * LX lanes of a work-group share each task and merge through local memory.
 * They are separate kernels so that no barrier ever sits in a loop that
 * lanes leave at different times. Tasks per lane or work-group: tpi. */
#define ITEM_TASK(t) (((ulong)get_group_id(0) * tpi + (t)) * LX + get_local_id(0))
/* Offset of the row a lane of an *_items kernel takes after task t, for
 * the streaming walks' prefetch; 0 for none (no next row, no streaming, or
 * rows over PF_BYTES). Uses the kernel's tpi and stream. */
#define NEXT_ROW(t, R, L)                                                                       \
    ((HAVE_NT && stream && (L) * sizeof(store_t) <= PF_BYTES && (t) + 1 < tpi &&                 \
      ITEM_TASK((t) + 1) < (R))                                                                 \
         ? ITEM_TASK((t) + 1) * (L)                                                             \
         : 0)
#define GROUP_TASKS(count) \
    ulong t0 = (ulong)get_group_id(0) * tpi, nt = t0 < (count) ? min((ulong)tpi, (count) - t0) : 0

/* After a row's statistics: mean/invstd (by the writer lane), then y =
 * ((x - hi) - lo)*inv*g + b over the lane's blocks, cache-hot. */
/* A row's coefficients from its statistics; the writer lane stores mean and
 * invstd. */
inline real4 fwd_coef(__global real *mean, ulong moff, __global real *inv, ulong ioff, ulong r, ulong L,
                      uint first, int rms, real eps, real4 acc)
{
    real4 k = row_coef(acc, (real)L, eps, rms);
    if (first == 0) {
        if (mean && !rms)
            mean[moff + r] = k.x + k.y;
        if (inv)
            inv[ioff + r] = k.z;
    }
    return k;
}

/* y = ((x - hi) - lo)*inv*g + b over the lane's blocks of [i, i1). */
inline void fwd_apply(__global const store_t *xr, __global store_t *yr, __global const real *gamma,
                      ulong goff, __global const real *beta, ulong boff, ulong i, ulong i1, uint step,
                      real4 k, int stream, __global const store_t *pf)
{
    if (step == 8) { /* a lone lane: the span walks' vector width */
        WALKV(i, i1, yr, stream, pf, NOPF,
              ((LOADV(xr, i) - k.x) - k.y) * (k.z * (gamma ? VLOADV(gamma + goff + i) : (realv)1)) +
                  (beta ? VLOADV(beta + boff + i) : (realv)0),
              ((LOAD1(xr, i) - k.x) - k.y) * (k.z * (gamma ? gamma[goff + i] : (real)1)) +
                  (beta ? beta[boff + i] : (real)0));
    }
    for (; i + 8 <= i1; i += step) {
        real8 g = gamma ? GLD(real, 8, gamma + goff + i) : (real8)1;
        real8 b = beta ? GLD(real, 8, beta + boff + i) : (real8)0;
        STORE8(((LOAD8(xr, i) - k.x) - k.y) * (k.z * g) + b, yr, i);
    }
    for (; i < i1; ++i) {
        real g = gamma ? gamma[goff + i] : (real)1;
        real b = beta ? beta[boff + i] : (real)0;
        STORE1(((LOAD1(xr, i) - k.x) - k.y) * (k.z * g) + b, yr, i);
    }
}


#define FWD_ARGS                                                                               \
    __global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,                    \
        __global const real *gamma, ulong goff, __global const real *beta, ulong boff,         \
        __global real *mean, ulong moff, __global real *inv, ulong ioff, ulong R, ulong L,     \
        uint tpi, int rms, real eps, int stream, uint lpr

/* CPUs, rows of at most SHORT_ROWS values: a lane takes its rows SR_B at a
 * time: the statistics of all of them, each reading ahead the same row of
 * the next block; their inverse deviations as one vector; then their y in
 * a plain vector loop (fwd_apply's expression, without its per-row head
 * and tails) when the rows are whole vectors. Row by row, such short rows
 * spent more on per-row work than on memory: layer norm 262144x64 forward
 * ran at about 0.6 of a copy on a 2-core Xeon, and 25-35% faster this way
 * (1024-value rows, whose block outgrows L1, ran 17-37% slower). The same
 * operations per row as range_stats, row_coef and fwd_apply, so the same
 * bits. A/B: -DSHORT_ROWS=0. */
#ifndef SHORT_ROWS
#define SHORT_ROWS 128
#endif
#define SR_B 16

#if SPAN_VEC == 16
/* The horizontal sums of 16 vectors at once: lane b is sum16(v[b]), by
 * sum16's own tree (lanes i and i + 8, then + 4, + 2, + 1), so the same
 * bits; a transposing butterfly of 15 vector adds instead of 16 horizontal
 * reductions of 4 dependent steps each. */
inline real16 sum16x16(const real16 *v)
{
    real16 w[8], u[4], h[2];
    for (int k = 0; k < 8; ++k) /* rows 2k, 2k + 1: 8 partials each */
        w[k] = (real16)(v[2 * k].lo, v[2 * k + 1].lo) + (real16)(v[2 * k].hi, v[2 * k + 1].hi);
    for (int k = 0; k < 4; ++k) /* rows 4k..4k + 3: 4 each */
        u[k] = (real16)(w[2 * k].s0123, w[2 * k].s89ab, w[2 * k + 1].s0123, w[2 * k + 1].s89ab) +
               (real16)(w[2 * k].s4567, w[2 * k].scdef, w[2 * k + 1].s4567, w[2 * k + 1].scdef);
    for (int k = 0; k < 2; ++k) /* rows 8k..8k + 7: 2 each */
        h[k] = (real16)(u[2 * k].s01, u[2 * k].s45, u[2 * k].s89, u[2 * k].scd, u[2 * k + 1].s01,
                        u[2 * k + 1].s45, u[2 * k + 1].s89, u[2 * k + 1].scd) +
               (real16)(u[2 * k].s23, u[2 * k].s67, u[2 * k].sab, u[2 * k].sef, u[2 * k + 1].s23,
                        u[2 * k + 1].s67, u[2 * k + 1].sab, u[2 * k + 1].sef);
    return (real16)(h[0].even, h[1].even) + (real16)(h[0].odd, h[1].odd);
}

/* Lane by lane, sum2_add of v to a zero pair, then the pair's sum plus its
 * correction (acc.x + acc.z): what a row's single span gives. */
inline real16 sum2_total16(real16 v)
{
    real16 s = (real)0 + v;
    real16 c = select((v - s) + (real)0, ((real)0 - s) + v, isgreaterequal((real16)0, fabs(v)));
    return s + ((real)0 + c);
}

/* The statistics of SR_B = 16 rows of L values (at most SPAN), rows r0..
 * r0 + 15 at x, into hi, lo and q as fwd_short_rows keeps them: stat_span's
 * walks (or range_stats' sum of squares) row by row, tails included, their
 * horizontal sums and per-row scalar steps as vectors over the 16 rows. The
 * same operations per row, so the same bits. pf: the next block. */
ALWAYS_INLINE inline void short_rows_tile(__global const store_t *x, ulong L, int rms,
                                         __global const store_t *pf, real *hi, real *lo, real *q)
{
    real16 a[16], b[16];
    real   ta[16], tb[16], rn = (real)L, ri = (real)1 / rn;
    if (rms) {
        for (int r = 0; r < 16; ++r) {
            realv s = (realv)0;
            real  t = 0;
            ulong j = 0;
            for (; j + SPAN_VEC <= L; j += SPAN_VEC) {
                realv v = LOADV(x, r * L + j);
                s       = fma(v, v, s);
            }
            for (; j < L; ++j) {
                real v = LOAD1(x, r * L + j);
                t      = fma(v, v, t);
            }
            a[r]  = s;
            ta[r] = t;
        }
        vstore16(sum2_total16(sum16x16(a) + vload16(0, ta)), 0, q);
        vstore16((real16)0, 0, hi);
        vstore16((real16)0, 0, lo);
        return;
    }
    for (int r = 0; r < 16; ++r)
        a[r] = span_sum(x + r * L, L, pf ? pf + r * L : NOPF, &ta[r]);
    real16 m = (sum16x16(a) + vload16(0, ta)) * ri;
    vstore16(m, 0, hi);
    for (int r = 0; r < 16; ++r)
        a[r] = span_dev(x + r * L, L, hi[r], NOPF, &b[r], &ta[r], &tb[r]);
    real16 ds = sum16x16(a) + vload16(0, ta);
    real16 qq = sum16x16(b) + vload16(0, tb) - ds * ds * ri;
    vstore16(ds * ri, 0, lo);
    vstore16(nonnegv(qq), 0, q);
}
#endif

#if SPAN_VEC == 16
/* Rows shorter than a vector (L < 16): a whole block of 16 such rows is L
 * vectors. It is copied transposed into tr (column c of the 16 rows at tr +
 * 16c), so that the per-row scalar walks (span_sum's and span_dev's tails,
 * or range_stats' sum of squares) run as vectors with a row per lane, in
 * the same order, so with the same bits. Row by row these were chains of
 * dependent scalar adds: layer norm 2097152x8 forward took 1.4-1.7 ns per
 * value on a 2-core EPYC, 0.75-1.0 this way (rows of 8 in registers, below);
 * rows of 5, 2.1-2.4 and 0.9-1.4. */
#define NARROW_T(tr, c) vload16((c), (tr))
#define NARROW_F (16 * 15 + 16) /* a flat block and a vector of zeros */

/* Rows of 8 (fwd_short_rows' constant L): the block's 8 vectors (rows 2k
 * and 2k + 1 in v[k]) to its 8 columns (v[c], a row per lane) in registers:
 * each stage's even/odd split moves the lowest lane bit of the flat index
 * into the vector index. tr_8x16 undoes it. The copies through memory (a
 * scatter and a gather) took most of the walk's time. */
inline void tr_16x8(real16 *v)
{
#pragma unroll
    for (int s = 1; s < 8; s <<= 1)
#pragma unroll
        for (int k = 0; k < 8; ++k)
            if (!(k & s)) {
                real16 u = v[k], w = v[k | s];
                v[k]     = (real16)(u.even, w.even);
                v[k | s] = (real16)(u.odd, w.odd);
            }
}

inline void tr_8x16(real16 *v)
{
#pragma unroll
    for (int s = 4; s > 0; s >>= 1)
#pragma unroll
        for (int k = 0; k < 8; ++k)
            if (!(k & s)) {
                real16 e = v[k], o = v[k | s];
                v[k]     = (real16)(e.s0, o.s0, e.s1, o.s1, e.s2, o.s2, e.s3, o.s3, e.s4, o.s4, e.s5, o.s5,
                                    e.s6, o.s6, e.s7, o.s7);
                v[k | s] = (real16)(e.s8, o.s8, e.s9, o.s9, e.sa, o.sa, e.sb, o.sb, e.sc, o.sc, e.sd, o.sd,
                                    e.se, o.se, e.sf, o.sf);
            }
}

ALWAYS_INLINE inline void narrow_load(__global const store_t *x, ulong L, real *f, real *tr)
{
    if (L == 8) {
        real16 v[8];
        for (int k = 0; k < 8; ++k) {
            v[k] = LOADV(x, k * 16);
            vstore16(v[k], k, f);
        }
        vstore16((real16)0, 0, f + 16 * L);
        tr_16x8(v);
        for (int c = 0; c < 8; ++c)
            vstore16(v[c], c, tr);
        return;
    }
    for (uint k = 0; k < (uint)L; ++k)
        vstore16(LOADV(x, k * 16), k, f);
    vstore16((real16)0, 0, f + 16 * L);
    for (uint c = 0; c < (uint)L; ++c) /* strided reads: gathers, not scatters */
        for (uint r = 0; r < 16; ++r)
            tr[c * 16 + r] = f[r * (uint)L + c];
}

/* short_rows_tile for L < 16, from the transposed block tr */
ALWAYS_INLINE inline void narrow_tile(const real *tr, ulong L, int rms, real *hi, real *lo, real *q)
{
    real   ri = (real)1 / (real)L;
    real16 t  = (real16)0;
    if (rms) {
        for (uint c = 0; c < (uint)L; ++c) {
            real16 v = NARROW_T(tr, c);
            t        = fma(v, v, t);
        }
        vstore16(sum2_total16((real16)0 + t), 0, q);
        vstore16((real16)0, 0, hi);
        vstore16((real16)0, 0, lo);
        return;
    }
    for (uint c = 0; c < (uint)L; ++c)
        t += NARROW_T(tr, c);
    real16 m = ((real16)0 + t) * ri, t1 = (real16)0, t2 = (real16)0;
    vstore16(m, 0, hi);
    for (uint c = 0; c < (uint)L; ++c) {
        real16 d = NARROW_T(tr, c) - m;
        t1 += d;
        t2 = fma(d, d, t2);
    }
    real16 ds = (real16)0 + t1;
    real16 qq = (real16)0 + t2 - ds * ds * ri;
    vstore16(ds * ri, 0, lo);
    vstore16(nonnegv(qq), 0, q);
}

/* Writes the block's L vectors from the transposed values in tr. */
ALWAYS_INLINE inline void narrow_store(real *tr, ulong L, __global store_t *out, int nt)
{
    if (L == 8) {
        real16 v[8];
        for (int c = 0; c < 8; ++c)
            v[c] = vload16(c, tr);
        tr_8x16(v);
        for (int k = 0; k < 8; ++k) {
            if (nt)
                STOREV_NT(v[k], out, k * 16);
            else
                STOREV(v[k], out, k * 16);
        }
        return;
    }
    real f[16 * 15];
    for (uint r = 0; r < 16; ++r)
        for (uint c = 0; c < (uint)L; ++c)
            f[r * (uint)L + c] = tr[c * 16 + r];
    for (uint k = 0; k < (uint)L; ++k) {
        if (nt)
            STOREV_NT(vload16(k, f), out, k * 16);
        else
            STOREV(vload16(k, f), out, k * 16);
    }
}
#endif

#if SPAN_VEC == 16
/* The walk of short_rows_flat and short_rows_flat_dx over a block of 16
 * rows of L values at out (16 < L, not whole vectors) as one run of flat
 * vectors, aligned for streaming stores after a head of single values: a
 * vector holds the end of one row and the start of the next. VEXPR (of i,
 * c, and FLAT_PICK(a): lane by lane a[r] or, from lane nx on, a[r1]) gives
 * the vector at i, whose lane 0 is column c of row r; SEXPR (of i, r, c)
 * a single value. Row by row, each row had an unaligned head and tail of
 * single values. */
#define FLAT_PICK(a) select((realv)((a)[r]), (realv)((a)[r1]), LANE_IDS >= nx)
#define FLAT_WALK(out, L, stream, VEXPR, SEXPR)                                                     \
    do {                                                                                        \
        ulong n = SR_B * (L), i = 0, r, c;                                                      \
        if (HAVE_NT && (stream)) {                                                              \
            ulong h = (((ulong)sizeof(realv) - ((ulong)(out) & (sizeof(realv) - 1))) &          \
                       (sizeof(realv) - 1)) / sizeof(store_t);                                  \
            for (; i < h; ++i) {                                                                \
                r = i / (L);                                                                    \
                c = i - r * (L);                                                                \
                STORE1(SEXPR, out, i);                                                          \
            }                                                                                   \
        }                                                                                       \
        r = i / (L);                                                                            \
        c = i - r * (L);                                                                        \
        for (; i + SPAN_VEC <= n; i += SPAN_VEC) {                                              \
            uint  r1 = r + 1 < SR_B ? r + 1 : r;                                                \
            real  nx = (real)((L) - c); /* lanes from nx on are in the next row */              \
            realv v  = VEXPR;                                                                   \
            if (HAVE_NT && (stream))                                                            \
                STOREV_NT(v, out, i);                                                           \
            else                                                                                \
                STOREV(v, out, i);                                                              \
            c += SPAN_VEC;                                                                      \
            if (c >= (L)) {                                                                     \
                c -= (L);                                                                       \
                ++r;                                                                            \
            }                                                                                   \
        }                                                                                       \
        for (; i < n; ++i) {                                                                    \
            r = i / (L);                                                                        \
            c = i - r * (L);                                                                    \
            STORE1(SEXPR, out, i);                                                              \
        }                                                                                       \
    } while (0)

/* y of such a block: the rows' (hi, lo, invstd) by FLAT_PICK, gamma and
 * beta from gx and bx (each L values, then their first 16 again). The same
 * expression per value as fwd_apply, so the same bits. */
inline void short_rows_flat(__global const store_t *xb, __global store_t *yb, ulong L, const real *hi,
                            const real *lo, const real *q, const real *gx, const real *bx, int stream)
{
    FLAT_WALK(yb, L, stream,
              ((LOADV(xb, i) - FLAT_PICK(hi)) - FLAT_PICK(lo)) * (FLAT_PICK(q) * vload16(0, gx + c)) +
                  vload16(0, bx + c),
              ((LOAD1(xb, i) - hi[r]) - lo[r]) * (q[r] * gx[c]) + bx[c]);
}
#endif

ALWAYS_INLINE inline void fwd_short_rows_l(__global const store_t *x, ulong xoff, __global store_t *y,
                                          ulong yoff, __global const real *gamma, ulong goff,
                                          __global const real *beta, ulong boff, __global real *mean,
                                          ulong moff, __global real *inv, ulong ioff, ulong R, ulong L,
                                          uint tpi, int rms, real eps, int stream)
{
    real rn = (real)L;
#if SPAN_VEC == 16
    /* gamma and beta for short_rows_flat */
    int  flat = L > SPAN_VEC && L % SPAN_VEC != 0;
    real gx[SHORT_ROWS + SPAN_VEC], bx[SHORT_ROWS + SPAN_VEC];
    for (ulong j = 0; flat && j < L + SPAN_VEC; ++j) {
        gx[j] = gamma ? gamma[goff + j % L] : (real)1;
        bx[j] = beta ? beta[boff + j % L] : (real)0;
    }
#endif
    real tr[16 * 15]; /* a block of rows shorter than a vector, transposed */
    for (uint t0 = 0; t0 < tpi && ITEM_TASK(t0) < R; t0 += SR_B) {
        real hi[SR_B], lo[SR_B], q[SR_B];
        uint n = 0;
        int  tile = 0;
#if SPAN_VEC == 16 && SR_B == 16 && LX == 1
        /* whole blocks: their rows are contiguous (LX == 1) */
        if (t0 + SR_B <= tpi && ITEM_TASK(t0 + SR_B - 1) < R) {
            int next = t0 + 2 * SR_B <= tpi && ITEM_TASK(t0 + 2 * SR_B - 1) < R;
            if (L < SPAN_VEC) {
                real f[NARROW_F];
                narrow_load(x + xoff + ITEM_TASK(t0) * L, L, f, tr);
                narrow_tile(tr, L, rms, hi, lo, q);
            } else
                short_rows_tile(x + xoff + ITEM_TASK(t0) * L, L, rms,
                                next ? x + xoff + ITEM_TASK(t0 + SR_B) * L : NOPF, hi, lo, q);
            n    = SR_B;
            tile = 1;
        }
#endif
        for (; n < SR_B && t0 + n < tpi && ITEM_TASK(t0 + n) < R; ++n) {
            /* reading ahead the same row of the next block */
            ulong nr  = t0 + n + SR_B < tpi ? ITEM_TASK(t0 + n + SR_B) : R;
            real4 acc = rms ? range_stats(x + xoff + ITEM_TASK(t0 + n) * L, 0, L, 0, 8, 1)
                            : stat_span(x + xoff + ITEM_TASK(t0 + n) * L, L, nr < R ? x + xoff + nr * L : NOPF);
            hi[n]     = rms ? (real)0 : acc.y;
            lo[n]     = rms ? (real)0 : acc.z;
            q[n]      = rms ? acc.x + acc.z : acc.w;
        }
        for (uint b = n; b < SR_B; ++b)
            q[b] = (real)1;
        real16 iv = (real)1 / sqrt(vload16(0, q) / rn + eps);
        vstore16(iv, 0, q);
#if SPAN_VEC == 16
        if (tile) { /* the block's mean and invstd as one vector each */
            if (mean && !rms)
                VSTOREV(vload16(0, hi) + vload16(0, lo), mean + moff + ITEM_TASK(t0));
            if (inv)
                VSTOREV(iv, inv + ioff + ITEM_TASK(t0));
        }
#endif
        /* whole vectors, aligned when streaming: fwd_apply's expression in
         * a plain loop, without its per-row head and tails */
        int vec = L % SPAN_VEC == 0, nt = HAVE_NT && stream && vec &&
                  ((ulong)(y + yoff + ITEM_TASK(t0) * L) & (sizeof(realv) - 1)) == 0;
#if SPAN_VEC == 16
        if (tile && flat) {
            short_rows_flat(x + xoff + ITEM_TASK(t0) * L, y + yoff + ITEM_TASK(t0) * L, L, hi, lo, q, gx, bx,
                            stream);
            continue;
        }
        if (tile && L < SPAN_VEC) { /* fwd_apply's expression, a row per lane */
            real16 h = vload16(0, hi), l = vload16(0, lo), k = vload16(0, q);
            for (uint c = 0; c < (uint)L; ++c)
                vstore16(((NARROW_T(tr, c) - h) - l) * (k * (gamma ? gamma[goff + c] : (real)1)) +
                             (beta ? beta[boff + c] : (real)0),
                         c, tr);
            narrow_store(tr, L, y + yoff + ITEM_TASK(t0) * L,
                         HAVE_NT && stream && ((ulong)(y + yoff + ITEM_TASK(t0) * L) & (sizeof(realv) - 1)) == 0);
            continue;
        }
        if (tile && L == SPAN_VEC) {
            /* rows of one vector: gamma and beta once for the block (15%
             * faster for layer norm 1048576x16; no gain for longer rows) */
            __global const store_t *xb = x + xoff + ITEM_TASK(t0) * L;
            __global store_t       *yb = y + yoff + ITEM_TASK(t0) * L;
            realv g = gamma ? VLOADV(gamma + goff) : (realv)1, c = beta ? VLOADV(beta + boff) : (realv)0;
            for (uint b = 0; b < SR_B; ++b) {
                realv v = ((LOADV(xb, b * SPAN_VEC) - hi[b]) - lo[b]) * (q[b] * g) + c;
                if (nt)
                    STOREV_NT(v, yb, b * SPAN_VEC);
                else
                    STOREV(v, yb, b * SPAN_VEC);
            }
            continue;
        }
#endif
        for (uint b = 0; b < n; ++b) {
            ulong r = ITEM_TASK(t0 + b);
            if (mean && !rms && !tile)
                mean[moff + r] = hi[b] + lo[b];
            if (inv && !tile)
                inv[ioff + r] = q[b];
            real4 k = (real4)(hi[b], lo[b], q[b], (real)0);
            __global const store_t *xr = x + xoff + r * L;
            __global store_t       *yr = y + yoff + r * L;
            if (!vec) {
                fwd_apply(xr, yr, gamma, goff, beta, boff, 0, L, 8, k, stream, NOPF);
                continue;
            }
            for (ulong i = 0; i < L; i += SPAN_VEC) {
                realv v = ((LOADV(xr, i) - k.x) - k.y) * (k.z * (gamma ? VLOADV(gamma + goff + i) : (realv)1)) +
                          (beta ? VLOADV(beta + boff + i) : (realv)0);
                if (nt)
                    STOREV_NT(v, yr, i);
                else
                    STOREV(v, yr, i);
            }
        }
    }
}

/* fwd_short_rows_l, with rows of one vector, and rows of 8 (whose block
 * is transposed in registers), as constants: their walks and loops fold
 * away. With the tile, layer norm 1048576x16 forward went
 * from 0.67 to 0.39 ns per value on a 2-core Xeon, backward from 0.63 to
 * 0.42; rows of 32, 0.41 to 0.33 and 0.44 to 0.38. */
inline void fwd_short_rows(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                           __global const real *gamma, ulong goff, __global const real *beta, ulong boff,
                           __global real *mean, ulong moff, __global real *inv, ulong ioff, ulong R,
                           ulong L, uint tpi, int rms, real eps, int stream)
{
    if (L == SPAN_VEC)
        fwd_short_rows_l(x, xoff, y, yoff, gamma, goff, beta, boff, mean, moff, inv, ioff, R, SPAN_VEC, tpi,
                         rms, eps, stream);
    else if (L == 8)
        fwd_short_rows_l(x, xoff, y, yoff, gamma, goff, beta, boff, mean, moff, inv, ioff, R, 8, tpi,
                         rms, eps, stream);
    else
        fwd_short_rows_l(x, xoff, y, yoff, gamma, goff, beta, boff, mean, moff, inv, ioff, R, L, tpi, rms,
                         eps, stream);
}

/* Whole rows: statistics, then y while the row is cache-hot. Writes mean
 * (not for RMS) and invstd per row when present. */
__kernel void rn_fwd_items(FWD_ARGS)
{
#if SHORT_ROWS && LX == 1
    if (L <= SHORT_ROWS) {
        fwd_short_rows(x, xoff, y, yoff, gamma, goff, beta, boff, mean, moff, inv, ioff, R, L, tpi, rms,
                       eps, stream);
        NT_FENCE(stream);
        return;
    }
#endif
    for (uint t = 0; t < tpi; ++t) {
        ulong r = ITEM_TASK(t);
        if (r >= R)
            break;
        __global const store_t *xr  = x + xoff + r * L;
        real4                   acc = range_stats(xr, 0, L, 0, 8, rms);
        real4 k = fwd_coef(mean, moff, inv, ioff, r, L, 0, rms, eps, acc);
        ulong nx = NEXT_ROW(t, R, L);
        fwd_apply(xr, y + yoff + r * L, gamma, goff, beta, boff, 0, L, 8, k, stream,
                  nx ? x + xoff + nx : NOPF);
    }
    NT_FENCE(stream);
}

/* Short rows (rn_fwd_sub, rn_bwd_sub): P lanes per row (1 < P < LX), LX/P
 * rows at once per task. A lane past the last row still takes part in the
 * merges. Kernels of their own, so that the whole-row walks of *_groups
 * are compiled as before (one kernel with both walks ran layer norm
 * forward 8192x768 a quarter slower on an H100). */
#define SUB_ROWS                                                             \
    uint lane = get_local_id(0), first = (lane & (lpr - 1)) * 8, rpt = LX / lpr; \
    GROUP_TASKS((R + rpt - 1) / rpt);
#define SUB_ROW(t) ((t0 + (t)) * rpt + lane / lpr)

__kernel void rn_fwd_groups(FWD_ARGS)
{
    __local real4 sh[LX];
    uint first = get_local_id(0) * 8;
    GROUP_TASKS(R);
    for (ulong t = 0; t < nt; ++t) {
        ulong r = t0 + t;
        __global const store_t *xr  = x + xoff + r * L;
        real4                   acc = lanes_merge(sh, range_stats(xr, 0, L, first, 8 * LX, rms), rms);
        real4 k = fwd_coef(mean, moff, inv, ioff, r, L, first, rms, eps, acc);
        fwd_apply(xr, y + yoff + r * L, gamma, goff, beta, boff, first, L, 8 * LX, k, 0, NOPF);
    }
}

__kernel void rn_fwd_sub(FWD_ARGS)
{
    __local real4 sh[LX];
    SUB_ROWS
    for (ulong t = 0; t < nt; ++t) {
        ulong r  = SUB_ROW(t);
        int   ok = r < R;
        __global const store_t *xr = x + xoff + (ok ? r : 0) * L;
        real4 acc = lanes_merge_sub(sh, ok ? range_stats(xr, 0, L, first, 8 * lpr, rms) : (real4)0,
                                    rms, lpr);
        if (!ok)
            continue;
        real4 k = fwd_coef(mean, moff, inv, ioff, r, L, first, rms, eps, acc);
        fwd_apply(xr, y + yoff + r * L, gamma, goff, beta, boff, first, L, 8 * lpr, k, 0, NOPF);
    }
}

/* Partials of row segments: task T = r*S + s covers [s*Lseg, s*Lseg + Lseg)
 * of row r; part[T]. For long rows and for group norm's (n, c) rows. */
#define STATS_ARGS                                                                             \
    __global const store_t *x, ulong xoff, ulong R, ulong L, ulong S, ulong Lseg, uint tpi,    \
        int rms, __global real4 *part, ulong poff

__kernel void rn_stats_items(STATS_ARGS)
{
    for (uint t = 0; t < tpi; ++t) {
        ulong T = ITEM_TASK(t);
        if (T >= R * S)
            return;
        ulong r = T / S, i0 = (T % S) * Lseg;
        part[poff + T] = range_stats(x + xoff + r * L, i0, min(L, i0 + Lseg), 0, 8, rms);
    }
}

__kernel void rn_stats_groups(STATS_ARGS)
{
    __local real4 sh[LX];
    uint first = get_local_id(0) * 8;
    GROUP_TASKS(R * S);
    for (ulong t = 0; t < nt; ++t) {
        ulong T = t0 + t, r = T / S, i0 = (T % S) * Lseg;
        real4 acc = range_stats(x + xoff + r * L, i0, min(L, i0 + Lseg), first, 8 * LX, rms);
        acc       = lanes_merge(sh, acc, rms);
        if (first == 0)
            part[poff + T] = acc;
    }
}

/* Group norm, channels last: the sample n is Sp rows of C columns; work-item
 * (c, k, n) reads column c over rows [k*Rc, k*Rc + Rc) (neighbouring
 * work-items read neighbouring addresses). Partial at (n*C + c)*Kc + k. */
__kernel void gn_stats_cols(__global const store_t *x, ulong xoff, ulong C, ulong Sp, ulong Rc,
                            ulong Kc, __global real4 *part, ulong poff)
{
    ulong c = get_global_id(0), k = get_global_id(1), n = get_global_id(2);
    if (c >= C || k >= Kc)
        return;
    __global const store_t *p = x + xoff + n * Sp * C + c;
    ulong s = k * Rc, s1 = min(Sp, s + Rc);
    real4 acc = (real4)0;
    for (; s + 8 <= s1; s += 8) {
        __global const store_t *q = p + s * C;
        real8 v = (real8)(LOAD1(q, 0), LOAD1(q, C), LOAD1(q, 2 * C), LOAD1(q, 3 * C), LOAD1(q, 4 * C),
                          LOAD1(q, 5 * C), LOAD1(q, 6 * C), LOAD1(q, 7 * C));
        acc = stat_merge(acc, stat_block8(v));
    }
    for (; s < s1; ++s)
        acc = stat_merge(acc, stat_one(LOAD1(p, s * C)));
    part[poff + (n * C + c) * Kc + k] = acc;
}

/* Where partial q of statistics row r is: the row's Q partials in a row,
 * or (Kcs > 0: group norm channels last through batch norm's column
 * streams, rows r = n*G + g) chunk kc of channel c = g*cpg + i of sample n
 * at (n*Kcs + kc)*C + c, with q = kc*cpg + i. */
inline ulong part_at(ulong r, ulong q, ulong Q, ulong cpg, ulong G, ulong Kcs)
{
    if (!Kcs)
        return r * Q + q;
    return ((r / G) * Kcs + q / cpg) * (G * cpg) + (r % G) * cpg + q % cpg;
}

/* Stores the coefficients v of channel i of statistics row r: at
 * coef[r*cpg + i], or with soa (the column streams' layout) as 4 planes of C
 * reals per sample n = r / G. */
inline void coef_put(__global real4 *coef, ulong cofs, ulong r, ulong i, ulong cpg, ulong G, int soa,
                     real4 v)
{
    if (!soa) {
        coef[cofs + r * cpg + i] = v;
        return;
    }
    ulong          C = G * cpg;
    __global real *p = (__global real *)(coef + cofs) + (r / G) * 4 * C + (r % G) * cpg + i;
    p[0]             = v.x;
    p[C]             = v.y;
    p[2 * C]         = v.z;
    p[3 * C]         = v.w;
}

/* One work-item (or work-group) per statistics row r merges its Q partials
 * (part_at) in a fixed order, writes mean (not for RMS) and invstd, and the
 * apply coefficients of its cpg channels (coef_put, planes when Kcs > 0):
 * (hi, lo, inv*gamma, beta), gamma and beta indexed (r % G)*cpg + i (layer
 * norm passes none: cpg = 1, and the apply multiplies its per-column
 * gamma). */
__kernel void rn_stats_combine(__global const real4 *part, ulong poff, ulong rows, ulong Q, ulong cpg,
                               ulong G, real n, real eps, int rms, __global const real *gamma,
                               ulong goff, __global const real *beta, ulong boff,
                               __global real *mean, ulong moff, __global real *inv, ulong ioff,
                               __global real4 *coef, ulong cofs, ulong Kcs)
{
    real4 acc = (real4)0;
#if LX > 1
    /* a work-group per row (run_rowmerge): lane j merges partials j, j + LX,
     * ... in order, then the fixed tree; a channels-last group norm can have
     * thousands of partials per row */
    __local real4 sh[LX];
    uint  lane = get_local_id(0);
    ulong r    = get_group_id(0);
    __global const real4 *p = part + poff;
#define STATS_TERM(q) p[part_at(r, (q), Q, cpg, G, Kcs)]
    if (rms)
        MERGE_STRIDED(acc, lane, Q, LX, STATS_TERM, sum_merge);
    else
        MERGE_STRIDED(acc, lane, Q, LX, STATS_TERM, stat_merge);
    acc = lanes_merge(sh, acc, rms);
    if (lane != 0)
        return;
#else
    ulong r = get_global_id(0);
    if (r >= rows)
        return;
    __global const real4 *p = part + poff;
    for (ulong q = 0; q < Q; ++q) {
        real4 v = p[part_at(r, q, Q, cpg, G, Kcs)];
        acc     = rms ? sum_merge(acc, v) : stat_merge(acc, v);
    }
#endif
    real4 k = row_coef(acc, n, eps, rms);
    if (mean && !rms)
        mean[moff + r] = k.x + k.y;
    if (inv)
        inv[ioff + r] = k.z;
    ulong gb = (r % G) * cpg;
    for (ulong i = 0; i < cpg; ++i) {
        real g = gamma ? gamma[goff + gb + i] : (real)1;
        real b = beta ? beta[boff + gb + i] : (real)0;
        coef_put(coef, cofs, r, i, cpg, G, Kcs != 0, (real4)(k.x, k.y, k.z * g, b));
    }
}

/* Elementwise y = ((x - c.x) - c.y)*(c.z*g) + (c.w + b) over rows of L, 8
 * elements per work-item in flat order, with c = coef[r] for row r and g,
 * b = gamma[j], beta[j] (1 and 0 when absent: group norm folds them into
 * c). */
__kernel void rn_apply(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                       ulong total, ulong L, __global const real *gamma, ulong goff,
                       __global const real *beta, ulong boff, __global const real4 *coef, ulong cofs)
{
    ulong e = (ulong)ELEM_GID(0) * 8;
    if (e >= total)
        return;
    ulong r = e / L, j = e - r * L;
    x += xoff;
    y += yoff;
    coef += cofs;
    if (j + 8 <= L) {
        real4 k = coef[r];
        real8 g = gamma ? GLD(real, 8, gamma + goff + j) : (real8)1;
        real8 b = beta ? GLD(real, 8, beta + boff + j) : (real8)0;
        STORE8(((LOAD8(x, e) - k.x) - k.y) * (k.z * g) + (k.w + b), y, e);
        return;
    }
    ulong e1 = min(total, e + 8);
    for (; e < e1; ++e, ++j) {
        if (j == L) {
            j = 0;
            ++r;
        }
        real4 k = coef[r];
        real  g = gamma ? gamma[goff + j] : (real)1;
        real  b = beta ? beta[boff + j] : (real)0;
        STORE1(((LOAD1(x, e) - k.x) - k.y) * (k.z * g) + (k.w + b), y, e);
    }
}

/* Group norm channels last on GPUs: work-item (c, b) applies channel c's
 * coefficients (those of row n*G + c/cpg, channel c%cpg: coef[n*C + c],
 * gamma and beta folded in) to block b % B of GN_ROWS rows of sample
 * n = b / B (B blocks per sample), loaded once for the block; neighbouring
 * work-items read neighbouring channels. rn_apply took 8 channels'
 * coefficients per 8 values, four times the bytes of x. */
#define GN_ROWS 8
__kernel void gn_apply_cols(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            ulong C, ulong Sp, ulong B, __global const real4 *coef, ulong cofs)
{
    ulong c = get_global_id(0), b = ELEM_GID(1), n = b / B;
    if (c >= C)
        return;
    real4 k = coef[cofs + n * C + c];
    ulong s = (b % B) * GN_ROWS, s1 = min(Sp, s + GN_ROWS);
    for (ulong e = (n * Sp + s) * C + c; s < s1; ++s, e += C)
        STORE1(((LOAD1(x, xoff + e) - k.x) - k.y) * k.z + k.w, y, yoff + e);
}

/* dx of group norm channels last as gn_apply_cols walks, with the dx
 * coefficients (m, k, a, b): dx = a*dy - b - (x - m)*k. */
__kernel void gn_dx_cols(__global const store_t *x, ulong xoff, __global const store_t *dy, ulong dyoff,
                         __global store_t *dx, ulong dxoff, ulong C, ulong Sp, ulong B,
                         __global const real4 *coef, ulong cofs)
{
    ulong c = get_global_id(0), b = ELEM_GID(1), n = b / B;
    if (c >= C)
        return;
    real4 k = coef[cofs + n * C + c];
    ulong s = (b % B) * GN_ROWS, s1 = min(Sp, s + GN_ROWS);
    for (ulong e = (n * Sp + s) * C + c; s < s1; ++s, e += C)
        STORE1(k.z * LOAD1(dy, dyoff + e) - k.w - (LOAD1(x, xoff + e) - k.x) * k.y, dx, dxoff + e);
}

/* Group norm, channels first, fused: a group of sample n is one contiguous
 * row of cpg*Sp values (cpg channel segments of Sp), row r = n*G + g. Its
 * statistics as rn_fwd_*, then y per channel segment with that channel's
 * gamma and beta, cache-hot. Writes mean and invstd per (n, g) when present. */
#define GN_FWD_ARGS                                                                            \
    __global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,                    \
        __global const real *gamma, ulong goff, __global const real *beta, ulong boff,         \
        __global real *mean, ulong moff, __global real *inv, ulong ioff, ulong R, ulong G,     \
        ulong cpg, ulong Sp, uint tpi, real eps, int stream

/* y = ((x - k.x) - k.y)*a + b over [i, e) of a row, a lane's blocks of 8
 * (step; a lone lane, step 8, by vectors, streaming where asked, reading pf
 * ahead). */
inline void gn_y_run(__global const store_t *xr, __global store_t *yr, ulong i, ulong e, uint step, real4 k,
                     real a, real b, int stream, __global const store_t *pf)
{
    if (step == 8) {
        WALKV(i, e, yr, stream, pf, NOPF, ((LOADV(xr, i) - k.x) - k.y) * a + b,
              ((LOAD1(xr, i) - k.x) - k.y) * a + b);
    }
    for (; i + 8 <= e; i += step)
        STORE8(((LOAD8(xr, i) - k.x) - k.y) * a + b, yr, i);
    for (; i < e; ++i)
        STORE1(((LOAD1(xr, i) - k.x) - k.y) * a + b, yr, i);
}

inline void gn_fwd_finish(__global const store_t *xr, __global store_t *yr, __global const real *gamma,
                          ulong goff, __global const real *beta, ulong boff, __global real *mean,
                          ulong moff, __global real *inv, ulong ioff, ulong r, ulong G, ulong cpg,
                          ulong Sp, uint first, uint step, real eps, real4 acc, int stream,
                          __global const store_t *pf)
{
    real4 k = row_coef(acc, (real)(cpg * Sp), eps, 0);
    if (first == 0) {
        if (mean)
            mean[moff + r] = k.x + k.y;
        if (inv)
            inv[ioff + r] = k.z;
    }
    ulong gb = (r % G) * cpg;
    for (ulong c = 0; c < cpg; ++c)
        gn_y_run(xr, yr, c * Sp + first, c * Sp + Sp, step, k, k.z * (gamma ? gamma[goff + gb + c] : (real)1),
                 beta ? beta[boff + gb + c] : (real)0, stream, pf);
}

#if SHORT_ROWS && LX == 1 && SPAN_VEC == 16 && SR_B == 16
/* Instance norm's maps that gn_fwd_short and gn_bwd_short take: up to 8x8.
 * Maps of 16 and 25 values ran 1.4-2.2x faster this way on a 2-core Xeon
 * (49: 0.9-2.1x, in a noisy hour); 11x11 (121) about 1.1x slower forward. */
#ifndef GN_SHORT_ROWS
#define GN_SHORT_ROWS 64
#endif
/* gn_fwd_items for instance norm (a channel per group) on CPUs, rows of
 * 16..GN_SHORT_ROWS values: the whole blocks of 16 rows as
 * fwd_short_rows_l takes them (short_rows_tile, then FLAT_WALK), a row's
 * scale invstd*gamma and shift beta those of its channel. The same
 * operations per row as range_stats and gn_fwd_finish, so the same bits.
 * Returns the first task left to the row-by-row walk. */
inline uint gn_fwd_short(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                         __global const real *gamma, ulong goff, __global const real *beta, ulong boff,
                         __global real *mean, ulong moff, __global real *inv, ulong ioff, ulong R, ulong G,
                         ulong L, uint tpi, real eps, int stream)
{
    real rn = (real)L;
    uint t0 = 0;
    for (; t0 + SR_B <= tpi && ITEM_TASK(t0 + SR_B - 1) < R; t0 += SR_B) {
        real  hi[SR_B], lo[SR_B], q[SR_B], a[SR_B], b[SR_B];
        ulong r0   = ITEM_TASK(t0);
        int   next = t0 + 2 * SR_B <= tpi && ITEM_TASK(t0 + 2 * SR_B - 1) < R;
        __global const store_t *xb = x + xoff + r0 * L;
        short_rows_tile(xb, L, 0, next ? xb + SR_B * L : NOPF, hi, lo, q);
        real16 iv = (real)1 / sqrt(vload16(0, q) / rn + eps);
        if (mean)
            VSTOREV(vload16(0, hi) + vload16(0, lo), mean + moff + r0);
        if (inv)
            VSTOREV(iv, inv + ioff + r0);
        vstore16(iv, 0, q);
        for (uint k = 0; k < SR_B; ++k) {
            ulong ch = (r0 + k) % G;
            a[k]     = q[k] * (gamma ? gamma[goff + ch] : (real)1);
            b[k]     = beta ? beta[boff + ch] : (real)0;
        }
        FLAT_WALK(y + yoff + r0 * L, L, stream,
                  ((LOADV(xb, i) - FLAT_PICK(hi)) - FLAT_PICK(lo)) * FLAT_PICK(a) + FLAT_PICK(b),
                  ((LOAD1(xb, i) - hi[r]) - lo[r]) * a[r] + b[r]);
    }
    return t0;
}
#endif

__kernel void gn_fwd_items(GN_FWD_ARGS)
{
    ulong L = cpg * Sp;
    uint  t = 0;
#if SHORT_ROWS && LX == 1 && SPAN_VEC == 16 && SR_B == 16
    if (cpg == 1 && L >= SPAN_VEC && L <= GN_SHORT_ROWS)
        t = gn_fwd_short(x, xoff, y, yoff, gamma, goff, beta, boff, mean, moff, inv, ioff, R, G, L, tpi, eps,
                         stream);
#endif
    for (; t < tpi; ++t) {
        ulong r = ITEM_TASK(t);
        if (r >= R)
            break;
        __global const store_t *xr = x + xoff + r * L;
        ulong                   nx = NEXT_ROW(t, R, L);
        gn_fwd_finish(xr, y + yoff + r * L, gamma, goff, beta, boff, mean, moff, inv, ioff, r, G, cpg,
                      Sp, 0, 8, eps, range_stats(xr, 0, L, 0, 8, 0), stream, nx ? x + xoff + nx : NOPF);
    }
    NT_FENCE(stream);
}

__kernel void gn_fwd_groups(GN_FWD_ARGS)
{
    __local real4 sh[LX];
    uint  first = get_local_id(0) * 8;
    ulong L     = cpg * Sp;
    GROUP_TASKS(R);
    for (ulong t = 0; t < nt; ++t) {
        ulong r = t0 + t;
        __global const store_t *xr  = x + xoff + r * L;
        real4                   acc = lanes_merge(sh, range_stats(xr, 0, L, first, 8 * LX, 0), 0);
        gn_fwd_finish(xr, y + yoff + r * L, gamma, goff, beta, boff, mean, moff, inv, ioff, r, G, cpg,
                      Sp, first, 8 * LX, eps, acc, 0, NOPF);
    }
}

/* Group norm channels first on CPUs with streaming stores, rows of (n, g)
 * of 50 KB or more: a work-item takes tpi rows in a run (one stretch of
 * memory) and pipelines them `lead` rows deep. While it writes row r's y
 * it reads row r + lead for its statistics, GN_LEAD_SPAN values of each in
 * turn, so that reads from memory and streaming writes go on together, as
 * in a copy. The depth matters: rows read ahead must have left L2 before
 * they are written. On the 2-core EPYC (1 MB L2), (32,256,56,56) G32, rows
 * of 100 KB, the time 9 rows deep (the default, 800 KB) over the time one
 * row ahead 0.79 - 0.82, four 0.84 - 0.88, six 0.95 - 0.96, eleven and
 * thirteen 0.99 - 1.01, sixteen 0.98. The interleave too: spans of 4096 values ran 1.19 - 1.24x
 * slower than 1024 (512: the same), as a plain-C model had (a copy's pace
 * with 4 KB turns, less with 16 KB). Statistics: spans of GN_LEAD_SPAN
 * chained by stat_span_next, whatever the depth (other bits than
 * gn_fwd_items' spans of ROW_SPAN); y: gn_y_run, as gn_fwd_finish. */
#ifndef GN_LEAD_MAX
#define GN_LEAD_MAX 16
#endif
#ifndef GN_LEAD_SPAN
#define GN_LEAD_SPAN 1024
#endif
/* A row's statistics as gn_fwd_lead's walk merges them. */
inline real4 lead_stats(__global const store_t *p, ulong L)
{
    real4 acc = (real4)0;
    for (ulong i = 0; i < L; i += GN_LEAD_SPAN)
        acc = stat_span_next(acc, p + i, min((ulong)GN_LEAD_SPAN, L - i),
                             RS_PF && i + GN_LEAD_SPAN < L ? p + i + GN_LEAD_SPAN : NOPF);
    return acc;
}

__kernel void gn_fwd_lead(GN_FWD_ARGS, uint lead)
{
    ulong L = cpg * Sp, r0 = (ulong)get_global_id(0) * tpi;
    if (r0 >= R || lead == 0 || lead > GN_LEAD_MAX)
        return; /* (the host's depth never exceeds the array) */
    ulong nr = min((ulong)tpi, R - r0);
    x += xoff;
    y += yoff;
    real4 acc[GN_LEAD_MAX];
    for (uint j = 0; j < lead; ++j)
        acc[j] = j < nr ? lead_stats(x + (r0 + j) * L, L) : (real4)0;
    for (ulong t = 0; t < nr; ++t) {
        ulong                   r = r0 + t, gb = (r % G) * cpg;
        uint                    q = (uint)(t % lead);
        __global const store_t *xr = x + r * L;
        __global store_t       *yr = y + r * L;
        real4                   k  = row_coef(acc[q], (real)L, eps, 0);
        int                     ahead = t + lead < nr;
        __global const store_t *xa    = ahead ? xr + lead * L : xr;
        if (mean)
            mean[moff + r] = k.x + k.y;
        if (inv)
            inv[ioff + r] = k.z;
        acc[q] = (real4)0;
        for (ulong i0 = 0; i0 < L; i0 += GN_LEAD_SPAN) {
            ulong i1 = min(L, i0 + (ulong)GN_LEAD_SPAN);
            for (ulong c = i0 / Sp; c * Sp < i1; ++c)
                gn_y_run(xr, yr, max(i0, c * Sp), min(i1, c * Sp + Sp), 8, k,
                         k.z * (gamma ? gamma[goff + gb + c] : (real)1), beta ? beta[boff + gb + c] : (real)0,
                         stream, NOPF);
            if (ahead)
                acc[q] = stat_span_next(acc[q], xa + i0, i1 - i0,
                                        RS_PF && i0 + GN_LEAD_SPAN < L ? xa + i0 + GN_LEAD_SPAN : NOPF);
        }
    }
    NT_FENCE(stream);
}

/* ---- backward ------------------------------------------------------------- */

/* Layer/RMS norm dgamma and dbeta fused into the dx walk: each owner (a lane
 * that owns whole rows, or a work-group sharing them) keeps per-column sums
 * in its own 6 planes of L values of scratch, cache-resident next to the
 * rows: plain sums of dy*xhat and dy over a block of COL_BLOCK rows (planes
 * 0, 1), folded at the end of each block into compensated totals (planes 2-5:
 * sum dy*xhat, its correction, sum dy, its correction). rn_col_planes then
 * merges the owners in order. */
#ifndef COL_BLOCK
#define COL_BLOCK 16 /* even: rn_bwd_items pairs rows inside a block */
#endif
#if COL_BLOCK % 2
#error "COL_BLOCK must be even: rn_bwd_items pairs rows inside a block"
#endif
#define COL_PLANES 6
/* rn_bwd_items with column sums reads the next row ahead in its sums walk
 * (as bwd_finish does while it writes dx): without it the plane updates
 * slowed the walk that finds the row in memory, and layer norm backward
 * with dgamma/dbeta ran 1.16x slower on (16384, 1024), 1.22x on (8192,
 * 768). Paired rows (PAIR_ROWS) read the next pair ahead: 1.17x on (2048,
 * 4096), 1.24x on (4096, 2048). A/B: -DSUMS_PF=0 */
#ifndef SUMS_PF
#define SUMS_PF 1
#endif
#define PLANES_W   16 /* rn_col_planes' columns per work-item on CPUs (rownorm.c) */
#ifndef PAIR_ROWS
#define PAIR_ROWS 2048 /* rows at least this long (planes beyond L1); A/B: -DPAIR_ROWS=0 */
#endif

inline void col_add8(__global real *ca, ulong L, ulong i, real8 d, real8 xh, int start, int rms)
{
    __global real *pg = ca + i, *pb = ca + L + i;
    if (start) {
        GST(real, 8, d * xh, pg);
        if (!rms)
            GST(real, 8, d, pb);
    } else {
        GST(real, 8, fma(d, xh, GLD(real, 8, pg)), pg);
        if (!rms)
            GST(real, 8, GLD(real, 8, pb) + d, pb);
    }
}

inline void col_add1(__global real *ca, ulong L, ulong i, real d, real xh, int start, int rms)
{
    ca[i] = start ? d * xh : fma(d, xh, ca[i]);
    if (!rms)
        ca[L + i] = start ? d : ca[L + i] + d;
}

/* Folds the block sums of the lane's columns into the totals (stores them
 * when init: the owner's first block). */
inline void col_fold(__global real *ca, ulong L, uint first, uint step, int init, int rms)
{
    ulong i = first;
    for (int pl = 0; pl < (rms ? 1 : 2); ++pl) {
        __global real *pb = ca + pl * L, *ps = ca + (2 + 2 * pl) * L;
        for (i = first; i + 8 <= L; i += step) {
            real8 v = GLD(real, 8, pb + i);
            if (init) {
                GST(real, 8, v, ps + i);
                GST(real, 8, (real8)0, ps + L + i);
            } else {
                real8 sv = GLD(real, 8, ps + i), cv = GLD(real, 8, ps + L + i);
                nsum8(&sv, &cv, v);
                GST(real, 8, sv, ps + i);
                GST(real, 8, cv, ps + L + i);
            }
        }
        for (; i < L; ++i) {
            real v = pb[i];
            if (init) {
                ps[i]     = v;
                ps[L + i] = (real)0;
            } else {
                real sv = ps[i], t = sv + v;
                ps[L + i] += fabs(sv) >= fabs(v) ? (sv - t) + v : (v - t) + sv;
                ps[i] = t;
            }
        }
    }
}

/* Zeroes an owner's totals (an owner left without rows). */
inline void col_zero(__global real *ca, ulong L, uint first, uint step)
{
    for (ulong i = 2 * L + first / 8; i < COL_PLANES * L; i += step / 8)
        ca[i] = (real)0;
}

/* One span [i, e) of bwd_range_cols: the vector sums of g*dy (s1) and of
 * g*dy*(x - m) (s2), *t1 and *t2 the tail's; with ca, the row's terms of
 * its owner's column block sums too (col_add8: dy*xhat with xhat = (x -
 * m)*iv, and dy). Without ca, bwd_range's walk. */
inline void bwd_span_cols(__global const store_t *x, __global const store_t *dy, __global const real *gamma,
                          ulong goff, ulong L, ulong i, ulong e, real m, real iv, __global real *ca, int start,
                          int rms, __global const store_t *pfx, __global const store_t *pfdy, realv *s1,
                          realv *s2, real *t1, real *t2)
{
    ulong j = i;
    realv a1 = (realv)0, a2 = (realv)0;
    real  u1 = 0, u2 = 0;
    for (; j + SPAN_VEC <= e; j += SPAN_VEC) {
        PREFETCH_R(pfx, j);
        PREFETCH_R(pfdy, j);
        realv dr = LOADV(dy, j), xm = LOADV(x, j) - m;
        realv d  = gamma ? dr * VLOADV(gamma + goff + j) : dr;
        a1 += d;
        a2 = fma(d, xm, a2);
        if (!ca)
            continue;
        realv          xh = xm * iv;
        __global real *pg = ca + j, *pb = ca + L + j;
        if (start) {
            VSTOREV(dr * xh, pg);
            if (!rms)
                VSTOREV(dr, pb);
        } else {
            VSTOREV(fma(dr, xh, VLOADV(pg)), pg);
            if (!rms)
                VSTOREV(VLOADV(pb) + dr, pb);
        }
    }
    for (; j < e; ++j) {
        real dr = LOAD1(dy, j), xm = LOAD1(x, j) - m;
        real d  = gamma ? dr * gamma[goff + j] : dr;
        u1 += d;
        u2 = fma(d, xm, u2);
        if (ca)
            col_add1(ca, L, j, dr, xm * iv, start, rms);
    }
    *s1 = a1;
    *s2 = a2;
    *t1 = u1;
    *t2 = u2;
}

/* bwd_range for a lone lane over a whole row [0, L), with the row's
 * contribution to its owner's column block sums taken in the same walk. */
inline real4 bwd_range_cols(__global const store_t *x, __global const store_t *dy,
                            __global const real *gamma, ulong goff, ulong L, real m, real iv,
                            __global real *ca, int start, int rms, __global const store_t *pfx,
                            __global const store_t *pfdy)
{
    real4 acc = (real4)0;
    for (ulong i = 0; i < L; i += SPAN) {
        realv s1, s2;
        real  t1, t2;
        /* with no unit to read ahead given, the row's next span */
        int nx = RS_PF && !pfx && i + SPAN < L;
        bwd_span_cols(x, dy, gamma, goff, L, i, min(L, i + SPAN), m, iv, ca, start, rms, nx ? x + SPAN : pfx,
                      nx ? dy + SPAN : pfdy, &s1, &s2, &t1, &t2);
        acc = sum2_add(acc, (real2)(sumv(s1) + t1, sumv(s2) + t2));
    }
    return acc;
}

/* bwd_range_cols for two rows a and b of the same owner and block at once:
 * each plane value is loaded and stored once for both, the cost that
 * dominates when a row's columns outgrow L1. The same operations in the
 * same order as two calls (row a's terms, then row b's), so the same bits.
 * Returns row a's sums in .lo, row b's in .hi. */
inline real8 bwd_range_cols2(__global const store_t *xa, __global const store_t *dya,
                             __global const store_t *xb, __global const store_t *dyb,
                             __global const real *gamma, ulong goff, ulong L, real ma, real iva,
                             real mb, real ivb, __global real *ca, int start, int rms,
                             __global const store_t *pfxa, __global const store_t *pfdya,
                             __global const store_t *pfxb, __global const store_t *pfdyb)
{
    real4 acca = (real4)0, accb = (real4)0;
    for (ulong i = 0; i < L; i += SPAN) {
        ulong e = min(L, i + SPAN), j = i;
        realv s1a = (realv)0, s2a = (realv)0, s1b = (realv)0, s2b = (realv)0;
        real  t1a = 0, t2a = 0, t1b = 0, t2b = 0;
        for (; j + SPAN_VEC <= e; j += SPAN_VEC) {
            PREFETCH_R(pfxa, j);
            PREFETCH_R(pfdya, j);
            PREFETCH_R(pfxb, j);
            PREFETCH_R(pfdyb, j);
            realv dra = LOADV(dya, j), xma = LOADV(xa, j) - ma;
            realv drb = LOADV(dyb, j), xmb = LOADV(xb, j) - mb;
            realv g   = gamma ? VLOADV(gamma + goff + j) : (realv)1;
            realv da = gamma ? dra * g : dra, db = gamma ? drb * g : drb;
            s1a += da;
            s2a = fma(da, xma, s2a);
            s1b += db;
            s2b = fma(db, xmb, s2b);
            realv          xha = xma * iva, xhb = xmb * ivb;
            __global real *pg = ca + j, *pb = ca + L + j;
            VSTOREV(fma(drb, xhb, start ? dra * xha : fma(dra, xha, VLOADV(pg))), pg);
            if (!rms)
                VSTOREV((start ? dra : VLOADV(pb) + dra) + drb, pb);
        }
        for (; j < e; ++j) {
            real dra = LOAD1(dya, j), xma = LOAD1(xa, j) - ma;
            real drb = LOAD1(dyb, j), xmb = LOAD1(xb, j) - mb;
            real g = gamma ? gamma[goff + j] : (real)1;
            real da = gamma ? dra * g : dra, db = gamma ? drb * g : drb;
            t1a += da;
            t2a = fma(da, xma, t2a);
            t1b += db;
            t2b = fma(db, xmb, t2b);
            col_add1(ca, L, j, dra, xma * iva, start, rms);
            col_add1(ca, L, j, drb, xmb * ivb, 0, rms);
        }
        acca = sum2_add(acca, (real2)(sumv(s1a) + t1a, sumv(s2a) + t2a));
        accb = sum2_add(accb, (real2)(sumv(s1b) + t1b, sumv(s2b) + t2b));
    }
    return (real8)(acca, accb);
}

/* After a row's sums: dx = a*g*dy - b - (x - m)*k over the lane's blocks;
 * with ca, the column sums of dy*xhat (xhat = (x - m)*inv) and dy as well. */
inline void bwd_finish(__global const store_t *xr, __global const store_t *dyr, __global store_t *dxr,
                       __global const real *gamma, ulong goff, ulong L, uint first, uint step, real4 k,
                       __global real *ca, int start, int rms, int stream, __global const store_t *pfx,
                       __global const store_t *pfdy)
{
    ulong i = first;
    if (step == 8 && !ca) { /* a lone lane: the span walks' vector width */
        WALKV(i, L, dxr, stream, pfx, pfdy,
              (k.z * (gamma ? VLOADV(gamma + goff + i) : (realv)1)) * LOADV(dyr, i) - k.w -
                  (LOADV(xr, i) - k.x) * k.y,
              (k.z * (gamma ? gamma[goff + i] : (real)1)) * LOAD1(dyr, i) - k.w - (LOAD1(xr, i) - k.x) * k.y);
    }
    for (; i + 8 <= L; i += step) {
        real8 g = gamma ? GLD(real, 8, gamma + goff + i) : (real8)1;
        real8 d = LOAD8(dyr, i), xv = LOAD8(xr, i);
        STORE8((k.z * g) * d - k.w - (xv - k.x) * k.y, dxr, i);
        if (ca)
            col_add8(ca, L, i, d, (xv - k.x) * k.z, start, rms);
    }
    for (; i < L; ++i) {
        real g = gamma ? gamma[goff + i] : (real)1;
        real d = LOAD1(dyr, i), xv = LOAD1(xr, i);
        STORE1((k.z * g) * d - k.w - (xv - k.x) * k.y, dxr, i);
        if (ca)
            col_add1(ca, L, i, d, (xv - k.x) * k.z, start, rms);
    }
}

#if SPAN_VEC == 16
/* bwd_span_cols for a whole block of 16 rows shorter than a vector (its
 * tails), a row per lane: the sums into sg and sy as the tile's sum2_total16
 * gives them, x and dy transposed into tx and tdy for dx. With ca, the
 * block's column sums as col_add1 takes them row after row, a column per
 * lane. The same operations per value, so the same bits. */
ALWAYS_INLINE inline void narrow_bwd_sums(__global const store_t *x, __global const store_t *dy,
                                          __global const real *gamma, ulong goff, ulong L, const real *m,
                                          const real *iv, __global real *ca, int rms, real *tx, real *tdy,
                                          real *sg, real *sy)
{
    real fx[NARROW_F], fdy[NARROW_F];
    narrow_load(x, L, fx, tx);
    narrow_load(dy, L, fdy, tdy);
    real16 mv = vload16(0, m), u1 = (real16)0, u2 = (real16)0;
    for (uint c = 0; c < (uint)L; ++c) {
        real16 dr = NARROW_T(tdy, c), xm = NARROW_T(tx, c) - mv;
        real16 d  = gamma ? dr * gamma[goff + c] : dr;
        u1 += d;
        u2 = fma(d, xm, u2);
    }
    vstore16(sum2_total16((real16)0 + u1), 0, sg);
    vstore16(sum2_total16((real16)0 + u2), 0, sy);
    if (!ca)
        return;
    real16 pg = (real16)0, pb = (real16)0;
    for (uint k = 0; k < 16; ++k) {
        real16 dr = vload16(0, fdy + k * L), xh = (vload16(0, fx + k * L) - m[k]) * iv[k];
        pg = k == 0 ? dr * xh : fma(dr, xh, pg);
        pb = k == 0 ? dr : pb + dr;
    }
    real g[16], b[16];
    vstore16(pg, 0, g);
    vstore16(pb, 0, b);
    for (uint j = 0; j < (uint)L; ++j) {
        ca[j] = g[j];
        if (!rms)
            ca[L + j] = b[j];
    }
}
#endif

/* rn_bwd_items for rows of at most SHORT_ROWS values, as fwd_short_rows:
 * SR_B (= COL_BLOCK) rows at a time, their sums (and column block sums,
 * reading ahead the same row of the next block), their coefficients as
 * vectors, then their dx in a plain vector loop when the rows are whole
 * vectors; the column block sums are folded once per block, as row by row.
 * The same operations per row as bwd_range_cols, bwd_coef and bwd_finish. */
#if SPAN_VEC == 16
/* dx of a block of short rows as short_rows_flat takes y: coefficients
 * (m, k, a, b) per row as bwd_coef's, dx = a*g*dy - b - (x - m)*k, the same
 * expression per value as bwd_finish. */
inline void short_rows_flat_dx(__global const store_t *xb, __global const store_t *dyb, __global store_t *dxb,
                               ulong L, const real *m, const real *k, const real *a, const real *b,
                               const real *gx, int stream)
{
    FLAT_WALK(dxb, L, stream,
              (FLAT_PICK(a) * vload16(0, gx + c)) * LOADV(dyb, i) - FLAT_PICK(b) -
                  (LOADV(xb, i) - FLAT_PICK(m)) * FLAT_PICK(k),
              (a[r] * gx[c]) * LOAD1(dyb, i) - b[r] - (LOAD1(xb, i) - m[r]) * k[r]);
}
#endif

ALWAYS_INLINE inline void bwd_short_rows_l(__global const store_t *x, ulong xoff, __global const store_t *dy,
                                          ulong dyoff, __global store_t *dx, ulong dxoff,
                                          __global const real *gamma, ulong goff, __global const real *mean,
                                          ulong moff, __global const real *inv, ulong ioff, ulong R, ulong L,
                                          uint tpi, int rms, __global real *ca, int stream)
{
    if (ca && ITEM_TASK(0) >= R)
        col_zero(ca, L, 0, 8);
    real rn = (real)L;
#if SPAN_VEC == 16
    /* gamma for short_rows_flat_dx */
    int  flat = L > SPAN_VEC && L % SPAN_VEC != 0;
    real gx[SHORT_ROWS + SPAN_VEC];
    for (ulong j = 0; flat && j < L + SPAN_VEC; ++j)
        gx[j] = gamma ? gamma[goff + j % L] : (real)1;
#endif
#if SPAN_VEC == 16
    real tx[16 * 15], tdy[16 * 15]; /* a block of rows shorter than a vector, transposed */
#endif
    for (uint t0 = 0; t0 < tpi && ITEM_TASK(t0) < R; t0 += SR_B) {
        real m[SR_B], iv[SR_B], sg[SR_B], sy[SR_B];
        uint n = 0;
        int  tile = 0;
#if SPAN_VEC == 16 && SR_B == 16 && LX == 1
        /* whole blocks (contiguous rows, LX == 1): the walks row by row,
         * tails included, the horizontal sums and sum2_add as vectors over
         * the block; the same operations per row, so the same bits */
        if (t0 + SR_B <= tpi && ITEM_TASK(t0 + SR_B - 1) < R) {
            ulong r0   = ITEM_TASK(t0);
            int   next = t0 + 2 * SR_B <= tpi && ITEM_TASK(t0 + 2 * SR_B - 1) < R;
            real16 a[SR_B], b[SR_B];
            real   t1[SR_B], t2[SR_B];
            vstore16(rms ? (real16)0 : VLOADV(mean + moff + r0), 0, m);
            vstore16(VLOADV(inv + ioff + r0), 0, iv);
            n    = SR_B;
            tile = 1;
            if (L < SPAN_VEC)
                narrow_bwd_sums(x + xoff + r0 * L, dy + dyoff + r0 * L, gamma, goff, L, m, iv, ca, rms, tx, tdy, sg,
                                sy);
            else {
                for (uint k = 0; k < SR_B; ++k) {
                    ulong e = (r0 + k) * L, f = (r0 + k + SR_B) * L;
                    bwd_span_cols(x + xoff + e, dy + dyoff + e, gamma, goff, L, 0, L, m[k], iv[k], ca, k == 0, rms,
                                  ca && next ? x + xoff + f : NOPF, ca && next ? dy + dyoff + f : NOPF, &a[k],
                                  &b[k], &t1[k], &t2[k]);
                }
                vstore16(sum2_total16(sum16x16(a) + vload16(0, t1)), 0, sg);
                vstore16(sum2_total16(sum16x16(b) + vload16(0, t2)), 0, sy);
            }
        }
#endif
        for (; n < SR_B && t0 + n < tpi && ITEM_TASK(t0 + n) < R; ++n) {
            ulong r = ITEM_TASK(t0 + n), nr = t0 + n + SR_B < tpi ? ITEM_TASK(t0 + n + SR_B) : R;
            __global const store_t *xr = x + xoff + r * L, *dyr = dy + dyoff + r * L;
            m[n]      = rms ? (real)0 : mean[moff + r];
            iv[n]     = inv[ioff + r];
            real4 acc = ca ? bwd_range_cols(xr, dyr, gamma, goff, L, m[n], iv[n], ca, n == 0, rms,
                                            nr < R ? x + xoff + nr * L : NOPF, nr < R ? dy + dyoff + nr * L : NOPF)
                           : bwd_range(xr, dyr, gamma, goff, 0, L, 0, 8, m[n]);
            sg[n] = acc.x + acc.z;
            sy[n] = acc.y + acc.w;
        }
        for (uint b = n; b < SR_B; ++b)
            iv[b] = sg[b] = sy[b] = (real)0;
        /* bwd_coef's (.y, .w) for the block */
        real16 vi = vload16(0, iv), ky = vi * vi * (vi * vload16(0, sy)) / rn;
        real16 kw = rms ? (real16)0 : vi * (vload16(0, sg) / rn);
        vstore16(ky, 0, sy);
        vstore16(kw, 0, sg);
        int vec = L % SPAN_VEC == 0, nt = HAVE_NT && stream && vec &&
                  ((ulong)(dx + dxoff + ITEM_TASK(t0) * L) & (sizeof(realv) - 1)) == 0;
#if SPAN_VEC == 16
        if (tile && flat) {
            ulong e = ITEM_TASK(t0) * L;
            short_rows_flat_dx(x + xoff + e, dy + dyoff + e, dx + dxoff + e, L, m, sy, iv, sg, gx, stream);
            n = 0; /* done: on to the column sums */
        }
        if (tile && L < SPAN_VEC) { /* bwd_finish's expression, a row per lane */
            real16 mv = vload16(0, m), vv = vload16(0, iv), kw = vload16(0, sg), ky = vload16(0, sy);
            for (uint c = 0; c < (uint)L; ++c)
                vstore16((vv * (gamma ? gamma[goff + c] : (real)1)) * NARROW_T(tdy, c) - kw -
                             (NARROW_T(tx, c) - mv) * ky,
                         c, tx);
            narrow_store(tx, L, dx + dxoff + ITEM_TASK(t0) * L,
                         HAVE_NT && stream && ((ulong)(dx + dxoff + ITEM_TASK(t0) * L) & (sizeof(realv) - 1)) == 0);
            n = 0; /* done: on to the column sums */
        }
        if (tile && L == SPAN_VEC) { /* rows of one vector, as fwd_short_rows_l (2-7% faster) */
            ulong e = ITEM_TASK(t0) * L;
            realv g = gamma ? VLOADV(gamma + goff) : (realv)1;
            for (uint b = 0; b < SR_B; ++b, e += SPAN_VEC) {
                realv v = (iv[b] * g) * LOADV(dy + dyoff, e) - sg[b] - (LOADV(x + xoff, e) - m[b]) * sy[b];
                if (nt)
                    STOREV_NT(v, dx + dxoff, e);
                else
                    STOREV(v, dx + dxoff, e);
            }
            n = 0; /* done: on to the column sums */
        }
#endif
        for (uint b = 0; b < n; ++b) {
            ulong r = ITEM_TASK(t0 + b);
            real4 k = (real4)(m[b], sy[b], iv[b], sg[b]);
            __global const store_t *xr = x + xoff + r * L, *dyr = dy + dyoff + r * L;
            __global store_t       *dxr = dx + dxoff + r * L;
            if (!vec) {
                bwd_finish(xr, dyr, dxr, gamma, goff, L, 0, 8, k, 0, 0, rms, stream, NOPF, NOPF);
                continue;
            }
            for (ulong i = 0; i < L; i += SPAN_VEC) {
                realv v = (k.z * (gamma ? VLOADV(gamma + goff + i) : (realv)1)) * LOADV(dyr, i) - k.w -
                          (LOADV(xr, i) - k.x) * k.y;
                if (nt)
                    STOREV_NT(v, dxr, i);
                else
                    STOREV(v, dxr, i);
            }
        }
        if (ca)
            col_fold(ca, L, 0, 8, t0 == 0, rms);
    }
}

/* bwd_short_rows_l, with rows of one vector and rows of 8 as constants, as
 * fwd_short_rows */
inline void bwd_short_rows(__global const store_t *x, ulong xoff, __global const store_t *dy, ulong dyoff,
                           __global store_t *dx, ulong dxoff, __global const real *gamma, ulong goff,
                           __global const real *mean, ulong moff, __global const real *inv, ulong ioff,
                           ulong R, ulong L, uint tpi, int rms, __global real *ca, int stream)
{
    if (L == SPAN_VEC)
        bwd_short_rows_l(x, xoff, dy, dyoff, dx, dxoff, gamma, goff, mean, moff, inv, ioff, R, SPAN_VEC, tpi,
                         rms, ca, stream);
    else if (L == 8)
        bwd_short_rows_l(x, xoff, dy, dyoff, dx, dxoff, gamma, goff, mean, moff, inv, ioff, R, 8, tpi, rms,
                         ca, stream);
    else
        bwd_short_rows_l(x, xoff, dy, dyoff, dx, dxoff, gamma, goff, mean, moff, inv, ioff, R, L, tpi, rms,
                         ca, stream);
}

#define BWD_ARGS                                                                               \
    __global const store_t *x, ulong xoff, __global const store_t *dy, ulong dyoff,            \
        __global store_t *dx, ulong dxoff, __global const real *gamma, ulong goff,             \
        __global const real *mean, ulong moff, __global const real *inv, ulong ioff, ulong R,  \
        ulong L, uint tpi, int rms, __global real *cacc, ulong caoff, int stream, uint lpr

/* Whole rows: the sums of g*dy and g*dy*(x - mean), then dx, cache-hot; with
 * cacc, the owner's column sums for dgamma/dbeta at cacc[caoff + owner*4L]. */
__kernel void rn_bwd_items(BWD_ARGS)
{
    __global real *ca = cacc ? cacc + caoff + (ulong)get_global_id(0) * COL_PLANES * L : 0;
#if SHORT_ROWS && LX == 1 && SR_B == COL_BLOCK
    if (L <= SHORT_ROWS) {
        bwd_short_rows(x, xoff, dy, dyoff, dx, dxoff, gamma, goff, mean, moff, inv, ioff, R, L, tpi, rms, ca,
                       stream);
        NT_FENCE(stream);
        return;
    }
#endif
    for (uint t = 0; t < tpi; ++t) {
        ulong r = ITEM_TASK(t);
        if (r >= R) {
            if (ca && t == 0)
                col_zero(ca, L, 0, 8);
            break;
        }
        __global const store_t *xr = x + xoff + r * L, *dyr = dy + dyoff + r * L;
        real  m   = rms ? (real)0 : mean[moff + r];
        real  iv  = inv[ioff + r];
#if PAIR_ROWS
        /* with column sums, rows go two at a time (t even: a pair never
         * straddles a COL_BLOCK); a last odd row takes the walk below */
        ulong r2 = t + 1 < tpi ? ITEM_TASK(t + 1) : R;
        if (ca && L >= PAIR_ROWS && t % 2 == 0 && r2 < R) {
            __global const store_t *xb = x + xoff + r2 * L, *dyb = dy + dyoff + r2 * L;
            real  mb = rms ? (real)0 : mean[moff + r2];
            real  ivb = inv[ioff + r2];
            ulong na = NEXT_ROW(t + 1, R, L), nb = NEXT_ROW(t + 2, R, L);
            int   pc = SUMS_PF && na, pd = SUMS_PF && nb;
            real8 a2 = bwd_range_cols2(xr, dyr, xb, dyb, gamma, goff, L, m, iv, mb, ivb, ca, t % COL_BLOCK == 0,
                                       rms, pc ? x + xoff + na : NOPF, pc ? dy + dyoff + na : NOPF,
                                       pd ? x + xoff + nb : NOPF, pd ? dy + dyoff + nb : NOPF);
            real4 ka = bwd_coef(a2.s0 + a2.s2, a2.s1 + a2.s3, m, iv, (real)L, rms);
            real4 kb = bwd_coef(a2.s4 + a2.s6, a2.s5 + a2.s7, mb, ivb, (real)L, rms);
            bwd_finish(xr, dyr, dx + dxoff + r * L, gamma, goff, L, 0, 8, ka, 0, 0, rms, stream,
                       na ? x + xoff + na : NOPF, na ? dy + dyoff + na : NOPF);
            bwd_finish(xb, dyb, dx + dxoff + r2 * L, gamma, goff, L, 0, 8, kb, 0, 0, rms, stream,
                       nb ? x + xoff + nb : NOPF, nb ? dy + dyoff + nb : NOPF);
            ++t;
            if (t % COL_BLOCK == COL_BLOCK - 1 || t + 1 == tpi || ITEM_TASK(t + 1) >= R)
                col_fold(ca, L, 0, 8, t < COL_BLOCK, rms);
            continue;
        }
#endif
        ulong nx  = NEXT_ROW(t, R, L);
        int   spf = SUMS_PF && nx;
        real4 acc = ca ? bwd_range_cols(xr, dyr, gamma, goff, L, m, iv, ca, t % COL_BLOCK == 0, rms,
                                        spf ? x + xoff + nx : NOPF, spf ? dy + dyoff + nx : NOPF)
                       : bwd_range(xr, dyr, gamma, goff, 0, L, 0, 8, m);
        real4 k   = bwd_coef(acc.x + acc.z, acc.y + acc.w, m, iv, (real)L, rms);
        bwd_finish(xr, dyr, dx + dxoff + r * L, gamma, goff, L, 0, 8, k, 0, 0, rms, stream,
                   nx ? x + xoff + nx : NOPF, nx ? dy + dyoff + nx : NOPF);
        if (ca && (t % COL_BLOCK == COL_BLOCK - 1 || t + 1 == tpi || ITEM_TASK(t + 1) >= R))
            col_fold(ca, L, 0, 8, t < COL_BLOCK, rms);
    }
    NT_FENCE(stream);
}

/* With cacc, the fused column sums owned per work-group. */
__kernel void rn_bwd_groups(BWD_ARGS)
{
    __local real4 sh[LX];
    uint first = get_local_id(0) * 8;
    __global real *ca = cacc ? cacc + caoff + (ulong)get_group_id(0) * COL_PLANES * L : 0;
    GROUP_TASKS(R);
    if (ca && nt == 0)
        col_zero(ca, L, first, 8 * LX);
    for (ulong t = 0; t < nt; ++t) {
        ulong r = t0 + t;
        __global const store_t *xr = x + xoff + r * L, *dyr = dy + dyoff + r * L;
        real  m   = rms ? (real)0 : mean[moff + r];
        real4 acc = lanes_merge(sh, bwd_range(xr, dyr, gamma, goff, 0, L, first, 8 * LX, m), 1);
        real4 k   = bwd_coef(acc.x + acc.z, acc.y + acc.w, m, inv[ioff + r], (real)L, rms);
        bwd_finish(xr, dyr, dx + dxoff + r * L, gamma, goff, L, first, 8 * LX, k, ca, t % COL_BLOCK == 0,
                   rms, 0, NOPF, NOPF);
        if (ca && (t % COL_BLOCK == COL_BLOCK - 1 || t + 1 == nt))
            col_fold(ca, L, first, 8 * LX, t < COL_BLOCK, rms);
    }
}

/* GPUs, rows of 8*LX to RN_NB*8*LX values, a multiple of 8 (rownorm.c):
 * the work-group shares each of its tpi rows as rn_bwd_groups does, and
 * each lane keeps the column sums of dy*xhat and dy for its RN_NB blocks
 * of 8 columns in registers, plain over the owner's rows (at most 64, as
 * the CPU planes' blocks of COL_BLOCK rows); then writes (sum dy*xhat,
 * sum dy, 0, 0) per column at part[owner*L + j] (cacc + caoff as real4s)
 * for rn_col_combine, which merges the owners compensated, in order. */
#define RN_NB 4
__kernel void rn_bwd_regs(BWD_ARGS)
{
    __local real4 sh[LX];
    uint first = get_local_id(0) * 8;
    GROUP_TASKS(R);
    real8 sg[RN_NB], sb[RN_NB];
    for (int b = 0; b < RN_NB; ++b)
        sg[b] = sb[b] = (real8)0;
    for (ulong t = 0; t < nt; ++t) {
        ulong r = t0 + t;
        __global const store_t *xr = x + xoff + r * L, *dyr = dy + dyoff + r * L;
        __global store_t       *dxr = dx + dxoff + r * L;
        real  m   = rms ? (real)0 : mean[moff + r];
        real4 acc = lanes_merge(sh, bwd_range(xr, dyr, gamma, goff, 0, L, first, 8 * LX, m), 1);
        real4 k   = bwd_coef(acc.x + acc.z, acc.y + acc.w, m, inv[ioff + r], (real)L, rms);
        for (int b = 0; b < RN_NB; ++b) {
            ulong i = first + (ulong)b * 8 * LX;
            if (i < L) {
                real8 g = gamma ? GLD(real, 8, gamma + goff + i) : (real8)1;
                real8 d = LOAD8(dyr, i), xv = LOAD8(xr, i);
                STORE8((k.z * g) * d - k.w - (xv - k.x) * k.y, dxr, i);
                sg[b] = fma(d, (xv - k.x) * k.z, sg[b]);
                sb[b] += d;
            }
        }
    }
    __global real4 *part = (__global real4 *)(cacc + caoff) + (ulong)get_group_id(0) * L;
    for (int b = 0; b < RN_NB; ++b) {
        ulong i = first + (ulong)b * 8 * LX;
        if (i < L) {
            real8 a = sg[b], c = sb[b];
            part[i]     = (real4)(a.s0, c.s0, (real)0, (real)0);
            part[i + 1] = (real4)(a.s1, c.s1, (real)0, (real)0);
            part[i + 2] = (real4)(a.s2, c.s2, (real)0, (real)0);
            part[i + 3] = (real4)(a.s3, c.s3, (real)0, (real)0);
            part[i + 4] = (real4)(a.s4, c.s4, (real)0, (real)0);
            part[i + 5] = (real4)(a.s5, c.s5, (real)0, (real)0);
            part[i + 6] = (real4)(a.s6, c.s6, (real)0, (real)0);
            part[i + 7] = (real4)(a.s7, c.s7, (real)0, (real)0);
        }
    }
}

/* Short rows. With cacc (rows a multiple of 8 values, at most 16*lpr:
 * two blocks of 8 per lane), dgamma/dbeta as rn_bwd_regs: each lane sums
 * its columns over the rows of its slot (lane / lpr) in registers; at the
 * end the slots' sums are added in slot order through local memory and
 * written as the owner's partials at part[owner*L + j]. */
__kernel void rn_bwd_sub(BWD_ARGS)
{
    __local real4 sh[LX];
    /* with cacc: slot s's sums of column j at cs[s*L + j] (LX/lpr slots of
     * at most 16*lpr columns) */
    __local real2 cs[16 * LX];
    SUB_ROWS
    real8 sg[2] = {(real8)0, (real8)0}, sb[2] = {(real8)0, (real8)0};
    for (ulong t = 0; t < nt; ++t) {
        ulong r  = SUB_ROW(t);
        int   ok = r < R;
        __global const store_t *xr = x + xoff + (ok ? r : 0) * L, *dyr = dy + dyoff + (ok ? r : 0) * L;
        real  m   = rms || !ok ? (real)0 : mean[moff + r];
        real4 acc = lanes_merge_sub(
            sh, ok ? bwd_range(xr, dyr, gamma, goff, 0, L, first, 8 * lpr, m) : (real4)0, 1, lpr);
        if (!ok)
            continue;
        real4 k = bwd_coef(acc.x + acc.z, acc.y + acc.w, m, inv[ioff + r], (real)L, rms);
        if (!cacc) {
            bwd_finish(xr, dyr, dx + dxoff + r * L, gamma, goff, L, first, 8 * lpr, k, 0, 0, rms, 0,
                       NOPF, NOPF);
            continue;
        }
        for (int b = 0; b < 2; ++b) {
            ulong i = first + (ulong)b * 8 * lpr;
            if (i < L) {
                real8 g = gamma ? GLD(real, 8, gamma + goff + i) : (real8)1;
                real8 d = LOAD8(dyr, i), xv = LOAD8(xr, i);
                STORE8((k.z * g) * d - k.w - (xv - k.x) * k.y, dx + dxoff + r * L, i);
                sg[b] = fma(d, (xv - k.x) * k.z, sg[b]);
                sb[b] += d;
            }
        }
    }
    uint slot = lane / lpr;
    for (int b = 0; b < 2 && cacc; ++b) {
        ulong i = first + (ulong)b * 8 * lpr;
        if (i < L) {
            __local real2 *c = cs + slot * L + i;
            real8          a = sg[b], e = sb[b];
            c[0] = (real2)(a.s0, e.s0);
            c[1] = (real2)(a.s1, e.s1);
            c[2] = (real2)(a.s2, e.s2);
            c[3] = (real2)(a.s3, e.s3);
            c[4] = (real2)(a.s4, e.s4);
            c[5] = (real2)(a.s5, e.s5);
            c[6] = (real2)(a.s6, e.s6);
            c[7] = (real2)(a.s7, e.s7);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!cacc)
        return;
    __global real4 *part = (__global real4 *)(cacc + caoff) + (ulong)get_group_id(0) * L;
    for (ulong j = lane; j < L; j += LX) {
        real2 a = cs[j];
        for (uint s2 = 1; s2 < rpt; ++s2)
            a += cs[s2 * L + j];
        part[j] = (real4)(a.x, a.y, (real)0, (real)0);
    }
}

/* Column merges (rn_col_planes, rn_col_combine): column j sums K terms in
 * order. With LX >= 16 (GPUs), a work-group covers CSLICE_W columns, and
 * its NSLICE lanes per column take every NSLICE-th term, merged after by a
 * fixed tree: one work-item per column was thousands of dependent loads
 * long. Neighbouring lanes read neighbouring columns. */
#if LX >= 16
#define CSLICE_W 8
#define NSLICE   (LX / CSLICE_W)
#define COLS_SLICED_BEGIN(n)                                                \
    __local real4 sh[LX];                                                   \
    uint  lane = get_local_id(0), cx = lane % CSLICE_W;                     \
    ulong j = get_group_id(0) * CSLICE_W + cx, k = lane / CSLICE_W;         \
    real4 acc = (real4)0;                                                   \
    if (j >= (n))                                                           \
        k = K;
#define COLS_SLICED_END(n)                                                  \
    sh[lane] = acc;                                                         \
    barrier(CLK_LOCAL_MEM_FENCE);                                           \
    for (uint h = NSLICE / 2; h > 0; h >>= 1) {                             \
        if (lane / CSLICE_W < h)                                            \
            sh[lane] = sum_merge(sh[lane], sh[lane + h * CSLICE_W]);        \
        barrier(CLK_LOCAL_MEM_FENCE);                                       \
    }                                                                       \
    if (lane >= CSLICE_W || j >= (n))                                       \
        return;                                                             \
    acc = sh[lane];
#else
#define NSLICE 1
#define COLS_SLICED_BEGIN(n)                                                \
    ulong j = get_global_id(0), k = 0;                                      \
    real4 acc = (real4)0;                                                   \
    if (j >= (n))                                                           \
        return;
#define COLS_SLICED_END(n)
#endif

/* Per column j: merges the K owners' planes (rn_bwd_* with cacc) in a fixed
 * order into dgamma[j] and dbeta[j] (each optional). */
/* Owner k's (sum dy*xhat, sum dy, their corrections) at column p. */
#define PLANES_TERM(k) \
    ((real4)(p[((k) * COL_PLANES + 2) * L], p[((k) * COL_PLANES + 4) * L], p[((k) * COL_PLANES + 3) * L], \
             p[((k) * COL_PLANES + 5) * L]))
__kernel void rn_col_planes(__global const real *cacc, ulong caoff, ulong K, ulong L,
                            __global real *dgamma, ulong dgoff, __global real *dbeta, ulong dboff)
{
#if LX == 1
    /* CPUs: a work-item per PLANES_W neighbouring columns (rownorm.c
     * launches L/PLANES_W), merged with vector operations: per column the
     * same operations in the same order as the scalar merge below, so the
     * same bits. One column per work-item left the merge scalar and
     * compute-bound: with 32 owners of 4096 columns it took about a fifth
     * of layer norm backward's time on a 2-core Xeon. */
    {
        ulong j0 = get_global_id(0) * PLANES_W;
        if (j0 >= L)
            return;
        __global const real *p = cacc + caoff + j0;
        if (j0 + PLANES_W <= L) {
            real8 sg[2] = {(real8)0, (real8)0}, cg[2] = {(real8)0, (real8)0};
            real8 sb[2] = {(real8)0, (real8)0}, cb[2] = {(real8)0, (real8)0};
            for (ulong k = 0; k < K; ++k) {
                __global const real *q = p + k * COL_PLANES * L;
                for (int h = 0; h < 2; ++h) {
                    nsum8(&sg[h], &cg[h], GLD(real, 8, q + 2 * L + 8 * h));
                    cg[h] += GLD(real, 8, q + 3 * L + 8 * h);
                    nsum8(&sb[h], &cb[h], GLD(real, 8, q + 4 * L + 8 * h));
                    cb[h] += GLD(real, 8, q + 5 * L + 8 * h);
                }
            }
            for (int h = 0; h < 2; ++h) {
                if (dgamma)
                    GST(real, 8, sg[h] + cg[h], dgamma + dgoff + j0 + 8 * h);
                if (dbeta)
                    GST(real, 8, sb[h] + cb[h], dbeta + dboff + j0 + 8 * h);
            }
            return;
        }
        for (ulong j = j0; j < L; ++j) {
            real4 acc = (real4)0;
            p         = cacc + caoff + j;
            MERGE_STRIDED(acc, 0, K, 1, PLANES_TERM, sum_merge);
            if (dgamma)
                dgamma[dgoff + j] = acc.x + acc.z;
            if (dbeta)
                dbeta[dboff + j] = acc.y + acc.w;
        }
        return;
    }
#endif
    COLS_SLICED_BEGIN(L)
    __global const real *p = cacc + caoff + j;
    MERGE_STRIDED(acc, k, K, NSLICE, PLANES_TERM, sum_merge);
    COLS_SLICED_END(L)
    if (dgamma)
        dgamma[dgoff + j] = acc.x + acc.z;
    if (dbeta)
        dbeta[dboff + j] = acc.y + acc.w;
}

/* Group norm, channels first, fused (rows as gn_fwd_*): per channel
 * segment the compensated (sum dy, sum dy*(x - m)), weighted by its gamma
 * into the group's sums and, with tab, written as the (n, c) terms of
 * dgamma/dbeta (as rn_bwd_combine); then dx per segment, cache-hot. */
#define GN_BWD_ARGS                                                                            \
    __global const store_t *x, ulong xoff, __global const store_t *dy, ulong dyoff,            \
        __global store_t *dx, ulong dxoff, __global const real *gamma, ulong goff,             \
        __global const real *mean, ulong moff, __global const real *inv, ulong ioff, ulong R,  \
        ulong G, ulong cpg, ulong Sp, uint tpi, __global real4 *tab, ulong tofs, int stream

inline void gn_bwd_row(__global const store_t *xr, __global const store_t *dyr, __global store_t *dxr,
                       __global const real *gamma, ulong goff, real m, real iv, ulong r, ulong G,
                       ulong cpg, ulong Sp, uint first, uint step, __global real4 *tab, ulong tofs,
                       __local real4 *sh, int shared, int stream, __global const store_t *pfx,
                       __global const store_t *pfdy)
{
    ulong gb  = (r % G) * cpg;
    real4 tot = (real4)0;
    for (ulong c = 0; c < cpg; ++c) {
        real4 a = bwd_range(xr, dyr, 0, 0, c * Sp, c * Sp + Sp, first, step, m);
        if (shared)
            a = lanes_merge(sh, a, 1);
        real sx = a.x + a.z, sy = a.y + a.w;
        real w  = gamma ? gamma[goff + gb + c] : (real)1;
        tot     = sum2_add(tot, (real2)(w * sx, w * sy));
        if (tab && first == 0)
            tab[tofs + r * cpg + c] = (real4)(iv * sy, sx, (real)0, (real)0);
    }
    real4 k = bwd_coef(tot.x + tot.z, tot.y + tot.w, m, iv, (real)(cpg * Sp), 0);
    for (ulong c = 0; c < cpg; ++c) {
        real  a = k.z * (gamma ? gamma[goff + gb + c] : (real)1);
        ulong i = c * Sp + first, i1 = c * Sp + Sp;
        if (step == 8) {
            WALKV(i, i1, dxr, stream, pfx, pfdy, a * LOADV(dyr, i) - k.w - (LOADV(xr, i) - k.x) * k.y,
                  a * LOAD1(dyr, i) - k.w - (LOAD1(xr, i) - k.x) * k.y);
        }
        for (; i + 8 <= i1; i += step)
            STORE8(a * LOAD8(dyr, i) - k.w - (LOAD8(xr, i) - k.x) * k.y, dxr, i);
        for (; i < i1; ++i)
            STORE1(a * LOAD1(dyr, i) - k.w - (LOAD1(xr, i) - k.x) * k.y, dxr, i);
    }
}

#if SHORT_ROWS && LX == 1 && SPAN_VEC == 16 && SR_B == 16
/* gn_bwd_items for instance norm as gn_fwd_short: a block's sums of dy and
 * dy*(x - m) row by row (bwd_range's walk), transposed; gn_bwd_row's per-row
 * steps (gamma, sum2_add, tab, bwd_coef) as vectors over the block; then dx
 * by FLAT_WALK. The same operations per row, so the same bits. Returns the
 * first task left to the row-by-row walk. */
inline uint gn_bwd_short(__global const store_t *x, ulong xoff, __global const store_t *dy, ulong dyoff,
                         __global store_t *dx, ulong dxoff, __global const real *gamma, ulong goff,
                         __global const real *mean, ulong moff, __global const real *inv, ulong ioff, ulong R,
                         ulong G, ulong L, uint tpi, __global real4 *tab, ulong tofs, int stream)
{
    real rn = (real)L;
    uint t0 = 0;
    for (; t0 + SR_B <= tpi && ITEM_TASK(t0 + SR_B - 1) < R; t0 += SR_B) {
        real   m[SR_B], iv[SR_B], w[SR_B], t1[SR_B], t2[SR_B], ka[SR_B], ky[SR_B], kw[SR_B];
        real16 va[SR_B], vb[SR_B];
        ulong  r0 = ITEM_TASK(t0);
        int    nb = t0 + 2 * SR_B <= tpi && ITEM_TASK(t0 + 2 * SR_B - 1) < R;
        __global const store_t *xb = x + xoff + r0 * L, *dyb = dy + dyoff + r0 * L;
        vstore16(VLOADV(mean + moff + r0), 0, m);
        vstore16(VLOADV(inv + ioff + r0), 0, iv);
        for (uint k = 0; k < SR_B; ++k) {
            /* reading ahead the same row of the next block */
            bwd_span_cols(xb + k * L, dyb + k * L, 0, 0, L, 0, L, m[k], iv[k], 0, 0, 0,
                          nb ? xb + (SR_B + k) * L : NOPF, nb ? dyb + (SR_B + k) * L : NOPF, &va[k], &vb[k],
                          &t1[k], &t2[k]);
            w[k] = gamma ? gamma[goff + (r0 + k) % G] : (real)1;
        }
        real16 sx = sum2_total16(sum16x16(va) + vload16(0, t1));
        real16 sy = sum2_total16(sum16x16(vb) + vload16(0, t2));
        real16 vi = vload16(0, iv), vw = vload16(0, w);
        if (tab) {
            vstore16(vi * sy, 0, t1);
            vstore16(sx, 0, t2);
            for (uint k = 0; k < SR_B; ++k)
                tab[tofs + r0 + k] = (real4)(t1[k], t2[k], (real)0, (real)0);
        }
        /* bwd_coef of the weighted sums; dx = a*dy - kw - (x - m)*ky */
        vstore16(vi * vi * (vi * sum2_total16(vw * sy)) / rn, 0, ky);
        vstore16(vi * (sum2_total16(vw * sx) / rn), 0, kw);
        vstore16(vi * vw, 0, ka);
        FLAT_WALK(dx + dxoff + r0 * L, L, stream,
                  FLAT_PICK(ka) * LOADV(dyb, i) - FLAT_PICK(kw) - (LOADV(xb, i) - FLAT_PICK(m)) * FLAT_PICK(ky),
                  ka[r] * LOAD1(dyb, i) - kw[r] - (LOAD1(xb, i) - m[r]) * ky[r]);
    }
    return t0;
}
#endif

__kernel void gn_bwd_items(GN_BWD_ARGS)
{
    /* Lanes own rows here, so no local memory: a __local array this kernel
     * never touches after inlining trips an assertion in PoCL 5's
     * automatic-local handling (Debian/Ubuntu builds with asserts on). */
    ulong L = cpg * Sp;
    uint  t = 0;
#if SHORT_ROWS && LX == 1 && SPAN_VEC == 16 && SR_B == 16
    if (cpg == 1 && L >= SPAN_VEC && L <= GN_SHORT_ROWS)
        t = gn_bwd_short(x, xoff, dy, dyoff, dx, dxoff, gamma, goff, mean, moff, inv, ioff, R, G, L, tpi, tab,
                         tofs, stream);
#endif
    for (; t < tpi; ++t) {
        ulong r = ITEM_TASK(t);
        if (r >= R)
            break;
        ulong e = r * L, nx = NEXT_ROW(t, R, L);
        gn_bwd_row(x + xoff + e, dy + dyoff + e, dx + dxoff + e, gamma, goff, mean[moff + r],
                   inv[ioff + r], r, G, cpg, Sp, 0, 8, tab, tofs, (__local real4 *)0, 0, stream,
                   nx ? x + xoff + nx : NOPF, nx ? dy + dyoff + nx : NOPF);
    }
    NT_FENCE(stream);
}

__kernel void gn_bwd_groups(GN_BWD_ARGS)
{
    __local real4 sh[LX];
    uint  first = get_local_id(0) * 8;
    ulong L     = cpg * Sp;
    GROUP_TASKS(R);
    for (ulong t = 0; t < nt; ++t) {
        ulong r = t0 + t, e = r * L;
        gn_bwd_row(x + xoff + e, dy + dyoff + e, dx + dxoff + e, gamma, goff, mean[moff + r],
                   inv[ioff + r], r, G, cpg, Sp, first, 8 * LX, tab, tofs, sh, 1, 0, NOPF, NOPF);
    }
}

/* Partial sums of row segments (as rn_stats_*): (sum g*dy, sum g*dy*(x - m))
 * with m = mean[r / mdiv] (0 for RMS); gamma per column or absent (group
 * norm applies its per-channel gamma in the combine). */
#define BWDPART_ARGS                                                                           \
    __global const store_t *x, ulong xoff, __global const store_t *dy, ulong dyoff,            \
        __global const real *gamma, ulong goff, __global const real *mean, ulong moff,         \
        ulong R, ulong L, ulong S, ulong Lseg, uint tpi, ulong mdiv, int rms,                  \
        __global real4 *part, ulong poff

__kernel void rn_bwdpart_items(BWDPART_ARGS)
{
    for (uint t = 0; t < tpi; ++t) {
        ulong T = ITEM_TASK(t);
        if (T >= R * S)
            return;
        ulong r = T / S, i0 = (T % S) * Lseg;
        real  m = rms ? (real)0 : mean[moff + r / mdiv];
        part[poff + T] = bwd_range(x + xoff + r * L, dy + dyoff + r * L, gamma, goff, i0,
                                   min(L, i0 + Lseg), 0, 8, m);
    }
}

__kernel void rn_bwdpart_groups(BWDPART_ARGS)
{
    __local real4 sh[LX];
    uint first = get_local_id(0) * 8;
    GROUP_TASKS(R * S);
    for (ulong t = 0; t < nt; ++t) {
        ulong T = t0 + t, r = T / S, i0 = (T % S) * Lseg;
        real  m = rms ? (real)0 : mean[moff + r / mdiv];
        real4 acc = bwd_range(x + xoff + r * L, dy + dyoff + r * L, gamma, goff, i0, min(L, i0 + Lseg),
                              first, 8 * LX, m);
        acc = lanes_merge(sh, acc, 1);
        if (first == 0)
            part[poff + T] = acc;
    }
}

/* Group norm, channels last: (sum dy, sum dy*(x - mean)) per column chunk, as
 * gn_stats_cols; the mean of (n, c) is mean[n*(C/cpg) + c/cpg]. */
__kernel void gn_bwd_cols(__global const store_t *x, ulong xoff, __global const store_t *dy,
                          ulong dyoff, __global const real *mean, ulong moff, ulong C, ulong Sp,
                          ulong cpg, ulong Rc, ulong Kc, __global real4 *part, ulong poff)
{
    ulong c = get_global_id(0), k = get_global_id(1), n = get_global_id(2);
    if (c >= C || k >= Kc)
        return;
    real  m    = mean[moff + n * (C / cpg) + c / cpg];
    ulong base = n * Sp * C + c;
    ulong s = k * Rc, s1 = min(Sp, s + Rc);
    real4 acc = (real4)0;
    for (; s < s1; ++s) {
        ulong e = base + s * C;
        real  d = LOAD1(dy, dyoff + e);
        acc     = sum2_add(acc, (real2)(d, d * (LOAD1(x, xoff + e) - m)));
    }
    part[poff + (n * C + c) * Kc + k] = acc;
}

/* One work-item per statistics row r: merges the Kx = Q/cpg partials of each
 * of its cpg channels (part_at), weights channel i by gamma[(r % G)*cpg + i]
 * (layer norm: no gamma, cpg = 1) and writes the dx coefficients of channel
 * i (coef_put) = (m, k, inv*gamma_i, b). When tab is present (group norm with dgamma/dbeta
 * wanted) it also writes tab[r*cpg + i] = (inv*sum dy*(x - m), sum dy, 0, 0),
 * the per-(n, c) terms that rn_col_combine sums over n. */
__kernel void rn_bwd_combine(__global const real4 *part, ulong poff, ulong rows, ulong Q, ulong cpg,
                             ulong G, real n, int rms, __global const real *gamma, ulong goff,
                             __global const real *mean, ulong moff, __global const real *inv,
                             ulong ioff, __global real4 *coef, ulong cofs, __global real4 *tab,
                             ulong tofs, ulong Kcs)
{
#if LX > 1
    /* a work-group per row, its lanes splitting each channel's partials (as
     * rn_stats_combine); every lane gets the merged sums */
    __local real4 sh[LX];
    uint  lane = get_local_id(0), first = lane, step = LX;
    ulong r    = get_group_id(0);
#else
    uint  lane = 0, first = 0, step = 1;
    ulong r    = get_global_id(0);
    if (r >= rows)
        return;
#endif
    ulong Kx = Q / cpg, gb = (r % G) * cpg;
    real  m = rms ? (real)0 : mean[moff + r], iv = inv[ioff + r];
    __global const real4 *p = part + poff;
    real4 tot = (real4)0;
    for (ulong i = 0; i < cpg; ++i) {
        real4 blk = (real4)0;
#define BWD_TERM(q) p[Kcs ? part_at(r, (q) * cpg + i, Q, cpg, G, Kcs) : r * Q + i * Kx + (q)]
        MERGE_STRIDED(blk, first, Kx, step, BWD_TERM, sum_merge);
#if LX > 1
        blk = lanes_merge(sh, blk, 1);
#endif
        real sx = blk.x + blk.z, sy = blk.y + blk.w;
        real w  = gamma ? gamma[goff + gb + i] : (real)1;
        tot     = sum2_add(tot, (real2)(w * sx, w * sy));
        if (tab && lane == 0)
            tab[tofs + r * cpg + i] = (real4)(iv * sy, sx, (real)0, (real)0);
    }
    if (lane != 0)
        return;
    real4 k = bwd_coef(tot.x + tot.z, tot.y + tot.w, m, iv, n, rms);
    for (ulong i = 0; i < cpg; ++i) {
        real w = gamma ? gamma[goff + gb + i] : (real)1;
        coef_put(coef, cofs, r, i, cpg, G, Kcs != 0, (real4)(k.x, k.y, k.z * w, k.w));
    }
}

/* Group norm channels last through the column streams (CPUs), backward:
 * the mean of every (n, c) as N rows of C reals, the per-column means the
 * gradient sums take. */
__kernel void gn_mean_cols(__global const real *mean, ulong moff, ulong G, ulong cpg, ulong NC,
                           __global real *out, ulong ooff)
{
    ulong e = get_global_id(0), C = G * cpg;
    if (e < NC)
        out[ooff + e] = mean[moff + (e / C) * G + (e % C) / cpg];
}

/* Elementwise dx = (c.z*g)*dy - c.w - (x - c.x)*c.y, indexed as rn_apply. */
__kernel void rn_dx(__global const store_t *x, ulong xoff, __global const store_t *dy, ulong dyoff,
                    __global store_t *dx, ulong dxoff, ulong total, ulong L, __global const real *gamma,
                    ulong goff, __global const real4 *coef, ulong cofs)
{
    ulong e = (ulong)ELEM_GID(0) * 8;
    if (e >= total)
        return;
    ulong r = e / L, j = e - r * L;
    x += xoff;
    dy += dyoff;
    dx += dxoff;
    coef += cofs;
    if (j + 8 <= L) {
        real4 k = coef[r];
        real8 g = gamma ? GLD(real, 8, gamma + goff + j) : (real8)1;
        STORE8((k.z * g) * LOAD8(dy, e) - k.w - (LOAD8(x, e) - k.x) * k.y, dx, e);
        return;
    }
    ulong e1 = min(total, e + 8);
    for (; e < e1; ++e, ++j) {
        if (j == L) {
            j = 0;
            ++r;
        }
        real4 k = coef[r];
        real  g = gamma ? gamma[goff + j] : (real)1;
        STORE1((k.z * g) * LOAD1(dy, e) - k.w - (LOAD1(x, e) - k.x) * k.y, dx, e);
    }
}

/* Layer/RMS norm dgamma and dbeta: work-item (b, k) sums the COLV*8 columns
 * from j0 = b*COLV*8 over rows [k*RC, k*RC + RC): sum dy*xhat and sum dy,
 * compensated. With K == 1 it writes dgamma/dbeta (each optional) directly;
 * otherwise the partial (sum dg, sum db, corr dg, corr db) at part[k*L + j]. */
__kernel void rn_col_part(__global const store_t *x, ulong xoff, __global const store_t *dy,
                          ulong dyoff, __global const real *mean, ulong moff,
                          __global const real *inv, ulong ioff, ulong R, ulong L, ulong RC, ulong K,
                          int rms, __global real4 *part, ulong poff, __global real *dgamma,
                          ulong dgoff, __global real *dbeta, ulong dboff)
{
    ulong j0 = (ulong)get_global_id(0) * (8 * COLV), k = get_global_id(1);
    if (j0 >= L || k >= K)
        return;
    ulong r = k * RC, r1 = min(R, r + RC), nj = min((ulong)(8 * COLV), L - j0);
    real8 sg[COLV], cg[COLV], sb[COLV], cb[COLV];
    for (uint v = 0; v < COLV; ++v)
        sg[v] = cg[v] = sb[v] = cb[v] = (real8)0;
    x += xoff + j0;
    dy += dyoff + j0;
    if (nj == 8 * COLV) {
        /* A full group, no per-vector branch: plain sums over blocks of 8
         * rows (error <= 8 ulp of the block's magnitude), each block then
         * folded into the compensated totals. */
        for (; r < r1; r += 8) {
            real8 bg[COLV], bb[COLV];
#pragma unroll
            for (uint v = 0; v < COLV; ++v)
                bg[v] = bb[v] = (real8)0;
            for (ulong q = r, q1 = min(r1, r + 8); q < q1; ++q) {
                real  m  = rms ? (real)0 : mean[moff + q];
                real  iv = inv[ioff + q];
                ulong e  = q * L;
#pragma unroll
                for (uint v = 0; v < COLV; ++v) {
                    real8 d = LOAD8(dy, e + 8 * v);
                    bg[v] += d * ((LOAD8(x, e + 8 * v) - m) * iv);
                    bb[v] += d;
                }
            }
#pragma unroll
            for (uint v = 0; v < COLV; ++v) {
                nsum8(&sg[v], &cg[v], bg[v]);
                nsum8(&sb[v], &cb[v], bb[v]);
            }
        }
    }
    for (; r < r1; ++r) {
        real  m  = rms ? (real)0 : mean[moff + r];
        real  iv = inv[ioff + r];
        ulong e  = r * L;
        for (uint v = 0; v < COLV; ++v) {
            ulong j = 8 * v;
            real8 xv, d;
            if (j + 8 <= nj) {
                xv = LOAD8(x, e + j);
                d  = LOAD8(dy, e + j);
            } else if (j < nj) {
                real a[8], b[8];
                for (uint i = 0; i < 8; ++i) {
                    a[i] = j + i < nj ? LOAD1(x, e + j + i) : m;
                    b[i] = j + i < nj ? LOAD1(dy, e + j + i) : (real)0;
                }
                xv = vload8(0, a);
                d  = vload8(0, b);
            } else {
                break;
            }
            nsum8(&sg[v], &cg[v], d * ((xv - m) * iv));
            nsum8(&sb[v], &cb[v], d);
        }
    }
    for (uint v = 0; v < COLV && 8 * v < nj; ++v) {
        real g[8], b[8], gc[8], bc[8];
        vstore8(sg[v], 0, g);
        vstore8(sb[v], 0, b);
        vstore8(cg[v], 0, gc);
        vstore8(cb[v], 0, bc);
        for (uint i = 0; i < 8 && 8 * v + i < nj; ++i) {
            ulong j = j0 + 8 * v + i;
            if (K == 1) {
                if (dgamma)
                    dgamma[dgoff + j] = g[i] + gc[i];
                if (dbeta)
                    dbeta[dboff + j] = b[i] + bc[i];
            } else {
                part[poff + k * L + j] = (real4)(g[i], b[i], gc[i], bc[i]);
            }
        }
    }
}

/* Per column j: merges the K partials part[k*W + j] in a fixed order into
 * dgamma[j] and dbeta[j] (each optional). */
__kernel void rn_col_combine(__global const real4 *part, ulong poff, ulong K, ulong W,
                             __global real *dgamma, ulong dgoff, __global real *dbeta, ulong dboff)
{
    COLS_SLICED_BEGIN(W)
#define COLS_TERM(k) part[poff + (k) * W + j]
    MERGE_STRIDED(acc, k, K, NSLICE, COLS_TERM, sum_merge);
    COLS_SLICED_END(W)
    if (dgamma)
        dgamma[dgoff + j] = acc.x + acc.z;
    if (dbeta)
        dbeta[dboff + j] = acc.y + acc.w;
}

#ifdef CLNORM_VCAST_REGION
#pragma clang attribute pop
#endif
