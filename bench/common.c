/* common.c - helpers shared by the benchmarks (see common.h): timing,
 * medians, the machine description, the peer-script lookup, option parsing
 * and a multi-threaded copy that measures the memory bandwidth every
 * "achieved GB/s" figure is set against. */
#include "common.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void oc_bench_fmt(char *dst, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(dst, n, f, ap);
    va_end(ap);
}

double oc_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double oc_bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double oc_bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double oc_bench_load1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

void oc_bench_machine_str(char *out, size_t n)
{
    char model[256] = "unknown CPU", line[512];
    FILE *c = fopen("/proc/cpuinfo", "r");
    while (c && fgets(line, sizeof line, c))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ') p++;
                p[strcspn(p, "\n")] = 0;
                oc_bench_fmt(model, sizeof model, "%s", p);
            }
            break;
        }
    if (c) fclose(c);
    double load[3] = {-1, -1, -1};
    FILE *l = fopen("/proc/loadavg", "r");
    if (l) {
        if (fscanf(l, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(l);
    }
    oc_bench_fmt(out, n, "%s, %ld cores online, load average %.2f %.2f %.2f", model,
                 sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
}

void oc_bench_machine(FILE *f)
{
    char s[512];
    oc_bench_machine_str(s, sizeof s);
    fprintf(f, "machine: %s\n", s);
}

int oc_bench_find_peer(const char *given, const char *rel, char *out, size_t n)
{
    if (given) {
        oc_bench_fmt(out, n, "%s", given);
        return access(out, R_OK) == 0;
    }
    if (access(rel, R_OK) == 0) {
        oc_bench_fmt(out, n, "%s", rel);
        return 1;
    }
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return 0;
    exe[k] = 0;
    for (int up = 1; up <= 3; up++) {
        char *s = strrchr(exe, '/');
        if (!s) return 0;
        *s = 0;
        oc_bench_fmt(out, n, "%s/%s", exe, rel);
        if (access(out, R_OK) == 0) return 1;
    }
    return 0;
}

int oc_bench_parse_int(const char *bench, const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "oodc bench %s: %s: '%s' is not a number in %d..%d\n", bench, flag,
                v ? v : "(missing)", lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* ---------------------------------------------------------------- copy bandwidth */

struct copy_part {
    char *dst;
    const char *src;
    size_t n;
};

static void *copy_part(void *arg)
{
    struct copy_part *p = arg;
    memcpy(p->dst, p->src, p->n);
    return NULL;
}

double oc_bench_copy_gbps(size_t bytes, int nthreads, int repeats)
{
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    if (repeats < 1) repeats = 1;
    bytes = (bytes + 4095) / 4096 * 4096;
    char *src = NULL, *dst = NULL;
    if (posix_memalign((void **)&src, 4096, bytes) || posix_memalign((void **)&dst, 4096, bytes)) {
        free(src);
        return 0;
    }
    memset(src, 1, bytes);
    memset(dst, 0, bytes);
    double *t = calloc((size_t)repeats, sizeof *t);
    if (!t) {
        free(src), free(dst);
        return 0;
    }
    struct copy_part part[64];
    pthread_t th[64];
    size_t per = (bytes / (size_t)nthreads + 63) / 64 * 64;
    for (int i = 0; i < nthreads; i++) {
        size_t b = per * (size_t)i, e = b + per < bytes ? b + per : bytes;
        part[i] = (struct copy_part){dst + b, src + b, b < e ? e - b : 0};
    }
    for (int r = -1; r < repeats; r++) {
        double t0 = oc_bench_now();
        unsigned char started[64] = {0};
        for (int i = 1; i < nthreads; i++) {
            started[i] = pthread_create(&th[i], NULL, copy_part, &part[i]) == 0;
            if (!started[i]) copy_part(&part[i]);
        }
        copy_part(&part[0]);
        for (int i = 1; i < nthreads; i++)
            if (started[i]) pthread_join(th[i], NULL);
        if (r >= 0) t[r] = oc_bench_now() - t0;
    }
    double med = oc_bench_median(t, repeats);
    free(t);
    free(src);
    free(dst);
    return med > 0 ? 2.0 * (double)bytes / med / 1e9 : 0;
}
