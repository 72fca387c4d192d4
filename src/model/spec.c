/* spec.c - the layer spec language: one layer per line (or ';'-separated), '#' comments,
 * "type [units] [key=value ...]".  Built-in names expand to their text. */
#include "model/model.h"
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name, *text; } builtins[] = {
    {"cnn-s", "conv 32 k=3 p=1 bias=0; bn; relu; maxpool k=2\n"
              "conv 64 k=3 p=1 bias=0; bn; relu; maxpool k=2\n"
              "conv 128 k=3 p=1 bias=0; bn; relu\n"
              "gap; fc 64; l2norm"},
    {"cnn-m", "conv 32 k=3 p=1 bias=0; bn; relu; conv 32 k=3 p=1 bias=0; bn; relu; maxpool k=2\n"
              "conv 64 k=3 p=1 bias=0; bn; relu; conv 64 k=3 p=1 bias=0; bn; relu; maxpool k=2\n"
              "conv 128 k=3 p=1 bias=0; bn; relu\n"
              "gap; fc 128; l2norm"},
    {"cnn-c", "conv 32 k=3 p=1 bias=0; bn; relu; maxpool k=2\n"
              "conv 64 k=3 p=1 bias=0; bn; relu; maxpool k=2\n"
              "conv 128 k=3 p=1 bias=0; bn; relu; maxpool k=2\n"
              "fc 256 bias=0; bn; relu; fc 128"},
    {"mlp", "fc 256; bn; relu; fc 128; bn; relu; fc 64; l2norm"},
};

const char *sm_spec_builtin(const char *name) {
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i].name, name) == 0) return builtins[i].text;
    return NULL;
}

static int parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 0 || v > 1000000) return 0;
    *out = (int)v;
    return 1;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= 0 && v <= 1e6)) return 0;
    *out = (float)v;
    return 1;
}

/* Parse one layer's tokens. */
static sm_status parse_layer(char **tok, int ntok, sm_layer *L, int lineno) {
    static const struct { const char *name; sm_layer_type type; } types[] = {
        {"conv", SM_LAYER_CONV}, {"bn", SM_LAYER_BN}, {"relu", SM_LAYER_RELU},
        {"maxpool", SM_LAYER_MAXPOOL}, {"gap", SM_LAYER_GAP}, {"fc", SM_LAYER_FC},
        {"l2norm", SM_LAYER_L2NORM}};
    memset(L, 0, sizeof *L);
    L->line = lineno;
    int found = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(tok[0], types[i].name) == 0) { L->type = types[i].type; found = 1; }
    if (!found)
        return sm_fail(SM_ERR_SPEC, "spec line %d: unknown layer '%s' (known: conv bn relu maxpool gap fc l2norm)",
                       lineno, tok[0]);
    /* defaults */
    L->k = L->type == SM_LAYER_MAXPOOL ? 2 : 3;
    L->stride = L->type == SM_LAYER_MAXPOOL ? 0 : 1; /* maxpool stride defaults to k */
    L->pad = 0;
    L->bias = 1;
    L->eps = 1e-5f;
    L->momentum = 0.1f;
    int has_units = L->type == SM_LAYER_CONV || L->type == SM_LAYER_FC;
    int i = 1;
    if (has_units) {
        if (ntok < 2 || !parse_int(tok[1], &L->units) || L->units < 1)
            return sm_fail(SM_ERR_SPEC, "spec line %d: %s needs a positive size, e.g. '%s 64'", lineno,
                           tok[0], tok[0]);
        i = 2;
    }
    for (; i < ntok; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq) return sm_fail(SM_ERR_SPEC, "spec line %d: '%s' is not key=value", lineno, tok[i]);
        *eq = 0;
        const char *key = tok[i], *val = eq + 1;
        int ok = 0;
        int is_win = L->type == SM_LAYER_CONV || L->type == SM_LAYER_MAXPOOL;
        if (is_win && strcmp(key, "k") == 0) ok = parse_int(val, &L->k) && L->k >= 1;
        else if (is_win && strcmp(key, "s") == 0) ok = parse_int(val, &L->stride) && L->stride >= 1;
        else if (L->type == SM_LAYER_CONV && strcmp(key, "p") == 0) ok = parse_int(val, &L->pad);
        else if (has_units && strcmp(key, "bias") == 0) ok = parse_int(val, &L->bias) && L->bias <= 1;
        else if (L->type == SM_LAYER_BN && strcmp(key, "eps") == 0) ok = parse_float(val, &L->eps) && L->eps > 0;
        else if (L->type == SM_LAYER_BN && strcmp(key, "momentum") == 0)
            ok = parse_float(val, &L->momentum) && L->momentum <= 1;
        else {
            sm_status st = sm_fail(SM_ERR_SPEC, "spec line %d: %s has no option '%s'", lineno, tok[0], key);
            *eq = '=';
            return st;
        }
        *eq = '=';
        if (!ok) return sm_fail(SM_ERR_SPEC, "spec line %d: bad value in '%s'", lineno, tok[i]);
    }
    if (L->type == SM_LAYER_MAXPOOL && L->stride == 0) L->stride = L->k;
    return SM_OK;
}

/* Append the canonical text of L to buf. */
static void layer_text(const sm_layer *L, char *buf, size_t cap) {
    size_t n = strlen(buf);
    switch (L->type) {
    case SM_LAYER_CONV:
        snprintf(buf + n, cap - n, "conv %d k=%d s=%d p=%d bias=%d\n", L->units, L->k, L->stride, L->pad, L->bias);
        break;
    case SM_LAYER_FC: snprintf(buf + n, cap - n, "fc %d bias=%d\n", L->units, L->bias); break;
    case SM_LAYER_MAXPOOL: snprintf(buf + n, cap - n, "maxpool k=%d s=%d\n", L->k, L->stride); break;
    case SM_LAYER_BN: snprintf(buf + n, cap - n, "bn eps=%g momentum=%g\n", L->eps, L->momentum); break;
    default: snprintf(buf + n, cap - n, "%s\n", sm_layer_type_name(L->type)); break;
    }
}

sm_status sm_spec_parse(const char *spec, sm_layer **layers, int *nout, char **expanded) {
    *layers = NULL; *nout = 0; *expanded = NULL;
    if (!spec) return sm_fail(SM_ERR_SPEC, "spec is NULL");
    const char *b = sm_spec_builtin(spec);
    if (b) spec = b;
    size_t len = strlen(spec);
    if (len > SM_MAX_SPEC_BYTES)
        return sm_fail(SM_ERR_SPEC, "spec of %zu bytes exceeds the limit of %d", len, SM_MAX_SPEC_BYTES);
    char *text = sm_strdup(spec);
    sm_layer *L = sm_calloc(SM_MAX_LAYERS, sizeof *L);
    char *out = sm_alloc(SM_MAX_LAYERS * 64 + 1, 1);
    if (!text || !L || !out) { sm_free(text); sm_free(L); sm_free(out); return SM_ERR_NOMEM; }
    out[0] = 0;
    int n = 0, lineno = 1;
    sm_status st = SM_OK;
    char *p = text;
    while (*p && st == SM_OK) {
        /* one statement: up to '\n' or ';' */
        char *end = p;
        while (*end && *end != '\n' && *end != ';') {
            if (*end == '#') { /* a comment runs to the end of the line, ';' included */
                while (*end && *end != '\n') end++;
                break;
            }
            end++;
        }
        int newline = *end == '\n';
        char saved = *end;
        *end = 0;
        char *hash = strchr(p, '#');
        if (hash) *hash = 0;
        char *tok[16];
        int ntok = 0;
        for (char *t = p; *t;) {
            while (*t && isspace((unsigned char)*t)) t++;
            if (!*t) break;
            if (ntok == 16) { st = sm_fail(SM_ERR_SPEC, "spec line %d: too many tokens", lineno); break; }
            tok[ntok++] = t;
            while (*t && !isspace((unsigned char)*t)) t++;
            if (*t) *t++ = 0;
        }
        if (st == SM_OK && ntok > 0) {
            if (n == SM_MAX_LAYERS)
                st = sm_fail(SM_ERR_SPEC, "spec has more than %d layers", SM_MAX_LAYERS);
            else if ((st = parse_layer(tok, ntok, &L[n], lineno)) == SM_OK)
                layer_text(&L[n++], out, SM_MAX_LAYERS * 64 + 1);
        }
        if (newline) lineno++;
        p = saved ? end + 1 : end;
    }
    sm_free(text);
    if (st == SM_OK && n == 0) st = sm_fail(SM_ERR_SPEC, "spec has no layers");
    if (st) { sm_free(L); sm_free(out); return st; }
    *layers = L; *nout = n; *expanded = out;
    return SM_OK;
}
