/* memplan.c - the memory plan: where each temporary buffer lives in the one
 * arena a device allocates for a step.
 *
 * Liveness is taken over the scheduled kernels: a temp is born at the kernel
 * that writes it and dies after the last kernel that reads it. Kernels are
 * walked in order; each result gets the lowest free range of the arena that
 * fits (first fit, 64-byte aligned), and operands dying at a kernel are
 * released after its results are placed, so a result never lands on memory
 * its own kernel still reads. The one exception is in-place reuse: in an
 * elementwise kernel (no reduced axes) a result may take over a dying
 * operand of the same size when every read of that operand is at the very
 * index the result is written at, and that read is part of the stored
 * value (so it is emitted before the store). A grouped kernel (kir.h)
 * never reuses in place: its members run in no particular order, so one
 * member's result may not take over another's operand (fusion only groups
 * kernels that write pinned buffers anyway); its slots, the members'
 * buffers, give its liveness like any kernel's. Params, state, inputs,
 * consts, outputs and assign values are pinned outside the arena.
 */
#include "kir.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 64

struct block {
    int64_t off, size;
};

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* Whether value v reaches load `want` (by DFS over its arguments). */
static int reaches_val(const struct oc_kval *v, const struct oc_kval *want, unsigned char *seen)
{
    if (v == want) return 1;
    if (seen[v->id]) return 0;
    seen[v->id] = 1;
    for (int i = 0; i < v->nargs; i++)
        if (reaches_val(v->arg[i], want, seen)) return 1;
    if (v->ix)
        for (int t = 0; t < v->ix->nterm; t++)
            if (v->ix->atom[t]->v && reaches_val(v->ix->atom[t]->v, want, seen)) return 1;
    return 0;
}

/* Can store `st` of kernel k overwrite input slot `in` in place? */
static int inplace_ok(const struct oc_kernel *k, const struct oc_kstore *st, int in)
{
    if (k->kind != OC_K_LOOP || oc_kir_is_group(k) || k->rmask || st->stage >= 0) return 0;
    const struct oc_kval *load = NULL;
    for (int i = 0; i < k->nval; i++) {
        const struct oc_kval *v = k->vals[i];
        if (v->kind != OC_KV_LOAD || v->slot != in) continue;
        if (v->ix != st->ix || load) return 0; /* another index, or loaded twice */
        load = v;
    }
    /* an index expression (gather) reading the slot also counts as a load above */
    if (!load) return 0;
    unsigned char *seen = calloc((size_t)k->nval + 1, 1);
    if (!seen) return 0;
    int ok = reaches_val(st->v, load, seen);
    free(seen);
    return ok;
}

enum oc_status oc_pass_memplan(struct oc_kprog *p, int inplace, struct oc_err *err)
{
    for (int b = 0; b < p->nbuf; b++) {
        p->buf[b].def = p->buf[b].last = -1;
        p->buf[b].offset = -1;
    }
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        for (int s = 0; s < k->nslot; s++) {
            struct oc_kbuf *b = &p->buf[k->slot[s].buf];
            if (k->slot[s].written) {
                if (b->def < 0) b->def = i;
            } else {
                b->last = i;
            }
        }
    }
    p->ntemp = 0;
    p->temp_bytes = 0;
    p->arena_bytes = 0;
    p->ninplace = 0;
    struct block *live = calloc((size_t)p->nbuf + 1, sizeof *live);
    int *owner = calloc((size_t)p->nbuf + 1, sizeof *owner);
    unsigned char *taken = calloc((size_t)p->nbuf + 1, 1);
    if (!live || !owner || !taken) {
        free(live);
        free(owner);
        free(taken);
        return oc_err_set(err, OC_ERR_NOMEM, "memplan: out of memory");
    }
    int nlive = 0;
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        /* place the results */
        for (int s = 0; s < k->nslot; s++) {
            if (!k->slot[s].written) continue;
            int bi = k->slot[s].buf;
            struct oc_kbuf *b = &p->buf[bi];
            if (b->pinned || b->def != i || b->offset >= 0) continue;
            if (b->last < i) b->last = i; /* written, never read: dies at once */
            int64_t size = align_up((int64_t)(b->bytes ? b->bytes : 1));
            p->ntemp++;
            p->temp_bytes += (size_t)size;
            int placed = 0;
            if (inplace) {
                const struct oc_kstore *st = NULL;
                for (int t = 0; t < k->nstore; t++)
                    if (k->store[t].slot == s) st = &k->store[t];
                for (int q = 0; st && q < k->nslot && !placed; q++) {
                    int ib = k->slot[q].buf;
                    const struct oc_kbuf *in = &p->buf[ib];
                    if (k->slot[q].written || in->pinned || in->last != i || taken[ib] ||
                        in->offset < 0 || in->bytes != b->bytes ||
                        oc_dtype_size(in->dtype) != oc_dtype_size(b->dtype))
                        continue;
                    if (!inplace_ok(k, st, q)) continue;
                    b->offset = in->offset;
                    taken[ib] = 1;
                    for (int l = 0; l < nlive; l++)
                        if (owner[l] == ib) owner[l] = bi; /* the block changes hands */
                    p->ninplace++;
                    placed = 1;
                }
            }
            if (placed) continue;
            /* first fit among the live blocks (kept sorted by offset) */
            int64_t off = 0;
            int pos = 0;
            for (; pos < nlive; pos++) {
                if (live[pos].off - off >= size) break;
                int64_t end = live[pos].off + live[pos].size;
                if (end > off) off = end;
            }
            memmove(&live[pos + 1], &live[pos], sizeof *live * (size_t)(nlive - pos));
            memmove(&owner[pos + 1], &owner[pos], sizeof *owner * (size_t)(nlive - pos));
            live[pos] = (struct block){off, size};
            owner[pos] = bi;
            nlive++;
            b->offset = off;
            if ((size_t)(off + size) > p->arena_bytes) p->arena_bytes = (size_t)(off + size);
        }
        /* release what dies here */
        for (int l = 0; l < nlive;) {
            const struct oc_kbuf *b = &p->buf[owner[l]];
            if (b->last <= i) {
                memmove(&live[l], &live[l + 1], sizeof *live * (size_t)(nlive - l - 1));
                memmove(&owner[l], &owner[l + 1], sizeof *owner * (size_t)(nlive - l - 1));
                nlive--;
            } else {
                l++;
            }
        }
    }
    free(live);
    free(owner);
    free(taken);
    return OC_OK;
}
