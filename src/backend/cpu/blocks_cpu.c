/* blocks_cpu.c - the CPU kernels of the residual add, dropout and GeM pooling (the layers res /
 * shortcut / end, dropout and gem in src/nn/; what each computes is in kernels.h).  Every value
 * depends only on its inputs (dropout's mask on a counter-based hash, GeM's exponent gradient on
 * per-sample parts summed in sample order), so the results do not depend on the thread count. */
#include "backend/cpu/kernels.h"
#include "core/core.h"
#include <math.h>

#define GEM_EPS 1e-6

void sm_k_add(const float *a, const float *b, float *y, int64_t m) {
    for (int64_t i = 0; i < m; i++) y[i] = a[i] + b[i];
}

/* 24-bit threshold: value j is kept when the top 24 bits of its hash are >= P * 2^24 */
static uint32_t dropout_threshold(float p) { return (uint32_t)((double)p * 16777216.0 + 0.5); }

void sm_k_dropout_forward(const float *x, int64_t m, float p, uint64_t key, uint8_t *mask, float *y) {
    const uint32_t thr = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (m > 65536)
    for (int64_t j = 0; j < m; j++) {
        uint8_t keep = (uint32_t)(sm_hash64(key + (uint64_t)j) >> 40) >= thr;
        mask[j] = keep;
        y[j] = keep ? x[j] * scale : 0.0f;
    }
}

void sm_k_dropout_backward(const float *dy, const uint8_t *mask, int64_t m, float p, float *dx) {
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (m > 65536)
    for (int64_t j = 0; j < m; j++) dx[j] = mask[j] ? dy[j] * scale : 0.0f;
}

/* channel ch of one sample x (hw, c): zmax = max z (z = max(x, eps)) and s = mean (z/zmax)^p, so
 * that y = zmax s^(1/p) with no overflow for any p > 0 (s is in [1/hw, 1]) */
static void gem_stats(const float *x, int hw, int c, int ch, double p, double *zmax, double *s) {
    double zm = GEM_EPS, acc = 0;
    for (int q = 0; q < hw; q++) {
        double z = x[(int64_t)q * c + ch];
        if (z > zm) zm = z;
    }
    for (int q = 0; q < hw; q++) {
        double z = x[(int64_t)q * c + ch];
        acc += pow((z > GEM_EPS ? z : GEM_EPS) / zm, p);
    }
    *zmax = zm;
    *s = acc / hw;
}

/* one sample: y (c) from x (hw, c) */
static void gem_sample(const float *x, int hw, int c, double p, float *y) {
    for (int ch = 0; ch < c; ch++) {
        double zm, s;
        gem_stats(x, hw, c, ch, p, &zm, &s);
        y[ch] = (float)(zm * pow(s, 1.0 / p));
    }
}

static int gem_parallel(int n, int hw, int c) { return n > 1 && (int64_t)n * hw * c > 32768; }

void sm_k_gem_forward(const float *x, int n, int hw, int c, const float *p, float *y) {
    const double pp = p[0];
    const int64_t in = (int64_t)hw * c;
#pragma omp parallel for schedule(static) if (gem_parallel(n, hw, c))
    for (int b = 0; b < n; b++) gem_sample(x + b * in, hw, c, pp, y + (int64_t)b * c);
}

void sm_k_gem1(const float *x, int n, int hw, int c, const float *p, float *y) {
    const double pp = p[0];
    const int64_t in = (int64_t)hw * c;
    for (int b = 0; b < n; b++) gem_sample(x + b * in, hw, c, pp, y + (int64_t)b * c);
}

/* one sample: dx (hw, c) overwritten (if dx); returns its part of dL/dp.  With r = z / zmax and
 * s = mean r^p: dy/dz_i = y r_i^(p-1) / (hw s zmax), dy/dp = (y/p) (mean(r^p ln r) / s - ln(s) / p),
 * the formulas of kernels.h rescaled by zmax. */
static double gem_sample_backward(const float *x, const float *dy, int hw, int c, double p, float *dx) {
    double dp = 0;
    for (int ch = 0; ch < c; ch++) {
        double zm, s, sl = 0;
        gem_stats(x, hw, c, ch, p, &zm, &s);
        for (int q = 0; q < hw; q++) {
            double z = x[(int64_t)q * c + ch], r = (z > GEM_EPS ? z : GEM_EPS) / zm;
            sl += pow(r, p) * log(r);
        }
        double y = zm * pow(s, 1.0 / p);
        dp += (double)dy[ch] * (y / p) * ((sl / hw) / s - log(s) / p);
        if (dx) {
            double g = (double)dy[ch] * y / (hw * s * zm);
            for (int q = 0; q < hw; q++) {
                double z = x[(int64_t)q * c + ch];
                dx[(int64_t)q * c + ch] = z < GEM_EPS ? 0.0f : (float)(g * pow(z / zm, p - 1));
            }
        }
    }
    return dp;
}

size_t sm_k_gem_backward_ws(int n, int hw, int c) {
    (void)hw; (void)c;
    return (size_t)(n > 0 ? n : 0) * sizeof(double);
}

void sm_k_gem_backward(const float *x, const float *dy, int n, int hw, int c, const float *p, float *dx, float *dp,
                       const sm_ws *ws) {
    const double pp = p[0];
    const int64_t in = (int64_t)hw * c;
    double *part = (double *)ws->base; /* (n) per-sample parts of dL/dp, summed in order */
#pragma omp parallel for schedule(static) if (gem_parallel(n, hw, c))
    for (int b = 0; b < n; b++)
        part[b] = gem_sample_backward(x + b * in, dy + (int64_t)b * c, hw, c, pp, dx ? dx + b * in : NULL);
    double s = 0;
    for (int b = 0; b < n; b++) s += part[b];
    *dp = (float)s;
}
