/* batchnorm.cl: batch normalization on a tensor viewed as (O, C, I): element
 * (o, c, i) at (o*C + c)*I + i. Statistics per channel over O*I values.
 * Stages: per-chunk partials (rows or cols walk) -> per-channel combine ->
 * elementwise apply. Every reduction has a fixed order: no atomics. */

#ifndef LX
#define LX 1 /* lanes that share one (channel, chunk) in the rows walks */
#endif
#ifndef APPLY_ROWS
#define APPLY_ROWS 8 /* rows per work-item in the column-layout apply */
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
            uint i = i0 + lane * 8;
            for (; i + 8 <= i1; i += 8 * LX)
                acc = stat_merge(acc, stat_block8(LOAD8(row, i)));
            for (; i < i1; ++i)
                acc = stat_merge(acc, stat_one(LOAD1(row, i)));
        }
    }
#if LX > 1
    __local real4 sh[LX];
    sh[lane] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = LX / 2; h > 0; h >>= 1) {
        if (lane < h)
            sh[lane] = stat_merge(sh[lane], sh[lane + h]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    acc = sh[0];
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

/* One work-item per channel merges its K*Ip partials in a fixed order and
 * writes the saved statistics, the running averages and the apply
 * coefficients coef[c] = (mean_hi, mean_lo, gamma*invstd, beta). */
__kernel void bn_stats_combine(__global const real4 *part, ulong poff, uint K, uint C, uint Ip, real M,
                               real eps, real f, real bessel,
                               __global const real *gamma, ulong goff,
                               __global const real *beta, ulong boff,
                               __global real *smean, ulong smoff,
                               __global real *sinv, ulong sioff,
                               __global real *rmean, ulong rmoff,
                               __global real *rvar, ulong rvoff,
                               __global real4 *coef, ulong cofs)
{
    uint c = get_global_id(0);
    if (c >= C)
        return;
    coef += cofs;
    part += poff;
    real4 acc = (real4)0;
    for (uint k = 0; k < K; ++k)
        for (uint i = 0; i < Ip; ++i)
            acc = stat_merge(acc, part[((ulong)k * C + c) * Ip + i]);
    real var  = acc.w / M;
    real mean = acc.y + acc.z;
    real inv  = (real)1 / sqrt(var + eps);
    real g    = gamma ? gamma[goff + c] : (real)1;
    real b    = beta ? beta[boff + c] : (real)0;
    if (smean)
        smean[smoff + c] = mean;
    if (sinv)
        sinv[sioff + c] = inv;
    if (rmean)
        rmean[rmoff + c] = ((real)1 - f) * rmean[rmoff + c] + f * mean;
    if (rvar)
        rvar[rvoff + c] = ((real)1 - f) * rvar[rvoff + c] + f * (var * bessel);
    coef[c] = (real4)(acc.y, acc.z, g * inv, b);
}

/* Apply coefficients from running statistics (inference). */
__kernel void bn_coef_running(uint C, real eps, __global const real *rmean, ulong rmoff,
                              __global const real *rvar, ulong rvoff,
                              __global const real *gamma, ulong goff,
                              __global const real *beta, ulong boff, __global real4 *coef, ulong cofs)
{
    uint c = get_global_id(0);
    if (c >= C)
        return;
    coef += cofs;
    real inv = (real)1 / sqrt(rvar[rvoff + c] + eps);
    real g   = gamma ? gamma[goff + c] : (real)1;
    real b   = beta ? beta[boff + c] : (real)0;
    coef[c]  = (real4)(rmean[rmoff + c], (real)0, g * inv, b);
}

/* ---- elementwise: y = ((x - mean_hi) - mean_lo) * scale + beta ---------- */

inline real8 bn_apply8(real8 v, real4 k) { return ((v - k.x) - k.y) * k.z + k.w; }

/* I > 1: work-item (t, r) handles 8 elements of row r = o*C + c. */
__kernel void bn_apply_rows(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                            uint C, uint I, ulong rows, __global const real4 *coef, ulong cofs)
{
    coef += cofs;
    uint  i = get_global_id(0) * 8;
    ulong r = get_global_id(1);
    if (r >= rows || i >= I)
        return;
    real4 k = coef[r % C];
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
                            uint C, uint O, __global const real4 *coef, ulong cofs)
{
    coef += cofs;
    uint c = get_global_id(0), o = get_global_id(1) * APPLY_ROWS;
    if (c >= C || o >= O)
        return;
    real4 k = coef[c];
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
    acc = sh[0];
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
 * dx coefficients coef[c] = (mean, k, a, b) for dx = a*((dy - b) - (x - mean)*k).
 * frozen != 0: invstd from running variance, dx = a*dy (k = b = 0).
 * inv_src holds invstd, or the running variance when frozen. */
__kernel void bn_bwd_combine(__global const real4 *part, ulong poff, uint K, uint C, uint Ip, real M,
                             int frozen, real eps,
                             __global const real *mean, ulong moff,
                             __global const real *inv_src, ulong ioff,
                             __global const real *gamma, ulong goff,
                             __global real *dgamma, ulong dgoff,
                             __global real *dbeta, ulong dboff,
                             __global real4 *coef, ulong cofs)
{
    uint c = get_global_id(0);
    if (c >= C)
        return;
    coef += cofs;
    part += poff;
    real4 acc = (real4)0;
    for (uint k = 0; k < K; ++k)
        for (uint i = 0; i < Ip; ++i) {
            real4 p = part[((ulong)k * C + c) * Ip + i];
            acc = sum2_add(acc, p.xy);
            acc.zw += p.zw;
        }
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
        coef[c] = (real4)(mean[moff + c], (real)0, a, (real)0);
    else
        coef[c] = (real4)(mean[moff + c], inv * dg / M, a, sdy / M);
}

inline real8 bn_dx8(real8 d, real8 v, real4 k) { return k.z * ((d - k.w) - (v - k.x) * k.y); }

/* dx for I > 1; use_x == 0 (frozen) never reads x. */
__kernel void bn_dx_rows(__global const store_t *x, ulong xoff, __global const store_t *dy,
                         ulong dyoff, __global store_t *dx, ulong dxoff, uint C, uint I,
                         ulong rows, int use_x, __global const real4 *coef, ulong cofs)
{
    coef += cofs;
    uint  i = get_global_id(0) * 8;
    ulong r = get_global_id(1);
    if (r >= rows || i >= I)
        return;
    real4 k = coef[r % C];
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
                         int use_x, __global const real4 *coef, ulong cofs)
{
    coef += cofs;
    uint c = get_global_id(0), o = get_global_id(1) * APPLY_ROWS;
    if (c >= C || o >= O)
        return;
    real4 k = coef[c];
    uint o1 = min(O, o + APPLY_ROWS);
    for (; o < o1; ++o) {
        ulong e = (ulong)o * C + c;
        real  d = LOAD1(dy, dyoff + e);
        real  v = use_x ? LOAD1(x, xoff + e) : k.x;
        STORE1(k.z * ((d - k.w) - (v - k.x) * k.y), dx, dxoff + e);
    }
}
