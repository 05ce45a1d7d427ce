/*
 * Criterion tests for tools/npy.c (the .npy reader/writer used by clnorm).
 *
 * NumPy is not needed: fixtures are hand-built byte strings (see build()).
 * Every test gets its own temporary directory under /tmp (see setup()).
 */
/* POSIX.1-2008: fstat, fileno, mkdtemp, O_CLOEXEC, ... under -std=c11. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "npy.h"

/* ------------------------------------------------------------------------ */
/* Fixture: per-test temporary directory                                    */
/* ------------------------------------------------------------------------ */

static char tmpdir[64];

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char p[1024];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void setup(void)
{
    strcpy(tmpdir, "/tmp/clnorm_test_npy.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
    rm_tree(tmpdir);
}

TestSuite(npy, .init = setup, .fini = teardown);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static const char *tpath(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

/* Number of directory entries (excluding . and ..); names of up to one. */
static int count_entries(const char *dir, char *first, size_t firstlen)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == 0 && first != NULL)
            snprintf(first, firstlen, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static unsigned char img[1 << 17];

/* Build a .npy image in img: magic, version major.minor, header length field
 * (u16 for major 1, u32 otherwise), hlen header bytes, dlen data bytes. */
static size_t build_n(unsigned major, unsigned minor, const char *hdr, size_t hlen,
                      const void *data, size_t dlen)
{
    size_t n = 0;
    cr_assert_leq(hlen + dlen + 12, sizeof img);
    memcpy(img, "\x93NUMPY", 6);
    img[6] = (unsigned char)major;
    img[7] = (unsigned char)minor;
    n = 8;
    img[n++] = (unsigned char)(hlen & 0xff);
    img[n++] = (unsigned char)((hlen >> 8) & 0xff);
    if (major != 1) {
        img[n++] = (unsigned char)((hlen >> 16) & 0xff);
        img[n++] = (unsigned char)((hlen >> 24) & 0xff);
    }
    memcpy(img + n, hdr, hlen);
    n += hlen;
    if (dlen)
        memcpy(img + n, data, dlen);
    return n + dlen;
}

static size_t build(unsigned major, const char *hdr, const void *data, size_t dlen)
{
    return build_n(major, 0, hdr, strlen(hdr), data, dlen);
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static int is_zeroed(const npy_array *a)
{
    static const npy_array zero;
    return memcmp(a, &zero, sizeof zero) == 0;
}

/* The image must be rejected by npy_parse with exactly `msg`, and, written to
 * a file, by npy_read with exactly "<path>: msg"; *out left zeroed. */
static void expect_reject_n(const unsigned char *buf, size_t len, const char *msg)
{
    const char *path = tpath("bad.npy");
    char err[512], want[1024];
    npy_array a;

    memset(&a, 0x5a, sizeof a);
    memset(err, 'x', sizeof err);
    cr_assert_eq(npy_parse(buf, len, &a, err, sizeof err), -1, "npy_parse accepted: want %s", msg);
    cr_assert_str_eq(err, msg);
    cr_assert(is_zeroed(&a));

    write_bytes(path, buf, len);
    memset(&a, 0x5a, sizeof a);
    cr_assert_eq(npy_read(path, &a, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: %s", path, msg);
    cr_assert_str_eq(err, want);
    cr_assert(is_zeroed(&a));
}

static void expect_reject(size_t len, const char *msg)
{
    expect_reject_n(img, len, msg);
}

/* Header helper: wraps a dict in the usual padding ('\n' terminated). */
static void expect_header_reject(unsigned major, const char *hdr, const char *msg)
{
    static const float d[64];
    /* Enough data for the small shapes used; trailing-data errors are never
     * reached because the header is rejected first. */
    expect_reject(build(major, hdr, d, 0), msg);
}

static void expect_parse_ok(size_t len, npy_dtype dt, size_t ndim, const size_t *shape,
                            npy_array *a)
{
    char err[256] = "";
    cr_assert_eq(npy_parse(img, len, a, err, sizeof err), 0, "npy_parse: %s", err);
    cr_assert_eq(a->dtype, dt);
    cr_assert_eq(a->ndim, ndim);
    size_t count = 1;
    for (size_t i = 0; i < ndim; i++) {
        cr_assert_eq(a->shape[i], shape[i], "dim %zu", i);
        count *= shape[i];
    }
    for (size_t i = ndim; i < NPY_MAX_DIMS; i++)
        cr_assert_eq(a->shape[i], 0);
    cr_assert_eq(a->count, count);
    cr_assert_not_null(a->data);
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                               */
/* ------------------------------------------------------------------------ */

static void roundtrip(npy_dtype dt, size_t ndim, const size_t *shape)
{
    const char *path = tpath("rt.npy");
    size_t item = npy_itemsize(dt), count = 1;
    char err[512] = "";
    npy_array a;
    unsigned char *src;

    for (size_t i = 0; i < ndim; i++)
        count *= shape[i];
    src = malloc(count * item + 1);
    cr_assert_not_null(src);
    for (size_t i = 0; i < count; i++) {
        if (dt == NPY_F32) {
            float v = (float)i * 0.25f - 3.0f;
            memcpy(src + i * 4, &v, 4);
        } else {
            double v = (double)i * 0.125 - 1e300 * (i % 2);
            memcpy(src + i * 8, &v, 8);
        }
    }
    cr_assert_eq(npy_write(path, dt, ndim, shape, src, err, sizeof err), 0, "write: %s", err);
    cr_assert_eq(npy_read(path, &a, err, sizeof err), 0, "read: %s", err);
    cr_assert_eq(a.dtype, dt);
    cr_assert_eq(a.ndim, ndim);
    for (size_t i = 0; i < ndim; i++)
        cr_assert_eq(a.shape[i], shape[i]);
    cr_assert_eq(a.count, count);
    cr_assert_not_null(a.data);
    cr_assert_eq(memcmp(a.data, src, count * item), 0);
    npy_free(&a);
    cr_assert(is_zeroed(&a));
    free(src);

    /* The file is 64-byte aligned NumPy 1.0 with a '\n'-terminated header. */
    {
        unsigned char buf[256];
        size_t n = read_bytes(path, buf, sizeof buf);
        cr_assert_geq(n, 10);
        cr_assert_eq(memcmp(buf, "\x93NUMPY\x01\x00", 8), 0);
        size_t hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        cr_assert_eq((10 + hlen) % 64, 0);
        cr_assert_leq(10 + hlen, n);
        cr_assert_eq(buf[10 + hlen - 1], '\n');
    }
}

static const size_t rt_shapes[][4] = {{0}, {7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2}};

Test(npy, roundtrip_f32_ranks_0_to_4)
{
    for (size_t r = 0; r <= 4; r++)
        roundtrip(NPY_F32, r, rt_shapes[r]);
}

Test(npy, roundtrip_f64_ranks_0_to_4)
{
    for (size_t r = 0; r <= 4; r++)
        roundtrip(NPY_F64, r, rt_shapes[r]);
}

Test(npy, roundtrip_zero_length_dims)
{
    static const size_t s1[] = {0}, s2[] = {3, 0}, s3[] = {0, 0, 0}, s4[] = {2, 0, 5, 1};
    for (int dt = NPY_F32; dt <= NPY_F64; dt++) {
        roundtrip((npy_dtype)dt, 1, s1);
        roundtrip((npy_dtype)dt, 2, s2);
        roundtrip((npy_dtype)dt, 3, s3);
        roundtrip((npy_dtype)dt, 4, s4);
    }
}

Test(npy, roundtrip_eight_dims_and_large_dims)
{
    static const size_t s8[] = {1, 2, 1, 2, 1, 2, 1, 2};
    static const size_t big[] = {0, SIZE_MAX / 8}; /* zero elements, huge dim */
    roundtrip(NPY_F32, 8, s8);
    roundtrip(NPY_F64, 2, big);
}

Test(npy, write_format_matches_numpy_header)
{
    static const float d[6] = {1, 2, 3, 4, 5, 6};
    static const size_t sh[] = {2, 3};
    static const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    const char *path = tpath("fmt.npy");
    unsigned char buf[512];
    char err[256] = "";
    size_t n;

    cr_assert_eq(npy_write(path, NPY_F32, 2, sh, d, err, sizeof err), 0, "%s", err);
    n = read_bytes(path, buf, sizeof buf);
    cr_assert_eq(n, 128 + sizeof d);
    cr_assert_eq(memcmp(buf, "\x93NUMPY\x01\x00\x76\x00", 10), 0); /* hlen 118 */
    cr_assert_eq(memcmp(buf + 10, dict, strlen(dict)), 0);
    for (size_t i = 10 + strlen(dict); i < 127; i++)
        cr_assert_eq(buf[i], ' ', "byte %zu", i);
    cr_assert_eq(buf[127], '\n');
    cr_assert_eq(memcmp(buf + 128, d, sizeof d), 0);
}

Test(npy, write_header_scalar_and_1d_forms)
{
    static const double x = 2.5;
    static const size_t n5[] = {5};
    static const double v[5] = {0};
    unsigned char buf[512];
    char err[256] = "";
    const char *p0 = tpath("s.npy"), *p1 = tpath("v.npy");
    static const char d0[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
    static const char d1[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }";

    cr_assert_eq(npy_write(p0, NPY_F64, 0, NULL, &x, err, sizeof err), 0, "%s", err);
    cr_assert_eq(read_bytes(p0, buf, sizeof buf), 128 + 8); /* 10 + 55 + 1 > 64 */
    cr_assert_eq(memcmp(buf + 10, d0, strlen(d0)), 0);
    cr_assert_eq(memcmp(buf + 128, &x, 8), 0);

    cr_assert_eq(npy_write(p1, NPY_F64, 1, n5, v, err, sizeof err), 0, "%s", err);
    cr_assert_eq(read_bytes(p1, buf, sizeof buf), 128 + 40);
    cr_assert_eq(memcmp(buf + 10, d1, strlen(d1)), 0);
}

/* ------------------------------------------------------------------------ */
/* Reading hand-written headers                                              */
/* ------------------------------------------------------------------------ */

/* Exactly what NumPy 1.x/2.x np.save writes for float32 (2, 3): padded with
 * spaces (incl. NumPy's growth padding) to 128 bytes, '\n' terminated. */
Test(npy, read_numpy_v1_file)
{
    static const float d[6] = {1.5f, -2, 3, 4, 5, 6e-3f};
    static const size_t sh[] = {2, 3};
    static const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    char hdr[119];
    npy_array a;
    memset(hdr, ' ', 117);
    memcpy(hdr, dict, strlen(dict));
    hdr[117] = '\n';
    hdr[118] = '\0';
    size_t n = build(1, hdr, d, sizeof d);
    cr_assert_eq(n, 128 + sizeof d);
    expect_parse_ok(n, NPY_F32, 2, sh, &a);
    cr_assert_eq(memcmp(a.data, d, sizeof d), 0);
    npy_free(&a);

    /* and through the file API */
    const char *path = tpath("np.npy");
    char err[256] = "";
    write_bytes(path, img, n);
    cr_assert_eq(npy_read(path, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(a.count, 6);
    cr_assert_eq(memcmp(a.data, d, sizeof d), 0);
    npy_free(&a);
}

Test(npy, read_v1_16_byte_aligned_old_writer)
{
    static const double d[3] = {1, 2, 3};
    static const size_t sh[] = {3};
    /* 10 + 70 = 80: 16-byte aligned, not 64. */
    static const char hdr[] =
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }            \n";
    npy_array a;
    cr_assert_eq(strlen(hdr), 70, "len %zu", strlen(hdr));
    expect_parse_ok(build(1, hdr, d, sizeof d), NPY_F64, 1, sh, &a);
    cr_assert_eq(memcmp(a.data, d, sizeof d), 0);
    npy_free(&a);
}

Test(npy, read_v2_header)
{
    static const float d[4] = {1, 2, 3, 4};
    static const size_t sh[] = {4, 1};
    /* 12 + 52 = 64 */
    static const char hdr[] = "{'descr':'<f4','fortran_order':False,'shape':(4,1)}\n";
    npy_array a;
    cr_assert_eq(strlen(hdr), 52);
    size_t n = build(2, hdr, d, sizeof d);
    cr_assert_eq(img[6], 2);
    cr_assert_eq(n, 12 + 52 + 16);
    expect_parse_ok(n, NPY_F32, 2, sh, &a);
    cr_assert_eq(memcmp(a.data, d, sizeof d), 0);
    npy_free(&a);
}

Test(npy, read_v2_large_header_length)
{
    /* A 2.0 header longer than 65535 bytes (all padding) is fine. */
    static char hdr[70001];
    static const double d = 42;
    npy_array a;
    memset(hdr, ' ', 70000);
    memcpy(hdr, "{'descr': '<f8', 'fortran_order': False, 'shape': ()}", 53);
    hdr[69999] = '\n';
    size_t n = build_n(2, 0, hdr, 70000, &d, 8);
    unsigned char *copy = malloc(n);
    cr_assert_not_null(copy);
    memcpy(copy, img, n);
    char err[256] = "";
    cr_assert_eq(npy_parse(copy, n, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(a.ndim, 0);
    cr_assert_eq(a.count, 1);
    cr_assert_eq(*(double *)a.data, 42.0);
    npy_free(&a);
    const char *path = tpath("big.npy");
    write_bytes(path, copy, n);
    cr_assert_eq(npy_read(path, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(*(double *)a.data, 42.0);
    npy_free(&a);
    free(copy);
}

Test(npy, read_v3_header)
{
    static const double d[2] = {-1, 1};
    static const size_t sh[] = {1, 2};
    static const char hdr[] = "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (1, 2)}\n";
    npy_array a;
    size_t n = build(3, hdr, d, sizeof d);
    cr_assert_eq(img[6], 3);
    expect_parse_ok(n, NPY_F64, 2, sh, &a);
    cr_assert_eq(memcmp(a.data, d, sizeof d), 0);
    npy_free(&a);
}

Test(npy, read_v3_non_ascii_key_rejected_cleanly)
{
    /* utf-8 'é' in a key: unknown key, rendered escaped in the message. */
    expect_header_reject(3, "{'d\xc3\xa9scr': '<f4', 'fortran_order': False, 'shape': ()}\n",
                         "unknown header key 'd\\xc3\\xa9scr'");
}

Test(npy, read_key_order_and_whitespace_variants)
{
    static const float d[6] = {0, 1, 2, 3, 4, 5};
    static const size_t sh[] = {2, 3};
    static const char *const hdrs[] = {
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}\n",
        "{'fortran_order': False, 'shape': (2, 3), 'descr': '<f4', }\n",
        "{'descr':'<f4','fortran_order':False,'shape':(2,3)}",          /* no '\n' */
        "{'descr':'<f4','fortran_order':False,'shape':(2,3,),}",        /* trailing commas */
        "  {  'descr'  :  '<f4'  ,  'fortran_order'  :  False  ,  'shape'  :  (  2  ,  3  ,  )  ,  }  \n",
        "{\t\"descr\"\t:\t\"<f4\",\r\n\"fortran_order\": False,\n 'shape':\n(2,\n 3)\n}\n",
        "{\"shape\":(2,3),\"descr\":'<f4',\"fortran_order\":False}\n\n\n   \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (02, 3), }\n", /* leading zero */
    };
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        npy_array a;
        char err[256] = "";
        size_t n = build(1, hdrs[i], d, sizeof d);
        cr_assert_eq(npy_parse(img, n, &a, err, sizeof err), 0, "header %zu: %s", i, err);
        cr_assert_eq(a.ndim, 2, "header %zu", i);
        cr_assert_eq(a.shape[0], sh[0]);
        cr_assert_eq(a.shape[1], sh[1]);
        cr_assert_eq(a.dtype, NPY_F32);
        cr_assert_eq(memcmp(a.data, d, sizeof d), 0);
        npy_free(&a);
    }
}

Test(npy, read_scalar_1d_and_empty_shapes)
{
    static const float d[3] = {7, 8, 9};
    static const size_t s3[] = {3}, s0[] = {0}, s40[] = {4, 0};
    npy_array a;

    expect_parse_ok(build(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n", d, 4),
                    NPY_F32, 0, NULL, &a);
    cr_assert_eq(a.count, 1);
    cr_assert_eq(((float *)a.data)[0], 7.0f);
    npy_free(&a);

    expect_parse_ok(build(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ( )}\n", d, 4),
                    NPY_F32, 0, NULL, &a);
    npy_free(&a);

    expect_parse_ok(build(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}\n", d, 12),
                    NPY_F32, 1, s3, &a);
    cr_assert_eq(memcmp(a.data, d, 12), 0);
    npy_free(&a);

    expect_parse_ok(build(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}\n", d, 0),
                    NPY_F32, 1, s0, &a);
    cr_assert_eq(a.count, 0);
    npy_free(&a);

    expect_parse_ok(build(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 0)}\n", d, 0),
                    NPY_F64, 2, s40, &a);
    cr_assert_eq(a.count, 0);
    npy_free(&a);
}

Test(npy, read_python2_long_suffix_only_before_v3)
{
    static const float d[6] = {0};
    static const size_t sh[] = {2, 3};
    npy_array a;
    expect_parse_ok(
        build(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L)}\n", d, sizeof d),
        NPY_F32, 2, sh, &a);
    npy_free(&a);
    expect_parse_ok(
        build(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L)}\n", d, sizeof d),
        NPY_F32, 2, sh, &a);
    npy_free(&a);
    expect_header_reject(3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L)}\n",
                         "malformed header: invalid integer in shape at header offset 52");
}

Test(npy, read_eight_dims_accepted)
{
    static const float d[1] = {3};
    static const size_t sh[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    npy_array a;
    expect_parse_ok(build(1,
                          "{'descr': '<f4', 'fortran_order': False, "
                          "'shape': (1, 1, 1, 1, 1, 1, 1, 1)}\n",
                          d, 4),
                    NPY_F32, 8, sh, &a);
    npy_free(&a);
}

/* ------------------------------------------------------------------------ */
/* Rejections                                                                */
/* ------------------------------------------------------------------------ */

Test(npy, reject_bad_magic)
{
    static const unsigned char text[] = "hello, world\n";
    static const unsigned char almost[] = "\x93NUMPZ\x01\x00\x00\x00";
    static const unsigned char lower[] = "\x93numpy\x01\x00\x00\x00";
    static const unsigned char nohigh[] = "NUMPY\x01\x00\x00\x00";
    expect_reject_n(text, sizeof text - 1, "bad magic: not a NumPy .npy file");
    expect_reject_n(almost, sizeof almost - 1, "bad magic: not a NumPy .npy file");
    expect_reject_n(lower, sizeof lower - 1, "bad magic: not a NumPy .npy file");
    expect_reject_n(nohigh, sizeof nohigh - 1, "bad magic: not a NumPy .npy file");
    expect_reject_n((const unsigned char *)"\x93NUM", 4, "bad magic: not a NumPy .npy file");
    expect_reject_n((const unsigned char *)"", 0, "bad magic: not a NumPy .npy file");
}

Test(npy, reject_unsupported_version)
{
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n";
    static const float d = 1;
    expect_reject(build_n(0, 0, hdr, strlen(hdr), &d, 4),
                  "unsupported .npy format version 0.0 (supported: 1.0, 2.0, 3.0)");
    expect_reject(build_n(4, 0, hdr, strlen(hdr), &d, 4),
                  "unsupported .npy format version 4.0 (supported: 1.0, 2.0, 3.0)");
    expect_reject(build_n(1, 1, hdr, strlen(hdr), &d, 4),
                  "unsupported .npy format version 1.1 (supported: 1.0, 2.0, 3.0)");
    expect_reject(build_n(2, 1, hdr, strlen(hdr), &d, 4),
                  "unsupported .npy format version 2.1 (supported: 1.0, 2.0, 3.0)");
    expect_reject(build_n(255, 255, hdr, strlen(hdr), &d, 4),
                  "unsupported .npy format version 255.255 (supported: 1.0, 2.0, 3.0)");
}

Test(npy, reject_truncated_preamble)
{
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n";
    build_n(1, 0, hdr, strlen(hdr), NULL, 0);
    expect_reject(7, "truncated file: ends inside the format version");
    expect_reject(9, "truncated file: ends inside the header length field");
    build_n(2, 0, hdr, strlen(hdr), NULL, 0);
    expect_reject(8, "truncated file: ends inside the header length field");
    expect_reject(11, "truncated file: ends inside the header length field");
    build_n(3, 0, hdr, strlen(hdr), NULL, 0);
    expect_reject(10, "truncated file: ends inside the header length field");
}

Test(npy, reject_header_length_past_eof)
{
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n";
    size_t n = build(1, hdr, NULL, 0); /* 54 header bytes, no data */
    img[8] = 100;
    expect_reject(n, "header length 100 exceeds the 54 bytes remaining in the file");
    img[8] = 0xff;
    img[9] = 0xff;
    expect_reject(n, "header length 65535 exceeds the 54 bytes remaining in the file");

    n = build(2, hdr, NULL, 0);
    memset(img + 8, 0xff, 4);
    expect_reject(n, "header length 4294967295 exceeds the 54 bytes remaining in the file");
    expect_reject(12, "header length 4294967295 exceeds the 0 bytes remaining in the file");
}

Test(npy, reject_malformed_headers)
{
    static const struct {
        const char *hdr, *msg;
    } cases[] = {
        {"", "malformed header: expected '{' at header offset 0"},
        {"   \n", "malformed header: expected '{' at header offset 4"},
        {"['descr', '<f4']\n", "malformed header: expected '{' at header offset 0"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()\n",
         "malformed header: expected ',' or '}' after value at header offset 53"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': ()}\n",
         "malformed header: expected ',' or '}' after value at header offset 16"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': ()}\n",
         "malformed header: expected ':' after key at header offset 9"},
        {"{descr: '<f4', 'fortran_order': False, 'shape': ()}\n",
         "malformed header: expected a string key or '}' at header offset 1"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': ()}\n",
         "unsupported dtype '<f4, ' (expected '<f4' or '<f8')"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n'",
         "malformed header: unexpected data after the header dictionary at header offset 54"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()}}\n",
         "malformed header: unexpected data after the header dictionary at header offset 53"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()}x",
         "malformed header: unexpected data after the header dictionary at header offset 53"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3)}\n",
         "malformed header: shape '(n)' is not a tuple (1-D shape is written '(n,)') at header offset 53"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': 3}\n",
         "malformed header: shape must be a tuple at header offset 50"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [3]}\n",
         "malformed header: shape must be a tuple at header offset 50"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (,)}\n",
         "malformed header: expected a non-negative integer in shape at header offset 51"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,,)}\n",
         "malformed header: expected a non-negative integer in shape at header offset 53"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3 4)}\n",
         "malformed header: expected ',' or ')' in shape at header offset 53"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3.0,)}\n",
         "malformed header: expected ',' or ')' in shape at header offset 52"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0x3,)}\n",
         "malformed header: invalid integer in shape at header offset 52"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,\n",
         "malformed header: expected a non-negative integer in shape at header offset 54"},
        {"{'descr': '<\\x66\\x34', 'fortran_order': False, 'shape': ()}\n",
         "malformed header: unsupported escape sequence in string at header offset 12"},
        {"{'descr': '<f4\n', 'fortran_order': False, 'shape': ()}\n",
         "malformed header: unterminated string at header offset 14"},
        {"{'descr", "malformed header: unterminated string at header offset 7"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()",
         "malformed header: expected ',' or '}' after value at header offset 52"},
        {"{,'descr': '<f4', 'fortran_order': False, 'shape': ()}\n",
         "malformed header: expected a string key or '}' at header offset 1"},
        {"{'descr': '<f4',, 'fortran_order': False, 'shape': ()}\n",
         "malformed header: expected a string key or '}' at header offset 16"},
        {"{'descr': '<f4', 'fortran_order': , 'shape': ()}\n",
         "malformed header: fortran_order must be True or False at header offset 34"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_header_reject(1, cases[i].hdr, cases[i].msg);
}

Test(npy, reject_nul_in_header)
{
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': ()}\0\0\n";
    static const float d = 0;
    expect_reject(build_n(1, 0, hdr, sizeof hdr - 1, &d, 4),
                  "malformed header: unexpected data after the header dictionary at header offset 53");
}

Test(npy, reject_fortran_order_true)
{
    expect_header_reject(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n",
                         "fortran_order True is not supported (only C-order arrays)");
    expect_header_reject(3, "{'shape': (), 'fortran_order': True, 'descr': '<f8'}\n",
                         "fortran_order True is not supported (only C-order arrays)");
}

Test(npy, reject_fortran_order_not_bool)
{
    static const char *const vals[] = {"0", "1", "false", "'False'", "None", "Falsey", "TRUE"};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char hdr[128];
        snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': %s, 'shape': ()}\n",
                 vals[i]);
        expect_header_reject(1, hdr,
                             "malformed header: fortran_order must be True or False at header "
                             "offset 34");
    }
}

Test(npy, reject_unsupported_dtypes)
{
    static const struct {
        const char *descr, *msg;
    } cases[] = {
        {"'>f4'", "unsupported dtype '>f4': big-endian data is not supported (expected '<f4' or '<f8')"},
        {"'>f8'", "unsupported dtype '>f8': big-endian data is not supported (expected '<f4' or '<f8')"},
        {"'!f4'", "unsupported dtype '!f4': big-endian data is not supported (expected '<f4' or '<f8')"},
        {"'<i4'", "unsupported dtype '<i4' (expected '<f4' or '<f8')"},
        {"'<i8'", "unsupported dtype '<i8' (expected '<f4' or '<f8')"},
        {"'|u1'", "unsupported dtype '|u1' (expected '<f4' or '<f8')"},
        {"'|b1'", "unsupported dtype '|b1' (expected '<f4' or '<f8')"},
        {"'<f2'", "unsupported dtype '<f2' (expected '<f4' or '<f8')"},
        {"'<f16'", "unsupported dtype '<f16' (expected '<f4' or '<f8')"},
        {"'<c8'", "unsupported dtype '<c8' (expected '<f4' or '<f8')"},
        {"'=f4'", "unsupported dtype '=f4' (expected '<f4' or '<f8')"},
        {"'f4'", "unsupported dtype 'f4' (expected '<f4' or '<f8')"},
        {"'float32'", "unsupported dtype 'float32' (expected '<f4' or '<f8')"},
        {"'<f4 '", "unsupported dtype '<f4 ' (expected '<f4' or '<f8')"},
        {"''", "unsupported dtype '' (expected '<f4' or '<f8')"},
        {"'<U10'", "unsupported dtype '<U10' (expected '<f4' or '<f8')"},
        {"[('a', '<f4')]", "unsupported dtype: structured descr (expected '<f4' or '<f8')"},
        {"{'names': ['a']}", "unsupported dtype: structured descr (expected '<f4' or '<f8')"},
        {"4", "malformed header: expected a dtype string for 'descr' at header offset 10"},
        {"'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'",
         "unsupported dtype 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' (expected '<f4' or '<f8')"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hdr[256];
        snprintf(hdr, sizeof hdr, "{'descr': %s, 'fortran_order': False, 'shape': ()}\n",
                 cases[i].descr);
        expect_header_reject(1, hdr, cases[i].msg);
    }
}

Test(npy, reject_unknown_key)
{
    expect_header_reject(1,
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1}\n",
                         "unknown header key 'extra'");
    expect_header_reject(1, "{'Descr': '<f4', 'fortran_order': False, 'shape': ()}\n",
                         "unknown header key 'Descr'");
    expect_header_reject(1, "{'': 1}\n", "unknown header key ''");
}

Test(npy, reject_duplicate_key)
{
    expect_header_reject(1,
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'descr': '<f4'}\n",
                         "duplicate header key 'descr'");
    expect_header_reject(1,
                         "{'shape': (1,), 'descr': '<f4', 'fortran_order': False, \"shape\": (1,)}\n",
                         "duplicate header key 'shape'");
    expect_header_reject(1,
                         "{'fortran_order': False, 'fortran_order': False, 'descr': '<f4', 'shape': ()}\n",
                         "duplicate header key 'fortran_order'");
}

Test(npy, reject_missing_key)
{
    expect_header_reject(1, "{'fortran_order': False, 'shape': ()}\n",
                         "header is missing key 'descr'");
    expect_header_reject(1, "{'descr': '<f4', 'shape': ()}\n",
                         "header is missing key 'fortran_order'");
    expect_header_reject(1, "{'descr': '<f4', 'fortran_order': False}\n",
                         "header is missing key 'shape'");
    expect_header_reject(1, "{}\n", "header is missing key 'descr'");
}

Test(npy, reject_truncated_data)
{
    static const float d[6] = {1, 2, 3, 4, 5, 6};
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
    expect_reject(build(1, hdr, d, 20), "truncated data: expected 24 bytes, got 20");
    expect_reject(build(1, hdr, d, 0), "truncated data: expected 24 bytes, got 0");
    expect_reject(build(1, "{'descr': '<f8', 'fortran_order': False, 'shape': ()}\n", d, 4),
                  "truncated data: expected 8 bytes, got 4");
}

Test(npy, reject_trailing_bytes)
{
    static const float d[7] = {1, 2, 3, 4, 5, 6, 7};
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
    expect_reject(build(1, hdr, d, 28), "4 bytes after the data");
    expect_reject(build(1, hdr, d, 25), "1 bytes after the data");
    expect_reject(build(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}\n", d, 8),
                  "8 bytes after the data");
}

Test(npy, reject_trailing_bytes_large_file)
{
    /* Trailing data larger than the reader's internal chunk size. */
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}\n";
    static float d[12000];
    expect_reject(build(1, hdr, d, sizeof d), "47996 bytes after the data");
}

Test(npy, reject_shape_product_overflow)
{
    char hdr[256], msg[64];
    /* 2^32 * 2^32 elements overflows a 64-bit size_t; so does 2^62 * 4 bytes. */
    cr_assert_eq(sizeof(size_t), 8, "test assumes a 64-bit size_t");
    expect_header_reject(
        1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}\n",
        "array size overflows size_t");
    expect_header_reject(1,
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,)}\n",
                         "array size overflows size_t");
    expect_header_reject(1,
                         "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,)}\n",
                         "array size overflows size_t");
    /* Like NumPy: the non-zero dims must not overflow even with a 0 dim. */
    expect_header_reject(
        1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296)}\n",
        "array size overflows size_t");
    /* SIZE_MAX / 4 elements of f4 is the largest accepted: it is then truncated. */
    snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu,)}\n",
             SIZE_MAX / 4);
    snprintf(msg, sizeof msg, "truncated data: expected %zu bytes, got 0", SIZE_MAX / 4 * 4);
    expect_header_reject(1, hdr, msg);
}

Test(npy, reject_dimension_exceeding_size_t)
{
    expect_header_reject(
        1, "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,)}\n",
        "shape dimension too large (exceeds size_t)");
    expect_header_reject(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': "
        "(999999999999999999999999999999999999999999999999999999999999,)}\n",
        "shape dimension too large (exceeds size_t)");
    /* SIZE_MAX itself parses; with a 0 dim the array is empty but it still
     * overflows in bytes. */
    expect_header_reject(
        1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 18446744073709551615)}\n",
        "array size overflows size_t");
}

Test(npy, reject_more_than_eight_dims)
{
    static const float d[1] = {0};
    expect_reject(build(1,
                        "{'descr': '<f4', 'fortran_order': False, "
                        "'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1)}\n",
                        d, 4),
                  "shape has more than 8 dimensions");
    expect_header_reject(1,
                         "{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,)}\n",
                         "shape has more than 8 dimensions");
}

Test(npy, reject_negative_dimension)
{
    expect_header_reject(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}\n",
                         "negative dimension in shape");
    expect_header_reject(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}\n",
                         "negative dimension in shape");
}

Test(npy, read_nonexistent_file)
{
    const char *path = tpath("missing.npy");
    char err[512], want[600];
    npy_array a;
    memset(&a, 1, sizeof a);
    cr_assert_eq(npy_read(path, &a, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot open: %s", path, strerror(ENOENT));
    cr_assert_str_eq(err, want);
    cr_assert(is_zeroed(&a));
}

Test(npy, read_directory)
{
    char err[512], want[600];
    npy_array a;
    cr_assert_eq(npy_read(tmpdir, &a, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: is a directory", tmpdir);
    cr_assert_str_eq(err, want);
    cr_assert(is_zeroed(&a));
}

Test(npy, error_message_is_one_line_even_for_odd_paths)
{
    const char *path = tpath("new\nline\r.npy");
    char err[512], want[600];
    npy_array a;
    write_bytes(path, "junk", 4);
    cr_assert_eq(npy_read(path, &a, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s/new?line?.npy: bad magic: not a NumPy .npy file", tmpdir);
    cr_assert_str_eq(err, want);
    cr_assert_null(strchr(err, '\n'));
}

Test(npy, err_buffer_null_or_small)
{
    const char *path = tpath("missing.npy");
    char err[8];
    npy_array a;
    cr_assert_eq(npy_read(path, &a, NULL, 0), -1);
    cr_assert_eq(npy_read(path, &a, NULL, 100), -1);
    memset(err, 'x', sizeof err);
    cr_assert_eq(npy_read(path, &a, err, 0), -1);
    cr_assert_eq(err[0], 'x', "errlen 0 must not write");
    cr_assert_eq(npy_read(path, &a, err, 1), -1);
    cr_assert_eq(err[0], '\0');
    cr_assert_eq(npy_read(path, &a, err, sizeof err), -1);
    cr_assert_eq(strlen(err), sizeof err - 1);
    cr_assert_eq(strncmp(err, path, sizeof err - 1), 0);
    cr_assert_eq(npy_parse(NULL, 0, &a, err, sizeof err), -1);
    cr_assert_str_eq(err, "bad mag");
    cr_assert_eq(npy_write(tpath("x/y.npy"), NPY_F32, 0, NULL, "abcd", NULL, 0), -1);
}

Test(npy, invalid_arguments)
{
    char err[256];
    npy_array a;
    cr_assert_eq(npy_read(NULL, &a, err, sizeof err), -1);
    cr_assert_str_eq(err, "(null): invalid argument");
    cr_assert_eq(npy_read(tpath("a.npy"), NULL, err, sizeof err), -1);
    cr_assert_eq(npy_parse((const unsigned char *)"x", 1, NULL, err, sizeof err), -1);
    cr_assert_str_eq(err, "invalid argument: out is NULL");
    cr_assert_eq(npy_parse(NULL, 10, &a, err, sizeof err), -1);
    cr_assert_str_eq(err, "invalid argument: buffer is NULL");
    cr_assert_eq(npy_write(NULL, NPY_F32, 0, NULL, "abcd", err, sizeof err), -1);
    cr_assert_str_eq(err, "(null): invalid argument: empty path");
    cr_assert_eq(npy_write("", NPY_F32, 0, NULL, "abcd", err, sizeof err), -1);
    cr_assert_str_eq(err, ": invalid argument: empty path");
}

Test(npy, free_is_idempotent)
{
    npy_array a;
    static const size_t sh[] = {2};
    static const float d[2] = {1, 2};
    char err[256] = "";
    memset(&a, 0, sizeof a);
    npy_free(&a);
    npy_free(NULL);
    cr_assert(is_zeroed(&a));
    cr_assert_eq(npy_write(tpath("f.npy"), NPY_F32, 1, sh, d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(npy_read(tpath("f.npy"), &a, err, sizeof err), 0, "%s", err);
    npy_free(&a);
    npy_free(&a);
    cr_assert(is_zeroed(&a));
}

Test(npy, itemsize)
{
    cr_assert_eq(npy_itemsize(NPY_F32), 4);
    cr_assert_eq(npy_itemsize(NPY_F64), 8);
    cr_assert_eq(npy_itemsize((npy_dtype)2), 0);
}

/* Every proper prefix of a valid image is rejected; every single-byte change
 * either fails with a message or yields a self-consistent array. */
Test(npy, truncations_and_byte_flips_are_safe)
{
    static const double d[6] = {1, 2, 3, 4, 5, 6};
    static const char hdr[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n";
    size_t n = build(1, hdr, d, sizeof d);
    unsigned char *buf = malloc(n);
    char err[256];
    npy_array a;
    cr_assert_not_null(buf);
    for (size_t len = 0; len < n; len++) {
        memcpy(buf, img, len); /* exact-size copy so ASan sees overreads */
        err[0] = '\0';
        cr_assert_eq(npy_parse(buf, len, &a, err, sizeof err), -1, "prefix %zu accepted", len);
        cr_assert_neq(err[0], '\0');
        cr_assert(is_zeroed(&a));
    }
    static const unsigned char vals[] = {0, 1, 0x7f, 0x80, 0xff, '\'', '"', '(', ')', ',',
                                         '{', '}', ':', ' ', '\n', '\\', '9', 'L', '-'};
    size_t accepted = 0;
    for (size_t pos = 0; pos < n - sizeof d; pos++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(buf, img, n);
            buf[pos] = vals[v];
            err[0] = '\0';
            if (npy_parse(buf, n, &a, err, sizeof err) == 0) {
                size_t count = 1;
                for (size_t i = 0; i < a.ndim; i++)
                    count *= a.shape[i];
                cr_assert_eq(a.count, count);
                cr_assert_eq(a.count * npy_itemsize(a.dtype) + 0, sizeof d);
                accepted++;
                npy_free(&a);
            } else {
                cr_assert_neq(err[0], '\0');
                cr_assert_null(strchr(err, '\n'));
                cr_assert(is_zeroed(&a));
            }
        }
    }
    cr_assert_gt(accepted, 0, "harmless flips (e.g. padding spaces) must still parse");
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Writer failure modes and atomicity                                        */
/* ------------------------------------------------------------------------ */

Test(npy, write_into_nonexistent_directory_leaves_nothing)
{
    static const float d[2] = {1, 2};
    static const size_t sh[] = {2};
    const char *path = tpath("no/such/dir/out.npy");
    char err[512], want[700];
    struct stat st;
    cr_assert_eq(npy_write(path, NPY_F32, 1, sh, d, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot create temporary file: %s", path, strerror(ENOENT));
    cr_assert_str_eq(err, want);
    cr_assert_eq(stat(path, &st), -1);
    cr_assert_eq(count_entries(tmpdir, NULL, 0), 0);
}

Test(npy, write_onto_directory_leaves_no_temp_file)
{
    static const float d[2] = {1, 2};
    static const size_t sh[] = {2};
    const char *path = tpath("adir");
    char err[512], want[700], name[256];
    cr_assert_eq(mkdir(path, 0777), 0);
    cr_assert_eq(npy_write(path, NPY_F32, 1, sh, d, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot rename temporary file into place: %s", path,
             strerror(EISDIR));
    cr_assert_str_eq(err, want);
    cr_assert_eq(count_entries(tmpdir, name, sizeof name), 1);
    cr_assert_str_eq(name, "adir");
    cr_assert_eq(count_entries(path, NULL, 0), 0);
}

Test(npy, write_rejects_invalid_arrays_without_creating_files)
{
    static const float d[4] = {0};
    static const size_t s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    static const size_t big[] = {SIZE_MAX / 2, 3};
    static const size_t s2[] = {2};
    const char *path = tpath("w.npy");
    char err[512], want[700];
    struct {
        npy_dtype dt;
        size_t ndim;
        const size_t *shape;
        const void *data;
        const char *msg;
    } cases[] = {
        {(npy_dtype)7, 0, NULL, d, "invalid dtype 7"},
        {NPY_F32, 9, s9, d, "cannot write 9 dimensions (maximum is 8)"},
        {NPY_F32, 2, NULL, d, "invalid argument: shape is NULL"},
        {NPY_F64, 2, big, d, "array size overflows size_t"},
        {NPY_F32, 1, s2, NULL, "invalid argument: data is NULL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(npy_write(path, cases[i].dt, cases[i].ndim, cases[i].shape, cases[i].data,
                               err, sizeof err),
                     -1, "case %zu", i);
        snprintf(want, sizeof want, "%s: %s", path, cases[i].msg);
        cr_assert_str_eq(err, want);
        cr_assert_eq(count_entries(tmpdir, NULL, 0), 0);
    }
    /* NULL data is fine for an empty array. */
    static const size_t s0[] = {0};
    cr_assert_eq(npy_write(path, NPY_F32, 1, s0, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(count_entries(tmpdir, NULL, 0), 1);
}

Test(npy, write_replaces_existing_file_atomically)
{
    static const float a6[6] = {1, 2, 3, 4, 5, 6};
    static const double b2[2] = {-7, 8};
    static const size_t sa[] = {2, 3}, sb[] = {2};
    const char *path = tpath("out.npy");
    char err[256] = "", name[256];
    unsigned char old[256], now[256];
    struct stat st1, st2;
    npy_array r;
    FILE *f;
    size_t n1, n2;

    cr_assert_eq(npy_write(path, NPY_F32, 2, sa, a6, err, sizeof err), 0, "%s", err);
    n1 = read_bytes(path, old, sizeof old);
    cr_assert_eq(stat(path, &st1), 0);
    f = fopen(path, "rb"); /* a reader holding the old file open */
    cr_assert_not_null(f);

    cr_assert_eq(npy_write(path, NPY_F64, 1, sb, b2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(stat(path, &st2), 0);
    cr_assert_neq(st1.st_ino, st2.st_ino, "file must be replaced, not rewritten in place");

    /* The open reader still sees the complete old contents. */
    n2 = fread(now, 1, sizeof now, f);
    fclose(f);
    cr_assert_eq(n2, n1);
    cr_assert_eq(memcmp(now, old, n1), 0);

    cr_assert_eq(npy_read(path, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.dtype, NPY_F64);
    cr_assert_eq(r.ndim, 1);
    cr_assert_eq(r.shape[0], 2);
    cr_assert_eq(memcmp(r.data, b2, sizeof b2), 0);
    npy_free(&r);

    /* No temporary files left behind. */
    cr_assert_eq(count_entries(tmpdir, name, sizeof name), 1);
    cr_assert_str_eq(name, "out.npy");
}

Test(npy, write_relative_path_and_umask)
{
    static const float d[1] = {1};
    char err[256] = "";
    struct stat st;
    cr_assert_eq(chdir(tmpdir), 0);
    umask(022);
    cr_assert_eq(npy_write("rel.npy", NPY_F32, 0, NULL, d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(stat("rel.npy", &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
    umask(077);
    cr_assert_eq(npy_write("rel.npy", NPY_F32, 0, NULL, d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(stat("rel.npy", &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(count_entries(".", NULL, 0), 1);
}

Test(npy, read_from_non_regular_file)
{
    /* Streams (no usable st_size) go through the same checks. */
    static const float d[3] = {1, 2, 3};
    static const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}\n";
    size_t n = build(1, hdr, d, sizeof d);
    const char *fifo = tpath("fifo");
    char err[256] = "";
    npy_array a;
    pid_t pid;
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    fflush(NULL);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        FILE *f = fopen(fifo, "wb");
        if (f) {
            fwrite(img, 1, n, f);
            fclose(f);
        }
        _exit(0);
    }
    int rc = npy_read(fifo, &a, err, sizeof err);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(a.count, 3);
    cr_assert_eq(memcmp(a.data, d, sizeof d), 0);
    npy_free(&a);
}
