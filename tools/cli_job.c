/* cli_job.c: runs one operation (cli_job) through the library on host
 * arrays: upload, enqueue the library calls, read back. Shared by `run`
 * and `check` so both exercise the library the same way. */
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *fmt, ...)
{
    char    msg[2 * CLI_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* one line, whatever the message carried (build logs have newlines) */
    for (char *p = msg; *p; ++p)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == ' ')
        msg[--n] = '\0';
    fprintf(stderr, "clnorm: error: %s\n", msg);
}

clnorm_context *cli_open(const char *selector)
{
    clnorm_context *ctx = NULL;
    clnorm_status   st  = clnorm_context_create_default(selector, &ctx);
    if (st != CLNORM_SUCCESS) {
        const char *why = clnorm_last_error(NULL);
        cli_error("cannot open an OpenCL device: %s", *why ? why : clnorm_status_string(st));
        return NULL;
    }
    return ctx;
}

/* ------------------------------------------------------------------------ */
/* Storage types                                                            */
/* ------------------------------------------------------------------------ */

const char *cli_dtype_name(clnorm_dtype dtype)
{
    switch (dtype) {
    case CLNORM_F32: return "f32";
    case CLNORM_F16: return "f16";
    case CLNORM_BF16: return "bf16";
    case CLNORM_F64: return "f64";
    }
    return "?";
}

size_t cli_tensor_size(clnorm_dtype dtype)
{
    switch (dtype) {
    case CLNORM_F16:
    case CLNORM_BF16: return 2;
    case CLNORM_F64: return 8;
    default: return 4;
    }
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE binary16, round to nearest even (what vstore_half_rte does). */
static uint16_t float_to_half(float f)
{
    uint32_t u    = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a    = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal half (or zero) */
        /* value * 2^24 rounded to an integer is the subnormal's mantissa */
        float    m    = u2f(a) * 16777216.0f;
        uint32_t r    = (uint32_t)m;
        float    frac = m - (float)r;
        if (frac > 0.5f || (frac == 0.5f && (r & 1u)))
            ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t e    = (a >> 23) - 127 + 15;
    uint32_t mant = a & 0x7fffffu;
    uint32_t h    = (e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        ++h; /* may carry into the exponent, which is right */
    return (uint16_t)(sign | h);
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e    = (h >> 10) & 0x1fu;
    uint32_t m    = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m / 16777216.0f;
        return sign ? -v : v;
    }
    if (e == 31)
        return u2f(sign | 0x7f800000u | (m << 13));
    return u2f(sign | ((e - 15 + 127) << 23) | (m << 13));
}

static uint16_t float_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_to_float(uint16_t b) { return u2f((uint32_t)b << 16); }

void cli_to_tensor(clnorm_dtype dtype, const double *src, size_t n, void *dst)
{
    for (size_t i = 0; i < n; ++i) {
        switch (dtype) {
        case CLNORM_F64: ((double *)dst)[i] = src[i]; break;
        case CLNORM_F16: ((uint16_t *)dst)[i] = float_to_half((float)src[i]); break;
        case CLNORM_BF16: ((uint16_t *)dst)[i] = float_to_bf16((float)src[i]); break;
        default: ((float *)dst)[i] = (float)src[i]; break;
        }
    }
}

void cli_from_tensor(clnorm_dtype dtype, const void *src, size_t n, double *dst)
{
    for (size_t i = 0; i < n; ++i) {
        switch (dtype) {
        case CLNORM_F64: dst[i] = ((const double *)src)[i]; break;
        case CLNORM_F16: dst[i] = half_to_float(((const uint16_t *)src)[i]); break;
        case CLNORM_BF16: dst[i] = bf16_to_float(((const uint16_t *)src)[i]); break;
        default: dst[i] = ((const float *)src)[i]; break;
        }
    }
}

void cli_to_param(clnorm_dtype dtype, const double *src, size_t n, void *dst)
{
    for (size_t i = 0; i < n; ++i) {
        if (dtype == CLNORM_F64)
            ((double *)dst)[i] = src[i];
        else
            ((float *)dst)[i] = (float)src[i];
    }
}

void cli_from_param(clnorm_dtype dtype, const void *src, size_t n, double *dst)
{
    for (size_t i = 0; i < n; ++i)
        dst[i] = dtype == CLNORM_F64 ? ((const double *)src)[i] : ((const float *)src)[i];
}

static size_t param_size(clnorm_dtype dtype) { return dtype == CLNORM_F64 ? 8 : 4; }

/* ------------------------------------------------------------------------ */
/* Jobs                                                                     */
/* ------------------------------------------------------------------------ */

void cli_job_rows(const cli_job *j, size_t *rows, size_t *cols)
{
    const clnorm_norm_desc *d    = &j->norm;
    long                    axis = d->axis < 0 ? d->axis + (long)d->ndim : d->axis;
    *rows = *cols = 1;
    for (size_t i = 0; i < d->ndim; ++i)
        *((long)i < axis ? rows : cols) *= d->dims[i];
}

void cli_job_groups(const cli_job *j, size_t *n, size_t *c, size_t *spatial, size_t *groups)
{
    const clnorm_groupnorm_desc *d = &j->gn;
    *n                             = d->dims[0];
    *c                             = d->layout == CLNORM_NCHW ? d->dims[1] : d->dims[d->ndim - 1];
    *spatial                       = 1;
    for (size_t i = 1; i < d->ndim; ++i)
        *spatial *= d->dims[i];
    *spatial /= *c;
    *groups = j->instance ? *c : d->num_groups;
}

size_t cli_job_count(const cli_job *j)
{
    size_t        t    = 1;
    const size_t *dims = j->op == CLI_OP_BN ? j->bn.dims : j->op == CLI_OP_GN ? j->gn.dims : j->norm.dims;
    size_t        nd   = j->op == CLI_OP_BN ? j->bn.ndim : j->op == CLI_OP_GN ? j->gn.ndim : j->norm.ndim;
    for (size_t i = 0; i < nd; ++i)
        t *= dims[i];
    return t;
}

size_t cli_job_channels(const cli_job *j)
{
    size_t r, c, n, s, g;
    switch (j->op) {
    case CLI_OP_BN:
        if (j->bn.mode == CLNORM_BN_PER_ACTIVATION)
            return cli_job_count(j) / j->bn.dims[0];
        return j->bn.layout == CLNORM_NCHW ? j->bn.dims[1] : j->bn.dims[j->bn.ndim - 1];
    case CLI_OP_LN:
    case CLI_OP_RMS: cli_job_rows(j, &r, &c); return c;
    case CLI_OP_GN: cli_job_groups(j, &n, &c, &s, &g); return c;
    }
    return 0;
}

size_t cli_job_stats(const cli_job *j)
{
    size_t r, c, n, s, g;
    switch (j->op) {
    case CLI_OP_BN: return cli_job_channels(j);
    case CLI_OP_LN:
    case CLI_OP_RMS: cli_job_rows(j, &r, &c); return r;
    case CLI_OP_GN: cli_job_groups(j, &n, &c, &s, &g); return n * g;
    }
    return 0;
}

/* Device buffers of one job, released together. */
enum { B_X, B_Y, B_G, B_B, B_RM, B_RV, B_SM, B_SI, B_DY, B_DX, B_DG, B_DB, B_COUNT };

typedef struct job_state {
    clnorm_context  *ctx;
    cl_context       cl;
    cl_command_queue q;
    cl_mem           m[B_COUNT];
    char            *err;
    size_t           errlen;
} job_state;

static clnorm_status make_buf(job_state *s, int which, const void *host, size_t bytes, const char *name)
{
    cl_int err = CL_SUCCESS;
    if (bytes == 0)
        bytes = 1;
    s->m[which] = clCreateBuffer(s->cl, CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                                 (void *)host, &err);
    if (!s->m[which]) {
        snprintf(s->err, s->errlen, "cannot allocate %zu bytes on the device for %s: %s", bytes, name,
                 clnorm_status_name((clnorm_status)err));
        return (clnorm_status)(err ? err : CL_MEM_OBJECT_ALLOCATION_FAILURE);
    }
    return CLNORM_SUCCESS;
}

static clnorm_status read_buf(job_state *s, int which, void *host, size_t bytes, const char *name)
{
    if (!host)
        return CLNORM_SUCCESS;
    cl_int err = clEnqueueReadBuffer(s->q, s->m[which], CL_TRUE, 0, bytes, host, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        snprintf(s->err, s->errlen, "reading %s back from the device failed: %s", name,
                 clnorm_status_name((clnorm_status)err));
        return (clnorm_status)err;
    }
    return CLNORM_SUCCESS;
}

static clnorm_status lib_fail(job_state *s, const char *call, clnorm_status st)
{
    const char *why = clnorm_last_error(s->ctx);
    snprintf(s->err, s->errlen, "%s: %s", call, *why ? why : clnorm_status_string(st));
    return st;
}

static clnorm_buffer bufof(job_state *s, int which) { return clnorm_buf(s->m[which], 0); }

#define TRY(expr)                 \
    do {                          \
        st = (expr);              \
        if (st != CLNORM_SUCCESS) \
            goto done;            \
    } while (0)

#define LIB(call, args)             \
    do {                            \
        st = call args;             \
        if (st != CLNORM_SUCCESS) { \
            lib_fail(s, #call, st); \
            goto done;              \
        }                           \
    } while (0)

static clnorm_status run_bn(job_state *s, const cli_job *j)
{
    clnorm_status  st;
    size_t         n = cli_job_count(j), C = cli_job_channels(j);
    size_t         tb = n * cli_tensor_size(j->dtype), pb = C * param_size(j->dtype);
    clnorm_bn_desc d = j->bn;
    d.dtype          = j->dtype;

    TRY(make_buf(s, B_X, j->x, tb, "X"));
    TRY(make_buf(s, B_Y, NULL, tb, "Y"));
    if (j->gamma)
        TRY(make_buf(s, B_G, j->gamma, pb, "scale"));
    if (j->beta)
        TRY(make_buf(s, B_B, j->beta, pb, "bias"));
    if (j->running_mean_in)
        TRY(make_buf(s, B_RM, j->running_mean_in, pb, "mean"));
    if (j->running_var_in)
        TRY(make_buf(s, B_RV, j->running_var_in, pb, "var"));
    TRY(make_buf(s, B_SM, NULL, pb, "saved mean"));
    TRY(make_buf(s, B_SI, NULL, pb, "saved invstd"));

    clnorm_bn_args a;
    memset(&a, 0, sizeof a);
    a.x            = bufof(s, B_X);
    a.y            = bufof(s, B_Y);
    a.gamma        = bufof(s, B_G);
    a.beta         = bufof(s, B_B);
    a.running_mean = bufof(s, B_RM);
    a.running_var  = bufof(s, B_RV);
    a.saved_mean   = bufof(s, B_SM);
    a.saved_invstd = bufof(s, B_SI);
    if (j->training)
        LIB(clnorm_bn_forward_training, (s->ctx, s->q, &d, &a, 0, NULL, NULL));
    else
        LIB(clnorm_bn_forward_inference, (s->ctx, s->q, &d, &a, 0, NULL, NULL));
    if (j->grad) {
        TRY(make_buf(s, B_DY, j->dy, tb, "dY"));
        TRY(make_buf(s, B_DX, NULL, tb, "dX"));
        TRY(make_buf(s, B_DG, NULL, pb, "dscale"));
        TRY(make_buf(s, B_DB, NULL, pb, "dB"));
        a.dy     = bufof(s, B_DY);
        a.dx     = bufof(s, B_DX);
        a.dgamma = bufof(s, B_DG);
        a.dbeta  = bufof(s, B_DB);
        if (j->training)
            LIB(clnorm_bn_backward, (s->ctx, s->q, &d, &a, 0, NULL, NULL));
        else
            LIB(clnorm_bn_backward_frozen, (s->ctx, s->q, &d, &a, 0, NULL, NULL));
    }
    TRY(read_buf(s, B_Y, j->y, tb, "Y"));
    if (j->training) {
        TRY(read_buf(s, B_SM, j->saved_mean, pb, "saved mean"));
        TRY(read_buf(s, B_SI, j->saved_invstd, pb, "saved invstd"));
        if (j->running_mean_in)
            TRY(read_buf(s, B_RM, j->running_mean, pb, "running_mean"));
        if (j->running_var_in)
            TRY(read_buf(s, B_RV, j->running_var, pb, "running_var"));
    }
    if (j->grad) {
        TRY(read_buf(s, B_DX, j->dx, tb, "dX"));
        TRY(read_buf(s, B_DG, j->dgamma, pb, "dscale"));
        TRY(read_buf(s, B_DB, j->dbeta, pb, "dB"));
    }
done:
    return st;
}

#if CLI_HAVE_FAMILY
int cli_have_family(void) { return 1; }

static clnorm_status run_family(job_state *s, const cli_job *j)
{
    clnorm_status         st;
    size_t                n = cli_job_count(j), C = cli_job_channels(j), S = cli_job_stats(j);
    size_t                tb = n * cli_tensor_size(j->dtype), pb = C * param_size(j->dtype);
    size_t                sb = S * param_size(j->dtype);
    clnorm_norm_desc      nd = j->norm;
    clnorm_groupnorm_desc gd = j->gn;
    nd.dtype = gd.dtype = j->dtype;
    nd.epsilon = gd.epsilon = j->epsilon;

    TRY(make_buf(s, B_X, j->x, tb, "X"));
    TRY(make_buf(s, B_Y, NULL, tb, "Y"));
    if (j->gamma)
        TRY(make_buf(s, B_G, j->gamma, pb, "scale"));
    if (j->beta && j->op != CLI_OP_RMS)
        TRY(make_buf(s, B_B, j->beta, pb, "bias"));
    if (j->op != CLI_OP_RMS)
        TRY(make_buf(s, B_SM, NULL, sb, "mean"));
    TRY(make_buf(s, B_SI, NULL, sb, "invstd"));

    clnorm_norm_args a;
    memset(&a, 0, sizeof a);
    a.x      = bufof(s, B_X);
    a.y      = bufof(s, B_Y);
    a.gamma  = bufof(s, B_G);
    a.beta   = bufof(s, B_B);
    a.mean   = bufof(s, B_SM);
    a.invstd = bufof(s, B_SI);
    switch (j->op) {
    case CLI_OP_LN: LIB(clnorm_layernorm_forward, (s->ctx, s->q, &nd, &a, 0, NULL, NULL)); break;
    case CLI_OP_RMS: LIB(clnorm_rmsnorm_forward, (s->ctx, s->q, &nd, &a, 0, NULL, NULL)); break;
    default:
        if (j->instance)
            LIB(clnorm_instancenorm_forward, (s->ctx, s->q, &gd, &a, 0, NULL, NULL));
        else
            LIB(clnorm_groupnorm_forward, (s->ctx, s->q, &gd, &a, 0, NULL, NULL));
        break;
    }
    if (j->grad) {
        TRY(make_buf(s, B_DY, j->dy, tb, "dY"));
        TRY(make_buf(s, B_DX, NULL, tb, "dX"));
        TRY(make_buf(s, B_DG, NULL, pb, "dscale"));
        if (j->op != CLI_OP_RMS)
            TRY(make_buf(s, B_DB, NULL, pb, "dB"));
        a.dy     = bufof(s, B_DY);
        a.dx     = bufof(s, B_DX);
        a.dgamma = bufof(s, B_DG);
        a.dbeta  = bufof(s, B_DB);
        switch (j->op) {
        case CLI_OP_LN: LIB(clnorm_layernorm_backward, (s->ctx, s->q, &nd, &a, 0, NULL, NULL)); break;
        case CLI_OP_RMS: LIB(clnorm_rmsnorm_backward, (s->ctx, s->q, &nd, &a, 0, NULL, NULL)); break;
        default:
            if (j->instance)
                LIB(clnorm_instancenorm_backward, (s->ctx, s->q, &gd, &a, 0, NULL, NULL));
            else
                LIB(clnorm_groupnorm_backward, (s->ctx, s->q, &gd, &a, 0, NULL, NULL));
            break;
        }
    }
    TRY(read_buf(s, B_Y, j->y, tb, "Y"));
    if (j->op != CLI_OP_RMS)
        TRY(read_buf(s, B_SM, j->saved_mean, sb, "mean"));
    TRY(read_buf(s, B_SI, j->saved_invstd, sb, "invstd"));
    if (j->grad) {
        TRY(read_buf(s, B_DX, j->dx, tb, "dX"));
        TRY(read_buf(s, B_DG, j->dgamma, pb, "dscale"));
        if (j->op != CLI_OP_RMS)
            TRY(read_buf(s, B_DB, j->dbeta, pb, "dB"));
    }
done:
    return st;
}
#else
int cli_have_family(void) { return 0; }

static clnorm_status run_family(job_state *s, const cli_job *j)
{
    (void)j;
    snprintf(s->err, s->errlen, "this build of the library has no layer/RMS/group/instance norm");
    return CLNORM_ERROR_INVALID_ARGUMENT;
}
#endif

clnorm_status cli_job_run(clnorm_context *ctx, const cli_job *j, char *err, size_t errlen)
{
    job_state s;
    memset(&s, 0, sizeof s);
    s.ctx    = ctx;
    s.cl     = clnorm_context_cl_context(ctx);
    s.q      = clnorm_context_queue(ctx);
    s.err    = err;
    s.errlen = errlen;
    if (errlen)
        err[0] = '\0';
    clnorm_status st;
    if (j->op == CLI_OP_BN)
        st = run_bn(&s, j);
    else
        st = run_family(&s, j);
    clFinish(s.q);
    for (int i = 0; i < B_COUNT; ++i)
        if (s.m[i])
            clReleaseMemObject(s.m[i]);
    return st;
}
