/* memory.c - checked, aligned allocation with an injectable failure point for fault tests, and
 * the finiteness check of arrays. */
#include "core.h"
#include <stdlib.h>
#include <string.h>

static long fail_after = 0; /* 0: off; k: the k-th allocation from arming fails */
static long alloc_count = 0;

void sm_alloc_fail_after(long k) { fail_after = k; alloc_count = 0; }
long sm_alloc_count(void) { return alloc_count; }

void *sm_alloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) {
        sm_fail(SM_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    size_t n = count * size;
    if (n == 0) n = 1;
    alloc_count++;
    if (fail_after > 0 && alloc_count == fail_after) {
        sm_fail(SM_ERR_NOMEM, "out of memory (injected failure at allocation %ld)", alloc_count);
        return NULL;
    }
    size_t rounded = (n + 63) & ~(size_t)63;
    if (rounded < n) { sm_fail(SM_ERR_NOMEM, "allocation of %zu bytes overflows", n); return NULL; }
    void *p = aligned_alloc(64, rounded);
    if (!p) sm_fail(SM_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *sm_calloc(size_t count, size_t size) {
    void *p = sm_alloc(count, size);
    if (p) { size_t bytes = count * size; memset(p, 0, bytes > 0 ? bytes : 1); }
    return p;
}

void sm_free(void *p) { free(p); }

char *sm_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = sm_alloc(n, 1);
    if (d) memcpy(d, s, n);
    return d;
}

/* Large arrays are read by all threads (the check runs before every search and evaluation, and a
 * single thread reading 50 MB left the others waiting); an AND of every value, so the answer does
 * not depend on the split. */
#define FINITE_PAR ((int64_t)1 << 20)
int sm_all_finite(const float *x, int64_t n) {
    int ok = 1;
#pragma omp parallel for schedule(static) reduction(& : ok) if (n > FINITE_PAR)
    for (int64_t i = 0; i < n; i++) ok &= sm_isfinite_f(x[i]);
    return ok;
}
