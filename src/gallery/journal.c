/* journal.c - the gallery's write-ahead journal "<gallery>.journal": every change to a journaled
 * gallery (sm_gallery_open_journaled) is appended as one record and fsynced before it is
 * applied, so a write costs O(size of the change), not a rewrite of the gallery file.
 * Little-endian:
 *   header: "SMILEJNL" | u32 version (2; 1 still read) | u32 base CRC | u64 base generation | u32 CRC-32 of
 *           the preceding 24 bytes
 *     (base = the CRC-32 stored at the end of the gallery file the records apply to, and its
 *      generation; a journal whose base is not the gallery file on disk is stale, i.e. already
 *      folded in by a checkpoint that stopped before truncating it, and is ignored)
 *   records: u32 payload length | u32 type | payload | u32 CRC-32 of length, type and payload
 *     1 add:          u32 name length, name | u64 n | u32 dim | n x i64 id | n x dim f32
 *                     | n x (u32 source length, source bytes)
 *     2 remove class: u32 name length, name
 *     3 remove item:  i64 id
 *     4 threshold:    f32 threshold | u32 rule
 *     5 compact:      (empty)
 *     6 rename class: u32 name length, name | u32 new name length, new name
 *     7 add (timed):  as 1, then n x i64 enrolment time (ms since 1970-01-01 UTC); version 2
 *                     writes adds as 7, type 1 (version 1) replays with time 0
 * Replay (sm_gallery_open): records are applied in order.  An incomplete last record (a crash
 * while appending), or a last record whose CRC fails, is ignored and cut off before the next
 * append; a bad CRC followed by more records, or a record that cannot be applied, is
 * SM_ERR_FORMAT.  sm_gallery_checkpoint folds the journal into the gallery file (temporary
 * file, fsync, rename) and then truncates the journal.
 * Test hook: SIMILE_TEST_SLOW_FSYNC_MS=N (tests only, docs/serve.md) sleeps N ms after each
 * record's fsync, to hold a write in its fsync while a test checks that searches go on. */
#define _POSIX_C_SOURCE 200809L
#include "gallery/gallery.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define JMAGIC "SMILEJNL"
#define JVERSION 2u
#define JOLDEST 1u
#define JHEADER 28
#define MAX_JOURNAL_BYTES ((size_t)1 << 36)
enum { REC_ADD = 1, REC_REMOVE_CLASS = 2, REC_REMOVE_ITEM = 3, REC_THRESHOLD = 4, REC_COMPACT = 5, REC_RENAME_CLASS = 6,
       REC_ADD_TIMED = 7 };

/* SIMILE_TEST_SLOW_FSYNC_MS (tests only): a pause after each record's fsync. */
static void test_slow_fsync(void) {
    const char *v = getenv("SIMILE_TEST_SLOW_FSYNC_MS");
    long ms = v ? strtol(v, NULL, 10) : 0;
    if (ms <= 0) return;
    if (ms > 60000) ms = 60000;
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
static uint64_t get64(const unsigned char *p) { return (uint64_t)sm_get_u32le(p) | (uint64_t)sm_get_u32le(p + 4) << 32; }

static sm_status jret(sm_gallery *g, sm_status st) {
    if (st) sm_errmsg_copy(g->errmsg);
    return st;
}

static int write_all(int fd, const unsigned char *p, size_t n, off_t at) {
    while (n) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w; n -= (size_t)w; at += w;
    }
    return 0;
}

/* Open the journal for appending: a fresh header when there is no valid one, else cut a torn
 * tail off. */
static sm_status jopen(sm_gallery *g) {
    if (g->jfd < 0) {
        int created = access(g->jpath, F_OK) != 0;
        g->jfd = open(g->jpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (g->jfd < 0) return sm_fail(SM_ERR_IO, "%s: cannot open the journal: %s", g->jpath, strerror(errno));
        if (created) { /* make the new directory entry durable */
            char *dir = sm_strdup(g->jpath);
            if (dir) {
                char *slash = strrchr(dir, '/');
                if (slash) *(slash == dir ? slash + 1 : slash) = 0; else strcpy(dir, ".");
                int dfd = open(dir, O_RDONLY);
                if (dfd >= 0) { fsync(dfd); close(dfd); }
                sm_free(dir);
            }
        }
    }
    struct stat sb;
    if (fstat(g->jfd, &sb) != 0) return sm_fail(SM_ERR_IO, "%s: stat: %s", g->jpath, strerror(errno));
    if (g->jlen == 0) {
        unsigned char h[JHEADER];
        memcpy(h, JMAGIC, 8);
        put32(h + 8, JVERSION);
        put32(h + 12, g->file_crc);
        put64(h + 16, g->generation);
        put32(h + 24, sm_crc32(0, h, 24));
        if (ftruncate(g->jfd, 0) != 0 || write_all(g->jfd, h, JHEADER, 0) != 0 || fdatasync(g->jfd) != 0)
            return sm_fail(SM_ERR_IO, "%s: cannot write the journal header: %s", g->jpath, strerror(errno));
        g->jlen = JHEADER;
        g->jrecords = 0;
    } else if (sb.st_size != g->jlen) {
        if (ftruncate(g->jfd, g->jlen) != 0)
            return sm_fail(SM_ERR_IO, "%s: cannot cut the torn last record: %s", g->jpath, strerror(errno));
    }
    return SM_OK;
}

/* Append record (type, payload p of n bytes), fsynced. */
static sm_status append(sm_gallery *g, uint32_t type, unsigned char *buf, size_t n) {
    /* buf has 8 bytes free before the payload and 4 after it */
    if (n > UINT32_MAX - 16) return jret(g, sm_fail(SM_ERR_RANGE, "journal record of %zu bytes is too large", n));
    sm_status st = jopen(g);
    if (st) return jret(g, st);
    put32(buf, (uint32_t)n);
    put32(buf + 4, type);
    put32(buf + 8 + n, sm_crc32(0, buf, 8 + n));
    if (write_all(g->jfd, buf, n + 12, (off_t)g->jlen) != 0 || fdatasync(g->jfd) != 0) {
        st = sm_fail(SM_ERR_IO, "%s: cannot append to the journal: %s", g->jpath, strerror(errno));
        if (ftruncate(g->jfd, g->jlen) != 0) { /* the next append cuts it off */ }
        return jret(g, st);
    }
    test_slow_fsync();
    g->jlen += (int64_t)(n + 12);
    g->jrecords++;
    return SM_OK;
}

static int active(const sm_gallery *g) { return g->jpath && !g->replaying; }

sm_status sm_journal_add(sm_gallery *g, const char *name, int64_t n, const int64_t *ids, const float *emb,
                         const char *const *src, const int64_t *times) {
    if (!active(g)) return SM_OK;
    size_t nl = strlen(name), d = (size_t)g->dim, bytes = 4 + nl + 8 + 4 + (size_t)n * (8 + 4 * d + 4 + 8);
    for (int64_t i = 0; src && i < n; i++) bytes += src[i] ? strlen(src[i]) : 0;
    unsigned char *buf = sm_alloc(bytes + 12, 1);
    if (!buf) return jret(g, SM_ERR_NOMEM);
    unsigned char *p = buf + 8;
    put32(p, (uint32_t)nl); memcpy(p + 4, name, nl); p += 4 + nl;
    put64(p, (uint64_t)n); put32(p + 8, (uint32_t)d); p += 12;
    for (int64_t i = 0; i < n; i++, p += 8) put64(p, (uint64_t)(ids ? ids[i] : g->next_id + i));
    memcpy(p, emb, (size_t)n * d * sizeof(float)); /* little-endian hosts (as gallery_file.c) */
    p += (size_t)n * d * sizeof(float);
    for (int64_t i = 0; i < n; i++) {
        size_t sl = src && src[i] ? strlen(src[i]) : 0;
        put32(p, (uint32_t)sl);
        if (sl) memcpy(p + 4, src[i], sl);
        p += 4 + sl;
    }
    for (int64_t i = 0; i < n; i++, p += 8) put64(p, (uint64_t)times[i]);
    sm_status st = append(g, REC_ADD_TIMED, buf, bytes);
    sm_free(buf);
    return st;
}

sm_status sm_journal_remove_class(sm_gallery *g, const char *name) {
    if (!active(g)) return SM_OK;
    size_t nl = strlen(name);
    unsigned char *buf = sm_alloc(nl + 16, 1);
    if (!buf) return jret(g, SM_ERR_NOMEM);
    put32(buf + 8, (uint32_t)nl);
    memcpy(buf + 12, name, nl);
    sm_status st = append(g, REC_REMOVE_CLASS, buf, nl + 4);
    sm_free(buf);
    return st;
}

sm_status sm_journal_rename_class(sm_gallery *g, const char *name, const char *new_name) {
    if (!active(g)) return SM_OK;
    size_t a = strlen(name), b = strlen(new_name);
    unsigned char *buf = sm_alloc(a + b + 20, 1);
    if (!buf) return jret(g, SM_ERR_NOMEM);
    put32(buf + 8, (uint32_t)a);
    memcpy(buf + 12, name, a);
    put32(buf + 12 + a, (uint32_t)b);
    memcpy(buf + 16 + a, new_name, b);
    sm_status st = append(g, REC_RENAME_CLASS, buf, a + b + 8);
    sm_free(buf);
    return st;
}

sm_status sm_journal_remove_item(sm_gallery *g, int64_t id) {
    if (!active(g)) return SM_OK;
    unsigned char buf[20];
    put64(buf + 8, (uint64_t)id);
    return append(g, REC_REMOVE_ITEM, buf, 8);
}

sm_status sm_journal_threshold(sm_gallery *g, float t, sm_decision_rule rule) {
    if (!active(g)) return SM_OK;
    unsigned char buf[20];
    uint32_t bits;
    memcpy(&bits, &t, 4);
    put32(buf + 8, bits);
    put32(buf + 12, (uint32_t)rule);
    return append(g, REC_THRESHOLD, buf, 8);
}

sm_status sm_journal_compact(sm_gallery *g) {
    if (!active(g)) return SM_OK;
    unsigned char buf[12];
    return append(g, REC_COMPACT, buf, 0);
}

/* ---- replay ------------------------------------------------------------------------------- */
/* Copy a length-prefixed string at *p (bytes left *left) into a new buffer. */
static char *take_str(const unsigned char **p, size_t *left, uint32_t max) {
    if (*left < 4) return NULL;
    uint32_t n = sm_get_u32le(*p);
    if (n > max || *left - 4 < n) return NULL;
    char *s = sm_alloc((size_t)n + 1, 1);
    if (!s) return NULL;
    memcpy(s, *p + 4, n);
    s[n] = 0;
    *p += 4 + n;
    *left -= 4 + n;
    return s;
}

static sm_status apply(sm_gallery *g, uint32_t type, const unsigned char *p, size_t n, const char *jp, int64_t k) {
    sm_status st = SM_OK;
    switch (type) {
    case REC_ADD:
    case REC_ADD_TIMED: {
        char *name = take_str(&p, &n, SM_GALLERY_MAX_NAME);
        if (!name || n < 12) { sm_free(name); break; }
        uint64_t cnt = get64(p);
        uint32_t d = sm_get_u32le(p + 8);
        p += 12; n -= 12;
        uint64_t tb = type == REC_ADD_TIMED ? 8 : 0; /* bytes of time an item */
        if (d != (uint32_t)g->dim || cnt < 1 || cnt > n / (8 + 4ull * d + 4 + tb)) { sm_free(name); break; }
        int64_t *ids = sm_alloc((size_t)cnt, sizeof(int64_t));
        float *emb = sm_alloc((size_t)cnt * d, sizeof(float));
        char **src = sm_calloc((size_t)cnt, sizeof(char *));
        int64_t *tms = sm_calloc((size_t)cnt, sizeof(int64_t)); /* (cnt) 0 = unknown (type 1) */
        int ok = ids && emb && src && tms;
        for (uint64_t i = 0; ok && i < cnt; i++) ids[i] = (int64_t)get64(p + 8 * i);
        if (ok) {
            p += 8 * cnt; n -= 8 * cnt;
            memcpy(emb, p, (size_t)cnt * d * sizeof(float));
            p += (size_t)cnt * d * sizeof(float); n -= (size_t)cnt * d * sizeof(float);
        }
        for (uint64_t i = 0; ok && i < cnt; i++) ok = (src[i] = take_str(&p, &n, SM_GALLERY_MAX_SOURCE)) != NULL;
        if (ok && tb) {
            if (n < cnt * 8) ok = 0;
            for (uint64_t i = 0; ok && i < cnt; i++) {
                uint64_t t = get64(p + 8 * i);
                tms[i] = t > ((uint64_t)1 << 62) ? 0 : (int64_t)t;
            }
            if (ok) { p += 8 * cnt; n -= 8 * cnt; }
        }
        if (!ok || n) st = !ids || !emb || !src || !tms ? SM_ERR_NOMEM : SM_ERR_FORMAT;
        else st = sm_gallery_add_timed(g, emb, (int64_t)cnt, (int)d, name, ids, (const char *const *)src, tms, NULL);
        for (uint64_t i = 0; src && i < cnt; i++) sm_free(src[i]);
        sm_free(src); sm_free(emb); sm_free(ids); sm_free(tms); sm_free(name);
        if (st == SM_ERR_NOMEM) return SM_ERR_NOMEM;
        if (st) return sm_fail(SM_ERR_FORMAT, "%s: record %lld (add) cannot be applied: %s", jp, (long long)k, g->errmsg);
        return SM_OK;
    }
    case REC_REMOVE_CLASS: {
        char *name = take_str(&p, &n, SM_GALLERY_MAX_NAME);
        if (!name || n) { sm_free(name); break; }
        st = sm_gallery_remove_class(g, name, NULL);
        sm_free(name);
        if (st) return sm_fail(SM_ERR_FORMAT, "%s: record %lld (remove class) cannot be applied: %s", jp, (long long)k, g->errmsg);
        return SM_OK;
    }
    case REC_RENAME_CLASS: {
        char *name = take_str(&p, &n, SM_GALLERY_MAX_NAME), *to = name ? take_str(&p, &n, SM_GALLERY_MAX_NAME) : NULL;
        if (!name || !to || n) { sm_free(name); sm_free(to); break; }
        st = sm_gallery_rename_class(g, name, to);
        sm_free(name); sm_free(to);
        if (st) return sm_fail(SM_ERR_FORMAT, "%s: record %lld (rename class) cannot be applied: %s", jp, (long long)k, g->errmsg);
        return SM_OK;
    }
    case REC_REMOVE_ITEM:
        if (n != 8) break;
        if (sm_gallery_remove_item(g, (int64_t)get64(p)))
            return sm_fail(SM_ERR_FORMAT, "%s: record %lld (remove item) cannot be applied: %s", jp, (long long)k, g->errmsg);
        return SM_OK;
    case REC_THRESHOLD: {
        if (n != 8) break;
        uint32_t bits = sm_get_u32le(p);
        float t;
        memcpy(&t, &bits, 4);
        if (sm_gallery_set_threshold(g, t, (sm_decision_rule)sm_get_u32le(p + 4)))
            return sm_fail(SM_ERR_FORMAT, "%s: record %lld (threshold) cannot be applied: %s", jp, (long long)k, g->errmsg);
        return SM_OK;
    }
    case REC_COMPACT:
        if (n != 0) break;
        return sm_gallery_compact(g);
    default:
        return sm_fail(SM_ERR_FORMAT, "%s: record %lld has unknown type %u", jp, (long long)k, type);
    }
    return sm_fail(SM_ERR_FORMAT, "%s: record %lld (type %u) is malformed", jp, (long long)k, type);
}

sm_status sm_journal_replay(sm_gallery *g, const char *path) {
    size_t pl = strlen(path) + 9;
    char *jp = sm_alloc(pl, 1);
    if (!jp) return SM_ERR_NOMEM;
    snprintf(jp, pl, "%s.journal", path);
    g->jlen = 0;
    g->jrecords = 0;
    if (access(jp, F_OK) != 0) { sm_free(jp); return SM_OK; }
    unsigned char *data;
    size_t len;
    sm_status st = sm_read_file(jp, MAX_JOURNAL_BYTES, &data, &len);
    if (st) { sm_free(jp); return st; }
    if (len < JHEADER) goto done; /* none, or a torn header: no record */
    if (memcmp(data, JMAGIC, 8) != 0) { st = sm_fail(SM_ERR_FORMAT, "%s: not a simile gallery journal (bad magic)", jp); goto done; }
    if (sm_crc32(0, data, 24) != sm_get_u32le(data + 24)) { st = sm_fail(SM_ERR_FORMAT, "%s: header checksum mismatch", jp); goto done; }
    if (sm_get_u32le(data + 8) < JOLDEST || sm_get_u32le(data + 8) > JVERSION) {
        st = sm_fail(SM_ERR_FORMAT, "%s: journal version %u, this build reads versions %u to %u", jp, sm_get_u32le(data + 8),
                     JOLDEST, JVERSION);
        goto done;
    }
    if (sm_get_u32le(data + 12) != g->file_crc || get64(data + 16) != g->generation) goto done; /* stale */
    size_t at = JHEADER;
    int64_t k = 0;
    g->replaying = 1;
    while (len - at >= 12) {
        uint32_t n = sm_get_u32le(data + at), type = sm_get_u32le(data + at + 4);
        if ((uint64_t)n + 12 > len - at) break; /* incomplete last record */
        size_t end = at + 12 + (size_t)n;
        if (sm_crc32(0, data + at, 8 + (size_t)n) != sm_get_u32le(data + at + 8 + n)) {
            if (end == len) break; /* the last record was torn */
            st = sm_fail(SM_ERR_FORMAT, "%s: record %lld at byte %zu fails its checksum (the journal is corrupt)", jp,
                         (long long)k, at);
            break;
        }
        if ((st = apply(g, type, data + at + 8, n, jp, k))) break;
        at = end;
        k++;
    }
    g->replaying = 0;
    if (!st) { g->jlen = (int64_t)at; g->jrecords = k; }
done:
    sm_free(data);
    sm_free(jp);
    return st;
}

void sm_journal_saved(sm_gallery *g, const char *path, uint32_t crc) {
    if (g->jpath && strcmp(path, g->gpath) != 0) return; /* a copy elsewhere: the base is unchanged */
    g->file_crc = crc;
    /* the file holds g's whole state now: empty its journal (a crash before this leaves a stale
     * journal, ignored since its base is the old file) */
    if (g->jpath) {
        if (g->jfd < 0 && access(g->jpath, F_OK) == 0) g->jfd = open(g->jpath, O_RDWR | O_CLOEXEC);
        if (g->jfd >= 0 && ftruncate(g->jfd, 0) == 0) fdatasync(g->jfd);
        g->jlen = 0;
        g->jrecords = 0;
        return;
    }
    size_t pl = strlen(path) + 9;
    char *jp = sm_alloc(pl, 1);
    if (!jp) return;
    snprintf(jp, pl, "%s.journal", path);
    int fd = open(jp, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        if (ftruncate(fd, 0) == 0) fdatasync(fd);
        close(fd);
    }
    sm_free(jp);
}

void sm_journal_close(sm_gallery *g) {
    if (g->jfd >= 0) close(g->jfd);
    g->jfd = -1;
    sm_free(g->jpath);
    sm_free(g->gpath);
    g->jpath = g->gpath = NULL;
}

/* ---- public ------------------------------------------------------------------------------- */
sm_status sm_gallery_open_journaled(sm_gallery **out, const char *path) {
    sm_status st = sm_gallery_open(out, path);
    if (st) return st;
    sm_gallery *g = *out;
    size_t pl = strlen(path) + 9;
    g->gpath = sm_strdup(path);
    g->jpath = sm_alloc(pl, 1);
    if (!g->gpath || !g->jpath) { sm_gallery_free(g); *out = NULL; return SM_ERR_NOMEM; }
    snprintf(g->jpath, pl, "%s.journal", path);
    /* a stale journal (already folded in) or one with only a torn header: empty it now (the
     * caller holds the writer lock) */
    struct stat sb;
    if (g->jlen == 0 && stat(g->jpath, &sb) == 0 && sb.st_size > 0) {
        int fd = open(g->jpath, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            if (ftruncate(fd, 0) == 0) fdatasync(fd);
            close(fd);
        }
    }
    return SM_OK;
}

sm_status sm_gallery_checkpoint(sm_gallery *g) {
    if (!g) return sm_fail(SM_ERR_INVALID, "sm_gallery_checkpoint: gallery is NULL");
    if (!g->gpath) return jret(g, sm_fail(SM_ERR_INVALID, "sm_gallery_checkpoint: the gallery is not journaled"));
    return sm_gallery_save(g, g->gpath);
}

int64_t sm_gallery_journal_records(const sm_gallery *g) { return g ? g->jrecords : 0; }
