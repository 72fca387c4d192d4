/* params.h - the parameter store of a model: one value block, and a gradient block and two
 * optimiser moment blocks (Adam m and v; SGD keeps its momentum in m) mirroring it in parallel
 * (llm.c style), divided into named segments.  Layout of the value block:
 *   [ "layers" (trainable) | "head" (trainable: the loss's parameters) | "bn_buffers" ]
 * The trainable segments come first, so gradients and moments cover the prefix [0, ntrain)
 * and the optimiser, the weight EMA, the divergence backup and a checkpoint are each one loop
 * over one block. */
#ifndef SM_PARAMS_H
#define SM_PARAMS_H
#include "core/core.h"

/* The segments, in the order they lie in the blocks. */
enum { SM_SEG_LAYERS = 0, SM_SEG_HEAD = 1, SM_SEG_BN = 2, SM_NSEG = 3 };

typedef struct sm_param_seg {
    const char *name;  /* "layers", "head", "bn_buffers" */
    int64_t off, n;    /* floats [off, off + n) of val (and of grad, m, v when trainable) */
    int trainable;     /* has a gradient and optimiser moments */
} sm_param_seg;

typedef struct sm_params {
    float *val;        /* (n) values of every segment */
    float *grad;       /* (ntrain) gradients of the trainable segments */
    float *m, *v;      /* (ntrain) optimiser moments, NULL until sm_params_reset_moments */
    int64_t n, ntrain;
    int64_t t;         /* optimiser steps taken since the moments were reset */
    sm_param_seg seg[SM_NSEG];
} sm_params;

/* Lay out a store of nlayers + nhead + nbuf floats, zeroed (gradients too; no moments). */
sm_status sm_params_create(sm_params *p, int64_t nlayers, int64_t nhead, int64_t nbuf);
void sm_params_free(sm_params *p);
/* Resize one segment to n floats: the others keep their values, the resized one keeps its
 * first min(old, n) values and the rest are zero.  Blocks move: pointers into them must be
 * taken again.  Moments are dropped (sm_params_reset_moments).  On SM_ERR_NOMEM p is unchanged. */
sm_status sm_params_resize(sm_params *p, int seg, int64_t n);
/* Segment by name, or NULL. */
const sm_param_seg *sm_params_find(const sm_params *p, const char *name);
/* Values / gradient of a segment (the gradient is NULL for an untrainable one). */
float *sm_params_val(const sm_params *p, int seg);
float *sm_params_grad(const sm_params *p, int seg);
/* Allocate (or zero) the moments and set t = 0: a fresh optimiser. */
sm_status sm_params_reset_moments(sm_params *p);
/* Free the moments (training is over; the values and gradients stay). */
void sm_params_drop_moments(sm_params *p);
void sm_params_zero_grad(sm_params *p);
/* One optimiser update (SGD, Adam, AdamW as cfg says) of every trainable value from its
 * gradient at learning rate lr: one loop over the trainable prefix. */
void sm_params_step(sm_params *p, const sm_train_config *cfg, float lr);
/* A range of the store's values [off, off + n) with a learning-rate multiplier. */
typedef struct sm_param_range { int64_t off, n; float mult; } sm_param_range;
/* sm_params_step over ranges of the trainable prefix, range i at lr x r[i].mult; a range of
 * multiplier 0 is skipped (its values, moments and weight decay stay as they are).  One
 * optimiser step (t advances once). */
void sm_params_step_ranges(sm_params *p, const sm_train_config *cfg, float lr, const sm_param_range *r, int nr);
/* The weight EMA over every value (trainable or not), avg (n):
 *   ema_update: avg = d avg + (1 - d) val with d = min(decay, (1 + step) / (10 + step))
 *   ema_swap:   exchange avg and val */
void sm_params_ema_update(const sm_params *p, float *avg, float decay, int64_t step);
void sm_params_ema_swap(sm_params *p, float *avg);

#endif
