/* metric.h - small helpers shared by the metric-learning loss kinds (contrastive.c, triplet.c,
 * multisim.c, npair.c, supcon.c, margin_head.c, proxyanchor.c): zero results, option parsing of
 * enumerations, and a numerically safe log(1 + sum exp). */
#ifndef SM_LOSS_METRIC_H
#define SM_LOSS_METRIC_H
#include "loss/loss.h"
#include "mine/distance.h"
#include "mine/miner.h"
#include <math.h>
#include <string.h>

/* value = 0, grad (n, d) = 0: the result of a batch without any valid pair or triplet. */
static inline void sm_metric_zero(float *value, float *grad, int n, int d) {
    *value = 0.0f;
    if (grad && n > 0) memset(grad, 0, (size_t)n * (size_t)d * sizeof(float));
}

/* Read option key as one of the NULL-terminated names; *out = its index (def if absent). */
static inline sm_status sm_opt_enum(const char *options, const char *key, const char *def,
                                    const char *const *names, int *out) {
    char buf[32];
    sm_status st = sm_opt_str(options, key, def, buf, sizeof buf);
    if (st) return st;
    for (int i = 0; names[i]; i++)
        if (!strcmp(buf, names[i])) { *out = i; return SM_OK; }
    return sm_fail(SM_ERR_INVALID, "option %s: unknown value '%s'", key, buf);
}

/* Read option key as 0 or 1. */
static inline sm_status sm_opt_bool(const char *options, const char *key, int def, int *out) {
    sm_status st = sm_opt_int(options, key, def, out);
    if (st) return st;
    if (*out != 0 && *out != 1) return sm_fail(SM_ERR_INVALID, "option %s=%d must be 0 or 1", key, *out);
    return SM_OK;
}

/* lse = log(1 + sum_j exp(x_j)) over the m values x, computed with the maximum (0 included)
 * factored out; w_j = exp(x_j - lse) = d lse / d x_j is written to w (m) if w != NULL. */
static inline double sm_log1p_sumexp(const double *x, int m, double *w) {
    double mx = 0.0;
    for (int j = 0; j < m; j++) if (x[j] > mx) mx = x[j];
    double s = exp(-mx);
    for (int j = 0; j < m; j++) s += exp(x[j] - mx);
    double lse = mx + log(s);
    if (w) for (int j = 0; j < m; j++) w[j] = exp(x[j] - lse);
    return lse;
}

#endif
