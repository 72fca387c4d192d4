/* train.c - the trainer and its step: plan an epoch (shuffled or P x K) -> gather and augment a
 * batch (shift and flip from the trainer's generator, then crop, colour jitter and erasing from
 * per-image ones) -> model forward -> loss and its gradient -> model backward -> gradient hook -> one
 * optimiser step over the model's parameter store (layers and the loss's head, which the loss
 * computes with while it is bound to the store).  Guards: non-finite loss, gradients or
 * parameters stop training with the step named, and the store is restored to its state after
 * the last good step.  Fine-tuning: the optimiser steps ranges of the store at their own rates
 * (frozen layers and batch norms skipped, pretrained layers at backbone_lr_mult).  At an epoch's
 * end: validation (keep_best keeps that epoch's store), the progress callback, the checkpoint
 * (checkpoint.c).  sm_train is a driver over sm_trainer_step.
 *
 * Data-parallel (cfg.dist with N > 1 ranks, src/dist/dist.h): every rank plans and gathers the
 * same batch (same seed, same data), embeds only its shard of the rows, and the shards'
 * embeddings are all-gathered in rank order into the whole batch; the loss runs on the whole
 * batch on every rank (the same bits everywhere), and each rank backpropagates only its own
 * rows' embedding gradients.  The loss is a function of the whole batch, so the sum over ranks
 * of these partial parameter gradients is the single-process gradient exactly in maths, with no
 * scaling by N: the layers' gradients are summed in rank order; the head's (the loss's own
 * parameters), already the whole batch's on every rank, are taken from rank 0.  Batch norm
 * synchronises its statistics (layer_bn.c).  Every decision that could differ between ranks (a
 * failed or non-finite step, a stop asked by the progress callback) is agreed on by all.
 * With cfg.grad_shards = N a single process computes the layers' sums over the batch as N ranks
 * do (src/nn/: each shard's part alone, the parts added in shard order), so that one process
 * and N ranks give the same bits. */
#include "data/data.h"
#include "dist/dist.h"
#include "loss/loss.h"
#include "model/model.h"
#include "optim/optim.h"
#include "train/trainer.h"
#include <math.h>
#include <string.h>

size_t sm_train_config_size(void) { return sizeof(sm_train_config); }
size_t sm_train_progress_size(void) { return sizeof(sm_train_progress); }

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
    c->backbone_lr_mult = 1;
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
    if (c->freeze_until < 0) return sm_fail(SM_ERR_INVALID, "freeze_until must be >= 0 (got %d)", c->freeze_until);
    if (!(c->backbone_lr_mult >= 0 && c->backbone_lr_mult <= 1e3f))
        return sm_fail(SM_ERR_INVALID, "the backbone learning-rate multiplier must be in [0, 1000]");
    if (c->checkpoint_steps < 0) return sm_fail(SM_ERR_INVALID, "checkpoint_steps must be >= 0");
    if (c->keep_best && !c->val) return sm_fail(SM_ERR_INVALID, "keep_best needs a validation set (val)");
    if (c->embed_at < 0) return sm_fail(SM_ERR_INVALID, "embed_at must be >= 0 (got %d)", c->embed_at);
    if (c->checkpoint && !*c->checkpoint) return sm_fail(SM_ERR_INVALID, "empty checkpoint path");
    return sm_augment_check(&c->aug);
}

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

/* The optimiser's ranges: each layer's parameters at lr x 0 (frozen: freeze_until, or a batch
 * norm with freeze_bn), x backbone_lr_mult (pretrained) or x 1, consecutive layers of the same
 * multiplier merged, then the head at lr; and the store ranges that must keep their bits.
 * Marks the batch norms' frozen_stats (cleared by sm_trainer_free). */
static sm_status setup_finetune(sm_trainer *t) {
    sm_model *m = t->m;
    const sm_train_config *cfg = &t->cfg;
    if (cfg->freeze_until > m->nlayers)
        return sm_fail(SM_ERR_INVALID, "freeze_until %d is beyond the model's %d layers", cfg->freeze_until, m->nlayers);
    t->ranges = sm_alloc((size_t)m->nlayers + 1, sizeof *t->ranges);
    t->keep = sm_alloc(2 * (size_t)m->nlayers + 1, sizeof *t->keep);
    if (!t->ranges || !t->keep) return SM_ERR_NOMEM;
    int all_one = 1;
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        const int stats = sm_layer_kind_of(L)->reset_stats != NULL; /* a kind with running statistics */
        if (cfg->freeze_bn && stats) L->frozen_stats = 1;
        float mult = i < cfg->freeze_until || L->frozen_stats ? 0.0f : L->pretrained ? cfg->backbone_lr_mult : 1.0f;
        if (L->frozen_stats && L->nbuffers) {
            sm_param_range k = {m->store.seg[SM_SEG_BN].off + L->buffer_offset, L->nbuffers, 0};
            t->keep[t->nkeep++] = k;
        }
        if (!L->nparams) continue;
        if (mult != 1) all_one = 0;
        if (mult == 0) {
            sm_param_range k = {m->store.seg[SM_SEG_LAYERS].off + L->param_offset, L->nparams, 0};
            t->keep[t->nkeep++] = k;
        }
        sm_param_range *last = t->nranges ? &t->ranges[t->nranges - 1] : NULL;
        if (last && last->mult == mult && last->off + last->n == m->store.seg[SM_SEG_LAYERS].off + L->param_offset)
            last->n += L->nparams;
        else { sm_param_range r = {m->store.seg[SM_SEG_LAYERS].off + L->param_offset, L->nparams, mult}; t->ranges[t->nranges++] = r; }
    }
    if (all_one) t->nranges = 0; /* the plain step over the whole prefix */
    else { sm_param_range h = {m->store.seg[SM_SEG_HEAD].off, m->store.seg[SM_SEG_HEAD].n, 1}; t->ranges[t->nranges++] = h; }
    return SM_OK;
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
    const int ranks = cfg->dist ? sm_dist_size(cfg->dist) : 1;
    if (cfg->grad_shards < 0 || cfg->grad_shards > 65536)
        return sm_fail(SM_ERR_INVALID, "gradient shards must be in 0..65536 (got %d)", cfg->grad_shards);
    if (ranks > 1 && cfg->grad_shards > 1 && cfg->grad_shards != ranks)
        return sm_fail(SM_ERR_INVALID, "gradient shards %d on %d ranks: with several ranks each rank is one shard "
                       "(0 or %d)", cfg->grad_shards, ranks, ranks);
    if (cfg->grad_shards > cfg->batch_size)
        return sm_fail(SM_ERR_INVALID, "batch size %d is smaller than the %d gradient shards that share each batch",
                       cfg->batch_size, cfg->grad_shards);
    if (cfg->dist && cfg->batch_size < sm_dist_size(cfg->dist))
        return sm_fail(SM_ERR_INVALID, "batch size %d is smaller than the %d ranks that share each batch",
                       cfg->batch_size, sm_dist_size(cfg->dist));
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
    /* defined values in the rows a rank of several does not decode (augmentation passes over them) */
    memset(t->xb, 0, (size_t)B * (size_t)in * sizeof(float));
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
    if ((st = setup_finetune(t))) goto fail;
    if (cfg->val) {
        const sm_dataset *v = cfg->val;
        if (v->h != m->in_h || v->w != m->in_w || v->c != m->in_c) {
            st = sm_fail(SM_ERR_MISMATCH, "validation data of shape %dx%dx%d, model input %dx%dx%d", v->h, v->w, v->c,
                         m->in_h, m->in_w, m->in_c);
            goto fail;
        }
        if (v->n < 2) { st = sm_fail(SM_ERR_INVALID, "the validation set has fewer than 2 images"); goto fail; }
        if (cfg->embed_at && (st = sm_model_cut(m, cfg->embed_at, &t->trunk))) goto fail;
        const int vd = t->trunk ? t->trunk->emb_dim : d; /* the validation embedding's width */
        t->val_emb = sm_alloc((size_t)v->n, (size_t)vd * sizeof(float));
        t->val_hist = sm_alloc((size_t)cfg->epochs, sizeof(double));
        if (cfg->keep_best) t->best = sm_alloc((size_t)(m->store.n + 1), sizeof(float));
        if (!t->val_emb || !t->val_hist || (cfg->keep_best && !t->best)) { st = SM_ERR_NOMEM; goto fail; }
        for (int e = 0; e < cfg->epochs; e++) t->val_hist[e] = NAN;
    }
    if (cfg->ema_decay > 0) { /* the average starts as the current values */
        t->ema = sm_alloc((size_t)(m->store.n + 1), sizeof(float));
        if (!t->ema) { st = SM_ERR_NOMEM; goto fail; }
        memcpy(t->ema, m->store.val, sizeof(float) * (size_t)m->store.n);
    }
    if ((st = sm_params_reset_moments(&m->store))) goto fail;
    if ((st = sm_model_reserve(m, B))) goto fail;
    if (cfg->dist && cfg->dist->size > 1) {
        t->dist = cfg->dist;
        t->eall = sm_alloc((size_t)B, (size_t)d * sizeof(float));
        t->counts = sm_alloc((size_t)t->dist->size, sizeof(int64_t));
        if (!t->eall || !t->counts) { st = SM_ERR_NOMEM; goto fail; }
        /* every rank starts from rank 0's parameters, head and statistics */
        if ((st = sm_dist_bcast(t->dist, m->store.val, m->store.n * (int64_t)sizeof(float), 0))) goto fail;
        if (t->ema) memcpy(t->ema, m->store.val, sizeof(float) * (size_t)m->store.n);
        sm_model_set_dist(m, t->dist);
    } else if (cfg->grad_shards > 1 && (st = sm_model_set_shards(m, cfg->grad_shards))) {
        goto fail;
    }
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
    if (cfg->resume && (st = sm_trainer_load_checkpoint(t, cfg->resume))) {
        *out = NULL;
        goto fail;
    }
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
    if (t->cfg.val && t->epoch > 0) { /* the selection record: the best epoch's weights, or the last's */
        if (t->best && t->best_epoch) {
            memcpy(m->store.val, t->best, sizeof(float) * (size_t)m->store.n);
            m->val_epoch = t->best_epoch; m->val_map_at_r = t->best_val; m->val_best = 1;
        } else {
            m->val_epoch = t->epoch; m->val_map_at_r = t->val_hist[t->epoch - 1]; m->val_best = 0;
        }
    }
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
    if (t->m && t->dist) sm_model_set_dist(t->m, NULL);
    if (t->m) (void)sm_model_set_shards(t->m, 0);
    if (t->m) sm_params_drop_moments(&t->m->store); /* as the optimiser state sm_train used to free */
    if (!t->finished && t->m && t->old_head) { /* put the model's previous head back */
        if (t->m->nhead != t->old_nhead) (void)sm_model_resize_head(t->m, t->old_nhead);
        if (t->m->nhead == t->old_nhead && t->old_nhead)
            memcpy(t->m->head, t->old_head, sizeof(float) * (size_t)t->old_nhead);
    }
    sm_prefetch_free(t->pf); /* first: its thread reads the dataset */
    if (t->m)
        for (int i = 0; i < t->m->nlayers; i++) t->m->layers[i].frozen_stats = 0;
    sm_plan_free(&t->plan);
    sm_free(t->ranges); sm_free(t->keep); sm_free(t->val_emb); sm_model_free(t->trunk); sm_free(t->val_hist); sm_free(t->best);
    sm_free(t->eall); sm_free(t->counts);
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

/* Validation at the end of epoch (0-based): embeddings of cfg.val by the model as it stands,
 * L2-normalised, retrieval metrics with L2 distance; the best epoch's store kept (keep_best). */
static sm_status validate(sm_trainer *t, int epoch) {
    const sm_dataset *v = t->cfg.val;
    sm_model *m = t->m;
    /* the model whose embeddings are validated: m, or its trunk with m's weights as they stand */
    sm_status st = t->trunk ? sm_model_init_from(t->trunk, m, NULL, NULL, 0) : SM_OK;
    if (st) return st;
    sm_model *e = t->trunk ? t->trunk : m;
    const int d = e->emb_dim;
    if ((st = sm_model_embed(e, v->x, v->n, t->val_emb))) return st;
    sm_embeddings_normalize(t->val_emb, v->n, d);
    if ((st = sm_retrieval_metrics(t->val_emb, v->y, v->n, d, SM_METRIC_L2, &t->val_last))) return st;
    const double f = t->val_last.map_at_r;
    t->val_hist[epoch] = f;
    if (!t->best_epoch || f > t->best_val) {
        t->best_epoch = epoch + 1;
        t->best_val = f;
        if (t->best) memcpy(t->best, m->store.val, sizeof(float) * (size_t)m->store.n);
    }
    return SM_OK;
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
    const int full = (int)(t->plan.starts[t->pb + 1] - t->plan.starts[t->pb]);
    int n = full;
    const int64_t *idx = t->plan.order + t->plan.starts[t->pb];
    if (t->target > 0 && n > t->target - t->seen) n = (int)(t->target - t->seen);
    /* this rank's rows [lo, hi) of the batch: all of it in a single process */
    int64_t lo = 0, hi = n;
    if (t->dist) sm_dist_shard(n, t->dist->rank, t->dist->size, &lo, &hi);
    if (t->pf) { /* this batch, and the next two of the pass to decode while this one computes; on
                  * several ranks each decodes only its own rows of each batch */
        const int R = t->dist ? t->dist->size : 1, r = t->dist ? t->dist->rank : 0;
        for (int64_t q = t->pb; q < t->pb + 3 && q < t->plan.nbatches; q++) {
            int64_t nq = t->plan.starts[q + 1] - t->plan.starts[q], a = 0, z = nq;
            if (R > 1) sm_dist_shard(nq, r, R, &a, &z);
            sm_prefetch_submit(t->pf, t->pass_gen << 32 | (uint64_t)q, t->plan.order + t->plan.starts[q] + a,
                               (int)(z - a));
        }
        /* a batch cut short (the epoch's sample target) gives other shards than the queued ones:
         * decoded afresh under a key of their own */
        uint64_t key = t->pass_gen << 32 | (uint64_t)t->pb;
        if (R > 1 && n != full) key |= (uint64_t)1 << 63;
        if ((st = sm_prefetch_take(t->pf, key, idx + lo, (int)(hi - lo), t->xb + lo * in))) return trainer_fail(t, st);
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

    /* a model with dropout: the step's mask key from the training RNG (drawn only then, so the
     * other models' random streams are as they were; every rank draws the same key) */
    if (m->uses_noise) m->noise = sm_rng_next(&t->rng);
    m->noise_row0 = lo; /* a value's mask is that of its place in the whole batch */
    const float *emb = sm_model_forward(m, t->xb + lo * in, (int)(hi - lo), 1);
    m->noise_row0 = 0;
    if (t->dist) { /* the whole batch's embeddings, shards in rank order */
        for (int r = 0; r < t->dist->size; r++) {
            int64_t a, z;
            sm_dist_shard(n, r, t->dist->size, &a, &z);
            t->counts[r] = (z - a) * d * (int64_t)sizeof(float);
        }
        if ((st = sm_dist_error(t->dist)) || (st = sm_dist_allgatherv(t->dist, emb, t->counts, t->eall))) {
            memcpy(P->val, t->backup, sizeof(float) * (size_t)P->n);
            return trainer_fail(t, st);
        }
        emb = t->eall;
    }
    float value = 0;
    sm_params_zero_grad(P);
    st = sm_loss_compute(loss, emb, t->yb, n, d, &value, t->gemb);
    int bad = st == SM_ERR_NUMERIC || (st == SM_OK && (!sm_isfinite_f(value) || !sm_all_finite(t->gemb, (int64_t)n * d)));
    if (t->dist) { /* one decision for all ranks: 2 an error, 1 non-finite, 0 go on */
        int code = !bad && st ? 2 : bad, mine = code;
        sm_status cst = sm_dist_max_int(t->dist, &code);
        if (cst) return trainer_fail(t, cst);
        if (code == 2 && mine != 2)
            return trainer_fail(t, sm_fail(SM_ERR_INVALID, "the loss failed on another rank at epoch %d step %lld",
                                           epoch + 1, (long long)b + 1));
        bad = code == 1;
    }
    if (!bad && st) return trainer_fail(t, st);
    if (!bad) {
        sm_model_backward(m, t->xb + lo * in, t->gemb + lo * d, (int)(hi - lo));
        if (t->dist) { /* the layers' gradients summed in rank order; the head's from rank 0 */
            const sm_param_seg *sl = &P->seg[SM_SEG_LAYERS], *sh = &P->seg[SM_SEG_HEAD];
            if ((st = sm_dist_error(t->dist)) || (st = sm_dist_sum_f32(t->dist, P->grad + sl->off, sl->n)) ||
                (st = sm_dist_bcast(t->dist, P->grad + sh->off, sh->n * (int64_t)sizeof(float), 0))) {
                memcpy(P->val, t->backup, sizeof(float) * (size_t)P->n);
                return trainer_fail(t, st);
            }
        }
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
        if (t->nranges) sm_params_step_ranges(P, cfg, lr, t->ranges, t->nranges);
        else sm_params_step(P, cfg, lr);
        bad = !sm_all_finite(P->val, P->n);
    }
    if (t->dist && (st = sm_dist_max_int(t->dist, &bad))) {
        memcpy(P->val, t->backup, sizeof(float) * (size_t)P->n);
        return trainer_fail(t, st);
    }
    if (bad) {
        memcpy(P->val, t->backup, sizeof(float) * (size_t)P->n);
        return trainer_fail(t, sm_fail(SM_ERR_NUMERIC,
                                       "training diverged at epoch %d step %lld (lr %g): non-finite loss, gradient or "
                                       "parameter; the model is kept as it was after the previous step",
                                       epoch + 1, (long long)b + 1, (double)lr));
    }
    if (t->ema) {
        sm_params_ema_update(P, t->ema, cfg->ema_decay, t->gstep);
        for (int k = 0; k < t->nkeep; k++) /* frozen values: the average is the value, to the bit */
            memcpy(t->ema + t->keep[k].off, P->val + t->keep[k].off, sizeof(float) * (size_t)t->keep[k].n);
    }
    t->gstep++;
    t->sum_loss += value * n;
    t->seen += n;
    t->b++;
    int last = t->target < 0 ? t->pb >= t->plan.nbatches : t->seen >= t->target;
    int stop = 0;
    /* at an epoch's end validation and the callback see the averaged model when there is one */
    if (last && t->ema) sm_params_ema_swap(P, t->ema);
    int validated = 0;
    if (last && cfg->val) {
        if ((st = validate(t, epoch))) {
            if (t->ema) sm_params_ema_swap(P, t->ema);
            return trainer_fail(t, st);
        }
        validated = 1;
    }
    if (cfg->progress) {
        double now = sm_now(), el = now - t->t0, total = now - t->t_train;
        double done = (double)epoch * (double)t->steps + (double)(b + 1), all = (double)cfg->epochs * (double)t->steps;
        sm_train_progress pr = {epoch + 1, cfg->epochs, b + 1, t->steps, t->sum_loss / (double)t->seen,
                                el > 0 ? (double)t->seen / el : 0, el, lr, last, total,
                                all > done ? total * (all - done) / done : 0, validated ? &t->val_last : NULL};
        stop = cfg->progress(&pr, cfg->user);
    }
    if (t->dist && (st = sm_dist_max_int(t->dist, &stop))) return trainer_fail(t, st); /* all stop or none */
    if (last && t->ema) sm_params_ema_swap(P, t->ema);
    if (last) { t->in_epoch = 0; t->epoch++; }
    if (stop || t->epoch >= cfg->epochs) t->done = 1;
    /* the checkpoint: after every epoch, and every checkpoint_steps steps */
    if (cfg->checkpoint && (last || (cfg->checkpoint_steps > 0 && t->gstep % cfg->checkpoint_steps == 0))) {
        st = sm_trainer_save_checkpoint(t, cfg->checkpoint);
        if (st) return trainer_fail(t, st);
    }
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
