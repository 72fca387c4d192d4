/* loss.h - internal interface of loss objects: each loss kind is a vtable registered in
 * loss.c; sm_loss_create parses "key=value,..." options and calls the kind's init. */
#ifndef SM_LOSS_H
#define SM_LOSS_H
#include "core/core.h"

typedef struct sm_loss sm_loss;
struct sm_loss_kind;

/* A classifier head's parameters wherever they are stored (a loss object, or a model's
 * parameter store), with what its forward needs: the kind's logits run on this, so a model
 * computes logits from its stored head without building a loss object. */
typedef struct sm_head {
    const struct sm_loss_kind *kind;
    const float *params;   /* (nparams) the kind's parameter block */
    int64_t nparams;
    int dim, classes;
    const char *options;   /* the loss options (e.g. arcface's scale) */
} sm_head;

typedef struct sm_loss_kind {
    const char *name;
    const char *help;  /* one line: formula and options with defaults (shown by the CLI) */
    /* Parse options (read with sm_opt_* below) and allocate state/params.  l->dim and l->seed
     * are set before init.  Must set l->nparams/params/grads if the loss has parameters. */
    sm_status (*init)(sm_loss *l, const char *options);
    /* Loss of emb (n, d) with labels; grad (n, d) may be NULL.  Parameter gradients (if any)
     * are ADDED to l->grads. */
    sm_status (*compute)(sm_loss *l, const float *emb, const int32_t *labels, int n, int d,
                         float *value, float *grad);
    /* Classifier logits (n, classes) from embeddings, for losses with a class head (may be NULL):
     * head_logits on sm_loss_head(l). */
    sm_status (*logits)(const sm_loss *l, const float *emb, int n, float *out);
    void (*destroy)(sm_loss *l);  /* free l->state (params/grads are freed by loss.c) */
    /* The same logits of a head stored anywhere (set when logits is): the forward of the head
     * only, no state of a loss object (sm_model_logits runs it on the model's store). */
    sm_status (*head_logits)(const sm_head *h, const float *emb, int n, float *out);
    /* Size of the parameter block of a head with these classes on embeddings of dim (set when
     * logits is). */
    int64_t (*head_params)(int dim, int classes);
} sm_loss_kind;

struct sm_loss {
    const sm_loss_kind *kind;
    int dim;             /* embedding dimension d */
    uint64_t seed;
    int classes;         /* number of classes of a head (0 if none) */
    float *params;       /* (nparams) trainable parameters, or NULL: the loss's own block, or a
                          * model store's "head" segment while bound (sm_loss_bind) */
    float *grads;        /* (nparams) their gradient, accumulated by compute */
    int64_t nparams;
    float *own_params, *own_grads; /* (nparams) the loss's own blocks while bound, else NULL */
    void *state;         /* kind-specific */
    char options[256];
    char errmsg[SM_ERRMSG_MAX];
};

/* Look up a kind by name (NULL if unknown); iterate with sm_loss_kind_at(i) until NULL. */
const sm_loss_kind *sm_loss_kind_find(const char *name);
const sm_loss_kind *sm_loss_kind_at(int i);

/* Options: "key=value,key=value".  Each returns SM_ERR_INVALID for a malformed value; a missing
 * key leaves *out = def.  sm_opt_check rejects keys not in the NULL-terminated `known` list. */
/* The linear classifier head (linear_head.c): z (n, c) = f (n, d) W^T (W (c, d)) + b (c, or NULL).
 * Backward with G = dL/dz (n, c): df (n, d) = G W (overwritten), dW (c, d) = G^T f and db (c) =
 * sum_i G_i, overwritten or, with accumulate, added; each output may be NULL. */
void sm_linear_head_forward(const float *f, const float *W, const float *b, int n, int d, int c, float *z);
void sm_linear_head_backward(const float *G, const float *f, const float *W, int n, int d, int c, float *df,
                             float *dW, float *db, int accumulate);

sm_status sm_opt_float(const char *options, const char *key, float def, float *out);
sm_status sm_opt_int(const char *options, const char *key, int def, int *out);
sm_status sm_opt_str(const char *options, const char *key, const char *def, char *out, size_t cap);
sm_status sm_opt_check(const char *options, const char *const *known);

/* Allocate l->params/l->grads (zeroed) of n floats. */
sm_status sm_loss_alloc_params(sm_loss *l, int64_t n);

/* Compute with params/grads (nparams each, e.g. a model store's head segment) instead of the
 * loss's own blocks: the current values are copied into params, grads is left as it is.
 * Binding again first unbinds. */
void sm_loss_bind(sm_loss *l, float *params, float *grads);
/* Back to the loss's own blocks, which receive the bound values. */
void sm_loss_unbind(sm_loss *l);

/* Check a stored head against its loss: the kind has logits, options name the same classes
 * and the block has the kind's size.  Fills *h.  SM_ERR_UNSUPPORTED, SM_ERR_FORMAT. */
sm_status sm_head_open(sm_head *h, const char *loss_name, const char *options, int dim,
                       const float *params, int64_t nparams, int classes);
/* The head of a loss object (for its kind's logits). */
sm_head sm_loss_head(const sm_loss *l);

#endif
