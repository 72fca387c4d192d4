/* layers.c - the layer registry and the dispatch through it: the checks every kind shares
 * (parameter and output limits), and helpers for the kinds' files (option values, tensor names,
 * weight + bias layout).  What each kind computes is in src/nn/layer_<name>.c. */
#include "nn/layer.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const sm_layer_kind *const sm_layer_kinds[SM_LAYER_NKINDS] = {
#define SM_LAYER_KIND(name, NAME) [SM_LAYER_##NAME] = &sm_layer_kind_##name,
#include "nn/layer_kinds.inc"
#undef SM_LAYER_KIND
};

const sm_layer_kind *sm_layer_kind_find(const char *name) {
    for (int i = 0; i < SM_LAYER_NKINDS; i++)
        if (strcmp(sm_layer_kinds[i]->name, name) == 0) return sm_layer_kinds[i];
    return NULL;
}

const char *sm_layer_type_name(sm_layer_type t) {
    return (unsigned)t < SM_LAYER_NKINDS ? sm_layer_kinds[t]->name : "?";
}

sm_status sm_layer_setup(sm_layer *L, int ih, int iw, int ic, int index) {
    L->ih = ih; L->iw = iw; L->ic = ic;
    L->oh = ih; L->ow = iw; L->oc = ic;
    L->nparams = 0; L->nbuffers = 0;
    if (!L->be) L->be = sm_backend_default(); /* a layer made outside a model (tests) */
    if ((unsigned)L->type >= SM_LAYER_NKINDS)
        return sm_fail(SM_ERR_SPEC, "layer %d: unknown layer type %d", index + 1, L->type);
    const sm_layer_kind *K = sm_layer_kind_of(L);
    const char *name = K->name;
    sm_status st;
    if (K->setup && (st = K->setup(L, index))) return st;
    if (L->nparams > ((int64_t)1 << 31))
        return sm_fail(SM_ERR_SPEC, "layer %d (%s): %lld parameters exceed the limit", index + 1,
                       name, (long long)L->nparams);
    /* per-sample output and im2col sizes, refused before anything is allocated (a padding of
     * 10^6 would otherwise ask for terabytes of activations) */
    int64_t out = (int64_t)L->oh * L->ow * L->oc;
    if (out > SM_MAX_LAYER_OUTPUT)
        return sm_fail(SM_ERR_SPEC, "layer %d (%s): output of %dx%dx%d values exceeds the limit of %lld",
                       index + 1, name, L->oh, L->ow, L->oc, (long long)SM_MAX_LAYER_OUTPUT);
    return K->check ? K->check(L, index) : SM_OK;
}

void sm_layer_bind(sm_layer *L, float *params, float *grads, float *buffers) {
    const sm_layer_kind *K = sm_layer_kind_of(L);
    if (K->bind) K->bind(L, params, grads, buffers);
}

sm_status sm_layer_tensors(sm_layer *L, int index, sm_tensor_fn fn, void *ctx) {
    const sm_layer_kind *K = sm_layer_kind_of(L);
    return K->tensors ? K->tensors(L, index, fn, ctx) : SM_OK;
}

void sm_layer_free_cache(sm_layer *L) {
    sm_free(L->col); sm_free(L->mean); sm_free(L->rstd); sm_free(L->arg); sm_free(L->norm); sm_free(L->mask); sm_free(L->bn_sums);
    sm_free(L->bn_part);
    L->col = L->mean = L->rstd = L->norm = NULL;
    L->bn_sums = L->bn_part = NULL;
    L->arg = NULL;
    L->mask = NULL;
}

size_t sm_layer_workspace(const sm_layer *L, int cap) {
    const sm_layer_kind *K = sm_layer_kind_of(L);
    return K->workspace ? K->workspace(L, cap) : 0;
}

sm_status sm_layer_alloc_cache(sm_layer *L, int cap) {
    sm_layer_free_cache(L);
    const sm_layer_kind *K = sm_layer_kind_of(L);
    return K->alloc_cache ? K->alloc_cache(L, cap) : SM_OK;
}

void sm_layer_init_params(sm_layer *L, sm_rng *rng) {
    const sm_layer_kind *K = sm_layer_kind_of(L);
    if (K->init) K->init(L, rng);
}

void sm_layer_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    sm_layer_kind_of(L)->forward(L, x, y, n, train);
}

void sm_layer_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx,
                       int n) {
    sm_layer_kind_of(L)->backward(L, x, y, dy, dx, n);
}

/* ---- helpers for the kinds ---------------------------------------------------------------- */
int sm_layer_opt_int(const char *value, int *out, int lo, int hi) {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (end == value || *end || errno || v < 0 || v > 1000000) return SM_OPT_BAD_VALUE;
    *out = (int)v;
    return v >= lo && v <= hi ? SM_OPT_OK : SM_OPT_BAD_VALUE;
}

int sm_layer_opt_float(const char *value, float *out) {
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end || errno || !(v >= 0 && v <= 1e6)) return SM_OPT_BAD_VALUE;
    *out = (float)v;
    return SM_OPT_OK;
}

sm_status sm_layer_tensor(sm_tensor_fn fn, void *ctx, const sm_layer *L, int index, const char *what,
                          int ndim, const int *dims, float *data) {
    char name[64];
    snprintf(name, sizeof name, "%d.%s.%s", index + 1, sm_layer_kind_of(L)->name, what);
    return fn(ctx, name, ndim, dims, data);
}

void sm_layer_bind_wb(sm_layer *L, float *params, float *grads) {
    int64_t nw = L->nparams - (L->bias ? L->oc : 0);
    L->W = params; L->dW = grads;
    if (L->bias) { L->b = params + nw; L->db = grads + nw; }
}

sm_status sm_layer_tensors_wb(sm_layer *L, int index, int ndim, const int *dims, sm_tensor_fn fn, void *ctx) {
    sm_status st = sm_layer_tensor(fn, ctx, L, index, "weight", ndim, dims, L->W);
    if (!st && L->b) st = sm_layer_tensor(fn, ctx, L, index, "bias", 1, &L->oc, L->b);
    return st;
}

void sm_layer_init_wb(sm_layer *L, int64_t fan_in, sm_rng *rng) {
    /* PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias */
    int64_t nw = (int64_t)L->oc * fan_in;
    float bound = 1.0f / sqrtf((float)fan_in);
    for (int64_t i = 0; i < nw; i++) L->W[i] = bound * (2.0f * (float)sm_rng_uniform(rng) - 1.0f);
    if (L->b)
        for (int j = 0; j < L->oc; j++) L->b[j] = bound * (2.0f * (float)sm_rng_uniform(rng) - 1.0f);
}
