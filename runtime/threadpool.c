/* threadpool.c - a fixed pool of worker threads for the CPU executor.
 *
 * The executor hands each kernel's outer loop to oc_pool_run, which splits
 * [0, n) into chunks that the workers and the calling thread claim from an
 * atomic counter (cheap dynamic load balancing, no per-chunk locking). A
 * job is published by bumping a generation number under the mutex; the
 * caller waits until every worker has left the job before returning, so
 * the job's context may live on the caller's stack.
 */
#include "cpu-impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct oc_pool {
    int n; /* participants, caller included */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;
    int busy; /* workers still inside the current job */
    int quit;
    /* the current job */
    oc_pool_fn fn;
    void *ctx;
    int64_t total, grain;
    atomic_llong next;
};

static void work(struct oc_pool *p)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->grain);
        if (b >= p->total) break;
        int64_t e = b + p->grain < p->total ? b + p->grain : p->total;
        p->fn(p->ctx, b, e);
    }
}

static void *worker(void *arg)
{
    struct oc_pool *p = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        work(p);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct oc_pool *oc_pool_new(int nthreads)
{
    struct oc_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = nthreads < 1 ? 1 : nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    if (p->n > 1) {
        p->th = calloc((size_t)p->n - 1, sizeof *p->th);
        if (!p->th) {
            oc_pool_free(p);
            return NULL;
        }
        for (int i = 0; i < p->n - 1; i++)
            if (pthread_create(&p->th[i], NULL, worker, p)) {
                p->n = i + 1; /* run with the workers we have */
                break;
            }
    }
    return p;
}

void oc_pool_free(struct oc_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; p->th && i < p->n - 1; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}

int oc_pool_size(const struct oc_pool *p) { return p ? p->n : 1; }

void oc_pool_run(struct oc_pool *p, int64_t n, int64_t grain, oc_pool_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->n == 1 || n <= grain) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->total = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    p->busy = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    work(p);
    pthread_mutex_lock(&p->mu);
    while (p->busy) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
