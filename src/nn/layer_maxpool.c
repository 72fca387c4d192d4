/* layer_maxpool.c - max pooling, "maxpool [k=K] [s=S]": window K (2), stride S (= K), no
 * padding; the training forward records each maximum's input index (arg) for the backward.  At
 * inference it commutes with a preceding conv's bias and ReLU, so the plan pools first. */
#include "nn/layer.h"
#include "backend/backend.h"
#include <string.h>

static void maxpool_defaults(sm_layer *L) {
    L->k = 2;
    L->stride = 0; /* = k unless given */
}

static int maxpool_option(sm_layer *L, const char *key, const char *value) {
    if (strcmp(key, "k") == 0) return sm_layer_opt_int(value, &L->k, 1, 1000000);
    if (strcmp(key, "s") == 0) return sm_layer_opt_int(value, &L->stride, 1, 1000000);
    return SM_OPT_UNKNOWN;
}

static void maxpool_parsed(sm_layer *L) {
    if (L->stride == 0) L->stride = L->k;
}

static void maxpool_text(const sm_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, " k=%d s=%d", L->k, L->stride);
}

static sm_status maxpool_setup(sm_layer *L, int index) {
    if (L->k < 1 || L->stride < 1 || L->ih < L->k || L->iw < L->k)
        return sm_fail(SM_ERR_SPEC, "layer %d (maxpool): window %d does not fit input %dx%d",
                       index + 1, L->k, L->ih, L->iw);
    L->oh = (L->ih - L->k) / L->stride + 1;
    L->ow = (L->iw - L->k) / L->stride + 1;
    return SM_OK;
}

static sm_status maxpool_alloc_cache(sm_layer *L, int cap) {
    L->arg = sm_alloc((size_t)cap * (size_t)sm_layer_out_size(L), sizeof(int32_t));
    return L->arg ? SM_OK : SM_ERR_NOMEM;
}

static void maxpool_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_maxpool_forward(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->oh, L->ow, y, L->arg);
}

static void maxpool_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx) sm_be_maxpool_backward(L->be, dy, L->arg, n, L->ih, L->iw, L->ic, L->oh, L->ow, dx);
}

static void maxpool_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_maxpool1(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->oh, L->ow, y);
}

const sm_layer_kind sm_layer_kind_maxpool = {
    .name = "maxpool",
    .defaults = maxpool_defaults,
    .option = maxpool_option,
    .parsed = maxpool_parsed,
    .text = maxpool_text,
    .setup = maxpool_setup,
    .alloc_cache = maxpool_alloc_cache,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    /* a per-channel constant and a monotone function commute with max, to the bit */
    .commutes_bias_act = 1,
    .infer = maxpool_infer,
};
