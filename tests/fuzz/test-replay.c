/* test-replay.c - runs every fuzz target (tests/fuzz/fuzz-*.c) over its
 * committed corpus (tests/fuzz/corpus/<name>/), so the normal suite and the
 * sanitized one (scripts/sanitize.sh) re-check, without clang or libFuzzer,
 * every input a fuzzing run found interesting: no crash, no sanitizer report,
 * no leak, and each target's own checks (round trips, sizes, error
 * messages) hold. Crash inputs live in tests/fuzz/crashes/<name>/ and are
 * replayed by the regression tests (tests/<unit>/test-regress-*.c). */
#define OC_FUZZ_REPLAY 1
#include "fuzz-common.h"

#include <criterion/criterion.h>
#include <dirent.h>

#include "fuzz-cifar.c"
#include "fuzz-idx.c"
#include "fuzz-image.c"
#include "fuzz-ir-parse.c"
#include "fuzz-kcache.c"
#include "fuzz-npy.c"
#include "fuzz-safetensors.c"

#define CORPUS OC_SOURCE_DIR "/tests/fuzz/corpus/"

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Feeds every file of CORPUS<name> to fn, in name order; returns the count. */
static int replay(const char *name, int (*fn)(const uint8_t *, size_t))
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s%s", CORPUS, name);
    /* the targets' scratch folder: in the build folder, where a crash
     * leaves it */
    setenv("OC_FUZZ_TMPDIR", OC_BINARY_DIR "/tests", 1);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no seed corpus %s", dir);
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, (size_t)cap * sizeof *names);
            cr_assert_not_null(names);
        }
        names[n] = strdup(e->d_name);
        cr_assert_not_null(names[n]);
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    for (int i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "cannot open %s", path);
        uint8_t *buf = NULL;
        size_t len = 0, bcap = 0;
        for (;;) {
            if (len == bcap) {
                bcap = bcap ? 2 * bcap : 4096;
                buf = realloc(buf, bcap);
                cr_assert_not_null(buf);
            }
            size_t got = fread(buf + len, 1, bcap - len, f);
            if (!got) break;
            len += got;
        }
        fclose(f);
        /* A failed check aborts inside fn naming the input; a sanitizer
         * report does not, so OC_FUZZ_REPLAY_VERBOSE=1 lists each input. */
        oc_fuzz_input = path;
        if (getenv("OC_FUZZ_REPLAY_VERBOSE")) fprintf(stderr, "replay: %s\n", path);
        fn(buf, len);
        free(buf);
        free(names[i]);
    }
    free(names);
    return n;
}

#define REPLAY(name, fn, min)                                                  \
    Test(replay, name)                                                         \
    {                                                                          \
        int n = replay(#name, fn);                                             \
        cr_assert_geq(n, min, "corpus %s holds %d inputs", #name, n);          \
    }

/* Directory names are the targets' names (fuzz-<name>.c). */
Test(replay, ir_parse) { cr_assert_geq(replay("ir-parse", oc_fuzz_ir_parse), 5); }
REPLAY(npy, oc_fuzz_npy, 5)
REPLAY(safetensors, oc_fuzz_safetensors, 5)
REPLAY(idx, oc_fuzz_idx, 5)
REPLAY(cifar, oc_fuzz_cifar, 3)
REPLAY(image, oc_fuzz_image, 5)
REPLAY(kcache, oc_fuzz_kcache, 3)
