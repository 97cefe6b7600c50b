/* test-safetensors.c - the safetensors reader and writer: a file written by
 * Python (tests/fixtures/safetensors/make_fixtures.py), round trips through
 * our writer, every kind of malformed header rejected with a message that
 * names the source and the offset, and atomic writes that never leave a
 * temp file or damage the previous checkpoint. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../runtime/safetensors.h"
#include "../helpers/helpers.h"

#define FIXTURE OC_SOURCE_DIR "/tests/fixtures/safetensors/ref.safetensors"

/* A fresh temp dir per test (Criterion runs each test in its own process). */
static char tmpdir[256];
static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/oc-st-XXXXXX", base && *base ? base : "/tmp");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_rf(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void drop_tmpdir(void)
{
    rm_rf(tmpdir);
}

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    cr_assert_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* ---------------------------------------------------------------- interop */

Test(safetensors, reads_python_fixture)
{
    struct oc_safetensors st;
    struct oc_err err = {0};
    cr_assert_eq(oc_st_read(FIXTURE, &st, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(st.ntensors, 7);

    const struct oc_st_tensor *w = oc_st_find(&st, "weight");
    cr_assert_not_null(w);
    cr_assert_eq(w->dtype, OC_ST_F32);
    cr_assert_eq(w->rank, 2);
    cr_assert_eq(w->shape[0], 2);
    cr_assert_eq(w->shape[1], 3);
    cr_assert_eq(w->nbytes, 24);
    for (int i = 0; i < 6; i++) {
        float v;
        memcpy(&v, (const char *)w->data + 4 * i, 4);
        cr_assert_eq(v, i * 0.5f - 1.0f);
    }
    const struct oc_st_tensor *b = oc_st_find(&st, "bias");
    cr_assert_not_null(b);
    cr_assert_eq(b->dtype, OC_ST_F64);
    double bv[3];
    memcpy(bv, b->data, sizeof bv);
    cr_assert_eq(bv[0], 0.1);
    cr_assert_eq(bv[1], -2.5);
    cr_assert_eq(bv[2], 1e300);
    const struct oc_st_tensor *s = oc_st_find(&st, "step");
    cr_assert_not_null(s);
    cr_assert_eq(s->dtype, OC_ST_I64);
    cr_assert_eq(s->rank, 0);
    int64_t step;
    memcpy(&step, s->data, 8);
    cr_assert_eq(step, INT64_C(123456789012));
    const struct oc_st_tensor *l = oc_st_find(&st, "labels");
    cr_assert_not_null(l);
    int32_t lv[4];
    memcpy(lv, l->data, sizeof lv);
    cr_assert_eq(lv[0], -1);
    cr_assert_eq(lv[2], 7);
    cr_assert_eq(lv[3], 2147483647);
    const struct oc_st_tensor *m = oc_st_find(&st, "mask");
    cr_assert_not_null(m);
    cr_assert_eq(m->dtype, OC_ST_U8);
    cr_assert_eq(((const unsigned char *)m->data)[2], 255);
    const struct oc_st_tensor *e = oc_st_find(&st, "empty");
    cr_assert_not_null(e);
    cr_assert_eq(e->nbytes, 0);
    cr_assert_eq(e->shape[0], 0);
    cr_assert_eq(e->shape[1], 4);
    /* "caf\u00e9.w" in the JSON: the name is UTF-8. */
    const struct oc_st_tensor *c = oc_st_find(&st, "caf\xc3\xa9.w");
    cr_assert_not_null(c, "\\u escape in a tensor name not decoded");
    float cv;
    memcpy(&cv, c->data, 4);
    cr_assert_eq(cv, 42.0f);
    cr_assert_null(oc_st_find(&st, "nope"));

    cr_assert_eq(st.nmeta, 3);
    cr_assert_str_eq(oc_st_meta(&st, "format"), "pt");
    cr_assert_str_eq(oc_st_meta(&st, "note"), "line1\nline2 \xe2\x9c\x93");
    cr_assert_str_eq(oc_st_meta(&st, "quote"), "say \"hi\"");
    cr_assert_null(oc_st_meta(&st, "absent"));
    /* The writer aligned every tensor to its item size. */
    for (int i = 0; i < st.ntensors; i++)
        cr_assert_eq((uintptr_t)st.tensors[i].data % oc_st_dtype_size(st.tensors[i].dtype), 0,
                     "%s misaligned", st.tensors[i].name);
    oc_st_free(&st);
}

/* Our writer lays the file out as the Python writer (and the reference
 * implementation) does: the same data section, byte for byte. */
Test(safetensors, rewrite_of_fixture_matches_layout, .init = make_tmpdir, .fini = drop_tmpdir)
{
    struct oc_safetensors st;
    struct oc_err err = {0};
    cr_assert_eq(oc_st_read(FIXTURE, &st, &err), OC_OK, "%s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/copy.safetensors", tmpdir);
    cr_assert_eq(oc_st_write(path, st.tensors, st.ntensors, st.meta, st.nmeta, &err), OC_OK, "%s",
                 err.msg);
    size_t na, nb;
    unsigned char *a = slurp(FIXTURE, &na), *b = slurp(path, &nb);
    uint64_t ha = 0, hb = 0;
    for (int i = 7; i >= 0; i--) ha = ha << 8 | a[i], hb = hb << 8 | b[i];
    cr_assert_eq((8 + hb) % 8, 0, "header not padded to 8 bytes");
    cr_assert_eq(na - 8 - ha, nb - 8 - hb, "data sections differ in size");
    cr_assert_eq(memcmp(a + 8 + ha, b + 8 + hb, na - 8 - ha), 0, "data sections differ");
    /* Keys sorted, __metadata__ first. */
    const char *hdr = (const char *)b + 8;
    const char *pm = strstr(hdr, "\"__metadata__\""), *pb = strstr(hdr, "\"bias\""),
               *pw = strstr(hdr, "\"weight\"");
    cr_assert(pm && pb && pw && pm < pb && pb < pw);
    free(a);
    free(b);
    struct oc_safetensors st2;
    cr_assert_eq(oc_st_read(path, &st2, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(st2.ntensors, st.ntensors);
    for (int i = 0; i < st.ntensors; i++) {
        const struct oc_st_tensor *x = &st.tensors[i], *y = oc_st_find(&st2, x->name);
        cr_assert_not_null(y, "%s lost", x->name);
        cr_assert_eq(x->dtype, y->dtype);
        cr_assert_eq(x->rank, y->rank);
        cr_assert_eq(x->nbytes, y->nbytes);
        cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0);
    }
    cr_assert_str_eq(oc_st_meta(&st2, "note"), oc_st_meta(&st, "note"));
    oc_st_free(&st2);
    oc_st_free(&st);
    cr_assert_eq(count_tmp_files(tmpdir), 0);
}

/* ---------------------------------------------------------------- round trip */

Test(safetensors, round_trip_from_bufs, .init = make_tmpdir, .fini = drop_tmpdir)
{
    struct oc_buf w = oc_test_random(OC_F32, OC_SHAPE(3, 4, 2), 1, -3, 3);
    struct oc_buf d = oc_test_random(OC_F64, OC_SHAPE(5), 2, -1, 1);
    struct oc_buf i = oc_test_random(OC_I32, OC_SHAPE(2, 2, 2, 1, 1, 3), 3, -100, 100);
    struct oc_buf u = oc_test_random(OC_U8, OC_SCALAR, 4, 0, 255);
    struct oc_st_tensor t[5] = {
        oc_st_from_buf("layer1.conv.weight", &w), oc_st_from_buf("bn.running_var", &d),
        oc_st_from_buf("idx", &i), oc_st_from_buf("flag", &u)};
    int64_t big = INT64_C(-9000000000000);
    t[4] = (struct oc_st_tensor){.name = "step", .dtype = OC_ST_I64, .rank = 1, .shape = {1},
                                 .data = &big, .nbytes = 8};
    struct oc_st_kv meta[] = {{"z_last", "1"}, {"epoch", "7"}, {"ctl", "tab\there\x01"}};
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", tmpdir);
    struct oc_err err = {0};
    cr_assert_eq(oc_st_write(path, t, 5, meta, 3, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(count_tmp_files(tmpdir), 0, "temp file left behind");

    struct oc_safetensors st;
    cr_assert_eq(oc_st_read(path, &st, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(st.ntensors, 5);
    const struct oc_buf *bufs[4] = {&w, &d, &i, &u};
    for (int k = 0; k < 4; k++) {
        const struct oc_st_tensor *x = oc_st_find(&st, t[k].name);
        cr_assert_not_null(x, "%s", t[k].name);
        struct oc_buf back;
        cr_assert_eq(oc_st_to_buf(x, &back, &err), OC_OK, "%s", err.msg);
        cr_assert(oc_shape_eq(&back.shape, &bufs[k]->shape), "%s: shape", t[k].name);
        cr_assert_eq(back.dtype, bufs[k]->dtype);
        cr_assert(oc_test_allclose(t[k].name, &back, bufs[k], 0, 0));
        oc_buf_free(&back);
    }
    const struct oc_st_tensor *s = oc_st_find(&st, "step");
    int64_t got;
    memcpy(&got, s->data, 8);
    cr_assert_eq(got, big);
    struct oc_buf nob;
    struct oc_err e2 = {0};
    cr_assert_eq(oc_st_to_buf(s, &nob, &e2), OC_ERR_DTYPE);
    cr_assert(strstr(e2.msg, "I64"), "%s", e2.msg);
    cr_assert_str_eq(oc_st_meta(&st, "epoch"), "7");
    cr_assert_str_eq(oc_st_meta(&st, "ctl"), "tab\there\x01");
    cr_assert_str_eq(st.meta[0].key, "ctl"); /* sorted */
    oc_st_free(&st);

    /* Overwriting an existing file is atomic too and leaves no temp file. */
    cr_assert_eq(oc_st_write(path, t, 2, NULL, 0, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_st_read(path, &st, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(st.ntensors, 2);
    cr_assert_eq(st.nmeta, 0);
    oc_st_free(&st);
    cr_assert_eq(count_tmp_files(tmpdir), 0);
    oc_buf_free(&w);
    oc_buf_free(&d);
    oc_buf_free(&i);
    oc_buf_free(&u);
}

Test(safetensors, empty_file_has_no_tensors, .init = make_tmpdir, .fini = drop_tmpdir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/empty.safetensors", tmpdir);
    struct oc_err err = {0};
    cr_assert_eq(oc_st_write(path, NULL, 0, NULL, 0, &err), OC_OK, "%s", err.msg);
    struct oc_safetensors st;
    cr_assert_eq(oc_st_read(path, &st, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(st.ntensors, 0);
    cr_assert_eq(st.data_size, 0);
    oc_st_free(&st);
}

/* ---------------------------------------------------------------- malformed */

/* Parses 8-byte length + header + `data` zero bytes; expects failure with a
 * message holding `want` and the source name. */
static void expect_bad_len(uint64_t declared, const char *header, size_t data, const char *want)
{
    size_t hl = strlen(header), n = 8 + hl + data;
    unsigned char *b = calloc(n, 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(declared >> (8 * i));
    memcpy(b + 8, header, hl);
    struct oc_safetensors st;
    struct oc_err err = {0};
    enum oc_status s = oc_st_parse(b, n, "bad.safetensors", &st, &err);
    free(b);
    cr_assert_neq(s, OC_OK, "accepted: %s", header);
    cr_assert_eq(st.ntensors, 0);
    cr_assert(strstr(err.msg, "bad.safetensors"), "message does not name the source: %s", err.msg);
    cr_assert(strstr(err.msg, want), "for %s\n  expected \"%s\" in: %s", header, want, err.msg);
    oc_st_free(&st);
}

static void expect_bad(const char *header, size_t data, const char *want)
{
    expect_bad_len(strlen(header), header, data, want);
}

#define T1 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"

Test(safetensors, accepts_minimal_header)
{
    size_t hl = strlen(T1), n = 8 + hl + 8;
    unsigned char *b = calloc(n, 1);
    b[0] = (unsigned char)hl;
    memcpy(b + 8, T1, hl);
    struct oc_safetensors st;
    struct oc_err err = {0};
    cr_assert_eq(oc_st_parse(b, n, "ok", &st, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(st.ntensors, 1);
    oc_st_free(&st);
    free(b);
}

Test(safetensors, rejects_bad_lengths)
{
    struct oc_safetensors st;
    struct oc_err err = {0};
    unsigned char tiny[5] = {1, 0, 0, 0, 0};
    cr_assert_neq(oc_st_parse(tiny, 5, "bad.safetensors", &st, &err), OC_OK);
    cr_assert(strstr(err.msg, "too short"), "%s", err.msg);
    expect_bad_len(1000, T1, 8, "runs past the end");
    expect_bad_len(0, T1, 8, "header length is 0");
    expect_bad_len(UINT64_C(1) << 40, T1, 8, "limit");
    /* A length that cuts the JSON short. */
    expect_bad_len(20, T1, 8, "header byte");
}

Test(safetensors, rejects_bad_json)
{
    expect_bad("[1,2]", 0, "must be a JSON object");
    expect_bad(" {}", 0, "must be a JSON object");
    expect_bad("{\"a\" {}}", 0, "expected ':'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8,
               "end of the header");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}x", 8,
               "unexpected bytes after");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8,
               "expected a string");
    expect_bad("{\"a:{}}", 0, "unterminated string");
    expect_bad("{\"a\\q\":{}}", 0, "bad escape");
    expect_bad("{\"a\\ud800\":{}}", 0, "surrogate");
    expect_bad("{\"a\xff\":{}}", 0, "invalid UTF-8");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
               "non-negative integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8,
               "must be an integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8,
               "leading zero");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}",
               8, "too large");
    expect_bad("{\"__metadata__\":{\"k\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "values must be strings");
    expect_bad("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate key");
}

Test(safetensors, rejects_bad_tensor_entries)
{
    /* header byte offsets are reported, pointing at the tensor's key */
    expect_bad("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "unknown dtype \"F33\"");
    expect_bad("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
               "dtype \"F16\" is not supported");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8,
               "beyond the 8-byte data buffer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
               "end before begin");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
               "need 12");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
               "rank above 6");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
               16, "duplicate tensor name");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "missing \"shape\"");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8,
               "unexpected key \"x\"");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "expected ','");
    expect_bad("{\"a\":[1]}", 8, "expected '{'");
    expect_bad("{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "empty tensor name");
    /* the offset in the message points into the header */
    expect_bad("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "header byte 14 (file offset 22)");
}

Test(safetensors, read_names_file_of_truncated_checkpoint, .init = make_tmpdir,
     .fini = drop_tmpdir)
{
    size_t n;
    unsigned char *b = slurp(FIXTURE, &n);
    char path[512];
    snprintf(path, sizeof path, "%s/trunc.safetensors", tmpdir);
    spit(path, b, n - 10); /* the last tensor now runs past the buffer */
    struct oc_safetensors st;
    struct oc_err err = {0};
    cr_assert_neq(oc_st_read(path, &st, &err), OC_OK);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "beyond"), "%s", err.msg);
    oc_err_clear(&err);
    spit(path, b, 100); /* the header itself is cut */
    cr_assert_neq(oc_st_read(path, &st, &err), OC_OK);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "runs past the end"), "%s", err.msg);
    oc_err_clear(&err);
    snprintf(path, sizeof path, "%s/missing.safetensors", tmpdir);
    cr_assert_eq(oc_st_read(path, &st, &err), OC_ERR_IO);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    free(b);
}

/* ---------------------------------------------------------------- writer failures */

Test(safetensors, writer_rejects_bad_input)
{
    float x[2] = {1, 2};
    struct oc_st_tensor t[2] = {
        {.name = "a", .dtype = OC_ST_F32, .rank = 1, .shape = {2}, .data = x, .nbytes = 8},
        {.name = "a", .dtype = OC_ST_F32, .rank = 1, .shape = {2}, .data = x, .nbytes = 8}};
    struct oc_err err = {0};
    cr_assert_neq(oc_st_write("/nonexistent-dir-oc/x.safetensors", t, 2, NULL, 0, &err), OC_OK);
    cr_assert(strstr(err.msg, "duplicate tensor name"), "%s", err.msg);
    oc_err_clear(&err);
    t[1].name = "b";
    t[1].nbytes = 4;
    cr_assert_neq(oc_st_write("/nonexistent-dir-oc/x.safetensors", t, 2, NULL, 0, &err), OC_OK);
    cr_assert(strstr(err.msg, "nbytes 4"), "%s", err.msg);
    oc_err_clear(&err);
    t[1].nbytes = 8;
    t[1].rank = 7;
    cr_assert_neq(oc_st_write("/nonexistent-dir-oc/x.safetensors", t, 2, NULL, 0, &err), OC_OK);
    cr_assert(strstr(err.msg, "rank 7"), "%s", err.msg);
    oc_err_clear(&err);
    t[1].rank = 1;
    t[1].name = "__metadata__";
    cr_assert_neq(oc_st_write("/nonexistent-dir-oc/x.safetensors", t, 2, NULL, 0, &err), OC_OK);
    cr_assert(strstr(err.msg, "reserved"), "%s", err.msg);
}

Test(safetensors, failed_write_keeps_old_file, .init = make_tmpdir, .fini = drop_tmpdir)
{
    float x[3] = {1, 2, 3}, y[3] = {7, 8, 9};
    struct oc_st_tensor t = {.name = "w", .dtype = OC_ST_F32, .rank = 1, .shape = {3}, .data = x,
                             .nbytes = 12};
    struct oc_err err = {0};

    /* Into a folder that does not exist: an error naming the path, no file. */
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/dir/ckpt.safetensors", tmpdir);
    cr_assert_eq(oc_st_write(path, &t, 1, NULL, 0, &err), OC_ERR_IO);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    cr_assert_eq(access(path, F_OK), -1);

    /* An existing checkpoint, then a write whose temp file cannot be
     * created (something else sits at the temp path): the old file stays. */
    snprintf(path, sizeof path, "%s/ckpt.safetensors", tmpdir);
    oc_err_clear(&err);
    cr_assert_eq(oc_st_write(path, &t, 1, NULL, 0, &err), OC_OK, "%s", err.msg);
    size_t n0;
    unsigned char *before = slurp(path, &n0);
    char blocker[600];
    snprintf(blocker, sizeof blocker, "%s.tmp.%ld", path, (long)getpid());
    cr_assert_eq(mkdir(blocker, 0755), 0);
    t.data = y;
    cr_assert_eq(oc_st_write(path, &t, 1, NULL, 0, &err), OC_ERR_IO);
    cr_assert(strstr(err.msg, "temporary"), "%s", err.msg);
    size_t n1;
    unsigned char *after = slurp(path, &n1);
    cr_assert_eq(n0, n1);
    cr_assert_eq(memcmp(before, after, n0), 0, "old checkpoint damaged");
    rmdir(blocker);
    free(after);

    /* A rename that fails (the target is a non-empty directory): error, the
     * temp file removed. */
    char dpath[600];
    snprintf(dpath, sizeof dpath, "%s/adir", tmpdir);
    cr_assert_eq(mkdir(dpath, 0755), 0);
    char inner[700];
    snprintf(inner, sizeof inner, "%s/keep", dpath);
    spit(inner, "x", 1);
    oc_err_clear(&err);
    cr_assert_eq(oc_st_write(dpath, &t, 1, NULL, 0, &err), OC_ERR_IO);
    cr_assert(strstr(err.msg, "rename"), "%s", err.msg);
    cr_assert_eq(count_tmp_files(tmpdir), 0, "temp file left behind");

    /* And the old checkpoint still reads with the old values. */
    struct oc_safetensors st;
    oc_err_clear(&err);
    cr_assert_eq(oc_st_read(path, &st, &err), OC_OK, "%s", err.msg);
    float v;
    memcpy(&v, (const char *)oc_st_find(&st, "w")->data + 8, 4);
    cr_assert_eq(v, 3.0f);
    oc_st_free(&st);
    free(before);
}
