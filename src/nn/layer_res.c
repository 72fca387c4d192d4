/* layer_res.c - "res": opens a residual block.  Its output is its input x, which the block keeps
 * for its shortcut; the layers up to `shortcut` (or `end`) are the main branch.  Backward: the
 * gradient of x is the main branch's (dy) plus the shortcut's (L->daux, given by the model
 * driver: the shortcut section's input gradient, or end's dy for an identity shortcut).  The
 * block's structure (blk_split, blk_end) is linked by the spec parser; see layer_end.c. */
#include "nn/layer.h"

static void res_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_copy(L->be, y, x, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L));
}

static void res_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (!dx) return;
    sm_be_add(L->be, dy, L->daux, dx, (int64_t)n * sm_layer_out_size(L));
}

/* the inference plan handles the branch kinds itself (src/model/infer.c); this is the copy */
static void res_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_copy(L->be, y, x, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L));
}

const sm_layer_kind sm_layer_kind_res = {
    .name = "res",
    .branch = SM_BRANCH_OPEN,
    .forward = res_forward,
    .backward = res_backward,
    .infer = res_infer,
};
