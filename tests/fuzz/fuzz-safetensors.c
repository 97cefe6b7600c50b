/* fuzz-safetensors.c - fuzz target for the safetensors reader
 * (runtime/safetensors.c, oc_st_parse): header length, JSON, dtypes, shapes,
 * data offsets, overlapping ranges, metadata.
 *
 * Input: the bytes of a .safetensors file. An accepted file must hold what
 * the header promises: every tensor's bytes are read (ASan sees a range past
 * the buffer), sizes agree with shapes, ranges do not overlap, names are
 * unique and found by oc_st_find. It is then written back with oc_st_write
 * and read again, and must come back equal: what the reader accepts the
 * writer must be able to reproduce. */
#include "fuzz-common.h"

#include "../../runtime/safetensors.h"

static int fuzz_st_cmp_range(const void *a, const void *b)
{
    const struct oc_st_tensor *x = *(const struct oc_st_tensor *const *)a;
    const struct oc_st_tensor *y = *(const struct oc_st_tensor *const *)b;
    const char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

static void fuzz_st_check(const struct oc_safetensors *st, size_t size)
{
    OC_FUZZ_CHECK(st->ntensors >= 0 && st->nmeta >= 0, "negative counts");
    OC_FUZZ_CHECK(st->data_size <= size, "data buffer larger than the file");
    const unsigned char *base = st->data;
    unsigned sum = 0;
    for (int i = 0; i < st->ntensors; i++) {
        const struct oc_st_tensor *t = &st->tensors[i];
        OC_FUZZ_CHECK(t->name && t->name[0], "tensor %d has no name", i);
        OC_FUZZ_CHECK((unsigned)t->dtype < OC_ST_DTYPE_COUNT, "tensor %d: dtype %d", i,
                      (int)t->dtype);
        OC_FUZZ_CHECK(t->rank >= 0 && t->rank <= OC_MAX_RANK, "tensor %d: rank %d", i, t->rank);
        /* numel, saturated at size + 1 (nbytes fits the file, so a true
         * product never exceeds size) */
        uint64_t ne = 1;
        int zero = 0;
        for (int k = 0; k < t->rank; k++) {
            OC_FUZZ_CHECK(t->shape[k] >= 0, "tensor %d: negative dim", i);
            uint64_t d = (uint64_t)t->shape[k];
            if (d == 0) zero = 1;
            else ne = ne > size || d > size ? size + 1 : ne * d;
        }
        if (zero) ne = 0;
        OC_FUZZ_CHECK(ne <= size && ne * oc_st_dtype_size(t->dtype) == t->nbytes,
                      "tensor \"%s\": %zu bytes for its shape", t->name, t->nbytes);
        const unsigned char *p = t->data;
        OC_FUZZ_CHECK(t->nbytes == 0 || (p >= base && p + t->nbytes <= base + st->data_size),
                      "tensor \"%s\" outside the data buffer", t->name);
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        if (i > 0)
            OC_FUZZ_CHECK(strcmp(st->tensors[i - 1].name, t->name) < 0,
                          "names not sorted and unique: \"%s\", \"%s\"", st->tensors[i - 1].name,
                          t->name);
        OC_FUZZ_CHECK(oc_st_find(st, t->name) == t, "oc_st_find(\"%s\") misses it", t->name);
        if (t->dtype != OC_ST_I64) {
            struct oc_buf b;
            struct oc_err err = {0};
            OC_FUZZ_CHECK(oc_st_to_buf(t, &b, &err) == OC_OK, "to_buf: %s", err.msg);
            OC_FUZZ_CHECK(!t->nbytes || !memcmp(b.data, t->data, t->nbytes), "to_buf differs");
            oc_buf_free(&b);
        }
    }
    (void)sum;
    for (int i = 0; i < st->nmeta; i++) {
        OC_FUZZ_CHECK(st->meta[i].key && st->meta[i].value, "metadata %d incomplete", i);
        if (i > 0)
            OC_FUZZ_CHECK(strcmp(st->meta[i - 1].key, st->meta[i].key) < 0,
                          "metadata keys not sorted and unique");
        OC_FUZZ_CHECK(oc_st_meta(st, st->meta[i].key) == st->meta[i].value,
                      "oc_st_meta(\"%s\") misses it", st->meta[i].key);
    }
    /* No two non-empty tensors share a byte. */
    const struct oc_st_tensor **byoff = malloc((size_t)st->ntensors * sizeof *byoff + 1);
    OC_FUZZ_CHECK(byoff != NULL, "out of memory");
    int n = 0;
    for (int i = 0; i < st->ntensors; i++)
        if (st->tensors[i].nbytes) byoff[n++] = &st->tensors[i];
    qsort(byoff, (size_t)n, sizeof *byoff, fuzz_st_cmp_range);
    for (int i = 1; i < n; i++) {
        const char *prev_end = (const char *)byoff[i - 1]->data + byoff[i - 1]->nbytes;
        OC_FUZZ_CHECK((const char *)byoff[i]->data >= prev_end, "tensors \"%s\" and \"%s\" overlap",
                      byoff[i - 1]->name, byoff[i]->name);
    }
    free(byoff);
}

static void fuzz_st_roundtrip(const struct oc_safetensors *st)
{
    char path[300];
    snprintf(path, sizeof path, "%s/out.safetensors", oc_fuzz_dir());
    struct oc_err err = {0};
    enum oc_status s = oc_st_write(path, st->tensors, st->ntensors, st->meta, st->nmeta, &err);
    OC_FUZZ_CHECK(s == OC_OK, "an accepted file cannot be written back: %s", err.msg);
    struct oc_safetensors back;
    struct oc_err err2 = {0};
    s = oc_st_read(path, &back, &err2);
    OC_FUZZ_CHECK(s == OC_OK, "a written file cannot be read back: %s", err2.msg);
    OC_FUZZ_CHECK(back.ntensors == st->ntensors && back.nmeta == st->nmeta,
                  "round trip changed the counts");
    for (int i = 0; i < st->ntensors; i++) {
        const struct oc_st_tensor *a = &st->tensors[i], *b = &back.tensors[i];
        OC_FUZZ_CHECK(!strcmp(a->name, b->name) && a->dtype == b->dtype && a->rank == b->rank &&
                          a->nbytes == b->nbytes &&
                          !memcmp(a->shape, b->shape, (size_t)a->rank * sizeof a->shape[0]) &&
                          (!a->nbytes || !memcmp(a->data, b->data, a->nbytes)),
                      "round trip changed tensor \"%s\"", a->name);
    }
    for (int i = 0; i < st->nmeta; i++)
        OC_FUZZ_CHECK(!strcmp(st->meta[i].key, back.meta[i].key) &&
                          !strcmp(st->meta[i].value, back.meta[i].value),
                      "round trip changed metadata \"%s\"", st->meta[i].key);
    oc_st_free(&back);
    unlink(path);
}

OC_FUZZ_ENTRY(safetensors)
{
    struct oc_safetensors st;
    struct oc_err err = {0};
    enum oc_status s = oc_st_parse(data, size, "fuzz.safetensors", &st, &err);
    if (s != OC_OK) {
        OC_FUZZ_CHECK(err.code == s && err.msg[0], "status %d without a matching error", (int)s);
        OC_FUZZ_CHECK(st.ntensors == 0 && st.data == NULL, "rejected file left state behind");
        return 0;
    }
    fuzz_st_check(&st, size);
    fuzz_st_roundtrip(&st);
    oc_st_free(&st);
    return 0;
}
