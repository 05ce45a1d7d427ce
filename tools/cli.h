/* cli.h: what the clnorm program's subcommands share: one description of an
 * operation run through the library on host arrays (cli_job), storage-type
 * conversions, and error reporting. Not part of the library. */
#ifndef CLNORM_TOOLS_CLI_H
#define CLNORM_TOOLS_CLI_H

#include "clnorm/clnorm.h"

#include <stddef.h>
#include <stdint.h>

#define CLI_ERRLEN 1024

/* Exit statuses of the program. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* Prints "clnorm: error: <message>" as one line on stderr. */
void cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* The operations the program can run (instance norm is CLI_OP_GN with
 * cli_job.instance set). */
typedef enum cli_op { CLI_OP_BN = 0, CLI_OP_LN, CLI_OP_RMS, CLI_OP_GN } cli_op;

/* 1 when this build of the library has the family operations (layer, RMS,
 * group and instance norm). */
int cli_have_family(void);

/* One operation on host arrays. Tensors (x, dy, y, dx) hold `count` values
 * of the storage type (float, double, or uint16_t bits for f16/bf16);
 * per-channel vectors and statistics hold float, or double for CLNORM_F64
 * (clnorm_param_size). Pointers to outputs that are not wanted are NULL. */
typedef struct cli_job {
    cli_op       op;
    clnorm_dtype dtype;
    int          grad; /* also run the backward pass (dy in; dx, dgamma, dbeta out) */

    /* Batch norm: the descriptor (shape, layout, mode, epsilon, factor) and
     * training (forward with batch statistics + backward through them) or
     * inference (running statistics + frozen backward). */
    clnorm_bn_desc bn;
    int            training;

    /* Family: layer and RMS norm take `norm` (shape and axis); group and
     * instance norm take `gn` (shape, layout, groups; instance norm uses one
     * group per channel). The dtype fields of both are ignored. */
    clnorm_norm_desc      norm;
    clnorm_groupnorm_desc gn;
    int                   instance;
    double                epsilon;

    /* inputs */
    const void *x, *gamma, *beta, *running_mean_in, *running_var_in, *dy;
    /* outputs */
    void *y, *running_mean, *running_var, *saved_mean, *saved_invstd;
    void *dx, *dgamma, *dbeta;
} cli_job;

/* Element counts of the tensor, of the affine vectors and of the saved
 * statistics of a job; for layer/RMS norm, rows and the row length; for
 * group norm N, C, the spatial size and the group count. */
size_t cli_job_count(const cli_job *j);
void   cli_job_rows(const cli_job *j, size_t *rows, size_t *cols);
void   cli_job_groups(const cli_job *j, size_t *n, size_t *c, size_t *spatial, size_t *groups);
size_t cli_job_channels(const cli_job *j);
size_t cli_job_stats(const cli_job *j);

/* Runs job on ctx and blocks until its outputs are on the host. Returns
 * the library's status; on failure err holds a one-line message. */
clnorm_status cli_job_run(clnorm_context *ctx, const cli_job *j, char *err, size_t errlen);

/* Storage conversions for tensors and parameters of dtype. */
size_t      cli_tensor_size(clnorm_dtype dtype);
void        cli_to_tensor(clnorm_dtype dtype, const double *src, size_t n, void *dst);
void        cli_from_tensor(clnorm_dtype dtype, const void *src, size_t n, double *dst);
void        cli_to_param(clnorm_dtype dtype, const double *src, size_t n, void *dst);
void        cli_from_param(clnorm_dtype dtype, const void *src, size_t n, double *dst);
const char *cli_dtype_name(clnorm_dtype dtype);

/* Subcommands; argv[0] is the subcommand's name. */
int cli_devices(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_run(int argc, char **argv);

/* Creates a context on selector (NULL: CLNORM_DEVICE or the default rule);
 * prints the error and returns NULL on failure. */
clnorm_context *cli_open(const char *selector);

/* `clnorm tune` and `clnorm bench` (cli_tune.c). */
int cli_tune(int argc, char **argv);
int cli_bench(int argc, char **argv);

#endif
