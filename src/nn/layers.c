/* layers.c - what each layer computes: shape rules, parameter layout, initialisation, and the
 * forward/backward pair expressed through the backend kernels. */
#include "nn/layer.h"
#include "backend/backend.h"
#include <math.h>
#include <string.h>

const char *sm_layer_type_name(sm_layer_type t) {
    static const char *names[] = {"conv", "bn", "relu", "maxpool", "gap", "fc", "l2norm"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

sm_status sm_layer_setup(sm_layer *L, int ih, int iw, int ic, int index) {
    L->ih = ih; L->iw = iw; L->ic = ic;
    L->oh = ih; L->ow = iw; L->oc = ic;
    L->nparams = 0; L->nbuffers = 0;
    const char *name = sm_layer_type_name(L->type);
    switch (L->type) {
    case SM_LAYER_CONV:
        if (L->k < 1 || L->stride < 1 || L->pad < 0 || L->units < 1)
            return sm_fail(SM_ERR_SPEC, "layer %d (conv): bad kernel/stride/padding/channels", index + 1);
        if (ih + 2 * L->pad < L->k || iw + 2 * L->pad < L->k)
            return sm_fail(SM_ERR_SPEC, "layer %d (conv): kernel %d larger than padded input %dx%d",
                           index + 1, L->k, ih + 2 * L->pad, iw + 2 * L->pad);
        L->oh = (ih + 2 * L->pad - L->k) / L->stride + 1;
        L->ow = (iw + 2 * L->pad - L->k) / L->stride + 1;
        L->oc = L->units;
        L->nparams = (int64_t)L->oc * L->k * L->k * ic + (L->bias ? L->oc : 0);
        break;
    case SM_LAYER_BN:
        L->nparams = 2 * (int64_t)ic;
        L->nbuffers = 2 * (int64_t)ic;
        break;
    case SM_LAYER_RELU:
    case SM_LAYER_L2NORM:
        break;
    case SM_LAYER_MAXPOOL:
        if (L->k < 1 || L->stride < 1 || ih < L->k || iw < L->k)
            return sm_fail(SM_ERR_SPEC, "layer %d (maxpool): window %d does not fit input %dx%d",
                           index + 1, L->k, ih, iw);
        L->oh = (ih - L->k) / L->stride + 1;
        L->ow = (iw - L->k) / L->stride + 1;
        break;
    case SM_LAYER_GAP:
        L->oh = L->ow = 1;
        break;
    case SM_LAYER_FC:
        if (L->units < 1) return sm_fail(SM_ERR_SPEC, "layer %d (fc): bad output size", index + 1);
        L->oh = L->ow = 1;
        L->oc = L->units;
        L->nparams = (int64_t)L->oc * ih * iw * ic + (L->bias ? L->oc : 0);
        break;
    }
    if (L->nparams > ((int64_t)1 << 31))
        return sm_fail(SM_ERR_SPEC, "layer %d (%s): %lld parameters exceed the limit", index + 1,
                       name, (long long)L->nparams);
    /* per-sample output and im2col sizes, refused before anything is allocated (a padding of
     * 10^6 would otherwise ask for terabytes of activations) */
    int64_t out = (int64_t)L->oh * L->ow * L->oc;
    if (out > SM_MAX_LAYER_OUTPUT)
        return sm_fail(SM_ERR_SPEC, "layer %d (%s): output of %dx%dx%d values exceeds the limit of %lld",
                       index + 1, name, L->oh, L->ow, L->oc, (long long)SM_MAX_LAYER_OUTPUT);
    if (L->type == SM_LAYER_CONV && (int64_t)L->oh * L->ow > SM_MAX_LAYER_OUTPUT / ((int64_t)L->k * L->k * ic))
        return sm_fail(SM_ERR_SPEC, "layer %d (conv): unfolded input of %dx%d positions x %dx%dx%d exceeds "
                       "the limit of %lld values", index + 1, L->oh, L->ow, L->k, L->k, ic,
                       (long long)SM_MAX_LAYER_OUTPUT);
    return SM_OK;
}

void sm_layer_free_cache(sm_layer *L) {
    sm_free(L->col); sm_free(L->mean); sm_free(L->rstd); sm_free(L->arg); sm_free(L->norm);
    L->col = L->mean = L->rstd = L->norm = NULL;
    L->arg = NULL;
}

sm_status sm_layer_alloc_cache(sm_layer *L, int cap) {
    sm_layer_free_cache(L);
    switch (L->type) {
    case SM_LAYER_CONV: {
        int64_t rows = (int64_t)cap * L->oh * L->ow, K = (int64_t)L->k * L->k * L->ic;
        L->col = sm_alloc((size_t)rows, (size_t)K * sizeof(float));
        return L->col ? SM_OK : SM_ERR_NOMEM;
    }
    case SM_LAYER_BN:
        L->mean = sm_alloc((size_t)L->oc, sizeof(float));
        L->rstd = sm_alloc((size_t)L->oc, sizeof(float));
        return L->mean && L->rstd ? SM_OK : SM_ERR_NOMEM;
    case SM_LAYER_MAXPOOL:
        L->arg = sm_alloc((size_t)cap * (size_t)sm_layer_out_size(L), sizeof(int32_t));
        return L->arg ? SM_OK : SM_ERR_NOMEM;
    case SM_LAYER_L2NORM:
        L->norm = sm_alloc((size_t)cap, sizeof(float));
        return L->norm ? SM_OK : SM_ERR_NOMEM;
    default:
        return SM_OK;
    }
}

void sm_layer_init_params(sm_layer *L, sm_rng *rng) {
    switch (L->type) {
    case SM_LAYER_CONV:
    case SM_LAYER_FC: {
        /* PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias */
        int64_t fan_in = L->type == SM_LAYER_CONV ? (int64_t)L->k * L->k * L->ic : sm_layer_in_size(L);
        int64_t nw = (int64_t)L->oc * fan_in;
        float bound = 1.0f / sqrtf((float)fan_in);
        for (int64_t i = 0; i < nw; i++) L->W[i] = bound * (2.0f * (float)sm_rng_uniform(rng) - 1.0f);
        if (L->b)
            for (int j = 0; j < L->oc; j++) L->b[j] = bound * (2.0f * (float)sm_rng_uniform(rng) - 1.0f);
        break;
    }
    case SM_LAYER_BN:
        for (int j = 0; j < L->oc; j++) {
            L->gamma[j] = 1; L->beta[j] = 0; L->run_mean[j] = 0; L->run_var[j] = 1;
        }
        break;
    default:
        break;
    }
}

void sm_layer_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    switch (L->type) {
    case SM_LAYER_CONV: {
        /* y (n*oh*ow, oc) = im2col(x) (n*oh*ow, k*k*ic) W^T (k*k*ic, oc) + b */
        int K = L->k * L->k * L->ic;
        const float *col = x;
        if (!sm_conv_is_direct(L)) {
            sm_k_im2col(x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, L->col);
            col = L->col;
        }
        sm_k_gemm(0, 1, (int)rows, L->oc, K, 1.0f, col, K, L->W, K, 0.0f, y, L->oc);
        if (L->b) sm_k_add_bias(y, L->b, rows, L->oc);
        break;
    }
    case SM_LAYER_BN:
        if (train)
            sm_k_bn_forward_train(x, rows, L->oc, L->gamma, L->beta, L->eps, L->momentum,
                                  L->run_mean, L->run_var, L->mean, L->rstd, L->relu, y);
        else
            sm_k_bn_forward_infer(x, rows, L->oc, L->gamma, L->beta, L->eps, L->run_mean,
                                  L->run_var, L->relu, y);
        break;
    case SM_LAYER_RELU:
        if (L->fused) { if (y != x) memcpy(y, x, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L)); break; }
        sm_k_relu_forward(x, y, (int64_t)n * sm_layer_out_size(L));
        break;
    case SM_LAYER_MAXPOOL:
        sm_k_maxpool_forward(x, n, L->ih, L->iw, L->ic, L->k, L->stride, L->oh, L->ow, y, L->arg);
        break;
    case SM_LAYER_GAP:
        sm_k_gap_forward(x, n, L->ih * L->iw, L->ic, y);
        break;
    case SM_LAYER_FC: {
        /* y (n, oc) = x (n, in) W^T (in, oc) + b */
        int in = (int)sm_layer_in_size(L);
        sm_k_gemm(0, 1, n, L->oc, in, 1.0f, x, in, L->W, in, 0.0f, y, L->oc);
        if (L->b) sm_k_add_bias(y, L->b, n, L->oc);
        break;
    }
    case SM_LAYER_L2NORM:
        sm_k_l2norm_forward(x, n, (int)sm_layer_in_size(L), y, L->norm);
        break;
    }
}

void sm_layer_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx,
                       int n) {
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    switch (L->type) {
    case SM_LAYER_CONV: {
        int K = L->k * L->k * L->ic;
        int direct = sm_conv_is_direct(L);
        const float *col = direct ? x : L->col;
        /* dW (oc, K) = dy^T (oc, rows) col (rows, K);  db = sum_rows dy */
        sm_k_gemm_at_b(L->oc, K, rows, dy, L->oc, col, K, L->dW, K);
        if (L->b) sm_k_sum_rows(dy, rows, L->oc, L->db);
        if (dx) {
            /* dcol (rows, K) = dy (rows, oc) W (oc, K); dx = col2im(dcol) */
            if (direct) {
                sm_k_gemm(0, 0, (int)rows, K, L->oc, 1.0f, dy, L->oc, L->W, K, 0.0f, dx, K);
            } else {
                sm_k_gemm(0, 0, (int)rows, K, L->oc, 1.0f, dy, L->oc, L->W, K, 0.0f, L->col, K);
                sm_k_col2im(L->col, n, L->ih, L->iw, L->ic, L->k, L->stride, L->pad, L->oh, L->ow, dx);
            }
        }
        break;
    }
    case SM_LAYER_BN:
        sm_k_bn_backward(x, dy, L->relu ? y : NULL, rows, L->oc, L->gamma, L->mean, L->rstd, L->dgamma,
                         L->dbeta, dx);
        break;
    case SM_LAYER_RELU:
        if (dx && L->fused) { if (dx != dy) memcpy(dx, dy, sizeof(float) * (size_t)n * (size_t)sm_layer_out_size(L)); break; }
        if (dx) sm_k_relu_backward(y, dy, dx, (int64_t)n * sm_layer_out_size(L));
        break;
    case SM_LAYER_MAXPOOL:
        if (dx) sm_k_maxpool_backward(dy, L->arg, n, L->ih, L->iw, L->ic, L->oh, L->ow, dx);
        break;
    case SM_LAYER_GAP:
        if (dx) sm_k_gap_backward(dy, n, L->ih * L->iw, L->ic, dx);
        break;
    case SM_LAYER_FC: {
        int in = (int)sm_layer_in_size(L);
        /* dW (oc, in) = dy^T (oc, n) x (n, in); db = sum_rows dy; dx (n, in) = dy (n, oc) W (oc, in) */
        sm_k_gemm_at_b(L->oc, in, n, dy, L->oc, x, in, L->dW, in);
        if (L->b) sm_k_sum_rows(dy, n, L->oc, L->db);
        if (dx) sm_k_gemm(0, 0, n, in, L->oc, 1.0f, dy, L->oc, L->W, in, 0.0f, dx, in);
        break;
    }
    case SM_LAYER_L2NORM:
        if (dx) sm_k_l2norm_backward(y, L->norm, dy, n, (int)sm_layer_in_size(L), dx);
        break;
    }
}
