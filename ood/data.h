/* data.h - datasets in memory, their loaders, and the batcher that feeds
 * training and evaluation.
 *
 * Data flow: a loader (IDX / Fashion-MNIST, CIFAR-10 binary batches, a folder
 * of PNG/JPEG images, generated noise) produces an oc_dataset of float images
 * in [0, 1], NCHW. The trainer splits it (train/validation), computes the
 * per-channel normalization from the training part, and reads batches from an
 * oc_batcher: shuffled, augmented (random crop with zero padding, horizontal
 * flip), normalized, prepared on a background thread. OOD sets are loaded the
 * same way and conformed to the in-distribution's channels and size.
 *
 * Randomness: every random choice (shuffles, crops, flips, splits, noise,
 * folder subsets) is a pure function of (seed, purpose, epoch, index) through
 * a counter-based splitmix64 hash (see data-impl.h). Nothing depends on thread
 * timing or on the order of calls, so a resumed run sees the same batches.
 *
 * Errors: loaders never modify *out on failure; the message names the file
 * and the byte offset or record where the input went wrong, or the Debian
 * package / download that provides a missing dataset.
 */
#ifndef OODC_OOD_DATA_H
#define OODC_OOD_DATA_H

#include <stdint.h>

#include "../ir/ir.h"

/* Where the Debian package dataset-fashion-mnist installs the IDX files. */
#define OC_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* A dataset in memory: n images of c x h x w floats in [0, 1] (NCHW, row
 * major), with int32 labels in [0, nclasses) or none. Owned (malloc'd);
 * release with oc_dataset_free. */
struct oc_dataset {
    int64_t n;
    int c, h, w;
    float *images;   /* n*c*h*w */
    int32_t *labels; /* n, or NULL for unlabeled (noise, image folders) */
    int nclasses;    /* 0 when unlabeled */
    char *source;    /* human-readable origin, e.g. "cifar10:/data/x (train)" */
};

void oc_dataset_free(struct oc_dataset *ds);
/* Elements of one image (c*h*w). */
static inline int64_t oc_dataset_image_size(const struct oc_dataset *ds)
{
    return (int64_t)ds->c * ds->h * ds->w;
}

/* ---------------------------------------------------------------- loaders */

/* IDX files (LeCun's format): images with magic 0x00000803 (u8, dims n, h, w)
 * and optionally labels with magic 0x00000801 (u8, dim n). Files may be raw
 * or gzip-compressed (read with zlib); sizes are checked exactly against the
 * (decompressed) length. labels_path may be NULL. nclasses = max label + 1. */
enum oc_status oc_data_load_idx(const char *images_path, const char *labels_path,
                                struct oc_dataset *out, struct oc_err *err);

/* Fashion-MNIST from `dir` (NULL: OC_FASHION_MNIST_DIR): train (60000) or
 * test (10000) split, 1x28x28, 10 classes. Looks for
 * {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. */
enum oc_status oc_data_load_fashion_mnist(const char *dir, int train, struct oc_dataset *out,
                                          struct oc_err *err);

/* CIFAR-10 binary batches from `dir` (the cifar-10-batches-bin folder, or
 * its parent): train = data_batch_1..5.bin (50000), test = test_batch.bin
 * (10000); 3x32x32, 10 classes. */
enum oc_status oc_data_load_cifar10(const char *dir, int train, struct oc_dataset *out,
                                    struct oc_err *err);
/* Any list of CIFAR-10 binary files (records of 1 label byte + 3072 pixel
 * bytes, R then G then B planes), e.g. as an OOD set. */
enum oc_status oc_data_load_cifar_files(const char *const *paths, int npaths,
                                        struct oc_dataset *out, struct oc_err *err);

enum oc_folder_mode {
    OC_FOLDER_CROP,   /* a random h x w window of each image */
    OC_FOLDER_RESIZE, /* the whole image, downsampled by area averaging */
};

/* Every .png/.jpg/.jpeg file under `dir` (recursively, in sorted path order),
 * decoded with stb_image and made c x h x w (c = 1: luma 0.299 R + 0.587 G +
 * 0.114 B; c = 3: gray replicated; alpha dropped). n_max > 0 keeps a seeded
 * random subset of n_max files (in sorted order); crop positions are seeded
 * per file. An image smaller than the crop, or a file that fails to decode,
 * is an error naming the file. Unlabeled. */
enum oc_status oc_data_load_folder(const char *dir, enum oc_folder_mode mode, int c, int h, int w,
                                   int64_t n_max, uint64_t seed, struct oc_dataset *out,
                                   struct oc_err *err);

enum oc_noise_kind {
    OC_NOISE_GAUSSIAN, /* N(0.5, 1) per value, clipped to [0, 1] (paper, section 4) */
    OC_NOISE_UNIFORM,  /* U[0, 1) per value */
};
const char *oc_noise_name(enum oc_noise_kind k);
enum oc_status oc_data_noise(enum oc_noise_kind kind, int64_t n, int c, int h, int w,
                             uint64_t seed, struct oc_dataset *out, struct oc_err *err);

/* An OOD set from a spec string, conformed to c x h x w:
 *   gaussian | uniform            generated noise (n_max images; default 1500)
 *   fashion-mnist[:DIR]           Fashion-MNIST test split
 *   cifar10:DIR                   CIFAR-10 test split
 *   idx:IMAGES[,LABELS]           IDX files
 *   cifar-bin:FILE[,FILE...]      CIFAR-binary files
 *   crop:DIR | resize:DIR         an image folder (see oc_data_load_folder)
 * n_max > 0 keeps a seeded random subset of at most n_max images. */
enum oc_status oc_data_load_spec(const char *spec, int c, int h, int w, int64_t n_max,
                                 uint64_t seed, struct oc_dataset *out, struct oc_err *err);

/* ---------------------------------------------------------------- transforms */

/* A copy of `ds` with c channels (1 <-> 3 as in oc_data_load_folder) and
 * h x w pixels (area-averaging resample when the size differs). Fails with
 * OC_ERR_SHAPE when a channel count is neither 1 nor 3. */
enum oc_status oc_data_conform(const struct oc_dataset *ds, int c, int h, int w,
                               struct oc_dataset *out, struct oc_err *err);

/* A seeded random split: a gets n_first images, b the other n - n_first,
 * each part in the original order. Either of a, b may be NULL. The standard
 * train/validation splits are oc_data_split(train, 55000, seed, ...) for
 * Fashion-MNIST and oc_data_split(train, 45000, seed, ...) for CIFAR-10. */
enum oc_status oc_data_split(const struct oc_dataset *ds, int64_t n_first, uint64_t seed,
                             struct oc_dataset *a, struct oc_dataset *b, struct oc_err *err);

/* Per-channel mean and standard deviation (population, as numpy's std) over
 * every pixel of every image; mean and std hold ds->c values. */
enum oc_status oc_data_channel_stats(const struct oc_dataset *ds, float *mean, float *std,
                                     struct oc_err *err);

/* ---------------------------------------------------------------- batcher */

#define OC_DATA_MAX_CHANNELS 4

struct oc_batcher_opts {
    int64_t batch;    /* images per batch (> 0) */
    uint64_t seed;    /* shuffles and augmentation */
    int shuffle;      /* a fresh seeded permutation each epoch */
    int drop_last;    /* drop the last partial batch */
    int crop_pad;     /* > 0: random crop after zero padding by crop_pad pixels
                       * (2 for 28 px, 4 for 32 px images) */
    int flip;         /* random horizontal flip with probability 1/2 */
    int has_norm;     /* normalize: (x - mean[c]) / std[c] */
    float mean[OC_DATA_MAX_CHANNELS], std[OC_DATA_MAX_CHANNELS];
    int sync;         /* 1: prepare batches on the calling thread (same output) */
};

struct oc_batcher;

/* The dataset must outlive the batcher and stay unchanged. */
enum oc_status oc_batcher_new(const struct oc_dataset *ds, const struct oc_batcher_opts *o,
                              struct oc_batcher **out, struct oc_err *err);
void oc_batcher_free(struct oc_batcher *b);
/* Batches per epoch. */
int64_t oc_batcher_nbatches(const struct oc_batcher *b);
/* Starts epoch `epoch` (>= 0) at batch `first` (resume mid-epoch); the
 * background thread begins preparing it at once. */
enum oc_status oc_batcher_start_epoch_at(struct oc_batcher *b, int64_t epoch, int64_t first,
                                         struct oc_err *err);
enum oc_status oc_batcher_start_epoch(struct oc_batcher *b, int64_t epoch, struct oc_err *err);
/* The next batch of the epoch: returns 1 and sets *images (n x c x h x w,
 * normalized), *labels (n, NULL for an unlabeled dataset) and *n (< batch
 * for the last partial one); returns 0 at the end of the epoch. The pointers
 * stay valid until the next call to next/start_epoch/free. The content is a
 * function of (dataset, opts, epoch, batch index) only. */
int oc_batcher_next(struct oc_batcher *b, const float **images, const int32_t **labels,
                    int64_t *n);

#endif
