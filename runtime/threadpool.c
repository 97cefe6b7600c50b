/* threadpool.c - a fixed pool of worker threads for the CPU executor.
 *
 * The executor hands each kernel's outer loop to oc_pool_run, which splits
 * [0, n) into chunks that the workers and the calling thread claim from an
 * atomic counter (cheap dynamic load balancing, no per-chunk locking). A
 * job is published by bumping a generation number under the mutex. A
 * worker joins a job only while it is open; once the caller has run out
 * of chunks it closes the job and waits for the workers that joined, so
 * the job's context may live on the caller's stack, and a worker that
 * wakes up late (on a loaded machine, a whole scheduler time slice) costs
 * the caller nothing: it finds the job closed and goes back to sleep.
 * Participants are numbered (the caller 0, workers 1..n-1) for jobs that
 * keep per-thread scratch (oc_pool_run_tid).
 *
 * A worker that finishes a job polls for the next one for a short while
 * (OC_POOL_SPIN_US, default 50 us) before it sleeps on the condition
 * variable: a step is a sequence of kernels tens of microseconds long
 * (a cross-entropy at B = 4096 is two), and a sleeping worker can take
 * about that long to wake up, so the caller ran most chunks alone (bench
 * heads, 2 threads: ce 70 -> 58 us, bin 100 -> 56 us with the spin, on a
 * shared machine). OC_POOL_SPIN_US=0 turns it off (a loaded machine,
 * where a spinning thread takes a core that another process wants).
 */
#include "cpu-impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct oc_pool {
    int n; /* participants, caller included */
    pthread_t *th;
    struct worker_arg *wa;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    atomic_ulong gen; /* written under mu; read without it while spinning */
    atomic_int quit_flag;
    double spin_s;
    int busy;   /* workers that joined the current job and are still in it */
    int closed; /* the caller is done with the current job: nobody joins it */
    int quit;
    /* the current job */
    oc_pool_fn fn;
    oc_pool_tid_fn tfn;
    void *ctx;
    int64_t total, grain;
    atomic_llong next;
};

static void work(struct oc_pool *p, int tid)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->grain);
        if (b >= p->total) break;
        int64_t e = b + p->grain < p->total ? b + p->grain : p->total;
        if (p->tfn) p->tfn(p->ctx, b, e, tid);
        else p->fn(p->ctx, b, e);
    }
}

struct worker_arg {
    struct oc_pool *p;
    int tid;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Polls (without the mutex) until a job newer than `seen` is published,
 * quit is set, or spin_s seconds pass. */
static void spin(struct oc_pool *p, unsigned long seen)
{
    if (p->spin_s <= 0) return;
    double until = now_s() + p->spin_s;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load(&p->gen) != seen || atomic_load(&p->quit_flag)) return;
            cpu_relax();
        }
        if (now_s() > until) return;
    }
}

static void *worker(void *arg)
{
    struct worker_arg *wa = arg;
    struct oc_pool *p = wa->p;
    int tid = wa->tid;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (!p->quit && p->gen == seen) {
            pthread_mutex_unlock(&p->mu);
            spin(p, seen);
            pthread_mutex_lock(&p->mu);
        }
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        if (p->closed) continue; /* woke up too late: the job is done */
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        work(p, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0 && p->closed) pthread_cond_signal(&p->done);
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
    atomic_init(&p->gen, 0);
    atomic_init(&p->quit_flag, 0);
    const char *sv = getenv("OC_POOL_SPIN_US");
    p->spin_s = (sv && *sv ? atof(sv) : 50.0) * 1e-6;
    if (p->n > 1) {
        p->th = calloc((size_t)p->n - 1, sizeof *p->th);
        p->wa = calloc((size_t)p->n - 1, sizeof *p->wa);
        if (!p->th || !p->wa) {
            p->n = 1;
            oc_pool_free(p);
            return NULL;
        }
        for (int i = 0; i < p->n - 1; i++) {
            p->wa[i] = (struct worker_arg){p, i + 1};
            if (pthread_create(&p->th[i], NULL, worker, &p->wa[i])) {
                p->n = i + 1; /* run with the workers we have */
                break;
            }
        }
    }
    return p;
}

void oc_pool_free(struct oc_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    atomic_store(&p->quit_flag, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; p->th && i < p->n - 1; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    free(p->wa);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}

int oc_pool_size(const struct oc_pool *p) { return p ? p->n : 1; }

static void run(struct oc_pool *p, int64_t n, int64_t grain, oc_pool_fn fn, oc_pool_tid_fn tfn,
                void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->n == 1 || n <= grain) {
        if (tfn) tfn(ctx, 0, n, 0);
        else fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->tfn = tfn;
    p->ctx = ctx;
    p->total = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    p->closed = 0;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    pthread_mutex_lock(&p->mu);
    p->closed = 1;
    while (p->busy) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void oc_pool_run(struct oc_pool *p, int64_t n, int64_t grain, oc_pool_fn fn, void *ctx)
{
    run(p, n, grain, fn, NULL, ctx);
}

void oc_pool_run_tid(struct oc_pool *p, int64_t n, int64_t grain, oc_pool_tid_fn fn, void *ctx)
{
    run(p, n, grain, NULL, fn, ctx);
}
