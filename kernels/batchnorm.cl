/* batchnorm.cl: batch normalization on a tensor viewed as (O, C, I): element
 * (o, c, i) at (o*C + c)*I + i. Statistics per channel over O*I values.
 * Stages: per-chunk partials (rows or cols walk) -> per-channel combine ->
 * elementwise apply. Every reduction has a fixed order: no atomics. */

#ifndef APPLY_ROWS
#define APPLY_ROWS 8 /* rows per work-item in the column-layout apply */
#endif
#define ELEM_ID1 ELEM_GID(1)

/* Per-channel coefficients live as four arrays of C values (structure of
 * arrays), so 8 neighbouring channels load as vectors. */
#define COEF_LOAD(coef, C, c) \
    ((real4)((coef)[c], (coef)[(C) + (c)], (coef)[2 * (C) + (c)], (coef)[3 * (C) + (c)]))
#define COEF_STORE(coef, C, c, v)              \
    do {                                       \
        real4 v_ = (v);                        \
        (coef)[c]             = v_.x;          \
        (coef)[(C) + (c)]     = v_.y;          \
        (coef)[2 * (C) + (c)] = v_.z;          \
        (coef)[3 * (C) + (c)] = v_.w;          \
    } while (0)


/* Vector Neumaier step, SPAN_VEC pairs of sums. */
inline void sumv_add(realv *s, realv *c, realv v)
{
    realv t = *s + v;
    *c += select((v - t) + *s, (*s - t) + v, isgreaterequal(fabs(*s), fabs(v)));
    *s = t;
}

#define FROZEN_STOREV(v, p, i, nt) \
    do {                           \
        if (nt)                    \
            STOREV_NT(v, p, i);    \
        else                       \
            STOREV(v, p, i);       \
    } while (0)

/* (sum dy, sum dy*(x - m)) over n <= SPAN contiguous values; with out
 * (frozen batch norm), out = kz*dy too, in the same walk (nt: streaming
 * stores, out vector-aligned). */
inline real2 bwd_span(__global const store_t *dy, __global const store_t *x, real m, uint n,
                      __global const store_t *pfd, __global const store_t *pfx, __global store_t *out,
                      real kz, int nt)
{
    /* two sets of vector sums: the add latency would otherwise bound it */
    realv a0 = (realv)0, b0 = (realv)0, a1 = (realv)0, b1 = (realv)0;
    real  ta = 0, tb = 0;
    uint  i = 0;
    for (; i + 2 * SPAN_VEC <= n; i += 2 * SPAN_VEC) {
        PREFETCH_R(pfd, i);
        PREFETCH_R(pfd, i + SPAN_VEC);
        PREFETCH_R(pfx, i);
        PREFETCH_R(pfx, i + SPAN_VEC);
        realv d = LOADV(dy, i), e = LOADV(dy, i + SPAN_VEC);
        if (out) {
            FROZEN_STOREV(kz * d, out, i, nt);
            FROZEN_STOREV(kz * e, out, i + SPAN_VEC, nt);
        }
        a0 += d;
        b0 = fma(d, LOADV(x, i) - m, b0);
        a1 += e;
        b1 = fma(e, LOADV(x, i + SPAN_VEC) - m, b1);
    }
    for (; i + SPAN_VEC <= n; i += SPAN_VEC) {
        PREFETCH_R(pfd, i);
        PREFETCH_R(pfx, i);
        realv d = LOADV(dy, i);
        if (out)
            FROZEN_STOREV(kz * d, out, i, nt);
        a0 += d;
        b0 = fma(d, LOADV(x, i) - m, b0);
    }
    for (; i < n; ++i) {
        real d = LOAD1(dy, i);
        if (out)
            STORE1(kz * d, out, i);
        ta += d;
        tb = fma(d, LOAD1(x, i) - m, tb);
    }
    return (real2)(sumv(a0 + a1) + ta, sumv(b0 + b1) + tb);
}

#if LX > 1
/* Fixed-order tree over the LX lanes of a work-group; every lane gets the
 * result. Statistics partials merge by Chan's formula, sum pairs add with
 * compensation. */
inline real4 lanes_stats(real4 acc, uint lane, __local real4 *sh)
{
    sh[lane] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = LX / 2; h > 0; h >>= 1) {
        if (lane < h)
            sh[lane] = stat_merge(sh[lane], sh[lane + h]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return sh[0];
}

inline real4 lanes_sums(real4 acc, uint lane, __local real4 *sh)
{
    sh[lane] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = LX / 2; h > 0; h >>= 1) {
        if (lane < h) {
            real4 a = sum2_add(sh[lane], sh[lane + h].xy);
            a.zw += sh[lane + h].zw;
            sh[lane] = a;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return sh[0];
}
#endif

/* ---- statistics partials ------------------------------------------------ */

/* Rows walk, for I large: work-item (lane, c, k) reads chunk k of channel c.
 * Chunk k covers rows [r0, r0+R) when S == 1, or segment k%S (length L, a
 * multiple of 8) of row k/S when a row is split into S segments. */
#define ROWS_CHUNK_BOUNDS                                   \
    uint r0 = (k / S) * R, s = k % S;                       \
    uint r1 = min(O, r0 + R);                               \
    uint i0 = s * L, i1 = min(I, i0 + L);

__kernel void bn_stats_rows(__global const store_t *x, ulong xoff, uint O, uint C, uint I,
                            uint R, uint S, uint L, uint K, __global real4 *part, ulong poff)
{
    uint lane = get_local_id(0);
    uint c = get_global_id(1), k = get_global_id(2);
    real4 acc = (real4)0;
    x += xoff;
    part += poff;
    if (c < C && k < K) {
        ROWS_CHUNK_BOUNDS
        for (uint o = r0; o < r1; ++o) {
            __global const store_t *row = x + ((ulong)o * C + c) * I;
#if LX == 1
            __global const store_t *pf = o + 1 < r1 ? row + (ulong)C * I : NOPF;
            for (uint i = i0; i < i1; i += SPAN)
                acc = stat_span_next(acc, row + i, min((uint)SPAN, i1 - i), pf ? pf + i : NOPF);
#else
            uint i = i0 + lane * 8;
            for (; i + 8 <= i1; i += 8 * LX)
                acc = stat_merge(acc, stat_block8(LOAD8(row, i)));
            for (; i < i1; ++i)
                acc = stat_merge(acc, stat_one(LOAD1(row, i)));
#endif
        }
    }
#if LX > 1
    __local real4 sh[LX];
    acc = lanes_stats(acc, lane, sh);
#endif
    if (lane == 0 && c < C && k < K)
        part[(ulong)k * C + c] = acc;
}

/* Columns walk, for I small: the tensor is O rows of W = C*I columns;
 * work-item (j, k) reads column j over rows [k*R, k*R+R). Neighbouring
 * work-items read neighbouring addresses. Partial (k, j) at k*W + j. */
__kernel void bn_stats_cols(__global const store_t *x, ulong xoff, uint O, uint W, uint R, uint K,
                            __global real4 *part, ulong poff)
{
    part += poff;
    uint j = get_global_id(0), k = get_global_id(1);
    if (j >= W || k >= K)
        return;
    x += xoff + j;
    uint o = k * R, o1 = min(O, o + R);
    real4 acc = (real4)0;
    for (; o + 8 <= o1; o += 8) {
        __global const store_t *p = x + (ulong)o * W;
        real8 v = (real8)(LOAD1(p, 0), LOAD1(p, W), LOAD1(p, 2 * (ulong)W), LOAD1(p, 3 * (ulong)W),
                          LOAD1(p, 4 * (ulong)W), LOAD1(p, 5 * (ulong)W), LOAD1(p, 6 * (ulong)W),
                          LOAD1(p, 7 * (ulong)W));
        acc = stat_merge(acc, stat_block8(v));
    }
    for (; o < o1; ++o)
        acc = stat_merge(acc, stat_one(LOAD1(x, (ulong)o * W)));
    part[(ulong)k * W + j] = acc;
}

/* The start of a combine kernel: real4 acc = channel c's K*Ip partials
 * part[(k*C + c)*Ip + i], merged in a fixed order as statistics (Chan's
 * formula, SUMS 0) or as compensated sum pairs (SUMS 1); only the thread
 * that holds a valid channel's result goes on. With LX > 1 lanes (GPUs) a
 * work-group takes the channel: lane j merges partials j, j + LX, ... in
 * order, then the fixed tree (a channels-last tensor can leave thousands of
 * partials per channel, too many for one work-item). */
inline real4 part_merge(real4 acc, real4 p, int sums)
{
    if (!sums)
        return stat_merge(acc, p);
    acc = sum2_add(acc, p.xy);
    acc.zw += p.zw;
    return acc;
}
#define COMBINE_TERM(t) part[((t) / Ip * C + c) * Ip + (t) % Ip]
inline real4 PART_MERGE_0(real4 acc, real4 p) { return part_merge(acc, p, 0); }
inline real4 PART_MERGE_1(real4 acc, real4 p) { return part_merge(acc, p, 1); }
#if LX > 1
#define COMBINE_CHANNEL(SUMS)                                                       \
    __local real4 sh[LX];                                                           \
    uint  lane = get_local_id(0), c = get_global_id(1);                             \
    real4 acc  = (real4)0;                                                          \
    part += poff;                                                                   \
    if (c < C)                                                                      \
        MERGE_STRIDED(acc, lane, (ulong)K * Ip, LX, COMBINE_TERM, PART_MERGE_##SUMS); \
    acc = (SUMS) ? lanes_sums(acc, lane, sh) : lanes_stats(acc, lane, sh);          \
    if (lane != 0 || c >= C)                                                        \
        return;
#else
#define COMBINE_CHANNEL(SUMS)                                                       \
    uint  c   = get_global_id(0);                                                   \
    real4 acc = (real4)0;                                                           \
    part += poff;                                                                   \
    if (c >= C)                                                                     \
        return;                                                                     \
    for (uint t = 0; t < K * Ip; ++t)                                               \
        acc = part_merge(acc, part[((ulong)(t / Ip) * C + c) * Ip + t % Ip], SUMS);
#endif

/* A channel's coefficients (mean hi, mean lo, gamma*invstd, beta) from its
 * merged statistics; with out, its saved and running statistics written.
 * A macro over the forward kernels' common parameter names. */
inline real4 fwd_coef(real4 acc, uint c, int out, real M, real eps, real f, real bessel,
                      __global const real *gamma, ulong goff, __global const real *beta, ulong boff,
                      __global real *smean, ulong smoff, __global real *sinv, ulong sioff,
                      __global real *rmean, ulong rmoff, __global real *rvar, ulong rvoff)
{
    real var = acc.w / M;
    real inv = (real)1 / sqrt(var + eps);
    real g   = gamma ? gamma[goff + c] : (real)1;
    real b   = beta ? beta[boff + c] : (real)0;
    if (out) {
        real mean = acc.y + acc.z;
        if (smean)
            smean[smoff + c] = mean;
        if (sinv)
            sinv[sioff + c] = inv;
        if (rmean)
            rmean[rmoff + c] = ((real)1 - f) * rmean[rmoff + c] + f * mean;
        if (rvar)
            rvar[rvoff + c] = ((real)1 - f) * rvar[rvoff + c] + f * (var * bessel);
    }
    return (real4)(acc.y, acc.z, g * inv, b);
}
#define FWD_COEF(acc, c, out)                                                                  \
    fwd_coef(acc, c, out, M, eps, f, bessel, gamma, goff, beta, boff, smean, smoff, sinv, sioff, \
             rmean, rmoff, rvar, rvoff)

/* One work-item (or work-group) per channel merges its K*Ip partials and
 * writes the saved statistics, the running averages and the apply
 * coefficients (mean_hi, mean_lo, gamma*invstd, beta) of channel c. */
__kernel void bn_stats_combine(__global const real4 *part, ulong poff, uint K, uint C, uint Ip, real M,
                               real eps, real f, real bessel,
                               __global const real *gamma, ulong goff,
                               __global const real *beta, ulong boff,
                               __global real *smean, ulong smoff,
                               __global real *sinv, ulong sioff,
                               __global real *rmean, ulong rmoff,
                               __global real *rvar, ulong rvoff,
                               __global real *coef, ulong cofs)
{
    coef += cofs;
    COMBINE_CHANNEL(0)
    COEF_STORE(coef, C, c, FWD_COEF(acc, c, 1));
}

/* Apply coefficients from running statistics (inference). */
__kernel void bn_coef_running(uint C, real eps, __global const real *rmean, ulong rmoff,
                              __global const real *rvar, ulong rvoff,
                              __global const real *gamma, ulong goff,
                              __global const real *beta, ulong boff, __global real *coef, ulong cofs)
{
    uint c = get_global_id(0);
    if (c >= C)
        return;
    coef += cofs;
    real inv = (real)1 / sqrt(rvar[rvoff + c] + eps);
    real g   = gamma ? gamma[goff + c] : (real)1;
    real b   = beta ? beta[boff + c] : (real)0;
    COEF_STORE(coef, C, c, (real4)(rmean[rmoff + c], (real)0, g * inv, b));
}

/* ---- elementwise: y = ((x - mean_hi) - mean_lo) * scale + beta ---------- */


inline real8 bn_apply8(real8 v, real4 k) { return ((v - k.x) - k.y) * k.z + k.w; }
inline realv bn_applyv(realv v, real4 k) { return ((v - k.x) - k.y) * k.z + k.w; }
inline real  bn_apply1(real v, real4 k) { return ((v - k.x) - k.y) * k.z + k.w; }

/* I > 1: work-item (t, r) handles 8 elements of row r = o*C + c. */
__kernel void bn_apply_rows(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            uint C, uint I, ulong rows, __global const real *coef, ulong cofs)
{
    coef += cofs;
    uint  i = get_global_id(0) * 8;
    ulong r = ELEM_ID1;
    if (r >= rows || i >= I)
        return;
    real4 k = COEF_LOAD(coef, C, r % C);
    x += xoff + r * I;
    y += yoff + r * I;
    if (i + 8 <= I) {
        STORE8(bn_apply8(LOAD8(x, i), k), y, i);
    } else {
        for (; i < I; ++i)
            STORE1(((LOAD1(x, i) - k.x) - k.y) * k.z + k.w, y, i);
    }
}

/* I == 1: work-item (c, t) handles channel c in rows [t*APPLY_ROWS, ...). */
__kernel void bn_apply_cols(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            uint C, uint O, __global const real *coef, ulong cofs)
{
    coef += cofs;
    uint c = get_global_id(0), o = (uint)ELEM_ID1 * APPLY_ROWS;
    if (c >= C || o >= O)
        return;
    real4 k = COEF_LOAD(coef, C, c);
    uint o1 = min(O, o + APPLY_ROWS);
    for (; o < o1; ++o) {
        ulong e = (ulong)o * C + c;
        STORE1(((LOAD1(x, xoff + e) - k.x) - k.y) * k.z + k.w, y, yoff + e);
    }
}

/* ---- backward ------------------------------------------------------------ */

/* Partials of (sum dy, sum dy*(x - mean)) with compensated sums; mean from
 * the saved or running statistics. Same walks as the statistics. */
inline real4 bwd_block8(real4 acc, real8 d, real8 v, real m)
{
    return sum2_add(acc, (real2)(sum8(d), sum8(d * (v - m))));
}

__kernel void bn_bwd_rows(__global const store_t *x, ulong xoff, __global const store_t *dy,
                          ulong dyoff, __global const real *mean, ulong moff, uint O, uint C,
                          uint I, uint R, uint S, uint L, uint K, __global real4 *part,
                          ulong poff)
{
    uint lane = get_local_id(0);
    uint c = get_global_id(1), k = get_global_id(2);
    real4 acc = (real4)0;
    part += poff;
    x += xoff;
    dy += dyoff;
    if (c < C && k < K) {
        real m = mean[moff + c];
        ROWS_CHUNK_BOUNDS
        for (uint o = r0; o < r1; ++o) {
            ulong base = ((ulong)o * C + c) * I;
#if LX == 1
            ulong nb = base + (ulong)C * I; /* the next row's */
            int   pf = o + 1 < r1;
            for (uint i = i0; i < i1; i += SPAN)
                acc = sum2_add(acc, bwd_span(dy + base + i, x + base + i, m, min((uint)SPAN, i1 - i),
                                             pf ? dy + nb + i : NOPF, pf ? x + nb + i : NOPF, 0, 0, 0));
            continue;
#endif
            uint  i    = i0 + lane * 8;
            for (; i + 8 <= i1; i += 8 * LX)
                acc = bwd_block8(acc, LOAD8(dy, base + i), LOAD8(x, base + i), m);
            for (; i < i1; ++i) {
                real d = LOAD1(dy, base + i);
                acc = sum2_add(acc, (real2)(d, d * (LOAD1(x, base + i) - m)));
            }
        }
    }
#if LX > 1
    __local real4 sh[LX];
    acc = lanes_sums(acc, lane, sh);
#endif
    if (lane == 0 && c < C && k < K)
        part[(ulong)k * C + c] = acc;
}

__kernel void bn_bwd_cols(__global const store_t *x, ulong xoff, __global const store_t *dy,
                          ulong dyoff, __global const real *mean, ulong moff, uint O, uint W,
                          uint I, uint R, uint K, __global real4 *part, ulong poff)
{
    part += poff;
    uint j = get_global_id(0), k = get_global_id(1);
    if (j >= W || k >= K)
        return;
    real m = mean[moff + j / I];
    x += xoff + j;
    dy += dyoff + j;
    uint o = k * R, o1 = min(O, o + R);
    real4 acc = (real4)0;
    for (; o < o1; ++o) {
        ulong e = (ulong)o * W;
        real  d = LOAD1(dy, e);
        acc = sum2_add(acc, (real2)(d, d * (LOAD1(x, e) - m)));
    }
    part[(ulong)k * W + j] = acc;
}

/* Per channel: dbeta = sum dy, dgamma = invstd * sum dy*(x - mean), and the
 * dx coefficients (mean, k, a, b) of channel c for dx = a*((dy - b) - (x - mean)*k).
 * frozen != 0: invstd from running variance, dx = a*dy (k = b = 0).
 * inv_src holds invstd, or the running variance when frozen. */
__kernel void bn_bwd_combine(__global const real4 *part, ulong poff, uint K, uint C, uint Ip, real M,
                             int frozen, real eps,
                             __global const real *mean, ulong moff,
                             __global const real *inv_src, ulong ioff,
                             __global const real *gamma, ulong goff,
                             __global real *dgamma, ulong dgoff,
                             __global real *dbeta, ulong dboff,
                             __global real *coef, ulong cofs)
{
    coef += cofs;
    COMBINE_CHANNEL(1)
    real sdy  = acc.x + acc.z;
    real sdxm = acc.y + acc.w;
    real inv  = frozen ? (real)1 / sqrt(inv_src[ioff + c] + eps) : inv_src[ioff + c];
    real g    = gamma ? gamma[goff + c] : (real)1;
    real dg   = inv * sdxm;
    if (dgamma)
        dgamma[dgoff + c] = dg;
    if (dbeta)
        dbeta[dboff + c] = sdy;
    real a = g * inv;
    if (frozen)
        COEF_STORE(coef, C, c, (real4)(mean[moff + c], (real)0, a, (real)0));
    else
        COEF_STORE(coef, C, c, (real4)(mean[moff + c], inv * dg / M, a, sdy / M));
}

inline real8 bn_dx8(real8 d, real8 v, real4 k) { return k.z * ((d - k.w) - (v - k.x) * k.y); }
inline realv bn_dxv(realv d, realv v, real4 k) { return k.z * ((d - k.w) - (v - k.x) * k.y); }
inline real  bn_dx1(real d, real v, real4 k) { return k.z * ((d - k.w) - (v - k.x) * k.y); }

/* dx for I > 1; use_x == 0 (frozen) never reads x. */
__kernel void bn_dx_rows(__global const store_t *x, ulong xoff, __global const store_t *dy,
                         ulong dyoff, __global store_t *dx, ulong dxoff, uint C, uint I,
                         ulong rows, int use_x, __global const real *coef, ulong cofs)
{
    coef += cofs;
    uint  i = get_global_id(0) * 8;
    ulong r = ELEM_ID1;
    if (r >= rows || i >= I)
        return;
    real4 k = COEF_LOAD(coef, C, r % C);
    ulong base = r * I;
    if (i + 8 <= I) {
        real8 d = LOAD8(dy, dyoff + base + i);
        real8 v = use_x ? LOAD8(x, xoff + base + i) : (real8)k.x;
        STORE8(bn_dx8(d, v, k), dx, dxoff + base + i);
    } else {
        for (; i < I; ++i) {
            real d = LOAD1(dy, dyoff + base + i);
            real v = use_x ? LOAD1(x, xoff + base + i) : k.x;
            STORE1(k.z * ((d - k.w) - (v - k.x) * k.y), dx, dxoff + base + i);
        }
    }
}

__kernel void bn_dx_cols(__global const store_t *x, ulong xoff, __global const store_t *dy,
                         ulong dyoff, __global store_t *dx, ulong dxoff, uint C, uint O,
                         int use_x, __global const real *coef, ulong cofs)
{
    coef += cofs;
    uint c = get_global_id(0), o = (uint)ELEM_ID1 * APPLY_ROWS;
    if (c >= C || o >= O)
        return;
    real4 k = COEF_LOAD(coef, C, c);
    uint o1 = min(O, o + APPLY_ROWS);
    for (; o < o1; ++o) {
        ulong e = (ulong)o * C + c;
        real  d = LOAD1(dy, dyoff + e);
        real  v = use_x ? LOAD1(x, xoff + e) : k.x;
        STORE1(k.z * ((d - k.w) - (v - k.x) * k.y), dx, dxoff + e);
    }
}

/* ---- CPU helpers for the channels-last walks ------------------------------ */

#ifndef COL_BLOCK
#define COL_BLOCK 16 /* rows per statistics block */
#endif

/* Vector Neumaier step for 8 pairs of sums. */
inline void sum8_add(real8 *s, real8 *c, real8 v)
{
    real8 t = *s + v;
    *c += select((v - t) + *s, (*s - t) + v, isgreaterequal(fabs(*s), fabs(v)));
    *s = t;
}

/* Folds block sums a, b of columns [j, j + 8) into compensated running
 * sums s1/c1 and s2/c2. */
inline void sums8_fold(__global real *s1, __global real *s2, __global real *c1, __global real *c2, uint j,
                       real8 a, real8 b)
{
    real8 sa = GLD(real, 8, s1 + j), ca = GLD(real, 8, c1 + j);
    real8 sb = GLD(real, 8, s2 + j), cb = GLD(real, 8, c2 + j);
    sum8_add(&sa, &ca, a);
    sum8_add(&sb, &cb, b);
    GST(real, 8, sa, s1 + j);
    GST(real, 8, ca, c1 + j);
    GST(real, 8, sb, s2 + j);
    GST(real, 8, cb, c2 + j);
}

/* Coefficients of 8 neighbouring channels as four vectors. */
inline void coef8(__global const real *coef, uint C, uint c, real8 *k0, real8 *k1, real8 *k2, real8 *k3)
{
    *k0 = GLD(real, 8, coef + c);
    *k1 = GLD(real, 8, coef + C + c);
    *k2 = GLD(real, 8, coef + 2 * C + c);
    *k3 = GLD(real, 8, coef + 3 * C + c);
}

/* ---- CPU column streams: one work-item owns a run of whole rows ----------
 * For channels-last data on CPUs: the work-item walks rows [o0, o1) of all
 * W columns in row order, so memory is read as one contiguous stream. It
 * keeps per-column running state in its own region of scratch (L1/L2
 * resident for the channel counts of real networks) and merges one block
 * of COL_BLOCK rows at a time: two passes over the block, the second from
 * L1, except for later blocks' panels of four vectors (one pass, below). */

/* Blocks after a work-item's first go through panels of four vectors of
 * columns, row by row (memory order), in one pass over d = x - h, h the
 * running mean of the blocks before: the block's M2 = sum d^2 - (sum d)^2/n.
 * What that subtraction can lose is about eps * n * (block mean - h)^2,
 * and the merge adds n*nb/(n + nb) * (block mean - h)^2 to M2: the error
 * stays a rounding error of the result, whatever |mean|/std, where a fixed
 * shift (or none) would not. The next block's lines are prefetched row by
 * row along the walk rather than in a burst. A/B: -DCS_PANELS=0. */
#ifndef CS_PANELS
#define CS_PANELS 1
#endif

/* Merges a block's (mean m + blo, M2 bm2) of the columns from j (a vector
 * of type T of them) into the running (hi + lo, m2) of n values;
 * wa = n*rn/(n+rn), wb = rn/(n+rn). One body for the three widths. */
#define COL_STATS_MERGE_FN(NAME, T, LD, ST)                                                    \
    inline void NAME(__global real *hi, __global real *lo, __global real *m2, uint j, T m, T blo, \
                     T bm2, real n, real wa, real wb)                                          \
    {                                                                                          \
        if (n == (real)0) {                                                                    \
            ST(m, hi + j);                                                                     \
            ST(blo, lo + j);                                                                   \
            ST(bm2, m2 + j);                                                                   \
        } else {                                                                               \
            T h = LD(hi + j), l = LD(lo + j);                                                  \
            T delta = (m - h) + (blo - l);                                                     \
            ST(LD(m2 + j) + bm2 + delta * delta * wa, m2 + j);                                 \
            T t  = l + delta * wb;                                                             \
            T sm = h + t, bb = sm - h;                                                         \
            ST((h - (sm - bb)) + (t - bb), lo + j);                                            \
            ST(sm, hi + j);                                                                    \
        }                                                                                      \
    }
#define LD8_(q)     GLD(real, 8, q)
#define ST8_(v, q)  GST(real, 8, v, q)
#define LD1_(q)     (*(q))
#define ST1_(v, q)  (*(q) = (v))
COL_STATS_MERGE_FN(col_stats_merge, realv, VLOADV, VSTOREV)
COL_STATS_MERGE_FN(col_stats_merge8, real8, LD8_, ST8_)
COL_STATS_MERGE_FN(col_stats_merge1, real, LD1_, ST1_)

/* A block of nb rows (p, row stride W) of the columns from j, a vector of
 * type T of them read with LDX: the corrected two-pass (sum, mean, then the
 * deviations from L1), merged into the running state with MERGE. */
#define CS_BLOCK_COLUMNS(T, LDX, NONNEG, MERGE)                                       \
    do {                                                                              \
        T s = (T)0;                                                                   \
        for (uint r = 0; r < nb; ++r)                                                 \
            s += LDX(p, (ulong)r * W + j);                                            \
        T m = s * ri, d1 = (T)0, d2 = (T)0;                                           \
        for (uint r = 0; r < nb; ++r) {                                               \
            T d = LDX(p, (ulong)r * W + j) - m;                                       \
            d1 += d;                                                                  \
            d2 = fma(d, d, d2);                                                       \
        }                                                                             \
        MERGE(hi, lo, m2, j, m, d1 * ri, NONNEG(d2 - d1 * d1 * ri), n, wa, wb);       \
    } while (0)

/* The rows a column-stream work-item k walks: the rows come in segments of
 * Sp (batch norm: one segment, Sp = O; group norm: a sample each), cut
 * into Kc chunks of R rows each that do not cross a segment. */
#define CS_ROWS(k)                                            \
    uint seg = (k) / Kc, o0 = seg * Sp + ((k) % Kc) * R;      \
    uint o1  = min(seg * Sp + Sp, o0 + R);

/* Few columns (W < SPAN_VEC, not 8): a run of rows is one run of values
 * whose column repeats every W, value i of a run that starts a row being
 * in column i % W. The walks below take such runs in vectors, np =
 * W/gcd(W, SPAN_VEC) of them to a period, and fold the vector lanes into
 * their columns once per block of CS_FLAT_ROWS rows; column by column, they
 * cost several operations per value. A/B: -DCS_FLAT=0. */
#ifndef CS_FLAT
#define CS_FLAT 1
#endif
#define CS_FLAT_ROWS 256
#define CS_MAXP (SPAN_VEC - 1)
inline uint cs_period(uint C)
{
    uint a = C, b = SPAN_VEC;
    while (b) {
        uint t = a % b;
        a      = b;
        b      = t;
    }
    return C / a;
}

/* out[c] += the lanes of the period vectors v[0, np) that belong to column c */
inline void cs_fold(const realv *v, uint np, uint W, real *out)
{
    for (uint i = 0; i < np * SPAN_VEC; ++i)
        out[i % W] += ((const real *)v)[i];
}

/* Period vectors of a per-column vector m (value i: m[i % W]). */
inline void cs_expand(const real *m, uint np, uint W, realv *v)
{
    for (uint i = 0; i < np * SPAN_VEC; ++i)
        ((real *)v)[i] = m[i % W];
}

/* state: hi[W], lo[W], m2[W] of this work-item. */
__kernel void bn_stats_cstream(__global const store_t *x, ulong xoff, uint O, uint W, uint R, uint K,
                               __global real4 *part, ulong poff, __global real *state, ulong soff,
                               uint Sp, uint Kc)
{
    uint k = get_global_id(0);
    if (k >= K)
        return;
    CS_ROWS(k)
    x += xoff;
    part += poff + (ulong)k * W;
    __global real *hi = state + soff + (ulong)k * 3 * W, *lo = hi + W, *m2 = lo + W;
    real n = 0;
#if CS_FLAT
    if (W < SPAN_VEC && W != 8) {
        /* blocks of CS_FLAT_ROWS rows, each by the corrected two-pass per
         * column (sums, means, deviations from L1), merged as below */
        uint np = cs_period(W), pv = np * SPAN_VEC;
        for (uint o = o0; o < o1; o += CS_FLAT_ROWS) {
            uint  nb = min((uint)CS_FLAT_ROWS, o1 - o);
            real  rn = (real)nb, nn = n + rn, wb = rn / nn, wa = n * wb, ri = (real)1 / rn;
            ulong nv = (ulong)nb * W, e;
            __global const store_t *p = x + (ulong)o * W;
            realv a[CS_MAXP], b[CS_MAXP];
            real  cs[SPAN_VEC], c1[SPAN_VEC], c2[SPAN_VEC];
            for (uint v = 0; v < np; ++v)
                a[v] = (realv)0;
            for (uint c = 0; c < W; ++c)
                cs[c] = c1[c] = c2[c] = 0;
            for (e = 0; e + pv <= nv; e += pv)
                for (uint v = 0; v < np; ++v)
                    a[v] += LOADV(p, e + (ulong)v * SPAN_VEC);
            for (ulong f = e; f < nv; ++f)
                cs[f % W] += LOAD1(p, f);
            cs_fold(a, np, W, cs);
            for (uint c = 0; c < W; ++c)
                cs[c] *= ri; /* the block's means */
            cs_expand(cs, np, W, a);
            for (uint v = 0; v < np; ++v)
                b[v] = (realv)0;
            realv q[CS_MAXP];
            for (uint v = 0; v < np; ++v)
                q[v] = (realv)0;
            for (e = 0; e + pv <= nv; e += pv)
                for (uint v = 0; v < np; ++v) {
                    realv d = LOADV(p, e + (ulong)v * SPAN_VEC) - a[v];
                    b[v] += d;
                    q[v] = fma(d, d, q[v]);
                }
            for (ulong f = e; f < nv; ++f) {
                real d = LOAD1(p, f) - cs[f % W];
                c1[f % W] += d;
                c2[f % W] = fma(d, d, c2[f % W]);
            }
            cs_fold(b, np, W, c1);
            cs_fold(q, np, W, c2);
            for (uint c = 0; c < W; ++c)
                col_stats_merge1(hi, lo, m2, c, cs[c], c1[c] * ri, nonneg(c2[c] - c1[c] * c1[c] * ri), n,
                                 wa, wb);
            n = nn;
        }
        for (uint j = 0; j < W; ++j)
            part[j] = (real4)(n, hi[j], lo[j], m2[j]);
        return;
    }
#endif
    for (uint o = o0; o < o1; o += COL_BLOCK) {
        uint nb = min((uint)COL_BLOCK, o1 - o);
        real rn = (real)nb, nn = n + rn, wb = rn / nn, wa = n * wb;
        __global const store_t *p = x + (ulong)o * W;
        real ri = (real)1 / rn;
        uint j = 0;
        /* the next block's lines, one row per vector of columns: the column
         * walk's order defeats the hardware's stream prefetch */
        uint                    nbn = o + nb < o1 ? min((uint)COL_BLOCK, o1 - o - nb) : 0;
        __global const store_t *pn  = nbn ? p + (ulong)nb * W : NOPF;
#if CS_PANELS
        for (; n != (real)0 && j + 4 * SPAN_VEC <= W; j += 4 * SPAN_VEC) {
            /* named variables: arrays of vectors stay in memory */
            const uint v1 = SPAN_VEC, v2 = 2 * SPAN_VEC, v3 = 3 * SPAN_VEC;
            realv h0 = VLOADV(hi + j), h1 = VLOADV(hi + j + v1);
            realv h2 = VLOADV(hi + j + v2), h3 = VLOADV(hi + j + v3);
            realv a0 = (realv)0, a1 = (realv)0, a2 = (realv)0, a3 = (realv)0;
            realv q0 = (realv)0, q1 = (realv)0, q2 = (realv)0, q3 = (realv)0;
            for (uint r = 0; r < nb; ++r) {
                ulong e = (ulong)r * W + j;
                if (r < nbn) {
                    PREFETCH(pn, e);
                    PREFETCH(pn, e + v1);
                    PREFETCH(pn, e + v2);
                    PREFETCH(pn, e + v3);
                }
                realv d0 = LOADV(p, e) - h0, d1 = LOADV(p, e + v1) - h1;
                realv d2 = LOADV(p, e + v2) - h2, d3 = LOADV(p, e + v3) - h3;
                a0 += d0;
                a1 += d1;
                a2 += d2;
                a3 += d3;
                q0 = fma(d0, d0, q0);
                q1 = fma(d1, d1, q1);
                q2 = fma(d2, d2, q2);
                q3 = fma(d3, d3, q3);
            }
            col_stats_merge(hi, lo, m2, j, h0, a0 * ri, nonnegv(q0 - a0 * a0 * ri), n, wa, wb);
            col_stats_merge(hi, lo, m2, j + v1, h1, a1 * ri, nonnegv(q1 - a1 * a1 * ri), n, wa, wb);
            col_stats_merge(hi, lo, m2, j + v2, h2, a2 * ri, nonnegv(q2 - a2 * a2 * ri), n, wa, wb);
            col_stats_merge(hi, lo, m2, j + v3, h3, a3 * ri, nonnegv(q3 - a3 * a3 * ri), n, wa, wb);
        }
#endif
        for (; j + SPAN_VEC <= W; j += SPAN_VEC) {
            /* as the 8-wide loop below, SPAN_VEC columns at a time */
            for (uint r = 0; r < nbn; ++r)
                PREFETCH(pn, (ulong)r * W + j);
            CS_BLOCK_COLUMNS(realv, LOADV, nonnegv, col_stats_merge);
        }
        for (; j + 8 <= W; j += 8)
            CS_BLOCK_COLUMNS(real8, LOAD8, nonneg8, col_stats_merge8);
        /* one column at a time (a merge per value cost ten times more:
         * few-channel tensors, C = 3, spend their time here) */
        for (; j < W; ++j)
            CS_BLOCK_COLUMNS(real, LOAD1, nonneg, col_stats_merge1);
        n = nn;
    }
    for (uint j = 0; j < W; ++j)
        part[j] = (real4)(n, hi[j], lo[j], m2[j]);
}

/* Adds (a, b) to column j's compensated sums in the state planes. */
inline void cs_sums_add(__global real *s1, __global real *s2, __global real *c1, __global real *c2, uint j,
                        real a, real b)
{
    real4 acc = sum2_add((real4)(s1[j], s2[j], c1[j], c2[j]), (real2)(a, b));
    s1[j]     = acc.x;
    s2[j]     = acc.y;
    c1[j]     = acc.z;
    c2[j]     = acc.w;
}

/* state: s1[W], s2[W], c1[W], c2[W] (Neumaier sums) of this work-item.
 * Rows as bn_stats_cstream; segment s reads its means at mean + s*mstride.
 * With dx (frozen batch norm, whose dx = a*dy needs no sums; W % 16 == 0,
 * I == 1, the host checks): dx too, in the same walk, from the coefficient
 * plane a at coef + 2*W (bn_coef_running's, bn_bwd_combine's for frozen:
 * the same bits as bn_dx_cstream's a*((dy - 0) - 0*0)); so dy is read
 * once, not twice. nt: streaming stores (dx vector-aligned). */
__kernel void bn_bwd_cstream(__global const store_t *x, ulong xoff, __global const store_t *dy,
                             ulong dyoff, __global const real *mean, ulong moff, uint O, uint W,
                             uint I, uint R, uint K, __global real4 *part, ulong poff,
                             __global real *state, ulong soff, uint Sp, uint Kc, uint mstride,
                             __global store_t *dx, ulong dxoff, __global const real *coef, ulong cofs,
                             int nt)
{
    uint k = get_global_id(0);
    if (k >= K)
        return;
    CS_ROWS(k)
    x += xoff;
    dy += dyoff;
    int wdx = dx != 0;
    nt      = HAVE_NT && nt && wdx;
    if (wdx) {
        dx += dxoff;
        coef += cofs + 2 * (ulong)W;
    }
    mean += moff + (ulong)seg * mstride;
    part += poff + (ulong)k * W;
    __global real *s1 = state + soff + (ulong)k * (I > 1 ? 5 : 4) * W, *s2 = s1 + W, *c1 = s2 + W, *c2 = c1 + W;
    for (uint j = 0; j < 4 * W; ++j)
        s1[j] = 0;
    if (I > 1) {
        /* channels first: every column's channel mean, spread once, so that
         * the walks below take whole vectors; column by column (a mean[j / I]
         * each, the loop at the end) the same sums ran scalar, 4 - 5x slower
         * than the rest of the backward on (512,512,4,4) */
        __global real *mc = c2 + W;
        for (uint j = 0; j < W; ++j)
            mc[j] = mean[j / I];
        mean = mc;
        I    = 1;
    }
#if CS_FLAT
    if (W < SPAN_VEC && W != 8 && I == 1) {
        /* plain sums per block of CS_FLAT_ROWS rows in period vectors (the
         * means expanded once), folded into the compensated totals */
        uint  np = cs_period(W), pv = np * SPAN_VEC;
        real  mc[SPAN_VEC];
        realv mv[CS_MAXP];
        for (uint c = 0; c < W; ++c)
            mc[c] = mean[c];
        cs_expand(mc, np, W, mv);
        for (uint o = o0; o < o1; o += CS_FLAT_ROWS) {
            uint  nb = min((uint)CS_FLAT_ROWS, o1 - o);
            ulong nv = (ulong)nb * W, base = (ulong)o * W, e;
            realv a[CS_MAXP], b[CS_MAXP];
            real  ta[SPAN_VEC], tb[SPAN_VEC];
            for (uint v = 0; v < np; ++v)
                a[v] = b[v] = (realv)0;
            for (uint c = 0; c < W; ++c)
                ta[c] = tb[c] = 0;
            for (e = 0; e + pv <= nv; e += pv)
                for (uint v = 0; v < np; ++v) {
                    ulong i = base + e + (ulong)v * SPAN_VEC;
                    realv d = LOADV(dy, i);
                    a[v] += d;
                    b[v] = fma(d, LOADV(x, i) - mv[v], b[v]);
                }
            for (ulong f = e; f < nv; ++f) {
                real d = LOAD1(dy, base + f);
                ta[f % W] += d;
                tb[f % W] = fma(d, LOAD1(x, base + f) - mc[f % W], tb[f % W]);
            }
            cs_fold(a, np, W, ta);
            cs_fold(b, np, W, tb);
            for (uint j = 0; j < W; ++j)
                cs_sums_add(s1, s2, c1, c2, j, ta[j], tb[j]);
        }
        for (uint j = 0; j < W; ++j)
            part[j] = (real4)(s1[j], s2[j], c1[j], c2[j]);
        return;
    }
#endif
    for (uint o = o0; o < o1; o += COL_BLOCK) {
        uint  nb = min((uint)COL_BLOCK, o1 - o);
        ulong base = (ulong)o * W;
        uint  j = 0;
        if (I == 1) {
#if CS_PANELS
            /* panels of four vectors in memory order, the next block's
             * lines prefetched along the walk (as bn_stats_cstream); each
             * column's sums in the same order as below, so the same bits */
            uint  nbn   = o + nb < o1 ? min((uint)COL_BLOCK, o1 - o - nb) : 0;
            ulong nbase = base + (ulong)nb * W;
            for (; j + 4 * SPAN_VEC <= W; j += 4 * SPAN_VEC) {
                const uint v1 = SPAN_VEC, v2 = 2 * SPAN_VEC, v3 = 3 * SPAN_VEC;
                realv m0 = VLOADV(mean + j), m1 = VLOADV(mean + j + v1);
                realv m2 = VLOADV(mean + j + v2), m3 = VLOADV(mean + j + v3);
                realv a0 = (realv)0, a1 = (realv)0, a2 = (realv)0, a3 = (realv)0;
                realv b0 = (realv)0, b1 = (realv)0, b2 = (realv)0, b3 = (realv)0;
                realv k0 = (realv)0, k1 = (realv)0, k2 = (realv)0, k3 = (realv)0;
                if (wdx) {
                    k0 = VLOADV(coef + j);
                    k1 = VLOADV(coef + j + v1);
                    k2 = VLOADV(coef + j + v2);
                    k3 = VLOADV(coef + j + v3);
                }
                for (uint r = 0; r < nb; ++r) {
                    ulong e = base + (ulong)r * W + j;
                    if (r < nbn) {
                        ulong f = nbase + (ulong)r * W + j;
                        PREFETCH(dy, f);
                        PREFETCH(dy, f + v1);
                        PREFETCH(dy, f + v2);
                        PREFETCH(dy, f + v3);
                        PREFETCH(x, f);
                        PREFETCH(x, f + v1);
                        PREFETCH(x, f + v2);
                        PREFETCH(x, f + v3);
                    }
                    realv d0 = LOADV(dy, e), d1 = LOADV(dy, e + v1);
                    realv d2 = LOADV(dy, e + v2), d3 = LOADV(dy, e + v3);
                    a0 += d0;
                    a1 += d1;
                    a2 += d2;
                    a3 += d3;
                    b0 = fma(d0, LOADV(x, e) - m0, b0);
                    b1 = fma(d1, LOADV(x, e + v1) - m1, b1);
                    b2 = fma(d2, LOADV(x, e + v2) - m2, b2);
                    b3 = fma(d3, LOADV(x, e + v3) - m3, b3);
                    if (nt) {
                        STOREV_NT(k0 * d0, dx, e);
                        STOREV_NT(k1 * d1, dx, e + v1);
                        STOREV_NT(k2 * d2, dx, e + v2);
                        STOREV_NT(k3 * d3, dx, e + v3);
                    } else if (wdx) {
                        STOREV(k0 * d0, dx, e);
                        STOREV(k1 * d1, dx, e + v1);
                        STOREV(k2 * d2, dx, e + v2);
                        STOREV(k3 * d3, dx, e + v3);
                    }
                }
#if SPAN_VEC == 16
                sums8_fold(s1, s2, c1, c2, j, a0.lo, b0.lo);
                sums8_fold(s1, s2, c1, c2, j + 8, a0.hi, b0.hi);
                sums8_fold(s1, s2, c1, c2, j + v1, a1.lo, b1.lo);
                sums8_fold(s1, s2, c1, c2, j + v1 + 8, a1.hi, b1.hi);
                sums8_fold(s1, s2, c1, c2, j + v2, a2.lo, b2.lo);
                sums8_fold(s1, s2, c1, c2, j + v2 + 8, a2.hi, b2.hi);
                sums8_fold(s1, s2, c1, c2, j + v3, a3.lo, b3.lo);
                sums8_fold(s1, s2, c1, c2, j + v3 + 8, a3.hi, b3.hi);
#else
                sums8_fold(s1, s2, c1, c2, j, a0, b0);
                sums8_fold(s1, s2, c1, c2, j + v1, a1, b1);
                sums8_fold(s1, s2, c1, c2, j + v2, a2, b2);
                sums8_fold(s1, s2, c1, c2, j + v3, a3, b3);
#endif
            }
#endif
            for (; j + SPAN_VEC <= W; j += SPAN_VEC) {
                /* as the 8-wide loop below, SPAN_VEC columns at a time */
                realv m = VLOADV(mean + j), a = (realv)0, b = (realv)0;
                realv kd = wdx ? VLOADV(coef + j) : (realv)0;
                for (uint r = 0; r < nb; ++r) {
                    ulong e = base + (ulong)r * W + j;
                    realv d = LOADV(dy, e);
                    a += d;
                    b = fma(d, LOADV(x, e) - m, b);
                    if (nt)
                        STOREV_NT(kd * d, dx, e);
                    else if (wdx)
                        STOREV(kd * d, dx, e);
                }
#if SPAN_VEC == 16
                sums8_fold(s1, s2, c1, c2, j, a.lo, b.lo);
                sums8_fold(s1, s2, c1, c2, j + 8, a.hi, b.hi);
#else
                sums8_fold(s1, s2, c1, c2, j, a, b);
#endif
            }
            for (; j + 8 <= W; j += 8) {
                real8 m = GLD(real, 8, mean + j), a = (real8)0, b = (real8)0;
                for (uint r = 0; r < nb; ++r) {
                    ulong e = base + (ulong)r * W + j;
                    real8 d = LOAD8(dy, e);
                    a += d;
                    b = fma(d, LOAD8(x, e) - m, b);
                }
                sums8_fold(s1, s2, c1, c2, j, a, b);
            }
        }
        for (; j < W; ++j) {
            real m = mean[j / I], a = 0, b = 0;
            for (uint r = 0; r < nb; ++r) {
                ulong e = base + (ulong)r * W + j;
                real  d = LOAD1(dy, e);
                a += d;
                b = fma(d, LOAD1(x, e) - m, b);
            }
            cs_sums_add(s1, s2, c1, c2, j, a, b);
        }
    }
    for (uint j = 0; j < W; ++j)
        part[j] = (real4)(s1[j], s2[j], c1[j], c2[j]);
    NT_FENCE(nt);
}

/* I == 1: work-item t applies all channels to rows [t*rpw, t*rpw + rpw).
 * The coefficients are 4 planes of C; rows come in segments of Sp with
 * their own planes at coef + s*4*C (batch norm: Sp = O, one segment; group
 * norm: a sample each). */
/* bn_apply_cstream: rows of at least CS_RG_MIN_C channels (whole vectors)
 * go CS_RG at a time, each coefficient vector loaded once for them, since
 * the four planes of C values outgrow L1. Inference old/new: (32,7,7,2048)
 * 1.55 - 1.71x, per-activation (512,4096) 1.52 - 1.97x, (4096,4096) 1.26x,
 * (32,14,14,2048) 1.22x, (32,14,14,1024) 1.08 - 1.16x, (32,28,28,1024)
 * 1.00x; at 512 and 256 channels it lost (0.69 - 0.83x). The same in
 * bn_dx_cstream changed nothing (0.98 - 1.07x). A/B: -DCS_RG=1 */
#ifndef CS_RG
#define CS_RG 4
#endif
#ifndef CS_RG_MIN_C
#define CS_RG_MIN_C 1024
#endif
#define SEGMENT_COEF(cf)                                                  \
    uint                 seg_ = o / Sp, oe = min(o1, seg_ * Sp + Sp);     \
    __global const real *cf   = coef + (ulong)seg_ * 4 * C;

/* dx from planes (m, kk, a, b): a*((dy - b) - (v - m)*kk), or with gform
 * (group norm, whose a varies per channel inside a statistic)
 * a*dy - b - (v - m)*kk; v = x, or m when !use_x. Rows as bn_apply_cstream. */
#define DX_FORM(a, b, d, v, m, kk) (gform ? (a) * (d) - (b) - ((v) - (m)) * (kk) : (a) * (((d) - (b)) - ((v) - (m)) * (kk)))

/* Few channels (C < SPAN_VEC, not 8): rows [o, oe) are one run of values
 * whose channel repeats every C, so they go in vectors: the four planes,
 * expanded over one period of np = C/gcd(C, SPAN_VEC) vectors from the
 * run's first vector, sit in private memory. A value at e of the run has
 * channel e % C (rows start at multiples of C). dx (pass 'd' forms) when
 * dy is given, else the apply; scalar head (up to a vector-aligned address
 * for streaming stores) and tail. Element by element, each value cost four
 * coefficient loads and a store of its own (C = 3: a third of copy speed). */

inline real cs_one(__global const store_t *x, __global const store_t *dy, __global const real *cf, uint C,
                   ulong e, int use_x, int gform)
{
    uint c = (uint)(e % C);
    real4 k = COEF_LOAD(cf, C, c);
    if (!dy)
        return ((LOAD1(x, e) - k.x) - k.y) * k.z + k.w;
    real d = LOAD1(dy, e), v = use_x ? LOAD1(x, e) : k.x;
    return DX_FORM(k.z, k.w, d, v, k.x, k.y);
}

inline void cs_flat(__global const store_t *x, __global const store_t *dy, __global store_t *out,
                    __global const real *cf, uint C, ulong e, ulong e1, int nt, int use_x, int gform)
{
    if (nt)
        for (; e < e1 && ((ulong)(out + e) & (sizeof(realv) - 1)); ++e)
            STORE1(cs_one(x, dy, cf, C, e, use_x, gform), out, e);
    uint np = cs_period(C), pv = np * SPAN_VEC;
    realv k0[CS_MAXP], k1[CS_MAXP], k2[CS_MAXP], k3[CS_MAXP];
    for (uint i = 0; i < pv; ++i) {
        uint c                = (uint)((e + i) % C);
        ((real *)k0)[i]       = cf[c];
        ((real *)k1)[i]       = cf[C + c];
        ((real *)k2)[i]       = cf[2 * C + c];
        ((real *)k3)[i]       = cf[3 * C + c];
    }
    for (; e + pv <= e1; e += pv)
        for (uint v = 0; v < np; ++v) {
            ulong  i = e + (ulong)v * SPAN_VEC;
            realv  a = k0[v], b = k1[v], g = k2[v], h = k3[v];
            realv  r;
            if (!dy) {
                r = ((LOADV(x, i) - a) - b) * g + h;
            } else {
                realv d = LOADV(dy, i), w = use_x ? LOADV(x, i) : a;
                r       = DX_FORM(g, h, d, w, a, b);
            }
            if (nt)
                STOREV_NT(r, out, i);
            else
                STOREV(r, out, i);
        }
    for (; e < e1; ++e)
        STORE1(cs_one(x, dy, cf, C, e, use_x, gform), out, e);
}

/* With stream (large outputs), rows of whole 8-blocks at 32-byte aligned
 * addresses are written with streaming stores. */
__kernel void bn_apply_cstream(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                               uint C, uint O, __global const real *coef, ulong cofs, int stream,
                               uint rpw, uint Sp)
{
    uint o = get_global_id(0) * rpw;
    if (o >= O)
        return;
    coef += cofs;
    uint o1 = min(O, o + rpw);
    x += xoff;
    y += yoff;
    if (C % SPAN_VEC == 0) {
        /* whole vectors of channels: one coefficient vector per plane per
         * SPAN_VEC values, full-line streaming stores */
        int ntv = HAVE_NT && stream && ((ulong)(y + (ulong)o * C) & (sizeof(realv) - 1)) == 0;
        while (o < o1) {
            SEGMENT_COEF(cf)
#if CS_RG > 1
            for (; C >= CS_RG_MIN_C && o + CS_RG <= oe; o += CS_RG) {
                ulong base = (ulong)o * C;
                for (uint c = 0; c < C; c += SPAN_VEC) {
                    realv a = VLOADV(cf + c), b = VLOADV(cf + C + c);
                    realv g = VLOADV(cf + 2 * C + c), h = VLOADV(cf + 3 * C + c);
                    _Pragma("unroll") for (uint r = 0; r < CS_RG; ++r)
                    {
                        ulong i = base + (ulong)r * C + c;
                        realv v = ((LOADV(x, i) - a) - b) * g + h;
                        if (ntv)
                            STOREV_NT(v, y, i);
                        else
                            STOREV(v, y, i);
                    }
                }
            }
#endif
            for (; o < oe; ++o) {
                ulong base = (ulong)o * C;
                for (uint c = 0; c < C; c += SPAN_VEC) {
                    realv v = ((LOADV(x, base + c) - VLOADV(cf + c)) - VLOADV(cf + C + c)) *
                                  VLOADV(cf + 2 * C + c) +
                              VLOADV(cf + 3 * C + c);
                    if (ntv)
                        STOREV_NT(v, y, base + c);
                    else
                        STOREV(v, y, base + c);
                }
            }
        }
        NT_FENCE(ntv);
        return;
    }
    if (C < SPAN_VEC && C != 8) {
        int ntf = HAVE_NT && stream;
        while (o < o1) {
            SEGMENT_COEF(cf)
            cs_flat(x, NOPF, y, cf, C, (ulong)o * C, (ulong)oe * C, ntf, 1, 0);
            o = oe;
        }
        NT_FENCE(ntf);
        return;
    }
    int nt = HAVE_NT && stream && (C & 7) == 0 && ((ulong)(y + (ulong)o * C) & 31) == 0;
    while (o < o1) {
        SEGMENT_COEF(cf)
        for (; o < oe; ++o) {
            ulong base = (ulong)o * C;
            uint  c = 0;
            for (; c + 8 <= C; c += 8) {
                real8 hi, lo, sc, sh;
                coef8(cf, C, c, &hi, &lo, &sc, &sh);
                real8 v = ((LOAD8(x, base + c) - hi) - lo) * sc + sh;
                if (nt)
                    STORE8_NT(v, y, base + c);
                else
                    STORE8(v, y, base + c);
            }
            for (; c < C; ++c) {
                real4 k = COEF_LOAD(cf, C, c);
                STORE1(((LOAD1(x, base + c) - k.x) - k.y) * k.z + k.w, y, base + c);
            }
        }
    }
    NT_FENCE(nt);
}


__kernel void bn_dx_cstream(__global const store_t *x, ulong xoff, __global const store_t *dy,
                            ulong dyoff, __global store_t *dx, ulong dxoff, uint C, uint O,
                            int use_x, __global const real *coef, ulong cofs, int stream, uint rpw,
                            uint Sp, int gform)
{
    uint o = get_global_id(0) * rpw;
    if (o >= O)
        return;
    coef += cofs;
    uint o1 = min(O, o + rpw);
    if (C % SPAN_VEC == 0) {
        /* whole vectors of channels, as bn_apply_cstream */
        __global store_t *dxp = dx + dxoff;
        int ntv = HAVE_NT && stream && ((ulong)(dxp + (ulong)o * C) & (sizeof(realv) - 1)) == 0;
        while (o < o1) {
            SEGMENT_COEF(cf)
            for (; o < oe; ++o) {
                ulong base = (ulong)o * C;
                for (uint c = 0; c < C; c += SPAN_VEC) {
                    realv m = VLOADV(cf + c), kk = VLOADV(cf + C + c);
                    realv a = VLOADV(cf + 2 * C + c), b = VLOADV(cf + 3 * C + c);
                    realv d = LOADV(dy, dyoff + base + c);
                    realv v = use_x ? LOADV(x, xoff + base + c) : m;
                    realv r = DX_FORM(a, b, d, v, m, kk);
                    if (ntv)
                        STOREV_NT(r, dxp, base + c);
                    else
                        STOREV(r, dxp, base + c);
                }
            }
        }
        NT_FENCE(ntv);
        return;
    }
    if (C < SPAN_VEC && C != 8) {
        int ntf = HAVE_NT && stream;
        while (o < o1) {
            SEGMENT_COEF(cf)
            cs_flat(x + xoff, dy + dyoff, dx + dxoff, cf, C, (ulong)o * C, (ulong)oe * C, ntf, use_x,
                    gform);
            o = oe;
        }
        NT_FENCE(ntf);
        return;
    }
    int  nt = HAVE_NT && stream && (C & 7) == 0 && ((ulong)(dx + dxoff + (ulong)o * C) & 31) == 0;
    while (o < o1) {
        SEGMENT_COEF(cf)
        for (; o < oe; ++o) {
            ulong base = (ulong)o * C;
            uint  c = 0;
            for (; c + 8 <= C; c += 8) {
                real8 m, kk, a, b;
                coef8(cf, C, c, &m, &kk, &a, &b);
                real8 d = LOAD8(dy, dyoff + base + c);
                real8 v = use_x ? LOAD8(x, xoff + base + c) : m;
                if (nt)
                    STORE8_NT(DX_FORM(a, b, d, v, m, kk), dx, dxoff + base + c);
                else
                    STORE8(DX_FORM(a, b, d, v, m, kk), dx, dxoff + base + c);
            }
            for (; c < C; ++c) {
                real4 k = COEF_LOAD(cf, C, c);
                real  d = LOAD1(dy, dyoff + base + c);
                real  v = use_x ? LOAD1(x, xoff + base + c) : k.x;
                STORE1(DX_FORM(k.z, k.w, d, v, k.x, k.y), dx, dxoff + base + c);
            }
        }
    }
    NT_FENCE(nt);
}

/* The second walk visits the rows in reverse: the rows the first walk read
 * last are the ones still in cache, and y's writes evict the oldest lines
 * first, which a forward second walk would need next. */
#ifndef REVERSE_SECOND_WALK
#define REVERSE_SECOND_WALK 1
#endif
#define SECOND_ROW(r) (REVERSE_SECOND_WALK ? O - 1 - (r) : (r))

/* ---- fused: one work-group per channel, two walks over its slice ---------
 * The first walk reduces the statistics (or the gradient sums), the second
 * normalizes (or forms dx) while the slice is still in cache, so DRAM sees x
 * once. Used when the slice fits the cache and there are channels enough to
 * fill the device, and for small tensors, where one launch beats three. */

#ifndef SLICE_TWO_PASS
#define SLICE_TWO_PASS 8192 /* slices up to this many values: one two-pass over the whole */
#endif

/* SMALL_ACC2: the small-slice walks below keep two independent vector sums
 * (a single one waits on the add's latency every vector): with the
 * two-pass (-DSMALL_SHIFT=0), (32,256,14,14) training forward 1.10 -
 * 1.14x, (32,1024,14,14) 0.86 - 1.09x (memory-bound there), on the 2-core
 * EPYC. A/B: -DSMALL_ACC2=0. */
#ifndef SMALL_ACC2
#define SMALL_ACC2 1
#endif
/* SMALL_SHIFT: the small slice's statistics in one walk: the first row by
 * two passes, the rest in chunks of rows about the mean so far (in place of
 * a sums walk and a deviations walk over the whole slice). A/B:
 * -DSMALL_SHIFT=0. */
#ifndef SMALL_SHIFT
#define SMALL_SHIFT 1
#endif
/* Adds the deviations from k of row[0, n) and their squares to the vector
 * sums d1 and d2 (with SMALL_ACC2, the odd vectors' to e1 and e2), the
 * tail's to t1 and t2. */
inline void dev_accum(__global const store_t *row, uint n, real k, realv *d1, realv *d2, realv *e1,
                      realv *e2, real *t1, real *t2)
{
    uint i = 0;
#if SMALL_ACC2
    for (; i + 2 * SPAN_VEC <= n; i += 2 * SPAN_VEC) {
        realv d = LOADV(row, i) - k, e = LOADV(row, i + SPAN_VEC) - k;
        *d1 += d;
        *d2 = fma(d, d, *d2);
        *e1 += e;
        *e2 = fma(e, e, *e2);
    }
#endif
    for (; i + SPAN_VEC <= n; i += SPAN_VEC) {
        realv d = LOADV(row, i) - k;
        *d1 += d;
        *d2 = fma(d, d, *d2);
    }
    for (; i < n; ++i) {
        real d = LOAD1(row, i) - k;
        *t1 += d;
        *t2 = fma(d, d, *t2);
    }
}

/* Statistics of channel c, merged over all lanes; every lane gets the result. */
inline real4 fused_stats(__global const store_t *x, uint O, uint C, uint I, uint c, uint lane,
                         __local real4 *sh)
{
    real4 acc = (real4)0;
#if LX == 1
    if ((ulong)O * I <= SLICE_TWO_PASS) {
#if SMALL_SHIFT
        /* a small slice: the first row by the corrected two-pass, then
         * chunks of rows, each no longer than the rows before it, in one
         * pass about the mean so far (stat_span_next's argument), merged at
         * the chunk's end */
        acc = stat_span(x + (ulong)c * I, I, NOPF);
        for (uint a = 1; a < O;) {
            uint  b  = min(O, 2 * a);
            real  k  = acc.y;
            realv d1 = (realv)0, d2 = (realv)0, e1 = (realv)0, e2 = (realv)0;
            real  t1 = 0, t2 = 0;
            for (uint o = a; o < b; ++o)
                dev_accum(x + ((ulong)o * C + c) * I, I, k, &d1, &d2, &e1, &e2, &t1, &t2);
            real cn = (real)(b - a) * (real)I, ci = (real)1 / cn;
            real ds = sumv(d1 + e1) + t1, q = sumv(d2 + e2) + t2 - ds * ds * ci;
            acc     = stat_merge(acc, (real4)(cn, k, ds * ci, nonneg(q)));
            a       = b;
        }
        return acc;
#else
        /* a small slice: the corrected two-pass over all of it (cache-
         * resident), no per-row merges */
        realv s = (realv)0, s2 = (realv)0;
        real  t = 0;
        for (uint o = 0; o < O; ++o) {
            __global const store_t *row = x + ((ulong)o * C + c) * I;
            uint                    i   = 0;
#if SMALL_ACC2
            for (; i + 2 * SPAN_VEC <= I; i += 2 * SPAN_VEC) {
                s += LOADV(row, i);
                s2 += LOADV(row, i + SPAN_VEC);
            }
#endif
            for (; i + SPAN_VEC <= I; i += SPAN_VEC)
                s += LOADV(row, i);
            for (; i < I; ++i)
                t += LOAD1(row, i);
        }
        real  rn = (real)O * (real)I, ri = (real)1 / rn;
        real  m  = (sumv(s + s2) + t) * ri;
        realv d1 = (realv)0, d2 = (realv)0, e1 = (realv)0, e2 = (realv)0;
        real  t1 = 0, t2 = 0;
        for (uint o = 0; o < O; ++o)
            dev_accum(x + ((ulong)o * C + c) * I, I, m, &d1, &d2, &e1, &e2, &t1, &t2);
        real ds = sumv(d1 + e1) + t1;
        real q  = sumv(d2 + e2) + t2 - ds * ds * ri;
        return (real4)(rn, m, ds * ri, nonneg(q));
#endif
    }
#endif
    for (uint o = 0; o < O; ++o) {
        __global const store_t *row = x + ((ulong)o * C + c) * I;
#if LX == 1
        __global const store_t *pf = o + 1 < O ? row + (ulong)C * I : NOPF;
        for (uint i = 0; i < I; i += SPAN)
            acc = stat_span_next(acc, row + i, min((uint)SPAN, I - i), pf ? pf + i : NOPF);
#else
        uint i = lane * 8;
        for (; i + 8 <= I; i += 8 * LX)
            acc = stat_merge(acc, stat_block8(LOAD8(row, i)));
        for (; i < I; ++i)
            acc = stat_merge(acc, stat_one(LOAD1(row, i)));
#endif
    }
#if LX > 1
    acc = lanes_stats(acc, lane, sh);
#endif
    return acc;
}

/* The rows of channel c + 1 that the second walk's row r prefetches: in
 * the last rows of the walk, the first rows of the next channel (the next
 * work-group, which PoCL's threads mostly take in order), up to PF_BYTES
 * of each of the walk's tensors; as an offset into the tensor, 0 for none.
 * Only with streaming stores, which leave the cache to the data being read.
 * PF_EACH_TENSOR: the budget is per tensor, so the backward (x and dy)
 * prefetches as many rows as the forward. With PF_BYTES over both tensors,
 * 20 of a 56x56 channel's 32 rows, NCHW (32,256,56,56) backward ran 1.06 -
 * 1.07x slower on the 2-core EPYC. A/B: -DPF_EACH_TENSOR=0. */
#ifndef PF_EACH_TENSOR
#define PF_EACH_TENSOR 1
#endif
inline ulong next_rows(uint r, uint O, uint C, uint c, uint I, uint tensors, int stream)
{
#if !HAVE_NT || PF_BYTES == 0
    return 0;
#endif
    if (!stream || c + 1 >= C)
        return 0;
    if (PF_EACH_TENSOR)
        tensors = 1;
    uint n = (uint)min((ulong)O, max((ulong)1, (ulong)PF_BYTES / ((ulong)tensors * I * sizeof(store_t))));
    if (r + n < O)
        return 0;
    return ((ulong)(r + n - O) * C + c + 1) * I;
}

__kernel void bn_fwd_fused(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                           uint O, uint C, uint I, real M, real eps, real f, real bessel,
                           __global const real *gamma, ulong goff,
                           __global const real *beta, ulong boff,
                           __global real *smean, ulong smoff,
                           __global real *sinv, ulong sioff,
                           __global real *rmean, ulong rmoff,
                           __global real *rvar, ulong rvoff, int stream)
{
    uint lane = get_local_id(0), c = get_global_id(1);
    if (c >= C)
        return; /* a work-group is one channel (LX > 1) or several whole ones */
    __local real4 sh[LX];
    x += xoff;
    y += yoff;
    real4 acc  = fused_stats(x, O, C, I, c, lane, sh);
    real4 k    = FWD_COEF(acc, c, lane == 0);
    for (uint r = 0; r < O; ++r) {
        uint o = SECOND_ROW(r);
        ulong base = ((ulong)o * C + c) * I;
        uint  i    = lane * 8;
#if LX == 1
        ulong pf = next_rows(r, O, C, c, I, 1, stream);
        WALKV(i, I, y + base, stream, pf ? x + pf : NOPF, NOPF, bn_applyv(LOADV(x, base + i), k),
              bn_apply1(LOAD1(x, base + i), k));
#endif
        for (; i + 8 <= I; i += 8 * LX)
            STORE8(bn_apply8(LOAD8(x, base + i), k), y, base + i);
        for (; i < I; ++i)
            STORE1(((LOAD1(x, base + i) - k.x) - k.y) * k.z + k.w, y, base + i);
    }
    NT_FENCE(stream);
}

/* ---- channels first, CPUs, slices over SLICE_TWO_PASS values: a work-item
 * owns cw consecutive channels and pipelines them. While it writes channel
 * c's y (the second walk, from cache), it reads channel c + 1's rows for
 * their statistics, span by span. One channel's two walks are a read-only
 * phase and a write phase, each leaving the other direction of the memory
 * idle; interleaved they move data both ways at once, as a copy does. The
 * statistics are fused_stats' spans merged in the same order, and y the
 * same expression: the same bits as bn_fwd_fused. With streaming stores
 * and bit 1 of stream set (ahead: three slices fit L2), three stages: the
 * walk that writes c and sums c + 1 from cache prefetches c + 2, so the
 * statistics' arithmetic no longer leaves the write side idle. */
__kernel void bn_fwd_pfused(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            uint O, uint C, uint I, uint cw, real M, real eps, real f, real bessel,
                            __global const real *gamma, ulong goff,
                            __global const real *beta, ulong boff,
                            __global real *smean, ulong smoff,
                            __global real *sinv, ulong sioff,
                            __global real *rmean, ulong rmoff,
                            __global real *rvar, ulong rvoff, int stream)
{
    __local real4 sh[1];
    uint          c0 = get_global_id(0) * cw;
    if (c0 >= C)
        return;
    uint  c1  = min(C, c0 + cw);
    ulong rs  = (ulong)C * I;
    int   ahead = stream & 2;
    stream &= 1;
    x += xoff;
    y += yoff;
    real4 acc = fused_stats(x, O, C, I, c0, 0, sh);
    for (uint c = c0; c < c1; ++c) {
        real4 k    = FWD_COEF(acc, c, 1);
        int   next = c + 1 < c1;
        acc        = (real4)0;
        for (uint r = 0; r < O; ++r) {
            ulong                   base = (ulong)SECOND_ROW(r) * rs + (ulong)c * I;
            __global const store_t *srow = x + (ulong)r * rs + (ulong)(c + 1) * I;
            /* ahead: c + 1's rows came in with c - 1's walk (but c0 + 1's),
             * and this walk brings c + 2's */
            __global const store_t *spf  = r + 1 < O && (!ahead || c == c0) ? srow + rs : NOPF;
            __global const store_t *apf  = ahead && c + 2 < c1 ? srow + I : NOPF;
            for (uint i0 = 0; i0 < I; i0 += SPAN) {
                uint i1 = min(I, i0 + (uint)SPAN), i = i0;
                WALKV(i, i1, y + base, stream, apf, NOPF, bn_applyv(LOADV(x, base + i), k),
                      bn_apply1(LOAD1(x, base + i), k));
                for (; i < i1; ++i)
                    STORE1(bn_apply1(LOAD1(x, base + i), k), y, base + i);
                if (next)
                    acc = stat_span_next(acc, srow + i0, i1 - i0, spf ? spf + i0 : NOPF);
            }
        }
    }
    NT_FENCE(stream);
}

#if LX == 1
/* bn_bwd_fused's gradient sums of channel c on rows of up to SPAN values:
 * plain vector sums over blocks of rows of about SPAN values, compensated
 * across blocks lane by lane, one horizontal sum at the end. A row's tail,
 * when the row holds a whole vector, is the row's last vector with the
 * lanes already counted masked off; shorter rows' tails go to plain scalar
 * sums per block. With fdx (frozen, see bn_bwd_fused), fdx = kz*dy in the
 * same walk; with pf, each row prefetches the next (C*I values on: a
 * stream the prefetchers start afresh every row). Where the caller passes
 * constants, its copy has no tests of them in the loop. */
inline real4 bwd_short_sums(__global const store_t *x, __global const store_t *dy, uint O, uint C, uint I,
                            uint c, real m, __global store_t *fdx, real kz, int fnt, int pf)
{
    real4 acc = (real4)0;
    realv s1 = (realv)0, c1 = (realv)0, s2 = (realv)0, c2 = (realv)0;
    realv a = (realv)0, b = (realv)0;
    real  ta = 0, tb = 0;
    uint  iv = I - I % SPAN_VEC, per = max((uint)1, (uint)SPAN / I), left = per;
    int   vtail = iv < I && I >= SPAN_VEC;
    realv keep  = (realv)(real)(SPAN_VEC - (I - iv)); /* lanes >= keep are the tail */
    for (uint o = 0; o < O; ++o) {
        ulong base = ((ulong)o * C + c) * I;
        __global const store_t *pfd = pf && o + 1 < O ? dy + base + (ulong)C * I : NOPF;
        __global const store_t *pfx = pf && o + 1 < O ? x + base + (ulong)C * I : NOPF;
        for (uint i = 0; i < iv; i += SPAN_VEC) {
            PREFETCH_R(pfd, i);
            PREFETCH_R(pfx, i);
            realv d = LOADV(dy, base + i);
            if (fdx)
                FROZEN_STOREV(kz * d, fdx, base + i, fnt);
            a += d;
            b = fma(d, LOADV(x, base + i) - m, b);
        }
        if (fdx)
            for (uint i = iv; i < I; ++i)
                STORE1(kz * LOAD1(dy, base + i), fdx, base + i);
        if (vtail) {
            ulong e = base + I - SPAN_VEC;
            realv d = select((realv)0, LOADV(dy, e), LANE_IDS >= keep);
            realv v = select((realv)0, LOADV(x, e) - m, LANE_IDS >= keep);
            a += d;
            b = fma(d, v, b);
        } else {
            for (uint i = iv; i < I; ++i) {
                real d = LOAD1(dy, base + i);
                ta += d;
                tb = fma(d, LOAD1(x, base + i) - m, tb);
            }
        }
        if (--left == 0 || o + 1 == O) {
            sumv_add(&s1, &c1, a);
            sumv_add(&s2, &c2, b);
            acc = sum2_add(acc, (real2)(ta, tb));
            a = b = (realv)0;
            ta = tb = 0;
            left = per;
        }
    }
    acc = sum2_add(acc, (real2)(sumv(s1), sumv(s2)));
    acc.zw += (real2)(sumv(c1), sumv(c2));
    return acc;
}
#endif

/* dx's coefficients (mean, invstd*dgamma/M, gamma*invstd, dbeta/M; frozen:
 * mean, 0, gamma*invstd, 0) of channel c from its compensated gradient sums
 * acc; with out, dgamma and dbeta written. A macro over the backward
 * kernels' common parameter names. */
inline real4 bwd_coef(real4 acc, uint c, real m, int out, real M, int frozen, real eps,
                      __global const real *inv_src, ulong ioff, __global const real *gamma, ulong goff,
                      __global real *dgamma, ulong dgoff, __global real *dbeta, ulong dboff)
{
    real sdy  = acc.x + acc.z;
    real sdxm = acc.y + acc.w;
    real inv  = frozen ? (real)1 / sqrt(inv_src[ioff + c] + eps) : inv_src[ioff + c];
    real g    = gamma ? gamma[goff + c] : (real)1;
    real dg   = inv * sdxm;
    if (out) {
        if (dgamma)
            dgamma[dgoff + c] = dg;
        if (dbeta)
            dbeta[dboff + c] = sdy;
    }
    return frozen ? (real4)(m, (real)0, g * inv, (real)0) : (real4)(m, inv * dg / M, g * inv, sdy / M);
}
#define BWD_COEF(acc, c, m, out)                                                                 \
    bwd_coef(acc, c, m, out, M, frozen, eps, inv_src, ioff, gamma, goff, dgamma, dgoff, dbeta, dboff)

#ifndef SHORT_PF
#define SHORT_PF 512 /* 0: off */
#endif
#ifndef FROZEN_ONE_WALK
#define FROZEN_ONE_WALK 1
#endif
__kernel void bn_bwd_fused(__global const store_t *x, ulong xoff, __global const store_t *dy,
                           ulong dyoff, __global store_t *dx, ulong dxoff, uint O, uint C, uint I,
                           real M, int frozen, real eps,
                           __global const real *mean, ulong moff,
                           __global const real *inv_src, ulong ioff,
                           __global const real *gamma, ulong goff,
                           __global real *dgamma, ulong dgoff,
                           __global real *dbeta, ulong dboff, int stream)
{
    uint lane = get_local_id(0), c = get_global_id(1);
    if (c >= C)
        return; /* a work-group is one channel (LX > 1) or several whole ones */
    __local real4 sh[LX];
    x += xoff;
    dy += dyoff;
    dx += dxoff;
    real  m   = mean[moff + c];
    real4 acc = (real4)0;
#if LX == 1
    /* frozen: dx = gamma*invstd*dy needs no sums, so the sums walk writes
     * it and there is no second walk: one pass that reads x and dy and
     * writes dx, where the read-only walk and a walk that writes from
     * cache took turns. Where every row starts vector-aligned or there are
     * no streaming stores; the second walk aligns each row's streaming
     * stores (with a row's dx from L1 after its sums in place of the second
     * walk, (32,1024,14,14) ran 1.02 - 1.08x slower). A/B:
     * -DFROZEN_ONE_WALK=0. */
    int               fnt = HAVE_NT && stream;
    __global store_t *fdx = frozen && FROZEN_ONE_WALK &&
                                    (!fnt || (I % SPAN_VEC == 0 && ((ulong)dx & (sizeof(realv) - 1)) == 0))
                                ? dx
                                : 0;
    real              kz  = fdx ? BWD_COEF((real4)0, c, m, 0).z : (real)0;
    if (I <= SPAN) {
        /* short rows; the row prefetch on rows of SHORT_PF values or more:
         * (32,512,28,28) backward ran 1.12x faster with it, frozen 1.17x;
         * on 14x14 maps (32,1024,14,14) 1.03x slower */
        int pf = SHORT_PF && I >= SHORT_PF;
        if (fdx || pf)
            acc = bwd_short_sums(x, dy, O, C, I, c, m, fdx, kz, fnt, pf);
        else
            acc = bwd_short_sums(x, dy, O, C, I, c, m, 0, 0, 0, 0);
    } else
#endif
    for (uint o = 0; o < O; ++o) {
        ulong base = ((ulong)o * C + c) * I;
#if LX == 1
        ulong nb = base + (ulong)C * I; /* the next row's */
        int   pf = o + 1 < O;
        for (uint i = 0; i < I; i += SPAN) {
            uint n = min((uint)SPAN, I - i);
            acc    = sum2_add(acc, bwd_span(dy + base + i, x + base + i, m, n, pf ? dy + nb + i : NOPF,
                                            pf ? x + nb + i : NOPF, fdx ? fdx + base + i : 0, kz, fnt));
        }
#else
        uint i = lane * 8;
        for (; i + 8 <= I; i += 8 * LX)
            acc = bwd_block8(acc, LOAD8(dy, base + i), LOAD8(x, base + i), m);
        for (; i < I; ++i) {
            real d = LOAD1(dy, base + i);
            acc = sum2_add(acc, (real2)(d, d * (LOAD1(x, base + i) - m)));
        }
#endif
    }
#if LX > 1
    acc = lanes_sums(acc, lane, sh);
#endif
    real4 k = BWD_COEF(acc, c, m, lane == 0);
#if LX == 1
    uint walk = fdx ? 0 : O; /* no early return: PoCL's loops over a group's work-items took it 1.08x slower */
#else
    uint walk = O;
#endif
    for (uint r = 0; r < walk; ++r) {
        uint o = SECOND_ROW(r);
        ulong base = ((ulong)o * C + c) * I;
        uint  i    = lane * 8;
        if (frozen) {
            /* frozen dx is gamma*invstd*dy and never looks at x */
#if LX == 1
            ulong pf = next_rows(r, O, C, c, I, 1, stream);
            WALKV(i, I, dx + base, stream, pf ? dy + pf : NOPF, NOPF, k.z * LOADV(dy, base + i),
                  k.z * LOAD1(dy, base + i));
#endif
            for (; i + 8 <= I; i += 8 * LX)
                STORE8(k.z * LOAD8(dy, base + i), dx, base + i);
            for (; i < I; ++i)
                STORE1(k.z * LOAD1(dy, base + i), dx, base + i);
            continue;
        }
#if LX == 1
        ulong pf = next_rows(r, O, C, c, I, 2, stream);
        WALKV(i, I, dx + base, stream, pf ? x + pf : NOPF, pf ? dy + pf : NOPF,
              bn_dxv(LOADV(dy, base + i), LOADV(x, base + i), k),
              bn_dx1(LOAD1(dy, base + i), LOAD1(x, base + i), k));
#endif
        for (; i + 8 <= I; i += 8 * LX)
            STORE8(bn_dx8(LOAD8(dy, base + i), LOAD8(x, base + i), k), dx, base + i);
        for (; i < I; ++i) {
            real d = LOAD1(dy, base + i), v = LOAD1(x, base + i);
            STORE1(k.z * ((d - k.w) - (v - k.x) * k.y), dx, base + i);
        }
    }
    NT_FENCE(stream);
}

/* Inference (and frozen dx, with x = dy, no mean and no beta) as one kernel:
 * a work-group per channel, coefficients from the running statistics. */
__kernel void bn_infer_fused(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                             uint O, uint C, uint I, real eps,
                             __global const real *rmean, ulong rmoff,
                             __global const real *rvar, ulong rvoff,
                             __global const real *gamma, ulong goff,
                             __global const real *beta, ulong boff, int stream)
{
    uint lane = get_local_id(0), c = get_global_id(1);
    if (c >= C)
        return; /* a work-group is one channel (LX > 1) or several whole ones */
    real inv = (real)1 / sqrt(rvar[rvoff + c] + eps);
    real g   = gamma ? gamma[goff + c] : (real)1;
    real4 k  = (real4)(rmean ? rmean[rmoff + c] : (real)0, (real)0, g * inv,
                      beta ? beta[boff + c] : (real)0);
    x += xoff;
    y += yoff;
    for (uint o = 0; o < O; ++o) {
        ulong base = ((ulong)o * C + c) * I;
        uint  i    = lane * 8;
#if LX == 1
        WALKV(i, I, y + base, stream, NOPF, NOPF, bn_applyv(LOADV(x, base + i), k),
              bn_apply1(LOAD1(x, base + i), k));
#endif
        for (; i + 8 <= I; i += 8 * LX)
            STORE8(bn_apply8(LOAD8(x, base + i), k), y, base + i);
        for (; i < I; ++i)
            STORE1(((LOAD1(x, base + i) - k.x) - k.y) * k.z + k.w, y, base + i);
    }
    NT_FENCE(stream);
}

/* Inference (and frozen dx) on CPUs with I > 1: a work-item walks rpw
 * consecutive rows (o, c) of I values, one run through memory as a copy's
 * is, the coefficients changing from row to row. bn_infer_fused's walk by
 * channel jumps C*I values between rows, a fresh stream for the prefetchers
 * every row, which cost a third of the bandwidth on rows of a few KB. The
 * same arithmetic per value as bn_infer_fused: the same bits. With coef,
 * the coefficient planes of the multi-kernel training forward instead. */
/* The rows (o, c) [r0, r1) of work-item get_global_id(0) of an in-order
 * walk, rpw to a work-item, c the channel of row r0 (bn_infer_flat,
 * bn_dx_flat). */
#define FLAT_ROWS(rows, rpw, C)                                  \
    ulong r0 = (ulong)get_global_id(0) * (rpw);                  \
    if (r0 >= (rows))                                            \
        return;                                                  \
    ulong r1 = min((ulong)(rows), r0 + (rpw));                   \
    uint  c  = (uint)(r0 % (C));

__kernel void bn_infer_flat(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            uint C, uint I, ulong rows, uint rpw, real eps,
                            __global const real *rmean, ulong rmoff,
                            __global const real *rvar, ulong rvoff,
                            __global const real *gamma, ulong goff,
                            __global const real *beta, ulong boff, int stream,
                            __global const real *coef, ulong cofs)
{
    FLAT_ROWS(rows, rpw, C)
    x += xoff;
    y += yoff;
    for (ulong r = r0; r < r1; ++r) {
        real4 k;
        if (coef) { /* the training forward's planes */
            k = COEF_LOAD(coef + cofs, C, c);
        } else {
            real inv = (real)1 / sqrt(rvar[rvoff + c] + eps);
            real g   = gamma ? gamma[goff + c] : (real)1;
            k = (real4)(rmean ? rmean[rmoff + c] : (real)0, (real)0, g * inv, beta ? beta[boff + c] : (real)0);
        }
        ulong base = r * I;
        uint  i    = 0;
        WALKV(i, I, y + base, stream, NOPF, NOPF, bn_applyv(LOADV(x, base + i), k),
              bn_apply1(LOAD1(x, base + i), k));
        for (; i < I; ++i)
            STORE1(bn_apply1(LOAD1(x, base + i), k), y, base + i);
        c = c + 1 == C ? 0 : c + 1;
    }
    NT_FENCE(stream);
}

/* dx of the multi-kernel backward, channels first, on CPUs: bn_infer_flat's
 * walk in memory order (rpw rows (o, c) of I values per work-item) with
 * bn_dx_rows' arithmetic from the coefficient planes; use_x == 0 (frozen)
 * never reads x. bn_dx_rows' work-items of 8 values took 2.3 ms of the 4.5
 * of the backward on (512,512,4,4). */
__kernel void bn_dx_flat(__global const store_t *x, ulong xoff, __global const store_t *dy, ulong dyoff,
                         __global store_t *dx, ulong dxoff, uint C, uint I, ulong rows, uint rpw, int use_x,
                         __global const real *coef, ulong cofs, int stream)
{
    FLAT_ROWS(rows, rpw, C)
    x += xoff;
    dy += dyoff;
    dx += dxoff;
    coef += cofs;
    for (ulong r = r0; r < r1; ++r) {
        real4 k    = COEF_LOAD(coef, C, c);
        ulong base = r * I;
        uint  i    = 0;
        if (use_x) {
            WALKV(i, I, dx + base, stream, NOPF, NOPF, bn_dxv(LOADV(dy, base + i), LOADV(x, base + i), k),
                  bn_dx1(LOAD1(dy, base + i), LOAD1(x, base + i), k));
            for (; i < I; ++i)
                STORE1(bn_dx1(LOAD1(dy, base + i), LOAD1(x, base + i), k), dx, base + i);
        } else {
            WALKV(i, I, dx + base, stream, NOPF, NOPF, bn_dxv(LOADV(dy, base + i), (realv)k.x, k),
                  bn_dx1(LOAD1(dy, base + i), k.x, k));
            for (; i < I; ++i)
                STORE1(bn_dx1(LOAD1(dy, base + i), k.x, k), dx, base + i);
        }
        c = c + 1 == C ? 0 : c + 1;
    }
    NT_FENCE(stream);
}

/* ---- channels first, CPUs, small maps (I of a few hundred values at most):
 * a work-item owns cw consecutive channels and walks their slice in memory
 * order, row by row: at each o the cw runs of I values lie side by side, one
 * contiguous stretch of cw*I values. bn_fwd_fused's walk by channel reads
 * runs of I values C*I apart, a new stream for the prefetchers every run and
 * cache lines shared with the next channel's work-item; on (32,2048,7,7)
 * that held it to a quarter of a copy. Two walks: the statistics (BF_SHIFT
 * below; without it, the corrected two-pass per channel, sums then
 * deviations from the mean, in two walks), then y; the host sizes cw so
 * that the block (O*cw*I values) stays in L2 after the first. The
 * per-channel state lives in local memory (a work-group is one
 * work-item). */
#ifndef BF_MAXC
#define BF_MAXC 128
#endif
/* Read-ahead of the first walk: the block's next row, ahead of its use. */
#ifndef BF_PF
#define BF_PF 1
#endif
#define BF_LINE (64 / (uint)sizeof(store_t))
/* bn_fwd_bfused's per-channel sums go by vectors across the rows, one
 * horizontal sum per channel rather than per run: (32,2048,7,7) 1.10 -
 * 1.15x, (32,512,8,8) 1.18x. The backward's compensated sums the same way
 * with vector Neumaier pairs ran 0.74 - 0.94x; plain vector sums across
 * blocks of rows of about SPAN values, compensated per block, run
 * (32,512,7,7) 1.2x, (32,2048,7,7) 1.07 - 1.11x. A/B: -DBF_VACC=0. Each
 * kernel's arrays of BF_MAXC vectors take 16 KB of local memory (32 KB in
 * fp64): only on PoCL (CLNORM_VCAST), whose CPU devices have plenty and
 * are the only ones to run the block walk; on another device they could
 * fail the whole program's build. */
#ifndef BF_VACC
#ifdef CLNORM_VCAST
#define BF_VACC 1
#else
#define BF_VACC 0
#endif
#endif

/* The run of I values at p added to s by vectors (returned) and its tail
 * to *t; bf_sum, their total. */
inline realv bf_sumv(__global const store_t *p, uint I, realv s, real *t)
{
    uint i = 0;
    for (; i + SPAN_VEC <= I; i += SPAN_VEC)
        s += LOADV(p, i);
    for (; i < I; ++i)
        *t += LOAD1(p, i);
    return s;
}

inline real bf_sum(__global const store_t *p, uint I)
{
    real t = 0;
    return sumv(bf_sumv(p, I, (realv)0, &t)) + t;
}

/* Deviations from m of the run at p added to d1 (returned) and their
 * squares to *d2, by vectors, the tail's to *t; bf_dev, their totals. */
inline realv bf_devv(__global const store_t *p, uint I, real m, realv d1, realv *d2, real2 *t)
{
    uint i = 0;
    for (; i + SPAN_VEC <= I; i += SPAN_VEC) {
        realv d = LOADV(p, i) - m;
        d1 += d;
        *d2 = fma(d, d, *d2);
    }
    for (; i < I; ++i) {
        real d = LOAD1(p, i) - m;
        t->x += d;
        t->y = fma(d, d, t->y);
    }
    return d1;
}

inline real2 bf_dev(__global const store_t *p, uint I, real m)
{
    realv d2 = (realv)0;
    real2 t  = (real2)0;
    realv d1 = bf_devv(p, I, m, (realv)0, &d2, &t);
    return (real2)(sumv(d1) + t.x, sumv(d2) + t.y);
}

/* BF_SHIFT: bn_fwd_bfused's statistics in one walk over memory, the
 * deviations about the channel's mean so far (stat_span_next's argument,
 * with chunks of rows each no longer than the rows before it), in place of
 * a sums walk and a deviations walk (the second from L2). A/B:
 * -DBF_SHIFT=0. */
#ifndef BF_SHIFT
#define BF_SHIFT 1
#endif

inline void bf_prefetch(__global const store_t *p, ulong n)
{
#if BF_PF
    for (ulong j = 0; j < n; j += BF_LINE)
        PREFETCH_R(p, j);
#endif
}

__kernel void bn_fwd_bfused(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            uint O, uint C, uint I, uint cw, real M, real eps, real f, real bessel,
                            __global const real *gamma, ulong goff,
                            __global const real *beta, ulong boff,
                            __global real *smean, ulong smoff,
                            __global real *sinv, ulong sioff,
                            __global real *rmean, ulong rmoff,
                            __global real *rvar, ulong rvoff, int stream)
{
    __local real4 k[BF_MAXC];
    uint          c0 = get_global_id(0) * cw;
    if (c0 >= C)
        return;
    uint  n    = min(cw, C - c0);
    ulong rs   = (ulong)C * I, nI = (ulong)n * I;
    real  rn   = (real)O * (real)I, ri = (real)1 / rn;
    x += xoff + (ulong)c0 * I;
    y += yoff + (ulong)c0 * I;
    for (uint c = 0; c < n; ++c)
        k[c] = (real4)0;
#if BF_VACC && BF_SHIFT
    /* one walk: the first row's runs by two passes (from L1), then chunks
     * of rows, each no longer than the rows before it, in one pass about
     * the channel's mean so far, merged at the chunk's end */
    __local realv va[BF_MAXC], vb[BF_MAXC];
    __local real2 vt[BF_MAXC];
    if (O > 1)
        bf_prefetch(x + rs, nI);
    for (uint c = 0; c < n; ++c) {
        __global const store_t *run = x + (ulong)c * I;
        real                    m   = bf_sum(run, I) * ((real)1 / (real)I); /* a shift: corrected below */
        real2                   d   = bf_dev(run, I, m);
        k[c]  = (real4)((real)I, m, d.x / (real)I, nonneg(d.y - d.x * d.x / (real)I));
        va[c] = vb[c] = (realv)0;
        vt[c] = (real2)0;
    }
    for (uint a = 1; a < O;) {
        uint b = min(O, 2 * a);
        for (uint o = a; o < b; ++o) {
            __global const store_t *row = x + o * rs;
            if (o + 1 < O)
                bf_prefetch(row + rs, nI);
            for (uint c = 0; c < n; ++c) {
                realv d2 = vb[c];
                real2 t  = vt[c];
                va[c]    = bf_devv(row + (ulong)c * I, I, k[c].y, va[c], &d2, &t);
                vb[c]    = d2;
                vt[c]    = t;
            }
        }
        real cn = (real)(b - a) * (real)I, ci = (real)1 / cn;
        for (uint c = 0; c < n; ++c) {
            real ds = sumv(va[c]) + vt[c].x, q = sumv(vb[c]) + vt[c].y - ds * ds * ci;
            k[c]    = stat_merge(k[c], (real4)(cn, k[c].y, ds * ci, nonneg(q)));
            va[c] = vb[c] = (realv)0;
            vt[c]         = (real2)0;
        }
        a = b;
    }
    for (uint c = 0; c < n; ++c)
        k[c] = FWD_COEF(k[c], c0 + c, 1);
#elif BF_VACC
    __local realv va[BF_MAXC], vb[BF_MAXC];
    for (uint c = 0; c < n; ++c)
        va[c] = (realv)0;
    for (uint o = 0; o < O; ++o) {
        __global const store_t *row = x + o * rs;
        if (o + 1 < O)
            bf_prefetch(row + rs, nI);
        for (uint c = 0; c < n; ++c) {
            real t = 0;
            va[c]  = bf_sumv(row + (ulong)c * I, I, va[c], &t);
            k[c].x += t;
        }
    }
    for (uint c = 0; c < n; ++c) {
        k[c].x = (sumv(va[c]) + k[c].x) * ri;
        va[c]  = (realv)0;
        vb[c]  = (realv)0;
    }
    for (uint o = 0; o < O; ++o) {
        __global const store_t *row = x + o * rs;
        for (uint c = 0; c < n; ++c) {
            realv d2 = vb[c];
            real2 t  = (real2)0;
            va[c]    = bf_devv(row + (ulong)c * I, I, k[c].x, va[c], &d2, &t);
            vb[c]    = d2;
            k[c].yz += t;
        }
    }
    for (uint c = 0; c < n; ++c) {
        real ds = sumv(va[c]) + k[c].y, q = sumv(vb[c]) + k[c].z;
        k[c]    = FWD_COEF((real4)(rn, k[c].x, ds * ri, nonneg(q - ds * ds * ri)), c0 + c, 1);
    }
#else
    for (uint o = 0; o < O; ++o) {
        __global const store_t *row = x + o * rs;
        if (o + 1 < O)
            bf_prefetch(row + rs, nI);
        for (uint c = 0; c < n; ++c)
            k[c].x += bf_sum(row + (ulong)c * I, I);
    }
    for (uint c = 0; c < n; ++c)
        k[c].x *= ri;
    for (uint o = 0; o < O; ++o) {
        __global const store_t *row = x + o * rs;
        for (uint c = 0; c < n; ++c)
            k[c].yz += bf_dev(row + (ulong)c * I, I, k[c].x);
    }
    for (uint c = 0; c < n; ++c) {
        real ds = k[c].y;
        k[c]    = FWD_COEF((real4)(rn, k[c].x, ds * ri, nonneg(k[c].z - ds * ds * ri)), c0 + c, 1);
    }
#endif
    for (uint r = 0; r < O; ++r) {
        ulong base = (ulong)SECOND_ROW(r) * rs;
        for (uint c = 0; c < n; ++c, base += I) {
            real4 kc = k[c];
            uint  i  = 0;
            WALKV(i, I, y + base, stream, NOPF, NOPF, bn_applyv(LOADV(x, base + i), kc),
                  bn_apply1(LOAD1(x, base + i), kc));
            for (; i < I; ++i)
                STORE1(bn_apply1(LOAD1(x, base + i), kc), y, base + i);
        }
    }
    NT_FENCE(stream);
}

/* Backward of the same walk: the gradient sums of each channel (compensated
 * across rows, as bn_bwd_fused), then dx, both in memory order. */
inline void bf_prefetch2(__global const store_t *p, __global const store_t *q, ulong n)
{
    bf_prefetch(p, n);
    bf_prefetch(q, n);
}

/* The gradient sums of a run of I values: dy's added to the vector sum a,
 * dy*(x - m)'s to b, the tail's to t; with out (frozen), out = kz*dy (nt:
 * streaming stores, out vector-aligned). */
inline void bf_bwd_run(__global const store_t *dy, __global const store_t *x, uint I, real m, realv *a,
                       realv *b, real2 *t, __global store_t *out, real kz, int nt)
{
    uint i = 0;
    for (; i + SPAN_VEC <= I; i += SPAN_VEC) {
        realv d = LOADV(dy, i);
        if (out)
            FROZEN_STOREV(kz * d, out, i, nt);
        *a += d;
        *b = fma(d, LOADV(x, i) - m, *b);
    }
    for (; i < I; ++i) {
        real d = LOAD1(dy, i);
        if (out)
            STORE1(kz * d, out, i);
        t->x += d;
        t->y = fma(d, LOAD1(x, i) - m, t->y);
    }
}

/* bn_bwd_bfused's gradient sums of a block of n channels into k (va, vb,
 * vt: the work-item's block sums); with fdx (frozen), fdx = kz*dy in the
 * same walk. The kernel passes a constant 0 for fdx outside the frozen
 * case, so that copy has no test of it in the loop (with the test, (32,512,
 * 7,7) backward ran 3 - 4 % slower). */
inline void bf_bwd_sums(__global const store_t *x, __global const store_t *dy, uint O, uint I, ulong rs,
                        ulong nI, uint n, __global const real *mean, __local real4 *k, __local realv *va,
                        __local realv *vb, __local real2 *vt, __global store_t *fdx, __local const real *kz,
                        int fnt)
{
#if BF_VACC
    /* runs of up to SPAN/4 values: plain vector sums per channel across
     * blocks of rows of about SPAN values, one horizontal sum and one
     * compensated add per block (as bn_bwd_fused's short rows), in place of
     * both per run */
    if (I <= SPAN / 4) {
        for (uint c = 0; c < n; ++c) {
            va[c] = vb[c] = (realv)0;
            vt[c]         = (real2)0;
        }
        uint per = max((uint)1, (uint)SPAN / I), left = per;
        for (uint o = 0; o < O; ++o) {
            ulong base = o * rs;
            if (o + 1 < O)
                bf_prefetch2(dy + base + rs, x + base + rs, nI);
            for (uint c = 0; c < n; ++c, base += I) {
                realv a = va[c], b = vb[c];
                real2 t = vt[c];
                bf_bwd_run(dy + base, x + base, I, mean[c], &a, &b, &t, fdx ? fdx + base : 0, kz[c], fnt);
                va[c] = a;
                vb[c] = b;
                vt[c] = t;
            }
            if (--left == 0 || o + 1 == O) {
                for (uint c = 0; c < n; ++c) {
                    k[c]  = sum2_add(k[c], (real2)(sumv(va[c]) + vt[c].x, sumv(vb[c]) + vt[c].y));
                    va[c] = vb[c] = (realv)0;
                    vt[c]         = (real2)0;
                }
                left = per;
            }
        }
    } else
#endif
    for (uint o = 0; o < O; ++o) {
        ulong base = o * rs;
        if (o + 1 < O)
            bf_prefetch2(dy + base + rs, x + base + rs, nI);
        for (uint c = 0; c < n; ++c, base += I) {
            realv a = (realv)0, b = (realv)0;
            real2 t = (real2)0;
            bf_bwd_run(dy + base, x + base, I, mean[c], &a, &b, &t, fdx ? fdx + base : 0, kz[c], fnt);
            k[c] = sum2_add(k[c], (real2)(sumv(a) + t.x, sumv(b) + t.y));
        }
    }
}

__kernel void bn_bwd_bfused(__global const store_t *x, ulong xoff, __global const store_t *dy,
                            ulong dyoff, __global store_t *dx, ulong dxoff, uint O, uint C, uint I,
                            uint cw, real M, int frozen, real eps,
                            __global const real *mean, ulong moff,
                            __global const real *inv_src, ulong ioff,
                            __global const real *gamma, ulong goff,
                            __global real *dgamma, ulong dgoff,
                            __global real *dbeta, ulong dboff, int stream)
{
    __local real4 k[BF_MAXC];
    uint          c0 = get_global_id(0) * cw;
    if (c0 >= C)
        return;
    uint  n  = min(cw, C - c0);
    ulong rs = (ulong)C * I, nI = (ulong)n * I;
    ulong sh = (ulong)c0 * I;
    x += xoff + sh;
    dy += dyoff + sh;
    dx += dxoff + sh;
    mean += moff + c0;
    for (uint c = 0; c < n; ++c)
        k[c] = (real4)0;
    /* frozen: dx in the sums walk, as bn_bwd_fused (A/B: -DFROZEN_ONE_WALK=0) */
    int               fnt = HAVE_NT && stream;
    __global store_t *fdx = frozen && FROZEN_ONE_WALK &&
                                    (!fnt || (I % SPAN_VEC == 0 && ((ulong)dx & (sizeof(realv) - 1)) == 0))
                                ? dx
                                : 0;
    __local real kz[BF_MAXC];
    for (uint c = 0; fdx && c < n; ++c)
        kz[c] = BWD_COEF((real4)0, c0 + c, mean[c], 0).z;
    __local realv va[BF_MAXC], vb[BF_MAXC];
    __local real2 vt[BF_MAXC];
    if (fdx)
        bf_bwd_sums(x, dy, O, I, rs, nI, n, mean, k, va, vb, vt, fdx, kz, fnt);
    else
        bf_bwd_sums(x, dy, O, I, rs, nI, n, mean, k, va, vb, vt, 0, kz, 0);
    for (uint c = 0; c < n; ++c)
        k[c] = BWD_COEF(k[c], c0 + c, mean[c], 1);
    uint walk = fdx ? 0 : O;
    for (uint r = 0; r < walk; ++r) {
        ulong base = (ulong)SECOND_ROW(r) * rs;
        for (uint c = 0; c < n; ++c, base += I) {
            real4 kc = k[c];
            uint  i  = 0;
            if (frozen) {
                WALKV(i, I, dx + base, stream, NOPF, NOPF, kc.z * LOADV(dy, base + i),
                      kc.z * LOAD1(dy, base + i));
                for (; i < I; ++i)
                    STORE1(kc.z * LOAD1(dy, base + i), dx, base + i);
                continue;
            }
            WALKV(i, I, dx + base, stream, NOPF, NOPF,
                  bn_dxv(LOADV(dy, base + i), LOADV(x, base + i), kc),
                  bn_dx1(LOAD1(dy, base + i), LOAD1(x, base + i), kc));
            for (; i < I; ++i)
                STORE1(bn_dx1(LOAD1(dy, base + i), LOAD1(x, base + i), kc), dx, base + i);
        }
    }
    NT_FENCE(stream);
}

/* ---- channels last, CPUs, fused: a work-item owns cw (<= 64) whole
 * channels (columns; C % 16 == 0; the last work-item may have fewer) and
 * walks all O rows of them twice: the statistics by blocks of COL_BLOCK
 * rows with the running state in registers (as bn_stats_cstream),
 * then y in reverse row order while the block of columns is still in cache.
 * For per-activation and channels-last tensors whose column block fits the
 * cache (the host checks). */
#ifndef BN_CF_CHANNELS
#define BN_CF_CHANNELS 64
#endif
#define CF_MAXV (BN_CF_CHANNELS / SPAN_VEC)

/* Read-ahead of the one-kernel channels-last walks: CF_RA blocks of rows
 * ahead (prefetchers follow strided column blocks poorly). */
#ifndef CF_RA
#define CF_RA 2
#endif
/* One block of COL_BLOCK rows from row o of the statistics walk of the
 * channels-last fused kernels: the nv vectors of columns from x (row
 * stride C, O rows), merged into the running (hi + lo, m2) of n values,
 * read ahead CF_RA blocks. The first block by two passes; later ones by
 * one about the running hi, as bn_stats_cstream's panels and
 * stat_span_next (training forward on the 2-core EPYC: per-activation
 * (512,4096) 1.16 - 1.28x, channels last (8,14,14,256) 1.10 - 1.14x and
 * (16,7,7,2048) 1.15 - 1.22x). A/B: -DCF_SHIFT=0. */
#ifndef CF_SHIFT
#define CF_SHIFT 1
#endif
#define CF_STATS_STEP(x, o, O, C, nv, hi, lo, m2, n)                                                    \
    do {                                                                                                \
        uint nb = min((uint)COL_BLOCK, O - o);                                                          \
        real rn = (real)nb, nn = n + rn, wb = rn / nn, wa = n * wb, ri = (real)1 / rn;                  \
        __global const store_t *p = x + (ulong)o * C;                                                   \
        __global const store_t *pn =                                                                    \
            o + (CF_RA + 1) * COL_BLOCK <= O ? p + (ulong)CF_RA * COL_BLOCK * C : NOPF;                 \
        _Pragma("unroll")                                                                               \
        for (uint v = 0; v < CF_MAXV; ++v) {                                                            \
            if (v < nv) {                                                                               \
                uint  j = v * SPAN_VEC;                                                                 \
                /* the first block: a sum pass for the shift, read ahead;                               \
                 * later ones: the running hi, read ahead in the one pass */                            \
                int   sh = CF_SHIFT && n != (real)0;                                                    \
                realv m  = sh ? hi[v] : (realv)0, d1 = (realv)0, d2 = (realv)0;                         \
                if (!sh) {                                                                              \
                    for (uint r = 0; r < nb; ++r) {                                                     \
                        PREFETCH_R(pn, (ulong)r * C + j);                                               \
                        m += LOADV(p, (ulong)r * C + j);                                                \
                    }                                                                                   \
                    m *= ri;                                                                            \
                }                                                                                       \
                for (uint r = 0; r < nb; ++r) {                                                         \
                    if (sh)                                                                             \
                        PREFETCH_R(pn, (ulong)r * C + j);                                               \
                    realv d = LOADV(p, (ulong)r * C + j) - m;                                           \
                    d1 += d;                                                                            \
                    d2 = fma(d, d, d2);                                                                 \
                }                                                                                       \
                realv blo = d1 * ri, bm2 = nonnegv(d2 - d1 * d1 * ri);                                  \
                if (n == (real)0) {                                                                     \
                    hi[v] = m;                                                                          \
                    lo[v] = blo;                                                                        \
                    m2[v] = bm2;                                                                        \
                } else {                                                                                \
                    realv delta = (m - hi[v]) + (blo - lo[v]);                                          \
                    m2[v] += bm2 + delta * delta * wa;                                                  \
                    realv t = lo[v] + delta * wb, sm = hi[v] + t, bb = sm - hi[v];                      \
                    lo[v]   = (hi[v] - (sm - bb)) + (t - bb);                                           \
                    hi[v]   = sm;                                                                       \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
        n = nn;                                                                                         \
    } while (0)

/* The whole walk, block after block. */
#define CF_STATS_WALK(x, O, C, nv, hi, lo, m2)                                                          \
    do {                                                                                                \
        real n_ = 0;                                                                                    \
        for (uint o_ = 0; o_ < O; o_ += COL_BLOCK)                                                      \
            CF_STATS_STEP(x, o_, O, C, nv, hi, lo, m2, n_);                                             \
    } while (0)

#ifndef CF_REVERSE
#define CF_REVERSE 1
#endif
/* The output walk of the channels-last fused kernels: out = VAL (an
 * expression of the element index e and the vector v) over the nv vectors
 * of columns, rows in reverse order (the last read first: still cached). */
#define CF_OUT_WALK(out, O, C, nv, stream, VAL)                                                         \
    do {                                                                                                \
        int nt = HAVE_NT && (stream) && ((ulong)(out) & (sizeof(realv) - 1)) == 0;                      \
        for (uint r = 0; r < O; ++r) {                                                                  \
            ulong base = (ulong)(CF_REVERSE ? O - 1 - r : r) * C;                                       \
            _Pragma("unroll") for (uint v = 0; v < CF_MAXV; ++v)                                        \
            {                                                                                           \
                if (v < nv) {                                                                           \
                    ulong e   = base + v * SPAN_VEC;                                                    \
                    realv val = VAL;                                                                    \
                    if (nt)                                                                             \
                        STOREV_NT(val, out, e);                                                         \
                    else                                                                                \
                        STOREV(val, out, e);                                                            \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
        NT_FENCE(nt);                                                                                   \
    } while (0)

/* The backward sums walk of the channels-last fused kernels: per column,
 * sum dy into s1/c1 and sum dy*(x - m) into s2/c2, plain over a block of
 * COL_BLOCK rows and compensated across blocks, read ahead as above. */
#define CF_SUMS_WALK(x, dy, O, C, nv, m, s1, c1, s2, c2)                                                \
    do {                                                                                                \
        for (uint o = 0; o < O; o += COL_BLOCK) {                                                       \
            uint  nb   = min((uint)COL_BLOCK, O - o);                                                   \
            ulong base = (ulong)o * C;                                                                  \
            int   pf   = o + (CF_RA + 1) * COL_BLOCK <= O;                                              \
            __global const store_t *pdy = pf ? dy + (ulong)CF_RA * COL_BLOCK * C : NOPF;                \
            __global const store_t *px  = pf ? x + (ulong)CF_RA * COL_BLOCK * C : NOPF;                 \
            _Pragma("unroll") for (uint v = 0; v < CF_MAXV; ++v)                                        \
            {                                                                                           \
                if (v < nv) {                                                                           \
                    realv a = (realv)0, b = (realv)0;                                                   \
                    for (uint r = 0; r < nb; ++r) {                                                     \
                        ulong e = base + (ulong)r * C + v * SPAN_VEC;                                   \
                        PREFETCH_R(pdy, e);                                                             \
                        PREFETCH_R(px, e);                                                              \
                        realv d = LOADV(dy, e);                                                         \
                        a += d;                                                                         \
                        b = fma(d, LOADV(x, e) - m[v], b);                                              \
                    }                                                                                   \
                    sumv_add(&s1[v], &c1[v], a);                                                        \
                    sumv_add(&s2[v], &c2[v], b);                                                        \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    } while (0)

__kernel void bn_fwd_cfused(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            uint O, uint C, uint cw, real M, real eps, real f, real bessel,
                            __global const real *gamma, ulong goff,
                            __global const real *beta, ulong boff,
                            __global real *smean, ulong smoff,
                            __global real *sinv, ulong sioff,
                            __global real *rmean, ulong rmoff,
                            __global real *rvar, ulong rvoff, int stream)
{
    uint j0 = get_global_id(0) * cw;
    if (j0 >= C)
        return;
    uint nv = min(cw, C - j0) / SPAN_VEC; /* vectors of channels this work-item owns */
    x += xoff + j0;
    y += yoff + j0;
    realv hi[CF_MAXV], lo[CF_MAXV], m2[CF_MAXV];
    CF_STATS_WALK(x, O, C, nv, hi, lo, m2);
    realv sc[CF_MAXV], sh[CF_MAXV];
#pragma unroll
    for (uint v = 0; v < CF_MAXV; ++v) {
        if (v < nv) {
            uint  j   = j0 + v * SPAN_VEC;
            realv var = m2[v] / M, mean = hi[v] + lo[v];
            realv inv = (realv)1 / sqrt(var + eps);
            sc[v]     = (gamma ? VLOADV(gamma + goff + j) : (realv)1) * inv;
            sh[v]     = beta ? VLOADV(beta + boff + j) : (realv)0;
            if (smean)
                VSTOREV(mean, smean + smoff + j);
            if (sinv)
                VSTOREV(inv, sinv + sioff + j);
            if (rmean)
                VSTOREV(((real)1 - f) * VLOADV(rmean + rmoff + j) + f * mean, rmean + rmoff + j);
            if (rvar)
                VSTOREV(((real)1 - f) * VLOADV(rvar + rvoff + j) + f * (var * bessel), rvar + rvoff + j);
        }
    }
    CF_OUT_WALK(y, O, C, nv, stream, ((LOADV(x, e) - hi[v]) - lo[v]) * sc[v] + sh[v]);
}

/* The backward takes blocks of up to BN_CF_BWD_CHANNELS channels: on rows
 * of 2048 channels or more (the host's choice) 128 channels, 512 bytes of
 * every row, against 64 ran 1.05 - 1.4x (per-activation (512,4096) and
 * (256,8192), (32,7,7,2048), (16,7,7,2048)); the forward did not gain. */
#ifndef BN_CF_BWD_CHANNELS
#define BN_CF_BWD_CHANNELS 128
#endif
#undef CF_MAXV
#define CF_MAXV (BN_CF_BWD_CHANNELS / SPAN_VEC)

/* Backward as bn_fwd_cfused walks: sum dy and sum dy*(x - mean) per channel
 * (plain over a block of COL_BLOCK rows, compensated across blocks), then dx
 * in reverse row order while cache-hot. frozen: the running statistics, dx
 * = gamma*invstd*dy. */
__kernel void bn_bwd_cfused(__global const store_t *x, ulong xoff, __global const store_t *dy,
                            ulong dyoff, __global store_t *dx, ulong dxoff, uint O, uint C, uint cw,
                            real M, int frozen, real eps,
                            __global const real *mean, ulong moff,
                            __global const real *inv_src, ulong ioff,
                            __global const real *gamma, ulong goff,
                            __global real *dgamma, ulong dgoff,
                            __global real *dbeta, ulong dboff, int stream)
{
    uint j0 = get_global_id(0) * cw;
    if (j0 >= C)
        return;
    uint nv = min(cw, C - j0) / SPAN_VEC; /* vectors of channels this work-item owns */
    x += xoff + j0;
    dy += dyoff + j0;
    dx += dxoff + j0;
    realv m[CF_MAXV], s1[CF_MAXV], c1[CF_MAXV], s2[CF_MAXV], c2[CF_MAXV];
#pragma unroll
    for (uint v = 0; v < CF_MAXV; ++v) {
        m[v]  = v < nv ? VLOADV(mean + moff + j0 + v * SPAN_VEC) : (realv)0;
        s1[v] = c1[v] = s2[v] = c2[v] = (realv)0;
    }
    CF_SUMS_WALK(x, dy, O, C, nv, m, s1, c1, s2, c2);
    realv kx[CF_MAXV], ky[CF_MAXV], kz[CF_MAXV], kw[CF_MAXV];
#pragma unroll
    for (uint v = 0; v < CF_MAXV; ++v) {
        if (v < nv) {
            uint  j    = j0 + v * SPAN_VEC;
            realv sdy  = s1[v] + c1[v], sdxm = s2[v] + c2[v];
            realv is   = VLOADV(inv_src + ioff + j);
            realv inv  = frozen ? (realv)1 / sqrt(is + eps) : is;
            realv g    = gamma ? VLOADV(gamma + goff + j) : (realv)1;
            realv dg   = inv * sdxm;
            if (dgamma)
                VSTOREV(dg, dgamma + dgoff + j);
            if (dbeta)
                VSTOREV(sdy, dbeta + dboff + j);
            kx[v] = m[v];
            kz[v] = g * inv;
            ky[v] = frozen ? (realv)0 : inv * dg / M;
            kw[v] = frozen ? (realv)0 : sdy / M;
        }
    }
    CF_OUT_WALK(dx, O, C, nv, stream,
                frozen ? kz[v] * LOADV(dy, e)
                       : kz[v] * ((LOADV(dy, e) - kw[v]) - (LOADV(x, e) - kx[v]) * ky[v]));
}
#undef CF_MAXV
#define CF_MAXV (BN_CF_CHANNELS / SPAN_VEC)

/* ---- group norm channels last, CPUs, fused: work-item (n, b) owns channels
 * [b*cw, b*cw + cw) of sample n, whole groups (cw a multiple of cpg and of
 * SPAN_VEC that divides C), and walks the sample's Sp rows of them twice as
 * bn_fwd_cfused and bn_bwd_cfused do: a block of Sp*cw values that stays in
 * cache, where the column streams read the tensor twice from memory (the
 * host checks its size). A block has up to GN_CF_CHANNELS channels: 80,
 * so that groups of 10, 20 and 40 (32 groups of 320, 640 and 1280
 * channels, the diffusion U-Nets') fit whole vectors; the shared walks
 * above take CF_MAXV vectors, redefined for these kernels. */
#ifndef GN_CF_CHANNELS
#define GN_CF_CHANNELS 80
#endif
#undef CF_MAXV
#define CF_MAXV (GN_CF_CHANNELS / SPAN_VEC)

/* Vectors of channels to and from private arrays of reals: lane i of vector
 * v is channel v*SPAN_VEC + i (the walks keep the vectors in registers). */
#define CF_X_(f, n) f##n
#define CF_X(f, n)  CF_X_(f, n)
#define CF_TO_LANES(a, t)                          \
    _Pragma("unroll") for (uint v = 0; v < CF_MAXV; ++v) \
        CF_X(vstore, SPAN_VEC)((a)[v], v, (t))
#define CF_FROM_LANES(t, a)                        \
    _Pragma("unroll") for (uint v = 0; v < CF_MAXV; ++v) \
        (a)[v] = CF_X(vload, SPAN_VEC)(v, (t))

/* Scalar Neumaier step. */
inline void sum1_add(real *s, real *c, real v)
{
    real t = *s + v;
    *c += fabs(*s) >= fabs(v) ? (*s - t) + v : (v - t) + *s;
    *s = t;
}

/* Forward coefficients of block at (sample n, first channel j0): each
 * channel's mean (hi + lo) and M2 over its Sp values merge exactly into its
 * group's (equal counts: M2 = sum M2_c + Sp*sum (m_c - m)^2, the deviations
 * taken about the mean of the channels' hi parts, then corrected by their
 * own mean); writes the group's mean and inv, and returns per channel
 * y = ((x - kh) - kl)*ks + sh. */
inline void gn_cf_coef(const realv *hi, const realv *lo, const realv *m2, uint n, uint j0, uint Sp,
                       uint C, uint cpg, uint cw, real eps, __global const real *gamma, ulong goff,
                       __global const real *beta, ulong boff, __global real *mean, ulong moff,
                       __global real *inv, ulong ioff, realv *kh, realv *kl, realv *ks, realv *sh)
{
    real h[CF_MAXV * SPAN_VEC], l[CF_MAXV * SPAN_VEC], q[CF_MAXV * SPAN_VEC];
    CF_TO_LANES(hi, h);
    CF_TO_LANES(lo, l);
    CF_TO_LANES(m2, q);
    real rs = (real)Sp, rc = (real)cpg;
    for (uint c0 = 0; c0 < cw; c0 += cpg) {
        real gh = 0, gl = 0, M2 = 0;
        for (uint i = c0; i < c0 + cpg; ++i)
            gh += h[i];
        gh /= rc;
        for (uint i = c0; i < c0 + cpg; ++i)
            gl += (h[i] - gh) + l[i];
        gl /= rc;
        for (uint i = c0; i < c0 + cpg; ++i) {
            real e = ((h[i] - gh) + l[i]) - gl;
            M2 += q[i] + rs * e * e;
        }
        real  iv = (real)1 / sqrt(M2 / (rs * rc) + eps);
        ulong r  = (ulong)n * (C / cpg) + (j0 + c0) / cpg;
        if (mean)
            mean[moff + r] = gh + gl;
        if (inv)
            inv[ioff + r] = iv;
        for (uint i = c0; i < c0 + cpg; ++i) {
            h[i] = gh;
            l[i] = gl;
            q[i] = iv * (gamma ? gamma[goff + j0 + i] : (real)1);
        }
    }
    CF_FROM_LANES(h, kh);
    CF_FROM_LANES(l, kl);
    CF_FROM_LANES(q, ks);
    uint nv = cw / SPAN_VEC;
#pragma unroll
    for (uint v = 0; v < CF_MAXV; ++v)
        sh[v] = v < nv && beta ? VLOADV(beta + boff + j0 + v * SPAN_VEC) : (realv)0;
}

/* Forward: a work-item takes nbw blocks in a row (block b: sample b / (C /
 * cw), channels from (b % (C/cw))*cw). With more than one, it reads the next
 * block's rows for their statistics while it writes this block's y, a
 * block of COL_BLOCK rows of each in turn, so that reads from memory and
 * streaming writes overlap (y in row order then: the lines of this block
 * it has done with make room for the next one's); the statistics are the
 * same walk, so the same bits. The last block's y goes in reverse. */
__kernel void gn_fwd_cfused(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            uint N, uint Sp, uint C, uint cpg, uint cw, uint nbw, real eps,
                            __global const real *gamma, ulong goff,
                            __global const real *beta, ulong boff,
                            __global real *mean, ulong moff,
                            __global real *inv, ulong ioff, int stream)
{
    uint nbk = C / cw, B = N * nbk, b0 = get_global_id(0) * nbw;
    if (b0 >= B || cw > CF_MAXV * SPAN_VEC)
        return;
    uint b1 = min(B, b0 + nbw), nv = cw / SPAN_VEC;
    x += xoff;
    y += yoff;
    int nt = HAVE_NT && stream && ((ulong)y & (sizeof(realv) - 1)) == 0;
#define GN_CF_AT(b) ((ulong)((b) / nbk) * Sp * C + ((b) % nbk) * cw)
    realv hi[CF_MAXV], lo[CF_MAXV], m2[CF_MAXV];
    realv kh[CF_MAXV], kl[CF_MAXV], ks[CF_MAXV], sh[CF_MAXV];
    CF_STATS_WALK(x + GN_CF_AT(b0), Sp, C, nv, hi, lo, m2);
    for (uint b = b0; b < b1; ++b) {
        ulong at = GN_CF_AT(b);
        __global const store_t *xb = x + at;
        __global store_t       *yb = y + at;
        gn_cf_coef(hi, lo, m2, b / nbk, (b % nbk) * cw, Sp, C, cpg, cw, eps, gamma, goff, beta, boff, mean,
                   moff, inv, ioff, kh, kl, ks, sh);
        if (b + 1 == b1) {
            CF_OUT_WALK(yb, Sp, C, nv, stream, ((LOADV(xb, e) - kh[v]) - kl[v]) * ks[v] + sh[v]);
            break;
        }
        __global const store_t *xn = x + GN_CF_AT(b + 1);
        real                    n  = 0;
        for (uint o = 0; o < Sp; o += COL_BLOCK) {
            uint o1 = min(Sp, o + COL_BLOCK);
            for (uint r = o; r < o1; ++r) {
#pragma unroll
                for (uint v = 0; v < CF_MAXV; ++v) {
                    if (v < nv) {
                        ulong e   = (ulong)r * C + v * SPAN_VEC;
                        realv val = ((LOADV(xb, e) - kh[v]) - kl[v]) * ks[v] + sh[v];
                        if (nt)
                            STOREV_NT(val, yb, e);
                        else
                            STOREV(val, yb, e);
                    }
                }
            }
            CF_STATS_STEP(xn, o, Sp, C, nv, hi, lo, m2, n);
        }
    }
#undef GN_CF_AT
    NT_FENCE(nt);
}

/* Backward: per channel sx = sum dy and sy = sum dy*(x - m) about its
 * group's saved mean m; per group the gamma-weighted sums give dx = ka*dy -
 * kw - (x - m)*ky, ka = gamma*inv, kw = inv*sum(g*sx)/n, ky =
 * inv^3*sum(g*sy)/n; tab (when dgamma or dbeta is wanted) takes (inv*sy,
 * sx) of every (n, c) for the merge over samples. */
__kernel void gn_bwd_cfused(__global const store_t *x, ulong xoff, __global const store_t *dy,
                            ulong dyoff, __global store_t *dx, ulong dxoff, uint N, uint Sp, uint C,
                            uint cpg, uint cw, __global const real *gamma, ulong goff,
                            __global const real *mean, ulong moff,
                            __global const real *inv, ulong ioff,
                            __global real4 *tab, ulong tofs, int stream)
{
    uint nbk = C / cw, id = get_global_id(0), n = id / nbk;
    if (n >= N || cw > CF_MAXV * SPAN_VEC)
        return; /* (the host's width never exceeds the arrays) */
    uint  j0 = (id % nbk) * cw, nv = cw / SPAN_VEC, G = C / cpg;
    ulong at = (ulong)n * Sp * C + j0;
    x += xoff + at;
    dy += dyoff + at;
    dx += dxoff + at;
    realv m[CF_MAXV], s1[CF_MAXV], c1[CF_MAXV], s2[CF_MAXV], c2[CF_MAXV];
    real mp[CF_MAXV * SPAN_VEC];
    for (uint i = 0; i < CF_MAXV * SPAN_VEC; ++i)
        mp[i] = i < cw ? mean[moff + (ulong)n * G + (j0 + i) / cpg] : (real)0;
    CF_FROM_LANES(mp, m);
#pragma unroll
    for (uint v = 0; v < CF_MAXV; ++v)
        s1[v] = c1[v] = s2[v] = c2[v] = (realv)0;
    CF_SUMS_WALK(x, dy, Sp, C, nv, m, s1, c1, s2, c2);
    /* per channel; then s1 becomes ka, s2 ky, c1 kw */
    real a[CF_MAXV * SPAN_VEC], ca[CF_MAXV * SPAN_VEC], b[CF_MAXV * SPAN_VEC], cb[CF_MAXV * SPAN_VEC];
    CF_TO_LANES(s1, a);
    CF_TO_LANES(c1, ca);
    CF_TO_LANES(s2, b);
    CF_TO_LANES(c2, cb);
    real  rn = (real)Sp * (real)cpg;
    for (uint c0 = 0; c0 < cw; c0 += cpg) {
        real  iv = inv[ioff + (ulong)n * G + (j0 + c0) / cpg];
        real  wx = 0, wxc = 0, wy = 0, wyc = 0;
        for (uint i = c0; i < c0 + cpg; ++i) {
            real sx = a[i] + ca[i], sy = b[i] + cb[i];
            real w  = gamma ? gamma[goff + j0 + i] : (real)1;
            sum1_add(&wx, &wxc, w * sx);
            sum1_add(&wy, &wyc, w * sy);
            if (tab)
                tab[tofs + (ulong)n * C + j0 + i] = (real4)(iv * sy, sx, (real)0, (real)0);
            a[i] = iv * w;
        }
        real ky = iv * iv * (iv * (wy + wyc)) / rn, kw = iv * ((wx + wxc) / rn);
        for (uint i = c0; i < c0 + cpg; ++i) {
            b[i]  = ky;
            ca[i] = kw;
        }
    }
    CF_FROM_LANES(a, s1);
    CF_FROM_LANES(ca, c1);
    CF_FROM_LANES(b, s2);
    CF_OUT_WALK(dx, Sp, C, nv, stream, s1[v] * LOADV(dy, e) - c1[v] - (LOADV(x, e) - m[v]) * s2[v]);
}

#ifdef CLNORM_VCAST_REGION
#pragma clang attribute pop
#endif

#undef CF_MAXV
#define CF_MAXV (BN_CF_CHANNELS / SPAN_VEC)
