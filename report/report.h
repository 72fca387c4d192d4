/* report.h - internal pieces of the softmax-versus-metric-learning report (report/, built as the
 * static library simile_report on top of the public API alone): its own small helpers (errors,
 * allocation, RNG, clock, atomic file writing), a growable text buffer, inline-SVG plot
 * primitives (axes with ticks, scatter, lines, histograms, legend), and the result structures
 * that compare.c fills and output.c writes as HTML, JSON and text.  Not installed; the public
 * side is include/simile_report.h (tests/test_report.c includes this header). */
#ifndef SM_REPORT_H
#define SM_REPORT_H

#include "simile_report.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- helpers (util.c): the report's own, since it sees only include/simile.h --------------- */
/* Errors go through the public sm_errmsg_set(), so sm_errmsg() returns the report's messages
 * exactly as it returns the library's. */
#define SM_REP_ERRMSG_MAX 512    /* the length of sm_errmsg() messages (sm_errmsg_set) */
/* 64-byte aligned allocation (as the library's own buffers) that records an SM_ERR_NOMEM
 * message on failure (or on overflow of count * size); NULL then.  Release with rep_free. */
void *rep_alloc(size_t count, size_t size);   /* uninitialised */
void *rep_calloc(size_t count, size_t size);  /* zeroed */
void rep_free(void *p);
char *rep_strdup(const char *s);
/* one or many for a count in text: "%d %s", n, rep_pl(n, "epoch", "epochs") */
static inline const char *rep_pl(long long n, const char *one, const char *many) { return n == 1 ? one : many; }
/* Monotonic seconds. */
double rep_now(void);
/* Deterministic random numbers: xoshiro256** seeded through splitmix64 (the same sequence as
 * the library's training RNG for the same seed). */
typedef struct rep_rng { uint64_t s[4]; } rep_rng;
void rep_rng_seed(rep_rng *r, uint64_t seed);
uint64_t rep_rng_below(rep_rng *r, uint64_t n); /* [0, n), unbiased */
/* Write len bytes to path atomically: "<path>.tmp.<pid>", fsync, rename over path, fsync of
 * the folder.  Errors: SM_ERR_IO (named), SM_ERR_NOMEM. */
sm_status rep_write_file(const char *path, const char *data, size_t len);

/* ---- text buffer ------------------------------------------------------------------------ */
/* A growable NUL-terminated string; an allocation failure sets failed and drops later writes,
 * so callers check once at the end. */
typedef struct sm_sbuf {
    char *s;       /* (cap) text, NUL-terminated */
    size_t len, cap;
    int failed;
} sm_sbuf;
void sm_sbuf_printf(sm_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sm_sbuf_puts(sm_sbuf *b, const char *s);
/* Append s with &, <, >, " and ' escaped for XML/HTML text and attribute values. */
void sm_sbuf_xml(sm_sbuf *b, const char *s);
/* Append s as a JSON string literal (with the quotes). */
void sm_sbuf_json_str(sm_sbuf *b, const char *s);
/* Append a finite double with %.9g, or null for NaN/Inf (JSON has no NaN). */
void sm_sbuf_json_num(sm_sbuf *b, double v);
void sm_sbuf_free(sm_sbuf *b);

/* ---- ticks ------------------------------------------------------------------------------- */
/* "Nice" tick values (1, 2, 5 x 10^k steps) covering [lo, hi], at most max_ticks (>= 2) of them
 * inside the range, into ticks; returns the count (0 if the range is not finite). */
int sm_nice_ticks(double lo, double hi, int max_ticks, double *ticks);

/* ---- SVG plots ------------------------------------------------------------------------- */
/* A chart of width x height pixels (the viewBox is 0 0 width height) with a data rectangle
 * [x0, x1] x [y0, y1].  With log_x the x axis is log10 (x0, x1 > 0).  Every coordinate written
 * is clamped into the plot area, so nothing is drawn outside the viewBox. */
typedef struct sm_svg_plot {
    int width, height;
    int ml, mr, mt, mb;      /* margins: left, right, top, bottom */
    double x0, x1, y0, y1;
    int log_x;
    int legend_rows;         /* rows of the legend band above the plot area (sm_svg_reserve_legend) */
    const char *title, *xlabel, *ylabel;
} sm_svg_plot;
#define SM_SVG_MAX_LEGEND 64

/* Fill p with a width x height chart and default margins over [x0,x1] x [y0,y1]. */
void sm_svg_init(sm_svg_plot *p, int width, int height, double x0, double x1, double y0, double y1);
/* Pixel coordinates of a data point (clamped into the plot area; NaN maps to the lower edge). */
double sm_svg_px(const sm_svg_plot *p, double x);
double sm_svg_py(const sm_svg_plot *p, double y);
/* <svg> element with the frame, grid, ticks, tick labels, axis labels and title. */
void sm_svg_begin(sm_sbuf *b, const sm_svg_plot *p);
void sm_svg_end(sm_sbuf *b);
/* n points (x, y) as circles of radius r, filled with color (CSS colour) at opacity. */
void sm_svg_scatter(sm_sbuf *b, const sm_svg_plot *p, const double *x, const double *y, int64_t n,
                    const char *color, double r, double opacity);
/* A polyline through n points; dashed if dash is non-zero.  Non-finite points are skipped. */
void sm_svg_line(sm_sbuf *b, const sm_svg_plot *p, const double *x, const double *y, int64_t n,
                 const char *color, double width, int dash);
/* A histogram of nbins bars: bin i spans [edges[i], edges[i+1]) with height h[i]. */
void sm_svg_bars(sm_sbuf *b, const sm_svg_plot *p, const double *edges, const double *h, int nbins,
                 const char *color, double opacity);
/* Legends sit outside the plot area, never over data: sm_svg_reserve_legend (before
 * sm_svg_begin) adds a band between the title and the plot area, tall enough for the entries
 * laid out left to right in rows, and grows the chart's height by as much; returns the rows.
 * sm_svg_legend then draws the entries in that band (nothing if no band was reserved), each a
 * line swatch (lines non-zero, for line series) or a square (points, bars). */
int sm_svg_reserve_legend(sm_svg_plot *p, const char *const *names, int n);
void sm_svg_legend(sm_sbuf *b, const sm_svg_plot *p, const char *const *names,
                   const char *const *colors, int n, int lines);

/* ---- chart data --------------------------------------------------------------------- */
/* Exponential moving average of y (n) into out (n), window max(4, n / 20) batches (NaN entries
 * skipped).  Returns the window, or 0 when the average should not be drawn: fewer than 8
 * points, or an average within 1% of the data's range of every point (it would hide the raw
 * line).  out is filled either way. */
int64_t sm_rep_moving_average(const double *y, int64_t n, double *out);
/* The loss axis range: from the data's minimum to its maximum (points more than 1.5x above the
 * moving average smooth, if given, are clipped there), with a 5% margin each side; never
 * anchored at 0.  A constant series gets a range around its value. */
void sm_rep_loss_range(const double *raw, const double *smooth, int64_t n, double *lo, double *hi);

/* Words for how sure a classifier head is, from its mean top softmax probability over classes
 * outputs: rel = (mean_top - 1/classes) / (1 - 1/classes) below 0.15 "with low confidence, close
 * to a uniform guess", below 0.5 "with low confidence", below 0.85 "with moderate confidence",
 * else "often with high confidence". */
const char *sm_rep_confidence_words(double mean_top, int classes);

/* The colour of series i (Tableau 10 palette, cycled). */
const char *sm_svg_color(int i);

/* ---- uncertainties (stats.c) ---------------------------------------------------------- */
#define SM_REP_RESAMPLES 200                 /* bootstrap resamples of the queries */
#define SM_REP_BOOT_SEED 0x5eed2026ULL       /* their fixed seed: the same figures every run */
typedef struct sm_rep_interval {
    double value;     /* the figure (or the difference) over all the queries */
    double se;        /* bootstrap standard error */
    double lo, hi;    /* 95% percentile interval of the bootstrap */
    int64_t n;        /* queries used */
} sm_rep_interval;
/* The mean of a's finite entries (n), or with b the paired difference mean(a) - mean(b) over the
 * indices where both are finite, with its bootstrap uncertainty.  Returns 0, or -1 with every
 * field NaN when there is no data (a NULL, no finite entry) or no memory. */
int sm_rep_bootstrap_mean(const float *a, const float *b, int64_t n, sm_rep_interval *out);
/* The same for the separation figure -(mean intra / mean inter) of per-query mean distances,
 * or with intra_b/inter_b the difference of two models' figures. */
int sm_rep_bootstrap_sep(const float *intra_a, const float *inter_a, const float *intra_b, const float *inter_b,
                         int64_t n, sm_rep_interval *out);

/* Per-query values kept for the uncertainties, each aligned with the test set it comes from so
 * that two models' values pair up by index; NaN where a query does not count for the figure. */
enum {
    SM_REP_Q_P1_U, SM_REP_Q_RP_U, SM_REP_Q_MAP_U,   /* (n_test_unseen) retrieval, unseen classes */
    SM_REP_Q_P1_S, SM_REP_Q_RP_S, SM_REP_Q_MAP_S,   /* (n_test_seen) retrieval, seen classes */
    SM_REP_Q_FS_NN, SM_REP_Q_FS_CEN,                /* (n_test_unseen) few-shot: 1 right, 0 wrong */
    SM_REP_Q_OPEN_TAR, SM_REP_Q_OPEN_REJ,           /* (n_test_unseen) enrolled-class images: accepted
                                                       and right; the others: rejected */
    SM_REP_Q_ARG_S, SM_REP_Q_NN_S, SM_REP_Q_CEN_S,  /* (n_test_seen) closed set: argmax, 1-NN, centroid */
    SM_REP_Q_INTRA_U, SM_REP_Q_INTER_U,             /* (n_test_unseen) mean distance to the image's
                                                       own class / to the other classes */
    SM_REP_NQ
};

/* ---- results ------------------------------------------------------------------------------ */
#define SM_REP_BINS 50          /* distance histogram bins over [0, 2] */
#define SM_REP_ROC_POINTS 160   /* ROC points kept for the plot (log-spaced FAR) */
#define SM_REP_MAX_CLASSES 64

/* Figures of one trained model. */
typedef struct sm_rep_model {
    char loss[32], options[256], file[512];
    int few;                          /* 1: the few-samples experiment */
    int64_t train_images;
    int epochs;
    double train_seconds, images_per_sec, final_loss;
    double *curve; int64_t curve_n;   /* (curve_n) per-batch loss */
    int64_t steps_per_epoch;
    sm_retrieval_result unseen, seen; /* retrieval on the unseen and seen test classes */
    double fewshot_nn, fewshot_centroid;
    double open_threshold, open_calib_tar, open_calib_far, open_tar, open_reject;
    double ver_auc, ver_eer, ver_tar_1e2, ver_tar_1e3;
    double intra_u, inter_u, intra_s, inter_s; /* mean distances, unseen and seen test */
    double trip_u, trip_s;            /* fraction of sampled triplets with d_an - d_ap > margin */
    double acc_argmax, acc_nn, acc_centroid; /* closed set, seen classes; argmax NaN: no head */
    int head_classes;
    int64_t *unseen_pred;             /* (n_unseen, head_classes) counts: unseen class -> argmax */
    double *unseen_conf;              /* (n_unseen) mean max softmax probability */
    double hist_gen[SM_REP_BINS], hist_imp[SM_REP_BINS]; /* densities over [0, 2] */
    double roc_far[SM_REP_ROC_POINTS], roc_tar[SM_REP_ROC_POINTS]; int roc_n;
    float *pca; int64_t pca_n;        /* (pca_n, 2) scatter subset of the unseen test set */
    int32_t *pca_y;                   /* (pca_n) */
    double pca_var[2];                /* explained variance ratios */
    float *q[SM_REP_NQ];              /* per-query values (above); NULL: not measured */
    int64_t qn[SM_REP_NQ];            /* their lengths */
} sm_rep_model;

struct sm_report {
    sm_compare_config cfg;            /* copy; strings point into the owned copies below */
    char *owned[2 * SM_COMPARE_MAX_LOSSES + 8]; /* copies of the config strings */
    int nowned;
    int32_t seen[SM_REP_MAX_CLASSES], unseen[SM_REP_MAX_CLASSES]; int nseen, nunseen;
    char class_names[SM_REP_MAX_CLASSES * 2][48]; /* by label (labels < 128) */
    int64_t n_train, n_test_seen, n_test_unseen, n_gallery, n_pairs, n_calib;
    int nmodels;
    sm_rep_model models[2 * SM_COMPARE_MAX_LOSSES]; /* main runs, then few-sample runs */
    double wall_seconds;
    int threads;
    char machine[256], cpu[160], blas[256], compiler[128], date[40];
    sm_compute_info compute; /* CPU, vector extensions, BLAS kernel (sm_compute_info_get) */
    char *text;                       /* the terminal table, built on demand */
};

/* Writers (output.c). */
sm_status sm_report_build_html(const sm_report *r, sm_sbuf *b);
sm_status sm_report_build_json(const sm_report *r, sm_sbuf *b);
void sm_report_build_text(const sm_report *r, sm_sbuf *b);

#endif
