/* data-impl.h - what the dataset files (data.c, data-image.c, data-batch.c)
 * share and keep to themselves: the counter-based RNG, pixel conversions and
 * the area-averaging resample.
 *
 * The RNG is splitmix64's finalizer applied to (seed, stream, index): a value
 * depends only on those three numbers, never on how many values were drawn
 * before, so shuffles and augmentations are reproducible per (epoch, sample)
 * regardless of which thread computes them or in what order. We do not use
 * the IR's Philox stream (oc_rng_uniform_at) here: data randomness never has
 * to match a device kernel, and keeping it local keeps ood/ data loading
 * independent of the interpreter.
 */
#ifndef OODC_OOD_DATA_IMPL_H
#define OODC_OOD_DATA_IMPL_H

#include <math.h>
#include <stdint.h>

#include "data.h"

/* Streams: the purpose in the high bits, the epoch (or 0) in the low bits. */
enum {
    OC_DS_SHUFFLE = 1,
    OC_DS_AUGMENT = 2,
    OC_DS_SPLIT = 3,
    OC_DS_NOISE = 4,
    OC_DS_FOLDER_SUBSET = 5,
    OC_DS_FOLDER_CROP = 6,
    OC_DS_SUBSET = 7,
};
static inline uint64_t oc_ds_stream(int purpose, int64_t epoch)
{
    return ((uint64_t)purpose << 56) ^ (uint64_t)epoch;
}

static inline uint64_t oc_ds_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t oc_ds_rand(uint64_t seed, uint64_t stream, uint64_t i)
{
    uint64_t k = oc_ds_mix(seed + 0x9e3779b97f4a7c15ull) ^ oc_ds_mix(stream * 0xd1b54a32d192ed03ull + 1);
    return oc_ds_mix(k + (i + 1) * 0x9e3779b97f4a7c15ull);
}

/* [0, 1) with 53 random bits. */
static inline double oc_ds_u01(uint64_t seed, uint64_t stream, uint64_t i)
{
    return (double)(oc_ds_rand(seed, stream, i) >> 11) * 0x1.0p-53;
}

/* An integer in [0, n) (n > 0); the modulo bias is below 2^-40 for the
 * sizes used here. */
static inline uint64_t oc_ds_below(uint64_t seed, uint64_t stream, uint64_t i, uint64_t n)
{
    return oc_ds_rand(seed, stream, i) % n;
}

/* Fisher-Yates: perm becomes a seeded permutation of 0..n-1. */
static inline void oc_ds_permute(int64_t *perm, int64_t n, uint64_t seed, uint64_t stream)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)oc_ds_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ITU-R BT.601 luma, as PIL's convert("L") uses. */
static inline float oc_ds_luma(float r, float g, float b)
{
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

/* Area-averaging resample of one channel plane (sh x sw -> dh x dw): each
 * destination pixel is the mean of the source area it covers, with
 * fractional weights at the edges (OpenCV's INTER_AREA when downsampling;
 * PIL's BOX filter agrees only for integer ratios). Also defined, as a
 * blocky interpolation, for upsampling. */
void oc_ds_resample_area(const float *src, int sh, int sw, float *dst, int dh, int dw);

/* Converts one image of sc channels (planar, h x w) to dc channels
 * (1 <-> 3 by luma / replication; equal counts copy). */
void oc_ds_convert_channels(const float *src, int sc, float *dst, int dc, int64_t hw);

/* strdup that reports failure through err. */
char *oc_ds_strdup(const char *s);

#endif
