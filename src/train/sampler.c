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

typedef struct cls { int32_t label; int64_t *idx, count, groups, next; uint64_t tiebreak; } cls;

static int cmp_cls(const void *a, const void *b) {
    const cls *x = a, *y = b;
    int64_t lx = x->groups - x->next, ly = y->groups - y->next;
    if (lx != ly) return lx > ly ? -1 : 1;
    return x->tiebreak < y->tiebreak ? -1 : x->tiebreak > y->tiebreak;
}

sm_status sm_plan_pk(sm_epoch_plan *p, const int32_t *labels, int64_t n, int batch,
                     int per_class, sm_rng *rng) {
    memset(p, 0, sizeof *p);
    if (per_class < 1 || per_class > batch)
        return sm_fail(SM_ERR_INVALID, "per-class count %d must be between 1 and the batch size %d", per_class, batch);
    int32_t maxl = -1;
    for (int64_t i = 0; i < n; i++) if (labels[i] > maxl) maxl = labels[i];
    int64_t *cnt = sm_calloc((size_t)maxl + 2, sizeof(int64_t));
    if (!cnt) return SM_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) cnt[labels[i]]++;
    int ncls = 0;
    for (int32_t l = 0; l <= maxl; l++) ncls += cnt[l] > 0;
    cls *C = sm_calloc((size_t)(ncls ? ncls : 1), sizeof *C);
    int64_t *pool = sm_alloc((size_t)(n ? n : 1), sizeof(int64_t));
    if (!C || !pool) { sm_free(cnt); sm_free(C); sm_free(pool); return SM_ERR_NOMEM; }
    int64_t off = 0, groups_total = 0;
    for (int32_t l = 0, k = 0; l <= maxl; l++)
        if (cnt[l]) { C[k].label = l; C[k].idx = pool + off; off += cnt[l]; k++; }
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < ncls; k++) if (C[k].label == labels[i]) { C[k].idx[C[k].count++] = i; break; }
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
    if (!p->order || !p->starts) { sm_free(cnt); sm_free(C); sm_free(pool); sm_plan_free(p); return SM_ERR_NOMEM; }
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
    sm_free(cnt); sm_free(C); sm_free(pool);
    return SM_OK;
}

sm_status sm_plan_pk_random(sm_epoch_plan *p, const int32_t *labels, int64_t n, int batch,
                            int per_class, int64_t total, sm_rng *rng) {
    memset(p, 0, sizeof *p);
    if (per_class < 1 || per_class > batch)
        return sm_fail(SM_ERR_INVALID, "per-class count %d must be between 1 and the batch size %d", per_class, batch);
    int32_t maxl = -1;
    for (int64_t i = 0; i < n; i++) if (labels[i] > maxl) maxl = labels[i];
    int64_t *start = sm_calloc((size_t)maxl + 2, sizeof(int64_t)); /* (maxl + 2) class offsets into pool */
    int64_t *pool = sm_alloc((size_t)(n ? n : 1), sizeof(int64_t));  /* (n) indices grouped by class */
    int32_t *cls = sm_alloc((size_t)maxl + 2, sizeof(int32_t));      /* present classes */
    int64_t *fill = sm_alloc((size_t)maxl + 2, sizeof(int64_t));
    if (!start || !pool || !cls || !fill) { sm_free(start); sm_free(pool); sm_free(cls); sm_free(fill); return SM_ERR_NOMEM; }
    for (int64_t i = 0; i < n; i++) start[labels[i] + 1]++;
    int ncls = 0;
    for (int32_t l = 0; l <= maxl; l++) if (start[l + 1]) cls[ncls++] = l;
    for (int32_t l = 0; l <= maxl; l++) start[l + 1] += start[l];
    for (int32_t l = 0; l <= maxl; l++) fill[l] = start[l];
    for (int64_t i = 0; i < n; i++) pool[fill[labels[i]]++] = i;
    int P = batch / per_class;
    if (P > ncls) P = ncls;
    int64_t nb = total / batch;
    if (nb < 1) nb = 1;
    p->order = sm_alloc((size_t)(nb * P * per_class + 1), sizeof(int64_t));
    p->starts = sm_alloc((size_t)nb + 1, sizeof(int64_t));
    if (!p->order || !p->starts) { sm_free(start); sm_free(pool); sm_free(cls); sm_free(fill); sm_plan_free(p); return SM_ERR_NOMEM; }
    int64_t pos = 0;
    p->starts[0] = 0;
    for (int64_t b = 0; b < nb; b++) {
        for (int k = 0; k < P; k++) { /* partial Fisher-Yates: cls[0..P) become P random classes */
            int j = k + (int)sm_rng_below(rng, (uint64_t)(ncls - k));
            int32_t t = cls[k]; cls[k] = cls[j]; cls[j] = t;
        }
        for (int k = 0; k < P; k++) {
            int64_t *idx = pool + start[cls[k]], cnt = start[cls[k] + 1] - start[cls[k]];
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
    sm_free(start); sm_free(pool); sm_free(cls); sm_free(fill);
    return SM_OK;
}
