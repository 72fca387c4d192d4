/* knn_cpu.c - the CPU backend's k-NN selection (the knn operation), after FAISS IndexFlat:
 * precomputed norms, tiled distance tiles (query tiles x database tiles: one sgemm, then
 * |x|^2 + |y|^2 - 2<x, y> clamped at 0 for L2), a top-1 path for k = 1, per-query max-heaps for
 * small k and a partial selection on whole rows for large k (a sampled threshold, one filtering
 * pass, an exact select and a stable radix sort of the few survivors).  The keys come straight
 * out of sgemm (alpha folds the sign and the factor 2).  The top-1 and heap scans skip 16
 * (AVX-512) or 8 (AVX2) candidates at a time that cannot enter.
 * Threading: many queries -> each thread takes whole query blocks with its own single-threaded
 * sgemm and selection (no barrier between them); a few queries -> one fused pass over the
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

#include "backend/cpu/simd.h"
#include <math.h>
#include <string.h>
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
            if (id == self) continue;
            /* candidates arrive in increasing index, so an equal key never displaces */
            if (hi[0] >= 0 && !(v < hk[0])) continue;
            if (v != v) v = INFINITY;
            heap_replace_top(hk, hi, k, v, id);
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
        sm_k_dist_tile(SM_K_DIST_DOT, small, mq, md, d, metric == SM_METRIC_L2 ? -2.0f : -1.0f, Q, NULL, D, NULL,
                       T, ld);
    else
        sm_k_dist_tile(tile_kind(metric), small | (metric == SM_METRIC_L2 ? SM_K_DIST_NAN_INF : 0u), mq, md, d, -1.0f,
                       Q, qn ? qn + q0 : NULL, D, dn ? dn + d0 : NULL, T, ld);
}

/* ---- a few queries: one fused pass over the database --------------------------------------- */

/* k-NN of nq <= LAZY_MAX_NQ queries in one pass over the database, which is split into one
 * contiguous block per thread; each thread streams its rows once (scores and norms from the same
 * load, so no norm pass), keeping per-query heaps in hk/hi (nthreads, nq, k); the heaps are then
 * merged by (key, id) into dist/idx (not yet best-first).  A non-finite score (which every
 * non-finite database row gives) sets *bad; then nothing has been written to dist/idx. */
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
        for (int64_t j = lo; j < hi_end; j++) {
            const float *row = db + j * (int64_t)d;
            for (int64_t i = 0; i < nq; i++) {
                float bb, s = sm_simd_dot_and_norm(q + i * (int64_t)d, row, d, &bb), v;
                if (metric == SM_METRIC_IP) v = -s;
                else if (metric == SM_METRIC_L2) { v = qn[i] + bb - 2.0f * s; v = v > 0.0f ? v : (v != v ? v : 0.0f); }
                else v = bb > 0.0f ? -(s * qn[i] / sqrtf(bb)) : (bb == bb ? -0.0f * s : bb);
                if (!(v - v == 0.0f)) { flag = 1; v = INFINITY; } /* NaN or inf */
                if (self_offset >= 0 && j == self_offset + i) continue;
                float *h = hk + i * k;
                int64_t *x = hi + i * k;
                if (x[0] >= 0 && !(v < h[0])) continue; /* increasing ids: equal never displaces */
                heap_replace_top(h, x, k, v, j);
            }
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
enum { PATH_EMPTY, PATH_FEW, PATH_BLOCKS, PATH_SELECT_PAR, PATH_GENERIC };
typedef struct knn_plan {
    int path, mode, tiny, lazy, nthreads, nt_few;
    int64_t bq, bd;  /* generic tiles: query rows x database rows */
    int64_t bdt;     /* blocks: database rows a thread tile */
    int64_t bqt;     /* parallel selection: query rows a thread block */
    size_t bytes;    /* workspace */
} knn_plan;

#define ALIGN_UP(x) (((x) + 63u) & ~(size_t)63u)
/* The next `bytes` of the workspace at *cur (64-byte aligned pieces). */
static void *carve(char **cur, size_t bytes) {
    void *p = *cur;
    *cur += ALIGN_UP(bytes);
    return p;
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
    } else if (mode != MODE_SELECT && !tiny && nq >= 2 * BLOCK_Q) {
        P->path = PATH_BLOCKS;
        P->bdt = n < BLOCK_DB ? n : BLOCK_DB;
        P->bytes = ALIGN_UP((size_t)nthreads * (size_t)(BLOCK_Q * P->bdt) * sizeof(float)) + norms;
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

    /* ---- many queries, top-1 / heaps: each thread takes whole query blocks (dynamic schedule)
     * and runs its own single-threaded sgemm on tiles that stay in cache, then scans them; no
     * barrier between the products and the scans (they cost most on a busy machine). ---- */
    if (P.path == PATH_BLOCKS) {
        int64_t nb = (nq + BLOCK_Q - 1) / BLOCK_Q, bdt = P.bdt;
        char *cur = base;
        float *Tt = carve(&cur, (size_t)nthreads * (size_t)(BLOCK_Q * bdt) * sizeof(float)); /* per thread */
        float *qn = NULL, *dn = NULL;
        if (metric != SM_METRIC_IP) {
            qn = carve(&cur, (size_t)nq * sizeof(float));
            dn = carve(&cur, (size_t)n * sizeof(float));
            sm_k_row_norms(q, nq, d, metric == SM_METRIC_COSINE, qn);
            sm_k_row_norms(db, n, d, metric == SM_METRIC_COSINE, dn);
        }
        for (int64_t i = 0; i < nq * (int64_t)k; i++) { dist[i] = INFINITY; idx[i] = -1; }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
        for (int64_t b = 0; b < nb; b++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *T = Tt + (int64_t)tid * BLOCK_Q * bdt;
            int64_t q0 = b * BLOCK_Q, mq = nq - q0 < BLOCK_Q ? nq - q0 : BLOCK_Q;
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
        if (metric != SM_METRIC_IP) {
            qn = carve(&cur, (size_t)nq * sizeof(float));
            dn = carve(&cur, (size_t)n * sizeof(float));
            sm_k_row_norms(q, nq, d, metric == SM_METRIC_COSINE, qn);
            sm_k_row_norms(db, n, d, metric == SM_METRIC_COSINE, dn);
        }
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
    if (metric != SM_METRIC_IP) {
        qn = carve(&cur, (size_t)nq * sizeof(float));
        dn = carve(&cur, (size_t)n * sizeof(float));
        sm_k_row_norms(q, nq, d, metric == SM_METRIC_COSINE, qn);
        sm_k_row_norms(db, n, d, metric == SM_METRIC_COSINE, dn);
    }
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

