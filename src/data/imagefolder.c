/* imagefolder.c - datasets from a folder of class sub-folders of images, and single images:
 * decoded with stb_image (Debian's libstb: PNG, JPEG, PGM/PPM, BMP), converted to 1 (grey) or
 * 3 (RGB) channels by stb, resized bilinearly (pixel centres aligned, as OpenCV's INTER_LINEAR)
 * to the model's (h, w) and scaled to [0, 1]; many files are decoded on the library's threads.  Class sub-folders are sorted bytewise and
 * numbered from 0; files inside are sorted too, so the result is deterministic. */
#define _POSIX_C_SOURCE 200809L
#include "data/data.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <omp.h>
#include <stb/stb_image.h>

#define MAX_CLASSES (1 << 20)
#define MAX_SIDE 65536
#define MAX_SOURCE_PIXELS ((int64_t)1 << 26) /* 8192 x 8192: a 58-byte BMP could ask for 2^28 */
#define MAX_FILE_BYTES ((size_t)1 << 30)

/* ---- single images ------------------------------------------------------------------------- */
/* Source position of output coordinate o when n source pixels are scaled by `scale` (source
 * pixels an output pixel, half-pixel centres): the two neighbours i0, i1 and the weight of i1. */
static void bilinear_source(int o, float scale, int n, int *i0, int *i1, float *w1) {
    float f = ((float)o + 0.5f) * scale - 0.5f;
    if (f < 0) f = 0;
    int a = (int)f;
    if (a > n - 1) a = n - 1;
    *i0 = a;
    *i1 = a + 1 < n ? a + 1 : n - 1;
    *w1 = f - (float)a > 1 ? 1 : f - (float)a;
}

/* Bilinear resize of src (ih, iw, c) bytes into dst (h, w, c) floats in [0, 1]. */
static void resize_bilinear(const unsigned char *src, int ih, int iw, int c, float *dst, int h, int w) {
    float sy = (float)ih / (float)h, sx = (float)iw / (float)w;
    for (int y = 0; y < h; y++) {
        int y0, y1;
        float wy;
        bilinear_source(y, sy, ih, &y0, &y1, &wy);
        for (int x = 0; x < w; x++) {
            int x0, x1;
            float wx;
            bilinear_source(x, sx, iw, &x0, &x1, &wx);
            for (int k = 0; k < c; k++) {
                float a = src[((int64_t)y0 * iw + x0) * c + k], b = src[((int64_t)y0 * iw + x1) * c + k];
                float cc = src[((int64_t)y1 * iw + x0) * c + k], d = src[((int64_t)y1 * iw + x1) * c + k];
                float top = a + (b - a) * wx, bot = cc + (d - cc) * wx;
                dst[((int64_t)y * w + x) * c + k] = (top + (bot - top) * wy) * (1.0f / 255.0f); /* as the IDX reader */
            }
        }
    }
}

/* The formats we decode, by their magic bytes: stb_image would otherwise also try GIF, PSD,
 * PIC, HDR and TGA (which has no magic), more code exposed to hostile files for nothing. */
static const char *image_kind(const unsigned char *b, size_t n) {
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return "png";
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return "jpeg";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "bmp";
    if (n >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) return "pnm";
    return NULL;
}

/* Every Huffman table of a JPEG must hold at most 256 codes.  stb_image 2.27 (Debian 12's
 * libstb) does not check this and writes past its code-length table (fixed upstream in 2.28;
 * found by fuzz_image): walk the markers and refuse such files before decoding. */
static int jpeg_tables_ok(const unsigned char *b, size_t n) {
    size_t i = 2;
    while (i + 4 <= n) {
        if (b[i] != 0xFF) { i++; continue; }        /* entropy-coded data */
        unsigned m = b[i + 1];
        if (m == 0xFF) { i++; continue; }           /* fill byte */
        if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
        if (m == 0xD9) break;                       /* end of image */
        size_t len = (size_t)b[i + 2] << 8 | b[i + 3];
        if (len < 2) return 0;
        if (m == 0xC4) { /* DHT: (class/id, 16 counts, symbols)+, read as stb reads it */
            size_t p = i + 4;
            long left = (long)len - 2;
            while (left > 0) {
                if (p + 17 > n || (b[p] >> 4) > 1 || (b[p] & 15) > 3) return 0;
                unsigned sum = 0;
                for (int k = 1; k <= 16; k++) sum += b[p + k];
                if (sum > 256) return 0;
                p += 17 + sum;
                left -= 17 + (long)sum;
            }
            if (left != 0) return 0; /* stb fails on these too, after building the table */
        }
        i += 2 + len;
    }
    return 1;
}

/* Every PNG chunk must fit in the file: stb_image 2.27 grows its IDAT buffer to the length a
 * chunk claims before reading it, so a 100-byte file could make it allocate 2 GiB (found by
 * fuzz_image).  A chunk longer than the rest of the file is a truncated or corrupt PNG anyway. */
static int png_chunks_ok(const unsigned char *b, size_t n) {
    size_t i = 8;
    while (i + 8 <= n) {
        uint64_t len = (uint64_t)b[i] << 24 | (uint64_t)b[i + 1] << 16 | (uint64_t)b[i + 2] << 8 | b[i + 3];
        if (len + 12 > n - i) return 0;
        if (!memcmp(b + i + 4, "IEND", 4)) break;
        i += 12 + (size_t)len;
    }
    return 1;
}

/* Binary PGM/PPM header: width, height and maxval read exactly as stb_image 2.27 reads them
 * (whitespace and '#' comments between them).  Refused: a 16-bit file (maxval > 255: stb 2.27
 * converts its channels with the 8-bit routine and reads past the buffer, fixed upstream in
 * 2.28; found by fuzz_image), a zero field, and numbers of 10 digits or more (stb's parser
 * overflows an int on them). */
static int pnm_header_ok(const unsigned char *b, size_t n) {
    size_t i = 2;
#define PNM_GET() (i < n ? (char)b[i++] : 0)
#define PNM_SPACE(ch) ((ch) == ' ' || (ch) == '\t' || (ch) == '\n' || (ch) == '\v' || (ch) == '\f' || (ch) == '\r')
    char ch = PNM_GET();
    long v[3];
    for (int f = 0; f < 3; f++) {
        for (;;) {
            while (i < n && PNM_SPACE(ch)) ch = PNM_GET();
            if (i >= n || ch != '#') break;
            while (i < n && ch != '\n' && ch != '\r') ch = PNM_GET();
        }
        long x = 0;
        int digits = 0;
        while (i < n && ch >= '0' && ch <= '9') {
            if (++digits > 9) return 0;
            x = x * 10 + (ch - '0');
            ch = PNM_GET();
        }
        v[f] = x;
    }
#undef PNM_GET
#undef PNM_SPACE
    return v[0] >= 1 && v[1] >= 1 && v[2] >= 1 && v[2] <= 255;
}

/* stb_image's failure reason, printable: it can quote bytes of the file (a chunk type). */
static const char *stb_reason(char *buf, size_t cap) {
    const char *r = stbi_failure_reason();
    size_t i = 0;
    for (; r && r[i] && i + 1 < cap; i++) buf[i] = r[i] >= 0x20 && r[i] < 0x7f ? r[i] : '?';
    buf[i] = 0;
    return buf;
}

/* The format checks sm_image_decode makes before decoding; the source size and channels. */
static sm_status image_check(const char *name, const unsigned char *buf, size_t len, int *iw, int *ih, int *comp) {
    if (len > MAX_FILE_BYTES) return sm_fail(SM_ERR_FORMAT, "%s: image file too large", name);
    const char *kind = image_kind(buf, len);
    if (!kind) return sm_fail(SM_ERR_FORMAT, "%s: not a PNG, JPEG, BMP or binary PGM/PPM image", name);
    if (!strcmp(kind, "jpeg") && !jpeg_tables_ok(buf, len))
        return sm_fail(SM_ERR_FORMAT, "%s: corrupt JPEG (a Huffman table of more than 256 codes)", name);
    if (!strcmp(kind, "png") && !png_chunks_ok(buf, len))
        return sm_fail(SM_ERR_FORMAT, "%s: truncated or corrupt PNG (a chunk longer than the file)", name);
    if (!strcmp(kind, "pnm") && !pnm_header_ok(buf, len))
        return sm_fail(SM_ERR_FORMAT, "%s: bad or 16-bit PGM/PPM header (8-bit binary P5/P6 only)", name);
    char why[64];
    if (len > INT32_MAX || !stbi_info_from_memory(buf, (int)len, iw, ih, comp))
        return sm_fail(SM_ERR_FORMAT, "%s: not a readable image (%s)", name, stb_reason(why, sizeof why));
    if (*iw < 1 || *ih < 1 || (int64_t)*iw * *ih > MAX_SOURCE_PIXELS)
        return sm_fail(SM_ERR_FORMAT, "%s: image of %dx%d pixels is too large or empty", name, *iw, *ih);
    return SM_OK;
}

sm_status sm_image_info(const char *path, int *h, int *w, int *c) {
    if (!path || !h || !w || !c) return sm_fail(SM_ERR_INVALID, "sm_image_info: NULL argument");
    *h = *w = *c = 0;
    unsigned char *buf;
    size_t len;
    sm_status st = sm_read_file(path, MAX_FILE_BYTES, &buf, &len);
    if (st) return st == SM_ERR_RANGE ? sm_fail(SM_ERR_FORMAT, "%s: image file too large", path) : st;
    int iw = 0, ih = 0, comp = 0;
    st = image_check(path, buf, len, &iw, &ih, &comp);
    sm_free(buf);
    if (st) return st;
    *h = ih;
    *w = iw;
    *c = comp >= 3 ? 3 : 1;
    return SM_OK;
}

sm_status sm_images_load(const char *const *paths, int64_t n, int h, int w, int c, float *x, sm_status *status) {
    if (n < 0 || (n > 0 && (!paths || !x))) return sm_fail(SM_ERR_INVALID, "sm_images_load: NULL argument or n < 0");
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE || (c != 1 && c != 3))
        return sm_fail(SM_ERR_INVALID, "sm_images_load: target shape %dx%dx%d (need 1 or 3 channels)", h, w, c);
    const int64_t per = (int64_t)h * w * c;
    int64_t first_bad = -1;
    sm_status first_st = SM_OK;
    /* each file into its own slot: the result is the same for any thread count; the first
     * failure (lowest index) is decoded again below for its message on this thread */
#pragma omp parallel for schedule(dynamic, 4) if (n > 8)
    for (int64_t i = 0; i < n; i++) {
        sm_status st = sm_image_load(paths[i], h, w, c, x + i * per);
        if (status) status[i] = st;
        if (st) {
#pragma omp critical(sm_images_load_bad)
            if (first_bad < 0 || i < first_bad) { first_bad = i; first_st = st; }
        }
    }
    if (first_bad < 0) return SM_OK;
    sm_status st = sm_image_load(paths[first_bad], h, w, c, x + first_bad * per);
    if (st) return st;
    return first_st == SM_ERR_NOMEM ? first_st : sm_fail(first_st, "%s: could not be read (then it could)", paths[first_bad]);
}

sm_status sm_image_load(const char *path, int h, int w, int c, float *x) {
    return sm_image_load_ex(path, h, w, c, x, NULL, NULL);
}

sm_status sm_image_load_ex(const char *path, int h, int w, int c, float *x, int *src_h, int *src_w) {
    if (src_h) *src_h = 0;
    if (src_w) *src_w = 0;
    if (!path || !x) return sm_fail(SM_ERR_INVALID, "sm_image_load: NULL argument");
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE || (c != 1 && c != 3))
        return sm_fail(SM_ERR_INVALID, "sm_image_load: target shape %dx%dx%d (need 1 or 3 channels)", h, w, c);
    unsigned char *buf;
    size_t len;
    sm_status st = sm_read_file(path, MAX_FILE_BYTES, &buf, &len);
    if (st) return st == SM_ERR_RANGE ? sm_fail(SM_ERR_FORMAT, "%s: image file too large", path) : st;
    st = sm_image_decode(path, buf, len, h, w, c, x, src_h, src_w);
    sm_free(buf);
    return st;
}

sm_status sm_image_decode(const char *name, const void *data, size_t len, int h, int w, int c, float *x,
                          int *src_h, int *src_w) {
    if (src_h) *src_h = 0;
    if (src_w) *src_w = 0;
    if (!name) name = "image";
    if (!data || !x) return sm_fail(SM_ERR_INVALID, "sm_image_decode: NULL argument");
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE || (c != 1 && c != 3))
        return sm_fail(SM_ERR_INVALID, "sm_image_decode: target shape %dx%dx%d (need 1 or 3 channels)", h, w, c);
    const unsigned char *buf = data;
    int iw = 0, ih = 0, comp = 0;
    sm_status st = image_check(name, buf, len, &iw, &ih, &comp);
    if (st) return st;
    unsigned char *px = stbi_load_from_memory(buf, (int)len, &iw, &ih, &comp, c);
    char why[64];
    if (!px) return sm_fail(SM_ERR_FORMAT, "%s: cannot decode the image (%s)", name, stb_reason(why, sizeof why));
    /* stb_image 2.27 returns a 0-pixel-wide (or -high) image for some PNM headers (fuzz_image) */
    if (iw < 1 || ih < 1 || (int64_t)iw * ih > MAX_SOURCE_PIXELS) {
        stbi_image_free(px);
        return sm_fail(SM_ERR_FORMAT, "%s: image of %dx%d pixels", name, iw, ih);
    }
    resize_bilinear(px, ih, iw, c, x, h, w);
    stbi_image_free(px);
    if (src_h) *src_h = ih;
    if (src_w) *src_w = iw;
    return SM_OK;
}

/* ---- folders ------------------------------------------------------------------------------- */
typedef struct strlist { char **v; size_t n, cap; } strlist;

static void strlist_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) sm_free(l->v[i]);
    sm_free(l->v);
    memset(l, 0, sizeof *l);
}
static sm_status strlist_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = sm_alloc(cap, sizeof(char *));
        if (!v) return SM_ERR_NOMEM;
        if (l->n) memcpy(v, l->v, l->n * sizeof(char *));
        sm_free(l->v);
        l->v = v;
        l->cap = cap;
    }
    char *c = sm_strdup(s);
    if (!c) return SM_ERR_NOMEM;
    l->v[l->n++] = c;
    return SM_OK;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    char ext[8];
    size_t n = strlen(dot + 1);
    if (n == 0 || n >= sizeof ext) return 0;
    for (size_t i = 0; i <= n; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    static const char *const ok[] = {"png", "jpg", "jpeg", "pgm", "ppm", "bmp"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) if (!strcmp(ext, ok[i])) return 1;
    return 0;
}

/* Sorted entries of dir: sub-folders (want_dirs) or image files. */
static sm_status list_dir(const char *dir, int want_dirs, strlist *out) {
    DIR *d = opendir(dir);
    if (!d) return sm_fail(SM_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    sm_status st = SM_OK;
    size_t plen = strlen(dir) + 2;
    while (!st && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *full = sm_alloc(plen + strlen(e->d_name), 1);
        if (!full) { st = SM_ERR_NOMEM; break; }
        snprintf(full, plen + strlen(e->d_name), "%s/%s", dir, e->d_name);
        struct stat sb;
        int isdir = stat(full, &sb) == 0 && S_ISDIR(sb.st_mode);
        int isfile = !isdir && is_image_name(e->d_name);
        sm_free(full);
        if (want_dirs ? isdir : isfile) st = strlist_push(out, e->d_name);
    }
    closedir(d);
    if (st) { strlist_free(out); return st; }
    if (out->n > 1) qsort(out->v, out->n, sizeof(char *), cmp_str);
    return SM_OK;
}

/* Strings v (n) copied into one malloc'd block: n pointers, then the strings. */
static char **pack_strings(char *const *v, size_t n) {
    size_t bytes = (n ? n : 1) * sizeof(char *);
    for (size_t k = 0; k < n; k++) bytes += strlen(v[k]) + 1;
    char **out = malloc(bytes);
    if (!out) return NULL;
    char *s = (char *)(out + n);
    for (size_t k = 0; k < n; k++) {
        size_t l = strlen(v[k]) + 1;
        memcpy(s, v[k], l);
        out[k] = s;
        s += l;
    }
    return out;
}

sm_status sm_folder_list(const char *dir, char ***paths, int32_t **labels, int64_t *count, char ***class_names,
                         int *num_classes) {
    if (!dir || !paths || !labels || !count) return sm_fail(SM_ERR_INVALID, "sm_folder_list: NULL argument");
    *paths = NULL;
    *labels = NULL;
    *count = 0;
    if (class_names) *class_names = NULL;
    if (num_classes) *num_classes = 0;
    strlist classes = {0}, all = {0};
    int32_t *y = NULL;
    sm_status st = list_dir(dir, 1, &classes);
    if (st) return st;
    if (classes.n == 0) { st = sm_fail(SM_ERR_RANGE, "%s: no class sub-folder", dir); goto done; }
    if (classes.n > MAX_CLASSES) { st = sm_fail(SM_ERR_RANGE, "%s: more than %d classes", dir, MAX_CLASSES); goto done; }
    size_t cap = 0;
    for (size_t k = 0; k < classes.n && !st; k++) {
        size_t len = strlen(dir) + strlen(classes.v[k]) + 2;
        char *sub = sm_alloc(len, 1);
        if (!sub) { st = SM_ERR_NOMEM; break; }
        snprintf(sub, len, "%s/%s", dir, classes.v[k]);
        strlist files = {0};
        st = list_dir(sub, 0, &files);
        if (!st && files.n == 0)
            st = sm_fail(SM_ERR_RANGE, "%s: class folder '%s' has no image (png, jpg, jpeg, pgm, ppm, bmp)", sub, classes.v[k]);
        for (size_t i = 0; !st && i < files.n; i++) {
            size_t l = len + strlen(files.v[i]) + 1;
            char *full = sm_alloc(l, 1);
            if (!full) { st = SM_ERR_NOMEM; break; }
            snprintf(full, l, "%s/%s", sub, files.v[i]);
            st = strlist_push(&all, full);
            sm_free(full);
            if (!st && all.n > cap) {
                size_t nc = cap ? cap * 2 : 64;
                int32_t *ny = malloc(nc * sizeof(int32_t));
                if (!ny) { st = SM_ERR_NOMEM; break; }
                if (cap) memcpy(ny, y, cap * sizeof(int32_t));
                free(y);
                y = ny;
                cap = nc;
            }
            if (!st) y[all.n - 1] = (int32_t)k;
        }
        strlist_free(&files);
        sm_free(sub);
    }
    if (!st && all.n > INT32_MAX) st = sm_fail(SM_ERR_RANGE, "%s: %zu images are too many", dir, all.n);
    if (st) goto done;
    char **p = pack_strings(all.v, all.n), **names = class_names ? pack_strings(classes.v, classes.n) : NULL;
    if (!p || (class_names && !names)) { free(p); free(names); st = SM_ERR_NOMEM; goto done; }
    *paths = p;
    *labels = y;
    y = NULL;
    *count = (int64_t)all.n;
    if (class_names) *class_names = names;
    if (num_classes) *num_classes = (int)classes.n;
done:
    free(y);
    strlist_free(&all);
    strlist_free(&classes);
    return st;
}

sm_status sm_dataset_load_folder(sm_dataset **out, const char *dir, int h, int w, int c,
                                 char ***class_names, int *num_classes) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_dataset_load_folder: out is NULL");
    *out = NULL;
    if (!dir) return sm_fail(SM_ERR_INVALID, "sm_dataset_load_folder: folder is NULL");
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE || (c != 1 && c != 3))
        return sm_fail(SM_ERR_INVALID, "sm_dataset_load_folder: target shape %dx%dx%d (need 1 or 3 channels)", h, w, c);
    char **paths = NULL, **names = NULL;
    int32_t *labels = NULL;
    int64_t n = 0;
    int nc = 0;
    sm_dataset *ds = NULL;
    sm_status st = sm_folder_list(dir, &paths, &labels, &n, class_names ? &names : NULL, &nc);
    if (st) return st;
    int64_t per = (int64_t)h * w * c;
    if (n * per > ((int64_t)1 << 34)) { st = sm_fail(SM_ERR_RANGE, "%s: %lld images are too many", dir, (long long)n); goto fail; }
    ds = sm_calloc(1, sizeof *ds);
    if (!ds) { st = SM_ERR_NOMEM; goto fail; }
    ds->n = n; ds->h = h; ds->w = w; ds->c = c;
    ds->x = sm_alloc((size_t)(n * per), sizeof(float)); /* (n, h, w, c) */
    ds->y = sm_alloc((size_t)n, sizeof(int32_t));       /* (n) */
    if (!ds->x || !ds->y) { st = SM_ERR_NOMEM; goto fail; }
    if ((st = sm_images_load((const char *const *)paths, n, h, w, c, ds->x, NULL))) goto fail;
    memcpy(ds->y, labels, (size_t)n * sizeof(int32_t));
    if (class_names) *class_names = names;
    if (num_classes) *num_classes = nc;
    free(paths);
    free(labels);
    *out = ds;
    return SM_OK;
fail:
    free(paths);
    free(labels);
    free(names);
    sm_dataset_free(ds);
    return st;
}
