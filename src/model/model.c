/* model.c - building a network from a spec, its parameter store (params.h), batched forward
 * and backward over the layers, and inference (embed, logits from the stored head). */
#include "model/model.h"
#include "loss/loss.h"
#include <stdlib.h>
#include <string.h>

#define SM_INFER_BATCH 256

static sm_status model_fail(sm_model *m, sm_status st) {
    if (m && st) sm_errmsg_copy(m->errmsg);
    return st;
}

sm_status sm_model_create(sm_model **out, const char *spec, int h, int w, int c, uint64_t seed) {
    return sm_model_create_bounded(out, spec, h, w, c, seed, SM_MAX_PARAMS);
}

sm_status sm_model_create_bounded(sm_model **out, const char *spec, int h, int w, int c, uint64_t seed,
                                  int64_t max_params) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_model_create: out is NULL");
    *out = NULL;
    if (h < 1 || w < 1 || c < 1 || h > 65536 || w > 65536 || c > 65536 || (int64_t)h * w * c > (1 << 26))
        return sm_fail(SM_ERR_INVALID, "sm_model_create: bad input shape %dx%dx%d", h, w, c);
    sm_model *m = sm_calloc(1, sizeof *m);
    if (!m) return SM_ERR_NOMEM;
    m->in_h = h; m->in_w = w; m->in_c = c;
    const char *prof = getenv("SIMILE_PROFILE");
    m->profile = prof && *prof && *prof != '0';
    m->be = sm_backend_default();
    sm_status st = sm_spec_parse(spec, &m->layers, &m->nlayers, &m->spec);
    if (st) { sm_model_free(m); return st; }
    for (int i = 0; i < m->nlayers; i++) m->layers[i].be = m->be;
    /* shapes and block sizes */
    int ih = h, iw = w, ic = c;
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        /* a residual block's shortcut / end: the other operand's shape (the block's input, or
         * the main branch's output, which is the shortcut marker's input) */
        int br = sm_layer_kind_of(L)->branch;
        if (br == SM_BRANCH_SPLIT || (br == SM_BRANCH_JOIN && L->blk_split < 0)) {
            const sm_layer *R = &m->layers[L->blk_res];
            L->xh = R->ih; L->xw = R->iw; L->xc = R->ic;
        } else if (br == SM_BRANCH_JOIN) {
            const sm_layer *S = &m->layers[L->blk_split];
            L->xh = S->ih; L->xw = S->iw; L->xc = S->ic;
        }
        if (sm_layer_kind_of(L)->uses_noise) m->uses_noise = 1;
        if ((st = sm_layer_setup(L, ih, iw, ic, i))) {
            char where[32];
            snprintf(where, sizeof where, "spec line %d", L->line);
            sm_errmsg_prefix(where);
            sm_model_free(m);
            return st;
        }
        L->param_offset = m->nparams;
        L->buffer_offset = m->nbuffers;
        m->nparams += L->nparams;
        m->nbuffers += L->nbuffers;
        ih = L->oh; iw = L->ow; ic = L->oc;
    }
    if (ih != 1 || iw != 1) {
        sm_model_free(m);
        return sm_fail(SM_ERR_SPEC, "spec ends with a %dx%dx%d feature map: end it with gap or fc to get a vector",
                       ih, iw, ic);
    }
    m->emb_dim = ic;
    if (m->nparams + m->nbuffers > max_params) {
        int64_t np = m->nparams + m->nbuffers;
        sm_model_free(m);
        return sm_fail(SM_ERR_SPEC, "the model has %lld parameters and statistics, more than the limit of %lld",
                       (long long)np, (long long)max_params);
    }
    /* fuse bn + relu (one pass instead of two, forward and backward); SIMILE_NO_FUSE=1 turns it
     * off, for testing that both paths agree */
    const char *nofuse = getenv("SIMILE_NO_FUSE");
    if (!(nofuse && *nofuse && *nofuse != '0'))
        for (int i = 0; i + 1 < m->nlayers; i++) {
            const sm_layer_kind *K = sm_layer_kind_of(&m->layers[i]);
            if (K->fuse_next) K->fuse_next(&m->layers[i], &m->layers[i + 1]);
        }
    int64_t np = m->nparams, nb = m->nbuffers;
    if (sm_params_create(&m->store, np, 0, nb)) { sm_model_free(m); return SM_ERR_NOMEM; }
    sm_model_bind(m);
    sm_rng rng;
    sm_rng_seed(&rng, seed);
    for (int i = 0; i < m->nlayers; i++) sm_layer_init_params(&m->layers[i], &rng);
    *out = m;
    return SM_OK;
}

void sm_model_bind(sm_model *m) {
    m->params = sm_params_val(&m->store, SM_SEG_LAYERS);
    m->grads = sm_params_grad(&m->store, SM_SEG_LAYERS);
    m->buffers = sm_params_val(&m->store, SM_SEG_BN);
    m->nhead = m->store.seg[SM_SEG_HEAD].n;
    m->head = m->nhead ? sm_params_val(&m->store, SM_SEG_HEAD) : NULL;
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        sm_layer_bind(L, m->params + L->param_offset, m->grads + L->param_offset, m->buffers + L->buffer_offset);
    }
}

sm_status sm_model_resize_head(sm_model *m, int64_t n) {
    if (n == m->store.seg[SM_SEG_HEAD].n) return SM_OK;
    sm_status st = sm_params_resize(&m->store, SM_SEG_HEAD, n);
    if (st) return st;
    sm_model_bind(m);
    return SM_OK;
}

static void free_acts(sm_model *m) {
    /* either array may be missing after a failed allocation (found by tests/test_faults.c) */
    for (int i = 0; i < m->nlayers; i++)
        if (!m->layers[i].fused) {
            if (m->act) sm_be_free(m->be, m->act[i]);
            if (m->dact) sm_be_free(m->be, m->dact[i]);
        }
    sm_free(m->act); sm_free(m->dact);
    m->act = m->dact = NULL;
    m->cap = 0;
}

void sm_model_free(sm_model *m) {
    if (!m) return;
    free_acts(m);
    if (m->layers)
        for (int i = 0; i < m->nlayers; i++) sm_layer_free_cache(&m->layers[i]);
    sm_params_free(&m->store);
    free(m->class_names);
    sm_free(m->layers); sm_free(m->spec); sm_free(m->summary); sm_free(m->profile_text);
    if (m->be) sm_be_free(m->be, m->ws.base);
    sm_free(m->shard_grad);
    sm_free(m);
}

sm_status sm_model_reserve(sm_model *m, int n) {
    if (n <= m->cap) return SM_OK;
    free_acts(m);
    m->act = sm_calloc((size_t)m->nlayers, sizeof(float *));
    m->dact = sm_calloc((size_t)m->nlayers, sizeof(float *));
    if (!m->act || !m->dact) { free_acts(m); return SM_ERR_NOMEM; }
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        if (L->fused && i > 0) { /* a fused relu works in place on its bn's buffers */
            m->act[i] = m->act[i - 1];
            m->dact[i] = m->dact[i - 1];
            continue;
        }
        size_t sz = (size_t)n * (size_t)sm_layer_out_size(L);
        if (sm_be_alloc(m->be, sz * sizeof(float), (void **)&m->act[i]) ||
            sm_be_alloc(m->be, sz * sizeof(float), (void **)&m->dact[i]) || sm_layer_alloc_cache(L, n)) {
            free_acts(m);
            return SM_ERR_NOMEM;
        }
    }
    /* one workspace for the kernels of every layer (they run one after another) */
    size_t ws = 0;
    for (int i = 0; i < m->nlayers; i++) {
        size_t need = sm_layer_workspace(&m->layers[i], n);
        if (need > ws) ws = need;
    }
    if (ws > m->ws.bytes) {
        void *p = NULL;
        if (sm_be_alloc(m->be, ws, &p)) { free_acts(m); return SM_ERR_NOMEM; }
        sm_be_free(m->be, m->ws.base);
        m->ws.base = p;
        m->ws.bytes = ws;
    }
    for (int i = 0; i < m->nlayers; i++) m->layers[i].ws = &m->ws;
    m->cap = n;
    return SM_OK;
}

/* The output of layer i of the last forward (the input x for i < 0). */
static const float *act_of(const sm_model *m, const float *x, int i) { return i < 0 ? x : m->act[i]; }

const float *sm_model_forward(sm_model *m, const float *x, int n, int train) {
    const float *in = x;
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        const sm_layer_kind *K = sm_layer_kind_of(L);
        /* a residual block's shortcut reads the block's input (res's output); its end reads the
         * main branch's output (the shortcut marker's input) or, without a shortcut, the input */
        if (K->branch == SM_BRANCH_SPLIT) L->aux = m->act[L->blk_res];
        else if (K->branch == SM_BRANCH_JOIN)
            L->aux = L->blk_split >= 0 ? act_of(m, x, L->blk_split - 1) : m->act[L->blk_res];
        /* dropout's mask: a key per step (the trainer's) and layer, so a seeded run repeats */
        if (K->uses_noise) {
            L->noise = sm_hash64(m->noise ^ sm_hash64((uint64_t)i + 1));
            L->noise_row0 = m->noise_row0;
        }
        double t0 = m->profile ? sm_now() : 0;
        if (train && K->forward_pool) { /* this layer and a pool after it (past a fused relu) in one pass */
            int j = i + 1;
            if (j < m->nlayers && m->layers[j].fused) j++;
            if (j < m->nlayers && K->forward_pool(L, &m->layers[j], in, m->act[j], n, train)) {
                if (m->profile) m->layers[i].t_fwd += sm_now() - t0; /* the pool's time counted with it */
                in = m->act[j];
                i = j;
                continue;
            }
        }
        sm_layer_forward(L, in, m->act[i], n, train);
        if (m->profile) m->layers[i].t_fwd += sm_now() - t0;
        in = m->act[i];
    }
    return in;
}

void sm_model_set_dist(sm_model *m, struct sm_dist *d) {
    for (int i = 0; i < m->nlayers; i++) m->layers[i].dist = d;
}

sm_status sm_model_set_shards(sm_model *m, int shards) {
    if (shards < 0) return sm_fail(SM_ERR_INVALID, "gradient shards must be >= 0 (got %d)", shards);
    if (shards > 1 && !m->shard_grad) {
        int64_t most = 1;
        for (int i = 0; i < m->nlayers; i++) if (m->layers[i].nparams > most) most = m->layers[i].nparams;
        if (!(m->shard_grad = sm_alloc((size_t)most, sizeof(float)))) return SM_ERR_NOMEM;
    }
    m->shards = shards > 1 ? shards : 0;
    for (int i = 0; i < m->nlayers; i++) {
        m->layers[i].shards = m->shards;
        m->layers[i].shard_grad = m->shard_grad;
    }
    return SM_OK;
}

void sm_model_backward(sm_model *m, const float *x, const float *dout, int n) {
    const float *dy = dout;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const float *in = i > 0 ? m->act[i - 1] : x;
        float *dx = i > 0 ? m->dact[i - 1] : NULL;
        sm_layer *L = &m->layers[i];
        const int br = sm_layer_kind_of(L)->branch;
        if (br == SM_BRANCH_OPEN || br == SM_BRANCH_SPLIT) {
            /* end's dy (still intact: only layers before end have written since) */
            const float *dy_end = L->blk_end == m->nlayers - 1 ? dout : m->dact[L->blk_end];
            /* res adds the shortcut's gradient of x: the shortcut section's input gradient (the
             * dy its marker received, kept in dact[shortcut]) or, for an identity shortcut, end's dy */
            L->daux = br == SM_BRANCH_SPLIT || L->blk_split < 0 ? dy_end : m->dact[L->blk_split];
        }
        double t0 = m->profile ? sm_now() : 0;
        sm_layer_backward(&m->layers[i], in, m->act[i], dy, dx, n);
        if (m->profile) m->layers[i].t_bwd += sm_now() - t0;
        dy = dx;
    }
}

const char *sm_model_profile(sm_model *m) {
    if (!m || !m->profile) return "";
    sm_free(m->profile_text);
    size_t cap = (size_t)(m->nlayers + 2) * 80, n = 0;
    m->profile_text = sm_alloc(cap, 1);
    if (!m->profile_text) return "";
    double tf = 0, tb = 0;
    for (int i = 0; i < m->nlayers; i++) { tf += m->layers[i].t_fwd; tb += m->layers[i].t_bwd; }
    n += (size_t)snprintf(m->profile_text, cap, "profile: layer        forward s  backward s   share\n");
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        if (n < cap)
            n += (size_t)snprintf(m->profile_text + n, cap - n, "profile: %3d %-8s %9.3f  %9.3f  %5.1f%%\n", i + 1,
                                  sm_layer_type_name(L->type), L->t_fwd, L->t_bwd,
                                  100.0 * (L->t_fwd + L->t_bwd) / (tf + tb > 0 ? tf + tb : 1));
        L->t_fwd = L->t_bwd = 0;
    }
    if (n < cap) snprintf(m->profile_text + n, cap - n, "profile: total        %9.3f  %9.3f\n", tf, tb);
    return m->profile_text;
}

const char *sm_model_errmsg(const sm_model *m) { return m ? m->errmsg : ""; }
const char *sm_model_spec(const sm_model *m) { return m ? m->spec : ""; }
int sm_model_embedding_dim(const sm_model *m) { return m ? m->emb_dim : 0; }
int64_t sm_model_num_params(const sm_model *m) { return m ? m->nparams : 0; }
int sm_model_num_classes(const sm_model *m) { return m ? m->classes : 0; }
const char *sm_model_loss_name(const sm_model *m) { return m ? m->loss_name : ""; }

void sm_model_input_shape(const sm_model *m, int *h, int *w, int *c) {
    if (h) *h = m ? m->in_h : 0;
    if (w) *w = m ? m->in_w : 0;
    if (c) *c = m ? m->in_c : 0;
}

uint32_t sm_model_fingerprint(const sm_model *m) {
    if (!m) return 0;
    uint32_t crc = sm_crc32(0, m->spec, strlen(m->spec));
    crc = sm_crc32(crc, m->params, (size_t)m->nparams * sizeof(float));
    crc = sm_crc32(crc, m->buffers, (size_t)m->nbuffers * sizeof(float));
    if (m->head) crc = sm_crc32(crc, m->head, (size_t)m->nhead * sizeof(float));
    return crc;
}

const char *sm_model_summary(sm_model *m) {
    if (!m) return "";
    sm_free(m->summary);
    size_t cap = (size_t)(m->nlayers + 4) * 96;
    m->summary = sm_alloc(cap, 1);
    if (!m->summary) return "";
    size_t n = (size_t)snprintf(m->summary, cap, "input %dx%dx%d\n", m->in_h, m->in_w, m->in_c);
    for (int i = 0; i < m->nlayers && n < cap; i++) {
        const sm_layer *L = &m->layers[i];
        n += (size_t)snprintf(m->summary + n, cap - n, "%3d %-8s -> %4dx%-4dx%5d  %8lld params\n", i + 1,
                              sm_layer_type_name(L->type), L->oh, L->ow, L->oc, (long long)L->nparams);
    }
    if (n < cap)
        snprintf(m->summary + n, cap - n, "total %lld parameters, embedding %d%s\n", (long long)m->nparams,
                 m->emb_dim, m->classes ? ", classifier head" : "");
    return m->summary;
}

sm_status sm_model_set_head(sm_model *m, const char *loss_name, const char *loss_options,
                            const float *params, int64_t n, int classes) {
    if (strlen(loss_name) >= sizeof m->loss_name || strlen(loss_options) >= sizeof m->loss_options)
        return sm_fail(SM_ERR_INVALID, "loss name or options too long");
    sm_status st = sm_model_resize_head(m, n > 0 ? n : 0);
    if (st) return st;
    if (n > 0 && m->head != params) memcpy(m->head, params, (size_t)n * sizeof(float));
    m->classes = classes;
    strcpy(m->loss_name, loss_name);
    strcpy(m->loss_options, loss_options);
    return SM_OK;
}

/* NaN/Inf anywhere in the n inputs x: SM_ERR_NUMERIC naming the block of SM_INFER_BATCH samples. */
static sm_status check_inputs(sm_model *m, const float *x, int64_t n) {
    const int64_t in = (int64_t)m->in_h * m->in_w * m->in_c;
    for (int64_t s = 0; s < n; s += SM_INFER_BATCH) {
        int64_t b = n - s < SM_INFER_BATCH ? n - s : SM_INFER_BATCH;
        if (!sm_all_finite(x + s * in, b * in))
            return model_fail(m, sm_fail(SM_ERR_NUMERIC, "non-finite input value in samples %lld..%lld",
                                         (long long)s, (long long)(s + b - 1)));
    }
    return SM_OK;
}

sm_status sm_model_update_bn(sm_model *m, const float *x, int64_t n, int batch) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_update_bn: model is NULL");
    if (!x || n < 2 || batch < 2)
        return model_fail(m, sm_fail(SM_ERR_INVALID, "sm_model_update_bn: needs data, n >= 2 and batch >= 2"));
    if (!m->nbuffers) return SM_OK;
    const int64_t in = (int64_t)m->in_h * m->in_w * m->in_c;
    sm_status st = check_inputs(m, x, n);
    if (st) return st;
    if (batch > n) batch = (int)n;
    float *saved = sm_alloc((size_t)m->nbuffers, sizeof(float));
    if (!saved) return model_fail(m, SM_ERR_NOMEM);
    st = sm_model_reserve(m, batch);
    if (st) { sm_free(saved); return model_fail(m, st); }
    memcpy(saved, m->buffers, sizeof(float) * (size_t)m->nbuffers);
    float *moms = sm_alloc((size_t)m->nlayers + 1, sizeof(float));
    if (!moms) { sm_free(saved); return model_fail(m, SM_ERR_NOMEM); }
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        moms[i] = L->momentum;
        const sm_layer_kind *K = sm_layer_kind_of(L);
        if (K->reset_stats) K->reset_stats(L);
    }
    /* a cumulative average: batch k (0-based) enters with weight 1/(k+1); a last batch of fewer
     * than 2 inputs is skipped (its variance is undefined) */
    int64_t k = 0;
    for (int64_t s = 0; s + 1 < n; s += batch, k++) {
        int b = (int)(n - s < batch ? n - s : batch);
        for (int i = 0; i < m->nlayers; i++)
            if (sm_layer_kind_of(&m->layers[i])->reset_stats) m->layers[i].momentum = 1.0f / (float)(k + 1);
        sm_model_forward(m, x + s * in, b, 1);
    }
    for (int i = 0; i < m->nlayers; i++) m->layers[i].momentum = moms[i];
    sm_free(moms);
    if (!sm_all_finite(m->buffers, m->nbuffers)) {
        memcpy(m->buffers, saved, sizeof(float) * (size_t)m->nbuffers);
        sm_free(saved);
        return model_fail(m, sm_fail(SM_ERR_NUMERIC, "batch-norm statistics became non-finite; left as they were"));
    }
    sm_free(saved);
    return SM_OK;
}

sm_status sm_model_embed(sm_model *m, const float *x, int64_t n, float *emb) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_embed: model is NULL");
    if (!x || !emb || n < 0) return model_fail(m, sm_fail(SM_ERR_INVALID, "sm_model_embed: NULL buffer or negative n"));
    sm_status st = check_inputs(m, x, n);
    if (st) return st;
    /* the inference plan, also under SIMILE_PROFILE (which times its stages) */
    return model_fail(m, sm_model_infer(m, x, n, emb));
}

sm_status sm_model_head_logits(sm_model *m, const float *emb, int64_t n, float *logits) {
    if (!m->classes || !m->head)
        return model_fail(m, sm_fail(SM_ERR_UNSUPPORTED, "the model has no classifier head (trained with loss '%s')",
                                     m->loss_name[0] ? m->loss_name : "none"));
    /* the kind's forward on the store's head segment, no loss object */
    sm_head head;
    sm_status st = sm_head_open(&head, m->loss_name, m->loss_options, m->emb_dim, m->head, m->nhead, m->classes);
    if (st) return model_fail(m, st);
    if (n > 0) st = head.kind->head_logits(&head, emb, (int)n, logits);
    return model_fail(m, st);
}

sm_status sm_model_logits(sm_model *m, const float *x, int64_t n, float *logits) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_logits: model is NULL");
    if (!m->classes || !m->head) return sm_model_head_logits(m, NULL, 0, logits); /* its error */
    float *emb = sm_alloc((size_t)(n > 0 ? n : 1), sizeof(float) * (size_t)m->emb_dim);
    if (!emb) return model_fail(m, SM_ERR_NOMEM);
    sm_status st = sm_model_embed(m, x, n, emb);
    if (!st) st = sm_model_head_logits(m, emb, n, logits);
    sm_free(emb);
    return model_fail(m, st);
}

/* ---- fine-tuning: tensors taken from another model ---------------------------------------- */
typedef struct tensor_ref { char name[64]; int ndim, dims[4]; float *data; int64_t count; int layer; } tensor_ref;
typedef struct tensor_list { tensor_ref *t; int n, cap, layer; } tensor_list;

static sm_status collect_fn(void *ctx, const char *name, int ndim, const int *dims, float *data) {
    tensor_list *l = ctx;
    if (!l->t || l->n >= l->cap) { l->n++; return SM_OK; } /* the counting pass */
    tensor_ref *r = &l->t[l->n++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->ndim = ndim < 4 ? ndim : 4;
    r->count = 1;
    for (int i = 0; i < ndim; i++) { if (i < 4) r->dims[i] = dims[i]; r->count *= dims[i]; }
    r->data = data;
    r->layer = l->layer;
    return SM_OK;
}

/* Every layer tensor of m (a counting pass, then the list; l->t is sm_free'd by the caller). */
static sm_status collect(const sm_model *m, tensor_list *l) {
    memset(l, 0, sizeof *l);
    sm_status st = SM_OK;
    for (int pass = 0; pass < 2 && !st; pass++) {
        if (pass) {
            l->cap = l->n; l->n = 0;
            if (!(l->t = sm_alloc((size_t)(l->cap ? l->cap : 1), sizeof *l->t))) return SM_ERR_NOMEM;
        }
        for (int i = 0; i < m->nlayers && !st; i++) {
            l->layer = i;
            st = sm_layer_tensors((sm_layer *)&m->layers[i], i, collect_fn, l);
        }
    }
    return st;
}

static size_t shape_text(const tensor_ref *r, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < r->ndim && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, "%s%d", i ? ", " : "", r->dims[i]);
    if (n < cap) n += (size_t)snprintf(buf + n, cap - n, ")");
    return n;
}

sm_status sm_model_init_from(sm_model *m, const sm_model *src, int64_t *taken, char *report, size_t cap) {
    if (taken) *taken = 0;
    if (report && cap) report[0] = 0;
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_init_from: model is NULL");
    if (!src) return model_fail(m, sm_fail(SM_ERR_INVALID, "sm_model_init_from: source model is NULL"));
    tensor_list a, b;
    sm_status st = collect(m, &a);
    if (!st) st = collect(src, &b);
    else memset(&b, 0, sizeof b);
    if (st) { sm_free(a.t); sm_free(b.t); return model_fail(m, st); }
    int64_t n_taken = 0;
    size_t pos = 0;
    for (int i = 0; i < a.n; i++) {
        const tensor_ref *r = &a.t[i], *s = NULL;
        for (int j = 0; j < b.n && !s; j++) if (!strcmp(b.t[j].name, r->name)) s = &b.t[j];
        int same = s && s->ndim == r->ndim && s->count == r->count;
        for (int k = 0; same && k < r->ndim; k++) same = s->dims[k] == r->dims[k];
        char sh[96], ssh[96] = "";
        shape_text(r, sh, sizeof sh);
        if (s) shape_text(s, ssh, sizeof ssh);
        if (same) {
            memcpy(r->data, s->data, sizeof(float) * (size_t)r->count);
            m->layers[r->layer].pretrained = 1;
            n_taken++;
        }
        if (report && pos < cap)
            pos += (size_t)snprintf(report + pos, cap - pos, same ? "taken      %s %s\n"
                                    : s ? "not taken  %s %s: the source's is %s\n" : "not taken  %s %s: not in the source\n",
                                    r->name, sh, ssh);
    }
    sm_free(a.t); sm_free(b.t);
    if (taken) *taken = n_taken;
    if (!n_taken)
        return model_fail(m, sm_fail(SM_ERR_MISMATCH, "no tensor of the source model has the name and shape of one of this "
                                     "model's (names are <layer>.<kind>.<tensor>, e.g. 1.conv.weight)"));
    return SM_OK;
}

sm_status sm_model_cut(const sm_model *m, int layer, sm_model **out) {
    if (out) *out = NULL;
    if (!m || !out) return sm_fail(SM_ERR_INVALID, "sm_model_cut: NULL argument");
    if (layer < 1 || layer > m->nlayers)
        return sm_fail(SM_ERR_INVALID, "cut after layer %d: the model has layers 1..%d", layer, m->nlayers);
    const sm_layer *L = &m->layers[layer - 1];
    int open = -1; /* the residual block layer `layer` is in, if any */
    for (int i = 0; i < layer; i++) {
        const int br = sm_layer_kind_of(&m->layers[i])->branch;
        if (br == SM_BRANCH_OPEN) open = i;
        else if (br == SM_BRANCH_JOIN) open = -1;
    }
    if (open >= 0) {
        const int end = m->layers[open].blk_end;
        return sm_fail(SM_ERR_INVALID, "cut after layer %d (%s): it is inside the residual block of layers %d..%d; cut at "
                       "its 'end' (%d) or before its 'res' (%d)", layer, sm_layer_kind_of(L)->name, open + 1, end + 1,
                       end + 1, open);
    }
    /* m->spec is canonical, one layer a line: the trunk's spec is its first `layer` lines */
    const char *p = m->spec;
    for (int i = 0; i < layer && p; i++) { p = strchr(p, '\n'); if (p) p++; }
    size_t len = p ? (size_t)(p - m->spec) : strlen(m->spec);
    const int add_norm = !strcmp(sm_layer_kind_of(&m->layers[m->nlayers - 1])->name, "l2norm") &&
                         strcmp(sm_layer_kind_of(L)->name, "l2norm");
    char *spec = sm_alloc(len + 16, 1);
    if (!spec) return SM_ERR_NOMEM;
    memcpy(spec, m->spec, len);
    spec[len] = 0;
    if (len && spec[len - 1] != '\n') strcat(spec, "\n");
    if (add_norm) strcat(spec, "l2norm\n");
    sm_model *c = NULL;
    sm_status st = sm_model_create(&c, spec, m->in_h, m->in_w, m->in_c, 1);
    sm_free(spec);
    if (!st) st = sm_model_init_from(c, m, NULL, NULL, 0);
    if (!st) {
        for (int i = 0; i < c->nlayers; i++) c->layers[i].pretrained = 0;
        c->norm = m->norm;
        if (m->nclass_names > 0) st = sm_model_set_class_names(c, (const char *const *)m->class_names, m->nclass_names);
        c->val_epoch = m->val_epoch; c->val_map_at_r = m->val_map_at_r; c->val_best = m->val_best;
    }
    if (st) { sm_model_free(c); return st; }
    *out = c;
    return SM_OK;
}

int sm_model_find_layer(const sm_model *m, const char *name) {
    if (!m || !name || !*name) return 0;
    char *end;
    long i = strtol(name, &end, 10);
    if (end == name || i < 1 || i > m->nlayers) return 0;
    if (!*end) return (int)i;
    /* "N.kind": the kind must be the one of layer N */
    if (*end == '.' && !strcmp(end + 1, sm_layer_kind_of(&m->layers[i - 1])->name)) return (int)i;
    return 0;
}

int sm_model_selection(const sm_model *m, double *val_map_at_r, int *best) {
    if (val_map_at_r) *val_map_at_r = m ? m->val_map_at_r : 0;
    if (best) *best = m ? m->val_best : 0;
    return m ? m->val_epoch : 0;
}
