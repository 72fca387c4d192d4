/* model_file.c - the model file format.  Little-endian:
 *   "SMILEMDL" (8 bytes) | u32 version (2; 1 is still read) | u32 n_meta | n_meta x (str key, str value)
 *   | u32 n_tensors | n_tensors x (str name, u32 ndim, u32 dims[ndim], f32 data[prod(dims)])
 *   | u32 CRC-32 of every preceding byte
 * where str = u32 length + bytes.  Meta keys: spec, input ("h w c"), loss, loss_options,
 * classes, and after a training with validation val_epoch (the 1-based epoch the weights are
 * from), val_map_at_r (its validation MAP@R, "%.17g") and val_selection ("best" or "last")
 * (readers skip keys they do not know, so these three needed no new version); from version 2
 * also normalize (the input normalisation, model_meta.c) and class_names (each written only when
 * the model has one).  Tensors: "<layer>.<kind>.<name>" (e.g. "1.conv.weight" (oc, k, k, ic),
 * "2.bn.running_var") and "head.params".  Reads check every length against the bytes left,
 * the checksum, and each tensor's shape against the spec. */
#include "model/model.h"
#include <stdlib.h>
#include <string.h>

#define MAGIC "SMILEMDL"
#define FORMAT_VERSION 2u
#define OLDEST_VERSION 1u
#define MAX_FILE_BYTES ((size_t)1 << 32)

/* ---- writing ------------------------------------------------------------------------------ */
static sm_status w_tensor(sm_afile *f, const char *name, int ndim, const int *dims, const float *data) {
    sm_status st = sm_afile_str(f, name);
    if (!st) st = sm_afile_u32(f, (uint32_t)ndim);
    int64_t count = 1;
    for (int i = 0; i < ndim && !st; i++) { st = sm_afile_u32(f, (uint32_t)dims[i]); count *= dims[i]; }
    if (!st) st = sm_afile_write(f, data, (size_t)count * sizeof(float)); /* x86-64/arm64: LE floats */
    return st;
}

/* Enumerate the tensors of a model: calls fn for each (name, dims, pointer): each layer's
 * (src/nn/layer_<name>.c), then the head. */
typedef sm_tensor_fn tensor_fn;
static sm_status each_tensor(sm_model *m, tensor_fn fn, void *ctx) {
    sm_status st = SM_OK;
    for (int i = 0; i < m->nlayers && !st; i++) st = sm_layer_tensors(&m->layers[i], i, fn, ctx);
    if (!st && m->nhead > 0) {
        int d = (int)m->nhead;
        st = fn(ctx, "head.params", 1, &d, m->head);
    }
    return st;
}

static sm_status count_fn(void *ctx, const char *name, int ndim, const int *dims, float *data) {
    (*(uint32_t *)ctx)++;
    return SM_OK;
}
static sm_status write_fn(void *ctx, const char *name, int ndim, const int *dims, float *data) {
    return w_tensor(ctx, name, ndim, dims, data);
}

sm_status sm_model_save(sm_model *m, const char *path) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_save: model is NULL");
    if (!path || !*path) {
        sm_status st = sm_fail(SM_ERR_INVALID, "sm_model_save: empty path");
        sm_errmsg_copy(m->errmsg);
        return st;
    }
    if (!sm_all_finite(m->store.val, m->store.n)) { /* the whole store: layers, head, statistics */
        sm_status st = sm_fail(SM_ERR_NUMERIC, "%s: refusing to save a model with NaN/Inf parameters", path);
        sm_errmsg_copy(m->errmsg);
        return st;
    }
    sm_afile f;
    sm_status st = sm_afile_open(&f, path);
    if (st) { sm_errmsg_copy(m->errmsg); return st; }
    char input[64], classes[32], norm[256];
    snprintf(input, sizeof input, "%d %d %d", m->in_h, m->in_w, m->in_c);
    snprintf(classes, sizeof classes, "%d", m->classes);
    char vepoch[32], vmap[40];
    snprintf(vepoch, sizeof vepoch, "%d", m->val_epoch);
    snprintf(vmap, sizeof vmap, "%.17g", m->val_map_at_r);
    sm_model_meta_normalization(m, norm, sizeof norm);
    char *names = sm_model_meta_class_names(m);
    if (!names) { sm_afile_abort(&f); return SM_ERR_NOMEM; }
    const char *meta[10][2] = {{"spec", m->spec}, {"input", input}, {"loss", m->loss_name},
                               {"loss_options", m->loss_options}, {"classes", classes}};
    uint32_t nmeta = 5; /* then what the model has of these: */
    if (m->val_epoch > 0) {
        meta[nmeta][0] = "val_epoch"; meta[nmeta++][1] = vepoch;
        meta[nmeta][0] = "val_map_at_r"; meta[nmeta++][1] = vmap;
        meta[nmeta][0] = "val_selection"; meta[nmeta++][1] = m->val_best ? "best" : "last";
    }
    if (m->norm.kind != SM_NORM_UNKNOWN) { meta[nmeta][0] = "normalize"; meta[nmeta++][1] = norm; }
    if (m->nclass_names) { meta[nmeta][0] = "class_names"; meta[nmeta++][1] = names; }
    uint32_t nt = 0;
    each_tensor(m, count_fn, &nt);
    st = sm_afile_write(&f, MAGIC, 8);
    if (!st) st = sm_afile_u32(&f, FORMAT_VERSION);
    if (!st) st = sm_afile_u32(&f, nmeta);
    for (uint32_t i = 0; i < nmeta && !st; i++) { st = sm_afile_str(&f, meta[i][0]); if (!st) st = sm_afile_str(&f, meta[i][1]); }
    if (!st) st = sm_afile_u32(&f, nt);
    if (!st) st = each_tensor(m, write_fn, &f);
    if (!st) st = sm_afile_u32(&f, f.crc);
    free(names);
    if (st) { sm_afile_abort(&f); sm_errmsg_copy(m->errmsg); return st; }
    st = sm_afile_commit(&f);
    if (st) sm_errmsg_copy(m->errmsg);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------ */
typedef struct load_ctx { sm_reader *r; uint32_t remaining; } load_ctx;

/* Read the next tensor from the file and check it is the one the spec expects. */
static sm_status load_fn(void *ctx, const char *name, int ndim, const int *dims, float *data) {
    load_ctx *c = ctx;
    sm_reader *r = c->r;
    if (c->remaining == 0) return sm_fail(SM_ERR_FORMAT, "%s: tensor '%s' is missing", r->path, name);
    c->remaining--;
    const char *s;
    uint32_t n, nd;
    sm_status st = sm_reader_str(r, &s, &n, "tensor name");
    if (st) return st;
    if (n != strlen(name) || memcmp(s, name, n) != 0)
        return sm_fail(SM_ERR_FORMAT, "%s: found tensor '%.*s' where the spec expects '%s'", r->path,
                       (int)(n > 64 ? 64 : n), s, name);
    if ((st = sm_reader_u32(r, &nd, "tensor rank"))) return st;
    if (nd != (uint32_t)ndim)
        return sm_fail(SM_ERR_FORMAT, "%s: tensor '%s' has rank %u, expected %d", r->path, name, nd, ndim);
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        uint32_t d;
        if ((st = sm_reader_u32(r, &d, "tensor shape"))) return st;
        if (d != (uint32_t)dims[i])
            return sm_fail(SM_ERR_FORMAT, "%s: tensor '%s' dimension %d is %u, expected %d", r->path, name, i, d, dims[i]);
        count *= d;
    }
    if ((uint64_t)(r->end - r->p) < count * sizeof(float))
        return sm_fail(SM_ERR_FORMAT, "%s: truncated in the data of tensor '%s'", r->path, name);
    memcpy(data, r->p, count * sizeof(float));
    r->p += count * sizeof(float);
    if (!sm_all_finite(data, (int64_t)count))
        return sm_fail(SM_ERR_FORMAT, "%s: tensor '%s' holds NaN or Inf", r->path, name);
    return SM_OK;
}

static sm_status parse_model(sm_reader *r, sm_model **out) {
    sm_status st;
    if (r->end - r->p < 8 + 4 + 4) return sm_fail(SM_ERR_FORMAT, "%s: too short to be a model file", r->path);
    if (memcmp(r->p, MAGIC, 8) != 0) return sm_fail(SM_ERR_FORMAT, "%s: not a simile model file (bad magic)", r->path);
    r->p += 8;
    /* checksum over everything before the last 4 bytes */
    const unsigned char *crc_at = r->end - 4;
    uint32_t want = sm_get_u32le(crc_at);
    uint32_t got = sm_crc32(0, r->p - 8, (size_t)(crc_at - (r->p - 8)));
    if (got != want) return sm_fail(SM_ERR_FORMAT, "%s: checksum mismatch (file corrupt or truncated)", r->path);
    r->end = crc_at;
    uint32_t version, nmeta;
    if ((st = sm_reader_u32(r, &version, "version"))) return st;
    if (version < OLDEST_VERSION || version > FORMAT_VERSION)
        return sm_fail(SM_ERR_FORMAT, "%s: format version %u, this build reads versions %u to %u", r->path, version,
                       OLDEST_VERSION, FORMAT_VERSION);
    if ((st = sm_reader_u32(r, &nmeta, "meta count"))) return st;
    if (nmeta > 64) return sm_fail(SM_ERR_FORMAT, "%s: %u meta entries (limit 64)", r->path, nmeta);
    char spec[SM_MAX_SPEC_BYTES + 1] = "", loss[32] = "", lopts[256] = "";
    int h = 0, w = 0, c = 0, classes = 0, have_spec = 0, have_input = 0, val_epoch = 0, val_best = 0;
    double val_map = 0;
    const char *norm = NULL, *names = NULL; /* (norm_len), (names_len) bytes in the file */
    uint32_t norm_len = 0, names_len = 0;
    for (uint32_t i = 0; i < nmeta; i++) {
        const char *k, *v;
        uint32_t kn, vn;
        if ((st = sm_reader_str(r, &k, &kn, "meta key")) || (st = sm_reader_str(r, &v, &vn, "meta value"))) return st;
        char val[512];
        int small = vn < sizeof val;
        if (small) { memcpy(val, v, vn); val[vn] = 0; }
        if (kn == 4 && !memcmp(k, "spec", 4)) {
            if (vn > SM_MAX_SPEC_BYTES) return sm_fail(SM_ERR_FORMAT, "%s: spec too long", r->path);
            memcpy(spec, v, vn); spec[vn] = 0; have_spec = 1;
        } else if (kn == 5 && !memcmp(k, "input", 5)) {
            if (!small || sscanf(val, "%d %d %d", &h, &w, &c) != 3)
                return sm_fail(SM_ERR_FORMAT, "%s: bad input shape", r->path);
            have_input = 1;
        } else if (kn == 4 && !memcmp(k, "loss", 4)) {
            if (vn >= sizeof loss) return sm_fail(SM_ERR_FORMAT, "%s: loss name too long", r->path);
            memcpy(loss, v, vn); loss[vn] = 0;
        } else if (kn == 12 && !memcmp(k, "loss_options", 12)) {
            if (vn >= sizeof lopts) return sm_fail(SM_ERR_FORMAT, "%s: loss options too long", r->path);
            memcpy(lopts, v, vn); lopts[vn] = 0;
        } else if (kn == 7 && !memcmp(k, "classes", 7)) {
            if (!small || sscanf(val, "%d", &classes) != 1 || classes < 0 || classes > (1 << 24))
                return sm_fail(SM_ERR_FORMAT, "%s: bad class count", r->path);
        } else if (kn == 9 && !memcmp(k, "val_epoch", 9)) {
            if (!small || sscanf(val, "%d", &val_epoch) != 1 || val_epoch < 0)
                return sm_fail(SM_ERR_FORMAT, "%s: bad val_epoch", r->path);
        } else if (kn == 12 && !memcmp(k, "val_map_at_r", 12)) {
            if (!small || sscanf(val, "%lf", &val_map) != 1 || !(val_map >= 0 && val_map <= 1))
                return sm_fail(SM_ERR_FORMAT, "%s: bad val_map_at_r", r->path);
        } else if (kn == 13 && !memcmp(k, "val_selection", 13)) {
            val_best = vn == 4 && !memcmp(v, "best", 4);
        } else if (version >= 2 && kn == 9 && !memcmp(k, "normalize", 9)) {
            norm = v; norm_len = vn;
        } else if (version >= 2 && kn == 11 && !memcmp(k, "class_names", 11)) {
            names = v; names_len = vn;
        } /* unknown keys are skipped: newer writers may add metadata */
    }
    if (!have_spec || !have_input) return sm_fail(SM_ERR_FORMAT, "%s: spec or input shape missing", r->path);
    sm_model *m;
    /* every parameter and statistic is stored as a float in the file: a model larger than
     * the bytes left is refused before its blocks are allocated */
    if ((st = sm_model_create_bounded(&m, spec, h, w, c, 0, (int64_t)(r->end - r->p) / 4))) {
        sm_errmsg_prefix(r->path);
        return st == SM_ERR_NOMEM ? st : SM_ERR_FORMAT;
    }
    if ((norm && (st = sm_model_meta_parse_normalization(m, r->path, norm, norm_len))) ||
        (names && (st = sm_model_meta_parse_class_names(m, r->path, names, names_len)))) {
        sm_model_free(m);
        return st == SM_ERR_NOMEM ? st : SM_ERR_FORMAT;
    }
    uint32_t nt;
    if ((st = sm_reader_u32(r, &nt, "tensor count"))) { sm_model_free(m); return st; }
    load_ctx ctx = {r, nt};
    /* the head's size is only known from the file: peek at it after the layer tensors */
    float *head = NULL;
    int64_t nhead = 0;
    int64_t saved_nhead = m->nhead;
    m->nhead = 0;
    st = each_tensor(m, load_fn, &ctx);
    m->nhead = saved_nhead;
    if (!st && ctx.remaining == 1) {
        const char *s;
        uint32_t n, nd, d;
        if (!(st = sm_reader_str(r, &s, &n, "tensor name")) && !(n == 11 && !memcmp(s, "head.params", 11)))
            st = sm_fail(SM_ERR_FORMAT, "%s: unexpected tensor '%.*s'", r->path, (int)(n > 64 ? 64 : n), s);
        if (!st && !(st = sm_reader_u32(r, &nd, "tensor rank")) && nd != 1) st = sm_fail(SM_ERR_FORMAT, "%s: bad head rank", r->path);
        if (!st) st = sm_reader_u32(r, &d, "head size");
        if (!st && (d == 0 || (uint64_t)(r->end - r->p) < (uint64_t)d * sizeof(float)))
            st = sm_fail(SM_ERR_FORMAT, "%s: truncated head", r->path);
        if (!st) {
            nhead = d;
            head = sm_alloc(d, sizeof(float));
            if (!head) st = SM_ERR_NOMEM;
            else { memcpy(head, r->p, (size_t)d * sizeof(float)); r->p += (size_t)d * sizeof(float); }
        }
        if (!st && !sm_all_finite(head, nhead)) st = sm_fail(SM_ERR_FORMAT, "%s: head holds NaN or Inf", r->path);
        ctx.remaining = 0;
    }
    if (!st && ctx.remaining) st = sm_fail(SM_ERR_FORMAT, "%s: %u unexpected extra tensors", r->path, ctx.remaining);
    if (!st && r->p != r->end) st = sm_fail(SM_ERR_FORMAT, "%s: %ld unexpected trailing bytes", r->path, (long)(r->end - r->p));
    if (!st && (loss[0] || nhead)) st = sm_model_set_head(m, loss, lopts, head, nhead, classes);
    sm_free(head);
    if (st) { sm_model_free(m); return st; }
    m->val_epoch = val_epoch; m->val_map_at_r = val_map; m->val_best = val_best;
    *out = m;
    return SM_OK;
}

sm_status sm_model_load(sm_model **out, const char *path) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_model_load: out is NULL");
    *out = NULL;
    if (!path) return sm_fail(SM_ERR_INVALID, "sm_model_load: path is NULL");
    unsigned char *data;
    size_t len;
    sm_status st = sm_read_file(path, MAX_FILE_BYTES, &data, &len);
    if (st) return st;
    sm_reader r = {data, data + len, path};
    st = parse_model(&r, out);
    sm_free(data);
    return st;
}
