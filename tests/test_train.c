/* test_train.c - the epoch samplers and the training loop:
 *   - shuffled plans visit every index exactly once in batches of the requested size;
 *   - P x K plans visit every sample at least once, give each class of a batch exactly
 *     per_class slots, use at most batch / per_class classes a batch, and top up classes with
 *     fewer samples than per_class;
 *   - sm_train is deterministic (same seed -> bit-identical parameters, with augmentation and
 *     with P x K sampling; another seed -> different parameters);
 *   - it learns a tiny separable problem (bright top vs bright bottom) to >= 95% accuracy;
 *   - numeric guards: a diverging run returns SM_ERR_NUMERIC naming the step, with the model
 *     restored to the state after the last good step (all finite);
 *   - argument checks: wrong data shape -> SM_ERR_MISMATCH, a label outside the head ->
 *     SM_ERR_RANGE, bad configurations -> SM_ERR_INVALID (model untouched);
 *   - the error rule of simile.h: every failure leaves a non-empty sm_errmsg() and, on the
 *     handle it was called on, the same message in *_errmsg() (sm_train with a NULL dataset or
 *     loss, sm_model_save to an empty path or a missing folder, sm_gallery_class_info out of
 *     range), kept across a later success; a missing data, model or gallery file gives a
 *     message naming the file. */
#include "core/core.h"
#include "model/model.h"
#include "simile.h"
#include "testing.h"
#include "train/sampler.h"
#include <string.h>

/* ---- samplers ------------------------------------------------------------------------------ */

static void test_shuffled(void) {
    sm_rng rng;
    sm_rng_seed(&rng, 3);
    const int64_t n = 103;
    sm_epoch_plan p;
    CHECK_OK(sm_plan_shuffled(&p, n, 10, &rng));
    CHECK(p.nbatches == 11 && p.total == n);
    int seen[103] = {0}, ok = 1, in_order = 1;
    for (int64_t i = 0; i < p.total; i++) {
        ok &= p.order[i] >= 0 && p.order[i] < n;
        if (p.order[i] >= 0 && p.order[i] < n) seen[p.order[i]]++;
        in_order &= p.order[i] == i;
    }
    for (int i = 0; i < n; i++) ok &= seen[i] == 1;
    CHECK_MSG(ok, "shuffled plan does not cover every index exactly once");
    CHECK_MSG(!in_order, "shuffled plan is not shuffled");
    int sizes = p.starts[0] == 0 && p.starts[p.nbatches] == n;
    for (int64_t b = 0; b < p.nbatches; b++) sizes &= p.starts[b + 1] - p.starts[b] == (b < 10 ? 10 : 3);
    CHECK_MSG(sizes, "batch boundaries wrong");
    /* another epoch from the same stream is another order */
    sm_epoch_plan q;
    CHECK_OK(sm_plan_shuffled(&q, n, 10, &rng));
    CHECK(memcmp(p.order, q.order, sizeof(int64_t) * (size_t)n) != 0);
    sm_plan_free(&q);
    sm_plan_free(&p);
    /* batch larger than n: one batch */
    CHECK_OK(sm_plan_shuffled(&p, 5, 64, &rng));
    CHECK(p.nbatches == 1 && p.starts[1] == 5);
    sm_plan_free(&p);
}

/* Uneven classes for the planners: 0 x17, 1 x3, 2 x8, 3 x1, (4 absent), 5 x9, 6 x4. */
static const int counts[7] = {17, 3, 8, 1, 0, 9, 4};

/* labels (room for 64) in class order; returns their number (42). */
static int uneven_labels(int32_t *labels) {
    int n = 0;
    for (int c = 0; c < 7; c++)
        for (int i = 0; i < counts[c]; i++) labels[n++] = c;
    return n;
}

static void test_pk(void) {
    int32_t labels[64];
    int n = uneven_labels(labels);
    /* interleave to make the file order non-trivial */
    sm_rng rng;
    sm_rng_seed(&rng, 17);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)sm_rng_below(&rng, (uint64_t)i + 1);
        int32_t t = labels[i]; labels[i] = labels[j]; labels[j] = t;
    }
    const int batch = 12, K = 4, P = batch / K;
    for (int rep = 0; rep < 3; rep++) {
        sm_epoch_plan p;
        CHECK_OK(sm_plan_pk(&p, labels, n, batch, K, &rng));
        /* groups: ceil(17/4)=5, 1, 2, 1, 0, 3, 1 -> 13 groups of 4 = 52 slots */
        CHECK_MSG(p.total == 52, "P x K plan has %lld slots, want 52", (long long)p.total);
        int seen[64] = {0}, ok_range = 1, ok_batches = 1, ok_classes = 1, full = 0;
        for (int64_t i = 0; i < p.total; i++) {
            ok_range &= p.order[i] >= 0 && p.order[i] < n;
            if (p.order[i] >= 0 && p.order[i] < n) seen[p.order[i]]++;
        }
        CHECK_MSG(ok_range, "P x K plan index out of range");
        int all = 1;
        for (int i = 0; i < n; i++) all &= seen[i] >= 1;
        CHECK_MSG(all, "P x K plan misses a sample");
        int per_class_slots[7] = {0};
        for (int64_t b = 0; b < p.nbatches; b++) {
            int cnt[7] = {0}, ncls = 0;
            for (int64_t i = p.starts[b]; i < p.starts[b + 1]; i++) cnt[labels[p.order[i]]]++;
            for (int c = 0; c < 7; c++) {
                if (!cnt[c]) continue;
                ncls++;
                ok_batches &= cnt[c] == K;
                per_class_slots[c] += cnt[c];
            }
            ok_classes &= ncls >= 1 && ncls <= P;
            full += ncls == P;
        }
        CHECK_MSG(ok_batches, "a batch has a class with other than %d samples", K);
        CHECK_MSG(ok_classes, "a batch has more than %d classes (or none)", P);
        CHECK_MSG(full >= 3, "only %d batches are full", full);
        /* each class gets ceil(count / K) groups: the small classes 1 (3 samples) and 3 (1 sample)
         * are topped up to K with repeats */
        int ok_slots = 1;
        for (int c = 0; c < 7; c++) ok_slots &= per_class_slots[c] == (counts[c] + K - 1) / K * K;
        CHECK_MSG(ok_slots, "per-class slot counts wrong");
        int only3 = -1;
        for (int i = 0; i < n; i++) if (labels[i] == 3) only3 = i;
        CHECK_MSG(only3 >= 0 && seen[only3] == K, "the single sample of class 3 appears %d times, want %d",
                  only3 >= 0 ? seen[only3] : -1, K);
        sm_plan_free(&p);
    }
    sm_epoch_plan p;
    CHECK_STATUS(sm_plan_pk(&p, labels, n, batch, 0, &rng), SM_ERR_INVALID);
    CHECK_STATUS(sm_plan_pk(&p, labels, n, batch, batch + 1, &rng), SM_ERR_INVALID);
}

/* MPerClassSampler-style plan: whole batches of P distinct classes with K distinct samples each
 * (K with repeats for a class smaller than K), total rounded down to whole batches, every
 * present class drawn at some point, the same plan for the same seed. */
static void test_pk_random(void) {
    int32_t labels[64];
    int n = uneven_labels(labels);
    const int batch = 12, K = 4, P = 3;
    sm_rng rng, rng2;
    sm_rng_seed(&rng, 5);
    sm_rng_seed(&rng2, 5);
    sm_epoch_plan p, q;
    CHECK_OK(sm_plan_pk_random(&p, labels, n, batch, K, 12 * 40 + 7, &rng));
    CHECK_OK(sm_plan_pk_random(&q, labels, n, batch, K, 12 * 40 + 7, &rng2));
    CHECK(p.nbatches == 40 && p.total == 480);
    CHECK(q.total == p.total && !memcmp(p.order, q.order, sizeof(int64_t) * (size_t)p.total));
    int drawn[7] = {0}, ok = 1;
    for (int64_t b = 0; b < p.nbatches; b++) {
        CHECK(p.starts[b + 1] - p.starts[b] == batch);
        int cnt[7] = {0}, ncls = 0;
        for (int64_t i = p.starts[b]; i < p.starts[b + 1]; i++) cnt[labels[p.order[i]]]++;
        for (int c = 0; c < 7; c++) {
            if (!cnt[c]) continue;
            ncls++;
            drawn[c]++;
            ok &= cnt[c] == K;
            if (counts[c] >= K) /* distinct samples */
                for (int64_t i = p.starts[b]; i < p.starts[b + 1]; i++)
                    for (int64_t j = i + 1; j < p.starts[b + 1]; j++)
                        if (labels[p.order[i]] == c) ok &= p.order[i] != p.order[j];
        }
        ok &= ncls == P;
    }
    CHECK_MSG(ok, "a random P x K batch is not %d classes x %d distinct samples", P, K);
    for (int c = 0; c < 7; c++) CHECK_MSG((drawn[c] > 0) == (counts[c] > 0), "class %d drawn %d times", c, drawn[c]);
    sm_plan_free(&p);
    sm_plan_free(&q);
    CHECK_OK(sm_plan_pk_random(&p, labels, n, batch, K, 5, &rng)); /* less than a batch: one batch */
    CHECK(p.nbatches == 1 && p.total == batch);
    sm_plan_free(&p);
    CHECK_STATUS(sm_plan_pk_random(&p, labels, n, batch, 0, 100, &rng), SM_ERR_INVALID);
}

/* ---- training ---------------------------------------------------------------------------- */

static const char *TINY = "conv 3 k=3 p=1; bn; relu; maxpool k=2; gap; fc 4; l2norm";

/* A random dataset of n 6x6x1 images with labels i % classes. */
static sm_dataset *random_dataset(int n, int classes, uint64_t seed, float scale) {
    float *x = malloc(sizeof(float) * (size_t)n * 36);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    sm_rng rng;
    sm_rng_seed(&rng, seed);
    for (int i = 0; i < n * 36; i++) x[i] = scale * (float)sm_rng_uniform(&rng);
    for (int i = 0; i < n; i++) y[i] = i % classes;
    sm_dataset *ds = NULL;
    CHECK_OK(sm_dataset_from_arrays(&ds, x, y, n, 6, 6, 1));
    free(x); free(y);
    return ds;
}

/* Train a fresh TINY model with softmax (4 classes) and return it. */
static sm_model *train_tiny(const sm_dataset *ds, uint64_t seed, int per_class) {
    sm_model *m = NULL;
    sm_loss *loss = NULL;
    CHECK_OK(sm_model_create(&m, TINY, 6, 6, 1, seed));
    if (!m) return NULL;
    CHECK_OK(sm_loss_create(&loss, "softmax", "classes=4", 4, seed + 1));
    sm_train_config c;
    sm_train_config_default(&c);
    c.epochs = 2; c.batch_size = 8; c.seed = seed; c.aug_shift = 1; c.aug_flip = 1; c.per_class = per_class;
    c.schedule = SM_SCHED_COSINE;
    if (loss) CHECK_OK(sm_train(m, loss, ds, &c));
    sm_loss_free(loss);
    return m;
}

static void test_determinism(void) {
    sm_dataset *ds = random_dataset(40, 4, 1, 1.0f);
    if (!ds) return;
    for (int pk = 0; pk <= 2; pk += 2) {
        sm_model *a = train_tiny(ds, 7, pk), *b = train_tiny(ds, 7, pk), *c = train_tiny(ds, 8, pk), *i = NULL;
        CHECK_OK(sm_model_create(&i, TINY, 6, 6, 1, 7));
        if (a && b && c && i) {
            size_t bytes = sizeof(float) * (size_t)a->nparams;
            CHECK_MSG(memcmp(a->params, b->params, bytes) == 0, "same seed, different parameters (per_class %d)", pk);
            CHECK_MSG(memcmp(a->buffers, b->buffers, sizeof(float) * (size_t)a->nbuffers) == 0, "same seed, different bn statistics");
            CHECK_MSG(a->nhead == b->nhead && a->nhead > 0 && memcmp(a->head, b->head, sizeof(float) * (size_t)a->nhead) == 0,
                      "same seed, different heads");
            CHECK_MSG(memcmp(a->params, c->params, bytes) != 0, "another seed gives identical parameters");
            CHECK_MSG(memcmp(a->params, i->params, bytes) != 0, "training did not change the parameters");
            CHECK(sm_all_finite(a->params, a->nparams));
        }
        sm_model_free(a); sm_model_free(b); sm_model_free(c); sm_model_free(i);
    }
    sm_dataset_free(ds);
}

/* EMA: the live trajectory is untouched (same losses step by step as without it), and the
 * trained model is exactly the moving average of the live parameters, recorded step by step
 * from a run without EMA, d = min(decay, (1 + step) / (10 + step)). */
typedef struct ema_rec {
    sm_model *m;
    float *params; /* (steps, nparams) live parameters after each step */
    double *loss;  /* (steps) running loss */
    int steps, cap;
} ema_rec;

static int ema_progress(const sm_train_progress *p, void *user) {
    ema_rec *r = user;
    if (r->steps < r->cap) {
        if (r->params) memcpy(r->params + (size_t)r->steps * r->m->nparams, r->m->params, sizeof(float) * (size_t)r->m->nparams);
        r->loss[r->steps] = p->loss;
    }
    r->steps++;
    return 0;
}

static void test_ema(void) {
    sm_dataset *ds = random_dataset(40, 4, 3, 1.0f);
    if (!ds) return;
    const float decay = 0.8f;
    sm_model *a = NULL, *b = NULL;
    sm_loss *la = NULL, *lb = NULL;
    CHECK_OK(sm_model_create(&a, TINY, 6, 6, 1, 5));
    CHECK_OK(sm_model_create(&b, TINY, 6, 6, 1, 5));
    CHECK_OK(sm_loss_create(&la, "contrastive", "", 4, 6));
    CHECK_OK(sm_loss_create(&lb, "contrastive", "", 4, 6));
    if (!a || !b || !la || !lb) goto out;
    const int cap = 64;
    ema_rec ra = {a, malloc(sizeof(float) * (size_t)(cap + 1) * (size_t)a->nparams), malloc(sizeof(double) * cap), 0, cap};
    ema_rec rb = {b, NULL, malloc(sizeof(double) * cap), 0, cap};
    float *init = malloc(sizeof(float) * (size_t)a->nparams);
    memcpy(init, a->params, sizeof(float) * (size_t)a->nparams);
    sm_train_config c;
    sm_train_config_default(&c);
    c.epochs = 3; c.batch_size = 8; c.per_class = 2; c.seed = 9;
    c.progress = ema_progress;
    c.user = &ra;
    CHECK_OK(sm_train(a, la, ds, &c));
    c.user = &rb;
    c.ema_decay = decay;
    CHECK_OK(sm_train(b, lb, ds, &c));
    CHECK(ra.steps == rb.steps && ra.steps > 5 && ra.steps <= cap);
    int same = ra.steps == rb.steps;
    for (int i = 0; same && i < ra.steps; i++) same &= ra.loss[i] == rb.loss[i];
    CHECK_MSG(same, "EMA changed the live training trajectory");
    /* the average, in the trainer's own float arithmetic */
    double maxdiff = 0, moved = 0;
    for (int64_t j = 0; j < a->nparams; j++) {
        float e = init[j];
        for (int s = 0; s < ra.steps; s++) {
            float d = (1.0f + (float)s) / (10.0f + (float)s);
            if (d > decay) d = decay;
            e = d * e + (1 - d) * ra.params[(size_t)s * a->nparams + j];
        }
        double diff = fabs((double)e - b->params[j]);
        if (diff > maxdiff) maxdiff = diff;
        moved += fabs((double)b->params[j] - a->params[j]);
    }
    CHECK_MSG(maxdiff <= 1e-6, "EMA parameters differ from the recomputed average by %g", maxdiff);
    CHECK_MSG(moved > 1e-4, "the EMA model equals the live one");
    c.ema_decay = 1.0f;
    CHECK_STATUS(sm_train(b, lb, ds, &c), SM_ERR_INVALID);
    free(ra.params); free(ra.loss); free(rb.loss); free(init);
out:
    sm_model_free(a); sm_model_free(b); sm_loss_free(la); sm_loss_free(lb);
    sm_dataset_free(ds);
}

static void test_learns(void) {
    /* 2 classes of 4x4 images: class 0 bright top half, class 1 bright bottom half, plus noise */
    const int n = 64;
    float x[64 * 16];
    int32_t y[64];
    sm_rng rng;
    sm_rng_seed(&rng, 21);
    for (int i = 0; i < n; i++) {
        y[i] = i % 2;
        for (int p = 0; p < 16; p++) {
            int top = p < 8;
            x[i * 16 + p] = (float)((top == (y[i] == 0)) ? 1.0 : 0.0) + 0.15f * sm_rng_normal(&rng);
        }
    }
    sm_dataset *ds = NULL;
    sm_model *m = NULL;
    sm_loss *loss = NULL;
    CHECK_OK(sm_dataset_from_arrays(&ds, x, y, n, 4, 4, 1));
    CHECK_OK(sm_model_create(&m, "conv 4 k=3 p=1; bn; relu; fc 8", 4, 4, 1, 5));
    if (m) CHECK_OK(sm_loss_create(&loss, "softmax", "classes=2", 8, 6));
    if (!ds || !m || !loss) goto out;
    float lg[64 * 2];
    sm_train_config c;
    sm_train_config_default(&c);
    c.epochs = 15; c.batch_size = 16; c.lr = 1e-2f;
    CHECK_OK(sm_train(m, loss, ds, &c));
    CHECK_OK(sm_model_logits(m, x, n, lg));
    int correct = 0;
    for (int i = 0; i < n; i++) correct += (lg[i * 2 + 1] > lg[i * 2]) == (y[i] == 1);
    printf("  separable problem: train accuracy %d/%d\n", correct, n);
    CHECK_MSG(correct >= 61, "train accuracy %d/64 < 95%%", correct);
    CHECK(strcmp(sm_model_loss_name(m), "softmax") == 0 && sm_model_num_classes(m) == 2);
out:
    sm_loss_free(loss);
    sm_model_free(m);
    sm_dataset_free(ds);
}

/* Progress callback that stops training after *(int *)user steps in total. */
static int stop_after(const sm_train_progress *p, void *user) {
    int *left = user;
    return --*left <= 0;
}

static void test_numeric_guard(void) {
    /* inputs of 1e30 through a linear model with SGD: the first step gives parameters of order
     * 1e29, the second step's embeddings overflow to Inf */
    const char *spec = "fc 4";
    sm_dataset *ds = random_dataset(16, 2, 9, 1e30f);
    sm_model *m = NULL, *ref = NULL;
    sm_loss *loss = NULL, *loss2 = NULL;
    CHECK_OK(sm_model_create(&m, spec, 6, 6, 1, 3));
    CHECK_OK(sm_model_create(&ref, spec, 6, 6, 1, 3));
    CHECK_OK(sm_loss_create(&loss, "softmax", "classes=2", 4, 4));
    CHECK_OK(sm_loss_create(&loss2, "softmax", "classes=2", 4, 4));
    if (!ds || !m || !ref || !loss || !loss2) goto out;
    sm_train_config c;
    sm_train_config_default(&c);
    c.optimizer = SM_OPT_SGD; c.lr = 0.1f; c.momentum = 0; c.epochs = 3; c.batch_size = 4;
    sm_status st = sm_train(m, loss, ds, &c);
    CHECK_STATUS(st, SM_ERR_NUMERIC);
    const char *msg = sm_model_errmsg(m);
    const char *at = strstr(msg, "step ");
    long long step = 0;
    CHECK_MSG(at && sscanf(at, "step %lld", &step) == 1 && step >= 1, "message does not name the step: '%s'", msg);
    CHECK(strcmp(msg, sm_errmsg()) == 0);
    CHECK_MSG(sm_all_finite(m->params, m->nparams) && sm_all_finite(m->buffers, m->nbuffers),
              "non-finite parameters after a numeric failure");
    int epoch = 0;
    const char *ep = strstr(msg, "epoch ");
    CHECK(ep && sscanf(ep, "epoch %d", &epoch) == 1 && epoch >= 1);
    /* the model is as it was after the last good step: train the same model the same way and
     * stop it just before the failing step */
    int good = (epoch - 1) * 4 + (int)step - 1; /* 16 samples / batch 4 = 4 steps an epoch */
    CHECK_MSG(good >= 1, "the run failed at its first step; the restore check needs a good step first");
    if (good >= 1) {
        c.progress = stop_after;
        c.user = &good;
        CHECK_OK(sm_train(ref, loss2, ds, &c));
        CHECK_MSG(memcmp(ref->params, m->params, sizeof(float) * (size_t)m->nparams) == 0,
                  "parameters after the failure differ from those after the last good step");
    }
out:
    sm_loss_free(loss); sm_loss_free(loss2);
    sm_model_free(m); sm_model_free(ref);
    sm_dataset_free(ds);
}

/* Counts samples and progress calls per epoch. */
typedef struct epoch_count { int64_t samples[8]; int done_calls; int64_t last_step; } epoch_count;
static int count_progress(const sm_train_progress *p, void *user) {
    epoch_count *e = user;
    /* p->images_per_sec * p->seconds is the samples so far; recover it from the running mean */
    if (p->epoch_done) {
        e->samples[p->epoch - 1] = (int64_t)(p->images_per_sec * p->seconds + 0.5);
        e->done_calls++;
        e->last_step = p->step;
    }
    return 0;
}

/* samples_per_epoch: an epoch draws exactly that many samples from successive passes. */
static void test_samples_per_epoch(void) {
    sm_dataset *ds = random_dataset(40, 4, 3, 1.0f);
    if (!ds) return;
    for (int pk = 0; pk <= 2; pk += 2) {
        sm_model *m = NULL;
        sm_loss *loss = NULL;
        CHECK_OK(sm_model_create(&m, TINY, 6, 6, 1, 1));
        CHECK_OK(sm_loss_create(&loss, "softmax", "classes=4", 4, 1));
        if (m && loss) {
            sm_train_config c;
            sm_train_config_default(&c);
            c.epochs = 2;
            c.batch_size = 8;
            c.per_class = pk;
            c.samples_per_epoch = 100; /* 2.5 passes over 40 samples */
            epoch_count e = {{0}, 0, 0};
            c.progress = count_progress;
            c.user = &e;
            CHECK_OK(sm_train(m, loss, ds, &c));
            CHECK(e.done_calls == 2);
            CHECK_MSG(e.samples[0] == 100 && e.samples[1] == 100, "epoch samples %lld %lld (per_class %d)",
                      (long long)e.samples[0], (long long)e.samples[1], pk);
            CHECK(e.last_step >= 13); /* at least 100 / 8 batches */
            c.samples_per_epoch = -1;
            CHECK_STATUS(sm_train(m, loss, ds, &c), SM_ERR_INVALID);
            c.samples_per_epoch = 0;
            c.warmup_steps = -1;
            CHECK_STATUS(sm_train(m, loss, ds, &c), SM_ERR_INVALID);
            c.warmup_steps = 0;
            c.schedule = (sm_schedule)7; /* not a schedule */
            CHECK_STATUS(sm_train(m, loss, ds, &c), SM_ERR_INVALID);
        }
        sm_loss_free(loss);
        sm_model_free(m);
    }
    sm_dataset_free(ds);
}

static void test_bad_arguments(void) {
    sm_dataset *ds = random_dataset(12, 3, 2, 1.0f), *ds5 = NULL;
    sm_model *m = NULL;
    sm_loss *loss = NULL, *loss2 = NULL, *loss8 = NULL;
    CHECK_OK(sm_model_create(&m, TINY, 6, 6, 1, 1));
    CHECK_OK(sm_loss_create(&loss, "softmax", "classes=3", 4, 1));
    CHECK_OK(sm_loss_create(&loss2, "softmax", "classes=2", 4, 1));
    CHECK_OK(sm_loss_create(&loss8, "softmax", "classes=3", 8, 1));
    float x5[2 * 25] = {0};
    int32_t y5[2] = {0, 1};
    CHECK_OK(sm_dataset_from_arrays(&ds5, x5, y5, 2, 5, 5, 1));
    if (!ds || !m || !loss || !loss2 || !loss8 || !ds5) goto out;
    float *before = malloc(sizeof(float) * (size_t)m->nparams);
    memcpy(before, m->params, sizeof(float) * (size_t)m->nparams);
    sm_train_config c, b;
    sm_train_config_default(&c);
    c.epochs = 1; c.batch_size = 4;
    /* wrong data shape, wrong loss dimension, a label outside the head */
    CHECK_STATUS(sm_train(m, loss, ds5, &c), SM_ERR_MISMATCH);
    CHECK(strstr(sm_model_errmsg(m), "5x5x1") != NULL);
    CHECK_STATUS(sm_train(m, loss8, ds, &c), SM_ERR_MISMATCH);
    CHECK_STATUS(sm_train(m, loss2, ds, &c), SM_ERR_RANGE); /* labels 0..2, head of 2 */
    CHECK(strstr(sm_model_errmsg(m), "label 2") != NULL);
    /* NULL arguments */
    CHECK_STATUS(sm_train(NULL, loss, ds, &c), SM_ERR_INVALID);
    CHECK_STATUS(sm_train(m, NULL, ds, &c), SM_ERR_INVALID);
    CHECK_STATUS(sm_train(m, loss, NULL, &c), SM_ERR_INVALID);
    CHECK_STATUS(sm_train(m, loss, ds, NULL), SM_ERR_INVALID);
    /* bad configurations */
    b = c; b.epochs = 0;                CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.batch_size = 0;            CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.lr = 0;                    CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.lr = -1e-3f;               CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.lr = NAN;                  CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.lr = INFINITY;             CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.weight_decay = -0.1f;      CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.momentum = 1.0f;           CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.optimizer = (sm_optimizer)7; CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.schedule = SM_SCHED_STEP; b.step_epochs = 0; CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.schedule = SM_SCHED_STEP; b.step_epochs = 1; b.step_gamma = 0; CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.per_class = 5;             CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID); /* > batch 4 */
    b = c; b.per_class = -1;            CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    b = c; b.aug_shift = -1;            CHECK_STATUS(sm_train(m, loss, ds, &b), SM_ERR_INVALID);
    CHECK_MSG(memcmp(before, m->params, sizeof(float) * (size_t)m->nparams) == 0, "a rejected call changed the model");
    CHECK(m->nhead == 0 && sm_model_num_classes(m) == 0);
    /* and a good call still works afterwards */
    CHECK_OK(sm_train(m, loss, ds, &c));
    CHECK(sm_model_num_classes(m) == 3);
    free(before);
out:
    sm_loss_free(loss); sm_loss_free(loss2); sm_loss_free(loss8);
    sm_model_free(m);
    sm_dataset_free(ds); sm_dataset_free(ds5);
}

/* The error rule of simile.h: failure -> non-empty sm_errmsg() and the same text on the handle. */
static void test_error_messages(void) {
    sm_dataset *ds = random_dataset(12, 3, 2, 1.0f), *none = NULL;
    sm_model *m = NULL, *ml = NULL;
    sm_loss *loss = NULL;
    sm_gallery *g = NULL, *gl = NULL;
    CHECK_OK(sm_model_create(&m, TINY, 6, 6, 1, 1));
    CHECK_OK(sm_loss_create(&loss, "softmax", "classes=3", 4, 1));
    CHECK_OK(sm_gallery_create(&g, 4, SM_METRIC_L2, 0));
    if (!ds || !m || !loss || !g) goto out;
    CHECK(sm_model_errmsg(m)[0] == 0); /* nothing failed on m yet */
    sm_train_config c;
    sm_train_config_default(&c);
    c.epochs = 1; c.batch_size = 4;
    CHECK_STATUS(sm_train(m, loss, NULL, &c), SM_ERR_INVALID);
    CHECK_MSG(sm_model_errmsg(m)[0] != 0, "sm_train with a NULL dataset left the model's message empty");
    CHECK(strstr(sm_model_errmsg(m), "NULL") != NULL);
    CHECK(strcmp(sm_model_errmsg(m), sm_errmsg()) == 0);
    CHECK_STATUS(sm_train(m, NULL, ds, &c), SM_ERR_INVALID);
    CHECK(strstr(sm_model_errmsg(m), "NULL") != NULL);
    /* a later success keeps the handle's message */
    float x[36] = {0}, e[4];
    CHECK_OK(sm_model_embed(m, x, 1, e));
    CHECK(strstr(sm_model_errmsg(m), "NULL") != NULL);
    /* saving: an empty path, a folder that does not exist */
    CHECK_STATUS(sm_model_save(m, ""), SM_ERR_INVALID);
    CHECK(strstr(sm_model_errmsg(m), "empty path") != NULL);
    CHECK_STATUS(sm_model_save(m, "/nonexistent-simile-dir/m.smm"), SM_ERR_IO);
    CHECK(strstr(sm_model_errmsg(m), "nonexistent-simile-dir") != NULL);
    CHECK(strcmp(sm_model_errmsg(m), sm_errmsg()) == 0);
    /* a gallery query out of range, on a const handle */
    sm_gallery_class info;
    CHECK_STATUS(sm_gallery_class_info(g, 5, &info), SM_ERR_RANGE);
    CHECK(strstr(sm_gallery_errmsg(g), "class slot 5") != NULL);
    CHECK(strcmp(sm_gallery_errmsg(g), sm_errmsg()) == 0);
    /* missing files: no handle comes back, sm_errmsg() names the file */
    CHECK_STATUS(sm_dataset_load_idx(&none, "/nonexistent-simile-dir/img.gz", "/nonexistent-simile-dir/lab.gz"), SM_ERR_IO);
    CHECK(none == NULL);
    CHECK_MSG(strstr(sm_errmsg(), "nonexistent-simile-dir/img.gz") != NULL, "message '%s'", sm_errmsg());
    CHECK(sm_model_load(&ml, "/nonexistent-simile-dir/m.smm") != SM_OK && ml == NULL);
    CHECK_MSG(strstr(sm_errmsg(), "nonexistent-simile-dir/m.smm") != NULL, "message '%s'", sm_errmsg());
    CHECK(sm_gallery_open(&gl, "/nonexistent-simile-dir/g.smg") != SM_OK && gl == NULL);
    CHECK_MSG(strstr(sm_errmsg(), "nonexistent-simile-dir/g.smg") != NULL, "message '%s'", sm_errmsg());
out:
    sm_gallery_free(g);
    sm_loss_free(loss);
    sm_model_free(m);
    sm_dataset_free(ds);
}

int main(void) {
    test_samples_per_epoch();
    sm_set_num_threads(2);
    test_shuffled();
    test_pk();
    test_pk_random();
    test_determinism();
    test_ema();
    test_learns();
    test_numeric_guard();
    test_bad_arguments();
    test_error_messages();
    TEST_MAIN_END();
}
