/* test_layers.c - every layer kind (conv, bn, relu, maxpool, gap, fc, l2norm) in several
 * configurations, against a double-precision reference forward written here with plain NHWC
 * loops.  For each case:
 *   - the output shape from sm_layer_setup equals the hand-computed one;
 *   - the float forward (sm_layer_forward) matches the reference to 1e-4 relative;
 *   - the float backward (sm_layer_backward: dx, dW, db, dgamma, dbeta) matches central finite
 *     differences (h = 1e-6) of the double reference of L = sum(y * R), R fixed and random:
 *     relative error < 1e-3 or absolute error < 1e-5 for every element.
 * Kinks are avoided: relu inputs are re-drawn until none is within 1e-3 of 0, and maxpool inputs
 * until no two values of one pool window are within 1e-3 of each other.  Batch norm in train mode
 * is referenced with batch statistics recomputed in double from all inputs (so every dx element
 * sees every input); its running-statistic update (momentum 0.1, unbiased variance) and its
 * inference mode (running statistics) are checked as well. */
#include "core/core.h"
#include "nn/layer.h"
#include "simile.h"
#include "testing.h"
#include <string.h>

/* ---- small deterministic random helpers ------------------------------------------------ */
static sm_rng g_rng;
static double urand(double lo, double hi) { return lo + (hi - lo) * sm_rng_uniform(&g_rng); }

/* ---- double parameters of a layer (copies of the float ones) ---------------------------- */
typedef struct dparams { double *W, *b, *gamma, *beta, *rm, *rv; } dparams;

/* Double reference forward of layer L (its configuration and the shapes set by setup) on
 * x (n, ih, iw, ic) into y (n, oh, ow, oc).  train selects batch statistics for bn. */
static void ref_forward(const sm_layer *L, const double *x, const dparams *P, int n, int train, double *y) {
    const int ih = L->ih, iw = L->iw, ic = L->ic, oh = L->oh, ow = L->ow, oc = L->oc;
    switch (L->type) {
    case SM_LAYER_CONV:
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int o = 0; o < oc; o++) {
                        double s = L->bias ? P->b[o] : 0.0;
                        for (int ky = 0; ky < L->k; ky++)
                            for (int kx = 0; kx < L->k; kx++) {
                                int iy = oy * L->stride - L->pad + ky, ix = ox * L->stride - L->pad + kx;
                                if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
                                for (int ci = 0; ci < ic; ci++)
                                    s += x[((b * ih + iy) * iw + ix) * ic + ci] *
                                         P->W[((o * L->k + ky) * L->k + kx) * ic + ci];
                            }
                        y[((b * oh + oy) * ow + ox) * oc + o] = s;
                    }
        break;
    case SM_LAYER_BN: {
        int m = n * ih * iw;
        for (int j = 0; j < ic; j++) {
            double mu, var;
            if (train) {
                double s = 0, q = 0;
                for (int i = 0; i < m; i++) s += x[i * ic + j];
                mu = s / m;
                for (int i = 0; i < m; i++) q += (x[i * ic + j] - mu) * (x[i * ic + j] - mu);
                var = q / m; /* biased, as PyTorch normalises with */
            } else {
                mu = P->rm[j];
                var = P->rv[j];
            }
            for (int i = 0; i < m; i++)
                y[i * ic + j] = P->gamma[j] * (x[i * ic + j] - mu) / sqrt(var + (double)L->eps) + P->beta[j];
        }
        break;
    }
    case SM_LAYER_RELU:
        for (int i = 0; i < n * ih * iw * ic; i++) y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case SM_LAYER_MAXPOOL:
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int c = 0; c < ic; c++) {
                        double best = -HUGE_VAL;
                        for (int ky = 0; ky < L->k; ky++)
                            for (int kx = 0; kx < L->k; kx++) {
                                double v = x[((b * ih + oy * L->stride + ky) * iw + ox * L->stride + kx) * ic + c];
                                if (v > best) best = v;
                            }
                        y[((b * oh + oy) * ow + ox) * oc + c] = best;
                    }
        break;
    case SM_LAYER_GAP:
        for (int b = 0; b < n; b++)
            for (int c = 0; c < ic; c++) {
                double s = 0;
                for (int p = 0; p < ih * iw; p++) s += x[(b * ih * iw + p) * ic + c];
                y[b * ic + c] = s / (ih * iw);
            }
        break;
    case SM_LAYER_FC: {
        int in = ih * iw * ic; /* NHWC flattening */
        for (int b = 0; b < n; b++)
            for (int o = 0; o < oc; o++) {
                double s = L->bias ? P->b[o] : 0.0;
                for (int i = 0; i < in; i++) s += x[b * in + i] * P->W[o * in + i];
                y[b * oc + o] = s;
            }
        break;
    }
    case SM_LAYER_L2NORM: {
        int d = ih * iw * ic;
        for (int b = 0; b < n; b++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += x[b * d + i] * x[b * d + i];
            double nr = sqrt(s);
            if (nr < 1e-12) nr = 1e-12;
            for (int i = 0; i < d; i++) y[b * d + i] = x[b * d + i] / nr;
        }
        break;
    }
    }
}

/* ---- one test case ------------------------------------------------------------------------ */
typedef struct tcase {
    const char *name;
    sm_layer_type type;
    int units, k, stride, pad, bias;
    int n, h, w, c;
    int oh, ow, oc; /* expected output shape, computed by hand */
} tcase;

/* Objective sum(y * R) of the double reference. */
static double objective(const sm_layer *L, const double *x, const dparams *P, int n, int train,
                        const double *R, double *ybuf) {
    ref_forward(L, x, P, n, train, ybuf);
    double s = 0;
    for (int64_t i = 0; i < (int64_t)n * sm_layer_out_size(L); i++) s += ybuf[i] * R[i];
    return s;
}

/* Compare the float gradient g (cnt) of array v (double, cnt) with central differences. */
static void grad_check(const char *cname, const char *what, const sm_layer *L, double *x, const dparams *P,
                       int n, int train, const double *R, double *ybuf, double *v, const float *g, int cnt) {
    const double h = 1e-6;
    double worst_rel = 0, worst_abs = 0;
    int bad = 0, worst_i = -1;
    double worst_fd = 0, worst_g = 0;
    for (int i = 0; i < cnt; i++) {
        double save = v[i];
        v[i] = save + h;
        double lp = objective(L, x, P, n, train, R, ybuf);
        v[i] = save - h;
        double lm = objective(L, x, P, n, train, R, ybuf);
        v[i] = save;
        double fd = (lp - lm) / (2 * h);
        double ae = fabs(fd - g[i]), re = t_relerr(fd, g[i]);
        if (!(re < 1e-3 || ae < 1e-5)) {
            bad++;
            if (ae > worst_abs) { worst_abs = ae; worst_rel = re; worst_i = i; worst_fd = fd; worst_g = g[i]; }
        }
    }
    CHECK_MSG(bad == 0, "%s: %s: %d of %d elements off (worst #%d: analytic %.9g, finite diff %.9g, rel %.3g)",
              cname, what, bad, cnt, worst_i, worst_g, worst_fd, worst_rel);
}

static void fill_f(float *a, int cnt, double lo, double hi) { for (int i = 0; i < cnt; i++) a[i] = (float)urand(lo, hi); }
static void to_d(const float *a, double *d, int cnt) { for (int i = 0; i < cnt; i++) d[i] = a[i]; }

/* Re-draw relu inputs near 0 and maxpool inputs that nearly tie within a window. */
static void avoid_kinks(const tcase *tc, const sm_layer *L, float *x, int cnt) {
    if (tc->type == SM_LAYER_RELU) {
        for (int i = 0; i < cnt; i++)
            while (fabsf(x[i]) < 1e-3f) x[i] = (float)urand(-1, 1);
    } else if (tc->type == SM_LAYER_MAXPOOL) {
        int changed = 1, rounds = 0;
        while (changed && rounds++ < 1000) {
            changed = 0;
            for (int b = 0; b < tc->n; b++)
                for (int oy = 0; oy < L->oh; oy++)
                    for (int ox = 0; ox < L->ow; ox++)
                        for (int c = 0; c < L->ic; c++)
                            for (int p = 0; p < L->k * L->k; p++)
                                for (int q = p + 1; q < L->k * L->k; q++) {
                                    int ip = ((b * L->ih + oy * L->stride + p / L->k) * L->iw + ox * L->stride + p % L->k) * L->ic + c;
                                    int iq = ((b * L->ih + oy * L->stride + q / L->k) * L->iw + ox * L->stride + q % L->k) * L->ic + c;
                                    if (fabsf(x[ip] - x[iq]) < 1e-3f) { x[iq] = (float)urand(-1, 1); changed = 1; }
                                }
        }
        CHECK_MSG(!changed, "%s: could not separate pool window values", tc->name);
    }
}

static void run_case(const tcase *tc) {
    sm_layer L;
    memset(&L, 0, sizeof L);
    L.type = tc->type;
    L.units = tc->units; L.k = tc->k; L.stride = tc->stride; L.pad = tc->pad; L.bias = tc->bias;
    L.eps = 1e-5f; L.momentum = 0.1f;
    CHECK_OK(sm_layer_setup(&L, tc->h, tc->w, tc->c, 0));
    CHECK_MSG(L.oh == tc->oh && L.ow == tc->ow && L.oc == tc->oc, "%s: output shape %dx%dx%d, want %dx%dx%d",
              tc->name, L.oh, L.ow, L.oc, tc->oh, tc->ow, tc->oc);
    if (L.oh != tc->oh || L.ow != tc->ow || L.oc != tc->oc) return;
    const int n = tc->n;
    const int in_cnt = n * (int)sm_layer_in_size(&L), out_cnt = n * (int)sm_layer_out_size(&L);

    /* parameters (float, as the layer sees them) and their double copies */
    int nw = 0, nb = 0, nc = 0;
    if (tc->type == SM_LAYER_CONV) { nw = L.oc * L.k * L.k * L.ic; nb = L.bias ? L.oc : 0; }
    if (tc->type == SM_LAYER_FC) { nw = L.oc * (int)sm_layer_in_size(&L); nb = L.bias ? L.oc : 0; }
    if (tc->type == SM_LAYER_BN) nc = L.oc;
    int expect_params = nw + nb + 2 * nc;
    CHECK_MSG(L.nparams == expect_params, "%s: nparams %lld, want %d", tc->name, (long long)L.nparams, expect_params);

    float *W = calloc((size_t)nw + 1, sizeof(float)), *dW = calloc((size_t)nw + 1, sizeof(float));
    float *b = calloc((size_t)nb + 1, sizeof(float)), *db = calloc((size_t)nb + 1, sizeof(float));
    float *gam = calloc((size_t)nc + 1, sizeof(float)), *bet = calloc((size_t)nc + 1, sizeof(float));
    float *dgam = calloc((size_t)nc + 1, sizeof(float)), *dbet = calloc((size_t)nc + 1, sizeof(float));
    float *rm = calloc((size_t)nc + 1, sizeof(float)), *rv = calloc((size_t)nc + 1, sizeof(float));
    float *x = calloc((size_t)in_cnt, sizeof(float)), *y = calloc((size_t)out_cnt, sizeof(float));
    float *dy = calloc((size_t)out_cnt, sizeof(float)), *dx = calloc((size_t)in_cnt, sizeof(float));
    double *xd = calloc((size_t)in_cnt, sizeof(double)), *yd = calloc((size_t)out_cnt, sizeof(double));
    double *R = calloc((size_t)out_cnt, sizeof(double)), *ybuf = calloc((size_t)out_cnt, sizeof(double));
    double *Wd = calloc((size_t)nw + 1, sizeof(double)), *bd = calloc((size_t)nb + 1, sizeof(double));
    double *gd = calloc((size_t)nc + 1, sizeof(double)), *betd = calloc((size_t)nc + 1, sizeof(double));
    double *rmd = calloc((size_t)nc + 1, sizeof(double)), *rvd = calloc((size_t)nc + 1, sizeof(double));

    fill_f(W, nw, -0.5, 0.5);
    fill_f(b, nb, -0.5, 0.5);
    fill_f(gam, nc, 0.5, 1.5);
    fill_f(bet, nc, -0.5, 0.5);
    for (int j = 0; j < nc; j++) { rm[j] = (float)urand(-0.2, 0.2); rv[j] = (float)urand(0.5, 2.0); }
    /* bn inputs get a per-channel offset and scale so that the statistics are non-trivial */
    for (int i = 0; i < in_cnt; i++) {
        x[i] = (float)urand(-1, 1);
        if (tc->type == SM_LAYER_BN) x[i] = x[i] * (float)(1 + i % tc->c) + (float)(i % tc->c) - 1.0f;
    }
    avoid_kinks(tc, &L, x, in_cnt);
    for (int i = 0; i < out_cnt; i++) { R[i] = urand(-1, 1); dy[i] = (float)R[i]; }

    L.W = nw ? W : NULL; L.dW = nw ? dW : NULL;
    L.b = nb ? b : NULL; L.db = nb ? db : NULL;
    if (nc) { L.gamma = gam; L.beta = bet; L.dgamma = dgam; L.dbeta = dbet; L.run_mean = rm; L.run_var = rv; }
    CHECK_OK(sm_layer_alloc_cache(&L, n));
    sm_ws ws = {malloc(sm_layer_workspace(&L, n) + 1), sm_layer_workspace(&L, n)}; /* the kernels' scratch */
    L.ws = &ws;

    to_d(x, xd, in_cnt); to_d(W, Wd, nw); to_d(b, bd, nb); to_d(gam, gd, nc); to_d(bet, betd, nc);
    to_d(rm, rmd, nc); to_d(rv, rvd, nc);
    dparams P = {Wd, bd, gd, betd, rmd, rvd};

    /* bn: inference mode first (running statistics, untouched by it) */
    if (tc->type == SM_LAYER_BN) {
        sm_layer_forward(&L, x, y, n, 0);
        ref_forward(&L, xd, &P, n, 0, yd);
        double worst = 0;
        for (int i = 0; i < out_cnt; i++) {
            double e = fabs(y[i] - yd[i]) / fmax(fabs(yd[i]), 1e-2);
            if (e > worst) worst = e;
        }
        CHECK_MSG(worst < 1e-4, "%s: inference forward rel err %.3g", tc->name, worst);
        int same = 1;
        for (int j = 0; j < nc; j++) same &= rm[j] == (float)rmd[j] && rv[j] == (float)rvd[j];
        CHECK_MSG(same, "%s: inference forward changed the running statistics", tc->name);
    }

    /* forward (train mode) vs the double reference */
    sm_layer_forward(&L, x, y, n, 1);
    ref_forward(&L, xd, &P, n, 1, yd);
    double ymax = 0, worst = 0;
    for (int i = 0; i < out_cnt; i++) ymax = fmax(ymax, fabs(yd[i]));
    for (int i = 0; i < out_cnt; i++) {
        double e = fabs(y[i] - yd[i]) / fmax(fabs(yd[i]), 1e-2 * ymax);
        if (e > worst) worst = e;
    }
    CHECK_MSG(ymax > 0 && worst < 1e-4, "%s: forward rel err %.3g (max |y| %.3g)", tc->name, worst, ymax);

    /* bn: running statistics after one training forward (momentum 0.1, unbiased variance) */
    if (tc->type == SM_LAYER_BN) {
        int m = n * L.ih * L.iw;
        double werr = 0;
        for (int j = 0; j < nc; j++) {
            double s = 0, q = 0;
            for (int i = 0; i < m; i++) s += xd[i * nc + j];
            double mu = s / m;
            for (int i = 0; i < m; i++) q += (xd[i * nc + j] - mu) * (xd[i * nc + j] - mu);
            double want_m = 0.9 * rmd[j] + 0.1 * mu, want_v = 0.9 * rvd[j] + 0.1 * q / (m - 1);
            werr = fmax(werr, fabs(rm[j] - want_m) / fmax(fabs(want_m), 1e-3));
            werr = fmax(werr, fabs(rv[j] - want_v) / want_v);
        }
        CHECK_MSG(werr < 1e-5, "%s: running statistics rel err %.3g", tc->name, werr);
    }

    /* backward vs central differences of the double objective */
    memset(dx, 0, sizeof(float) * (size_t)in_cnt);
    sm_layer_backward(&L, x, y, dy, dx, n);
    grad_check(tc->name, "dx", &L, xd, &P, n, 1, R, ybuf, xd, dx, in_cnt);
    if (nw) grad_check(tc->name, "dW", &L, xd, &P, n, 1, R, ybuf, Wd, dW, nw);
    if (nb) grad_check(tc->name, "db", &L, xd, &P, n, 1, R, ybuf, bd, db, nb);
    if (nc) {
        grad_check(tc->name, "dgamma", &L, xd, &P, n, 1, R, ybuf, gd, dgam, nc);
        grad_check(tc->name, "dbeta", &L, xd, &P, n, 1, R, ybuf, betd, dbet, nc);
    }
    /* parameter gradients do not depend on whether dx is requested (conv, fc, bn).  The forward
     * is repeated first: conv's backward reuses its im2col cache for dcol, so one forward feeds
     * exactly one backward. */
    if (nw || nc) {
        sm_layer_forward(&L, x, y, n, 1);
        float *dW2 = calloc((size_t)nw + 1, sizeof(float)), *dg2 = calloc((size_t)nc + 1, sizeof(float));
        memcpy(dW2, dW, sizeof(float) * (size_t)nw);
        memcpy(dg2, dgam, sizeof(float) * (size_t)nc);
        memset(dW, 0, sizeof(float) * (size_t)nw);
        memset(dgam, 0, sizeof(float) * (size_t)nc);
        sm_layer_backward(&L, x, y, dy, NULL, n);
        CHECK_MSG(memcmp(dW, dW2, sizeof(float) * (size_t)nw) == 0 && memcmp(dgam, dg2, sizeof(float) * (size_t)nc) == 0,
                  "%s: parameter gradients differ when dx is NULL", tc->name);
        free(dW2); free(dg2);
    }

    sm_layer_free_cache(&L);
    free(ws.base);
    free(W); free(dW); free(b); free(db); free(gam); free(bet); free(dgam); free(dbet); free(rm); free(rv);
    free(x); free(y); free(dy); free(dx); free(xd); free(yd); free(R); free(ybuf);
    free(Wd); free(bd); free(gd); free(betd); free(rmd); free(rvd);
}

int main(void) {
    sm_rng_seed(&g_rng, 20240611);
    static const tcase cases[] = {
        /* name                       type             units k s p bias  n h w c   oh ow oc */
        {"conv k3 p1 s1 bias",      SM_LAYER_CONV,    3, 3, 1, 1, 1,  2, 5, 5, 2,  5, 5, 3},
        {"conv k3 p1 s1 nobias",    SM_LAYER_CONV,    2, 3, 1, 1, 0,  3, 4, 6, 3,  4, 6, 2},
        {"conv k3 p0 s2 nobias",    SM_LAYER_CONV,    2, 3, 2, 0, 0,  3, 6, 5, 3,  2, 2, 2},
        {"conv k3 p0 s2 bias",      SM_LAYER_CONV,    3, 3, 2, 0, 1,  2, 5, 5, 2,  2, 2, 3},
        {"conv k1 bias",            SM_LAYER_CONV,    2, 1, 1, 0, 1,  2, 4, 5, 3,  4, 5, 2},
        {"conv k1 nobias",          SM_LAYER_CONV,    3, 1, 1, 0, 0,  3, 4, 4, 2,  4, 4, 3},
        {"conv k2 p1 s2 bias",      SM_LAYER_CONV,    2, 2, 2, 1, 1,  2, 5, 4, 2,  3, 3, 2},
        {"conv k3 p1 s2 nobias",    SM_LAYER_CONV,    4, 3, 2, 1, 0,  2, 7, 6, 3,  4, 3, 4}, /* resnet's downsampling conv */
        {"conv k1 s2 nobias",       SM_LAYER_CONV,    3, 1, 2, 0, 0,  2, 5, 5, 2,  3, 3, 3}, /* its projection shortcut */
        {"bn train",                SM_LAYER_BN,      0, 0, 0, 0, 0,  3, 4, 5, 3,  4, 5, 3},
        {"bn train 2ch",            SM_LAYER_BN,      0, 0, 0, 0, 0,  2, 4, 4, 2,  4, 4, 2},
        {"relu",                    SM_LAYER_RELU,    0, 0, 0, 0, 0,  2, 4, 5, 3,  4, 5, 3},
        {"maxpool k2",              SM_LAYER_MAXPOOL, 0, 2, 2, 0, 0,  2, 5, 4, 3,  2, 2, 3},
        {"maxpool k3 s2",           SM_LAYER_MAXPOOL, 0, 3, 2, 0, 0,  3, 5, 6, 2,  2, 2, 2},
        {"gap",                     SM_LAYER_GAP,     0, 0, 0, 0, 0,  3, 4, 5, 3,  1, 1, 3},
        {"fc 4-D input bias",       SM_LAYER_FC,      3, 0, 0, 0, 1,  2, 4, 4, 2,  1, 1, 3},
        {"fc 4-D input nobias",     SM_LAYER_FC,      2, 0, 0, 0, 0,  3, 3, 4, 3,  1, 1, 2},
        {"fc vector",               SM_LAYER_FC,      4, 0, 0, 0, 1,  3, 1, 1, 5,  1, 1, 4},
        {"l2norm vector",           SM_LAYER_L2NORM,  0, 0, 0, 0, 0,  3, 1, 1, 6,  1, 1, 6},
        {"l2norm 4-D",              SM_LAYER_L2NORM,  0, 0, 0, 0, 0,  2, 2, 3, 2,  2, 3, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int before = t_failures;
        run_case(&cases[i]);
        printf("  %-24s %s\n", cases[i].name, t_failures == before ? "ok" : "FAILED");
    }

    /* shapes that do not fit are spec errors */
    sm_layer L;
    memset(&L, 0, sizeof L);
    L.type = SM_LAYER_CONV; L.units = 2; L.k = 7; L.stride = 1; L.pad = 0; L.bias = 1;
    CHECK_STATUS(sm_layer_setup(&L, 5, 5, 1, 0), SM_ERR_SPEC);
    L.pad = 1; /* 5 + 2 = 7 fits exactly: one output pixel */
    CHECK_OK(sm_layer_setup(&L, 5, 5, 1, 0));
    CHECK(L.oh == 1 && L.ow == 1);
    memset(&L, 0, sizeof L);
    L.type = SM_LAYER_MAXPOOL; L.k = 3; L.stride = 3;
    CHECK_STATUS(sm_layer_setup(&L, 2, 8, 1, 0), SM_ERR_SPEC);
    CHECK_OK(sm_layer_setup(&L, 8, 8, 1, 0));
    CHECK(L.oh == 2 && L.ow == 2);

    /* l2norm of a zero row is finite (the norm is clamped) */
    memset(&L, 0, sizeof L);
    L.type = SM_LAYER_L2NORM;
    CHECK_OK(sm_layer_setup(&L, 1, 1, 4, 0));
    CHECK_OK(sm_layer_alloc_cache(&L, 1));
    float z[4] = {0, 0, 0, 0}, zy[4], zdy[4] = {1, 2, 3, 4}, zdx[4];
    sm_layer_forward(&L, z, zy, 1, 1);
    sm_layer_backward(&L, z, zy, zdy, zdx, 1);
    CHECK(sm_all_finite(zy, 4) && sm_all_finite(zdx, 4) && zy[0] == 0 && zy[3] == 0);
    sm_layer_free_cache(&L);

    TEST_MAIN_END();
}
