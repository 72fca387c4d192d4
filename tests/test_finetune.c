/* test_finetune.c - fine-tuning, model selection and checkpoints in the library:
 *   - sm_model_init_from copies exactly the tensors of the same name and shape (bits), leaves
 *     the others as they were, reports each, marks the pretrained layers, and refuses a source
 *     with no matching tensor (SM_ERR_MISMATCH, nothing changed);
 *   - freeze_until: the frozen layers' parameters keep their bits through training (Adam with
 *     weight decay and a weight average), the others move;
 *   - backbone_lr_mult: 0 leaves the pretrained layers' bits; 0.5 moves them by half of what 1
 *     does in one SGD step;
 *   - freeze_bn: scale, shift and running statistics keep their bits, the training forward
 *     equals the inference one, and the backward through the frozen batch norm matches a
 *     central difference of the loss;
 *   - validation and keep_best: the model ends with the store of the epoch of the best recorded
 *     MAP@R, sm_model_selection names it, and a saved and loaded model keeps the record;
 *   - checkpoints: a training saved mid-epoch and continued in a fresh trainer ends with the
 *     bits of an uninterrupted one (P x K sampling, augmentation, cosine schedule, EMA,
 *     keep_best); another spec, other settings, a corrupt file, a validated epoch's MAP@R
 *     that is NaN or outside [0, 1] (checksum valid) and a trainer that already stepped are
 *     refused. */
#include "core/core.h"
#include "loss/loss.h"
#include "model/model.h"
#include "simile.h"
#include "train/trainer.h"
#include "testing.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *SRC = "conv 4 k=3 p=1; bn; relu; maxpool k=2; gap; fc 4; l2norm";
static const char *DST = "conv 4 k=3 p=1; bn; relu; maxpool k=2; gap; fc 6; l2norm";

static sm_dataset *random_dataset_s(int n, int classes, uint64_t seed, float signal) {
    float *x = malloc(sizeof(float) * (size_t)n * 36);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    sm_rng rng;
    sm_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        y[i] = i % classes;
        for (int j = 0; j < 36; j++) x[i * 36 + j] = (float)sm_rng_uniform(&rng) + signal * (float)((j + y[i]) % 4 == 0);
    }
    sm_dataset *ds = NULL;
    CHECK_OK(sm_dataset_from_arrays(&ds, x, y, n, 6, 6, 1));
    free(x); free(y);
    return ds;
}
static sm_dataset *random_dataset(int n, int classes, uint64_t seed) { return random_dataset_s(n, classes, seed, 0.3f); }

static void config(sm_train_config *c) {
    sm_train_config_default(c);
    c->epochs = 2; c->batch_size = 8; c->seed = 5;
}

/* floats of layer i's parameters */
static const float *lp(const sm_model *m, int i) { return m->params + m->layers[i].param_offset; }
static size_t lbytes(const sm_model *m, int i) { return sizeof(float) * (size_t)m->layers[i].nparams; }

static void test_init_from(void) {
    sm_model *src = NULL, *dst = NULL, *fresh = NULL, *other = NULL;
    CHECK_OK(sm_model_create(&src, SRC, 6, 6, 1, 3));
    CHECK_OK(sm_model_create(&dst, DST, 6, 6, 1, 9));
    CHECK_OK(sm_model_create(&fresh, DST, 6, 6, 1, 9));
    CHECK_OK(sm_model_create(&other, "fc 5; l2norm", 6, 6, 1, 1));
    if (!src || !dst || !fresh || !other) goto out;
    for (int j = 0; j < 8; j++) src->buffers[j] = 0.25f * (float)j; /* bn statistics unlike the fresh ones */
    int64_t taken = -1;
    char report[2048];
    CHECK_OK(sm_model_init_from(dst, src, &taken, report, sizeof report));
    CHECK(taken == 6); /* conv weight and bias, bn weight, bias, running mean and variance */
    CHECK(memcmp(lp(dst, 0), lp(src, 0), lbytes(src, 0)) == 0);
    CHECK(memcmp(lp(dst, 1), lp(src, 1), lbytes(src, 1)) == 0);
    CHECK(memcmp(dst->buffers, src->buffers, sizeof(float) * 8) == 0);
    CHECK(memcmp(lp(dst, 5), lp(fresh, 5), lbytes(fresh, 5)) == 0); /* the new head as it was */
    CHECK(dst->layers[0].pretrained && dst->layers[1].pretrained && !dst->layers[5].pretrained);
    CHECK(strstr(report, "taken      1.conv.weight (4, 3, 3, 1)\n") != NULL);
    CHECK(strstr(report, "taken      2.bn.running_var (4)\n") != NULL);
    CHECK(strstr(report, "not taken  6.fc.weight (6, 4): the source's is (4, 4)\n") != NULL);
    CHECK(strstr(report, "not taken  6.fc.bias (6): the source's is (4)\n") != NULL);
    /* nothing in common: refused, nothing copied */
    uint32_t before = sm_model_fingerprint(other);
    CHECK_STATUS(sm_model_init_from(other, src, &taken, report, sizeof report), SM_ERR_MISMATCH);
    CHECK(taken == 0 && sm_model_fingerprint(other) == before && strstr(sm_model_errmsg(other), "no tensor") != NULL);
    CHECK(strstr(report, "not taken  1.fc.weight (5, 36): not in the source\n") != NULL);
    CHECK_STATUS(sm_model_init_from(dst, NULL, NULL, NULL, 0), SM_ERR_INVALID);
    CHECK(sm_model_find_layer(dst, "2") == 2 && sm_model_find_layer(dst, "2.bn") == 2);
    CHECK(sm_model_find_layer(dst, "2.relu") == 0 && sm_model_find_layer(dst, "8") == 0 && sm_model_find_layer(dst, "x") == 0);
out:
    sm_model_free(src); sm_model_free(dst); sm_model_free(fresh); sm_model_free(other);
}

/* Train a copy of DST (pretrained from SRC when init) with cfg; returns the model. */
static sm_model *trained(const sm_train_config *c, int init, sm_dataset *ds, sm_model **before) {
    sm_model *m = NULL, *src = NULL;
    sm_loss *l = NULL;
    CHECK_OK(sm_model_create(&m, DST, 6, 6, 1, 9));
    CHECK_OK(sm_model_create(before, DST, 6, 6, 1, 9));
    CHECK_OK(sm_model_create(&src, SRC, 6, 6, 1, 3));
    CHECK_OK(sm_loss_create(&l, "multisimilarity", "", 6, 2));
    if (!m || !*before || !src || !l) { sm_model_free(src); sm_loss_free(l); return m; }
    if (init) { CHECK_OK(sm_model_init_from(m, src, NULL, NULL, 0)); CHECK_OK(sm_model_init_from(*before, src, NULL, NULL, 0)); }
    CHECK_OK(sm_train(m, l, ds, c));
    sm_model_free(src); sm_loss_free(l);
    return m;
}

static void test_freeze(void) {
    sm_dataset *ds = random_dataset(48, 4, 2);
    sm_train_config c;
    config(&c);
    c.per_class = 4; c.weight_decay = 0.1f; c.ema_decay = 0.9f;
    c.freeze_until = 2; /* conv and bn */
    sm_model *b = NULL, *m = trained(&c, 0, ds, &b);
    if (m && b) {
        CHECK(memcmp(lp(m, 0), lp(b, 0), lbytes(m, 0)) == 0 && memcmp(lp(m, 1), lp(b, 1), lbytes(m, 1)) == 0);
        CHECK(memcmp(lp(m, 5), lp(b, 5), lbytes(m, 5)) != 0);
        CHECK(memcmp(m->buffers, b->buffers, sizeof(float) * 8) != 0); /* statistics still move */
    }
    sm_model_free(m); sm_model_free(b);
    /* backbone multiplier 0: the pretrained layers keep their bits */
    config(&c);
    c.per_class = 4; c.backbone_lr_mult = 0;
    m = trained(&c, 1, ds, &b);
    if (m && b) {
        CHECK(memcmp(lp(m, 0), lp(b, 0), lbytes(m, 0)) == 0 && memcmp(lp(m, 1), lp(b, 1), lbytes(m, 1)) == 0);
        CHECK(memcmp(lp(m, 5), lp(b, 5), lbytes(m, 5)) != 0);
    }
    sm_model_free(m); sm_model_free(b);
    /* 0.5: one SGD step moves the pretrained layers by half as much as 1 does */
    config(&c);
    c.per_class = 4; c.epochs = 1; c.samples_per_epoch = 8; c.optimizer = SM_OPT_SGD; c.momentum = 0; c.lr = 0.1f;
    sm_model *b1 = NULL, *m1 = trained(&c, 1, ds, &b1);
    c.backbone_lr_mult = 0.5f;
    sm_model *b2 = NULL, *m2 = trained(&c, 1, ds, &b2);
    if (m1 && m2 && b1 && b2) {
        double worst = 0, moved = 0;
        for (int64_t k = 0; k < m1->layers[0].nparams; k++) {
            double d1 = (double)lp(m1, 0)[k] - lp(b1, 0)[k], d2 = (double)lp(m2, 0)[k] - lp(b2, 0)[k];
            moved += fabs(d1);
            if (fabs(d1) > 1e-5) { double e = fabs(d2 - 0.5 * d1) / fabs(d1); if (e > worst) worst = e; }
        }
        CHECK_MSG(moved > 1e-4 && worst < 1e-2, "moved %g, worst relative error of the half step %g", moved, worst);
        /* the new head is trained at the full rate in both */
        CHECK(memcmp(lp(m1, 5), lp(m2, 5), lbytes(m1, 5)) == 0);
    }
    sm_model_free(m1); sm_model_free(b1); sm_model_free(m2); sm_model_free(b2);
    sm_dataset_free(ds);
}

static double dot_loss(sm_model *m, const float *x, int n, const float *r) {
    const float *y = sm_model_forward(m, x, n, 1);
    double s = 0;
    for (int i = 0; i < n * m->emb_dim; i++) s += (double)y[i] * r[i];
    return s;
}

static void test_freeze_bn(void) {
    sm_dataset *ds = random_dataset(48, 4, 3);
    sm_train_config c;
    config(&c);
    c.per_class = 4; c.freeze_bn = 1; c.ema_decay = 0.9f;
    sm_model *b = NULL, *m = trained(&c, 1, ds, &b);
    if (m && b) {
        CHECK(memcmp(lp(m, 1), lp(b, 1), lbytes(m, 1)) == 0);           /* gamma, beta */
        CHECK(memcmp(m->buffers, b->buffers, sizeof(float) * 8) == 0); /* running statistics */
        CHECK(memcmp(lp(m, 0), lp(b, 0), lbytes(m, 0)) != 0 && memcmp(lp(m, 5), lp(b, 5), lbytes(m, 5)) != 0);
        CHECK(!m->layers[1].frozen_stats); /* the trainer puts the flag back */
    }
    sm_model_free(b);
    /* the frozen layer's training forward is the inference one, and its backward is exact */
    if (m) {
        const int n = 6;
        const float *x = sm_dataset_images(ds);
        float emb[6 * 6], r[6 * 6];
        sm_rng rng;
        sm_rng_seed(&rng, 11);
        for (int i = 0; i < n * 6; i++) r[i] = sm_rng_normal(&rng);
        CHECK_OK(sm_model_embed(m, x, n, emb));
        CHECK_OK(sm_model_reserve(m, n));
        m->layers[1].frozen_stats = 1;
        float saved[8];
        memcpy(saved, m->buffers, sizeof saved);
        const float *y = sm_model_forward(m, x, n, 1);
        double worst = 0;
        for (int i = 0; i < n * 6; i++) if (fabs(y[i] - emb[i]) > worst) worst = fabs(y[i] - emb[i]);
        CHECK_MSG(worst < 1e-5, "frozen training forward differs from inference by %g", worst);
        CHECK(memcmp(saved, m->buffers, sizeof saved) == 0);
        sm_model_backward(m, x, r, n);
        /* directional derivative along a random direction D of the conv weights */
        const int64_t nw = m->layers[0].nparams;
        float *D = malloc(sizeof(float) * (size_t)nw), *W = m->layers[0].W;
        double analytic = 0;
        for (int64_t k = 0; k < nw; k++) { D[k] = sm_rng_normal(&rng); analytic += (double)D[k] * m->layers[0].dW[k]; }
        const float h = 1e-2f;
        for (int64_t k = 0; k < nw; k++) W[k] += h * D[k];
        double lp1 = dot_loss(m, x, n, r);
        for (int64_t k = 0; k < nw; k++) W[k] -= 2 * h * D[k];
        double lm1 = dot_loss(m, x, n, r);
        for (int64_t k = 0; k < nw; k++) W[k] += h * D[k];
        double numeric = (lp1 - lm1) / (2 * h);
        CHECK_MSG(t_relerr(analytic, numeric) < 2e-2 && fabs(analytic) > 1e-4, "analytic %g, central difference %g",
                  analytic, numeric);
        m->layers[1].frozen_stats = 0;
        free(D);
    }
    sm_model_free(m);
    sm_dataset_free(ds);
}

/* records each epoch's validation MAP@R and the store the callback sees */
typedef struct sel_rec { sm_model *m; double map[8]; float *store; int epochs; } sel_rec;
static int on_epoch(const sm_train_progress *p, void *user) {
    sel_rec *s = user;
    if (!p->epoch_done) return 0;
    CHECK(p->val != NULL);
    if (!p->val || p->epoch > 8) return 0;
    s->map[p->epoch - 1] = p->val->map_at_r;
    memcpy(s->store + (size_t)(p->epoch - 1) * (size_t)s->m->store.n, s->m->store.val, sizeof(float) * (size_t)s->m->store.n);
    s->epochs = p->epoch;
    return 0;
}

static void test_keep_best(void) {
    /* validation classes without structure: their MAP@R wanders from epoch to epoch, and here the
     * best epoch is not the last (checked below, so that keep_best is seen to choose) */
    sm_dataset *ds = random_dataset(48, 4, 4), *val = random_dataset_s(24, 3, 5, 0);
    for (int keep = 0; keep <= 1; keep++) {
        sm_model *m = NULL, *back = NULL;
        sm_loss *l = NULL;
        CHECK_OK(sm_model_create(&m, DST, 6, 6, 1, 9));
        CHECK_OK(sm_loss_create(&l, "multisimilarity", "", 6, 2));
        if (!m || !l || !ds || !val) { sm_model_free(m); sm_loss_free(l); continue; }
        sm_train_config c;
        config(&c);
        c.epochs = 5; c.per_class = 4; c.lr = 0.2f; c.val = val; c.keep_best = keep;
        sel_rec s = {m, {0}, malloc(sizeof(float) * 5 * (size_t)m->store.n), 0};
        c.progress = on_epoch; c.user = &s;
        CHECK_OK(sm_train(m, l, ds, &c));
        CHECK(s.epochs == 5);
        int want = 5;
        if (keep) {
            want = 1;
            for (int e = 2; e <= 5; e++) if (s.map[e - 1] > s.map[want - 1]) want = e;
            CHECK_MSG(want < 5, "the last epoch is the best here: the test would not tell keep_best from the last");
        }
        double fig = -1;
        int best = -1;
        CHECK(sm_model_selection(m, &fig, &best) == want && fig == s.map[want - 1] && best == keep);
        CHECK_MSG(memcmp(m->store.val, s.store + (size_t)(want - 1) * (size_t)m->store.n, sizeof(float) * (size_t)m->store.n) == 0,
                  "keep_best %d: the model is not epoch %d's", keep, want);
        char path[64];
        snprintf(path, sizeof path, "/tmp/test_finetune_%d.smm", (int)getpid());
        CHECK_OK(sm_model_save(m, path));
        CHECK_OK(sm_model_load(&back, path));
        double fig2 = -1;
        int best2 = -1;
        CHECK(back && sm_model_selection(back, &fig2, &best2) == want && fig2 == fig && best2 == keep);
        remove(path);
        free(s.store);
        sm_model_free(back); sm_model_free(m); sm_loss_free(l);
    }
    /* keep_best without validation data is refused */
    sm_train_config c;
    config(&c);
    c.keep_best = 1;
    sm_model *m = NULL;
    sm_loss *l = NULL;
    sm_trainer *t = NULL;
    CHECK_OK(sm_model_create(&m, DST, 6, 6, 1, 9));
    CHECK_OK(sm_loss_create(&l, "multisimilarity", "", 6, 2));
    CHECK_STATUS(sm_trainer_create(&t, m, l, ds, &c), SM_ERR_INVALID);
    sm_model_free(m); sm_loss_free(l);
    sm_dataset_free(ds); sm_dataset_free(val);
}

static void setup_ckpt(sm_model **m, sm_loss **l, const char *spec, int d) {
    *m = NULL; *l = NULL;
    CHECK_OK(sm_model_create(m, spec, 6, 6, 1, 9));
    CHECK_OK(sm_loss_create(l, "multisimilarity", "", d, 2));
}

static void test_checkpoint(void) {
    sm_dataset *ds = random_dataset(52, 4, 6), *val = random_dataset(24, 3, 7);
    sm_train_config c;
    config(&c);
    c.epochs = 3; c.per_class = 4; c.aug_shift = 1; c.aug_flip = 1; c.schedule = SM_SCHED_COSINE; c.warmup_steps = 3;
    c.ema_decay = 0.8f; c.val = val; c.keep_best = 1; c.weight_decay = 0.01f;
    char path[64], bad[64];
    snprintf(path, sizeof path, "/tmp/test_finetune_%d.ckpt", (int)getpid());
    snprintf(bad, sizeof bad, "/tmp/test_finetune_%d.bad", (int)getpid());
    sm_model *a, *b, *r;
    sm_loss *la, *lb, *lr;
    setup_ckpt(&a, &la, DST, 6); setup_ckpt(&b, &lb, DST, 6); setup_ckpt(&r, &lr, DST, 6);
    if (!a || !b || !r || !la || !lb || !lr) goto out;
    CHECK_OK(sm_train(a, la, ds, &c)); /* uninterrupted */
    /* interrupted after 10 steps (mid-epoch 2: 8 steps an epoch), then continued in a fresh trainer */
    sm_trainer *t = NULL;
    CHECK_OK(sm_trainer_create(&t, b, lb, ds, &c));
    sm_train_step_info s = {0};
    for (int k = 0; k < 10 && t; k++) CHECK_OK(sm_trainer_step(t, &s));
    CHECK(s.epoch == 2 && !s.epoch_done);
    if (t) CHECK_OK(sm_trainer_save_checkpoint(t, path));
    if (t) CHECK_STATUS(sm_trainer_load_checkpoint(t, path), SM_ERR_INVALID); /* it has stepped */
    sm_trainer_free(t);
    t = NULL;
    CHECK_OK(sm_trainer_create(&t, r, lr, ds, &c));
    if (t) {
        CHECK_OK(sm_trainer_load_checkpoint(t, path));
        s.done = 0;
        int k = 0;
        while (!s.done && k++ < 100) CHECK_OK(sm_trainer_step(t, &s));
        CHECK(s.done && s.epoch == 3 && s.global_step == 24);
        CHECK_OK(sm_trainer_finish(t));
        sm_trainer_free(t);
        CHECK_MSG(memcmp(a->store.val, r->store.val, sizeof(float) * (size_t)a->store.n) == 0,
                  "the resumed training's model differs from the uninterrupted one");
        CHECK(sm_model_selection(a, NULL, NULL) == sm_model_selection(r, NULL, NULL) && sm_model_selection(r, NULL, NULL) > 0);
    }
    /* sm_train's resume path, from the same checkpoint */
    sm_model *q; sm_loss *lq;
    setup_ckpt(&q, &lq, DST, 6);
    sm_train_config cr = c;
    cr.resume = path;
    if (q && lq) {
        CHECK_OK(sm_train(q, lq, ds, &cr));
        CHECK(memcmp(a->store.val, q->store.val, sizeof(float) * (size_t)a->store.n) == 0);
    }
    sm_model_free(q); sm_loss_free(lq);
    /* a version-1 checkpoint (one fingerprint of fewer settings where version 2 has its groups),
     * made from the version-2 file, still resumes to the same bits; with a wrong fingerprint it
     * is refused */
    {
        char v1[64];
        snprintf(v1, sizeof v1, "/tmp/test_finetune_%d.v1", (int)getpid());
        unsigned char *d2 = NULL;
        size_t n2 = 0;
        CHECK_OK(sm_read_file(path, (size_t)1 << 30, &d2, &n2));
        sm_model *q1; sm_loss *lq1;
        setup_ckpt(&q1, &lq1, DST, 6);
        sm_trainer *t1 = NULL;
        if (q1 && lq1) CHECK_OK(sm_trainer_create(&t1, q1, lq1, ds, &c));
        if (d2 && t1) {
            size_t at = 12; /* magic, version */
            for (int k = 0; k < 3; k++) at += 4 + sm_get_u32le(d2 + at); /* spec, loss, options */
            at += 12;                                                     /* h, w, c */
            CHECK(sm_get_u32le(d2 + at) == SM_CKPT_NGROUPS);
            size_t skip = 4 + 4 * SM_CKPT_NGROUPS, n1 = n2 - skip + 4;
            unsigned char *d1 = malloc(n1);
            memcpy(d1, d2, at);
            d1[8] = 1; d1[9] = d1[10] = d1[11] = 0;
            uint32_t fp = sm_trainer_config_crc_v1(t1);
            for (int k = 0; k < 4; k++) d1[at + k] = (unsigned char)(fp >> (8 * k));
            memcpy(d1 + at + 4, d2 + at + skip, n2 - at - skip - 4);
            uint32_t crc = sm_crc32(0, d1, n1 - 4);
            for (int k = 0; k < 4; k++) d1[n1 - 4 + k] = (unsigned char)(crc >> (8 * k));
            FILE *f = fopen(v1, "wb");
            CHECK(f && fwrite(d1, 1, n1, f) == n1);
            if (f) fclose(f);
            CHECK_OK(sm_trainer_load_checkpoint(t1, v1));
            s.done = 0;
            int k = 0;
            while (!s.done && k++ < 100) CHECK_OK(sm_trainer_step(t1, &s));
            CHECK_OK(sm_trainer_finish(t1));
            CHECK_MSG(memcmp(a->store.val, q1->store.val, sizeof(float) * (size_t)a->store.n) == 0,
                      "the training resumed from a version-1 checkpoint differs from the uninterrupted one");
            sm_trainer_free(t1);
            t1 = NULL;
            fp ^= 1;
            for (int k2 = 0; k2 < 4; k2++) d1[at + k2] = (unsigned char)(fp >> (8 * k2));
            crc = sm_crc32(0, d1, n1 - 4);
            for (int k2 = 0; k2 < 4; k2++) d1[n1 - 4 + k2] = (unsigned char)(crc >> (8 * k2));
            f = fopen(v1, "wb");
            CHECK(f && fwrite(d1, 1, n1, f) == n1);
            if (f) fclose(f);
            sm_model_free(q1); sm_loss_free(lq1);
            setup_ckpt(&q1, &lq1, DST, 6);
            if (q1 && lq1) CHECK_OK(sm_trainer_create(&t1, q1, lq1, ds, &c));
            if (t1) {
                CHECK_STATUS(sm_trainer_load_checkpoint(t1, v1), SM_ERR_MISMATCH);
                CHECK(strstr(sm_trainer_errmsg(t1), "version 1") != NULL);
            }
            free(d1);
        }
        sm_trainer_free(t1); sm_model_free(q1); sm_loss_free(lq1);
        sm_free(d2);
        remove(v1);
    }
    /* each group of settings is fingerprinted and named: an augmentation option, the data's
     * values (another normalisation), the validation set */
    {
        sm_train_config cv[3];
        const char *want[3] = {"its augmentation (shift, flip, crop, colour jitter, erasing) differs",
                               "its training data (images, labels, size, channels, normalisation)", /* and the shift's fill */
                               "its validation (its images and labels, keep-best, the layer it embeds at) differs"};
        sm_dataset *ds2 = random_dataset(52, 4, 6);
        for (int k = 0; k < 3; k++) cv[k] = c;
        cv[0].aug.erase_p = 0.5f;
        if (ds2) CHECK_OK(sm_dataset_normalize(ds2, 0.5f, 2.0f));
        cv[2].keep_best = 0;
        for (int k = 0; k < 3; k++) {
            sm_model *o; sm_loss *lo;
            setup_ckpt(&o, &lo, DST, 6);
            sm_trainer *tk = NULL;
            if (o && lo && ds2) CHECK_OK(sm_trainer_create(&tk, o, lo, k == 1 ? ds2 : ds, &cv[k]));
            if (tk) {
                CHECK_STATUS(sm_trainer_load_checkpoint(tk, path), SM_ERR_MISMATCH);
                CHECK_MSG(strstr(sm_trainer_errmsg(tk), want[k]) != NULL, "refusal %d: %s", k, sm_trainer_errmsg(tk));
            }
            sm_trainer_free(tk); sm_model_free(o); sm_loss_free(lo);
        }
        sm_dataset_free(ds2);
    }
    /* refusals: another spec, other settings, a corrupt file, a missing one */
    sm_model *o; sm_loss *lo;
    setup_ckpt(&o, &lo, SRC, 4);
    t = NULL;
    if (o && lo) CHECK_OK(sm_trainer_create(&t, o, lo, ds, &c));
    if (t) {
        CHECK_STATUS(sm_trainer_load_checkpoint(t, path), SM_ERR_MISMATCH);
        CHECK(strstr(sm_trainer_errmsg(t), "model spec") != NULL);
    }
    sm_trainer_free(t); sm_model_free(o); sm_loss_free(lo);
    setup_ckpt(&o, &lo, DST, 6);
    sm_train_config c2 = c;
    c2.seed = 6;
    t = NULL;
    if (o && lo) CHECK_OK(sm_trainer_create(&t, o, lo, ds, &c2));
    if (t) CHECK_STATUS(sm_trainer_load_checkpoint(t, path), SM_ERR_MISMATCH);
    sm_trainer_free(t);
    t = NULL;
    if (o && lo) CHECK_OK(sm_trainer_create(&t, o, lo, ds, &c));
    unsigned char *data = NULL;
    size_t len = 0;
    CHECK_OK(sm_read_file(path, (size_t)1 << 30, &data, &len));
    if (t && data && len > 100) {
        data[len / 2] ^= 0x10;
        FILE *f = fopen(bad, "wb");
        CHECK(f && fwrite(data, 1, len, f) == len);
        if (f) fclose(f);
        CHECK_STATUS(sm_trainer_load_checkpoint(t, bad), SM_ERR_FORMAT);
        CHECK(strstr(sm_trainer_errmsg(t), "checksum") != NULL);
        f = fopen(bad, "wb");
        CHECK(f && fwrite(data, 1, len / 3, f) == len / 3);
        if (f) fclose(f);
        CHECK_STATUS(sm_trainer_load_checkpoint(t, bad), SM_ERR_FORMAT);
        CHECK_STATUS(sm_trainer_load_checkpoint(t, "/nonexistent/x.ckpt"), SM_ERR_IO);
        /* val_history of an epoch already done must be a MAP@R in [0, 1] (a fuzz_checkpoint find
         * of 2026-12-03: NaN there loaded, and the finished model's selection MAP@R was NaN);
         * the checkpoint is from epoch 2, so entry 0 is epoch 1's.  Checksum recomputed. */
        static const char name[] = "val_history";
        size_t at = 0;
        for (size_t i = 0; i + sizeof name - 1 + 8 + 8 <= len - 4; i++)
            if (!memcmp(data + i, name, sizeof name - 1)) at = i + sizeof name - 1 + 8; /* the last one */
        CHECK(at > 0);
        data[len / 2] ^= 0x10; /* undo the flip above */
        const double bad_values[] = {NAN, 1.5, -0.25};
        for (int v = 0; v < 3 && at > 0; v++) {
            double old;
            memcpy(&old, data + at, sizeof old);
            CHECK(old >= 0 && old <= 1); /* the saved value, in range */
            memcpy(data + at, &bad_values[v], sizeof(double));
            uint32_t crc = sm_crc32(0, data, len - 4);
            unsigned char keep[4];
            memcpy(keep, data + len - 4, 4);
            for (int k = 0; k < 4; k++) data[len - 4 + k] = (unsigned char)(crc >> (8 * k));
            f = fopen(bad, "wb");
            CHECK(f && fwrite(data, 1, len, f) == len);
            if (f) fclose(f);
            CHECK_STATUS(sm_trainer_load_checkpoint(t, bad), SM_ERR_FORMAT);
            memcpy(data + at, &old, sizeof old);
            memcpy(data + len - 4, keep, 4);
        }
        f = fopen(bad, "wb"); /* restored, it loads */
        CHECK(f && fwrite(data, 1, len, f) == len);
        if (f) fclose(f);
        sm_trainer *t2 = NULL;
        sm_model *o2; sm_loss *lo2;
        setup_ckpt(&o2, &lo2, DST, 6);
        if (o2 && lo2) CHECK_OK(sm_trainer_create(&t2, o2, lo2, ds, &c));
        if (t2) CHECK_OK(sm_trainer_load_checkpoint(t2, bad));
        sm_trainer_free(t2); sm_model_free(o2); sm_loss_free(lo2);
        CHECK(t->gstep == 0); /* refused loads change nothing: the trainer still trains from the start */
    }
    sm_free(data);
    sm_trainer_free(t); sm_model_free(o); sm_loss_free(lo);
    remove(path); remove(bad);
out:
    sm_model_free(a); sm_model_free(b); sm_model_free(r);
    sm_loss_free(la); sm_loss_free(lb); sm_loss_free(lr);
    sm_dataset_free(ds); sm_dataset_free(val);
}

int main(void) {
    sm_set_num_threads(1);
    test_init_from();
    test_freeze();
    test_freeze_bn();
    test_keep_best();
    test_checkpoint();
    TEST_MAIN_END();
}
