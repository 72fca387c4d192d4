/* kernels.h - the CPU backend's kernels: what each operation of ops.def computes, and its CPU
 * implementation (ops_cpu.c, conv_cpu.c, dist_cpu.c, knn_cpu.c, optim_cpu.c).  Only src/backend/ includes
 * this; the rest of the library calls the operations through backend.h (sm_be_<op>). */
#ifndef SM_BACKEND_CPU_KERNELS_H
#define SM_BACKEND_CPU_KERNELS_H
#include "backend/backend.h"

/* C (m, n) = alpha * op(A) op(B) + beta * C, op = transpose if ta/tb. Row-major, BLAS semantics. */
void sm_k_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
/* y (m or n) = alpha * op(A) x + beta * y for A (m, n), op = transpose if ta.  Row-major, BLAS
 * semantics (incx, incy strides). */
void sm_k_gemv(int ta, int m, int n, float alpha, const float *A, int lda, const float *x, int incx,
               float beta, float *y, int incy);

/* C (m, n) = A^T B for A (k, m) and B (k, n) with a long k (weight gradients: k = rows of a
 * batch).  k is split into a fixed number of chunks (independent of the thread count), each a
 * single-threaded sgemm on its own thread, and the partial products are summed in order, so the
 * result is deterministic.  lda, ldb, ldc as in BLAS. */
size_t sm_k_gemm_at_b_ws(int m, int n, int64_t k);
void sm_k_gemm_at_b(int m, int n, int64_t k, const float *A, int lda, const float *B, int ldb,
                    float *C, int ldc, const sm_ws *ws);

/* The number of chunks sm_k_gemm_at_b cuts a long k into (fixed by k alone). */
int64_t sm_k_at_b_chunks(int64_t k);

/* Direct convolution of a 1-channel input x (n, h, w) with W (oc, k*k), k*k <= SM_CONV1CH_MAX_K
 * (conv_cpu.c): y (n*oh*ow, oc) = im2col(x) W^T, and the weight gradient dW (oc, k*k) =
 * dy^T im2col(x) for dy (n*oh*ow, oc), without the im2col buffer.  The same bits as im2col +
 * sm_k_gemm and im2col + sm_k_gemm_at_b on every path.  conv1ch1 runs on the calling thread. */
#define SM_CONV1CH_MAX_K 64
void sm_k_conv1ch(const float *x, int n, int h, int w, int k, int stride, int pad, int oh, int ow, const float *W,
                  int oc, float *y);
void sm_k_conv1ch1(const float *x, int n, int h, int w, int k, int stride, int pad, int oh, int ow, const float *W,
                   int oc, float *y);
/* conv1ch1 followed by a 2x2 stride-2 max-pool (pad 0) and the bias and ReLU (b may be NULL):
 * y (n, (oh - 2) / 2 + 1, (ow - 2) / 2 + 1, oc), the bits of conv1ch1 then maxpool_bias_act1,
 * without the unpooled output; oh, ow >= 2 and ow <= SM_CONV1CH_POOL_MAX_OW. */
#define SM_CONV1CH_POOL_MAX_OW 128
/* One pooled row of conv1ch1_pool (ops_cpu.c, whose flags let the selects vectorise): y[px]
 * (nb values, stride ldy) = bias_act1 of the 2x2 max over rows r0, r1 (positions 2 px, 2 px + 1,
 * stride ld), in maxpool1's order; b the block's biases or NULL. */
void sm_k_pool2_bias_act_row(const float *r0, const float *r1, int pw, int ld, int nb, const float *b, int relu,
                             float *y, int ldy);
void sm_k_conv1ch1_pool(const float *x, int n, int h, int w, int k, int stride, int pad, int oh, int ow, const float *W,
                        int oc, const float *b, int relu, float *y);
size_t sm_k_conv1ch_dw_ws(int oc, int k, int64_t rows);
void sm_k_conv1ch_dw(const float *x, const float *dy, int n, int h, int w, int k, int stride, int pad, int oh, int ow,
                     int oc, float *dW, const sm_ws *ws);

/* Winograd F(2x2, 3x3) (winograd_cpu.c): a 3x3 stride-1 pad-1 convolution of x (n, h, w, c),
 * with the weights W (oc, 3, 3, c) transformed once by wino3_weights into U (16, c, oc) =
 * G g G^T for each (output, input) channel pair (with flip: U (16, oc, c), the convolution of
 * an (n, h, w, oc) input to c channels by W rotated 180 degrees, i.e. a 3x3 s1 p1 conv's input
 * gradient).  wino3_1, on the calling thread only: y = act(conv + b) with b (oc) or NULL and act
 * = max(., 0) when relu is set; y (n, h, w, oc), or with pool the 2x2 stride-2 max-pool of the
 * convolution taken before the bias and activation, y (n, h/2, w/2, oc).  wino3: the same without
 * pool, fixed chunks of tiles over the threads.  Not the bits of im2col + gemm (other rounding),
 * the same bits on every path and thread count.  Workspace: sm_k_wino3_1_ws (at most n times its
 * value for n = 1), sm_k_wino3_ws (for the calling thread's OpenMP thread count; fewer threads
 * run with a smaller one). */
void sm_k_wino3_weights(const float *W, int oc, int c, int flip, float *U);
size_t sm_k_wino3_ws(int n, int h, int w, int c, int oc);
void sm_k_wino3(const float *x, int n, int h, int w, int c, const float *U, int oc, const float *b, int relu,
                float *y, const sm_ws *ws);
size_t sm_k_wino3_1_ws(int n, int h, int w, int c, int oc, int pool);
void sm_k_wino3_1(const float *x, int n, int h, int w, int c, const float *U, int oc, const float *b, int relu,
                  int pool, float *y, const sm_ws *ws);

/* im2col for NHWC: x (n, h, w, c) -> col (n*oh*ow, kh*kw*c), zero padding. */
void sm_k_im2col(const float *x, int n, int h, int w, int c, int k, int stride, int pad,
                 int oh, int ow, float *col);
/* col2im: dx (n, h, w, c) = scatter-add of dcol (n*oh*ow, k*k*c); dx is overwritten. */
void sm_k_col2im(const float *dcol, int n, int h, int w, int c, int k, int stride, int pad,
                 int oh, int ow, float *dx);

/* y (m, c) += b (c) on every row. */
void sm_k_add_bias(float *y, const float *b, int64_t m, int c);
/* db (c) = sum over rows of dy (m, c). Deterministic for any thread count. */
size_t sm_k_sum_rows_ws(int64_t m, int c);
void sm_k_sum_rows(const float *dy, int64_t m, int c, float *db, const sm_ws *ws);

/* Batch norm over rows of x (m, c) per channel.  Training: batch mean/var (biased), writes
 * mean (c), rstd (c) = 1/sqrt(var + eps) and updates running stats with momentum (unbiased
 * var, PyTorch semantics).  Inference: uses running stats.  y = gamma * xhat + beta, followed
 * by max(y, 0) when relu is set (a fused bn + relu). */
void sm_k_bn_forward_train(const float *x, int64_t m, int c, const float *gamma,
                           const float *beta, float eps, float momentum, float *run_mean,
                           float *run_var, float *mean, float *rstd, int relu, float *y, const sm_ws *ws);
void sm_k_bn_forward_infer(const float *x, int64_t m, int c, const float *gamma,
                           const float *beta, float eps, const float *run_mean,
                           const float *run_var, int relu, float *y);
/* Given x, gamma, beta, mean, rstd, dy: dgamma, dbeta (c) and dx (m, c) (dx may be NULL).  If
 * relu, the forward was a fused bn + relu and dy is first masked by its output > 0, which the
 * kernel recomputes from x (bn_normalize's expression, so the same mask bit for bit). */
void sm_k_bn_backward(const float *x, const float *dy, int64_t m, int c, const float *gamma,
                      const float *beta, const float *mean, const float *rstd, int relu, float *dgamma,
                      float *dbeta, float *dx, const sm_ws *ws);
/* sm_k_bn_forward_train of x (n, h, w, c), then a 2x2 stride-2 unpadded max-pool of its output,
 * (2 oh <= h, 2 ow <= w): y (n, oh, ow, c) and arg as sm_k_maxpool_forward leaves them, the same
 * bits, without writing the unpooled output (its workspace: sm_k_bn_ws(n h w, c)). */
void sm_k_bn_forward_train_pool2(const float *x, int n, int h, int w, int c, const float *gamma, const float *beta,
                                 float eps, float momentum, float *run_mean, float *run_var, float *mean, float *rstd,
                                 int relu, int oh, int ow, float *y, int32_t *arg, const sm_ws *ws);
/* Workspace of sm_k_bn_forward_train and sm_k_bn_backward for m rows of c channels. */
size_t sm_k_bn_ws(int64_t m, int c);

/* Batch norm in pieces, for statistics over rows held by several processes (SyncBN): the
 * forward is sums -> (sum over processes) -> stats -> normalize, the backward grad_sums -> (sum
 * over processes) -> backward_dx.  Each piece computes what the one-call kernels above compute,
 * with the same chunked double sums.  Workspace: sm_k_bn_ws(m, c).
 * bn_sums: sums (2, c) = per-channel sum and sum of squares of x (m, c).
 * bn_stats: from sums over count rows: mean, rstd (c) and the running statistics' update.
 * bn_normalize: y = gamma * (x - mean) * rstd + beta (then max(y, 0) if relu).
 * bn_grad_sums: sums (2, c) = per-channel sum of dy and of dy * xhat (dy masked by the fused
 *   relu's output > 0 when relu, recomputed from x); these are the local dbeta and dgamma.
 * bn_backward_dx: dx from the sums over all count rows. */
void sm_k_bn_sums(const float *x, int64_t m, int c, double *sums, const sm_ws *ws);
void sm_k_bn_stats(const double *sums, int64_t count, int c, float eps, float momentum, float *run_mean,
                   float *run_var, float *mean, float *rstd);
void sm_k_bn_normalize(const float *x, int64_t m, int c, const float *gamma, const float *beta,
                       const float *mean, const float *rstd, int relu, float *y);
void sm_k_bn_grad_sums(const float *x, const float *dy, int64_t m, int c, const float *gamma,
                       const float *beta, const float *mean, const float *rstd, int relu, double *sums,
                       const sm_ws *ws);
void sm_k_bn_backward_dx(const float *x, const float *dy, int64_t m, int c, const float *gamma,
                         const float *beta, const float *mean, const float *rstd, int relu, const double *sums,
                         int64_t count, float *dx);

/* ReLU: y = max(x, 0); backward dx = dy * (y > 0).  y may alias x; dx may alias dy. */
void sm_k_relu_forward(const float *x, float *y, int64_t m);
void sm_k_relu_backward(const float *y, const float *dy, float *dx, int64_t m);

/* Max pool NHWC, window k, stride s, padding pad (cells outside the input never win; every
 * window must hold at least one input cell, which pad < k guarantees): y (n, oh, ow, c), arg
 * (n, oh, ow, c) holds the flat input index of each max; ties go to the first input cell in
 * row-major window order.  Backward scatters dy into dx (overwritten). */
void sm_k_maxpool_forward(const float *x, int n, int h, int w, int c, int k, int s, int pad, int oh,
                          int ow, float *y, int32_t *arg);
/* (k, s, pad: the forward's window, so that a 2x2 stride-2 pool writes dx in one pass) */
void sm_k_maxpool_backward(const float *dy, const int32_t *arg, int n, int h, int w, int c, int k, int s, int pad,
                           int oh, int ow, float *dx);

/* Average pool NHWC, window k, stride s, no padding: y (n, oh, ow, c) the mean of each window
 * (window sums in row-major window order, then / k^2); backward overwrites dx with each dy / k^2
 * added over its window (overlapping windows add up).  Samples are independent: the results do
 * not depend on the thread count.  sm_k_avgpool1 is the forward on the calling thread only. */
void sm_k_avgpool_forward(const float *x, int n, int h, int w, int c, int k, int s, int oh, int ow, float *y);
void sm_k_avgpool_backward(const float *dy, int n, int h, int w, int c, int k, int s, int oh, int ow, float *dx);
void sm_k_avgpool1(const float *x, int n, int h, int w, int c, int k, int s, int oh, int ow, float *y);

/* dst <- bytes of src (they may overlap). */
void sm_k_copy(void *dst, const void *src, size_t bytes);

/* Global average pool: x (n, h*w, c) -> y (n, c); backward dx = dy / (h*w). */
void sm_k_gap_forward(const float *x, int n, int hw, int c, float *y);
void sm_k_gap_backward(const float *dy, int n, int hw, int c, float *dx);

/* Row-wise L2 normalisation y = x / max(|x|, 1e-12): norm (n) cached; backward
 * dx = (dy - y (y . dy)) / max(|x|, 1e-12). */
void sm_k_l2norm_forward(const float *x, int n, int d, float *y, float *norm);
void sm_k_l2norm_backward(const float *y, const float *norm, const float *dy, int n, int d,
                          float *dx);

/* ---- residual blocks, dropout, GeM pooling (blocks_cpu.c) ---- */

/* y (m) = a + b elementwise (a residual block's join, and res's two gradients); y may alias a
 * or b.  On the calling thread only (the inference plan runs it too). */
void sm_k_add(const float *a, const float *b, float *y, int64_t m);
/* Inverted dropout with drop probability p in [0, 1): value j is kept when the top 24 bits of
 * sm_hash64(key + j) are >= round(p 2^24); mask (m) = 1 for a kept value, 0 else, and
 * y = x / (1 - p) where kept, 0 where dropped.  Backward: dx = dy / (1 - p) where mask, else 0.
 * The mask depends only on key and j, never on the thread count.  y may alias x, dx dy. */
void sm_k_dropout_forward(const float *x, int64_t m, float p, uint64_t key, uint8_t *mask, float *y);
void sm_k_dropout_backward(const float *dy, const uint8_t *mask, int64_t m, float p, float *dx);
/* Generalised-mean pooling of x (n, hw, c) to y (n, c) with the exponent p[0] > 0:
 * y = (mean_hw z^p)^(1/p), z = max(x, 1e-6), computed in double after dividing each channel by
 * its largest z (no overflow for any p).  Backward, with m = mean z^p: dx_i = dy y z_i^(p-1) /
 * (hw m) (0 where x_i < 1e-6; dx may be NULL) and dp[0] = sum over samples and channels of
 * dy y (mean(z^p ln z) / (p m) - ln(m) / p^2), per-sample parts (double, in the workspace) summed
 * in sample order.  sm_k_gem1 is the forward on the calling thread only. */
void sm_k_gem_forward(const float *x, int n, int hw, int c, const float *p, float *y);
void sm_k_gem1(const float *x, int n, int hw, int c, const float *p, float *y);
size_t sm_k_gem_backward_ws(int n, int hw, int c);
void sm_k_gem_backward(const float *x, const float *dy, int n, int hw, int c, const float *p, float *dx, float *dp,
                       const sm_ws *ws);

/* ---- single-threaded kernels for the batch-parallel inference path (src/model/infer.c):
 * each thread runs its own slice of the batch through every layer, so these never open an
 * OpenMP region.  sm_k_im2col and sm_k_gap_forward run the same code image by image. */

/* im2col as sm_k_im2col, on the calling thread only. */
void sm_k_im2col1(const float *x, int n, int h, int w, int c, int k, int stride, int pad, int oh,
                  int ow, float *col);
/* y (m, c) = act(y + b) with b (c) or NULL, act = max(., 0) when relu is set, else identity. */
void sm_k_bias_act1(float *y, const float *b, int64_t m, int c, int relu);
/* Inference batch norm as sm_k_bn_forward_infer, on the calling thread only. */
void sm_k_bn_infer1(const float *x, int64_t m, int c, const float *gamma, const float *beta, float eps,
                    const float *run_mean, const float *run_var, int relu, float *y);
/* Max pool NHWC (window k, stride s, padding pad) as sm_k_maxpool_forward, without the argmax
 * indices. */
void sm_k_maxpool1(const float *x, int n, int h, int w, int c, int k, int s, int pad, int oh, int ow,
                   float *y);
/* maxpool1 followed by bias_act1 (b, relu) on its output, in one pass: the same bits */
void sm_k_maxpool_bias_act1(const float *x, int n, int h, int w, int c, int k, int s, int pad, int oh, int ow,
                            const float *b, int relu, float *y);
/* Global average pool x (n, hw, c) -> y (n, c). */
void sm_k_gap1(const float *x, int n, int hw, int c, float *y);

/* out (n) = squared row norms sum_k x_ik^2 of x (n, d), accumulated in double and rounded to
 * float; with inverse set, 1 / sqrt of it instead (0 for a zero row).  Deterministic. */
void sm_k_row_norms(const float *x, int64_t n, int d, int inverse, float *out);

/* out (mq, ldo) <- the tile of `kind` (above) between the rows of Q (mq, d) and D (md, d), both
 * with row stride d; qn (mq) and dn (md) their norms as the kind needs.  ldo >= md; entries
 * beyond md in a row are not touched.  Nothing is allocated; the elementwise pass runs on
 * several threads for large tiles (inactive inside a parallel region) and each entry depends
 * only on its inputs, so results do not depend on the thread count. */
void sm_k_dist_tile(int kind, unsigned flags, int64_t mq, int64_t md, int d, float alpha,
                    const float *Q, float *qn, const float *D, const float *dn, float *out,
                    int64_t ldo);

/* ---- k-NN selection (knn_cpu.c): the knn operation of backend.h.  The workspace is sized by
 * sm_k_knn_ws for the calling thread's OpenMP thread count; a smaller one gives SM_ERR_INVALID. */
size_t sm_k_knn_ws(int64_t n, int64_t nq, int d, int k, int kind);
sm_status sm_k_knn(int kind, const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                   int64_t self_offset, float *dist, int64_t *idx, const sm_ws *ws);
/* knn_all (knn_cpu.c): every row of x (n, d) against all the others (self excluded), the
 * symmetric tiles computed once; dist / idx (n, cap) are the caller's, used as candidate buffers:
 * on return the first k of row i hold its best k (as knn: best first, ties to the lower index,
 * unfilled slots -1 with +inf (SQL2) or -inf), the rest is scratch.  k >= 1, cap > k + 16, n < 2^31;
 * a larger cap means fewer compactions.  The workspace is sized by sm_k_knn_all_ws. */
size_t sm_k_knn_all_ws(int64_t n, int d, int k, int cap, int kind);
sm_status sm_k_knn_all(int kind, const float *x, int64_t n, int d, int k, int cap, float *dist, int32_t *idx,
                       const sm_ws *ws);

/* ---- optimiser (optim_cpu.c): one update of n parameters p from their gradients g with the
 * moments m (and v for Adam), step t >= 1 (bias correction; SGD's first step sets the momentum
 * buffer to the gradient, as PyTorch does), learning rate lr. */
void sm_k_optim_update(const sm_optim_hyper *h, int64_t t, int64_t n, float *p, const float *g, float *m,
                       float *v, float lr);

#endif
