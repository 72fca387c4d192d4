/* loss.c - the loss registry, option parsing and the public sm_loss_* wrappers. */
#include "loss/loss.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Every loss kind, defined in its own file. */
extern const sm_loss_kind sm_loss_softmax, sm_loss_focal;
#include "loss/registry.inc"

static const sm_loss_kind *const kinds[] = {
    &sm_loss_softmax, &sm_loss_focal, SM_LOSS_REGISTRY NULL
};

const sm_loss_kind *sm_loss_kind_at(int i) {
    if (i < 0 || i >= (int)(sizeof kinds / sizeof kinds[0])) return NULL;
    return kinds[i];
}

sm_status sm_loss_describe(int i, const char **name, const char **help) {
    const sm_loss_kind *k = sm_loss_kind_at(i);
    if (!k) return SM_ERR_NOTFOUND;
    if (name) *name = k->name;
    if (help) *help = k->help ? k->help : "";
    return SM_OK;
}

const sm_loss_kind *sm_loss_kind_find(const char *name) {
    for (int i = 0; kinds[i]; i++)
        if (strcmp(kinds[i]->name, name) == 0) return kinds[i];
    return NULL;
}

/* Find key in options; returns pointer to value start and its length, or NULL. */
static const char *opt_find(const char *options, const char *key, size_t *vlen) {
    if (!options) return NULL;
    size_t klen = strlen(key);
    const char *p = options;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq && (size_t)(eq - p) == klen && strncmp(p, key, klen) == 0) {
            *vlen = (size_t)(end - eq - 1);
            return eq + 1;
        }
        p = end;
    }
    return NULL;
}

sm_status sm_opt_str(const char *options, const char *key, const char *def, char *out, size_t cap) {
    size_t n;
    const char *v = opt_find(options, key, &n);
    if (!v) { v = def; n = strlen(def); }
    if (n + 1 > cap) return sm_fail(SM_ERR_INVALID, "option %s: value too long", key);
    memcpy(out, v, n);
    out[n] = 0;
    return SM_OK;
}

sm_status sm_opt_float(const char *options, const char *key, float def, float *out) {
    char buf[64];
    size_t n;
    if (!opt_find(options, key, &n)) { *out = def; return SM_OK; }
    sm_status st = sm_opt_str(options, key, "", buf, sizeof buf);
    if (st) return st;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || *end || errno || !(v == v) || v > 3e38 || v < -3e38)
        return sm_fail(SM_ERR_INVALID, "option %s: '%s' is not a finite number", key, buf);
    *out = (float)v;
    return SM_OK;
}

sm_status sm_opt_int(const char *options, const char *key, int def, int *out) {
    char buf[64];
    size_t n;
    if (!opt_find(options, key, &n)) { *out = def; return SM_OK; }
    sm_status st = sm_opt_str(options, key, "", buf, sizeof buf);
    if (st) return st;
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (end == buf || *end || errno || v < -2147483647L || v > 2147483647L)
        return sm_fail(SM_ERR_INVALID, "option %s: '%s' is not an integer", key, buf);
    *out = (int)v;
    return SM_OK;
}

sm_status sm_opt_check(const char *options, const char *const *known) {
    if (!options) return SM_OK;
    const char *p = options;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        if (!*p) break;
        const char *end = p;
        while (*end && *end != ',') end++;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) return sm_fail(SM_ERR_INVALID, "option '%.*s' is not of the form key=value", (int)(end - p), p);
        int ok = 0;
        for (int i = 0; known[i]; i++)
            if (strlen(known[i]) == (size_t)(eq - p) && strncmp(p, known[i], (size_t)(eq - p)) == 0) ok = 1;
        if (!ok) return sm_fail(SM_ERR_INVALID, "unknown option '%.*s'", (int)(eq - p), p);
        p = end;
    }
    return SM_OK;
}

sm_status sm_loss_alloc_params(sm_loss *l, int64_t n) {
    l->params = sm_calloc((size_t)n, sizeof(float));
    l->grads = sm_calloc((size_t)n, sizeof(float));
    if (!l->params || !l->grads) return SM_ERR_NOMEM;
    l->nparams = n;
    return SM_OK;
}

sm_status sm_loss_create(sm_loss **out, const char *name, const char *options, int dim, uint64_t seed) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_loss_create: out is NULL");
    *out = NULL;
    if (!name) return sm_fail(SM_ERR_INVALID, "sm_loss_create: name is NULL");
    if (dim <= 0 || dim > (1 << 20)) return sm_fail(SM_ERR_INVALID, "loss %s: bad embedding dimension %d", name, dim);
    const sm_loss_kind *k = sm_loss_kind_find(name);
    if (!k) return sm_fail(SM_ERR_NOTFOUND, "unknown loss '%s' (see `simile losses`)", name);
    if (options && strlen(options) >= sizeof((sm_loss *)0)->options)
        return sm_fail(SM_ERR_INVALID, "loss %s: options too long", name);
    sm_loss *l = sm_calloc(1, sizeof *l);
    if (!l) return SM_ERR_NOMEM;
    l->kind = k;
    l->dim = dim;
    l->seed = seed;
    if (options) strcpy(l->options, options);
    sm_status st = k->init(l, options ? options : "");
    if (st) {
        sm_errmsg_prefix(name);
        sm_loss_free(l);
        return st;
    }
    *out = l;
    return SM_OK;
}

void sm_loss_free(sm_loss *l) {
    if (!l) return;
    if (l->kind && l->kind->destroy) l->kind->destroy(l);
    sm_free(l->own_params ? l->own_params : l->params);
    sm_free(l->own_grads ? l->own_grads : l->grads);
    sm_free(l);
}

void sm_loss_bind(sm_loss *l, float *params, float *grads) {
    sm_loss_unbind(l);
    if (!l->nparams) return;
    if (params != l->params) memcpy(params, l->params, sizeof(float) * (size_t)l->nparams);
    l->own_params = l->params; l->own_grads = l->grads;
    l->params = params; l->grads = grads;
}

void sm_loss_unbind(sm_loss *l) {
    if (!l->own_params) return;
    memcpy(l->own_params, l->params, sizeof(float) * (size_t)l->nparams);
    l->params = l->own_params; l->grads = l->own_grads;
    l->own_params = l->own_grads = NULL;
}

sm_head sm_loss_head(const sm_loss *l) {
    sm_head h = {l->kind, l->params, l->nparams, l->dim, l->classes, l->options};
    return h;
}

sm_status sm_head_open(sm_head *h, const char *loss_name, const char *options, int dim,
                       const float *params, int64_t nparams, int classes) {
    const sm_loss_kind *k = sm_loss_kind_find(loss_name);
    if (!k || !k->head_logits || !k->head_params)
        return sm_fail(SM_ERR_UNSUPPORTED, "loss '%s' gives no class logits", loss_name);
    int oc = 0;
    sm_status st = sm_opt_int(options, "classes", 0, &oc);
    if (st) { sm_errmsg_prefix(loss_name); return st; }
    /* logits has room for `classes` columns (sm_model_num_classes): a file whose loss options
     * name another class count must not write past it (found by fuzz_model) */
    if (oc != classes)
        return sm_fail(SM_ERR_FORMAT, "the model has %d classes, its loss options '%s' say %d", classes,
                       options, oc);
    if (classes < 1 || dim < 1) return sm_fail(SM_ERR_FORMAT, "head of %d classes on dimension %d", classes, dim);
    int64_t want = k->head_params(dim, classes);
    if (want != nparams)
        return sm_fail(SM_ERR_FORMAT, "head of %lld values, loss '%s' expects %lld", (long long)nparams,
                       loss_name, (long long)want);
    sm_head r = {k, params, nparams, dim, classes, options};
    *h = r;
    return SM_OK;
}

const char *sm_loss_errmsg(const sm_loss *l) { return l ? l->errmsg : ""; }
const char *sm_loss_name(const sm_loss *l) { return l ? l->kind->name : ""; }

sm_status sm_loss_compute(sm_loss *l, const float *emb, const int32_t *labels, int n, int d,
                          float *value, float *grad) {
    sm_status st;
    if (!l || !emb || !labels || !value || n < 0) {
        st = sm_fail(SM_ERR_INVALID, "sm_loss_compute: NULL argument or negative n");
    } else if (d != l->dim) {
        st = sm_fail(SM_ERR_MISMATCH, "%s: embedding dimension %d, loss built for %d", l->kind->name, d, l->dim);
    } else if (!sm_all_finite(emb, (int64_t)n * d)) {
        st = sm_fail(SM_ERR_NUMERIC, "%s: non-finite value in the embeddings", l->kind->name);
    } else {
        for (int i = 0; i < n; i++)
            if (labels[i] < 0) {
                st = sm_fail(SM_ERR_RANGE, "%s: negative label %d at row %d", l->kind->name, labels[i], i);
                goto done;
            }
        st = l->kind->compute(l, emb, labels, n, d, value, grad);
    }
done:
    if (st && l) sm_errmsg_copy(l->errmsg);
    return st;
}

void sm_loss_params(sm_loss *l, float **params, float **grads, int64_t *count) {
    if (params) *params = l ? l->params : NULL;
    if (grads) *grads = l ? l->grads : NULL;
    if (count) *count = l ? l->nparams : 0;
}
