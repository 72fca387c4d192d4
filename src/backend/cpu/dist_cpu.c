/* dist_cpu.c - CPU implementation of the distance tile of backend.h (sm_k_dist_tile) and its
 * row-norm helper: one sgemm (sgemv for a single query, plain loops for tiny problems) with the
 * factor folded into alpha, then one elementwise pass that turns inner products into squared
 * L2 distances (|x|^2 + |y|^2 - 2<x, y>, clamped at 0) or cosines.  Self-contained: the other
 * kernels live in ops_cpu.c. */
#include "backend/cpu/kernels.h"
#include <math.h>

/* Relative size of |q-d|^2 against |q|^2 + |d|^2 below which the Gram form has lost too many
 * digits (SM_K_DIST_RECOMPUTE). */
#define RECOMPUTE_BELOW 1e-2f
#define PAR_TILE 65536              /* tile entries above which the elementwise pass is threaded */
#define PAR_NORMS ((int64_t)1 << 21) /* n * d above which the row norms are threaded */

void sm_k_row_norms(const float *x, int64_t n, int d, int inverse, float *out) {
#pragma omp parallel for schedule(static) if (n * (int64_t)d > PAR_NORMS)
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * (int64_t)d;
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
        out[i] = inverse ? (s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f) : (float)s;
    }
}

/* P (mq, ldo) = alpha Q D^T. */
static void products(unsigned flags, int64_t mq, int64_t md, int d, float alpha, const float *Q,
                     const float *D, float *out, int64_t ldo) {
    if (flags & SM_K_DIST_SMALL) {
        for (int64_t i = 0; i < mq; i++)
            for (int64_t j = 0; j < md; j++) {
                const float *a = Q + i * (int64_t)d, *b = D + j * (int64_t)d;
                float s = 0;
                for (int t = 0; t < d; t++) s += a[t] * b[t];
                out[i * ldo + j] = alpha * s;
            }
    } else if (mq == 1) {
        sm_k_gemv(0, (int)md, d, alpha, D, d, Q, 1, 0.0f, out, 1);
    } else {
        sm_k_gemm(0, 1, (int)mq, (int)md, d, alpha, Q, d, D, d, 0.0f, out, (int)ldo);
    }
}

/* sum_k (a_k - b_k)^2 in double. */
static float direct_sqdist(const float *a, const float *b, int d) {
    double t = 0.0;
    for (int k = 0; k < d; k++) {
        double u = (double)a[k] - b[k];
        t += u * u;
    }
    return (float)t;
}

void sm_k_dist_tile(int kind, unsigned flags, int64_t mq, int64_t md, int d, float alpha,
                    const float *Q, float *qn, const float *D, const float *dn, float *out,
                    int64_t ldo) {
    if (mq <= 0 || md <= 0) return;
    const int self = kind == SM_K_DIST_SQL2 && (flags & SM_K_DIST_SELF);
    if (kind == SM_K_DIST_SQL2) alpha = -2.0f;
    if (self) D = Q;
    products(flags, mq, md, d, alpha, Q, D, out, ldo);
    if (self) {
        for (int64_t i = 0; i < mq && i < md; i++) qn[i] = -0.5f * out[i * ldo + i]; /* exact */
        dn = qn;
    }
    if (kind == SM_K_DIST_DOT && !(flags & SM_K_DIST_NAN_INF)) return;
    const int recompute = kind == SM_K_DIST_SQL2 && (flags & SM_K_DIST_RECOMPUTE);
#pragma omp parallel for schedule(static) if (mq * md > PAR_TILE)
    for (int64_t i = 0; i < mq; i++) {
        float *row = out + i * ldo;
        if (kind == SM_K_DIST_DOT) { /* NaN -> +inf only */
            for (int64_t j = 0; j < md; j++) row[j] = sm_k_dist_entry(SM_K_DIST_DOT, flags, row[j], 1.0f, 1.0f);
            continue;
        }
        const float a = qn[i];
        if (kind == SM_K_DIST_COS) {
            for (int64_t j = 0; j < md; j++) row[j] = sm_k_dist_entry(SM_K_DIST_COS, flags, row[j], a, dn[j]);
            continue;
        }
        if (!self && !recompute) { /* the plain loop, kept free of branches so that it vectorises */
            for (int64_t j = 0; j < md; j++) row[j] = sm_k_dist_entry(SM_K_DIST_SQL2, flags, row[j], a, dn[j]);
            continue;
        }
        for (int64_t j = 0; j < md; j++) {
            if (self && j == i) { row[j] = 0.0f; continue; }
            float ref = a + dn[j];
            if (recompute && ref + row[j] < RECOMPUTE_BELOW * ref) /* cancelled: the direct form (>= 0) */
                row[j] = direct_sqdist(Q + i * (int64_t)d, D + j * (int64_t)d, d);
            else
                row[j] = sm_k_dist_entry(SM_K_DIST_SQL2, flags, row[j], a, dn[j]);
        }
    }
}
