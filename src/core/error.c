/* error.c - status strings and the per-thread last-error message. */
#include "core.h"
#include <stdio.h>
#include <string.h>

static _Thread_local char tls_msg[SM_ERRMSG_MAX];

const char *sm_strerror(sm_status s) {
    switch (s) {
    case SM_OK: return "ok";
    case SM_ERR_INVALID: return "invalid argument";
    case SM_ERR_NOMEM: return "out of memory";
    case SM_ERR_IO: return "input/output error";
    case SM_ERR_FORMAT: return "malformed or corrupt file";
    case SM_ERR_RANGE: return "value out of range";
    case SM_ERR_SPEC: return "bad model spec";
    case SM_ERR_NUMERIC: return "non-finite number (NaN or Inf)";
    case SM_ERR_MISMATCH: return "mismatched dimensions or models";
    case SM_ERR_NOTFOUND: return "not found";
    case SM_ERR_UNSUPPORTED: return "unsupported operation";
    }
    return "unknown status";
}

const char *sm_errmsg(void) { return tls_msg; }
const char *sm_version(void) { return SM_VERSION_STRING; }

sm_status sm_fail(sm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    va_end(ap);
    return status;
}

void sm_errmsg_prefix(const char *prefix) {
    char tmp[SM_ERRMSG_MAX];
    size_t n = strlen(prefix);
    if (n > SM_ERRMSG_MAX / 2) n = SM_ERRMSG_MAX / 2;
    memcpy(tmp, prefix, n);
    memcpy(tmp + n, ": ", 2);
    size_t rest = strnlen(tls_msg, SM_ERRMSG_MAX - n - 3);
    memcpy(tmp + n + 2, tls_msg, rest);
    tmp[n + 2 + rest] = 0;
    memcpy(tls_msg, tmp, sizeof tmp);
}

void sm_errmsg_clear(void) { tls_msg[0] = 0; }
void sm_errmsg_copy(char *dst) { memcpy(dst, tls_msg, SM_ERRMSG_MAX); }

sm_status sm_errmsg_set(sm_status status, const char *fmt, ...) {
    if (!fmt) { tls_msg[0] = 0; return status; }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    va_end(ap);
    return status;
}
