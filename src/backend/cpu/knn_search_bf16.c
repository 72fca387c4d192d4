/* knn_search_bf16.c - the bfloat16 pre-pass of the many-queries search (knn_cpu.c's blocks_bf16,
 * knn_all.h states the contract): the database and the queries rounded to bfloat16 (round to
 * nearest even), their products by VDPBF16PS (two bfloat16 products added into a float lane per
 * instruction: twice the multiply-adds of an fp32 FMA per instruction) in a 12 x 32 block of 24
 * zmm registers, turned into approximate keys with the exact path's key arithmetic and tested
 * against thresholds in registers.  These keys only choose candidates; knn_cpu.c rescores every
 * candidate with the fp32 chain (sm_search_exact_keys_avx512) and the results are the exact ones.
 * Compiled with -mavx512f -mavx512bf16 -mfma -ffp-contract=off for this file only
 * (CMakeLists.txt); called only when the CPU has AVX512_BF16 (sm_cpu_has_avx512bf16) and the
 * run-time path is AVX-512. */
#include "backend/cpu/knn_all.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define MR 12 /* query rows of a block */

/* x rounded to bfloat16, to nearest even (finite x; the caller checks): the upper 16 bits */
static inline uint32_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

/* pairs (d2 = (d + 1) / 2) of row x: word u = bf16(x[2u]) | bf16(x[2u + 1]) << 16 (0 past d) */
static inline uint32_t pair_of(const float *x, int d, int u) {
    const uint32_t lo = bf16_bits(x[2 * u]), hi = 2 * u + 1 < d ? bf16_bits(x[2 * u + 1]) : 0u;
    return lo | hi << 16;
}

void sm_search_bf16_rows(const float *x, int m, int d, uint32_t *out) {
    const int d2 = (d + 1) / 2;
    for (int i = 0; i < m; i++)
        for (int u = 0; u < d2; u++) out[(int64_t)i * d2 + u] = pair_of(x + (int64_t)i * d, d, u);
}

void sm_search_bf16_panel_pack(const float *x, int d, uint32_t *P) {
    const int d2 = (d + 1) / 2;
    for (int c = 0; c < SM_SEARCH_NR; c++)
        for (int u = 0; u < d2; u++) P[u * SM_SEARCH_NR + c] = pair_of(x + (int64_t)c * d, d, u);
}

/* key16 of knn_search_avx512.c */
static inline __attribute__((always_inline)) __m512 key16(int kind, __m512 p, __m512 an, __m512 b) {
    const __m512 inf = _mm512_set1_ps((float)INFINITY);
    if (kind == 0) {
        p = _mm512_add_ps(_mm512_add_ps(an, b), p);
        const __mmask16 nan = _mm512_cmp_ps_mask(p, p, _CMP_UNORD_Q);
        p = _mm512_max_ps(p, _mm512_setzero_ps());
        return _mm512_mask_blend_ps(nan, p, inf);
    }
    if (kind == 2) p = _mm512_mul_ps(p, _mm512_mul_ps(an, b));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(p, p, _CMP_UNORD_Q), p, inf);
}

static inline __attribute__((always_inline)) int panel(int d2, const uint32_t *Qb, int mi, const uint32_t *P,
                                                       float alpha, int kind, const float *an, const float *bn,
                                                       const float *tr, uint32_t cvalid, const char *next,
                                                       int64_t next_bytes, float *hk, uint32_t *hw) {
    const int64_t blocks = (mi + MR - 1) / MR, lines = (next_bytes + 63) / 64, per = (lines + blocks - 1) / blocks;
    int64_t line = 0;
    const __m512 al = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
    const __m512 bn0 = kind != 1 ? _mm512_loadu_ps(bn) : zero, bn1 = kind != 1 ? _mm512_loadu_ps(bn + 16) : zero;
    int h = 0;
    for (int done = 0; done < mi;) {
        const int i0 = mi - done < MR ? mi - MR : done;
        const uint32_t *ar = Qb + (int64_t)i0 * d2;
        for (int64_t e = line + per; line < e && line < lines; line++) _mm_prefetch(next + line * 64, _MM_HINT_T1);
        __m512 c[MR][2];
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) c[r][0] = c[r][1] = _mm512_setzero_ps();
        for (int u = 0; u < d2; u++) {
            const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(P + u * SM_SEARCH_NR));
            const __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(P + u * SM_SEARCH_NR + 16));
#pragma GCC unroll 12
            for (int r = 0; r < MR; r++) {
                const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ar[(int64_t)r * d2 + u]);
                c[r][0] = _mm512_dpbf16_ps(c[r][0], av, b0);
                c[r][1] = _mm512_dpbf16_ps(c[r][1], av, b1);
            }
        }
        uint32_t rm[MR], any = 0;
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            const __m512 anr = kind != 1 ? _mm512_set1_ps(an[i0 + r]) : zero, tv = _mm512_set1_ps(tr[i0 + r]);
            c[r][0] = key16(kind, _mm512_mul_ps(al, c[r][0]), anr, bn0);
            c[r][1] = key16(kind, _mm512_mul_ps(al, c[r][1]), anr, bn1);
            rm[r] = ((uint32_t)_mm512_cmp_ps_mask(c[r][0], tv, _CMP_LE_OQ) |
                     (uint32_t)_mm512_cmp_ps_mask(c[r][1], tv, _CMP_LE_OQ) << 16) & cvalid;
            if (i0 + r < done) rm[r] = 0;
            any |= rm[r];
        }
        if (any) {
            _Alignas(64) float keys[2 * SM_SEARCH_NR];
            for (int r = 0; r < MR; r++) {
                if (!rm[r]) continue;
                _mm512_store_ps(keys, c[r][0]);
                _mm512_store_ps(keys + 16, c[r][1]);
                for (uint32_t m = rm[r]; m; m &= m - 1) {
                    const int col = __builtin_ctz(m);
                    hk[h] = keys[col];
                    hw[h] = (uint32_t)(i0 + r) << 5 | (uint32_t)col;
                    h++;
                }
            }
        }
        done = i0 + MR;
    }
    return h;
}

int sm_search_bf16_panel(int d, const uint32_t *Qb, int mi, const uint32_t *P, float alpha, int kind, const float *an,
                         const float *bn, const float *tr, uint32_t cvalid, const uint32_t *next, float *hk,
                         uint32_t *hw) {
    const int d2 = (d + 1) / 2;
    const char *nx = (const char *)next;
    const int64_t nb = next ? (int64_t)d2 * SM_SEARCH_NR * (int64_t)sizeof(uint32_t) : 0;
    if (kind == 0) return panel(d2, Qb, mi, P, alpha, 0, an, bn, tr, cvalid, nx, nb, hk, hw);
    if (kind == 1) return panel(d2, Qb, mi, P, alpha, 1, an, bn, tr, cvalid, nx, nb, hk, hw);
    return panel(d2, Qb, mi, P, alpha, 2, an, bn, tr, cvalid, nx, nb, hk, hw);
}
#endif
