/* verify.c - verification metrics from pair scores (higher = more similar, accepted when
 * score >= threshold): the ROC curve (scikit-learn's roc_curve with drop_intermediate=False),
 * its AUC, the equal error rate and TAR at a FAR target; and the exact mean intra-class and
 * inter-class Euclidean distances of a set of embeddings via blocked distance tiles. */
#include "core/core.h"

#include "backend/backend.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct scored { float s; int8_t g; } scored;

static int cmp_desc(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    return (a->s < b->s) - (a->s > b->s);
}

/* The ROC points of (scores, genuine), allocated: far, tar (count) and thr (count). */
typedef struct roc { double *far, *tar; float *thr; int64_t count; } roc;

static void roc_free(roc *r) {
    sm_free(r->far);
    sm_free(r->tar);
    sm_free(r->thr);
}

static sm_status roc_build(const char *who, const float *scores, const int8_t *genuine, int64_t n,
                           roc *r) {
    memset(r, 0, sizeof *r);
    if (!scores || !genuine) return sm_fail(SM_ERR_INVALID, "%s: NULL argument", who);
    if (n <= 0) return sm_fail(SM_ERR_INVALID, "%s: n = %lld must be positive", who, (long long)n);
    int64_t pos = 0, neg = 0;
    for (int64_t i = 0; i < n; i++) {
        if (genuine[i] != 0 && genuine[i] != 1)
            return sm_fail(SM_ERR_INVALID, "%s: genuine[%lld] = %d is not 0 or 1", who,
                           (long long)i, genuine[i]);
        if (!sm_isfinite_f(scores[i]))
            return sm_fail(SM_ERR_NUMERIC, "%s: score %lld is not finite", who, (long long)i);
        if (genuine[i]) pos++; else neg++;
    }
    if (pos == 0 || neg == 0)
        return sm_fail(SM_ERR_INVALID, "%s: need genuine and impostor pairs (%lld genuine, "
                       "%lld impostor)", who, (long long)pos, (long long)neg);
    scored *v = sm_alloc((size_t)n, sizeof(scored)); /* (n) sorted by decreasing score */
    r->far = sm_alloc((size_t)n + 1, sizeof(double));
    r->tar = sm_alloc((size_t)n + 1, sizeof(double));
    r->thr = sm_alloc((size_t)n + 1, sizeof(float));
    if (!v || !r->far || !r->tar || !r->thr) { sm_free(v); roc_free(r); return SM_ERR_NOMEM; }
    for (int64_t i = 0; i < n; i++) { v[i].s = scores[i]; v[i].g = genuine[i]; }
    qsort(v, (size_t)n, sizeof(scored), cmp_desc);
    int64_t m = 0, tp = 0, fp = 0;
    r->far[0] = 0;
    r->tar[0] = 0;
    r->thr[0] = INFINITY;
    m = 1;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        for (; j < n && v[j].s == v[i].s; j++) {
            if (v[j].g) tp++; else fp++;
        }
        r->far[m] = (double)fp / (double)neg;
        r->tar[m] = (double)tp / (double)pos;
        r->thr[m] = v[i].s;
        m++;
        i = j;
    }
    r->count = m;
    sm_free(v);
    return SM_OK;
}

sm_status sm_roc(const float *scores, const int8_t *genuine, int64_t n, double *far, double *tar,
                 float *thresholds, int64_t cap, int64_t *count) {
    if (!count) return sm_fail(SM_ERR_INVALID, "roc: count is NULL");
    int query = !far && !tar && !thresholds;
    if (!query && (!far || !tar || !thresholds))
        return sm_fail(SM_ERR_INVALID, "roc: give all of far, tar, thresholds or none");
    roc r;
    sm_status st = roc_build("roc", scores, genuine, n, &r);
    if (st != SM_OK) return st;
    if (!query) {
        if (cap < r.count) {
            int64_t need = r.count;
            roc_free(&r);
            return sm_fail(SM_ERR_RANGE, "roc: %lld points do not fit in %lld", (long long)need,
                           (long long)cap);
        }
        memcpy(far, r.far, (size_t)r.count * sizeof(double));
        memcpy(tar, r.tar, (size_t)r.count * sizeof(double));
        memcpy(thresholds, r.thr, (size_t)r.count * sizeof(float));
    }
    *count = r.count;
    roc_free(&r);
    return SM_OK;
}

sm_status sm_roc_auc(const float *scores, const int8_t *genuine, int64_t n, double *auc) {
    if (!auc) return sm_fail(SM_ERR_INVALID, "roc auc: auc is NULL");
    roc r;
    sm_status st = roc_build("roc auc", scores, genuine, n, &r);
    if (st != SM_OK) return st;
    double a = 0;
    for (int64_t i = 1; i < r.count; i++)
        a += (r.far[i] - r.far[i - 1]) * (r.tar[i] + r.tar[i - 1]) * 0.5;
    *auc = a;
    roc_free(&r);
    return SM_OK;
}

sm_status sm_eer(const float *scores, const int8_t *genuine, int64_t n, double *eer,
                 float *threshold) {
    if (!eer) return sm_fail(SM_ERR_INVALID, "eer: eer is NULL");
    roc r;
    sm_status st = roc_build("eer", scores, genuine, n, &r);
    if (st != SM_OK) return st;
    /* FAR - FRR goes from -1 (first point) to +1 (last point); find where it turns >= 0 */
    int64_t p = 1;
    while (p < r.count - 1 && r.far[p] < 1.0 - r.tar[p]) p++;
    double d0 = r.far[p - 1] - (1.0 - r.tar[p - 1]), d1 = r.far[p] - (1.0 - r.tar[p]);
    double t = d1 > d0 ? -d0 / (d1 - d0) : 0.0;
    *eer = r.far[p - 1] + t * (r.far[p] - r.far[p - 1]);
    if (threshold) *threshold = r.thr[p];
    roc_free(&r);
    return SM_OK;
}

sm_status sm_tar_at_far(const float *scores, const int8_t *genuine, int64_t n, double far_target,
                        double *tar, float *threshold) {
    if (!tar) return sm_fail(SM_ERR_INVALID, "tar at far: tar is NULL");
    if (!(far_target >= 0.0 && far_target <= 1.0))
        return sm_fail(SM_ERR_INVALID, "tar at far: target %g is outside [0, 1]", far_target);
    roc r;
    sm_status st = roc_build("tar at far", scores, genuine, n, &r);
    if (st != SM_OK) return st;
    int64_t p = 0; /* TAR grows along the curve: the last point within the target is the best */
    while (p + 1 < r.count && r.far[p + 1] <= far_target) p++;
    *tar = r.tar[p];
    if (threshold) *threshold = r.thr[p];
    roc_free(&r);
    return SM_OK;
}

/* ---- mean intra- / inter-class distances ------------------------------------------------ */
#define DIST_TILE 1024

sm_status sm_intra_inter_distances(const float *emb, const int32_t *labels, int64_t n, int d,
                                   double *mean_intra, double *mean_inter) {
    if (!emb || !labels || !mean_intra || !mean_inter)
        return sm_fail(SM_ERR_INVALID, "intra/inter distances: NULL argument");
    if (n < 2)
        return sm_fail(SM_ERR_INVALID, "intra/inter distances: need at least 2 samples, got %lld",
                       (long long)n);
    if (d <= 0)
        return sm_fail(SM_ERR_INVALID, "intra/inter distances: dimension %d must be positive", d);
    if (!sm_all_finite(emb, n * (int64_t)d))
        return sm_fail(SM_ERR_NUMERIC, "intra/inter distances: NaN or Inf in the embeddings");
    const int64_t bt = n < DIST_TILE ? n : DIST_TILE;
    float *nrm = sm_alloc((size_t)n, sizeof(float));         /* (n) squared norms */
    float *G = sm_alloc((size_t)(bt * bt), sizeof(float));    /* (bt, bt) squared-distance tile */
    double *part = sm_alloc((size_t)(4 * bt), sizeof(double)); /* (bt, 4) per-row sums */
    if (!nrm || !G || !part) { sm_free(nrm); sm_free(G); sm_free(part); return SM_ERR_NOMEM; }
    sm_be_row_norms(sm_backend_default(), emb, n, d, 0, nrm);
    double sum_in = 0, sum_out = 0, cnt_in = 0, cnt_out = 0;
    for (int64_t i0 = 0; i0 < n; i0 += bt) {
        int64_t mi = n - i0 < bt ? n - i0 : bt;
        for (int64_t j0 = i0; j0 < n; j0 += bt) {
            int64_t mj = n - j0 < bt ? n - j0 : bt;
            sm_be_dist_tile(sm_backend_default(), SM_K_DIST_SQL2, 0, mi, mj, d, 0.0f, emb + i0 * d, nrm + i0, emb + j0 * d,
                           nrm + j0, G, bt);
#pragma omp parallel for schedule(dynamic, 8) if (mi * mj > 16384)
            for (int64_t a = 0; a < mi; a++) {
                int64_t i = i0 + a;
                double si = 0, so = 0, ci = 0, co = 0;
                int64_t b0 = j0 == i0 ? a + 1 : 0; /* pairs i < j only */
                for (int64_t b = b0; b < mj; b++) {
                    int64_t j = j0 + b;
                    double dist = sqrt((double)G[a * bt + b]); /* clamped at 0 (NaN only on overflow) */
                    if (labels[i] == labels[j]) { si += dist; ci += 1; }
                    else { so += dist; co += 1; }
                }
                part[4 * a] = si;
                part[4 * a + 1] = so;
                part[4 * a + 2] = ci;
                part[4 * a + 3] = co;
            }
            for (int64_t a = 0; a < mi; a++) { /* fixed order: deterministic sums */
                sum_in += part[4 * a];
                sum_out += part[4 * a + 1];
                cnt_in += part[4 * a + 2];
                cnt_out += part[4 * a + 3];
            }
        }
    }
    sm_free(nrm);
    sm_free(G);
    sm_free(part);
    *mean_intra = cnt_in > 0 ? sum_in / cnt_in : NAN;
    *mean_inter = cnt_out > 0 ? sum_out / cnt_out : NAN;
    return SM_OK;
}
