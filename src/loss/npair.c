/* npair.c - the "npair" loss kind: pytorch-metric-learning's NPairsLoss (Sohn 2016).  One
 * (anchor, positive) pair per class present at least twice in the batch: anchor = the first
 * sample of the class, positive = the second (PML's choice).  With K such pairs and
 * M_kj = f_{a_k} . f_{p_j} (rows L2-normalised by default, PML DotProductSimilarity):
 *   L = 1/K sum_k [ log sum_j exp(M_kj) - M_kk ] = 1/K sum_k log(1 + sum_{j!=k} exp(M_kj - M_kk))
 * i.e. the log(1 + sum exp(f_a.f_n - f_a.f_p)) with the other classes' positives as the
 * negatives.  normalize=0 gives the raw dot product of the original paper. */
#include "loss/metric.h"

typedef struct npair_state { int normalize; } npair_state;

/* Options: normalize=1. */
static sm_status npair_init(sm_loss *l, const char *options) {
    static const char *const known[] = {"normalize", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    npair_state *s = sm_alloc(1, sizeof *s);
    if (!s) return SM_ERR_NOMEM;
    l->state = s;
    return sm_opt_bool(options, "normalize", 1, &s->normalize);
}

static void npair_destroy(sm_loss *l) { sm_free(l->state); l->state = NULL; }

/* Pairs: for each label in ascending order with >= 2 samples, (first, second) index.  Returns K. */
static int npair_pairs(const int32_t *labels, int n, int32_t *A, int32_t *P) {
    int K = 0;
    /* Visit samples in label order without sorting: repeatedly take the smallest unseen label. */
    int64_t prev = -1;
    for (;;) {
        int64_t lab = INT64_MAX;
        for (int i = 0; i < n; i++) if (labels[i] > prev && labels[i] < lab) lab = labels[i];
        if (lab == INT64_MAX) break;
        int a = -1, p = -1;
        for (int i = 0; i < n && p < 0; i++)
            if (labels[i] == lab) { if (a < 0) a = i; else p = i; }
        if (p >= 0) { A[K] = a; P[K] = p; K++; }
        prev = lab;
    }
    return K;
}

/* L = mean_k CE(M_k., k);  dM = (softmax(M) - I) / K;  dA_k = sum_j dM_kj P_j, dP_j = sum_k dM_kj A_k. */
static sm_status npair_compute(sm_loss *l, const float *emb, const int32_t *labels, int n, int d,
                               float *value, float *grad) {
    const npair_state *s = l->state;
    sm_metric_zero(value, grad, n, d);
    if (n < 2) return SM_OK;
    int32_t *A = sm_alloc((size_t)n, sizeof(int32_t)), *P = sm_alloc((size_t)n, sizeof(int32_t)); /* (n) */
    float *y = sm_alloc((size_t)n * d, sizeof(float));     /* (n, d) rows used (normalised) */
    float *nrm = sm_alloc((size_t)n, sizeof(float));       /* (n) */
    float *dy = sm_calloc((size_t)n * d, sizeof(float));   /* (n, d) dL/dy */
    double *M = NULL;
    sm_status st = SM_OK;
    if (!A || !P || !y || !nrm || !dy) { st = SM_ERR_NOMEM; goto out; }
    int K = npair_pairs(labels, n, A, P);
    if (K < 2) goto out; /* one pair: a softmax over one logit, loss 0 */
    M = sm_alloc((size_t)K * K, sizeof(double));          /* (K, K) similarities, then dL/dM */
    if (!M) { st = SM_ERR_NOMEM; goto out; }
    if (s->normalize) sm_l2_normalize_rows(emb, n, d, y, nrm);
    else memcpy(y, emb, (size_t)n * d * sizeof(float));
    for (int k = 0; k < K; k++)
        for (int j = 0; j < K; j++) {
            const float *a = y + (int64_t)A[k] * d, *p = y + (int64_t)P[j] * d;
            double t = 0.0;
            for (int c = 0; c < d; c++) t += (double)a[c] * p[c];
            M[(int64_t)k * K + j] = t;
        }
    double L = 0.0;
    for (int k = 0; k < K; k++) {
        double *Mk = M + (int64_t)k * K, mx = Mk[0];
        for (int j = 1; j < K; j++) if (Mk[j] > mx) mx = Mk[j];
        double se = 0.0;
        for (int j = 0; j < K; j++) se += exp(Mk[j] - mx);
        double lse = mx + log(se);
        L += lse - Mk[k];
        for (int j = 0; j < K; j++) Mk[j] = (exp(Mk[j] - lse) - (j == k)) / K;
    }
    *value = (float)(L / K);
    if (!grad) goto out;
    for (int k = 0; k < K; k++)
        for (int j = 0; j < K; j++) {
            double g = M[(int64_t)k * K + j];
            float *da = dy + (int64_t)A[k] * d, *dp = dy + (int64_t)P[j] * d;
            const float *a = y + (int64_t)A[k] * d, *p = y + (int64_t)P[j] * d;
            for (int c = 0; c < d; c++) { da[c] += (float)(g * p[c]); dp[c] += (float)(g * a[c]); }
        }
    if (s->normalize) sm_l2_normalize_backward(y, nrm, dy, n, d, grad);
    else memcpy(grad, dy, (size_t)n * d * sizeof(float));
out:
    sm_free(A); sm_free(P); sm_free(y); sm_free(nrm); sm_free(dy); sm_free(M);
    return st;
}

const sm_loss_kind sm_loss_npair = {
    "npair",
    "PML NPairsLoss: one (anchor, positive) pair per class (first two samples), mean CE of the "
    "similarity matrix M_kj = f_a_k . f_p_j against the diagonal = mean log(1+sum_j exp(M_kj - M_kk)); "
    "normalize=1 (0: raw dot product)",
    npair_init, npair_compute, NULL, npair_destroy, NULL, NULL,
};
