/* optim.c - SGD (momentum, L2 weight decay), Adam (L2 weight decay, PyTorch semantics) and AdamW
 * (decoupled weight decay), plus constant, step and cosine learning-rate schedules. */
#include "optim/optim.h"
#include "backend/backend.h"
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
    sm_optim_hyper h = {.kind = cfg->optimizer, .momentum = cfg->momentum, .beta1 = cfg->beta1,
                        .beta2 = cfg->beta2, .eps = cfg->eps, .weight_decay = cfg->weight_decay};
    (void)sm_be_optim_update(sm_backend_default(), &h, t, n, p, g, m, v, lr); /* cannot fail on the CPU */
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
