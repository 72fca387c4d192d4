/* test_layer_avgpool.c - the avgpool layer kind (src/nn/layer_avgpool.c) and the layer registry
 * it was added through:
 *   - the registry: every kind has a name, a forward, a backward and an inference forward, the
 *     names are unique and in id order, sm_layer_type_name and the spec parser find avgpool;
 *   - for several windows and strides (the default stride, overlapping windows, gaps between
 *     windows, a 1x1 window, a global window): the output shape from sm_layer_setup, the forward
 *     against a double-precision reference written here (window means, to 1e-6 relative), the
 *     backward's dx (overwritten, not accumulated) against central finite differences (h = 1e-6)
 *     of the double objective sum(y * R), R fixed and random;
 *   - forward and backward give the same bits on 1 and 2 threads (a batch large enough for the
 *     parallel path);
 *   - the spec: stride defaults to k, the canonical text, its errors (unknown option, bad value,
 *     window larger than the input);
 *   - a model using it: training gradients flow through it, and a save / load round trip keeps
 *     the spec, the parameters and the embeddings. */
#include "core/core.h"
#include "model/model.h"
#include "simile.h"
#include "testing.h"
#include <string.h>
#include <unistd.h>

static sm_rng g_rng;
static double urand(double lo, double hi) { return lo + (hi - lo) * sm_rng_uniform(&g_rng); }
static int contains(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* Double reference: y (n, oh, ow, c) = mean over each k x k window of x (n, ih, iw, c). */
static void ref_forward(const sm_layer *L, const double *x, int n, double *y) {
    const int ih = L->ih, iw = L->iw, c = L->ic, oh = L->oh, ow = L->ow, k = L->k, s = L->stride;
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int ch = 0; ch < c; ch++) {
                    double sum = 0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++)
                            sum += x[((b * ih + oy * s + ky) * iw + ox * s + kx) * c + ch];
                    y[((b * oh + oy) * ow + ox) * c + ch] = sum / (k * k);
                }
}

static double objective(const sm_layer *L, const double *x, int n, const double *R, double *ybuf) {
    ref_forward(L, x, n, ybuf);
    double s = 0;
    for (int64_t i = 0; i < (int64_t)n * sm_layer_out_size(L); i++) s += ybuf[i] * R[i];
    return s;
}

static void test_registry(void) {
    CHECK(SM_LAYER_NKINDS >= 8);
    for (int i = 0; i < SM_LAYER_NKINDS; i++) {
        const sm_layer_kind *K = sm_layer_kinds[i];
        CHECK_MSG(K && K->name && K->forward && K->backward && K->infer, "kind %d incomplete", i);
        if (!K || !K->name) continue;
        CHECK(strcmp(sm_layer_type_name(i), K->name) == 0);
        CHECK(sm_layer_kind_find(K->name) == K);
        if (i > 0) CHECK_MSG(strcmp(sm_layer_kinds[i - 1]->name, K->name) < 0, "kinds not in name order at %s", K->name);
        /* a linear kind's output gets a bias: it has parameters to bind */
        if (K->linear) CHECK(K->bind && K->tensors && K->init);
    }
    CHECK(sm_layer_kind_find("avgpool") == &sm_layer_kind_avgpool);
    CHECK(sm_layer_kinds[SM_LAYER_AVGPOOL] == &sm_layer_kind_avgpool);
    CHECK(strcmp(sm_layer_type_name(SM_LAYER_AVGPOOL), "avgpool") == 0);
    CHECK(sm_layer_kind_find("avgpol") == NULL);
    CHECK(strcmp(sm_layer_type_name(SM_LAYER_NKINDS), "?") == 0);
}

typedef struct tcase { const char *name; int k, s, n, h, w, c, oh, ow; } tcase;

static void run_case(const tcase *tc) {
    sm_layer L;
    memset(&L, 0, sizeof L);
    L.type = SM_LAYER_AVGPOOL;
    L.k = tc->k; L.stride = tc->s;
    CHECK_OK(sm_layer_setup(&L, tc->h, tc->w, tc->c, 0));
    CHECK_MSG(L.oh == tc->oh && L.ow == tc->ow && L.oc == tc->c && L.nparams == 0 && L.nbuffers == 0,
              "%s: output %dx%dx%d (%lld params), want %dx%dx%d", tc->name, L.oh, L.ow, L.oc,
              (long long)L.nparams, tc->oh, tc->ow, tc->c);
    if (L.oh != tc->oh || L.ow != tc->ow) return;
    const int n = tc->n, in_cnt = n * (int)sm_layer_in_size(&L), out_cnt = n * (int)sm_layer_out_size(&L);
    float *x = malloc(sizeof(float) * in_cnt), *y = malloc(sizeof(float) * out_cnt);
    float *dy = malloc(sizeof(float) * out_cnt), *dx = malloc(sizeof(float) * in_cnt);
    double *xd = malloc(sizeof(double) * in_cnt), *yd = malloc(sizeof(double) * out_cnt);
    double *R = malloc(sizeof(double) * out_cnt), *ybuf = malloc(sizeof(double) * out_cnt);
    for (int i = 0; i < in_cnt; i++) { x[i] = (float)urand(-1, 1); xd[i] = x[i]; }
    for (int i = 0; i < out_cnt; i++) { R[i] = urand(-1, 1); dy[i] = (float)R[i]; }
    CHECK_OK(sm_layer_alloc_cache(&L, n));

    /* forward: the same in training and inference mode, and the reference's means */
    sm_layer_forward(&L, x, y, n, 1);
    ref_forward(&L, xd, n, yd);
    double worst = 0;
    for (int i = 0; i < out_cnt; i++) worst = fmax(worst, fabs(y[i] - yd[i]) / fmax(fabs(yd[i]), 1e-3));
    CHECK_MSG(worst < 1e-5, "%s: forward rel err %.3g", tc->name, worst);
    float *y0 = malloc(sizeof(float) * out_cnt);
    sm_layer_forward(&L, x, y0, n, 0);
    CHECK_MSG(!memcmp(y, y0, sizeof(float) * out_cnt), "%s: train and inference forward differ", tc->name);
    free(y0);

    /* backward: dx overwritten (garbage before), against central differences */
    for (int i = 0; i < in_cnt; i++) dx[i] = 1e30f;
    sm_layer_backward(&L, x, y, dy, dx, n);
    const double h = 1e-6;
    int bad = 0, worst_i = -1;
    double worst_fd = 0, worst_g = 0;
    for (int i = 0; i < in_cnt; i++) {
        double save = xd[i];
        xd[i] = save + h;
        double lp = objective(&L, xd, n, R, ybuf);
        xd[i] = save - h;
        double lm = objective(&L, xd, n, R, ybuf);
        xd[i] = save;
        double fd = (lp - lm) / (2 * h);
        if (!(t_relerr(fd, dx[i]) < 1e-3 || fabs(fd - dx[i]) < 1e-5)) {
            if (bad++ == 0) { worst_i = i; worst_fd = fd; worst_g = dx[i]; }
        }
    }
    CHECK_MSG(bad == 0, "%s: dx: %d of %d elements off (first #%d: analytic %.9g, finite diff %.9g)",
              tc->name, bad, in_cnt, worst_i, worst_g, worst_fd);
    sm_layer_backward(&L, x, y, dy, NULL, n); /* no input gradient asked: nothing to do, no crash */
    sm_layer_free_cache(&L);
    free(x); free(y); free(dy); free(dx); free(xd); free(yd); free(R); free(ybuf);
}

/* The same bits on 1 and 2 threads, on a batch that takes the parallel path. */
static void test_threads(void) {
    sm_layer L;
    memset(&L, 0, sizeof L);
    L.type = SM_LAYER_AVGPOOL;
    L.k = 3; L.stride = 2;
    CHECK_OK(sm_layer_setup(&L, 17, 15, 16, 0));
    const int n = 24, in_cnt = n * (int)sm_layer_in_size(&L), out_cnt = n * (int)sm_layer_out_size(&L);
    float *x = malloc(sizeof(float) * in_cnt), *dy = malloc(sizeof(float) * out_cnt);
    float *y1 = malloc(sizeof(float) * out_cnt), *y2 = malloc(sizeof(float) * out_cnt);
    float *d1 = malloc(sizeof(float) * in_cnt), *d2 = malloc(sizeof(float) * in_cnt);
    for (int i = 0; i < in_cnt; i++) x[i] = (float)urand(-1, 1);
    for (int i = 0; i < out_cnt; i++) dy[i] = (float)urand(-1, 1);
    sm_set_num_threads(1);
    sm_layer_forward(&L, x, y1, n, 1);
    sm_layer_backward(&L, x, y1, dy, d1, n);
    sm_set_num_threads(2);
    sm_layer_forward(&L, x, y2, n, 1);
    sm_layer_backward(&L, x, y2, dy, d2, n);
    CHECK(!memcmp(y1, y2, sizeof(float) * out_cnt));
    CHECK(!memcmp(d1, d2, sizeof(float) * in_cnt));
    free(x); free(dy); free(y1); free(y2); free(d1); free(d2);
}

static void expect_spec_error(const char *spec, int h, int w, int c, const char *want) {
    sm_model *m = NULL;
    CHECK_STATUS(sm_model_create(&m, spec, h, w, c, 1), SM_ERR_SPEC);
    CHECK_MSG(contains(sm_errmsg(), want), "spec '%s': message '%s' lacks '%s'", spec, sm_errmsg(), want);
    sm_model_free(m);
}

static void test_spec_and_model(void) {
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, "conv 3 k=3 p=1; bn; relu; avgpool k=3\navgpool k=2 s=1; gap; fc 4", 9, 9, 2, 3));
    if (!m) return;
    CHECK(m->layers[3].type == SM_LAYER_AVGPOOL && m->layers[3].k == 3 && m->layers[3].stride == 3);
    CHECK(m->layers[3].oh == 3 && m->layers[3].ow == 3 && m->layers[3].oc == 3);
    CHECK(m->layers[4].oh == 2 && m->layers[4].ow == 2);
    CHECK_MSG(contains(sm_model_spec(m), "relu\navgpool k=3 s=3\navgpool k=2 s=1\ngap\n"), "spec text:\n%s", sm_model_spec(m));
    CHECK(sm_model_num_params(m) == 3 * 3 * 3 * 2 + 3 + 2 * 3 + 4 * 3 + 4);
    CHECK(contains(sm_model_summary(m), "avgpool"));
    /* the expanded spec parses to itself */
    sm_model *m2 = NULL;
    CHECK_OK(sm_model_create(&m2, sm_model_spec(m), 9, 9, 2, 3));
    if (m2) { CHECK(strcmp(sm_model_spec(m), sm_model_spec(m2)) == 0); sm_model_free(m2); }

    /* gradients reach the conv below the pools */
    const int n = 5;
    float x[5 * 9 * 9 * 2], dout[5 * 4];
    for (int i = 0; i < n * 162; i++) x[i] = (float)urand(-1, 1);
    for (int i = 0; i < n * 4; i++) dout[i] = (float)urand(-1, 1);
    CHECK_OK(sm_model_reserve(m, n));
    sm_model_forward(m, x, n, 1);
    sm_model_backward(m, x, dout, n);
    double gconv = 0;
    for (int64_t i = 0; i < m->layers[0].nparams; i++) gconv += fabs(m->grads[i]);
    CHECK(gconv > 0 && sm_all_finite(m->grads, m->nparams));

    /* save / load: same spec, same parameters, same embeddings */
    char path[128];
    snprintf(path, sizeof path, "/tmp/sm_test_avgpool_%d.smm", (int)getpid());
    CHECK_OK(sm_model_save(m, path));
    sm_model *l = NULL;
    CHECK_OK(sm_model_load(&l, path));
    unlink(path);
    if (l) {
        CHECK(strcmp(sm_model_spec(m), sm_model_spec(l)) == 0);
        CHECK(l->nparams == m->nparams && !memcmp(l->params, m->params, sizeof(float) * (size_t)m->nparams));
        float e1[5 * 4], e2[5 * 4];
        CHECK_OK(sm_model_embed(m, x, n, e1));
        CHECK_OK(sm_model_embed(l, x, n, e2));
        CHECK(!memcmp(e1, e2, sizeof e1));
        sm_model_free(l);
    }
    sm_model_free(m);

    expect_spec_error("avgpool p=1; gap", 4, 4, 1, "avgpool has no option 'p'");
    expect_spec_error("avgpool k=0; gap", 4, 4, 1, "bad value in 'k=0'");
    expect_spec_error("avgpool s=x; gap", 4, 4, 1, "bad value in 's=x'");
    expect_spec_error("avgpool k=5; gap", 4, 6, 1, "layer 1 (avgpool): window 5 does not fit input 4x6");
    expect_spec_error("avgpol; gap", 4, 4, 1, "unknown layer 'avgpol'");
    expect_spec_error("avgpol; gap", 4, 4, 1, "avgpool");
}

int main(void) {
    sm_rng_seed(&g_rng, 20261201);
    test_registry();
    static const tcase cases[] = {
        /* name                       k  s   n  h  w  c   oh ow */
        {"k2 (stride = k)",           2, 2,  2, 5, 4, 3,  2, 2},
        {"k3 s2 overlapping",         3, 2,  3, 5, 6, 2,  2, 2},
        {"k3 s1",                     3, 1,  2, 4, 5, 2,  2, 3},
        {"k2 s3 gaps",                2, 3,  2, 7, 8, 2,  2, 3},
        {"k1 s1 identity",            1, 1,  2, 3, 3, 2,  3, 3},
        {"k3 global",                 3, 3,  2, 3, 3, 4,  1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int before = t_failures;
        run_case(&cases[i]);
        printf("  %-24s %s\n", cases[i].name, t_failures == before ? "ok" : "FAILED");
    }
    test_threads();
    test_spec_and_model();
    TEST_MAIN_END();
}
