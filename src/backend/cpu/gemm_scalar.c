/* gemm_scalar.c - the portable C micro-kernels of simile's GEMM (gemm.h): a 4 x 8 tile of C,
 * each element accumulated over k with fmaf in the same order as the vector paths, so that
 * this path gives their bits on any CPU (it is also the reference the tests force). */
#include "backend/cpu/gemm.h"
#include <math.h>

#define MR 4
#define NR 8

static void ukr(int kc, const float *a, int64_t rs, int64_t cs, const float *Bp, float *C, int64_t ldc, int flags,
                float alpha, float beta) {
    float c[MR][NR];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) c[r][j] = flags & SM_UKR_LOAD ? C[r * ldc + j] : 0.0f;
    for (int t = 0; t < kc; t++) {
        const float *b = Bp + t * NR;
        for (int r = 0; r < MR; r++) {
            const float av = a[r * rs + t * cs];
            for (int j = 0; j < NR; j++) c[r][j] = fmaf(av, b[j], c[r][j]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) {
            float v = c[r][j];
            if (flags & SM_UKR_FINISH) v = beta == 0.0f ? alpha * v : alpha * v + beta * C[r * ldc + j];
            C[r * ldc + j] = v;
        }
}

static void gemv_n(int kc, const float *A, int64_t lda, int rows, const float *x, int incx, float *acc, int load) {
    for (int r = 0; r < rows; r++) {
        const float *a = A + r * lda;
        float c = load ? acc[r] : 0.0f;
        for (int t = 0; t < kc; t++) c = fmaf(a[t], x[(int64_t)t * incx], c);
        acc[r] = c;
    }
}

static void gemv_t(int m, int nb, const float *A, int lda, const float *x, int incx, float *acc) {
    float c[SM_GEMV_L] = {0};
    for (int i = 0; i < m; i++) {
        const float xv = x[(int64_t)i * incx], *a = A + (int64_t)i * lda;
        for (int j = 0; j < nb; j++) c[j] = fmaf(a[j], xv, c[j]);
    }
    for (int j = 0; j < nb; j++) acc[j] = c[j];
}

const sm_gemm_kernels sm_gemm_scalar = {"scalar", MR, NR, ukr, gemv_n, gemv_t};
