/* serve.h - `simile serve`: the HTTP/JSON service over one gallery (docs/serve.md).  The
 * request handling (routing, JSON or multipart bodies, the gallery operations) is srv_handle /
 * srv_handle_form in api.c,
 * independent of the HTTP library so the fuzz target can drive it; http.c puts it behind
 * libmicrohttpd; keys.c holds the API keys (SHA-256 hashes, nettle).  Uses only the public
 * API of include/simile.h. */
#ifndef SIMILE_SERVE_H
#define SIMILE_SERVE_H
#include "simile.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum { SRV_ROLE_NONE = 0, SRV_ROLE_READ = 1, SRV_ROLE_WRITE = 2 };

typedef struct srv_keys {
    int n;
    unsigned char (*hash)[32]; /* (n) SHA-256 of each key */
    int *role;                 /* (n) SRV_ROLE_READ or SRV_ROLE_WRITE */
} srv_keys;

/* Routes, for the metrics (label "route"). */
enum { R_HEALTH, R_METRICS, R_SUBJECTS, R_SUBJECT, R_SUBJECT_ITEMS, R_ITEMS, R_ITEM, R_IDENTIFY, R_VERIFY, R_CALIBRATE, R_OTHER,
       R_COUNT };
#define SRV_NCODES 14
#define SRV_NBUCKETS 12

typedef struct srv_metrics {
    atomic_uint_fast64_t requests[R_COUNT][SRV_NCODES];
    atomic_uint_fast64_t buckets[SRV_NBUCKETS]; /* latency histogram (cumulative at export) */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
} srv_metrics;

typedef struct srv {
    sm_gallery *g;
    const char *gpath;            /* NULL: in memory (fuzz target) */
    pthread_rwlock_t lock;        /* readers share it; a change takes it alone only to publish
                                     (sm_gallery_set_publish: row copies, pointer swaps) */
    pthread_mutex_t wmu;          /* serialises the changes: checks, journal append + fsync,
                                     checkpoints run under it, outside `lock` */
    atomic_int_fast64_t journal_records; /* after the last change (for the metrics) */
    /* models: one per worker (sm_model_embed is not reentrant on one model) */
    sm_model **models;
    int nmodels;
    unsigned char *model_busy;
    pthread_mutex_t model_mu;
    pthread_cond_t model_cv;
    int h, w, c, dim;             /* model input shape and embedding size (0: no model) */
    int normalize;                /* (x - mean) / std on images */
    float mean, std;
    int per_channel;              /* 1: means, stds (c) instead (the model's stored normalisation) */
    float means[3], stds[3];
    int raw;                      /* 1: no L2 normalisation of embeddings */
    srv_keys keys;                /* n == 0: no API keys required */
    size_t max_body;              /* bytes of a request body */
    size_t max_image;             /* bytes of one decoded image file */
    int max_batch;                /* images or embeddings in one enrolment */
    int64_t checkpoint_every;     /* journal records between checkpoints (0: only at shutdown) */
    srv_metrics metrics;
} srv;

/* A multipart/form-data body as libmicrohttpd's post processor delivered it (http.c): parts
 * in order; filename NULL for a plain field. */
typedef struct srv_part {
    char *name, *filename;        /* malloc'ed */
    char *data;                   /* (len + 1) malloc'ed, NUL-terminated */
    size_t len;
} srv_part;
typedef struct srv_form {
    srv_part *parts;              /* (n) */
    int n, cap;
    size_t bytes;                 /* data bytes in all parts */
    int bad;                      /* 1: the body could not be parsed (400) */
    int too_many;                 /* 1: more parts than SRV_MAX_PARTS (413) */
} srv_form;
#define SRV_MAX_PARTS 20000
/* Append data to the form: a new part when off == 0.  0, or -1 when out of memory. */
int srv_form_add(srv_form *f, const char *name, const char *filename, const char *data, uint64_t off, size_t size);
void srv_form_free(srv_form *f);

typedef struct srv_response {
    int status;
    char *body;                   /* malloc'ed */
    const char *content_type;
} srv_response;

/* Route of a request path (for the metrics). */
int srv_route_of(const char *path);
/* Handle one request: method, path (not percent-decoded; no query string), body (len bytes),
 * the API key given (NULL if none).  Always fills r (JSON, or Prometheus text for metrics). */
void srv_handle(srv *s, const char *method, const char *path, const char *body, size_t len, const char *api_key,
                srv_response *r);
/* The same for a multipart/form-data body: image file parts and fields (docs/serve.md
 * "Multipart uploads") become the request's JSON fields. */
void srv_handle_form(srv *s, const char *method, const char *path, const srv_form *form, const char *api_key,
                     srv_response *r);
/* Serve gallery g (open; s->lock and s->wmu initialised): s->g, the publish hook that takes
 * s->lock around each change, the journal count. */
void srv_attach(srv *s, sm_gallery *g);
/* A JSON error response {"error": {"status": N, "message": "..."}}. */
void srv_error(srv_response *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Count a finished request in the metrics. */
void srv_observe(srv *s, int route, int status, double seconds);

/* keys.c: read a keys file (lines "read|write <64 hex digits: SHA-256 of the key>", '#'
 * comments); the role of key (SRV_ROLE_NONE if unknown), compared in constant time. */
int srv_keys_load(srv_keys *k, const char *path, char *err, size_t errlen);
int srv_keys_role(const srv_keys *k, const char *key);
void srv_keys_free(srv_keys *k);
void srv_sha256(const void *data, size_t n, unsigned char out[32]);

/* http.c: `simile serve` */
int cmd_serve(int argc, char **argv);
/* http.c, for the fuzz target: a libmicrohttpd daemon with the server's request handler and
 * no listening socket (NULL on failure), and srv_http_add to hand it one end of a connected
 * socket pair (0, or -1). */
void *srv_http_start_unlistened(srv *s);
int srv_http_add(void *daemon, int fd);

#endif
