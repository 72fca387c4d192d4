/* dist.c - the process group (dist.h): MPI_COMM_WORLD when built with MPI and started by an MPI
 * launcher, else a group of one.  Collectives are MPI_Allgather(v), MPI_Alltoallv and MPI_Bcast
 * on bytes; sums are formed from the gathered contributions in rank order (not MPI_Allreduce,
 * whose order of addition MPI leaves open), so every rank computes the same bits: a sum
 * all-gathers every rank's values, or (long, over several machines) is a reduce-scatter by hand
 * (each rank adds one slice of the ranks' values, in rank order) and an all-gather of the
 * slices.  The MPI_Allreduce of init is a minimum of integers (exact in any order). */
#include "dist/dist.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifdef SIMILE_HAVE_MPI
#include <mpi.h>
#endif

int sm_dist_mpi_built(void) {
#ifdef SIMILE_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

#ifdef SIMILE_HAVE_MPI
/* Started by mpirun/mpiexec (Open MPI, MPICH's Hydra, PMIx-based launchers)? */
static int under_launcher(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}
#else
/* The number of processes a launcher says it started (1 if none says). */
static long launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atol(v) > 1) return atol(v);
    }
    return 1;
}
#endif

sm_status sm_dist_init(sm_dist **out) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_dist_init: out is NULL");
    *out = NULL;
    sm_dist *d = sm_calloc(1, sizeof *d);
    if (!d) return SM_ERR_NOMEM;
    d->rank = 0;
    d->size = 1;
#ifdef SIMILE_HAVE_MPI
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited || under_launcher()) {
        if (!inited) {
            int provided = 0;
            /* OpenMP threads compute, only the calling thread communicates */
            if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
                sm_free(d);
                return sm_fail(SM_ERR_IO, "sm_dist_init: MPI_Init_thread failed");
            }
            d->owns_mpi = 1;
        }
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->size);
        d->mpi = 1;
        MPI_Comm node; /* the ranks that share this machine's memory */
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
            int local = 0, all = 0;
            MPI_Comm_size(node, &local);
            MPI_Comm_free(&node);
            /* the same answer on every rank: one node only if every rank's node holds every rank */
            MPI_Allreduce(&local, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
            d->one_node = all == d->size;
        }
    }
#else
    long np = launched_size();
    if (np > 1) { /* N copies that would each train alone and write the same files */
        sm_free(d);
        return sm_fail(SM_ERR_INVALID, "started as one of %ld processes, but simile was built without MPI "
                                       "(rebuild with -DSIMILE_MPI=ON and libopenmpi-dev)", np);
    }
#endif
    *out = d;
    return SM_OK;
}

void sm_dist_free(sm_dist *d) {
    if (!d) return;
#ifdef SIMILE_HAVE_MPI
    if (d->owns_mpi) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
#endif
    sm_free(d->scratch);
    sm_free(d);
}

int sm_dist_rank(const sm_dist *d) { return d ? d->rank : 0; }
int sm_dist_size(const sm_dist *d) { return d ? d->size : 1; }
double sm_dist_comm_seconds(const sm_dist *d) { return d ? d->comm_s : 0; }
const char *sm_dist_errmsg(const sm_dist *d) { return d ? d->errmsg : ""; }

#ifdef SIMILE_HAVE_MPI
/* A failed collective: the first one is kept on the group. */
static sm_status dist_fail(sm_dist *d, const char *what, int rc) {
    sm_status st = sm_fail(SM_ERR_IO, "MPI %s failed on rank %d of %d (error %d)", what, d->rank, d->size, rc);
    if (!d->error) { d->error = st; sm_errmsg_copy(d->errmsg); }
    return st;
}
#endif

static sm_status check_bytes(sm_dist *d, int64_t bytes, const char *what) {
    if (bytes < 0 || bytes > INT_MAX) {
        sm_status st = sm_fail(SM_ERR_RANGE, "MPI %s of %lld bytes: at most %d bytes a rank in one call", what,
                               (long long)bytes, INT_MAX);
        if (!d->error) { d->error = st; sm_errmsg_copy(d->errmsg); }
        return st;
    }
    return SM_OK;
}

sm_status sm_dist_allgather(sm_dist *d, const void *send, int64_t bytes, void *recv) {
    sm_status st = check_bytes(d, bytes, "allgather");
    if (st) return st;
    if (d->size == 1 || !d->mpi) {
        if (bytes && recv != send) memmove(recv, send, (size_t)bytes);
        return SM_OK;
    }
#ifdef SIMILE_HAVE_MPI
    double t0 = sm_now();
    int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    d->comm_s += sm_now() - t0;
    if (rc != MPI_SUCCESS) return dist_fail(d, "allgather", rc);
#endif
    return SM_OK;
}

sm_status sm_dist_allgatherv(sm_dist *d, const void *send, const int64_t *counts, void *recv) {
    int64_t total = 0;
    for (int r = 0; r < d->size; r++) {
        sm_status st = check_bytes(d, counts[r], "allgatherv");
        if (st) return st;
        total += counts[r];
    }
    sm_status st = check_bytes(d, total, "allgatherv");
    if (st) return st;
    if (d->size == 1 || !d->mpi) {
        if (counts[0] && recv != send) memmove(recv, send, (size_t)counts[0]);
        return SM_OK;
    }
#ifdef SIMILE_HAVE_MPI
    int *cnt = sm_alloc((size_t)d->size, 2 * sizeof(int));
    if (!cnt) return SM_ERR_NOMEM;
    int *displ = cnt + d->size, off = 0;
    for (int r = 0; r < d->size; r++) { cnt[r] = (int)counts[r]; displ[r] = off; off += cnt[r]; }
    double t0 = sm_now();
    int rc = MPI_Allgatherv(send, cnt[d->rank], MPI_BYTE, recv, cnt, displ, MPI_BYTE, MPI_COMM_WORLD);
    d->comm_s += sm_now() - t0;
    sm_free(cnt);
    if (rc != MPI_SUCCESS) return dist_fail(d, "allgatherv", rc);
#endif
    return SM_OK;
}

/* The group's scratch, grown to at least bytes. */
static void *scratch(sm_dist *d, size_t bytes) {
    if (d->scratch_bytes >= bytes) return d->scratch;
    void *p = sm_alloc(bytes, 1);
    if (!p) return NULL;
    sm_free(d->scratch);
    d->scratch = p;
    d->scratch_bytes = bytes;
    return p;
}

/* Long sums (at least this many elements) over several machines: a reduce-scatter and an
 * all-gather, each rank adding one slice; shorter ones (batch norm's sums), and every sum on one
 * machine, are all-gathered whole, one collective (dist.h). */
#define SUM_SLICED_MIN 4096

/* A failed allocation for a collective: kept on the group. */
static sm_status dist_nomem(sm_dist *d) {
    if (!d->error) { d->error = SM_ERR_NOMEM; sm_errmsg_copy(d->errmsg); }
    return SM_ERR_NOMEM;
}

/* buf (n) summed in rank order, with per-rank traffic of about 2 n elements: rank r receives
 * slice r (sm_dist_shard of n) of every rank's buf (an all-to-all: MPI_Alltoallv moves bytes and
 * adds nothing), adds those N slices in rank order (the same additions as the all-gather path:
 * the same bits), and the summed slices are all-gathered in place. */
static sm_status sum_sliced(sm_dist *d, void *buf, int64_t n, size_t es,
                            void (*add)(void *acc, const void *part, int64_t n)) {
#ifdef SIMILE_HAVE_MPI
    const int N = d->size, r = d->rank;
    int64_t lo_r, hi_r;
    sm_dist_shard(n, r, N, &lo_r, &hi_r);
    const int64_t len = hi_r - lo_r;
    sm_status st = check_bytes(d, n * (int64_t)es, "sliced sum");
    if (st) return st;
    char *recv = scratch(d, (size_t)N * (size_t)(len ? len : 1) * es); /* (N, len): slice r of each rank */
    int *cnt = sm_alloc((size_t)N, 4 * sizeof(int));
    if (!recv || !cnt) { sm_free(cnt); return dist_nomem(d); }
    int *displ = cnt + N, *rcnt = cnt + 2 * N, *rdispl = cnt + 3 * N;
    for (int q = 0; q < N; q++) {
        int64_t a, z;
        sm_dist_shard(n, q, N, &a, &z);
        cnt[q] = (int)((z - a) * (int64_t)es);
        displ[q] = (int)(a * (int64_t)es);
        rcnt[q] = (int)(len * (int64_t)es);
        rdispl[q] = (int)((int64_t)q * len * (int64_t)es);
    }
    double t0 = sm_now();
    int rc = MPI_Alltoallv(buf, cnt, displ, MPI_BYTE, recv, rcnt, rdispl, MPI_BYTE, MPI_COMM_WORLD);
    d->comm_s += sm_now() - t0;
    if (rc != MPI_SUCCESS) { sm_free(cnt); return dist_fail(d, "all-to-all", rc); }
    char *mine = (char *)buf + lo_r * (int64_t)es;
    if (len) {
        memcpy(mine, recv, (size_t)len * es); /* rank 0's slice, then each next rank's added */
        for (int q = 1; q < N; q++) add(mine, recv + (size_t)q * (size_t)len * es, len);
    }
    t0 = sm_now();
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, buf, cnt, displ, MPI_BYTE, MPI_COMM_WORLD);
    d->comm_s += sm_now() - t0;
    sm_free(cnt);
    if (rc != MPI_SUCCESS) return dist_fail(d, "allgatherv", rc);
    return SM_OK;
#else
    (void)buf, (void)n, (void)es, (void)add;
    return SM_OK; /* a group of one: nothing to add */
#endif
}

static void add_f32(void *acc, const void *part, int64_t n) { sm_dist_add_f32(acc, part, n); }
static void add_f64(void *acc, const void *part, int64_t n) { sm_dist_add_f64(acc, part, n); }

#define DEFINE_SUM(NAME, T, ADD)                                                                 \
    sm_status NAME##_gathered(sm_dist *d, T *buf, int64_t n) {                                   \
        if (d->size == 1 || !d->mpi || n == 0) return SM_OK;                                     \
        T *all = scratch(d, (size_t)d->size * (size_t)n * sizeof(T)); /* (size, n) */            \
        if (!all) return dist_nomem(d);                                                          \
        sm_status st = sm_dist_allgather(d, buf, n * (int64_t)sizeof(T), all);                   \
        if (st) return st;                                                                       \
        memcpy(buf, all, (size_t)n * sizeof(T)); /* rank 0's, then each next rank's added */     \
        for (int r = 1; r < d->size; r++) sm_dist_add_##T(buf, all + (int64_t)r * n, n);        \
        return SM_OK;                                                                            \
    }                                                                                            \
    sm_status NAME##_sliced(sm_dist *d, T *buf, int64_t n) {                                     \
        if (d->size == 1 || !d->mpi || n == 0) return SM_OK;                                     \
        return sum_sliced(d, buf, n, sizeof(T), ADD);                                            \
    }                                                                                            \
    sm_status NAME(sm_dist *d, T *buf, int64_t n) {                                              \
        if (n >= SUM_SLICED_MIN && !d->one_node) return NAME##_sliced(d, buf, n);                \
        return NAME##_gathered(d, buf, n);                                                       \
    }
typedef float f32;
typedef double f64;
DEFINE_SUM(sm_dist_sum_f32, f32, add_f32)
DEFINE_SUM(sm_dist_sum_f64, f64, add_f64)

sm_status sm_dist_bcast(sm_dist *d, void *buf, int64_t bytes, int root) {
    sm_status st = check_bytes(d, bytes, "broadcast");
    if (st) return st;
    if (d->size == 1 || !d->mpi || bytes == 0) return SM_OK;
#ifdef SIMILE_HAVE_MPI
    double t0 = sm_now();
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD);
    d->comm_s += sm_now() - t0;
    if (rc != MPI_SUCCESS) return dist_fail(d, "broadcast", rc);
#endif
    return SM_OK;
}

sm_status sm_dist_max_int(sm_dist *d, int *v) {
    if (d->size == 1 || !d->mpi) return SM_OK;
    int *all = scratch(d, (size_t)d->size * sizeof(int));
    if (!all) return SM_ERR_NOMEM;
    sm_status st = sm_dist_allgather(d, v, (int64_t)sizeof(int), all);
    if (st) return st;
    int m = all[0];
    for (int r = 1; r < d->size; r++) if (all[r] > m) m = all[r];
    *v = m;
    return SM_OK;
}

sm_status sm_dist_barrier(sm_dist *d) {
    if (!d) return sm_fail(SM_ERR_INVALID, "sm_dist_barrier: group is NULL");
    if (d->size == 1 || !d->mpi) return SM_OK;
#ifdef SIMILE_HAVE_MPI
    double t0 = sm_now();
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    d->comm_s += sm_now() - t0;
    if (rc != MPI_SUCCESS) return dist_fail(d, "barrier", rc);
#endif
    return SM_OK;
}

void sm_dist_shard_range(const sm_dist *g, int64_t n, int64_t *lo, int64_t *hi) {
    if (!g || g->size <= 1) { *lo = 0; *hi = n; return; }
    sm_dist_shard(n, g->rank, g->size, lo, hi);
}

sm_status sm_dist_allgather_rows(sm_dist *g, const float *mine, int64_t n, int64_t cols, float *all) {
    if (n < 0 || cols < 0) return sm_fail(SM_ERR_INVALID, "sm_dist_allgather_rows: %lld rows of %lld", (long long)n,
                                          (long long)cols);
    if (!g || g->size <= 1 || !g->mpi) {
        if (n && cols && all != mine) memmove(all, mine, sizeof(float) * (size_t)(n * cols));
        return SM_OK;
    }
    if (cols && n > (int64_t)INT_MAX / (int64_t)sizeof(float) / cols)
        return sm_fail(SM_ERR_RANGE, "sm_dist_allgather_rows: %lld rows of %lld floats exceed the 2^31 bytes of one "
                       "MPI gather", (long long)n, (long long)cols);
    int64_t *counts = sm_alloc((size_t)g->size, sizeof(int64_t));
    if (!counts) return SM_ERR_NOMEM;
    for (int r = 0; r < g->size; r++) {
        int64_t a, z;
        sm_dist_shard(n, r, g->size, &a, &z);
        counts[r] = (z - a) * cols * (int64_t)sizeof(float);
    }
    sm_status st = sm_dist_allgatherv(g, mine, counts, all);
    sm_free(counts);
    return st;
}

sm_status sm_dist_agree(sm_dist *g, sm_status st) {
    if (!g || g->size <= 1 || !g->mpi) return st;
    int bad = st != SM_OK;
    sm_status cst = sm_dist_max_int(g, &bad);
    if (cst) return cst;
    if (st) return st;
    return bad ? sm_fail(SM_ERR_IO, "failed on another rank (its message is on its standard error)") : SM_OK;
}
