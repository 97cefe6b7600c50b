/* exec.c - compiled executables: the runtime end of the compile pipeline.
 *
 *   graph -> oc_pass_fuse (kernel program) -> oc_pass_memplan (one arena)
 *         -> oc_llvm_compile (JIT, cached by structural hash) -> buffers
 *
 * A run checks the inputs, initializes unbound params/state from their
 * initializers with the run's seed (as the interpreter does), launches the
 * kernels in plan order (loop kernels split over their outer loop on the
 * thread pool, library kernels through BLAS), snapshots outputs that read
 * an assigned param, then applies the assigns in node order. With
 * OC_DEBUG >= 1 each kernel is timed.
 */
#include "runtime.h"

#include "../codegen/codegen.h"
#include "../passes/fuse.h"
#include "cpu-impl.h"
#include "cuda-impl.h"
#include "numerics.h"
#include "cpu-dnnl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)

/* Below this many points a loop kernel runs on the calling thread. */
#define PAR_MIN_POINTS 32768

struct oc_rt {
    struct oc_cuda *cuda; /* created on the first cuda compile */
    struct oc_llvm *llvm;
    struct oc_pool *pool;
    int nthreads, debug;
};

struct oc_exec {
    struct oc_cuda_exec *cuda; /* set: everything below is unused, the CUDA executor runs it */
    struct oc_rt *rt;
    int own_rt;
    struct oc_graph *g;
    struct oc_kprog *prog;
    oc_kernel_fn *fn;
    void ***args;  /* per kernel: its slots' pointers */
    void **bufp;   /* per buffer */
    void **pinned; /* per buffer: its own allocation, or NULL */
    unsigned char *arena;
    void *scratch;
    struct oc_dnnl *dnnl; /* the convolutions run by oneDNN (cpu-dnnl.c) */
    size_t scratch_bytes;
    unsigned char *bound; /* per buffer: input/param/state holds a value */
    struct oc_buf *snap;  /* per output: value at the start of the step (assigned params) */
    int *snap_needed;
    int stage_assigns;    /* an assign reads another assign's target: stage values first */
    void **staged;
    double *ktime;
    long *kcalls;
    int debug, poison, profile, nruns;
    int numerics; /* OC_CHECK_NUMERICS, read at compile: scan every kernel's output */
};

static int env_int(const char *name, int dflt)
{
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    return atoi(s);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- runtime context */

enum oc_status oc_rt_new(struct oc_rt **out, int nthreads, int debug, struct oc_err *err)
{
    *out = NULL;
    struct oc_rt *rt = calloc(1, sizeof *rt);
    if (!rt) return oc_err_set(err, OC_ERR_NOMEM, "runtime: out of memory");
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    rt->nthreads = nthreads;
    rt->debug = debug;
    enum oc_status st = oc_llvm_new(&rt->llvm, debug, err);
    if (st) {
        free(rt);
        return st;
    }
    oc_cpu_lib_init();
    rt->pool = oc_pool_new(nthreads);
    if (!rt->pool) {
        oc_rt_free(rt);
        return oc_err_set(err, OC_ERR_NOMEM, "runtime: cannot start the thread pool");
    }
    *out = rt;
    return OC_OK;
}

void oc_rt_free(struct oc_rt *rt)
{
    if (!rt) return;
    oc_cuda_free(rt->cuda);
    oc_pool_free(rt->pool);
    oc_llvm_free(rt->llvm);
    free(rt);
}

int oc_rt_nthreads(const struct oc_rt *rt) { return rt ? oc_pool_size(rt->pool) : 1; }

void oc_rt_cache_stats(const struct oc_rt *rt, int *compiled, int *hits)
{
    oc_llvm_stats(rt ? rt->llvm : NULL, compiled, hits);
}

/* ---------------------------------------------------------------- compile */

struct oc_compile_opts oc_compile_defaults(void)
{
    struct oc_compile_opts o;
    memset(&o, 0, sizeof o);
    o.fusion = 1;
    o.inplace = 1;
    o.tf32 = -1;
    return o;
}

static void *xalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) return NULL;
    memset(p, 0, n ? n : 64);
    return p;
}

static void print_summary(const struct oc_exec *ex)
{
    const struct oc_kprog *p = ex->prog;
    fprintf(stderr, "oodc: compiled \"%s\" for cpu: %d kernel(s), fusion %s\n", ex->g->name,
            p->nkernel, p->fusion ? "on" : "off");
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        fprintf(stderr, "  %3d %-44s %s", i, k->name, k->kind == OC_K_LOOP ? "loop" : "library");
        if (k->kind == OC_K_LOOP) {
            fprintf(stderr, " %s", SHP(k->space));
            if (k->rmask) fprintf(stderr, " reduce 0x%x", k->rmask);
        }
        fprintf(stderr, " nodes");
        for (int m = 0; m < k->nmember && m < 8; m++) fprintf(stderr, " %%%d", k->member[m]);
        if (k->nmember > 8) fprintf(stderr, " ...");
        fputc('\n', stderr);
    }
    fprintf(stderr, "  arena %zu bytes for %d temps (%zu without reuse, %d in place)\n",
            p->arena_bytes, p->ntemp, p->temp_bytes, p->ninplace);
    if (p->nassign) {
        int inpl = 0;
        for (int a = 0; a < p->nassign; a++) inpl += p->assign[a].target == p->assign[a].value;
        fprintf(stderr, "  %d assign(s), %d written in place by their kernel\n", p->nassign, inpl);
    }
}

static void fill_const(const struct oc_node *n, void *dst)
{
    struct oc_buf b = {n->dtype, n->shape, dst};
    int64_t cnt = oc_shape_numel(&n->shape);
    for (int64_t i = 0; i < cnt; i++)
        oc_buf_set(&b, i, oc_kir_round(n->dtype, n->attrs.data ? n->attrs.data[i] : n->attrs.value));
}

/* The CUDA executor (runtime/cuda-exec.c) runs the whole program; the
 * oc_exec handle forwards to it. */
static enum oc_status compile_cuda(const struct oc_graph *g, const struct oc_compile_opts *o,
                                   struct oc_exec **out, struct oc_err *err)
{
    struct oc_cuda_exec_opts co = oc_cuda_exec_defaults();
    co.fusion = o->fusion;
    co.debug = o->debug;
    co.inplace = o->inplace;
    co.poison = o->poison;
    co.profile = o->profile;
    co.tf32 = o->tf32;
    co.graph = co.graph || o->cuda_graph;
    enum oc_status st;
    if (o->rt) {
        if (!o->rt->cuda && (st = oc_cuda_new(&o->rt->cuda, NULL, err))) return st;
        co.cu = o->rt->cuda;
    }
    struct oc_exec *cx = calloc(1, sizeof *cx);
    if (!cx) return oc_err_set(err, OC_ERR_NOMEM, "compile: out of memory");
    if ((st = oc_cuda_exec_new(g, &co, &cx->cuda, err))) {
        free(cx);
        return st;
    }
    *out = cx;
    return OC_OK;
}

enum oc_status oc_compile(const struct oc_graph *g, const char *device,
                          const struct oc_compile_opts *opts, struct oc_exec **out,
                          struct oc_err *err)
{
    *out = NULL;
    struct oc_compile_opts o = opts ? *opts : oc_compile_defaults();
    if (env_int("OC_FUSION", 1) == 0) o.fusion = 0;
    int envdbg = env_int("OC_DEBUG", 0);
    if (envdbg > o.debug) o.debug = envdbg;
    if (device && !strcmp(device, "cuda")) return compile_cuda(g, &o, out, err);
    if (device && strcmp(device, "cpu"))
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "compile: device \"%s\" is not available in this build (use \"cpu\")",
                          device);
    struct oc_err e = {0};
    if (oc_graph_verify(g, &e)) return oc_err_set(err, e.code, "compile: invalid graph: %s", e.msg);

    struct oc_exec *ex = calloc(1, sizeof *ex);
    if (!ex) return oc_err_set(err, OC_ERR_NOMEM, "compile: out of memory");
    ex->debug = o.debug;
    ex->poison = o.poison;
    ex->profile = o.profile || o.debug >= 1;
    ex->numerics = oc_numerics_enabled();
    enum oc_status st = OC_OK;
    ex->g = oc_graph_clone(g);
    if (!ex->g) {
        st = oc_err_set(err, OC_ERR_NOMEM, "compile: out of memory copying the graph");
        goto fail;
    }
    if (o.rt) {
        ex->rt = o.rt;
    } else {
        st = oc_rt_new(&ex->rt, o.nthreads, o.debug, err);
        if (st) goto fail;
        ex->own_rt = 1;
    }
    struct oc_fuse_opts fo = {o.fusion, o.debug, NULL};
    st = oc_pass_fuse(ex->g, &fo, &ex->prog, err);
    if (st) goto fail;
    struct oc_kprog *p = ex->prog;
    st = oc_pass_memplan(p, o.inplace, err);
    if (st) goto fail;

    ex->fn = calloc((size_t)p->nkernel + 1, sizeof *ex->fn);
    ex->args = calloc((size_t)p->nkernel + 1, sizeof *ex->args);
    ex->bufp = calloc((size_t)p->nbuf + 1, sizeof *ex->bufp);
    ex->pinned = calloc((size_t)p->nbuf + 1, sizeof *ex->pinned);
    ex->bound = calloc((size_t)p->nbuf + 1, 1);
    ex->ktime = calloc((size_t)p->nkernel + 1, sizeof *ex->ktime);
    ex->kcalls = calloc((size_t)p->nkernel + 1, sizeof *ex->kcalls);
    ex->snap = calloc((size_t)g->noutputs + 1, sizeof *ex->snap);
    ex->snap_needed = calloc((size_t)g->noutputs + 1, sizeof *ex->snap_needed);
    ex->staged = calloc((size_t)p->nassign + 1, sizeof *ex->staged);
    if (!ex->fn || !ex->args || !ex->bufp || !ex->pinned || !ex->bound || !ex->ktime ||
        !ex->kcalls || !ex->snap || !ex->snap_needed || !ex->staged) {
        st = oc_err_set(err, OC_ERR_NOMEM, "compile: out of memory");
        goto fail;
    }
    st = oc_llvm_compile(ex->rt->llvm, p->kernel, p->nkernel, ex->fn, ex->debug, err);
    if (st) goto fail;

    /* memory: pinned buffers on their own, temps in the arena */
    ex->arena = xalloc(p->arena_bytes);
    if (!ex->arena) {
        st = oc_err_set(err, OC_ERR_NOMEM, "compile: cannot allocate a %zu-byte arena",
                        p->arena_bytes);
        goto fail;
    }
    for (int b = 0; b < p->nbuf; b++) {
        struct oc_kbuf *kb = &p->buf[b];
        if (kb->merged) continue; /* an assign's value now written in place */
        if (kb->pinned || kb->offset < 0) {
            ex->pinned[b] = xalloc(kb->bytes);
            if (!ex->pinned[b]) {
                st = oc_err_set(err, OC_ERR_NOMEM, "compile: out of memory for %s%s buffer %%%d",
                                oc_dtype_name(kb->dtype), SHP(kb->shape), kb->node);
                goto fail;
            }
            ex->bufp[b] = ex->pinned[b];
        } else {
            ex->bufp[b] = ex->arena + kb->offset;
        }
        if (kb->kind == OC_KB_CONST) fill_const(ex->g->nodes[kb->node], ex->bufp[b]);
    }
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        ex->args[i] = calloc((size_t)k->nslot + 1, sizeof(void *));
        if (!ex->args[i]) {
            st = oc_err_set(err, OC_ERR_NOMEM, "compile: out of memory");
            goto fail;
        }
        for (int s = 0; s < k->nslot; s++) ex->args[i][s] = ex->bufp[k->slot[s].buf];
        size_t sc = oc_cpu_lib_scratch(k) * (size_t)oc_pool_size(ex->rt->pool);
        if (sc > ex->scratch_bytes) ex->scratch_bytes = sc;
    }
    if (ex->scratch_bytes && !(ex->scratch = xalloc(ex->scratch_bytes))) {
        st = oc_err_set(err, OC_ERR_NOMEM, "compile: out of memory for convolution scratch");
        goto fail;
    }
    st = oc_dnnl_new(&ex->dnnl, p->kernel, p->nkernel, oc_pool_size(ex->rt->pool), OC_CONV_ENV,
                     ex->debug, err);
    if (st) goto fail;
    /* outputs reading a param/state that an assign overwrites */
    for (int i = 0; i < g->noutputs; i++)
        for (int a = 0; a < p->nassign; a++)
            if (p->assign[a].target == p->out_buf[i]) ex->snap_needed[i] = 1;
    for (int a = 0; a < p->nassign; a++)
        for (int b = 0; b < p->nassign; b++)
            if (p->assign[a].value == p->assign[b].target) ex->stage_assigns = 1;
    if (ex->debug >= 1) print_summary(ex);
    *out = ex;
    return OC_OK;
fail:
    oc_exec_free(ex);
    return st;
}

/* ---------------------------------------------------------------- binding */

static int find_buf_named(const struct oc_exec *ex, const char *name)
{
    int id = oc_graph_find_named(ex->g, name);
    return id < 0 ? -1 : ex->prog->node_buf[id];
}

static void copy_in(const struct oc_kbuf *kb, void *dst, const struct oc_buf *v)
{
    int64_t cnt = oc_shape_numel(&kb->shape);
    if (v->dtype == kb->dtype) {
        memcpy(dst, v->data, kb->bytes);
        return;
    }
    struct oc_buf b = {kb->dtype, kb->shape, dst};
    for (int64_t i = 0; i < cnt; i++) oc_buf_set(&b, i, oc_kir_round(kb->dtype, oc_buf_get(v, i)));
}

enum oc_status oc_exec_set(struct oc_exec *ex, const char *name, const struct oc_buf *v,
                           struct oc_err *err)
{
    if (ex->cuda) return oc_cuda_exec_set(ex->cuda, name, v, err);
    int b = name ? find_buf_named(ex, name) : -1;
    if (b < 0)
        return oc_err_set(err, OC_ERR_INVALID, "exec: graph has no input, param or state named \"%s\"",
                          name ? name : "(null)");
    const struct oc_kbuf *kb = &ex->prog->buf[b];
    const struct oc_node *n = ex->g->nodes[kb->node];
    int ok_dt = oc_dtype_is_float(n->dtype) ? oc_dtype_is_float(v->dtype) : v->dtype == n->dtype;
    if (!ok_dt || !oc_shape_eq(&n->shape, &v->shape))
        return oc_err_set(err, ok_dt ? OC_ERR_SHAPE : OC_ERR_DTYPE,
                          "exec: %s \"%s\" is %s%s but the value bound to it is %s%s",
                          oc_op_name(n->op), name, oc_dtype_name(n->dtype), SHP(n->shape),
                          oc_dtype_name(v->dtype), SHP(v->shape));
    copy_in(kb, ex->bufp[b], v);
    ex->bound[b] = 1;
    return OC_OK;
}

/* ---------------------------------------------------------------- running */

struct chunk_job {
    oc_kernel_fn fn;
    void **args;
};

static void run_chunk(void *ctx, int64_t b, int64_t e)
{
    const struct chunk_job *j = ctx;
    j->fn(j->args, b, e);
}

static void run_kernel(struct oc_exec *ex, int i)
{
    const struct oc_kernel *k = ex->prog->kernel[i];
    if (k->kind != OC_K_LOOP) {
        if (!oc_dnnl_run(ex->dnnl, i, ex->args[i], ex->rt->pool))
            oc_cpu_lib_run(k, ex->args[i], ex->scratch, ex->rt->pool);
        return;
    }
    int64_t outer = oc_kir_outer_extent(k), points = oc_kir_points(k);
    if (outer <= 0 || points == 0) return;
    struct oc_pool *pool = ex->rt->pool;
    int nt = oc_pool_size(pool);
    if (nt <= 1 || outer < 2 || points < PAR_MIN_POINTS) {
        ex->fn[i](ex->args[i], 0, outer);
        return;
    }
    /* many chunks per thread, none smaller than ~4K points: on a shared
     * machine a thread can lose its core for a while, and the others then
     * take over its share (the chunks are claimed dynamically) */
    int64_t per = points / outer;
    int64_t grain = (outer + 16 * (int64_t)nt - 1) / (16 * (int64_t)nt);
    int64_t min_rows = per > 0 ? (4096 + per - 1) / per : outer;
    if (grain < min_rows) grain = min_rows;
    int64_t rb = oc_llvm_row_block(k); /* whole blocks of rows per chunk */
    if (rb > 1) grain = (grain + rb - 1) / rb * rb;
    struct chunk_job j = {ex->fn[i], ex->args[i]};
    oc_pool_run(pool, outer, grain, run_chunk, &j);
}

enum oc_status oc_exec_run(struct oc_exec *ex, uint64_t seed, struct oc_err *err)
{
    if (ex->cuda) return oc_cuda_exec_run(ex->cuda, seed, err);
    struct oc_kprog *p = ex->prog;
    const struct oc_graph *g = ex->g;
    for (int b = 0; b < p->nbuf; b++) {
        const struct oc_kbuf *kb = &p->buf[b];
        if (kb->kind == OC_KB_INPUT && !ex->bound[b]) {
            const struct oc_node *n = g->nodes[kb->node];
            return oc_err_set(err, OC_ERR_INVALID, "exec: input \"%s\" (node %%%d, %s%s) is not bound",
                              n->attrs.name, n->id, oc_dtype_name(n->dtype), SHP(n->shape));
        }
    }
    for (int b = 0; b < p->nbuf; b++) {
        const struct oc_kbuf *kb = &p->buf[b];
        if ((kb->kind != OC_KB_PARAM && kb->kind != OC_KB_STATE) || ex->bound[b]) continue;
        struct oc_buf v;
        enum oc_status st = oc_init_fill(g->nodes[kb->node], seed, &v, err);
        if (st) return st;
        copy_in(kb, ex->bufp[b], &v);
        oc_buf_free(&v);
        ex->bound[b] = 1;
    }
    if (ex->poison && p->arena_bytes) memset(ex->arena, 0xff, p->arena_bytes);
    for (int i = 0; i < p->nkernel; i++) {
        if (ex->profile) {
            double t0 = now_s();
            run_kernel(ex, i);
            ex->ktime[i] += now_s() - t0;
            ex->kcalls[i]++;
        } else {
            run_kernel(ex, i);
        }
        enum oc_status ns = ex->numerics ? oc_numerics_check_host(p, i, ex->bufp, err) : OC_OK;
        if (ns) return ns;
    }
    for (int i = 0; i < g->noutputs; i++) {
        if (!ex->snap_needed[i]) continue;
        const struct oc_kbuf *kb = &p->buf[p->out_buf[i]];
        if (!ex->snap[i].data && oc_buf_alloc(&ex->snap[i], kb->dtype, &kb->shape))
            return oc_err_set(err, OC_ERR_NOMEM, "exec: out of memory");
        memcpy(ex->snap[i].data, ex->bufp[p->out_buf[i]], kb->bytes);
    }
    if (ex->stage_assigns) {
        for (int a = 0; a < p->nassign; a++) {
            size_t n = p->buf[p->assign[a].value].bytes;
            if (!ex->staged[a] && !(ex->staged[a] = xalloc(n)))
                return oc_err_set(err, OC_ERR_NOMEM, "exec: out of memory");
            memcpy(ex->staged[a], ex->bufp[p->assign[a].value], n);
        }
    }
    for (int a = 0; a < p->nassign; a++) {
        const struct oc_kassign *as = &p->assign[a];
        if (as->target == as->value) continue;
        memcpy(ex->bufp[as->target], ex->stage_assigns ? ex->staged[a] : ex->bufp[as->value],
               p->buf[as->target].bytes);
    }
    ex->nruns++;
    return OC_OK;
}

enum oc_status oc_exec_get(struct oc_exec *ex, const char *name, struct oc_buf *out,
                           struct oc_err *err)
{
    if (ex->cuda) return oc_cuda_exec_get(ex->cuda, name, out, err);
    memset(out, 0, sizeof *out);
    const struct oc_kprog *p = ex->prog;
    int o = name ? oc_graph_find_output(ex->g, name) : -1;
    int b;
    const void *src;
    if (o >= 0) {
        if (!ex->nruns)
            return oc_err_set(err, OC_ERR_INVALID, "exec: output \"%s\" read before any run", name);
        b = p->out_buf[o];
        src = ex->snap_needed[o] ? ex->snap[o].data : ex->bufp[b];
    } else {
        b = name ? find_buf_named(ex, name) : -1;
        if (b < 0)
            return oc_err_set(err, OC_ERR_INVALID,
                              "exec: graph has no output, input, param or state named \"%s\"",
                              name ? name : "(null)");
        if (!ex->bound[b])
            return oc_err_set(err, OC_ERR_INVALID, "exec: \"%s\" has no value yet (not bound, no run)",
                              name);
        src = ex->bufp[b];
    }
    const struct oc_kbuf *kb = &p->buf[b];
    if (oc_buf_alloc(out, kb->dtype, &kb->shape)) return oc_err_set(err, OC_ERR_NOMEM, "exec: out of memory");
    memcpy(out->data, src, kb->bytes);
    return OC_OK;
}

/* ---------------------------------------------------------------- introspection */

const struct oc_kprog *oc_exec_program(const struct oc_exec *ex)
{
    return ex->cuda ? oc_cuda_exec_program(ex->cuda) : ex->prog;
}

void oc_exec_stats(const struct oc_exec *ex, struct oc_exec_stats *st)
{
    if (ex->cuda) {
        oc_cuda_exec_fill_stats(ex->cuda, st);
        return;
    }
    memset(st, 0, sizeof *st);
    const struct oc_kprog *p = ex->prog;
    st->nkernels = p->nkernel;
    st->nbuffers = p->nbuf;
    st->ntemps = p->ntemp;
    st->arena_bytes = p->arena_bytes;
    st->temp_bytes = p->temp_bytes;
    for (int b = 0; b < p->nbuf; b++)
        if (ex->pinned[b]) st->pinned_bytes += p->buf[b].bytes;
    st->nruns = ex->nruns;
}

void oc_exec_profile(const struct oc_exec *ex, FILE *f)
{
    if (ex->cuda) {
        oc_cuda_exec_profile(ex->cuda, f);
        return;
    }
    const struct oc_kprog *p = ex->prog;
    int *ord = malloc(sizeof(int) * ((size_t)p->nkernel + 1));
    if (!ord) return;
    double total = 0;
    for (int i = 0; i < p->nkernel; i++) {
        ord[i] = i;
        total += ex->ktime[i];
    }
    for (int i = 1; i < p->nkernel; i++)
        for (int j = i; j > 0 && ex->ktime[ord[j - 1]] < ex->ktime[ord[j]]; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1], ord[j - 1] = t;
        }
    fprintf(f, "profile \"%s\": %d run(s), %d kernel(s), %.3f ms in kernels%s\n", ex->g->name,
            ex->nruns, p->nkernel, total * 1e3,
            ex->profile ? "" : " (not timed: compile with opts.profile or OC_DEBUG=1)");
    fprintf(f, "  %5s %-44s %8s %12s %12s %6s\n", "#", "kernel", "calls", "total ms", "mean us", "%");
    for (int r = 0; r < p->nkernel; r++) {
        int i = ord[r];
        long c = ex->kcalls[i];
        fprintf(f, "  %5d %-44s %8ld %12.3f %12.2f %6.1f\n", i, p->kernel[i]->name, c,
                ex->ktime[i] * 1e3, c ? ex->ktime[i] * 1e6 / (double)c : 0.0,
                total > 0 ? 100.0 * ex->ktime[i] / total : 0.0);
    }
    free(ord);
}

void oc_exec_free(struct oc_exec *ex)
{
    if (!ex) return;
    if (ex->cuda) {
        oc_cuda_exec_free(ex->cuda);
        free(ex);
        return;
    }
    if (ex->debug >= 1 && ex->prog && ex->nruns) oc_exec_profile(ex, stderr);
    const struct oc_kprog *p = ex->prog;
    if (p) {
        for (int i = 0; ex->args && i < p->nkernel; i++) free(ex->args[i]);
        for (int b = 0; ex->pinned && b < p->nbuf; b++) free(ex->pinned[b]);
        for (int a = 0; ex->staged && a < p->nassign; a++) free(ex->staged[a]);
    }
    if (ex->snap)
        for (int i = 0; ex->g && i < ex->g->noutputs; i++) oc_buf_free(&ex->snap[i]);
    free(ex->fn);
    free(ex->args);
    free(ex->bufp);
    free(ex->pinned);
    free(ex->arena);
    free(ex->scratch);
    oc_dnnl_free(ex->dnnl);
    free(ex->bound);
    free(ex->snap);
    free(ex->snap_needed);
    free(ex->staged);
    free(ex->ktime);
    free(ex->kcalls);
    oc_kprog_free(ex->prog);
    if (ex->own_rt) oc_rt_free(ex->rt);
    oc_graph_free(ex->g);
    free(ex);
}
