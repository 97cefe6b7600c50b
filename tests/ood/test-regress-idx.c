/* test-regress-idx.c - regression tests for what fuzzing the IDX reader
 * found (tests/fuzz/RESULTS.md, target idx).
 *
 * Finding idx-1: oc_data_load_idx allocates n*h*w floats as soon as it has
 * read the 16-byte header, before it knows whether the file holds that many
 * bytes, so a 16-byte file makes it ask for up to 1 TiB (the plausibility
 * cap is 2^38 pixels). Without sanitizers the allocation fails and the error
 * is a misleading "out of memory"; with ASan, or with a claim that fits in
 * RAM + overcommit, the process dies or balloons. A raw file's length is
 * known from the start, so it must be rejected as truncated before any large
 * allocation; for gzip input the buffer must grow with the data actually
 * decompressed (or the claim be checked against the gzip trailer's length).
 * Inputs libFuzzer saved are in tests/fuzz/crashes/idx/ and are replayed
 * through the fuzz target here as well. */
#define OC_FUZZ_REPLAY 1
#include "../fuzz/fuzz-idx.c"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../ood/data.h"
#include "../helpers/helpers.h"

/* An IDX images header (magic 0x00000803) claiming n images of h x w. */
static void idx_header(unsigned char *h, uint32_t n, uint32_t hh, uint32_t w)
{
    const uint32_t v[4] = {0x803, n, hh, w};
    for (int i = 0; i < 4; i++) {
        h[4 * i] = (unsigned char)(v[i] >> 24);
        h[4 * i + 1] = (unsigned char)(v[i] >> 16);
        h[4 * i + 2] = (unsigned char)(v[i] >> 8);
        h[4 * i + 3] = (unsigned char)v[i];
    }
}

static char *write_tmp(const void *data, size_t n, const char *suffix)
{
    char *path = malloc(256);
    cr_assert_not_null(path);
    /* in the build folder: a crash (before the fix) leaves it there */
    snprintf(path, 256, "%s/tests/regress-idx-%d%s", OC_BINARY_DIR, (int)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
    return path;
}

/* 2^22 images of 256 x 256: 2^38 pixels, the most the reader finds
 * plausible, i.e. 1 TiB of floats, from a file with no pixel data at all. */
Test(regress_idx, huge_claim_raw_is_truncated_not_allocated)
{
    unsigned char h[16];
    idx_header(h, 1u << 22, 256, 256);
    char *path = write_tmp(h, sizeof h, "");
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_idx(path, NULL, &ds, &err);
    unlink(path);
    cr_assert_eq(s, OC_ERR_PARSE, "status %s: %s", oc_status_name(s), err.msg);
    cr_assert(strstr(err.msg, "truncated") && strstr(err.msg, path), "message: %s", err.msg);
    cr_assert_null(ds.images);
    free(path);
}

#ifdef OC_HAVE_ZLIB
/* The same header, gzip-compressed: the decompressed length is not known in
 * advance, but nothing in the stream justifies 1 TiB either. */
Test(regress_idx, huge_claim_gzip_is_truncated_not_allocated)
{
    unsigned char h[16];
    idx_header(h, 1u << 22, 256, 256);
    uint8_t *z = NULL;
    size_t zn = 0;
    cr_assert_eq(fuzz_idx_gzip(h, sizeof h, &z, &zn), 0);
    char *path = write_tmp(z, zn, ".gz");
    free(z);
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_idx(path, NULL, &ds, &err);
    unlink(path);
    cr_assert_eq(s, OC_ERR_PARSE, "status %s: %s", oc_status_name(s), err.msg);
    cr_assert(strstr(err.msg, "truncated") && strstr(err.msg, path), "message: %s", err.msg);
    free(path);
}
#endif

/* Every input libFuzzer saved, through the fuzz target's own checks. */
Test(regress_idx, saved_fuzz_inputs)
{
    const char *dir = OC_SOURCE_DIR "/tests/fuzz/crashes/idx";
    /* the targets' scratch folder: in the build folder, where a crash
     * leaves it */
    setenv("OC_FUZZ_TMPDIR", OC_BINARY_DIR "/tests", 1);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s missing", dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f);
        uint8_t buf[65536];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        oc_fuzz_input = path;
        oc_fuzz_idx(buf, len);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 1, "no saved inputs in %s", dir);
}
