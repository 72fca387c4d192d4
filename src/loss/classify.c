/* classify.c - classification losses on logits: softmax cross-entropy (hard labels with label
 * smoothing, soft targets), the softmax head with its parameter gradients, binary cross-entropy
 * from logits, multi-class focal loss, and entropy / KL / cross-entropy of distributions.
 * Every reduction is accumulated in double; results are stored as float.  Inputs are validated
 * completely before any output is written, so outputs are untouched on failure. */
#include "core/core.h"
#include "loss/loss.h"
#include "backend/backend.h"
#include <math.h>
#include <string.h>


/* Index of the first non-finite value of x (n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!sm_isfinite_f(x[i])) return i;
    return -1;
}

/* Checks the logits z (n, c) are finite: SM_ERR_NUMERIC naming row and column otherwise. */
static sm_status check_logits(const char *fn, const float *z, int n, int c) {
    int64_t k = first_nonfinite(z, (int64_t)n * c);
    if (k >= 0)
        return sm_fail(SM_ERR_NUMERIC, "%s: non-finite logit %g at row %lld, class %lld", fn,
                       (double)z[k], (long long)(k / c), (long long)(k % c));
    return SM_OK;
}

/* Checks every label lies in [0, c): SM_ERR_RANGE naming row and label otherwise. */
static sm_status check_labels(const char *fn, const int32_t *labels, int n, int c) {
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c)
            return sm_fail(SM_ERR_RANGE, "%s: label %d at row %d is outside [0, %d)", fn,
                           (int)labels[i], i, c);
    return SM_OK;
}

/* Row log-sum-exp: m = max_j z_j, s = sum_j exp(z_j - m), returns m + log s (z finite). */
static double row_lse(const float *z, int c, double *m_out, double *s_out) {
    double m = z[0];
    for (int j = 1; j < c; j++)
        if (z[j] > m) m = z[j];
    double s = 0.0;
    for (int j = 0; j < c; j++) s += exp((double)z[j] - m);
    *m_out = m;
    *s_out = s;
    return m + log(s);
}

/* L = mean_i [(1-e)(lse_i - z_iy) + (e/c) sum_j (lse_i - z_ij)];  dz = (softmax(z) - q) / n,
 * q = (1-e) onehot(y) + e/c. */
sm_status sm_softmax_cross_entropy(const float *z, const int32_t *labels, int n, int c,
                                   float label_smoothing, float *loss, float *dz) {
    static const char fn[] = "sm_softmax_cross_entropy";
    if (!z || !labels || !loss) return sm_fail(SM_ERR_INVALID, "%s: NULL argument", fn);
    if (n <= 0 || c <= 0) return sm_fail(SM_ERR_INVALID, "%s: bad shape n=%d, c=%d", fn, n, c);
    if (dz == z) return sm_fail(SM_ERR_INVALID, "%s: dz may not alias z", fn);
    if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f))
        return sm_fail(SM_ERR_INVALID, "%s: label smoothing %g is not in [0, 1)", fn,
                       (double)label_smoothing);
    sm_status st = check_labels(fn, labels, n, c);
    if (st) return st;
    if ((st = check_logits(fn, z, n, c))) return st;

    const double e = label_smoothing, eu = e / c, inv_n = 1.0 / n;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (int64_t)i * c; /* (c) */
        const int y = labels[i];
        double m, s;
        double lse = row_lse(zi, c, &m, &s);
        double li = (1.0 - e) * (lse - zi[y]);
        if (e > 0.0) {
            double sum_nll = 0.0;
            for (int j = 0; j < c; j++) sum_nll += lse - zi[j];
            li += eu * sum_nll;
        }
        total += li;
        if (dz) {
            float *gi = dz + (int64_t)i * c; /* (c) */
            for (int j = 0; j < c; j++) {
                double q = eu + (j == y ? 1.0 - e : 0.0);
                gi[j] = (float)((exp((double)zi[j] - m) / s - q) * inv_n);
            }
        }
    }
    *loss = (float)(total * inv_n);
    return SM_OK;
}

/* L = mean_i [ sum_j t_ij (lse_i - z_ij) ];  dz = (softmax(z) - t) / n. */
sm_status sm_softmax_cross_entropy_soft(const float *z, const float *t, int n, int c,
                                        float *loss, float *dz) {
    static const char fn[] = "sm_softmax_cross_entropy_soft";
    if (!z || !t || !loss) return sm_fail(SM_ERR_INVALID, "%s: NULL argument", fn);
    if (n <= 0 || c <= 0) return sm_fail(SM_ERR_INVALID, "%s: bad shape n=%d, c=%d", fn, n, c);
    if (dz == z) return sm_fail(SM_ERR_INVALID, "%s: dz may not alias z", fn);
    for (int i = 0; i < n; i++) {
        const float *ti = t + (int64_t)i * c; /* (c) */
        double sum = 0.0;
        for (int j = 0; j < c; j++) {
            if (!(ti[j] >= 0.0f) || !sm_isfinite_f(ti[j]))
                return sm_fail(SM_ERR_INVALID, "%s: target %g at row %d, class %d is not a "
                               "probability", fn, (double)ti[j], i, j);
            sum += ti[j];
        }
        if (fabs(sum - 1.0) > 1e-3)
            return sm_fail(SM_ERR_INVALID, "%s: targets of row %d sum to %g, not 1", fn, i, sum);
    }
    sm_status st = check_logits(fn, z, n, c);
    if (st) return st;

    const double inv_n = 1.0 / n;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (int64_t)i * c, *ti = t + (int64_t)i * c; /* (c), (c) */
        double m, s;
        double lse = row_lse(zi, c, &m, &s);
        for (int j = 0; j < c; j++)
            if (ti[j] > 0.0f) total += (double)ti[j] * (lse - zi[j]);
        if (dz) {
            float *gi = dz + (int64_t)i * c; /* (c) */
            for (int j = 0; j < c; j++)
                gi[j] = (float)((exp((double)zi[j] - m) / s - ti[j]) * inv_n);
        }
    }
    *loss = (float)(total * inv_n);
    return SM_OK;
}

/* z = f W^T + b, L = CE(z, y);  dL/df_i = (sum_j p_ij W_j - W_y)/n,
 * dL/dW_j = sum_i (p_ij - y_ij) f_i / n,  dL/db_j = sum_i (p_ij - y_ij) / n. */
sm_status sm_softmax_head(const float *f, const float *W, const float *b, const int32_t *labels,
                          int n, int d, int c, float *loss, float *df, float *dW, float *db) {
    static const char fn[] = "sm_softmax_head";
    if (!f || !W || !labels || !loss) return sm_fail(SM_ERR_INVALID, "%s: NULL argument", fn);
    if (n <= 0 || d <= 0 || c <= 0)
        return sm_fail(SM_ERR_INVALID, "%s: bad shape n=%d, d=%d, c=%d", fn, n, d, c);
    sm_status st = check_labels(fn, labels, n, c);
    if (st) return st;
    if (!sm_all_finite(f, (int64_t)n * d) || !sm_all_finite(W, (int64_t)c * d) ||
        (b && !sm_all_finite(b, c)))
        return sm_fail(SM_ERR_NUMERIC, "%s: non-finite value in f, W or b", fn);

    float *z = sm_alloc((size_t)n * (size_t)c, sizeof(float)); /* (n, c) logits */
    float *G = sm_alloc((size_t)n * (size_t)c, sizeof(float)); /* (n, c) dL/dz */
    if (!z || !G) {
        sm_free(z);
        sm_free(G);
        return SM_ERR_NOMEM;
    }
    sm_linear_head_forward(f, W, b, n, d, c, z);
    float value;
    st = sm_softmax_cross_entropy(z, labels, n, c, 0.0f, &value, G);
    if (st == SM_OK) {
        sm_linear_head_backward(G, f, W, n, d, c, df, dW, db, 0);
        *loss = value;
    } else {
        sm_errmsg_prefix(fn);
    }
    sm_free(z);
    sm_free(G);
    return st;
}

/* L = mean [max(z,0) - z t + log1p(exp(-|z|))];  dz = (sigmoid(z) - t) / m. */
sm_status sm_bce_with_logits(const float *z, const float *t, int64_t m, float *loss, float *dz) {
    static const char fn[] = "sm_bce_with_logits";
    if (!z || !t || !loss) return sm_fail(SM_ERR_INVALID, "%s: NULL argument", fn);
    if (m <= 0) return sm_fail(SM_ERR_INVALID, "%s: bad count m=%lld", fn, (long long)m);
    if (dz == z) return sm_fail(SM_ERR_INVALID, "%s: dz may not alias z", fn);
    for (int64_t k = 0; k < m; k++)
        if (!(t[k] >= 0.0f && t[k] <= 1.0f))
            return sm_fail(SM_ERR_INVALID, "%s: target %g at index %lld is not in [0, 1]", fn,
                           (double)t[k], (long long)k);
    int64_t bad = first_nonfinite(z, m);
    if (bad >= 0)
        return sm_fail(SM_ERR_NUMERIC, "%s: non-finite logit %g at index %lld", fn,
                       (double)z[bad], (long long)bad);

    const double inv_m = 1.0 / (double)m;
    double total = 0.0;
    for (int64_t k = 0; k < m; k++) {
        double x = z[k], tk = t[k];
        double ea = exp(-fabs(x)); /* in (0, 1] */
        total += (x > 0.0 ? x : 0.0) - x * tk + log1p(ea);
        if (dz) {
            double sig = x >= 0.0 ? 1.0 / (1.0 + ea) : ea / (1.0 + ea);
            dz[k] = (float)((sig - tk) * inv_m);
        }
    }
    *loss = (float)(total * inv_m);
    return SM_OK;
}

/* L = mean_i [-alpha (1-p)^g log p], p = softmax(z_i)_y;
 * dz_ij = alpha [(1-p)^g - g p (1-p)^(g-1) log p] (p_ij - [j = y]) / n. */
sm_status sm_focal_loss(const float *z, const int32_t *labels, int n, int c, float alpha,
                        float gamma, float *loss, float *dz) {
    static const char fn[] = "sm_focal_loss";
    if (!z || !labels || !loss) return sm_fail(SM_ERR_INVALID, "%s: NULL argument", fn);
    if (n <= 0 || c <= 0) return sm_fail(SM_ERR_INVALID, "%s: bad shape n=%d, c=%d", fn, n, c);
    if (dz == z) return sm_fail(SM_ERR_INVALID, "%s: dz may not alias z", fn);
    if (!(alpha >= 0.0f) || !sm_isfinite_f(alpha))
        return sm_fail(SM_ERR_INVALID, "%s: alpha %g must be finite and >= 0", fn, (double)alpha);
    if (!(gamma >= 0.0f) || !sm_isfinite_f(gamma))
        return sm_fail(SM_ERR_INVALID, "%s: gamma %g must be finite and >= 0", fn, (double)gamma);
    sm_status st = check_labels(fn, labels, n, c);
    if (st) return st;
    if ((st = check_logits(fn, z, n, c))) return st;

    const double a = alpha, g = gamma, inv_n = 1.0 / n;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (int64_t)i * c; /* (c) */
        const int y = labels[i];
        double m, s;
        double logp = zi[y] - row_lse(zi, c, &m, &s); /* log p_t <= 0 */
        if (logp > 0.0) logp = 0.0;
        double p = exp(logp);
        double q = -expm1(logp);                      /* 1 - p_t, accurate near p_t = 1 */
        double qg = g == 0.0 ? 1.0 : pow(q, g);       /* (1 - p)^g, with 0^0 = 1 */
        total += -a * qg * logp;
        if (dz) {
            /* g p (1-p)^(g-1) log p = g p (1-p)^g (log p / (1-p)); log p / (1-p) -> -1 as p -> 1 */
            double ratio = q > 0.0 ? logp / q : -1.0;
            double F = a * (qg - g * p * qg * ratio);
            float *gi = dz + (int64_t)i * c; /* (c) */
            for (int j = 0; j < c; j++) {
                double pj = exp((double)zi[j] - m) / s;
                gi[j] = (float)(F * (pj - (j == y ? 1.0 : 0.0)) * inv_n);
            }
        }
    }
    *loss = (float)(total * inv_n);
    return SM_OK;
}

/* 1 if p (n) is a valid vector of non-negative finite values, else records an error. */
static int prob_ok(const char *fn, const float *p, int n, const char *which) {
    if (!p || n <= 0) {
        sm_fail(SM_ERR_INVALID, "%s: NULL %s or n=%d <= 0", fn, which, n);
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (!(p[i] >= 0.0f) || !sm_isfinite_f(p[i])) {
            sm_fail(SM_ERR_INVALID, "%s: %s[%d] = %g is not a probability", fn, which, i,
                    (double)p[i]);
            return 0;
        }
    return 1;
}

/* H(p) = -sum_i p_i log p_i  (0 log 0 = 0). */
double sm_entropy(const float *p, int n) {
    if (!prob_ok("sm_entropy", p, n, "p")) return NAN;
    double h = 0.0;
    for (int i = 0; i < n; i++)
        if (p[i] > 0.0f) h -= (double)p[i] * log((double)p[i]);
    return h;
}

/* KL(p || q) = sum_i p_i (log p_i - log q_i); NaN if some q_i = 0 < p_i. */
double sm_kl_divergence(const float *p, const float *q, int n) {
    if (!prob_ok("sm_kl_divergence", p, n, "p") || !prob_ok("sm_kl_divergence", q, n, "q"))
        return NAN;
    double kl = 0.0;
    for (int i = 0; i < n; i++) {
        if (p[i] == 0.0f) continue;
        if (q[i] == 0.0f) {
            sm_fail(SM_ERR_NUMERIC, "sm_kl_divergence: q[%d] = 0 where p[%d] > 0", i, i);
            return NAN;
        }
        kl += (double)p[i] * (log((double)p[i]) - log((double)q[i]));
    }
    return kl;
}

/* H(p, q) = -sum_i p_i log q_i = H(p) + KL(p || q); NaN if some q_i = 0 < p_i. */
double sm_cross_entropy(const float *p, const float *q, int n) {
    if (!prob_ok("sm_cross_entropy", p, n, "p") || !prob_ok("sm_cross_entropy", q, n, "q"))
        return NAN;
    double h = 0.0;
    for (int i = 0; i < n; i++) {
        if (p[i] == 0.0f) continue;
        if (q[i] == 0.0f) {
            sm_fail(SM_ERR_NUMERIC, "sm_cross_entropy: q[%d] = 0 where p[%d] > 0", i, i);
            return NAN;
        }
        h -= (double)p[i] * log((double)q[i]);
    }
    return h;
}
