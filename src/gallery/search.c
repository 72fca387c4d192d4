/* search.c - exact k-nearest-neighbour search after FAISS IndexFlat: precomputed norms, tiled
 * sgemm (query tiles x database tiles), |x|^2 + |y|^2 - 2<x, y> clamped at 0 for L2, a top-1
 * path for k = 1, per-query max-heaps for small k and a partial selection (quickselect on whole
 * rows) for large k.  OpenBLAS threads the products (called outside parallel regions); OpenMP
 * threads the per-query selection.
 *
 * Internally every candidate gets a key where smaller is better: the squared L2 distance, or the
 * negated inner product / cosine.  Candidates are ordered by (key, index), so ties go to the
 * lower index and the result is deterministic.  The caller's dist/idx buffers double as the heap
 * storage; nothing is written to them before every allocation has succeeded. */
#include "gallery/search.h"

#include "core/core.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
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
#define SELECT_MAX_N ((int64_t)1 << 26) /* above this n the heap is used for any k         */
#define TINY_WORK 65536                /* nq * n * d below this: plain loops, no BLAS     */

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

static inline int cand_lt(const cand *a, const cand *b) {
    return a->key < b->key || (a->key == b->key && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return cand_lt(a, b) ? -1 : (cand_lt(b, a) ? 1 : 0);
}

/* Rearrange c[0..m) so that its k smallest elements come first (any order).  Quickselect with
 * a median-of-three pivot; (key, id) is a total order since ids are distinct. */
static void select_k(cand *c, int64_t m, int64_t k) {
    int64_t lo = 0, hi = m - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        cand t;
        if (cand_lt(&c[mid], &c[lo])) { t = c[mid]; c[mid] = c[lo]; c[lo] = t; }
        if (cand_lt(&c[hi], &c[lo])) { t = c[hi]; c[hi] = c[lo]; c[lo] = t; }
        if (cand_lt(&c[hi], &c[mid])) { t = c[hi]; c[hi] = c[mid]; c[mid] = t; }
        cand p = c[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (cand_lt(&c[i], &p)) i++;
            while (cand_lt(&p, &c[j])) j--;
            if (i <= j) { t = c[i]; c[i] = c[j]; c[j] = t; i++; j--; }
        }
        /* now [lo, j] <= p <= [i, hi] */
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* ---- norms --------------------------------------------------------------------------------- */
/* out (n): squared norms (L2) or inverse norms (cosine; 0 for a zero vector), double accumulated. */
static void row_norms(const float *x, int64_t n, int d, int inverse, float *out) {
#pragma omp parallel for schedule(static) if (n * (int64_t)d > 65536)
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * (int64_t)d;
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
        out[i] = inverse ? (s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f) : (float)s;
    }
}

/* ---- tile scores ---------------------------------------------------------------------------- */
/* T (mq, ld) <- keys of queries q[q0..q0+mq) against database rows db[d0..d0+md). */
static void tile_keys(const float *db, const float *q, int d, int64_t q0, int64_t mq, int64_t d0,
                      int64_t md, int64_t ld, sm_metric metric, const float *qn, const float *dn,
                      int tiny, float *T) {
    const float *Q = q + q0 * (int64_t)d, *D = db + d0 * (int64_t)d;
    if (tiny) {
        for (int64_t i = 0; i < mq; i++)
            for (int64_t j = 0; j < md; j++) {
                const float *a = Q + i * (int64_t)d, *b = D + j * (int64_t)d;
                float s = 0;
                for (int t = 0; t < d; t++) s += a[t] * b[t];
                T[i * ld + j] = s;
            }
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mq, (int)md, d, 1.0f, Q, d, D,
                    d, 0.0f, T, (int)ld);
    }
#pragma omp parallel for schedule(static) if (mq * md > 65536)
    for (int64_t i = 0; i < mq; i++) {
        float *row = T + i * ld;
        if (metric == SM_METRIC_L2) {
            float a = qn[q0 + i];
            for (int64_t j = 0; j < md; j++) {
                float v = a + dn[d0 + j] - 2.0f * row[j];
                row[j] = v > 0.0f ? v : 0.0f;
                if (v != v) row[j] = INFINITY; /* inf - inf on overflowing inputs */
            }
        } else if (metric == SM_METRIC_IP) {
            for (int64_t j = 0; j < md; j++) row[j] = -row[j];
        } else {
            float a = qn[q0 + i];
            for (int64_t j = 0; j < md; j++) row[j] = -(row[j] * a * dn[d0 + j]);
        }
        if (metric != SM_METRIC_L2)
            for (int64_t j = 0; j < md; j++)
                if (row[j] != row[j]) row[j] = INFINITY;
    }
}

sm_status sm_knn_search_ex(const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                           sm_metric metric, int64_t self_offset, float *dist, int64_t *idx) {
    if (!db && n > 0) return sm_fail(SM_ERR_INVALID, "knn search: database is NULL");
    if (!q && nq > 0) return sm_fail(SM_ERR_INVALID, "knn search: queries are NULL");
    if ((!dist || !idx) && nq > 0) return sm_fail(SM_ERR_INVALID, "knn search: output is NULL");
    if (n < 0 || nq < 0)
        return sm_fail(SM_ERR_INVALID, "knn search: negative size (n %lld, nq %lld)",
                       (long long)n, (long long)nq);
    if (d <= 0) return sm_fail(SM_ERR_INVALID, "knn search: dimension %d must be positive", d);
    if (k <= 0) return sm_fail(SM_ERR_INVALID, "knn search: k = %d must be positive", k);
    if (metric != SM_METRIC_L2 && metric != SM_METRIC_IP && metric != SM_METRIC_COSINE)
        return sm_fail(SM_ERR_INVALID, "knn search: unknown metric %d", (int)metric);
    if (n > 0 && !sm_all_finite(db, n * (int64_t)d))
        return sm_fail(SM_ERR_NUMERIC, "knn search: NaN or Inf in the database");
    if (nq > 0 && !sm_all_finite(q, nq * (int64_t)d))
        return sm_fail(SM_ERR_NUMERIC, "knn search: NaN or Inf in the queries");
    if (nq == 0) return SM_OK;

    const float empty_val = metric == SM_METRIC_L2 ? INFINITY : -INFINITY;
    if (n == 0) {
        for (int64_t i = 0; i < nq * (int64_t)k; i++) { dist[i] = empty_val; idx[i] = -1; }
        return SM_OK;
    }

    int mode = k == 1 ? MODE_TOP1
             : ((k <= HEAP_MAX_K || n > SELECT_MAX_N) ? MODE_HEAP : MODE_SELECT);
    int tiny = (double)nq * (double)n * (double)d < TINY_WORK;
    int64_t bq, bd;
    if (mode == MODE_SELECT) {
        bd = n;
        bq = SELECT_FLOATS / n;
        if (bq < 1) bq = 1;
        if (bq > nq) bq = nq;
    } else {
        bq = nq < TILE_Q ? nq : TILE_Q;
        bd = TILE_FLOATS / bq;
        if (bd < TILE_DB) bd = TILE_DB;
        if (bd > n) bd = n;
    }
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = omp_get_max_threads();
#endif

    /* ---- allocations (before any output is touched) ---- */
    float *T = sm_alloc((size_t)(bq * bd), sizeof(float)); /* (bq, bd) tile of keys */
    float *qn = NULL, *dn = NULL;                            /* (nq), (n) norms        */
    cand *scratch = NULL;                                    /* (nthreads, n) pairs    */
    if (!T) return SM_ERR_NOMEM;
    if (metric != SM_METRIC_IP) {
        qn = sm_alloc((size_t)nq, sizeof(float));
        dn = sm_alloc((size_t)n, sizeof(float));
        if (!qn || !dn) { sm_free(T); sm_free(qn); sm_free(dn); return SM_ERR_NOMEM; }
        row_norms(q, nq, d, metric == SM_METRIC_COSINE, qn);
        row_norms(db, n, d, metric == SM_METRIC_COSINE, dn);
    }
    if (mode == MODE_SELECT) {
        scratch = sm_alloc((size_t)nthreads * (size_t)n, sizeof(cand));
        if (!scratch) { sm_free(T); sm_free(qn); sm_free(dn); return SM_ERR_NOMEM; }
    }

    /* ---- empty heaps ---- */
    if (mode != MODE_SELECT)
        for (int64_t i = 0; i < nq * (int64_t)k; i++) { dist[i] = INFINITY; idx[i] = -1; }

    for (int64_t q0 = 0; q0 < nq; q0 += bq) {
        int64_t mq = nq - q0 < bq ? nq - q0 : bq;
        for (int64_t d0 = 0; d0 < n; d0 += bd) {
            int64_t md = n - d0 < bd ? n - d0 : bd;
            tile_keys(db, q, d, q0, mq, d0, md, bd, metric, qn, dn, tiny, T);
#pragma omp parallel for schedule(dynamic, 16) if (mq * md > 65536)
            for (int64_t i = 0; i < mq; i++) {
                const float *row = T + i * bd;
                int64_t qi = q0 + i;
                int64_t self = self_offset >= 0 ? self_offset + qi : -1;
                float *hk = dist + qi * (int64_t)k;
                int64_t *hi = idx + qi * (int64_t)k;
                if (mode == MODE_TOP1) {
                    float bk = hk[0];
                    int64_t bi = hi[0];
                    for (int64_t j = 0; j < md; j++) {
                        int64_t id = d0 + j;
                        if (id == self) continue;
                        if (bi < 0 || row[j] < bk) { bk = row[j]; bi = id; }
                    }
                    hk[0] = bk;
                    hi[0] = bi;
                } else if (mode == MODE_HEAP) {
                    /* candidates arrive in increasing index, so an equal key never displaces */
                    for (int64_t j = 0; j < md; j++) {
                        int64_t id = d0 + j;
                        if (id == self) continue;
                        if (hi[0] >= 0 && !(row[j] < hk[0])) continue;
                        heap_replace_top(hk, hi, k, row[j], id);
                    }
                } else {
                    int tid = 0;
#ifdef _OPENMP
                    tid = omp_get_thread_num();
#endif
                    cand *c = scratch + (int64_t)tid * n;
                    int64_t m = 0;
                    for (int64_t j = 0; j < md; j++) {
                        if (j == self) continue;
                        c[m].key = row[j];
                        c[m].id = j;
                        m++;
                    }
                    int64_t kk = m < k ? m : k;
                    if (kk < m) select_k(c, m, kk);
                    qsort(c, (size_t)kk, sizeof(cand), cand_cmp);
                    for (int64_t r = 0; r < kk; r++) { hk[r] = c[r].key; hi[r] = c[r].id; }
                    for (int64_t r = kk; r < k; r++) { hk[r] = INFINITY; hi[r] = -1; }
                }
            }
        }
    }

    /* ---- best-first order and output values ---- */
#pragma omp parallel for schedule(static) if (nq * (int64_t)k > 65536)
    for (int64_t i = 0; i < nq; i++) {
        float *hk = dist + i * (int64_t)k;
        int64_t *hi = idx + i * (int64_t)k;
        if (mode == MODE_HEAP) heap_sort(hk, hi, k);
        for (int r = 0; r < k; r++) {
            if (hi[r] < 0) hk[r] = empty_val;
            else if (metric != SM_METRIC_L2) hk[r] = -hk[r];
        }
    }

    sm_free(T);
    sm_free(qn);
    sm_free(dn);
    sm_free(scratch);
    return SM_OK;
}

sm_status sm_knn_search(const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                        sm_metric metric, int exclude_self, float *dist, int64_t *idx) {
    return sm_knn_search_ex(db, n, q, nq, d, k, metric, exclude_self ? 0 : -1, dist, idx);
}
