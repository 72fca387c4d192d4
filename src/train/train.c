/* train.c - the training loop: plan an epoch (shuffled or P x K) -> gather and augment a batch
 * -> model forward -> loss and its gradient -> model backward -> optimiser step over the model's
 * parameter block and the loss's own parameters.  Guards: non-finite loss, gradients or
 * parameters stop training with the step named, and the model is restored to its state after
 * the last good step. */
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
    return SM_OK;
}

typedef struct trainer {
    float *xb;            /* (batch, h, w, c) gathered inputs */
    int32_t *yb;          /* (batch) */
    float *gemb;          /* (batch, d) dL/demb */
    float *backup;        /* (nparams + nloss) parameters after the last good step */
    float *ema;           /* (nparams + nloss + nbuffers) moving average of parameters and bn
                           * statistics, when cfg->ema_decay > 0 */
    float *bbackup;       /* (nbuffers) bn running stats after the last good step */
    sm_optim_state om, ol;
} trainer;

static void trainer_free(trainer *t) {
    sm_free(t->xb); sm_free(t->yb); sm_free(t->gemb); sm_free(t->backup); sm_free(t->bbackup); sm_free(t->ema);
    sm_optim_free(&t->om); sm_optim_free(&t->ol);
}

/* The blocks an EMA covers, in the order t->ema holds them: model parameters, loss parameters,
 * bn statistics. */
static void ema_blocks(const sm_model *m, const sm_loss *loss, float *blocks[3], int64_t sizes[3]) {
    blocks[0] = m->params;    sizes[0] = m->nparams;
    blocks[1] = loss->params; sizes[1] = loss->nparams;
    blocks[2] = m->buffers;   sizes[2] = m->nbuffers;
}

/* The average starts as the current values. */
static void ema_init(trainer *t, const sm_model *m, const sm_loss *loss) {
    float *blocks[3];
    int64_t sizes[3], off = 0;
    ema_blocks(m, loss, blocks, sizes);
    for (int b = 0; b < 3; b++) {
        if (sizes[b]) memcpy(t->ema + off, blocks[b], sizeof(float) * (size_t)sizes[b]);
        off += sizes[b];
    }
}

static void ema_swap(trainer *t, sm_model *m, sm_loss *loss) {
    float *blocks[3];
    int64_t sizes[3], off = 0;
    ema_blocks(m, loss, blocks, sizes);
    for (int b = 0; b < 3; b++) {
        for (int64_t i = 0; i < sizes[b]; i++) {
            float v = blocks[b][i];
            blocks[b][i] = t->ema[off + i];
            t->ema[off + i] = v;
        }
        off += sizes[b];
    }
}

/* ema = d ema + (1 - d) current, with d = min(decay, (1 + step) / (10 + step)) (TensorFlow's
 * ExponentialMovingAverage with num_updates), so early steps are not dominated by the
 * initialisation. */
static void ema_update(trainer *t, const sm_model *m, const sm_loss *loss, float decay, int64_t step) {
    float *blocks[3];
    int64_t sizes[3], off = 0;
    ema_blocks(m, loss, blocks, sizes);
    float d = (1.0f + (float)step) / (10.0f + (float)step);
    if (d > decay) d = decay;
    for (int b = 0; b < 3; b++) {
        for (int64_t i = 0; i < sizes[b]; i++) t->ema[off + i] = d * t->ema[off + i] + (1 - d) * blocks[b][i];
        off += sizes[b];
    }
}

sm_status sm_train(sm_model *m, sm_loss *loss, const sm_dataset *ds, const sm_train_config *cfg) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_train: model is NULL");
    sm_status st;
#define FAIL(s) do { st = (s); goto done; } while (0)
    trainer t;
    memset(&t, 0, sizeof t);
    sm_epoch_plan plan;
    memset(&plan, 0, sizeof plan);
    if (!loss || !ds || !cfg) FAIL(sm_fail(SM_ERR_INVALID, "sm_train: NULL loss, dataset or config"));
    if ((st = check_config(cfg))) FAIL(st);
    if (ds->h != m->in_h || ds->w != m->in_w || ds->c != m->in_c)
        FAIL(sm_fail(SM_ERR_MISMATCH, "data of shape %dx%dx%d, model input %dx%dx%d", ds->h, ds->w, ds->c,
                     m->in_h, m->in_w, m->in_c));
    if (ds->n < 1) FAIL(sm_fail(SM_ERR_INVALID, "the training set is empty"));
    if (loss->dim != m->emb_dim)
        FAIL(sm_fail(SM_ERR_MISMATCH, "loss built for dimension %d, model embeds in %d", loss->dim, m->emb_dim));
    if (loss->classes > 0)
        for (int64_t i = 0; i < ds->n; i++)
            if (ds->y[i] >= loss->classes)
                FAIL(sm_fail(SM_ERR_RANGE, "label %d of sample %lld is out of the head's range 0..%d", ds->y[i],
                             (long long)i, loss->classes - 1));
    const int B = cfg->batch_size, d = m->emb_dim;
    const int64_t in = (int64_t)ds->h * ds->w * ds->c;
    t.xb = sm_alloc((size_t)B, (size_t)in * sizeof(float));
    t.yb = sm_alloc((size_t)B, sizeof(int32_t));
    t.gemb = sm_alloc((size_t)B, (size_t)d * sizeof(float));
    t.backup = sm_alloc((size_t)(m->nparams + loss->nparams + 1), sizeof(float));
    t.bbackup = sm_alloc((size_t)(m->nbuffers + 1), sizeof(float));
    if (!t.xb || !t.yb || !t.gemb || !t.backup || !t.bbackup) FAIL(SM_ERR_NOMEM);
    int64_t gstep = 0; /* optimiser steps so far */
    if (cfg->ema_decay > 0) {
        t.ema = sm_alloc((size_t)(m->nparams + loss->nparams + m->nbuffers + 1), sizeof(float));
        if (!t.ema) FAIL(SM_ERR_NOMEM);
        ema_init(&t, m, loss);
    }
    if ((st = sm_optim_init(&t.om, m->nparams)) || (st = sm_optim_init(&t.ol, loss->nparams))) FAIL(st);
    if ((st = sm_model_reserve(m, B))) FAIL(st);
    /* the value of a blank pixel after normalisation, to fill shifted-in borders */
    float fill = ds->x[0];
    for (int64_t i = 0; i < (ds->n < 64 ? ds->n : 64) * in; i++) if (ds->x[i] < fill) fill = ds->x[i];

    sm_rng rng;
    sm_rng_seed(&rng, cfg->seed);
    const double t_train = sm_now();
    for (int epoch = 0; epoch < cfg->epochs; epoch++) {
        double t0 = sm_now(), sum_loss = 0;
        int64_t seen = 0, pb = 0; /* samples done this epoch; next batch of the current pass */
        /* one pass, or samples_per_epoch samples drawn from successive passes */
        int64_t target = cfg->samples_per_epoch > 0 ? cfg->samples_per_epoch : -1;
        if (cfg->per_class > 0 && cfg->pk_random) { /* whole random batches, one plan an epoch */
            target = (target > 0 ? target : ds->n) / B * B;
            if (target < B) target = B;
        }
        int64_t steps = 0;
        plan.nbatches = 0; /* every epoch starts with a new pass */
        for (int64_t b = 0;; b++) {
            if (target < 0 ? b > 0 && pb >= plan.nbatches : seen >= target) break;
            if (pb >= plan.nbatches) { /* start a new pass */
                sm_plan_free(&plan);
                st = cfg->per_class <= 0 ? sm_plan_shuffled(&plan, ds->n, B, &rng)
                     : cfg->pk_random    ? sm_plan_pk_random(&plan, ds->y, ds->n, B, cfg->per_class, target, &rng)
                                         : sm_plan_pk(&plan, ds->y, ds->n, B, cfg->per_class, &rng);
                if (st) FAIL(st);
                pb = 0;
                if (b == 0) steps = target < 0 ? plan.nbatches : (target + B - 1) / B;
            }
            int n = (int)(plan.starts[pb + 1] - plan.starts[pb]);
            const int64_t *idx = plan.order + plan.starts[pb];
            if (target > 0 && n > target - seen) n = (int)(target - seen);
            pb++;
            for (int i = 0; i < n; i++) {
                memcpy(t.xb + i * in, ds->x + idx[i] * in, sizeof(float) * (size_t)in);
                t.yb[i] = ds->y[idx[i]];
            }
            if (cfg->aug_shift || cfg->aug_flip)
                sm_augment_batch(t.xb, n, ds->h, ds->w, ds->c, cfg->aug_shift, cfg->aug_flip, fill, &rng);
            float lr = sm_schedule_lr(cfg, epoch, b, steps);
            /* keep the last good state, so that a blow-up can be undone */
            memcpy(t.backup, m->params, sizeof(float) * (size_t)m->nparams);
            if (loss->nparams) memcpy(t.backup + m->nparams, loss->params, sizeof(float) * (size_t)loss->nparams);
            memcpy(t.bbackup, m->buffers, sizeof(float) * (size_t)m->nbuffers);

            const float *emb = sm_model_forward(m, t.xb, n, 1);
            float value = 0;
            if (loss->nparams) memset(loss->grads, 0, sizeof(float) * (size_t)loss->nparams);
            st = sm_loss_compute(loss, emb, t.yb, n, d, &value, t.gemb);
            int bad = st == SM_ERR_NUMERIC || (st == SM_OK && (!sm_isfinite_f(value) || !sm_all_finite(t.gemb, (int64_t)n * d)));
            if (!bad && st) FAIL(st);
            if (!bad) {
                sm_model_backward(m, t.xb, t.gemb, n);
                bad = !sm_all_finite(m->grads, m->nparams) || !sm_all_finite(loss->grads, loss->nparams);
            }
            if (!bad) {
                sm_optim_step(cfg, &t.om, m->params, m->grads, lr);
                if (loss->nparams) sm_optim_step(cfg, &t.ol, loss->params, loss->grads, lr);
                bad = !sm_all_finite(m->params, m->nparams) || !sm_all_finite(loss->params, loss->nparams) ||
                      !sm_all_finite(m->buffers, m->nbuffers);
            }
            if (bad) {
                memcpy(m->params, t.backup, sizeof(float) * (size_t)m->nparams);
                if (loss->nparams) memcpy(loss->params, t.backup + m->nparams, sizeof(float) * (size_t)loss->nparams);
                memcpy(m->buffers, t.bbackup, sizeof(float) * (size_t)m->nbuffers);
                FAIL(sm_fail(SM_ERR_NUMERIC,
                             "training diverged at epoch %d step %lld (lr %g): non-finite loss, gradient or "
                             "parameter; the model is kept as it was after the previous step",
                             epoch + 1, (long long)b + 1, (double)lr));
            }
            if (t.ema) ema_update(&t, m, loss, cfg->ema_decay, gstep);
            gstep++;
            sum_loss += value * n;
            seen += n;
            if (cfg->progress) {
                double now = sm_now(), el = now - t0, total = now - t_train;
                int last = target < 0 ? pb >= plan.nbatches : seen >= target;
                double done = (double)epoch * (double)steps + (double)(b + 1), all = (double)cfg->epochs * (double)steps;
                sm_train_progress pr = {epoch + 1, cfg->epochs, b + 1, steps, sum_loss / (double)seen,
                                        el > 0 ? (double)seen / el : 0, el, lr, last, total,
                                        all > done ? total * (all - done) / done : 0};
                /* at an epoch's end the callback sees the averaged model when there is one */
                if (last && t.ema) ema_swap(&t, m, loss);
                int stop = cfg->progress(&pr, cfg->user);
                if (last && t.ema) ema_swap(&t, m, loss);
                if (stop) { epoch = cfg->epochs; break; }
            }
        }
    }
    if (t.ema) ema_swap(&t, m, loss); /* the model keeps the average */
    sm_model_print_profile(m, stderr);
    st = SM_OK;
    if (loss->classes > 0 && loss->kind->logits)
        st = sm_model_set_head(m, loss->kind->name, loss->options, loss->params, loss->nparams, loss->classes);
    else
        st = sm_model_set_head(m, loss->kind->name, loss->options, NULL, 0, 0);
done:
    sm_plan_free(&plan);
    trainer_free(&t);
    if (st) sm_errmsg_copy(m->errmsg);
    return st;
#undef FAIL
}
