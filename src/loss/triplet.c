/* triplet.c - the "triplet" loss kind: pytorch-metric-learning's TripletMarginLoss.
 *   l(a,p,n) = [d(a,p) - d(a,n) + margin]_+   (similarity: [s(a,n) - s(a,p) + margin]_+)
 * over every valid triplet or the triplets of a miner, reduced by the mean over the non-zero
 * terms (PML AvgNonZeroReducer), the mean over all, or the sum.  Triplets are never stored:
 * each anchor's positives x negatives are visited on the fly, so memory is O(n^2) (the
 * distance matrix and its gradient) for any number of triplets. */
#include "loss/metric.h"
#include <omp.h>

enum { RED_NONZERO = 0, RED_MEAN = 1, RED_SUM = 2 };

typedef struct triplet_state {
    float margin;
    sm_dist_kind dist;
    int normalize;
    sm_triplet_miner miner;
    float mine_margin;    /* semihard / easy threshold (PML TripletMarginMiner margin) */
    int reducer;
} triplet_state;

static const char *const dist_names[] = {"sqeuclidean", "euclidean", "cosine", "dot", NULL};
static const char *const miner_names[] = {"all", "hard", "semihard", "easy", NULL};
static const char *const reducer_names[] = {"nonzero", "mean", "sum", NULL};

/* Options: margin, distance, normalize, miner, mine_margin, reducer. */
static sm_status triplet_init(sm_loss *l, const char *options) {
    static const char *const known[] = {"margin", "distance", "normalize", "miner",
                                        "mine_margin", "reducer", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    triplet_state s = {0};
    int v = 0;
    if ((st = sm_opt_float(options, "margin", 0.05f, &s.margin))) return st;
    if ((st = sm_opt_enum(options, "distance", "euclidean", dist_names, &v))) return st;
    s.dist = (sm_dist_kind)v;
    if ((st = sm_opt_bool(options, "normalize", 1, &s.normalize))) return st;
    if ((st = sm_opt_enum(options, "miner", "all", miner_names, &v))) return st;
    s.miner = (sm_triplet_miner)v;
    if ((st = sm_opt_float(options, "mine_margin", 0.2f, &s.mine_margin))) return st;
    if ((st = sm_opt_enum(options, "reducer", "nonzero", reducer_names, &s.reducer))) return st;
    triplet_state *p = sm_alloc(1, sizeof *p);
    if (!p) return SM_ERR_NOMEM;
    *p = s;
    l->state = p;
    return SM_OK;
}

static void triplet_destroy(sm_loss *l) { sm_free(l->state); l->state = NULL; }

/* Per-anchor partial results, summed serially afterwards (deterministic for any threads). */
typedef struct anchor_acc { double loss; int64_t nonzero, total; } anchor_acc;

/* Anchor a: add its triplet terms to acc and the unscaled dl/dD to row a of G (n, n). */
static void triplet_anchor(const triplet_state *s, const float *D, const int32_t *labels, int n,
                           int a, int inv, int32_t *negs, float *negd, int32_t *cnt, float *G,
                           anchor_acc *acc) {
    const float *Da = D + (int64_t)a * n;
    float *Ga = G + (int64_t)a * n;
    const float m = s->margin;
    int nn = 0;
    for (int q = 0; q < n; q++)
        if (labels[q] != labels[a]) { negs[nn] = q; negd[nn] = Da[q]; cnt[nn] = 0; nn++; }
    if (nn == 0) return;
    double loss = 0.0;
    int64_t nz = 0, tot = 0;
    for (int p = 0; p < n; p++) {
        if (p == a || labels[p] != labels[a]) continue;
        const float dp = Da[p];
        int32_t pc = 0;
        if (s->miner == SM_TRIPLETS_ALL) {
            /* v = (d_ap - d_an + m) or (s_an - s_ap + m): the hot loop, no branches on kind. */
            const float base = inv ? m - dp : dp + m, sg = inv ? 1.0f : -1.0f;
            double lp = 0.0;
            for (int k = 0; k < nn; k++) {
                float t = base + sg * negd[k];
                if (t > 0.0f) { lp += t; cnt[k]++; pc++; }
            }
            loss += lp;
            tot += nn;
        } else {
            for (int k = 0; k < nn; k++) {
                if (!sm_triplet_keep(s->miner, s->mine_margin, inv, dp, negd[k])) continue;
                tot++;
                float t = inv ? negd[k] - dp + m : dp - negd[k] + m;
                if (t > 0.0f) { loss += t; cnt[k]++; pc++; }
            }
        }
        nz += pc;
        Ga[p] += inv ? -(float)pc : (float)pc;
    }
    for (int k = 0; k < nn; k++)
        if (cnt[k]) Ga[negs[k]] += inv ? (float)cnt[k] : -(float)cnt[k];
    acc->loss = loss;
    acc->nonzero = nz;
    acc->total = tot;
}

/* L = reduce_{mined (a,p,n)} [d_ap - d_an + margin]_+ ; dL/dD_ap = +w, dL/dD_an = -w per active term. */
static sm_status triplet_compute(sm_loss *l, const float *emb, const int32_t *labels, int n,
                                 int d, float *value, float *grad) {
    const triplet_state *s = l->state;
    sm_metric_zero(value, grad, n, d);
    if (n < 3) return SM_OK;
    sm_distws w;
    sm_status st = sm_distws_forward(&w, s->dist, s->normalize, emb, n, d);
    if (st) return st;
    const int inv = sm_dist_inverted(s->dist);
    float *G = sm_calloc((size_t)n * (size_t)n, sizeof(float));       /* (n, n) dL/dD */
    anchor_acc *acc = sm_calloc((size_t)n, sizeof(anchor_acc));        /* (n) */
    int32_t *hp = sm_alloc((size_t)n, sizeof(int32_t));                /* (n) batch-hard positive */
    int32_t *hn = sm_alloc((size_t)n, sizeof(int32_t));                /* (n) batch-hard negative */
    if (!G || !acc || !hp || !hn) { st = SM_ERR_NOMEM; goto out; }
    if (s->miner == SM_TRIPLETS_HARD) {
        sm_batch_hard(w.D, labels, n, inv, hp, hn);
        for (int a = 0; a < n; a++) {
            if (hp[a] < 0) continue;
            float dp = w.D[(int64_t)a * n + hp[a]], dn = w.D[(int64_t)a * n + hn[a]];
            float t = inv ? dn - dp + s->margin : dp - dn + s->margin;
            acc[a].total = 1;
            if (t > 0.0f) {
                acc[a].loss = t;
                acc[a].nonzero = 1;
                G[(int64_t)a * n + hp[a]] += inv ? -1.0f : 1.0f;
                G[(int64_t)a * n + hn[a]] += inv ? 1.0f : -1.0f;
            }
        }
    } else {
        /* Per-thread scratch, allocated here (sm_alloc is not called from threads). */
        const int nt = (int64_t)n * n > 4096 ? omp_get_max_threads() : 1;
        int32_t *negs = sm_alloc((size_t)nt * n, sizeof(int32_t)); /* (nt, n) negatives of the anchor */
        float *negd = sm_alloc((size_t)nt * n, sizeof(float));     /* (nt, n) their distances */
        int32_t *cnt = sm_alloc((size_t)nt * n, sizeof(int32_t));  /* (nt, n) active terms per negative */
        if (!negs || !negd || !cnt) {
            sm_free(negs); sm_free(negd); sm_free(cnt);
            st = SM_ERR_NOMEM;
            goto out;
        }
        #pragma omp parallel for schedule(dynamic, 8) num_threads(nt)
        for (int a = 0; a < n; a++) {
            int64_t o = (int64_t)omp_get_thread_num() * n;
            triplet_anchor(s, w.D, labels, n, a, inv, negs + o, negd + o, cnt + o, G, &acc[a]);
        }
        sm_free(negs);
        sm_free(negd);
        sm_free(cnt);
    }
    double loss = 0.0;
    int64_t nz = 0, tot = 0;
    for (int a = 0; a < n; a++) { loss += acc[a].loss; nz += acc[a].nonzero; tot += acc[a].total; }
    double div = s->reducer == RED_NONZERO ? (double)nz : s->reducer == RED_MEAN ? (double)tot : 1.0;
    if (nz == 0 || div <= 0.0) goto out; /* no active term: zero loss and gradient */
    *value = (float)(loss / div);
    if (grad) {
        const float sc = (float)(1.0 / div);
        for (int64_t k = 0; k < (int64_t)n * n; k++) G[k] *= sc;
        st = sm_distws_backward(&w, G, grad);
    }
out:
    sm_free(G);
    sm_free(acc);
    sm_free(hp);
    sm_free(hn);
    sm_distws_free(&w);
    return st;
}

const sm_loss_kind sm_loss_triplet = {
    "triplet",
    "PML TripletMarginLoss: [d_ap - d_an + margin]_+ over all valid triplets (or a miner's), L2 distance "
    "of normalised embeddings; margin=0.05, distance=euclidean|sqeuclidean|cosine|dot, normalize=1, "
    "miner=all|hard|semihard|easy (mine_margin=0.2), reducer=nonzero|mean|sum",
    triplet_init, triplet_compute, NULL, triplet_destroy, NULL, NULL,
};
