/* layer_conv.c - the convolution layer, "conv N [k=K] [s=S] [p=P] [bias=0|1]": NHWC input,
 * N output channels, zero padding; forward as im2col + one sgemm (a 1x1 stride-1 unpadded conv
 * reads its input as the im2col matrix), backward as two products and col2im; a 1-channel
 * input (the first layer) runs the backend's direct kernels, without im2col; a 3x3 s1 p1 conv of
 * 16 input channels or more runs its forward and input gradient by Winograd (conv_wino). */
#include "nn/layer.h"
#include "backend/backend.h"
#include "dist/dist.h"
#include <string.h>

/* A conv over a 1-channel input: the backend's direct kernels (conv1ch) instead of im2col + sgemm,
 * the same bits. */
static int conv_1ch(const sm_layer *L) { return L->ic == 1 && L->k * L->k <= 64; }

/* A 3x3 stride-1 pad-1 conv with enough input channels (not the first layer's one) runs by
 * Winograd F(2x2, 3x3) (the backend's wino3 / wino3_1: 2.25x fewer multiply-adds, other rounding
 * than im2col + sgemm): the training forward and the input gradient (the conv of dy by the
 * rotated weights, channels swapped), with the weights transformed at each call into the
 * workspace, the weight gradient staying im2col + gemm_at_b; at inference the weights are
 * transformed once per call (infer_weights) and the bias, ReLU and a following 2x2 stride-2
 * max-pool are taken in the output pass. */
#define WINO_MIN_IC 16
static int conv_wino(const sm_layer *L) {
    return L->k == 3 && L->stride == 1 && L->pad == 1 && L->ic >= WINO_MIN_IC;
}

/* The training Winograd pass: y (n, h, w, cout) = conv(x (n, h, w, cin)) + b by W (flip: the
 * input gradient's rotated W), U and the kernel's buffers in the layer's workspace. */
static void conv_wino_train(const sm_layer *L, const float *x, int n, int flip, const float *b, float *y) {
    const int cin = flip ? L->oc : L->ic, cout = flip ? L->ic : L->oc;
    float *U = L->ws->base; /* (16, cin, cout) */
    const size_t ub = sizeof(float) * (size_t)16 * L->ic * L->oc;
    sm_be_wino3_weights(L->be, L->W, L->oc, L->ic, flip, U);
    const sm_ws rest = {(char *)L->ws->base + ub, L->ws->bytes - ub};
    sm_be_wino3(L->be, x, n, L->ih, L->iw, cin, U, cout, b, 0, y, &rest);
}

static int conv_option(sm_layer *L, const char *key, const char *value) {
    if (strcmp(key, "k") == 0) return sm_layer_opt_int(value, &L->k, 1, 1000000);
    if (strcmp(key, "s") == 0) return sm_layer_opt_int(value, &L->stride, 1, 1000000);
    if (strcmp(key, "p") == 0) return sm_layer_opt_int(value, &L->pad, 0, 1000000);
    if (strcmp(key, "bias") == 0) return sm_layer_opt_int(value, &L->bias, 0, 1);
    return SM_OPT_UNKNOWN;
}

static void conv_text(const sm_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, " %d k=%d s=%d p=%d bias=%d", L->units, L->k, L->stride, L->pad, L->bias);
}

static sm_status conv_setup(sm_layer *L, int index) {
    const int ih = L->ih, iw = L->iw, ic = L->ic;
    if (L->k < 1 || L->stride < 1 || L->pad < 0 || L->units < 1)
        return sm_fail(SM_ERR_SPEC, "layer %d (conv): bad kernel/stride/padding/channels", index + 1);
    if (ih + 2 * L->pad < L->k || iw + 2 * L->pad < L->k)
        return sm_fail(SM_ERR_SPEC, "layer %d (conv): kernel %d larger than padded input %dx%d",
                       index + 1, L->k, ih + 2 * L->pad, iw + 2 * L->pad);
    L->oh = (ih + 2 * L->pad - L->k) / L->stride + 1;
    L->ow = (iw + 2 * L->pad - L->k) / L->stride + 1;
    L->oc = L->units;
    L->nparams = (int64_t)L->oc * L->k * L->k * ic + (L->bias ? L->oc : 0);
    return SM_OK;
}

/* After the parameter limit (so k*k*ic fits): the unfolded input per sample. */
static sm_status conv_check(const sm_layer *L, int index) {
    if ((int64_t)L->oh * L->ow > SM_MAX_LAYER_OUTPUT / ((int64_t)L->k * L->k * L->ic))
        return sm_fail(SM_ERR_SPEC, "layer %d (conv): unfolded input of %dx%d positions x %dx%dx%d exceeds "
                       "the limit of %lld values", index + 1, L->oh, L->ow, L->k, L->k, L->ic,
                       (long long)SM_MAX_LAYER_OUTPUT);
    return SM_OK;
}

static void conv_bind(sm_layer *L, float *params, float *grads, float *buffers) {
    sm_layer_bind_wb(L, params, grads);
}

static sm_status conv_tensors(sm_layer *L, int index, sm_tensor_fn fn, void *ctx) {
    int d[4] = {L->oc, L->k, L->k, L->ic};
    return sm_layer_tensors_wb(L, index, 4, d, fn, ctx);
}

static void conv_init(sm_layer *L, sm_rng *rng) {
    sm_layer_init_wb(L, (int64_t)L->k * L->k * L->ic, rng);
}

static sm_status conv_alloc_cache(sm_layer *L, int cap) {
    int64_t rows = (int64_t)cap * L->oh * L->ow, K = (int64_t)L->k * L->k * L->ic;
    L->col = sm_alloc((size_t)rows, (size_t)K * sizeof(float));
    return L->col ? SM_OK : SM_ERR_NOMEM;
}

static void conv_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    /* y (n*oh*ow, oc) = im2col(x) (n*oh*ow, k*k*ic) W^T (k*k*ic, oc) + b */
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    int K = L->k * L->k * L->ic;
    const float *col = x;
    if (conv_1ch(L)) {
        sm_be_conv1ch(L->be, x, n, L->ih, L->iw, L->k, L->stride, L->pad, L->oh, L->ow, L->W, L->oc, y);
        if (L->b) sm_be_add_bias(L->be, y, L->b, rows, L->oc);
        return;
    }
    if (!sm_conv_is_direct(L)) {
        sm_be_im2col(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, L->col);
        col = L->col;
    }
    /* the unfolded input above stays for the weight gradient, so Winograd only replaces the
     * product here: not worth it when an odd size leaves the last row or column of tiles half
     * empty (7 x 7: 31% more products; measured about even with the sgemm on Zen 3) */
    if (conv_wino(L) && L->ih % 2 == 0 && L->iw % 2 == 0) {
        conv_wino_train(L, x, n, 0, L->b, y);
        return;
    }
    sm_be_gemm(L->be, 0, 1, (int)rows, L->oc, K, 1.0f, col, K, L->W, K, 0.0f, y, L->oc);
    if (L->b) sm_be_add_bias(L->be, y, L->b, rows, L->oc);
}

/* the weight gradient's chunked A^T B, then the bias's column sums, in the same scratch */
static size_t conv_workspace(const sm_layer *L, int cap) {
    const int64_t rows = (int64_t)cap * L->oh * L->ow;
    size_t a = conv_1ch(L) ? sm_be_conv1ch_dw_ws(L->be, L->oc, L->k, rows)
                           : sm_be_gemm_at_b_ws(L->be, L->oc, L->k * L->k * L->ic, rows), b = L->bias ? sm_be_sum_rows_ws(L->be, rows, L->oc) : 0;
    if (conv_wino(L)) { /* U, then the forward's or the input gradient's buffers */
        size_t f = sm_be_wino3_ws(L->be, cap, L->ih, L->iw, L->ic, L->oc), g = sm_be_wino3_ws(L->be, cap, L->ih, L->iw, L->oc, L->ic);
        size_t w = sizeof(float) * (size_t)16 * L->ic * L->oc + (f > g ? f : g);
        if (w > a) a = w;
    }
    return a > b ? a : b;
}

static void conv_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    int K = L->k * L->k * L->ic;
    int direct = sm_conv_is_direct(L);
    const float *col = direct ? x : L->col;
    /* dW (oc, K) = dy^T (oc, rows) col (rows, K);  db = sum_rows dy: over the whole batch, or
     * over each gradient shard's rows (as a rank of that many computes it), added in order */
    const int S = L->shards > 1 ? L->shards : 1;
    const int64_t per = (int64_t)L->oh * L->ow, nw = (int64_t)L->oc * K;
    for (int q = 0; q < S; q++) {
        int64_t a = 0, z = n;
        if (S > 1) sm_dist_shard(n, q, S, &a, &z);
        const int64_t r0 = a * per, nr = (z - a) * per;
        float *g = q ? L->shard_grad : L->dW; /* (nparams): W's gradient, then b's */
        if (conv_1ch(L)) /* no im2col was kept: the direct kernel unfolds the shard's images */
            sm_be_conv1ch_dw(L->be, x + a * L->ih * L->iw, dy + r0 * L->oc, (int)(z - a), L->ih, L->iw, L->k,
                             L->stride, L->pad, L->oh, L->ow, L->oc, g, L->ws);
        else
            sm_be_gemm_at_b(L->be, L->oc, K, nr, dy + r0 * L->oc, L->oc, col + r0 * K, K, g, K, L->ws);
        if (L->b) sm_be_sum_rows(L->be, dy + r0 * L->oc, nr, L->oc, q ? g + nw : L->db, L->ws);
        if (q) sm_dist_add_f32(L->dW, g, L->nparams);
    }
    if (dx) {
        /* dcol (rows, K) = dy (rows, oc) W (oc, K); dx = col2im(dcol) */
        if (conv_wino(L)) {
            conv_wino_train(L, dy, n, 1, NULL, dx);
        } else if (direct) {
            sm_be_gemm(L->be, 0, 0, (int)rows, K, L->oc, 1.0f, dy, L->oc, L->W, K, 0.0f, dx, K);
        } else {
            sm_be_gemm(L->be, 0, 0, (int)rows, K, L->oc, 1.0f, dy, L->oc, L->W, K, 0.0f, L->col, K);
            sm_be_col2im(L->be, L->col, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, dx);
        }
    }
}


/* per sample: the unfolded input (oh*ow, k*k*ic), or Winograd's workspace for one image */
static int64_t conv_infer_scratch(const sm_layer *L) {
    if (conv_wino(L))
        return (int64_t)((sm_be_wino3_1_ws(L->be, 1, L->ih, L->iw, L->ic, L->oc, 0) + sizeof(float) - 1) /
                         sizeof(float));
    return (int64_t)L->oh * L->ow * L->k * L->k * L->ic;
}

/* Winograd's U (16, ic, oc) from W (oc, 3, 3, ic) */
static int64_t conv_infer_weights(const sm_layer *L, const float *W, float *P) {
    if (!conv_wino(L)) return 0;
    if (P) sm_be_wino3_weights(L->be, W, L->oc, L->ic, 0, P);
    return (int64_t)16 * L->ic * L->oc;
}

/* y = act(conv(x) + b), pooled when pool is a 2x2 stride-2 unpadded max-pool: Winograd, and the
 * 1-channel direct kernel when a pool follows (its rows pooled as they are computed, the bits
 * of the separate passes; the unpooled output is never written) */
static int conv_infer_fused(const sm_layer *L, const float *W, const float *b, int relu, const sm_layer *pool,
                            const float *x, int n, float *y, float *scratch) {
    if (pool && !(!strcmp(sm_layer_kind_of(pool)->name, "maxpool") && pool->k == 2 && pool->stride == 2 &&
                  pool->pad == 0))
        return 0;
    if (conv_1ch(L) && pool && L->oh >= 2 && L->ow >= 2 && L->ow <= 128) { /* 128: the op's row limit */
        (void)scratch;
        sm_be_conv1ch1_pool(L->be, x, n, L->ih, L->iw, L->k, L->stride, L->pad, L->oh, L->ow, W, L->oc, b, relu, y);
        return 1;
    }
    if (!conv_wino(L)) return 0;
    const sm_ws ws = {scratch, sm_be_wino3_1_ws(L->be, n, L->ih, L->iw, L->ic, L->oc, pool != NULL)};
    sm_be_wino3_1(L->be, x, n, L->ih, L->iw, L->ic, W, L->oc, b, relu, pool != NULL, y, &ws);
    return 1;
}

/* y (n*oh*ow, oc) = im2col(x) W^T, without the bias (the plan adds it) */
static void conv_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    int K = L->k * L->k * L->ic;
    const float *c = x;
    if (conv_wino(L)) { /* W is Winograd's U (conv_infer_weights) */
        conv_infer_fused(L, W, NULL, 0, NULL, x, n, y, scratch);
        return;
    }
    if (conv_1ch(L)) {
        sm_be_conv1ch1(L->be, x, n, L->ih, L->iw, L->k, L->stride, L->pad, L->oh, L->ow, W, L->oc, y);
        return;
    }
    if (!sm_conv_is_direct(L)) {
        sm_be_im2col1(L->be, x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, scratch);
        c = scratch;
    }
    sm_be_gemm(L->be, 0, 1, (int)rows, L->oc, K, 1.0f, c, K, W, K, 0.0f, y, L->oc);
}

const sm_layer_kind sm_layer_kind_conv = {
    .name = "conv",
    .takes_size = 1,
    .option = conv_option,
    .text = conv_text,
    .setup = conv_setup,
    .check = conv_check,
    .bind = conv_bind,
    .tensors = conv_tensors,
    .init = conv_init,
    .alloc_cache = conv_alloc_cache,
    .workspace = conv_workspace,
    .forward = conv_forward,
    .backward = conv_backward,
    .linear = 1,
    .infer_scratch = conv_infer_scratch,
    .infer = conv_infer,
    .infer_weights = conv_infer_weights,
    .infer_fused = conv_infer_fused,
};
