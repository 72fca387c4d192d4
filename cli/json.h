/* json.h - a small streaming JSON writer for the CLI's --json outputs: one document on a
 * FILE, commas and nesting tracked, strings escaped (UTF-8 passed through, invalid bytes
 * replaced by U+FFFD), numbers with round-trip precision, null for NaN and infinities. */
#ifndef SM_CLI_JSON_H
#define SM_CLI_JSON_H
#include <stdint.h>
#include <stdio.h>

#define CJ_MAX_DEPTH 32

typedef struct cj {
    FILE *f;
    int depth;
    int count[CJ_MAX_DEPTH]; /* values written at each level */
    int after_key;           /* a key was written: the next value follows it without a comma */
} cj;

void cj_init(cj *j, FILE *f);
void cj_obj(cj *j);       /* { */
void cj_obj_end(cj *j);   /* } (and a newline at the top level) */
void cj_arr(cj *j);       /* [ */
void cj_arr_end(cj *j);   /* ] */
void cj_key(cj *j, const char *key);
void cj_str(cj *j, const char *s);   /* NULL writes null */
void cj_num(cj *j, double x);        /* NaN / +-inf write null */
void cj_numf(cj *j, float x);        /* a float: the shortest digits that read back the same */
void cj_int(cj *j, long long x);
void cj_bool(cj *j, int b);
void cj_null(cj *j);
/* key + value in one call */
void cj_kstr(cj *j, const char *key, const char *s);
void cj_knum(cj *j, const char *key, double x);
void cj_knumf(cj *j, const char *key, float x);
void cj_kint(cj *j, const char *key, long long x);
void cj_kbool(cj *j, const char *key, int b);
void cj_knull(cj *j, const char *key);
/* Write s to f as a JSON string literal (quotes included). */
void cj_write_string(FILE *f, const char *s);

#endif
