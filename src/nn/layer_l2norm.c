/* layer_l2norm.c - "l2norm": each sample's values scaled to unit L2 length (the norm clamped
 * at 1e-12); the row norms are cached for the backward. */
#include "nn/layer.h"
#include "backend/backend.h"

static sm_status l2norm_alloc_cache(sm_layer *L, int cap) {
    L->norm = sm_alloc((size_t)cap, sizeof(float));
    return L->norm ? SM_OK : SM_ERR_NOMEM;
}

static void l2norm_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_l2norm_forward(L->be, x, n, (int)sm_layer_in_size(L), y, L->norm);
}

static void l2norm_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx) sm_be_l2norm_backward(L->be, y, L->norm, dy, n, (int)sm_layer_in_size(L), dx);
}

/* the row norms (one per sample) go to the scratch */
static int64_t l2norm_infer_scratch(const sm_layer *L) { return 1; }

static void l2norm_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_l2norm_forward(L->be, x, n, (int)sm_layer_in_size(L), y, scratch);
}

const sm_layer_kind sm_layer_kind_l2norm = {
    .name = "l2norm",
    .alloc_cache = l2norm_alloc_cache,
    .forward = l2norm_forward,
    .backward = l2norm_backward,
    .infer_scratch = l2norm_infer_scratch,
    .infer = l2norm_infer,
};
