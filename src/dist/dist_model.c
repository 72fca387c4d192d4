/* dist_model.c - a model's embeddings and logits over a process group: every rank holds the
 * whole input, embeds the rows of its shard (sm_dist_shard_range) and the shards are
 * all-gathered in rank order, so every rank ends with all n rows, the same bits one process
 * computes (the network computes each row alone: no result depends on the other rows of its
 * batch).  Logits: the head runs on every rank over all the gathered embeddings at once (its
 * arithmetic path depends on the number of rows). */
#include "dist/dist.h"
#include "model/model.h"
#include <string.h>

sm_status sm_model_embed_dist(sm_model *m, sm_dist *g, const float *x, int64_t n, float *emb) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_embed_dist: the model is NULL");
    if (!g || g->size <= 1 || !g->mpi) return sm_model_embed(m, x, n, emb);
    if (n < 0 || (n > 0 && (!x || !emb))) return sm_fail(SM_ERR_INVALID, "sm_model_embed_dist: NULL input or output");
    const int64_t d = m->emb_dim, in = (int64_t)m->in_h * m->in_w * m->in_c;
    int64_t lo, hi;
    sm_dist_shard_range(g, n, &lo, &hi);
    float *mine = sm_alloc((size_t)(hi > lo ? hi - lo : 1), (size_t)d * sizeof(float)); /* (hi - lo, d) */
    sm_status st = mine ? sm_model_embed(m, x + lo * in, hi - lo, mine) : SM_ERR_NOMEM;
    if (!(st = sm_dist_agree(g, st))) /* every rank gathers, or none */
        st = sm_dist_allgather_rows(g, mine, n, d, emb);
    if (st) sm_errmsg_copy(m->errmsg); /* the model's message says why, as sm_model_embed's does */
    sm_free(mine);
    return st;
}

sm_status sm_model_logits_dist(sm_model *m, sm_dist *g, const float *x, int64_t n, float *logits) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_logits_dist: the model is NULL");
    if (!g || g->size <= 1 || !g->mpi || sm_model_num_classes(m) <= 0) return sm_model_logits(m, x, n, logits);
    float *emb = sm_alloc((size_t)(n > 0 ? n : 1), (size_t)m->emb_dim * sizeof(float)); /* (n, d) */
    sm_status st = sm_dist_agree(g, emb ? SM_OK : SM_ERR_NOMEM);
    if (!st) st = sm_model_embed_dist(m, g, x, n, emb);
    if (!st) st = sm_model_head_logits(m, emb, n, logits); /* the same on every rank */
    sm_free(emb);
    return st;
}
