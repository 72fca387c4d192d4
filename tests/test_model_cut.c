/* test_model_cut.c - sm_model_cut: the trunk of a model (its layers 1..L) keeps the weights,
 * batch-norm statistics, normalisation and class names; cut at the last layer it embeds with the
 * same bits as the whole model, cut before the final l2norm it gets one appended (the same bits
 * again), cut earlier its rows are unit-length and as wide as layer L's output; layers outside
 * the model, layers inside a residual block and a trunk that ends with a feature map are
 * refused with the reason. */
#include "simile.h"
#include "testing.h"
#include <string.h>

enum { N = 7, H = 8, W = 8 };

static void embed(sm_model *m, const float *x, float *e) { CHECK_OK(sm_model_embed(m, x, N, e)); }

int main(void) {
    float x[N * H * W], full[N * 6], got[N * 16];
    for (int i = 0; i < N * H * W; i++) x[i] = (float)((i * 37 % 101) - 50) / 25.f;
    sm_model *m = NULL, *c = NULL;
    /* 1 conv, 2 bn, 3 relu, 4 res, 5 conv, 6 bn, 7 end, 8 relu, 9 gap, 10 fc, 11 l2norm */
    CHECK_OK(sm_model_create(&m, "conv 8 k=3 p=1 bias=0; bn; relu; res; conv 8 k=3 p=1 bias=0; bn; end; relu; gap; fc 6; l2norm",
                             H, W, 1, 5));
    sm_normalization nz = {SM_NORM_MEAN_STD, 1, {0.25f}, {0.5f}};
    CHECK_OK(sm_model_set_normalization(m, &nz));
    const char *names[3] = {"alpha", "beta", "gamma"};
    CHECK_OK(sm_model_set_class_names(m, names, 3));
    embed(m, x, full);

    /* cut at the last layer: the whole model again */
    CHECK_OK(sm_model_cut(m, 11, &c));
    CHECK(sm_model_embedding_dim(c) == 6);
    embed(c, x, got);
    CHECK(!memcmp(got, full, sizeof(float) * N * 6));
    sm_normalization g;
    sm_model_normalization(c, &g);
    CHECK(g.kind == SM_NORM_MEAN_STD && g.channels == 1 && g.mean[0] == 0.25f && g.std[0] == 0.5f);
    CHECK(sm_model_class_name(c, 2) && !strcmp(sm_model_class_name(c, 2), "gamma"));
    sm_model_free(c); c = NULL;

    /* cut at the fc: an l2norm is appended, the same embeddings */
    CHECK_OK(sm_model_cut(m, 10, &c));
    CHECK(strstr(sm_model_spec(c), "l2norm") != NULL);
    embed(c, x, got);
    CHECK(!memcmp(got, full, sizeof(float) * N * 6));
    sm_model_free(c); c = NULL;

    /* cut at gap: 8 wide, unit rows, not the same as a fresh model's trunk (the weights were taken) */
    CHECK_OK(sm_model_cut(m, 9, &c));
    CHECK(sm_model_embedding_dim(c) == 8);
    embed(c, x, got);
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int k = 0; k < 8; k++) s += (double)got[i * 8 + k] * got[i * 8 + k];
        CHECK_NEAR(s, 1.0, 1e-5);
    }
    sm_model *fresh = NULL, *fc = NULL;
    CHECK_OK(sm_model_create(&fresh, "conv 8 k=3 p=1 bias=0; bn; relu; res; conv 8 k=3 p=1 bias=0; bn; end; relu; gap; fc 6; l2norm",
                             H, W, 1, 6));
    CHECK_OK(sm_model_cut(fresh, 9, &fc));
    float other[N * 8];
    embed(fc, x, other);
    CHECK(memcmp(got, other, sizeof other) != 0);
    sm_model_free(fc); sm_model_free(fresh);
    sm_model_free(c); c = NULL;

    /* at the block's end (7) the block is whole, but a model must end with a vector: refused
     * as a spec, not as a block; inside the block (4..6) or outside the model is refused too */
    CHECK_STATUS(sm_model_cut(m, 7, &c), SM_ERR_SPEC);
    CHECK(c == NULL);
    CHECK_MSG(strstr(sm_errmsg(), "gap or fc") != NULL, "%s", sm_errmsg());
    for (int L = 4; L <= 6; L++) {
        CHECK_STATUS(sm_model_cut(m, L, &c), SM_ERR_INVALID);
        CHECK(c == NULL);
        CHECK_MSG(strstr(sm_errmsg(), "inside the residual block") != NULL, "%s", sm_errmsg());
    }
    CHECK_STATUS(sm_model_cut(m, 0, &c), SM_ERR_INVALID);
    CHECK_STATUS(sm_model_cut(m, 12, &c), SM_ERR_INVALID);
    CHECK_STATUS(sm_model_cut(NULL, 1, &c), SM_ERR_INVALID);
    CHECK_STATUS(sm_model_cut(m, 1, NULL), SM_ERR_INVALID);
    sm_model_free(m);
    TEST_MAIN_END();
}
