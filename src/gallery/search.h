/* search.h - internal entry points of the exact k-NN search (src/gallery/search.c), shared with
 * the evaluation module.  Not part of the public API. */
#ifndef SM_GALLERY_SEARCH_H
#define SM_GALLERY_SEARCH_H

#include "simile.h"

/* sm_knn_search with a generalised self exclusion: when self_offset >= 0, query i never matches
 * database row self_offset + i (used to evaluate a block of queries taken from the database
 * itself).  self_offset < 0 disables the exclusion.  Same results, errors and layout as
 * sm_knn_search: dist (nq, k), idx (nq, k), best first, unfilled slots idx -1. */
sm_status sm_knn_search_ex(const float *db, int64_t n, const float *q, int64_t nq, int d, int k,
                           sm_metric metric, int64_t self_offset, float *dist, int64_t *idx);

#endif
