/* npy.c - NumPy .npy arrays: read float32/float64 and int32/int64 arrays (converted to float32
 * or int32) of 1 to 4 dimensions, C order, little-endian; write '<f4' / '<i4' version 1.0
 * files atomically.  The header dictionary is parsed strictly ({'descr': ..., 'fortran_order':
 * ..., 'shape': (...)}, every key once) and the payload length must match the shape exactly. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#define NPY_MAX_BYTES ((size_t)1 << 36)
#define NPY_MAX_ELEMS ((int64_t)1 << 33)

/* ---- header parsing ----------------------------------------------------------------------- */
typedef struct hparse { const char *p, *end; } hparse;

static void skip_ws(hparse *h) { while (h->p < h->end && (*h->p == ' ' || *h->p == '\t')) h->p++; }
static int accept(hparse *h, char ch) {
    skip_ws(h);
    if (h->p < h->end && *h->p == ch) { h->p++; return 1; }
    return 0;
}
/* A quoted string into buf (cap); 0 on error. */
static int parse_str(hparse *h, char *buf, size_t cap) {
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return 0;
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (n + 1 >= cap) return 0;
        buf[n++] = *h->p++;
    }
    if (h->p >= h->end) return 0;
    h->p++;
    buf[n] = 0;
    return 1;
}
static int parse_int(hparse *h, int64_t *v) {
    skip_ws(h);
    if (h->p >= h->end || *h->p < '0' || *h->p > '9') return 0;
    int64_t x = 0;
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
        if (x > (INT64_MAX - 9) / 10) return 0;
        x = x * 10 + (*h->p++ - '0');
    }
    if (h->p < h->end && *h->p == 'L') h->p++; /* Python 2 longs */
    *v = x;
    return 1;
}

typedef struct npy_header { char descr[16]; int fortran; int ndim; int64_t shape[4]; } npy_header;

static sm_status parse_header(const char *path, const char *text, size_t len, npy_header *out) {
    hparse h = {text, text + len};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (!accept(&h, '{')) return sm_fail(SM_ERR_FORMAT, "%s: .npy header is not a dictionary", path);
    while (!accept(&h, '}')) {
        char key[32];
        if (!parse_str(&h, key, sizeof key) || !accept(&h, ':'))
            return sm_fail(SM_ERR_FORMAT, "%s: .npy header: expected a quoted key and ':'", path);
        if (!strcmp(key, "descr")) {
            if (have_descr++ || !parse_str(&h, out->descr, sizeof out->descr))
                return sm_fail(SM_ERR_FORMAT, "%s: .npy header: bad or repeated 'descr'", path);
        } else if (!strcmp(key, "fortran_order")) {
            skip_ws(&h);
            if (have_fortran++) return sm_fail(SM_ERR_FORMAT, "%s: .npy header: repeated 'fortran_order'", path);
            if (h.end - h.p >= 4 && !memcmp(h.p, "True", 4)) { out->fortran = 1; h.p += 4; }
            else if (h.end - h.p >= 5 && !memcmp(h.p, "False", 5)) { out->fortran = 0; h.p += 5; }
            else return sm_fail(SM_ERR_FORMAT, "%s: .npy header: 'fortran_order' is not True or False", path);
        } else if (!strcmp(key, "shape")) {
            if (have_shape++ || !accept(&h, '('))
                return sm_fail(SM_ERR_FORMAT, "%s: .npy header: bad or repeated 'shape'", path);
            out->ndim = 0;
            while (!accept(&h, ')')) {
                int64_t v;
                if (out->ndim >= 4) return sm_fail(SM_ERR_FORMAT, "%s: more than 4 dimensions", path);
                if (!parse_int(&h, &v)) return sm_fail(SM_ERR_FORMAT, "%s: .npy header: bad shape", path);
                out->shape[out->ndim++] = v;
                if (!accept(&h, ',')) {
                    if (!accept(&h, ')')) return sm_fail(SM_ERR_FORMAT, "%s: .npy header: bad shape", path);
                    break;
                }
            }
        } else {
            return sm_fail(SM_ERR_FORMAT, "%s: .npy header: unknown key '%s'", path, key);
        }
        if (!accept(&h, ',')) {
            if (!accept(&h, '}')) return sm_fail(SM_ERR_FORMAT, "%s: .npy header: expected ',' or '}'", path);
            break;
        }
    }
    while (h.p < h.end && (*h.p == ' ' || *h.p == '\n' || *h.p == '\t' || *h.p == '\0')) h.p++;
    if (h.p != h.end) return sm_fail(SM_ERR_FORMAT, "%s: .npy header: junk after the dictionary", path);
    if (!have_descr || !have_fortran || !have_shape)
        return sm_fail(SM_ERR_FORMAT, "%s: .npy header lacks 'descr', 'fortran_order' or 'shape'", path);
    return SM_OK;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

sm_status sm_npy_read(const char *path, sm_npy_dtype dtype, void **data, int64_t shape[4], int *ndim) {
    if (!data || !shape || !ndim || !path) return sm_fail(SM_ERR_INVALID, "sm_npy_read: NULL argument");
    *data = NULL;
    if (dtype != SM_NPY_F32 && dtype != SM_NPY_I32) return sm_fail(SM_ERR_INVALID, "sm_npy_read: bad dtype %d", (int)dtype);
    unsigned char *buf;
    size_t len;
    sm_status st = sm_read_file(path, NPY_MAX_BYTES, &buf, &len);
    if (st) return st;
    npy_header hd;
    memset(&hd, 0, sizeof hd);
    size_t hlen = 0, off = 0;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) { st = sm_fail(SM_ERR_FORMAT, "%s: not a .npy file (bad magic)", path); goto done; }
    if (buf[6] == 1) { hlen = (size_t)le(buf + 8, 2); off = 10; }
    else if (buf[6] == 2 || buf[6] == 3) {
        if (len < 12) { st = sm_fail(SM_ERR_FORMAT, "%s: truncated .npy header", path); goto done; }
        hlen = (size_t)le(buf + 8, 4); off = 12;
    } else { st = sm_fail(SM_ERR_FORMAT, "%s: .npy format version %d.%d is not supported", path, buf[6], buf[7]); goto done; }
    if (hlen > len - off) { st = sm_fail(SM_ERR_FORMAT, "%s: truncated .npy header", path); goto done; }
    if ((st = parse_header(path, (const char *)buf + off, hlen, &hd))) goto done;
    off += hlen;
    if (hd.fortran) { st = sm_fail(SM_ERR_FORMAT, "%s: Fortran-order arrays are not supported (save C order)", path); goto done; }
    if (hd.ndim < 1) { st = sm_fail(SM_ERR_FORMAT, "%s: a 0-dimensional array", path); goto done; }
    int src_float = !strcmp(hd.descr, "<f4") || !strcmp(hd.descr, "<f8");
    int src_int = !strcmp(hd.descr, "<i4") || !strcmp(hd.descr, "<i8");
    size_t isz = hd.descr[2] == '8' ? 8 : 4;
    if ((dtype == SM_NPY_F32 && !src_float) || (dtype == SM_NPY_I32 && !src_int)) {
        st = sm_fail(SM_ERR_FORMAT, "%s: dtype '%s', expected %s", path, hd.descr,
                     dtype == SM_NPY_F32 ? "float32 '<f4' (or '<f8')" : "int32 '<i4' (or '<i8')");
        goto done;
    }
    int64_t count = 1;
    for (int i = 0; i < hd.ndim; i++) {
        if (hd.shape[i] > NPY_MAX_ELEMS || (hd.shape[i] && count > NPY_MAX_ELEMS / hd.shape[i])) {
            st = sm_fail(SM_ERR_RANGE, "%s: array too large", path);
            goto done;
        }
        count *= hd.shape[i];
    }
    if ((uint64_t)(len - off) != (uint64_t)count * isz) {
        st = sm_fail(SM_ERR_FORMAT, "%s: %zu data bytes, the shape needs %llu (%s)", path, len - off,
                     (unsigned long long)count * isz, (uint64_t)(len - off) < (uint64_t)count * isz ? "truncated" : "trailing bytes");
        goto done;
    }
    void *res = sm_alloc((size_t)(count ? count : 1), 4); /* (count) float32 or int32 */
    if (!res) { st = SM_ERR_NOMEM; goto done; }
    const unsigned char *p = buf + off;
    for (int64_t i = 0; i < count; i++, p += isz) {
        if (dtype == SM_NPY_F32) {
            float v;
            if (isz == 4) memcpy(&v, p, 4);
            else { double dv; memcpy(&dv, p, 8); v = (float)dv; }
            if (!sm_isfinite_f(v)) { st = sm_fail(SM_ERR_NUMERIC, "%s: value %lld is NaN or Inf (or overflows float32)", path, (long long)i); break; }
            ((float *)res)[i] = v;
        } else {
            int64_t v;
            if (isz == 4) { int32_t w; memcpy(&w, p, 4); v = w; }
            else memcpy(&v, p, 8);
            if (v < INT32_MIN || v > INT32_MAX) { st = sm_fail(SM_ERR_RANGE, "%s: value %lld at %lld does not fit int32", path, (long long)v, (long long)i); break; }
            ((int32_t *)res)[i] = (int32_t)v;
        }
    }
    if (st) { sm_free(res); goto done; }
    *data = res;
    *ndim = hd.ndim;
    for (int i = 0; i < 4; i++) shape[i] = i < hd.ndim ? hd.shape[i] : 1;
done:
    sm_free(buf);
    return st;
}

sm_status sm_npy_write(const char *path, sm_npy_dtype dtype, const void *data, const int64_t *shape, int ndim) {
    if (!path || !shape || (!data)) return sm_fail(SM_ERR_INVALID, "sm_npy_write: NULL argument");
    if (dtype != SM_NPY_F32 && dtype != SM_NPY_I32) return sm_fail(SM_ERR_INVALID, "sm_npy_write: bad dtype %d", (int)dtype);
    if (ndim < 1 || ndim > 4) return sm_fail(SM_ERR_INVALID, "sm_npy_write: ndim = %d outside 1..4", ndim);
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     dtype == SM_NPY_F32 ? "<f4" : "<i4");
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return sm_fail(SM_ERR_INVALID, "sm_npy_write: negative dimension");
        count *= shape[i];
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
    }
    if (ndim > 1) n--; /* (a, b) rather than (a, b,) */
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* pad with spaces so that magic + length + header is a multiple of 64, ending in '\n' */
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    int hlen = n + pad + 1;
    pre[8] = (unsigned char)hlen;
    pre[9] = (unsigned char)(hlen >> 8);
    sm_afile f;
    sm_status st = sm_afile_open(&f, path);
    if (st) return st;
    st = sm_afile_write(&f, pre, 10);
    if (!st) st = sm_afile_write(&f, dict, (size_t)n);
    for (int i = 0; i < pad && !st; i++) st = sm_afile_write(&f, " ", 1);
    if (!st) st = sm_afile_write(&f, "\n", 1);
    if (!st && count) st = sm_afile_write(&f, data, (size_t)count * 4); /* little-endian hosts */
    if (st) { sm_afile_abort(&f); return st; }
    return sm_afile_commit(&f);
}
