/* knn_search_avx512.h - what the two AVX-512 panels of the many-queries search share
 * (knn_search_avx512.c, fp32 products; knn_search_bf16.c, bfloat16 products): the block shape,
 * the keys of a block's products (knn_all.h's arithmetic, lane for lane knn_all_avx2.c's key8),
 * the threshold tests and the hits' output, and the prefetch of the next panel.  Include only from
 * a file compiled with -mavx512f. */
#ifndef SM_BACKEND_KNN_SEARCH_AVX512_H
#define SM_BACKEND_KNN_SEARCH_AVX512_H
#include "backend/cpu/knn_all.h"
#include <immintrin.h>
#include <math.h>

#define SM_SEARCH_MR 12 /* query rows of a block */

/* The key of 16 products p (alpha applied) with the norms an (broadcast) and b (kind 0 / 2). */
static inline __attribute__((always_inline)) __m512 sm_search_key16(int kind, __m512 p, __m512 an, __m512 b) {
    const __m512 inf = _mm512_set1_ps((float)INFINITY);
    if (kind == 0) {
        p = _mm512_add_ps(_mm512_add_ps(an, b), p);
        const __mmask16 nan = _mm512_cmp_ps_mask(p, p, _CMP_UNORD_Q);
        p = _mm512_max_ps(p, _mm512_setzero_ps()); /* NaN and -0 give the second operand, +0 */
        return _mm512_mask_blend_ps(nan, p, inf);
    }
    if (kind == 2) p = _mm512_mul_ps(p, _mm512_mul_ps(an, b));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(p, p, _CMP_UNORD_Q), p, inf);
}

/* The products c of block rows i0 .. i0 + 12 (alpha not applied) turned into keys (an the rows'
 * norms, bn0 / bn1 the columns'), each key <= its row's threshold tr[i0 + r] in a column of cvalid
 * (rows before done already tested: masked) appended as hk[h] = key, hw[h] = (i0 + r) << 5 | col,
 * rows in order and columns in order within a row (NaN keys were made +inf: they pass only a +inf
 * threshold, as in the scan of the portable route).  Returns the new h. */
static inline __attribute__((always_inline)) int sm_search_block_hits(int kind, __m512 c[SM_SEARCH_MR][2], __m512 al,
                                                                      const float *an, __m512 bn0, __m512 bn1,
                                                                      const float *tr, int i0, int done,
                                                                      uint32_t cvalid, float *hk, uint32_t *hw,
                                                                      int h) {
    const __m512 zero = _mm512_setzero_ps();
    uint32_t rm[SM_SEARCH_MR], any = 0;
#pragma GCC unroll 12
    for (int r = 0; r < SM_SEARCH_MR; r++) {
        const __m512 anr = kind != 1 ? _mm512_set1_ps(an[i0 + r]) : zero, tv = _mm512_set1_ps(tr[i0 + r]);
        c[r][0] = sm_search_key16(kind, _mm512_mul_ps(al, c[r][0]), anr, bn0);
        c[r][1] = sm_search_key16(kind, _mm512_mul_ps(al, c[r][1]), anr, bn1);
        rm[r] = ((uint32_t)_mm512_cmp_ps_mask(c[r][0], tv, _CMP_LE_OQ) |
                 (uint32_t)_mm512_cmp_ps_mask(c[r][1], tv, _CMP_LE_OQ) << 16) & cvalid;
        if (i0 + r < done) rm[r] = 0;
        any |= rm[r];
    }
    if (any) {
        _Alignas(64) float keys[SM_SEARCH_NR];
        for (int r = 0; r < SM_SEARCH_MR; r++) {
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
    return h;
}

/* The next panel's bytes, prefetched into L2 a few lines per block of a panel of mi rows. */
typedef struct sm_search_prefetch {
    const char *next;
    int64_t lines, per, line;
} sm_search_prefetch;

static inline sm_search_prefetch sm_search_prefetch_init(const void *next, int64_t bytes, int mi) {
    const int64_t blocks = (mi + SM_SEARCH_MR - 1) / SM_SEARCH_MR, lines = (bytes + 63) / 64;
    const sm_search_prefetch p = {(const char *)next, lines, (lines + blocks - 1) / blocks, 0};
    return p;
}

static inline __attribute__((always_inline)) void sm_search_prefetch_step(sm_search_prefetch *p) {
    for (int64_t e = p->line + p->per; p->line < e && p->line < p->lines; p->line++)
        _mm_prefetch(p->next + p->line * 64, _MM_HINT_T1);
}
#endif
