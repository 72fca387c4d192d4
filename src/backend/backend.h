/* backend.h - the compute backend: everything the library computes goes through an ops table.
 * What an operation means lives with its caller (layers in src/nn/, losses, search, the
 * optimiser); how it runs lives behind this interface, in a backend: src/backend/cpu/ now, a
 * device backend (CUDA) beside it later with the same table.
 *
 *  - A backend (sm_backend) is a table of operations (sm_backend_ops, generated from ops.def)
 *    and a context: its stream, its memory, the first error an operation raised.
 *  - Memory an operation reads or writes is the backend's: sm_be_alloc / sm_be_free, with
 *    sm_be_upload / sm_be_download to move data from and to the host.  For the CPU backend that
 *    is host memory (SM_BE_HOST_MEMORY: host pointers may be passed directly).
 *  - Operations may run asynchronously on the backend's stream; sm_be_sync waits for them and
 *    returns the first error since the last sync.  Each operation returns a status too.  The CPU
 *    backend runs synchronously (SM_BE_SYNC): its statuses are final and it records nothing.  An
 *    asynchronous backend also records an operation's failure in itself (sticky, like a stream
 *    error: sm_be_raise), so a caller that issues a sequence of operations (a layer's forward)
 *    may check once, with sm_be_error or sm_be_sync.
 *  - Kernels never allocate: an operation that needs scratch takes a workspace (sm_ws) the
 *    caller sized with the operation's sm_be_<name>_ws (bytes; 0: none).
 *  - Results are deterministic: every reduction has a fixed order that does not depend on the
 *    thread count.
 * All tensors are row-major float32; images are NHWC. */
#ifndef SM_BACKEND_H
#define SM_BACKEND_H
#include "simile.h"
#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Scratch memory a caller lends an operation (backend memory).  base is aligned for double. */
typedef struct sm_ws {
    void *base;
    size_t bytes;
} sm_ws;

/* The optimiser's hyper-parameters for optim_update (one segment of the parameter store):
 * SGD with momentum (PyTorch, dampening 0), Adam, AdamW (decoupled weight decay). */
typedef struct sm_optim_hyper {
    sm_optimizer kind;
    float momentum;             /* SGD */
    float beta1, beta2, eps;    /* Adam, AdamW */
    float weight_decay;
} sm_optim_hyper;

/* ---- distance tiles (the dist_tile operation): the one place that turns inner products
 * into distances, for the metric losses, k-NN search, galleries and the evaluation metrics ---- */

/* What dist_tile writes for query row i and database row j, with P = alpha <q_i, d_j>
 * (alpha folded into the sgemm, or sgemv when mq == 1):
 *   SM_K_DIST_SQL2: max(qn_i + dn_j + P, 0) with alpha = -2 (the alpha argument is ignored),
 *                   qn / dn squared norms (row_norms): |q_i|^2 + |d_j|^2 - 2 <q_i, d_j>
 *                   clamped at 0; a NaN (inf - inf on overflowing inputs) stays NaN.
 *   SM_K_DIST_DOT:  P (qn, dn unused: may be NULL).  alpha = -1 gives "smaller is closer".
 *   SM_K_DIST_COS:  P * (qn_i * dn_j), qn / dn inverse norms (row_norms with inverse):
 *                   alpha times the cosine; 0 for a zero row. */
enum { SM_K_DIST_SQL2 = 0, SM_K_DIST_DOT = 1, SM_K_DIST_COS = 2 };
/* Flags of dist_tile (or-ed): */
#define SM_K_DIST_NAN_INF 1u   /* a NaN result becomes +inf (search keys: NaN is never closest) */
#define SM_K_DIST_SELF 2u      /* SQL2 of a set against itself (D == Q, md == mq): the squared
                                * norms are not read but written into qn (mq), taken from the
                                * product's diagonal (-P_ii / 2), and out's diagonal is 0; dn is
                                * unused */
#define SM_K_DIST_RECOMPUTE 4u /* SQL2: where the Gram form cancels, qn_i + dn_j + P below
                                * 1e-2 (qn_i + dn_j), the entry is recomputed as
                                * sum_k (q_ik - d_jk)^2 in double (then clamped, as above) */
#define SM_K_DIST_SMALL 8u     /* plain float loops instead of BLAS (tiny problems, where the
                                * call costs more than the work) */
/* One entry of the tile from its product p = alpha <q_i, d_j> and the norms a = qn_i, b = dn_j:
 * the elementwise pass of dist_tile (without SELF and RECOMPUTE), for a consumer that
 * fuses it into its own pass over a tile of products (SM_K_DIST_DOT with alpha -2 for SQL2, -1
 * or 1 for COS), as the search's selection does instead of writing the tile twice. */
static inline float sm_k_dist_entry(int kind, unsigned flags, float p, float a, float b) {
    float v = p;
    if (kind == SM_K_DIST_SQL2) {
        v = (a + b) + p;
        v = v > 0.0f ? v : (v != v ? v : 0.0f); /* clamp at 0 (-0 too), NaN kept */
    } else if (kind == SM_K_DIST_COS) {
        v = p * (a * b);
    }
    return (flags & SM_K_DIST_NAN_INF) && v != v ? INFINITY : v;
}

/* k-NN selection (the knn operation): the k best database rows for each query by the tile of
 * `kind` (SQL2: smallest squared L2 distance; DOT: largest inner product; COS: largest cosine),
 * best first, ties to the lower index, query i never matching database row self_offset + i
 * when self_offset >= 0.  dist (nq, k) holds the distances (SQL2) or similarities; unfilled
 * slots have index -1 and distance +inf (SQL2) or -inf.  NaN or Inf in the database gives
 * SM_ERR_NUMERIC with nothing written; the queries are the caller's to check. */
/* knn_all: the same for every row of one set x (n, d) against all the others (the evaluation's
 * query set = reference set), with the symmetric distance tiles computed once: the results of
 * knn with q = db, nq = n, self_offset 0, but with int32 indices and in caller buffers dist / idx
 * of (n, cap) rows, cap > k + 16, which the operation also uses as candidate space (the first k of each
 * row are the result, the rest scratch).  NaN or Inf in x gives SM_ERR_NUMERIC. */

/* ---- the table ---------------------------------------------------------------------------- */
typedef struct sm_backend sm_backend;

#define SM_BE_UNPAREN(...) __VA_ARGS__
typedef struct sm_backend_ops {
    const char *name;
    /* memory: bytes of backend memory (64-byte aligned) into *ptr; free(NULL) is a no-op */
    sm_status (*alloc)(sm_backend *be, size_t bytes, void **ptr);
    void (*free)(sm_backend *be, void *ptr);
    /* copies between host and backend memory (asynchronous on the stream for a device) */
    sm_status (*upload)(sm_backend *be, void *dst, const void *src, size_t bytes);
    sm_status (*download)(sm_backend *be, void *dst, const void *src, size_t bytes);
    /* wait for every queued operation */
    sm_status (*sync)(sm_backend *be);
    /* the operations of ops.def */
#define SM_BE_OP(name, P, A) sm_status (*name)(sm_backend *be, SM_BE_UNPAREN P);
#define SM_BE_WS(name, P, A) size_t (*name##_ws)(sm_backend *be, SM_BE_UNPAREN P);
#include "backend/ops.def"
#undef SM_BE_OP
#undef SM_BE_WS
} sm_backend_ops;

/* What a backend is; the context is the backend's own. */
#define SM_BE_HOST_MEMORY 1u /* its memory is host memory: host pointers may be passed directly */
#define SM_BE_SYNC 2u        /* operations complete before they return; statuses are final */
struct sm_backend {
    const sm_backend_ops *ops;
    unsigned caps;       /* SM_BE_* */
    void *ctx;           /* the backend's state (stream, device, pools) */
    _Atomic int err;     /* the first error an operation raised since the last sync (sticky; set
                          * once by compare-and-swap, so operations on several threads may fail) */
    char errmsg[256];    /* its message, written by the thread that set err */
};

/* The CPU backend (process-wide, always available). */
sm_backend *sm_backend_cpu(void);
/* The backend the library computes on when a caller names none (the CPU backend). */
sm_backend *sm_backend_default(void);
/* The backends built in: sm_backend_get(i) for i < sm_backend_count() (0 is the CPU backend). */
int sm_backend_count(void);
sm_backend *sm_backend_get(int i);

/* Record an operation's failure in the backend (first one kept) and in the thread's message;
 * returns status.  For backends' implementations. */
sm_status sm_be_raise(sm_backend *be, sm_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for a status whose message the thread already holds (kept as it is). */
sm_status sm_be_note(sm_backend *be, sm_status status);
/* The backend's sticky error (SM_OK if none) and its message; sm_be_clear resets it. */
static inline sm_status sm_be_error(const sm_backend *be) { return (sm_status)be->err; }
static inline const char *sm_be_errmsg(const sm_backend *be) { return be->errmsg; }
void sm_be_clear(sm_backend *be);

/* ---- dispatch: sm_be_<op>(be, ...) for every operation of ops.def ------------------------- */
static inline sm_status sm_be_alloc(sm_backend *be, size_t bytes, void **ptr) { return be->ops->alloc(be, bytes, ptr); }
static inline void sm_be_free(sm_backend *be, void *ptr) { if (ptr) be->ops->free(be, ptr); }
static inline sm_status sm_be_upload(sm_backend *be, void *dst, const void *src, size_t bytes) {
    return be->ops->upload(be, dst, src, bytes);
}
static inline sm_status sm_be_download(sm_backend *be, void *dst, const void *src, size_t bytes) {
    return be->ops->download(be, dst, src, bytes);
}
/* Wait for the stream; returns and clears the sticky error. */
sm_status sm_be_sync(sm_backend *be);
#define SM_BE_OP(name, P, A) \
    static inline sm_status sm_be_##name(sm_backend *be, SM_BE_UNPAREN P) { return be->ops->name(be, SM_BE_UNPAREN A); }
#define SM_BE_WS(name, P, A) \
    static inline size_t sm_be_##name##_ws(sm_backend *be, SM_BE_UNPAREN P) { return be->ops->name##_ws(be, SM_BE_UNPAREN A); }
#include "backend/ops.def"
#undef SM_BE_OP
#undef SM_BE_WS

#endif
