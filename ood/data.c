/* data.c - dataset loaders for IDX (Fashion-MNIST) and CIFAR-10 binary
 * files, generated noise, and the dataset transforms: split, per-channel
 * statistics, channel/size conforming, OOD-set specs.
 *
 * Data flow: files -> (zlib) bytes, validated exactly against the format ->
 * float images in [0, 1] -> oc_dataset -> split / conform -> the batcher
 * (data-batch.c) or the evaluation layer. Image folders are in data-image.c.
 */
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef OC_HAVE_ZLIB
#include <zlib.h>
#endif

#include "data-impl.h"

void oc_dataset_free(struct oc_dataset *ds)
{
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    free(ds->source);
    memset(ds, 0, sizeof *ds);
}

char *oc_ds_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static char *fmt_source(const char *fmt, const char *a, const char *b)
{
    size_t n = strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, fmt, a, b ? b : "");
    return p;
}

/* Allocates the arrays of a dataset; on failure frees what it made. */
static enum oc_status ds_alloc(struct oc_dataset *ds, int64_t n, int c, int h, int w, int labeled,
                               const char *what, struct oc_err *err)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    size_t count = (size_t)n * (size_t)c * (size_t)h * (size_t)w;
    ds->images = malloc(count ? count * sizeof(float) : 1);
    if (labeled) ds->labels = malloc(n ? (size_t)n * sizeof(int32_t) : 1);
    if (!ds->images || (labeled && !ds->labels)) {
        oc_dataset_free(ds);
        return oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory for %lld images of %dx%dx%d",
                          what, (long long)n, c, h, w);
    }
    return OC_OK;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---------------------------------------------------------------- byte reader */

/* A sequential reader over a raw or gzip-compressed file that counts the
 * (decompressed) offset, so truncation can be reported where it happens. */
struct rd {
    const char *path;
#ifdef OC_HAVE_ZLIB
    gzFile gz;
#else
    FILE *f;
#endif
    int64_t off;
};

static enum oc_status rd_open(struct rd *r, const char *path, struct oc_err *err)
{
    r->path = path;
    r->off = 0;
#ifdef OC_HAVE_ZLIB
    errno = 0;
    r->gz = gzopen(path, "rb");
    if (!r->gz)
        return oc_err_set(err, OC_ERR_IO, "%s: cannot open: %s", path,
                          errno ? strerror(errno) : "out of memory");
    gzbuffer(r->gz, 1 << 17);
#else
    r->f = fopen(path, "rb");
    if (!r->f) return oc_err_set(err, OC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char m[2];
    size_t got = fread(m, 1, 2, r->f);
    if (got == 2 && m[0] == 0x1f && m[1] == 0x8b) {
        fclose(r->f);
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "%s: gzip-compressed, but oodc was built without zlib "
                          "(install zlib1g-dev and rebuild, or gunzip the file)",
                          path);
    }
    rewind(r->f);
#endif
    return OC_OK;
}

static void rd_close(struct rd *r)
{
#ifdef OC_HAVE_ZLIB
    if (r->gz) gzclose(r->gz);
    r->gz = NULL;
#else
    if (r->f) fclose(r->f);
    r->f = NULL;
#endif
}

#ifdef OC_HAVE_ZLIB
/* zlib's message, without the "path: " it prefixes (we name the file already). */
static const char *rd_zmsg(struct rd *r, int *code)
{
    const char *m = gzerror(r->gz, code);
    size_t n = strlen(r->path);
    if (!strncmp(m, r->path, n) && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
    return m;
}
#endif

static const char *rd_kind(struct rd *r)
{
#ifdef OC_HAVE_ZLIB
    return gzdirect(r->gz) ? "" : " (decompressed)";
#else
    (void)r;
    return "";
#endif
}

/* The file's size when it is read as is (not gzip), else -1: a raw
 * file's length bounds what its header may claim. */
static int64_t rd_raw_size(struct rd *r)
{
    struct stat sb;
#ifdef OC_HAVE_ZLIB
    if (!gzdirect(r->gz)) return -1;
    if (stat(r->path, &sb) != 0) return -1;
#else
    if (fstat(fileno(r->f), &sb) != 0) return -1;
#endif
    return S_ISREG(sb.st_mode) ? (int64_t)sb.st_size : -1;
}

/* Reads up to n bytes; returns the count, or -1 (err set) on a read or
 * decompression error. */
static int64_t rd_read(struct rd *r, void *buf, int64_t n, struct oc_err *err)
{
    int64_t total = 0;
    unsigned char *p = buf;
    while (total < n) {
        int64_t want = n - total;
        if (want > (1 << 24)) want = 1 << 24;
#ifdef OC_HAVE_ZLIB
        int got = gzread(r->gz, p + total, (unsigned)want);
        if (got < 0) {
            int code;
            const char *m = rd_zmsg(r, &code);
            oc_err_set(err, OC_ERR_PARSE, "%s: corrupt or truncated gzip data at decompressed byte "
                       "offset %lld: %s", r->path, (long long)(r->off + total), m);
            return -1;
        }
#else
        size_t got = fread(p + total, 1, (size_t)want, r->f);
        if (got == 0 && ferror(r->f)) {
            oc_err_set(err, OC_ERR_IO, "%s: read error at byte offset %lld", r->path,
                       (long long)(r->off + total));
            return -1;
        }
#endif
        if (got == 0) break;
        total += got;
    }
#ifdef OC_HAVE_ZLIB
    if (total < n) {
        /* A gzip stream cut short reads as a short count plus a zlib error. */
        int code;
        const char *m = rd_zmsg(r, &code);
        if (code != Z_OK) {
            oc_err_set(err, OC_ERR_PARSE, "%s: corrupt or truncated gzip data at decompressed byte "
                       "offset %lld: %s", r->path, (long long)(r->off + total), m);
            return -1;
        }
    }
#endif
    r->off += total;
    return total;
}

/* Reads exactly n bytes of `what`, or fails naming where the file ended. */
static enum oc_status rd_exact(struct rd *r, void *buf, int64_t n, const char *what,
                               struct oc_err *err)
{
    int64_t start = r->off;
    int64_t got = rd_read(r, buf, n, err);
    if (got < 0) return OC_ERR_PARSE;
    if (got < n)
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: truncated at byte offset %lld%s: the %s needs %lld bytes from "
                          "offset %lld",
                          r->path, (long long)r->off, rd_kind(r), what, (long long)n,
                          (long long)start);
    return OC_OK;
}

/* Fails unless the file ends here. */
static enum oc_status rd_expect_end(struct rd *r, struct oc_err *err)
{
    unsigned char c;
    int64_t end = r->off;
    int64_t got = rd_read(r, &c, 1, err);
    if (got < 0) return OC_ERR_PARSE;
    if (got > 0)
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: unexpected data after byte offset %lld%s, where the declared "
                          "dimensions end",
                          r->path, (long long)end, rd_kind(r));
    return OC_OK;
}

/* ---------------------------------------------------------------- IDX */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads an IDX header: magic 0x000008<ndim>, then ndim big-endian dims. */
static enum oc_status idx_header(struct rd *r, int ndim, uint32_t *dims, struct oc_err *err)
{
    unsigned char h[4];
    enum oc_status s = rd_exact(r, h, 4, "IDX magic number", err);
    if (s) return s;
    uint32_t magic = be32(h);
    uint32_t want = 0x00000800u | (uint32_t)ndim;
    if (h[0] != 0 || h[1] != 0)
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: byte offset 0: bad IDX magic number 0x%08x (expected 0x%08x): "
                          "not an IDX file",
                          r->path, magic, want);
    if (h[2] != 0x08)
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "%s: byte offset 2: IDX data type 0x%02x is not supported (only "
                          "unsigned bytes, 0x08)",
                          r->path, h[2]);
    if (h[3] != ndim)
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: byte offset 3: IDX magic 0x%08x has %d dimensions, expected %d "
                          "(magic 0x%08x: %s)",
                          r->path, magic, h[3], ndim, want, ndim == 3 ? "images" : "labels");
    unsigned char d[12];
    s = rd_exact(r, d, 4 * ndim, "IDX dimensions", err);
    if (s) return s;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(d + 4 * i);
        if (dims[i] == 0 || dims[i] > (1u << 30))
            return oc_err_set(err, OC_ERR_PARSE, "%s: byte offset %d: implausible IDX dimension %u",
                              r->path, 4 + 4 * i, dims[i]);
    }
    return OC_OK;
}

static enum oc_status idx_images(const char *path, struct oc_dataset *ds, struct oc_err *err)
{
    struct rd r;
    enum oc_status s = rd_open(&r, path, err);
    if (s) return s;
    uint32_t d[3] = {0};
    s = idx_header(&r, 3, d, err);
    if (!s && (uint64_t)d[0] * d[1] * d[2] > ((uint64_t)1 << 38))
        s = oc_err_set(err, OC_ERR_PARSE, "%s: implausible IDX size %ux%ux%u", path, d[0], d[1],
                       d[2]);
    if (!s && (d[1] > 65536 || d[2] > 65536))
        s = oc_err_set(err, OC_ERR_PARSE, "%s: implausible IDX image size %ux%u", path, d[1], d[2]);
    if (s) {
        rd_close(&r);
        return s;
    }
    /* The header alone must not decide how much memory is taken: a raw
     * file shorter than its claim is rejected before any allocation, and
     * the pixel buffer grows with the data actually read (gzip streams). */
    int64_t total = (int64_t)d[0] * d[1] * d[2];
    int64_t start = r.off;
    int64_t fsize = rd_raw_size(&r);
    if (fsize >= 0 && fsize - start < total) {
        s = oc_err_set(err, OC_ERR_PARSE,
                       "%s: truncated at byte offset %lld: %u images of %ux%u need %lld bytes "
                       "from offset %lld (image %lld is incomplete)",
                       path, (long long)fsize, d[0], d[1], d[2], (long long)total,
                       (long long)start, (long long)((fsize - start) / ((int64_t)d[1] * d[2])));
        rd_close(&r);
        return s;
    }
    memset(ds, 0, sizeof *ds);
    int64_t cap = 0;
    /* Convert chunk by chunk: no second full-size byte buffer. */
    int64_t chunk = 1 << 20;
    unsigned char *tmp = malloc((size_t)chunk);
    if (!tmp) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t done = 0; !s && done < total;) {
        int64_t want = total - done < chunk ? total - done : chunk;
        int64_t got = rd_read(&r, tmp, want, err);
        if (got < 0) {
            s = OC_ERR_PARSE;
            break;
        }
        if (done + got > cap) {
            int64_t nc = cap ? 2 * cap : 4 * chunk;
            if (nc < done + got) nc = done + got;
            if (nc > total) nc = total;
            float *q = realloc(ds->images, (size_t)nc * sizeof(float));
            if (!q) {
                s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory for %lld pixels", path,
                               (long long)nc);
                break;
            }
            ds->images = q;
            cap = nc;
        }
        for (int64_t i = 0; i < got; i++) ds->images[done + i] = (float)tmp[i] / 255.0f;
        done += got;
        if (got < want)
            s = oc_err_set(err, OC_ERR_PARSE,
                           "%s: truncated at byte offset %lld%s: %u images of %ux%u need %lld "
                           "bytes from offset %lld (image %lld is incomplete)",
                           path, (long long)r.off, rd_kind(&r), d[0], d[1], d[2],
                           (long long)total, (long long)start,
                           (long long)(done / ((int64_t)d[1] * d[2])));
    }
    free(tmp);
    if (!s) s = rd_expect_end(&r, err);
    rd_close(&r);
    if (!s) {
        ds->n = d[0];
        ds->c = 1;
        ds->h = (int)d[1];
        ds->w = (int)d[2];
    }
    if (s) oc_dataset_free(ds);
    return s;
}

static enum oc_status idx_labels(const char *path, int64_t n_images, const char *images_path,
                                 int32_t *labels, int *nclasses, struct oc_err *err)
{
    struct rd r;
    enum oc_status s = rd_open(&r, path, err);
    if (s) return s;
    uint32_t d[1] = {0};
    s = idx_header(&r, 1, d, err);
    if (!s && d[0] != (uint64_t)n_images)
        s = oc_err_set(err, OC_ERR_SHAPE, "%s: %u labels, but %s holds %lld images", path, d[0],
                       images_path, (long long)n_images);
    unsigned char *tmp = NULL;
    if (!s) {
        tmp = malloc(d[0]);
        if (!tmp) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", path);
    }
    if (!s) s = rd_exact(&r, tmp, d[0], "label data", err);
    if (!s) s = rd_expect_end(&r, err);
    if (!s) {
        int mx = 0;
        for (uint32_t i = 0; i < d[0]; i++) {
            labels[i] = tmp[i];
            if (tmp[i] > mx) mx = tmp[i];
        }
        *nclasses = mx + 1;
    }
    free(tmp);
    rd_close(&r);
    return s;
}

enum oc_status oc_data_load_idx(const char *images_path, const char *labels_path,
                                struct oc_dataset *out, struct oc_err *err)
{
    if (!images_path || !out)
        return oc_err_set(err, OC_ERR_INVALID, "oc_data_load_idx: no images path or output");
    struct oc_dataset ds;
    enum oc_status s = idx_images(images_path, &ds, err);
    if (s) return s;
    if (labels_path) {
        ds.labels = malloc((size_t)ds.n * sizeof(int32_t));
        if (!ds.labels) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", labels_path);
        if (!s) s = idx_labels(labels_path, ds.n, images_path, ds.labels, &ds.nclasses, err);
    }
    if (!s) {
        ds.source = labels_path ? fmt_source("idx:%s,%s", images_path, labels_path)
                                : fmt_source("idx:%s%s", images_path, NULL);
        if (!ds.source) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", images_path);
    }
    if (s) {
        oc_dataset_free(&ds);
        return s;
    }
    *out = ds;
    return OC_OK;
}

/* dir/name.gz, else dir/name, else NULL. */
static char *find_idx(const char *dir, const char *name)
{
    char gz[512];
    snprintf(gz, sizeof gz, "%s.gz", name);
    char *p = path_join(dir, gz);
    if (p && file_exists(p)) return p;
    free(p);
    p = path_join(dir, name);
    if (p && file_exists(p)) return p;
    free(p);
    return NULL;
}

enum oc_status oc_data_load_fashion_mnist(const char *dir, int train, struct oc_dataset *out,
                                          struct oc_err *err)
{
    if (!dir) dir = OC_FASHION_MNIST_DIR;
    const char *pre = train ? "train" : "t10k";
    char iname[64], lname[64];
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", pre);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", pre);
    char *ip = find_idx(dir, iname), *lp = find_idx(dir, lname);
    if (!ip || !lp) {
        free(ip);
        free(lp);
        return oc_err_set(err, OC_ERR_IO,
                          "Fashion-MNIST not found: %s has no %s.gz (nor %s); install the Debian "
                          "package dataset-fashion-mnist (apt-get install dataset-fashion-mnist "
                          "puts the files in %s) or give the folder holding the IDX files",
                          dir, ip ? lname : iname, ip ? lname : iname, OC_FASHION_MNIST_DIR);
    }
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    enum oc_status s = oc_data_load_idx(ip, lp, &ds, err);
    if (!s && (ds.h != 28 || ds.w != 28 || ds.nclasses > 10))
        s = oc_err_set(err, OC_ERR_SHAPE,
                       "%s: not Fashion-MNIST: %dx%d images, %d classes (expected 28x28, 10)", ip,
                       ds.h, ds.w, ds.nclasses);
    if (!s) {
        ds.nclasses = 10;
        free(ds.source);
        ds.source = fmt_source("fashion-mnist:%s (%s)", dir, train ? "train" : "test");
        if (!ds.source) s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    }
    free(ip);
    free(lp);
    if (s) {
        if (ds.images) oc_dataset_free(&ds);
        return s;
    }
    *out = ds;
    return OC_OK;
}

/* ---------------------------------------------------------------- CIFAR */

#define CIFAR_PIX 3072
#define CIFAR_REC (1 + CIFAR_PIX)

/* Validates a CIFAR-binary file's size and counts its records. */
static enum oc_status cifar_records(const char *path, int64_t *nrec, struct oc_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return oc_err_set(err, OC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return oc_err_set(err, OC_ERR_IO, "%s: not a regular file", path);
    int64_t size = st.st_size;
    if (size == 0) return oc_err_set(err, OC_ERR_PARSE, "%s: empty CIFAR-binary file", path);
    if (size % CIFAR_REC) {
        int64_t k = size / CIFAR_REC;
        return oc_err_set(err, OC_ERR_PARSE,
                   "%s: size %lld is not a multiple of the %d-byte CIFAR-10 record: record %lld "
                   "(byte offset %lld) is truncated to %lld bytes%s",
                   path, (long long)size, CIFAR_REC, (long long)k, (long long)(k * CIFAR_REC),
                   (long long)(size - k * CIFAR_REC),
                   size % (CIFAR_REC + 1) == 0 ? " (the size fits CIFAR-100's 3074-byte records, "
                                                 "which are not supported)"
                                               : "");
    }
    *nrec = size / CIFAR_REC;
    return OC_OK;
}

/* Reads records of `path` into ds at image index `at`. */
static enum oc_status cifar_read(const char *path, int64_t nrec, struct oc_dataset *ds, int64_t at,
                                 struct oc_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return oc_err_set(err, OC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char rec[CIFAR_REC];
    enum oc_status s = OC_OK;
    for (int64_t k = 0; k < nrec && !s; k++) {
        if (fread(rec, 1, CIFAR_REC, f) != CIFAR_REC) {
            s = oc_err_set(err, OC_ERR_IO, "%s: record %lld (byte offset %lld): short read%s",
                           path, (long long)k, (long long)(k * CIFAR_REC),
                           ferror(f) ? "" : " (the file shrank while being read)");
            break;
        }
        if (rec[0] > 9) {
            s = oc_err_set(err, OC_ERR_PARSE,
                           "%s: record %lld (byte offset %lld): label %d is not in 0..9", path,
                           (long long)k, (long long)(k * CIFAR_REC), rec[0]);
            break;
        }
        ds->labels[at + k] = rec[0];
        float *img = ds->images + (at + k) * CIFAR_PIX;
        for (int i = 0; i < CIFAR_PIX; i++) img[i] = (float)rec[1 + i] / 255.0f;
    }
    fclose(f);
    return s;
}

enum oc_status oc_data_load_cifar_files(const char *const *paths, int npaths,
                                        struct oc_dataset *out, struct oc_err *err)
{
    if (!paths || npaths <= 0 || !out)
        return oc_err_set(err, OC_ERR_INVALID, "oc_data_load_cifar_files: no files given");
    int64_t *counts = calloc((size_t)npaths, sizeof *counts);
    if (!counts) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    int64_t n = 0;
    enum oc_status s = OC_OK;
    for (int i = 0; i < npaths && !s; i++) {
        s = cifar_records(paths[i], &counts[i], err);
        n += counts[i];
    }
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (!s) s = ds_alloc(&ds, n, 3, 32, 32, 1, paths[0], err);
    int64_t at = 0;
    for (int i = 0; i < npaths && !s; i++) {
        s = cifar_read(paths[i], counts[i], &ds, at, err);
        at += counts[i];
    }
    free(counts);
    if (!s) {
        ds.nclasses = 10;
        ds.source = fmt_source(npaths > 1 ? "cifar-bin:%s,..." : "cifar-bin:%s%s", paths[0], NULL);
        if (!ds.source) s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    }
    if (s) {
        oc_dataset_free(&ds);
        return s;
    }
    *out = ds;
    return OC_OK;
}

enum oc_status oc_data_load_cifar10(const char *dir, int train, struct oc_dataset *out,
                                    struct oc_err *err)
{
    if (!dir)
        return oc_err_set(err, OC_ERR_INVALID,
                          "CIFAR-10 needs a folder: download the binary version "
                          "(cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), "
                          "unpack it and give its cifar-10-batches-bin folder");
    static const char *train_names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                        "data_batch_4.bin", "data_batch_5.bin"};
    static const char *test_names[] = {"test_batch.bin"};
    const char *const *names = train ? train_names : test_names;
    int nn = train ? 5 : 1;
    /* Accept the unpacked archive's parent folder too. */
    char *base = oc_ds_strdup(dir);
    char *probe = base ? path_join(base, names[0]) : NULL;
    if (probe && !file_exists(probe)) {
        char *sub = path_join(dir, "cifar-10-batches-bin");
        if (sub && dir_exists(sub)) {
            free(base);
            base = sub;
        } else {
            free(sub);
        }
    }
    free(probe);
    if (!base) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    char *paths[5] = {0};
    enum oc_status s = OC_OK;
    for (int i = 0; i < nn && !s; i++) {
        paths[i] = path_join(base, names[i]);
        if (!paths[i]) s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
        else if (!file_exists(paths[i]))
            s = oc_err_set(err, OC_ERR_IO,
                           "CIFAR-10: %s not found; download the binary version "
                           "(cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), "
                           "unpack it and give its cifar-10-batches-bin folder",
                           paths[i]);
    }
    struct oc_dataset ds;
    if (!s) s = oc_data_load_cifar_files((const char *const *)paths, nn, &ds, err);
    if (!s) {
        free(ds.source);
        ds.source = fmt_source("cifar10:%s (%s)", base, train ? "train" : "test");
        if (!ds.source) {
            oc_dataset_free(&ds);
            s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
        }
    }
    for (int i = 0; i < nn; i++) free(paths[i]);
    free(base);
    if (s) return s;
    *out = ds;
    return OC_OK;
}

/* ---------------------------------------------------------------- noise */

const char *oc_noise_name(enum oc_noise_kind k)
{
    return k == OC_NOISE_GAUSSIAN ? "gaussian" : "uniform";
}

enum oc_status oc_data_noise(enum oc_noise_kind kind, int64_t n, int c, int h, int w,
                             uint64_t seed, struct oc_dataset *out, struct oc_err *err)
{
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || !out)
        return oc_err_set(err, OC_ERR_INVALID, "noise: bad size %lldx%dx%dx%d", (long long)n, c, h,
                          w);
    if (kind != OC_NOISE_GAUSSIAN && kind != OC_NOISE_UNIFORM)
        return oc_err_set(err, OC_ERR_INVALID, "noise: unknown kind %d", (int)kind);
    struct oc_dataset ds;
    enum oc_status s = ds_alloc(&ds, n, c, h, w, 0, oc_noise_name(kind), err);
    if (s) return s;
    uint64_t stream = oc_ds_stream(OC_DS_NOISE, kind);
    int64_t count = n * c * h * w;
    for (int64_t i = 0; i < count; i++) {
        double v;
        if (kind == OC_NOISE_UNIFORM) {
            v = oc_ds_u01(seed, stream, (uint64_t)i);
        } else {
            /* Box-Muller; u1 in (0, 1] keeps the log finite. */
            double u1 = 1.0 - oc_ds_u01(seed, stream, 2 * (uint64_t)i);
            double u2 = oc_ds_u01(seed, stream, 2 * (uint64_t)i + 1);
            double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
            v = 0.5 + z;
            v = v < 0 ? 0 : v > 1 ? 1 : v;
        }
        ds.images[i] = (float)v;
    }
    char buf[160];
    snprintf(buf, sizeof buf, "%s noise (n=%lld, seed %llu)", oc_noise_name(kind), (long long)n,
             (unsigned long long)seed);
    ds.source = oc_ds_strdup(buf);
    if (!ds.source) {
        oc_dataset_free(&ds);
        return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    }
    *out = ds;
    return OC_OK;
}

/* ---------------------------------------------------------------- split, stats */

/* The images with keep[i] == want, in order. */
static enum oc_status ds_select(const struct oc_dataset *ds, const unsigned char *keep, int want,
                                int64_t count, const char *tag, struct oc_dataset *out,
                                struct oc_err *err)
{
    struct oc_dataset r;
    enum oc_status s = ds_alloc(&r, count, ds->c, ds->h, ds->w, ds->labels != NULL,
                                ds->source ? ds->source : "dataset", err);
    if (s) return s;
    int64_t isz = oc_dataset_image_size(ds), j = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        if (keep[i] != want) continue;
        memcpy(r.images + j * isz, ds->images + i * isz, (size_t)isz * sizeof(float));
        if (r.labels) r.labels[j] = ds->labels[i];
        j++;
    }
    OC_ASSERT(j == count);
    r.nclasses = ds->nclasses;
    r.source = fmt_source("%s %s", ds->source ? ds->source : "dataset", tag);
    if (!r.source) {
        oc_dataset_free(&r);
        return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    }
    *out = r;
    return OC_OK;
}

enum oc_status oc_data_split(const struct oc_dataset *ds, int64_t n_first, uint64_t seed,
                             struct oc_dataset *a, struct oc_dataset *b, struct oc_err *err)
{
    if (!ds || n_first < 0 || n_first > ds->n)
        return oc_err_set(err, OC_ERR_INVALID, "split: cannot take %lld of %lld images from %s",
                          (long long)n_first, ds ? (long long)ds->n : 0LL,
                          ds && ds->source ? ds->source : "dataset");
    int64_t *perm = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *perm);
    unsigned char *keep = calloc((size_t)(ds->n ? ds->n : 1), 1);
    if (!perm || !keep) {
        free(perm);
        free(keep);
        return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    }
    oc_ds_permute(perm, ds->n, seed, oc_ds_stream(OC_DS_SPLIT, 0));
    for (int64_t i = 0; i < n_first; i++) keep[perm[i]] = 1;
    free(perm);
    char tag_a[96], tag_b[96];
    snprintf(tag_a, sizeof tag_a, "[split %lld/%lld seed %llu: first]", (long long)n_first,
             (long long)ds->n, (unsigned long long)seed);
    snprintf(tag_b, sizeof tag_b, "[split %lld/%lld seed %llu: rest]", (long long)n_first,
             (long long)ds->n, (unsigned long long)seed);
    struct oc_dataset ra = {0}, rb = {0};
    enum oc_status s = OC_OK;
    if (a) s = ds_select(ds, keep, 1, n_first, tag_a, &ra, err);
    if (!s && b) s = ds_select(ds, keep, 0, ds->n - n_first, tag_b, &rb, err);
    free(keep);
    if (s) {
        oc_dataset_free(&ra);
        return s;
    }
    if (a) *a = ra;
    if (b) *b = rb;
    return OC_OK;
}

enum oc_status oc_data_channel_stats(const struct oc_dataset *ds, float *mean, float *std,
                                     struct oc_err *err)
{
    if (!ds || ds->n <= 0 || ds->c <= 0)
        return oc_err_set(err, OC_ERR_INVALID, "channel statistics of an empty dataset");
    int64_t hw = (int64_t)ds->h * ds->w, isz = oc_dataset_image_size(ds);
    double count = (double)ds->n * (double)hw;
    for (int ch = 0; ch < ds->c; ch++) {
        /* Two passes: the one-pass E[x^2] - E[x]^2 loses digits on 10^8 values. */
        double sum = 0;
        for (int64_t i = 0; i < ds->n; i++) {
            const float *p = ds->images + i * isz + ch * hw;
            double part = 0;
            for (int64_t k = 0; k < hw; k++) part += p[k];
            sum += part;
        }
        double m = sum / count, ss = 0;
        for (int64_t i = 0; i < ds->n; i++) {
            const float *p = ds->images + i * isz + ch * hw;
            double part = 0;
            for (int64_t k = 0; k < hw; k++) part += (p[k] - m) * (p[k] - m);
            ss += part;
        }
        mean[ch] = (float)m;
        std[ch] = (float)sqrt(ss / count);
    }
    return OC_OK;
}

/* ---------------------------------------------------------------- conform */

void oc_ds_convert_channels(const float *src, int sc, float *dst, int dc, int64_t hw)
{
    if (sc == dc) {
        memcpy(dst, src, (size_t)(sc * hw) * sizeof(float));
    } else if (dc == 1) { /* sc == 3 */
        for (int64_t k = 0; k < hw; k++)
            dst[k] = oc_ds_luma(src[k], src[hw + k], src[2 * hw + k]);
    } else { /* sc == 1, dc == 3 */
        for (int ch = 0; ch < dc; ch++) memcpy(dst + ch * hw, src, (size_t)hw * sizeof(float));
    }
}

void oc_ds_resample_area(const float *src, int sh, int sw, float *dst, int dh, int dw)
{
    /* Destination pixel (y, x) covers source rows [y*sh/dh, (y+1)*sh/dh) and
     * columns likewise; each source pixel counts with its overlap. */
    double fy = (double)sh / dh, fx = (double)sw / dw;
    for (int y = 0; y < dh; y++) {
        double y0 = y * fy, y1 = (y + 1) * fy;
        int iy0 = (int)floor(y0), iy1 = (int)ceil(y1);
        if (iy1 > sh) iy1 = sh;
        for (int x = 0; x < dw; x++) {
            double x0 = x * fx, x1 = (x + 1) * fx;
            int ix0 = (int)floor(x0), ix1 = (int)ceil(x1);
            if (ix1 > sw) ix1 = sw;
            double acc = 0, wsum = 0;
            for (int sy = iy0; sy < iy1; sy++) {
                double wy = fmin(y1, sy + 1.0) - fmax(y0, (double)sy);
                if (wy <= 0) continue;
                for (int sx = ix0; sx < ix1; sx++) {
                    double wx = fmin(x1, sx + 1.0) - fmax(x0, (double)sx);
                    if (wx <= 0) continue;
                    acc += wy * wx * src[(int64_t)sy * sw + sx];
                    wsum += wy * wx;
                }
            }
            dst[(int64_t)y * dw + x] = (float)(wsum > 0 ? acc / wsum : 0);
        }
    }
}

enum oc_status oc_data_conform(const struct oc_dataset *ds, int c, int h, int w,
                               struct oc_dataset *out, struct oc_err *err)
{
    const char *src = ds && ds->source ? ds->source : "dataset";
    if (!ds || !out || h <= 0 || w <= 0)
        return oc_err_set(err, OC_ERR_INVALID, "conform %s: bad target size %dx%d", src, h, w);
    if ((c != 1 && c != 3) || (ds->c != 1 && ds->c != 3))
        return oc_err_set(err, OC_ERR_SHAPE,
                          "%s: cannot convert %d channel(s) to %d: only grayscale (1) and RGB (3) "
                          "are supported",
                          src, ds->c, c);
    struct oc_dataset r;
    enum oc_status s = ds_alloc(&r, ds->n, c, h, w, ds->labels != NULL, src, err);
    if (s) return s;
    int64_t shw = (int64_t)ds->h * ds->w, dhw = (int64_t)h * w;
    float *tmp = malloc((size_t)(c * shw) * sizeof(float));
    if (!tmp) {
        oc_dataset_free(&r);
        return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < ds->n; i++) {
        float *dst = r.images + i * c * dhw;
        if (ds->h == h && ds->w == w) {
            oc_ds_convert_channels(ds->images + i * ds->c * shw, ds->c, dst, c, shw);
        } else {
            oc_ds_convert_channels(ds->images + i * ds->c * shw, ds->c, tmp, c, shw);
            for (int ch = 0; ch < c; ch++)
                oc_ds_resample_area(tmp + ch * shw, ds->h, ds->w, dst + ch * dhw, h, w);
        }
    }
    free(tmp);
    if (r.labels) memcpy(r.labels, ds->labels, (size_t)ds->n * sizeof(int32_t));
    r.nclasses = ds->nclasses;
    r.source = oc_ds_strdup(src);
    if (!r.source) {
        oc_dataset_free(&r);
        return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    }
    *out = r;
    return OC_OK;
}

/* ---------------------------------------------------------------- specs */

/* Splits "a,b,c" into malloc'd parts (at most max). */
static int split_commas(const char *s, char **parts, int max)
{
    int n = 0;
    while (n < max) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        parts[n] = malloc(len + 1);
        if (!parts[n]) break;
        memcpy(parts[n], s, len);
        parts[n][len] = 0;
        n++;
        if (!e) break;
        s = e + 1;
    }
    return n;
}

enum oc_status oc_data_load_spec(const char *spec, int c, int h, int w, int64_t n_max,
                                 uint64_t seed, struct oc_dataset *out, struct oc_err *err)
{
    if (!spec || !out) return oc_err_set(err, OC_ERR_INVALID, "no dataset spec");
    const char *colon = strchr(spec, ':');
    size_t klen = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *arg = colon ? colon + 1 : NULL;
    char kind[32];
    if (klen >= sizeof kind) klen = sizeof kind - 1;
    memcpy(kind, spec, klen);
    kind[klen] = 0;

    struct oc_dataset raw;
    memset(&raw, 0, sizeof raw);
    enum oc_status s;
    int need_arg = 1;
    if (!strcmp(kind, "gaussian") || !strcmp(kind, "uniform")) {
        need_arg = 0;
        s = oc_data_noise(kind[0] == 'g' ? OC_NOISE_GAUSSIAN : OC_NOISE_UNIFORM,
                          n_max > 0 ? n_max : 1500, c, h, w, seed, out, err);
        return s;
    } else if (!strcmp(kind, "fashion-mnist")) {
        need_arg = 0;
        s = oc_data_load_fashion_mnist(arg && *arg ? arg : NULL, 0, &raw, err);
    } else if (!strcmp(kind, "cifar10")) {
        s = arg && *arg ? oc_data_load_cifar10(arg, 0, &raw, err) : OC_OK;
    } else if (!strcmp(kind, "idx")) {
        char *p[2] = {0};
        int np = arg && *arg ? split_commas(arg, p, 2) : 0;
        s = np ? oc_data_load_idx(p[0], np > 1 ? p[1] : NULL, &raw, err) : OC_OK;
        free(p[0]);
        free(p[1]);
    } else if (!strcmp(kind, "cifar-bin")) {
        char *p[64] = {0};
        int np = arg && *arg ? split_commas(arg, p, 64) : 0;
        s = np ? oc_data_load_cifar_files((const char *const *)p, np, &raw, err) : OC_OK;
        for (int i = 0; i < np; i++) free(p[i]);
    } else if (!strcmp(kind, "crop") || !strcmp(kind, "resize")) {
        if (!arg || !*arg)
            return oc_err_set(err, OC_ERR_INVALID, "dataset spec '%s': needs a folder (%s:DIR)",
                              spec, kind);
        return oc_data_load_folder(arg, kind[0] == 'c' ? OC_FOLDER_CROP : OC_FOLDER_RESIZE, c, h,
                                   w, n_max, seed, out, err);
    } else {
        return oc_err_set(err, OC_ERR_INVALID,
                          "unknown dataset spec '%s' (expected gaussian, uniform, "
                          "fashion-mnist[:DIR], cifar10:DIR, idx:IMAGES[,LABELS], "
                          "cifar-bin:FILE[,FILE...], crop:DIR or resize:DIR)",
                          spec);
    }
    if (s) return s;
    if (need_arg && !raw.images)
        return oc_err_set(err, OC_ERR_INVALID, "dataset spec '%s': needs a path (%s:PATH)", spec,
                          kind);
    struct oc_dataset conf;
    s = oc_data_conform(&raw, c, h, w, &conf, err);
    oc_dataset_free(&raw);
    if (s) return s;
    if (n_max > 0 && conf.n > n_max) {
        struct oc_dataset sub;
        s = oc_data_split(&conf, n_max, seed ^ oc_ds_stream(OC_DS_SUBSET, 0), &sub, NULL, err);
        oc_dataset_free(&conf);
        if (s) return s;
        conf = sub;
    }
    *out = conf;
    return OC_OK;
}
