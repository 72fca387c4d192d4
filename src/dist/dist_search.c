/* dist_search.c - exact k-NN search over a database sharded by rank, after FAISS's IndexShards:
 * every rank searches its own rows with sm_knn_search, the per-shard top-k lists are
 * all-gathered, and each rank merges them into the global top-k.  A shard's list is ordered by
 * (key, index) with ties to the lower index, and the shards hold consecutive row ranges in rank
 * order, so a merge by (key, global index) gives what one search over the whole database gives,
 * ties included, whenever each pair's score has the same bits in both. */
#include "dist/dist.h"
#include <math.h>
#include <string.h>

/* 1 if (da, ia) ranks before (db, ib): better score, or the same score and a lower index.
 * L2 distances are better small, inner products and cosines large. */
static int before(sm_metric metric, float da, int64_t ia, float db, int64_t ib) {
    if (da != db) return metric == SM_METRIC_L2 ? da < db : da > db;
    return ia < ib;
}

sm_status sm_dist_knn_search(sm_dist *g, const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                             sm_metric metric, float *dist, int64_t *idx) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sharded search: the process group is NULL");
    if (g->size == 1) return sm_knn_search(db, n, q, nq, d, k, metric, 0, dist, idx);
    /* every rank must ask the same question: compare (nq, d, k, metric) and collect the shard sizes */
    int64_t mine[5] = {nq, d, k, (int64_t)metric, n};
    int64_t *all = sm_alloc((size_t)g->size, sizeof mine); /* (size, 5) */
    if (!all) return SM_ERR_NOMEM;
    sm_status st = sm_dist_allgather(g, mine, (int64_t)sizeof mine, all);
    if (st) { sm_free(all); return st; }
    for (int r = 1; r < g->size; r++)
        for (int j = 0; j < 4; j++)
            if (all[r * 5 + j] != all[j]) {
                st = sm_fail(SM_ERR_MISMATCH,
                               "sharded search: rank %d asks for %lld queries of dimension %lld, k %lld, metric %lld; "
                               "rank 0 for %lld, %lld, %lld, %lld (every rank must pass the same queries)",
                               r, (long long)all[r * 5], (long long)all[r * 5 + 1], (long long)all[r * 5 + 2],
                               (long long)all[r * 5 + 3], (long long)all[0], (long long)all[1], (long long)all[2],
                               (long long)all[3]);
                sm_free(all);
                return st;
            }
    int64_t off = 0;
    for (int r = 0; r < g->rank; r++) off += all[r * 5 + 4];
    sm_free(all);
    /* this shard's top-k with global indices: (nq, k) distances then (nq, k) indices */
    const int64_t nk = nq * (int64_t)k;
    const int64_t bytes = nk * (int64_t)(sizeof(float) + sizeof(int64_t));
    unsigned char *local = sm_alloc((size_t)(bytes ? bytes : 1), 1);
    unsigned char *gath = sm_alloc((size_t)g->size, (size_t)(bytes ? bytes : 1)); /* (size, bytes) */
    if (!local || !gath) { sm_free(local); sm_free(gath); return SM_ERR_NOMEM; }
    float *ld = (float *)local;
    int64_t *li = (int64_t *)(local + nk * (int64_t)sizeof(float));
    /* a failure on one rank must not leave the others waiting: every rank takes part in the
     * gather and the status is agreed on afterwards */
    st = sm_knn_search(db, n, q, nq, d, k, metric, 0, ld, li);
    int failed = st != SM_OK;
    char msg[SM_ERRMSG_MAX] = "";
    if (failed) sm_errmsg_copy(msg);
    if (!failed)
        for (int64_t i = 0; i < nk; i++) if (li[i] >= 0) li[i] += off;
    sm_status cst = sm_dist_max_int(g, &failed);
    if (!cst && failed) {
        sm_free(local); sm_free(gath);
        return st ? sm_fail(st, "%s", msg) : sm_fail(SM_ERR_INVALID, "sharded search: the search failed on another rank");
    }
    if (!cst) cst = sm_dist_allgather(g, local, bytes, gath);
    if (cst) { sm_free(local); sm_free(gath); return cst; }
    /* k-way merge of the size sorted lists of each query */
    int *pos = sm_calloc((size_t)g->size, sizeof(int));
    if (!pos) { sm_free(local); sm_free(gath); return SM_ERR_NOMEM; }
    const float empty = metric == SM_METRIC_L2 ? INFINITY : -INFINITY;
    for (int64_t i = 0; i < nq; i++) {
        memset(pos, 0, sizeof(int) * (size_t)g->size);
        for (int j = 0; j < k; j++) {
            int best = -1;
            float bd = empty;
            int64_t bi = -1;
            for (int r = 0; r < g->size; r++) {
                if (pos[r] >= k) continue;
                const unsigned char *blk = gath + (size_t)r * (size_t)bytes;
                const float *rd = (const float *)blk + i * k;
                const int64_t *ri = (const int64_t *)(blk + nk * (int64_t)sizeof(float)) + i * k;
                if (ri[pos[r]] < 0) continue; /* that shard has no more */
                if (best < 0 || before(metric, rd[pos[r]], ri[pos[r]], bd, bi)) {
                    best = r; bd = rd[pos[r]]; bi = ri[pos[r]];
                }
            }
            if (best >= 0) pos[best]++;
            dist[i * k + j] = bd;
            idx[i * k + j] = bi;
        }
    }
    sm_free(pos); sm_free(local); sm_free(gath);
    return SM_OK;
}
