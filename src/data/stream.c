/* stream.c - datasets decoded from image files when training needs them, and the prefetcher
 * that decodes the next batches on a worker thread while the network computes.  A batch's
 * images are fixed by the trainer's plan (the seed and the batch index); the worker only
 * decodes them (no randomness), so what a batch holds never depends on thread timing.  With
 * the cache on, each image decoded once is kept for the next epochs (n * h * w * c floats at
 * most, allocated when the dataset is made); only the worker writes it while training runs. */
#include "data/data.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

sm_status sm_dataset_from_files(sm_dataset **out, const char *const *paths, const int32_t *labels, int64_t n, int h, int w,
                                int c, const float *mean, const float *std, int cache) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_dataset_from_files: out is NULL");
    *out = NULL;
    if (n < 1 || !paths || !labels) return sm_fail(SM_ERR_INVALID, "sm_dataset_from_files: no files (n = %lld)", (long long)n);
    if (h < 1 || w < 1 || h > 65536 || w > 65536 || (c != 1 && c != 3))
        return sm_fail(SM_ERR_INVALID, "sm_dataset_from_files: shape %dx%dx%d (need 1 or 3 channels)", h, w, c);
    for (int64_t i = 0; i < n; i++)
        if (!paths[i] || labels[i] < 0)
            return sm_fail(SM_ERR_INVALID, "sm_dataset_from_files: file %lld: NULL path or negative label", (long long)i);
    for (int k = 0; mean && std && k < c; k++)
        if (!sm_isfinite_f(mean[k]) || !sm_isfinite_f(std[k]) || !(std[k] > 0))
            return sm_fail(SM_ERR_INVALID, "sm_dataset_from_files: mean %g / std %g of channel %d", (double)mean[k], (double)std[k], k);
    const int64_t per = (int64_t)h * w * c;
    if (cache && (uint64_t)n * (uint64_t)per > ((uint64_t)1 << 32))
        return sm_fail(SM_ERR_RANGE, "sm_dataset_from_files: a cache of %lld images of %dx%dx%d is more than 16 GiB", (long long)n, h, w, c);
    sm_dataset *ds = sm_calloc(1, sizeof *ds);
    if (!ds) return SM_ERR_NOMEM;
    ds->n = n; ds->h = h; ds->w = w; ds->c = c;
    size_t bytes = (size_t)n * sizeof(char *);
    for (int64_t i = 0; i < n; i++) bytes += strlen(paths[i]) + 1;
    ds->paths = sm_alloc(bytes, 1);
    ds->y = sm_alloc((size_t)n, sizeof(int32_t));
    if (cache) {
        ds->cache_x = sm_alloc((size_t)(n * per), sizeof(float)); /* (n, h, w, c) */
        ds->cached = sm_calloc((size_t)n, 1);
    }
    if (!ds->paths || !ds->y || (cache && (!ds->cache_x || !ds->cached))) { sm_dataset_free(ds); return SM_ERR_NOMEM; }
    char *s = (char *)(ds->paths + n);
    for (int64_t i = 0; i < n; i++) {
        size_t l = strlen(paths[i]) + 1;
        memcpy(s, paths[i], l);
        ds->paths[i] = s;
        s += l;
    }
    memcpy(ds->y, labels, (size_t)n * sizeof(int32_t));
    ds->norm = mean && std;
    for (int k = 0; k < 3; k++) {
        ds->mean[k] = ds->norm && k < c ? mean[k] : 0;
        ds->std[k] = ds->norm && k < c ? std[k] : 1;
    }
    *out = ds;
    return SM_OK;
}

int sm_dataset_is_streamed(const sm_dataset *ds) { return ds && ds->paths; }

sm_status sm_dataset_decode(sm_dataset *ds, int64_t i, float *dst) {
    const int64_t per = (int64_t)ds->h * ds->w * ds->c;
    if (ds->x) { memcpy(dst, ds->x + i * per, (size_t)per * sizeof(float)); return SM_OK; }
    if (ds->cached && ds->cached[i]) { memcpy(dst, ds->cache_x + i * per, (size_t)per * sizeof(float)); return SM_OK; }
    sm_status st = sm_image_load(ds->paths[i], ds->h, ds->w, ds->c, dst);
    if (st) return st;
    if (ds->norm) /* as sm_dataset_normalize_channels: the same bits as a folder loaded whole */
        for (int64_t k = 0; k < per; k++) dst[k] = (dst[k] - ds->mean[k % ds->c]) / ds->std[k % ds->c];
    if (ds->cached) {
        memcpy(ds->cache_x + i * per, dst, (size_t)per * sizeof(float));
        ds->cached[i] = 1;
    }
    return SM_OK;
}

/* ---- the prefetcher ------------------------------------------------------------------------ */
enum { SLOT_FREE, SLOT_QUEUED, SLOT_WORKING, SLOT_DONE };
typedef struct slot {
    int state;
    uint64_t key;          /* which batch (the trainer's pass and batch number) */
    int n;
    int64_t *idx;          /* (batch) the samples */
    float *x;              /* (batch, h, w, c) decoded */
    sm_status st;
    char err[SM_ERRMSG_MAX];
} slot;

struct sm_prefetch {
    sm_dataset *ds;
    int batch, depth;
    slot *slots;           /* (depth) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, started;
};

static void *worker(void *arg) {
    sm_prefetch *p = arg;
    const int64_t per = (int64_t)p->ds->h * p->ds->w * p->ds->c;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        slot *job = NULL;
        while (!p->stop) { /* the queued batch that comes first */
            for (int s = 0; s < p->depth; s++)
                if (p->slots[s].state == SLOT_QUEUED && (!job || p->slots[s].key < job->key)) job = &p->slots[s];
            if (job) break;
            pthread_cond_wait(&p->cv, &p->mu);
        }
        if (p->stop) break;
        job->state = SLOT_WORKING;
        pthread_mutex_unlock(&p->mu);
        sm_status st = SM_OK;
        for (int i = 0; i < job->n && !st; i++) st = sm_dataset_decode(p->ds, job->idx[i], job->x + i * per);
        pthread_mutex_lock(&p->mu);
        job->st = st;
        if (st) sm_errmsg_copy(job->err);
        job->state = SLOT_DONE;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

sm_status sm_prefetch_create(sm_prefetch **out, sm_dataset *ds, int batch, int depth) {
    *out = NULL;
    sm_prefetch *p = sm_calloc(1, sizeof *p);
    if (!p) return SM_ERR_NOMEM;
    p->ds = ds; p->batch = batch; p->depth = depth;
    p->slots = sm_calloc((size_t)depth, sizeof(slot));
    if (!p->slots) { sm_free(p); return SM_ERR_NOMEM; }
    const int64_t per = (int64_t)ds->h * ds->w * ds->c;
    for (int s = 0; s < depth; s++) {
        p->slots[s].idx = sm_alloc((size_t)batch, sizeof(int64_t));
        p->slots[s].x = sm_alloc((size_t)batch, (size_t)per * sizeof(float));
        if (!p->slots[s].idx || !p->slots[s].x) { sm_prefetch_free(p); return SM_ERR_NOMEM; }
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, worker, p)) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        for (int s = 0; s < depth; s++) { sm_free(p->slots[s].idx); sm_free(p->slots[s].x); }
        sm_free(p->slots);
        sm_free(p);
        return sm_fail(SM_ERR_NOMEM, "cannot start the image decoding thread");
    }
    p->started = 1;
    *out = p;
    return SM_OK;
}

/* The slot holding key, or NULL; with the lock held. */
static slot *find(sm_prefetch *p, uint64_t key) {
    for (int s = 0; s < p->depth; s++)
        if (p->slots[s].state != SLOT_FREE && p->slots[s].key == key) return &p->slots[s];
    return NULL;
}

/* Queue key in a free slot (none free: nothing); with the lock held. */
static slot *queue(sm_prefetch *p, uint64_t key, const int64_t *idx, int n) {
    for (int s = 0; s < p->depth; s++) {
        slot *q = &p->slots[s];
        if (q->state != SLOT_FREE) continue;
        q->state = SLOT_QUEUED;
        q->key = key;
        q->n = n;
        memcpy(q->idx, idx, (size_t)n * sizeof(int64_t));
        pthread_cond_broadcast(&p->cv);
        return q;
    }
    return NULL;
}

void sm_prefetch_submit(sm_prefetch *p, uint64_t key, const int64_t *idx, int n) {
    pthread_mutex_lock(&p->mu);
    if (!find(p, key)) queue(p, key, idx, n);
    pthread_mutex_unlock(&p->mu);
}

sm_status sm_prefetch_take(sm_prefetch *p, uint64_t key, const int64_t *idx, int n, float *dst) {
    const int64_t per = (int64_t)p->ds->h * p->ds->w * p->ds->c;
    pthread_mutex_lock(&p->mu);
    slot *q = find(p, key);
    if (q && q->n < n) { /* queued for fewer samples (cannot happen with the trainer's plans) */
        while (q->state != SLOT_DONE) pthread_cond_wait(&p->cv, &p->mu);
        q->state = SLOT_FREE;
        q = NULL;
    }
    while (!q) { /* not asked for before: queue it now (waiting for a slot if all are busy) */
        if ((q = queue(p, key, idx, n))) break;
        for (int s = 0; s < p->depth; s++) /* batches nobody will take: a pass ended early */
            if (p->slots[s].state == SLOT_DONE && p->slots[s].key < key) p->slots[s].state = SLOT_FREE;
        if ((q = queue(p, key, idx, n))) break;
        pthread_cond_wait(&p->cv, &p->mu);
    }
    while (q->state != SLOT_DONE) pthread_cond_wait(&p->cv, &p->mu);
    sm_status st = q->st;
    char err[SM_ERRMSG_MAX];
    if (st) memcpy(err, q->err, sizeof err);
    else memcpy(dst, q->x, (size_t)n * (size_t)per * sizeof(float));
    q->state = SLOT_FREE;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return st ? sm_fail(st, "%s", err) : SM_OK;
}

void sm_prefetch_free(sm_prefetch *p) {
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
    for (int s = 0; p->slots && s < p->depth; s++) { sm_free(p->slots[s].idx); sm_free(p->slots[s].x); }
    sm_free(p->slots);
    sm_free(p);
}
