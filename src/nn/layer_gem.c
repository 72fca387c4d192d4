/* layer_gem.c - "gem [p=P]": generalised-mean pooling of an (h, w, c) map to (1, 1, c),
 * y_c = (mean_hw max(x, eps)^p)^(1/p) with eps = 1e-6 and one learnable exponent p for all
 * channels, initialised to P (3), trained with the network (GeM, Radenovic et al.; the GeM
 * module metric-learning code uses).  p = 1 is the average pool; p -> inf the max pool.
 * Backward (m_c = mean z^p, z = max(x, eps)):
 *   dy_c/dx_i = y_c z_i^(p-1) / (hw m_c)   (0 where x_i < eps),
 *   dy_c/dp   = y_c (mean(z^p ln z) / (p m_c) - ln(m_c) / p^2),
 * computed in double after dividing by the channel's largest z (no overflow for any p > 0) and
 * summed in sample order, so the bits do not depend on the thread count: the backend's
 * gem_forward / gem_backward (gem1 in the inference plan).
 * Tensor: "<i>.gem.p" (1). */
#include "nn/layer.h"
#include "dist/dist.h"
#include <string.h>

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

static void gem_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_gem_forward(L->be, x, n, L->ih * L->iw, L->ic, L->W, y);
}

static void gem_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    const int64_t in = sm_layer_in_size(L), out = L->oc;
    /* dL/dp over the whole batch, or each gradient shard's (as a rank's) then added in order */
    const int S = L->shards > 1 ? L->shards : 1;
    for (int q = 0; q < S; q++) {
        int64_t a = 0, z = n;
        if (S > 1) sm_dist_shard(n, q, S, &a, &z);
        float dp = 0;
        if (z > a)
            sm_be_gem_backward(L->be, x + a * in, dy + a * out, (int)(z - a), L->ih * L->iw, L->ic, L->W,
                               dx ? dx + a * in : NULL, &dp, L->ws);
        if (q) L->dW[0] += dp;
        else L->dW[0] = dp;
    }
}

static size_t gem_workspace(const sm_layer *L, int cap) {
    return sm_be_gem_backward_ws(L->be, cap, L->ih * L->iw, L->ic);
}

static void gem_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_gem1(L->be, x, n, L->ih * L->iw, L->ic, L->W, y);
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
