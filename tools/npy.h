/*
 * npy.h - minimal, self-contained NumPy .npy reader/writer (C11 + POSIX).
 *
 * Supported: format versions 1.0, 2.0 and 3.0; C-order arrays of dtype
 * '<f4' (float) or '<f8' (double); 0..NPY_MAX_DIMS dimensions.
 *
 * The functions never print and never exit.  On failure they return -1 and
 * write a one-line message (no trailing newline, NUL-terminated, truncated to
 * errlen) into err; err may be NULL or errlen 0 to discard the message.
 * Messages from npy_read/npy_write start with "<path>: ".
 *
 * Input is treated as hostile: every length and offset is bounds-checked, so
 * npy_parse is safe to fuzz.  The header parser accepts what NumPy's own
 * reader accepts for these dtypes (any key order, either quote style, any
 * whitespace, optional trailing commas, no required '\n' terminator or
 * alignment; 'L' suffixes on dimensions from Python 2 writers in 1.0/2.0
 * files), but unlike NumPy it also rejects duplicated keys, and it rejects
 * string escapes, which a valid header for these dtypes never contains.
 *
 * Not thread-hostile: no global state apart from an atomic counter used for
 * temporary file names (strerror() is used for system error text).
 */
#ifndef CLNORM_NPY_H
#define CLNORM_NPY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NPY_MAX_DIMS 8

typedef enum { NPY_F32 = 0, NPY_F64 = 1 } npy_dtype;

typedef struct {
    npy_dtype dtype;
    size_t ndim;                 /* 0 for a scalar */
    size_t shape[NPY_MAX_DIMS];  /* entries >= ndim are 0 */
    size_t count;                /* product of shape (1 for a scalar) */
    void *data;                  /* count * npy_itemsize(dtype) bytes, C order;
                                    never NULL on success (even if count == 0);
                                    release with npy_free() */
} npy_array;

/* Size in bytes of one element (4 or 8), or 0 for an invalid dtype. */
size_t npy_itemsize(npy_dtype dtype);

/* Read a .npy file.  Returns 0 on success; on failure returns -1, leaves
 * *out zeroed (npy_free-safe) and writes "<path>: <reason>" into err. */
int npy_read(const char *path, npy_array *out, char *err, size_t errlen);

/* Write a C-order array in format 1.0 (2.0 if the header would not fit).
 * The file is written to a temporary file in the same directory, fsync'ed,
 * and rename()d over path, so path is replaced atomically and no partial
 * or temporary file is left behind on failure.  The new file gets mode
 * 0666 & ~umask.  shape may be NULL when ndim == 0; data may be NULL when
 * the element count is 0. */
int npy_write(const char *path, npy_dtype dtype, size_t ndim, const size_t *shape,
              const void *data, char *err, size_t errlen);

/* Release a->data and zero *a.  Safe on a zeroed array, on NULL, and twice. */
void npy_free(npy_array *a);

/* Parse a complete .npy image held in memory (the data is copied into a new
 * allocation owned by *out).  Same rules and messages as npy_read, without
 * the "<path>: " prefix. */
int npy_parse(const unsigned char *buf, size_t len, npy_array *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* CLNORM_NPY_H */
