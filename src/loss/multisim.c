/* multisim.c - the "multisimilarity" loss kind: pytorch-metric-learning's MultiSimilarityLoss
 * (Wang et al. 2019) on cosine similarity S, with its MultiSimilarityMiner on by default:
 *   L = 1/n sum_i [ 1/alpha log(1 + sum_{j in P_i} exp(-alpha (S_ij - lambda)))
 *                 + 1/beta  log(1 + sum_{k in N_i} exp( beta  (S_ik - lambda))) ]
 * P_i, N_i: the (mined) positive and negative pairs of anchor i; an empty set contributes 0. */
#include "loss/metric.h"

typedef struct ms_state {
    float alpha, beta, base, epsilon;
    int miner; /* 0: ms miner, 1: none (all pairs) */
} ms_state;

static const char *const miner_names[] = {"ms", "none", NULL};

/* Options: alpha=2, beta=50, base=0.5, miner=ms|none, epsilon=0.1. */
static sm_status ms_init(sm_loss *l, const char *options) {
    static const char *const known[] = {"alpha", "beta", "base", "miner", "epsilon", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    ms_state s = {0};
    if ((st = sm_opt_float(options, "alpha", 2.0f, &s.alpha))) return st;
    if ((st = sm_opt_float(options, "beta", 50.0f, &s.beta))) return st;
    if ((st = sm_opt_float(options, "base", 0.5f, &s.base))) return st;
    if ((st = sm_opt_float(options, "epsilon", 0.1f, &s.epsilon))) return st;
    if ((st = sm_opt_enum(options, "miner", "ms", miner_names, &s.miner))) return st;
    if (!(s.alpha > 0.0f) || !(s.beta > 0.0f))
        return sm_fail(SM_ERR_INVALID, "options alpha=%g and beta=%g must be > 0", (double)s.alpha,
                       (double)s.beta);
    ms_state *p = sm_alloc(1, sizeof *p);
    if (!p) return SM_ERR_NOMEM;
    *p = s;
    l->state = p;
    return SM_OK;
}

static void ms_destroy(sm_loss *l) { sm_free(l->state); l->state = NULL; }

/* Row i's loss and dL_i/dS_i. (row terms via sm_log1p_sumexp; x, wt are (n) scratch.) */
static double ms_row(const ms_state *s, const float *Si, const uint8_t *Mi, int n, float *Gi,
                     double *x, double *wt, int32_t *idx) {
    double li = 0.0;
    for (int part = 0; part < 2; part++) {
        const uint8_t bit = part ? SM_PAIR_NEG : SM_PAIR_POS;
        const double a = part ? s->beta : -s->alpha; /* exponent scale */
        int m = 0;
        for (int j = 0; j < n; j++)
            if (Mi[j] & bit) { idx[m] = j; x[m] = a * ((double)Si[j] - s->base); m++; }
        if (m == 0) continue;
        double lse = sm_log1p_sumexp(x, m, wt);
        li += lse / fabs(a);
        /* d(lse/|a|)/dS_ij = w_j a / |a| = +-w_j */
        for (int t = 0; t < m; t++) Gi[idx[t]] += (float)(part ? wt[t] : -wt[t]);
    }
    return li;
}

/* L = mean_i (pos_i + neg_i); dL/dS_ij = -w_ij / n (positives), +w_ik / n (negatives). */
static sm_status ms_compute(sm_loss *l, const float *emb, const int32_t *labels, int n, int d,
                            float *value, float *grad) {
    const ms_state *s = l->state;
    sm_metric_zero(value, grad, n, d);
    if (n < 2) return SM_OK;
    sm_distws w;
    sm_status st = sm_distws_forward(&w, SM_DIST_COSINE, 1, emb, n, d);
    if (st) return st;
    uint8_t *mask = sm_alloc((size_t)n * (size_t)n, 1);             /* (n, n) mined pairs */
    float *G = sm_calloc((size_t)n * (size_t)n, sizeof(float));     /* (n, n) dL/dS */
    double *x = sm_alloc((size_t)n, sizeof(double));                /* (n) exponents */
    double *wt = sm_alloc((size_t)n, sizeof(double));               /* (n) softmax weights */
    int32_t *idx = sm_alloc((size_t)n, sizeof(int32_t));            /* (n) their columns */
    if (!mask || !G || !x || !wt || !idx) { st = SM_ERR_NOMEM; goto out; }
    if (s->miner == 0) sm_pairs_multisim(w.D, labels, n, s->epsilon, mask);
    else sm_pairs_all(labels, n, mask);
    int64_t np = 0, nn = 0;
    sm_pairs_count(mask, n, &np, &nn);
    /* (PML's GenericPairLoss also returns zero when every index list has at most one entry,
     * e.g. one mined positive and one mined negative pair; simile computes the loss then.) */
    if (np == 0 && nn == 0) goto out;
    double L = 0.0;
    for (int i = 0; i < n; i++)
        L += ms_row(s, w.D + (int64_t)i * n, mask + (int64_t)i * n, n, G + (int64_t)i * n, x, wt, idx);
    *value = (float)(L / n);
    if (grad) {
        const float sc = 1.0f / (float)n;
        for (int64_t k = 0; k < (int64_t)n * n; k++) G[k] *= sc;
        st = sm_distws_backward(&w, G, grad);
    }
out:
    sm_free(mask);
    sm_free(G);
    sm_free(x);
    sm_free(wt);
    sm_free(idx);
    sm_distws_free(&w);
    return st;
}

const sm_loss_kind sm_loss_multisimilarity = {
    "multisimilarity",
    "PML MultiSimilarityLoss on cosine similarity: mean_i 1/alpha log(1+sum_P exp(-alpha(S-base))) + "
    "1/beta log(1+sum_N exp(beta(S-base))); alpha=2, beta=50, base=0.5, miner=ms|none (MultiSimilarityMiner, "
    "epsilon=0.1)",
    ms_init, ms_compute, NULL, ms_destroy, NULL, NULL,
};
