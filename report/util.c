/* util.c - the report's own small helpers, since it is built on the public API alone: checked
 * 64-byte aligned allocation recording SM_ERR_NOMEM messages through sm_errmsg_set(), a
 * monotonic clock, a splitmix64-seeded xoshiro256** RNG, and atomic whole-file writing. */
#include "report/report.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- memory -------------------------------------------------------------------------------- */

void *rep_alloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) {
        sm_errmsg_set(SM_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    size_t n = count * size;
    if (n == 0) n = 1;
    size_t rounded = (n + 63) & ~(size_t)63; /* aligned_alloc wants a multiple of the alignment */
    if (rounded < n) { sm_errmsg_set(SM_ERR_NOMEM, "allocation of %zu bytes overflows", n); return NULL; }
    void *p = aligned_alloc(64, rounded);
    if (!p) sm_errmsg_set(SM_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *rep_calloc(size_t count, size_t size) {
    void *p = rep_alloc(count, size);
    if (p) { size_t bytes = count * size; memset(p, 0, bytes > 0 ? bytes : 1); }
    return p;
}

void rep_free(void *p) { free(p); }

char *rep_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = rep_alloc(n, 1);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- time -------------------------------------------------------------------------------- */

double rep_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- RNG ----------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rep_rng_seed(rep_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rep_rng_next(rep_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}

uint64_t rep_rng_below(rep_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = rep_rng_next(r); while (x >= limit);
    return x % n;
}

/* ---- atomic file writing --------------------------------------------------------------------- */

sm_status rep_write_file(const char *path, const char *data, size_t len) {
    size_t n = strlen(path);
    char *tmp = rep_alloc(n + 32, 1); /* (n + 32) "<path>.tmp.<pid>" */
    if (!tmp) return SM_ERR_NOMEM;
    snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        sm_status st = sm_errmsg_set(SM_ERR_IO, "%s: cannot create temporary file: %s", tmp, strerror(errno));
        rep_free(tmp);
        return st;
    }
    sm_status st = SM_OK;
    if (len && fwrite(data, 1, len, f) != len) {
        st = sm_errmsg_set(SM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        fclose(f);
    } else {
        int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
        int e = errno;
        bad |= fclose(f) != 0;
        if (bad) st = sm_errmsg_set(SM_ERR_IO, "%s: flush/sync failed: %s", tmp, strerror(e ? e : errno));
        else if (rename(tmp, path) != 0)
            st = sm_errmsg_set(SM_ERR_IO, "%s: rename to %s failed: %s", tmp, path, strerror(errno));
    }
    if (st) { unlink(tmp); rep_free(tmp); return st; }
    /* make the rename itself durable */
    char *dircopy = rep_strdup(path);
    if (dircopy) {
        int fd = open(dirname(dircopy), O_RDONLY);
        if (fd >= 0) { fsync(fd); close(fd); }
        rep_free(dircopy);
    }
    rep_free(tmp);
    return SM_OK;
}
