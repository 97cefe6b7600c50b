/* data-image.c - the image-folder loader: any folder of PNG/JPEG files
 * becomes an (unlabeled) dataset, by random crops or whole-image area
 * downsampling, like the paper's TinyImageNet (crop) and (resize) OOD sets.
 *
 * Data flow: walk the folder (sorted, recursive) -> optional seeded subset ->
 * decode each file with stb_image (Debian libstb-dev, PNG and JPEG only) ->
 * planar floats in [0, 1] -> channels matched to the in-distribution ->
 * crop or resample -> oc_dataset. This is the only file that includes the
 * stb_image implementation.
 */
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data-impl.h"

/* stb_image: static, PNG/JPEG only, no stdio (we read files ourselves so
 * errors name them), and a dimension cap against decompression bombs. */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS (1 << 15)
/* Unused static functions of stb are reported at the end of the file, so
 * that warning stays off for the whole file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

/* The largest image file read (bytes). */
#define MAX_IMAGE_FILE ((int64_t)1 << 28)
/* The most pixels decoded from one file: a few hundred bytes of JPEG can
 * declare 32768 x 32768, which would take minutes and tens of GB (stb's
 * 8-bit image, then two float planes per channel here). 2^26 pixels (e.g.
 * 8192 x 8192) bounds one decode to about 2 GB; photos and every dataset
 * of the paper are far smaller. */
#define MAX_IMAGE_PIXELS ((int64_t)1 << 26)
/* How deep the folder walk descends. */
#define MAX_DEPTH 16

struct pathlist {
    char **p;
    int64_t n, cap;
};

static void pathlist_free(struct pathlist *l)
{
    for (int64_t i = 0; i < l->n; i++) free(l->p[i]);
    free(l->p);
    l->p = NULL;
    l->n = l->cap = 0;
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg");
}

static enum oc_status walk(const char *dir, int depth, struct pathlist *l, struct oc_err *err)
{
    DIR *d = opendir(dir);
    if (!d) return oc_err_set(err, OC_ERR_IO, "%s: cannot open image folder: %s", dir, strerror(errno));
    enum oc_status s = OC_OK;
    struct dirent *e;
    while (!s && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files */
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) {
            s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(p, n, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p); /* a dangling link: not an image */
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (depth < MAX_DEPTH) s = walk(p, depth + 1, l, err);
            free(p);
        } else if (S_ISREG(st.st_mode) && is_image_name(e->d_name)) {
            if (l->n == l->cap) {
                int64_t cap = l->cap ? 2 * l->cap : 256;
                char **q = realloc(l->p, (size_t)cap * sizeof *q);
                if (!q) {
                    free(p);
                    s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
                    break;
                }
                l->p = q;
                l->cap = cap;
            }
            l->p[l->n++] = p;
        } else {
            free(p);
        }
    }
    closedir(d);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum oc_status read_file(const char *path, unsigned char **data, int64_t *size,
                                struct oc_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return oc_err_set(err, OC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size > MAX_IMAGE_FILE) {
        fclose(f);
        return oc_err_set(err, OC_ERR_IO, "%s: cannot read, or larger than %lld bytes", path,
                          (long long)MAX_IMAGE_FILE);
    }
    unsigned char *b = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!b) {
        fclose(f);
        return oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(b, 1, (size_t)st.st_size, f);
    fclose(f);
    if (got != (size_t)st.st_size) {
        free(b);
        return oc_err_set(err, OC_ERR_IO, "%s: short read at byte offset %zu", path, got);
    }
    *data = b;
    *size = st.st_size;
    return OC_OK;
}

/* ---------------------------------------------------------------- pre-checks */

/* stb_image (v2.27, Debian's libstb-dev) trusts what a file declares: a PNG
 * chunk's length (it grows its buffer to it before reading: a 55-byte file
 * can ask for 4 GiB), a JPEG DHT table's code count (more than 256 codes
 * overflow its Huffman tables) and that a scan's tables were defined (it
 * decodes with uninitialized ones otherwise). All are checked here first,
 * so a broken file is an error naming the byte offset, never a huge
 * allocation or an out-of-bounds access. (stb_image 2.28 and later check the
 * code count and zero their decoder state; the other checks remain.) */
static uint32_t be32at(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Also drops empty IDAT chunks (valid, but stb copies zero bytes to a NULL
 * buffer for a leading one: undefined behaviour that sanitizers stop on). */
static enum oc_status precheck_png(unsigned char *b, int64_t *np, const char *path,
                                   struct oc_err *err)
{
    int64_t n = *np;
    for (int64_t off = 8; off + 8 <= n;) {
        uint32_t len = be32at(b + off);
        if ((int64_t)len > n - off - 12)
            return oc_err_set(err, OC_ERR_PARSE,
                              "%s: cannot decode as PNG or JPEG: corrupt PNG: the chunk at byte "
                              "offset %lld declares %u bytes, but the file ends %lld bytes later",
                              path, (long long)off, len, (long long)(n - off - 8));
        if (!memcmp(b + off + 4, "IEND", 4)) break;
        if (len == 0 && !memcmp(b + off + 4, "IDAT", 4)) {
            memmove(b + off, b + off + 12, (size_t)(n - off - 12));
            n -= 12;
            continue;
        }
        off += 12 + (int64_t)len;
    }
    *np = n;
    return OC_OK;
}

/* One DHT segment's tables, b[0..n): they must fill it exactly. stb reads
 * tables while the segment has bytes left, taking a table's counts and
 * codes from beyond the segment's end when they run over it. */
static enum oc_status precheck_dht(const unsigned char *b, int64_t n, int64_t at,
                                   unsigned *defined, const char *path, struct oc_err *err)
{
    for (int64_t i = 0; i < n;) {
        if ((b[i] >> 4) <= 1 && (b[i] & 15) <= 3) *defined |= 1u << ((b[i] >> 4) * 4 + (b[i] & 15));
        int sum = 0;
        for (int k = 1; k <= 16 && i + k < n; k++) sum += b[i + k];
        if (n - i < 17 || sum > 256 || sum > n - i - 17)
            return oc_err_set(err, OC_ERR_PARSE,
                              "%s: cannot decode as PNG or JPEG: corrupt JPEG: the Huffman "
                              "table at byte offset %lld declares %d codes, but at most 256 "
                              "are allowed and %lld bytes remain in its segment",
                              path, (long long)(at + i), sum, (long long)(n - i));
        i += 17 + sum;
    }
    return OC_OK;
}

static enum oc_status precheck_jpeg(const unsigned char *b, int64_t n, const char *path,
                                    struct oc_err *err)
{
    /* From the start, as stb reads it: fill bytes (0xff) may come before
     * any marker, SOI included. Tables defined so far: DHT bits class*4+id,
     * DQT bits id; the frame's components and their quantization tables. */
    int64_t off = 0;
    unsigned dht = 0, dqt = 0;
    int progressive = 0, nc = 0, cid[4] = {0}, ctq[4] = {0};
    while (off + 4 <= n) {
        if (b[off] != 0xff) {
            /* entropy-coded data after SOS: find the next marker */
            off++;
            continue;
        }
        int m = b[off + 1];
        if (m == 0x00 || m == 0xff || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {
            /* stuffed byte, fill, TEM, restart markers, SOI: no length */
            off += m == 0xff ? 1 : 2;
            continue;
        }
        if (m == 0xd9) break; /* EOI */
        int64_t len = (int64_t)b[off + 2] << 8 | b[off + 3];
        if (m == 0xc4 && off + 2 + len > n)
            /* stb would read the missing counts as zeros, after the table */
            return oc_err_set(err, OC_ERR_PARSE,
                              "%s: cannot decode as PNG or JPEG: corrupt JPEG: the Huffman "
                              "table segment at byte offset %lld runs past the end of the file",
                              path, (long long)off);
        if (len < 2 || off + 2 + len > n) break; /* stb reports it */
        const unsigned char *seg = b + off + 4;
        int64_t sl = len - 2;
        if (m == 0xc4) {
            enum oc_status s = precheck_dht(seg, sl, off + 4, &dht, path, err);
            if (s) return s;
        } else if (m == 0xdb) {
            for (int64_t i = 0; i < sl; i += 1 + ((seg[i] >> 4) ? 128 : 64))
                if ((seg[i] & 15) <= 3) dqt |= 1u << (seg[i] & 15);
        } else if ((m == 0xc0 || m == 0xc1 || m == 0xc2) && sl >= 6) {
            progressive = m == 0xc2;
            nc = seg[5] < 4 ? seg[5] : 4;
            for (int k = 0; k < nc && 8 + 3 * k < sl; k++) {
                cid[k] = seg[6 + 3 * k];
                ctq[k] = seg[8 + 3 * k] & 15;
            }
        } else if (m == 0xda && sl >= 1 && sl >= 1 + 2 * (int64_t)seg[0] + 3) {
            /* stb decodes with whatever a table it was never given holds:
             * uninitialized heap memory (wild indices, stb_image.h:2120) */
            int ns = seg[0], ss = seg[1 + 2 * ns], ah = seg[3 + 2 * ns] >> 4;
            for (int k = 0; k < ns; k++) {
                int tq = -1;
                for (int q = 0; q < nc; q++)
                    if (cid[q] == seg[1 + 2 * k]) tq = ctq[q];
                int td = seg[2 + 2 * k] >> 4, ta = seg[2 + 2 * k] & 15;
                int need_dc = !progressive || (ss == 0 && ah == 0);
                int need_ac = !progressive || ss > 0;
                if ((tq >= 0 && tq <= 3 && !(dqt >> tq & 1)) ||
                    (need_dc && td <= 3 && !(dht >> td & 1)) ||
                    (need_ac && ta <= 3 && !(dht >> (4 + ta) & 1)))
                    return oc_err_set(err, OC_ERR_PARSE,
                                      "%s: cannot decode as PNG or JPEG: corrupt JPEG: the scan "
                                      "at byte offset %lld uses a quantization or Huffman "
                                      "table that the file never defines",
                                      path, (long long)off);
            }
        }
        off += 2 + len;
    }
    return OC_OK;
}

static enum oc_status precheck(unsigned char *b, int64_t *n, const char *path,
                               struct oc_err *err)
{
    if (*n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return precheck_png(b, n, path, err);
    /* stb decodes only PNG and JPEG here: anything else is read as JPEG */
    return precheck_jpeg(b, *n, path, err);
}

/* Decodes one file into planar floats with c channels; *img is malloc'd. */
static enum oc_status decode(const char *path, int c, float **img, int *ih, int *iw,
                             struct oc_err *err)
{
    unsigned char *bytes = NULL;
    int64_t size = 0;
    enum oc_status s = read_file(path, &bytes, &size, err);
    if (s) return s;
    if ((s = precheck(bytes, &size, path, err))) {
        free(bytes);
        return s;
    }
    int w = 0, h = 0, comp = 0;
    if (stbi_info_from_memory(bytes, (int)size, &w, &h, &comp) &&
        (int64_t)w * h > MAX_IMAGE_PIXELS) {
        free(bytes);
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "%s: image is %dx%d, more than the %lld pixels oodc decodes from one "
                          "file",
                          path, w, h, (long long)MAX_IMAGE_PIXELS);
    }
    unsigned char *px = stbi_load_from_memory(bytes, (int)size, &w, &h, &comp, 0);
    free(bytes);
    if (!px)
        return oc_err_set(err, OC_ERR_PARSE, "%s: cannot decode as PNG or JPEG: %s", path,
                          stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
    if (comp < 1 || comp > 4) {
        stbi_image_free(px);
        return oc_err_set(err, OC_ERR_SHAPE, "%s: unsupported channel count %d", path, comp);
    }
    /* Source colour channels: gray (+alpha) is 1, RGB (+alpha) is 3; alpha is dropped. */
    int sc = comp <= 2 ? 1 : 3;
    int64_t hw = (int64_t)h * w;
    float *planar = malloc((size_t)(sc * hw) * sizeof(float));
    float *out = malloc((size_t)(c * hw) * sizeof(float));
    if (!planar || !out) {
        free(planar);
        free(out);
        stbi_image_free(px);
        return oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory for a %dx%d image", path, w, h);
    }
    for (int64_t k = 0; k < hw; k++)
        for (int ch = 0; ch < sc; ch++)
            planar[ch * hw + k] = (float)px[k * comp + ch] / 255.0f;
    stbi_image_free(px);
    oc_ds_convert_channels(planar, sc, out, c, hw);
    free(planar);
    *img = out;
    *ih = h;
    *iw = w;
    return OC_OK;
}

enum oc_status oc_data_load_folder(const char *dir, enum oc_folder_mode mode, int c, int h, int w,
                                   int64_t n_max, uint64_t seed, struct oc_dataset *out,
                                   struct oc_err *err)
{
    if (!dir || !out) return oc_err_set(err, OC_ERR_INVALID, "image folder: no folder given");
    if (c != 1 && c != 3)
        return oc_err_set(err, OC_ERR_SHAPE,
                          "%s: cannot make %d-channel images: only grayscale (1) or RGB (3)", dir,
                          c);
    if (h <= 0 || w <= 0 || (mode != OC_FOLDER_CROP && mode != OC_FOLDER_RESIZE))
        return oc_err_set(err, OC_ERR_INVALID, "%s: bad image size %dx%d or mode %d", dir, h, w,
                          (int)mode);
    struct pathlist l = {0};
    enum oc_status s = walk(dir, 0, &l, err);
    if (!s && l.n == 0)
        s = oc_err_set(err, OC_ERR_IO, "%s: no PNG or JPEG images (.png, .jpg, .jpeg) found", dir);
    if (s) {
        pathlist_free(&l);
        return s;
    }
    qsort(l.p, (size_t)l.n, sizeof *l.p, cmp_str);

    /* The subset is chosen over the sorted list; a file's crop position is
     * keyed by its index there, so it does not depend on n_max. */
    int64_t n = n_max > 0 && n_max < l.n ? n_max : l.n;
    unsigned char *keep = malloc((size_t)l.n);
    int64_t *perm = malloc((size_t)l.n * sizeof *perm);
    struct oc_dataset ds;
    memset(&ds, 0, sizeof ds);
    int64_t dhw = (int64_t)h * w;
    ds.images = malloc((size_t)(n * c * dhw) * sizeof(float));
    if (!keep || !perm || !ds.images) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", dir);
    if (!s) {
        memset(keep, n == l.n, (size_t)l.n);
        if (n < l.n) {
            oc_ds_permute(perm, l.n, seed, oc_ds_stream(OC_DS_FOLDER_SUBSET, 0));
            for (int64_t i = 0; i < n; i++) keep[perm[i]] = 1;
        }
    }
    free(perm);
    uint64_t cstream = oc_ds_stream(OC_DS_FOLDER_CROP, 0);
    for (int64_t i = 0, j = 0; !s && i < l.n; i++) {
        if (!keep[i]) continue;
        float *img = NULL;
        int ih = 0, iw = 0;
        s = decode(l.p[i], c, &img, &ih, &iw, err);
        if (s) break;
        float *dst = ds.images + j * c * dhw;
        if (mode == OC_FOLDER_RESIZE) {
            for (int ch = 0; ch < c; ch++)
                oc_ds_resample_area(img + ch * (int64_t)ih * iw, ih, iw, dst + ch * dhw, h, w);
        } else if (ih < h || iw < w) {
            s = oc_err_set(err, OC_ERR_SHAPE, "%s: image is %dx%d, smaller than the %dx%d crop",
                           l.p[i], iw, ih, w, h);
        } else {
            int y0 = (int)oc_ds_below(seed, cstream, 2 * (uint64_t)i, (uint64_t)(ih - h + 1));
            int x0 = (int)oc_ds_below(seed, cstream, 2 * (uint64_t)i + 1, (uint64_t)(iw - w + 1));
            for (int ch = 0; ch < c; ch++)
                for (int y = 0; y < h; y++)
                    memcpy(dst + ch * dhw + (int64_t)y * w,
                           img + ch * (int64_t)ih * iw + (int64_t)(y0 + y) * iw + x0,
                           (size_t)w * sizeof(float));
        }
        free(img);
        j++;
    }
    free(keep);
    pathlist_free(&l);
    if (!s) {
        ds.n = n;
        ds.c = c;
        ds.h = h;
        ds.w = w;
        char buf[64];
        snprintf(buf, sizeof buf, "%s:", mode == OC_FOLDER_CROP ? "crop" : "resize");
        size_t len = strlen(buf) + strlen(dir) + 1;
        ds.source = malloc(len);
        if (ds.source) snprintf(ds.source, len, "%s%s", buf, dir);
        else s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    }
    if (s) {
        oc_dataset_free(&ds);
        return s;
    }
    *out = ds;
    return OC_OK;
}
