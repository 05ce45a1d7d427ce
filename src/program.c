/* program.c: builds each kernel family once per context and dtype, with an
 * on-disk cache of program binaries keyed by everything that changes them. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const bn_kernels[] = {
    "bn_stats_rows", "bn_stats_cols",  "bn_stats_combine", "bn_coef_running", "bn_apply_rows",
    "bn_apply_cols", "bn_bwd_rows",    "bn_bwd_cols",      "bn_bwd_combine",  "bn_dx_rows",
    "bn_dx_cols",
    "bn_stats_cstream", "bn_bwd_cstream", "bn_apply_cstream", "bn_dx_cstream",
    "bn_fwd_fused", "bn_bwd_fused", "bn_infer_fused", "bn_fwd_cfused",
    "bn_bwd_cfused", "bn_infer_flat", "bn_fwd_bfused", "bn_bwd_bfused", "bn_fwd_pfused",
    "gn_fwd_cfused", "gn_bwd_cfused", "bn_dx_flat", NULL};
static const char *const rownorm_kernels[] = {
    "rn_fwd_items",     "rn_fwd_groups",     "rn_stats_items", "rn_stats_groups",
    "gn_stats_cols",    "rn_stats_combine",  "rn_apply",       "rn_bwd_items",
    "rn_bwd_groups",    "rn_bwdpart_items",  "rn_bwdpart_groups", "gn_bwd_cols",
    "rn_bwd_combine",   "rn_dx",             "rn_col_part",    "rn_col_combine",
    "rn_col_planes",    "gn_fwd_items",      "gn_fwd_groups",  "gn_bwd_items",
    "gn_bwd_groups",    "gn_mean_cols",      "rn_fwd_sub",     "rn_bwd_sub",
    "rn_bwd_regs",      "gn_apply_cols",     "gn_dx_cols",     "gn_fwd_lead",
    NULL};

static const char *const *family_kernels[FAMILY_COUNT_] = {bn_kernels, rownorm_kernels};

static const char *family_source(enum clnorm_family f)
{
    return f == FAMILY_BN ? clnorm_kernel_batchnorm : clnorm_kernel_rownorm;
}

static const char *dtype_define(clnorm_dtype d)
{
    switch (d) {
    case CLNORM_F16: return "-DCLNORM_DTYPE_F16";
    case CLNORM_BF16: return "-DCLNORM_DTYPE_BF16";
    case CLNORM_F64: return "-DCLNORM_DTYPE_F64";
    default: return "-DCLNORM_DTYPE_F32";
    }
}

/* ---- disk cache ----------------------------------------------------------- */

void clnorm_hash_bytes(clnorm_hash128 *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; ++i) {
        h->a = (h->a ^ p[i]) * 0x100000001b3ULL;
        h->b = (h->b ^ p[i]) * 0x00000100000001b3ULL + 0x9e3779b97f4a7c15ULL;
    }
    /* field separator, so "ab"+"c" differs from "a"+"bc" */
    h->a = (h->a ^ 0xff) * 0x100000001b3ULL;
    h->b = (h->b ^ 0xfe) * 0x00000100000001b3ULL;
}

void clnorm_hash_str(clnorm_hash128 *h, const char *s) { clnorm_hash_bytes(h, s, strlen(s)); }

/* Cache directory: $CLNORM_CACHE_DIR, $XDG_CACHE_HOME/clnorm, ~/.cache/clnorm;
 * CLNORM_CACHE=0 turns the cache off. Returns 0 when there is none. */
int clnorm_cache_dir(char *out, size_t n)
{
    const char *off = getenv("CLNORM_CACHE");
    if (off && (strcmp(off, "0") == 0 || strcmp(off, "off") == 0))
        return 0;
    const char *d = getenv("CLNORM_CACHE_DIR");
    int         w;
    if (d && *d)
        w = snprintf(out, n, "%s", d);
    else if ((d = getenv("XDG_CACHE_HOME")) && *d)
        w = snprintf(out, n, "%s/clnorm", d);
    else if ((d = getenv("HOME")) && *d)
        w = snprintf(out, n, "%s/.cache/clnorm", d);
    else
        return 0;
    return w > 0 && (size_t)w < n;
}

int clnorm_mkdir_p(char *path)
{
    for (char *p = path + 1; *p; ++p) {
        if (*p != '/')
            continue;
        *p = '\0';
        int r = mkdir(path, 0755);
        *p = '/';
        if (r != 0 && errno != EEXIST)
            return -1;
    }
    return (mkdir(path, 0755) == 0 || errno == EEXIST) ? 0 : -1;
}

unsigned char *clnorm_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    long           n;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* Writes to a temporary file beside the target and renames it into place, so
 * a reader never sees a partial binary; any failure just leaves no file. */
void clnorm_write_file_atomic(const char *dir, const char *path, const unsigned char *data, size_t len)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s/.tmp-XXXXXX", dir) >= (int)sizeof tmp)
        return;
    int fd = mkstemp(tmp);
    if (fd < 0)
        return;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    int ok = done == len && fsync(fd) == 0;
    if (close(fd) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
}

/* ---- cache size ----------------------------------------------------------- */

/* The cache holds a binary per (kernel family, storage type, device, driver,
 * library version): about 1.4 MB each on PoCL, a dozen MB per device and
 * version. Old versions' and drivers' binaries are never read again, so the
 * directory is kept within a limit, least recently used out first (as a GPU
 * driver's compute cache is): a hit refreshes a binary's modification time,
 * and each new binary stored trims the rest. */
#define CACHE_MAX_DEFAULT ((unsigned long long)256 << 20)
#define CACHE_TMP_STALE_S 3600 /* a writer's temporary file this old was abandoned */

/* CLNORM_CACHE_MAX_SIZE: bytes, with an optional K, M or G suffix (powers
 * of 1024, optionally followed by "B" or "iB"); 0 for no limit. Unset or
 * malformed: 256 MiB. */
unsigned long long clnorm_cache_limit(void)
{
    const char *s = getenv("CLNORM_CACHE_MAX_SIZE");
    if (!s || *s < '0' || *s > '9')
        return CACHE_MAX_DEFAULT;
    char *end;
    errno                = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return CACHE_MAX_DEFAULT;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: break;
    }
    if (shift) {
        ++end;
        if (end[0] == 'i' && end[1] == 'B')
            end += 2;
        else if (end[0] == 'B')
            ++end;
    }
    if (*end || (shift && v > (ULLONG_MAX >> shift)))
        return CACHE_MAX_DEFAULT;
    return v << shift;
}

/* A binary's name as build_program writes it: 32 lowercase hex digits and
 * ".bin". Nothing else in the directory (tuning files, a user's own) is
 * ever removed, bar the writers' stale temporary files. */
static int is_binary_name(const char *n)
{
    for (int i = 0; i < 32; ++i)
        if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            return 0;
    return strcmp(n + 32, ".bin") == 0;
}

typedef struct cache_entry {
    char               name[40];
    unsigned long long size;
    struct timespec    mtime;
} cache_entry;

static int entry_older(const void *pa, const void *pb)
{
    const cache_entry *a = pa, *b = pb;
    if (a->mtime.tv_sec != b->mtime.tv_sec)
        return a->mtime.tv_sec < b->mtime.tv_sec ? -1 : 1;
    if (a->mtime.tv_nsec != b->mtime.tv_nsec)
        return a->mtime.tv_nsec < b->mtime.tv_nsec ? -1 : 1;
    return strcmp(a->name, b->name);
}

void clnorm_cache_prune(const char *dir, const char *keep, unsigned long long limit)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    cache_entry       *e = NULL;
    size_t             n = 0, cap = 0;
    unsigned long long total = 0;
    int                ok    = 1;
    time_t             now   = time(NULL);
    char               path[4200];
    struct dirent     *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm  = de->d_name;
        int         tmp = strncmp(nm, ".tmp-", 5) == 0;
        struct stat st;
        if ((!tmp && !is_binary_name(nm)) ||
            snprintf(path, sizeof path, "%s/%s", dir, nm) >= (int)sizeof path || lstat(path, &st) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (tmp) {
            if (now - st.st_mtime > CACHE_TMP_STALE_S)
                unlink(path);
            continue;
        }
        total += (unsigned long long)st.st_size;
        if (keep && strcmp(nm, keep) == 0)
            continue; /* the binary just stored stays */
        if (n == cap) {
            size_t       nc = cap ? 2 * cap : 64;
            cache_entry *ne = realloc(e, nc * sizeof *e);
            if (!ne) {
                ok = 0; /* no list, no eviction */
                break;
            }
            e   = ne;
            cap = nc;
        }
        memcpy(e[n].name, nm, 37);
        e[n].size  = (unsigned long long)st.st_size;
        e[n].mtime = st.st_mtim;
        ++n;
    }
    closedir(d);
    if (ok && limit && total > limit) {
        qsort(e, n, sizeof *e, entry_older);
        for (size_t i = 0; i < n && total > limit; ++i) {
            snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
            if (unlink(path) == 0 || errno == ENOENT)
                total -= e[i].size;
        }
    }
    free(e);
}

static cl_program load_cached(clnorm_context *ctx, const char *path, const char *options)
{
    size_t         len = 0;
    unsigned char *bin = clnorm_read_file(path, &len);
    if (!bin)
        return NULL;
    cl_int               err, bst;
    const unsigned char *bins[1] = {bin};
    cl_program prog = clCreateProgramWithBinary(ctx->clctx, 1, &ctx->device, &len, bins, &bst, &err);
    free(bin);
    if (err != CL_SUCCESS || bst != CL_SUCCESS) {
        if (prog)
            clReleaseProgram(prog);
        return NULL;
    }
    if (clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return NULL;
    }
    /* recently used: the last the size limit removes (where the directory
     * is read-only this fails, and nothing is removed there either) */
    utimensat(AT_FDCWD, path, NULL, 0);
    return prog;
}

static void store_cached(clnorm_context *ctx, cl_program prog, char *dir, const char *path)
{
    size_t len = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof len, &len, NULL) != CL_SUCCESS || len == 0)
        return;
    unsigned char *bin = malloc(len);
    if (!bin)
        return;
    unsigned char *bins[1] = {bin};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS &&
        clnorm_mkdir_p(dir) == 0) {
        clnorm_write_file_atomic(dir, path, bin, len);
        const char *base = strrchr(path, '/');
        clnorm_cache_prune(dir, base ? base + 1 : path, clnorm_cache_limit());
    }
    free(bin);
    (void)ctx;
}

static clnorm_status build_program(clnorm_context *ctx, enum clnorm_family family, clnorm_dtype dtype,
                                   cl_program *out)
{
    char options[512];
    /* CLNORM_BUILD_OPTIONS (read at context creation) appends -D overrides of
     * the kernels' tunables, for experiments; they are part of the cache key */
    snprintf(options, sizeof options, "-cl-std=CL1.2 %s -DLX=%u%s%s %s", dtype_define(dtype), ctx->tune.lx,
             ctx->tune.nt ? " -DCLNORM_NT" : "", ctx->tune.vcast ? " -DCLNORM_VCAST" : "",
             ctx->tune.extra_options);

    const char *srcs[2] = {clnorm_kernel_common, family_source(family)};
    char        dir[4096], path[4200];
    int         cached = clnorm_cache_dir(dir, sizeof dir);
    if (cached) {
        clnorm_hash128 h = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
        clnorm_hash_str(&h, srcs[0]);
        clnorm_hash_str(&h, srcs[1]);
        clnorm_hash_str(&h, options);
        clnorm_hash_str(&h, ctx->info.name);
        clnorm_hash_str(&h, ctx->info.vendor);
        clnorm_hash_str(&h, ctx->info.driver_version);
        clnorm_hash_str(&h, ctx->info.platform_name);
        clnorm_hash_str(&h, ctx->info.platform_version);
        clnorm_hash_str(&h, clnorm_version_string());
        snprintf(path, sizeof path, "%s/%016llx%016llx.bin", dir, (unsigned long long)h.a,
                 (unsigned long long)h.b);
        cl_program p = load_cached(ctx, path, options);
        if (p) {
            *out = p;
            return CLNORM_SUCCESS;
        }
    }

    cl_int     err;
    cl_program prog = clCreateProgramWithSource(ctx->clctx, 2, srcs, NULL, &err);
    if (err != CL_SUCCESS)
        return clnorm_fail(ctx, (clnorm_status)err, "clCreateProgramWithSource failed (%d)", err);
    err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        size_t n   = 0;
        int    off = snprintf(ctx->err, sizeof ctx->err, "building kernels (%s) failed (%d): ", options, err);
        if (off < 0 || (size_t)off >= sizeof ctx->err)
            off = 0;
        if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, sizeof ctx->err - (size_t)off - 1,
                                  ctx->err + off, &n) != CL_SUCCESS)
            ctx->err[off] = '\0';
        ctx->err[sizeof ctx->err - 1] = '\0';
        clReleaseProgram(prog);
        return CLNORM_ERROR_BUILD_FAILED;
    }
    if (cached)
        store_cached(ctx, prog, dir, path);
    *out = prog;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_prepare(clnorm_context *ctx, enum clnorm_family family, clnorm_dtype dtype)
{
    clnorm_program *p = &ctx->programs[family][dtype];
    if (p->ready)
        return CLNORM_SUCCESS;
    for (unsigned i = 0; family_kernels[family][i]; ++i) {
        cl_kernel     k;
        clnorm_status st = clnorm_get_kernel(ctx, family, dtype, i, &k);
        if (st != CLNORM_SUCCESS)
            return st;
    }
    p->ready = 1;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_get_kernel(clnorm_context *ctx, enum clnorm_family family, clnorm_dtype dtype,
                                unsigned index, cl_kernel *out)
{
    clnorm_program *p = &ctx->programs[family][dtype];
    if (p->kernels[index]) {
        *out = p->kernels[index];
        return CLNORM_SUCCESS;
    }
    if (!p->prog) {
        clnorm_status st = build_program(ctx, family, dtype, &p->prog);
        if (st != CLNORM_SUCCESS)
            return st;
    }
    cl_int err;
    p->kernels[index] = clCreateKernel(p->prog, family_kernels[family][index], &err);
    if (err != CL_SUCCESS) {
        p->kernels[index] = NULL;
        return clnorm_fail(ctx, (clnorm_status)err, "clCreateKernel(%s) failed (%d)",
                           family_kernels[family][index], err);
    }
    *out = p->kernels[index];
    return CLNORM_SUCCESS;
}
