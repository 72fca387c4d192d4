/* layer_relu.c - "relu": y = max(x, 0).  After a bn it is fused into it (the bn's fuse_next
 * sets L->fused): its forward and backward then pass their input through, and the inference
 * plan skips it. */
#include "nn/layer.h"
#include "backend/backend.h"

static void relu_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    if (L->fused) {
        sm_be_copy(L->be, y, x, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L));
        return;
    }
    sm_be_relu_forward(L->be, x, y, (int64_t)n * sm_layer_out_size(L));
}

static void relu_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx && L->fused) {
        sm_be_copy(L->be, dx, dy, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L));
        return;
    }
    if (dx) sm_be_relu_backward(L->be, y, dy, dx, (int64_t)n * sm_layer_out_size(L));
}

/* an unfused relu: a copy, then max(., 0) */
static void relu_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    sm_be_copy(L->be, y, x, sizeof(float) * (size_t)(rows * L->oc));
    sm_be_bias_act1(L->be, y, NULL, rows, L->oc, 1);
}

const sm_layer_kind sm_layer_kind_relu = {
    .name = "relu",
    .forward = relu_forward,
    .backward = relu_backward,
    .infer = relu_infer,
};
