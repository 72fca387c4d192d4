/* search.c - exact k-nearest-neighbour search (the public sm_knn_search and the evaluation's
 * sm_knn_search_ex): checks the arguments and the queries, sizes the workspace and runs the
 * backend's knn operation (src/backend/cpu/knn_cpu.c: FAISS IndexFlat's tiles, heaps and
 * selection).  Ties go to the lower index; results do not depend on the thread count. */
#include "gallery/search.h"

#include "backend/backend.h"
#include "core/core.h"

static int dist_kind(sm_metric metric) {
    return metric == SM_METRIC_L2 ? SM_K_DIST_SQL2 : metric == SM_METRIC_COSINE ? SM_K_DIST_COS : SM_K_DIST_DOT;
}

sm_status sm_knn_search_ex(const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                           sm_metric metric, int64_t self_offset, float *dist, int64_t *idx) {
    if (!db && n > 0) return sm_fail(SM_ERR_INVALID, "knn search: database is NULL");
    if (!q && nq > 0) return sm_fail(SM_ERR_INVALID, "knn search: queries are NULL");
    if ((!dist || !idx) && nq > 0) return sm_fail(SM_ERR_INVALID, "knn search: output is NULL");
    if (n < 0 || nq < 0)
        return sm_fail(SM_ERR_INVALID, "knn search: negative size (n %lld, nq %lld)",
                       (long long)n, (long long)nq);
    if (d <= 0) return sm_fail(SM_ERR_INVALID, "knn search: dimension %d must be positive", d);
    if (k <= 0) return sm_fail(SM_ERR_INVALID, "knn search: k = %d must be positive", k);
    if (metric != SM_METRIC_L2 && metric != SM_METRIC_IP && metric != SM_METRIC_COSINE)
        return sm_fail(SM_ERR_INVALID, "knn search: unknown metric %d", (int)metric);
    if (nq > 0 && !sm_all_finite(q, nq * (int64_t)d))
        return sm_fail(SM_ERR_NUMERIC, "knn search: NaN or Inf in the queries");
    if (nq == 0) {
        if (n > 0 && !sm_all_finite(db, n * (int64_t)d))
            return sm_fail(SM_ERR_NUMERIC, "knn search: NaN or Inf in the database");
        return SM_OK;
    }

    sm_backend *be = sm_backend_default();
    int kind = dist_kind(metric);
    sm_ws ws = {NULL, sm_be_knn_ws(be, n, nq, d, k, kind)};
    if (ws.bytes && sm_be_alloc(be, ws.bytes, &ws.base) != SM_OK)
        return sm_fail(SM_ERR_NOMEM, "knn search: out of memory for a %zu-byte workspace", ws.bytes);
    sm_status st = sm_be_knn(be, kind, db, n, q, nq, d, k, self_offset, dist, idx, &ws);
    sm_be_free(be, ws.base);
    return st;
}

sm_status sm_knn_search(const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                        sm_metric metric, int exclude_self, float *dist, int64_t *idx) {
    return sm_knn_search_ex(db, n, q, nq, d, k, metric, exclude_self ? 0 : -1, dist, idx);
}
