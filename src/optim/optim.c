/* optim.c - SGD (momentum, L2 weight decay), Adam (L2 weight decay, PyTorch semantics) and AdamW
 * (decoupled weight decay), plus constant, step and cosine learning-rate schedules. */
#include "optim/optim.h"
#include <math.h>

sm_status sm_optim_init(sm_optim_state *s, int64_t n) {
    s->n = n; s->t = 0;
    s->m = sm_calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    s->v = sm_calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!s->m || !s->v) { sm_optim_free(s); return SM_ERR_NOMEM; }
    return SM_OK;
}

void sm_optim_free(sm_optim_state *s) {
    sm_free(s->m); sm_free(s->v);
    s->m = s->v = NULL;
}

void sm_optim_step(const sm_train_config *cfg, sm_optim_state *s, float *p, const float *g, float lr) {
    s->t++;
    sm_optim_update(cfg, s->t, s->n, p, g, s->m, s->v, lr);
}

void sm_optim_update(const sm_train_config *cfg, int64_t t, int64_t n, float *p, const float *g,
                     float *m, float *v, float lr) {
    const float wd = cfg->weight_decay;
    if (cfg->optimizer == SM_OPT_SGD) {
        /* v = mu v + (g + wd p);  p -= lr v  (PyTorch SGD, dampening 0) */
        const float mu = cfg->momentum;
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i] + wd * p[i];
            m[i] = t == 1 ? gi : mu * m[i] + gi;
            p[i] -= lr * m[i];
        }
        return;
    }
    /* Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr mhat / (sqrt(vhat) + eps) */
    const float b1 = cfg->beta1, b2 = cfg->beta2, eps = cfg->eps;
    const float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    const float step = lr / c1, rc2 = 1.0f / sqrtf(c2);
    const int decoupled = cfg->optimizer == SM_OPT_ADAMW;
    for (int64_t i = 0; i < n; i++) {
        float gi = decoupled ? g[i] : g[i] + wd * p[i];
        if (decoupled) p[i] -= lr * wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) * rc2 + eps);
    }
}

float sm_schedule_lr(const sm_train_config *cfg, int epoch, int64_t step, int64_t steps_per_epoch) {
    double total = (double)cfg->epochs * (double)steps_per_epoch;
    double t = (double)epoch * (double)steps_per_epoch + (double)step; /* 0-based global step */
    double w = cfg->warmup_steps > 0 ? (double)cfg->warmup_steps : 0;
    if (w > 0 && t < w) { /* linear warm-up: lr (t + 1) / w, then the schedule */
        return (float)(cfg->lr * (t + 1) / w);
    }
    switch (cfg->schedule) {
    case SM_SCHED_STEP: {
        int k = cfg->step_epochs > 0 ? epoch / cfg->step_epochs : 0;
        return cfg->lr * powf(cfg->step_gamma, (float)k);
    }
    case SM_SCHED_COSINE: { /* from lr at the end of warm-up to 0 after the last step */
        double span = total - w;
        return (float)(0.5 * cfg->lr * (1.0 + cos(3.141592653589793 * (t - w) / (span > 0 ? span : 1))));
    }
    default:
        return cfg->lr;
    }
}
