/* bench_dist.c - the cost of one training step's collectives without the training around them
 * (run as mpirun -np N build/bench/bench_dist [REPS]): the gather of a batch of 128 embeddings
 * of 64, the 12 SyncBN sums of cnn-s (3 layers, forward and backward, 2 x channels doubles
 * each), the gradient sum of cnn-s's 101,600 layer parameters and the two agreed decisions, as
 * sm_trainer_step makes them.  Prints rank 0's mean time a step; then the gradient sum alone,
 * by all-gather and by reduce-scatter + all-gather (sm_dist_sum_f32_gathered, _sliced), and
 * whether the two gave the same bits.  Not a test. */
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
    /* the gradient sum alone, by all-gather and sliced (reduce-scatter + all-gather), alternating;
     * both must give the same bits */
    double tg = 0, ts = 0;
    float *g1 = calloc((size_t)nparams, sizeof(float)), *g2 = calloc((size_t)nparams, sizeof(float));
    int same = 1;
    for (int i = 0; i < reps && !st; i++) {
        for (int64_t j = 0; j < nparams; j++) g1[j] = g2[j] = (float)((j * 7919 + i) % 1000) * 1e-3f + (float)sm_dist_rank(g);
        if (!st) st = sm_dist_barrier(g);
        double a = sm_now();
        if (!st) st = sm_dist_sum_f32_gathered(g, g1, nparams);
        double b = sm_now();
        if (!st) st = sm_dist_sum_f32_sliced(g, g2, nparams);
        tg += b - a;
        ts += sm_now() - b;
        if (memcmp(g1, g2, sizeof(float) * (size_t)nparams)) same = 0;
    }
    if (!st && sm_dist_rank(g) == 0)
        printf("%d ranks: gradient sum of %lld floats: all-gather %.3f ms, reduce-scatter + all-gather %.3f ms (%s)\n",
               size, (long long)nparams, 1000 * tg / reps, 1000 * ts / reps, same ? "the same bits" : "DIFFERENT BITS");
    if (!same) st = SM_ERR_NUMERIC;
    free(g1); free(g2);
    free(emb); free(all); free(grad); free(counts);
    sm_dist_free(g);
    return st ? 1 : 0;
}
