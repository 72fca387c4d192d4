/* proxyanchor.c - the "proxyanchor" loss kind: pytorch-metric-learning's ProxyAnchorLoss
 * (Kim et al. 2020) with its DivisorReducer.  Proxies P (C, d) trained with the network,
 * cos_ic = cosine(f_i, P_c):
 *   L = 1/|C+| sum_{c in C+} log(1 + sum_{i: y_i = c}  exp(-alpha (cos_ic - delta)))
 *     + 1/C    sum_{c}       log(1 + sum_{i: y_i != c} exp( alpha (cos_ic + delta)))
 * C+ = the proxies with a positive in the batch.  Proxies initialised N(0, 2/C) as PML
 * (kaiming_normal_, mode fan_out). */
#include "loss/metric.h"
#include "backend/backend.h"

#define PROXY_MAX_PARAMS ((int64_t)1 << 28)

typedef struct proxy_state { double alpha, delta; } proxy_state;

/* Options: classes (required), alpha=32, margin=0.1. */
static sm_status proxy_init(sm_loss *l, const char *options) {
    static const char *const known[] = {"classes", "alpha", "margin", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    int classes = 0;
    float alpha = 0.0f, margin = 0.0f;
    if ((st = sm_opt_int(options, "classes", 0, &classes))) return st;
    if ((st = sm_opt_float(options, "alpha", 32.0f, &alpha))) return st;
    if ((st = sm_opt_float(options, "margin", 0.1f, &margin))) return st;
    if (classes < 1) return sm_fail(SM_ERR_INVALID, "option classes=C (number of classes, >= 1) is required");
    if (!(alpha > 0.0f)) return sm_fail(SM_ERR_INVALID, "option alpha=%g must be > 0", (double)alpha);
    if ((int64_t)classes * l->dim > PROXY_MAX_PARAMS)
        return sm_fail(SM_ERR_INVALID, "classes=%d with dimension %d: proxies too large", classes, l->dim);
    proxy_state *s = sm_alloc(1, sizeof *s);
    if (!s) return SM_ERR_NOMEM;
    s->alpha = alpha;
    s->delta = margin;
    l->state = s;
    if ((st = sm_loss_alloc_params(l, (int64_t)classes * l->dim))) return st;
    sm_rng rng;
    sm_rng_seed(&rng, l->seed);
    const float sd = (float)sqrt(2.0 / classes);
    for (int64_t k = 0; k < l->nparams; k++) l->params[k] = sd * sm_rng_normal(&rng);
    l->classes = classes;
    return SM_OK;
}

static void proxy_destroy(sm_loss *l) { sm_free(l->state); l->state = NULL; }
/* P (C, d). */
static int64_t proxy_size(int dim, int classes) { return (int64_t)classes * dim; }

/* cos (n, C) = normalise(emb) normalise(P)^T; also returns the normalised rows and norms. */
static void proxy_cosine(const float *P, int d, int C, const float *emb, int n, float *fn, float *fnorm,
                         float *Pn, float *pnorm, float *cos) {
    sm_l2_normalize_rows(emb, n, d, fn, fnorm);
    sm_l2_normalize_rows(P, C, d, Pn, pnorm);
    sm_be_gemm(sm_backend_default(), 0, 1, n, C, d, 1.0f, fn, d, Pn, d, 0.0f, cos, C);
}

/* logits (n, C) = cosine to each proxy (nearest-proxy classification). */
static sm_status proxy_head_logits(const sm_head *h, const float *emb, int n, float *out) {
    if (!h || !emb || !out || n < 0)
        return sm_fail(SM_ERR_INVALID, "proxyanchor logits: NULL argument or negative n");
    if (n == 0) return SM_OK;
    const int d = h->dim, C = h->classes;
    float *fn = sm_alloc((size_t)n * d, sizeof(float)), *fnorm = sm_alloc((size_t)n, sizeof(float));
    float *Pn = sm_alloc((size_t)C * d, sizeof(float)), *pnorm = sm_alloc((size_t)C, sizeof(float));
    sm_status st = SM_OK;
    if (!fn || !fnorm || !Pn || !pnorm) st = SM_ERR_NOMEM;
    else proxy_cosine(h->params, d, C, emb, n, fn, fnorm, Pn, pnorm, out);
    sm_free(fn); sm_free(fnorm); sm_free(Pn); sm_free(pnorm);
    return st;
}

static sm_status proxy_logits(const sm_loss *l, const float *emb, int n, float *out) {
    if (!l) return proxy_head_logits(NULL, emb, n, out);
    sm_head h = sm_loss_head(l);
    return proxy_head_logits(&h, emb, n, out);
}

/* L as above; dL/dcos_ic = -w_ic / |C+| (positives), +w_ic / C (negatives); then through the
 * cosine to emb (grad) and to P (l->grads += ). */
static sm_status proxy_compute(sm_loss *l, const float *emb, const int32_t *labels, int n, int d,
                               float *value, float *grad) {
    const proxy_state *s = l->state;
    const int C = l->classes;
    sm_metric_zero(value, grad, n, d);
    if (n == 0) return SM_OK;
    for (int i = 0; i < n; i++)
        if (labels[i] >= C)
            return sm_fail(SM_ERR_RANGE, "proxyanchor: label %d at row %d is outside [0, %d)",
                           (int)labels[i], i, C);
    float *fn = sm_alloc((size_t)n * d, sizeof(float));     /* (n, d) */
    float *fnorm = sm_alloc((size_t)n, sizeof(float));      /* (n) */
    float *Pn = sm_alloc((size_t)C * d, sizeof(float));     /* (C, d) */
    float *pnorm = sm_alloc((size_t)C, sizeof(float));      /* (C) */
    float *cos = sm_alloc((size_t)n * C, sizeof(float));    /* (n, C) cosines, then dL/dcos */
    float *dPn = sm_alloc((size_t)C * d, sizeof(float));    /* (C, d) */
    double *x = sm_alloc((size_t)n, sizeof(double));        /* (n) exponents of one proxy */
    double *w = sm_alloc((size_t)n, sizeof(double));        /* (n) their weights */
    int32_t *idx = sm_alloc((size_t)n, sizeof(int32_t));    /* (n) their rows */
    sm_status st = SM_OK;
    if (!fn || !fnorm || !Pn || !pnorm || !cos || !dPn || !x || !w || !idx) { st = SM_ERR_NOMEM; goto out; }
    proxy_cosine(l->params, d, C, emb, n, fn, fnorm, Pn, pnorm, cos);
    int npos_proxies = 0;
    for (int c = 0; c < C; c++) {
        for (int i = 0; i < n; i++) if (labels[i] == c) { npos_proxies++; break; }
    }
    double L = 0.0;
    for (int c = 0; c < C; c++) {
        for (int part = 0; part < 2; part++) {
            int m = 0;
            for (int i = 0; i < n; i++) {
                if ((labels[i] == c) == (part == 0)) {
                    double cv = cos[(int64_t)i * C + c];
                    x[m] = part == 0 ? -s->alpha * (cv - s->delta) : s->alpha * (cv + s->delta);
                    idx[m++] = i;
                }
            }
            double div = part == 0 ? npos_proxies : C;
            if (m == 0 || div <= 0) {
                for (int t = 0; t < m; t++) cos[(int64_t)idx[t] * C + c] = 0.0f;
                continue;
            }
            L += sm_log1p_sumexp(x, m, w) / div;
            /* dL/dcos_ic = w_ic (-alpha or +alpha) / div, written over the column's cosines
             * (already read into x). */
            const double g = (part == 0 ? -s->alpha : s->alpha) / div;
            for (int t = 0; t < m; t++) cos[(int64_t)idx[t] * C + c] = (float)(w[t] * g);
        }
    }
    *value = (float)L;
    /* Every (i, c) belongs to exactly one part, so cos now holds dL/dcos entirely. */
    if (grad) {
        sm_be_gemm(sm_backend_default(), 0, 0, n, d, C, 1.0f, cos, C, Pn, d, 0.0f, grad, d);
        sm_l2_normalize_backward(fn, fnorm, grad, n, d, grad);
    }
    sm_be_gemm(sm_backend_default(), 1, 0, C, d, n, 1.0f, cos, C, fn, d, 0.0f, dPn, d);
    sm_l2_normalize_backward(Pn, pnorm, dPn, C, d, dPn);
    for (int64_t k = 0; k < (int64_t)C * d; k++) l->grads[k] += dPn[k];
out:
    sm_free(fn); sm_free(fnorm); sm_free(Pn); sm_free(pnorm); sm_free(cos); sm_free(dPn);
    sm_free(x); sm_free(w); sm_free(idx);
    return st;
}

const sm_loss_kind sm_loss_proxyanchor = {
    "proxyanchor",
    "PML ProxyAnchorLoss: 1/|C+| sum_c log(1+sum_pos exp(-alpha(cos-margin))) + 1/C sum_c "
    "log(1+sum_neg exp(alpha(cos+margin))), proxies (C, d) trained; classes=C (required), alpha=32, margin=0.1",
    proxy_init, proxy_compute, proxy_logits, proxy_destroy, proxy_head_logits, proxy_size,
};
