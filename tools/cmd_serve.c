/* cmd_serve.c - `rsmoe serve`: loads the model once and serves the JSON API and the web page
 * (src/serve, docs/serve.md) until SIGINT or SIGTERM. */
#include "cli.h"
#include "serve/serve.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* SIGINT/SIGTERM -> a byte on this pipe (async-signal-safe). A handler, not sigwait with a
 * blocked mask: threads started before main (OpenBLAS's pool) would keep the default action. */
static int g_sig_pipe[2] = {-1, -1};
static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(g_sig_pipe[1], &b, 1) < 0) { /* nothing to do */ }
    errno = saved;
}

static void usage(FILE *f) {
    rs_serve_params d = rs_serve_default_params();
    fprintf(f, "usage: rsmoe serve -m MODEL.gguf [options]\n\n"
               "HTTP server: POST /v1/caption, POST /v1/vqa, GET /v1/model, GET /healthz, and a web page at /\n"
               "(docs/serve.md). Stops cleanly on SIGINT / SIGTERM.\n\n"
               "options:\n"
               "  -m FILE             the model (GGUF), loaded once\n"
               "  --host ADDR         address to bind (default %s: loopback only)\n"
               "  --port N            port (default %d; 0 = any free port, printed at start)\n"
               "  --threads N         compute threads per worker (default: all cores)\n"
               "  --workers N         worker contexts running requests in parallel (default %d)\n"
               "  --queue N           requests waiting beyond the running ones (default %d); full -> 503\n"
               "  --max-upload-mb N   request body limit in MiB (default %zu) -> 413\n"
               "  --max-dim N         largest image width/height (default %d) -> 413\n"
               "  --timeout-s S       per-request limit, queue wait included (default %g) -> 504\n"
               "  --max-beams N       largest beam count a request may ask for (default %d)\n"
               "  --max-views N       most test-time views a request may ask for, 1..8 (default %d;\n"
               "                      each worker's KV cache grows with max-beams x max-views)\n"
               "  --max-connections N open connections (default %d)\n",
            d.host, d.port, d.workers, d.queue, d.max_upload >> 20, d.max_dim, d.timeout_s, d.max_beams, d.max_views,
            d.max_connections);
}

int cmd_serve(int argc, char **argv) {
    rs_serve_params p = rs_serve_default_params();
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        char *e = NULL;
#define NUM(field, lo, hi) do { long v = has ? strtol(argv[++i], &e, 10) : 0; if (!e || *e || v < (lo) || v > (hi)) goto bad; field = v; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m")) { if (!has) goto bad; model = argv[++i]; }
        else if (!strcmp(a, "--host")) { if (!has) goto bad; p.host = argv[++i]; }
        else if (!strcmp(a, "--port")) NUM(p.port, 0, 65535);
        else if (!strcmp(a, "--threads")) NUM(p.threads, 0, 1024);
        else if (!strcmp(a, "--workers")) NUM(p.workers, 1, 64);
        else if (!strcmp(a, "--queue")) NUM(p.queue, 0, 100000);
        else if (!strcmp(a, "--max-upload-mb")) { long mb = 0; NUM(mb, 1, 4096); p.max_upload = (size_t)mb << 20; }
        else if (!strcmp(a, "--max-dim")) NUM(p.max_dim, 1, 32768);
        else if (!strcmp(a, "--max-beams")) NUM(p.max_beams, 1, 16);
        else if (!strcmp(a, "--max-views")) NUM(p.max_views, 1, RSMOE_MAX_VIEWS);
        else if (!strcmp(a, "--max-connections")) NUM(p.max_connections, 1, 100000);
        else if (!strcmp(a, "--timeout-s")) {
            double v = has ? strtod(argv[++i], &e) : 0;
            if (!e || *e || !(v > 0 && v <= 86400)) goto bad;
            p.timeout_s = v;
        } else { fprintf(stderr, "rsmoe serve: unknown option '%s'\n", a); usage(stderr); return 2; }
        continue;
    bad:
        fprintf(stderr, "rsmoe serve: missing or bad value for %s\n", a);
        return 2;
#undef NUM
    }
    if (!model) { fprintf(stderr, "rsmoe serve: -m MODEL is required\n"); usage(stderr); return 2; }
    p.model_name = model;

    if (pipe(g_sig_pipe)) { perror("rsmoe serve: pipe"); return 1; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(model, NULL, &st);
    if (!m) {
        close(g_sig_pipe[0]);
        close(g_sig_pipe[1]);
        return cli_fail(model, st);
    }
    rs_server *s = NULL;
    if ((st = rs_serve_start(m, &p, &s))) {
        rsmoe_model_free(m);
        close(g_sig_pipe[0]);
        close(g_sig_pipe[1]);
        return cli_fail("serve", st);
    }
    const char *h = p.host;
    bool v6 = strchr(h, ':') != NULL;
    fprintf(stderr, "rsmoe serve: %s loaded; listening on http://%s%s%s:%d/ (%d worker%s, queue %d); Ctrl-C stops\n",
            model, v6 ? "[" : "", h, v6 ? "]" : "", rs_serve_port(s), p.workers, p.workers == 1 ? "" : "s", p.queue);
    unsigned char sig = 0;
    while (read(g_sig_pipe[0], &sig, 1) < 0 && errno == EINTR) {}
    fprintf(stderr, "rsmoe serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rs_serve_stats ss = rs_serve_get_stats(s);
    rs_serve_stop(s);
    rsmoe_model_free(m);
    close(g_sig_pipe[0]);
    close(g_sig_pipe[1]);
    fprintf(stderr, "rsmoe serve: stopped after %llu requests (%llu ok, %llu 4xx, %llu 5xx, %llu busy, %llu timed out)\n",
            (unsigned long long)ss.requests, (unsigned long long)ss.ok, (unsigned long long)ss.client_errors,
            (unsigned long long)ss.server_errors, (unsigned long long)ss.rejected_busy, (unsigned long long)ss.timeouts);
    return 0;
}
