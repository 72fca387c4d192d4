/* params.c - the parameter store (params.h): segment layout, resizing, and the loops over the
 * whole store that training runs (optimiser step, weight EMA). */
#include "model/params.h"
#include "optim/optim.h"
#include <string.h>

static const char *const seg_names[SM_NSEG] = {"layers", "head", "bn_buffers"};

/* Offsets of segments of sizes n[] in order; trainable ones first. */
static void layout(sm_param_seg seg[SM_NSEG], const int64_t n[SM_NSEG], int64_t *total, int64_t *ntrain) {
    int64_t off = 0;
    for (int s = 0; s < SM_NSEG; s++) {
        seg[s].name = seg_names[s];
        seg[s].off = off;
        seg[s].n = n[s];
        seg[s].trainable = s != SM_SEG_BN;
        off += n[s];
        if (s == SM_SEG_HEAD) *ntrain = off;
    }
    *total = off;
}

sm_status sm_params_create(sm_params *p, int64_t nlayers, int64_t nhead, int64_t nbuf) {
    memset(p, 0, sizeof *p);
    const int64_t n[SM_NSEG] = {nlayers, nhead, nbuf};
    layout(p->seg, n, &p->n, &p->ntrain);
    p->val = sm_calloc((size_t)(p->n ? p->n : 1), sizeof(float));
    p->grad = sm_calloc((size_t)(p->ntrain ? p->ntrain : 1), sizeof(float));
    if (!p->val || !p->grad) { sm_params_free(p); return SM_ERR_NOMEM; }
    return SM_OK;
}

void sm_params_free(sm_params *p) {
    if (!p) return;
    sm_free(p->val); sm_free(p->grad); sm_free(p->m); sm_free(p->v);
    p->val = p->grad = p->m = p->v = NULL;
}

sm_status sm_params_resize(sm_params *p, int seg, int64_t n) {
    if (seg < 0 || seg >= SM_NSEG || n < 0) return sm_fail(SM_ERR_INVALID, "sm_params_resize: bad segment or size");
    sm_params q;
    int64_t sizes[SM_NSEG];
    for (int s = 0; s < SM_NSEG; s++) sizes[s] = s == seg ? n : p->seg[s].n;
    sm_status st = sm_params_create(&q, sizes[0], sizes[1], sizes[2]);
    if (st) return st;
    for (int s = 0; s < SM_NSEG; s++) {
        int64_t keep = q.seg[s].n < p->seg[s].n ? q.seg[s].n : p->seg[s].n;
        if (!keep) continue;
        memcpy(q.val + q.seg[s].off, p->val + p->seg[s].off, sizeof(float) * (size_t)keep);
        if (q.seg[s].trainable)
            memcpy(q.grad + q.seg[s].off, p->grad + p->seg[s].off, sizeof(float) * (size_t)keep);
    }
    sm_params_free(p);
    *p = q;
    return SM_OK;
}

const sm_param_seg *sm_params_find(const sm_params *p, const char *name) {
    for (int s = 0; s < SM_NSEG; s++)
        if (name && strcmp(p->seg[s].name, name) == 0) return &p->seg[s];
    return NULL;
}

float *sm_params_val(const sm_params *p, int seg) { return p->val + p->seg[seg].off; }
float *sm_params_grad(const sm_params *p, int seg) {
    return p->seg[seg].trainable ? p->grad + p->seg[seg].off : NULL;
}

sm_status sm_params_reset_moments(sm_params *p) {
    if (!p->m) p->m = sm_alloc((size_t)(p->ntrain ? p->ntrain : 1), sizeof(float));
    if (!p->v) p->v = sm_alloc((size_t)(p->ntrain ? p->ntrain : 1), sizeof(float));
    if (!p->m || !p->v) {
        sm_free(p->m); sm_free(p->v);
        p->m = p->v = NULL;
        return SM_ERR_NOMEM;
    }
    memset(p->m, 0, sizeof(float) * (size_t)(p->ntrain ? p->ntrain : 1));
    memset(p->v, 0, sizeof(float) * (size_t)(p->ntrain ? p->ntrain : 1));
    p->t = 0;
    return SM_OK;
}

void sm_params_drop_moments(sm_params *p) {
    sm_free(p->m); sm_free(p->v);
    p->m = p->v = NULL;
    p->t = 0;
}

void sm_params_zero_grad(sm_params *p) {
    if (p->ntrain) memset(p->grad, 0, sizeof(float) * (size_t)p->ntrain);
}

void sm_params_step(sm_params *p, const sm_train_config *cfg, float lr) {
    p->t++;
    sm_optim_update(cfg, p->t, p->ntrain, p->val, p->grad, p->m, p->v, lr);
}

void sm_params_step_ranges(sm_params *p, const sm_train_config *cfg, float lr, const sm_param_range *r, int nr) {
    p->t++;
    for (int i = 0; i < nr; i++)
        if (r[i].mult != 0 && r[i].n > 0)
            sm_optim_update(cfg, p->t, r[i].n, p->val + r[i].off, p->grad + r[i].off, p->m + r[i].off,
                            p->v + r[i].off, lr * r[i].mult);
}

void sm_params_ema_update(const sm_params *p, float *avg, float decay, int64_t step) {
    float d = (1.0f + (float)step) / (10.0f + (float)step);
    if (d > decay) d = decay;
    for (int64_t i = 0; i < p->n; i++) avg[i] = d * avg[i] + (1 - d) * p->val[i];
}

void sm_params_ema_swap(sm_params *p, float *avg) {
    for (int64_t i = 0; i < p->n; i++) {
        float v = p->val[i];
        p->val[i] = avg[i];
        avg[i] = v;
    }
}
