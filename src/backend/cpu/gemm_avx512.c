/* gemm_avx512.c - the AVX-512F micro-kernels of simile's GEMM (gemm.h): a 12 x 32 tile of C in
 * 24 zmm registers, each lane one output element accumulated over k by one chain of fmas.
 * Compiled with -mavx512f -mfma for this file only (CMakeLists.txt); called only when CPUID
 * and XGETBV say the CPU and the OS support AVX-512F (gemm.c). */
#include "backend/cpu/gemm.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define MR 12
#define NR 32

static void ukr(int kc, const float *Ap, const float *Bp, float *acc, int load) {
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        c[r][0] = load ? _mm512_load_ps(acc + r * NR) : _mm512_setzero_ps();
        c[r][1] = load ? _mm512_load_ps(acc + r * NR + 16) : _mm512_setzero_ps();
    }
    for (int t = 0; t < kc; t++) {
        const __m512 b0 = _mm512_load_ps(Bp + t * NR), b1 = _mm512_load_ps(Bp + t * NR + 16);
        const float *a = Ap + t * MR;
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[r]);
            c[r][0] = _mm512_fmadd_ps(av, b0, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(av, b1, c[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        _mm512_store_ps(acc + r * NR, c[r][0]);
        _mm512_store_ps(acc + r * NR + 16, c[r][1]);
    }
}

static void gemv_n(int kc, const float *Ap, const float *x, int incx, float *acc, int load) {
    __m512 c0 = load ? _mm512_loadu_ps(acc) : _mm512_setzero_ps();
    __m512 c1 = load ? _mm512_loadu_ps(acc + 16) : _mm512_setzero_ps();
    __m512 c2 = load ? _mm512_loadu_ps(acc + 32) : _mm512_setzero_ps();
    __m512 c3 = load ? _mm512_loadu_ps(acc + 48) : _mm512_setzero_ps();
    for (int t = 0; t < kc; t++) {
        const __m512 xv = _mm512_set1_ps(x[(int64_t)t * incx]);
        const float *a = Ap + t * SM_GEMV_L;
        c0 = _mm512_fmadd_ps(_mm512_load_ps(a), xv, c0);
        c1 = _mm512_fmadd_ps(_mm512_load_ps(a + 16), xv, c1);
        c2 = _mm512_fmadd_ps(_mm512_load_ps(a + 32), xv, c2);
        c3 = _mm512_fmadd_ps(_mm512_load_ps(a + 48), xv, c3);
    }
    _mm512_storeu_ps(acc, c0);
    _mm512_storeu_ps(acc + 16, c1);
    _mm512_storeu_ps(acc + 32, c2);
    _mm512_storeu_ps(acc + 48, c3);
}

static void gemv_t(int m, int nb, const float *A, int lda, const float *x, int incx, float *acc) {
    __mmask16 k[4];
    for (int v = 0; v < 4; v++) {
        int left = nb - 16 * v;
        k[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
    }
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int i = 0; i < m; i++) {
        const __m512 xv = _mm512_set1_ps(x[(int64_t)i * incx]);
        const float *a = A + (int64_t)i * lda;
        c0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k[0], a), xv, c0);
        c1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k[1], a + 16), xv, c1);
        c2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k[2], a + 32), xv, c2);
        c3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k[3], a + 48), xv, c3);
    }
    _mm512_mask_storeu_ps(acc, k[0], c0);
    _mm512_mask_storeu_ps(acc + 16, k[1], c1);
    _mm512_mask_storeu_ps(acc + 32, k[2], c2);
    _mm512_mask_storeu_ps(acc + 48, k[3], c3);
}

const sm_gemm_kernels sm_gemm_avx512 = {"avx512", MR, NR, ukr, gemv_n, gemv_t};
#endif
