/* layer_shortcut.c - "shortcut": inside a residual block, ends the main branch and starts the
 * shortcut section, the layers up to `end` applied to the block's input x.  Its output is x
 * (L->aux, from the model driver) with x's shape; its input, the main branch's output, is kept
 * for `end`.  Backward: the main branch's output gradient is end's dy (L->daux); the gradient
 * this layer receives is x's part by the shortcut, which `res` adds.  See layer_end.c. */
#include "nn/layer.h"

static sm_status shortcut_setup(sm_layer *L, int index) {
    L->oh = L->xh; L->ow = L->xw; L->oc = L->xc;
    return SM_OK;
}

static void shortcut_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_copy(L->be, y, L->aux, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L));
}

static void shortcut_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx) sm_be_copy(L->be, dx, L->daux, sizeof(float) * (size_t)n * (size_t)sm_layer_in_size(L));
}

static void shortcut_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_copy(L->be, y, L->aux, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L));
}

const sm_layer_kind sm_layer_kind_shortcut = {
    .name = "shortcut",
    .branch = SM_BRANCH_SPLIT,
    .setup = shortcut_setup,
    .forward = shortcut_forward,
    .backward = shortcut_backward,
    .infer = shortcut_infer,
};
