/* knn_few_avx2.c - the AVX2 scores of the few-queries fused search pass (knn_few.h): 8 database
 * rows at a time (8 consecutive ones, or one from each of 8 streams: sm_few_keys8_avx2), loaded
 * and transposed 8 x 8 in registers so that lane l owns row l, each score one chain of
 * multiplies and adds over t in order (the bits of sm_few_keys_c).
 * Compiled with -mavx2 -mfma -ffp-contract=off for this file only (CMakeLists.txt); called only
 * when the CPU and OS support AVX2 (knn_cpu.c asks gemm.c's run-time choice). */
#include "backend/cpu/knn_few.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include "backend/cpu/transpose8_avx2.h"
#include <math.h>

#ifndef FEW_PF
#define FEW_PF 32 /* prefetch the rows this far ahead */
#endif


/* The sums of 8 rows (row l at rows + l ls; ls = d: 8 consecutive rows) for nq queries: s[i]
 * (lane l: <q_i, row_l>) and, if norm, bb (lane l: |row_l|^2), each s = s + q * r in order of t. */
static inline __attribute__((always_inline)) void sums8(const float *rows, int64_t ls, int d, const float *q, int nq,
                                                        int norm, __m256 *s, __m256 *bb) {
    __m256 n = _mm256_setzero_ps();
    for (int i = 0; i < nq; i++) s[i] = _mm256_setzero_ps();
    int t = 0;
    for (; t + 8 <= d; t += 8) {
        __m256 r[8], c[8];
#pragma GCC unroll 8
        for (int l = 0; l < 8; l++) {
            if (ls == d) _mm_prefetch((const char *)(rows + (int64_t)(l + FEW_PF) * d + t), _MM_HINT_T0);
            r[l] = _mm256_loadu_ps(rows + (int64_t)l * ls + t);
        }
        transpose8(r, c);
        if (norm)
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) n = _mm256_add_ps(n, _mm256_mul_ps(c[u], c[u]));
        for (int i = 0; i < nq; i++) {
            const float *qi = q + (int64_t)i * d + t;
            __m256 a = s[i];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(qi[u]), c[u]));
            s[i] = a;
        }
    }
    for (; t < d; t++) {
        const __m256 c = _mm256_setr_ps(rows[t], rows[ls + t], rows[2 * ls + t], rows[3 * ls + t], rows[4 * ls + t],
                                        rows[5 * ls + t], rows[6 * ls + t], rows[7 * ls + t]);
        if (norm) n = _mm256_add_ps(n, _mm256_mul_ps(c, c));
        for (int i = 0; i < nq; i++) s[i] = _mm256_add_ps(s[i], _mm256_mul_ps(_mm256_set1_ps(q[(int64_t)i * d + t]), c));
    }
    *bb = n;
}

static inline __attribute__((always_inline)) int block(const float *rows, int64_t ls, int m, int d, const float *q,
                                                       int nq, int kind, const float *qn, float *keys) {
    const __m256 zero = _mm256_setzero_ps(), inf = _mm256_set1_ps((float)INFINITY);
    const __m256 sign = _mm256_set1_ps(-0.0f), two = _mm256_set1_ps(2.0f);
    __m256 s[16], bb, badv = zero;
    int j = 0;
    for (; j + 8 <= m; j += 8) {
        /* 8 consecutive rows (ls = d), or step j / 8 of 8 lanes' streams */
        sums8(rows + (ls == d ? (int64_t)j : (int64_t)j / 8) * d, ls, d, q, nq, kind != 1, s, &bb);
        for (int i = 0; i < nq; i++) {
            __m256 v;
            if (kind == 1) v = _mm256_xor_ps(s[i], sign); /* -s */
            else if (kind == 0) {
                v = _mm256_sub_ps(_mm256_add_ps(_mm256_set1_ps(qn[i]), bb), _mm256_mul_ps(two, s[i]));
                const __m256 keep = _mm256_or_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                v = _mm256_and_ps(v, keep); /* v > 0 or NaN: v, else +0 */
            } else {
                const __m256 a = _mm256_xor_ps(
                    _mm256_div_ps(_mm256_mul_ps(s[i], _mm256_set1_ps(qn[i])), _mm256_sqrt_ps(bb)), sign);
                const __m256 z = _mm256_mul_ps(sign, s[i]);
                v = _mm256_blendv_ps(bb, z, _mm256_cmp_ps(bb, bb, _CMP_ORD_Q));
                v = _mm256_blendv_ps(v, a, _mm256_cmp_ps(bb, zero, _CMP_GT_OQ));
            }
            const __m256 bad = _mm256_cmp_ps(_mm256_sub_ps(v, v), zero, _CMP_NEQ_UQ); /* NaN or inf */
            badv = _mm256_or_ps(badv, bad);
            _mm256_storeu_ps(keys + (int64_t)i * SM_FEW_BLOCK + j, _mm256_blendv_ps(v, inf, bad));
        }
    }
    int flag = _mm256_movemask_ps(badv) != 0;
    if (j < m) { /* the last rows: the same arithmetic in C */
        float tail[16 * SM_FEW_BLOCK];
        flag |= sm_few_keys_c(rows + (int64_t)j * d, m - j, d, q, nq, kind, qn, tail);
        for (int i = 0; i < nq; i++)
            for (int l = 0; l < m - j; l++) keys[(int64_t)i * SM_FEW_BLOCK + j + l] = tail[i * SM_FEW_BLOCK + l];
    }
    return flag;
}

/* Copies of block with the common counts folded in (the sums stay in registers). */
static int keys_of(const float *rows, int64_t ls, int m, int d, const float *q, int nq, int kind, const float *qn,
                   float *keys) {
    if (nq == 1) {
        if (kind == 1) return block(rows, ls, m, d, q, 1, 1, qn, keys);
        if (kind == 0) return block(rows, ls, m, d, q, 1, 0, qn, keys);
        return block(rows, ls, m, d, q, 1, 2, qn, keys);
    }
    return block(rows, ls, m, d, q, nq, kind, qn, keys);
}

int sm_few_keys_avx2(const float *rows, int m, int d, const float *q, int nq, int kind, const float *qn,
                     float *keys) {
    if (nq > 16) return sm_few_keys_c(rows, m, d, q, nq, kind, qn, keys);
    return keys_of(rows, d, m, d, q, nq, kind, qn, keys);
}

int sm_few_keys8_avx2(const float *rows, int64_t lane_rows, int steps, int d, const float *q, int nq, int kind,
                      const float *qn, float *keys) {
    return keys_of(rows, lane_rows * d, 8 * steps, d, q, nq, kind, qn, keys);
}
#endif
