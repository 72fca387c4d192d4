/* layer_gem.c - "gem [p=P]": generalised-mean pooling of an (h, w, c) map to (1, 1, c),
 * y_c = (mean_hw max(x, eps)^p)^(1/p) with eps = 1e-6 and one learnable exponent p for all
 * channels, initialised to P (3), trained with the network (GeM, Radenovic et al.; the GeM
 * module metric-learning code uses).  p = 1 is the average pool; p -> inf the max pool.
 * Backward (m_c = mean z^p, z = max(x, eps)):
 *   dy_c/dx_i = y_c z_i^(p-1) / (hw m_c)   (0 where x_i < eps),
 *   dy_c/dp   = y_c (mean(z^p ln z) / (p m_c) - ln(m_c) / p^2),
 * accumulated in double in sample order, so the bits do not depend on the thread count.
 * Tensor: "<i>.gem.p" (1). */
#include "nn/layer.h"
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

/* one sample: y (c) from x (hw, c) */
static void gem_sample(const sm_layer *L, const float *x, float *y) {
    const int hw = L->ih * L->iw, c = L->ic;
    const double p = L->W[0];
    for (int ch = 0; ch < c; ch++) {
        double s = 0;
        for (int q = 0; q < hw; q++) {
            double z = x[(int64_t)q * c + ch];
            s += pow(z > GEM_EPS ? z : GEM_EPS, p);
        }
        y[ch] = (float)pow(s / hw, 1.0 / p);
    }
}

static int gem_parallel(const sm_layer *L, int n) { return n > 1 && (int64_t)n * sm_layer_in_size(L) > 32768; }

static void gem_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    const int64_t in = sm_layer_in_size(L), out = L->oc;
#pragma omp parallel for schedule(static) if (gem_parallel(L, n))
    for (int b = 0; b < n; b++) gem_sample(L, x + b * in, y + b * out);
}

/* one sample: dx (hw, c) overwritten (if dx); returns its part of dL/dp */
static double gem_sample_backward(const sm_layer *L, const float *x, const float *dy, float *dx) {
    const int hw = L->ih * L->iw, c = L->ic;
    const double p = L->W[0];
    double dp = 0;
    for (int ch = 0; ch < c; ch++) {
        double s = 0, sl = 0;
        for (int q = 0; q < hw; q++) {
            double z = x[(int64_t)q * c + ch];
            z = z > GEM_EPS ? z : GEM_EPS;
            double zp = pow(z, p);
            s += zp;
            sl += zp * log(z);
        }
        double m = s / hw, y = pow(m, 1.0 / p);
        dp += (double)dy[ch] * y * ((sl / hw) / (p * m) - log(m) / (p * p));
        if (dx) {
            double g = (double)dy[ch] * y / (hw * m);
            for (int q = 0; q < hw; q++) {
                double z = x[(int64_t)q * c + ch];
                dx[(int64_t)q * c + ch] = z < GEM_EPS ? 0.0f : (float)(g * pow(z, p - 1));
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
    double dp = 0;
    for (int b = 0; b < n; b++) dp += part[b];
    L->dW[0] = (float)dp;
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
