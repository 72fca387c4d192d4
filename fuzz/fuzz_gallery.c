/* fuzz_gallery.c - libFuzzer target for the gallery file reader (sm_gallery_open).  Input: the
 * file without its trailing CRC-32, which the harness appends (fz_write_with_crc).  A gallery
 * that opens is searched, decided on, compacted, saved and opened again: the copy must hold
 * the same live items. */
#include "fuzz_common.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_path(0, "g.smg"), *back = fz_path(1, "b.smg");
    fz_write_with_crc(path, data, size); /* the input is the file without its CRC-32 */
    sm_gallery *g = NULL;
    sm_status st = sm_gallery_open(&g, path);
    FZ_ASSERT(fz_status_ok(st));
    FZ_ASSERT((st == SM_OK) == (g != NULL));
    if (!g) return 0;
    int d = sm_gallery_dim(g);
    int64_t n = sm_gallery_size(g);
    int nc = sm_gallery_num_classes(g);
    FZ_ASSERT(d >= 1 && n >= 0 && nc >= 0);
    for (int i = 0; i < nc; i++) {
        sm_gallery_class ci;
        FZ_ASSERT(sm_gallery_class_info(g, i, &ci) == SM_OK && ci.name && ci.items >= 0);
        if (!ci.removed) FZ_ASSERT(sm_gallery_find_class(g, ci.name) == i);
    }
    float *q = calloc((size_t)d, sizeof(float));
    q[0] = 1;
    sm_gallery_match mt[3];
    st = sm_gallery_search(g, q, 1, d, 3, mt);
    FZ_ASSERT(n == 0 ? st == SM_ERR_RANGE : st == SM_OK);
    for (int r = 0; r < 3; r++) {
        sm_gallery_decision dec;
        st = sm_gallery_decide(g, q, 1, d, (sm_decision_rule)r, 2, &dec);
        FZ_ASSERT(n == 0 ? st == SM_ERR_RANGE : st == SM_OK);
    }
    float *cd = calloc((size_t)(nc ? nc : 1), sizeof(float));
    st = sm_gallery_class_distances(g, q, 1, d, SM_RULE_CENTROID, cd);
    FZ_ASSERT(st == SM_OK || st == SM_ERR_RANGE);
    free(cd);
    free(q);
    FZ_ASSERT(sm_gallery_compact(g) == SM_OK);
    FZ_ASSERT(sm_gallery_size(g) == n);
    FZ_ASSERT(sm_gallery_save(g, back) == SM_OK);
    sm_gallery *g2 = NULL;
    FZ_ASSERT(sm_gallery_open(&g2, back) == SM_OK);
    FZ_ASSERT(sm_gallery_size(g2) == n && sm_gallery_dim(g2) == d);
    if (n > 0 && n * d <= (1 << 20)) {
        float *e1 = malloc((size_t)(n * d) * sizeof(float)), *e2 = malloc((size_t)(n * d) * sizeof(float));
        int64_t *i1 = malloc((size_t)n * sizeof(int64_t)), *i2 = malloc((size_t)n * sizeof(int64_t));
        sm_gallery_items(g, i1, NULL, e1);
        sm_gallery_items(g2, i2, NULL, e2);
        FZ_ASSERT(!memcmp(e1, e2, (size_t)(n * d) * sizeof(float)) && !memcmp(i1, i2, (size_t)n * sizeof(int64_t)));
        free(e1); free(e2); free(i1); free(i2);
    }
    sm_gallery_free(g2);
    sm_gallery_free(g);
    return 0;
}
