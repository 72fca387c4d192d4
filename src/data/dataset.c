/* dataset.c - the in-memory dataset: construction from caller arrays, accessors, class
 * filtering, normalisation, the first-k-per-class subset, and parsing of class lists such as
 * "0-4,8".  Operations that modify a dataset validate everything first, so that a failure
 * leaves the dataset as it was. */
#include "data/data.h"
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Index of v in the sorted array a (k), or -1. */
static int64_t find_sorted(const int32_t *a, int64_t k, int32_t v) {
    int64_t lo = 0, hi = k;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo < k && a[lo] == v ? lo : -1;
}

/* Values per sample h * w * c, or -1 (message set) if the shape is invalid or too large for n
 * samples to be addressed. */
static int64_t sample_size(const char *fn, int64_t n, int h, int w, int c) {
    if (h <= 0 || w <= 0 || c <= 0) {
        sm_fail(SM_ERR_INVALID, "%s: shape %d x %d x %d must be positive", fn, h, w, c);
        return -1;
    }
    int64_t d = (int64_t)h * w;
    if (d > INT64_MAX / c) { sm_fail(SM_ERR_INVALID, "%s: shape too large", fn); return -1; }
    d *= c;
    if (n > 0 && (uint64_t)d > (uint64_t)(SIZE_MAX / sizeof(float)) / (uint64_t)n) {
        sm_fail(SM_ERR_INVALID, "%s: %lld samples of %lld values are too large", fn,
                (long long)n, (long long)d);
        return -1;
    }
    return d;
}

/* A new dataset of n samples of shape (h, w, c) with uninitialised buffers. */
static sm_dataset *dataset_new(int64_t n, int h, int w, int c, int64_t d) {
    sm_dataset *ds = sm_calloc(1, sizeof *ds);
    if (!ds) return NULL;
    ds->n = n; ds->h = h; ds->w = w; ds->c = c;
    ds->x = sm_alloc((size_t)(n * d), sizeof(float)); /* (n, h, w, c) */
    ds->y = sm_alloc((size_t)n, sizeof(int32_t));     /* (n) */
    if (!ds->x || !ds->y) { sm_dataset_free(ds); return NULL; }
    return ds;
}

sm_status sm_dataset_from_arrays(sm_dataset **out, const float *x, const int32_t *labels,
                                 int64_t n, int h, int w, int c) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_dataset_from_arrays: out is NULL");
    *out = NULL;
    if (n < 0) return sm_fail(SM_ERR_INVALID, "sm_dataset_from_arrays: n = %lld is negative", (long long)n);
    if (n > 0 && (!x || !labels))
        return sm_fail(SM_ERR_INVALID, "sm_dataset_from_arrays: x and labels must not be NULL");
    int64_t d = sample_size("sm_dataset_from_arrays", n, h, w, c);
    if (d < 0) return SM_ERR_INVALID;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0)
            return sm_fail(SM_ERR_RANGE, "sm_dataset_from_arrays: label %d of sample %lld is negative",
                           (int)labels[i], (long long)i);
    int64_t total = n * d;
    if (!sm_all_finite(x, total)) {
        int64_t i = 0;
        while (i < total && sm_isfinite_f(x[i])) i++;
        return sm_fail(SM_ERR_NUMERIC, "sm_dataset_from_arrays: non-finite value at sample %lld "
                       "(value index %lld)", (long long)(i / d), (long long)i);
    }
    sm_dataset *ds = dataset_new(n, h, w, c, d);
    if (!ds) return SM_ERR_NOMEM;
    if (n > 0) {
        memcpy(ds->x, x, (size_t)total * sizeof(float));
        memcpy(ds->y, labels, (size_t)n * sizeof(int32_t));
    }
    *out = ds;
    return SM_OK;
}

void sm_dataset_free(sm_dataset *ds) {
    if (!ds) return;
    sm_free(ds->x);
    sm_free(ds->y);
    sm_free(ds->paths);
    sm_free(ds->cache_x);
    sm_free(ds->cached);
    sm_free(ds);
}

int64_t sm_dataset_size(const sm_dataset *ds) { return ds ? ds->n : 0; }

void sm_dataset_shape(const sm_dataset *ds, int *h, int *w, int *c) {
    if (h) *h = ds ? ds->h : 0;
    if (w) *w = ds ? ds->w : 0;
    if (c) *c = ds ? ds->c : 0;
}

int sm_dataset_num_classes(const sm_dataset *ds) {
    if (!ds || ds->n <= 0 || !ds->y) return 0;
    int32_t mx = -1;
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->y[i] > mx) mx = ds->y[i];
    return mx == INT32_MAX ? INT_MAX : (int)mx + 1; /* clamp: INT32_MAX + 1 is not an int */
}

const float *sm_dataset_images(const sm_dataset *ds) { return ds ? ds->x : NULL; }
const int32_t *sm_dataset_labels(const sm_dataset *ds) { return ds ? ds->y : NULL; }

sm_status sm_dataset_filter_classes(sm_dataset *ds, const int32_t *classes, int nclasses) {
    if (!ds) return sm_fail(SM_ERR_INVALID, "sm_dataset_filter_classes: dataset is NULL");
    if (ds->paths) return sm_fail(SM_ERR_UNSUPPORTED, "sm_dataset_filter_classes: the dataset is streamed from its files");
    if (!classes || nclasses <= 0)
        return sm_fail(SM_ERR_INVALID, "sm_dataset_filter_classes: the class list is empty");
    for (int i = 0; i < nclasses; i++)
        if (classes[i] < 0)
            return sm_fail(SM_ERR_RANGE, "sm_dataset_filter_classes: class %d is negative",
                           (int)classes[i]);
    int32_t *keys = sm_alloc((size_t)nclasses, sizeof(int32_t)); /* (nclasses) sorted, unique */
    int64_t *count = sm_calloc((size_t)nclasses, sizeof(int64_t)); /* (nclasses) per key */
    if (!keys || !count) { sm_free(keys); sm_free(count); return SM_ERR_NOMEM; }
    memcpy(keys, classes, (size_t)nclasses * sizeof(int32_t));
    qsort(keys, (size_t)nclasses, sizeof(int32_t), cmp_i32);
    int64_t k = 0;
    for (int i = 0; i < nclasses; i++)
        if (k == 0 || keys[k - 1] != keys[i]) keys[k++] = keys[i];
    int64_t kept = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        int64_t j = find_sorted(keys, k, ds->y[i]);
        if (j >= 0) { count[j]++; kept++; }
    }
    for (int i = 0; i < nclasses; i++) { /* report the first empty class in the caller's order */
        if (count[find_sorted(keys, k, classes[i])] == 0) {
            sm_status st = sm_fail(SM_ERR_RANGE, "sm_dataset_filter_classes: class %d has no "
                                   "samples (empty class)", (int)classes[i]);
            sm_free(keys); sm_free(count);
            return st;
        }
    }
    int64_t d = (int64_t)ds->h * ds->w * ds->c;
    float *nx = sm_alloc((size_t)(kept * d), sizeof(float)); /* (kept, h, w, c) */
    int32_t *ny = sm_alloc((size_t)kept, sizeof(int32_t));   /* (kept) */
    if (!nx || !ny) { sm_free(nx); sm_free(ny); sm_free(keys); sm_free(count); return SM_ERR_NOMEM; }
    int64_t o = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        if (find_sorted(keys, k, ds->y[i]) < 0) continue;
        memcpy(nx + o * d, ds->x + i * d, (size_t)d * sizeof(float));
        ny[o++] = ds->y[i];
    }
    sm_free(ds->x); sm_free(ds->y);
    ds->x = nx; ds->y = ny; ds->n = kept;
    sm_free(keys); sm_free(count);
    return SM_OK;
}

sm_status sm_dataset_normalize(sm_dataset *ds, float mean, float std) {
    if (!ds) return sm_fail(SM_ERR_INVALID, "sm_dataset_normalize: dataset is NULL");
    if (ds->paths) return sm_fail(SM_ERR_UNSUPPORTED, "sm_dataset_normalize: the dataset is streamed from its files");
    if (!sm_isfinite_f(std) || !(std > 0.0f))
        return sm_fail(SM_ERR_INVALID, "sm_dataset_normalize: std = %g must be positive and finite",
                       (double)std);
    if (!sm_isfinite_f(mean))
        return sm_fail(SM_ERR_INVALID, "sm_dataset_normalize: mean = %g must be finite", (double)mean);
    int64_t total = ds->n * ds->h * ds->w * ds->c;
    /* first pass: a tiny std could overflow; refuse before touching the data */
    for (int64_t i = 0; i < total; i++)
        if (!sm_isfinite_f((ds->x[i] - mean) / std))
            return sm_fail(SM_ERR_NUMERIC, "sm_dataset_normalize: (x - %g) / %g overflows at value %lld",
                           (double)mean, (double)std, (long long)i);
    for (int64_t i = 0; i < total; i++) ds->x[i] = (ds->x[i] - mean) / std;
    return SM_OK;
}

sm_status sm_dataset_normalize_channels(sm_dataset *ds, const float *mean, const float *std) {
    if (!ds || !mean || !std) return sm_fail(SM_ERR_INVALID, "sm_dataset_normalize_channels: NULL argument");
    if (ds->paths) return sm_fail(SM_ERR_UNSUPPORTED, "sm_dataset_normalize_channels: the dataset is streamed from its files");
    const int c = ds->c;
    for (int k = 0; k < c; k++) {
        if (!sm_isfinite_f(std[k]) || !(std[k] > 0.0f))
            return sm_fail(SM_ERR_INVALID, "sm_dataset_normalize_channels: std = %g of channel %d must be positive "
                           "and finite", (double)std[k], k);
        if (!sm_isfinite_f(mean[k]))
            return sm_fail(SM_ERR_INVALID, "sm_dataset_normalize_channels: mean = %g of channel %d must be finite",
                           (double)mean[k], k);
    }
    int64_t total = ds->n * ds->h * ds->w * c;
    for (int64_t i = 0; i < total; i++) /* first pass: refuse an overflow before touching the data */
        if (!sm_isfinite_f((ds->x[i] - mean[i % c]) / std[i % c]))
            return sm_fail(SM_ERR_NUMERIC, "sm_dataset_normalize_channels: (x - %g) / %g overflows at value %lld "
                           "(channel %d)", (double)mean[i % c], (double)std[i % c], (long long)i, (int)(i % c));
    for (int64_t i = 0; i < total; i++) ds->x[i] = (ds->x[i] - mean[i % c]) / std[i % c];
    return SM_OK;
}

sm_status sm_dataset_first_per_class(sm_dataset **out, const sm_dataset *ds, int per_class) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_dataset_first_per_class: out is NULL");
    *out = NULL;
    if (!ds) return sm_fail(SM_ERR_INVALID, "sm_dataset_first_per_class: dataset is NULL");
    if (ds->paths) return sm_fail(SM_ERR_UNSUPPORTED, "sm_dataset_first_per_class: the dataset is streamed from its files");
    if (per_class <= 0)
        return sm_fail(SM_ERR_INVALID, "sm_dataset_first_per_class: per_class = %d must be positive",
                       per_class);
    int64_t n = ds->n, d = (int64_t)ds->h * ds->w * ds->c;
    int32_t *keys = sm_alloc((size_t)(n > 0 ? n : 1), sizeof(int32_t));   /* (n) sorted labels */
    int64_t *count = sm_calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t)); /* (k) per class */
    if (!keys || !count) { sm_free(keys); sm_free(count); return SM_ERR_NOMEM; }
    if (n > 0) memcpy(keys, ds->y, (size_t)n * sizeof(int32_t));
    qsort(keys, (size_t)n, sizeof(int32_t), cmp_i32);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (k == 0 || keys[k - 1] != keys[i]) keys[k++] = keys[i];
    for (int64_t i = 0; i < n; i++) count[find_sorted(keys, k, ds->y[i])]++;
    for (int64_t j = 0; j < k; j++) {
        if (count[j] < per_class) {
            sm_status st = sm_fail(SM_ERR_RANGE, "sm_dataset_first_per_class: class %d has %lld "
                                   "samples, fewer than %d", (int)keys[j], (long long)count[j],
                                   per_class);
            sm_free(keys); sm_free(count);
            return st;
        }
    }
    sm_dataset *res = dataset_new(k * per_class, ds->h, ds->w, ds->c, d);
    if (!res) { sm_free(keys); sm_free(count); return SM_ERR_NOMEM; }
    memset(count, 0, (size_t)(k > 0 ? k : 1) * sizeof(int64_t)); /* now: taken so far */
    int64_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = find_sorted(keys, k, ds->y[i]);
        if (count[j] >= per_class) continue;
        count[j]++;
        memcpy(res->x + o * d, ds->x + i * d, (size_t)d * sizeof(float));
        res->y[o++] = ds->y[i];
    }
    sm_free(keys); sm_free(count);
    *out = res;
    return SM_OK;
}

/* ---- class lists ------------------------------------------------------------------------ */

/* Parse a non-negative decimal number at *p (after optional spaces); advances *p. */
static sm_status parse_num(const char *text, const char **p, int32_t *v) {
    const char *s = *p;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '-' && isdigit((unsigned char)s[1]))
        return sm_fail(SM_ERR_RANGE, "class list \"%s\": negative class at position %d", text,
                       (int)(s - text));
    if (!isdigit((unsigned char)*s))
        return sm_fail(SM_ERR_INVALID, "class list \"%s\": expected a class number at position %d",
                       text, (int)(s - text));
    int64_t x = 0;
    while (isdigit((unsigned char)*s)) {
        x = x * 10 + (*s - '0');
        if (x > INT32_MAX)
            return sm_fail(SM_ERR_RANGE, "class list \"%s\": class number too large", text);
        s++;
    }
    while (*s == ' ' || *s == '\t') s++;
    *p = s;
    *v = (int32_t)x;
    return SM_OK;
}

/* Walk the list; if dst is non-NULL write the classes there.  *count receives how many there
 * are; more than max is SM_ERR_RANGE (checked per item, before expanding a range). */
static sm_status walk_class_list(const char *text, int32_t *dst, int max, int64_t *count) {
    const char *p = text;
    int64_t cnt = 0;
    for (;;) {
        int32_t a, b;
        sm_status st = parse_num(text, &p, &a);
        if (st) return st;
        b = a;
        if (*p == '-') {
            p++;
            if ((st = parse_num(text, &p, &b))) return st;
            if (b < a)
                return sm_fail(SM_ERR_INVALID, "class list \"%s\": range %d-%d is reversed", text,
                               (int)a, (int)b);
        }
        int64_t items = (int64_t)b - a + 1;
        if (cnt + items > max)
            return sm_fail(SM_ERR_RANGE, "class list \"%s\": more than %d classes", text, max);
        if (dst)
            for (int64_t v = a; v <= b; v++) dst[cnt++] = (int32_t)v;
        else
            cnt += items;
        if (*p == ',') { p++; continue; }
        if (*p == 0) break;
        return sm_fail(SM_ERR_INVALID, "class list \"%s\": unexpected '%c' at position %d", text,
                       *p, (int)(p - text));
    }
    *count = cnt;
    return SM_OK;
}

sm_status sm_parse_class_list(const char *text, int32_t *classes, int max, int *n) {
    if (!text || !classes || !n || max <= 0)
        return sm_fail(SM_ERR_INVALID, "sm_parse_class_list: text, classes and n must be non-NULL "
                       "and max positive");
    int64_t cnt = 0;
    sm_status st = walk_class_list(text, NULL, max, &cnt); /* validate and count */
    if (st) return st;
    int32_t *tmp = sm_alloc((size_t)cnt, sizeof(int32_t));    /* (cnt) in list order */
    int32_t *sorted = sm_alloc((size_t)cnt, sizeof(int32_t)); /* (cnt) for duplicates */
    if (!tmp || !sorted) { sm_free(tmp); sm_free(sorted); return SM_ERR_NOMEM; }
    walk_class_list(text, tmp, max, &cnt);
    memcpy(sorted, tmp, (size_t)cnt * sizeof(int32_t));
    qsort(sorted, (size_t)cnt, sizeof(int32_t), cmp_i32);
    for (int64_t i = 1; i < cnt; i++) {
        if (sorted[i] == sorted[i - 1]) {
            st = sm_fail(SM_ERR_INVALID, "class list \"%s\": class %d appears more than once", text,
                         (int)sorted[i]);
            sm_free(tmp); sm_free(sorted);
            return st;
        }
    }
    memcpy(classes, tmp, (size_t)cnt * sizeof(int32_t));
    *n = (int)cnt;
    sm_free(tmp); sm_free(sorted);
    return SM_OK;
}
