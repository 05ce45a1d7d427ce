/* internal.h: the context structure and the helpers shared by the host
 * layer's translation units. Not installed. */
#ifndef CLNORM_INTERNAL_H
#define CLNORM_INTERNAL_H

#include "clnorm/clnorm.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Program families; each is common.cl plus one family source. */
enum clnorm_family { FAMILY_BN = 0, FAMILY_ROWNORM = 1, FAMILY_COUNT_ };
#define DTYPE_COUNT_ 4
#define MAX_KERNELS_PER_FAMILY 32

typedef struct clnorm_program {
    cl_program prog;
    cl_kernel  kernels[MAX_KERNELS_PER_FAMILY];
    int        ready; /* every kernel of the family created */
} clnorm_program;

/* Variant parameters chosen per device (heuristics, overridable for tests
 * with CLNORM_VARIANT=cpu|gpu). */
typedef struct clnorm_tuning {
    int      cpu_style;     /* 1: few coarse work-items walking contiguous data */
    unsigned lx;            /* lanes per (channel, chunk) in the rows walks */
    size_t   chunk;         /* elements one work-item (or lane group) reduces */
    size_t   row_min_tpi;   /* CPUs: rows a lane takes at least (it prefetches the next) */
    size_t   min_parallel;  /* work-items wanted in a reduction for the device to be full */
    size_t   part_rows_min; /* rows one column partial sums at least: below that, the
                             * 16-byte partials cost traffic comparable to the values */
    unsigned rows_min_inner;/* I at and above which the rows walk is used */
    size_t   fuse_min_channels; /* fused one-kernel ops: channels to fill the device */
    size_t   fuse_max_slice;    /* ... and the largest per-channel slice (elements) */
    size_t   fuse_small_total;  /* tensors this small always take the fused kernel */
    size_t   cfuse_max_block;   /* channels-last fused (CPUs): bytes of one work-item's columns */
    size_t   bfuse_max_inner;   /* channels-first block walk (CPUs): largest I ... */
    size_t   bfuse_max_block;   /* ... and bytes of one work-item's block of slices */
    size_t   gn_lead_bytes;     /* group norm channels first (CPUs, streaming stores): how far
                                 * ahead a work-item reads the rows it will write; 0: off */
    int      no_pfused;         /* CLNORM_NO_PFUSED: large channels-first slices one channel per
                                 * work-item, not pipelined (A/B) */
    int      no_gncf;           /* CLNORM_NO_GNCF: group norm channels last not by sample blocks (A/B) */
    int      no_bfused;         /* CLNORM_NO_BFUSED: small maps by channel, not in memory order (A/B) */
    int      no_fused;          /* CLNORM_NO_FUSED set at creation (tests, A/B) */
    int      no_flat;           /* CLNORM_NO_FLAT: inference by channel, not in memory order (A/B) */
    int      nt;                /* streaming stores built in (-DCLNORM_NT): clang-based CPU compilers */
    int      vcast;             /* vector loads/stores through element-aligned vector types
                                 * (-DCLNORM_VCAST): PoCL */
    size_t   nt_min_bytes;      /* outputs this large are written with them */
    char     extra_options[256];/* CLNORM_BUILD_OPTIONS at creation */
} clnorm_tuning;

/* A kernel-variant choice for one (op, shape class): from the heuristics,
 * from the tuner's file, or forced while the tuner measures. */
typedef struct clnorm_choice {
    int    fused; /* -1: heuristic; 0/1: off/on */
    size_t chunk; /* 0: heuristic; else elements per work-item in reductions */
    size_t par;   /* 0: heuristic; else work-items wanted in a reduction */
} clnorm_choice;

typedef struct clnorm_tuned {
    unsigned      key; /* clnorm_shape_key */
    clnorm_choice choice;
} clnorm_tuned;

#define CLNORM_MAX_TUNED 256

struct clnorm_context {
    cl_context       clctx;
    cl_device_id     device;
    cl_command_queue queue;
    clnorm_device_info info;
    clnorm_tuning    tune;
    clnorm_program   programs[FAMILY_COUNT_][DTYPE_COUNT_];
    int              forcing; /* the tuner is measuring: use force */
    clnorm_choice    force;
    clnorm_tuned     tuned[CLNORM_MAX_TUNED];
    size_t           ntuned;
    cl_mem           scratch;
    size_t           scratch_size;
    char             err[8192];
};

/* Records a formatted message in ctx (or the thread's message when ctx is
 * NULL) and returns status. */
clnorm_status clnorm_fail(clnorm_context *ctx, clnorm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void clnorm_clear_error(clnorm_context *ctx);

/* Returns the kernel `index` of family for dtype, building the program on
 * first use (disk cache consulted). names lists the family's kernels. */
clnorm_status clnorm_get_kernel(clnorm_context *ctx, enum clnorm_family family, clnorm_dtype dtype,
                                unsigned index, cl_kernel *out);

/* Builds the family's program and creates all its kernels, once; called
 * before an operation enqueues anything, so a build failure leaves every
 * output untouched. */
clnorm_status clnorm_prepare(clnorm_context *ctx, enum clnorm_family family, clnorm_dtype dtype);

/* Scratch of at least bytes: the caller's workspace if given (checked),
 * else the context's own grow-only buffer. */
clnorm_status clnorm_get_scratch(clnorm_context *ctx, clnorm_buffer workspace, size_t bytes,
                                 cl_mem *mem, size_t *byte_offset);

/* Validates the queue (same context and device) and the wait list. */
clnorm_status clnorm_check_queue(clnorm_context *ctx, cl_command_queue queue, cl_uint nwait,
                                 const cl_event *wait);

/* Checks an input/output buffer: present when required, of ctx's cl_context,
 * and holding offset + count elements of elem_size bytes. */
clnorm_status clnorm_check_buffer(clnorm_context *ctx, const char *name, clnorm_buffer b,
                                  int required, size_t count, size_t elem_size);

/* epsilon must be a positive normal number of the parameter type, so that
 * var + eps stays positive after the conversion to it. */
clnorm_status clnorm_check_epsilon(clnorm_context *ctx, const char *fn, clnorm_dtype dtype, double eps);

/* Checks a caller's workspace that is present: a valid buffer of ctx's
 * cl_context at a 128-byte aligned offset (its size is checked when used). */
clnorm_status clnorm_check_workspace(clnorm_context *ctx, clnorm_buffer workspace);

size_t clnorm_dtype_size(clnorm_dtype dtype);
size_t clnorm_param_size(clnorm_dtype dtype);
clnorm_status clnorm_check_dtype(clnorm_context *ctx, clnorm_dtype dtype);

/* Disk-cache helpers (program.c). */
typedef struct { uint64_t a, b; } clnorm_hash128;
void           clnorm_hash_bytes(clnorm_hash128 *h, const void *data, size_t n);
void           clnorm_hash_str(clnorm_hash128 *h, const char *s);
int            clnorm_cache_dir(char *out, size_t n);
int            clnorm_mkdir_p(char *path);
unsigned char *clnorm_read_file(const char *path, size_t *len);
void clnorm_write_file_atomic(const char *dir, const char *path, const unsigned char *data, size_t len);
/* The binary cache's size limit (CLNORM_CACHE_MAX_SIZE, default 256 MiB, 0:
 * none), and its trim: removes the least recently modified binaries (names
 * of 32 hex digits and ".bin") other than keep until the binaries total
 * limit bytes at most (0: no limit), and temporary files abandoned over an
 * hour ago; touches nothing else, fails silently. */
unsigned long long clnorm_cache_limit(void);
void               clnorm_cache_prune(const char *dir, const char *keep, unsigned long long limit);

/* Tuning (tune.c): the shape class of a batch norm plan, the choice for it,
 * and the per-device file of tuned choices. */
enum { CLNORM_WALK_COLS = 0, CLNORM_WALK_ROWS = 1, CLNORM_WALK_INNER_COLS = 2 };
unsigned      clnorm_shape_key(char dir, int walk, size_t slice, size_t channels);
int           clnorm_bn_walk(const clnorm_context *ctx, size_t I); /* CLNORM_WALK_* for inner extent I */
clnorm_choice clnorm_lookup_choice(const clnorm_context *ctx, unsigned key);
void          clnorm_load_tuning(clnorm_context *ctx);

/* Kernel sources embedded at build time (cmake/embed_kernels.cmake). */
extern const char clnorm_kernel_common[];
extern const char clnorm_kernel_batchnorm[];
extern const char clnorm_kernel_rownorm[];

/* An enqueue sequence: chains its commands with events when the queue is
 * out of order, passes the caller's wait list to the first command and
 * hands the last command's event to the caller. */
typedef struct clnorm_seq {
    cl_command_queue queue;
    int              out_of_order;
    cl_uint          nwait;
    const cl_event  *wait;
    cl_event         last;
    int              started;
    int              want_event;
} clnorm_seq;

clnorm_status clnorm_seq_begin(clnorm_context *ctx, clnorm_seq *seq, cl_command_queue queue,
                               cl_uint nwait, const cl_event *wait, int want_event);
/* Enqueues kernel over global (dims 1..3); local may be NULL. */
clnorm_status clnorm_seq_run(clnorm_context *ctx, clnorm_seq *seq, cl_kernel kernel, cl_uint dims,
                             const size_t *global, const size_t *local);
/* Finishes the sequence: on success the last event goes to *event (or is
 * released); on failure every event is released. */
clnorm_status clnorm_seq_end(clnorm_seq *seq, clnorm_status status, cl_event *event);

/* Column streams (CPUs, channels last): batch norm's kernels, which group
 * norm channels last shares. O rows of W values come in segments of Sp rows
 * (batch norm: one), each cut into Kc chunks of R rows, K work-items in all;
 * the elementwise passes take rpw rows per work-item and the coefficient
 * planes (4 of W reals) of each segment in turn. */
typedef struct clnorm_cstream {
    clnorm_dtype dtype;
    cl_uint      O, W, Sp, R, Kc, K, rpw;
    cl_mem       x, dy, out, ws, mean;
    cl_ulong     xoff, dyoff, ooff, moff;
    cl_ulong     poff, soff, cofs; /* partials (real4s), state and coefficients (reals) */
    cl_uint      I, mstride;       /* backward sums: inner size, means per segment */
    cl_int       stream, use_x, gform;
    cl_int       sums_dx;          /* 'b' also writes dx = a*dy to out (frozen batch norm) */
} clnorm_cstream;
/* Enqueues one pass: 's' statistics partials, 'b' gradient sums, 'a' apply
 * (x to out), 'd' dx (out) (batchnorm.c). */
clnorm_status clnorm_cs_run(clnorm_context *ctx, clnorm_seq *seq, const clnorm_cstream *c, char pass);
/* Builds what a caller of the streams needs before it enqueues anything:
 * the statistics and apply passes, or (backward) the sums and dx passes,
 * not the rest of batch norm's kernels. */
clnorm_status clnorm_cs_prepare(clnorm_context *ctx, clnorm_dtype dtype, int backward);

/* Group norm channels last on CPUs through gn_fwd_cfused / gn_bwd_cfused
 * (batchnorm.c): a work-item owns cw channels, whole groups, of a sample and
 * walks its Sp rows of them twice. out is y or dx; tab (backward, may be
 * NULL) the (n, c) table of real4 for dgamma/dbeta at tofs. */
typedef struct clnorm_gncf {
    clnorm_dtype dtype;
    size_t       psize; /* bytes of a real */
    cl_uint      N, Sp, C, cpg, cw;
    cl_uint      nbw;   /* forward: blocks per work-item (> 1: pipelined) */
    cl_mem       x, dy, out, gamma, beta, mean, inv, tab;
    cl_ulong     xoff, dyoff, ooff, goff, boff, moff, ioff, tofs;
    double       eps;
    cl_int       stream;
} clnorm_gncf;
clnorm_status clnorm_gncf_run(clnorm_context *ctx, clnorm_seq *seq, const clnorm_gncf *g, int backward);
/* Builds the kernel clnorm_gncf_run will need. */
clnorm_status clnorm_gncf_prepare(clnorm_context *ctx, clnorm_dtype dtype, int backward);

/* Sets kernel arguments from a list; each entry is (size, pointer). */
typedef struct clnorm_karg {
    size_t      size;
    const void *value;
} clnorm_karg;
clnorm_status clnorm_set_args(clnorm_context *ctx, cl_kernel kernel, const clnorm_karg *args,
                              unsigned count);
#define KARG(v) { sizeof(v), &(v) }

static inline size_t clnorm_round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }
static inline size_t clnorm_div_up(size_t v, size_t m) { return (v + m - 1) / m; }

/* Multiplies with overflow detection; returns 0 on overflow. */
static inline int clnorm_mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

#endif /* CLNORM_INTERNAL_H */
