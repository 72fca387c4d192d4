/* layer_dropout.c - "dropout [p=P]": in training each value is zeroed with probability P (0.5)
 * and the kept ones scaled by 1/(1-P) (PyTorch's inverted dropout); at inference, the identity.
 * The mask is counter-based: value j of a batch is kept when sm_hash64(key + j) maps to
 * [P, 1) (j counted from the whole batch's start, also on a rank that holds a later shard), the
 * key being this layer's L->noise, which the model derives from the trainer's key
 * for the step (drawn from the training RNG) and the layer's index.  So a seeded run draws the
 * same masks for any thread count, and a forward's mask does not depend on the batch order of
 * any other step.  The backward applies the mask kept by the forward.  The arithmetic is the
 * backend's dropout_forward / dropout_backward. */
#include "nn/layer.h"
#include <string.h>

static void dropout_defaults(sm_layer *L) { L->eps = 0.5f; /* eps holds P: the drop probability */ }

static int dropout_option(sm_layer *L, const char *key, const char *value) {
    if (strcmp(key, "p") == 0) {
        int r = sm_layer_opt_float(value, &L->eps);
        return r != SM_OPT_OK ? r : L->eps < 1.0f ? SM_OPT_OK : SM_OPT_BAD_VALUE;
    }
    return SM_OPT_UNKNOWN;
}

static void dropout_text(const sm_layer *L, char *buf, size_t cap) { snprintf(buf, cap, " p=%g", L->eps); }

static sm_status dropout_alloc_cache(sm_layer *L, int cap) {
    L->mask = sm_alloc((size_t)cap * (size_t)sm_layer_out_size(L), 1);
    return L->mask ? SM_OK : SM_ERR_NOMEM;
}

static void dropout_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    const int64_t cnt = (int64_t)n * sm_layer_out_size(L);
    if (!train) {
        if (y != x) sm_be_copy(L->be, y, x, sizeof(float) * (size_t)cnt);
        return;
    }
    /* value j of this call is value row0 * out + j of the whole batch (row0 > 0 on a rank) */
    const uint64_t key = L->noise + (uint64_t)L->noise_row0 * (uint64_t)sm_layer_out_size(L);
    sm_be_dropout_forward(L->be, x, cnt, L->eps, key, L->mask, y);
}

static void dropout_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (dx) sm_be_dropout_backward(L->be, dy, L->mask, (int64_t)n * sm_layer_out_size(L), L->eps, dx);
}

static void dropout_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    sm_be_copy(L->be, y, x, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L));
}

const sm_layer_kind sm_layer_kind_dropout = {
    .name = "dropout",
    .uses_noise = 1,
    .defaults = dropout_defaults,
    .option = dropout_option,
    .text = dropout_text,
    .alloc_cache = dropout_alloc_cache,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .infer = dropout_infer,
};
