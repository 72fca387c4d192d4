/* output.c - the comparison's three outputs: a self-contained HTML page (inline CSS and SVG
 * charts drawn by svg.c; no script, no external resource), a JSON file with the data of every
 * figure, and the plain-text tables for the terminal.  Also the verdicts on the common "when to
 * use which" claims, decided on the bootstrap intervals of the differences (stats.c), and every
 * sentence that states a figure, worded from it (docs/report.md). */
#include "report/report.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared helpers ---------------------------------------------------------------------- */

static int n_main(const sm_report *r) {
    int n = 0;
    for (int i = 0; i < r->nmodels; i++) n += !r->models[i].few;
    return n;
}

/* Index of the best main (few = 0) or few-samples (few = 1) model by a figure, among the
 * non-classifier (metric) losses if metric_only; -1 if none. */
typedef double (*fig_fn)(const sm_rep_model *);
static int best_of(const sm_report *r, int few, int metric_only, fig_fn f) {
    int best = -1;
    for (int i = 0; i < r->nmodels; i++) {
        const sm_rep_model *m = &r->models[i];
        if (m->few != few || (metric_only && m->head_classes > 0)) continue;
        if (!isfinite(f(m))) continue;
        if (best < 0 || f(m) > f(&r->models[best])) best = i;
    }
    return best;
}
/* The first softmax (or other classifier-head) model of a group, -1 if none. */
static int classifier_of(const sm_report *r, int few) {
    for (int i = 0; i < r->nmodels; i++)
        if (r->models[i].few == few && r->models[i].head_classes > 0) return i;
    return -1;
}
static double f_map(const sm_rep_model *m) { return m->unseen.map_at_r; }
static double f_p1(const sm_rep_model *m) { return m->unseen.precision_at_1; }
static double f_fewshot(const sm_rep_model *m) { return m->fewshot_nn; }
static double f_open(const sm_rep_model *m) { return m->open_tar; }
static double f_ver(const sm_rep_model *m) { return m->ver_tar_1e2; }
static double f_nn(const sm_rep_model *m) { return m->acc_nn; }
static double f_best_closed(const sm_rep_model *m) {
    return isfinite(m->acc_argmax) && m->acc_argmax > m->acc_nn ? m->acc_argmax : m->acc_nn;
}
static double f_sep(const sm_rep_model *m) { return m->inter_u > 0 ? -m->intra_u / m->inter_u : NAN; }
static double f_seen_map(const sm_rep_model *m) { return m->seen.map_at_r; }

static void fmt3(char *s, size_t n, double v) {
    if (isfinite(v)) snprintf(s, n, "%.3f", v);
    else snprintf(s, n, "-");
}

const char *sm_rep_confidence_words(double mean_top, int classes) {
    if (!isfinite(mean_top) || classes < 2) return "with a confidence that was not measured";
    double u = 1.0 / classes, rel = (mean_top - u) / (1 - u); /* 0: uniform guess, 1: certain */
    if (rel < 0.15) return "with low confidence, close to a uniform guess";
    if (rel < 0.5) return "with low confidence";
    if (rel < 0.85) return "with moderate confidence";
    return "often with high confidence";
}

/* ---- uncertainties and verdicts ------------------------------------------------------------ */

#define Q_BEST_CLOSED (-1) /* the larger of a model's argmax and 1-NN accuracy */
#define Q_SEP (-2)         /* -(intra/inter) from the per-image mean distances */
#define UNDECIDED "not decided at this run size"

/* Model m's per-query array for figure qk (an SM_REP_Q_* index or Q_BEST_CLOSED); NULL if none. */
static const float *qarr(const sm_rep_model *m, int qk, int64_t *n) {
    if (qk == Q_BEST_CLOSED) qk = isfinite(m->acc_argmax) && m->acc_argmax > m->acc_nn ? SM_REP_Q_ARG_S : SM_REP_Q_NN_S;
    if (qk < 0 || qk >= SM_REP_NQ) { *n = 0; return NULL; }
    *n = m->qn[qk];
    return m->q[qk];
}

/* The uncertainty of model m's figure qk; with other, of the difference m - other on the same
 * queries.  Returns 0, or -1 (iv all NaN) when the per-query values are missing. */
static int interval(const sm_rep_model *m, const sm_rep_model *other, int qk, sm_rep_interval *iv) {
    if (qk == Q_SEP) {
        int64_t n = m->qn[SM_REP_Q_INTRA_U];
        if (other && other->qn[SM_REP_Q_INTRA_U] != n) n = 0;
        return sm_rep_bootstrap_sep(m->q[SM_REP_Q_INTRA_U], m->q[SM_REP_Q_INTER_U], other ? other->q[SM_REP_Q_INTRA_U] : NULL,
                                    other ? other->q[SM_REP_Q_INTER_U] : NULL, n, iv);
    }
    int64_t na = 0, nb = 0;
    const float *a = qarr(m, qk, &na), *b = other ? qarr(other, qk, &nb) : NULL;
    if (other && (!b || nb != na)) a = NULL;
    return sm_rep_bootstrap_mean(a, b, na, iv);
}

/* Half the width of the 95% interval of m's figure qk, NaN if unknown. */
static double halfwidth(const sm_rep_model *m, int qk) {
    sm_rep_interval iv;
    return interval(m, NULL, qk, &iv) ? NAN : (iv.hi - iv.lo) / 2;
}

typedef struct verdict {
    char claim[160], test[200], result[400], outcome[40];
    sm_rep_interval diff;  /* the difference the outcome rests on, with its uncertainty */
} verdict;

static void not_measured(verdict *v) {
    snprintf(v->result, sizeof v->result, "not measured (needs softmax and a metric loss)");
    snprintf(v->outcome, sizeof v->outcome, "n/a");
    v->diff.value = v->diff.se = v->diff.lo = v->diff.hi = NAN;
    v->diff.n = 0;
}

/* Append "; difference +x, 95% interval [lo, hi] over n queries" (or that it has none). */
static void append_diff(verdict *v, int ok, const char *over) {
    size_t l = strlen(v->result);
    if (ok) snprintf(v->result + l, sizeof v->result - l, "; difference %+.3f, 95%% interval %+.3f to %+.3f (%lld %s)",
                     v->diff.value, v->diff.lo, v->diff.hi, (long long)v->diff.n, over);
    else snprintf(v->result + l, sizeof v->result - l, "; no per-query values, so no uncertainty");
}

/* Compare the classifier c with the best metric model b on figure f (higher is better), paired
 * over the same queries: "metric learning does better here" is supported when the 95% interval
 * of b - c lies above 0, contradicted when it lies below 0, and not decided otherwise. */
static void judge(const sm_report *r, verdict *v, int c, int b, fig_fn f, int qk, const char *what, const char *over) {
    if (c < 0 || b < 0) { not_measured(v); return; }
    const sm_rep_model *mb = &r->models[b], *mc = &r->models[c];
    snprintf(v->result, sizeof v->result, "%s: %s %.3f vs %s %.3f", what, mb->loss, f(mb), mc->loss, f(mc));
    int ok = interval(mb, mc, qk, &v->diff) == 0;
    append_diff(v, ok, over);
    snprintf(v->outcome, sizeof v->outcome, "%s", !ok ? UNDECIDED : v->diff.lo > 0 ? "supported" : v->diff.hi < 0 ? "contradicted" : UNDECIDED);
}

static int verdicts(const sm_report *r, verdict *v) {
    int n = 0, c = classifier_of(r, 0), cf = classifier_of(r, 1);
    memset(v, 0, 8 * sizeof *v);
    snprintf(v[n].claim, sizeof v[n].claim, "New classes at test time: softmax cannot handle them; metric learning can, with no retraining");
    snprintf(v[n].test, sizeof v[n].test, "MAP@R on the unseen classes %s (each test image a query against the others)", r->cfg.unseen_classes);
    judge(r, &v[n], c, best_of(r, 0, 1, f_map), f_map, SM_REP_Q_MAP_U, "MAP@R", "queries");
    if (c >= 0) {
        size_t l = strlen(v[n].result);
        snprintf(v[n].result + l, sizeof v[n].result - l, "; the softmax head itself has %d outputs, none for a new class",
                 r->models[c].head_classes);
    }
    n++;
    snprintf(v[n].claim, sizeof v[n].claim, "A new class can be enrolled from a few examples");
    snprintf(v[n].test, sizeof v[n].test, "%d-shot identification of the unseen classes, nearest neighbour", r->cfg.shots);
    judge(r, &v[n], c, best_of(r, 0, 1, f_fewshot), f_fewshot, SM_REP_Q_FS_NN, "accuracy", "test images");
    n++;
    snprintf(v[n].claim, sizeof v[n].claim, "Verification and open-set recognition need distances that mean similarity");
    snprintf(v[n].test, sizeof v[n].test, "open set: %d %s enrolled, the others rejected, threshold at FAR %g",
             r->cfg.open_known, rep_pl(r->cfg.open_known, "class", "classes"), r->cfg.far);
    judge(r, &v[n], c, best_of(r, 0, 1, f_open), f_open, SM_REP_Q_OPEN_TAR, "identified and accepted", "test images");
    n++;
    snprintf(v[n].claim, sizeof v[n].claim, "Metric learning organises the space: same class close, different classes far");
    snprintf(v[n].test, sizeof v[n].test, "intra/inter-class distance ratio on the unseen classes (lower is better; shown negated)");
    judge(r, &v[n], c, best_of(r, 0, 1, f_sep), f_sep, Q_SEP, "-(intra/inter)", "test images");
    n++;
    snprintf(v[n].claim, sizeof v[n].claim, "Fixed classes with plenty of data: softmax is the simple, strong choice");
    snprintf(v[n].test, sizeof v[n].test, "closed-set accuracy on the seen classes: softmax argmax vs the best metric model by 1-NN");
    {
        int b = best_of(r, 0, 1, f_nn);
        if (c < 0 || b < 0) not_measured(&v[n]);
        else {
            const sm_rep_model *mc = &r->models[c], *mb = &r->models[b];
            snprintf(v[n].result, sizeof v[n].result, "%s argmax %.3f vs %s 1-NN %.3f", mc->loss, mc->acc_argmax, mb->loss, mb->acc_nn);
            /* softmax - metric, paired over the seen test images */
            int ok = mc->qn[SM_REP_Q_ARG_S] == mb->qn[SM_REP_Q_NN_S] &&
                     sm_rep_bootstrap_mean(mc->q[SM_REP_Q_ARG_S], mb->q[SM_REP_Q_NN_S], mc->qn[SM_REP_Q_ARG_S], &v[n].diff) == 0;
            if (!ok) v[n].diff.value = v[n].diff.se = v[n].diff.lo = v[n].diff.hi = NAN;
            append_diff(&v[n], ok, "test images");
            snprintf(v[n].outcome, sizeof v[n].outcome, "%s", !ok ? UNDECIDED : v[n].diff.lo > -0.01 ? "supported" :
                     v[n].diff.hi < 0 ? "contradicted" : UNDECIDED);
        }
    }
    n++;
    if (cf >= 0 || best_of(r, 1, 1, f_nn) >= 0) {
        snprintf(v[n].claim, sizeof v[n].claim, "Few samples a class: metric learning does better than softmax");
        snprintf(v[n].test, sizeof v[n].test, "%d train %s a seen class: best closed-set accuracy (argmax or 1-NN)", r->cfg.few_per_class,
                 rep_pl(r->cfg.few_per_class, "image", "images"));
        judge(r, &v[n], cf, best_of(r, 1, 1, f_best_closed), f_best_closed, Q_BEST_CLOSED, "closed-set accuracy", "test images");
        n++;
        snprintf(v[n].claim, sizeof v[n].claim, "Few samples a class: retrieval");
        snprintf(v[n].test, sizeof v[n].test, "%d train %s a seen class: MAP@R on the seen test classes", r->cfg.few_per_class,
                 rep_pl(r->cfg.few_per_class, "image", "images"));
        judge(r, &v[n], cf, best_of(r, 1, 1, f_seen_map), f_seen_map, SM_REP_Q_MAP_S, "MAP@R", "queries");
        n++;
    }
    return n;
}

/* ---- text ------------------------------------------------------------------------------- */

void sm_report_build_text(const sm_report *r, sm_sbuf *b) {
    char a[16][16];
    if (r->cfg.quick)
        sm_sbuf_printf(b, "\nquick run (--quick): %d epoch%s on %lld train images; the figures show what is measured, not how "
                          "the losses compare after full training\n", r->cfg.epochs, r->cfg.epochs == 1 ? "" : "s",
                       (long long)r->n_train);
    sm_sbuf_printf(b, "\nsimile compare: %s trained on classes %s (%lld images); unseen classes %s (%lld test images)\n\n",
                   r->cfg.model_spec, r->cfg.seen_classes, (long long)r->n_train, r->cfg.unseen_classes,
                   (long long)r->n_test_unseen);
    sm_sbuf_printf(b, "%-16s | %-38s | %-15s | %-12s | %-9s | %-20s | %s\n", "", "unseen classes: retrieval", "few-shot",
                   "open set", "verif.", "seen classes: acc.", "training");
    sm_sbuf_printf(b, "%-16s | %6s %6s %6s %6s %6s | %7s %7s | %6s %5s | %9s | %6s %6s %6s | %7s %6s\n", "loss", "P@1",
                   "R-prec", "MAP@R", "NMI", "R@8", "NN", "centr.", "TAR", "rej.", "TAR@1e-2", "argmax", "1-NN", "centr.",
                   "s", "img/s");
    for (int i = 0; i < r->nmodels; i++) {
        const sm_rep_model *m = &r->models[i];
        if (m->few) continue;
        double v[] = {m->unseen.precision_at_1, m->unseen.r_precision, m->unseen.map_at_r, m->unseen.nmi,
                      m->unseen.recall_at_k[3], m->fewshot_nn, m->fewshot_centroid, m->open_tar, m->open_reject,
                      m->ver_tar_1e2, m->acc_argmax, m->acc_nn, m->acc_centroid};
        for (int k = 0; k < 13; k++) fmt3(a[k], sizeof a[k], v[k]);
        sm_sbuf_printf(b, "%-16s | %6s %6s %6s %6s %6s | %7s %7s | %6s %5s | %9s | %6s %6s %6s | %7.1f %6.0f\n", m->loss,
                       a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], m->train_seconds,
                       m->images_per_sec);
    }
    sm_sbuf_printf(b, "\nembedding structure (L2 distances of normalised embeddings; triplets: fraction of %lld random\n"
                      "(anchor, positive, negative) with d_an - d_ap > %g)\n",
                   (long long)r->cfg.triplet_samples, (double)r->cfg.triplet_margin);
    sm_sbuf_printf(b, "%-16s | %-36s | %-36s\n", "", "unseen test classes", "seen test classes");
    sm_sbuf_printf(b, "%-16s | %7s %7s %11s %8s | %7s %7s %11s %8s\n", "loss", "intra", "inter", "intra/inter", "triplets",
                   "intra", "inter", "intra/inter", "triplets");
    for (int i = 0; i < r->nmodels; i++) {
        const sm_rep_model *m = &r->models[i];
        if (m->few) continue;
        sm_sbuf_printf(b, "%-16s | %7.4f %7.4f %11.4f %8.4f | %7.4f %7.4f %11.4f %8.4f\n", m->loss, m->intra_u, m->inter_u,
                       m->inter_u > 0 ? m->intra_u / m->inter_u : NAN, m->trip_u, m->intra_s, m->inter_s,
                       m->inter_s > 0 ? m->intra_s / m->inter_s : NAN, m->trip_s);
    }
    if (n_main(r) < r->nmodels) {
        sm_sbuf_printf(b, "\nfew samples: %d train %s a seen class, %d %s\n", r->cfg.few_per_class,
                       rep_pl(r->cfg.few_per_class, "image", "images"), r->cfg.few_epochs, rep_pl(r->cfg.few_epochs, "epoch", "epochs"));
        sm_sbuf_printf(b, "%-16s | %-34s | %-22s | %s\n", "", "seen classes", "unseen classes", "");
        sm_sbuf_printf(b, "%-16s | %6s %6s %6s %6s %6s | %6s %6s %8s | %6s\n", "loss", "argmax", "1-NN", "centr.", "P@1",
                       "MAP@R", "P@1", "MAP@R", "few-shot", "s");
        for (int i = 0; i < r->nmodels; i++) {
            const sm_rep_model *m = &r->models[i];
            if (!m->few) continue;
            double v[] = {m->acc_argmax, m->acc_nn, m->acc_centroid, m->seen.precision_at_1, m->seen.map_at_r,
                          m->unseen.precision_at_1, m->unseen.map_at_r, m->fewshot_nn};
            for (int k = 0; k < 8; k++) fmt3(a[k], sizeof a[k], v[k]);
            sm_sbuf_printf(b, "%-16s | %6s %6s %6s %6s %6s | %6s %6s %8s | %6.1f\n", m->loss, a[0], a[1], a[2], a[3], a[4],
                           a[5], a[6], a[7], m->train_seconds);
        }
    }
    verdict v[8];
    int nv = verdicts(r, v);
    sm_sbuf_puts(b, "\nwhat the comparison tests (outcomes decided only beyond the 95% bootstrap interval):\n");
    for (int i = 0; i < nv; i++) sm_sbuf_printf(b, "  %-28s %s\n  %28s %s\n", v[i].outcome, v[i].claim, "", v[i].result);
    sm_sbuf_printf(b, "\nwall time %.1f s, %d %s\n", r->wall_seconds, r->threads, rep_pl(r->threads, "thread", "threads"));
}

const char *sm_report_text(sm_report *r) {
    if (!r) return "";
    if (!r->text) {
        sm_sbuf b = {0};
        sm_report_build_text(r, &b);
        if (b.failed) { sm_sbuf_free(&b); return ""; }
        r->text = b.s;
    }
    return r->text;
}

/* ---- JSON ------------------------------------------------------------------------------ */

static void jkey(sm_sbuf *b, const char *k, double v, int comma) {
    sm_sbuf_printf(b, "\"%s\": ", k);
    sm_sbuf_json_num(b, v);
    if (comma) sm_sbuf_puts(b, ", ");
}

static void jretrieval(sm_sbuf *b, const sm_retrieval_result *x, double intra, double inter, double trip) {
    sm_sbuf_puts(b, "{");
    jkey(b, "precision_at_1", x->precision_at_1, 1);
    jkey(b, "r_precision", x->r_precision, 1);
    jkey(b, "map_at_r", x->map_at_r, 1);
    jkey(b, "recall_at_1", x->recall_at_k[0], 1);
    jkey(b, "recall_at_2", x->recall_at_k[1], 1);
    jkey(b, "recall_at_4", x->recall_at_k[2], 1);
    jkey(b, "recall_at_8", x->recall_at_k[3], 1);
    jkey(b, "nmi", x->nmi, 1);
    jkey(b, "queries", (double)x->num_queries, 1);
    jkey(b, "mean_intra", intra, 1);
    jkey(b, "mean_inter", inter, 1);
    jkey(b, "intra_inter_ratio", inter > 0 ? intra / inter : NAN, 1);
    jkey(b, "triplet_margin_fraction", trip, 0);
    sm_sbuf_puts(b, "}");
}

static void jarray(sm_sbuf *b, const double *v, int64_t n) {
    sm_sbuf_puts(b, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i) sm_sbuf_puts(b, i % 16 ? ", " : ",\n ");
        sm_sbuf_json_num(b, v[i]);
    }
    sm_sbuf_puts(b, "]");
}

static void jstr(sm_sbuf *b, const char *k, const char *v, int comma) {
    sm_sbuf_printf(b, "\"%s\": ", k);
    if (v) sm_sbuf_json_str(b, v); else sm_sbuf_puts(b, "null");
    if (comma) sm_sbuf_puts(b, ", ");
}

sm_status sm_report_build_json(const sm_report *r, sm_sbuf *b) {
    const sm_compare_config *c = &r->cfg;
    sm_sbuf_puts(b, "{\n");
    jstr(b, "simile_version", sm_version(), 1);
    jstr(b, "command", c->command_line, 0);
    sm_sbuf_puts(b, ",\n\"settings\": {");
    jstr(b, "model_spec", c->model_spec, 1);
    sm_sbuf_puts(b, "\"losses\": [");
    for (int i = 0; i < c->num_losses; i++) {
        sm_sbuf_puts(b, i ? ", {" : "{");
        jstr(b, "name", c->losses[i], 1);
        jstr(b, "options", c->loss_options[i], 0);
        sm_sbuf_puts(b, "}");
    }
    sm_sbuf_puts(b, "], ");
    jstr(b, "seen_classes", c->seen_classes, 1);
    jstr(b, "unseen_classes", c->unseen_classes, 1);
    jkey(b, "epochs", c->epochs, 1);
    jkey(b, "batch_size", c->batch_size, 1);
    jkey(b, "lr", c->lr, 1);
    jstr(b, "optimizer", c->optimizer == SM_OPT_SGD ? "sgd" : c->optimizer == SM_OPT_ADAMW ? "adamw" : "adam", 1);
    jstr(b, "schedule", c->schedule == SM_SCHED_COSINE ? "cosine" : "constant", 1);
    jkey(b, "per_class", c->per_class, 1);
    jkey(b, "seed", (double)c->seed, 1);
    jkey(b, "train_per_class", c->train_per_class, 1);
    jkey(b, "test_per_class", c->test_per_class, 1);
    jkey(b, "gallery_per_class", c->gallery_per_class, 1);
    jkey(b, "shots", c->shots, 1);
    jkey(b, "open_known", c->open_known, 1);
    jkey(b, "calib_per_class", c->calib_per_class, 1);
    jkey(b, "far", c->far, 1);
    jkey(b, "pairs_per_class", c->pairs_per_class, 1);
    jkey(b, "triplet_samples", (double)c->triplet_samples, 1);
    jkey(b, "triplet_margin", c->triplet_margin, 1);
    jkey(b, "scatter_per_class", c->scatter_per_class, 1);
    jkey(b, "few_per_class", c->few_per_class, 1);
    jkey(b, "few_epochs", c->few_epochs, 1);
    sm_sbuf_printf(b, "\"quick\": %s, ", c->quick ? "true" : "false");
    jstr(b, "model_dir", c->model_dir, 0);
    sm_sbuf_puts(b, "},\n\"data\": {");
    jstr(b, "description", c->data_description, 1);
    jkey(b, "train_images", (double)r->n_train, 1);
    jkey(b, "test_seen_images", (double)r->n_test_seen, 1);
    jkey(b, "test_unseen_images", (double)r->n_test_unseen, 1);
    jkey(b, "gallery_images", (double)r->n_gallery, 1);
    jkey(b, "calibration_images", (double)r->n_calib, 1);
    jkey(b, "verification_pairs", (double)r->n_pairs, 1);
    sm_sbuf_puts(b, "\"class_names\": {");
    for (int i = 0; i < r->nseen + r->nunseen; i++) {
        int y = i < r->nseen ? r->seen[i] : r->unseen[i - r->nseen];
        sm_sbuf_printf(b, "%s\"%d\": ", i ? ", " : "", y);
        sm_sbuf_json_str(b, r->class_names[y]);
    }
    sm_sbuf_puts(b, "}},\n\"run\": {");
    jkey(b, "wall_seconds", r->wall_seconds, 1);
    jkey(b, "threads", r->threads, 1);
    jstr(b, "date", r->date, 1);
    jstr(b, "machine", r->machine, 1);
    jstr(b, "cpu", r->cpu, 1);
    jstr(b, "blas", r->blas, 1);
    jkey(b, "cpu_family", r->compute.cpu_family, 1);
    jkey(b, "cpu_model", r->compute.cpu_model, 1);
    jstr(b, "vector_isa", r->compute.vector_isa, 1);
    jstr(b, "cpu_flags", r->compute.cpu_flags, 1);
    jstr(b, "blas_core", r->compute.blas_core, 1);
    jstr(b, "blas_warning", r->compute.warning[0] ? r->compute.warning : NULL, 1);
    jstr(b, "compiler", r->compiler, 0);
    sm_sbuf_puts(b, "},\n\"models\": [\n");
    for (int i = 0; i < r->nmodels; i++) {
        const sm_rep_model *m = &r->models[i];
        sm_sbuf_puts(b, i ? ",\n{" : "{");
        jstr(b, "loss", m->loss, 1);
        jstr(b, "options", m->options, 1);
        jstr(b, "experiment", m->few ? "few_samples" : "main", 1);
        jstr(b, "file", *m->file ? m->file : NULL, 1);
        sm_sbuf_puts(b, "\n \"train\": {");
        jkey(b, "images", (double)m->train_images, 1);
        jkey(b, "epochs", m->epochs, 1);
        jkey(b, "steps_per_epoch", (double)m->steps_per_epoch, 1);
        jkey(b, "final_loss", m->final_loss, 1);
        sm_sbuf_puts(b, "\"loss_curve\": ");
        jarray(b, m->curve, m->curve_n);
        sm_sbuf_puts(b, "},\n \"timing\": {");
        jkey(b, "train_seconds", m->train_seconds, 1);
        jkey(b, "images_per_sec", m->images_per_sec, 0);
        sm_sbuf_puts(b, "},\n \"unseen\": ");
        jretrieval(b, &m->unseen, m->intra_u, m->inter_u, m->trip_u);
        sm_sbuf_puts(b, ",\n \"seen\": ");
        jretrieval(b, &m->seen, m->intra_s, m->inter_s, m->trip_s);
        sm_sbuf_puts(b, ",\n \"fewshot\": {");
        jkey(b, "shots", r->cfg.shots, 1);
        jkey(b, "nearest_neighbour", m->fewshot_nn, 1);
        jkey(b, "nearest_centroid", m->fewshot_centroid, 0);
        sm_sbuf_puts(b, "},\n \"closed_set\": {");
        jkey(b, "argmax", m->acc_argmax, 1);
        jkey(b, "nearest_neighbour", m->acc_nn, 1);
        jkey(b, "nearest_centroid", m->acc_centroid, 1);
        jkey(b, "head_classes", m->head_classes, 0);
        sm_sbuf_puts(b, "}");
        /* uncertainties: bootstrap over the test queries */
        {
            static const struct { const char *key; int qk; } figs[] = {
                {"unseen_precision_at_1", SM_REP_Q_P1_U}, {"unseen_r_precision", SM_REP_Q_RP_U},
                {"unseen_map_at_r", SM_REP_Q_MAP_U}, {"seen_precision_at_1", SM_REP_Q_P1_S},
                {"seen_r_precision", SM_REP_Q_RP_S}, {"seen_map_at_r", SM_REP_Q_MAP_S},
                {"fewshot_nearest_neighbour", SM_REP_Q_FS_NN}, {"fewshot_nearest_centroid", SM_REP_Q_FS_CEN},
                {"open_set_tar", SM_REP_Q_OPEN_TAR}, {"open_set_unknown_rejection", SM_REP_Q_OPEN_REJ},
                {"closed_set_argmax", SM_REP_Q_ARG_S}, {"closed_set_nearest_neighbour", SM_REP_Q_NN_S},
                {"closed_set_nearest_centroid", SM_REP_Q_CEN_S}, {"unseen_separation", Q_SEP}};
            sm_sbuf_printf(b, ",\n \"uncertainty\": {\"method\": \"bootstrap over the test queries\", \"resamples\": %d, "
                              "\"seed\": %llu", SM_REP_RESAMPLES, (unsigned long long)SM_REP_BOOT_SEED);
            for (size_t k = 0; k < sizeof figs / sizeof figs[0]; k++) {
                sm_rep_interval iv;
                if (interval(m, NULL, figs[k].qk, &iv)) continue;
                sm_sbuf_printf(b, ",\n  \"%s\": {", figs[k].key);
                jkey(b, "value", iv.value, 1);
                jkey(b, "se", iv.se, 1);
                jkey(b, "lo95", iv.lo, 1);
                jkey(b, "hi95", iv.hi, 1);
                jkey(b, "queries", (double)iv.n, 0);
                sm_sbuf_puts(b, "}");
            }
            sm_sbuf_puts(b, "}");
        }
        if (m->unseen_pred) {
            sm_sbuf_puts(b, ",\n \"head_on_unseen\": [");
            for (int k = 0; k < r->nunseen; k++) {
                sm_sbuf_printf(b, "%s{\"class\": %d, \"predicted_counts\": [", k ? ", " : "", (int)r->unseen[k]);
                for (int j = 0; j < m->head_classes; j++)
                    sm_sbuf_printf(b, "%s%lld", j ? ", " : "", (long long)m->unseen_pred[(int64_t)k * m->head_classes + j]);
                sm_sbuf_puts(b, "], ");
                jkey(b, "mean_max_probability", m->unseen_conf[k], 0);
                sm_sbuf_puts(b, "}");
            }
            sm_sbuf_puts(b, "]");
        }
        if (!m->few) {
            sm_sbuf_puts(b, ",\n \"open_set\": {");
            jkey(b, "threshold", m->open_threshold, 1);
            jkey(b, "calibration_tar", m->open_calib_tar, 1);
            jkey(b, "calibration_far", m->open_calib_far, 1);
            jkey(b, "tar", m->open_tar, 1);
            jkey(b, "unknown_rejection", m->open_reject, 0);
            sm_sbuf_puts(b, "},\n \"verification\": {");
            jkey(b, "auc", m->ver_auc, 1);
            jkey(b, "eer", m->ver_eer, 1);
            jkey(b, "tar_at_far_1e-2", m->ver_tar_1e2, 1);
            jkey(b, "tar_at_far_1e-3", m->ver_tar_1e3, 1);
            sm_sbuf_puts(b, "\"roc_far\": ");
            jarray(b, m->roc_far, m->roc_n);
            sm_sbuf_puts(b, ", \"roc_tar\": ");
            jarray(b, m->roc_tar, m->roc_n);
            sm_sbuf_puts(b, "},\n \"histograms\": {");
            double edges[SM_REP_BINS + 1];
            for (int k = 0; k <= SM_REP_BINS; k++) edges[k] = 2.0 * k / SM_REP_BINS;
            sm_sbuf_puts(b, "\"edges\": ");
            jarray(b, edges, SM_REP_BINS + 1);
            sm_sbuf_puts(b, ", \"same_class_density\": ");
            jarray(b, m->hist_gen, SM_REP_BINS);
            sm_sbuf_puts(b, ", \"different_class_density\": ");
            jarray(b, m->hist_imp, SM_REP_BINS);
            sm_sbuf_puts(b, "},\n \"pca\": {");
            jkey(b, "explained_0", m->pca_var[0], 1);
            jkey(b, "explained_1", m->pca_var[1], 1);
            sm_sbuf_puts(b, "\"x\": [");
            for (int64_t k = 0; k < m->pca_n; k++) sm_sbuf_printf(b, "%s%.5g", k ? (k % 16 ? ", " : ",\n ") : "", (double)m->pca[2 * k]);
            sm_sbuf_puts(b, "], \"y\": [");
            for (int64_t k = 0; k < m->pca_n; k++) sm_sbuf_printf(b, "%s%.5g", k ? (k % 16 ? ", " : ",\n ") : "", (double)m->pca[2 * k + 1]);
            sm_sbuf_puts(b, "], \"label\": [");
            for (int64_t k = 0; k < m->pca_n; k++) sm_sbuf_printf(b, "%s%d", k ? ", " : "", (int)m->pca_y[k]);
            sm_sbuf_puts(b, "]}");
        }
        sm_sbuf_puts(b, "}");
    }
    sm_sbuf_puts(b, "\n],\n\"claims\": [");
    verdict v[8];
    int nv = verdicts(r, v);
    for (int i = 0; i < nv; i++) {
        sm_sbuf_puts(b, i ? ",\n {" : "\n {");
        jstr(b, "claim", v[i].claim, 1);
        jstr(b, "test", v[i].test, 1);
        jstr(b, "result", v[i].result, 1);
        jstr(b, "outcome", v[i].outcome, 1);
        sm_sbuf_puts(b, "\"difference\": {");
        jkey(b, "value", v[i].diff.value, 1);
        jkey(b, "se", v[i].diff.se, 1);
        jkey(b, "lo95", v[i].diff.lo, 1);
        jkey(b, "hi95", v[i].diff.hi, 1);
        jkey(b, "queries", (double)v[i].diff.n, 0);
        sm_sbuf_puts(b, "}");
        sm_sbuf_puts(b, "}");
    }
    sm_sbuf_puts(b, "],\n\"figures\": [");
    int k = 0;
    const char *kinds[] = {"pca", "histogram", "loss_curve"};
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < r->nmodels; i++)
            if (!r->models[i].few) sm_sbuf_printf(b, "%s\"%s_%d\"", k++ ? ", " : "", kinds[t], i);
    sm_sbuf_printf(b, "%s\"roc\"]\n}\n", k ? ", " : "");
    return b->failed ? sm_errmsg_set(SM_ERR_NOMEM, "out of memory writing the report") : SM_OK;
}

/* ---- HTML ------------------------------------------------------------------------------- */

static const char *css =
    "body{font-family:sans-serif;max-width:1400px;margin:20px auto;padding:0 16px;color:#222;line-height:1.4}"
    "h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;margin:8px 0 16px 0;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f0f0f0}"
    "td.l,th.l{text-align:left}td.best{font-weight:bold;background:#e8f4e8}"
    ".supported{color:#1a7f1a;font-weight:bold}.contradicted{color:#b22222;font-weight:bold}"
    ".grid{display:flex;flex-wrap:wrap;gap:10px}.note{color:#555;font-size:13px}"
    "code{background:#f4f4f4;padding:1px 4px}.pm{color:#777;font-size:11px}"
    ".quick{background:#fff4d6;border:1px solid #e0b84c;padding:8px 12px;margin:12px 0}";

/* A table cell with 3 decimals, bold if it is the column's best. */
static void cell(sm_sbuf *b, double v, int best) {
    char s[32];
    fmt3(s, sizeof s, v);
    sm_sbuf_printf(b, "<td%s>%s</td>", best ? " class=\"best\"" : "", s);
}

/* A cell with its uncertainty: the figure and, below it, +- half its 95% interval (m's
 * per-query values qk), or the figure alone when it has none. */
static void cell_pm(sm_sbuf *b, double v, int best, const sm_rep_model *m, int qk) {
    char s[32];
    fmt3(s, sizeof s, v);
    double h = isfinite(v) ? halfwidth(m, qk) : NAN;
    if (isfinite(h)) sm_sbuf_printf(b, "<td%s>%s<br><span class=\"pm\">&#177;%.3f</span></td>", best ? " class=\"best\"" : "", s, h);
    else sm_sbuf_printf(b, "<td%s>%s</td>", best ? " class=\"best\"" : "", s);
}

/* 1 if v is the largest finite value of column f among the models of group few. */
static int is_best(const sm_report *r, int few, fig_fn f, const sm_rep_model *m) {
    if (!isfinite(f(m))) return 0;
    for (int i = 0; i < r->nmodels; i++)
        if (r->models[i].few == few && isfinite(f(&r->models[i])) && f(&r->models[i]) > f(m)) return 0;
    return 1;
}
static double f_rp(const sm_rep_model *m) { return m->unseen.r_precision; }
static double f_cen(const sm_rep_model *m) { return m->fewshot_centroid; }
static double f_rej(const sm_rep_model *m) { return m->open_reject; }
static double f_arg(const sm_rep_model *m) { return m->acc_argmax; }
static double f_ccen(const sm_rep_model *m) { return m->acc_centroid; }
static double f_auc(const sm_rep_model *m) { return m->ver_auc; }
static double f_trip(const sm_rep_model *m) { return m->trip_u; }
static double f_seen_p1(const sm_rep_model *m) { return m->seen.precision_at_1; }
static double f_umap(const sm_rep_model *m) { return m->unseen.map_at_r; }

static void svg_pca(sm_sbuf *b, const sm_report *r, const sm_rep_model *m) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int64_t i = 0; i < m->pca_n; i++) {
        double x = m->pca[2 * i], y = m->pca[2 * i + 1];
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
    }
    if (!(x1 > x0)) { x0 = -1; x1 = 1; }
    if (!(y1 > y0)) { y0 = -1; y1 = 1; }
    double px = 0.05 * (x1 - x0), py = 0.05 * (y1 - y0);
    sm_svg_plot p;
    sm_svg_init(&p, 440, 360, x0 - px, x1 + px, y0 - py, y1 + py);
    char title[128], xl[64], yl[64];
    snprintf(title, sizeof title, "%s: unseen classes, PCA", m->loss);
    snprintf(xl, sizeof xl, "PC 1 (%.0f%% of variance)", 100 * m->pca_var[0]);
    snprintf(yl, sizeof yl, "PC 2 (%.0f%%)", 100 * m->pca_var[1]);
    p.title = title; p.xlabel = xl; p.ylabel = yl;
    const char *names[SM_REP_MAX_CLASSES], *colors[SM_REP_MAX_CLASSES];
    for (int k = 0; k < r->nunseen; k++) {
        names[k] = r->class_names[r->unseen[k]];
        colors[k] = sm_svg_color(r->nseen + k);
    }
    sm_svg_reserve_legend(&p, names, r->nunseen);
    sm_svg_begin(b, &p);
    double *xs = malloc((size_t)(m->pca_n ? m->pca_n : 1) * sizeof(double));
    double *ys = malloc((size_t)(m->pca_n ? m->pca_n : 1) * sizeof(double));
    if (xs && ys)
        for (int k = 0; k < r->nunseen; k++) {
            int64_t n = 0;
            for (int64_t i = 0; i < m->pca_n; i++)
                if (m->pca_y[i] == r->unseen[k]) { xs[n] = m->pca[2 * i]; ys[n++] = m->pca[2 * i + 1]; }
            sm_svg_scatter(b, &p, xs, ys, n, colors[k], 1.8, 0.55);
        }
    else b->failed = 1;
    sm_svg_legend(b, &p, names, colors, r->nunseen, 0);
    sm_svg_end(b);
    free(xs); free(ys);
}

static void svg_hist(sm_sbuf *b, const sm_rep_model *m) {
    double edges[SM_REP_BINS + 1], top = 0;
    for (int k = 0; k <= SM_REP_BINS; k++) edges[k] = 2.0 * k / SM_REP_BINS;
    for (int k = 0; k < SM_REP_BINS; k++) {
        if (m->hist_gen[k] > top) top = m->hist_gen[k];
        if (m->hist_imp[k] > top) top = m->hist_imp[k];
    }
    sm_svg_plot p;
    sm_svg_init(&p, 440, 290, 0, 2, 0, top > 0 ? top * 1.1 : 1);
    char title[128];
    snprintf(title, sizeof title, "%s: pair distances, unseen classes", m->loss);
    p.title = title; p.xlabel = "Euclidean distance of normalised embeddings"; p.ylabel = "density";
    const char *names[] = {"same class", "different class"}, *colors[] = {"#1f77b4", "#ff7f0e"};
    sm_svg_reserve_legend(&p, names, 2);
    sm_svg_begin(b, &p);
    sm_svg_bars(b, &p, edges, m->hist_imp, SM_REP_BINS, "#ff7f0e", 0.45);
    sm_svg_bars(b, &p, edges, m->hist_gen, SM_REP_BINS, "#1f77b4", 0.45);
    sm_svg_legend(b, &p, names, colors, 2, 0);
    sm_svg_end(b);
}

static void svg_roc(sm_sbuf *b, const sm_report *r) {
    sm_svg_plot p;
    sm_svg_init(&p, 520, 360, 1e-4, 1, 0, 1);
    p.log_x = 1;
    p.title = "ROC, verification on unseen-class pairs";
    p.xlabel = "false accept rate (log scale)";
    p.ylabel = "true accept rate";
    const char *names[2 * SM_COMPARE_MAX_LOSSES], *colors[2 * SM_COMPARE_MAX_LOSSES];
    int n = 0;
    for (int i = 0; i < r->nmodels; i++) {
        if (r->models[i].few) continue;
        names[n] = r->models[i].loss;
        colors[n++] = sm_svg_color(i);
    }
    sm_svg_reserve_legend(&p, names, n);
    sm_svg_begin(b, &p);
    double fx[2] = {r->cfg.far, r->cfg.far}, fy[2] = {0, 1};
    sm_svg_line(b, &p, fx, fy, 2, "#999999", 1, 1);
    for (int i = 0; i < r->nmodels; i++) {
        const sm_rep_model *m = &r->models[i];
        if (!m->few) sm_svg_line(b, &p, m->roc_far, m->roc_tar, m->roc_n, sm_svg_color(i), 2, 0);
    }
    sm_svg_legend(b, &p, names, colors, n, 1);
    sm_svg_end(b);
}

int64_t sm_rep_moving_average(const double *y, int64_t n, double *out) {
    if (n < 8) return 0;
    int64_t win = n / 20 > 4 ? n / 20 : 4;
    double a = 2.0 / (double)(win + 1), ema = 0, lo = INFINITY, hi = -INFINITY, dmax = 0;
    int started = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(y[i])) {
            ema = started ? (1 - a) * ema + a * y[i] : y[i];
            started = 1;
            if (y[i] < lo) lo = y[i];
            if (y[i] > hi) hi = y[i];
            if (fabs(ema - y[i]) > dmax) dmax = fabs(ema - y[i]);
        }
        out[i] = started ? ema : NAN;
    }
    /* an average that stays within 1% of the range from every point would hide the raw line */
    if (!started || !(hi > lo) || dmax <= 0.01 * (hi - lo)) return 0;
    return win;
}

void sm_rep_loss_range(const double *raw, const double *smooth, int64_t n, double *lo, double *hi) {
    double top = -INFINITY, bottom = INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double v = raw[i], s = smooth ? smooth[i] : NAN;
        if (isfinite(s)) { if (s > top) top = s; if (s < bottom) bottom = s; }
        if (!isfinite(v)) continue;
        if (v < bottom) bottom = v;
        /* a spike above 1.5x the average is clipped rather than squashing the rest */
        double cap = isfinite(s) && s > 0 ? 1.5 * s : INFINITY;
        if (v > top) top = v < cap ? v : (cap > top ? cap : top);
    }
    if (!isfinite(top) || !isfinite(bottom)) { *lo = 0; *hi = 1; return; }
    double span = top - bottom;
    if (!(span > 0)) span = fabs(top) > 0 ? fabs(top) : 1;
    *lo = bottom - 0.05 * span;
    *hi = top + 0.05 * span;
}

static void svg_curve(sm_sbuf *b, const sm_rep_model *m, int color) {
    int64_t n = m->curve_n;
    double *x = malloc((size_t)(n ? n : 1) * sizeof(double)), *s = malloc((size_t)(n ? n : 1) * sizeof(double));
    if (!x || !s) { free(x); free(s); b->failed = 1; return; }
    double spe = m->steps_per_epoch > 0 ? (double)m->steps_per_epoch : 1, lo, hi;
    for (int64_t i = 0; i < n; i++) x[i] = (double)(i + 1) / spe;
    int64_t win = sm_rep_moving_average(m->curve, n, s);
    sm_rep_loss_range(m->curve, win ? s : NULL, n, &lo, &hi);
    sm_svg_plot p;
    sm_svg_init(&p, 440, 290, 0, n ? x[n - 1] : 1, lo, hi);
    char title[128], avg[48];
    snprintf(title, sizeof title, "%s: training loss", m->loss);
    snprintf(avg, sizeof avg, "moving average (%lld batches)", (long long)win);
    p.title = title; p.xlabel = "epoch"; p.ylabel = "loss";
    const char *names[] = {"per batch", avg}, *colors[] = {win ? "#b0b0b0" : sm_svg_color(color), sm_svg_color(color)};
    int nl = win ? 2 : 1;
    sm_svg_reserve_legend(&p, names, nl);
    sm_svg_begin(b, &p);
    sm_svg_line(b, &p, x, m->curve, n, colors[0], win ? 1 : 1.5, 0);
    if (win) sm_svg_line(b, &p, x, s, n, colors[1], 2, 0);
    sm_svg_legend(b, &p, names, colors, nl, 1);
    sm_svg_end(b);
    free(x); free(s);
}

static void th(sm_sbuf *b, const char *t) { sm_sbuf_printf(b, "<th>%s</th>", t); }

sm_status sm_report_build_html(const sm_report *r, sm_sbuf *b) {
    const sm_compare_config *c = &r->cfg;
    sm_sbuf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                      "<link rel=\"icon\" href=\"data:,\"><title>simile: softmax versus metric learning</title>"
                      "<style>%s</style></head><body>\n", css);
    sm_sbuf_puts(b, "<h1>Softmax versus metric learning</h1>\n");
    if (c->quick)
        sm_sbuf_printf(b, "<p class=\"quick\"><b>Quick run:</b> %d epoch%s on %lld train images (%s), %lld unseen and "
                          "%lld seen test images. It shows what the comparison measures, not how the losses compare "
                          "after full training: the figures are far from converged and their uncertainties are wide. "
                          "Run without <code>--quick</code> for the real comparison.</p>\n",
                       c->epochs, c->epochs == 1 ? "" : "s", (long long)r->n_train,
                       c->train_per_class ? "a capped number a class" : "all", (long long)r->n_test_unseen,
                       (long long)r->n_test_seen);
    sm_sbuf_puts(b, "<p>");
    sm_sbuf_puts(b, "The same network (<code>");
    sm_sbuf_xml(b, c->model_spec);
    sm_sbuf_printf(b, "</code>) trained with each loss on the seen classes <b>%s</b> (%lld train images), then measured "
                      "on classes it never saw, <b>%s</b> (%lld test images), and on the seen classes (%lld test images). "
                      "Data: ", c->seen_classes, (long long)r->n_train, c->unseen_classes, (long long)r->n_test_unseen,
                   (long long)r->n_test_seen);
    sm_sbuf_xml(b, c->data_description ? c->data_description : "caller's datasets");
    sm_sbuf_puts(b, ". How to read it: <code>docs/report.md</code>.</p>\n");

    /* claims */
    verdict v[8];
    int nv = verdicts(r, v);
    sm_sbuf_puts(b, "<h2>What the comparison tests</h2>\n<p>Each row is a common claim about when to use softmax "
                    "and when metric learning, the measurement that tests it here, and what the figures say.</p>\n"
                    "<table><tr><th class=\"l\">claim</th>"
                    "<th class=\"l\">test</th><th class=\"l\">result</th><th class=\"l\">outcome</th></tr>\n");
    for (int i = 0; i < nv; i++) {
        sm_sbuf_puts(b, "<tr><td class=\"l\">");
        sm_sbuf_xml(b, v[i].claim);
        sm_sbuf_puts(b, "</td><td class=\"l\">");
        sm_sbuf_xml(b, v[i].test);
        sm_sbuf_puts(b, "</td><td class=\"l\">");
        sm_sbuf_xml(b, v[i].result);
        sm_sbuf_printf(b, "</td><td class=\"l %s\">%s</td></tr>\n",
                       !strcmp(v[i].outcome, "supported") ? "supported" : !strcmp(v[i].outcome, "contradicted") ? "contradicted" : "",
                       v[i].outcome);
    }
    sm_sbuf_printf(b, "</table><p class=\"note\">Outcome rule: each difference gets a 95%% interval from a paired "
                      "bootstrap over the test queries (the same %d resamples of the queries for both models, fixed seed). "
                      "A claim that metric learning does better is <i>supported</i> when the interval of (best metric loss "
                      "&#8722; softmax) lies above 0, <i>contradicted</i> when it lies below 0, and <i>%s</i> when it "
                      "contains 0; the closed-set claim is supported when the interval of (softmax argmax &#8722; best "
                      "1-NN) lies above &#8722;0.01 (softmax within 0.01 or ahead), contradicted when it lies below 0. "
                      "The interval covers the choice of test images, not the training run: another seed moves the "
                      "figures too.</p>\n", SM_REP_RESAMPLES, UNDECIDED);

    /* side by side */
    sm_sbuf_printf(b, "<h2>Side by side</h2>\n<table><tr><th rowspan=\"2\" class=\"l\">loss</th>"
                      "<th colspan=\"3\">unseen classes %s: retrieval</th><th colspan=\"2\">%d-shot enrolment</th>"
                      "<th colspan=\"2\">open set</th><th colspan=\"2\">verification</th>"
                      "<th colspan=\"3\">seen classes %s: accuracy</th><th colspan=\"2\">training</th></tr><tr>",
                   c->unseen_classes, c->shots, c->seen_classes);
    const char *hdr[] = {"P@1", "R-precision", "MAP@R", "nearest neighbour", "nearest centroid", "TAR (identified)",
                         "unknowns rejected", "TAR@FAR 1e-2", "AUC", "softmax argmax", "1-NN", "nearest centroid",
                         "seconds", "images/s"};
    for (int i = 0; i < 14; i++) th(b, hdr[i]);
    sm_sbuf_puts(b, "</tr>\n");
    for (int i = 0; i < r->nmodels; i++) {
        const sm_rep_model *m = &r->models[i];
        if (m->few) continue;
        sm_sbuf_puts(b, "<tr><td class=\"l\">");
        sm_sbuf_xml(b, m->loss);
        sm_sbuf_puts(b, "</td>");
        cell_pm(b, m->unseen.precision_at_1, is_best(r, 0, f_p1, m), m, SM_REP_Q_P1_U);
        cell_pm(b, m->unseen.r_precision, is_best(r, 0, f_rp, m), m, SM_REP_Q_RP_U);
        cell_pm(b, m->unseen.map_at_r, is_best(r, 0, f_map, m), m, SM_REP_Q_MAP_U);
        cell_pm(b, m->fewshot_nn, is_best(r, 0, f_fewshot, m), m, SM_REP_Q_FS_NN);
        cell_pm(b, m->fewshot_centroid, is_best(r, 0, f_cen, m), m, SM_REP_Q_FS_CEN);
        cell_pm(b, m->open_tar, is_best(r, 0, f_open, m), m, SM_REP_Q_OPEN_TAR);
        cell_pm(b, m->open_reject, is_best(r, 0, f_rej, m), m, SM_REP_Q_OPEN_REJ);
        cell(b, m->ver_tar_1e2, is_best(r, 0, f_ver, m));
        cell(b, m->ver_auc, is_best(r, 0, f_auc, m));
        cell_pm(b, m->acc_argmax, is_best(r, 0, f_arg, m), m, SM_REP_Q_ARG_S);
        cell_pm(b, m->acc_nn, is_best(r, 0, f_nn, m), m, SM_REP_Q_NN_S);
        cell_pm(b, m->acc_centroid, is_best(r, 0, f_ccen, m), m, SM_REP_Q_CEN_S);
        sm_sbuf_printf(b, "<td>%.1f</td><td>%.0f</td></tr>\n", m->train_seconds, m->images_per_sec);
    }
    sm_sbuf_printf(b, "</table><p class=\"note\">Retrieval: each of the %lld unseen test images is a query against all "
                      "the others (L2 on normalised embeddings, as <code>simile eval</code>). Enrolment: the first %d train "
                      "%s of each unseen class form the gallery; every unseen test image is identified by its nearest "
                      "gallery image or nearest (re-normalised) class centroid. Open set: the shots of the first %d unseen "
                      "%s enrolled; the threshold is set at FAR %g on pairs (held-out train image, enrolled image) "
                      "of those classes (%lld probes); TAR = test images of the enrolled classes accepted <i>and</i> "
                      "correctly identified; unknowns rejected = test images of the other unseen classes whose nearest "
                      "enrolled image is beyond the threshold. Verification: all %lld pairs of the first %d test images of "
                      "each unseen class. Seen classes: the head's argmax (only a model with a classifier head has one), "
                      "and nearest neighbour / centroid over a gallery of %lld train images. Bold: the column's best. "
                      "&#177;: half the 95%% bootstrap interval over the test queries (verification and AUC, computed "
                      "on pairs, have none).</p>\n",
                   (long long)r->n_test_unseen, c->shots, rep_pl(c->shots, "image", "images"), c->open_known,
                   rep_pl(c->open_known, "class is", "classes are"), c->far, (long long)r->n_calib,
                   (long long)r->n_pairs, c->pairs_per_class, (long long)r->n_gallery);

    /* what the softmax head does with a new class */
    for (int i = 0; i < r->nmodels; i++) {
        const sm_rep_model *m = &r->models[i];
        if (m->few || !m->unseen_pred) continue;
        /* the wording follows the figures: overall and per-class mean top probability against
         * a uniform guess over the head's outputs */
        double wsum = 0, lo = INFINITY, hi = -INFINITY;
        int64_t wtot = 0;
        for (int k = 0; k < r->nunseen; k++) {
            int64_t tot = 0;
            for (int j = 0; j < m->head_classes; j++) tot += m->unseen_pred[(int64_t)k * m->head_classes + j];
            if (!tot || !isfinite(m->unseen_conf[k])) continue;
            wsum += m->unseen_conf[k] * (double)tot;
            wtot += tot;
            if (m->unseen_conf[k] < lo) lo = m->unseen_conf[k];
            if (m->unseen_conf[k] > hi) hi = m->unseen_conf[k];
        }
        double mean_top = wtot ? wsum / (double)wtot : NAN;
        sm_sbuf_printf(b, "<h2>'Cannot predict a new class', made visible: %s</h2>\n<p>Its head has %d outputs, one per "
                          "class it was trained on. Every image of an unseen class still gets one of them", m->loss,
                       m->head_classes);
        if (isfinite(mean_top))
            sm_sbuf_printf(b, ", %s: the mean top probability is %.2f (%.2f-%.2f by class), against %.2f for a uniform "
                              "guess over %d outputs", sm_rep_confidence_words(mean_top, m->head_classes), mean_top, lo, hi,
                           1.0 / m->head_classes, m->head_classes);
        sm_sbuf_puts(b, ".</p>\n<table><tr><th class=\"l\">true class (unseen)</th>");
        for (int j = 0; j < m->head_classes; j++) {
            sm_sbuf_puts(b, "<th>");
            sm_sbuf_xml(b, r->class_names[j]);
            sm_sbuf_puts(b, "</th>");
        }
        sm_sbuf_puts(b, "<th>mean max probability</th><th>accuracy</th></tr>\n");
        for (int k = 0; k < r->nunseen; k++) {
            int64_t tot = 0;
            for (int j = 0; j < m->head_classes; j++) tot += m->unseen_pred[(int64_t)k * m->head_classes + j];
            sm_sbuf_puts(b, "<tr><td class=\"l\">");
            sm_sbuf_xml(b, r->class_names[r->unseen[k]]);
            sm_sbuf_puts(b, "</td>");
            for (int j = 0; j < m->head_classes; j++) {
                int64_t cnt = m->unseen_pred[(int64_t)k * m->head_classes + j];
                sm_sbuf_printf(b, "<td>%.0f%%</td>", tot ? 100.0 * (double)cnt / (double)tot : 0.0);
            }
            sm_sbuf_printf(b, "<td>%.3f</td><td>0</td></tr>\n", m->unseen_conf[k]);
        }
        sm_sbuf_puts(b, "</table>\n");
    }

    /* structure */
    sm_sbuf_printf(b, "<h2>Embedding space structure</h2>\n<table><tr><th rowspan=\"2\" class=\"l\">loss</th>"
                      "<th colspan=\"4\">unseen test classes %s</th><th colspan=\"4\">seen test classes %s</th></tr><tr>",
                   c->unseen_classes, c->seen_classes);
    for (int t = 0; t < 2; t++) { th(b, "mean intra"); th(b, "mean inter"); th(b, "intra/inter"); th(b, "triplets satisfying margin"); }
    sm_sbuf_puts(b, "</tr>\n");
    for (int i = 0; i < r->nmodels; i++) {
        const sm_rep_model *m = &r->models[i];
        if (m->few) continue;
        sm_sbuf_puts(b, "<tr><td class=\"l\">");
        sm_sbuf_xml(b, m->loss);
        sm_sbuf_puts(b, "</td>");
        cell(b, m->intra_u, 0); cell(b, m->inter_u, 0);
        {
            sm_rep_interval iv;
            double ratio = m->inter_u > 0 ? m->intra_u / m->inter_u : NAN;
            if (isfinite(ratio) && !interval(m, NULL, Q_SEP, &iv))
                sm_sbuf_printf(b, "<td%s>%.3f<br><span class=\"pm\">&#177;%.3f</span></td>",
                               is_best(r, 0, f_sep, m) ? " class=\"best\"" : "", ratio, (iv.hi - iv.lo) / 2);
            else cell(b, ratio, is_best(r, 0, f_sep, m));
        }
        cell(b, m->trip_u, is_best(r, 0, f_trip, m));
        cell(b, m->intra_s, 0); cell(b, m->inter_s, 0);
        cell(b, m->inter_s > 0 ? m->intra_s / m->inter_s : NAN, 0);
        cell(b, m->trip_s, 0);
        sm_sbuf_puts(b, "</tr>\n");
    }
    sm_sbuf_printf(b, "</table><p class=\"note\">Mean Euclidean distance over all same-class (intra) and different-class "
                      "(inter) pairs of L2-normalised test embeddings (distances lie in [0, 2]); intra/inter: lower is "
                      "tighter. Triplets: the fraction of %lld random (anchor, positive, negative) triplets, seed %llu, with "
                      "d(a,n) - d(a,p) &gt; %g.</p>\n",
                   (long long)c->triplet_samples, (unsigned long long)c->seed + 7, (double)c->triplet_margin);

    /* few samples */
    if (n_main(r) < r->nmodels) {
        sm_sbuf_printf(b, "<h2>Few samples a class</h2>\n<p>The same losses trained on only the first %d train %s of "
                          "each seen class (%d %s). Closed set on the seen classes (gallery: those same %d %s a "
                          "class), and retrieval.</p>\n<table><tr><th rowspan=\"2\" class=\"l\">loss</th><th colspan=\"5\">seen "
                          "classes %s</th><th colspan=\"3\">unseen classes %s</th><th rowspan=\"2\">seconds</th></tr><tr>",
                       c->few_per_class, rep_pl(c->few_per_class, "image", "images"), c->few_epochs,
                       rep_pl(c->few_epochs, "epoch", "epochs"), c->few_per_class, rep_pl(c->few_per_class, "image", "images"),
                       c->seen_classes, c->unseen_classes);
        char shot[32];
        snprintf(shot, sizeof shot, "%d-shot NN", c->shots);
        const char *fh[] = {"softmax argmax", "1-NN", "nearest centroid", "P@1", "MAP@R", "P@1", "MAP@R", shot};
        for (int i = 0; i < 8; i++) th(b, fh[i]);
        sm_sbuf_puts(b, "</tr>\n");
        for (int i = 0; i < r->nmodels; i++) {
            const sm_rep_model *m = &r->models[i];
            if (!m->few) continue;
            sm_sbuf_puts(b, "<tr><td class=\"l\">");
            sm_sbuf_xml(b, m->loss);
            sm_sbuf_puts(b, "</td>");
            cell_pm(b, m->acc_argmax, is_best(r, 1, f_arg, m), m, SM_REP_Q_ARG_S);
            cell_pm(b, m->acc_nn, is_best(r, 1, f_nn, m), m, SM_REP_Q_NN_S);
            cell_pm(b, m->acc_centroid, is_best(r, 1, f_ccen, m), m, SM_REP_Q_CEN_S);
            cell_pm(b, m->seen.precision_at_1, is_best(r, 1, f_seen_p1, m), m, SM_REP_Q_P1_S);
            cell_pm(b, m->seen.map_at_r, is_best(r, 1, f_seen_map, m), m, SM_REP_Q_MAP_S);
            cell_pm(b, m->unseen.precision_at_1, is_best(r, 1, f_p1, m), m, SM_REP_Q_P1_U);
            cell_pm(b, m->unseen.map_at_r, is_best(r, 1, f_umap, m), m, SM_REP_Q_MAP_U);
            cell_pm(b, m->fewshot_nn, is_best(r, 1, f_fewshot, m), m, SM_REP_Q_FS_NN);
            sm_sbuf_printf(b, "<td>%.1f</td></tr>\n", m->train_seconds);
        }
        sm_sbuf_puts(b, "</table>\n");
    }

    /* figures */
    sm_sbuf_printf(b, "<h2>Embeddings of the unseen classes, in 2-D</h2>\n<p class=\"note\">Principal component analysis "
                      "of each model's %lld normalised unseen-class test embeddings (fitted on all of them); the first %d "
                      "points of each class are drawn. Tight, separate clouds mean a new class could be enrolled.</p>"
                      "<div class=\"grid\">\n", (long long)r->n_test_unseen, c->scatter_per_class);
    for (int i = 0; i < r->nmodels; i++) if (!r->models[i].few) svg_pca(b, r, &r->models[i]);
    sm_sbuf_puts(b, "</div>\n<h2>Distances: same class versus different class</h2>\n<p class=\"note\">Density of the "
                    "Euclidean distance over the verification pairs. The less the two overlap, the better one threshold "
                    "separates 'same' from 'different'.</p><div class=\"grid\">\n");
    for (int i = 0; i < r->nmodels; i++) if (!r->models[i].few) svg_hist(b, &r->models[i]);
    sm_sbuf_printf(b, "</div>\n<h2>ROC curves</h2>\n<p class=\"note\">True accept rate against false accept rate over the "
                      "%lld verification pairs (a pair is accepted when its distance is below the threshold); the dashed "
                      "line marks FAR %g.</p>\n", (long long)r->n_pairs, c->far);
    svg_roc(b, r);
    sm_sbuf_puts(b, "<h2>Training loss</h2>\n<p class=\"note\">Loss of each batch and, where the run is long enough "
                    "for it to differ from the batches, its exponential moving average (the legend gives its window); "
                    "each axis spans its own loss's range, and the scales differ from loss to loss.</p>"
                    "<div class=\"grid\">\n");
    for (int i = 0; i < r->nmodels; i++) if (!r->models[i].few) svg_curve(b, &r->models[i], i);
    sm_sbuf_puts(b, "</div>\n");

    /* reproducibility */
    sm_sbuf_puts(b, "<h2>Settings, versions, machine</h2>\n<table>");
    char tmp[1024];
#define ROW(k, fmt, ...) do { snprintf(tmp, sizeof tmp, fmt, __VA_ARGS__); \
        sm_sbuf_printf(b, "<tr><th class=\"l\">%s</th><td class=\"l\">", k); sm_sbuf_xml(b, tmp); sm_sbuf_puts(b, "</td></tr>\n"); } while (0)
    ROW("command", "%s", c->command_line ? c->command_line : "(library call)");
    ROW("model", "%s", c->model_spec);
    for (int i = 0; i < r->nmodels; i++)
        if (!r->models[i].few) ROW("loss", "%s %s", r->models[i].loss, r->models[i].options);
    ROW("training", "%d %s, batch %d, %s lr %g%s, P x K with K = %d for metric losses (classifiers: shuffled), seed %llu",
        c->epochs, rep_pl(c->epochs, "epoch", "epochs"), c->batch_size, c->optimizer == SM_OPT_SGD ? "SGD" : c->optimizer == SM_OPT_ADAMW ? "AdamW" : "Adam",
        (double)c->lr, c->schedule == SM_SCHED_COSINE ? " (cosine decay)" : "", c->per_class,
        (unsigned long long)c->seed);
    ROW("data", "%s", c->data_description ? c->data_description : "caller's datasets");
    ROW("images", "train %lld (%s a class), test seen %lld, test unseen %lld (%s a class)", (long long)r->n_train,
        c->train_per_class ? "capped" : "all", (long long)r->n_test_seen, (long long)r->n_test_unseen,
        c->test_per_class ? "capped" : "all");
    ROW("evaluation", "%d %s, open set %d known %s, %d calibration %s a class, FAR %g, %d pair images a class, "
        "%lld triplets (margin %g), gallery %d a seen class", c->shots, rep_pl(c->shots, "shot", "shots"), c->open_known,
        rep_pl(c->open_known, "class", "classes"), c->calib_per_class, rep_pl(c->calib_per_class, "image", "images"), c->far,
        c->pairs_per_class, (long long)c->triplet_samples, (double)c->triplet_margin, c->gallery_per_class);
    ROW("few samples", "%d %s a class, %d %s", c->few_per_class, rep_pl(c->few_per_class, "image", "images"), c->few_epochs,
        rep_pl(c->few_epochs, "epoch", "epochs"));
    ROW("simile", "%s", sm_version());
    ROW("BLAS", "%s (kernel %s)%s%s", r->blas, r->compute.blas_core, r->compute.warning[0] ? "; warning: " : "",
        r->compute.warning);
    ROW("compiler", "%s", r->compiler);
    ROW("machine", "%s, %s, %d %s", r->machine, r->cpu, r->threads, rep_pl(r->threads, "thread", "threads"));
    ROW("date", "%s", r->date);
    ROW("wall time", "%.1f s", r->wall_seconds);
#undef ROW
    sm_sbuf_puts(b, "</table>\n<p class=\"note\">The same seed, settings and thread count give the same figures; the "
                    "numbers behind every chart are in report.json.</p>\n</body></html>\n");
    return b->failed ? sm_errmsg_set(SM_ERR_NOMEM, "out of memory writing the report") : SM_OK;
}

/* ---- files ------------------------------------------------------------------------------- */

static sm_status write_atomic(const char *path, const sm_sbuf *b) { return rep_write_file(path, b->s, b->len); }

sm_status sm_report_write_html(const sm_report *r, const char *path) {
    if (!r || !path) return sm_errmsg_set(SM_ERR_INVALID, "sm_report_write_html: NULL argument");
    sm_sbuf b = {0};
    sm_status st = sm_report_build_html(r, &b);
    if (!st) st = write_atomic(path, &b);
    sm_sbuf_free(&b);
    return st;
}

sm_status sm_report_write_json(const sm_report *r, const char *path) {
    if (!r || !path) return sm_errmsg_set(SM_ERR_INVALID, "sm_report_write_json: NULL argument");
    sm_sbuf b = {0};
    sm_status st = sm_report_build_json(r, &b);
    if (!st) st = write_atomic(path, &b);
    sm_sbuf_free(&b);
    return st;
}
