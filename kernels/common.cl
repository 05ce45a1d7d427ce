/* common.cl: storage types and the (count, mean, M2) statistics algebra
 * shared by every clnorm kernel family. Prepended to each family's source. */

#ifndef LX
#define LX 1 /* lanes that share one row or (channel, chunk): 1 on CPUs */
#endif

/* The elementwise passes after a reduction walk the tensor from its end on
 * GPUs: the reduction read it from the start, so what it read last may
 * still be in the GPU's L2 (tens of MB) when the pass begins; GPUs start
 * work-groups roughly in the order of their ids. ELEM_GID(d) is the
 * work-item's index along d in the pass's order. A/B: -DELEM_REVERSE=0. */
#ifndef ELEM_REVERSE
#define ELEM_REVERSE (LX > 1)
#endif
#if ELEM_REVERSE
#define ELEM_GID(d) (get_global_size(d) - 1 - get_global_id(d))
#else
#define ELEM_GID(d) get_global_id(d)
#endif

/* Storage type: chosen with -DCLNORM_DTYPE_*. real is the compute and
 * accumulation type (fp32, or fp64 for fp64 storage). */
#if defined(CLNORM_DTYPE_F64)
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double  real;
typedef double2 real2;
typedef double4 real4;
typedef double8 real8;
typedef double16 real16;
typedef double  store_t;
#define LOAD1(p, i)     ((p)[i])
#define LOAD8(p, i)     GLD(real, 8, (p) + (i))
#define LOAD16(p, i)    GLD(real, 16, (p) + (i))
#define STORE1(v, p, i) ((p)[i] = (v))
#define STORE8(v, p, i) GST(real, 8, (v), (p) + (i))
#define STORE16(v, p, i) GST(real, 16, (v), (p) + (i))
#else
typedef float  real;
typedef float2 real2;
typedef float4 real4;
typedef float8 real8;
typedef float16 real16;
#if defined(CLNORM_DTYPE_F16)
/* half pointers need no extension when accessed with vload_half/vstore_half */
typedef half store_t;
#define LOAD1(p, i)     vload_half((i), (p))
#define LOAD8(p, i)     vload_half8(0, (p) + (i))
#define LOAD16(p, i)    vload_half16(0, (p) + (i))
#define STORE1(v, p, i) vstore_half_rte((v), (i), (p))
#define STORE8(v, p, i) vstore_half8_rte((v), 0, (p) + (i))
#define STORE16(v, p, i) vstore_half16_rte((v), 0, (p) + (i))
#elif defined(CLNORM_DTYPE_BF16)
typedef ushort store_t;
/* round to nearest even; NaN stays NaN (quiet bit forced) */
inline uint bf16_bits(uint u)
{
    uint r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return ((u & 0x7fffffffu) > 0x7f800000u) ? ((u >> 16) | 0x40u) : r;
}
inline uint8 bf16_bits8(uint8 u)
{
    uint8 r   = (u + (uint8)0x7fffu + ((u >> 16) & (uint8)1u)) >> 16;
    uint8 nan = (u >> 16) | (uint8)0x40u;
    return select(r, nan, (int8)((u & (uint8)0x7fffffffu) > (uint8)0x7f800000u));
}
/* bf16_bits over 8 and 16 values, the upper halves taken by a shuffle:
 * clang turns a convert_ushort8 before a streaming store into a narrowing
 * store, which drops the streaming hint; and 16 at a time halves the
 * instructions (the rounding bounds bf16 walks on a CPU) */
inline ushort8 bf16_vec8(real8 v)
{
    uint8 u = as_uint8(v);
    uint8 r = u + (uint8)0x7fffu + ((u >> 16) & (uint8)1u);
    r       = select(r, u | (uint8)0x400000u, (int8)((u & (uint8)0x7fffffffu) > (uint8)0x7f800000u));
    return as_ushort16(r).odd;
}
inline ushort16 bf16_vec16(real16 v)
{
    uint16 u = as_uint16(v);
    uint16 r = u + (uint16)0x7fffu + ((u >> 16) & (uint16)1u);
    r = select(r, u | (uint16)0x400000u, (int16)((u & (uint16)0x7fffffffu) > (uint16)0x7f800000u));
    return (ushort16)(as_ushort16(r.lo).odd, as_ushort16(r.hi).odd);
}
#define LOAD1(p, i)     as_float((uint)(p)[i] << 16)
#define LOAD8(p, i)     as_float8(convert_uint8(GLD(ushort, 8, (p) + (i))) << 16)
#define LOAD16(p, i)    as_float16(convert_uint16(GLD(ushort, 16, (p) + (i))) << 16)
#define STORE1(v, p, i) ((p)[i] = (ushort)bf16_bits(as_uint(v)))
#define STORE8(v, p, i) GST(ushort, 8, convert_ushort8(bf16_bits8(as_uint8(v))), (p) + (i))
#define STORE16(v, p, i) GST(ushort, 16, bf16_vec16(v), (p) + (i))
#else
typedef float store_t;
#define LOAD1(p, i)     ((p)[i])
#define LOAD8(p, i)     GLD(real, 8, (p) + (i))
#define LOAD16(p, i)    GLD(real, 16, (p) + (i))
#define STORE1(v, p, i) ((p)[i] = (v))
#define STORE8(v, p, i) GST(real, 8, (v), (p) + (i))
#define STORE16(v, p, i) GST(real, 16, (v), (p) + (i))
#endif
#endif

/* Vector loads and stores of global memory at element-aligned addresses.
 * With CLNORM_VCAST (PoCL, whose compiler is clang) they go through vector
 * types of element alignment: PoCL's vloadn/vstoren access element by
 * element, and its compiler often fuses those only into 8-byte pieces, so
 * that an apply loop spent more instructions reassembling vectors than its
 * memory traffic took; this way each is one full-width access. may_alias:
 * they share memory with scalar accesses of the same buffers. Elsewhere
 * (or with -DCLNORM_NO_VCAST, for A/B), vloadn/vstoren. A value from them
 * has the element alignment in its type: streaming stores cast it back to
 * the aligned vector type, or clang would split them into 8-byte ones. */
#if defined(CLNORM_VCAST) && !defined(CLNORM_NO_VCAST)
typedef real   vc_real8 __attribute__((ext_vector_type(8), aligned(sizeof(real)), may_alias));
typedef real   vc_real16 __attribute__((ext_vector_type(16), aligned(sizeof(real)), may_alias));
typedef ushort vc_ushort8 __attribute__((ext_vector_type(8), aligned(2), may_alias));
typedef ushort vc_ushort16 __attribute__((ext_vector_type(16), aligned(2), may_alias));
/* vloadn16 returns a 16-wide vector, which made every caller's vectors legal
 * at 512 bits; without it, clang would split them into 256-bit halves on
 * CPUs that prefer those. Every function here keeps the full width (the
 * family source ends the region). */
#pragma clang attribute push(__attribute__((min_vector_width(512))), apply_to = function)
#define CLNORM_VCAST_REGION 1
/* for a body the caller instantiates with a constant (short rows) */
#define ALWAYS_INLINE __attribute__((always_inline))
#define GLD(t, n, q)    (*(__global const vc_##t##n *)(q))
#define GST(t, n, v, q) (*(__global vc_##t##n *)(q) = (v))
#else
#define ALWAYS_INLINE
/* Elsewhere (GPU compilers), vloadn/vstoren may assume only the element's
 * alignment and split into scalar accesses: a lane reading 8 contiguous
 * values then issues 8 narrow loads 32 bytes apart from its neighbours',
 * which measured at 0.4 of a copy on an NVIDIA H100. Where the address
 * allows (the usual case: aligned buffers, rows of a multiple of 4 values),
 * they go as 4-vectors of natural alignment instead; the test is per
 * access, so offsets and odd row lengths still take the general path.
 * -DCLNORM_NO_VEC4 turns it off (A/B). */
#if !defined(CLNORM_NO_VEC4)
#define CLNORM_VEC4_FNS(t)                                                                     \
    inline int vec4_ok_##t(__global const t *q) { return ((ulong)q & (sizeof(t##4) - 1)) == 0; } \
    inline t##8 gld8_##t(__global const t *q)                                                  \
    {                                                                                          \
        if (vec4_ok_##t(q))                                                                    \
            return (t##8)(*(__global const t##4 *)q, *(__global const t##4 *)(q + 4));         \
        return vload8(0, q);                                                                   \
    }                                                                                          \
    inline t##16 gld16_##t(__global const t *q) { return (t##16)(gld8_##t(q), gld8_##t(q + 8)); } \
    inline void gst8_##t(__global t *q, t##8 v)                                                \
    {                                                                                          \
        if (vec4_ok_##t(q)) {                                                                  \
            *(__global t##4 *)q       = v.lo;                                                  \
            *(__global t##4 *)(q + 4) = v.hi;                                                  \
        } else {                                                                               \
            vstore8(v, 0, q);                                                                  \
        }                                                                                      \
    }                                                                                          \
    inline void gst16_##t(__global t *q, t##16 v)                                              \
    {                                                                                          \
        gst8_##t(q, v.lo);                                                                     \
        gst8_##t(q + 8, v.hi);                                                                 \
    }
CLNORM_VEC4_FNS(real)
CLNORM_VEC4_FNS(ushort)
#define GLD(t, n, q)    gld##n##_##t(q)
#define GST(t, n, v, q) gst##n##_##t((q), (v))
#else
#define GLD(t, n, q)    vload##n(0, q)
#define GST(t, n, v, q) vstore##n((v), 0, q)
#endif
#endif

/* Streaming stores (CLNORM_NT builds: clang-based CPU compilers; fp32, fp16
 * and bf16 storage): writes that bypass the cache and skip the read for
 * ownership of the destination line. NT8(v) is 8 values as the storage's
 * bits, of type nt8_t; NT16 likewise. fp16 converts through a private
 * buffer with vstore_half (half vectors need cl_khr_fp16); clang keeps it in
 * registers. Without them, 16-bit outputs paid a read for ownership per line
 * written: fp16/bf16 inference on a 2-core Xeon ran at about 0.5 of fp32's
 * bandwidth. */
#if defined(CLNORM_NT) && !defined(CLNORM_DTYPE_F64)
#define HAVE_NT 1
#if defined(CLNORM_DTYPE_BF16)
typedef ushort8  nt8_t;
typedef ushort16 nt16_t;
#define NT8(v)  bf16_vec8((real8)(v))
#define NT16(v) bf16_vec16((real16)(v))
#elif defined(CLNORM_DTYPE_F16)
typedef ushort8  nt8_t;
typedef ushort16 nt16_t;
#define NT8(v)  nt_f16x8((real8)(v))
#define NT16(v) nt_f16x16((real16)(v))
inline ushort8 nt_f16x8(real8 v)
{
    ushort8 u;
    vstore_half8_rte(v, 0, (__private half *)&u);
    return u;
}
inline ushort16 nt_f16x16(real16 v)
{
    ushort16 u;
    vstore_half16_rte(v, 0, (__private half *)&u);
    return u;
}
#else
typedef real8  nt8_t;
typedef real16 nt16_t;
#define NT8(v)  ((real8)(v))
#define NT16(v) ((real16)(v))
#endif
#else
#define HAVE_NT 0
#endif

/* A statistics partial is real4 (count, mean_hi, mean_lo, M2): the mean is
 * the unevaluated sum mean_hi + mean_lo, so that x - mean keeps its digits
 * when |mean| is many standard deviations. */

inline real sum8(real8 v)
{
    real4 a = v.lo + v.hi;
    real2 b = a.lo + a.hi;
    return b.x + b.y;
}

/* max(q, 0) that keeps a NaN (fmax would turn it into 0): a sum of squared
 * deviations can round below zero, and a non-finite input must stay visible. */
inline real nonneg(real q) { return q < (real)0 ? (real)0 : q; }
inline real8 nonneg8(real8 q) { return select(q, (real8)0, q < (real8)0); }

/* Chan's parallel combination of two partials; a fixed function of its
 * arguments, so a fixed merge order gives bitwise-reproducible results. */
inline real4 stat_merge(real4 a, real4 b)
{
    if (b.x == (real)0)
        return a;
    if (a.x == (real)0)
        return b;
    real n     = a.x + b.x;
    real delta = (b.y - a.y) + (b.z - a.z);
    real wb    = b.x / n;
    a.w += b.w + delta * delta * a.x * wb;
    a.x = n;
    /* fold the update into (hi, lo) exactly (TwoSum), so hi follows the mean
     * and lo stays a rounding-sized remainder whatever the first block was */
    real lo = a.z + delta * wb;
    real s  = a.y + lo;
    real bb = s - a.y;
    a.z     = (a.y - (s - bb)) + (lo - bb);
    a.y     = s;
    return a;
}

/* Statistics of 8 values by the corrected two-pass method inside registers:
 * its error does not grow with |mean|/std. */
inline real4 stat_block8(real8 v)
{
    real  m  = sum8(v) * (real)0.125;
    real8 d  = v - m;
    real  ds = sum8(d);
    real  q  = sum8(d * d) - ds * ds * (real)0.125;
    return (real4)((real)8, m, ds * (real)0.125, nonneg(q));
}

#ifndef SPAN
#define SPAN 1024 /* values a CPU work-item reduces from L1 at a time (stat_span, stat_span_next) */
#endif

/* Statistics of n <= SPAN contiguous values: a first pass for the block
 * mean, a second (from L1) for the corrected sums of deviations. Vector
 * accumulators, no division per element. */
inline real sum16(real16 v) { return sum8(v.lo + v.hi); }

#ifndef SPAN_VEC
#define SPAN_VEC 16 /* vector width of the span walks */
#endif
#if SPAN_VEC == 16
typedef real16 realv;
#define LOADV(p, i) LOAD16(p, i)
#define VLOADV(q) GLD(real, 16, q)
#define VSTOREV(v, q) GST(real, 16, v, q)
#define STOREV(v, p, i) STORE16(v, p, i)
#define sumv sum16
#define NTV NT16
#define ntv_t nt16_t
#else
typedef real8 realv;
#define LOADV(p, i) LOAD8(p, i)
#define VLOADV(q) GLD(real, 8, q)
#define VSTOREV(v, q) GST(real, 8, v, q)
#define STOREV(v, p, i) STORE8(v, p, i)
#define sumv sum8
#define NTV NT8
#define ntv_t nt8_t
#endif
/* Lane numbers of a span vector, for masking lanes off. */
#if SPAN_VEC == 16
#define LANE_IDS ((realv)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#else
#define LANE_IDS ((realv)(0, 1, 2, 3, 4, 5, 6, 7))
#endif
inline realv nonnegv(realv q) { return select(q, (realv)0, q < (realv)0); }

/* A lone lane's elementwise walk over out[i, i1): out[i..] = VEXPR (SPAN_VEC
 * values of an expression of i) while at least SPAN_VEC remain; i is left
 * where the caller's narrower loops take over. With nt (large outputs) the
 * vectors go out as streaming stores, after plain stores (SEXPR, one value
 * of i) up to a vector-aligned address. A macro, so the expressions inline.
 * A kernel that may have used streaming stores ends with NT_FENCE(nt).
 * The streaming walk also prefetches pfa[i] and pfb[i] (when not NOPF):
 * the next unit of work, by a kernel that knows it. A walk that writes from
 * cache leaves the memory's read side idle; this way the next unit's reads
 * are in flight meanwhile, the overlap a plain copy gets for free. Into L2,
 * and no more than PF_BYTES of a unit ahead, so as not to evict the data
 * the walk is still to write from. A/B: -DPF_BYTES=0 turns it off. */
#define NOPF ((__global const store_t *)0)
#ifndef PF_BYTES
#define PF_BYTES (512 * 1024)
#endif
#ifdef CLNORM_VCAST /* PoCL: clang */
#define PREFETCH_L2(p, i)                             \
    do {                                              \
        if (p)                                        \
            __builtin_prefetch((p) + (i), 0, 2);      \
    } while (0)
#else
#define PREFETCH_L2(p, i) ((void)(p))
#endif
#if PF_BYTES > 0
#define PREFETCH(p, i) PREFETCH_L2(p, i)
#else
#define PREFETCH(p, i) ((void)(p))
#endif
/* Read-ahead for walks that only read (statistics, gradient sums): a span
 * prefetches pf[i] as it reads p[i], pf being the same span of the row the
 * walk takes next (or NOPF). Rows of a channel lie C*I values apart, and
 * every new row and page restarts the hardware prefetchers, which on their
 * own keep too few reads in flight for one core. Into L2, like PREFETCH.
 * A/B: -DREAD_AHEAD=0 turns it off. */
#ifndef READ_AHEAD
#define READ_AHEAD 1
#endif
#if defined(CLNORM_VCAST) && READ_AHEAD
#define PREFETCH_R(p, i) PREFETCH_L2(p, i)
#else
#define PREFETCH_R(p, i) ((void)(p))
#endif
#if HAVE_NT
#define WALKV(i, i1, out, nt, pfa, pfb, VEXPR, SEXPR)                                          \
    if (nt) {                                                                              \
        ulong h_ = ((ulong)sizeof(realv) - ((ulong)((out) + (i)) & (sizeof(realv) - 1))) &   \
                   (sizeof(realv) - 1);                                                    \
        for (h_ = min((ulong)(i1), (ulong)(i) + h_ / sizeof(store_t)); (i) < h_; ++(i))      \
            STORE1(SEXPR, out, i);                                                         \
        for (; (i) + SPAN_VEC <= (i1); (i) += SPAN_VEC) {                                  \
            PREFETCH(pfa, i);                                                              \
            PREFETCH(pfb, i);                                                              \
            __builtin_nontemporal_store(NTV(VEXPR), (__global ntv_t *)((out) + (i)));         \
        }                                                                                  \
    } else                                                                                 \
        for (; (i) + SPAN_VEC <= (i1); (i) += SPAN_VEC)                                    \
            STOREV(VEXPR, out, i)
/* One streaming store of 8 values at a 32-byte aligned address. */
#define STORE8_NT(v, p, i) __builtin_nontemporal_store(NT8(v), (__global nt8_t *)((p) + (i)))
/* ... and of SPAN_VEC values at a vector-aligned address. */
#define STOREV_NT(v, p, i) __builtin_nontemporal_store(NTV(v), (__global ntv_t *)((p) + (i)))
#define NT_FENCE(nt)                       \
    do {                                   \
        if (nt)                            \
            mem_fence(CLK_GLOBAL_MEM_FENCE); \
    } while (0)
#else
#define WALKV(i, i1, out, nt, pfa, pfb, VEXPR, SEXPR)   \
    for (; (i) + SPAN_VEC <= (i1); (i) += SPAN_VEC) \
        STOREV(VEXPR, out, i)
#define STORE8_NT(v, p, i) STORE8(v, p, i)
#define STOREV_NT(v, p, i) STOREV(v, p, i)
#define NT_FENCE(nt) ((void)(nt))
#endif

/* stat_span's two walks, apart (fwd_short_rows takes them for 16 rows at
 * once): span_sum returns the vector of partial sums of p[0, n), *t the
 * tail's; span_dev the vector sums of p - m and (in *sq) of its squares,
 * *t1 and *t2 the tail's. */
inline realv span_sum(__global const store_t *p, ulong n, __global const store_t *pf, real *t)
{
    /* independent accumulators: the vector adds' latency, not their
     * throughput, would otherwise bound the walk */
    realv s0 = (realv)0, s1 = (realv)0, s2 = (realv)0, s3 = (realv)0;
    ulong i = 0;
    for (; i + 4 * SPAN_VEC <= n; i += 4 * SPAN_VEC) {
        PREFETCH_R(pf, i);
        PREFETCH_R(pf, i + SPAN_VEC);
        PREFETCH_R(pf, i + 2 * SPAN_VEC);
        PREFETCH_R(pf, i + 3 * SPAN_VEC);
        s0 += LOADV(p, i);
        s1 += LOADV(p, i + SPAN_VEC);
        s2 += LOADV(p, i + 2 * SPAN_VEC);
        s3 += LOADV(p, i + 3 * SPAN_VEC);
    }
    for (; i + SPAN_VEC <= n; i += SPAN_VEC) {
        PREFETCH_R(pf, i);
        s0 += LOADV(p, i);
    }
    *t = 0;
    for (ulong j = i; j < n; ++j)
        *t += LOAD1(p, j);
    return (s0 + s1) + (s2 + s3);
}

inline realv span_dev(__global const store_t *p, ulong n, real m, __global const store_t *pf, realv *sq,
                      real *t1, real *t2)
{
    realv d1 = (realv)0, d2 = (realv)0, e1 = (realv)0, e2 = (realv)0;
    ulong i = 0;
    for (; i + 2 * SPAN_VEC <= n; i += 2 * SPAN_VEC) {
        PREFETCH_R(pf, i);
        PREFETCH_R(pf, i + SPAN_VEC);
        realv d = LOADV(p, i) - m, e = LOADV(p, i + SPAN_VEC) - m;
        d1 += d;
        d2 = fma(d, d, d2);
        e1 += e;
        e2 = fma(e, e, e2);
    }
    for (; i + SPAN_VEC <= n; i += SPAN_VEC) {
        PREFETCH_R(pf, i);
        realv d = LOADV(p, i) - m;
        d1 += d;
        d2 = fma(d, d, d2);
    }
    *t1 = 0;
    *t2 = 0;
    for (ulong j = i; j < n; ++j) {
        real d = LOAD1(p, j) - m;
        *t1 += d;
        *t2 = fma(d, d, *t2);
    }
    *sq = d2 + e2;
    return d1 + e1;
}

inline real4 stat_span(__global const store_t *p, ulong n, __global const store_t *pf)
{
    real  t, t1, t2;
    realv sq;
    real  rn = (real)n, ri = (real)1 / rn;
    real  m  = (sumv(span_sum(p, n, pf, &t)) + t) * ri; /* only a shift: corrected below */
    real  ds = sumv(span_dev(p, n, m, NOPF, &sq, &t1, &t2)) + t1;
    real  q  = sumv(sq) + t2 - ds * ds * ri;
    return (real4)(rn, m, ds * ri, nonneg(q));
}

/* acc merged with the statistics of p[0, n), for walks that merge spans in
 * a chain. The first span takes stat_span's two passes; a later one a
 * single pass about the chain's mean so far (acc.y), which is a
 * well-chosen shift: the span's M2 then carries a rounding error of about
 * eps*n*(its mean - acc.y)^2, while the merge adds that distance squared
 * times n*acc.x/(n + acc.x) to the chain's M2, n/2 or more since a chain's
 * first span is its longest: the error stays a few eps of the result
 * whatever |mean|/std (and a shorter first span, acc.x < n, would only
 * scale it by (n + acc.x)/acc.x). One read of the span from
 * L1 in place of two: 1.06 - 1.16x on channels-first training forward.
 * A/B: -DSPAN_SHIFT=0. */
#ifndef SPAN_SHIFT
#define SPAN_SHIFT 1
#endif
inline real4 stat_span_next(real4 acc, __global const store_t *p, ulong n, __global const store_t *pf)
{
#if SPAN_SHIFT
    if (acc.x != (real)0 && n != 0) {
        real  t1, t2;
        realv sq;
        real  rn = (real)n, ri = (real)1 / rn, k = acc.y;
        real  ds = sumv(span_dev(p, n, k, pf, &sq, &t1, &t2)) + t1;
        real  q  = sumv(sq) + t2 - ds * ds * ri;
        return stat_merge(acc, (real4)(rn, k, ds * ri, nonneg(q)));
    }
#endif
    return stat_merge(acc, stat_span(p, n, pf));
}

inline real4 stat_one(real v)
{
    return (real4)((real)1, v, (real)0, (real)0);
}

/* Compensated (Neumaier) accumulation of a pair of sums: acc.xy are the sums,
 * acc.zw their running corrections. Keeps dgamma/dbeta accurate over long
 * channels without a wider type. */
inline real4 sum2_add(real4 acc, real2 v)
{
    real2 t = acc.xy + v;
    real2 c;
    c.x = fabs(acc.x) >= fabs(v.x) ? (acc.x - t.x) + v.x : (v.x - t.x) + acc.x;
    c.y = fabs(acc.y) >= fabs(v.y) ? (acc.y - t.y) + v.y : (v.y - t.y) + acc.y;
    acc.zw += c;
    acc.xy = t;
    return acc;
}

/* acc = MERGE(acc, term(T)) for T = t0, t0 + step, ... below n, in that
 * order, where term(T) is LOADT(T) (a real4). The loads go 8 at a time: a
 * GPU lane merging thousands of partials otherwise waits out a memory
 * latency per term (the combines of channels-last tensors on an H100).
 * Same merges in the same order as the plain loop, so the same bits. */
#define MERGE_STRIDED(acc, t0, n, step, LOADT, MERGE)                         \
    do {                                                                      \
        ulong t_ = (t0), n_ = (n), s_ = (step);                               \
        for (; t_ < n_ && n_ - t_ > 7 * s_; t_ += 8 * s_) {                   \
            real4 v_[8];                                                      \
            for (int u_ = 0; u_ < 8; ++u_)                                    \
                v_[u_] = LOADT(t_ + u_ * s_);                                 \
            for (int u_ = 0; u_ < 8; ++u_)                                    \
                acc = MERGE(acc, v_[u_]);                                     \
        }                                                                     \
        for (; t_ < n_; t_ += s_)                                             \
            acc = MERGE(acc, LOADT(t_));                                      \
    } while (0)
