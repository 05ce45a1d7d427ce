/* context.c: device selection, context lifetime, device facts, and the
 * per-call checks and enqueue helpers every operation shares. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return 0;
    for (; *hay; ++hay) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            ++i;
        if (i == n)
            return 1;
    }
    return 0;
}

static int parse_index(const char *s, unsigned long *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return 0;
    *out = strtoul(s, &end, 10);
    return *end == '\0';
}

static clnorm_status select_device(const char *selector, cl_platform_id *platform, cl_device_id *device,
                                   char *why, size_t why_len)
{
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint        nplat = 0;
    const char    *source = "selector";
    char           whybuf[256];

    if (!device)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_ARGUMENT, "clnorm_select_device: device is NULL");
    if (!selector || !*selector) {
        selector = getenv("CLNORM_DEVICE");
        source   = "CLNORM_DEVICE";
        if (selector && !*selector)
            selector = NULL;
    }
    cl_int err = clGetPlatformIDs(MAX_PLATFORMS, plats, &nplat);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && nplat == 0))
        return clnorm_fail(NULL, CLNORM_ERROR_NO_DEVICE,
                           "no OpenCL platform found: is an ICD (e.g. pocl-opencl-icd) installed?");
    if (err != CL_SUCCESS)
        return clnorm_fail(NULL, (clnorm_status)err, "clGetPlatformIDs failed (%d)", err);
    if (nplat > MAX_PLATFORMS)
        nplat = MAX_PLATFORMS;

    /* Flatten every (platform, device) pair in order. */
    cl_platform_id dplat[MAX_DEVICES];
    cl_device_id   devs[MAX_DEVICES];
    unsigned       pidx[MAX_DEVICES], didx[MAX_DEVICES];
    unsigned       ndev = 0;
    for (cl_uint p = 0; p < nplat; ++p) {
        cl_device_id d[MAX_DEVICES];
        cl_uint      nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, d, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint i = 0; i < nd && i < MAX_DEVICES && ndev < MAX_DEVICES; ++i) {
            dplat[ndev] = plats[p];
            devs[ndev]  = d[i];
            pidx[ndev]  = p;
            didx[ndev]  = i;
            ++ndev;
        }
    }
    if (ndev == 0)
        return clnorm_fail(NULL, CLNORM_ERROR_NO_DEVICE, "no OpenCL device found on %u platform(s)",
                           (unsigned)nplat);

    int pick = -1;
    if (selector) {
        const char   *colon = strchr(selector, ':');
        unsigned long a, b;
        if (colon) {
            char head[32];
            size_t hl = (size_t)(colon - selector);
            if (hl < sizeof head) {
                memcpy(head, selector, hl);
                head[hl] = '\0';
                if (parse_index(head, &a) && parse_index(colon + 1, &b))
                    for (unsigned i = 0; i < ndev; ++i)
                        if (pidx[i] == a && didx[i] == b)
                            pick = (int)i;
            }
        } else if (parse_index(selector, &a)) {
            if (a < ndev)
                pick = (int)a;
        }
        if (pick < 0 && !(colon && isdigit((unsigned char)selector[0])) &&
            !parse_index(selector, &a)) {
            for (unsigned i = 0; i < ndev && pick < 0; ++i) {
                char name[256] = "";
                clGetDeviceInfo(devs[i], CL_DEVICE_NAME, sizeof name - 1, name, NULL);
                if (contains_ci(name, selector))
                    pick = (int)i;
            }
        }
        if (pick < 0)
            return clnorm_fail(NULL, CLNORM_ERROR_DEVICE_NOT_FOUND,
                               "%s=\"%s\" matches no OpenCL device (%u found; use P:D, D or a name "
                               "substring)", source, selector, ndev);
        snprintf(whybuf, sizeof whybuf, "%s=%s", source, selector);
    } else {
        for (unsigned i = 0; i < ndev && pick < 0; ++i) {
            cl_device_type t = 0;
            clGetDeviceInfo(devs[i], CL_DEVICE_TYPE, sizeof t, &t, NULL);
            if (t & CL_DEVICE_TYPE_GPU)
                pick = (int)i;
        }
        if (pick >= 0) {
            snprintf(whybuf, sizeof whybuf, "default rule: first GPU");
        } else {
            pick = 0;
            snprintf(whybuf, sizeof whybuf, "default rule: no GPU, first device");
        }
    }
    if (platform)
        *platform = dplat[pick];
    *device = devs[pick];
    if (why && why_len) {
        strncpy(why, whybuf, why_len - 1);
        why[why_len - 1] = '\0';
    }
    return CLNORM_SUCCESS;
}

/* A failed device query: an invalid handle is the caller's mistake, anything
 * else (out of resources, a lost device) is passed through. */
static clnorm_status query_failed(cl_int err, const char *what)
{
    if (err == CL_INVALID_DEVICE || err == CL_INVALID_PLATFORM)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT,
                           "clnorm_query_device: device is not a valid cl_device_id (%d)", err);
    return clnorm_fail(NULL, (clnorm_status)err, "clnorm_query_device: querying %s failed (%d)", what, err);
}

/* Whether the space-separated list holds word as a whole word. */
static int has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return 1;
    return 0;
}

/* A string property into buf (len bytes), truncated when longer. */
static cl_int info_string(cl_device_id device, cl_platform_id plat, cl_uint param, char *buf, size_t len)
{
    size_t n   = 0;
    cl_int err = device ? clGetDeviceInfo(device, param, 0, NULL, &n) : clGetPlatformInfo(plat, param, 0, NULL, &n);
    if (err != CL_SUCCESS || n == 0) {
        buf[0] = '\0';
        return err;
    }
    char *tmp = malloc(n + 1);
    if (!tmp)
        return CL_OUT_OF_HOST_MEMORY;
    err = device ? clGetDeviceInfo(device, param, n, tmp, NULL) : clGetPlatformInfo(plat, param, n, tmp, NULL);
    if (err == CL_SUCCESS) {
        tmp[n] = '\0';
        snprintf(buf, len, "%s", tmp);
    }
    free(tmp);
    return err;
}

/* Device enumeration is serialized: PoCL 3.1 initializes its devices on the
 * first clGetDeviceIDs without excluding concurrent callers, which then see
 * no device (CL_DEVICE_NOT_FOUND), so concurrent first selections from
 * several threads failed with CLNORM_ERROR_NO_DEVICE. */
static pthread_mutex_t select_lock = PTHREAD_MUTEX_INITIALIZER;

clnorm_status clnorm_select_device(const char *selector, cl_platform_id *platform, cl_device_id *device,
                                   char *why, size_t why_len)
{
    pthread_mutex_lock(&select_lock);
    clnorm_status st = select_device(selector, platform, device, why, why_len);
    pthread_mutex_unlock(&select_lock);
    return st;
}

clnorm_status clnorm_query_device(cl_device_id device, clnorm_device_info *info)
{
    if (!device || !info)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_ARGUMENT, "clnorm_query_device: %s is NULL",
                           device ? "info" : "device");
    clnorm_device_info d;
    memset(&d, 0, sizeof d);
    cl_platform_id plat = NULL;
    cl_int         err;
    /* Every fact feeds the variant choice or the program cache key, so a
     * failed query fails the call instead of leaving a zero behind. */
#define DEV_STR_(param, field)                                                  \
    if ((err = info_string(device, NULL, param, d.field, sizeof d.field)) != CL_SUCCESS) \
        return query_failed(err, #param);
#define DEV_VAL_(param, field)                                                       \
    if ((err = clGetDeviceInfo(device, param, sizeof d.field, &d.field, NULL)) != CL_SUCCESS) \
        return query_failed(err, #param);
    DEV_STR_(CL_DEVICE_NAME, name)
    DEV_STR_(CL_DEVICE_VENDOR, vendor)
    DEV_STR_(CL_DRIVER_VERSION, driver_version)
    DEV_VAL_(CL_DEVICE_TYPE, type)
    DEV_VAL_(CL_DEVICE_MAX_COMPUTE_UNITS, compute_units)
    DEV_VAL_(CL_DEVICE_GLOBAL_MEM_SIZE, global_mem_size)
    DEV_VAL_(CL_DEVICE_LOCAL_MEM_SIZE, local_mem_size)
    DEV_VAL_(CL_DEVICE_MAX_WORK_GROUP_SIZE, max_work_group_size)
#undef DEV_STR_
#undef DEV_VAL_
    size_t n = 0;
    if ((err = clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &n)) != CL_SUCCESS)
        return query_failed(err, "CL_DEVICE_EXTENSIONS");
    char *ext = malloc(n + 1);
    if (!ext)
        return clnorm_fail(NULL, CLNORM_ERROR_OUT_OF_HOST_MEMORY, "clnorm_query_device: out of memory");
    if ((err = clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, n, ext, NULL)) != CL_SUCCESS) {
        free(ext);
        return query_failed(err, "CL_DEVICE_EXTENSIONS");
    }
    ext[n] = '\0';
    d.has_fp64 = has_word(ext, "cl_khr_fp64");
    d.has_fp16 = has_word(ext, "cl_khr_fp16");
    free(ext);
    if ((err = clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL)) != CL_SUCCESS)
        return query_failed(err, "CL_DEVICE_PLATFORM");
    if ((err = info_string(NULL, plat, CL_PLATFORM_NAME, d.platform_name, sizeof d.platform_name)) !=
            CL_SUCCESS ||
        (err = info_string(NULL, plat, CL_PLATFORM_VERSION, d.platform_version, sizeof d.platform_version)) !=
            CL_SUCCESS)
        return query_failed(err, "the platform's name and version");
    *info = d;
    return CLNORM_SUCCESS;
}

/* Whether environment variable name holds a plain decimal number (digits
 * only, no sign or space, within unsigned long long), stored in *v. */
static int env_decimal(const char *name, unsigned long long *v)
{
    const char *s = getenv(name);
    if (!s || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    *v    = strtoull(s, &end, 10);
    return *end == '\0' && errno == 0;
}

static void choose_tuning(clnorm_context *ctx)
{
    const char *v   = getenv("CLNORM_VARIANT");
    int         cpu = (ctx->info.type & CL_DEVICE_TYPE_CPU) != 0;
    if (v && strcmp(v, "gpu") == 0)
        cpu = 0;
    else if (v && strcmp(v, "cpu") == 0)
        cpu = 1;
    size_t cu = ctx->info.compute_units ? ctx->info.compute_units : 1;
    /* tests: plan as a device of this many compute units would (a large
     * GPU's many small partials, on a 2-core CI machine); a value that is
     * not a plain decimal number from 1 to 65536 is ignored */
    unsigned long long ev;
    if (env_decimal("CLNORM_COMPUTE_UNITS", &ev) && ev >= 1 && ev <= 65536)
        cu = (size_t)ev;
    ctx->tune.cpu_style = cpu;
    ctx->tune.no_fused  = getenv("CLNORM_NO_FUSED") != NULL;
    ctx->tune.no_flat   = getenv("CLNORM_NO_FLAT") != NULL;
    ctx->tune.no_bfused = getenv("CLNORM_NO_BFUSED") != NULL;
    ctx->tune.no_gncf   = getenv("CLNORM_NO_GNCF") != NULL;
    ctx->tune.no_pfused = getenv("CLNORM_NO_PFUSED") != NULL;
    const char *opts    = getenv("CLNORM_BUILD_OPTIONS");
    snprintf(ctx->tune.extra_options, sizeof ctx->tune.extra_options, "%s", opts ? opts : "");
    /* Streaming (non-temporal) stores for large outputs: on CPUs they skip
     * the read for ownership of every destination line, a third of a
     * copy's memory traffic. The kernels use a clang builtin for them, so
     * only where the compiler is known to be clang's (PoCL); CLNORM_NO_NT
     * turns them off (A/B). Outputs under nt_min_bytes are likely read again
     * soon from the cache, which such stores would bypass. */
    ctx->tune.nt = cpu && strstr(ctx->info.platform_name, "Portable Computing Language") != NULL &&
                   getenv("CLNORM_NO_NT") == NULL;
    /* PoCL's vloadn/vstoren go element by element and its compiler often
     * rebuilds them only in 8-byte pieces; its kernels load and store
     * vectors through clang vector types instead (common.cl). A/B:
     * CLNORM_BUILD_OPTIONS=-DCLNORM_NO_VCAST. */
    ctx->tune.vcast = strstr(ctx->info.platform_name, "Portable Computing Language") != NULL;
    ctx->tune.nt_min_bytes = (size_t)16 << 20;
    /* tests: the streaming paths on small shapes; a value that is not a
     * plain decimal number is ignored */
    if (env_decimal("CLNORM_STREAM_MIN_BYTES", &ev) && ev <= SIZE_MAX)
        ctx->tune.nt_min_bytes = (size_t)ev;
    if (cpu) {
        /* PoCL runs work-groups on threads and vectorizes inside a work-item's
         * explicit vectors: coarse work-items over contiguous data. */
        ctx->tune.lx             = 1;
        ctx->tune.chunk          = 16384;
        ctx->tune.row_min_tpi    = 16;
        ctx->tune.min_parallel   = cu * 8;
        ctx->tune.part_rows_min  = 8;
        ctx->tune.rows_min_inner = 32;
        ctx->tune.fuse_min_channels = cu * 2;
        ctx->tune.fuse_max_slice    = (size_t)1 << 19;
        ctx->tune.fuse_small_total  = (size_t)1 << 12;
        ctx->tune.cfuse_max_block   = (size_t)1 << 20;
        ctx->tune.bfuse_max_inner   = 128;
        ctx->tune.bfuse_max_block   = (size_t)1 << 18;
        if (env_decimal("CLNORM_CFUSE_BLOCK", &ev) && ev <= ((size_t)1 << 30))
            ctx->tune.cfuse_max_block = (size_t)ev;
        if (env_decimal("CLNORM_BFUSE_BLOCK", &ev) && ev <= ((size_t)1 << 30))
            ctx->tune.bfuse_max_block = (size_t)ev;
        ctx->tune.gn_lead_bytes = (size_t)800 << 10;
        if (env_decimal("CLNORM_GN_LEAD_BYTES", &ev) && ev <= ((size_t)1 << 30))
            ctx->tune.gn_lead_bytes = (size_t)ev;
    } else {
        size_t lx = 64;
        while (lx > 1 && lx > ctx->info.max_work_group_size)
            lx /= 2;
        ctx->tune.lx             = (unsigned)lx;
        ctx->tune.chunk          = lx * 8 * 16;
        ctx->tune.min_parallel   = cu * 2048;
        /* a large GPU's min_parallel would otherwise cut column walks into
         * chunks of a few rows, whose partials rival the tensor in bytes */
        ctx->tune.part_rows_min  = 64;
        ctx->tune.rows_min_inner = 64;
        /* the fused per-channel kernels only for small tensors: clnorm tune
         * on an H100 chose the staged passes for (32,1024,14,14), the one
         * suite shape that cu * 4 channels made fused (training forward
         * 0.081 -> 0.062 ms, inference 0.050 -> 0.035, backward 0.084 ->
         * 0.069) */
        ctx->tune.fuse_min_channels = SIZE_MAX;
        ctx->tune.fuse_max_slice    = (size_t)1 << 16;
        ctx->tune.fuse_small_total  = (size_t)1 << 14;
    }
}

static clnorm_status context_init(cl_context clctx, cl_device_id device, clnorm_context **out)
{
    clnorm_device_info info;
    clnorm_status      st = clnorm_query_device(device, &info);
    if (st != CLNORM_SUCCESS)
        return st;
    /* The device must belong to the context. */
    cl_uint      ndev = 0;
    cl_device_id devs[MAX_DEVICES];
    cl_int       err = clGetContextInfo(clctx, CL_CONTEXT_NUM_DEVICES, sizeof ndev, &ndev, NULL);
    if (ndev > MAX_DEVICES)
        ndev = MAX_DEVICES;
    if (err == CL_SUCCESS)
        err = clGetContextInfo(clctx, CL_CONTEXT_DEVICES, ndev * sizeof(cl_device_id), devs, NULL);
    if (err == CL_INVALID_CONTEXT)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT,
                           "clnorm_context_create: cl_ctx is not a valid cl_context (%d)", err);
    if (err != CL_SUCCESS) /* a valid context whose query failed: pass the cause on */
        return clnorm_fail(NULL, (clnorm_status)err, "clnorm_context_create: querying cl_ctx failed (%d)",
                           err);
    int found = 0;
    for (cl_uint i = 0; i < ndev; ++i)
        found |= devs[i] == device;
    if (!found)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT,
                           "clnorm_context_create: device is not a device of cl_ctx");

    clnorm_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_OUT_OF_HOST_MEMORY, "clnorm_context_create: out of memory");
    ctx->info  = info;
    ctx->queue = clCreateCommandQueue(clctx, device, 0, &err);
    if (err != CL_SUCCESS) {
        free(ctx);
        return clnorm_fail(NULL, (clnorm_status)err, "clCreateCommandQueue failed (%d)", err);
    }
    clRetainContext(clctx);
    ctx->clctx  = clctx;
    ctx->device = device;
    choose_tuning(ctx);
    clnorm_load_tuning(ctx);
    *out = ctx;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_context_create(cl_context cl_ctx, cl_device_id device, clnorm_context **ctx)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_ARGUMENT, "clnorm_context_create: ctx is NULL");
    if (!cl_ctx || !device)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_ARGUMENT, "clnorm_context_create: %s is NULL",
                           cl_ctx ? "device" : "cl_ctx");
    return context_init(cl_ctx, device, ctx);
}

clnorm_status clnorm_context_create_default(const char *selector, clnorm_context **ctx)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_ARGUMENT,
                           "clnorm_context_create_default: ctx is NULL");
    cl_platform_id plat;
    cl_device_id   dev;
    clnorm_status  st = clnorm_select_device(selector, &plat, &dev, NULL, 0);
    if (st != CLNORM_SUCCESS)
        return st;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plat, 0};
    cl_int                err;
    cl_context            clctx = clCreateContext(props, 1, &dev, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        return clnorm_fail(NULL, (clnorm_status)err, "clCreateContext failed (%d)", err);
    st = context_init(clctx, dev, ctx);
    clReleaseContext(clctx); /* context_init retained it on success */
    return st;
}

void clnorm_context_destroy(clnorm_context *ctx)
{
    if (!ctx)
        return;
    for (int f = 0; f < FAMILY_COUNT_; ++f)
        for (int d = 0; d < DTYPE_COUNT_; ++d) {
            clnorm_program *p = &ctx->programs[f][d];
            for (int k = 0; k < MAX_KERNELS_PER_FAMILY; ++k)
                if (p->kernels[k])
                    clReleaseKernel(p->kernels[k]);
            if (p->prog)
                clReleaseProgram(p->prog);
        }
    if (ctx->scratch)
        clReleaseMemObject(ctx->scratch);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->clctx)
        clReleaseContext(ctx->clctx);
    free(ctx);
}

cl_context clnorm_context_cl_context(const clnorm_context *ctx) { return ctx ? ctx->clctx : NULL; }
cl_device_id clnorm_context_device(const clnorm_context *ctx) { return ctx ? ctx->device : NULL; }
cl_command_queue clnorm_context_queue(const clnorm_context *ctx) { return ctx ? ctx->queue : NULL; }

clnorm_status clnorm_context_device_info(const clnorm_context *ctx, clnorm_device_info *info)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_NULL_CONTEXT, "clnorm_context_device_info: ctx is NULL");
    if (!info)
        return clnorm_fail((clnorm_context *)ctx, CLNORM_ERROR_NULL_ARGUMENT,
                           "clnorm_context_device_info: info is NULL");
    *info = ctx->info;
    return CLNORM_SUCCESS;
}

/* ---- per-call helpers ---------------------------------------------------- */

size_t clnorm_dtype_size(clnorm_dtype dtype)
{
    switch (dtype) {
    case CLNORM_F32: return 4;
    case CLNORM_F16: return 2;
    case CLNORM_BF16: return 2;
    case CLNORM_F64: return 8;
    }
    return 0;
}

clnorm_status clnorm_check_epsilon(clnorm_context *ctx, const char *fn, clnorm_dtype dtype, double eps)
{
    double lo = dtype == CLNORM_F64 ? DBL_MIN : FLT_MIN, hi = dtype == CLNORM_F64 ? DBL_MAX : FLT_MAX;
    if (!(eps >= lo && eps <= hi))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_EPSILON,
                           "%s: desc->epsilon is %g; it must be a positive normal %s number (%g to %g)", fn,
                           eps, dtype == CLNORM_F64 ? "fp64" : "fp32", lo, hi);
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_check_workspace(clnorm_context *ctx, clnorm_buffer workspace)
{
    if (!workspace.mem)
        return CLNORM_SUCCESS;
    clnorm_status st = clnorm_check_buffer(ctx, "workspace", workspace, 1, 0, 1);
    if (st != CLNORM_SUCCESS)
        return st;
    if (workspace.offset % 128 != 0)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "workspace offset %zu bytes is not a multiple of 128", workspace.offset);
    return CLNORM_SUCCESS;
}

size_t clnorm_param_size(clnorm_dtype dtype) { return dtype == CLNORM_F64 ? 8 : 4; }

clnorm_status clnorm_check_dtype(clnorm_context *ctx, clnorm_dtype dtype)
{
    if (clnorm_dtype_size(dtype) == 0)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_DTYPE, "dtype %d is not a clnorm_dtype", (int)dtype);
    if (dtype == CLNORM_F64 && !ctx->info.has_fp64)
        return clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED_DTYPE,
                           "dtype CLNORM_F64 needs cl_khr_fp64, which device \"%s\" does not report",
                           ctx->info.name);
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_check_queue(clnorm_context *ctx, cl_command_queue queue, cl_uint nwait,
                                 const cl_event *wait)
{
    if (!queue)
        return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "queue is NULL");
    cl_context   qctx = NULL;
    cl_device_id qdev = NULL;
    cl_int       err  = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL);
    if (err == CL_SUCCESS)
        err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL);
    if (err == CL_INVALID_COMMAND_QUEUE)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_QUEUE, "queue is not a valid command queue");
    if (err != CL_SUCCESS)
        return clnorm_fail(ctx, (clnorm_status)err, "querying the queue failed (%d)", err);
    if (qctx != ctx->clctx || qdev != ctx->device)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_QUEUE,
                           "queue belongs to another %s than the clnorm context",
                           qctx != ctx->clctx ? "cl_context" : "device");
    if ((nwait == 0) != (wait == NULL))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_WAIT_LIST,
                           "num_events_in_wait_list is %u but event_wait_list is %s", (unsigned)nwait,
                           wait ? "not NULL" : "NULL");
    for (cl_uint i = 0; i < nwait; ++i)
        if (!wait[i])
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_WAIT_LIST, "event_wait_list[%u] is NULL",
                               (unsigned)i);
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_check_buffer(clnorm_context *ctx, const char *name, clnorm_buffer b,
                                  int required, size_t count, size_t elem_size)
{
    if (!b.mem) {
        if (required)
            return clnorm_fail(ctx, CLNORM_ERROR_NULL_ARGUMENT, "buffer %s is required but NULL", name);
        return CLNORM_SUCCESS;
    }
    size_t     size = 0;
    cl_context mctx = NULL;
    cl_int     err  = clGetMemObjectInfo(b.mem, CL_MEM_SIZE, sizeof size, &size, NULL);
    if (err == CL_SUCCESS)
        err = clGetMemObjectInfo(b.mem, CL_MEM_CONTEXT, sizeof mctx, &mctx, NULL);
    if (err == CL_INVALID_MEM_OBJECT)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_BUFFER, "buffer %s is not a valid cl_mem", name);
    if (err != CL_SUCCESS)
        return clnorm_fail(ctx, (clnorm_status)err, "buffer %s: querying it failed (%d)", name, err);
    if (mctx != ctx->clctx)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_BUFFER,
                           "buffer %s belongs to another cl_context", name);
    size_t end, bytes;
    if (b.offset > SIZE_MAX - count || !clnorm_mul_ok(b.offset + count, elem_size, &bytes))
        return clnorm_fail(ctx, CLNORM_ERROR_SIZE_OVERFLOW,
                           "buffer %s: offset %zu + %zu elements overflows", name, b.offset, count);
    end = bytes;
    if (end > size)
        return clnorm_fail(ctx, CLNORM_ERROR_BUFFER_TOO_SMALL,
                           "buffer %s holds %zu bytes but offset %zu + %zu elements of %zu bytes "
                           "need %zu",
                           name, size, b.offset, count, elem_size, end);
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_get_scratch(clnorm_context *ctx, clnorm_buffer workspace, size_t bytes,
                                 cl_mem *mem, size_t *byte_offset)
{
    if (workspace.mem) {
        clnorm_status st = clnorm_check_workspace(ctx, workspace);
        if (st == CLNORM_SUCCESS)
            st = clnorm_check_buffer(ctx, "workspace", workspace, 1, bytes, 1);
        if (st != CLNORM_SUCCESS)
            return st;
        *mem         = workspace.mem;
        *byte_offset = workspace.offset;
        return CLNORM_SUCCESS;
    }
    if (bytes == 0)
        bytes = 1;
    if (ctx->scratch_size < bytes) {
        size_t grow = ctx->scratch_size + ctx->scratch_size / 2;
        if (grow < bytes)
            grow = bytes;
        cl_int err;
        cl_mem m = clCreateBuffer(ctx->clctx, CL_MEM_READ_WRITE, grow, NULL, &err);
        if (err != CL_SUCCESS)
            return clnorm_fail(ctx, (clnorm_status)err,
                               "allocating %zu bytes of scratch failed (%d)", grow, err);
        /* commands already enqueued keep the old buffer alive until they end */
        if (ctx->scratch)
            clReleaseMemObject(ctx->scratch);
        ctx->scratch      = m;
        ctx->scratch_size = grow;
    }
    *mem         = ctx->scratch;
    *byte_offset = 0;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_set_args(clnorm_context *ctx, cl_kernel kernel, const clnorm_karg *args,
                              unsigned count)
{
    for (unsigned i = 0; i < count; ++i) {
        cl_int err = clSetKernelArg(kernel, i, args[i].size, args[i].value);
        if (err != CL_SUCCESS)
            return clnorm_fail(ctx, (clnorm_status)err, "clSetKernelArg(%u) failed (%d)", i, err);
    }
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_seq_begin(clnorm_context *ctx, clnorm_seq *seq, cl_command_queue queue,
                               cl_uint nwait, const cl_event *wait, int want_event)
{
    cl_command_queue_properties props = 0;
    memset(seq, 0, sizeof *seq);
    seq->queue = queue;
    seq->nwait = nwait;
    seq->wait  = wait;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
    if (err != CL_SUCCESS)
        return clnorm_fail(ctx, err == CL_INVALID_COMMAND_QUEUE ? CLNORM_ERROR_INVALID_QUEUE : (clnorm_status)err,
                           "queue properties query failed (%d)", err);
    seq->out_of_order = (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;
    seq->want_event   = want_event;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_seq_run(clnorm_context *ctx, clnorm_seq *seq, cl_kernel kernel, cl_uint dims,
                             const size_t *global, const size_t *local)
{
    cl_uint         nwait;
    const cl_event *wait;
    if (!seq->started) {
        nwait = seq->nwait;
        wait  = seq->wait;
    } else if (seq->out_of_order) {
        nwait = 1;
        wait  = &seq->last;
    } else {
        nwait = 0;
        wait  = NULL;
    }
    /* events only where they are used: chaining an out-of-order queue, or
     * the caller's output event (the last command's) */
    cl_event ev  = NULL;
    cl_int   err = clEnqueueNDRangeKernel(seq->queue, kernel, dims, NULL, global, local, nwait, wait,
                                          seq->out_of_order || seq->want_event ? &ev : NULL);
    if (err != CL_SUCCESS)
        return clnorm_fail(ctx, (clnorm_status)err, "clEnqueueNDRangeKernel failed (%d)", err);
    if (seq->last)
        clReleaseEvent(seq->last);
    seq->last    = ev;
    seq->started = 1;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_seq_end(clnorm_seq *seq, clnorm_status status, cl_event *event)
{
    if (status == CLNORM_SUCCESS && event)
        *event = seq->last;
    else if (seq->last)
        clReleaseEvent(seq->last);
    seq->last = NULL;
    return status;
}
