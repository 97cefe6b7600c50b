/* rng.c - counter-based random numbers (Philox4x32-10) and the parameter
 * initializers built on them.
 *
 * Every random value in oodc is a pure function of (seed, counter, element
 * index), so the interpreter, the LLVM backend and the CUDA backend draw the
 * same stream without sharing any generator state:
 *   element i of an rng node with seed s at counter c
 *     = philox4x32_10(ctr = {lo32(i), c, hi32(i), 0}, key = {lo32(s), hi32(s)})
 *   uniform: (out[0] >> 8) * 2^-24                      in [0, 1), 24 bits
 *   normal : Box-Muller, u1 = ((out[0] >> 8) + 1) * 2^-24 in (0, 1],
 *            u2 = (out[1] >> 8) * 2^-24, z = sqrt(-2 ln u1) cos(2 pi u2)
 * 24 bits are exactly what an f32 holds, so a backend computing in float
 * gets the same uniforms; |z| <= sqrt(48 ln 2) ~ 5.77 by construction.
 *
 * Initializers (oc_init_fill) draw from the stream keyed by
 * seed' = oc_hash64(name, strlen(name), seed ^ 0x6f6f6463) at counter 0, so a
 * parameter's initial value depends only on the graph seed and its own name:
 * adding or reordering parameters leaves the others unchanged.
 */
#include "ir.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- Philox */

#define OC_PI 3.14159265358979323846 /* M_PI is not in strict C11 */

#define PHILOX_M0 0xD2511F53u /* round multipliers */
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* Weyl key increments */
#define PHILOX_W1 0xBB67AE85u

/* Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11);
 * the round function and key schedule of Random123's philox4x32_R(10). */
void oc_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static void draw(uint64_t seed, uint32_t counter, uint64_t i, uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)i, counter, (uint32_t)(i >> 32), 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    oc_philox4x32(ctr, key, out);
}

double oc_rng_uniform_at(uint64_t seed, uint32_t counter, uint64_t i)
{
    uint32_t o[4];
    draw(seed, counter, i, o);
    return (double)(o[0] >> 8) * 0x1.0p-24;
}

double oc_rng_normal_at(uint64_t seed, uint32_t counter, uint64_t i)
{
    uint32_t o[4];
    draw(seed, counter, i, o);
    double u1 = (double)((o[0] >> 8) + 1) * 0x1.0p-24; /* (0,1]: log is finite */
    double u2 = (double)(o[1] >> 8) * 0x1.0p-24;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * OC_PI * u2);
}

/* ---------------------------------------------------------------- initializers */

/* Stores v into element i of b with the interpreter's conversion rules
 * (integers truncate toward zero; u8 clamps to [0,255]) rather than
 * oc_buf_set's plain C conversion, which is undefined out of range. */
static void store(struct oc_buf *b, int64_t i, double v)
{
    switch (b->dtype) {
    case OC_I32:
        v = isnan(v) ? 0 : trunc(v);
        v = v < -2147483648.0 ? -2147483648.0 : v > 2147483647.0 ? 2147483647.0 : v;
        break;
    case OC_U8:
        v = isnan(v) ? 0 : trunc(v);
        v = v < 0 ? 0 : v > 255 ? 255 : v;
        break;
    default: break;
    }
    oc_buf_set(b, i, v);
}

enum oc_status oc_init_fill(const struct oc_node *n, uint64_t seed, struct oc_buf *out,
                            struct oc_err *err)
{
    const struct oc_attrs *a = &n->attrs;
    const char *name = a->name ? a->name : "";
    memset(out, 0, sizeof *out);
    if (n->op != OC_OP_PARAM && n->op != OC_OP_STATE)
        return oc_err_set(err, OC_ERR_INVALID, "init of node %%%d: a %s has no initializer",
                          n->id, oc_op_name(n->op));
    enum oc_init kind = a->init;
    int random = kind == OC_INIT_NORMAL || kind == OC_INIT_UNIFORM ||
                 kind == OC_INIT_KAIMING_NORMAL;
    if ((unsigned)kind > OC_INIT_KAIMING_NORMAL)
        return oc_err_set(err, OC_ERR_INVALID, "init of \"%s\": unknown initializer %d", name,
                          (int)kind);
    if (random && !oc_dtype_is_float(n->dtype))
        return oc_err_set(err, OC_ERR_DTYPE, "init of \"%s\": %s needs a float dtype, not %s",
                          name, oc_init_name(kind), oc_dtype_name(n->dtype));
    if (kind == OC_INIT_NORMAL && !(a->init_b >= 0))
        return oc_err_set(err, OC_ERR_INVALID, "init of \"%s\": normal std %g is negative", name,
                          a->init_b);
    if (kind == OC_INIT_UNIFORM && !(a->init_a <= a->init_b))
        return oc_err_set(err, OC_ERR_INVALID, "init of \"%s\": uniform range [%g, %g) is empty",
                          name, a->init_a, a->init_b);
    if (kind == OC_INIT_KAIMING_NORMAL && a->init_a < 0)
        return oc_err_set(err, OC_ERR_INVALID, "init of \"%s\": kaiming fan %g is negative", name,
                          a->init_a);
    if (oc_buf_alloc(out, n->dtype, &n->shape))
        return oc_err_set(err, OC_ERR_NOMEM, "init of \"%s\": out of memory", name);

    int64_t numel = oc_shape_numel(&n->shape);
    uint64_t s = oc_hash64(name, strlen(name), seed ^ 0x6f6f6463u);
    double std = 0;
    if (kind == OC_INIT_KAIMING_NORMAL) {
        /* PyTorch kaiming_normal_(mode='fan_in', nonlinearity='relu'):
         * fan_in = numel / dim[0] for [out,in] and [O,C,KH,KW]; a rank-0/1
         * tensor has no fan-in axis, so its fan is its numel. */
        double fan = a->init_a > 0 ? a->init_a
                     : n->shape.rank >= 2 && n->shape.dim[0] > 0
                         ? (double)(numel / n->shape.dim[0])
                         : (double)numel;
        std = fan > 0 ? sqrt(2.0 / fan) : 0;
    }
    for (int64_t i = 0; i < numel; i++) {
        double v = 0;
        switch (kind) {
        case OC_INIT_ZEROS: v = 0; break;
        case OC_INIT_ONES: v = 1; break;
        case OC_INIT_CONST: v = a->init_a; break;
        case OC_INIT_NORMAL: v = a->init_a + a->init_b * oc_rng_normal_at(s, 0, (uint64_t)i); break;
        case OC_INIT_UNIFORM:
            v = a->init_a + (a->init_b - a->init_a) * oc_rng_uniform_at(s, 0, (uint64_t)i);
            break;
        case OC_INIT_KAIMING_NORMAL: v = std * oc_rng_normal_at(s, 0, (uint64_t)i); break;
        }
        store(out, i, v);
        /* a+(b-a)u < b in double can round up to b in f32: keep [a, b) */
        if (kind == OC_INIT_UNIFORM && a->init_a < a->init_b && oc_buf_get(out, i) >= a->init_b)
            oc_buf_set(out, i, nextafterf((float)a->init_b, -INFINITY));
    }
    return OC_OK;
}
