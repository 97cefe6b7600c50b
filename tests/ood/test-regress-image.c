/* test-regress-image.c - regression tests for what fuzzing the image-folder
 * decode path found (tests/fuzz/RESULTS.md, target image). All three are in
 * how the stb_image that Debian's libstb-dev ships (v2.27, git 2022-09-08)
 * is used by ood/data-image.c; they need a fix there (check the file before
 * stb decodes it), or for finding 1 a newer, vendored stb_image.
 *
 * Finding image-1: a JPEG whose DHT segment declares more than 256 Huffman
 * codes makes stbi__build_huffman write past huffman.size[257] and the
 * table's values[256] (up to 16 * 255 bytes): an out-of-bounds write inside
 * the decoder's heap object. UBSan reports it (stb_image.h:1990); without a
 * sanitizer it silently corrupts the decoder's state. 18 bytes suffice.
 *
 * Finding image-2: a PNG whose IDAT chunk length runs far past the end of the
 * file makes stb grow its buffer to that length (up to 4 GiB) before it
 * notices the data is missing (stb_image.h:5127): a 60-byte file asks for
 * 1.7 GB. Checked by running the decode under an address-space limit: a
 * truncated file must be reported as corrupt, not as out of memory.
 *
 * Finding image-3: the decode cost follows the dimensions a header
 * declares, not the file size: a 666-byte JPEG declaring 13312 x 10240
 * took over 10 s and about 4 GB (stb's pixels, then two float planes) and
 * timed out the fuzzer. The dimensions must be read first
 * (stbi_info_from_memory) and an image above a pixel cap refused with its
 * size in the message.
 *
 * Finding image-4: a valid PNG whose first IDAT chunk is empty makes stb
 * copy zero bytes to a NULL buffer (stb_image.h:5130 -> 1663): undefined
 * behaviour, harmless in practice, but the sanitized suite stops on it.
 *
 * Findings image-5 and image-6: a JPEG scan that uses a Huffman or
 * quantization table the file never defined makes stb decode with the
 * uninitialized heap memory of its decoder (it mallocs it without clearing
 * it): wild indices into Huffman tables (stb_image.h:2120, out-of-bounds
 * reads at offsets up to +-2^31, a segfault without sanitizers) and signed
 * overflow in dequantization (stb_image.h:2197). What happens depends on the
 * heap's old contents, so in ASan builds this executable asks ASan to fill
 * every allocation with 0xff (__asan_default_options below), which makes
 * the saved inputs fail the same way every time. stb_image 2.28 and later
 * clear the decoder.
 *
 * The checks of findings 2 and 3 run under an address-space cap and so not
 * in ASan builds (ASan reserves terabytes of address space up front).
 *
 * Inputs libFuzzer saved for finding 1 are in tests/fuzz/crashes/image/ and
 * are replayed through the fuzz target here as well. */
#define OC_FUZZ_REPLAY 1
#include "../fuzz/fuzz-image.c"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../../ood/data.h"
#include "../helpers/helpers.h"

#if defined(__SANITIZE_ADDRESS__)
#define OC_REGRESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OC_REGRESS_ASAN 1
#endif
#endif

#ifdef OC_REGRESS_ASAN
/* Uninitialized heap memory reads as 0xff (findings 5 and 6); the
 * environment's ASAN_OPTIONS still apply on top. */
const char *__asan_default_options(void) __attribute__((used));
const char *__asan_default_options(void)
{
    return "malloc_fill_byte=255:max_malloc_fill_size=1048576";
}
#endif

/* Writes one file named `name` into a fresh folder; returns the folder. */
static const char *one_file_dir(const char *name, const void *data, size_t n)
{
    /* in the build folder: a crash (before the fix) leaves it there */
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/regress-image-XXXXXX", OC_BINARY_DIR);
    cr_assert_not_null(mkdtemp(dir));
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
    return dir;
}

static void remove_dir(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    rmdir(dir);
}

#ifndef OC_REGRESS_ASAN
/* Caps this test process's address space at what it maps now plus extra
 * bytes, so that an allocation a file should never cause fails at once
 * instead of taking the machine's memory. */
static void limit_address_space(rlim_t extra)
{
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    unsigned long pages = 0;
    cr_assert_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + extra;
    cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
}
#endif

/* SOI, one DHT segment (class 0, table 0) declaring 300 codes, EOI. */
Test(regress_image, jpeg_dht_with_more_than_256_codes_is_rejected)
{
    unsigned char j[2 + 4 + 1 + 16 + 300 + 2];
    size_t n = 0;
    j[n++] = 0xff, j[n++] = 0xd8;
    j[n++] = 0xff, j[n++] = 0xc4;
    unsigned len = 2 + 1 + 16 + 300;
    j[n++] = (unsigned char)(len >> 8), j[n++] = (unsigned char)len;
    j[n++] = 0x00;
    j[n++] = 255, j[n++] = 45; /* 300 codes of lengths 1 and 2 */
    for (int i = 2; i < 16; i++) j[n++] = 0;
    for (int i = 0; i < 300; i++) j[n++] = (unsigned char)i;
    j[n++] = 0xff, j[n++] = 0xd9;
    cr_assert_eq(n, sizeof j);
    const char *dir = one_file_dir("bad.jpg", j, n);
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_folder(dir, OC_FOLDER_RESIZE, 3, 4, 4, 0, 1, &ds, &err);
    remove_dir(dir, "bad.jpg");
    cr_assert_eq(s, OC_ERR_PARSE, "status %s: %s", oc_status_name(s), err.msg);
    cr_assert(strstr(err.msg, "bad.jpg"), "message: %s", err.msg);
}

#ifndef OC_REGRESS_ASAN
/* PNG signature, a valid 6x6 RGB IHDR, then an IDAT chunk claiming
 * 0x67420000 bytes (1.7 GB) of which the file holds 9. */
Test(regress_image, png_idat_length_past_the_end_is_corrupt_not_out_of_memory)
{
    static const unsigned char png[] = {
        0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a,                   /* signature */
        0x00, 0x00, 0x00, 0x0d, 'I', 'H', 'D', 'R', 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
        0x06, 0x08, 0x02, 0x00, 0x00, 0x00, 0x6f, 0xae, 0x78, 0x43,     /* IHDR + crc */
        0x67, 0x42, 0x00, 0x00, 'I', 'D', 'A', 'T',                     /* IDAT, 1.7 GB */
        0x78, 0x9c, 0x63, 0x64, 0x60, 0x60, 0x00, 0x00, 0x00,
    };
    const char *dir = one_file_dir("cut.png", png, sizeof png);
    limit_address_space((rlim_t)512 << 20);
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_folder(dir, OC_FOLDER_RESIZE, 3, 4, 4, 0, 1, &ds, &err);
    remove_dir(dir, "cut.png");
    cr_assert_eq(s, OC_ERR_PARSE, "status %s: %s", oc_status_name(s), err.msg);
    cr_assert(strstr(err.msg, "cut.png"), "message: %s", err.msg);
    cr_assert_null(strstr(err.msg, "outofmem"), "a truncated file reads as out of memory: %s",
                   err.msg);
    cr_assert_null(strstr(err.msg, "Out of memory"), "a truncated file reads as out of memory: %s",
                   err.msg);
}

/* SOI, a baseline SOF declaring 10000 x 10000 x 3, EOI: 21 bytes that ask
 * for a 300 MB decode and 2.4 GB of float planes after it (run under an
 * address-space cap, so that before the fix it fails fast). */
Test(regress_image, jpeg_declaring_100_megapixels_is_refused_before_decoding)
{
    static const unsigned char j[] = {
        0xff, 0xd8,                                     /* SOI */
        0xff, 0xc0, 0x00, 0x11, 0x08, 0x27, 0x10, 0x27, /* SOF0: 8 bits, h 10000, */
        0x10, 0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x01, /* w 10000, 3 components */
        0x03, 0x11, 0x01, 0xff, 0xd9,                   /* EOI */
    };
    const char *dir = one_file_dir("huge.jpg", j, sizeof j);
    limit_address_space((rlim_t)512 << 20);
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_folder(dir, OC_FOLDER_RESIZE, 3, 4, 4, 0, 1, &ds, &err);
    remove_dir(dir, "huge.jpg");
    cr_assert_neq(s, OC_OK);
    cr_assert(strstr(err.msg, "huge.jpg") && strstr(err.msg, "10000x10000"),
              "the error should name the file and its size: %s", err.msg);
}
#endif

/* A valid 2x2 RGB PNG whose first IDAT chunk is empty (the PNG spec allows
 * it): it must decode, to the pixels of the second IDAT. */
Test(regress_image, png_with_an_empty_first_idat_decodes)
{
    static const unsigned char png[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
        0x44, 0x52, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00,
        0x00, 0xfd, 0xd4, 0x9a, 0x73, 0x00, 0x00, 0x00, 0x00, 0x49, 0x44, 0x41, 0x54, 0x35,
        0xaf, 0x06, 0x1e, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63,
        0xe0, 0x12, 0x91, 0x03, 0x22, 0x06, 0x08, 0x05, 0x00, 0x06, 0x4e, 0x00, 0xf1, 0x38,
        0x63, 0x32, 0x81, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60,
        0x82,
    };
    const char *dir = one_file_dir("empty-idat.png", png, sizeof png);
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_folder(dir, OC_FOLDER_RESIZE, 3, 2, 2, 0, 1, &ds, &err);
    remove_dir(dir, "empty-idat.png");
    cr_assert_eq(s, OC_OK, "%s", err.msg);
    /* every pixel is (10, 20, 30) / 255, planar */
    for (int ch = 0; ch < 3; ch++)
        for (int k = 0; k < 4; k++)
            cr_assert_float_eq(ds.images[ch * 4 + k], (float)(10 * (ch + 1)) / 255.0f, 1e-6);
    oc_dataset_free(&ds);
}

/* Every crash input libFuzzer saved, through the fuzz target's own checks
 * (the oom-* input is finding 2, checked above without its 1.7 GB). */
Test(regress_image, saved_fuzz_inputs)
{
    const char *dir = OC_SOURCE_DIR "/tests/fuzz/crashes/image";
    /* the targets' scratch folder: in the build folder, where a crash
     * leaves it */
    setenv("OC_FUZZ_TMPDIR", OC_BINARY_DIR "/tests", 1);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s missing", dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "crash-", 6)) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f);
        uint8_t buf[65536];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        oc_fuzz_input = path;
        oc_fuzz_image(buf, len);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 1, "no saved inputs in %s", dir);
}
