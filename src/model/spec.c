/* spec.c - the layer spec language: one layer per line (or ';'-separated), '#' comments,
 * "type [units] [key=value ...]".  Built-in names expand to their text.  The types, their
 * options and canonical text come from the layer table (src/nn/layer.h). */
#include "model/model.h"
#include <ctype.h>
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
    /* a stem conv and 2x2 pool, then three stages of one BasicBlock each (32 | 64 /2 | 128 /2,
     * the last two with projection shortcuts): 28 -> 14 -> 7 -> 4 for 28 px input */
    {"resnet-s",
              "conv 32 k=3 p=1 bias=0; bn; relu; maxpool k=2\n"
              "res; conv 32 k=3 p=1 bias=0; bn; relu; conv 32 k=3 p=1 bias=0; bn; end; relu\n"
              "res; conv 64 k=3 s=2 p=1 bias=0; bn; relu; conv 64 k=3 p=1 bias=0; bn\n"
              "  shortcut; conv 64 k=1 s=2 bias=0; bn; end; relu\n"
              "res; conv 128 k=3 s=2 p=1 bias=0; bn; relu; conv 128 k=3 p=1 bias=0; bn\n"
              "  shortcut; conv 128 k=1 s=2 bias=0; bn; end; relu\n"
              "gap; fc 64; l2norm"},
    /* torchvision's ResNet-18: 7x7/2 stem, bn, relu, 3x3/2 p1 max-pool, four stages of two
     * BasicBlocks (64, 128, 256, 512; projection shortcuts conv 1x1/2 + bn), gap; then a 128-d
     * L2-normalised embedding instead of the 1000-class fc */
    {"resnet18",
              "conv 64 k=7 s=2 p=3 bias=0; bn; relu; maxpool k=3 s=2 p=1\n"
              "res; conv 64 k=3 p=1 bias=0; bn; relu; conv 64 k=3 p=1 bias=0; bn; end; relu\n"
              "res; conv 64 k=3 p=1 bias=0; bn; relu; conv 64 k=3 p=1 bias=0; bn; end; relu\n"
              "res; conv 128 k=3 s=2 p=1 bias=0; bn; relu; conv 128 k=3 p=1 bias=0; bn\n"
              "  shortcut; conv 128 k=1 s=2 bias=0; bn; end; relu\n"
              "res; conv 128 k=3 p=1 bias=0; bn; relu; conv 128 k=3 p=1 bias=0; bn; end; relu\n"
              "res; conv 256 k=3 s=2 p=1 bias=0; bn; relu; conv 256 k=3 p=1 bias=0; bn\n"
              "  shortcut; conv 256 k=1 s=2 bias=0; bn; end; relu\n"
              "res; conv 256 k=3 p=1 bias=0; bn; relu; conv 256 k=3 p=1 bias=0; bn; end; relu\n"
              "res; conv 512 k=3 s=2 p=1 bias=0; bn; relu; conv 512 k=3 p=1 bias=0; bn\n"
              "  shortcut; conv 512 k=1 s=2 bias=0; bn; end; relu\n"
              "res; conv 512 k=3 p=1 bias=0; bn; relu; conv 512 k=3 p=1 bias=0; bn; end; relu\n"
              "gap; fc 128; l2norm"}
};

const char *sm_spec_builtin(const char *name) {
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i].name, name) == 0) return builtins[i].text;
    return NULL;
}

/* Parse one layer's tokens: the kind named by the first, its size if it takes one, then its
 * key=value options (src/nn/layer_<name>.c). */
static sm_status parse_layer(char **tok, int ntok, sm_layer *L, int lineno) {
    memset(L, 0, sizeof *L);
    L->line = lineno;
    const sm_layer_kind *K = NULL;
    for (int i = 0; i < SM_LAYER_NKINDS && !K; i++)
        if (strcmp(tok[0], sm_layer_kinds[i]->name) == 0) { K = sm_layer_kinds[i]; L->type = i; }
    if (!K) {
        char known[256] = "";
        for (int i = 0; i < SM_LAYER_NKINDS; i++) {
            size_t n = strlen(known);
            snprintf(known + n, sizeof known - n, "%s%s", i ? " " : "", sm_layer_kinds[i]->name);
        }
        return sm_fail(SM_ERR_SPEC, "spec line %d: unknown layer '%s' (known: %s)", lineno, tok[0], known);
    }
    /* defaults common to all kinds, then the kind's own */
    L->k = 3;
    L->stride = 1;
    L->pad = 0;
    L->bias = 1;
    L->eps = 1e-5f;
    L->momentum = 0.1f;
    if (K->defaults) K->defaults(L);
    int i = 1;
    if (K->takes_size) {
        if (ntok < 2 || sm_layer_opt_int(tok[1], &L->units, 1, 1000000) != SM_OPT_OK)
            return sm_fail(SM_ERR_SPEC, "spec line %d: %s needs a positive size, e.g. '%s 64'", lineno,
                           tok[0], tok[0]);
        i = 2;
    }
    for (; i < ntok; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq) return sm_fail(SM_ERR_SPEC, "spec line %d: '%s' is not key=value", lineno, tok[i]);
        *eq = 0;
        const char *key = tok[i], *val = eq + 1;
        int r = K->option ? K->option(L, key, val) : SM_OPT_UNKNOWN;
        if (r == SM_OPT_UNKNOWN) {
            sm_status st = sm_fail(SM_ERR_SPEC, "spec line %d: %s has no option '%s'", lineno, tok[0], key);
            *eq = '=';
            return st;
        }
        *eq = '=';
        if (r != SM_OPT_OK) return sm_fail(SM_ERR_SPEC, "spec line %d: bad value in '%s'", lineno, tok[i]);
    }
    if (K->parsed) K->parsed(L);
    return SM_OK;
}

/* Link the residual blocks: each res / shortcut / end learns the indices of its block's res,
 * shortcut (-1: none) and end; other layers get -1.  Nesting, a second shortcut, a shortcut or
 * end outside a block and a block left open are spec errors naming the line. */
static sm_status link_blocks(sm_layer *L, int n) {
    int open = -1, split = -1;
    for (int i = 0; i < n; i++) {
        L[i].blk_res = L[i].blk_split = L[i].blk_end = -1;
        const sm_layer_kind *K = sm_layer_kind_of(&L[i]);
        if (K->branch == SM_BRANCH_OPEN) {
            if (open >= 0)
                return sm_fail(SM_ERR_SPEC, "spec line %d: 'res' inside the block opened on line %d: residual blocks "
                               "do not nest (close it with 'end' first)", L[i].line, L[open].line);
            open = i; split = -1;
        } else if (K->branch == SM_BRANCH_SPLIT) {
            if (open < 0) return sm_fail(SM_ERR_SPEC, "spec line %d: 'shortcut' outside a residual block (open one with 'res')", L[i].line);
            if (split >= 0)
                return sm_fail(SM_ERR_SPEC, "spec line %d: a second 'shortcut' in the block opened on line %d",
                               L[i].line, L[open].line);
            split = i;
        } else if (K->branch == SM_BRANCH_JOIN) {
            if (open < 0) return sm_fail(SM_ERR_SPEC, "spec line %d: unmatched 'end' (no 'res' opens a block)", L[i].line);
            const int members[3] = {open, split, i};
            for (int j = 0; j < 3; j++)
                if (members[j] >= 0) { L[members[j]].blk_res = open; L[members[j]].blk_split = split; L[members[j]].blk_end = i; }
            open = split = -1;
        }
    }
    if (open >= 0) return sm_fail(SM_ERR_SPEC, "spec line %d: 'res' has no matching 'end'", L[open].line);
    return SM_OK;
}

/* Append the canonical text of L to buf: its name, its arguments, a newline. */
static void layer_text(const sm_layer *L, char *buf, size_t cap) {
    const sm_layer_kind *K = sm_layer_kind_of(L);
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s", K->name);
    n = strlen(buf);
    if (K->text) K->text(L, buf + n, cap - n);
    n = strlen(buf);
    snprintf(buf + n, cap - n, "\n");
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
    if (st == SM_OK) st = link_blocks(L, n);
    if (st) { sm_free(L); sm_free(out); return st; }
    *layers = L; *nout = n; *expanded = out;
    return SM_OK;
}
