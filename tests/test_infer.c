/* test_infer.c - the batch-parallel, bn-folded inference path (src/model/infer.c) against the
 * layer-by-layer reference (sm_model_forward with train = 0): the same embeddings within float
 * rounding, for several model shapes (cnn-s, bn after fc, a bn not after a conv, unfused relu,
 * a bias conv, stride 2, 1x1 conv, the pool taken before bias and ReLU, a model ending in a
 * pool, average pools), batch sizes around the micro-batch size, non-trivial running
 * statistics; the same bits for 1 and 2 threads and for any split of the batch into calls;
 * sm_model_update_bn (population statistics of given data). */
#include "core/core.h"
#include "model/model.h"
#include "simile.h"
#include "testing.h"
#include <stdlib.h>
#include <string.h>

/* Give every bn non-trivial gamma, beta and running statistics, as after training. */
static void perturb_bn(sm_model *m, sm_rng *r) {
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        if (L->type != SM_LAYER_BN) continue;
        for (int j = 0; j < L->oc; j++) {
            L->gamma[j] = 0.5f + (float)sm_rng_uniform(r);
            L->beta[j] = 0.3f * sm_rng_normal(r);
            L->run_mean[j] = 0.2f * sm_rng_normal(r);
            L->run_var[j] = 0.2f + 2.0f * (float)sm_rng_uniform(r);
        }
    }
}

/* Reference embeddings of x (n) through sm_model_forward(train = 0), one batch. */
static float *reference(sm_model *m, const float *x, int n) {
    float *out = malloc(sizeof(float) * (size_t)n * (size_t)m->emb_dim);
    CHECK_OK(sm_model_reserve(m, n));
    memcpy(out, sm_model_forward(m, x, n, 0), sizeof(float) * (size_t)n * (size_t)m->emb_dim);
    return out;
}

static void check_spec(const char *spec, int h, int w, int c, int no_fuse) {
    if (no_fuse) setenv("SIMILE_NO_FUSE", "1", 1);
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, spec, h, w, c, 11));
    unsetenv("SIMILE_NO_FUSE");
    if (!m) return;
    sm_rng r;
    sm_rng_seed(&r, 5);
    perturb_bn(m, &r);
    const int sizes[] = {1, 7, 8, 9, 37};
    const int64_t in = (int64_t)h * w * c;
    const int d = m->emb_dim;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int n = sizes[si];
        float *x = malloc(sizeof(float) * (size_t)(n * in));
        for (int64_t i = 0; i < n * in; i++) x[i] = sm_rng_normal(&r);
        float *ref = reference(m, x, n);
        float *e1 = calloc((size_t)n * d, sizeof(float)), *e2 = calloc((size_t)n * d, sizeof(float));
        sm_set_num_threads(1);
        CHECK_OK(sm_model_embed(m, x, n, e1));
        sm_set_num_threads(2);
        CHECK_OK(sm_model_embed(m, x, n, e2));
        double maxerr = 0, scale = 0;
        for (int64_t i = 0; i < (int64_t)n * d; i++) {
            double e = fabs((double)e1[i] - ref[i]);
            if (e > maxerr) maxerr = e;
            if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
        }
        CHECK_MSG(maxerr <= 1e-4 * (scale > 1 ? scale : 1), "%s n=%d: max |fast - reference| %g (scale %g)",
                  spec, n, maxerr, scale);
        CHECK_MSG(!memcmp(e1, e2, sizeof(float) * (size_t)n * d), "%s n=%d: 1 and 2 threads differ", spec, n);
        /* the same bits when the batch comes in pieces that are whole micro-batches */
        if (n == 37) {
            float *e3 = calloc((size_t)n * d, sizeof(float));
            CHECK_OK(sm_model_embed(m, x, 16, e3));
            CHECK_OK(sm_model_embed(m, x + 16 * in, n - 16, e3 + 16 * d));
            CHECK(!memcmp(e1, e3, sizeof(float) * (size_t)n * d));
            free(e3);
        }
        free(x); free(ref); free(e1); free(e2);
    }
    sm_model_free(m);
}

/* sm_model_update_bn: for a model whose first layer is a bn, the new running mean and variance
 * are the averages over the batches of the batch mean and unbiased variance. */
static void check_update_bn(void) {
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, "bn; fc 2", 1, 1, 3, 1));
    if (!m) return;
    const int n = 10, B = 4; /* batches of 4, 4, 2 */
    float x[30];
    for (int i = 0; i < 30; i++) x[i] = (float)((i * 7) % 11) - 3.0f + (float)(i % 3);
    CHECK_OK(sm_model_update_bn(m, x, n, B));
    sm_layer *L = &m->layers[0];
    for (int j = 0; j < 3; j++) {
        double mean_avg = 0, var_avg = 0;
        int nb = 0;
        for (int s = 0; s < n; s += B, nb++) {
            int b = n - s < B ? n - s : B;
            double mu = 0, q = 0;
            for (int i = 0; i < b; i++) mu += x[(s + i) * 3 + j];
            mu /= b;
            for (int i = 0; i < b; i++) q += (x[(s + i) * 3 + j] - mu) * (x[(s + i) * 3 + j] - mu);
            mean_avg += mu;
            var_avg += q / (b - 1);
        }
        CHECK_NEAR(L->run_mean[j], mean_avg / nb, 1e-5);
        CHECK_NEAR(L->run_var[j], var_avg / nb, 1e-4);
    }
    CHECK(L->momentum == 0.1f); /* restored */
    float bad[30];
    memcpy(bad, x, sizeof bad);
    bad[4] = NAN;
    float before = L->run_mean[0];
    CHECK_STATUS(sm_model_update_bn(m, bad, n, B), SM_ERR_NUMERIC);
    CHECK(L->run_mean[0] == before);
    CHECK_STATUS(sm_model_update_bn(m, x, 1, B), SM_ERR_INVALID);
    CHECK_STATUS(sm_model_update_bn(NULL, x, n, B), SM_ERR_INVALID);
    sm_model_free(m);
}

/* SIMILE_PROFILE times the inference plan itself: the same bits, and per-layer times. */
static void check_profile(void) {
    sm_model *m = NULL, *p = NULL;
    CHECK_OK(sm_model_create(&m, "cnn-s", 28, 28, 1, 11));
    setenv("SIMILE_PROFILE", "1", 1);
    CHECK_OK(sm_model_create(&p, "cnn-s", 28, 28, 1, 11));
    unsetenv("SIMILE_PROFILE");
    if (!m || !p) { sm_model_free(m); sm_model_free(p); return; }
    const int n = 20;
    const int64_t in = 28 * 28;
    float *x = malloc(sizeof(float) * (size_t)(n * in)), *e1 = malloc(sizeof(float) * (size_t)n * 64),
          *e2 = malloc(sizeof(float) * (size_t)n * 64);
    sm_rng r;
    sm_rng_seed(&r, 9);
    for (int64_t i = 0; i < n * in; i++) x[i] = sm_rng_normal(&r);
    CHECK_OK(sm_model_embed(m, x, n, e1));
    CHECK_OK(sm_model_embed(p, x, n, e2));
    CHECK_MSG(!memcmp(e1, e2, sizeof(float) * (size_t)n * 64), "profiled embedding differs");
    double t = 0;
    for (int i = 0; i < p->nlayers; i++) t += p->layers[i].t_fwd;
    CHECK_MSG(t > 0 && p->layers[0].t_fwd > 0, "no forward time recorded (%g)", t);
    CHECK(strstr(sm_model_profile(p), "profile: total") != NULL);
    CHECK(!strcmp(sm_model_profile(m), "")); /* not profiled: no table */
    free(x); free(e1); free(e2);
    sm_model_free(m);
    sm_model_free(p);
}

int main(void) {
    check_profile();
    check_spec("cnn-s", 28, 28, 1, 0);
    check_spec("cnn-s", 28, 28, 1, 1); /* separate relu layers */
    check_spec("conv 4 k=3 p=1 bias=1; bn; relu; maxpool k=2; conv 6 k=3 s=2 p=1; relu; conv 5 k=1; bn; "
               "gap; fc 5; bn; relu; fc 3; l2norm", 9, 11, 2, 0);
    check_spec("bn; conv 3 k=3 p=0; maxpool k=3 s=2; gap; fc 4", 8, 8, 3, 0); /* bn first, pool 3/2 */
    check_spec("fc 16; bn; relu; fc 8; bn", 6, 6, 1, 0); /* ends with a folded bn */
    check_spec("conv 4 k=2 p=0; bn; relu; maxpool k=2", 3, 3, 2, 0); /* ends with a pool (1x1x4) */
    /* avgpool after a folded bn + relu, after a bias conv, overlapping, and ending a model */
    check_spec("conv 4 k=3 p=1; bn; relu; avgpool k=2; conv 3 k=1; avgpool k=3 s=2; gap; fc 3", 10, 9, 2, 0);
    check_spec("conv 4 k=3 p=1; bn; relu; avgpool k=2; conv 3 k=1; avgpool k=3 s=2; gap; fc 3", 10, 9, 2, 1);
    check_spec("conv 4 k=2 p=0; bn; relu; avgpool k=2", 3, 3, 2, 0); /* ends with an avgpool (1x1x4) */
    check_update_bn();
    TEST_MAIN_END();
}
