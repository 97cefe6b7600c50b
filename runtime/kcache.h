/* kcache.h - the kernel cache: compiled device code (CUBIN, PTX, object
 * code) kept in memory and on disk, keyed by what determines it.
 *
 * Device-neutral: an entry is opaque bytes under a 128-bit key that the
 * caller derives from everything the bytes depend on (for CUDA: the
 * source, the compiler options, the architecture, the NVRTC version and
 * the oodc version), so a changed input is a different key, never a stale
 * hit. Lookups try memory, then the directory; stores go to both.
 *
 * On disk one file per entry, <dir>/<32 hex digits>.bin: a header (magic,
 * format version, 4 reserved bytes that must be zero, the key, the payload
 * size and a 64-bit checksum of the payload) then the payload. Files are written to a temporary name in the
 * same directory and renamed into place, so a reader sees a whole entry or
 * none, and concurrent writers of one key are harmless. An entry whose
 * header, key, size or checksum does not match is reported (OC_DEBUG >= 1),
 * removed and treated as a miss: the caller recompiles and stores a good
 * one. A directory that cannot be created or written only disables the
 * disk level (reported with OC_DEBUG >= 1), never fails a compile.
 *
 * Directory: the argument, else $OC_CACHE_DIR, else
 * $XDG_CACHE_HOME/oodc/kernels, else $HOME/.cache/oodc/kernels.
 * OC_NO_CACHE=1 turns both levels off. OC_DEBUG >= 1 prints every hit,
 * miss, store and rejected entry to stderr.
 */
#ifndef OODC_KCACHE_H
#define OODC_KCACHE_H

#include "../ir/ir.h"

#include <stddef.h>
#include <stdint.h>

struct oc_kkey {
    uint64_t h[2];
};

/* The key of the parts (each hashed with its length, in order). */
struct oc_kkey oc_kcache_key(const char *const *parts, int nparts);
/* 32 lowercase hex digits and a NUL. */
void oc_kcache_key_hex(struct oc_kkey k, char out[33]);

struct oc_kcache;

/* dir NULL: from the environment (above). debug as OC_DEBUG (the larger of
 * the two applies). Never fails for an unusable directory: the cache then
 * works in memory only. */
enum oc_status oc_kcache_open(struct oc_kcache **out, const char *dir, int debug,
                              struct oc_err *err);
void oc_kcache_close(struct oc_kcache *c);

/* 0 when OC_NO_CACHE=1 turned the cache off. */
int oc_kcache_enabled(const struct oc_kcache *c);
/* The directory in use, or NULL when the disk level is off. */
const char *oc_kcache_dir(const struct oc_kcache *c);
/* The path of key's entry file (whether or not it exists). */
void oc_kcache_path(const struct oc_kcache *c, struct oc_kkey key, char *buf, size_t n);

/* 1 and a malloc'd copy in *data / *size on a hit, 0 on a miss. `what`
 * names the entry in debug messages. */
int oc_kcache_get(struct oc_kcache *c, struct oc_kkey key, const char *what, void **data,
                  size_t *size);
/* Stores a copy (memory, then disk). */
void oc_kcache_put(struct oc_kcache *c, struct oc_kkey key, const char *what, const void *data,
                   size_t size);

struct oc_kcache_stats {
    long mem_hits, disk_hits, misses, stores, rejected, write_errors;
};
void oc_kcache_stats(const struct oc_kcache *c, struct oc_kcache_stats *st);

#endif
