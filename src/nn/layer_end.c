/* layer_end.c - "end": closes a residual block, y = main(x) + shortcut(x).  Without a
 * `shortcut` section the shortcut is the identity and the main branch must keep x's shape;
 * with one, the two branches' outputs must have the same shape (a spec error naming the line
 * otherwise).  The text form:
 *     res                          opens a block; its input x is kept
 *     conv 128 k=3 s=2 p=1 bias=0; bn; relu
 *     conv 128 k=3 p=1 bias=0; bn  the main branch
 *     shortcut                     optional: the layers from here to end are the shortcut
 *     conv 128 k=1 s=2 bias=0; bn
 *     end                          y = main(x) + shortcut(x)
 * Blocks do not nest.  The forward reads the other operand from L->aux (the main branch's output
 * when there is a shortcut section, else x), set by the model driver; backward dx = dy, which
 * the driver also hands to the other path (layer_res.c, layer_shortcut.c). */
#include "nn/layer.h"

static sm_status end_setup(sm_layer *L, int index) {
    if (L->ih != L->xh || L->iw != L->xw || L->ic != L->xc) {
        if (L->blk_split >= 0)
            return sm_fail(SM_ERR_SPEC, "layer %d (end): the shortcut gives %dx%dx%d but the main branch %dx%dx%d; "
                           "both branches must give the same shape", index + 1, L->ih, L->iw, L->ic, L->xh, L->xw, L->xc);
        return sm_fail(SM_ERR_SPEC, "layer %d (end): the main branch gives %dx%dx%d but the block's input is %dx%dx%d; "
                       "without a 'shortcut' section the shapes must match (add a shortcut, e.g. "
                       "'shortcut; conv %d k=1 s=2 bias=0; bn')", index + 1, L->ih, L->iw, L->ic, L->xh, L->xw, L->xc, L->ic);
    }
    return SM_OK;
}

static void end_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_be_add(L->be, x, L->aux, y, (int64_t)n * sm_layer_out_size(L));
}

static void end_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx && dx != dy) sm_be_copy(L->be, dx, dy, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L));
}

static void end_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    end_forward((sm_layer *)L, x, y, n, 0);
}

const sm_layer_kind sm_layer_kind_end = {
    .name = "end",
    .branch = SM_BRANCH_JOIN,
    .setup = end_setup,
    .forward = end_forward,
    .backward = end_backward,
    .infer = end_infer,
};
