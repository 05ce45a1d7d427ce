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

#ifndef SPAN
#define SPAN 256 /* values a CPU work-item reduces by two passes over L1 */
#endif

/* Statistics of n <= SPAN contiguous values: a first pass for the block
 * mean, a second (from L1) for the corrected sums of deviations. Vector
 * accumulators, no division per element. */
inline real4 stat_span(__global const store_t *p, uint n)
{
    real8 s = (real8)0;
    real  t = 0;
    uint  i = 0;
    for (; i + 8 <= n; i += 8)
        s += LOAD8(p, i);
    for (uint j = i; j < n; ++j)
        t += LOAD1(p, j);
    real  rn = (real)n;
    real  m  = (sum8(s) + t) / rn;
    real8 d1 = (real8)0, d2 = (real8)0;
    real  t1 = 0, t2 = 0;
    for (i = 0; i + 8 <= n; i += 8) {
        real8 d = LOAD8(p, i) - m;
        d1 += d;
        d2 = fma(d, d, d2);
    }
    for (uint j = i; j < n; ++j) {
        real d = LOAD1(p, j) - m;
        t1 += d;
        t2 = fma(d, d, t2);
    }
    real ds = sum8(d1) + t1;
    real q  = sum8(d2) + t2 - ds * ds / rn;
    return (real4)(rn, m, ds / rn, fmax(q, (real)0));
}

/* (sum dy, sum dy*(x - m)) over n <= SPAN contiguous values. */
inline real2 bwd_span(__global const store_t *dy, __global const store_t *x, real m, uint n)
{
    real8 a = (real8)0, b = (real8)0;
    real  ta = 0, tb = 0;
    uint  i = 0;
    for (; i + 8 <= n; i += 8) {
        real8 d = LOAD8(dy, i);
        a += d;
        b = fma(d, LOAD8(x, i) - m, b);
    }
    for (; i < n; ++i) {
        real d = LOAD1(dy, i);
        ta += d;
        tb = fma(d, LOAD1(x, i) - m, tb);
    }
    return (real2)(sum8(a) + ta, sum8(b) + tb);
}

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
            for (uint i = i0; i < i1; i += SPAN)
                acc = stat_merge(acc, stat_span(row + i, min((uint)SPAN, i1 - i)));
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
#if LX == 1
            for (uint i = i0; i < i1; i += SPAN)
                acc = sum2_add(acc, bwd_span(dy + base + i, x + base + i, m, min((uint)SPAN, i1 - i)));
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

/* ---- CPU column kernels: one work-item owns 8 neighbouring columns -------
 * Explicit 8-wide vectors make the loads contiguous and the arithmetic SIMD
 * whatever the implementation does with work-items. Columns j..j+7 of
 * W = C*I; the last work-item may own fewer than 8 and takes the scalar path. */

#ifndef COL_BLOCK
#define COL_BLOCK 16 /* rows per two-pass block */
#endif

typedef struct { real n; real8 hi, lo, m2; } stat8;

inline void stat8_merge(stat8 *a, real nb, real8 bhi, real8 blo, real8 bm2)
{
    if (a->n == (real)0) {
        a->n = nb; a->hi = bhi; a->lo = blo; a->m2 = bm2;
        return;
    }
    real  nn    = a->n + nb;
    real  wb    = nb / nn;
    real8 delta = (bhi - a->hi) + (blo - a->lo);
    a->m2 += bm2 + delta * delta * (a->n * wb);
    real8 l  = a->lo + delta * wb;
    real8 sm = a->hi + l;
    real8 bb = sm - a->hi;
    a->lo    = (a->hi - (sm - bb)) + (l - bb);
    a->hi    = sm;
    a->n     = nn;
}

__kernel void bn_stats_cols8(__global const store_t *x, ulong xoff, uint O, uint W, uint R, uint K,
                             __global real4 *part, ulong poff)
{
    uint j = get_global_id(0) * 8, k = get_global_id(1);
    if (j >= W || k >= K)
        return;
    x += xoff + j;
    part += poff + (ulong)k * W + j;
    uint o0 = k * R, o1 = min(O, o0 + R);
    if (j + 8 <= W) {
        stat8 acc;
        acc.n = 0;
        for (uint o = o0; o < o1; o += COL_BLOCK) {
            uint  nb = min((uint)COL_BLOCK, o1 - o);
            __global const store_t *p = x + (ulong)o * W;
            real8 s = (real8)0;
            for (uint r = 0; r < nb; ++r)
                s += LOAD8(p, (ulong)r * W);
            real  rn = (real)nb;
            real8 m  = s / rn;
            real8 d1 = (real8)0, d2 = (real8)0;
            for (uint r = 0; r < nb; ++r) {
                real8 d = LOAD8(p, (ulong)r * W) - m;
                d1 += d;
                d2 = fma(d, d, d2);
            }
            stat8_merge(&acc, rn, m, d1 / rn, fmax(d2 - d1 * d1 / rn, (real8)0));
        }
        real hi[8], lo[8], m2[8];
        vstore8(acc.hi, 0, hi);
        vstore8(acc.lo, 0, lo);
        vstore8(acc.m2, 0, m2);
        for (uint l = 0; l < 8; ++l)
            part[l] = (real4)(acc.n, hi[l], lo[l], m2[l]);
    } else {
        for (uint l = 0; j + l < W; ++l) {
            real4 acc = (real4)0;
            for (uint o = o0; o < o1; ++o)
                acc = stat_merge(acc, stat_one(LOAD1(x, (ulong)o * W + l)));
            part[l] = acc;
        }
    }
}

/* Vector Neumaier step for 8 pairs of sums. */
inline void sum8_add(real8 *s, real8 *c, real8 v)
{
    real8 t = *s + v;
    *c += select((v - t) + *s, (*s - t) + v, isgreaterequal(fabs(*s), fabs(v)));
    *s = t;
}

__kernel void bn_bwd_cols8(__global const store_t *x, ulong xoff, __global const store_t *dy,
                           ulong dyoff, __global const real *mean, ulong moff, uint O, uint W,
                           uint I, uint R, uint K, __global real4 *part, ulong poff)
{
    uint j = get_global_id(0) * 8, k = get_global_id(1);
    if (j >= W || k >= K)
        return;
    x += xoff + j;
    dy += dyoff + j;
    part += poff + (ulong)k * W + j;
    uint o0 = k * R, o1 = min(O, o0 + R);
    if (j + 8 <= W) {
        real8 m;
        if (I == 1) {
            m = vload8(0, mean + moff + j);
        } else {
            real mm[8];
            for (uint l = 0; l < 8; ++l)
                mm[l] = mean[moff + (j + l) / I];
            m = vload8(0, mm);
        }
        real8 s1 = (real8)0, c1 = (real8)0, s2 = (real8)0, c2 = (real8)0;
        for (uint o = o0; o < o1; o += COL_BLOCK) {
            uint  nb = min((uint)COL_BLOCK, o1 - o);
            real8 a = (real8)0, b = (real8)0;
            for (uint r = 0; r < nb; ++r) {
                ulong e = (ulong)(o + r) * W;
                real8 d = LOAD8(dy, e);
                a += d;
                b = fma(d, LOAD8(x, e) - m, b);
            }
            sum8_add(&s1, &c1, a);
            sum8_add(&s2, &c2, b);
        }
        real v1[8], v2[8], w1[8], w2[8];
        vstore8(s1, 0, v1);
        vstore8(s2, 0, v2);
        vstore8(c1, 0, w1);
        vstore8(c2, 0, w2);
        for (uint l = 0; l < 8; ++l)
            part[l] = (real4)(v1[l], v2[l], w1[l], w2[l]);
    } else {
        for (uint l = 0; j + l < W; ++l) {
            real  m   = mean[moff + (j + l) / I];
            real4 acc = (real4)0;
            for (uint o = o0; o < o1; ++o) {
                ulong e = (ulong)o * W + l;
                real  d = LOAD1(dy, e);
                acc = sum2_add(acc, (real2)(d, d * (LOAD1(x, e) - m)));
            }
            part[l] = acc;
        }
    }
}

/* Coefficients of 8 neighbouring channels as four vectors. */
inline void coef8(__global const real4 *coef, uint c, real8 *k0, real8 *k1, real8 *k2, real8 *k3)
{
    real a[8], b[8], d[8], e[8];
    for (uint l = 0; l < 8; ++l) {
        real4 v = coef[c + l];
        a[l] = v.x; b[l] = v.y; d[l] = v.z; e[l] = v.w;
    }
    *k0 = vload8(0, a);
    *k1 = vload8(0, b);
    *k2 = vload8(0, d);
    *k3 = vload8(0, e);
}

#ifndef COL_APPLY_ROWS
#define COL_APPLY_ROWS 64
#endif

/* I == 1: work-item (c8, t) applies channels c..c+7 to rows [t*COL_APPLY_ROWS, ...). */
__kernel void bn_apply_cols8(__global const store_t *x, ulong xoff, __global store_t *y, ulong yoff,
                             uint C, uint O, __global const real4 *coef, ulong cofs)
{
    uint c = get_global_id(0) * 8, o = get_global_id(1) * COL_APPLY_ROWS;
    if (c >= C || o >= O)
        return;
    coef += cofs;
    uint o1 = min(O, o + COL_APPLY_ROWS);
    if (c + 8 <= C) {
        real8 hi, lo, sc, sh;
        coef8(coef, c, &hi, &lo, &sc, &sh);
        for (; o < o1; ++o) {
            ulong e = (ulong)o * C + c;
            STORE8(((LOAD8(x, xoff + e) - hi) - lo) * sc + sh, y, yoff + e);
        }
    } else {
        for (; o < o1; ++o)
            for (uint l = c; l < C; ++l) {
                real4 k = coef[l];
                ulong e = (ulong)o * C + l;
                STORE1(((LOAD1(x, xoff + e) - k.x) - k.y) * k.z + k.w, y, yoff + e);
            }
    }
}

__kernel void bn_dx_cols8(__global const store_t *x, ulong xoff, __global const store_t *dy,
                          ulong dyoff, __global store_t *dx, ulong dxoff, uint C, uint O,
                          int use_x, __global const real4 *coef, ulong cofs)
{
    uint c = get_global_id(0) * 8, o = get_global_id(1) * COL_APPLY_ROWS;
    if (c >= C || o >= O)
        return;
    coef += cofs;
    uint o1 = min(O, o + COL_APPLY_ROWS);
    if (c + 8 <= C) {
        real8 m, kk, a, b;
        coef8(coef, c, &m, &kk, &a, &b);
        for (; o < o1; ++o) {
            ulong e = (ulong)o * C + c;
            real8 d = LOAD8(dy, dyoff + e);
            real8 v = use_x ? LOAD8(x, xoff + e) : m;
            STORE8(a * ((d - b) - (v - m) * kk), dx, dxoff + e);
        }
    } else {
        for (; o < o1; ++o)
            for (uint l = c; l < C; ++l) {
                real4 k = coef[l];
                ulong e = (ulong)o * C + l;
                real  d = LOAD1(dy, dyoff + e);
                real  v = use_x ? LOAD1(x, xoff + e) : k.x;
                STORE1(k.z * ((d - k.w) - (v - k.x) * k.y), dx, dxoff + e);
            }
    }
}
