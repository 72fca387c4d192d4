/* augment.c - in-place training-time augmentation of image batches: random translation with
 * constant fill and random horizontal flip, driven only by the caller's RNG (deterministic);
 * then (sm_augment_batch_ex) random resized crop, colour jitter and random erasing, each image
 * with its own generator seeded by (seed, step, index), on the library's threads.
 * Works row by row without a scratch buffer: a destination row is first filled from its source
 * row (a different row, visited in an order that never reads an overwritten row), then shifted
 * and/or mirrored within itself. */
#include "data/data.h"
#include <math.h>
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

/* ---- random resized crop, colour jitter, random erasing ----------------------------------- */
static int round_half_even(double v) { return (int)nearbyint(v); }

void sm_aug_crop_box(sm_rng *r, int h, int w, float smin, float smax, float rmin, float rmax, int *top, int *left,
                     int *ch, int *cw) {
    const double area = (double)h * w, lr0 = log(rmin), lr1 = log(rmax);
    for (int attempt = 0; attempt < 10; attempt++) { /* torchvision's RandomResizedCrop.get_params */
        double a = area * (smin + (smax - smin) * sm_rng_uniform(r));
        double ar = exp(lr0 + (lr1 - lr0) * sm_rng_uniform(r));
        int bw = round_half_even(sqrt(a * ar)), bh = round_half_even(sqrt(a / ar));
        if (bw > 0 && bw <= w && bh > 0 && bh <= h) {
            *top = (int)sm_rng_below(r, (uint64_t)(h - bh + 1));
            *left = (int)sm_rng_below(r, (uint64_t)(w - bw + 1));
            *ch = bh;
            *cw = bw;
            return;
        }
    }
    /* fallback: the central crop of the whole image, its ratio clamped to the range */
    double in_ratio = (double)w / h;
    int bw = w, bh = h;
    if (in_ratio < rmin) bh = round_half_even(bw / rmin);
    else if (in_ratio > rmax) bw = round_half_even(bh * rmax);
    if (bh < 1) bh = 1;
    if (bw < 1) bw = 1;
    if (bh > h) bh = h;
    if (bw > w) bw = w;
    *top = (h - bh) / 2;
    *left = (w - bw) / 2;
    *ch = bh;
    *cw = bw;
}

/* Source coordinate of output o when n source pixels from `start` fill m output pixels. */
static void crop_source(int o, int start, int n, int m, int *i0, int *i1, float *w1) {
    float f = ((float)o + 0.5f) * ((float)n / (float)m) - 0.5f;
    if (f < 0) f = 0;
    int a = (int)f;
    if (a > n - 1) a = n - 1;
    *i0 = start + a;
    *i1 = start + (a + 1 < n ? a + 1 : n - 1);
    *w1 = f - (float)a > 1 ? 1 : f - (float)a;
}

void sm_aug_resize(const float *src, int sh, int sw, int c, int top, int left, int ch, int cw, float *dst, int h, int w) {
    (void)sh;
    for (int y = 0; y < h; y++) {
        int y0, y1;
        float wy;
        crop_source(y, top, ch, h, &y0, &y1, &wy);
        for (int x = 0; x < w; x++) {
            int x0, x1;
            float wx;
            crop_source(x, left, cw, w, &x0, &x1, &wx);
            for (int k = 0; k < c; k++) {
                float a = src[((size_t)y0 * sw + x0) * c + k], b = src[((size_t)y0 * sw + x1) * c + k];
                float cc = src[((size_t)y1 * sw + x0) * c + k], d = src[((size_t)y1 * sw + x1) * c + k];
                float t = a + (b - a) * wx, u = cc + (d - cc) * wx;
                dst[((size_t)y * w + x) * c + k] = t + (u - t) * wy;
            }
        }
    }
}

static float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }
static float grey_of(const float *p, int c) { return c == 3 ? 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2] : p[0]; }

void sm_aug_jitter(float *img, int64_t npix, int c, float fb, float fc, float fs, const float *mean, const float *std) {
    for (int64_t i = 0; i < npix * c; i++) img[i] = img[i] * std[i % c] + mean[i % c]; /* to [0, 1] */
    if (fb != 1)
        for (int64_t i = 0; i < npix * c; i++) img[i] = clamp01(img[i] * fb);
    if (fc != 1) { /* towards the mean grey level of the image */
        double sum = 0;
        for (int64_t p = 0; p < npix; p++) sum += grey_of(img + p * c, c);
        float m = (float)(sum / (double)npix);
        for (int64_t i = 0; i < npix * c; i++) img[i] = clamp01(fc * img[i] + (1 - fc) * m);
    }
    if (fs != 1 && c == 3) /* towards each pixel's grey */
        for (int64_t p = 0; p < npix; p++) {
            float *q = img + p * c, g = grey_of(q, c);
            for (int k = 0; k < c; k++) q[k] = clamp01(fs * q[k] + (1 - fs) * g);
        }
    for (int64_t i = 0; i < npix * c; i++) img[i] = (img[i] - mean[i % c]) / std[i % c];
}

int sm_aug_erase_box(sm_rng *r, int h, int w, float smin, float smax, float rmin, float rmax, int *top, int *left,
                     int *eh, int *ew) {
    const double area = (double)h * w, lr0 = log(rmin), lr1 = log(rmax);
    for (int attempt = 0; attempt < 10; attempt++) { /* torchvision's RandomErasing.get_params */
        double a = area * (smin + (smax - smin) * sm_rng_uniform(r));
        double ar = exp(lr0 + (lr1 - lr0) * sm_rng_uniform(r));
        int bh = round_half_even(sqrt(a * ar)), bw = round_half_even(sqrt(a / ar));
        if (bh < h && bw < w && bh > 0 && bw > 0) {
            *top = (int)sm_rng_below(r, (uint64_t)(h - bh + 1));
            *left = (int)sm_rng_below(r, (uint64_t)(w - bw + 1));
            *eh = bh;
            *ew = bw;
            return 1;
        }
    }
    return 0;
}

void sm_aug_erase(float *img, int h, int w, int c, int top, int left, int eh, int ew, float value) {
    (void)h;
    for (int y = top; y < top + eh; y++)
        for (int x = left; x < left + ew; x++)
            for (int k = 0; k < c; k++) img[((size_t)y * w + x) * c + k] = value;
}

int sm_augment_active(const sm_augment *a) {
    return a && (a->crop_scale_max > 0 || a->brightness > 0 || a->contrast > 0 || a->saturation > 0 || a->erase_p > 0);
}

sm_status sm_augment_check(const sm_augment *a) {
    if (a->crop_scale_max > 0) {
        if (!(a->crop_scale_min > 0 && a->crop_scale_min <= a->crop_scale_max && a->crop_scale_max <= 1))
            return sm_fail(SM_ERR_INVALID, "crop scale %g-%g must satisfy 0 < min <= max <= 1", (double)a->crop_scale_min,
                           (double)a->crop_scale_max);
        if (!(a->crop_ratio_min > 0 && a->crop_ratio_min <= a->crop_ratio_max && a->crop_ratio_max < 100))
            return sm_fail(SM_ERR_INVALID, "crop ratio %g-%g must satisfy 0 < min <= max < 100", (double)a->crop_ratio_min,
                           (double)a->crop_ratio_max);
    }
    const float j[3] = {a->brightness, a->contrast, a->saturation};
    static const char *const jn[3] = {"brightness", "contrast", "saturation"};
    for (int k = 0; k < 3; k++)
        if (!(j[k] >= 0 && j[k] <= 10)) return sm_fail(SM_ERR_INVALID, "%s jitter %g must be in 0..10", jn[k], (double)j[k]);
    if (!(a->erase_p >= 0 && a->erase_p <= 1)) return sm_fail(SM_ERR_INVALID, "erasing probability %g must be in 0..1", (double)a->erase_p);
    if (a->erase_scale_max > 0 && !(a->erase_scale_min > 0 && a->erase_scale_min <= a->erase_scale_max && a->erase_scale_max < 1))
        return sm_fail(SM_ERR_INVALID, "erasing scale %g-%g must satisfy 0 < min <= max < 1", (double)a->erase_scale_min,
                       (double)a->erase_scale_max);
    if (a->erase_ratio_max > 0 && !(a->erase_ratio_min > 0 && a->erase_ratio_min <= a->erase_ratio_max && a->erase_ratio_max < 100))
        return sm_fail(SM_ERR_INVALID, "erasing ratio %g-%g must satisfy 0 < min <= max < 100", (double)a->erase_ratio_min,
                       (double)a->erase_ratio_max);
    return SM_OK;
}

/* splitmix64's finaliser: the per-image seeds. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One jitter factor: uniform in [max(0, 1 - s), 1 + s] (1 when s is 0: no draw). */
static float jitter_factor(sm_rng *r, float s) {
    if (s <= 0) return 1;
    float lo = 1 - s > 0 ? 1 - s : 0, hi = 1 + s;
    return lo + (hi - lo) * (float)sm_rng_uniform(r);
}

void sm_augment_batch_ex(float *x, int n, int h, int w, int c, const sm_augment *a, const float *mean, const float *std,
                         uint64_t seed, int64_t step, float *scratch) {
    if (!x || !a || n <= 0 || !sm_augment_active(a)) return;
    const size_t per = (size_t)h * w * c;
    const float esmin = a->erase_scale_max > 0 ? a->erase_scale_min : 0.02f, esmax = a->erase_scale_max > 0 ? a->erase_scale_max : 0.33f;
    const float ermin = a->erase_ratio_max > 0 ? a->erase_ratio_min : 0.3f, ermax = a->erase_ratio_max > 0 ? a->erase_ratio_max : 3.3f;
    const uint64_t base = mix64(seed ^ mix64((uint64_t)step + 0x632be59bd9b4e019ull));
#pragma omp parallel for schedule(static) if ((size_t)n * per > 65536)
    for (int b = 0; b < n; b++) {
        float *img = x + (size_t)b * per; /* (h, w, c) */
        sm_rng r;
        sm_rng_seed(&r, mix64(base ^ ((uint64_t)b + 1)));
        /* fixed draw order per image: crop box, jitter factors, erase decision and box */
        if (a->crop_scale_max > 0) {
            int top, left, ch, cw;
            sm_aug_crop_box(&r, h, w, a->crop_scale_min, a->crop_scale_max, a->crop_ratio_min, a->crop_ratio_max, &top,
                            &left, &ch, &cw);
            float *tmp = scratch + (size_t)b * per; /* (h, w, c) */
            memcpy(tmp, img, per * sizeof(float));
            sm_aug_resize(tmp, h, w, c, top, left, ch, cw, img, h, w);
        }
        if (a->brightness > 0 || a->contrast > 0 || a->saturation > 0) {
            float fb = jitter_factor(&r, a->brightness), fc = jitter_factor(&r, a->contrast), fs = jitter_factor(&r, a->saturation);
            sm_aug_jitter(img, (int64_t)h * w, c, fb, fc, fs, mean, std);
        }
        if (a->erase_p > 0 && sm_rng_uniform(&r) < a->erase_p) {
            int top, left, eh, ew;
            if (sm_aug_erase_box(&r, h, w, esmin, esmax, ermin, ermax, &top, &left, &eh, &ew))
                sm_aug_erase(img, h, w, c, top, left, eh, ew, 0.0f);
        }
    }
}
