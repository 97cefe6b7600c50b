/* fuzz-cifar.c - fuzz target for the CIFAR-10 binary reader (ood/data.c,
 * oc_data_load_cifar_files).
 *
 * The loader reads files, so the input is framed into one or two files:
 *   byte 0: bit 0  two files; then bytes 1-2 are the first file's length L
 *                  (little-endian, cut to what is there), L bytes of it, and
 *                  the rest is the second file
 *   otherwise bytes 1.. are the one file.
 * An accepted dataset must be n x 3 x 32 x 32 with n = the records of all
 * files, pixels in [0, 1] and labels in 0..9. */
#include "fuzz-common.h"

#include "../../ood/data.h"

static struct oc_fuzz_file fuzz_cifar_files[2] = {{"in-0", ""}, {"in-1", ""}};

OC_FUZZ_ENTRY(cifar)
{
    if (size < 1) return 0;
    const char *paths[2];
    int npaths = 1;
    size_t bytes = size - 1;
    if (data[0] & 1) {
        if (size < 3) return 0;
        size_t l = oc_fuzz_u16(data + 1);
        if (l > size - 3) l = size - 3;
        paths[0] = oc_fuzz_file_set(&fuzz_cifar_files[0], data + 3, l);
        paths[1] = oc_fuzz_file_set(&fuzz_cifar_files[1], data + 3 + l, size - 3 - l);
        npaths = 2;
        bytes = size - 3;
    } else {
        paths[0] = oc_fuzz_file_set(&fuzz_cifar_files[0], data + 1, size - 1);
    }

    struct oc_dataset ds;
    memset(&ds, 0x5a, sizeof ds); /* the loader must not touch *out on failure */
    struct oc_dataset untouched = ds;
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_cifar_files(paths, npaths, &ds, &err);
    if (s != OC_OK) {
        OC_FUZZ_CHECK(err.code == s && err.msg[0], "status %d without a matching error", (int)s);
        OC_FUZZ_CHECK(!memcmp(&ds, &untouched, sizeof ds), "failed load modified *out");
        return 0;
    }
    OC_FUZZ_CHECK(ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.nclasses == 10 && ds.labels &&
                      ds.images && ds.source,
                  "bad dataset %lldx%dx%dx%d", (long long)ds.n, ds.c, ds.h, ds.w);
    OC_FUZZ_CHECK(ds.n > 0 && (size_t)ds.n * 3073 == bytes, "%lld records from %zu bytes",
                  (long long)ds.n, bytes);
    int64_t total = ds.n * 3072;
    for (int64_t i = 0; i < total; i++)
        OC_FUZZ_CHECK(ds.images[i] >= 0.0f && ds.images[i] <= 1.0f, "pixel %lld is %g",
                      (long long)i, (double)ds.images[i]);
    for (int64_t i = 0; i < ds.n; i++)
        OC_FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] <= 9, "label %lld is %d", (long long)i,
                      (int)ds.labels[i]);
    oc_dataset_free(&ds);
    return 0;
}
