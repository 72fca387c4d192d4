/* core.h - internal foundations shared by every module: error reporting, checked allocation,
 * a deterministic RNG, CRC-32, timing, and atomic file writes.  Not part of the public API. */
#ifndef SM_CORE_H
#define SM_CORE_H

#include "simile.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ---------------------------------------------------------------------------- */
/* Record a formatted message for the calling thread and return status (for `return sm_fail(...)`). */
sm_status sm_fail(sm_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current thread's message with "prefix: " (adds context on the way up). */
void sm_errmsg_prefix(const char *prefix);
/* Clear the thread's message. */
void sm_errmsg_clear(void);
/* Copy the thread's last message into a handle's buffer (size SM_ERRMSG_MAX). */
#define SM_ERRMSG_MAX 512
void sm_errmsg_copy(char *dst);
/* one or many for a count in text: "%d %s", n, sm_pl(n, "epoch", "epochs") */
static inline const char *sm_pl(long long n, const char *one, const char *many) { return n == 1 ? one : many; }

/* ---- memory ---------------------------------------------------------------------------- */
/* Allocation helpers that record SM_ERR_NOMEM messages; return NULL on failure (or overflow of
 * count * size).  Memory is 64-byte aligned (sm_alloc) and must be released with sm_free. */
void *sm_alloc(size_t count, size_t size);   /* uninitialised */
void *sm_calloc(size_t count, size_t size);  /* zeroed */
void sm_free(void *p);
char *sm_strdup(const char *s);
/* Test hook: make the k-th allocation from now fail (k >= 1); 0 disables. Returns the number of
 * allocations made since the hook was armed. */
void sm_alloc_fail_after(long k);
long sm_alloc_count(void);

/* ---- RNG: splitmix64-seeded xoshiro256** (deterministic, per-stream state) -------------- */
typedef struct sm_rng { uint64_t s[4]; } sm_rng;
void sm_rng_seed(sm_rng *r, uint64_t seed);
uint64_t sm_rng_next(sm_rng *r);
double sm_rng_uniform(sm_rng *r);            /* [0, 1) */
float sm_rng_normal(sm_rng *r);              /* standard normal (Box-Muller) */
uint64_t sm_rng_below(sm_rng *r, uint64_t n); /* [0, n), unbiased */
/* A stateless 64-bit mix of x (splitmix64's finaliser): counter-based random numbers whose
 * values do not depend on the order or thread they are drawn on. */
uint64_t sm_hash64(uint64_t x);
void sm_rng_shuffle_i64(sm_rng *r, int64_t *a, int64_t n);

/* ---- CRC-32 (zlib polynomial) ------------------------------------------------------------ */
uint32_t sm_crc32(uint32_t crc, const void *data, size_t n);

/* ---- time ------------------------------------------------------------------------------ */
double sm_now(void); /* monotonic seconds */

/* ---- atomic file writing ----------------------------------------------------------------- */
/* Writes go to "<path>.tmp.<pid>"; sm_afile_commit fsyncs, renames over path and fsyncs the
 * directory; sm_afile_abort removes the temporary file.  Every write updates a running CRC-32. */
typedef struct sm_afile {
    FILE *f;
    char *path, *tmp;
    uint32_t crc;
    int failed;
} sm_afile;
sm_status sm_afile_open(sm_afile *af, const char *path);
sm_status sm_afile_write(sm_afile *af, const void *data, size_t n);
sm_status sm_afile_commit(sm_afile *af);
void sm_afile_abort(sm_afile *af);
/* Little-endian fields of the model and gallery formats: u32, u64, and a string as its u32
 * length followed by its bytes. */
sm_status sm_afile_u32(sm_afile *af, uint32_t v);
sm_status sm_afile_u64(sm_afile *af, uint64_t v);
sm_status sm_afile_str(sm_afile *af, const char *s);

/* ---- checked reading of a whole file into memory ------------------------------------------ */
/* Reads at most max_bytes (SM_ERR_RANGE if larger).  *data must be sm_free'd. */
sm_status sm_read_file(const char *path, size_t max_bytes, unsigned char **data, size_t *len);
/* A bounds-checked cursor over such a buffer: each read names the file and `what` it was
 * reading when the buffer ends first (SM_ERR_FORMAT, "truncated"). */
typedef struct sm_reader { const unsigned char *p, *end; const char *path; } sm_reader;
static inline uint32_t sm_get_u32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
sm_status sm_reader_u32(sm_reader *r, uint32_t *v, const char *what);
sm_status sm_reader_u64(sm_reader *r, uint64_t *v, const char *what);
/* Borrow a string: *s points into the buffer (not terminated), *n its length. */
sm_status sm_reader_str(sm_reader *r, const char **s, uint32_t *n, const char *what);

/* ---- misc ------------------------------------------------------------------------------ */
static inline int sm_isfinite_f(float x) { return (x - x) == 0.0f; }
/* 1 if all n values are finite. */
int sm_all_finite(const float *x, int64_t n);

#endif
