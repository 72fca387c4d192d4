/* test_backend_ops.c - every backend operation against a double-precision reference written
 * here, on random shapes that include the edge ones (n = 1, odd sizes, k = 1, 1 and 3
 * channels, transposes, leading dimensions wider than the rows, alpha != 1, beta != 0).  Each
 * operation lists every implementation the backend has of it (the threaded kernel and the
 * single-threaded one of the inference path, where both exist), and each is held to the same
 * reference: normalised squared error (sum (out - ref)^2 / sum ref^2) at most 1e-10 where the
 * float result is a rounded sum, exact equality where it is a copy, a max or a masked value.
 * Operations whose reduction order the backend fixes are also run on 1 and 2 threads and must
 * give the same bits.  Everything runs once on each instruction-set path of simile's own matrix
 * products that this CPU has (sm_set_isa: scalar, avx2, avx512; test_gemm.c checks their bits
 * against each other).  Backward operations are checked against
 * the reference formulas of their gradients (col2im as the exact adjoint of im2col); those
 * formulas are checked by finite differences through the layers in test_layers.c.  The distance
 * tile is checked against the true squared distances, inner products and cosines in double
 * (every kind, sgemv / sgemm / plain loops, self tiles with the cancellation recomputed,
 * overflow to NaN or +inf), its row norms exactly.  k-NN selection is checked on small-integer
 * data (exact products) against a full sort by (key, index), for every path of the CPU kernel,
 * every distance kind, self exclusion and k beyond the database; the optimiser's update against
 * its formulas in double; the residual add, dropout and GeM pooling against references in double
 * and their backward operations against central differences of their forward operations (the
 * cross-backend gradient checks of those layers); backend memory, copies and the sticky error
 * through sm_be_sync.  main
 * runs all of it on every backend built in. */
#include "backend/backend.h"
#include "core/core.h"
#include "simile.h"
#include "testing.h"
#include <string.h>
#include <omp.h>

static sm_rng R;
static sm_backend *BE; /* the backend under test (main runs every one built in) */

static float *randf(int64_t n, float scale) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = scale * sm_rng_normal(&R);
    return p;
}
static double *dzeros(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }
/* A workspace of exactly the bytes a kernel asks for (NULL base for 0), so that ASan catches a
 * kernel that uses more. */
static sm_ws ws_of(size_t bytes) {
    sm_ws w = {bytes ? malloc(bytes) : NULL, bytes};
    return w;
}
static int irand(int lo, int hi) { return lo + (int)(sm_rng_uniform(&R) * (hi - lo + 1)) % (hi - lo + 1); }

/* normalised squared error of out (n) against ref (n) */
static double nmse(const float *out, const double *ref, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)out[i] - ref[i];
        e += d * d;
        s += ref[i] * ref[i];
    }
    return s > 0 ? e / s : e;
}
static int exact(const float *out, const double *ref, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (out[i] != (float)ref[i]) return 0;
    return 1;
}
#define TOL 1e-10

/* ---- products ----------------------------------------------------------------------------- */
static void ref_gemm(int ta, int tb, int m, int n, int k, double alpha, const float *A, int lda,
                     const float *B, int ldb, double beta, const float *C0, int ldc, double *C) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int t = 0; t < k; t++)
                s += (double)(ta ? A[(int64_t)t * lda + i] : A[(int64_t)i * lda + t]) *
                     (tb ? B[(int64_t)j * ldb + t] : B[(int64_t)t * ldb + j]);
            C[(int64_t)i * ldc + j] = alpha * s + (beta != 0 ? beta * C0[(int64_t)i * ldc + j] : 0);
        }
}

static void check_gemm(void) {
    const int sizes[] = {1, 2, 7, 33, 130};
    const float alphas[] = {1.0f, -2.0f}, betas[] = {0.0f, 1.0f, 0.5f};
    int cases = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int si = 0; si < 5; si++)
                for (int sj = 0; sj < 5; sj++) {
                    int m = sizes[si], n = sizes[sj], k = sizes[(si + sj + ta) % 5];
                    float alpha = alphas[(si + tb) % 2], beta = betas[(sj + ta) % 3];
                    int pad = (si + sj) % 2 ? 3 : 0; /* leading dimensions wider than the rows */
                    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
                    float *A = randf((int64_t)(ta ? k : m) * lda, 1), *B = randf((int64_t)(tb ? n : k) * ldb, 1);
                    float *C = randf((int64_t)m * ldc, 1), *C0 = malloc(sizeof(float) * (size_t)m * ldc);
                    memcpy(C0, C, sizeof(float) * (size_t)m * ldc);
                    double *ref = dzeros((int64_t)m * ldc);
                    ref_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C0, ldc, ref);
                    sm_be_gemm(BE, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
                    double e = 0, s = 0; /* over the m x n block only: the padding is not C's */
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++) {
                            double d = C[(int64_t)i * ldc + j] - ref[(int64_t)i * ldc + j];
                            e += d * d;
                            s += ref[(int64_t)i * ldc + j] * ref[(int64_t)i * ldc + j];
                        }
                    CHECK_MSG(e <= TOL * (s > 0 ? s : 1), "gemm ta=%d tb=%d %dx%dx%d: nmse %g", ta, tb, m, n, k,
                              s > 0 ? e / s : e);
                    int pads_kept = 1;
                    for (int i = 0; i < m; i++)
                        for (int j = n; j < ldc; j++) pads_kept &= C[(int64_t)i * ldc + j] == C0[(int64_t)i * ldc + j];
                    CHECK_MSG(pads_kept, "gemm wrote outside C's m x n block");
                    cases++;
                    free(A); free(B); free(C); free(C0); free(ref);
                }
    /* gemv, both orientations */
    for (int ta = 0; ta < 2; ta++)
        for (int si = 0; si < 5; si++) {
            int m = sizes[si], n = sizes[(si + 2) % 5], lda = n + ta;
            float *A = randf((int64_t)m * lda, 1), *x = randf(ta ? m : n, 1), *y = randf(ta ? n : m, 1);
            int ny = ta ? n : m;
            double *ref = dzeros(ny);
            for (int i = 0; i < ny; i++) {
                double s = 0;
                for (int t = 0; t < (ta ? m : n); t++)
                    s += (double)(ta ? A[(int64_t)t * lda + i] : A[(int64_t)i * lda + t]) * x[t];
                ref[i] = -2.0 * s + 0.5 * y[i];
            }
            sm_be_gemv(BE, ta, m, n, -2.0f, A, lda, x, 1, 0.5f, y, 1);
            CHECK_MSG(nmse(y, ref, ny) <= TOL, "gemv ta=%d %dx%d: nmse %g", ta, m, n, nmse(y, ref, ny));
            free(A); free(x); free(y); free(ref);
        }
    /* A^T B with a long k: chunked (k >= 4096) and not; deterministic for any thread count */
    const int64_t ks[] = {1, 5, 300, 4097, 20000};
    for (int ki = 0; ki < 5; ki++) {
        int m = irand(1, 9), n = irand(1, 40);
        int64_t k = ks[ki];
        float *A = randf(k * m, 1), *B = randf(k * n, 1), *C1 = malloc(sizeof(float) * (size_t)m * n),
              *C2 = malloc(sizeof(float) * (size_t)m * n);
        double *ref = dzeros((int64_t)m * n);
        ref_gemm(1, 0, m, n, (int)k, 1.0, A, m, B, n, 0.0, NULL, n, ref);
        sm_ws w = ws_of(sm_be_gemm_at_b_ws(BE, m, n, k));
        sm_set_num_threads(1);
        sm_be_gemm_at_b(BE, m, n, k, A, m, B, n, C1, n, &w);
        sm_set_num_threads(2);
        sm_be_gemm_at_b(BE, m, n, k, A, m, B, n, C2, n, &w);
        free(w.base);
        CHECK_MSG(nmse(C2, ref, (int64_t)m * n) <= TOL, "gemm_at_b %dx%d k=%lld: nmse %g", m, n, (long long)k,
                  nmse(C2, ref, (int64_t)m * n));
        CHECK_MSG(!memcmp(C1, C2, sizeof(float) * (size_t)m * n), "gemm_at_b k=%lld: 1 and 2 threads differ",
                  (long long)k);
        free(A); free(B); free(C1); free(C2); free(ref);
    }
    printf("products: %d gemm cases, gemv, gemm_at_b\n", cases);
}

/* ---- convolution unfolding ----------------------------------------------------------------- */
typedef struct { int n, h, w, c, k, s, p; } conv_shape;
static const conv_shape conv_shapes[] = {
    {1, 1, 1, 1, 1, 1, 0}, {1, 5, 7, 3, 3, 1, 1}, {2, 8, 8, 1, 3, 2, 1}, {3, 6, 5, 4, 2, 2, 0},
    {1, 9, 9, 3, 5, 1, 2}, {2, 4, 4, 2, 1, 1, 0}, {1, 7, 3, 3, 3, 3, 2}, {4, 3, 3, 5, 3, 1, 0},
};

static void ref_im2col(const float *x, const conv_shape *S, int oh, int ow, double *col) {
    int64_t K = (int64_t)S->k * S->k * S->c, r = 0;
    for (int b = 0; b < S->n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++, r++)
                for (int ky = 0; ky < S->k; ky++)
                    for (int kx = 0; kx < S->k; kx++)
                        for (int ch = 0; ch < S->c; ch++) {
                            int iy = oy * S->s - S->p + ky, ix = ox * S->s - S->p + kx;
                            int in = iy >= 0 && iy < S->h && ix >= 0 && ix < S->w;
                            col[r * K + ((int64_t)ky * S->k + kx) * S->c + ch] =
                                in ? x[(((int64_t)b * S->h + iy) * S->w + ix) * S->c + ch] : 0.0;
                        }
}

static void check_unfold(void) {
    for (size_t i = 0; i < sizeof conv_shapes / sizeof conv_shapes[0]; i++) {
        const conv_shape *S = &conv_shapes[i];
        int oh = (S->h + 2 * S->p - S->k) / S->s + 1, ow = (S->w + 2 * S->p - S->k) / S->s + 1;
        int64_t nx = (int64_t)S->n * S->h * S->w * S->c, ncol = (int64_t)S->n * oh * ow * S->k * S->k * S->c;
        float *x = randf(nx, 1), *col = malloc(sizeof(float) * (size_t)ncol), *col1 = malloc(sizeof(float) * (size_t)ncol);
        double *ref = dzeros(ncol);
        ref_im2col(x, S, oh, ow, ref);
        sm_be_im2col(BE, x, S->n, S->h, S->w, S->c, S->k, S->s, S->p, oh, ow, col);
        sm_be_im2col1(BE, x, S->n, S->h, S->w, S->c, S->k, S->s, S->p, oh, ow, col1);
        CHECK_MSG(exact(col, ref, ncol), "im2col shape %zu differs from the reference", i);
        CHECK_MSG(exact(col1, ref, ncol), "im (single-threaded)2col shape %zu differs from the reference", i);
        /* col2im is im2col's adjoint: <im2col(x), g> = <x, col2im(g)> */
        float *g = randf(ncol, 1), *dx = randf(nx, 1);
        sm_be_col2im(BE, g, S->n, S->h, S->w, S->c, S->k, S->s, S->p, oh, ow, dx);
        double *rdx = dzeros(nx);
        {
            int64_t K = (int64_t)S->k * S->k * S->c, r = 0;
            for (int b = 0; b < S->n; b++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++, r++)
                        for (int ky = 0; ky < S->k; ky++)
                            for (int kx = 0; kx < S->k; kx++)
                                for (int ch = 0; ch < S->c; ch++) {
                                    int iy = oy * S->s - S->p + ky, ix = ox * S->s - S->p + kx;
                                    if (iy >= 0 && iy < S->h && ix >= 0 && ix < S->w)
                                        rdx[(((int64_t)b * S->h + iy) * S->w + ix) * S->c + ch] +=
                                            g[r * K + ((int64_t)ky * S->k + kx) * S->c + ch];
                                }
        }
        CHECK_MSG(nmse(dx, rdx, nx) <= TOL, "col2im shape %zu: nmse %g", i, nmse(dx, rdx, nx));
        double lhs = 0, rhs = 0;
        for (int64_t t = 0; t < ncol; t++) lhs += (double)col[t] * g[t];
        for (int64_t t = 0; t < nx; t++) rhs += (double)x[t] * dx[t];
        CHECK_MSG(fabs(lhs - rhs) <= 1e-4 * (fabs(lhs) + 1), "col2im is not im2col's adjoint (shape %zu): %g vs %g", i, lhs, rhs);
        free(x); free(col); free(col1); free(ref); free(g); free(dx); free(rdx);
    }
}

/* The direct 1-channel convolution (conv1ch, conv1ch1, conv1ch_dw) against the double reference
 * and, bit for bit, against the im2col + gemm / gemm_at_b path it replaces (the same fma chains):
 * shapes with padding, stride, k = 1 to 8, channel counts around its 32-channel blocks, and
 * batches whose rows make gemm_at_b chunk (>= 4096 rows) or not; 1 and 2 threads.  Zero and
 * negative-zero inputs and a huge value are mixed in so that the padded cells' fma(0, w, acc)
 * terms matter to the bits. */
static void check_conv1ch(void) {
    typedef struct { int n, h, w, k, s, p, oc; } shape1;
    const shape1 shapes[] = {{1, 1, 1, 1, 1, 0, 1},   {2, 5, 7, 3, 1, 1, 5},     {3, 8, 8, 3, 2, 1, 33},
                             {1, 9, 6, 5, 1, 2, 32},  {2, 4, 4, 2, 2, 0, 70},    {1, 7, 3, 3, 3, 2, 3},
                             {6, 28, 28, 3, 1, 1, 32}, {1, 11, 10, 8, 1, 3, 17}, {9, 28, 28, 3, 1, 1, 40},
                             {1, 8, 2100, 8, 4, 0, 3} /* rows wider than the kernels' padded-row window */,
                             {1, 120, 6000, 3, 50, 1, 3} /* the same, narrow enough for conv1ch1_pool */};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape1 *S = &shapes[i];
        const conv_shape C = {S->n, S->h, S->w, 1, S->k, S->s, S->p};
        const int oh = (S->h + 2 * S->p - S->k) / S->s + 1, ow = (S->w + 2 * S->p - S->k) / S->s + 1, K = S->k * S->k;
        const int64_t nx = (int64_t)S->n * S->h * S->w, rows = (int64_t)S->n * oh * ow;
        float *x = randf(nx, 1), *W = randf((int64_t)S->oc * K, 1), *dy = randf(rows * S->oc, 1);
        for (int64_t t = 0; t < nx; t += 7) x[t] = t % 3 ? 0.0f : -0.0f;
        if (nx > 5) x[5] = 1e30f;
        float *col = malloc(sizeof(float) * (size_t)(rows * K));
        sm_be_im2col(BE, x, S->n, S->h, S->w, 1, S->k, S->s, S->p, oh, ow, col);
        float *yg = malloc(sizeof(float) * (size_t)(rows * S->oc)), *y = malloc(sizeof(float) * (size_t)(rows * S->oc)),
              *y1 = malloc(sizeof(float) * (size_t)(rows * S->oc));
        sm_be_gemm(BE, 0, 1, (int)rows, S->oc, K, 1.0f, col, K, W, K, 0.0f, yg, S->oc);
        sm_set_num_threads(2);
        sm_be_conv1ch(BE, x, S->n, S->h, S->w, S->k, S->s, S->p, oh, ow, W, S->oc, y);
        sm_be_conv1ch1(BE, x, S->n, S->h, S->w, S->k, S->s, S->p, oh, ow, W, S->oc, y1);
        CHECK_MSG(!memcmp(y, yg, sizeof(float) * (size_t)(rows * S->oc)), "conv1ch shape %zu: not the bits of im2col + gemm", i);
        CHECK_MSG(!memcmp(y1, yg, sizeof(float) * (size_t)(rows * S->oc)), "conv1ch1 shape %zu: not the bits of im2col + gemm", i);
        /* conv1ch1_pool: the bits of conv1ch1 then maxpool_bias_act1 (2x2 stride 2), with and
         * without the bias and the ReLU */
        if (oh >= 2 && ow >= 2 && ow <= 128) {
            const int ph = (oh - 2) / 2 + 1, pw = (ow - 2) / 2 + 1;
            const int64_t np = (int64_t)S->n * ph * pw * S->oc;
            float *bias = randf(S->oc, 1), *zr = malloc(sizeof(float) * (size_t)np), *z = malloc(sizeof(float) * (size_t)np);
            for (int v = 0; v < 4; v++) {
                const float *bv = v & 1 ? bias : NULL;
                const int relu = v >> 1;
                sm_be_maxpool_bias_act1(BE, y1, S->n, oh, ow, S->oc, 2, 2, 0, ph, pw, bv, relu, zr);
                sm_be_conv1ch1_pool(BE, x, S->n, S->h, S->w, S->k, S->s, S->p, oh, ow, W, S->oc, bv, relu, z);
                CHECK_MSG(!memcmp(z, zr, sizeof(float) * (size_t)np), "conv1ch1_pool shape %zu bias %d relu %d: not the "
                          "bits of conv1ch1 + maxpool_bias_act1", i, v & 1, relu);
            }
            free(bias); free(zr); free(z);
        }
        double *rcol = dzeros(rows * K), *ry = dzeros(rows * S->oc), *rdw = dzeros((int64_t)S->oc * K);
        ref_im2col(x, &C, oh, ow, rcol);
        for (int64_t r = 0; r < rows; r++)
            for (int o = 0; o < S->oc; o++) {
                double a = 0;
                for (int t = 0; t < K; t++) a += rcol[r * K + t] * W[(int64_t)o * K + t];
                ry[r * S->oc + o] = a;
            }
        CHECK_MSG(nmse(y, ry, rows * S->oc) <= TOL, "conv1ch shape %zu: nmse %g", i, nmse(y, ry, rows * S->oc));
        /* the weight gradient: the bits of gemm_at_b on the unfolded input, on 1 and 2 threads */
        float *dwg = malloc(sizeof(float) * (size_t)(S->oc * K)), *dw1 = malloc(sizeof(float) * (size_t)(S->oc * K)),
              *dw2 = malloc(sizeof(float) * (size_t)(S->oc * K));
        size_t wb = sm_be_gemm_at_b_ws(BE, S->oc, K, rows), cb = sm_be_conv1ch_dw_ws(BE, S->oc, S->k, rows);
        sm_ws wg = ws_of(wb), wc = ws_of(cb);
        sm_be_gemm_at_b(BE, S->oc, K, rows, dy, S->oc, col, K, dwg, K, &wg);
        sm_set_num_threads(1);
        sm_be_conv1ch_dw(BE, x, dy, S->n, S->h, S->w, S->k, S->s, S->p, oh, ow, S->oc, dw1, &wc);
        sm_set_num_threads(2);
        sm_be_conv1ch_dw(BE, x, dy, S->n, S->h, S->w, S->k, S->s, S->p, oh, ow, S->oc, dw2, &wc);
        CHECK_MSG(!memcmp(dw1, dwg, sizeof(float) * (size_t)(S->oc * K)), "conv1ch_dw shape %zu: not the bits of gemm_at_b", i);
        CHECK_MSG(!memcmp(dw2, dw1, sizeof(float) * (size_t)(S->oc * K)), "conv1ch_dw shape %zu: 1 and 2 threads differ", i);
        for (int o = 0; o < S->oc; o++)
            for (int t = 0; t < K; t++) {
                double a = 0;
                for (int64_t r = 0; r < rows; r++) a += (double)dy[r * S->oc + o] * rcol[r * K + t];
                rdw[(int64_t)o * K + t] = a;
            }
        CHECK_MSG(nmse(dw1, rdw, (int64_t)S->oc * K) <= TOL, "conv1ch_dw shape %zu: nmse %g", i,
                  nmse(dw1, rdw, (int64_t)S->oc * K));
        free(wg.base); free(wc.base);
        free(x); free(W); free(dy); free(col); free(yg); free(y); free(y1); free(rcol); free(ry); free(rdw);
        free(dwg); free(dw1); free(dw2);
    }
    printf("conv1ch: direct 1-channel convolution, the bits of im2col + gemm (pooled: of the separate passes)\n");
}

/* Winograd F(2x2, 3x3) (wino3_weights, wino3_1) against a direct 3x3 stride-1 pad-1 convolution
 * in double, then the bias, ReLU and 2x2 pool as wino3_1 applies them: cnn-s's two layers, odd
 * sizes (the last tile row and column half outside), channel counts that are not multiples of 8,
 * n = 1 and batches of several chunks of tiles.  Winograd rounds differently from a direct sum:
 * its error is a few float roundings of the transformed terms, WINO_TOL in normalised squared
 * error (4e-14 measured on 2 x 14x14x32 -> 64; one sign wrong in the input transform gave 0.2-0.45). */
#define WINO_TOL 1e-11
typedef struct { int n, h, w, c, oc, pool, bias, relu; } wino_shape;
static const wino_shape wino_shapes[] = {
    {1, 1, 1, 1, 1, 0, 0, 0},     {2, 14, 14, 32, 64, 0, 1, 1}, {3, 7, 7, 64, 128, 0, 1, 1},
    {8, 14, 14, 32, 64, 1, 1, 1}, {1, 5, 3, 3, 5, 0, 1, 0},     {2, 6, 9, 7, 13, 1, 0, 1},
    {1, 7, 7, 64, 128, 1, 1, 0},  {5, 3, 2, 17, 9, 0, 0, 1},    {9, 7, 7, 64, 128, 0, 0, 0},
    {1, 2, 2, 1, 3, 1, 1, 1},
};

/* y (n, oh, ow, oc) of wino_shape S in double: conv, then pool (max), then + b, then relu */
static void ref_wino(const wino_shape *S, const float *x, const float *W, const float *b, double *y) {
    const int oh = S->pool ? S->h / 2 : S->h, ow = S->pool ? S->w / 2 : S->w, f = S->pool ? 2 : 1;
    for (int img = 0; img < S->n; img++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int o = 0; o < S->oc; o++) {
                    double best = 0;
                    for (int q = 0; q < f * f; q++) {
                        const int cy = oy * f + q / f, cx = ox * f + q % f;
                        double a = 0;
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                const int iy = cy - 1 + ky, ix = cx - 1 + kx;
                                if (iy < 0 || iy >= S->h || ix < 0 || ix >= S->w) continue;
                                for (int ch = 0; ch < S->c; ch++)
                                    a += (double)x[(((int64_t)img * S->h + iy) * S->w + ix) * S->c + ch] *
                                         W[(((int64_t)o * 3 + ky) * 3 + kx) * S->c + ch];
                            }
                        if (q == 0 || a > best) best = a;
                    }
                    if (b) best += b[o];
                    if (S->relu && best < 0) best = 0;
                    y[(((int64_t)img * oh + oy) * ow + ox) * S->oc + o] = best;
                }
}

/* The output of wino_shape S (malloc'ed) on the path in use, and its count in *ny. */
static float *run_wino(const wino_shape *S, const float *x, const float *W, const float *b, int64_t *ny) {
    const int oh = S->pool ? S->h / 2 : S->h, ow = S->pool ? S->w / 2 : S->w;
    *ny = (int64_t)S->n * oh * ow * S->oc;
    float *U = malloc(sizeof(float) * (size_t)(16 * S->c * S->oc)), *y = malloc(sizeof(float) * (size_t)(*ny + 1));
    sm_be_wino3_weights(BE, W, S->oc, S->c, 0, U);
    size_t bytes = sm_be_wino3_1_ws(BE, S->n, S->h, S->w, S->c, S->oc, S->pool);
    CHECK_MSG(bytes <= (size_t)S->n * sm_be_wino3_1_ws(BE, 1, S->h, S->w, S->c, S->oc, S->pool),
              "wino3_1: the workspace for %d images exceeds %d times that of one", S->n, S->n);
    sm_ws ws = ws_of(bytes);
    sm_be_wino3_1(BE, x, S->n, S->h, S->w, S->c, U, S->oc, b, S->relu, S->pool, y, &ws);
    free(ws.base);
    free(U);
    return y;
}

static void check_wino(void) {
    const int threads = omp_get_max_threads();
    for (size_t i = 0; i < sizeof wino_shapes / sizeof wino_shapes[0]; i++) {
        const wino_shape *S = &wino_shapes[i];
        float *x = randf((int64_t)S->n * S->h * S->w * S->c, 1), *W = randf((int64_t)S->oc * 9 * S->c, 0.3f);
        float *b = S->bias ? randf(S->oc, 1) : NULL;
        int64_t ny;
        float *y = run_wino(S, x, W, b, &ny);
        double *ry = dzeros(ny);
        ref_wino(S, x, W, b, ry);
        const double e = nmse(y, ry, ny);
        CHECK_MSG(e <= WINO_TOL, "wino3_1 shape %zu: nmse %g", i, e);
        if (i == 1) printf("wino3_1: nmse %.3g on 2 x 14x14x32 -> 64\n", e);
        if (!S->pool) { /* the threaded form: the bits of wino3_1 (chunks change no bit), 1 and 2 threads */
            float *U = malloc(sizeof(float) * (size_t)(16 * S->c * S->oc)), *yt = malloc(sizeof(float) * (size_t)ny);
            sm_be_wino3_weights(BE, W, S->oc, S->c, 0, U);
            for (int t = 1; t <= 2; t++) {
                sm_set_num_threads(t);
                sm_ws ws = ws_of(sm_be_wino3_ws(BE, S->n, S->h, S->w, S->c, S->oc));
                memset(yt, 0xff, sizeof(float) * (size_t)ny);
                sm_be_wino3(BE, x, S->n, S->h, S->w, S->c, U, S->oc, b, S->relu, yt, &ws);
                CHECK_MSG(!memcmp(yt, y, sizeof(float) * (size_t)ny), "wino3 shape %zu, %d threads: not the bits of wino3_1", i, t);
                free(ws.base);
            }
            /* the input gradient of the convolution by W: dy (n, h, w, oc) -> dx (n, h, w, c), W
             * rotated and its channels swapped (flip), against the adjoint sum in double */
            float *dy = randf((int64_t)S->n * S->h * S->w * S->oc, 1);
            const int64_t nx = (int64_t)S->n * S->h * S->w * S->c;
            float *dx = malloc(sizeof(float) * (size_t)nx);
            double *rdx = dzeros(nx);
            sm_be_wino3_weights(BE, W, S->oc, S->c, 1, U);
            sm_ws ws = ws_of(sm_be_wino3_ws(BE, S->n, S->h, S->w, S->oc, S->c));
            sm_be_wino3(BE, dy, S->n, S->h, S->w, S->oc, U, S->c, NULL, 0, dx, &ws);
            for (int img = 0; img < S->n; img++)
                for (int oy = 0; oy < S->h; oy++)
                    for (int ox = 0; ox < S->w; ox++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                const int iy = oy - 1 + ky, ix = ox - 1 + kx;
                                if (iy < 0 || iy >= S->h || ix < 0 || ix >= S->w) continue;
                                for (int o = 0; o < S->oc; o++) {
                                    const double g = dy[(((int64_t)img * S->h + oy) * S->w + ox) * S->oc + o];
                                    for (int ch = 0; ch < S->c; ch++)
                                        rdx[(((int64_t)img * S->h + iy) * S->w + ix) * S->c + ch] +=
                                            g * W[(((int64_t)o * 3 + ky) * 3 + kx) * S->c + ch];
                                }
                            }
            CHECK_MSG(nmse(dx, rdx, nx) <= WINO_TOL, "wino3 input gradient shape %zu: nmse %g", i, nmse(dx, rdx, nx));
            sm_set_num_threads(threads);
            free(ws.base); free(U); free(yt); free(dy); free(dx); free(rdx);
        }
        free(x); free(W); free(b); free(y); free(ry);
    }
}

/* wino3_1 gives the same bits on the scalar and avx2 paths of the products (main runs the
 * reference check above on each path; this compares them). */
static void check_wino_paths(void) {
    if (sm_set_isa("avx2") == SM_ERR_UNSUPPORTED) {
        printf("wino3_1 paths: this CPU lacks avx2, skipped\n");
        CHECK_OK(sm_set_isa("auto"));
        return;
    }
    int differ = 0;
    const int cases = (int)(sizeof wino_shapes / sizeof wino_shapes[0]);
    for (int i = 0; i < cases; i++) {
        const wino_shape *S = &wino_shapes[i];
        float *x = randf((int64_t)S->n * S->h * S->w * S->c, 1), *W = randf((int64_t)S->oc * 9 * S->c, 0.3f);
        float *b = S->bias ? randf(S->oc, 1) : NULL;
        int64_t ny;
        CHECK_OK(sm_set_isa("scalar"));
        float *y0 = run_wino(S, x, W, b, &ny);
        CHECK_OK(sm_set_isa("avx2"));
        float *y1 = run_wino(S, x, W, b, &ny);
        differ += memcmp(y0, y1, sizeof(float) * (size_t)ny) != 0;
        free(x); free(W); free(b); free(y0); free(y1);
    }
    CHECK_MSG(differ == 0, "wino3_1: %d of %d shapes differ between the scalar and avx2 paths", differ, cases);
    printf("wino3_1: %d shapes, %d differ between the scalar and avx2 paths\n", cases, differ);
    CHECK_OK(sm_set_isa("auto"));
}

/* ---- row-wise and channel-wise ops ----------------------------------------------------------- */
static void check_rows(void) {
    const int64_t ms[] = {1, 3, 511, 512, 513, 2000};
    const int cs[] = {1, 3, 64};
    for (int mi = 0; mi < 6; mi++)
        for (int ci = 0; ci < 3; ci++) {
            int64_t m = ms[mi];
            int c = cs[ci];
            int64_t nv = m * c;
            /* bias: both implementations, and the fused relu */
            float *y0 = randf(nv, 1), *b = randf(c, 1), *y = malloc(sizeof(float) * (size_t)nv), *y1 = malloc(sizeof(float) * (size_t)nv);
            double *ref = dzeros(nv), *refr = dzeros(nv);
            for (int64_t i = 0; i < nv; i++) { ref[i] = (double)(y0[i] + b[i % c]); refr[i] = ref[i] > 0 ? ref[i] : 0; }
            memcpy(y, y0, sizeof(float) * (size_t)nv);
            sm_be_add_bias(BE, y, b, m, c);
            CHECK_MSG(exact(y, ref, nv), "add_bias m=%lld c=%d", (long long)m, c);
            memcpy(y1, y0, sizeof(float) * (size_t)nv);
            sm_be_bias_act1(BE, y1, b, m, c, 0);
            CHECK_MSG(exact(y1, ref, nv), "bias_act (single-threaded) m=%lld c=%d", (long long)m, c);
            memcpy(y1, y0, sizeof(float) * (size_t)nv);
            sm_be_bias_act1(BE, y1, b, m, c, 1);
            CHECK_MSG(exact(y1, refr, nv), "bias_act (single-threaded) relu m=%lld c=%d", (long long)m, c);
            /* relu forward / backward */
            float *dy = randf(nv, 1), *dx = malloc(sizeof(float) * (size_t)nv);
            sm_be_relu_forward(BE, y0, y, nv);
            for (int64_t i = 0; i < nv; i++) ref[i] = y0[i] > 0 ? y0[i] : 0;
            CHECK(exact(y, ref, nv));
            sm_be_relu_backward(BE, y, dy, dx, nv);
            for (int64_t i = 0; i < nv; i++) ref[i] = y[i] > 0 ? dy[i] : 0;
            CHECK(exact(dx, ref, nv));
            /* column sums: reference, and the same bits on 1 and 2 threads */
            float *s1 = malloc(sizeof(float) * (size_t)c), *s2 = malloc(sizeof(float) * (size_t)c);
            double *rs = dzeros(c);
            for (int64_t i = 0; i < nv; i++) rs[i % c] += dy[i];
            sm_ws w = ws_of(sm_be_sum_rows_ws(BE, m, c));
            sm_set_num_threads(1);
            sm_be_sum_rows(BE, dy, m, c, s1, &w);
            sm_set_num_threads(2);
            sm_be_sum_rows(BE, dy, m, c, s2, &w);
            free(w.base);
            CHECK_MSG(nmse(s2, rs, c) <= TOL, "sum_rows m=%lld c=%d: nmse %g", (long long)m, c, nmse(s2, rs, c));
            CHECK_MSG(!memcmp(s1, s2, sizeof(float) * (size_t)c), "sum_rows: 1 and 2 threads differ");
            free(y0); free(b); free(y); free(y1); free(ref); free(refr); free(dy); free(dx); free(s1); free(s2); free(rs);
        }
}

/* batch norm over rows: training statistics, inference, backward (also fused with relu) */
static void check_bn(void) {
    const int64_t ms[] = {1, 2, 7, 513, 1500};
    const int cs[] = {1, 3, 32, 1100}; /* 1100: more than one block of the inference kernel */
    for (int mi = 0; mi < 5; mi++)
        for (int ci = 0; ci < 4; ci++)
            for (int relu = 0; relu < 2; relu++) {
                int64_t m = ms[mi];
                int c = cs[ci];
                int64_t nv = m * c;
                float *x = randf(nv, 2), *gamma = randf(c, 1), *beta = randf(c, 1);
                for (int64_t i = 0; i < nv; i++) x[i] += 0.5f * (float)(i % c); /* channel offsets */
                float eps = 1e-5f, mom = 0.1f;
                sm_ws w = ws_of(sm_be_bn_ws(BE, m, c));
                float *rm[2], *rv[2], *mean[2], *rstd[2], *y[2];
                for (int t = 0; t < 2; t++) {
                    rm[t] = malloc(sizeof(float) * (size_t)c); rv[t] = malloc(sizeof(float) * (size_t)c);
                    mean[t] = malloc(sizeof(float) * (size_t)c); rstd[t] = malloc(sizeof(float) * (size_t)c);
                    y[t] = malloc(sizeof(float) * (size_t)nv);
                    for (int j = 0; j < c; j++) { rm[t][j] = 0.1f * (float)j; rv[t][j] = 1.0f + 0.1f * (float)j; }
                    sm_set_num_threads(t + 1);
                    sm_be_bn_forward_train(BE, x, m, c, gamma, beta, eps, mom, rm[t], rv[t], mean[t], rstd[t], relu, y[t], &w);
                }
                CHECK_MSG(!memcmp(y[0], y[1], sizeof(float) * (size_t)nv) && !memcmp(rv[0], rv[1], sizeof(float) * (size_t)c),
                          "bn forward m=%lld c=%d: 1 and 2 threads differ", (long long)m, c);
                double *rmu = dzeros(c), *rvar = dzeros(c), *ry = dzeros(nv), *rrstd = dzeros(c), *rrv = dzeros(c);
                for (int j = 0; j < c; j++) {
                    double s = 0, q = 0;
                    for (int64_t i = 0; i < m; i++) s += x[i * c + j];
                    rmu[j] = s / (double)m;
                    for (int64_t i = 0; i < m; i++) q += (x[i * c + j] - rmu[j]) * (x[i * c + j] - rmu[j]);
                    rvar[j] = q / (double)m;
                    rrstd[j] = 1.0 / sqrt(rvar[j] + eps);
                    rrv[j] = 0.9 * (1.0 + 0.1 * j) + 0.1 * (m > 1 ? q / (double)(m - 1) : rvar[j]);
                    for (int64_t i = 0; i < m; i++) {
                        double v = gamma[j] * (x[i * c + j] - rmu[j]) * rrstd[j] + beta[j];
                        ry[i * c + j] = relu && v < 0 ? 0 : v;
                    }
                }
                /* rstd of a channel whose variance is ~0 (m = 1) is huge and meaningless: compare
                 * the outputs only where the variance is not tiny */
                if (m > 1) {
                    CHECK_MSG(nmse(mean[1], rmu, c) <= TOL, "bn mean m=%lld c=%d", (long long)m, c);
                    CHECK_MSG(nmse(rstd[1], rrstd, c) <= 1e-9, "bn rstd m=%lld c=%d: %g", (long long)m, c, nmse(rstd[1], rrstd, c));
                    CHECK_MSG(nmse(rv[1], rrv, c) <= 1e-9, "bn running var m=%lld c=%d", (long long)m, c);
                    CHECK_MSG(nmse(y[1], ry, nv) <= 1e-7, "bn y m=%lld c=%d relu=%d: nmse %g", (long long)m, c, relu,
                              nmse(y[1], ry, nv));
                }
                /* the same forward in pieces (SyncBN): the sums of two shards of the rows added, as
                 * ranks add theirs, then stats and normalize; then the backward's pieces */
                if (m > 1) {
                    double *s2 = dzeros(2 * c), *sh = dzeros(2 * c);
                    int64_t m0 = m / 2;
                    CHECK_OK(sm_be_bn_sums(BE, x, m0, c, s2, &w));
                    CHECK_OK(sm_be_bn_sums(BE, x + m0 * c, m - m0, c, sh, &w));
                    for (int j = 0; j < 2 * c; j++) s2[j] += sh[j];
                    float *prm = malloc(sizeof(float) * (size_t)c), *prv = malloc(sizeof(float) * (size_t)c);
                    float *pmean = malloc(sizeof(float) * (size_t)c), *prstd = malloc(sizeof(float) * (size_t)c);
                    float *py = malloc(sizeof(float) * (size_t)nv);
                    for (int j = 0; j < c; j++) { prm[j] = 0.1f * (float)j; prv[j] = 1.0f + 0.1f * (float)j; }
                    CHECK_OK(sm_be_bn_stats(BE, s2, m, c, eps, mom, prm, prv, pmean, prstd));
                    CHECK_OK(sm_be_bn_normalize(BE, x, m, c, gamma, beta, pmean, prstd, relu, py));
                    CHECK_MSG(nmse(pmean, rmu, c) <= TOL && nmse(prstd, rrstd, c) <= 1e-9 && nmse(prv, rrv, c) <= 1e-9 &&
                                  nmse(py, ry, nv) <= 1e-7,
                              "bn in pieces (two shards) m=%lld c=%d relu=%d", (long long)m, c, relu);
                    /* backward pieces against the one-call backward (same statistics) */
                    float *dy = randf(nv, 1), *dx1 = malloc(sizeof(float) * (size_t)nv), *dx2 = malloc(sizeof(float) * (size_t)nv);
                    float *dg = malloc(sizeof(float) * (size_t)c), *db = malloc(sizeof(float) * (size_t)c);
                    CHECK_OK(sm_be_bn_backward(BE, x, dy, m, c, gamma, beta, pmean, prstd, relu, dg, db, dx1, &w));
                    CHECK_OK(sm_be_bn_grad_sums(BE, x, dy, m0, c, gamma, beta, pmean, prstd, relu, s2, &w));
                    CHECK_OK(sm_be_bn_grad_sums(BE, x + m0 * c, dy + m0 * c, m - m0, c, gamma, beta, pmean, prstd,
                                                relu, sh, &w));
                    for (int j = 0; j < 2 * c; j++) s2[j] += sh[j];
                    double e = 0, sc = 0;
                    for (int j = 0; j < c; j++) {
                        e += (s2[j] - db[j]) * (s2[j] - db[j]) + (s2[c + j] - dg[j]) * (s2[c + j] - dg[j]);
                        sc += (double)db[j] * db[j] + (double)dg[j] * dg[j];
                    }
                    CHECK_MSG(e <= 1e-10 * (sc > 0 ? sc : 1), "bn_grad_sums (two shards) m=%lld c=%d: %g", (long long)m, c, e);
                    CHECK_OK(sm_be_bn_backward_dx(BE, x, dy, m, c, gamma, beta, pmean, prstd, relu, s2, m, dx2));
                    e = 0; sc = 0;
                    for (int64_t i = 0; i < nv; i++) {
                        e += ((double)dx1[i] - dx2[i]) * ((double)dx1[i] - dx2[i]);
                        sc += (double)gamma[i % c] * prstd[i % c] * dy[i] * gamma[i % c] * prstd[i % c] * dy[i];
                    }
                    CHECK_MSG(e <= 1e-10 * sc, "bn_backward_dx m=%lld c=%d relu=%d: %g of %g", (long long)m, c, relu, e, sc);
                    free(s2); free(sh); free(prm); free(prv); free(pmean); free(prstd); free(py);
                    free(dy); free(dx1); free(dx2); free(dg); free(db);
                }
                /* inference with the running statistics */
                float *yi = malloc(sizeof(float) * (size_t)nv), *yi1 = malloc(sizeof(float) * (size_t)nv);
                sm_be_bn_forward_infer(BE, x, m, c, gamma, beta, eps, rm[1], rv[1], relu, yi);
                sm_be_bn_infer1(BE, x, m, c, gamma, beta, eps, rm[1], rv[1], relu, yi1);
                CHECK_MSG(!memcmp(yi, yi1, sizeof(float) * (size_t)nv), "bn_infer (single-threaded) differs from bn_forward_infer");
                double *ryi = dzeros(nv);
                for (int64_t i = 0; i < nv; i++) {
                    int j = (int)(i % c);
                    double v = gamma[j] * (x[i] - rm[1][j]) / sqrt(rv[1][j] + eps) + beta[j];
                    ryi[i] = relu && v < 0 ? 0 : v;
                }
                CHECK_MSG(nmse(yi, ryi, nv) <= 1e-9, "bn inference m=%lld c=%d: %g", (long long)m, c, nmse(yi, ryi, nv));
                /* backward from the kernel's own statistics, against the reference formula:
                 * dbeta = sum dy', dgamma = sum dy' xhat, dx = gamma rstd (dy' - (dbeta + xhat dgamma) / m),
                 * dy' = dy masked by y > 0 when relu is fused */
                if (m > 1) {
                    float *dy = randf(nv, 1), *dx[2], *dg[2], *db[2];
                    for (int t = 0; t < 2; t++) {
                        dx[t] = malloc(sizeof(float) * (size_t)nv);
                        dg[t] = malloc(sizeof(float) * (size_t)c); db[t] = malloc(sizeof(float) * (size_t)c);
                        sm_set_num_threads(t + 1);
                        sm_be_bn_backward(BE, x, dy, m, c, gamma, beta, mean[1], rstd[1], relu, dg[t], db[t], dx[t], &w);
                    }
                    CHECK_MSG(!memcmp(dx[0], dx[1], sizeof(float) * (size_t)nv) && !memcmp(dg[0], dg[1], sizeof(float) * (size_t)c),
                              "bn backward m=%lld c=%d: 1 and 2 threads differ", (long long)m, c);
                    if (relu) { /* the kernels recompute the relu's mask from x: with dy = 1 the first sums
                                 * count it, which must be the stored output's > 0 exactly */
                        float *ones = malloc(sizeof(float) * (size_t)nv);
                        double *cnt = dzeros(2 * c);
                        for (int64_t i = 0; i < nv; i++) ones[i] = 1;
                        CHECK_OK(sm_be_bn_grad_sums(BE, x, ones, m, c, gamma, beta, mean[1], rstd[1], 1, cnt, &w));
                        int64_t bad = 0;
                        for (int j = 0; j < c; j++) {
                            int64_t pos = 0;
                            for (int64_t i = 0; i < m; i++) pos += y[1][i * c + j] > 0;
                            bad += cnt[j] != (double)pos;
                        }
                        CHECK_MSG(!bad, "bn backward m=%lld c=%d: the recomputed relu mask differs from the output's in %lld channels",
                                  (long long)m, c, (long long)bad);
                        free(ones); free(cnt);
                    }
                    double *rdb = dzeros(c), *rdg = dzeros(c), *rdx = dzeros(nv);
                    for (int j = 0; j < c; j++)
                        for (int64_t i = 0; i < m; i++) {
                            double d = relu && y[1][i * c + j] <= 0 ? 0 : dy[i * c + j];
                            double xh = (x[i * c + j] - (double)mean[1][j]) * rstd[1][j];
                            rdb[j] += d;
                            rdg[j] += d * xh;
                        }
                    for (int64_t i = 0; i < nv; i++) {
                        int j = (int)(i % c);
                        double d = relu && y[1][i] <= 0 ? 0 : dy[i];
                        double xh = (x[i] - (double)mean[1][j]) * rstd[1][j];
                        rdx[i] = gamma[j] * (double)rstd[1][j] * (d - (rdb[j] + xh * rdg[j]) / (double)m);
                    }
                    CHECK_MSG(nmse(db[1], rdb, c) <= TOL && nmse(dg[1], rdg, c) <= 1e-9, "bn dgamma/dbeta m=%lld c=%d",
                              (long long)m, c);
                    /* dx is a difference of terms of size gamma rstd dy that nearly cancel (for m = 2
                     * it is 0 exactly): its error is measured against the size of those terms */
                    double e = 0, scale = 0;
                    for (int64_t i = 0; i < nv; i++) {
                        int j = (int)(i % c);
                        double t = gamma[j] * (double)rstd[1][j] * dy[i];
                        e += (dx[1][i] - rdx[i]) * (dx[1][i] - rdx[i]);
                        scale += t * t;
                    }
                    CHECK_MSG(e <= 1e-10 * scale, "bn dx m=%lld c=%d relu=%d: error %g of %g", (long long)m, c, relu, e, scale);
                    for (int t = 0; t < 2; t++) { free(dx[t]); free(dg[t]); free(db[t]); }
                    free(dy); free(rdb); free(rdg); free(rdx);
                }
                for (int t = 0; t < 2; t++) { free(rm[t]); free(rv[t]); free(mean[t]); free(rstd[t]); free(y[t]); }
                free(x); free(gamma); free(beta); free(rmu); free(rvar); free(ry); free(rrstd); free(rrv); free(yi); free(yi1); free(ryi);
                free(w.base);
            }
}

/* ---- pooling and normalisation ------------------------------------------------------------- */
/* bn_forward_train_pool2: the bits of bn_forward_train then the 2x2 stride-2 maxpool_forward (its
 * y and arg), and the same statistics, with and without the relu, even and odd sizes (the odd
 * last row and column left out by the pool), channel counts with vector tails, and ties (equal
 * inputs in a window: the first cell wins) */
static void check_bn_pool(void) {
    const struct { int n, h, w, c; } S[] = {{2, 4, 4, 3}, {3, 7, 5, 16}, {1, 28, 28, 32}, {2, 6, 9, 19}};
    for (size_t si = 0; si < sizeof S / sizeof S[0]; si++)
        for (int relu = 0; relu < 2; relu++) {
            const int n = S[si].n, h = S[si].h, w = S[si].w, c = S[si].c, oh = h / 2, ow = w / 2;
            const int64_t m = (int64_t)n * h * w, mp = (int64_t)n * oh * ow * c;
            float *x = randf(m * c, 2.0f), *gamma = randf(c, 1.0f), *beta = randf(c, 1.0f);
            for (int64_t t = 0; t + c < m * c; t += 11) x[t + c] = x[t]; /* ties within windows */
            float rm[2][64], rv[2][64], mean[2][64], rstd[2][64];
            for (int t = 0; t < 2; t++)
                for (int j = 0; j < c; j++) rm[t][j] = 0.1f * (float)j, rv[t][j] = 1.0f, mean[t][j] = rstd[t][j] = 0;
            float *y = malloc(sizeof(float) * (size_t)(m * c)), *yp = malloc(sizeof(float) * (size_t)mp),
                  *yf = malloc(sizeof(float) * (size_t)mp);
            int32_t *ap = malloc(sizeof(int32_t) * (size_t)mp), *af = malloc(sizeof(int32_t) * (size_t)mp);
            sm_ws wsp = ws_of(sm_be_bn_ws(BE, m, c));
            sm_be_bn_forward_train(BE, x, m, c, gamma, beta, 1e-5f, 0.1f, rm[0], rv[0], mean[0], rstd[0], relu, y, &wsp);
            sm_be_maxpool_forward(BE, y, n, h, w, c, 2, 2, 0, oh, ow, yp, ap);
            sm_be_bn_forward_train_pool2(BE, x, n, h, w, c, gamma, beta, 1e-5f, 0.1f, rm[1], rv[1], mean[1], rstd[1], relu,
                                         oh, ow, yf, af, &wsp);
            CHECK_MSG(!memcmp(yp, yf, sizeof(float) * (size_t)mp) && !memcmp(ap, af, sizeof(int32_t) * (size_t)mp),
                      "bn_forward_train_pool2 shape %zu relu %d: not the bits of bn_forward_train + maxpool_forward", si,
                      relu);
            CHECK_MSG(!memcmp(rm[0], rm[1], sizeof(float) * (size_t)c) && !memcmp(rv[0], rv[1], sizeof(float) * (size_t)c) &&
                          !memcmp(mean[0], mean[1], sizeof(float) * (size_t)c) &&
                          !memcmp(rstd[0], rstd[1], sizeof(float) * (size_t)c),
                      "bn_forward_train_pool2 shape %zu relu %d: other statistics", si, relu);
            free(wsp.base);
            free(x); free(gamma); free(beta); free(y); free(yp); free(yf); free(ap); free(af);
        }
    printf("bn_forward_train_pool2: the bits of bn_forward_train + maxpool_forward\n");
}

static void check_pool(void) {
    /* the last four are padded (padded cells never win): ResNet's stem 3/2 p1 on even and odd
     * sizes, a 2x2 window with p1, and a 1x1 input under a 3x3 window */
    const struct { int n, h, w, c, k, s, p; } P[] = {{1, 1, 1, 1, 1, 1, 0}, {2, 4, 4, 3, 2, 2, 0}, {1, 5, 7, 1, 3, 2, 0},
                                                      {3, 6, 6, 4, 3, 3, 0}, {1, 9, 5, 3, 2, 1, 0}, {2, 8, 8, 3, 3, 2, 1},
                                                      {1, 7, 5, 2, 3, 2, 1}, {2, 5, 4, 3, 2, 2, 1}, {1, 1, 1, 2, 3, 1, 1},
                                                      /* the 2x2 fast path: odd sizes, 32 channels with ties */
                                                      {2, 5, 7, 33, 2, 2, 0}, {3, 6, 8, 32, 2, 2, 0}};
    int64_t pool_clipped = 0; /* pooled values the fused relu set to 0: the relu case is exercised */
    for (size_t pi = 0; pi < sizeof P / sizeof P[0]; pi++) {
        int n = P[pi].n, h = P[pi].h, w = P[pi].w, c = P[pi].c, k = P[pi].k, s = P[pi].s, pd = P[pi].p;
        int oh = (h + 2 * pd - k) / s + 1, ow = (w + 2 * pd - k) / s + 1;
        int64_t nx = (int64_t)n * h * w * c, ny = (int64_t)n * oh * ow * c;
        float *x = randf(nx, 1), *y = malloc(sizeof(float) * (size_t)ny), *y1 = malloc(sizeof(float) * (size_t)ny);
        if (c == 32) /* ties (and -0 against 0): the first cell in window order must win */
            for (int64_t i = 0; i < nx; i++) x[i] = rintf(x[i]);
        int32_t *arg = malloc(sizeof(int32_t) * (size_t)ny);
        double *ref = dzeros(ny);
        int64_t *rarg = malloc(sizeof(int64_t) * (size_t)ny);
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int ch = 0; ch < c; ch++) {
                        int64_t o = (((int64_t)b * oh + oy) * ow + ox) * c + ch, best = -1;
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * s - pd + ky, ix = ox * s - pd + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                int64_t i = (((int64_t)b * h + iy) * w + ix) * c + ch;
                                if (best < 0 || x[i] > x[best]) best = i;
                            }
                        ref[o] = x[best];
                        rarg[o] = best;
                    }
        sm_be_maxpool_forward(BE, x, n, h, w, c, k, s, pd, oh, ow, y, arg);
        sm_be_maxpool1(BE, x, n, h, w, c, k, s, pd, oh, ow, y1);
        CHECK_MSG(exact(y, ref, ny), "maxpool_forward case %zu", pi);
        CHECK_MSG(exact(y1, ref, ny), "maxpool (single-threaded) case %zu", pi);
        { /* the pool with a bias and relu in its pass: the bits of maxpool1, then bias_act1 (a bias
           * of +-0.6 and 0 so that the relu clips; not from R, which the later checks draw on) */
            float *bb = malloc(sizeof(float) * (size_t)c), *ya = malloc(sizeof(float) * (size_t)ny),
                  *yb = malloc(sizeof(float) * (size_t)ny);
            for (int ch = 0; ch < c; ch++) bb[ch] = 0.6f * (float)(ch % 3 - 1);
            for (int v = 0; v < 4; v++) {
                const float *bv = v & 1 ? bb : NULL;
                const int relu = v >> 1;
                memcpy(ya, y1, sizeof(float) * (size_t)ny);
                sm_be_bias_act1(BE, ya, bv, (int64_t)n * oh * ow, c, relu);
                sm_be_maxpool_bias_act1(BE, x, n, h, w, c, k, s, pd, oh, ow, bv, relu, yb);
                CHECK_MSG(!memcmp(ya, yb, sizeof(float) * (size_t)ny), "maxpool_bias_act1 case %zu, bias %d relu %d",
                          pi, v & 1, relu);
                for (int64_t o = 0; o < ny && relu; o++) pool_clipped += yb[o] == 0.0f && y1[o] != 0.0f;
            }
            free(bb); free(ya); free(yb);
        }
        int args_ok = 1;
        for (int64_t o = 0; o < ny; o++) args_ok &= arg[o] == rarg[o];
        CHECK_MSG(args_ok, "maxpool argmax case %zu", pi);
        float *dy = randf(ny, 1), *dx = randf(nx, 1);
        double *rdx = dzeros(nx);
        for (int64_t o = 0; o < ny; o += 5) dy[o] = o % 2 ? -0.0f : 0.0f; /* 0 + -0 is +0 */
        for (int64_t o = 0; o < ny; o++) rdx[rarg[o]] += dy[o];
        float *dxs = calloc((size_t)nx, sizeof(float)); /* the float scatter: the bits to give */
        for (int64_t o = 0; o < ny; o++) dxs[arg[o]] += dy[o];
        sm_be_maxpool_backward(BE, dy, arg, n, h, w, c, k, s, pd, oh, ow, dx);
        CHECK_MSG(nmse(dx, rdx, nx) <= TOL, "maxpool_backward case %zu", pi);
        CHECK_MSG(!memcmp(dx, dxs, sizeof(float) * (size_t)nx), "maxpool_backward case %zu: not the scatter's bits", pi);
        free(dxs);
        /* global average pool, both implementations, and its backward */
        int hw = h * w;
        float *g = malloc(sizeof(float) * (size_t)n * c), *g1 = malloc(sizeof(float) * (size_t)n * c);
        double *rg = dzeros((int64_t)n * c);
        for (int b = 0; b < n; b++)
            for (int p = 0; p < hw; p++)
                for (int ch = 0; ch < c; ch++) rg[b * c + ch] += x[((int64_t)b * hw + p) * c + ch] / (double)hw;
        sm_be_gap_forward(BE, x, n, hw, c, g);
        sm_be_gap1(BE, x, n, hw, c, g1);
        CHECK_MSG(nmse(g, rg, (int64_t)n * c) <= TOL && nmse(g1, rg, (int64_t)n * c) <= TOL, "gap case %zu", pi);
        CHECK(!memcmp(g, g1, sizeof(float) * (size_t)n * c)); /* the same code image by image */
        float *gdy = randf((int64_t)n * c, 1);
        sm_be_gap_backward(BE, gdy, n, hw, c, dx);
        for (int64_t i = 0; i < nx; i++) rdx[i] = gdy[(i / ((int64_t)hw * c)) * c + i % c] / (double)hw;
        CHECK_MSG(nmse(dx, rdx, nx) <= TOL, "gap_backward case %zu", pi);
        /* average pool with the same window (no padding), both implementations, and its backward */
        if (pd == 0) {
        double *ra = dzeros(ny);
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int ch = 0; ch < c; ch++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++)
                                ra[(((int64_t)b * oh + oy) * ow + ox) * c + ch] +=
                                    x[(((int64_t)b * h + oy * s + ky) * w + ox * s + kx) * c + ch] / (double)(k * k);
        sm_be_avgpool_forward(BE, x, n, h, w, c, k, s, oh, ow, y);
        sm_be_avgpool1(BE, x, n, h, w, c, k, s, oh, ow, y1);
        CHECK_MSG(nmse(y, ra, ny) <= TOL && nmse(y1, ra, ny) <= TOL, "avgpool case %zu", pi);
        CHECK(!memcmp(y, y1, sizeof(float) * (size_t)ny));
        for (int64_t i = 0; i < nx; i++) rdx[i] = 0;
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int ch = 0; ch < c; ch++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++)
                                rdx[(((int64_t)b * h + oy * s + ky) * w + ox * s + kx) * c + ch] +=
                                    dy[(((int64_t)b * oh + oy) * ow + ox) * c + ch] / (double)(k * k);
        sm_be_avgpool_backward(BE, dy, n, h, w, c, k, s, oh, ow, dx);
        CHECK_MSG(nmse(dx, rdx, nx) <= TOL, "avgpool_backward case %zu", pi);
        free(ra);
        }
        free(x); free(y); free(y1); free(arg); free(ref); free(rarg); free(dy); free(dx); free(rdx);
        free(g); free(g1); free(rg); free(gdy);
    }
    CHECK_MSG(pool_clipped > 0, "maxpool_bias_act1: the relu never clipped a pooled value");
    /* L2 normalisation of rows, including a zero row (the clamp) */
    const int ds[] = {1, 3, 64, 129};
    for (int di = 0; di < 4; di++) {
        int n = 5, d = ds[di];
        float *x = randf((int64_t)n * d, 1), *y = malloc(sizeof(float) * (size_t)n * d), *norm = malloc(sizeof(float) * n);
        for (int j = 0; j < d; j++) x[2 * d + j] = 0; /* row 2 is zero */
        sm_be_l2norm_forward(BE, x, n, d, y, norm);
        double *ry = dzeros((int64_t)n * d);
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
            double nr = sqrt(s) < 1e-12 ? 1e-12 : sqrt(s);
            for (int j = 0; j < d; j++) ry[i * d + j] = x[i * d + j] / nr;
        }
        CHECK_MSG(nmse(y, ry, (int64_t)n * d) <= TOL, "l2norm forward d=%d", d);
        float *dy = randf((int64_t)n * d, 1), *dx = malloc(sizeof(float) * (size_t)n * d);
        sm_be_l2norm_backward(BE, y, norm, dy, n, d, dx);
        double *rdx = dzeros((int64_t)n * d);
        for (int i = 0; i < n; i++) {
            double s = 0, dot = 0;
            for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
            double nr = sqrt(s);
            for (int j = 0; j < d; j++) dot += ry[i * d + j] * dy[i * d + j];
            for (int j = 0; j < d; j++)
                rdx[i * d + j] = nr < 1e-12 ? dy[i * d + j] / 1e-12 : (dy[i * d + j] - dot * ry[i * d + j]) / nr;
        }
        CHECK_MSG(nmse(dx, rdx, (int64_t)n * d) <= 1e-9, "l2norm backward d=%d: %g", d, nmse(dx, rdx, (int64_t)n * d));
        free(x); free(y); free(norm); free(ry); free(dy); free(dx); free(rdx);
    }
}

/* ---- distance tiles ----------------------------------------------------------------------- */
/* Reference entry (i, j) of dist_tile in double: the true squared distance for SQL2, alpha
 * times the inner product or the cosine (0 against a zero row). */
static double ref_dist(int kind, double alpha, const float *q, const float *x, int d) {
    double dot = 0, nq = 0, nx = 0, l2 = 0;
    for (int t = 0; t < d; t++) {
        dot += (double)q[t] * x[t];
        nq += (double)q[t] * q[t];
        nx += (double)x[t] * x[t];
        l2 += ((double)q[t] - x[t]) * ((double)q[t] - x[t]);
    }
    if (kind == SM_K_DIST_SQL2) return l2;
    if (kind == SM_K_DIST_DOT) return alpha * dot;
    return nq > 0 && nx > 0 ? alpha * dot / sqrt(nq * nx) : 0.0;
}

static void check_dist(void) {
    /* row norms: the double sums rounded (exact), inverse 1/sqrt (0 for a zero row), threaded
     * (n d > 2^21) with the same bits as one thread */
    const int64_t ns[] = {1, 5, 40000};
    const int nds[] = {1, 3, 64};
    for (int ni = 0; ni < 3; ni++) {
        int64_t n = ns[ni];
        int d = nds[ni];
        float *x = randf(n * d, 1), *o1 = malloc(sizeof(float) * (size_t)n), *o2 = malloc(sizeof(float) * (size_t)n);
        for (int j = 0; j < d; j++) x[(n - 1) * d + j] = 0; /* the last row is zero */
        for (int inv = 0; inv < 2; inv++) {
            sm_set_num_threads(1);
            sm_be_row_norms(BE, x, n, d, inv, o1);
            sm_set_num_threads(2);
            sm_be_row_norms(BE, x, n, d, inv, o2);
            int bad = 0;
            for (int64_t i = 0; i < n; i++) {
                double s = 0;
                for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
                float want = inv ? (s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f) : (float)s;
                bad += o1[i] != want;
            }
            CHECK_MSG(bad == 0, "row_norms n=%lld d=%d inverse=%d: %d wrong", (long long)n, d, inv, bad);
            CHECK_MSG(!memcmp(o1, o2, sizeof(float) * (size_t)n), "row_norms n=%lld: 1 and 2 threads differ", (long long)n);
        }
        free(x); free(o1); free(o2);
    }

    /* tiles: every kind, BLAS (sgemv for one query, sgemm) and plain loops, leading dimension
     * wider than the rows (the pad untouched), a zero row, a threaded elementwise pass */
    const int shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {2, 1, 5}, {7, 33, 64}, {33, 130, 17}, {300, 257, 8}};
    const int kinds[] = {SM_K_DIST_SQL2, SM_K_DIST_DOT, SM_K_DIST_DOT, SM_K_DIST_COS};
    const float alphas[] = {0.0f, 1.0f, -1.0f, -1.0f};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int mq = shapes[si][0], md = shapes[si][1], d = shapes[si][2];
        int64_t ldo = md + 3;
        float *Q = randf((int64_t)mq * d, 1), *D = randf((int64_t)md * d, 1);
        if (md > 1) for (int t = 0; t < d; t++) D[(int64_t)(md - 1) * d + t] = 0; /* a zero row */
        float *qn = malloc(sizeof(float) * mq), *dn = malloc(sizeof(float) * md);
        float *out = malloc(sizeof(float) * (size_t)(mq * ldo)), *out2 = malloc(sizeof(float) * (size_t)(mq * ldo));
        double *ref = dzeros((int64_t)mq * md);
        float *got = malloc(sizeof(float) * (size_t)mq * md);
        for (int ki = 0; ki < 4; ki++) {
            int kind = kinds[ki];
            sm_be_row_norms(BE, Q, mq, d, kind == SM_K_DIST_COS, qn);
            sm_be_row_norms(BE, D, md, d, kind == SM_K_DIST_COS, dn);
            for (int i = 0; i < mq; i++)
                for (int j = 0; j < md; j++)
                    ref[(int64_t)i * md + j] = ref_dist(kind, alphas[ki], Q + (int64_t)i * d, D + (int64_t)j * d, d);
            for (int small = 0; small < 2; small++) {
                for (int64_t t = 0; t < mq * ldo; t++) out[t] = 777.0f;
                sm_be_dist_tile(BE, kind, small ? SM_K_DIST_SMALL : 0u, mq, md, d, alphas[ki], Q, qn, D, dn, out, ldo);
                int pads = 1, neg = 0;
                for (int i = 0; i < mq; i++) {
                    for (int j = 0; j < md; j++) {
                        got[(int64_t)i * md + j] = out[i * ldo + j];
                        neg += kind == SM_K_DIST_SQL2 && !(out[i * ldo + j] >= 0);
                    }
                    for (int64_t j = md; j < ldo; j++) pads &= out[i * ldo + j] == 777.0f;
                }
                double e = nmse(got, ref, (int64_t)mq * md);
                CHECK_MSG(e <= TOL, "dist_tile kind %d alpha %g %dx%dx%d small=%d: nmse %g", kind, alphas[ki], mq, md, d,
                          small, e);
                CHECK_MSG(pads, "dist_tile wrote beyond md");
                CHECK_MSG(neg == 0, "dist_tile SQL2: %d entries below 0 or NaN", neg);
                if (md > 1 && kind != SM_K_DIST_SQL2)
                    CHECK_MSG(out[md - 1] == 0.0f, "dist_tile kind %d: %g against a zero row", kind, out[md - 1]);
                /* the elementwise pass gives the same bits on 1 and 2 threads (plain products) */
                if (small) {
                    sm_set_num_threads(1);
                    sm_be_dist_tile(BE, kind, SM_K_DIST_SMALL, mq, md, d, alphas[ki], Q, qn, D, dn, out2, ldo);
                    sm_set_num_threads(2);
                    int same = 1;
                    for (int i = 0; i < mq; i++) same &= !memcmp(out + i * ldo, out2 + i * ldo, sizeof(float) * (size_t)md);
                    CHECK_MSG(same, "dist_tile kind %d %dx%d: 1 and 2 threads differ", kind, mq, md);
                }
            }
        }
        free(Q); free(D); free(qn); free(dn); free(out); free(out2); free(ref); free(got);
    }

    /* a set against itself: norms from the diagonal, a zero diagonal, and with RECOMPUTE the
     * near-duplicate pairs that the Gram form cancels to noise come out right */
    const int sn[] = {1, 2, 9, 130};
    for (int si = 0; si < 4; si++) {
        int n = sn[si], d = 48;
        float *X = randf((int64_t)n * d, 3);
        if (n > 2)
            for (int t = 0; t < d; t++) X[d + t] = X[t] + 1e-3f * (float)((t % 3) - 1); /* row 1 ~ row 0 */
        float *sq = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
        float *o = malloc(sizeof(float) * (size_t)n * n);
        double *ref = dzeros((int64_t)n * n);
        float *got = malloc(sizeof(float) * (size_t)n * n);
        sm_be_row_norms(BE, X, n, d, 0, want);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                ref[(int64_t)i * n + j] = ref_dist(SM_K_DIST_SQL2, 0, X + (int64_t)i * d, X + (int64_t)j * d, d);
        for (int rc = 0; rc < 2; rc++) {
            sm_be_dist_tile(BE, SM_K_DIST_SQL2, SM_K_DIST_SELF | (rc ? SM_K_DIST_RECOMPUTE : 0u), n, n, d, 0.0f, X, sq, X, NULL, o, n);
            int diag = 1;
            for (int i = 0; i < n; i++) diag &= o[(int64_t)i * n + i] == 0.0f;
            CHECK_MSG(diag, "dist_tile SELF n=%d: diagonal not 0", n);
            double se = 0, ss = 0;
            for (int i = 0; i < n; i++) { se += ((double)sq[i] - want[i]) * ((double)sq[i] - want[i]); ss += (double)want[i] * want[i]; }
            CHECK_MSG(se <= TOL * ss, "dist_tile SELF n=%d: norms from the diagonal off (%g)", n, se / ss);
            for (int64_t t = 0; t < (int64_t)n * n; t++) got[t] = o[t];
            CHECK_MSG(nmse(got, ref, (int64_t)n * n) <= TOL, "dist_tile SELF n=%d rc=%d: nmse %g", n, rc,
                      nmse(got, ref, (int64_t)n * n));
            if (rc && n > 2) {
                double r01 = ref[1];
                CHECK_MSG(fabs(o[1] - r01) <= 1e-5 * r01 && fabs(o[n] - r01) <= 1e-5 * r01,
                          "dist_tile RECOMPUTE: near pair %g %g, want %g", o[1], o[n], r01);
            }
        }
        free(X); free(sq); free(want); free(o); free(ref); free(got);
    }

    /* overflow: |x|^2 and <x, y> both inf give inf - inf = NaN; it stays NaN, or is +inf with
     * NAN_INF (plain loops and BLAS alike); entries against ordinary rows are +inf either way */
    {
        int d = 4, m = 3;
        float *A = randf((int64_t)m * d, 1), n2[3], o[9];
        for (int t = 0; t < d; t++) A[t] = 1e20f;
        sm_be_row_norms(BE, A, m, d, 0, n2);
        for (int small = 0; small < 2; small++) {
            unsigned f = small ? SM_K_DIST_SMALL : 0u;
            sm_be_dist_tile(BE, SM_K_DIST_SQL2, f, m, m, d, 0.0f, A, n2, A, n2, o, m);
            CHECK_MSG(isnan(o[0]) && isinf(o[1]) && o[1] > 0 && isinf(o[3]) && isfinite(o[4]), "overflow kept: %g %g %g %g",
                      o[0], o[1], o[3], o[4]);
            sm_be_dist_tile(BE, SM_K_DIST_SQL2, f | SM_K_DIST_NAN_INF, m, m, d, 0.0f, A, n2, A, n2, o, m);
            CHECK_MSG(isinf(o[0]) && o[0] > 0 && isfinite(o[4]), "overflow with NAN_INF: %g", o[0]);
        }
        free(A);
    }
    /* empty tiles write nothing */
    float sentinel = 5.0f;
    sm_be_dist_tile(BE, SM_K_DIST_SQL2, 0, 0, 3, 4, 0.0f, NULL, NULL, NULL, NULL, &sentinel, 3);
    sm_be_dist_tile(BE, SM_K_DIST_DOT, 0, 2, 0, 4, 1.0f, NULL, NULL, NULL, NULL, &sentinel, 1);
    CHECK(sentinel == 5.0f);
}


/* ---- k-NN selection ----------------------------------------------------------------------- */
/* Small integers make every inner product and squared distance exact in float, so the exact
 * top-k (ties to the lower index) is known: the reference sorts all candidates by (key, index). */
static float *randint(int64_t n, int lo, int hi) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (float)irand(lo, hi);
    return p;
}
typedef struct { double key; int64_t id; } refc;
static int refc_cmp(const void *a, const void *b) {
    const refc *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}
/* runs knn through the backend with a workspace of exactly its size (under ASan a kernel that
 * used more would be caught) */
static sm_status run_knn(int kind, const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                         int64_t self, float *dist, int64_t *idx) {
    sm_ws w = ws_of(sm_be_knn_ws(BE, n, nq, d, k, kind));
    sm_status st = sm_be_knn(BE, kind, db, n, q, nq, d, k, self, dist, idx, &w);
    free(w.base);
    return st;
}
/* knn_all (every row against the others, symmetric tiles) gives knn's results (q = db, self
 * excluded) bit for bit, for tight and roomy buffers, on 1 and 2 threads; knn is checked against
 * the double reference above.  Small integers make ties common, so the (key, id) order is tested. */
static void check_knn_all(void) {
    const struct { int64_t n; int d, k; } S[] = {{1, 3, 1}, {7, 5, 3}, {300, 8, 4}, {600, 16, 10},
                                               {1000, 8, 300}, {2100, 4, 260}, {5, 3, 9}, {777, 6, 1},
                                               {3000, 8, 20}, {5000, 16, 40}};
    const int kinds[] = {SM_K_DIST_SQL2, SM_K_DIST_DOT, SM_K_DIST_COS};
    for (size_t si = 0; si < sizeof S / sizeof S[0]; si++)
        for (int ki = 0; ki < 3; ki++) {
            int64_t n = S[si].n;
            int d = S[si].d, k = S[si].k, kind = kinds[ki];
            float *x = randint(n * d, -2, 2);
            for (int j = 0; j < d; j++) x[(n / 2) * d + j] = 0; /* a zero row (cosine 0) */
            float *dist = malloc(sizeof(float) * (size_t)(n * k));
            int64_t *idx = malloc(sizeof(int64_t) * (size_t)(n * k));
            CHECK_OK(run_knn(kind, x, n, x, n, d, k, 0, dist, idx));
            for (int round = 0; round < 3; round++) {
                int cap = round == 0 ? k + 17 + k / 4 : 2 * k + 32, nt = round == 2 ? 1 : 2;
                float *ad = malloc(sizeof(float) * (size_t)(n * cap));
                int32_t *ai = malloc(sizeof(int32_t) * (size_t)(n * cap));
                omp_set_num_threads(nt);
                sm_ws w = ws_of(sm_be_knn_all_ws(BE, n, d, k, cap, kind));
                CHECK_OK(sm_be_knn_all(BE, kind, x, n, d, k, cap, ad, ai, &w));
                free(w.base);
                omp_set_num_threads(2);
                int64_t bad = -1;
                for (int64_t i = 0; i < n && bad < 0; i++)
                    for (int r = 0; r < k; r++)
                        if (ai[i * cap + r] != idx[i * k + r] ||
                            memcmp(&ad[i * cap + r], &dist[i * k + r], sizeof(float))) {
                            fprintf(stderr, "knn_all n=%lld d=%d k=%d kind=%d cap=%d threads %d: row %lld rank %d got "
                                    "(%g, %d) knn (%g, %lld)\n", (long long)n, d, k, kind, cap, nt, (long long)i, r,
                                    ad[i * cap + r], ai[i * cap + r], dist[i * k + r], (long long)idx[i * k + r]);
                            bad = i;
                            break;
                        }
                CHECK_MSG(bad < 0, "knn_all shape %zu kind %d cap %d threads %d differs from knn", si, kind, cap, nt);
                free(ad); free(ai);
            }
            free(dist); free(idx); free(x);
        }
    /* a layout that fools the warm-up estimate: 8 blocks of 512 rows (knn_cpu.c's ALL_B; one
     * warm-up round, which pairs block 0 with block 7), blocks 0 and 7 near 0 and the others far;
     * a query of block 0 sees only block 7 in the warm-up, so its estimated threshold keeps about
     * half of its true 20 best, and the query is recomputed from every candidate */
    {
        int64_t n = 4096;
        int d = 2, k = 20, cap = 2 * k + 32;
        float *x = malloc(sizeof(float) * (size_t)(n * d));
        for (int64_t i = 0; i < n * d; i++) {
            int64_t blk = (i / d) / 512;
            x[i] = (float)irand(0, 1000) / 1000.0f + (blk == 0 || blk == 7 ? 0.0f : 10.0f);
        }
        float *dist = malloc(sizeof(float) * (size_t)(n * k));
        int64_t *idx = malloc(sizeof(int64_t) * (size_t)(n * k));
        float *ad = malloc(sizeof(float) * (size_t)(n * cap));
        int32_t *ai = malloc(sizeof(int32_t) * (size_t)(n * cap));
        CHECK_OK(run_knn(SM_K_DIST_SQL2, x, n, x, n, d, k, 0, dist, idx));
        sm_ws w = ws_of(sm_be_knn_all_ws(BE, n, d, k, cap, SM_K_DIST_SQL2));
        CHECK_OK(sm_be_knn_all(BE, SM_K_DIST_SQL2, x, n, d, k, cap, ad, ai, &w));
        free(w.base);
        int same = 1;
        for (int64_t i = 0; i < n; i++)
            for (int r = 0; r < k; r++)
                same &= ai[i * cap + r] == idx[i * k + r] && !memcmp(&ad[i * cap + r], &dist[i * k + r], sizeof(float));
        CHECK_MSG(same, "knn_all differs from knn where the warm-up estimate is too low");
        free(x); free(dist); free(idx); free(ad); free(ai);
    }
    /* statuses: a non-finite row, a short workspace, cap <= k + 16 */
    int64_t n = 600;
    int d = 8, k = 5, cap = 40;
    float *x = randint(n * d, -2, 2);
    float *ad = malloc(sizeof(float) * (size_t)(n * cap));
    int32_t *ai = malloc(sizeof(int32_t) * (size_t)(n * cap));
    size_t need = sm_be_knn_all_ws(BE, n, d, k, cap, SM_K_DIST_SQL2);
    sm_ws w = ws_of(need);
    x[(n - 1) * d + 2] = INFINITY;
    CHECK_STATUS(sm_be_knn_all(BE, SM_K_DIST_SQL2, x, n, d, k, cap, ad, ai, &w), SM_ERR_NUMERIC);
    x[(n - 1) * d + 2] = 1;
    CHECK_STATUS(sm_be_knn_all(BE, SM_K_DIST_SQL2, x, n, d, k, k + 16, ad, ai, &w), SM_ERR_INVALID);
    free(w.base);
    w = ws_of(need - 1);
    CHECK_STATUS(sm_be_knn_all(BE, SM_K_DIST_SQL2, x, n, d, k, cap, ad, ai, &w), SM_ERR_INVALID);
    free(w.base); free(x); free(ad); free(ai);
}

static void check_knn(void) {
    /* shapes that take each path of the CPU kernel: tiny loops, one tile with a lazy database
     * check, one query in the fused pass (one and two threads), a few
     * queries in one fused pass, many queries in per-thread blocks, whole-row
     * selection for k > 256 (one thread and several), and k larger than the database */
    const struct { int64_t n, nq; int d, k; } S[] = {
        {1, 1, 1, 1},     {7, 3, 5, 3},      {300, 5, 8, 4},    {4096, 4, 16, 1},  {4096, 9, 16, 10},
        {2000, 1100, 8, 1}, {2000, 1100, 8, 5}, {2500, 6, 4, 300}, {2100, 40, 4, 260}, {5, 2, 3, 9},
        {4096, 1, 16, 1}, {140000, 1, 16, 10}};
    const int kinds[] = {SM_K_DIST_SQL2, SM_K_DIST_DOT, SM_K_DIST_COS};
    for (size_t si = 0; si < sizeof S / sizeof S[0]; si++)
        for (int ki = 0; ki < 3; ki++)
            for (int self_on = 0; self_on < 2; self_on++) {
                int64_t n = S[si].n, nq = S[si].nq;
                int d = S[si].d, k = S[si].k, kind = kinds[ki];
                if (self_on && nq > n) continue;
                float *db = randint(n * d, -2, 2), *q = self_on ? db : randint(nq * d, -2, 2);
                for (int j = 0; j < d; j++) db[(n / 2) * d + j] = 0; /* a zero row (cosine 0) */
                float *dist = malloc(sizeof(float) * (size_t)(nq * k));
                int64_t *idx = malloc(sizeof(int64_t) * (size_t)(nq * k));
                CHECK_OK(run_knn(kind, db, n, q, nq, d, k, self_on ? 0 : -1, dist, idx));
                refc *c = malloc(sizeof(refc) * (size_t)n);
                int bad = 0;
                for (int64_t i = 0; i < nq && !bad; i++) {
                    int64_t m = 0;
                    double qq = 0;
                    for (int t = 0; t < d; t++) qq += (double)q[i * d + t] * q[i * d + t];
                    for (int64_t j = 0; j < n; j++) {
                        if (self_on && j == i) continue;
                        double dot = 0, xx = 0;
                        for (int t = 0; t < d; t++) {
                            dot += (double)q[i * d + t] * db[j * d + t];
                            xx += (double)db[j * d + t] * db[j * d + t];
                        }
                        double key = kind == SM_K_DIST_SQL2 ? qq + xx - 2 * dot
                                   : kind == SM_K_DIST_DOT ? -dot
                                   : (qq > 0 && xx > 0 ? -dot / sqrt(qq * xx) : 0.0);
                        c[m].key = key;
                        c[m++].id = j;
                    }
                    qsort(c, (size_t)m, sizeof *c, refc_cmp);
                    for (int r = 0; r < k && !bad; r++) {
                        float got = dist[i * k + r];
                        int64_t gid = idx[i * k + r];
                        if (r >= m) { /* unfilled slot */
                            bad = gid != -1 || got != (kind == SM_K_DIST_SQL2 ? INFINITY : -INFINITY);
                            continue;
                        }
                        double want = kind == SM_K_DIST_SQL2 ? c[r].key : -c[r].key;
                        if (kind == SM_K_DIST_COS) /* not exact: the value within rounding, the id
                                                    * exact unless the next candidate is as close */
                            bad = fabs(got - want) > 1e-5 ||
                                  (gid != c[r].id && !(fabs(c[r].key - c[r + (r + 1 < m)].key) < 1e-6 ||
                                                       (r > 0 && fabs(c[r].key - c[r - 1].key) < 1e-6)));
                        else
                            bad = gid != c[r].id || got != (float)want;
                        if (bad)
                            fprintf(stderr, "knn n=%lld nq=%lld d=%d k=%d kind=%d self=%d: query %lld rank %d "
                                    "got (%g, %lld) want (%g, %lld)\n", (long long)n, (long long)nq, d, k, kind,
                                    self_on, (long long)i, r, got, (long long)gid, want, (long long)c[r].id);
                    }
                }
                CHECK_MSG(!bad, "knn shape %zu kind %d self %d", si, kind, self_on);
                /* the same bits on 1 and 2 threads */
                float *dist1 = malloc(sizeof(float) * (size_t)(nq * k));
                int64_t *idx1 = malloc(sizeof(int64_t) * (size_t)(nq * k));
                omp_set_num_threads(1);
                CHECK_OK(run_knn(kind, db, n, q, nq, d, k, self_on ? 0 : -1, dist1, idx1));
                omp_set_num_threads(2);
                CHECK_MSG(!memcmp(dist, dist1, sizeof(float) * (size_t)(nq * k)) &&
                              !memcmp(idx, idx1, sizeof(int64_t) * (size_t)(nq * k)),
                          "knn shape %zu kind %d: 1 and 2 threads differ", si, kind);
                free(dist1); free(idx1);
                free(c); free(dist); free(idx); free(db);
                if (!self_on) free(q);
            }
    /* statuses: a non-finite database row is refused with nothing written; a workspace smaller
     * than the operation asked for is refused */
    for (int path = 0; path < 3; path++) { /* tiny loops, a few queries, one inner-product query */
        int64_t n = path ? 4096 : 50, nq = path == 2 ? 1 : path ? 3 : 50;
        int d = 16, k = 2, kind = path == 2 ? SM_K_DIST_DOT : SM_K_DIST_SQL2;
        float *db = randint(n * d, -2, 2), *q = randint(nq * d, -2, 2);
        db[(n - 1) * d + 3] = NAN;
        float *dist = malloc(sizeof(float) * (size_t)(nq * k));
        int64_t *idx = malloc(sizeof(int64_t) * (size_t)(nq * k));
        for (int64_t i = 0; i < nq * k; i++) { dist[i] = 7.0f; idx[i] = 7; }
        CHECK_STATUS(run_knn(kind, db, n, q, nq, d, k, -1, dist, idx), SM_ERR_NUMERIC);
        int untouched = 1;
        for (int64_t i = 0; i < nq * k; i++) untouched &= dist[i] == 7.0f && idx[i] == 7;
        CHECK_MSG(untouched, "knn wrote its output before refusing a NaN database (path %d)", path);
        db[(n - 1) * d + 3] = 1;
        size_t need = sm_be_knn_ws(BE, n, nq, d, k, SM_K_DIST_SQL2);
        CHECK(need > 0);
        sm_ws w = ws_of(need - 1);
        CHECK_STATUS(sm_be_knn(BE, SM_K_DIST_SQL2, db, n, q, nq, d, k, -1, dist, idx, &w), SM_ERR_INVALID);
        free(w.base); free(db); free(q); free(dist); free(idx);
    }
}

/* ---- the optimiser's update ----------------------------------------------------------------- */
static void check_optim(void) {
    const sm_optimizer kinds[] = {SM_OPT_SGD, SM_OPT_ADAM, SM_OPT_ADAMW};
    const int64_t n = 1001;
    for (int ki = 0; ki < 3; ki++)
        for (int wdi = 0; wdi < 2; wdi++) {
            sm_optim_hyper h = {.kind = kinds[ki], .momentum = 0.9f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                                .weight_decay = wdi ? 0.01f : 0.0f};
            float *p = randf(n, 1), *m = calloc((size_t)n, sizeof(float)), *v = calloc((size_t)n, sizeof(float));
            double *rp = dzeros(n), *rm = dzeros(n), *rv = dzeros(n);
            for (int64_t i = 0; i < n; i++) rp[i] = p[i];
            const float lr = 0.01f;
            int ok = 1;
            for (int64_t t = 1; t <= 3; t++) {
                float *g = randf(n, 1);
                CHECK_OK(sm_be_optim_update(BE, &h, t, n, p, g, m, v, lr));
                for (int64_t i = 0; i < n; i++) {
                    double wd = h.weight_decay, gi = g[i];
                    if (h.kind == SM_OPT_SGD) {
                        gi += wd * rp[i];
                        rm[i] = t == 1 ? gi : h.momentum * rm[i] + gi;
                        rp[i] -= lr * rm[i];
                    } else {
                        if (h.kind == SM_OPT_ADAMW) rp[i] -= lr * wd * rp[i];
                        else gi += wd * rp[i];
                        rm[i] = h.beta1 * rm[i] + (1 - h.beta1) * gi;
                        rv[i] = h.beta2 * rv[i] + (1 - h.beta2) * gi * gi;
                        double mh = rm[i] / (1 - pow(h.beta1, (double)t)), vh = rv[i] / (1 - pow(h.beta2, (double)t));
                        rp[i] -= lr * mh / (sqrt(vh) + h.eps);
                    }
                }
                free(g);
            }
            double e = 0;
            for (int64_t i = 0; i < n; i++) e = fmax(e, fabs(p[i] - rp[i]));
            ok = e <= 1e-5;
            CHECK_MSG(ok, "optim_update kind %d wd %d: max |p - ref| = %g after 3 steps", (int)h.kind, wdi, e);
            free(p); free(m); free(v); free(rp); free(rm); free(rv);
        }
}

/* ---- residual add, dropout, GeM pooling: each against a double reference and its backward
 * against finite differences of its forward (the forward/backward pair the layers use) ---- */

/* <g, v> in double */
static double dotd(const float *g, const float *v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * v[i];
    return s;
}

static void check_add(void) {
    const int64_t ms[] = {1, 7, 1000};
    for (int mi = 0; mi < 3; mi++) {
        int64_t m = ms[mi];
        float *a = randf(m, 1), *b = randf(m, 1), *y = malloc(sizeof(float) * (size_t)m), *g = randf(m, 1);
        double *ref = dzeros(m);
        for (int64_t i = 0; i < m; i++) ref[i] = (double)a[i] + b[i];
        CHECK_OK(sm_be_add(BE, a, b, y, m));
        CHECK_MSG(exact(y, ref, m), "add m=%lld", (long long)m);
        /* in place (res's backward writes dx over dy) */
        float *a2 = malloc(sizeof(float) * (size_t)m);
        memcpy(a2, a, sizeof(float) * (size_t)m);
        CHECK_OK(sm_be_add(BE, a2, b, a2, m));
        CHECK_MSG(!memcmp(a2, y, sizeof(float) * (size_t)m), "add in place m=%lld", (long long)m);
        /* backward: d<g, a + b>/da = d<g, a + b>/db = g (end hands its dy to both paths; res adds
         * the two), by central differences */
        int bad = 0;
        for (int64_t i = 0; i < m; i += 1 + m / 5) {
            for (int which = 0; which < 2; which++) {
                float *v = which ? b : a, v0 = v[i], h = 1.0f / 64;
                v[i] = v0 + h;
                sm_be_add(BE, a, b, y, m);
                double lp = dotd(g, y, m);
                v[i] = v0 - h;
                sm_be_add(BE, a, b, y, m);
                double lm = dotd(g, y, m);
                v[i] = v0;
                double fd = (lp - lm) / (2.0 * h);
                bad += fabs(fd - g[i]) > 1e-4 * (1 + fabs(g[i]));
            }
        }
        CHECK_MSG(!bad, "add m=%lld: %d finite differences differ from the gradient", (long long)m, bad);
        free(a); free(b); free(y); free(g); free(ref); free(a2);
    }
}

static void check_dropout(void) {
    const int64_t ms[] = {1, 13, 70001}; /* 70001: more than one thread's share */
    const float ps[] = {0.0f, 0.2f, 0.5f, 0.9f};
    for (int mi = 0; mi < 3; mi++)
        for (int pi = 0; pi < 4; pi++) {
            int64_t m = ms[mi];
            float p = ps[pi];
            const uint64_t key = 0x1234567ull * (uint64_t)(mi * 4 + pi + 1);
            float *x = randf(m, 1), *y = malloc(sizeof(float) * (size_t)m), *y2 = malloc(sizeof(float) * (size_t)m);
            uint8_t *mask = malloc((size_t)m), *mask2 = malloc((size_t)m);
            double *ref = dzeros(m);
            const uint32_t thr = (uint32_t)((double)p * 16777216.0 + 0.5);
            int64_t kept = 0;
            int mask_ok = 1;
            sm_set_num_threads(1);
            CHECK_OK(sm_be_dropout_forward(BE, x, m, p, key, mask, y));
            sm_set_num_threads(2);
            CHECK_OK(sm_be_dropout_forward(BE, x, m, p, key, mask2, y2));
            for (int64_t j = 0; j < m; j++) {
                int keep = (uint32_t)(sm_hash64(key + (uint64_t)j) >> 40) >= thr;
                mask_ok &= mask[j] == keep;
                kept += keep;
                ref[j] = keep ? (double)x[j] / (1.0 - (double)p) : 0.0;
            }
            CHECK_MSG(mask_ok, "dropout m=%lld p=%g: the mask is not the hash's", (long long)m, p);
            CHECK_MSG(nmse(y, ref, m) <= TOL, "dropout forward m=%lld p=%g: nmse %g", (long long)m, p, nmse(y, ref, m));
            CHECK_MSG(!memcmp(y, y2, sizeof(float) * (size_t)m) && !memcmp(mask, mask2, (size_t)m),
                      "dropout forward m=%lld p=%g: 1 and 2 threads differ", (long long)m, p);
            if (p == 0.0f) CHECK_MSG(kept == m && !memcmp(y, x, sizeof(float) * (size_t)m), "dropout p=0 is not the identity");
            /* the dropped fraction: p within 5 standard deviations */
            if (m > 1000)
                CHECK_MSG(fabs((double)(m - kept) / m - p) <= 5 * sqrt(p * (1 - p) / m) + 1e-9,
                          "dropout m=%lld p=%g: %lld dropped", (long long)m, p, (long long)(m - kept));
            /* backward against its formula, then against central differences of the forward with
             * the same key (the same mask) */
            float *g = randf(m, 1), *dx = malloc(sizeof(float) * (size_t)m);
            CHECK_OK(sm_be_dropout_backward(BE, g, mask, m, p, dx));
            for (int64_t j = 0; j < m; j++) ref[j] = mask[j] ? (double)g[j] / (1.0 - (double)p) : 0.0;
            CHECK_MSG(nmse(dx, ref, m) <= TOL, "dropout backward m=%lld p=%g: nmse %g", (long long)m, p, nmse(dx, ref, m));
            int bad = 0, tried = 0;
            for (int64_t j = 0; j < m && tried < 12; j += 1 + m / 12, tried++) {
                float x0 = x[j], h = 1.0f / 64;
                x[j] = x0 + h;
                sm_be_dropout_forward(BE, x, m, p, key, mask2, y2);
                double lp = dotd(g, y2, m);
                x[j] = x0 - h;
                sm_be_dropout_forward(BE, x, m, p, key, mask2, y2);
                double lm = dotd(g, y2, m);
                x[j] = x0;
                double fd = (lp - lm) / (2.0 * h);
                bad += fabs(fd - dx[j]) > 1e-3 * (1 + fabs(dx[j]));
            }
            CHECK_MSG(!bad, "dropout m=%lld p=%g: %d finite differences differ from the gradient", (long long)m, p, bad);
            free(x); free(y); free(y2); free(mask); free(mask2); free(ref); free(g); free(dx);
        }
}

/* GeM of one (sample, channel) in double, straight from the definition */
static double ref_gem(const float *x, int hw, int c, int ch, double p) {
    double s = 0;
    for (int q = 0; q < hw; q++) {
        double z = x[(int64_t)q * c + ch];
        s += pow(z > 1e-6 ? z : 1e-6, p);
    }
    return pow(s / hw, 1.0 / p);
}

static void check_gem(void) {
    const struct { int n, hw, c; } S[] = {{1, 1, 1}, {2, 4, 3}, {3, 49, 8}, {5, 16, 33}, {8, 64, 80}};
    const float ps[] = {1.0f, 2.5f, 3.0f, 7.25f};
    for (size_t si = 0; si < sizeof S / sizeof S[0]; si++)
        for (int pi = 0; pi < 4; pi++) {
            int n = S[si].n, hw = S[si].hw, c = S[si].c;
            int64_t nx = (int64_t)n * hw * c, ny = (int64_t)n * c;
            float p = ps[pi];
            /* mostly positive activations (after a relu) with some zeros and negatives, which
             * the clamp at 1e-6 takes */
            float *x = randf(nx, 1);
            for (int64_t i = 0; i < nx; i++) x[i] = i % 7 == 3 ? 0.0f : i % 11 == 5 ? -fabsf(x[i]) : fabsf(x[i]) + 0.01f;
            float *y = malloc(sizeof(float) * (size_t)ny), *y2 = malloc(sizeof(float) * (size_t)ny),
                  *y1 = malloc(sizeof(float) * (size_t)ny);
            double *ref = dzeros(ny);
            for (int b = 0; b < n; b++)
                for (int ch = 0; ch < c; ch++) ref[(int64_t)b * c + ch] = ref_gem(x + (int64_t)b * hw * c, hw, c, ch, p);
            sm_set_num_threads(1);
            CHECK_OK(sm_be_gem_forward(BE, x, n, hw, c, &p, y));
            sm_set_num_threads(2);
            CHECK_OK(sm_be_gem_forward(BE, x, n, hw, c, &p, y2));
            CHECK_OK(sm_be_gem1(BE, x, n, hw, c, &p, y1));
            CHECK_MSG(nmse(y, ref, ny) <= TOL, "gem forward %dx%dx%d p=%g: nmse %g", n, hw, c, p, nmse(y, ref, ny));
            CHECK_MSG(!memcmp(y, y2, sizeof(float) * (size_t)ny), "gem forward %dx%dx%d: 1 and 2 threads differ", n, hw, c);
            CHECK_MSG(!memcmp(y, y1, sizeof(float) * (size_t)ny), "gem (single-threaded) %dx%dx%d differs", n, hw, c);
            /* backward against the formulas in double:
             * dx_i = dy y z_i^(p-1) / (hw m), dp = sum dy y (mean(z^p ln z) / (p m) - ln(m) / p^2) */
            float *g = randf(ny, 1), *dx = malloc(sizeof(float) * (size_t)nx), *dx2 = malloc(sizeof(float) * (size_t)nx);
            float dp = 0, dp2 = 0;
            sm_ws w = ws_of(sm_be_gem_backward_ws(BE, n, hw, c));
            sm_set_num_threads(1);
            CHECK_OK(sm_be_gem_backward(BE, x, g, n, hw, c, &p, dx, &dp, &w));
            sm_set_num_threads(2);
            CHECK_OK(sm_be_gem_backward(BE, x, g, n, hw, c, &p, dx2, &dp2, &w));
            CHECK_MSG(!memcmp(dx, dx2, sizeof(float) * (size_t)nx) && dp == dp2,
                      "gem backward %dx%dx%d: 1 and 2 threads differ", n, hw, c);
            double *rdx = dzeros(nx), rdp = 0, adp = 0;
            for (int b = 0; b < n; b++)
                for (int ch = 0; ch < c; ch++) {
                    const float *xs = x + (int64_t)b * hw * c;
                    double mz = 0, ml = 0, yv = ref[(int64_t)b * c + ch], d = g[(int64_t)b * c + ch];
                    for (int q = 0; q < hw; q++) {
                        double z = xs[(int64_t)q * c + ch];
                        z = z > 1e-6 ? z : 1e-6;
                        mz += pow(z, p) / hw;
                        ml += pow(z, p) * log(z) / hw;
                    }
                    double t = d * yv * (ml / (p * mz) - log(mz) / ((double)p * p));
                    rdp += t;
                    adp += fabs(t);
                    for (int q = 0; q < hw; q++) {
                        double z = xs[(int64_t)q * c + ch];
                        rdx[(int64_t)b * hw * c + (int64_t)q * c + ch] = z < 1e-6 ? 0 : d * yv * pow(z, p - 1) / (hw * mz);
                    }
                }
            CHECK_MSG(nmse(dx, rdx, nx) <= TOL, "gem backward dx %dx%dx%d p=%g: nmse %g", n, hw, c, p, nmse(dx, rdx, nx));
            CHECK_MSG(fabs(dp - rdp) <= 1e-6 * adp + 1e-12, "gem backward dp %dx%dx%d p=%g: %g, reference %g", n, hw, c, p,
                      dp, rdp);
            /* finite differences of the forward: for x_i, of its own output (the only one it
             * moves), at each tested output's largest input (which moves it most) and at one more
             * input above the clamp; step 5% of x_i, the error allowed 2% of the gradient plus
             * what the float rounding of the two outputs can make of the step */
            int bad = 0;
            for (int64_t o = 0; o < ny; o += 1 + ny / 6) {
                int b = (int)(o / c), ch = (int)(o % c);
                int64_t base = (int64_t)b * hw * c + ch, imax = base, iany = -1;
                for (int q = 0; q < hw; q++) {
                    int64_t i = base + (int64_t)q * c;
                    if (x[i] > x[imax]) imax = i;
                    if (x[i] > 0.05f && i != imax && iany < 0 && q >= hw / 2) iany = i;
                }
                for (int t = 0; t < 2; t++) {
                    int64_t i = t ? iany : imax;
                    if (i < 0 || x[i] < 0.05f) continue; /* away from the clamp's kink */
                    float x0 = x[i], xp = x0 * 1.05f, xm = x0 * 0.95f;
                    x[i] = xp;
                    sm_be_gem_forward(BE, x, n, hw, c, &p, y2);
                    double fp = y2[o];
                    x[i] = xm;
                    sm_be_gem_forward(BE, x, n, hw, c, &p, y2);
                    double fm = y2[o];
                    x[i] = x0;
                    double fd = g[o] * (fp - fm) / ((double)xp - xm);
                    double rounding = fabs(g[o]) * 4 * 1.2e-7 * (fabs(fp) + fabs(fm)) / ((double)xp - xm);
                    bad += fabs(fd - dx[i]) > 2e-2 * fabs(dx[i]) + rounding;
                }
            }
            {
                float hp = 1.0f / 256, pp = p + hp, pm = p - hp;
                sm_be_gem_forward(BE, x, n, hw, c, &pp, y2);
                double lp = dotd(g, y2, ny);
                sm_be_gem_forward(BE, x, n, hw, c, &pm, y2);
                double lm = dotd(g, y2, ny);
                double fd = (lp - lm) / ((double)pp - pm);
                bad += fabs(fd - dp) > 2e-2 * adp + 1e-5 * dotd(g, g, ny);
            }
            CHECK_MSG(!bad, "gem %dx%dx%d p=%g: %d finite differences differ from the gradient", n, hw, c, p, bad);
            free(x); free(y); free(y2); free(y1); free(ref); free(g); free(dx); free(dx2); free(rdx); free(w.base);
        }
}

static void check_blocks(void) {
    check_add();
    check_dropout();
    check_gem();
    printf("blocks: add, dropout, gem (references and finite differences)\n");
}

/* ---- memory and the stream ------------------------------------------------------------------ */
static void check_memory(void) {
    const size_t bytes = 4099;
    unsigned char *host = malloc(bytes), *back = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) host[i] = (unsigned char)(i * 7);
    void *dev = NULL, *dev2 = NULL;
    CHECK_OK(sm_be_alloc(BE, bytes, &dev));
    CHECK_OK(sm_be_alloc(BE, bytes, &dev2));
    CHECK(dev && ((uintptr_t)dev & 63) == 0);
    CHECK_OK(sm_be_upload(BE, dev, host, bytes));
    CHECK_OK(sm_be_copy(BE, dev2, dev, bytes));
    CHECK_OK(sm_be_download(BE, back, dev2, bytes));
    CHECK_OK(sm_be_sync(BE));
    CHECK(!memcmp(host, back, bytes));
    CHECK(sm_be_error(BE) == SM_OK);
    sm_be_free(BE, dev);
    sm_be_free(BE, dev2);
    sm_be_free(BE, NULL); /* a no-op */
    /* a raised error is sticky until the next sync, which returns it once */
    CHECK_STATUS(sm_be_raise(BE, SM_ERR_INVALID, "test error %d", 42), SM_ERR_INVALID);
    CHECK_STATUS(sm_be_raise(BE, SM_ERR_NUMERIC, "a second error"), SM_ERR_NUMERIC);
    CHECK(sm_be_error(BE) == SM_ERR_INVALID && strstr(sm_be_errmsg(BE), "test error 42"));
    CHECK_STATUS(sm_be_sync(BE), SM_ERR_INVALID);
    CHECK_OK(sm_be_sync(BE));
    free(host); free(back);
}

/* The few-queries fused pass (nq <= 16) scores rows with AVX2 (8 rows transposed in registers)
 * or with the C loop, chosen by the products' path: both give the same bits, on row counts and
 * d that leave tails, for every kind, with and without the self match, and with rows whose
 * scores overflow (the pass then hands over to the general path). */
static void check_knn_few_paths(void) {
    if (sm_set_isa("avx2") == SM_ERR_UNSUPPORTED) {
        printf("knn few-queries paths: this CPU lacks avx2, skipped\n");
        CHECK_OK(sm_set_isa("auto"));
        return;
    }
    const int ds[] = {128, 37, 5, 16}, nqs[] = {1, 3, 16}, ks[] = {1, 10};
    int cases = 0, differ = 0;
    for (int di = 0; di < 4; di++)
        for (int big = 0; big < 2; big++) {
            const int d = ds[di];
            const int64_t n = 70000 / d + 3 + di; /* n d >= 65536: the fused pass */
            float *db = randf(n * d, 1.0f);
            if (big)
                for (int j = 0; j < d; j++) db[(n - 2) * d + j] = 3e19f; /* |x|^2 overflows */
            for (int c = 0; c < 3; c++)
                for (int e = 0; e < 2; e++)
                    for (int kind = 0; kind < 3; kind++)
                        for (int self = 0; self < 2; self++) {
                            const int64_t nq = nqs[c];
                            const int k = ks[e];
                            float *dist[2];
                            int64_t *idx[2];
                            for (int p = 0; p < 2; p++) {
                                CHECK_OK(sm_set_isa(p ? "avx2" : "scalar"));
                                dist[p] = malloc(sizeof(float) * (size_t)(nq * k));
                                idx[p] = malloc(sizeof(int64_t) * (size_t)(nq * k));
                                CHECK_OK(run_knn(kind, db, n, db + 5 * d, nq, d, k, self ? 5 : -1, dist[p], idx[p]));
                            }
                            cases++;
                            differ += memcmp(dist[0], dist[1], sizeof(float) * (size_t)(nq * k)) != 0 ||
                                      memcmp(idx[0], idx[1], sizeof(int64_t) * (size_t)(nq * k)) != 0;
                            for (int p = 0; p < 2; p++) { free(dist[p]); free(idx[p]); }
                        }
            free(db);
        }
    CHECK_MSG(differ == 0, "knn few-queries: %d of %d cases differ between the scalar and avx2 paths", differ, cases);
    printf("knn few-queries: %d cases, %d differ between the scalar and avx2 paths\n", cases, differ);
    CHECK_OK(sm_set_isa("auto"));
}

/* The many-queries search (per-thread blocks of 512 queries, fused panels) runs the AVX2 panel of
 * 16 database rows or, on the avx512 path, knn_search_avx512.c's of 32: the same bits as each
 * other and as the scalar path's tiles, on random data (rounded products), database sizes that
 * leave a partial panel, query counts whose last block is wider than 12 rows, between 6 and 12
 * (the AVX2 panel) or narrower (the tiles), every kind, with and without the self match. */
static void check_knn_many_paths(void) {
    const char *paths[] = {"scalar", "avx2", "avx512"};
    /* style 0 random; 1 clustered: 40 rows a cluster, each a base row plus noise of 1e-4, so
     * that far more than k rows sit within the bfloat16 pre-pass's bound of the k-th (its lists
     * overflow and blocks go to the fp32 panels); 2 rows scaled by 1e-7 (norms below the
     * pre-pass's range); 3 rows of scales 1e-3 .. 1e3 and a zero row (the bound's norms), and a
     * query of norm below the range (its block goes to the fp32 panels) */
    const struct { int64_t n, nq; int d, k, style; } S[] = {
        {1000, 1024 + 40, 37, 10, 0}, {333, 1024 + 9, 128, 3, 0}, {2049, 1024 + 2, 5, 1, 0},
        {4100, 2048 + 13, 64, 20, 0}, {2000, 1024 + 20, 64, 10, 1}, {1500, 1024 + 16, 48, 64, 1},
        {1200, 1024 + 12, 40, 5, 2},  {1300, 1024 + 30, 96, 7, 3}};
    int cases = 0, differ = 0, paths_run = 0;
    for (size_t si = 0; si < sizeof S / sizeof S[0]; si++)
        for (int kind = 0; kind < 3; kind++)
            for (int self = 0; self < 2; self++) {
                const int64_t n = S[si].n, nq = S[si].nq;
                const int d = S[si].d, k = S[si].k;
                float *db = randf(n * d, 1.0f), *q = self ? NULL : randf(nq * d, 1.0f);
                const int style = S[si].style;
                for (int64_t j = 0; j < n; j++)
                    for (int t = 0; t < d; t++) {
                        float *v = db + j * d + t;
                        if (style == 1) *v = db[(j / 40 * 40) * d + t] + (j % 40 ? 1e-4f * *v : 0.0f);
                        if (style == 2) *v *= 1e-7f;
                        if (style == 3) *v = j == n / 3 ? 0.0f : *v * powf(10.0f, (float)(j % 7) - 3.0f);
                    }
                if (q && style == 3) /* one query whose norm is below the pre-pass's range */
                    for (int t = 0; t < d; t++) q[t] *= 1e-9f;
                if (q && style == 1) /* queries near the clusters */
                    for (int64_t i = 0; i < nq; i++)
                        for (int t = 0; t < d; t++) q[i * d + t] = db[((i * 7) % n) * d + t] + 1e-3f * q[i * d + t];
                float *dist[3] = {NULL, NULL, NULL};
                int64_t *idx[3] = {NULL, NULL, NULL};
                int ran = 0;
                for (int p = 0; p < 3; p++) {
                    if (sm_set_isa(paths[p]) == SM_ERR_UNSUPPORTED) continue;
                    dist[p] = malloc(sizeof(float) * (size_t)(nq * k));
                    idx[p] = malloc(sizeof(int64_t) * (size_t)(nq * k));
                    /* with self, the queries are the database's rows 0 .. nq (nq <= n there) */
                    const int64_t nqs = self ? (nq < n ? nq : n) : nq;
                    CHECK_OK(run_knn(kind, db, n, self ? db : q, nqs, d, k, self ? 0 : -1, dist[p], idx[p]));
                    if (self) for (int64_t i = nqs * k; i < nq * k; i++) { dist[p][i] = 0; idx[p][i] = 0; }
                    ran++;
                }
                if (ran > paths_run) paths_run = ran;
                for (int p = 1; p < 3; p++) {
                    if (!dist[p]) continue;
                    cases++;
                    differ += memcmp(dist[0], dist[p], sizeof(float) * (size_t)(nq * k)) != 0 ||
                              memcmp(idx[0], idx[p], sizeof(int64_t) * (size_t)(nq * k)) != 0;
                }
                for (int p = 0; p < 3; p++) { free(dist[p]); free(idx[p]); }
                free(db); free(q);
            }
    /* a workspace sized on the avx2 path (no pre-pass) serves a call on the avx512 path: the call
     * then runs without the pre-pass, with the same results; one byte less is refused */
    if (sm_set_isa("avx2") == SM_OK && sm_set_isa("avx512") == SM_OK) {
        const int64_t n = 3000, nq = 1100;
        const int d = 64, k = 10;
        float *db = randf(n * d, 1.0f), *q = randf(nq * d, 1.0f);
        float *d0 = malloc(sizeof(float) * (size_t)(nq * k)), *d1 = malloc(sizeof(float) * (size_t)(nq * k));
        int64_t *i0 = malloc(sizeof(int64_t) * (size_t)(nq * k)), *i1 = malloc(sizeof(int64_t) * (size_t)(nq * k));
        CHECK_OK(run_knn(SM_K_DIST_SQL2, db, n, q, nq, d, k, -1, d0, i0));
        CHECK_OK(sm_set_isa("avx2"));
        const size_t small = sm_be_knn_ws(BE, n, nq, d, k, SM_K_DIST_SQL2);
        CHECK_OK(sm_set_isa("avx512"));
        CHECK(sm_be_knn_ws(BE, n, nq, d, k, SM_K_DIST_SQL2) >= small);
        sm_ws w = ws_of(small);
        CHECK_OK(sm_be_knn(BE, SM_K_DIST_SQL2, db, n, q, nq, d, k, -1, d1, i1, &w));
        CHECK(!memcmp(d0, d1, sizeof(float) * (size_t)(nq * k)) && !memcmp(i0, i1, sizeof(int64_t) * (size_t)(nq * k)));
        free(w.base);
        w = ws_of(small - 1);
        CHECK_STATUS(sm_be_knn(BE, SM_K_DIST_SQL2, db, n, q, nq, d, k, -1, d1, i1, &w), SM_ERR_INVALID);
        free(w.base);
        free(db); free(q); free(d0); free(d1); free(i0); free(i1);
    }
    CHECK_MSG(differ == 0, "knn many queries: %d of %d cases differ from the scalar path", differ, cases);
    printf("knn many queries: %d paths, %d cases, %d differ from the scalar path\n", paths_run, cases, differ);
    CHECK_OK(sm_set_isa("auto"));
}

int main(void) {
    CHECK(sm_backend_count() >= 1 && sm_backend_get(0) == sm_backend_cpu());
    CHECK(sm_backend_get(sm_backend_count()) == NULL);
    /* every operation of every backend, on every instruction-set path of the matrix products
     * this CPU has */
    const char *paths[] = {"scalar", "avx2", "avx512"};
    for (int b = 0; b < sm_backend_count(); b++)
    for (int p = 0; p < 3; p++) {
        BE = sm_backend_get(b);
        /* the buffers here are host memory; a backend with its own memory needs them staged
         * through sm_be_upload / sm_be_download, which this test does not do yet */
        if (!(BE->caps & SM_BE_HOST_MEMORY)) {
            printf("backend %s: not run (its memory is not host memory)\n", BE->ops->name);
            break;
        }
        sm_status st = sm_set_isa(paths[p]);
        if (st == SM_ERR_UNSUPPORTED) {
            printf("backend %s, path %s: this CPU lacks it, skipped\n", BE->ops->name, paths[p]);
            continue;
        }
        CHECK_OK(st);
        printf("backend %s, path %s:\n", BE->ops->name, paths[p]);
        sm_rng_seed(&R, 20261201);
        check_gemm();
        check_unfold();
        check_conv1ch();
        check_wino();
        check_rows();
        check_bn();
        check_pool();
        check_bn_pool();
        check_blocks();
        check_dist();
        check_knn();
        check_knn_all();
        check_optim();
        check_memory();
    }
    CHECK_OK(sm_set_isa("auto"));
    BE = sm_backend_cpu();
    check_knn_few_paths();
    check_knn_many_paths();
    check_wino_paths();
    TEST_MAIN_END();
}
