/* infer.c - the inference path behind sm_model_embed: batch-parallel, layer-fused.
 *
 * Training runs the batch through one layer at a time, every kernel spreading its rows over the
 * threads; at inference that costs a fork/join per layer and per sgemm, a separate pass for
 * batch norm and a maxpool that records argmax indices nobody reads.  Here instead:
 *  - each batch norm that follows a convolution or fc layer is folded into that layer's weights
 *    and bias (W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) +
 *    beta), and its fused ReLU is applied in the same pass as the bias;
 *  - the batch is cut into fixed micro-batches of MICRO samples; each thread takes whole
 *    micro-batches and runs them through every layer on its own buffers with single-threaded
 *    sgemm (simile's own GEMM, and OpenBLAS's OpenMP build with -DSIMILE_BLAS=openblas, run
 *    single-threaded inside a parallel region), so there is
 *    one parallel region per call and the activations of a micro-batch stay in cache.
 * The micro-batch partition does not depend on the thread count, and every sgemm runs whole on
 * one thread, so the embeddings are the same bits for any number of threads, whichever kernel
 * OpenBLAS picks.  They equal the layer-by-layer path (sm_model_forward
 * with train = 0) up to float rounding of the folded weights (tests/test_infer.c).
 * What a layer does here comes from its kind's table (src/nn/layer.h): `linear` (conv, fc: the
 * plan adds the bias and activation after the product, and folds an `affine` layer, bn, into
 * it), `infer_bias_act` (maxpool: it commutes with that bias and activation, so it is taken
 * before them and applies them in its own pass) and `infer`, its single-threaded forward for a
 * micro-batch; the plan itself knows no layer type.  A linear kind may also take its weights in its
 * own form (`infer_weights`, made once per call: a conv's Winograd transform) and do the bias,
 * activation and a following pool in its own pass (`infer_fused`).
 * Residual blocks (the `branch` kinds res / shortcut / end) keep two more buffers per thread:
 * res copies the block's input into keepX, shortcut copies the main branch's output into keepM
 * and continues from keepX, end adds keepM (or keepX) to its input.  Folds and pools work inside
 * the branches as in a chain (a bn folds into the conv just before it, whichever branch). */
#include "model/model.h"
#include "backend/backend.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Samples per micro-batch: the largest cnn-s activation of 8 samples (8 x 28x28x32 floats,
 * 800 KiB) fits the 1 MiB L2 of a Zen 4; on a Zen 3 (512 KiB L2) 2, 4 and 16 were not faster
 * (docs/performance.md, "Zen 3 after the merges").  The size changes no bit: rows are independent. */
#define MICRO 8

typedef struct stage {
    const sm_layer *L;
    const sm_layer_kind *K;
    const float *W, *b; /* weights and bias to use (folded copies for a linear layer + bn) */
    int relu;           /* apply max(., 0) after the bias (a linear layer) */
    int skip;           /* a bn folded into the previous layer, or a fused relu */
} stage;

/* Whether layer i is a linear layer (conv, fc) whose output goes to an affine one (bn) that can
 * be folded into it (its output is only read by the bn: layers are a chain). */
static int folds_next_bn(const sm_model *m, int i) {
    return i + 1 < m->nlayers && sm_layer_kind_of(&m->layers[i])->linear &&
           sm_layer_kind_of(&m->layers[i + 1])->affine;
}

/* Build the stages, folding each bn into its conv/fc, then giving each kind with infer_weights
 * its own form of the (folded) weights.  folded receives the copies; it has room for the
 * parameters plus one bias per output of every layer folds_next_bn selects, and each of those
 * forms. */
static void plan_stages(const sm_model *m, stage *S, float *folded) {
    for (int i = 0; i < m->nlayers; i++) {
        const sm_layer *L = &m->layers[i];
        S[i] = (stage){L, sm_layer_kind_of(L), L->W, L->b, 0, L->fused};
    }
    for (int i = 0; i + 1 < m->nlayers; i++) {
        if (!folds_next_bn(m, i)) continue;
        const sm_layer *L = &m->layers[i], *N = &m->layers[i + 1];
        int64_t per = L->nparams - (L->b ? L->oc : 0); /* weights: oc rows of per / oc */
        int64_t K = per / L->oc;
        float *W = folded, *b = folded + per;
        folded += per + L->oc;
        for (int o = 0; o < L->oc; o++) {
            float sub, sc, add; /* N's channel o: (x - sub) * sc + add */
            S[i + 1].K->affine(N, o, &sub, &sc, &add);
            for (int64_t k = 0; k < K; k++) W[o * K + k] = L->W[o * K + k] * sc;
            b[o] = ((L->b ? L->b[o] : 0.0f) - sub) * sc + add;
        }
        S[i].W = W;
        S[i].b = b;
        S[i].relu = N->relu;
        S[i + 1].skip = 1;
    }
    for (int i = 0; i < m->nlayers; i++) { /* the kinds' own form of their (folded) weights */
        const sm_layer *L = &m->layers[i];
        const int64_t nw = S[i].K->infer_weights ? S[i].K->infer_weights(L, NULL, NULL) : 0;
        if (nw <= 0) continue;
        S[i].K->infer_weights(L, S[i].W, folded);
        S[i].W = folded;
        folded += nw;
    }
}

/* Run micro-batch x (n <= MICRO samples) through the stages; the output goes to out (n, d). */
static void run_micro(const sm_model *m, const stage *S, const float *x, int n, float *bufA, float *bufB,
                      float *keepX, float *keepM, float *scratch, float *out, double *times) {
    const float *in = x;
    float *bufs[2] = {bufA, bufB};
    int which = 0;
    int last = m->nlayers - 1;
    while (last > 0 && S[last].skip) last--;
    for (int i = 0; i < m->nlayers; i++) {
        const stage *st = &S[i];
        if (st->skip) continue;
        const sm_layer *L = st->L;
        float *y = i == last ? out : bufs[which];
        double t0 = times ? sm_now() : 0; /* SIMILE_PROFILE: this thread's seconds in each stage */
        int fused = 0; /* 1: the stage applied its bias and activation; 2: and the next stage's pool */
        if (st->K->branch == SM_BRANCH_OPEN || st->K->branch == SM_BRANCH_SPLIT) {
            /* res: keep the block's input and go on from it; shortcut: keep the main branch's
             * output and go on from the block's input (never the last stage: end follows) */
            const size_t bytes = sizeof(float) * (size_t)n * (size_t)sm_layer_in_size(L);
            if (st->K->branch == SM_BRANCH_OPEN) memcpy(keepX, in, bytes);
            else memcpy(keepM, in, bytes);
            in = keepX;
            if (times) times[i] += sm_now() - t0;
            continue;
        }
        if (st->K->branch == SM_BRANCH_JOIN) {
            sm_layer E = *L; /* the table's end with the other operand */
            E.aux = L->blk_split >= 0 ? keepM : keepX;
            st->K->infer(&E, st->W, in, n, y, scratch);
        } else if (st->K->linear && st->K->infer_fused) {
            /* the kind's fused forward: with the next stage's pool when that commutes (2), else
             * with the bias and activation only (1), or not at all (0: infer, and the rest below) */
            int j = i + 1;
            while (j < m->nlayers && S[j].skip) j++;
            if (j < m->nlayers && S[j].K->infer_bias_act &&
                st->K->infer_fused(L, st->W, st->b, st->relu, S[j].L, in, n, j == last ? out : bufs[which ^ 1],
                                   scratch))
                fused = 2;
            else if (st->K->infer_fused(L, st->W, st->b, st->relu, NULL, in, n, y, scratch))
                fused = 1;
            else
                st->K->infer(L, st->W, in, n, y, scratch);
        } else
            st->K->infer(L, st->W, in, n, y, scratch);
        if (st->K->linear) {
            /* linear -> (bias, relu) -> maxpool: pool first, then the bias and relu on the pooled
             * values (a per-channel constant and a monotone function commute with max, to the
             * bit), a quarter of the work for a 2x2 pool */
            int j = i + 1;
            while (j < m->nlayers && S[j].skip) j++;
            if (fused) { /* the kind did its product, bias and activation (and the pool) itself */
                if (times) times[i] += sm_now() - t0; /* (a pool's time counted with its linear layer) */
                if (fused == 2) {
                    in = j == last ? out : bufs[which ^ 1];
                    i = j; /* `which` stays, as below */
                    continue;
                }
                in = y;
                which ^= 1;
                continue;
            }
            if (j < m->nlayers && S[j].K->infer_bias_act) {
                float *z = j == last ? out : bufs[which ^ 1];
                S[j].K->infer_bias_act(S[j].L, y, n, st->b, st->relu, z); /* the pool, bias and relu in one pass */
                if (times) times[i] += sm_now() - t0; /* the pool's time is counted with its linear layer */
                in = z;
                i = j; /* `which` stays: the next stage writes over the linear layer's output */
                continue;
            }
            sm_be_bias_act1(sm_backend_default(), y, st->b, (int64_t)n * L->oh * L->ow, L->oc, st->relu);
        }
        if (times) times[i] += sm_now() - t0;
        in = y;
        which ^= 1;
    }
    if (last < 0 || S[last].skip) /* no layer computes anything: the input is the output */
        memcpy(out, x, sizeof(float) * (size_t)n * (size_t)m->emb_dim);
}

sm_status sm_model_infer(sm_model *m, const float *x, int64_t n, float *emb) {
    int64_t nfold = 0, max_act = 1, max_col = 1;
    for (int i = 0; i < m->nlayers; i++) {
        const sm_layer *L = &m->layers[i];
        if (folds_next_bn(m, i)) nfold += L->nparams + L->oc;
        const sm_layer_kind *Ki = sm_layer_kind_of(L);
        if (Ki->infer_weights) nfold += Ki->infer_weights(L, NULL, NULL);
        if (sm_layer_out_size(L) > max_act) max_act = sm_layer_out_size(L);
        if (sm_layer_in_size(L) > max_act) max_act = sm_layer_in_size(L); /* res may keep the input */
        const sm_layer_kind *K = sm_layer_kind_of(L);
        if (K->infer_scratch && K->infer_scratch(L) > max_col) max_col = K->infer_scratch(L);
    }
    stage *S = sm_alloc((size_t)m->nlayers, sizeof *S);
    float *folded = sm_alloc((size_t)(nfold + 1), sizeof(float));
    if (!S || !folded) { sm_free(S); sm_free(folded); return SM_ERR_NOMEM; }
    plan_stages(m, S, folded);
    const int64_t in = (int64_t)m->in_h * m->in_w * m->in_c;
    const int64_t nmicro = (n + MICRO - 1) / MICRO;
    /* every thread's buffers in one block, allocated here: nothing is allocated inside the
     * parallel region, and a failure is reported before any work */
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = omp_get_max_threads();
#endif
    int blocks = 0;
    for (int i = 0; i < m->nlayers; i++) blocks |= sm_layer_kind_of(&m->layers[i])->branch != SM_BRANCH_NONE;
    const int64_t nbuf = blocks ? 4 : 2; /* bufA, bufB (, keepX, keepM for residual blocks) */
    const int64_t per_thread = nbuf * (int64_t)MICRO * max_act + (int64_t)MICRO * max_col; /* bufs, col */
    float *bufs = sm_alloc((size_t)nthreads * (size_t)per_thread, sizeof(float));   /* (nthreads, per_thread) */
    double *times = m->profile ? sm_calloc((size_t)nthreads * (size_t)m->nlayers, sizeof(double)) : NULL; /* (nthreads, nlayers) */
    if (!bufs || (m->profile && !times)) {
        sm_free(bufs);
        sm_free(times);
        sm_free(S);
        sm_free(folded);
        return sm_fail(SM_ERR_NOMEM, "out of memory for the inference buffers");
    }
    /* Always an active parallel region, also for a single micro-batch: inside one, every sgemm
     * runs on one thread, so no product is ever split across threads (simile's own GEMM gives
     * the same bits either way; this matters for -DSIMILE_BLAS=openblas).
     * How a split rounds depends on the kernel OpenBLAS picks (its Prescott, Haswell and Zen
     * kernels round a tile's edge differently from its middle), and a region opened only when
     * there are two micro-batches or more made a batch of 1-8 differ between 1 and 2 threads. */
#pragma omp parallel num_threads(nthreads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *bufA = bufs + (int64_t)tid * per_thread, *bufB = bufA + MICRO * max_act;
        float *keepX = blocks ? bufB + MICRO * max_act : NULL, *keepM = blocks ? keepX + MICRO * max_act : NULL;
        float *col = bufA + nbuf * MICRO * max_act;
#pragma omp for schedule(dynamic, 1)
        for (int64_t mb = 0; mb < nmicro; mb++) {
            int cnt = (int)(n - mb * MICRO < MICRO ? n - mb * MICRO : MICRO);
            run_micro(m, S, x + mb * MICRO * in, cnt, bufA, bufB, keepX, keepM, col, emb + mb * MICRO * m->emb_dim,
                      times ? times + (int64_t)tid * m->nlayers : NULL);
        }
    }
    sm_free(bufs);
    if (times) { /* thread seconds per layer, into the same profile as training's */
        for (int t = 0; t < nthreads; t++)
            for (int i = 0; i < m->nlayers; i++) m->layers[i].t_fwd += times[(int64_t)t * m->nlayers + i];
        sm_free(times);
    }
    sm_free(S);
    sm_free(folded);
    return SM_OK;
}
