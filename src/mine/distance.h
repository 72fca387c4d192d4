/* distance.h - internal batch distances for the metric losses and miners: optional row-wise L2
 * normalisation, the (n, n) matrix of squared L2, L2, cosine or dot-product between the rows of
 * a batch, and the backward pass that maps dL/dD (n, n) back to dL/demb (n, d), normalisation
 * included.  Follows pytorch-metric-learning's LpDistance / CosineSimilarity /
 * DotProductSimilarity with normalize_embeddings. */
#ifndef SM_MINE_DISTANCE_H
#define SM_MINE_DISTANCE_H
#include "core/core.h"

typedef enum sm_dist_kind {
    SM_DIST_SQEUCLID = 0, /* |a - b|^2                                      */
    SM_DIST_EUCLID = 1,   /* |a - b|  (gradient 0 where the distance is 0)  */
    SM_DIST_COSINE = 2,   /* a.b / (|a| |b|): always normalises             */
    SM_DIST_DOT = 3       /* a.b                                            */
} sm_dist_kind;

/* 1 for similarities (cosine, dot: larger = closer), 0 for distances. */
static inline int sm_dist_inverted(sm_dist_kind k) { return k == SM_DIST_COSINE || k == SM_DIST_DOT; }

/* Parse "sqeuclidean" | "euclidean" | "cosine" | "dot" (SM_ERR_INVALID otherwise). */
sm_status sm_dist_parse(const char *name, sm_dist_kind *out);
const char *sm_dist_name(sm_dist_kind k);

/* Norms below this are treated as zero (PyTorch F.normalize eps). */
#define SM_NORM_EPS 1e-12

/* y_i = x_i / max(|x_i|, eps); x (n, d), y (n, d) (may alias x), norms (n) receives |x_i| when
 * not NULL. */
void sm_l2_normalize_rows(const float *x, int64_t n, int d, float *y, float *norms);

/* dx_i = (dy_i - y_i (y_i . dy_i)) / |x_i|  (0 for a zero row); y (n, d) the normalised rows,
 * norms (n), dy (n, d); dx (n, d) may alias dy. */
void sm_l2_normalize_backward(const float *y, const float *norms, const float *dy, int64_t n,
                              int d, float *dx);

/* D_ij = dist(x_i, x_j) for x (n, d) into D (n, n), by one sgemm (gemm) plus the norms; the
 * diagonal of L2 distances is exactly 0, and entries where |x_i|^2 + |x_j|^2 - 2 x_i.x_j
 * cancels badly (small relative to the norms) are recomputed directly. */
void sm_dist_matrix(sm_dist_kind kind, const float *x, int n, int d, float *D);

/* Workspace of one forward/backward: keeps the (normalised) rows and the matrix. */
typedef struct sm_distws {
    sm_dist_kind kind;
    int normalize;     /* 1: rows were L2-normalised before the distance */
    int n, d;
    float *y;          /* (n, d) rows used by the distance (normalised or a copy) */
    float *norms;      /* (n) |emb_i| */
    float *D;          /* (n, n) the matrix */
} sm_distws;

/* Normalise (if normalize or kind is cosine) and fill w->D.  n may be 0. */
sm_status sm_distws_forward(sm_distws *w, sm_dist_kind kind, int normalize, const float *emb,
                            int n, int d);

/* grad (n, d) = dL/demb given G = dL/dD (n, n) (G is overwritten as scratch).  The result is
 * written, not added. */
sm_status sm_distws_backward(sm_distws *w, float *G, float *grad);

void sm_distws_free(sm_distws *w);

#endif
