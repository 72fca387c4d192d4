/* test_optim.c - the optimisers and learning-rate schedules of src/optim against PyTorch's
 * update formulas, written out below in double precision:
 *   SGD (momentum mu, dampening 0, weight decay wd):   d = g + wd p
 *       buf = d (first step), buf = mu buf + d (later);  p -= lr buf
 *   Adam (L2 weight decay, torch.optim.Adam):          g' = g + wd p
 *       m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
 *       p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   AdamW (decoupled, torch.optim.AdamW):              p -= lr wd p, then Adam with g' = g
 * A few steps on a fixed vector with varying gradients and learning rates are compared with the
 * reference (relative 1e-5), plus values computed by hand for one scalar; the step and cosine
 * schedules, with and without a linear warm-up, are checked at chosen points. */
#include "core/core.h"
#include "optim/optim.h"
#include "simile.h"
#include "testing.h"
#include <string.h>

#define N 7
#define STEPS 6
#define T_PI 3.14159265358979323846

typedef struct ref_state { double m[N], v[N]; int t; } ref_state;

static void ref_step(const sm_train_config *c, ref_state *s, double *p, const double *g, double lr) {
    s->t++;
    for (int i = 0; i < N; i++) {
        if (c->optimizer == SM_OPT_SGD) {
            double d = g[i] + (double)c->weight_decay * p[i];
            s->m[i] = s->t == 1 ? d : (double)c->momentum * s->m[i] + d;
            p[i] -= lr * s->m[i];
            continue;
        }
        double gi = g[i];
        if (c->optimizer == SM_OPT_ADAMW) p[i] *= 1.0 - lr * (double)c->weight_decay;
        else gi += (double)c->weight_decay * p[i];
        double b1 = c->beta1, b2 = c->beta2;
        s->m[i] = b1 * s->m[i] + (1 - b1) * gi;
        s->v[i] = b2 * s->v[i] + (1 - b2) * gi * gi;
        double bc1 = 1 - pow(b1, s->t), bc2 = 1 - pow(b2, s->t);
        p[i] -= (lr / bc1) * s->m[i] / (sqrt(s->v[i]) / sqrt(bc2) + (double)c->eps);
    }
}

/* Run STEPS steps of the library and the reference from the same start; return the worst
 * relative difference of the parameters after each step. */
static double compare(const sm_train_config *c, const char *name) {
    float p[N], g[N];
    double pd[N], gd[N];
    ref_state rs;
    memset(&rs, 0, sizeof rs);
    sm_optim_state s;
    CHECK_OK(sm_optim_init(&s, N));
    for (int i = 0; i < N; i++) { p[i] = (float)(0.3 * i - 1.0); pd[i] = p[i]; }
    double worst = 0, moved = 0;
    for (int t = 0; t < STEPS; t++) {
        /* gradients of mixed sign and scale, varying per step; learning rate varying too */
        for (int i = 0; i < N; i++) { g[i] = (float)(sin(1.0 + i * 0.7 + t * 1.3) * (i % 3 == 0 ? 0.01 : 1.0)); gd[i] = g[i]; }
        float lr = 0.05f * (1.0f + 0.25f * (float)t);
        sm_optim_step(c, &s, p, g, lr);
        ref_step(c, &rs, pd, gd, lr);
        for (int i = 0; i < N; i++) {
            worst = fmax(worst, fabs(p[i] - pd[i]) / fmax(fabs(pd[i]), 1e-3));
            moved = fmax(moved, fabs(pd[i] - (0.3 * i - 1.0)));
        }
    }
    CHECK_MSG(s.t == STEPS, "%s: step count %lld", name, (long long)s.t);
    CHECK_MSG(moved > 0.05, "%s: the parameters barely moved (%.3g): vacuous comparison", name, moved);
    sm_optim_free(&s);
    return worst;
}

static void test_optimizers(void) {
    sm_train_config c;
    sm_train_config_default(&c);
    /* SGD, momentum and weight decay */
    c.optimizer = SM_OPT_SGD; c.momentum = 0.9f; c.weight_decay = 0.05f;
    double e = compare(&c, "sgd");
    CHECK_MSG(e < 1e-5, "sgd momentum+wd: rel err %.3g", e);
    c.momentum = 0; c.weight_decay = 0;
    e = compare(&c, "sgd plain");
    CHECK_MSG(e < 1e-5, "sgd plain: rel err %.3g", e);
    /* Adam with and without L2 weight decay */
    c.optimizer = SM_OPT_ADAM; c.weight_decay = 0; c.beta1 = 0.9f; c.beta2 = 0.999f; c.eps = 1e-8f;
    e = compare(&c, "adam");
    CHECK_MSG(e < 1e-5, "adam: rel err %.3g", e);
    c.weight_decay = 0.1f; c.beta1 = 0.8f; c.beta2 = 0.99f; c.eps = 1e-6f;
    e = compare(&c, "adam wd");
    CHECK_MSG(e < 1e-5, "adam wd: rel err %.3g", e);
    /* AdamW (decoupled) */
    c.optimizer = SM_OPT_ADAMW; c.weight_decay = 0.1f; c.beta1 = 0.9f; c.beta2 = 0.999f; c.eps = 1e-8f;
    e = compare(&c, "adamw");
    CHECK_MSG(e < 1e-5, "adamw: rel err %.3g", e);

    /* hand-computed, one scalar p0 = 1, constant g = 0.5, lr = 0.1 */
    sm_optim_state s;
    float p = 1.0f, g = 0.5f;
    /* SGD mu 0.9, wd 0.1:  step 1: d = 0.5 + 0.1*1 = 0.6, buf = 0.6, p = 1 - 0.06 = 0.94
     *                      step 2: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134,
     *                              p = 0.94 - 0.1134 = 0.8266 */
    sm_train_config_default(&c);
    c.optimizer = SM_OPT_SGD; c.momentum = 0.9f; c.weight_decay = 0.1f;
    CHECK_OK(sm_optim_init(&s, 1));
    sm_optim_step(&c, &s, &p, &g, 0.1f);
    CHECK_NEAR(p, 0.94, 1e-6);
    sm_optim_step(&c, &s, &p, &g, 0.1f);
    CHECK_NEAR(p, 0.8266, 1e-6);
    sm_optim_free(&s);
    /* Adam, wd 0: step 1 has mhat = g, vhat = g^2, so p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.9;
     * with a constant gradient every step moves by lr: step 2 gives 0.8 */
    p = 1.0f;
    sm_train_config_default(&c);
    CHECK_OK(sm_optim_init(&s, 1));
    sm_optim_step(&c, &s, &p, &g, 0.1f);
    CHECK_NEAR(p, 0.9, 1e-6);
    sm_optim_step(&c, &s, &p, &g, 0.1f);
    CHECK_NEAR(p, 0.8, 1e-6);
    sm_optim_free(&s);
    /* AdamW wd 0.5, step 1: p = 1 * (1 - 0.1*0.5) = 0.95, then - 0.1 * sign(g) = 0.85 */
    p = 1.0f;
    c.optimizer = SM_OPT_ADAMW; c.weight_decay = 0.5f;
    CHECK_OK(sm_optim_init(&s, 1));
    sm_optim_step(&c, &s, &p, &g, 0.1f);
    CHECK_NEAR(p, 0.85, 1e-6);
    sm_optim_free(&s);
    /* Adam with L2 wd 0.5, step 1: g' = 0.5 + 0.5 = 1, p = 1 - 0.1 * 1 / 1 = 0.9 (the decay is
     * normalised away on the first step, unlike AdamW) */
    p = 1.0f;
    c.optimizer = SM_OPT_ADAM;
    CHECK_OK(sm_optim_init(&s, 1));
    sm_optim_step(&c, &s, &p, &g, 0.1f);
    CHECK_NEAR(p, 0.9, 1e-6);
    sm_optim_free(&s);
    /* a zero-length block is allowed */
    CHECK_OK(sm_optim_init(&s, 0));
    sm_optim_step(&c, &s, NULL, NULL, 0.1f);
    CHECK(s.t == 1);
    sm_optim_free(&s);
}

static void test_schedules(void) {
    sm_train_config c;
    sm_train_config_default(&c);
    c.lr = 0.1f;
    /* constant */
    CHECK_NEAR(sm_schedule_lr(&c, 0, 0, 10), 0.1, 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 3, 7, 10), 0.1, 1e-7);
    /* step: x0.5 every 2 epochs -> epochs 0,1: 0.1; 2,3: 0.05; 4,5: 0.025; 6: 0.0125 */
    c.schedule = SM_SCHED_STEP; c.step_epochs = 2; c.step_gamma = 0.5f;
    CHECK_NEAR(sm_schedule_lr(&c, 0, 0, 10), 0.1, 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 1, 9, 10), 0.1, 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 2, 0, 10), 0.05, 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 3, 5, 10), 0.05, 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 4, 0, 10), 0.025, 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 6, 0, 10), 0.0125, 1e-7);
    c.step_epochs = 3; c.step_gamma = 0.1f;
    CHECK_NEAR(sm_schedule_lr(&c, 2, 0, 10), 0.1, 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 3, 0, 10), 0.01, 1e-8);
    CHECK_NEAR(sm_schedule_lr(&c, 7, 0, 10), 0.001, 1e-9);
    /* cosine over epochs * steps_per_epoch = 4 * 10 = 40 steps, per step:
     * lr(t) = 0.5 lr (1 + cos(pi t / 40)) */
    c.schedule = SM_SCHED_COSINE; c.epochs = 4;
    CHECK_NEAR(sm_schedule_lr(&c, 0, 0, 10), 0.1, 1e-7);                        /* t = 0  */
    CHECK_NEAR(sm_schedule_lr(&c, 1, 0, 10), 0.05 * (1 + cos(T_PI / 4)), 1e-7); /* t = 10: 0.0853553 */
    CHECK_NEAR(sm_schedule_lr(&c, 2, 0, 10), 0.05, 1e-7);                       /* t = 20: half way */
    CHECK_NEAR(sm_schedule_lr(&c, 2, 5, 10), 0.05 * (1 + cos(T_PI * 25 / 40)), 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 3, 0, 10), 0.05 * (1 - cos(T_PI / 4)), 1e-7); /* t = 30: 0.0146447 */
    CHECK_NEAR(sm_schedule_lr(&c, 3, 9, 10), 0.05 * (1 + cos(T_PI * 39 / 40)), 1e-8);
    /* monotone decreasing over the run */
    float prev = 1;
    int mono = 1;
    for (int e = 0; e < 4; e++)
        for (int s = 0; s < 10; s++) {
            float lr = sm_schedule_lr(&c, e, s, 10);
            mono &= lr < prev && lr > 0;
            prev = lr;
        }
    CHECK(mono);

    /* linear warm-up over the first 5 of 40 steps: lr (t + 1) / 5, then the cosine over the
     * 35 steps left, lr(t) = 0.5 lr (1 + cos(pi (t - 5) / 35)) */
    c.warmup_steps = 5;
    CHECK_NEAR(sm_schedule_lr(&c, 0, 0, 10), 0.02, 1e-8);
    CHECK_NEAR(sm_schedule_lr(&c, 0, 2, 10), 0.06, 1e-8);
    CHECK_NEAR(sm_schedule_lr(&c, 0, 4, 10), 0.1, 1e-7);  /* last warm-up step reaches lr */
    CHECK_NEAR(sm_schedule_lr(&c, 0, 5, 10), 0.1, 1e-7);  /* cosine starts at lr */
    CHECK_NEAR(sm_schedule_lr(&c, 2, 2, 10), 0.05 * (1 + cos(T_PI * 17 / 35)), 1e-7);
    CHECK_NEAR(sm_schedule_lr(&c, 3, 9, 10), 0.05 * (1 + cos(T_PI * 34 / 35)), 1e-8);
    /* warm-up multiplies the constant and step schedules' lr, counted in global steps */
    c.schedule = SM_SCHED_CONSTANT; c.warmup_steps = 20;
    CHECK_NEAR(sm_schedule_lr(&c, 1, 0, 10), 0.1 * 11 / 20, 1e-8);
    CHECK_NEAR(sm_schedule_lr(&c, 2, 0, 10), 0.1, 1e-7);
    c.schedule = SM_SCHED_STEP; c.step_epochs = 1; c.step_gamma = 0.5f; c.warmup_steps = 3;
    CHECK_NEAR(sm_schedule_lr(&c, 0, 1, 10), 0.1 * 2 / 3, 1e-8);
    CHECK_NEAR(sm_schedule_lr(&c, 1, 0, 10), 0.05, 1e-8);
    /* a warm-up longer than the run never divides by zero or goes past lr */
    c.schedule = SM_SCHED_COSINE; c.warmup_steps = 100;
    CHECK_NEAR(sm_schedule_lr(&c, 3, 9, 10), 0.1 * 40 / 100, 1e-8);
    sm_train_config d;
    sm_train_config_default(&d);
    CHECK(d.warmup_steps == 0); /* off by default (test_train: a negative one is refused) */
}

int main(void) {
    test_optimizers();
    test_schedules();
    TEST_MAIN_END();
}
