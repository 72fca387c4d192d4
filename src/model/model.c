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
    sm_status st = sm_spec_parse(spec, &m->layers, &m->nlayers, &m->spec);
    if (st) { sm_model_free(m); return st; }
    /* shapes and block sizes */
    int ih = h, iw = w, ic = c;
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
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
            if (m->act) sm_free(m->act[i]);
            if (m->dact) sm_free(m->dact[i]);
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
    sm_free(m->layers); sm_free(m->spec); sm_free(m->summary); sm_free(m->profile_text); sm_free(m->ws.base);
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
        m->act[i] = sm_alloc(sz, sizeof(float));
        m->dact[i] = sm_alloc(sz, sizeof(float));
        if (!m->act[i] || !m->dact[i] || sm_layer_alloc_cache(L, n)) { free_acts(m); return SM_ERR_NOMEM; }
    }
    /* one workspace for the kernels of every layer (they run one after another) */
    size_t ws = 0;
    for (int i = 0; i < m->nlayers; i++) {
        size_t need = sm_layer_workspace(&m->layers[i], n);
        if (need > ws) ws = need;
    }
    if (ws > m->ws.bytes) {
        void *p = sm_alloc(ws, 1);
        if (!p) { free_acts(m); return SM_ERR_NOMEM; }
        sm_free(m->ws.base);
        m->ws.base = p;
        m->ws.bytes = ws;
    }
    for (int i = 0; i < m->nlayers; i++) m->layers[i].ws = &m->ws;
    m->cap = n;
    return SM_OK;
}

const float *sm_model_forward(sm_model *m, const float *x, int n, int train) {
    const float *in = x;
    for (int i = 0; i < m->nlayers; i++) {
        double t0 = m->profile ? sm_now() : 0;
        sm_layer_forward(&m->layers[i], in, m->act[i], n, train);
        if (m->profile) m->layers[i].t_fwd += sm_now() - t0;
        in = m->act[i];
    }
    return in;
}

void sm_model_backward(sm_model *m, const float *x, const float *dout, int n) {
    const float *dy = dout;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const float *in = i > 0 ? m->act[i - 1] : x;
        float *dx = i > 0 ? m->dact[i - 1] : NULL;
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

sm_status sm_model_logits(sm_model *m, const float *x, int64_t n, float *logits) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_logits: model is NULL");
    if (!m->classes || !m->head)
        return model_fail(m, sm_fail(SM_ERR_UNSUPPORTED, "the model has no classifier head (trained with loss '%s')",
                                     m->loss_name[0] ? m->loss_name : "none"));
    /* the kind's forward on the store's head segment, no loss object */
    sm_head head;
    sm_status st = sm_head_open(&head, m->loss_name, m->loss_options, m->emb_dim, m->head, m->nhead, m->classes);
    if (st) return model_fail(m, st);
    float *emb = sm_alloc((size_t)(n > 0 ? n : 1), sizeof(float) * (size_t)m->emb_dim);
    if (!emb) return model_fail(m, SM_ERR_NOMEM);
    st = sm_model_embed(m, x, n, emb);
    if (!st && n > 0) st = head.kind->head_logits(&head, emb, (int)n, logits);
    sm_free(emb);
    return model_fail(m, st);
}
