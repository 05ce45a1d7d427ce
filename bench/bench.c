/* bench.c: clnorm's benchmark. Measures the device's own copy bandwidth with
 * a copy kernel, then times each operation (warm-up, median of repetitions)
 * and reports GB/s at minimal traffic and the fraction of copy bandwidth. */
#include "clnorm/clnorm.h"
#include "native.h"
#include "timing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAIL(...)                         \
    do {                                  \
        fprintf(stderr, __VA_ARGS__);     \
        fputc('\n', stderr);              \
        exit(1);                          \
    } while (0)

static clnorm_context  *ctx, *ctx_a, *ctx_b; /* ctx_b: created with --ab's variable set */
static cl_context       cl;
static cl_command_queue q;
static int              reps = 10;
static double           copy_gbs, triad_gbs;

/* ---- the reference kernels: copy, two reads + one write, empty ---------- */

static const char *ref_src =
    "__kernel void copy8(__global const float8 *x, __global float8 *y, ulong n8) {\n"
    "  ulong i = get_global_id(0); if (i < n8) y[i] = x[i];\n"
    "}\n"
    "__kernel void copy_stride(__global const float8 *x, __global float8 *y, ulong n8) {\n"
    "  for (ulong i = get_global_id(0); i < n8; i += get_global_size(0)) y[i] = x[i];\n"
    "}\n"
    "__kernel void copy_chunk(__global const float8 *x, __global float8 *y, ulong n8) {\n"
    "  ulong per = (n8 + get_global_size(0) - 1) / get_global_size(0);\n"
    "  ulong i = get_global_id(0) * per, e = min(n8, i + per);\n"
    "  for (; i < e; ++i) y[i] = x[i];\n"
    "}\n"
    "__kernel void read_chunk(__global const float16 *x, __global float *y, ulong n16) {\n"
    "  ulong per = (n16 + get_global_size(0) - 1) / get_global_size(0);\n"
    "  ulong i = get_global_id(0) * per, e = min(n16, i + per);\n"
    "  float16 a = 0, b = 0, c = 0, d = 0;\n"
    "  for (; i + 4 <= e; i += 4) { a += x[i]; b += x[i + 1]; c += x[i + 2]; d += x[i + 3]; }\n"
    "  for (; i < e; ++i) a += x[i];\n"
    "  float16 t = (a + b) + (c + d);\n"
    "  float8 u = t.lo + t.hi; float4 v = u.lo + u.hi;\n"
    "  y[get_global_id(0)] = v.x + v.y + v.z + v.w;\n"
    "}\n"
    "__kernel void add8(__global const float8 *a, __global const float8 *b, __global float8 *y, ulong n8) {\n"
    "  ulong i = get_global_id(0); if (i < n8) y[i] = a[i] + b[i];\n"
    "}\n"
    "__kernel void empty(void) {}\n";
/* A copy with non-temporal (cache-bypassing) stores, where the device's
 * compiler offers them (clang-based ones such as PoCL's): no read for
 * ownership of the destination, so often faster than a plain copy. */
static const char *nt_src =
    "__kernel void copy_nt(__global const float8 *x, __global float8 *y, ulong n8) {\n"
    "  ulong per = (n8 + get_global_size(0) - 1) / get_global_size(0);\n"
    "  ulong i = get_global_id(0) * per, e = min(n8, i + per);\n"
    "  for (; i < e; ++i) __builtin_nontemporal_store(x[i], y + i);\n"
    "}\n"
    "__kernel void add_nt(__global const float8 *a, __global const float8 *b, __global float8 *y,\n"
    "                     ulong n8) {\n"
    "  ulong per = (n8 + get_global_size(0) - 1) / get_global_size(0);\n"
    "  ulong i = get_global_id(0) * per, e = min(n8, i + per);\n"
    "  for (; i < e; ++i) __builtin_nontemporal_store(a[i] + b[i], y + i);\n"
    "}\n";
static cl_kernel k_copy, k_add, k_empty, k_copy_stride, k_copy_chunk, k_copy_nt, k_add_nt, k_read;
static double    read_gbs; /* reading alone, for reference */
static size_t clnorm_round_up_sz(size_t v, size_t m) { return (v + m - 1) / m * m; }

static cl_mem alloc_buf(size_t bytes, float value)
{
    cl_int err;
    cl_mem m = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        FAIL("clCreateBuffer(%zu): %d", bytes, err);
    err = clEnqueueFillBuffer(q, m, &value, sizeof value, 0, bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        FAIL("clEnqueueFillBuffer: %d", err);
    return m;
}

/* Uniform values in [-1, 3) from a fixed LCG stream. */
static void fill_random(cl_mem m, size_t n, unsigned seed)
{
    float *h = malloc(n * sizeof *h);
    if (!h)
        FAIL("out of memory");
    for (size_t i = 0; i < n; ++i) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = (float)(seed >> 8) / 16777216.0f * 4.0f - 1.0f;
    }
    if (clEnqueueWriteBuffer(q, m, CL_TRUE, 0, n * 4, h, 0, NULL, NULL) != CL_SUCCESS)
        FAIL("writing the input failed");
    free(h);
}

typedef void (*run_fn)(void *arg);

/* Median seconds of one call of fn (enqueue + clFinish), after warm-up. */
static double time_median(run_fn fn, void *arg)
{
    double t[256];
    int    n = reps > 256 ? 256 : reps;
    fn(arg);
    clFinish(q);
    fn(arg);
    clFinish(q);
    for (int i = 0; i < n; ++i) {
        double t0 = bench_now();
        fn(arg);
        clFinish(q);
        t[i] = bench_now() - t0;
    }
    return bench_median(t, n);
}

typedef struct { cl_kernel k; size_t global, local; } kcall;
static kcall best_copy; /* the copy-kernel shape that measured fastest */
static kcall best_add;  /* ... and the two-reads-one-write one */
static kcall best_read; /* ... and the read-only one */
static void run_kernel(void *arg)
{
    kcall *c = arg;
    size_t g = c->global, l = c->local;
    cl_int err = clEnqueueNDRangeKernel(q, c->k, 1, NULL, &g, l ? &l : NULL, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        FAIL("enqueue reference kernel: %d", err);
}

static void set3(cl_kernel k, cl_mem a, cl_mem b, cl_ulong n)
{
    clSetKernelArg(k, 0, sizeof a, &a);
    clSetKernelArg(k, 1, sizeof b, &b);
    clSetKernelArg(k, 2, sizeof n, &n);
}
static void set4(cl_kernel k, cl_mem a, cl_mem b, cl_mem y, cl_ulong n)
{
    clSetKernelArg(k, 0, sizeof a, &a);
    clSetKernelArg(k, 1, sizeof b, &b);
    clSetKernelArg(k, 2, sizeof y, &y);
    clSetKernelArg(k, 3, sizeof n, &n);
}

/* The most a pass structure that reads the tensor from memory twice can
 * reach, as a fraction of copy bandwidth in the bench's own units, from the
 * three yardsticks (GB/s as the bench counts them). Training forward in a
 * layout whose statistics need every row before any output (channels last,
 * per-activation), on a tensor the last-level cache does not hold: a read
 * of x (at read), then a pass that moves what a copy moves (copy); the
 * bench counts 2x the tensor, so 1 / (1 + copy/(2 read)). Backward
 * likewise: x and dy read (2x at read), then two reads and a write (3x at
 * triad), against 3x at copy. A reference, not a target: a kernel that keeps
 * part of the tensor in cache between the passes can beat it. */
static double read_twice_fwd(double copy, double read)
{
    return read > 0 ? 1.0 / (1.0 + copy / (2.0 * read)) : 0;
}

static double read_twice_bwd(double copy, double read, double triad)
{
    return read > 0 && triad > 0 ? (3.0 / copy) / (2.0 / read + 3.0 / triad) : 0;
}

static double bound_fwd, bound_bwd; /* this run's, medians of alternated rounds */

/* The device's copy bandwidth: the best of a few copy-kernel shapes (one
 * float8 per work-item, grid-stride, contiguous chunk per work-item), so the
 * yardstick is what a good copy achieves, not a weak one. */
static void measure_reference(size_t bytes)
{
    cl_int       err;
    cl_device_id dev = clnorm_context_device(ctx);
    cl_program   p   = clCreateProgramWithSource(cl, 1, &ref_src, NULL, &err);
    if (err != CL_SUCCESS || clBuildProgram(p, 1, &dev, "", NULL, NULL) != CL_SUCCESS)
        FAIL("building the copy kernel failed");
    k_copy        = clCreateKernel(p, "copy8", &err);
    k_copy_stride = clCreateKernel(p, "copy_stride", &err);
    k_copy_chunk  = clCreateKernel(p, "copy_chunk", &err);
    k_add         = clCreateKernel(p, "add8", &err);
    k_read        = clCreateKernel(p, "read_chunk", &err);
    k_empty       = clCreateKernel(p, "empty", &err);
    clReleaseProgram(p);
    p = clCreateProgramWithSource(cl, 1, &nt_src, NULL, &err);
    if (err == CL_SUCCESS && clBuildProgram(p, 1, &dev, "", NULL, NULL) == CL_SUCCESS) {
        k_copy_nt = clCreateKernel(p, "copy_nt", &err);
        k_add_nt  = clCreateKernel(p, "add_nt", &err);
    }
    if (p)
        clReleaseProgram(p);
    cl_mem   a = alloc_buf(bytes, 1), b = alloc_buf(bytes, 2), y = alloc_buf(bytes, 0);
    cl_ulong n8 = bytes / 32;
    clnorm_device_info info;
    clnorm_context_device_info(ctx, &info);
    size_t cu = info.compute_units ? info.compute_units : 1;
    set3(k_copy, a, y, n8);
    set3(k_copy_stride, a, y, n8);
    set3(k_copy_chunk, a, y, n8);
    if (k_copy_nt)
        set3(k_copy_nt, a, y, n8);
    set4(k_add, a, b, y, n8);
    if (k_add_nt)
        set4(k_add_nt, a, b, y, n8);
    kcall tries[] = {{k_copy, (size_t)n8, 64},        {k_copy, (size_t)n8, 256},
                     {k_copy_stride, cu * 256, 64},    {k_copy_stride, cu * 2048, 256},
                     {k_copy_chunk, cu * 4, 1},        {k_copy_chunk, cu * 64, 1},
                     {k_copy_nt, cu * 4, 1},           {k_copy_nt, cu * 64, 1}};
    copy_gbs = 0;
    for (size_t i = 0; i < sizeof tries / sizeof *tries; ++i) {
        if (!tries[i].k || tries[i].local > info.max_work_group_size)
            continue;
        double gbs = 2.0 * bytes / time_median(run_kernel, &tries[i]) / 1e9;
        fprintf(stderr, "  copy variant %zu (global %zu, local %zu): %.2f GB/s\n", i, tries[i].global,
                tries[i].local, gbs);
        if (gbs > copy_gbs) {
            copy_gbs  = gbs;
            best_copy = tries[i];
        }
    }
    {
        cl_ulong n16 = n8 / 2;
        set3(k_read, a, y, n16);
        kcall cr[] = {{k_read, cu * 4, 1}, {k_read, cu * 64, 1}};
        read_gbs   = 0;
        for (size_t i = 0; i < sizeof cr / sizeof *cr; ++i) {
            double gbs = bytes / time_median(run_kernel, &cr[i]) / 1e9;
            fprintf(stderr, "  read-only variant %zu (global %zu, local 1): %.2f GB/s\n", i, cr[i].global, gbs);
            if (gbs > read_gbs) {
                read_gbs  = gbs;
                best_read = cr[i];
            }
        }
    }
    /* the same shapes for two reads and one write; the fastest is the
     * yardstick of the backward passes */
    kcall tries2[] = {{k_add, (size_t)n8, 64}, {k_add_nt, cu * 4, 1}, {k_add_nt, cu * 64, 1}};
    triad_gbs      = 0;
    for (size_t i = 0; i < sizeof tries2 / sizeof *tries2; ++i) {
        if (!tries2[i].k)
            continue;
        double gbs = 3.0 * bytes / time_median(run_kernel, &tries2[i]) / 1e9;
        fprintf(stderr, "  two-reads-one-write variant %zu (global %zu, local %zu): %.2f GB/s\n", i,
                tries2[i].global, tries2[i].local, gbs);
        if (gbs > triad_gbs) {
            triad_gbs = gbs;
            best_add  = tries2[i];
        }
    }
    /* The bounds weigh three kernels against each other, and on a shared
     * machine the memory's speed moves between the variant searches above
     * (a quiet moment caught by the copy alone halved the backward bound):
     * each round times the three fastest back to back, the bound is the
     * median over the rounds. */
    double bf[3], bb[3];
    for (int r = 0; r < 3; ++r) {
        double c = 2.0 * bytes / time_median(run_kernel, &best_copy) / 1e9;
        double rd = bytes / time_median(run_kernel, &best_read) / 1e9;
        double t = 3.0 * bytes / time_median(run_kernel, &best_add) / 1e9;
        bf[r]    = read_twice_fwd(c, rd);
        bb[r]    = read_twice_bwd(c, rd, t);
    }
    bound_fwd = bench_median(bf, 3);
    bound_bwd = bench_median(bb, 3);
    clReleaseMemObject(a);
    clReleaseMemObject(b);
    clReleaseMemObject(y);
    fprintf(stderr, "  read-twice bounds: forward %.2f, backward %.2f of copy\n", bound_fwd, bound_bwd);
}

/* ---- batch norm cases ----------------------------------------------------- */

enum dir { FWD_TRAIN, FWD_INFER, BWD, BWD_FROZEN };
static const char *dir_name[] = {"fwd-train", "fwd-infer", "bwd", "bwd-frozen"};

typedef struct bn_run {
    clnorm_bn_desc desc;
    clnorm_bn_args args;
    enum dir       dir;
} bn_run;

static void run_bn(void *arg)
{
    bn_run       *r = arg;
    clnorm_status st;
    switch (r->dir) {
    case FWD_TRAIN: st = clnorm_bn_forward_training(ctx, q, &r->desc, &r->args, 0, NULL, NULL); break;
    case FWD_INFER: st = clnorm_bn_forward_inference(ctx, q, &r->desc, &r->args, 0, NULL, NULL); break;
    case BWD: st = clnorm_bn_backward(ctx, q, &r->desc, &r->args, 0, NULL, NULL); break;
    default: st = clnorm_bn_backward_frozen(ctx, q, &r->desc, &r->args, 0, NULL, NULL); break;
    }
    if (st != CLNORM_SUCCESS)
        FAIL("%s: %s", clnorm_status_string(st), clnorm_last_error(ctx));
}

static int   fmt_csv, fmt_json, nrows;

/* The case's yardstick on the case's own buffers: the best copy kernel from
 * x to the output (forward) or the best two-reads-one-write from x and dy
 * (backward), at the tensor's size, alternated three times with the op so
 * that both see the same machine and the same memory. Returns copy time /
 * op time, the op's fraction of that yardstick (the traffic is the same).
 * Fair where the tensor fits a cache, and steady where a run's buffers or
 * a neighbour's load move both alike. 0 under 8 values. */
static double own_copy_frac(run_fn fn, void *arg, size_t n, int backward, cl_mem x, cl_mem dy, cl_mem out)
{
    cl_ulong n8 = n / 8; /* whole vectors of 8 within the buffers */
    if (n8 == 0)
        return 0; /* under 8 values: no copy to compare with */
    kcall    c  = backward ? best_add : best_copy;
    if (backward)
        set4(c.k, x, dy, out, n8);
    else
        set3(c.k, x, out, n8);
    if (c.k == k_copy || c.k == k_add)
        c.global = clnorm_round_up_sz(n8, c.local);
    double tc = 0, to = 0;
    for (int rep = 0; rep < 3; ++rep) {
        tc += time_median(run_kernel, &c);
        to += time_median(fn, arg);
    }
    return tc / to * (double)n / (double)(n8 * 8); /* per value: the copy may leave a tail */
}
static const char *ab_var; /* --ab VAR: time each case without and with VAR=1 */
static const char *only;   /* --only TEXT: cases whose "op dir layout shape" contains TEXT */
static int         vs_empty; /* tiny cases: also time one empty kernel, interleaved */

static int selected(const char *op, const char *dir, const char *layout, const char *shape)
{
    char key[160];
    snprintf(key, sizeof key, "%s %s %s %s", op, dir, layout, shape);
    return !only || strstr(key, only) != NULL;
}

/* Interleaved A/B of one case in this process (ratios survive a noisy
 * machine): ctx_a is the plain context, ctx_b the one made with --ab. */
static void ab_compare(void (*fn)(void *), void *arg, const char *op, const char *dir, const char *layout,
                       const char *shape)
{
    double a = 0, b = 0;
    for (int rep = 0; rep < 3; ++rep) {
        ctx = ctx_a;
        a += time_median(fn, arg);
        ctx = ctx_b;
        b += time_median(fn, arg);
    }
    ctx = ctx_a;
    printf("A/B %-10s %-10s %-6s %-22s  without %s %.3f ms, with %.3f ms, ratio %.2f\n", op, dir, layout,
           shape, ab_var, a / 3 * 1e3, b / 3 * 1e3, b / a);
}
static FILE *chart;

static double last_gbs; /* the last case's GB/s, for --native */

/* The performance targets, per class of case: the fraction of copy bandwidth a
 * case must reach (tensors of TARGET_MB and more), or for the tiny shapes
 * the most a call may take against one empty kernel's enqueue + finish. */
#define TARGET_MB 50.0
enum { T_BN_TRAIN, T_BN_INFER, T_BN_BWD, T_FAM_FWD, T_FAM_BWD, T_PERACT, T_TINY, T_CLASSES };
static const struct {
    const char *name;
    double      goal;
} target[T_CLASSES] = {
    {"batch norm forward training", 0.80}, {"batch norm forward inference", 0.90},
    {"batch norm backward", 0.75},         {"layer / RMS / group norm forward", 0.80},
    {"layer / RMS / group norm backward", 0.75}, {"per-activation batch norm, all directions", 0.70},
    {"tiny shapes: per call / empty kernel", 2.00},
};
/* per class, over the tensors of TARGET_MB and more [1] and over all [0]:
 * cases, cases meeting the goal, the worst figure */
static struct {
    int    cases, met;
    double worst;
} tally[T_CLASSES][2];

static int target_class(const char *op, const char *dir, double vs_empty)
{
    if (vs_empty > 0)
        return T_TINY;
    if (!strcmp(op, "bn-peract"))
        return T_PERACT;
    if (!strcmp(op, "bn"))
        return !strcmp(dir, "fwd-train") ? T_BN_TRAIN : !strcmp(dir, "fwd-infer") ? T_BN_INFER : T_BN_BWD;
    return !strcmp(dir, "fwd") ? T_FAM_FWD : T_FAM_BWD;
}

static void tally_case(int cls, double mb, double figure)
{
    int lower = cls == T_TINY; /* a latency ratio: lower is better */
    int ok    = lower ? figure <= target[cls].goal : figure >= target[cls].goal;
    for (int big = 0; big < 2; ++big) {
        if (big && mb < TARGET_MB && cls != T_TINY)
            continue;
        if (!tally[cls][big].cases || (lower ? figure > tally[cls][big].worst : figure < tally[cls][big].worst))
            tally[cls][big].worst = figure;
        ++tally[cls][big].cases;
        tally[cls][big].met += ok;
    }
}

/* The targets block: per class, the cases of TARGET_MB and more, or where a
 * class has none (per-activation: the suite's shapes are 8 and 16 MB) all of
 * its cases, saying so. */
static void print_targets(void)
{
    if (fmt_csv)
        return;
    if (fmt_json)
        printf("\n], \"targets\": [\n");
    else
        printf("targets (fractions of copy bandwidth over fp32 tensors of %.0f MB and more; this run):\n",
               TARGET_MB);
    int first = 1;
    for (int c = 0; c < T_CLASSES; ++c) {
        int big = tally[c][1].cases > 0;
        if (!tally[c][0].cases)
            continue;
        const char *scope = big ? "" : " (none of 50 MB or more: all sizes)";
        if (fmt_json)
            printf("%s    {\"class\": \"%s\", \"goal\": %.2f, \"cases\": %d, \"met\": %d, \"worst\": %.3f, "
                   "\"all_sizes\": %s}",
                   first ? "" : ",\n", target[c].name, target[c].goal, tally[c][big].cases, tally[c][big].met,
                   tally[c][big].worst, big ? "false" : "true");
        else
            printf("  %-42s %s %.2f  worst %5.2f  %d of %d cases meet it%s\n", target[c].name,
                   c == T_TINY ? "<=" : ">=", target[c].goal, tally[c][big].worst, tally[c][big].met,
                   tally[c][big].cases, scope);
        first = 0;
    }
}

/* One row of the table. tensor_bytes: the input's size; vs_empty: for the
 * tiny cases, a call's time over one empty kernel's (0 elsewhere). */
static void report(const char *op, const char *dir, const char *layout, const char *shape, double sec,
                   double bytes, double frac_own, double tensor_bytes, double vs_empty)
{
    double gbs = bytes / sec / 1e9, frac = gbs / copy_gbs, mb = tensor_bytes / 1e6;
    last_gbs   = gbs;
    int cls    = target_class(op, dir, vs_empty);
    tally_case(cls, mb, cls == T_TINY ? vs_empty : frac);
    if (fmt_csv)
        printf("%s,%s,%s,%s,%.4f,%.2f,%.3f,%.3f,%.2f,%.3f\n", op, dir, layout, shape, sec * 1e3, gbs, frac,
               frac_own, mb, vs_empty);
    else if (fmt_json)
        printf("%s    {\"op\": \"%s\", \"dir\": \"%s\", \"layout\": \"%s\", \"shape\": \"%s\", "
               "\"ms\": %.4f, \"gbs\": %.2f, \"frac_copy\": %.3f, \"frac_own_copy\": %.3f, "
               "\"tensor_mb\": %.2f, \"vs_empty\": %.3f}",
               nrows ? ",\n" : "", op, dir, layout, shape, sec * 1e3, gbs, frac, frac_own, mb, vs_empty);
    else
        printf("%-10s %-10s %-6s %-22s %10.3f %9.2f %7.2f %7.2f\n", op, dir, layout, shape, sec * 1e3, gbs, frac,
               frac_own);
    if (chart)
        fprintf(chart, "\"%s %s %s %s\" %.3f\n", op, dir, layout, shape, frac);
    fflush(stdout);
    ++nrows;
}

static void bench_bn(clnorm_bn_mode mode, clnorm_layout layout, size_t ndim, const size_t *dims,
                     const enum dir *dirs, int ndirs)
{
    bn_run r;
    memset(&r, 0, sizeof r);
    clnorm_bn_desc_init(&r.desc, mode, layout, ndim, dims);
    if (mode == CLNORM_BN_PER_ACTIVATION && dims[0] == 1)
        r.desc.unbiased_running_var = 0; /* one value per channel: no unbiased variance */
    size_t n = 1, C;
    for (size_t i = 0; i < ndim; ++i)
        n *= dims[i];
    C = mode == CLNORM_BN_PER_ACTIVATION ? n / dims[0] : layout == CLNORM_NCHW ? dims[1] : dims[ndim - 1];
    cl_mem x = alloc_buf(n * 4, 1.5f), y = alloc_buf(n * 4, 0), dy = alloc_buf(n * 4, 0.25f);
    cl_mem dx = alloc_buf(n * 4, 0), v[8];
    for (int i = 0; i < 8; ++i)
        v[i] = alloc_buf(C * 4, i == 5 ? 1.0f : 0.5f);
    fill_random(x, n, 1); /* non-constant, so the statistics are not trivial */
    r.args.x = clnorm_buf(x, 0);
    r.args.y = clnorm_buf(y, 0);
    r.args.dy = clnorm_buf(dy, 0);
    r.args.dx = clnorm_buf(dx, 0);
    r.args.gamma = clnorm_buf(v[0], 0);
    r.args.beta = clnorm_buf(v[1], 0);
    r.args.saved_mean = clnorm_buf(v[2], 0);
    r.args.saved_invstd = clnorm_buf(v[3], 0);
    r.args.running_mean = clnorm_buf(v[4], 0);
    r.args.running_var = clnorm_buf(v[5], 0);
    r.args.dgamma = clnorm_buf(v[6], 0);
    r.args.dbeta = clnorm_buf(v[7], 0);
    char shape[64];
    int  w = 0;
    for (size_t i = 0; i < ndim; ++i)
        w += snprintf(shape + w, sizeof shape - (size_t)w, "%s%zu", i ? "x" : "", dims[i]);
    const char *op = mode == CLNORM_BN_PER_ACTIVATION ? "bn-peract" : "bn";
    const char *lay = mode == CLNORM_BN_PER_ACTIVATION ? "-" : layout == CLNORM_NCHW ? "NCHW" : "NHWC";
    for (int d = 0; d < ndirs; ++d) {
        r.dir = dirs[d];
        if (!selected(op, dir_name[r.dir], lay, shape))
            continue;
        /* backward needs saved statistics from a forward */
        if (r.dir == BWD) {
            r.dir = FWD_TRAIN;
            run_bn(&r);
            r.dir = BWD;
        }
        fprintf(stderr, "  %s %s %s %s\n", op, dir_name[r.dir], lay, shape);
        double sec   = time_median(run_bn, &r);
        if (ab_var)
            ab_compare(run_bn, &r, op, dir_name[r.dir], lay, shape);
        double ratio = 0;
        if (vs_empty) {
            /* per-call latency against one empty kernel's enqueue + finish,
             * alternated so that both see the same machine */
            kcall  c = {k_empty, 1, 1};
            double e = 0, o = 0;
            for (int rep = 0; rep < 3; ++rep) {
                e += time_median(run_kernel, &c);
                o += time_median(run_bn, &r);
            }
            ratio = o / e;
            if (!fmt_csv && !fmt_json)
                printf("latency %-10s %-10s %-6s %-14s  %.4f ms per call, empty kernel %.4f ms: %.2fx\n", op,
                       dir_name[r.dir], lay, shape, o / 3 * 1e3, e / 3 * 1e3, ratio);
        }
        double bytes = (r.dir == BWD || (r.dir == BWD_FROZEN)) ? 3.0 * n * 4 : 2.0 * n * 4;
        if (r.dir == BWD_FROZEN)
            bytes = 3.0 * n * 4; /* frozen with dgamma reads x too */
        int bwd = r.dir == BWD || r.dir == BWD_FROZEN;
        report(op, dir_name[r.dir], lay, shape, sec, bytes,
               own_copy_frac(run_bn, &r, n, bwd, x, dy, bwd ? dx : y), n * 4.0, ratio);
    }
    clReleaseMemObject(x);
    clReleaseMemObject(y);
    clReleaseMemObject(dy);
    clReleaseMemObject(dx);
    for (int i = 0; i < 8; ++i)
        clReleaseMemObject(v[i]);
}

/* ---- the family: layer norm and group norm -------------------------------- */

typedef struct norm_run {
    int                   group; /* 0: layer norm, 1: group norm, 2: RMS norm */
    int                   backward;
    clnorm_norm_desc      nd;
    clnorm_groupnorm_desc gd;
    clnorm_norm_args      args;
} norm_run;

static void run_norm(void *arg)
{
    norm_run     *r = arg;
    clnorm_status st;
    if (r->group == 1)
        st = r->backward ? clnorm_groupnorm_backward(ctx, q, &r->gd, &r->args, 0, NULL, NULL)
                         : clnorm_groupnorm_forward(ctx, q, &r->gd, &r->args, 0, NULL, NULL);
    else if (r->group == 2)
        st = r->backward ? clnorm_rmsnorm_backward(ctx, q, &r->nd, &r->args, 0, NULL, NULL)
                         : clnorm_rmsnorm_forward(ctx, q, &r->nd, &r->args, 0, NULL, NULL);
    else
        st = r->backward ? clnorm_layernorm_backward(ctx, q, &r->nd, &r->args, 0, NULL, NULL)
                         : clnorm_layernorm_forward(ctx, q, &r->nd, &r->args, 0, NULL, NULL);
    if (st != CLNORM_SUCCESS)
        FAIL("%s: %s", clnorm_status_string(st), clnorm_last_error(ctx));
}

/* Layer norm (group 0) or RMS norm (2) over the last dim of (rows, cols),
 * or group norm (1) in layout (dims in memory order). */
static void bench_norm(int group, const size_t *dims, size_t ndim, size_t groups, clnorm_layout layout)
{
    norm_run r;
    memset(&r, 0, sizeof r);
    r.group  = group;
    size_t n = 1;
    for (size_t i = 0; i < ndim; ++i)
        n *= dims[i];
    size_t vec, stats;
    if (group == 1) {
        clnorm_groupnorm_desc_init(&r.gd, layout, ndim, dims, groups);
        vec   = layout == CLNORM_NHWC ? dims[ndim - 1] : dims[1];
        stats = dims[0] * groups;
    } else {
        clnorm_norm_desc_init(&r.nd, ndim, dims, -1);
        vec   = dims[ndim - 1];
        stats = n / vec;
    }
    cl_mem x = alloc_buf(n * 4, 0), y = alloc_buf(n * 4, 0), dy = alloc_buf(n * 4, 0.25f);
    cl_mem dx = alloc_buf(n * 4, 0), v[4], sv[2];
    for (int i = 0; i < 4; ++i)
        v[i] = alloc_buf(vec * 4, 0.5f);
    for (int i = 0; i < 2; ++i)
        sv[i] = alloc_buf(stats * 4, 1.0f);
    fill_random(x, n, 7);
    r.args.x      = clnorm_buf(x, 0);
    r.args.y      = clnorm_buf(y, 0);
    r.args.dy     = clnorm_buf(dy, 0);
    r.args.dx     = clnorm_buf(dx, 0);
    r.args.gamma  = clnorm_buf(v[0], 0);
    r.args.beta   = clnorm_buf(v[1], 0);
    r.args.dgamma = clnorm_buf(v[2], 0);
    r.args.dbeta  = clnorm_buf(v[3], 0);
    r.args.mean   = clnorm_buf(sv[0], 0);
    r.args.invstd = clnorm_buf(sv[1], 0);
    char shape[64];
    int  w = 0;
    for (size_t i = 0; i < ndim; ++i)
        w += snprintf(shape + w, sizeof shape - (size_t)w, "%s%zu", i ? "x" : "", dims[i]);
    if (group == 1)
        snprintf(shape + w, sizeof shape - (size_t)w, " G%zu", groups);
    const char *op  = group == 1 ? "groupnorm" : group == 2 ? "rmsnorm" : "layernorm";
    const char *lay = group != 1 ? "-" : layout == CLNORM_NHWC ? "NHWC" : "NCHW";
    for (int b = 0; b < 2; ++b) {
        if (!selected(op, b ? "bwd" : "fwd", lay, shape))
            continue;
        r.backward = 0;
        run_norm(&r); /* saved statistics for backward */
        r.backward = b;
        fprintf(stderr, "  %s %s %s\n", op, b ? "bwd" : "fwd", shape);
        double sec = time_median(run_norm, &r);
        if (ab_var)
            ab_compare(run_norm, &r, op, b ? "bwd" : "fwd", lay, shape);
        report(op, b ? "bwd" : "fwd", lay, shape, sec, (b ? 3.0 : 2.0) * n * 4,
               own_copy_frac(run_norm, &r, n, b, x, dy, b ? dx : y), n * 4.0, 0);
    }
    cl_mem all[] = {x, y, dy, dx, v[0], v[1], v[2], v[3], sv[0], sv[1]};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
}

static void bench_latency(void)
{
    kcall  c  = {k_empty, 1, 1};
    double te = time_median(run_kernel, &c);
    if (!fmt_csv && !fmt_json)
        printf("%-10s %-10s %-6s %-22s %10.4f\n", "empty", "kernel", "-", "1", te * 1e3);
    static const enum dir all[] = {FWD_TRAIN, FWD_INFER, BWD, BWD_FROZEN};
    size_t tiny[4] = {2, 4, 4, 4}, pa[2] = {1, 8};
    vs_empty = 1;
    bench_bn(CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, tiny, all, 4);
    bench_bn(CLNORM_BN_PER_ACTIVATION, CLNORM_NCHW, 2, pa, all, 4);
    vs_empty = 0;
    if (!fmt_csv && !fmt_json)
        printf("(tiny shapes: compare ms with the empty kernel's enqueue + finish above)\n");
}

/* --first-call: time context creation plus the first training forward in
 * this (fresh) process, which builds or loads the programs. */
static int first_call(void)
{
    double        t0 = bench_now();
    clnorm_status st = clnorm_context_create_default(NULL, &ctx);
    if (st != CLNORM_SUCCESS)
        FAIL("clnorm: %s: %s", clnorm_status_string(st), clnorm_last_error(NULL));
    cl = clnorm_context_cl_context(ctx);
    q  = clnorm_context_queue(ctx);
    size_t         dims[4] = {2, 4, 4, 4};
    bn_run         r;
    memset(&r, 0, sizeof r);
    clnorm_bn_desc_init(&r.desc, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, dims);
    cl_mem x = alloc_buf(128 * 4, 1), y = alloc_buf(128 * 4, 0);
    clFinish(q);
    double t1 = bench_now();
    r.args.x = clnorm_buf(x, 0);
    r.args.y = clnorm_buf(y, 0);
    r.dir    = FWD_TRAIN;
    run_bn(&r);
    clFinish(q);
    double t2 = bench_now();
    printf("%.1f %.1f\n", (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
    clnorm_context_destroy(ctx);
    return 0;
}

/* Runs this program with --first-call in fresh processes: once with empty
 * program caches (clnorm's and PoCL's), once again with them filled. */
static void cold_warm(const char *self)
{
    char dir[] = "/tmp/clnorm-coldwarm-XXXXXX";
    if (!mkdtemp(dir))
        FAIL("mkdtemp failed");
    const char *label[2] = {"cold cache", "warm cache"};
    for (int i = 0; i < 2; ++i) {
        char cmd[1024], line[128] = "";
        snprintf(cmd, sizeof cmd, "CLNORM_CACHE_DIR=%s/clnorm POCL_CACHE_DIR=%s/pocl '%s' --first-call", dir,
                 dir, self);
        FILE *f = popen(cmd, "r");
        if (!f || !fgets(line, sizeof line, f))
            FAIL("running %s failed", cmd);
        pclose(f);
        double create, call;
        if (sscanf(line, "%lf %lf", &create, &call) == 2)
            printf("first call in a fresh process, %s: context %.1f ms, first forward (build or load + "
                   "run) %.1f ms\n",
                   label[i], create, call);
    }
    char rm[1100];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* --native: the library's batch norm on (N,64,112,112) both layouts next
 * to plain-C models of the same passes on the host's threads (native.c),
 * alternated three times; the medians. */
static void native_compare(size_t N, int quick)
{
    int         nt          = native_threads();
    size_t      copy_floats = (quick ? (size_t)64 << 20 : (size_t)256 << 20) / 4; /* as the yardstick */
    native_set *set         = native_open(nt, N, copy_floats);
    if (!set)
        FAIL("--native: out of memory");
    static const enum dir fb[2] = {FWD_TRAIN, BWD};
    size_t nhwc[4] = {N, 112, 112, 64}, nchw[4] = {N, 64, 112, 112};
    double nat[NATIVE_CASES][3], lib[NATIVE_CASES][3], host[3];
    for (int rep = 0; rep < 3; ++rep) {
        fprintf(stderr, "  native models, %d threads, round %d of 3\n", nt, rep + 1);
        host[rep] = native_copy(set, reps);
        for (int k = 0; k < NATIVE_CASES; ++k) {
            nat[k][rep] = native_case(set, k, reps);
            last_gbs    = 0;
            bench_bn(CLNORM_BN_SPATIAL, k < 2 ? CLNORM_NHWC : CLNORM_NCHW, 4, k < 2 ? nhwc : nchw, &fb[k % 2],
                     1);
            lib[k][rep] = last_gbs;
        }
    }
    native_close(set);
    if (fmt_csv || fmt_json)
        return;
    double hm = bench_median(host, 3);
    printf("native models (plain C, %d threads, %s), medians of 3 alternations: host copy %.2f GB/s "
           "(this device's copy kernel %.2f)\n",
           nt, native_streaming() ? "streaming stores" : "plain stores", hm, copy_gbs);
    for (int k = 0; k < NATIVE_CASES; ++k) {
        char shape[64];
        snprintf(shape, sizeof shape, k < 2 ? "%zux112x112x64" : "%zux64x112x112", N);
        double ratio[3];
        for (int r = 0; r < 3; ++r)
            ratio[r] = lib[k][r] / nat[k][r];
        double nm = bench_median(nat[k], 3), lm = bench_median(lib[k], 3), rm = bench_median(ratio, 3);
        printf("  %-16s %-14s native %6.2f GB/s (%.2f of host copy)  clnorm %6.2f GB/s: %.2f of native "
               "(%.2f - %.2f)\n",
               native_case_name(k), shape, nm, nm / hm, lm, rm, ratio[0], ratio[2]);
    }
}

static void usage(void)
{
    printf("usage: clnorm_bench [--quick] [--csv|--json] [--reps N] [--batch N] [--chart FILE.svg]\n"
           "                    [--ab VAR[=VALUE]]  (A/B: each case on a context created without and with it)\n"
           "                    [--ln ROWSxCOLS]  (one more layer norm shape)\n"
           "                    [--only TEXT]  (only cases whose \"op dir layout shape\" contains TEXT)\n"
           "       clnorm_bench --cold-warm  (first-call latency, fresh process, cold and warm cache)\n"
           "       clnorm_bench --native [--quick] [--reps N] [--batch N]  (batch norm (N,64,112,112) next\n"
           "                    to plain-C models of the same passes on the host's threads: a CPU's ceiling)\n"
           "  Measures copy bandwidth with its own copy kernel, then times every op: median ms,\n"
           "  GB/s at minimal traffic (forward 2x the tensor, backward 3x) and the fraction\n"
           "  of copy bandwidth; x own: the fraction of a copy on the case's own buffers,\n"
           "  alternated with it. Device: CLNORM_DEVICE as for the library.\n");
}

int main(int argc, char **argv)
{
    int         quick = 0, native = 0;
    size_t      N = 32, ln_extra[2] = {0, 0};
    const char *chart_path = NULL;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--csv"))
            fmt_csv = 1;
        else if (!strcmp(argv[i], "--json"))
            fmt_json = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            N = strtoul(argv[++i], NULL, 10);
            if (N == 0) {
                fprintf(stderr, "clnorm_bench: --batch needs a positive number, not '%s'\n", argv[i]);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--native"))
            native = 1;
        else if (!strcmp(argv[i], "--first-call"))
            return first_call();
        else if (!strcmp(argv[i], "--cold-warm")) {
            cold_warm(argv[0]);
            return 0;
        } else if (!strcmp(argv[i], "--ab") && i + 1 < argc)
            ab_var = argv[++i];
        else if (!strcmp(argv[i], "--ln") && i + 1 < argc) {
            if (sscanf(argv[++i], "%zux%zu", &ln_extra[0], &ln_extra[1]) != 2 || !ln_extra[0] ||
                !ln_extra[1]) {
                usage();
                return 2;
            }
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--chart") && i + 1 < argc)
            chart_path = argv[++i];
        else {
            usage();
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (reps < 1)
        reps = 1;
    clnorm_status st = clnorm_context_create_default(NULL, &ctx);
    if (st != CLNORM_SUCCESS)
        FAIL("clnorm: %s: %s", clnorm_status_string(st), clnorm_last_error(NULL));
    cl = clnorm_context_cl_context(ctx);
    q  = clnorm_context_queue(ctx);
    ctx_a = ctx;
    if (ab_var) {
        /* variables are read when a context is created */
        /* VAR or VAR=VALUE */
        char        name[256];
        const char *eq = strchr(ab_var, '=');
        size_t      nl = eq ? (size_t)(eq - ab_var) : strlen(ab_var);
        if (nl >= sizeof name)
            FAIL("--ab: variable name too long");
        memcpy(name, ab_var, nl);
        name[nl] = '\0';
        setenv(name, eq ? eq + 1 : "1", 1);
        st = clnorm_context_create(cl, clnorm_context_device(ctx), &ctx_b);
        unsetenv(name);
        if (st != CLNORM_SUCCESS)
            FAIL("clnorm: %s: %s", clnorm_status_string(st), clnorm_last_error(NULL));
    }
    clnorm_device_info info;
    clnorm_context_device_info(ctx, &info);
    fprintf(stderr, "device: %s (%s)\n", info.name, info.platform_name);
    measure_reference(quick ? ((size_t)64 << 20) : ((size_t)256 << 20));
    char tmp_data[] = "/tmp/clnorm-chart-XXXXXX";
    if (chart_path) {
        int fd = mkstemp(tmp_data);
        chart  = fd >= 0 ? fdopen(fd, "w") : NULL;
    }
    if (fmt_csv)
        printf("op,dir,layout,shape,ms,gbs,frac_copy,frac_own_copy,tensor_mb,vs_empty\n");
    else if (fmt_json)
        printf("{\"device\": \"%s\", \"copy_gbs\": %.2f, \"read2write1_gbs\": %.2f, \"read_gbs\": %.2f, "
               "\"read_twice_fwd\": %.3f, \"read_twice_bwd\": %.3f, \"results\": [\n",
               info.name, copy_gbs, triad_gbs, read_gbs, bound_fwd, bound_bwd);
    else {
        printf("device: %s (%s, %u CUs)\n", info.name, info.platform_name, info.compute_units);
        printf("copy bandwidth (own copy kernel, read+write): %.2f GB/s; two reads + one write: %.2f GB/s;"
               " read only: %.2f GB/s\n",
               copy_gbs, triad_gbs, read_gbs);
        printf("reading the tensor from memory twice (channels-last training past the last-level cache)"
               " reaches at most: forward %.2f, backward %.2f of copy\n",
               bound_fwd, bound_bwd);
        printf("%-10s %-10s %-6s %-22s %10s %9s %7s %7s\n", "op", "dir", "layout", "shape", "median ms", "GB/s",
               "x copy", "x own");
    }

    if (native) {
        if (!(info.type & CL_DEVICE_TYPE_CPU))
            fprintf(stderr, "--native: %s is not a CPU; the host models say nothing about it\n", info.name);
        native_compare(N, quick);
        goto done;
    }
    static const enum dir all[] = {FWD_TRAIN, FWD_INFER, BWD, BWD_FROZEN};
    static const size_t resnet[][3] = {{64, 112, 112}, {64, 56, 56},   {256, 56, 56}, {128, 28, 28},
                                       {512, 28, 28},  {256, 14, 14}, {1024, 14, 14}, {2048, 7, 7}};
    size_t nres = quick ? 2 : sizeof resnet / sizeof *resnet;
    for (int lay = 0; lay < 2; ++lay)
        for (size_t s = 0; s < nres; ++s) {
            size_t si = quick ? s * 2 + 1 : s;
            size_t d[4];
            if (lay == 0) {
                d[0] = N; d[1] = resnet[si][0]; d[2] = resnet[si][1]; d[3] = resnet[si][2];
            } else {
                d[0] = N; d[1] = resnet[si][1]; d[2] = resnet[si][2]; d[3] = resnet[si][0];
            }
            bench_bn(CLNORM_BN_SPATIAL, lay == 0 ? CLNORM_NCHW : CLNORM_NHWC, 4, d, all, 4);
        }
    size_t pa1[2] = {512, 4096}, pa2[2] = {65536, 64};
    bench_bn(CLNORM_BN_PER_ACTIVATION, CLNORM_NCHW, 2, pa1, all, 4);
    bench_bn(CLNORM_BN_PER_ACTIVATION, CLNORM_NCHW, 2, pa2, all, 4);
    static const size_t ln[][2] = {{8192, 768}, {2048, 4096}, {32768, 128}, {16384, 1024}};
    for (size_t i = 0; i < (quick ? 2 : 4); ++i)
        bench_norm(0, ln[i], 2, 0, CLNORM_NCHW);
    for (size_t i = 0; i < (quick ? 1 : 4); ++i)
        bench_norm(2, ln[i], 2, 0, CLNORM_NCHW);
    if (ln_extra[0])
        bench_norm(0, ln_extra, 2, 0, CLNORM_NCHW);
    size_t gn[4] = {quick ? 8 : 32, 256, 56, 56}, gn_last[4] = {gn[0], 56, 56, 256};
    bench_norm(1, gn, 4, 32, CLNORM_NCHW);
    bench_norm(1, gn_last, 4, 32, CLNORM_NHWC);
    bench_latency();
    print_targets();

done:
    if (fmt_json)
        printf("\n]}\n");
    else if (!fmt_csv)
        printf("copy bandwidth %.2f GB/s (median of %d)\n", copy_gbs, reps);
    if (chart) {
        fclose(chart);
        char cmd[8192];
        snprintf(cmd, sizeof cmd,
                 "gnuplot -e \"set terminal svg size 1400,700; set output '%s'; set style data histogram;"
                 " set style fill solid; set xtics rotate by -60 font ',8'; set yrange [0:1.2];"
                 " set ylabel 'fraction of copy bandwidth'; set key off;"
                 " plot '%s' using 2:xtic(1)\"",
                 chart_path, tmp_data);
        if (system(cmd) != 0)
            fprintf(stderr, "gnuplot failed; data left in %s\n", tmp_data);
        else
            remove(tmp_data);
    }
    clReleaseKernel(k_copy);
    clReleaseKernel(k_copy_stride);
    clReleaseKernel(k_copy_chunk);
    clReleaseKernel(k_add);
    clReleaseKernel(k_empty);
    clReleaseKernel(k_read);
    if (k_copy_nt)
        clReleaseKernel(k_copy_nt);
    if (k_add_nt)
        clReleaseKernel(k_add_nt);
    clnorm_context_destroy(ctx_b);
    clnorm_context_destroy(ctx_a);
    return 0;
}
