/* fuzz_npy.c: libFuzzer harness for the .npy parser (tools/npy.c). Any input
 * must either parse into a consistent array or fail with a one-line message;
 * a parsed array's data must be exactly what the input holds after the
 * header. Memory errors are the sanitizers' to find. */
#include "npy.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                    \
    do {                                                    \
        if (!(cond)) {                                      \
            fprintf(stderr, "fuzz_npy: " __VA_ARGS__);      \
            fprintf(stderr, "\n");                          \
            abort();                                        \
        }                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_array a;
    char      err[160];
    memset(err, 'x', sizeof err);
    int rc = npy_parse(data, size, &a, err, sizeof err);
    if (rc != 0) {
        CHECK(rc == -1, "rc %d", rc);
        CHECK(memchr(err, '\0', sizeof err) != NULL, "message not terminated");
        CHECK(err[0] != '\0', "empty message");
        CHECK(strchr(err, '\n') == NULL, "message spans lines: %s", err);
        CHECK(a.data == NULL && a.ndim == 0 && a.count == 0, "output not zeroed on failure");
        npy_free(&a);
        return 0;
    }
    size_t item = npy_itemsize(a.dtype);
    CHECK(item == 4 || item == 8, "dtype %d", (int)a.dtype);
    CHECK(a.ndim <= NPY_MAX_DIMS, "ndim %zu", a.ndim);
    CHECK(a.data != NULL, "data NULL on success");
    size_t count = 1;
    for (size_t i = 0; i < a.ndim; ++i)
        count *= a.shape[i];
    for (size_t i = a.ndim; i < NPY_MAX_DIMS; ++i)
        CHECK(a.shape[i] == 0, "shape[%zu] set beyond ndim", i);
    CHECK(count == a.count, "count %zu, shape product %zu", a.count, count);
    size_t bytes = a.count * item;
    CHECK(bytes <= size, "%zu data bytes from a %zu-byte input", bytes, size);
    /* the data is the tail of the input */
    CHECK(bytes == 0 || memcmp(a.data, data + size - bytes, bytes) == 0, "data differs from the input");
    npy_free(&a);
    CHECK(a.data == NULL, "npy_free left data");
    npy_free(&a); /* twice is safe */
    return 0;
}
