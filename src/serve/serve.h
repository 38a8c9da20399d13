/* serve.h - the HTTP server behind `rsmoe serve` (libmicrohttpd): a JSON API for captions and
 * answers plus one embedded static page. docs/serve.md describes the API and the limits.
 *
 * Threads: libmicrohttpd's internal polling thread reads requests; a finished upload becomes
 * a job in a bounded queue (full -> 503 + Retry-After) and its connection is suspended; a
 * fixed set of workers, each with its own rsmoe_context (contexts are not thread-safe, the
 * model is shared), decode the image, run the model and resume the connection. The library
 * never prints and never exits: the CLI (tools/cmd_serve.c) starts and stops the server. */
#ifndef RSMOE_SERVE_H
#define RSMOE_SERVE_H

#include "rsmoe.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *host;        /* address to bind (default "127.0.0.1": loopback only) */
    int port;                /* 0: any free port (read it back with rs_serve_port) */
    int threads;             /* compute threads per worker context (0: all CPUs) */
    int workers;             /* worker contexts (default 1) */
    int queue;               /* jobs waiting beyond those running (default 8); full -> 503 */
    size_t max_upload;       /* bytes of one request body (default 20 MiB); more -> 413 */
    int max_dim;             /* largest image width/height (default 8192); more -> 413 */
    int64_t max_pixels;      /* largest width*height (default 64 M) */
    double timeout_s;        /* per request, from arrival to answer (default 60); -> 504 */
    int io_timeout_s;        /* idle connection timeout while uploading (default 30) */
    int max_connections;     /* open connections (default 64) */
    int max_beams;           /* largest beam count a request may ask for (default 8) */
    int max_views;           /* most test-time views a request may ask for (default 1; 1..RSMOE_MAX_VIEWS; the
                              * worker contexts' KV cache grows with max_beams x max_views) */
    int max_len;             /* largest max_len a request may ask for (default 512) */
    const char *model_name;  /* shown by GET /v1/model (e.g. the file path); may be NULL */
} rs_serve_params;

rs_serve_params rs_serve_default_params(void);

typedef struct rs_server rs_server;

/* Creates the worker contexts and starts listening. The model must outlive the server.
 * On failure returns a status with the message recorded and *out = NULL. */
rsmoe_status rs_serve_start(const rsmoe_model *m, const rs_serve_params *p, rs_server **out);
/* The port actually bound (useful with port 0). */
int rs_serve_port(const rs_server *s);
/* Counters since start. */
typedef struct {
    uint64_t requests, ok, client_errors, server_errors, rejected_busy, timeouts;
} rs_serve_stats;
rs_serve_stats rs_serve_get_stats(rs_server *s);
/* Stops accepting, aborts running jobs (their clients get 503), joins the workers, frees
 * everything. NULL is a no-op. */
void rs_serve_stop(rs_server *s);

/* The embedded page (web/index.html, generated into web_assets.c by tools/gen/embed_web.py). */
extern const unsigned char rs_web_index_html[];
extern const size_t rs_web_index_html_len;

#endif
