/* native.c: the batch norm passes written in plain C on the host's threads,
 * as a ceiling for the OpenCL figures of a CPU device. Each model moves the
 * bytes the library's kernels move and does as little arithmetic as it can:
 *
 *   NHWC training forward: a pass that sums x (read-only), then y from x;
 *   NHWC backward: a pass that sums dy and dy*x, then dx from x and dy;
 *   NCHW training forward / backward: a thread per channel walks the
 *   channel's rows once to sum, then again in reverse (the rows read last
 *   are the ones still in cache) to write.
 *
 * Writes use streaming stores where the target has them (x86), reads
 * prefetch a little ahead, as the kernels do. The results are not
 * normalizations (the sums feed made-up coefficients): only the time counts. */
#include "native.h"
#include "timing.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <immintrin.h>
#define HAVE_STREAM 1
#else
#define HAVE_STREAM 0
#endif

/* 16 values: one register where the build targets AVX-512 (the bench builds
 * this file for the build machine's CPU), pieces of one otherwise */
typedef float v16 __attribute__((vector_size(64)));

static v16 ld(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 16 values to a 64-byte aligned address, bypassing the caches if we can,
 * in the widest stores the target has: streaming stores narrower than a
 * cache line copy measurably slower. */
static void st(float *p, v16 v)
{
#if defined(__AVX512F__)
    __m512 w;
    memcpy(&w, &v, sizeof w);
    _mm512_stream_ps(p, w);
#elif defined(__AVX__)
    __m256 w[2];
    memcpy(w, &v, sizeof w);
    _mm256_stream_ps(p, w[0]);
    _mm256_stream_ps(p + 8, w[1]);
#elif HAVE_STREAM
    __m128 w[4];
    memcpy(w, &v, sizeof w);
    for (int i = 0; i < 4; ++i)
        _mm_stream_ps(p + 4 * i, w[i]);
#else
    memcpy(p, &v, sizeof v);
#endif
}

static void fence(void)
{
#if HAVE_STREAM
    _mm_sfence();
#endif
}

/* ---- fork-join over the host's threads ------------------------------------ */

typedef struct model model;
typedef void (*part_fn)(model *m, int t, int nt);

struct model {
    float  *x, *dy, *y;
    size_t  rows, cols;     /* NHWC: rows x C; NCHW: N, C, I as rows, cols, inner */
    size_t  inner;
    int     nt;
    v16     acc[64][2];     /* per-thread partial sums */
    part_fn fn;
    int     bwd;
};

typedef struct { model *m; int t; } job;

static void *trampoline(void *arg)
{
    job *j = arg;
    j->m->fn(j->m, j->t, j->m->nt);
    return NULL;
}

static void run_threads(model *m, part_fn fn)
{
    pthread_t th[64];
    job       jobs[64];
    m->fn = fn;
    for (int t = 1; t < m->nt; ++t) {
        jobs[t] = (job){m, t};
        if (pthread_create(&th[t], NULL, trampoline, &jobs[t]) != 0) {
            fn(m, t, m->nt); /* no thread: do its share here */
            jobs[t].m = NULL;  /* nothing to join */
        }
    }
    fn(m, 0, m->nt);
    for (int t = 1; t < m->nt; ++t)
        if (jobs[t].m)
            pthread_join(th[t], NULL);
}

static void split(size_t n, int t, int nt, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)t / (size_t)nt;
    *hi = n * (size_t)(t + 1) / (size_t)nt;
}

/* ---- the models ------------------------------------------------------------ */

static void copy_part(model *m, int t, int nt)
{
    size_t lo, hi, n = m->rows * m->cols / 16;
    split(n, t, nt, &lo, &hi);
    for (size_t i = lo; i < hi; ++i)
        st(m->y + i * 16, ld(m->x + i * 16));
    fence();
}

/* The read-only pass over n values (a multiple of 16) of x (and dy when
 * bwd): sums into a and b, prefetching ahead values ahead (none when 0). */
static void sum_run(const float *x, const float *dy, size_t n, size_t ahead, int bwd, v16 *a, v16 *b)
{
    for (size_t i = 0; i < n; i += 16) {
        v16 v = ld(x + i);
        if (ahead)
            __builtin_prefetch(x + i + ahead, 0, 2);
        if (bwd) {
            if (ahead)
                __builtin_prefetch(dy + i + ahead, 0, 2);
            v16 d = ld(dy + i);
            *a += d;
            *b += d * v;
        } else {
            *a += v;
            *b += v * v;
        }
    }
}

/* channels last: thread t sums its rows; C = m->cols, a multiple of 16 */
static void nhwc_sum_part(model *m, int t, int nt)
{
    size_t lo, hi, C = m->cols;
    split(m->rows, t, nt, &lo, &hi);
    v16 a = {0}, b = {0};
    for (size_t r = lo; r < hi; ++r)
        sum_run(m->x + r * C, m->dy + r * C, C, 1024, m->bwd, &a, &b);
    m->acc[t][0] = a;
    m->acc[t][1] = b;
}

static void nhwc_write_part(model *m, int t, int nt)
{
    size_t lo, hi, n = m->rows * m->cols / 16;
    split(n, t, nt, &lo, &hi);
    v16 k = m->acc[0][0] * 1e-9f, c = m->acc[0][1] * 1e-9f;
    for (size_t i = lo; i < hi; ++i) {
        v16 v = ld(m->x + i * 16);
        st(m->y + i * 16, m->bwd ? ld(m->dy + i * 16) * k - v * c : v * k + c);
    }
    fence();
}

/* channels first: thread t takes channels t, t + nt, ...; rows of the
 * channel are m->inner values, m->cols channels apart */
static void nchw_part(model *m, int t, int nt)
{
    size_t N = m->rows, C = m->cols, I = m->inner;
    for (size_t c = (size_t)t; c < C; c += (size_t)nt) {
        v16 a = {0}, b = {0};
        for (size_t o = 0; o < N; ++o) /* read-ahead: the same place in the next row */
            sum_run(m->x + (o * C + c) * I, m->dy + (o * C + c) * I, I / 16 * 16, o + 1 < N ? C * I : 0,
                    m->bwd, &a, &b);
        v16 k = a * 1e-9f, s = b * 1e-9f;
        for (size_t r = 0; r < N; ++r) {
            size_t base = ((N - 1 - r) * C + c) * I;
            for (size_t i = 0; i + 16 <= I; i += 16) {
                v16 v = ld(m->x + base + i);
                st(m->y + base + i, m->bwd ? ld(m->dy + base + i) * k - v * s : v * k + s);
            }
        }
    }
    fence();
}

static void two_pass_nhwc(model *m)
{
    run_threads(m, nhwc_sum_part);
    for (int t = 1; t < m->nt; ++t) {
        m->acc[0][0] += m->acc[t][0];
        m->acc[0][1] += m->acc[t][1];
    }
    run_threads(m, nhwc_write_part);
}

/* Median seconds of reps runs after one warm-up. */
static double median_time(model *m, int kind, int reps)
{
    double t[64];
    if (reps > 64)
        reps = 64;
    for (int i = -1; i < reps; ++i) {
        double t0 = bench_now();
        if (kind == 0)
            run_threads(m, copy_part);
        else if (kind == 1)
            two_pass_nhwc(m);
        else
            run_threads(m, nchw_part);
        if (i >= 0)
            t[i] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

static float *alloc_floats(size_t n, float v)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (p)
        for (size_t i = 0; i < n; ++i)
            p[i] = v + (float)(i % 7); /* touch every page now, not in the timing */
    return p;
}

struct native_set {
    model  m;
    size_t n, copy_floats, batch;
};

native_set *native_open(int nt, size_t batch, size_t copy_floats)
{
    /* the partial sums are 64-byte vectors: calloc's alignment is not enough */
    size_t      sz = (sizeof(native_set) + 63) / 64 * 64;
    native_set *s  = aligned_alloc(64, sz);
    if (!s)
        return NULL;
    memset(s, 0, sz);
    s->n           = batch * 64 * 112 * 112;
    s->batch       = batch;
    s->copy_floats = copy_floats < 64 ? 64 : copy_floats / 64 * 64;
    size_t na      = s->n > s->copy_floats ? s->n : s->copy_floats;
    s->m.nt        = nt < 1 ? 1 : nt > 64 ? 64 : nt;
    s->m.x         = alloc_floats(na, 1.0f);
    s->m.dy        = alloc_floats(s->n, 0.5f);
    s->m.y         = alloc_floats(na, 0.0f);
    if (!s->m.x || !s->m.dy || !s->m.y) {
        native_close(s);
        return NULL;
    }
    return s;
}

void native_close(native_set *s)
{
    if (!s)
        return;
    free(s->m.x);
    free(s->m.dy);
    free(s->m.y);
    free(s);
}

double native_copy(native_set *s, int reps)
{
    s->m.rows = s->copy_floats / 64;
    s->m.cols = 64;
    return 2.0 * (double)s->copy_floats * 4 / median_time(&s->m, 0, reps) / 1e9;
}

double native_case(native_set *s, int k, int reps)
{
    int nchw   = k >= 2;
    s->m.bwd   = k % 2;
    s->m.rows  = nchw ? s->batch : s->batch * 112 * 112;
    s->m.cols  = 64;
    s->m.inner = nchw ? 112 * 112 : 1;
    double sec = median_time(&s->m, nchw ? 2 : 1, reps);
    return (s->m.bwd ? 3.0 : 2.0) * (double)s->n * 4 / sec / 1e9;
}

const char *native_case_name(int k)
{
    static const char *name[NATIVE_CASES] = {"fwd-train NHWC", "bwd NHWC", "fwd-train NCHW", "bwd NCHW"};
    return k >= 0 && k < NATIVE_CASES ? name[k] : "?";
}

int native_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int native_streaming(void) { return HAVE_STREAM; }
