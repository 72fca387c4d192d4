/* retrieval.c - retrieval metrics of embeddings against their own labels, with the definitions
 * of pytorch-metric-learning's AccuracyCalculator (query set = reference set, self excluded):
 * precision@1, R-precision, MAP@R, recall@{1,2,4,8}, and NMI of a k-means clustering; plus the
 * standalone sm_nmi (scikit-learn's normalized_mutual_info_score, arithmetic normalisation).
 * Neighbours (each query's top K = max(R_max, 8)) come from the backend's all-pairs k-NN (knn_all:
 * the symmetric distance tiles once, candidate buffers of (n, cap)) when its buffers fit
 * ALL_BUDGET, else from the exact search (gallery/search.c) in blocks of queries, so memory
 * stays bounded; both give the same neighbours. */
#include "core/core.h"
#include "backend/backend.h"
#include "gallery/search.h"
#include "mine/distance.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define KMEANS_ITERS 50
#define KMEANS_SEED 0x5eedc0ffee1234ULL
#define KMEANS_MAX_TRIALS 16
#define PAR_WORK ((int64_t)1 << 21)  /* n * d below this: one thread (a parallel region costs
                                       * more than it saves, worst on a loaded machine) */
#define KNN_BLOCK_ENTRIES ((int64_t)1 << 22) /* queries per block * K: 48 MiB of results */
#define ALL_BUDGET ((int64_t)3 << 29) /* bytes of (n, cap) candidate buffers for one all-pairs call (1.5 GiB) */

static int cmp_i32(const void *pa, const void *pb) {
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    return (a > b) - (a < b);
}

static int cmp_i64(const void *pa, const void *pb) {
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return (a > b) - (a < b);
}

/* Map arbitrary int32 values v (n) to dense ids 0..*nc-1 in id (n), ordered by value; counts
 * (optional, *counts allocated with *nc entries) receives each id's size. */
static sm_status compact_labels(const int32_t *v, int64_t n, int32_t *id, int64_t *nc,
                                int64_t **counts) {
    int32_t *u = sm_alloc((size_t)n, sizeof(int32_t)); /* (n) sorted values */
    if (!u) return SM_ERR_NOMEM;
    memcpy(u, v, (size_t)n * sizeof(int32_t));
    qsort(u, (size_t)n, sizeof(int32_t), cmp_i32);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || u[i] != u[m - 1]) u[m++] = u[i];
    int64_t *cnt = NULL;
    if (counts) {
        cnt = sm_calloc((size_t)m, sizeof(int64_t));
        if (!cnt) { sm_free(u); return SM_ERR_NOMEM; }
    }
    for (int64_t i = 0; i < n; i++) {
        const int32_t *p = bsearch(&v[i], u, (size_t)m, sizeof(int32_t), cmp_i32);
        id[i] = (int32_t)(p - u);
        if (cnt) cnt[id[i]]++;
    }
    sm_free(u);
    *nc = m;
    if (counts) *counts = cnt;
    return SM_OK;
}

/* NMI of dense labelings a (n, ids < na) and b (n, ids < nb). */
static sm_status nmi_dense(const int32_t *a, int64_t na, const int32_t *b, int64_t nb, int64_t n,
                           double *out) {
    int64_t *key = sm_alloc((size_t)n, sizeof(int64_t));  /* (n) joint cell a * nb + b */
    double *pa = sm_calloc((size_t)na, sizeof(double));   /* (na) marginal counts */
    double *pb = sm_calloc((size_t)nb, sizeof(double));   /* (nb) marginal counts */
    if (!key || !pa || !pb) { sm_free(key); sm_free(pa); sm_free(pb); return SM_ERR_NOMEM; }
    for (int64_t i = 0; i < n; i++) {
        key[i] = (int64_t)a[i] * nb + b[i];
        pa[a[i]] += 1;
        pb[b[i]] += 1;
    }
    qsort(key, (size_t)n, sizeof(int64_t), cmp_i64);
    const double N = (double)n, logN = log(N);
    double mi = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && key[j] == key[i]) j++;
        double nij = (double)(j - i);
        int64_t ia = key[i] / nb, ib = key[i] % nb;
        mi += nij / N * (log(nij) + logN - log(pa[ia]) - log(pb[ib]));
        i = j;
    }
    if (mi < 0) mi = 0;
    double ha = 0, hb = 0;
    int64_t ua = 0, ub = 0; /* labels actually present (k-means may leave a cluster empty) */
    for (int64_t i = 0; i < na; i++)
        if (pa[i] > 0) { ha -= pa[i] / N * (log(pa[i]) - logN); ua++; }
    for (int64_t i = 0; i < nb; i++)
        if (pb[i] > 0) { hb -= pb[i] / N * (log(pb[i]) - logN); ub++; }
    sm_free(key);
    sm_free(pa);
    sm_free(pb);
    if (ua == 1 && ub == 1) { *out = 1.0; return SM_OK; } /* both a single cluster */
    if (mi == 0) { *out = 0.0; return SM_OK; }
    double norm = 0.5 * (ha + hb);
    *out = mi / (norm > DBL_EPSILON ? norm : DBL_EPSILON);
    return SM_OK;
}

sm_status sm_nmi(const int32_t *a, const int32_t *b, int64_t n, double *out) {
    if (!a || !b || !out) return sm_fail(SM_ERR_INVALID, "nmi: NULL argument");
    if (n <= 0) return sm_fail(SM_ERR_INVALID, "nmi: n = %lld must be positive", (long long)n);
    int32_t *ca = sm_alloc((size_t)n, sizeof(int32_t)), *cb = sm_alloc((size_t)n, sizeof(int32_t));
    int64_t na = 0, nb = 0;
    sm_status st = (!ca || !cb) ? SM_ERR_NOMEM : SM_OK;
    if (st == SM_OK) st = compact_labels(a, n, ca, &na, NULL);
    if (st == SM_OK) st = compact_labels(b, n, cb, &nb, NULL);
    if (st == SM_OK) st = nmi_dense(ca, na, cb, nb, n, out);
    sm_free(ca);
    sm_free(cb);
    return st;
}

/* ---- k-means (k-means++ init, Lloyd iterations) ------------------------------------------- */
static double sqdist(const float *a, const float *b, int d) {
    double s = 0;
    for (int t = 0; t < d; t++) {
        double u = (double)a[t] - b[t];
        s += u * u;
    }
    return s;
}

/* Cluster x (n, d) into k clusters; assign (n) receives cluster ids. */
static sm_status kmeans(const float *x, int64_t n, int d, int64_t k, int32_t *assign) {
    if (k <= 1) {
        memset(assign, 0, (size_t)n * sizeof(int32_t));
        return SM_OK;
    }
    float *C = sm_alloc((size_t)(k * d), sizeof(float));    /* (k, d) centres */
    double *S = sm_alloc((size_t)(k * d), sizeof(double));  /* (k, d) sums */
    int64_t *cnt = sm_alloc((size_t)k, sizeof(int64_t));    /* (k) sizes */
    double *D2 = sm_alloc((size_t)n, sizeof(double));       /* (n) distance to nearest centre */
    float *dd = sm_alloc((size_t)n, sizeof(float));         /* (n) search distances */
    int64_t *ai = sm_alloc((size_t)n, sizeof(int64_t));     /* (n) search indices */
    float *xn2 = sm_alloc((size_t)n, sizeof(float));        /* (n) squared norms */
    float *P = sm_alloc((size_t)KMEANS_MAX_TRIALS * (size_t)d, sizeof(float)); /* (trials, d) */
    float *Dc = sm_alloc((size_t)n * KMEANS_MAX_TRIALS, sizeof(float)); /* (trials, n) */
    sm_status st = SM_OK;
    sm_backend *be = sm_backend_default();
    sm_ws kws = {NULL, 0};
    if (!C || !S || !cnt || !D2 || !dd || !ai || !xn2 || !P || !Dc) {
        st = SM_ERR_NOMEM;
        goto done;
    }

    /* k-means++: each new centre drawn with probability proportional to D2 */
    sm_rng rng;
    sm_rng_seed(&rng, KMEANS_SEED);
    int64_t first = (int64_t)sm_rng_below(&rng, (uint64_t)n);
    memcpy(C, x + first * d, (size_t)d * sizeof(float));
#pragma omp parallel for schedule(static) if (n * (int64_t)d > PAR_WORK)
    for (int64_t i = 0; i < n; i++) D2[i] = sqdist(x + i * d, C, d);
    /* greedy k-means++ (as scikit-learn): draw 2 + ln k candidates, keep the one that lowers
     * the potential sum D2 the most.  The candidates' squared distances to every point come from
     * one distance tile, |x|^2 + |c|^2 - 2<x, c> clamped at 0 (sums in fixed order:
     * deterministic; a NaN from overflowing inputs is +inf, so it never lowers the potential).
     * The tile is (trials, n), the few candidates as its rows: the products' kernel then runs
     * full-width over the points (as (n, trials) every tile of it was a narrow edge), and the
     * values are the same (each product is one fma chain over the same pairs, the norms added
     * with a commutative +). */
    sm_be_row_norms(sm_backend_default(), x, n, d, 0, xn2);
    int trials = 2 + (int)log((double)k);
    if (trials > KMEANS_MAX_TRIALS) trials = KMEANS_MAX_TRIALS;
    for (int64_t c = 1; c < k; c++) {
        double total = 0;
        for (int64_t i = 0; i < n; i++) total += D2[i];
        int64_t pick[KMEANS_MAX_TRIALS];
        float pn[KMEANS_MAX_TRIALS]; /* (trials) the candidates' squared norms */
        for (int tr = 0; tr < trials; tr++) {
            pick[tr] = n - 1;
            if (total > 0) {
                double r = sm_rng_uniform(&rng) * total, acc = 0;
                for (int64_t i = 0; i < n; i++) {
                    acc += D2[i];
                    if (acc > r && D2[i] > 0) { pick[tr] = i; break; }
                }
            } else {
                pick[tr] = (int64_t)sm_rng_below(&rng, (uint64_t)n);
            }
            memcpy(P + (int64_t)tr * d, x + pick[tr] * d, (size_t)d * sizeof(float));
            pn[tr] = xn2[pick[tr]];
        }
        sm_be_dist_tile(sm_backend_default(), SM_K_DIST_SQL2, SM_K_DIST_NAN_INF, trials, n, d, 0.0f, P, pn, x, xn2, Dc, n);
        /* each trial's potential is one sum over i in order (a thread per trial, the same bits) */
        double pots[KMEANS_MAX_TRIALS];
#pragma omp parallel for schedule(static) if (n > PAR_WORK / 64)
        for (int tr = 0; tr < trials; tr++) {
            double pot = 0;
            const float *dc = Dc + (int64_t)tr * n;
            for (int64_t i = 0; i < n; i++) {
                double dv = dc[i];
                pot += dv < D2[i] ? dv : D2[i];
            }
            pots[tr] = pot;
        }
        int best = 0;
        for (int tr = 1; tr < trials; tr++)
            if (pots[tr] < pots[best]) best = tr;
        memcpy(C + c * d, x + pick[best] * d, (size_t)d * sizeof(float));
        const float *dc = Dc + (int64_t)best * n;
#pragma omp parallel for schedule(static) if (n > PAR_WORK / 64)
        for (int64_t i = 0; i < n; i++) {
            double dv = dc[i];
            if (dv < D2[i]) D2[i] = dv;
        }
    }

    /* Lloyd: each point's nearest centre, through the backend's k-NN with one workspace for all
     * the iterations (the points were checked for NaN by the caller, so not again each time) */
    kws.bytes = sm_be_knn_ws(be, k, n, d, 1, SM_K_DIST_SQL2);
    if (kws.bytes && sm_be_alloc(be, kws.bytes, &kws.base) != SM_OK) {
        st = sm_fail(SM_ERR_NOMEM, "k-means: out of memory for a %zu-byte search workspace", kws.bytes);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) assign[i] = -1;
    for (int it = 0; it < KMEANS_ITERS; it++) {
        st = sm_be_knn(be, SM_K_DIST_SQL2, C, k, x, n, d, 1, -1, dd, ai, &kws);
        if (st != SM_OK) goto done;
        int64_t changed = 0;
        for (int64_t i = 0; i < n; i++) {
            if (assign[i] != (int32_t)ai[i]) changed++;
            assign[i] = (int32_t)ai[i];
        }
        if (changed == 0 || it == KMEANS_ITERS - 1) break;
        memset(S, 0, (size_t)(k * d) * sizeof(double));
        memset(cnt, 0, (size_t)k * sizeof(int64_t));
        for (int64_t i = 0; i < n; i++) cnt[assign[i]]++;
        /* the sums split by dimension: every S entry is still one sum over i in order */
#pragma omp parallel if (n * (int64_t)d > PAR_WORK)
        {
            int t0 = 0, t1 = d;
#ifdef _OPENMP
            const int nth = omp_get_num_threads(), th = omp_get_thread_num();
            t0 = (int)((int64_t)d * th / nth);
            t1 = (int)((int64_t)d * (th + 1) / nth);
#endif
            for (int64_t i = 0; i < n; i++) {
                const float *r = x + i * d;
                double *s = S + (int64_t)assign[i] * d;
                for (int t = t0; t < t1; t++) s[t] += r[t];
            }
        }
        for (int64_t c = 0; c < k; c++) {
            if (cnt[c] > 0) {
                for (int t = 0; t < d; t++) C[c * d + t] = (float)(S[c * d + t] / (double)cnt[c]);
            } else { /* empty cluster: move it to the point farthest from its centre */
                int64_t far = 0;
                for (int64_t i = 1; i < n; i++)
                    if (dd[i] > dd[far]) far = i;
                memcpy(C + c * d, x + far * d, (size_t)d * sizeof(float));
                dd[far] = -1.0f;
            }
        }
    }
done:
    sm_be_free(be, kws.base);
    sm_free(C);
    sm_free(S);
    sm_free(cnt);
    sm_free(D2);
    sm_free(dd);
    sm_free(ai);
    sm_free(xn2);
    sm_free(P);
    sm_free(Dc);
    return st;
}

/* ---- retrieval metrics ----------------------------------------------------------------------- */
typedef struct qscore { double ap; int64_t R, hits, first_hit; } qscore; /* one query's ranks */

sm_status sm_retrieval_metrics(const float *emb, const int32_t *labels, int64_t n, int d,
                               sm_metric metric, sm_retrieval_result *out) {
    return sm_retrieval_metrics_per_query(emb, labels, n, d, metric, out, NULL, NULL, NULL);
}

sm_status sm_retrieval_metrics_per_query(const float *emb, const int32_t *labels, int64_t n, int d,
                                         sm_metric metric, sm_retrieval_result *out, double *ap_at_r,
                                         double *r_precision, double *precision_at_1) {
    if (!emb || !labels || !out) return sm_fail(SM_ERR_INVALID, "retrieval metrics: NULL argument");
    if (n < 2) return sm_fail(SM_ERR_INVALID, "retrieval metrics: need at least 2 samples, got %lld",
                              (long long)n);
    if (d <= 0) return sm_fail(SM_ERR_INVALID, "retrieval metrics: dimension %d must be positive", d);
    if (metric != SM_METRIC_L2 && metric != SM_METRIC_IP && metric != SM_METRIC_COSINE)
        return sm_fail(SM_ERR_INVALID, "retrieval metrics: unknown metric %d", (int)metric);
    if (!sm_all_finite(emb, n * (int64_t)d))
        return sm_fail(SM_ERR_NUMERIC, "retrieval metrics: NaN or Inf in the embeddings");

    int32_t *cls = sm_alloc((size_t)n, sizeof(int32_t)); /* (n) dense class ids */
    int64_t *cnt = NULL, nc = 0;                          /* (nc) class sizes    */
    float *dist = NULL, *xn = NULL;
    int64_t *idx = NULL;
    int32_t *clu = NULL;
    sm_status st = cls ? compact_labels(labels, n, cls, &nc, &cnt) : SM_ERR_NOMEM;
    if (st != SM_OK) goto done;

    int64_t maxc = 0;
    for (int64_t c = 0; c < nc; c++) if (cnt[c] > maxc) maxc = cnt[c];
    int64_t K = maxc - 1 > 8 ? maxc - 1 : 8;
    if (K > n - 1) K = n - 1;
    if (K > INT32_MAX) K = INT32_MAX;
    static const int rk[4] = {1, 2, 4, 8};
    double p1 = 0, rprec = 0, map = 0, rec[4] = {0, 0, 0, 0};
    int64_t nquery = 0, nskip = 0;
    /* query qi's neighbours nb (K of them, int64 or int32 ids) scored into qs (R <= 0: skipped) */
#define SCORE_ONE(qi, NB, QS)                                                                \
    do {                                                                                     \
        const int32_t c = cls[qi];                                                           \
        const int64_t R = cnt[c] - 1;                                                        \
        int64_t hits = 0, first_hit = -1;                                                    \
        double ap = 0;                                                                       \
        for (int64_t r = 0; R > 0 && r < K; r++) {                                           \
            int rel = (NB)[r] >= 0 && cls[(NB)[r]] == c;                                     \
            if (!rel) continue;                                                              \
            if (first_hit < 0) first_hit = r;                                                \
            if (r < R) {                                                                     \
                hits++;                                                                      \
                ap += (double)hits / (double)(r + 1);                                        \
            } else {                                                                         \
                break;                                                                       \
            }                                                                                \
        }                                                                                    \
        (QS).R = R; (QS).hits = hits; (QS).first_hit = first_hit; (QS).ap = ap;              \
    } while (0)
    /* a scored query into the sums, in query order (the same additions as one serial loop) */
#define SCORE_ADD(qi, QS)                                                                    \
    do {                                                                                     \
        const int64_t R = (QS).R, hits = (QS).hits, first_hit = (QS).first_hit;              \
        const double ap = (QS).ap;                                                           \
        if (R <= 0) {                                                                        \
            nskip++;                                                                         \
            if (ap_at_r) ap_at_r[qi] = NAN;                                                  \
            if (r_precision) r_precision[qi] = NAN;                                          \
            if (precision_at_1) precision_at_1[qi] = NAN;                                    \
            break;                                                                           \
        }                                                                                    \
        nquery++;                                                                            \
        p1 += first_hit == 0;                                                                \
        rprec += (double)hits / (double)R;                                                   \
        map += ap / (double)R;                                                               \
        if (ap_at_r) ap_at_r[qi] = ap / (double)R;                                           \
        if (r_precision) r_precision[qi] = (double)hits / (double)R;                         \
        if (precision_at_1) precision_at_1[qi] = first_hit == 0;                             \
        for (int j = 0; j < 4; j++) rec[j] += first_hit >= 0 && first_hit < rk[j];           \
    } while (0)
#define SCORE_QUERY(qi, NB)                                                                  \
    do {                                                                                     \
        qscore qs1;                                                                          \
        SCORE_ONE(qi, NB, qs1);                                                              \
        SCORE_ADD(qi, qs1);                                                                  \
    } while (0)

    /* every sample against all the others in one call when its candidate buffers (n, cap) fit
     * ALL_BUDGET: the symmetric tiles cost half the products; otherwise blocks of queries.
     * cap = 1.25 K + 32: since knn_all re-estimates its thresholds, compactions are rare (8,100
     * at n = 100,000, K = 1,100, against 3,200 with 1.5 K + 32), and the smaller buffers leave
     * fewer fresh pages for the kernel to zero (0.7-0.9 s of system time instead of 1.2-2.4) and
     * take 210 MB less (Zen 3, 2026-12-03) */
    int64_t cap = K + K / 4 + 32;
    if (cap > ALL_BUDGET / (n * 8)) cap = ALL_BUDGET / (n * 8);
    if (n <= INT32_MAX && cap >= K + K / 4 + 32 && cap <= INT32_MAX) {
        sm_backend *be = sm_backend_default();
        int kind = metric == SM_METRIC_L2 ? SM_K_DIST_SQL2 : metric == SM_METRIC_COSINE ? SM_K_DIST_COS : SM_K_DIST_DOT;
        float *adist = NULL;   /* (n, cap) */
        int32_t *aidx = NULL;  /* (n, cap) */
        sm_ws ws = {NULL, sm_be_knn_all_ws(be, n, d, (int)K, (int)cap, kind)};
        if (sm_be_alloc(be, (size_t)(n * cap) * sizeof(float), (void **)&adist) != SM_OK ||
            sm_be_alloc(be, (size_t)(n * cap) * sizeof(int32_t), (void **)&aidx) != SM_OK ||
            (ws.bytes && sm_be_alloc(be, ws.bytes, &ws.base) != SM_OK)) {
            sm_be_free(be, adist); sm_be_free(be, aidx);
            st = sm_fail(SM_ERR_NOMEM, "retrieval metrics: out of memory for %lld x %lld candidates",
                         (long long)n, (long long)cap);
            goto done;
        }
        st = sm_be_knn_all(be, kind, emb, n, d, (int)K, (int)cap, adist, aidx, &ws);
        sm_be_free(be, ws.base);
        qscore *qs = st == SM_OK ? sm_alloc((size_t)n, sizeof(qscore)) : NULL; /* (n) */
        if (st == SM_OK && !qs) st = SM_ERR_NOMEM;
        if (st == SM_OK) {
#pragma omp parallel for schedule(static) if (n * K > PAR_WORK)
            for (int64_t i = 0; i < n; i++) SCORE_ONE(i, aidx + i * cap, qs[i]);
            for (int64_t i = 0; i < n; i++) SCORE_ADD(i, qs[i]);
        }
        sm_free(qs);
        sm_be_free(be, adist);
        sm_be_free(be, aidx);
        if (st != SM_OK) goto done;
    } else {
        int64_t B = KNN_BLOCK_ENTRIES / K;
        if (B < 1) B = 1;
        if (B > n) B = n;
        dist = sm_alloc((size_t)(B * K), sizeof(float)); /* (B, K) */
        idx = sm_alloc((size_t)(B * K), sizeof(int64_t)); /* (B, K) */
        if (!dist || !idx) { st = SM_ERR_NOMEM; goto done; }
        for (int64_t q0 = 0; q0 < n; q0 += B) {
            int64_t mq = n - q0 < B ? n - q0 : B;
            st = sm_knn_search_ex(emb, n, emb + q0 * d, mq, d, (int)K, metric, q0, dist, idx);
            if (st != SM_OK) goto done;
            for (int64_t i = 0; i < mq; i++) SCORE_QUERY(q0 + i, idx + i * K);
        }
    }
#undef SCORE_QUERY
#undef SCORE_ONE
#undef SCORE_ADD

    /* NMI of k-means clusters (on unit vectors for the cosine metric) */
    clu = sm_alloc((size_t)n, sizeof(int32_t)); /* (n) cluster ids */
    if (!clu) { st = SM_ERR_NOMEM; goto done; }
    const float *x = emb;
    if (metric == SM_METRIC_COSINE) {
        xn = sm_alloc((size_t)(n * d), sizeof(float)); /* (n, d) normalised copy */
        if (!xn) { st = SM_ERR_NOMEM; goto done; }
        sm_l2_normalize_rows(emb, n, d, xn, NULL);
        x = xn;
    }
    st = kmeans(x, n, d, nc, clu);
    if (st != SM_OK) goto done;
    double nmi = 0;
    st = nmi_dense(cls, nc, clu, nc, n, &nmi);
    if (st != SM_OK) goto done;

    double qn = nquery > 0 ? (double)nquery : 1.0;
    out->precision_at_1 = p1 / qn;
    out->r_precision = rprec / qn;
    out->map_at_r = map / qn;
    for (int j = 0; j < 4; j++) out->recall_at_k[j] = rec[j] / qn;
    out->nmi = nmi;
    out->num_queries = nquery;
    out->num_skipped = nskip;
    out->num_classes = (int)nc;
done:
    sm_free(cls);
    sm_free(cnt);
    sm_free(dist);
    sm_free(idx);
    sm_free(clu);
    sm_free(xn);
    return st;
}
