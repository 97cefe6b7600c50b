/* cuda-lib.h - the index math of the convolution helper kernels (im2col,
 * col2im, the [N,O,P] -> [O,N,P] permute), written once for two compilers:
 * the host includes it (the reference run of a library plan that the tests
 * compare with the interpreter, runtime/cuda-blas.c), and the device source
 * of the helpers is this same text stringified (OC_CUDA_LIB_TEXT), so what
 * the tests check on the CPU is what the GPU runs.
 *
 * A chunk of nc images starting at image n0 is processed at a time. The
 * column matrix of image n holds, for ck = (c*KH + kh)*KW + kw and output
 * pixel p = oh*OW + ow, the input pixel x[n, c, oh*sh - ph + kh,
 * ow*sw - pw + kw] (0 outside the image). Its layout is [n][ck][p]
 * (tr = 0: one CK x P matrix per image, for batched GEMMs) or [ck][n][p]
 * (tr = 1: one CK x nc*P matrix for the chunk, for the weight gradient).
 */
#ifndef OODC_CUDA_LIB_H
#define OODC_CUDA_LIB_H

#define OC_CUDA_LIB_DEFS(Q)                                                                        \
    struct oc_convp {                                                                              \
        long long N, C, H, W, O, KH, KW, OH, OW, CK, P;                                            \
        long long sh, sw, ph, pw;                                                                  \
        long long n0, nc, tr;                                                                      \
    };                                                                                             \
    /* element i of the chunk's column matrix reads input element ..., or -1 (zero padding) */    \
    Q long long oc_im2col_src(long long i, struct oc_convp c)                                      \
    {                                                                                              \
        long long p = i % c.P, r = i / c.P, n, ck;                                                 \
        if (c.tr) {                                                                                \
            n = r % c.nc;                                                                          \
            ck = r / c.nc;                                                                         \
        } else {                                                                                   \
            ck = r % c.CK;                                                                         \
            n = r / c.CK;                                                                          \
        }                                                                                          \
        long long kw = ck % c.KW, kh = ck / c.KW % c.KH, ch = ck / (c.KW * c.KH);                  \
        long long ih = p / c.OW * c.sh - c.ph + kh, iw = p % c.OW * c.sw - c.pw + kw;              \
        if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) return -1;                                 \
        return (((c.n0 + n) * c.C + ch) * c.H + ih) * c.W + iw;                                    \
    }                                                                                              \
    /* element i of the chunk's images gets column entry ... from tap t (kh*KW + kw), or -1 */    \
    Q long long oc_col2im_tap(long long i, long long t, struct oc_convp c)                         \
    {                                                                                              \
        long long iw = i % c.W, ih = i / c.W % c.H, ch = i / (c.W * c.H) % c.C;                    \
        long long n = i / (c.W * c.H * c.C), kh = t / c.KW, kw = t % c.KW;                         \
        long long y = ih + c.ph - kh, x = iw + c.pw - kw;                                          \
        if (y < 0 || x < 0 || y % c.sh || x % c.sw) return -1;                                     \
        long long oh = y / c.sh, ow = x / c.sw;                                                    \
        if (oh >= c.OH || ow >= c.OW) return -1;                                                   \
        long long ck = (ch * c.KH + kh) * c.KW + kw, p = oh * c.OW + ow;                           \
        return c.tr ? (ck * c.nc + n) * c.P + p : (n * c.CK + ck) * c.P + p;                       \
    }                                                                                              \
    /* element i of the chunk's [O][nc][P] copy of y reads element ... of y [N][O][P] */          \
    Q long long oc_permute_src(long long i, struct oc_convp c)                                     \
    {                                                                                              \
        long long p = i % c.P, n = i / c.P % c.nc, o = i / (c.P * c.nc);                           \
        return ((c.n0 + n) * c.O + o) * c.P + p;                                                   \
    }

#define OC_CUDA_LIB_STR_(...) #__VA_ARGS__
#define OC_CUDA_LIB_STR(...) OC_CUDA_LIB_STR_(__VA_ARGS__)
/* The definitions as device code, one line of text. */
#define OC_CUDA_LIB_TEXT OC_CUDA_LIB_STR(OC_CUDA_LIB_DEFS(static __device__ __forceinline__))

/* The host's copy. */
OC_CUDA_LIB_DEFS(static inline)

#endif
