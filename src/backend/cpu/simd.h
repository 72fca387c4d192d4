/* simd.h - the small vector primitives that search's scans inline into their loops (a call per
 * 16 floats would cost more than the work): which lanes of a row fall below a threshold, and a
 * fused dot product + squared norm.  AVX-512 or AVX2 when the build targets them, plain C
 * otherwise.  Kept in the backend so that no file outside src/backend/ uses intrinsics. */
#ifndef SM_BACKEND_SIMD_H
#define SM_BACKEND_SIMD_H
#include <math.h>
#include <stdint.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* SM_SIMD_LANES candidates per test; sm_simd_lanes_below(row, t, full) is the bitmask of the
 * lanes of row[0 .. SM_SIMD_LANES) whose value is < t (NaN is not), or all lanes if !full. */
#if defined(__AVX512F__)
#define SM_SIMD_LANES 16
static inline unsigned sm_simd_lanes_below(const float *row, float t, int full) {
    if (!full) return 0xFFFFu;
    return (unsigned)_mm512_cmp_ps_mask(_mm512_loadu_ps(row), _mm512_set1_ps(t), _CMP_LT_OQ);
}
#elif defined(__AVX2__)
#define SM_SIMD_LANES 8
static inline unsigned sm_simd_lanes_below(const float *row, float t, int full) {
    if (!full) return 0xFFu;
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row), _mm256_set1_ps(t), _CMP_LT_OQ));
}
#else
#define SM_SIMD_LANES 1
static inline unsigned sm_simd_lanes_below(const float *row, float t, int full) {
    return !full || row[0] < t;
}
#endif

/* sm_simd_lanes_le(row, t): the bitmask of the lanes of row[0 .. SM_SIMD_LANES) whose value is
 * <= t; sm_simd_lanes_le_each(row, t): the same against a threshold per lane, t[0 ..
 * SM_SIMD_LANES) (NaN compares false in both). */
#if defined(__AVX512F__)
static inline unsigned sm_simd_lanes_le(const float *row, float t) {
    return (unsigned)_mm512_cmp_ps_mask(_mm512_loadu_ps(row), _mm512_set1_ps(t), _CMP_LE_OQ);
}
static inline unsigned sm_simd_lanes_le_each(const float *row, const float *t) {
    return (unsigned)_mm512_cmp_ps_mask(_mm512_loadu_ps(row), _mm512_loadu_ps(t), _CMP_LE_OQ);
}
#elif defined(__AVX2__)
static inline unsigned sm_simd_lanes_le(const float *row, float t) {
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row), _mm256_set1_ps(t), _CMP_LE_OQ));
}
static inline unsigned sm_simd_lanes_le_each(const float *row, const float *t) {
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row), _mm256_loadu_ps(t), _CMP_LE_OQ));
}
#else
static inline unsigned sm_simd_lanes_le(const float *row, float t) { return row[0] <= t; }
static inline unsigned sm_simd_lanes_le_each(const float *row, const float *t) { return row[0] <= t[0]; }
#endif

/* The search keys of SM_SIMD_LANES raw products p (alpha already applied), written over p, the
 * same bits as sm_k_dist_entry with SM_K_DIST_NAN_INF: kind 0 (SQL2) (a + b[l]) + p[l] clamped
 * at 0, kind 1 (DOT) p[l], kind 2 (COS) p[l] * (a * b[l]); NaN becomes +inf.  b is unread for
 * kind 1. */
static inline float sm_simd_key1(int kind, float p, float a, float b) {
    float v = p;
    if (kind == 0) {
        v = (a + b) + p;
        v = v > 0.0f ? v : (v != v ? v : 0.0f);
    } else if (kind == 2) {
        v = p * (a * b);
    }
    return v != v ? (float)INFINITY : v;
}
#if defined(__AVX512F__)
static inline void sm_simd_keys(int kind, float *p, float a, const float *b) {
    __m512 v = _mm512_loadu_ps(p);
    if (kind == 0) {
        v = _mm512_add_ps(_mm512_add_ps(_mm512_set1_ps(a), _mm512_loadu_ps(b)), v);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        v = _mm512_max_ps(v, _mm512_setzero_ps()); /* NaN and -0 give the second operand, +0 */
        v = _mm512_mask_blend_ps(nan, v, _mm512_set1_ps((float)INFINITY));
    } else {
        if (kind == 2) v = _mm512_mul_ps(v, _mm512_mul_ps(_mm512_set1_ps(a), _mm512_loadu_ps(b)));
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v, _mm512_set1_ps((float)INFINITY));
    }
    _mm512_storeu_ps(p, v);
}
#elif defined(__AVX2__)
static inline void sm_simd_keys(int kind, float *p, float a, const float *b) {
    __m256 v = _mm256_loadu_ps(p);
    if (kind == 0) {
        v = _mm256_add_ps(_mm256_add_ps(_mm256_set1_ps(a), _mm256_loadu_ps(b)), v);
        const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        v = _mm256_max_ps(v, _mm256_setzero_ps());
        v = _mm256_blendv_ps(v, _mm256_set1_ps((float)INFINITY), nan);
    } else {
        if (kind == 2) v = _mm256_mul_ps(v, _mm256_mul_ps(_mm256_set1_ps(a), _mm256_loadu_ps(b)));
        v = _mm256_blendv_ps(v, _mm256_set1_ps((float)INFINITY), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    _mm256_storeu_ps(p, v);
}
#else
static inline void sm_simd_keys(int kind, float *p, float a, const float *b) {
    p[0] = sm_simd_key1(kind, p[0], a, kind == 1 ? 0.0f : b[0]);
}
#endif

/* Append to keys / ids (room for SM_SIMD_LANES each) the lanes l of row[0 .. SM_SIMD_LANES), with
 * ids id0 + l, that come before (t, tid) in (key, id) order: key < t, or key == t and id <= tid
 * (NaN never); returns how many. */
#if defined(__AVX512F__)
static inline int sm_simd_append_before(const float *row, float t, int32_t tid, int32_t id0, float *keys,
                                        int32_t *ids) {
    const __m512 v = _mm512_loadu_ps(row), tv = _mm512_set1_ps(t);
    const __m512i id = _mm512_add_epi32(_mm512_set1_epi32(id0),
                                        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __mmask16 m = _mm512_cmp_ps_mask(v, tv, _CMP_LT_OQ) |
                        (_mm512_cmp_ps_mask(v, tv, _CMP_EQ_OQ) & _mm512_cmple_epi32_mask(id, _mm512_set1_epi32(tid)));
    /* compress in registers, then a full store (a compressing store to memory is slow on some CPUs) */
    _mm512_storeu_ps(keys, _mm512_maskz_compress_ps(m, v));
    _mm512_storeu_si512((void *)ids, _mm512_maskz_compress_epi32(m, id));
    return __builtin_popcount((unsigned)m);
}
#else
static inline int sm_simd_append_before(const float *row, float t, int32_t tid, int32_t id0, float *keys,
                                        int32_t *ids) {
    int c = 0;
    for (int l = 0; l < SM_SIMD_LANES; l++) {
        const float v = row[l];
        if (v < t || (v == t && id0 + l <= tid)) { keys[c] = v; ids[c] = id0 + l; c++; }
    }
    return c;
}
#endif

/* <a, b> over d floats, summed as sm_simd_dot_and_norm sums it (the same bits). */
static inline float sm_simd_dot(const float *a, const float *b, int d) {
    int t = 0;
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (; t + 32 <= d; t += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t), _mm512_loadu_ps(b + t), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t + 16), _mm512_loadu_ps(b + t + 16), s1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#else
    float s = 0;
#endif
    for (; t < d; t++) s += a[t] * b[t];
    return s;
}

/* <a, b> over d floats, and |b|^2 into *bb. */
static inline float sm_simd_dot_and_norm(const float *a, const float *b, int d, float *bb) {
    int t = 0;
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), n0 = _mm512_setzero_ps();
    for (; t + 32 <= d; t += 32) {
        __m512 b0 = _mm512_loadu_ps(b + t), b1 = _mm512_loadu_ps(b + t + 16);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t), b0, s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t + 16), b1, s1);
        n0 = _mm512_fmadd_ps(b0, b0, n0);
        n0 = _mm512_fmadd_ps(b1, b1, n0);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)), nb = _mm512_reduce_add_ps(n0);
#else
    float s = 0, nb = 0;
#endif
    for (; t < d; t++) { s += a[t] * b[t]; nb += b[t] * b[t]; }
    *bb = nb;
    return s;
}
#endif
