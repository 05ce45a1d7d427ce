/* cli_run.c: `clnorm run OP`: one ONNX normalization operator on .npy files,
 * with ONNX input, output and attribute names, and optionally its gradient.
 * Everything is validated before the device is touched, and outputs are
 * written only after every computation succeeded. */
#include "cli.h"
#include "npy.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_run[] =
    "usage: clnorm run OP [--device SEL] [--grad] [--attr KEY=VALUE]...\n"
    "                  --in NAME=FILE.npy... --out NAME=FILE.npy...\n"
    "\n"
    "Runs the ONNX operator OP on .npy arrays (C order, float32, or float64 on\n"
    "devices with cl_khr_fp64; all inputs of one run share one dtype). Names and\n"
    "attributes are the ONNX specification's; tensors are channels first (NCHW).\n"
    "Only the outputs named with --out are written, and only once everything\n"
    "has been computed: on any error no output file is created or replaced.\n"
    "\n"
    "Operators, with their inputs ([optional]), attributes (default) and outputs:\n"
    "  BatchNormalization\n"
    "      in   X scale B input_mean input_var\n"
    "      attr epsilon (1e-5) momentum (0.9) training_mode (0)\n"
    "      out  Y running_mean running_var\n"
    "  LayerNormalization\n"
    "      in   X Scale [B]\n"
    "      attr axis (-1) epsilon (1e-5) stash_type (1)\n"
    "      out  Y Mean InvStdDev\n"
    "  GroupNormalization (opset 21: scale and bias have shape (C,))\n"
    "      in   X scale bias\n"
    "      attr num_groups (required) epsilon (1e-5) stash_type (1)\n"
    "      out  Y\n"
    "  InstanceNormalization\n"
    "      in   input scale B\n"
    "      attr epsilon (1e-5)\n"
    "      out  output\n"
    "  RMSNormalization\n"
    "      in   X scale\n"
    "      attr axis (-1) epsilon (1e-5) stash_type (1)\n"
    "      out  Y\n"
    "\n"
    "BatchNormalization: training_mode=1 normalizes with the batch statistics\n"
    "and updates the running statistics as ONNX does (running = input * momentum\n"
    "+ batch * (1 - momentum), with the biased batch variance); running_mean and\n"
    "running_var exist only then. training_mode=0 uses input_mean and input_var.\n"
    "LayerNormalization and RMSNormalization: Scale and B have the normalized\n"
    "shape X.shape[axis:] (leading 1s allowed); Mean and InvStdDev have the\n"
    "dtype of X and shape X.shape[:axis] + [1]*(rank-axis); stash_type accepts\n"
    "1 only (float32 statistics, or float64 for float64 inputs). Without B,\n"
    "dB is the gradient of a zero bias, of the normalized shape.\n"
    "\n"
    "Options:\n"
    "  --device SEL       device by P:D, flat index or name substring\n"
    "  --grad             also compute the gradient of sum(Y * dY): takes the\n"
    "                     input dY (the shape of X) and gives the outputs dX,\n"
    "                     dscale and dB (RMSNormalization: no dB). dscale is the\n"
    "                     gradient of the scale input whatever its ONNX name\n"
    "                     (scale or Scale), dB that of the bias (B or bias).\n"
    "                     BatchNormalization with training_mode=1 differentiates\n"
    "                     through the batch statistics; with training_mode=0 the\n"
    "                     running statistics are constants.\n"
    "  --attr KEY=VALUE   set an attribute (repeatable)\n"
    "  --in NAME=FILE     an input (repeatable)\n"
    "  --out NAME=FILE    an output to write (repeatable; at least one)\n"
    "\n"
    "example:\n"
    "  clnorm run BatchNormalization --attr training_mode=1 --attr momentum=0.9 \\\n"
    "      --in X=x.npy --in scale=g.npy --in B=b.npy --in input_mean=m.npy \\\n"
    "      --in input_var=v.npy --out Y=y.npy --out running_mean=m.npy\n";

/* Roles of inputs and outputs, independent of their ONNX names. */
enum { IN_X, IN_SCALE, IN_BIAS, IN_MEAN, IN_VAR, IN_DY, IN_COUNT };
enum { OUT_Y, OUT_STAT1, OUT_STAT2, OUT_DX, OUT_DSCALE, OUT_DB, OUT_COUNT };
enum { AT_EPSILON, AT_MOMENTUM, AT_TRAINING, AT_AXIS, AT_STASH, AT_GROUPS, AT_COUNT };

typedef struct op_spec {
    const char *name;
    cli_op      op;
    const char *in[IN_COUNT];   /* ONNX names; NULL where the op has no such input */
    unsigned    required;       /* bit per IN_* */
    const char *out[OUT_COUNT]; /* NULL where the op has no such output */
    unsigned    attrs;          /* bit per AT_* */
    int         instance;       /* InstanceNormalization: groups = C */
} op_spec;

#define BIT(i) (1u << (i))

static const op_spec specs[] = {
    {"BatchNormalization",
     CLI_OP_BN,
     {"X", "scale", "B", "input_mean", "input_var", "dY"},
     BIT(IN_X) | BIT(IN_SCALE) | BIT(IN_BIAS) | BIT(IN_MEAN) | BIT(IN_VAR),
     {"Y", "running_mean", "running_var", "dX", "dscale", "dB"},
     BIT(AT_EPSILON) | BIT(AT_MOMENTUM) | BIT(AT_TRAINING),
     0},
    {"LayerNormalization",
     CLI_OP_LN,
     {"X", "Scale", "B", NULL, NULL, "dY"},
     BIT(IN_X) | BIT(IN_SCALE),
     {"Y", "Mean", "InvStdDev", "dX", "dscale", "dB"},
     BIT(AT_EPSILON) | BIT(AT_AXIS) | BIT(AT_STASH),
     0},
    {"GroupNormalization",
     CLI_OP_GN,
     {"X", "scale", "bias", NULL, NULL, "dY"},
     BIT(IN_X) | BIT(IN_SCALE) | BIT(IN_BIAS),
     {"Y", NULL, NULL, "dX", "dscale", "dB"},
     BIT(AT_EPSILON) | BIT(AT_STASH) | BIT(AT_GROUPS),
     0},
    {"InstanceNormalization",
     CLI_OP_GN,
     {"input", "scale", "B", NULL, NULL, "dY"},
     BIT(IN_X) | BIT(IN_SCALE) | BIT(IN_BIAS),
     {"output", NULL, NULL, "dX", "dscale", "dB"},
     BIT(AT_EPSILON),
     1},
    {"RMSNormalization",
     CLI_OP_RMS,
     {"X", "scale", NULL, NULL, NULL, "dY"},
     BIT(IN_X) | BIT(IN_SCALE),
     {"Y", NULL, NULL, "dX", "dscale", NULL},
     BIT(AT_EPSILON) | BIT(AT_AXIS) | BIT(AT_STASH),
     0},
};

static const char *attr_name(int a)
{
    static const char *const n[AT_COUNT] = {"epsilon", "momentum",   "training_mode",
                                            "axis",    "stash_type", "num_groups"};
    return n[a];
}

typedef struct run_state {
    const op_spec *spec;
    const char    *device;
    int            grad;
    const char    *in_path[IN_COUNT];
    npy_array      in[IN_COUNT];
    const char    *out_path[OUT_COUNT];
    int            attr_set[AT_COUNT];
    double         eps, momentum;
    long           training, axis, stash, groups;
    /* derived */
    clnorm_dtype dtype;
    cli_job      job;
    size_t       out_ndim[OUT_COUNT];
    size_t       out_shape[OUT_COUNT][NPY_MAX_DIMS];
    void        *out_data[OUT_COUNT];
} run_state;

/* "(2, 3, 4)" */
static const char *shape_str(const size_t *shape, size_t ndim, char *buf, size_t len)
{
    size_t k = (size_t)snprintf(buf, len, "(");
    for (size_t i = 0; i < ndim && k < len; ++i)
        k += (size_t)snprintf(buf + k, len - k, "%s%zu", i ? ", " : "", shape[i]);
    if (k < len)
        snprintf(buf + k, len - k, ndim == 1 ? ",)" : ")");
    return buf;
}

static const char *names_list(const char *const *names, int n, char *buf, size_t len)
{
    size_t k = 0;
    buf[0]   = '\0';
    for (int i = 0; i < n && k < len; ++i)
        if (names[i])
            k += (size_t)snprintf(buf + k, len - k, "%s%s", k ? ", " : "", names[i]);
    return buf;
}

/* Splits "NAME=VALUE"; returns 0 when there is no '=' or an empty side. */
static int split_kv(char *arg, char **key, char **val)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return 0;
    *eq  = '\0';
    *key = arg;
    *val = eq + 1;
    return 1;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno    = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno  = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno == ERANGE)
        return 0;
    *out = v;
    return 1;
}

#define FAIL(...)               \
    do {                        \
        cli_error(__VA_ARGS__); \
        return CLI_EXIT_FAIL;   \
    } while (0)

#define USAGE(...)              \
    do {                        \
        cli_error(__VA_ARGS__); \
        return CLI_EXIT_USAGE;  \
    } while (0)

static int set_attr(run_state *s, char *kv)
{
    const op_spec *sp = s->spec;
    char          *key, *val;
    if (!split_kv(kv, &key, &val))
        USAGE("run %s: --attr '%s' is not KEY=VALUE", sp->name, kv);
    int a = -1;
    for (int i = 0; i < AT_COUNT; ++i)
        if ((sp->attrs & BIT(i)) && !strcmp(key, attr_name(i)))
            a = i;
    if (a < 0) {
        char   list[256] = "";
        size_t k         = 0;
        for (int i = 0; i < AT_COUNT; ++i)
            if (sp->attrs & BIT(i))
                k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", k ? ", " : "", attr_name(i));
        FAIL("run %s: unknown attribute '%s' (attributes: %s)", sp->name, key, list);
    }
    if (s->attr_set[a])
        FAIL("run %s: attribute %s given twice", sp->name, key);
    s->attr_set[a] = 1;
    switch (a) {
    case AT_EPSILON:
        if (!parse_double(val, &s->eps) || !(s->eps > 0))
            FAIL("run %s: attribute epsilon='%s' must be a finite number > 0", sp->name, val);
        break;
    case AT_MOMENTUM:
        if (!parse_double(val, &s->momentum) || s->momentum < 0 || s->momentum > 1)
            FAIL("run %s: attribute momentum='%s' must be a number in [0, 1]", sp->name, val);
        break;
    case AT_TRAINING:
        if (!parse_long(val, &s->training) || (s->training != 0 && s->training != 1))
            FAIL("run %s: attribute training_mode='%s' must be 0 or 1", sp->name, val);
        break;
    case AT_AXIS:
        if (!parse_long(val, &s->axis))
            FAIL("run %s: attribute axis='%s' is not an integer", sp->name, val);
        break;
    case AT_STASH:
        if (!parse_long(val, &s->stash))
            FAIL("run %s: attribute stash_type='%s' is not an integer", sp->name, val);
        if (s->stash != 1)
            FAIL("run %s: attribute stash_type=%ld is not supported (only 1: float32 statistics)", sp->name,
                 s->stash);
        break;
    case AT_GROUPS:
        if (!parse_long(val, &s->groups) || s->groups <= 0)
            FAIL("run %s: attribute num_groups='%s' must be a positive integer", sp->name, val);
        break;
    }
    return CLI_EXIT_OK;
}

static int set_io(run_state *s, char *kv, int is_out)
{
    const op_spec *sp   = s->spec;
    const char    *what = is_out ? "--out" : "--in";
    char          *key, *val;
    if (!split_kv(kv, &key, &val))
        USAGE("run %s: %s '%s' is not NAME=FILE", sp->name, what, kv);
    int                n     = is_out ? OUT_COUNT : IN_COUNT;
    const char *const *names = is_out ? sp->out : sp->in;
    const char       **paths = is_out ? s->out_path : s->in_path;
    for (int i = 0; i < n; ++i) {
        if (!names[i] || strcmp(names[i], key))
            continue;
        if (paths[i])
            FAIL("run %s: %s %s given twice", sp->name, is_out ? "output" : "input", key);
        paths[i] = val;
        return CLI_EXIT_OK;
    }
    char list[256];
    FAIL("run %s: unknown %s name '%s' (%ss: %s)", sp->name, is_out ? "output" : "input", key,
         is_out ? "output" : "input", names_list(names, n, list, sizeof list));
}

static int parse_args(run_state *s, int argc, char **argv)
{
    if (argc < 2)
        USAGE("run: missing operator name (see clnorm run --help)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage_run, stdout);
        return -1;
    }
    for (size_t i = 0; i < sizeof specs / sizeof *specs; ++i)
        if (!strcmp(argv[1], specs[i].name))
            s->spec = &specs[i];
    if (!s->spec)
        USAGE("run: unknown operator '%s' (operators: BatchNormalization, LayerNormalization, "
              "GroupNormalization, InstanceNormalization, RMSNormalization)",
              argv[1]);
    const char *op = s->spec->name;
    for (int i = 2; i < argc; ++i) {
        char *arg = argv[i], *val = NULL;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage_run, stdout);
            return -1;
        }
        if (!strcmp(arg, "--grad")) {
            s->grad = 1;
            continue;
        }
        static const char *const valued[] = {"--device", "--attr", "--in", "--out"};
        int                      which    = -1;
        for (int k = 0; k < 4; ++k) {
            size_t l = strlen(valued[k]);
            if (!strcmp(arg, valued[k])) {
                if (i + 1 >= argc)
                    USAGE("run %s: %s needs a value", op, arg);
                which = k;
                val   = argv[++i];
            } else if (!strncmp(arg, valued[k], l) && arg[l] == '=') {
                which = k;
                val   = arg + l + 1;
            }
        }
        int rc = CLI_EXIT_OK;
        switch (which) {
        case 0: s->device = val; break;
        case 1: rc = set_attr(s, val); break;
        case 2: rc = set_io(s, val, 0); break;
        case 3: rc = set_io(s, val, 1); break;
        default: USAGE("run %s: unexpected argument '%s' (see clnorm run --help)", op, arg);
        }
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    return CLI_EXIT_OK;
}

/* Checks the names against the op and the flags, before any file is read. */
static int check_names(run_state *s)
{
    const op_spec *sp = s->spec;
    if ((sp->attrs & BIT(AT_GROUPS)) && !s->attr_set[AT_GROUPS])
        FAIL("run %s: attribute num_groups is required", sp->name);
    for (int i = 0; i < IN_COUNT; ++i) {
        if (i == IN_DY) {
            if (s->grad && !s->in_path[i])
                FAIL("run %s: --grad needs the input dY (the gradient of Y)", sp->name);
            if (!s->grad && s->in_path[i])
                FAIL("run %s: input dY is only used with --grad", sp->name);
        } else if ((sp->required & BIT(i)) && !s->in_path[i]) {
            FAIL("run %s: missing required input %s (--in %s=FILE.npy)", sp->name, sp->in[i], sp->in[i]);
        }
    }
    int any = 0;
    for (int i = 0; i < OUT_COUNT; ++i) {
        if (!s->out_path[i])
            continue;
        any = 1;
        if (i >= OUT_DX && !s->grad)
            FAIL("run %s: output %s needs --grad", sp->name, sp->out[i]);
        if (sp->op == CLI_OP_BN && (i == OUT_STAT1 || i == OUT_STAT2) && s->training != 1)
            FAIL("run %s: output %s exists only with training_mode=1", sp->name, sp->out[i]);
        for (int k = 0; k < i; ++k)
            if (s->out_path[k] && !strcmp(s->out_path[k], s->out_path[i]))
                FAIL("run %s: outputs %s and %s would both be written to %s", sp->name, sp->out[k],
                     sp->out[i], s->out_path[i]);
    }
    if (!any)
        FAIL("run %s: no output requested (--out NAME=FILE.npy; outputs: %s)", sp->name,
             names_list(sp->out, s->grad ? OUT_COUNT : OUT_DX, (char[256]){0}, 256));
    return CLI_EXIT_OK;
}

/* Reads the inputs and checks dtypes. */
static int read_inputs(run_state *s)
{
    const op_spec *sp = s->spec;
    char           err[CLI_ERRLEN];
    int            first = -1;
    for (int i = 0; i < IN_COUNT; ++i) {
        if (!s->in_path[i])
            continue;
        if (npy_read(s->in_path[i], &s->in[i], err, sizeof err) != 0)
            FAIL("run %s: input %s: %s", sp->name, sp->in[i], err);
        if (first < 0) {
            first = i;
        } else if (s->in[i].dtype != s->in[first].dtype) {
            FAIL("run %s: input %s (%s) is %s but %s (%s) is %s: all inputs of one run must share one "
                 "dtype",
                 sp->name, sp->in[i], s->in_path[i], s->in[i].dtype == NPY_F64 ? "float64" : "float32",
                 sp->in[first], s->in_path[first], s->in[first].dtype == NPY_F64 ? "float64" : "float32");
        }
    }
    s->dtype = s->in[IN_X].dtype == NPY_F64 ? CLNORM_F64 : CLNORM_F32;
    return CLI_EXIT_OK;
}

/* Strips leading 1s: the shape a broadcastable parameter really has. */
static size_t squeeze_lead(const size_t *shape, size_t ndim, const size_t **out)
{
    while (ndim > 0 && shape[0] == 1) {
        ++shape;
        --ndim;
    }
    *out = shape;
    return ndim;
}

/* A per-channel parameter must have exactly the shape want, (C,); one of
 * layer/RMS norm the normalized shape, give or take leading 1s (the same
 * values broadcast the same way). */
static int check_param(run_state *s, int role, const size_t *want, size_t want_nd, int allow_ones,
                       const char *what)
{
    const op_spec   *sp = s->spec;
    const npy_array *a  = &s->in[role];
    char             b1[128], b2[128];
    int              ok = a->ndim == want_nd && !memcmp(a->shape, want, want_nd * sizeof *want);
    if (!ok && allow_ones) {
        const size_t *p, *q;
        size_t        n1 = squeeze_lead(a->shape, a->ndim, &p), n2 = squeeze_lead(want, want_nd, &q);
        ok = a->ndim <= s->in[IN_X].ndim && n1 == n2 && !memcmp(p, q, n1 * sizeof *p);
    }
    if (!ok)
        FAIL("run %s: input %s (%s) has shape %s but must have shape %s (%s)", sp->name, sp->in[role],
             s->in_path[role], shape_str(a->shape, a->ndim, b1, sizeof b1),
             shape_str(want, want_nd, b2, sizeof b2), what);
    return CLI_EXIT_OK;
}

/* Checks the shapes and fills the job. */
static int build_job(run_state *s)
{
    const op_spec   *sp = s->spec;
    const npy_array *X  = &s->in[IN_X];
    const char      *xn = sp->in[IN_X];
    char             b1[128];
    cli_job         *j = &s->job;
    memset(j, 0, sizeof *j);
    j->op    = sp->op;
    j->dtype = s->dtype;
    j->grad  = s->grad;

    size_t r = X->ndim;
    for (size_t i = 0; i < r; ++i)
        if (X->shape[i] == 0)
            FAIL("run %s: input %s (%s) has shape %s: a zero dimension is not supported", sp->name, xn,
                 s->in_path[IN_X], shape_str(X->shape, r, b1, sizeof b1));
    size_t min_rank = sp->op == CLI_OP_BN || sp->op == CLI_OP_GN ? 2 : 1;
    if (r < min_rank)
        FAIL("run %s: input %s (%s) has rank %zu but must have rank >= %zu (%s)", sp->name, xn,
             s->in_path[IN_X], r, min_rank, min_rank == 2 ? "N, C, D1, ..." : "at least one axis");
    if (r > CLNORM_MAX_DIMS)
        FAIL("run %s: input %s (%s) has rank %zu; at most %d is supported", sp->name, xn, s->in_path[IN_X], r,
             CLNORM_MAX_DIMS);
    if (s->in[IN_DY].data &&
        (s->in[IN_DY].ndim != r || memcmp(s->in[IN_DY].shape, X->shape, r * sizeof(size_t))))
        FAIL("run %s: input dY (%s) has shape %s but must have the shape of %s %s", sp->name,
             s->in_path[IN_DY], shape_str(s->in[IN_DY].shape, s->in[IN_DY].ndim, b1, sizeof b1), xn,
             shape_str(X->shape, r, (char[128]){0}, 128));

    j->epsilon = s->eps;
    j->x       = X->data;
    j->gamma   = s->in[IN_SCALE].data;
    j->beta    = s->in[IN_BIAS].data;
    j->dy      = s->in[IN_DY].data;

    size_t cshape[1];
    switch (sp->op) {
    case CLI_OP_BN: {
        clnorm_status st = clnorm_bn_desc_init(&j->bn, CLNORM_BN_SPATIAL, CLNORM_NCHW, r, X->shape);
        if (st != CLNORM_SUCCESS)
            FAIL("run %s: input X (%s): %s", sp->name, s->in_path[IN_X], clnorm_last_error(NULL));
        j->bn.epsilon              = s->eps;
        j->bn.exp_avg_factor       = 1.0 - s->momentum; /* ONNX momentum weighs the old value */
        j->bn.unbiased_running_var = 0;                 /* ONNX updates with the biased variance */
        j->training                = (int)s->training;
        cshape[0]                  = X->shape[1];
        const int roles[]          = {IN_SCALE, IN_BIAS, IN_MEAN, IN_VAR};
        for (int k = 0; k < 4; ++k)
            if (check_param(s, roles[k], cshape, 1, 0, "C = X.shape[1]") != CLI_EXIT_OK)
                return CLI_EXIT_FAIL;
        j->running_mean_in = s->in[IN_MEAN].data;
        j->running_var_in  = s->in[IN_VAR].data;
        for (int o = OUT_STAT1; o <= OUT_STAT2; ++o) {
            s->out_ndim[o]     = 1;
            s->out_shape[o][0] = cshape[0];
        }
        for (int o = OUT_DSCALE; o <= OUT_DB; ++o) {
            s->out_ndim[o]     = 1;
            s->out_shape[o][0] = cshape[0];
        }
        break;
    }
    case CLI_OP_LN:
    case CLI_OP_RMS: {
        long ax = s->attr_set[AT_AXIS] ? s->axis : -1;
        if (ax < -(long)r || ax >= (long)r)
            FAIL("run %s: attribute axis=%ld is out of range for input %s of rank %zu (use %ld..%zu)",
                 sp->name, ax, xn, r, -(long)r, r - 1);
        size_t a = ax < 0 ? (size_t)(ax + (long)r) : (size_t)ax;
        if (clnorm_norm_desc_init(&j->norm, r, X->shape, (int)ax) != CLNORM_SUCCESS)
            FAIL("run %s: input %s (%s): %s", sp->name, xn, s->in_path[IN_X], clnorm_last_error(NULL));
        char what[160];
        snprintf(what, sizeof what, "X.shape[%zu:], the normalized axes", a);
        if (check_param(s, IN_SCALE, X->shape + a, r - a, 1, what) != CLI_EXIT_OK)
            return CLI_EXIT_FAIL;
        if (s->in[IN_BIAS].data && check_param(s, IN_BIAS, X->shape + a, r - a, 1, what) != CLI_EXIT_OK)
            return CLI_EXIT_FAIL;
        for (int o = OUT_STAT1; o <= OUT_STAT2; ++o) {
            s->out_ndim[o] = r;
            for (size_t i = 0; i < r; ++i)
                s->out_shape[o][i] = i < a ? X->shape[i] : 1;
        }
        /* the gradients have the shapes the parameters were given in */
        s->out_ndim[OUT_DSCALE] = s->in[IN_SCALE].ndim;
        memcpy(s->out_shape[OUT_DSCALE], s->in[IN_SCALE].shape, sizeof s->out_shape[0]);
        if (s->in[IN_BIAS].data) {
            s->out_ndim[OUT_DB] = s->in[IN_BIAS].ndim;
            memcpy(s->out_shape[OUT_DB], s->in[IN_BIAS].shape, sizeof s->out_shape[0]);
        } else {
            s->out_ndim[OUT_DB] = r - a;
            memcpy(s->out_shape[OUT_DB], X->shape + a, (r - a) * sizeof(size_t));
        }
        break;
    }
    case CLI_OP_GN: {
        size_t C = X->shape[1], G = sp->instance ? C : (size_t)s->groups;
        if (C % G)
            FAIL("run %s: attribute num_groups=%zu does not divide the %zu channels of X (%s)", sp->name, G,
                 C, s->in_path[IN_X]);
        if (clnorm_groupnorm_desc_init(&j->gn, CLNORM_NCHW, r, X->shape, G) != CLNORM_SUCCESS)
            FAIL("run %s: input %s (%s): %s", sp->name, xn, s->in_path[IN_X], clnorm_last_error(NULL));
        j->instance = sp->instance;
        cshape[0]   = C;
        if (check_param(s, IN_SCALE, cshape, 1, 0, "C = X.shape[1]") != CLI_EXIT_OK ||
            check_param(s, IN_BIAS, cshape, 1, 0, "C = X.shape[1]") != CLI_EXIT_OK)
            return CLI_EXIT_FAIL;
        for (int o = OUT_DSCALE; o <= OUT_DB; ++o) {
            s->out_ndim[o]     = 1;
            s->out_shape[o][0] = cshape[0];
        }
        break;
    }
    }
    const int like_x[] = {OUT_Y, OUT_DX};
    for (int k = 0; k < 2; ++k) {
        s->out_ndim[like_x[k]] = r;
        memcpy(s->out_shape[like_x[k]], X->shape, sizeof s->out_shape[0]);
    }
    return CLI_EXIT_OK;
}

/* Host buffers for the requested outputs, wired into the job. */
static int alloc_outputs(run_state *s)
{
    cli_job *j                = &s->job;
    size_t   ps               = s->dtype == CLNORM_F64 ? 8 : 4;
    size_t   tb               = cli_job_count(j) * cli_tensor_size(s->dtype);
    size_t   cb               = cli_job_channels(j) * ps;
    size_t   sb               = (s->spec->op == CLI_OP_BN ? cli_job_channels(j) : cli_job_stats(j)) * ps;
    size_t   bytes[OUT_COUNT] = {tb, sb, sb, tb, cb, cb};
    void   **slot[OUT_COUNT]  = {&j->y, NULL, NULL, &j->dx, &j->dgamma, &j->dbeta};
    if (s->spec->op == CLI_OP_BN) {
        slot[OUT_STAT1] = &j->running_mean;
        slot[OUT_STAT2] = &j->running_var;
    } else {
        slot[OUT_STAT1] = &j->saved_mean;
        slot[OUT_STAT2] = &j->saved_invstd;
    }
    for (int o = 0; o < OUT_COUNT; ++o) {
        if (!s->out_path[o])
            continue;
        s->out_data[o] = malloc(bytes[o] ? bytes[o] : 1);
        if (!s->out_data[o])
            FAIL("run %s: out of host memory for output %s (%zu bytes)", s->spec->name, s->spec->out[o],
                 bytes[o]);
        *slot[o] = s->out_data[o];
    }
    return CLI_EXIT_OK;
}

/* The directory of path must exist and be writable; checked before the
 * device work so that a typo costs nothing. */
static int check_out_dir(run_state *s, int o)
{
    const char *path = s->out_path[o];
    const char *sl   = strrchr(path, '/');
    char        dir[4096];
    if (!sl)
        snprintf(dir, sizeof dir, ".");
    else if (sl == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(sl - path), path);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        FAIL("run %s: output %s (%s): directory %s does not exist", s->spec->name, s->spec->out[o], path,
             dir);
    if (access(dir, W_OK) != 0)
        FAIL("run %s: output %s (%s): directory %s is not writable", s->spec->name, s->spec->out[o], path,
             dir);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        FAIL("run %s: output %s (%s) is a directory", s->spec->name, s->spec->out[o], path);
    return CLI_EXIT_OK;
}

/* Writes every requested output, all or nothing: each goes to a hidden
 * staging file next to its target first, and only when all of them are
 * written are they renamed into place. */
static int write_outputs(run_state *s)
{
    char      err[CLI_ERRLEN];
    char     *stage[OUT_COUNT] = {NULL};
    int       rc               = CLI_EXIT_OK;
    npy_dtype dt               = s->dtype == CLNORM_F64 ? NPY_F64 : NPY_F32;
    for (int o = 0; o < OUT_COUNT && rc == CLI_EXIT_OK; ++o) {
        if (!s->out_path[o])
            continue;
        const char *path = s->out_path[o];
        const char *sl   = strrchr(path, '/');
        size_t      dl   = sl ? (size_t)(sl - path) + 1 : 0;
        size_t      len  = strlen(path) + 64;
        stage[o]         = malloc(len);
        if (!stage[o]) {
            cli_error("run %s: out of host memory", s->spec->name);
            rc = CLI_EXIT_FAIL;
            break;
        }
        snprintf(stage[o], len, "%.*s.%s.clnorm-%ld-%d", (int)dl, path, path + dl, (long)getpid(), o);
        if (npy_write(stage[o], dt, s->out_ndim[o], s->out_shape[o], s->out_data[o], err, sizeof err) != 0) {
            /* npy_write's message starts with the staging path: name the real one */
            size_t      sl2 = strlen(stage[o]);
            const char *why =
                !strncmp(err, stage[o], sl2) && !strncmp(err + sl2, ": ", 2) ? err + sl2 + 2 : err;
            cli_error("run %s: output %s (%s): %s", s->spec->name, s->spec->out[o], path, why);
            free(stage[o]);
            stage[o] = NULL;
            rc       = CLI_EXIT_FAIL;
        }
    }
    for (int o = 0; o < OUT_COUNT && rc == CLI_EXIT_OK; ++o) {
        if (stage[o] && rename(stage[o], s->out_path[o]) != 0) {
            cli_error("run %s: output %s (%s): cannot rename into place: %s", s->spec->name, s->spec->out[o],
                      s->out_path[o], strerror(errno));
            rc = CLI_EXIT_FAIL;
        }
        if (rc == CLI_EXIT_OK) {
            free(stage[o]);
            stage[o] = NULL;
        }
    }
    for (int o = 0; o < OUT_COUNT; ++o) {
        if (stage[o])
            unlink(stage[o]);
        free(stage[o]);
    }
    return rc;
}

static int run_main(run_state *s, int argc, char **argv)
{
    int rc = parse_args(s, argc, argv);
    if (rc < 0)
        return CLI_EXIT_OK; /* --help */
    if (rc != CLI_EXIT_OK)
        return rc;
    const op_spec *sp = s->spec;
    if (sp->op != CLI_OP_BN && !cli_have_family())
        FAIL("run %s: this build of the library has no %s", sp->name, sp->name);
    if ((rc = check_names(s)) != CLI_EXIT_OK)
        return rc;
    for (int o = 0; o < OUT_COUNT; ++o)
        if (s->out_path[o] && (rc = check_out_dir(s, o)) != CLI_EXIT_OK)
            return rc;
    if ((rc = read_inputs(s)) != CLI_EXIT_OK || (rc = build_job(s)) != CLI_EXIT_OK ||
        (rc = alloc_outputs(s)) != CLI_EXIT_OK)
        return rc;

    clnorm_context *ctx = cli_open(s->device);
    if (!ctx)
        return CLI_EXIT_FAIL;
    char          err[CLI_ERRLEN];
    clnorm_status st = cli_job_run(ctx, &s->job, err, sizeof err);
    if (st == CLNORM_ERROR_UNSUPPORTED_DTYPE) {
        clnorm_device_info info;
        clnorm_context_device_info(ctx, &info);
        cli_error("run %s: input %s (%s) is float64, which device \"%s\" does not support (no cl_khr_fp64): "
                  "use float32 arrays",
                  sp->name, sp->in[IN_X], s->in_path[IN_X], info.name);
        rc = CLI_EXIT_FAIL;
    } else if (st != CLNORM_SUCCESS) {
        cli_error("run %s: %s", sp->name, err);
        rc = CLI_EXIT_FAIL;
    }
    clnorm_context_destroy(ctx);
    if (rc != CLI_EXIT_OK)
        return rc;
    return write_outputs(s);
}

int cli_run(int argc, char **argv)
{
    run_state s;
    memset(&s, 0, sizeof s);
    s.eps      = 1e-5;
    s.momentum = 0.9;
    s.stash    = 1;
    int rc     = run_main(&s, argc, argv);
    for (int i = 0; i < IN_COUNT; ++i)
        npy_free(&s.in[i]);
    for (int o = 0; o < OUT_COUNT; ++o)
        free(s.out_data[o]);
    return rc;
}
