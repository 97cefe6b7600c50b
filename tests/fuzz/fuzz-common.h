/* fuzz-common.h - what the fuzz targets (tests/fuzz/fuzz-*.c) share: the
 * entry-point macro and in-memory files for loaders that only take a path.
 *
 * Each fuzz-NAME.c defines one entry with OC_FUZZ_ENTRY(NAME). Built by
 * cmake/fuzz.cmake (clang, -DOC_FUZZ=ON) it is libFuzzer's
 * LLVMFuzzerTestOneInput; the replay test (tests/fuzz/test-replay.c)
 * defines OC_FUZZ_REPLAY and includes every target, so each becomes an
 * ordinary function oc_fuzz_NAME that the normal and sanitized suites run
 * over the committed corpora and crash inputs.
 *
 * The IDX, CIFAR and image-folder loaders read files, not bytes: a target
 * writes its input to a file in a private folder (made once per process on
 * /dev/shm when it exists, so no disk is involved, and removed at exit) and
 * passes the path. Only POSIX calls: the header may come after any other. */
#ifndef OODC_FUZZ_COMMON_H
#define OODC_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef OC_FUZZ_REPLAY
#define OC_FUZZ_ENTRY(name) int oc_fuzz_##name(const uint8_t *data, size_t size)
#else
#define OC_FUZZ_ENTRY(name)                                                    \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);              \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
#endif

/* The input being replayed (test-replay.c), named when a check fails. */
static const char *oc_fuzz_input = "(the fuzzer's input)";

/* A property the loader must keep was broken: report and abort, so that
 * libFuzzer saves the input and the replay test fails. Never used for
 * errors the loader reports properly. */
#define OC_FUZZ_CHECK(c, ...)                                                  \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "fuzz check failed on %s: %s (%s:%d): ",           \
                    oc_fuzz_input, #c, __FILE__, __LINE__);                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* A private folder (made once per process under $OC_FUZZ_TMPDIR, else
 * /dev/shm, else $TMPDIR or /tmp, and removed at exit) for the files the
 * loaders read and write. */
static char oc_fuzz_dir_path[256];

/* Removes the regular files of dir, then dir (the folder is private: made
 * by mkdtemp, written only by the targets). */
static inline void oc_fuzz_rm_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[600];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                struct stat sb;
                if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)) unlink(path);
            }
        closedir(d);
    }
    rmdir(dir);
}

static inline void oc_fuzz_dir_cleanup(void)
{
    if (!oc_fuzz_dir_path[0]) return;
    char kc[300];
    snprintf(kc, sizeof kc, "%s/kc", oc_fuzz_dir_path); /* fuzz-kcache.c */
    oc_fuzz_rm_files(kc);
    oc_fuzz_rm_files(oc_fuzz_dir_path);
    oc_fuzz_dir_path[0] = 0;
}

static inline const char *oc_fuzz_dir(void)
{
    if (!oc_fuzz_dir_path[0]) {
        const char *t = getenv("TMPDIR");
        if (access("/dev/shm", W_OK) == 0) t = "/dev/shm";
        /* scripts/fuzz.sh points this at a folder it removes at the end:
         * a process that crashes leaves its folder behind */
        const char *own = getenv("OC_FUZZ_TMPDIR");
        if (own && *own) t = own;
        snprintf(oc_fuzz_dir_path, sizeof oc_fuzz_dir_path, "%s/oc-fuzz-XXXXXX",
                 t && *t ? t : "/tmp");
        OC_FUZZ_CHECK(mkdtemp(oc_fuzz_dir_path) != NULL, "mkdtemp: %s", strerror(errno));
        atexit(oc_fuzz_dir_cleanup);
    }
    return oc_fuzz_dir_path;
}

/* A file of the private folder, rewritten for each input. */
struct oc_fuzz_file {
    const char *name; /* in the private folder: "in-0", "in-1" */
    char path[300];
};

/* Makes path hold exactly data[0..n). Aborts if the system refuses (that
 * is the harness failing, not the loader). */
static inline void oc_fuzz_write(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    OC_FUZZ_CHECK(fd >= 0, "cannot write %s: %s", path, strerror(errno));
    const unsigned char *p = data;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        OC_FUZZ_CHECK(w > 0, "write %s: %s", path, strerror(errno));
        done += (size_t)w;
    }
    OC_FUZZ_CHECK(close(fd) == 0, "close %s: %s", path, strerror(errno));
}

/* Replaces the file's contents with data[0..n); returns its path. */
static inline const char *oc_fuzz_file_set(struct oc_fuzz_file *f, const void *data, size_t n)
{
    if (!f->path[0]) snprintf(f->path, sizeof f->path, "%s/%s", oc_fuzz_dir(), f->name);
    oc_fuzz_write(f->path, data, n);
    return f->path;
}

/* Little-endian u16 at p (the targets' own framing of multi-file inputs). */
static inline size_t oc_fuzz_u16(const uint8_t *p)
{
    return (size_t)p[0] | (size_t)p[1] << 8;
}

#endif
