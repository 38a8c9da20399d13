/* error.c - status names and the per-thread last-error message. */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char g_last_error[1024];

rsmoe_status rs_error(rsmoe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
    va_end(ap);
    return st;
}

void rs_clear_error(void) { g_last_error[0] = 0; }

const char *rsmoe_last_error(void) { return g_last_error; }

const char *rsmoe_status_str(rsmoe_status st) {
    switch (st) {
    case RSMOE_OK: return "ok";
    case RSMOE_ERR_INVALID_ARG: return "invalid argument";
    case RSMOE_ERR_IO: return "i/o error";
    case RSMOE_ERR_FORMAT: return "bad file format";
    case RSMOE_ERR_NOMEM: return "out of memory";
    case RSMOE_ERR_UNSUPPORTED: return "unsupported";
    case RSMOE_ERR_ABORTED: return "aborted";
    case RSMOE_ERR_NUMERIC: return "numeric error";
    case RSMOE_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}
