/* test-npy.c - .npy reading and writing (ir/npy.c): fixtures written by
 * NumPy (tests/fixtures/npy/make_npy.py) read back exactly, our writer's
 * bytes equal np.save's, round trips for every dtype, and malformed or
 * truncated files rejected with messages that name the problem. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../helpers/helpers.h"

#define FIX OC_SOURCE_DIR "/tests/fixtures/npy/"

static void read_ok(const char *name, struct oc_buf *b)
{
    struct oc_err err = {0};
    enum oc_status s = oc_npy_read(name, b, &err);
    cr_assert_eq(s, OC_OK, "%s: %s", name, err.msg);
}

static void check_shape(const struct oc_buf *b, struct oc_shape want)
{
    char s1[128], s2[128];
    cr_assert(oc_shape_eq(&b->shape, &want), "shape %s, expected %s",
              oc_shape_str(&b->shape, s1, sizeof s1), oc_shape_str(&want, s2, sizeof s2));
}

/* Whole file into memory (caller frees). */
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

/* memmem is a GNU extension */
static void *find_bytes(void *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp((char *)hay + i, needle, k)) return (char *)hay + i;
    return NULL;
}

/* A fresh directory under the build tree for files a test writes. */
static char *scratch_dir(void)
{
    char *d = malloc(4096);
    cr_assert_not_null(d);
    snprintf(d, 4096, "%s/tests/npy-scratch-XXXXXX", OC_BINARY_DIR);
    cr_assert_not_null(mkdtemp(d), "mkdtemp %s: %s", d, strerror(errno));
    return d;
}

/* Number of entries in dir besides . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void rm_dir(char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4200];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (remove(p) != 0) rmdir(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

/* ---------------------------------------------------------------- fixtures */

Test(npy, reads_f4_exactly)
{
    struct oc_buf b;
    read_ok(FIX "f4_2x3.npy", &b);
    cr_assert_eq(b.dtype, OC_F32);
    check_shape(&b, OC_SHAPE(2, 3));
    const float want[6] = {-1.5f, 0.0f, 0.25f, (float)(1.0 / 3.0), (float)1e-8, (float)3.4e38};
    cr_assert_eq(memcmp(b.data, want, sizeof want), 0, "f32 values differ");
    oc_buf_free(&b);
}

Test(npy, reads_f8_exactly)
{
    struct oc_buf b;
    read_ok(FIX "f8_5.npy", &b);
    cr_assert_eq(b.dtype, OC_F64);
    check_shape(&b, OC_SHAPE(5));
    const double want[5] = {0.1, -2.5, 1e300, 5e-324, -0.0};
    cr_assert_eq(memcmp(b.data, want, sizeof want), 0, "f64 values differ");
    cr_assert(signbit(((double *)b.data)[4]), "-0.0 lost its sign");
    oc_buf_free(&b);
}

Test(npy, reads_i4_and_u1)
{
    struct oc_buf b;
    read_ok(FIX "i4_2x2x2.npy", &b);
    cr_assert_eq(b.dtype, OC_I32);
    check_shape(&b, OC_SHAPE(2, 2, 2));
    const int32_t wi[8] = {INT32_MIN, INT32_MAX, -1, 0, 1, 2, 3, 100000};
    cr_assert_eq(memcmp(b.data, wi, sizeof wi), 0, "i32 values differ");
    oc_buf_free(&b);

    read_ok(FIX "u1_4x4.npy", &b);
    cr_assert_eq(b.dtype, OC_U8);
    check_shape(&b, OC_SHAPE(4, 4));
    for (int i = 0; i < 16; i++)
        cr_assert_eq(((uint8_t *)b.data)[i], (uint8_t)(i * 17), "u8 element %d", i);
    oc_buf_free(&b);
}

Test(npy, reads_rank0_and_empty)
{
    struct oc_buf b;
    read_ok(FIX "f8_scalar.npy", &b);
    cr_assert_eq(b.dtype, OC_F64);
    cr_assert_eq(b.shape.rank, 0);
    cr_assert_eq(((double *)b.data)[0], 3.5);
    oc_buf_free(&b);

    read_ok(FIX "f4_0x3.npy", &b);
    check_shape(&b, OC_SHAPE(0, 3));
    oc_buf_free(&b);
}

Test(npy, reads_versions_2_and_3)
{
    struct oc_buf b;
    read_ok(FIX "f4_3x2_v2.npy", &b);
    check_shape(&b, OC_SHAPE(3, 2));
    for (int i = 0; i < 6; i++) cr_assert_eq(((float *)b.data)[i], 0.5f * (float)i);
    oc_buf_free(&b);

    read_ok(FIX "f4_4_v3.npy", &b);
    check_shape(&b, OC_SHAPE(4));
    for (int i = 0; i < 4; i++) cr_assert_eq(((float *)b.data)[i], (float)(i + 1));
    oc_buf_free(&b);
}

Test(npy, parse_from_memory_matches_read)
{
    size_t n;
    unsigned char *bytes = slurp(FIX "i4_2x2x2.npy", &n);
    struct oc_buf a, b;
    struct oc_err err = {0};
    cr_assert_eq(oc_npy_parse(bytes, n, "mem", &a, &err), OC_OK, "%s", err.msg);
    read_ok(FIX "i4_2x2x2.npy", &b);
    cr_assert_eq(a.dtype, b.dtype);
    check_shape(&a, b.shape);
    cr_assert_eq(memcmp(a.data, b.data, 32), 0);
    oc_buf_free(&a);
    oc_buf_free(&b);
    free(bytes);
}

/* ---------------------------------------------------------------- rejects */

struct bad_file {
    const char *file;
    const char *fragment; /* must appear in the message */
};

Test(npy, rejects_bad_fixtures_with_clear_messages)
{
    static const struct bad_file cases[] = {
        {"bad_fortran.npy", "fortran_order=True"},
        {"bad_bigendian.npy", "'>f4'"},
        {"bad_bool.npy", "'|b1'"},
        {"bad_i8.npy", "'<i8'"},
        {"bad_rank7.npy", "more than 6 dimensions"},
        {"bad_truncated.npy", "truncated"},
        {"bad_trailing.npy", "trailing bytes"},
        {"does_not_exist.npy", "cannot open"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%s", FIX, cases[i].file);
        struct oc_buf b = {0};
        struct oc_err err = {0};
        cr_assert_neq(oc_npy_read(path, &b, &err), OC_OK, "%s was accepted", cases[i].file);
        cr_assert_null(b.data, "%s: data left allocated", cases[i].file);
        cr_assert(strstr(err.msg, cases[i].fragment), "%s: message \"%s\" lacks \"%s\"",
                  cases[i].file, err.msg, cases[i].fragment);
        cr_assert(strstr(err.msg, cases[i].file), "%s: message \"%s\" does not name the file",
                  cases[i].file, err.msg);
    }
}

Test(npy, rejects_a_directory)
{
    struct oc_buf b = {0};
    struct oc_err err = {0};
    cr_assert_eq(oc_npy_read(FIX, &b, &err), OC_ERR_IO);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
}

Test(npy, truncated_message_names_sizes)
{
    struct oc_buf b;
    struct oc_err err = {0};
    cr_assert_neq(oc_npy_read(FIX "bad_truncated.npy", &b, &err), OC_OK);
    /* 2x3 f4 = 24 data bytes after a 128-byte header; 20 are there */
    cr_assert(strstr(err.msg, "24") && strstr(err.msg, "128") && strstr(err.msg, "20"),
              "sizes missing in: %s", err.msg);
}

/* Cuts a copy of a good file to `cut` bytes (0: whole) and/or replaces `find`
 * by the same-length `repl`, then expects a rejection
 * whose message contains `fragment`. */
static void expect_bad_bytes(const unsigned char *good, size_t n, size_t cut, const char *find,
                             const char *repl, const char *fragment)
{
    char *buf = malloc(n + 64);
    cr_assert_not_null(buf);
    memcpy(buf, good, n);
    size_t len = cut ? cut : n;
    if (find) {
        char *p = find_bytes(buf, len, find);
        cr_assert_not_null(p, "test bug: '%s' not in the header", find);
        cr_assert_eq(strlen(find), strlen(repl), "test bug: replacement changes the length");
        memcpy(p, repl, strlen(repl));
    }
    struct oc_buf b = {0};
    struct oc_err err = {0};
    cr_assert_neq(oc_npy_parse(buf, len, "edited.npy", &b, &err), OC_OK,
                  "accepted (expected \"%s\")", fragment);
    cr_assert_null(b.data);
    cr_assert(strstr(err.msg, fragment), "message \"%s\" lacks \"%s\"", err.msg, fragment);
    cr_assert(strstr(err.msg, "edited.npy"), "message \"%s\" does not name the source", err.msg);
    free(buf);
}

Test(npy, rejects_malformed_bytes)
{
    size_t n;
    unsigned char *good = slurp(FIX "f4_2x3.npy", &n);
    expect_bad_bytes(good, n, 0, "NUMPY", "NUMPZ", "bad magic");
    expect_bad_bytes(good, n, 5, NULL, NULL, "bad magic");
    expect_bad_bytes(good, n, 9, NULL, NULL, "truncated .npy preamble");
    expect_bad_bytes(good, n, 40, NULL, NULL, "header claims");
    expect_bad_bytes(good, n, 0, "'descr'", "'descx'", "unexpected key 'descx'");
    expect_bad_bytes(good, n, 0, "'shape': (2, 3)", "'shape': [2, 3]", "not a tuple");
    expect_bad_bytes(good, n, 0, "'shape': (2, 3)", "'shape': (2,,3)", "bad dimension");
    expect_bad_bytes(good, n, 0, "'shape': (2, 3)", "'shape': (2 x3)", "malformed 'shape'");
    expect_bad_bytes(good, n, 0, "'shape': (2, 3)", "'shape': (3, 3)", "truncated");
    expect_bad_bytes(good, n, 0, "'shape': (2, 3)", "'shape': (2, 2)", "trailing bytes");
    expect_bad_bytes(good, n, 0, "'shape': (2, 3)", "'shape': ()    ", "trailing bytes");
    expect_bad_bytes(good, n, 0, "'<f4'", "'<u1'", "'<u1'");
    expect_bad_bytes(good, n, 0, "'<f4'", "'<f2'", "unsupported dtype descr '<f2'");
    expect_bad_bytes(good, n, 0, "False", "Fals ", "True or False");
    expect_bad_bytes(good, n, 0, "}", "]", "expected a key");
    expect_bad_bytes(good, n, 0, "(2, 3), }", "(2, 3)  ]", "expected ',' or '}'");
    expect_bad_bytes(good, n, 0, "'fortran_order': False, ", "'descr': '<f4',         ",
                     "'descr' given twice");
    expect_bad_bytes(good, n, 0, "'fortran_order': False, ", "                        ",
                     "lacks 'fortran_order'");
    /* 3 * (2^62)^2 elements: the count overflows */
    size_t big_n;
    unsigned char *big = slurp(FIX "f4_2x3.npy", &big_n);
    const char *shape = "'shape': (2, 3), }";
    char *p = find_bytes(big, big_n, shape);
    cr_assert_not_null(p);
    const char *huge = "'shape': (4611686018427387904, 4611686018427387904, 3), }";
    size_t room = (size_t)((char *)big + 10 + 118 - p); /* up to the '\n' */
    cr_assert(strlen(huge) < room);
    memset(p, ' ', room - 1);
    memcpy(p, huge, strlen(huge));
    struct oc_buf b = {0};
    struct oc_err err = {0};
    cr_assert_neq(oc_npy_parse(big, big_n, "huge.npy", &b, &err), OC_OK);
    cr_assert(strstr(err.msg, "overflows"), "%s", err.msg);
    /* a dimension that does not fit in 64 bits */
    memset(p, ' ', room - 1);
    const char *wide = "'shape': (99999999999999999999,), }";
    memcpy(p, wide, strlen(wide));
    oc_err_clear(&err);
    cr_assert_neq(oc_npy_parse(big, big_n, "huge.npy", &b, &err), OC_OK);
    cr_assert(strstr(err.msg, "overflows"), "%s", err.msg);
    /* version 4.0 */
    big[6] = 4;
    oc_err_clear(&err);
    cr_assert_neq(oc_npy_parse(big, big_n, "huge.npy", &b, &err), OC_OK);
    cr_assert(strstr(err.msg, "version 4.0"), "%s", err.msg);
    free(big);
    free(good);
}

/* ---------------------------------------------------------------- writing */

/* Our writer produces exactly np.save's bytes for every v1.0 fixture. */
Test(npy, writer_matches_numpy_bytes)
{
    static const char *files[] = {"f4_2x3.npy",    "f8_5.npy",   "i4_2x2x2.npy",
                                  "u1_4x4.npy",    "f8_scalar.npy", "f4_0x3.npy"};
    char *dir = scratch_dir();
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char src[4096], dst[4200];
        snprintf(src, sizeof src, "%s%s", FIX, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        struct oc_buf b;
        read_ok(src, &b);
        struct oc_err err = {0};
        cr_assert_eq(oc_npy_write(dst, &b, &err), OC_OK, "%s", err.msg);
        size_t n1, n2;
        unsigned char *want = slurp(src, &n1), *got = slurp(dst, &n2);
        cr_assert_eq(n2, n1, "%s: %zu bytes written, numpy wrote %zu", files[i], n2, n1);
        cr_assert_eq(memcmp(got, want, n1), 0, "%s: bytes differ from np.save", files[i]);
        free(want);
        free(got);
        oc_buf_free(&b);
    }
    rm_dir(dir);
}

Test(npy, round_trip_every_dtype)
{
    char *dir = scratch_dir();
    for (int dt = 0; dt < OC_DTYPE_COUNT; dt++) {
        struct oc_shape shapes[] = {OC_SCALAR, OC_SHAPE(7), OC_SHAPE(3, 0, 2), OC_SHAPE(2, 3, 4),
                                    OC_SHAPE(1, 2, 1, 2, 1, 3)};
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            /* (negative doubles do not convert to u8) */
            double lo = dt == OC_U8 ? 0 : -50;
            struct oc_buf b = oc_test_random((enum oc_dtype)dt, shapes[k], 100 + k, lo, 200);
            char path[4200];
            snprintf(path, sizeof path, "%s/t%d_%zu.npy", dir, dt, k);
            struct oc_err err = {0};
            cr_assert_eq(oc_npy_write(path, &b, &err), OC_OK, "%s", err.msg);
            /* the data starts at a multiple of 64, as numpy aligns it */
            size_t n;
            unsigned char *bytes = slurp(path, &n);
            size_t data_off = 10 + (size_t)(bytes[8] | bytes[9] << 8);
            cr_assert_eq(data_off % 64, 0, "data at offset %zu", data_off);
            cr_assert_eq(n, data_off + (size_t)oc_shape_numel(&b.shape) * oc_dtype_size(b.dtype));
            free(bytes);
            struct oc_buf c;
            read_ok(path, &c);
            cr_assert_eq(c.dtype, b.dtype);
            check_shape(&c, b.shape);
            cr_assert_eq(memcmp(c.data, b.data,
                                (size_t)oc_shape_numel(&b.shape) * oc_dtype_size(b.dtype)),
                         0, "dtype %s shape %zu: values differ", oc_dtype_name(b.dtype), k);
            oc_buf_free(&b);
            oc_buf_free(&c);
        }
    }
    cr_assert_eq(count_entries(dir), 5 * OC_DTYPE_COUNT, "unexpected extra files (temp left?)");
    rm_dir(dir);
}

Test(npy, overwrite_replaces_atomically)
{
    char *dir = scratch_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/x.npy", dir);
    struct oc_buf a = oc_test_random(OC_F32, OC_SHAPE(100), 1, 0, 1);
    struct oc_buf b = oc_test_random(OC_U8, OC_SHAPE(3), 2, 0, 255);
    struct oc_err err = {0};
    cr_assert_eq(oc_npy_write(path, &a, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_npy_write(path, &b, &err), OC_OK, "%s", err.msg);
    struct oc_buf c;
    read_ok(path, &c);
    cr_assert_eq(c.dtype, OC_U8);
    check_shape(&c, OC_SHAPE(3));
    cr_assert_eq(memcmp(c.data, b.data, 3), 0);
    cr_assert_eq(count_entries(dir), 1);
    oc_buf_free(&a);
    oc_buf_free(&b);
    oc_buf_free(&c);
    rm_dir(dir);
}

Test(npy, failed_write_leaves_nothing)
{
    char *dir = scratch_dir();
    struct oc_buf b = oc_test_random(OC_F64, OC_SHAPE(4), 3, 0, 1);
    struct oc_err err = {0};
    /* rename onto a non-empty directory fails after the data was written */
    char target[4200], inner[4300];
    snprintf(target, sizeof target, "%s/sub", dir);
    cr_assert_eq(mkdir(target, 0777), 0);
    snprintf(inner, sizeof inner, "%s/keep", target);
    FILE *f = fopen(inner, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_neq(oc_npy_write(target, &b, &err), OC_OK, "rename onto a directory succeeded");
    cr_assert(strstr(err.msg, target), "message does not name the path: %s", err.msg);
    cr_assert(strstr(err.msg, "rename"), "message does not name the step: %s", err.msg);
    cr_assert_eq(count_entries(dir), 1, "a temporary file was left behind");
    cr_assert_eq(count_entries(target), 1);
    /* a missing directory: nothing can be created */
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.npy", dir);
    oc_err_clear(&err);
    cr_assert_eq(oc_npy_write(missing, &b, &err), OC_ERR_IO);
    cr_assert(strstr(err.msg, "x.npy") && strstr(err.msg, "No such file"), "%s", err.msg);
    cr_assert_eq(count_entries(dir), 1);
    remove(inner);
    oc_buf_free(&b);
    rm_dir(dir);
}

Test(npy, write_rejects_bad_buffers)
{
    char *dir = scratch_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    struct oc_buf b = {.dtype = OC_F32, .shape = OC_SHAPE(3), .data = NULL};
    struct oc_err err = {0};
    cr_assert_eq(oc_npy_write(path, &b, &err), OC_ERR_INVALID);
    cr_assert(strstr(err.msg, "no data"), "%s", err.msg);
    cr_assert_eq(count_entries(dir), 0);
    rm_dir(dir);
}
