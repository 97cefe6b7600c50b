/* npy.c - NumPy .npy files <-> host tensors (struct oc_buf). The interchange
 * format with NumPy/PyTorch for test fixtures, `oodc graph eval` inputs and
 * dumped activations. Reads format 1.0, 2.0 and 3.0 with little-endian
 * f4/f8/i4 and u1 in C order; writes 1.0 byte-identical to np.save, through
 * a temporary file that is fsync'd and renamed into place so a reader never
 * sees a partial file. Every check names the file and the problem. */
#include "ir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* np.load refuses headers over 10000 bytes by default; allow some slack */
#define NPY_MAX_HEADER (1u << 20)

struct npy_info {
    enum oc_dtype dtype;
    struct oc_shape shape;
    size_t data_off; /* bytes before the data */
    size_t nbytes;   /* data bytes */
};

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* ---------------------------------------------------------------- header */

/* The fixed preamble: magic, version, header length. `have` bytes are
 * available at b. Sets *hdr_off (where the dict starts) and *hdr_len. */
static enum oc_status npy_preamble(const unsigned char *b, size_t have, const char *src,
                                   size_t *hdr_off, size_t *hdr_len, struct oc_err *err)
{
    if (have < 8 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return oc_err_set(err, OC_ERR_PARSE, "%s: not a .npy file (bad magic)", src);
    int major = b[6], minor = b[7];
    if (minor != 0 || major < 1 || major > 3)
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "%s: unsupported .npy format version %d.%d (1.0, 2.0 or 3.0)", src,
                          major, minor);
    size_t need = major == 1 ? 10 : 12;
    if (have < need)
        return oc_err_set(err, OC_ERR_PARSE, "%s: truncated .npy preamble (%zu of %zu bytes)",
                          src, have, need);
    if (major == 1)
        *hdr_len = (size_t)b[8] | (size_t)b[9] << 8;
    else
        *hdr_len = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    *hdr_off = need;
    if (*hdr_len > NPY_MAX_HEADER)
        return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header of %zu bytes is too long (limit %u)",
                          src, *hdr_len, NPY_MAX_HEADER);
    return OC_OK;
}

struct hscan {
    const char *p, *end;
};

static void skip_ws(struct hscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* A Python string literal without escapes ('...' or "..."), copied to buf. */
static int scan_pystr(struct hscan *s, char *buf, size_t cap)
{
    if (s->p >= s->end || (*s->p != '\'' && *s->p != '"')) return -1;
    char q = *s->p++;
    size_t n = 0;
    while (s->p < s->end && *s->p != q) {
        if (*s->p == '\\' || *s->p == '\n' || n + 1 >= cap) return -1;
        buf[n++] = *s->p++;
    }
    if (s->p >= s->end) return -1;
    s->p++;
    buf[n] = 0;
    return 0;
}

static int scan_word(struct hscan *s, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return 0;
    s->p += n;
    return 1;
}

/* Parses the header dict {'descr': ..., 'fortran_order': ..., 'shape': (...)}
 * (keys in any order, each exactly once) and sizes the data. */
static enum oc_status npy_dict(const char *h, size_t n, const char *src, struct npy_info *info,
                               struct oc_err *err)
{
    struct hscan s = {h, h + n};
    char key[32], descr[32] = "";
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0, fortran = 0;
    struct oc_shape shape = {0};

    skip_ws(&s);
    if (s.p >= s.end || *s.p++ != '{')
        return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header is not a dict", src);
    for (;;) {
        skip_ws(&s);
        if (s.p < s.end && *s.p == '}') {
            s.p++;
            break;
        }
        if (scan_pystr(&s, key, sizeof key))
            return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: expected a key at byte %zu",
                              src, (size_t)(s.p - h));
        skip_ws(&s);
        if (s.p >= s.end || *s.p++ != ':')
            return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: expected ':' after '%s'", src,
                              key);
        skip_ws(&s);
        if (!strcmp(key, "descr")) {
            if (seen_descr++)
                return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: 'descr' given twice", src);
            if (scan_pystr(&s, descr, sizeof descr))
                return oc_err_set(err, OC_ERR_UNSUPPORTED,
                                  "%s: .npy header: 'descr' is not a simple type string "
                                  "(structured dtypes are not supported)",
                                  src);
        } else if (!strcmp(key, "fortran_order")) {
            if (seen_fortran++)
                return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: 'fortran_order' given twice",
                                  src);
            if (scan_word(&s, "True"))
                fortran = 1;
            else if (!scan_word(&s, "False"))
                return oc_err_set(err, OC_ERR_PARSE,
                                  "%s: .npy header: 'fortran_order' must be True or False", src);
        } else if (!strcmp(key, "shape")) {
            if (seen_shape++)
                return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: 'shape' given twice", src);
            if (s.p >= s.end || *s.p++ != '(')
                return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: 'shape' is not a tuple",
                                  src);
            for (;;) {
                skip_ws(&s);
                if (s.p < s.end && *s.p == ')') {
                    s.p++;
                    break;
                }
                if (s.p >= s.end || *s.p < '0' || *s.p > '9')
                    return oc_err_set(err, OC_ERR_PARSE,
                                      "%s: .npy header: bad dimension in 'shape' at byte %zu", src,
                                      (size_t)(s.p - h));
                int64_t d = 0;
                while (s.p < s.end && *s.p >= '0' && *s.p <= '9') {
                    if (d > (INT64_MAX - 9) / 10)
                        return oc_err_set(err, OC_ERR_PARSE,
                                          "%s: .npy header: dimension in 'shape' overflows", src);
                    d = d * 10 + (*s.p++ - '0');
                }
                if (s.p < s.end && *s.p == 'L') s.p++; /* Python 2 longs */
                if (shape.rank == OC_MAX_RANK)
                    return oc_err_set(err, OC_ERR_UNSUPPORTED,
                                      "%s: array has more than %d dimensions", src, OC_MAX_RANK);
                shape.dim[shape.rank++] = d;
                skip_ws(&s);
                if (s.p < s.end && *s.p == ',') {
                    s.p++;
                    continue;
                }
                if (s.p < s.end && *s.p == ')') {
                    s.p++;
                    break;
                }
                return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: malformed 'shape' tuple",
                                  src);
            }
        } else {
            return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: unexpected key '%s'", src, key);
        }
        skip_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        if (s.p < s.end && *s.p == '}') {
            s.p++;
            break;
        }
        return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: expected ',' or '}' at byte %zu",
                          src, (size_t)(s.p - h));
    }
    skip_ws(&s);
    if (s.p != s.end)
        return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header: unexpected bytes after the dict",
                          src);
    if (!seen_descr || !seen_fortran || !seen_shape)
        return oc_err_set(err, OC_ERR_PARSE, "%s: .npy header lacks '%s'", src,
                          !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");

    if (!strcmp(descr, "<f4"))
        info->dtype = OC_F32;
    else if (!strcmp(descr, "<f8"))
        info->dtype = OC_F64;
    else if (!strcmp(descr, "<i4"))
        info->dtype = OC_I32;
    else if (!strcmp(descr, "|u1"))
        info->dtype = OC_U8;
    else
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "%s: unsupported dtype descr '%s' (supported: '<f4', '<f8', '<i4', '|u1')",
                          src, descr);
    if (fortran)
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "%s: fortran_order=True is not supported (save a C-ordered array, "
                          "e.g. np.ascontiguousarray)",
                          src);
    /* numel, and every partial product (future strides), must stay sane */
    size_t isz = oc_dtype_size(info->dtype);
    uint64_t numel = 1, span = 1;
    for (int i = 0; i < shape.rank; i++) {
        uint64_t d = (uint64_t)shape.dim[i];
        if (d > 1 && span > ((uint64_t)INT64_MAX / isz) / d)
            return oc_err_set(err, OC_ERR_PARSE,
                              "%s: shape with %d dims: element count overflows", src, shape.rank);
        if (d > 1) span *= d;
        numel *= d;
    }
#if SIZE_MAX < UINT64_MAX
    if (numel * isz > SIZE_MAX)
        return oc_err_set(err, OC_ERR_NOMEM, "%s: array too large for this machine", src);
#endif
    info->shape = shape;
    info->nbytes = (size_t)(numel * isz);
    return OC_OK;
}

static char *shape_tuple(const struct oc_shape *s, char *buf, size_t cap)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "(");
    for (int i = 0; i < s->rank && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ", %" PRId64 : "%" PRId64, s->dim[i]);
    if (k < cap) k += (size_t)snprintf(buf + k, cap - k, s->rank == 1 ? ",)" : ")");
    return buf;
}

/* Header (the `hdr_len` bytes at hdr) plus the file's total size: checks
 * that the data is exactly there. */
static enum oc_status npy_info(const char *hdr, size_t hdr_off, size_t hdr_len, uint64_t total,
                               const char *src, struct npy_info *info, struct oc_err *err)
{
    for (size_t i = 0; i < hdr_len; i++)
        if (hdr[i] == 0)
            return oc_err_set(err, OC_ERR_PARSE, "%s: NUL byte in the .npy header", src);
    if (npy_dict(hdr, hdr_len, src, info, err)) return err ? err->code : OC_ERR_PARSE;
    info->data_off = hdr_off + hdr_len;
    uint64_t have = total - info->data_off;
    if (have != info->nbytes) {
        char tb[200];
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: %s: a %s array of shape %s needs %zu data bytes after the "
                          "%zu-byte header, the file has %" PRIu64,
                          src, have < info->nbytes ? "truncated" : "trailing bytes after the data",
                          oc_dtype_name(info->dtype), shape_tuple(&info->shape, tb, sizeof tb),
                          info->nbytes, info->data_off, have);
    }
    return OC_OK;
}

/* ---------------------------------------------------------------- reading */

enum oc_status oc_npy_parse(const void *bytes, size_t n, const char *source_name,
                            struct oc_buf *out, struct oc_err *err)
{
    const char *src = source_name ? source_name : "<memory>";
    const unsigned char *b = bytes;
    memset(out, 0, sizeof *out);
    if (!host_is_little_endian())
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "%s: .npy reading needs a little-endian host",
                          src);
    size_t off, len;
    if (npy_preamble(b, n, src, &off, &len, err)) return err ? err->code : OC_ERR_PARSE;
    if (n - off < len)
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: truncated: the .npy header claims %zu bytes, only %zu follow", src,
                          len, n - off);
    struct npy_info info;
    if (npy_info((const char *)b + off, off, len, n, src, &info, err))
        return err ? err->code : OC_ERR_PARSE;
    if (oc_buf_alloc(out, info.dtype, &info.shape))
        return oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory for %zu bytes", src, info.nbytes);
    memcpy(out->data, b + info.data_off, info.nbytes);
    return OC_OK;
}

static int read_full(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n ? 0 : -1; }

enum oc_status oc_npy_read(const char *path, struct oc_buf *out, struct oc_err *err)
{
    memset(out, 0, sizeof *out);
    if (!host_is_little_endian())
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "%s: .npy reading needs a little-endian host",
                          path);
    FILE *f = fopen(path, "rb");
    if (!f) return oc_err_set(err, OC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return oc_err_set(err, OC_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return oc_err_set(err, OC_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t total = (uint64_t)st.st_size;
    unsigned char pre[12];
    size_t have = total < sizeof pre ? (size_t)total : sizeof pre;
    size_t off, len;
    char *hdr = NULL;
    struct npy_info info;
    enum oc_status s;
    if (read_full(f, pre, have)) {
        s = oc_err_set(err, OC_ERR_IO, "%s: read error", path);
        goto done;
    }
    if ((s = npy_preamble(pre, have, path, &off, &len, err))) goto done;
    if (total - off < len) {
        s = oc_err_set(err, OC_ERR_PARSE,
                       "%s: truncated: the .npy header claims %zu bytes, only %" PRIu64
                       " follow",
                       path, len, total - off);
        goto done;
    }
    hdr = malloc(len ? len : 1);
    if (!hdr) {
        s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    /* the version-1 preamble is 10 bytes: 2 header bytes may be in pre */
    size_t in_pre = have > off ? have - off : 0;
    if (in_pre > len) in_pre = len;
    memcpy(hdr, pre + off, in_pre);
    if (read_full(f, hdr + in_pre, len - in_pre)) {
        s = oc_err_set(err, OC_ERR_IO, "%s: read error in the header", path);
        goto done;
    }
    if ((s = npy_info(hdr, off, len, total, path, &info, err))) goto done;
    if (oc_buf_alloc(out, info.dtype, &info.shape)) {
        s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory for %zu bytes", path, info.nbytes);
        goto done;
    }
    /* 12 bytes were read; for version 1 that is 2 bytes past the preamble */
    if (fseeko(f, (off_t)info.data_off, SEEK_SET) != 0 || read_full(f, out->data, info.nbytes)) {
        s = oc_err_set(err, OC_ERR_IO, "%s: read error in the data: %s", path,
                       ferror(f) ? strerror(errno) : "unexpected end of file");
        oc_buf_free(out);
        goto done;
    }
    s = OC_OK;
done:
    free(hdr);
    fclose(f);
    return s;
}

/* ---------------------------------------------------------------- writing */

static int write_full(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

enum oc_status oc_npy_write(const char *path, const struct oc_buf *b, struct oc_err *err)
{
    static const char *const descr[OC_DTYPE_COUNT] = {"<f4", "<f8", "<i4", "|u1"};
    if (!host_is_little_endian())
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "%s: .npy writing needs a little-endian host",
                          path);
    if ((unsigned)b->dtype >= OC_DTYPE_COUNT)
        return oc_err_set(err, OC_ERR_INVALID, "%s: cannot write dtype %d", path, (int)b->dtype);
    if (b->shape.rank < 0 || b->shape.rank > OC_MAX_RANK)
        return oc_err_set(err, OC_ERR_INVALID, "%s: bad rank %d", path, b->shape.rank);
    uint64_t numel = 1;
    size_t isz = oc_dtype_size(b->dtype);
    for (int i = 0; i < b->shape.rank; i++) {
        uint64_t d = (uint64_t)b->shape.dim[i];
        if (b->shape.dim[i] < 0)
            return oc_err_set(err, OC_ERR_INVALID, "%s: negative dimension", path);
        if (d && numel > ((uint64_t)INT64_MAX / isz) / d)
            return oc_err_set(err, OC_ERR_INVALID, "%s: element count overflows", path);
        numel *= d;
    }
    size_t nbytes = (size_t)(numel * isz);
    if (nbytes && !b->data) return oc_err_set(err, OC_ERR_INVALID, "%s: buffer has no data", path);

    /* The header exactly as numpy's _write_array_header writes it: sorted
     * keys, spare room for the first dimension to grow to 21 digits, then
     * spaces and '\n' so the data starts at a multiple of 64 bytes. */
    char hdr[512], tb[200], d0[32];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr[b->dtype], shape_tuple(&b->shape, tb, sizeof tb));
    if (b->shape.rank > 0) {
        int spare = 21 - snprintf(d0, sizeof d0, "%" PRId64, b->shape.dim[0]);
        while (spare-- > 0) hdr[hl++] = ' ';
    }
    size_t hlen = (size_t)hl + 1;
    size_t pad = 64 - (10 + hlen) % 64;
    unsigned char pre[10];
    memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)((hlen + pad) & 0xff);
    pre[9] = (unsigned char)((hlen + pad) >> 8);
    memset(hdr + hl, ' ', pad);
    hdr[hl + pad] = '\n';
    size_t htotal = (size_t)hl + pad + 1;

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    /* O_EXCL: never write through a link planted at the temp name */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0 && errno == EEXIST) { /* a leftover of a crashed writer with our pid */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    }
    if (fd < 0) {
        enum oc_status s = oc_err_set(err, OC_ERR_IO, "%s: cannot create %s: %s", path, tmp,
                                      strerror(errno));
        free(tmp);
        return s;
    }
    const char *step = "write";
    if (write_full(fd, pre, sizeof pre) || write_full(fd, hdr, htotal) ||
        write_full(fd, b->data, nbytes))
        goto fail;
    step = "fsync";
    if (fsync(fd) != 0) goto fail;
    step = "close";
    {
        int r = close(fd);
        fd = -1;
        if (r != 0) goto fail;
    }
    step = "rename";
    if (rename(tmp, path) != 0) goto fail;
    free(tmp);
    {
        /* make the rename itself durable; best effort */
        char *dir = strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
            int dfd = open(d, O_RDONLY | O_DIRECTORY);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    return OC_OK;
fail : {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    enum oc_status s =
        oc_err_set(err, OC_ERR_IO, "%s: %s failed: %s (nothing written)", path, step, strerror(e));
    free(tmp);
    return s;
}
}
