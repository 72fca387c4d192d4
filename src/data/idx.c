/* idx.c - loading of IDX image/label file pairs (the MNIST / Fashion-MNIST format), plain or
 * gzip-compressed.  Every header field is validated against fixed limits before anything is
 * allocated, payloads are streamed in chunks, and the payload length must match the header
 * exactly (a short file is "truncated", a long one has "trailing bytes").  For compressed files,
 * whose decompressed size is unknown up front, the output buffers grow as data actually arrives,
 * so a tiny file with a lying header cannot make us allocate gigabytes. */
#define _POSIX_C_SOURCE 200809L
#include "data/data.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAX_COUNT 2147483647u            /* n <= 2^31 - 1 */
#define IDX_MAX_SIDE 65536u                  /* h, w <= 65536 */
#define IDX_MAX_PIXELS (1ull << 32)          /* n * h * w <= 4 GiB of pixel bytes */
#define IDX_GROW_START ((size_t)1 << 22)     /* first buffer size (elements) for streams */
#define IDX_CHUNK 65536                      /* staging buffer for byte -> float conversion */

/* An open IDX file: the zlib reader (transparent for plain files) and what we know of it. */
typedef struct idx_file {
    gzFile gz;
    const char *path;
    int is_gzip;          /* content starts with 0x1f 0x8b */
    int size_known;       /* plain regular file: file_size is the exact byte count */
    uint64_t file_size;
} idx_file;

/* Map the zlib error state of f to a status with a message naming the file. */
static sm_status idx_gz_error(idx_file *f) {
    int errnum = Z_OK;
    const char *msg = gzerror(f->gz, &errnum);
    if (!msg) msg = "";
    if (strncmp(msg, "<fd:", 4) == 0 && strstr(msg, ": ")) msg = strstr(msg, ": ") + 2; /* gzdopen's name */
    switch (errnum) {
    case Z_ERRNO: return sm_fail(SM_ERR_IO, "%s: read error: %s", f->path, strerror(errno));
    case Z_MEM_ERROR: return sm_fail(SM_ERR_NOMEM, "%s: out of memory in zlib", f->path);
    case Z_BUF_ERROR:
        return sm_fail(SM_ERR_FORMAT, "%s: gzip stream ends unexpectedly (%s)", f->path, msg);
    default:
        return sm_fail(SM_ERR_FORMAT, "%s: corrupt gzip stream: %s", f->path, msg);
    }
}

static sm_status idx_open(idx_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sm_fail(SM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sm_fail(SM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return sm_fail(SM_ERR_IO, "%s: is a directory", path);
    }
    unsigned char m[2] = {0, 0};
    ssize_t k = S_ISREG(st.st_mode) ? pread(fd, m, 2, 0) : 0;
    f->is_gzip = k == 2 && m[0] == 0x1f && m[1] == 0x8b;
    f->size_known = S_ISREG(st.st_mode) && !f->is_gzip;
    f->file_size = (uint64_t)st.st_size;
    errno = 0;
    f->gz = gzdopen(fd, "rb"); /* transparent for plain files; takes ownership of fd */
    if (!f->gz) {
        int e = errno;
        close(fd);
        return e ? sm_fail(SM_ERR_IO, "%s: cannot open: %s", path, strerror(e))
                 : sm_fail(SM_ERR_NOMEM, "%s: out of memory opening the file", path);
    }
    gzbuffer(f->gz, 1u << 18);
    return SM_OK;
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Read up to len bytes into buf; *got receives the count.  A clean end of data (or a gzip
 * stream cut short) gives SM_OK with *got < len so that the caller can report the counts;
 * a corrupt stream or an I/O error is an error. */
static sm_status idx_read(idx_file *f, void *buf, size_t len, size_t *got) {
    unsigned char *p = buf;
    *got = 0;
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int r = gzread(f->gz, p, chunk);
        if (r < 0) return idx_gz_error(f);
        if (r == 0) break;
        p += r; *got += (size_t)r; len -= (size_t)r;
    }
    if (len > 0) {
        int errnum = Z_OK;
        gzerror(f->gz, &errnum);
        if (errnum != Z_OK && errnum != Z_BUF_ERROR) return idx_gz_error(f);
    }
    return SM_OK;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Read and validate the header of an IDX file of unsigned bytes with `ndims` dimensions
 * (1 for labels, 3 for images); dims (ndims) receives the sizes.  `what` names the kind. */
static sm_status idx_read_header(idx_file *f, int ndims, uint32_t dims[3], const char *what) {
    uint32_t want = 0x00000800u | (uint32_t)ndims;
    unsigned char hdr[4 + 4 * 3]; /* magic + up to 3 big-endian int32 dims */
    size_t got = 0;
    sm_status st = idx_read(f, hdr, 4, &got);
    if (st) return st;
    if (got < 4)
        return sm_fail(SM_ERR_FORMAT, "%s: truncated: %zu bytes, too short for an IDX %s header",
                       f->path, got, what);
    uint32_t magic = be32(hdr);
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08)
        return sm_fail(SM_ERR_FORMAT, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s, unsigned bytes)",
                       f->path, magic, want, what);
    if (hdr[3] != ndims)
        return sm_fail(SM_ERR_FORMAT, "%s: bad magic 0x%08x: %d dimensions, expected %d for IDX %s "
                       "(magic 0x%08x)", f->path, magic, hdr[3], ndims, what, want);
    st = idx_read(f, hdr + 4, 4 * (size_t)ndims, &got);
    if (st) return st;
    if (got < 4 * (size_t)ndims)
        return sm_fail(SM_ERR_FORMAT, "%s: truncated header: expected %d bytes, got %zu", f->path,
                       4 + 4 * ndims, 4 + got);
    for (int i = 0; i < ndims; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        if (dims[i] == 0)
            return sm_fail(SM_ERR_FORMAT, "%s: dimension %d of the header is 0", f->path, i);
    }
    if (dims[0] > IDX_MAX_COUNT)
        return sm_fail(SM_ERR_RANGE, "%s: header claims %u %s, more than the limit of %u", f->path,
                       dims[0], what, IDX_MAX_COUNT);
    if (ndims == 3) {
        if (dims[1] > IDX_MAX_SIDE || dims[2] > IDX_MAX_SIDE)
            return sm_fail(SM_ERR_RANGE, "%s: header claims images of %u x %u, beyond the limit of "
                           "%u per side", f->path, dims[1], dims[2], IDX_MAX_SIDE);
        uint64_t pixels = (uint64_t)dims[0] * dims[1] * dims[2]; /* < 2^63: no overflow */
        if (pixels > IDX_MAX_PIXELS)
            return sm_fail(SM_ERR_RANGE, "%s: header claims %u images of %u x %u = %llu pixel bytes, "
                           "more than the limit of %llu", f->path, dims[0], dims[1], dims[2],
                           (unsigned long long)pixels, (unsigned long long)IDX_MAX_PIXELS);
    }
    return SM_OK;
}

/* For plain regular files, compare the file size with header + payload before allocating. */
static sm_status idx_check_size(const idx_file *f, uint64_t header_bytes, uint64_t payload,
                                const char *what) {
    if (!f->size_known) return SM_OK;
    uint64_t want = header_bytes + payload;
    if (f->file_size < want)
        return sm_fail(SM_ERR_FORMAT, "%s: truncated %s: expected %llu bytes of data after the "
                       "%llu-byte header, got %llu", f->path, what, (unsigned long long)payload,
                       (unsigned long long)header_bytes,
                       (unsigned long long)(f->file_size - header_bytes));
    if (f->file_size > want)
        return sm_fail(SM_ERR_FORMAT, "%s: %llu trailing bytes after the expected %llu bytes of %s",
                       f->path, (unsigned long long)(f->file_size - want),
                       (unsigned long long)payload, what);
    return SM_OK;
}

/* After the payload: the stream must be at its end (this also makes zlib verify the gzip
 * trailer's CRC and length). */
static sm_status idx_expect_eof(idx_file *f, uint64_t payload, const char *what) {
    unsigned char buf[4096];
    uint64_t extra = 0;
    for (;;) {
        size_t got = 0;
        sm_status st = idx_read(f, buf, sizeof buf, &got);
        if (st) return st;
        extra += got;
        if (got < sizeof buf || extra >= (1u << 20)) break;
    }
    if (extra > 0)
        return sm_fail(SM_ERR_FORMAT, "%s: %s%llu trailing bytes after the expected %llu bytes of %s",
                       f->path, extra >= (1u << 20) ? "at least " : "", (unsigned long long)extra,
                       (unsigned long long)payload, what);
    return SM_OK;
}

/* Stream `count` unsigned bytes from f into a new array of floats scaled to [0, 1]
 * (as_float) or int32 values.  The array grows as data arrives unless the exact size is
 * already known to be present.  *out (count elements) must be sm_free'd. */
static sm_status idx_read_payload(idx_file *f, uint64_t count, int as_float, const char *what,
                                  void **out) {
    size_t esize = as_float ? sizeof(float) : sizeof(int32_t);
    if (count > SIZE_MAX / esize)
        return sm_fail(SM_ERR_RANGE, "%s: %llu %s do not fit in memory", f->path,
                       (unsigned long long)count, what);
    size_t cap = f->size_known || count < IDX_GROW_START ? (size_t)count : IDX_GROW_START;
    unsigned char *arr = sm_alloc(cap, esize); /* (cap) floats or int32 */
    if (!arr) return SM_ERR_NOMEM;
    unsigned char chunk[IDX_CHUNK];            /* (IDX_CHUNK) raw bytes */
    size_t done = 0;
    const float scale = 1.0f / 255.0f;
    while (done < count) {
        if (done == cap) { /* grow geometrically, never beyond count */
            size_t ncap = cap > (size_t)count / 2 ? (size_t)count : cap * 2;
            unsigned char *bigger = sm_alloc(ncap, esize);
            if (!bigger) { sm_free(arr); return SM_ERR_NOMEM; }
            memcpy(bigger, arr, cap * esize);
            sm_free(arr);
            arr = bigger; cap = ncap;
        }
        size_t want = cap - done < IDX_CHUNK ? cap - done : IDX_CHUNK, got = 0;
        sm_status st = idx_read(f, chunk, want, &got);
        if (st) { sm_free(arr); return st; }
        if (as_float) {
            float *x = (float *)arr + done;
            for (size_t i = 0; i < got; i++) x[i] = (float)chunk[i] * scale;
        } else {
            int32_t *y = (int32_t *)arr + done;
            for (size_t i = 0; i < got; i++) y[i] = chunk[i];
        }
        done += got;
        if (got < want) {
            int errnum = Z_OK;
            gzerror(f->gz, &errnum);
            sm_free(arr);
            return sm_fail(SM_ERR_FORMAT, "%s: truncated %s: expected %llu bytes of data after the "
                           "header, got %zu%s", f->path, what, (unsigned long long)count, done,
                           errnum == Z_BUF_ERROR ? " (gzip stream cut short)" : "");
        }
    }
    *out = arr;
    return SM_OK;
}

sm_status sm_dataset_load_idx(sm_dataset **out, const char *images_path, const char *labels_path) {
    if (!out) return sm_fail(SM_ERR_INVALID, "sm_dataset_load_idx: out is NULL");
    *out = NULL;
    if (!images_path || !labels_path || !*images_path || !*labels_path)
        return sm_fail(SM_ERR_INVALID, "sm_dataset_load_idx: images and labels paths are required");

    idx_file fi, fl;
    uint32_t di[3] = {0, 0, 0}, dl[3] = {0, 0, 0};
    float *x = NULL;   /* (n, h, w, 1) */
    int32_t *y = NULL; /* (n) */
    memset(&fl, 0, sizeof fl);
    sm_status st = idx_open(&fi, images_path);
    if (st) return st;
    if ((st = idx_read_header(&fi, 3, di, "images"))) goto done;
    if ((st = idx_open(&fl, labels_path))) goto done;
    if ((st = idx_read_header(&fl, 1, dl, "labels"))) goto done;
    if (di[0] != dl[0]) {
        st = sm_fail(SM_ERR_FORMAT, "count mismatch: %s has %u images but %s has %u labels",
                     images_path, di[0], labels_path, dl[0]);
        goto done;
    }
    uint64_t n = di[0], npix = (uint64_t)di[0] * di[1] * di[2];
    if ((st = idx_check_size(&fi, 16, npix, "pixel data"))) goto done;
    if ((st = idx_check_size(&fl, 8, n, "labels"))) goto done;

    void *p = NULL;
    if ((st = idx_read_payload(&fi, npix, 1, "pixel data", &p))) goto done;
    x = p;
    if ((st = idx_expect_eof(&fi, npix, "pixel data"))) goto done;
    if ((st = idx_read_payload(&fl, n, 0, "labels", &p))) goto done;
    y = p;
    if ((st = idx_expect_eof(&fl, n, "labels"))) goto done;

    sm_dataset *ds = sm_calloc(1, sizeof *ds);
    if (!ds) { st = SM_ERR_NOMEM; goto done; }
    ds->n = (int64_t)n;
    ds->h = (int)di[1]; ds->w = (int)di[2]; ds->c = 1;
    ds->x = x; ds->y = y;
    x = NULL; y = NULL;
    *out = ds;
done:
    idx_close(&fi);
    idx_close(&fl);
    sm_free(x);
    sm_free(y);
    return st;
}
