/* model.h - the struct behind sm_model: layers parsed from a spec, the parameter store
 * (params.h: layer parameters, the classifier head a loss trains, batch-norm running statistics;
 * values, gradients and optimiser moments in parallel blocks), and activations sized for a
 * batch capacity. */
#ifndef SM_MODEL_H
#define SM_MODEL_H
#include "nn/layer.h"
#include "model/params.h"

#define SM_MAX_LAYERS 256
#define SM_MAX_SPEC_BYTES 65536

struct sm_model {
    char *spec;                 /* expanded spec text */
    int in_h, in_w, in_c;
    int nlayers;
    sm_layer *layers;           /* (nlayers) */
    sm_params store;            /* every parameter, gradient, moment and statistic */
    /* views of the store's segments, set by sm_model_bind (they move when the head is resized) */
    float *params, *grads;      /* (nparams) segment "layers" */
    int64_t nparams;
    float *buffers;             /* (nbuffers) segment "bn_buffers": bn running statistics */
    int64_t nbuffers;
    int emb_dim;
    /* classifier head stored with the model (from the loss it was trained with) */
    char loss_name[32];
    char loss_options[256];
    float *head;                /* (nhead) segment "head": the loss's parameters; NULL if none */
    int64_t nhead;
    int classes;
    /* model selection (set by a trainer with a validation set; stored in the model file) */
    int val_epoch;              /* 1-based epoch whose weights the model holds; 0: no validation */
    double val_map_at_r;        /* that epoch's validation MAP@R */
    int val_best;               /* 1: the best epoch was kept (keep_best), 0: the last */
    /* preprocessing and class names stored with the model (model_meta.c) */
    sm_normalization norm;      /* kind SM_NORM_UNKNOWN for a version-1 file */
    char **class_names;         /* (nclass_names) one block: pointers, then the strings; NULL if none */
    int nclass_names;
    /* activations: act[i] (cap, out_size of layer i), dact likewise */
    int cap;
    float **act, **dact;
    sm_backend *be;             /* the backend it computes on (sm_backend_default() today) */
    sm_ws ws;                   /* the kernels' scratch for a batch of cap (every layer shares it) */
    int shards;                 /* gradient shards of a training step (sm_model_set_shards), 0/1: none */
    float *shard_grad;          /* (largest layer's nparams) one shard's gradients, every layer's scratch */
    char *summary;
    int uses_noise;             /* a layer's training forward is random (dropout) */
    uint64_t noise;             /* its key for the next training forward (the trainer draws one a step) */
    int64_t noise_row0;         /* the next training forward's first sample's place in the whole
                                 * batch (a rank's shard: the trainer sets it), for dropout's mask */
    int profile;                /* accumulate per-layer times (SIMILE_PROFILE=1) */
    char *profile_text;         /* sm_model_profile's table */
    char errmsg[SM_ERRMSG_MAX];
};

/* Limit on parameters + batch-norm statistics of a model (2^27 floats, 512 MiB). */
#define SM_MAX_PARAMS ((int64_t)1 << 27)
/* sm_model_create with a lower limit on parameters + statistics, checked before the blocks
 * are allocated (the model file reader passes what the file's size can hold). */
sm_status sm_model_create_bounded(sm_model **out, const char *spec, int h, int w, int c, uint64_t seed,
                                  int64_t max_params);

/* Parse spec text (or a built-in name) into layers (*layers allocated, *n set, *expanded the
 * canonical text).  SM_ERR_SPEC with the line number on any error. */
sm_status sm_spec_parse(const char *spec, sm_layer **layers, int *n, char **expanded);
/* The text of a built-in spec, or NULL. */
const char *sm_spec_builtin(const char *name);

/* Make activations fit a batch of n. */
sm_status sm_model_reserve(sm_model *m, int n);
/* Forward a batch x (n, in) through all layers; returns the output (n, emb_dim) (owned by m). */
const float *sm_model_forward(sm_model *m, const float *x, int n, int train);
/* Inference: embeddings (n, emb_dim) of x, batch-parallel with batch norm folded into the
 * preceding conv/fc (src/model/infer.c).  Inputs are not checked.  Errors: SM_ERR_NOMEM. */
sm_status sm_model_infer(sm_model *m, const float *x, int64_t n, float *emb);
/* The head's logits (n, classes) of embeddings emb (n, emb_dim): sm_model_logits after the
 * embedding.  (The head's path depends on n, so the logits of a set are computed over the whole
 * set at once, also when its embeddings came from several ranks.)  SM_ERR_UNSUPPORTED: no head. */
sm_status sm_model_head_logits(sm_model *m, const float *emb, int64_t n, float *logits);
/* Backward from dout (n, emb_dim): fills m->grads (overwritten). Input gradient not computed. */
void sm_model_backward(sm_model *m, const float *x, const float *dout, int n);
/* Point the views (params, grads, buffers, head) and every layer's tensors into the store;
 * called after any change of the store's layout. */
void sm_model_bind(sm_model *m);
/* Resize the store's head segment to n floats (values kept up to min(old, n), the rest zero)
 * and bind again.  The loss name, options and classes are left as they are. */
sm_status sm_model_resize_head(sm_model *m, int64_t n);
/* Batch norm layers compute their training statistics over the process group d (SyncBN,
 * src/dist/dist.h), or over this process's rows when d is NULL. */
struct sm_dist;
void sm_model_set_dist(sm_model *m, struct sm_dist *d);
/* The training reductions over the batch computed in `shards` parts added in shard order, as
 * that many ranks compute them (sm_layer.shards): 0 or 1 for the whole batch at once.  Errors:
 * SM_ERR_NOMEM (the shards' scratch). */
sm_status sm_model_set_shards(sm_model *m, int shards);
/* Store a copy of the loss's parameters as the model's head. */
/* The "normalize" and "class_names" meta values of the model file, written and parsed
 * (model_meta.c).  Parse errors are SM_ERR_FORMAT naming path. */
void sm_model_meta_normalization(const sm_model *m, char *buf, size_t cap);
sm_status sm_model_meta_parse_normalization(sm_model *m, const char *path, const char *v, size_t n);
/* The class names joined by '\n' (allocated; "" if none; NULL on no memory). */
char *sm_model_meta_class_names(const sm_model *m);
sm_status sm_model_meta_parse_class_names(sm_model *m, const char *path, const char *v, size_t n);
sm_status sm_model_set_head(sm_model *m, const char *loss_name, const char *loss_options,
                            const float *params, int64_t n, int classes);

#endif
