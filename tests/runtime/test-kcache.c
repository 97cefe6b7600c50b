/* test-kcache.c - the kernel cache (runtime/kcache.c): keys, memory and
 * disk levels, atomic entry files, rejection of corrupted entries,
 * OC_NO_CACHE, the directory rules and the OC_DEBUG trace. Every test
 * works in its own temporary directory under the build tree. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../runtime/kcache.h"

static char dir[512];

static void setup(void)
{
    unsetenv("OC_NO_CACHE");
    unsetenv("OC_CACHE_DIR");
    unsetenv("OC_DEBUG");
    snprintf(dir, sizeof dir, "%s/tests/tmp-kcache-XXXXXX", OC_BINARY_DIR);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", dir);
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat sb;
        if (!lstat(p, &sb) && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(path);
}

static void teardown(void) { rm_tree(dir); }

TestSuite(kcache, .init = setup, .fini = teardown);

static int count_files(const char *path, const char *suffix)
{
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (e->d_name[0] != '.' && l >= s && !strcmp(e->d_name + l - s, suffix)) n++;
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) n += 1000; /* a leftover temp */
    }
    closedir(d);
    return n;
}

static struct oc_kkey key_of(const char *src)
{
    const char *parts[] = {src, "--gpu-architecture=sm_90", "sm_90", "nvrtc 13.0", "oodc test"};
    return oc_kcache_key(parts, 5);
}

Test(kcache, keys_depend_on_every_part_and_its_boundaries)
{
    const char *a[] = {"src", "opt", "sm_90", "13.0", "v1"};
    struct oc_kkey k0 = oc_kcache_key(a, 5);
    struct oc_kkey k1 = oc_kcache_key(a, 5);
    cr_assert(k0.h[0] == k1.h[0] && k0.h[1] == k1.h[1], "the key is deterministic");
    for (int i = 0; i < 5; i++) {
        const char *b[5];
        memcpy(b, a, sizeof b);
        b[i] = "changed";
        struct oc_kkey k = oc_kcache_key(b, 5);
        cr_expect(k.h[0] != k0.h[0] && k.h[1] != k0.h[1], "part %d changes both words", i);
    }
    const char *c1[] = {"ab", "c"}, *c2[] = {"a", "bc"};
    struct oc_kkey x = oc_kcache_key(c1, 2), y = oc_kcache_key(c2, 2);
    cr_assert(x.h[0] != y.h[0] || x.h[1] != y.h[1], "moving a boundary changes the key");
    char hex[33];
    oc_kcache_key_hex(k0, hex);
    cr_assert_eq(strlen(hex), 32);
    cr_assert_eq(strspn(hex, "0123456789abcdef"), 32);
}

Test(kcache, stores_and_finds_entries_in_memory_and_on_disk)
{
    struct oc_err err = {0};
    struct oc_kcache *c;
    cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK, "%s", err.msg);
    cr_assert_str_eq(oc_kcache_dir(c), dir);
    struct oc_kkey k = key_of("kernel A");
    void *d;
    size_t n;
    cr_assert_eq(oc_kcache_get(c, k, "A", &d, &n), 0, "empty cache: a miss");
    const char payload[] = "\x7f" "ELF cubin bytes \0 with a NUL inside";
    oc_kcache_put(c, k, "A", payload, sizeof payload);
    cr_assert_eq(count_files(dir, ".bin"), 1, "one entry file, no temp left behind");
    cr_assert_eq(oc_kcache_get(c, k, "A", &d, &n), 1);
    cr_assert_eq(n, sizeof payload);
    cr_assert_eq(memcmp(d, payload, n), 0);
    free(d);
    struct oc_kcache_stats st;
    oc_kcache_stats(c, &st);
    cr_assert_eq(st.mem_hits, 1);
    cr_assert_eq(st.misses, 1);
    cr_assert_eq(st.stores, 1);
    oc_kcache_close(c);

    /* a new process's cache: the disk level */
    cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
    cr_assert_eq(oc_kcache_get(c, k, "A", &d, &n), 1);
    cr_assert_eq(n, sizeof payload);
    cr_assert_eq(memcmp(d, payload, n), 0);
    free(d);
    cr_assert_eq(oc_kcache_get(c, key_of("kernel B"), "B", &d, &n), 0, "another key misses");
    oc_kcache_stats(c, &st);
    cr_assert_eq(st.disk_hits, 1);
    cr_assert_eq(st.misses, 1);
    /* an empty payload is an entry too */
    oc_kcache_put(c, key_of("empty"), "E", "", 0);
    oc_kcache_close(c);
    cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
    cr_assert_eq(oc_kcache_get(c, key_of("empty"), "E", &d, &n), 1);
    cr_assert_eq(n, 0);
    free(d);
    oc_kcache_close(c);
}

/* Damages the entry file of key k in one of several ways. */
static void damage(struct oc_kcache *c, struct oc_kkey k, int how)
{
    char path[1024];
    oc_kcache_path(c, k, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    switch (how) {
    case 0: /* one flipped bit in the payload */
        fseek(f, size - 3, SEEK_SET);
        {
            int ch = fgetc(f);
            fseek(f, size - 3, SEEK_SET);
            fputc(ch ^ 0x10, f);
        }
        fclose(f);
        break;
    case 1: /* cut short */
        fclose(f);
        cr_assert_eq(truncate(path, size - 5), 0);
        break;
    case 2: /* the magic */
        fseek(f, 0, SEEK_SET);
        fputc('X', f);
        fclose(f);
        break;
    default: /* another key's entry under this name */
        fclose(f);
        {
            char other[1024];
            struct oc_kkey ok = key_of("other kernel");
            oc_kcache_put(c, ok, "other", "other payload", 13);
            oc_kcache_path(c, ok, other, sizeof other);
            cr_assert_eq(rename(other, path), 0);
        }
        break;
    }
}

Test(kcache, corrupted_entries_are_rejected_removed_and_replaced)
{
    struct oc_err err = {0};
    for (int how = 0; how < 4; how++) {
        struct oc_kcache *c;
        cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
        struct oc_kkey k = key_of(how == 0 ? "k0" : how == 1 ? "k1" : how == 2 ? "k2" : "k3");
        const char payload[] = "PTX or CUBIN: some bytes that matter";
        oc_kcache_put(c, k, "X", payload, sizeof payload);
        oc_kcache_close(c);

        cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
        damage(c, k, how);
        void *d = NULL;
        size_t n = 0;
        cr_assert_eq(oc_kcache_get(c, k, "X", &d, &n), 0, "damage %d: not trusted", how);
        cr_assert_null(d);
        struct oc_kcache_stats st;
        oc_kcache_stats(c, &st);
        cr_assert_eq(st.rejected, 1, "damage %d counted", how);
        char path[1024];
        oc_kcache_path(c, k, path, sizeof path);
        cr_assert_neq(access(path, F_OK), 0, "damage %d: the bad entry is removed", how);
        /* the caller recompiles and stores: good again */
        oc_kcache_put(c, k, "X", payload, sizeof payload);
        oc_kcache_close(c);
        cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
        cr_assert_eq(oc_kcache_get(c, k, "X", &d, &n), 1);
        cr_assert_eq(n, sizeof payload);
        cr_assert_eq(memcmp(d, payload, n), 0);
        free(d);
        oc_kcache_close(c);
    }
}

Test(kcache, no_cache_turns_both_levels_off)
{
    setenv("OC_NO_CACHE", "1", 1);
    struct oc_err err = {0};
    struct oc_kcache *c;
    cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
    cr_assert_eq(oc_kcache_enabled(c), 0);
    cr_assert_null(oc_kcache_dir(c));
    struct oc_kkey k = key_of("x");
    oc_kcache_put(c, k, "x", "abc", 3);
    void *d;
    size_t n;
    cr_assert_eq(oc_kcache_get(c, k, "x", &d, &n), 0, "not even memory");
    cr_assert_eq(count_files(dir, ".bin"), 0, "nothing written");
    oc_kcache_close(c);
}

Test(kcache, directory_from_the_environment)
{
    struct oc_err err = {0};
    struct oc_kcache *c;
    char sub[600];
    snprintf(sub, sizeof sub, "%s/from-env/deeper", dir);
    setenv("OC_CACHE_DIR", sub, 1);
    cr_assert_eq(oc_kcache_open(&c, NULL, 0, &err), OC_OK);
    cr_assert_str_eq(oc_kcache_dir(c), sub, "OC_CACHE_DIR, created with its parents");
    oc_kcache_put(c, key_of("e"), "e", "1", 1);
    cr_assert_eq(count_files(sub, ".bin"), 1);
    oc_kcache_close(c);

    unsetenv("OC_CACHE_DIR");
    setenv("XDG_CACHE_HOME", dir, 1);
    cr_assert_eq(oc_kcache_open(&c, NULL, 0, &err), OC_OK);
    char want[700];
    snprintf(want, sizeof want, "%s/oodc/kernels", dir);
    cr_assert_str_eq(oc_kcache_dir(c), want, "default under $XDG_CACHE_HOME");
    oc_kcache_close(c);
}

Test(kcache, an_unusable_directory_leaves_a_memory_cache)
{
    struct oc_err err = {0};
    char file[600];
    snprintf(file, sizeof file, "%s/a-file", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    char bad[700];
    snprintf(bad, sizeof bad, "%s/below", file); /* a directory under a regular file */
    struct oc_kcache *c;
    cr_assert_eq(oc_kcache_open(&c, bad, 0, &err), OC_OK, "not an error: %s", err.msg);
    cr_assert_null(oc_kcache_dir(c));
    cr_assert_eq(oc_kcache_enabled(c), 1);
    struct oc_kkey k = key_of("m");
    oc_kcache_put(c, k, "m", "mem", 3);
    void *d;
    size_t n;
    cr_assert_eq(oc_kcache_get(c, k, "m", &d, &n), 1, "the memory level still works");
    free(d);
    oc_kcache_close(c);
}

Test(kcache, debug_traces_hits_misses_and_rejections)
{
    char log[600];
    snprintf(log, sizeof log, "%s/stderr.txt", dir);
    fflush(stderr);
    cr_assert_not_null(freopen(log, "w", stderr));
    setenv("OC_DEBUG", "1", 1);
    struct oc_err err = {0};
    struct oc_kcache *c;
    cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
    struct oc_kkey k = key_of("traced");
    void *d;
    size_t n;
    oc_kcache_get(c, k, "traced-kernel", &d, &n);
    oc_kcache_put(c, k, "traced-kernel", "zz", 2);
    oc_kcache_get(c, k, "traced-kernel", &d, &n);
    free(d);
    oc_kcache_close(c);
    cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
    damage(c, k, 0);
    oc_kcache_get(c, k, "traced-kernel", &d, &n);
    oc_kcache_close(c);
    fflush(stderr);
    FILE *f = fopen(log, "r");
    cr_assert_not_null(f);
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = 0;
    fclose(f);
    cr_assert(strstr(text, "kcache: miss"), "a miss is traced:\n%s", text);
    cr_assert(strstr(text, "kcache: stored"), "a store is traced:\n%s", text);
    cr_assert(strstr(text, "kcache: hit (memory)"), "a hit is traced:\n%s", text);
    cr_assert(strstr(text, "checksum mismatch"), "a rejection says why:\n%s", text);
    cr_assert(strstr(text, "traced-kernel"), "messages name the entry:\n%s", text);
}
