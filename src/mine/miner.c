/* miner.c - triplet and pair miners (internal, on a distance matrix) and the public
 * sm_mine_triplets / sm_mine_pairs / sm_distance_matrix (see miner.h and simile.h). */
#include "mine/miner.h"
#include "mine/distance.h"
#include <math.h>
#include <string.h>

/* pos[i] = argmax_{j pos} D_ij (argmin if inverted), neg[i] = argmin_{k neg} D_ik (argmax). */
void sm_batch_hard(const float *D, const int32_t *labels, int n, int inverted, int32_t *pos,
                   int32_t *neg) {
    for (int i = 0; i < n; i++) {
        const float *Di = D + (int64_t)i * n;
        int bp = -1, bn = -1;
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            if (labels[j] == labels[i]) {
                if (bp < 0 || (inverted ? Di[j] < Di[bp] : Di[j] > Di[bp])) bp = j;
            } else {
                if (bn < 0 || (inverted ? Di[j] > Di[bn] : Di[j] < Di[bn])) bn = j;
            }
        }
        if (bp < 0 || bn < 0) bp = bn = -1;
        pos[i] = bp;
        neg[i] = bn;
    }
}

/* mask_ij = POS if y_i = y_j and i != j, NEG if y_i != y_j. */
void sm_pairs_all(const int32_t *labels, int n, uint8_t *mask) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            mask[(int64_t)i * n + j] = i == j ? 0 : labels[i] == labels[j] ? SM_PAIR_POS : SM_PAIR_NEG;
}

/* Keep positives beyond pos_margin and negatives within neg_margin (in the distance's sense). */
void sm_pairs_margin(const float *D, const int32_t *labels, int n, int inverted, float pos_margin,
                     float neg_margin, uint8_t *mask) {
    sm_pairs_all(labels, n, mask);
    for (int64_t k = 0; k < (int64_t)n * n; k++) {
        float v = D[k];
        if (mask[k] == SM_PAIR_POS && !(inverted ? v < pos_margin : v > pos_margin)) mask[k] = 0;
        if (mask[k] == SM_PAIR_NEG && !(inverted ? v > neg_margin : v < neg_margin)) mask[k] = 0;
    }
}

/* MS miner: hard positives S_ij - eps < max_neg S_i., hard negatives S_ik + eps > min_pos S_i.. */
void sm_pairs_multisim(const float *S, const int32_t *labels, int n, float eps, uint8_t *mask) {
    sm_pairs_all(labels, n, mask);
    int64_t np = 0, nn = 0;
    sm_pairs_count(mask, n, &np, &nn);
    if (np == 0 || nn == 0) {
        memset(mask, 0, (size_t)n * (size_t)n);
        return;
    }
    for (int i = 0; i < n; i++) {
        const float *Si = S + (int64_t)i * n;
        uint8_t *Mi = mask + (int64_t)i * n;
        float maxneg = -INFINITY, minpos = INFINITY;
        for (int j = 0; j < n; j++) {
            if (Mi[j] == SM_PAIR_POS && Si[j] < minpos) minpos = Si[j];
            if (Mi[j] == SM_PAIR_NEG && Si[j] > maxneg) maxneg = Si[j];
        }
        for (int j = 0; j < n; j++) {
            if (Mi[j] == SM_PAIR_POS && !(Si[j] - eps < maxneg)) Mi[j] = 0;
            else if (Mi[j] == SM_PAIR_NEG && !(Si[j] + eps > minpos)) Mi[j] = 0;
        }
    }
}

void sm_pairs_count(const uint8_t *mask, int n, int64_t *npos, int64_t *nneg) {
    int64_t p = 0, q = 0;
    for (int64_t k = 0; k < (int64_t)n * n; k++) {
        p += (mask[k] & SM_PAIR_POS) != 0;
        q += (mask[k] & SM_PAIR_NEG) != 0;
    }
    *npos = p;
    *nneg = q;
}

/* ---- public entry points ----------------------------------------------------------------- */

/* Shared argument checks of the public miners. */
static sm_status mine_check(const char *fn, const float *emb, const int32_t *labels, int n, int d) {
    if (n < 0 || d < 1) return sm_fail(SM_ERR_INVALID, "%s: bad shape n=%d d=%d", fn, n, d);
    if (n > 0 && (!emb || !labels)) return sm_fail(SM_ERR_INVALID, "%s: NULL argument", fn);
    if (n > 0 && !sm_all_finite(emb, (int64_t)n * d))
        return sm_fail(SM_ERR_NUMERIC, "%s: non-finite value in the embeddings", fn);
    return SM_OK;
}

/* Triplets of the chosen miner on L2 distances of normalised rows, written while they fit. */
sm_status sm_mine_triplets(const float *emb, const int32_t *labels, int n, int d,
                           sm_triplet_miner kind, float margin, int32_t *triplets,
                           int64_t capacity, int64_t *count) {
    sm_status st = mine_check("sm_mine_triplets", emb, labels, n, d);
    if (st) return st;
    if (!count || capacity < 0 || (capacity > 0 && !triplets))
        return sm_fail(SM_ERR_INVALID, "sm_mine_triplets: NULL output or negative capacity");
    if (kind < SM_TRIPLETS_ALL || kind > SM_TRIPLETS_EASY)
        return sm_fail(SM_ERR_INVALID, "sm_mine_triplets: unknown miner kind %d", (int)kind);
    if (!sm_isfinite_f(margin)) return sm_fail(SM_ERR_INVALID, "sm_mine_triplets: margin not finite");
    *count = 0;
    if (n == 0) return SM_OK;
    sm_distws w;
    if ((st = sm_distws_forward(&w, SM_DIST_EUCLID, 1, emb, n, d))) return st;
    int64_t c = 0;
    if (kind == SM_TRIPLETS_HARD) {
        int32_t *hp = sm_alloc((size_t)n, sizeof(int32_t)), *hn = sm_alloc((size_t)n, sizeof(int32_t)); /* (n) */
        if (!hp || !hn) { sm_free(hp); sm_free(hn); sm_distws_free(&w); return SM_ERR_NOMEM; }
        sm_batch_hard(w.D, labels, n, 0, hp, hn);
        for (int a = 0; a < n; a++) {
            if (hp[a] < 0) continue;
            if (c < capacity) {
                triplets[3 * c] = a;
                triplets[3 * c + 1] = hp[a];
                triplets[3 * c + 2] = hn[a];
            }
            c++;
        }
        sm_free(hp);
        sm_free(hn);
    } else {
        for (int a = 0; a < n; a++) {
            const float *Da = w.D + (int64_t)a * n;
            for (int p = 0; p < n; p++) {
                if (p == a || labels[p] != labels[a]) continue;
                for (int q = 0; q < n; q++) {
                    if (labels[q] == labels[a] || !sm_triplet_keep(kind, margin, 0, Da[p], Da[q])) continue;
                    if (c < capacity) {
                        triplets[3 * c] = a;
                        triplets[3 * c + 1] = p;
                        triplets[3 * c + 2] = q;
                    }
                    c++;
                }
            }
        }
    }
    sm_distws_free(&w);
    *count = c;
    if (triplets && c > capacity)
        return sm_fail(SM_ERR_RANGE, "sm_mine_triplets: %lld triplets, capacity %lld", (long long)c,
                       (long long)capacity);
    return SM_OK;
}

/* Pairs of the chosen miner, written out row-major while they fit. */
sm_status sm_mine_pairs(const float *emb, const int32_t *labels, int n, int d, sm_pair_miner kind,
                        float pos_margin, float neg_margin, int32_t *pos, int64_t pos_capacity,
                        int64_t *npos, int32_t *neg, int64_t neg_capacity, int64_t *nneg) {
    sm_status st = mine_check("sm_mine_pairs", emb, labels, n, d);
    if (st) return st;
    if (!npos || !nneg || pos_capacity < 0 || neg_capacity < 0 || (pos_capacity > 0 && !pos) ||
        (neg_capacity > 0 && !neg))
        return sm_fail(SM_ERR_INVALID, "sm_mine_pairs: NULL output or negative capacity");
    if (kind < SM_PAIRS_ALL || kind > SM_PAIRS_MULTISIM)
        return sm_fail(SM_ERR_INVALID, "sm_mine_pairs: unknown miner kind %d", (int)kind);
    if (!sm_isfinite_f(pos_margin) || !sm_isfinite_f(neg_margin))
        return sm_fail(SM_ERR_INVALID, "sm_mine_pairs: margin not finite");
    *npos = *nneg = 0;
    if (n == 0) return SM_OK;
    uint8_t *mask = sm_alloc((size_t)n * (size_t)n, 1); /* (n, n) */
    if (!mask) return SM_ERR_NOMEM;
    if (kind == SM_PAIRS_ALL) {
        sm_pairs_all(labels, n, mask);
    } else {
        sm_distws w;
        sm_dist_kind dk = kind == SM_PAIRS_MARGIN ? SM_DIST_EUCLID : SM_DIST_COSINE;
        if ((st = sm_distws_forward(&w, dk, 1, emb, n, d))) { sm_free(mask); return st; }
        if (kind == SM_PAIRS_MARGIN) sm_pairs_margin(w.D, labels, n, 0, pos_margin, neg_margin, mask);
        else sm_pairs_multisim(w.D, labels, n, pos_margin, mask);
        sm_distws_free(&w);
    }
    int64_t cp = 0, cn = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            uint8_t m = mask[(int64_t)i * n + j];
            if (m & SM_PAIR_POS) {
                if (cp < pos_capacity) { pos[2 * cp] = i; pos[2 * cp + 1] = j; }
                cp++;
            }
            if (m & SM_PAIR_NEG) {
                if (cn < neg_capacity) { neg[2 * cn] = i; neg[2 * cn + 1] = j; }
                cn++;
            }
        }
    sm_free(mask);
    *npos = cp;
    *nneg = cn;
    if ((pos && cp > pos_capacity) || (neg && cn > neg_capacity))
        return sm_fail(SM_ERR_RANGE, "sm_mine_pairs: %lld positive and %lld negative pairs, capacity %lld and %lld",
                       (long long)cp, (long long)cn, (long long)pos_capacity, (long long)neg_capacity);
    return SM_OK;
}

/* D = dist(emb) by name. */
sm_status sm_distance_matrix(const float *emb, int n, int d, const char *kind, int normalize,
                             float *D) {
    if (!kind || n < 0 || d < 1 || (n > 0 && (!emb || !D)))
        return sm_fail(SM_ERR_INVALID, "sm_distance_matrix: NULL argument or bad shape");
    sm_dist_kind k;
    sm_status st = sm_dist_parse(kind, &k);
    if (st) return st;
    if (n == 0) return SM_OK;
    if (!sm_all_finite(emb, (int64_t)n * d))
        return sm_fail(SM_ERR_NUMERIC, "sm_distance_matrix: non-finite value in the embeddings");
    sm_distws w;
    if ((st = sm_distws_forward(&w, k, normalize, emb, n, d))) return st;
    memcpy(D, w.D, (size_t)n * n * sizeof(float));
    sm_distws_free(&w);
    return SM_OK;
}
