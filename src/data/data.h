/* data.h - internal view of datasets (the struct behind sm_dataset) and batch augmentation. */
#ifndef SM_DATA_H
#define SM_DATA_H
#include "core/core.h"

struct sm_dataset {
    int64_t n;        /* number of samples */
    int h, w, c;      /* image shape; vectors are h = 1, w = d, c = 1 */
    float *x;         /* (n, h, w, c) */
    int32_t *y;       /* (n) labels >= 0 */
    /* a streamed dataset (sm_dataset_from_files): x is NULL, images are decoded on use */
    char **paths;     /* (n) image files, one block; NULL for an in-memory dataset */
    int norm;         /* normalise (x - mean) / std per channel after decoding */
    float mean[3], std[3];
    float *cache_x;   /* (n, h, w, c) decoded images kept, when caching; else NULL */
    unsigned char *cached; /* (n) 1 where cache_x holds image i */
};

/* Image i of ds (in memory, cached, or decoded and normalised now, then cached) into dst
 * (h, w, c).  Not thread-safe on a caching dataset: one thread (the prefetcher) at a time. */
sm_status sm_dataset_decode(sm_dataset *ds, int64_t i, float *dst);
/* The batches of a streamed dataset, decoded ahead on one worker thread into depth slots. */
typedef struct sm_prefetch sm_prefetch;
sm_status sm_prefetch_create(sm_prefetch **out, sm_dataset *ds, int batch, int depth);
/* Ask for batch `key` (samples idx (n)) to be decoded; nothing if no slot is free. */
void sm_prefetch_submit(sm_prefetch *p, uint64_t key, const int64_t *idx, int n);
/* Batch `key` into dst (n, h, w, c), waiting for it (queued now if it was not); frees its slot.
 * A file that cannot be decoded: its status and message. */
sm_status sm_prefetch_take(sm_prefetch *p, uint64_t key, const int64_t *idx, int n, float *dst);
void sm_prefetch_free(sm_prefetch *p);

/* In-place augmentation of a batch x (n, h, w, c): each image is shifted by a random (dy, dx)
 * in [-shift, shift] (vacated pixels set to `fill`) and, if flip, mirrored left-right with
 * probability 1/2.  Deterministic given rng's state. */
void sm_augment_batch(float *x, int n, int h, int w, int c, int shift, int flip, float fill,
                      sm_rng *rng);

/* Crop, jitter and erasing of a batch x (n, h, w, c) as sm_augment describes; mean, std (c) the
 * normalisation x has (jitter works on the [0, 1] values); image b draws from a generator
 * seeded by (seed, step, b).  scratch (n, h, w, c) when cropping.  Same bits for any thread
 * count. */
void sm_augment_batch_ex(float *x, int n, int h, int w, int c, const sm_augment *a, const float *mean, const float *std,
                         uint64_t seed, int64_t step, float *scratch);
int sm_augment_active(const sm_augment *a);
sm_status sm_augment_check(const sm_augment *a); /* SM_ERR_INVALID naming the bad value */
/* The pieces, for the tests.  A crop box (top, left, ch, cw) of an (h, w) image as
 * torchvision's RandomResizedCrop draws it (10 tries, then the central crop). */
void sm_aug_crop_box(sm_rng *r, int h, int w, float smin, float smax, float rmin, float rmax, int *top, int *left,
                     int *ch, int *cw);
/* The box (top, left, ch, cw) of src (sh, sw, c) resized bilinearly (half-pixel centres) into
 * dst (h, w, c); the whole image at the same size is an exact copy. */
void sm_aug_resize(const float *src, int sh, int sw, int c, int top, int left, int ch, int cw, float *dst, int h, int w);
/* Brightness fb, contrast fc, saturation fs (1 = unchanged) on img (npix, c) normalised by
 * mean, std (c): each step clamps to [0, 1] in the unnormalised values. */
void sm_aug_jitter(float *img, int64_t npix, int c, float fb, float fc, float fs, const float *mean, const float *std);
/* An erasing box as torchvision's RandomErasing draws it; 0 if 10 tries found none. */
int sm_aug_erase_box(sm_rng *r, int h, int w, float smin, float smax, float rmin, float rmax, int *top, int *left,
                     int *eh, int *ew);
void sm_aug_erase(float *img, int h, int w, int c, int top, int left, int eh, int ew, float value);

#endif
