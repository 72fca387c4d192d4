/* onnx_export.c - a simile model's embedding network as an ONNX file (opset 13): messages of the
 * C protoc-c generates from third_party/onnx/onnx.proto, packed by libprotobuf-c and written
 * atomically.  The graph runs in NCHW: input "input" (N, C, H, W) with a symbolic batch N,
 * output "embedding" (N, d).  Convolution weights go from (oc, k, k, ic) to OIHW; an fc after a
 * spatial map gets a Flatten and its columns permuted from simile's HWC order to CHW; batch norm
 * is folded into a preceding conv / fc unless kept; l2norm is x / max(ReduceL2(x), 1e-12). */
#include "interop/onnx.h"
#include "model/model.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef SIMILE_HAVE_ONNX
sm_status sm_model_export_onnx(sm_model *m, const char *path, const sm_onnx_export_options *opt) {
    return sm_fail(SM_ERR_UNSUPPORTED, "%s: simile was built without ONNX support (protobuf-c)", path ? path : "");
}
#else
#include "onnx/onnx.pb-c.h"

/* Everything the messages point to, freed together. */
typedef struct arena { void **p; int n, cap; } arena;

static void *ar_alloc(arena *A, size_t n) {
    if (A->n == A->cap) {
        int cap = A->cap ? 2 * A->cap : 256;
        void **p = realloc(A->p, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        A->p = p; A->cap = cap;
    }
    void *q = calloc(1, n ? n : 1);
    if (q) A->p[A->n++] = q;
    return q;
}
static char *ar_str(arena *A, const char *s) {
    char *q = ar_alloc(A, strlen(s) + 1);
    if (q) strcpy(q, s);
    return q;
}
static void ar_free(arena *A) {
    for (int i = 0; i < A->n; i++) free(A->p[i]);
    free(A->p);
}

typedef struct exp_ {
    arena A;
    Onnx__NodeProto **nodes; int nn, capn;
    Onnx__TensorProto **inits; int ni, capi;
    int fail;
    char cur[64];   /* the current activation's name */
    int serial;
} exp_;

static Onnx__NodeProto *node(exp_ *X, const char *op, const char *name) {
    if (X->nn == X->capn) { X->fail = 1; return NULL; }
    Onnx__NodeProto *nd = ar_alloc(&X->A, sizeof *nd);
    if (!nd) { X->fail = 1; return NULL; }
    onnx__node_proto__init(nd);
    nd->op_type = ar_str(&X->A, op);
    nd->name = ar_str(&X->A, name);
    nd->domain = ar_str(&X->A, "");
    nd->input = ar_alloc(&X->A, 8 * sizeof(char *));
    nd->output = ar_alloc(&X->A, 2 * sizeof(char *));
    nd->attribute = ar_alloc(&X->A, 8 * sizeof(Onnx__AttributeProto *));
    if (!nd->op_type || !nd->name || !nd->domain || !nd->input || !nd->output || !nd->attribute) { X->fail = 1; return NULL; }
    X->nodes[X->nn++] = nd;
    return nd;
}
static void in(exp_ *X, Onnx__NodeProto *nd, const char *name) {
    if (!nd || nd->n_input == 8) { X->fail = 1; return; }
    if (!(nd->input[nd->n_input++] = ar_str(&X->A, name))) X->fail = 1;
}
/* The node's output: a new name, which becomes the current activation. */
static void out(exp_ *X, Onnx__NodeProto *nd, const char *name) {
    if (!nd) return;
    if (name) snprintf(X->cur, sizeof X->cur, "%s", name);
    else snprintf(X->cur, sizeof X->cur, "t%d", X->serial++);
    if (!(nd->output[nd->n_output++] = ar_str(&X->A, X->cur))) X->fail = 1;
}
static Onnx__AttributeProto *attr(exp_ *X, Onnx__NodeProto *nd, const char *name, Onnx__AttributeProto__AttributeType t) {
    if (!nd || nd->n_attribute == 8) { X->fail = 1; return NULL; }
    Onnx__AttributeProto *a = ar_alloc(&X->A, sizeof *a);
    if (!a) { X->fail = 1; return NULL; }
    onnx__attribute_proto__init(a);
    a->name = ar_str(&X->A, name);
    a->has_type = 1;
    a->type = t;
    nd->attribute[nd->n_attribute++] = a;
    return a;
}
static void attr_ints(exp_ *X, Onnx__NodeProto *nd, const char *name, int n, const int64_t *v) {
    Onnx__AttributeProto *a = attr(X, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    if (!a) return;
    a->ints = ar_alloc(&X->A, (size_t)n * sizeof(int64_t));
    if (!a->ints) { X->fail = 1; return; }
    memcpy(a->ints, v, (size_t)n * sizeof(int64_t));
    a->n_ints = (size_t)n;
}
static void attr_int(exp_ *X, Onnx__NodeProto *nd, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(X, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) { a->has_i = 1; a->i = v; }
}
static void attr_float(exp_ *X, Onnx__NodeProto *nd, const char *name, float v) {
    Onnx__AttributeProto *a = attr(X, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) { a->has_f = 1; a->f = v; }
}

/* An initializer named name of the given dims; returns its float buffer to fill (NULL on failure). */
static float *init(exp_ *X, const char *name, int ndim, const int64_t *dims) {
    if (X->ni == X->capi) { X->fail = 1; return NULL; }
    Onnx__TensorProto *t = ar_alloc(&X->A, sizeof *t);
    if (!t) { X->fail = 1; return NULL; }
    onnx__tensor_proto__init(t);
    t->name = ar_str(&X->A, name);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->dims = ar_alloc(&X->A, (size_t)ndim * sizeof(int64_t));
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * 4;
    t->raw_data.data = ar_alloc(&X->A, (size_t)n * 4);
    if (!t->name || !t->dims || !t->raw_data.data) { X->fail = 1; return NULL; }
    if (ndim > 0) memcpy(t->dims, dims, (size_t)ndim * sizeof(int64_t));
    t->n_dims = (size_t)ndim;
    X->inits[X->ni++] = t;
    return (float *)t->raw_data.data; /* x86-64 / arm64: little-endian, as ONNX stores it */
}

static Onnx__ValueInfoProto *value_info(exp_ *X, const char *name, int rank, const int64_t *dims) {
    Onnx__ValueInfoProto *v = ar_alloc(&X->A, sizeof *v);
    Onnx__TypeProto *tp = ar_alloc(&X->A, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ar_alloc(&X->A, sizeof *tt);
    Onnx__TensorShapeProto *sh = ar_alloc(&X->A, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dm = ar_alloc(&X->A, (size_t)rank * sizeof *dm);
    if (!v || !tp || !tt || !sh || !dm) { X->fail = 1; return NULL; }
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < rank; i++) {
        dm[i] = ar_alloc(&X->A, sizeof **dm);
        if (!dm[i]) { X->fail = 1; return NULL; }
        onnx__tensor_shape_proto__dimension__init(dm[i]);
        if (dims[i] < 0) {
            dm[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm[i]->dim_param = ar_str(&X->A, "N");
        } else {
            dm[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm[i]->dim_value = dims[i];
        }
    }
    sh->n_dim = (size_t)rank;
    sh->dim = dm;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->name = ar_str(&X->A, name);
    v->type = tp;
    return v;
}

/* conv / fc (with a following bn folded when fold): W in ONNX order and b. */
static sm_status linear_node(exp_ *X, const sm_layer *L, const sm_layer *bn, int idx, int spatial_in) {
    char nm[64], wn[64], bnm[64];
    const int oc = L->oc;
    const int conv = L->type == SM_LAYER_CONV;
    snprintf(nm, sizeof nm, "%d_%s", idx + 1, conv ? "conv" : "fc");
    snprintf(wn, sizeof wn, "%d.%s.weight", idx + 1, conv ? "conv" : "fc");
    snprintf(bnm, sizeof bnm, "%d.%s.bias", idx + 1, conv ? "conv" : "fc");
    if (!conv && spatial_in) { /* Flatten (N, C, H, W) -> (N, C*H*W) */
        char fn[64];
        snprintf(fn, sizeof fn, "%d_flatten", idx + 1);
        Onnx__NodeProto *f = node(X, "Flatten", fn);
        in(X, f, X->cur);
        attr_int(X, f, "axis", 1);
        out(X, f, NULL);
    }
    const int64_t K = conv ? (int64_t)L->k * L->k * L->ic : sm_layer_in_size(L);
    int64_t d4[4] = {oc, L->ic, L->k, L->k}, d2[2] = {oc, K}, d1[1] = {oc};
    float *W = init(X, wn, conv ? 4 : 2, conv ? d4 : d2);
    int has_b = L->b || bn;
    float *B = has_b ? init(X, bnm, 1, d1) : NULL;
    if (!W || (has_b && !B)) return SM_ERR_NOMEM;
    const int hw = L->ih * L->iw, C = L->ic;
    for (int o = 0; o < oc; o++) {
        float scale = 1, add = L->b ? L->b[o] : 0;
        if (bn) {
            scale = bn->gamma[o] / sqrtf(bn->run_var[o] + bn->eps);
            add = (add - bn->run_mean[o]) * scale + bn->beta[o];
        }
        if (conv) {
            for (int i = 0; i < L->ic; i++)
                for (int y = 0; y < L->k; y++)
                    for (int x = 0; x < L->k; x++)
                        W[(((int64_t)o * L->ic + i) * L->k + y) * L->k + x] =
                            scale * L->W[(((int64_t)o * L->k + y) * L->k + x) * L->ic + i];
        } else {
            /* ONNX column j (C, H, W order) is simile's column (j % hw) * C + j / hw */
            for (int64_t j = 0; j < K; j++)
                W[(int64_t)o * K + j] = scale * L->W[(int64_t)o * K + (hw > 1 ? (j % hw) * C + j / hw : j)];
        }
        if (B) B[o] = add;
    }
    if (!sm_all_finite(W, (int64_t)oc * K) || (B && !sm_all_finite(B, oc)))
        return sm_fail(SM_ERR_NUMERIC, "layer %d (%s): %s", idx + 1, conv ? "conv" : "fc",
                       bn ? "folding the batch norm gives values that are not finite (export with --keep-bn)"
                          : "the weights are not finite");
    Onnx__NodeProto *nd = node(X, conv ? "Conv" : "Gemm", nm);
    in(X, nd, X->cur);
    in(X, nd, wn);
    if (B) in(X, nd, bnm);
    if (conv) {
        int64_t k2[2] = {L->k, L->k}, s2[2] = {L->stride, L->stride}, p4[4] = {L->pad, L->pad, L->pad, L->pad};
        int64_t one[2] = {1, 1};
        attr_ints(X, nd, "kernel_shape", 2, k2);
        attr_ints(X, nd, "strides", 2, s2);
        attr_ints(X, nd, "pads", 4, p4);
        attr_ints(X, nd, "dilations", 2, one);
        attr_int(X, nd, "group", 1);
    } else {
        attr_int(X, nd, "transB", 1);
    }
    out(X, nd, NULL);
    return X->fail ? SM_ERR_NOMEM : SM_OK;
}

static sm_status bn_node(exp_ *X, const sm_layer *L, int idx) {
    char nm[64], pn[4][64];
    const char *what[4] = {"weight", "bias", "running_mean", "running_var"};
    const float *src[4] = {L->gamma, L->beta, L->run_mean, L->run_var};
    int64_t d1[1] = {L->oc};
    for (int j = 0; j < 4; j++) {
        snprintf(pn[j], sizeof pn[j], "%d.bn.%s", idx + 1, what[j]);
        float *p = init(X, pn[j], 1, d1);
        if (!p) return SM_ERR_NOMEM;
        memcpy(p, src[j], sizeof(float) * (size_t)L->oc);
    }
    snprintf(nm, sizeof nm, "%d_bn", idx + 1);
    Onnx__NodeProto *nd = node(X, "BatchNormalization", nm);
    in(X, nd, X->cur);
    for (int j = 0; j < 4; j++) in(X, nd, pn[j]);
    attr_float(X, nd, "epsilon", L->eps);
    attr_float(X, nd, "momentum", 1 - L->momentum);
    out(X, nd, NULL);
    return X->fail ? SM_ERR_NOMEM : SM_OK;
}

static void simple_node(exp_ *X, const char *op, int idx, const char *what) {
    char nm[64];
    snprintf(nm, sizeof nm, "%d_%s", idx + 1, what);
    Onnx__NodeProto *nd = node(X, op, nm);
    in(X, nd, X->cur);
    out(X, nd, NULL);
}

static void pool_node(exp_ *X, const sm_layer *L, const char *op, int idx) {
    char nm[64];
    snprintf(nm, sizeof nm, "%d_%s", idx + 1, op);
    Onnx__NodeProto *nd = node(X, op, nm);
    in(X, nd, X->cur);
    const int64_t p = L->type == SM_LAYER_MAXPOOL ? L->pad : 0; /* maxpool p=; avgpool has none */
    int64_t k2[2] = {L->k, L->k}, s2[2] = {L->stride, L->stride}, p4[4] = {p, p, p, p};
    attr_ints(X, nd, "kernel_shape", 2, k2);
    attr_ints(X, nd, "strides", 2, s2);
    attr_ints(X, nd, "pads", 4, p4);
    out(X, nd, NULL);
}

/* y = x / max(||x||_2, 1e-12) over the features, as simile's l2norm and F.normalize */
static void l2norm_nodes(exp_ *X, int idx) {
    char nm[64], x[64], eps[64];
    snprintf(x, sizeof x, "%s", X->cur);
    snprintf(eps, sizeof eps, "%d.l2norm.eps", idx + 1);
    float *e = init(X, eps, 0, NULL);
    if (!e) return;
    e[0] = 1e-12f;
    snprintf(nm, sizeof nm, "%d_reducel2", idx + 1);
    Onnx__NodeProto *r = node(X, "ReduceL2", nm);
    int64_t ax[1] = {1};
    in(X, r, x);
    attr_ints(X, r, "axes", 1, ax);
    attr_int(X, r, "keepdims", 1);
    out(X, r, NULL);
    snprintf(nm, sizeof nm, "%d_clip", idx + 1);
    Onnx__NodeProto *c = node(X, "Clip", nm);
    in(X, c, X->cur);
    in(X, c, eps);
    out(X, c, NULL);
    char norm[64];
    snprintf(norm, sizeof norm, "%s", X->cur);
    snprintf(nm, sizeof nm, "%d_div", idx + 1);
    Onnx__NodeProto *d = node(X, "Div", nm);
    in(X, d, x);
    in(X, d, norm);
    out(X, d, NULL);
}

sm_status sm_model_export_onnx(sm_model *m, const char *path, const sm_onnx_export_options *opt) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_export_onnx: model is NULL");
    if (!path || !*path) {
        sm_status st = sm_fail(SM_ERR_INVALID, "sm_model_export_onnx: empty path");
        sm_errmsg_copy(m->errmsg);
        return st;
    }
    const int keep_bn = opt && opt->keep_bn;
    exp_ X;
    memset(&X, 0, sizeof X);
    X.capn = 6 * m->nlayers + 4;
    X.capi = 4 * m->nlayers + 4;
    X.nodes = calloc((size_t)X.capn, sizeof *X.nodes);
    X.inits = calloc((size_t)X.capi, sizeof *X.inits);
    sm_status st = X.nodes && X.inits ? SM_OK : SM_ERR_NOMEM;
    snprintf(X.cur, sizeof X.cur, "input");
    int two_d = 0; /* the activation is (N, F) rather than (N, C, H, W) */
    /* residual blocks: the block's input, and the main branch's output once a shortcut
     * section starts; `end` is an Add of the two branches */
    char blk_in[64] = "", blk_main[64] = "";
    int in_shortcut = 0;
    for (int i = 0; i < m->nlayers && !st; i++) {
        const sm_layer *L = &m->layers[i];
        const sm_layer *next = i + 1 < m->nlayers ? &m->layers[i + 1] : NULL;
        int t = L->type;
        if (t == SM_LAYER_CONV || t == SM_LAYER_FC) {
            const sm_layer *bn = !keep_bn && next && next->type == SM_LAYER_BN ? next : NULL;
            st = linear_node(&X, L, bn, i, t == SM_LAYER_FC && !two_d);
            if (t == SM_LAYER_FC) two_d = 1;
            if (bn) i++; /* the bn is folded; its relu (fused or not) is the next layer */
        } else if (t == SM_LAYER_BN) {
            st = bn_node(&X, L, i);
        } else if (t == SM_LAYER_RELU) {
            simple_node(&X, "Relu", i, "relu");
        } else if (t == SM_LAYER_MAXPOOL) {
            pool_node(&X, L, "MaxPool", i);
        } else if (t == SM_LAYER_AVGPOOL) {
            pool_node(&X, L, "AveragePool", i);
        } else if (t == SM_LAYER_GAP) {
            simple_node(&X, "GlobalAveragePool", i, "gap");
        } else if (t == SM_LAYER_DROPOUT) {
            /* the identity in inference: no node */
        } else if (t == SM_LAYER_RES) {
            snprintf(blk_in, sizeof blk_in, "%s", X.cur);
            in_shortcut = 0;
        } else if (t == SM_LAYER_SHORTCUT) {
            snprintf(blk_main, sizeof blk_main, "%s", X.cur);
            snprintf(X.cur, sizeof X.cur, "%s", blk_in);
            in_shortcut = 1;
        } else if (t == SM_LAYER_END) {
            char nm[64], a[64], b[64];
            snprintf(nm, sizeof nm, "%d_add", i + 1);
            snprintf(a, sizeof a, "%s", in_shortcut ? blk_main : X.cur);
            snprintf(b, sizeof b, "%s", in_shortcut ? X.cur : blk_in);
            Onnx__NodeProto *nd = node(&X, "Add", nm);
            in(&X, nd, a);
            in(&X, nd, b);
            out(&X, nd, NULL);
            in_shortcut = 0;
        } else if (t == SM_LAYER_L2NORM) {
            l2norm_nodes(&X, i);
        } else {
            st = sm_fail(SM_ERR_UNSUPPORTED, "%s: layer %d (%s) has no ONNX mapping yet", path, i + 1, sm_layer_type_name(t));
        }
        if (!st && X.fail) st = SM_ERR_NOMEM;
    }
    if (!st && !two_d) { /* (N, d, 1, 1) -> (N, d) */
        Onnx__NodeProto *f = node(&X, "Flatten", "flatten_out");
        in(&X, f, X.cur);
        attr_int(&X, f, "axis", 1);
        out(&X, f, NULL);
    }
    /* the last node's output is the graph's output: renamed "embedding" */
    if (!st && X.nn > 0) {
        Onnx__NodeProto *last = X.nodes[X.nn - 1];
        last->output[0] = ar_str(&X.A, "embedding");
        if (!last->output[0]) X.fail = 1;
    }
    if (!st && X.fail) st = SM_ERR_NOMEM;
    unsigned char *buf = NULL;
    size_t len = 0;
    if (!st) {
        int64_t din[4] = {-1, m->in_c, m->in_h, m->in_w}, dout[2] = {-1, m->emb_dim};
        Onnx__ValueInfoProto *vin = value_info(&X, "input", 4, din), *vout = value_info(&X, "embedding", 2, dout);
        Onnx__GraphProto g;
        onnx__graph_proto__init(&g);
        g.name = "simile";
        g.n_node = (size_t)X.nn; g.node = X.nodes;
        g.n_initializer = (size_t)X.ni; g.initializer = X.inits;
        g.n_input = 1; g.input = &vin;
        g.n_output = 1; g.output = &vout;
        Onnx__OperatorSetIdProto ops;
        onnx__operator_set_id_proto__init(&ops);
        ops.domain = "";
        ops.has_version = 1;
        ops.version = 13;
        Onnx__OperatorSetIdProto *opsp = &ops;
        Onnx__ModelProto mp;
        onnx__model_proto__init(&mp);
        mp.has_ir_version = 1;
        mp.ir_version = 7;
        mp.n_opset_import = 1;
        mp.opset_import = &opsp;
        mp.producer_name = "simile";
        mp.producer_version = (char *)sm_version();
        char doc[256];
        snprintf(doc, sizeof doc, "simile embedding network: input (N, %d, %d, %d) float, NCHW, normalised as for "
                 "sm_model_embed; output (N, %d)", m->in_c, m->in_h, m->in_w, m->emb_dim);
        mp.doc_string = doc;
        mp.graph = &g;
        if (!vin || !vout || X.fail) st = SM_ERR_NOMEM;
        if (!st) {
            len = onnx__model_proto__get_packed_size(&mp);
            buf = malloc(len ? len : 1);
            if (!buf) st = SM_ERR_NOMEM;
            else onnx__model_proto__pack(&mp, buf);
        }
    }
    if (!st) {
        sm_afile f;
        st = sm_afile_open(&f, path);
        if (!st) {
            st = sm_afile_write(&f, buf, len);
            if (!st) st = sm_afile_commit(&f);
            else sm_afile_abort(&f);
        }
    }
    free(buf);
    free(X.nodes);
    free(X.inits);
    ar_free(&X.A);
    if (st == SM_ERR_NOMEM) sm_fail(SM_ERR_NOMEM, "%s: out of memory while building the ONNX graph", path);
    if (st) sm_errmsg_copy(m->errmsg);
    return st;
}
#endif
