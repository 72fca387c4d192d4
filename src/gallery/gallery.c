/* gallery.c - galleries of enrolled embeddings: creation, enrolment (all or nothing, with the
 * enrolment time), removal by tombstone, compaction, listing, exact k-NN search over the packed
 * live rows (sm_knn_search; no copy, ties broken by storage order),
 * per-class distances (nearest item or centroid, blocked distance tiles), open-set decisions (nearest,
 * k-NN vote, centroid) and threshold calibration from labelled pair distances.  The file
 * format and the writer lock are in gallery_file.c. */
#define _POSIX_C_SOURCE 200809L
#include "gallery/gallery.h"
#include "backend/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BLOCK_FLOATS ((int64_t)1 << 22) /* (queries x items) distance tile: 16 MiB */
#define MAX_ID ((int64_t)1 << 62)

static sm_status gret(sm_gallery *g, sm_status st) {
    if (st != SM_OK && g) sm_errmsg_copy(g->errmsg);
    return st;
}

int sm_gallery_name_ok(const char *name, size_t len) {
    if (len < 1 || len > SM_GALLERY_MAX_NAME) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch < 0x20 || ch == 0x7f) return 0;
    }
    return 1;
}

int sm_gallery_source_ok(const char *s, size_t len) {
    return len <= SM_GALLERY_MAX_SOURCE && memchr(s, 0, len) == NULL;
}

/* ---- lifetime ----------------------------------------------------------------------------- */
sm_status sm_gallery_create(sm_gallery **out, int dim, sm_metric metric, uint32_t fingerprint) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_gallery_create: out is NULL");
    *out = NULL;
    if (dim < 1 || dim > SM_GALLERY_MAX_DIM)
        return sm_fail(SM_ERR_INVALID, "sm_gallery_create: dimension %d outside 1..%d", dim, SM_GALLERY_MAX_DIM);
    if (metric != SM_METRIC_L2 && metric != SM_METRIC_IP && metric != SM_METRIC_COSINE)
        return sm_fail(SM_ERR_INVALID, "sm_gallery_create: unknown metric %d", (int)metric);
    sm_gallery *g = sm_calloc(1, sizeof *g);
    if (!g) return SM_ERR_NOMEM;
    g->dim = dim;
    g->metric = metric;
    g->fingerprint = fingerprint;
    g->threshold = INFINITY;
    g->threshold_rule = SM_RULE_NEAREST;
    g->calib_items = -1;
    g->jfd = -1;
    *out = g;
    return SM_OK;
}

void sm_gallery_free(sm_gallery *g) {
    if (!g) return;
    sm_journal_close(g);
    for (int i = 0; i < g->nclasses; i++) sm_free(g->names[i]);
    sm_free(g->names);
    sm_free(g->class_removed);
    sm_free(g->class_live);
    sm_free(g->emb);
    sm_free(g->prow);
    sm_free(g->pcls);
    sm_free(g->pos);
    sm_free(g->tms);
    sm_free(g->cls);
    sm_free(g->ids);
    sm_free(g->dead);
    if (g->src) for (int64_t i = 0; i < g->n; i++) sm_free(g->src[i]);
    sm_free(g->src);
    sm_free(g);
}

const char *sm_gallery_errmsg(const sm_gallery *g) { return g ? g->errmsg : ""; }
int sm_gallery_dim(const sm_gallery *g) { return g ? g->dim : 0; }
sm_metric sm_gallery_metric(const sm_gallery *g) { return g ? g->metric : SM_METRIC_L2; }
uint32_t sm_gallery_model_fingerprint(const sm_gallery *g) { return g ? g->fingerprint : 0; }
int64_t sm_gallery_size(const sm_gallery *g) { return g ? g->n - g->ndead : 0; }
int sm_gallery_num_classes(const sm_gallery *g) { return g ? g->nclasses : 0; }

sm_status sm_gallery_check_model(sm_gallery *g, uint32_t fp) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_check_model: gallery is NULL");
    if (g->fingerprint == fp) return SM_OK;
    if (g->fingerprint == 0)
        return gret(g, sm_fail(SM_ERR_MISMATCH, "the gallery holds raw embeddings of no model, "
                               "but model %08x was given", fp));
    return gret(g, sm_fail(SM_ERR_MISMATCH, "the gallery was built with model %08x, not with this "
                           "model (%08x): re-enrol with the same model", g->fingerprint, fp));
}

/* ---- growth ------------------------------------------------------------------------------- */
/* Allocate a copy of old (old_bytes) in a block of new_bytes; NULL on failure. */
static void *grown(const void *old, size_t old_bytes, size_t new_bytes) {
    void *p = sm_alloc(new_bytes, 1);
    if (p && old_bytes) memcpy(p, old, old_bytes);
    return p;
}

void sm_gallery_set_publish(sm_gallery *g, sm_gallery_publish_fn fn, void *ctx) {
    if (!g) return;
    g->publish = fn;
    g->publish_ctx = ctx;
}

/* Around every change to what readers see (sm_gallery_set_publish). */
static void begin(sm_gallery *g) { if (g->publish) g->publish(g->publish_ctx, 1); }
static void end(sm_gallery *g) { if (g->publish) g->publish(g->publish_ctx, 0); }

int64_t sm_gallery_now_ms(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_REALTIME, &t) != 0) return 0;
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Grown copies of the class table and item arrays, made before a change (readers may run
 * meanwhile: this only reads g) and swapped in by grow_commit inside the publish section. */
typedef struct grow {
    int cap_classes;
    char **names; uint8_t *class_removed; int64_t *class_live;
    int64_t cap;
    float *emb; int64_t *prow; int32_t *pcls; int64_t *pos, *tms; int32_t *cls; int64_t *ids; uint8_t *dead; char **src;
} grow;

static void grow_free(grow *w) {
    sm_free(w->names); sm_free(w->class_removed); sm_free(w->class_live);
    sm_free(w->emb); sm_free(w->prow); sm_free(w->pcls); sm_free(w->pos); sm_free(w->tms);
    sm_free(w->cls); sm_free(w->ids); sm_free(w->dead); sm_free(w->src);
    memset(w, 0, sizeof *w);
}

static sm_status grow_prepare(const sm_gallery *g, int classes, int64_t items, grow *w) {
    memset(w, 0, sizeof *w);
    if (classes > g->cap_classes) {
        int cap = g->cap_classes * 2 > classes ? g->cap_classes * 2 : classes;
        if (cap < 8) cap = 8;
        size_t o = (size_t)g->nclasses;
        w->names = grown(g->names, o * sizeof(char *), (size_t)cap * sizeof(char *));
        w->class_removed = grown(g->class_removed, o, (size_t)cap);
        w->class_live = grown(g->class_live, o * sizeof(int64_t), (size_t)cap * sizeof(int64_t));
        w->cap_classes = cap;
        if (!w->names || !w->class_removed || !w->class_live) { grow_free(w); return SM_ERR_NOMEM; }
    }
    if (items > g->cap) {
        int64_t cap = g->cap * 2 > items ? g->cap * 2 : items;
        if (cap < 64) cap = 64;
        size_t o = (size_t)g->n, live = (size_t)(g->n - g->ndead), d = (size_t)g->dim;
        w->cap = cap;
        w->emb = grown(g->emb, live * d * sizeof(float), (size_t)cap * d * sizeof(float));
        w->prow = grown(g->prow, live * sizeof(int64_t), (size_t)cap * sizeof(int64_t));
        w->pcls = grown(g->pcls, live * sizeof(int32_t), (size_t)cap * sizeof(int32_t));
        w->pos = grown(g->pos, o * sizeof(int64_t), (size_t)cap * sizeof(int64_t));
        w->tms = grown(g->tms, o * sizeof(int64_t), (size_t)cap * sizeof(int64_t));
        w->cls = grown(g->cls, o * sizeof(int32_t), (size_t)cap * sizeof(int32_t));
        w->ids = grown(g->ids, o * sizeof(int64_t), (size_t)cap * sizeof(int64_t));
        w->dead = grown(g->dead, o, (size_t)cap);
        w->src = grown(g->src, o * sizeof(char *), (size_t)cap * sizeof(char *));
        if (!w->emb || !w->prow || !w->pcls || !w->pos || !w->tms || !w->cls || !w->ids || !w->dead || !w->src) {
            grow_free(w);
            return SM_ERR_NOMEM;
        }
        memset(w->src + o, 0, ((size_t)cap - o) * sizeof(char *)); /* no source until one is stored */
    }
    return SM_OK;
}

/* Swap the grown arrays in (nothing can fail): w holds the old ones then. */
static void grow_swap(sm_gallery *g, grow *w) {
#define SWAP_IN(f) do { void *old_ = g->f; g->f = w->f; w->f = old_; } while (0)
    if (w->names) {
        SWAP_IN(names); SWAP_IN(class_removed); SWAP_IN(class_live);
        g->cap_classes = w->cap_classes;
    }
    if (w->emb) {
        SWAP_IN(emb); SWAP_IN(prow); SWAP_IN(pcls); SWAP_IN(pos); SWAP_IN(tms);
        SWAP_IN(cls); SWAP_IN(ids); SWAP_IN(dead); SWAP_IN(src);
        g->cap = w->cap;
    }
#undef SWAP_IN
}

static void grow_commit(sm_gallery *g, grow *w) {
    grow_swap(g, w);
    grow_free(w); /* the old arrays */
}

sm_status sm_gallery_reserve(sm_gallery *g, int classes, int64_t items) {
    grow w;
    sm_status st = grow_prepare(g, classes, items, &w);
    if (!st) grow_commit(g, &w);
    return st;
}

/* Mark item slot i removed and move the last packed row into its hole (O(dim)).  Inside the
 * publish section. */
static void kill_slot(sm_gallery *g, int64_t i) {
    int64_t j = g->pos[i], last = g->n - g->ndead - 1, d = g->dim;
    if (j != last) {
        memcpy(g->emb + j * d, g->emb + last * d, (size_t)d * sizeof(float));
        g->prow[j] = g->prow[last];
        g->pcls[j] = g->pcls[last];
        g->pos[g->prow[j]] = j;
    }
    g->pos[i] = -1;
    g->dead[i] = 1;
    g->ndead++;
    g->class_live[g->cls[i]]--;
}


/* ---- classes and items -------------------------------------------------------------------- */
int sm_gallery_find_class(const sm_gallery *g, const char *name) {
    if (!g || !name) return -1;
    for (int i = 0; i < g->nclasses; i++)
        if (!g->class_removed[i] && !strcmp(g->names[i], name)) return i;
    return -1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Check caller ids (n): non-negative, below MAX_ID, unique among themselves and the gallery. */
static sm_status check_ids(const sm_gallery *g, const int64_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= MAX_ID)
            return sm_fail(SM_ERR_RANGE, "item id %lld is outside 0..2^62", (long long)ids[i]);
    int64_t *all = sm_alloc((size_t)(g->n + n), sizeof(int64_t)); /* (g->n + n) every id */
    if (!all) return SM_ERR_NOMEM;
    if (g->n) memcpy(all, g->ids, (size_t)g->n * sizeof(int64_t));
    memcpy(all + g->n, ids, (size_t)n * sizeof(int64_t));
    qsort(all, (size_t)(g->n + n), sizeof(int64_t), cmp_i64);
    sm_status st = SM_OK;
    for (int64_t i = 1; i < g->n + n; i++)
        if (all[i] == all[i - 1]) {
            st = sm_fail(SM_ERR_RANGE, "item id %lld is already used in the gallery (ids are "
                         "never reused, removed items included)", (long long)all[i]);
            break;
        }
    sm_free(all);
    return st;
}

sm_status sm_gallery_add(sm_gallery *g, const float *emb, int64_t n, int d, const char *name,
                         const int64_t *ids, int64_t *assigned) {
    return sm_gallery_add_sourced(g, emb, n, d, name, ids, NULL, assigned);
}

sm_status sm_gallery_add_sourced(sm_gallery *g, const float *emb, int64_t n, int d, const char *name,
                                 const int64_t *ids, const char *const *sources, int64_t *assigned) {
    return sm_gallery_add_timed(g, emb, n, d, name, ids, sources, NULL, assigned);
}

sm_status sm_gallery_add_timed(sm_gallery *g, const float *emb, int64_t n, int d, const char *name,
                               const int64_t *ids, const char *const *sources, const int64_t *times,
                               int64_t *assigned) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_add: gallery is NULL");
    if (!emb || !name) return gret(g, sm_fail(SM_ERR_INVALID, "gallery add: NULL embeddings or class name"));
    if (n < 1) return gret(g, sm_fail(SM_ERR_INVALID, "gallery add: %lld embeddings (need at least 1)", (long long)n));
    if (d != g->dim)
        return gret(g, sm_fail(SM_ERR_MISMATCH, "gallery add: embeddings of dimension %d, the gallery's is %d", d, g->dim));
    if (!sm_gallery_name_ok(name, strlen(name)))
        return gret(g, sm_fail(SM_ERR_INVALID, "gallery add: class name '%.64s' must have 1 to %d bytes and no control characters",
                               name, SM_GALLERY_MAX_NAME));
    if (n > SM_GALLERY_MAX_ITEMS - g->n)
        return gret(g, sm_fail(SM_ERR_RANGE, "gallery add: more than 2^31 items"));
    for (int64_t i = 0; i < n; i++)
        if (!sm_all_finite(emb + i * d, d))
            return gret(g, sm_fail(SM_ERR_NUMERIC, "gallery add: embedding %lld holds NaN or Inf", (long long)i));
    sm_status st;
    /* a journal replays ids it assigned itself (increasing from next_id): no sort needed */
    int fresh = ids && ids[0] >= g->next_id && ids[0] < MAX_ID - n;
    for (int64_t i = 1; fresh && i < n; i++) fresh = ids[i] > ids[i - 1] && ids[i] < MAX_ID;
    if (ids && !fresh && (st = check_ids(g, ids, n))) return gret(g, st);
    if (!ids && g->next_id > MAX_ID - n) return gret(g, sm_fail(SM_ERR_RANGE, "gallery add: item ids exhausted"));
    int c = sm_gallery_find_class(g, name);
    if (c < 0 && g->nclasses >= SM_GALLERY_MAX_CLASSES)
        return gret(g, sm_fail(SM_ERR_RANGE, "gallery add: more than %d classes", SM_GALLERY_MAX_CLASSES));
    if (sources)
        for (int64_t i = 0; i < n; i++)
            if (sources[i] && !sm_gallery_source_ok(sources[i], strlen(sources[i])))
                return gret(g, sm_fail(SM_ERR_INVALID, "gallery add: source name of item %lld is longer than %d bytes",
                                       (long long)i, SM_GALLERY_MAX_SOURCE));
    char *copy = NULL;
    if (c < 0 && !(copy = sm_strdup(name))) return gret(g, SM_ERR_NOMEM);
    char **srcs = sm_calloc((size_t)n, sizeof(char *)); /* (n) copies of the source names */
    int64_t *tm = sm_alloc((size_t)n, sizeof(int64_t)); /* (n) enrolment times */
    int nomem = !srcs || !tm;
    for (int64_t i = 0; !nomem && sources && i < n; i++)
        if (sources[i] && *sources[i] && !(srcs[i] = sm_strdup(sources[i]))) nomem = 1;
    if (tm) {
        int64_t now = times ? 0 : sm_gallery_now_ms();
        for (int64_t i = 0; i < n; i++) tm[i] = times ? (times[i] > 0 ? times[i] : 0) : now;
    }
    grow w;
    if (!nomem && grow_prepare(g, g->nclasses + (c < 0), g->n + n, &w)) nomem = 1;
    st = nomem ? SM_ERR_NOMEM : sm_journal_add(g, name, n, ids, emb, sources, tm);
    if (st) {
        if (!nomem) grow_free(&w);
        for (int64_t i = 0; srcs && i < n; i++) sm_free(srcs[i]);
        sm_free(srcs);
        sm_free(tm);
        sm_free(copy);
        return gret(g, st);
    }
    /* nothing can fail from here on */
    begin(g);
    grow_commit(g, &w);
    if (c < 0) {
        c = g->nclasses++;
        g->names[c] = copy;
        g->class_removed[c] = 0;
        g->class_live[c] = 0;
    }
    int64_t live = g->n - g->ndead;
    if (ids && !fresh) g->ids_unsorted = 1; /* fresh ids are above every stored one, increasing */
    memcpy(g->emb + live * d, emb, (size_t)(n * d) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        int64_t id = ids ? ids[i] : g->next_id + i;
        g->cls[g->n + i] = c;
        g->ids[g->n + i] = id;
        g->dead[g->n + i] = 0;
        g->src[g->n + i] = srcs[i];
        g->tms[g->n + i] = tm[i];
        g->pos[g->n + i] = live + i;
        g->prow[live + i] = g->n + i;
        g->pcls[live + i] = c;
        if (assigned) assigned[i] = id;
    }
    g->generation++;
    if (ids) { for (int64_t i = 0; i < n; i++) if (ids[i] >= g->next_id) g->next_id = ids[i] + 1; }
    else g->next_id += n;
    g->n += n;
    g->class_live[c] += n;
    end(g);
    sm_free(srcs);
    sm_free(tm);
    return SM_OK;
}

sm_status sm_gallery_remove_class(sm_gallery *g, const char *name, int64_t *removed) {
    if (!g || !name) return sm_fail(SM_ERR_INVALID, "sm_gallery_remove_class: NULL argument");
    int c = sm_gallery_find_class(g, name);
    if (c < 0) return gret(g, sm_fail(SM_ERR_NOTFOUND, "no class '%.64s' in the gallery", name));
    sm_status st = sm_journal_remove_class(g, name);
    if (st) return st;
    int64_t k = 0;
    begin(g);
    for (int64_t i = 0; i < g->n; i++)
        if (g->cls[i] == c && !g->dead[i]) { kill_slot(g, i); k++; }
    g->class_live[c] = 0;
    g->class_removed[c] = 1;
    g->generation++;
    end(g);
    if (removed) *removed = k;
    return SM_OK;
}

sm_status sm_gallery_rename_class(sm_gallery *g, const char *name, const char *new_name) {
    if (!g || !name || !new_name) return sm_fail(SM_ERR_INVALID, "sm_gallery_rename_class: NULL argument");
    int c = sm_gallery_find_class(g, name);
    if (c < 0) return gret(g, sm_fail(SM_ERR_NOTFOUND, "no class '%.64s' in the gallery", name));
    if (!sm_gallery_name_ok(new_name, strlen(new_name)))
        return gret(g, sm_fail(SM_ERR_INVALID, "class name '%.64s' must have 1 to %d bytes and no control characters",
                               new_name, SM_GALLERY_MAX_NAME));
    if (!strcmp(name, new_name)) return SM_OK;
    if (sm_gallery_find_class(g, new_name) >= 0)
        return gret(g, sm_fail(SM_ERR_RANGE, "a class '%.64s' is already in the gallery", new_name));
    char *copy = sm_strdup(new_name);
    if (!copy) return gret(g, SM_ERR_NOMEM);
    sm_status st = sm_journal_rename_class(g, name, new_name);
    if (st) { sm_free(copy); return st; }
    begin(g);
    char *old = g->names[c];
    g->names[c] = copy;
    end(g);
    sm_free(old);
    return SM_OK;
}

/* Item slot of id, or -1: a binary search while the ids are in increasing order (always, with
 * automatic ids), else a scan. */
static int64_t slot_of(const sm_gallery *g, int64_t id) {
    if (!g->ids_unsorted) {
        int64_t lo = 0, hi = g->n;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (g->ids[mid] < id) lo = mid + 1; else hi = mid;
        }
        return lo < g->n && g->ids[lo] == id ? lo : -1;
    }
    for (int64_t i = 0; i < g->n; i++) if (g->ids[i] == id) return i;
    return -1;
}

sm_status sm_gallery_remove_item(sm_gallery *g, int64_t id) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_remove_item: gallery is NULL");
    int64_t i = slot_of(g, id);
    if (i < 0) return gret(g, sm_fail(SM_ERR_NOTFOUND, "no item with id %lld in the gallery", (long long)id));
    if (g->dead[i]) return gret(g, sm_fail(SM_ERR_NOTFOUND, "item %lld was already removed", (long long)id));
    sm_status st = sm_journal_remove_item(g, id);
    if (st) return st;
    begin(g);
    kill_slot(g, i);
    g->generation++;
    end(g);
    return SM_OK;
}

sm_status sm_gallery_compact(sm_gallery *g) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_compact: gallery is NULL");
    int keepc = 0;
    for (int i = 0; i < g->nclasses; i++) keepc += !g->class_removed[i] && g->class_live[i] > 0;
    int64_t keep = g->n - g->ndead, d = g->dim;
    int capc = keepc > 0 ? keepc : 1;
    int64_t cap = keep > 0 ? keep : 1;
    grow w = {0}; /* the compacted arrays, built while readers may still search the old ones */
    w.cap_classes = capc;
    w.cap = cap;
    w.names = sm_alloc((size_t)capc, sizeof(char *));
    w.class_removed = sm_calloc((size_t)capc, 1);
    w.class_live = sm_alloc((size_t)capc, sizeof(int64_t));
    int32_t *map = sm_alloc((size_t)(g->nclasses > 0 ? g->nclasses : 1), sizeof(int32_t)); /* (nclasses) old -> new */
    w.emb = sm_alloc((size_t)(cap * d), sizeof(float));
    w.prow = sm_alloc((size_t)cap, sizeof(int64_t));
    w.pcls = sm_alloc((size_t)cap, sizeof(int32_t));
    w.pos = sm_alloc((size_t)cap, sizeof(int64_t));
    w.tms = sm_alloc((size_t)cap, sizeof(int64_t));
    w.cls = sm_alloc((size_t)cap, sizeof(int32_t));
    w.ids = sm_alloc((size_t)cap, sizeof(int64_t));
    w.dead = sm_calloc((size_t)cap, 1);
    w.src = sm_calloc((size_t)cap, sizeof(char *));
    if (!w.names || !w.class_removed || !w.class_live || !map || !w.emb || !w.prow || !w.pcls || !w.pos || !w.tms ||
        !w.cls || !w.ids || !w.dead || !w.src) {
        grow_free(&w); sm_free(map);
        return gret(g, SM_ERR_NOMEM);
    }
    sm_status st = sm_journal_compact(g);
    if (st) { grow_free(&w); sm_free(map); return st; }
    int k = 0;
    for (int i = 0; i < g->nclasses; i++) {
        if (!g->class_removed[i] && g->class_live[i] > 0) {
            map[i] = k;
            w.names[k] = g->names[i];
            w.class_live[k] = g->class_live[i];
            k++;
        } else map[i] = -1;
    }
    /* the packed rows in storage order again */
    int64_t j = 0;
    for (int64_t i = 0; i < g->n; i++) {
        if (g->dead[i]) continue;
        memcpy(w.emb + j * d, g->emb + g->pos[i] * d, (size_t)d * sizeof(float));
        w.cls[j] = w.pcls[j] = map[g->cls[i]];
        w.ids[j] = g->ids[i];
        w.src[j] = g->src[i];
        w.tms[j] = g->tms[i];
        w.pos[j] = w.prow[j] = j;
        j++;
    }
    int old_nclasses = g->nclasses;
    int64_t old_n = g->n;
    begin(g);
    grow_swap(g, &w); /* w holds the old arrays now */
    g->nclasses = keepc; g->n = keep; g->ndead = 0;
    end(g);
    /* the strings of what was dropped (the others moved) */
    for (int i = 0; i < old_nclasses; i++) if (map[i] < 0) sm_free(w.names[i]);
    for (int64_t i = 0; i < old_n; i++) if (w.dead[i]) sm_free(w.src[i]);
    grow_free(&w);
    sm_free(map);
    return SM_OK;
}

sm_status sm_gallery_class_info(const sm_gallery *g, int i, sm_gallery_class *info) {
    if (!g || !info) return sm_fail(SM_ERR_INVALID, "sm_gallery_class_info: NULL argument");
    if (i < 0 || i >= g->nclasses)
        /* the message buffer is the one part of a const handle that a failing call writes */
        return gret((sm_gallery *)g, sm_fail(SM_ERR_RANGE, "class slot %d outside 0..%d", i, g->nclasses - 1));
    info->name = g->names[i];
    info->items = g->class_live[i];
    info->removed = g->class_removed[i];
    return SM_OK;
}

void sm_gallery_items(const sm_gallery *g, int64_t *ids, int32_t *classes, float *emb) {
    if (!g) return;
    int64_t j = 0, d = g->dim;
    for (int64_t i = 0; i < g->n; i++) {
        if (g->dead[i]) continue;
        if (ids) ids[j] = g->ids[i];
        if (classes) classes[j] = g->cls[i];
        if (emb) memcpy(emb + j * d, g->emb + g->pos[i] * d, (size_t)d * sizeof(float));
        j++;
    }
}

void sm_gallery_item_sources(const sm_gallery *g, const char **sources) {
    if (!g || !sources) return;
    int64_t j = 0;
    for (int64_t i = 0; i < g->n; i++)
        if (!g->dead[i]) sources[j++] = g->src[i] ? g->src[i] : "";
}

void sm_gallery_item_times(const sm_gallery *g, int64_t *times) {
    if (!g || !times) return;
    int64_t j = 0;
    for (int64_t i = 0; i < g->n; i++)
        if (!g->dead[i]) times[j++] = g->tms[i];
}

void sm_gallery_calibration(const sm_gallery *g, sm_gallery_calibration_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    info->items_at_calibration = -1;
    if (!g) return;
    info->calibrated = !(isinf(g->threshold) && g->threshold > 0);
    info->generation = g->generation;
    info->calibrated_generation = g->calib_generation;
    info->items_at_calibration = g->calib_items;
    info->changed = info->calibrated && g->generation != g->calib_generation;
}

float sm_gallery_threshold(const sm_gallery *g, sm_decision_rule *rule) {
    if (rule) *rule = g ? g->threshold_rule : SM_RULE_NEAREST;
    return g ? g->threshold : INFINITY;
}

sm_status sm_gallery_set_threshold(sm_gallery *g, float t, sm_decision_rule rule) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_set_threshold: gallery is NULL");
    if (t != t) return gret(g, sm_fail(SM_ERR_INVALID, "gallery threshold: NaN"));
    if (rule != SM_RULE_NEAREST && rule != SM_RULE_VOTE && rule != SM_RULE_CENTROID)
        return gret(g, sm_fail(SM_ERR_INVALID, "gallery threshold: unknown rule %d", (int)rule));
    sm_status st = sm_journal_threshold(g, t, rule);
    if (st) return st;
    begin(g);
    g->threshold = t;
    g->threshold_rule = rule;
    g->calib_generation = g->generation;
    g->calib_items = g->n - g->ndead;
    end(g);
    return SM_OK;
}

/* ---- queries ------------------------------------------------------------------------------ */
static sm_status check_queries(sm_gallery *g, const char *who, const float *q, int64_t nq, int d) {
    if (!q && nq > 0) return sm_fail(SM_ERR_INVALID, "%s: queries are NULL", who);
    if (nq < 0) return sm_fail(SM_ERR_INVALID, "%s: nq = %lld is negative", who, (long long)nq);
    if (d != g->dim)
        return sm_fail(SM_ERR_MISMATCH, "%s: query dimension %d, the gallery holds dimension %d "
                       "(embeddings of another model?)", who, d, g->dim);
    for (int64_t i = 0; i < nq; i++)
        if (!sm_all_finite(q + i * d, d))
            return sm_fail(SM_ERR_NUMERIC, "%s: query %lld holds NaN or Inf", who, (long long)i);
    if (g->n - g->ndead == 0) return sm_fail(SM_ERR_RANGE, "%s: the gallery is empty (enrol a class first)", who);
    return SM_OK;
}

/* Search key (as sm_knn_search returns it) to a "smaller = closer" distance. */
static float key_to_distance(sm_metric m, float v) {
    if (m == SM_METRIC_L2) return v > 0 ? sqrtf(v) : 0.0f;
    if (m == SM_METRIC_IP) return -v;
    return 1.0f - v;
}

float sm_vector_distance(const float *a, const float *b, int d, sm_metric metric) {
    if (!a || !b || d < 1) return NAN;
    double dot = 0, na = 0, nb = 0, l2 = 0;
    for (int t = 0; t < d; t++) {
        dot += (double)a[t] * b[t];
        na += (double)a[t] * a[t];
        nb += (double)b[t] * b[t];
        l2 += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    }
    if (metric == SM_METRIC_L2) return (float)sqrt(l2);
    if (metric == SM_METRIC_IP) return (float)-dot;
    if (metric == SM_METRIC_COSINE) return (float)(1.0 - (na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0.0));
    return NAN;
}

/* A candidate of one query: its search key made "smaller = closer" and its item slot. */
typedef struct cand { float key; int64_t slot; } cand;

static int cmp_cand(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? 1 : -1;
    return (a->slot > b->slot) - (a->slot < b->slot);
}

/* The search runs over the packed live rows as they are (no copy).  Their order is not the
 * storage order after removals, so the candidates are re-ordered by (key, storage slot): the
 * result is that of a search over the live items in storage order (ties to the item enrolled
 * first).  To see every item tied with the k-th, it asks for one more than k; when that one
 * ties too, it asks again for twice as many (rare: exact ties). */
sm_status sm_gallery_search(sm_gallery *g, const float *q, int64_t nq, int d, int k, sm_gallery_match *out) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_search: gallery is NULL");
    if (!out && nq > 0) return gret(g, sm_fail(SM_ERR_INVALID, "gallery search: out is NULL"));
    if (k < 1) return gret(g, sm_fail(SM_ERR_INVALID, "gallery search: k = %d must be at least 1", k));
    sm_status st = check_queries(g, "gallery search", q, nq, d);
    if (st) return gret(g, st);
    if (nq == 0) return SM_OK;
    int64_t live = g->n - g->ndead;
    int kk = (int64_t)k < live ? k : (int)live;      /* results to fill */
    int64_t kx = kk < live ? (int64_t)kk + 1 : kk;   /* candidates asked for */
    const float sign = g->metric == SM_METRIC_L2 ? 1.0f : -1.0f;
    float *dist = NULL;  /* (nq, kx) */
    int64_t *idx = NULL; /* (nq, kx) */
    cand *c = NULL;      /* (nq, kx) */
    for (;;) {
        dist = sm_alloc((size_t)(nq * kx), sizeof(float));
        idx = sm_alloc((size_t)(nq * kx), sizeof(int64_t));
        c = sm_alloc((size_t)(nq * kx), sizeof(cand));
        if (!dist || !idx || !c) { st = SM_ERR_NOMEM; break; }
        if ((st = sm_knn_search(g->emb, live, q, nq, d, (int)kx, g->metric, 0, dist, idx))) break;
        int again = 0;
        for (int64_t i = 0; i < nq; i++) {
            cand *ci = c + i * kx;
            for (int64_t j = 0; j < kx; j++) {
                ci[j].key = sign * dist[i * kx + j];
                ci[j].slot = g->prow[idx[i * kx + j]];
            }
            qsort(ci, (size_t)kx, sizeof(cand), cmp_cand);
            if (kx > kk && ci[kx - 1].key == ci[kk - 1].key) again = 1;
        }
        if (!again || kx == live) break;
        kx = 2 * kx < live ? 2 * kx : live;
        sm_free(dist); sm_free(idx); sm_free(c);
    }
    if (!st) {
        for (int64_t i = 0; i < nq; i++)
            for (int j = 0; j < k; j++) {
                sm_gallery_match *m = &out[i * k + j];
                if (j >= kk) {
                    m->class_index = -1; m->class_name = NULL; m->item_id = -1; m->distance = INFINITY;
                    continue;
                }
                int64_t r = c[i * kx + j].slot;
                m->class_index = g->cls[r];
                m->class_name = g->names[g->cls[r]];
                m->item_id = g->ids[r];
                m->distance = key_to_distance(g->metric, sign * c[i * kx + j].key);
            }
    }
    sm_free(dist); sm_free(idx); sm_free(c);
    return gret(g, st);
}

/* Minimum distance of each query q (nq, d) to each set of rows of X (nx, d): row j belongs to
 * set[j] (set NULL: set j), rows with skip[j] set are ignored; out (nq, nsets), +inf where a set
 * has no row.  Blocked: the backend's distance tile of bq queries against X, bq x nx floats at a
 * time (L2: sqrt of the clamped squared distance, +inf for a NaN from overflowing inputs; IP:
 * -<q, x>; cosine: 1 - cos, 1 against a zero vector). */
static sm_status set_distances(const float *q, int64_t nq, const float *X, int64_t nx, int d,
                               sm_metric metric, const int32_t *set, const uint8_t *skip,
                               int nsets, float *out) {
    int64_t bq = nx > 0 ? BLOCK_FLOATS / nx : nq;
    if (bq < 1) bq = 1;
    if (bq > nq) bq = nq;
    if (bq > 4096) bq = 4096;
    const int kind = metric == SM_METRIC_L2 ? SM_K_DIST_SQL2 : metric == SM_METRIC_IP ? SM_K_DIST_DOT : SM_K_DIST_COS;
    const int inverse = metric == SM_METRIC_COSINE; /* cosine takes inverse norms */
    float *G = sm_alloc((size_t)((bq > 0 ? bq : 1) * (nx > 0 ? nx : 1)), sizeof(float)); /* (bq, nx) tile */
    float *xn = sm_alloc((size_t)(nx > 0 ? nx : 1), sizeof(float));                      /* (nx) norms */
    float *qn = sm_alloc((size_t)(bq > 0 ? bq : 1), sizeof(float));                      /* (bq) norms */
    if (!G || !xn || !qn) { sm_free(G); sm_free(xn); sm_free(qn); return SM_ERR_NOMEM; }
    if (nx > 0) sm_be_row_norms(sm_backend_default(), X, nx, d, inverse, xn);
    for (int64_t i = 0; i < nq * nsets; i++) out[i] = INFINITY;
    for (int64_t i0 = 0; i0 < nq; i0 += bq) {
        int64_t b = nq - i0 < bq ? nq - i0 : bq;
        if (nx == 0) continue;
        sm_be_row_norms(sm_backend_default(), q + i0 * d, b, d, inverse, qn);
        sm_be_dist_tile(sm_backend_default(), kind, SM_K_DIST_NAN_INF, b, nx, d, -1.0f, q + i0 * d, qn, X, xn, G, nx);
        for (int64_t r = 0; r < b; r++) {
            float *o = out + (i0 + r) * nsets;
            const float *gr = G + r * nx;
            for (int64_t j = 0; j < nx; j++) {
                if (skip && skip[j]) continue;
                float v = metric == SM_METRIC_L2 ? sqrtf(gr[j]) : metric == SM_METRIC_IP ? gr[j] : 1.0f + gr[j];
                int c = set ? set[j] : (int)j;
                if (v < o[c]) o[c] = v;
            }
        }
    }
    sm_free(G); sm_free(xn); sm_free(qn);
    return SM_OK;
}

/* Centroids (nclasses, d) of the live items; empty[c] = 1 for a class with no live item. */
static sm_status centroids(const sm_gallery *g, float **cent, uint8_t **empty) {
    int C = g->nclasses, d = g->dim;
    double *acc = sm_calloc((size_t)(C > 0 ? C : 1) * (size_t)d, sizeof(double)); /* (C, d) */
    *cent = sm_alloc((size_t)(C > 0 ? C : 1) * (size_t)d, sizeof(float));
    *empty = sm_alloc((size_t)(C > 0 ? C : 1), 1);
    if (!acc || !*cent || !*empty) { sm_free(acc); sm_free(*cent); sm_free(*empty); *cent = NULL; *empty = NULL; return SM_ERR_NOMEM; }
    for (int64_t i = 0; i < g->n - g->ndead; i++) {
        double *a = acc + (int64_t)g->pcls[i] * d;
        const float *e = g->emb + i * d;
        for (int t = 0; t < d; t++) a[t] += e[t];
    }
    for (int c = 0; c < C; c++) {
        int64_t m = g->class_live[c];
        (*empty)[c] = m <= 0;
        for (int t = 0; t < d; t++) (*cent)[(int64_t)c * d + t] = m > 0 ? (float)(acc[(int64_t)c * d + t] / (double)m) : 0.0f;
    }
    sm_free(acc);
    return SM_OK;
}

sm_status sm_gallery_class_distances(sm_gallery *g, const float *q, int64_t nq, int d,
                                     sm_decision_rule rule, float *dist) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_class_distances: gallery is NULL");
    if (!dist && nq > 0) return gret(g, sm_fail(SM_ERR_INVALID, "gallery class distances: dist is NULL"));
    if (rule != SM_RULE_NEAREST && rule != SM_RULE_VOTE && rule != SM_RULE_CENTROID)
        return gret(g, sm_fail(SM_ERR_INVALID, "gallery class distances: unknown rule %d", (int)rule));
    sm_status st = check_queries(g, "gallery class distances", q, nq, d);
    if (st || nq == 0) return gret(g, st);
    if (rule != SM_RULE_CENTROID)
        return gret(g, set_distances(q, nq, g->emb, g->n - g->ndead, d, g->metric, g->pcls, NULL, g->nclasses, dist));
    float *cent;
    uint8_t *empty;
    if ((st = centroids(g, &cent, &empty))) return gret(g, st);
    st = set_distances(q, nq, cent, g->nclasses, d, g->metric, NULL, empty, g->nclasses, dist);
    sm_free(cent); sm_free(empty);
    return gret(g, st);
}

sm_status sm_gallery_decide(sm_gallery *g, const float *q, int64_t nq, int d, sm_decision_rule rule,
                            int k, sm_gallery_decision *out) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_decide: gallery is NULL");
    if (!out && nq > 0) return gret(g, sm_fail(SM_ERR_INVALID, "gallery decide: out is NULL"));
    if (rule != SM_RULE_NEAREST && rule != SM_RULE_VOTE && rule != SM_RULE_CENTROID)
        return gret(g, sm_fail(SM_ERR_INVALID, "gallery decide: unknown rule %d", (int)rule));
    if (rule == SM_RULE_VOTE && k < 1) return gret(g, sm_fail(SM_ERR_INVALID, "gallery decide: k = %d must be at least 1", k));
    sm_status st = check_queries(g, "gallery decide", q, nq, d);
    if (st || nq == 0) return gret(g, st);
    int64_t live = g->n - g->ndead;
    if (rule == SM_RULE_CENTROID) {
        int C = g->nclasses;
        float *cd = sm_alloc((size_t)(nq * C), sizeof(float)); /* (nq, C) */
        if (!cd) return gret(g, SM_ERR_NOMEM);
        if ((st = sm_gallery_class_distances(g, q, nq, d, rule, cd))) { sm_free(cd); return st; }
        for (int64_t i = 0; i < nq; i++) {
            int best = -1;
            for (int c = 0; c < C; c++)
                if (cd[i * C + c] < INFINITY && (best < 0 || cd[i * C + c] < cd[i * C + best])) best = c;
            out[i].best_class = best;
            out[i].distance = best >= 0 ? cd[i * C + best] : INFINITY;
            out[i].votes = 1.0f;
        }
        sm_free(cd);
    } else {
        int kk = rule == SM_RULE_VOTE ? k : 1;
        if (kk > live) kk = (int)live;
        sm_gallery_match *m = sm_alloc((size_t)(nq * kk), sizeof *m); /* (nq, kk) */
        if (!m) return gret(g, SM_ERR_NOMEM);
        if ((st = sm_gallery_search(g, q, nq, d, kk, m))) { sm_free(m); return st; }
        for (int64_t i = 0; i < nq; i++) {
            const sm_gallery_match *r = m + i * kk;
            int bestj = 0, bestv = 0;
            for (int j = 0; j < kk; j++) {
                int v = 0, first = 1;
                for (int t = 0; t < kk; t++) {
                    if (r[t].class_index != r[j].class_index) continue;
                    if (t < j) { first = 0; break; }
                    v++;
                }
                if (first && v > bestv) { bestv = v; bestj = j; }
            }
            out[i].best_class = r[bestj].class_index;
            out[i].distance = r[bestj].distance;
            out[i].votes = (float)bestv / (float)kk;
        }
        sm_free(m);
    }
    for (int64_t i = 0; i < nq; i++) {
        int b = out[i].best_class;
        int ok = b >= 0 && out[i].distance <= g->threshold;
        out[i].class_index = ok ? b : -1;
        out[i].class_name = ok ? g->names[b] : NULL;
    }
    return SM_OK;
}

/* ---- calibration -------------------------------------------------------------------------- */
typedef struct dpair { float d; int8_t g; } dpair;

static int cmp_dpair(const void *pa, const void *pb) {
    const dpair *a = pa, *b = pb;
    return (a->d > b->d) - (a->d < b->d);
}

sm_status sm_calibrate_threshold(const float *dist, const int8_t *genuine, int64_t n, sm_calibration mode,
                                 double target_far, float *threshold, double *tar, double *far) {
    const char *who = "threshold calibration";
    if (!dist || !genuine || !threshold) return sm_fail(SM_ERR_INVALID, "%s: NULL argument", who);
    if (n <= 0) return sm_fail(SM_ERR_INVALID, "%s: no pairs", who);
    if (mode != SM_CALIBRATE_FAR && mode != SM_CALIBRATE_F1) return sm_fail(SM_ERR_INVALID, "%s: unknown mode %d", who, (int)mode);
    if (mode == SM_CALIBRATE_FAR && !(target_far >= 0.0 && target_far <= 1.0))
        return sm_fail(SM_ERR_INVALID, "%s: target FAR %g is outside [0, 1]", who, target_far);
    int64_t pos = 0, neg = 0;
    for (int64_t i = 0; i < n; i++) {
        if (genuine[i] != 0 && genuine[i] != 1)
            return sm_fail(SM_ERR_INVALID, "%s: genuine[%lld] = %d is not 0 or 1", who, (long long)i, genuine[i]);
        if (!sm_isfinite_f(dist[i])) return sm_fail(SM_ERR_NUMERIC, "%s: distance %lld is not finite", who, (long long)i);
        pos += genuine[i];
    }
    neg = n - pos;
    if (!pos || !neg)
        return sm_fail(SM_ERR_INVALID, "%s: need genuine and impostor pairs (%lld genuine, %lld impostor)", who,
                       (long long)pos, (long long)neg);
    dpair *v = sm_alloc((size_t)n, sizeof(dpair)); /* (n) sorted by increasing distance */
    if (!v) return SM_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) { v[i].d = dist[i]; v[i].g = genuine[i]; }
    qsort(v, (size_t)n, sizeof(dpair), cmp_dpair);
    /* before any group: accept nothing */
    float best_t = nextafterf(v[0].d, -INFINITY);
    int64_t best_tp = 0, best_fp = 0, tp = 0, fp = 0;
    double best_f1 = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        for (; j < n && v[j].d == v[i].d; j++) { if (v[j].g) tp++; else fp++; }
        if (mode == SM_CALIBRATE_FAR) {
            if ((double)fp / (double)neg > target_far) break;
            best_t = v[i].d; best_tp = tp; best_fp = fp;
        } else {
            double f1 = 2.0 * tp / (2.0 * tp + fp + (pos - tp));
            if (f1 > best_f1) { best_f1 = f1; best_t = v[i].d; best_tp = tp; best_fp = fp; }
        }
        i = j;
    }
    sm_free(v);
    *threshold = best_t;
    if (tar) *tar = (double)best_tp / (double)pos;
    if (far) *far = (double)best_fp / (double)neg;
    return SM_OK;
}
