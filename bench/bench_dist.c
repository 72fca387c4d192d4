/* bench_dist.c - the cost of one training step's collectives without the training around them
 * (run as mpirun -np N build/bench/bench_dist [REPS]): the gather of a batch of 128 embeddings
 * of 64, the 12 SyncBN sums of cnn-s (3 layers, forward and backward, 2 x channels doubles
 * each), the gradient sum of cnn-s's 101,600 layer parameters and the two agreed decisions, as
 * sm_trainer_step makes them.  Prints rank 0's mean time a step.  Not a test. */
#include "dist/dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 200;
    sm_dist *g = NULL;
    if (sm_dist_init(&g)) { fprintf(stderr, "bench_dist: %s\n", sm_errmsg()); return 1; }
    const int n = 128, d = 64, size = sm_dist_size(g);
    const int64_t nparams = 101600;
    float *emb = calloc((size_t)n * d, sizeof(float)), *all = calloc((size_t)n * d, sizeof(float));
    float *grad = calloc((size_t)nparams, sizeof(float));
    double sums[2 * 128 + 1] = {0};
    int64_t *counts = calloc((size_t)size, sizeof(int64_t));
    for (int r = 0; r < size; r++) {
        int64_t lo, hi;
        sm_dist_shard(n, r, size, &lo, &hi);
        counts[r] = (hi - lo) * d * (int64_t)sizeof(float);
    }
    const int ch[3] = {32, 64, 128};
    sm_status st = sm_dist_barrier(g);
    double t0 = sm_now(), c0 = sm_dist_comm_seconds(g);
    for (int i = 0; i < reps && !st; i++) {
        for (int l = 0; l < 3 && !st; l++) st = sm_dist_sum_f64(g, sums, 2 * ch[l] + 1);     /* forward */
        if (!st) st = sm_dist_allgatherv(g, emb, counts, all);
        int flag = 0;
        if (!st) st = sm_dist_max_int(g, &flag);
        for (int l = 2; l >= 0 && !st; l--) st = sm_dist_sum_f64(g, sums, 2 * ch[l]);       /* backward */
        if (!st) st = sm_dist_sum_f32(g, grad, nparams);
        if (!st) st = sm_dist_max_int(g, &flag);
        if (!st) st = sm_dist_max_int(g, &flag);
    }
    double t = sm_now() - t0, c = sm_dist_comm_seconds(g) - c0;
    if (st) fprintf(stderr, "bench_dist: %s\n", sm_errmsg());
    else if (sm_dist_rank(g) == 0)
        printf("%d ranks: %.3f ms a step in collectives (%.3f ms wall), %d steps\n", size, 1000 * c / reps,
               1000 * t / reps, reps);
    free(emb); free(all); free(grad); free(counts);
    sm_dist_free(g);
    return st ? 1 : 0;
}
