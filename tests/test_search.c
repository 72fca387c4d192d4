/* test_search.c - sm_knn_search against a naive double-precision loop on random data for every
 * metric and every code path (top-1, heap, whole-row selection, plain loops for tiny inputs,
 * tiled sgemm, per-thread query blocks, sampled-threshold selection on long rows, a few queries
 * in one fused pass with the database checked through its scores, top-1 against a small
 * database in transposed tiles), plus k > n, exclude_self, ties, n = 0 and invalid / non-finite
 * input. */
#include "core/core.h"
#include "gallery/search.h"
#include "simile.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref { double key; int64_t id; } ref;

static int ref_cmp(const void *pa, const void *pb) {
    const ref *a = pa, *b = pb;
    if (a->key < b->key) return -1;
    if (a->key > b->key) return 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

/* Key (smaller is better) of query a against database row b, in double. */
static double naive_key(const float *a, const float *b, int d, sm_metric m) {
    double dot = 0, na = 0, nb = 0, l2 = 0;
    for (int t = 0; t < d; t++) {
        dot += (double)a[t] * b[t];
        na += (double)a[t] * a[t];
        nb += (double)b[t] * b[t];
        l2 += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    }
    if (m == SM_METRIC_L2) return l2;
    if (m == SM_METRIC_IP) return -dot;
    return (na > 0 && nb > 0) ? -dot / sqrt(na * nb) : 0.0;
}

static void fill_random(float *x, int64_t count, uint64_t seed) {
    sm_rng r;
    sm_rng_seed(&r, seed);
    for (int64_t i = 0; i < count; i++) x[i] = sm_rng_normal(&r);
}

/* Compare sm_knn_search with the naive search; returns the number of mismatching queries. */
static int compare_naive(const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                         sm_metric m, int exclude_self) {
    float *dist = malloc(sizeof(float) * (size_t)(nq * k));   /* (nq, k) */
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(nq * k)); /* (nq, k) */
    ref *all = malloc(sizeof(ref) * (size_t)(n > 0 ? n : 1));  /* (n) */
    double *keyof = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    int bad = 0;
    sm_status st = sm_knn_search(db, n, q, nq, d, k, m, exclude_self, dist, idx);
    CHECK_OK(st);
    if (st != SM_OK) { bad = (int)nq; goto done; }
    for (int64_t i = 0; i < nq && bad < 5; i++) {
        int64_t cnt = 0;
        for (int64_t j = 0; j < n; j++) {
            keyof[j] = naive_key(q + i * d, db + j * d, d, m);
            if (exclude_self && j == i) continue;
            all[cnt].key = keyof[j];
            all[cnt].id = j;
            cnt++;
        }
        qsort(all, (size_t)cnt, sizeof(ref), ref_cmp);
        int ok = 1;
        for (int r = 0; r < k; r++) {
            float dv = dist[i * k + r];
            int64_t iv = idx[i * k + r];
            if (r >= cnt) {
                float want = m == SM_METRIC_L2 ? INFINITY : -INFINITY;
                if (iv != -1 || dv != want) ok = 0;
                continue;
            }
            double want = m == SM_METRIC_L2 ? all[r].key : -all[r].key;
            double tol = 1e-4 * (1.0 + fabs(want)) * (m == SM_METRIC_L2 ? 10 : 1);
            if (!(fabs(dv - want) <= tol)) ok = 0;
            if (iv < 0 || iv >= n || (exclude_self && iv == i)) { ok = 0; continue; }
            /* same index, or a near tie: the returned item's exact key equals the r-th key */
            if (iv != all[r].id && !(fabs(keyof[iv] - all[r].key) <= tol)) ok = 0;
            for (int s = 0; s < r; s++)
                if (idx[i * k + s] == iv) ok = 0; /* no duplicates */
            if (r > 0) { /* sorted best first */
                float prev = dist[i * k + r - 1];
                if (m == SM_METRIC_L2 ? dv < prev : dv > prev) ok = 0;
            }
        }
        if (!ok) {
            bad++;
            fprintf(stderr, "mismatch: n=%lld nq=%lld d=%d k=%d metric=%d self=%d query %lld\n",
                    (long long)n, (long long)nq, d, k, (int)m, exclude_self, (long long)i);
        }
    }
done:
    free(dist);
    free(idx);
    free(all);
    free(keyof);
    return bad;
}

static void test_random_all_paths(void) {
    const int sizes[][3] = {{5, 3, 2},       /* tiny: plain loops          */
                            {300, 40, 17},   /* sgemm, one database tile   */
                            {2500, 64, 24}}; /* sgemm, several db tiles    */
    const int ks[] = {1, 2, 10, 257, 300, 400, 3000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s][0], nq = sizes[s][1];
        int d = sizes[s][2];
        float *db = malloc(sizeof(float) * (size_t)(n * d)); /* (n, d) */
        fill_random(db, n * d, 11 + s);
        /* queries: the first nq database rows (for exclude_self), perturbed copies otherwise */
        for (int m = 0; m < 3; m++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                int k = ks[ki];
                if (k > n + 600) continue;
                CHECK(compare_naive(db, n, db, nq, d, k, (sm_metric)m, 0) == 0);
                CHECK(compare_naive(db, n, db, nq, d, k, (sm_metric)m, 1) == 0);
            }
        free(db);
    }
    /* independent queries */
    int64_t n = 1200, nq = 70;
    int d = 33;
    float *db = malloc(sizeof(float) * (size_t)(n * d)), *q = malloc(sizeof(float) * (size_t)(nq * d));
    fill_random(db, n * d, 5);
    fill_random(q, nq * d, 6);
    for (int m = 0; m < 3; m++) {
        CHECK(compare_naive(db, n, q, nq, d, 1, (sm_metric)m, 0) == 0);
        CHECK(compare_naive(db, n, q, nq, d, 10, (sm_metric)m, 0) == 0);
        CHECK(compare_naive(db, n, q, nq, d, 500, (sm_metric)m, 0) == 0);
    }
    free(db);
    free(q);
}

/* Exclude self: with q == db and k = n, query i never returns i and the last slot is empty. */
static void test_exclude_self(void) {
    int64_t n = 50;
    int d = 4, k = 50;
    float db[50 * 4];
    float dist[50 * 50];
    int64_t idx[50 * 50];
    fill_random(db, n * d, 3);
    for (int m = 0; m < 3; m++) {
        CHECK_OK(sm_knn_search(db, n, db, n, d, k, (sm_metric)m, 1, dist, idx));
        int ok = 1;
        for (int64_t i = 0; i < n; i++) {
            for (int r = 0; r < k - 1; r++)
                if (idx[i * k + r] == i || idx[i * k + r] < 0) ok = 0;
            if (idx[i * k + k - 1] != -1) ok = 0;
            if (dist[i * k + k - 1] != (m == SM_METRIC_L2 ? INFINITY : -INFINITY)) ok = 0;
        }
        CHECK(ok);
        /* without exclusion, L2 / cosine find the query itself first */
        CHECK_OK(sm_knn_search(db, n, db, n, d, 1, (sm_metric)m, 0, dist, idx));
        if (m != SM_METRIC_IP) {
            int self_first = 1;
            for (int64_t i = 0; i < n; i++) self_first &= idx[i] == i;
            CHECK(self_first);
        }
    }
}

/* Identical database rows: every path must list them by increasing index. */
static void test_ties(void) {
    int64_t n = 700;
    int d = 8;
    float *db = malloc(sizeof(float) * (size_t)(n * d));
    float q[8];
    for (int64_t i = 0; i < n * d; i++) db[i] = (float)(i % d) * 0.25f;
    for (int t = 0; t < d; t++) q[t] = 1.0f + t;
    const int ks[] = {1, 5, 256, 300, 700};
    float *dist = malloc(sizeof(float) * 700);
    int64_t *idx = malloc(sizeof(int64_t) * 700);
    for (int m = 0; m < 3; m++)
        for (size_t ki = 0; ki < 5; ki++) {
            int k = ks[ki];
            CHECK_OK(sm_knn_search(db, n, q, 1, d, k, (sm_metric)m, 0, dist, idx));
            int ok = 1;
            for (int r = 0; r < k; r++) ok &= idx[r] == r && dist[r] == dist[0];
            CHECK_MSG(ok, "metric %d k %d", m, k);
        }
    /* exclude_self with ties: query 0 gets 1, 2, ... */
    CHECK_OK(sm_knn_search(db, n, db, 2, d, 3, SM_METRIC_L2, 1, dist, idx));
    CHECK(idx[0] == 1 && idx[1] == 2 && idx[2] == 3);
    CHECK(idx[3] == 0 && idx[4] == 2 && idx[5] == 3);
    CHECK(dist[0] == 0.0f); /* clamped at 0, never negative */
    free(db);
    free(dist);
    free(idx);
}

/* A hand case: 1-D points, all metrics. */
static void test_hand(void) {
    const float db[4] = {0.0f, 3.0f, -1.0f, 10.0f}; /* (4, 1) */
    const float q[1] = {2.0f};
    float dist[5];
    int64_t idx[5];
    /* L2: (2-3)^2 = 1 (#1), (2-0)^2 = 4 (#0), 9 (#2), 64 (#3), then empty */
    CHECK_OK(sm_knn_search(db, 4, q, 1, 1, 5, SM_METRIC_L2, 0, dist, idx));
    CHECK(idx[0] == 1 && idx[1] == 0 && idx[2] == 2 && idx[3] == 3 && idx[4] == -1);
    CHECK(dist[0] == 1.0f && dist[1] == 4.0f && dist[2] == 9.0f && dist[3] == 64.0f);
    CHECK(isinf(dist[4]) && dist[4] > 0);
    /* IP: 20 (#3), 6 (#1), 0 (#0), -2 (#2) */
    CHECK_OK(sm_knn_search(db, 4, q, 1, 1, 5, SM_METRIC_IP, 0, dist, idx));
    CHECK(idx[0] == 3 && idx[1] == 1 && idx[2] == 0 && idx[3] == 2 && idx[4] == -1);
    CHECK(dist[0] == 20.0f && dist[3] == -2.0f && isinf(dist[4]) && dist[4] < 0);
    /* cosine: 1 (#1), 1 (#3), 0 (#0, zero vector), -1 (#2) */
    CHECK_OK(sm_knn_search(db, 4, q, 1, 1, 4, SM_METRIC_COSINE, 0, dist, idx));
    CHECK(idx[0] == 1 && idx[1] == 3 && idx[2] == 0 && idx[3] == 2);
    CHECK_NEAR(dist[0], 1.0, 1e-6);
    CHECK_NEAR(dist[2], 0.0, 1e-6);
    CHECK_NEAR(dist[3], -1.0, 1e-6);
}

static void test_errors(void) {
    float db[6] = {1, 2, 3, 4, 5, 6};
    float q[2] = {1, 2};
    float dist[3] = {7, 7, 7};
    int64_t idx[3] = {7, 7, 7};
    CHECK_STATUS(sm_knn_search(db, 3, q, 1, 2, 0, SM_METRIC_L2, 0, dist, idx), SM_ERR_INVALID);
    CHECK_STATUS(sm_knn_search(db, 3, q, 1, 0, 1, SM_METRIC_L2, 0, dist, idx), SM_ERR_INVALID);
    CHECK_STATUS(sm_knn_search(db, -1, q, 1, 2, 1, SM_METRIC_L2, 0, dist, idx), SM_ERR_INVALID);
    CHECK_STATUS(sm_knn_search(db, 3, q, 1, 2, 1, (sm_metric)9, 0, dist, idx), SM_ERR_INVALID);
    CHECK_STATUS(sm_knn_search(NULL, 3, q, 1, 2, 1, SM_METRIC_L2, 0, dist, idx), SM_ERR_INVALID);
    CHECK_STATUS(sm_knn_search(db, 3, q, 1, 2, 1, SM_METRIC_L2, 0, NULL, idx), SM_ERR_INVALID);
    db[3] = NAN;
    CHECK_STATUS(sm_knn_search(db, 3, q, 1, 2, 1, SM_METRIC_L2, 0, dist, idx), SM_ERR_NUMERIC);
    db[3] = 4;
    q[1] = NAN;
    CHECK_STATUS(sm_knn_search(db, 3, q, 1, 2, 3, SM_METRIC_IP, 0, dist, idx), SM_ERR_NUMERIC);
    q[1] = INFINITY;
    CHECK_STATUS(sm_knn_search(db, 3, q, 1, 2, 3, SM_METRIC_COSINE, 0, dist, idx), SM_ERR_NUMERIC);
    CHECK(dist[0] == 7 && idx[0] == 7); /* untouched on failure */
    CHECK(strlen(sm_errmsg()) > 0);
    q[1] = 2;
    /* empty database: every slot unfilled; nq = 0: nothing to do */
    CHECK_OK(sm_knn_search(NULL, 0, q, 1, 2, 3, SM_METRIC_L2, 0, dist, idx));
    CHECK(idx[0] == -1 && idx[2] == -1 && isinf(dist[1]));
    CHECK_OK(sm_knn_search(db, 3, NULL, 0, 2, 3, SM_METRIC_L2, 0, NULL, NULL));
}

/* Long rows (n >= 16384): the sampled-threshold selection (large k), the SIMD heap / top-1 scans
 * and the single-query path (sgemv, database checked through the scores). */
static void test_long_rows(void) {
    int64_t n = 20000;
    int d = 8;
    float *db = malloc(sizeof(float) * (size_t)(n * d)); /* (n, d) */
    float *q = malloc(sizeof(float) * 3 * (size_t)d);    /* (3, d) */
    fill_random(db, n * d, 21);
    fill_random(q, 3 * d, 22);
    const int ks[] = {1, 10, 300, 1000, 2400};
    for (int m = 0; m < 3; m++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            CHECK_MSG(compare_naive(db, n, db, 5, d, ks[ki], (sm_metric)m, 1) == 0, "self m %d k %d", m, ks[ki]);
            CHECK_MSG(compare_naive(db, n, q, 1, d, ks[ki], (sm_metric)m, 0) == 0, "one m %d k %d", m, ks[ki]);
            CHECK_MSG(compare_naive(db, n, q, 3, d, ks[ki], (sm_metric)m, 0) == 0, "three m %d k %d", m, ks[ki]);
        }
    /* many queries (per-thread query blocks): 1100 database rows as queries */
    {
        int64_t nb = 1500, nqb = 1100;
        int db_d = 16;
        float *b = malloc(sizeof(float) * (size_t)(nb * db_d)); /* (nb, db_d) */
        fill_random(b, nb * db_d, 24);
        for (int m = 0; m < 3; m++)
            for (int k = 1; k <= 10; k += 9)
                for (int ex = 0; ex < 2; ex++)
                    CHECK_MSG(compare_naive(b, nb, b, nqb, db_d, k, (sm_metric)m, ex) == 0, "blocks m %d k %d", m, k);
        free(b);
    }
    /* identical rows: ties by index on every path */
    for (int64_t i = 0; i < n * d; i++) db[i] = (float)(i % d) * 0.25f;
    float *dist = malloc(sizeof(float) * 2 * 2400);      /* (2, k) */
    int64_t *idx = malloc(sizeof(int64_t) * 2 * 2400);  /* (2, k) */
    for (int m = 0; m < 3; m++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            int k = ks[ki], ok = 1;
            CHECK_OK(sm_knn_search(db, n, q, 1, d, k, (sm_metric)m, 0, dist, idx));
            for (int r = 0; r < k; r++) ok &= idx[r] == r;
            CHECK_MSG(ok, "ties metric %d k %d", m, k);
            CHECK_OK(sm_knn_search(db, n, db, 2, d, k, (sm_metric)m, 1, dist, idx));
            for (int r = 0; r < k; r++) ok &= idx[r] == r + 1 && idx[k + r] == (r == 0 ? 0 : r + 1);
            CHECK_MSG(ok, "ties self metric %d k %d", m, k);
        }
    /* a non-finite database row is caught on the single-query path; outputs stay untouched */
    fill_random(db, n * d, 23);
    const float bad[2] = {NAN, INFINITY};
    for (int b = 0; b < 2; b++)
        for (int m = 0; m < 3; m++)
            for (int k = 1; k <= 10; k += 9) {
                db[12345 * d + 3] = bad[b];
                dist[0] = 7;
                idx[0] = 7;
                CHECK_STATUS(sm_knn_search(db, n, q, 1, d, k, (sm_metric)m, 0, dist, idx), SM_ERR_NUMERIC);
                CHECK(dist[0] == 7 && idx[0] == 7);
                db[12345 * d + 3] = 0.5f;
            }
    /* finite data whose scores overflow is not an error */
    for (int t = 0; t < d; t++) db[77 * d + t] = 3e38f;
    float big[8];
    for (int t = 0; t < d; t++) big[t] = 3e38f;
    for (int m = 0; m < 3; m++) CHECK_OK(sm_knn_search(db, n, big, 1, d, 10, (sm_metric)m, 0, dist, idx));
    free(db);
    free(q);
    free(dist);
    free(idx);
}

/* Top-1 against a small database (knn_cpu.c's PATH_SMALL_DB: transposed tiles, k-means'
 * assignments) gives the bits of the generic tiles: all queries in one call against the same
 * queries 50 at a time (too few for that path, too many for the few-queries pass), every metric, with and without self exclusion;
 * and the naive check.  The database is the first n queries, so that self exclusion bites. */
static void test_small_db(void) {
    const int64_t ns[] = {30, 100, 256}, nq = 1500, chunk = 50;
    const int d = 64;
    float *q = malloc(sizeof(float) * (size_t)(nq * d)); /* (nq, d) */
    float *d1 = malloc(sizeof(float) * (size_t)nq), *d2 = malloc(sizeof(float) * (size_t)nq);
    int64_t *i1 = malloc(sizeof(int64_t) * (size_t)nq), *i2 = malloc(sizeof(int64_t) * (size_t)nq);
    fill_random(q, nq * d, 21);
    for (int t = 0; t < d; t++) q[40 * d + t] = q[3 * d + t]; /* an exact tie: rows 3 and 40 */
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++)
        for (int m = 0; m < 3; m++)
            for (int self = 0; self < 2; self++) {
                const int64_t n = ns[s];
                CHECK_OK(sm_knn_search_ex(q, n, q, nq, d, 1, (sm_metric)m, self ? 0 : -1, d1, i1));
                for (int64_t c0 = 0; c0 < nq; c0 += chunk) {
                    const int64_t mc = nq - c0 < chunk ? nq - c0 : chunk;
                    CHECK_OK(sm_knn_search_ex(q, n, q + c0 * d, mc, d, 1, (sm_metric)m, self ? c0 : -1, d2 + c0,
                                              i2 + c0));
                }
                CHECK_MSG(!memcmp(d1, d2, sizeof(float) * (size_t)nq) && !memcmp(i1, i2, sizeof(int64_t) * (size_t)nq),
                          "small database n=%lld metric %d self %d: one call differs from calls of %lld queries",
                          (long long)n, m, self, (long long)chunk);
                CHECK(compare_naive(q, n, q, nq, d, 1, (sm_metric)m, self) == 0);
            }
    free(q);
    free(d1);
    free(d2);
    free(i1);
    free(i2);
}

/* Many queries (knn_cpu.c's PATH_BLOCKS, fused panels on AVX2) give the bits of the generic
 * tiles: 1,100 queries in one call against the same queries 50 at a time, k = 1 and 10, every
 * metric, with and without self exclusion, with duplicate database rows (ties by index). */
static void test_blocks_bits(void) {
    const int64_t n = 1500, nq = 1100, chunk = 50;
    const int d = 64, ks[] = {1, 10};
    float *x = malloc(sizeof(float) * (size_t)(n * d)); /* (n, d); the queries are its first nq rows */
    fill_random(x, n * d, 31);
    for (int64_t i = 0; i < 40; i++) memcpy(x + (700 + i) * d, x + (100 + i) * d, sizeof(float) * (size_t)d);
    float *d1 = malloc(sizeof(float) * (size_t)(nq * 10)), *d2 = malloc(sizeof(float) * (size_t)(nq * 10));
    int64_t *i1 = malloc(sizeof(int64_t) * (size_t)(nq * 10)), *i2 = malloc(sizeof(int64_t) * (size_t)(nq * 10));
    for (int m = 0; m < 3; m++)
        for (size_t ki = 0; ki < 2; ki++)
            for (int self = 0; self < 2; self++) {
                const int k = ks[ki];
                CHECK_OK(sm_knn_search_ex(x, n, x, nq, d, k, (sm_metric)m, self ? 0 : -1, d1, i1));
                for (int64_t c0 = 0; c0 < nq; c0 += chunk) {
                    const int64_t mc = nq - c0 < chunk ? nq - c0 : chunk;
                    CHECK_OK(sm_knn_search_ex(x, n, x + c0 * d, mc, d, k, (sm_metric)m, self ? c0 : -1, d2 + c0 * k,
                                              i2 + c0 * k));
                }
                CHECK_MSG(!memcmp(d1, d2, sizeof(float) * (size_t)(nq * k)) &&
                              !memcmp(i1, i2, sizeof(int64_t) * (size_t)(nq * k)),
                          "blocks k=%d metric %d self %d: one call differs from calls of %lld queries", k, m, self,
                          (long long)chunk);
            }
    free(x);
    free(d1);
    free(d2);
    free(i1);
    free(i2);
}

int main(void) {
    test_hand();
    test_long_rows();
    test_errors();
    test_exclude_self();
    test_ties();
    test_random_all_paths();
    test_small_db();
    test_blocks_bits();
    TEST_MAIN_END();
}
