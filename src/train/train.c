/* train.c - the trainer and its step: plan an epoch (shuffled or P x K) -> gather and augment a
 * batch (shift and flip from the trainer's generator, then crop, colour jitter and erasing from
 * per-image ones) -> model forward -> loss and its gradient -> model backward -> gradient hook -> one
 * optimiser step over the model's parameter store (layers and the loss's head, which the loss
 * computes with while it is bound to the store).  Guards: non-finite loss, gradients or
 * parameters stop training with the step named, and the store is restored to its state after
 * the last good step.  sm_train is a driver over sm_trainer_step. */
#include "data/data.h"
#include "loss/loss.h"
#include "model/model.h"
#include "optim/optim.h"
#include "train/sampler.h"
#include <string.h>

void sm_train_config_default(sm_train_config *c) {
    memset(c, 0, sizeof *c);
    c->epochs = 5;
    c->batch_size = 128;
    c->optimizer = SM_OPT_ADAM;
    c->lr = 1e-3f;
    c->momentum = 0.9f;
    c->weight_decay = 0;
    c->beta1 = 0.9f; c->beta2 = 0.999f; c->eps = 1e-8f;
    c->schedule = SM_SCHED_CONSTANT;
    c->step_epochs = 0; c->step_gamma = 0.1f;
    c->per_class = 0;
    c->seed = 1;
}

static sm_status check_config(const sm_train_config *c) {
    if (c->epochs < 1 || c->epochs > 100000) return sm_fail(SM_ERR_INVALID, "epochs must be in 1..100000 (got %d)", c->epochs);
    if (c->batch_size < 1 || c->batch_size > 65536) return sm_fail(SM_ERR_INVALID, "batch size must be in 1..65536 (got %d)", c->batch_size);
    if (!(c->lr > 0 && c->lr < 1e3f)) return sm_fail(SM_ERR_INVALID, "learning rate must be positive and finite");
    if (!(c->weight_decay >= 0 && c->weight_decay < 1e3f)) return sm_fail(SM_ERR_INVALID, "weight decay must be >= 0");
    if (!(c->momentum >= 0 && c->momentum < 1)) return sm_fail(SM_ERR_INVALID, "momentum must be in [0, 1)");
    if (c->optimizer != SM_OPT_SGD && c->optimizer != SM_OPT_ADAM && c->optimizer != SM_OPT_ADAMW)
        return sm_fail(SM_ERR_INVALID, "unknown optimizer %d", (int)c->optimizer);
    if (c->schedule != SM_SCHED_CONSTANT && c->schedule != SM_SCHED_STEP && c->schedule != SM_SCHED_COSINE)
        return sm_fail(SM_ERR_INVALID, "unknown schedule %d", (int)c->schedule);
    if (c->schedule == SM_SCHED_STEP && (c->step_epochs < 1 || !(c->step_gamma > 0)))
        return sm_fail(SM_ERR_INVALID, "step schedule needs step_epochs >= 1 and step_gamma > 0");
    if (c->warmup_steps < 0) return sm_fail(SM_ERR_INVALID, "warm-up steps must be >= 0");
    if (c->per_class < 0 || c->per_class > c->batch_size)
        return sm_fail(SM_ERR_INVALID, "per-class count %d must be between 0 and the batch size", c->per_class);
    if (c->samples_per_epoch < 0) return sm_fail(SM_ERR_INVALID, "samples per epoch must be >= 0");
    if (!(c->ema_decay >= 0 && c->ema_decay < 1)) return sm_fail(SM_ERR_INVALID, "EMA decay must be in [0, 1)");
    if (c->aug_shift < 0 || c->aug_shift > 64) return sm_fail(SM_ERR_INVALID, "shift augmentation must be in 0..64");
    return sm_augment_check(&c->aug);
}

struct sm_trainer {
    sm_model *m;
    sm_loss *loss;
    const sm_dataset *ds;
    sm_train_config cfg;
    float *xb;            /* (batch, h, w, c) gathered inputs */
    int32_t *yb;          /* (batch) */
    float *gemb;          /* (batch, d) dL/demb */
    float *backup;        /* (store.n) the whole store after the last good step */
    float *ema;           /* (store.n) moving average of the store, when cfg.ema_decay > 0 */
    float *old_head;      /* (old_nhead) the model's head before training, put back unless
                           * sm_trainer_finish stores the trained one */
    int64_t old_nhead;
    float fill;           /* a blank pixel after normalisation, for shifted-in borders */
    float *aug_scratch;   /* (batch, h, w, c) for the random resized crop, else NULL */
    float mean[3], std[3]; /* the model's input normalisation (0, 1 if none), for colour jitter */
    sm_prefetch *pf;      /* a streamed dataset's batches, decoded ahead; else NULL */
    uint64_t pass_gen;    /* plans made so far: with the batch number, a prefetch key */
    sm_rng rng;
    sm_epoch_plan plan;
    /* where the loop stands */
    int epoch;            /* 0-based current epoch */
    int in_epoch;         /* an epoch has started and not ended */
    int64_t b, pb;        /* steps done this epoch; next batch of the current pass */
    int64_t seen, target, steps; /* samples done this epoch; its target (-1: one pass); steps */
    double sum_loss, t0, t_train;
    int64_t gstep;        /* optimiser steps so far */
    int done, failed, finished;
    char errmsg[SM_ERRMSG_MAX];
};

/* A refused call: the message on the trainer, which stays usable. */
static sm_status trainer_refuse(sm_trainer *t, sm_status st) {
    if (st && t) sm_errmsg_copy(t->errmsg);
    return st;
}

/* A failed step: the message, and the trainer takes no more steps. */
static sm_status trainer_fail(sm_trainer *t, sm_status st) {
    if (st && t) { sm_errmsg_copy(t->errmsg); t->failed = 1; }
    return st;
}

sm_status sm_trainer_create(sm_trainer **out, sm_model *m, sm_loss *loss, const sm_dataset *ds,
                            const sm_train_config *cfg) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_trainer_create: out is NULL");
    *out = NULL;
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_trainer_create: model is NULL");
    sm_status st;
    if (!loss || !ds || !cfg) return sm_fail(SM_ERR_INVALID, "sm_trainer_create: NULL loss, dataset or config");
    if ((st = check_config(cfg))) return st;
    if (ds->h != m->in_h || ds->w != m->in_w || ds->c != m->in_c)
        return sm_fail(SM_ERR_MISMATCH, "data of shape %dx%dx%d, model input %dx%dx%d", ds->h, ds->w, ds->c,
                       m->in_h, m->in_w, m->in_c);
    if (ds->n < 1) return sm_fail(SM_ERR_INVALID, "the training set is empty");
    if (loss->dim != m->emb_dim)
        return sm_fail(SM_ERR_MISMATCH, "loss built for dimension %d, model embeds in %d", loss->dim, m->emb_dim);
    if (loss->classes > 0)
        for (int64_t i = 0; i < ds->n; i++)
            if (ds->y[i] >= loss->classes)
                return sm_fail(SM_ERR_RANGE, "label %d of sample %lld is out of the head's range 0..%d", ds->y[i],
                               (long long)i, loss->classes - 1);
    sm_trainer *t = sm_calloc(1, sizeof *t);
    if (!t) return SM_ERR_NOMEM;
    t->m = m; t->loss = loss; t->ds = ds; t->cfg = *cfg;
    const int B = cfg->batch_size, d = m->emb_dim;
    const int64_t in = (int64_t)ds->h * ds->w * ds->c;
    t->xb = sm_alloc((size_t)B, (size_t)in * sizeof(float));
    t->yb = sm_alloc((size_t)B, sizeof(int32_t));
    t->gemb = sm_alloc((size_t)B, (size_t)d * sizeof(float));
    t->old_nhead = m->nhead;
    t->old_head = sm_alloc((size_t)(m->nhead + 1), sizeof(float));
    if (!t->xb || !t->yb || !t->gemb || !t->old_head) { st = SM_ERR_NOMEM; goto fail; }
    if (cfg->aug.crop_scale_max > 0 && !(t->aug_scratch = sm_alloc((size_t)B, (size_t)in * sizeof(float)))) {
        st = SM_ERR_NOMEM;
        goto fail;
    }
    for (int k = 0; k < 3; k++) {
        int on = m->norm.kind == SM_NORM_MEAN_STD && k < m->norm.channels;
        t->mean[k] = on ? m->norm.mean[k] : 0;
        t->std[k] = on ? m->norm.std[k] : 1;
    }
    if (m->nhead) memcpy(t->old_head, m->head, sizeof(float) * (size_t)m->nhead);
    /* the loss's parameters become the store's head segment, and the loss computes in it */
    if ((st = sm_model_resize_head(m, loss->nparams))) goto fail;
    sm_loss_bind(loss, m->head, sm_params_grad(&m->store, SM_SEG_HEAD));
    t->backup = sm_alloc((size_t)(m->store.n + 1), sizeof(float));
    if (!t->backup) { st = SM_ERR_NOMEM; goto fail; }
    if (cfg->ema_decay > 0) { /* the average starts as the current values */
        t->ema = sm_alloc((size_t)(m->store.n + 1), sizeof(float));
        if (!t->ema) { st = SM_ERR_NOMEM; goto fail; }
        memcpy(t->ema, m->store.val, sizeof(float) * (size_t)m->store.n);
    }
    if ((st = sm_params_reset_moments(&m->store))) goto fail;
    if ((st = sm_model_reserve(m, B))) goto fail;
    if (ds->x) {
        t->fill = ds->x[0];
        for (int64_t i = 0; i < (ds->n < 64 ? ds->n : 64) * in; i++) if (ds->x[i] < t->fill) t->fill = ds->x[i];
    } else { /* streamed: the same blank value, from the first images decoded now */
        for (int64_t j = 0; j < (ds->n < 64 ? ds->n : 64) && !st; j++) {
            if ((st = sm_dataset_decode((sm_dataset *)ds, j, t->xb))) break;
            for (int64_t i = 0; i < in; i++) if ((j == 0 && i == 0) || t->xb[i] < t->fill) t->fill = t->xb[i];
        }
        if (st || (st = sm_prefetch_create(&t->pf, (sm_dataset *)ds, B, 3))) goto fail;
    }
    sm_rng_seed(&t->rng, cfg->seed);
    t->t_train = sm_now();
    *out = t;
    return SM_OK;
fail:
    sm_trainer_free(t);
    return st;
}

/* The head a finished training leaves in the model: the loss's parameters if it gives class
 * logits, else none. */
sm_status sm_trainer_finish(sm_trainer *t) {
    if (!t) return sm_fail(SM_ERR_INVALID, "sm_trainer_finish: trainer is NULL");
    if (t->failed) return trainer_refuse(t, sm_fail(SM_ERR_INVALID, "sm_trainer_finish: an earlier step failed"));
    if (t->finished) return trainer_refuse(t, sm_fail(SM_ERR_INVALID, "sm_trainer_finish: already finished"));
    sm_model *m = t->m;
    sm_loss *loss = t->loss;
    if (t->ema) sm_params_ema_swap(&m->store, t->ema); /* the model keeps the average */
    sm_status st;
    sm_loss_unbind(loss); /* the loss keeps its trained parameters too */
    if (loss->classes > 0 && loss->kind->logits)
        st = sm_model_set_head(m, loss->kind->name, loss->options, loss->params, loss->nparams, loss->classes);
    else
        st = sm_model_set_head(m, loss->kind->name, loss->options, NULL, 0, 0);
    if (st) return trainer_fail(t, st);
    t->finished = t->done = 1;
    return SM_OK;
}

void sm_trainer_free(sm_trainer *t) {
    if (!t) return;
    if (t->loss) sm_loss_unbind(t->loss);
    if (t->m) sm_params_drop_moments(&t->m->store); /* as the optimiser state sm_train used to free */
    if (!t->finished && t->m && t->old_head) { /* put the model's previous head back */
        if (t->m->nhead != t->old_nhead) (void)sm_model_resize_head(t->m, t->old_nhead);
        if (t->m->nhead == t->old_nhead && t->old_nhead)
            memcpy(t->m->head, t->old_head, sizeof(float) * (size_t)t->old_nhead);
    }
    sm_prefetch_free(t->pf); /* first: its thread reads the dataset */
    sm_plan_free(&t->plan);
    sm_free(t->aug_scratch); sm_free(t->xb); sm_free(t->yb); sm_free(t->gemb); sm_free(t->backup); sm_free(t->ema); sm_free(t->old_head);
    sm_free(t);
}

const char *sm_trainer_errmsg(const sm_trainer *t) { return t ? t->errmsg : ""; }

/* Start epoch t->epoch: its target and a fresh pass. */
static void start_epoch(sm_trainer *t) {
    const sm_train_config *cfg = &t->cfg;
    const int B = cfg->batch_size;
    t->t0 = sm_now();
    t->sum_loss = 0;
    t->seen = 0; t->pb = 0; t->b = 0;
    /* one pass, or samples_per_epoch samples drawn from successive passes */
    t->target = cfg->samples_per_epoch > 0 ? cfg->samples_per_epoch : -1;
    if (cfg->per_class > 0 && cfg->pk_random) { /* whole random batches, one plan an epoch */
        t->target = (t->target > 0 ? t->target : t->ds->n) / B * B;
        if (t->target < B) t->target = B;
    }
    t->steps = 0;
    t->plan.nbatches = 0; /* every epoch starts with a new pass */
    t->in_epoch = 1;
}

sm_status sm_trainer_step(sm_trainer *t, sm_train_step_info *info) {
    if (!t) return sm_fail(SM_ERR_INVALID, "sm_trainer_step: trainer is NULL");
    if (t->failed) return trainer_refuse(t, sm_fail(SM_ERR_INVALID, "sm_trainer_step: an earlier step failed"));
    if (t->done) return trainer_refuse(t, sm_fail(SM_ERR_INVALID, "sm_trainer_step: training is done (%d epochs)", t->cfg.epochs));
    sm_model *m = t->m;
    sm_loss *loss = t->loss;
    const sm_dataset *ds = t->ds;
    const sm_train_config *cfg = &t->cfg;
    sm_params *P = &m->store;
    const int B = cfg->batch_size, d = m->emb_dim;
    const int64_t in = (int64_t)ds->h * ds->w * ds->c;
    sm_status st;
    if (!t->in_epoch) start_epoch(t);
    const int epoch = t->epoch;
    const int64_t b = t->b;
    if (t->pb >= t->plan.nbatches) { /* start a new pass */
        sm_plan_free(&t->plan);
        st = cfg->per_class <= 0 ? sm_plan_shuffled(&t->plan, ds->n, B, &t->rng)
             : cfg->pk_random    ? sm_plan_pk_random(&t->plan, ds->y, ds->n, B, cfg->per_class, t->target, &t->rng)
                                 : sm_plan_pk(&t->plan, ds->y, ds->n, B, cfg->per_class, &t->rng);
        if (st) return trainer_fail(t, st);
        t->pb = 0;
        t->pass_gen++;
        if (b == 0) t->steps = t->target < 0 ? t->plan.nbatches : (t->target + B - 1) / B;
    }
    int n = (int)(t->plan.starts[t->pb + 1] - t->plan.starts[t->pb]);
    const int64_t *idx = t->plan.order + t->plan.starts[t->pb];
    if (t->target > 0 && n > t->target - t->seen) n = (int)(t->target - t->seen);
    if (t->pf) { /* this batch, and the next two of the pass to decode while this one computes */
        for (int64_t q = t->pb; q < t->pb + 3 && q < t->plan.nbatches; q++)
            sm_prefetch_submit(t->pf, t->pass_gen << 32 | (uint64_t)q, t->plan.order + t->plan.starts[q],
                               (int)(t->plan.starts[q + 1] - t->plan.starts[q]));
        if ((st = sm_prefetch_take(t->pf, t->pass_gen << 32 | (uint64_t)t->pb, idx, n, t->xb))) return trainer_fail(t, st);
    }
    t->pb++;
    for (int i = 0; i < n; i++) {
        if (!t->pf) memcpy(t->xb + i * in, ds->x + idx[i] * in, sizeof(float) * (size_t)in);
        t->yb[i] = ds->y[idx[i]];
    }
    if (cfg->aug_shift || cfg->aug_flip)
        sm_augment_batch(t->xb, n, ds->h, ds->w, ds->c, cfg->aug_shift, cfg->aug_flip, t->fill, &t->rng);
    if (sm_augment_active(&cfg->aug)) /* per-image generators: seed, global step, place in batch */
        sm_augment_batch_ex(t->xb, n, ds->h, ds->w, ds->c, &cfg->aug, t->mean, t->std, cfg->seed, t->gstep, t->aug_scratch);
    float lr = sm_schedule_lr(cfg, epoch, b, t->steps);
    /* keep the last good state, so that a blow-up can be undone */
    memcpy(t->backup, P->val, sizeof(float) * (size_t)P->n);

    const float *emb = sm_model_forward(m, t->xb, n, 1);
    float value = 0;
    sm_params_zero_grad(P);
    st = sm_loss_compute(loss, emb, t->yb, n, d, &value, t->gemb);
    int bad = st == SM_ERR_NUMERIC || (st == SM_OK && (!sm_isfinite_f(value) || !sm_all_finite(t->gemb, (int64_t)n * d)));
    if (!bad && st) return trainer_fail(t, st);
    if (!bad) {
        sm_model_backward(m, t->xb, t->gemb, n);
        /* the hook point: every gradient of the step in one block, before the optimiser */
        if (cfg->grad_hook) {
            int rc = cfg->grad_hook(P->grad, P->ntrain, cfg->user);
            if (rc) {
                memcpy(P->val, t->backup, sizeof(float) * (size_t)P->n);
                return trainer_fail(t, sm_fail(SM_ERR_INVALID, "the gradient hook returned %d at epoch %d step %lld",
                                               rc, epoch + 1, (long long)b + 1));
            }
        }
        bad = !sm_all_finite(P->grad, P->ntrain);
    }
    if (!bad) {
        sm_params_step(P, cfg, lr);
        bad = !sm_all_finite(P->val, P->n);
    }
    if (bad) {
        memcpy(P->val, t->backup, sizeof(float) * (size_t)P->n);
        return trainer_fail(t, sm_fail(SM_ERR_NUMERIC,
                                       "training diverged at epoch %d step %lld (lr %g): non-finite loss, gradient or "
                                       "parameter; the model is kept as it was after the previous step",
                                       epoch + 1, (long long)b + 1, (double)lr));
    }
    if (t->ema) sm_params_ema_update(P, t->ema, cfg->ema_decay, t->gstep);
    t->gstep++;
    t->sum_loss += value * n;
    t->seen += n;
    t->b++;
    int last = t->target < 0 ? t->pb >= t->plan.nbatches : t->seen >= t->target;
    int stop = 0;
    if (cfg->progress) {
        double now = sm_now(), el = now - t->t0, total = now - t->t_train;
        double done = (double)epoch * (double)t->steps + (double)(b + 1), all = (double)cfg->epochs * (double)t->steps;
        sm_train_progress pr = {epoch + 1, cfg->epochs, b + 1, t->steps, t->sum_loss / (double)t->seen,
                                el > 0 ? (double)t->seen / el : 0, el, lr, last, total,
                                all > done ? total * (all - done) / done : 0};
        /* at an epoch's end the callback sees the averaged model when there is one */
        if (last && t->ema) sm_params_ema_swap(P, t->ema);
        stop = cfg->progress(&pr, cfg->user);
        if (last && t->ema) sm_params_ema_swap(P, t->ema);
    }
    if (last) { t->in_epoch = 0; t->epoch++; }
    if (stop || t->epoch >= cfg->epochs) t->done = 1;
    if (info) {
        sm_train_step_info r = {epoch + 1, cfg->epochs, b + 1, t->steps, t->gstep, n, value,
                                t->sum_loss / (double)t->seen, lr, last, t->done, stop};
        *info = r;
    }
    return SM_OK;
}

sm_status sm_train(sm_model *m, sm_loss *loss, const sm_dataset *ds, const sm_train_config *cfg) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_train: model is NULL");
    if (!loss || !ds || !cfg) {
        sm_status st = sm_fail(SM_ERR_INVALID, "sm_train: NULL loss, dataset or config");
        sm_errmsg_copy(m->errmsg);
        return st;
    }
    sm_trainer *t;
    sm_status st = sm_trainer_create(&t, m, loss, ds, cfg);
    sm_train_step_info info = {0};
    while (!st && !info.done) st = sm_trainer_step(t, &info);
    if (!st) st = sm_trainer_finish(t);
    sm_trainer_free(t);
    if (st) sm_errmsg_copy(m->errmsg);
    return st;
}
