/* harness.c: device-test helpers; see harness.h. */
#include "harness.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

harness H;

void harness_init(void)
{
    memset(&H, 0, sizeof H);
    clnorm_status st = clnorm_context_create_default(NULL, &H.ctx);
    cr_assert_eq(st, CLNORM_SUCCESS, "context: %s (%s)", clnorm_status_string(st), clnorm_last_error(NULL));
    H.cl = clnorm_context_cl_context(H.ctx);
    H.q  = clnorm_context_queue(H.ctx);
}

void harness_fini(void)
{
    clnorm_context_destroy(H.ctx);
    memset(&H, 0, sizeof H);
}

cl_mem dev_from_double(const double *x, size_t n, float fill)
{
    float *tmp = malloc((n ? n : 1) * sizeof *tmp);
    cr_assert_not_null(tmp);
    for (size_t i = 0; i < n; ++i)
        tmp[i] = x ? (float)x[i] : fill;
    cl_int err;
    cl_mem m = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, (n ? n : 1) * sizeof(float),
                              tmp, &err);
    free(tmp);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer(%zu floats): %d", n, err);
    return m;
}

cl_mem dev_bytes(size_t n, unsigned char pattern)
{
    unsigned char *tmp = malloc(n ? n : 1);
    cr_assert_not_null(tmp);
    memset(tmp, pattern, n ? n : 1);
    cl_int err;
    cl_mem m = clCreateBuffer(H.cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n ? n : 1, tmp, &err);
    free(tmp);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer(%zu bytes): %d", n, err);
    return m;
}

void dev_read(cl_mem m, size_t bytes, void *out)
{
    cl_int err = clEnqueueReadBuffer(H.q, m, CL_TRUE, 0, bytes, out, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS, "clEnqueueReadBuffer: %d", err);
}

void dev_to_double(cl_mem m, size_t n, double *out)
{
    float *tmp = malloc((n ? n : 1) * sizeof *tmp);
    cr_assert_not_null(tmp);
    dev_read(m, n * sizeof(float), tmp);
    for (size_t i = 0; i < n; ++i)
        out[i] = tmp[i];
    free(tmp);
}

void round_to_float(double *x, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        x[i] = (float)x[i];
}

double normwise_err(const double *got, const double *ref, size_t n, double floor)
{
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; ++i) {
        if (fabs(ref[i]) > scale)
            scale = fabs(ref[i]);
        double e = fabs(got[i] - ref[i]);
        if (isnan(got[i]) != isnan(ref[i]))
            return INFINITY;
        if (e > err)
            err = e;
    }
    return err / scale;
}

int any_nan(const double *x, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (isnan(x[i]))
            return 1;
    return 0;
}

double *dalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    cr_assert_not_null(p);
    return p;
}
