/* knn_all_avx2.c - the fused block of the all-pairs pass (knn_all.h): a 6 x 16 block of products
 * in 12 ymm registers (each lane one fma chain over t in order, as gemm_avx2.c's tile), turned
 * into keys and tested against the thresholds of the block's row and column queries in registers,
 * so that a block none of whose keys can enter a buffer (most of them, once the thresholds are
 * set) is never stored nor scanned.
 * Compiled with -mavx2 -mfma -ffp-contract=off for this file only (CMakeLists.txt); called only
 * when the CPU and OS support AVX2 (knn_cpu.c asks gemm.c's run-time choice). */
#include "backend/cpu/knn_all.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include "backend/cpu/transpose8_avx2.h"

/* The key of 8 products p (alpha applied) with the norms an (broadcast) and b (kind 0 / 2). */
static inline __attribute__((always_inline)) __m256 key8(int kind, __m256 p, __m256 an, __m256 b) {
    const __m256 inf = _mm256_set1_ps((float)INFINITY);
    if (kind == 0) {
        p = _mm256_add_ps(_mm256_add_ps(an, b), p);
        const __m256 nan = _mm256_cmp_ps(p, p, _CMP_UNORD_Q);
        p = _mm256_max_ps(p, _mm256_setzero_ps()); /* NaN and -0 give the second operand, +0 */
        return _mm256_blendv_ps(p, inf, nan);
    }
    if (kind == 2) p = _mm256_mul_ps(p, _mm256_mul_ps(an, b));
    return _mm256_blendv_ps(p, inf, _mm256_cmp_ps(p, p, _CMP_UNORD_Q));
}

/* c[r][h] <- the products of the 6 rows a + r d (stride d, read in place) with the panel Bp
 * (d, 16), columns 8 h .. 8 h + 8: each lane one fma chain over t in order from 0, as the GEMM's
 * tile (gemm_avx2.c).  Inlined, the 12 accumulators stay in registers. */
static inline __attribute__((always_inline)) void products6x16(int d, const float *a, const float *Bp,
                                                               __m256 c[SM_ALL_MR][2]) {
    const float *a0 = a, *a1 = a0 + d, *a2 = a1 + d, *a3 = a2 + d, *a4 = a3 + d, *a5 = a4 + d;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int t = 0; t < d; t++) {
        const __m256 b0 = _mm256_loadu_ps(Bp + t * SM_ALL_NR), b1 = _mm256_loadu_ps(Bp + t * SM_ALL_NR + 8);
        __m256 av;
        av = _mm256_broadcast_ss(a0 + t); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a1 + t); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a2 + t); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a3 + t); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a4 + t); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a5 + t); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    }
    c[0][0] = c00; c[0][1] = c01; c[1][0] = c10; c[1][1] = c11; c[2][0] = c20; c[2][1] = c21;
    c[3][0] = c30; c[3][1] = c31; c[4][0] = c40; c[4][1] = c41; c[5][0] = c50; c[5][1] = c51;
}

/* Append the set lanes of the 16-bit mask m (lanes c of the block row i, keys kr) to hk / hw. */
static inline __attribute__((always_inline)) int emit(uint32_t m, const float *kr, uint32_t tag, float *hk,
                                                      uint32_t *hw, int h) {
    for (; m; m &= m - 1) {
        const int c = __builtin_ctz(m);
        hk[h] = kr[c];
        hw[h] = tag | (uint32_t)c << 1;
        h++;
    }
    return h;
}

static inline __attribute__((always_inline)) int panel(int d, const float *a, int mi, const float *Bp, float alpha,
                                                       int kind, const float *an, const float *bn, const float *tr,
                                                       const float *tc, uint32_t cvalid, float *hk, uint32_t *hw) {
    const __m256 al = _mm256_set1_ps(alpha), zero = _mm256_setzero_ps();
    const __m256 bn0 = kind != 1 ? _mm256_loadu_ps(bn) : zero, bn1 = kind != 1 ? _mm256_loadu_ps(bn + 8) : zero;
    const __m256 tc0 = _mm256_loadu_ps(tc), tc1 = _mm256_loadu_ps(tc + 8);
    _Alignas(32) float keys[SM_ALL_MR * SM_ALL_NR]; /* (MR, NR) */
    int h = 0;
    for (int done = 0; done < mi;) {
        /* the block's rows i0 .. i0 + 6; the last block moves up to end at mi, its rows before
         * `done` (already tested) masked */
        const int i0 = mi - done < SM_ALL_MR ? mi - SM_ALL_MR : done;
        __m256 c[SM_ALL_MR][2];
        products6x16(d, a + (int64_t)i0 * d, Bp, c);
        /* keys, and the lanes at or below a threshold (NaN keys were made +inf: they pass only a
         * +inf threshold, as in the scan of the portable route) */
        uint32_t rm[SM_ALL_MR], cm[SM_ALL_MR], any = 0;
#define SM_ALL_ROW(r, lo, hi)                                                                                     \
    do {                                                                                                         \
        const __m256 anr = kind != 1 ? _mm256_set1_ps(an[i0 + r]) : zero, tv = _mm256_set1_ps(tr[i0 + r]);       \
        lo = key8(kind, _mm256_mul_ps(al, lo), anr, bn0);                                                        \
        hi = key8(kind, _mm256_mul_ps(al, hi), anr, bn1);                                                        \
        rm[r] = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(lo, tv, _CMP_LE_OQ)) |                                 \
                (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(hi, tv, _CMP_LE_OQ)) << 8;                             \
        cm[r] = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(lo, tc0, _CMP_LE_OQ)) |                                \
                (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(hi, tc1, _CMP_LE_OQ)) << 8;                            \
        if (i0 + r < done) rm[r] = cm[r] = 0;                                                                    \
        rm[r] &= cvalid;                                                                                         \
        cm[r] &= cvalid;                                                                                         \
        any |= rm[r] | cm[r];                                                                                    \
    } while (0)
        SM_ALL_ROW(0, c[0][0], c[0][1]);
        SM_ALL_ROW(1, c[1][0], c[1][1]);
        SM_ALL_ROW(2, c[2][0], c[2][1]);
        SM_ALL_ROW(3, c[3][0], c[3][1]);
        SM_ALL_ROW(4, c[4][0], c[4][1]);
        SM_ALL_ROW(5, c[5][0], c[5][1]);
#undef SM_ALL_ROW
        if (any) {
            _mm256_store_ps(keys + 0 * SM_ALL_NR, c[0][0]); _mm256_store_ps(keys + 0 * SM_ALL_NR + 8, c[0][1]);
            _mm256_store_ps(keys + 1 * SM_ALL_NR, c[1][0]); _mm256_store_ps(keys + 1 * SM_ALL_NR + 8, c[1][1]);
            _mm256_store_ps(keys + 2 * SM_ALL_NR, c[2][0]); _mm256_store_ps(keys + 2 * SM_ALL_NR + 8, c[2][1]);
            _mm256_store_ps(keys + 3 * SM_ALL_NR, c[3][0]); _mm256_store_ps(keys + 3 * SM_ALL_NR + 8, c[3][1]);
            _mm256_store_ps(keys + 4 * SM_ALL_NR, c[4][0]); _mm256_store_ps(keys + 4 * SM_ALL_NR + 8, c[4][1]);
            _mm256_store_ps(keys + 5 * SM_ALL_NR, c[5][0]); _mm256_store_ps(keys + 5 * SM_ALL_NR + 8, c[5][1]);
            for (int r = 0; r < SM_ALL_MR; r++) {
                const uint32_t tag = (uint32_t)(i0 + r) << 5;
                h = emit(rm[r], keys + r * SM_ALL_NR, tag, hk, hw, h);
                h = emit(cm[r], keys + r * SM_ALL_NR, tag | 1u, hk, hw, h);
            }
        }
        done = i0 + SM_ALL_MR;
    }
    return h;
}

int sm_all_panel_avx2(int d, const float *a, int mi, const float *Bp, float alpha, int kind, const float *an,
                      const float *bn, const float *tr, const float *tc, uint32_t cvalid, float *hk, uint32_t *hw) {
    /* one copy per kind, the kind's branches folded */
    if (kind == 0) return panel(d, a, mi, Bp, alpha, 0, an, bn, tr, tc, cvalid, hk, hw);
    if (kind == 1) return panel(d, a, mi, Bp, alpha, 1, an, bn, tr, tc, cvalid, hk, hw);
    return panel(d, a, mi, Bp, alpha, 2, an, bn, tr, tc, cvalid, hk, hw);
}

void sm_all_pack_avx2(const float *x, int d, float *Bp) {
    int t = 0;
    for (; t + 8 <= d; t += 8)
        for (int g = 0; g < SM_ALL_NR; g += 8) { /* columns g .. g + 8: an 8 x 8 transpose */
            __m256 r[8], c[8];
            for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(x + (int64_t)(g + l) * d + t);
            transpose8(r, c);
            for (int u = 0; u < 8; u++) _mm256_storeu_ps(Bp + (t + u) * SM_ALL_NR + g, c[u]);
        }
    for (; t < d; t++)
        for (int c = 0; c < SM_ALL_NR; c++) Bp[t * SM_ALL_NR + c] = x[(int64_t)c * d + t];
}

/* ---- top-1 against a small database (knn_all.h, sm_top1_panel_avx2) ---- */
static inline __attribute__((always_inline)) void top1_panel(int d, const float *db, int n, const float *Bp,
                                                             float alpha, int kind, const float *dn, const float *qn,
                                                             int64_t skip, float *bk, int32_t *bi) {
    const __m256 al = _mm256_set1_ps(alpha), zero = _mm256_setzero_ps();
    const __m256 qn0 = kind != 1 ? _mm256_loadu_ps(qn) : zero, qn1 = kind != 1 ? _mm256_loadu_ps(qn + 8) : zero;
    const __m256i lane0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), lane1 = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
    __m256 k0 = _mm256_loadu_ps(bk), k1 = _mm256_loadu_ps(bk + 8);
    __m256 i0v = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)bi));
    __m256 i1v = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(bi + 8)));
    for (int done = 0; done < n;) {
        /* rows r0 .. r0 + 6; the last block moves up to end at n (its rows before `done` come
         * again: their keys are not below the minimum they already entered, so nothing changes) */
        const int r0 = n - done < SM_ALL_MR ? n - SM_ALL_MR : done;
        __m256 c[SM_ALL_MR][2];
        products6x16(d, db + (int64_t)r0 * d, Bp, c);
        /* rows in increasing order: take the key where the lane has none yet or it is strictly
         * smaller (ties to the lower row), except lane r - skip (the query's own row) */
#define SM_TOP1_ROW(r, lo, hi)                                                                                    \
    do {                                                                                                         \
        const int64_t rr64 = (int64_t)(r0 + r) - skip;                                                           \
        const __m256i rr = _mm256_set1_epi32(rr64 >= 0 && rr64 < SM_ALL_NR ? (int)rr64 : -1);                    \
        const __m256 anr = kind != 1 ? _mm256_set1_ps(dn[r0 + r]) : zero;                                        \
        const __m256 id = _mm256_castsi256_ps(_mm256_set1_epi32(r0 + r));                                        \
        lo = key8(kind, _mm256_mul_ps(al, lo), anr, qn0);                                                        \
        hi = key8(kind, _mm256_mul_ps(al, hi), anr, qn1);                                                        \
        __m256 t0 = _mm256_or_ps(_mm256_cmp_ps(lo, k0, _CMP_LT_OQ),                                               \
                                 _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_setzero_si256(),                  \
                                                                        _mm256_castps_si256(i0v))));             \
        __m256 t1 = _mm256_or_ps(_mm256_cmp_ps(hi, k1, _CMP_LT_OQ),                                               \
                                 _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_setzero_si256(),                  \
                                                                        _mm256_castps_si256(i1v))));             \
        t0 = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(lane0, rr)), t0);                           \
        t1 = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(lane1, rr)), t1);                           \
        k0 = _mm256_blendv_ps(k0, lo, t0);                                                                       \
        k1 = _mm256_blendv_ps(k1, hi, t1);                                                                       \
        i0v = _mm256_blendv_ps(i0v, id, t0);                                                                     \
        i1v = _mm256_blendv_ps(i1v, id, t1);                                                                     \
    } while (0)
        SM_TOP1_ROW(0, c[0][0], c[0][1]);
        SM_TOP1_ROW(1, c[1][0], c[1][1]);
        SM_TOP1_ROW(2, c[2][0], c[2][1]);
        SM_TOP1_ROW(3, c[3][0], c[3][1]);
        SM_TOP1_ROW(4, c[4][0], c[4][1]);
        SM_TOP1_ROW(5, c[5][0], c[5][1]);
#undef SM_TOP1_ROW
        done = r0 + SM_ALL_MR;
    }
    _mm256_storeu_ps(bk, k0);
    _mm256_storeu_ps(bk + 8, k1);
    _mm256_storeu_si256((__m256i *)bi, _mm256_castps_si256(i0v));
    _mm256_storeu_si256((__m256i *)(bi + 8), _mm256_castps_si256(i1v));
}

void sm_top1_panel_avx2(int d, const float *db, int n, const float *Bp, float alpha, int kind, const float *dn,
                        const float *qn, int64_t skip, float *bk, int32_t *bi) {
    if (kind == 0) top1_panel(d, db, n, Bp, alpha, 0, dn, qn, skip, bk, bi);
    else if (kind == 1) top1_panel(d, db, n, Bp, alpha, 1, dn, qn, skip, bk, bi);
    else top1_panel(d, db, n, Bp, alpha, 2, dn, qn, skip, bk, bi);
}
#endif
