/* layer_gem.c - "gem [p=P]": generalised-mean pooling of an (h, w, c) map to (1, 1, c),
 * y_c = (mean_hw max(x, eps)^p)^(1/p) with eps = 1e-6 and one learnable exponent p for all
 * channels, initialised to P (3), trained with the network (GeM, Radenovic et al.; the GeM
 * module metric-learning code uses).  p = 1 is the average pool; p -> inf the max pool.
 * Backward (m_c = mean z^p, z = max(x, eps)):
 *   dy_c/dx_i = y_c z_i^(p-1) / (hw m_c)   (0 where x_i < eps),
 *   dy_c/dp   = y_c (mean(z^p ln z) / (p m_c) - ln(m_c) / p^2),
 * computed in double after dividing by the channel's largest z (no overflow for any p > 0) and
 * summed in sample order, so the bits do not depend on the thread count.
 * Tensor: "<i>.gem.p" (1). */
#include "nn/layer.h"
#include "dist/dist.h"
#include <math.h>
#include <string.h>

#define GEM_EPS 1e-6

static void gem_defaults(sm_layer *L) { L->eps = 3.0f; /* eps holds the initial p */ }

static int gem_option(sm_layer *L, const char *key, const char *value) {
    if (strcmp(key, "p") == 0) {
        int r = sm_layer_opt_float(value, &L->eps);
        return r != SM_OPT_OK ? r : L->eps > 0 ? SM_OPT_OK : SM_OPT_BAD_VALUE;
    }
    return SM_OPT_UNKNOWN;
}

static void gem_text(const sm_layer *L, char *buf, size_t cap) { snprintf(buf, cap, " p=%g", L->eps); }

static sm_status gem_setup(sm_layer *L, int index) {
    L->oh = L->ow = 1;
    L->nparams = 1;
    return SM_OK;
}

static void gem_bind(sm_layer *L, float *params, float *grads, float *buffers) { L->W = params; L->dW = grads; }

static sm_status gem_tensors(sm_layer *L, int index, sm_tensor_fn fn, void *ctx) {
    int d = 1;
    return sm_layer_tensor(fn, ctx, L, index, "p", 1, &d, L->W);
}

static void gem_init(sm_layer *L, sm_rng *rng) { L->W[0] = L->eps; }

/* channel ch of one sample x (hw, c): zmax = max z (z = max(x, eps)) and s = mean (z/zmax)^p, so
 * that y = zmax s^(1/p) with no overflow for any p > 0 (s is in [1/hw, 1]) */
static void gem_stats(const sm_layer *L, const float *x, int ch, double p, double *zmax, double *s) {
    const int hw = L->ih * L->iw, c = L->ic;
    double zm = GEM_EPS, acc = 0;
    for (int q = 0; q < hw; q++) {
        double z = x[(int64_t)q * c + ch];
        if (z > zm) zm = z;
    }
    for (int q = 0; q < hw; q++) {
        double z = x[(int64_t)q * c + ch];
        acc += pow((z > GEM_EPS ? z : GEM_EPS) / zm, p);
    }
    *zmax = zm;
    *s = acc / hw;
}

/* one sample: y (c) from x (hw, c) */
static void gem_sample(const sm_layer *L, const float *x, float *y) {
    const double p = L->W[0];
    for (int ch = 0; ch < L->ic; ch++) {
        double zm, s;
        gem_stats(L, x, ch, p, &zm, &s);
        y[ch] = (float)(zm * pow(s, 1.0 / p));
    }
}

static int gem_parallel(const sm_layer *L, int n) { return n > 1 && (int64_t)n * sm_layer_in_size(L) > 32768; }

static void gem_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    const int64_t in = sm_layer_in_size(L), out = L->oc;
#pragma omp parallel for schedule(static) if (gem_parallel(L, n))
    for (int b = 0; b < n; b++) gem_sample(L, x + b * in, y + b * out);
}

/* one sample: dx (hw, c) overwritten (if dx); returns its part of dL/dp.  With r = z / zmax and
 * s = mean r^p: dy/dz_i = y r_i^(p-1) / (hw s zmax), dy/dp = (y/p) (mean(r^p ln r) / s - ln(s) / p),
 * the formulas above rescaled by zmax. */
static double gem_sample_backward(const sm_layer *L, const float *x, const float *dy, float *dx) {
    const int hw = L->ih * L->iw, c = L->ic;
    const double p = L->W[0];
    double dp = 0;
    for (int ch = 0; ch < c; ch++) {
        double zm, s, sl = 0;
        gem_stats(L, x, ch, p, &zm, &s);
        for (int q = 0; q < hw; q++) {
            double z = x[(int64_t)q * c + ch], r = (z > GEM_EPS ? z : GEM_EPS) / zm;
            sl += pow(r, p) * log(r);
        }
        double y = zm * pow(s, 1.0 / p);
        dp += (double)dy[ch] * (y / p) * ((sl / hw) / s - log(s) / p);
        if (dx) {
            double g = (double)dy[ch] * y / (hw * s * zm);
            for (int q = 0; q < hw; q++) {
                double z = x[(int64_t)q * c + ch];
                dx[(int64_t)q * c + ch] = z < GEM_EPS ? 0.0f : (float)(g * pow(z / zm, p - 1));
            }
        }
    }
    return dp;
}

static void gem_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    const int64_t in = sm_layer_in_size(L), out = L->oc;
    double *part = (double *)L->ws->base; /* (n) per-sample parts of dL/dp, summed in order */
#pragma omp parallel for schedule(static) if (gem_parallel(L, n))
    for (int b = 0; b < n; b++) part[b] = gem_sample_backward(L, x + b * in, dy + b * out, dx ? dx + b * in : NULL);
    /* dL/dp over the whole batch, or each gradient shard's (as a rank's) then added in order */
    const int S = L->shards > 1 ? L->shards : 1;
    for (int q = 0; q < S; q++) {
        int64_t a = 0, z = n;
        if (S > 1) sm_dist_shard(n, q, S, &a, &z);
        double dp = 0;
        for (int64_t b = a; b < z; b++) dp += part[b];
        if (q) L->dW[0] += (float)dp;
        else L->dW[0] = (float)dp;
    }
}

static size_t gem_workspace(const sm_layer *L, int cap) { return (size_t)cap * sizeof(double); }

static void gem_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    const int64_t in = sm_layer_in_size(L), out = L->oc;
    for (int b = 0; b < n; b++) gem_sample(L, x + b * in, y + b * out);
}

const sm_layer_kind sm_layer_kind_gem = {
    .name = "gem",
    .defaults = gem_defaults,
    .option = gem_option,
    .text = gem_text,
    .setup = gem_setup,
    .bind = gem_bind,
    .tensors = gem_tensors,
    .init = gem_init,
    .workspace = gem_workspace,
    .forward = gem_forward,
    .backward = gem_backward,
    .infer = gem_infer,
};
