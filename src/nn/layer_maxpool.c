/* layer_maxpool.c - max pooling, "maxpool [k=K] [s=S] [p=P]": window K (2), stride S (= K),
 * padding P (0, at most K/2 as PyTorch's; padded cells never win, so every window's maximum is
 * an input value: ResNet's stem is "maxpool k=3 s=2 p=1"); the training forward records each maximum's input index (arg) for the backward.  At
 * inference it commutes with a preceding conv's bias and ReLU, so the plan pools first and applies
 * them in the pool's pass (maxpool_bias_act1). */
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
    if (strcmp(key, "p") == 0) return sm_layer_opt_int(value, &L->pad, 0, 1000000);
    return SM_OPT_UNKNOWN;
}

static void maxpool_parsed(sm_layer *L) {
    if (L->stride == 0) L->stride = L->k;
}

static void maxpool_text(const sm_layer *L, char *buf, size_t cap) {
    /* " p=P" only when padded: the text of an unpadded pool is what it was before padding */
    if (L->pad) snprintf(buf, cap, " k=%d s=%d p=%d", L->k, L->stride, L->pad);
    else snprintf(buf, cap, " k=%d s=%d", L->k, L->stride);
}

static sm_status maxpool_setup(sm_layer *L, int index) {
    if (L->pad < 0 || 2 * L->pad > L->k)
        return sm_fail(SM_ERR_SPEC, "layer %d (maxpool): padding p=%d is more than half the window k=%d",
                       index + 1, L->pad, L->k);
    if (L->k < 1 || L->stride < 1 || L->ih + 2 * L->pad < L->k || L->iw + 2 * L->pad < L->k)
        return sm_fail(SM_ERR_SPEC, "layer %d (maxpool): window %d does not fit input %dx%d (padding %d)",
                       index + 1, L->k, L->ih, L->iw, L->pad);
    L->oh = (L->ih + 2 * L->pad - L->k) / L->stride + 1;
    L->ow = (L->iw + 2 * L->pad - L->k) / L->stride + 1;
    return SM_OK;
}

static sm_status maxpool_alloc_cache(sm_layer *L, int cap) {
    L->arg = sm_alloc((size_t)cap * (size_t)sm_layer_out_size(L), sizeof(int32_t));
    return L->arg ? SM_OK : SM_ERR_NOMEM;
}

static void maxpool_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_maxpool_forward(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, y, L->arg);
}

static void maxpool_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx) sm_be_maxpool_backward(L->be, dy, L->arg, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, dx);
}

static void maxpool_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_maxpool1(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, y);
}

static void maxpool_infer_bias_act(const sm_layer *L, const float *x, int n, const float *b, int relu, float *y) {
    sm_be_maxpool_bias_act1(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, b, relu, y);
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
    .infer = maxpool_infer,
    /* a per-channel constant and a monotone function commute with max, to the bit */
    .infer_bias_act = maxpool_infer_bias_act,
};
