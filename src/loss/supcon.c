/* supcon.c - the "supcon" loss kind: pytorch-metric-learning's SupConLoss (Khosla et al. 2020)
 * on cosine similarity S with temperature T and its AvgNonZeroReducer:
 *   l_i = -1/|P_i| sum_{p in P_i} [ S_ip / T - log sum_{k != i} exp(S_ik / T) ]
 *   L   = mean of l_i over the anchors with l_i > 0 (anchors without positives give 0).
 * A batch without any positive pair or without any negative pair gives 0. */
#include "loss/metric.h"

typedef struct supcon_state { double temperature; } supcon_state;

/* Options: temperature=0.1. */
static sm_status supcon_init(sm_loss *l, const char *options) {
    static const char *const known[] = {"temperature", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    float t = 0.0f;
    if ((st = sm_opt_float(options, "temperature", 0.1f, &t))) return st;
    if (!(t > 0.0f)) return sm_fail(SM_ERR_INVALID, "option temperature=%g must be > 0", (double)t);
    supcon_state *s = sm_alloc(1, sizeof *s);
    if (!s) return SM_ERR_NOMEM;
    s->temperature = t;
    l->state = s;
    return SM_OK;
}

static void supcon_destroy(sm_loss *l) { sm_free(l->state); l->state = NULL; }

/* l_i and dl_i/dS_i. = (softmax_ik - [k in P_i] / |P_i|) / T, written to Gi (n). */
static double supcon_row(const supcon_state *s, const float *Si, const int32_t *labels, int n,
                         int i, float *Gi) {
    const double T = s->temperature;
    int np = 0;
    double mx = -INFINITY, sp = 0.0;
    for (int k = 0; k < n; k++) {
        if (k == i) continue;
        double x = Si[k] / T;
        if (x > mx) mx = x;
        if (labels[k] == labels[i]) { np++; sp += x; }
    }
    if (np == 0) return 0.0;
    double se = 0.0;
    for (int k = 0; k < n; k++) if (k != i) se += exp(Si[k] / T - mx);
    double lse = mx + log(se);
    double li = lse - sp / np;
    if (!(li > 0.0)) return 0.0;
    for (int k = 0; k < n; k++) {
        if (k == i) continue;
        double g = exp(Si[k] / T - lse) - (labels[k] == labels[i] ? 1.0 / np : 0.0);
        Gi[k] = (float)(g / T);
    }
    return li;
}

/* L = mean_{l_i > 0} l_i;  dL/dS = G / #{l_i > 0}. */
static sm_status supcon_compute(sm_loss *l, const float *emb, const int32_t *labels, int n, int d,
                                float *value, float *grad) {
    const supcon_state *s = l->state;
    sm_metric_zero(value, grad, n, d);
    if (n < 2) return SM_OK;
    int haspos = 0, hasneg = 0;
    for (int i = 0; i < n && !(haspos && hasneg); i++)
        for (int j = i + 1; j < n; j++) {
            if (labels[i] == labels[j]) haspos = 1; else hasneg = 1;
        }
    if (!haspos || !hasneg) return SM_OK;
    sm_distws w;
    sm_status st = sm_distws_forward(&w, SM_DIST_COSINE, 1, emb, n, d);
    if (st) return st;
    float *G = sm_calloc((size_t)n * (size_t)n, sizeof(float)); /* (n, n) dL/dS */
    if (!G) { sm_distws_free(&w); return SM_ERR_NOMEM; }
    double L = 0.0;
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        double li = supcon_row(s, w.D + (int64_t)i * n, labels, n, i, G + (int64_t)i * n);
        if (li > 0.0) { L += li; cnt++; }
    }
    if (cnt > 0) {
        *value = (float)(L / cnt);
        if (grad) {
            const float sc = 1.0f / (float)cnt;
            for (int64_t k = 0; k < (int64_t)n * n; k++) G[k] *= sc;
            st = sm_distws_backward(&w, G, grad);
        }
    }
    sm_free(G);
    sm_distws_free(&w);
    return st;
}

const sm_loss_kind sm_loss_supcon = {
    "supcon",
    "PML SupConLoss on cosine similarity: mean over anchors with positives of "
    "-1/|P| sum_P log softmax_{k!=i}(S_ik/T)_p; temperature=0.1",
    supcon_init, supcon_compute, NULL, supcon_destroy, NULL, NULL,
};
