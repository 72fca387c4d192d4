/* test_journal.c - the gallery's write-ahead journal: changes of a journaled gallery go to
 * "<gallery>.journal" (the gallery file is not rewritten), are replayed by sm_gallery_open,
 * survive a crash at every byte boundary of the last record (the journal truncated to every
 * length: every complete record present, no partial one, and the next append cuts the torn
 * tail), a bad CRC in the middle is refused, a torn last record is ignored, a checkpoint folds
 * the journal in and empties it, a stale journal (a checkpoint that crashed before truncating)
 * is not applied twice, and sm_gallery_trylock refuses a second writer. */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"
#include "simile.h"
#include "testing.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define D 6
#define NOPS 7

static char dir[256], gpath[300], jpath[320];

static void fill(float *x, int64_t n, uint64_t seed) {
    sm_rng r;
    sm_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = sm_rng_normal(&r);
}

/* Change number k (0..NOPS-1) of the test sequence. */
static sm_status op(sm_gallery *g, int k) {
    float e[3 * D];
    fill(e, 3 * D, 77 + (uint64_t)k);
    const char *src[3] = {"a.png", NULL, "c#2"};
    switch (k) {
    case 0: return sm_gallery_add_sourced(g, e, 3, D, "alice", NULL, src, NULL);
    case 1: return sm_gallery_add(g, e, 2, D, "bob", NULL, NULL);
    case 2: return sm_gallery_remove_item(g, 1);
    case 3: return sm_gallery_set_threshold(g, 0.75f, SM_RULE_CENTROID);
    case 4: return sm_gallery_remove_class(g, "bob", NULL);
    case 5: return sm_gallery_add(g, e, 1, D, "carol", NULL, NULL);
    default: return sm_gallery_rename_class(g, "alice", "alicia");
    }
}

/* 1 if a and b hold the same items, classes and settings. */
static int same(const sm_gallery *a, const sm_gallery *b) {
    if (sm_gallery_size(a) != sm_gallery_size(b) || sm_gallery_num_classes(a) != sm_gallery_num_classes(b)) return 0;
    sm_decision_rule ra, rb;
    if (sm_gallery_threshold(a, &ra) != sm_gallery_threshold(b, &rb) || ra != rb) return 0;
    int64_t n = sm_gallery_size(a);
    int64_t ia[32], ib[32];
    int32_t ca[32], cb[32];
    float ea[32 * D], eb[32 * D];
    const char *sa[32], *sb[32];
    if (n > 32) return 0;
    sm_gallery_items(a, ia, ca, ea);
    sm_gallery_items(b, ib, cb, eb);
    sm_gallery_item_sources(a, sa);
    sm_gallery_item_sources(b, sb);
    for (int64_t i = 0; i < n; i++)
        if (ia[i] != ib[i] || ca[i] != cb[i] || strcmp(sa[i], sb[i])) return 0;
    if (n && memcmp(ea, eb, (size_t)n * D * sizeof(float))) return 0;
    for (int c = 0; c < sm_gallery_num_classes(a); c++) {
        sm_gallery_class x, y;
        sm_gallery_class_info(a, c, &x);
        sm_gallery_class_info(b, c, &y);
        if (strcmp(x.name, y.name) || x.items != y.items || x.removed != y.removed) return 0;
    }
    sm_gallery_calibration_info ka, kb;
    sm_gallery_calibration(a, &ka);
    sm_gallery_calibration(b, &kb);
    return ka.generation == kb.generation && ka.calibrated_generation == kb.calibrated_generation;
}

/* The expected state after the first k changes (applied in memory, no journal). */
static sm_gallery *expect(int k) {
    sm_gallery *g;
    if (sm_gallery_create(&g, D, SM_METRIC_L2, 0)) return NULL;
    for (int j = 0; j < k; j++) if (op(g, j)) { sm_gallery_free(g); return NULL; }
    return g;
}

static long fsize(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static unsigned char *slurp(const char *p, size_t *n) {
    unsigned char *d;
    return sm_read_file(p, (size_t)1 << 30, &d, n) == SM_OK ? d : NULL;
}

static void put(const char *p, const unsigned char *d, size_t n) {
    FILE *f = fopen(p, "wb");
    if (!f) return;
    if (n) fwrite(d, 1, n, f);
    fclose(f);
}

/* The publish hook: every change calls it once around making itself visible, after its
 * journal record is on disk (the file has grown) and before readers can see it. */
typedef struct pub {
    sm_gallery *g;
    const char *jp;
    int begins, ends, depth;
    long jlen_at_begin;
    int64_t size_at_begin, size_at_end;
} pub;

static void pub_fn(void *ctx, int begin) {
    pub *p = ctx;
    if (begin) {
        p->begins++;
        p->depth++;
        p->jlen_at_begin = fsize(p->jp);
        p->size_at_begin = sm_gallery_size(p->g);
    } else {
        p->ends++;
        p->depth--;
        p->size_at_end = sm_gallery_size(p->g);
    }
}

static void test_publish(void) {
    char gp[320], jp[340];
    snprintf(gp, sizeof gp, "%s/p.smg", dir);
    snprintf(jp, sizeof jp, "%s.journal", gp);
    sm_gallery *g;
    CHECK_OK(sm_gallery_create(&g, D, SM_METRIC_L2, 0));
    CHECK_OK(sm_gallery_save(g, gp));
    sm_gallery_free(g);
    CHECK_OK(sm_gallery_open_journaled(&g, gp));
    if (!g) return;
    pub p = {g, jp, 0, 0, 0, 0, 0, 0};
    sm_gallery_set_publish(g, pub_fn, &p);
    int64_t sizes[NOPS] = {3, 5, 4, 4, 2, 3, 3}; /* live items after each change of op() */
    for (int k = 0; k < NOPS; k++) {
        long before = fsize(jp);
        int64_t was = sm_gallery_size(g);
        p.begins = p.ends = 0;
        CHECK_OK(op(g, k));
        CHECK_MSG(p.begins == 1 && p.ends == 1 && p.depth == 0, "change %d: %d begins, %d ends", k, p.begins, p.ends);
        CHECK_MSG(p.jlen_at_begin > (before > 0 ? before : 0) && p.jlen_at_begin == fsize(jp),
                  "change %d: the record was not on disk before the change was published (%ld, then %ld)", k, before, p.jlen_at_begin);
        CHECK(p.size_at_begin == was && p.size_at_end == sizes[k]);
    }
    p.begins = p.ends = 0;
    CHECK_STATUS(sm_gallery_remove_item(g, 1), SM_ERR_NOTFOUND); /* already removed: nothing published */
    CHECK(p.begins == 0 && p.ends == 0);
    CHECK_OK(sm_gallery_compact(g));
    CHECK(p.begins == 1 && p.ends == 1 && p.size_at_end == 3);
    p.begins = 0;
    CHECK_OK(sm_gallery_checkpoint(g)); /* reads only */
    CHECK(p.begins == 0);
    sm_gallery_free(g);
    char lp[400];
    snprintf(lp, sizeof lp, "%s.tmp", gp); unlink(lp);
    unlink(jp); unlink(gp);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/simile_journal_XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    snprintf(gpath, sizeof gpath, "%s/g.smg", dir);
    snprintf(jpath, sizeof jpath, "%s.journal", gpath);
    sm_gallery *g, *h;
    CHECK_OK(sm_gallery_create(&g, D, SM_METRIC_L2, 0));
    CHECK_OK(sm_gallery_save(g, gpath));
    sm_gallery_free(g);
    long base = fsize(gpath);
    unsigned char *gfile0;
    size_t glen0;
    gfile0 = slurp(gpath, &glen0);

    /* every change goes to the journal; the gallery file stays as it was */
    long ends[NOPS + 1]; /* journal length after each record (ends[0]: the header alone) */
    CHECK_OK(sm_gallery_open_journaled(&g, gpath));
    CHECK(sm_gallery_journal_records(g) == 0);
    for (int k = 0; k < NOPS; k++) {
        CHECK_OK(op(g, k));
        ends[k + 1] = fsize(jpath);
        CHECK(sm_gallery_journal_records(g) == k + 1);
    }
    ends[0] = 28;
    CHECK(fsize(gpath) == base);
    for (int k = 0; k < NOPS; k++) CHECK(ends[k + 1] > ends[k]);
    /* a failed change writes no record */
    CHECK_STATUS(sm_gallery_remove_class(g, "nobody", NULL), SM_ERR_NOTFOUND);
    CHECK(sm_gallery_journal_records(g) == NOPS && fsize(jpath) == ends[NOPS]);
    sm_gallery *want_all = expect(NOPS);
    CHECK(want_all && same(g, want_all));
    sm_gallery_free(g);
    CHECK_OK(sm_gallery_open(&h, gpath));
    CHECK(h && same(h, want_all));
    sm_gallery_free(h);

    /* a crash at every byte boundary: the journal truncated to each length */
    size_t jlen;
    unsigned char *jfile = slurp(jpath, &jlen);
    CHECK(jfile && (long)jlen == ends[NOPS]);
    sm_gallery *want[NOPS + 1];
    for (int k = 0; k <= NOPS; k++) want[k] = expect(k);
    int bad = 0;
    for (size_t L = 0; jfile && L <= jlen; L++) {
        put(jpath, jfile, L);
        int k = 0;
        while (k < NOPS && (long)L >= ends[k + 1]) k++;
        sm_status st = sm_gallery_open(&h, gpath);
        if (st || !same(h, want[k])) { bad++; if (bad < 4) fprintf(stderr, "length %zu: %s\n", L, sm_errmsg()); }
        sm_gallery_free(h);
    }
    CHECK_MSG(bad == 0, "%d lengths replayed wrongly", bad);
    /* after a torn tail the next append cuts it off: reopen for writing in the middle of the
     * last record, add one, and the journal holds the complete records and the new one */
    put(jpath, jfile, (size_t)(ends[NOPS - 1] + (ends[NOPS] - ends[NOPS - 1]) / 2));
    CHECK_OK(sm_gallery_open_journaled(&g, gpath));
    CHECK(g && sm_gallery_journal_records(g) == NOPS - 1);
    CHECK_OK(op(g, NOPS - 1));
    sm_gallery_free(g);
    CHECK(fsize(jpath) == ends[NOPS]);
    CHECK_OK(sm_gallery_open(&h, gpath));
    CHECK(h && same(h, want_all));
    sm_gallery_free(h);

    /* a bad CRC: in the middle refused, in the last record ignored (torn) */
    if (jfile) {
        unsigned char *c = malloc(jlen);
        memcpy(c, jfile, jlen);
        c[ends[1] + 10] ^= 0x40; /* inside record 1 */
        put(jpath, c, jlen);
        CHECK_STATUS(sm_gallery_open(&h, gpath), SM_ERR_FORMAT);
        CHECK(strstr(sm_errmsg(), "checksum") != NULL);
        memcpy(c, jfile, jlen);
        c[jlen - 6] ^= 0x01; /* inside the last record */
        put(jpath, c, jlen);
        CHECK_OK(sm_gallery_open(&h, gpath));
        CHECK(h && same(h, want[NOPS - 1]));
        sm_gallery_free(h);
        memcpy(c, jfile, jlen);
        c[3] ^= 0x01; /* the header */
        put(jpath, c, jlen);
        CHECK_STATUS(sm_gallery_open(&h, gpath), SM_ERR_FORMAT);
        free(c);
    }

    /* checkpoint: the gallery file holds everything, the journal is empty */
    put(jpath, jfile, jlen);
    CHECK_OK(sm_gallery_open_journaled(&g, gpath));
    CHECK_OK(sm_gallery_checkpoint(g));
    CHECK(sm_gallery_journal_records(g) == 0 && fsize(jpath) == 0 && fsize(gpath) > base);
    /* a crash between the rename and the truncation leaves the old journal: not applied twice */
    put(jpath, jfile, jlen);
    CHECK_OK(sm_gallery_open(&h, gpath));
    CHECK(h && same(h, want_all));
    sm_gallery_free(h);
    /* opening it for writing empties the stale journal at once */
    {
        sm_gallery *w;
        CHECK_OK(sm_gallery_open_journaled(&w, gpath));
        CHECK(w && sm_gallery_journal_records(w) == 0 && fsize(jpath) == 0);
        sm_gallery_free(w);
    }
    /* ... and the next append starts a fresh journal on the new base */
    CHECK_OK(sm_gallery_add(g, (float[D]){1, 2, 3, 4, 5, 6}, 1, D, "dave", NULL, NULL));
    sm_gallery_free(g);
    CHECK(fsize(jpath) < ends[1] + 28);
    CHECK_OK(sm_gallery_open(&h, gpath));
    CHECK(h && sm_gallery_size(h) == sm_gallery_size(want_all) + 1 && sm_gallery_find_class(h, "dave") >= 0);
    sm_gallery_free(h);
    /* an unjournaled save (the whole state, journal included) empties the journal: its
     * records are not applied twice */
    CHECK_OK(sm_gallery_open(&h, gpath));
    CHECK_OK(sm_gallery_add(h, (float[D]){6, 5, 4, 3, 2, 1}, 1, D, "erin", NULL, NULL));
    CHECK_OK(sm_gallery_save(h, gpath));
    sm_gallery_free(h);
    CHECK(fsize(jpath) == 0);
    CHECK_OK(sm_gallery_open(&h, gpath));
    CHECK(h && sm_gallery_size(h) == sm_gallery_size(want_all) + 2);
    sm_gallery_free(h);
    (void)gfile0; (void)glen0;

    /* not journaled: checkpoint refused */
    CHECK_OK(sm_gallery_create(&g, D, SM_METRIC_L2, 0));
    CHECK_STATUS(sm_gallery_checkpoint(g), SM_ERR_INVALID);
    sm_gallery_free(g);

    /* the writer lock: trylock refuses a second writer, and succeeds once it is released */
    sm_lock *l1 = NULL, *l2 = NULL;
    CHECK_OK(sm_gallery_trylock(&l1, gpath));
    CHECK_STATUS(sm_gallery_trylock(&l2, gpath), SM_ERR_IO);
    CHECK(l2 == NULL && strstr(sm_errmsg(), "another process") != NULL);
    sm_lock_release(l1);
    CHECK_OK(sm_gallery_trylock(&l2, gpath));
    sm_lock_release(l2);

    test_publish();

    for (int k = 0; k <= NOPS; k++) sm_gallery_free(want[k]);
    sm_gallery_free(want_all);
    sm_free(jfile);
    sm_free(gfile0);
    char p[400];
    snprintf(p, sizeof p, "%s.lock", gpath); unlink(p);
    unlink(jpath); unlink(gpath); rmdir(dir);
    TEST_MAIN_END();
}
