/* train-util.h - what test-train.c and test-checkpoint.c share: a small
 * synthetic dataset in the Fashion-MNIST file layout (so the trainer's real
 * loader, split and batcher run on it, without the Debian package), temp
 * folders, file helpers and capturing a CLI verb's stdout/stderr.
 *
 * The synthetic classes are easy (class k is a bright bar whose width and
 * height depend on k, centred, so flips and small crops keep it), so a tiny
 * Wide ResNet learns them in a few steps. */
#ifndef OODC_TESTS_OOD_TRAIN_UTIL_H
#define OODC_TESTS_OOD_TRAIN_UTIL_H

#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void tu_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static void tu_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Reads a whole file (malloc'd); NULL when it does not exist. */
static unsigned char *tu_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert(b);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int tu_same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = tu_read(a, &na), *y = tu_read(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static uint32_t tu_hash(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* Writes {prefix}-images-idx3-ubyte and {prefix}-labels-idx1-ubyte. */
static void tu_write_split(const char *dir, const char *prefix, int n, uint32_t seed)
{
    size_t isz = 16 + (size_t)n * 784, lsz = 8 + (size_t)n;
    unsigned char *im = calloc(isz, 1), *lb = calloc(lsz, 1);
    cr_assert(im && lb);
    tu_be32(im, 0x803), tu_be32(im + 4, (uint32_t)n), tu_be32(im + 8, 28), tu_be32(im + 12, 28);
    tu_be32(lb, 0x801), tu_be32(lb + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        int k = (int)(tu_hash(seed * 7919u + (uint32_t)i) % 10);
        lb[8 + i] = (unsigned char)k;
        unsigned char *p = im + 16 + (size_t)i * 784;
        int half_w = 2 + k, half_h = 1 + (k % 4) * 2, cy = 14 + (k >= 5 ? 3 : -3);
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                uint32_t r = tu_hash(seed ^ (uint32_t)(i * 784 + y * 28 + x) * 2654435761u);
                int v = (int)(r % 50);
                if (abs(x * 2 - 27) <= 2 * half_w && abs(y - cy) <= half_h) v += 180;
                p[y * 28 + x] = (unsigned char)(v > 255 ? 255 : v);
            }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    tu_write(path, im, isz);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    tu_write(path, lb, lsz);
    free(im);
    free(lb);
}

static char *tu_tmpdir(void)
{
    char *d = strdup("/tmp/oc-train-test-XXXXXX");
    cr_assert(d && mkdtemp(d), "mkdtemp");
    return d;
}

/* A fresh folder holding a synthetic Fashion-MNIST: ntrain / ntest images. */
static char *tu_fake_fashion(int ntrain, int ntest)
{
    char *d = tu_tmpdir();
    tu_write_split(d, "train", ntrain, 1);
    tu_write_split(d, "t10k", ntest, 2);
    return d;
}

static int tu_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void tu_rmtree(const char *dir)
{
    if (dir) nftw(dir, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tu_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    cr_assert(p);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Runs verb(argc, argv) with stdout and stderr captured into *out / *errs
 * (malloc'd, NUL-terminated); returns its exit code. */
static int tu_capture(int (*verb)(int, char **), int argc, char **argv, char **out, char **errs)
{
    char o[] = "/tmp/oc-train-out-XXXXXX", e[] = "/tmp/oc-train-err-XXXXXX";
    int fo = mkstemp(o), fe = mkstemp(e);
    cr_assert(fo >= 0 && fe >= 0);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fo, 1);
    dup2(fe, 2);
    int rc = verb(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so), close(se), close(fo), close(fe);
    size_t n;
    *out = (char *)tu_read(o, &n);
    (*out)[n] = 0;
    *errs = (char *)tu_read(e, &n);
    (*errs)[n] = 0;
    unlink(o);
    unlink(e);
    return rc;
}

/* Prints "oodc VERB: message" like cli/main.c (the verbs under test are
 * compiled into the test, without main.c). */
int oc_cli_usage_error(const char *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "oodc %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

#endif
