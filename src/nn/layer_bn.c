/* layer_bn.c - batch normalisation, "bn [eps=E] [momentum=M]": per channel over the batch and
 * the spatial positions; batch statistics in training (running statistics updated PyTorch's
 * way), running statistics at inference.  A following relu is fused into it (one pass forward
 * and backward), and at inference it folds into a preceding conv or fc. */
#include "nn/layer.h"
#include "backend/backend.h"
#include "dist/dist.h"
#include <math.h>
#include <string.h>

static int bn_option(sm_layer *L, const char *key, const char *value) {
    int r;
    if (strcmp(key, "eps") == 0)
        return (r = sm_layer_opt_float(value, &L->eps)) != SM_OPT_OK ? r : L->eps > 0 ? SM_OPT_OK : SM_OPT_BAD_VALUE;
    if (strcmp(key, "momentum") == 0)
        return (r = sm_layer_opt_float(value, &L->momentum)) != SM_OPT_OK ? r
               : L->momentum <= 1 ? SM_OPT_OK : SM_OPT_BAD_VALUE;
    return SM_OPT_UNKNOWN;
}

static void bn_text(const sm_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, " eps=%g momentum=%g", L->eps, L->momentum);
}

static sm_status bn_setup(sm_layer *L, int index) {
    L->nparams = 2 * (int64_t)L->ic;  /* gamma, beta */
    L->nbuffers = 2 * (int64_t)L->ic; /* running mean, running variance */
    return SM_OK;
}

static void bn_bind(sm_layer *L, float *params, float *grads, float *buffers) {
    L->gamma = params; L->beta = params + L->oc; L->dgamma = grads; L->dbeta = grads + L->oc;
    L->run_mean = buffers; L->run_var = buffers + L->oc;
}

static sm_status bn_tensors(sm_layer *L, int index, sm_tensor_fn fn, void *ctx) {
    const char *nm[4] = {"weight", "bias", "running_mean", "running_var"};
    float *p[4] = {L->gamma, L->beta, L->run_mean, L->run_var};
    sm_status st = SM_OK;
    for (int j = 0; j < 4 && !st; j++) st = sm_layer_tensor(fn, ctx, L, index, nm[j], 1, &L->oc, p[j]);
    return st;
}

static void bn_init(sm_layer *L, sm_rng *rng) {
    for (int j = 0; j < L->oc; j++) {
        L->gamma[j] = 1; L->beta[j] = 0; L->run_mean[j] = 0; L->run_var[j] = 1;
    }
}

static void bn_reset_stats(sm_layer *L) {
    for (int j = 0; j < L->oc; j++) { L->run_mean[j] = 0; L->run_var[j] = 1; }
}

static int bn_fuse_next(sm_layer *L, sm_layer *next) {
    if (next->type != SM_LAYER_RELU) return 0;
    L->relu = 1;
    next->fused = 1;
    return 1;
}

static sm_status bn_alloc_cache(sm_layer *L, int cap) {
    L->mean = sm_alloc((size_t)L->oc, sizeof(float));
    L->rstd = sm_alloc((size_t)L->oc, sizeof(float));
    L->bn_sums = sm_alloc((size_t)(2 * L->oc + 1), sizeof(double));
    L->bn_part = sm_alloc((size_t)(2 * L->oc), sizeof(double));
    return L->mean && L->rstd && L->bn_sums && L->bn_part ? SM_OK : SM_ERR_NOMEM;
}

static size_t bn_workspace(const sm_layer *L, int cap) { return sm_be_bn_ws(L->be, (int64_t)cap * L->oh * L->ow, L->oc); }

static int synced(const sm_layer *L) { return L->dist && L->dist->size > 1; }

/* Rows [*lo, *hi) of shard s of the batch's n samples (rows = samples x positions). */
static void shard_rows(const sm_layer *L, int n, int s, int64_t *lo, int64_t *hi) {
    sm_dist_shard(n, s, L->shards, lo, hi);
    *lo *= (int64_t)L->oh * L->ow;
    *hi *= (int64_t)L->oh * L->ow;
}

static void bn_forward(sm_layer *L, const float *x, float *y, int n, int train) {
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    if (train && !L->frozen_stats && (synced(L) || L->shards > 1)) {
        /* SyncBN: the statistics of every rank's rows, or of every shard's, summed alone and
         * added in order as the ranks' are */
        double *s = L->bn_sums; /* (2 oc + 1): sums, sums of squares, row count */
        if (synced(L)) {
            sm_be_bn_sums(L->be, x, rows, L->oc, s, L->ws);
            s[2 * L->oc] = (double)rows;
            if (sm_dist_sum_f64(L->dist, s, 2 * (int64_t)L->oc + 1)) { /* the trainer sees the group's error */
                memset(y, 0, sizeof(float) * (size_t)(rows * L->oc));
                return;
            }
        } else {
            for (int q = 0; q < L->shards; q++) {
                int64_t a, z;
                shard_rows(L, n, q, &a, &z);
                sm_be_bn_sums(L->be, x + a * L->oc, z - a, L->oc, q ? L->bn_part : s, L->ws);
                if (q) sm_dist_add_f64(s, L->bn_part, 2 * (int64_t)L->oc);
            }
            s[2 * L->oc] = (double)rows;
        }
        L->bn_count = (int64_t)s[2 * L->oc];
        sm_be_bn_stats(L->be, s, L->bn_count, L->oc, L->eps, L->momentum, L->run_mean, L->run_var, L->mean, L->rstd);
        sm_be_bn_normalize(L->be, x, rows, L->oc, L->gamma, L->beta, L->mean, L->rstd, L->relu, y);
    } else if (train && !L->frozen_stats)
        sm_be_bn_forward_train(L->be, x, rows, L->oc, L->gamma, L->beta, L->eps, L->momentum,
                              L->run_mean, L->run_var, L->mean, L->rstd, L->relu, y, L->ws);
    else
        sm_be_bn_forward_infer(L->be, x, rows, L->oc, L->gamma, L->beta, L->eps, L->run_mean,
                              L->run_var, L->relu, y);
}

/* bn (+ relu) then a 2x2 stride-2 unpadded max-pool, in training with the batch's own statistics
 * on one process and one shard (the path of bn_forward_train): the kernel normalises each window
 * in registers and pools it, and bn's output is never written.  Its backward reads x only (the
 * frozen-statistics path, which reads y, is excluded here). */
static int bn_forward_pool(sm_layer *L, sm_layer *P, const float *x, float *ypool, int n, int train) {
    if (!train || L->frozen_stats || synced(L) || L->shards > 1) return 0;
    if (strcmp(sm_layer_kind_of(P)->name, "maxpool") || P->k != 2 || P->stride != 2 || P->pad != 0 ||
        P->ih != L->oh || P->iw != L->ow || P->ic != L->oc || 2 * P->oh > L->oh || 2 * P->ow > L->ow)
        return 0;
    sm_be_bn_forward_train_pool2(L->be, x, n, L->oh, L->ow, L->oc, L->gamma, L->beta, L->eps, L->momentum,
                                 L->run_mean, L->run_var, L->mean, L->rstd, L->relu, P->oh, P->ow, ypool, P->arg,
                                 L->ws);
    return 1;
}

static void bn_backward(sm_layer *L, const float *x, const float *y, const float *dy, float *dx, int n) {
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    if (L->frozen_stats) { /* y = (x - run_mean) gamma / sqrt(run_var + eps) + beta: a fixed affine map,
                            * so dx = dy [y > 0] gamma / sqrt(run_var + eps); gamma and beta are
                            * frozen with the statistics (zero gradient) */
        memset(L->dgamma, 0, sizeof(float) * (size_t)L->oc);
        memset(L->dbeta, 0, sizeof(float) * (size_t)L->oc);
        if (!dx) return;
        if (L->relu) sm_be_relu_backward(L->be, y, dy, dx, rows * L->oc);
        else sm_be_copy(L->be, dx, dy, sizeof(float) * (size_t)(rows * L->oc));
        /* the inference kernel with mean 0 and shift 0 (the caches, unused when frozen) scales
         * each channel by gamma / sqrt(run_var + eps), in place */
        memset(L->mean, 0, sizeof(float) * (size_t)L->oc);
        memset(L->rstd, 0, sizeof(float) * (size_t)L->oc);
        sm_be_bn_forward_infer(L->be, dx, rows, L->oc, L->gamma, L->rstd, L->eps, L->mean, L->run_var, 0, dx);
        return;
    }
    if (synced(L)) {
        /* this rank's sums are its share of dgamma and dbeta (the trainer adds the ranks'
         * parameter gradients); dx needs the whole group's */
        double *s = L->bn_sums;
        sm_be_bn_grad_sums(L->be, x, dy, rows, L->oc, L->gamma, L->beta, L->mean, L->rstd, L->relu, s, L->ws);
        for (int j = 0; j < L->oc; j++) { L->dbeta[j] = (float)s[j]; L->dgamma[j] = (float)s[L->oc + j]; }
        if (!dx) return;
        if (sm_dist_sum_f64(L->dist, s, 2 * (int64_t)L->oc)) {
            memset(dx, 0, sizeof(float) * (size_t)(rows * L->oc));
            return;
        }
        sm_be_bn_backward_dx(L->be, x, dy, rows, L->oc, L->gamma, L->beta, L->mean, L->rstd, L->relu, s, L->bn_count, dx);
        return;
    }
    if (L->shards > 1) { /* each shard's sums, as a rank's: its dgamma and dbeta added in order */
        double *s = L->bn_sums, *p = L->bn_part;
        for (int q = 0; q < L->shards; q++) {
            int64_t a, z;
            shard_rows(L, n, q, &a, &z);
            const int64_t off = a * L->oc;
            sm_be_bn_grad_sums(L->be, x + off, dy + off, z - a, L->oc, L->gamma, L->beta, L->mean, L->rstd, L->relu,
                               q ? p : s, L->ws);
            const double *t = q ? p : s;
            for (int j = 0; j < L->oc; j++) {
                float db = (float)t[j], dg = (float)t[L->oc + j];
                if (q) { L->dbeta[j] += db; L->dgamma[j] += dg; }
                else { L->dbeta[j] = db; L->dgamma[j] = dg; }
            }
            if (q) sm_dist_add_f64(s, p, 2 * (int64_t)L->oc);
        }
        if (dx)
            sm_be_bn_backward_dx(L->be, x, dy, rows, L->oc, L->gamma, L->beta, L->mean, L->rstd, L->relu, s,
                                 L->bn_count, dx);
        return;
    }
    sm_be_bn_backward(L->be, x, dy, rows, L->oc, L->gamma, L->beta, L->mean, L->rstd, L->relu, L->dgamma,
                     L->dbeta, dx, L->ws);
}

/* at inference: y = (x - mean) * gamma / sqrt(var + eps) + beta */
static void bn_affine(const sm_layer *L, int c, float *sub, float *scale, float *add) {
    *sub = L->run_mean[c];
    *scale = L->gamma[c] / sqrtf(L->run_var[c] + L->eps);
    *add = L->beta[c];
}

/* a bn not folded into a preceding layer: the running statistics */
static void bn_infer(const sm_layer *L, const float *W, const float *x, int n, float *y, float *scratch) {
    const int64_t rows = (int64_t)n * L->oh * L->ow;
    sm_be_bn_infer1(L->be, x, rows, L->oc, L->gamma, L->beta, L->eps, L->run_mean, L->run_var, L->relu, y);
}

const sm_layer_kind sm_layer_kind_bn = {
    .name = "bn",
    .option = bn_option,
    .text = bn_text,
    .setup = bn_setup,
    .bind = bn_bind,
    .tensors = bn_tensors,
    .init = bn_init,
    .reset_stats = bn_reset_stats,
    .fuse_next = bn_fuse_next,
    .alloc_cache = bn_alloc_cache,
    .workspace = bn_workspace,
    .forward = bn_forward,
    .backward = bn_backward,
    .forward_pool = bn_forward_pool,
    .affine = bn_affine,
    .infer = bn_infer,
};
