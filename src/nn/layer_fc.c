/* layer_fc.c - the fully connected layer, "fc N [bias=0|1]": flattens its (h, w, c) input in
 * NHWC order and maps it to N features; forward and backward are single sgemm products. */
#include "nn/layer.h"
#include "backend/backend.h"
#include "dist/dist.h"
#include <string.h>

static int fc_option(sm_layer *L, const char *key, const char *value) {
    if (strcmp(key, "bias") == 0) return sm_layer_opt_int(value, &L->bias, 0, 1);
    return SM_OPT_UNKNOWN;
}

static void fc_text(const sm_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, " %d bias=%d", L->units, L->bias);
}

static sm_status fc_setup(sm_layer *L, int index) {
    if (L->units < 1) return sm_fail(SM_ERR_SPEC, "layer %d (fc): bad output size", index + 1);
    L->oh = L->ow = 1;
    L->oc = L->units;
    L->nparams = (int64_t)L->oc * L->ih * L->iw * L->ic + (L->bias ? L->oc : 0);
    return SM_OK;
}

static void fc_bind(sm_layer *L, float *params, float *grads, float *buffers) {
    sm_layer_bind_wb(L, params, grads);
}

static sm_status fc_tensors(sm_layer *L, int index, sm_tensor_fn fn, void *ctx) {
    int d[2] = {L->oc, (int)sm_layer_in_size(L)};
    return sm_layer_tensors_wb(L, index, 2, d, fn, ctx);
}

static void fc_init(sm_layer *L, sm_rng *rng) { sm_layer_init_wb(L, sm_layer_in_size(L), rng); }

static void fc_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    /* y (n, oc) = x (n, in) W^T (in, oc) + b */
    int in = (int)sm_layer_in_size(L);
    sm_be_gemm(L->be, 0, 1, n, L->oc, in, 1.0f, x, in, L->W, in, 0.0f, y, L->oc);
    if (L->b) sm_be_add_bias(L->be, y, L->b, n, L->oc);
}

static size_t fc_workspace(const sm_layer *L, int cap) {
    size_t a = sm_be_gemm_at_b_ws(L->be, L->oc, (int)sm_layer_in_size(L), cap), b = L->bias ? sm_be_sum_rows_ws(L->be, cap, L->oc) : 0;
    return a > b ? a : b;
}

static void fc_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    int in = (int)sm_layer_in_size(L);
    /* dW (oc, in) = dy^T (oc, n) x (n, in); db = sum_rows dy; dx (n, in) = dy (n, oc) W (oc, in) */
    /* over the whole batch, or over each gradient shard's rows (as a rank of that many
     * computes them), added in order */
    const int S = L->shards > 1 ? L->shards : 1;
    const int64_t nw = (int64_t)L->oc * in;
    for (int q = 0; q < S; q++) {
        int64_t a = 0, z = n;
        if (S > 1) sm_dist_shard(n, q, S, &a, &z);
        float *g = q ? L->shard_grad : L->dW; /* (nparams): W's gradient, then b's */
        sm_be_gemm_at_b(L->be, L->oc, in, z - a, dy + a * L->oc, L->oc, x + a * in, in, g, in, L->ws);
        if (L->b) sm_be_sum_rows(L->be, dy + a * L->oc, z - a, L->oc, q ? g + nw : L->db, L->ws);
        if (q) sm_dist_add_f32(L->dW, g, L->nparams);
    }
    if (dx) sm_be_gemm(L->be, 0, 0, n, in, L->oc, 1.0f, dy, L->oc, L->W, in, 0.0f, dx, in);
}

/* y (n, oc) = x W^T, without the bias (the plan adds it) */
static void fc_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    int in = (int)sm_layer_in_size(L);
    sm_be_gemm(L->be, 0, 1, n, L->oc, in, 1.0f, x, in, W, in, 0.0f, y, L->oc);
}

const sm_layer_kind sm_layer_kind_fc = {
    .name = "fc",
    .takes_size = 1,
    .option = fc_option,
    .text = fc_text,
    .setup = fc_setup,
    .bind = fc_bind,
    .tensors = fc_tensors,
    .init = fc_init,
    .forward = fc_forward,
    .backward = fc_backward,
    .workspace = fc_workspace,
    .linear = 1,
    .infer = fc_infer,
};
