/* json.c - the CLI's JSON writer (json.h): every --json output goes through it, so escaping
 * and number formatting are written once. */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cj_init(cj *j, FILE *f) {
    memset(j, 0, sizeof *j);
    j->f = f;
}

/* Separator before a value or key at the current level. */
static void sep(cj *j) {
    if (j->after_key) { j->after_key = 0; return; }
    if (j->depth > 0 && j->count[j->depth - 1]++ > 0) fputc(',', j->f);
}

static void open_(cj *j, int ch) {
    sep(j);
    fputc(ch, j->f);
    if (j->depth < CJ_MAX_DEPTH) j->count[j->depth] = 0;
    j->depth++;
}

static void close_(cj *j, int ch) {
    if (j->depth > 0) j->depth--;
    fputc(ch, j->f);
    if (j->depth == 0) fputc('\n', j->f);
}

void cj_obj(cj *j) { open_(j, '{'); }
void cj_obj_end(cj *j) { close_(j, '}'); }
void cj_arr(cj *j) { open_(j, '['); }
void cj_arr_end(cj *j) { close_(j, ']'); }

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if the bytes there are not one. */
static int utf8_len(const unsigned char *s) {
    unsigned char c = s[0];
    int n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
    else return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

void cj_write_string(FILE *f, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        unsigned char c = *s;
        if (c == '"') fputs("\\\"", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else if (c >= 0x80) {
            int n = utf8_len(s);
            if (!n) { fputs("\\ufffd", f); s++; continue; }
            fwrite(s, 1, (size_t)n, f);
            s += n;
            continue;
        } else fputc(c, f);
        s++;
    }
    fputc('"', f);
}

void cj_key(cj *j, const char *key) {
    sep(j);
    cj_write_string(j->f, key);
    fputc(':', j->f);
    j->after_key = 1;
}

void cj_str(cj *j, const char *s) {
    if (!s) { cj_null(j); return; }
    sep(j);
    cj_write_string(j->f, s);
}

void cj_num(cj *j, double x) {
    if (!isfinite(x)) { cj_null(j); return; }
    sep(j);
    char buf[40];
    snprintf(buf, sizeof buf, "%.15g", x);
    if (strtod(buf, NULL) != x) snprintf(buf, sizeof buf, "%.17g", x); /* round trip */
    fputs(buf, j->f);
}

void cj_numf(cj *j, float x) {
    if (!isfinite(x)) { cj_null(j); return; }
    sep(j);
    char buf[40];
    for (int p = 6; p <= 9; p++) { /* the shortest that reads back as the same float */
        snprintf(buf, sizeof buf, "%.*g", p, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    fputs(buf, j->f);
}

void cj_int(cj *j, long long x) { sep(j); fprintf(j->f, "%lld", x); }
void cj_bool(cj *j, int b) { sep(j); fputs(b ? "true" : "false", j->f); }
void cj_null(cj *j) { sep(j); fputs("null", j->f); }

void cj_kstr(cj *j, const char *key, const char *s) { cj_key(j, key); cj_str(j, s); }
void cj_knum(cj *j, const char *key, double x) { cj_key(j, key); cj_num(j, x); }
void cj_knumf(cj *j, const char *key, float x) { cj_key(j, key); cj_numf(j, x); }
void cj_kint(cj *j, const char *key, long long x) { cj_key(j, key); cj_int(j, x); }
void cj_kbool(cj *j, const char *key, int b) { cj_key(j, key); cj_bool(j, b); }
void cj_knull(cj *j, const char *key) { cj_key(j, key); cj_null(j); }
