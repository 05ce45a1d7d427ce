/* test_cli.c: the clnorm program run as a user runs it: the built binary
 * (../tools/clnorm next to this test, or $CLNORM_CLI) is spawned on .npy
 * files written by npy_write. Every operator forward and with --grad is
 * compared with the C reference; every rejection must exit non-zero with
 * one line naming the file or input and leave no output file behind;
 * `devices`, `check --quick`, help and version are exercised too.
 *
 * Tolerances are normwise (max|got - ref| / max|ref|): fp32 Y 2e-5,
 * statistics 1e-4, dX 5e-5, dscale/dB 1e-4 (the bounds test_bn.c justifies);
 * fp64 1e-10. */
#include "clnorm/clnorm.h"
#include "ref.h"

/* The .npy reader/writer the program uses, compiled in here (this test's
 * target is registered generically by tests/CMakeLists.txt). */
#include "../tools/npy.c"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------------ */
/* Spawning the program                                                     */
/* ------------------------------------------------------------------------ */

static char t_dir[PATH_MAX]; /* the test's working directory (inputs, outputs) */
static char t_cap[PATH_MAX]; /* where stdout/stderr are captured */

typedef struct t_proc {
    int  status; /* exit status, or 128 + signal */
    char out[1 << 16];
    char err[1 << 14];
} t_proc;

static t_proc P;

static void t_cli_path(char *buf, size_t len)
{
    const char *env = getenv("CLNORM_CLI");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return;
    }
    char    self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert(n > 0, "readlink /proc/self/exe failed");
    self[n]  = '\0';
    char *sl = strrchr(self, '/');
    *sl      = '\0';
    snprintf(buf, len, "%.*s/../tools/clnorm", (int)(len > 32 ? len - 32 : 0), self);
}

static void t_slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n]   = '\0';
    fclose(f);
}

/* Runs the program with argv (NULL-terminated, without argv[0]) and extra
 * environment entries env (NULL-terminated or NULL); fills P. */
static int t_run_env(const char *const *env, const char *const *args)
{
    char exe[PATH_MAX];
    t_cli_path(exe, sizeof exe);
    cr_assert(access(exe, X_OK) == 0,
              "the clnorm program is not built at %s (build the clnorm_cli target or set CLNORM_CLI)", exe);
    const char *argv[64];
    size_t      k = 0;
    argv[k++]     = exe;
    for (size_t i = 0; args[i]; ++i) {
        cr_assert(k < 63);
        argv[k++] = args[i];
    }
    argv[k] = NULL;
    const char *envp[256];
    size_t      e = 0;
    if (env)
        for (size_t i = 0; env[i] && e < 32; ++i)
            envp[e++] = env[i];
    for (char **p = environ; *p && e < 255; ++p)
        envp[e++] = *p;
    envp[e] = NULL;

    char out[PATH_MAX + 16], err[PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/stdout", t_cap);
    snprintf(err, sizeof err, "%s/stderr", t_cap);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int   rc = posix_spawn(&pid, exe, &fa, NULL, (char *const *)argv, (char *const *)envp);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", exe, strerror(rc));
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    P.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    t_slurp(out, P.out, sizeof P.out);
    t_slurp(err, P.err, sizeof P.err);
    return P.status;
}

static int t_run(const char *const *args) { return t_run_env(NULL, args); }

#define RUN(...) t_run((const char *const[]){__VA_ARGS__, NULL})

static void t_expect_ok(void)
{
    cr_assert_eq(P.status, 0, "exit %d; stderr: %s", P.status, P.err);
    cr_expect_str_empty(P.err, "stderr: %s", P.err);
}

static void t_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[PATH_MAX + 256];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            t_rmtree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void t_setup(void)
{
    snprintf(t_dir, sizeof t_dir, "/tmp/clnorm-test-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(t_dir));
    snprintf(t_cap, sizeof t_cap, "/tmp/clnorm-test-cli-cap-XXXXXX");
    cr_assert_not_null(mkdtemp(t_cap));
    cr_assert_eq(chdir(t_dir), 0);
}

static void t_teardown(void)
{
    if (chdir("/") != 0)
        return;
    t_rmtree(t_dir);
    t_rmtree(t_cap);
}

/* The sorted names in the working directory, joined by '|'. */
static void t_listing(char *buf, size_t len)
{
    char names[256][256];
    int  n = 0;
    DIR *d = opendir(t_dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            snprintf(names[n++], 256, "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)n, 256, (int (*)(const void *, const void *))strcmp);
    size_t k = 0;
    buf[0]   = '\0';
    for (int i = 0; i < n && k < len; ++i)
        k += (size_t)snprintf(buf + k, len - k, "%s|", names[i]);
}

/* ------------------------------------------------------------------------ */
/* Arrays                                                                   */
/* ------------------------------------------------------------------------ */

static size_t t_count(size_t nd, const size_t *shape)
{
    size_t n = 1;
    for (size_t i = 0; i < nd; ++i)
        n *= shape[i];
    return n;
}

/* Writes x (n doubles) as dtype, and rounds x to what the file holds. */
static void t_save(const char *path, npy_dtype dt, size_t nd, const size_t *shape, double *x)
{
    size_t n   = t_count(nd, shape);
    void  *buf = malloc(n * 8 + 8);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < n; ++i) {
        if (dt == NPY_F32) {
            ((float *)buf)[i] = (float)x[i];
            x[i]              = ((float *)buf)[i];
        } else {
            ((double *)buf)[i] = x[i];
        }
    }
    char err[512];
    cr_assert_eq(npy_write(path, dt, nd, shape, buf, err, sizeof err), 0, "%s", err);
    free(buf);
}

/* Random data written to path; returns the doubles (rounded to the file). */
static double *t_make(const char *path, npy_dtype dt, size_t nd, const size_t *shape, ref_rng *r, double lo,
                      double hi, int normal)
{
    size_t  n = t_count(nd, shape);
    double *x = calloc(n ? n : 1, sizeof *x);
    cr_assert_not_null(x);
    if (normal)
        ref_fill_normal(r, x, n, lo, hi);
    else
        ref_fill_uniform(r, x, n, lo, hi);
    t_save(path, dt, nd, shape, x);
    return x;
}

/* Reads an output, checks dtype and shape, returns doubles. */
static double *t_load(const char *path, npy_dtype dt, size_t nd, const size_t *shape)
{
    npy_array a;
    char      err[512];
    cr_assert_eq(npy_read(path, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(a.dtype, dt, "%s: dtype %d, expected %d", path, (int)a.dtype, (int)dt);
    cr_assert_eq(a.ndim, nd, "%s: rank %zu, expected %zu", path, a.ndim, nd);
    for (size_t i = 0; i < nd; ++i)
        cr_assert_eq(a.shape[i], shape[i], "%s: dim %zu is %zu, expected %zu", path, i, a.shape[i], shape[i]);
    double *x = calloc(a.count ? a.count : 1, sizeof *x);
    for (size_t i = 0; i < a.count; ++i)
        x[i] = dt == NPY_F32 ? ((float *)a.data)[i] : ((double *)a.data)[i];
    npy_free(&a);
    return x;
}

static void t_cmp(const char *what, const double *got, const double *ref, size_t n, double tol)
{
    double amax = 0, rmax = 0;
    for (size_t i = 0; i < n; ++i) {
        double d = fabs(got[i] - ref[i]);
        if (isnan(got[i]) || isnan(d))
            d = INFINITY;
        amax = d > amax ? d : amax;
        rmax = fabs(ref[i]) > rmax ? fabs(ref[i]) : rmax;
    }
    double e = amax / (rmax > 1e-30 ? rmax : 1e-30);
    cr_expect(e <= tol, "%s: normwise error %.3g > %.3g", what, e, tol);
    cr_expect(e > 0 || amax == 0);
}

static void t_check_file(const char *path, npy_dtype dt, size_t nd, const size_t *shape, const double *ref,
                         double tol)
{
    double *got = t_load(path, dt, nd, shape);
    t_cmp(path, got, ref, t_count(nd, shape), tol);
    free(got);
}

static int t_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------------------ */
/* Operators against the reference                                          */
/* ------------------------------------------------------------------------ */

/* BatchNormalization on (2, 3, 5, 7): training (batch statistics, ONNX
 * running update) or inference, with the gradient, as f32 or f64. */
static void t_bn(int training, npy_dtype dt)
{
    const size_t N = 2, C = 3, S = 35, xs[4] = {2, 3, 5, 7}, cs[1] = {3};
    size_t       n    = N * C * S;
    ref_rng      r    = ref_rng_seed(42);
    double      *x    = t_make("x.npy", dt, 4, xs, &r, 0.5, 2.0, 1);
    double      *dy   = t_make("dy.npy", dt, 4, xs, &r, 0.1, 1.0, 1);
    double      *g    = t_make("scale.npy", dt, 1, cs, &r, 0.5, 1.5, 0);
    double      *b    = t_make("b.npy", dt, 1, cs, &r, -1.0, 1.0, 0);
    double      *m    = t_make("mean.npy", dt, 1, cs, &r, -0.5, 0.5, 0);
    double      *v    = t_make("var.npy", dt, 1, cs, &r, 0.5, 2.0, 0);
    const char  *mode = training ? "training_mode=1" : "training_mode=0";
    if (training)
        RUN("run", "BatchNormalization", "--grad", "--attr", mode, "--attr", "momentum=0.8", "--attr",
            "epsilon=0.001", "--in", "X=x.npy", "--in", "scale=scale.npy", "--in", "B=b.npy", "--in",
            "input_mean=mean.npy", "--in", "input_var=var.npy", "--in", "dY=dy.npy", "--out", "Y=y.npy",
            "--out", "running_mean=rm.npy", "--out", "running_var=rv.npy", "--out", "dX=dx.npy", "--out",
            "dscale=dscale.npy", "--out", "dB=db.npy");
    else
        RUN("run", "BatchNormalization", "--grad", "--attr", mode, "--attr", "epsilon=0.001", "--in",
            "X=x.npy", "--in", "scale=scale.npy", "--in", "B=b.npy", "--in", "input_mean=mean.npy", "--in",
            "input_var=var.npy", "--in", "dY=dy.npy", "--out", "Y=y.npy", "--out", "dX=dx.npy", "--out",
            "dscale=dscale.npy", "--out", "dB=db.npy");
    t_expect_ok();

    ref_view v3  = {N, C, S};
    double   eps = 1e-3, f = 1 - 0.8;
    double  *ry = calloc(n, 8), *rdx = calloc(n, 8), *rm = calloc(C, 8), *rv = calloc(C, 8);
    double  *mu = calloc(C, 8), *inv = calloc(C, 8), *rdg = calloc(C, 8), *rdb = calloc(C, 8);
    memcpy(rm, m, C * 8);
    memcpy(rv, v, C * 8);
    if (training) {
        /* ONNX: running = input*momentum + batch*(1 - momentum), biased var */
        ref_bn_forward_training(v3, x, g, b, eps, f, 0, ry, mu, inv, rm, rv);
        ref_bn_backward(v3, x, dy, g, mu, inv, rdx, rdg, rdb);
    } else {
        ref_bn_forward_inference(v3, x, g, b, m, v, eps, ry);
        ref_bn_backward_frozen(v3, x, dy, g, m, v, eps, rdx, rdg, rdb);
    }
    int    f64 = dt == NPY_F64;
    double ty = f64 ? 1e-10 : 2e-5, tdx = f64 ? 1e-10 : 5e-5, tp = f64 ? 1e-10 : 1e-4;
    t_check_file("y.npy", dt, 4, xs, ry, ty);
    t_check_file("dx.npy", dt, 4, xs, rdx, tdx);
    t_check_file("dscale.npy", dt, 1, cs, rdg, tp);
    t_check_file("db.npy", dt, 1, cs, rdb, tp);
    if (training) {
        t_check_file("rm.npy", dt, 1, cs, rm, tp);
        t_check_file("rv.npy", dt, 1, cs, rv, tp);
        /* the test must be able to fail: the unbiased update differs */
        double *got = t_load("rv.npy", dt, 1, cs), *unb = calloc(C, 8), *mm = calloc(C, 8);
        memcpy(mm, m, C * 8);
        memcpy(unb, v, C * 8);
        ref_bn_forward_training(v3, x, g, b, eps, f, 1, ry, mu, inv, mm, unb);
        cr_expect(fabs(got[0] - unb[0]) > 1e-6, "running_var looks unbiased");
        free(got);
        free(unb);
        free(mm);
    }
    double *all[] = {x, dy, g, b, m, v, ry, rdx, rm, rv, mu, inv, rdg, rdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        free(all[i]);
}

Test(cli_run, batchnorm_training_grad, .init = t_setup, .fini = t_teardown, .timeout = 120)
{
    t_bn(1, NPY_F32);
}

Test(cli_run, batchnorm_inference_grad, .init = t_setup, .fini = t_teardown, .timeout = 120)
{
    t_bn(0, NPY_F32);
}

static int t_device_has_fp64(void)
{
    cl_device_id       dev;
    clnorm_device_info info;
    cr_assert_eq(clnorm_select_device(NULL, NULL, &dev, NULL, 0), CLNORM_SUCCESS, "%s",
                 clnorm_last_error(NULL));
    cr_assert_eq(clnorm_query_device(dev, &info), CLNORM_SUCCESS);
    return info.has_fp64;
}

Test(cli_run, batchnorm_f64, .init = t_setup, .fini = t_teardown, .timeout = 120)
{
    if (t_device_has_fp64()) {
        t_bn(1, NPY_F64);
        return;
    }
    /* without fp64: one clear line, nothing written */
    const size_t xs[4] = {2, 3, 5, 7}, cs[1] = {3};
    ref_rng      r = ref_rng_seed(1);
    free(t_make("x.npy", NPY_F64, 4, xs, &r, 0, 1, 1));
    const char *p[] = {"scale.npy", "b.npy", "mean.npy", "var.npy"};
    for (int i = 0; i < 4; ++i)
        free(t_make(p[i], NPY_F64, 1, cs, &r, 0.5, 1, 0));
    RUN("run", "BatchNormalization", "--in", "X=x.npy", "--in", "scale=scale.npy", "--in", "B=b.npy", "--in",
        "input_mean=mean.npy", "--in", "input_var=var.npy", "--out", "Y=y.npy");
    cr_expect_neq(P.status, 0);
    cr_expect(strstr(P.err, "float64") != NULL, "%s", P.err);
    cr_expect(!t_exists("y.npy"));
}

/* Only the outputs named are written. */
Test(cli_run, only_named_outputs, .init = t_setup, .fini = t_teardown, .timeout = 120)
{
    const size_t xs[3] = {4, 3, 6}, cs[1] = {3};
    ref_rng      r = ref_rng_seed(2);
    double      *x = t_make("x.npy", NPY_F32, 3, xs, &r, 0, 1, 1);
    double      *m = t_make("m.npy", NPY_F32, 1, cs, &r, 0, 0.5, 0);
    double      *v = t_make("v.npy", NPY_F32, 1, cs, &r, 0.5, 1, 0);
    free(t_make("g.npy", NPY_F32, 1, cs, &r, 0.5, 1, 0));
    free(t_make("b.npy", NPY_F32, 1, cs, &r, 0.5, 1, 0));
    /* running_var updated in place: the output may be an input file */
    RUN("run", "BatchNormalization", "--attr", "training_mode=1", "--in", "X=x.npy", "--in", "scale=g.npy",
        "--in", "B=b.npy", "--in", "input_mean=m.npy", "--in", "input_var=v.npy", "--out",
        "running_var=v.npy");
    t_expect_ok();
    char list[4096];
    t_listing(list, sizeof list);
    cr_expect_str_eq(list, "b.npy|g.npy|m.npy|v.npy|x.npy|");
    double *mean = calloc(3, 8), *var = calloc(3, 8);
    ref_bn_stats((ref_view){4, 3, 6}, x, mean, var);
    for (int c = 0; c < 3; ++c)
        var[c] = 0.9 * v[c] + 0.1 * var[c];
    t_check_file("v.npy", NPY_F32, 1, cs, var, 1e-5);
    free(x);
    free(m);
    free(v);
    free(mean);
    free(var);
}

/* LayerNormalization on (2, 3, 4, 5) over the last two axes, with B. */
Test(cli_run, layernorm_grad, .init = t_setup, .fini = t_teardown, .timeout = 120)
{
    const size_t xs[4] = {2, 3, 4, 5}, ps[2] = {4, 5}, ss[4] = {2, 3, 1, 1};
    size_t       rows = 6, cols = 20, n = rows * cols;
    ref_rng      r  = ref_rng_seed(3);
    double      *x  = t_make("x.npy", NPY_F32, 4, xs, &r, -3.0, 2.0, 1);
    double      *dy = t_make("dy.npy", NPY_F32, 4, xs, &r, 0.0, 1.0, 1);
    double      *g  = t_make("s.npy", NPY_F32, 2, ps, &r, 0.5, 1.5, 0);
    double      *b  = t_make("b.npy", NPY_F32, 2, ps, &r, -1, 1, 0);
    RUN("run", "LayerNormalization", "--grad", "--attr", "axis=-2", "--attr", "epsilon=1e-4", "--attr",
        "stash_type=1", "--in", "X=x.npy", "--in", "Scale=s.npy", "--in", "B=b.npy", "--in", "dY=dy.npy",
        "--out", "Y=y.npy", "--out", "Mean=mean.npy", "--out", "InvStdDev=inv.npy", "--out", "dX=dx.npy",
        "--out", "dscale=ds.npy", "--out", "dB=db.npy");
    t_expect_ok();
    double *ry = calloc(n, 8), *rdx = calloc(n, 8), *mu = calloc(rows, 8), *inv = calloc(rows, 8);
    double *rdg = calloc(cols, 8), *rdb = calloc(cols, 8);
    ref_layernorm_forward(rows, cols, x, g, b, 1e-4, ry, mu, inv);
    ref_layernorm_backward(rows, cols, x, dy, g, mu, inv, rdx, rdg, rdb);
    t_check_file("y.npy", NPY_F32, 4, xs, ry, 2e-5);
    t_check_file("mean.npy", NPY_F32, 4, ss, mu, 1e-4);
    t_check_file("inv.npy", NPY_F32, 4, ss, inv, 1e-4);
    t_check_file("dx.npy", NPY_F32, 4, xs, rdx, 5e-5);
    t_check_file("ds.npy", NPY_F32, 2, ps, rdg, 1e-4);
    t_check_file("db.npy", NPY_F32, 2, ps, rdb, 1e-4);
    double *all[] = {x, dy, g, b, ry, rdx, mu, inv, rdg, rdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        free(all[i]);
}

/* LayerNormalization with the defaults (axis -1) and no B. */
Test(cli_run, layernorm_no_bias, .init = t_setup, .fini = t_teardown, .timeout = 120)
{
    const size_t xs[2] = {7, 33}, ps[1] = {33};
    ref_rng      r = ref_rng_seed(4);
    double      *x = t_make("x.npy", NPY_F32, 2, xs, &r, 1.0, 3.0, 1);
    double      *g = t_make("s.npy", NPY_F32, 1, ps, &r, 0.5, 1.5, 0);
    RUN("run", "LayerNormalization", "--in", "X=x.npy", "--in", "Scale=s.npy", "--out", "Y=y.npy");
    t_expect_ok();
    double *ry = calloc(7 * 33, 8);
    ref_layernorm_forward(7, 33, x, g, NULL, 1e-5, ry, NULL, NULL);
    t_check_file("y.npy", NPY_F32, 2, xs, ry, 2e-5);
    free(x);
    free(g);
    free(ry);
}

Test(cli_run, rmsnorm_grad, .init = t_setup, .fini = t_teardown, .timeout = 120)
{
    const size_t xs[3] = {3, 4, 50}, ps[1] = {50};
    size_t       rows = 12, cols = 50, n = rows * cols;
    ref_rng      r  = ref_rng_seed(5);
    double      *x  = t_make("x.npy", NPY_F32, 3, xs, &r, 0.3, 1.0, 1);
    double      *dy = t_make("dy.npy", NPY_F32, 3, xs, &r, 0.0, 1.0, 1);
    double      *g  = t_make("s.npy", NPY_F32, 1, ps, &r, 0.5, 1.5, 0);
    RUN("run", "RMSNormalization", "--grad", "--attr", "epsilon=1e-6", "--in", "X=x.npy", "--in",
        "scale=s.npy", "--in", "dY=dy.npy", "--out", "Y=y.npy", "--out", "dX=dx.npy", "--out",
        "dscale=ds.npy");
    t_expect_ok();
    double *ry = calloc(n, 8), *rdx = calloc(n, 8), *inv = calloc(rows, 8), *rdg = calloc(cols, 8);
    ref_rmsnorm_forward(rows, cols, x, g, 1e-6, ry, inv);
    ref_rmsnorm_backward(rows, cols, x, dy, g, inv, rdx, rdg);
    t_check_file("y.npy", NPY_F32, 3, xs, ry, 2e-5);
    t_check_file("dx.npy", NPY_F32, 3, xs, rdx, 5e-5);
    t_check_file("ds.npy", NPY_F32, 1, ps, rdg, 1e-4);
    double *all[] = {x, dy, g, ry, rdx, inv, rdg};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        free(all[i]);
}

/* GroupNormalization (opset 21) and InstanceNormalization on (2, 6, 5, 4). */
static void t_gn(int instance)
{
    const size_t xs[4] = {2, 6, 5, 4}, cs[1] = {6};
    size_t       N = 2, C = 6, S = 20, G = instance ? 6 : 3, n = N * C * S;
    ref_rng      r  = ref_rng_seed(6 + (uint64_t)instance);
    double      *x  = t_make("x.npy", NPY_F32, 4, xs, &r, -1.0, 2.0, 1);
    double      *dy = t_make("dy.npy", NPY_F32, 4, xs, &r, 0.2, 1.0, 1);
    double      *g  = t_make("s.npy", NPY_F32, 1, cs, &r, 0.5, 1.5, 0);
    double      *b  = t_make("b.npy", NPY_F32, 1, cs, &r, -1, 1, 0);
    if (instance)
        RUN("run", "InstanceNormalization", "--grad", "--attr", "epsilon=1e-3", "--in", "input=x.npy", "--in",
            "scale=s.npy", "--in", "B=b.npy", "--in", "dY=dy.npy", "--out", "output=y.npy", "--out",
            "dX=dx.npy", "--out", "dscale=ds.npy", "--out", "dB=db.npy");
    else
        RUN("run", "GroupNormalization", "--grad", "--attr", "num_groups=3", "--attr", "epsilon=1e-3", "--in",
            "X=x.npy", "--in", "scale=s.npy", "--in", "bias=b.npy", "--in", "dY=dy.npy", "--out", "Y=y.npy",
            "--out", "dX=dx.npy", "--out", "dscale=ds.npy", "--out", "dB=db.npy");
    t_expect_ok();
    double *ry = calloc(n, 8), *rdx = calloc(n, 8), *mu = calloc(N * G, 8), *inv = calloc(N * G, 8);
    double *rdg = calloc(C, 8), *rdb = calloc(C, 8);
    ref_groupnorm_forward(N, C, S, G, 0, x, g, b, 1e-3, ry, mu, inv);
    ref_groupnorm_backward(N, C, S, G, 0, x, dy, g, mu, inv, rdx, rdg, rdb);
    t_check_file("y.npy", NPY_F32, 4, xs, ry, 2e-5);
    t_check_file("dx.npy", NPY_F32, 4, xs, rdx, 5e-5);
    t_check_file("ds.npy", NPY_F32, 1, cs, rdg, 1e-4);
    t_check_file("db.npy", NPY_F32, 1, cs, rdb, 1e-4);
    double *all[] = {x, dy, g, b, ry, rdx, mu, inv, rdg, rdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        free(all[i]);
}

Test(cli_run, groupnorm_grad, .init = t_setup, .fini = t_teardown, .timeout = 120) { t_gn(0); }

Test(cli_run, instancenorm_grad, .init = t_setup, .fini = t_teardown, .timeout = 120) { t_gn(1); }

/* ------------------------------------------------------------------------ */
/* Rejections                                                               */
/* ------------------------------------------------------------------------ */

/* A .npy v1.0 file written by hand (header padded to 64 bytes). */
static void t_raw_npy(const char *path, const char *dict, const void *data, size_t bytes)
{
    char   hdr[256];
    size_t dl = strlen(dict), total = 10 + dl + 1, pad = (64 - total % 64) % 64;
    memcpy(hdr, dict, dl);
    memset(hdr + dl, ' ', pad);
    hdr[dl + pad] = '\n';
    size_t hl     = dl + pad + 1;
    FILE  *f      = fopen(path, "wb");
    cr_assert_not_null(f);
    unsigned char pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, hl, f);
    if (bytes)
        fwrite(data, 1, bytes, f);
    fclose(f);
}

/* The valid inputs of every rejection case, plus the broken ones. */
static void t_reject_files(void)
{
    const size_t xs[4] = {2, 3, 4, 5}, cs[1] = {3}, c4[1] = {4}, x1[1] = {5}, bad[4] = {2, 3, 4, 4};
    const size_t r2[2] = {6, 8}, p8[1] = {8}, p7[1] = {7};
    ref_rng      r = ref_rng_seed(9);
    free(t_make("x.npy", NPY_F32, 4, xs, &r, 0, 1, 1));
    free(t_make("dy.npy", NPY_F32, 4, xs, &r, 0, 1, 1));
    free(t_make("dybad.npy", NPY_F32, 4, bad, &r, 0, 1, 1));
    free(t_make("s.npy", NPY_F32, 1, cs, &r, 0.5, 1, 0));
    free(t_make("b.npy", NPY_F32, 1, cs, &r, 0.5, 1, 0));
    free(t_make("m.npy", NPY_F32, 1, cs, &r, 0.5, 1, 0));
    free(t_make("v.npy", NPY_F32, 1, cs, &r, 0.5, 1, 0));
    free(t_make("s4.npy", NPY_F32, 1, c4, &r, 0.5, 1, 0));
    free(t_make("s64.npy", NPY_F64, 1, cs, &r, 0.5, 1, 0));
    free(t_make("x1d.npy", NPY_F32, 1, x1, &r, 0.5, 1, 0));
    free(t_make("x2.npy", NPY_F32, 2, r2, &r, 0.5, 1, 0));
    free(t_make("p8.npy", NPY_F32, 1, p8, &r, 0.5, 1, 0));
    free(t_make("p7.npy", NPY_F32, 1, p7, &r, 0.5, 1, 0));
    FILE *f = fopen("garbage.npy", "wb");
    fputs("this is not an npy file at all\n", f);
    fclose(f);
    /* truncated: a valid file cut short */
    free(t_make("trunc.npy", NPY_F32, 4, xs, &r, 0, 1, 1));
    struct stat st;
    stat("trunc.npy", &st);
    cr_assert_eq(truncate("trunc.npy", st.st_size - 7), 0);
    float data[120] = {0};
    t_raw_npy("fortran.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4, 5), }", data,
              sizeof data);
    t_raw_npy("int.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3, 4, 5), }", data,
              sizeof data);
    t_raw_npy("half.npy", "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3, 4, 5), }", data, 240);
    /* an existing output that a failed run must leave alone */
    f = fopen("keep.npy", "wb");
    fputs("sentinel", f);
    fclose(f);
}

typedef struct reject_case {
    const char *name;
    const char *needle; /* what the one-line message must name */
    const char *args[40];
} reject_case;

#define BN_IN                                                                                        \
    "--in", "X=x.npy", "--in", "scale=s.npy", "--in", "B=b.npy", "--in", "input_mean=m.npy", "--in", \
        "input_var=v.npy"
#define BN_IN_NO_X \
    "--in", "scale=s.npy", "--in", "B=b.npy", "--in", "input_mean=m.npy", "--in", "input_var=v.npy"
#define OUT_Y "--out", "Y=out_y.npy"
#define BN_RUN "run", "BatchNormalization"

static reject_case reject_cases[] = {
    {"malformed file", "garbage.npy", {BN_RUN, "--in", "X=garbage.npy", BN_IN_NO_X, OUT_Y}},
    {"truncated file", "trunc.npy", {BN_RUN, "--in", "X=trunc.npy", BN_IN_NO_X, OUT_Y}},
    {"Fortran order", "fortran.npy", {BN_RUN, "--in", "X=fortran.npy", BN_IN_NO_X, OUT_Y}},
    {"int32 dtype", "int.npy", {BN_RUN, "--in", "X=int.npy", BN_IN_NO_X, OUT_Y}},
    {"float16 dtype", "half.npy", {BN_RUN, "--in", "X=half.npy", BN_IN_NO_X, OUT_Y}},
    {"missing file", "nosuch.npy", {BN_RUN, "--in", "X=nosuch.npy", BN_IN_NO_X, OUT_Y}},
    {"missing required input",
     "input_var",
     {BN_RUN, "--in", "X=x.npy", "--in", "scale=s.npy", "--in", "B=b.npy", "--in", "input_mean=m.npy",
      OUT_Y}},
    {"unknown input name", "bias", {BN_RUN, BN_IN, "--in", "bias=b.npy", OUT_Y}},
    {"input given twice", "X", {BN_RUN, BN_IN, "--in", "X=x.npy", OUT_Y}},
    {"unknown output name", "Z", {BN_RUN, BN_IN, "--out", "Z=out_z.npy"}},
    {"unknown attribute", "alpha", {BN_RUN, BN_IN, "--attr", "alpha=1", OUT_Y}},
    {"attribute twice",
     "epsilon",
     {BN_RUN, BN_IN, "--attr", "epsilon=1e-3", "--attr", "epsilon=1e-3", OUT_Y}},
    {"attribute not KEY=VALUE", "epsilon", {BN_RUN, BN_IN, "--attr", "epsilon", OUT_Y}},
    {"epsilon not a number", "epsilon", {BN_RUN, BN_IN, "--attr", "epsilon=abc", OUT_Y}},
    {"epsilon zero", "epsilon", {BN_RUN, BN_IN, "--attr", "epsilon=0", OUT_Y}},
    {"epsilon nan", "epsilon", {BN_RUN, BN_IN, "--attr", "epsilon=nan", OUT_Y}},
    {"momentum out of range", "momentum", {BN_RUN, BN_IN, "--attr", "momentum=1.5", OUT_Y}},
    {"training_mode 2", "training_mode", {BN_RUN, BN_IN, "--attr", "training_mode=2", OUT_Y}},
    {"scale of the wrong length",
     "scale",
     {BN_RUN, "--in", "X=x.npy", "--in", "scale=s4.npy", "--in", "B=b.npy", "--in", "input_mean=m.npy",
      "--in", "input_var=v.npy", OUT_Y}},
    {"mixed dtypes",
     "s64.npy",
     {BN_RUN, "--in", "X=x.npy", "--in", "scale=s64.npy", "--in", "B=b.npy", "--in", "input_mean=m.npy",
      "--in", "input_var=v.npy", OUT_Y}},
    {"rank-1 X", "x1d.npy", {BN_RUN, "--in", "X=x1d.npy", BN_IN_NO_X, OUT_Y}},
    {"dY of the wrong shape", "dY", {BN_RUN, "--grad", BN_IN, "--in", "dY=dybad.npy", OUT_Y}},
    {"--grad without dY", "dY", {BN_RUN, "--grad", BN_IN, OUT_Y}},
    {"dY without --grad", "dY", {BN_RUN, BN_IN, "--in", "dY=dy.npy", OUT_Y}},
    {"dX without --grad", "dX", {BN_RUN, BN_IN, "--out", "dX=out_dx.npy"}},
    {"running_mean in inference", "running_mean", {BN_RUN, BN_IN, "--out", "running_mean=out_rm.npy"}},
    {"no output", "--out", {BN_RUN, BN_IN}},
    {"two outputs, one file",
     "out_y.npy",
     {BN_RUN, "--attr", "training_mode=1", BN_IN, OUT_Y, "--out", "running_mean=out_y.npy"}},
    {"output directory missing", "nodir", {BN_RUN, BN_IN, "--out", "Y=nodir/y.npy"}},
    {"unknown operator", "BatchNorm", {"run", "BatchNorm", BN_IN, OUT_Y}},
    {"option without value", "--in", {BN_RUN, BN_IN, OUT_Y, "--in"}},
    {"failed run keeps old output",
     "s4.npy",
     {BN_RUN, "--in", "X=x.npy", "--in", "scale=s4.npy", "--in", "B=b.npy", "--in", "input_mean=m.npy",
      "--in", "input_var=v.npy", "--out", "Y=keep.npy"}},
    {"layernorm axis out of range",
     "axis",
     {"run", "LayerNormalization", "--attr", "axis=2", "--in", "X=x2.npy", "--in", "Scale=p8.npy", OUT_Y}},
    {"layernorm stash_type 0",
     "stash_type",
     {"run", "LayerNormalization", "--attr", "stash_type=0", "--in", "X=x2.npy", "--in", "Scale=p8.npy",
      OUT_Y}},
    {"layernorm Scale shape",
     "Scale",
     {"run", "LayerNormalization", "--in", "X=x2.npy", "--in", "Scale=p7.npy", OUT_Y}},
    {"layernorm lower-case scale",
     "scale",
     {"run", "LayerNormalization", "--in", "X=x2.npy", "--in", "scale=p8.npy", OUT_Y}},
    {"rmsnorm has no dB",
     "dB",
     {"run", "RMSNormalization", "--grad", "--in", "X=x2.npy", "--in", "scale=p8.npy", "--in", "dY=x2.npy",
      "--out", "dB=out_db.npy"}},
    {"groupnorm without num_groups",
     "num_groups",
     {"run", "GroupNormalization", "--in", "X=x.npy", "--in", "scale=s.npy", "--in", "bias=b.npy", OUT_Y}},
    {"groupnorm num_groups not dividing C",
     "num_groups",
     {"run", "GroupNormalization", "--attr", "num_groups=2", "--in", "X=x.npy", "--in", "scale=s.npy", "--in",
      "bias=b.npy", OUT_Y}},
    {"groupnorm num_groups 0",
     "num_groups",
     {"run", "GroupNormalization", "--attr", "num_groups=0", "--in", "X=x.npy", "--in", "scale=s.npy", "--in",
      "bias=b.npy", OUT_Y}},
    {"instancenorm input is not X",
     "X",
     {"run", "InstanceNormalization", "--in", "X=x.npy", "--in", "scale=s.npy", "--in", "B=b.npy", "--out",
      "output=out_y.npy"}},
    {"instancenorm has no num_groups",
     "num_groups",
     {"run", "InstanceNormalization", "--attr", "num_groups=3", "--in", "input=x.npy", "--in", "scale=s.npy",
      "--in", "B=b.npy", "--out", "output=out_y.npy"}},
};

/* Criterion may run each test in a fresh image of this program, where the
 * table's pointers differ: the parameters are indices into it. */
#define N_REJECT (sizeof reject_cases / sizeof *reject_cases)

ParameterizedTestParameters(cli_reject, cases)
{
    static int idx[N_REJECT];
    for (size_t i = 0; i < N_REJECT; ++i)
        idx[i] = (int)i;
    return cr_make_param_array(int, idx, N_REJECT);
}

ParameterizedTest(int *which, cli_reject, cases, .init = t_setup, .fini = t_teardown, .timeout = 60)
{
    const reject_case *tc = &reject_cases[*which];
    t_reject_files();
    char before[8192], after[8192];
    t_listing(before, sizeof before);
    t_run(tc->args);
    cr_expect_neq(P.status, 0, "%s: exit status 0", tc->name);
    cr_expect(P.status < 128, "%s: killed by a signal (%d)", tc->name, P.status - 128);
    size_t len = strlen(P.err);
    cr_expect(len > 0 && P.err[len - 1] == '\n' && strchr(P.err, '\n') == P.err + len - 1,
              "%s: stderr is not one line: [%s]", tc->name, P.err);
    cr_expect(strncmp(P.err, "clnorm: error: ", 15) == 0, "%s: [%s]", tc->name, P.err);
    cr_expect(strstr(P.err, tc->needle) != NULL, "%s: message does not name '%s': %s", tc->name, tc->needle,
              P.err);
    cr_expect_str_empty(P.out, "%s: stdout: %s", tc->name, P.out);
    t_listing(after, sizeof after);
    cr_expect_str_eq(after, before, "%s: files changed", tc->name);
    char keep[64];
    t_slurp("keep.npy", keep, sizeof keep);
    cr_expect_str_eq(keep, "sentinel");
}

/* ------------------------------------------------------------------------ */
/* devices, check, help, version                                            */
/* ------------------------------------------------------------------------ */

Test(cli_devices, lists_and_picks, .init = t_setup, .fini = t_teardown, .timeout = 60)
{
    RUN("devices");
    t_expect_ok();
    cr_expect(strstr(P.out, "Platform 0:") != NULL, "%s", P.out);
    cr_expect(strstr(P.out, "0:0  #0") != NULL, "%s", P.out);
    cr_expect(strstr(P.out, "compute units") != NULL && strstr(P.out, "fp64") != NULL, "%s", P.out);
    cr_expect(strstr(P.out, "Default device: ") != NULL, "%s", P.out);
    cr_expect(strstr(P.out, "CLNORM_DEVICE") != NULL || strstr(P.out, "default rule") != NULL, "%s", P.out);
}

Test(cli_devices, selector, .init = t_setup, .fini = t_teardown, .timeout = 60)
{
    t_run_env((const char *const[]){"CLNORM_DEVICE=0", NULL}, (const char *const[]){"devices", NULL});
    t_expect_ok();
    cr_expect(strstr(P.out, "Default device: 0:0 #0") != NULL, "%s", P.out);
    cr_expect(strstr(P.out, "(CLNORM_DEVICE=0)") != NULL, "%s", P.out);
    RUN("devices", "--device", "no-such-device-name");
    cr_expect_eq(P.status, 1);
    cr_expect(strstr(P.err, "no-such-device-name") != NULL, "%s", P.err);
}

Test(cli_devices, no_platform, .init = t_setup, .fini = t_teardown, .timeout = 60)
{
    /* the ICD loader reads its vendor files from OCL_ICD_VENDORS: an empty
     * directory leaves it without any platform */
    char env[PATH_MAX + 32];
    snprintf(env, sizeof env, "OCL_ICD_VENDORS=%s", t_dir);
    t_run_env((const char *const[]){env, NULL}, (const char *const[]){"devices", NULL});
    cr_expect_eq(P.status, 1, "exit %d; out %s err %s", P.status, P.out, P.err);
    cr_expect(strstr(P.err, "no OpenCL platform") != NULL, "%s", P.err);
    /* and run/check say so too, without crashing */
    t_run_env((const char *const[]){env, NULL}, (const char *const[]){"check", "--quick", NULL});
    cr_expect_eq(P.status, 1, "check: exit %d; err %s", P.status, P.err);
    cr_expect(strstr(P.err, "no OpenCL platform") != NULL, "%s", P.err);
}

Test(cli_check, quick_passes, .init = t_setup, .fini = t_teardown, .timeout = 300)
{
    RUN("check", "--quick");
    cr_assert_eq(P.status, 0, "exit %d\n%s\n%s", P.status, P.out, P.err);
    cr_expect(strstr(P.out, "FAIL") == NULL, "%s", P.out);
    cr_expect(strstr(P.out, "batchnorm     fwd-train") != NULL, "%s", P.out);
    cr_expect(strstr(P.out, "bwd-frozen") != NULL, "%s", P.out);
    cr_expect(strstr(P.out, "mean=1e4") != NULL, "%s", P.out);
    cr_expect(strstr(P.out, "layernorm") != NULL && strstr(P.out, "rmsnorm") != NULL &&
                  strstr(P.out, "groupnorm") != NULL && strstr(P.out, "instancenorm") != NULL,
              "%s", P.out);
    cr_expect(strstr(P.out, "0 failed") != NULL && strstr(P.out, "\nPASS\n") != NULL, "%s", P.out);
}

Test(cli_misc, version_and_help, .init = t_setup, .fini = t_teardown, .timeout = 60)
{
    char want[64];
    snprintf(want, sizeof want, "clnorm %s\n", clnorm_version_string());
    RUN("--version");
    t_expect_ok();
    cr_expect_str_eq(P.out, want);
    const char *const topics[][4] = {{"--help", NULL, NULL},
                                     {"help", NULL, NULL},
                                     {"help", "run", NULL},
                                     {"devices", "--help", NULL},
                                     {"check", "--help", NULL},
                                     {"run", "--help", NULL},
                                     {"run", "LayerNormalization", "--help"}};
    const char *const expect[]    = {"usage: clnorm COMMAND", "usage: clnorm COMMAND", "usage: clnorm run",
                                     "usage: clnorm devices", "usage: clnorm check",   "usage: clnorm run",
                                     "usage: clnorm run"};
    for (size_t i = 0; i < sizeof topics / sizeof *topics; ++i) {
        t_run(topics[i]);
        cr_expect_eq(P.status, 0, "%s %s: exit %d", topics[i][0], topics[i][1] ? topics[i][1] : "", P.status);
        cr_expect(strstr(P.out, expect[i]) == P.out, "%s: %s", topics[i][0], P.out);
    }
    RUN("run", "--help");
    cr_expect(strstr(P.out, "dscale") != NULL && strstr(P.out, "GroupNormalization") != NULL);
}

Test(cli_misc, bad_usage, .init = t_setup, .fini = t_teardown, .timeout = 60)
{
    RUN("frobnicate");
    cr_expect_eq(P.status, 2);
    cr_expect(strstr(P.err, "frobnicate") != NULL, "%s", P.err);
    t_run((const char *const[]){NULL});
    cr_expect_eq(P.status, 2);
    cr_expect(strstr(P.err, "usage:") != NULL, "%s", P.err);
    RUN("check", "--bogus");
    cr_expect_eq(P.status, 2);
    cr_expect(strstr(P.err, "--bogus") != NULL, "%s", P.err);
    RUN("devices", "extra");
    cr_expect_eq(P.status, 2);
    RUN("help", "nothing");
    cr_expect_eq(P.status, 2);
}
