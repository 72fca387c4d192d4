/* layer_avgpool.c - average pooling, "avgpool [k=K] [s=S]": the mean of each K x K window
 * (K 2), stride S (= K), no padding, NHWC; output (h-K)/S+1 as maxpool's.  The backward
 * spreads dy / (K*K) over the window (overlapping windows add up).  Every sample is computed on
 * its own, in a fixed order, so the results do not depend on the thread count, and the
 * inference path runs the same code on one thread. */
#include "nn/layer.h"
#include <string.h>

static void avgpool_defaults(sm_layer *L) {
    L->k = 2;
    L->stride = 0; /* = k unless given */
}

static int avgpool_option(sm_layer *L, const char *key, const char *value) {
    if (strcmp(key, "k") == 0) return sm_layer_opt_int(value, &L->k, 1, 1000000);
    if (strcmp(key, "s") == 0) return sm_layer_opt_int(value, &L->stride, 1, 1000000);
    return SM_OPT_UNKNOWN;
}

static void avgpool_parsed(sm_layer *L) {
    if (L->stride == 0) L->stride = L->k;
}

static void avgpool_text(const sm_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, " k=%d s=%d", L->k, L->stride);
}

static sm_status avgpool_setup(sm_layer *L, int index) {
    if (L->k < 1 || L->stride < 1 || L->ih < L->k || L->iw < L->k)
        return sm_fail(SM_ERR_SPEC, "layer %d (avgpool): window %d does not fit input %dx%d",
                       index + 1, L->k, L->ih, L->iw);
    L->oh = (L->ih - L->k) / L->stride + 1;
    L->ow = (L->iw - L->k) / L->stride + 1;
    return SM_OK;
}

/* y (oh, ow, c) of one sample x (ih, iw, c): window sums in row-major window order, / k^2 */
static void avgpool_sample(const sm_layer *L, const float *x, float *y) {
    const int c = L->ic, k = L->k, s = L->stride;
    const float kk = (float)(k * k);
    for (int oy = 0; oy < L->oh; oy++)
        for (int ox = 0; ox < L->ow; ox++) {
            float *yo = y + ((int64_t)oy * L->ow + ox) * c;
            for (int ch = 0; ch < c; ch++) yo[ch] = 0;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    const float *xi = x + ((int64_t)(oy * s + ky) * L->iw + ox * s + kx) * c;
                    for (int ch = 0; ch < c; ch++) yo[ch] += xi[ch];
                }
            for (int ch = 0; ch < c; ch++) yo[ch] /= kk;
        }
}

/* dx (ih, iw, c) of one sample, overwritten: each dy / k^2 added over its window */
static void avgpool_sample_backward(const sm_layer *L, const float *dy, float *dx) {
    const int c = L->ic, k = L->k, s = L->stride;
    const float kk = (float)(k * k);
    memset(dx, 0, sizeof(float) * (size_t)sm_layer_in_size(L));
    for (int oy = 0; oy < L->oh; oy++)
        for (int ox = 0; ox < L->ow; ox++) {
            const float *g = dy + ((int64_t)oy * L->ow + ox) * c;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    float *d = dx + ((int64_t)(oy * s + ky) * L->iw + ox * s + kx) * c;
                    for (int ch = 0; ch < c; ch++) d[ch] += g[ch] / kk;
                }
        }
}

/* Enough work per batch to be worth a parallel region. */
static int avgpool_parallel(const sm_layer *L, int n) {
    return n > 1 && (int64_t)n * sm_layer_out_size(L) * L->k * L->k > 32768;
}

static void avgpool_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    const int64_t in = sm_layer_in_size(L), out = sm_layer_out_size(L);
#pragma omp parallel for schedule(static) if (avgpool_parallel(L, n))
    for (int b = 0; b < n; b++) avgpool_sample(L, x + b * in, y + b * out);
}

static void avgpool_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    if (!dx) return;
    const int64_t in = sm_layer_in_size(L), out = sm_layer_out_size(L);
#pragma omp parallel for schedule(static) if (avgpool_parallel(L, n))
    for (int b = 0; b < n; b++) avgpool_sample_backward(L, dy + b * out, dx + b * in);
}

static void avgpool_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    const int64_t in = sm_layer_in_size(L), out = sm_layer_out_size(L);
    for (int b = 0; b < n; b++) avgpool_sample(L, x + b * in, y + b * out);
}

const sm_layer_kind sm_layer_kind_avgpool = {
    .name = "avgpool",
    .defaults = avgpool_defaults,
    .option = avgpool_option,
    .parsed = avgpool_parsed,
    .text = avgpool_text,
    .setup = avgpool_setup,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .infer = avgpool_infer,
};
