/* safetensors.h - reading and writing checkpoints in the safetensors format
 * (https://github.com/huggingface/safetensors), interoperable with PyTorch.
 *
 * Data flow: the trainer collects parameter/state buffers (oc_buf) and the
 * run's metadata (step, epoch, normalization, model config as strings) into
 * oc_st_tensor / oc_st_kv arrays and calls oc_st_write, which writes a temp
 * file, fsyncs it and renames it into place, so a crash never leaves a
 * half-written checkpoint. Resume, evaluation and the ahead-of-time compiler
 * read it back with oc_st_read and look tensors up by name.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * then the byte buffer; offsets are relative to the buffer's start, data is
 * little-endian and row-major. The reader checks everything (header length
 * within the file, well-formed JSON, known dtypes, rank <= 6, end >= begin,
 * ranges inside the buffer, size == numel * itemsize, no overlapping ranges,
 * unique names) and names the file and the header byte offset of a problem.
 * It accepts gaps between tensors; the writer never makes any.
 */
#ifndef OODC_RUNTIME_SAFETENSORS_H
#define OODC_RUNTIME_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/ir.h"

enum oc_st_dtype { OC_ST_F32, OC_ST_F64, OC_ST_I32, OC_ST_U8, OC_ST_I64, OC_ST_DTYPE_COUNT };

const char *oc_st_dtype_name(enum oc_st_dtype t); /* "F32", ... */
size_t oc_st_dtype_size(enum oc_st_dtype t);
int oc_st_dtype_parse(const char *s, enum oc_st_dtype *out); /* 0 on success */

/* One tensor. From the reader, name and data point into the oc_safetensors
 * (data is at least aligned as the file's offsets are: the writer aligns every
 * tensor to its item size). For the writer, they are the caller's. */
struct oc_st_tensor {
    const char *name;
    enum oc_st_dtype dtype;
    int rank;
    int64_t shape[OC_MAX_RANK];
    const void *data;
    size_t nbytes; /* numel * item size */
};

struct oc_st_kv {
    const char *key;
    const char *value;
};

/* A file read into memory. Tensors and metadata are sorted by name. */
struct oc_safetensors {
    struct oc_st_tensor *tensors;
    int ntensors;
    struct oc_st_kv *meta;
    int nmeta;
    void *data;       /* the byte buffer (malloc'd) */
    size_t data_size;
    struct oc_arena arena; /* names, strings, arrays */
};

/* Reads and validates a file. On failure *st is left empty (safe to free). */
enum oc_status oc_st_read(const char *path, struct oc_safetensors *st, struct oc_err *err);
/* The same from bytes in memory (copied); `source` names it in messages. */
enum oc_status oc_st_parse(const void *bytes, size_t n, const char *source,
                           struct oc_safetensors *st, struct oc_err *err);
void oc_st_free(struct oc_safetensors *st);

/* NULL when absent. */
const struct oc_st_tensor *oc_st_find(const struct oc_safetensors *st, const char *name);
const char *oc_st_meta(const struct oc_safetensors *st, const char *key);

/* Writes n tensors and nmeta metadata pairs to `path` atomically: the file
 * is written as "path.tmp.<pid>", fsync'd and renamed over `path`; on any
 * failure the temp file is removed and an existing `path` is untouched.
 * Header keys are sorted; the data is laid out by decreasing item size, then
 * name, with the header padded by spaces so that every tensor starts at an
 * offset aligned to its item size (as the reference implementation does).
 * Names must be unique, non-empty, valid UTF-8 and not "__metadata__". */
enum oc_status oc_st_write(const char *path, const struct oc_st_tensor *tensors, int n,
                           const struct oc_st_kv *meta, int nmeta, struct oc_err *err);

/* Bridges to host tensors. oc_st_from_buf does not copy (the tensor points
 * at b->data); oc_st_to_buf copies into a freshly allocated buffer and fails
 * for I64, which has no oc_dtype. */
struct oc_st_tensor oc_st_from_buf(const char *name, const struct oc_buf *b);
enum oc_status oc_st_to_buf(const struct oc_st_tensor *t, struct oc_buf *out, struct oc_err *err);

#endif
