/* optim_cpu.c - the optimiser's update (the optim_update operation) as one flat loop over a
 * segment of the parameter store: SGD with momentum, Adam, AdamW, in PyTorch's formulation.
 * Each element depends only on its own values, so the result does not depend on threads: large
 * segments are split over them. */
#define PAR_PARAMS 32768
#include "backend/cpu/kernels.h"
#include <math.h>

void sm_k_optim_update(const sm_optim_hyper *h, int64_t t, int64_t n, float *p, const float *g, float *m,
                       float *v, float lr) {
    const float wd = h->weight_decay;
    if (h->kind == SM_OPT_SGD) {
        /* v = mu v + (g + wd p);  p -= lr v  (PyTorch SGD, dampening 0) */
        const float mu = h->momentum;
#pragma omp parallel for schedule(static) if (n >= PAR_PARAMS)
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i] + wd * p[i];
            m[i] = t == 1 ? gi : mu * m[i] + gi;
            p[i] -= lr * m[i];
        }
        return;
    }
    /* Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr mhat / (sqrt(vhat) + eps) */
    const float b1 = h->beta1, b2 = h->beta2, eps = h->eps;
    const float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    const float step = lr / c1, rc2 = 1.0f / sqrtf(c2);
    const int decoupled = h->kind == SM_OPT_ADAMW;
#pragma omp parallel for schedule(static) if (n >= PAR_PARAMS)
    for (int64_t i = 0; i < n; i++) {
        float gi = decoupled ? g[i] : g[i] + wd * p[i];
        if (decoupled) p[i] -= lr * wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) * rc2 + eps);
    }
}

