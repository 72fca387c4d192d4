/* file.c - CRC-32, monotonic time, whole-file reads with a size limit, and atomic writes
 * (temporary file, fsync, rename, directory fsync). */
#define _POSIX_C_SOURCE 200809L
#include "core.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

uint32_t sm_crc32(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n > 0) { /* zlib's crc32 takes a uInt length */
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk; n -= chunk;
    }
    return crc;
}

double sm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

sm_status sm_read_file(const char *path, size_t max_bytes, unsigned char **data, size_t *len) {
    *data = NULL; *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sm_fail(SM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sm_fail(SM_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return sm_fail(SM_ERR_RANGE, "%s: file of %lld bytes exceeds the limit of %zu", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = sm_alloc(n + 1, 1);
    if (!buf) { fclose(f); return SM_ERR_NOMEM; }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        sm_free(buf);
        return sm_fail(SM_ERR_IO, "%s: read error", path);
    }
    *data = buf; *len = n;
    return SM_OK;
}

sm_status sm_afile_open(sm_afile *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->path = sm_strdup(path);
    af->tmp = sm_alloc(n + 32, 1);
    if (!af->path || !af->tmp) { sm_free(af->path); sm_free(af->tmp); return SM_ERR_NOMEM; }
    snprintf(af->tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        sm_status st = sm_fail(SM_ERR_IO, "%s: cannot create temporary file: %s", af->tmp, strerror(errno));
        sm_free(af->path); sm_free(af->tmp);
        af->path = af->tmp = NULL;
        return st;
    }
    af->crc = 0;
    return SM_OK;
}

sm_status sm_afile_write(sm_afile *af, const void *data, size_t n) {
    if (af->failed) return SM_ERR_IO;
    if (n && fwrite(data, 1, n, af->f) != n) {
        af->failed = 1;
        return sm_fail(SM_ERR_IO, "%s: write failed: %s", af->tmp, strerror(errno));
    }
    af->crc = sm_crc32(af->crc, data, n);
    return SM_OK;
}

void sm_afile_abort(sm_afile *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    sm_free(af->path); sm_free(af->tmp);
    memset(af, 0, sizeof *af);
}

sm_status sm_afile_commit(sm_afile *af) {
    if (af->failed) { sm_afile_abort(af); return SM_ERR_IO; }
    int bad = fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    int e = errno;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (bad) {
        sm_status st = sm_fail(SM_ERR_IO, "%s: flush/sync failed: %s", af->tmp, strerror(e ? e : errno));
        sm_afile_abort(af);
        return st;
    }
    if (rename(af->tmp, af->path) != 0) {
        sm_status st = sm_fail(SM_ERR_IO, "%s: rename to %s failed: %s", af->tmp, af->path, strerror(errno));
        sm_afile_abort(af);
        return st;
    }
    /* make the rename itself durable */
    char *dircopy = sm_strdup(af->path);
    if (dircopy) {
        int fd = open(dirname(dircopy), O_RDONLY);
        if (fd >= 0) { fsync(fd); close(fd); }
        sm_free(dircopy);
    }
    sm_free(af->path); sm_free(af->tmp);
    memset(af, 0, sizeof *af);
    return SM_OK;
}

sm_status sm_afile_u32(sm_afile *af, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    return sm_afile_write(af, b, 4);
}

sm_status sm_afile_u64(sm_afile *af, uint64_t v) {
    sm_status st = sm_afile_u32(af, (uint32_t)v);
    return st ? st : sm_afile_u32(af, (uint32_t)(v >> 32));
}

sm_status sm_afile_str(sm_afile *af, const char *s) {
    sm_status st = sm_afile_u32(af, (uint32_t)strlen(s));
    return st ? st : sm_afile_write(af, s, strlen(s));
}

sm_status sm_reader_u32(sm_reader *r, uint32_t *v, const char *what) {
    if (r->end - r->p < 4) return sm_fail(SM_ERR_FORMAT, "%s: truncated (reading %s)", r->path, what);
    *v = sm_get_u32le(r->p);
    r->p += 4;
    return SM_OK;
}

sm_status sm_reader_u64(sm_reader *r, uint64_t *v, const char *what) {
    uint32_t lo = 0, hi = 0;
    sm_status st = sm_reader_u32(r, &lo, what);
    if (!st) st = sm_reader_u32(r, &hi, what);
    if (!st) *v = (uint64_t)lo | (uint64_t)hi << 32;
    return st;
}

sm_status sm_reader_str(sm_reader *r, const char **s, uint32_t *n, const char *what) {
    *s = NULL;
    sm_status st = sm_reader_u32(r, n, what);
    if (st) return st;
    if ((uint64_t)(r->end - r->p) < *n) return sm_fail(SM_ERR_FORMAT, "%s: truncated (reading %s)", r->path, what);
    *s = (const char *)r->p;
    r->p += *n;
    return SM_OK;
}
