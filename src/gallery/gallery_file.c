/* gallery_file.c - the gallery file format and the writer lock.  Little-endian:
 *   "SMILEGAL" (8 bytes) | u32 version (3) | u32 dim | u32 metric | u32 model fingerprint
 *   | f32 threshold | u32 threshold rule | u32 nclasses | u64 nitems | u64 next_id
 *   | nclasses x (u32 flags (1 = removed), u32 name length, name bytes)
 *   | nitems x (u32 class slot, u32 flags (1 = removed), i64 item id)
 *   | embeddings: version 3: nlive x dim f32, the live items' in storage order (a removed
 *     item keeps none); versions 1, 2: nitems x dim f32
 *   | versions 2, 3: u64 generation | u64 generation at calibration | i64 live items at
 *     calibration (-1 unknown) | nitems x (u32 source length (0..4096), source bytes)
 *   | version 3: nitems x i64 enrolment time (ms since 1970-01-01 UTC, 0 = unknown)
 *   | u32 CRC-32 of every preceding byte
 * Versions 1 (no calibration record, no source names) and 2 (no enrolment times) are still
 * read: their items have no source / time 0 and a version-1 calibration is of unknown size
 * (generation 0).  Saving always writes version 3.
 * Written through sm_afile (temporary file, fsync, rename, directory fsync): a crash leaves the
 * old or the new file.  Reading checks the magic and the CRC first, then every count against
 * the bytes left before allocating, then names, classes, ids and values. */
#define _POSIX_C_SOURCE 200809L
#include "gallery/gallery.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define MAGIC "SMILEGAL"
#define FORMAT_VERSION 3u
#define OLDEST_VERSION 1u
#define HEADER_BYTES (8 + 4 * 7 + 8 * 2)
#define MAX_FILE_BYTES ((size_t)1 << 36)

/* ---- writing ------------------------------------------------------------------------------ */
static sm_status w_f32(sm_afile *f, float x) {
    uint32_t v;
    memcpy(&v, &x, 4);
    return sm_afile_u32(f, v);
}

sm_status sm_gallery_save(sm_gallery *g, const char *path) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_save: gallery is NULL");
    if (!path || !*path) { sm_fail(SM_ERR_INVALID, "sm_gallery_save: empty path"); sm_errmsg_copy(g->errmsg); return SM_ERR_INVALID; }
    sm_afile f;
    sm_status st = sm_afile_open(&f, path);
    if (st) { sm_errmsg_copy(g->errmsg); return st; }
    st = sm_afile_write(&f, MAGIC, 8);
    if (!st) st = sm_afile_u32(&f, FORMAT_VERSION);
    if (!st) st = sm_afile_u32(&f, (uint32_t)g->dim);
    if (!st) st = sm_afile_u32(&f, (uint32_t)g->metric);
    if (!st) st = sm_afile_u32(&f, g->fingerprint);
    if (!st) st = w_f32(&f, g->threshold);
    if (!st) st = sm_afile_u32(&f, (uint32_t)g->threshold_rule);
    if (!st) st = sm_afile_u32(&f, (uint32_t)g->nclasses);
    if (!st) st = sm_afile_u64(&f, (uint64_t)g->n);
    if (!st) st = sm_afile_u64(&f, (uint64_t)g->next_id);
    for (int c = 0; c < g->nclasses && !st; c++) {
        st = sm_afile_u32(&f, g->class_removed[c] ? 1u : 0u);
        if (!st) st = sm_afile_str(&f, g->names[c]);
    }
    for (int64_t i = 0; i < g->n && !st; i++) {
        st = sm_afile_u32(&f, (uint32_t)g->cls[i]);
        if (!st) st = sm_afile_u32(&f, g->dead[i] ? 1u : 0u);
        if (!st) st = sm_afile_u64(&f, (uint64_t)g->ids[i]);
    }
    /* x86-64 / arm64: floats are little-endian in memory; the live rows in storage order */
    for (int64_t i = 0; i < g->n && !st; i++)
        if (!g->dead[i]) st = sm_afile_write(&f, g->emb + g->pos[i] * g->dim, (size_t)g->dim * sizeof(float));
    if (!st) st = sm_afile_u64(&f, g->generation);
    if (!st) st = sm_afile_u64(&f, g->calib_generation);
    if (!st) st = sm_afile_u64(&f, (uint64_t)g->calib_items);
    for (int64_t i = 0; i < g->n && !st; i++) st = sm_afile_str(&f, g->src[i] ? g->src[i] : "");
    for (int64_t i = 0; i < g->n && !st; i++) st = sm_afile_u64(&f, (uint64_t)g->tms[i]);
    uint32_t crc = f.crc;
    if (!st) st = sm_afile_u32(&f, crc);
    if (st) { sm_afile_abort(&f); sm_errmsg_copy(g->errmsg); return st; }
    st = sm_afile_commit(&f);
    if (st) sm_errmsg_copy(g->errmsg);
    else sm_journal_saved(g, path, crc);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static sm_status parse_gallery(sm_reader *r, sm_gallery **out) {
    const char *path = r->path;
    size_t len = (size_t)(r->end - r->p);
    if (len < 8 || memcmp(r->p, MAGIC, 8) != 0)
        return sm_fail(SM_ERR_FORMAT, "%s: not a simile gallery file (bad magic)", path);
    if (len < HEADER_BYTES + 4)
        return sm_fail(SM_ERR_FORMAT, "%s: truncated (%zu bytes, a gallery has at least %d)", path, len, HEADER_BYTES + 4);
    const unsigned char *crc_at = r->end - 4;
    if (sm_crc32(0, r->p, (size_t)(crc_at - r->p)) != sm_get_u32le(crc_at))
        return sm_fail(SM_ERR_FORMAT, "%s: checksum mismatch (the file is corrupt or truncated)", path);
    uint32_t file_crc = sm_get_u32le(crc_at);
    r->end = crc_at;
    r->p += 8;
    uint32_t version, dim, metric, fp, thr_bits, rule, nclasses;
    uint64_t nitems, next_id;
    sm_status st;
    if ((st = sm_reader_u32(r, &version, "version"))) return st;
    if (version < OLDEST_VERSION || version > FORMAT_VERSION)
        return sm_fail(SM_ERR_FORMAT, "%s: gallery format version %u, this build reads versions %u to %u", path, version,
                       OLDEST_VERSION, FORMAT_VERSION);
    if ((st = sm_reader_u32(r, &dim, "dimension")) || (st = sm_reader_u32(r, &metric, "metric")) || (st = sm_reader_u32(r, &fp, "model fingerprint")) ||
        (st = sm_reader_u32(r, &thr_bits, "threshold")) || (st = sm_reader_u32(r, &rule, "threshold rule")) ||
        (st = sm_reader_u32(r, &nclasses, "class count")) || (st = sm_reader_u64(r, &nitems, "item count")) ||
        (st = sm_reader_u64(r, &next_id, "next id")))
        return st;
    float thr;
    memcpy(&thr, &thr_bits, 4);
    if (dim < 1 || dim > SM_GALLERY_MAX_DIM) return sm_fail(SM_ERR_FORMAT, "%s: dimension %u outside 1..%d", path, dim, SM_GALLERY_MAX_DIM);
    if (metric > SM_METRIC_COSINE) return sm_fail(SM_ERR_FORMAT, "%s: unknown metric %u", path, metric);
    if (thr != thr) return sm_fail(SM_ERR_FORMAT, "%s: threshold is NaN", path);
    if (rule > SM_RULE_CENTROID) return sm_fail(SM_ERR_FORMAT, "%s: unknown threshold rule %u", path, rule);
    uint64_t left = (uint64_t)(r->end - r->p);
    if (nclasses > SM_GALLERY_MAX_CLASSES || (uint64_t)nclasses * 8 > left)
        return sm_fail(SM_ERR_FORMAT, "%s: class count %u does not fit in the file", path, nclasses);
    if (nitems > (uint64_t)SM_GALLERY_MAX_ITEMS || nitems * (version >= 3 ? 16 : 16 + 4ull * dim) > left)
        return sm_fail(SM_ERR_FORMAT, "%s: item count %llu does not fit in the file", path, (unsigned long long)nitems);
    if (next_id > ((uint64_t)1 << 62)) return sm_fail(SM_ERR_FORMAT, "%s: next item id %llu out of range", path, (unsigned long long)next_id);
    sm_gallery *g;
    if ((st = sm_gallery_create(&g, (int)dim, (sm_metric)metric, fp))) return st;
    g->threshold = thr;
    g->threshold_rule = (sm_decision_rule)rule;
    g->next_id = (int64_t)next_id;
    char **sorted = NULL;  /* (live classes) names, to check uniqueness */
    int64_t *ids = NULL;   /* (nitems) sorted ids */
    if ((st = sm_gallery_reserve(g, (int)nclasses, (int64_t)nitems))) goto fail;
    for (uint32_t c = 0; c < nclasses; c++) {
        uint32_t flags, n;
        if ((st = sm_reader_u32(r, &flags, "class flags")) || (st = sm_reader_u32(r, &n, "class name length"))) goto fail;
        if (flags > 1) { st = sm_fail(SM_ERR_FORMAT, "%s: class %u has bad flags %u", path, c, flags); goto fail; }
        if ((uint64_t)(r->end - r->p) < n) { st = sm_fail(SM_ERR_FORMAT, "%s: truncated (reading class name %u)", path, c); goto fail; }
        if (!sm_gallery_name_ok((const char *)r->p, n)) {
            st = sm_fail(SM_ERR_FORMAT, "%s: class %u has an invalid name (empty, longer than %d bytes or with "
                         "control characters)", path, c, SM_GALLERY_MAX_NAME);
            goto fail;
        }
        char *name = sm_alloc(n + 1, 1);
        if (!name) { st = SM_ERR_NOMEM; goto fail; }
        memcpy(name, r->p, n);
        name[n] = 0;
        r->p += n;
        g->names[c] = name;
        g->class_removed[c] = (uint8_t)flags;
        g->class_live[c] = 0;
        g->nclasses++;
    }
    /* version 2: after the items, 24 bytes of calibration record and >= 4 bytes a source;
     * version 3: embeddings of the live items only (checked below) and 8 bytes a time */
    uint64_t item_bytes = nitems * (version >= 3 ? 16 : 16 + 4ull * dim), left_now = (uint64_t)(r->end - r->p);
    uint64_t tail = version == 1 ? 0 : version == 2 ? 24 + 4 * nitems : 24 + 12 * nitems;
    if (version == 1 ? left_now != item_bytes : left_now < item_bytes + tail) {
        st = sm_fail(SM_ERR_FORMAT, "%s: %lld bytes of items, expected %s%llu for %llu items of dimension %u", path,
                     (long long)left_now, version == 1 ? "" : "at least ",
                     (unsigned long long)(item_bytes + tail), (unsigned long long)nitems, dim);
        goto fail;
    }
    for (uint64_t i = 0; i < nitems; i++) {
        uint32_t c = sm_get_u32le(r->p), flags = sm_get_u32le(r->p + 4);
        uint64_t id = (uint64_t)sm_get_u32le(r->p + 8) | (uint64_t)sm_get_u32le(r->p + 12) << 32;
        r->p += 16;
        if (c >= nclasses) { st = sm_fail(SM_ERR_FORMAT, "%s: item %llu has class %u of %u", path, (unsigned long long)i, c, nclasses); goto fail; }
        if (flags > 1) { st = sm_fail(SM_ERR_FORMAT, "%s: item %llu has bad flags %u", path, (unsigned long long)i, flags); goto fail; }
        if (g->class_removed[c] && !flags) {
            st = sm_fail(SM_ERR_FORMAT, "%s: item %llu is live but its class '%s' was removed", path, (unsigned long long)i, g->names[c]);
            goto fail;
        }
        if (id >= next_id) {
            st = sm_fail(SM_ERR_FORMAT, "%s: item %llu has id %llu, not below the next id %llu", path, (unsigned long long)i,
                         (unsigned long long)id, (unsigned long long)next_id);
            goto fail;
        }
        g->cls[i] = (int32_t)c;
        g->dead[i] = (uint8_t)flags;
        g->ids[i] = (int64_t)id;
        if (i && g->ids[i] <= g->ids[i - 1]) g->ids_unsorted = 1;
        if (!flags) g->class_live[c]++; else g->ndead++;
    }
    g->n = (int64_t)nitems;
    uint64_t nlive = nitems - (uint64_t)g->ndead;
    if (version >= 3 && (uint64_t)(r->end - r->p) < nlive * 4ull * dim + tail) {
        st = sm_fail(SM_ERR_FORMAT, "%s: %lld bytes after the item table, expected at least %llu for %llu live items of "
                     "dimension %u", path, (long long)(r->end - r->p), (unsigned long long)(nlive * 4ull * dim + tail),
                     (unsigned long long)nlive, dim);
        goto fail;
    }
    /* the packed live rows, in storage order (versions 1, 2 hold a row for every item) */
    for (uint64_t i = 0, j = 0; i < nitems; i++) {
        if (g->dead[i] && version >= 3) { g->pos[i] = -1; continue; }
        const unsigned char *row = r->p;
        r->p += (size_t)dim * sizeof(float);
        if (g->dead[i]) { g->pos[i] = -1; continue; }
        float *e = g->emb + j * dim;
        memcpy(e, row, (size_t)dim * sizeof(float));
        if (!sm_all_finite(e, dim)) {
            st = sm_fail(SM_ERR_FORMAT, "%s: item %llu holds NaN or Inf", path, (unsigned long long)i);
            goto fail;
        }
        g->pos[i] = (int64_t)j;
        g->prow[j] = (int64_t)i;
        g->pcls[j] = g->cls[i];
        j++;
    }
    for (uint64_t i = 0; i < nitems; i++) g->tms[i] = 0;
    if (version >= 2) {
        uint64_t gen, cgen, citems;
        if ((st = sm_reader_u64(r, &gen, "generation")) || (st = sm_reader_u64(r, &cgen, "calibration generation")) ||
            (st = sm_reader_u64(r, &citems, "calibration item count")))
            goto fail;
        if (cgen > gen || (citems != UINT64_MAX && citems > (uint64_t)SM_GALLERY_MAX_ITEMS)) {
            st = sm_fail(SM_ERR_FORMAT, "%s: bad calibration record (generation %llu of %llu, %lld items)", path,
                         (unsigned long long)cgen, (unsigned long long)gen, (long long)citems);
            goto fail;
        }
        g->generation = gen;
        g->calib_generation = cgen;
        g->calib_items = (int64_t)citems;
        for (uint64_t i = 0; i < nitems; i++) {
            const char *sp;
            uint32_t n;
            if ((st = sm_reader_str(r, &sp, &n, "item source name"))) goto fail;
            if (!sm_gallery_source_ok(sp, n)) {
                st = sm_fail(SM_ERR_FORMAT, "%s: item %llu has an invalid source name (longer than %d bytes or with a NUL "
                             "byte)", path, (unsigned long long)i, SM_GALLERY_MAX_SOURCE);
                goto fail;
            }
            if (n) {
                if (!(g->src[i] = sm_alloc(n + 1, 1))) { st = SM_ERR_NOMEM; goto fail; }
                memcpy(g->src[i], sp, n);
                g->src[i][n] = 0;
            }
        }
        for (uint64_t i = 0; version >= 3 && i < nitems; i++) {
            uint64_t t;
            if ((st = sm_reader_u64(r, &t, "item enrolment time"))) goto fail;
            if (t > ((uint64_t)1 << 62)) {
                st = sm_fail(SM_ERR_FORMAT, "%s: item %llu has enrolment time %llu (out of range)", path,
                             (unsigned long long)i, (unsigned long long)t);
                goto fail;
            }
            g->tms[i] = (int64_t)t;
        }
        if (r->p != r->end) {
            st = sm_fail(SM_ERR_FORMAT, "%s: %lld bytes after the item %s", path, (long long)(r->end - r->p),
                         version >= 3 ? "enrolment times" : "source names");
            goto fail;
        }
    }
    /* unique ids over all items; unique names over live classes */
    ids = sm_alloc((size_t)(nitems ? nitems : 1), sizeof(int64_t));
    sorted = sm_alloc((size_t)(nclasses ? nclasses : 1), sizeof(char *));
    if (!ids || !sorted) { st = SM_ERR_NOMEM; goto fail; }
    if (nitems) memcpy(ids, g->ids, (size_t)nitems * sizeof(int64_t));
    qsort(ids, (size_t)nitems, sizeof(int64_t), cmp_i64);
    for (uint64_t i = 1; i < nitems; i++)
        if (ids[i] == ids[i - 1]) { st = sm_fail(SM_ERR_FORMAT, "%s: item id %lld appears twice", path, (long long)ids[i]); goto fail; }
    size_t nl = 0;
    for (uint32_t c = 0; c < nclasses; c++) if (!g->class_removed[c]) sorted[nl++] = g->names[c];
    qsort(sorted, nl, sizeof(char *), cmp_str);
    for (size_t i = 1; i < nl; i++)
        if (!strcmp(sorted[i], sorted[i - 1])) { st = sm_fail(SM_ERR_FORMAT, "%s: class '%s' appears twice", path, sorted[i]); goto fail; }
    sm_free(ids);
    sm_free(sorted);
    g->file_crc = file_crc;
    *out = g;
    return SM_OK;
fail:
    sm_free(ids);
    sm_free(sorted);
    sm_gallery_free(g);
    return st;
}

sm_status sm_gallery_open(sm_gallery **out, const char *path) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_gallery_open: out is NULL");
    *out = NULL;
    if (!path || !*path) return sm_fail(SM_ERR_INVALID, "sm_gallery_open: empty path");
    unsigned char *data;
    size_t len;
    sm_status st = sm_read_file(path, MAX_FILE_BYTES, &data, &len);
    if (st) return st;
    sm_reader r = {data, data + len, path};
    st = parse_gallery(&r, out);
    sm_free(data);
    if (!st && (st = sm_journal_replay(*out, path))) { sm_gallery_free(*out); *out = NULL; }
    return st;
}

/* ---- writer lock -------------------------------------------------------------------------- */
struct sm_lock { int fd; };

static sm_status lock_file(sm_lock **out, const char *path, int wait) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_gallery_lock: out is NULL");
    *out = NULL;
    if (!path || !*path) return sm_fail(SM_ERR_INVALID, "sm_gallery_lock: empty path");
    size_t n = strlen(path) + 6;
    char *lp = sm_alloc(n, 1);
    sm_lock *l = sm_alloc(1, sizeof *l);
    if (!lp || !l) { sm_free(lp); sm_free(l); return SM_ERR_NOMEM; }
    snprintf(lp, n, "%s.lock", path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        sm_status st = sm_fail(SM_ERR_IO, "%s: cannot open the lock file: %s", lp, strerror(errno));
        sm_free(lp); sm_free(l);
        return st;
    }
    int rc;
    while ((rc = flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {}
    if (rc != 0) {
        sm_status st = errno == EWOULDBLOCK ? sm_fail(SM_ERR_IO, "%s: locked by another process (a writer has the gallery open)", lp)
                                            : sm_fail(SM_ERR_IO, "%s: cannot lock: %s", lp, strerror(errno));
        close(fd); sm_free(lp); sm_free(l);
        return st;
    }
    sm_free(lp);
    l->fd = fd;
    *out = l;
    return SM_OK;
}

sm_status sm_gallery_lock(sm_lock **out, const char *path) { return lock_file(out, path, 1); }
sm_status sm_gallery_trylock(sm_lock **out, const char *path) { return lock_file(out, path, 0); }

void sm_lock_release(sm_lock *l) {
    if (!l) return;
    flock(l->fd, LOCK_UN);
    close(l->fd);
    sm_free(l);
}
