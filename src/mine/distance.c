/* distance.c - batch distance matrices (squared L2, L2, cosine, dot) with their backward pass
 * and the L2 row normalisation used by the metric losses (see distance.h). */
#include "mine/distance.h"
#include "backend/backend.h"
#include <math.h>
#include <string.h>

sm_status sm_dist_parse(const char *name, sm_dist_kind *out) {
    if (!strcmp(name, "sqeuclidean")) *out = SM_DIST_SQEUCLID;
    else if (!strcmp(name, "euclidean")) *out = SM_DIST_EUCLID;
    else if (!strcmp(name, "cosine")) *out = SM_DIST_COSINE;
    else if (!strcmp(name, "dot")) *out = SM_DIST_DOT;
    else return sm_fail(SM_ERR_INVALID, "distance '%s' is not sqeuclidean, euclidean, cosine or dot", name);
    return SM_OK;
}

const char *sm_dist_name(sm_dist_kind k) {
    switch (k) {
    case SM_DIST_SQEUCLID: return "sqeuclidean";
    case SM_DIST_EUCLID: return "euclidean";
    case SM_DIST_COSINE: return "cosine";
    default: return "dot";
    }
}

/* y_i = x_i / max(|x_i|, eps), norms_i = |x_i|. */
void sm_l2_normalize_rows(const float *x, int64_t n, int d, float *y, float *norms) {
    #pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * d;
        float *yi = y + i * d;
        double s = 0.0;
        for (int k = 0; k < d; k++) s += (double)xi[k] * xi[k];
        double nrm = sqrt(s);
        if (norms) norms[i] = (float)nrm;
        double inv = 1.0 / (nrm > SM_NORM_EPS ? nrm : SM_NORM_EPS);
        for (int k = 0; k < d; k++) yi[k] = (float)(xi[k] * inv);
    }
}

/* dx_i = (dy_i - y_i (y_i . dy_i)) / |x_i|; a zero row gets a zero gradient. */
void sm_l2_normalize_backward(const float *y, const float *norms, const float *dy, int64_t n,
                              int d, float *dx) {
    #pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) {
        const float *yi = y + i * d;
        const float *gi = dy + i * d;
        float *oi = dx + i * d;
        if (!(norms[i] > SM_NORM_EPS)) {
            for (int k = 0; k < d; k++) oi[k] = 0.0f;
            continue;
        }
        double dot = 0.0;
        for (int k = 0; k < d; k++) dot += (double)yi[k] * gi[k];
        double inv = 1.0 / norms[i];
        for (int k = 0; k < d; k++) oi[k] = (float)((gi[k] - yi[k] * dot) * inv);
    }
}

/* D = x x^T for dot and cosine (rows already normalised); for the L2 kinds the backend's
 * distance tile of x against itself, |x_i|^2 + |x_j|^2 - 2 <x_i, x_j> with the norms from the
 * product's diagonal, a zero diagonal, entries that cancel recomputed directly, clamped at 0
 * (NaN kept, so that non-finite embeddings reach the loss); then sqrt for L2. */
void sm_dist_matrix(sm_dist_kind kind, const float *x, int n, int d, float *D) {
    if (n <= 0) return;
    if (kind == SM_DIST_COSINE || kind == SM_DIST_DOT) {
        sm_be_dist_tile(sm_backend_default(), SM_K_DIST_DOT, 0, n, n, d, 1.0f, x, NULL, x, NULL, D, n);
        return;
    }
    float *sq = sm_alloc((size_t)n, sizeof(float)); /* (n) squared norms (written by the tile) */
    if (!sq) { /* no memory for the scratch: fall back to the direct form everywhere */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double s = 0.0;
                for (int k = 0; k < d; k++) {
                    double t = (double)x[(int64_t)i * d + k] - x[(int64_t)j * d + k];
                    s += t * t;
                }
                D[(int64_t)i * n + j] = (float)(kind == SM_DIST_EUCLID ? sqrt(s) : s);
            }
        return;
    }
    sm_be_dist_tile(sm_backend_default(), SM_K_DIST_SQL2, SM_K_DIST_SELF | SM_K_DIST_RECOMPUTE, n, n, d, 0.0f, x, sq, x, NULL, D, n);
    if (kind == SM_DIST_EUCLID)
        for (int64_t k = 0; k < (int64_t)n * n; k++) D[k] = sqrtf(D[k]);
    sm_free(sq);
}

void sm_distws_free(sm_distws *w) {
    if (!w) return;
    sm_free(w->y);
    sm_free(w->norms);
    sm_free(w->D);
    w->y = w->norms = w->D = NULL;
}

/* y = normalise(emb) (or a copy), D = dist(y). */
sm_status sm_distws_forward(sm_distws *w, sm_dist_kind kind, int normalize, const float *emb,
                            int n, int d) {
    memset(w, 0, sizeof *w);
    w->kind = kind;
    w->normalize = normalize || kind == SM_DIST_COSINE;
    w->n = n;
    w->d = d;
    w->y = sm_alloc((size_t)n * (size_t)d, sizeof(float));
    w->norms = sm_alloc((size_t)n, sizeof(float));
    w->D = sm_alloc((size_t)n * (size_t)n, sizeof(float));
    if (!w->y || !w->norms || !w->D) { sm_distws_free(w); return SM_ERR_NOMEM; }
    if (w->normalize) sm_l2_normalize_rows(emb, n, d, w->y, w->norms);
    else if (n) memcpy(w->y, emb, (size_t)n * d * sizeof(float));
    sm_dist_matrix(kind, w->y, n, d, w->D);
    return SM_OK;
}

/* S = G + G^T (after dD/dsq for L2); dot: dY = S Y; sq-L2: dY_i = 2 (rowsum(S)_i y_i - (S Y)_i);
 * then the normalisation backward. */
sm_status sm_distws_backward(sm_distws *w, float *G, float *grad) {
    const int n = w->n, d = w->d;
    if (n <= 0) return SM_OK;
    if (w->kind == SM_DIST_EUCLID) {
        /* dD/dsq = 1 / (2 D); zero where D == 0 (as torch.cdist). */
        for (int64_t k = 0; k < (int64_t)n * n; k++)
            G[k] = w->D[k] > 0.0f ? G[k] / (2.0f * w->D[k]) : 0.0f;
    }
    for (int i = 0; i < n; i++) {
        G[(int64_t)i * n + i] *= 2.0f;
        for (int j = i + 1; j < n; j++) {
            float s = G[(int64_t)i * n + j] + G[(int64_t)j * n + i];
            G[(int64_t)i * n + j] = G[(int64_t)j * n + i] = s;
        }
    }
    sm_be_gemm(sm_backend_default(), 0, 0, n, d, n, 1.0f, G, n, w->y, d, 0.0f,
                grad, d);
    if (w->kind == SM_DIST_SQEUCLID || w->kind == SM_DIST_EUCLID) {
        for (int i = 0; i < n; i++) {
            double r = 0.0;
            const float *Gi = G + (int64_t)i * n;
            for (int j = 0; j < n; j++) r += Gi[j];
            float *gi = grad + (int64_t)i * d;
            const float *yi = w->y + (int64_t)i * d;
            for (int k = 0; k < d; k++) gi[k] = 2.0f * ((float)r * yi[k] - gi[k]);
        }
    }
    if (w->normalize) sm_l2_normalize_backward(w->y, w->norms, grad, n, d, grad);
    return SM_OK;
}

void sm_embeddings_normalize(float *emb, int64_t n, int d) {
    if (emb && n > 0 && d > 0) sm_l2_normalize_rows(emb, n, d, emb, NULL);
}
