/* simd.h - the small vector primitives that search's scans inline into their loops (a call per
 * 16 floats would cost more than the work): which lanes of a row fall below a threshold, and a
 * fused dot product + squared norm.  AVX-512 or AVX2 when the build targets them, plain C
 * otherwise.  Kept in the backend so that no file outside src/backend/ uses intrinsics. */
#ifndef SM_BACKEND_SIMD_H
#define SM_BACKEND_SIMD_H
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
