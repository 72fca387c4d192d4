/* http.c - `simile serve`: options, the gallery (opened journaled under a non-blocking writer
 * lock, so a second server or CLI writer is refused), a model per worker thread, and the
 * HTTP/1.1 server (libmicrohttpd, a pool of --threads threads) that hands each complete request
 * to srv_handle, or, for a multipart/form-data body, parses it with libmicrohttpd's post
 * processor (MHD_create_post_processor) and hands the parts to srv_handle_form.  SIGTERM /
 * SIGINT: stop accepting, let in-flight requests finish, checkpoint the journal into the
 * gallery file, exit 0. */
#define _POSIX_C_SOURCE 200809L
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *help =
    "usage: simile serve --gallery FILE [--model FILE] [--listen 127.0.0.1:8080] [--threads N]\n"
    "                    [--keys FILE] [--max-body BYTES] [--max-image BYTES] [--max-batch N]\n"
    "                    [--timeout S] [--checkpoint-every N] [--mean X --std Y | --no-normalize] [--raw]\n"
    "                    [--tls-cert FILE --tls-key FILE]\n"
    "An HTTP/1.1 JSON API over one gallery (docs/serve.md): subjects and items (list, rename,\n"
    "delete), enrolment of images (base64) or embeddings, identification (top-k and the open-set\n"
    "decision), verification, calibration, health and Prometheus metrics, under /api/v1.\n"
    "  --gallery FILE      the gallery (simile gallery create); opened for writing: changes go to\n"
    "                      FILE.journal, fsynced before the response; another writer is refused\n"
    "  --model FILE        the model that built the gallery (needed for images)\n"
    "  --listen HOST:PORT  IPv4 address and port (default 127.0.0.1:8080; port 0: any free port,\n"
    "                      printed on stdout)\n"
    "  --threads N         worker threads (default 2)\n"
    "  --keys FILE         require API keys: lines 'read SHA256HEX' or 'write SHA256HEX'\n"
    "  --max-body BYTES    largest request body (default 16777216)\n"
    "  --max-image BYTES   largest image file in a request (default 4194304)\n"
    "  --max-batch N       most items in one enrolment (default 10000)\n"
    "  --timeout S         idle connection timeout in seconds (default 30)\n"
    "  --checkpoint-every N  fold the journal into the gallery every N changes (default 1000;\n"
    "                      0: only at shutdown)\n"
    "  --mean X --std Y, --no-normalize   image normalisation as for training (default: what the\n"
    "                    model stores, else 0.2860 / 0.3530)\n"
    "  --raw               do not L2-normalise embeddings\n"
    "  --tls-cert FILE --tls-key FILE   serve HTTPS (PEM certificate and private key)\n"
    "SIGTERM or SIGINT: finish the requests in flight, checkpoint, exit.\n";

typedef struct conn {
    char *body;
    size_t len, cap;
    size_t seen;                  /* body bytes received (JSON or form) */
    int too_big;
    struct MHD_PostProcessor *pp; /* multipart/form-data: the parser; NULL otherwise */
    int multipart;
    srv_form form;
    struct timespec t0;
} conn;

/* The post processor's callback: each chunk of a part's data in order (off: its offset). */
static enum MHD_Result form_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                 const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size) {
    conn *k = cls;
    (void)kind; (void)content_type; (void)transfer_encoding;
    if (srv_form_add(&k->form, key, filename, data, off, size)) { k->form.bad = 1; return MHD_NO; }
    return k->form.too_many ? MHD_NO : MHD_YES;
}

static double since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* keep the path as sent: srv_handle percent-decodes each segment itself */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s) { return strlen(s); }

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    conn *k = *con_cls;
    if (k) {
        if (k->pp) MHD_destroy_post_processor(k->pp);
        srv_form_free(&k->form);
        free(k->body);
        free(k);
    }
    *con_cls = NULL;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv *s = cls;
    conn *k = *con_cls;
    if (!k) {
        if (!(k = calloc(1, sizeof *k))) return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &k->t0);
        *con_cls = k;
        const char *ct = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
            k->multipart = 1;
            /* NULL for a multipart type without a boundary: answered 400 at the end */
            if (!(k->pp = MHD_create_post_processor(connection, 64 * 1024, form_part, k))) k->form.bad = 1;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (k->too_big || k->seen + n > s->max_body) { k->too_big = 1; return MHD_YES; }
        k->seen += n;
        if (k->multipart) {
            if (k->pp && !k->form.bad && !k->form.too_many && MHD_post_process(k->pp, upload, n) != MHD_YES && !k->form.too_many)
                k->form.bad = 1;
            return MHD_YES;
        }
        if (k->len + n + 1 > k->cap) {
            size_t cap = k->cap ? k->cap : 4096;
            while (cap < k->len + n + 1) cap *= 2;
            char *p = realloc(k->body, cap);
            if (!p) { k->too_big = 1; return MHD_YES; }
            k->body = p;
            k->cap = cap;
        }
        memcpy(k->body + k->len, upload, n);
        k->len += n;
        return MHD_YES;
    }
    const char *key = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-API-Key");
    const char *auth = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!key && auth && !strncmp(auth, "Bearer ", 7)) key = auth + 7;
    srv_response r;
    if (k->too_big) {
        memset(&r, 0, sizeof r);
        srv_error(&r, 413, "the request body is larger than %zu bytes (--max-body)", s->max_body);
    } else if (k->multipart) {
        /* the end of the body: the last part is complete once the processor is destroyed */
        if (k->pp && MHD_destroy_post_processor(k->pp) != MHD_YES) k->form.bad = 1;
        k->pp = NULL;
        srv_handle_form(s, method, url, &k->form, key, &r);
    } else srv_handle(s, method, url, k->body, k->len, key, &r);
    size_t blen = r.body ? strlen(r.body) : 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(blen, r.body ? r.body : (void *)"", r.body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) { free(r.body); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type ? r.content_type : "application/json");
    if (r.status == 405) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, POST, PATCH, DELETE");
    enum MHD_Result ret = MHD_queue_response(connection, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    srv_observe(s, srv_route_of(url), r.status, since(&k->t0));
    return ret;
}

/* ---- for the fuzz target: the same handler on a daemon with no listening socket ------------ */
void *srv_http_start_unlistened(srv *s) {
    return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC, 0, NULL, NULL,
                            handler, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)5,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                            MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
                            MHD_OPTION_END);
}

int srv_http_add(void *daemon, int fd) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return MHD_add_connection(daemon, fd, (struct sockaddr *)&sa, sizeof sa) == MHD_YES ? 0 : -1;
}

/* A whole text file, NUL-terminated (malloc'ed), or NULL. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *p = cap <= (1u << 20) ? realloc(b, cap) : NULL; /* PEM files are small */
            if (!p) { free(b); fclose(f); return NULL; }
            b = p;
        }
        size_t k = fread(b + n, 1, 4096, f);
        n += k;
        if (k < 4096) break;
    }
    fclose(f);
    b[n] = 0;
    return b;
}

static int parse_listen(const char *a, struct sockaddr_in *sa) {
    char host[64];
    const char *colon = strrchr(a, ':');
    if (!colon || (size_t)(colon - a) >= sizeof host) return -1;
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535) return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int num_opt(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "simile serve: %s must be an integer from %lld to %lld, not '%s'\n", opt, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    static const struct option opts[] = {
        {"gallery", 1, 0, 'g'}, {"model", 1, 0, 'm'}, {"listen", 1, 0, 'l'}, {"threads", 1, 0, 't'},
        {"keys", 1, 0, 'K'}, {"max-body", 1, 0, 'B'}, {"max-image", 1, 0, 'I'}, {"max-batch", 1, 0, 'N'},
        {"timeout", 1, 0, 'T'}, {"checkpoint-every", 1, 0, 'C'}, {"mean", 1, 0, 'a'}, {"std", 1, 0, 'b'},
        {"no-normalize", 0, 0, 'n'}, {"raw", 0, 0, 'r'}, {"tls-cert", 1, 0, 'c'}, {"tls-key", 1, 0, 'k'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *gpath = NULL, *mpath = NULL, *listen = "127.0.0.1:8080", *keys = NULL, *cert = NULL, *tkey = NULL;
    long long threads = 2, max_body = 16 << 20, max_image = 4 << 20, max_batch = 10000, timeout = 30, ckpt = 1000;
    double mean = 0.2860, stdv = 0.3530;
    int normalize = 1, raw = 0, c, norm_given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        char *end;
        switch (c) {
        case 'g': gpath = optarg; break;
        case 'm': mpath = optarg; break;
        case 'l': listen = optarg; break;
        case 'K': keys = optarg; break;
        case 't': bad = num_opt("--threads", optarg, 1, 256, &threads); break;
        case 'B': bad = num_opt("--max-body", optarg, 1024, (long long)1 << 32, &max_body); break;
        case 'I': bad = num_opt("--max-image", optarg, 64, (long long)1 << 30, &max_image); break;
        case 'N': bad = num_opt("--max-batch", optarg, 1, 1000000, &max_batch); break;
        case 'T': bad = num_opt("--timeout", optarg, 1, 3600, &timeout); break;
        case 'C': bad = num_opt("--checkpoint-every", optarg, 0, (long long)1 << 40, &ckpt); break;
        case 'a': mean = strtod(optarg, &end); bad = *end != 0 || !*optarg; norm_given = 1; break;
        case 'b': stdv = strtod(optarg, &end); bad = *end != 0 || !*optarg || !(stdv > 0); norm_given = 1; break;
        case 'n': normalize = 0; norm_given = 1; break;
        case 'r': raw = 1; break;
        case 'c': cert = optarg; break;
        case 'k': tkey = optarg; break;
        case 'h': printf("%s", help); return 0;
        default: fprintf(stderr, "simile serve: unknown option (simile serve --help)\n"); return 2;
        }
        if (bad) {
            if (c == 'a' || c == 'b') fprintf(stderr, "simile serve: --%s needs a number%s\n", c == 'a' ? "mean" : "std", c == 'b' ? " > 0" : "");
            return 2;
        }
    }
    if (optind < argc) { fprintf(stderr, "simile serve: unexpected argument '%s'\n", argv[optind]); return 2; }
    if (!gpath) { fprintf(stderr, "simile serve: --gallery FILE is required\n"); return 2; }
    if (!cert != !tkey) { fprintf(stderr, "simile serve: give --tls-cert and --tls-key together\n"); return 2; }
    struct sockaddr_in sa;
    if (parse_listen(listen, &sa)) { fprintf(stderr, "simile serve: --listen must be IPV4:PORT, e.g. 127.0.0.1:8080\n"); return 2; }

    srv *s = calloc(1, sizeof *s);
    if (!s) { fprintf(stderr, "simile serve: out of memory\n"); return 1; }
    s->gpath = gpath;
    s->max_body = (size_t)max_body;
    s->max_image = (size_t)max_image;
    s->max_batch = (int)max_batch;
    s->checkpoint_every = ckpt;
    s->normalize = normalize;
    s->mean = (float)mean;
    s->std = (float)stdv;
    s->raw = raw;
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->model_mu, NULL);
    pthread_cond_init(&s->model_cv, NULL);
    int rc = 1;
    sm_lock *lock = NULL;
    char *cert_pem = NULL, *key_pem = NULL; /* NUL-terminated PEM files for --tls-* */
    char err[512];
    struct MHD_Daemon *d = NULL;
    sm_set_num_threads(1); /* parallelism comes from the worker threads */
    if (keys && srv_keys_load(&s->keys, keys, err, sizeof err)) { fprintf(stderr, "simile serve: %s\n", err); rc = 3; goto done; }
    if (cert && (!(cert_pem = read_text(cert)) || !(key_pem = read_text(tkey)))) {
        fprintf(stderr, "simile serve: cannot read %s\n", cert_pem ? tkey : cert);
        rc = 3;
        goto done;
    }
    if (cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        fprintf(stderr, "simile serve: this libmicrohttpd has no TLS support\n");
        goto done;
    }
    if (sm_gallery_trylock(&lock, gpath)) { fprintf(stderr, "simile serve: %s\n", sm_errmsg()); goto done; }
    sm_gallery *g = NULL;
    if (sm_gallery_open_journaled(&g, gpath)) { fprintf(stderr, "simile serve: %s\n", sm_errmsg()); rc = 3; goto done; }
    srv_attach(s, g);
    s->dim = sm_gallery_dim(s->g);
    if (mpath) {
        s->models = calloc((size_t)threads, sizeof(sm_model *));
        s->model_busy = calloc((size_t)threads, 1);
        if (!s->models || !s->model_busy) { fprintf(stderr, "simile serve: out of memory\n"); goto done; }
        for (int i = 0; i < threads; i++) {
            if (sm_model_load(&s->models[i], mpath)) { fprintf(stderr, "simile serve: %s\n", sm_errmsg()); rc = 3; goto done; }
            s->nmodels++;
        }
        if (sm_gallery_check_model(s->g, sm_model_fingerprint(s->models[0]))) {
            fprintf(stderr, "simile serve: %s: %s\n", gpath, sm_gallery_errmsg(s->g));
            rc = 3;
            goto done;
        }
        sm_model_input_shape(s->models[0], &s->h, &s->w, &s->c);
        sm_normalization nz; /* the model's stored normalisation, unless one was given */
        sm_model_normalization(s->models[0], &nz);
        if (!norm_given && nz.kind == SM_NORM_NONE) s->normalize = 0;
        if (!norm_given && nz.kind == SM_NORM_MEAN_STD) {
            s->per_channel = 1;
            memcpy(s->means, nz.mean, sizeof s->means);
            memcpy(s->stds, nz.std, sizeof s->stds);
        }
    }
    /* the signals are taken by sigwait below, in this thread only */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | (cert ? MHD_USE_TLS : 0), 0, NULL, NULL,
                         handler, s,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)timeout,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256,
                         MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                         MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
                         /* without TLS these two are ignored by the terminator below */
                         cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert_pem,
                         MHD_OPTION_HTTPS_MEM_KEY, key_pem,
                         MHD_OPTION_END);
    if (!d) { fprintf(stderr, "simile serve: cannot listen on %s: %s\n", listen, strerror(errno)); goto done; }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
    printf("simile serve: listening on %s://%s:%u (gallery %s: %lld items, %d threads)\n", cert ? "https" : "http", host,
           info ? (unsigned)info->port : (unsigned)ntohs(sa.sin_port), gpath, (long long)sm_gallery_size(s->g), (int)threads);
    fflush(stdout);
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {}
    fprintf(stderr, "simile serve: signal %d: finishing the requests in flight\n", sig);
    MHD_stop_daemon(d); /* joins the workers: every request in flight has had its response */
    d = NULL;
    rc = 0;
    if (sm_gallery_journal_records(s->g) > 0) {
        if (sm_gallery_checkpoint(s->g)) {
            fprintf(stderr, "simile serve: checkpoint failed (the journal keeps every change): %s\n", sm_gallery_errmsg(s->g));
            rc = 1;
        }
    }
    fprintf(stderr, "simile serve: stopped (%lld items in %s)\n", (long long)sm_gallery_size(s->g), gpath);
done:
    if (d) MHD_stop_daemon(d);
    for (int i = 0; i < s->nmodels; i++) sm_model_free(s->models[i]);
    free(s->models);
    free(s->model_busy);
    sm_gallery_free(s->g);
    sm_lock_release(lock);
    srv_keys_free(&s->keys);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->model_mu);
    pthread_cond_destroy(&s->model_cv);
    free(s);
    free(cert_pem);
    free(key_pem);
    return rc;
}
