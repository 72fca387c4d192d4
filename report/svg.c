/* svg.c - inline-SVG plot primitives for the report: a growable text buffer, "nice" axis ticks,
 * a chart frame with grid, ticks, labels and title, scatter points, polylines, histogram bars
 * and a legend.  Every coordinate is clamped into the chart's plot area and written with two
 * decimals, so the output is well-formed, finite and inside the viewBox (tests/test_report.c). */
#include "report/report.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- text buffer ------------------------------------------------------------------------ */

static int sbuf_reserve(sm_sbuf *b, size_t extra) {
    if (b->failed) return 0;
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) { b->failed = 1; return 0; }
    b->s = s;
    b->cap = cap;
    return 1;
}

void sm_sbuf_printf(sm_sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) { b->failed = 1; return; }
    if (!sbuf_reserve(b, (size_t)n)) return;
    if ((size_t)n < sizeof tmp) {
        memcpy(b->s + b->len, tmp, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void sm_sbuf_puts(sm_sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (!sbuf_reserve(b, n)) return;
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

void sm_sbuf_xml(sm_sbuf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': sm_sbuf_puts(b, "&amp;"); break;
        case '<': sm_sbuf_puts(b, "&lt;"); break;
        case '>': sm_sbuf_puts(b, "&gt;"); break;
        case '"': sm_sbuf_puts(b, "&quot;"); break;
        case '\'': sm_sbuf_puts(b, "&#39;"); break;
        default: {
            char c[2] = {*s, 0};
            sm_sbuf_puts(b, c);
        }
        }
    }
}

void sm_sbuf_json_str(sm_sbuf *b, const char *s) {
    sm_sbuf_puts(b, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') sm_sbuf_printf(b, "\\%c", c);
        else if (c < 0x20) sm_sbuf_printf(b, "\\u%04x", c);
        else { char t[2] = {(char)c, 0}; sm_sbuf_puts(b, t); }
    }
    sm_sbuf_puts(b, "\"");
}

void sm_sbuf_json_num(sm_sbuf *b, double v) {
    if (isfinite(v)) sm_sbuf_printf(b, "%.9g", v);
    else sm_sbuf_puts(b, "null");
}

void sm_sbuf_free(sm_sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

/* ---- ticks ------------------------------------------------------------------------------- */

int sm_nice_ticks(double lo, double hi, int max_ticks, double *ticks) {
    if (!isfinite(lo) || !isfinite(hi) || max_ticks < 2) return 0;
    if (hi < lo) { double t = lo; lo = hi; hi = t; }
    if (hi == lo) { ticks[0] = lo; return 1; }
    double raw = (hi - lo) / (max_ticks - 1), mag = pow(10, floor(log10(raw))), step = mag;
    const double mult[] = {1, 2, 2.5, 5, 10};
    for (int i = 0; i < 5; i++) {
        step = mult[i] * mag;
        if (floor(hi / step) - ceil(lo / step) + 1 <= max_ticks) break;
    }
    int n = 0;
    for (double k = ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step && n < max_ticks; k++) {
        double v = k * step;
        ticks[n++] = fabs(v) < 1e-12 * step ? 0 : v;
    }
    return n;
}

/* ---- charts ------------------------------------------------------------------------------ */

static const char *const palette[10] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

const char *sm_svg_color(int i) { return palette[((i % 10) + 10) % 10]; }

void sm_svg_init(sm_svg_plot *p, int width, int height, double x0, double x1, double y0, double y1) {
    memset(p, 0, sizeof *p);
    p->width = width; p->height = height;
    p->ml = 56; p->mr = 14; p->mt = 28; p->mb = 44;
    p->x0 = x0; p->x1 = x1; p->y0 = y0; p->y1 = y1;
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

double sm_svg_px(const sm_svg_plot *p, double x) {
    double a = p->x0, c = p->x1;
    if (p->log_x) { a = log10(a); c = log10(c); x = x > 0 ? log10(x) : -INFINITY; }
    double t = (c != a) ? (x - a) / (c - a) : 0.5;
    if (isnan(t)) t = 0;
    return clampd(p->ml + t * (p->width - p->ml - p->mr), p->ml, p->width - p->mr);
}

double sm_svg_py(const sm_svg_plot *p, double y) {
    double t = (p->y1 != p->y0) ? (y - p->y0) / (p->y1 - p->y0) : 0.5;
    if (isnan(t)) t = 0;
    return clampd(p->height - p->mb - t * (p->height - p->mt - p->mb), p->mt, p->height - p->mb);
}

/* Tick label: compact %g, or 10^k for a log axis. */
static void tick_label(char *s, size_t n, double v, int log_axis) {
    if (log_axis) {
        double e = log10(v);
        if (fabs(e - floor(e + 0.5)) < 1e-9) { snprintf(s, n, "1e%d", (int)floor(e + 0.5)); return; }
    }
    snprintf(s, n, "%g", fabs(v) < 1e-12 ? 0.0 : v);
}

void sm_svg_begin(sm_sbuf *b, const sm_svg_plot *p) {
    double L = p->ml, R = p->width - p->mr, T = p->mt, B = p->height - p->mb;
    sm_sbuf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n",
                   p->width, p->height, p->width, p->height);
    sm_sbuf_printf(b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", p->width, p->height);
    double t[16];
    /* x ticks */
    int nt;
    if (p->log_x) {
        nt = 0;
        for (double e = ceil(log10(p->x0) - 1e-9); e <= log10(p->x1) + 1e-9 && nt < 16; e++) t[nt++] = pow(10, e);
    } else {
        nt = sm_nice_ticks(p->x0, p->x1, 7, t);
    }
    for (int i = 0; i < nt; i++) {
        char lab[32];
        double x = sm_svg_px(p, t[i]);
        tick_label(lab, sizeof lab, t[i], p->log_x);
        sm_sbuf_printf(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e6e6e6\"/>"
                          "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" fill=\"#333333\">%s</text>\n",
                       x, T, x, B, x, B + 14, lab);
    }
    nt = sm_nice_ticks(p->y0, p->y1, 6, t);
    for (int i = 0; i < nt; i++) {
        char lab[32];
        double y = sm_svg_py(p, t[i]);
        tick_label(lab, sizeof lab, t[i], 0);
        sm_sbuf_printf(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e6e6e6\"/>"
                          "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" fill=\"#333333\">%s</text>\n",
                       L, y, R, y, L - 4, y + 4, lab);
    }
    sm_sbuf_printf(b, "<rect class=\"plot-area\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
                      "stroke=\"#555555\"/>\n", L, T, R - L, B - T);
    if (p->title) {
        sm_sbuf_printf(b, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">",
                       (L + R) / 2, 19.0);
        sm_sbuf_xml(b, p->title);
        sm_sbuf_puts(b, "</text>\n");
    }
    if (p->xlabel) {
        sm_sbuf_printf(b, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">", (L + R) / 2, (double)p->height - 8);
        sm_sbuf_xml(b, p->xlabel);
        sm_sbuf_puts(b, "</text>\n");
    }
    if (p->ylabel) {
        sm_sbuf_printf(b, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(-90 %.2f %.2f)\">",
                       14.0, (T + B) / 2, 14.0, (T + B) / 2);
        sm_sbuf_xml(b, p->ylabel);
        sm_sbuf_puts(b, "</text>\n");
    }
}

void sm_svg_end(sm_sbuf *b) { sm_sbuf_puts(b, "</svg>\n"); }

void sm_svg_scatter(sm_sbuf *b, const sm_svg_plot *p, const double *x, const double *y, int64_t n,
                    const char *color, double r, double opacity) {
    sm_sbuf_printf(b, "<g fill=\"%s\" fill-opacity=\"%.2f\">\n", color, opacity);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        sm_sbuf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\"/>", sm_svg_px(p, x[i]), sm_svg_py(p, y[i]), r);
        if (i % 8 == 7) sm_sbuf_puts(b, "\n");
    }
    sm_sbuf_puts(b, "</g>\n");
}

void sm_svg_line(sm_sbuf *b, const sm_svg_plot *p, const double *x, const double *y, int64_t n,
                 const char *color, double width, int dash) {
    sm_sbuf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\"%s points=\"", color, width,
                   dash ? " stroke-dasharray=\"5 3\"" : "");
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]) || (p->log_x && !(x[i] > 0))) continue;
        sm_sbuf_printf(b, "%s%.2f,%.2f", k++ ? " " : "", sm_svg_px(p, x[i]), sm_svg_py(p, y[i]));
        if (k % 10 == 0) sm_sbuf_puts(b, "\n");
    }
    sm_sbuf_puts(b, "\"/>\n");
}

void sm_svg_bars(sm_sbuf *b, const sm_svg_plot *p, const double *edges, const double *h, int nbins,
                 const char *color, double opacity) {
    sm_sbuf_printf(b, "<g fill=\"%s\" fill-opacity=\"%.2f\" stroke=\"%s\" stroke-width=\"0.5\">\n", color, opacity, color);
    for (int i = 0; i < nbins; i++) {
        if (!isfinite(h[i]) || h[i] <= 0) continue;
        double xa = sm_svg_px(p, edges[i]), xb = sm_svg_px(p, edges[i + 1]);
        double ya = sm_svg_py(p, h[i]), yb = sm_svg_py(p, p->y0);
        sm_sbuf_printf(b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/>", xa, ya,
                       xb > xa ? xb - xa : 0, yb > ya ? yb - ya : 0);
        if (i % 6 == 5) sm_sbuf_puts(b, "\n");
    }
    sm_sbuf_puts(b, "</g>\n");
}

/* Legend layout: entries left to right above the plot area, wrapping into rows within its
 * width.  Entry i starts at x offset ox[i] (from the plot's left edge) in row row[i]; returns
 * the number of rows. */
#define LEGEND_ROW 15.0
static double legend_entry_w(const char *name) { return 22 + 6.2 * (double)strlen(name) + 12; }
static int legend_layout(const sm_svg_plot *p, const char *const *names, int n, double *ox, int *row) {
    double avail = p->width - p->mr - p->ml, x = 0;
    int r = 0;
    for (int i = 0; i < n; i++) {
        double w = legend_entry_w(names[i]);
        if (x > 0 && x + w > avail) { r++; x = 0; }
        if (ox) ox[i] = x;
        if (row) row[i] = r;
        x += w;
    }
    return n > 0 ? r + 1 : 0;
}

int sm_svg_reserve_legend(sm_svg_plot *p, const char *const *names, int n) {
    if (n <= 0) return 0;
    int rows = legend_layout(p, names, n, NULL, NULL);
    p->legend_rows = rows;
    p->mt += (int)(rows * LEGEND_ROW + 4);
    p->height += (int)(rows * LEGEND_ROW + 4);
    return rows;
}

void sm_svg_legend(sm_sbuf *b, const sm_svg_plot *p, const char *const *names,
                   const char *const *colors, int n, int lines) {
    if (n <= 0 || p->legend_rows <= 0) return;
    double ox[SM_SVG_MAX_LEGEND];
    int row[SM_SVG_MAX_LEGEND];
    if (n > SM_SVG_MAX_LEGEND) n = SM_SVG_MAX_LEGEND;
    int rows = legend_layout(p, names, n, ox, row);
    if (rows > p->legend_rows) rows = p->legend_rows;
    double y0 = p->mt - 4 - p->legend_rows * LEGEND_ROW; /* the band sm_svg_reserve_legend added */
    sm_sbuf_puts(b, "<g class=\"legend\">\n");
    for (int i = 0; i < n; i++) {
        if (row[i] >= rows) break;
        double x = p->ml + ox[i], yy = y0 + LEGEND_ROW * row[i];
        sm_sbuf_printf(b, "<g class=\"legend-item\" data-color=\"%s\">", colors[i]);
        if (lines)
            sm_sbuf_printf(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"3\"/>",
                           x, yy + 7, x + 16, yy + 7, colors[i]);
        else
            sm_sbuf_printf(b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"12\" height=\"10\" fill=\"%s\"/>", x + 2, yy + 2, colors[i]);
        sm_sbuf_printf(b, "<text x=\"%.2f\" y=\"%.2f\">", x + 22, yy + 11);
        sm_sbuf_xml(b, names[i]);
        sm_sbuf_puts(b, "</text></g>\n");
    }
    sm_sbuf_puts(b, "</g>\n");
}
