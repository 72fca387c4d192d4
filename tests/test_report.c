/* test_report.c - the report's building blocks and driver: PCA on data with a known principal
 * axis (direction, sign, explained variance, errors); nice axis ticks; text, XML and JSON
 * escaping; every SVG primitive well-formed (balanced tags, finite numbers, coordinates inside the
 * viewBox) even with NaN and out-of-range data; and sm_compare_run end to end on a small
 * synthetic dataset: figures in range, HTML with the expected number of well-formed charts,
 * balanced JSON, and the same figures from a second run with the same seed; and the report's
 * own helpers (errors through sm_errmsg_set, allocation, RNG, atomic writes). */
#include "report/report.h"
#include "testing.h"
#include <string.h>
#include <unistd.h>

/* ---- a small SVG/XML checker -------------------------------------------------------------- */

/* Check the markup s: tags balanced and properly nested, '&' only as an entity, and in every
 * <svg> the numeric attributes finite and the coordinates inside its viewBox.  Returns the
 * number of problems (printed) and the number of <svg> elements in *nsvg. */
static int check_markup(const char *s, int *nsvg) {
    char stack[64][32];
    int depth = 0, bad = 0, in_svg = 0;
    double W = 0, H = 0;
    *nsvg = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '&') {
            const char *semi = strchr(p, ';');
            if (!semi || semi - p > 8) { fprintf(stderr, "bare '&' at %.20s\n", p); bad++; }
            continue;
        }
        if (*p != '<') continue;
        if (!strncmp(p, "<!", 2)) { p = strchr(p, '>'); if (!p) return bad + 1; continue; }
        const char *end = strchr(p, '>');
        if (!end) { fprintf(stderr, "unterminated tag\n"); return bad + 1; }
        int closing = p[1] == '/', selfclose = end[-1] == '/';
        char name[32] = {0};
        const char *q = p + 1 + closing;
        int k = 0;
        while (q < end && *q != ' ' && *q != '/' && *q != '\n' && k < 31) name[k++] = *q++;
        if (closing) {
            if (!depth || strcmp(stack[depth - 1], name)) {
                fprintf(stderr, "closing </%s> does not match <%s>\n", name, depth ? stack[depth - 1] : "(none)");
                bad++;
            } else depth--;
            if (!strcmp(name, "svg")) in_svg = 0;
        } else {
            int void_html = !strcmp(name, "meta") || !strcmp(name, "link") || !strcmp(name, "br");
            if (!strcmp(name, "svg")) {
                (*nsvg)++;
                in_svg = 1;
                const char *vb = strstr(p, "viewBox=\"");
                if (!vb || vb > end || sscanf(vb, "viewBox=\"0 0 %lf %lf\"", &W, &H) != 2) { fprintf(stderr, "svg without viewBox\n"); bad++; }
            }
            if (in_svg) {
                /* numeric attributes */
                static const char *const attrs[] = {" x=\"", " y=\"", " x1=\"", " y1=\"", " x2=\"", " y2=\"", " cx=\"",
                                                    " cy=\"", " r=\"", " width=\"", " height=\""};
                for (size_t a = 0; a < sizeof attrs / sizeof attrs[0]; a++) {
                    const char *at = strstr(p, attrs[a]);
                    if (!at || at > end) continue;
                    double v;
                    if (sscanf(at + strlen(attrs[a]), "%lf", &v) != 1 || !isfinite(v)) {
                        fprintf(stderr, "non-numeric %s in <%s>\n", attrs[a], name); bad++; continue;
                    }
                    int isx = strchr(attrs[a] + 1, 'x') != NULL || !strcmp(attrs[a], " width=\"");
                    double lim = isx ? W : H;
                    if (!strcmp(attrs[a], " r=\"")) lim = W;
                    if (v < -1e-9 || v > lim + 1e-9) { fprintf(stderr, "%s%g outside the viewBox in <%s>\n", attrs[a], v, name); bad++; }
                }
                const char *pts = strstr(p, " points=\"");
                if (pts && pts < end) {
                    pts += 9;
                    while (*pts && *pts != '"') {
                        double x, y;
                        int used = 0;
                        if (sscanf(pts, " %lf,%lf%n", &x, &y, &used) != 2) { fprintf(stderr, "bad points list\n"); bad++; break; }
                        if (!isfinite(x) || !isfinite(y) || x < 0 || x > W || y < 0 || y > H) {
                            fprintf(stderr, "point %g,%g outside the viewBox\n", x, y); bad++;
                        }
                        pts += used;
                        while (*pts == ' ' || *pts == '\n') pts++;
                    }
                }
            }
            if (!selfclose && !void_html) {
                if (depth == 64) { fprintf(stderr, "too deep\n"); return bad + 1; }
                snprintf(stack[depth++], 32, "%s", name);
            }
        }
        p = end;
    }
    if (depth) { fprintf(stderr, "%d unclosed tags (innermost <%s>)\n", depth, stack[depth - 1]); bad++; }
    return bad;
}

/* 1 if the braces and brackets of a JSON text balance (outside strings) and the only bare words
 * are true, false and null (no NaN or Inf). */
static int json_balanced(const char *s) {
    int depth = 0, in_str = 0;
    for (const char *p = s; *p; p++) {
        if (in_str) {
            if (*p == '\\') p++;
            else if (*p == '"') in_str = 0;
            continue;
        }
        if (*p == '"') in_str = 1;
        else if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') { if (--depth < 0) return 0; }
        else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
            if (!strncmp(p, "true", 4)) p += 3;
            else if (!strncmp(p, "false", 5)) p += 4;
            else if (!strncmp(p, "null", 4)) p += 3;
            else if (*p == 'e' || *p == 'E') continue; /* exponent */
            else return 0;
        }
    }
    return depth == 0 && !in_str;
}

/* ---- PCA ------------------------------------------------------------------------------------ */

static uint64_t lcg = 12345;
static double urand(void) { lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL; return (double)(lcg >> 11) / 9007199254740992.0; }
static double nrand(void) { double u = urand() + 1e-12, v = urand(); return sqrt(-2 * log(u)) * cos(2 * M_PI * v); }

static void test_pca(void) {
    enum { N = 500, D = 5 };
    static float x[N * D], proj[N * 2], proj2[N * 2], comp[2 * D];
    static double t[N];
    const double u[D] = {1 / sqrt(14.0), 3 / sqrt(14.0), -2 / sqrt(14.0), 0, 0}; /* known axis */
    double tm = 0;
    for (int i = 0; i < N; i++) {
        t[i] = 3 * nrand() + 1;
        tm += t[i] / N;
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(t[i] * u[j] + 0.05 * nrand() + (j == 4 ? 7 : 0));
    }
    double ev[2];
    CHECK_OK(sm_pca(x, N, D, 2, proj, comp, ev));
    double dot = 0;
    for (int j = 0; j < D; j++) dot += comp[j] * u[j];
    CHECK_MSG(dot > 0.999, "first component . known axis = %f (sign fixed: largest entry positive)", dot);
    CHECK(ev[0] > 0.99 && ev[1] < 0.01 && ev[1] >= 0);
    double n2 = 0, o = 0;
    for (int j = 0; j < D; j++) { n2 += comp[D + j] * comp[D + j]; o += comp[j] * comp[D + j]; }
    CHECK_NEAR(n2, 1, 1e-5);
    CHECK_NEAR(o, 0, 1e-5);
    double maxerr = 0;
    for (int i = 0; i < N; i++) maxerr = fmax(maxerr, fabs(proj[i * 2] - (t[i] - tm)));
    CHECK_MSG(maxerr < 0.3, "projection on PC1 differs from the centred coordinate by %f", maxerr);
    CHECK_OK(sm_pca(x, N, D, 2, proj2, NULL, NULL));
    CHECK(memcmp(proj, proj2, sizeof proj) == 0); /* deterministic */
    /* an axis-aligned case: variance 4 on axis 2, 1 on axis 0 */
    static float y[200 * 3], py[200 * 3];
    for (int i = 0; i < 200; i++) { y[i * 3] = (float)nrand(); y[i * 3 + 1] = 0.01f * (float)nrand(); y[i * 3 + 2] = 2 * (float)nrand(); }
    float c3[9];
    CHECK_OK(sm_pca(y, 200, 3, 3, py, c3, NULL));
    CHECK(fabs(c3[2]) > 0.99 && c3[2] > 0 && fabs(c3[3]) > 0.99 && c3[3] > 0 && fabs(c3[7]) > 0.99 && c3[7] > 0);
    /* errors */
    CHECK_STATUS(sm_pca(x, N, D, 6, proj, NULL, NULL), SM_ERR_INVALID);
    CHECK_STATUS(sm_pca(x, 1, D, 2, proj, NULL, NULL), SM_ERR_INVALID);
    CHECK_STATUS(sm_pca(NULL, N, D, 2, proj, NULL, NULL), SM_ERR_INVALID);
    x[7] = NAN;
    CHECK_STATUS(sm_pca(x, N, D, 2, proj, NULL, NULL), SM_ERR_NUMERIC);
}

/* ---- ticks, text --------------------------------------------------------------------------- */

static void test_ticks_and_text(void) {
    double t[16];
    int n = sm_nice_ticks(0, 1, 6, t);
    CHECK(n == 6);
    for (int i = 0; i < n; i++) CHECK_NEAR(t[i], 0.2 * i, 1e-12);
    n = sm_nice_ticks(-0.37, 2.1, 7, t);
    CHECK(n >= 3 && n <= 7);
    for (int i = 0; i < n; i++) CHECK(t[i] >= -0.37 && t[i] <= 2.1);
    for (int i = 2; i < n; i++) CHECK_NEAR(t[i] - t[i - 1], t[1] - t[0], 1e-9);
    CHECK(sm_nice_ticks(NAN, 1, 5, t) == 0);
    CHECK(sm_nice_ticks(3, 3, 5, t) == 1);

    sm_sbuf b = {0};
    sm_sbuf_xml(&b, "a<b & \"c\" 'd'>");
    CHECK(!strcmp(b.s, "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"));
    sm_sbuf_free(&b);
    sm_sbuf_json_str(&b, "q\"\\\n");
    sm_sbuf_puts(&b, " ");
    sm_sbuf_json_num(&b, NAN);
    sm_sbuf_puts(&b, " ");
    sm_sbuf_json_num(&b, 0.25);
    CHECK(!strcmp(b.s, "\"q\\\"\\\\\\u000a\" null 0.25"));
    sm_sbuf_free(&b);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    sm_sbuf_printf(&b, "%s|%d", big, 7); /* longer than the internal scratch */
    CHECK(b.len == sizeof big + 1 && b.s[sizeof big - 1] == '|' && !b.failed);
    sm_sbuf_free(&b);
}

/* ---- SVG ------------------------------------------------------------------------------------ */

/* 1 if the legend in chart s has n entries and every coordinate of it lies in the band above
 * the plot area of p (y below p->mt, x within the plot's width), so it covers no data. */
static int legend_outside(const char *s, const sm_svg_plot *p, int n) {
    const char *g = strstr(s, "<g class=\"legend\">");
    if (!g) { fprintf(stderr, "no legend\n"); return 0; }
    int items = 0, ok = 1;
    for (const char *q = g; (q = strstr(q, "class=\"legend-item\"")); q++) items++;
    if (items != n) { fprintf(stderr, "%d legend entries, want %d\n", items, n); ok = 0; }
    static const char *const ya[] = {" y=\"", " y1=\"", " y2=\""}, *const xa[] = {" x=\"", " x1=\"", " x2=\""};
    for (int k = 0; k < 3; k++) {
        for (const char *q = g; (q = strstr(q, ya[k])); q++) {
            double v = atof(q + strlen(ya[k]));
            if (!(v >= 0 && v < p->mt)) { fprintf(stderr, "legend %s%g not above the plot top %d\n", ya[k], v, p->mt); ok = 0; }
        }
        for (const char *q = g; (q = strstr(q, xa[k])); q++) {
            double v = atof(q + strlen(xa[k]));
            if (!(v >= p->ml && v <= p->width - p->mr)) { fprintf(stderr, "legend %s%g outside the width\n", xa[k], v); ok = 0; }
        }
    }
    return ok;
}

/* ---- chart data: moving average, loss range ------------------------------------------------- */

static void test_chart_data(void) {
    enum { N = 24 };
    double y[1000], out[1000];
    lcg = 99;
    for (int i = 0; i < N; i++) y[i] = 3.0 - 0.02 * i + 0.3 * nrand(); /* a 1-epoch quick run: 24 batches */
    int64_t w = sm_rep_moving_average(y, N, out);
    CHECK_MSG(w >= 2, "24 batches: window %lld, want an average that differs from the batches", (long long)w);
    double dmax = 0, lo = 1e9, hi = -1e9;
    for (int i = 0; i < N; i++) { dmax = fmax(dmax, fabs(out[i] - y[i])); lo = fmin(lo, y[i]); hi = fmax(hi, y[i]); }
    CHECK_MSG(dmax > 0.05 * (hi - lo), "the average departs from the batches by %g only", dmax);
    CHECK(sm_rep_moving_average(y, 5, out) == 0);        /* too short to average */
    for (int i = 0; i < 100; i++) y[i] = 1.5;
    CHECK(sm_rep_moving_average(y, 100, out) == 0);      /* would coincide with the raw line */
    for (int i = 0; i < 1000; i++) y[i] = 1 + 0.1 * nrand();
    CHECK(sm_rep_moving_average(y, 1000, out) == 50);
    /* the loss axis spans the data, not [0, max] */
    for (int i = 0; i < N; i++) y[i] = 2.5 + (double)i / (N - 1);
    double a, b;
    sm_rep_loss_range(y, NULL, N, &a, &b);
    CHECK_MSG(a > 2.4 && a < 2.5 && b > 3.5 && b < 3.6, "range %g..%g for data 2.5..3.5", a, b);
    y[5] = 40; /* a spike is clipped at 1.5x the average */
    for (int i = 0; i < N; i++) out[i] = 3;
    sm_rep_loss_range(y, out, N, &a, &b);
    CHECK_MSG(b < 5 && a > 2.3, "range %g..%g with a spike of 40", a, b);
    for (int i = 0; i < N; i++) y[i] = 0.7;
    sm_rep_loss_range(y, NULL, N, &a, &b);
    CHECK(a < 0.7 && b > 0.7);
}

static void test_svg(void) {
    int nsvg;
    /* the checker itself catches what it should (its messages go to stderr) */
    fprintf(stderr, "(3 checker self-test messages follow)\n");
    CHECK(check_markup("<svg viewBox=\"0 0 10 10\"><circle cx=\"20\" cy=\"1\" r=\"1\"/></svg>", &nsvg) > 0);
    CHECK(check_markup("<svg viewBox=\"0 0 10 10\"><g></svg>", &nsvg) > 0);
    CHECK(check_markup("<svg viewBox=\"0 0 10 10\"><polyline points=\"1,1 5,nan\"/></svg>", &nsvg) > 0);
    CHECK(check_markup("<svg viewBox=\"0 0 10 10\"><g><text x=\"1\" y=\"2\">a &amp; b</text></g></svg>", &nsvg) == 0 && nsvg == 1);
    sm_sbuf b = {0};
    sm_svg_plot p;
    sm_svg_init(&p, 400, 300, -1, 1, 0, 10);
    p.title = "t <&> title"; p.xlabel = "x"; p.ylabel = "y";
    double x[6] = {-1, 0, 1, 5, NAN, -7}, y[6] = {0, 5, 10, 50, 1, -3}, e[7] = {-1, -0.5, 0, 0.5, 1, 2, 3};
    const char *names[] = {"one", "a much longer name <b>"}, *cols[] = {"#111111", "#222222"};
    int mt0 = p.mt, h0 = p.height;
    CHECK(sm_svg_reserve_legend(&p, names, 2) == 1);
    CHECK(p.mt > mt0 && p.height - h0 == p.mt - mt0); /* a band above the plot, the plot keeps its size */
    sm_svg_begin(&b, &p);
    sm_svg_scatter(&b, &p, x, y, 6, sm_svg_color(3), 2, 0.5);
    sm_svg_line(&b, &p, x, y, 6, "#000000", 1.5, 1);
    sm_svg_bars(&b, &p, e, y, 6, "#1f77b4", 0.4);
    sm_svg_legend(&b, &p, names, cols, 2, 1);
    sm_svg_end(&b);
    CHECK(legend_outside(b.s, &p, 2));
    CHECK(!b.failed);
    CHECK_MSG(check_markup(b.s, &nsvg) == 0, "SVG not well-formed");
    CHECK(nsvg == 1);
    CHECK(strstr(b.s, "t &lt;&amp;&gt; title") != NULL);
    CHECK(strstr(b.s, "nan") == NULL && strstr(b.s, "inf") == NULL);
    /* clamping: a point far outside lands on the plot area's edge */
    CHECK_NEAR(sm_svg_px(&p, 1e9), p.width - p.mr, 1e-9);
    CHECK_NEAR(sm_svg_py(&p, -1e9), p.height - p.mb, 1e-9);
    CHECK_NEAR(sm_svg_px(&p, 0), p.ml + 0.5 * (p.width - p.ml - p.mr), 1e-9);
    sm_sbuf_free(&b);
    /* many entries wrap into rows, all of them above the plot area; no band, no legend */
    const char *many[10], *mcol[10];
    char mbuf[10][32];
    for (int i = 0; i < 10; i++) { snprintf(mbuf[i], sizeof mbuf[i], "class number %d", i); many[i] = mbuf[i]; mcol[i] = sm_svg_color(i); }
    sm_svg_init(&p, 300, 200, 0, 1, 0, 1);
    int rows = sm_svg_reserve_legend(&p, many, 10);
    CHECK_MSG(rows >= 3, "10 entries of ~120 px in a 230 px plot: %d rows", rows);
    sm_svg_begin(&b, &p);
    sm_svg_legend(&b, &p, many, mcol, 10, 0);
    sm_svg_end(&b);
    CHECK_MSG(check_markup(b.s, &nsvg) == 0, "wrapped legend not well-formed");
    CHECK(legend_outside(b.s, &p, 10));
    sm_sbuf_free(&b);
    sm_svg_init(&p, 300, 200, 0, 1, 0, 1);
    sm_svg_begin(&b, &p);
    sm_svg_legend(&b, &p, many, mcol, 10, 0);
    sm_svg_end(&b);
    CHECK(strstr(b.s, "legend") == NULL);
    sm_sbuf_free(&b);
    /* a log axis, with zeros and a degenerate range */
    sm_svg_init(&p, 300, 200, 1e-4, 1, 0, 0);
    p.log_x = 1;
    double fx[4] = {0, 1e-5, 1e-2, 1}, fy[4] = {0, 0.2, 0.5, 1};
    sm_svg_begin(&b, &p);
    sm_svg_line(&b, &p, fx, fy, 4, "#ff0000", 2, 0);
    sm_svg_end(&b);
    CHECK_MSG(check_markup(b.s, &nsvg) == 0, "log-axis SVG not well-formed");
    CHECK(strstr(b.s, ">1e-4<") != NULL && strstr(b.s, ">1e0<") != NULL);
    sm_sbuf_free(&b);
}

/* ---- generated text against hand-set figures ------------------------------------------------- */

/* A report with a softmax model (5-output head, every unseen class given mean top probability
 * conf) and a triplet model, 5 seen and 5 unseen classes, no charts' data; free with
 * free_fake. */
static sm_report *fake_report(double conf) {
    sm_report *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    sm_compare_config_default(&r->cfg);
    r->nseen = r->nunseen = 5;
    for (int i = 0; i < 5; i++) { r->seen[i] = i; r->unseen[i] = 5 + i; }
    for (int i = 0; i < 10; i++) snprintf(r->class_names[i], sizeof r->class_names[i], "class %d", i);
    r->n_train = 3000; r->n_test_seen = r->n_test_unseen = 1500;
    r->nmodels = 2;
    const char *loss[2] = {"softmax", "triplet"};
    for (int i = 0; i < 2; i++) {
        sm_rep_model *m = &r->models[i];
        snprintf(m->loss, sizeof m->loss, "%s", loss[i]);
        m->head_classes = i == 0 ? 5 : 0;
        m->acc_argmax = i == 0 ? 0.8 : NAN;
        m->acc_nn = m->acc_centroid = 0.8;
        m->unseen.map_at_r = 0.3; m->unseen.precision_at_1 = 0.8;
        m->fewshot_nn = m->fewshot_centroid = m->open_tar = 0.6;
        m->intra_u = 0.5; m->inter_u = 0.7;
    }
    sm_rep_model *m = &r->models[0];
    m->unseen_pred = calloc(25, sizeof(int64_t));
    m->unseen_conf = calloc(5, sizeof(double));
    if (!m->unseen_pred || !m->unseen_conf) return r;
    for (int k = 0; k < 5; k++) {
        m->unseen_pred[k * 5 + k % 3] = 300;
        m->unseen_conf[k] = conf + 0.01 * (k - 2); /* conf - 0.02 .. conf + 0.02, mean conf */
    }
    return r;
}

static void free_fake(sm_report *r) {
    if (!r) return;
    for (int i = 0; i < r->nmodels; i++) {
        free(r->models[i].unseen_pred); free(r->models[i].unseen_conf);
        for (int k = 0; k < SM_REP_NQ; k++) free(r->models[i].q[k]);
    }
    free(r->text);
    free(r);
}

/* The head's confidence on unseen classes is worded from its figures, and the numbers quoted. */
static void test_confidence_text(void) {
    CHECK(strstr(sm_rep_confidence_words(0.28, 5), "uniform") != NULL);
    CHECK(!strstr(sm_rep_confidence_words(0.28, 5), "high"));
    CHECK(!strcmp(sm_rep_confidence_words(0.5, 5), "with low confidence"));
    CHECK(!strcmp(sm_rep_confidence_words(0.7, 5), "with moderate confidence"));
    CHECK(strstr(sm_rep_confidence_words(0.95, 5), "high confidence") != NULL);
    CHECK(strstr(sm_rep_confidence_words(0.56, 2), "uniform") != NULL);  /* 2 outputs: 0.56 is near 0.5 */
    CHECK(strstr(sm_rep_confidence_words(NAN, 5), "not measured") != NULL);
    const double confs[2] = {0.28, 0.95};
    for (int t = 0; t < 2; t++) {
        sm_report *r = fake_report(confs[t]);
        sm_sbuf h = {0};
        CHECK_OK(sm_report_build_html(r, &h));
        const char *sec = h.s ? strstr(h.s, "made visible: softmax") : NULL;
        CHECK_MSG(sec != NULL, "no section on the softmax head");
        if (sec) {
            const char *end = strstr(sec, "</p>");
            char para[1024] = {0};
            if (end) memcpy(para, sec, (size_t)(end - sec) < sizeof para - 1 ? (size_t)(end - sec) : sizeof para - 1);
            char want[64];
            snprintf(want, sizeof want, "mean top probability is %.2f (%.2f-%.2f by class)", confs[t], confs[t] - 0.02, confs[t] + 0.02);
            CHECK_MSG(strstr(para, want) != NULL, "paragraph lacks \"%s\": %s", want, para);
            CHECK(strstr(para, "0.20 for a uniform guess over 5 outputs") != NULL);
            if (t == 0) CHECK_MSG(!strstr(para, "high confidence") && strstr(para, "close to a uniform guess"), "%s", para);
            else CHECK_MSG(strstr(para, "high confidence") != NULL, "%s", para);
        }
        CHECK(h.s && check_markup(h.s, &(int){0}) == 0);
        sm_sbuf_free(&h);
        free_fake(r);
    }
}

/* Give the fake report's models per-query AP@R on the 1500 unseen queries: softmax 0.3 + noise,
 * triplet the same queries' values + margin + noise (sd spread); map_at_r set to their means. */
static void fake_map(sm_report *r, double margin, double spread) {
    enum { N = 1500 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    if (!a || !b) { free(a); free(b); return; }
    double sa = 0, sb = 0;
    lcg = 4242;
    for (int i = 0; i < N; i++) {
        a[i] = (float)(0.3 + 0.15 * nrand());
        b[i] = (float)(a[i] + margin + spread * nrand());
        sa += a[i]; sb += b[i];
    }
    for (int i = 0; i < 2; i++) { free(r->models[i].q[SM_REP_Q_MAP_U]); r->models[i].qn[SM_REP_Q_MAP_U] = N; }
    r->models[0].q[SM_REP_Q_MAP_U] = a; r->models[0].unseen.map_at_r = sa / N;
    r->models[1].q[SM_REP_Q_MAP_U] = b; r->models[1].unseen.map_at_r = sb / N;
}

/* The bootstrap: a known standard error, deterministic, NaN skipped, paired differences. */
static void test_bootstrap(void) {
    enum { N = 400 };
    static float a[N], b[N], c[N];
    for (int i = 0; i < N; i++) { a[i] = (float)(i % 2); b[i] = a[i]; c[i] = (float)(i % 4 == 0); }
    sm_rep_interval iv, iv2;
    CHECK(sm_rep_bootstrap_mean(a, NULL, N, &iv) == 0);
    CHECK_NEAR(iv.value, 0.5, 1e-12);
    CHECK_MSG(fabs(iv.se - 0.025) < 0.005, "se %g of a mean of 400 fair coin flips, want about 0.025", iv.se);
    CHECK(iv.lo < 0.5 && iv.hi > 0.5 && iv.hi - iv.lo > 0.07 && iv.hi - iv.lo < 0.13 && iv.n == N);
    CHECK(sm_rep_bootstrap_mean(a, NULL, N, &iv2) == 0 && iv2.lo == iv.lo && iv2.hi == iv.hi); /* fixed seed */
    CHECK(sm_rep_bootstrap_mean(a, b, N, &iv) == 0 && iv.value == 0 && iv.lo == 0 && iv.hi == 0); /* paired: no spread */
    CHECK(sm_rep_bootstrap_mean(a, c, N, &iv) == 0);
    CHECK_NEAR(iv.value, 0.25, 1e-12);
    CHECK(iv.lo > 0 && iv.hi < 0.5);
    a[3] = NAN;
    CHECK(sm_rep_bootstrap_mean(a, NULL, N, &iv) == 0 && iv.n == N - 1);
    CHECK(sm_rep_bootstrap_mean(NULL, NULL, N, &iv) == -1 && isnan(iv.value) && isnan(iv.lo));
    for (int i = 0; i < N; i++) a[i] = NAN;
    CHECK(sm_rep_bootstrap_mean(a, NULL, N, &iv) == -1 && isnan(iv.hi));
    /* separation: intra 0.5, inter 1 everywhere -> -0.5, no spread; against intra 0.6 -> +0.1 */
    for (int i = 0; i < N; i++) { a[i] = 0.5f; b[i] = 1; c[i] = 0.6f; }
    CHECK(sm_rep_bootstrap_sep(a, b, NULL, NULL, N, &iv) == 0);
    CHECK_NEAR(iv.value, -0.5, 1e-6);
    CHECK(sm_rep_bootstrap_sep(a, b, c, b, N, &iv) == 0);
    CHECK_NEAR(iv.value, 0.1, 1e-6);
    CHECK(sm_rep_bootstrap_sep(a, NULL, NULL, NULL, N, &iv) == -1);
}

/* Verdicts only beyond the uncertainty; the quick banner; plain names for the claims. */
static void test_verdict_text(void) {
    const struct { double margin, spread; const char *want; } cases[] = {
        {0.011, 0.3, "not decided at this run size"}, /* se of the difference ~0.008: 0.011 is inside */
        {0.05, 0.1, "supported"},
        {-0.05, 0.1, "contradicted"}};
    for (int t = 0; t < 3; t++) {
        sm_report *r = fake_report(0.5);
        if (!r) return;
        fake_map(r, cases[t].margin, cases[t].spread);
        sm_sbuf h = {0}, j = {0};
        CHECK_OK(sm_report_build_html(r, &h));
        CHECK_OK(sm_report_build_json(r, &j));
        if (!h.s || !j.s) { free_fake(r); return; }
        CHECK(json_balanced(j.s));
        /* the first claim's row (MAP@R on the unseen classes) and its JSON entry */
        const char *row = strstr(h.s, "New classes at test time"), *end = row ? strstr(row, "</tr>") : NULL;
        char line[2048] = {0};
        if (row && end) memcpy(line, row, (size_t)(end - row) < sizeof line - 1 ? (size_t)(end - row) : sizeof line - 1);
        char want[96];
        snprintf(want, sizeof want, ">%s</td>", cases[t].want);
        CHECK_MSG(strstr(line, want) != NULL, "margin %g: want outcome %s, row: %s", cases[t].margin, cases[t].want, line);
        CHECK_MSG(strstr(line, "95% interval") != NULL, "the result quotes no interval: %s", line);
        const char *cl = strstr(j.s, "\"claims\"");
        snprintf(want, sizeof want, "\"outcome\": \"%s\", \"difference\": {\"value\": ", cases[t].want);
        CHECK_MSG(cl && strstr(cl, want), "JSON claims lack %s", want);
        double v = NAN, lo = NAN, hi = NAN;
        const char *d = cl ? strstr(cl, "\"difference\": {") : NULL;
        if (d) sscanf(d, "\"difference\": {\"value\": %lf, \"se\": %*f, \"lo95\": %lf, \"hi95\": %lf", &v, &lo, &hi);
        CHECK_NEAR(v, r->models[1].unseen.map_at_r - r->models[0].unseen.map_at_r, 1e-6);
        CHECK(lo < v && v < hi);
        if (t == 0) CHECK_MSG(lo < 0 && hi > 0, "margin 0.011 with se ~0.008: interval %g..%g should contain 0", lo, hi);
        /* the figure's own uncertainty is in the table and the JSON */
        CHECK(strstr(h.s, "class=\"pm\">&#177;0.0") != NULL);
        CHECK(strstr(j.s, "\"unseen_map_at_r\": {\"value\": ") != NULL);
        /* plain words, no jargon; no quick banner on a normal run */
        CHECK(strstr(h.s, "What the comparison tests") && !strstr(h.s, "seed's"));
        CHECK(!strstr(h.s, "Quick run") && strstr(j.s, "\"quick\": false"));
        CHECK(!strstr(sm_report_text(r), "seed's") && !strstr(sm_report_text(r), "quick run"));
        sm_sbuf_free(&h); sm_sbuf_free(&j);
        /* the same report as a quick run: the banner comes first, before any section */
        r->cfg.quick = 1; r->cfg.epochs = 1;
        free(r->text); r->text = NULL;
        CHECK_OK(sm_report_build_html(r, &h));
        CHECK_OK(sm_report_build_json(r, &j));
        const char *q = h.s ? strstr(h.s, "<p class=\"quick\"><b>Quick run:</b> 1 epoch on 3000 train images") : NULL;
        const char *h2 = h.s ? strstr(h.s, "<h2>") : NULL;
        CHECK_MSG(q && h2 && q < h2, "no quick banner before the first section");
        CHECK(j.s && strstr(j.s, "\"quick\": true"));
        CHECK(strstr(sm_report_text(r), "quick run (--quick): 1 epoch on 3000 train images") != NULL);
        sm_sbuf_free(&h); sm_sbuf_free(&j);
        free_fake(r);
    }
}

/* ---- the driver on synthetic data ------------------------------------------------------------ */

static sm_status make_data(sm_dataset **out, int per_class, uint64_t seed) {
    enum { C = 10, S = 8 };
    int n = C * per_class;
    float *x = malloc((size_t)n * S * S * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    lcg = seed;
    for (int i = 0; i < n; i++) {
        int c = i % C; /* interleaved classes, as in a real file */
        y[i] = c;
        for (int p = 0; p < S * S; p++) {
            int r = p / S, q = p % S;
            double v = 0.5 * sin(0.7 * (c + 1) * r + 0.4 * c * q) + 0.35 * nrand();
            x[i * S * S + p] = (float)v;
        }
    }
    sm_status st = sm_dataset_from_arrays(out, x, y, n, S, S, 1);
    free(x); free(y);
    return st;
}

static void test_compare(void) {
    sm_dataset *train = NULL, *test = NULL;
    CHECK_OK(make_data(&train, 60, 1));
    CHECK_OK(make_data(&test, 30, 2));
    if (!train || !test) return;
    sm_compare_config cfg;
    sm_compare_config_default(&cfg);
    cfg.model_spec = "mlp";
    cfg.num_losses = 2;
    cfg.losses[0] = "softmax"; cfg.loss_options[0] = "";
    cfg.losses[1] = "triplet"; cfg.loss_options[1] = "margin=0.1,miner=semihard";
    cfg.epochs = 2; cfg.batch_size = 64; cfg.per_class = 16;
    cfg.shots = 3; cfg.calib_per_class = 10; cfg.gallery_per_class = 30; cfg.pairs_per_class = 15;
    cfg.scatter_per_class = 10; cfg.triplet_samples = 2000; cfg.few_per_class = 8; cfg.few_epochs = 3;
    sm_report *r1 = NULL, *r2 = NULL;
    CHECK_OK(sm_compare_run(&r1, &cfg, train, test));
    CHECK_OK(sm_compare_run(&r2, &cfg, train, test));
    if (r1 && r2) {
        CHECK(r1->nmodels == 4 && r1->n_train == 300 && r1->n_test_unseen == 150 && r1->n_pairs == 75 * 74 / 2);
        for (int i = 0; i < r1->nmodels; i++) {
            const sm_rep_model *a = &r1->models[i], *b = &r2->models[i];
            double figs[] = {a->unseen.precision_at_1, a->unseen.map_at_r, a->seen.r_precision, a->fewshot_nn,
                             a->fewshot_centroid, a->acc_nn, a->acc_centroid, a->trip_u, a->trip_s};
            for (size_t k = 0; k < sizeof figs / sizeof figs[0]; k++)
                CHECK_MSG(figs[k] >= 0 && figs[k] <= 1, "model %d figure %zu = %f", i, k, figs[k]);
            CHECK(a->intra_u > 0 && a->inter_u > a->intra_u * 0.5 && a->inter_u <= 2);
            CHECK(a->few == (i >= 2));
            CHECK((a->head_classes > 0) == (i % 2 == 0));
            CHECK(i % 2 == 0 ? a->acc_argmax >= 0 && a->acc_argmax <= 1 : isnan(a->acc_argmax));
            if (!a->few) {
                CHECK(a->open_tar >= 0 && a->open_tar <= 1 && a->open_reject >= 0 && a->open_reject <= 1);
                CHECK(a->open_calib_far <= cfg.far + 1e-12);
                CHECK(a->ver_auc > 0.5 && a->ver_auc <= 1 && a->roc_n == SM_REP_ROC_POINTS);
                CHECK(a->pca_n == 50 && a->pca_var[0] >= a->pca_var[1]);
                double hg = 0;
                for (int k = 0; k < SM_REP_BINS; k++) hg += a->hist_gen[k] * 2.0 / SM_REP_BINS;
                CHECK_NEAR(hg, 1, 1e-9);
                CHECK(a->curve_n == 2 * a->steps_per_epoch && a->curve_n > 0);
            }
            /* same seed, same figures */
            CHECK(a->unseen.map_at_r == b->unseen.map_at_r && a->fewshot_nn == b->fewshot_nn &&
                  a->open_tar == b->open_tar && a->trip_u == b->trip_u && a->acc_nn == b->acc_nn);
            CHECK(a->curve_n == b->curve_n && !memcmp(a->curve, b->curve, (size_t)a->curve_n * sizeof(double)));
            CHECK(a->pca_n == b->pca_n && (!a->pca_n || !memcmp(a->pca, b->pca, (size_t)a->pca_n * 2 * sizeof(float))));
        }
        sm_sbuf h = {0}, j = {0};
        CHECK_OK(sm_report_build_html(r1, &h));
        CHECK_OK(sm_report_build_json(r1, &j));
        int nsvg = 0;
        CHECK_MSG(h.s && check_markup(h.s, &nsvg) == 0, "report HTML not well-formed");
        CHECK_MSG(nsvg == 3 * 2 + 1, "%d charts, want 7", nsvg);
        CHECK(h.s && !strstr(h.s, "<script") && !strstr(h.s, "src=\"http"));
        CHECK(j.s && json_balanced(j.s));
        CHECK(j.s && strstr(j.s, "\"uncertainty\": {\"method\": \"bootstrap over the test queries\"") &&
              strstr(j.s, "\"unseen_map_at_r\": {\"value\": ") && strstr(j.s, "\"closed_set_argmax\": {\"value\": ") &&
              strstr(j.s, "\"unseen_separation\": {\"value\": "));
        /* each figure's uncertainty is centred on the figure itself */
        for (int i = 0; i < r1->nmodels; i++) {
            sm_rep_interval iv;
            const sm_rep_model *a = &r1->models[i];
            CHECK(sm_rep_bootstrap_mean(a->q[SM_REP_Q_MAP_U], NULL, a->qn[SM_REP_Q_MAP_U], &iv) == 0);
            CHECK_NEAR(iv.value, a->unseen.map_at_r, 1e-6);
            CHECK(iv.lo <= iv.value && iv.value <= iv.hi && iv.hi > iv.lo);
            CHECK(sm_rep_bootstrap_mean(a->q[SM_REP_Q_FS_NN], NULL, a->qn[SM_REP_Q_FS_NN], &iv) == 0);
            CHECK_NEAR(iv.value, a->fewshot_nn, 1e-6);
            CHECK(sm_rep_bootstrap_mean(a->q[SM_REP_Q_NN_S], NULL, a->qn[SM_REP_Q_NN_S], &iv) == 0);
            CHECK_NEAR(iv.value, a->acc_nn, 1e-6);
            if (a->head_classes > 0) {
                CHECK(sm_rep_bootstrap_mean(a->q[SM_REP_Q_ARG_S], NULL, a->qn[SM_REP_Q_ARG_S], &iv) == 0);
                CHECK_NEAR(iv.value, a->acc_argmax, 1e-6);
            }
            if (!a->few) {
                CHECK(sm_rep_bootstrap_mean(a->q[SM_REP_Q_OPEN_TAR], NULL, a->qn[SM_REP_Q_OPEN_TAR], &iv) == 0);
                CHECK_NEAR(iv.value, a->open_tar, 1e-6);
                CHECK(sm_rep_bootstrap_mean(a->q[SM_REP_Q_OPEN_REJ], NULL, a->qn[SM_REP_Q_OPEN_REJ], &iv) == 0);
                CHECK_NEAR(iv.value, a->open_reject, 1e-6);
            }
            CHECK(sm_rep_bootstrap_sep(a->q[SM_REP_Q_INTRA_U], a->q[SM_REP_Q_INTER_U], NULL, NULL, a->qn[SM_REP_Q_INTRA_U], &iv) == 0);
            CHECK_MSG(fabs(iv.value + a->intra_u / a->inter_u) < 0.01, "per-image separation %g, pairwise %g", -iv.value,
                      a->intra_u / a->inter_u);
        }
        CHECK(j.s && strstr(j.s, "\"figures\": [\"pca_0\", \"pca_1\", \"histogram_0\"") != NULL);
        const char *text = sm_report_text(r1);
        CHECK(strstr(text, "MAP@R") && strstr(text, "softmax") && strstr(text, "triplet"));
        sm_sbuf_free(&h); sm_sbuf_free(&j);
        /* writing to an unwritable place is an I/O error, not a crash */
        CHECK_STATUS(sm_report_write_html(r1, "/nonexistent-dir/x/report.html"), SM_ERR_IO);
    }
    sm_report_free(r1);
    sm_report_free(r2);
    /* bad settings */
    sm_report *r = NULL;
    cfg.open_known = 5;
    CHECK_STATUS(sm_compare_run(&r, &cfg, train, test), SM_ERR_INVALID);
    cfg.open_known = 3;
    cfg.unseen_classes = "4-9";
    CHECK_STATUS(sm_compare_run(&r, &cfg, train, test), SM_ERR_INVALID);
    cfg.unseen_classes = "5-9";
    cfg.schedule = SM_SCHED_STEP; /* only constant and cosine */
    CHECK_STATUS(sm_compare_run(&r, &cfg, train, test), SM_ERR_INVALID);
    cfg.schedule = SM_SCHED_CONSTANT;
    cfg.calib_per_class = 1000; /* more than the train split holds: takes what there is */
    cfg.shots = 100;            /* no image left after the shots for the calibration */
    CHECK_STATUS(sm_compare_run(&r, &cfg, train, test), SM_ERR_RANGE);
    CHECK(r == NULL);
    CHECK_STATUS(sm_compare_run(NULL, &cfg, train, test), SM_ERR_INVALID);
    sm_report_free(NULL);
    CHECK(!strcmp(sm_report_text(NULL), ""));
    sm_dataset_free(train);
    sm_dataset_free(test);
}

/* The report's own helpers (report/util.c): messages through the public sm_errmsg_set reach
 * sm_errmsg() (also from sm_compare_run's checks), allocation failures are named, the RNG draws
 * in range and repeats for a seed, and the atomic write names what failed and leaves the file
 * intact on success. */
static void test_helpers(void) {
    CHECK_STATUS(sm_errmsg_set(SM_ERR_RANGE, "value %d of %s", 7, "x"), SM_ERR_RANGE);
    CHECK(!strcmp(sm_errmsg(), "value 7 of x"));
    CHECK_STATUS(sm_errmsg_set(SM_ERR_IO, NULL), SM_ERR_IO);
    CHECK(!strcmp(sm_errmsg(), ""));
    CHECK(rep_alloc((size_t)-1 / 2, 4) == NULL && strstr(sm_errmsg(), "overflows") != NULL);
    float *p = rep_calloc(3, sizeof(float)); /* (3) */
    CHECK(p && ((uintptr_t)p & 63) == 0 && p[0] == 0 && p[2] == 0);
    rep_free(p);
    rep_rng a, b;
    rep_rng_seed(&a, 5); rep_rng_seed(&b, 5);
    int same = 1, inrange = 1;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rep_rng_below(&a, 7), y = rep_rng_below(&b, 7);
        same &= x == y;
        inrange &= x < 7;
    }
    CHECK(same && inrange && rep_rng_below(&a, 1) == 0);
    CHECK(rep_now() > 0);
    CHECK_STATUS(rep_write_file("/nonexistent-dir/x/out.txt", "abc", 3), SM_ERR_IO);
    CHECK(strstr(sm_errmsg(), "/nonexistent-dir/x/out.txt.tmp.") && strstr(sm_errmsg(), "cannot create"));
    char path[64];
    snprintf(path, sizeof path, "/tmp/sm_test_report_%ld.txt", (long)getpid());
    CHECK_OK(rep_write_file(path, "hello\n", 6));
    FILE *f = fopen(path, "rb");
    char got[16] = {0};
    CHECK(f && fread(got, 1, sizeof got, f) == 6 && !strcmp(got, "hello\n"));
    if (f) fclose(f);
    remove(path);
    sm_compare_config cfg;
    sm_compare_config_default(&cfg);
    cfg.num_losses = 0;
    sm_errmsg_set(SM_ERR_IO, "stale");
    sm_report *r = NULL;
    sm_dataset *ds = NULL;
    float x[4] = {0};
    int32_t y[4] = {0, 1, 2, 3};
    CHECK_OK(sm_dataset_from_arrays(&ds, x, y, 4, 1, 1, 1)); /* x (4, 1, 1, 1) */
    CHECK_STATUS(sm_compare_run(&r, &cfg, ds, ds), SM_ERR_INVALID);
    CHECK_MSG(strstr(sm_errmsg(), "compare: between 1 and 8 losses") != NULL, "message: %s", sm_errmsg());
    CHECK(r == NULL);
    sm_dataset_free(ds);
}

int main(void) {
    sm_set_num_threads(2);
    test_helpers();
    test_pca();
    test_ticks_and_text();
    test_svg();
    test_chart_data();
    test_confidence_text();
    test_bootstrap();
    test_verdict_text();
    test_compare();
    TEST_MAIN_END();
}
