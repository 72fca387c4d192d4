/* knn_cpu.c - the CPU backend's k-NN selection (the knn operation), after FAISS IndexFlat:
 * precomputed norms, tiled distance tiles (query tiles x database tiles: one sgemm, then
 * |x|^2 + |y|^2 - 2<x, y> clamped at 0 for L2), a top-1 path for k = 1, per-query max-heaps for
 * small k and a partial selection on whole rows for large k (a sampled threshold, one filtering
 * pass, an exact select and a stable radix sort of the few survivors).  The keys come straight
 * out of sgemm (alpha folds the sign and the factor 2).  The top-1 and heap scans skip 16
 * (AVX-512) or 8 (AVX2) candidates at a time that cannot enter.
 * Threading: many queries -> each thread takes whole query blocks with its own single-threaded
 * sgemm and selection (no barrier between them), or with the products, keys and threshold tests
 * fused in panels of 16 (AVX2) or 32 (AVX-512, knn_search_avx512.c) database rows, the same keys
 * either way, and on a CPU with AVX512_BF16 a bfloat16 pre-pass that picks candidates whose exact
 * keys are then computed in fp32 (blocks_bf16: the same results, proven below); a few queries ->
 * one fused pass over the
 * database split in per-thread blocks (scores and norms from the same load, per-thread heaps
 * merged), with the database's finiteness checked through the scores (a non-finite row always
 * gives a non-finite score), which saves a pass over the database per call; otherwise the
 * products are threaded inside sgemm and OpenMP threads the selection.
 *
 * Which path a call takes, and the workspace it needs, is decided once by knn_make_plan (the
 * caller sizes the workspace with sm_k_knn_ws; nothing here allocates).  Internally every
 * candidate gets a key where smaller is better: the squared L2 distance, or the negated inner
 * product / cosine.  Candidates are ordered by (key, index), so ties go to the lower index and
 * the result is deterministic.  The caller's dist/idx buffers double as the heap storage;
 * nothing is written to them before the database is known to be finite. */
#include "backend/cpu/kernels.h"
#include "core/core.h"

#include "backend/cpu/gemm.h"
#include "backend/cpu/knn_all.h"
#include "backend/cpu/knn_few.h"
#include "backend/cpu/simd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

enum { MODE_TOP1, MODE_HEAP, MODE_SELECT };

#define HEAP_MAX_K 256                 /* larger k uses whole-row selection               */
#define TILE_Q 4096                    /* query rows per tile (FAISS bs_x)                */
#define TILE_DB 1024                   /* database rows per tile (FAISS bs_y), at least   */
#define TILE_FLOATS ((int64_t)1 << 22) /* heap/top-1 tile: 16 MiB of scores              */
#define SELECT_FLOATS ((int64_t)1 << 25) /* selection: 128 MiB of whole score rows        */
#define SELECT_MAX_BQ 1024             /* selection: at most this many rows per tile      */
#define SELECT_MAX_N ((int64_t)1 << 26) /* above this n the heap is used for any k         */
#define PAR_WORK ((int64_t)1 << 21)  /* n * d below this: one thread (a parallel region costs
                                       * more than it saves, worst on a loaded machine) */
#define TINY_WORK 65536                /* nq * n * d below this: plain loops, no BLAS     */
#define LAZY_MAX_NQ 16                 /* up to this many queries: lazy database check    */
#define BLOCK_Q 512                    /* many queries: queries per thread block          */
#define BLOCK_DB 1024                  /* many queries: database rows per thread tile     */
#define FEW_MIN_WORK ((int64_t)1 << 16) /* n * d from which a few queries take the fused pass */
#define SAMPLE 4096                    /* keys sampled per row for the selection threshold */
#define SMALL_DB_MAX 256               /* top-1 against at most this many database rows: the
                                        * transposed tiles of PATH_SMALL_DB */
#define SMALL_DB_FLOATS 49152          /* PATH_SMALL_DB: a thread's tile (192 KiB, in L2)  */

/* 1 if candidate (ka, ia) is strictly worse than (kb, ib); an empty slot (index < 0) is worse
 * than any candidate. */
static inline int worse(float ka, int64_t ia, float kb, int64_t ib) {
    if (ia < 0) return ib >= 0;
    if (ib < 0) return 0;
    return ka > kb || (ka == kb && ia > ib);
}

/* ---- max-heap of the k best so far, worst at the root ------------------------------------ */
static void heap_replace_top(float *hk, int64_t *hi, int k, float key, int64_t id) {
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, c;
        if (l >= k) break;
        c = (r < k && worse(hk[r], hi[r], hk[l], hi[l])) ? r : l;
        if (!worse(hk[c], hi[c], key, id)) break;
        hk[i] = hk[c];
        hi[i] = hi[c];
        i = c;
    }
    hk[i] = key;
    hi[i] = id;
}

/* Sort a heap in place into best-first order (heap sort: pop the worst to the back). */
static void heap_sort(float *hk, int64_t *hi, int k) {
    for (int m = k - 1; m > 0; m--) {
        float tk = hk[m];
        int64_t ti = hi[m];
        hk[m] = hk[0];
        hi[m] = hi[0];
        heap_replace_top(hk, hi, m, tk, ti);
    }
}

/* ---- selection on (key, index) pairs ------------------------------------------------------ */
typedef struct cand { float key; int64_t id; } cand;

/* The r-th smallest (0-based) of a[0..m), r < m, NaN-free; a is reordered. */
static float float_select(float *a, int64_t m, int64_t r) {
    int64_t lo = 0, hi = m - 1;
    while (hi > lo) {
        float p = a[lo + (hi - lo) / 2], t;
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (p < a[j]) j--;
            if (i <= j) { t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (r <= j) hi = j;
        else if (r >= i) lo = i;
        else break;
    }
    return a[r];
}

/* The r-th smallest (0-based) of a[0..m), r < m, NaN-free; a is reordered.  Bucket passes: the
 * range [min, max] is cut into BUCKETS equal bins (a monotone map, so bins are ordered), the bin
 * holding rank r is kept and the rest dropped, until few remain for float_select. */
#define BUCKETS 1024
static float float_kth(float *a, int64_t m, int64_t r) {
    uint32_t cnt[BUCKETS];
    while (m > 256) {
        float lo = a[0], hi = a[0];
        for (int64_t i = 1; i < m; i++) {
            lo = a[i] < lo ? a[i] : lo;
            hi = a[i] > hi ? a[i] : hi;
        }
        if (!(hi > lo)) return lo;
        float scale = (float)BUCKETS / (hi - lo);
        if (!(scale < INFINITY) || !(scale > 0)) break; /* an infinite or tiny range */
        memset(cnt, 0, sizeof cnt);
        for (int64_t i = 0; i < m; i++) {
            int b = (int)((a[i] - lo) * scale);
            cnt[b < BUCKETS ? b : BUCKETS - 1]++;
        }
        int64_t below = 0;
        int bs = 0;
        while (below + cnt[bs] <= r) below += cnt[bs++];
        if ((int64_t)cnt[bs] == m) break; /* no progress (rounding) */
        int64_t j = 0;
        for (int64_t i = 0; i < m; i++) {
            int b = (int)((a[i] - lo) * scale);
            if ((b < BUCKETS ? b : BUCKETS - 1) == bs) a[j++] = a[i];
        }
        m = j;
        r -= below;
    }
    return float_select(a, m, r);
}

/* Order-preserving unsigned image of a float (no NaN): a < b iff fkey(a) < fkey(b). */
static inline uint32_t fkey(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Sort c[0..m) by key with a stable LSD radix sort (4 passes of 8 bits, constant passes skipped);
 * equal keys keep their order, so c in increasing id comes out in (key, id) order.  tmp has room
 * for m. */
static void cand_radix_sort(cand *c, int64_t m, cand *tmp) {
    uint32_t hist[4][256];
    memset(hist, 0, sizeof hist);
    for (int64_t i = 0; i < m; i++) {
        uint32_t u = fkey(c[i].key);
        for (int p = 0; p < 4; p++) hist[p][(u >> (8 * p)) & 255]++;
    }
    cand *src = c, *dst = tmp;
    for (int p = 0; p < 4; p++) {
        uint32_t u0 = (fkey(c[0].key) >> (8 * p)) & 255;
        if (hist[p][u0] == (uint32_t)m) continue; /* every key has this digit */
        uint32_t pos[256], acc = 0;
        for (int b = 0; b < 256; b++) { pos[b] = acc; acc += hist[p][b]; }
        for (int64_t i = 0; i < m; i++) dst[pos[(fkey(src[i].key) >> (8 * p)) & 255]++] = src[i];
        cand *t = src; src = dst; dst = t;
    }
    if (src != c) memcpy(c, src, (size_t)m * sizeof(cand));
}

/* The best k of one row of raw tile products (md entries, ids 0..md; see tile_keys), skipping
 * id `self`, best first into hk/hi (unfilled slots +inf / -1); the keys are the backend's tile
 * entries (sm_k_dist_entry of `kind` with the query's norm a and the rows' dn, NaN -> +inf),
 * computed in the passes below instead of in a separate write pass over the tile.  A threshold t
 * from a strided sample is set so that the row very likely holds at least k keys <= t; one pass
 * collects those in id order (a superset of the best k, ties included).  If too few survive, or
 * the row is short, t is the exact k-th key (float_kth on a copy in f).  If more than k survive,
 * the exact k-th key t2 among them keeps those below t2 and the lowest ids at t2.  A stable radix
 * sort by key then gives (key, id) order.  c has room for md + k, f for md, samp for SAMPLE. */
static void row_select(const float *row, int64_t md, int64_t self, int64_t k, int kind, float a,
                       const float *dn, cand *c, float *samp, float *f, float *hk, int64_t *hi) {
    static const float one = 1.0f;
    int64_t m = md - (self >= 0 && self < md), kk = m < k ? m : k, cnt = -1;
    int64_t ns = md / 2 < SAMPLE ? md / 2 : SAMPLE;
    const float *dnv = dn ? dn : &one;
    int64_t dstep = dn ? 1 : 0;
#define KEY(j) sm_k_dist_entry(kind, SM_K_DIST_NAN_INF, row[j], a, dnv[(j) * dstep])
    if (kk > 0 && md >= 2048 && kk * 4 <= m) {
        int64_t stride = md / ns;
        for (int64_t i = 0; i < ns; i++) samp[i] = KEY(i * stride);
        double expect = (double)ns * (double)(kk + 1) / (double)m;
        int64_t r = (int64_t)(1.25 * expect + 4.0 * sqrt(expect) + 16.0);
        if (r < ns) {
            float t = float_kth(samp, ns, r);
            cnt = 0;
            for (int64_t j = 0; j < md; j++) {
                float v = KEY(j);
                if (v <= t && j != self) { c[cnt].key = v; c[cnt].id = j; cnt++; }
            }
            if (cnt < kk) cnt = -1; /* too few below the estimate: exact threshold */
        }
    }
    if (cnt < 0 && kk > 0) {
        int64_t m2 = 0;
        for (int64_t j = 0; j < md; j++)
            if (j != self) f[m2++] = KEY(j);
        float t = float_kth(f, m2, kk - 1);
        cnt = 0;
        for (int64_t j = 0; j < md; j++) {
            float v = KEY(j);
            if (v <= t && j != self) { c[cnt].key = v; c[cnt].id = j; cnt++; }
        }
    }
#undef KEY
    if (cnt < 0) cnt = 0;
    if (cnt > kk) { /* keep the kk best by (key, id), in id order */
        for (int64_t i = 0; i < cnt; i++) f[i] = c[i].key;
        float t2 = float_kth(f, cnt, kk - 1);
        int64_t lt = 0, w = 0;
        for (int64_t i = 0; i < cnt; i++) lt += c[i].key < t2;
        int64_t eq = kk - lt;
        for (int64_t i = 0; i < cnt; i++)
            if (c[i].key < t2 || (c[i].key == t2 && eq-- > 0)) c[w++] = c[i];
    }
    cand_radix_sort(c, kk, c + kk);
    for (int64_t r = 0; r < kk; r++) { hk[r] = c[r].key; hi[r] = c[r].id; }
    for (int64_t r = kk; r < k; r++) { hk[r] = INFINITY; hi[r] = -1; }
}

/* ---- scans of one row of a tile into a heap or a top-1 slot ------------------------------ */

/* Offer candidates row[0..md) with ids d0.. (increasing) to the max-heap hk/hi of size k, except
 * id self.  A NaN key counts as +inf. */
/* Offer (v, id) to the heap, candidates arriving in increasing id (so an equal key never
 * displaces); a NaN key enters as +inf, and only into an unfilled heap. */
static inline void heap_offer_in_order(float *hk, int64_t *hi, int k, float v, int64_t id) {
    if (hi[0] >= 0 && !(v < hk[0])) return;
    heap_replace_top(hk, hi, k, v != v ? INFINITY : v, id);
}

static void scan_heap(const float *row, int64_t md, int64_t d0, int64_t self, float *hk, int64_t *hi,
                      int k) {
    for (int64_t j = 0; j < md; j += SM_SIMD_LANES) {
        unsigned msk;
        int64_t w = md - j < SM_SIMD_LANES ? md - j : SM_SIMD_LANES;
        if (w == SM_SIMD_LANES) msk = sm_simd_lanes_below(row + j, hk[0], hi[0] >= 0);
        else msk = (1u << w) - 1u;
        while (msk) {
            int b = __builtin_ctz(msk);
            msk &= msk - 1;
            int64_t id = d0 + j + b;
            float v = row[j + b];
            if (id != self) heap_offer_in_order(hk, hi, k, v, id);
        }
    }
}

/* The same for k = 1. */
static void scan_top1(const float *row, int64_t md, int64_t d0, int64_t self, float *hk, int64_t *hi) {
    float bk = hk[0];
    int64_t bi = hi[0];
    for (int64_t j = 0; j < md; j += SM_SIMD_LANES) {
        unsigned msk;
        int64_t w = md - j < SM_SIMD_LANES ? md - j : SM_SIMD_LANES;
        if (w == SM_SIMD_LANES) msk = sm_simd_lanes_below(row + j, bk, bi >= 0);
        else msk = (1u << w) - 1u;
        while (msk) {
            int b = __builtin_ctz(msk);
            msk &= msk - 1;
            int64_t id = d0 + j + b;
            float v = row[j + b];
            if (id == self) continue;
            if (bi >= 0 && !(v < bk)) continue;
            bk = v != v ? INFINITY : v;
            bi = id;
        }
    }
    hk[0] = bk;
    hi[0] = bi;
}

/* ---- tile scores ---------------------------------------------------------------------------- */
static int tile_kind(sm_metric metric) {
    return metric == SM_METRIC_L2 ? SM_K_DIST_SQL2 : metric == SM_METRIC_COSINE ? SM_K_DIST_COS : SM_K_DIST_DOT;
}

/* The products' factor of the keys (sm_k_dist_tile's alpha): -2 for squared L2, -1 otherwise. */
static float key_alpha(sm_metric metric) { return metric == SM_METRIC_L2 ? -2.0f : -1.0f; }

/* T (mq, ld) <- keys (smaller is better) of queries q[q0..q0+mq) against database rows
 * db[d0..d0+md), by the backend's distance tile: L2 |x|^2 + |y|^2 - 2<x, y> clamped at 0 (NaN,
 * from overflowing inputs, +inf), IP -<x, y>, cosine -<x, y> / (|x| |y|) (qn, dn the inverse
 * norms); IP and cosine keep NaN, which the scans treat as +inf.  With raw (whole-row
 * selection), T keeps the products alpha <x, y> (alpha -2 for L2, else -1) and row_select turns
 * them into keys as it reads them. */
static void tile_keys(const float *db, const float *q, int d, int64_t q0, int64_t mq, int64_t d0,
                      int64_t md, int64_t ld, sm_metric metric, float *qn, const float *dn,
                      int tiny, int raw, float *T) {
    unsigned small = tiny ? SM_K_DIST_SMALL : 0u;
    const float *Q = q + q0 * (int64_t)d, *D = db + d0 * (int64_t)d;
    if (raw)
        sm_k_dist_tile(SM_K_DIST_DOT, small, mq, md, d, key_alpha(metric), Q, NULL, D, NULL,
                       T, ld);
    else
        sm_k_dist_tile(tile_kind(metric), small | (metric == SM_METRIC_L2 ? SM_K_DIST_NAN_INF : 0u), mq, md, d, -1.0f,
                       Q, qn ? qn + q0 : NULL, D, dn ? dn + d0 : NULL, T, ld);
}

/* ---- a few queries: one fused pass over the database --------------------------------------- */

/* The fused pass's keys of a block of rows (knn_few.h): AVX2 when the products' run-time path
 * is not the scalar one (sm_set_isa / SIMILE_ISA; every CPU with AVX-512F also has AVX2 and FMA),
 * the C loop otherwise; the same bits.  Every build and CPU takes this one code, so the distances
 * do not depend on the compile flags (an AVX-512 build had its own loop of 32 partial sums, whose
 * bits differed from the AVX2 and portable builds'). */
static int few_keys(const float *rows, int m, int d, const float *q, int nq, int kind, const float *qn, float *keys) {
#if defined(SM_GEMM_X86)
    if (sm_gemm_active() != &sm_gemm_scalar) return sm_few_keys_avx2(rows, m, d, q, nq, kind, qn, keys);
#endif
    return sm_few_keys_c(rows, m, d, q, nq, kind, qn, keys);
}

/* Offer keys (nq, SM_FEW_BLOCK), r < m, to the per-query heaps hk / hi (nq, k): key r is row
 * base + (r % 8) lane + (r / 8) step.  A candidate enters by the full (key, id) order, so the
 * heaps end with the exact top k whatever order the rows come in; query i skips row
 * self_offset + i when self_offset >= 0. */
static inline __attribute__((always_inline)) void few_take(const float *keys, int m, int64_t nq, int k,
                                                          int64_t base, int64_t lane, int64_t step,
                                                          int64_t self_offset, float *hk, int64_t *hi) {
    for (int64_t i = 0; i < nq; i++) {
        float *h = hk + i * k;
        int64_t *x = hi + i * k;
        const float *kr = keys + i * SM_FEW_BLOCK;
        const int64_t self = self_offset >= 0 ? self_offset + i : -1;
        for (int r = 0; r < m; r++) {
            const int64_t id = base + (r & 7) * lane + (r >> 3) * step;
            if (!worse(h[0], x[0], kr[r], id) || id == self) continue;
            heap_replace_top(h, x, k, kr[r], id);
        }
    }
}

/* k-NN of nq <= LAZY_MAX_NQ queries in one pass over the database, which is split into one
 * contiguous block per thread; each thread streams its rows once (scores and norms from the same
 * load, so no norm pass; on the AVX2 path as 8 sequential streams, which the hardware prefetchers
 * follow: one query on 200,000 x 128, one thread, Zen 3, 104 -> 196 queries/s), keeping per-query
 * heaps in hk/hi (nthreads, nq, k), a candidate entering by the (key, id) order; the heaps are then
 * merged by (key, id) into dist/idx (not yet best-first).  A non-finite score (which every
 * non-finite database row gives) sets *bad; then nothing has been written to dist/idx.  For the
 * inner product the norm is not computed (the scan is compute-bound on one thread: about 1.3x
 * more queries/s without it). */
static void few_queries(const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                        sm_metric metric, const float *qn, int64_t self_offset, int nthreads,
                        float *hk_all, int64_t *hi_all, int *bad, float *dist, int64_t *idx) {
    int flag = 0;
    for (int64_t i = 0; i < (int64_t)nthreads * nq * k; i++) { hk_all[i] = INFINITY; hi_all[i] = -1; }
#pragma omp parallel num_threads(nthreads) reduction(| : flag)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int64_t lo = n * tid / nt, hi_end = n * (tid + 1) / nt;
        float *hk = hk_all + (int64_t)tid * nq * k;
        int64_t *hi = hi_all + (int64_t)tid * nq * k;
        /* the keys of SM_FEW_BLOCK rows at a time (knn_few.h: AVX2 or C, the same bits), then
         * the heaps (few_take) */
        float keys[LAZY_MAX_NQ * SM_FEW_BLOCK]; /* (nq, SM_FEW_BLOCK) */
        const int kind = tile_kind(metric);
        int64_t j_first = lo; /* the rows from here on: blocks of consecutive rows */
#if defined(SM_GEMM_X86)
        if (sm_gemm_active() != &sm_gemm_scalar) {
            /* AVX2: the thread's rows as 8 streams of len rows (lane l from lo + l len), read
             * 8 steps at a time; key 8 s + l is step s of lane l */
            const int64_t len = (hi_end - lo) / 8;
            for (int64_t r0 = 0; r0 < len; r0 += SM_FEW_BLOCK / 8) {
                const int steps = len - r0 < SM_FEW_BLOCK / 8 ? (int)(len - r0) : SM_FEW_BLOCK / 8;
                flag |= sm_few_keys8_avx2(db + (lo + r0) * (int64_t)d, len, steps, d, q, (int)nq, kind, qn, keys);
                few_take(keys, 8 * steps, nq, k, lo + r0, len, 1, self_offset, hk, hi);
            }
            j_first = lo + 8 * len;
        }
#endif
        for (int64_t j0 = j_first; j0 < hi_end; j0 += SM_FEW_BLOCK) {
            const int m = hi_end - j0 < SM_FEW_BLOCK ? (int)(hi_end - j0) : SM_FEW_BLOCK;
            flag |= few_keys(db + j0 * (int64_t)d, m, d, q, (int)nq, kind, qn, keys);
            few_take(keys, m, nq, k, j0, 1, 8, self_offset, hk, hi); /* key r is row j0 + r */
        }
    }
    *bad = flag;
    if (flag) return;
    for (int64_t i = 0; i < nq * (int64_t)k; i++) { dist[i] = INFINITY; idx[i] = -1; }
    for (int t = 0; t < nthreads; t++)
        for (int64_t i = 0; i < nq; i++)
            for (int r = 0; r < k; r++) {
                float v = hk_all[((int64_t)t * nq + i) * k + r];
                int64_t id = hi_all[((int64_t)t * nq + i) * k + r];
                float *h = dist + i * k;
                int64_t *x = idx + i * k;
                if (id >= 0 && worse(h[0], x[0], v, id)) heap_replace_top(h, x, k, v, id);
            }
}

/* Heaps (if heaps) to best-first order; keys to output values: unfilled slots +inf (L2) or -inf,
 * IP / cosine keys negated back. */
static void finish_results(float *dist, int64_t *idx, int64_t nq, int k, int heaps, sm_metric metric) {
    const float empty_val = metric == SM_METRIC_L2 ? INFINITY : -INFINITY;
#pragma omp parallel for schedule(static) if (nq * (int64_t)k > 65536)
    for (int64_t i = 0; i < nq; i++) {
        float *hk = dist + i * (int64_t)k;
        int64_t *hi = idx + i * (int64_t)k;
        if (heaps) heap_sort(hk, hi, k);
        for (int r = 0; r < k; r++) {
            if (hi[r] < 0) hk[r] = empty_val;
            else if (metric != SM_METRIC_L2) hk[r] = -hk[r];
        }
    }
}


/* ---- the plan: which path a search takes and the workspace it needs ------------------------ */
enum { PATH_EMPTY, PATH_FEW, PATH_SMALL_DB, PATH_BLOCKS, PATH_SELECT_PAR, PATH_GENERIC };
typedef struct knn_plan {
    int path, mode, tiny, lazy, nthreads, nt_few;
    int64_t bq, bd;  /* generic tiles: query rows x database rows */
    int64_t bdt;     /* blocks: database rows a thread tile */
    int64_t bqt;     /* parallel selection, small database: query rows a thread block */
    int64_t tile;    /* small database: floats of a thread's tile */
    int bf16;        /* blocks: the bfloat16 pre-pass (blocks_bf16) */
    size_t bytes;    /* workspace */
    size_t bytes_fp32; /* workspace without the pre-pass */
} knn_plan;

#define ALIGN_UP(x) (((x) + 63u) & ~(size_t)63u)
/* The next `bytes` of the workspace at *cur (64-byte aligned pieces). */
static void *carve(char **cur, size_t bytes) {
    void *p = *cur;
    *cur += ALIGN_UP(bytes);
    return p;
}

/* The queries' and the database's norms (squared, or inverse for cosine) in the workspace at
 * *cur; none for the inner product (*qn, *dn stay NULL). */
static void carve_norms(char **cur, sm_metric metric, const float *db, int64_t n, const float *q, int64_t nq, int d,
                        float **qn, float **dn) {
    if (metric == SM_METRIC_IP) return;
    *qn = carve(cur, (size_t)nq * sizeof(float));
    *dn = carve(cur, (size_t)n * sizeof(float));
    sm_k_row_norms(q, nq, d, metric == SM_METRIC_COSINE, *qn);
    sm_k_row_norms(db, n, d, metric == SM_METRIC_COSINE, *dn);
}

/* ---- the bfloat16 pre-pass of many queries (blocks_bf16) ---------------------------------- */
#define BF16_MIN_D 32    /* below this d the candidates' bookkeeping costs more than the products save */
#define BF16_ROOM(k) (2 * (int64_t)(k) + 96) /* candidates a query's list holds (at least k + 64) */
#define BF16_MAX_BYTES ((int64_t)256 << 20) /* the rounded database at most this (half the database's
                                              * own size: 2.7 million rows of 128); larger ones
                                              * take the fp32 panels, which need no copy */

/* The pre-pass runs on the AVX-512 path of a CPU with AVX512_BF16, unless SIMILE_SEARCH_BF16=0
 * (a switch for measuring it against the fp32 panels; the results are the same either way). */
static int bf16_wanted(int64_t n, int d) {
#if defined(SM_GEMM_X86)
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("SIMILE_SEARCH_BF16");
        env = !(e && e[0] == '0');
    }
    const int64_t panels = (n + SM_SEARCH_NR - 1) / SM_SEARCH_NR * ((d + 1) / 2) * SM_SEARCH_NR * 4;
    return env && n >= SM_SEARCH_NR && d >= BF16_MIN_D && panels <= BF16_MAX_BYTES &&
           sm_gemm_active() == &sm_gemm_avx512 && sm_cpu_has_avx512bf16();
#else
    (void)n, (void)d;
    return 0;
#endif
}

/* the database's panels (ceil(n / 32), d2, 32) words, then per thread: the block's rounded
 * queries (BLOCK_Q, d2), bounds (BLOCK_Q), thresholds (BLOCK_Q), the approximate heaps' keys
 * and ids (BLOCK_Q, k), the lists' counts (BLOCK_Q), keys and ids (BLOCK_Q, room), the hits'
 * keys and tags (BLOCK_Q 32 each) and one query's exact keys (room) */
static size_t bf16_db_bytes(int64_t n, int d) {
    const int64_t npan = (n + SM_SEARCH_NR - 1) / SM_SEARCH_NR;
    return ALIGN_UP((size_t)(npan * ((d + 1) / 2) * SM_SEARCH_NR) * 4);
}
static size_t bf16_thread_bytes(int d, int k) {
    const int64_t d2 = (d + 1) / 2, room = BF16_ROOM(k);
    return ALIGN_UP((size_t)(BLOCK_Q * d2) * 4) + 2 * ALIGN_UP((size_t)BLOCK_Q * 4) + ALIGN_UP((size_t)(BLOCK_Q * k) * 4) +
           ALIGN_UP((size_t)(BLOCK_Q * k) * 8) + ALIGN_UP((size_t)BLOCK_Q * 4) + ALIGN_UP((size_t)(BLOCK_Q * room) * 4) +
           ALIGN_UP((size_t)(BLOCK_Q * room) * 8) + 2 * ALIGN_UP((size_t)(BLOCK_Q * SM_SEARCH_NR) * 4) +
           ALIGN_UP((size_t)room * 4);
}
static size_t bf16_bytes(int64_t n, int d, int k, int nthreads) {
    return bf16_db_bytes(n, d) + (size_t)nthreads * bf16_thread_bytes(d, k);
}

static void knn_make_plan(int64_t n, int64_t nq, int d, int k, sm_metric metric, knn_plan *P) {
    memset(P, 0, sizeof *P);
    P->nthreads = 1;
#ifdef _OPENMP
    P->nthreads = omp_get_max_threads();
#endif
    if (n == 0 || nq == 0) { P->path = PATH_EMPTY; return; }
    const int nthreads = P->nthreads;
    int mode = k == 1 ? MODE_TOP1 : ((k <= HEAP_MAX_K || n > SELECT_MAX_N) ? MODE_HEAP : MODE_SELECT);
    int tiny = (double)nq * (double)n * (double)d < TINY_WORK;
    int64_t bq, bd;
    if (mode == MODE_SELECT) {
        bd = n;
        bq = SELECT_FLOATS / n;
        if (bq > SELECT_MAX_BQ) bq = SELECT_MAX_BQ;
        if (bq < 1) bq = 1;
        if (bq > nq) bq = nq;
    } else {
        bq = nq < TILE_Q ? nq : TILE_Q;
        bd = TILE_FLOATS / bq;
        if (bd < TILE_DB) bd = TILE_DB;
        if (bd > n) bd = n;
    }
    P->mode = mode; P->tiny = tiny; P->bq = bq; P->bd = bd;
    P->lazy = !tiny && nq <= LAZY_MAX_NQ && bq >= nq && bd >= n && mode != MODE_SELECT;
    size_t norms = metric != SM_METRIC_IP ? ALIGN_UP((size_t)nq * sizeof(float)) + ALIGN_UP((size_t)n * sizeof(float)) : 0;
    size_t select = mode == MODE_SELECT ? ALIGN_UP((size_t)nthreads * (size_t)(n + k) * sizeof(cand)) +
                                              ALIGN_UP((size_t)nthreads * (SAMPLE + (size_t)n) * sizeof(float))
                                        : 0;
    size_t generic = ALIGN_UP((size_t)(bq * bd) * sizeof(float)) + norms + select;
    if (nq <= LAZY_MAX_NQ && mode != MODE_SELECT && !tiny && n * (int64_t)d >= FEW_MIN_WORK) {
        /* the fused pass; if finite data overflow in it, the generic path runs after it */
        P->path = PATH_FEW;
        P->nt_few = n * (int64_t)d > PAR_WORK ? nthreads : 1;
        size_t hk = (size_t)P->nt_few * (size_t)(nq * k);
        size_t few = ALIGN_UP(hk * sizeof(float)) + ALIGN_UP(hk * sizeof(int64_t)) + ALIGN_UP((size_t)nq * sizeof(float));
        P->bytes = few > generic ? few : generic;
    } else if (mode == MODE_TOP1 && !tiny && n <= SMALL_DB_MAX && nq >= 64) {
        P->path = PATH_SMALL_DB;
        int64_t bqt = (SMALL_DB_FLOATS / n) & ~(int64_t)15;
        if (bqt > nq) bqt = nq;
        P->bqt = bqt;
        P->tile = n * bqt > (int64_t)d * 16 ? n * bqt : (int64_t)d * 16; /* or the fused panel (d, 16) */
        P->bytes = ALIGN_UP((size_t)nthreads * (size_t)P->tile * sizeof(float)) +
                   2 * ALIGN_UP((size_t)nthreads * (size_t)bqt * sizeof(float)) + norms;
    } else if (mode != MODE_SELECT && !tiny && nq >= 2 * BLOCK_Q) {
        P->path = PATH_BLOCKS;
        P->bdt = n < BLOCK_DB ? n : BLOCK_DB;
        P->bytes = ALIGN_UP((size_t)nthreads * (size_t)(BLOCK_Q * P->bdt) * sizeof(float)) + norms;
        P->bytes_fp32 = P->bytes;
        if (bf16_wanted(n, d)) {
            P->bf16 = 1;
            P->bytes += bf16_bytes(n, d, k, nthreads);
        }
    } else if (mode == MODE_SELECT && !tiny && nthreads > 1 && nq >= 2 * nthreads) {
        P->path = PATH_SELECT_PAR;
        int64_t bqt = (2 * SELECT_FLOATS / nthreads) / n, per = (nq + 2 * nthreads - 1) / (2 * nthreads);
        if (bqt > SELECT_MAX_BQ) bqt = SELECT_MAX_BQ;
        if (bqt > per) bqt = per;
        if (bqt < 1) bqt = 1;
        P->bqt = bqt;
        P->bytes = ALIGN_UP((size_t)nthreads * (size_t)(bqt * n) * sizeof(float)) + select + norms;
    } else {
        P->path = PATH_GENERIC;
        P->bytes = generic;
    }
}

static sm_metric metric_of(int kind) {
    return kind == SM_K_DIST_SQL2 ? SM_METRIC_L2 : kind == SM_K_DIST_COS ? SM_METRIC_COSINE : SM_METRIC_IP;
}

size_t sm_k_knn_ws(int64_t n, int64_t nq, int d, int k, int kind) {
    knn_plan P;
    knn_make_plan(n, nq, d, k, metric_of(kind), &P);
    return P.bytes;
}

#if defined(SM_GEMM_X86)
/* scratch of blocks_fused, in floats: the panel (d, 16) or (2, d, 16), the thresholds (BLOCK_Q),
 * the hits' keys and tags (2 BLOCK_Q 16 = BLOCK_Q 32 each) */
#define BLOCKS_FUSED_FLOATS(d) ((int64_t)(d) * SM_SEARCH_NR + BLOCK_Q + 4 * BLOCK_Q * SM_ALL_NR)
/* Queries q0 .. q0 + mq (mq >= SM_ALL_MR) against the whole database (n >= SM_ALL_NR), PATH_BLOCKS's
 * work with the products, keys and threshold tests fused (knn_all.h's panel: the queries are its
 * rows, 16 database rows at a time its columns; the column tests are not used): only keys at or
 * below their query's heap root leave the registers, and they are offered to the heaps as
 * scan_heap does (database rows arrive in increasing order: an equal key never displaces; a NaN
 * key is +inf).  So the heaps end as PATH_BLOCKS's scan of the tiles leaves them. */
/* The hits of one panel (database rows from jb) offered to their queries' heaps, as scan_heap
 * does (rows in increasing order: an equal key never displaces), each query's threshold set to
 * its heap root; tags as sm_search_panel_avx512 writes them (wide: i << 5 | col) or as
 * sm_all_panel_avx2 does (i << 5 | col << 1 | column test, the column tests skipped: a -inf key
 * against -inf). */
static inline void offer_hits(const float *hk, const uint32_t *hw, int h, int wide, int64_t jb, int64_t q0, int k,
                              int64_t self_offset, float *thr, float *dist, int64_t *idx) {
    for (int t = 0; t < h; t++) {
        if (!wide && (hw[t] & 1u)) continue;
        const int64_t i = hw[t] >> 5, id = jb + (wide ? hw[t] & 31u : (hw[t] >> 1) & 15u), qi = q0 + i;
        float *hq = dist + qi * (int64_t)k;
        int64_t *iq = idx + qi * (int64_t)k;
        if (self_offset >= 0 && id == self_offset + qi) continue;
        heap_offer_in_order(hq, iq, k, hk[t], id);
        thr[i] = hq[0];
    }
}

/* With wide (the AVX-512 path; mq >= 12, n >= 32), the panel is knn_search_avx512.c's, 32 database
 * rows at a time, with the same keys and the same offers in the same order per query. */
static void blocks_fused(const float *db, int64_t n, const float *q, int d, int64_t q0, int64_t mq, int k, int kind,
                         float alpha, const float *qn, const float *dn, int64_t self_offset, int wide, float *scratch,
                         float *dist, int64_t *idx) {
    float *Bp = scratch;                                    /* (d, 16), or (2, d, 16) when wide */
    float *thr = Bp + (int64_t)d * SM_SEARCH_NR;            /* (mq) heap roots */
    float *hk = thr + BLOCK_Q;                              /* (2 BLOCK_Q 16) */
    uint32_t *hw = (uint32_t *)(hk + 2 * BLOCK_Q * SM_ALL_NR); /* (2 BLOCK_Q 16) */
    static const float never[SM_ALL_NR] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                           -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                           -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int64_t i = 0; i < mq; i++) thr[i] = dist[(q0 + i) * (int64_t)k];
    const float *an = qn ? qn + q0 : thr; /* unread for the inner product */
    if (wide) {
        for (int64_t done = 0; done < n;) {
            const int64_t jb = n - done < SM_SEARCH_NR ? n - SM_SEARCH_NR : done; /* rows jb .. jb + 32 */
            const uint32_t cvalid = ~(uint32_t)0 << (done - jb);
            sm_all_pack_avx2(db + jb * (int64_t)d, d, Bp);
            sm_all_pack_avx2(db + (jb + SM_ALL_NR) * (int64_t)d, d, Bp + (int64_t)d * SM_ALL_NR);
            const int64_t nj = jb + SM_SEARCH_NR, nrows = n - nj < SM_SEARCH_NR ? n - nj : SM_SEARCH_NR;
            const int h = sm_search_panel_avx512(d, q + q0 * (int64_t)d, (int)mq, Bp, alpha, kind, an,
                                                 dn ? dn + jb : thr, thr, cvalid, db + nj * (int64_t)d, nrows, hk,
                                                 hw);
            offer_hits(hk, hw, h, 1, jb, q0, k, self_offset, thr, dist, idx);
            done = jb + SM_SEARCH_NR;
        }
        return;
    }
    for (int64_t done = 0; done < n;) {
        const int64_t jb = n - done < SM_ALL_NR ? n - SM_ALL_NR : done; /* rows jb .. jb + 16 */
        const uint32_t cvalid = (((uint32_t)1 << SM_ALL_NR) - 1u) & ~(((uint32_t)1 << (done - jb)) - 1u);
        sm_all_pack_avx2(db + jb * (int64_t)d, d, Bp);
        const int h = sm_all_panel_avx2(d, q + q0 * (int64_t)d, (int)mq, Bp, alpha, kind, an, dn ? dn + jb : thr, thr,
                                        never, cvalid, hk, hw);
        offer_hits(hk, hw, h, 0, jb, q0, k, self_offset, thr, dist, idx);
        done = jb + SM_ALL_NR;
    }
}
#endif

#if defined(SM_GEMM_X86)
/* ---- the bfloat16 pre-pass of many queries ---------------------------------------------------
 * The database and each block's queries are rounded to bfloat16 once; the panels of
 * knn_search_bf16.c give approximate keys k^ of every pair, at most E from the exact key k (the
 * fp32 chain's, what the other paths return), E a bound per query from the norms (below).  Each
 * query keeps a heap of its k best approximate keys and a list of the candidates with k^ <= (its
 * heap root) + 2E; at the end the list is cut to k^ <= t^ + 2E, t^ the k-th best approximate key,
 * and only those are rescored exactly and offered to the results' heap, in increasing index.
 * Why nothing is lost: every pair with k <= k_(k) (the k-th best exact key) has
 * k^ <= k + E <= k_(k) + E, and k_(k) <= t^ + E (the k pairs of the k best approximate keys have
 * exact keys at most t^ + E, so the k-th best exact key is no larger), so k^ <= t^ + 2E; the heap
 * root only falls as candidates come, so the lists kept every such pair.  The results are the
 * exact top k by (key, index), the bits of the fp32 paths.
 * The bound: with unit roundoff 2^-8 for the rounding to bfloat16 and 2^-24 for float sums, the
 * products differ by at most (2^-7 + 2^-16 + 2.02 d 2^-24) sum |q_t x_t| <= c |q| |x| (Cauchy-Schwarz)
 * from the exact sum, plus what VDPBF16PS flushes to zero (denormal inputs and products: at most
 * 2^-126 (sqrt(d) (|q| + |x|) + d)); c = 2^-7 + 2^-14 + 4 d 2^-24 here.  Squared L2 doubles it and
 * adds the rounding of the norms' sum, cosine scales it by the inverse norms; 1% more on top.
 * Rows or queries whose norm is neither 0 nor in [2^-20, 2^20] (where the flush term could
 * matter) and lists that overflow leave their block to the fp32 panels (blocks_fused). */
#define BF16_NORM_LO 0x1p-20
#define BF16_NORM_HI 0x1p20

/* |r|^2 in double, and whether a norm is 0 or in the bound's range */
static inline double row_sumsq_d(const float *r, int d) {
    double ss = 0;
    for (int t = 0; t < d; t++) ss += (double)r[t] * r[t];
    return ss;
}
static inline int bf16_norm_ok(double nr) { return nr == 0 || (nr >= BF16_NORM_LO && nr <= BF16_NORM_HI); }

typedef struct bf16_pass {
    const uint32_t *Xb; /* (npan, d2, 32) the database's panels */
    int64_t npan;
    double M, Mc, Bn;   /* max row norm; max norm x inverse norm (cosine); max inverse norm */
} bf16_pass;

typedef struct bf16_scratch {
    uint32_t *Qb;   /* (BLOCK_Q, d2) the block's rounded queries */
    float *mg;      /* (BLOCK_Q) 2E, rounded up */
    float *thr;     /* (BLOCK_Q) heap root + 2E (+inf before k candidates) */
    float *ak;      /* (BLOCK_Q, k) approximate heaps */
    int64_t *ai;    /* (BLOCK_Q, k) */
    int32_t *cnt;   /* (BLOCK_Q) list lengths */
    float *lk;      /* (BLOCK_Q, room) lists: approximate keys */
    int64_t *li;    /* (BLOCK_Q, room) and indices, increasing */
    float *hk;      /* (BLOCK_Q 32) hits */
    uint32_t *hw;   /* (BLOCK_Q 32) */
    float *ek;      /* (room) one query's exact keys */
} bf16_scratch;

static void bf16_carve(char **cur, int d, int k, bf16_scratch *S) {
    const int64_t d2 = (d + 1) / 2, room = BF16_ROOM(k);
    S->Qb = carve(cur, (size_t)(BLOCK_Q * d2) * 4);
    S->mg = carve(cur, (size_t)BLOCK_Q * 4);
    S->thr = carve(cur, (size_t)BLOCK_Q * 4);
    S->ak = carve(cur, (size_t)(BLOCK_Q * k) * 4);
    S->ai = carve(cur, (size_t)(BLOCK_Q * k) * 8);
    S->cnt = carve(cur, (size_t)BLOCK_Q * 4);
    S->lk = carve(cur, (size_t)(BLOCK_Q * room) * 4);
    S->li = carve(cur, (size_t)(BLOCK_Q * room) * 8);
    S->hk = carve(cur, (size_t)(BLOCK_Q * SM_SEARCH_NR) * 4);
    S->hw = carve(cur, (size_t)(BLOCK_Q * SM_SEARCH_NR) * 4);
    S->ek = carve(cur, (size_t)room * 4);
}

/* a + m rounded up (a float at least the real sum) */
static inline float add_up(float a, float m) {
    float r = a + m;
    if ((double)r < (double)a + (double)m) r = nextafterf(r, INFINITY);
    return r;
}

/* The database's panels and norms for the pre-pass; 0 if a row's norm is out of its range. */
static int bf16_prepare(const float *db, int64_t n, int d, int kind, const float *dn, uint32_t *Xb, bf16_pass *X) {
    const int64_t d2 = (d + 1) / 2, npan = (n + SM_SEARCH_NR - 1) / SM_SEARCH_NR;
    double M = 0, Mc = 0, Bn = 0;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(max : M, Mc, Bn) reduction(| : bad) if (n * (int64_t)d > PAR_WORK)
    for (int64_t p = 0; p < npan; p++) {
        const int64_t done = p * SM_SEARCH_NR, jb = n - done < SM_SEARCH_NR ? n - SM_SEARCH_NR : done;
        sm_search_bf16_panel_pack(db + jb * (int64_t)d, d, Xb + p * d2 * SM_SEARCH_NR);
        for (int64_t j = jb; j < jb + SM_SEARCH_NR; j++) {
            const double nr = sqrt(row_sumsq_d(db + j * (int64_t)d, d));
            bad |= !bf16_norm_ok(nr);
            if (nr > M) M = nr;
            if (kind == SM_K_DIST_COS) {
                if (nr * dn[j] > Mc) Mc = nr * dn[j];
                if (dn[j] > Bn) Bn = dn[j];
            }
        }
    }
    X->Xb = Xb; X->npan = npan; X->M = M; X->Mc = Mc; X->Bn = Bn;
    return !bad;
}

/* Queries q0 .. q0 + mq (mq >= 12) against the whole database by the pre-pass: their results
 * offered to the heaps dist / idx (empty on entry), as blocks_fused leaves them; returns 1, with
 * the heaps untouched, where the block goes to the fp32 panels instead (above). */
static int blocks_bf16(const bf16_pass *X, const float *db, int64_t n, const float *q, int d, int64_t q0, int64_t mq,
                       int k, int kind, float alpha, const float *qn, const float *dn, int64_t self_offset,
                       const bf16_scratch *S, float *dist, int64_t *idx) {
    const int64_t room = BF16_ROOM(k), d2 = (d + 1) / 2;
    const double c = 0x1p-7 + 0x1p-14 + 4.0 * d * 0x1p-24, sd = sqrt((double)d);
    for (int64_t i = 0; i < mq; i++) {
        const double ss = row_sumsq_d(q + (q0 + i) * (int64_t)d, d), a = sqrt(ss);
        const double F = 0x1p-126 * (sd * (a + X->M) * 1.02 + d);
        if (!bf16_norm_ok(a)) return 1;
        double E;
        if (kind == SM_K_DIST_DOT) E = c * a * X->M + F;
        else if (kind == SM_K_DIST_SQL2) E = 2 * (c * a * X->M + F) + 0x1p-21 * (ss + X->M * X->M + 2 * a * X->M);
        else {
            const double ia = qn[q0 + i];
            E = (c * a * ia * X->Mc + F * ia * X->Bn) * (1 + 0x1p-20) + 0x1p-21 * (a * ia * X->Mc + 1);
        }
        const double m2 = 2 * E * 1.01;
        float mf = (float)m2;
        if ((double)mf < m2) mf = nextafterf(mf, INFINITY);
        S->mg[i] = mf;
        S->thr[i] = INFINITY;
        S->cnt[i] = 0;
        for (int r2 = 0; r2 < k; r2++) { S->ak[i * k + r2] = INFINITY; S->ai[i * k + r2] = -1; }
    }
    sm_search_bf16_rows(q + q0 * (int64_t)d, (int)mq, d, S->Qb);
    const float *an = qn ? qn + q0 : S->thr; /* unread for the inner product */
    for (int64_t p = 0; p < X->npan; p++) {
        const int64_t done = p * SM_SEARCH_NR, jb = n - done < SM_SEARCH_NR ? n - SM_SEARCH_NR : done;
        const uint32_t cvalid = ~(uint32_t)0 << (done - jb);
        const uint32_t *Pp = X->Xb + p * d2 * SM_SEARCH_NR;
        const int h = sm_search_bf16_panel(d, S->Qb, (int)mq, Pp, alpha, kind, an, dn ? dn + jb : S->thr, S->thr,
                                           cvalid, p + 1 < X->npan ? Pp + d2 * SM_SEARCH_NR : NULL, S->hk, S->hw);
        for (int t = 0; t < h; t++) {
            const int64_t i = S->hw[t] >> 5, id = jb + (S->hw[t] & 31u);
            const float v = S->hk[t];
            if (self_offset >= 0 && id == self_offset + q0 + i) continue;
            if (!(v <= S->thr[i])) continue; /* the threshold fell since the panel tested it */
            float *lk = S->lk + i * room;
            int64_t *li = S->li + i * room;
            if (S->cnt[i] == room) { /* full: keep what is still within the threshold */
                int32_t m = 0;
                for (int32_t j = 0; j < S->cnt[i]; j++)
                    if (lk[j] <= S->thr[i]) { lk[m] = lk[j]; li[m] = li[j]; m++; }
                S->cnt[i] = m;
                if (m == room) return 1;
            }
            lk[S->cnt[i]] = v;
            li[S->cnt[i]++] = id;
            float *hq = S->ak + i * k;
            int64_t *iq = S->ai + i * k;
            heap_offer_in_order(hq, iq, k, v, id);
            if (iq[0] >= 0) S->thr[i] = add_up(hq[0], S->mg[i]);
        }
    }
    /* the candidates within t^ + 2E, rescored exactly, in increasing index */
    for (int64_t i = 0; i < mq; i++) {
        const int64_t qi = q0 + i;
        const float T = S->ai[i * k] >= 0 ? add_up(S->ak[i * k], S->mg[i]) : INFINITY;
        const float *lk = S->lk + i * room;
        int64_t *li = S->li + i * room;
        int m = 0;
        for (int32_t j = 0; j < S->cnt[i]; j++)
            if (lk[j] <= T) li[m++] = li[j];
        sm_search_exact_keys(d, q + qi * (int64_t)d, db, li, m, alpha, kind, qn ? qn[qi] : 0.0f, dn, S->ek);
        for (int j = 0; j < m; j++) heap_offer_in_order(dist + qi * (int64_t)k, idx + qi * (int64_t)k, k, S->ek[j], li[j]);
    }
    return 0;
}
#endif

sm_status sm_k_knn(int kind, const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                   int64_t self_offset, float *dist, int64_t *idx, const sm_ws *ws) {
    const sm_metric metric = metric_of(kind);
    const float empty_val = metric == SM_METRIC_L2 ? INFINITY : -INFINITY;
    if (n == 0) {
        for (int64_t i = 0; i < nq * (int64_t)k; i++) { dist[i] = empty_val; idx[i] = -1; }
        return SM_OK;
    }

    knn_plan P;
    knn_make_plan(n, nq, d, k, metric, &P);
    if (ws && ws->bytes < P.bytes && P.bf16 && ws->bytes >= P.bytes_fp32) { /* sized before the path changed */
        P.bf16 = 0;
        P.bytes = P.bytes_fp32;
    }
    if (!ws || ws->bytes < P.bytes)
        return sm_fail(SM_ERR_INVALID, "knn: a workspace of %zu bytes is too small (%zu needed)",
                       ws ? ws->bytes : (size_t)0, P.bytes);
    const int mode = P.mode, tiny = P.tiny, nthreads = P.nthreads;
    const int64_t bq = P.bq, bd = P.bd;
    char *base = ws->bytes ? (char *)ws->base : NULL;
    if (P.path == PATH_FEW) {
        int nt = P.nt_few, bad = 0;
        char *cur = base;
        float *hk = carve(&cur, (size_t)nt * (size_t)(nq * k) * sizeof(float));     /* (nt, nq, k) */
        int64_t *hi = carve(&cur, (size_t)nt * (size_t)(nq * k) * sizeof(int64_t)); /* (nt, nq, k) */
        float *qn = carve(&cur, (size_t)nq * sizeof(float));                          /* (nq) */
        if (metric != SM_METRIC_IP) sm_k_row_norms(q, nq, d, metric == SM_METRIC_COSINE, qn);
        few_queries(db, n, q, nq, d, k, metric, qn, self_offset, nt, hk, hi, &bad, dist, idx);
        if (bad && !sm_all_finite(db, n * (int64_t)d))
            return sm_fail(SM_ERR_NUMERIC, "knn search: NaN or Inf in the database");
        if (!bad) { /* (overflowing scores of finite data: the general path below) */
            finish_results(dist, idx, nq, k, 1, metric);
            return SM_OK;
        }
    }
    /* a few queries, one tile: check the database through its scores (below) */
    const int lazy = P.lazy;
    if (n > 0 && !lazy && !sm_all_finite(db, n * (int64_t)d))
        return sm_fail(SM_ERR_NUMERIC, "knn search: NaN or Inf in the database");

    /* ---- top-1 against a small database (k-means' assignments, prototypes): the tiles of
     * PATH_BLOCKS transposed, (n, bqt) = the database's rows against a block of queries, so that
     * the few database rows fill the products' rows and the many queries their columns (a
     * 100-row database wastes 4 of 100 rows instead of 12 of 112 columns, and no tile is narrow).
     * The keys have the same bits as PATH_BLOCKS's: each is one fma chain over the same pairs in
     * the same order (gemm.h), and the two norms are added with a commutative +.  Then a running
     * minimum down each column, rows in increasing order, with scan_top1's rules (the first
     * candidate always, then strictly smaller keys: ties to the lower index; a NaN key is +inf;
     * query i skips row self_offset + i), so the results are scan_top1's. ---- */
    if (P.path == PATH_SMALL_DB) {
        const int64_t bqt = P.bqt, nb = (nq + bqt - 1) / bqt;
        char *cur = base;
        float *Tt = carve(&cur, (size_t)nthreads * (size_t)P.tile * sizeof(float)); /* (nt, n, bqt) */
        float *bkt = carve(&cur, (size_t)nthreads * (size_t)bqt * sizeof(float));      /* (nt, bqt) */
        int32_t *bit = carve(&cur, (size_t)nthreads * (size_t)bqt * sizeof(int32_t));  /* (nt, bqt) */
        float *qn = NULL, *dn = NULL;
        carve_norms(&cur, metric, db, n, q, nq, d, &qn, &dn);
        const unsigned flags = metric == SM_METRIC_L2 ? SM_K_DIST_NAN_INF : 0u;
#if defined(SM_GEMM_X86)
        /* the fused panel (knn_all.h) on AVX2, the same keys as the tile below (its alpha and
         * kind are sm_k_dist_tile's) */
        const int fused = sm_gemm_active() != &sm_gemm_scalar && n >= SM_ALL_MR;
        const float alpha = key_alpha(metric);
#endif
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
        for (int64_t b = 0; b < nb; b++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *T = Tt + (int64_t)tid * P.tile, *bk = bkt + (int64_t)tid * bqt;
            int32_t *bi = bit + (int64_t)tid * bqt;
            const int64_t q0 = b * bqt, mq = nq - q0 < bqt ? nq - q0 : bqt;
            /* lane j's query skips row c when c == self_offset + q0 + j, i.e. j == c - s0 */
            const int64_t s0 = self_offset >= 0 ? self_offset + q0 : INT64_MIN / 2;
#if defined(SM_GEMM_X86)
            if (fused && mq >= SM_ALL_NR) { /* in registers, 16 queries at a time (the last 16 end at mq) */
                float *Bp = T; /* (d, 16) */
                for (int64_t j = 0; j < mq; j++) { bk[j] = INFINITY; bi[j] = -1; }
                for (int64_t done = 0; done < mq;) {
                    const int64_t jb = mq - done < SM_ALL_NR ? mq - SM_ALL_NR : done;
                    sm_all_pack_avx2(q + (q0 + jb) * (int64_t)d, d, Bp);
                    sm_top1_panel_avx2(d, db, (int)n, Bp, alpha, kind, dn, qn ? qn + q0 + jb : dn, s0 + jb, bk + jb,
                                       bi + jb);
                    done = jb + SM_ALL_NR;
                }
                for (int64_t j = 0; j < mq; j++) { dist[q0 + j] = bk[j]; idx[q0 + j] = bi[j]; }
                continue;
            }
#endif
            sm_k_dist_tile(tile_kind(metric), flags, n, mq, d, -1.0f, db, dn, q + q0 * (int64_t)d,
                           qn ? qn + q0 : NULL, T, mq);
            for (int64_t j = 0; j < mq; j++) { bk[j] = INFINITY; bi[j] = -1; }
            for (int64_t c = 0; c < n; c++) {
                const float *row = T + c * mq;
                const int64_t skip = c - s0;
                for (int64_t j = 0; j < mq; j++) {
                    const float v = row[j];
                    const int take = (bi[j] < 0 || v < bk[j]) && j != skip;
                    bk[j] = take ? (v != v ? INFINITY : v) : bk[j];
                    bi[j] = take ? (int32_t)c : bi[j];
                }
            }
            for (int64_t j = 0; j < mq; j++) { dist[q0 + j] = bk[j]; idx[q0 + j] = bi[j]; }
        }
        finish_results(dist, idx, nq, 1, 0, metric);
        return SM_OK;
    }

    /* ---- many queries, top-1 / heaps: each thread takes whole query blocks (dynamic schedule)
     * and runs its own single-threaded sgemm on tiles that stay in cache, then scans them; no
     * barrier between the products and the scans (they cost most on a busy machine). ---- */
    if (P.path == PATH_BLOCKS) {
        int64_t nb = (nq + BLOCK_Q - 1) / BLOCK_Q, bdt = P.bdt;
        char *cur = base;
        float *Tt = carve(&cur, (size_t)nthreads * (size_t)(BLOCK_Q * bdt) * sizeof(float)); /* per thread */
        float *qn = NULL, *dn = NULL;
        carve_norms(&cur, metric, db, n, q, nq, d, &qn, &dn);
        for (int64_t i = 0; i < nq * (int64_t)k; i++) { dist[i] = INFINITY; idx[i] = -1; }
#if defined(SM_GEMM_X86)
        /* the fused panels (blocks_fused) on AVX2, when a thread's tile has room for their
         * scratch; the keys are tile_keys's bits (its alpha and kind) */
        const int fused = sm_gemm_active() != &sm_gemm_scalar && n >= SM_ALL_NR &&
                          BLOCK_Q * bdt >= BLOCKS_FUSED_FLOATS(d);
        const int wide = sm_gemm_active() == &sm_gemm_avx512 && n >= SM_SEARCH_NR;
        const float alpha = key_alpha(metric);
        bf16_pass X;
        char *bf16_base = NULL;
        size_t bf16_per = 0;
        int bf16 = 0;
        if (P.bf16) {
            uint32_t *Xb = carve(&cur, bf16_db_bytes(n, d));
            bf16_base = cur;
            bf16_per = bf16_thread_bytes(d, k);
            bf16 = bf16_prepare(db, n, d, kind, dn, Xb, &X);
        }
#endif
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
        for (int64_t b = 0; b < nb; b++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *T = Tt + (int64_t)tid * BLOCK_Q * bdt;
            int64_t q0 = b * BLOCK_Q, mq = nq - q0 < BLOCK_Q ? nq - q0 : BLOCK_Q;
#if defined(SM_GEMM_X86)
            if (bf16 && mq >= 12) {
                bf16_scratch S;
                char *c2 = bf16_base + (size_t)tid * bf16_per;
                bf16_carve(&c2, d, k, &S);
                if (!blocks_bf16(&X, db, n, q, d, q0, mq, k, kind, alpha, qn, dn, self_offset, &S, dist, idx)) continue;
            }
            if (fused && mq >= SM_ALL_MR) {
                blocks_fused(db, n, q, d, q0, mq, k, kind, alpha, qn, dn, self_offset, wide && mq >= 12, T, dist,
                             idx);
                continue;
            }
#endif
            for (int64_t d0 = 0; d0 < n; d0 += bdt) {
                int64_t md = n - d0 < bdt ? n - d0 : bdt;
                tile_keys(db, q, d, q0, mq, d0, md, bdt, metric, qn, dn, 0, 0, T);
                for (int64_t i = 0; i < mq; i++) {
                    int64_t qi = q0 + i, self = self_offset >= 0 ? self_offset + qi : -1;
                    if (mode == MODE_TOP1)
                        scan_top1(T + i * bdt, md, d0, self, dist + qi * (int64_t)k, idx + qi * (int64_t)k);
                    else
                        scan_heap(T + i * bdt, md, d0, self, dist + qi * (int64_t)k, idx + qi * (int64_t)k, k);
                }
            }
        }
        finish_results(dist, idx, nq, k, mode == MODE_HEAP, metric);
        return SM_OK;
    }

    /* ---- whole-row selection with several threads: each thread takes blocks of queries and
     * runs its own single-threaded sgemm and selection (no barrier between them). ---- */
    if (P.path == PATH_SELECT_PAR) {
        int64_t bqt = P.bqt, nb = (nq + bqt - 1) / bqt;
        char *cur = base;
        float *Tt = carve(&cur, (size_t)nthreads * (size_t)(bqt * n) * sizeof(float));    /* (nt, bqt, n) */
        cand *cs = carve(&cur, (size_t)nthreads * (size_t)(n + k) * sizeof(cand));        /* (nt, n + k) */
        float *fs = carve(&cur, (size_t)nthreads * (size_t)(SAMPLE + n) * sizeof(float)); /* (nt, S + n) */
        float *qn = NULL, *dn = NULL;
        carve_norms(&cur, metric, db, n, q, nq, d, &qn, &dn);
        {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
            for (int64_t b = 0; b < nb; b++) {
                int tid = 0;
#ifdef _OPENMP
                tid = omp_get_thread_num();
#endif
                float *T = Tt + (int64_t)tid * bqt * n, *f = fs + (int64_t)tid * (SAMPLE + n);
                int64_t q0 = b * bqt, mq = nq - q0 < bqt ? nq - q0 : bqt;
                tile_keys(db, q, d, q0, mq, 0, n, n, metric, qn, dn, 0, 1, T);
                for (int64_t i = 0; i < mq; i++) {
                    int64_t qi = q0 + i, self = self_offset >= 0 ? self_offset + qi : -1;
                    row_select(T + i * n, n, self, k, tile_kind(metric), qn ? qn[qi] : 0.0f, dn,
                               cs + (int64_t)tid * (n + k), f, f + SAMPLE, dist + qi * (int64_t)k,
                               idx + qi * (int64_t)k);
                }
            }
            finish_results(dist, idx, nq, k, 0, metric);
        }
        return SM_OK;
    }

    /* ---- the workspace (the few-queries pass above, if any, is done with it) ---- */
    char *cur = base;
    float *T = carve(&cur, (size_t)(bq * bd) * sizeof(float)); /* (bq, bd) tile of keys */
    float *qn = NULL, *dn = NULL;                                /* (nq), (n) norms        */
    cand *scratch = NULL;                                        /* (nthreads, n + k) pairs */
    float *samples = NULL;                                       /* (nthreads, SAMPLE + n) */
    carve_norms(&cur, metric, db, n, q, nq, d, &qn, &dn);
    if (mode == MODE_SELECT) {
        scratch = carve(&cur, (size_t)nthreads * (size_t)(n + k) * sizeof(cand));
        samples = carve(&cur, (size_t)nthreads * (SAMPLE + (size_t)n) * sizeof(float));
    }

    /* ---- empty heaps (lazy: once the scores are known to be finite) ---- */
    if (mode != MODE_SELECT && !lazy)
        for (int64_t i = 0; i < nq * (int64_t)k; i++) { dist[i] = INFINITY; idx[i] = -1; }

    for (int64_t q0 = 0; q0 < nq; q0 += bq) {
        int64_t mq = nq - q0 < bq ? nq - q0 : bq;
        for (int64_t d0 = 0; d0 < n; d0 += bd) {
            int64_t md = n - d0 < bd ? n - d0 : bd;
            tile_keys(db, q, d, q0, mq, d0, md, bd, metric, qn, dn, tiny, mode == MODE_SELECT, T);
            if (lazy) { /* one tile holds every score: a non-finite one may be a bad row */
                if (!sm_all_finite(T, mq * md) && !sm_all_finite(db, n * (int64_t)d)) {
                    return sm_fail(SM_ERR_NUMERIC, "knn search: NaN or Inf in the database");
                }
                for (int64_t i = 0; i < nq * (int64_t)k; i++) { dist[i] = INFINITY; idx[i] = -1; }
            }
#pragma omp parallel for schedule(dynamic, 16) if (mq * md > 65536)
            for (int64_t i = 0; i < mq; i++) {
                const float *row = T + i * bd;
                int64_t qi = q0 + i;
                int64_t self = self_offset >= 0 ? self_offset + qi : -1;
                float *hk = dist + qi * (int64_t)k;
                int64_t *hi = idx + qi * (int64_t)k;
                if (mode == MODE_TOP1) {
                    scan_top1(row, md, d0, self, hk, hi);
                } else if (mode == MODE_HEAP) {
                    scan_heap(row, md, d0, self, hk, hi, k);
                } else {
                    int tid = 0;
#ifdef _OPENMP
                    tid = omp_get_thread_num();
#endif
                    float *fs = samples + (int64_t)tid * (SAMPLE + n);
                    row_select(row, md, self, k, tile_kind(metric), qn ? qn[qi] : 0.0f, dn,
                               scratch + (int64_t)tid * (n + k), fs, fs + SAMPLE, hk, hi);
                }
            }
        }
    }

    finish_results(dist, idx, nq, k, mode == MODE_HEAP, metric);
    return SM_OK;
}


/* ---- every row of one set against all the others (the knn_all operation) -------------------
 * The set is cut into blocks of ALL_B rows; the tile of blocks (I, J), I < J, is computed once
 * and serves both directions: row i of it offers candidate J0 + j to query I0 + i, and column j
 * offers candidate I0 + i to query J0 + j (a key has the same bits both ways: the products are
 * one fma chain over the same pairs in the same order, and the entry adds the two norms with a
 * commutative +).  Diagonal tiles (I, I) are scanned by rows only.  So the products cost half
 * of a search of the set against itself.  The pairs are visited in rounds of a round-robin
 * tournament (the circle method): the pairs of a round touch disjoint blocks, so the threads
 * share a round without locks, with a barrier between rounds.
 * Each query keeps a buffer of cap candidates (the caller's dist / idx rows) and a threshold,
 * the k-th best (key, id) at its last compaction: a candidate worse than it is rejected by one
 * vector compare; when the buffer is full it is compacted to its exact k best (float_kth, ties
 * to the lower id), which sets the threshold.  Every rejected or dropped candidate is worse than
 * k others, so the result is the exact top k by (key, id) whatever the order of arrival, hence
 * the same for any thread count and schedule. */
#ifndef ALL_B
#define ALL_B 512 /* rows per block: a (B, B) tile of keys (1 MiB); 512 took 15-20% less CPU time than 256
                  * at n = 100,000, d = 128 on a Zen 3 (fewer, larger tiles: packing, prefetch rounds) */
#endif
#ifndef ALL_SW
#define ALL_SW 128
#endif
#define ALL_REEST 64 /* the last estimate after this many warm-up lengths: re-estimating after 2, 4, ..., 64
                     * warm-ups cut the offers from 284 to 181 million and the compactions from 186,000
                     * to 3,200 at n = 100,000, k = 1,100 (Zen 3, 2026-12-03) */
#define ALL_RB 24 /* queries recomputed together when their estimate was too low (one tile of products) */
#define ALL_ROOM 16   /* free slots every buffer keeps (a vector of appends; cap > k + ALL_ROOM) */
#define ALL_WARM 1024 /* candidates a query sees before its threshold is estimated (a larger sample
                       * estimates closer but inserts all it sees: 1,024 inserts the fewest at
                       * n = 100,000, k = 1,100) */

typedef struct all_state {
    float *keys;     /* (n, cap) buffers: the caller's dist */
    int32_t *ids;    /* (n, cap) the caller's idx */
    int32_t *cnt;    /* (n) candidates in each buffer */
    float *thr;      /* (n) threshold key (+inf before the first compaction) */
    int32_t *thr_id; /* (n) threshold id */
    int32_t *seen;   /* (n) candidates offered so far (counted during the warm-up rounds) */
    unsigned char *est; /* (n) 1 while the threshold is an estimate not yet proven by k kept */
    int64_t cap;
    int k;
} all_state;

static int cmp_i32(const void *pa, const void *pb) {
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    return (a > b) - (a < b);
}

/* Keep the min(k, cnt) best (key, id) of query q's buffer (in arrival order) and set its
 * threshold; f (cap floats) and e (cap ids) are scratch. */
static void all_compact(const all_state *S, int64_t q, float *f, int32_t *e) {
    float *kq = S->keys + q * S->cap;
    int32_t *iq = S->ids + q * S->cap;
    const int64_t m = S->cnt[q], k = S->k;
    if (m <= k) return;
    memcpy(f, kq, (size_t)m * sizeof(float));
    const float t2 = float_kth(f, m, k - 1);
    int64_t lt = 0, ne = 0;
    for (int64_t i = 0; i < m; i++) {
        lt += kq[i] < t2;
        if (kq[i] == t2) e[ne++] = iq[i];
    }
    const int64_t need = k - lt; /* >= 1 entries at t2, the lowest ids */
    int32_t cut = e[0];
    if (ne > need) {
        qsort(e, (size_t)ne, sizeof(int32_t), cmp_i32);
        cut = e[need - 1];
    } else {
        for (int64_t i = 1; i < ne; i++) cut = e[i] > cut ? e[i] : cut;
    }
    int64_t w = 0;
    for (int64_t i = 0; i < m; i++)
        if (kq[i] < t2 || (kq[i] == t2 && iq[i] <= cut)) { kq[w] = kq[i]; iq[w] = iq[i]; w++; }
    S->cnt[q] = (int32_t)w;
    S->thr[q] = t2;
    S->thr_id[q] = cut;
    S->est[q] = 0; /* k kept at or below the threshold: it is exact */
}

/* After the warm-up rounds, and again later from more: set query q's threshold to an estimate of
 * its final k-th key (when lower than its threshold), a rank r of its seen candidates at which,
 * were they a random sample of the set, the k best would very likely all lie below
 * (r >= k s / (n - 1) + 3 standard deviations + 2), and keep only the candidates at or below it.
 * The buffer holds every seen candidate at or below the current threshold (the others were
 * rejected or dropped against a threshold no lower), so its r-th is the seen candidates' r-th.
 * A wrong estimate (fewer than k at or below it at the end) is caught and the query recomputed
 * (all_redo). */
static void all_estimate(const all_state *S, int64_t q, int64_t n, float *f) {
    const int64_t m = S->cnt[q], k = S->k, s = S->seen[q];
    if (s <= 0 || s >= n - 1) return;
    const double mean = (double)k * (double)s / (double)(n - 1);
    const int64_t r = (int64_t)(mean + 3.0 * sqrt(mean) + 2.0);
    if (r >= k || r >= m) return;
    float *kq = S->keys + q * S->cap;
    int32_t *iq = S->ids + q * S->cap;
    memcpy(f, kq, (size_t)m * sizeof(float));
    const float t = float_kth(f, m, r);
    if (!(t < S->thr[q])) return;
    int64_t w = 0;
    for (int64_t i = 0; i < m; i++)
        if (kq[i] <= t) { kq[w] = kq[i]; iq[w] = iq[i]; w++; }
    S->cnt[q] = (int32_t)w;
    S->thr[q] = t;
    S->thr_id[q] = INT32_MAX;
    S->est[q] = 1;
}

/* Offer candidate (v, id) to query q. */
static inline void all_offer(const all_state *S, int64_t q, float v, int32_t id, float *f, int32_t *e) {
    const float t = S->thr[q];
    if (v > t || (v == t && id > S->thr_id[q])) return;
    int64_t c = S->cnt[q];
    S->keys[q * S->cap + c] = v;
    S->ids[q * S->cap + c] = id;
    S->cnt[q] = (int32_t)(c + 1);
    if (c + 1 > S->cap - ALL_ROOM) all_compact(S, q, f, e);
}

/* Ask for the cache lines where queries q0 .. q0 + m append next (they are scattered over the
 * buffers and would miss one by one during the scan; the tile's products hide the wait). */
static void all_prefetch(const all_state *S, int64_t q0, int64_t m) {
    for (int64_t q = q0; q < q0 + m; q++) {
        const int64_t at = q * S->cap + S->cnt[q];
        __builtin_prefetch(S->keys + at, 1, 3);
        __builtin_prefetch(S->ids + at, 1, 3);
        __builtin_prefetch(S->keys + at + 16, 1, 3);
        __builtin_prefetch(S->ids + at + 16, 1, 3);
    }
}

/* Scan the tile T (mi, ld) of raw products of rows i0 .. i0 + mi against rows j0 .. j0 + mj,
 * turning them into keys: first by rows (candidate j0 + j to query i0 + i: one buffer at a
 * time), then, unless diag (the rows and columns are of the same block, and the columns' queries
 * are the rows' own), by columns (candidate i0 + i to query j0 + j), a group of SM_SIMD_LANES
 * columns down all the rows, so that only that group's buffers and thresholds are written.
 * In a diagonal tile row i skips its self match, column i0 + i - j0. */
static void all_scan(const all_state *S, float *T, int64_t ld, int64_t i0, int64_t mi, int64_t j0,
                     int64_t mj, int diag, int kind, const float *xn, float *f, int32_t *e) {
    static const float ones[SM_SIMD_LANES] = {0};
    const float *an = xn ? xn + i0 : ones, *bn = xn ? xn + j0 : ones;
    const int64_t bstep = xn ? 1 : 0, cap = S->cap;
    float *const keys = S->keys, *const thr = S->thr;
    int32_t *const ids = S->ids, *const thr_id = S->thr_id, *const cnt = S->cnt;
    for (int64_t i = 0; i < mi; i++) S->seen[i0 + i] += (int32_t)(mj - (diag && i0 + i >= j0 && i0 + i < j0 + mj));
    if (!diag)
        for (int64_t j = 0; j < mj; j++) S->seen[j0 + j] += (int32_t)mi;
    for (int64_t i = 0; i < mi; i++) { /* rows */
        float *row = T + i * ld;
        const int64_t gi = i0 + i, self = diag ? gi - j0 : -1;
        const float a = an[i * bstep];
        float t = thr[gi];
        int32_t tid = thr_id[gi];
        int64_t c = cnt[gi];
        for (int64_t j = 0; j < mj; j += SM_SIMD_LANES) {
            const int64_t w = mj - j < SM_SIMD_LANES ? mj - j : SM_SIMD_LANES;
            unsigned mr;
            if (w == SM_SIMD_LANES) {
                sm_simd_keys(kind, row + j, a, bn + j * bstep);
                mr = sm_simd_lanes_le(row + j, t);
                if (!mr) continue;
                if (self < j || self >= j + SM_SIMD_LANES) {
                    /* the row's lanes in one go (the buffer always has ALL_ROOM free) */
                    c += sm_simd_append_before(row + j, t, tid, (int32_t)(j0 + j), keys + gi * cap + c,
                                               ids + gi * cap + c);
                    mr = 0;
                }
            } else {
                for (int64_t l = 0; l < w; l++) row[j + l] = sm_simd_key1(kind, row[j + l], a, bn[(j + l) * bstep]);
                mr = (1u << w) - 1u;
            }
            while (mr) {
                const int b = __builtin_ctz(mr);
                mr &= mr - 1;
                const float v = row[j + b];
                const int32_t id = (int32_t)(j0 + j + b);
                if (j + b == self || v > t || (v == t && id > tid)) continue;
                keys[gi * cap + c] = v;
                ids[gi * cap + c] = id;
                c++;
            }
            if (c > cap - ALL_ROOM) { /* as all_offer: the room stays free for the next vector */
                cnt[gi] = (int32_t)c;
                all_compact(S, gi, f, e);
                c = cnt[gi]; t = thr[gi]; tid = thr_id[gi];
            }
        }
        cnt[gi] = (int32_t)c;
    }
    if (diag) return;
    for (int64_t j = 0; j < mj; j += SM_SIMD_LANES) { /* columns, a group of lanes at a time */
        const int64_t w = mj - j < SM_SIMD_LANES ? mj - j : SM_SIMD_LANES;
        for (int64_t i = 0; i < mi; i++) {
            const float *v = T + i * ld + j;
            unsigned mc = w == SM_SIMD_LANES ? sm_simd_lanes_le_each(v, thr + j0 + j) : (1u << w) - 1u;
            while (mc) {
                const int b = __builtin_ctz(mc);
                mc &= mc - 1;
                all_offer(S, j0 + j + b, v[b], (int32_t)(i0 + i), f, e);
            }
        }
    }
}

#if defined(SM_GEMM_X86)
/* The tile of rows i0 .. i0 + mi against rows j0 .. j0 + mj of another block (not diagonal;
 * mi >= SM_ALL_MR, mj >= SM_ALL_NR), as the products then all_scan compute it, fused
 * (knn_all.h): panels of SM_ALL_NR columns (packed into Bp, (d, SM_ALL_NR); the last one moved
 * back to end at mj, its columns already done masked) against all the rows, read in place; the
 * keys at or below a threshold (read as the panel starts: they only decrease, so a stale one
 * lets more through, never fewer) come back in hk / hw and are offered.  The same candidates
 * pass the same (key, id) tests as in all_scan, in another order (the result does not depend on
 * it: see above). */
static void all_tile_fused(const all_state *S, const float *x, const float *Xp, int d, float alpha, int kind,
                           const float *xn, int64_t i0, int64_t mi, int64_t j0, int64_t mj, float *Bp, float *hk,
                           uint32_t *hw, float *f, int32_t *e) {
    for (int64_t i = 0; i < mi; i++) S->seen[i0 + i] += (int32_t)mj;
    for (int64_t j = 0; j < mj; j++) S->seen[j0 + j] += (int32_t)mi;
    const float *an = xn ? xn + i0 : S->thr, *tr = S->thr + i0; /* an unread for DOT */
    for (int64_t done = 0; done < mj;) {
        const int64_t jb = mj - done < SM_ALL_NR ? mj - SM_ALL_NR : done; /* panel columns jb .. jb + NR */
        const uint32_t cvalid = (((uint32_t)1 << SM_ALL_NR) - 1u) & ~(((uint32_t)1 << (done - jb)) - 1u);
        const int64_t g = j0 + jb; /* the panel's first row */
        const float *bp = Xp + g * d; /* packed once (sm_k_knn_all), unless it starts off the grid */
        if (g % SM_ALL_NR) {
            sm_all_pack_avx2(x + g * d, d, Bp);
            bp = Bp;
        }
        const int h = sm_all_panel_avx2(d, x + i0 * d, (int)mi, bp, alpha, kind, an, xn ? xn + j0 + jb : S->thr,
                                        tr, S->thr + j0 + jb, cvalid, hk, hw);
        for (int q = 0; q < h; q++) {
            const int64_t i = i0 + (hw[q] >> 5), j = j0 + jb + ((hw[q] >> 1) & 15u);
            if (hw[q] & 1u) all_offer(S, j, hk[q], (int32_t)i, f, e); /* row i -> column j's query */
            else all_offer(S, i, hk[q], (int32_t)j, f, e);            /* column j -> row i's query */
        }
        done = jb + SM_ALL_NR;
    }
}
#endif

/* Sort u[0..m) ((key << 32 | id) words) into increasing order: a stable LSD radix sort on the
 * key half only (3 passes of 11 bits, constant digits skipped), then each run of equal keys,
 * rare and short, put in id order by insertion; the same order as a sort of the whole words.
 * tmp has room for m. */
static void u64_radix_sort(uint64_t *u, int64_t m, uint64_t *tmp) {
    if (m < 2) return;
    uint32_t hist[3][2048];
    memset(hist, 0, sizeof hist);
    for (int64_t i = 0; i < m; i++) {
        const uint32_t k = (uint32_t)(u[i] >> 32);
        hist[0][k & 2047]++;
        hist[1][(k >> 11) & 2047]++;
        hist[2][k >> 22]++;
    }
    uint64_t *src = u, *dst = tmp;
    for (int p = 0; p < 3; p++) {
        const int sh = 32 + 11 * p;
        if (hist[p][(src[0] >> sh) & 2047] == (uint32_t)m) continue; /* every key has this digit */
        uint32_t acc = 0;
        for (int b = 0; b < 2048; b++) { const uint32_t h = hist[p][b]; hist[p][b] = acc; acc += h; }
        for (int64_t i = 0; i < m; i++) dst[hist[p][(src[i] >> sh) & 2047]++] = src[i];
        uint64_t *t = src; src = dst; dst = t;
    }
    if (src != u) memcpy(u, src, (size_t)m * sizeof(uint64_t));
    for (int64_t i = 1; i < m; i++) /* equal keys: by id */
        if ((u[i] >> 32) == (u[i - 1] >> 32) && u[i] < u[i - 1]) {
            const uint64_t v = u[i];
            int64_t j = i;
            while (j > 0 && (u[j - 1] >> 32) == (v >> 32) && u[j - 1] > v) { u[j] = u[j - 1]; j--; }
            u[j] = v;
        }
}

static inline float fkey_inv(uint32_t u) {
    u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#define ALL_THREAD_BYTES(cap, d) \
    (ALIGN_UP((size_t)ALL_B * ALL_B * sizeof(float)) + ALIGN_UP((size_t)(cap) * sizeof(float)) + \
     ALIGN_UP((size_t)(cap) * sizeof(int32_t)) + ALIGN_UP((size_t)(cap) * 2 * sizeof(uint64_t)) + \
     ALIGN_UP((size_t)(d) * SM_ALL_NR * sizeof(float)) + 2 * ALIGN_UP((size_t)2 * ALL_B * SM_ALL_NR * 4) + \
     ALIGN_UP((size_t)ALL_RB * (d) * sizeof(float)) + ALIGN_UP((size_t)ALL_RB * sizeof(float)))
/* the fused pass's copy of x in panels of SM_ALL_NR rows (knn_all.h), packed once instead of per
 * tile (about 4% of the evaluation's time at n = 100,000); reserved on x86 builds, whatever the
 * path in use */
#if defined(SM_GEMM_X86)
#define ALL_PACKED_BYTES(n, d) ALIGN_UP((size_t)((n) / SM_ALL_NR) * SM_ALL_NR * (size_t)(d) * sizeof(float))
#else
#define ALL_PACKED_BYTES(n, d) ((size_t)0)
#endif

/* Ask Linux for 2 MiB pages under [p, p + bytes) (whole aligned 2 MiB pieces of it) where it
 * has not been touched yet: knn_all's appends land in n scattered buffers, one 4 KiB page each
 * (TLB misses); advice only, nothing is allocated and a refusal changes nothing. */
static void advise_huge(void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    const uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (e > a) (void)madvise((void *)a, (size_t)(e - a), MADV_HUGEPAGE);
#else
    (void)p; (void)bytes;
#endif
}

static int all_threads(int64_t n, int d) {
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    return n * (int64_t)d > PAR_WORK ? nt : 1;
}

size_t sm_k_knn_all_ws(int64_t n, int d, int k, int cap, int kind) {
    (void)k;
    if (n <= 0 || cap <= 0) return 0;
    const int nt = all_threads(n, d);
    size_t norms = kind != SM_K_DIST_DOT ? ALIGN_UP((size_t)n * sizeof(float)) : 0;
    return norms + 5 * ALIGN_UP((size_t)n * sizeof(float)) + ALIGN_UP((size_t)n) + ALL_PACKED_BYTES(n, d) +
           (size_t)nt * ALL_THREAD_BYTES(cap, d);
}

sm_status sm_k_knn_all(int kind, const float *x, int64_t n, int d, int k, int cap, float *dist, int32_t *idx,
                       const sm_ws *ws) {
    if (n <= 0) return SM_OK;
    if (n > INT32_MAX) return sm_fail(SM_ERR_INVALID, "knn_all: n = %lld rows are more than 32-bit ids hold", (long long)n);
    if (k < 1 || cap <= k + ALL_ROOM)
        return sm_fail(SM_ERR_INVALID, "knn_all: k = %d and cap = %d (need k >= 1 and cap > k + %d)", k, cap,
                       ALL_ROOM);
    const size_t need = sm_k_knn_all_ws(n, d, k, cap, kind);
    if (!ws || ws->bytes < need)
        return sm_fail(SM_ERR_INVALID, "knn_all: a workspace of %zu bytes is too small (%zu needed)",
                       ws ? ws->bytes : (size_t)0, need);
    if (!sm_all_finite(x, n * (int64_t)d)) return sm_fail(SM_ERR_NUMERIC, "knn_all: NaN or Inf in the rows");
    const int nt = all_threads(n, d);
    char *cur = ws->base;
    float *xn = kind != SM_K_DIST_DOT ? carve(&cur, (size_t)n * sizeof(float)) : NULL; /* (n) norms */
    all_state S;
    S.cnt = carve(&cur, (size_t)n * sizeof(int32_t));
    S.thr = carve(&cur, (size_t)n * sizeof(float));
    S.thr_id = carve(&cur, (size_t)n * sizeof(int32_t));
    S.seen = carve(&cur, (size_t)n * sizeof(int32_t));
    S.est = carve(&cur, (size_t)n);
    float *Xp = carve(&cur, ALL_PACKED_BYTES(n, d)); /* (n / NR, d, NR) every whole panel, packed once */
    (void)Xp;
    int32_t *redo = carve(&cur, (size_t)n * sizeof(int32_t)); /* (n) the queries to recompute */
    int64_t nredo = 0;
    char *per = cur; /* nt x (tile, f, e, u) */
    S.keys = dist;
    S.ids = idx;
    advise_huge(dist, (size_t)n * (size_t)cap * sizeof(float));
    advise_huge(idx, (size_t)n * (size_t)cap * sizeof(int32_t));
    S.cap = cap;
    S.k = k;
    if (xn) sm_k_row_norms(x, n, d, kind == SM_K_DIST_COS, xn);
    for (int64_t i = 0; i < n; i++) {
        S.cnt[i] = 0; S.thr[i] = INFINITY; S.thr_id[i] = INT32_MAX; S.seen[i] = 0; S.est[i] = 0;
    }
    const int64_t nb = (n + ALL_B - 1) / ALL_B, m = nb + (nb & 1); /* m players, m - 1 rounds */
    /* the rounds in the order g, 2g, ... (mod m - 1), g coprime to m - 1 near 0.618 (m - 1), so
     * that the warm-up rounds pair each block with blocks spread over the set (a sample even if
     * the rows are sorted by class); the diagonal round last.  The threshold estimate needs many
     * more candidates than k, so it is made only when n >= 8 k. */
    int64_t g = (int64_t)(0.618 * (double)(m - 1));
    if (g < 1) g = 1;
    for (;; g++) {
        int64_t a = g, b = m - 1;
        while (b) { int64_t t = a % b; a = b; b = t; }
        if (a == 1) break;
    }
    int64_t warm = (ALL_WARM + 2 * ALL_B - 1) / (2 * ALL_B);
    if (warm > (m - 1) / 4) warm = (m - 1) / 4;
    if (n < 8 * (int64_t)k) warm = 0;
    const float alpha = kind == SM_K_DIST_SQL2 ? -2.0f : -1.0f; /* products' factor (the keys' sign) */
#if defined(SM_GEMM_X86)
    const int fused = sm_gemm_active() != &sm_gemm_scalar; /* AVX2 (every AVX-512F CPU has it too) */
#endif
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        char *mine = per + (size_t)tid * ALL_THREAD_BYTES(cap, d);
        float *T = carve(&mine, (size_t)ALL_B * ALL_B * sizeof(float)); /* (B, B) tile */
        float *f = carve(&mine, (size_t)cap * sizeof(float));           /* (cap) */
        int32_t *e = carve(&mine, (size_t)cap * sizeof(int32_t));       /* (cap) */
        uint64_t *u = carve(&mine, (size_t)cap * 2 * sizeof(uint64_t)); /* (2 cap) */
        float *Bp = carve(&mine, (size_t)d * SM_ALL_NR * sizeof(float));  /* (d, SM_ALL_NR) */
        float *hk = carve(&mine, (size_t)2 * ALL_B * SM_ALL_NR * 4);      /* (2 B NR) fused hits' keys */
        uint32_t *hw = carve(&mine, (size_t)2 * ALL_B * SM_ALL_NR * 4);   /* (2 B NR) and where */
        float *Qr = carve(&mine, (size_t)ALL_RB * d * sizeof(float)); /* (RB, d) rows to recompute */
        float *Qn = carve(&mine, (size_t)ALL_RB * sizeof(float));     /* (RB) their norms */
        (void)Bp; (void)hk; (void)hw;
#if defined(SM_GEMM_X86)
        if (fused) { /* every whole panel of SM_ALL_NR rows, once (the tiles read them) */
#pragma omp for schedule(static)
            for (int64_t p = 0; p < n / SM_ALL_NR; p++)
                sm_all_pack_avx2(x + p * SM_ALL_NR * (int64_t)d, d, Xp + p * SM_ALL_NR * (int64_t)d);
        }
#endif
        for (int64_t rk = 0; rk < m; rk++) { /* rounds 0 .. m - 2 of pairs, then the diagonal */
            const int64_t r = rk == m - 1 ? m - 1 : (rk * g) % (m - 1), np = r == m - 1 ? nb : m / 2;
            if (warm > 0 && rk % warm == 0 && rk / warm <= ALL_REEST && !((rk / warm) & (rk / warm - 1))) {
                /* threshold estimates: at the end of the warm-up, then after 2, 4, ... times as
                 * many rounds (each from more candidates seen, so closer to the k-th key) */
#pragma omp for schedule(static)
                for (int64_t q = 0; q < n; q++) all_estimate(&S, q, n, f);
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t p = 0; p < np; p++) {
                int64_t I, J;
                if (r == m - 1) I = J = p;
                else if (p == 0) { I = r; J = m - 1; }
                else { I = (r + p) % (m - 1); J = (r - p + (m - 1)) % (m - 1); }
                if (I > J) { int64_t t = I; I = J; J = t; }
                if (J >= nb) continue; /* the odd player out */
                const int64_t i0 = I * ALL_B, j0 = J * ALL_B;
                const int64_t mi = n - i0 < ALL_B ? n - i0 : ALL_B, mj = n - j0 < ALL_B ? n - j0 : ALL_B;
                all_prefetch(&S, i0, mi);
                if (J != I) all_prefetch(&S, j0, mj);
#if defined(SM_GEMM_X86)
                if (fused && I != J && mi >= SM_ALL_MR && mj >= SM_ALL_NR) {
                    all_tile_fused(&S, x, Xp, d, alpha, kind, xn, i0, mi, j0, mj, Bp, hk, hw, f, e);
                    continue;
                }
#endif
                /* raw products alpha <x_i, x_j>; all_scan turns them into keys as it reads them */
                for (int64_t s0 = 0; s0 < mj; s0 += ALL_SW) { /* strips of columns that stay in L2 */
                    const int64_t sw = mj - s0 < ALL_SW ? mj - s0 : ALL_SW;
                    sm_k_dist_tile(SM_K_DIST_DOT, 0u, mi, sw, d, alpha, x + i0 * d, NULL, x + (j0 + s0) * d, NULL, T,
                                   sw);
                    all_scan(&S, T, sw, i0, mi, j0 + s0, sw, I == J, kind, xn, f, e);
                }
            }
        }
        /* the queries whose estimate was too low (fewer than k kept at or below it): every
         * candidate again, ALL_RB of them at a time in one tile of products (their rows gathered;
         * the keys are the tiles' bits, one fma chain per product) */
#pragma omp single
        for (int64_t q = 0; q < n; q++)
            if (S.est[q] && S.cnt[q] < k) redo[nredo++] = (int32_t)q;
#pragma omp for schedule(dynamic, 1)
        for (int64_t g0 = 0; g0 < nredo; g0 += ALL_RB) {
            const int64_t rb = nredo - g0 < ALL_RB ? nredo - g0 : ALL_RB, bj = ALL_B * ALL_B / rb;
            for (int64_t r = 0; r < rb; r++) {
                const int64_t q = redo[g0 + r];
                memcpy(Qr + r * d, x + q * d, (size_t)d * sizeof(float));
                if (xn) Qn[r] = xn[q];
                S.cnt[q] = 0; S.thr[q] = INFINITY; S.thr_id[q] = INT32_MAX; S.est[q] = 0;
            }
            for (int64_t j0 = 0; j0 < n; j0 += bj) {
                const int64_t mj = n - j0 < bj ? n - j0 : bj;
                sm_k_dist_tile(kind, SM_K_DIST_NAN_INF, rb, mj, d, -1.0f, Qr, xn ? Qn : NULL, x + j0 * d,
                               xn ? xn + j0 : NULL, T, mj);
                for (int64_t r = 0; r < rb; r++) {
                    const int64_t q = redo[g0 + r];
                    for (int64_t j = 0; j < mj; j++)
                        if (j0 + j != q) all_offer(&S, q, T[r * mj + j], (int32_t)(j0 + j), f, e);
                }
            }
        }
        /* each query's best k, ordered by (key, id), keys to output values */
        const float empty_val = kind == SM_K_DIST_SQL2 ? INFINITY : -INFINITY;
#pragma omp for schedule(static)
        for (int64_t q = 0; q < n; q++) {
            /* the whole buffer sorted by (key, id) and its first k kept: the k best, as a
             * compaction to k and a sort of those would give, for about half the passes */
            const int64_t m = S.cnt[q], c = m < k ? m : k;
            float *kq = dist + q * (int64_t)cap;
            int32_t *iq = idx + q * (int64_t)cap;
            for (int64_t i = 0; i < m; i++) u[i] = (uint64_t)fkey(kq[i]) << 32 | (uint32_t)iq[i];
            u64_radix_sort(u, m, u + cap);
            for (int64_t i = 0; i < c; i++) {
                float v = fkey_inv((uint32_t)(u[i] >> 32));
                kq[i] = kind == SM_K_DIST_SQL2 ? v : -v;
                iq[i] = (int32_t)(u[i] & 0xFFFFFFFFu);
            }
            for (int64_t i = c; i < k; i++) { kq[i] = empty_val; iq[i] = -1; }
        }
    }
    return SM_OK;
}
