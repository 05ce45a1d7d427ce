/* cli_tune.c: `clnorm tune` (measure and remember the fastest kernel variants
 * for this device) and `clnorm bench` (run the benchmark program). */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_tune[] =
    "usage: clnorm tune [--device SEL] [--quick]\n"
    "\n"
    "Measures the kernel variants of batch norm (one fused kernel per channel,\n"
    "or staged reductions with several chunk sizes and degrees of parallelism),\n"
    "layer norm and group norm (the fused walks off and on, row chunks and\n"
    "parallelism a quarter and four times the defaults) on representative\n"
    "shapes on the device, prints the heuristic's time and the\n"
    "best time per shape class, and stores the winners in the cache directory\n"
    "($CLNORM_CACHE_DIR, $XDG_CACHE_HOME/clnorm or ~/.cache/clnorm), where the\n"
    "library finds them by itself for this device and driver. CLNORM_TUNE=0\n"
    "makes the library ignore them. --quick uses smaller shapes and fewer\n"
    "repetitions (seconds instead of minutes).\n";

static const char usage_bench[] =
    "usage: clnorm bench [--device SEL] [BENCH OPTIONS]\n"
    "\n"
    "Runs the benchmark program clnorm_bench (installed beside clnorm): it\n"
    "measures the device's copy bandwidth with its own copy kernels, then times\n"
    "every operation and prints median ms, GB/s at minimal traffic and the\n"
    "fraction of copy bandwidth. Its options: --quick, --csv, --json, --reps N,\n"
    "--batch N, --chart FILE.svg, --cold-warm, --ab VAR, --only TEXT, --ln RxC,\n"
    "--native (on a CPU device: next to plain-C models of the same passes)\n"
    "(see clnorm bench --help).\n";

static void print_line(void *user, const char *line)
{
    (void)user;
    printf("%s\n", line);
    fflush(stdout);
}

int cli_tune(int argc, char **argv)
{
    const char *selector = NULL;
    int         quick    = 0;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_tune, stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--device")) {
            if (i + 1 >= argc) {
                cli_error("tune: --device needs a value");
                return CLI_EXIT_USAGE;
            }
            selector = argv[++i];
        } else {
            cli_error("tune: unknown option '%s' (see clnorm tune --help)", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    clnorm_context *ctx = NULL;
    clnorm_status   st  = clnorm_context_create_default(selector, &ctx);
    if (st != CLNORM_SUCCESS) {
        cli_error("tune: %s", clnorm_last_error(NULL));
        return CLI_EXIT_FAIL;
    }
    clnorm_device_info info;
    clnorm_context_device_info(ctx, &info);
    printf("tuning batch norm on %s (%s)%s\n", info.name, info.platform_name, quick ? ", quick" : "");
    st = clnorm_tune(ctx, quick, print_line, NULL);
    if (st != CLNORM_SUCCESS)
        cli_error("tune: %s: %s", clnorm_status_string(st), clnorm_last_error(ctx));
    clnorm_context_destroy(ctx);
    return st == CLNORM_SUCCESS ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* The benchmark program: beside this one (installed), or in the build tree. */
static int find_bench(char *out, size_t n)
{
    char    self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return 0;
    self[len]   = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return 0;
    *slash                    = '\0';
    static const char *tries[] = {"%s/clnorm_bench", "%s/../bench/clnorm_bench"};
    for (int i = 0; i < 2; ++i) {
        int w = snprintf(out, n, tries[i], self);
        if (w > 0 && (size_t)w < n && access(out, X_OK) == 0)
            return 1;
    }
    return 0;
}

int cli_bench(int argc, char **argv)
{
    char *args[64];
    int   na = 0;
    char  path[PATH_MAX + 32];
    if (!find_bench(path, sizeof path)) {
        cli_error("bench: the benchmark program clnorm_bench was not found beside clnorm");
        return CLI_EXIT_FAIL;
    }
    args[na++] = path;
    for (int i = 1; i < argc && na < 62; ++i) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_bench, stdout);
            return CLI_EXIT_OK;
        }
        if (!strcmp(argv[i], "--device")) {
            if (i + 1 >= argc) {
                cli_error("bench: --device needs a value");
                return CLI_EXIT_USAGE;
            }
            setenv("CLNORM_DEVICE", argv[++i], 1);
            continue;
        }
        args[na++] = argv[i];
    }
    args[na] = NULL;
    fflush(stdout);
    execv(path, args);
    cli_error("bench: cannot run %s", path);
    return CLI_EXIT_FAIL;
}
