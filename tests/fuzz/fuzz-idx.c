/* fuzz-idx.c - fuzz target for the IDX reader (ood/data.c, oc_data_load_idx),
 * raw and gzip-compressed.
 *
 * The loader reads files, so the input is framed into one or two files
 * (see fuzz-common.h for how they reach it):
 *   byte 0: bit 0  a labels file follows
 *           bit 1  the harness gzips the images file (the IDX parser behind
 *                  the zlib path sees structured data, not mutated deflate)
 *           bit 2  the harness gzips the labels file
 *   with labels: bytes 1-2 the labels file length L (little-endian, cut to
 *           what is there), then L bytes of labels file, then the images file;
 *   without: bytes 1.. are the images file.
 * Either file may also be gzip data itself (the raw bytes are passed as they
 * are when the bit is clear), which covers corrupt and truncated streams.
 * An accepted dataset must hold n*h*w pixels in [0, 1] and labels in
 * [0, nclasses). The harness needs zlib for bits 1-2 (OC_HAVE_ZLIB). */
#include "fuzz-common.h"

#include "../../ood/data.h"

#ifdef OC_HAVE_ZLIB
#include <zlib.h>
#endif

/* gzip-compresses data into *out (malloc'd); 0 on success. */
static int fuzz_idx_gzip(const uint8_t *data, size_t n, uint8_t **out, size_t *outn)
{
#ifdef OC_HAVE_ZLIB
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t cap = deflateBound(&z, (uLong)n) + 32;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    *outn = cap - z.avail_out;
    deflateEnd(&z);
    if (r != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
#else
    (void)data, (void)n, (void)out, (void)outn;
    return -1;
#endif
}

/* Writes one file, gzipped by the harness if asked. */
static const char *fuzz_idx_put(struct oc_fuzz_file *f, const uint8_t *data, size_t n, int gz)
{
    uint8_t *z = NULL;
    size_t zn = 0;
    if (gz && fuzz_idx_gzip(data, n, &z, &zn) == 0) {
        const char *p = oc_fuzz_file_set(f, z, zn);
        free(z);
        return p;
    }
    return oc_fuzz_file_set(f, data, n);
}

static struct oc_fuzz_file fuzz_idx_images = {"in-0", ""}, fuzz_idx_labels = {"in-1", ""};

OC_FUZZ_ENTRY(idx)
{
    if (size < 1) return 0;
    int mode = data[0];
    const uint8_t *img = data + 1, *lab = NULL;
    size_t imgn = size - 1, labn = 0;
    if (mode & 1) {
        if (size < 3) return 0;
        labn = oc_fuzz_u16(data + 1);
        if (labn > size - 3) labn = size - 3;
        lab = data + 3;
        img = lab + labn;
        imgn = size - 3 - labn;
    }
    const char *ip = fuzz_idx_put(&fuzz_idx_images, img, imgn, mode & 2);
    const char *lp = lab ? fuzz_idx_put(&fuzz_idx_labels, lab, labn, mode & 4) : NULL;

    struct oc_dataset ds;
    memset(&ds, 0x5a, sizeof ds); /* the loader must not touch *out on failure */
    struct oc_dataset untouched = ds;
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_idx(ip, lp, &ds, &err);
    if (s != OC_OK) {
        OC_FUZZ_CHECK(err.code == s && err.msg[0], "status %d without a matching error", (int)s);
        OC_FUZZ_CHECK(!memcmp(&ds, &untouched, sizeof ds), "failed load modified *out");
        return 0;
    }
    OC_FUZZ_CHECK(ds.n > 0 && ds.c == 1 && ds.h > 0 && ds.w > 0 && ds.images && ds.source,
                  "bad dataset %lldx%dx%dx%d", (long long)ds.n, ds.c, ds.h, ds.w);
    int64_t total = ds.n * ds.h * ds.w;
    for (int64_t i = 0; i < total; i++)
        OC_FUZZ_CHECK(ds.images[i] >= 0.0f && ds.images[i] <= 1.0f, "pixel %lld is %g",
                      (long long)i, (double)ds.images[i]);
    if (lp) {
        OC_FUZZ_CHECK(ds.labels && ds.nclasses >= 1 && ds.nclasses <= 256, "nclasses %d",
                      ds.nclasses);
        for (int64_t i = 0; i < ds.n; i++)
            OC_FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < ds.nclasses, "label %lld is %d",
                          (long long)i, (int)ds.labels[i]);
    } else {
        OC_FUZZ_CHECK(!ds.labels, "labels without a labels file");
    }
    oc_dataset_free(&ds);
    return 0;
}
