/* onnx_import.c - an ONNX model (protobuf, decoded by the C protoc-c generates from
 * third_party/onnx/onnx.proto) into a simile model.  The nodes the embedding depends on are
 * walked in the file's topological order; each activation value carries its shape (C, H, W) and
 * its place in a chain of simile layers (a persistent list: two branches that meet in an Add are
 * a residual block from their common ancestor).  Weights are converted from NCHW / OIHW to
 * simile's NHWC / (oc, k, k, ic); the first fc after a flatten of a spatial map gets its columns
 * permuted from CHW to HWC order.  The layers become spec text, the model is built from it and
 * the converted weights are copied into its parameter store.  docs/interop.md has the table. */
#include "interop/onnx.h"
#include "model/model.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifndef SIMILE_HAVE_ONNX
int sm_onnx_available(void) { return 0; }
sm_status sm_onnx_import_buffer(sm_model **out, const unsigned char *data, size_t len, const char *name,
                                const sm_onnx_import_options *opt) {
    if (out) *out = NULL;
    return sm_fail(SM_ERR_UNSUPPORTED, "%s: simile was built without ONNX support (protobuf-c)", name ? name : "");
}
sm_status sm_model_import_onnx(sm_model **out, const char *path, const sm_onnx_import_options *opt) {
    return sm_onnx_import_buffer(out, NULL, 0, path, opt);
}
#else
#include "onnx/onnx.pb-c.h"

int sm_onnx_available(void) { return 1; }

/* ---- the values of the graph ---------------------------------------------------------------- */
enum { V_ACT = 1, V_CONST, V_SHAPE, V_NORM };

typedef struct value {
    const char *name;
    int kind;
    const Onnx__TensorProto *t; /* V_CONST */
    int c, h, w;                /* V_ACT: per-sample shape (C, H, W) */
    int vec;                    /* V_ACT: flattened (CHW order when h * w > 1) */
    int chain;                  /* V_ACT: its last chain entry (-1: the input itself) */
    int src;                    /* V_NORM: the value whose L2 norm this is; V_SHAPE: whose shape */
} value;

/* ---- the chain of simile layers ------------------------------------------------------------- */
enum { W_NONE, W_CONV, W_FC, W_BN };
enum { C_LAYER, C_BLOCK };

typedef struct chain {
    int parent, type;
    char text[112];             /* the spec line */
    int wkind;                  /* W_*: which parameters the layer takes */
    int n;                      /* output channels (the length of b, gamma, ...) */
    int64_t nw;                 /* weights in w */
    float *w, *b, *g, *beta, *mean, *var;
    int *main, nmain, *sc, nsc; /* C_BLOCK: chain entries of the main path and of the shortcut */
} chain;

typedef struct imp {
    const char *src;            /* file name for messages */
    Onnx__GraphProto *g;
    value *v; int nv, capv;
    int *hash; int nhash;       /* open addressing over v by name */
    chain *ch; int nch, capch;
    int node;                   /* index of the node being mapped (messages) */
    char future[160];           /* constructs the parser may not have yet (residual, padding) */
    int future_node;            /* the first node that needs one */
    int *mark; int stamp;       /* op_add's ancestor marks (capch) */
    int64_t block_entries;      /* chain entries copied into residual blocks (bounded) */
} imp;

static const char *op_of(const Onnx__NodeProto *nd) { return nd->op_type ? nd->op_type : "?"; }
static const char *name_of(const Onnx__NodeProto *nd) { return nd->name && *nd->name ? nd->name : "(unnamed)"; }

/* A failure about the node being mapped: "FILE: ONNX node 3 'name' (Op): ..." */
static sm_status node_fail(imp *I, sm_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static sm_status node_fail(imp *I, sm_status st, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const Onnx__NodeProto *nd = I->g->node[I->node];
    return sm_fail(st, "%s: ONNX node at position %d '%.80s' (%.40s): %s", I->src, I->node, name_of(nd), op_of(nd), msg);
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int find_value(const imp *I, const char *name) {
    if (!name || !I->nhash) return -1;
    for (uint64_t k = hash_str(name) & (uint64_t)(I->nhash - 1);; k = (k + 1) & (uint64_t)(I->nhash - 1)) {
        int i = I->hash[k];
        if (i < 0) return -1;
        if (!strcmp(I->v[i].name, name)) return i;
    }
}

/* A new value named name (a later definition of the same name replaces it in the lookup). */
static value *add_value(imp *I, const char *name, int kind) {
    if (I->nv == I->capv) return NULL; /* sized for every initializer and node output */
    value *v = &I->v[I->nv];
    memset(v, 0, sizeof *v);
    v->name = name; v->kind = kind; v->chain = -1; v->src = -1;
    uint64_t k = hash_str(name) & (uint64_t)(I->nhash - 1);
    while (I->hash[k] >= 0 && strcmp(I->v[I->hash[k]].name, name)) k = (k + 1) & (uint64_t)(I->nhash - 1);
    I->hash[k] = I->nv++;
    return v;
}

static chain *add_chain(imp *I, int parent, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static chain *add_chain(imp *I, int parent, const char *fmt, ...) {
    if (I->nch == I->capch) return NULL;
    chain *c = &I->ch[I->nch++];
    memset(c, 0, sizeof *c);
    c->parent = parent;
    c->type = C_LAYER;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->text, sizeof c->text, fmt, ap);
    va_end(ap);
    return c;
}

/* ---- attributes ------------------------------------------------------------------------------- */
static const Onnx__AttributeProto *attr(const Onnx__NodeProto *nd, const char *name) {
    for (size_t i = 0; i < nd->n_attribute; i++)
        if (nd->attribute[i]->name && !strcmp(nd->attribute[i]->name, name)) return nd->attribute[i];
    return NULL;
}
static int64_t attr_int(const Onnx__NodeProto *nd, const char *name, int64_t dflt) {
    const Onnx__AttributeProto *a = attr(nd, name);
    return a && a->has_i ? a->i : dflt;
}
static float attr_float(const Onnx__NodeProto *nd, const char *name, float dflt) {
    const Onnx__AttributeProto *a = attr(nd, name);
    return a && a->has_f ? a->f : dflt;
}
/* The ints of an attribute: its count, or -1 when absent. */
static int attr_ints(const Onnx__NodeProto *nd, const char *name, const int64_t **v) {
    const Onnx__AttributeProto *a = attr(nd, name);
    if (!a) return -1;
    *v = a->ints;
    return a->n_ints > 64 ? 64 : (int)a->n_ints;
}
/* All n values of an int list equal (n 0: trivially), into *out. */
static int all_equal(const int64_t *v, int n, int64_t *out) {
    for (int i = 1; i < n; i++)
        if (v[i] != v[0]) return 0;
    if (n > 0) *out = v[0];
    return 1;
}

/* ---- tensors ---------------------------------------------------------------------------------- */
/* Element count of t (dims checked: rank <= 8, each in [0, 2^31), product <= limit). */
static sm_status tensor_count(imp *I, const Onnx__TensorProto *t, int64_t limit, int64_t *count) {
    if (t->n_dims > SM_ONNX_MAX_RANK)
        return sm_fail(SM_ERR_FORMAT, "%s: tensor '%.80s' has rank %zu (limit %d)", I->src, t->name ? t->name : "",
                       t->n_dims, SM_ONNX_MAX_RANK);
    int64_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || t->dims[i] > INT32_MAX || (t->dims[i] && n > limit / t->dims[i]))
            return sm_fail(SM_ERR_FORMAT, "%s: tensor '%.80s' has a bad or too large shape (dimension %zu is %lld)",
                           I->src, t->name ? t->name : "", i, (long long)t->dims[i]);
        n *= t->dims[i];
    }
    *count = n;
    return SM_OK;
}

/* The float32 data of t (count values), converted to a new buffer; lengths checked first. */
static sm_status tensor_floats(imp *I, const Onnx__TensorProto *t, int64_t *count, float **out) {
    *out = NULL;
    const char *nm = t->name ? t->name : "";
    if (t->n_external_data || (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL))
        return sm_fail(SM_ERR_FORMAT, "%s: tensor '%.80s' keeps its data in an external file: not supported "
                       "(save the model with its data inside, e.g. onnx.save(m, f, save_as_external_data=False))", I->src, nm);
    if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return sm_fail(SM_ERR_UNSUPPORTED, "%s: tensor '%.80s' has data type %d: only float32 weights are read", I->src, nm,
                       t->data_type);
    sm_status st = tensor_count(I, t, SM_MAX_PARAMS, count);
    if (st) return st;
    int64_t n = *count;
    if (t->has_raw_data) {
        if ((uint64_t)t->raw_data.len != (uint64_t)n * 4)
            return sm_fail(SM_ERR_FORMAT, "%s: tensor '%.80s' has %zu bytes of data for %lld floats", I->src, nm,
                           t->raw_data.len, (long long)n);
    } else if ((int64_t)t->n_float_data != n) {
        return sm_fail(SM_ERR_FORMAT, "%s: tensor '%.80s' has %zu values for a shape of %lld", I->src, nm,
                       t->n_float_data, (long long)n);
    }
    float *f = sm_alloc((size_t)(n ? n : 1), sizeof(float));
    if (!f) return SM_ERR_NOMEM;
    if (t->has_raw_data && n) memcpy(f, t->raw_data.data, (size_t)n * 4); /* little-endian, as ONNX stores it */
    else if (n) memcpy(f, t->float_data, (size_t)n * 4);
    if (!sm_all_finite(f, n)) {
        sm_free(f);
        return sm_fail(SM_ERR_FORMAT, "%s: tensor '%.80s' holds NaN or Inf", I->src, nm);
    }
    *out = f;
    return SM_OK;
}

/* The int64 values of a small constant t (at most cap), for shapes and axes. */
static sm_status tensor_ints(imp *I, const Onnx__TensorProto *t, int64_t *vals, int cap, int *count) {
    int64_t n;
    sm_status st = tensor_count(I, t, cap, &n);
    if (st) return node_fail(I, SM_ERR_UNSUPPORTED, "constant '%.80s' is not a short list of integers", t->name ? t->name : "");
    if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || t->n_external_data)
        return node_fail(I, SM_ERR_UNSUPPORTED, "constant '%.80s' is not int64", t->name ? t->name : "");
    if (t->has_raw_data) {
        if ((uint64_t)t->raw_data.len != (uint64_t)n * 8) return node_fail(I, SM_ERR_FORMAT, "constant with bad data length");
        if (n) memcpy(vals, t->raw_data.data, (size_t)n * 8);
    } else {
        if ((int64_t)t->n_int64_data != n) return node_fail(I, SM_ERR_FORMAT, "constant with bad value count");
        if (n) memcpy(vals, t->int64_data, (size_t)n * 8);
    }
    *count = (int)n;
    return SM_OK;
}

/* One float scalar constant (the eps of F.normalize's Clip / Max). */
static sm_status tensor_scalar(imp *I, const Onnx__TensorProto *t, float *out) {
    int64_t n;
    float *f;
    sm_status st = tensor_floats(I, t, &n, &f);
    if (st) return st;
    if (n != 1) { sm_free(f); return node_fail(I, SM_ERR_UNSUPPORTED, "expected a scalar constant"); }
    *out = f[0];
    sm_free(f);
    return SM_OK;
}

/* ---- inputs of a node --------------------------------------------------------------------- */
/* Input i of the current node (NULL when it is absent or empty); an undefined name fails. */
static sm_status input(imp *I, const Onnx__NodeProto *nd, size_t i, value **out) {
    *out = NULL;
    if (i >= nd->n_input || !nd->input[i] || !*nd->input[i]) return SM_OK;
    int k = find_value(I, nd->input[i]);
    if (k < 0)
        return node_fail(I, SM_ERR_FORMAT, "input '%.80s' is not defined before this node (a graph input, an "
                         "initializer or an earlier node's output)", nd->input[i]);
    *out = &I->v[k];
    return SM_OK;
}
static sm_status input_act(imp *I, const Onnx__NodeProto *nd, size_t i, value **out) {
    sm_status st = input(I, nd, i, out);
    if (st) return st;
    if (!*out || (*out)->kind != V_ACT)
        return node_fail(I, SM_ERR_UNSUPPORTED, "input %zu is not the network's activation (only a chain of layers "
                         "on the image is mapped)", i);
    return SM_OK;
}
static sm_status input_const(imp *I, const Onnx__NodeProto *nd, size_t i, value **out) {
    sm_status st = input(I, nd, i, out);
    if (st) return st;
    if (!*out || (*out)->kind != V_CONST)
        return node_fail(I, SM_ERR_UNSUPPORTED, "input %zu must be an initializer or a constant", i);
    return SM_OK;
}

/* The node's first output as a new activation of shape (c, h, w) after chain entry ch. */
static sm_status out_act(imp *I, const Onnx__NodeProto *nd, int c, int h, int w, int vec, int ch) {
    if (nd->n_output < 1 || !nd->output[0] || !*nd->output[0]) return node_fail(I, SM_ERR_FORMAT, "no output");
    value *o = add_value(I, nd->output[0], V_ACT);
    if (!o) return SM_ERR_NOMEM;
    o->c = c; o->h = h; o->w = w; o->vec = vec; o->chain = ch;
    return SM_OK;
}

static int spatial(const value *x) { return (int64_t)x->h * x->w > 1; }

/* Note a construct the mapped spec uses that the model parser may not have yet. */
static void need_future(imp *I, const char *what) {
    if (strstr(I->future, what)) return;
    if (!I->future[0]) I->future_node = I->node;
    size_t n = strlen(I->future);
    snprintf(I->future + n, sizeof I->future - n, "%s%s", n ? " and " : "", what);
}

/* ---- the operators -------------------------------------------------------------------------- */
/* Square window, equal strides, equal pads, dilation 1: into k, s, p. */
static sm_status window(imp *I, const Onnx__NodeProto *nd, int *k, int *s, int *p, int kdflt) {
    const int64_t *v;
    int n;
    int64_t kk = kdflt, ss = 1, pp = 0;
    const char *ap = NULL;
    const Onnx__AttributeProto *a = attr(nd, "auto_pad");
    if (a && a->has_s) ap = (const char *)a->s.data;
    if (a && a->has_s && !(a->s.len == 6 && !memcmp(ap, "NOTSET", 6)) && !(a->s.len == 5 && !memcmp(ap, "VALID", 5)))
        return node_fail(I, SM_ERR_UNSUPPORTED, "auto_pad %.*s: only explicit pads are mapped",
                         ap ? (int)(a->s.len > 16 ? 16 : a->s.len) : 0, ap ? ap : "");
    if ((n = attr_ints(nd, "kernel_shape", &v)) >= 0 && (n != 2 || !all_equal(v, n, &kk)))
        return node_fail(I, SM_ERR_UNSUPPORTED, "only square 2-D windows are mapped");
    if ((n = attr_ints(nd, "strides", &v)) >= 0 && (n != 2 || !all_equal(v, n, &ss)))
        return node_fail(I, SM_ERR_UNSUPPORTED, "only equal strides are mapped");
    if ((n = attr_ints(nd, "pads", &v)) >= 0 && (n != 4 || !all_equal(v, n, &pp)))
        return node_fail(I, SM_ERR_UNSUPPORTED, "only the same padding on every side is mapped");
    int64_t d = 1;
    if ((n = attr_ints(nd, "dilations", &v)) >= 0 && (!all_equal(v, n, &d) || d != 1))
        return node_fail(I, SM_ERR_UNSUPPORTED, "dilation other than 1 is not mapped");
    if (attr_int(nd, "ceil_mode", 0) != 0) return node_fail(I, SM_ERR_UNSUPPORTED, "ceil_mode 1 is not mapped");
    if (kk < 1 || kk > 4096 || ss < 1 || ss > 4096 || pp < 0 || pp > 4096)
        return node_fail(I, SM_ERR_UNSUPPORTED, "window %lld, stride %lld or padding %lld out of range",
                         (long long)kk, (long long)ss, (long long)pp);
    *k = (int)kk; *s = (int)ss; *p = (int)pp;
    return SM_OK;
}

static sm_status op_conv(imp *I, const Onnx__NodeProto *nd) {
    value *x, *wv, *bv;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x)) || (st = input_const(I, nd, 1, &wv)) || (st = input(I, nd, 2, &bv))) return st;
    if (bv && bv->kind != V_CONST) return node_fail(I, SM_ERR_UNSUPPORTED, "the bias must be an initializer");
    if (x->vec) return node_fail(I, SM_ERR_UNSUPPORTED, "a convolution of a flattened vector");
    if (attr_int(nd, "group", 1) != 1) return node_fail(I, SM_ERR_UNSUPPORTED, "group %lld: only group 1 is mapped",
                                                        (long long)attr_int(nd, "group", 1));
    const Onnx__TensorProto *t = wv->t;
    if (t->n_dims != 4) return node_fail(I, SM_ERR_UNSUPPORTED, "weight of rank %zu (a 2-D convolution has 4)", t->n_dims);
    int k, s, p;
    if ((st = window(I, nd, &k, &s, &p, (int)(t->dims[2] > 0 && t->dims[2] < 4096 ? t->dims[2] : 1)))) return st;
    if (t->dims[1] != x->c || t->dims[2] != k || t->dims[3] != k || t->dims[0] < 1 || t->dims[0] > 1000000)
        return node_fail(I, SM_ERR_FORMAT, "weight of shape %lldx%lldx%lldx%lld for %d input channels and a %dx%d kernel",
                         (long long)t->dims[0], (long long)t->dims[1], (long long)t->dims[2], (long long)t->dims[3], x->c, k, k);
    const int oc = (int)t->dims[0], ic = x->c;
    if (x->h + 2 * p < k || x->w + 2 * p < k) return node_fail(I, SM_ERR_FORMAT, "kernel larger than the padded input");
    int64_t n;
    float *W;
    if ((st = tensor_floats(I, t, &n, &W))) return st;
    float *b = NULL;
    if (bv) {
        if ((st = tensor_floats(I, bv->t, &n, &b))) { sm_free(W); return st; }
        if (n != oc) { sm_free(W); sm_free(b); return node_fail(I, SM_ERR_FORMAT, "bias of %lld values for %d channels", (long long)n, oc); }
    }
    float *Ws = sm_alloc((size_t)oc * k * k, (size_t)ic * sizeof(float)); /* (oc, k, k, ic) */
    chain *c = add_chain(I, x->chain, "conv %d k=%d s=%d p=%d bias=%d", oc, k, s, p, b ? 1 : 0);
    if (!Ws || !c) { sm_free(W); sm_free(b); sm_free(Ws); return SM_ERR_NOMEM; }
    for (int o = 0; o < oc; o++) /* OIHW -> O H W I */
        for (int i = 0; i < ic; i++)
            for (int y = 0; y < k; y++)
                for (int xx = 0; xx < k; xx++)
                    Ws[(((int64_t)o * k + y) * k + xx) * ic + i] = W[(((int64_t)o * ic + i) * k + y) * k + xx];
    sm_free(W);
    c->wkind = W_CONV; c->w = Ws; c->nw = (int64_t)oc * k * k * ic; c->b = b; c->n = oc;
    return out_act(I, nd, oc, (x->h + 2 * p - k) / s + 1, (x->w + 2 * p - k) / s + 1, 0, (int)(c - I->ch));
}

static sm_status op_bn(imp *I, const Onnx__NodeProto *nd) {
    value *x, *p[4];
    sm_status st;
    if ((st = input_act(I, nd, 0, &x))) return st;
    for (int j = 0; j < 4; j++)
        if ((st = input_const(I, nd, (size_t)j + 1, &p[j]))) return st;
    if (x->vec && spatial(x)) return node_fail(I, SM_ERR_UNSUPPORTED, "batch norm of a flattened spatial map");
    /* outputs 1-4 (the running and saved statistics of training, which PyTorch's PRESERVE mode
     * writes) are left undefined: a node that reads them fails as reading an undefined input */
    if (attr_int(nd, "training_mode", 0) != 0)
        return node_fail(I, SM_ERR_UNSUPPORTED, "batch norm in training mode (training_mode 1)");
    float eps = attr_float(nd, "epsilon", 1e-5f);
    if (!(eps > 0 && eps < 1)) return node_fail(I, SM_ERR_UNSUPPORTED, "epsilon %g", eps);
    float *a[4] = {0};
    for (int j = 0; j < 4 && !st; j++) {
        int64_t n;
        st = tensor_floats(I, p[j]->t, &n, &a[j]);
        if (!st && n != x->c) st = node_fail(I, SM_ERR_FORMAT, "parameter %d has %lld values for %d channels", j + 1, (long long)n, x->c);
    }
    if (!st)
        for (int i = 0; i < x->c; i++)
            if (a[3][i] + eps <= 0) { st = node_fail(I, SM_ERR_FORMAT, "running variance %g of channel %d is negative", a[3][i], i); break; }
    chain *c = st ? NULL : add_chain(I, x->chain, "bn eps=%g", eps);
    if (!c) {
        for (int j = 0; j < 4; j++) sm_free(a[j]);
        return st ? st : SM_ERR_NOMEM;
    }
    c->wkind = W_BN; c->n = x->c; c->g = a[0]; c->beta = a[1]; c->mean = a[2]; c->var = a[3];
    return out_act(I, nd, x->c, x->h, x->w, x->vec, (int)(c - I->ch));
}

/* relu, and the identities (Identity, Dropout at inference, Flatten / Reshape of a vector) */
static sm_status op_simple(imp *I, const Onnx__NodeProto *nd, const char *layer) {
    value *x;
    sm_status st;
    if (!layer) { /* an Identity of a constant (PyTorch writes them for shared weights) is that constant */
        if ((st = input(I, nd, 0, &x))) return st;
        if (x && x->kind == V_CONST && nd->n_output >= 1 && nd->output[0] && *nd->output[0]) {
            const Onnx__TensorProto *t = x->t;
            value *o = add_value(I, nd->output[0], V_CONST);
            if (!o) return SM_ERR_NOMEM;
            o->t = t;
            return SM_OK;
        }
    }
    if ((st = input_act(I, nd, 0, &x))) return st;
    int ch = x->chain;
    if (layer) {
        chain *c = add_chain(I, x->chain, "%s", layer);
        if (!c) return SM_ERR_NOMEM;
        ch = (int)(c - I->ch);
    }
    return out_act(I, nd, x->c, x->h, x->w, x->vec, ch);
}

static sm_status op_pool(imp *I, const Onnx__NodeProto *nd, const char *kind) {
    value *x;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x))) return st;
    if (x->vec) return node_fail(I, SM_ERR_UNSUPPORTED, "pooling of a flattened vector");
    if (attr_int(nd, "storage_order", 0) != 0) return node_fail(I, SM_ERR_UNSUPPORTED, "storage_order 1");
    if (nd->n_output > 1 && nd->output[1] && *nd->output[1]) return node_fail(I, SM_ERR_UNSUPPORTED, "the indices output");
    int k, s, p;
    if ((st = window(I, nd, &k, &s, &p, 0))) return st;
    if (!attr(nd, "kernel_shape")) return node_fail(I, SM_ERR_FORMAT, "kernel_shape is required");
    if (x->h + 2 * p < k || x->w + 2 * p < k) return node_fail(I, SM_ERR_FORMAT, "window larger than the input");
    chain *c;
    if (p) {
        if (!strcmp(kind, "avgpool"))
            return node_fail(I, SM_ERR_UNSUPPORTED, "average pooling with padding is not mapped (pads %d)", p);
        /* ResNet's stem: "maxpool p=" comes with the residual layers */
        c = add_chain(I, x->chain, "%s k=%d s=%d p=%d", kind, k, s, p);
        need_future(I, "max-pool padding (maxpool p=)");
    } else {
        c = add_chain(I, x->chain, "%s k=%d s=%d", kind, k, s);
    }
    if (!c) return SM_ERR_NOMEM;
    return out_act(I, nd, x->c, (x->h + 2 * p - k) / s + 1, (x->w + 2 * p - k) / s + 1, 0, (int)(c - I->ch));
}

static sm_status op_gap(imp *I, const Onnx__NodeProto *nd) {
    value *x;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x))) return st;
    if (x->vec) return node_fail(I, SM_ERR_UNSUPPORTED, "pooling of a flattened vector");
    chain *c = add_chain(I, x->chain, "gap");
    if (!c) return SM_ERR_NOMEM;
    return out_act(I, nd, x->c, 1, 1, 0, (int)(c - I->ch));
}

/* Flatten (axis 1) and Reshape to (batch, features): a no-op on simile's side; the next fc reads
 * the map in its own order and gets its columns permuted. */
static sm_status op_flatten(imp *I, const Onnx__NodeProto *nd, int reshape) {
    value *x, *sv;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x))) return st;
    const int64_t total = (int64_t)x->c * x->h * x->w;
    if (reshape) {
        if ((st = input_const(I, nd, 1, &sv))) return st;
        int64_t s[8];
        int n;
        if ((st = tensor_ints(I, sv->t, s, 8, &n))) return st;
        /* (batch or 0 or -1, features or -1), with batch standing for itself */
        int ok = n == 2 && (s[1] == total || (s[1] == -1 && s[0] != -1)) && (s[0] == 0 || s[0] == -1 || s[0] >= 1);
        if (ok && s[0] == -1 && s[1] != total) ok = 0;
        if (!ok) return node_fail(I, SM_ERR_UNSUPPORTED, "only a reshape to (batch, %lld) is mapped", (long long)total);
    } else if (attr_int(nd, "axis", 1) != 1) {
        return node_fail(I, SM_ERR_UNSUPPORTED, "axis %lld: only axis 1 is mapped", (long long)attr_int(nd, "axis", 1));
    }
    return out_act(I, nd, x->c, x->h, x->w, 1, x->chain);
}

/* Gemm (A x op(B) * alpha + C * beta) and MatMul (A x B) with constant B: an fc layer. */
static sm_status op_fc(imp *I, const Onnx__NodeProto *nd, int gemm) {
    value *x, *wv, *bv = NULL;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x)) || (st = input_const(I, nd, 1, &wv))) return st;
    if (gemm && (st = input(I, nd, 2, &bv))) return st;
    if (bv && bv->kind != V_CONST) return node_fail(I, SM_ERR_UNSUPPORTED, "C must be an initializer");
    if (!x->vec && spatial(x)) return node_fail(I, SM_ERR_UNSUPPORTED, "a product of a spatial map (flatten it first)");
    int transb = gemm ? (int)attr_int(nd, "transB", 0) : 0;
    if (gemm && attr_int(nd, "transA", 0)) return node_fail(I, SM_ERR_UNSUPPORTED, "transA 1");
    float alpha = gemm ? attr_float(nd, "alpha", 1) : 1, beta = gemm ? attr_float(nd, "beta", 1) : 1;
    const Onnx__TensorProto *t = wv->t;
    const int64_t in = (int64_t)x->c * x->h * x->w;
    if (t->n_dims != 2) return node_fail(I, SM_ERR_UNSUPPORTED, "B of rank %zu (2 is mapped)", t->n_dims);
    int64_t rows = transb ? t->dims[1] : t->dims[0], oc64 = transb ? t->dims[0] : t->dims[1];
    if (rows != in || oc64 < 1 || oc64 > 1000000)
        return node_fail(I, SM_ERR_FORMAT, "B of shape %lldx%lld for %lld input features", (long long)t->dims[0],
                         (long long)t->dims[1], (long long)in);
    const int oc = (int)oc64;
    int64_t n;
    float *W, *b = NULL;
    if ((st = tensor_floats(I, t, &n, &W))) return st;
    if (bv) {
        int64_t cnt;
        if ((st = tensor_count(I, bv->t, 1 << 30, &cnt))) { sm_free(W); return st; }
        if ((st = tensor_floats(I, bv->t, &n, &b))) { sm_free(W); return st; }
        if (n != oc) { sm_free(W); sm_free(b); return node_fail(I, SM_ERR_UNSUPPORTED, "C of %lld values for %d outputs (only a bias is mapped)", (long long)n, oc); }
        for (int o = 0; o < oc; o++) b[o] *= beta;
    }
    float *Ws = sm_alloc((size_t)oc, (size_t)in * sizeof(float)); /* (oc, in), simile's column order */
    chain *c = add_chain(I, x->chain, "fc %d bias=%d", oc, b ? 1 : 0);
    if (!Ws || !c) { sm_free(W); sm_free(b); sm_free(Ws); return SM_ERR_NOMEM; }
    const int64_t hw = (int64_t)x->h * x->w, C = x->c;
    for (int o = 0; o < oc; o++)
        for (int64_t j = 0; j < in; j++) {
            /* ONNX column j of a flattened (C, H, W) map is channel j / hw at position j % hw;
             * simile's fc reads (H, W, C): column (j % hw) * C + j / hw */
            int64_t js = x->vec && hw > 1 ? (j % hw) * C + j / hw : j;
            float v = transb ? W[(int64_t)o * in + j] : W[j * oc + o];
            Ws[(int64_t)o * in + js] = alpha * v;
        }
    sm_free(W);
    c->wkind = W_FC; c->w = Ws; c->nw = (int64_t)oc * in; c->b = b; c->n = oc;
    if (!sm_all_finite(Ws, c->nw) || (b && !sm_all_finite(b, oc))) /* alpha, beta can overflow them */
        return node_fail(I, SM_ERR_FORMAT, "alpha %g and beta %g make the weights or the bias not finite", alpha, beta);
    return out_act(I, nd, oc, 1, 1, 1, (int)(c - I->ch));
}

/* The chain entries after ancestor a up to e, in order, into out (at most cap; the count
 * returned, -1 if a is not an ancestor of e within cap entries). */
static int path_after(const imp *I, int a, int e, int *out, int cap) {
    int n = 0;
    for (int i = e; i != a; i = I->ch[i].parent) {
        if (i < 0 || n == cap) return -1;
        out[n++] = i;
    }
    for (int i = 0; i < n / 2; i++) { int t = out[i]; out[i] = out[n - 1 - i]; out[n - 1 - i] = t; }
    return n;
}

/* Add: two activations that meet (a residual block from their common ancestor), or an fc's
 * output plus a constant of its width (MatMul + Add: the bias). */
static sm_status op_add(imp *I, const Onnx__NodeProto *nd) {
    value *a, *b;
    sm_status st;
    if ((st = input(I, nd, 0, &a)) || (st = input(I, nd, 1, &b))) return st;
    if (!a || !b) return node_fail(I, SM_ERR_FORMAT, "needs two inputs");
    if (a->kind == V_CONST && b->kind == V_ACT) { value *t = a; a = b; b = t; }
    if (a->kind == V_ACT && b->kind == V_CONST) {
        chain *c = a->chain >= 0 ? &I->ch[a->chain] : NULL;
        if (!c || c->wkind != W_FC || c->b)
            return node_fail(I, SM_ERR_UNSUPPORTED, "adding a constant is mapped only as the bias of a MatMul");
        int64_t n;
        float *bias;
        if ((st = tensor_floats(I, b->t, &n, &bias))) return st;
        if (n != c->n) { sm_free(bias); return node_fail(I, SM_ERR_UNSUPPORTED, "a constant of %lld values added to %d features", (long long)n, c->n); }
        c->b = bias;
        snprintf(c->text, sizeof c->text, "fc %d bias=1", c->n);
        return out_act(I, nd, a->c, a->h, a->w, a->vec, a->chain);
    }
    if (a->kind != V_ACT || b->kind != V_ACT) return node_fail(I, SM_ERR_UNSUPPORTED, "the inputs are not activations");
    if (a->vec || b->vec) return node_fail(I, SM_ERR_UNSUPPORTED, "adding flattened vectors is not mapped");
    if (a->c != b->c || a->h != b->h || a->w != b->w)
        return node_fail(I, SM_ERR_UNSUPPORTED, "adding maps of shapes %dx%dx%d and %dx%dx%d", a->c, a->h, a->w, b->c, b->h, b->w);
    /* the block starts at the common ancestor (the input, -1, at the latest): mark a's
     * ancestors, walk up from b to the first marked one; the longer branch is the main path */
    int pa = a->chain, pb = b->chain, anc = -1;
    I->stamp++;
    int la = 0, lb = 0;
    for (int i = pa; i >= 0; i = I->ch[i].parent) I->mark[i] = I->stamp;
    for (int i = pb; i >= 0; i = I->ch[i].parent, lb++)
        if (I->mark[i] == I->stamp) { anc = i; break; }
    for (int i = pa; i != anc; i = I->ch[i].parent) la++;
    I->block_entries += la + lb;
    if (I->block_entries > 4 * (int64_t)I->capch + 1024)
        return node_fail(I, SM_ERR_RANGE, "the residual blocks of this graph share too many layers to be mapped");
    int *ma = sm_alloc((size_t)la + 1, sizeof(int)), *mb = sm_alloc((size_t)lb + 1, sizeof(int));
    if (!ma || !mb) { sm_free(ma); sm_free(mb); return SM_ERR_NOMEM; }
    int na = path_after(I, anc, pa, ma, la), nb = path_after(I, anc, pb, mb, lb);
    if (na < nb) { int *t = ma; ma = mb; mb = t; int tn = na; na = nb; nb = tn; }
    if (na <= 0 || nb < 0) { sm_free(ma); sm_free(mb); return node_fail(I, SM_ERR_UNSUPPORTED, "an Add of a value to itself"); }
    /* a branch entry inside a nested block is itself a block entry, so paths are flat lists */
    chain *c = add_chain(I, anc, "res");
    if (!c) { sm_free(ma); sm_free(mb); return SM_ERR_NOMEM; }
    c->type = C_BLOCK; c->main = ma; c->nmain = na; c->sc = mb; c->nsc = nb;
    need_future(I, "residual blocks (res ... shortcut ... end)");
    return out_act(I, nd, a->c, a->h, a->w, 0, (int)(c - I->ch));
}

/* F.normalize's pattern: ReduceL2(x, axes 1, keepdims 1) -> Clip / Max(eps) -> [Expand to
 * Shape(x)] -> Div(x, .): an l2norm layer at the Div. */
static sm_status op_reduce_l2(imp *I, const Onnx__NodeProto *nd) {
    value *x;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x))) return st;
    const int64_t *ax;
    int n = attr_ints(nd, "axes", &ax);
    int64_t axes[8];
    if (n < 0 && nd->n_input > 1) { /* opset 18: axes as an input */
        value *av;
        if ((st = input_const(I, nd, 1, &av)) || (st = tensor_ints(I, av->t, axes, 8, &n))) return st;
        ax = axes;
    }
    if (n != 1 || (ax[0] != 1 && ax[0] != -1) || attr_int(nd, "keepdims", 1) != 1 || !(x->vec || !spatial(x)))
        return node_fail(I, SM_ERR_UNSUPPORTED, "only the L2 norm of a vector over axis 1 with keepdims is mapped");
    if (nd->n_output < 1 || !nd->output[0]) return node_fail(I, SM_ERR_FORMAT, "no output");
    value *o = add_value(I, nd->output[0], V_NORM);
    if (!o) return SM_ERR_NOMEM;
    o->src = (int)(x - I->v);
    return SM_OK;
}

static sm_status op_norm_clamp(imp *I, const Onnx__NodeProto *nd, int is_max) {
    value *x, *e = NULL;
    sm_status st;
    if ((st = input(I, nd, 0, &x)) || (st = input(I, nd, 1, &e))) return st;
    if (is_max && e && x && x->kind == V_CONST) { value *t = x; x = e; e = t; }
    if (!x || x->kind != V_NORM) return node_fail(I, SM_ERR_UNSUPPORTED, "mapped only as the clamp of an L2 norm (F.normalize)");
    float eps = 0;
    if (e) {
        if (e->kind != V_CONST) return node_fail(I, SM_ERR_UNSUPPORTED, "the minimum must be a constant");
        if ((st = tensor_scalar(I, e->t, &eps))) return st;
    } else if (!is_max) {
        eps = attr_float(nd, "min", 0);
    }
    if (!is_max && nd->n_input > 2 && nd->input[2] && *nd->input[2]) return node_fail(I, SM_ERR_UNSUPPORTED, "a maximum in Clip");
    if (!(eps >= 0 && eps <= 1e-6f))
        return node_fail(I, SM_ERR_UNSUPPORTED, "an L2 norm clamped at %g (simile clamps at 1e-12)", eps);
    if (nd->n_output < 1 || !nd->output[0]) return node_fail(I, SM_ERR_FORMAT, "no output");
    value *o = add_value(I, nd->output[0], V_NORM);
    if (!o) return SM_ERR_NOMEM;
    o->src = x->src;
    return SM_OK;
}

static sm_status op_shape(imp *I, const Onnx__NodeProto *nd) {
    value *x;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x))) return st;
    if (nd->n_output < 1 || !nd->output[0]) return node_fail(I, SM_ERR_FORMAT, "no output");
    value *o = add_value(I, nd->output[0], V_SHAPE);
    if (!o) return SM_ERR_NOMEM;
    o->src = (int)(x - I->v);
    return SM_OK;
}

static sm_status op_expand(imp *I, const Onnx__NodeProto *nd) {
    value *x, *s;
    sm_status st;
    if ((st = input(I, nd, 0, &x)) || (st = input(I, nd, 1, &s))) return st;
    if (!x || !s || x->kind != V_NORM || s->kind != V_SHAPE || s->src != x->src)
        return node_fail(I, SM_ERR_UNSUPPORTED, "mapped only as the broadcast of an L2 norm (F.normalize)");
    if (nd->n_output < 1 || !nd->output[0]) return node_fail(I, SM_ERR_FORMAT, "no output");
    value *o = add_value(I, nd->output[0], V_NORM);
    if (!o) return SM_ERR_NOMEM;
    o->src = x->src;
    return SM_OK;
}

static sm_status l2norm_of(imp *I, const Onnx__NodeProto *nd, value *x) {
    if (x->vec && spatial(x)) return node_fail(I, SM_ERR_UNSUPPORTED, "the L2 norm of a flattened spatial map");
    chain *c = add_chain(I, x->chain, "l2norm");
    if (!c) return SM_ERR_NOMEM;
    return out_act(I, nd, x->c, x->h, x->w, x->vec, (int)(c - I->ch));
}

static sm_status op_div(imp *I, const Onnx__NodeProto *nd) {
    value *x, *d;
    sm_status st;
    if ((st = input(I, nd, 0, &x)) || (st = input(I, nd, 1, &d))) return st;
    if (!x || !d || x->kind != V_ACT || d->kind != V_NORM || d->src != (int)(x - I->v))
        return node_fail(I, SM_ERR_UNSUPPORTED, "mapped only as x / max(||x||, eps) (F.normalize)");
    return l2norm_of(I, nd, x);
}

static sm_status op_lpnorm(imp *I, const Onnx__NodeProto *nd) {
    value *x;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x))) return st;
    int64_t axis = attr_int(nd, "axis", -1), p = attr_int(nd, "p", 2);
    if (p != 2 || (axis != 1 && axis != -1) || (!x->vec && spatial(x)))
        return node_fail(I, SM_ERR_UNSUPPORTED, "only p 2 over the features of a vector is mapped (p %lld, axis %lld)",
                         (long long)p, (long long)axis);
    return l2norm_of(I, nd, x);
}

/* Pad with zero pads (PyTorch writes one before an AveragePool): the identity. */
static sm_status op_pad(imp *I, const Onnx__NodeProto *nd) {
    value *x, *pv;
    sm_status st;
    if ((st = input_act(I, nd, 0, &x))) return st;
    int64_t p[16];
    int n = 0;
    const int64_t *pa;
    int na = attr_ints(nd, "pads", &pa); /* opset < 11: an attribute */
    if (na >= 0) {
        n = na > 16 ? 16 : na;
        if (n) memcpy(p, pa, (size_t)n * sizeof *p);
    } else {
        if ((st = input_const(I, nd, 1, &pv)) || (st = tensor_ints(I, pv->t, p, 16, &n))) return st;
    }
    for (int i = 0; i < n; i++)
        if (p[i] != 0) return node_fail(I, SM_ERR_UNSUPPORTED, "only a Pad of zero pads is mapped (pad %d is %lld)", i, (long long)p[i]);
    return out_act(I, nd, x->c, x->h, x->w, x->vec, x->chain);
}

static sm_status op_constant(imp *I, const Onnx__NodeProto *nd) {
    const Onnx__AttributeProto *a = attr(nd, "value");
    if (!a || !a->t) return node_fail(I, SM_ERR_UNSUPPORTED, "only a tensor 'value' is mapped");
    if (nd->n_output < 1 || !nd->output[0]) return node_fail(I, SM_ERR_FORMAT, "no output");
    value *o = add_value(I, nd->output[0], V_CONST);
    if (!o) return SM_ERR_NOMEM;
    o->t = a->t;
    return SM_OK;
}

static const char *const supported =
    "Conv BatchNormalization Relu MaxPool AveragePool GlobalAveragePool Gemm MatMul Add Flatten Reshape "
    "Identity Dropout LpNormalization ReduceL2 Clip Max Shape Expand Div Constant Pad";

static sm_status map_node(imp *I, const Onnx__NodeProto *nd) {
    const char *op = op_of(nd);
    if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx"))
        return node_fail(I, SM_ERR_UNSUPPORTED, "operator of domain '%.40s' is not supported", nd->domain);
    if (!strcmp(op, "Conv")) return op_conv(I, nd);
    if (!strcmp(op, "BatchNormalization")) return op_bn(I, nd);
    if (!strcmp(op, "Relu")) return op_simple(I, nd, "relu");
    if (!strcmp(op, "Identity") || !strcmp(op, "Dropout")) return op_simple(I, nd, NULL);
    if (!strcmp(op, "MaxPool")) return op_pool(I, nd, "maxpool");
    if (!strcmp(op, "AveragePool")) return op_pool(I, nd, "avgpool");
    if (!strcmp(op, "GlobalAveragePool")) return op_gap(I, nd);
    if (!strcmp(op, "Flatten")) return op_flatten(I, nd, 0);
    if (!strcmp(op, "Reshape")) return op_flatten(I, nd, 1);
    if (!strcmp(op, "Gemm")) return op_fc(I, nd, 1);
    if (!strcmp(op, "MatMul")) return op_fc(I, nd, 0);
    if (!strcmp(op, "Add")) return op_add(I, nd);
    if (!strcmp(op, "LpNormalization")) return op_lpnorm(I, nd);
    if (!strcmp(op, "ReduceL2")) return op_reduce_l2(I, nd);
    if (!strcmp(op, "Clip")) return op_norm_clamp(I, nd, 0);
    if (!strcmp(op, "Max")) return op_norm_clamp(I, nd, 1);
    if (!strcmp(op, "Shape")) return op_shape(I, nd);
    if (!strcmp(op, "Expand")) return op_expand(I, nd);
    if (!strcmp(op, "Div")) return op_div(I, nd);
    if (!strcmp(op, "Constant")) return op_constant(I, nd);
    if (!strcmp(op, "Pad")) return op_pad(I, nd);
    return node_fail(I, SM_ERR_UNSUPPORTED, "operator '%.40s' is not supported (supported: %s)", op, supported);
}

/* ---- spec text and weights from the chain ------------------------------------------------- */
typedef struct emit { char *text; size_t len, cap; const chain **w; int nw, capw; } emit;

static int emit_line(emit *E, const char *s) {
    size_t n = strlen(s);
    if (E->len + n + 2 > E->cap) return -1;
    memcpy(E->text + E->len, s, n);
    E->len += n;
    E->text[E->len++] = '\n';
    E->text[E->len] = 0;
    return 0;
}

static int emit_entry(const imp *I, emit *E, int i, int depth) {
    const chain *c = &I->ch[i];
    if (depth > 64) return -1;
    if (c->type == C_LAYER) {
        if (c->wkind != W_NONE) {
            if (E->nw == E->capw) return -1;
            E->w[E->nw++] = c;
        }
        return emit_line(E, c->text);
    }
    if (emit_line(E, "res")) return -1;
    for (int j = 0; j < c->nmain; j++)
        if (emit_entry(I, E, c->main[j], depth + 1)) return -1;
    if (c->nsc) {
        if (emit_line(E, "shortcut")) return -1;
        for (int j = 0; j < c->nsc; j++)
            if (emit_entry(I, E, c->sc[j], depth + 1)) return -1;
    }
    return emit_line(E, "end");
}

/* Copy the converted weights into the model's layers, in order, checking kinds and sizes. */
static sm_status fill_weights(imp *I, sm_model *m, const emit *E) {
    int k = 0;
    for (int i = 0; i < m->nlayers; i++) {
        sm_layer *L = &m->layers[i];
        if (L->nparams == 0 && L->nbuffers == 0) continue;
        const char *kind = sm_layer_type_name(L->type);
        if (k == E->nw) return sm_fail(SM_ERR_SPEC, "%s: layer %d (%s) has no weights in the file", I->src, i + 1, kind);
        const chain *c = E->w[k++];
        int want = c->wkind == W_CONV ? SM_LAYER_CONV : c->wkind == W_FC ? SM_LAYER_FC : SM_LAYER_BN;
        if (L->type != want || L->oc != c->n)
            return sm_fail(SM_ERR_SPEC, "%s: layer %d (%s) does not match the weights mapped for it", I->src, i + 1, kind);
        if (c->wkind == W_BN) {
            memcpy(L->gamma, c->g, sizeof(float) * (size_t)c->n);
            memcpy(L->beta, c->beta, sizeof(float) * (size_t)c->n);
            memcpy(L->run_mean, c->mean, sizeof(float) * (size_t)c->n);
            memcpy(L->run_var, c->var, sizeof(float) * (size_t)c->n);
        } else {
            if (L->nparams != c->nw + (c->b ? c->n : 0))
                return sm_fail(SM_ERR_SPEC, "%s: layer %d (%s): %lld parameters, %lld mapped", I->src, i + 1, kind,
                               (long long)L->nparams, (long long)(c->nw + (c->b ? c->n : 0)));
            memcpy(L->W, c->w, sizeof(float) * (size_t)c->nw);
            if (c->b) memcpy(L->b, c->b, sizeof(float) * (size_t)c->n);
        }
    }
    if (k != E->nw) return sm_fail(SM_ERR_SPEC, "%s: %d mapped weight sets are left over", I->src, E->nw - k);
    return SM_OK;
}

/* ---- the graph ------------------------------------------------------------------------------ */
/* The graph input that is not an initializer: its shape (N, C, H, W) or (N, D). */
static sm_status graph_input(imp *I, const sm_onnx_import_options *opt, value **out) {
    Onnx__GraphProto *g = I->g;
    const Onnx__ValueInfoProto *in = NULL;
    for (size_t i = 0; i < g->n_input; i++) {
        const char *nm = g->input[i]->name;
        if (!nm || !*nm) return sm_fail(SM_ERR_FORMAT, "%s: a graph input has no name", I->src);
        int k = find_value(I, nm);
        if (k >= 0 && I->v[k].kind == V_CONST) continue;
        if (in) return sm_fail(SM_ERR_UNSUPPORTED, "%s: the graph has more than one input ('%.80s', '%.80s')", I->src, in->name, nm);
        in = g->input[i];
    }
    if (!in) return sm_fail(SM_ERR_FORMAT, "%s: the graph has no input", I->src);
    const Onnx__TypeProto *tp = in->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return sm_fail(SM_ERR_UNSUPPORTED, "%s: input '%.80s' is not a tensor", I->src, in->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return sm_fail(SM_ERR_UNSUPPORTED, "%s: input '%.80s' has element type %d (float32 is mapped)", I->src, in->name, tt->elem_type);
    int64_t d[4] = {0, 0, 0, 0};
    int rank = tt->shape ? (int)(tt->shape->n_dim > 8 ? 8 : tt->shape->n_dim) : 0;
    if (rank != 4 && rank != 2)
        return sm_fail(SM_ERR_UNSUPPORTED, "%s: input '%.80s' of rank %d: (N, C, H, W) or (N, D) is mapped", I->src, in->name, rank);
    for (int i = 0; i < rank; i++) {
        const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[i];
        d[i] = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? dm->dim_value : 0;
        if (d[i] < 0 || d[i] > 65536) return sm_fail(SM_ERR_FORMAT, "%s: input dimension %d is %lld", I->src, i, (long long)d[i]);
    }
    int64_t c = rank == 4 ? d[1] : d[1], h = rank == 4 ? d[2] : 1, w = rank == 4 ? d[3] : 1;
    if (opt && (opt->h || opt->w || opt->c)) {
        if ((h && h != opt->h) || (w && w != opt->w) || (c && c != opt->c))
            return sm_fail(SM_ERR_MISMATCH, "%s: the file fixes the input at %lldx%lldx%lld (HxWxC), not %dx%dx%d", I->src,
                           (long long)h, (long long)w, (long long)c, opt->h, opt->w, opt->c);
        h = opt->h; w = opt->w; c = opt->c;
    }
    if (!h || !w || !c)
        return sm_fail(SM_ERR_INVALID, "%s: the file leaves the input shape open: give it (--input HxWxC)", I->src);
    if (h * w * c > (1 << 26)) /* sm_model_create's limit, checked before any layer is mapped */
        return sm_fail(SM_ERR_RANGE, "%s: an input of %lldx%lldx%lld values exceeds the limit of 2^26", I->src,
                       (long long)h, (long long)w, (long long)c);
    value *v = add_value(I, in->name, V_ACT);
    if (!v) return SM_ERR_NOMEM;
    v->c = (int)c; v->h = (int)h; v->w = (int)w; v->vec = rank == 2;
    *out = v;
    return SM_OK;
}

static void imp_free(imp *I) {
    for (int i = 0; i < I->nch; i++) {
        chain *c = &I->ch[i];
        sm_free(c->w); sm_free(c->b); sm_free(c->g); sm_free(c->beta); sm_free(c->mean); sm_free(c->var);
        sm_free(c->main); sm_free(c->sc);
    }
    sm_free(I->ch); sm_free(I->v); sm_free(I->hash); sm_free(I->mark);
}

static sm_status import_graph(imp *I, const sm_onnx_import_options *opt, sm_model **out) {
    Onnx__GraphProto *g = I->g;
    sm_status st;
    if (g->n_node > SM_ONNX_MAX_NODES || g->n_initializer > SM_ONNX_MAX_VALUES)
        return sm_fail(SM_ERR_RANGE, "%s: %zu nodes and %zu initializers (limits %d, %d)", I->src, g->n_node,
                       g->n_initializer, SM_ONNX_MAX_NODES, SM_ONNX_MAX_VALUES);
    size_t nouts = 0, nins = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        nouts += g->node[i]->n_output;
        nins += g->node[i]->n_input;
        if (!g->node[i]->op_type) return sm_fail(SM_ERR_FORMAT, "%s: node %zu has no operator", I->src, i);
    }
    if (nouts > SM_ONNX_MAX_VALUES || nins > SM_ONNX_MAX_VALUES)
        return sm_fail(SM_ERR_RANGE, "%s: %zu node outputs and %zu node inputs (limit %d each)", I->src, nouts, nins,
                       SM_ONNX_MAX_VALUES);
    I->capv = (int)(g->n_initializer + nouts + 2);
    I->nhash = 16;
    while (I->nhash < 2 * I->capv) I->nhash *= 2;
    I->capch = (int)g->n_node + 1;
    I->v = sm_calloc((size_t)I->capv, sizeof *I->v);
    I->hash = sm_alloc((size_t)I->nhash, sizeof(int));
    I->ch = sm_calloc((size_t)I->capch, sizeof *I->ch);
    I->mark = sm_calloc((size_t)I->capch, sizeof(int));
    if (!I->v || !I->hash || !I->ch || !I->mark) return SM_ERR_NOMEM;
    for (int i = 0; i < I->nhash; i++) I->hash[i] = -1;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        if (!t->name || !*t->name) return sm_fail(SM_ERR_FORMAT, "%s: initializer %zu has no name", I->src, i);
        value *v = add_value(I, t->name, V_CONST);
        if (!v) return SM_ERR_NOMEM;
        v->t = t;
    }
    value *x = NULL;
    if ((st = graph_input(I, opt, &x))) return st;
    /* the embedding: a named tensor or node, else the first graph output */
    const char *emb = NULL;
    if (opt && opt->embedding && *opt->embedding) {
        for (size_t i = 0; i < g->n_node && !emb; i++) {
            const Onnx__NodeProto *nd = g->node[i];
            for (size_t j = 0; j < nd->n_output && !emb; j++)
                if (nd->output[j] && !strcmp(nd->output[j], opt->embedding)) emb = nd->output[j];
            if (!emb && nd->name && !strcmp(nd->name, opt->embedding) && nd->n_output && nd->output[0]) emb = nd->output[0];
        }
        if (!emb) return sm_fail(SM_ERR_NOTFOUND, "%s: no tensor or node named '%.80s'", I->src, opt->embedding);
    } else {
        if (g->n_output < 1 || !g->output[0]->name) return sm_fail(SM_ERR_FORMAT, "%s: the graph has no output", I->src);
        emb = g->output[0]->name;
    }
    /* the nodes the embedding depends on (a node's inputs come from earlier nodes) */
    char *need = sm_calloc(g->n_node + 1, 1);
    if (!need) return SM_ERR_NOMEM;
    /* needed value names: a small hash set over the same table size */
    int nset = 16;
    while (nset < 2 * ((int)nins + 2)) nset *= 2; /* every name added is an input name, or emb */
    const char **set = sm_calloc((size_t)nset, sizeof *set);
    if (!set) { sm_free(need); return SM_ERR_NOMEM; }
    int nin = 0, setn = 0;
#define SET_ADD(s)                                                                             \
    do {                                                                                       \
        uint64_t k_ = hash_str(s) & (uint64_t)(nset - 1);                                      \
        while (set[k_] && strcmp(set[k_], s)) k_ = (k_ + 1) & (uint64_t)(nset - 1);            \
        if (!set[k_] && setn < nset / 2) { set[k_] = s; setn++; }                              \
    } while (0)
    SET_ADD(emb);
    for (size_t i = g->n_node; i-- > 0;) {
        const Onnx__NodeProto *nd = g->node[i];
        int used = 0;
        for (size_t j = 0; j < nd->n_output && !used; j++) {
            if (!nd->output[j]) continue;
            uint64_t k = hash_str(nd->output[j]) & (uint64_t)(nset - 1);
            for (; set[k]; k = (k + 1) & (uint64_t)(nset - 1))
                if (!strcmp(set[k], nd->output[j])) { used = 1; break; }
        }
        if (!used) continue;
        need[i] = 1;
        nin++;
        for (size_t j = 0; j < nd->n_input; j++)
            if (nd->input[j] && *nd->input[j]) SET_ADD(nd->input[j]);
    }
#undef SET_ADD
    sm_free(set);
    st = SM_OK;
    for (size_t i = 0; i < g->n_node && !st; i++) {
        if (!need[i]) continue;
        I->node = (int)i;
        st = map_node(I, g->node[i]);
    }
    sm_free(need);
    if (st) return st;
    int ke = find_value(I, emb);
    if (ke < 0) return sm_fail(SM_ERR_FORMAT, "%s: the embedding '%.80s' is not computed by the graph", I->src, emb);
    value *e = &I->v[ke];
    if (e->kind != V_ACT) return sm_fail(SM_ERR_UNSUPPORTED, "%s: the embedding '%.80s' is not computed from the input", I->src, emb);
    if (spatial(e))
        return sm_fail(SM_ERR_UNSUPPORTED, "%s: the embedding '%.80s' is a %dx%dx%d map, not a vector (end with a "
                       "global pool or a Gemm, or choose another tensor with --embedding-layer)", I->src, emb, e->c, e->h, e->w);
    if (e->chain < 0) return sm_fail(SM_ERR_UNSUPPORTED, "%s: the embedding is the input itself", I->src);
    /* the chain from the input to the embedding, as spec text */
    int *seq = sm_alloc((size_t)I->nch + 1, sizeof(int));
    emit E = {0};
    E.cap = SM_MAX_SPEC_BYTES;
    E.text = sm_alloc(E.cap + 1, 1);
    E.capw = I->nch + 1;
    E.w = sm_alloc((size_t)E.capw, sizeof *E.w);
    if (!seq || !E.text || !E.w) { sm_free(seq); sm_free(E.text); sm_free(E.w); return SM_ERR_NOMEM; }
    E.text[0] = 0;
    int ns = path_after(I, -1, e->chain, seq, I->nch + 1);
    int bad = ns < 0;
    for (int i = 0; i < ns && !bad; i++) bad = emit_entry(I, &E, seq[i], 0) != 0;
    sm_free(seq);
    if (bad) {
        sm_free(E.text); sm_free(E.w);
        return sm_fail(SM_ERR_RANGE, "%s: the mapped network is longer than a spec can be (%d bytes)", I->src, SM_MAX_SPEC_BYTES);
    }
    if (opt && opt->spec_out && opt->spec_cap) snprintf(opt->spec_out, opt->spec_cap, "%s", E.text);
    sm_model *m = NULL;
    st = sm_model_create(&m, E.text, x->h, x->w, x->c, 0);
    if (st && I->future[0]) {
        const Onnx__NodeProto *nd = g->node[I->future_node];
        char head[200];
        snprintf(head, sizeof head, "%s", E.text);
        for (char *q = head; *q; q++)
            if (*q == '\n') *q = q[1] ? ';' : 0;
        st = sm_fail(SM_ERR_UNSUPPORTED, "%s: ONNX node at position %d '%.80s' (%.40s) needs %s, which this build's "
                     "layers do not have yet (the spec would begin: %s ...)", I->src, I->future_node, name_of(nd),
                     op_of(nd), I->future, head);
    } else if (st) {
        sm_errmsg_prefix(I->src);
    }
    if (!st) st = fill_weights(I, m, &E);
    sm_free(E.text); sm_free(E.w);
    if (st) { sm_model_free(m); return st; }
    *out = m;
    return SM_OK;
}

sm_status sm_onnx_import_buffer(sm_model **out, const unsigned char *data, size_t len, const char *name,
                                const sm_onnx_import_options *opt) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_model_import_onnx: out is NULL");
    *out = NULL;
    if (!data && len) return sm_fail(SM_ERR_INVALID, "sm_model_import_onnx: no data");
    if (!name) name = "(buffer)";
    if (opt && (opt->h < 0 || opt->w < 0 || opt->c < 0 || opt->h > 65536 || opt->w > 65536 || opt->c > 65536 ||
                (opt->h || opt->w || opt->c) != (opt->h && opt->w && opt->c)))
        return sm_fail(SM_ERR_INVALID, "sm_model_import_onnx: bad input shape %dx%dx%d", opt->h, opt->w, opt->c);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, data);
    if (!mp) return sm_fail(SM_ERR_FORMAT, "%s: not a valid ONNX file (the protobuf does not decode: corrupt or truncated)", name);
    sm_status st;
    if (!mp->graph) {
        st = sm_fail(SM_ERR_FORMAT, "%s: the ONNX model has no graph", name);
    } else {
        imp I;
        memset(&I, 0, sizeof I);
        I.src = name;
        I.g = mp->graph;
        st = import_graph(&I, opt, out);
        imp_free(&I);
    }
    onnx__model_proto__free_unpacked(mp, NULL);
    return st;
}

sm_status sm_model_import_onnx(sm_model **out, const char *path, const sm_onnx_import_options *opt) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_model_import_onnx: out is NULL");
    *out = NULL;
    if (!path) return sm_fail(SM_ERR_INVALID, "sm_model_import_onnx: path is NULL");
    unsigned char *data;
    size_t len;
    sm_status st = sm_read_file(path, SM_ONNX_MAX_FILE_BYTES, &data, &len);
    if (st) return st;
    st = sm_onnx_import_buffer(out, data, len, path, opt);
    sm_free(data);
    return st;
}
#endif
