/* conv_cpu.c - direct convolution of a 1-channel input (the first layer of the Fashion-MNIST
 * networks): forward and weight gradient without the im2col buffer.  Its im2col matrix has only
 * k*k columns, so im2col + sgemm spends more time unfolding and packing than multiplying.
 *
 * These kernels give the bits of the im2col + product path they replace, on every instruction-set
 * path: each output is the chain of fused multiply-adds gemm.h's rule prescribes, over the same
 * terms in the same order (the zero-padded cells included, as fma(0, w, acc)), starting from 0,
 * then acc (alpha = 1); the weight gradient cuts the rows into sm_k_gemm_at_b's chunks and sums them in
 * its order.  tests/test_backend_ops.c checks the bits against im2col + gemm and gemm_at_b. */
#include "backend/cpu/kernels.h"
#include <assert.h>
#include <math.h>
#include <string.h>

/* The blocking (no effect on the arithmetic: every output keeps its one chain over the terms in
 * order): OB output channels per block, PX output positions per forward step (PX x OB
 * accumulators in registers).  AVX-512's 32 zmm registers hold 4 x 32 forward accumulators (the
 * plain C below, vectorised by the compiler) and the 3x3 weight gradient's 9 x 32 (intrinsics:
 * compiled from the plain C they stayed in memory, a load and a store around every fma; as
 * intrinsics its share of a training epoch's samples fell from 5.7% to 2.8%).  AVX2's 16 ymm
 * registers hold 2 x 32 forward accumulators with the 4 weight vectors of a term, and the 3x3
 * weight gradient's 9 x 8 accumulators (a block's 32 channels 8 at a time, per output row): those
 * AVX2 steps are written with intrinsics (the compiler spilled the plain C's accumulators, or
 * took the weights as memory operands); _mm256_fmadd_ps is fmaf in each lane. */
#define OB 32
#if defined(__AVX512F__)
#define PX 4
#define SM_CONV_AVX512 1
#include <immintrin.h>
#else
#define PX 2
#if defined(__AVX2__) && defined(__FMA__)
#define SM_CONV_AVX2 1
#include <immintrin.h>
#endif
#endif

/* a (K) = the unfolded row of output (oy, ox) of image img (h, w), zeros outside */
static inline void gather(const float *img, int h, int w, int k, int stride, int pad, int oy, int ox, float *a) {
    for (int ky = 0; ky < k; ky++) {
        const int iy = oy * stride - pad + ky;
        for (int kx = 0; kx < k; kx++) {
            const int ix = ox * stride - pad + kx;
            a[ky * k + kx] = iy >= 0 && iy < h && ix >= 0 && ix < w ? img[(int64_t)iy * w + ix] : 0.0f;
        }
    }
}

#define WIN_MAX 16384 /* floats of the zero-padded input rows one output row reads (64 KiB of stack) */

/* Fill win with the k input rows that output row oy of image img (h, w) reads, zero-padded by pad
 * on each side (row ky at win + ky * wp, wp = w + 2 pad): rows outside the image are all zero. */
static inline void fill_window(float *win, const float *img, int h, int w, int k, int stride, int pad, int oy, int wp) {
    for (int ky = 0; ky < k; ky++) {
        const int iy = oy * stride - pad + ky;
        float *wr = win + ky * wp;
        if (iy < 0 || iy >= h) { memset(wr, 0, sizeof(float) * (size_t)wp); continue; }
        for (int i = 0; i < pad; i++) wr[i] = wr[pad + w + i] = 0.0f;
        memcpy(wr + pad, img + (int64_t)iy * w, sizeof(float) * (size_t)w);
    }
}

/* y's rows of output row oy of one image, output channels o0 .. o0+nb: win holds the k input rows
 * the output row reads, zero-padded (row ky at win + ky * wp, column ix + pad at ix), off[t] the
 * offset of term t = ky * k + kx. */
static inline __attribute__((always_inline)) void conv1ch_row_(int KK, int SS, const float *win, const int *off, int K,
                                                                int stride, int ow, const float *Wt, int oc, int o0,
                                                                int nb, float *yrow) {
    if (KK) K = KK, stride = SS; /* the 3x3 stride-1 case with its loops' bounds known to the compiler */
    int ox = 0;
#if defined(SM_CONV_AVX2)
    if (nb == OB) /* PX = 2 positions x 32 channels: 8 accumulators + 4 weight vectors */
        for (; ox + 2 <= ow; ox += 2) {
            __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
            __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
            const float *src = win + (int64_t)ox * stride;
#pragma GCC unroll 16
            for (int t = 0; t < K; t++) {
                const float *wt = Wt + t * OB;
                const __m256 w0 = _mm256_loadu_ps(wt), w1 = _mm256_loadu_ps(wt + 8), w2 = _mm256_loadu_ps(wt + 16),
                             w3 = _mm256_loadu_ps(wt + 24);
                const __m256 a0 = _mm256_broadcast_ss(src + off[t]), a1 = _mm256_broadcast_ss(src + off[t] + stride);
                c00 = _mm256_fmadd_ps(a0, w0, c00), c01 = _mm256_fmadd_ps(a0, w1, c01);
                c02 = _mm256_fmadd_ps(a0, w2, c02), c03 = _mm256_fmadd_ps(a0, w3, c03);
                c10 = _mm256_fmadd_ps(a1, w0, c10), c11 = _mm256_fmadd_ps(a1, w1, c11);
                c12 = _mm256_fmadd_ps(a1, w2, c12), c13 = _mm256_fmadd_ps(a1, w3, c13);
            }
            float *y0 = yrow + (int64_t)ox * oc + o0, *y1 = y0 + oc;
            _mm256_storeu_ps(y0, c00), _mm256_storeu_ps(y0 + 8, c01), _mm256_storeu_ps(y0 + 16, c02);
            _mm256_storeu_ps(y0 + 24, c03);
            _mm256_storeu_ps(y1, c10), _mm256_storeu_ps(y1 + 8, c11), _mm256_storeu_ps(y1 + 16, c12);
            _mm256_storeu_ps(y1 + 24, c13);
        }
#endif
    for (; ox + PX <= ow; ox += PX) {
        float acc[PX][OB];
#pragma GCC unroll 8
        for (int q = 0; q < PX; q++)
#pragma omp simd
            for (int o = 0; o < OB; o++) acc[q][o] = 0.0f;
#pragma GCC unroll 16
        for (int t = 0; t < K; t++) {
            const float *wt = Wt + t * OB, *src = win + off[t] + (int64_t)ox * stride;
#pragma GCC unroll 8
            for (int q = 0; q < PX; q++) {
                const float at = src[q * stride];
#pragma omp simd
                for (int o = 0; o < OB; o++) acc[q][o] = fmaf(at, wt[o], acc[q][o]);
            }
        }
        for (int q = 0; q < PX; q++) {
            float *yr = yrow + (int64_t)(ox + q) * oc + o0;
            if (nb == OB) {
#pragma omp simd
                for (int o = 0; o < OB; o++) yr[o] = acc[q][o];
            } else {
                for (int o = 0; o < nb; o++) yr[o] = acc[q][o];
            }
        }
    }
    for (; ox < ow; ox++) {
        float acc[OB];
#pragma omp simd
        for (int o = 0; o < OB; o++) acc[o] = 0.0f;
        for (int t = 0; t < K; t++) {
            const float at = win[off[t] + (int64_t)ox * stride], *wt = Wt + t * OB;
#pragma omp simd
            for (int o = 0; o < OB; o++) acc[o] = fmaf(at, wt[o], acc[o]);
        }
        float *yr = yrow + (int64_t)ox * oc + o0;
#pragma omp simd
        for (int o = 0; o < nb; o++) yr[o] = acc[o];
    }
}

/* off[t] as fill_window's window lays it out; KK: see conv1ch_row_ */
static void conv1ch_row(const float *win, const int *off, int K, int stride, int ow, const float *Wt, int oc, int o0,
                        int nb, float *yrow) {
    if (K == 9 && stride == 1) conv1ch_row_(9, 1, win, off, K, stride, ow, Wt, oc, o0, nb, yrow);
    else conv1ch_row_(0, 0, win, off, K, stride, ow, Wt, oc, o0, nb, yrow);
}

/* Output row oy of image img, channels o0 .. o0 + nb, into yrow (its position ox at yrow + ox *
 * ldo + o0): through the zero-padded window when it fits (win, off), else gathering each
 * position's terms. */
static void conv1ch_out_row(const float *img, int h, int w, int k, int stride, int pad, int oy, int ow, int wp,
                            int windowed, float *win, const int *off, const float *Wt, int ldo, int o0, int nb,
                            float *yrow) {
    const int K = k * k;
    if (windowed) { /* the k input rows, zero-padded: every term an unconditional load */
        fill_window(win, img, h, w, k, stride, pad, oy, wp);
        conv1ch_row(win, off, K, stride, ow, Wt, ldo, o0, nb, yrow);
        return;
    }
    float a[SM_CONV1CH_MAX_K];
    for (int ox = 0; ox < ow; ox++) {
        gather(img, h, w, k, stride, pad, oy, ox, a);
        float acc[OB];
        float *yr = yrow + (int64_t)ox * ldo + o0;
#pragma omp simd
        for (int o = 0; o < OB; o++) acc[o] = 0.0f;
        for (int t = 0; t < K; t++) {
            const float at = a[t], *wt = Wt + t * OB;
#pragma omp simd
            for (int o = 0; o < OB; o++) acc[o] = fmaf(at, wt[o], acc[o]);
        }
#pragma omp simd
        for (int o = 0; o < nb; o++) yr[o] = acc[o];
    }
}

/* off[t] (t < k * k) <- term t's offset in the zero-padded window of input rows (fill_window's
 * layout, rows of wp = w + 2 pad); 1 if that window fits WIN_MAX (else the terms are gathered) */
static int conv1ch_window(int k, int w, int pad, int *off) {
    const int wp = w + 2 * pad;
    for (int t = 0; t < k * k; t++) off[t] = (t / k) * wp + t % k;
    return (int64_t)k * wp <= WIN_MAX;
}

/* Wt (K, OB) <- W's output channels o0 .. o0 + nb transposed (lanes over channels, zeros past nb) */
static void conv1ch_block_weights(const float *W, int K, int o0, int nb, float *Wt) {
    for (int t = 0; t < K; t++)
        for (int o = 0; o < OB; o++) Wt[t * OB + o] = o < nb ? W[(int64_t)(o0 + o) * K + t] : 0.0f;
}

void sm_k_conv1ch1(const float *x, int n, int h, int w, int k, int stride, int pad, int oh, int ow, const float *W,
                   int oc, float *y) {
    const int K = k * k;
    assert(K <= SM_CONV1CH_MAX_K);
    float Wt[SM_CONV1CH_MAX_K * OB]; /* (K, OB): W's block transposed, lanes over output channels */
    const int wp = w + 2 * pad; /* a padded input row */
    float win[WIN_MAX];
    int off[SM_CONV1CH_MAX_K];
    const int windowed = conv1ch_window(k, w, pad, off);
    for (int o0 = 0; o0 < oc; o0 += OB) {
        const int nb = oc - o0 < OB ? oc - o0 : OB;
        conv1ch_block_weights(W, K, o0, nb, Wt);
        for (int b = 0; b < n; b++) {
            const float *img = x + (int64_t)b * h * w;
            for (int oy = 0; oy < oh; oy++)
                conv1ch_out_row(img, h, w, k, stride, pad, oy, ow, wp, windowed, win, off, Wt, oc, o0, nb,
                                y + ((int64_t)b * oh + oy) * ow * oc);
        }
    }
}

void sm_k_conv1ch1_pool(const float *x, int n, int h, int w, int k, int stride, int pad, int oh, int ow, const float *W,
                        int oc, const float *bias, int relu, float *y) {
    const int K = k * k, ph = (oh - 2) / 2 + 1, pw = (ow - 2) / 2 + 1;
    assert(K <= SM_CONV1CH_MAX_K && ow <= SM_CONV1CH_POOL_MAX_OW && oh >= 2 && ow >= 2);
    float Wt[SM_CONV1CH_MAX_K * OB];
    float rows[2 * SM_CONV1CH_POOL_MAX_OW * OB]; /* (2, ow, OB): the two output rows of a pooled row */
    const int wp = w + 2 * pad;
    float win[WIN_MAX];
    int off[SM_CONV1CH_MAX_K];
    const int windowed = conv1ch_window(k, w, pad, off);
    for (int o0 = 0; o0 < oc; o0 += OB) {
        const int nb = oc - o0 < OB ? oc - o0 : OB;
        conv1ch_block_weights(W, K, o0, nb, Wt);
        for (int b = 0; b < n; b++) {
            const float *img = x + (int64_t)b * h * w;
            for (int py = 0; py < ph; py++) {
                for (int r = 0; r < 2; r++)
                    conv1ch_out_row(img, h, w, k, stride, pad, 2 * py + r, ow, wp, windowed, win, off, Wt, OB, 0, nb,
                                    rows + (int64_t)r * ow * OB);
                sm_k_pool2_bias_act_row(rows, rows + (int64_t)ow * OB, pw, OB, nb, bias ? bias + o0 : NULL, relu,
                                        y + ((int64_t)b * ph + py) * pw * oc + o0, oc);
            }
        }
    }
}

void sm_k_conv1ch(const float *x, int n, int h, int w, int k, int stride, int pad, int oh, int ow, const float *W,
                  int oc, float *y) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++)
        sm_k_conv1ch1(x + (int64_t)b * h * w, 1, h, w, k, stride, pad, oh, ow, W, oc,
                      y + (int64_t)b * oh * ow * oc);
}

size_t sm_k_conv1ch_dw_ws(int oc, int k, int64_t rows) { return sm_k_gemm_at_b_ws(oc, k * k, rows); }

/* acc (K, OB) += fma chains over output positions ox0 .. ox1-1 of one output row (in order) of
 * win's term t (as in conv1ch_row) times dy's row, channels o0 .. o0+OB (dyrow: the output row's
 * first position; lanes nb .. OB-1 of dr read as zero).  KK: K when it is a compile-time constant
 * (the 3x3 case, fully unrolled so that the accumulators can stay in registers), else 0. */
static inline __attribute__((always_inline)) void dw_span(int KK, int K, const float *win, const int *off, int stride,
                                                          int ox0, int ox1, const float *dyrow, int oc, int nb,
                                                          float *acc) {
    if (KK) K = KK;
#if defined(SM_CONV_AVX512)
    if (KK == 9) { /* the block's 32 channels: 9 x 2 accumulators in zmm registers (the plain C
                    * below kept them in memory, each fma a load and a store) */
        const int f0 = off[0], f1 = off[1], f2 = off[2], f3 = off[3], f4 = off[4], f5 = off[5], f6 = off[6],
                  f7 = off[7], f8 = off[8];
        __m512 a0[9], a1[9];
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) a0[t] = _mm512_loadu_ps(acc + t * OB), a1[t] = _mm512_loadu_ps(acc + t * OB + 16);
        const __mmask16 m0 = nb >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nb) - 1u);
        const __mmask16 m1 = nb >= 32 ? (__mmask16)0xFFFF : nb <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nb - 16)) - 1u);
        for (int ox = ox0; ox < ox1; ox++) {
            const float *src = win + (int64_t)ox * stride, *dr = dyrow + (int64_t)ox * oc;
            const __m512 d0 = _mm512_maskz_loadu_ps(m0, dr), d1 = _mm512_maskz_loadu_ps(m1, dr + 16); /* lanes >= nb: 0 */
            const int fo[9] = {f0, f1, f2, f3, f4, f5, f6, f7, f8};
#pragma GCC unroll 9
            for (int t = 0; t < 9; t++) {
                const __m512 at = _mm512_set1_ps(src[fo[t]]);
                a0[t] = _mm512_fmadd_ps(at, d0, a0[t]);
                a1[t] = _mm512_fmadd_ps(at, d1, a1[t]);
            }
        }
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) _mm512_storeu_ps(acc + t * OB, a0[t]), _mm512_storeu_ps(acc + t * OB + 16, a1[t]);
        return;
    }
#endif
#if defined(SM_CONV_AVX2)
    if (KK == 9) { /* 8 channels at a time: 9 accumulators in registers */
        const int f0 = off[0], f1 = off[1], f2 = off[2], f3 = off[3], f4 = off[4], f5 = off[5], f6 = off[6],
                  f7 = off[7], f8 = off[8];
        for (int s8 = 0; s8 < nb; s8 += 8) {
            float *ac = acc + s8;
            __m256 c0 = _mm256_loadu_ps(ac), c1 = _mm256_loadu_ps(ac + OB), c2 = _mm256_loadu_ps(ac + 2 * OB),
                   c3 = _mm256_loadu_ps(ac + 3 * OB), c4 = _mm256_loadu_ps(ac + 4 * OB),
                   c5 = _mm256_loadu_ps(ac + 5 * OB), c6 = _mm256_loadu_ps(ac + 6 * OB),
                   c7 = _mm256_loadu_ps(ac + 7 * OB), c8 = _mm256_loadu_ps(ac + 8 * OB);
            const __m256i lanes =
                _mm256_cmpgt_epi32(_mm256_set1_epi32(nb - s8), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            const float *dy8 = dyrow + s8;
            const int full = nb - s8 >= 8;
            for (int ox = ox0; ox < ox1; ox++) {
                const float *src = win + (int64_t)ox * stride, *dr = dy8 + (int64_t)ox * oc;
                const __m256 d = full ? _mm256_loadu_ps(dr) : _mm256_maskload_ps(dr, lanes); /* lanes >= nb: 0 */
                c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f0), d, c0);
                c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f1), d, c1);
                c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f2), d, c2);
                c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f3), d, c3);
                c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f4), d, c4);
                c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f5), d, c5);
                c6 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f6), d, c6);
                c7 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f7), d, c7);
                c8 = _mm256_fmadd_ps(_mm256_broadcast_ss(src + f8), d, c8);
            }
            _mm256_storeu_ps(ac, c0), _mm256_storeu_ps(ac + OB, c1), _mm256_storeu_ps(ac + 2 * OB, c2);
            _mm256_storeu_ps(ac + 3 * OB, c3), _mm256_storeu_ps(ac + 4 * OB, c4), _mm256_storeu_ps(ac + 5 * OB, c5);
            _mm256_storeu_ps(ac + 6 * OB, c6), _mm256_storeu_ps(ac + 7 * OB, c7), _mm256_storeu_ps(ac + 8 * OB, c8);
        }
        return;
    }
#endif
    for (int ox = ox0; ox < ox1; ox++) {
        const float *dyr = dyrow + (int64_t)ox * oc;
        float dr[OB];
#pragma omp simd
        for (int o = 0; o < OB; o++) dr[o] = o < nb ? dyr[o] : 0.0f;
        const float *src = win + (int64_t)ox * stride;
#pragma GCC unroll 16
        for (int t = 0; t < K; t++) {
            const float at = src[off[t]];
            float *ac = acc + t * OB;
#pragma omp simd
            for (int o = 0; o < OB; o++) ac[o] = fmaf(at, dr[o], ac[o]);
        }
    }
}

/* acc (K, OB) = fma chains over the rows r0 .. r0+len of the batch (in order) of col[r][t] *
 * dy[r][o0 + o]; written to P (K, ldp), columns 0 .. nb-1 */
static void dw_rows(const float *x, const float *dy, int h, int w, int k, int stride, int pad, int oh, int ow, int oc,
                    int64_t r0, int64_t len, int o0, int nb, float *P, int ldp) {
    const int K = k * k, wp = w + 2 * pad;
    float acc[SM_CONV1CH_MAX_K * OB];
    float a[SM_CONV1CH_MAX_K];
    for (int i = 0; i < K * OB; i++) acc[i] = 0.0f;
    const int64_t per_img = (int64_t)oh * ow;
    int off[SM_CONV1CH_MAX_K];
    if (conv1ch_window(k, w, pad, off)) { /* output row by output row, from zero-padded input rows */
        float win[WIN_MAX];
        for (int64_t r = r0; r < r0 + len;) {
            const int64_t b = r / per_img;
            const int p = (int)(r % per_img), oy = p / ow, ox0 = p % ow;
            const int ox1 = r0 + len - (r - ox0) < ow ? (int)(r0 + len - (r - ox0)) : ow;
            fill_window(win, x + b * h * w, h, w, k, stride, pad, oy, wp);
            const float *dyrow = dy + (r - ox0) * oc + o0;
            if (K == 9) dw_span(9, K, win, off, stride, ox0, ox1, dyrow, oc, nb, acc);
            else dw_span(0, K, win, off, stride, ox0, ox1, dyrow, oc, nb, acc);
            r += ox1 - ox0;
        }
    } else {
        int64_t b = r0 / per_img;
        int p = (int)(r0 % per_img), oy = p / ow, ox = p % ow;
        float dr[OB];
        for (int64_t r = r0; r < r0 + len; r++) {
            gather(x + b * h * w, h, w, k, stride, pad, oy, ox, a);
            const float *dyr = dy + r * oc + o0;
            for (int o = 0; o < OB; o++) dr[o] = o < nb ? dyr[o] : 0.0f;
            for (int t = 0; t < K; t++) {
                const float at = a[t];
                float *ac = acc + t * OB;
#pragma omp simd
                for (int o = 0; o < OB; o++) ac[o] = fmaf(at, dr[o], ac[o]);
            }
            if (++ox == ow) {
                ox = 0;
                if (++oy == oh) { oy = 0; b++; }
            }
        }
    }
    for (int t = 0; t < K; t++)
        for (int o = 0; o < nb; o++) P[(int64_t)t * ldp + o] = acc[t * OB + o];
}

void sm_k_conv1ch_dw(const float *x, const float *dy, int n, int h, int w, int k, int stride, int pad, int oh, int ow,
                     int oc, float *dW, const sm_ws *ws) {
    const int K = k * k;
    const int64_t rows = (int64_t)n * oh * ow, nch = sm_k_at_b_chunks(rows), nob = (oc + OB - 1) / OB;
    assert(K <= SM_CONV1CH_MAX_K);
    if (nch <= 1) { /* sm_k_gemm_at_b's short k: one product dW (oc, K) = dy^T col, 1 * acc */
#pragma omp parallel for schedule(static)
        for (int64_t ob = 0; ob < nob; ob++) {
            const int o0 = (int)ob * OB, nb = oc - o0 < OB ? oc - o0 : OB;
            float P[SM_CONV1CH_MAX_K * OB]; /* (K, OB) */
            dw_rows(x, dy, h, w, k, stride, pad, oh, ow, oc, 0, rows, o0, nb, P, OB);
            for (int o = 0; o < nb; o++)
                for (int t = 0; t < K; t++) dW[(int64_t)(o0 + o) * K + t] = P[t * OB + o];
        }
        return;
    }
    assert(ws && ws->bytes >= sm_k_conv1ch_dw_ws(oc, k, rows));
    float *part = ws->base; /* (nch, K, oc), sm_k_gemm_at_b's layout for its own kernels */
    const int64_t per = (rows + nch - 1) / nch;
#pragma omp parallel for schedule(static)
    for (int64_t task = 0; task < nch * nob; task++) {
        const int64_t ch = task / nob;
        const int o0 = (int)(task % nob) * OB, nb = oc - o0 < OB ? oc - o0 : OB;
        const int64_t start = ch * per, len = start + per < rows ? per : rows - start;
        float *P = part + ch * (int64_t)K * oc;
        if (len <= 0) {
            for (int t = 0; t < K; t++)
                for (int o = 0; o < nb; o++) P[(int64_t)t * oc + o0 + o] = 0.0f;
            continue;
        }
        dw_rows(x, dy, h, w, k, stride, pad, oh, ow, oc, start, len, o0, nb, P + o0, oc);
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < oc; i++)
        for (int j = 0; j < K; j++) {
            float acc = 0;
            for (int64_t ch = 0; ch < nch; ch++) acc += part[(ch * K + j) * oc + i];
            dW[(int64_t)i * K + j] = acc;
        }
}
