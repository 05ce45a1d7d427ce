/* clfault.c: test-only OpenCL shim. Linked ahead of libOpenCL (or
 * LD_PRELOADed), it defines the OpenCL entry points clnorm and its tests use,
 * forwards each to the next definition (dlsym(RTLD_NEXT)), counts the calls,
 * fails a chosen one with the error a real driver returns for that call, and
 * counts live object references so a test can assert that nothing leaked.
 *
 * Control: the functions in clfault.h, or for a preloaded shim the
 * environment at load time: CLFAULT_FAIL_AT=k (fail the k-th eligible call of
 * the process), CLFAULT_STICKY=1 (and every later one), CLFAULT_HIDE_EXT=name
 * (hide a device extension), CLFAULT_REPORT=1 (print the live counts and
 * calls at exit to stderr). */
#define _GNU_SOURCE
#include "clfault.h"

#include <CL/cl.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_MAX 65536

static atomic_int  g_armed, g_paused, g_sticky;
static atomic_long g_calls, g_fail_at, g_nfired;
static atomic_long g_live[CLFAULT_KIND_COUNT];
static atomic_int  g_active;
static const char *g_fired_name = "";
static int         g_fired_err;
static const char *g_trace[TRACE_MAX];
static char        g_hidden_ext[256];

/* ---- control ------------------------------------------------------------- */

void clfault_arm(long fail_at, int sticky)
{
    atomic_store(&g_armed, 0);
    atomic_store(&g_calls, 0);
    atomic_store(&g_nfired, 0);
    atomic_store(&g_fail_at, fail_at);
    atomic_store(&g_sticky, sticky);
    atomic_store(&g_paused, 0);
    g_fired_name = "";
    g_fired_err  = 0;
    atomic_store(&g_armed, 1);
}

void clfault_pause(void) { atomic_store(&g_paused, 1); }
void clfault_resume(void) { atomic_store(&g_paused, 0); }
void clfault_disarm(void) { atomic_store(&g_armed, 0); }
long clfault_calls(void) { return atomic_load(&g_calls); }
long clfault_fired(void) { return atomic_load(&g_nfired); }
const char *clfault_fired_name(void) { return g_fired_name; }
int clfault_fired_error(void) { return g_fired_err; }
int clfault_active(void) { return atomic_load(&g_active); }

const char *clfault_call_name(long k)
{
    return k >= 1 && k <= TRACE_MAX && k <= clfault_calls() && g_trace[k - 1] ? g_trace[k - 1] : "?";
}

long clfault_live(enum clfault_kind kind)
{
    return kind < CLFAULT_KIND_COUNT ? atomic_load(&g_live[kind]) : 0;
}

const char *clfault_kind_name(enum clfault_kind kind)
{
    static const char *const names[CLFAULT_KIND_COUNT] = {"cl_mem",   "cl_kernel",        "cl_program",
                                                          "cl_event", "cl_command_queue", "cl_context"};
    return kind < CLFAULT_KIND_COUNT ? names[kind] : "?";
}

void clfault_hide_extension(const char *ext)
{
    snprintf(g_hidden_ext, sizeof g_hidden_ext, "%s", ext ? ext : "");
}

__attribute__((constructor)) static void clfault_from_env(void)
{
    const char *s = getenv("CLFAULT_FAIL_AT");
    if (s && *s)
        clfault_arm(atol(s), getenv("CLFAULT_STICKY") && atoi(getenv("CLFAULT_STICKY")) != 0);
    if ((s = getenv("CLFAULT_HIDE_EXT")) && *s)
        clfault_hide_extension(s);
}

__attribute__((destructor)) static void clfault_report(void)
{
    const char *s = getenv("CLFAULT_REPORT");
    if (!s || !*s || strcmp(s, "0") == 0)
        return;
    fprintf(stderr, "clfault: %ld eligible calls, %ld faults injected (first: %s)\n", clfault_calls(),
            clfault_fired(), g_fired_name);
    for (int k = 0; k < CLFAULT_KIND_COUNT; ++k)
        fprintf(stderr, "clfault: live %s: %ld\n", clfault_kind_name((enum clfault_kind)k),
                clfault_live((enum clfault_kind)k));
}

/* ---- plumbing ------------------------------------------------------------ */

static void *resolve(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) {
        fprintf(stderr, "clfault: no definition of %s after the shim\n", name);
        abort();
    }
    return p;
}

/* Declares `real`, the next definition of fn, resolved once. */
#define REAL(fn)                                  \
    static void *_Atomic real_ptr_;               \
    void *vp_ = atomic_load(&real_ptr_);          \
    if (!vp_) {                                   \
        vp_ = resolve(#fn);                       \
        atomic_store(&real_ptr_, vp_);            \
    }                                             \
    __typeof__(&fn) real;                         \
    memcpy(&real, &vp_, sizeof real)

/* Counts an eligible call; returns err when this call is to fail, else 0. */
static cl_int inject(const char *name, cl_int err)
{
    if (!atomic_load(&g_armed) || atomic_load(&g_paused))
        return CL_SUCCESS;
    long n = atomic_fetch_add(&g_calls, 1) + 1;
    if (n <= TRACE_MAX)
        g_trace[n - 1] = name;
    long k = atomic_load(&g_fail_at);
    if (k > 0 && (n == k || (atomic_load(&g_sticky) && n > k))) {
        if (atomic_fetch_add(&g_nfired, 1) == 0) {
            g_fired_name = name;
            g_fired_err  = err;
        }
        return err;
    }
    return CL_SUCCESS;
}

static void live(enum clfault_kind k, long d) { atomic_fetch_add(&g_live[k], d); }

/* Object creation: fail with ERR, or forward and count the new object. */
#define CREATE(fn, kind, ERR, ...)                   \
    REAL(fn);                                        \
    cl_int inj_ = inject(#fn, ERR);                  \
    if (inj_ != CL_SUCCESS) {                        \
        if (errcode_ret)                             \
            *errcode_ret = inj_;                     \
        return NULL;                                 \
    }                                                \
    cl_int err_ = CL_SUCCESS;                        \
    __typeof__(real(__VA_ARGS__, &err_)) obj_ = real(__VA_ARGS__, &err_); \
    if (errcode_ret)                                 \
        *errcode_ret = err_;                         \
    if (obj_ && err_ == CL_SUCCESS)                  \
        live(kind, 1);                               \
    return obj_

/* A call returning cl_int: fail with ERR, or forward. */
#define PLAIN(fn, ERR, ...)                          \
    REAL(fn);                                        \
    cl_int inj_ = inject(#fn, ERR);                  \
    if (inj_ != CL_SUCCESS)                          \
        return inj_;                                 \
    return real(__VA_ARGS__)

/* clRetain and clRelease never fail here; they move the live count. */
#define REFCOUNT(fn, kind, delta, obj)               \
    REAL(fn);                                        \
    cl_int e_ = real(obj);                           \
    if (e_ == CL_SUCCESS)                            \
        live(kind, delta);                           \
    return e_

/* An enqueue with an optional output event. */
#define ENQUEUE(fn, ERR, ...)                        \
    REAL(fn);                                        \
    cl_int inj_ = inject(#fn, ERR);                  \
    if (inj_ != CL_SUCCESS)                          \
        return inj_;                                 \
    cl_int e_ = real(__VA_ARGS__);                   \
    if (e_ == CL_SUCCESS && event)                   \
        live(CLFAULT_EVENT, 1);                      \
    return e_

/* ---- platform and device ------------------------------------------------- */

cl_int clGetPlatformIDs(cl_uint num_entries, cl_platform_id *platforms, cl_uint *num_platforms)
{
    atomic_store(&g_active, 1);
    PLAIN(clGetPlatformIDs, CL_OUT_OF_HOST_MEMORY, num_entries, platforms, num_platforms);
}

cl_int clGetPlatformInfo(cl_platform_id platform, cl_platform_info param, size_t size, void *value,
                         size_t *size_ret)
{
    PLAIN(clGetPlatformInfo, CL_OUT_OF_HOST_MEMORY, platform, param, size, value, size_ret);
}

cl_int clGetDeviceIDs(cl_platform_id platform, cl_device_type type, cl_uint num_entries,
                      cl_device_id *devices, cl_uint *num_devices)
{
    PLAIN(clGetDeviceIDs, CL_OUT_OF_HOST_MEMORY, platform, type, num_entries, devices, num_devices);
}

cl_int clGetDeviceInfo(cl_device_id device, cl_device_info param, size_t size, void *value,
                       size_t *size_ret)
{
    REAL(clGetDeviceInfo);
    cl_int inj = inject("clGetDeviceInfo", CL_OUT_OF_RESOURCES);
    if (inj != CL_SUCCESS)
        return inj;
    cl_int err = real(device, param, size, value, size_ret);
    if (err == CL_SUCCESS && param == CL_DEVICE_EXTENSIONS && value && g_hidden_ext[0]) {
        size_t n   = strlen(g_hidden_ext);
        char  *s   = value;
        char  *hit = s;
        while ((hit = strstr(hit, g_hidden_ext)) != NULL) {
            int starts = hit == s || hit[-1] == ' ';
            int ends   = hit[n] == '\0' || hit[n] == ' ';
            if (starts && ends)
                memmove(hit, hit + n, strlen(hit + n) + 1);
            else
                hit += n;
        }
    }
    return err;
}

/* ---- context ------------------------------------------------------------- */

cl_context clCreateContext(const cl_context_properties *props, cl_uint num_devices,
                           const cl_device_id *devices,
                           void(CL_CALLBACK *notify)(const char *, const void *, size_t, void *),
                           void *user_data, cl_int *errcode_ret)
{
    CREATE(clCreateContext, CLFAULT_CONTEXT, CL_OUT_OF_HOST_MEMORY, props, num_devices, devices, notify,
           user_data);
}

cl_context clCreateContextFromType(const cl_context_properties *props, cl_device_type type,
                                   void(CL_CALLBACK *notify)(const char *, const void *, size_t, void *),
                                   void *user_data, cl_int *errcode_ret)
{
    CREATE(clCreateContextFromType, CLFAULT_CONTEXT, CL_OUT_OF_HOST_MEMORY, props, type, notify, user_data);
}

cl_int clRetainContext(cl_context c) { REFCOUNT(clRetainContext, CLFAULT_CONTEXT, 1, c); }
cl_int clReleaseContext(cl_context c) { REFCOUNT(clReleaseContext, CLFAULT_CONTEXT, -1, c); }

cl_int clGetContextInfo(cl_context context, cl_context_info param, size_t size, void *value,
                        size_t *size_ret)
{
    PLAIN(clGetContextInfo, CL_OUT_OF_HOST_MEMORY, context, param, size, value, size_ret);
}

/* ---- command queue ------------------------------------------------------- */

cl_command_queue clCreateCommandQueue(cl_context context, cl_device_id device,
                                      cl_command_queue_properties properties, cl_int *errcode_ret)
{
    CREATE(clCreateCommandQueue, CLFAULT_QUEUE, CL_OUT_OF_RESOURCES, context, device, properties);
}

cl_int clRetainCommandQueue(cl_command_queue q) { REFCOUNT(clRetainCommandQueue, CLFAULT_QUEUE, 1, q); }
cl_int clReleaseCommandQueue(cl_command_queue q) { REFCOUNT(clReleaseCommandQueue, CLFAULT_QUEUE, -1, q); }

cl_int clGetCommandQueueInfo(cl_command_queue queue, cl_command_queue_info param, size_t size, void *value,
                             size_t *size_ret)
{
    PLAIN(clGetCommandQueueInfo, CL_INVALID_COMMAND_QUEUE, queue, param, size, value, size_ret);
}

cl_int clFlush(cl_command_queue q) { PLAIN(clFlush, CL_OUT_OF_RESOURCES, q); }
cl_int clFinish(cl_command_queue q) { PLAIN(clFinish, CL_OUT_OF_RESOURCES, q); }

/* ---- memory -------------------------------------------------------------- */

cl_mem clCreateBuffer(cl_context context, cl_mem_flags flags, size_t size, void *host_ptr,
                      cl_int *errcode_ret)
{
    CREATE(clCreateBuffer, CLFAULT_MEM, CL_MEM_OBJECT_ALLOCATION_FAILURE, context, flags, size, host_ptr);
}

cl_mem clCreateSubBuffer(cl_mem buffer, cl_mem_flags flags, cl_buffer_create_type type, const void *info,
                         cl_int *errcode_ret)
{
    CREATE(clCreateSubBuffer, CLFAULT_MEM, CL_MEM_OBJECT_ALLOCATION_FAILURE, buffer, flags, type, info);
}

cl_int clRetainMemObject(cl_mem m) { REFCOUNT(clRetainMemObject, CLFAULT_MEM, 1, m); }
cl_int clReleaseMemObject(cl_mem m) { REFCOUNT(clReleaseMemObject, CLFAULT_MEM, -1, m); }

cl_int clGetMemObjectInfo(cl_mem memobj, cl_mem_info param, size_t size, void *value, size_t *size_ret)
{
    PLAIN(clGetMemObjectInfo, CL_OUT_OF_RESOURCES, memobj, param, size, value, size_ret);
}

/* ---- programs and kernels ------------------------------------------------ */

cl_program clCreateProgramWithSource(cl_context context, cl_uint count, const char **strings,
                                     const size_t *lengths, cl_int *errcode_ret)
{
    CREATE(clCreateProgramWithSource, CLFAULT_PROGRAM, CL_OUT_OF_HOST_MEMORY, context, count, strings,
           lengths);
}

cl_program clCreateProgramWithBinary(cl_context context, cl_uint num_devices, const cl_device_id *devices,
                                     const size_t *lengths, const unsigned char **binaries,
                                     cl_int *binary_status, cl_int *errcode_ret)
{
    REAL(clCreateProgramWithBinary);
    cl_int inj = inject("clCreateProgramWithBinary", CL_INVALID_BINARY);
    if (inj != CL_SUCCESS) {
        if (binary_status)
            for (cl_uint i = 0; i < num_devices; ++i)
                binary_status[i] = CL_INVALID_BINARY;
        if (errcode_ret)
            *errcode_ret = inj;
        return NULL;
    }
    cl_int     err  = CL_SUCCESS;
    cl_program prog = real(context, num_devices, devices, lengths, binaries, binary_status, &err);
    if (errcode_ret)
        *errcode_ret = err;
    if (prog && err == CL_SUCCESS)
        live(CLFAULT_PROGRAM, 1);
    return prog;
}

cl_int clRetainProgram(cl_program p) { REFCOUNT(clRetainProgram, CLFAULT_PROGRAM, 1, p); }
cl_int clReleaseProgram(cl_program p) { REFCOUNT(clReleaseProgram, CLFAULT_PROGRAM, -1, p); }

cl_int clBuildProgram(cl_program program, cl_uint num_devices, const cl_device_id *devices,
                      const char *options, void(CL_CALLBACK *notify)(cl_program, void *), void *user_data)
{
    PLAIN(clBuildProgram, CL_BUILD_PROGRAM_FAILURE, program, num_devices, devices, options, notify,
          user_data);
}

cl_int clGetProgramInfo(cl_program program, cl_program_info param, size_t size, void *value,
                        size_t *size_ret)
{
    PLAIN(clGetProgramInfo, CL_OUT_OF_HOST_MEMORY, program, param, size, value, size_ret);
}

cl_int clGetProgramBuildInfo(cl_program program, cl_device_id device, cl_program_build_info param,
                             size_t size, void *value, size_t *size_ret)
{
    PLAIN(clGetProgramBuildInfo, CL_OUT_OF_HOST_MEMORY, program, device, param, size, value, size_ret);
}

cl_kernel clCreateKernel(cl_program program, const char *name, cl_int *errcode_ret)
{
    CREATE(clCreateKernel, CLFAULT_KERNEL, CL_OUT_OF_RESOURCES, program, name);
}

cl_int clCreateKernelsInProgram(cl_program program, cl_uint num_kernels, cl_kernel *kernels,
                                cl_uint *num_kernels_ret)
{
    REAL(clCreateKernelsInProgram);
    cl_int inj = inject("clCreateKernelsInProgram", CL_OUT_OF_RESOURCES);
    if (inj != CL_SUCCESS)
        return inj;
    cl_uint n   = 0;
    cl_int  err = real(program, num_kernels, kernels, &n);
    if (num_kernels_ret)
        *num_kernels_ret = n;
    if (err == CL_SUCCESS && kernels)
        live(CLFAULT_KERNEL, (long)n);
    return err;
}

cl_int clRetainKernel(cl_kernel k) { REFCOUNT(clRetainKernel, CLFAULT_KERNEL, 1, k); }
cl_int clReleaseKernel(cl_kernel k) { REFCOUNT(clReleaseKernel, CLFAULT_KERNEL, -1, k); }

cl_int clSetKernelArg(cl_kernel kernel, cl_uint index, size_t size, const void *value)
{
    PLAIN(clSetKernelArg, CL_OUT_OF_RESOURCES, kernel, index, size, value);
}

cl_int clGetKernelInfo(cl_kernel kernel, cl_kernel_info param, size_t size, void *value, size_t *size_ret)
{
    PLAIN(clGetKernelInfo, CL_OUT_OF_HOST_MEMORY, kernel, param, size, value, size_ret);
}

cl_int clGetKernelWorkGroupInfo(cl_kernel kernel, cl_device_id device, cl_kernel_work_group_info param,
                                size_t size, void *value, size_t *size_ret)
{
    PLAIN(clGetKernelWorkGroupInfo, CL_OUT_OF_RESOURCES, kernel, device, param, size, value, size_ret);
}

/* ---- events -------------------------------------------------------------- */

cl_event clCreateUserEvent(cl_context context, cl_int *errcode_ret)
{
    CREATE(clCreateUserEvent, CLFAULT_EVENT, CL_OUT_OF_RESOURCES, context);
}

cl_int clRetainEvent(cl_event e) { REFCOUNT(clRetainEvent, CLFAULT_EVENT, 1, e); }
cl_int clReleaseEvent(cl_event e) { REFCOUNT(clReleaseEvent, CLFAULT_EVENT, -1, e); }

cl_int clWaitForEvents(cl_uint num_events, const cl_event *events)
{
    PLAIN(clWaitForEvents, CL_OUT_OF_RESOURCES, num_events, events);
}

cl_int clGetEventInfo(cl_event event, cl_event_info param, size_t size, void *value, size_t *size_ret)
{
    PLAIN(clGetEventInfo, CL_OUT_OF_RESOURCES, event, param, size, value, size_ret);
}

cl_int clGetEventProfilingInfo(cl_event event, cl_profiling_info param, size_t size, void *value,
                               size_t *size_ret)
{
    PLAIN(clGetEventProfilingInfo, CL_OUT_OF_RESOURCES, event, param, size, value, size_ret);
}

/* ---- enqueues ------------------------------------------------------------ */

cl_int clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel, cl_uint work_dim,
                              const size_t *offset, const size_t *global, const size_t *local,
                              cl_uint num_events, const cl_event *wait, cl_event *event)
{
    ENQUEUE(clEnqueueNDRangeKernel, CL_OUT_OF_RESOURCES, queue, kernel, work_dim, offset, global, local,
            num_events, wait, event);
}

cl_int clEnqueueReadBuffer(cl_command_queue queue, cl_mem buffer, cl_bool blocking, size_t offset,
                           size_t size, void *ptr, cl_uint num_events, const cl_event *wait,
                           cl_event *event)
{
    ENQUEUE(clEnqueueReadBuffer, CL_MEM_OBJECT_ALLOCATION_FAILURE, queue, buffer, blocking, offset, size,
            ptr, num_events, wait, event);
}

cl_int clEnqueueWriteBuffer(cl_command_queue queue, cl_mem buffer, cl_bool blocking, size_t offset,
                            size_t size, const void *ptr, cl_uint num_events, const cl_event *wait,
                            cl_event *event)
{
    ENQUEUE(clEnqueueWriteBuffer, CL_MEM_OBJECT_ALLOCATION_FAILURE, queue, buffer, blocking, offset, size,
            ptr, num_events, wait, event);
}

cl_int clEnqueueCopyBuffer(cl_command_queue queue, cl_mem src, cl_mem dst, size_t src_offset,
                           size_t dst_offset, size_t size, cl_uint num_events, const cl_event *wait,
                           cl_event *event)
{
    ENQUEUE(clEnqueueCopyBuffer, CL_OUT_OF_RESOURCES, queue, src, dst, src_offset, dst_offset, size,
            num_events, wait, event);
}

cl_int clEnqueueFillBuffer(cl_command_queue queue, cl_mem buffer, const void *pattern, size_t pattern_size,
                           size_t offset, size_t size, cl_uint num_events, const cl_event *wait,
                           cl_event *event)
{
    ENQUEUE(clEnqueueFillBuffer, CL_OUT_OF_RESOURCES, queue, buffer, pattern, pattern_size, offset, size,
            num_events, wait, event);
}

cl_int clEnqueueMarkerWithWaitList(cl_command_queue queue, cl_uint num_events, const cl_event *wait,
                                   cl_event *event)
{
    ENQUEUE(clEnqueueMarkerWithWaitList, CL_OUT_OF_RESOURCES, queue, num_events, wait, event);
}

cl_int clEnqueueBarrierWithWaitList(cl_command_queue queue, cl_uint num_events, const cl_event *wait,
                                    cl_event *event)
{
    ENQUEUE(clEnqueueBarrierWithWaitList, CL_OUT_OF_RESOURCES, queue, num_events, wait, event);
}

void *clEnqueueMapBuffer(cl_command_queue queue, cl_mem buffer, cl_bool blocking, cl_map_flags flags,
                         size_t offset, size_t size, cl_uint num_events, const cl_event *wait,
                         cl_event *event, cl_int *errcode_ret)
{
    REAL(clEnqueueMapBuffer);
    cl_int inj = inject("clEnqueueMapBuffer", CL_MAP_FAILURE);
    if (inj != CL_SUCCESS) {
        if (errcode_ret)
            *errcode_ret = inj;
        return NULL;
    }
    cl_int err = CL_SUCCESS;
    void  *p   = real(queue, buffer, blocking, flags, offset, size, num_events, wait, event, &err);
    if (errcode_ret)
        *errcode_ret = err;
    if (err == CL_SUCCESS && event)
        live(CLFAULT_EVENT, 1);
    return p;
}

cl_int clEnqueueUnmapMemObject(cl_command_queue queue, cl_mem memobj, void *mapped, cl_uint num_events,
                               const cl_event *wait, cl_event *event)
{
    ENQUEUE(clEnqueueUnmapMemObject, CL_OUT_OF_RESOURCES, queue, memobj, mapped, num_events, wait, event);
}
