/* api.c - the request handling of `simile serve`: routing of /api/v1/..., JSON bodies (cJSON)
 * or multipart forms (parsed by libmicrohttpd in http.c, mapped to the same JSON fields here),
 * base64 images (nettle), the gallery operations, API-key roles, JSON errors and the
 * Prometheus metrics.  Locking: readers share s->lock; a change runs under the writer mutex
 * s->wmu (checks, journal append + fsync, checkpoint) and takes s->lock alone only while the
 * gallery publishes it (sm_gallery_set_publish), so searches go on during a write's fsync.
 * Every route and error is in docs/serve.md.  Never exits: every failure is a response. */
#define _POSIX_C_SOURCE 200809L
#include "serve.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <nettle/base64.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_K 100
#define MAX_SEGMENTS 8

static const int codes[SRV_NCODES] = {200, 201, 400, 401, 403, 404, 405, 408, 409, 413, 415, 500, 503, 0};
static const double bucket_le[SRV_NBUCKETS] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, INFINITY};
static const char *const route_names[R_COUNT] = {"health", "metrics", "subjects", "subject", "subject_items",
                                                  "items", "item", "identify", "verify", "calibrate",
                                                  "other"};

/* ---- responses ---------------------------------------------------------------------------- */
static void json_response(srv_response *r, int status, cJSON *j) {
    r->status = status;
    r->content_type = "application/json";
    r->body = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!r->body) { /* out of memory while printing: a fixed body */
        r->status = 503;
        r->body = strdup("{\"error\":{\"status\":503,\"message\":\"out of memory\"}}");
    }
}

void srv_error(srv_response *r, int status, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
    if (e) {
        cJSON_AddNumberToObject(e, "status", status);
        cJSON_AddStringToObject(e, "message", msg);
    }
    if (!e) { cJSON_Delete(j); j = NULL; }
    json_response(r, status, j);
}

/* HTTP status of a library error */
static int http_status(sm_status st) {
    switch (st) {
    case SM_ERR_NOTFOUND: return 404;
    case SM_ERR_NOMEM: return 503;
    case SM_ERR_IO: return 500;
    default: return 400;
    }
}

static void lib_error(srv_response *r, sm_status st, const char *msg) {
    srv_error(r, http_status(st), "%s", msg && *msg ? msg : sm_strerror(st));
}

/* ---- metrics ------------------------------------------------------------------------------ */
void srv_observe(srv *s, int route, int status, double seconds) {
    if (route < 0 || route >= R_COUNT) route = R_OTHER;
    int c = SRV_NCODES - 1;
    for (int i = 0; i < SRV_NCODES - 1; i++) if (codes[i] == status) { c = i; break; }
    atomic_fetch_add(&s->metrics.requests[route][c], 1);
    int b = 0;
    while (b < SRV_NBUCKETS - 1 && seconds > bucket_le[b]) b++;
    atomic_fetch_add(&s->metrics.buckets[b], 1);
    atomic_fetch_add(&s->metrics.count, 1);
    atomic_fetch_add(&s->metrics.sum_us, (uint_fast64_t)(seconds * 1e6));
}

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
}

static void metrics_response(srv *s, srv_response *r) {
    sbuf b = {0};
    sb_printf(&b, "# HELP simile_requests_total HTTP requests by route and status.\n# TYPE simile_requests_total counter\n");
    for (int i = 0; i < R_COUNT; i++)
        for (int c = 0; c < SRV_NCODES; c++) {
            uint64_t v = atomic_load(&s->metrics.requests[i][c]);
            if (v) sb_printf(&b, "simile_requests_total{route=\"%s\",status=\"%d\"} %llu\n", route_names[i], codes[c],
                             (unsigned long long)v);
        }
    sb_printf(&b, "# HELP simile_request_duration_seconds Time to handle a request.\n"
                  "# TYPE simile_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < SRV_NBUCKETS; i++) {
        cum += atomic_load(&s->metrics.buckets[i]);
        if (isinf(bucket_le[i])) sb_printf(&b, "simile_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        else sb_printf(&b, "simile_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bucket_le[i], (unsigned long long)cum);
    }
    sb_printf(&b, "simile_request_duration_seconds_sum %.6f\nsimile_request_duration_seconds_count %llu\n",
              (double)atomic_load(&s->metrics.sum_us) / 1e6, (unsigned long long)atomic_load(&s->metrics.count));
    pthread_rwlock_rdlock(&s->lock);
    int live = 0;
    long long jrec = (long long)atomic_load(&s->journal_records);
    for (int i = 0; i < sm_gallery_num_classes(s->g); i++) {
        sm_gallery_class ci;
        if (!sm_gallery_class_info(s->g, i, &ci) && !ci.removed) live++;
    }
    sb_printf(&b, "# HELP simile_gallery_items Live items in the gallery.\n# TYPE simile_gallery_items gauge\n"
                  "simile_gallery_items %lld\n# HELP simile_gallery_subjects Live subjects (classes).\n"
                  "# TYPE simile_gallery_subjects gauge\nsimile_gallery_subjects %d\n"
                  "# HELP simile_journal_records Journal records not yet checkpointed.\n# TYPE simile_journal_records gauge\n"
                  "simile_journal_records %lld\n",
              (long long)sm_gallery_size(s->g), live, jrec);
    pthread_rwlock_unlock(&s->lock);
    if (b.oom) { free(b.p); srv_error(r, 503, "out of memory"); return; }
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4";
    r->body = b.p;
}

/* ---- paths -------------------------------------------------------------------------------- */
static int unhex(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Split path into at most MAX_SEGMENTS percent-decoded segments (in buf); -1 if malformed. */
static int split_path(const char *path, char *buf, size_t cap, char **seg) {
    if (!path || path[0] != '/') return -1;
    size_t o = 0;
    int n = 0;
    const char *p = path + 1;
    while (*p) {
        if (n == MAX_SEGMENTS) return -1;
        seg[n++] = buf + o;
        while (*p && *p != '/') {
            int ch = (unsigned char)*p;
            if (ch == '%') {
                int a = unhex(p[1]), b = a < 0 ? -1 : unhex(p[2]);
                if (a < 0 || b < 0) return -1;
                ch = a << 4 | b;
                p += 3;
            } else p++;
            if (ch == 0 || o + 2 > cap) return -1;
            buf[o++] = (char)ch;
        }
        buf[o++] = 0;
        if (*p == '/') {
            p++;
            if (!*p) break; /* a trailing slash */
        }
    }
    return n;
}

int srv_route_of(const char *path) {
    char buf[1024], *seg[MAX_SEGMENTS];
    int n = split_path(path, buf, sizeof buf, seg);
    if (n == 1 && !strcmp(seg[0], "metrics")) return R_METRICS;
    if (n < 3 || strcmp(seg[0], "api") || strcmp(seg[1], "v1")) return R_OTHER;
    const char *a = seg[2];
    if (n == 3 && !strcmp(a, "health")) return R_HEALTH;
    if (n == 3 && !strcmp(a, "metrics")) return R_METRICS;
    if (n == 3 && !strcmp(a, "identify")) return R_IDENTIFY;
    if (n == 3 && !strcmp(a, "verify")) return R_VERIFY;
    if (n == 3 && !strcmp(a, "calibrate")) return R_CALIBRATE;
    if (!strcmp(a, "subjects")) return n == 3 ? R_SUBJECTS : n == 4 ? R_SUBJECT : n == 5 && !strcmp(seg[4], "items") ? R_SUBJECT_ITEMS : R_OTHER;
    if (!strcmp(a, "items")) return n == 3 ? R_ITEMS : n == 4 ? R_ITEM : R_OTHER;
    return R_OTHER;
}

/* ---- inputs ------------------------------------------------------------------------------- */
static const char *rule_name(sm_decision_rule r) {
    return r == SM_RULE_VOTE ? "vote" : r == SM_RULE_CENTROID ? "centroid" : "nearest";
}

static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 255) return 0;
    for (size_t i = 0; i < n; i++) if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

static sm_model *model_get(srv *s) {
    pthread_mutex_lock(&s->model_mu);
    for (;;) {
        for (int i = 0; i < s->nmodels; i++)
            if (!s->model_busy[i]) {
                s->model_busy[i] = 1;
                pthread_mutex_unlock(&s->model_mu);
                return s->models[i];
            }
        pthread_cond_wait(&s->model_cv, &s->model_mu);
    }
}

static void model_put(srv *s, sm_model *m) {
    pthread_mutex_lock(&s->model_mu);
    for (int i = 0; i < s->nmodels; i++) if (s->models[i] == m) s->model_busy[i] = 0;
    pthread_cond_signal(&s->model_cv);
    pthread_mutex_unlock(&s->model_mu);
}

static void l2_normalise(float *e, int d) {
    double ss = 0;
    for (int i = 0; i < d; i++) ss += (double)e[i] * e[i];
    if (ss > 0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (int i = 0; i < d; i++) e[i] *= inv;
    }
}

/* Decode base64 image b64 and embed it into emb (dim).  0, or -1 with r filled. */
static int embed_image(srv *s, const char *b64, const char *what, float *emb, srv_response *r) {
    if (!s->nmodels) { srv_error(r, 400, "%s: the server has no model (--model): send embeddings", what); return -1; }
    size_t n = strlen(b64);
    if (n > (s->max_image / 3 + 1) * 4 + 4) {
        srv_error(r, 413, "%s: the image is larger than %zu bytes (--max-image)", what, s->max_image);
        return -1;
    }
    uint8_t *bytes = malloc(BASE64_DECODE_LENGTH(n) + 1);
    float *x = malloc((size_t)s->h * s->w * s->c * sizeof(float));
    if (!bytes || !x) { free(bytes); free(x); srv_error(r, 503, "out of memory"); return -1; }
    struct base64_decode_ctx ctx;
    base64_decode_init(&ctx);
    size_t len = BASE64_DECODE_LENGTH(n) + 1;
    if (!base64_decode_update(&ctx, &len, bytes, n, b64) || !base64_decode_final(&ctx)) {
        free(bytes); free(x);
        srv_error(r, 400, "%s: not valid base64", what);
        return -1;
    }
    if (len > s->max_image) {
        free(bytes); free(x);
        srv_error(r, 413, "%s: the image is larger than %zu bytes (--max-image)", what, s->max_image);
        return -1;
    }
    sm_status st = sm_image_decode(what, bytes, len, s->h, s->w, s->c, x, NULL, NULL);
    free(bytes);
    if (st) { free(x); srv_error(r, 400, "%s", sm_errmsg()); return -1; }
    if (s->normalize) {
        int64_t m = (int64_t)s->h * s->w * s->c;
        if (s->per_channel)
            for (int64_t i = 0; i < m; i++) x[i] = (x[i] - s->means[i % s->c]) / s->stds[i % s->c];
        else
            for (int64_t i = 0; i < m; i++) x[i] = (x[i] - s->mean) / s->std;
    }
    sm_model *m = model_get(s);
    st = sm_model_embed(m, x, 1, emb);
    char msg[256];
    if (st) snprintf(msg, sizeof msg, "%s", sm_model_errmsg(m));
    model_put(s, m);
    free(x);
    if (st) { srv_error(r, http_status(st), "%s: %s", what, msg); return -1; }
    if (!s->raw) l2_normalise(emb, s->dim);
    return 0;
}

/* An embedding from a JSON array of dim numbers. */
static int parse_embedding(srv *s, const cJSON *a, const char *what, float *emb, srv_response *r) {
    if (!cJSON_IsArray(a)) { srv_error(r, 400, "%s must be an array of %d numbers", what, s->dim); return -1; }
    int n = cJSON_GetArraySize(a);
    if (n != s->dim) { srv_error(r, 400, "%s has %d values, the gallery's dimension is %d", what, n, s->dim); return -1; }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30) {
            srv_error(r, 400, "%s[%d] is not a finite number", what, i);
            return -1;
        }
        emb[i++] = (float)v->valuedouble;
    }
    if (!s->raw) l2_normalise(emb, s->dim);
    return 0;
}

/* A query object: {"image": base64} or {"embedding": [...]}. */
static int parse_query(srv *s, const cJSON *o, const char *what, float *emb, srv_response *r) {
    if (!cJSON_IsObject(o)) { srv_error(r, 400, "%s must be an object with \"image\" or \"embedding\"", what); return -1; }
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(o, "image"), *e = cJSON_GetObjectItemCaseSensitive(o, "embedding");
    if (!img == !e) { srv_error(r, 400, "%s: give \"image\" (base64) or \"embedding\" (one of them)", what); return -1; }
    if (img) {
        if (!cJSON_IsString(img)) { srv_error(r, 400, "%s: \"image\" must be a base64 string", what); return -1; }
        return embed_image(s, img->valuestring, what, emb, r);
    }
    return parse_embedding(s, e, what, emb, r);
}

/* Optional "threshold" (number) and "rule" in a body: 1 present, 0 absent, -1 error. */
static int opt_threshold(const cJSON *body, float *thr, srv_response *r) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "threshold");
    if (!t || cJSON_IsNull(t)) return 0;
    if (!cJSON_IsNumber(t) || !isfinite(t->valuedouble) || fabs(t->valuedouble) > 1e30) {
        srv_error(r, 400, "\"threshold\" must be a finite number");
        return -1;
    }
    *thr = (float)t->valuedouble;
    return 1;
}

static int opt_rule(const cJSON *body, sm_decision_rule *rule, int allow_vote, srv_response *r) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "rule");
    if (!t) return 0;
    const char *v = cJSON_IsString(t) ? t->valuestring : "";
    if (!strcmp(v, "nearest")) *rule = SM_RULE_NEAREST;
    else if (!strcmp(v, "centroid")) *rule = SM_RULE_CENTROID;
    else if (allow_vote && !strcmp(v, "vote")) *rule = SM_RULE_VOTE;
    else { srv_error(r, 400, "\"rule\" must be %s", allow_vote ? "nearest, vote or centroid" : "nearest or centroid"); return -1; }
    return 1;
}

/* ---- routes ------------------------------------------------------------------------------- */
static void health(srv *s, srv_response *r) {
    cJSON *j = cJSON_CreateObject();
    char fp[16];
    pthread_rwlock_rdlock(&s->lock);
    snprintf(fp, sizeof fp, "%08x", sm_gallery_model_fingerprint(s->g));
    cJSON_AddStringToObject(j, "status", "ok");
    cJSON_AddNumberToObject(j, "items", (double)sm_gallery_size(s->g));
    cJSON_AddNumberToObject(j, "dimension", sm_gallery_dim(s->g));
    cJSON_AddStringToObject(j, "model", fp);
    cJSON_AddBoolToObject(j, "images", s->nmodels > 0);
    pthread_rwlock_unlock(&s->lock);
    json_response(r, 200, j);
}

static void list_subjects(srv *s, srv_response *r) {
    cJSON *j = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(j, "subjects");
    pthread_rwlock_rdlock(&s->lock);
    for (int i = 0; i < sm_gallery_num_classes(s->g); i++) {
        sm_gallery_class ci;
        if (sm_gallery_class_info(s->g, i, &ci) || ci.removed) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", ci.name);
        cJSON_AddNumberToObject(o, "items", (double)ci.items);
        cJSON_AddItemToArray(a, o);
    }
    pthread_rwlock_unlock(&s->lock);
    json_response(r, 200, j);
}

static void get_subject(srv *s, const char *name, srv_response *r) {
    pthread_rwlock_rdlock(&s->lock);
    int c = sm_gallery_find_class(s->g, name);
    sm_gallery_class ci = {0};
    if (c >= 0) sm_gallery_class_info(s->g, c, &ci);
    cJSON *j = NULL;
    if (c >= 0) {
        j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", ci.name);
        cJSON_AddNumberToObject(j, "items", (double)ci.items);
    }
    pthread_rwlock_unlock(&s->lock);
    if (!j) srv_error(r, 404, "no subject '%.100s'", name);
    else json_response(r, 200, j);
}

/* An enrolment time (ms since the epoch) as ISO 8601 UTC; 0 if unknown (t <= 0). */
static int iso_time(int64_t t, char *buf, size_t cap) {
    if (t <= 0) return 0;
    time_t sec = (time_t)(t / 1000);
    struct tm tm;
    if (!gmtime_r(&sec, &tm)) return 0;
    size_t k = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!k) return 0;
    snprintf(buf + k, cap - k, ".%03dZ", (int)(t % 1000));
    return 1;
}

/* Items, of one subject (name) or all (NULL). */
static void list_items(srv *s, const char *name, srv_response *r) {
    pthread_rwlock_rdlock(&s->lock);
    int want = name ? sm_gallery_find_class(s->g, name) : -1;
    if (name && want < 0) {
        pthread_rwlock_unlock(&s->lock);
        srv_error(r, 404, "no subject '%.100s'", name);
        return;
    }
    int64_t n = sm_gallery_size(s->g);
    int64_t *ids = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    int32_t *cls = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    const char **src = malloc((size_t)(n ? n : 1) * sizeof(char *));
    int64_t *tms = malloc((size_t)(n ? n : 1) * sizeof(int64_t)); /* (n) ms since the epoch */
    if (!ids || !cls || !src || !tms) {
        pthread_rwlock_unlock(&s->lock);
        free(ids); free(cls); free((void *)src); free(tms);
        srv_error(r, 503, "out of memory");
        return;
    }
    sm_gallery_items(s->g, ids, cls, NULL);
    sm_gallery_item_sources(s->g, src);
    sm_gallery_item_times(s->g, tms);
    cJSON *j = cJSON_CreateObject();
    if (name) cJSON_AddStringToObject(j, "subject", name);
    cJSON *a = cJSON_AddArrayToObject(j, "items");
    for (int64_t i = 0; i < n; i++) {
        if (name && cls[i] != want) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)ids[i]);
        if (!name) {
            sm_gallery_class ci;
            sm_gallery_class_info(s->g, cls[i], &ci);
            cJSON_AddStringToObject(o, "subject", ci.name);
        }
        cJSON_AddStringToObject(o, "source", src[i]);
        char when[40];
        if (iso_time(tms[i], when, sizeof when)) {
            cJSON_AddStringToObject(o, "enrolled", when);
            cJSON_AddNumberToObject(o, "enrolled_ms", (double)tms[i]);
        } else {
            cJSON_AddNullToObject(o, "enrolled");
            cJSON_AddNullToObject(o, "enrolled_ms");
        }
        cJSON_AddItemToArray(a, o);
    }
    pthread_rwlock_unlock(&s->lock);
    free(ids); free(cls); free((void *)src); free(tms);
    json_response(r, 200, j);
}

/* The publish hook (sm_gallery_set_publish): s->lock alone while a change is made visible. */
static void publish(void *ctx, int begin) {
    srv *s = ctx;
    if (begin) pthread_rwlock_wrlock(&s->lock); else pthread_rwlock_unlock(&s->lock);
}

void srv_attach(srv *s, sm_gallery *g) {
    s->g = g;
    sm_gallery_set_publish(g, publish, s);
    atomic_store(&s->journal_records, (int_fast64_t)sm_gallery_journal_records(g));
}

/* A change: writer_begin, the gallery call (which journals, fsyncs, then publishes under
 * s->lock), writer_end(st) which keeps the gallery's message in msg on failure, or else
 * checkpoints every checkpoint_every records (a checkpoint only reads the items: searches go
 * on), and releases the writer mutex. */
static void writer_begin(srv *s) { pthread_mutex_lock(&s->wmu); }

static sm_status writer_end(srv *s, sm_status st, char *msg, size_t cap) {
    snprintf(msg, cap, "%s", st ? sm_gallery_errmsg(s->g) : "");
    if (!st && s->gpath && s->checkpoint_every > 0 && sm_gallery_journal_records(s->g) >= s->checkpoint_every)
        if (sm_gallery_checkpoint(s->g))
            fprintf(stderr, "simile serve: warning: checkpoint failed (the journal keeps the changes): %s\n",
                    sm_gallery_errmsg(s->g));
    atomic_store(&s->journal_records, (int_fast64_t)sm_gallery_journal_records(s->g));
    pthread_mutex_unlock(&s->wmu);
    return st;
}

static void delete_subject(srv *s, const char *name, srv_response *r) {
    int64_t removed = 0;
    char msg[300];
    writer_begin(s);
    sm_status st = writer_end(s, sm_gallery_remove_class(s->g, name, &removed), msg, sizeof msg);
    if (st) { lib_error(r, st, msg); return; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "removed", name);
    cJSON_AddNumberToObject(j, "items", (double)removed);
    json_response(r, 200, j);
}

static void rename_subject(srv *s, const char *name, const cJSON *body, srv_response *r) {
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (!cJSON_IsString(to)) { srv_error(r, 400, "give the new name as {\"name\": \"...\"}"); return; }
    if (!valid_name(to->valuestring)) { srv_error(r, 400, "a subject name has 1 to 255 bytes and no control characters"); return; }
    char msg[300];
    writer_begin(s);
    sm_status st = writer_end(s, sm_gallery_rename_class(s->g, name, to->valuestring), msg, sizeof msg);
    if (st == SM_ERR_RANGE) { srv_error(r, 409, "%s", msg); return; }
    if (st) { lib_error(r, st, msg); return; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", to->valuestring);
    cJSON_AddStringToObject(j, "previous", name);
    json_response(r, 200, j);
}

static void delete_item(srv *s, const char *idtext, srv_response *r) {
    char *end;
    long long id = strtoll(idtext, &end, 10);
    if (!*idtext || *end || id < 0) { srv_error(r, 400, "'%.64s' is not an item id", idtext); return; }
    char msg[300];
    writer_begin(s);
    sm_status st = writer_end(s, sm_gallery_remove_item(s->g, (int64_t)id), msg, sizeof msg);
    if (st) { lib_error(r, st, msg); return; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "removed", (double)id);
    json_response(r, 200, j);
}

static void enrol(srv *s, const char *name, const cJSON *body, srv_response *r) {
    if (!valid_name(name)) { srv_error(r, 400, "a subject name has 1 to 255 bytes and no control characters"); return; }
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(body, "images"), *embs = cJSON_GetObjectItemCaseSensitive(body, "embeddings");
    const cJSON *srcs = cJSON_GetObjectItemCaseSensitive(body, "sources");
    if (!imgs == !embs) { srv_error(r, 400, "give \"images\" (base64 strings) or \"embeddings\" (arrays of numbers): one of them"); return; }
    const cJSON *list = imgs ? imgs : embs;
    if (!cJSON_IsArray(list)) { srv_error(r, 400, "\"%s\" must be an array", imgs ? "images" : "embeddings"); return; }
    int n = cJSON_GetArraySize(list);
    if (n < 1) { srv_error(r, 400, "nothing to enrol (an empty array)"); return; }
    if (n > s->max_batch) { srv_error(r, 413, "%d items in one enrolment, at most %d (--max-batch)", n, s->max_batch); return; }
    if (srcs && (!cJSON_IsArray(srcs) || cJSON_GetArraySize(srcs) != n)) {
        srv_error(r, 400, "\"sources\" must be an array of %d strings (one per item)", n);
        return;
    }
    float *emb = malloc((size_t)n * (size_t)s->dim * sizeof(float));
    const char **src = calloc((size_t)n, sizeof(char *));
    int64_t *ids = malloc((size_t)n * sizeof(int64_t));
    if (!emb || !src || !ids) { free(emb); free((void *)src); free(ids); srv_error(r, 503, "out of memory"); return; }
    int i = 0;
    const cJSON *v;
    char what[64];
    cJSON_ArrayForEach(v, list) {
        snprintf(what, sizeof what, "%s[%d]", imgs ? "images" : "embeddings", i);
        int bad;
        if (imgs) bad = !cJSON_IsString(v) ? (srv_error(r, 400, "%s must be a base64 string", what), -1)
                                           : embed_image(s, v->valuestring, what, emb + (size_t)i * s->dim, r);
        else bad = parse_embedding(s, v, what, emb + (size_t)i * s->dim, r);
        if (bad) { free(emb); free((void *)src); free(ids); return; }
        const cJSON *sv = srcs ? cJSON_GetArrayItem(srcs, i) : NULL;
        if (sv && !cJSON_IsString(sv) && !cJSON_IsNull(sv)) {
            free(emb); free((void *)src); free(ids);
            srv_error(r, 400, "sources[%d] must be a string", i);
            return;
        }
        src[i] = sv && cJSON_IsString(sv) ? sv->valuestring : NULL;
        i++;
    }
    char msg[300];
    writer_begin(s); /* the writer may read the gallery without s->lock: only writers change it */
    int created = sm_gallery_find_class(s->g, name) < 0;
    sm_status st = sm_gallery_add_sourced(s->g, emb, n, s->dim, name, NULL, src, ids);
    int64_t total = 0;
    sm_gallery_class ci;
    if (!st && !sm_gallery_class_info(s->g, sm_gallery_find_class(s->g, name), &ci)) total = ci.items;
    st = writer_end(s, st, msg, sizeof msg);
    free(emb);
    free((void *)src);
    if (st) { free(ids); lib_error(r, st, msg); return; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "subject", name);
    cJSON_AddBoolToObject(j, "created", created);
    cJSON *a = cJSON_AddArrayToObject(j, "ids");
    for (int k = 0; k < n; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ids[k]));
    cJSON_AddNumberToObject(j, "items", (double)total);
    free(ids);
    json_response(r, 201, j);
}

static void add_threshold(cJSON *j, int decided, float thr, const char *source) {
    if (decided) cJSON_AddNumberToObject(j, "threshold", thr); else cJSON_AddNullToObject(j, "threshold");
    if (source) cJSON_AddStringToObject(j, "threshold_source", source); else cJSON_AddNullToObject(j, "threshold_source");
}

static void identify(srv *s, const cJSON *body, srv_response *r) {
    float *q = malloc((size_t)s->dim * sizeof(float));
    if (!q) { srv_error(r, 503, "out of memory"); return; }
    if (parse_query(s, body, "the request", q, r)) { free(q); return; }
    int k = 5;
    const cJSON *kj = cJSON_GetObjectItemCaseSensitive(body, "k");
    if (kj) {
        if (!cJSON_IsNumber(kj) || kj->valuedouble != floor(kj->valuedouble) || kj->valuedouble < 1 || kj->valuedouble > MAX_K) {
            free(q);
            srv_error(r, 400, "\"k\" must be an integer from 1 to %d", MAX_K);
            return;
        }
        k = (int)kj->valuedouble;
    }
    float rthr = 0;
    sm_decision_rule rule = SM_RULE_NEAREST;
    int has_thr = opt_threshold(body, &rthr, r), rule_set = has_thr < 0 ? -1 : opt_rule(body, &rule, 1, r);
    if (has_thr < 0 || rule_set < 0) { free(q); return; }
    sm_gallery_match *m = malloc((size_t)k * sizeof *m);
    if (!m) { free(q); srv_error(r, 503, "out of memory"); return; }
    pthread_rwlock_rdlock(&s->lock);
    sm_decision_rule cal_rule;
    float gthr = sm_gallery_threshold(s->g, &cal_rule);
    if (!rule_set && !isinf(gthr)) rule = cal_rule;
    sm_gallery_decision d;
    sm_status st = sm_gallery_size(s->g) == 0 ? SM_ERR_NOTFOUND : sm_gallery_search(s->g, q, 1, s->dim, k, m);
    if (!st && rule == SM_RULE_NEAREST) { /* the decision of sm_gallery_decide, from the nearest match: no second pass */
        d.best_class = m[0].class_index;
        d.distance = m[0].distance;
        d.class_index = d.distance <= gthr ? d.best_class : -1;
        d.class_name = d.class_index >= 0 ? m[0].class_name : NULL;
        d.votes = 1;
    } else if (!st) st = sm_gallery_decide(s->g, q, 1, s->dim, rule, k, &d);
    cJSON *j = NULL;
    if (!st) {
        j = cJSON_CreateObject();
        cJSON *a = cJSON_AddArrayToObject(j, "matches");
        for (int i = 0; i < k && m[i].class_index >= 0; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "subject", m[i].class_name);
            cJSON_AddNumberToObject(o, "item_id", (double)m[i].item_id);
            cJSON_AddNumberToObject(o, "distance", m[i].distance);
            cJSON_AddItemToArray(a, o);
        }
        sm_gallery_class best = {0};
        if (d.best_class < 0 || sm_gallery_class_info(s->g, d.best_class, &best)) best.name = "";
        int decided = has_thr || !(isinf(gthr) && gthr > 0);
        float thr = has_thr ? rthr : gthr;
        int match = has_thr ? d.distance <= rthr : d.class_index >= 0;
        cJSON *o = cJSON_AddObjectToObject(j, "decision");
        cJSON_AddStringToObject(o, "result", match ? "match" : "unknown");
        if (match) cJSON_AddStringToObject(o, "subject", best.name); else cJSON_AddNullToObject(o, "subject");
        cJSON_AddStringToObject(o, "nearest_subject", best.name);
        cJSON_AddNumberToObject(o, "distance", d.distance);
        cJSON_AddStringToObject(o, "rule", rule_name(rule));
        add_threshold(o, decided, thr, has_thr ? "request" : decided ? "gallery" : NULL);
    }
    pthread_rwlock_unlock(&s->lock);
    free(q);
    free(m);
    if (st == SM_ERR_NOTFOUND) srv_error(r, 409, "the gallery is empty: enrol a subject first");
    else if (st) lib_error(r, st, sm_errmsg());
    else json_response(r, 200, j);
}

/* verify: pair {"a": q, "b": q} or subject {"a": q, "subject": name}; the rule of simile verify:
 * a pair has a decision only with a threshold in the request; a subject uses the gallery's
 * threshold when it was calibrated for the rule (nearest, or centroid), else only the request's. */
static void verify(srv *s, const cJSON *body, srv_response *r) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(body, "a"), *b = cJSON_GetObjectItemCaseSensitive(body, "b");
    const cJSON *subj = cJSON_GetObjectItemCaseSensitive(body, "subject");
    if (!a || !b == !subj) { srv_error(r, 400, "give \"a\" and \"b\" (two queries), or \"a\" and \"subject\""); return; }
    if (subj && !cJSON_IsString(subj)) { srv_error(r, 400, "\"subject\" must be a string"); return; }
    float rthr = 0;
    sm_decision_rule rule = SM_RULE_NEAREST;
    int has_thr = opt_threshold(body, &rthr, r), rule_set = has_thr < 0 ? -1 : opt_rule(body, &rule, 0, r);
    if (has_thr < 0 || rule_set < 0) return;
    float *q = malloc(2 * (size_t)s->dim * sizeof(float));
    if (!q) { srv_error(r, 503, "out of memory"); return; }
    if (parse_query(s, a, "a", q, r) || (b && parse_query(s, b, "b", q + s->dim, r))) { free(q); return; }
    pthread_rwlock_rdlock(&s->lock);
    sm_metric metric = sm_gallery_metric(s->g);
    float dist = 0, thr = rthr;
    const char *tsrc = has_thr ? "request" : NULL;
    sm_status st = SM_OK;
    char msg[300] = "";
    if (subj) {
        sm_decision_rule cal_rule;
        float gthr = sm_gallery_threshold(s->g, &cal_rule);
        int calibrated = !(isinf(gthr) && gthr > 0);
        if (!rule_set && calibrated && cal_rule == SM_RULE_CENTROID) rule = SM_RULE_CENTROID;
        if (!has_thr && calibrated && (cal_rule == rule || (cal_rule == SM_RULE_VOTE && rule == SM_RULE_NEAREST))) {
            thr = gthr;
            tsrc = "gallery";
        }
        int c = sm_gallery_find_class(s->g, subj->valuestring);
        float *cd = c < 0 ? NULL : malloc((size_t)sm_gallery_num_classes(s->g) * sizeof(float));
        if (c < 0) { st = SM_ERR_NOTFOUND; snprintf(msg, sizeof msg, "no subject '%.100s'", subj->valuestring); }
        else if (!cd) st = SM_ERR_NOMEM;
        else if ((st = sm_gallery_class_distances(s->g, q, 1, s->dim, rule, cd))) snprintf(msg, sizeof msg, "%s", sm_errmsg());
        else dist = cd[c];
        free(cd);
    } else {
        dist = sm_vector_distance(q, q + s->dim, s->dim, metric);
    }
    pthread_rwlock_unlock(&s->lock);
    free(q);
    if (st) { lib_error(r, st, msg); return; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mode", subj ? "subject" : "pair");
    if (subj) {
        cJSON_AddStringToObject(j, "subject", subj->valuestring);
        cJSON_AddStringToObject(j, "rule", rule_name(rule));
    }
    cJSON_AddStringToObject(j, "metric", metric == SM_METRIC_COSINE ? "cosine" : metric == SM_METRIC_IP ? "ip" : "l2");
    cJSON_AddNumberToObject(j, "distance", dist);
    add_threshold(j, tsrc != NULL, thr, tsrc);
    if (tsrc) cJSON_AddStringToObject(j, "decision", dist <= thr ? "same" : "different");
    else cJSON_AddNullToObject(j, "decision");
    json_response(r, 200, j);
}

/* calibrate: labelled queries {"images"|"embeddings": [...], "labels": [subject names]}, "far"
 * (default 0.01) or "f1": true, "rule" (nearest or centroid), "dry_run".  As simile gallery
 * calibrate: the distance of each query to each live subject (nearest item or centroid) is a
 * pair, genuine when the subject is the query's label; the threshold is the largest distance
 * whose false-accept rate is <= far (or the best-F1 one), stored unless dry_run. */
static void calibrate(srv *s, const cJSON *body, srv_response *r, int may_write) {
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(body, "images"), *embs = cJSON_GetObjectItemCaseSensitive(body, "embeddings");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(body, "labels"), *farj = cJSON_GetObjectItemCaseSensitive(body, "far");
    const cJSON *f1j = cJSON_GetObjectItemCaseSensitive(body, "f1"), *dry = cJSON_GetObjectItemCaseSensitive(body, "dry_run");
    if (!imgs == !embs) { srv_error(r, 400, "give \"images\" or \"embeddings\" (one of them) with \"labels\""); return; }
    const cJSON *list = imgs ? imgs : embs;
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (n < 1 || n > s->max_batch) { srv_error(r, n > s->max_batch ? 413 : 400, "1 to %d labelled queries are needed", s->max_batch); return; }
    if (!cJSON_IsArray(labels) || cJSON_GetArraySize(labels) != n) { srv_error(r, 400, "\"labels\" must be an array of %d subject names", n); return; }
    if ((f1j && !cJSON_IsBool(f1j)) || (dry && !cJSON_IsBool(dry))) { srv_error(r, 400, "\"f1\" and \"dry_run\" are true or false"); return; }
    int f1 = cJSON_IsTrue(f1j), dry_run = cJSON_IsTrue(dry);
    double target = 0.01;
    if (farj && (!cJSON_IsNumber(farj) || !(farj->valuedouble >= 0 && farj->valuedouble <= 1))) { srv_error(r, 400, "\"far\" must be a number in [0, 1]"); return; }
    if (farj) target = farj->valuedouble;
    sm_decision_rule rule = SM_RULE_NEAREST;
    if (opt_rule(body, &rule, 0, r) < 0) return;
    if (!dry_run && !may_write) { srv_error(r, 403, "this API key may only read: storing a threshold needs a write key (or \"dry_run\": true)"); return; }
    float *q = malloc((size_t)n * (size_t)s->dim * sizeof(float));
    if (!q) { srv_error(r, 503, "out of memory"); return; }
    int i = 0;
    const cJSON *v;
    char what[64];
    cJSON_ArrayForEach(v, list) {
        snprintf(what, sizeof what, "%s[%d]", imgs ? "images" : "embeddings", i);
        const cJSON *lab = cJSON_GetArrayItem(labels, i);
        int bad = !cJSON_IsString(lab) ? (srv_error(r, 400, "labels[%d] must be a string", i), -1)
                  : imgs ? (!cJSON_IsString(v) ? (srv_error(r, 400, "%s must be a base64 string", what), -1)
                                               : embed_image(s, v->valuestring, what, q + (size_t)i * s->dim, r))
                         : parse_embedding(s, v, what, q + (size_t)i * s->dim, r);
        if (bad) { free(q); return; }
        i++;
    }
    writer_begin(s); /* no change can come between the distances and the stored threshold */
    int C = sm_gallery_num_classes(s->g);
    if ((int64_t)n * C > ((int64_t)1 << 26)) {
        pthread_mutex_unlock(&s->wmu);
        free(q);
        srv_error(r, 413, "%d queries x %d subjects: too many pairs in one request (at most 2^26)", n, C);
        return;
    }
    float *cd = malloc((size_t)n * (size_t)(C ? C : 1) * sizeof(float));
    float *pd = malloc((size_t)n * (size_t)(C ? C : 1) * sizeof(float));
    int8_t *gen = malloc((size_t)n * (size_t)(C ? C : 1));
    sm_status st = !cd || !pd || !gen ? SM_ERR_NOMEM : sm_gallery_size(s->g) == 0 ? SM_ERR_NOTFOUND
                                                     : sm_gallery_class_distances(s->g, q, n, s->dim, rule, cd);
    int64_t np = 0, genuine = 0;
    for (int j = 0; !st && j < n; j++) {
        int want = sm_gallery_find_class(s->g, cJSON_GetArrayItem(labels, j)->valuestring);
        for (int c = 0; c < C; c++) {
            if (isinf(cd[(size_t)j * C + c])) continue; /* removed or empty subject */
            pd[np] = cd[(size_t)j * C + c];
            gen[np] = (int8_t)(c == want);
            genuine += gen[np];
            np++;
        }
    }
    float thr = 0;
    double tar = 0, far = 0;
    char msg[300] = "";
    if (!st) st = sm_calibrate_threshold(pd, gen, np, f1 ? SM_CALIBRATE_F1 : SM_CALIBRATE_FAR, target, &thr, &tar, &far);
    if (st && st != SM_ERR_NOTFOUND) snprintf(msg, sizeof msg, "%s", sm_errmsg());
    if (!st && !dry_run) st = writer_end(s, sm_gallery_set_threshold(s->g, thr, rule), msg, sizeof msg);
    else pthread_mutex_unlock(&s->wmu);
    free(q); free(cd); free(pd); free(gen);
    if (st == SM_ERR_NOTFOUND) { srv_error(r, 409, "the gallery is empty: enrol subjects first"); return; }
    if (st) { lib_error(r, st, msg); return; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "threshold", thr);
    cJSON_AddStringToObject(j, "rule", rule_name(rule));
    cJSON_AddStringToObject(j, "mode", f1 ? "f1" : "far");
    if (!f1) cJSON_AddNumberToObject(j, "target_far", target);
    cJSON_AddNumberToObject(j, "tar", tar);
    cJSON_AddNumberToObject(j, "far", far);
    cJSON_AddNumberToObject(j, "genuine_pairs", (double)genuine);
    cJSON_AddNumberToObject(j, "impostor_pairs", (double)(np - genuine));
    cJSON_AddBoolToObject(j, "stored", !dry_run);
    json_response(r, 200, j);
}

/* ---- multipart forms ---------------------------------------------------------------------- */
int srv_form_add(srv_form *f, const char *name, const char *filename, const char *data, uint64_t off, size_t size) {
    if (off == 0 || f->n == 0) { /* a new part */
        if (f->n >= SRV_MAX_PARTS) { f->too_many = 1; return 0; }
        if (f->n == f->cap) {
            int cap = f->cap ? 2 * f->cap : 8;
            srv_part *p = realloc(f->parts, (size_t)cap * sizeof *p);
            if (!p) return -1;
            f->parts = p;
            f->cap = cap;
        }
        srv_part *p = &f->parts[f->n];
        memset(p, 0, sizeof *p);
        p->name = strdup(name ? name : "");
        p->filename = filename ? strdup(filename) : NULL;
        p->data = malloc(1);
        if (!p->name || (filename && !p->filename) || !p->data) { free(p->name); free(p->filename); free(p->data); return -1; }
        p->data[0] = 0;
        f->n++;
    }
    if (f->too_many || !size) return 0;
    srv_part *p = &f->parts[f->n - 1];
    char *d = realloc(p->data, p->len + size + 1);
    if (!d) return -1;
    memcpy(d + p->len, data, size);
    p->len += size;
    d[p->len] = 0;
    p->data = d;
    f->bytes += size;
    return 0;
}

void srv_form_free(srv_form *f) {
    for (int i = 0; i < f->n; i++) { free(f->parts[i].name); free(f->parts[i].filename); free(f->parts[i].data); }
    free(f->parts);
    memset(f, 0, sizeof *f);
}

/* A file part's bytes as the base64 string the JSON body would carry (NULL when out of
 * memory); an image larger than --max-image is refused here (413). */
static cJSON *b64_of(srv *s, const srv_part *p, srv_response *r) {
    if (p->len > s->max_image) {
        srv_error(r, 413, "file field '%.64s': the image is larger than %zu bytes (--max-image)", p->name, s->max_image);
        return NULL;
    }
    char *t = malloc(BASE64_ENCODE_RAW_LENGTH(p->len) + 1);
    if (!t) { srv_error(r, 503, "out of memory"); return NULL; }
    base64_encode_raw(t, p->len, (const uint8_t *)p->data);
    t[BASE64_ENCODE_RAW_LENGTH(p->len)] = 0;
    cJSON *j = cJSON_CreateString(t);
    free(t);
    if (!j) srv_error(r, 503, "out of memory");
    return j;
}

/* Append v to the array field key of o (created on first use). */
static int push(cJSON *o, const char *key, cJSON *v) {
    cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!a && !(a = cJSON_AddArrayToObject(o, key))) { cJSON_Delete(v); return -1; }
    return cJSON_AddItemToArray(a, v) ? 0 : -1;
}

/* The JSON body a multipart form stands for (docs/serve.md "Multipart uploads"), or NULL with r
 * filled.  File parts: "image" (enrolment and calibration: repeated, one item each; identify:
 * once), "images" (the same), "a" and "b" (verify).  Fields: "k", "threshold", "far" (numbers),
 * "f1", "dry_run" (true / false), "rule", "subject", "name" (strings), "source" / "sources"
 * and "label" / "labels" (repeated: one per image, in order), "embedding" / "embeddings" (JSON
 * text).  An enrolment without sources takes each file's name as its source. */
static cJSON *form_to_json(srv *s, int route, const srv_form *f, srv_response *r) {
    if (f->bad) { srv_error(r, 400, "the multipart/form-data body is malformed"); return NULL; }
    if (f->too_many) { srv_error(r, 413, "more than %d parts in the form", SRV_MAX_PARTS); return NULL; }
    int many = route == R_SUBJECT_ITEMS || route == R_CALIBRATE; /* "image" repeats */
    cJSON *o = cJSON_CreateObject();
    cJSON *fnames = cJSON_CreateArray(); /* the files' names, the default sources */
    int nfiles = 0, oom = !o || !fnames;
    for (int i = 0; !oom && i < f->n; i++) {
        const srv_part *p = &f->parts[i];
        const char *k = p->name;
        if (p->filename) { /* a file */
            cJSON *v = b64_of(s, p, r);
            if (!v) goto fail;
            if (!strcmp(k, "a") || !strcmp(k, "b")) {
                if (cJSON_GetObjectItemCaseSensitive(o, k)) { cJSON_Delete(v); srv_error(r, 400, "file field '%s' given twice", k); goto fail; }
                cJSON *q = cJSON_AddObjectToObject(o, k);
                if (!q || !cJSON_AddItemToObject(q, "image", v)) { cJSON_Delete(v); oom = 1; }
            } else if (!strcmp(k, "images") || (many && !strcmp(k, "image"))) {
                if (push(o, "images", v)) oom = 1;
                else if (!cJSON_AddItemToArray(fnames, cJSON_CreateString(p->filename))) oom = 1;
                nfiles++;
            } else if (!strcmp(k, "image")) {
                if (cJSON_GetObjectItemCaseSensitive(o, k)) { cJSON_Delete(v); srv_error(r, 400, "file field 'image' given twice"); goto fail; }
                if (!cJSON_AddItemToObject(o, "image", v)) { cJSON_Delete(v); oom = 1; }
            } else {
                cJSON_Delete(v);
                srv_error(r, 400, "unknown file field '%.64s' (image, images, a or b)", k);
                goto fail;
            }
            continue;
        }
        /* a field */
        int rep = !strcmp(k, "source") || !strcmp(k, "sources") || !strcmp(k, "label") || !strcmp(k, "labels");
        if (!rep && cJSON_GetObjectItemCaseSensitive(o, k)) { srv_error(r, 400, "form field '%.64s' given twice", k); goto fail; }
        if (!strcmp(k, "k") || !strcmp(k, "threshold") || !strcmp(k, "far")) {
            char *end;
            double x = strtod(p->data, &end);
            if (!p->len || *end || strlen(p->data) != p->len) { srv_error(r, 400, "form field '%s' must be a number, not '%.32s'", k, p->data); goto fail; }
            if (!cJSON_AddNumberToObject(o, k, x)) oom = 1;
        } else if (!strcmp(k, "f1") || !strcmp(k, "dry_run")) {
            if (strcmp(p->data, "true") && strcmp(p->data, "false")) { srv_error(r, 400, "form field '%s' must be true or false", k); goto fail; }
            if (!cJSON_AddBoolToObject(o, k, !strcmp(p->data, "true"))) oom = 1;
        } else if (!strcmp(k, "rule") || !strcmp(k, "subject") || !strcmp(k, "name")) {
            if (strlen(p->data) != p->len) { srv_error(r, 400, "form field '%s' holds a NUL byte", k); goto fail; }
            if (!cJSON_AddStringToObject(o, k, p->data)) oom = 1;
        } else if (rep) {
            if (strlen(p->data) != p->len) { srv_error(r, 400, "form field '%s' holds a NUL byte", k); goto fail; }
            if (push(o, k[0] == 's' ? "sources" : "labels", cJSON_CreateString(p->data))) oom = 1;
        } else if (!strcmp(k, "embedding") || !strcmp(k, "embeddings")) {
            cJSON *v = cJSON_ParseWithLength(p->data, p->len);
            if (!v) { srv_error(r, 400, "form field '%s' is not valid JSON", k); goto fail; }
            if (!cJSON_AddItemToObject(o, k, v)) { cJSON_Delete(v); oom = 1; }
        } else {
            srv_error(r, 400, "unknown form field '%.64s'", k);
            goto fail;
        }
    }
    if (!oom && route == R_SUBJECT_ITEMS && nfiles && !cJSON_GetObjectItemCaseSensitive(o, "sources")) {
        cJSON_AddItemToObject(o, "sources", fnames);
        fnames = NULL;
    }
    if (oom) { srv_error(r, 503, "out of memory"); goto fail; }
    cJSON_Delete(fnames);
    return o;
fail:
    cJSON_Delete(o);
    cJSON_Delete(fnames);
    return NULL;
}

/* ---- dispatch ----------------------------------------------------------------------------- */
static void handle(srv *s, const char *method, const char *path, const char *body, size_t len, const srv_form *form,
                   const char *api_key, srv_response *r) {
    memset(r, 0, sizeof *r);
    char buf[1024], *seg[MAX_SEGMENTS];
    int n = path && strlen(path) < sizeof buf ? split_path(path, buf, sizeof buf, seg) : -1;
    int route = n < 0 ? R_OTHER : srv_route_of(path);
    if (route == R_OTHER) { srv_error(r, 404, "no such route (see docs/serve.md: /api/v1/...)"); return; }
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST"), del = !strcmp(method, "DELETE"),
        patch = !strcmp(method, "PATCH");
    /* the method of each route, and the role it needs */
    int ok, write = 0;
    switch (route) {
    case R_HEALTH: case R_METRICS: case R_SUBJECTS: case R_ITEMS: ok = get; break;
    case R_SUBJECT: ok = get || del || patch; write = del || patch; break;
    case R_SUBJECT_ITEMS: ok = get || post; write = post; break;
    case R_ITEM: ok = del; write = 1; break;
    default: ok = post; break; /* identify, verify, calibrate (its role is checked there) */
    }
    if (!ok) { srv_error(r, 405, "method %.16s is not allowed on this route", method); return; }
    if (s->keys.n && route != R_HEALTH) {
        int role = srv_keys_role(&s->keys, api_key);
        if (role == SRV_ROLE_NONE) {
            srv_error(r, 401, api_key ? "the API key is not valid" : "an API key is required (Authorization: Bearer KEY)");
            return;
        }
        if (write && role != SRV_ROLE_WRITE) { srv_error(r, 403, "this API key may only read"); return; }
    }
    int may_write = !s->keys.n || srv_keys_role(&s->keys, api_key) == SRV_ROLE_WRITE;
    cJSON *json = NULL;
    if ((post || patch) && form) {
        if (form->bytes > s->max_body) { srv_error(r, 413, "the request body is larger than %zu bytes (--max-body)", s->max_body); return; }
        if (!(json = form_to_json(s, route, form, r))) return;
    } else if (post || patch) {
        if (len > s->max_body) { srv_error(r, 413, "the request body is larger than %zu bytes (--max-body)", s->max_body); return; }
        if (!body || !len) { srv_error(r, 400, "the request needs a JSON body"); return; }
        json = cJSON_ParseWithLength(body, len);
        if (!json) { srv_error(r, 400, "the body is not valid JSON"); return; }
        if (!cJSON_IsObject(json)) { cJSON_Delete(json); srv_error(r, 400, "the body must be a JSON object"); return; }
    }
    switch (route) {
    case R_HEALTH: health(s, r); break;
    case R_METRICS: metrics_response(s, r); break;
    case R_SUBJECTS: list_subjects(s, r); break;
    case R_ITEMS: list_items(s, NULL, r); break;
    case R_SUBJECT:
        if (get) get_subject(s, seg[3], r);
        else if (del) delete_subject(s, seg[3], r);
        else rename_subject(s, seg[3], json, r);
        break;
    case R_SUBJECT_ITEMS:
        if (get) list_items(s, seg[3], r); else enrol(s, seg[3], json, r);
        break;
    case R_ITEM: delete_item(s, seg[3], r); break;
    case R_IDENTIFY: identify(s, json, r); break;
    case R_VERIFY: verify(s, json, r); break;
    case R_CALIBRATE: calibrate(s, json, r, may_write); break;
    default: srv_error(r, 404, "no such route"); break;
    }
    cJSON_Delete(json);
}

void srv_handle(srv *s, const char *method, const char *path, const char *body, size_t len, const char *api_key,
                srv_response *r) {
    handle(s, method, path, body, len, NULL, api_key, r);
}

void srv_handle_form(srv *s, const char *method, const char *path, const srv_form *form, const char *api_key,
                     srv_response *r) {
    handle(s, method, path, NULL, 0, form, api_key, r);
}
