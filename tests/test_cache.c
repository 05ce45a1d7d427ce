/* test_cache.c: the on-disk program binary cache stays within its size
 * limit (CLNORM_CACHE_MAX_SIZE), removing the least recently used binaries
 * first and nothing but binaries and abandoned temporary files; a hit marks
 * a binary as recently used. */
#include "clnorm/clnorm.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1ULL << 20)

Test(cache, size_limit_setting)
{
    static const struct {
        const char        *value;
        unsigned long long want;
    } cases[] = {
        {"0", 0},
        {"1000", 1000},
        {"20M", 20 * MIB},
        {"20MB", 20 * MIB},
        {"3GiB", 3ULL << 30},
        {"2g", 2ULL << 30},
        {"512k", 512ULL << 10},
        /* malformed or out of range: the default */
        {"", 256 * MIB},
        {"lots", 256 * MIB},
        {"-5", 256 * MIB},
        {" 5", 256 * MIB},
        {"12Q", 256 * MIB},
        {"12MiBs", 256 * MIB},
        {"99999999999999999999", 256 * MIB},
        {"99999999999G", 256 * MIB},
    };
    unsetenv("CLNORM_CACHE_MAX_SIZE");
    cr_expect_eq(clnorm_cache_limit(), 256 * MIB, "unset: %llu", clnorm_cache_limit());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        setenv("CLNORM_CACHE_MAX_SIZE", cases[i].value, 1);
        cr_expect_eq(clnorm_cache_limit(), cases[i].want, "\"%s\": %llu, expected %llu", cases[i].value,
                     clnorm_cache_limit(), cases[i].want);
    }
}

/* Makes dir/name of size bytes (sparse) last modified age seconds ago. */
static void make_file(const char *dir, const char *name, unsigned long long size, long age)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "create %s", path);
    cr_assert_eq(ftruncate(fd, (off_t)size), 0);
    cr_assert_eq(close(fd), 0);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= age;
    t[1] = t[0];
    cr_assert_eq(utimensat(AT_FDCWD, path, t, 0), 0);
}

static int exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void remove_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

static const char *const B1 = "00000000000000000000000000000001.bin", *const B2 = "0000000000000000000000000000000a.bin",
                        *const B3 = "00000000000000000000000000000abc.bin", *const B4 = "fedcba9876543210fedcba9876543210.bin",
                        *const KEEP = "ffffffffffffffffffffffffffffffff.bin";

Test(cache, prune_least_recent_first)
{
    char dir[] = "/tmp/clnorm-cache-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    /* four binaries of 8 MiB, oldest first; the one just stored, oldest of
     * all but kept; files that are not binaries, old and large */
    make_file(dir, B1, 8 * MIB, 4 * 3600);
    make_file(dir, B2, 8 * MIB, 3 * 3600);
    make_file(dir, B3, 8 * MIB, 2 * 3600);
    make_file(dir, B4, 8 * MIB, 1 * 3600);
    make_file(dir, KEEP, 1 * MIB, 10 * 3600);
    const char *others[] = {"tune-0123456789abcdef.txt", "notes.bin", "FEDCBA9876543210FEDCBA9876543210.bin",
                            "00000000000000000000000000000001.bin.old", "0000000000000000000000000000001.bin"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; ++i)
        make_file(dir, others[i], 8 * MIB, 20 * 3600);
    make_file(dir, ".tmp-abandoned", 1 * MIB, 2 * 3600);
    make_file(dir, ".tmp-writing", 1 * MIB, 0);

    /* no limit: only the abandoned temporary file goes */
    clnorm_cache_prune(dir, KEEP, 0);
    cr_expect(exists(dir, B1) && exists(dir, B2) && exists(dir, B3) && exists(dir, B4) && exists(dir, KEEP),
              "no limit removed a binary");
    cr_expect(!exists(dir, ".tmp-abandoned"), "a temporary file two hours old was kept");
    cr_expect(exists(dir, ".tmp-writing"), "a fresh temporary file (a writer's) was removed");

    /* 33 MiB of binaries against 20: the two oldest but the kept one go */
    clnorm_cache_prune(dir, KEEP, 20 * MIB);
    cr_expect(!exists(dir, B1), "the oldest binary was kept");
    cr_expect(!exists(dir, B2), "the second oldest binary was kept");
    cr_expect(exists(dir, B3) && exists(dir, B4), "more than the two oldest binaries were removed");
    cr_expect(exists(dir, KEEP), "the binary just stored was removed");
    for (size_t i = 0; i < sizeof others / sizeof others[0]; ++i)
        cr_expect(exists(dir, others[i]), "%s is not a binary of the cache, yet was removed", others[i]);

    /* a limit below the kept binary alone: every other binary goes, it stays */
    clnorm_cache_prune(dir, KEEP, 1000);
    cr_expect(!exists(dir, B3) && !exists(dir, B4) && exists(dir, KEEP), "tiny limit");
    remove_dir(dir);

    /* a directory that is not there */
    clnorm_cache_prune(dir, KEEP, 1000);
}

/* Runs a layer norm forward (the row norm program) on a fresh context. */
static void run_layernorm(void)
{
    clnorm_context *ctx = NULL;
    cr_assert_eq(clnorm_context_create_default(NULL, &ctx), CLNORM_SUCCESS, "context: %s",
                 clnorm_last_error(NULL));
    static const float x[16] = {1, 2, 3, 4, 5, 6, 7, 8, -1, -2, -3, -4, 0, 0, 1e4f, 1};
    float              y[16];
    cl_int             err;
    cl_context         cl = clnorm_context_cl_context(ctx);
    cl_mem xb = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, (void *)x, &err);
    cr_assert_eq(err, CL_SUCCESS);
    cl_mem yb = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizeof y, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS);
    static const size_t dims[2] = {2, 8};
    clnorm_norm_desc    d;
    cr_assert_eq(clnorm_norm_desc_init(&d, 2, dims, -1), CLNORM_SUCCESS);
    clnorm_norm_args a = {0};
    a.x                = clnorm_buf(xb, 0);
    a.y                = clnorm_buf(yb, 0);
    cl_command_queue q = clnorm_context_queue(ctx);
    clnorm_status    st = clnorm_layernorm_forward(ctx, q, &d, &a, 0, NULL, NULL);
    cr_assert_eq(st, CLNORM_SUCCESS, "%s", clnorm_last_error(ctx));
    cr_assert_eq(clEnqueueReadBuffer(q, yb, CL_TRUE, 0, sizeof y, y, 0, NULL, NULL), CL_SUCCESS);
    /* the first row normalized: mean 4.5, variance 5.25 */
    for (int i = 0; i < 8; ++i) {
        double want = (x[i] - 4.5) / sqrt(5.25 + 1e-5);
        cr_expect(fabs(y[i] - want) <= 1e-5 * (1 + fabs(want)), "y[%d] = %g, expected %g", i, y[i], want);
    }
    clReleaseMemObject(xb);
    clReleaseMemObject(yb);
    clnorm_context_destroy(ctx);
}

/* The binaries' names in dir (at most 8): how many. */
static int list_binaries(const char *dir, char names[8][64])
{
    int  n = 0;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -E '^[0-9a-f]{32}\\.bin$'", dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[128];
    while (fgets(line, sizeof line, p) && n < 8) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(names[n++], 64, "%.63s", line);
    }
    pclose(p);
    return n;
}

/* Through the library: storing a new binary trims the old ones to the
 * limit; loading one refreshes its time. */
Test(cache, context_trims_and_refreshes, .timeout = 600)
{
    char dir[] = "/tmp/clnorm-cache-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    setenv("CLNORM_CACHE_DIR", dir, 1);
    setenv("CLNORM_TUNE", "0", 1);
    setenv("CLNORM_CACHE_MAX_SIZE", "2M", 1);
    make_file(dir, B1, 1 * MIB, 2 * 3600);
    make_file(dir, B2, 1 * MIB, 3600);

    run_layernorm(); /* builds the program and stores its binary */
    char names[8][64];
    int  n = list_binaries(dir, names);
    cr_assert_eq(n, 1 + exists(dir, B1) + exists(dir, B2), "binaries: %d", n);
    cr_expect(!exists(dir, B1), "the older stale binary was kept over the 2 MiB limit");
    int stored = -1;
    for (int i = 0; i < n; ++i)
        if (strcmp(names[i], B1) != 0 && strcmp(names[i], B2) != 0)
            stored = i;
    cr_assert_geq(stored, 0, "the new binary is not in the cache");

    /* make it old; a fresh context loads it, which marks it used now */
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, names[stored]);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    time_t now = t[0].tv_sec;
    t[0].tv_sec -= 10 * 3600;
    t[1] = t[0];
    cr_assert_eq(utimensat(AT_FDCWD, path, t, 0), 0);
    run_layernorm();
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "the binary is gone after a load");
    cr_expect_geq(st.st_mtime, now - 60, "a load left the binary's time %ld s old", (long)(now - st.st_mtime));
    cr_expect_eq(list_binaries(dir, names), n, "a load (no new binary) changed the cache");
    remove_dir(dir);
}
