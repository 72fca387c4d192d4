/* data.h - internal view of datasets (the struct behind sm_dataset) and batch augmentation. */
#ifndef SM_DATA_H
#define SM_DATA_H
#include "core/core.h"

struct sm_dataset {
    int64_t n;        /* number of samples */
    int h, w, c;      /* image shape; vectors are h = 1, w = d, c = 1 */
    float *x;         /* (n, h, w, c) */
    int32_t *y;       /* (n) labels >= 0 */
};

/* In-place augmentation of a batch x (n, h, w, c): each image is shifted by a random (dy, dx)
 * in [-shift, shift] (vacated pixels set to `fill`) and, if flip, mirrored left-right with
 * probability 1/2.  Deterministic given rng's state. */
void sm_augment_batch(float *x, int n, int h, int w, int c, int shift, int flip, float fill,
                      sm_rng *rng);

#endif
