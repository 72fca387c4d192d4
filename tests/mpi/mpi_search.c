/* mpi_search.c - the sharded exact k-NN search (sm_dist_knn_search) on 2 ranks (mpirun -np 2):
 * each rank holds its rows of a database with many exact ties (duplicated rows, small integer
 * coordinates, so every score is exact whatever the order of addition), searches them, and the
 * merged top-k on every rank equals sm_knn_search over the whole database: the same indices in
 * the same order (ties to the lower row) and the same distances, for L2, inner product and
 * cosine, k = 1 (top-1 path), 10 (heaps) and 300 (whole-row selection), with uneven shards and
 * an empty one; ranks asking different questions get SM_ERR_MISMATCH. */
#include "core/core.h"
#include "dist/dist.h"
#include "simile.h"
#include "testing.h"
#include <string.h>

#define NDB 700
#define NQ 40
#define D 12

int main(void) {
    sm_dist *g = NULL;
    CHECK_OK(sm_dist_init(&g));
    if (!g) TEST_MAIN_END();
    const int rank = sm_dist_rank(g);
    CHECK_MSG(sm_dist_size(g) == 2, "run with mpirun -np 2 (size %d)", sm_dist_size(g));
    sm_set_num_threads(1);
    float *db = malloc(sizeof(float) * NDB * D), *q = malloc(sizeof(float) * NQ * D);
    sm_rng rng;
    sm_rng_seed(&rng, 5);
    for (int i = 0; i < NDB; i++)
        for (int j = 0; j < D; j++) /* every 3rd row repeats an earlier one: exact ties across shards */
            db[i * D + j] = i % 3 == 2 ? db[(int)sm_rng_below(&rng, (uint64_t)i) * D + j]
                                       : (float)((int)sm_rng_below(&rng, 5) - 2);
    for (int i = 0; i < NQ; i++)
        for (int j = 0; j < D; j++) q[i * D + j] = i % 4 == 0 ? db[(i * 17) * D + j] : (float)((int)sm_rng_below(&rng, 5) - 2);
    const int ks[3] = {1, 10, 300};
    const sm_metric metrics[3] = {SM_METRIC_L2, SM_METRIC_IP, SM_METRIC_COSINE};
    const int64_t splits[3] = {350, 123, NDB}; /* rank 0's rows: even, uneven, all (rank 1 empty) */
    float *d1 = malloc(sizeof(float) * NQ * 300), *dd = malloc(sizeof(float) * NQ * 300);
    int64_t *i1 = malloc(sizeof(int64_t) * NQ * 300), *id = malloc(sizeof(int64_t) * NQ * 300);
    int ties = 0;
    for (int mi = 0; mi < 3; mi++)
        for (int ki = 0; ki < 3; ki++)
            for (int si = 0; si < 3; si++) {
                const int k = ks[ki];
                const int64_t lo = rank == 0 ? 0 : splits[si], hi = rank == 0 ? splits[si] : NDB;
                CHECK_OK(sm_knn_search(db, NDB, q, NQ, D, k, metrics[mi], 0, d1, i1));
                CHECK_OK(sm_dist_knn_search(g, db + lo * D, hi - lo, q, NQ, D, k, metrics[mi], dd, id));
                int same_idx = memcmp(i1, id, sizeof(int64_t) * NQ * (size_t)k) == 0;
                /* equal values (a zero inner product may come out as +0 from one of the search's
                 * paths and -0 from another) */
                int same_dist = 1;
                for (int64_t t = 0; t < NQ * (int64_t)k; t++) same_dist &= d1[t] == dd[t];
                CHECK_MSG(same_idx && same_dist, "metric %d k %d split %lld: the merged top-k differs from one search",
                          (int)metrics[mi], k, (long long)splits[si]);
                for (int64_t t = 0; t + 1 < NQ * (int64_t)k; t++)
                    if ((t + 1) % k && d1[t] == d1[t + 1] && i1[t] >= 0 && i1[t + 1] >= 0) ties++;
            }
    CHECK_MSG(ties > 1000, "the data has %d tied neighbours: it should test the tie rule", ties);
    /* different questions on the two ranks */
    CHECK_STATUS(sm_dist_knn_search(g, db, rank ? 0 : NDB, q, NQ, D, rank ? 5 : 4, SM_METRIC_L2, dd, id),
                 SM_ERR_MISMATCH);
    CHECK(strstr(sm_errmsg(), "every rank must pass the same queries") != NULL);
    /* a bad search on one rank fails on both */
    CHECK(sm_dist_knn_search(g, db, rank ? -1 : NDB, q, NQ, D, 3, SM_METRIC_L2, dd, id) != SM_OK);
    printf("rank %d: %d tied neighbours among the results\n", rank, ties);
    free(db); free(q); free(d1); free(dd); free(i1); free(id);
    int bad = t_failures;
    if (sm_dist_max_int(g, &bad) == SM_OK && bad && !t_failures) {
        t_failures++;
        fprintf(stderr, "rank %d: the other rank failed\n", rank);
    }
    sm_dist_free(g);
    TEST_MAIN_END();
}
