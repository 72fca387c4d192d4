/* backend.c - what every backend shares: the list of built-in backends, the sticky error and
 * the stream synchronisation around the backend's own sync. */
#include "backend/backend.h"
#include "core/core.h"
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

sm_backend *sm_backend_default(void) { return sm_backend_cpu(); }

int sm_backend_count(void) { return 1; }

sm_backend *sm_backend_get(int i) { return i == 0 ? sm_backend_cpu() : NULL; }

/* 1 if status is the backend's first error since the last sync (it is now recorded). */
static int first_error(sm_backend *be, sm_status status) {
    int expected = SM_OK;
    return atomic_compare_exchange_strong(&be->err, &expected, (int)status);
}

sm_status sm_be_raise(sm_backend *be, sm_status status, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (first_error(be, status)) snprintf(be->errmsg, sizeof be->errmsg, "%s backend: %s", be->ops->name, msg);
    return sm_fail(status, "%s backend: %s", be->ops->name, msg);
}

sm_status sm_be_note(sm_backend *be, sm_status status) {
    if (status != SM_OK && first_error(be, status)) snprintf(be->errmsg, sizeof be->errmsg, "%s", sm_errmsg());
    return status;
}

void sm_be_clear(sm_backend *be) {
    be->errmsg[0] = '\0';
    atomic_store(&be->err, SM_OK);
}

sm_status sm_be_sync(sm_backend *be) {
    sm_status st = be->ops->sync(be);
    if (st == SM_OK && sm_be_error(be) != SM_OK) st = sm_fail(sm_be_error(be), "%s", be->errmsg);
    sm_be_clear(be);
    return st;
}
