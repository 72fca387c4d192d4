/* mpi_train.c - data-parallel training on 2 ranks (run by mpirun -np 2, one thread a rank;
 * tests/CMakeLists.txt, label mpi) against one process on the same global batches: cnn-s trained
 * 20 steps with multi-similarity (P x K batches), softmax cross-entropy and ArcFace (class
 * weights in the store's head):
 *   - every rank holds the same store (layers, head, batch-norm statistics) bit for bit after
 *     each step;
 *   - with the default optimiser (Adam, lr 1e-3) against one process with grad_shards = 2 (each
 *     sum over the batch computed as the two ranks compute it): the per-step losses and the final
 *     store are the same bits (and so within the 1e-5 of the issue);
 *   - with SGD and momentum against one process without shards: the per-step losses within 1e-5
 *     relative and the final store within 1e-5 (the two add the same numbers in different
 *     groupings, a rank's partial sums then the ranks', so they agree to rounding, not to the
 *     bit; the learning rates are ones at which 20 steps do not amplify rounding past 1e-5,
 *     docs/distributed.md, "What to expect");
 *   - a step that diverges stops both ranks at the same step with SM_ERR_NUMERIC, the store as
 *     it was after the last good step;
 *   - the sums over ranks (all-gathered, or a reduce-scatter and an all-gather) are rank 0's
 *     values plus rank 1's, bit for bit;
 *   - a batch smaller than the group, and grad_shards other than 0 or 2 on 2 ranks, are refused
 *     with a message. */
#include "core/core.h"
#include "dist/dist.h"
#include "model/model.h"
#include "simile.h"
#include "testing.h"
#include <string.h>

#define STEPS 20
#define N 240
#define CLASSES 5
#define S 20 /* image side */

/* Images of 5 classes: a class's pattern (a bright square at a class-dependent place) plus noise. */
static sm_dataset *make_data(void) {
    float *x = malloc(sizeof(float) * N * S * S);
    int32_t *y = malloc(sizeof(int32_t) * N);
    sm_rng rng;
    sm_rng_seed(&rng, 11);
    for (int i = 0; i < N; i++) {
        int c = i % CLASSES;
        y[i] = c;
        for (int p = 0; p < S * S; p++) {
            int r = p / S, q = p % S, on = r >= 3 * c && r < 3 * c + 6 && q >= 7 && q < 13;
            x[i * S * S + p] = (on ? 1.0f : 0.0f) + 0.5f * (float)sm_rng_uniform(&rng) - 0.25f;
        }
    }
    sm_dataset *ds = NULL;
    CHECK_OK(sm_dataset_from_arrays(&ds, x, y, N, S, S, 1));
    free(x); free(y);
    return ds;
}

/* STEPS steps of a fresh cnn-s with loss `name` over group g (NULL: this process alone): the
 * per-step losses into loss[STEPS]; the final store is returned (malloc'd, *n floats). */
static float *train(sm_dist *g, const sm_dataset *ds, const char *name, const char *opts, int per_class, float lr,
                    int shards, double *loss, int64_t *n, sm_dist *check_sync) {
    sm_model *m = NULL;
    sm_loss *l = NULL;
    sm_trainer *t = NULL;
    float *out = NULL;
    CHECK_OK(sm_model_create(&m, "cnn-s", S, S, 1, 7));
    CHECK_OK(sm_loss_create(&l, name, opts, 64, 8));
    if (!m || !l) goto done;
    sm_train_config c;
    sm_train_config_default(&c);
    c.epochs = 10;
    c.batch_size = 30;
    c.per_class = per_class;
    c.seed = 3;
    c.dist = g;
    if (lr > 0) { /* else the defaults: Adam, lr 1e-3 */
        c.optimizer = SM_OPT_SGD; /* momentum 0.9 */
        c.lr = lr;
    }
    c.grad_shards = shards;
    CHECK_OK(sm_trainer_create(&t, m, l, ds, &c));
    if (!t) goto done;
    float *all = check_sync ? malloc(sizeof(float) * 2 * (size_t)m->store.n) : NULL;
    for (int s = 0; s < STEPS; s++) {
        sm_train_step_info info;
        sm_status st = sm_trainer_step(t, &info);
        CHECK_OK(st);
        if (st) break;
        loss[s] = info.loss;
        CHECK_MSG(info.batch == 30, "step %d: batch of %d (the whole batch, not a shard)", s + 1, info.batch);
        if (all) { /* both ranks hold the same bits */
            CHECK_OK(sm_dist_allgather(check_sync, m->store.val, m->store.n * (int64_t)sizeof(float), all));
            CHECK_MSG(memcmp(all, all + m->store.n, sizeof(float) * (size_t)m->store.n) == 0,
                      "%s step %d: the ranks' parameters differ", name, s + 1);
        }
    }
    free(all);
    *n = m->store.n;
    out = malloc(sizeof(float) * (size_t)m->store.n);
    memcpy(out, m->store.val, sizeof(float) * (size_t)m->store.n);
done:
    sm_trainer_free(t);
    sm_loss_free(l);
    sm_model_free(m);
    return out;
}

/* name on 2 ranks against one process: with lr > 0 SGD at lr, no shards, agreement within 1e-5;
 * with lr 0 the default Adam and grad_shards = 2 in the one process, the same bits. */
static void compare(sm_dist *g, const sm_dataset *ds, const char *name, const char *opts, int per_class, float lr) {
    double ld[STEPS] = {0}, l1[STEPS] = {0};
    int64_t nd = 0, n1 = 0;
    const int exact = lr <= 0;
    float *wd = train(g, ds, name, opts, per_class, lr, exact ? 2 : 0, ld, &nd, g);
    if (sm_dist_rank(g) != 0) { free(wd); return; } /* rank 0 runs the single process */
    float *w1 = train(NULL, ds, name, opts, per_class, lr, exact ? 2 : 0, l1, &n1, NULL);
    CHECK(wd && w1 && nd == n1 && nd > 0);
    if (wd && w1 && nd == n1) {
        double worst = 0;
        int same_losses = 1;
        for (int s = 0; s < STEPS; s++) {
            double r = fabs(ld[s] - l1[s]) / (fabs(l1[s]) > 1e-30 ? fabs(l1[s]) : 1e-30);
            if (r > worst) worst = r;
            if (memcmp(&ld[s], &l1[s], sizeof(double)) != 0) same_losses = 0;
            CHECK_MSG(r <= 1e-5, "%s step %d: loss %.9g on 2 ranks, %.9g in one process", name, s + 1, ld[s], l1[s]);
        }
        double dw = 0;
        int64_t at = 0, differ = 0;
        for (int64_t i = 0; i < nd; i++) {
            if (memcmp(&wd[i], &w1[i], sizeof(float)) != 0) differ++;
            if (fabs((double)wd[i] - w1[i]) > dw) { dw = fabs((double)wd[i] - w1[i]); at = i; }
        }
        CHECK_MSG(dw <= 1e-5, "%s: store value %lld is %.9g on 2 ranks, %.9g in one process", name, (long long)at,
                  wd[at], w1[at]);
        if (exact) {
            CHECK_MSG(same_losses, "%s (Adam, 2 shards): the per-step losses are not the same bits", name);
            CHECK_MSG(differ == 0, "%s (Adam, 2 shards): %lld of %lld store values differ from the 2 ranks' (largest "
                      "difference %.3g at %lld)", name, (long long)differ, (long long)nd, dw, (long long)at);
        }
        /* the losses moved: training happened */
        CHECK_MSG(l1[0] != l1[STEPS - 1], "%s: the loss did not change", name);
        printf("%s (%s): %d steps, loss %.6f -> %.6f, worst relative loss difference %.3g, largest weight "
               "difference %.3g, %lld of %lld values differ\n", name, exact ? "Adam 1e-3, one process with 2 shards"
               : "SGD, one process without shards", STEPS, l1[0], l1[STEPS - 1], worst, dw, (long long)differ,
               (long long)nd);
    }
    free(wd); free(w1);
}

/* The sums over ranks, in the form chosen for the length and in both forms (all-gathered, and
 * sliced: reduce-scatter + all-gather): every element is rank 0's value plus rank 1's, in float
 * and in double, on both ranks. */
static void check_sums(sm_dist *g) {
    static const int64_t sizes[] = {1, 100, 4095, 4096, 10007};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const int64_t n = sizes[k];
        float *f = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
        double *e = malloc(sizeof(double) * (size_t)n), *wantd = malloc(sizeof(double) * (size_t)n);
        sm_rng a, b;
        sm_rng_seed(&a, 100 + (uint64_t)k); /* rank 0's values */
        sm_rng_seed(&b, 200 + (uint64_t)k); /* rank 1's */
        for (int64_t i = 0; i < n; i++) {
            double x = sm_rng_uniform(&a) * 1e3 - 500, y = sm_rng_uniform(&b) * 1e-3;
            f[i] = (float)(sm_dist_rank(g) ? y : x);
            want[i] = (float)x + (float)y;
            e[i] = sm_dist_rank(g) ? y : x;
            wantd[i] = x + y;
        }
        for (int form = 0; form < 3; form++) { /* the chosen form, gathered, sliced */
            float *f2 = malloc(sizeof(float) * (size_t)n);
            double *e2 = malloc(sizeof(double) * (size_t)n);
            memcpy(f2, f, sizeof(float) * (size_t)n);
            memcpy(e2, e, sizeof(double) * (size_t)n);
            CHECK_OK(form == 0 ? sm_dist_sum_f32(g, f2, n) : form == 1 ? sm_dist_sum_f32_gathered(g, f2, n)
                                                                      : sm_dist_sum_f32_sliced(g, f2, n));
            CHECK_OK(form == 0 ? sm_dist_sum_f64(g, e2, n) : form == 1 ? sm_dist_sum_f64_gathered(g, e2, n)
                                                                      : sm_dist_sum_f64_sliced(g, e2, n));
            CHECK_MSG(memcmp(f2, want, sizeof(float) * (size_t)n) == 0,
                      "float sum of %lld (form %d): not rank 0's + rank 1's", (long long)n, form);
            CHECK_MSG(memcmp(e2, wantd, sizeof(double) * (size_t)n) == 0,
                      "double sum of %lld (form %d): not rank 0's + rank 1's", (long long)n, form);
            free(f2); free(e2);
        }
        free(f); free(want); free(e); free(wantd);
    }
}

int main(void) {
    sm_dist *g = NULL;
    CHECK_OK(sm_dist_init(&g));
    if (!g) TEST_MAIN_END();
    CHECK_MSG(sm_dist_size(g) == 2, "run with mpirun -np 2 (size %d)", sm_dist_size(g));
    sm_set_num_threads(1);
    if (sm_dist_size(g) == 2) check_sums(g);
    sm_dataset *ds = make_data();
    if (ds && sm_dist_size(g) == 2) {
        compare(g, ds, "multisimilarity", "", 6, 0.01f);
        compare(g, ds, "softmax", "classes=5", 0, 0.01f);
        compare(g, ds, "arcface", "classes=5", 6, 0.0003f); /* scale 64: its steps are large */
        /* the default optimiser (Adam 1e-3), the one process with 2 gradient shards: the same bits */
        compare(g, ds, "multisimilarity", "", 6, 0);
        compare(g, ds, "softmax", "classes=5", 0, 0);
        compare(g, ds, "arcface", "classes=5", 6, 0);
        /* the divergence guard decides for both ranks: inputs of 1e30 through a linear model
         * (the first step gives parameters of order 1e29, the second's embeddings overflow)
         * stop both at the same step, each with its store as it was after the last good step */
        {
            sm_model *m = NULL;
            sm_loss *l = NULL;
            sm_trainer *t = NULL;
            sm_dataset *big = NULL;
            float xb[16 * 36];
            int32_t yb[16];
            sm_rng rng;
            sm_rng_seed(&rng, 9);
            for (int i = 0; i < 16 * 36; i++) xb[i] = 1e30f * (float)sm_rng_uniform(&rng);
            for (int i = 0; i < 16; i++) yb[i] = i % 2;
            CHECK_OK(sm_dataset_from_arrays(&big, xb, yb, 16, 6, 6, 1));
            CHECK_OK(sm_model_create(&m, "fc 4", 6, 6, 1, 3));
            CHECK_OK(sm_loss_create(&l, "softmax", "classes=2", 4, 4));
            sm_train_config c;
            sm_train_config_default(&c);
            c.batch_size = 4;
            c.epochs = 3;
            c.optimizer = SM_OPT_SGD;
            c.lr = 0.1f;
            c.momentum = 0;
            c.dist = g;
            if (big && m && l) CHECK_OK(sm_trainer_create(&t, m, l, big, &c));
            int step = 0, st = SM_OK;
            float *before = malloc(sizeof(float) * (size_t)(m ? m->store.n : 1));
            while (t && step < 40) {
                memcpy(before, m->store.val, sizeof(float) * (size_t)m->store.n);
                st = sm_trainer_step(t, NULL);
                if (st) break;
                step++;
            }
            CHECK_MSG(st == SM_ERR_NUMERIC, "lr 900: status %d after %d steps (want a numerical failure)", st, step);
            CHECK(strstr(sm_trainer_errmsg(t), "diverged") != NULL);
            if (m) CHECK(memcmp(before, m->store.val, sizeof(float) * (size_t)m->store.n) == 0);
            int steps[2] = {0, 0};
            CHECK_OK(sm_dist_allgather(g, &step, (int64_t)sizeof(int), steps));
            CHECK_MSG(steps[0] == steps[1], "the ranks stopped after %d and %d steps", steps[0], steps[1]);
            free(before);
            sm_dataset_free(big);
            sm_trainer_free(t);
            sm_loss_free(l);
            sm_model_free(m);
        }
        /* a batch smaller than the group */
        sm_model *m = NULL;
        sm_loss *l = NULL;
        sm_trainer *t = NULL;
        CHECK_OK(sm_model_create(&m, "cnn-s", S, S, 1, 7));
        CHECK_OK(sm_loss_create(&l, "softmax", "classes=5", 64, 8));
        sm_train_config c;
        sm_train_config_default(&c);
        c.batch_size = 1;
        c.dist = g;
        CHECK_STATUS(sm_trainer_create(&t, m, l, ds, &c), SM_ERR_INVALID);
        CHECK(t == NULL && strstr(sm_errmsg(), "2 ranks"));
        /* gradient shards other than the ranks */
        c.batch_size = 30;
        c.grad_shards = 3;
        CHECK_STATUS(sm_trainer_create(&t, m, l, ds, &c), SM_ERR_INVALID);
        CHECK(t == NULL && strstr(sm_errmsg(), "shards 3 on 2 ranks"));
        sm_loss_free(l);
        sm_model_free(m);
    }
    sm_dataset_free(ds);
    /* the verdict of both ranks */
    int bad = t_failures;
    if (sm_dist_max_int(g, &bad) == SM_OK && bad && !t_failures) {
        t_failures++;
        fprintf(stderr, "rank %d: the other rank failed\n", sm_dist_rank(g));
    }
    sm_dist_free(g);
    TEST_MAIN_END();
}
