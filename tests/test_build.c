/* test_build.c: every kernel program compiles without a warning, for each
 * storage type and for both kernel shapes (CPU and GPU variants), on the
 * device the tests run on.
 *
 * A warning is not harmless here: PoCL prints its compiler's diagnostics to
 * the process's stderr on every cold build, where a program linking the
 * library (the clnorm CLI, whose tests expect a clean stderr) shows them to
 * its user. The programs are built with -Werror (through
 * CLNORM_BUILD_OPTIONS, read at context creation) and with the disk cache
 * off, so each one really compiles; a warning fails the build and the test
 * prints the build log. */
#include "clnorm/clnorm.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>

/* Runs one batch norm and one layer norm forward (one program per kernel
 * family) in dtype, so that both programs of that type get built. */
static void build_both(clnorm_context *ctx, cl_command_queue q, cl_mem x, cl_mem y, clnorm_dtype dtype)
{
    static const size_t bdims[4] = {2, 3, 4, 4}, ldims[2] = {2, 8};
    clnorm_bn_desc      bd;
    cr_assert_eq(clnorm_bn_desc_init(&bd, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, bdims), CLNORM_SUCCESS);
    bd.dtype          = dtype;
    clnorm_bn_args ba = {0};
    ba.x              = clnorm_buf(x, 0);
    ba.y              = clnorm_buf(y, 0);
    clnorm_status st  = clnorm_bn_forward_training(ctx, q, &bd, &ba, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "batch norm, dtype %d: %s: %s", (int)dtype, clnorm_status_name(st),
                 clnorm_last_error(ctx));

    clnorm_norm_desc nd;
    cr_assert_eq(clnorm_norm_desc_init(&nd, 2, ldims, -1), CLNORM_SUCCESS);
    nd.dtype            = dtype;
    clnorm_norm_args na = {0};
    na.x                = clnorm_buf(x, 0);
    na.y                = clnorm_buf(y, 0);
    st                  = clnorm_layernorm_forward(ctx, q, &nd, &na, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "layer norm, dtype %d: %s: %s", (int)dtype, clnorm_status_name(st),
                 clnorm_last_error(ctx));
    cr_assert_eq(clFinish(q), CL_SUCCESS);
}

/* 0: the CPU kernel shapes, 1: the GPU ones (plain values: Criterion
 * hands parameters to a fresh process) */
ParameterizedTestParameters(build, no_warnings)
{
    static int variants[] = {0, 1};
    return cr_make_param_array(int, variants, 2);
}

ParameterizedTest(int *variant, build, no_warnings, .timeout = 900)
{
    setenv("CLNORM_BUILD_OPTIONS", "-Werror", 1);
    setenv("CLNORM_CACHE", "0", 1);
    setenv("CLNORM_VARIANT", *variant ? "gpu" : "cpu", 1);
    clnorm_context *ctx = NULL;
    clnorm_status   st  = clnorm_context_create_default(NULL, &ctx);
    cr_assert_eq(st, CLNORM_SUCCESS, "context: %s", clnorm_status_name(st));
    clnorm_device_info info;
    cr_assert_eq(clnorm_context_device_info(ctx, &info), CLNORM_SUCCESS);
    cl_command_queue q = clnorm_context_queue(ctx);
    cl_int           err;
    /* zeros: 96 values of the widest type */
    static const double zeros[96] = {0};
    cl_mem x = clCreateBuffer(clnorm_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              sizeof zeros, (void *)zeros, &err);
    cr_assert_eq(err, CL_SUCCESS);
    cl_mem y = clCreateBuffer(clnorm_context_cl_context(ctx), CL_MEM_READ_WRITE, sizeof zeros, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS);

    build_both(ctx, q, x, y, CLNORM_F32);
    build_both(ctx, q, x, y, CLNORM_F16);
    build_both(ctx, q, x, y, CLNORM_BF16);
    if (info.has_fp64)
        build_both(ctx, q, x, y, CLNORM_F64);

    clReleaseMemObject(x);
    clReleaseMemObject(y);
    clnorm_context_destroy(ctx);
}
