/* test_metrics.c - retrieval metrics (P@1, R-precision, MAP@R, recall@k), NMI, ROC / AUC / EER /
 * TAR@FAR and intra/inter distances on small cases computed by hand, plus error handling. */
#include "core/core.h"
#include "simile.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Case 1, squared L2 on 1-D points (x, label):
 *   0:(0,A) 1:(1,A) 2:(1.5,B) 3:(3,A) 4:(3.2,B) 5:(10,C)    R: A 2, B 1, C 0 (query 5 skipped)
 *   q0: 1A 2B 3A 4B 5C  rel@R=[1,0]  P@1 1  RP 1/2  AP (1/1)/2 = 1/2   first hit rank 0
 *   q1: 2B 0A 3A 4B 5C  rel=[0,1]    P@1 0  RP 1/2  AP (1/2)/2 = 1/4   first hit rank 1
 *   q2: 1A 0A 3A 4B 5C  (0 and 3 tie at 2.25: lower index first)  rel=[0]  all 0, hit rank 3
 *   q3: 4B 2B 1A 0A 5C  rel=[0,0]    all 0, first hit rank 2
 *   q4: 3A 2B ...       rel=[0]      all 0, first hit rank 1
 *   over 5 queries: P@1 1/5, RP (1/2+1/2)/5 = 0.2, MAP (1/2+1/4)/5 = 0.15,
 *   recall@1 1/5, @2 3/5 (q0 q1 q4), @4 5/5, @8 5/5. */
static void test_retrieval_case1(void) {
    const float x[6] = {0.0f, 1.0f, 1.5f, 3.0f, 3.2f, 10.0f};
    const int32_t y[6] = {7, 7, 3, 7, 3, -2}; /* A = 7, B = 3, C = -2: any int32 values work */
    sm_retrieval_result r;
    CHECK_OK(sm_retrieval_metrics(x, y, 6, 1, SM_METRIC_L2, &r));
    CHECK_NEAR(r.precision_at_1, 0.2, 1e-12);
    CHECK_NEAR(r.r_precision, 0.2, 1e-12);
    CHECK_NEAR(r.map_at_r, 0.15, 1e-12);
    CHECK_NEAR(r.recall_at_k[0], 0.2, 1e-12);
    CHECK_NEAR(r.recall_at_k[1], 0.6, 1e-12);
    CHECK_NEAR(r.recall_at_k[2], 1.0, 1e-12);
    CHECK_NEAR(r.recall_at_k[3], 1.0, 1e-12);
    CHECK(r.num_queries == 5 && r.num_skipped == 1 && r.num_classes == 3);
    CHECK(r.nmi >= 0.0 && r.nmi <= 1.0);
    double ap[6], p1[6];
    CHECK_OK(sm_retrieval_metrics_per_query(x, y, 6, 1, SM_METRIC_L2, &r, ap, NULL, p1));
    CHECK(isnan(ap[5]) && isnan(p1[5]));  /* class C has one sample: skipped */
    double sum = 0;
    for (int i = 0; i < 5; i++) sum += ap[i];
    CHECK_NEAR(sum / 5, 0.15, 1e-12);
}

/* Case 2, squared L2 on 1-D points: 0:(0,A) 1:(1,A) 2:(2,B) 3:(3,A) 4:(4,A) 5:(5.5,B); R: A 3, B 1
 *   q0: 1A 2B 3A 4A 5B        rel=[1,0,1] AP (1 + 2/3)/3 = 5/9   RP 2/3  P@1 1
 *   q1: 0A 2B 3A 4A 5B (tie)  rel=[1,0,1] AP 5/9                 RP 2/3  P@1 1
 *   q2: 1A 3A 0A 4A 5B (ties) rel=[0]     0                               first hit rank 4
 *   q3: 2B 4A 1A 5B 0A        rel=[0,1,1] AP (1/2 + 2/3)/3 = 7/18 RP 2/3  P@1 0, hit rank 1
 *   q4: 3A 5B 2B 1A 0A        rel=[1,0,0] AP 1/3                 RP 1/3  P@1 1
 *   q5: 4A 3A 2B ...          rel=[0]     0                               first hit rank 2
 *   P@1 3/6, RP (7/3)/6 = 7/18, MAP (5/9+5/9+7/18+1/3)/6 = 11/36,
 *   recall@1 3/6, @2 4/6 (q0 q1 q3 q4), @4 5/6 (+q5), @8 6/6. */
static void test_retrieval_case2(void) {
    const float x[6] = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.5f};
    const int32_t y[6] = {0, 0, 1, 0, 0, 1};
    sm_retrieval_result r;
    CHECK_OK(sm_retrieval_metrics(x, y, 6, 1, SM_METRIC_L2, &r));
    CHECK_NEAR(r.precision_at_1, 0.5, 1e-12);
    CHECK_NEAR(r.r_precision, 7.0 / 18.0, 1e-12);
    CHECK_NEAR(r.map_at_r, 11.0 / 36.0, 1e-12);
    CHECK_NEAR(r.recall_at_k[0], 0.5, 1e-12);
    CHECK_NEAR(r.recall_at_k[1], 4.0 / 6.0, 1e-12);
    CHECK_NEAR(r.recall_at_k[2], 5.0 / 6.0, 1e-12);
    CHECK_NEAR(r.recall_at_k[3], 1.0, 1e-12);
    CHECK(r.num_queries == 6 && r.num_skipped == 0 && r.num_classes == 2);
    /* per query, the values worked out above */
    double ap[6], rp[6], p1[6];
    sm_retrieval_result r2;
    CHECK_OK(sm_retrieval_metrics_per_query(x, y, 6, 1, SM_METRIC_L2, &r2, ap, rp, p1));
    const double want_ap[6] = {5.0 / 9, 5.0 / 9, 0, 7.0 / 18, 1.0 / 3, 0}, want_rp[6] = {2.0 / 3, 2.0 / 3, 0, 2.0 / 3, 1.0 / 3, 0},
                 want_p1[6] = {1, 1, 0, 0, 1, 0};
    for (int i = 0; i < 6; i++) {
        CHECK_NEAR(ap[i], want_ap[i], 1e-12);
        CHECK_NEAR(rp[i], want_rp[i], 1e-12);
        CHECK_NEAR(p1[i], want_p1[i], 1e-12);
    }
    CHECK(r2.map_at_r == r.map_at_r && r2.precision_at_1 == r.precision_at_1);
    CHECK_OK(sm_retrieval_metrics_per_query(x, y, 6, 1, SM_METRIC_L2, &r2, NULL, rp, NULL)); /* buffers optional */
    CHECK_NEAR(rp[3], 2.0 / 3, 1e-12);
}

/* Well separated clusters: every metric is perfect and k-means recovers the classes (NMI 1). */
static void test_retrieval_separated(void) {
    enum { C = 5, PER = 40, D = 6 };
    float *x = malloc(sizeof(float) * C * PER * D); /* (C * PER, D) */
    int32_t y[C * PER];
    sm_rng rng;
    sm_rng_seed(&rng, 42);
    for (int i = 0; i < C * PER; i++) {
        y[i] = (i * 7) % C; /* interleaved classes */
        for (int t = 0; t < D; t++)
            x[i * D + t] = (t == y[i] ? 50.0f : 0.0f) + (t == (y[i] + 1) % D ? 20.0f : 0.0f) +
                           0.5f * sm_rng_normal(&rng);
    }
    for (int m = 0; m < 3; m++) {
        sm_retrieval_result r;
        CHECK_OK(sm_retrieval_metrics(x, y, C * PER, D, (sm_metric)m, &r));
        if (m == SM_METRIC_IP) continue; /* raw inner product favours long vectors */
        CHECK_NEAR(r.precision_at_1, 1.0, 1e-12);
        CHECK_NEAR(r.map_at_r, 1.0, 1e-12);
        CHECK_NEAR(r.r_precision, 1.0, 1e-12);
        CHECK_NEAR(r.nmi, 1.0, 1e-9);
        CHECK(r.num_queries == C * PER && r.num_classes == C);
    }
    free(x);
}

/* Threads: a set large enough for the threaded paths (the scores of the all-pairs neighbours, the
 * k-means++ potentials, the Lloyd sums split by dimension) gives the same bits on 1 and 2
 * threads, and its means are the per-query values summed in query order. */
static void test_retrieval_threads(void) {
    enum { N = 34000, D = 64, C = 200 };
    float *x = malloc(sizeof(float) * (size_t)N * D); /* (N, D) */
    int32_t *y = malloc(sizeof(int32_t) * N);          /* (N) */
    double *ap[2], *rp[2], *p1[2];
    sm_retrieval_result r[2];
    sm_rng rng;
    sm_rng_seed(&rng, 7);
    for (int i = 0; i < N; i++) {
        y[i] = (int32_t)sm_rng_below(&rng, C);
        for (int t = 0; t < D; t++) x[(size_t)i * D + t] = (t == y[i] % D ? 2.0f : 0.0f) + (t == (y[i] / D + 7) % D ? 2.0f : 0.0f) + sm_rng_normal(&rng);
    }
    for (int v = 0; v < 2; v++) {
        ap[v] = malloc(sizeof(double) * N);
        rp[v] = malloc(sizeof(double) * N);
        p1[v] = malloc(sizeof(double) * N);
#ifdef _OPENMP
        omp_set_num_threads(v + 1);
#endif
        CHECK_OK(sm_retrieval_metrics_per_query(x, y, N, D, SM_METRIC_L2, &r[v], ap[v], rp[v], p1[v]));
    }
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    CHECK(!memcmp(&r[0].precision_at_1, &r[1].precision_at_1, sizeof(double)));
    CHECK(!memcmp(&r[0].r_precision, &r[1].r_precision, sizeof(double)));
    CHECK(!memcmp(&r[0].map_at_r, &r[1].map_at_r, sizeof(double)));
    CHECK(!memcmp(r[0].recall_at_k, r[1].recall_at_k, sizeof r[0].recall_at_k));
    CHECK(!memcmp(&r[0].nmi, &r[1].nmi, sizeof(double)));
    CHECK(!memcmp(ap[0], ap[1], sizeof(double) * N) && !memcmp(rp[0], rp[1], sizeof(double) * N) &&
          !memcmp(p1[0], p1[1], sizeof(double) * N));
    double sap = 0, srp = 0, sp1 = 0;
    int64_t q = 0;
    for (int i = 0; i < N; i++)
        if (!isnan(ap[1][i])) { sap += ap[1][i]; srp += rp[1][i]; sp1 += p1[1][i]; q++; }
    CHECK(q == r[1].num_queries && q > 0);
    CHECK(sap / (double)q == r[1].map_at_r && srp / (double)q == r[1].r_precision &&
          sp1 / (double)q == r[1].precision_at_1);
    CHECK(r[1].nmi > 0.05 && r[1].nmi < 1.0 && r[1].map_at_r > 0.0 && r[1].map_at_r < 1.0);
    for (int v = 0; v < 2; v++) { free(ap[v]); free(rp[v]); free(p1[v]); }
    free(x);
    free(y);
}

static void test_retrieval_errors(void) {
    float x[4] = {0, 1, 2, NAN};
    int32_t y[4] = {0, 0, 1, 1};
    sm_retrieval_result r;
    memset(&r, 0x55, sizeof r);
    CHECK_STATUS(sm_retrieval_metrics(x, y, 4, 1, SM_METRIC_L2, &r), SM_ERR_NUMERIC);
    CHECK(r.num_queries == 0x5555555555555555LL); /* untouched */
    x[3] = 3;
    CHECK_STATUS(sm_retrieval_metrics(x, y, 1, 1, SM_METRIC_L2, &r), SM_ERR_INVALID);
    CHECK_STATUS(sm_retrieval_metrics(x, y, 4, 0, SM_METRIC_L2, &r), SM_ERR_INVALID);
    CHECK_STATUS(sm_retrieval_metrics(x, NULL, 4, 1, SM_METRIC_L2, &r), SM_ERR_INVALID);
    CHECK_STATUS(sm_retrieval_metrics(x, y, 4, 1, (sm_metric)5, &r), SM_ERR_INVALID);
    /* all lone classes: every query skipped, metrics 0 */
    int32_t u[4] = {0, 1, 2, 3};
    CHECK_OK(sm_retrieval_metrics(x, u, 4, 1, SM_METRIC_L2, &r));
    CHECK(r.num_queries == 0 && r.num_skipped == 4 && r.precision_at_1 == 0.0);
}

/* NMI: a = [0,0,1,1], b = [0,0,0,1].  Cells (0,0) 2, (1,0) 1, (1,1) 1 of N = 4; marginals
 * a (2,2), b (3,1).  MI = 1/2 ln((1/2)/(1/2*3/4)) + 1/4 ln((1/4)/(1/2*3/4)) + 1/4 ln((1/4)/(1/2*1/4))
 *    = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2 = 0.2157615543;  H(a) = ln 2 = 0.6931471806,
 * H(b) = -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.5623351446;  NMI = MI / ((H(a)+H(b))/2) = 0.3437110184. */
static void test_nmi(void) {
    const int32_t a[4] = {0, 0, 1, 1}, b[4] = {0, 0, 0, 1};
    double v = -1;
    CHECK_OK(sm_nmi(a, b, 4, &v));
    double mi = 0.5 * log(4.0 / 3.0) + 0.25 * log(2.0 / 3.0) + 0.25 * log(2.0);
    double hb = -(0.75 * log(0.75) + 0.25 * log(0.25));
    CHECK_NEAR(v, mi / ((log(2.0) + hb) / 2.0), 1e-12);
    CHECK_NEAR(v, 0.3437110184, 1e-9);
    CHECK_OK(sm_nmi(b, a, 4, &v)); /* symmetric */
    CHECK_NEAR(v, 0.3437110184, 1e-9);
    /* a relabelling of the same partition: 1; arbitrary values */
    const int32_t c[6] = {5, 5, -9, -9, 100, 100}, e[6] = {0, 0, 1, 1, 2, 2};
    CHECK_OK(sm_nmi(c, e, 6, &v));
    CHECK_NEAR(v, 1.0, 1e-12);
    /* both a single cluster: 1; one single cluster, the other not: MI = 0 -> 0 */
    const int32_t one[4] = {3, 3, 3, 3};
    CHECK_OK(sm_nmi(one, one, 4, &v));
    CHECK(v == 1.0);
    CHECK_OK(sm_nmi(one, a, 4, &v));
    CHECK(v == 0.0);
    /* independent: [0,0,1,1] vs [0,1,0,1] has MI 0 */
    const int32_t f[4] = {0, 1, 0, 1};
    CHECK_OK(sm_nmi(a, f, 4, &v));
    CHECK_NEAR(v, 0.0, 1e-12);
    CHECK_STATUS(sm_nmi(a, f, 0, &v), SM_ERR_INVALID);
    CHECK_STATUS(sm_nmi(NULL, f, 4, &v), SM_ERR_INVALID);
}

/* ROC case: scores with genuine (G) / impostor (I), 4 of each:
 *   0.9G 0.8I 0.7G 0.6G 0.5I 0.4I 0.4G 0.1I
 * points (FAR, TAR, thr): (0,0,inf) (0,.25,.9) (.25,.25,.8) (.25,.5,.7) (.25,.75,.6)
 *   (.5,.75,.5) (.75,1,.4) (1,1,.1).
 * AUC = .25*.25 + .25*.75 + .25*.875 + .25*1 = .71875 (= 11.5 of 16 pairs ordered, tie half).
 * FRR = 1-TAR: first point with FAR >= FRR is (.25, FRR .25) at .6 and the one before has
 *   FAR-FRR = -.25, so EER = .25, threshold .6.
 * TAR@FAR 0 -> .25 (thr .9), 0.1 -> .25, 0.25 -> .75 (thr .6), 0.5 -> .75 (thr .5), 1 -> 1. */
static void test_roc(void) {
    const float s[8] = {0.4f, 0.9f, 0.1f, 0.7f, 0.5f, 0.6f, 0.8f, 0.4f}; /* shuffled */
    const int8_t g[8] = {1, 1, 0, 1, 0, 1, 0, 0};
    double far[9], tar[9];
    float thr[9];
    int64_t count = 0;
    CHECK_OK(sm_roc(s, g, 8, NULL, NULL, NULL, 0, &count));
    CHECK(count == 8);
    CHECK_OK(sm_roc(s, g, 8, far, tar, thr, 9, &count));
    const double wf[8] = {0, 0, .25, .25, .25, .5, .75, 1}, wt[8] = {0, .25, .25, .5, .75, .75, 1, 1};
    const float wthr[8] = {INFINITY, .9f, .8f, .7f, .6f, .5f, .4f, .1f};
    int ok = count == 8;
    for (int i = 0; ok && i < 8; i++) ok = far[i] == wf[i] && tar[i] == wt[i] && thr[i] == wthr[i];
    CHECK(ok);
    CHECK_STATUS(sm_roc(s, g, 8, far, tar, thr, 7, &count), SM_ERR_RANGE);
    double v;
    float t;
    CHECK_OK(sm_roc_auc(s, g, 8, &v));
    CHECK_NEAR(v, 0.71875, 1e-12);
    CHECK_OK(sm_eer(s, g, 8, &v, &t));
    CHECK_NEAR(v, 0.25, 1e-12);
    CHECK(t == 0.6f);
    const double targets[5] = {0, 0.1, 0.25, 0.5, 1}, wtar[5] = {.25, .25, .75, .75, 1};
    const float wthr2[5] = {.9f, .9f, .6f, .5f, .1f};
    for (int i = 0; i < 5; i++) {
        CHECK_OK(sm_tar_at_far(s, g, 8, targets[i], &v, &t));
        CHECK_NEAR(v, wtar[i], 1e-12);
        CHECK(t == wthr2[i]);
    }
    /* EER with interpolation: G .9 .8 .3, I .6 .2.  Points (FAR, FRR): (0,1) (0,2/3) (0,1/3)
     * (.5,1/3) ...: FRR stays 1/3 while FAR goes 0 -> .5, so they cross at EER = 1/3 (thr .6). */
    const float s2[5] = {0.9f, 0.8f, 0.3f, 0.6f, 0.2f};
    const int8_t g2[5] = {1, 1, 1, 0, 0};
    CHECK_OK(sm_eer(s2, g2, 5, &v, &t));
    CHECK_NEAR(v, 1.0 / 3.0, 1e-12);
    CHECK(t == 0.6f);
    /* perfect separation: AUC 1, EER 0, TAR@FAR(0) 1 */
    const float s3[4] = {0.1f, 0.2f, 0.8f, 0.9f};
    const int8_t g3[4] = {0, 0, 1, 1};
    CHECK_OK(sm_roc_auc(s3, g3, 4, &v));
    CHECK(v == 1.0);
    CHECK_OK(sm_eer(s3, g3, 4, &v, NULL));
    CHECK_NEAR(v, 0.0, 1e-12);
    CHECK_OK(sm_tar_at_far(s3, g3, 4, 1e-4, &v, &t));
    CHECK(v == 1.0 && t == 0.8f);
    /* errors */
    const int8_t bad[4] = {0, 2, 1, 1}, allg[4] = {1, 1, 1, 1};
    CHECK_STATUS(sm_roc_auc(s3, bad, 4, &v), SM_ERR_INVALID);
    CHECK_STATUS(sm_roc_auc(s3, allg, 4, &v), SM_ERR_INVALID);
    CHECK_STATUS(sm_tar_at_far(s3, g3, 4, 1.5, &v, &t), SM_ERR_INVALID);
    CHECK_STATUS(sm_eer(s3, g3, 0, &v, &t), SM_ERR_INVALID);
    const float sn[4] = {0.1f, NAN, 0.8f, 0.9f};
    CHECK_STATUS(sm_eer(sn, g3, 4, &v, &t), SM_ERR_NUMERIC);
}

/* 1-D points 0:(0,A) 1:(1,A) 2:(3,B) 3:(7,B): intra pairs 1, 4 -> 2.5; inter pairs 3, 7, 2, 6
 * -> 4.5.  Then a random set larger than one tile against a naive double loop. */
static void test_intra_inter(void) {
    const float x[4] = {0, 1, 3, 7};
    const int32_t y[4] = {0, 0, 1, 1};
    double a = 0, b = 0;
    CHECK_OK(sm_intra_inter_distances(x, y, 4, 1, &a, &b));
    CHECK_NEAR(a, 2.5, 1e-6);
    CHECK_NEAR(b, 4.5, 1e-6);
    const int32_t same[4] = {1, 1, 1, 1};
    CHECK_OK(sm_intra_inter_distances(x, same, 4, 1, &a, &b));
    CHECK_NEAR(a, (1 + 3 + 7 + 2 + 6 + 4) / 6.0, 1e-6);
    CHECK(isnan(b));

    enum { N = 1300, D = 9 };
    float *e = malloc(sizeof(float) * N * D); /* (N, D) */
    int32_t *l = malloc(sizeof(int32_t) * N);
    sm_rng rng;
    sm_rng_seed(&rng, 9);
    for (int i = 0; i < N * D; i++) e[i] = sm_rng_normal(&rng) + 1.0f;
    for (int i = 0; i < N; i++) l[i] = (int32_t)sm_rng_below(&rng, 7);
    double si = 0, so = 0, ci = 0, co = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) {
            double s = 0;
            for (int t = 0; t < D; t++) s += ((double)e[i * D + t] - e[j * D + t]) * ((double)e[i * D + t] - e[j * D + t]);
            if (l[i] == l[j]) { si += sqrt(s); ci++; } else { so += sqrt(s); co++; }
        }
    CHECK_OK(sm_intra_inter_distances(e, l, N, D, &a, &b));
    CHECK_NEAR(a, si / ci, 1e-4 * si / ci);
    CHECK_NEAR(b, so / co, 1e-4 * so / co);
    e[5] = NAN;
    CHECK_STATUS(sm_intra_inter_distances(e, l, N, D, &a, &b), SM_ERR_NUMERIC);
    CHECK_STATUS(sm_intra_inter_distances(e, l, 1, D, &a, &b), SM_ERR_INVALID);
    free(e);
    free(l);
}

/* sm_embeddings_normalize: unit rows, the direction kept, a zero row left zero, a row shorter
 * than 1e-12 divided by 1e-12 (F.normalize). */
static void test_normalize(void) {
    float e[3 * 2] = {3, 4, 0, 0, -1e-20f, 1e-20f};
    sm_embeddings_normalize(e, 3, 2);
    CHECK_NEAR(e[0], 0.6, 1e-7);
    CHECK_NEAR(e[1], 0.8, 1e-7);
    CHECK(e[2] == 0 && e[3] == 0);
    CHECK_NEAR(e[4], -1e-8, 1e-14);
    CHECK_NEAR(e[5], 1e-8, 1e-14);
    sm_embeddings_normalize(NULL, 3, 2); /* no-op */
}

int main(void) {
    test_normalize();
    test_retrieval_case1();
    test_retrieval_case2();
    test_retrieval_separated();
    test_retrieval_errors();
    test_retrieval_threads();
    test_nmi();
    test_roc();
    test_intra_inter();
    TEST_MAIN_END();
}
