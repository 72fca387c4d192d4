/* test_resnet.c - residual blocks (res / shortcut / end), the padded max-pool, dropout, GeM
 * pooling and the resnet-s / resnet18 built-ins:
 *   - gem's forward against a double reference and its backward (dx and dp) by central finite
 *     differences of the double objective sum(y * R); the padded max-pool's layer forward
 *     against a reference (padded cells never win) and its output shapes;
 *   - dropout: the identity at inference; in training the kept fraction is 1 - p (within 1% on
 *     200,000 values), kept values are scaled by 1/(1-p), the mask depends only on the key (the
 *     same bits on 1 and 2 threads, another key another mask), the backward applies it;
 *   - whole models with residual blocks (identity shortcut, projection shortcut with stride-2
 *     convs, bn inside both branches, two blocks in a row, an empty shortcut section, dropout
 *     and gem): every parameter gradient of sm_model_backward against finite differences of the
 *     float forward, so both branches' gradients reach the layers before the block;
 *   - the inference plan (bn folded inside the branches) equals sm_model_forward(train = 0) for
 *     resnet-s, and gives the same bits on 1 and 2 threads; a tiny batch of resnet18 at 32 px;
 *   - a model file round trip of a residual model keeps the spec, the parameters and the
 *     embeddings;
 *   - spec errors naming the line: nested res, unmatched end, a shortcut outside a block, a
 *     second shortcut, a block left open, a shape mismatch with and without a shortcut section;
 *   - parameter counts: resnet18 with a 1000-unit fc has torchvision's 11,689,512, 11,176,512
 *     without a head, 11,242,176 with the built-in 128-d embedding; resnet-s 315,040 at 28x28x1. */
#include "core/core.h"
#include "model/model.h"
#include "simile.h"
#include "testing.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sm_rng g_rng;
#ifndef FD_H
#define FD_H 1e-3f
#endif
static int contains(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* ---- gem ------------------------------------------------------------------------------------ */
static double gem_ref(const double *x, int hw, int c, int ch, double p) {
    double s = 0;
    for (int q = 0; q < hw; q++) {
        double z = x[q * c + ch];
        s += pow(z > 1e-6 ? z : 1e-6, p);
    }
    return pow(s / hw, 1.0 / p);
}

static void check_gem(void) {
    const int n = 3, h = 3, w = 4, c = 5, hw = h * w;
    sm_layer L;
    memset(&L, 0, sizeof L);
    L.type = SM_LAYER_GEM;
    L.eps = 3.0f;
    CHECK_OK(sm_layer_setup(&L, h, w, c, 0));
    CHECK(L.oh == 1 && L.ow == 1 && L.oc == c && L.nparams == 1);
    float p = 0, dp = 0;
    sm_layer_bind(&L, &p, &dp, NULL);
    sm_layer_init_params(&L, &g_rng);
    CHECK(p == 3.0f); /* initialised to the spec's p */
    p = 2.5f;
    sm_ws ws = {malloc(sm_layer_workspace(&L, n)), sm_layer_workspace(&L, n)};
    L.ws = &ws;
    const int nx = n * hw * c, ny = n * c;
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny), *dy = malloc(sizeof(float) * ny);
    float *dx = malloc(sizeof(float) * nx), *yi = malloc(sizeof(float) * ny);
    double *xd = malloc(sizeof(double) * nx), *R = malloc(sizeof(double) * ny);
    /* positive values away from the clamp, plus a few below it (their gradient is 0) */
    for (int i = 0; i < nx; i++) x[i] = (float)(0.1 + 1.9 * sm_rng_uniform(&g_rng));
    x[3] = -0.5f; x[17] = 0.0f;
    for (int i = 0; i < ny; i++) { R[i] = sm_rng_uniform(&g_rng) - 0.5; dy[i] = (float)R[i]; }
    for (int i = 0; i < nx; i++) xd[i] = x[i];
    sm_layer_forward(&L, x, y, n, 1);
    double maxrel = 0;
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            double r = gem_ref(xd + b * hw * c, hw, c, ch, p);
            double e = fabs(y[b * c + ch] - r) / fabs(r);
            if (e > maxrel) maxrel = e;
        }
    CHECK_MSG(maxrel < 1e-6, "gem forward: relative error %g", maxrel);
    sm_layer_kind_of(&L)->infer(&L, &p, x, n, yi, NULL);
    CHECK(!memcmp(y, yi, sizeof(float) * ny)); /* the inference path runs the same code */
    /* p = 1 is the mean of the clamped values */
    p = 1.0f;
    sm_layer_forward(&L, x + hw * c, yi, 1, 1);
    double mean0 = 0;
    for (int q = 0; q < hw; q++) mean0 += x[hw * c + q * c] > 1e-6 ? x[hw * c + q * c] : 1e-6;
    CHECK_NEAR(yi[0], mean0 / hw, 1e-6);
    p = 2.5f;
    /* backward against central differences of sum(y * R) in double */
    memset(dx, 0x7f, sizeof(float) * nx); /* overwritten, not accumulated */
    sm_layer_backward(&L, x, y, dy, dx, n);
    int bad = 0;
    const double hstep = 1e-6;
    for (int i = 0; i < nx; i++) {
        int b = i / (hw * c), ch = i % c;
        double save = xd[i];
        xd[i] = save + hstep;
        double fp = gem_ref(xd + b * hw * c, hw, c, ch, p);
        xd[i] = save - hstep;
        double fm = gem_ref(xd + b * hw * c, hw, c, ch, p);
        xd[i] = save;
        double fd = (fp - fm) / (2 * hstep) * R[b * c + ch];
        if (!(t_relerr(fd, dx[i]) < 1e-4 || fabs(fd - dx[i]) < 1e-7)) {
            bad++;
            fprintf(stderr, "gem dx[%d]: analytic %g, finite difference %g\n", i, dx[i], fd);
        }
    }
    CHECK_MSG(bad == 0, "gem: %d input gradients off", bad);
    CHECK(dx[3] == 0.0f && dx[17] == 0.0f); /* clamped inputs */
    double fdp = 0;
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            fdp += R[b * c + ch] * (gem_ref(xd + b * hw * c, hw, c, ch, p + hstep) -
                                    gem_ref(xd + b * hw * c, hw, c, ch, p - hstep)) / (2 * hstep);
    CHECK_MSG(t_relerr(fdp, dp) < 1e-4, "gem dp: analytic %g, finite difference %g", dp, fdp);
    float dp1 = dp;
    sm_layer_backward(&L, x, y, dy, NULL, n);
    CHECK(dp == dp1); /* the same dp when dx is not asked for */
    /* the same bits on 1 and 2 threads, on a batch large enough for the parallel path */
    {
        sm_layer G;
        memset(&G, 0, sizeof G);
        G.type = SM_LAYER_GEM;
        G.eps = 3.0f;
        CHECK_OK(sm_layer_setup(&G, 8, 8, 16, 0));
        float gp = 3.0f, gdp[2];
        sm_layer_bind(&G, &gp, &gdp[0], NULL);
        const int bn = 64, bx = bn * 8 * 8 * 16, by = bn * 16;
        sm_ws gws = {malloc(sm_layer_workspace(&G, bn)), sm_layer_workspace(&G, bn)};
        G.ws = &gws;
        float *gx = malloc(sizeof(float) * bx), *gy[2], *gdx[2], *gdy = malloc(sizeof(float) * by);
        for (int i = 0; i < bx; i++) gx[i] = (float)sm_rng_uniform(&g_rng);
        for (int i = 0; i < by; i++) gdy[i] = sm_rng_normal(&g_rng);
        for (int t = 0; t < 2; t++) {
            gy[t] = malloc(sizeof(float) * by); gdx[t] = malloc(sizeof(float) * bx);
            sm_set_num_threads(t + 1);
            G.dW = &gdp[t];
            sm_layer_forward(&G, gx, gy[t], bn, 1);
            sm_layer_backward(&G, gx, gy[t], gdy, gdx[t], bn);
        }
        CHECK(!memcmp(gy[0], gy[1], sizeof(float) * by) && !memcmp(gdx[0], gdx[1], sizeof(float) * bx) && gdp[0] == gdp[1]);
        for (int t = 0; t < 2; t++) { free(gy[t]); free(gdx[t]); }
        free(gx); free(gdy); free(gws.base);
    }
    free(x); free(y); free(dy); free(dx); free(yi); free(xd); free(R); free(ws.base);
}

/* ---- padded max-pool at the layer level -------------------------------------------------- */
static void check_maxpool_pad(void) {
    const struct { int h, w, k, s, p, oh, ow; } C[] = {{8, 8, 3, 2, 1, 4, 4}, {7, 5, 3, 2, 1, 4, 3}, {5, 4, 2, 2, 1, 3, 3}};
    for (size_t ci = 0; ci < sizeof C / sizeof C[0]; ci++) {
        sm_layer L;
        memset(&L, 0, sizeof L);
        L.type = SM_LAYER_MAXPOOL;
        L.k = C[ci].k; L.stride = C[ci].s; L.pad = C[ci].p;
        const int c = 3, n = 2;
        CHECK_OK(sm_layer_setup(&L, C[ci].h, C[ci].w, c, 0));
        CHECK_MSG(L.oh == C[ci].oh && L.ow == C[ci].ow, "maxpool case %zu: %dx%d", ci, L.oh, L.ow);
        CHECK_OK(sm_layer_alloc_cache(&L, n));
        int nx = n * (int)sm_layer_in_size(&L), ny = n * (int)sm_layer_out_size(&L);
        float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny), *yi = malloc(sizeof(float) * ny);
        /* all negative: a padded cell counted as 0 would win everywhere on the border */
        for (int i = 0; i < nx; i++) x[i] = -1.0f - (float)sm_rng_uniform(&g_rng);
        sm_layer_forward(&L, x, y, n, 1);
        sm_layer_kind_of(&L)->infer(&L, NULL, x, n, yi, NULL);
        int ok = 1;
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < L.oh; oy++)
                for (int ox = 0; ox < L.ow; ox++)
                    for (int ch = 0; ch < c; ch++) {
                        float best = -INFINITY;
                        for (int ky = 0; ky < L.k; ky++)
                            for (int kx = 0; kx < L.k; kx++) {
                                int iy = oy * L.stride - L.pad + ky, ix = ox * L.stride - L.pad + kx;
                                if (iy < 0 || ix < 0 || iy >= L.ih || ix >= L.iw) continue;
                                float v = x[((b * L.ih + iy) * L.iw + ix) * c + ch];
                                if (v > best) best = v;
                            }
                        int o = ((b * L.oh + oy) * L.ow + ox) * c + ch;
                        ok &= y[o] == best && yi[o] == best;
                    }
        CHECK_MSG(ok, "padded maxpool case %zu differs from the reference", ci);
        sm_layer_free_cache(&L);
        free(x); free(y); free(yi);
    }
}

/* ---- dropout ------------------------------------------------------------------------------ */
static void check_dropout(void) {
    sm_layer L;
    memset(&L, 0, sizeof L);
    L.type = SM_LAYER_DROPOUT;
    L.eps = 0.3f; /* p */
    const int n = 100, d = 2000, cnt = n * d;
    CHECK_OK(sm_layer_setup(&L, 1, 1, d, 0));
    CHECK_OK(sm_layer_alloc_cache(&L, n));
    float *x = malloc(sizeof(float) * cnt), *y[3], *dx = malloc(sizeof(float) * cnt), *dy = malloc(sizeof(float) * cnt);
    for (int i = 0; i < cnt; i++) { x[i] = 0.5f + (float)sm_rng_uniform(&g_rng); dy[i] = sm_rng_normal(&g_rng); }
    for (int t = 0; t < 3; t++) y[t] = malloc(sizeof(float) * cnt);
    /* inference: the identity */
    sm_layer_forward(&L, x, y[0], n, 0);
    CHECK(!memcmp(x, y[0], sizeof(float) * cnt));
    sm_layer_kind_of(&L)->infer(&L, NULL, x, n, y[0], NULL);
    CHECK(!memcmp(x, y[0], sizeof(float) * cnt));
    /* training: the same key on 1 and 2 threads, then another key */
    L.noise = 12345;
    sm_set_num_threads(1);
    sm_layer_forward(&L, x, y[0], n, 1);
    sm_set_num_threads(2);
    sm_layer_forward(&L, x, y[1], n, 1);
    CHECK_MSG(!memcmp(y[0], y[1], sizeof(float) * cnt), "dropout mask differs between 1 and 2 threads");
    int kept = 0, scaled = 1;
    const float sc = 1.0f / (1.0f - L.eps);
    for (int i = 0; i < cnt; i++) {
        if (y[0][i] != 0) { kept++; scaled &= y[0][i] == x[i] * sc; }
    }
    CHECK_MSG(fabs((double)kept / cnt - 0.7) < 0.01, "dropout kept %.4f of the values, want 0.7", (double)kept / cnt);
    CHECK(scaled);
    sm_layer_backward(&L, x, y[1], dy, dx, n);
    int bwd = 1;
    for (int i = 0; i < cnt; i++) bwd &= dx[i] == (y[0][i] != 0 ? dy[i] * sc : 0.0f);
    CHECK_MSG(bwd, "dropout backward is not the forward's mask times dy / (1 - p)");
    L.noise = 12346;
    sm_layer_forward(&L, x, y[2], n, 1);
    int same = 0;
    for (int i = 0; i < cnt; i++) same += (y[2][i] != 0) == (y[0][i] != 0);
    CHECK_MSG(same < cnt * 0.7, "another key gives nearly the same mask (%d of %d agree)", same, cnt);
    sm_layer_free_cache(&L);
    for (int t = 0; t < 3; t++) free(y[t]);
    free(x); free(dx); free(dy);
}

/* ---- whole models: parameter gradients by finite differences --------------------------------- */
static double model_objective(sm_model *m, const float *x, int n, const float *R) {
    const float *o = sm_model_forward(m, x, n, 1);
    double s = 0;
    for (int64_t i = 0; i < (int64_t)n * m->emb_dim; i++) s += (double)o[i] * R[i];
    return s;
}

static void check_model_grads(const char *spec, int h, int w, int c) {
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, spec, h, w, c, 3));
    if (!m) { fprintf(stderr, "  spec: %s: %s\n", spec, sm_errmsg()); return; }
    const int n = 4;
    const int64_t in = (int64_t)h * w * c;
    CHECK_OK(sm_model_reserve(m, n));
    m->noise = 777; /* a fixed dropout mask for every forward below */
    float *x = malloc(sizeof(float) * (size_t)(n * in)), *R = malloc(sizeof(float) * (size_t)n * m->emb_dim);
    for (int64_t i = 0; i < n * in; i++) x[i] = sm_rng_normal(&g_rng);
    for (int64_t i = 0; i < (int64_t)n * m->emb_dim; i++) R[i] = sm_rng_normal(&g_rng);
    /* a gem exponent away from 3's default, so its gradient is checked at a general point */
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].type == SM_LAYER_GEM) m->layers[i].W[0] = 2.5f;
    model_objective(m, x, n, R);
    memset(m->grads, 0, sizeof(float) * (size_t)m->nparams);
    sm_model_backward(m, x, R, n);
    float *g = malloc(sizeof(float) * (size_t)m->nparams);
    memcpy(g, m->grads, sizeof(float) * (size_t)m->nparams);
    /* central differences in float, h = 1e-3: compared as vectors per layer */
    double num = 0, den = 0;
    int worst_layer = -1;
    double worst = 0;
    for (int li = 0; li < m->nlayers; li++) {
        const sm_layer *L = &m->layers[li];
        double ln = 0, ld = 0;
        for (int64_t k = 0; k < L->nparams; k++) {
            float *p = m->params + L->param_offset + k, save = *p;
            *p = save + FD_H;
            double fp = model_objective(m, x, n, R);
            *p = save - FD_H;
            double fm = model_objective(m, x, n, R);
            *p = save;
            double fd = (fp - fm) / (2 * (double)FD_H), a = g[L->param_offset + k];
            ln += (fd - a) * (fd - a);
            ld += fd * fd;
        }
        num += ln; den += ld;
        if (L->nparams && ld > 0 && sqrt(ln / ld) > worst) { worst = sqrt(ln / ld); worst_layer = li; }
        if (L->nparams) CHECK_MSG(ld > 0, "%s: layer %d (%s) gets no gradient", spec, li + 1, sm_layer_type_name(L->type));
    }
    CHECK_MSG(worst < 2e-2, "%s: gradient of layer %d (%s) off by %.3g (relative norm)", spec, worst_layer + 1,
              worst_layer >= 0 ? sm_layer_type_name(m->layers[worst_layer].type) : "-", worst);
    printf("  %-70.70s grad rel. error %.2g\n", spec, sqrt(num / (den > 0 ? den : 1)));
    free(x); free(R); free(g);
    sm_model_free(m);
}

/* ---- inference plan and file round trip ------------------------------------------------------ */
static void perturb_bn(sm_model *m) {
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        if (L->type != SM_LAYER_BN) continue;
        for (int j = 0; j < L->oc; j++) {
            L->gamma[j] = 0.5f + (float)sm_rng_uniform(&g_rng);
            L->beta[j] = 0.3f * sm_rng_normal(&g_rng);
            L->run_mean[j] = 0.2f * sm_rng_normal(&g_rng);
            L->run_var[j] = 0.2f + 2.0f * (float)sm_rng_uniform(&g_rng);
        }
    }
}

static void check_infer(const char *spec, int h, int w, int c, int n) {
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, spec, h, w, c, 9));
    if (!m) return;
    perturb_bn(m);
    const int64_t in = (int64_t)h * w * c;
    const int d = m->emb_dim;
    float *x = malloc(sizeof(float) * (size_t)(n * in));
    for (int64_t i = 0; i < n * in; i++) x[i] = sm_rng_normal(&g_rng);
    CHECK_OK(sm_model_reserve(m, n));
    float *ref = malloc(sizeof(float) * (size_t)n * d), *e1 = malloc(sizeof(float) * (size_t)n * d),
          *e2 = malloc(sizeof(float) * (size_t)n * d);
    memcpy(ref, sm_model_forward(m, x, n, 0), sizeof(float) * (size_t)n * d);
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
    CHECK_MSG(maxerr <= 1e-4 * (scale > 1 ? scale : 1), "%.40s: inference differs from forward by %g (scale %g)",
              spec, maxerr, scale);
    CHECK_MSG(!memcmp(e1, e2, sizeof(float) * (size_t)n * d), "%.40s: 1 and 2 threads differ", spec);
    /* a training step's forward and backward stay finite */
    const float *o = sm_model_forward(m, x, n, 1);
    CHECK(sm_all_finite(o, (int64_t)n * d));
    sm_model_backward(m, x, ref, n);
    CHECK(sm_all_finite(m->grads, m->nparams));
    printf("  infer %-24.24s n=%d max |infer - forward| %.2g\n", spec, n, maxerr);
    free(x); free(ref); free(e1); free(e2);
    sm_model_free(m);
}

static void check_round_trip(void) {
    const char *spec = "conv 4 k=3 p=1 bias=0; bn; relu; maxpool k=3 s=2 p=1\n"
                       "res; conv 4 k=3 p=1 bias=0; bn; relu; conv 4 k=3 p=1 bias=0; bn; end; relu\n"
                       "res; conv 6 k=3 s=2 p=1 bias=0; bn; relu; conv 6 k=3 p=1; shortcut; conv 6 k=1 s=2 bias=0; bn; end\n"
                       "dropout p=0.2; gem p=2.5; fc 5; l2norm";
    sm_model *m = NULL, *m2 = NULL;
    CHECK_OK(sm_model_create(&m, spec, 12, 12, 2, 4));
    if (!m) return;
    perturb_bn(m);
    m->layers[m->nlayers - 3].W[0] = 2.75f; /* gem's p, trained away from its start */
    char path[64];
    snprintf(path, sizeof path, "/tmp/sm_test_resnet_%d.smm", (int)getpid());
    CHECK_OK(sm_model_save(m, path));
    CHECK_OK(sm_model_load(&m2, path));
    unlink(path);
    if (!m2) { sm_model_free(m); return; }
    CHECK(strcmp(sm_model_spec(m), sm_model_spec(m2)) == 0);
    CHECK(contains(sm_model_spec(m2), "res\nconv 4 k=3 s=1 p=1 bias=0\n"));
    CHECK(contains(sm_model_spec(m2), "shortcut\nconv 6 k=1 s=2 p=0 bias=0\n"));
    CHECK(contains(sm_model_spec(m2), "maxpool k=3 s=2 p=1\n") && contains(sm_model_spec(m2), "dropout p=0.2\ngem p=2.5\n"));
    CHECK(m2->nparams == m->nparams && !memcmp(m->params, m2->params, sizeof(float) * (size_t)m->nparams));
    CHECK(m2->nbuffers == m->nbuffers && !memcmp(m->buffers, m2->buffers, sizeof(float) * (size_t)m->nbuffers));
    CHECK(m2->layers[m2->nlayers - 3].W[0] == 2.75f);
    const int n = 5;
    float x[5 * 12 * 12 * 2], e1[5 * 5], e2[5 * 5];
    for (int i = 0; i < n * 12 * 12 * 2; i++) x[i] = sm_rng_normal(&g_rng);
    CHECK_OK(sm_model_embed(m, x, n, e1));
    CHECK_OK(sm_model_embed(m2, x, n, e2));
    CHECK(!memcmp(e1, e2, sizeof e1));
    sm_model_free(m);
    sm_model_free(m2);
}

/* ---- spec errors and parameter counts -------------------------------------------------------- */
static void expect_spec_error(const char *spec, int h, const char *want1, const char *want2) {
    sm_model *m = NULL;
    CHECK_STATUS(sm_model_create(&m, spec, h, h, 1, 1), SM_ERR_SPEC);
    CHECK(m == NULL);
    CHECK_MSG(contains(sm_errmsg(), want1) && (!want2 || contains(sm_errmsg(), want2)), "spec '%s': message '%s' lacks '%s' / '%s'",
              spec, sm_errmsg(), want1, want2 ? want2 : "");
    sm_model_free(m);
}

static void check_spec_errors(void) {
    expect_spec_error("conv 4\nres\nconv 4 p=1\nres\nend\nend\ngap", 6, "line 4", "nest");
    expect_spec_error("conv 4 p=1\nend\ngap", 6, "line 2", "unmatched 'end'");
    expect_spec_error("conv 4 p=1\nshortcut\nend\ngap", 6, "line 2", "outside");
    expect_spec_error("res\nconv 4 p=1\nshortcut\nshortcut\nend\ngap", 6, "line 4", "second");
    expect_spec_error("conv 4 p=1\nres\nconv 4 p=1\ngap", 6, "line 2", "no matching");
    /* shapes: the main branch changes the channels / the size and there is no shortcut section */
    expect_spec_error("conv 4 k=3 p=1\nres; conv 8 k=3 p=1\nend\ngap", 6, "line 3", "6x6x8");
    expect_spec_error("conv 4 k=3 p=1\nres; conv 4 k=3 s=2 p=1\nend\ngap", 6, "line 3", "shortcut");
    /* a shortcut that does not give the main branch's shape */
    expect_spec_error("conv 4 k=3 p=1\nres; conv 8 k=3 s=2 p=1\nshortcut; conv 8 k=1\nend\ngap", 6, "line 4", "same shape");
    expect_spec_error("maxpool k=2 p=2\ngap", 6, "line 1", "p=2");
    expect_spec_error("conv 4\ndropout p=1\ngap", 6, "line 2", "p=1");
    expect_spec_error("conv 4\ngem p=0\ngap", 6, "line 2", "p=0");
}

static int64_t count(const char *spec, int h, int w, int c) {
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, spec, h, w, c, 1));
    int64_t n = m ? sm_model_num_params(m) : -1;
    sm_model_free(m);
    return n;
}

/* the resnet18 built-in with its last line replaced */
static char *resnet18_with(const char *tail) {
    const char *t = sm_spec_builtin("resnet18");
    const char *last = strstr(t, "gap; fc 128; l2norm");
    CHECK(last != NULL);
    if (!last) return NULL;
    char *s = malloc(strlen(t) + strlen(tail) + 1);
    memcpy(s, t, (size_t)(last - t));
    strcpy(s + (last - t), tail);
    return s;
}

static void check_counts(void) {
    char *s1000 = resnet18_with("gap; fc 1000"), *s0 = resnet18_with("gap");
    if (s1000) CHECK_MSG(count(s1000, 224, 224, 3) == 11689512, "resnet18 + fc 1000: %lld", (long long)count(s1000, 224, 224, 3));
    if (s0) CHECK(count(s0, 224, 224, 3) == 11176512);
    CHECK(count("resnet18", 224, 224, 3) == 11242176);
    CHECK(count("resnet-s", 28, 28, 1) == 315040);
    free(s1000); free(s0);
    /* the shapes of resnet18 at 224 px: stem 112, pool 56, stages 56, 28, 14, 7 */
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, "resnet18", 224, 224, 3, 1));
    if (m) {
        CHECK(m->layers[0].oh == 112 && m->layers[3].oh == 56 && m->layers[3].oc == 64);
        int last_end = -1;
        for (int i = 0; i < m->nlayers; i++) if (m->layers[i].type == SM_LAYER_END) last_end = i;
        CHECK(last_end > 0 && m->layers[last_end].oh == 7 && m->layers[last_end].oc == 512);
        CHECK(m->emb_dim == 128);
        sm_model_free(m);
    }
}

int main(void) {
    sm_rng_seed(&g_rng, 20261201);
    check_gem();
    check_maxpool_pad();
    check_dropout();
    /* The models have no relu or max-pool (kinks, which finite differences of a float forward
     * cannot straddle; those kinds are checked in test_layers.c and test_backend_ops.c).
     * Identity shortcut; the conv before the block gets both branches' gradients. */
    check_model_grads("conv 3 k=3 p=1; res; conv 3 k=3 p=1; conv 3 k=3 p=1; end; gap; fc 4", 5, 5, 2);
    /* projection shortcut with stride 2, two blocks in a row, the second with an empty shortcut
     * section (the identity) */
    check_model_grads("conv 3 k=3 p=1; res; conv 4 k=3 s=2 p=1; conv 4 k=3 p=1; shortcut; conv 4 k=1 s=2; end\n"
                      "res; conv 4 k=3 p=1; shortcut; end; gap; fc 3", 6, 6, 2);
    /* bn in both branches, as resnet's blocks */
    check_model_grads("conv 3 k=3 p=1 bias=0; bn\n"
                      "res; conv 4 k=3 s=2 p=1 bias=0; bn; conv 4 k=3 p=1 bias=0; bn; shortcut; conv 4 k=1 s=2 bias=0; bn; end\n"
                      "gap; fc 3", 6, 6, 2);
    /* dropout (a fixed mask) and gem after the block (values below eps are clamped: no gradient) */
    check_model_grads("conv 3 k=3 p=1; res; conv 3 k=3 p=1; conv 3 k=3 p=1; end; dropout p=0.4; gem; fc 3", 4, 4, 2);
    check_infer("resnet-s", 28, 28, 1, 13);
    check_infer("resnet-s", 32, 32, 3, 9);
    check_infer("conv 4 k=3 p=1; res; end; res; conv 4 k=3 p=1; shortcut; conv 4 k=1; bn; end; gap; fc 3", 6, 6, 1, 10);
    check_infer("resnet18", 32, 32, 3, 2);
    check_round_trip();
    check_spec_errors();
    check_counts();
    TEST_MAIN_END();
}
