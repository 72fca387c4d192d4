/* dist.h - the process group of data-parallel training and sharded search (src/dist/dist.c), the
 * only module that calls MPI.  Built with MPI (SIMILE_MPI, SIMILE_HAVE_MPI) a program started by
 * mpirun joins MPI_COMM_WORLD; otherwise, or when started without a launcher, the group is this
 * one process (size 1) and every collective below is a copy or nothing.
 *
 * Every reduction here has a fixed order: the contributions are all-gathered and added in rank
 * order (rank 0 first) on every rank, so all ranks hold the same bits and the result does not
 * depend on MPI's reduction algorithm.  A failed collective sets the group's error (sticky:
 * sm_dist_error) so that code without a status (a layer's forward) can be checked after it.
 * Not part of the public API beyond the sm_dist_* functions simile.h declares. */
#ifndef SM_DIST_H
#define SM_DIST_H
#include "core/core.h"

struct sm_dist {
    int rank, size;
    int mpi;              /* 1: a group of MPI_COMM_WORLD (this handle initialised MPI) */
    int owns_mpi;         /* 1: sm_dist_free finalises MPI */
    int one_node;         /* 1: every rank shares this machine's memory (MPI_COMM_TYPE_SHARED) */
    sm_status error;      /* first failure of a collective, SM_OK if none */
    double comm_s;        /* seconds spent in collectives */
    void *scratch;        /* (scratch_bytes) the gathered contributions of a reduction */
    size_t scratch_bytes;
    char errmsg[SM_ERRMSG_MAX];
};

/* All ranks' `bytes` bytes, rank after rank, into recv (size * bytes). */
sm_status sm_dist_allgather(sm_dist *d, const void *send, int64_t bytes, void *recv);
/* Rank r's counts[r] bytes, rank after rank, into recv (sum of counts); send is this rank's
 * counts[rank] bytes. */
sm_status sm_dist_allgatherv(sm_dist *d, const void *send, const int64_t *counts, void *recv);
/* buf (n) = the sum over ranks of every rank's buf, added in rank order, in one of two forms:
 * gathered, one all-gather of every rank's buf (N x n elements received a rank), or sliced, a
 * reduce-scatter by MPI_Alltoallv, each rank adding one slice of the ranks' values in rank
 * order, then an all-gather of the slices (about 2 n elements a rank whatever N).  Both add the
 * same numbers in the same order: the same bits.  A long sum (4096 elements or more) over ranks
 * on several machines is sliced; the rest is gathered (on one machine the all-gather's copies
 * through shared memory measured faster than the sliced form's two collectives, docs/
 * performance.md).  The _gathered and _sliced forms are for the benchmark and tests. */
sm_status sm_dist_sum_f32(sm_dist *d, float *buf, int64_t n);
sm_status sm_dist_sum_f64(sm_dist *d, double *buf, int64_t n);
sm_status sm_dist_sum_f32_gathered(sm_dist *d, float *buf, int64_t n);
sm_status sm_dist_sum_f32_sliced(sm_dist *d, float *buf, int64_t n);
sm_status sm_dist_sum_f64_gathered(sm_dist *d, double *buf, int64_t n);
sm_status sm_dist_sum_f64_sliced(sm_dist *d, double *buf, int64_t n);
/* buf (bytes) = root's buf on every rank. */
sm_status sm_dist_bcast(sm_dist *d, void *buf, int64_t bytes, int root);
/* *v = the largest of the ranks' *v (a decision taken by all ranks at once). */
sm_status sm_dist_max_int(sm_dist *d, int *v);
/* The first error of a collective (SM_OK if none). */
static inline sm_status sm_dist_error(const sm_dist *d) { return d ? d->error : SM_OK; }
/* acc (n) += part (n), element by element: the one addition of every fixed-order sum over
 * ranks (sm_dist_sum_*) and over a single process's gradient shards (the trainer's grad_shards,
 * src/nn/), so that N ranks and one process with N shards add the same numbers the same way. */
static inline void sm_dist_add_f32(float *acc, const float *part, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] += part[i];
}
static inline void sm_dist_add_f64(double *acc, const double *part, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] += part[i];
}
/* Rows [lo, hi) of n that rank r takes: contiguous, in rank order, sizes differing by at most 1. */
static inline void sm_dist_shard(int64_t n, int r, int size, int64_t *lo, int64_t *hi) {
    *lo = n * r / size;
    *hi = n * (r + 1) / size;
}

#endif
