/* layer.h - network layers: configuration parsed from the spec, shapes, pointers into the
 * model's parameter block, and the caches a forward leaves for its backward.  One forward and
 * one hand-written backward per kind (layers.c); the arithmetic is in backend/. */
#ifndef SM_LAYER_H
#define SM_LAYER_H
#include "core/core.h"

typedef enum sm_layer_type {
    SM_LAYER_CONV, SM_LAYER_BN, SM_LAYER_RELU, SM_LAYER_MAXPOOL, SM_LAYER_GAP, SM_LAYER_FC,
    SM_LAYER_L2NORM
} sm_layer_type;

typedef struct sm_layer {
    sm_layer_type type;
    /* configuration */
    int units;          /* conv: output channels; fc: output features */
    int k, stride, pad; /* conv / maxpool window */
    int bias;           /* conv / fc: has a bias */
    int line;           /* spec line the layer was parsed from (for error messages) */
    int relu;           /* bn: a following relu is fused into this layer */
    int fused;          /* relu: executed by the preceding bn; forward and backward are identity */
    float eps, momentum;/* bn */
    /* shapes of one sample: input (ih, iw, ic), output (oh, ow, oc) */
    int ih, iw, ic, oh, ow, oc;
    /* parameters (into the model's parameter block) and their gradients (into the grad block) */
    float *W, *b;       /* conv W (oc, k, k, ic), fc W (oc, ih*iw*ic); b (oc) */
    float *dW, *db;
    float *gamma, *beta, *dgamma, *dbeta; /* bn (oc) */
    float *run_mean, *run_var;            /* bn running statistics (model's buffer block) */
    int64_t param_offset, nparams;        /* position in the parameter block */
    int64_t buffer_offset, nbuffers;
    /* caches for backward, sized for the model's batch capacity */
    float *col;         /* conv: im2col (cap*oh*ow, k*k*ic), overwritten by dcol in backward:
                         * each forward feeds exactly one backward */
    float *mean, *rstd; /* bn: batch statistics (oc) */
    int32_t *arg;       /* maxpool: argmax indices (cap*oh*ow*oc) */
    float *norm;        /* l2norm: row norms (cap) */
    double t_fwd, t_bwd;/* seconds spent in forward/backward (when profiling is on) */
} sm_layer;

/* Output size of one sample (oh * ow * oc) and input size (ih * iw * ic). */
static inline int64_t sm_layer_out_size(const sm_layer *L) { return (int64_t)L->oh * L->ow * L->oc; }
static inline int64_t sm_layer_in_size(const sm_layer *L) { return (int64_t)L->ih * L->iw * L->ic; }
const char *sm_layer_type_name(sm_layer_type t);
/* A conv whose im2col matrix is its input itself (1x1, stride 1, no padding): no unfolding. */
static inline int sm_conv_is_direct(const sm_layer *L) { return L->k == 1 && L->stride == 1 && L->pad == 0; }

/* Limit on a layer's output values per sample, and on its unfolded (im2col) input per sample. */
#define SM_MAX_LAYER_OUTPUT ((int64_t)1 << 28)
/* Set output shape and parameter counts from the input shape; SM_ERR_SPEC if it does not fit. */
sm_status sm_layer_setup(sm_layer *L, int ih, int iw, int ic, int index);
/* Allocate this layer's caches for a batch of cap samples (frees old ones). */
sm_status sm_layer_alloc_cache(sm_layer *L, int cap);
void sm_layer_free_cache(sm_layer *L);
/* Initialise parameters as PyTorch does by default (conv/fc weights and biases uniform in
 * +-1/sqrt(fan_in), i.e. kaiming_uniform with a = sqrt(5); bn gamma 1 beta 0, running mean 0
 * var 1).  With batch norm and Adam the weights' scale sets the effective step size, so the
 * initialisation matters for matching PyTorch's training curves. */
void sm_layer_init_params(sm_layer *L, sm_rng *rng);

/* y (n, out) = layer(x (n, in)); train selects batch statistics for bn. */
void sm_layer_forward(sm_layer *L, const float *x, float *y, int n, int train);
/* Given x, y of the forward and dy: parameter gradients (overwritten) and dx (if not NULL). */
void sm_layer_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx,
                       int n);

#endif
