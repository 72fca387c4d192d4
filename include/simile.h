/* simile.h - the one public header of simile, a C library for deep metric learning.
 *
 * Conventions (read once, they hold for every function below):
 *  - Every fallible function returns an sm_status; SM_OK (0) is success.  On failure a
 *    human-readable message is available from sm_errmsg() (per thread) and, for functions that
 *    take a handle, from that handle's *_errmsg() as well.  Out-parameters are left untouched
 *    (constructors set *out to NULL) on failure.
 *  - The library never calls exit() or abort() on user input; bad input is an error status.
 *  - Handles are opaque; constructors take an out-parameter; every sm_*_free(NULL) is a no-op.
 *  - Arrays are row-major float32.  Images are (n, h, w, c) "NHWC"; embeddings are (n, d);
 *    labels are int32.  Output buffers are owned by the caller unless stated otherwise.
 *  - A handle may be used by one thread at a time; different handles may be used concurrently.
 */
#ifndef SIMILE_H
#define SIMILE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SM_VERSION_MAJOR 0
#define SM_VERSION_MINOR 1
#define SM_VERSION_PATCH 0
#define SM_VERSION_STRING "0.1.0"

/* ======================================================================================== */
/* Status and errors                                                                          */
/* ======================================================================================== */

typedef enum sm_status {
    SM_OK = 0,
    SM_ERR_INVALID = 1,     /* an argument is invalid (NULL, zero size, bad option value)    */
    SM_ERR_NOMEM = 2,       /* an allocation failed                                          */
    SM_ERR_IO = 3,          /* a file could not be opened, read, written, synced or renamed  */
    SM_ERR_FORMAT = 4,      /* a file is malformed, truncated or fails its checksum          */
    SM_ERR_RANGE = 5,       /* a value is out of range (a label, a class id, a size limit)   */
    SM_ERR_SPEC = 6,        /* a model spec could not be parsed or does not fit its input    */
    SM_ERR_NUMERIC = 7,     /* NaN or Inf in input data or during training                   */
    SM_ERR_MISMATCH = 8,    /* dimensions, models or files do not match each other           */
    SM_ERR_NOTFOUND = 9,    /* a named item (class, item id, tensor) does not exist          */
    SM_ERR_UNSUPPORTED = 10 /* the operation is not supported in this build or for this kind */
} sm_status;

/* Short static description of a status code ("invalid argument", ...).  Never NULL. */
const char *sm_strerror(sm_status status);

/* Detailed message of the last failure in the calling thread ("train-images.gz: bad magic
 * 0x00000802, expected 0x00000803").  Empty string if none.  The pointer is valid until the next
 * simile call in this thread. */
const char *sm_errmsg(void);

/* Library version string, e.g. "0.1.0". */
const char *sm_version(void);

/* Number of threads used by compute kernels (OpenMP and BLAS).  n <= 0 restores the default
 * (all cores).  Affects the whole process. */
void sm_set_num_threads(int n);
int sm_get_num_threads(void);

/* ======================================================================================== */
/* Datasets: images (n, h, w, c) in float with int32 labels                                  */
/* ======================================================================================== */

typedef struct sm_dataset sm_dataset;

/* Load an IDX image file (magic 0x00000803, unsigned bytes, 3 dims: n, h, w) and its IDX label
 * file (0x00000801, n bytes), each plain or gzip-compressed (detected by content).  Pixels are
 * scaled to [0, 1]; c = 1.  Every header field and length is validated before allocating.
 * Errors: SM_ERR_IO (missing/unreadable), SM_ERR_FORMAT (bad magic, truncated, count mismatch,
 * trailing bytes), SM_ERR_RANGE (more than 2^31 images or absurd dimensions). */
sm_status sm_dataset_load_idx(sm_dataset **out, const char *images_path, const char *labels_path);

/* Make a dataset from caller arrays (copied).  x is (n, h, w, c); labels (n) must be >= 0.
 * Errors: SM_ERR_INVALID, SM_ERR_RANGE (negative label), SM_ERR_NUMERIC (NaN/Inf in x). */
sm_status sm_dataset_from_arrays(sm_dataset **out, const float *x, const int32_t *labels,
                                 int64_t n, int h, int w, int c);

void sm_dataset_free(sm_dataset *ds);

int64_t sm_dataset_size(const sm_dataset *ds);
void sm_dataset_shape(const sm_dataset *ds, int *h, int *w, int *c);
/* Largest label + 1 (0 for an empty dataset). */
int sm_dataset_num_classes(const sm_dataset *ds);
/* Borrowed pointers into the dataset, (n, h, w, c) and (n); valid until the dataset is modified
 * or freed. */
const float *sm_dataset_images(const sm_dataset *ds);
const int32_t *sm_dataset_labels(const sm_dataset *ds);

/* Keep only the samples whose label is in classes[0..nclasses).  Labels are kept as they are.
 * Errors: SM_ERR_INVALID (empty list), SM_ERR_RANGE (a class with no sample: an empty class). */
sm_status sm_dataset_filter_classes(sm_dataset *ds, const int32_t *classes, int nclasses);

/* x = (x - mean) / std on every value.  Errors: SM_ERR_INVALID (std <= 0 or not finite). */
sm_status sm_dataset_normalize(sm_dataset *ds, float mean, float std);

/* New dataset with the first `per_class` samples of each class present in `ds`, in file order.
 * Errors: SM_ERR_RANGE if some class has fewer than per_class samples. */
sm_status sm_dataset_first_per_class(sm_dataset **out, const sm_dataset *ds, int per_class);

/* Parse a class list such as "0-4", "5,7,9" or "0-2,8" into classes (capacity max).  Returns
 * the count in *n.  Errors: SM_ERR_INVALID (syntax), SM_ERR_RANGE (too many, negative). */
sm_status sm_parse_class_list(const char *text, int32_t *classes, int max, int *n);

/* ======================================================================================== */
/* Models: a text spec of layers, one parameter block                                        */
/* ======================================================================================== */

typedef struct sm_model sm_model;

/* Build a network from a spec for inputs of shape (h, w, c), parameters initialised from seed
 * (He-normal for conv/fc, BN gamma 1 beta 0).  `spec` is either a built-in name ("cnn-s",
 * "cnn-m", "mlp") or layer text, one layer per line or separated by ';' (docs/model-spec.md):
 *     conv 32 k=3 s=1 p=1 bias=0 ; bn ; relu ; maxpool k=2 ; gap ; fc 64 ; l2norm
 * Errors: SM_ERR_SPEC (unknown layer, bad option, shapes that do not fit, too many layers),
 * SM_ERR_INVALID, SM_ERR_NOMEM. */
sm_status sm_model_create(sm_model **out, const char *spec, int h, int w, int c, uint64_t seed);

void sm_model_free(sm_model *m);

/* Last error message on this model handle ("" if none).  Valid until the next call on m. */
const char *sm_model_errmsg(const sm_model *m);

/* The expanded layer spec text (owned by m). */
const char *sm_model_spec(const sm_model *m);
void sm_model_input_shape(const sm_model *m, int *h, int *w, int *c);
int sm_model_embedding_dim(const sm_model *m);
int64_t sm_model_num_params(const sm_model *m);
/* Number of classes of the model's classifier head (0 if it has none). */
int sm_model_num_classes(const sm_model *m);
/* Name of the loss the model was trained with ("" if never trained). Owned by m. */
const char *sm_model_loss_name(const sm_model *m);
/* CRC-32 of the model's parameters and spec; identifies the model in a gallery. */
uint32_t sm_model_fingerprint(const sm_model *m);
/* A printable summary of the layers with output shapes and parameter counts (owned by m). */
const char *sm_model_summary(sm_model *m);

/* Embeddings of n inputs x (n, h, w, c) into emb (n, d), in inference mode (batch norm uses its
 * running statistics).  Batched internally; threads as set by sm_set_num_threads.
 * Errors: SM_ERR_INVALID, SM_ERR_NUMERIC (NaN/Inf in x), SM_ERR_NOMEM. */
sm_status sm_model_embed(sm_model *m, const float *x, int64_t n, float *emb);

/* Class logits (n, C) of the model's classifier head applied to the embeddings of x.
 * Errors: SM_ERR_UNSUPPORTED if the model has no head, and as sm_model_embed. */
sm_status sm_model_logits(sm_model *m, const float *x, int64_t n, float *logits);

/* Save to path: magic "SMILEMDL", format version, spec, named tensors with shapes, CRC-32.
 * Written to path.tmp.<pid>, fsynced, renamed over path: a crash leaves the old file intact.
 * Errors: SM_ERR_IO. */
sm_status sm_model_save(sm_model *m, const char *path);

/* Load a model file written by sm_model_save; every field and the checksum are verified.
 * Errors: SM_ERR_IO (missing/unreadable), SM_ERR_FORMAT (bad magic, version, truncation,
 * checksum, shapes that do not match the spec). */
sm_status sm_model_load(sm_model **out, const char *path);

/* ======================================================================================== */
/* Classification losses on logits (each callable on its own)                                */
/* ======================================================================================== */

/* Softmax cross-entropy, mean over the n rows of logits z (n, c) with integer labels:
 *   L = mean_i [ logsumexp(z_i) - z_i,y_i ],  dL/dz = (softmax(z) - onehot(y)) / n.
 * With label_smoothing e in [0, 1) the target is (1 - e) onehot + e / c (PyTorch semantics).
 * dz (n, c) may be NULL; it may not alias z.  Errors: SM_ERR_INVALID, SM_ERR_RANGE (label
 * outside [0, c)), SM_ERR_NUMERIC (non-finite logit). */
sm_status sm_softmax_cross_entropy(const float *z, const int32_t *labels, int n, int c,
                                   float label_smoothing, float *loss, float *dz);

/* Softmax cross-entropy with soft targets t (n, c), each row a probability vector:
 *   L = mean_i [ -sum_j t_ij log softmax(z_i)_j ],  dL/dz = (softmax(z) - t) / n.
 * Errors: SM_ERR_INVALID (a row of t negative or not summing to 1 within 1e-3). */
sm_status sm_softmax_cross_entropy_soft(const float *z, const float *t, int n, int c,
                                        float *loss, float *dz);

/* The seed's head gradients for logits z = f W^T + b, f (n, d), W (c, d), b (c) or NULL:
 *   dL/df_i = (sum_j p_ij W_j - W_y) / n,  dL/dW_j = sum_i (p_ij - y_ij) f_i / n,
 *   dL/db_j = sum_i (p_ij - y_ij) / n.  Any of df (n, d), dW (c, d), db (c) may be NULL. */
sm_status sm_softmax_head(const float *f, const float *W, const float *b, const int32_t *labels,
                          int n, int d, int c, float *loss, float *df, float *dW, float *db);

/* Binary cross-entropy from logits, mean over the m values (PyTorch BCEWithLogitsLoss):
 *   L = mean [ max(z,0) - z t + log(1 + exp(-|z|)) ],  dL/dz = (sigmoid(z) - t) / m.
 * Targets t in [0, 1].  dz may be NULL. */
sm_status sm_bce_with_logits(const float *z, const float *t, int64_t m, float *loss, float *dz);

/* Multi-class focal loss (Lin et al. 2017) on softmax probabilities, mean over rows:
 *   L = mean_i [ -alpha (1 - p_t)^gamma log p_t ],  p_t = softmax(z_i)_y_i.
 * gamma = 0, alpha = 1 is cross-entropy.  dz may be NULL. */
sm_status sm_focal_loss(const float *z, const int32_t *labels, int n, int c, float alpha,
                        float gamma, float *loss, float *dz);

/* Information helpers on probability vectors of length n (natural log, 0 log 0 = 0):
 * H(p), KL(p || q), and the cross-entropy H(p, q) = H(p) + KL(p || q).  Return NaN if q has a
 * zero where p does not (KL is infinite) or if an argument is invalid. */
double sm_entropy(const float *p, int n);
double sm_kl_divergence(const float *p, const float *q, int n);
double sm_cross_entropy(const float *p, const float *q, int n);

/* ======================================================================================== */
/* Losses as objects: one interface for every loss, classification and metric                */
/* ======================================================================================== */

typedef struct sm_loss sm_loss;

/* Create a loss by name with options "key=value,key=value" (NULL or "" for defaults):
 *   "softmax"   classifier head (W, b) on the embedding + cross-entropy; classes=C (required),
 *               smoothing=0
 *   "focal"     the same head with the focal loss; classes=C, alpha=1, gamma=2
 *   (metric losses are added by the metric-learning module; see docs/losses.md)
 * Losses with parameters (a classifier head, class weights, proxies) own them; they are trained
 * alongside the network by sm_train and stored in the model file.
 * Errors: SM_ERR_NOTFOUND (unknown name), SM_ERR_INVALID (bad option). */
sm_status sm_loss_create(sm_loss **out, const char *name, const char *options, int dim,
                         uint64_t seed);
void sm_loss_free(sm_loss *loss);
const char *sm_loss_errmsg(const sm_loss *loss);
const char *sm_loss_name(const sm_loss *loss);

/* Loss of embeddings emb (n, d) with labels (n); grad (n, d) receives dL/demb (may be NULL).
 * If the loss has parameters, their gradient is accumulated into the loss's own gradient
 * buffer (see sm_loss_params).  A batch with no valid pair or triplet gives loss 0 and a zero
 * gradient.  Errors: SM_ERR_MISMATCH (d differs from the loss's dim), SM_ERR_RANGE (label out
 * of the head's range), SM_ERR_NUMERIC (non-finite embedding). */
sm_status sm_loss_compute(sm_loss *loss, const float *emb, const int32_t *labels, int n, int d,
                          float *value, float *grad);

/* The i-th registered loss (i from 0): its name and a one-line description of its formula and
 * options (static strings).  SM_ERR_NOTFOUND past the last one. */
sm_status sm_loss_describe(int i, const char **name, const char **help);

/* The loss's trainable parameters as one flat block and its gradient block (both owned by the
 * loss, length *count; NULL and 0 if it has none).  Valid until the loss is freed. */
void sm_loss_params(sm_loss *loss, float **params, float **grads, int64_t *count);

/* ======================================================================================== */
/* Miners and distances (metric-learning module)                                             */
/* ======================================================================================== */
/* Miners choose the informative tuples of a batch, as pytorch-metric-learning's miners.  The
 * metric losses run them internally (their miner= option); these entry points expose them for
 * inspection.  Pairs and triplets are directed: (i, j) and (j, i) are both listed, in row-major
 * order (anchor ascending, then the other index ascending). */

/* Triplet miners (anchor a, positive p with y_p = y_a and p != a, negative n with y_n != y_a),
 * on L2 distances of L2-normalised embeddings, m(a,p,n) = d(a,n) - d(a,p):
 *   SM_TRIPLETS_ALL       every valid triplet
 *   SM_TRIPLETS_HARD      batch-hard: per anchor the farthest positive and the nearest negative
 *                         (first index on ties); anchors lacking either are skipped
 *   SM_TRIPLETS_SEMIHARD  0 < m <= margin (PML TripletMarginMiner "semihard", margin 0.2)
 *   SM_TRIPLETS_EASY      m > margin (PML "easy") */
typedef enum sm_triplet_miner {
    SM_TRIPLETS_ALL = 0, SM_TRIPLETS_HARD = 1, SM_TRIPLETS_SEMIHARD = 2, SM_TRIPLETS_EASY = 3
} sm_triplet_miner;

/* Pair miners:
 *   SM_PAIRS_ALL       every positive pair (i != j) and every negative pair
 *   SM_PAIRS_MARGIN    PML PairMarginMiner on L2 distances of normalised embeddings: positives
 *                      with d > pos_margin, negatives with d < neg_margin (PML: 0.2, 0.8)
 *   SM_PAIRS_MULTISIM  PML MultiSimilarityMiner on cosine similarity s, epsilon = pos_margin
 *                      (PML 0.1; neg_margin unused): positive (i,j) kept if
 *                      s_ij - eps < max_{k neg of i} s_ik, negative (i,k) kept if
 *                      s_ik + eps > min_{j pos of i} s_ij; nothing if the batch has no
 *                      positive or no negative pair */
typedef enum sm_pair_miner {
    SM_PAIRS_ALL = 0, SM_PAIRS_MARGIN = 1, SM_PAIRS_MULTISIM = 2
} sm_pair_miner;

/* Mine triplets of emb (n, d) with labels (n) into triplets (capacity, 3) as rows (a, p, n).
 * *count receives the number of triplets found.  triplets may be NULL with capacity 0 to ask
 * for the count only.  Memory O(n^2) whatever the count.  Errors: SM_ERR_INVALID (NULL, n < 0,
 * d < 1, bad kind, margin not finite), SM_ERR_NUMERIC (non-finite embedding), SM_ERR_RANGE
 * (more than capacity triplets: *count is still set to the number needed), SM_ERR_NOMEM. */
sm_status sm_mine_triplets(const float *emb, const int32_t *labels, int n, int d,
                           sm_triplet_miner kind, float margin, int32_t *triplets,
                           int64_t capacity, int64_t *count);

/* Mine positive pairs into pos (pos_capacity, 2) and negative pairs into neg (neg_capacity, 2),
 * counts in *npos and *nneg; either array may be NULL with capacity 0 to count only.
 * Errors as sm_mine_triplets (SM_ERR_RANGE if either capacity is too small). */
sm_status sm_mine_pairs(const float *emb, const int32_t *labels, int n, int d, sm_pair_miner kind,
                        float pos_margin, float neg_margin, int32_t *pos, int64_t pos_capacity,
                        int64_t *npos, int32_t *neg, int64_t neg_capacity, int64_t *nneg);

/* Distance matrix D (n, n) of emb (n, d): kind "sqeuclidean", "euclidean", "cosine" or "dot",
 * rows L2-normalised first if normalize (always for cosine).  Errors: SM_ERR_INVALID. */
sm_status sm_distance_matrix(const float *emb, int n, int d, const char *kind, int normalize,
                             float *D);

/* ======================================================================================== */
/* Retrieval and verification metrics                                                        */
/* ======================================================================================== */
/* Similarity measure for search and retrieval (declared here because the metrics below use it;
 * the k-NN search section follows).  SM_METRIC_L2 ranks by squared Euclidean distance, smallest
 * first; SM_METRIC_IP by inner product <x, y> and SM_METRIC_COSINE by <x, y> / (|x| |y|), both
 * largest first (a zero vector has cosine 0 with everything). */
typedef enum sm_metric { SM_METRIC_L2 = 0, SM_METRIC_IP = 1, SM_METRIC_COSINE = 2 } sm_metric;

/* Retrieval quality of embeddings against their own labels (pytorch-metric-learning's
 * AccuracyCalculator with query = reference set).  Every sample is a query against all other
 * samples (itself excluded); R = number of other samples of its class.  Averages are over the
 * queries whose class has at least one other sample; the others are skipped and counted. */
typedef struct sm_retrieval_result {
    double precision_at_1;   /* fraction of queries whose nearest neighbour has their class    */
    double r_precision;      /* mean of (same-class items among the top R) / R                 */
    double map_at_r;         /* mean of (1/R) sum_{i<=R} P(i) rel(i), P(i) precision at rank i */
    double recall_at_k[4];   /* k = 1, 2, 4, 8: fraction with a same-class item in the top k   */
    double nmi;              /* NMI(labels, k-means clusters), k = number of classes           */
    int64_t num_queries;     /* queries evaluated                                              */
    int64_t num_skipped;     /* queries skipped: the only sample of their class                */
    int num_classes;         /* distinct labels                                                */
} sm_retrieval_result;

/* Compute the retrieval metrics above for embeddings emb (n, d) with labels (n), ranking
 * neighbours by `metric`.  Neighbours are searched exactly in blocks of queries with a partial
 * selection of the top max(R_max, 8) per query, so memory stays O(n d + block * n).  Ties in
 * the ranking go to the lower index.  NMI clusters the embeddings (unit-normalised first for
 * SM_METRIC_COSINE) with k-means (k-means++ init from a fixed seed, at most 50 Lloyd iterations,
 * deterministic for a given thread count) and scores it with sm_nmi.  If every query is
 * skipped the ranking metrics are 0.
 * Errors: SM_ERR_INVALID (NULL, n < 2, d <= 0, bad metric), SM_ERR_NUMERIC (NaN/Inf in emb),
 * SM_ERR_NOMEM. */
sm_status sm_retrieval_metrics(const float *emb, const int32_t *labels, int64_t n, int d,
                               sm_metric metric, sm_retrieval_result *out);

/* Normalised mutual information of two labelings a and b (n) of arbitrary int32 values, with
 * arithmetic-mean normalisation: NMI = MI / ((H(a) + H(b)) / 2), natural log, as scikit-learn's
 * normalized_mutual_info_score (1 if both labelings are a single cluster, 0 if MI is 0).
 * Errors: SM_ERR_INVALID (NULL, n <= 0), SM_ERR_NOMEM. */
sm_status sm_nmi(const int32_t *a, const int32_t *b, int64_t n, double *out);

/* Verification from pair scores: scores (n) with genuine (n) flags (1 = same identity, 0 =
 * different).  Higher score = more similar; a pair is accepted at threshold t when score >= t.
 * FAR(t) = accepted impostors / impostors, TAR(t) = accepted genuines / genuines.  Every
 * function needs at least one genuine and one impostor pair.
 * Common errors: SM_ERR_INVALID (NULL, n <= 0, a flag other than 0/1, no genuine or no impostor
 * pair), SM_ERR_NUMERIC (NaN/Inf score), SM_ERR_NOMEM. */

/* ROC curve: one point per distinct score, thresholds decreasing, preceded by the point
 * (FAR 0, TAR 0, threshold +inf); the last point is (1, 1).  This is scikit-learn's
 * roc_curve(genuine, scores, drop_intermediate=False).  far, tar, thresholds each have room for
 * cap points; *count receives the number of points (at most n + 1).  With far, tar and
 * thresholds all NULL only *count is computed.  Errors: SM_ERR_RANGE (cap < count). */
sm_status sm_roc(const float *scores, const int8_t *genuine, int64_t n, double *far, double *tar,
                 float *thresholds, int64_t cap, int64_t *count);

/* Area under the ROC curve (trapezoidal, ties counted as half: scikit-learn roc_auc_score). */
sm_status sm_roc_auc(const float *scores, const int8_t *genuine, int64_t n, double *auc);

/* Equal error rate: where FAR = 1 - TAR, linearly interpolated between the two ROC points where
 * FAR - FRR changes sign.  *threshold (may be NULL) gets the threshold of the first ROC point
 * at which FAR >= FRR. */
sm_status sm_eer(const float *scores, const int8_t *genuine, int64_t n, double *eer,
                 float *threshold);

/* TAR at a FAR target (e.g. 1e-2, 1e-3, 1e-4): the highest TAR over the ROC points with
 * FAR <= far_target, with the threshold of that point (may be NULL; +inf when no pair can be
 * accepted).  Errors also: SM_ERR_INVALID (far_target outside [0, 1]). */
sm_status sm_tar_at_far(const float *scores, const int8_t *genuine, int64_t n, double far_target,
                        double *tar, float *threshold);

/* Mean Euclidean (not squared) distance over unordered same-class pairs (*mean_intra) and
 * different-class pairs (*mean_inter) of embeddings emb (n, d).  Exact, computed with blocked
 * matrix products in O(n d) memory.  A mean over no pair is NaN.
 * Errors: SM_ERR_INVALID (NULL, n < 2, d <= 0), SM_ERR_NUMERIC (NaN/Inf), SM_ERR_NOMEM. */
sm_status sm_intra_inter_distances(const float *emb, const int32_t *labels, int64_t n, int d,
                                   double *mean_intra, double *mean_inter);

/* ======================================================================================== */
/* Exact k-nearest-neighbour search                                                          */
/* ======================================================================================== */
/* Exact k nearest neighbours of each query q (nq, d) in the database db (n, d) (sm_metric is
 * declared in the metrics section above), after FAISS IndexFlat: precomputed norms, tiled
 * matrix products, |x|^2 + |y|^2 - 2<x, y> clamped at 0 for L2, a top-1 path for k = 1, heaps
 * for small k and a partial selection for large k; threaded with OpenMP and OpenBLAS.
 * dist (nq, k) and idx (nq, k) receive each query's results best first (smallest squared L2
 * distance, largest inner product or cosine); ties go to the lower database index.  Slots that
 * cannot be filled (k > n) get idx -1 and dist +inf (L2) or -inf (IP, cosine).  With exclude_self
 * non-zero, query i never matches database row i (for q == db, all-vs-all evaluation).
 * n = 0 or nq = 0 is allowed.  Errors: SM_ERR_INVALID (NULL buffer, n < 0, nq < 0, d <= 0,
 * k <= 0, bad metric), SM_ERR_NUMERIC (NaN/Inf in db or q), SM_ERR_NOMEM. */
sm_status sm_knn_search(const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                        sm_metric metric, int exclude_self, float *dist, int64_t *idx);

/* ======================================================================================== */
/* Training                                                                                  */
/* ======================================================================================== */

typedef enum sm_optimizer { SM_OPT_SGD = 0, SM_OPT_ADAM = 1, SM_OPT_ADAMW = 2 } sm_optimizer;
typedef enum sm_schedule { SM_SCHED_CONSTANT = 0, SM_SCHED_STEP = 1, SM_SCHED_COSINE = 2 } sm_schedule;

/* Progress report passed to the training callback after every batch and at each epoch end. */
typedef struct sm_train_progress {
    int epoch, epochs;          /* 1-based epoch */
    int64_t step, steps_per_epoch; /* 1-based step within the epoch */
    double loss;                /* running mean loss of this epoch so far */
    double images_per_sec;      /* this epoch so far */
    double seconds;             /* elapsed in this epoch */
    float lr;                   /* current learning rate */
    int epoch_done;             /* 1 on the final call of an epoch */
} sm_train_progress;

typedef struct sm_train_config {
    int epochs;              /* default 5 */
    int batch_size;          /* default 128 */
    sm_optimizer optimizer;  /* default SM_OPT_ADAM */
    float lr;                /* default 1e-3 */
    float momentum;          /* SGD momentum, default 0.9 */
    float weight_decay;      /* L2 (SGD, Adam) or decoupled (AdamW), default 0 (AdamW 0.01) */
    float beta1, beta2, eps; /* Adam, defaults 0.9, 0.999, 1e-8 */
    sm_schedule schedule;    /* default constant */
    int step_epochs;         /* step schedule: multiply lr by step_gamma every step_epochs */
    float step_gamma;
    int per_class;           /* P x K sampling with per_class images a class; 0 = shuffled */
    int aug_shift;           /* random shift of up to aug_shift pixels (zero padded), 0 = off */
    int aug_flip;            /* random horizontal flip */
    uint64_t seed;           /* default 1 */
    /* Called after every batch; return non-zero to stop training (sm_train then returns
     * SM_OK with the epochs done so far).  May be NULL. */
    int (*progress)(const sm_train_progress *p, void *user);
    void *user;
} sm_train_config;

/* Fill cfg with the defaults above. */
void sm_train_config_default(sm_train_config *cfg);

/* Train model m on ds with loss.  The loss's parameters (a classifier head) are trained too and
 * copied into the model at the end, so that sm_model_logits and sm_model_save include them.
 * Same seed, data, config and thread count give bit-identical results.
 * Errors: SM_ERR_INVALID (bad config), SM_ERR_MISMATCH (data shape differs from the model's
 * input), SM_ERR_NUMERIC (loss became NaN/Inf: the step is named in the message and the model
 * is left as it was after the last good step), SM_ERR_NOMEM. */
sm_status sm_train(sm_model *m, sm_loss *loss, const sm_dataset *ds, const sm_train_config *cfg);

#ifdef __cplusplus
}
#endif
#endif /* SIMILE_H */
