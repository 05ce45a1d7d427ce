/*
 * npy.c - minimal, self-contained NumPy .npy reader/writer.  See npy.h.
 *
 * Format reference: numpy/lib/format.py (NEP 1).  Layout:
 *   "\x93NUMPY" major minor  HEADER_LEN  HEADER  DATA
 * HEADER_LEN is a little-endian u16 (1.0) or u32 (2.0, 3.0); HEADER is a
 * Python dict literal (latin-1 for 1.0/2.0, utf-8 for 3.0) with exactly the
 * keys 'descr', 'fortran_order' and 'shape'.
 */
/* POSIX.1-2008: fstat, fileno, mkdtemp, O_CLOEXEC, ... under -std=c11. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef __STDC_NO_ATOMICS__
#include <stdatomic.h>
#endif

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c copies '<f4'/'<f8' data verbatim and requires a little-endian host"
#endif

#if defined(__GNUC__)
#define NPY_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define NPY_PRINTF(f, a)
#endif

#define MSG_LEN 256         /* internal message buffer (without the path) */
#define QUOTE_MAX 32        /* longest piece of hostile input echoed in a message */
#define IO_CHUNK ((size_t)1 << 16)

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* ------------------------------------------------------------------------ */
/* Error messages                                                            */
/* ------------------------------------------------------------------------ */

/* Replace control characters so that the message is always one line. */
static void sanitize(char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            *s = '?';
    }
}

static void NPY_PRINTF(3, 4) fmt_msg(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    if (buf == NULL || len == 0)
        return;
    va_start(ap, fmt);
    if (vsnprintf(buf, len, fmt, ap) < 0)
        buf[0] = '\0';
    va_end(ap);
    sanitize(buf);
}

/* Final message for the caller: "<path>: <msg>" (or just msg if path NULL). */
static void report(char *err, size_t errlen, const char *path, const char *msg)
{
    if (err == NULL || errlen == 0)
        return;
    if (path != NULL)
        fmt_msg(err, errlen, "%s: %s", path, msg);
    else
        fmt_msg(err, errlen, "%s", msg);
}

/* Render untrusted bytes for a message: printable ASCII verbatim, anything
 * else as \xNN, at most QUOTE_MAX input bytes, "..." appended if cut. */
static void quote_bytes(const unsigned char *s, size_t n, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;
    if (outlen == 0)
        return;
    for (i = 0; i < n && i < QUOTE_MAX; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (o + 1 >= outlen)
                break;
            out[o++] = (char)c;
        } else {
            if (o + 4 >= outlen)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (i < n && o + 3 < outlen) {
        out[o++] = '.';
        out[o++] = '.';
        out[o++] = '.';
    }
    out[o] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

size_t npy_itemsize(npy_dtype dtype)
{
    switch (dtype) {
    case NPY_F32: return 4;
    case NPY_F64: return 8;
    }
    return 0;
}

void npy_free(npy_array *a)
{
    if (a == NULL)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* Element count and byte size of a shape.  NumPy semantics: the product of
 * the non-zero dimensions must not overflow, even if some dimension is 0. */
static int shape_size(size_t ndim, const size_t *shape, size_t itemsize, size_t *count,
                      size_t *nbytes)
{
    size_t prod = 1;
    int zero = 0;
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] == 0) {
            zero = 1;
            continue;
        }
        if (prod > SIZE_MAX / shape[i])
            return -1;
        prod *= shape[i];
    }
    if (prod > SIZE_MAX / itemsize)
        return -1;
    *count = zero ? 0 : prod;
    *nbytes = *count * itemsize;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Preamble: magic, version, header length                                   */
/* ------------------------------------------------------------------------ */

/* buf holds the first `avail` bytes of the file.  On success sets *major and
 * *lensize (2 or 4: width of the header-length field that follows). */
static int parse_magic(const unsigned char *buf, size_t avail, unsigned *major, size_t *lensize,
                       char *msg)
{
    if (avail < sizeof npy_magic || memcmp(buf, npy_magic, sizeof npy_magic) != 0) {
        fmt_msg(msg, MSG_LEN, "bad magic: not a NumPy .npy file");
        return -1;
    }
    if (avail < 8) {
        fmt_msg(msg, MSG_LEN, "truncated file: ends inside the format version");
        return -1;
    }
    if (buf[6] < 1 || buf[6] > 3 || buf[7] != 0) {
        fmt_msg(msg, MSG_LEN, "unsupported .npy format version %u.%u (supported: 1.0, 2.0, 3.0)",
                (unsigned)buf[6], (unsigned)buf[7]);
        return -1;
    }
    *major = buf[6];
    *lensize = buf[6] == 1 ? 2 : 4;
    return 0;
}

static size_t get_le(const unsigned char *p, size_t n)
{
    size_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

/* ------------------------------------------------------------------------ */
/* Header dictionary parser                                                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *beg, *p, *end;
    unsigned major;
    char *msg;
} cursor;

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static void skip_ws(cursor *c)
{
    while (c->p < c->end && is_ws(*c->p))
        c->p++;
}

static int peek(const cursor *c)
{
    return c->p < c->end ? *c->p : -1;
}

static int eat(cursor *c, unsigned char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static int syntax(cursor *c, const char *what)
{
    fmt_msg(c->msg, MSG_LEN, "malformed header: %s at header offset %zu", what,
            (size_t)(c->p - c->beg));
    return -1;
}

/* A Python string literal without prefix or escapes: '...' or "...". */
static int parse_string(cursor *c, const unsigned char **s, size_t *n, const char *expected)
{
    unsigned char q;
    const unsigned char *start;
    if (peek(c) != '\'' && peek(c) != '"')
        return syntax(c, expected);
    q = *c->p++;
    start = c->p;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\')
            return syntax(c, "unsupported escape sequence in string");
        if (*c->p == '\n' || *c->p == '\r')
            return syntax(c, "unterminated string");
        c->p++;
    }
    if (c->p >= c->end)
        return syntax(c, "unterminated string");
    *s = start;
    *n = (size_t)(c->p - start);
    c->p++;
    return 0;
}

static int str_is(const unsigned char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static int parse_descr(cursor *c, npy_dtype *dtype)
{
    const unsigned char *s;
    size_t n;
    char q[QUOTE_MAX * 4 + 8];
    int ch = peek(c);
    if (ch == '[' || ch == '(' || ch == '{') {
        fmt_msg(c->msg, MSG_LEN,
                "unsupported dtype: structured descr (expected '<f4' or '<f8')");
        return -1;
    }
    if (parse_string(c, &s, &n, "expected a dtype string for 'descr'") != 0)
        return -1;
    if (str_is(s, n, "<f4")) {
        *dtype = NPY_F32;
        return 0;
    }
    if (str_is(s, n, "<f8")) {
        *dtype = NPY_F64;
        return 0;
    }
    quote_bytes(s, n, q, sizeof q);
    if (n > 0 && (s[0] == '>' || s[0] == '!'))
        fmt_msg(c->msg, MSG_LEN,
                "unsupported dtype '%s': big-endian data is not supported (expected '<f4' or '<f8')",
                q);
    else
        fmt_msg(c->msg, MSG_LEN, "unsupported dtype '%s' (expected '<f4' or '<f8')", q);
    return -1;
}

static int is_ident(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

static int parse_fortran(cursor *c)
{
    const unsigned char *s = c->p;
    size_t n;
    while (c->p < c->end && is_ident(*c->p))
        c->p++;
    n = (size_t)(c->p - s);
    if (str_is(s, n, "False"))
        return 0;
    if (str_is(s, n, "True")) {
        fmt_msg(c->msg, MSG_LEN, "fortran_order True is not supported (only C-order arrays)");
        return -1;
    }
    c->p = s;
    return syntax(c, "fortran_order must be True or False");
}

static int parse_shape(cursor *c, size_t *ndim, size_t *shape)
{
    size_t nd = 0;
    if (!eat(c, '('))
        return syntax(c, "shape must be a tuple");
    skip_ws(c);
    if (eat(c, ')')) {
        *ndim = 0;
        return 0;
    }
    for (;;) {
        size_t v = 0;
        int ch;
        skip_ws(c);
        ch = peek(c);
        if (ch == '-') {
            fmt_msg(c->msg, MSG_LEN, "negative dimension in shape");
            return -1;
        }
        if (ch < '0' || ch > '9')
            return syntax(c, "expected a non-negative integer in shape");
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            size_t d = (size_t)(*c->p - '0');
            if (v > (SIZE_MAX - d) / 10) {
                fmt_msg(c->msg, MSG_LEN, "shape dimension too large (exceeds size_t)");
                return -1;
            }
            v = v * 10 + d;
            c->p++;
        }
        /* Python 2 long suffix; NumPy filters it for 1.0/2.0 files. */
        if (c->major < 3 && (peek(c) == 'L' || peek(c) == 'l'))
            c->p++;
        if (is_ident(peek(c)))
            return syntax(c, "invalid integer in shape");
        if (nd == NPY_MAX_DIMS) {
            fmt_msg(c->msg, MSG_LEN, "shape has more than %d dimensions", NPY_MAX_DIMS);
            return -1;
        }
        shape[nd++] = v;
        skip_ws(c);
        if (eat(c, ',')) {
            skip_ws(c);
            if (eat(c, ')'))
                break;
            continue;
        }
        if (eat(c, ')')) {
            if (nd == 1)
                return syntax(c, "shape '(n)' is not a tuple (1-D shape is written '(n,)')");
            break;
        }
        return syntax(c, "expected ',' or ')' in shape");
    }
    *ndim = nd;
    return 0;
}

enum { KEY_DESCR = 1, KEY_FORTRAN = 2, KEY_SHAPE = 4 };

/* Parse the header dict into meta->dtype/ndim/shape/count; *nbytes = data size. */
static int parse_header(const unsigned char *h, size_t hlen, unsigned major, npy_array *meta,
                        size_t *nbytes, char *msg)
{
    cursor c = {h, h, h + hlen, major, msg};
    unsigned seen = 0;
    char q[QUOTE_MAX * 4 + 8];

    skip_ws(&c);
    if (!eat(&c, '{'))
        return syntax(&c, "expected '{'");
    for (;;) {
        const unsigned char *key;
        size_t keylen;
        unsigned k;
        int rc;
        skip_ws(&c);
        if (eat(&c, '}'))
            break;
        if (parse_string(&c, &key, &keylen, "expected a string key or '}'") != 0)
            return -1;
        if (str_is(key, keylen, "descr"))
            k = KEY_DESCR;
        else if (str_is(key, keylen, "fortran_order"))
            k = KEY_FORTRAN;
        else if (str_is(key, keylen, "shape"))
            k = KEY_SHAPE;
        else {
            quote_bytes(key, keylen, q, sizeof q);
            fmt_msg(msg, MSG_LEN, "unknown header key '%s'", q);
            return -1;
        }
        if (seen & k) {
            quote_bytes(key, keylen, q, sizeof q);
            fmt_msg(msg, MSG_LEN, "duplicate header key '%s'", q);
            return -1;
        }
        seen |= k;
        skip_ws(&c);
        if (!eat(&c, ':'))
            return syntax(&c, "expected ':' after key");
        skip_ws(&c);
        if (k == KEY_DESCR)
            rc = parse_descr(&c, &meta->dtype);
        else if (k == KEY_FORTRAN)
            rc = parse_fortran(&c);
        else
            rc = parse_shape(&c, &meta->ndim, meta->shape);
        if (rc != 0)
            return -1;
        skip_ws(&c);
        if (eat(&c, ','))
            continue;
        if (eat(&c, '}'))
            break;
        return syntax(&c, "expected ',' or '}' after value");
    }
    skip_ws(&c);
    if (c.p != c.end)
        return syntax(&c, "unexpected data after the header dictionary");
    if (!(seen & KEY_DESCR) || !(seen & KEY_FORTRAN) || !(seen & KEY_SHAPE)) {
        fmt_msg(msg, MSG_LEN, "header is missing key '%s'",
                !(seen & KEY_DESCR) ? "descr" : !(seen & KEY_FORTRAN) ? "fortran_order" : "shape");
        return -1;
    }
    if (shape_size(meta->ndim, meta->shape, npy_itemsize(meta->dtype), &meta->count, nbytes) !=
        0) {
        fmt_msg(msg, MSG_LEN, "array size overflows size_t");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* In-memory parse                                                           */
/* ------------------------------------------------------------------------ */

static int parse_buffer(const unsigned char *buf, size_t len, npy_array *out, char *msg)
{
    unsigned major;
    size_t lensize, pre, hlen, nbytes, avail;
    npy_array meta;

    if (buf == NULL && len != 0) {
        fmt_msg(msg, MSG_LEN, "invalid argument: buffer is NULL");
        return -1;
    }
    if (parse_magic(buf, len, &major, &lensize, msg) != 0)
        return -1;
    pre = 8 + lensize;
    if (len < pre) {
        fmt_msg(msg, MSG_LEN, "truncated file: ends inside the header length field");
        return -1;
    }
    hlen = get_le(buf + 8, lensize);
    if (hlen > len - pre) {
        fmt_msg(msg, MSG_LEN, "header length %zu exceeds the %zu bytes remaining in the file",
                hlen, len - pre);
        return -1;
    }
    memset(&meta, 0, sizeof meta);
    if (parse_header(buf + pre, hlen, major, &meta, &nbytes, msg) != 0)
        return -1;
    avail = len - pre - hlen;
    if (avail < nbytes) {
        fmt_msg(msg, MSG_LEN, "truncated data: expected %zu bytes, got %zu", nbytes, avail);
        return -1;
    }
    if (avail > nbytes) {
        fmt_msg(msg, MSG_LEN, "%zu bytes after the data", avail - nbytes);
        return -1;
    }
    meta.data = malloc(nbytes ? nbytes : 1);
    if (meta.data == NULL) {
        fmt_msg(msg, MSG_LEN, "out of memory (%zu bytes)", nbytes);
        return -1;
    }
    if (nbytes)
        memcpy(meta.data, buf + pre + hlen, nbytes);
    *out = meta;
    return 0;
}

int npy_parse(const unsigned char *buf, size_t len, npy_array *out, char *err, size_t errlen)
{
    char msg[MSG_LEN];
    if (out == NULL) {
        report(err, errlen, NULL, "invalid argument: out is NULL");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (parse_buffer(buf, len, out, msg) != 0) {
        report(err, errlen, NULL, msg);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* File reader                                                               */
/* ------------------------------------------------------------------------ */

/* Read up to `want` bytes into a new buffer.  The buffer grows with the data
 * actually read, so a hostile length field cannot make us allocate much more
 * than the file holds.  `hint` is the number of bytes believed to remain
 * (SIZE_MAX if unknown).  Returns NULL on out-of-memory (*oom = 1) or read
 * error (*oom = 0, errno set); otherwise *got < want only at end of file. */
static unsigned char *read_upto(FILE *f, size_t want, size_t hint, size_t *got, int *oom)
{
    size_t cap, len = 0;
    unsigned char *buf;

    cap = hint == SIZE_MAX ? IO_CHUNK : hint;
    if (cap > want)
        cap = want;
    if (cap == 0)
        cap = 1;
    buf = malloc(cap);
    if (buf == NULL) {
        *oom = 1;
        return NULL;
    }
    while (len < want) {
        size_t r;
        if (len == cap) {
            size_t ncap = cap > want / 2 ? want : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                free(buf);
                *oom = 1;
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) {
                free(buf);
                *oom = 0;
                return NULL;
            }
            break;
        }
    }
    *got = len;
    return buf;
}

static int read_file(FILE *f, npy_array *out, char *msg)
{
    unsigned char pre[12];
    unsigned major;
    size_t lensize, n, hlen, got, nbytes, remain = SIZE_MAX, extra = 0;
    unsigned char *hdr, *data;
    int oom = 0, rc;
    struct stat st;
    npy_array meta;

    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fmt_msg(msg, MSG_LEN, "is a directory");
            return -1;
        }
        if (S_ISREG(st.st_mode) && st.st_size >= 0 && (uintmax_t)st.st_size < SIZE_MAX)
            remain = (size_t)st.st_size;
    }

    n = fread(pre, 1, 8, f);
    if (n < 8 && ferror(f))
        goto io_error;
    if (parse_magic(pre, n, &major, &lensize, msg) != 0)
        return -1;
    n = fread(pre + 8, 1, lensize, f);
    if (n < lensize) {
        if (ferror(f))
            goto io_error;
        fmt_msg(msg, MSG_LEN, "truncated file: ends inside the header length field");
        return -1;
    }
    hlen = get_le(pre + 8, lensize);
    if (remain != SIZE_MAX)
        remain = remain >= 8 + lensize ? remain - 8 - lensize : 0;

    hdr = read_upto(f, hlen, remain, &got, &oom);
    if (hdr == NULL)
        goto alloc_or_io_error;
    if (got < hlen) {
        fmt_msg(msg, MSG_LEN, "header length %zu exceeds the %zu bytes remaining in the file",
                hlen, got);
        free(hdr);
        return -1;
    }
    memset(&meta, 0, sizeof meta);
    rc = parse_header(hdr, hlen, major, &meta, &nbytes, msg);
    free(hdr);
    if (rc != 0)
        return -1;
    if (remain != SIZE_MAX)
        remain = remain >= hlen ? remain - hlen : 0;

    data = read_upto(f, nbytes, remain, &got, &oom);
    if (data == NULL)
        goto alloc_or_io_error;
    if (got < nbytes) {
        fmt_msg(msg, MSG_LEN, "truncated data: expected %zu bytes, got %zu", nbytes, got);
        free(data);
        return -1;
    }
    for (;;) {
        unsigned char sink[4096];
        size_t r = fread(sink, 1, sizeof sink, f);
        extra += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        free(data);
        goto io_error;
    }
    if (extra > 0) {
        fmt_msg(msg, MSG_LEN, "%zu bytes after the data", extra);
        free(data);
        return -1;
    }
    meta.data = data;
    *out = meta;
    return 0;

alloc_or_io_error:
    if (oom) {
        fmt_msg(msg, MSG_LEN, "out of memory");
        return -1;
    }
io_error:
    fmt_msg(msg, MSG_LEN, "read error: %s", strerror(errno));
    return -1;
}

int npy_read(const char *path, npy_array *out, char *err, size_t errlen)
{
    char msg[MSG_LEN];
    FILE *f;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (path == NULL || out == NULL) {
        report(err, errlen, path ? path : "(null)", "invalid argument");
        return -1;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        fmt_msg(msg, MSG_LEN, "cannot open: %s", strerror(errno));
        report(err, errlen, path, msg);
        return -1;
    }
    rc = read_file(f, out, msg);
    fclose(f);
    if (rc != 0) {
        report(err, errlen, path, msg);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

/* Build the complete preamble + header (padded with spaces, '\n'-terminated,
 * total length a multiple of 64 as NumPy writes it).  Returns its length. */
static size_t build_header(npy_dtype dtype, size_t ndim, const size_t *shape, unsigned char *out,
                           size_t outlen)
{
    char dict[NPY_MAX_DIMS * 24 + 96];
    size_t dl, pre, total, hlen;
    int k;

    k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                 dtype == NPY_F32 ? "<f4" : "<f8");
    dl = (size_t)k;
    for (size_t i = 0; i < ndim; i++) {
        k = snprintf(dict + dl, sizeof dict - dl, "%s%zu", i ? ", " : "", shape[i]);
        dl += (size_t)k;
    }
    k = snprintf(dict + dl, sizeof dict - dl, "%s), }", ndim == 1 ? "," : "");
    dl += (size_t)k;

    pre = 10; /* version 1.0 */
    total = (pre + dl + 1 + 63) / 64 * 64;
    hlen = total - pre;
    if (hlen > 0xFFFF) { /* unreachable with NPY_MAX_DIMS 8, kept for safety */
        pre = 12;
        total = (pre + dl + 1 + 63) / 64 * 64;
        hlen = total - pre;
    }
    if (total > outlen)
        return 0;
    memcpy(out, npy_magic, sizeof npy_magic);
    out[6] = pre == 10 ? 1 : 2;
    out[7] = 0;
    for (size_t i = 0; i < pre - 8; i++)
        out[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(out + pre, dict, dl);
    memset(out + pre + dl, ' ', total - pre - dl - 1);
    out[total - 1] = '\n';
    return total;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

#ifndef __STDC_NO_ATOMICS__
static atomic_uint tmp_counter;
#define NEXT_TMP() atomic_fetch_add(&tmp_counter, 1u)
#else
static unsigned tmp_counter;
#define NEXT_TMP() (tmp_counter++)
#endif

static int write_file(const char *path, npy_dtype dtype, size_t ndim, const size_t *shape,
                      const void *data, char *msg)
{
    unsigned char header[512];
    size_t itemsize, count, nbytes, hsize, plen, dirlen;
    const char *slash;
    char *tmp;
    int fd = -1, e;

    itemsize = npy_itemsize(dtype);
    if (itemsize == 0) {
        fmt_msg(msg, MSG_LEN, "invalid dtype %d", (int)dtype);
        return -1;
    }
    if (ndim > NPY_MAX_DIMS) {
        fmt_msg(msg, MSG_LEN, "cannot write %zu dimensions (maximum is %d)", ndim, NPY_MAX_DIMS);
        return -1;
    }
    if (ndim > 0 && shape == NULL) {
        fmt_msg(msg, MSG_LEN, "invalid argument: shape is NULL");
        return -1;
    }
    if (shape_size(ndim, shape, itemsize, &count, &nbytes) != 0) {
        fmt_msg(msg, MSG_LEN, "array size overflows size_t");
        return -1;
    }
    if (nbytes > 0 && data == NULL) {
        fmt_msg(msg, MSG_LEN, "invalid argument: data is NULL");
        return -1;
    }
    hsize = build_header(dtype, ndim, shape, header, sizeof header);
    if (hsize == 0) {
        fmt_msg(msg, MSG_LEN, "internal error: header too long");
        return -1;
    }

    /* Temporary file "<dir>/.<base>.tmp-<pid>-<n>" in the target directory. */
    plen = strlen(path);
    slash = strrchr(path, '/');
    dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    tmp = malloc(plen + 64);
    if (tmp == NULL) {
        fmt_msg(msg, MSG_LEN, "out of memory");
        return -1;
    }
    for (int tries = 0; tries < 100; tries++) {
        memcpy(tmp, path, dirlen);
        snprintf(tmp + dirlen, plen - dirlen + 64, ".%s.tmp-%ld-%u", path + dirlen,
                 (long)getpid(), (unsigned)NEXT_TMP());
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        fmt_msg(msg, MSG_LEN, "cannot create temporary file: %s", strerror(errno));
        free(tmp);
        return -1;
    }
    if (write_all(fd, header, hsize) != 0 || write_all(fd, data, nbytes) != 0) {
        fmt_msg(msg, MSG_LEN, "write failed: %s", strerror(errno));
        goto fail;
    }
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
        fmt_msg(msg, MSG_LEN, "fsync failed: %s", strerror(errno));
        goto fail;
    }
    e = close(fd);
    fd = -1;
    if (e != 0) {
        fmt_msg(msg, MSG_LEN, "close failed: %s", strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        fmt_msg(msg, MSG_LEN, "cannot rename temporary file into place: %s", strerror(errno));
        goto fail;
    }
    free(tmp);
    return 0;

fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    errno = e;
    return -1;
}

int npy_write(const char *path, npy_dtype dtype, size_t ndim, const size_t *shape,
              const void *data, char *err, size_t errlen)
{
    char msg[MSG_LEN];
    if (path == NULL || path[0] == '\0') {
        report(err, errlen, path ? path : "(null)", "invalid argument: empty path");
        return -1;
    }
    if (write_file(path, dtype, ndim, shape, data, msg) != 0) {
        report(err, errlen, path, msg);
        return -1;
    }
    return 0;
}
