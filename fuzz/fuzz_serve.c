/* fuzz_serve.c - libFuzzer target for simile serve's request handling (srv_handle: routing,
 * percent-decoding, API-key roles, JSON bodies, base64 images, the gallery operations; and
 * srv_handle_form: multipart forms as libmicrohttpd's post processor hands them over, mapped
 * to the same requests).
 * Input: byte 0 picks the method (low 3 bits: GET POST PATCH DELETE PUT), the API key (next
 * 2 bits: none, the write key, a read key, a wrong key) and the body kind (bit 5: a form);
 * then the path up to '\n'; the rest is the body.  A form body is parts separated by
 * "\n--\n", each "NAME\nDATA" (a field) or "NAME:FILENAME\nDATA" (a file); the post
 * processor's chunking is imitated by adding each part's data in two pieces.
 * Bit 6 of byte 0 instead sends the rest of the input, as raw HTTP bytes, through a
 * libmicrohttpd daemon running the server's own handler (http.c: header and body handling,
 * multipart/form-data through MHD_create_post_processor): one end of a socket pair is handed
 * to the daemon, the input written to the other end, which is then shut for writing and read
 * to the end; an answer must start with "HTTP/1.".  Each input runs on a fresh in-memory gallery (dimension 8, two subjects) with a
 * small 8x8 model, so that image requests are embedded.  Every response must have a status in
 * 200..599 and a body; JSON bodies must parse, and errors must be {"error": {"status",
 * "message"}} with the same status. */
#include "fuzz_common.h"
#include "serve.h"

#include <cjson/cJSON.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static srv S;
static sm_model *model;
static void *daemon_; /* the libmicrohttpd daemon of the raw HTTP mode */

/* Send raw bytes through the daemon; returns the number of answer bytes (head checked). */
static size_t raw_http(const uint8_t *data, size_t size) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
    if (srv_http_add(daemon_, sv[1]) != 0) { close(sv[0]); return 0; } /* the daemon closes sv[1] */
    size_t off = 0, got = 0;
    char head[8], buf[4096];
    while (off < size) {
        ssize_t w = write(sv[0], data + off, size - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    shutdown(sv[0], SHUT_WR);
    for (;;) {
        struct pollfd pf = {sv[0], POLLIN, 0};
        if (poll(&pf, 1, 10000) <= 0) break;
        ssize_t n = read(sv[0], buf, sizeof buf);
        if (n <= 0) break;
        if (got < sizeof head) memcpy(head + got, buf, (size_t)n < sizeof head - got ? (size_t)n : sizeof head - got);
        got += (size_t)n;
    }
    close(sv[0]);
    FZ_ASSERT(got == 0 || (got >= 7 && !memcmp(head, "HTTP/1.", 7)));
    return got;
}

static void setup(void) {
    fz_scratch();
    if (sm_model_create(&model, "fc 16 ; relu ; fc 8 ; l2norm", 8, 8, 1, 7)) abort();
    S.models = &model;
    S.nmodels = 1;
    S.model_busy = calloc(1, 1);
    pthread_mutex_init(&S.model_mu, NULL);
    pthread_cond_init(&S.model_cv, NULL);
    pthread_rwlock_init(&S.lock, NULL);
    pthread_mutex_init(&S.wmu, NULL);
    S.h = 8; S.w = 8; S.c = 1; S.dim = 8;
    S.normalize = 1; S.mean = 0.5f; S.std = 0.25f;
    S.max_body = 1 << 16;
    S.max_image = 1 << 12;
    S.max_batch = 16;
    /* keys: "w" may write, "r" may read */
    S.keys.n = 2;
    S.keys.hash = calloc(2, 32);
    S.keys.role = calloc(2, sizeof(int));
    srv_sha256("w", 1, S.keys.hash[0]);
    srv_sha256("r", 1, S.keys.hash[1]);
    S.keys.role[0] = SRV_ROLE_WRITE;
    S.keys.role[1] = SRV_ROLE_READ;
    if (!(daemon_ = srv_http_start_unlistened(&S))) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) setup();
    if (size < 1) return 0;
    static const char *const methods[8] = {"GET", "POST", "PATCH", "DELETE", "PUT", "GET", "POST", "DELETE"};
    static const char *const keys[4] = {NULL, "w", "r", "nope"};
    const char *method = methods[data[0] & 7], *key = keys[(data[0] >> 3) & 3];
    const uint8_t *nl = memchr(data + 1, '\n', size - 1);
    size_t plen = nl ? (size_t)(nl - data - 1) : size - 1;
    char *path = malloc(plen + 1);
    memcpy(path, data + 1, plen);
    path[plen] = 0;
    const char *body = nl ? (const char *)nl + 1 : NULL;
    size_t blen = nl ? size - (size_t)(nl + 1 - data) : 0;
    /* a fresh gallery: subjects "a" (2 items) and "b c" (1 item) */
    if (sm_gallery_create(&S.g, 8, SM_METRIC_L2, 0)) abort();
    float e[24] = {1, 0, 0, 0, 0, 0, 0, 0, 0.9f, 0.1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (sm_gallery_add(S.g, e, 2, 8, "a", NULL, NULL) || sm_gallery_add(S.g, e + 16, 1, 8, "b c", NULL, NULL)) abort();
    srv_attach(&S, S.g);
    if (data[0] & 0x40) {
        raw_http(data + 1, size - 1);
        free(path);
        sm_gallery_free(S.g);
        S.g = NULL;
        return 0;
    }
    srv_response r;
    if (data[0] & 0x20) {
        srv_form f = {0};
        const char *p = body ? body : "", *end = p + blen;
        while (body && p <= end) {
            const char *sep = memmem(p, (size_t)(end - p), "\n--\n", 4), *pe = sep ? sep : end;
            const char *hl = memchr(p, '\n', (size_t)(pe - p)), *de = pe;
            const char *hd = hl ? hl : pe, *colon = memchr(p, ':', (size_t)(hd - p));
            char name[64] = "", fname[64] = "";
            size_t nl = (size_t)((colon ? colon : hd) - p);
            memcpy(name, p, nl < 63 ? nl : 63);
            if (colon) { size_t fl = (size_t)(hd - colon - 1); memcpy(fname, colon + 1, fl < 63 ? fl : 63); }
            const char *d = hl ? hl + 1 : pe;
            size_t dn = (size_t)(de - d), half = dn / 2;
            if (srv_form_add(&f, name, colon ? fname : NULL, d, 0, half) ||
                (dn > half && srv_form_add(&f, name, colon ? fname : NULL, d + half, half, dn - half)))
                f.bad = 1;
            if (!sep) break;
            p = sep + 4;
        }
        srv_handle_form(&S, method, path, &f, key, &r);
        srv_form_free(&f);
    } else {
        srv_handle(&S, method, path, body, blen, key, &r);
    }
    FZ_ASSERT(r.status >= 200 && r.status <= 599 && r.body);
    if (r.content_type && !strcmp(r.content_type, "application/json")) {
        cJSON *j = cJSON_Parse(r.body);
        FZ_ASSERT(j != NULL);
        if (r.status >= 400) {
            cJSON *er = cJSON_GetObjectItemCaseSensitive(j, "error");
            cJSON *st = cJSON_GetObjectItemCaseSensitive(er, "status"), *msg = cJSON_GetObjectItemCaseSensitive(er, "message");
            FZ_ASSERT(cJSON_IsNumber(st) && (int)st->valuedouble == r.status && cJSON_IsString(msg));
        }
        cJSON_Delete(j);
    }
    free(r.body);
    free(path);
    sm_gallery_free(S.g);
    S.g = NULL;
    return 0;
}
