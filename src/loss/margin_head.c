/* margin_head.c - the "arcface" and "cosface" loss kinds: pytorch-metric-learning's ArcFaceLoss
 * and CosFaceLoss.  Class weights W (d, C) (PML's layout), both W's columns and the embeddings
 * L2-normalised, cos_ic = f_i.W_c / (|f_i| |W_c|), then mean softmax cross-entropy of
 *   z_ic = s cos_ic (c != y_i),  z_iy = s phi(cos_iy)
 * arcface: phi = cos(theta + m) if theta <= pi - m, else cos(theta) - m sin(m) (the original
 *          ArcFace fallback, which PML also applies); margin given in degrees (28.6 = 0.5 rad)
 * cosface: phi = cos - m.
 * The parameter block is W (d, C), initialised N(0, 1) as PML (torch.nn.init.normal_). */
#include "loss/metric.h"
#include "backend/backend.h"

/* Below this sine of the target angle the arcface derivative d phi / d cos (which grows as
 * 1 / sin theta at theta -> 0) is evaluated at this value instead, keeping it finite. */
#define ARC_MIN_SIN 1e-4

/* Largest parameter block d * C. */
#define MARGIN_MAX_PARAMS ((int64_t)1 << 28)

typedef struct margin_state {
    int arc;          /* 1: arcface, 0: cosface */
    double margin;    /* arcface: radians; cosface: cosine offset */
    double scale;
} margin_state;

/* Parse classes (required), margin (default per kind), scale=64; W ~ N(0, 1). */
static sm_status margin_init(sm_loss *l, const char *options, int arc) {
    static const char *const known[] = {"classes", "margin", "scale", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    int classes = 0;
    float margin = 0.0f, scale = 0.0f;
    if ((st = sm_opt_int(options, "classes", 0, &classes))) return st;
    if ((st = sm_opt_float(options, "margin", arc ? 28.6f : 0.35f, &margin))) return st;
    if ((st = sm_opt_float(options, "scale", 64.0f, &scale))) return st;
    if (classes < 1) return sm_fail(SM_ERR_INVALID, "option classes=C (number of classes, >= 1) is required");
    if (!(scale > 0.0f)) return sm_fail(SM_ERR_INVALID, "option scale=%g must be > 0", (double)scale);
    if (arc && !(margin >= 0.0f && margin < 180.0f))
        return sm_fail(SM_ERR_INVALID, "option margin=%g (degrees) must be in [0, 180)", (double)margin);
    if ((int64_t)classes * l->dim > MARGIN_MAX_PARAMS)
        return sm_fail(SM_ERR_INVALID, "classes=%d with dimension %d: weights too large", classes, l->dim);
    margin_state *s = sm_alloc(1, sizeof *s);
    if (!s) return SM_ERR_NOMEM;
    s->arc = arc;
    s->margin = arc ? margin * (3.14159265358979323846 / 180.0) : margin;
    s->scale = scale;
    l->state = s;
    if ((st = sm_loss_alloc_params(l, (int64_t)classes * l->dim))) return st;
    sm_rng rng;
    sm_rng_seed(&rng, l->seed);
    for (int64_t k = 0; k < l->nparams; k++) l->params[k] = sm_rng_normal(&rng);
    l->classes = classes;
    return SM_OK;
}

static sm_status arcface_init(sm_loss *l, const char *options) { return margin_init(l, options, 1); }
static sm_status cosface_init(sm_loss *l, const char *options) { return margin_init(l, options, 0); }
static void margin_destroy(sm_loss *l) { sm_free(l->state); l->state = NULL; }
/* W (d, C). */
static int64_t margin_size(int dim, int classes) { return (int64_t)classes * dim; }

/* Wn (d, C) = W with unit columns; cn (C) = column norms. */
static void normalize_columns(const float *W, int d, int C, float *Wn, float *cn) {
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int k = 0; k < d; k++) s += (double)W[(int64_t)k * C + c] * W[(int64_t)k * C + c];
        double nrm = sqrt(s), inv = 1.0 / (nrm > SM_NORM_EPS ? nrm : SM_NORM_EPS);
        cn[c] = (float)nrm;
        for (int k = 0; k < d; k++) Wn[(int64_t)k * C + c] = (float)(W[(int64_t)k * C + c] * inv);
    }
}

/* cos (n, C) = normalise(emb) (n, d) x Wn (d, C); fills fn (n, d), fnorm (n), Wn, cn too. */
static void margin_cosine(const float *W, int d, int C, const float *emb, int n, float *fn, float *fnorm,
                          float *Wn, float *cn, float *cos) {
    sm_l2_normalize_rows(emb, n, d, fn, fnorm);
    normalize_columns(W, d, C, Wn, cn);
    sm_be_gemm(sm_backend_default(), 0, 0, n, C, d, 1.0f, fn, d, Wn, C, 0.0f, cos, C);
}

/* logits (n, C) = s cos(f_i, W_c), without the margin. */
static sm_status margin_head_logits(const sm_head *h, const float *emb, int n, float *out) {
    if (!h || !emb || !out || n < 0)
        return sm_fail(SM_ERR_INVALID, "%s logits: NULL argument or negative n", h ? h->kind->name : "loss");
    if (n == 0) return SM_OK;
    float fscale = 0.0f; /* as margin_init reads it */
    sm_status st = sm_opt_float(h->options, "scale", 64.0f, &fscale);
    if (st) return st;
    const double scale = fscale;
    const int d = h->dim, C = h->classes;
    float *fn = sm_alloc((size_t)n * d, sizeof(float));   /* (n, d) */
    float *fnorm = sm_alloc((size_t)n, sizeof(float));    /* (n) */
    float *Wn = sm_alloc((size_t)d * C, sizeof(float));   /* (d, C) */
    float *cn = sm_alloc((size_t)C, sizeof(float));       /* (C) */
    if (!fn || !fnorm || !Wn || !cn) st = SM_ERR_NOMEM;
    else {
        margin_cosine(h->params, d, C, emb, n, fn, fnorm, Wn, cn, out);
        for (int64_t k = 0; k < (int64_t)n * C; k++) out[k] = (float)(out[k] * scale);
    }
    sm_free(fn); sm_free(fnorm); sm_free(Wn); sm_free(cn);
    return st;
}

static sm_status margin_logits(const sm_loss *l, const float *emb, int n, float *out) {
    if (!l) return margin_head_logits(NULL, emb, n, out);
    sm_head h = sm_loss_head(l);
    return margin_head_logits(&h, emb, n, out);
}

/* phi(c) and dphi/dc for the target class. */
static double margin_phi(const margin_state *s, double c, double *dphi) {
    if (!s->arc) { *dphi = 1.0; return c - s->margin; }
    if (c > 1.0) c = 1.0;
    if (c < -1.0) c = -1.0;
    const double m = s->margin, theta = acos(c);
    if (theta <= 3.14159265358979323846 - m) {
        double sn = sqrt(1.0 - c * c);
        /* cos(theta + m) = c cos m - sin(theta) sin m;  d/dc = cos m + sin m c / sin(theta) */
        *dphi = cos(m) + sin(m) * c / (sn > ARC_MIN_SIN ? sn : ARC_MIN_SIN);
        return c * cos(m) - sn * sin(m);
    }
    *dphi = 1.0;
    return c - m * sin(m);
}

/* L = mean_i CE(z_i, y_i); grad = dL/demb; l->grads (d, C) += dL/dW. */
static sm_status margin_compute(sm_loss *l, const float *emb, const int32_t *labels, int n,
                                int d, float *value, float *grad) {
    const margin_state *s = l->state;
    const int C = l->classes;
    sm_metric_zero(value, grad, n, d);
    if (n == 0) return SM_OK;
    for (int i = 0; i < n; i++)
        if (labels[i] >= C)
            return sm_fail(SM_ERR_RANGE, "%s: label %d at row %d is outside [0, %d)", l->kind->name,
                           (int)labels[i], i, C);
    float *fn = sm_alloc((size_t)n * d, sizeof(float));    /* (n, d) unit embeddings */
    float *fnorm = sm_alloc((size_t)n, sizeof(float));     /* (n) */
    float *Wn = sm_alloc((size_t)d * C, sizeof(float));    /* (d, C) unit columns */
    float *cn = sm_alloc((size_t)C, sizeof(float));        /* (C) column norms */
    float *cos = sm_alloc((size_t)n * C, sizeof(float));   /* (n, C) cosines, then dL/dcos */
    float *dWn = sm_alloc((size_t)d * C, sizeof(float));   /* (d, C) dL/dWn */
    double *z = sm_alloc((size_t)C, sizeof(double));       /* (C) one row of logits */
    sm_status st = SM_OK;
    if (!fn || !fnorm || !Wn || !cn || !cos || !dWn || !z) { st = SM_ERR_NOMEM; goto out; }
    margin_cosine(l->params, d, C, emb, n, fn, fnorm, Wn, cn, cos);
    double L = 0.0;
    for (int i = 0; i < n; i++) {
        float *ci = cos + (int64_t)i * C;
        const int y = labels[i];
        double dphi;
        for (int c = 0; c < C; c++) z[c] = s->scale * ci[c];
        z[y] = s->scale * margin_phi(s, ci[y], &dphi);
        double mx = z[0];
        for (int c = 1; c < C; c++) if (z[c] > mx) mx = z[c];
        double se = 0.0;
        for (int c = 0; c < C; c++) se += exp(z[c] - mx);
        double lse = mx + log(se);
        L += lse - z[y];
        /* dL/dcos_ic = s (p_ic - [c = y]) / n, times dphi for the target. */
        for (int c = 0; c < C; c++) {
            double g = s->scale * (exp(z[c] - lse) - (c == y)) / n;
            ci[c] = (float)(c == y ? g * dphi : g);
        }
    }
    *value = (float)(L / n);
    /* dFn = dcos Wn^T (n, d);  dWn = Fn^T dcos (d, C). */
    if (grad) {
        sm_be_gemm(sm_backend_default(), 0, 1, n, d, C, 1.0f, cos, C, Wn, C, 0.0f, grad, d);
        sm_l2_normalize_backward(fn, fnorm, grad, n, d, grad);
    }
    sm_be_gemm(sm_backend_default(), 1, 0, d, C, n, 1.0f, fn, d, cos, C, 0.0f, dWn, C);
    for (int c = 0; c < C; c++) {
        if (!(cn[c] > SM_NORM_EPS)) continue;
        double dot = 0.0;
        for (int k = 0; k < d; k++) dot += (double)Wn[(int64_t)k * C + c] * dWn[(int64_t)k * C + c];
        for (int k = 0; k < d; k++)
            l->grads[(int64_t)k * C + c] +=
                (float)((dWn[(int64_t)k * C + c] - Wn[(int64_t)k * C + c] * dot) / cn[c]);
    }
out:
    sm_free(fn); sm_free(fnorm); sm_free(Wn); sm_free(cn); sm_free(cos); sm_free(dWn); sm_free(z);
    return st;
}

const sm_loss_kind sm_loss_arcface = {
    "arcface",
    "PML ArcFaceLoss: mean CE of s cos(theta_y + m) (cos theta - m sin m past pi - m) vs s cos theta_c, "
    "weights W (d, C) trained; classes=C (required), margin=28.6 (degrees, = 0.5 rad), scale=64",
    arcface_init, margin_compute, margin_logits, margin_destroy, margin_head_logits, margin_size,
};

const sm_loss_kind sm_loss_cosface = {
    "cosface",
    "PML CosFaceLoss: mean CE of s (cos theta_y - m) vs s cos theta_c, weights W (d, C) trained; "
    "classes=C (required), margin=0.35, scale=64",
    cosface_init, margin_compute, margin_logits, margin_destroy, margin_head_logits, margin_size,
};
