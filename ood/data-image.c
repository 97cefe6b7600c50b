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

/* Decodes one file into planar floats with c channels; *img is malloc'd. */
static enum oc_status decode(const char *path, int c, float **img, int *ih, int *iw,
                             struct oc_err *err)
{
    unsigned char *bytes = NULL;
    int64_t size = 0;
    enum oc_status s = read_file(path, &bytes, &size, err);
    if (s) return s;
    int w = 0, h = 0, comp = 0;
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
