/* simile.h - the one public header of simile, a C library for deep metric learning.
 *
 * Conventions (read once, they hold for every function below):
 *  - Every fallible function returns an sm_status; SM_OK (0) is success.  Errors, one rule:
 *    whenever a function returns a status other than SM_OK, sm_errmsg() (per thread) holds a
 *    non-empty message for it, and when its first argument is a non-NULL handle (sm_model_*,
 *    sm_train's model, sm_loss_compute, sm_gallery_*, sm_trainer_*), that handle's *_errmsg()
 *    holds the same message.  A handle's message stays until the next failure on that handle (a success does
 *    not clear it); sm_errmsg() until the next failure in the thread.  A constructor that fails
 *    leaves no handle: read sm_errmsg().  Out-parameters are left untouched (constructors set
 *    *out to NULL) on failure.
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

/* Record a formatted message (printf-style, truncated to 511 bytes) as the calling thread's
 * last failure, so that sm_errmsg() returns it, and return status: `return sm_errmsg_set(
 * SM_ERR_INVALID, "bad count %d", n);`.  For code built on simile that follows the error rule
 * above with its own functions (the comparison report, report/); the library's own functions
 * set their messages themselves.  fmt NULL records an empty message. */
sm_status sm_errmsg_set(sm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Library version string, e.g. "0.1.0". */
const char *sm_version(void);

/* Number of threads used by compute kernels (OpenMP and BLAS).  n <= 0 restores the default
 * (all cores).  Affects the whole process. */
void sm_set_num_threads(int n);
int sm_get_num_threads(void);

/* What simile computes with on this machine (filled by sm_compute_info_get). */
typedef struct sm_compute_info {
    char cpu[64];         /* the CPU's brand string, e.g. "AMD EPYC 9R14 96-Core Processor"      */
    int cpu_family;       /* x86 family and model as lscpu shows them (25 / 17 for Zen 4); 0 if  */
    int cpu_model;        /*   unknown                                                          */
    char vector_isa[16];  /* widest vector extension the CPU has and the OS enables: "AVX-512",  */
                          /*   "AVX2" (with FMA), "AVX", "SSE2" or "none"                        */
    char cpu_flags[192];  /* those extensions, space-separated, named as in /proc/cpuinfo        */
    char blas[128];       /* what computes matrix products: "simile-kernels 0.1.0 (own GEMM, avx512 */
                          /*   path)", or with -DSIMILE_BLAS=openblas openblas_get_config()      */
    char blas_core[32];   /* the kernel it runs on this CPU: the path ("avx512", "avx2",         */
                          /*   "scalar"), or OpenBLAS's core, e.g. "SkylakeX"                    */
    int threads;          /* sm_get_num_threads()                                                */
    char warning[512];    /* empty, or one line (no newline): own kernels: why SIMILE_ISA was not */
                          /*   followed; OpenBLAS: its kernel uses a narrower vector extension   */
                          /*   than AVX2 on a CPU that has AVX2 or AVX-512                       */
    char isa[16];         /* the path of simile's own matrix products, sm_get_isa()              */
} sm_compute_info;

/* Fill *info for this machine and process (info may be NULL: nothing happens).  Cheap: CPUID
 * (and two BLAS queries when built with OpenBLAS). */
void sm_compute_info_get(sm_compute_info *info);

/* The instruction-set path of simile's own matrix products (every layer, head, loss and search
 * goes through them).  By default the widest the CPU has and the OS enables, from CPUID feature
 * bits and XGETBV: "avx512" (AVX-512F), "avx2" (AVX2 + FMA), else "scalar" (portable C).  The
 * environment variable SIMILE_ISA=scalar|avx2|avx512|auto, read on first use, forces one (a bad
 * name or a path the CPU lacks is ignored and reported in sm_compute_info.warning).  Every path
 * gives the same bits, for any thread count: each output is one chain of fused multiply-adds in
 * a fixed order.  sm_set_isa forces a path for the whole process ("auto" restores the default);
 * call it before computing, not while another thread computes.  Errors: SM_ERR_INVALID (an
 * unknown name), SM_ERR_UNSUPPORTED (this CPU or OS lacks the path; the path is unchanged). */
sm_status sm_set_isa(const char *name);
/* The path in use: "avx512", "avx2" or "scalar" (a static string). */
const char *sm_get_isa(void);

/* The decision behind sm_compute_info.warning, made from facts alone so that it can be checked
 * for any machine: blas_core is an OpenBLAS core name ("Prescott", "Haswell", "SkylakeX", ...),
 * cpu_flags a space-separated list of /proc/cpuinfo flag names ("avx2 fma avx512f ...").
 * Returns 1, and writes one line of advice into msg (cap bytes, NUL-terminated; msg may be NULL),
 * when the core's kernel uses only SSE or AVX while the flags show AVX2 + FMA or AVX-512;
 * returns 0 (msg set to "") otherwise, also for a core name it does not know. */
int sm_blas_kernel_warning(const char *blas_core, const char *cpu_flags, char *msg, size_t cap);

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

/* Per channel: x = (x - mean[k]) / std[k] for the values of channel k; mean and std hold the
 * dataset's channel count each.  Errors as sm_dataset_normalize, naming the channel. */
sm_status sm_dataset_normalize_channels(sm_dataset *ds, const float *mean, const float *std);
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
 * (PyTorch's defaults: uniform +-1/sqrt(fan_in) for conv/fc, BN gamma 1 beta 0).  `spec` is either a built-in name ("cnn-s",
 * "cnn-c", "cnn-m", "mlp") or layer text, one layer per line or separated by ';' (docs/model-spec.md):
 *     conv 32 k=3 s=1 p=1 bias=0 ; bn ; relu ; maxpool k=2 ; gap ; fc 64 ; l2norm
 * Limits (refused with SM_ERR_SPEC before anything is allocated): at most 2^27 parameters plus
 * batch-norm statistics a model (512 MiB), at most 2^28 output values a sample a layer and as
 * many unfolded (im2col) values a sample a convolution; inputs of at most 2^26 values a sample.
 * Errors: SM_ERR_SPEC (unknown layer, bad option, shapes that do not fit, too many layers, the
 * limits above), SM_ERR_INVALID, SM_ERR_NOMEM. */
sm_status sm_model_create(sm_model **out, const char *spec, int h, int w, int c, uint64_t seed);

void sm_model_free(sm_model *m);

/* Message of the last failed call on m ("" if none failed; the error rule at the top of this
 * file).  Valid until the next call on m. */
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
/* The input normalisation a model was trained with, stored in the model file (format version
 * 2) so that the commands applying the model preprocess images as training did: each channel k
 * of an image scaled to [0, 1] becomes (x - mean[k]) / std[k].  A version-1 file stores none:
 * kind SM_NORM_UNKNOWN (the caller decides; the CLI then uses its defaults). */
typedef enum sm_norm_kind { SM_NORM_UNKNOWN = 0, SM_NORM_NONE = 1, SM_NORM_MEAN_STD = 2 } sm_norm_kind;
typedef struct sm_normalization {
    sm_norm_kind kind;
    int channels;          /* SM_NORM_MEAN_STD: the model's input channels (1 or 3) */
    float mean[3], std[3]; /* (channels) each; std > 0 */
} sm_normalization;
/* Store n in m (copied).  Errors: SM_ERR_INVALID (channels not the model's, std <= 0 or a
 * value not finite: named). */
sm_status sm_model_set_normalization(sm_model *m, const sm_normalization *n);
/* What m stores (kind SM_NORM_UNKNOWN if nothing). */
void sm_model_normalization(const sm_model *m, sm_normalization *out);
/* Class names by label, stored in the model file: names[k] is the name of class k (no newline,
 * at most 255 bytes, 1 to 2^20 names).  Copied.  n = 0 removes them.  Errors: SM_ERR_INVALID
 * (a bad name: named). */
sm_status sm_model_set_class_names(sm_model *m, const char *const *names, int n);
/* How many names m stores (0 if none), and the name of class k (NULL if none; owned by m). */
int sm_model_num_class_names(const sm_model *m);
const char *sm_model_class_name(const sm_model *m, int k);
/* A printable summary of the layers with output shapes and parameter counts (owned by m). */
const char *sm_model_summary(sm_model *m);
/* With SIMILE_PROFILE=1 in the environment when m was created: a table of the per-layer
 * forward and backward seconds accumulated since the last call (then reset), for the caller to
 * print (the library prints nothing).  "" otherwise.  Owned by m, valid until the next call. */
const char *sm_model_profile(sm_model *m);

/* Embeddings of n inputs x (n, h, w, c) into emb (n, d), in inference mode (batch norm uses its
 * running statistics).  Batched internally; threads as set by sm_set_num_threads.
 * Errors: SM_ERR_INVALID, SM_ERR_NUMERIC (NaN/Inf in x), SM_ERR_NOMEM. */
sm_status sm_model_embed(sm_model *m, const float *x, int64_t n, float *emb);

/* Recompute every batch-norm layer's running statistics from data, with the weights fixed:
 * the running mean and variance are reset and replaced by the average over the batches of n
 * inputs x (n, h, w, c), taken in order in batches of `batch` (torch.optim.swa_utils.update_bn;
 * "precise BN").  Training leaves statistics that are an exponential average (momentum 0.1) over
 * the last few dozen batches, computed with weights that kept moving; these are the statistics
 * of the final weights over the whole set.  The parameters are not changed; the fingerprint is.
 * Errors: SM_ERR_INVALID (NULL, n < 2, batch < 2), SM_ERR_NUMERIC (NaN/Inf in x), SM_ERR_NOMEM;
 * on error the statistics are left as they were. */
sm_status sm_model_update_bn(sm_model *m, const float *x, int64_t n, int batch);

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

/* Fine-tuning: copy into m every layer tensor of src whose name ("<layer>.<kind>.<tensor>", as
 * in the model file: "1.conv.weight", "2.bn.running_var") and shape are the same in m; the
 * others keep m's initialisation (a new embedding head, a layer that changed size).  The
 * classifier head (the loss's parameters) is never taken: the loss makes its own.  The layers
 * that took a tensor are marked as pretrained (sm_train_config.backbone_lr_mult applies to
 * them).  *taken (may be NULL) gets the number of tensors copied; report (cap bytes, may be
 * NULL) one line per tensor of m: "taken      NAME (shape)" or "not taken  NAME (shape): why".
 * Errors: SM_ERR_INVALID (NULL), SM_ERR_MISMATCH (not one tensor matches: nothing is copied),
 * SM_ERR_NOMEM. */
sm_status sm_model_init_from(sm_model *m, const sm_model *src, int64_t *taken, char *report, size_t cap);
/* A new model of m's layers 1..layer (its "trunk"), with m's weights, batch-norm statistics,
 * normalisation, class names and model selection record; the layers after `layer` (a
 * projection head the loss trained through) are left out, and so is the classifier head.
 * If m's last layer is an l2norm and layer `layer` is not, an l2norm is appended, so that the
 * trunk's embeddings are unit-length as m's are.  A network often embeds classes it was not
 * trained on better before its last layers than after them (docs/training.md, "Embedding
 * before the head").  *out is the caller's (sm_model_free).  Errors: SM_ERR_INVALID (NULL,
 * layer outside 1..nlayers, or a layer inside a residual block, which cannot end there),
 * SM_ERR_SPEC (layer L's output is a feature map: a model ends with a vector, after gap or
 * fc), SM_ERR_NOMEM. */
sm_status sm_model_cut(const sm_model *m, int layer, sm_model **out);
/* The 1-based index of a layer named "N" or "N.kind" (e.g. "4" or "4.relu": the kind must be
 * that of layer N), or 0 if m has no such layer. */
int sm_model_find_layer(const sm_model *m, const char *name);
/* Model selection record of a model trained with a validation set (sm_train_config.val): the
 * 1-based epoch whose weights the model holds (0 if it was not validated), its validation MAP@R
 * in *val_map_at_r and in *best 1 if that epoch was kept as the best (keep_best), 0 if it is the
 * last.  Stored in the model file.  Either pointer may be NULL. */
int sm_model_selection(const sm_model *m, double *val_map_at_r, int *best);

/* ---- ONNX import and export (docs/interop.md) --------------------------------------------- */
/* 1 if this build has ONNX support (protobuf-c); without it the two calls below fail with
 * SM_ERR_UNSUPPORTED "built without ONNX support". */
int sm_onnx_available(void);

typedef struct sm_onnx_import_options {
    const char *embedding; /* the tensor (or the node whose first output) is the embedding;
                            * NULL: the graph's first output */
    int h, w, c;           /* input shape where the file leaves it open (0: from the file); where
                            * the file fixes it, it must agree */
    char *spec_out;        /* if not NULL: the spec text the graph maps to (NUL-terminated, cut
                            * at spec_cap - 1 bytes), written once the graph is mapped, even when
                            * the model cannot be built from it (layers this build lacks) */
    size_t spec_cap;
} sm_onnx_import_options;

/* Build a model from an ONNX file (weights from its initializers): the nodes the embedding
 * depends on, in the file's (topological) order, are mapped onto simile layers (the operator
 * table of docs/interop.md), NCHW / OIHW weights converted to NHWC / (oc, k, k, ic), and the
 * columns of a first fc after a flatten permuted from NCHW to NHWC order.  opt may be NULL.
 * Errors: SM_ERR_IO (missing/unreadable), SM_ERR_FORMAT (not a valid ONNX protobuf, sizes or
 * data lengths that do not agree, external data, an undefined input), SM_ERR_UNSUPPORTED (an
 * operator or attribute simile has no layer for: the message names the operator, the node's
 * name and its position in the graph's node list, counted from 0), SM_ERR_SPEC (the mapped
 * network does not fit), SM_ERR_NOMEM.  On error no model is made. */
sm_status sm_model_import_onnx(sm_model **out, const char *path, const sm_onnx_import_options *opt);

typedef struct sm_onnx_export_options {
    int keep_bn;           /* 1: batch norms stay BatchNormalization nodes; 0: folded into the
                            * preceding conv / fc (a bn after anything else is kept) */
} sm_onnx_export_options;

/* Write the embedding network of m as an ONNX file (opset 13, IR version 7): input "input",
 * float (N, C, H, W) with a dynamic batch N, output "embedding" (N, d).  The input is what
 * sm_model_embed takes, in NCHW order (the same normalisation).  Written atomically.  opt may be
 * NULL.  Errors: SM_ERR_UNSUPPORTED (a layer kind with no ONNX mapping, or no ONNX support),
 * SM_ERR_IO, SM_ERR_NOMEM. */
sm_status sm_model_export_onnx(sm_model *m, const char *path, const sm_onnx_export_options *opt);

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
 * alongside the network by sm_train (in the model's parameter store while it trains) and
 * stored in the model file.
 * Errors: SM_ERR_NOTFOUND (unknown name), SM_ERR_INVALID (bad option). */
sm_status sm_loss_create(sm_loss **out, const char *name, const char *options, int dim,
                         uint64_t seed);
void sm_loss_free(sm_loss *loss);
/* Message of the last failed sm_loss_compute on loss ("" if none failed). */
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
 * loss, length *count; NULL and 0 if it has none).  Valid until the loss is freed; while an
 * sm_trainer holds the loss they are the model store's head segment instead (ask again after
 * sm_trainer_free). */
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
/* sm_retrieval_metrics, and also each query's own figures into caller buffers of n doubles
 * (any of them may be NULL): ap_at_r[i] = query i's average precision at R, r_precision[i] its
 * same-class fraction of the top R, precision_at_1[i] 1 or 0; NaN for a skipped query.  The
 * means of the non-NaN entries are out's map_at_r, r_precision and precision_at_1 (up to the
 * order of summation), so a caller can resample the queries for an uncertainty. */
sm_status sm_retrieval_metrics_per_query(const float *emb, const int32_t *labels, int64_t n, int d,
                                         sm_metric metric, sm_retrieval_result *out, double *ap_at_r,
                                         double *r_precision, double *precision_at_1);

/* Scale each row of emb (n, d) to unit L2 norm in place, as the losses do (x / max(|x|,
 * 1e-12), PyTorch's F.normalize); an all-zero row stays zero.  `simile eval` ranks such rows by
 * L2 distance. */
void sm_embeddings_normalize(float *emb, int64_t n, int d);

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
/* Processes working together: data-parallel training and sharded search (docs/distributed.md) */
/* ======================================================================================== */
/* A process group.  Built with MPI (CMake -DSIMILE_MPI=ON, the default where MPI is found) and
 * started by an MPI launcher (`mpirun -np N prog`), sm_dist_init joins MPI_COMM_WORLD (it calls
 * MPI_Init_thread unless the program already did, and sm_dist_free then calls MPI_Finalize);
 * otherwise the group is this process alone (rank 0 of 1) and no MPI call is made.  Every rank
 * must make the same sequence of calls that take a group.  Errors: SM_ERR_IO (MPI failed),
 * SM_ERR_INVALID (started by a launcher as one of several processes, but built without MPI),
 * SM_ERR_NOMEM. */
typedef struct sm_dist sm_dist;
/* 1 if this library was built with MPI. */
int sm_dist_mpi_built(void);
sm_status sm_dist_init(sm_dist **out);
void sm_dist_free(sm_dist *d);
int sm_dist_rank(const sm_dist *d); /* 0 for NULL */
int sm_dist_size(const sm_dist *d); /* 1 for NULL */
sm_status sm_dist_barrier(sm_dist *d);
/* Seconds this process has spent in the group's collectives so far. */
double sm_dist_comm_seconds(const sm_dist *d);
/* The first failure of one of the group's collectives ("" if none). */
const char *sm_dist_errmsg(const sm_dist *d);
/* Rows [*lo, *hi) of n that this rank takes when a job over n rows is sharded by rank:
 * contiguous, in rank order (rank r: [n r / N, n (r + 1) / N)), sizes differing by at most 1;
 * [0, n) for a group of one (or NULL).  The training batches are sharded the same way. */
void sm_dist_shard_range(const sm_dist *g, int64_t n, int64_t *lo, int64_t *hi);
/* all (n, cols) on every rank = every rank's own rows mine (its sm_dist_shard_range of n rows,
 * (hi - lo, cols)), in rank order: all the rows, as one process holds them.  With a group of one
 * a copy.  Errors: SM_ERR_RANGE (more than 2^31 - 1 bytes in all), SM_ERR_IO. */
sm_status sm_dist_allgather_rows(sm_dist *g, const float *mine, int64_t n, int64_t cols, float *all);
/* One verdict for all ranks: SM_OK if every rank passed SM_OK; else this rank's st if it failed,
 * or SM_ERR_IO ("failed on another rank") when only another did.  Called by every rank after a
 * step that may fail on some, so that none waits in a collective the others have left. */
sm_status sm_dist_agree(sm_dist *g, sm_status st);
/* sm_model_embed and sm_model_logits over a group: every rank passes the whole input x (n, h,
 * w, c) and receives all n rows (n, embedding dim) or (n, classes); each rank computes only the
 * rows of its sm_dist_shard_range, and the shards are all-gathered, so the result has the bits
 * one process computes.  Every rank returns the same status (sm_dist_agree).  With a group of one
 * (or NULL) they are sm_model_embed and sm_model_logits. */
sm_status sm_model_embed_dist(sm_model *m, sm_dist *g, const float *x, int64_t n, float *emb);
sm_status sm_model_logits_dist(sm_model *m, sm_dist *g, const float *x, int64_t n, float *logits);
/* Exact k-NN search over a database sharded by rank (FAISS's IndexShards): each rank passes its
 * own rows db (n, d) (rank 0 the first rows of the whole database, rank 1 the next, ...; n may
 * differ between ranks and may be 0) and the same queries q (nq, d), k and metric; every rank
 * receives in dist (nq, k) and idx (nq, k) the top-k over the whole database, with idx the row
 * in the whole database, ordered and with ties broken as sm_knn_search does on the whole
 * database (ties to the lower row).  With a group of one it is sm_knn_search.  Errors as
 * sm_knn_search, SM_ERR_MISMATCH (the ranks passed different nq, d, k or metric), SM_ERR_IO. */
sm_status sm_dist_knn_search(sm_dist *g, const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                             sm_metric metric, float *dist, int64_t *idx);

/* ======================================================================================== */
/* Galleries: enrolled embeddings for open-set identification and verification              */
/* ======================================================================================== */
/* A gallery holds enrolled embeddings ("items"), each with a class name and an int64 item id,
 * together with the fingerprint of the model that produced them (sm_model_fingerprint; 0 for
 * raw embeddings of no model), the metric, and an open-set threshold.
 * Distances are "smaller = closer" for every metric: SM_METRIC_L2 gives the Euclidean (not
 * squared) distance, SM_METRIC_COSINE 1 - cosine similarity, SM_METRIC_IP minus the inner
 * product.  A query is accepted for a class when its distance is <= the threshold; the default
 * threshold +inf accepts everything (closed set).
 * Removing a class or an item leaves a tombstone (automatic item ids are never reused; a
 * removed class keeps its slot, with 0 items) until sm_gallery_compact.  Class indices are
 * slots in the gallery's class table, stable until the gallery is compacted.
 * The file (magic "SMILEGAL", version, header, class names, items, calibration record, item
 * source names and enrolment times, CRC-32; docs/gallery.md; version 1 and 2 files are still
 * read) is
 * written to a temporary file, fsynced and renamed over the old one, so a crash at any point
 * leaves either the old or the new gallery, and readers never see a partial file.  Writers that
 * read-modify-write a gallery serialise with sm_gallery_lock. */

typedef struct sm_gallery sm_gallery;

/* How a query is assigned a class. */
typedef enum sm_decision_rule {
    SM_RULE_NEAREST = 0,  /* the class of the nearest item                                    */
    SM_RULE_VOTE = 1,     /* majority of the k nearest items (tie: the class met first)      */
    SM_RULE_CENTROID = 2  /* the nearest class centroid (mean of the class's live items)     */
} sm_decision_rule;

/* One search result: the item's class slot and name, its id and its distance to the query.
 * Unfilled slots (k larger than the gallery) have class_index -1, class_name NULL, item_id -1
 * and distance +inf.  class_name is borrowed from the gallery (valid until it is modified). */
typedef struct sm_gallery_match {
    int32_t class_index;
    const char *class_name;
    int64_t item_id;
    float distance;
} sm_gallery_match;

/* A decision for one query.  best_class is the closest class by the rule, whatever the
 * threshold; class_index is best_class if distance <= threshold, else -1 ("unknown").
 * distance: to the nearest item of best_class among the neighbours (NEAREST, VOTE) or to its
 * centroid (CENTROID).  votes: the fraction of the k neighbours in best_class (VOTE), else 1.
 * class_name (borrowed) is NULL for an unknown query. */
typedef struct sm_gallery_decision {
    int32_t class_index;
    int32_t best_class;
    const char *class_name;
    float distance;
    float votes;
} sm_gallery_decision;

/* A class slot as listed by sm_gallery_class_info (name borrowed from the gallery). */
typedef struct sm_gallery_class {
    const char *name;
    int64_t items;   /* live items */
    int removed;     /* 1 if the class was removed (slot kept until compaction) */
} sm_gallery_class;

/* Create an empty gallery for embeddings of dimension dim (1..65536) compared with `metric`,
 * built with the model of the given fingerprint (0 = none).  Threshold +inf.  Free with
 * sm_gallery_free.  Errors: SM_ERR_INVALID (dim out of range, bad metric), SM_ERR_NOMEM. */
sm_status sm_gallery_create(sm_gallery **out, int dim, sm_metric metric,
                            uint32_t model_fingerprint);

/* Read a gallery file written by sm_gallery_save.  Everything is validated before use: magic,
 * version, counts against the file length before allocating, class names (printable, unique
 * among live classes), item classes, unique ids, finite embeddings, the CRC-32.
 * Errors: SM_ERR_IO (missing/unreadable), SM_ERR_FORMAT (corrupt, truncated, bad checksum, or
 * not a gallery), SM_ERR_RANGE (file too large), SM_ERR_NOMEM. */
sm_status sm_gallery_open(sm_gallery **out, const char *path);

/* Write g to path atomically (temporary file, fsync, rename, directory fsync): when it returns
 * SM_OK the gallery is on disk; on failure or a crash the previous file is intact.  Tombstones
 * are kept (see sm_gallery_compact).  The file then holds g's whole state, so the journal
 * "<path>.journal", if any, is emptied.  Errors: SM_ERR_INVALID, SM_ERR_IO, SM_ERR_NOMEM. */
sm_status sm_gallery_save(sm_gallery *g, const char *path);

void sm_gallery_free(sm_gallery *g);

/* Journaled galleries (docs/gallery.md "Journal").  sm_gallery_open also replays the gallery's
 * write-ahead journal "<path>.journal" when there is one, so every reader sees every change
 * acknowledged by a journaled writer.  sm_gallery_open_journaled opens the same way and then
 * records every later change (sm_gallery_add[_sourced], remove_class, remove_item,
 * set_threshold, compact) as one record appended to the journal and fsynced before the call
 * returns SM_OK: the cost of a change is that of its own bytes, not a rewrite of the gallery.
 * If the append fails (SM_ERR_IO) the gallery is unchanged.  Hold sm_gallery_lock while a
 * journaled gallery is open for writing.  An incomplete or torn last record (a crash while
 * appending) is ignored and cut off by the next append; a corrupt record before the last one
 * makes the open fail with SM_ERR_FORMAT.  sm_gallery_checkpoint (also sm_gallery_save to the
 * same path) folds the journal into the gallery file (temporary file, fsync, rename) and
 * empties it.  Errors: as sm_gallery_open, SM_ERR_NOMEM. */
sm_status sm_gallery_open_journaled(sm_gallery **out, const char *path);
/* Write a journaled gallery to its file and empty its journal.  Errors: SM_ERR_INVALID (not
 * journaled), as sm_gallery_save. */
sm_status sm_gallery_checkpoint(sm_gallery *g);
/* Records in the journal not yet folded into the gallery file (0 for an unjournaled one). */
int64_t sm_gallery_journal_records(const sm_gallery *g);

/* Message of the last failed call on g ("" if none failed; the error rule at the top of this
 * file).  Valid until the next call on g. */
const char *sm_gallery_errmsg(const sm_gallery *g);

int sm_gallery_dim(const sm_gallery *g);
sm_metric sm_gallery_metric(const sm_gallery *g);
uint32_t sm_gallery_model_fingerprint(const sm_gallery *g);
/* Number of live items. */
int64_t sm_gallery_size(const sm_gallery *g);
/* Number of class slots, removed classes included until compaction. */
int sm_gallery_num_classes(const sm_gallery *g);

/* SM_OK if the gallery was built with the model of this fingerprint, else SM_ERR_MISMATCH with
 * both fingerprints in the message. */
sm_status sm_gallery_check_model(sm_gallery *g, uint32_t model_fingerprint);

/* Enrol n embeddings emb (n, d) under class `class_name` (created if no live class has that
 * name; 1..255 bytes, no control characters).  ids (n) gives the item ids (>= 0, unique in the
 * gallery, removed items included until compaction) or is NULL to assign ids above every id
 * ever stored (automatic ids are never reused); assigned_ids (n),
 * which may be NULL, receives them.  All or nothing: on error the gallery is unchanged.
 * Errors: SM_ERR_INVALID (NULL, n < 1, bad name), SM_ERR_MISMATCH (d differs from the
 * gallery's dim), SM_ERR_NUMERIC (NaN/Inf), SM_ERR_RANGE (duplicate or negative id),
 * SM_ERR_NOMEM. */
sm_status sm_gallery_add(sm_gallery *g, const float *emb, int64_t n, int d, const char *class_name,
                         const int64_t *ids, int64_t *assigned_ids);

/* As sm_gallery_add, and records where each item came from: sources (n), which may be NULL,
 * gives a source name per item (NULL or "" = none; at most 4096 bytes), e.g. the image file's
 * path or "<file>#<index>".  The names are stored in the gallery file (version 2).  Both
 * record each item's enrolment time (sm_gallery_item_times).
 * Errors as sm_gallery_add; SM_ERR_INVALID for a source name longer than 4096 bytes. */
sm_status sm_gallery_add_sourced(sm_gallery *g, const float *emb, int64_t n, int d,
                                 const char *class_name, const int64_t *ids,
                                 const char *const *sources, int64_t *assigned_ids);

/* Remove the live class of that name and all its items (tombstones).  The removed items count
 * is stored in *removed (may be NULL).  Errors: SM_ERR_NOTFOUND. */
sm_status sm_gallery_remove_class(sm_gallery *g, const char *class_name, int64_t *removed);

/* Rename the live class `class_name` to new_name (a valid name, see sm_gallery_add); its slot
 * and items are kept.  Errors: SM_ERR_NOTFOUND, SM_ERR_INVALID (bad name), SM_ERR_RANGE
 * (a live class already has that name), SM_ERR_NOMEM. */
sm_status sm_gallery_rename_class(sm_gallery *g, const char *class_name, const char *new_name);

/* Remove one live item by id (tombstone).  Errors: SM_ERR_NOTFOUND. */
sm_status sm_gallery_remove_item(sm_gallery *g, int64_t item_id);

/* Drop tombstones: removed items, removed classes and classes left with no item; live classes
 * keep their order (their slot indices may change).  Errors: SM_ERR_NOMEM (g unchanged). */
sm_status sm_gallery_compact(sm_gallery *g);

/* Information about class slot i (0 <= i < sm_gallery_num_classes).  Errors: SM_ERR_RANGE. */
sm_status sm_gallery_class_info(const sm_gallery *g, int i, sm_gallery_class *info);

/* Slot of the live class with this name, or -1. */
int sm_gallery_find_class(const sm_gallery *g, const char *class_name);

/* Copy the live items in storage order: ids (n), class slots (n) and embeddings (n, dim), each
 * of which may be NULL, n = sm_gallery_size(g). */
void sm_gallery_items(const sm_gallery *g, int64_t *ids, int32_t *classes, float *emb);

/* The source names of the live items in storage order (as sm_gallery_items), borrowed from
 * the gallery (valid until it is modified); "" for an item enrolled without one (and for
 * every item of a version-1 file). */
void sm_gallery_item_sources(const sm_gallery *g, const char **sources);

/* The enrolment times of the live items in storage order (as sm_gallery_items): times (n)
 * receives milliseconds since 1970-01-01 UTC, taken when sm_gallery_add[_sourced] stored the
 * item (kept in the file from version 3 and in the journal); 0 = unknown (items of a
 * version-1 or version-2 file). */
void sm_gallery_item_times(const sm_gallery *g, int64_t *times);

/* Concurrency (docs/gallery.md "Concurrency").  A gallery is one writer's: calls that change
 * it must not overlap with each other.  Reading calls (search, decide, class distances, items,
 * info) may run in parallel with each other and, when a publish function is set, with a
 * change too: every change does its checks, allocations and journal append + fsync first, and
 * calls fn(ctx, 1) just before it alters what readers see and fn(ctx, 0) right after (a few
 * row copies and pointer swaps; a compaction rebuilds outside and swaps in).  The caller's fn
 * takes a lock exclusively on 1 and releases it on 0; readers hold that lock shared.  fn NULL
 * (the default): no calls.  sm_gallery_save / sm_gallery_checkpoint only read the items. */
typedef void (*sm_gallery_publish_fn)(void *ctx, int begin);
void sm_gallery_set_publish(sm_gallery *g, sm_gallery_publish_fn fn, void *ctx);

/* What the stored threshold was calibrated on.  generation counts the changes to the live
 * items (every add and remove; kept in the file); calibrated_generation is its value when the
 * threshold was set, items_at_calibration the live items then (-1: unknown, a version-1
 * file).  changed is 1 when a threshold is set (calibrated) and items were added or removed
 * since. */
typedef struct sm_gallery_calibration_info {
    int calibrated, changed;
    uint64_t generation, calibrated_generation;
    int64_t items_at_calibration;
} sm_gallery_calibration_info;
void sm_gallery_calibration(const sm_gallery *g, sm_gallery_calibration_info *info);

/* The open-set threshold and the rule it was calibrated for (rule may be NULL). */
float sm_gallery_threshold(const sm_gallery *g, sm_decision_rule *rule);
/* Set the threshold (any value but NaN; +inf accepts everything) and record the gallery's
 * generation and live item count as its calibration (sm_gallery_calibration).
 * Errors: SM_ERR_INVALID. */
sm_status sm_gallery_set_threshold(sm_gallery *g, float threshold, sm_decision_rule rule);

/* Exact k nearest live items of each query q (nq, d) (sm_knn_search), best first, into
 * out (nq, k).  k may exceed the gallery size (unfilled slots as described above).
 * Errors: SM_ERR_INVALID (NULL, nq < 0, k < 1), SM_ERR_MISMATCH (d differs from the gallery's
 * dim), SM_ERR_NUMERIC (NaN/Inf in a query: its row is named), SM_ERR_RANGE (empty gallery),
 * SM_ERR_NOMEM. */
sm_status sm_gallery_search(sm_gallery *g, const float *q, int64_t nq, int d, int k,
                            sm_gallery_match *out);

/* Distance of each query q (nq, d) to each class slot, into dist (nq, C), C =
 * sm_gallery_num_classes(g): to the nearest item of the class (SM_RULE_NEAREST or
 * SM_RULE_VOTE) or to the class centroid (SM_RULE_CENTROID); +inf for a class with no live
 * item.  Computed exactly in query blocks (memory O(block x items)).  Errors as
 * sm_gallery_search. */
sm_status sm_gallery_class_distances(sm_gallery *g, const float *q, int64_t nq, int d,
                                     sm_decision_rule rule, float *dist);

/* Decide the class of each query q (nq, d) by `rule` (k neighbours for SM_RULE_VOTE, ignored
 * otherwise) with open-set rejection at the gallery's threshold, into out (nq).
 * Errors as sm_gallery_search (k < 1 only matters for VOTE). */
sm_status sm_gallery_decide(sm_gallery *g, const float *q, int64_t nq, int d,
                            sm_decision_rule rule, int k, sm_gallery_decision *out);

/* Distance between two vectors a, b (d) under `metric`, as the gallery defines it (smaller =
 * closer).  NaN if an argument is invalid. */
float sm_vector_distance(const float *a, const float *b, int d, sm_metric metric);

/* Threshold calibration from labelled pair distances dist (n) (smaller = more similar) with
 * genuine (n) flags (1 same class, 0 different); a pair is accepted when dist <= threshold.
 *   SM_CALIBRATE_FAR: the largest threshold whose false-accept rate FAR (accepted impostors /
 *     impostors) is <= target_far (this matches sm_tar_at_far on the scores -dist); if even
 *     the smallest distance gives a larger FAR, a threshold just below it (accepts nothing).
 *   SM_CALIBRATE_F1: the threshold maximising F1 = 2 TP / (2 TP + FP + FN) (the smallest such).
 * *threshold gets it; *tar and *far (either may be NULL) the rates it achieves on these pairs.
 * Errors: SM_ERR_INVALID (NULL, n <= 0, flag not 0/1, no genuine or no impostor pair,
 * target_far outside [0, 1], bad mode), SM_ERR_NUMERIC (NaN/Inf distance), SM_ERR_NOMEM. */
typedef enum sm_calibration { SM_CALIBRATE_FAR = 0, SM_CALIBRATE_F1 = 1 } sm_calibration;
sm_status sm_calibrate_threshold(const float *dist, const int8_t *genuine, int64_t n,
                                 sm_calibration mode, double target_far, float *threshold,
                                 double *tar, double *far);

/* Exclusive lock for read-modify-write of a gallery file: flock on "<path>.lock" (created if
 * needed), blocking until other writers release theirs.  Readers need no lock.  Release with
 * sm_lock_release (also released if the process dies).  Errors: SM_ERR_IO. */
typedef struct sm_lock sm_lock;
sm_status sm_gallery_lock(sm_lock **out, const char *path);
/* As sm_gallery_lock without waiting: SM_ERR_IO at once ("locked by another process") when
 * another writer holds the lock. */
sm_status sm_gallery_trylock(sm_lock **out, const char *path);
void sm_lock_release(sm_lock *lock);

/* ======================================================================================== */
/* Inputs: image folders, single images, NumPy .npy arrays                                   */
/* ======================================================================================== */

/* Load a folder with one sub-folder per class (sub-folder names sorted bytewise -> labels 0,
 * 1, ...; hidden entries skipped).  Files ending in .png, .jpg, .jpeg, .pgm, .ppm, .bmp (any
 * case) are decoded (stb_image), converted to c channels (1 grey or 3 RGB), resized bilinearly
 * to (h, w) and scaled to [0, 1]; other files are ignored.  Images are taken in sorted file
 * name order.  Only PNG, JPEG, BMP, PGM and PPM are decoded (stb_image's other formats are
 * refused); an image of more than 2^26 pixels, or a PNG chunk longer than the file, is refused
 * as SM_ERR_FORMAT before it is decoded.  *class_names (may be NULL) receives an array of *num_classes strings in one
 * block, released with one free().
 * Errors: SM_ERR_IO (folder unreadable), SM_ERR_RANGE (no class folder, or a class folder with
 * no image: named), SM_ERR_FORMAT (an image that cannot be decoded: named), SM_ERR_INVALID,
 * SM_ERR_NOMEM. */
sm_status sm_dataset_load_folder(sm_dataset **out, const char *dir, int h, int w, int c,
                                 char ***class_names, int *num_classes);

/* The images sm_dataset_load_folder would load, without decoding them: *paths (n) the file
 * paths "dir/class/file" in load order, *labels (n) their class numbers, *class_names (may be
 * NULL) the *num_classes sub-folder names.  paths and class_names are each one block
 * (pointers, then strings) and labels an array, each released with free().  Errors as
 * sm_dataset_load_folder (no class folder, a class folder with no image file: SM_ERR_RANGE). */
sm_status sm_folder_list(const char *dir, char ***paths, int32_t **labels, int64_t *n,
                         char ***class_names, int *num_classes);

/* Decode one image file into x (h, w, c) as sm_dataset_load_folder does.
 * Errors: SM_ERR_IO (cannot open), SM_ERR_FORMAT (cannot decode), SM_ERR_INVALID. */
sm_status sm_image_load(const char *path, int h, int w, int c, float *x);
/* As sm_image_load; *src_h and *src_w (either may be NULL) receive the size of the image in
 * the file (0 on failure), e.g. to tell that it was resized. */
sm_status sm_image_load_ex(const char *path, int h, int w, int c, float *x, int *src_h, int *src_w);
/* Decode n image files into x (n, h, w, c) as sm_image_load does, on the library's threads
 * (sm_set_num_threads); the result does not depend on the thread count.  status (n, may be
 * NULL) receives each file's status.  Returns SM_OK if every file was decoded, else the status
 * of the first that was not, with its message (naming the file); the others are still decoded. */
sm_status sm_images_load(const char *const *paths, int64_t n, int h, int w, int c, float *x, sm_status *status);
/* A dataset whose images stay in their files until training needs them: sm_train decodes each
 * batch on a worker thread while the network computes the previous ones (a bounded queue of 3
 * batches), so a folder larger than memory can be trained on.  paths (n) image files and
 * labels (n) are copied; images are decoded as sm_image_load does at (h, w, c), then normalised
 * per channel by mean, std (c each; both NULL: not normalised).  cache: keep each image once
 * decoded, for the next epochs (n * h * w * c floats, allocated here).  What a batch holds is
 * fixed by the trainer's plan, never by thread timing.  Only the trainer reads such a dataset:
 * sm_dataset_images returns NULL and the filters and normalisations refuse it
 * (SM_ERR_UNSUPPORTED).  A file that cannot be decoded stops sm_train with its name. */
sm_status sm_dataset_from_files(sm_dataset **out, const char *const *paths, const int32_t *labels, int64_t n, int h, int w,
                                int c, const float *mean, const float *std, int cache);
/* 1 if ds was made by sm_dataset_from_files. */
int sm_dataset_is_streamed(const sm_dataset *ds);
/* Size and colour of an image file without decoding its pixels: *c is 1 for a grey (or grey and
 * alpha) image, 3 for a colour one.  Same checks as sm_image_load. */
sm_status sm_image_info(const char *path, int *h, int *w, int *c);
/* As sm_image_load_ex on the len bytes of an image file held in memory (e.g. received over the
 * network); name (may be NULL) is used in the messages.  Same checks and limits. */
sm_status sm_image_decode(const char *name, const void *data, size_t len, int h, int w, int c, float *x,
                          int *src_h, int *src_w);

/* NumPy .npy arrays (format 1.0 / 2.0 / 3.0 headers, C order, little-endian). */
typedef enum sm_npy_dtype { SM_NPY_F32 = 0, SM_NPY_I32 = 1 } sm_npy_dtype;

/* Read an array of 1 to 4 dimensions into *data (allocated, release with free()), shape[0..
 * *ndim).  dtype SM_NPY_F32 accepts '<f4' and '<f8' (converted); SM_NPY_I32 accepts '<i4' and
 * '<i8' (converted, range checked).  The header dictionary and the payload length are
 * validated.  Errors: SM_ERR_IO, SM_ERR_FORMAT (bad magic, header, dtype, Fortran order,
 * length), SM_ERR_RANGE (too large, an int64 outside int32), SM_ERR_NUMERIC (NaN/Inf floats),
 * SM_ERR_NOMEM. */
sm_status sm_npy_read(const char *path, sm_npy_dtype dtype, void **data, int64_t shape[4],
                      int *ndim);

/* Write data with shape[0..ndim) (1 <= ndim <= 4) as a version 1.0 .npy file ('<f4' or
 * '<i4'), atomically (temporary file + rename).  Errors: SM_ERR_INVALID, SM_ERR_IO. */
sm_status sm_npy_write(const char *path, sm_npy_dtype dtype, const void *data,
                       const int64_t *shape, int ndim);

/* ======================================================================================== */
/* Analysis                                                                                  */
/* ======================================================================================== */

/* Principal component analysis of x (n, d) (rows are samples): the data is centred, the
 * covariance (d, d) is diagonalised (cyclic Jacobi, double precision) and the rows projected on
 * the top k components into proj (n, k).  Each component's sign is fixed so that its entry of
 * largest magnitude is positive (first on ties): the same data always gives the same picture.
 * components (k, d) and explained (k) (fraction of the total variance) may be NULL.
 * Errors: SM_ERR_INVALID (NULL, n < 2, d < 1, k < 1 or k > d), SM_ERR_NUMERIC (NaN/Inf),
 * SM_ERR_RANGE (d > 4096), SM_ERR_NOMEM. */
sm_status sm_pca(const float *x, int64_t n, int d, int k, float *proj, float *components,
                 double *explained);

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
    double elapsed_seconds;     /* since sm_train began (callbacks included) */
    double eta_seconds;         /* estimated time left: elapsed x steps left / steps done */
    const sm_retrieval_result *val; /* at an epoch's end with cfg.val: that epoch's validation
                                 * figures (valid during the call); NULL otherwise */
} sm_train_progress;

/* Training-time augmentation beyond shift and flip (docs/data.md), applied to each image of a
 * batch after them in this order: random resized crop, colour jitter, random erasing.  Each
 * image draws from its own generator, seeded by the training seed, the step and its place in
 * the batch, so the result is the same for any thread count.  All zero (the default): off. */
typedef struct sm_augment {
    float crop_scale_min, crop_scale_max; /* random resized crop: the crop's area as a fraction of
                                           * the image (torchvision's scale, e.g. 0.08-1); max 0 = off */
    float crop_ratio_min, crop_ratio_max; /* its aspect ratio width / height, log-uniform (e.g. 0.75-1.333) */
    float brightness, contrast, saturation; /* colour jitter: factors uniform in [max(0, 1 - s), 1 + s],
                                           * applied to values in [0, 1] (the model's normalisation
                                           * undone and redone); 0 = off; saturation needs 3 channels */
    float erase_p;                        /* random erasing: probability an image, 0 = off; the box
                                           * is set to 0 (the mean after normalisation) */
    float erase_scale_min, erase_scale_max; /* its area fraction (0, 0: 0.02-0.33) */
    float erase_ratio_min, erase_ratio_max; /* its aspect ratio (0, 0: 0.3-3.3) */
} sm_augment;

typedef struct sm_train_config {
    int epochs;              /* default 5 */
    int batch_size;          /* default 128 */
    sm_optimizer optimizer;  /* default SM_OPT_ADAM */
    float lr;                /* default 1e-3 */
    float momentum;          /* SGD momentum, default 0.9 */
    float weight_decay;      /* L2 (SGD, Adam) or decoupled (AdamW), default 0 (AdamW 0.01) */
    float beta1, beta2, eps; /* Adam, defaults 0.9, 0.999, 1e-8 */
    sm_schedule schedule;    /* default constant */
    int64_t warmup_steps;    /* > 0: the learning rate rises linearly, lr (t + 1) / warmup_steps
                              * at global step t, for the first warmup_steps steps; then the
                              * schedule runs (a cosine schedule decays over the steps left).
                              * 0 (default): no warm-up */
    int step_epochs;         /* step schedule: multiply lr by step_gamma every step_epochs */
    float step_gamma;
    int per_class;           /* P x K sampling with per_class images a class; 0 = shuffled */
    int64_t samples_per_epoch; /* 0 (default): an epoch is one pass over the data.  Otherwise
                              * an epoch is this many samples, drawn from successive passes
                              * (pytorch-metric-learning's MPerClassSampler defaults to
                              * length_before_new_iter = 100000) */
    int pk_random;           /* P x K batches drawn independently at random, as
                              * pytorch-metric-learning's MPerClassSampler: P random classes,
                              * per_class random samples of each; an epoch is samples_per_epoch
                              * (or the data size) rounded down to whole batches.  0 (default):
                              * an epoch visits every sample once */
    float ema_decay;         /* > 0: keep an exponential moving average of the parameters and
                              * batch-norm statistics, ema = d ema + (1 - d) current after each
                              * step with d = min(ema_decay, (1 + step) / (10 + step)); the
                              * trained model is the average, and so is the model the progress
                              * callback sees at each epoch's end.  0 (default): off.  0.999
                              * averages over about the last 1,000 steps */
    int aug_shift;           /* random shift of up to aug_shift pixels (zero padded), 0 = off */
    int aug_flip;            /* random horizontal flip */
    sm_augment aug;          /* crop, colour jitter, erasing (all off by default) */
    uint64_t seed;           /* default 1 */
    /* Called after every batch; return non-zero to stop training (sm_train then returns
     * SM_OK with the epochs done so far).  May be NULL. */
    int (*progress)(const sm_train_progress *p, void *user);
    void *user;              /* passed to progress and grad_hook */
    /* The gradient hook, called once in every step after the backward pass and before the
     * optimiser with every trainable gradient of the model in one block: grads (count) holds
     * the layers' gradients then the loss's (head, proxies, class weights), in the model's
     * parameter store.  The hook may change them in place.  With cfg.dist (below) the
     * layers' gradients it sees are already summed over the ranks.  Return 0 to go on; non-zero
     * stops training with SM_ERR_INVALID and the step undone.  May be NULL. */
    int (*grad_hook)(float *grads, int64_t count, void *user);
    /* ---- fine-tuning (docs/training.md, "Fine-tuning") ---- */
    int freeze_bn;           /* 1: every batch-norm layer normalises with its running statistics
                              * in training too, leaves them as they are, and its scale and
                              * shift are not trained (A Metric Learning Reality Check).  0: off */
    int freeze_until;        /* layers 1..freeze_until (spec order, 1-based) are not trained: their
                              * parameters keep their bits (batch-norm statistics still move
                              * unless freeze_bn).  0 (default): none */
    float backbone_lr_mult;  /* the learning rate of the pretrained layers (sm_model_init_from)
                              * is lr x this (0: they are not trained).  Default 1 */
    /* ---- model selection ---- */
    const sm_dataset *val;   /* evaluated after every epoch (the averaged model with ema_decay):
                              * embeddings L2-normalised, sm_retrieval_metrics with L2 distance;
                              * the model records the epoch and MAP@R it ends with
                              * (sm_model_selection).  Borrowed.  NULL (default): no validation */
    int keep_best;           /* with val: the trained model is the one of the epoch with the best
                              * validation MAP@R (the first of equals), not the last epoch's */
    int embed_at;            /* with val: validation embeds through layers 1..embed_at only, as
                              * the model sm_model_cut(m, embed_at) makes (the layers after it a
                              * projection head that only the loss sees).  0 (default): the
                              * whole model.  The trained model itself is whole either way */
    /* ---- checkpoints (docs/training.md, "Resuming") ---- */
    const char *checkpoint;  /* written (sm_trainer_save_checkpoint) at the end of every epoch,
                              * and every checkpoint_steps steps if > 0.  NULL (default): none */
    int64_t checkpoint_steps;
    const char *resume;      /* sm_train only: continue from this checkpoint
                              * (sm_trainer_load_checkpoint) instead of from the start */
    /* Data-parallel training over a process group (docs/distributed.md), NULL (default) or a
     * group of one: this process alone.  With N ranks, every rank plans the same batches from
     * the seed and embeds its shard of each batch's rows (rank r: rows [n r / N, n (r + 1) / N));
     * the embeddings are all-gathered, the loss runs on the whole batch on every rank,
     * batch-norm statistics are those of the whole batch (SyncBN), and the layers' gradients are
     * summed over the ranks in rank order before one optimiser step, so every rank holds the same
     * parameters and computes, up to rounding, what one process computes on the same batches.
     * Every rank must pass the same data, model, loss and configuration. */
    sm_dist *dist;
    /* Gradient shards: 0 (default) or 1, one process computes each sum over the batch (weight
     * and bias gradients, batch norm's sums) at once; N > 1, one process computes every such sum
     * as N ranks do (each of N contiguous parts of the batch alone, rank r's rows of above, then
     * the parts added in order), so that it gives the same bits as a run on N ranks with the
     * same global batch.  With dist of N > 1 ranks it must be 0 or N; at most batch_size. */
    int grad_shards;
} sm_train_config;

/* Fill cfg with the defaults above. */
void sm_train_config_default(sm_train_config *cfg);
/* sizeof(sm_train_config) and sizeof(sm_train_progress) in this build of the library: bindings
 * that mirror the structs (the Python package) check them before they use either. */
size_t sm_train_config_size(void);
size_t sm_train_progress_size(void);

/* Train model m on ds with loss.  The loss's parameters (a classifier head) are trained too, in
 * the model's parameter store, and stay there as the model's head at the end (the loss keeps a
 * copy), so that sm_model_logits and sm_model_save include them.  A loop over sm_trainer_step
 * (below); the library prints nothing, progress goes through cfg->progress.
 * Same seed, data, config and thread count give bit-identical results, also when the training
 * was interrupted and continued from a checkpoint (cfg->checkpoint, cfg->resume).
 * Errors: SM_ERR_INVALID (bad config), SM_ERR_MISMATCH (data shape differs from the model's
 * input), SM_ERR_NUMERIC (loss became NaN/Inf: the step is named in the message and the model
 * is left as it was after the last good step), SM_ERR_NOMEM. */
sm_status sm_train(sm_model *m, sm_loss *loss, const sm_dataset *ds, const sm_train_config *cfg);

/* ---- Training step by step (docs/training.md) ------------------------------------------
 * sm_train is a loop over this API:
 *     sm_trainer *t;  sm_train_step_info s = {0};
 *     st = sm_trainer_create(&t, m, loss, ds, &cfg);
 *     while (!st && !s.done) st = sm_trainer_step(t, &s);
 *     if (!st) st = sm_trainer_finish(t);
 *     sm_trainer_free(t);
 * The trainer borrows m, loss and ds (and copies cfg) until sm_trainer_free: do not use or
 * free them meanwhile except from the callbacks.  While it lives, the loss's parameters live
 * in the model's parameter store (the loss computes with them there); sm_trainer_free gives
 * the loss its trained parameters back. */
typedef struct sm_trainer sm_trainer;

/* What one step did (filled by sm_trainer_step). */
typedef struct sm_train_step_info {
    int epoch, epochs;             /* 1-based epoch of this step */
    int64_t step, steps_per_epoch; /* 1-based step within the epoch */
    int64_t global_step;           /* optimiser steps taken so far, this one included */
    int batch;                     /* samples in this step's batch */
    float loss;                    /* loss of this batch */
    double epoch_loss;             /* running mean loss of this epoch so far */
    float lr;                      /* learning rate of this step */
    int epoch_done;                /* 1 if this step ended its epoch */
    int done;                      /* 1 if training is over (last epoch done, or progress
                                    * returned non-zero): call sm_trainer_finish */
    int stopped;                   /* 1 if the progress callback asked to stop */
} sm_train_step_info;

/* Check everything sm_train checks (config, shapes, labels against the loss's head) and
 * prepare: batch buffers, the loss bound to the model's store, fresh optimiser moments, the
 * weight average if cfg->ema_decay > 0, the sampler seeded with cfg->seed.  Nothing is trained.
 * With cfg->resume the trainer then continues from that checkpoint (sm_trainer_load_checkpoint).
 * Errors: as sm_train (SM_ERR_INVALID for NULL arguments or a bad config, SM_ERR_MISMATCH,
 * SM_ERR_RANGE, SM_ERR_NOMEM), and the checkpoint's; no trainer is left. */
sm_status sm_trainer_create(sm_trainer **out, sm_model *m, sm_loss *loss, const sm_dataset *ds,
                            const sm_train_config *cfg);
/* One step: draw the next batch (a new epoch starts when the last ended), augment it, forward,
 * loss and its gradient, backward, cfg.grad_hook, the optimiser over the whole store, the
 * weight average, then cfg.progress (with the averaged model at an epoch's end).  info may be
 * NULL.  Bit-identical to the same step of sm_train.  Errors: SM_ERR_INVALID (NULL trainer,
 * training done, an earlier step failed, the gradient hook refused), SM_ERR_NUMERIC (diverged:
 * the store is put back as it was before the step), and the loss's errors.  After an error
 * only sm_trainer_free is useful. */
sm_status sm_trainer_step(sm_trainer *t, sm_train_step_info *info);
/* End training as sm_train does: the model takes the weight average (if any) and keeps the
 * loss's parameters as its classifier head (when the loss gives class logits), with the loss's
 * name and options.  May be called before the last epoch (the steps so far count).  Errors:
 * SM_ERR_INVALID (NULL, already finished, an earlier step failed), SM_ERR_NOMEM. */
sm_status sm_trainer_finish(sm_trainer *t);
/* Free the trainer; the loss gets its trained parameters back into its own block.  Without
 * sm_trainer_finish the model keeps the trained layers but its previous head.  NULL: no-op. */
void sm_trainer_free(sm_trainer *t);
/* Message of the last failed call on t ("" if none). */
const char *sm_trainer_errmsg(const sm_trainer *t);

/* Checkpoints: the whole state of a training between two steps, written atomically (temporary
 * file, fsync, rename) with magic "SMILECKP", a version and a CRC-32: the parameter store
 * (layers, the loss's parameters, batch-norm statistics), the optimiser's moments and step, the
 * weight average, the sampler's plan and position, the RNG, the epoch, step and learning-rate
 * position, the validation record and the best epoch's weights.  A trainer created with the
 * same model spec, loss, data, config and thread count that loads it continues with the same
 * bits as the training that wrote it.  load: only on a trainer that has taken no step.
 * Errors: SM_ERR_IO; load also SM_ERR_FORMAT (bad magic, version, checksum, truncation),
 * SM_ERR_MISMATCH (another spec, loss, data size or training setting: the message names which),
 * SM_ERR_INVALID (a trainer that already stepped). */
sm_status sm_trainer_save_checkpoint(sm_trainer *t, const char *path);
sm_status sm_trainer_load_checkpoint(sm_trainer *t, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* SIMILE_H */
