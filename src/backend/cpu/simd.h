/* simd.h - the small vector primitives that search's scans inline into their loops (a call per
 * 16 floats would cost more than the work): which lanes of a row fall below a threshold.  AVX-512
 * or AVX2 when the build targets them, plain C otherwise (the lanes a scan keeps are the same on
 * every path: no arithmetic is done here).  Kept in the backend so that no file outside src/backend/ uses intrinsics. */
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
#elif defined(__AVX2__)
/* For each 8-bit mask, the indices of its set lanes in order, 3 bits each (lane 0 first). */
static const uint32_t sm_simd_compress8[256] = {
    0x000000, 0x000000, 0x000001, 0x000008, 0x000002, 0x000010, 0x000011, 0x000088,
    0x000003, 0x000018, 0x000019, 0x0000c8, 0x00001a, 0x0000d0, 0x0000d1, 0x000688,
    0x000004, 0x000020, 0x000021, 0x000108, 0x000022, 0x000110, 0x000111, 0x000888,
    0x000023, 0x000118, 0x000119, 0x0008c8, 0x00011a, 0x0008d0, 0x0008d1, 0x004688,
    0x000005, 0x000028, 0x000029, 0x000148, 0x00002a, 0x000150, 0x000151, 0x000a88,
    0x00002b, 0x000158, 0x000159, 0x000ac8, 0x00015a, 0x000ad0, 0x000ad1, 0x005688,
    0x00002c, 0x000160, 0x000161, 0x000b08, 0x000162, 0x000b10, 0x000b11, 0x005888,
    0x000163, 0x000b18, 0x000b19, 0x0058c8, 0x000b1a, 0x0058d0, 0x0058d1, 0x02c688,
    0x000006, 0x000030, 0x000031, 0x000188, 0x000032, 0x000190, 0x000191, 0x000c88,
    0x000033, 0x000198, 0x000199, 0x000cc8, 0x00019a, 0x000cd0, 0x000cd1, 0x006688,
    0x000034, 0x0001a0, 0x0001a1, 0x000d08, 0x0001a2, 0x000d10, 0x000d11, 0x006888,
    0x0001a3, 0x000d18, 0x000d19, 0x0068c8, 0x000d1a, 0x0068d0, 0x0068d1, 0x034688,
    0x000035, 0x0001a8, 0x0001a9, 0x000d48, 0x0001aa, 0x000d50, 0x000d51, 0x006a88,
    0x0001ab, 0x000d58, 0x000d59, 0x006ac8, 0x000d5a, 0x006ad0, 0x006ad1, 0x035688,
    0x0001ac, 0x000d60, 0x000d61, 0x006b08, 0x000d62, 0x006b10, 0x006b11, 0x035888,
    0x000d63, 0x006b18, 0x006b19, 0x0358c8, 0x006b1a, 0x0358d0, 0x0358d1, 0x1ac688,
    0x000007, 0x000038, 0x000039, 0x0001c8, 0x00003a, 0x0001d0, 0x0001d1, 0x000e88,
    0x00003b, 0x0001d8, 0x0001d9, 0x000ec8, 0x0001da, 0x000ed0, 0x000ed1, 0x007688,
    0x00003c, 0x0001e0, 0x0001e1, 0x000f08, 0x0001e2, 0x000f10, 0x000f11, 0x007888,
    0x0001e3, 0x000f18, 0x000f19, 0x0078c8, 0x000f1a, 0x0078d0, 0x0078d1, 0x03c688,
    0x00003d, 0x0001e8, 0x0001e9, 0x000f48, 0x0001ea, 0x000f50, 0x000f51, 0x007a88,
    0x0001eb, 0x000f58, 0x000f59, 0x007ac8, 0x000f5a, 0x007ad0, 0x007ad1, 0x03d688,
    0x0001ec, 0x000f60, 0x000f61, 0x007b08, 0x000f62, 0x007b10, 0x007b11, 0x03d888,
    0x000f63, 0x007b18, 0x007b19, 0x03d8c8, 0x007b1a, 0x03d8d0, 0x03d8d1, 0x1ec688,
    0x00003e, 0x0001f0, 0x0001f1, 0x000f88, 0x0001f2, 0x000f90, 0x000f91, 0x007c88,
    0x0001f3, 0x000f98, 0x000f99, 0x007cc8, 0x000f9a, 0x007cd0, 0x007cd1, 0x03e688,
    0x0001f4, 0x000fa0, 0x000fa1, 0x007d08, 0x000fa2, 0x007d10, 0x007d11, 0x03e888,
    0x000fa3, 0x007d18, 0x007d19, 0x03e8c8, 0x007d1a, 0x03e8d0, 0x03e8d1, 0x1f4688,
    0x0001f5, 0x000fa8, 0x000fa9, 0x007d48, 0x000faa, 0x007d50, 0x007d51, 0x03ea88,
    0x000fab, 0x007d58, 0x007d59, 0x03eac8, 0x007d5a, 0x03ead0, 0x03ead1, 0x1f5688,
    0x000fac, 0x007d60, 0x007d61, 0x03eb08, 0x007d62, 0x03eb10, 0x03eb11, 0x1f5888,
    0x007d63, 0x03eb18, 0x03eb19, 0x1f58c8, 0x03eb1a, 0x1f58d0, 0x1f58d1, 0xfac688,
};
static inline int sm_simd_append_before(const float *row, float t, int32_t tid, int32_t id0, float *keys,
                                        int32_t *ids) {
    const __m256 v = _mm256_loadu_ps(row), tv = _mm256_set1_ps(t);
    const __m256i id = _mm256_add_epi32(_mm256_set1_epi32(id0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 idle = _mm256_castsi256_ps(_mm256_cmpgt_epi32(id, _mm256_set1_epi32(tid))); /* id > tid */
    const __m256 in = _mm256_or_ps(_mm256_cmp_ps(v, tv, _CMP_LT_OQ), _mm256_andnot_ps(idle, _mm256_cmp_ps(v, tv, _CMP_EQ_OQ)));
    const unsigned m = (unsigned)_mm256_movemask_ps(in);
    /* compress in registers by a permutation from the table, then full stores */
    const __m256i perm = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)sm_simd_compress8[m]),
                                                            _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21)),
                                          _mm256_set1_epi32(7));
    _mm256_storeu_ps(keys, _mm256_permutevar8x32_ps(v, perm));
    _mm256_storeu_si256((__m256i *)(void *)ids, _mm256_permutevar8x32_epi32(id, perm));
    return __builtin_popcount(m);
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

#endif
