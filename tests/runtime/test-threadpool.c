/* test-threadpool.c - the CPU thread pool: every index of [0, n) is handed
 * out exactly once, for any n and grain, over many back-to-back jobs (the
 * executor's pattern: one job per kernel), with or without participant numbers. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../../runtime/cpu-impl.h"

struct job {
    atomic_int *hits;
    atomic_llong calls;
};

static void mark(void *ctx, int64_t b, int64_t e)
{
    struct job *j = ctx;
    atomic_fetch_add(&j->calls, 1);
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
}

Test(threadpool, every_index_exactly_once)
{
    struct oc_pool *p = oc_pool_new(4);
    cr_assert_not_null(p);
    cr_expect_eq(oc_pool_size(p), 4);
    const int64_t ns[] = {0, 1, 3, 7, 64, 1000, 4097};
    const int64_t grains[] = {1, 2, 5, 64, 5000};
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 5; b++)
            for (int rep = 0; rep < 20; rep++) {
                int64_t n = ns[a];
                struct job j;
                j.hits = calloc((size_t)n + 1, sizeof *j.hits);
                atomic_init(&j.calls, 0);
                oc_pool_run(p, n, grains[b], mark, &j);
                for (int64_t i = 0; i < n; i++)
                    cr_assert_eq(atomic_load(&j.hits[i]), 1, "n %lld grain %lld index %lld",
                                 (long long)n, (long long)grains[b], (long long)i);
                int64_t want = n ? (n + grains[b] - 1) / grains[b] : 0;
                cr_expect_eq(atomic_load(&j.calls), want);
                free(j.hits);
            }
    oc_pool_free(p);
}

Test(threadpool, single_thread_runs_inline)
{
    struct oc_pool *p = oc_pool_new(1);
    struct job j;
    j.hits = calloc(10, sizeof *j.hits);
    atomic_init(&j.calls, 0);
    oc_pool_run(p, 10, 3, mark, &j);
    cr_expect_eq(atomic_load(&j.calls), 1, "one call over the whole range");
    for (int i = 0; i < 10; i++) cr_expect_eq(atomic_load(&j.hits[i]), 1);
    free(j.hits);
    oc_pool_free(p);
}

struct tjob {
    atomic_int *hits;
    atomic_int seen[8];
};

static void mark_tid(void *ctx, int64_t b, int64_t e, int tid)
{
    struct tjob *j = ctx;
    cr_assert(tid >= 0 && tid < 3, "participant %d of 3", tid);
    atomic_fetch_add(&j->seen[tid], 1);
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
}

/* oc_pool_run_tid numbers the participants 0..n-1 (per-thread scratch of
 * the library kernels relies on it) and still hands out every index once. */
Test(threadpool, participants_are_numbered)
{
    struct oc_pool *p = oc_pool_new(3);
    cr_assert_not_null(p);
    for (int rep = 0; rep < 50; rep++) {
        struct tjob j;
        j.hits = calloc(1000, sizeof *j.hits);
        for (int t = 0; t < 8; t++) atomic_init(&j.seen[t], 0);
        oc_pool_run_tid(p, 1000, 7, mark_tid, &j);
        for (int i = 0; i < 1000; i++) cr_assert_eq(atomic_load(&j.hits[i]), 1, "index %d", i);
        int calls = 0;
        for (int t = 0; t < 3; t++) calls += atomic_load(&j.seen[t]);
        cr_expect_eq(calls, (1000 + 6) / 7);
        free(j.hits);
    }
    oc_pool_free(p);
}
