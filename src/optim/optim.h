/* optim.h - optimisers as one flat loop over a parameter block (llm.c style), and learning-rate
 * schedules. */
#ifndef SM_OPTIM_H
#define SM_OPTIM_H
#include "core/core.h"

typedef struct sm_optim_state {
    float *m, *v;   /* (n) first and second moments (SGD uses m as the momentum buffer) */
    int64_t n;
    int64_t t;      /* steps taken */
} sm_optim_state;

sm_status sm_optim_init(sm_optim_state *s, int64_t n);
void sm_optim_free(sm_optim_state *s);
/* One update of params (n) from grads (n) at learning rate lr. */
void sm_optim_step(const sm_train_config *cfg, sm_optim_state *s, float *params,
                   const float *grads, float lr);
/* The update itself, step t (1-based) of n values p from g with moments m, v (n each); the one
 * loop sm_optim_step and the parameter store's step (src/model/params.c) both run. */
void sm_optim_update(const sm_train_config *cfg, int64_t t, int64_t n, float *p, const float *g,
                     float *m, float *v, float lr);
/* Learning rate for 0-based epoch e and step within it (cosine is per step). */
float sm_schedule_lr(const sm_train_config *cfg, int epoch, int64_t step, int64_t steps_per_epoch);

#endif
