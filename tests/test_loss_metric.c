/* test_loss_metric.c - the metric-learning losses and miners: every loss kind against a
 * straightforward double-precision reference (value, and the analytic gradient against central
 * differences of the reference, for embeddings and for trained parameters), hand-computed tiny
 * cases, the seed's triplet gradients, the miners against brute force, edge cases (empty
 * batches, one class, identical / zero / tiny embeddings) and a large all-triplets batch. */
#include "simile.h"
#include "loss/loss.h"
#include "testing.h"
#include <math.h>
#include <string.h>
#include <time.h>

#define PI 3.14159265358979323846

/* ======================================================================================== */
/* Double-precision references                                                               */
/* ======================================================================================== */

/* Smallest distance of any hinge / threshold argument to its kink in the last reference call. */
static double g_kink;
static void kink(double x) { if (fabs(x) < g_kink) g_kink = fabs(x); }

enum { R_CONTRASTIVE, R_TRIPLET, R_NPAIR, R_MS, R_ARC, R_COS, R_PROXY, R_SUPCON };
enum { D_SQ = 0, D_L2 = 1, D_COS = 2, D_DOT = 3 };

typedef struct tcase {
    const char *loss, *opts;
    int ref;
    int dist, normalize;
    double a, b, c, e;   /* kind-specific parameters (see each reference) */
    int miner, reducer, squared, classes;
} tcase;

/* y_i = x_i / max(|x_i|, 1e-12) (n, d). */
static void ref_normalize(const double *x, int n, int d, double *y) {
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int k = 0; k < d; k++) s += x[i * d + k] * x[i * d + k];
        double nr = sqrt(s);
        if (nr < 1e-12) nr = 1e-12;
        for (int k = 0; k < d; k++) y[i * d + k] = x[i * d + k] / nr;
    }
}

/* D (n, n) of the kind on (optionally normalised) rows, directly from the definitions. */
static void ref_dist(const double *x, int n, int d, int kind, int normalize, double *D) {
    double y[64 * 16];
    if (normalize || kind == D_COS) ref_normalize(x, n, d, y);
    else memcpy(y, x, sizeof(double) * n * d);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int k = 0; k < d; k++) {
                double u = y[i * d + k], v = y[j * d + k];
                s += (kind == D_COS || kind == D_DOT) ? u * v : (u - v) * (u - v);
            }
            D[i * n + j] = kind == D_L2 ? sqrt(s) : s;
        }
}

/* contrastive: a = pos_margin, b = neg_margin; miner 1 = pair margin (c = mine_pos, e = mine_neg). */
static double ref_contrastive(const tcase *t, const double *x, const int32_t *y, int n, int d,
                              const double *prm) {
    (void)prm;
    double D[64 * 64];
    ref_dist(x, n, d, t->dist, t->normalize, D);
    int inv = t->dist == D_COS || t->dist == D_DOT;
    double sum[2] = {0, 0};
    int cnt[2] = {0, 0};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (i == j) continue;
            int neg = y[i] != y[j];
            double v = D[i * n + j];
            if (t->miner == 1) {
                double thr = neg ? t->e : t->c;
                kink(v - thr);
                int keep = neg ? (inv ? v > thr : v < thr) : (inv ? v < thr : v > thr);
                if (!keep) continue;
            }
            double h = neg ? (inv ? v - t->b : t->b - v) : (inv ? t->a - v : v - t->a);
            kink(h);
            if (h <= 0) continue;
            sum[neg] += t->squared ? h * h : h;
            cnt[neg]++;
        }
    double L = 0;
    for (int k = 0; k < 2; k++) if (cnt[k]) L += sum[k] / cnt[k];
    return L;
}

/* triplet: a = margin, c = mine_margin; miner 0 all, 1 hard, 2 semihard, 3 easy; reducer 0
 * nonzero, 1 mean, 2 sum. */
static double ref_triplet(const tcase *t, const double *x, const int32_t *y, int n, int d,
                          const double *prm) {
    (void)prm;
    double D[64 * 64];
    ref_dist(x, n, d, t->dist, t->normalize, D);
    int inv = t->dist == D_COS || t->dist == D_DOT;
    double sum = 0;
    long nz = 0, tot = 0;
    for (int a = 0; a < n; a++) {
        int hp = -1, hn = -1;
        if (t->miner == 1) { /* batch hard: farthest positive, nearest negative */
            double bp = 0, bn = 0, bp2 = NAN, bn2 = NAN;
            for (int j = 0; j < n; j++) {
                if (j == a) continue;
                double v = inv ? -D[a * n + j] : D[a * n + j];
                if (y[j] == y[a]) { if (hp < 0 || v > bp) { bp2 = bp; bp = v; hp = j; } else if (isnan(bp2) || v > bp2) bp2 = v; }
                else { if (hn < 0 || v < bn) { bn2 = bn; bn = v; hn = j; } else if (isnan(bn2) || v < bn2) bn2 = v; }
            }
            if (hp < 0 || hn < 0) continue;
            if (!isnan(bp2)) kink(bp - bp2);
            if (!isnan(bn2)) kink(bn - bn2);
        }
        for (int p = 0; p < n; p++) {
            if (p == a || y[p] != y[a] || (hp >= 0 && p != hp)) continue;
            for (int q = 0; q < n; q++) {
                if (y[q] == y[a] || (hn >= 0 && q != hn)) continue;
                double ap = D[a * n + p], an = D[a * n + q];
                double m = inv ? ap - an : an - ap;
                if (t->miner == 2 || t->miner == 3) {
                    kink(m);
                    kink(m - t->c);
                    if (t->miner == 2 && !(m > 0 && m <= t->c)) continue;
                    if (t->miner == 3 && !(m > t->c)) continue;
                }
                double v = t->a - m;
                kink(v);
                tot++;
                if (v > 0) { sum += v; nz++; }
            }
        }
    }
    if (nz == 0) return 0;
    return t->reducer == 0 ? sum / nz : t->reducer == 1 ? sum / tot : sum;
}

/* npair: first two samples of each class (ascending labels), CE of M = A P^T. */
static double ref_npair(const tcase *t, const double *x, const int32_t *y, int n, int d,
                        const double *prm) {
    (void)prm;
    double z[64 * 16];
    if (t->normalize) ref_normalize(x, n, d, z); else memcpy(z, x, sizeof(double) * n * d);
    int A[64], P[64], K = 0;
    for (int lab = 0; lab < 64; lab++) {
        int a = -1, p = -1;
        for (int i = 0; i < n && p < 0; i++) if (y[i] == lab) { if (a < 0) a = i; else p = i; }
        if (p >= 0) { A[K] = a; P[K] = p; K++; }
    }
    if (K < 2) return 0;
    double L = 0;
    for (int k = 0; k < K; k++) {
        double s = 0, mkk = 0;
        for (int j = 0; j < K; j++) {
            double m = 0;
            for (int c = 0; c < d; c++) m += z[A[k] * d + c] * z[P[j] * d + c];
            s += exp(m);
            if (j == k) mkk = m;
        }
        L += log(s) - mkk;
    }
    return L / K;
}

/* MS: a = alpha, b = beta, c = base, e = epsilon; miner 0 = ms miner, 1 = none. */
static double ref_ms(const tcase *t, const double *x, const int32_t *y, int n, int d,
                     const double *prm) {
    (void)prm;
    double S[64 * 64];
    ref_dist(x, n, d, D_COS, 1, S);
    int keep[64 * 64];
    int np = 0, nn = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            keep[i * n + j] = i == j ? 0 : y[i] == y[j] ? 1 : 2;
            np += keep[i * n + j] == 1;
            nn += keep[i * n + j] == 2;
        }
    if (t->miner == 0) {
        if (np == 0 || nn == 0) return 0;
        for (int i = 0; i < n; i++) {
            double maxneg = -INFINITY, minpos = INFINITY;
            for (int j = 0; j < n; j++) {
                if (keep[i * n + j] == 1 && S[i * n + j] < minpos) minpos = S[i * n + j];
                if (keep[i * n + j] == 2 && S[i * n + j] > maxneg) maxneg = S[i * n + j];
            }
            for (int j = 0; j < n; j++) {
                if (keep[i * n + j] == 1) {
                    if (isfinite(maxneg)) kink(S[i * n + j] - t->e - maxneg);
                    if (!(S[i * n + j] - t->e < maxneg)) keep[i * n + j] = 0;
                } else if (keep[i * n + j] == 2) {
                    if (isfinite(minpos)) kink(S[i * n + j] + t->e - minpos);
                    if (!(S[i * n + j] + t->e > minpos)) keep[i * n + j] = 0;
                }
            }
        }
        np = nn = 0;
        for (int k = 0; k < n * n; k++) { np += keep[k] == 1; nn += keep[k] == 2; }
    }
    if (np == 0 && nn == 0) return 0;
    double L = 0;
    for (int i = 0; i < n; i++) {
        double sp = 0, sn = 0;
        int hp = 0, hn = 0;
        for (int j = 0; j < n; j++) {
            if (keep[i * n + j] == 1) { sp += exp(-t->a * (S[i * n + j] - t->c)); hp = 1; }
            if (keep[i * n + j] == 2) { sn += exp(t->b * (S[i * n + j] - t->c)); hn = 1; }
        }
        if (hp) L += log(1 + sp) / t->a;
        if (hn) L += log(1 + sn) / t->b;
    }
    return L / n;
}

/* arcface / cosface: W (d, C) in prm; a = margin (arcface: radians), b = scale. */
static double ref_margin(const tcase *t, const double *x, const int32_t *y, int n, int d,
                         const double *W) {
    const int C = t->classes;
    double f[64 * 16];
    ref_normalize(x, n, d, f);
    double L = 0;
    for (int i = 0; i < n; i++) {
        double z[64], mx = -INFINITY;
        for (int c = 0; c < C; c++) {
            double dot = 0, nw = 0;
            for (int k = 0; k < d; k++) { dot += f[i * d + k] * W[k * C + c]; nw += W[k * C + c] * W[k * C + c]; }
            double cs = dot / sqrt(nw);
            if (c == y[i]) {
                if (t->ref == R_COS) cs -= t->a;
                else {
                    double th = acos(cs);
                    kink(th - (PI - t->a));
                    cs = th <= PI - t->a ? cos(th + t->a) : cs - t->a * sin(t->a);
                }
            }
            z[c] = t->b * cs;
            if (z[c] > mx) mx = z[c];
        }
        double s = 0;
        for (int c = 0; c < C; c++) s += exp(z[c] - mx);
        L += mx + log(s) - z[y[i]];
    }
    return L / n;
}

/* proxy anchor: proxies P (C, d) in prm; a = alpha, b = delta. */
static double ref_proxy(const tcase *t, const double *x, const int32_t *y, int n, int d,
                        const double *P) {
    const int C = t->classes;
    double f[64 * 16], p[64 * 16];
    ref_normalize(x, n, d, f);
    ref_normalize(P, C, d, p);
    int npp = 0;
    double pos = 0, neg = 0;
    for (int c = 0; c < C; c++) {
        double sp = 0, sn = 0;
        int hp = 0, hn = 0;
        for (int i = 0; i < n; i++) {
            double cs = 0;
            for (int k = 0; k < d; k++) cs += f[i * d + k] * p[c * d + k];
            if (y[i] == c) { sp += exp(-t->a * (cs - t->b)); hp = 1; }
            else { sn += exp(t->a * (cs + t->b)); hn = 1; }
        }
        if (hp) { pos += log(1 + sp); npp++; }
        if (hn) neg += log(1 + sn);
    }
    return (npp ? pos / npp : 0) + neg / C;
}

/* supcon: a = temperature. */
static double ref_supcon(const tcase *t, const double *x, const int32_t *y, int n, int d,
                         const double *prm) {
    (void)prm;
    double S[64 * 64];
    ref_dist(x, n, d, D_COS, 1, S);
    int hp = 0, hn = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (i != j) { if (y[i] == y[j]) hp = 1; else hn = 1; }
    if (!hp || !hn) return 0;
    double L = 0;
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        double s = 0, sp = 0;
        int np = 0;
        for (int k = 0; k < n; k++) {
            if (k == i) continue;
            s += exp(S[i * n + k] / t->a);
            if (y[k] == y[i]) { sp += S[i * n + k] / t->a; np++; }
        }
        if (!np) continue;
        double li = log(s) - sp / np;
        if (li > 0) { L += li; cnt++; }
    }
    return cnt ? L / cnt : 0;
}

static double ref_loss(const tcase *t, const double *x, const int32_t *y, int n, int d,
                       const double *prm) {
    (void)prm;
    switch (t->ref) {
    case R_CONTRASTIVE: return ref_contrastive(t, x, y, n, d, prm);
    case R_TRIPLET: return ref_triplet(t, x, y, n, d, prm);
    case R_NPAIR: return ref_npair(t, x, y, n, d, prm);
    case R_MS: return ref_ms(t, x, y, n, d, prm);
    case R_ARC: case R_COS: return ref_margin(t, x, y, n, d, prm);
    case R_PROXY: return ref_proxy(t, x, y, n, d, prm);
    default: return ref_supcon(t, x, y, n, d, prm);
    }
}

/* ======================================================================================== */
/* Gradient checks                                                                           */
/* ======================================================================================== */

#define NB 8
#define DB 4
#define DEG2RAD(x) ((x) * PI / 180.0)

static const tcase cases[] = {
    /* loss, options, ref, dist, normalize, a, b, c, e, miner, reducer, squared, classes */
    {"contrastive", "", R_CONTRASTIVE, D_L2, 1, 0, 1, 0, 0, 0, 0, 0, 0},
    {"contrastive", "squared=1", R_CONTRASTIVE, D_L2, 1, 0, 1, 0, 0, 0, 0, 1, 0},
    {"contrastive", "distance=sqeuclidean,normalize=0,neg_margin=8", R_CONTRASTIVE, D_SQ, 0, 0, 8, 0, 0, 0, 0, 0, 0},
    {"contrastive", "distance=cosine", R_CONTRASTIVE, D_COS, 1, 1, 0, 0, 0, 0, 0, 0, 0},
    {"contrastive", "pos_margin=0.3,neg_margin=1.2,miner=pairmargin,mine_pos=0.5,mine_neg=1.4", R_CONTRASTIVE, D_L2, 1, 0.3, 1.2, 0.5, 1.4, 1, 0, 0, 0},
    {"triplet", "", R_TRIPLET, D_L2, 1, 0.05, 0, 0.2, 0, 0, 0, 0, 0},
    {"triplet", "distance=sqeuclidean,margin=0.2", R_TRIPLET, D_SQ, 1, 0.2, 0, 0.2, 0, 0, 0, 0, 0},
    {"triplet", "normalize=0,margin=0.5", R_TRIPLET, D_L2, 0, 0.5, 0, 0.2, 0, 0, 0, 0, 0},
    {"triplet", "distance=cosine,margin=0.1", R_TRIPLET, D_COS, 1, 0.1, 0, 0.2, 0, 0, 0, 0, 0},
    {"triplet", "miner=hard,margin=0.3", R_TRIPLET, D_L2, 1, 0.3, 0, 0.2, 0, 1, 0, 0, 0},
    {"triplet", "miner=semihard,margin=0.2,mine_margin=0.3", R_TRIPLET, D_L2, 1, 0.2, 0, 0.3, 0, 2, 0, 0, 0},
    {"triplet", "miner=easy,margin=1,mine_margin=0.2", R_TRIPLET, D_L2, 1, 1.0, 0, 0.2, 0, 3, 0, 0, 0},
    {"triplet", "reducer=mean,margin=0.2", R_TRIPLET, D_L2, 1, 0.2, 0, 0.2, 0, 0, 1, 0, 0},
    {"triplet", "reducer=sum,margin=0.2", R_TRIPLET, D_L2, 1, 0.2, 0, 0.2, 0, 0, 2, 0, 0},
    {"npair", "", R_NPAIR, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
    {"npair", "normalize=0", R_NPAIR, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"multisimilarity", "", R_MS, 0, 1, 2, 50, 0.5, 0.1, 0, 0, 0, 0},
    {"multisimilarity", "miner=none", R_MS, 0, 1, 2, 50, 0.5, 0.1, 1, 0, 0, 0},
    {"multisimilarity", "alpha=3,beta=10,base=0.2,epsilon=0.3", R_MS, 0, 1, 3, 10, 0.2, 0.3, 0, 0, 0, 0},
    {"arcface", "classes=3", R_ARC, 0, 1, DEG2RAD(28.6), 64, 0, 0, 0, 0, 0, 3},
    {"arcface", "classes=4,margin=60,scale=4", R_ARC, 0, 1, DEG2RAD(60.0), 4, 0, 0, 0, 0, 0, 4},
    {"cosface", "classes=3", R_COS, 0, 1, 0.35, 64, 0, 0, 0, 0, 0, 3},
    {"cosface", "classes=3,margin=0.2,scale=8", R_COS, 0, 1, 0.2, 8, 0, 0, 0, 0, 0, 3},
    {"proxyanchor", "classes=3", R_PROXY, 0, 1, 32, 0.1, 0, 0, 0, 0, 0, 3},
    {"proxyanchor", "classes=4,alpha=8,margin=0.2", R_PROXY, 0, 1, 8, 0.2, 0, 0, 0, 0, 0, 4},
    {"supcon", "", R_SUPCON, 0, 1, 0.1, 0, 0, 0, 0, 0, 0, 0},
    {"supcon", "temperature=0.5", R_SUPCON, 0, 1, 0.5, 0, 0, 0, 0, 0, 0, 0},
};

/* Gradient agreement: relative error < 2e-3 or absolute < 1e-5. */
static int grad_ok(double analytic, double numeric) {
    return t_relerr(analytic, numeric) < 2e-3 || fabs(analytic - numeric) < 1e-5;
}

/* Random batch: emb ~ N(0, 1) (n, d), labels a shuffle of i % 3. */
static void draw(sm_rng *r, float *emb, int32_t *lab, int n, int d) {
    for (int k = 0; k < n * d; k++) emb[k] = sm_rng_normal(r);
    for (int i = 0; i < n; i++) lab[i] = i % 3;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)sm_rng_below(r, (uint64_t)i + 1);
        int32_t t = lab[i]; lab[i] = lab[j]; lab[j] = t;
    }
}

/* One case: value vs reference, embedding gradient vs central differences, parameter gradient
 * vs central differences (for losses with parameters), on a few random batches. */
static void check_case(const tcase *t, uint64_t seed) {
    sm_loss *l = NULL;
    CHECK_OK(sm_loss_create(&l, t->loss, t->opts, DB, seed));
    if (!l) return;
    float *params, *grads;
    int64_t np;
    sm_loss_params(l, &params, &grads, &np);
    sm_rng r;
    sm_rng_seed(&r, seed * 7919 + 1);
    int done = 0, tries = 0, nonzero = 0;
    while (done < 3 && tries < 200) {
        tries++;
        float emb[NB * DB], grad[NB * DB];
        int32_t lab[NB];
        draw(&r, emb, lab, NB, DB);
        double x[NB * DB], prm[64];
        for (int k = 0; k < NB * DB; k++) x[k] = emb[k];
        for (int64_t k = 0; k < np; k++) prm[k] = params[k];
        g_kink = INFINITY;
        double ref = ref_loss(t, x, lab, NB, DB, prm);
        if (g_kink < 1e-3) continue; /* too close to a hinge or a miner threshold: redraw */
        done++;
        if (np) memset(grads, 0, (size_t)np * sizeof(float));
        float v = -1.0f;
        CHECK_OK(sm_loss_compute(l, emb, lab, NB, DB, &v, grad));
        CHECK_MSG(t_relerr(v, ref) < 1e-4 || fabs(v - ref) < 1e-7, "%s(%s): value %.9g, reference %.9g",
                  t->loss, t->opts, (double)v, ref);
        nonzero += ref > 0;
        int bad = 0;
        for (int k = 0; k < NB * DB; k++) {
            double h = 1e-5 * fmax(1.0, fabs(x[k])), s = x[k];
            x[k] = s + h; double lp = ref_loss(t, x, lab, NB, DB, prm);
            x[k] = s - h; double lm = ref_loss(t, x, lab, NB, DB, prm);
            x[k] = s;
            double num = (lp - lm) / (2 * h);
            if (!grad_ok(grad[k], num) && bad++ < 3)
                fprintf(stderr, "  %s(%s): d/demb[%d] analytic %.8g numeric %.8g\n", t->loss, t->opts, k,
                        (double)grad[k], num);
        }
        CHECK_MSG(bad == 0, "%s(%s): %d embedding gradient entries differ", t->loss, t->opts, bad);
        bad = 0;
        for (int64_t k = 0; k < np; k++) {
            double h = 1e-5 * fmax(1.0, fabs(prm[k])), s = prm[k];
            prm[k] = s + h; double lp = ref_loss(t, x, lab, NB, DB, prm);
            prm[k] = s - h; double lm = ref_loss(t, x, lab, NB, DB, prm);
            prm[k] = s;
            double num = (lp - lm) / (2 * h);
            if (!grad_ok(grads[k], num) && bad++ < 3)
                fprintf(stderr, "  %s(%s): d/dparam[%d] analytic %.8g numeric %.8g\n", t->loss, t->opts,
                        (int)k, (double)grads[k], num);
        }
        CHECK_MSG(bad == 0, "%s(%s): %d parameter gradient entries differ", t->loss, t->opts, bad);
        /* grad = NULL gives the same value; parameter gradients keep accumulating (+=). */
        float v2 = -1.0f;
        CHECK_OK(sm_loss_compute(l, emb, lab, NB, DB, &v2, NULL));
        CHECK(v2 == v);
    }
    CHECK_MSG(done == 3, "%s(%s): could not draw batches away from kinks", t->loss, t->opts);
    CHECK_MSG(nonzero > 0, "%s(%s): every drawn batch had zero loss (test is vacuous)", t->loss, t->opts);
    sm_loss_free(l);
}

/* ======================================================================================== */
/* Hand-computed cases                                                                       */
/* ======================================================================================== */

/* Three unit vectors in 2-D: e0 at 0 deg (class 0), e1 at 60 deg (class 0), e2 at 90 deg
 * (class 1).  Chord lengths 2 sin(angle / 2):  d01 = 2 sin 30 = 1, d02 = 2 sin 45 = sqrt 2,
 * d12 = 2 sin 15 = 0.5176381.  Cosines: S01 = 0.5, S02 = 0, S12 = cos 30 = 0.8660254. */
static void hand_cases(void) {
    const float emb[6] = {1.0f, 0.0f, 0.5f, (float)(sqrt(3.0) / 2), 0.0f, 1.0f};
    const int32_t lab[3] = {0, 0, 1};
    const double d12 = 2 * sin(DEG2RAD(15.0));
    sm_loss *l;
    float v, g[6];

    /* contrastive (pos_margin 0, neg_margin 1): positives {d01 = 1}: mean 1;
     * negatives: [1 - d02]_+ = 0, [1 - d12]_+ = 0.4823619 (one non-zero): mean 0.4823619;
     * L = 1 + 1 - 2 sin 15 = 1.4823619.  squared=1: 1^2 + 0.4823619^2 = 1.2326730. */
    CHECK_OK(sm_loss_create(&l, "contrastive", "", 2, 1));
    CHECK_OK(sm_loss_compute(l, emb, lab, 3, 2, &v, g));
    CHECK_NEAR(v, 2.0 - d12, 1e-5);
    sm_loss_free(l);
    CHECK_OK(sm_loss_create(&l, "contrastive", "squared=1", 2, 1));
    CHECK_OK(sm_loss_compute(l, emb, lab, 3, 2, &v, g));
    CHECK_NEAR(v, 1.0 + (1 - d12) * (1 - d12), 1e-5);
    sm_loss_free(l);

    /* triplet (margin 0.05): (a0, p1, n2): d01 - d02 + 0.05 = -0.364 -> 0;
     * (a1, p0, n2): d10 - d12 + 0.05 = 1 - 0.5176381 + 0.05 = 0.5323619 (the only non-zero);
     * anchor 2 has no positive.  Mean over non-zero: 0.5323619. */
    CHECK_OK(sm_loss_create(&l, "triplet", "", 2, 1));
    CHECK_OK(sm_loss_compute(l, emb, lab, 3, 2, &v, g));
    CHECK_NEAR(v, 1.05 - d12, 1e-5);
    sm_loss_free(l);

    /* multi-similarity, no miner (alpha 2, beta 50, base 0.5):
     * row 0: 1/2 log(1 + e^{-2(0.5-0.5)}) = log(2)/2;  1/50 log(1 + e^{50(0-0.5)}) = 2.8e-13
     * row 1: log(2)/2;  1/50 log(1 + e^{50(0.8660254-0.5)}) = 0.3660254 (+1e-10)
     * row 2: no positive: 0;  1/50 log(1 + e^{-25} + e^{18.30127}) = 0.3660254
     * L = (log 2 + 2 * 0.3660254) / 3 = 0.4750660. */
    const double negterm = log(1 + exp(50 * (sqrt(3.0) / 2 - 0.5))) / 50;
    CHECK_OK(sm_loss_create(&l, "multisimilarity", "miner=none", 2, 1));
    CHECK_OK(sm_loss_compute(l, emb, lab, 3, 2, &v, g));
    CHECK_NEAR(v, (log(2.0) + 2 * negterm + log(1 + exp(-25.0)) / 50) / 3, 1e-5);
    sm_loss_free(l);
    /* with the MS miner (epsilon 0.1): row 0: S01 - 0.1 = 0.4 < max neg S02 = 0? no; S02 + 0.1
     * > min pos 0.5? no: nothing.  Row 1: 0.5 - 0.1 < 0.866 yes; 0.866 + 0.1 > 0.5 yes.
     * Row 2 has no positive: nothing.  L = (log(2)/2 + 0.3660254) / 3 = 0.2375327.
     * (PML returns 0 here: its GenericPairLoss skips a batch whose mined index lists all have
     * at most one entry, here one positive and one negative pair; simile does not.) */
    CHECK_OK(sm_loss_create(&l, "multisimilarity", "", 2, 1));
    CHECK_OK(sm_loss_compute(l, emb, lab, 3, 2, &v, g));
    CHECK_NEAR(v, (log(2.0) / 2 + negterm) / 3, 1e-5);
    sm_loss_free(l);
}

/* The seed's triplet gradients: squared L2, no normalisation, one triplet, sum reducer:
 * dL/df_a = 2 (f_n - f_p), dL/df_p = 2 (f_p - f_a), dL/df_n = 2 (f_a - f_n) when violated. */
static void seed_triplet(void) {
    sm_loss *l;
    CHECK_OK(sm_loss_create(&l, "triplet", "normalize=0,distance=sqeuclidean,reducer=sum", 2, 1));
    const int32_t lab[3] = {0, 0, 1};
    /* a = (0.1, 0.2), p = (1, 0.3), n = (0.2, 0.6): (a,p,n): 0.82 - 0.17 + 0.05 = 0.70 > 0;
     * (p,a,n): 0.82 - 0.73 + 0.05 = 0.14 > 0 as well, so move p to keep only one active:
     * p = (1.1, 0.2): |a-p|^2 = 1.0, |a-n|^2 = 0.17, |p-n|^2 = 0.97: (p,a,n): 1 - 0.97 + 0.05 =
     * 0.08 > 0 still; use n = (0.1, 0.7): |a-n|^2 = 0.25, |p-n|^2 = 1.25: (p,a,n): -0.2. */
    float emb[6] = {0.1f, 0.2f, 1.1f, 0.2f, 0.1f, 0.7f}, g[6], v;
    CHECK_OK(sm_loss_compute(l, emb, lab, 3, 2, &v, g));
    CHECK_NEAR(v, 1.0 - 0.25 + 0.05, 1e-6);
    const float *fa = emb, *fp = emb + 2, *fn = emb + 4;
    for (int k = 0; k < 2; k++) {
        CHECK_NEAR(g[k], 2 * (fn[k] - fp[k]), 1e-5);
        CHECK_NEAR(g[2 + k], 2 * (fp[k] - fa[k]), 1e-5);
        CHECK_NEAR(g[4 + k], 2 * (fa[k] - fn[k]), 1e-5);
    }
    /* Not violated: n far away: zero loss and zero gradient. */
    float emb2[6] = {0.1f, 0.2f, 1.1f, 0.2f, 0.1f, 3.0f};
    CHECK_OK(sm_loss_compute(l, emb2, lab, 3, 2, &v, g));
    CHECK(v == 0.0f);
    for (int k = 0; k < 6; k++) CHECK(g[k] == 0.0f);
    sm_loss_free(l);
}

/* ======================================================================================== */
/* Miners                                                                                    */
/* ======================================================================================== */

static void check_miners(void) {
    sm_rng r;
    sm_rng_seed(&r, 99);
    int done = 0;
    for (int tries = 0; tries < 100 && done < 5; tries++) {
        float emb[NB * DB];
        int32_t lab[NB];
        draw(&r, emb, lab, NB, DB);
        double x[NB * DB], D[NB * NB], S[NB * NB];
        for (int k = 0; k < NB * DB; k++) x[k] = emb[k];
        ref_dist(x, NB, DB, D_L2, 1, D);
        ref_dist(x, NB, DB, D_COS, 1, S);
        /* Keep away from thresholds: every |m|, |m - 0.2|, |d - 0.2|, |d - 0.8|, ties >= 1e-3. */
        g_kink = INFINITY;
        for (int i = 0; i < NB; i++)
            for (int j = 0; j < NB; j++) {
                if (i == j) continue;
                kink(D[i * NB + j] - 0.2); kink(D[i * NB + j] - 0.8);
                for (int k = 0; k < NB; k++) {
                    if (k == i || k == j) continue;
                    double m = D[i * NB + k] - D[i * NB + j];
                    if (lab[j] == lab[i] && lab[k] != lab[i]) { kink(m); kink(m - 0.2); }
                    if ((lab[j] == lab[i]) == (lab[k] == lab[i])) kink(m); /* ties in batch-hard */
                }
            }
        tcase ms = {0};
        ms.ref = R_MS; ms.a = 2; ms.b = 50; ms.c = 0.5; ms.e = 0.1;
        ref_ms(&ms, x, lab, NB, DB, NULL); /* records the MS miner's thresholds */
        if (g_kink < 1e-3) continue;
        done++;

        int32_t tr[NB * NB * NB * 3];
        int64_t cnt = -1;
        for (int kind = 0; kind < 4; kind++) {
            CHECK_OK(sm_mine_triplets(emb, lab, NB, DB, (sm_triplet_miner)kind, 0.2f, tr, NB * NB * NB, &cnt));
            int64_t c = 0;
            for (int a = 0; a < NB; a++) {
                int hp = -1, hn = -1;
                for (int j = 0; j < NB; j++) {
                    if (j == a) continue;
                    if (lab[j] == lab[a] && (hp < 0 || D[a * NB + j] > D[a * NB + hp])) hp = j;
                    if (lab[j] != lab[a] && (hn < 0 || D[a * NB + j] < D[a * NB + hn])) hn = j;
                }
                for (int p = 0; p < NB; p++)
                    for (int q = 0; q < NB; q++) {
                        if (p == a || lab[p] != lab[a] || lab[q] == lab[a]) continue;
                        double m = D[a * NB + q] - D[a * NB + p];
                        int keep = kind == 0 ? 1 : kind == 1 ? (p == hp && q == hn)
                                 : kind == 2 ? (m > 0 && m <= 0.2) : m > 0.2;
                        if (!keep) continue;
                        int found = c < cnt && tr[3 * c] == a && tr[3 * c + 1] == p && tr[3 * c + 2] == q;
                        CHECK_MSG(found, "triplet miner %d: (%d,%d,%d) missing or out of order", kind, a, p, q);
                        c++;
                    }
            }
            CHECK_MSG(c == cnt, "triplet miner %d: %lld triplets, reference %lld", kind, (long long)cnt, (long long)c);
        }
        /* Pair miners: all, pair margin (0.2, 0.8), multi-similarity (0.1). */
        int32_t pp[NB * NB * 2], nn[NB * NB * 2];
        int64_t np, nq;
        for (int kind = 0; kind < 3; kind++) {
            float p1 = kind == 2 ? 0.1f : 0.2f, p2 = 0.8f;
            CHECK_OK(sm_mine_pairs(emb, lab, NB, DB, (sm_pair_miner)kind, p1, p2, pp, NB * NB, &np, nn, NB * NB, &nq));
            int64_t cp = 0, cq = 0;
            for (int i = 0; i < NB; i++) {
                double maxneg = -INFINITY, minpos = INFINITY;
                for (int j = 0; j < NB; j++) {
                    if (j == i) continue;
                    if (lab[j] == lab[i] && S[i * NB + j] < minpos) minpos = S[i * NB + j];
                    if (lab[j] != lab[i] && S[i * NB + j] > maxneg) maxneg = S[i * NB + j];
                }
                for (int j = 0; j < NB; j++) {
                    if (j == i) continue;
                    int pos = lab[j] == lab[i];
                    double dd = D[i * NB + j], ss = S[i * NB + j];
                    int keep = kind == 0 ? 1 : kind == 1 ? (pos ? dd > 0.2 : dd < 0.8)
                             : (pos ? ss - 0.1 < maxneg : ss + 0.1 > minpos);
                    if (!keep) continue;
                    if (pos) { CHECK(cp < np && pp[2 * cp] == i && pp[2 * cp + 1] == j); cp++; }
                    else { CHECK(cq < nq && nn[2 * cq] == i && nn[2 * cq + 1] == j); cq++; }
                }
            }
            CHECK_MSG(cp == np && cq == nq, "pair miner %d: %lld/%lld pairs, reference %lld/%lld", kind,
                      (long long)np, (long long)nq, (long long)cp, (long long)cq);
        }
    }
    CHECK(done == 5);

    /* Capacity: count-only query, then a too-small buffer is SM_ERR_RANGE with the count. */
    float emb[NB * DB];
    int32_t lab[NB], tr[3 * 4];
    draw(&r, emb, lab, NB, DB);
    int64_t cnt = 0, cnt2 = 0;
    CHECK_OK(sm_mine_triplets(emb, lab, NB, DB, SM_TRIPLETS_ALL, 0.2f, NULL, 0, &cnt));
    CHECK(cnt == 3 * 2 * 5 * 2 + 2 * 1 * 6); /* classes of 3, 3, 2 out of 8 */
    CHECK_STATUS(sm_mine_triplets(emb, lab, NB, DB, SM_TRIPLETS_ALL, 0.2f, tr, 4, &cnt2), SM_ERR_RANGE);
    CHECK(cnt2 == cnt);
    int64_t np = 0, nq = 0;
    CHECK_OK(sm_mine_pairs(emb, lab, NB, DB, SM_PAIRS_ALL, 0, 0, NULL, 0, &np, NULL, 0, &nq));
    CHECK(np == 3 * 2 + 3 * 2 + 2 * 1 && nq == 64 - 8 - np);
    CHECK_STATUS(sm_mine_triplets(emb, lab, NB, DB, (sm_triplet_miner)7, 0.2f, NULL, 0, &cnt), SM_ERR_INVALID);
    CHECK_STATUS(sm_mine_triplets(emb, lab, -1, DB, SM_TRIPLETS_ALL, 0.2f, NULL, 0, &cnt), SM_ERR_INVALID);
    CHECK_OK(sm_mine_triplets(emb, lab, 0, DB, SM_TRIPLETS_HARD, 0.2f, NULL, 0, &cnt));
    CHECK(cnt == 0);
    float bad[2] = {NAN, 1.0f};
    CHECK_STATUS(sm_mine_pairs(bad, lab, 1, 2, SM_PAIRS_ALL, 0, 0, NULL, 0, &np, NULL, 0, &nq), SM_ERR_NUMERIC);
    /* One class only: no triplets, no negative pairs, MS miner selects nothing. */
    int32_t one[NB] = {0};
    CHECK_OK(sm_mine_triplets(emb, one, NB, DB, SM_TRIPLETS_ALL, 0.2f, NULL, 0, &cnt));
    CHECK(cnt == 0);
    CHECK_OK(sm_mine_pairs(emb, one, NB, DB, SM_PAIRS_MULTISIM, 0.1f, 0, NULL, 0, &np, NULL, 0, &nq));
    CHECK(np == 0 && nq == 0);
    /* Distance matrix: L2 of normalised rows against the reference. */
    float Dm[NB * NB];
    double x[NB * DB], Dr[NB * NB];
    for (int k = 0; k < NB * DB; k++) x[k] = emb[k];
    ref_dist(x, NB, DB, D_L2, 1, Dr);
    CHECK_OK(sm_distance_matrix(emb, NB, DB, "euclidean", 1, Dm));
    double err = 0;
    for (int k = 0; k < NB * NB; k++) err = fmax(err, fabs(Dm[k] - Dr[k]));
    CHECK(err < 1e-5);
    CHECK_STATUS(sm_distance_matrix(emb, NB, DB, "manhattan", 1, Dm), SM_ERR_INVALID);
}

/* ======================================================================================== */
/* Edge cases and the large batch                                                            */
/* ======================================================================================== */

static int all_finite(const float *g, int m) {
    for (int k = 0; k < m; k++) if (!isfinite(g[k])) return 0;
    return 1;
}

static const char *const edge_losses[][2] = {
    {"contrastive", ""}, {"contrastive", "squared=1"}, {"triplet", ""}, {"triplet", "miner=hard"},
    {"triplet", "miner=semihard"}, {"triplet", "distance=sqeuclidean,normalize=0"}, {"npair", ""},
    {"multisimilarity", ""}, {"multisimilarity", "miner=none"}, {"arcface", "classes=3"},
    {"cosface", "classes=3"}, {"proxyanchor", "classes=3"}, {"supcon", ""},
};

static void edge_cases(void) {
    const int NE = (int)(sizeof edge_losses / sizeof edge_losses[0]);
    for (int e = 0; e < NE; e++) {
        const char *name = edge_losses[e][0], *opt = edge_losses[e][1];
        int head = !strcmp(name, "arcface") || !strcmp(name, "cosface") || !strcmp(name, "proxyanchor");
        sm_loss *l = NULL;
        CHECK_OK(sm_loss_create(&l, name, opt, DB, 3));
        if (!l) continue;
        float emb[NB * DB], g[NB * DB], v;
        int32_t lab[NB];
        sm_rng r;
        sm_rng_seed(&r, 5);
        draw(&r, emb, lab, NB, DB);
        /* n = 0 */
        v = -1;
        CHECK_OK(sm_loss_compute(l, emb, lab, 0, DB, &v, g));
        CHECK_MSG(v == 0.0f, "%s(%s): n=0 gives %g", name, opt, (double)v);
        /* n = 1 */
        for (int k = 0; k < DB; k++) g[k] = NAN;
        CHECK_OK(sm_loss_compute(l, emb, lab, 1, DB, &v, g));
        CHECK_MSG(isfinite(v) && all_finite(g, DB) && (head || (v == 0.0f && g[0] == 0.0f)),
                  "%s(%s): n=1 gives %g", name, opt, (double)v);
        /* Losses whose every term needs a positive and a negative give exactly 0 without
         * one; contrastive and multisimilarity with miner=none keep their pure positive /
         * negative terms (PML semantics); the heads always have a loss. */
        int pairwise = !strcmp(name, "contrastive") || !strcmp(opt, "miner=none");
        /* one class only: no negatives */
        int32_t one[NB] = {0};
        for (int k = 0; k < NB * DB; k++) g[k] = NAN;
        CHECK_OK(sm_loss_compute(l, emb, one, NB, DB, &v, g));
        int zero = 1;
        for (int k = 0; k < NB * DB; k++) zero &= g[k] == 0.0f;
        CHECK_MSG(isfinite(v) && all_finite(g, NB * DB) && (head || pairwise || (v == 0.0f && zero)),
                  "%s(%s): one class gives %g", name, opt, (double)v);
        /* all labels distinct: no positives */
        const int32_t distinct[3] = {0, 1, 2};
        for (int k = 0; k < 3 * DB; k++) g[k] = NAN;
        CHECK_OK(sm_loss_compute(l, emb, distinct, 3, DB, &v, g));
        zero = 1;
        for (int k = 0; k < 3 * DB; k++) zero &= g[k] == 0.0f;
        CHECK_MSG(isfinite(v) && all_finite(g, 3 * DB) && (head || pairwise || (v == 0.0f && zero)),
                  "%s(%s): no positive gives %g", name, opt, (double)v);
        /* identical embeddings, zero embeddings, tiny and huge scales */
        const float scales[4] = {1.0f, 0.0f, 1e-30f, 1e30f};
        for (int s = 0; s < 4; s++) {
            float same[NB * DB];
            for (int i = 0; i < NB; i++)
                for (int k = 0; k < DB; k++) same[i * DB + k] = scales[s] * (k == 0 ? 1.0f : 0.5f);
            if (!strcmp(opt, "distance=sqeuclidean,normalize=0") && s == 3) continue; /* overflows */
            sm_status st = sm_loss_compute(l, same, lab, NB, DB, &v, g);
            CHECK_MSG(st == SM_OK && isfinite(v) && all_finite(g, NB * DB),
                      "%s(%s): identical rows x %g give %g", name, opt, (double)scales[s], (double)v);
        }
        /* huge and tiny random scales */
        for (int s = 0; s < 2; s++) {
            float sc[NB * DB];
            for (int k = 0; k < NB * DB; k++) sc[k] = emb[k] * (s ? 1e18f : 1e-18f);
            if (!strcmp(opt, "distance=sqeuclidean,normalize=0") && s) continue;
            CHECK_OK(sm_loss_compute(l, sc, lab, NB, DB, &v, g));
            CHECK_MSG(isfinite(v) && all_finite(g, NB * DB), "%s(%s): scale %d gives %g", name, opt, s, (double)v);
        }
        /* non-finite input and dimension mismatch are errors */
        float nanemb[NB * DB];
        memcpy(nanemb, emb, sizeof nanemb);
        nanemb[3] = NAN;
        CHECK_STATUS(sm_loss_compute(l, nanemb, lab, NB, DB, &v, g), SM_ERR_NUMERIC);
        CHECK_STATUS(sm_loss_compute(l, emb, lab, NB, DB + 1, &v, g), SM_ERR_MISMATCH);
        if (head) {
            int32_t big[NB];
            memcpy(big, lab, sizeof big);
            big[2] = 3;
            CHECK_STATUS(sm_loss_compute(l, emb, big, NB, DB, &v, g), SM_ERR_RANGE);
        }
        sm_loss_free(l);
    }
    /* Option errors. */
    sm_loss *l = NULL;
    CHECK_STATUS(sm_loss_create(&l, "arcface", "", DB, 1), SM_ERR_INVALID);
    CHECK_STATUS(sm_loss_create(&l, "proxyanchor", "classes=0", DB, 1), SM_ERR_INVALID);
    CHECK_STATUS(sm_loss_create(&l, "triplet", "miner=random", DB, 1), SM_ERR_INVALID);
    CHECK_STATUS(sm_loss_create(&l, "triplet", "reducer=max", DB, 1), SM_ERR_INVALID);
    CHECK_STATUS(sm_loss_create(&l, "triplet", "distance=manhattan", DB, 1), SM_ERR_INVALID);
    CHECK_STATUS(sm_loss_create(&l, "contrastive", "squared=2", DB, 1), SM_ERR_INVALID);
    CHECK_STATUS(sm_loss_create(&l, "multisimilarity", "beta=0", DB, 1), SM_ERR_INVALID);
    CHECK_STATUS(sm_loss_create(&l, "supcon", "temperature=-1", DB, 1), SM_ERR_INVALID);
    CHECK_STATUS(sm_loss_create(&l, "supcon", "tau=1", DB, 1), SM_ERR_INVALID);
    CHECK(l == NULL);
    /* Every kind is registered with a help line. */
    const char *names[] = {"contrastive", "triplet", "npair", "multisimilarity", "arcface", "cosface",
                           "proxyanchor", "supcon"};
    for (int i = 0; i < 8; i++) {
        const sm_loss_kind *k = sm_loss_kind_find(names[i]);
        CHECK_MSG(k && k->help && strlen(k->help) > 20, "kind %s", names[i]);
    }
}

/* arcface / cosface / proxyanchor logits: s cos(f, W_c) without margin (cos for proxies). */
static void check_logits(void) {
    const char *nm[3] = {"arcface", "cosface", "proxyanchor"};
    for (int t = 0; t < 3; t++) {
        sm_loss *l = NULL;
        CHECK_OK(sm_loss_create(&l, nm[t], t < 2 ? "classes=3,scale=10" : "classes=3", DB, 4));
        if (!l) continue;
        CHECK(l->classes == 3 && l->kind->logits);
        float emb[NB * DB], z[NB * 3];
        int32_t lab[NB];
        sm_rng r;
        sm_rng_seed(&r, 11);
        draw(&r, emb, lab, NB, DB);
        CHECK_OK(l->kind->logits(l, emb, NB, z));
        double x[NB * DB], f[NB * DB];
        for (int k = 0; k < NB * DB; k++) x[k] = emb[k];
        ref_normalize(x, NB, DB, f);
        double err = 0;
        for (int i = 0; i < NB; i++)
            for (int c = 0; c < 3; c++) {
                double dot = 0, nw = 0;
                for (int k = 0; k < DB; k++) {
                    double w = t < 2 ? l->params[k * 3 + c] : l->params[c * DB + k];
                    dot += f[i * DB + k] * w;
                    nw += w * w;
                }
                err = fmax(err, fabs(z[i * 3 + c] - (t < 2 ? 10.0 : 1.0) * dot / sqrt(nw)));
            }
        CHECK_MSG(err < 1e-4, "%s logits error %g", nm[t], err);
        sm_loss_free(l);
    }
}

/* n = 1024 all triplets (about 1e8 of them): O(n^2) memory, a few seconds at most. */
static void large_batch(void) {
    const int n = 1024, d = 32;
    float *emb = malloc(sizeof(float) * n * d), *g = malloc(sizeof(float) * n * d);
    int32_t *lab = malloc(sizeof(int32_t) * n);
    sm_rng r;
    sm_rng_seed(&r, 17);
    for (int k = 0; k < n * d; k++) emb[k] = sm_rng_normal(&r);
    for (int i = 0; i < n; i++) lab[i] = i % 10;
    sm_loss *l;
    CHECK_OK(sm_loss_create(&l, "triplet", "margin=0.2", d, 1));
    double t0 = sm_now();
    float v = 0;
    CHECK_OK(sm_loss_compute(l, emb, lab, n, d, &v, g));
    double dt = sm_now() - t0;
    printf("triplet n=%d all triplets: loss %.6f in %.2f s\n", n, (double)v, dt);
    CHECK(isfinite(v) && v > 0 && all_finite(g, n * d));
    CHECK_MSG(dt < 20.0, "n=1024 all-triplets took %.1f s", dt);
    sm_loss_free(l);
    /* sum / mean = the number of triplets visited, sum_c |c| (|c| - 1) (n - |c|): four classes
     * of 103 samples and six of 102. */
    float vs = 0, vm = 0;
    CHECK_OK(sm_loss_create(&l, "triplet", "margin=0.2,reducer=sum", d, 1));
    CHECK_OK(sm_loss_compute(l, emb, lab, n, d, &vs, NULL));
    sm_loss_free(l);
    CHECK_OK(sm_loss_create(&l, "triplet", "margin=0.2,reducer=mean", d, 1));
    CHECK_OK(sm_loss_compute(l, emb, lab, n, d, &vm, NULL));
    sm_loss_free(l);
    double ratio = (double)vs / vm, want = 4.0 * 103 * 102 * 921 + 6.0 * 102 * 101 * 922;
    printf("triplets visited: %.0f (expected %.0f)\n", ratio, want);
    CHECK(fabs(ratio / want - 1) < 1e-3);
    free(emb); free(g); free(lab);
}

int main(void) {
    sm_set_num_threads(2);
    const int NC = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < NC; i++) check_case(&cases[i], 100 + (uint64_t)i);
    hand_cases();
    seed_triplet();
    check_miners();
    edge_cases();
    check_logits();
    large_batch();
    TEST_MAIN_END();
}
