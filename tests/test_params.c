/* test_params.c - the parameter store (src/model/params.c) and what a model keeps in it:
 *   - segments: names, offsets, sizes, trainable flags; lookup by name; the gradient block
 *     and the optimiser moments mirror the trainable prefix;
 *   - resizing the head keeps every other segment's values (and the head's first values);
 *   - the one-loop optimiser step over the store equals the old per-block updates
 *     (sm_optim_step on the layers' block and on the loss's block, each with its own state)
 *     bit for bit, for SGD, Adam and AdamW over several steps; the EMA loop equals the old
 *     per-block formula;
 *   - a model's views (params, grads, buffers, head) and every layer's tensors point into the
 *     store, and are bound again (values kept) when the head is resized;
 *   - logits from a stored head (no loss object) equal the loss's own logits bit for bit
 *     (softmax, arcface, proxyanchor), and a stored head that does not fit its loss options is
 *     refused with a message. */
#include "core/core.h"
#include "loss/loss.h"
#include "model/model.h"
#include "model/params.h"
#include "optim/optim.h"
#include "simile.h"
#include "testing.h"
#include <string.h>

static void test_segments(void) {
    sm_params p;
    CHECK_OK(sm_params_create(&p, 5, 3, 4));
    CHECK(p.n == 12 && p.ntrain == 8);
    const char *names[3] = {"layers", "head", "bn_buffers"};
    const int64_t off[3] = {0, 5, 8}, n[3] = {5, 3, 4};
    for (int s = 0; s < SM_NSEG; s++) {
        const sm_param_seg *g = sm_params_find(&p, names[s]);
        CHECK_MSG(g == &p.seg[s] && g->off == off[s] && g->n == n[s], "segment %s", names[s]);
        CHECK(g && g->trainable == (s != SM_SEG_BN));
        CHECK(sm_params_val(&p, s) == p.val + off[s]);
    }
    CHECK(sm_params_find(&p, "nope") == NULL && sm_params_find(&p, NULL) == NULL);
    CHECK(sm_params_grad(&p, SM_SEG_LAYERS) == p.grad && sm_params_grad(&p, SM_SEG_HEAD) == p.grad + 5);
    CHECK(sm_params_grad(&p, SM_SEG_BN) == NULL);
    CHECK(p.m == NULL && p.v == NULL);
    CHECK_OK(sm_params_reset_moments(&p));
    int zero = p.t == 0;
    for (int64_t i = 0; i < p.ntrain; i++) zero &= p.m[i] == 0 && p.v[i] == 0 && p.grad[i] == 0;
    CHECK_MSG(zero, "fresh moments and gradients are not zero");
    sm_params_drop_moments(&p);
    CHECK(p.m == NULL && p.v == NULL);
    CHECK_OK(sm_params_reset_moments(&p));
    /* resize the head: the others keep their values, the head its first ones */
    for (int64_t i = 0; i < p.n; i++) p.val[i] = (float)(i + 1);
    for (int64_t i = 0; i < p.ntrain; i++) p.grad[i] = (float)(-i - 1);
    CHECK_OK(sm_params_resize(&p, SM_SEG_HEAD, 6));
    CHECK(p.n == 15 && p.ntrain == 11 && p.seg[SM_SEG_BN].off == 11 && p.m == NULL);
    int kept = 1;
    for (int i = 0; i < 5; i++) kept &= p.val[i] == (float)(i + 1) && p.grad[i] == (float)(-i - 1);
    for (int i = 0; i < 3; i++) kept &= p.val[5 + i] == (float)(6 + i) && p.grad[5 + i] == (float)(-6 - i);
    for (int i = 3; i < 6; i++) kept &= p.val[5 + i] == 0 && p.grad[5 + i] == 0;
    for (int i = 0; i < 4; i++) kept &= p.val[11 + i] == (float)(9 + i);
    CHECK_MSG(kept, "resizing the head lost values");
    CHECK_OK(sm_params_resize(&p, SM_SEG_HEAD, 0));
    CHECK(p.n == 9 && p.ntrain == 5 && p.val[5] == 9.0f && p.val[8] == 12.0f);
    CHECK_STATUS(sm_params_resize(&p, 7, 1), SM_ERR_INVALID);
    CHECK(sm_errmsg()[0] != 0);
    sm_params_free(&p);
    sm_params_free(&p); /* twice: a no-op */
}

/* The one loop over the store against the old two blocks with their own states. */
static void test_step_equals_blocks(void) {
    const int64_t NL = 37, NH = 11, NB = 6;
    const sm_optimizer opts[3] = {SM_OPT_SGD, SM_OPT_ADAM, SM_OPT_ADAMW};
    for (int o = 0; o < 3; o++) {
        sm_train_config cfg;
        sm_train_config_default(&cfg);
        cfg.optimizer = opts[o];
        cfg.weight_decay = o == 2 ? 0.01f : 0.003f;
        sm_params p;
        CHECK_OK(sm_params_create(&p, NL, NH, NB));
        CHECK_OK(sm_params_reset_moments(&p));
        float a[37], b[11], ga[37], gb[11];
        sm_optim_state sa, sb;
        CHECK_OK(sm_optim_init(&sa, NL));
        CHECK_OK(sm_optim_init(&sb, NH));
        sm_rng rng;
        sm_rng_seed(&rng, 11 + (uint64_t)o);
        for (int64_t i = 0; i < p.n; i++) p.val[i] = sm_rng_normal(&rng);
        memcpy(a, p.val, sizeof a);
        memcpy(b, p.val + NL, sizeof b);
        int same = 1;
        for (int step = 0; step < 5; step++) {
            for (int64_t i = 0; i < p.ntrain; i++) p.grad[i] = sm_rng_normal(&rng);
            memcpy(ga, p.grad, sizeof ga);
            memcpy(gb, p.grad + NL, sizeof gb);
            float lr = 0.01f * (float)(step + 1);
            sm_params_step(&p, &cfg, lr);
            sm_optim_step(&cfg, &sa, a, ga, lr);
            sm_optim_step(&cfg, &sb, b, gb, lr);
            same &= memcmp(a, p.val, sizeof a) == 0 && memcmp(b, p.val + NL, sizeof b) == 0;
            same &= memcmp(sa.m, p.m, sizeof a) == 0 && memcmp(sb.m, p.m + NL, sizeof b) == 0;
            if (opts[o] != SM_OPT_SGD) same &= memcmp(sa.v, p.v, sizeof a) == 0 && memcmp(sb.v, p.v + NL, sizeof b) == 0;
        }
        CHECK_MSG(same, "optimizer %d: the store's step differs from the per-block updates", o);
        CHECK(p.t == 5);
        /* bn statistics are not trained */
        CHECK(p.val[NL + NH] != 0 || p.val[NL + NH + 1] != 0);
        /* EMA: one loop equals d avg + (1 - d) val per value */
        float avg[54], want[54];
        for (int64_t i = 0; i < p.n; i++) avg[i] = want[i] = (float)i * 0.5f;
        sm_params_ema_update(&p, avg, 0.9f, 3);
        float d = 4.0f / 13.0f;
        for (int64_t i = 0; i < p.n; i++) want[i] = d * want[i] + (1 - d) * p.val[i];
        CHECK(memcmp(avg, want, sizeof(float) * (size_t)p.n) == 0);
        float v0 = p.val[0], a0 = avg[0];
        sm_params_ema_swap(&p, avg);
        CHECK(p.val[0] == a0 && avg[0] == v0);
        sm_optim_free(&sa); sm_optim_free(&sb);
        sm_params_free(&p);
    }
}

static const char *SPEC = "conv 4 k=3 p=1; bn; relu; gap; fc 5; l2norm";

static int layers_in_store(const sm_model *m) {
    int ok = 1;
    const float *v = m->store.val, *g = m->store.grad;
    for (int i = 0; i < m->nlayers; i++) {
        const sm_layer *L = &m->layers[i];
        if (L->W) ok &= L->W == v + L->param_offset && L->dW == g + L->param_offset;
        if (L->gamma) ok &= L->gamma == v + L->param_offset && L->dgamma == g + L->param_offset;
        if (L->run_mean) ok &= L->run_mean == v + m->store.seg[SM_SEG_BN].off + L->buffer_offset;
    }
    return ok;
}

static void test_model_store(void) {
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, SPEC, 6, 6, 2, 3));
    if (!m) return;
    CHECK(m->store.seg[SM_SEG_LAYERS].n == m->nparams && m->store.seg[SM_SEG_BN].n == m->nbuffers);
    CHECK(m->params == m->store.val && m->grads == m->store.grad && m->head == NULL && m->nhead == 0);
    CHECK(m->buffers == m->store.val + m->nparams);
    CHECK_MSG(layers_in_store(m), "a layer's tensors are not in the store");
    float *before = malloc(sizeof(float) * (size_t)m->store.n);
    memcpy(before, m->store.val, sizeof(float) * (size_t)m->store.n);
    float head[30];
    for (int i = 0; i < 30; i++) head[i] = 0.01f * (float)i;
    CHECK_OK(sm_model_set_head(m, "softmax", "classes=5", head, 30, 5));
    CHECK(m->nhead == 30 && m->head == m->store.val + m->nparams && memcmp(m->head, head, sizeof head) == 0);
    CHECK(m->buffers == m->store.val + m->nparams + 30);
    CHECK_MSG(layers_in_store(m), "a layer's tensors were not bound again after the head grew");
    CHECK(memcmp(before, m->params, sizeof(float) * (size_t)m->nparams) == 0);
    CHECK(memcmp(before + m->nparams, m->buffers, sizeof(float) * (size_t)m->nbuffers) == 0);
    free(before);
    sm_model_free(m);
}

/* Logits from the model's stored head equal the loss object's logits on the same embeddings. */
static void test_stored_head_logits(void) {
    const char *losses[3][2] = {{"softmax", "classes=3"}, {"arcface", "classes=3,scale=30"}, {"proxyanchor", "classes=3"}};
    sm_rng rng;
    sm_rng_seed(&rng, 5);
    float x[7 * 72];
    for (int i = 0; i < 7 * 72; i++) x[i] = (float)sm_rng_uniform(&rng);
    for (int k = 0; k < 3; k++) {
        sm_model *m = NULL;
        sm_loss *l = NULL;
        CHECK_OK(sm_model_create(&m, SPEC, 6, 6, 2, 3));
        CHECK_OK(sm_loss_create(&l, losses[k][0], losses[k][1], 5, 9));
        if (!m || !l) { sm_model_free(m); sm_loss_free(l); continue; }
        CHECK_OK(sm_model_set_head(m, losses[k][0], losses[k][1], l->params, l->nparams, l->classes));
        float emb[7 * 5], z1[7 * 3], z2[7 * 3];
        CHECK_OK(sm_model_embed(m, x, 7, emb));
        CHECK_OK(l->kind->logits(l, emb, 7, z1));
        CHECK_OK(sm_model_logits(m, x, 7, z2));
        CHECK_MSG(memcmp(z1, z2, sizeof z1) == 0, "%s: stored-head logits differ from the loss's", losses[k][0]);
        /* a head that does not fit its options */
        CHECK_OK(sm_model_set_head(m, losses[k][0], "classes=4", l->params, l->nparams, 3));
        CHECK_STATUS(sm_model_logits(m, x, 7, z2), SM_ERR_FORMAT);
        CHECK(strstr(sm_model_errmsg(m), "classes") != NULL);
        CHECK_OK(sm_model_set_head(m, losses[k][0], losses[k][1], l->params, l->nparams - 1, 3));
        CHECK_STATUS(sm_model_logits(m, x, 7, z2), SM_ERR_FORMAT);
        CHECK(strstr(sm_model_errmsg(m), "expects") != NULL);
        sm_model_free(m);
        sm_loss_free(l);
    }
    sm_model *m = NULL;
    CHECK_OK(sm_model_create(&m, SPEC, 6, 6, 2, 3));
    float h[4] = {0};
    if (m) {
        float z[3];
        CHECK_OK(sm_model_set_head(m, "multisimilarity", "", h, 4, 3));
        CHECK_STATUS(sm_model_logits(m, x, 1, z), SM_ERR_UNSUPPORTED);
        CHECK(strstr(sm_model_errmsg(m), "no class logits") != NULL);
    }
    sm_model_free(m);
}

/* A loss bound to outside parameters computes with them and gets the values back unbound. */
static void test_loss_bind(void) {
    sm_loss *l = NULL;
    CHECK_OK(sm_loss_create(&l, "softmax", "classes=2", 3, 4));
    if (!l) return;
    float *own = l->params, store[8], gstore[8] = {0};
    float first[8];
    memcpy(first, own, sizeof first);
    sm_loss_bind(l, store, gstore);
    CHECK(l->params == store && l->grads == gstore && memcmp(store, first, sizeof first) == 0);
    float *pp, *gg;
    int64_t cnt;
    sm_loss_params(l, &pp, &gg, &cnt);
    CHECK(pp == store && gg == gstore && cnt == 8);
    const float emb[6] = {1, 0, 0, 0, 1, 0};
    const int32_t y[2] = {0, 1};
    float v, g[6];
    CHECK_OK(sm_loss_compute(l, emb, y, 2, 3, &v, g));
    int moved = 0;
    for (int i = 0; i < 8; i++) moved |= gstore[i] != 0;
    CHECK_MSG(moved, "the bound loss did not accumulate into the outside gradient");
    store[0] = 42.0f;
    sm_loss_unbind(l);
    CHECK(l->params == own && own[0] == 42.0f);
    sm_loss_unbind(l); /* twice: a no-op */
    sm_loss_free(l);
    /* freed while bound: its own blocks are released (the sanitizer build checks) */
    CHECK_OK(sm_loss_create(&l, "softmax", "classes=2", 3, 4));
    if (l) sm_loss_bind(l, store, gstore);
    sm_loss_free(l);
}

int main(void) {
    test_segments();
    test_step_equals_blocks();
    test_model_store();
    test_stored_head_logits();
    test_loss_bind();
    TEST_MAIN_END();
}
