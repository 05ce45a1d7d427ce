/* status.c: status names and texts (clnorm's own and OpenCL's), the
 * last-error messages and the version functions. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define CL_ERROR_MAP(XX)                                                          \
    XX(CL_DEVICE_NOT_FOUND, "no OpenCL device of the requested type")            \
    XX(CL_DEVICE_NOT_AVAILABLE, "OpenCL device not available")                   \
    XX(CL_COMPILER_NOT_AVAILABLE, "OpenCL compiler not available")               \
    XX(CL_MEM_OBJECT_ALLOCATION_FAILURE, "device memory allocation failed")      \
    XX(CL_OUT_OF_RESOURCES, "OpenCL device out of resources")                    \
    XX(CL_OUT_OF_HOST_MEMORY, "OpenCL implementation out of host memory")        \
    XX(CL_PROFILING_INFO_NOT_AVAILABLE, "profiling information not available")   \
    XX(CL_MEM_COPY_OVERLAP, "overlapping memory copy")                           \
    XX(CL_IMAGE_FORMAT_MISMATCH, "image format mismatch")                        \
    XX(CL_IMAGE_FORMAT_NOT_SUPPORTED, "image format not supported")              \
    XX(CL_BUILD_PROGRAM_FAILURE, "OpenCL program build failure")                 \
    XX(CL_MAP_FAILURE, "OpenCL map failure")                                     \
    XX(CL_MISALIGNED_SUB_BUFFER_OFFSET, "misaligned sub-buffer offset")          \
    XX(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST, "an event in the wait list failed") \
    XX(CL_COMPILE_PROGRAM_FAILURE, "OpenCL program compile failure")             \
    XX(CL_LINKER_NOT_AVAILABLE, "OpenCL linker not available")                   \
    XX(CL_LINK_PROGRAM_FAILURE, "OpenCL program link failure")                   \
    XX(CL_DEVICE_PARTITION_FAILED, "device partition failed")                    \
    XX(CL_KERNEL_ARG_INFO_NOT_AVAILABLE, "kernel argument info not available")   \
    XX(CL_INVALID_VALUE, "invalid value")                                        \
    XX(CL_INVALID_DEVICE_TYPE, "invalid device type")                            \
    XX(CL_INVALID_PLATFORM, "invalid platform")                                  \
    XX(CL_INVALID_DEVICE, "invalid device")                                      \
    XX(CL_INVALID_CONTEXT, "invalid OpenCL context")                             \
    XX(CL_INVALID_QUEUE_PROPERTIES, "invalid queue properties")                  \
    XX(CL_INVALID_COMMAND_QUEUE, "invalid command queue")                        \
    XX(CL_INVALID_HOST_PTR, "invalid host pointer")                              \
    XX(CL_INVALID_MEM_OBJECT, "invalid memory object")                           \
    XX(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR, "invalid image format descriptor")    \
    XX(CL_INVALID_IMAGE_SIZE, "invalid image size")                              \
    XX(CL_INVALID_SAMPLER, "invalid sampler")                                    \
    XX(CL_INVALID_BINARY, "invalid program binary")                              \
    XX(CL_INVALID_BUILD_OPTIONS, "invalid build options")                        \
    XX(CL_INVALID_PROGRAM, "invalid program")                                    \
    XX(CL_INVALID_PROGRAM_EXECUTABLE, "invalid program executable")              \
    XX(CL_INVALID_KERNEL_NAME, "invalid kernel name")                            \
    XX(CL_INVALID_KERNEL_DEFINITION, "invalid kernel definition")                \
    XX(CL_INVALID_KERNEL, "invalid kernel")                                      \
    XX(CL_INVALID_ARG_INDEX, "invalid kernel argument index")                    \
    XX(CL_INVALID_ARG_VALUE, "invalid kernel argument value")                    \
    XX(CL_INVALID_ARG_SIZE, "invalid kernel argument size")                      \
    XX(CL_INVALID_KERNEL_ARGS, "kernel arguments not set")                       \
    XX(CL_INVALID_WORK_DIMENSION, "invalid work dimension")                      \
    XX(CL_INVALID_WORK_GROUP_SIZE, "invalid work-group size")                    \
    XX(CL_INVALID_WORK_ITEM_SIZE, "invalid work-item size")                      \
    XX(CL_INVALID_GLOBAL_OFFSET, "invalid global offset")                        \
    XX(CL_INVALID_EVENT_WAIT_LIST, "invalid event wait list")                    \
    XX(CL_INVALID_EVENT, "invalid event")                                        \
    XX(CL_INVALID_OPERATION, "invalid operation")                                \
    XX(CL_INVALID_GL_OBJECT, "invalid GL object")                                \
    XX(CL_INVALID_BUFFER_SIZE, "invalid buffer size")                            \
    XX(CL_INVALID_MIP_LEVEL, "invalid mip level")                                \
    XX(CL_INVALID_GLOBAL_WORK_SIZE, "invalid global work size")                  \
    XX(CL_INVALID_PROPERTY, "invalid property")                                  \
    XX(CL_INVALID_IMAGE_DESCRIPTOR, "invalid image descriptor")                  \
    XX(CL_INVALID_COMPILER_OPTIONS, "invalid compiler options")                  \
    XX(CL_INVALID_LINKER_OPTIONS, "invalid linker options")                      \
    XX(CL_INVALID_DEVICE_PARTITION_COUNT, "invalid device partition count")      \
    XX(-1001, "no OpenCL platform found (ICD loader: no installable client driver)")

const char *clnorm_status_string(clnorm_status status)
{
    switch ((int)status) {
#define OWN_(name, value, text) \
    case value:                 \
        return text;
        CLNORM_STATUS_MAP(OWN_)
#undef OWN_
#define CL_(code, text) \
    case code:          \
        return "OpenCL: " text;
        CL_ERROR_MAP(CL_)
#undef CL_
    default:
        return "unknown status";
    }
}

const char *clnorm_status_name(clnorm_status status)
{
    switch ((int)status) {
#define OWN_(name, value, text) \
    case value:                 \
        return "CLNORM_" #name;
        CLNORM_STATUS_MAP(OWN_)
#undef OWN_
#define CL_(code, text) \
    case code:          \
        return #code;
        CL_ERROR_MAP(CL_)
#undef CL_
    default:
        return "CLNORM_UNKNOWN_STATUS";
    }
}

unsigned clnorm_version_number(void) { return CLNORM_VERSION_NUMBER; }

#define CLNORM_STR2_(x) #x
#define CLNORM_STR_(x) CLNORM_STR2_(x)
const char *clnorm_version_string(void)
{
    return CLNORM_STR_(CLNORM_VERSION_MAJOR) "." CLNORM_STR_(CLNORM_VERSION_MINOR) "." CLNORM_STR_(
        CLNORM_VERSION_PATCH);
}

/* Message of the last failure without a context, per thread. */
static _Thread_local char thread_err[1024];

clnorm_status clnorm_fail(clnorm_context *ctx, clnorm_status status, const char *fmt, ...)
{
    char  *buf = ctx ? ctx->err : thread_err;
    size_t len = ctx ? sizeof ctx->err : sizeof thread_err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return status;
}

void clnorm_clear_error(clnorm_context *ctx)
{
    if (ctx)
        ctx->err[0] = '\0';
    else
        thread_err[0] = '\0';
}

const char *clnorm_last_error(const clnorm_context *ctx)
{
    return ctx ? ctx->err : thread_err;
}
