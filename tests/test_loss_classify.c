/* test_loss_classify.c - classification losses on logits (cross-entropy, soft CE, softmax head,
 * BCE, focal, entropy/KL) and the "softmax"/"focal" loss objects.  Every float function is
 * checked against a double-precision reference written here with simple loops: values to
 * 1e-5 relative, analytic gradients against central finite differences of the reference. */
#include "core/core.h"
#include "loss/loss.h"
#include "simile.h"
#include "testing.h"
#include <string.h>

#define MAXV 8192

/* ---- double-precision references (plain loops) ----------------------------------------- */

/* Softmax of z (c) into p (c), double. */
static void ref_softmax(const double *z, int c, double *p) {
    double m = z[0], s = 0.0;
    for (int j = 1; j < c; j++) if (z[j] > m) m = z[j];
    for (int j = 0; j < c; j++) s += exp(z[j] - m);
    for (int j = 0; j < c; j++) p[j] = exp(z[j] - m) / s;
}

/* log softmax(z)_j for all j into lp (c). */
static void ref_log_softmax(const double *z, int c, double *lp) {
    double m = z[0], s = 0.0;
    for (int j = 1; j < c; j++) if (z[j] > m) m = z[j];
    for (int j = 0; j < c; j++) s += exp(z[j] - m);
    for (int j = 0; j < c; j++) lp[j] = z[j] - m - log(s);
}

/* mean_i -sum_j q_ij log p_ij, q = (1-e) onehot + e/c. */
static double ref_ce(const double *z, const int32_t *y, int n, int c, double e) {
    double lp[64], tot = 0.0;
    for (int i = 0; i < n; i++) {
        ref_log_softmax(z + i * c, c, lp);
        for (int j = 0; j < c; j++) tot -= ((j == y[i] ? 1.0 - e : 0.0) + e / c) * lp[j];
    }
    return tot / n;
}

/* mean_i -sum_j t_ij log p_ij. */
static double ref_soft(const double *z, const double *t, int n, int c) {
    double lp[64], tot = 0.0;
    for (int i = 0; i < n; i++) {
        ref_log_softmax(z + i * c, c, lp);
        for (int j = 0; j < c; j++) tot -= t[i * c + j] * lp[j];
    }
    return tot / n;
}

/* mean_i -alpha (1 - p_y)^gamma log p_y. */
static double ref_focal(const double *z, const int32_t *y, int n, int c, double a, double g) {
    double p[64], tot = 0.0;
    for (int i = 0; i < n; i++) {
        ref_softmax(z + i * c, c, p);
        double pt = p[y[i]];
        tot += -a * pow(1.0 - pt, g) * log(pt);
    }
    return tot / n;
}

/* mean -(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))). */
static double ref_bce(const double *z, const double *t, int m) {
    double tot = 0.0;
    for (int k = 0; k < m; k++) {
        double s = 1.0 / (1.0 + exp(-z[k]));
        tot -= t[k] * log(s) + (1.0 - t[k]) * log(1.0 - s);
    }
    return tot / m;
}

/* z = f W^T + b (n, c) in double, then CE (focal=0, smoothing e) or focal. */
static double ref_head(const double *f, const double *W, const double *b, const int32_t *y,
                       int n, int d, int c, int focal, double e, double a, double g) {
    static double z[MAXV];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            double acc = b ? b[j] : 0.0;
            for (int k = 0; k < d; k++) acc += f[i * d + k] * W[j * d + k];
            z[i * c + j] = acc;
        }
    return focal ? ref_focal(z, y, n, c, a, g) : ref_ce(z, y, n, c, e);
}

/* ---- a generic finite-difference checker ------------------------------------------------ */

typedef struct ctx {
    int kind;   /* 0 CE, 1 soft CE, 2 focal, 3 BCE, 4 head (x = f, W, b), 5 head no bias */
    int n, c, d, focal;
    const int32_t *y;
    const double *t;
    double e, a, g;
} ctx;

static double eval_ref(const ctx *k, const double *x) {
    switch (k->kind) {
    case 0: return ref_ce(x, k->y, k->n, k->c, k->e);
    case 1: return ref_soft(x, k->t, k->n, k->c);
    case 2: return ref_focal(x, k->y, k->n, k->c, k->a, k->g);
    case 3: return ref_bce(x, k->t, k->n);
    case 4: return ref_head(x, x + k->n * k->d, x + k->n * k->d + k->c * k->d, k->y, k->n, k->d,
                            k->c, k->focal, k->e, k->a, k->g);
    default: return ref_head(x, x + k->n * k->d, NULL, k->y, k->n, k->d, k->c, 0, 0, 0, 0);
    }
}

/* Compare the analytic float gradient g (N) with central differences of the reference at x. */
static void grad_check(const char *what, const ctx *k, const double *x0, const float *g, int N) {
    static double x[MAXV];
    const double h = 1e-6;
    double worst = 0.0;
    int bad = 0;
    memcpy(x, x0, (size_t)N * sizeof(double));
    for (int i = 0; i < N; i++) {
        double xi = x[i];
        x[i] = xi + h;
        double fp = eval_ref(k, x);
        x[i] = xi - h;
        double fm = eval_ref(k, x);
        x[i] = xi;
        double fd = (fp - fm) / (2 * h), r = t_relerr(g[i], fd);
        int ok = r < 1e-3 || fabs(g[i] - fd) < 1e-5;
        if (!ok && bad++ < 5)
            fprintf(stderr, "  %s: grad[%d] analytic %.9g, numeric %.9g\n", what, i, g[i], fd);
        if (!ok && r > worst) worst = r;
        t_checks++;
        if (!ok) t_failures++;
    }
    CHECK_MSG(bad == 0, "%s: %d of %d gradient entries wrong (worst rel %.3g)", what, bad, N, worst);
}

/* Value of the float function against the double reference: relative 1e-5. */
#define CHECK_VALUE(what, v, ref) \
    CHECK_MSG(t_relerr((v), (ref)) < 1e-5 || fabs((double)(v) - (ref)) < 1e-7, \
              "%s: value %.9g, reference %.9g", what, (double)(v), (double)(ref))

static sm_rng rng;

static void randn(float *x, double *xd, int n, float scale) {
    for (int i = 0; i < n; i++) {
        x[i] = scale * sm_rng_normal(&rng);
        xd[i] = x[i];
    }
}

static void randlabels(int32_t *y, int n, int c) {
    for (int i = 0; i < n; i++) y[i] = (int32_t)sm_rng_below(&rng, (uint64_t)c);
}

/* Random probability rows t (n, c), strictly positive. */
static void randprob(float *t, double *td, int n, int c) {
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < c; j++) s += td[i * c + j] = 0.05 + sm_rng_uniform(&rng);
        for (int j = 0; j < c; j++) {
            t[i * c + j] = (float)(td[i * c + j] / s);
            td[i * c + j] = t[i * c + j];
        }
    }
}

/* ---- (a) the seed's worked example and gradient table ---------------------------------- */
static void test_worked_example(void) {
    float z[3] = {logf(0.8f), logf(0.15f), logf(0.05f)}, dz[3], loss;
    int32_t y = 0;
    CHECK_OK(sm_softmax_cross_entropy(z, &y, 1, 3, 0.0f, &loss, dz));
    CHECK_NEAR(loss, -log(0.8), 1e-6);
    CHECK_NEAR(dz[0], -0.2, 1e-6);
    CHECK_NEAR(dz[1], 0.15, 1e-6);
    CHECK_NEAR(dz[2], 0.05, 1e-6);

    /* true class at 0.2 -> -0.8; a wrong class at 0.7 -> 0.7 */
    float z2[3] = {logf(0.2f), logf(0.7f), logf(0.1f)}, dz2[3];
    CHECK_OK(sm_softmax_cross_entropy(z2, &y, 1, 3, 0.0f, &loss, dz2));
    CHECK_NEAR(dz2[0], -0.8, 1e-6);
    CHECK_NEAR(dz2[1], 0.7, 1e-6);
    CHECK_NEAR(dz2[2], 0.1, 1e-6);
    /* true class at 0.95 -> -0.05 */
    float z3[2] = {logf(0.95f), logf(0.05f)}, dz3[2];
    CHECK_OK(sm_softmax_cross_entropy(z3, &y, 1, 2, 0.0f, &loss, dz3));
    CHECK_NEAR(dz3[0], -0.05, 1e-6);
    CHECK_NEAR(dz3[1], 0.05, 1e-6);
    CHECK_NEAR(loss, -log(0.95), 1e-6);

    /* label smoothing 0.1, PyTorch semantics: (1-e) nll + e * mean_j(-log p_j) */
    CHECK_OK(sm_softmax_cross_entropy(z, &y, 1, 3, 0.1f, &loss, dz));
    double want = 0.9 * -log(0.8) + 0.1 / 3 * -(log(0.8) + log(0.15) + log(0.05));
    CHECK_NEAR(loss, want, 1e-6);
    CHECK_NEAR(dz[0], 0.8 - (0.9 + 0.1 / 3), 1e-6);
    CHECK_NEAR(dz[1], 0.15 - 0.1 / 3, 1e-6);

    /* focal with gamma = 0, alpha = 1 is CE; the focal loss of a well-classified row is tiny */
    float lf, dzf[3];
    CHECK_OK(sm_focal_loss(z, &y, 1, 3, 1.0f, 0.0f, &lf, dzf));
    CHECK_NEAR(lf, -log(0.8), 1e-6);
    CHECK_NEAR(dzf[0], -0.2, 1e-6);
    CHECK_OK(sm_focal_loss(z, &y, 1, 3, 1.0f, 2.0f, &lf, NULL));
    CHECK_NEAR(lf, -0.04 * log(0.8), 1e-7);

    /* dz may be NULL */
    CHECK_OK(sm_softmax_cross_entropy(z, &y, 1, 3, 0.0f, &loss, NULL));
    CHECK_NEAR(loss, -log(0.8), 1e-6);
}

/* ---- (b) values and gradients against double references --------------------------------- */
static void test_ce_grads(void) {
    enum { N = 5, C = 4 };
    float z[N * C], dz[N * C], t[N * C], loss;
    double zd[N * C], td[N * C];
    int32_t y[N];
    const float eps[] = {0.0f, 0.1f, 0.35f};
    for (int r = 0; r < 3; r++) {
        randn(z, zd, N * C, 2.0f);
        randlabels(y, N, C);
        ctx k = {.kind = 0, .n = N, .c = C, .y = y, .e = eps[r]};
        CHECK_OK(sm_softmax_cross_entropy(z, y, N, C, eps[r], &loss, dz));
        char what[64];
        snprintf(what, sizeof what, "CE smoothing=%g", (double)eps[r]);
        CHECK_VALUE(what, loss, eval_ref(&k, zd));
        grad_check(what, &k, zd, dz, N * C);
    }
    /* soft targets */
    randn(z, zd, N * C, 2.0f);
    randprob(t, td, N, C);
    ctx ks = {.kind = 1, .n = N, .c = C, .t = td};
    CHECK_OK(sm_softmax_cross_entropy_soft(z, t, N, C, &loss, dz));
    CHECK_VALUE("soft CE", loss, eval_ref(&ks, zd));
    grad_check("soft CE", &ks, zd, dz, N * C);
    /* one-hot soft targets equal the hard-label CE */
    randlabels(y, N, C);
    for (int i = 0; i < N * C; i++) t[i] = (i % C == y[i / C]) ? 1.0f : 0.0f;
    float l1, l2, d1[N * C], d2[N * C];
    CHECK_OK(sm_softmax_cross_entropy_soft(z, t, N, C, &l1, d1));
    CHECK_OK(sm_softmax_cross_entropy(z, y, N, C, 0.0f, &l2, d2));
    CHECK_NEAR(l1, l2, 1e-6);
    double md = 0;
    for (int i = 0; i < N * C; i++) md = fmax(md, fabs(d1[i] - d2[i]));
    CHECK(md < 1e-7);
}

static void test_focal_grads(void) {
    enum { N = 5, C = 4 };
    float z[N * C], dz[N * C], loss;
    double zd[N * C];
    int32_t y[N];
    const float gam[] = {0.0f, 0.5f, 1.0f, 2.0f, 3.5f}, alp[] = {1.0f, 0.25f, 1.0f, 1.0f, 0.75f};
    for (int r = 0; r < 5; r++) {
        randn(z, zd, N * C, 2.0f);
        randlabels(y, N, C);
        ctx k = {.kind = 2, .n = N, .c = C, .y = y, .a = alp[r], .g = gam[r]};
        CHECK_OK(sm_focal_loss(z, y, N, C, alp[r], gam[r], &loss, dz));
        char what[64];
        snprintf(what, sizeof what, "focal alpha=%g gamma=%g", (double)alp[r], (double)gam[r]);
        CHECK_VALUE(what, loss, eval_ref(&k, zd));
        grad_check(what, &k, zd, dz, N * C);
        if (gam[r] == 0.0f && alp[r] == 1.0f) {
            float lce, dce[N * C];
            CHECK_OK(sm_softmax_cross_entropy(z, y, N, C, 0.0f, &lce, dce));
            CHECK_NEAR(loss, lce, 1e-7);
            double md = 0;
            for (int i = 0; i < N * C; i++) md = fmax(md, fabs(dz[i] - dce[i]));
            CHECK(md < 1e-8);
        }
    }
}

static void test_bce_grads(void) {
    enum { M = 17 };
    float z[M], t[M], dz[M], loss;
    double zd[M], td[M];
    randn(z, zd, M, 3.0f);
    for (int i = 0; i < M; i++) {
        t[i] = i % 3 == 0 ? 0.0f : i % 3 == 1 ? 1.0f : (float)sm_rng_uniform(&rng);
        td[i] = t[i];
    }
    ctx k = {.kind = 3, .n = M, .t = td};
    CHECK_OK(sm_bce_with_logits(z, t, M, &loss, dz));
    CHECK_VALUE("BCE", loss, eval_ref(&k, zd));
    grad_check("BCE", &k, zd, dz, M);
    CHECK_OK(sm_bce_with_logits(z, t, M, &loss, NULL));
}

/* Head with (n, d, c); x = [f, W, b], analytic = [df, dW, db]. */
static void head_case(int n, int d, int c, int with_bias) {
    static float x[MAXV], g[MAXV];
    static double xd[MAXV];
    int32_t y[256];
    int nf = n * d, nw = c * d, N = nf + nw + (with_bias ? c : 0);
    randn(x, xd, nf, 1.0f);
    randn(x + nf, xd + nf, nw + c, 0.7f);
    randlabels(y, n, c);
    float loss;
    CHECK_OK(sm_softmax_head(x, x + nf, with_bias ? x + nf + nw : NULL, y, n, d, c, &loss, g,
                             g + nf, with_bias ? g + nf + nw : NULL));
    ctx k = {.kind = with_bias ? 4 : 5, .n = n, .c = c, .d = d, .y = y};
    char what[64];
    snprintf(what, sizeof what, "softmax head n=%d d=%d c=%d bias=%d", n, d, c, with_bias);
    CHECK_VALUE(what, loss, eval_ref(&k, xd));
    grad_check(what, &k, xd, g, N);
    /* every output may be NULL */
    float l2;
    CHECK_OK(sm_softmax_head(x, x + nf, with_bias ? x + nf + nw : NULL, y, n, d, c, &l2, NULL,
                             NULL, NULL));
    CHECK(l2 == loss);
}

static void test_head_grads(void) {
    head_case(5, 3, 4, 1);
    head_case(5, 3, 4, 0);
    head_case(64, 32, 20, 1); /* n c d = 40960: the cblas_sgemm path */
}

/* Loss object: x = [emb, W, b], analytic = [grad, l->grads]. */
static void object_case(const char *name, const char *opts, int n, int d, int C, int focal,
                        double e, double a, double g) {
    static float emb[MAXV], grad[MAXV], all[MAXV], first[MAXV];
    static double xd[MAXV];
    int32_t y[256];
    sm_loss *l = NULL;
    CHECK_OK(sm_loss_create(&l, name, opts, d, 42));
    if (!l) return;
    float *P, *G;
    int64_t np;
    sm_loss_params(l, &P, &G, &np);
    CHECK(np == (int64_t)C * (d + 1) && l->classes == C);
    double bound = 1.0 / sqrt((double)d);
    int inb = 1, allzero = 1;
    for (int64_t i = 0; i < np; i++) {
        if (!(fabsf(P[i]) <= bound)) inb = 0;
        if (G[i] != 0.0f) allzero = 0;
    }
    CHECK_MSG(inb, "%s: initial params not within +-1/sqrt(d)", name);
    CHECK(allzero);
    randn(emb, xd, n * d, 1.0f);
    for (int64_t i = 0; i < np; i++) xd[n * d + i] = P[i];
    randlabels(y, n, C);
    float value;
    CHECK_OK(sm_loss_compute(l, emb, y, n, d, &value, grad));
    memcpy(all, grad, (size_t)n * d * sizeof(float));
    memcpy(all + n * d, G, (size_t)np * sizeof(float));
    ctx k = {.kind = 4, .n = n, .c = C, .d = d, .y = y, .focal = focal, .e = e, .a = a, .g = g};
    char what[96];
    snprintf(what, sizeof what, "loss %s(%s) n=%d d=%d", name, opts, n, d);
    CHECK_VALUE(what, value, eval_ref(&k, xd));
    grad_check(what, &k, xd, all, n * d + (int)np);

    /* parameter gradients accumulate: a second call doubles them; grad may be NULL */
    memcpy(first, G, (size_t)np * sizeof(float));
    float v2;
    CHECK_OK(sm_loss_compute(l, emb, y, n, d, &v2, NULL));
    CHECK(v2 == value);
    double md = 0;
    for (int64_t i = 0; i < np; i++) md = fmax(md, fabs(G[i] - 2.0 * first[i]));
    CHECK_MSG(md < 1e-6, "%s: grads not accumulated (max diff %g)", what, md);

    /* logits() = emb W^T + b */
    float lg[256 * 64];
    CHECK_OK(l->kind->logits(l, emb, n, lg));
    double ml = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < C; j++) {
            double acc = P[(int64_t)C * d + j];
            for (int q = 0; q < d; q++) acc += (double)emb[i * d + q] * P[j * d + q];
            ml = fmax(ml, fabs(acc - lg[i * C + j]));
        }
    CHECK_MSG(ml < 1e-4, "%s: logits differ by %g", what, ml);

    /* n == 0: loss 0, parameter gradients unchanged */
    memcpy(first, G, (size_t)np * sizeof(float));
    float v0 = -1.0f;
    CHECK_OK(sm_loss_compute(l, emb, y, 0, d, &v0, grad));
    CHECK(v0 == 0.0f);
    CHECK(memcmp(first, G, (size_t)np * sizeof(float)) == 0);
    sm_loss_free(l);
}

static void test_objects(void) {
    object_case("softmax", "classes=4", 5, 3, 4, 0, 0.0, 0, 0);
    object_case("softmax", "classes=4,smoothing=0.2", 5, 3, 4, 0, 0.2, 0, 0);
    object_case("focal", "classes=4", 5, 3, 4, 1, 0, 1.0, 2.0);
    object_case("focal", "classes=4,alpha=0.5,gamma=0", 5, 3, 4, 1, 0, 0.5, 0.0);
    object_case("focal", "gamma=1.5,classes=3,alpha=0.25", 6, 2, 3, 1, 0, 0.25, 1.5);
    object_case("softmax", "classes=30,smoothing=0.1", 40, 32, 30, 0, 0.1, 0, 0); /* sgemm */

    /* same seed -> same params, other seed -> other params; help strings */
    sm_loss *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(sm_loss_create(&a, "softmax", "classes=5", 8, 7));
    CHECK_OK(sm_loss_create(&b, "softmax", "classes=5", 8, 7));
    CHECK_OK(sm_loss_create(&c, "softmax", "classes=5", 8, 8));
    if (a && b && c) {
        CHECK(memcmp(a->params, b->params, (size_t)a->nparams * sizeof(float)) == 0);
        CHECK(memcmp(a->params, c->params, (size_t)a->nparams * sizeof(float)) != 0);
        CHECK(strcmp(sm_loss_name(a), "softmax") == 0);
    }
    sm_loss_free(a);
    sm_loss_free(b);
    sm_loss_free(c);
    const sm_loss_kind *ks = sm_loss_kind_find("softmax"), *kf = sm_loss_kind_find("focal");
    CHECK(ks && kf && ks->help && kf->help && strlen(ks->help) > 10 && strlen(kf->help) > 10);
}

/* ---- (c) stability: huge logits ---------------------------------------------------------- */
static int all_finite(const float *x, int n) {
    for (int i = 0; i < n; i++) if (!isfinite(x[i])) return 0;
    return 1;
}

static void test_stability(void) {
    enum { N = 3, C = 4 };
    float z[N * C] = {1e4f, -1e4f, 0.0f, 5.0f,  1e4f, -1e4f, 0.0f, 5.0f,  -1e4f, 1e4f, 1e4f, 0.0f};
    int32_t y[N] = {0, 1, 3};
    float dz[N * C], loss, t[N * C];
    CHECK_OK(sm_softmax_cross_entropy(z, y, N, C, 0.0f, &loss, dz));
    CHECK(isfinite(loss) && all_finite(dz, N * C));
    /* rows: 0, 2e4, 1e4 + log 2 */
    CHECK_NEAR(loss, (0.0 + 2e4 + 1e4 + log(2.0)) / 3, 1e-2);
    CHECK_OK(sm_softmax_cross_entropy(z, y, N, C, 0.1f, &loss, dz));
    CHECK(isfinite(loss) && all_finite(dz, N * C));
    for (int i = 0; i < N * C; i++) t[i] = 0.25f;
    CHECK_OK(sm_softmax_cross_entropy_soft(z, t, N, C, &loss, dz));
    CHECK(isfinite(loss) && all_finite(dz, N * C));
    const float gam[] = {0.0f, 0.5f, 2.0f};
    for (int r = 0; r < 3; r++) {
        CHECK_OK(sm_focal_loss(z, y, N, C, 1.0f, gam[r], &loss, dz));
        CHECK_MSG(isfinite(loss) && all_finite(dz, N * C), "focal gamma=%g", (double)gam[r]);
    }
    /* the well-classified row 0 contributes zero focal loss and zero gradient */
    CHECK_OK(sm_focal_loss(z, y, 1, C, 1.0f, 0.5f, &loss, dz));
    CHECK(loss == 0.0f && dz[0] == 0.0f);
    float bz[6] = {1e4f, -1e4f, 1e4f, -1e4f, 1e4f, -1e4f}, bt[6] = {0, 1, 1, 0, 0.5f, 0.5f}, bd[6];
    CHECK_OK(sm_bce_with_logits(bz, bt, 6, &loss, bd));
    CHECK(isfinite(loss) && all_finite(bd, 6));
    CHECK_NEAR(loss, (1e4 + 1e4 + 0 + 0 + 5e3 + 5e3) / 6, 1e-2);
    CHECK_NEAR(bd[0], 1.0 / 6, 1e-7);
    CHECK_NEAR(bd[1], -1.0 / 6, 1e-7);
}

/* ---- (d) entropy, KL, cross-entropy ------------------------------------------------------ */
static void test_information(void) {
    enum { K = 7 };
    float p[K], q[K];
    double pd[K], qd[K];
    for (int r = 0; r < 20; r++) {
        randprob(p, pd, 1, K);
        randprob(q, qd, 1, K);
        if (r % 4 == 0) { /* a zero entry (0 log 0 = 0), renormalised */
            float s = 1.0f - p[r % K];
            p[r % K] = 0.0f;
            for (int i = 0; i < K; i++) p[i] /= s;
        }
        double h = sm_entropy(p, K), kl = sm_kl_divergence(p, q, K), ce = sm_cross_entropy(p, q, K);
        double hr = 0, cr = 0;
        for (int i = 0; i < K; i++)
            if (p[i] > 0) {
                hr -= (double)p[i] * log((double)p[i]);
                cr -= (double)p[i] * log((double)q[i]);
            }
        CHECK_NEAR(h, hr, 1e-12);
        CHECK_NEAR(ce, cr, 1e-12);
        CHECK_NEAR(ce, h + kl, 1e-12);
        CHECK(kl >= 0.0);
        CHECK(sm_kl_divergence(p, p, K) == 0.0);
        CHECK_NEAR(sm_cross_entropy(p, p, K), h, 1e-12);
    }
    float u[4] = {0.25f, 0.25f, 0.25f, 0.25f}, one[4] = {1, 0, 0, 0};
    CHECK_NEAR(sm_entropy(u, 4), log(4.0), 1e-12);
    CHECK(sm_entropy(one, 4) == 0.0);
    CHECK_NEAR(sm_kl_divergence(one, u, 4), log(4.0), 1e-12);
    /* KL with q = 0 where p > 0 is infinite: NaN (header doc); q = 0 where p = 0 is fine */
    CHECK(isnan(sm_kl_divergence(u, one, 4)));
    CHECK(isnan(sm_cross_entropy(u, one, 4)));
    CHECK_NEAR(sm_kl_divergence(one, one, 4), 0.0, 0);
    /* invalid arguments: NaN */
    float neg[2] = {-0.5f, 1.5f};
    CHECK(isnan(sm_entropy(NULL, 3)));
    CHECK(isnan(sm_entropy(u, 0)));
    CHECK(isnan(sm_entropy(neg, 2)));
    CHECK(isnan(sm_kl_divergence(u, NULL, 4)));
    CHECK(isnan(sm_cross_entropy(neg, u, 2)));
}

/* ---- (e) errors -------------------------------------------------------------------------- */
static void test_errors(void) {
    float z[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f}, dz[8], t[8], loss = 123.0f;
    int32_t y[2] = {1, 4};
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 4, 0.0f, &loss, dz), SM_ERR_RANGE);
    CHECK(strstr(sm_errmsg(), "row 1") && strstr(sm_errmsg(), "label 4"));
    CHECK(loss == 123.0f);
    y[1] = -1;
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 4, 0.0f, &loss, dz), SM_ERR_RANGE);
    CHECK_STATUS(sm_focal_loss(z, y, 2, 4, 1.0f, 2.0f, &loss, dz), SM_ERR_RANGE);
    y[1] = 3;
    z[5] = NAN;
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 4, 0.0f, &loss, dz), SM_ERR_NUMERIC);
    CHECK(strstr(sm_errmsg(), "row 1") != NULL);
    CHECK_STATUS(sm_focal_loss(z, y, 2, 4, 1.0f, 2.0f, &loss, dz), SM_ERR_NUMERIC);
    z[5] = INFINITY;
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 4, 0.0f, &loss, dz), SM_ERR_NUMERIC);
    CHECK_STATUS(sm_bce_with_logits(z, (float[8]){0}, 8, &loss, dz), SM_ERR_NUMERIC);
    z[5] = 0.6f;
    CHECK(loss == 123.0f);
    CHECK_STATUS(sm_softmax_cross_entropy(NULL, y, 2, 4, 0.0f, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_softmax_cross_entropy(z, NULL, 2, 4, 0.0f, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 4, 0.0f, NULL, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 0, 4, 0.0f, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 0, 0.0f, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 4, 1.0f, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 4, -0.1f, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_softmax_cross_entropy(z, y, 2, 4, 0.0f, &loss, z), SM_ERR_INVALID);
    for (int i = 0; i < 8; i++) t[i] = 0.25f;
    t[3] = 0.5f; /* row 0 sums to 1.25 */
    CHECK_STATUS(sm_softmax_cross_entropy_soft(z, t, 2, 4, &loss, dz), SM_ERR_INVALID);
    t[3] = 0.25f;
    t[4] = -0.25f;
    t[5] = 0.75f;
    CHECK_STATUS(sm_softmax_cross_entropy_soft(z, t, 2, 4, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_bce_with_logits(z, t, 8, &loss, dz), SM_ERR_INVALID); /* t = -0.25 */
    CHECK_STATUS(sm_bce_with_logits(z, t, 0, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_focal_loss(z, y, 2, 4, 1.0f, -1.0f, &loss, dz), SM_ERR_INVALID);
    CHECK_STATUS(sm_focal_loss(z, y, 2, 4, -1.0f, 2.0f, &loss, dz), SM_ERR_INVALID);
    CHECK(loss == 123.0f);
    /* head: label out of range, NaN weight */
    float f[6] = {1, 2, 3, 4, 5, 6}, W[9] = {0}, b[3] = {0};
    int32_t yh[2] = {0, 3};
    CHECK_STATUS(sm_softmax_head(f, W, b, yh, 2, 3, 3, &loss, NULL, NULL, NULL), SM_ERR_RANGE);
    yh[1] = 2;
    W[4] = NAN;
    CHECK_STATUS(sm_softmax_head(f, W, b, yh, 2, 3, 3, &loss, NULL, NULL, NULL), SM_ERR_NUMERIC);
    W[4] = 0;
    CHECK_STATUS(sm_softmax_head(f, W, b, yh, 2, 0, 3, &loss, NULL, NULL, NULL), SM_ERR_INVALID);
    CHECK_OK(sm_softmax_head(f, W, b, yh, 2, 3, 3, &loss, NULL, NULL, NULL));
    CHECK_NEAR(loss, log(3.0), 1e-6);

    /* loss objects: options and names */
    sm_loss *l = (sm_loss *)1;
    CHECK_STATUS(sm_loss_create(&l, "no-such-loss", "", 8, 1), SM_ERR_NOTFOUND);
    CHECK(l == NULL);
    const char *bad_softmax[] = {"", NULL, "classes=0", "classes=-3", "classes=abc", "classes=4,foo=1",
                                 "classes=4,smoothing=1", "classes=4,smoothing=-0.5",
                                 "classes=4,smoothing=x", "classes=4,alpha=1", "classes"};
    for (int i = 0; i < (int)(sizeof bad_softmax / sizeof *bad_softmax); i++) {
        l = (sm_loss *)1;
        CHECK_STATUS(sm_loss_create(&l, "softmax", bad_softmax[i], 8, 1), SM_ERR_INVALID);
        CHECK(l == NULL);
    }
    const char *bad_focal[] = {"", "classes=0", "classes=3,gamma=-1", "classes=3,alpha=-2",
                               "classes=3,smoothing=0.1", "classes=3,gamma=nan"};
    for (int i = 0; i < (int)(sizeof bad_focal / sizeof *bad_focal); i++) {
        l = (sm_loss *)1;
        CHECK_STATUS(sm_loss_create(&l, "focal", bad_focal[i], 8, 1), SM_ERR_INVALID);
        CHECK(l == NULL);
    }
    /* compute errors */
    l = NULL;
    CHECK_OK(sm_loss_create(&l, "softmax", "classes=3", 3, 1));
    if (l) {
        float e6[6] = {1, 2, 3, 4, 5, 6}, g6[6], v = 5.0f;
        int32_t yl[2] = {0, 3};
        CHECK_STATUS(sm_loss_compute(l, e6, yl, 2, 3, &v, g6), SM_ERR_RANGE);
        CHECK(strstr(sm_loss_errmsg(l), "row 1") != NULL);
        yl[1] = 2;
        CHECK_STATUS(sm_loss_compute(l, e6, yl, 2, 4, &v, g6), SM_ERR_MISMATCH);
        e6[2] = NAN;
        CHECK_STATUS(sm_loss_compute(l, e6, yl, 2, 3, &v, g6), SM_ERR_NUMERIC);
        CHECK(v == 5.0f);
        for (int64_t i = 0; i < l->nparams; i++) CHECK(l->grads[i] == 0.0f);
        e6[2] = 3;
        CHECK_OK(sm_loss_compute(l, e6, yl, 2, 3, &v, g6));
        CHECK(isfinite(v) && v > 0);
    }
    sm_loss_free(l);
    sm_loss_free(NULL);
}

int main(void) {
    sm_rng_seed(&rng, 2024);
    test_worked_example();
    test_ce_grads();
    test_focal_grads();
    test_bce_grads();
    test_head_grads();
    test_objects();
    test_stability();
    test_information();
    test_errors();
    TEST_MAIN_END();
}
