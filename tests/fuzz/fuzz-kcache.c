/* fuzz-kcache.c - fuzz target for the kernel-cache entry loader
 * (runtime/kcache.c: oc_kcache_get reading <dir>/<key>.bin).
 *
 * Input: byte 0 holds fix-up flags, the rest is the entry file as found on
 * disk under the key the target looks up. The header (48 bytes: magic,
 * format, key, payload size, payload checksum) guards the payload with a
 * checksum the fuzzer cannot guess, so the flags let the harness write the
 * right values before the load, reaching the paths past each check:
 *   bit 0  set the key fields to the looked-up key
 *   bit 1  set the size field to the file's payload length
 *   bit 2  set the checksum field to the payload's checksum (computed by
 *          storing the payload with oc_kcache_put under a second key)
 * A load must then either hit with exactly the file's payload, or miss,
 * count the entry as rejected and remove the file. Finally the payload is
 * stored and read back through a fresh cache: it must come back equal. */
#include "fuzz-common.h"

#include "../../runtime/kcache.h"

#define FUZZ_KC_HDR 48

static void fuzz_kc_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int fuzz_kc_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The whole file at path (malloc'd), or NULL. */
static uint8_t *fuzz_kc_slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *b = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *q = realloc(b, cap);
            OC_FUZZ_CHECK(q != NULL, "out of memory");
            b = q;
        }
        size_t got = fread(b + len, 1, cap - len, f);
        if (!got) break;
        len += got;
    }
    fclose(f);
    *n = len;
    return b;
}

OC_FUZZ_ENTRY(kcache)
{
    if (size < 1) return 0;
    int flags = data[0];
    size_t n = size - 1;
    uint8_t *file = malloc(n ? n : 1);
    OC_FUZZ_CHECK(file != NULL, "out of memory");
    memcpy(file, data + 1, n);

    char dir[300];
    snprintf(dir, sizeof dir, "%s/kc", oc_fuzz_dir());
    static const char *const kparts[] = {"fuzz", "kcache"};
    static const char *const sparts[] = {"fuzz", "scratch"};
    struct oc_kkey key = oc_kcache_key(kparts, 2), skey = oc_kcache_key(sparts, 2);
    struct oc_err err = {0};
    struct oc_kcache *c = NULL;
    unsetenv("OC_NO_CACHE"); /* the disk level is what is fuzzed */
    OC_FUZZ_CHECK(oc_kcache_open(&c, dir, 0, &err) == OC_OK && c, "open: %s", err.msg);
    OC_FUZZ_CHECK(oc_kcache_enabled(c) && oc_kcache_dir(c), "no disk level in %s", dir);
    char path[4200], spath[4200];
    oc_kcache_path(c, key, path, sizeof path);
    oc_kcache_path(c, skey, spath, sizeof spath);

    if (n >= FUZZ_KC_HDR) {
        const uint8_t *payload = file + FUZZ_KC_HDR;
        size_t plen = n - FUZZ_KC_HDR;
        if (flags & 1) {
            fuzz_kc_put64(file + 16, key.h[0]);
            fuzz_kc_put64(file + 24, key.h[1]);
        }
        if (flags & 2) fuzz_kc_put64(file + 32, plen);
        if (flags & 4) {
            /* the checksum field of an entry the cache writes itself */
            oc_kcache_put(c, skey, "fuzz-scratch", payload, plen);
            size_t sn = 0;
            uint8_t *s = fuzz_kc_slurp(spath, &sn);
            OC_FUZZ_CHECK(s && sn == FUZZ_KC_HDR + plen, "scratch entry not written");
            memcpy(file + 40, s + 40, 8);
            free(s);
            unlink(spath);
        }
    }
    oc_fuzz_write(path, file, n);

    /* A fresh cache: nothing in memory, so the lookup reads the file. */
    oc_kcache_close(c);
    OC_FUZZ_CHECK(oc_kcache_open(&c, dir, 0, &err) == OC_OK && c, "open: %s", err.msg);
    void *got = NULL;
    size_t gotn = 0;
    int r = oc_kcache_get(c, key, "fuzz", &got, &gotn);
    struct oc_kcache_stats st;
    oc_kcache_stats(c, &st);
    if (r == 1) {
        OC_FUZZ_CHECK(n >= FUZZ_KC_HDR && gotn == n - FUZZ_KC_HDR, "hit of %zu bytes from a %zu-byte file",
                      gotn, n);
        OC_FUZZ_CHECK(!gotn || !memcmp(got, file + FUZZ_KC_HDR, gotn), "hit payload differs");
        OC_FUZZ_CHECK(st.disk_hits == 1, "hit not counted");
        free(got);
        unlink(path);
    } else {
        OC_FUZZ_CHECK(r == 0 && got == NULL && gotn == 0, "miss returned %d with data", r);
        OC_FUZZ_CHECK(st.rejected == 1 && st.misses == 1, "rejected %ld, misses %ld", st.rejected,
                      st.misses);
        OC_FUZZ_CHECK(!fuzz_kc_exists(path), "rejected entry %s not removed", path);
    }
    oc_kcache_close(c);

    /* Store the payload, then read it back through another fresh cache. */
    const uint8_t *payload = n >= FUZZ_KC_HDR ? file + FUZZ_KC_HDR : file;
    size_t plen = n >= FUZZ_KC_HDR ? n - FUZZ_KC_HDR : n;
    OC_FUZZ_CHECK(oc_kcache_open(&c, dir, 0, &err) == OC_OK && c, "open: %s", err.msg);
    oc_kcache_put(c, key, "fuzz", payload, plen);
    oc_kcache_close(c);
    OC_FUZZ_CHECK(oc_kcache_open(&c, dir, 0, &err) == OC_OK && c, "open: %s", err.msg);
    r = oc_kcache_get(c, key, "fuzz", &got, &gotn);
    OC_FUZZ_CHECK(r == 1 && gotn == plen && (!plen || !memcmp(got, payload, plen)),
                  "stored entry does not read back (r=%d, %zu of %zu bytes)", r, gotn, plen);
    free(got);
    oc_kcache_close(c);
    unlink(path);
    free(file);
    return 0;
}
