/* sampler.c - epoch plans: shuffled batches and class-balanced P x K batches. */
#include "train/sampler.h"
#include <stdlib.h>
#include <string.h>

void sm_plan_free(sm_epoch_plan *p) {
    sm_free(p->order); sm_free(p->starts);
    memset(p, 0, sizeof *p);
}

sm_status sm_plan_shuffled(sm_epoch_plan *p, int64_t n, int batch, sm_rng *rng) {
    memset(p, 0, sizeof *p);
    p->nbatches = (n + batch - 1) / batch;
    p->order = sm_alloc((size_t)(n > 0 ? n : 1), sizeof(int64_t));
    p->starts = sm_alloc((size_t)p->nbatches + 1, sizeof(int64_t));
    if (!p->order || !p->starts) { sm_plan_free(p); return SM_ERR_NOMEM; }
    for (int64_t i = 0; i < n; i++) p->order[i] = i;
    sm_rng_shuffle_i64(rng, p->order, n);
    for (int64_t b = 0; b <= p->nbatches; b++) p->starts[b] = b * batch < n ? b * batch : n;
    p->total = n;
    return SM_OK;
}

typedef struct cls { int64_t *idx, count, groups, next; uint64_t tiebreak; } cls;

static int cmp_cls(const void *a, const void *b) {
    const cls *x = a, *y = b;
    int64_t lx = x->groups - x->next, ly = y->groups - y->next;
    if (lx != ly) return lx > ly ? -1 : 1;
    return x->tiebreak < y->tiebreak ? -1 : x->tiebreak > y->tiebreak;
}

/* Sample indices grouped by class: class k (the k-th smallest label present) has its samples,
 * in file order, at pool[start[k] .. start[k + 1]). */
typedef struct by_class {
    int64_t *pool;  /* (n) */
    int64_t *start; /* (ncls + 1) */
    int ncls;
} by_class;

static void by_class_free(by_class *g) {
    sm_free(g->pool); sm_free(g->start);
    memset(g, 0, sizeof *g);
}

static sm_status group_by_class(by_class *g, const int32_t *labels, int64_t n) {
    memset(g, 0, sizeof *g);
    int32_t maxl = -1;
    for (int64_t i = 0; i < n; i++) if (labels[i] > maxl) maxl = labels[i];
    int64_t *slot = sm_calloc((size_t)maxl + 2, sizeof(int64_t)); /* (maxl + 1) count, then cursor */
    if (!slot) return SM_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) slot[labels[i]]++;
    for (int32_t l = 0; l <= maxl; l++) g->ncls += slot[l] > 0;
    g->pool = sm_alloc((size_t)(n ? n : 1), sizeof(int64_t));
    g->start = sm_alloc((size_t)g->ncls + 1, sizeof(int64_t));
    if (!g->pool || !g->start) { sm_free(slot); by_class_free(g); return SM_ERR_NOMEM; }
    int64_t off = 0;
    for (int32_t l = 0, k = 0; l <= maxl; l++) {
        if (!slot[l]) continue;
        int64_t count = slot[l];
        g->start[k++] = off;
        slot[l] = off; /* from here on: the next free position of class l */
        off += count;
    }
    g->start[g->ncls] = off;
    for (int64_t i = 0; i < n; i++) g->pool[slot[labels[i]]++] = i;
    sm_free(slot);
    return SM_OK;
}

/* The start of both P x K planners: an empty plan, the per-class count checked, the samples
 * grouped by class. */
static sm_status pk_begin(sm_epoch_plan *p, const int32_t *labels, int64_t n, int batch, int per_class,
                          by_class *g) {
    memset(p, 0, sizeof *p);
    if (per_class < 1 || per_class > batch)
        return sm_fail(SM_ERR_INVALID, "per-class count %d must be between 1 and the batch size %d", per_class, batch);
    return group_by_class(g, labels, n);
}

sm_status sm_plan_pk(sm_epoch_plan *p, const int32_t *labels, int64_t n, int batch,
                     int per_class, sm_rng *rng) {
    by_class g;
    sm_status st = pk_begin(p, labels, n, batch, per_class, &g);
    if (st) return st;
    const int ncls = g.ncls;
    cls *C = sm_calloc((size_t)(ncls ? ncls : 1), sizeof *C);
    if (!C) { by_class_free(&g); return SM_ERR_NOMEM; }
    int64_t groups_total = 0;
    for (int k = 0; k < ncls; k++) {
        C[k].idx = g.pool + g.start[k];
        C[k].count = g.start[k + 1] - g.start[k];
    }
    for (int k = 0; k < ncls; k++) {
        sm_rng_shuffle_i64(rng, C[k].idx, C[k].count);
        C[k].groups = (C[k].count + per_class - 1) / per_class;
        groups_total += C[k].groups;
    }
    int P = batch / per_class;
    if (P < 1) P = 1;
    p->order = sm_alloc((size_t)(groups_total * per_class + 1), sizeof(int64_t));
    p->starts = sm_alloc((size_t)(groups_total + 2), sizeof(int64_t));
    if (!p->order || !p->starts) { sm_free(C); by_class_free(&g); sm_plan_free(p); return SM_ERR_NOMEM; }
    int64_t pos = 0, nb = 0, left = groups_total;
    p->starts[0] = 0;
    while (left > 0) {
        for (int k = 0; k < ncls; k++) C[k].tiebreak = sm_rng_next(rng);
        qsort(C, (size_t)ncls, sizeof *C, cmp_cls);
        for (int k = 0; k < P && k < ncls; k++) {
            cls *c = &C[k];
            if (c->next >= c->groups) break;
            for (int j = 0; j < per_class; j++) {
                int64_t s = c->next * per_class + j;
                /* top up the last group with random samples of the same class */
                p->order[pos++] = s < c->count ? c->idx[s] : c->idx[sm_rng_below(rng, (uint64_t)c->count)];
            }
            c->next++;
            left--;
        }
        p->starts[++nb] = pos;
    }
    p->nbatches = nb;
    p->total = pos;
    sm_free(C); by_class_free(&g);
    return SM_OK;
}

sm_status sm_plan_pk_random(sm_epoch_plan *p, const int32_t *labels, int64_t n, int batch,
                            int per_class, int64_t total, sm_rng *rng) {
    by_class g;
    sm_status st = pk_begin(p, labels, n, batch, per_class, &g);
    if (st) return st;
    const int ncls = g.ncls;
    int32_t *cls = sm_alloc((size_t)(ncls ? ncls : 1), sizeof(int32_t)); /* (ncls) class numbers k */
    if (!cls) { by_class_free(&g); return SM_ERR_NOMEM; }
    for (int k = 0; k < ncls; k++) cls[k] = k;
    int P = batch / per_class;
    if (P > ncls) P = ncls;
    int64_t nb = total / batch;
    if (nb < 1) nb = 1;
    p->order = sm_alloc((size_t)(nb * P * per_class + 1), sizeof(int64_t));
    p->starts = sm_alloc((size_t)nb + 1, sizeof(int64_t));
    if (!p->order || !p->starts) { sm_free(cls); by_class_free(&g); sm_plan_free(p); return SM_ERR_NOMEM; }
    int64_t pos = 0;
    p->starts[0] = 0;
    for (int64_t b = 0; b < nb; b++) {
        for (int k = 0; k < P; k++) { /* partial Fisher-Yates: cls[0..P) become P random classes */
            int j = k + (int)sm_rng_below(rng, (uint64_t)(ncls - k));
            int32_t t = cls[k]; cls[k] = cls[j]; cls[j] = t;
        }
        for (int k = 0; k < P; k++) {
            int64_t *idx = g.pool + g.start[cls[k]], cnt = g.start[cls[k] + 1] - g.start[cls[k]];
            if (cnt >= per_class) { /* per_class distinct samples: partial shuffle of the class */
                for (int j = 0; j < per_class; j++) {
                    int64_t r = j + (int64_t)sm_rng_below(rng, (uint64_t)(cnt - j));
                    int64_t t = idx[j]; idx[j] = idx[r]; idx[r] = t;
                    p->order[pos++] = idx[j];
                }
            } else {
                for (int j = 0; j < per_class; j++) p->order[pos++] = idx[sm_rng_below(rng, (uint64_t)cnt)];
            }
        }
        p->starts[b + 1] = pos;
    }
    p->nbatches = nb;
    p->total = pos;
    sm_free(cls); by_class_free(&g);
    return SM_OK;
}
