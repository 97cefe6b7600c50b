/* aot-rt-api.h - what the two runtimes of a compiled scorer (aot-rt.c on
 * the CPU, aot-rt-cuda.c on an NVIDIA GPU) share around the API of
 * scorer.h: the checks of an oc_scorer_score call, the conversion of the
 * results into the caller's arrays, the error messages, and the reason
 * the last oc_scorer_create of this thread failed (oc_scorer_error(NULL)).
 * So both targets behave the same for every bad input, with the same
 * codes and words. Included once by each runtime (one translation unit);
 * plain C11, no oodc headers.
 */
#ifndef OCRT_AOT_RT_API_H
#define OCRT_AOT_RT_API_H

#include "aot-rt.h"
#include "scorer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define OCRT_HIDDEN __attribute__((visibility("hidden")))
#define OCRT_API __attribute__((visibility("default")))

/* The first member of each runtime's struct oc_scorer. */
struct ocrt_common {
    const struct ocrt_plan *plan;
    int valid_rows; /* rows of "x" that may hold a previous call's images */
    char err[512];  /* the last failure's message */
};

/* Why the last oc_scorer_create of this thread returned NULL. */
static _Thread_local char ocrt_create_err[512];

static void ocrt_create_failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ocrt_create_failed(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ocrt_create_err, sizeof ocrt_create_err, fmt, ap);
    va_end(ap);
}

static int ocrt_fail(struct ocrt_common *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ocrt_fail(struct ocrt_common *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

OCRT_API const char *oc_scorer_error(struct oc_scorer *s)
{
    if (!s)
        return ocrt_create_err[0] ? ocrt_create_err
                                  : "no scorer (NULL): oc_scorer_create failed or was not called";
    const struct ocrt_common *c = (const struct ocrt_common *)(const void *)s;
    return c->err[0] ? c->err : "no error";
}

/* The checks of a call before anything runs: 0 to go on, 1 for a call
 * of no images (done), or a negative OC_SCORER_E* code with the message
 * in c->err. */
static int ocrt_check_call(struct ocrt_common *c, const float *images, int n, const float *scores)
{
    const struct ocrt_plan *pl = c->plan;
    c->err[0] = 0;
    if (n < 0) return ocrt_fail(c, OC_SCORER_EINVAL, "oc_scorer_score: n = %d is negative", n);
    if (n > pl->batch)
        return ocrt_fail(c, OC_SCORER_EBATCH, "oc_scorer_score: n = %d is larger than the compiled batch %d",
                         n, pl->batch);
    if (!images) return ocrt_fail(c, OC_SCORER_EINVAL, "oc_scorer_score: images is NULL");
    if (!scores) return ocrt_fail(c, OC_SCORER_EINVAL, "oc_scorer_score: scores is NULL");
    if (n == 0) return 1;
    int64_t isz = (int64_t)pl->c * pl->h * pl->w;
    for (int64_t i = 0; i < (int64_t)n * isz; i++)
        if (!isfinite(images[i]))
            return ocrt_fail(c, OC_SCORER_EINPUT, "oc_scorer_score: image %lld, value %lld is %s",
                             (long long)(i / isz), (long long)(i % isz), isnan(images[i]) ? "NaN" : "infinite");
    return 0;
}

/* The IO buffers "score" (f64 or f32) and "pred" (i32, NULL: none) into
 * the caller's arrays. */
static void ocrt_outputs(const struct ocrt_plan *pl, const void *score, const int32_t *pred, int n,
                         float *scores, int *predicted_class)
{
    for (int i = 0; i < n; i++)
        scores[i] = pl->score_f64 ? (float)((const double *)score)[i] : ((const float *)score)[i];
    if (predicted_class)
        for (int i = 0; i < n; i++) predicted_class[i] = pred ? (int)pred[i] : -1;
}

#endif
