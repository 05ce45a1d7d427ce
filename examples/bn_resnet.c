/* bn_resnet.c: a ResNet-50-sized batch norm, forward (training) and backward,
 * on the default OpenCL device, checked against the C reference. This is how
 * a training framework would call clnorm. */
#include "clnorm/clnorm.h"
#include "ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK_CL(call)                                                                   \
    do {                                                                                 \
        cl_int e_ = (call);                                                              \
        if (e_ != CL_SUCCESS) {                                                          \
            fprintf(stderr, "%s:%d: %s failed: %d\n", __FILE__, __LINE__, #call, e_);    \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)
#define CHECK_NORM(ctx, call)                                                            \
    do {                                                                                 \
        clnorm_status s_ = (call);                                                       \
        if (s_ != CLNORM_SUCCESS) {                                                      \
            fprintf(stderr, "%s failed: %s: %s\n", #call, clnorm_status_string(s_),     \
                    clnorm_last_error(ctx));                                             \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double median5(double *t)
{
    for (int i = 1; i < 5; ++i)
        for (int j = i; j > 0 && t[j] < t[j - 1]; --j) {
            double s = t[j];
            t[j]     = t[j - 1];
            t[j - 1] = s;
        }
    return t[2];
}

static cl_mem upload(cl_context cl, const double *x, size_t n)
{
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; ++i)
        f[i] = x ? (float)x[i] : 0.0f;
    cl_int err;
    cl_mem m = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof *f, f, &err);
    CHECK_CL(err);
    free(f);
    return m;
}

static double max_err(cl_command_queue q, cl_mem m, const double *ref, size_t n, double *scale)
{
    float *f = malloc(n * sizeof *f);
    CHECK_CL(clEnqueueReadBuffer(q, m, CL_TRUE, 0, n * sizeof *f, f, 0, NULL, NULL));
    double e = 0, s = 1e-30;
    for (size_t i = 0; i < n; ++i) {
        double d = fabs(f[i] - ref[i]);
        if (!(d <= e))
            e = d; /* NaN propagates */
        if (fabs(ref[i]) > s)
            s = fabs(ref[i]);
    }
    free(f);
    *scale = s;
    return e;
}

int main(int argc, char **argv)
{
    /* conv2_x of ResNet-50 at batch 32: (32, 256, 56, 56) is 25.7M values;
     * the default uses (32, 64, 56, 56) to stay quick on a laptop CPU. */
    size_t N = 32, C = 64, H = 56, W = 56;
    if (argc == 5) {
        N = strtoul(argv[1], NULL, 10);
        C = strtoul(argv[2], NULL, 10);
        H = strtoul(argv[3], NULL, 10);
        W = strtoul(argv[4], NULL, 10);
    }
    size_t n = N * C * H * W;

    clnorm_context *ctx = NULL;
    CHECK_NORM(NULL, clnorm_context_create_default(NULL, &ctx));
    clnorm_device_info info;
    CHECK_NORM(ctx, clnorm_context_device_info(ctx, &info));
    cl_context       cl = clnorm_context_cl_context(ctx);
    cl_command_queue q  = clnorm_context_queue(ctx);
    printf("clnorm %s on \"%s\" (%s, %u compute units)\n", clnorm_version_string(), info.name,
           info.platform_name, info.compute_units);
    printf("batch norm NCHW (%zu, %zu, %zu, %zu), fp32, %.1f MB\n", N, C, H, W, n * 4 / 1e6);

    double *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
    double *g = malloc(C * sizeof *g), *b = malloc(C * sizeof *b);
    ref_rng r = ref_rng_seed(2024);
    ref_fill_normal(&r, x, n, 1.5, 3.0);
    ref_fill_normal(&r, dy, n, 0.0, 1.0);
    ref_fill_uniform(&r, g, C, 0.5, 1.5);
    ref_fill_uniform(&r, b, C, -0.5, 0.5);
    for (size_t i = 0; i < n; ++i) {
        x[i]  = (float)x[i];
        dy[i] = (float)dy[i];
    }
    for (size_t i = 0; i < C; ++i) {
        g[i] = (float)g[i];
        b[i] = (float)b[i];
    }

    size_t         dims[4] = {N, C, H, W};
    clnorm_bn_desc desc;
    CHECK_NORM(ctx, clnorm_bn_desc_init(&desc, CLNORM_BN_SPATIAL, CLNORM_NCHW, 4, dims));
    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x            = clnorm_buf(upload(cl, x, n), 0);
    a.y            = clnorm_buf(upload(cl, NULL, n), 0);
    a.dy           = clnorm_buf(upload(cl, dy, n), 0);
    a.dx           = clnorm_buf(upload(cl, NULL, n), 0);
    a.gamma        = clnorm_buf(upload(cl, g, C), 0);
    a.beta         = clnorm_buf(upload(cl, b, C), 0);
    a.dgamma       = clnorm_buf(upload(cl, NULL, C), 0);
    a.dbeta        = clnorm_buf(upload(cl, NULL, C), 0);
    a.saved_mean   = clnorm_buf(upload(cl, NULL, C), 0);
    a.saved_invstd = clnorm_buf(upload(cl, NULL, C), 0);

    /* first call builds the programs (or loads them from the disk cache) */
    double t0 = now();
    CHECK_NORM(ctx, clnorm_bn_forward_training(ctx, q, &desc, &a, 0, NULL, NULL));
    CHECK_CL(clFinish(q));
    double t_first = now() - t0;
    /* steady state: median of 5 calls each */
    double tf[5], tb[5];
    for (int i = 0; i < 5; ++i) {
        t0 = now();
        CHECK_NORM(ctx, clnorm_bn_forward_training(ctx, q, &desc, &a, 0, NULL, NULL));
        CHECK_CL(clFinish(q));
        tf[i] = now() - t0;
    }
    for (int i = 0; i < 5; ++i) {
        t0 = now();
        CHECK_NORM(ctx, clnorm_bn_backward(ctx, q, &desc, &a, 0, NULL, NULL));
        CHECK_CL(clFinish(q));
        tb[i] = now() - t0;
    }
    double t_fwd = median5(tf), t_bwd = median5(tb);

    double  *ry = malloc(n * sizeof *ry), *rdx = malloc(n * sizeof *rdx);
    double  *rm = malloc(C * sizeof *rm), *ri = malloc(C * sizeof *ri);
    double  *rdg = malloc(C * sizeof *rdg), *rdb = malloc(C * sizeof *rdb);
    ref_view v = {N, C, H * W};
    ref_bn_forward_training(v, x, g, b, desc.epsilon, 0.1, 1, ry, rm, ri, NULL, NULL);
    ref_bn_backward(v, x, dy, g, rm, ri, rdx, rdg, rdb);

    double sy, sdx, sdg, sdb;
    double ey  = max_err(q, a.y.mem, ry, n, &sy);
    double edx = max_err(q, a.dx.mem, rdx, n, &sdx);
    double edg = max_err(q, a.dgamma.mem, rdg, C, &sdg);
    double edb = max_err(q, a.dbeta.mem, rdb, C, &sdb);
    printf("first call (program build or cache load + run): %8.1f ms\n", t_first * 1e3);
    printf("forward training (median of 5):  %8.2f ms  %6.2f GB/s (x read, y written)\n", t_fwd * 1e3,
           2.0 * n * 4 / t_fwd / 1e9);
    printf("backward (median of 5):          %8.2f ms  %6.2f GB/s (x, dy read, dx written)\n", t_bwd * 1e3,
           3.0 * n * 4 / t_bwd / 1e9);
    printf("max abs error vs double reference: y %.2e (of %.1f)  dx %.2e (of %.1f)  "
           "dgamma %.2e (of %.1f)  dbeta %.2e (of %.1f)\n",
           ey, sy, edx, sdx, edg, sdg, edb, sdb);
    /* fp32 tolerance: normwise 1e-4 (see tests/test_bn.c) */
    int ok = ey <= 1e-4 * sy && edx <= 1e-4 * sdx && edg <= 1e-4 * sdg && edb <= 1e-4 * sdb;
    printf("%s\n", ok ? "PASS" : "FAIL");

    clnorm_buffer *bufs[] = {&a.x, &a.y, &a.dy, &a.dx, &a.gamma, &a.beta,
                             &a.dgamma, &a.dbeta, &a.saved_mean, &a.saved_invstd};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; ++i)
        clReleaseMemObject(bufs[i]->mem);
    clnorm_context_destroy(ctx);
    free(x); free(dy); free(g); free(b); free(ry); free(rdx); free(rm); free(ri); free(rdg); free(rdb);
    return ok ? 0 : 1;
}
