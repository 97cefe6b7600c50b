/* fuzz-npy.c - fuzz target for the .npy reader (ir/npy.c, oc_npy_parse).
 *
 * Input: the bytes of a .npy file. A rejected file must carry an error; an
 * accepted one must describe exactly the bytes it holds (every element is
 * read back, so a buffer shorter than its shape shows up under ASan) and
 * stay within the documented limits (rank <= 6, known dtype). */
#include "fuzz-common.h"

#include "../../ir/ir.h"

OC_FUZZ_ENTRY(npy)
{
    struct oc_buf b;
    struct oc_err err = {0};
    enum oc_status s = oc_npy_parse(data, size, "fuzz.npy", &b, &err);
    if (s != OC_OK) {
        OC_FUZZ_CHECK(err.code == s && err.msg[0], "status %d without a matching error", (int)s);
        OC_FUZZ_CHECK(b.data == NULL, "rejected file left a buffer behind");
        return 0;
    }
    OC_FUZZ_CHECK(b.dtype >= 0 && b.dtype < OC_DTYPE_COUNT, "bad dtype %d", (int)b.dtype);
    OC_FUZZ_CHECK(b.shape.rank >= 0 && b.shape.rank <= OC_MAX_RANK, "bad rank %d", b.shape.rank);
    int64_t numel = oc_shape_numel(&b.shape);
    OC_FUZZ_CHECK(numel >= 0, "negative numel");
    /* The data follows the header, so it cannot be larger than the file. */
    OC_FUZZ_CHECK((uint64_t)numel * oc_dtype_size(b.dtype) <= size,
                  "%lld elements of %zu bytes from a %zu-byte file", (long long)numel,
                  oc_dtype_size(b.dtype), size);
    double acc = 0;
    for (int64_t i = 0; i < numel; i++) acc += oc_buf_get(&b, i);
    (void)acc;
    oc_buf_free(&b);
    return 0;
}
