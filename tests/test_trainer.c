/* test_trainer.c - the step API (sm_trainer_*):
 *   - k steps of a trainer leave exactly the parameters (the whole store: layers, head, bn
 *     statistics) that sm_train has after its first k steps, bit for bit, and a trainer run to
 *     the end then finished gives sm_train's model and loss parameters bit for bit (with
 *     augmentation, a schedule, a head and EMA);
 *   - the gradient hook is called once a step, before the optimiser, with every trainable
 *     gradient in one block (the store's: layers then head); what it writes is what the
 *     optimiser uses (zeroed gradients: SGD without momentum leaves the parameters alone); a non-zero return
 *     stops with SM_ERR_INVALID, the step undone and a message;
 *   - refusals: NULL out/model/loss/dataset/config, a bad config, stepping a finished or
 *     failed trainer, finishing twice; each with sm_errmsg() (and the trainer's message when
 *     the trainer is given); sm_trainer_free(NULL) is a no-op;
 *   - a trainer freed without sm_trainer_finish leaves the model's previous head, and gives the
 *     loss its trained parameters. */
#include "core/core.h"
#include "loss/loss.h"
#include "model/model.h"
#include "simile.h"
#include "testing.h"
#include <stdlib.h>
#include <string.h>

static const char *TINY = "conv 3 k=3 p=1; bn; relu; maxpool k=2; gap; fc 4; l2norm";

static sm_dataset *random_dataset(int n, int classes, uint64_t seed) {
    float *x = malloc(sizeof(float) * (size_t)n * 36);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    sm_rng rng;
    sm_rng_seed(&rng, seed);
    for (int i = 0; i < n * 36; i++) x[i] = (float)sm_rng_uniform(&rng);
    for (int i = 0; i < n; i++) y[i] = i % classes;
    sm_dataset *ds = NULL;
    CHECK_OK(sm_dataset_from_arrays(&ds, x, y, n, 6, 6, 1));
    free(x); free(y);
    return ds;
}

static void config(sm_train_config *c) {
    sm_train_config_default(c);
    c->epochs = 2; c->batch_size = 8; c->seed = 5; c->aug_shift = 1; c->aug_flip = 1;
    c->schedule = SM_SCHED_COSINE; c->warmup_steps = 2;
}

/* Records the whole store after each of sm_train's steps. */
typedef struct rec { sm_model *m; float *vals; int steps, cap; } rec;
static int record(const sm_train_progress *p, void *user) {
    (void)p;
    rec *r = user;
    if (r->steps < r->cap)
        memcpy(r->vals + (size_t)r->steps * (size_t)r->m->store.n, r->m->store.val, sizeof(float) * (size_t)r->m->store.n);
    r->steps++;
    return 0;
}

static void test_steps_equal_train(void) {
    sm_dataset *ds = random_dataset(44, 4, 2);
    if (!ds) return;
    for (int ema = 0; ema <= 1; ema++) {
        sm_model *a = NULL, *b = NULL;
        sm_loss *la = NULL, *lb = NULL;
        CHECK_OK(sm_model_create(&a, TINY, 6, 6, 1, 3));
        CHECK_OK(sm_model_create(&b, TINY, 6, 6, 1, 3));
        CHECK_OK(sm_loss_create(&la, "softmax", "classes=4", 4, 4));
        CHECK_OK(sm_loss_create(&lb, "softmax", "classes=4", 4, 4));
        if (!a || !b || !la || !lb) goto next;
        sm_train_config c;
        config(&c);
        c.ema_decay = ema ? 0.9f : 0;
        /* reference: sm_train, recording the store after every step (44 / 8 -> 6 steps an epoch) */
        rec r = {a, NULL, 0, 12};
        int64_t n = a->nparams + la->nparams + a->nbuffers;
        r.vals = malloc(sizeof(float) * (size_t)(r.cap * n));
        c.progress = record; c.user = &r;
        CHECK_OK(sm_train(a, la, ds, &c));
        CHECK(r.steps == 12);
        c.progress = NULL; c.user = NULL;
        sm_trainer *t = NULL;
        CHECK_OK(sm_trainer_create(&t, b, lb, ds, &c));
        if (!t) { free(r.vals); goto next; }
        CHECK(b->store.n == n);
        sm_train_step_info s = {0};
        int same = 1, k = 0;
        while (!s.done) {
            CHECK_OK(sm_trainer_step(t, &s));
            /* at an epoch's end sm_train's callback sees the average: compare live steps only */
            if (k < r.cap && !(ema && s.epoch_done))
                same &= memcmp(r.vals + (size_t)k * (size_t)n, b->store.val, sizeof(float) * (size_t)n) == 0;
            k++;
            if (k > 100) break;
        }
        CHECK_MSG(same, "ema %d: trainer steps differ from sm_train's", ema);
        CHECK(k == 12 && s.global_step == 12 && s.epoch == 2 && s.step == 6 && s.steps_per_epoch == 6);
        CHECK(s.batch == 4 && s.epoch_done && !s.stopped); /* 44 = 5 x 8 + 4 */
        CHECK_OK(sm_trainer_finish(t));
        CHECK(b->store.m != NULL);
        sm_trainer_free(t);
        CHECK(b->store.m == NULL && b->store.v == NULL); /* the moments go with the trainer */
        CHECK(a->nhead == b->nhead && a->nhead == la->nparams && sm_model_num_classes(b) == 4);
        CHECK_MSG(memcmp(a->store.val, b->store.val, sizeof(float) * (size_t)n) == 0, "ema %d: finished model differs", ema);
        CHECK(memcmp(la->params, lb->params, sizeof(float) * (size_t)la->nparams) == 0);
        CHECK(lb->params != b->head && memcmp(lb->params, b->head, sizeof(float) * (size_t)lb->nparams) == 0);
        CHECK(strcmp(sm_model_loss_name(b), "softmax") == 0 && sm_model_fingerprint(a) == sm_model_fingerprint(b));
        free(r.vals);
    next:
        sm_model_free(a); sm_model_free(b); sm_loss_free(la); sm_loss_free(lb);
    }
    sm_dataset_free(ds);
}

typedef struct hook_ctx { sm_model *m; int calls, zero, refuse; int64_t count; const float *ptr; double norm; } hook_ctx;
static int hook(float *g, int64_t count, void *user) {
    hook_ctx *h = user;
    h->calls++;
    h->count = count;
    h->ptr = g;
    h->norm = 0;
    for (int64_t i = 0; i < count; i++) h->norm += (double)g[i] * g[i];
    if (h->zero) memset(g, 0, sizeof(float) * (size_t)count);
    return h->refuse;
}

static void test_hook(void) {
    sm_dataset *ds = random_dataset(24, 3, 7);
    sm_model *m = NULL;
    sm_loss *l = NULL;
    CHECK_OK(sm_model_create(&m, TINY, 6, 6, 1, 3));
    CHECK_OK(sm_loss_create(&l, "softmax", "classes=3", 4, 4));
    if (!ds || !m || !l) goto out;
    sm_train_config c;
    config(&c);
    c.optimizer = SM_OPT_SGD; c.momentum = 0; c.aug_shift = 0; c.aug_flip = 0;
    hook_ctx h = {m, 0, 0, 0, 0, NULL, 0};
    c.grad_hook = hook; c.user = &h;
    sm_trainer *t = NULL;
    CHECK_OK(sm_trainer_create(&t, m, l, ds, &c));
    if (!t) goto out;
    sm_train_step_info s;
    CHECK_OK(sm_trainer_step(t, &s));
    CHECK(h.calls == 1 && h.count == m->nparams + l->nparams && h.ptr == m->grads && h.norm > 0);
    CHECK(l->grads == m->grads + m->nparams); /* the loss's gradient is the store's head segment */
    CHECK_OK(sm_trainer_step(t, &s));
    CHECK(h.calls == 2);
    /* zeroed gradients: plain SGD (no momentum, no weight decay) leaves the parameters as they were */
    float *before = malloc(sizeof(float) * (size_t)(m->nparams + l->nparams));
    memcpy(before, m->store.val, sizeof(float) * (size_t)(m->nparams + l->nparams));
    h.zero = 1;
    CHECK_OK(sm_trainer_step(t, &s));
    CHECK(h.calls == 3);
    CHECK_MSG(memcmp(before, m->store.val, sizeof(float) * (size_t)(m->nparams + l->nparams)) == 0,
              "the optimiser did not use the gradients the hook wrote");
    /* refusal: the step is undone (bn statistics included) and the trainer stops */
    h.zero = 0; h.refuse = 3;
    float *all = malloc(sizeof(float) * (size_t)m->store.n);
    memcpy(all, m->store.val, sizeof(float) * (size_t)m->store.n);
    CHECK_STATUS(sm_trainer_step(t, &s), SM_ERR_INVALID);
    CHECK(strstr(sm_errmsg(), "gradient hook returned 3") != NULL);
    CHECK(strcmp(sm_trainer_errmsg(t), sm_errmsg()) == 0);
    CHECK(memcmp(all, m->store.val, sizeof(float) * (size_t)m->store.n) == 0);
    CHECK_STATUS(sm_trainer_step(t, &s), SM_ERR_INVALID);
    CHECK(strstr(sm_trainer_errmsg(t), "earlier step failed") != NULL);
    CHECK_STATUS(sm_trainer_finish(t), SM_ERR_INVALID);
    CHECK(h.calls == 4);
    sm_trainer_free(t);
    /* not finished: the model keeps its previous head (none); the loss has its parameters */
    CHECK(m->nhead == 0 && m->head == NULL && sm_model_num_classes(m) == 0);
    CHECK(l->own_params == NULL && l->params != NULL);
    free(before); free(all);
out:
    sm_model_free(m); sm_loss_free(l); sm_dataset_free(ds);
}

static void test_refusals(void) {
    sm_dataset *ds = random_dataset(16, 2, 9);
    sm_model *m = NULL;
    sm_loss *l = NULL;
    CHECK_OK(sm_model_create(&m, TINY, 6, 6, 1, 3));
    CHECK_OK(sm_loss_create(&l, "multisimilarity", "", 4, 4));
    if (!ds || !m || !l) goto out;
    sm_train_config c;
    config(&c);
    c.epochs = 1;
    sm_trainer *t = (sm_trainer *)&c; /* set to NULL by a failing create */
    CHECK_STATUS(sm_trainer_create(NULL, m, l, ds, &c), SM_ERR_INVALID);
    CHECK(strstr(sm_errmsg(), "out is NULL") != NULL);
    CHECK_STATUS(sm_trainer_create(&t, NULL, l, ds, &c), SM_ERR_INVALID);
    CHECK(t == NULL && strstr(sm_errmsg(), "model is NULL") != NULL);
    CHECK_STATUS(sm_trainer_create(&t, m, NULL, ds, &c), SM_ERR_INVALID);
    CHECK(strstr(sm_errmsg(), "NULL loss") != NULL);
    CHECK_STATUS(sm_trainer_create(&t, m, l, NULL, &c), SM_ERR_INVALID);
    CHECK_STATUS(sm_trainer_create(&t, m, l, ds, NULL), SM_ERR_INVALID);
    c.epochs = 0;
    CHECK_STATUS(sm_trainer_create(&t, m, l, ds, &c), SM_ERR_INVALID);
    CHECK(strstr(sm_errmsg(), "epochs") != NULL && t == NULL);
    c.epochs = 1;
    sm_loss *l8 = NULL;
    CHECK_OK(sm_loss_create(&l8, "multisimilarity", "", 8, 4));
    CHECK_STATUS(sm_trainer_create(&t, m, l8, ds, &c), SM_ERR_MISMATCH);
    sm_loss_free(l8);
    CHECK_STATUS(sm_trainer_step(NULL, NULL), SM_ERR_INVALID);
    CHECK(strstr(sm_errmsg(), "trainer is NULL") != NULL);
    CHECK_STATUS(sm_trainer_finish(NULL), SM_ERR_INVALID);
    CHECK(strcmp(sm_trainer_errmsg(NULL), "") == 0);
    sm_trainer_free(NULL);
    /* one epoch of 16 / 8 steps (P x K off); then stepping is refused */
    CHECK_OK(sm_trainer_create(&t, m, l, ds, &c));
    if (!t) goto out;
    sm_train_step_info s = {0};
    int k = 0;
    while (!s.done && k < 10) { CHECK_OK(sm_trainer_step(t, NULL)); CHECK_OK(sm_trainer_step(t, &s)); k++; }
    CHECK(k == 1 && s.global_step == 2 && s.done);
    CHECK_STATUS(sm_trainer_step(t, &s), SM_ERR_INVALID);
    CHECK(strstr(sm_trainer_errmsg(t), "training is done") != NULL);
    CHECK(strcmp(sm_trainer_errmsg(t), sm_errmsg()) == 0);
    CHECK_OK(sm_trainer_finish(t));
    CHECK_STATUS(sm_trainer_finish(t), SM_ERR_INVALID);
    CHECK(strstr(sm_trainer_errmsg(t), "already finished") != NULL);
    sm_trainer_free(t);
    CHECK(strcmp(sm_model_loss_name(m), "multisimilarity") == 0 && m->nhead == 0);
out:
    sm_model_free(m); sm_loss_free(l); sm_dataset_free(ds);
}

int main(void) {
    sm_set_num_threads(1);
    test_steps_equal_train();
    test_hook();
    test_refusals();
    TEST_MAIN_END();
}
