/* gallery.h - the struct behind sm_gallery, shared by gallery.c (operations, search, decisions,
 * calibration) and gallery_file.c (the file format and the writer lock).  Not public. */
#ifndef SM_GALLERY_GALLERY_H
#define SM_GALLERY_GALLERY_H
#include "core/core.h"

#define SM_GALLERY_MAX_DIM 65536
#define SM_GALLERY_MAX_NAME 255
#define SM_GALLERY_MAX_CLASSES (1 << 24)
#define SM_GALLERY_MAX_ITEMS ((int64_t)1 << 31)
#define SM_GALLERY_MAX_SOURCE 4096

struct sm_gallery {
    int dim;
    sm_metric metric;
    uint32_t fingerprint;        /* model fingerprint, 0 = raw embeddings */
    float threshold;             /* open-set threshold on distances, +inf = accept all */
    sm_decision_rule threshold_rule;
    /* class table */
    int nclasses, cap_classes;
    char **names;                /* (cap_classes) owned strings */
    uint8_t *class_removed;      /* (cap_classes) 1 = removed */
    int64_t *class_live;         /* (cap_classes) live items per class */
    /* items, in storage (enrolment) order: slot i of n, ndead of them removed */
    int64_t n, cap, ndead;
    int32_t *cls;                /* (cap) class slot */
    int64_t *ids;                /* (cap) item ids */
    uint8_t *dead;               /* (cap) 1 = removed */
    char **src;                  /* (cap) owned item source names, NULL = none */
    int64_t *tms;                /* (cap) enrolment time, ms since 1970-01-01 UTC; 0 = unknown */
    int64_t *pos;                /* (cap) item slot -> packed row, -1 = removed */
    int ids_unsorted;            /* 1 once ids[] is not increasing (caller-given ids): removal
                                    by id scans instead of a binary search */
    /* the packed live rows the search runs over (live = n - ndead of them): a removal moves
     * the last row into the hole (O(dim)); ties are still broken by storage order (search) */
    float *emb;                  /* (cap, dim) live embeddings, row j is item slot prow[j] */
    int64_t *prow;               /* (cap) packed row -> item slot */
    int32_t *pcls;               /* (cap) packed row -> class slot */
    /* sm_gallery_set_publish: called around every change to what searches read */
    sm_gallery_publish_fn publish;
    void *publish_ctx;
    int64_t next_id;             /* greater than every id ever stored */
    uint64_t generation;         /* counts the changes to the live items (add, remove) */
    uint64_t calib_generation;   /* generation when the threshold was set */
    int64_t calib_items;         /* live items then; -1 unknown (a version-1 file) */
    /* journal (journal.c) */
    uint32_t file_crc;           /* CRC-32 stored in the gallery file this state was read from /
                                    last saved to (the journal's base) */
    char *jpath;                 /* "<gallery>.journal" when journaled (sm_gallery_open_journaled) */
    char *gpath;                 /* the gallery file then */
    int jfd;                     /* journal file descriptor, -1 = not open yet */
    int64_t jlen;                /* bytes of valid journal (header + complete records); 0 = none */
    int64_t jrecords;            /* complete records in it */
    int replaying;               /* 1 while records are applied: no new records */
    char errmsg[SM_ERRMSG_MAX];
};

/* Grow the class table / item arrays to hold at least the given counts (contents kept). */
sm_status sm_gallery_reserve(sm_gallery *g, int classes, int64_t items);
/* sm_gallery_add_sourced with enrolment times (n; NULL = now): the journal replays its own. */
sm_status sm_gallery_add_timed(sm_gallery *g, const float *emb, int64_t n, int d, const char *name,
                               const int64_t *ids, const char *const *sources, const int64_t *times,
                               int64_t *assigned);
/* The current time in ms since 1970-01-01 UTC. */
int64_t sm_gallery_now_ms(void);
/* 1 if name is a valid class name (1..255 bytes, no control characters). */
int sm_gallery_name_ok(const char *name, size_t len);
/* 1 if s (len bytes) is a valid item source name (0..4096 bytes, no NUL byte). */
int sm_gallery_source_ok(const char *s, size_t len);

/* journal.c: append one change record to the journal and fsync it, before the change is
 * applied (write-ahead).  SM_OK without writing anything when g is not journaled or is
 * replaying.  On failure the journal is as before and the caller leaves g unchanged. */
sm_status sm_journal_add(sm_gallery *g, const char *name, int64_t n, const int64_t *ids,
                         const float *emb, const char *const *src, const int64_t *times);
sm_status sm_journal_remove_class(sm_gallery *g, const char *name);
sm_status sm_journal_remove_item(sm_gallery *g, int64_t id);
sm_status sm_journal_rename_class(sm_gallery *g, const char *name, const char *new_name);
sm_status sm_journal_threshold(sm_gallery *g, float t, sm_decision_rule rule);
sm_status sm_journal_compact(sm_gallery *g);
/* Replay "<path>.journal" (if any) into g, read from path; sets jlen / jrecords. */
sm_status sm_journal_replay(sm_gallery *g, const char *path);
/* g was just saved to path with stored CRC crc: the journal's base changed (truncate it when
 * path is g's journaled gallery). */
void sm_journal_saved(sm_gallery *g, const char *path, uint32_t crc);
void sm_journal_close(sm_gallery *g);

#endif
