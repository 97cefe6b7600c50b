/* common.h - what the benchmarks in bench/ share: clocks and medians, the
 * machine line every report starts with (CPU model, cores, load average),
 * finding a PyTorch peer script, option parsing and the copy bandwidth
 * that bandwidth figures are compared with. Only the files in bench/ include it. */
#ifndef OODC_BENCH_COMMON_H
#define OODC_BENCH_COMMON_H

#include <stddef.h>
#include <stdio.h>

/* snprintf that cuts long strings deliberately (no truncation warning). */
void oc_bench_fmt(char *dst, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));

/* Monotonic clock, seconds. */
double oc_bench_now(void);

/* CPU time of the whole process (every thread), seconds: on a loaded
 * machine it moves far less than the wall clock between runs. */
double oc_bench_cpu_now(void);

/* Median of v[0..n) (sorts v). n >= 1. */
double oc_bench_median(double *v, int n);

/* "Intel(R) Xeon(R) ..., 2 cores online, load average 1.00 0.90 0.80" */
void oc_bench_machine_str(char *out, size_t n);
/* Prints "machine: <machine_str>\n". */
void oc_bench_machine(FILE *f);
/* The 1-minute load average (-1 when unknown). */
double oc_bench_load1(void);

/* Finds a peer script: `given` when not NULL, else `rel` (e.g.
 * "bench/peer/torch_train.py") under the current folder or above the
 * executable (build folders sit one to three levels below the source
 * tree). 1 when found (path in out). */
int oc_bench_find_peer(const char *given, const char *rel, char *out, size_t n);

/* Parses an integer option value in [lo, hi]; on error prints
 * "oodc bench <bench>: <flag>: ..." and returns -1. */
int oc_bench_parse_int(const char *bench, const char *flag, const char *v, int lo, int hi,
                       int *out);

/* Copy bandwidth in GB/s (bytes read + bytes written per second) of a
 * `bytes`-byte buffer copied by `nthreads` threads, each copying its own
 * contiguous part; median of `repeats` copies after one warm-up. 0 on
 * failure (out of memory). */
double oc_bench_copy_gbps(size_t bytes, int nthreads, int repeats);

#endif
