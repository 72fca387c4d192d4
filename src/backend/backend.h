/* backend.h - the compute kernels that layers and losses call.  What an op means lives in
 * src/nn/ (shapes, parameters, caches); how it runs lives behind this interface
 * (src/backend/cpu/ now; a CUDA implementation can sit beside it with the same signatures).
 * All tensors are row-major float32; images are NHWC. */
#ifndef SM_BACKEND_H
#define SM_BACKEND_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Scratch memory a caller lends a kernel: kernels never allocate.  A kernel that needs scratch
 * has a *_ws() function that says how many bytes (0: none) for its shapes; the caller sizes the
 * workspace once (the model does it for its batch capacity in sm_model_reserve) and passes it
 * on every call.  base is aligned for double. */
typedef struct sm_ws {
    void *base;
    size_t bytes;
} sm_ws;

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
/* Given x, mean, rstd, dy: dgamma, dbeta (c) and dx (m, c) (dx may be NULL).  If y_relu is
 * not NULL it is the output of a fused bn + relu, and dy is first masked by y_relu > 0. */
void sm_k_bn_backward(const float *x, const float *dy, const float *y_relu, int64_t m, int c,
                      const float *gamma, const float *mean, const float *rstd, float *dgamma,
                      float *dbeta, float *dx, const sm_ws *ws);
/* Workspace of sm_k_bn_forward_train and sm_k_bn_backward for m rows of c channels. */
size_t sm_k_bn_ws(int64_t m, int c);
/* Batch norm in pieces, for statistics over rows held by several processes (SyncBN): the
 * forward is sums -> (sum over processes) -> stats -> normalize, the backward grad_sums -> (sum
 * over processes) -> backward_dx.  Each piece computes what the one-call kernels above compute,
 * with the same chunked double sums.  Workspace: sm_k_bn_ws(m, c).
 * bn_sums: sums (2, c) = per-channel sum and sum of squares of x (m, c).
 * bn_stats: from sums over count rows: mean, rstd (c) and the running statistics' update.
 * bn_normalize: y = gamma * (x - mean) * rstd + beta (then max(y, 0) if relu).
 * bn_grad_sums: sums (2, c) = per-channel sum of dy and of dy * xhat (dy masked by y_relu > 0
 *   when y_relu is not NULL); these are the local dbeta and dgamma.
 * bn_backward_dx: dx from the sums over all count rows. */
void sm_k_bn_sums(const float *x, int64_t m, int c, double *sums, const sm_ws *ws);
void sm_k_bn_stats(const double *sums, int64_t count, int c, float eps, float momentum, float *run_mean,
                   float *run_var, float *mean, float *rstd);
void sm_k_bn_normalize(const float *x, int64_t m, int c, const float *gamma, const float *beta,
                       const float *mean, const float *rstd, int relu, float *y);
void sm_k_bn_grad_sums(const float *x, const float *dy, const float *y_relu, int64_t m, int c,
                       const float *mean, const float *rstd, double *sums, const sm_ws *ws);
void sm_k_bn_backward_dx(const float *x, const float *dy, const float *y_relu, int64_t m, int c,
                         const float *gamma, const float *mean, const float *rstd, const double *sums,
                         int64_t count, float *dx);

/* ReLU: y = max(x, 0); backward dx = dy * (y > 0).  y may alias x; dx may alias dy. */
void sm_k_relu_forward(const float *x, float *y, int64_t m);
void sm_k_relu_backward(const float *y, const float *dy, float *dx, int64_t m);

/* Max pool NHWC, window k, stride s, no padding: y (n, oh, ow, c), arg (n, oh, ow, c) holds
 * the flat input index of each max.  Backward scatters dy into dx (overwritten). */
void sm_k_maxpool_forward(const float *x, int n, int h, int w, int c, int k, int s, int oh,
                          int ow, float *y, int32_t *arg);
void sm_k_maxpool_backward(const float *dy, const int32_t *arg, int n, int h, int w, int c,
                           int oh, int ow, float *dx);

/* Global average pool: x (n, h*w, c) -> y (n, c); backward dx = dy / (h*w). */
void sm_k_gap_forward(const float *x, int n, int hw, int c, float *y);
void sm_k_gap_backward(const float *dy, int n, int hw, int c, float *dx);

/* Row-wise L2 normalisation y = x / max(|x|, 1e-12): norm (n) cached; backward
 * dx = (dy - y (y . dy)) / max(|x|, 1e-12). */
void sm_k_l2norm_forward(const float *x, int n, int d, float *y, float *norm);
void sm_k_l2norm_backward(const float *y, const float *norm, const float *dy, int n, int d,
                          float *dx);

/* ---- single-threaded kernels for the batch-parallel inference path (src/model/infer.c):
 * each thread runs its own slice of the batch through every layer, so these never open an
 * OpenMP region.  sm_k_im2col and sm_k_gap_forward run the same code image by image. */

/* im2col as sm_k_im2col, on the calling thread only. */
void sm_k1_im2col(const float *x, int n, int h, int w, int c, int k, int stride, int pad, int oh,
                  int ow, float *col);
/* y (m, c) = act(y + b) with b (c) or NULL, act = max(., 0) when relu is set, else identity. */
void sm_k1_bias_act(float *y, const float *b, int64_t m, int c, int relu);
/* Inference batch norm as sm_k_bn_forward_infer, on the calling thread only. */
void sm_k1_bn_infer(const float *x, int64_t m, int c, const float *gamma, const float *beta, float eps,
                    const float *run_mean, const float *run_var, int relu, float *y);
/* Max pool NHWC (window k, stride s, no padding) without the argmax indices. */
void sm_k1_maxpool(const float *x, int n, int h, int w, int c, int k, int s, int oh, int ow,
                   float *y);
/* Global average pool x (n, hw, c) -> y (n, c). */
void sm_k1_gap(const float *x, int n, int hw, int c, float *y);

/* ---- distance tiles (src/backend/cpu/dist_cpu.c): the one place that turns inner products
 * into distances, for the metric losses, k-NN search, galleries and the evaluation metrics ---- */

/* out (n) = squared row norms sum_k x_ik^2 of x (n, d), accumulated in double and rounded to
 * float; with inverse set, 1 / sqrt of it instead (0 for a zero row).  Deterministic. */
void sm_k_row_norms(const float *x, int64_t n, int d, int inverse, float *out);

/* What sm_k_dist_tile writes for query row i and database row j, with P = alpha <q_i, d_j>
 * (alpha folded into the sgemm, or sgemv when mq == 1):
 *   SM_K_DIST_SQL2: max(qn_i + dn_j + P, 0) with alpha = -2 (the alpha argument is ignored),
 *                   qn / dn squared norms (sm_k_row_norms): |q_i|^2 + |d_j|^2 - 2 <q_i, d_j>
 *                   clamped at 0; a NaN (inf - inf on overflowing inputs) stays NaN.
 *   SM_K_DIST_DOT:  P (qn, dn unused: may be NULL).  alpha = -1 gives "smaller is closer".
 *   SM_K_DIST_COS:  P * (qn_i * dn_j), qn / dn inverse norms (sm_k_row_norms with inverse):
 *                   alpha times the cosine; 0 for a zero row. */
enum { SM_K_DIST_SQL2 = 0, SM_K_DIST_DOT = 1, SM_K_DIST_COS = 2 };
/* Flags of sm_k_dist_tile (or-ed): */
#define SM_K_DIST_NAN_INF 1u   /* a NaN result becomes +inf (search keys: NaN is never closest) */
#define SM_K_DIST_SELF 2u      /* SQL2 of a set against itself (D == Q, md == mq): the squared
                                * norms are not read but written into qn (mq), taken from the
                                * product's diagonal (-P_ii / 2), and out's diagonal is 0; dn is
                                * unused */
#define SM_K_DIST_RECOMPUTE 4u /* SQL2: where the Gram form cancels, qn_i + dn_j + P below
                                * 1e-2 (qn_i + dn_j), the entry is recomputed as
                                * sum_k (q_ik - d_jk)^2 in double (then clamped, as above) */
#define SM_K_DIST_SMALL 8u     /* plain float loops instead of BLAS (tiny problems, where the
                                * call costs more than the work) */
/* One entry of the tile from its product p = alpha <q_i, d_j> and the norms a = qn_i, b = dn_j:
 * the elementwise pass of sm_k_dist_tile (without SELF and RECOMPUTE), for a consumer that
 * fuses it into its own pass over a tile of products (SM_K_DIST_DOT with alpha -2 for SQL2, -1
 * or 1 for COS), as the search's selection does instead of writing the tile twice. */
static inline float sm_k_dist_entry(int kind, unsigned flags, float p, float a, float b) {
    float v = p;
    if (kind == SM_K_DIST_SQL2) {
        v = (a + b) + p;
        v = v > 0.0f ? v : (v != v ? v : 0.0f); /* clamp at 0 (-0 too), NaN kept */
    } else if (kind == SM_K_DIST_COS) {
        v = p * (a * b);
    }
    return (flags & SM_K_DIST_NAN_INF) && v != v ? INFINITY : v;
}

/* out (mq, ldo) <- the tile of `kind` (above) between the rows of Q (mq, d) and D (md, d), both
 * with row stride d; qn (mq) and dn (md) their norms as the kind needs.  ldo >= md; entries
 * beyond md in a row are not touched.  Nothing is allocated; the elementwise pass runs on
 * several threads for large tiles (inactive inside a parallel region) and each entry depends
 * only on its inputs, so results do not depend on the thread count. */
void sm_k_dist_tile(int kind, unsigned flags, int64_t mq, int64_t md, int d, float alpha,
                    const float *Q, float *qn, const float *D, const float *dn, float *out,
                    int64_t ldo);

#endif
