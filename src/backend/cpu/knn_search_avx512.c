/* knn_search_avx512.c - the fused panel of the many-queries search (knn_cpu.c's blocks_fused) in
 * AVX-512F: a 12 x 32 block of products in 24 zmm registers (each lane one fma chain over t in
 * order from 0, as gemm_avx512.c's tile and knn_all_avx2.c's block), turned into keys and tested
 * against the thresholds of the block's queries in registers; only keys at or below their query's
 * threshold leave them.  The keys have the bits of the AVX2 panel and of the portable route
 * (knn_all.h states them): the same products in the same order, the same key arithmetic.  On a
 * CPU with 512-bit FMA units this does twice the work of the AVX2 panel per instruction.  The
 * keys, tests, hits and prefetch are knn_search_avx512.h's, shared with the bfloat16 panel.
 * Compiled with -mavx512f -mfma -ffp-contract=off for this file only (CMakeLists.txt); called only
 * when the run-time path is gemm.c's AVX-512 one. */
#include "backend/cpu/knn_all.h"
#if defined(__x86_64__)
#include "backend/cpu/knn_search_avx512.h"

#define MR SM_SEARCH_MR

static inline __attribute__((always_inline)) int panel(int d, const float *a, int mi, const float *Bp, float alpha,
                                                       int kind, const float *an, const float *bn, const float *tr,
                                                       uint32_t cvalid, const char *next, int64_t next_bytes,
                                                       float *hk, uint32_t *hw) {
    sm_search_prefetch pf = sm_search_prefetch_init(next, next_bytes, mi); /* the next panel, into L2 */
    const float *B0 = Bp, *B1 = Bp + (int64_t)d * SM_ALL_NR; /* columns 0 .. 16 and 16 .. 32 */
    const __m512 al = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
    const __m512 bn0 = kind != 1 ? _mm512_loadu_ps(bn) : zero, bn1 = kind != 1 ? _mm512_loadu_ps(bn + 16) : zero;
    int h = 0;
    for (int done = 0; done < mi;) {
        /* rows i0 .. i0 + 12; the last block moves up to end at mi, its rows before `done`
         * (already tested) masked */
        const int i0 = mi - done < MR ? mi - MR : done;
        const float *ar = a + (int64_t)i0 * d;
        sm_search_prefetch_step(&pf);
        __m512 c[MR][2];
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) c[r][0] = c[r][1] = _mm512_setzero_ps();
        for (int t = 0; t < d; t++) {
            if ((t & 15) == 0) /* the next block's rows, a line at a time */
#pragma GCC unroll 12
                for (int r = 0; r < MR; r++) _mm_prefetch((const char *)(ar + (int64_t)(r + MR) * d + t), _MM_HINT_T0);
            const __m512 b0 = _mm512_loadu_ps(B0 + t * SM_ALL_NR), b1 = _mm512_loadu_ps(B1 + t * SM_ALL_NR);
#pragma GCC unroll 12
            for (int r = 0; r < MR; r++) {
                const __m512 av = _mm512_set1_ps(ar[(int64_t)r * d + t]);
                c[r][0] = _mm512_fmadd_ps(av, b0, c[r][0]);
                c[r][1] = _mm512_fmadd_ps(av, b1, c[r][1]);
            }
        }
        h = sm_search_block_hits(kind, c, al, an, bn0, bn1, tr, i0, done, cvalid, hk, hw, h);
        done = i0 + MR;
    }
    return h;
}

void sm_search_exact_keys(int d, const float *qrow, const float *db, const int64_t *ids, int m, float alpha, int kind,
                          float an, const float *dn, float *keys) {
    for (int j = 0; j < m; j++) {
        const float *x = db + ids[j] * (int64_t)d;
        float acc = 0.0f;
        for (int t = 0; t < d; t++) acc = fmaf(qrow[t], x[t], acc); /* the lanes' chain, in order */
        const float p = alpha * acc;
        float key;
        if (kind == 0) {
            const float s = (an + dn[ids[j]]) + p;
            key = s != s ? (float)INFINITY : (s > 0.0f ? s : 0.0f); /* max(s, +0), NaN +inf */
        } else {
            const float s = kind == 2 ? p * (an * dn[ids[j]]) : p;
            key = s != s ? (float)INFINITY : s;
        }
        keys[j] = key;
    }
}

int sm_search_panel_avx512(int d, const float *a, int mi, const float *Bp, float alpha, int kind, const float *an,
                           const float *bn, const float *tr, uint32_t cvalid, const float *next, int64_t next_rows,
                           float *hk, uint32_t *hw) {
    const char *nx = (const char *)next;
    const int64_t nb = next_rows * d * (int64_t)sizeof(float);
    /* one copy per kind, the kind's branches folded */
    if (kind == 0) return panel(d, a, mi, Bp, alpha, 0, an, bn, tr, cvalid, nx, nb, hk, hw);
    if (kind == 1) return panel(d, a, mi, Bp, alpha, 1, an, bn, tr, cvalid, nx, nb, hk, hw);
    return panel(d, a, mi, Bp, alpha, 2, an, bn, tr, cvalid, nx, nb, hk, hw);
}
#endif
