/* native.h: plain-C models of the batch norm passes on the host's threads
 * (native.c), a ceiling for the figures of a CPU OpenCL device. */
#ifndef CLNORM_BENCH_NATIVE_H
#define CLNORM_BENCH_NATIVE_H

#include <stddef.h>

/* The cases, in order: training forward and backward of (batch, 112, 112,
 * 64) channels last, then of (batch, 64, 112, 112) channels first. */
#define NATIVE_CASES 4

typedef struct native_set native_set;

/* Buffers for the cases and for a copy of copy_floats values, run on nt
 * threads; NULL when they cannot be allocated. */
native_set *native_open(int nt, size_t batch, size_t copy_floats);
void        native_close(native_set *s);

/* GB/s, median of reps runs after a warm-up: the copy (read + write), and
 * case k at the minimal traffic the benchmark counts (2x or 3x the tensor). */
double      native_copy(native_set *s, int reps);
double      native_case(native_set *s, int k, int reps);
const char *native_case_name(int k);

int native_threads(void);   /* the host's online CPUs */
int native_streaming(void); /* 1 where the models' writes bypass the caches */

#endif
