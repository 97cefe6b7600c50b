/* test-data.c - dataset loaders and the batcher: tiny IDX/CIFAR/image
 * fixtures (tests/fixtures/data/make_fixtures.py), broken files rejected
 * naming the file and offset or record, noise statistics, seeded splits,
 * per-channel statistics, and batches that are the same whatever the thread
 * timing. Also loads the real Fashion-MNIST test set installed by the Debian
 * package dataset-fashion-mnist. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../ood/data.h"
#include "../helpers/helpers.h"

#define FX OC_SOURCE_DIR "/tests/fixtures/data/"

static float idx_pixel(int i, int y, int x)
{
    return (float)((37 * i + 11 * y + 3 * x) % 256) / 255.0f;
}

static float cifar_pixel(int g, int c, int p)
{
    return (float)((7 * g + 50 * c + p) % 256) / 255.0f;
}

/* A loader must leave *out alone when it fails. */
static struct oc_dataset sentinel(void)
{
    struct oc_dataset s;
    memset(&s, 0, sizeof s);
    s.n = -77;
    s.c = 9;
    return s;
}

static void expect_untouched(const struct oc_dataset *d)
{
    cr_assert_eq(d->n, -77, "output overwritten on failure");
    cr_assert_eq(d->c, 9);
    cr_assert_null(d->images);
}

static void expect_msg(const struct oc_err *e, const char *a, const char *b)
{
    cr_assert(strstr(e->msg, a), "expected \"%s\" in: %s", a, e->msg);
    if (b) cr_assert(strstr(e->msg, b), "expected \"%s\" in: %s", b, e->msg);
}

/* ---------------------------------------------------------------- IDX */

static void check_tiny_idx(const struct oc_dataset *d)
{
    cr_assert_eq(d->n, 5);
    cr_assert_eq(d->c, 1);
    cr_assert_eq(d->h, 6);
    cr_assert_eq(d->w, 4);
    cr_assert_eq(d->nclasses, 10);
    static const int lab[5] = {3, 0, 7, 1, 9};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(d->labels[i], lab[i]);
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 4; x++)
                cr_assert_eq(d->images[(i * 6 + y) * 4 + x], idx_pixel(i, y, x), "pixel %d,%d,%d",
                             i, y, x);
    }
}

Test(data, idx_raw_and_gz)
{
    struct oc_dataset a, b;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_idx(FX "idx/tiny-images-idx3-ubyte", FX "idx/tiny-labels-idx1-ubyte",
                                  &a, &err),
                 OC_OK, "%s", err.msg);
    check_tiny_idx(&a);
    cr_assert(strstr(a.source, "tiny-images"));
    cr_assert_eq(oc_data_load_idx(FX "idx/tiny-images-idx3-ubyte.gz",
                                  FX "idx/tiny-labels-idx1-ubyte.gz", &b, &err),
                 OC_OK, "%s", err.msg);
    check_tiny_idx(&b);
    oc_dataset_free(&a);
    oc_dataset_free(&b);
    /* Without labels. */
    cr_assert_eq(oc_data_load_idx(FX "idx/tiny-images-idx3-ubyte.gz", NULL, &a, &err), OC_OK, "%s",
                 err.msg);
    cr_assert_null(a.labels);
    cr_assert_eq(a.nclasses, 0);
    oc_dataset_free(&a);
}

Test(data, idx_truncated_names_file_and_offset)
{
    struct oc_dataset d = sentinel();
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_idx(FX "idx/trunc-images-idx3-ubyte", NULL, &d, &err), OC_ERR_PARSE);
    expect_msg(&err, "trunc-images-idx3-ubyte", "byte offset 69");
    expect_msg(&err, "image 2 is incomplete", NULL);
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_idx(FX "idx/trunc-images-idx3-ubyte.gz", NULL, &d, &err),
                 OC_ERR_PARSE);
    expect_msg(&err, "trunc-images-idx3-ubyte.gz", "byte offset 69 (decompressed)");
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_idx(FX "idx/cut-images-idx3-ubyte.gz", NULL, &d, &err),
                 OC_ERR_PARSE);
    expect_msg(&err, "cut-images-idx3-ubyte.gz", "offset");
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_idx(FX "idx/long-images-idx3-ubyte", NULL, &d, &err), OC_ERR_PARSE);
    expect_msg(&err, "long-images-idx3-ubyte", "after byte offset 136");
    expect_untouched(&d);
}

Test(data, idx_malformed_headers)
{
    struct oc_dataset d = sentinel();
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_idx(FX "idx/badmagic-images-idx3-ubyte", NULL, &d, &err),
                 OC_ERR_PARSE);
    expect_msg(&err, "badmagic-images-idx3-ubyte", "0x12345678");
    expect_untouched(&d);

    /* A labels file where images are expected: wrong dimension count. */
    oc_err_clear(&err);
    cr_assert_neq(oc_data_load_idx(FX "idx/tiny-labels-idx1-ubyte", NULL, &d, &err), OC_OK);
    expect_msg(&err, "tiny-labels-idx1-ubyte", "1 dimensions, expected 3");
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_idx(FX "idx/tiny-images-idx3-ubyte", FX "idx/four-labels-idx1-ubyte",
                                  &d, &err),
                 OC_ERR_SHAPE);
    expect_msg(&err, "4 labels", "5 images");
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_idx(FX "idx/no-such-file", NULL, &d, &err), OC_ERR_IO);
    expect_msg(&err, "no-such-file", "cannot open");
    expect_untouched(&d);
}

/* ---------------------------------------------------------------- Fashion-MNIST */

/* The real data set: the Debian package dataset-fashion-mnist must be
 * installed (scripts/deps.sh does); its absence fails naming the package. */
Test(data, fashion_mnist_test_set)
{
    struct oc_dataset d;
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_fashion_mnist(NULL, 0, &d, &err);
    cr_assert_eq(s, OC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 10000);
    cr_assert_eq(d.c, 1);
    cr_assert_eq(d.h, 28);
    cr_assert_eq(d.w, 28);
    cr_assert_eq(d.nclasses, 10);
    int count[10] = {0};
    for (int64_t i = 0; i < d.n; i++) {
        cr_assert(d.labels[i] >= 0 && d.labels[i] < 10);
        count[d.labels[i]]++;
    }
    for (int k = 0; k < 10; k++) cr_assert_eq(count[k], 1000, "class %d", k);
    cr_assert_eq(d.labels[0], 9, "the first test image is an ankle boot");
    float mean, std;
    cr_assert_eq(oc_data_channel_stats(&d, &mean, &std, &err), OC_OK);
    /* Published Fashion-MNIST statistics: mean ~0.286, std ~0.353. */
    cr_assert(fabsf(mean - 0.286f) < 0.01f && fabsf(std - 0.353f) < 0.01f, "%g %g", mean, std);
    oc_dataset_free(&d);
}

Test(data, fashion_mnist_missing_names_package)
{
    struct oc_dataset d = sentinel();
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_fashion_mnist(FX "no-such-dir", 1, &d, &err), OC_ERR_IO);
    expect_msg(&err, "dataset-fashion-mnist", "train-images-idx3-ubyte");
    expect_untouched(&d);
}

/* ---------------------------------------------------------------- CIFAR */

Test(data, cifar10_train_and_test)
{
    struct oc_dataset tr, te;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_cifar10(FX "cifar", 1, &tr, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(tr.n, 10);
    cr_assert_eq(tr.c, 3);
    cr_assert_eq(tr.h, 32);
    cr_assert_eq(tr.w, 32);
    cr_assert_eq(tr.nclasses, 10);
    for (int g = 0; g < 10; g++) {
        cr_assert_eq(tr.labels[g], (3 * g + 1) % 10);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 1024; p += 97)
                cr_assert_eq(tr.images[(g * 3 + c) * 1024 + p], cifar_pixel(g, c, p));
    }
    cr_assert_eq(oc_data_load_cifar10(FX "cifar", 0, &te, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(te.n, 2);
    cr_assert_eq(te.labels[1], (3 * 11 + 1) % 10);
    cr_assert_eq(te.images[2 * 1024 + 5], cifar_pixel(10, 2, 5));
    oc_dataset_free(&tr);
    oc_dataset_free(&te);

    struct oc_dataset d = sentinel();
    cr_assert_eq(oc_data_load_cifar10(FX "idx", 1, &d, &err), OC_ERR_IO);
    expect_msg(&err, "data_batch_1.bin", "cifar-10-binary.tar.gz");
    expect_untouched(&d);
}

Test(data, cifar_bad_files_name_record)
{
    struct oc_dataset d = sentinel();
    struct oc_err err = {0};
    const char *trunc[] = {FX "cifar/test_batch.bin", FX "cifar-bad/trunc.bin"};
    cr_assert_eq(oc_data_load_cifar_files(trunc, 2, &d, &err), OC_ERR_PARSE);
    expect_msg(&err, "trunc.bin", "record 2 (byte offset 6146) is truncated to 100 bytes");
    expect_untouched(&d);

    oc_err_clear(&err);
    const char *bad[] = {FX "cifar-bad/badlabel.bin"};
    cr_assert_eq(oc_data_load_cifar_files(bad, 1, &d, &err), OC_ERR_PARSE);
    expect_msg(&err, "badlabel.bin", "record 1 (byte offset 3073): label 12");
    expect_untouched(&d);

    /* Two good files concatenate. */
    const char *two[] = {FX "cifar/data_batch_5.bin", FX "cifar/test_batch.bin"};
    cr_assert_eq(oc_data_load_cifar_files(two, 2, &d, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 4);
    cr_assert_eq(d.labels[3], (3 * 11 + 1) % 10);
    oc_dataset_free(&d);
}

/* ---------------------------------------------------------------- folders */

Test(data, folder_crop_rgb)
{
    struct oc_dataset d;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_folder(FX "images", OC_FOLDER_CROP, 3, 32, 32, 0, 5, &d, &err),
                 OC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 4, "readme.txt must be skipped, sub/ walked");
    cr_assert_null(d.labels);
    int64_t hw = 32 * 32;
    /* 0: a_rgb.png, R = 6x, G = 7y, B = 3(x+y) mod 256: the crop position
     * can be read off pixel (0,0) and every pixel checked. */
    const float *a = d.images;
    int x0 = (int)lroundf(a[0] * 255.0f) / 6, y0 = (int)lroundf(a[hw] * 255.0f) / 7;
    cr_assert(x0 >= 0 && x0 <= 8 && y0 >= 0 && y0 <= 4, "crop at %d,%d", x0, y0);
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++) {
            int X = x0 + x, Y = y0 + y;
            cr_assert_eq(a[y * 32 + x], (float)(6 * X) / 255.0f);
            cr_assert_eq(a[hw + y * 32 + x], (float)(7 * Y) / 255.0f);
            cr_assert_eq(a[2 * hw + y * 32 + x], (float)((3 * (X + Y)) % 256) / 255.0f);
        }
    /* 1: b_gray.png replicated into 3 equal planes, a window of (5x + 3y) % 256. */
    const float *b = d.images + 3 * hw;
    cr_assert_eq(memcmp(b, b + hw, hw * sizeof(float)), 0);
    cr_assert_eq(memcmp(b, b + 2 * hw, hw * sizeof(float)), 0);
    int found = 0;
    for (int oy = 0; oy <= 1 && !found; oy++)
        for (int ox = 0; ox <= 2 && !found; ox++) {
            int ok = 1;
            for (int y = 0; y < 32 && ok; y++)
                for (int x = 0; x < 32 && ok; x++)
                    ok = b[y * 32 + x] == (float)((5 * (x + ox) + 3 * (y + oy)) % 256) / 255.0f;
            found = ok;
        }
    cr_assert(found, "gray crop is not a window of the image");
    /* 2: d_solid.jpg (10, 200, 120), JPEG-approximately. */
    const float *j = d.images + 6 * hw;
    cr_assert(fabsf(j[100] * 255 - 10) < 3 && fabsf(j[hw + 100] * 255 - 200) < 3 &&
                  fabsf(j[2 * hw + 100] * 255 - 120) < 3,
              "%g %g %g", j[100] * 255, j[hw + 100] * 255, j[2 * hw + 100] * 255);
    /* 3: sub/c_rgba.png (200, 100, 50, alpha 128): alpha dropped. */
    const float *c = d.images + 9 * hw;
    cr_assert_eq(c[5], 200.0f / 255.0f);
    cr_assert_eq(c[hw + 5], 100.0f / 255.0f);
    cr_assert_eq(c[2 * hw + 5], 50.0f / 255.0f);

    /* Same seed, same crops; some other seed moves the RGB crop. */
    struct oc_dataset d2;
    cr_assert_eq(oc_data_load_folder(FX "images", OC_FOLDER_CROP, 3, 32, 32, 0, 5, &d2, &err),
                 OC_OK);
    cr_assert_eq(memcmp(d.images, d2.images, (size_t)(4 * 3 * hw) * sizeof(float)), 0);
    oc_dataset_free(&d2);
    int moved = 0;
    for (uint64_t seed = 6; seed < 16 && !moved; seed++) {
        cr_assert_eq(
            oc_data_load_folder(FX "images", OC_FOLDER_CROP, 3, 32, 32, 0, seed, &d2, &err), OC_OK);
        moved = memcmp(d.images, d2.images, (size_t)(3 * hw) * sizeof(float)) != 0;
        oc_dataset_free(&d2);
    }
    cr_assert(moved, "crop position ignores the seed");
    oc_dataset_free(&d);
}

Test(data, folder_crop_gray_uses_luma)
{
    struct oc_dataset d;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_folder(FX "images", OC_FOLDER_CROP, 1, 28, 28, 0, 1, &d, &err),
                 OC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 4);
    cr_assert_eq(d.c, 1);
    float want = 0.299f * (200 / 255.0f) + 0.587f * (100 / 255.0f) + 0.114f * (50 / 255.0f);
    cr_assert_float_eq(d.images[3 * 28 * 28 + 17], want, 1e-6);
    oc_dataset_free(&d);
}

static void read_expected(double v[8][16])
{
    FILE *f = fopen(FX "images-resize/resize_expected.txt", "r");
    cr_assert_not_null(f);
    char line[4096];
    cr_assert_not_null(fgets(line, sizeof line, f)); /* comment */
    for (int r = 0; r < 8; r++)
        for (int k = 0; k < 16; k++) cr_assert_eq(fscanf(f, "%lf", &v[r][k]), 1);
    fclose(f);
}

Test(data, folder_resize_is_area_average)
{
    double want[8][16];
    read_expected(want);
    struct oc_dataset d3, d1;
    struct oc_err err = {0};
    cr_assert_eq(
        oc_data_load_folder(FX "images-resize", OC_FOLDER_RESIZE, 3, 4, 4, 0, 0, &d3, &err), OC_OK,
        "%s", err.msg);
    cr_assert_eq(
        oc_data_load_folder(FX "images-resize", OC_FOLDER_RESIZE, 1, 4, 4, 0, 0, &d1, &err), OC_OK,
        "%s", err.msg);
    cr_assert_eq(d3.n, 2);
    for (int img = 0; img < 2; img++) {
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 16; k++)
                cr_assert_float_eq(d3.images[(img * 3 + c) * 16 + k], want[img * 4 + c][k], 2e-6,
                                   "image %d channel %d pixel %d", img, c, k);
        for (int k = 0; k < 16; k++)
            cr_assert_float_eq(d1.images[img * 16 + k], want[img * 4 + 3][k], 2e-6,
                               "image %d gray pixel %d", img, k);
    }
    oc_dataset_free(&d3);
    oc_dataset_free(&d1);
}

Test(data, folder_subset_is_seeded)
{
    struct oc_dataset all, s1, s2;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_folder(FX "images", OC_FOLDER_CROP, 3, 32, 32, 0, 9, &all, &err),
                 OC_OK, "%s", err.msg);
    cr_assert_eq(oc_data_load_folder(FX "images", OC_FOLDER_CROP, 3, 32, 32, 2, 9, &s1, &err),
                 OC_OK, "%s", err.msg);
    cr_assert_eq(oc_data_load_folder(FX "images", OC_FOLDER_CROP, 3, 32, 32, 2, 9, &s2, &err),
                 OC_OK, "%s", err.msg);
    cr_assert_eq(s1.n, 2);
    int64_t isz = 3 * 32 * 32;
    cr_assert_eq(memcmp(s1.images, s2.images, (size_t)(2 * isz) * sizeof(float)), 0);
    /* Each kept image is one of the full set's (same crop), in order. */
    int prev = -1;
    for (int k = 0; k < 2; k++) {
        int match = -1;
        for (int i = 0; i < 4; i++)
            if (!memcmp(s1.images + k * isz, all.images + i * isz, (size_t)isz * sizeof(float)))
                match = i;
        cr_assert(match > prev, "subset image %d not found in order", k);
        prev = match;
    }
    oc_dataset_free(&all);
    oc_dataset_free(&s1);
    oc_dataset_free(&s2);
}

Test(data, folder_errors)
{
    struct oc_dataset d = sentinel();
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_folder(FX "images-bad", OC_FOLDER_RESIZE, 3, 32, 32, 0, 0, &d, &err),
                 OC_ERR_PARSE);
    expect_msg(&err, "broken.png", "cannot decode");
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_folder(FX "images-small", OC_FOLDER_CROP, 1, 28, 28, 0, 0, &d, &err),
                 OC_ERR_SHAPE);
    expect_msg(&err, "tiny.png", "smaller than the 28x28 crop");
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_folder(FX "images", OC_FOLDER_RESIZE, 2, 32, 32, 0, 0, &d, &err),
                 OC_ERR_SHAPE);
    expect_msg(&err, "2-channel", NULL);
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_folder(FX "nope", OC_FOLDER_RESIZE, 3, 32, 32, 0, 0, &d, &err),
                 OC_ERR_IO);
    expect_msg(&err, "nope", "cannot open");
    expect_untouched(&d);

    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_folder(FX "cifar", OC_FOLDER_RESIZE, 3, 32, 32, 0, 0, &d, &err),
                 OC_ERR_IO);
    expect_msg(&err, "no PNG or JPEG", NULL);
    expect_untouched(&d);
}

/* ---------------------------------------------------------------- noise */

Test(data, noise_statistics)
{
    struct oc_dataset g, g2, g3, u;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_noise(OC_NOISE_GAUSSIAN, 400, 3, 8, 8, 11, &g, &err), OC_OK);
    cr_assert_eq(oc_data_noise(OC_NOISE_GAUSSIAN, 400, 3, 8, 8, 11, &g2, &err), OC_OK);
    cr_assert_eq(oc_data_noise(OC_NOISE_GAUSSIAN, 400, 3, 8, 8, 12, &g3, &err), OC_OK);
    cr_assert_eq(oc_data_noise(OC_NOISE_UNIFORM, 400, 3, 8, 8, 11, &u, &err), OC_OK);
    int64_t n = 400 * 3 * 64;
    cr_assert_eq(memcmp(g.images, g2.images, (size_t)n * sizeof(float)), 0, "not deterministic");
    cr_assert_neq(memcmp(g.images, g3.images, (size_t)n * sizeof(float)), 0, "seed ignored");
    /* N(0.5, 1) clipped: P(x = 0) = P(x = 1) = Phi(-0.5) = 0.3085, mean 0.5,
     * and the interior values are uniform-ish (density ratio Phi' near 1). */
    double sum = 0, sumu = 0, sumu2 = 0;
    int64_t zeros = 0, ones = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = g.images[i];
        cr_assert(v >= 0.0f && v <= 1.0f);
        zeros += v == 0.0f;
        ones += v == 1.0f;
        sum += v;
        float w = u.images[i];
        cr_assert(w >= 0.0f && w < 1.0f);
        sumu += w;
        sumu2 += (double)w * w;
    }
    /* n = 76800: the standard error of a fraction near 0.31 is 0.0017. */
    cr_assert(fabs((double)zeros / n - 0.3085) < 0.01, "P(0) = %g", (double)zeros / n);
    cr_assert(fabs((double)ones / n - 0.3085) < 0.01, "P(1) = %g", (double)ones / n);
    cr_assert(fabs(sum / n - 0.5) < 0.005, "gaussian mean %g", sum / n);
    double mu = sumu / n, var = sumu2 / n - mu * mu;
    cr_assert(fabs(mu - 0.5) < 0.005, "uniform mean %g", mu);
    cr_assert(fabs(var - 1.0 / 12) < 0.003, "uniform variance %g", var);
    cr_assert(strstr(g.source, "gaussian"));
    oc_dataset_free(&g);
    oc_dataset_free(&g2);
    oc_dataset_free(&g3);
    oc_dataset_free(&u);
    struct oc_dataset d = sentinel();
    cr_assert_eq(oc_data_noise(OC_NOISE_UNIFORM, 0, 3, 8, 8, 1, &d, &err), OC_ERR_INVALID);
    expect_untouched(&d);
}

/* ---------------------------------------------------------------- split, stats */

/* The CIFAR fixture's image index g from its first pixel (7g mod 256). */
static int cifar_id(const float *img)
{
    return (int)lroundf(img[0] * 255.0f) / 7;
}

Test(data, split_is_seeded_permutation)
{
    struct oc_dataset ds, a, b, a2, b2;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_cifar10(FX "cifar", 1, &ds, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_data_split(&ds, 7, 42, &a, &b, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(a.n, 7);
    cr_assert_eq(b.n, 3);
    int seen[10] = {0}, prev = -1;
    for (int i = 0; i < 7; i++) {
        int g = cifar_id(a.images + i * 3072);
        cr_assert(g > prev, "first part out of original order");
        prev = g;
        seen[g]++;
        cr_assert_eq(a.labels[i], (3 * g + 1) % 10, "label travels with its image");
    }
    prev = -1;
    for (int i = 0; i < 3; i++) {
        int g = cifar_id(b.images + i * 3072);
        cr_assert(g > prev);
        prev = g;
        seen[g]++;
    }
    for (int g = 0; g < 10; g++) cr_assert_eq(seen[g], 1, "image %d in %d parts", g, seen[g]);
    cr_assert_eq(oc_data_split(&ds, 7, 42, &a2, &b2, &err), OC_OK);
    cr_assert_eq(memcmp(a.images, a2.images, (size_t)(7 * 3072) * sizeof(float)), 0);
    oc_dataset_free(&a2);
    oc_dataset_free(&b2);
    int differs = 0;
    for (uint64_t seed = 43; seed < 53 && !differs; seed++) {
        cr_assert_eq(oc_data_split(&ds, 7, seed, &a2, NULL, &err), OC_OK);
        differs = memcmp(a.images, a2.images, (size_t)(7 * 3072) * sizeof(float)) != 0;
        oc_dataset_free(&a2);
    }
    cr_assert(differs, "split ignores the seed");
    struct oc_dataset x = sentinel();
    cr_assert_eq(oc_data_split(&ds, 11, 1, &x, NULL, &err), OC_ERR_INVALID);
    expect_untouched(&x);
    oc_dataset_free(&a);
    oc_dataset_free(&b);
    oc_dataset_free(&ds);
}

Test(data, channel_stats)
{
    struct oc_dataset ds;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_cifar10(FX "cifar", 1, &ds, &err), OC_OK, "%s", err.msg);
    float mean[3], std[3];
    cr_assert_eq(oc_data_channel_stats(&ds, mean, std, &err), OC_OK);
    for (int c = 0; c < 3; c++) {
        double s = 0, ss = 0;
        int64_t n = 0;
        for (int g = 0; g < 10; g++)
            for (int p = 0; p < 1024; p++) {
                double v = cifar_pixel(g, c, p);
                s += v;
                ss += v * v;
                n++;
            }
        double m = s / n, sd = sqrt(ss / n - m * m);
        cr_assert_float_eq(mean[c], m, 1e-6, "channel %d mean", c);
        cr_assert_float_eq(std[c], sd, 1e-5, "channel %d std", c);
    }
    oc_dataset_free(&ds);
}

Test(data, conform_channels_and_size)
{
    struct oc_dataset gray, rgb, g3, c1, up;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_idx(FX "idx/tiny-images-idx3-ubyte", FX "idx/tiny-labels-idx1-ubyte",
                                  &gray, &err),
                 OC_OK);
    cr_assert_eq(oc_data_conform(&gray, 3, 6, 4, &g3, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(g3.c, 3);
    cr_assert_eq(g3.labels[4], 9);
    for (int c = 0; c < 3; c++) cr_assert_eq(g3.images[(4 * 3 + c) * 24 + 5], idx_pixel(4, 1, 1));
    /* 6x4 -> 12x8 doubles every pixel. */
    cr_assert_eq(oc_data_conform(&gray, 1, 12, 8, &up, &err), OC_OK, "%s", err.msg);
    cr_assert_float_eq(up.images[(2 * 12 + 5) * 8 + 7], idx_pixel(2, 2, 3), 1e-6);
    cr_assert_eq(oc_data_load_cifar10(FX "cifar", 0, &rgb, &err), OC_OK);
    cr_assert_eq(oc_data_conform(&rgb, 1, 32, 32, &c1, &err), OC_OK, "%s", err.msg);
    float want = 0.299f * cifar_pixel(10, 0, 9) + 0.587f * cifar_pixel(10, 1, 9) +
                 0.114f * cifar_pixel(10, 2, 9);
    cr_assert_float_eq(c1.images[9], want, 1e-6);
    /* Neither gray nor RGB: a clear error. */
    struct oc_dataset two = rgb, x = sentinel();
    two.c = 2;
    two.n = 1;
    cr_assert_eq(oc_data_conform(&two, 3, 32, 32, &x, &err), OC_ERR_SHAPE);
    expect_msg(&err, "2 channel(s)", NULL);
    expect_untouched(&x);
    oc_dataset_free(&gray);
    oc_dataset_free(&rgb);
    oc_dataset_free(&g3);
    oc_dataset_free(&c1);
    oc_dataset_free(&up);
}

Test(data, specs)
{
    struct oc_dataset d;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_load_spec("gaussian", 3, 32, 32, 20, 1, &d, &err), OC_OK, "%s", err.msg);
    cr_assert(d.n == 20 && d.c == 3 && d.h == 32);
    oc_dataset_free(&d);
    cr_assert_eq(oc_data_load_spec("idx:" FX "idx/tiny-images-idx3-ubyte.gz," FX
                                   "idx/tiny-labels-idx1-ubyte.gz",
                                   3, 32, 32, 0, 1, &d, &err),
                 OC_OK, "%s", err.msg);
    cr_assert(d.n == 5 && d.c == 3 && d.h == 32 && d.w == 32 && d.labels);
    oc_dataset_free(&d);
    cr_assert_eq(oc_data_load_spec("cifar10:" FX "cifar", 1, 28, 28, 0, 1, &d, &err), OC_OK, "%s",
                 err.msg);
    cr_assert(d.n == 2 && d.c == 1 && d.h == 28);
    oc_dataset_free(&d);
    cr_assert_eq(oc_data_load_spec("cifar-bin:" FX "cifar/data_batch_1.bin," FX
                                   "cifar/data_batch_2.bin," FX "cifar/data_batch_3.bin",
                                   3, 32, 32, 4, 1, &d, &err),
                 OC_OK, "%s", err.msg);
    cr_assert_eq(d.n, 4, "n_max subset");
    oc_dataset_free(&d);
    cr_assert_eq(oc_data_load_spec("resize:" FX "images", 1, 28, 28, 0, 1, &d, &err), OC_OK, "%s",
                 err.msg);
    cr_assert(d.n == 4 && d.c == 1);
    oc_dataset_free(&d);
    struct oc_dataset x = sentinel();
    cr_assert_eq(oc_data_load_spec("lsun", 3, 32, 32, 0, 1, &x, &err), OC_ERR_INVALID);
    expect_msg(&err, "unknown dataset spec 'lsun'", NULL);
    oc_err_clear(&err);
    cr_assert_eq(oc_data_load_spec("cifar10:", 3, 32, 32, 0, 1, &x, &err), OC_ERR_INVALID);
    expect_untouched(&x);
}

/* ---------------------------------------------------------------- batcher */

/* A dataset of n random images with distinct, nonzero pixels; labels = index. */
static struct oc_dataset synth(int64_t n, int c, int h, int w)
{
    struct oc_dataset d;
    memset(&d, 0, sizeof d);
    d.n = n;
    d.c = c;
    d.h = h;
    d.w = w;
    d.nclasses = (int)n;
    struct oc_buf b = oc_test_random(OC_F32, OC_SHAPE(n, c, h, w), 77, 0.05, 1.0);
    d.images = b.data;
    d.labels = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) d.labels[i] = (int32_t)i;
    d.source = malloc(8);
    strcpy(d.source, "synth");
    return d;
}

/* All batches of epochs 0..ne-1 concatenated (images, then labels). */
static float *run_epochs(const struct oc_dataset *d, const struct oc_batcher_opts *o, int ne,
                         int jitter, int64_t *total)
{
    struct oc_batcher *b;
    struct oc_err err = {0};
    cr_assert_eq(oc_batcher_new(d, o, &b, &err), OC_OK, "%s", err.msg);
    int64_t isz = oc_dataset_image_size(d), cap = (int64_t)ne * (d->n + 1) * (isz + 1), k = 0;
    float *all = malloc((size_t)cap * sizeof(float));
    unsigned rs = 12345;
    for (int e = 0; e < ne; e++) {
        cr_assert_eq(oc_batcher_start_epoch(b, e, &err), OC_OK);
        const float *im;
        const int32_t *lab;
        int64_t n, nb = 0;
        while (oc_batcher_next(b, &im, &lab, &n)) {
            if (jitter) { /* perturb the thread timing: not an assertion on it */
                rs = rs * 1103515245u + 12345u;
                struct timespec ts = {0, (long)(rs >> 16) % 2000000};
                nanosleep(&ts, NULL);
            }
            cr_assert(k + n * (isz + 1) <= cap);
            memcpy(all + k, im, (size_t)(n * isz) * sizeof(float));
            k += n * isz;
            for (int64_t i = 0; i < n; i++) all[k++] = lab ? (float)lab[i] : -1.0f;
            nb++;
        }
        cr_assert_eq(nb, oc_batcher_nbatches(b));
    }
    oc_batcher_free(b);
    *total = k;
    return all;
}

Test(data, batcher_plain_batches)
{
    struct oc_dataset d = synth(10, 3, 5, 6);
    struct oc_batcher_opts o = {.batch = 4};
    struct oc_batcher *b;
    struct oc_err err = {0};
    cr_assert_eq(oc_batcher_new(&d, &o, &b, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_batcher_nbatches(b), 3);
    const float *im;
    const int32_t *lab;
    int64_t n;
    cr_assert_eq(oc_batcher_next(b, &im, &lab, &n), 0, "no epoch started yet");
    cr_assert_eq(oc_batcher_start_epoch(b, 0, &err), OC_OK);
    int64_t sizes[3], seen = 0, isz = 90;
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(oc_batcher_next(b, &im, &lab, &n), 1);
        sizes[k] = n;
        cr_assert_eq(memcmp(im, d.images + seen * isz, (size_t)(n * isz) * sizeof(float)), 0);
        for (int64_t i = 0; i < n; i++) cr_assert_eq(lab[i], seen + i);
        seen += n;
    }
    cr_assert(sizes[0] == 4 && sizes[1] == 4 && sizes[2] == 2);
    cr_assert_eq(oc_batcher_next(b, &im, &lab, &n), 0);
    cr_assert_eq(oc_batcher_next(b, &im, &lab, &n), 0);
    oc_batcher_free(b);

    o.drop_last = 1;
    cr_assert_eq(oc_batcher_new(&d, &o, &b, &err), OC_OK);
    cr_assert_eq(oc_batcher_nbatches(b), 2);
    oc_batcher_free(b);
    oc_dataset_free(&d);
}

Test(data, batcher_normalizes)
{
    struct oc_dataset d = synth(6, 2, 3, 3);
    struct oc_batcher_opts o = {.batch = 6, .has_norm = 1, .mean = {0.25f, 0.5f},
                                .std = {0.5f, 2.0f}};
    struct oc_batcher *b;
    struct oc_err err = {0};
    cr_assert_eq(oc_batcher_new(&d, &o, &b, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_batcher_start_epoch(b, 0, &err), OC_OK);
    const float *im;
    const int32_t *lab;
    int64_t n;
    cr_assert(oc_batcher_next(b, &im, &lab, &n));
    for (int64_t i = 0; i < 6 * 18; i++) {
        int c = (int)(i / 9) % 2;
        cr_assert_float_eq(im[i], (d.images[i] - o.mean[c]) / o.std[c], 1e-6);
    }
    oc_batcher_free(b);
    o.std[1] = 0;
    cr_assert_eq(oc_batcher_new(&d, &o, &b, &err), OC_ERR_NUMERIC);
    oc_dataset_free(&d);
}

Test(data, batcher_shuffles_per_epoch)
{
    struct oc_dataset d = synth(37, 1, 4, 4);
    struct oc_batcher_opts o = {.batch = 8, .shuffle = 1, .seed = 3};
    int64_t total;
    float *all = run_epochs(&d, &o, 3, 0, &total);
    int64_t per = 37 * 17;
    cr_assert_eq(total, 3 * per);
    int orders_differ = 0;
    for (int e = 0; e < 3; e++) {
        int seen[37] = {0};
        int64_t k = 0, at = e * per, order_changed = 0;
        /* Walk batches: 8 images then 8 labels, the last batch 5 + 5. */
        for (int64_t first = 0; first < 37; first += 8) {
            int64_t n = 37 - first < 8 ? 37 - first : 8;
            const float *im = all + at + k;
            const float *lab = im + n * 16;
            for (int64_t i = 0; i < n; i++) {
                int l = (int)lab[i];
                cr_assert(l >= 0 && l < 37);
                seen[l]++;
                cr_assert_eq(memcmp(im + i * 16, d.images + l * 16, 16 * sizeof(float)), 0,
                             "image does not match its label");
                order_changed |= l != first + i;
            }
            k += n * 17;
        }
        for (int l = 0; l < 37; l++) cr_assert_eq(seen[l], 1, "epoch %d: %d seen %d times", e, l, seen[l]);
        cr_assert(order_changed, "epoch %d not shuffled", e);
        if (e && memcmp(all + e * per, all + (e - 1) * per, (size_t)per * sizeof(float)))
            orders_differ = 1;
    }
    cr_assert(orders_differ, "every epoch has the same order");
    free(all);
    oc_dataset_free(&d);
}

/* Every augmented image is the source shifted by (dy, dx) in [-p, p] with
 * zeros (normalized) coming in, optionally mirrored. */
Test(data, batcher_augmentation_is_crop_and_flip)
{
    int p = 2, h = 6, w = 5;
    struct oc_dataset d = synth(64, 2, h, w);
    struct oc_batcher_opts o = {.batch = 16, .seed = 9, .crop_pad = p, .flip = 1, .has_norm = 1,
                                .mean = {0.5f, 0.4f}, .std = {0.25f, 0.5f}};
    int64_t total;
    float *all = run_epochs(&d, &o, 1, 0, &total);
    int flips = 0, shifts[5][5] = {{0}};
    int64_t hw = h * w, isz = 2 * hw;
    for (int64_t i = 0; i < 64; i++) {
        int64_t bk = i / 16, j = i % 16;
        const float *im = all + bk * 16 * (isz + 1) + j * isz;
        int l = (int)all[bk * 16 * (isz + 1) + 16 * isz + j];
        const float *src = d.images + l * isz;
        int found = 0;
        for (int f = 0; f < 2 && !found; f++)
            for (int dy = -p; dy <= p && !found; dy++)
                for (int dx = -p; dx <= p && !found; dx++) {
                    int ok = 1;
                    for (int c = 0; c < 2 && ok; c++)
                        for (int y = 0; y < h && ok; y++)
                            for (int x = 0; x < w && ok; x++) {
                                int sy = y + dy, sx = (f ? w - 1 - x : x) + dx;
                                float v = sy < 0 || sy >= h || sx < 0 || sx >= w
                                              ? 0.0f
                                              : src[c * hw + sy * w + sx];
                                ok = fabsf(im[c * hw + y * w + x] - (v - o.mean[c]) / o.std[c]) <
                                     1e-5f;
                            }
                    if (ok) {
                        found = 1;
                        flips += f;
                        shifts[dy + p][dx + p]++;
                    }
                }
        cr_assert(found, "sample %lld is not a padded crop (+flip) of image %d", (long long)i, l);
    }
    cr_assert(flips > 10 && flips < 54, "flips %d of 64", flips);
    int distinct = 0;
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) distinct += shifts[a][b] > 0;
    cr_assert(distinct >= 8, "only %d distinct crop offsets", distinct);
    free(all);
    oc_dataset_free(&d);
}

Test(data, batcher_independent_of_thread_timing)
{
    struct oc_dataset d = synth(50, 3, 8, 8);
    struct oc_batcher_opts o = {.batch = 7, .seed = 21, .shuffle = 1, .crop_pad = 2, .flip = 1,
                                .has_norm = 1, .mean = {0.1f, 0.2f, 0.3f},
                                .std = {0.9f, 0.8f, 0.7f}};
    int64_t t1, t2, t3, t4;
    float *threaded = run_epochs(&d, &o, 3, 0, &t1);
    float *jittered = run_epochs(&d, &o, 3, 1, &t2);
    float *again = run_epochs(&d, &o, 3, 0, &t3);
    o.sync = 1;
    float *sync = run_epochs(&d, &o, 3, 0, &t4);
    cr_assert(t1 == t2 && t1 == t3 && t1 == t4);
    cr_assert_eq(memcmp(threaded, sync, (size_t)t1 * sizeof(float)), 0, "threaded != sync");
    cr_assert_eq(memcmp(threaded, jittered, (size_t)t1 * sizeof(float)), 0, "timing changed data");
    cr_assert_eq(memcmp(threaded, again, (size_t)t1 * sizeof(float)), 0, "runs differ");
    o.sync = 0;
    o.seed = 22;
    int64_t t5;
    float *other = run_epochs(&d, &o, 3, 0, &t5);
    cr_assert_neq(memcmp(threaded, other, (size_t)t1 * sizeof(float)), 0, "seed ignored");
    free(threaded);
    free(jittered);
    free(again);
    free(sync);
    free(other);
    oc_dataset_free(&d);
}

/* A resumed run (start_epoch_at) sees exactly the rest of the epoch, and an
 * epoch abandoned halfway does not disturb the next. */
Test(data, batcher_resume_mid_epoch)
{
    struct oc_dataset d = synth(30, 1, 4, 4);
    struct oc_batcher_opts o = {.batch = 4, .seed = 5, .shuffle = 1, .crop_pad = 1, .flip = 1};
    struct oc_batcher *full, *res;
    struct oc_err err = {0};
    cr_assert_eq(oc_batcher_new(&d, &o, &full, &err), OC_OK);
    cr_assert_eq(oc_batcher_new(&d, &o, &res, &err), OC_OK);
    const float *im, *im2;
    const int32_t *lab, *lab2;
    int64_t n, n2;
    /* Abandon epoch 1 after two batches in `res`. */
    cr_assert_eq(oc_batcher_start_epoch(res, 1, &err), OC_OK);
    cr_assert(oc_batcher_next(res, &im2, &lab2, &n2));
    cr_assert(oc_batcher_next(res, &im2, &lab2, &n2));
    cr_assert_eq(oc_batcher_start_epoch(full, 2, &err), OC_OK);
    cr_assert_eq(oc_batcher_start_epoch_at(res, 2, 3, &err), OC_OK);
    for (int k = 0; k < 3; k++) cr_assert(oc_batcher_next(full, &im, &lab, &n));
    int k = 3;
    while (oc_batcher_next(full, &im, &lab, &n)) {
        cr_assert(oc_batcher_next(res, &im2, &lab2, &n2), "resumed run ended early at %d", k);
        cr_assert_eq(n, n2);
        cr_assert_eq(memcmp(im, im2, (size_t)(n * 16) * sizeof(float)), 0, "batch %d differs", k);
        cr_assert_eq(memcmp(lab, lab2, (size_t)n * sizeof(int32_t)), 0);
        k++;
    }
    cr_assert_eq(k, 8);
    cr_assert_eq(oc_batcher_next(res, &im2, &lab2, &n2), 0);
    cr_assert_eq(oc_batcher_start_epoch_at(res, 2, 9, &err), OC_ERR_INVALID);
    oc_batcher_free(full);
    oc_batcher_free(res);
    oc_dataset_free(&d);
}

Test(data, batcher_unlabeled_and_errors)
{
    struct oc_dataset d;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_noise(OC_NOISE_UNIFORM, 5, 1, 4, 4, 1, &d, &err), OC_OK);
    struct oc_batcher_opts o = {.batch = 2};
    struct oc_batcher *b;
    cr_assert_eq(oc_batcher_new(&d, &o, &b, &err), OC_OK);
    cr_assert_eq(oc_batcher_start_epoch(b, 0, &err), OC_OK);
    const float *im;
    const int32_t *lab;
    int64_t n;
    cr_assert(oc_batcher_next(b, &im, &lab, &n));
    cr_assert_null(lab);
    oc_batcher_free(b);
    o.batch = 0;
    cr_assert_eq(oc_batcher_new(&d, &o, &b, &err), OC_ERR_INVALID);
    oc_err_clear(&err);
    o.batch = 8;
    o.drop_last = 1;
    cr_assert_eq(oc_batcher_new(&d, &o, &b, &err), OC_ERR_INVALID);
    expect_msg(&err, "fewer than one batch", NULL);
    oc_dataset_free(&d);
}
