/* contrastive.c - the "contrastive" loss kind: pytorch-metric-learning's ContrastiveLoss with
 * its default AvgNonZeroReducer.  On pair distances d_ij of L2-normalised embeddings:
 *   L = sum_pos [d - m_p]_+^q / #{pos terms > 0}  +  sum_neg [m_n - d]_+^q / #{neg terms > 0}
 * with q = 1 (PML) or q = 2 (squared=1, the seed's d^2 and max(0, m - d)^2 form).  For a
 * similarity (distance=cosine|dot) the hinges flip: [m_p - s]_+ and [s - m_n]_+. */
#include "loss/metric.h"

typedef struct contrastive_state {
    float pos_margin, neg_margin;
    int squared;          /* q = 2 */
    int normalize;
    sm_dist_kind dist;
    int miner;            /* 0: all pairs, 1: pair-margin miner */
    float mine_pos, mine_neg;
} contrastive_state;

static const char *const miner_names[] = {"all", "pairmargin", NULL};
static const char *const dist_names[] = {"sqeuclidean", "euclidean", "cosine", "dot", NULL};

/* Options: pos_margin, neg_margin, squared, normalize, distance, miner, mine_pos, mine_neg. */
static sm_status contrastive_init(sm_loss *l, const char *options) {
    static const char *const known[] = {"pos_margin", "neg_margin", "squared", "normalize",
                                        "distance", "miner", "mine_pos", "mine_neg", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    contrastive_state s = {0};
    int dist = 0;
    if ((st = sm_opt_enum(options, "distance", "euclidean", dist_names, &dist))) return st;
    s.dist = (sm_dist_kind)dist;
    int inv = sm_dist_inverted(s.dist);
    if ((st = sm_opt_float(options, "pos_margin", inv ? 1.0f : 0.0f, &s.pos_margin))) return st;
    if ((st = sm_opt_float(options, "neg_margin", inv ? 0.0f : 1.0f, &s.neg_margin))) return st;
    if ((st = sm_opt_bool(options, "squared", 0, &s.squared))) return st;
    if ((st = sm_opt_bool(options, "normalize", 1, &s.normalize))) return st;
    if ((st = sm_opt_enum(options, "miner", "all", miner_names, &s.miner))) return st;
    if ((st = sm_opt_float(options, "mine_pos", inv ? 0.8f : 0.2f, &s.mine_pos))) return st;
    if ((st = sm_opt_float(options, "mine_neg", inv ? 0.2f : 0.8f, &s.mine_neg))) return st;
    contrastive_state *p = sm_alloc(1, sizeof *p);
    if (!p) return SM_ERR_NOMEM;
    *p = s;
    l->state = p;
    return SM_OK;
}

static void contrastive_destroy(sm_loss *l) { sm_free(l->state); l->state = NULL; }

/* h = [x]_+^q and dh/dx for x = d - m_p (or m_n - d, ...). */
static inline double hinge(double x, int squared, double *dh) {
    if (x <= 0.0) { *dh = 0.0; return 0.0; }
    if (squared) { *dh = 2.0 * x; return x * x; }
    *dh = 1.0;
    return x;
}

/* L = mean_nonzero pos hinges + mean_nonzero neg hinges over the selected directed pairs. */
static sm_status contrastive_compute(sm_loss *l, const float *emb, const int32_t *labels, int n,
                                     int d, float *value, float *grad) {
    const contrastive_state *s = l->state;
    sm_metric_zero(value, grad, n, d);
    if (n < 2) return SM_OK;
    sm_distws w;
    sm_status st = sm_distws_forward(&w, s->dist, s->normalize, emb, n, d);
    if (st) return st;
    uint8_t *mask = sm_alloc((size_t)n * (size_t)n, 1);            /* (n, n) selected pairs */
    float *G = sm_calloc((size_t)n * (size_t)n, sizeof(float));    /* (n, n) dL/dD */
    if (!mask || !G) { st = SM_ERR_NOMEM; goto out; }
    const int inv = sm_dist_inverted(s->dist);
    if (s->miner == 1) sm_pairs_margin(w.D, labels, n, inv, s->mine_pos, s->mine_neg, mask);
    else sm_pairs_all(labels, n, mask);
    double sum[2] = {0.0, 0.0};
    int64_t cnt[2] = {0, 0};
    for (int64_t k = 0; k < (int64_t)n * n; k++) {
        if (!mask[k]) continue;
        int neg = (mask[k] & SM_PAIR_NEG) != 0;
        double D = w.D[k], x, dh;
        if (!neg) x = inv ? s->pos_margin - D : D - s->pos_margin;
        else x = inv ? D - s->neg_margin : s->neg_margin - D;
        double h = hinge(x, s->squared, &dh);
        if (h > 0.0) {
            sum[neg] += h;
            cnt[neg]++;
            /* dx/dD: +1 for (pos, distance) and (neg, similarity), -1 otherwise. */
            G[k] = (float)(((!neg) != inv) ? dh : -dh);
        }
    }
    double L = 0.0;
    for (int t = 0; t < 2; t++) if (cnt[t]) L += sum[t] / (double)cnt[t];
    *value = (float)L;
    if (grad && (cnt[0] || cnt[1])) {
        for (int64_t k = 0; k < (int64_t)n * n; k++)
            if (G[k] != 0.0f) G[k] = (float)(G[k] / (double)cnt[(mask[k] & SM_PAIR_NEG) != 0]);
        st = sm_distws_backward(&w, G, grad);
    }
out:
    sm_free(mask);
    sm_free(G);
    sm_distws_free(&w);
    return st;
}

const sm_loss_kind sm_loss_contrastive = {
    "contrastive",
    "PML ContrastiveLoss: mean_nonzero [d_ap - pos_margin]_+^q + mean_nonzero [neg_margin - d_an]_+^q "
    "on L2 distance of normalised embeddings; pos_margin=0, neg_margin=1, squared=0 (1: q=2, the seed's "
    "d^2 and max(0,m-d)^2), normalize=1, distance=euclidean|sqeuclidean|cosine|dot, "
    "miner=all|pairmargin (mine_pos=0.2, mine_neg=0.8)",
    contrastive_init, contrastive_compute, NULL, contrastive_destroy, NULL, NULL,
};
