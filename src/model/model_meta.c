/* model_meta.c - what a model stores besides its layers: the input normalisation it was trained
 * with and the names of its classes, their accessors, and their text form in the model file's
 * meta entries ("normalize": "none" or "mean m0[,m1,m2] std s0[,s1,s2]"; "class_names": the
 * names joined by '\n').  Floats are written with 9 significant digits, which read back to the
 * same bits. */
#include "model/model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMES (1 << 20)
#define MAX_NAME_BYTES 255

static sm_status check_norm(const sm_normalization *n, int in_c) {
    if (n->kind == SM_NORM_UNKNOWN || n->kind == SM_NORM_NONE) return SM_OK;
    if (n->kind != SM_NORM_MEAN_STD) return sm_fail(SM_ERR_INVALID, "normalisation kind %d is unknown", (int)n->kind);
    if (n->channels != in_c)
        return sm_fail(SM_ERR_INVALID, "normalisation of %d channels for a model of %d input channels", n->channels, in_c);
    for (int k = 0; k < n->channels; k++) {
        if (!sm_isfinite_f(n->mean[k])) return sm_fail(SM_ERR_INVALID, "normalisation mean %g of channel %d is not finite", (double)n->mean[k], k);
        if (!sm_isfinite_f(n->std[k]) || !(n->std[k] > 0))
            return sm_fail(SM_ERR_INVALID, "normalisation std %g of channel %d must be positive and finite", (double)n->std[k], k);
    }
    return SM_OK;
}

sm_status sm_model_set_normalization(sm_model *m, const sm_normalization *n) {
    if (!m || !n) return sm_fail(SM_ERR_INVALID, "sm_model_set_normalization: NULL argument");
    sm_status st = check_norm(n, m->in_c);
    if (st) { sm_errmsg_copy(m->errmsg); return st; }
    m->norm = *n;
    if (n->kind != SM_NORM_MEAN_STD) {
        m->norm.channels = 0;
        memset(m->norm.mean, 0, sizeof m->norm.mean);
        memset(m->norm.std, 0, sizeof m->norm.std);
    }
    return SM_OK;
}

void sm_model_normalization(const sm_model *m, sm_normalization *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (m) *out = m->norm;
}

/* Names v (n) copied into one malloc'd block: n pointers, then the strings. */
static char **pack(const char *const *v, int n) {
    size_t bytes = (size_t)n * sizeof(char *);
    for (int k = 0; k < n; k++) bytes += strlen(v[k]) + 1;
    char **out = malloc(bytes ? bytes : 1);
    if (!out) return NULL;
    char *s = (char *)(out + n);
    for (int k = 0; k < n; k++) {
        size_t l = strlen(v[k]) + 1;
        memcpy(s, v[k], l);
        out[k] = s;
        s += l;
    }
    return out;
}

static sm_status check_name(const char *s, size_t len, int k) {
    if (len == 0) return sm_fail(SM_ERR_INVALID, "class name %d is empty", k);
    if (len > MAX_NAME_BYTES) return sm_fail(SM_ERR_INVALID, "class name %d is %zu bytes long (limit %d)", k, len, MAX_NAME_BYTES);
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\n' || s[i] == '\r' || s[i] == 0)
            return sm_fail(SM_ERR_INVALID, "class name %d ('%.40s') holds a line break or NUL byte", k, s);
    return SM_OK;
}

sm_status sm_model_set_class_names(sm_model *m, const char *const *names, int n) {
    if (!m) return sm_fail(SM_ERR_INVALID, "sm_model_set_class_names: model is NULL");
    sm_status st = SM_OK;
    if (n < 0 || n > MAX_NAMES || (n > 0 && !names)) st = sm_fail(SM_ERR_INVALID, "sm_model_set_class_names: %d names (need 0..%d)", n, MAX_NAMES);
    for (int k = 0; !st && k < n; k++)
        st = names[k] ? check_name(names[k], strlen(names[k]), k) : sm_fail(SM_ERR_INVALID, "class name %d is NULL", k);
    if (st) { sm_errmsg_copy(m->errmsg); return st; }
    char **copy = NULL;
    if (n > 0 && !(copy = pack(names, n))) return SM_ERR_NOMEM;
    free(m->class_names);
    m->class_names = copy;
    m->nclass_names = n;
    return SM_OK;
}

int sm_model_num_class_names(const sm_model *m) { return m ? m->nclass_names : 0; }

const char *sm_model_class_name(const sm_model *m, int k) {
    return m && k >= 0 && k < m->nclass_names ? m->class_names[k] : NULL;
}

/* ---- the file's text form ------------------------------------------------------------------- */
void sm_model_meta_normalization(const sm_model *m, char *buf, size_t cap) {
    if (m->norm.kind != SM_NORM_MEAN_STD) { snprintf(buf, cap, "none"); return; }
    size_t o = (size_t)snprintf(buf, cap, "mean");
    for (int k = 0; k < m->norm.channels && o < cap; k++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%.9g", k ? "," : " ", (double)m->norm.mean[k]);
    if (o < cap) o += (size_t)snprintf(buf + o, cap - o, " std");
    for (int k = 0; k < m->norm.channels && o < cap; k++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%.9g", k ? "," : " ", (double)m->norm.std[k]);
}

/* Up to 3 comma-separated floats at *p (advanced); their count in *n. */
static int parse_floats(const char **p, float *v, int *n) {
    *n = 0;
    for (;;) {
        char *end;
        double x = strtod(*p, &end);
        if (end == *p || *n == 3) return -1;
        v[(*n)++] = (float)x;
        *p = end;
        if (**p != ',') return 0;
        (*p)++;
    }
}

sm_status sm_model_meta_parse_normalization(sm_model *m, const char *path, const char *v, size_t len) {
    char text[256];
    if (len >= sizeof text) return sm_fail(SM_ERR_FORMAT, "%s: normalisation entry too long", path);
    memcpy(text, v, len);
    text[len] = 0;
    sm_normalization n = {0};
    if (!strcmp(text, "none")) {
        n.kind = SM_NORM_NONE;
    } else {
        const char *p = text;
        int nm = 0, ns = 0;
        if (strncmp(p, "mean ", 5)) goto bad;
        p += 5;
        if (parse_floats(&p, n.mean, &nm) || strncmp(p, " std ", 5)) goto bad;
        p += 5;
        if (parse_floats(&p, n.std, &ns) || *p || nm != ns) goto bad;
        n.kind = SM_NORM_MEAN_STD;
        n.channels = nm;
    }
    if (check_norm(&n, m->in_c)) {
        char why[256];
        snprintf(why, sizeof why, "%s", sm_errmsg());
        return sm_fail(SM_ERR_FORMAT, "%s: normalisation '%s': %s", path, text, why);
    }
    m->norm = n;
    return SM_OK;
bad:
    return sm_fail(SM_ERR_FORMAT, "%s: bad normalisation entry '%.60s'", path, text);
}

char *sm_model_meta_class_names(const sm_model *m) {
    size_t bytes = 1;
    for (int k = 0; k < m->nclass_names; k++) bytes += strlen(m->class_names[k]) + 1;
    char *s = malloc(bytes), *o = s;
    if (!s) return NULL;
    *o = 0;
    for (int k = 0; k < m->nclass_names; k++) {
        size_t l = strlen(m->class_names[k]);
        if (k) *o++ = '\n';
        memcpy(o, m->class_names[k], l);
        o += l;
        *o = 0;
    }
    return s;
}

sm_status sm_model_meta_parse_class_names(sm_model *m, const char *path, const char *v, size_t len) {
    if (len == 0) return sm_model_set_class_names(m, NULL, 0);
    int n = 1;
    for (size_t i = 0; i < len; i++) if (v[i] == '\n' && ++n > MAX_NAMES) return sm_fail(SM_ERR_FORMAT, "%s: more than %d class names", path, MAX_NAMES);
    char *buf = malloc(len + 1);
    const char **names = malloc((size_t)n * sizeof(char *));
    if (!buf || !names) { free(buf); free(names); return SM_ERR_NOMEM; }
    memcpy(buf, v, len);
    buf[len] = 0;
    int k = 0;
    names[k++] = buf;
    for (size_t i = 0; i < len; i++) if (buf[i] == '\n') { buf[i] = 0; names[k++] = buf + i + 1; }
    sm_status st = SM_OK;
    for (int j = 0; !st && j < n; j++) {
        size_t l = strlen(names[j]);
        if (names[j] + l != (j + 1 < n ? names[j + 1] - 1 : buf + len)) st = sm_fail(SM_ERR_FORMAT, "%s: class name %d holds a NUL byte", path, j);
        else if (check_name(names[j], l, j)) {
            char why[256];
            snprintf(why, sizeof why, "%s", sm_errmsg());
            st = sm_fail(SM_ERR_FORMAT, "%s: %s", path, why);
        }
    }
    if (!st) st = sm_model_set_class_names(m, names, n);
    free(buf);
    free(names);
    return st;
}
