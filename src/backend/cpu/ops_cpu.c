/* ops_cpu.c - CPU implementation of the compute kernels in backend.h: simile's own GEMM
 * (gemm.c; OpenBLAS instead when built with -DSIMILE_BLAS=openblas) for matrix products,
 * OpenMP loops for the rest.  Reductions use fixed-size row chunks summed in a fixed
 * order, so results do not depend on the thread count or scheduling.  No kernel allocates: the
 * ones that need scratch take it from the caller's workspace (sm_ws), sized by their *_ws(). */
#include "backend/cpu/kernels.h"
#include "core/core.h"
#include "backend/cpu/gemm.h"
#include <assert.h>
#ifdef SM_BLAS_OPENBLAS
#include <cblas.h>
#endif
#include <math.h>
#include <string.h>

#define CHUNK 512 /* rows per partial sum in deterministic reductions */

void sm_k_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
#ifdef SM_BLAS_OPENBLAS
    if (k <= 0) { /* BLAS leaves C untouched for k == 0 only when beta == 1 */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C[(int64_t)i * ldc + j] *= beta;
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    sm_gemm_run(sm_gemm_active(), 1, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

void sm_k_gemv(int ta, int m, int n, float alpha, const float *A, int lda, const float *x, int incx,
               float beta, float *y, int incy) {
    if (m <= 0 || n <= 0) return;
#ifdef SM_BLAS_OPENBLAS
    cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, m, n, alpha, A, lda, x, incx, beta, y, incy);
#else
    sm_gemv_run(sm_gemm_active(), 1, ta, m, n, alpha, A, lda, x, incx, beta, y, incy);
#endif
}

/* Chunks of the long k of A^T B: a fixed number, independent of the thread count. */
int64_t sm_k_at_b_chunks(int64_t k) {
    int64_t nch = k / 2048;
    return nch > 16 ? 16 : nch;
}

size_t sm_k_gemm_at_b_ws(int m, int n, int64_t k) {
    int64_t nch = sm_k_at_b_chunks(k);
    return nch > 1 ? (size_t)nch * (size_t)m * (size_t)n * sizeof(float) : 0;
}

void sm_k_gemm_at_b(int m, int n, int64_t k, const float *A, int lda, const float *B, int ldb,
                    float *C, int ldc, const sm_ws *ws) {
    const int64_t nch = sm_k_at_b_chunks(k);
    if (nch <= 1) { /* short k: one threaded sgemm */
        sm_k_gemm(1, 0, m, n, (int)k, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
        return;
    }
    assert(ws && ws->bytes >= sm_k_gemm_at_b_ws(m, n, k));
    float *part = ws->base; /* OpenBLAS: (nch, m, n); own kernels: (nch, n, m), transposed */
#ifdef SM_BLAS_OPENBLAS
    const int64_t per = (k + nch - 1) / nch;
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t start = ch * per, len = start + per < k ? per : k - start;
        float *P = part + ch * (int64_t)m * n;
        if (len <= 0) { memset(P, 0, sizeof(float) * (size_t)m * (size_t)n); continue; }
        /* inside a parallel region the OpenMP build of OpenBLAS runs single-threaded */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, (int)len, 1.0f, A + start * lda, lda,
                    B + start * ldb, ldb, 0.0f, P, n);
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float acc = 0;
            for (int64_t ch = 0; ch < nch; ch++) acc += part[(ch * m + i) * n + j];
            C[(int64_t)i * ldc + j] = acc;
        }
#else
    sm_gemm_at_b_chunks(sm_gemm_active(), m, n, k, nch, A, lda, B, ldb, C, ldc, part);
#endif
}

void sm_k_im2col(const float *x, int n, int h, int w, int c, int k, int stride, int pad,
                 int oh, int ow, float *col) {
    const int64_t per_img = (int64_t)oh * ow * k * k * c; /* col values of one image */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) /* each image unfolded by sm_k_im2col1 on one thread */
        sm_k_im2col1(x + (int64_t)b * h * w * c, 1, h, w, c, k, stride, pad, oh, ow, col + b * per_img);
}

void sm_k_col2im(const float *dcol, int n, int h, int w, int c, int k, int stride, int pad,
                 int oh, int ow, float *dx) {
    const int64_t K = (int64_t)k * k * c;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) { /* each image is written by one thread only */
        float *img = dx + (int64_t)b * h * w * c;
        memset(img, 0, sizeof(float) * (size_t)h * w * c);
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const float *src = dcol + (((int64_t)b * oh + oy) * ow + ox) * K;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= h) continue;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox * stride - pad + kx;
                        if (ix < 0 || ix >= w) continue;
                        float *d = img + ((int64_t)iy * w + ix) * c;
                        const float *s = src + ((int64_t)ky * k + kx) * c;
#pragma omp simd
                        for (int ch = 0; ch < c; ch++) d[ch] += s[ch];
                    }
                }
            }
    }
}

void sm_k_add_bias(float *y, const float *b, int64_t m, int c) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
        float *yi = y + i * c;
#pragma omp simd
        for (int j = 0; j < c; j++) yi[j] += b[j];
    }
}

/* Per-chunk partial column sums of f(row) into part (nchunks, c) in double, then an ordered sum. */
static int64_t row_chunks(int64_t m) { return m > 0 ? (m + CHUNK - 1) / CHUNK : 1; }

size_t sm_k_sum_rows_ws(int64_t m, int c) { return (size_t)row_chunks(m) * (size_t)c * sizeof(double); }

void sm_k_sum_rows(const float *dy, int64_t m, int c, float *db, const sm_ws *ws) {
    const int64_t nch = row_chunks(m);
    assert(ws && ws->bytes >= sm_k_sum_rows_ws(m, c));
    double *part = ws->base; /* (nch, c) */
    memset(part, 0, sizeof(double) * (size_t)nch * (size_t)c);
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < nch; ch++) {
        double *p = part + ch * c;
        int64_t end = (ch + 1) * CHUNK < m ? (ch + 1) * CHUNK : m;
        for (int64_t i = ch * CHUNK; i < end; i++) {
            const float *di = dy + i * c;
#pragma omp simd
            for (int j = 0; j < c; j++) p[j] += di[j];
        }
    }
    for (int j = 0; j < c; j++) {
        double s = 0;
        for (int64_t ch = 0; ch < nch; ch++) s += part[ch * c + j];
        db[j] = (float)s;
    }
}

/* the per-chunk partial sums (2, nch, c), then the training forward's whole-batch sums (2, c) */
size_t sm_k_bn_ws(int64_t m, int c) { return 2 * ((size_t)row_chunks(m) + 1) * (size_t)c * sizeof(double); }

/* One pass of per-chunk sums and sums of squares in double (var = E[x^2] - mean^2 is exact
 * enough in double for activations), summed over chunks in a fixed order. */
void sm_k_bn_forward_train(const float *x, int64_t m, int c, const float *gamma,
                           const float *beta, float eps, float momentum, float *run_mean,
                           float *run_var, float *mean, float *rstd, int relu, float *y, const sm_ws *ws) {
    assert(ws && ws->bytes >= sm_k_bn_ws(m, c));
    double *sums = (double *)ws->base + 2 * row_chunks(m) * (int64_t)c; /* (2, c), after the partials */
    sm_k_bn_sums(x, m, c, sums, ws);
    sm_k_bn_stats(sums, m, c, eps, momentum, run_mean, run_var, mean, rstd);
    sm_k_bn_normalize(x, m, c, gamma, beta, mean, rstd, relu, y);
}

/* Rows r0..r1 of the inference batch norm, channels in blocks of BN_BLOCK whose scale and shift
 * live on the stack (no allocation for any channel count). */
#define BN_BLOCK 1024
static void bn_infer_rows(const float *x, int64_t r0, int64_t r1, int c, const float *gamma, const float *beta,
                          float eps, const float *run_mean, const float *run_var, int relu, float *y) {
    float sc[BN_BLOCK], sh[BN_BLOCK];
    for (int j0 = 0; j0 < c; j0 += BN_BLOCK) {
        int nb = c - j0 < BN_BLOCK ? c - j0 : BN_BLOCK;
        for (int j = 0; j < nb; j++) {
            sc[j] = gamma[j0 + j] / sqrtf(run_var[j0 + j] + eps);
            sh[j] = beta[j0 + j] - run_mean[j0 + j] * sc[j];
        }
        for (int64_t i = r0; i < r1; i++)
            for (int j = 0; j < nb; j++) {
                float v = x[i * c + j0 + j] * sc[j] + sh[j];
                y[i * c + j0 + j] = relu && v < 0 ? 0 : v;
            }
    }
}

void sm_k_bn_forward_infer(const float *x, int64_t m, int c, const float *gamma,
                           const float *beta, float eps, const float *run_mean,
                           const float *run_var, int relu, float *y) {
    const int64_t nb = (m + 255) / 256; /* blocks of 256 rows */
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++)
        bn_infer_rows(x, b * 256, (b + 1) * 256 < m ? (b + 1) * 256 : m, c, gamma, beta, eps, run_mean, run_var, relu, y);
}

void sm_k_bn_infer1(const float *x, int64_t m, int c, const float *gamma, const float *beta, float eps,
                    const float *run_mean, const float *run_var, int relu, float *y) {
    bn_infer_rows(x, 0, m, c, gamma, beta, eps, run_mean, run_var, relu, y);
}

void sm_k_bn_backward(const float *x, const float *dy, int64_t m, int c, const float *gamma,
                      const float *beta, const float *mean, const float *rstd, int relu, float *dgamma,
                      float *dbeta, float *dx, const sm_ws *ws) {
    assert(ws && ws->bytes >= sm_k_bn_ws(m, c));
    double *sums = (double *)ws->base + 2 * row_chunks(m) * (int64_t)c; /* (2, c), after the partials */
    sm_k_bn_grad_sums(x, dy, m, c, gamma, beta, mean, rstd, relu, sums, ws);
    for (int j = 0; j < c; j++) { dbeta[j] = (float)sums[j]; dgamma[j] = (float)sums[c + j]; }
    if (dx) sm_k_bn_backward_dx(x, dy, m, c, gamma, beta, mean, rstd, relu, sums, m, dx);
}

/* ---- batch norm in pieces (SyncBN; the one-call training forward and backward above are
 * made of them) ---- */
void sm_k_bn_sums(const float *x, int64_t m, int c, double *sums, const sm_ws *ws) {
    const int64_t nch = row_chunks(m);
    assert(ws && ws->bytes >= sm_k_bn_ws(m, c));
    double *ps = ws->base, *pq = ps + nch * c; /* (nch, c) sums and sums of squares */
    memset(ps, 0, sizeof(double) * 2 * (size_t)nch * (size_t)c);
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < nch; ch++) {
        double *s1 = ps + ch * c, *s2 = pq + ch * c;
        int64_t end = (ch + 1) * CHUNK < m ? (ch + 1) * CHUNK : m;
        for (int64_t i = ch * CHUNK; i < end; i++) {
            const float *xi = x + i * c;
#pragma omp simd
            for (int j = 0; j < c; j++) { double v = xi[j]; s1[j] += v; s2[j] += v * v; }
        }
    }
    for (int j = 0; j < c; j++) {
        double s = 0, q = 0;
        for (int64_t ch = 0; ch < nch; ch++) { s += ps[ch * c + j]; q += pq[ch * c + j]; }
        sums[j] = s; sums[c + j] = q;
    }
}

void sm_k_bn_stats(const double *sums, int64_t count, int c, float eps, float momentum, float *run_mean,
                   float *run_var, float *mean, float *rstd) {
    for (int j = 0; j < c; j++) {
        double mu = sums[j] / (double)count, var = sums[c + j] / (double)count - mu * mu;
        if (var < 0) var = 0;
        mean[j] = (float)mu;
        rstd[j] = (float)(1.0 / sqrt(var + eps));
        run_mean[j] = (1 - momentum) * run_mean[j] + momentum * (float)mu;
        run_var[j] = (1 - momentum) * run_var[j] +
                     momentum * (float)(count > 1 ? var * (double)count / (double)(count - 1) : var);
    }
}

/* The training forward's value before its ReLU.  The backward recomputes it from x to get the
 * ReLU's mask (v > 0 exactly where the stored output is > 0) instead of reading the output back:
 * one stream of (m, c) floats fewer in each backward pass, the same bits. */
static inline float bn_value(float x, float gamma, float mean, float rstd, float beta) {
    return gamma * (x - mean) * rstd + beta;
}

/* dy through the fused ReLU: 0 where the forward's output was <= 0 (dy read unconditionally: a
 * select, no branch) */
static inline float bn_relu_dy(float dy, float x, float gamma, float mean, float rstd, float beta) {
    return bn_value(x, gamma, mean, rstd, beta) <= 0 ? 0.0f : dy;
}

void sm_k_bn_normalize(const float *x, int64_t m, int c, const float *gamma, const float *beta,
                       const float *mean, const float *rstd, int relu, float *y) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
        float *yi = y + i * c;
        const float *xi = x + i * c;
#pragma omp simd
        for (int j = 0; j < c; j++) {
            float v = bn_value(xi[j], gamma[j], mean[j], rstd[j], beta[j]);
            yi[j] = relu && v < 0 ? 0 : v;
        }
    }
}

void sm_k_bn_grad_sums(const float *x, const float *dy, int64_t m, int c, const float *gamma,
                       const float *beta, const float *mean, const float *rstd, int relu, double *sums,
                       const sm_ws *ws) {
    const int64_t nch = row_chunks(m);
    assert(ws && ws->bytes >= sm_k_bn_ws(m, c));
    double *pb = ws->base, *pg = pb + nch * c; /* (nch, c) partial sums of dy and dy * xhat */
    memset(pb, 0, sizeof(double) * 2 * (size_t)nch * (size_t)c);
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < nch; ch++) {
        double *b = pb + ch * c, *g = pg + ch * c;
        int64_t end = (ch + 1) * CHUNK < m ? (ch + 1) * CHUNK : m;
        for (int64_t i = ch * CHUNK; i < end; i++) {
            const float *xi = x + i * c, *di = dy + i * c;
            if (relu) {
#pragma omp simd
                for (int j = 0; j < c; j++) {
                    float d = bn_relu_dy(di[j], xi[j], gamma[j], mean[j], rstd[j], beta[j]);
                    b[j] += d;
                    g[j] += d * (xi[j] - mean[j]) * rstd[j];
                }
            } else {
#pragma omp simd
                for (int j = 0; j < c; j++) {
                    float d = di[j];
                    b[j] += d;
                    g[j] += d * (xi[j] - mean[j]) * rstd[j];
                }
            }
        }
    }
    for (int j = 0; j < c; j++) {
        double sb = 0, sg = 0;
        for (int64_t ch = 0; ch < nch; ch++) { sb += pb[ch * c + j]; sg += pg[ch * c + j]; }
        sums[j] = sb; sums[c + j] = sg;
    }
}

void sm_k_bn_backward_dx(const float *x, const float *dy, int64_t m, int c, const float *gamma,
                         const float *beta, const float *mean, const float *rstd, int relu, const double *sums,
                         int64_t count, float *dx) {
    const float inv_m = 1.0f / (float)count;
    /* the per-channel factors each row uses, rounded once per block of channels instead of in every
     * row (the same values: (float) of the same double, and gamma * rstd is the expression's
     * first product); one block for up to CMAX channels */
    enum { CMAX = 1024 };
    float s0[CMAX], s1[CMAX], gr[CMAX];
    for (int j0 = 0; j0 < c; j0 += CMAX) {
        const int nb = c - j0 < CMAX ? c - j0 : CMAX;
        for (int j = 0; j < nb; j++)
            s0[j] = (float)sums[j0 + j], s1[j] = (float)sums[c + j0 + j], gr[j] = gamma[j0 + j] * rstd[j0 + j];
        const float *g = gamma + j0, *be = beta + j0, *mu = mean + j0, *rs = rstd + j0;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++) {
            const float *xi = x + i * c + j0, *di = dy + i * c + j0;
            float *dxi = dx + i * c + j0;
            if (relu) {
#pragma omp simd
                for (int j = 0; j < nb; j++) {
                    float xhat = (xi[j] - mu[j]) * rs[j];
                    float d = bn_relu_dy(di[j], xi[j], g[j], mu[j], rs[j], be[j]);
                    dxi[j] = gr[j] * (d - (s0[j] + xhat * s1[j]) * inv_m);
                }
            } else {
#pragma omp simd
                for (int j = 0; j < nb; j++) {
                    float xhat = (xi[j] - mu[j]) * rs[j];
                    dxi[j] = gr[j] * (di[j] - (s0[j] + xhat * s1[j]) * inv_m);
                }
            }
        }
    }
}

void sm_k_relu_forward(const float *x, float *y, int64_t m) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < m; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

void sm_k_relu_backward(const float *y, const float *dy, float *dx, int64_t m) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < m; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
}

/* The max of a window's four cells u0 .. u3 (cells a0 .. a3) in maxpool_forward's order: the first
 * cell, then each later one on a strictly larger value. */
static inline void max4_arg(float u0, float u1, float u2, float u3, int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                            float *y, int32_t *arg) {
    float v = u0;
    int32_t a = a0;
    int gt = u1 > v;
    v = gt ? u1 : v, a = gt ? a1 : a;
    gt = u2 > v;
    v = gt ? u2 : v, a = gt ? a2 : a;
    gt = u3 > v;
    v = gt ? u3 : v, a = gt ? a3 : a;
    *y = v, *arg = a;
}

/* The 2x2 stride-2 unpadded pool's output r (its window inside the image): maxpool_forward's
 * comparisons in its order (the first cell, then each later one on a strictly larger value), the
 * running maximum and index kept in registers instead of y and arg. */
static inline void maxpool2_forward_row(const float *x, int h, int w, int c, int oh, int ow, int64_t r, float *yr,
                                        int32_t *ar) {
    const int b = (int)(r / (oh * ow)), rem = (int)(r % (oh * ow)), oy = rem / ow, ox = rem % ow;
    const int32_t o0 = (int32_t)((((int64_t)b * h + 2 * oy) * w + 2 * ox) * c), o1 = o0 + c,
                  o2 = o0 + (int32_t)w * c, o3 = o2 + c;
    const float *x0 = x + o0, *x1 = x + o1, *x2 = x + o2, *x3 = x + o3;
#pragma omp simd
    for (int ch = 0; ch < c; ch++) max4_arg(x0[ch], x1[ch], x2[ch], x3[ch], o0 + ch, o1 + ch, o2 + ch, o3 + ch, yr + ch, ar + ch);
}

void sm_k_maxpool_forward(const float *x, int n, int h, int w, int c, int k, int s, int pad, int oh,
                          int ow, float *y, int32_t *arg) {
    if (k == 2 && s == 2 && pad == 0 && 2 * oh <= h && 2 * ow <= w) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < (int64_t)n * oh * ow; r++) maxpool2_forward_row(x, h, w, c, oh, ow, r, y + r * c, arg + r * c);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < (int64_t)n * oh * ow; r++) {
        int b = (int)(r / (oh * ow)), rem = (int)(r % (oh * ow)), oy = rem / ow, ox = rem % ow;
        float *yr = y + r * c;
        int32_t *ar = arg + r * c;
        /* the window clipped to the input (padded cells never win); its first cell initialises,
         * later ones replace on a strictly larger value, so ties go to the first cell in
         * row-major window order */
        int y0 = oy * s - pad, x0 = ox * s - pad;
        int ky0 = y0 < 0 ? -y0 : 0, kx0 = x0 < 0 ? -x0 : 0;
        int ky1 = y0 + k > h ? h - y0 : k, kx1 = x0 + k > w ? w - x0 : k;
        int32_t base = (int32_t)((((int64_t)b * h + y0 + ky0) * w + x0 + kx0) * c);
        for (int ch = 0; ch < c; ch++) { yr[ch] = x[base + ch]; ar[ch] = base + ch; }
        for (int ky = ky0; ky < ky1; ky++)
            for (int kx = kx0; kx < kx1; kx++) {
                if (ky == ky0 && kx == kx0) continue;
                int32_t off = (int32_t)((((int64_t)b * h + y0 + ky) * w + x0 + kx) * c);
                const float *xp = x + off;
#pragma omp simd
                for (int ch = 0; ch < c; ch++) {
                    int gt = xp[ch] > yr[ch];
                    yr[ch] = gt ? xp[ch] : yr[ch];
                    ar[ch] = gt ? off + ch : ar[ch];
                }
            }
    }
}

void sm_k_bn_forward_train_pool2(const float *x, int n, int h, int w, int c, const float *gamma, const float *beta,
                                 float eps, float momentum, float *run_mean, float *run_var, float *mean, float *rstd,
                                 int relu, int oh, int ow, float *y, int32_t *arg, const sm_ws *ws) {
    const int64_t m = (int64_t)n * h * w;
    assert(ws && ws->bytes >= sm_k_bn_ws(m, c) && 2 * oh <= h && 2 * ow <= w);
    double *sums = (double *)ws->base + 2 * row_chunks(m) * (int64_t)c; /* as sm_k_bn_forward_train */
    sm_k_bn_sums(x, m, c, sums, ws);
    sm_k_bn_stats(sums, m, c, eps, momentum, run_mean, run_var, mean, rstd);
    /* each window's four normalised values (bn_normalize's expression), then maxpool2_forward_row's
     * comparisons (max4_arg) */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < (int64_t)n * oh * ow; r++) {
        const int b = (int)(r / (oh * ow)), rem = (int)(r % (oh * ow)), oy = rem / ow, ox = rem % ow;
        const int32_t o0 = (int32_t)((((int64_t)b * h + 2 * oy) * w + 2 * ox) * c), o1 = o0 + c,
                      o2 = o0 + (int32_t)w * c, o3 = o2 + c;
        const float *x0 = x + o0, *x1 = x + o1, *x2 = x + o2, *x3 = x + o3;
        float *yr = y + r * c;
        int32_t *ar = arg + r * c;
#pragma omp simd
        for (int ch = 0; ch < c; ch++) {
            const float g = gamma[ch], mu = mean[ch], rs = rstd[ch], be = beta[ch];
            float u0 = bn_value(x0[ch], g, mu, rs, be), u1 = bn_value(x1[ch], g, mu, rs, be);
            float u2 = bn_value(x2[ch], g, mu, rs, be), u3 = bn_value(x3[ch], g, mu, rs, be);
            u0 = relu && u0 < 0 ? 0 : u0, u1 = relu && u1 < 0 ? 0 : u1;
            u2 = relu && u2 < 0 ? 0 : u2, u3 = relu && u3 < 0 ? 0 : u3;
            max4_arg(u0, u1, u2, u3, o0 + ch, o1 + ch, o2 + ch, o3 + ch, yr + ch, ar + ch);
        }
    }
}

void sm_k_maxpool_backward(const float *dy, const int32_t *arg, int n, int h, int w, int c, int k, int s, int pad,
                           int oh, int ow, float *dx) {
    const int64_t per_img_in = (int64_t)h * w * c, per_img_out = (int64_t)oh * ow * c;
    if (k == 2 && s == 2 && pad == 0 && 2 * oh <= h && 2 * ow <= w) {
        /* windows that tile the image without overlap: each input cell written once, in one pass,
         * 0 + dy where arg points (the bits of the zero fill and += below: -0 becomes +0), else 0 */
#pragma omp parallel for schedule(static)
        for (int64_t iy = 0; iy < (int64_t)n * h; iy++) {
            const int b = (int)(iy / h), y = (int)(iy % h), oy = y / 2;
            float *dr = dx + iy * w * c; /* input row y of image b: (w, c) */
            if (oy >= oh) { memset(dr, 0, sizeof(float) * (size_t)w * (size_t)c); continue; }
            for (int ox = 0; ox < ow; ox++) {
                const int64_t o = (((int64_t)b * oh + oy) * ow + ox) * c;
                const float *d = dy + o;
                const int32_t *a = arg + o;
                const int32_t c0 = (int32_t)(iy * w + 2 * ox) * c, c1 = c0 + c;
                float *d0 = dr + (int64_t)2 * ox * c, *d1 = d0 + c;
#pragma omp simd
                for (int ch = 0; ch < c; ch++) {
                    d0[ch] = a[ch] == c0 + ch ? 0.0f + d[ch] : 0.0f;
                    d1[ch] = a[ch] == c1 + ch ? 0.0f + d[ch] : 0.0f;
                }
            }
            if (2 * ow < w) memset(dr + (int64_t)2 * ow * c, 0, sizeof(float) * (size_t)(w - 2 * ow) * (size_t)c);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) { /* windows of one image only touch that image */
        memset(dx + b * per_img_in, 0, sizeof(float) * (size_t)per_img_in);
        for (int64_t o = b * per_img_out; o < (b + 1) * per_img_out; o++) dx[arg[o]] += dy[o];
    }
}

void sm_k_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}

/* y (oh, ow, c) of one sample x (h, w, c): window sums in row-major window order, / k^2 */
static void avgpool_sample(const float *x, int w, int c, int k, int s, int oh, int ow, float *y) {
    const float kk = (float)(k * k);
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            float *yo = y + ((int64_t)oy * ow + ox) * c;
            for (int ch = 0; ch < c; ch++) yo[ch] = 0;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    const float *xi = x + ((int64_t)(oy * s + ky) * w + ox * s + kx) * c;
                    for (int ch = 0; ch < c; ch++) yo[ch] += xi[ch];
                }
            for (int ch = 0; ch < c; ch++) yo[ch] /= kk;
        }
}

/* Enough work per batch to be worth a parallel region. */
static int avgpool_parallel(int n, int oh, int ow, int c, int k) {
    return n > 1 && (int64_t)n * oh * ow * c * k * k > 32768;
}

void sm_k_avgpool_forward(const float *x, int n, int h, int w, int c, int k, int s, int oh, int ow, float *y) {
    const int64_t in = (int64_t)h * w * c, out = (int64_t)oh * ow * c;
#pragma omp parallel for schedule(static) if (avgpool_parallel(n, oh, ow, c, k))
    for (int b = 0; b < n; b++) avgpool_sample(x + b * in, w, c, k, s, oh, ow, y + b * out);
}

void sm_k_avgpool1(const float *x, int n, int h, int w, int c, int k, int s, int oh, int ow, float *y) {
    const int64_t in = (int64_t)h * w * c, out = (int64_t)oh * ow * c;
    for (int b = 0; b < n; b++) avgpool_sample(x + b * in, w, c, k, s, oh, ow, y + b * out);
}

void sm_k_avgpool_backward(const float *dy, int n, int h, int w, int c, int k, int s, int oh, int ow, float *dx) {
    const int64_t in = (int64_t)h * w * c, out = (int64_t)oh * ow * c;
    const float kk = (float)(k * k);
#pragma omp parallel for schedule(static) if (avgpool_parallel(n, oh, ow, c, k))
    for (int b = 0; b < n; b++) {
        const float *g0 = dy + b * out;
        float *d0 = dx + b * in;
        memset(d0, 0, sizeof(float) * (size_t)in);
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const float *g = g0 + ((int64_t)oy * ow + ox) * c;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        float *d = d0 + ((int64_t)(oy * s + ky) * w + ox * s + kx) * c;
                        for (int ch = 0; ch < c; ch++) d[ch] += g[ch] / kk;
                    }
            }
    }
}

void sm_k_gap_forward(const float *x, int n, int hw, int c, float *y) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) sm_k_gap1(x + (int64_t)b * hw * c, 1, hw, c, y + (int64_t)b * c);
}

void sm_k_gap_backward(const float *dy, int n, int hw, int c, float *dx) {
    const float inv = 1.0f / (float)hw;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++)
        for (int p = 0; p < hw; p++)
            for (int j = 0; j < c; j++) dx[((int64_t)b * hw + p) * c + j] = dy[(int64_t)b * c + j] * inv;
}

void sm_k_l2norm_forward(const float *x, int n, int d, float *y, float *norm) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)x[(int64_t)i * d + j] * x[(int64_t)i * d + j];
        float nr = (float)sqrt(s);
        if (nr < 1e-12f) nr = 1e-12f;
        norm[i] = nr;
        for (int j = 0; j < d; j++) y[(int64_t)i * d + j] = x[(int64_t)i * d + j] / nr;
    }
}

void sm_k_l2norm_backward(const float *y, const float *norm, const float *dy, int n, int d,
                          float *dx) {
    for (int i = 0; i < n; i++) {
        const float *yi = y + (int64_t)i * d, *gi = dy + (int64_t)i * d;
        double dot = 0;
        for (int j = 0; j < d; j++) dot += (double)yi[j] * gi[j];
        /* below the clamp the map is x / 1e-12, a linear map: dx = dy / 1e-12 */
        float clamp = norm[i] <= 1e-12f;
        for (int j = 0; j < d; j++)
            dx[(int64_t)i * d + j] = (gi[j] - (clamp ? 0.0f : (float)dot * yi[j])) / norm[i];
    }
}

/* ---- single-threaded kernels for batch-parallel inference ---- */

void sm_k_im2col1(const float *x, int n, int h, int w, int c, int k, int stride, int pad, int oh,
                  int ow, float *col) {
    const int64_t K = (int64_t)k * k * c;
    float *dst = col;
    for (int b = 0; b < n; b++) {
        const float *img = x + (int64_t)b * h * w * c;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++, dst += K)
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * stride - pad + ky;
                    float *d = dst + (int64_t)ky * k * c;
                    if (iy < 0 || iy >= h) { memset(d, 0, sizeof(float) * (size_t)k * c); continue; }
                    const float *row = img + (int64_t)iy * w * c;
                    int ix0 = ox * stride - pad;
                    if (ix0 >= 0 && ix0 + k <= w) { /* the whole window row is inside */
                        memcpy(d, row + (int64_t)ix0 * c, sizeof(float) * (size_t)k * c);
                        continue;
                    }
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ix0 + kx;
                        if (ix < 0 || ix >= w) memset(d + (int64_t)kx * c, 0, sizeof(float) * (size_t)c);
                        else memcpy(d + (int64_t)kx * c, row + (int64_t)ix * c, sizeof(float) * (size_t)c);
                    }
                }
    }
}

/* yi (c) = yi + b, then max(., 0) if relu (b NULL: no bias): one row of bias_act1 */
static inline void bias_act_row(float *yi, const float *b, int c, int relu) {
    if (b && relu) {
#pragma omp simd
        for (int j = 0; j < c; j++) { float v = yi[j] + b[j]; yi[j] = v > 0 ? v : 0; }
    } else if (b) {
#pragma omp simd
        for (int j = 0; j < c; j++) yi[j] += b[j];
    } else if (relu) {
#pragma omp simd
        for (int j = 0; j < c; j++) yi[j] = yi[j] > 0 ? yi[j] : 0;
    }
}

void sm_k_bias_act1(float *y, const float *b, int64_t m, int c, int relu) {
    for (int64_t i = 0; i < m; i++) bias_act_row(y + i * c, b, c, relu);
}

/* maxpool1, and with bias_act: each pooled row's bias and activation (bias_act1's operations) in
 * the same pass, while the row is in registers / L1 */
static inline void maxpool1_(const float *x, int n, int h, int w, int c, int k, int s, int pad, int oh, int ow,
                             float *y, int bias_act, const float *bias, int relu) {
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float *yr = y + (((int64_t)b * oh + oy) * ow + ox) * c;
                int y0 = oy * s - pad, x0 = ox * s - pad;
                int ky0 = y0 < 0 ? -y0 : 0, kx0 = x0 < 0 ? -x0 : 0;
                int ky1 = y0 + k > h ? h - y0 : k, kx1 = x0 + k > w ? w - x0 : k;
                const float *xb = x + (int64_t)b * h * w * c;
                memcpy(yr, xb + ((int64_t)(y0 + ky0) * w + x0 + kx0) * c, sizeof(float) * (size_t)c);
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        if (ky == ky0 && kx == kx0) continue;
                        const float *xp = xb + ((int64_t)(y0 + ky) * w + x0 + kx) * c;
#pragma omp simd
                        for (int ch = 0; ch < c; ch++) yr[ch] = xp[ch] > yr[ch] ? xp[ch] : yr[ch];
                    }
                if (bias_act) bias_act_row(yr, bias, c, relu);
            }
}

void sm_k_pool2_bias_act_row(const float *r0, const float *r1, int pw, int ld, int nb, const float *b, int relu,
                             float *y, int ldy) {
    for (int px = 0; px < pw; px++) {
        const float *c00 = r0 + (int64_t)(2 * px) * ld, *c01 = c00 + ld, *c10 = r1 + (int64_t)(2 * px) * ld, *c11 = c10 + ld;
        float *yr = y + (int64_t)px * ldy;
#pragma omp simd
        for (int o = 0; o < nb; o++) {
            float v = c00[o];
            v = c01[o] > v ? c01[o] : v;
            v = c10[o] > v ? c10[o] : v;
            v = c11[o] > v ? c11[o] : v;
            yr[o] = v;
        }
        bias_act_row(yr, b, nb, relu);
    }
}

void sm_k_maxpool1(const float *x, int n, int h, int w, int c, int k, int s, int pad, int oh, int ow,
                   float *y) {
    maxpool1_(x, n, h, w, c, k, s, pad, oh, ow, y, 0, NULL, 0);
}

void sm_k_maxpool_bias_act1(const float *x, int n, int h, int w, int c, int k, int s, int pad, int oh, int ow,
                            const float *b, int relu, float *y) {
    maxpool1_(x, n, h, w, c, k, s, pad, oh, ow, y, 1, b, relu);
}

void sm_k_gap1(const float *x, int n, int hw, int c, float *y) {
    for (int b = 0; b < n; b++) {
        float *yb = y + (int64_t)b * c;
        const float *xb = x + (int64_t)b * hw * c;
        for (int j = 0; j < c; j++) yb[j] = 0;
        for (int p = 0; p < hw; p++) {
            const float *xp = xb + (int64_t)p * c;
#pragma omp simd
            for (int j = 0; j < c; j++) yb[j] += xp[j];
        }
        for (int j = 0; j < c; j++) yb[j] /= (float)hw;
    }
}
