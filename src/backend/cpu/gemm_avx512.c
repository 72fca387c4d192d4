/* gemm_avx512.c - the AVX-512F micro-kernels of simile's GEMM (gemm.h): a 12 x 32 tile of C in
 * 24 zmm registers, each lane one output element accumulated over k by one chain of fmas.
 * Compiled with -mavx512f -mfma for this file only (CMakeLists.txt); called only when CPUID
 * and XGETBV say the CPU and the OS support AVX-512F (gemm.c). */
#include "backend/cpu/gemm.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define MR 12
#define NR 32

/* The tile, with op(A)'s strides as arguments so that each caller below gets its own copy with
 * the strides it knows folded in. */
static inline __attribute__((always_inline)) void tile(int kc, const float *a, int64_t rs, int64_t cs,
                                                       const float *Bp, float *C, int64_t ldc, int flags,
                                                       float alpha, float beta) {
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        c[r][0] = flags & SM_UKR_LOAD ? _mm512_loadu_ps(C + r * ldc) : _mm512_setzero_ps();
        c[r][1] = flags & SM_UKR_LOAD ? _mm512_loadu_ps(C + r * ldc + 16) : _mm512_setzero_ps();
    }
    for (int t = 0; t < kc; t++, a += cs) {
        if (cs == 1 && rs > 1 && (t & 15) == 0) /* rows of A in place: the next tile's rows, a line at a time */
#pragma GCC unroll 12
            for (int r = 0; r < MR; r++) _mm_prefetch((const char *)(a + (r + MR) * rs), _MM_HINT_T0);
        if (rs == 1 && cs > MR) /* rows of A^T in place: the row 8 steps on */
            _mm_prefetch((const char *)(a + 8 * cs), _MM_HINT_T0);
        const __m512 b0 = _mm512_load_ps(Bp + t * NR), b1 = _mm512_load_ps(Bp + t * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[r * rs]);
            c[r][0] = _mm512_fmadd_ps(av, b0, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(av, b1, c[r][1]);
        }
    }
    if (flags & SM_UKR_FINISH) { /* alpha * acc (+ beta * C): a multiply, a multiply, an add */
        const __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(beta);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++)
            for (int h = 0; h < 2; h++) {
                __m512 v = _mm512_mul_ps(al, c[r][h]);
                if (beta != 0.0f) v = _mm512_add_ps(v, _mm512_mul_ps(be, _mm512_loadu_ps(C + r * ldc + 16 * h)));
                c[r][h] = v;
            }
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_ps(C + r * ldc, c[r][0]);
        _mm512_storeu_ps(C + r * ldc + 16, c[r][1]);
    }
}

static void ukr(int kc, const float *a, int64_t rs, int64_t cs, const float *Bp, float *C, int64_t ldc, int flags,
                float alpha, float beta) {
    if (rs == 1 && cs == MR) tile(kc, a, 1, MR, Bp, C, ldc, flags, alpha, beta); /* packed edge panel */
    else if (cs == 1) tile(kc, a, rs, 1, Bp, C, ldc, flags, alpha, beta);       /* rows of A in place */
    else if (rs == 1) tile(kc, a, 1, cs, Bp, C, ldc, flags, alpha, beta);       /* rows of A^T in place */
    else tile(kc, a, rs, cs, Bp, C, ldc, flags, alpha, beta);
}

/* r[j] (lane l) <- r[l] (lane j): a 16 x 16 transpose in registers. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            t[8 * h + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + 4 + i], 0x88);
            t[8 * h + 4 + i] = _mm512_shuffle_f32x4(u[8 * h + i], u[8 * h + 4 + i], 0xdd);
        }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}

static void gemv_n(int kc, const float *A, int64_t lda, int rows, const float *x, int incx, float *acc, int load) {
    const int kv = kc / 16 * 16; /* columns taken 16 at a time and transposed in registers */
    for (int v = 0; v * 16 < rows; v++) {
        const int left = rows - 16 * v, nr = left < 16 ? left : 16;
        const __mmask16 km = nr == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
        const float *Av = A + (int64_t)16 * v * lda;
        __m512 c = load ? _mm512_maskz_loadu_ps(km, acc + 16 * v) : _mm512_setzero_ps();
        for (int t0 = 0; t0 < kv; t0 += 16) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int l = 0; l < 16; l++) r[l] = l < nr ? _mm512_loadu_ps(Av + l * lda + t0) : _mm512_setzero_ps();
#pragma GCC unroll 16
            for (int l = 0; l < 16; l++) /* the same lines 32 rows on: a database streams from memory */
                _mm_prefetch((const char *)(Av + (l + 32) * lda + t0), _MM_HINT_T0);
            transpose16(r); /* r[j]: column t0 + j, lane l = row l */
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) c = _mm512_fmadd_ps(r[j], _mm512_set1_ps(x[(int64_t)(t0 + j) * incx]), c);
        }
        if (kv < kc) { /* the last columns: a row's elements gathered one column at a time */
            const __m512i off = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                   _mm512_set1_epi32((int)lda));
            for (int t = kv; t < kc; t++)
                c = _mm512_fmadd_ps(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), km, off, Av + t, 4),
                                    _mm512_set1_ps(x[(int64_t)t * incx]), c);
        }
        _mm512_mask_storeu_ps(acc + 16 * v, km, c);
    }
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
