/* layer_gap.c - "gap": global average pool of an (h, w, c) map to (1, 1, c). */
#include "nn/layer.h"
#include "backend/backend.h"

static sm_status gap_setup(sm_layer *L, int index) {
    L->oh = L->ow = 1;
    return SM_OK;
}

static void gap_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_gap_forward(L->be, x, n, L->ih * L->iw, L->ic, y);
}

static void gap_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx) sm_be_gap_backward(L->be, dy, n, L->ih * L->iw, L->ic, dx);
}

static void gap_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_gap1(L->be, x, n, L->ih * L->iw, L->ic, y);
}

const sm_layer_kind sm_layer_kind_gap = {
    .name = "gap",
    .setup = gap_setup,
    .forward = gap_forward,
    .backward = gap_backward,
    .infer = gap_infer,
};
