/* knn_search_bf16.c - the bfloat16 pre-pass of the many-queries search (knn_cpu.c's blocks_bf16,
 * knn_all.h states the contract): the database and the queries rounded to bfloat16 (round to
 * nearest even), their products by VDPBF16PS (two bfloat16 products added into a float lane per
 * instruction: twice the multiply-adds of an fp32 FMA per instruction) in a 12 x 32 block of 24
 * zmm registers, turned into approximate keys with the exact path's key arithmetic and tested
 * against thresholds in registers (knn_search_avx512.h, shared with the fp32 panel).  These keys
 * only choose candidates; knn_cpu.c rescores every candidate with the fp32 chain
 * (sm_search_exact_keys) and the results are the exact ones.
 * Compiled with -mavx512f -mavx512bf16 -mfma -ffp-contract=off for this file only
 * (CMakeLists.txt); called only when the CPU has AVX512_BF16 (sm_cpu_has_avx512bf16) and the
 * run-time path is AVX-512. */
#include "backend/cpu/knn_all.h"
#if defined(__x86_64__)
#include "backend/cpu/knn_search_avx512.h"
#include <string.h>

#define MR SM_SEARCH_MR

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

static inline __attribute__((always_inline)) int panel(int d2, const uint32_t *Qb, int mi, const uint32_t *P,
                                                       float alpha, int kind, const float *an, const float *bn,
                                                       const float *tr, uint32_t cvalid, const char *next,
                                                       int64_t next_bytes, float *hk, uint32_t *hw) {
    sm_search_prefetch pf = sm_search_prefetch_init(next, next_bytes, mi); /* the next panel, into L2 */
    const __m512 al = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
    const __m512 bn0 = kind != 1 ? _mm512_loadu_ps(bn) : zero, bn1 = kind != 1 ? _mm512_loadu_ps(bn + 16) : zero;
    int h = 0;
    for (int done = 0; done < mi;) {
        const int i0 = mi - done < MR ? mi - MR : done;
        const uint32_t *ar = Qb + (int64_t)i0 * d2;
        sm_search_prefetch_step(&pf);
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
        h = sm_search_block_hits(kind, c, al, an, bn0, bn1, tr, i0, done, cvalid, hk, hw, h);
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
