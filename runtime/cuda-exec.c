/* cuda-exec.c - compiled executables on the GPU: the CUDA side of
 * oc_compile(g, "cuda", ...).
 *
 *   graph -> oc_pass_fuse -> oc_pass_memplan (one arena)
 *         -> CUDA C of the program's loop kernels (codegen/cuda-emit.c)
 *         -> module (context's modules, kernel cache, NVRTC) -> functions
 *         -> device buffers: pinned ones from the caching allocator, temps
 *            at their planned offsets in one arena allocation
 *
 * A run does what runtime/exec.c does on the CPU, in stream order: checks
 * the inputs, initializes unbound params/state on the host (oc_init_fill)
 * and copies them in, launches the kernels in plan order (library kernels
 * through cuda-blas.c plans), snapshots outputs that read an assigned
 * param, then applies the assigns as device copies (staged when an assign
 * reads another's target; none for an assign that fusion had its kernel
 * write in place, whose own value buffer is never allocated). Temps may
 * hold nodes that fusion added (split reductions' partials, prog->extra).
 * With graph capture on, the first run is eager (it creates cuBLAS and its
 * workspace) and the second is captured into a CUDA graph that every later
 * run replays. With OC_DEBUG >= 1 each kernel is timed with CUDA events
 * (eager runs only) for oc_cuda_exec_profile.
 */
#include "cuda-impl.h"
#include "numerics.h"
#include "runtime.h"

#include "../passes/fuse.h"

#include <stdlib.h>
#include <string.h>

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)

struct oc_cuda_exec {
    struct oc_cuda *cu;
    int own_cu;
    struct oc_cuda_exec_opts o;
    int tf32;
    struct oc_graph *g;
    struct oc_kprog *prog;
    struct oc_cuda_module *mod;
    oc_devptr arena;
    oc_devptr *bufp;    /* per buffer */
    unsigned char *own; /* per buffer: a pinned allocation of its own */
    unsigned char *bound;
    void **fn;          /* per kernel (NULL for library kernels) */
    unsigned *grid;
    oc_devptr **argv;   /* per kernel: slot pointers */
    void ***args;       /* per kernel: pointers to them (cuLaunchKernel's kernelParams) */
    struct oc_lplan *plan;
    oc_devptr scratch[2];
    oc_devptr *snap;    /* per output: value at the start of the step */
    int *snap_needed;
    int stage_assigns;
    oc_devptr *staged;
    struct oc_cuda_timer **kt; /* per kernel (debug) */
    struct oc_cuda_timer *step;
    double *ktime;
    long *kcalls;
    double last_ms;
    void *graph_exec;
    int captured;
    int debug, nruns;
    int numerics; /* OC_CHECK_NUMERICS, read at compile: copy back and scan every kernel's output */
};

static int env_int(const char *name, int dflt)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

struct oc_cuda_exec_opts oc_cuda_exec_defaults(void)
{
    struct oc_cuda_exec_opts o;
    memset(&o, 0, sizeof o);
    o.fusion = 1;
    o.inplace = 1;
    o.tf32 = -1;
    o.graph = env_int("OC_CUDA_GRAPH", 0);
    return o;
}

const struct oc_kprog *oc_cuda_exec_program(const struct oc_cuda_exec *ex) { return ex->prog; }
struct oc_cuda *oc_cuda_exec_device(struct oc_cuda_exec *ex) { return ex->cu; }
double oc_cuda_exec_last_ms(const struct oc_cuda_exec *ex) { return ex->last_ms; }

void oc_cuda_exec_fill_stats(const struct oc_cuda_exec *ex, struct oc_exec_stats *st)
{
    memset(st, 0, sizeof *st);
    const struct oc_kprog *p = ex->prog;
    st->nkernels = p->nkernel;
    st->nbuffers = p->nbuf;
    st->ntemps = p->ntemp;
    st->arena_bytes = p->arena_bytes;
    st->temp_bytes = p->temp_bytes;
    for (int b = 0; b < p->nbuf; b++)
        if (ex->own[b]) st->pinned_bytes += p->buf[b].bytes;
    st->nruns = ex->nruns;
}

void oc_cuda_exec_kernel_time(const struct oc_cuda_exec *ex, int i, double *seconds, long *calls)
{
    *seconds = ex->ktime[i];
    *calls = ex->kcalls[i];
}

static void print_summary(const struct oc_cuda_exec *ex)
{
    const struct oc_kprog *p = ex->prog;
    struct oc_cuda_info info;
    oc_cuda_get_info(ex->cu, &info);
    fprintf(stderr, "oodc: compiled \"%s\" for cuda (%s, %s): %d kernel(s), fusion %s\n", ex->g->name,
            info.name, info.arch, p->nkernel, p->fusion ? "on" : "off");
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        char name[64];
        if (k->kind == OC_K_LOOP) {
            struct oc_cuda_launch l;
            oc_cuda_launch_of(k, &l);
            oc_cuda_kernel_name(k, name, sizeof name);
            fprintf(stderr, "  %3d %-52s %s x%u", i, name, oc_cuda_map_name(l.map), ex->grid[i]);
            fprintf(stderr, " %s", SHP(k->space));
            if (k->rmask) fprintf(stderr, " reduce 0x%x", k->rmask);
        } else {
            fprintf(stderr, "  %3d %-52s cublas, %d step(s)", i, k->name, ex->plan[i].nstep);
        }
        fputc('\n', stderr);
    }
    fprintf(stderr, "  arena %zu bytes for %d temps (%zu without reuse, %d in place)\n",
            p->arena_bytes, p->ntemp, p->temp_bytes, p->ninplace);
}

/* The node whose value buffer kb holds: one of the graph's, or one that
 * fusion added (a split reduction's partials, ids from g->nnodes on, in
 * prog->extra), which only temps name. */
static const struct oc_node *buf_node(const struct oc_cuda_exec *ex, const struct oc_kbuf *kb)
{
    const struct oc_kprog *p = ex->prog;
    OC_ASSERT(kb->node >= 0 && kb->node < p->g->nnodes + p->nextra);
    return kb->node < p->g->nnodes ? p->g->nodes[kb->node] : p->extra[kb->node - p->g->nnodes];
}

static enum oc_status fill_const(struct oc_cuda_exec *ex, const struct oc_kbuf *kb, oc_devptr dst,
                                 struct oc_err *err)
{
    const struct oc_node *n = buf_node(ex, kb);
    struct oc_buf b;
    if (oc_buf_alloc(&b, n->dtype, &n->shape)) return oc_err_set(err, OC_ERR_NOMEM, "cuda exec: out of memory");
    int64_t cnt = oc_shape_numel(&n->shape);
    for (int64_t i = 0; i < cnt; i++)
        oc_buf_set(&b, i, oc_kir_round(n->dtype, n->attrs.data ? n->attrs.data[i] : n->attrs.value));
    enum oc_status st = oc_cuda_htod(ex->cu, dst, b.data, kb->bytes, err);
    oc_buf_free(&b);
    return st;
}

enum oc_status oc_cuda_exec_new(const struct oc_graph *g, const struct oc_cuda_exec_opts *opts,
                                struct oc_cuda_exec **out, struct oc_err *err)
{
    *out = NULL;
    struct oc_cuda_exec_opts o = opts ? *opts : oc_cuda_exec_defaults();
    if (env_int("OC_FUSION", 1) == 0) o.fusion = 0;
    int envdbg = env_int("OC_DEBUG", 0);
    if (envdbg > o.debug) o.debug = envdbg;
    struct oc_err e = {0};
    if (oc_graph_verify(g, &e)) return oc_err_set(err, e.code, "compile: invalid graph: %s", e.msg);
    struct oc_cuda_exec *ex = calloc(1, sizeof *ex);
    if (!ex) return oc_err_set(err, OC_ERR_NOMEM, "cuda exec: out of memory");
    ex->o = o;
    if ((ex->numerics = oc_numerics_enabled())) ex->o.graph = 0; /* the check runs between launches */
    ex->debug = o.debug;
    enum oc_status st = OC_OK;
    if (o.cu) {
        ex->cu = o.cu;
    } else {
        struct oc_cuda_opts co = oc_cuda_opts_default();
        co.debug = o.debug;
        if ((st = oc_cuda_new(&ex->cu, &co, err))) goto fail;
        ex->own_cu = 1;
    }
    if ((st = oc_cuda_bind(ex->cu, err))) goto fail;
    ex->tf32 = o.tf32 >= 0 ? o.tf32 : oc_cuda_tf32(ex->cu);
    if (!(ex->g = oc_graph_clone(g))) {
        st = oc_err_set(err, OC_ERR_NOMEM, "cuda exec: out of memory copying the graph");
        goto fail;
    }
    struct oc_fuse_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.fusion = o.fusion;
    fo.debug = o.debug;
    if ((st = oc_pass_fuse(ex->g, &fo, &ex->prog, err))) goto fail;
    struct oc_kprog *p = ex->prog;
    if ((st = oc_pass_memplan(p, o.inplace, err))) goto fail;

    size_t nk = (size_t)p->nkernel + 1, nb = (size_t)p->nbuf + 1;
    ex->bufp = calloc(nb, sizeof *ex->bufp);
    ex->own = calloc(nb, 1);
    ex->bound = calloc(nb, 1);
    ex->fn = calloc(nk, sizeof *ex->fn);
    ex->grid = calloc(nk, sizeof *ex->grid);
    ex->argv = calloc(nk, sizeof *ex->argv);
    ex->args = calloc(nk, sizeof *ex->args);
    ex->plan = calloc(nk, sizeof *ex->plan);
    ex->kt = calloc(nk, sizeof *ex->kt);
    ex->ktime = calloc(nk, sizeof *ex->ktime);
    ex->kcalls = calloc(nk, sizeof *ex->kcalls);
    ex->snap = calloc((size_t)g->noutputs + 1, sizeof *ex->snap);
    ex->snap_needed = calloc((size_t)g->noutputs + 1, sizeof *ex->snap_needed);
    ex->staged = calloc((size_t)p->nassign + 1, sizeof *ex->staged);
    if (!ex->bufp || !ex->own || !ex->bound || !ex->fn || !ex->grid || !ex->argv || !ex->args ||
        !ex->plan || !ex->kt || !ex->ktime || !ex->kcalls || !ex->snap || !ex->snap_needed || !ex->staged) {
        st = oc_err_set(err, OC_ERR_NOMEM, "cuda exec: out of memory");
        goto fail;
    }

    /* code: one translation unit for the program's loop kernels */
    int nloop = 0;
    for (int i = 0; i < p->nkernel; i++) nloop += p->kernel[i]->kind == OC_K_LOOP;
    if (nloop) {
        char *src = NULL;
        if ((st = oc_cuda_emit_program(p->kernel, p->nkernel, &src, NULL, err))) goto fail;
        char tag[96];
        snprintf(tag, sizeof tag, "%.60s-%016llx", ex->g->name ? ex->g->name : "graph",
                 (unsigned long long)oc_hash64(src, strlen(src), 0));
        for (char *c = tag; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-'))
                *c = '_';
        st = oc_cuda_module_get(ex->cu, src, tag, &ex->mod, err);
        free(src);
        if (st) goto fail;
    }
    struct oc_cuda_info info;
    oc_cuda_get_info(ex->cu, &info);
    size_t scratch[2] = {0, 0};
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (k->kind == OC_K_LOOP) {
            char name[64];
            oc_cuda_kernel_name(k, name, sizeof name);
            if ((st = oc_cuda_function(ex->cu, ex->mod, name, &ex->fn[i], err))) goto fail;
            struct oc_cuda_launch l;
            oc_cuda_launch_of(k, &l);
            ex->grid[i] = l.rows > 0 ? oc_cuda_grid(&l, info.sm_count) : 0;
        } else {
            if ((st = oc_cuda_plan_lib(k, 0, &ex->plan[i], err))) goto fail;
            size_t es = oc_dtype_size(k->lib->dtype);
            for (int s = 0; s < 2; s++)
                if ((size_t)ex->plan[i].scratch[s] * es > scratch[s]) scratch[s] = (size_t)ex->plan[i].scratch[s] * es;
        }
    }

    /* memory: pinned buffers on their own, temps in the arena */
    if (p->arena_bytes && (st = oc_cuda_alloc(ex->cu, p->arena_bytes, &ex->arena, err))) goto fail;
    for (int s = 0; s < 2; s++)
        if (scratch[s] && (st = oc_cuda_alloc(ex->cu, scratch[s], &ex->scratch[s], err))) goto fail;
    for (int b = 0; b < p->nbuf; b++) {
        struct oc_kbuf *kb = &p->buf[b];
        if (kb->merged) continue; /* an assign's value written straight into its target: unused */
        if (kb->pinned || kb->offset < 0) {
            if ((st = oc_cuda_alloc(ex->cu, kb->bytes, &ex->bufp[b], err))) {
                const struct oc_node *n = buf_node(ex, kb);
                oc_err_set(err, st, "cuda exec: cannot allocate %s%s buffer %%%d (%s%s%s)",
                           oc_dtype_name(kb->dtype), SHP(kb->shape), kb->node, oc_op_name(n->op),
                           n->label ? " " : "", n->label ? n->label : "");
                goto fail;
            }
            ex->own[b] = 1;
        } else {
            ex->bufp[b] = ex->arena + (oc_devptr)kb->offset;
        }
        if (kb->kind == OC_KB_CONST && (st = fill_const(ex, kb, ex->bufp[b], err))) goto fail;
    }
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        int n = k->nslot > 3 ? k->nslot : 3;
        ex->argv[i] = calloc((size_t)n + 2, sizeof(oc_devptr));
        ex->args[i] = calloc((size_t)n + 2, sizeof(void *));
        if (!ex->argv[i] || !ex->args[i]) {
            st = oc_err_set(err, OC_ERR_NOMEM, "cuda exec: out of memory");
            goto fail;
        }
        for (int s = 0; s < k->nslot; s++) {
            ex->argv[i][s] = ex->bufp[k->slot[s].buf];
            ex->args[i][s] = &ex->argv[i][s];
        }
    }
    for (int i = 0; i < g->noutputs; i++)
        for (int a = 0; a < p->nassign; a++)
            if (p->assign[a].target == p->out_buf[i]) ex->snap_needed[i] = 1;
    for (int i = 0; i < g->noutputs; i++)
        if (ex->snap_needed[i] && (st = oc_cuda_alloc(ex->cu, p->buf[p->out_buf[i]].bytes, &ex->snap[i], err)))
            goto fail;
    /* assigns read each other's targets: stage every new value first. An
     * assign written in place by its kernel (value == target) copies
     * nothing. */
    for (int a = 0; a < p->nassign; a++)
        for (int b = 0; b < p->nassign; b++)
            if (a != b && p->assign[a].value != p->assign[a].target &&
                p->assign[a].value == p->assign[b].target)
                ex->stage_assigns = 1;
    if (ex->stage_assigns)
        for (int a = 0; a < p->nassign; a++)
            if (p->assign[a].value != p->assign[a].target &&
                (st = oc_cuda_alloc(ex->cu, p->buf[p->assign[a].value].bytes, &ex->staged[a], err)))
                goto fail;
    if ((st = oc_cuda_timer_new(ex->cu, &ex->step, err))) goto fail;
    if (ex->debug >= 1 || o.profile)
        for (int i = 0; i < p->nkernel; i++)
            if ((st = oc_cuda_timer_new(ex->cu, &ex->kt[i], err))) goto fail;
    if (ex->debug >= 1) print_summary(ex);
    *out = ex;
    return OC_OK;
fail:
    oc_cuda_exec_free(ex);
    return st;
}

/* ---------------------------------------------------------------- binding */

static int find_buf_named(const struct oc_cuda_exec *ex, const char *name)
{
    int id = oc_graph_find_named(ex->g, name);
    return id < 0 ? -1 : ex->prog->node_buf[id];
}

/* Converts v to the buffer's dtype on the host and copies it in. */
static enum oc_status copy_in(struct oc_cuda_exec *ex, int b, const struct oc_buf *v, struct oc_err *err)
{
    const struct oc_kbuf *kb = &ex->prog->buf[b];
    if (v->dtype == kb->dtype) return oc_cuda_htod(ex->cu, ex->bufp[b], v->data, kb->bytes, err);
    struct oc_buf c;
    if (oc_buf_alloc(&c, kb->dtype, &kb->shape)) return oc_err_set(err, OC_ERR_NOMEM, "cuda exec: out of memory");
    int64_t cnt = oc_shape_numel(&kb->shape);
    for (int64_t i = 0; i < cnt; i++) oc_buf_set(&c, i, oc_kir_round(kb->dtype, oc_buf_get(v, i)));
    enum oc_status st = oc_cuda_htod(ex->cu, ex->bufp[b], c.data, kb->bytes, err);
    oc_buf_free(&c);
    return st;
}

enum oc_status oc_cuda_exec_set(struct oc_cuda_exec *ex, const char *name, const struct oc_buf *v,
                                struct oc_err *err)
{
    int b = name ? find_buf_named(ex, name) : -1;
    if (b < 0)
        return oc_err_set(err, OC_ERR_INVALID, "exec: graph has no input, param or state named \"%s\"",
                          name ? name : "(null)");
    const struct oc_node *n = buf_node(ex, &ex->prog->buf[b]);
    enum oc_status bs = oc_cuda_bind(ex->cu, err);
    if (bs) return bs;
    int ok_dt = oc_dtype_is_float(n->dtype) ? oc_dtype_is_float(v->dtype) : v->dtype == n->dtype;
    if (!ok_dt || !oc_shape_eq(&n->shape, &v->shape))
        return oc_err_set(err, ok_dt ? OC_ERR_SHAPE : OC_ERR_DTYPE,
                          "exec: %s \"%s\" is %s%s but the value bound to it is %s%s", oc_op_name(n->op),
                          name, oc_dtype_name(n->dtype), SHP(n->shape), oc_dtype_name(v->dtype),
                          SHP(v->shape));
    enum oc_status st = copy_in(ex, b, v, err);
    if (!st) ex->bound[b] = 1;
    return st;
}

/* ---------------------------------------------------------------- running */

static enum oc_status run_kernel(struct oc_cuda_exec *ex, int i, struct oc_err *err)
{
    const struct oc_kernel *k = ex->prog->kernel[i];
    if (k->kind != OC_K_LOOP) {
        oc_devptr bufs[5] = {ex->argv[i][0], ex->argv[i][1], ex->argv[i][2], ex->scratch[0], ex->scratch[1]};
        return oc_cuda_plan_run(ex->cu, &ex->plan[i], bufs, ex->tf32, err);
    }
    return oc_cuda_launch(ex->cu, ex->fn[i], ex->grid[i], OC_CUDA_BLOCK, ex->args[i], k->name, err);
}

/* Everything a step puts on the stream after the host-side checks. */
static enum oc_status enqueue_step(struct oc_cuda_exec *ex, int timed, struct oc_err *err)
{
    struct oc_kprog *p = ex->prog;
    const struct oc_graph *g = ex->g;
    enum oc_status st;
    if (ex->o.poison && p->arena_bytes && (st = oc_cuda_memset8(ex->cu, ex->arena, 0xff, p->arena_bytes, err)))
        return st;
    for (int i = 0; i < p->nkernel; i++) {
        if (timed && (st = oc_cuda_timer_start(ex->cu, ex->kt[i], err))) return st;
        if ((st = run_kernel(ex, i, err))) return st;
        if (timed && (st = oc_cuda_timer_stop(ex->cu, ex->kt[i], err))) return st;
        if (ex->numerics && (st = oc_numerics_check_cuda(ex->cu, p, i, ex->bufp, err))) return st;
    }
    for (int i = 0; i < g->noutputs; i++) {
        if (!ex->snap_needed[i]) continue;
        int b = p->out_buf[i];
        if ((st = oc_cuda_dtod(ex->cu, ex->snap[i], ex->bufp[b], p->buf[b].bytes, err))) return st;
    }
    if (ex->stage_assigns)
        for (int a = 0; a < p->nassign; a++) {
            int v = p->assign[a].value;
            if (v == p->assign[a].target) continue;
            if ((st = oc_cuda_dtod(ex->cu, ex->staged[a], ex->bufp[v], p->buf[v].bytes, err))) return st;
        }
    for (int a = 0; a < p->nassign; a++) {
        const struct oc_kassign *as = &p->assign[a];
        if (as->target == as->value) continue;
        oc_devptr src = ex->stage_assigns ? ex->staged[a] : ex->bufp[as->value];
        if ((st = oc_cuda_dtod(ex->cu, ex->bufp[as->target], src, p->buf[as->target].bytes, err))) return st;
    }
    return OC_OK;
}

enum oc_status oc_cuda_exec_run(struct oc_cuda_exec *ex, uint64_t seed, struct oc_err *err)
{
    struct oc_kprog *p = ex->prog;
    const struct oc_graph *g = ex->g;
    enum oc_status st;
    if ((st = oc_cuda_bind(ex->cu, err))) return st;
    for (int b = 0; b < p->nbuf; b++) {
        const struct oc_kbuf *kb = &p->buf[b];
        if (kb->kind == OC_KB_INPUT && !ex->bound[b]) {
            const struct oc_node *n = buf_node(ex, kb);
            return oc_err_set(err, OC_ERR_INVALID, "exec: input \"%s\" (node %%%d, %s%s) is not bound",
                              n->attrs.name, n->id, oc_dtype_name(n->dtype), SHP(n->shape));
        }
    }
    for (int b = 0; b < p->nbuf; b++) {
        const struct oc_kbuf *kb = &p->buf[b];
        if ((kb->kind != OC_KB_PARAM && kb->kind != OC_KB_STATE) || ex->bound[b]) continue;
        struct oc_buf v;
        if ((st = oc_init_fill(buf_node(ex, kb), seed, &v, err))) return st;
        st = copy_in(ex, b, &v, err);
        oc_buf_free(&v);
        if (st) return st;
        ex->bound[b] = 1;
    }
    int timed = (ex->debug >= 1 || ex->o.profile) && !ex->o.graph;
    if ((st = oc_cuda_timer_start(ex->cu, ex->step, err))) return st;
    if (ex->o.graph && ex->captured) {
        if (ex->graph_exec) st = oc_cuda_graph_launch(ex->cu, ex->graph_exec, err);
        else st = enqueue_step(ex, 0, err); /* the emulation has no graphs: re-run */
    } else if (ex->o.graph && ex->nruns >= 1) {
        /* the second run: capture, then launch what was captured */
        if ((st = oc_cuda_capture_begin(ex->cu, err))) return st;
        enum oc_status cs = enqueue_step(ex, 0, err);
        void *ge = NULL;
        st = oc_cuda_capture_end(ex->cu, &ge, cs ? &(struct oc_err){0} : err);
        if (cs) {
            oc_cuda_graph_free(ex->cu, ge);
            return cs;
        }
        if (st) return st;
        ex->graph_exec = ge;
        ex->captured = 1;
        if (ge) st = oc_cuda_graph_launch(ex->cu, ge, err);
        if (ex->debug >= 1) fprintf(stderr, "oodc: captured \"%s\" into a CUDA graph\n", g->name);
    } else {
        st = enqueue_step(ex, timed, err);
    }
    if (st) return st;
    if ((st = oc_cuda_timer_stop(ex->cu, ex->step, err))) return st;
    if ((st = oc_cuda_timer_ms(ex->cu, ex->step, &ex->last_ms, err))) return st;
    if (timed) {
        for (int i = 0; i < p->nkernel; i++) {
            double ms = 0;
            if ((st = oc_cuda_timer_ms(ex->cu, ex->kt[i], &ms, err))) return st;
            ex->ktime[i] += ms * 1e-3;
            ex->kcalls[i]++;
        }
    }
    ex->nruns++;
    return OC_OK;
}

enum oc_status oc_cuda_exec_get(struct oc_cuda_exec *ex, const char *name, struct oc_buf *out,
                                struct oc_err *err)
{
    memset(out, 0, sizeof *out);
    const struct oc_kprog *p = ex->prog;
    int o = name ? oc_graph_find_output(ex->g, name) : -1;
    int b;
    oc_devptr src;
    if (o >= 0) {
        if (!ex->nruns) return oc_err_set(err, OC_ERR_INVALID, "exec: output \"%s\" read before any run", name);
        b = p->out_buf[o];
        src = ex->snap_needed[o] ? ex->snap[o] : ex->bufp[b];
    } else {
        b = name ? find_buf_named(ex, name) : -1;
        if (b < 0)
            return oc_err_set(err, OC_ERR_INVALID,
                              "exec: graph has no output, input, param or state named \"%s\"",
                              name ? name : "(null)");
        if (!ex->bound[b])
            return oc_err_set(err, OC_ERR_INVALID, "exec: \"%s\" has no value yet (not bound, no run)", name);
        src = ex->bufp[b];
    }
    const struct oc_kbuf *kb = &p->buf[b];
    enum oc_status st = oc_cuda_bind(ex->cu, err);
    if (st) return st;
    if (oc_buf_alloc(out, kb->dtype, &kb->shape)) return oc_err_set(err, OC_ERR_NOMEM, "exec: out of memory");
    st = oc_cuda_dtoh(ex->cu, out->data, src, kb->bytes, err);
    if (st) oc_buf_free(out);
    return st;
}

/* ---------------------------------------------------------------- introspection */

void oc_cuda_exec_profile(const struct oc_cuda_exec *ex, FILE *f)
{
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
    fprintf(f, "profile \"%s\" (cuda): %d run(s), %d kernel(s), %.3f ms in kernels (CUDA events)\n",
            ex->g->name, ex->nruns, p->nkernel, total * 1e3);
    fprintf(f, "  %5s %-52s %8s %12s %12s %6s\n", "#", "kernel", "calls", "total ms", "mean us", "%");
    for (int r = 0; r < p->nkernel; r++) {
        int i = ord[r];
        const struct oc_kernel *k = p->kernel[i];
        char name[80];
        if (k->kind == OC_K_LOOP) oc_cuda_kernel_name(k, name, sizeof name);
        else snprintf(name, sizeof name, "%.52s (cublas)", k->name);
        long c = ex->kcalls[i];
        fprintf(f, "  %5d %-52s %8ld %12.3f %12.2f %6.1f\n", i, name, c, ex->ktime[i] * 1e3,
                c ? ex->ktime[i] * 1e6 / (double)c : 0.0, total > 0 ? 100.0 * ex->ktime[i] / total : 0.0);
    }
    free(ord);
}

void oc_cuda_exec_free(struct oc_cuda_exec *ex)
{
    if (!ex) return;
    if (ex->debug >= 1 && ex->prog && ex->nruns && ex->ktime) oc_cuda_exec_profile(ex, stderr);
    struct oc_cuda *cu = ex->cu;
    const struct oc_kprog *p = ex->prog;
    if (cu) {
        struct oc_err ignore = {0};
        oc_cuda_sync(cu, &ignore);
        oc_cuda_graph_free(cu, ex->graph_exec);
        if (p) {
            for (int i = 0; i < p->nkernel; i++) {
                if (ex->argv) free(ex->argv[i]);
                if (ex->args) free(ex->args[i]);
                if (ex->plan) oc_cuda_plan_free(&ex->plan[i]);
                if (ex->kt) oc_cuda_timer_free(cu, ex->kt[i]);
            }
            for (int b = 0; ex->own && b < p->nbuf; b++)
                if (ex->own[b]) oc_cuda_release(cu, ex->bufp[b]);
            for (int a = 0; ex->staged && a < p->nassign; a++) oc_cuda_release(cu, ex->staged[a]);
        }
        if (ex->snap)
            for (int i = 0; ex->g && i < ex->g->noutputs; i++) oc_cuda_release(cu, ex->snap[i]);
        oc_cuda_release(cu, ex->arena);
        oc_cuda_release(cu, ex->scratch[0]);
        oc_cuda_release(cu, ex->scratch[1]);
        oc_cuda_timer_free(cu, ex->step);
    }
    free(ex->bufp);
    free(ex->own);
    free(ex->bound);
    free(ex->fn);
    free(ex->grid);
    free(ex->argv);
    free(ex->args);
    free(ex->plan);
    free(ex->kt);
    free(ex->ktime);
    free(ex->kcalls);
    free(ex->snap);
    free(ex->snap_needed);
    free(ex->staged);
    oc_kprog_free(ex->prog);
    if (ex->own_cu) oc_cuda_free(cu);
    oc_graph_free(ex->g);
    free(ex);
}
