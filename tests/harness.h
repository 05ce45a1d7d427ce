/* harness.h: what the device tests share: a context made inside each test
 * process (Criterion forks per test), buffer transfers and error checks. */
#ifndef CLNORM_TEST_HARNESS_H
#define CLNORM_TEST_HARNESS_H

#include "clnorm/clnorm.h"
#include "ref.h"

#include <stddef.h>

typedef struct harness {
    clnorm_context  *ctx;
    cl_context       cl;
    cl_command_queue q;
} harness;

extern harness H;

/* Criterion .init/.fini hooks: create and release H. */
void harness_init(void);
void harness_fini(void);

/* A device buffer of n floats holding x (rounded from double); x may be NULL
 * (then filled with the float value fill). */
cl_mem dev_from_double(const double *x, size_t n, float fill);
/* A device buffer of n bytes filled with byte pattern. */
cl_mem dev_bytes(size_t n, unsigned char pattern);
/* Reads n floats into doubles. */
void dev_to_double(cl_mem m, size_t n, double *out);
/* Reads n raw bytes. */
void dev_read(cl_mem m, size_t bytes, void *out);
/* Rounds doubles through fp32 in place (what the device sees as input). */
void round_to_float(double *x, size_t n);

/* max |got - ref| / max(max|ref|, floor): a normwise relative error. */
double normwise_err(const double *got, const double *ref, size_t n, double floor);
int    any_nan(const double *x, size_t n);

double *dalloc(size_t n);

#endif
