/* layer_avgpool.c - average pooling, "avgpool [k=K] [s=S]": the mean of each K x K window
 * (K 2), stride S (= K), no padding, NHWC; output (h-K)/S+1 as maxpool's.  The backward
 * spreads dy / (K*K) over the window (overlapping windows add up).  The arithmetic is the
 * backend's avgpool operations (training) and avgpool1 (the inference plan, one thread). */
#include "nn/layer.h"
#include <string.h>

static void avgpool_defaults(sm_layer *L) {
    L->k = 2;
    L->stride = 0; /* = k unless given */
}

static int avgpool_option(sm_layer *L, const char *key, const char *value) {
    if (strcmp(key, "k") == 0) return sm_layer_opt_int(value, &L->k, 1, 1000000);
    if (strcmp(key, "s") == 0) return sm_layer_opt_int(value, &L->stride, 1, 1000000);
    return SM_OPT_UNKNOWN;
}

static void avgpool_parsed(sm_layer *L) {
    if (L->stride == 0) L->stride = L->k;
}

static void avgpool_text(const sm_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, " k=%d s=%d", L->k, L->stride);
}

static sm_status avgpool_setup(sm_layer *L, int index) {
    if (L->k < 1 || L->stride < 1 || L->ih < L->k || L->iw < L->k)
        return sm_fail(SM_ERR_SPEC, "layer %d (avgpool): window %d does not fit input %dx%d",
                       index + 1, L->k, L->ih, L->iw);
    L->oh = (L->ih - L->k) / L->stride + 1;
    L->ow = (L->iw - L->k) / L->stride + 1;
    return SM_OK;
}

static void avgpool_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_avgpool_forward(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->oh, L->ow, y);
}

static void avgpool_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx) sm_be_avgpool_backward(L->be, dy, n, L->ih, L->iw, L->ic, L->k, L->stride, L->oh, L->ow, dx);
}

static void avgpool_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_avgpool1(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->oh, L->ow, y);
}

const sm_layer_kind sm_layer_kind_avgpool = {
    .name = "avgpool",
    .defaults = avgpool_defaults,
    .option = avgpool_option,
    .parsed = avgpool_parsed,
    .text = avgpool_text,
    .setup = avgpool_setup,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .infer = avgpool_infer,
};
