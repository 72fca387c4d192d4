/* stats.c - uncertainties of the report's figures: a bootstrap over the test queries.  Each
 * figure is a mean of per-query values (AP@R, 1/0 for a correct answer, ...) or a ratio of two
 * such means; resampling the queries with replacement (SM_REP_RESAMPLES times, fixed seed) gives
 * its standard error and a 95% percentile interval.  Two models evaluated on the same queries
 * are compared by resampling the same indices for both (a paired bootstrap). */
#include "report/report.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(const double *s, int n, double q) {
    double p = q * (n - 1);
    int i = (int)floor(p);
    if (i >= n - 1) return s[n - 1];
    return s[i] + (p - i) * (s[i + 1] - s[i]);
}

/* The statistic over the chosen indices: mode 0 mean(a0) - mean(a1) (a1 optional); mode 1
 * -(mean a0 / mean a1) + (mean a2 / mean a3) (a2, a3 optional). */
static double stat(const float *const *a, int mode, const int64_t *idx, int64_t m) {
    double s[4] = {0, 0, 0, 0};
    for (int64_t k = 0; k < m; k++)
        for (int j = 0; j < 4; j++)
            if (a[j]) s[j] += a[j][idx[k]];
    if (mode == 0) return (s[0] - (a[1] ? s[1] : 0)) / (double)m;
    double v = s[1] != 0 ? -s[0] / s[1] : NAN;
    if (a[2]) v += s[3] != 0 ? s[2] / s[3] : NAN;
    return v;
}

static int boot(const float *const *a, int mode, int64_t n, sm_rep_interval *out) {
    out->value = out->se = out->lo = out->hi = NAN;
    out->n = 0;
    if (!a[0] || n <= 0) return -1;
    int64_t *valid = malloc((size_t)n * sizeof(int64_t)), *pick = malloc((size_t)n * sizeof(int64_t));
    double *st = malloc(SM_REP_RESAMPLES * sizeof(double));
    if (!valid || !pick || !st) { free(valid); free(pick); free(st); return -1; }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int ok = 1;
        for (int j = 0; j < 4; j++) if (a[j] && !isfinite(a[j][i])) ok = 0;
        if (ok) valid[m++] = i;
    }
    int rc = -1;
    if (m > 0) {
        out->n = m;
        out->value = stat(a, mode, valid, m);
        uint64_t seed = SM_REP_BOOT_SEED;
        double mean = 0, var = 0;
        for (int b = 0; b < SM_REP_RESAMPLES; b++) {
            for (int64_t k = 0; k < m; k++) pick[k] = valid[splitmix(&seed) % (uint64_t)m];
            st[b] = stat(a, mode, pick, m);
            mean += st[b] / SM_REP_RESAMPLES;
        }
        for (int b = 0; b < SM_REP_RESAMPLES; b++) var += (st[b] - mean) * (st[b] - mean) / (SM_REP_RESAMPLES - 1);
        qsort(st, SM_REP_RESAMPLES, sizeof(double), cmp_d);
        out->se = sqrt(var);
        out->lo = quantile(st, SM_REP_RESAMPLES, 0.025);
        out->hi = quantile(st, SM_REP_RESAMPLES, 0.975);
        rc = isfinite(out->value) && isfinite(out->lo) && isfinite(out->hi) ? 0 : -1;
    }
    free(valid); free(pick); free(st);
    return rc;
}

int sm_rep_bootstrap_mean(const float *a, const float *b, int64_t n, sm_rep_interval *out) {
    const float *arr[4] = {a, b, NULL, NULL};
    return boot(arr, 0, n, out);
}

int sm_rep_bootstrap_sep(const float *intra_a, const float *inter_a, const float *intra_b, const float *inter_b,
                         int64_t n, sm_rep_interval *out) {
    const float *arr[4] = {intra_a, inter_a, intra_b, inter_b};
    if (!inter_a || (intra_b && !inter_b)) {
        out->value = out->se = out->lo = out->hi = NAN;
        out->n = 0;
        return -1;
    }
    return boot(arr, 1, n, out);
}
