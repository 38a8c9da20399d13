/* rsmoe.h - the public C API of the RS-MoE engine (the only header users include).
 *
 * Conventions (after whisper.cpp / llama.cpp):
 *  - every call that can fail returns an rsmoe_status (or NULL plus a status out-parameter);
 *  - rsmoe_last_error() gives a human-readable message for the last failure on this thread;
 *  - the library never calls exit() and never prints unless asked to (log callback);
 *  - the model (immutable weights, shareable across threads) is separate from a context
 *    (per-run state: caches, scratch, threads).
 */
#ifndef RSMOE_H
#define RSMOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RSMOE_VERSION_MAJOR 0
#define RSMOE_VERSION_MINOR 1
#define RSMOE_VERSION_PATCH 0

typedef enum {
    RSMOE_OK = 0,
    RSMOE_ERR_INVALID_ARG = 1,  /* a bad argument or option */
    RSMOE_ERR_IO = 2,           /* a file could not be opened, read or written */
    RSMOE_ERR_FORMAT = 3,       /* a file is malformed, truncated or of the wrong kind */
    RSMOE_ERR_NOMEM = 4,        /* out of memory (or an arena is full) */
    RSMOE_ERR_UNSUPPORTED = 5,  /* a valid request this build cannot do */
    RSMOE_ERR_ABORTED = 6,      /* stopped by the caller's abort callback */
    RSMOE_ERR_NUMERIC = 7,      /* NaN/inf where a finite number was needed */
    RSMOE_ERR_INTERNAL = 8,     /* a bug: please report */
} rsmoe_status;

/* Short name of a status ("ok", "i/o error", ...). Never NULL. */
const char *rsmoe_status_str(rsmoe_status st);

/* The message of the last failure on the calling thread ("" if none). */
const char *rsmoe_last_error(void);

/* One line describing this build and CPU: version, BLAS, SIMD features in use. */
const char *rsmoe_system_info(void);

#ifdef __cplusplus
}
#endif
#endif /* RSMOE_H */
