/* loss.h - internal interface of loss objects: each loss kind is a vtable registered in
 * loss.c; sm_loss_create parses "key=value,..." options and calls the kind's init. */
#ifndef SM_LOSS_H
#define SM_LOSS_H
#include "core/core.h"

typedef struct sm_loss sm_loss;

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
    /* Classifier logits (n, classes) from embeddings, for losses with a class head (may be NULL). */
    sm_status (*logits)(const sm_loss *l, const float *emb, int n, float *out);
    void (*destroy)(sm_loss *l);  /* free l->state (params/grads are freed by loss.c) */
} sm_loss_kind;

struct sm_loss {
    const sm_loss_kind *kind;
    int dim;             /* embedding dimension d */
    uint64_t seed;
    int classes;         /* number of classes of a head (0 if none) */
    float *params;       /* (nparams) trainable parameters owned by the loss, or NULL */
    float *grads;        /* (nparams) their gradient, accumulated by compute */
    int64_t nparams;
    void *state;         /* kind-specific */
    char options[256];
    char errmsg[SM_ERRMSG_MAX];
};

/* Look up a kind by name (NULL if unknown); iterate with sm_loss_kind_at(i) until NULL. */
const sm_loss_kind *sm_loss_kind_find(const char *name);
const sm_loss_kind *sm_loss_kind_at(int i);

/* Options: "key=value,key=value".  Each returns SM_ERR_INVALID for a malformed value; a missing
 * key leaves *out = def.  sm_opt_check rejects keys not in the NULL-terminated `known` list. */
sm_status sm_opt_float(const char *options, const char *key, float def, float *out);
sm_status sm_opt_int(const char *options, const char *key, int def, int *out);
sm_status sm_opt_str(const char *options, const char *key, const char *def, char *out, size_t cap);
sm_status sm_opt_check(const char *options, const char *const *known);

/* Allocate l->params/l->grads (zeroed) of n floats. */
sm_status sm_loss_alloc_params(sm_loss *l, int64_t n);

#endif
