/* augment.c - in-place training-time augmentation of image batches: random translation with
 * constant fill and random horizontal flip, driven only by the caller's RNG (deterministic).
 * Works row by row without a scratch buffer: a destination row is first filled from its source
 * row (a different row, visited in an order that never reads an overwritten row), then shifted
 * and/or mirrored within itself. */
#include "data/data.h"
#include <string.h>

/* Reverse the order of the w pixels (c channels each) of one row in place. */
static void row_reverse(float *row, int w, int c) {
    for (int a = 0, b = w - 1; a < b; a++, b--) {
        float *pa = row + (size_t)a * c, *pb = row + (size_t)b * c;
        for (int k = 0; k < c; k++) { float t = pa[k]; pa[k] = pb[k]; pb[k] = t; }
    }
}

/* out[j] = in[j - dx] within one row of w pixels (c channels), vacated pixels = fill. */
static void row_shift(float *row, int w, int c, int dx, float fill) {
    if (dx == 0) return;
    size_t cw = (size_t)w * c;
    if (dx >= w || dx <= -w) {
        for (size_t i = 0; i < cw; i++) row[i] = fill;
        return;
    }
    size_t s = (size_t)(dx > 0 ? dx : -dx) * c; /* shift in floats */
    if (dx > 0) {
        memmove(row + s, row, (cw - s) * sizeof(float));
        for (size_t i = 0; i < s; i++) row[i] = fill;
    } else {
        memmove(row, row + s, (cw - s) * sizeof(float));
        for (size_t i = cw - s; i < cw; i++) row[i] = fill;
    }
}

/* One image (h, w, c): out(i, j) = in(i - dy, j - dx), then mirrored left-right if flip. */
static void augment_one(float *img, int h, int w, int c, int dy, int dx, int flip, float fill) {
    size_t cw = (size_t)w * c;
    /* rows: visit so that the source row i - dy is never already overwritten */
    int start = dy > 0 ? h - 1 : 0, step = dy > 0 ? -1 : 1;
    for (int t = 0, i = start; t < h; t++, i += step) {
        float *row = img + (size_t)i * cw; /* (w, c) */
        long si = (long)i - dy;
        if (si < 0 || si >= h) {
            for (size_t k = 0; k < cw; k++) row[k] = fill;
            continue;
        }
        if (si != i) memcpy(row, img + (size_t)si * cw, cw * sizeof(float));
        if (flip) { /* flipped(j) = shifted(w-1-j) = in(w-1-j-dx): reverse, then shift by -dx */
            row_reverse(row, w, c);
            row_shift(row, w, c, -dx, fill);
        } else {
            row_shift(row, w, c, dx, fill);
        }
    }
}

void sm_augment_batch(float *x, int n, int h, int w, int c, int shift, int flip, float fill,
                      sm_rng *rng) {
    if (!x || !rng || n <= 0 || h <= 0 || w <= 0 || c <= 0 || shift < 0) return;
    if (shift == 0 && !flip) return;
    size_t per = (size_t)h * w * c;
    for (int b = 0; b < n; b++) {
        /* fixed draw order per image: dy, dx, flip */
        int dy = 0, dx = 0, f = 0;
        if (shift > 0) {
            uint64_t span = 2 * (uint64_t)shift + 1;
            dy = (int)((int64_t)sm_rng_below(rng, span) - shift);
            dx = (int)((int64_t)sm_rng_below(rng, span) - shift);
        }
        if (flip) f = (int)sm_rng_below(rng, 2);
        augment_one(x + (size_t)b * per, h, w, c, dy, dx, f, fill);
    }
}
