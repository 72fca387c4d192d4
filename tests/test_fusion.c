/* test_fusion.c - the fused bn + relu path (the default) must compute exactly what the separate
 * layers compute: embeddings in training and inference mode, and every parameter gradient. */
#include "model/model.h"
#include "testing.h"
#include <stdlib.h>
#include <string.h>

static sm_model *make(int fuse) {
    if (fuse) unsetenv("SIMILE_NO_FUSE"); else setenv("SIMILE_NO_FUSE", "1", 1);
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, "conv 4 k=3 p=1 bias=0; bn; relu; maxpool k=2; conv 6 k=3 p=1; bn; relu; gap; fc 5; bn; relu; fc 3; l2norm",
                             8, 8, 2, 7));
    unsetenv("SIMILE_NO_FUSE");
    return m;
}

int main(void) {
    sm_model *a = make(1), *b = make(0);
    if (!a || !b) TEST_MAIN_END();
    int fused = 0;
    for (int i = 0; i < a->nlayers; i++) fused += a->layers[i].fused;
    CHECK(fused == 3);
    for (int i = 0; i < b->nlayers; i++) CHECK(!b->layers[i].fused && !b->layers[i].relu);
    const int n = 5, in = 8 * 8 * 2, d = 3;
    float *x = malloc(sizeof(float) * n * in), dout[5 * 3];
    sm_rng r;
    sm_rng_seed(&r, 3);
    for (int i = 0; i < n * in; i++) x[i] = sm_rng_normal(&r);
    for (int i = 0; i < n * d; i++) dout[i] = sm_rng_normal(&r);
    CHECK_OK(sm_model_reserve(a, n));
    CHECK_OK(sm_model_reserve(b, n));
    for (int step = 0; step < 2; step++) {
        const float *ya = sm_model_forward(a, x, n, 1), *yb = sm_model_forward(b, x, n, 1);
        CHECK(memcmp(ya, yb, sizeof(float) * n * d) == 0);
        sm_model_backward(a, x, dout, n);
        sm_model_backward(b, x, dout, n);
        CHECK(a->nparams == b->nparams);
        CHECK(memcmp(a->grads, b->grads, sizeof(float) * (size_t)a->nparams) == 0);
        CHECK(memcmp(a->buffers, b->buffers, sizeof(float) * (size_t)a->nbuffers) == 0);
        int nonzero = 0;
        for (int64_t i = 0; i < a->nparams; i++) nonzero += a->grads[i] != 0;
        CHECK(nonzero > a->nparams / 2);
    }
    float ea[15], eb[15];
    CHECK_OK(sm_model_embed(a, x, n, ea));
    CHECK_OK(sm_model_embed(b, x, n, eb));
    CHECK(memcmp(ea, eb, sizeof ea) == 0);
    free(x);
    sm_model_free(a);
    sm_model_free(b);
    TEST_MAIN_END();
}
