/* kcache.c - the kernel cache (see kcache.h): an in-memory table in front
 * of a directory of checksummed entry files written by rename.
 */
#include "kcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "OCKCACHE"
#define FORMAT 1u
#define HDR 48

/* ---------------------------------------------------------------- keys */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* A second 64-bit hash, unrelated to oc_hash64's FNV structure, so the two
 * words of a key fail independently. */
static uint64_t hash_words(const void *data, size_t n, uint64_t h)
{
    const unsigned char *p = data;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ mix64(w + 0x9e3779b97f4a7c15ull));
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix64(h ^ mix64(w ^ ((uint64_t)n << 56) ^ 0x2545f4914f6cdd1dull));
}

struct oc_kkey oc_kcache_key(const char *const *parts, int nparts)
{
    struct oc_kkey k = {{0xcbf29ce484222325ull, 0x6a09e667f3bcc909ull}};
    for (int i = 0; i < nparts; i++) {
        const char *s = parts[i] ? parts[i] : "";
        uint64_t len = strlen(s);
        k.h[0] = oc_hash64(&len, sizeof len, k.h[0]);
        k.h[0] = oc_hash64(s, len, k.h[0]);
        k.h[1] = hash_words(&len, sizeof len, k.h[1]);
        k.h[1] = hash_words(s, len, k.h[1]);
    }
    return k;
}

void oc_kcache_key_hex(struct oc_kkey k, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)k.h[0], (unsigned long long)k.h[1]);
}

static uint64_t checksum(const void *data, size_t n) { return hash_words(data, n, 0x6f6f64636b63ull); }

/* ---------------------------------------------------------------- the cache */

struct ment {
    struct oc_kkey key;
    void *data;
    size_t size;
};

struct oc_kcache {
    int enabled, debug;
    char *dir; /* NULL: memory only */
    struct ment *m;
    size_t nm, capm;
    struct oc_kcache_stats st;
    unsigned seq;
};

static int env_int(const char *name)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : 0;
}

/* mkdir -p; 0 on success */
static int mkdirs(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf) return -1;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return -1;
    struct stat sb;
    return stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

static char *default_dir(void)
{
    const char *d = getenv("OC_CACHE_DIR");
    char buf[4096];
    if (d && *d) return strdup(d);
    d = getenv("XDG_CACHE_HOME");
    if (d && *d) {
        snprintf(buf, sizeof buf, "%s/oodc/kernels", d);
        return strdup(buf);
    }
    d = getenv("HOME");
    if (d && *d) {
        snprintf(buf, sizeof buf, "%s/.cache/oodc/kernels", d);
        return strdup(buf);
    }
    return NULL;
}

enum oc_status oc_kcache_open(struct oc_kcache **out, const char *dir, int debug,
                              struct oc_err *err)
{
    *out = NULL;
    struct oc_kcache *c = calloc(1, sizeof *c);
    if (!c) return oc_err_set(err, OC_ERR_NOMEM, "kernel cache: out of memory");
    int envdbg = env_int("OC_DEBUG");
    c->debug = debug > envdbg ? debug : envdbg;
    c->enabled = !env_int("OC_NO_CACHE");
    if (!c->enabled) {
        if (c->debug >= 1) fprintf(stderr, "kcache: off (OC_NO_CACHE=1)\n");
        *out = c;
        return OC_OK;
    }
    c->dir = dir ? strdup(dir) : default_dir();
    if (c->dir && mkdirs(c->dir)) {
        if (c->debug >= 1)
            fprintf(stderr, "kcache: cannot use directory %s (%s): caching in memory only\n", c->dir,
                    strerror(errno));
        free(c->dir);
        c->dir = NULL;
    }
    if (c->debug >= 1 && c->dir) fprintf(stderr, "kcache: directory %s\n", c->dir);
    *out = c;
    return OC_OK;
}

void oc_kcache_close(struct oc_kcache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nm; i++) free(c->m[i].data);
    free(c->m);
    free(c->dir);
    free(c);
}

int oc_kcache_enabled(const struct oc_kcache *c) { return c && c->enabled; }
const char *oc_kcache_dir(const struct oc_kcache *c) { return c && c->enabled ? c->dir : NULL; }

void oc_kcache_path(const struct oc_kcache *c, struct oc_kkey key, char *buf, size_t n)
{
    char hex[33];
    oc_kcache_key_hex(key, hex);
    snprintf(buf, n, "%s/%s.bin", c && c->dir ? c->dir : ".", hex);
}

void oc_kcache_stats(const struct oc_kcache *c, struct oc_kcache_stats *st)
{
    if (c) *st = c->st;
    else memset(st, 0, sizeof *st);
}

static int key_eq(struct oc_kkey a, struct oc_kkey b) { return a.h[0] == b.h[0] && a.h[1] == b.h[1]; }

static struct ment *mem_find(struct oc_kcache *c, struct oc_kkey key)
{
    for (size_t i = 0; i < c->nm; i++)
        if (key_eq(c->m[i].key, key)) return &c->m[i];
    return NULL;
}

static void mem_put(struct oc_kcache *c, struct oc_kkey key, const void *data, size_t size)
{
    struct ment *e = mem_find(c, key);
    void *copy = malloc(size ? size : 1);
    if (!copy) return;
    memcpy(copy, data, size);
    if (e) {
        free(e->data);
        e->data = copy;
        e->size = size;
        return;
    }
    if (c->nm == c->capm) {
        size_t nc = c->capm ? c->capm * 2 : 32;
        struct ment *q = realloc(c->m, nc * sizeof *q);
        if (!q) {
            free(copy);
            return;
        }
        c->m = q;
        c->capm = nc;
    }
    c->m[c->nm++] = (struct ment){key, copy, size};
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Reads and checks an entry file: 1 valid (payload malloc'd), 0 absent,
 * -1 present but rejected (why says why). */
static int disk_read(const char *path, struct oc_kkey key, void **data, size_t *size, char *why,
                     size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char h[HDR];
    int rc = -1;
    unsigned char *buf = NULL;
    if (fread(h, 1, HDR, f) != HDR) {
        snprintf(why, n, "truncated header");
        goto out;
    }
    if (memcmp(h, MAGIC, 8)) {
        snprintf(why, n, "not a kernel cache entry");
        goto out;
    }
    if (get_u32(h + 8) != FORMAT) {
        snprintf(why, n, "format %u, expected %u", get_u32(h + 8), FORMAT);
        goto out;
    }
    /* the checksum covers only the payload: every other header byte is
     * checked on its own, so a flipped bit anywhere is caught */
    if (get_u32(h + 12) != 0) {
        snprintf(why, n, "reserved header bytes are not zero");
        goto out;
    }
    if (get_u64(h + 16) != key.h[0] || get_u64(h + 24) != key.h[1]) {
        snprintf(why, n, "key mismatch");
        goto out;
    }
    uint64_t sz = get_u64(h + 32), sum = get_u64(h + 40);
    if (fseek(f, 0, SEEK_END) || ftell(f) < 0 || (uint64_t)ftell(f) != HDR + sz) {
        snprintf(why, n, "size mismatch (header says %llu payload bytes)", (unsigned long long)sz);
        goto out;
    }
    if (fseek(f, HDR, SEEK_SET)) {
        snprintf(why, n, "seek failed");
        goto out;
    }
    buf = malloc(sz ? sz : 1);
    if (!buf || fread(buf, 1, sz, f) != sz) {
        snprintf(why, n, buf ? "short read" : "out of memory");
        goto out;
    }
    if (checksum(buf, sz) != sum) {
        snprintf(why, n, "checksum mismatch");
        goto out;
    }
    *data = buf;
    *size = sz;
    buf = NULL;
    rc = 1;
out:
    free(buf);
    fclose(f);
    return rc;
}

int oc_kcache_get(struct oc_kcache *c, struct oc_kkey key, const char *what, void **data,
                  size_t *size)
{
    *data = NULL;
    *size = 0;
    if (!c || !c->enabled) return 0;
    char hex[33];
    oc_kcache_key_hex(key, hex);
    struct ment *e = mem_find(c, key);
    if (e) {
        void *copy = malloc(e->size ? e->size : 1);
        if (copy) {
            memcpy(copy, e->data, e->size);
            *data = copy;
            *size = e->size;
            c->st.mem_hits++;
            if (c->debug >= 1) fprintf(stderr, "kcache: hit (memory) %s %s, %zu bytes\n", hex, what, e->size);
            return 1;
        }
    }
    if (c->dir) {
        char path[4200], why[256] = "";
        oc_kcache_path(c, key, path, sizeof path);
        int r = disk_read(path, key, data, size, why, sizeof why);
        if (r == 1) {
            c->st.disk_hits++;
            mem_put(c, key, *data, *size);
            if (c->debug >= 1) fprintf(stderr, "kcache: hit (disk) %s %s, %zu bytes\n", hex, what, *size);
            return 1;
        }
        if (r < 0) {
            c->st.rejected++;
            if (c->debug >= 1)
                fprintf(stderr, "kcache: rejected %s (%s): %s; recompiling\n", path, what, why);
            unlink(path);
        }
    }
    c->st.misses++;
    if (c->debug >= 1) fprintf(stderr, "kcache: miss %s %s\n", hex, what);
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *q = p;
    while (n) {
        ssize_t w = write(fd, q, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        q += w;
        n -= (size_t)w;
    }
    return 0;
}

void oc_kcache_put(struct oc_kcache *c, struct oc_kkey key, const char *what, const void *data,
                   size_t size)
{
    if (!c || !c->enabled) return;
    mem_put(c, key, data, size);
    c->st.stores++;
    if (!c->dir) return;
    char path[4200], tmp[4300], hex[33];
    oc_kcache_path(c, key, path, sizeof path);
    oc_kcache_key_hex(key, hex);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld.%u", c->dir, hex, (long)getpid(), c->seq++);
    unsigned char h[HDR];
    memset(h, 0, sizeof h);
    memcpy(h, MAGIC, 8);
    put_u32(h + 8, FORMAT);
    put_u64(h + 16, key.h[0]);
    put_u64(h + 24, key.h[1]);
    put_u64(h + 32, size);
    put_u64(h + 40, checksum(data, size));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    int bad = fd < 0;
    if (!bad) {
        bad = write_all(fd, h, HDR) || write_all(fd, data, size) || fsync(fd);
        bad |= close(fd) != 0;
    }
    if (!bad) bad = rename(tmp, path) != 0;
    if (bad) {
        int e = errno;
        if (fd >= 0) unlink(tmp);
        c->st.write_errors++;
        if (c->debug >= 1) fprintf(stderr, "kcache: cannot write %s (%s): %s\n", path, what, strerror(e));
        return;
    }
    if (c->debug >= 1) fprintf(stderr, "kcache: stored %s %s, %zu bytes\n", hex, what, size);
}
