/* gemm_avx2.c - the AVX2 + FMA micro-kernels of simile's GEMM (gemm.h): a 6 x 16 tile of C in
 * 12 ymm registers, each lane one output element accumulated over k by one chain of fmas.
 * Compiled with -mavx2 -mfma for this file only (CMakeLists.txt); called only when CPUID and
 * XGETBV say the CPU and the OS support AVX2 and FMA (gemm.c).  gemv_n loads rows contiguously
 * and transposes 8 x 8 blocks in registers (no gathers): lanes still own rows, one fma chain each. */
#include "backend/cpu/gemm.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include "backend/cpu/transpose8_avx2.h"
#include <math.h>

#define MR 6
#define NR 16

/* The tile, with op(A)'s strides as arguments so that each caller below gets its own copy with
 * the strides it knows folded in. */
static inline __attribute__((always_inline)) void tile(int kc, const float *a, int64_t rs, int64_t cs,
                                                       const float *Bp, float *C, int64_t ldc, int flags,
                                                       float alpha, float beta) {
    __m256 c[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        c[r][0] = flags & SM_UKR_LOAD ? _mm256_loadu_ps(C + r * ldc) : _mm256_setzero_ps();
        c[r][1] = flags & SM_UKR_LOAD ? _mm256_loadu_ps(C + r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int t = 0; t < kc; t++, a += cs) {
        const __m256 b0 = _mm256_load_ps(Bp + t * NR), b1 = _mm256_load_ps(Bp + t * NR + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * rs);
            c[r][0] = _mm256_fmadd_ps(av, b0, c[r][0]);
            c[r][1] = _mm256_fmadd_ps(av, b1, c[r][1]);
        }
    }
    if (flags & SM_UKR_FINISH) { /* alpha * acc (+ beta * C): a multiply, a multiply, an add */
        const __m256 al = _mm256_set1_ps(alpha), be = _mm256_set1_ps(beta);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++)
            for (int h = 0; h < 2; h++) {
                __m256 v = _mm256_mul_ps(al, c[r][h]);
                if (beta != 0.0f) v = _mm256_add_ps(v, _mm256_mul_ps(be, _mm256_loadu_ps(C + r * ldc + 8 * h)));
                c[r][h] = v;
            }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        _mm256_storeu_ps(C + r * ldc, c[r][0]);
        _mm256_storeu_ps(C + r * ldc + 8, c[r][1]);
    }
}

static void ukr(int kc, const float *a, int64_t rs, int64_t cs, const float *Bp, float *C, int64_t ldc, int flags,
                float alpha, float beta) {
    if (rs == 1 && cs == MR) tile(kc, a, 1, MR, Bp, C, ldc, flags, alpha, beta); /* packed edge panel */
    else if (cs == 1) tile(kc, a, rs, 1, Bp, C, ldc, flags, alpha, beta);       /* rows of A in place */
    else if (rs == 1) tile(kc, a, 1, cs, Bp, C, ldc, flags, alpha, beta);       /* rows of A^T in place */
    else tile(kc, a, rs, cs, Bp, C, ldc, flags, alpha, beta);
}

#ifndef GEMV_PF
#define GEMV_PF 32 /* gemv_n: prefetch the rows this far ahead */
#endif


/* G groups of 8 rows (rows of A in place, a missing row read as zeros from z): the 8 x 8 blocks
 * of each group loaded a row at a time and transposed, so that lane l of c[g] owns row 8 g + l
 * and takes the fmas over t in order.  G groups at once hide the fma latency of the chains. */
static inline __attribute__((always_inline)) void gemv_groups(int G, int kc, const float *const *rp, int64_t lda,
                                                               const float *x, int incx, __m256 *c) {
    int t = 0;
    for (; t + 8 <= kc; t += 8) {
        __m256 xv[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) xv[u] = _mm256_set1_ps(x[(int64_t)(t + u) * incx]);
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            __m256 r[8], col[8];
#pragma GCC unroll 8
            for (int l = 0; l < 8; l++) {
                _mm_prefetch((const char *)(rp[8 * g + l] + GEMV_PF * lda + t), _MM_HINT_T0); /* never faults */
                r[l] = _mm256_loadu_ps(rp[8 * g + l] + t);
            }
            transpose8(r, col);
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) c[g] = _mm256_fmadd_ps(col[u], xv[u], c[g]);
        }
    }
    for (; t < kc; t++) { /* the last t: a column at a time */
        const __m256 xv = _mm256_set1_ps(x[(int64_t)t * incx]);
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            const float *const *p = rp + 8 * g;
            const __m256 col = _mm256_setr_ps(p[0][t], p[1][t], p[2][t], p[3][t], p[4][t], p[5][t], p[6][t], p[7][t]);
            c[g] = _mm256_fmadd_ps(col, xv, c[g]);
        }
    }
}

static void gemv_n(int kc, const float *A, int64_t lda, int rows, const float *x, int incx, float *acc, int load) {
    static const float zrow[SM_GEMV_KC] = {0}; /* the rows past `rows` of the last group */
    const float *rp[SM_GEMV_L];
    __m256 msk[8], c[8];
    const int nv = (rows + 7) / 8;
    for (int r = 0; r < 8 * nv; r++) rp[r] = r < rows ? A + (int64_t)r * lda : zrow;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int v = 0; v < nv; v++) {
        const __m256i row = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * v));
        msk[v] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(rows), row));
        c[v] = load ? _mm256_maskload_ps(acc + 8 * v, _mm256_castps_si256(msk[v])) : _mm256_setzero_ps();
    }
    int v = 0;
    for (; v + 4 <= nv; v += 4) gemv_groups(4, kc, rp + 8 * v, lda, x, incx, c + v);
    if (nv - v == 3) gemv_groups(3, kc, rp + 8 * v, lda, x, incx, c + v);
    else if (nv - v == 2) gemv_groups(2, kc, rp + 8 * v, lda, x, incx, c + v);
    else if (nv - v == 1) gemv_groups(1, kc, rp + 8 * v, lda, x, incx, c + v);
    for (v = 0; v < nv; v++) _mm256_maskstore_ps(acc + 8 * v, _mm256_castps_si256(msk[v]), c[v]);
}

static void gemv_t(int m, int nb, const float *A, int lda, const float *x, int incx, float *acc) {
    const int nv = nb / 8; /* whole vectors; the rest with scalar fmas in the same order */
    __m256 c[8];
    for (int v = 0; v < 8; v++) c[v] = _mm256_setzero_ps();
    float tail[8] = {0};
    for (int i = 0; i < m; i++) {
        const float xi = x[(int64_t)i * incx];
        const __m256 xv = _mm256_set1_ps(xi);
        const float *a = A + (int64_t)i * lda;
        for (int v = 0; v < nv; v++) c[v] = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * v), xv, c[v]);
        for (int j = nv * 8; j < nb; j++) tail[j - nv * 8] = fmaf(a[j], xi, tail[j - nv * 8]);
    }
    for (int v = 0; v < nv; v++) _mm256_storeu_ps(acc + 8 * v, c[v]);
    for (int j = nv * 8; j < nb; j++) acc[j] = tail[j - nv * 8];
}

const sm_gemm_kernels sm_gemm_avx2 = {"avx2", MR, NR, ukr, gemv_n, gemv_t};
#endif
