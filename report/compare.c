/* compare.c - the softmax-versus-metric-learning experiment (docs/report.md): train one network
 * with each loss on the seen classes, then measure every model the same way: retrieval on the
 * unseen classes, few-shot enrolment, open-set identification, verification ROC, closed-set
 * accuracy on the seen classes, embedding structure, a 2-D PCA picture; then the same losses
 * trained on a few images a class.  Everything is computed through the public API, so the
 * figures agree with `simile eval` on the saved models. */
#include "report/report.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>


void sm_compare_config_default(sm_compare_config *c) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->model_spec = "cnn-s";
    c->num_losses = 4;
    c->losses[0] = "softmax";         c->loss_options[0] = "";
    c->losses[1] = "multisimilarity"; c->loss_options[1] = "";
    c->losses[2] = "triplet";         c->loss_options[2] = "margin=0.1,miner=semihard";
    c->losses[3] = "contrastive";     c->loss_options[3] = "";
    c->seen_classes = "0-4";
    c->unseen_classes = "5-9";
    c->epochs = 5;
    c->batch_size = 128;
    c->lr = 1e-3f;
    c->optimizer = SM_OPT_ADAM;
    c->per_class = 32;
    c->seed = 1;
    c->gallery_per_class = 1000;
    c->shots = 5;
    c->open_known = 3;
    c->calib_per_class = 200;
    c->far = 0.01;
    c->pairs_per_class = 200;
    c->triplet_samples = 100000;
    c->triplet_margin = 0.1f;
    c->scatter_per_class = 300;
    c->few_per_class = 20;
    c->few_epochs = 100;
}

/* ---- small helpers ----------------------------------------------------------------------- */

static void logf_(const sm_compare_config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const sm_compare_config *c, const char *fmt, ...) {
    if (!c->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->log(line, c->user);
}

/* Losses whose classifier head (or proxies) needs classes=C. */
static int needs_classes(const char *loss) {
    return !strcmp(loss, "softmax") || !strcmp(loss, "focal") || !strcmp(loss, "arcface") ||
           !strcmp(loss, "cosface") || !strcmp(loss, "proxyanchor");
}
/* Losses trained on shuffled batches (as `simile train`): the plain classifiers. */
static int shuffled_batches(const char *loss) { return !strcmp(loss, "softmax") || !strcmp(loss, "focal"); }

static int in_list(int32_t y, const int32_t *cls, int n) {
    for (int i = 0; i < n; i++) if (cls[i] == y) return 1;
    return 0;
}

/* New dataset with the samples of ds whose label is in cls[0..ncls) and whose position within
 * their class (file order) is in [start, start + count) (count <= 0: to the end).  Every class
 * must keep at least one sample (SM_ERR_RANGE, naming it). */
static sm_status subset(sm_dataset **out, const sm_dataset *ds, const int32_t *cls, int ncls,
                        int64_t start, int64_t count) {
    int64_t n = sm_dataset_size(ds);
    int h, w, c;
    sm_dataset_shape(ds, &h, &w, &c);
    const int64_t dim = (int64_t)h * w * c;
    const int32_t *y = sm_dataset_labels(ds);
    const float *x = sm_dataset_images(ds);
    int64_t seen[SM_REP_MAX_CLASSES] = {0}, kept[SM_REP_MAX_CLASSES] = {0}, m = 0;
    int64_t *rows = rep_alloc((size_t)(n ? n : 1), sizeof(int64_t)); /* (n) selected rows */
    if (!rows) return SM_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) {
        int k = 0;
        while (k < ncls && cls[k] != y[i]) k++;
        if (k == ncls) continue;
        int64_t pos = seen[k]++;
        if (pos >= start && (count <= 0 || pos < start + count)) { rows[m++] = i; kept[k]++; }
    }
    for (int k = 0; k < ncls; k++)
        if (!kept[k]) {
            rep_free(rows);
            return sm_errmsg_set(SM_ERR_RANGE, "class %d has no image at positions %lld.. of its class "
                           "(it has %lld images)", (int)cls[k], (long long)start, (long long)seen[k]);
        }
    float *xs = rep_alloc((size_t)m * (size_t)dim, sizeof(float)); /* (m, h, w, c) */
    int32_t *ys = rep_alloc((size_t)m, sizeof(int32_t));           /* (m) */
    sm_status st = SM_ERR_NOMEM;
    if (xs && ys) {
        for (int64_t i = 0; i < m; i++) {
            memcpy(xs + i * dim, x + rows[i] * dim, (size_t)dim * sizeof(float));
            ys[i] = y[rows[i]];
        }
        st = sm_dataset_from_arrays(out, xs, ys, m, h, w, c);
    }
    rep_free(rows); rep_free(xs); rep_free(ys);
    return st;
}

/* L2-normalised embeddings (n, d) of a dataset, normalised exactly as `simile eval` does. */
static sm_status embed_norm(sm_dist *g, sm_model *m, const sm_dataset *ds, float **out) {
    int64_t n = sm_dataset_size(ds);
    int d = sm_model_embedding_dim(m);
    float *e = rep_alloc((size_t)(n ? n : 1) * (size_t)d, sizeof(float)); /* (n, d) */
    if (!e) return SM_ERR_NOMEM;
    sm_status st = sm_model_embed_dist(m, g, sm_dataset_images(ds), n, e); /* each rank its share */
    if (st) { rep_free(e); return st; }
    sm_embeddings_normalize(e, n, d);
    *out = e;
    return SM_OK;
}

static double l2(const float *a, const float *b, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) { double t = (double)a[j] - b[j]; s += t * t; }
    return sqrt(s);
}

/* Nearest-neighbour labels of queries q (nq, d) in a labelled set db (n, d) -> pred (nq), and
 * optionally the Euclidean distance to it (dist, nq). */
static sm_status nn_labels(const float *db, const int32_t *dby, int64_t n, const float *q, int64_t nq, int d,
                           int32_t *pred, double *dist) {
    float *dd = rep_alloc((size_t)(nq ? nq : 1), sizeof(float));   /* (nq) squared distances */
    int64_t *ix = rep_alloc((size_t)(nq ? nq : 1), sizeof(int64_t)); /* (nq) */
    if (!dd || !ix) { rep_free(dd); rep_free(ix); return SM_ERR_NOMEM; }
    sm_status st = sm_knn_search(db, n, q, nq, d, 1, SM_METRIC_L2, 0, dd, ix);
    if (!st)
        for (int64_t i = 0; i < nq; i++) {
            pred[i] = ix[i] >= 0 ? dby[ix[i]] : -1;
            if (dist) dist[i] = ix[i] >= 0 ? l2(q + i * d, db + ix[i] * d, d) : INFINITY;
        }
    rep_free(dd); rep_free(ix);
    return st;
}

/* Class centroids of e (n, d): means per class of cls[0..ncls), re-normalised, into cen
 * (ncls, d) with labels cy (ncls); acc (d) is scratch. */
static void centroids(const float *e, const int32_t *y, int64_t n, int d, const int32_t *cls, int ncls,
                      float *cen, int32_t *cy, double *acc) {
    for (int k = 0; k < ncls; k++) {
        double s = 0;
        int64_t cnt = 0;
        memset(acc, 0, (size_t)d * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            if (y[i] == cls[k]) { for (int j = 0; j < d; j++) acc[j] += e[i * d + j]; cnt++; }
        for (int j = 0; j < d; j++) { acc[j] /= cnt ? (double)cnt : 1.0; s += acc[j] * acc[j]; }
        double inv = s > 0 ? 1 / sqrt(s) : 0;
        for (int j = 0; j < d; j++) cen[(size_t)k * d + j] = (float)(acc[j] * inv);
        cy[k] = cls[k];
    }
}

/* Accuracy of nearest neighbour and nearest centroid classification of queries (q, qy) against a
 * labelled gallery (g, gy) of classes cls; each query's 1 (right) or 0 into q_nn and q_cen (nq)
 * where not NULL. */
static sm_status nn_centroid_acc(const float *g, const int32_t *gy, int64_t ng, const float *q, const int32_t *qy,
                                 int64_t nq, int d, const int32_t *cls, int ncls, double *acc_nn, double *acc_cen,
                                 float *q_nn, float *q_cen) {
    int32_t *pred = rep_alloc((size_t)(nq ? nq : 1), sizeof(int32_t)); /* (nq) */
    float *cen = rep_alloc((size_t)ncls * d, sizeof(float));           /* (ncls, d) */
    double *acc = rep_alloc((size_t)d, sizeof(double));               /* (d) scratch */
    int32_t cy[SM_REP_MAX_CLASSES];
    if (!pred || !cen || !acc) { rep_free(pred); rep_free(cen); rep_free(acc); return SM_ERR_NOMEM; }
    sm_status st = nn_labels(g, gy, ng, q, nq, d, pred, NULL);
    int64_t ok = 0;
    if (!st) {
        for (int64_t i = 0; i < nq; i++) { ok += pred[i] == qy[i]; if (q_nn) q_nn[i] = pred[i] == qy[i]; }
        *acc_nn = nq ? (double)ok / (double)nq : NAN;
        centroids(g, gy, ng, d, cls, ncls, cen, cy, acc);
        st = nn_labels(cen, cy, ncls, q, nq, d, pred, NULL);
    }
    if (!st) {
        ok = 0;
        for (int64_t i = 0; i < nq; i++) { ok += pred[i] == qy[i]; if (q_cen) q_cen[i] = pred[i] == qy[i]; }
        *acc_cen = nq ? (double)ok / (double)nq : NAN;
    }
    rep_free(pred); rep_free(cen); rep_free(acc);
    return st;
}

/* Fraction of `samples` random triplets (anchor, positive of its class, negative of another) of
 * e (n, d) with d(a, n) - d(a, p) > margin.  NaN if no triplet exists. */
static sm_status triplet_fraction(const float *e, const int32_t *y, int64_t n, int d, int64_t samples, float margin,
                                  uint64_t seed, double *out) {
    int32_t labs[SM_REP_MAX_CLASSES * 2];
    int nl = 0;
    for (int64_t i = 0; i < n; i++) {
        int k = 0;
        while (k < nl && labs[k] != y[i]) k++;
        if (k == nl && nl < SM_REP_MAX_CLASSES * 2) labs[nl++] = y[i];
    }
    int64_t *byc = rep_alloc((size_t)(n ? n : 1), sizeof(int64_t));      /* (n) rows grouped by class */
    int64_t *start = rep_calloc((size_t)nl + 1, sizeof(int64_t));         /* (nl + 1) group offsets */
    if (!byc || !start) { rep_free(byc); rep_free(start); return SM_ERR_NOMEM; }
    int64_t pos = 0;
    for (int k = 0; k < nl; k++) {
        start[k] = pos;
        for (int64_t i = 0; i < n; i++) if (y[i] == labs[k]) byc[pos++] = i;
    }
    start[nl] = pos;
    int usable = 0;
    for (int k = 0; k < nl; k++) usable += start[k + 1] - start[k] >= 2;
    *out = NAN;
    if (nl < 2 || !usable || samples <= 0) { rep_free(byc); rep_free(start); return SM_OK; }
    rep_rng rng;
    rep_rng_seed(&rng, seed);
    int64_t good = 0, done = 0;
    while (done < samples) {
        int64_t g = (int64_t)rep_rng_below(&rng, (uint64_t)n); /* position in byc */
        int k = 0;
        while (start[k + 1] <= g) k++;
        int64_t cs = start[k + 1] - start[k];
        if (cs < 2) continue;
        int64_t a = byc[g];
        int64_t p = byc[start[k] + (int64_t)rep_rng_below(&rng, (uint64_t)(cs - 1))];
        if (p == a) p = byc[start[k + 1] - 1];
        int64_t r = (int64_t)rep_rng_below(&rng, (uint64_t)(n - cs)); /* a row outside class k */
        int64_t ng = r < start[k] ? byc[r] : byc[r + cs];
        double dap = l2(e + a * d, e + p * d, d), dan = l2(e + a * d, e + ng * d, d);
        good += dan - dap > margin;
        done++;
    }
    *out = (double)good / (double)samples;
    rep_free(byc); rep_free(start);
    return SM_OK;
}

/* Verification on all pairs of the rows sel[0..m) of e: ROC (log-spaced FAR grid), AUC, EER,
 * TAR at 1e-2 and 1e-3, and distance histograms. */
static sm_status verification(const float *e, const int32_t *y, const int64_t *sel, int64_t m, int d,
                              sm_rep_model *R) {
    int64_t np = m * (m - 1) / 2;
    float *score = rep_alloc((size_t)(np ? np : 1), sizeof(float));   /* (np) minus distance */
    int8_t *gen = rep_alloc((size_t)(np ? np : 1), sizeof(int8_t));   /* (np) same class */
    double *far = NULL, *tar = NULL;
    float *thr = NULL;
    sm_status st = SM_ERR_NOMEM;
    if (!score || !gen) goto done;
    int64_t k = 0, ngen = 0;
    double hg[SM_REP_BINS] = {0}, hi[SM_REP_BINS] = {0};
    for (int64_t a = 0; a < m; a++)
        for (int64_t b = a + 1; b < m; b++, k++) {
            double dist = l2(e + sel[a] * d, e + sel[b] * d, d);
            score[k] = (float)-dist;
            gen[k] = y[sel[a]] == y[sel[b]];
            ngen += gen[k];
            int bin = (int)(dist / 2.0 * SM_REP_BINS);
            if (bin >= SM_REP_BINS) bin = SM_REP_BINS - 1;
            if (bin < 0) bin = 0;
            if (gen[k]) hg[bin]++; else hi[bin]++;
        }
    double bw = 2.0 / SM_REP_BINS;
    for (int i = 0; i < SM_REP_BINS; i++) {
        R->hist_gen[i] = ngen ? hg[i] / ((double)ngen * bw) : 0;
        R->hist_imp[i] = np > ngen ? hi[i] / ((double)(np - ngen) * bw) : 0;
    }
    if (!ngen || ngen == np) { st = sm_errmsg_set(SM_ERR_RANGE, "verification pairs need two classes with two images each"); goto done; }
    int64_t cnt;
    if ((st = sm_roc(score, gen, np, NULL, NULL, NULL, 0, &cnt))) goto done;
    st = SM_ERR_NOMEM;
    far = rep_alloc((size_t)cnt, sizeof(double)); /* (cnt) */
    tar = rep_alloc((size_t)cnt, sizeof(double)); /* (cnt) */
    thr = rep_alloc((size_t)cnt, sizeof(float));  /* (cnt) */
    if (!far || !tar || !thr) goto done;
    if ((st = sm_roc(score, gen, np, far, tar, thr, cnt, &cnt))) goto done;
    int64_t j = 0;
    for (int i = 0; i < SM_REP_ROC_POINTS; i++) {
        double f = pow(10.0, -4.0 + 4.0 * i / (SM_REP_ROC_POINTS - 1));
        while (j + 1 < cnt && far[j + 1] <= f) j++;
        R->roc_far[i] = f;
        R->roc_tar[i] = tar[j];
    }
    R->roc_n = SM_REP_ROC_POINTS;
    if ((st = sm_roc_auc(score, gen, np, &R->ver_auc))) goto done;
    if ((st = sm_eer(score, gen, np, &R->ver_eer, NULL))) goto done;
    if ((st = sm_tar_at_far(score, gen, np, 1e-2, &R->ver_tar_1e2, NULL))) goto done;
    st = sm_tar_at_far(score, gen, np, 1e-3, &R->ver_tar_1e3, NULL);
done:
    rep_free(score); rep_free(gen); rep_free(far); rep_free(tar); rep_free(thr);
    return st;
}

/* ---- the experiment ---------------------------------------------------------------------- */

typedef struct ctx {
    const sm_compare_config *cfg;
    sm_report *r;
    sm_dataset *train_seen, *test_seen, *test_unseen, *shots, *calib, *gallery;
    float *shots_e;   /* (nshots, d) of the current model */
    /* progress wrapper state */
    sm_rep_model *cur;
    int64_t cap;
    double prev_mean;
} ctx;

static int progress_hook(const sm_train_progress *p, void *user) {
    ctx *c = user;
    sm_rep_model *R = c->cur;
    if (R->curve_n >= c->cap) {
        int64_t cap = c->cap ? c->cap * 2 : 1024;
        double *nc = realloc(R->curve, (size_t)cap * sizeof(double));
        if (!nc) return 0; /* keep training; the curve just stops growing */
        R->curve = nc;
        c->cap = cap;
    }
    /* the running mean of the epoch -> this batch's loss (exact for equal batch sizes) */
    double batch_loss = p->step == 1 ? p->loss : (double)p->step * p->loss - (double)(p->step - 1) * c->prev_mean;
    c->prev_mean = p->loss;
    if (R->curve_n < c->cap) R->curve[R->curve_n++] = batch_loss;
    R->steps_per_epoch = p->steps_per_epoch;
    if (p->epoch_done) { R->final_loss = p->loss; }
    return c->cfg->progress ? c->cfg->progress(p, c->cfg->user) : 0;
}

/* Train one model on ds with loss index li; fills the training fields of R. */
static sm_status train_one(ctx *c, int li, const sm_dataset *ds, int epochs, int per_class, sm_rep_model *R,
                           sm_model **out) {
    const sm_compare_config *cfg = c->cfg;
    const char *loss_name = cfg->losses[li], *opts = cfg->loss_options[li] ? cfg->loss_options[li] : "";
    int h, w, ch;
    sm_dataset_shape(ds, &h, &w, &ch);
    sm_model *m = NULL;
    sm_loss *loss = NULL;
    sm_status st = sm_model_create(&m, cfg->model_spec, h, w, ch, cfg->seed);
    if (st) return st;
    if (needs_classes(loss_name) && !strstr(opts, "classes="))
        snprintf(R->options, sizeof R->options, "classes=%d%s%s", sm_dataset_num_classes(ds), *opts ? "," : "", opts);
    else
        snprintf(R->options, sizeof R->options, "%s", opts);
    snprintf(R->loss, sizeof R->loss, "%s", loss_name);
    if ((st = sm_loss_create(&loss, loss_name, R->options, sm_model_embedding_dim(m), cfg->seed + 1))) {
        sm_model_free(m);
        return st;
    }
    sm_train_config tc;
    sm_train_config_default(&tc);
    tc.epochs = epochs;
    tc.batch_size = cfg->batch_size;
    tc.lr = cfg->lr;
    tc.optimizer = (sm_optimizer)cfg->optimizer;
    tc.schedule = (sm_schedule)cfg->schedule;
    if (tc.optimizer == SM_OPT_ADAMW) tc.weight_decay = 0.01f;
    tc.per_class = shuffled_batches(loss_name) ? 0 : per_class;
    tc.seed = cfg->seed;
    tc.progress = progress_hook;
    tc.user = c;
    tc.dist = cfg->dist;
    tc.grad_shards = cfg->grad_shards;
    c->cur = R;
    c->cap = 0;
    c->prev_mean = 0;
    R->train_images = sm_dataset_size(ds);
    R->epochs = epochs;
    double t0 = rep_now();
    st = sm_train(m, loss, ds, &tc);
    R->train_seconds = rep_now() - t0;
    R->images_per_sec = R->train_seconds > 0 ? (double)R->train_images * epochs / R->train_seconds : 0;
    sm_loss_free(loss);
    if (st) {
        char msg[SM_REP_ERRMSG_MAX + 64];
        snprintf(msg, sizeof msg, "training %s: %s", loss_name, sm_model_errmsg(m));
        sm_model_free(m);
        return sm_errmsg_set(st, "%s", msg);
    }
    *out = m;
    return SM_OK;
}

/* Allocate R's per-query array k of n floats, all NaN; NULL without memory. */
static float *qalloc(sm_rep_model *R, int k, int64_t n) {
    R->q[k] = rep_alloc((size_t)(n ? n : 1), sizeof(float));
    R->qn[k] = R->q[k] ? n : 0;
    for (int64_t i = 0; R->q[k] && i < n; i++) R->q[k][i] = NAN;
    return R->q[k];
}

/* Retrieval figures of e (n, d) into res and the per-query arrays k0 (P@1), k0+1 (R-precision),
 * k0+2 (AP@R) of R. */
static sm_status retrieval(sm_rep_model *R, int k0, const float *e, const int32_t *y, int64_t n, int d,
                           sm_retrieval_result *res) {
    double *buf = rep_alloc((size_t)(3 * (n ? n : 1)), sizeof(double)); /* (3, n) */
    if (!buf || !qalloc(R, k0, n) || !qalloc(R, k0 + 1, n) || !qalloc(R, k0 + 2, n)) { rep_free(buf); return SM_ERR_NOMEM; }
    sm_status st = sm_retrieval_metrics_per_query(e, y, n, d, SM_METRIC_L2, res, buf + 2 * n, buf + n, buf);
    for (int64_t i = 0; !st && i < n; i++)
        for (int j = 0; j < 3; j++) R->q[k0 + j][i] = (float)buf[j * n + i];
    rep_free(buf);
    return st;
}

/* Each image's mean L2 distance to the other images of its class (intra, NaN if it is alone)
 * and to the images of other classes (inter, NaN if none), e (n, d). */
static void per_image_distances(const float *e, const int32_t *y, int64_t n, int d, float *intra, float *inter) {
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; i++) {
        double si = 0, sx = 0;
        int64_t ni = 0, nx = 0;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double v = l2(e + i * d, e + j * d, d);
            if (y[j] == y[i]) { si += v; ni++; } else { sx += v; nx++; }
        }
        intra[i] = ni ? (float)(si / (double)ni) : NAN;
        inter[i] = nx ? (float)(sx / (double)nx) : NAN;
    }
}

/* Build the model and every loss as train_one will, and free them: a bad spec, loss name or loss
 * option is refused before anything is trained or written. */
static sm_status check_models(const sm_compare_config *cfg, const sm_dataset *ds) {
    int h, w, ch;
    sm_dataset_shape(ds, &h, &w, &ch);
    sm_model *m = NULL;
    sm_status st = sm_model_create(&m, cfg->model_spec, h, w, ch, cfg->seed);
    if (st) return st;
    for (int i = 0; i < cfg->num_losses && !st; i++) {
        const char *opts = cfg->loss_options[i] ? cfg->loss_options[i] : "";
        char o[sizeof ((sm_rep_model *)0)->options];
        if (needs_classes(cfg->losses[i]) && !strstr(opts, "classes="))
            snprintf(o, sizeof o, "classes=%d%s%s", sm_dataset_num_classes(ds), *opts ? "," : "", opts);
        else
            snprintf(o, sizeof o, "%s", opts);
        sm_loss *loss = NULL;
        st = sm_loss_create(&loss, cfg->losses[i], o, sm_model_embedding_dim(m), cfg->seed + 1);
        sm_loss_free(loss);
    }
    sm_model_free(m);
    return st;
}

/* Evaluate model m into R; full = 0 for the few-samples runs (no open set, ROC, PCA). */
static sm_status evaluate(ctx *c, sm_model *m, sm_rep_model *R, const sm_dataset *gallery, int full) {
    const sm_compare_config *cfg = c->cfg;
    sm_dist *G = cfg->dist; /* under mpirun: each rank embeds its share of every set */
    sm_report *r = c->r;
    int d = sm_model_embedding_dim(m);
    float *eu = NULL, *es = NULL, *eg = NULL, *esh = NULL, *ec = NULL, *logits = NULL, *proj = NULL;
    int32_t *pred = NULL;
    double *dist = NULL;
    int64_t *sel = NULL;
    sm_status st;
    const sm_dataset *tu = c->test_unseen, *ts = c->test_seen;
    int64_t nu = sm_dataset_size(tu), ns = sm_dataset_size(ts), ng = sm_dataset_size(gallery);
    const int32_t *yu = sm_dataset_labels(tu), *ys = sm_dataset_labels(ts), *yg = sm_dataset_labels(gallery);
    if ((st = embed_norm(G, m, tu, &eu)) || (st = embed_norm(G, m, ts, &es)) || (st = embed_norm(G, m, gallery, &eg)) ||
        (st = embed_norm(G, m, c->shots, &esh)))
        goto done;
    /* retrieval and structure */
    if ((st = retrieval(R, SM_REP_Q_P1_U, eu, yu, nu, d, &R->unseen))) goto done;
    if ((st = retrieval(R, SM_REP_Q_P1_S, es, ys, ns, d, &R->seen))) goto done;
    st = SM_ERR_NOMEM;
    if (!qalloc(R, SM_REP_Q_INTRA_U, nu) || !qalloc(R, SM_REP_Q_INTER_U, nu) || !qalloc(R, SM_REP_Q_FS_NN, nu) ||
        !qalloc(R, SM_REP_Q_FS_CEN, nu) || !qalloc(R, SM_REP_Q_NN_S, ns) || !qalloc(R, SM_REP_Q_CEN_S, ns))
        goto done;
    per_image_distances(eu, yu, nu, d, R->q[SM_REP_Q_INTRA_U], R->q[SM_REP_Q_INTER_U]);
    if ((st = sm_intra_inter_distances(eu, yu, nu, d, &R->intra_u, &R->inter_u))) goto done;
    if ((st = sm_intra_inter_distances(es, ys, ns, d, &R->intra_s, &R->inter_s))) goto done;
    if ((st = triplet_fraction(eu, yu, nu, d, cfg->triplet_samples, cfg->triplet_margin, cfg->seed + 7, &R->trip_u)))
        goto done;
    if ((st = triplet_fraction(es, ys, ns, d, cfg->triplet_samples, cfg->triplet_margin, cfg->seed + 8, &R->trip_s)))
        goto done;
    /* few-shot enrolment of the unseen classes */
    int64_t nsh = sm_dataset_size(c->shots);
    const int32_t *ysh = sm_dataset_labels(c->shots);
    if ((st = nn_centroid_acc(esh, ysh, nsh, eu, yu, nu, d, r->unseen, r->nunseen, &R->fewshot_nn,
                              &R->fewshot_centroid, R->q[SM_REP_Q_FS_NN], R->q[SM_REP_Q_FS_CEN])))
        goto done;
    /* closed set on the seen classes */
    if ((st = nn_centroid_acc(eg, yg, ng, es, ys, ns, d, r->seen, r->nseen, &R->acc_nn, &R->acc_centroid,
                              R->q[SM_REP_Q_NN_S], R->q[SM_REP_Q_CEN_S])))
        goto done;
    R->acc_argmax = NAN;
    R->head_classes = sm_model_num_classes(m);
    if (R->head_classes > 0) {
        int C = R->head_classes;
        int64_t nmax = nu > ns ? nu : ns;
        st = SM_ERR_NOMEM;
        logits = rep_alloc((size_t)nmax * C, sizeof(float)); /* (max(ns, nu), C) */
        R->unseen_pred = rep_calloc((size_t)r->nunseen * C, sizeof(int64_t));
        R->unseen_conf = rep_calloc((size_t)r->nunseen, sizeof(double));
        if (!logits || !R->unseen_pred || !R->unseen_conf || !qalloc(R, SM_REP_Q_ARG_S, ns)) goto done;
        if ((st = sm_model_logits_dist(m, G, sm_dataset_images(ts), ns, logits))) goto done;
        int64_t ok = 0;
        for (int64_t i = 0; i < ns; i++) {
            int best = 0;
            for (int j = 1; j < C; j++) if (logits[i * C + j] > logits[i * C + best]) best = j;
            ok += best == ys[i];
            R->q[SM_REP_Q_ARG_S][i] = best == ys[i];
        }
        R->acc_argmax = ns ? (double)ok / (double)ns : NAN;
        if ((st = sm_model_logits_dist(m, G, sm_dataset_images(tu), nu, logits))) goto done;
        int64_t cnt[SM_REP_MAX_CLASSES] = {0};
        for (int64_t i = 0; i < nu; i++) {
            int best = 0;
            for (int j = 1; j < C; j++) if (logits[i * C + j] > logits[i * C + best]) best = j;
            double s = 0;
            for (int j = 0; j < C; j++) s += exp((double)logits[i * C + j] - logits[i * C + best]);
            int k = 0;
            while (k < r->nunseen && r->unseen[k] != yu[i]) k++;
            if (k == r->nunseen) continue;
            R->unseen_pred[(int64_t)k * C + best]++;
            R->unseen_conf[k] += 1.0 / s;
            cnt[k]++;
        }
        for (int k = 0; k < r->nunseen; k++) R->unseen_conf[k] = cnt[k] ? R->unseen_conf[k] / (double)cnt[k] : NAN;
    }
    if (!full) { st = SM_OK; goto done; }

    /* open set: enrol the shots of the first open_known unseen classes */
    {
        int nk = cfg->open_known;
        const int32_t *known = r->unseen;
        int64_t ngk = 0;
        st = SM_ERR_NOMEM;
        float *gk = rep_alloc((size_t)nsh * d, sizeof(float)); /* (ngk, d) enrolled items */
        int32_t *gky = rep_alloc((size_t)nsh, sizeof(int32_t));  /* (ngk) */
        if (!gk || !gky) { rep_free(gk); rep_free(gky); goto done; }
        for (int64_t i = 0; i < nsh; i++)
            if (in_list(ysh[i], known, nk)) { memcpy(gk + ngk * d, esh + i * d, (size_t)d * sizeof(float)); gky[ngk++] = ysh[i]; }
        /* threshold: FAR on pairs (held-out probe, enrolled item) */
        int64_t ncal = sm_dataset_size(c->calib), npair = ncal * ngk;
        const int32_t *ycal = sm_dataset_labels(c->calib);
        float *sc = rep_alloc((size_t)npair, sizeof(float));   /* (npair) minus distance */
        int8_t *gn = rep_alloc((size_t)npair, sizeof(int8_t)); /* (npair) */
        st = SM_ERR_NOMEM;
        if (sc && gn && !(st = embed_norm(G, m, c->calib, &ec))) {
            for (int64_t i = 0; i < ncal; i++)
                for (int64_t j = 0; j < ngk; j++) {
                    sc[i * ngk + j] = (float)-l2(ec + i * d, gk + j * d, d);
                    gn[i * ngk + j] = ycal[i] == gky[j];
                }
            float thr;
            st = sm_tar_at_far(sc, gn, npair, cfg->far, &R->open_calib_tar, &thr);
            if (!st) {
                R->open_threshold = -(double)thr;
                int64_t fa = 0, imp = 0;
                for (int64_t i = 0; i < npair; i++)
                    if (!gn[i]) { imp++; fa += sc[i] >= thr; }
                R->open_calib_far = imp ? (double)fa / (double)imp : NAN;
            }
        }
        if (!st) {
            st = SM_ERR_NOMEM;
            pred = rep_alloc((size_t)nu, sizeof(int32_t));
            dist = rep_alloc((size_t)nu, sizeof(double));
            if (pred && dist && qalloc(R, SM_REP_Q_OPEN_TAR, nu) && qalloc(R, SM_REP_Q_OPEN_REJ, nu) &&
                !(st = nn_labels(gk, gky, ngk, eu, nu, d, pred, dist))) {
                int64_t kn = 0, kok = 0, un = 0, urej = 0;
                for (int64_t i = 0; i < nu; i++) {
                    int accepted = dist[i] <= R->open_threshold;
                    if (in_list(yu[i], known, nk)) {
                        kn++; kok += accepted && pred[i] == yu[i];
                        R->q[SM_REP_Q_OPEN_TAR][i] = accepted && pred[i] == yu[i];
                    } else {
                        un++; urej += !accepted;
                        R->q[SM_REP_Q_OPEN_REJ][i] = !accepted;
                    }
                }
                R->open_tar = kn ? (double)kok / (double)kn : NAN;
                R->open_reject = un ? (double)urej / (double)un : NAN;
            }
        }
        rep_free(gk); rep_free(gky); rep_free(sc); rep_free(gn);
        if (st) goto done;
    }
    /* verification pairs and histograms on the first pairs_per_class of each unseen class */
    {
        st = SM_ERR_NOMEM;
        sel = rep_alloc((size_t)nu, sizeof(int64_t)); /* (m) selected rows */
        if (!sel) goto done;
        int64_t cnt[SM_REP_MAX_CLASSES] = {0}, msel = 0;
        for (int64_t i = 0; i < nu; i++) {
            int k = 0;
            while (k < r->nunseen && r->unseen[k] != yu[i]) k++;
            if (k < r->nunseen && cnt[k]++ < cfg->pairs_per_class) sel[msel++] = i;
        }
        r->n_pairs = msel * (msel - 1) / 2;
        if ((st = verification(eu, yu, sel, msel, d, R))) goto done;
        /* PCA of all unseen embeddings; keep the first scatter_per_class points a class */
        st = SM_ERR_NOMEM;
        proj = rep_alloc((size_t)nu * 2, sizeof(float)); /* (nu, 2) */
        if (!proj) goto done;
        if ((st = sm_pca(eu, nu, d, 2, proj, NULL, R->pca_var))) goto done;
        memset(cnt, 0, sizeof cnt);
        st = SM_ERR_NOMEM;
        R->pca = rep_alloc((size_t)nu * 2, sizeof(float));
        R->pca_y = rep_alloc((size_t)nu, sizeof(int32_t));
        if (!R->pca || !R->pca_y) goto done;
        for (int64_t i = 0; i < nu; i++) {
            int k = 0;
            while (k < r->nunseen && r->unseen[k] != yu[i]) k++;
            if (k < r->nunseen && cnt[k]++ < cfg->scatter_per_class) {
                R->pca[R->pca_n * 2] = proj[i * 2];
                R->pca[R->pca_n * 2 + 1] = proj[i * 2 + 1];
                R->pca_y[R->pca_n++] = yu[i];
            }
        }
        st = SM_OK;
    }
done:
    rep_free(eu); rep_free(es); rep_free(eg); rep_free(esh); rep_free(ec); rep_free(logits); rep_free(proj);
    rep_free(pred); rep_free(dist); rep_free(sel);
    return st;
}

static sm_status check_config(const sm_compare_config *c) {
    if (c->num_losses < 1 || c->num_losses > SM_COMPARE_MAX_LOSSES)
        return sm_errmsg_set(SM_ERR_INVALID, "compare: between 1 and %d losses (got %d)", SM_COMPARE_MAX_LOSSES, c->num_losses);
    for (int i = 0; i < c->num_losses; i++)
        if (!c->losses[i] || !*c->losses[i]) return sm_errmsg_set(SM_ERR_INVALID, "compare: loss %d has no name", i + 1);
    if (!c->model_spec || !c->seen_classes || !c->unseen_classes)
        return sm_errmsg_set(SM_ERR_INVALID, "compare: model spec and class lists are required");
    if (c->epochs < 1 || c->few_epochs < 1) return sm_errmsg_set(SM_ERR_INVALID, "compare: epochs must be >= 1");
    if (c->schedule != SM_SCHED_CONSTANT && c->schedule != SM_SCHED_COSINE)
        return sm_errmsg_set(SM_ERR_INVALID, "compare: schedule must be constant or cosine (got %d)", c->schedule);
    if (c->per_class < 1 || c->per_class > c->batch_size)
        return sm_errmsg_set(SM_ERR_INVALID, "compare: per-class %d must be in 1..batch size %d", c->per_class, c->batch_size);
    if (c->shots < 1 || c->gallery_per_class < 1 || c->calib_per_class < 1 || c->scatter_per_class < 1)
        return sm_errmsg_set(SM_ERR_INVALID, "compare: shots, gallery, calibration and scatter counts must be >= 1");
    if (c->pairs_per_class < 2 || c->pairs_per_class > 500)
        return sm_errmsg_set(SM_ERR_INVALID, "compare: pairs per class must be in 2..500 (got %d)", c->pairs_per_class);
    if (!(c->far > 0 && c->far < 1)) return sm_errmsg_set(SM_ERR_INVALID, "compare: FAR must be in (0, 1)");
    if (c->train_per_class < 0 || c->test_per_class < 0 || c->few_per_class < 0 || c->triplet_samples < 0 ||
        !(c->triplet_margin >= 0))
        return sm_errmsg_set(SM_ERR_INVALID, "compare: negative count or margin");
    return SM_OK;
}

static const char *own(sm_report *r, const char *s) {
    if (!s) return NULL;
    if (r->nowned >= (int)(sizeof r->owned / sizeof r->owned[0])) return "";
    char *copy = rep_strdup(s);
    if (!copy) return "";
    r->owned[r->nowned++] = copy;
    return copy;
}

static void machine_info(sm_report *r) {
    struct utsname u;
    if (uname(&u) == 0) snprintf(r->machine, sizeof r->machine, "%s %s %s", u.sysname, u.release, u.machine);
    sm_compute_info_get(&r->compute);
    snprintf(r->cpu, sizeof r->cpu, "%s (family %d model %d, %s)", r->compute.cpu, r->compute.cpu_family,
             r->compute.cpu_model, r->compute.vector_isa);
    snprintf(r->blas, sizeof r->blas, "%s", r->compute.blas);
#if defined(__clang__) || !defined(__GNUC__)
    snprintf(r->compiler, sizeof r->compiler, "%s", __VERSION__);
#else
    snprintf(r->compiler, sizeof r->compiler, "gcc %s", __VERSION__);
#endif
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(r->date, sizeof r->date, "%Y-%m-%d %H:%M:%S UTC", &tmv);
    r->threads = sm_get_num_threads();
}

sm_status sm_compare_run(sm_report **out, const sm_compare_config *cfg, const sm_dataset *train,
                         const sm_dataset *test) {
    if (!out) return sm_errmsg_set(SM_ERR_INVALID, "sm_compare_run: out is NULL");
    *out = NULL;
    if (!cfg || !train || !test) return sm_errmsg_set(SM_ERR_INVALID, "sm_compare_run: NULL argument");
    sm_status st = check_config(cfg);
    if (st) return st;
    double t_start = rep_now();
    sm_report *r = rep_calloc(1, sizeof *r);
    if (!r) return SM_ERR_NOMEM;
    ctx c = {0};
    c.cfg = cfg;
    c.r = r;
    /* the report keeps a copy of the settings with owned strings */
    r->cfg = *cfg;
    r->cfg.model_spec = own(r, cfg->model_spec);
    for (int i = 0; i < cfg->num_losses; i++) {
        r->cfg.losses[i] = own(r, cfg->losses[i]);
        r->cfg.loss_options[i] = own(r, cfg->loss_options[i] ? cfg->loss_options[i] : "");
    }
    r->cfg.seen_classes = own(r, cfg->seen_classes);
    r->cfg.unseen_classes = own(r, cfg->unseen_classes);
    r->cfg.model_dir = own(r, cfg->model_dir);
    r->cfg.command_line = own(r, cfg->command_line);
    r->cfg.data_description = own(r, cfg->data_description);
    r->cfg.class_names = NULL;
    r->cfg.progress = NULL; r->cfg.log = NULL; r->cfg.user = NULL;
    machine_info(r);
    if ((st = sm_parse_class_list(cfg->seen_classes, r->seen, SM_REP_MAX_CLASSES, &r->nseen)) ||
        (st = sm_parse_class_list(cfg->unseen_classes, r->unseen, SM_REP_MAX_CLASSES, &r->nunseen)))
        goto fail;
    for (int i = 0; i < r->nseen + r->nunseen; i++) {
        int32_t y = i < r->nseen ? r->seen[i] : r->unseen[i - r->nseen];
        if (y >= SM_REP_MAX_CLASSES * 2) { st = sm_errmsg_set(SM_ERR_RANGE, "compare: class %d above 127", (int)y); goto fail; }
        if (i >= r->nseen && in_list(y, r->seen, r->nseen)) {
            st = sm_errmsg_set(SM_ERR_INVALID, "compare: class %d is both seen and unseen", (int)y);
            goto fail;
        }
    }
    if (r->nseen < 2 || r->nunseen < 2) { st = sm_errmsg_set(SM_ERR_INVALID, "compare: need at least 2 seen and 2 unseen classes"); goto fail; }
    if (cfg->open_known < 1 || cfg->open_known >= r->nunseen) {
        st = sm_errmsg_set(SM_ERR_INVALID, "compare: open-set known classes must be in 1..%d (got %d)", r->nunseen - 1, cfg->open_known);
        goto fail;
    }
    for (int y = 0; y < SM_REP_MAX_CLASSES * 2; y++) {
        if (cfg->class_names && y < cfg->num_class_names && cfg->class_names[y])
            snprintf(r->class_names[y], sizeof r->class_names[y], "%s", cfg->class_names[y]);
        else
            snprintf(r->class_names[y], sizeof r->class_names[y], "class %d", y);
    }
    /* the data sets */
    logf_(cfg, "preparing data: seen classes %s, unseen classes %s", cfg->seen_classes, cfg->unseen_classes);
    if ((st = subset(&c.train_seen, train, r->seen, r->nseen, 0, cfg->train_per_class)) ||
        (st = subset(&c.test_seen, test, r->seen, r->nseen, 0, cfg->test_per_class)) ||
        (st = subset(&c.test_unseen, test, r->unseen, r->nunseen, 0, cfg->test_per_class)) ||
        (st = subset(&c.shots, train, r->unseen, r->nunseen, 0, cfg->shots)) ||
        (st = subset(&c.calib, train, r->unseen, cfg->open_known, cfg->shots, cfg->calib_per_class)) ||
        (st = subset(&c.gallery, c.train_seen, r->seen, r->nseen, 0, cfg->gallery_per_class)))
        goto fail;
    r->n_train = sm_dataset_size(c.train_seen);
    r->n_test_seen = sm_dataset_size(c.test_seen);
    r->n_test_unseen = sm_dataset_size(c.test_unseen);
    r->n_gallery = sm_dataset_size(c.gallery);
    r->n_calib = sm_dataset_size(c.calib);
    if ((st = check_models(cfg, c.train_seen))) goto fail;
    int used[2 * SM_COMPARE_MAX_LOSSES] = {0};
    int nruns = cfg->num_losses * (cfg->few_per_class > 0 ? 2 : 1);
    for (int run = 0; run < nruns; run++) {
        int few = run >= cfg->num_losses, li = run % cfg->num_losses;
        sm_rep_model *R = &r->models[run];
        sm_dataset *fewds = NULL;
        const sm_dataset *ds = c.train_seen, *gal = c.gallery;
        int per_class = cfg->per_class, epochs = cfg->epochs;
        R->few = few;
        if (few) {
            if ((st = subset(&fewds, c.train_seen, r->seen, r->nseen, 0, cfg->few_per_class))) goto fail;
            ds = gal = fewds;
            epochs = cfg->few_epochs;
            if (per_class > cfg->few_per_class) per_class = cfg->few_per_class;
        }
        logf_(cfg, "[%d/%d] training %s%s on %lld images of classes %s, %d %s", run + 1, nruns,
              cfg->losses[li], few ? " (few samples)" : "", (long long)sm_dataset_size(ds), cfg->seen_classes, epochs,
              rep_pl(epochs, "epoch", "epochs"));
        sm_model *m = NULL;
        st = train_one(&c, li, ds, epochs, per_class, R, &m);
        r->nmodels = run + 1;
        if (st) { sm_dataset_free(fewds); goto fail; }
        logf_(cfg, "%s%s: %lld images x %d %s in %.1f s, %.0f images/s, final loss %.4f", R->loss,
              few ? " (few samples)" : "", (long long)R->train_images, R->epochs, rep_pl(R->epochs, "epoch", "epochs"),
              R->train_seconds, R->images_per_sec,
              R->final_loss);
        if (cfg->model_dir) {
            char base[64];
            int dup = 0;
            for (int j = 0; j < run; j++) dup += !strcmp(r->models[j].loss, R->loss) && r->models[j].few == few;
            used[run] = dup;
            if (dup) snprintf(base, sizeof base, "%s%s_%d", few ? "few_" : "", R->loss, dup + 1);
            else snprintf(base, sizeof base, "%s%s", few ? "few_" : "", R->loss);
            snprintf(R->file, sizeof R->file, "%s/%s.smm", cfg->model_dir, base);
            if (sm_dist_rank(cfg->dist) == 0 && (st = sm_model_save(m, R->file))) { /* rank 0 writes */
                sm_errmsg_set(st, "%s", sm_model_errmsg(m));
                sm_model_free(m); sm_dataset_free(fewds);
                goto fail;
            }
        }
        double t0 = rep_now();
        st = evaluate(&c, m, R, gal, !few);
        sm_model_free(m);
        sm_dataset_free(fewds);
        if (st) goto fail;
        logf_(cfg, "%s%s: evaluated in %.1f s: unseen P@1 %.4f, MAP@R %.4f; seen accuracy (1-NN) %.4f",
              R->loss, few ? " (few samples)" : "", rep_now() - t0, R->unseen.precision_at_1, R->unseen.map_at_r,
              R->acc_nn);
    }
    (void)used;
    r->wall_seconds = rep_now() - t_start;
    sm_dataset_free(c.train_seen); sm_dataset_free(c.test_seen); sm_dataset_free(c.test_unseen);
    sm_dataset_free(c.shots); sm_dataset_free(c.calib); sm_dataset_free(c.gallery);
    *out = r;
    return SM_OK;
fail:
    sm_dataset_free(c.train_seen); sm_dataset_free(c.test_seen); sm_dataset_free(c.test_unseen);
    sm_dataset_free(c.shots); sm_dataset_free(c.calib); sm_dataset_free(c.gallery);
    sm_report_free(r);
    return st;
}

double sm_report_wall_seconds(const sm_report *r) { return r ? r->wall_seconds : 0; }

void sm_report_free(sm_report *r) {
    if (!r) return;
    for (int i = 0; i < 2 * SM_COMPARE_MAX_LOSSES; i++) {
        free(r->models[i].curve);
        rep_free(r->models[i].unseen_pred);
        rep_free(r->models[i].unseen_conf);
        rep_free(r->models[i].pca);
        rep_free(r->models[i].pca_y);
        for (int k = 0; k < SM_REP_NQ; k++) rep_free(r->models[i].q[k]);
    }
    for (int i = 0; i < r->nowned; i++) rep_free(r->owned[i]);
    free(r->text);
    rep_free(r);
}
