/* data-batch.c - the batcher: shuffled, augmented, normalized NCHW batches
 * of a dataset, prepared on a background thread while the previous batch
 * is being used (double buffering).
 *
 * Data flow: oc_dataset (floats in [0, 1]) -> per epoch a seeded permutation
 * -> batch k = samples perm[k*B .. k*B+B) -> random crop from the zero-padded
 * image + horizontal flip, both keyed by (seed, epoch, position in epoch) ->
 * (x - mean) / std -> slot k % 2 -> the trainer.
 *
 * Determinism: a batch is a pure function of (dataset, opts, epoch, k); the
 * worker fills slots strictly in order and the consumer waits for the slot of
 * the batch it asks for, so thread timing can change only when a batch is
 * ready, never what it holds. The synchronous mode computes the same batches
 * on the caller's thread.
 */
#include "data.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data-impl.h"

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };

struct slot {
    enum slot_state state;
    int64_t batch; /* the batch index it holds or is being filled with */
    int64_t n;
    float *images;
    int32_t *labels;
};

struct oc_batcher {
    const struct oc_dataset *ds;
    struct oc_batcher_opts o;
    int64_t nbatches;
    int64_t *perm; /* this epoch's order; written only while the worker is idle */
    int64_t epoch;
    int started;

    struct slot slot[2];
    int64_t produce; /* next batch the worker prepares */
    int64_t consume; /* next batch next() returns */

    int threaded, quit, sync_made;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Fills `s` with batch k of the current epoch. Reads only immutable state
 * (dataset, opts, perm, epoch) and writes only the slot. */
static void fill(const struct oc_batcher *b, struct slot *s, int64_t k)
{
    const struct oc_dataset *ds = b->ds;
    const struct oc_batcher_opts *o = &b->o;
    int c = ds->c, h = ds->h, w = ds->w, p = o->crop_pad;
    int64_t hw = (int64_t)h * w, isz = c * hw;
    int64_t first = k * o->batch;
    int64_t n = ds->n - first < o->batch ? ds->n - first : o->batch;
    uint64_t astream = oc_ds_stream(OC_DS_AUGMENT, b->epoch);
    float scale[OC_DATA_MAX_CHANNELS], shift[OC_DATA_MAX_CHANNELS];
    for (int ch = 0; ch < c; ch++) {
        scale[ch] = o->has_norm ? 1.0f / o->std[ch] : 1.0f;
        shift[ch] = o->has_norm ? o->mean[ch] : 0.0f;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = first + i;
        int64_t idx = b->perm[pos];
        const float *src = ds->images + idx * isz;
        float *dst = s->images + i * isz;
        if (s->labels) s->labels[i] = ds->labels[idx];
        /* Output pixel (y, x) reads source (y + dy, x + dx) of the image
         * padded by p zeros, i.e. source (y + dy - p, x + dx - p). */
        int dy = 0, dx = 0, flip = 0;
        uint64_t r = oc_ds_rand(o->seed, astream, (uint64_t)pos);
        if (p > 0) {
            dy = (int)(r % (uint64_t)(2 * p + 1)) - p;
            dx = (int)((r >> 20) % (uint64_t)(2 * p + 1)) - p;
        }
        if (o->flip) flip = (int)((r >> 62) & 1);
        for (int ch = 0; ch < c; ch++) {
            const float *sp = src + ch * hw;
            float *dp = dst + ch * hw;
            float sc = scale[ch], sh = shift[ch], zero = (0.0f - sh) * sc;
            for (int y = 0; y < h; y++) {
                int sy = y + dy;
                float *row = dp + (int64_t)y * w;
                if (sy < 0 || sy >= h) {
                    for (int x = 0; x < w; x++) row[x] = zero;
                    continue;
                }
                const float *srow = sp + (int64_t)sy * w;
                for (int x = 0; x < w; x++) {
                    int xo = flip ? w - 1 - x : x; /* flip after cropping */
                    int sx = xo + dx;
                    row[x] = sx < 0 || sx >= w ? zero : (srow[sx] - sh) * sc;
                }
            }
        }
    }
    s->n = n;
    s->batch = k;
}

static void *worker(void *arg)
{
    struct oc_batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->quit) {
        int64_t k = b->produce;
        struct slot *s = &b->slot[k % 2];
        if (b->started && k < b->nbatches && s->state == SLOT_FREE) {
            s->state = SLOT_FILLING;
            b->produce++;
            pthread_mutex_unlock(&b->mu);
            fill(b, s, k);
            pthread_mutex_lock(&b->mu);
            s->state = SLOT_READY;
            pthread_cond_broadcast(&b->cv);
        } else {
            pthread_cond_wait(&b->cv, &b->mu);
        }
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

enum oc_status oc_batcher_new(const struct oc_dataset *ds, const struct oc_batcher_opts *o,
                              struct oc_batcher **out, struct oc_err *err)
{
    if (!ds || !o || !out) return oc_err_set(err, OC_ERR_INVALID, "batcher: missing argument");
    const char *src = ds->source ? ds->source : "dataset";
    if (ds->n <= 0 || !ds->images)
        return oc_err_set(err, OC_ERR_INVALID, "batcher: %s is empty", src);
    if (o->batch <= 0)
        return oc_err_set(err, OC_ERR_INVALID, "batcher: batch size %lld must be positive",
                          (long long)o->batch);
    if (ds->c > OC_DATA_MAX_CHANNELS)
        return oc_err_set(err, OC_ERR_SHAPE, "batcher: %s has %d channels (at most %d)", src,
                          ds->c, OC_DATA_MAX_CHANNELS);
    if (o->crop_pad < 0 || o->crop_pad > ds->h || o->crop_pad > ds->w)
        return oc_err_set(err, OC_ERR_INVALID, "batcher: crop padding %d for %dx%d images",
                          o->crop_pad, ds->h, ds->w);
    if (o->has_norm)
        for (int ch = 0; ch < ds->c; ch++)
            if (!(o->std[ch] > 0))
                return oc_err_set(err, OC_ERR_NUMERIC,
                                  "batcher: standard deviation %g of channel %d is not positive",
                                  (double)o->std[ch], ch);
    int64_t nb = o->drop_last ? ds->n / o->batch : (ds->n + o->batch - 1) / o->batch;
    if (nb == 0)
        return oc_err_set(err, OC_ERR_INVALID,
                          "batcher: %s has %lld images, fewer than one batch of %lld with "
                          "drop_last",
                          src, (long long)ds->n, (long long)o->batch);
    struct oc_batcher *b = calloc(1, sizeof *b);
    if (!b) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    b->ds = ds;
    b->o = *o;
    b->nbatches = nb;
    b->perm = malloc((size_t)ds->n * sizeof *b->perm);
    size_t isz = (size_t)oc_dataset_image_size(ds);
    int bad = !b->perm;
    for (int i = 0; i < 2; i++) {
        b->slot[i].images = malloc((size_t)o->batch * isz * sizeof(float));
        b->slot[i].labels = ds->labels ? malloc((size_t)o->batch * sizeof(int32_t)) : NULL;
        bad |= !b->slot[i].images || (ds->labels && !b->slot[i].labels);
    }
    if (bad) {
        oc_batcher_free(b);
        return oc_err_set(err, OC_ERR_NOMEM, "batcher: out of memory for batches of %lld",
                          (long long)o->batch);
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->sync_made = 1;
    b->threaded = !o->sync;
    if (b->threaded && pthread_create(&b->thread, NULL, worker, b) != 0) b->threaded = 0;
    *out = b;
    return OC_OK;
}

void oc_batcher_free(struct oc_batcher *b)
{
    if (!b) return;
    if (b->threaded) {
        pthread_mutex_lock(&b->mu);
        b->quit = 1;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    if (b->sync_made) {
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
    }
    for (int i = 0; i < 2; i++) {
        free(b->slot[i].images);
        free(b->slot[i].labels);
    }
    free(b->perm);
    free(b);
}

int64_t oc_batcher_nbatches(const struct oc_batcher *b)
{
    return b->nbatches;
}

enum oc_status oc_batcher_start_epoch_at(struct oc_batcher *b, int64_t epoch, int64_t first,
                                         struct oc_err *err)
{
    if (epoch < 0 || first < 0 || first > b->nbatches)
        return oc_err_set(err, OC_ERR_INVALID, "batcher: cannot start epoch %lld at batch %lld of %lld",
                          (long long)epoch, (long long)first, (long long)b->nbatches);
    pthread_mutex_lock(&b->mu);
    /* The worker reads perm while filling: wait until it is idle. */
    while (b->slot[0].state == SLOT_FILLING || b->slot[1].state == SLOT_FILLING)
        pthread_cond_wait(&b->cv, &b->mu);
    b->epoch = epoch;
    if (b->o.shuffle)
        oc_ds_permute(b->perm, b->ds->n, b->o.seed, oc_ds_stream(OC_DS_SHUFFLE, epoch));
    else
        for (int64_t i = 0; i < b->ds->n; i++) b->perm[i] = i;
    for (int i = 0; i < 2; i++) b->slot[i].state = SLOT_FREE;
    b->produce = b->consume = first;
    b->started = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return OC_OK;
}

enum oc_status oc_batcher_start_epoch(struct oc_batcher *b, int64_t epoch, struct oc_err *err)
{
    return oc_batcher_start_epoch_at(b, epoch, 0, err);
}

int oc_batcher_next(struct oc_batcher *b, const float **images, const int32_t **labels,
                    int64_t *n)
{
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < 2; i++)
        if (b->slot[i].state == SLOT_HELD) b->slot[i].state = SLOT_FREE;
    pthread_cond_broadcast(&b->cv);
    int64_t k = b->consume;
    if (!b->started || k >= b->nbatches) {
        pthread_mutex_unlock(&b->mu);
        *images = NULL;
        *labels = NULL;
        *n = 0;
        return 0;
    }
    struct slot *s = &b->slot[k % 2];
    if (b->threaded) {
        while (!(s->state == SLOT_READY && s->batch == k)) pthread_cond_wait(&b->cv, &b->mu);
    } else {
        fill(b, s, k);
        b->produce = k + 1;
    }
    s->state = SLOT_HELD;
    b->consume = k + 1;
    pthread_mutex_unlock(&b->mu);
    *images = s->images;
    *labels = s->labels;
    *n = s->n;
    return 1;
}
