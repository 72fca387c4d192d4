/* checkpoint.c - a training's whole state in one file, so that a training killed at any point
 * continues from its last checkpoint to the same bits.  Little-endian:
 *   "SMILECKP" (8 bytes) | u32 version (2) | str spec | str loss | str loss_options
 *   | u32 h, w, c | u32 n_groups | n_groups x u32 fingerprints of the settings, one a group
 *     (sm_trainer_config_crcs: training data, validation, optimiser, sampling, augmentation,
 *     fine-tuning, processes)
 *   | u32 n_blocks | n_blocks x (str name, u64 bytes, bytes)
 *   | u32 CRC-32 of every preceding byte
 * where str = u32 length + bytes.  Version 1 (still read) had one u32 fingerprint of fewer
 * settings (no augmentation beyond shift and flip, no image contents or normalisation, no process
 * count) in place of the groups.  The blocks, in this order: "state" (i64: epoch, in_epoch,
 * step in epoch, next batch of the plan, samples seen, epoch target, steps an epoch, global
 * step, optimiser step, best epoch, plan batches, plan total), "rng" (u64 x 4), "sums" (f64:
 * epoch loss sum, best MAP@R), "store" (f32 x store size: layers, head, batch-norm statistics),
 * "moment1", "moment2" (f32 x trainable size), "ema" and "best" (f32 x store size, or empty),
 * "plan.order", "plan.starts" (i64), "val_history" (f64 x epochs, or empty).  The reader checks
 * the checksum, then every name and size against the trainer it loads into; a group whose
 * fingerprint differs is named in the refusal. */
#include "train/trainer.h"
#include <string.h>

#define MAGIC "SMILECKP"
#define CKPT_VERSION 2u
#define NSTATE 12
#define NBLOCKS 11

/* ---- the settings' fingerprint -------------------------------------------------------------- */
typedef struct crc_buf { uint32_t crc; } crc_buf;
static void add(crc_buf *c, const void *p, size_t n) { c->crc = sm_crc32(c->crc, p, n); }
static void add_i64(crc_buf *c, int64_t v) { add(c, &v, sizeof v); }
static void add_f32(crc_buf *c, float v) { add(c, &v, sizeof v); }

uint32_t sm_trainer_config_crc_v1(const sm_trainer *t) {
    const sm_train_config *g = &t->cfg;
    crc_buf c = {0};
    add(&c, t->m->spec, strlen(t->m->spec));
    add(&c, t->loss->kind->name, strlen(t->loss->kind->name));
    add(&c, t->loss->options, strlen(t->loss->options));
    add_i64(&c, t->ds->n); add_i64(&c, t->ds->h); add_i64(&c, t->ds->w); add_i64(&c, t->ds->c);
    add(&c, t->ds->y, sizeof(int32_t) * (size_t)t->ds->n);
    add_i64(&c, g->val ? g->val->n : -1);
    add_i64(&c, g->epochs); add_i64(&c, g->batch_size); add_i64(&c, g->optimizer);
    add_f32(&c, g->lr); add_f32(&c, g->momentum); add_f32(&c, g->weight_decay);
    add_f32(&c, g->beta1); add_f32(&c, g->beta2); add_f32(&c, g->eps);
    add_i64(&c, g->schedule); add_i64(&c, g->warmup_steps); add_i64(&c, g->step_epochs); add_f32(&c, g->step_gamma);
    add_i64(&c, g->per_class); add_i64(&c, g->samples_per_epoch); add_i64(&c, g->pk_random);
    add_f32(&c, g->ema_decay); add_i64(&c, g->aug_shift); add_i64(&c, g->aug_flip); add_i64(&c, (int64_t)g->seed);
    add_i64(&c, g->freeze_bn); add_i64(&c, g->freeze_until); add_f32(&c, g->backbone_lr_mult);
    add_i64(&c, g->keep_best);
    for (int i = 0; i < t->nranges; i++) { add_i64(&c, t->ranges[i].off); add_i64(&c, t->ranges[i].n); add_f32(&c, t->ranges[i].mult); }
    return c.crc;
}

/* A dataset's contents: size, shape, labels and image values (in memory: the floats as
 * normalised; streamed: the files and the normalisation applied when decoding). */
static void add_dataset(crc_buf *c, const sm_dataset *d) {
    add_i64(c, d->n); add_i64(c, d->h); add_i64(c, d->w); add_i64(c, d->c);
    add(c, d->y, sizeof(int32_t) * (size_t)d->n);
    if (d->x) {
        add(c, d->x, sizeof(float) * (size_t)d->n * (size_t)d->h * (size_t)d->w * (size_t)d->c);
    } else {
        for (int64_t i = 0; i < d->n; i++) add(c, d->paths[i], strlen(d->paths[i]) + 1);
        add_i64(c, d->norm);
        for (int k = 0; k < 3; k++) { add_f32(c, d->mean[k]); add_f32(c, d->std[k]); }
    }
}

/* What each group of settings is, for the refusal's message (sm_trainer_config_crcs' order). */
static const char *const group_what[SM_CKPT_NGROUPS] = {
    "training data (images, labels, size, channels, normalisation)",
    "validation (its images and labels, keep-best, the layer it embeds at)",
    "optimiser (epochs, optimiser, learning rate, schedule, weight decay, EMA)",
    "sampling (batch, P x K, epoch size, seed)",
    "augmentation (shift, flip, crop, colour jitter, erasing)",
    "fine-tuning (frozen batch norms or layers, backbone learning rate)",
    "number of processes or gradient shards (--grad-shards)",
};

void sm_trainer_config_crcs(const sm_trainer *t, uint32_t out[SM_CKPT_NGROUPS]) {
    const sm_train_config *g = &t->cfg;
    const sm_augment *a = &g->aug;
    crc_buf c;
    /* training data, and the normalisation the model stores (augmentation's jitter uses it) */
    c.crc = 0;
    add_dataset(&c, t->ds);
    add_i64(&c, t->m->norm.kind);
    for (int k = 0; k < 3; k++) { add_f32(&c, t->mean[k]); add_f32(&c, t->std[k]); }
    out[0] = c.crc;
    /* validation */
    c.crc = 0;
    add_i64(&c, g->val != NULL);
    if (g->val) add_dataset(&c, g->val);
    add_i64(&c, g->keep_best);
    if (g->embed_at) add_i64(&c, g->embed_at); /* (absent before embed_at existed: same fingerprint) */
    out[1] = c.crc;
    /* optimiser and schedule */
    c.crc = 0;
    add_i64(&c, g->epochs); add_i64(&c, g->optimizer);
    add_f32(&c, g->lr); add_f32(&c, g->momentum); add_f32(&c, g->weight_decay);
    add_f32(&c, g->beta1); add_f32(&c, g->beta2); add_f32(&c, g->eps);
    add_i64(&c, g->schedule); add_i64(&c, g->warmup_steps); add_i64(&c, g->step_epochs); add_f32(&c, g->step_gamma);
    add_f32(&c, g->ema_decay);
    out[2] = c.crc;
    /* sampling (and the seed every random draw comes from: the plan, the heads, dropout's keys) */
    c.crc = 0;
    add_i64(&c, g->batch_size); add_i64(&c, g->per_class); add_i64(&c, g->samples_per_epoch); add_i64(&c, g->pk_random);
    add_i64(&c, (int64_t)g->seed);
    out[3] = c.crc;
    /* augmentation */
    c.crc = 0;
    add_i64(&c, g->aug_shift); add_i64(&c, g->aug_flip);
    const float af[] = {a->crop_scale_min, a->crop_scale_max, a->crop_ratio_min, a->crop_ratio_max, a->brightness,
                        a->contrast, a->saturation, a->erase_p, a->erase_scale_min, a->erase_scale_max,
                        a->erase_ratio_min, a->erase_ratio_max};
    for (size_t k = 0; k < sizeof af / sizeof af[0]; k++) add_f32(&c, af[k]);
    add_f32(&c, t->fill);
    out[4] = c.crc;
    /* fine-tuning: the frozen parts and the learning-rate ranges */
    c.crc = 0;
    add_i64(&c, g->freeze_bn); add_i64(&c, g->freeze_until); add_f32(&c, g->backbone_lr_mult);
    for (int i = 0; i < t->nranges; i++) { add_i64(&c, t->ranges[i].off); add_i64(&c, t->ranges[i].n); add_f32(&c, t->ranges[i].mult); }
    out[5] = c.crc;
    /* the grouping of the batch's sums: N ranks, or one process with grad_shards N, which
     * computes the same bits as N ranks (1: one process, no shards; the value before shards) */
    c.crc = 0;
    add_i64(&c, t->dist && t->dist->size > 1 ? t->dist->size : g->grad_shards > 1 ? g->grad_shards : 1);
    out[6] = c.crc;
}

/* The fingerprints, computed once (they read every image) when a checkpoint is first written or
 * read. */
static const uint32_t *config_crcs(sm_trainer *t) {
    if (!t->cfg_crc_set) {
        sm_trainer_config_crcs(t, t->cfg_crc);
        t->cfg_crc_set = 1;
    }
    return t->cfg_crc;
}

/* ---- writing ------------------------------------------------------------------------------ */
static sm_status w_block(sm_afile *f, const char *name, const void *data, size_t bytes) {
    sm_status st = sm_afile_str(f, name);
    if (!st) st = sm_afile_u64(f, (uint64_t)bytes);
    if (!st && bytes) st = sm_afile_write(f, data, bytes); /* x86-64/arm64: little-endian */
    return st;
}

static void state_of(const sm_trainer *t, int64_t s[NSTATE]) {
    const int64_t v[NSTATE] = {t->epoch, t->in_epoch, t->b, t->pb, t->seen, t->target, t->steps, t->gstep,
                               t->m->store.t, t->best_epoch, t->plan.nbatches, t->plan.total};
    memcpy(s, v, sizeof v);
}

sm_status sm_trainer_save_checkpoint(sm_trainer *t, const char *path) {
    if (!t) return sm_fail(SM_ERR_INVALID, "sm_trainer_save_checkpoint: trainer is NULL");
    if (!path || !*path) { sm_status st = sm_fail(SM_ERR_INVALID, "sm_trainer_save_checkpoint: empty path"); sm_errmsg_copy(t->errmsg); return st; }
    const sm_model *m = t->m;
    const sm_params *P = &m->store;
    int64_t state[NSTATE];
    state_of(t, state);
    const double sums[2] = {t->sum_loss, t->best_val};
    const size_t nv = sizeof(float) * (size_t)P->n, nt = sizeof(float) * (size_t)P->ntrain;
    const size_t plan_n = t->plan.order ? (size_t)t->plan.total : 0, starts_n = t->plan.starts ? (size_t)t->plan.nbatches + 1 : 0;
    sm_afile f;
    sm_status st = sm_afile_open(&f, path);
    if (st) { sm_errmsg_copy(t->errmsg); return st; }
    char shape[3][16];
    snprintf(shape[0], 16, "%d", m->in_h); snprintf(shape[1], 16, "%d", m->in_w); snprintf(shape[2], 16, "%d", m->in_c);
    st = sm_afile_write(&f, MAGIC, 8);
    if (!st) st = sm_afile_u32(&f, CKPT_VERSION);
    if (!st) st = sm_afile_str(&f, m->spec);
    if (!st) st = sm_afile_str(&f, t->loss->kind->name);
    if (!st) st = sm_afile_str(&f, t->loss->options);
    if (!st) st = sm_afile_u32(&f, (uint32_t)m->in_h);
    if (!st) st = sm_afile_u32(&f, (uint32_t)m->in_w);
    if (!st) st = sm_afile_u32(&f, (uint32_t)m->in_c);
    const uint32_t *crcs = config_crcs(t);
    if (!st) st = sm_afile_u32(&f, SM_CKPT_NGROUPS);
    for (int k = 0; k < SM_CKPT_NGROUPS && !st; k++) st = sm_afile_u32(&f, crcs[k]);
    if (!st) st = sm_afile_u32(&f, NBLOCKS);
    if (!st) st = w_block(&f, "state", state, sizeof state);
    if (!st) st = w_block(&f, "rng", t->rng.s, sizeof t->rng.s);
    if (!st) st = w_block(&f, "sums", sums, sizeof sums);
    if (!st) st = w_block(&f, "store", P->val, nv);
    if (!st) st = w_block(&f, "moment1", P->m, nt);
    if (!st) st = w_block(&f, "moment2", P->v, nt);
    if (!st) st = w_block(&f, "ema", t->ema, t->ema ? nv : 0);
    if (!st) st = w_block(&f, "best", t->best, t->best && t->best_epoch ? nv : 0);
    if (!st) st = w_block(&f, "plan.order", t->plan.order, plan_n * sizeof(int64_t));
    if (!st) st = w_block(&f, "plan.starts", t->plan.starts, starts_n * sizeof(int64_t));
    if (!st) st = w_block(&f, "val_history", t->val_hist, t->val_hist ? sizeof(double) * (size_t)t->cfg.epochs : 0);
    if (!st) st = sm_afile_u32(&f, f.crc);
    if (st) { sm_afile_abort(&f); sm_errmsg_copy(t->errmsg); return st; }
    st = sm_afile_commit(&f);
    if (st) sm_errmsg_copy(t->errmsg);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------ */
/* The next block, which must be `name`; *bytes its size, *data borrowed from the buffer. */
static sm_status r_block(sm_reader *r, const char *name, const void **data, uint64_t *bytes) {
    const char *s;
    uint32_t n;
    sm_status st = sm_reader_str(r, &s, &n, "block name");
    if (st) return st;
    if (n != strlen(name) || memcmp(s, name, n))
        return sm_fail(SM_ERR_FORMAT, "%s: found block '%.*s' where '%s' belongs", r->path, (int)(n > 32 ? 32 : n), s, name);
    if ((st = sm_reader_u64(r, bytes, "block size"))) return st;
    if (*bytes > (uint64_t)(r->end - r->p)) return sm_fail(SM_ERR_FORMAT, "%s: truncated in block '%s'", r->path, name);
    *data = r->p;
    r->p += *bytes;
    return SM_OK;
}

/* A block of exactly `want` bytes (or, with may_be_empty, none). */
static sm_status r_exact(sm_reader *r, const char *name, size_t want, int may_be_empty, const void **data, int *empty) {
    uint64_t bytes;
    sm_status st = r_block(r, name, data, &bytes);
    if (st) return st;
    if (empty) *empty = bytes == 0;
    if (bytes == want || (may_be_empty && bytes == 0)) return SM_OK;
    return sm_fail(SM_ERR_MISMATCH, "%s: block '%s' holds %llu bytes, this training needs %zu", r->path, name,
                   (unsigned long long)bytes, want);
}

static sm_status r_string_is(sm_reader *r, const char *want, const char *what) {
    const char *s;
    uint32_t n;
    sm_status st = sm_reader_str(r, &s, &n, what);
    if (st) return st;
    if (n != strlen(want) || memcmp(s, want, n))
        return sm_fail(SM_ERR_MISMATCH, "%s: the checkpoint's %s is '%.*s', this training's is '%s'", r->path, what,
                       (int)(n > 200 ? 200 : n), s, want);
    return SM_OK;
}

static sm_status parse(sm_trainer *t, sm_reader *r) {
    sm_model *m = t->m;
    sm_params *P = &m->store;
    sm_status st;
    if (r->end - r->p < 8 + 4 + 4) return sm_fail(SM_ERR_FORMAT, "%s: too short to be a checkpoint", r->path);
    if (memcmp(r->p, MAGIC, 8)) return sm_fail(SM_ERR_FORMAT, "%s: not a simile checkpoint (bad magic)", r->path);
    const unsigned char *crc_at = r->end - 4;
    if (sm_crc32(0, r->p, (size_t)(crc_at - r->p)) != sm_get_u32le(crc_at))
        return sm_fail(SM_ERR_FORMAT, "%s: checksum mismatch (file corrupt or truncated)", r->path);
    r->end = crc_at;
    r->p += 8;
    uint32_t version, h, w, c, crc, nblocks;
    if ((st = sm_reader_u32(r, &version, "version"))) return st;
    if (version != 1 && version != CKPT_VERSION)
        return sm_fail(SM_ERR_FORMAT, "%s: checkpoint version %u, this build reads versions 1 to %u", r->path, version,
                       CKPT_VERSION);
    if ((st = r_string_is(r, m->spec, "model spec")) || (st = r_string_is(r, t->loss->kind->name, "loss")) ||
        (st = r_string_is(r, t->loss->options, "loss options")))
        return st;
    if ((st = sm_reader_u32(r, &h, "input shape")) || (st = sm_reader_u32(r, &w, "input shape")) ||
        (st = sm_reader_u32(r, &c, "input shape")))
        return st;
    if ((int)h != m->in_h || (int)w != m->in_w || (int)c != m->in_c)
        return sm_fail(SM_ERR_MISMATCH, "%s: checkpoint of a model for %ux%ux%u input, this one takes %dx%dx%d", r->path, h, w,
                       c, m->in_h, m->in_w, m->in_c);
    if (version == 1) {
        if ((st = sm_reader_u32(r, &crc, "settings fingerprint"))) return st;
        if (crc != sm_trainer_config_crc_v1(t))
            return sm_fail(SM_ERR_MISMATCH, "%s: the checkpoint (version 1) was written by a training with other data or "
                           "settings (epochs, batch, learning rate, sampling, seed, fine-tuning, validation...): resume "
                           "with the same ones", r->path);
    } else {
        uint32_t ngroups;
        if ((st = sm_reader_u32(r, &ngroups, "settings group count"))) return st;
        if (ngroups != SM_CKPT_NGROUPS)
            return sm_fail(SM_ERR_FORMAT, "%s: %u settings groups, expected %d", r->path, ngroups, SM_CKPT_NGROUPS);
        const uint32_t *mine = config_crcs(t);
        char which[768];
        size_t len = 0;
        int ndiff = 0;
        which[0] = 0;
        for (int k = 0; k < SM_CKPT_NGROUPS; k++) {
            if ((st = sm_reader_u32(r, &crc, "settings fingerprint"))) return st;
            if (crc == mine[k]) continue;
            if (len < sizeof which)
                len += (size_t)snprintf(which + len, sizeof which - len, "%s%s", ndiff ? "; " : "", group_what[k]);
            ndiff++;
        }
        if (ndiff)
            return sm_fail(SM_ERR_MISMATCH, "%s: the checkpoint was written by a training with other data or settings: "
                           "its %s differ%s from this training's; resume with the same ones", r->path, which,
                           ndiff > 1 ? "" : "s");
    }
    if ((st = sm_reader_u32(r, &nblocks, "block count"))) return st;
    if (nblocks != NBLOCKS) return sm_fail(SM_ERR_FORMAT, "%s: %u blocks, expected %d", r->path, nblocks, NBLOCKS);
    const void *state, *rng, *sums, *val, *m1, *m2, *ema, *best, *order, *starts, *hist;
    int ema_empty, best_empty, hist_empty;
    const size_t nv = sizeof(float) * (size_t)P->n, nt = sizeof(float) * (size_t)P->ntrain;
    if ((st = r_exact(r, "state", NSTATE * sizeof(int64_t), 0, &state, NULL)) ||
        (st = r_exact(r, "rng", sizeof t->rng.s, 0, &rng, NULL)) || (st = r_exact(r, "sums", 2 * sizeof(double), 0, &sums, NULL)) ||
        (st = r_exact(r, "store", nv, 0, &val, NULL)) || (st = r_exact(r, "moment1", nt, 0, &m1, NULL)) ||
        (st = r_exact(r, "moment2", nt, 0, &m2, NULL)) || (st = r_exact(r, "ema", t->ema ? nv : 0, 0, &ema, &ema_empty)) ||
        (st = r_exact(r, "best", t->best ? nv : 0, 1, &best, &best_empty)))
        return st;
    int64_t s[NSTATE];
    memcpy(s, state, sizeof s);
    const int64_t nbatches = s[10], total = s[11];
    if (nbatches < 0 || total < 0 || nbatches > (int64_t)1 << 40 || total > (int64_t)1 << 40)
        return sm_fail(SM_ERR_FORMAT, "%s: bad sampler plan size", r->path);
    int order_empty, starts_empty;
    if ((st = r_exact(r, "plan.order", (size_t)total * sizeof(int64_t), 1, &order, &order_empty)) ||
        (st = r_exact(r, "plan.starts", (size_t)(nbatches + 1) * sizeof(int64_t), 1, &starts, &starts_empty)) ||
        (st = r_exact(r, "val_history", t->val_hist ? sizeof(double) * (size_t)t->cfg.epochs : 0, 0, &hist, &hist_empty)))
        return st;
    if (r->p != r->end) return sm_fail(SM_ERR_FORMAT, "%s: %ld unexpected trailing bytes", r->path, (long)(r->end - r->p));
    /* the state must be one this training can be in */
    const int64_t epoch = s[0], in_epoch = s[1], b = s[2], pb = s[3], seen = s[4];
    const int64_t target = s[5], steps = s[6], best_epoch = s[9];
    const int B = t->cfg.batch_size;
    /* an epoch's target as start_epoch sets it */
    int64_t want_target = t->cfg.samples_per_epoch > 0 ? t->cfg.samples_per_epoch : -1;
    if (t->cfg.per_class > 0 && t->cfg.pk_random) {
        want_target = (want_target > 0 ? want_target : t->ds->n) / B * B;
        if (want_target < B) want_target = B;
    }
    int bad = epoch < 0 || epoch > t->cfg.epochs || (in_epoch != 0 && in_epoch != 1) || (epoch == t->cfg.epochs && in_epoch) ||
              b < 0 || pb < 0 || pb > nbatches || seen < 0 || steps < 0 || s[7] < 0 || s[8] < 0 || best_epoch < 0 ||
              best_epoch > epoch || (order_empty != starts_empty) || (!order_empty && nbatches == 0) ||
              (best_epoch > 0 && !t->cfg.val) || (t->best && best_epoch > 0 && best_empty) ||
              (in_epoch && target != want_target) || (in_epoch && target > 0 && seen >= target) ||
              (in_epoch && b == 0 && seen != 0) || (in_epoch && b > 0 && steps < 1);
    const int64_t *ord = order, *sts = starts;
    for (int64_t i = 0; !bad && !order_empty && i < total; i++) { int64_t v; memcpy(&v, ord + i, sizeof v); bad = v < 0 || v >= t->ds->n; }
    for (int64_t i = 0; !bad && !starts_empty && i <= nbatches; i++) {
        int64_t v, prev = 0;
        memcpy(&v, sts + i, sizeof v);
        if (i) memcpy(&prev, sts + i - 1, sizeof prev);
        bad = v < 0 || v > total || (i && (v < prev || v - prev > B)) || (i == 0 && v != 0) || (i == nbatches && v != total);
    }
    double d[2];
    memcpy(d, sums, sizeof d);
    if (!(d[0] == d[0]) || (best_epoch > 0 && !(d[1] >= 0 && d[1] <= 1))) bad = 1;
    for (int e = 0; !bad && t->val_hist && e < t->cfg.epochs; e++) {
        double v;
        memcpy(&v, (const char *)hist + sizeof(double) * (size_t)e, sizeof v);
        /* a MAP@R for each epoch done (validated in its last step, which also counts it); NaN
         * (not validated yet) or a MAP@R for the others */
        bad = e < epoch ? !(v >= 0 && v <= 1) : v == v && !(v >= 0 && v <= 1);
    }
    if (bad) return sm_fail(SM_ERR_FORMAT, "%s: the training state is out of range for this training", r->path);
    /* the float blocks, aligned, checked finite before anything is taken */
    const void *fblock[3] = {val, t->ema ? ema : NULL, t->best && !best_empty ? best : NULL};
    for (int k = 0; k < 3; k++) {
        if (!fblock[k]) continue;
        memcpy(t->backup, fblock[k], nv);
        if (!sm_all_finite(t->backup, P->n)) return sm_fail(SM_ERR_FORMAT, "%s: the parameters hold NaN or Inf", r->path);
    }
    memcpy(t->backup, val, nv);
    /* all checked: take it */
    sm_epoch_plan plan = {0};
    if (!order_empty) {
        plan.order = sm_alloc((size_t)total + 1, sizeof(int64_t));
        plan.starts = sm_alloc((size_t)nbatches + 1, sizeof(int64_t));
        if (!plan.order || !plan.starts) { sm_plan_free(&plan); return SM_ERR_NOMEM; }
        memcpy(plan.order, order, (size_t)total * sizeof(int64_t));
        memcpy(plan.starts, starts, (size_t)(nbatches + 1) * sizeof(int64_t));
        plan.nbatches = nbatches; plan.total = total;
    }
    sm_plan_free(&t->plan);
    t->plan = plan;
    memcpy(P->val, t->backup, nv);
    memcpy(P->m, m1, nt);
    memcpy(P->v, m2, nt);
    if (t->ema) memcpy(t->ema, ema, nv);
    if (t->best && !best_empty) memcpy(t->best, best, nv);
    if (t->val_hist) memcpy(t->val_hist, hist, sizeof(double) * (size_t)t->cfg.epochs);
    memcpy(t->rng.s, rng, sizeof t->rng.s);
    t->sum_loss = d[0]; t->best_val = d[1];
    t->epoch = (int)epoch; t->in_epoch = (int)in_epoch; t->b = b; t->pb = pb; t->seen = seen;
    t->target = s[5]; t->steps = s[6]; t->gstep = s[7]; P->t = s[8]; t->best_epoch = (int)s[9];
    t->done = t->epoch >= t->cfg.epochs;
    t->t0 = sm_now();
    return SM_OK;
}

sm_status sm_trainer_load_checkpoint(sm_trainer *t, const char *path) {
    if (!t) return sm_fail(SM_ERR_INVALID, "sm_trainer_load_checkpoint: trainer is NULL");
    sm_status st;
    if (!path) st = sm_fail(SM_ERR_INVALID, "sm_trainer_load_checkpoint: path is NULL");
    else if (t->gstep || t->failed || t->finished)
        st = sm_fail(SM_ERR_INVALID, "sm_trainer_load_checkpoint: the trainer has already trained");
    else {
        unsigned char *data;
        size_t len;
        st = sm_read_file(path, (size_t)1 << 36, &data, &len);
        if (!st) {
            sm_reader r = {data, data + len, path};
            st = parse(t, &r);
            sm_free(data);
        }
    }
    if (st) sm_errmsg_copy(t->errmsg);
    return st;
}
