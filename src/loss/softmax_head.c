/* softmax_head.c - the loss kinds "softmax" and "focal" as loss objects: a linear classifier
 * head (W, b) on the embedding, trained with softmax cross-entropy (optionally label-smoothed)
 * or with the multi-class focal loss.  Parameter block: W (C, d) then b (C). */
#include "loss/loss.h"
#include "backend/backend.h"
#include <math.h>
#include <string.h>

/* Largest head: C * (d + 1) parameters. */
#define SM_HEAD_MAX_PARAMS ((int64_t)1 << 28)

typedef struct head_state {
    int focal;          /* 0: cross-entropy, 1: focal */
    float smoothing;    /* softmax: label smoothing in [0, 1) */
    float alpha, gamma; /* focal */
} head_state;

/* W ~ U(-1/sqrt(d), 1/sqrt(d)) (C, d), b ~ U(-1/sqrt(d), 1/sqrt(d)) (C), as PyTorch nn.Linear. */
static sm_status head_init_params(sm_loss *l, int classes) {
    const int d = l->dim;
    if ((int64_t)classes * (d + 1) > SM_HEAD_MAX_PARAMS)
        return sm_fail(SM_ERR_INVALID, "classes=%d with dimension %d: head too large", classes, d);
    sm_status st = sm_loss_alloc_params(l, (int64_t)classes * (d + 1));
    if (st) return st;
    sm_rng rng;
    sm_rng_seed(&rng, l->seed);
    const double bound = 1.0 / sqrt((double)d);
    for (int64_t k = 0; k < l->nparams; k++)
        l->params[k] = (float)((2.0 * sm_rng_uniform(&rng) - 1.0) * bound);
    l->classes = classes;
    return SM_OK;
}

/* Parse classes=C (required, >= 1) and store the state; shared by both kinds. */
static sm_status head_init(sm_loss *l, const char *options, head_state *hs) {
    int classes = 0;
    sm_status st = sm_opt_int(options, "classes", 0, &classes);
    if (st) return st;
    if (classes < 1)
        return sm_fail(SM_ERR_INVALID, "option classes=C (number of classes, >= 1) is required");
    head_state *s = sm_alloc(1, sizeof *s);
    if (!s) return SM_ERR_NOMEM;
    *s = *hs;
    l->state = s;
    return head_init_params(l, classes);
}

/* softmax: classes=C (required), smoothing=0 in [0, 1). */
static sm_status softmax_init(sm_loss *l, const char *options) {
    static const char *const known[] = {"classes", "smoothing", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    head_state hs = {0};
    if ((st = sm_opt_float(options, "smoothing", 0.0f, &hs.smoothing))) return st;
    if (!(hs.smoothing >= 0.0f && hs.smoothing < 1.0f))
        return sm_fail(SM_ERR_INVALID, "option smoothing=%g is not in [0, 1)", (double)hs.smoothing);
    return head_init(l, options, &hs);
}

/* focal: classes=C (required), alpha=1 >= 0, gamma=2 >= 0. */
static sm_status focal_init(sm_loss *l, const char *options) {
    static const char *const known[] = {"classes", "alpha", "gamma", NULL};
    sm_status st = sm_opt_check(options, known);
    if (st) return st;
    head_state hs = {0};
    hs.focal = 1;
    if ((st = sm_opt_float(options, "alpha", 1.0f, &hs.alpha))) return st;
    if ((st = sm_opt_float(options, "gamma", 2.0f, &hs.gamma))) return st;
    if (!(hs.alpha >= 0.0f))
        return sm_fail(SM_ERR_INVALID, "option alpha=%g must be >= 0", (double)hs.alpha);
    if (!(hs.gamma >= 0.0f))
        return sm_fail(SM_ERR_INVALID, "option gamma=%g must be >= 0", (double)hs.gamma);
    return head_init(l, options, &hs);
}

static void head_destroy(sm_loss *l) {
    sm_free(l->state);
    l->state = NULL;
}

/* out = emb W^T + b:  emb (n, d), params = W (C, d) then b (C), out (n, C). */
static void head_linear(const float *params, int d, int C, const float *emb, int n, float *out) {
    sm_linear_head_forward(emb, params, params + (int64_t)C * d, n, d, C, out);
}

/* logits = emb W^T + b, (n, C). */
static sm_status head_logits_of(const sm_head *h, const float *emb, int n, float *out) {
    if (!h || !emb || !out || n < 0)
        return sm_fail(SM_ERR_INVALID, "%s logits: NULL argument or negative n",
                       h ? h->kind->name : "loss");
    if (n > 0) head_linear(h->params, h->dim, h->classes, emb, n, out);
    return SM_OK;
}

static sm_status head_logits(const sm_loss *l, const float *emb, int n, float *out) {
    if (!l) return head_logits_of(NULL, emb, n, out);
    sm_head h = sm_loss_head(l);
    return head_logits_of(&h, emb, n, out);
}

/* W (C, d) and b (C). */
static int64_t head_size(int dim, int classes) { return (int64_t)classes * (dim + 1); }

/* With G = dL/dz (n, C):  grad = G W (n, d) if grad != NULL;  dW += G^T emb;  db += sum_i G_i. */
static void head_backward(sm_loss *l, const float *G, const float *emb, int n, float *grad) {
    const int d = l->dim, C = l->classes;
    sm_linear_head_backward(G, emb, l->params, n, d, C, grad, l->grads, l->grads + (int64_t)C * d, 1);
}

/* L = mean_i CE(emb_i W^T + b, y_i) (or focal);  grad = dL/demb, l->grads += (dL/dW, dL/db). */
static sm_status head_compute(sm_loss *l, const float *emb, const int32_t *labels, int n, int d,
                              float *value, float *grad) {
    const head_state *s = l->state;
    const char *name = l->kind->name;
    const int C = l->classes;
    (void)d; /* equals l->dim, checked by sm_loss_compute */
    if (n == 0) {
        *value = 0.0f;
        return SM_OK;
    }
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= C)
            return sm_fail(SM_ERR_RANGE, "%s: label %d at row %d is outside the head's [0, %d)",
                           name, (int)labels[i], i, C);
    float *z = sm_alloc((size_t)n * (size_t)C, sizeof(float)); /* (n, C) logits */
    float *G = sm_alloc((size_t)n * (size_t)C, sizeof(float)); /* (n, C) dL/dz */
    if (!z || !G) {
        sm_free(z);
        sm_free(G);
        return SM_ERR_NOMEM;
    }
    head_linear(l->params, l->dim, l->classes, emb, n, z);
    float loss = 0.0f;
    sm_status st = s->focal ? sm_focal_loss(z, labels, n, C, s->alpha, s->gamma, &loss, G)
                            : sm_softmax_cross_entropy(z, labels, n, C, s->smoothing, &loss, G);
    if (st == SM_OK) {
        head_backward(l, G, emb, n, grad);
        *value = loss;
    } else {
        sm_errmsg_prefix(name);
    }
    sm_free(z);
    sm_free(G);
    return st;
}

const sm_loss_kind sm_loss_softmax = {
    "softmax",
    "linear head z = W e + b, mean cross-entropy of softmax(z); classes=C (required), smoothing=0",
    softmax_init, head_compute, head_logits, head_destroy, head_logits_of, head_size,
};

const sm_loss_kind sm_loss_focal = {
    "focal",
    "linear head z = W e + b, mean -alpha (1-p_y)^gamma log p_y; classes=C (required), alpha=1, gamma=2",
    focal_init, head_compute, head_logits, head_destroy, head_logits_of, head_size,
};
