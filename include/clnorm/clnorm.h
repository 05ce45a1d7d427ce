/* clnorm: normalization layers (batch norm and its family) as OpenCL kernels
 * for any OpenCL 1.2 device. This is the library's only public header. */
#ifndef CLNORM_CLNORM_H
#define CLNORM_CLNORM_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#if defined(CLNORM_BUILDING)
#define CLNORM_API __declspec(dllexport)
#else
#define CLNORM_API
#endif
#else
#define CLNORM_API __attribute__((visibility("default")))
#endif

#define CLNORM_VERSION_MAJOR 0
#define CLNORM_VERSION_MINOR 1
#define CLNORM_VERSION_PATCH 0
#define CLNORM_VERSION_NUMBER \
    (CLNORM_VERSION_MAJOR * 10000 + CLNORM_VERSION_MINOR * 100 + CLNORM_VERSION_PATCH)

/* Run-time version as MAJOR*10000 + MINOR*100 + PATCH. */
CLNORM_API unsigned clnorm_version_number(void);
/* Run-time version as "MAJOR.MINOR.PATCH"; never NULL. */
CLNORM_API const char *clnorm_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status                                                                   */
/* ------------------------------------------------------------------------ */

/* The library's own statuses. OpenCL errors are passed through unchanged with
 * their CL_* values (all between -1 and -1100), so a clnorm_status is either
 * CLNORM_SUCCESS, a CL error code, or one of the values below (-2000 and less). */
#define CLNORM_STATUS_MAP(XX)                                                             \
    XX(SUCCESS, 0, "success")                                                            \
    XX(ERROR_NULL_CONTEXT, -2001, "the clnorm context is NULL")                          \
    XX(ERROR_NULL_ARGUMENT, -2002, "a required argument or buffer is NULL")              \
    XX(ERROR_INVALID_SHAPE, -2003, "a dimension is zero or the rank is out of range")    \
    XX(ERROR_SIZE_OVERFLOW, -2004, "a size overflows the range the library can index")   \
    XX(ERROR_BUFFER_TOO_SMALL, -2005, "a buffer is smaller than offset plus extent")     \
    XX(ERROR_INVALID_EPSILON, -2006, "epsilon must be a positive normal number")         \
    XX(ERROR_INVALID_MOMENTUM, -2007, "the running-average factor must lie in [0, 1]")  \
    XX(ERROR_INVALID_LAYOUT, -2008, "unknown tensor layout")                             \
    XX(ERROR_INVALID_MODE, -2009, "unknown normalization mode")                          \
    XX(ERROR_INVALID_DTYPE, -2010, "unknown data type")                                  \
    XX(ERROR_UNSUPPORTED_DTYPE, -2011, "the device does not support this data type")     \
    XX(ERROR_INVALID_AXIS, -2012, "axis out of range")                                   \
    XX(ERROR_INVALID_GROUPS, -2013, "number of groups must be positive and divide C")    \
    XX(ERROR_NO_DEVICE, -2014, "no OpenCL device found")                                 \
    XX(ERROR_DEVICE_NOT_FOUND, -2015, "no OpenCL device matches the selector")           \
    XX(ERROR_BUILD_FAILED, -2016, "an OpenCL kernel failed to build (see last error)")   \
    XX(ERROR_OUT_OF_HOST_MEMORY, -2017, "host memory allocation failed")                 \
    XX(ERROR_INVALID_QUEUE, -2018, "the queue is invalid or belongs to another context") \
    XX(ERROR_INVALID_BUFFER, -2019, "a buffer is invalid or belongs to another context") \
    XX(ERROR_INVALID_ARGUMENT, -2020, "an argument is out of its range")                 \
    XX(ERROR_INVALID_WAIT_LIST, -2021, "event wait list and its count do not match")

typedef enum clnorm_status {
#define CLNORM_STATUS_ENUM_(name, value, text) CLNORM_##name = value,
    CLNORM_STATUS_MAP(CLNORM_STATUS_ENUM_)
#undef CLNORM_STATUS_ENUM_
    CLNORM_STATUS_MIN_ = -2147483647 /* keeps the enum wide enough for CL codes */
} clnorm_status;

/* Human-readable text for a status (clnorm's own and OpenCL's); never NULL. */
CLNORM_API const char *clnorm_status_string(clnorm_status status);
/* The status's symbolic name, e.g. "CLNORM_ERROR_NULL_ARGUMENT" or
 * "CL_OUT_OF_RESOURCES"; never NULL. */
CLNORM_API const char *clnorm_status_name(clnorm_status status);

/* ------------------------------------------------------------------------ */
/* Context                                                                  */
/* ------------------------------------------------------------------------ */

/* A clnorm context holds the built programs, kernels and scratch memory for
 * one OpenCL device. Thread safety: one context must not be used by two
 * threads at the same time (kernel arguments are set on shared kernel
 * objects); use one context per thread. Different contexts, even on the same
 * cl_context and device, are independent and may be used concurrently. The
 * functions that take no context (version, status strings, device listing
 * and selection) are thread-safe. */
typedef struct clnorm_context clnorm_context;

/* Creates a context on the caller's OpenCL context and device. The cl_context
 * and device are retained, not owned; a default in-order queue is created for
 * convenience (clnorm_context_queue) but every enqueue call takes a queue.
 * @param[in]  cl_ctx  the caller's OpenCL context
 * @param[in]  device  a device of cl_ctx
 * @param[out] ctx     the new context; untouched on failure */
CLNORM_API clnorm_status clnorm_context_create(cl_context       cl_ctx,
                                               cl_device_id     device,
                                               clnorm_context **ctx);

/* Creates a context on a device chosen by selector, or when selector is NULL
 * by the CLNORM_DEVICE environment variable, or else the default rule (the
 * first GPU, else the first device). A selector is "P:D" (platform and device
 * indices), "D" (device index over all platforms in order), or a substring of
 * the device name (case-insensitive).
 * @param[in]  selector  device selector or NULL
 * @param[out] ctx       the new context; untouched on failure */
CLNORM_API clnorm_status clnorm_context_create_default(const char *selector, clnorm_context **ctx);

/* Releases a context and everything it holds; accepts NULL. Commands already
 * enqueued keep their buffers alive until they complete (OpenCL semantics). */
CLNORM_API void clnorm_context_destroy(clnorm_context *ctx);

/* The context's OpenCL objects (not retained for the caller). */
CLNORM_API cl_context       clnorm_context_cl_context(const clnorm_context *ctx);
CLNORM_API cl_device_id     clnorm_context_device(const clnorm_context *ctx);
CLNORM_API cl_command_queue clnorm_context_queue(const clnorm_context *ctx);

/* The message of the last failed call on ctx: which argument or size was
 * wrong, or the OpenCL build log. With ctx NULL, the message of the last
 * failed call in this thread that had no context (creation, selection).
 * Never NULL; "" when there was no error. */
CLNORM_API const char *clnorm_last_error(const clnorm_context *ctx);

/* Facts about a device. */
typedef struct clnorm_device_info {
    char           name[256];
    char           vendor[256];
    char           driver_version[128];
    char           platform_name[256];
    char           platform_version[256];
    cl_device_type type;
    cl_uint        compute_units;
    cl_ulong       global_mem_size;
    cl_ulong       local_mem_size;
    size_t         max_work_group_size;
    int            has_fp64; /* cl_khr_fp64 */
    int            has_fp16; /* cl_khr_fp16 (half storage never needs it) */
} clnorm_device_info;

/* Queries a device. @param[in] device  the device  @param[out] info  filled */
CLNORM_API clnorm_status clnorm_query_device(cl_device_id device, clnorm_device_info *info);
/* Queries the context's device. */
CLNORM_API clnorm_status clnorm_context_device_info(const clnorm_context *ctx, clnorm_device_info *info);

/* Resolves a selector as clnorm_context_create_default does, without creating
 * anything. why (may be NULL) receives a short explanation such as
 * "CLNORM_DEVICE=1:0" or "default rule: first GPU".
 * @param[in]  selector  selector or NULL (then CLNORM_DEVICE, then the rule)
 * @param[out] platform  chosen platform (may be NULL)
 * @param[out] device    chosen device
 * @param[out] why       explanation buffer (may be NULL)
 * @param[in]  why_len   its size */
CLNORM_API clnorm_status clnorm_select_device(const char     *selector,
                                              cl_platform_id *platform,
                                              cl_device_id   *device,
                                              char           *why,
                                              size_t          why_len);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                  */
/* ------------------------------------------------------------------------ */

#define CLNORM_MAX_DIMS 8

/* Storage type of the tensors. Half and bfloat16 compute and accumulate in
 * fp32 and take fp32 parameters (gamma, beta, statistics); fp64 needs
 * cl_khr_fp64 and takes fp64 parameters. */
typedef enum clnorm_dtype {
    CLNORM_F32  = 0,
    CLNORM_F16  = 1,
    CLNORM_BF16 = 2,
    CLNORM_F64  = 3
} clnorm_dtype;

/* Memory order of a tensor with channels. dims are always given in memory
 * order: NCHW means (N, C, d1, ..., dk); NHWC means (N, d1, ..., dk, C). */
typedef enum clnorm_layout {
    CLNORM_NCHW = 0, /* channels first */
    CLNORM_NHWC = 1  /* channels last */
} clnorm_layout;

/* A device buffer and an offset counted in elements of its type. A NULL mem
 * marks an optional buffer as absent. */
typedef struct clnorm_buffer {
    cl_mem mem;
    size_t offset;
} clnorm_buffer;

/* Convenience constructor for a clnorm_buffer. */
static inline clnorm_buffer clnorm_buf(cl_mem mem, size_t offset)
{
    clnorm_buffer b;
    b.mem    = mem;
    b.offset = offset;
    return b;
}

/* ------------------------------------------------------------------------ */
/* Batch normalization                                                      */
/* ------------------------------------------------------------------------ */

typedef enum clnorm_bn_mode {
    /* Statistics per channel over N and all spatial positions; dims are
     * (N, C, d1..dk) or (N, d1..dk, C) per layout, k >= 0. */
    CLNORM_BN_SPATIAL = 0,
    /* Statistics per feature over N; dims are (N, D1, ..., Dk) and the
     * features are the D1*...*Dk trailing elements (layout must be a valid
     * value but does not change the result). */
    CLNORM_BN_PER_ACTIVATION = 1
} clnorm_bn_mode;

/* Describes one batch normalization. Fill with clnorm_bn_desc_init, then
 * change what differs from the defaults. */
typedef struct clnorm_bn_desc {
    clnorm_bn_mode mode;
    clnorm_layout  layout;
    clnorm_dtype   dtype;
    size_t         ndim;                  /* 2..CLNORM_MAX_DIMS */
    size_t         dims[CLNORM_MAX_DIMS]; /* in memory order, see clnorm_layout */
    double         epsilon;               /* a positive normal number of the parameter type; 1e-5 */
    /* Weight f of the new batch in the running averages (PyTorch's momentum,
     * cuDNN's exponentialAverageFactor, 1 - ONNX momentum); default 0.1. */
    double         exp_avg_factor;
    /* Running variance takes the unbiased batch variance var*M/(M-1) (PyTorch,
     * cuDNN, MIOpen; default 1) or the biased one (0: ONNX). */
    int            unbiased_running_var;
} clnorm_bn_desc;

/* Fills desc with the given shape and the defaults above (fp32).
 * @param[out] desc    descriptor
 * @param[in]  mode    spatial or per-activation
 * @param[in]  layout  NCHW or NHWC (ignored for per-activation)
 * @param[in]  ndim    number of dims
 * @param[in]  dims    the dims in memory order */
CLNORM_API clnorm_status clnorm_bn_desc_init(clnorm_bn_desc *desc,
                                             clnorm_bn_mode  mode,
                                             clnorm_layout   layout,
                                             size_t          ndim,
                                             const size_t   *dims);

/* The buffers of a batch normalization; each call reads and writes only the
 * fields its documentation names, and the others are ignored. x, y, dy, dx
 * hold the tensor in desc->dtype; the per-channel vectors hold C values
 * (C = the feature count for per-activation) in fp32, or fp64 for CLNORM_F64. */
typedef struct clnorm_bn_args {
    clnorm_buffer x, y, dy, dx;
    clnorm_buffer gamma, beta;     /* optional: absent means 1 and 0 */
    clnorm_buffer dgamma, dbeta;
    clnorm_buffer saved_mean, saved_invstd;
    clnorm_buffer running_mean, running_var;
    /* Optional scratch (bytes, from clnorm_bn_workspace_size; offset in
     * bytes, a multiple of 128). Absent: the context's own scratch, grown
     * when needed and reused across calls. */
    clnorm_buffer workspace;
} clnorm_bn_args;

/* Errors and outputs: a call that returns a clnorm status (CLNORM_ERROR_*)
 * has enqueued nothing and written nothing. A call that returns an OpenCL
 * error after its checks passed (the device ran out of resources, say) may
 * have enqueued part of its work, so its outputs, and the running statistics
 * of a training forward, may be partly written.
 *
 * NaN and infinity: batch statistics are per channel. A NaN or infinity
 * among a channel's x values makes that channel's saved mean and invstd, its
 * running-mean and running-variance updates, all of its y values and, in
 * backward with saved statistics, all of its dx values and its dgamma NaN,
 * while dbeta (which depends only on dy) and every other channel's results
 * are bit for bit what they would be without it; a NaN or infinity in dy
 * makes its channel's dx, dgamma and dbeta NaN. Inference and the dx of the
 * frozen backward are elementwise: a non-finite x (inference) or dy (frozen
 * backward) gives a non-finite value at that element only, and frozen dx
 * never depends on x. The family behaves the same per row or group. Inputs
 * are not scanned for non-finite values. */

/* Bytes of workspace any batch norm call with this desc may use.
 * @param[in]  ctx    context
 * @param[in]  desc   descriptor
 * @param[out] bytes  workspace size in bytes */
CLNORM_API clnorm_status clnorm_bn_workspace_size(clnorm_context       *ctx,
                                                  const clnorm_bn_desc *desc,
                                                  size_t               *bytes);

/* Training forward: computes batch statistics, y = gamma*xhat + beta.
 * Reads x, gamma, beta (optional) and running_mean/var (optional, updated in
 * place when present). Writes y, saved_mean and saved_invstd (each optional).
 * With an unbiased running variance, M = N*spatial must exceed 1.
 * @param[in] ctx    context
 * @param[in] queue  a queue of the context's cl_context and device
 * @param[in] desc   descriptor
 * @param[in] args   buffers
 * @param[in] num_events_in_wait_list, event_wait_list  as in clEnqueue*
 * @param[out] event  event of the last command (may be NULL) */
CLNORM_API clnorm_status clnorm_bn_forward_training(clnorm_context       *ctx,
                                                    cl_command_queue      queue,
                                                    const clnorm_bn_desc *desc,
                                                    const clnorm_bn_args *args,
                                                    cl_uint               num_events_in_wait_list,
                                                    const cl_event       *event_wait_list,
                                                    cl_event             *event);

/* Inference forward: y = gamma*(x - running_mean)/sqrt(running_var + eps) + beta.
 * Reads x, running_mean, running_var, gamma, beta; writes y. */
CLNORM_API clnorm_status clnorm_bn_forward_inference(clnorm_context       *ctx,
                                                     cl_command_queue      queue,
                                                     const clnorm_bn_desc *desc,
                                                     const clnorm_bn_args *args,
                                                     cl_uint               num_events_in_wait_list,
                                                     const cl_event       *event_wait_list,
                                                     cl_event             *event);

/* Backward with the batch statistics saved by the training forward.
 * Reads x, dy, gamma (optional), saved_mean, saved_invstd; writes dx and,
 * when present, dgamma and dbeta. */
CLNORM_API clnorm_status clnorm_bn_backward(clnorm_context       *ctx,
                                            cl_command_queue      queue,
                                            const clnorm_bn_desc *desc,
                                            const clnorm_bn_args *args,
                                            cl_uint               num_events_in_wait_list,
                                            const cl_event       *event_wait_list,
                                            cl_event             *event);

/* Backward with frozen running statistics (inference-mode fine-tuning):
 * dx = gamma*dy/sqrt(running_var + eps). Reads x (only when dgamma is
 * present), dy, gamma, running_mean, running_var; writes dx and, when
 * present, dgamma and dbeta. */
CLNORM_API clnorm_status clnorm_bn_backward_frozen(clnorm_context       *ctx,
                                                   cl_command_queue      queue,
                                                   const clnorm_bn_desc *desc,
                                                   const clnorm_bn_args *args,
                                                   cl_uint               num_events_in_wait_list,
                                                   const cl_event       *event_wait_list,
                                                   cl_event             *event);

/* ------------------------------------------------------------------------ */
/* Tuning                                                                   */
/* ------------------------------------------------------------------------ */

/* Receives one line of the tuner's report (no newline). */
typedef void (*clnorm_report_fn)(void *user, const char *line);

/* Measures the kernel variants of batch norm, layer norm (whose choices RMS
 * norm shares) and group norm on the context's device over a set of
 * representative shapes, keeps the fastest choice per (op, direction, shape
 * class) in ctx, and stores the choices in the cache directory
 * ($CLNORM_CACHE_DIR, $XDG_CACHE_HOME/clnorm or ~/.cache/clnorm) keyed by
 * device, driver and library version, where every later context on the same
 * device finds them. Unlike every other call this one blocks: it runs and
 * waits for kernels on the context's own queue, for seconds (quick) to
 * minutes. Without a tuning file the built-in heuristics are used.
 * @param[in] ctx     context
 * @param[in] quick   nonzero: fewer shapes and repetitions
 * @param[in] report  called with one line per measured class (may be NULL)
 * @param[in] user    passed to report */
CLNORM_API clnorm_status clnorm_tune(clnorm_context *ctx, int quick, clnorm_report_fn report, void *user);

/* ------------------------------------------------------------------------ */
/* Layer, RMS, group and instance normalization                             */
/* ------------------------------------------------------------------------ */

/* Describes a layer normalization or an RMS normalization: the tensor is
 * viewed as rows = dims[0]*...*dims[axis-1] rows of L = dims[axis]*...*
 * dims[ndim-1] values, and each row is normalized over its L values (ONNX
 * LayerNormalization / RMSNormalization). Fill with clnorm_norm_desc_init. */
typedef struct clnorm_norm_desc {
    clnorm_dtype dtype;                 /* storage type; default CLNORM_F32 */
    size_t       ndim;                  /* 1..CLNORM_MAX_DIMS */
    size_t       dims[CLNORM_MAX_DIMS]; /* in memory order, row-major */
    int          axis;                  /* first normalized dim, in [-ndim, ndim); default -1 */
    double       epsilon;               /* positive normal; default 1e-5 */
} clnorm_norm_desc;

/* Describes a group normalization (statistics per sample and group of C/G
 * channels over those channels and all spatial positions, affine per
 * channel) or an instance normalization (the same with one channel per
 * group). dims are in memory order as for clnorm_bn_desc: NCHW is
 * (N, C, d1..dk), NHWC is (N, d1..dk, C), k >= 0. */
typedef struct clnorm_groupnorm_desc {
    clnorm_dtype  dtype;                 /* storage type; default CLNORM_F32 */
    clnorm_layout layout;                /* NCHW or NHWC */
    size_t        ndim;                  /* 2..CLNORM_MAX_DIMS */
    size_t        dims[CLNORM_MAX_DIMS]; /* in memory order, see clnorm_layout */
    size_t        num_groups;            /* G, divides C; ignored by instance norm */
    double        epsilon;               /* positive normal; default 1e-5 */
} clnorm_groupnorm_desc;

/* The buffers of the family's calls; each call reads and writes only the
 * fields its documentation names, and the others are ignored. x, y, dy, dx
 * hold the tensor in desc->dtype; gamma, beta, dgamma, dbeta, mean and
 * invstd are fp32 (fp64 for CLNORM_F64). Layer/RMS norm: gamma, beta, dgamma,
 * dbeta hold L values (the normalized shape), mean and invstd one value per
 * row. Group/instance norm: gamma, beta, dgamma, dbeta hold C values, mean
 * and invstd N*G values ordered (n, g). */
typedef struct clnorm_norm_args {
    clnorm_buffer x, y, dy, dx;
    clnorm_buffer gamma, beta;   /* optional: absent means 1 and 0 */
    clnorm_buffer dgamma, dbeta; /* optional outputs of backward */
    clnorm_buffer mean, invstd;  /* saved statistics (RMS norm: invstd = 1/rms) */
    /* Optional scratch (bytes, from the workspace-size query of the op).
     * Absent: the context's own scratch, grown when needed and reused. */
    clnorm_buffer workspace;
} clnorm_norm_args;

/* Fills desc with the given shape and the defaults above (fp32, eps 1e-5).
 * @param[out] desc  descriptor
 * @param[in]  ndim  number of dims (1..CLNORM_MAX_DIMS)
 * @param[in]  dims  the dims in memory order
 * @param[in]  axis  first normalized dim; negative counts from the end */
CLNORM_API clnorm_status clnorm_norm_desc_init(clnorm_norm_desc *desc,
                                               size_t            ndim,
                                               const size_t     *dims,
                                               int               axis);

/* Fills desc with the given shape and the defaults above (fp32, eps 1e-5).
 * @param[out] desc        descriptor
 * @param[in]  layout      NCHW or NHWC
 * @param[in]  ndim        number of dims (2..CLNORM_MAX_DIMS)
 * @param[in]  dims        the dims in memory order
 * @param[in]  num_groups  G (checked when an operation uses desc) */
CLNORM_API clnorm_status clnorm_groupnorm_desc_init(clnorm_groupnorm_desc *desc,
                                                    clnorm_layout          layout,
                                                    size_t                 ndim,
                                                    const size_t          *dims,
                                                    size_t                 num_groups);

/* Bytes of workspace any layer norm or RMS norm call with desc may use.
 * @param[in]  ctx    context
 * @param[in]  desc   descriptor
 * @param[out] bytes  workspace size in bytes */
CLNORM_API clnorm_status clnorm_norm_workspace_size(clnorm_context         *ctx,
                                                    const clnorm_norm_desc *desc,
                                                    size_t                 *bytes);

/* Bytes of workspace any group norm call with desc may use.
 * @param[in]  ctx    context
 * @param[in]  desc   descriptor
 * @param[out] bytes  workspace size in bytes */
CLNORM_API clnorm_status clnorm_groupnorm_workspace_size(clnorm_context              *ctx,
                                                         const clnorm_groupnorm_desc *desc,
                                                         size_t                      *bytes);

/* Bytes of workspace any instance norm call with desc may use.
 * @param[in]  ctx    context
 * @param[in]  desc   descriptor (num_groups ignored)
 * @param[out] bytes  workspace size in bytes */
CLNORM_API clnorm_status clnorm_instancenorm_workspace_size(clnorm_context              *ctx,
                                                            const clnorm_groupnorm_desc *desc,
                                                            size_t                      *bytes);

/* Layer normalization forward (ONNX LayerNormalization): per row,
 * y = gamma*(x - mean)*invstd + beta with invstd = 1/sqrt(var + eps) and the
 * biased variance. Reads x, gamma, beta (optional); writes y and, when
 * present, mean and invstd.
 * @param[in]  ctx    context
 * @param[in]  queue  a queue of the context's cl_context and device
 * @param[in]  desc   descriptor
 * @param[in]  args   buffers
 * @param[in]  num_events_in_wait_list, event_wait_list  as in clEnqueue*
 * @param[out] event  event of the last command (may be NULL) */
CLNORM_API clnorm_status clnorm_layernorm_forward(clnorm_context         *ctx,
                                                  cl_command_queue        queue,
                                                  const clnorm_norm_desc *desc,
                                                  const clnorm_norm_args *args,
                                                  cl_uint                 num_events_in_wait_list,
                                                  const cl_event         *event_wait_list,
                                                  cl_event               *event);

/* Layer normalization backward with the saved statistics. Reads x, dy, gamma
 * (optional), mean, invstd; writes dx and, when present, dgamma and dbeta.
 * Parameters as clnorm_layernorm_forward. */
CLNORM_API clnorm_status clnorm_layernorm_backward(clnorm_context         *ctx,
                                                   cl_command_queue        queue,
                                                   const clnorm_norm_desc *desc,
                                                   const clnorm_norm_args *args,
                                                   cl_uint                 num_events_in_wait_list,
                                                   const cl_event         *event_wait_list,
                                                   cl_event               *event);

/* RMS normalization forward (ONNX RMSNormalization): per row,
 * y = gamma*x/sqrt(mean(x^2) + eps). Reads x, gamma (optional); writes y and,
 * when present, invstd (1/sqrt(mean(x^2) + eps) per row). Parameters as
 * clnorm_layernorm_forward. */
CLNORM_API clnorm_status clnorm_rmsnorm_forward(clnorm_context         *ctx,
                                                cl_command_queue        queue,
                                                const clnorm_norm_desc *desc,
                                                const clnorm_norm_args *args,
                                                cl_uint                 num_events_in_wait_list,
                                                const cl_event         *event_wait_list,
                                                cl_event               *event);

/* RMS normalization backward with the saved invstd. Reads x, dy, gamma
 * (optional), invstd; writes dx and, when present, dgamma. Parameters as
 * clnorm_layernorm_forward. */
CLNORM_API clnorm_status clnorm_rmsnorm_backward(clnorm_context         *ctx,
                                                 cl_command_queue        queue,
                                                 const clnorm_norm_desc *desc,
                                                 const clnorm_norm_args *args,
                                                 cl_uint                 num_events_in_wait_list,
                                                 const cl_event         *event_wait_list,
                                                 cl_event               *event);

/* Group normalization forward (ONNX GroupNormalization-21, PyTorch
 * GroupNorm): per (n, g), statistics over C/G channels and all positions;
 * y = gamma_c*(x - mean)*invstd + beta_c. Reads x, gamma, beta (optional);
 * writes y and, when present, mean and invstd. Parameters as
 * clnorm_layernorm_forward. */
CLNORM_API clnorm_status clnorm_groupnorm_forward(clnorm_context              *ctx,
                                                  cl_command_queue             queue,
                                                  const clnorm_groupnorm_desc *desc,
                                                  const clnorm_norm_args      *args,
                                                  cl_uint                      num_events_in_wait_list,
                                                  const cl_event              *event_wait_list,
                                                  cl_event                    *event);

/* Group normalization backward with the saved statistics. Reads x, dy, gamma
 * (optional), mean, invstd; writes dx and, when present, dgamma and dbeta.
 * Parameters as clnorm_layernorm_forward. */
CLNORM_API clnorm_status clnorm_groupnorm_backward(clnorm_context              *ctx,
                                                   cl_command_queue             queue,
                                                   const clnorm_groupnorm_desc *desc,
                                                   const clnorm_norm_args      *args,
                                                   cl_uint                      num_events_in_wait_list,
                                                   const cl_event              *event_wait_list,
                                                   cl_event                    *event);

/* Instance normalization forward (ONNX InstanceNormalization, PyTorch
 * InstanceNorm without running statistics): group norm with one channel per
 * group; desc->num_groups is ignored and mean/invstd hold N*C values.
 * Buffers and parameters as clnorm_groupnorm_forward. */
CLNORM_API clnorm_status clnorm_instancenorm_forward(clnorm_context              *ctx,
                                                     cl_command_queue             queue,
                                                     const clnorm_groupnorm_desc *desc,
                                                     const clnorm_norm_args      *args,
                                                     cl_uint                      num_events_in_wait_list,
                                                     const cl_event              *event_wait_list,
                                                     cl_event                    *event);

/* Instance normalization backward; buffers and parameters as
 * clnorm_groupnorm_backward with one channel per group. */
CLNORM_API clnorm_status clnorm_instancenorm_backward(clnorm_context              *ctx,
                                                      cl_command_queue             queue,
                                                      const clnorm_groupnorm_desc *desc,
                                                      const clnorm_norm_args      *args,
                                                      cl_uint                      num_events_in_wait_list,
                                                      const cl_event              *event_wait_list,
                                                      cl_event                    *event);

#ifdef __cplusplus
}
#endif

#endif /* CLNORM_CLNORM_H */
