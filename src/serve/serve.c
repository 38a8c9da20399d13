/* serve.c - `rsmoe serve`: libmicrohttpd front end, bounded job queue, worker contexts.
 * See serve.h for the threading model and docs/serve.md for the API. */
#include "serve/serve.h"
#include "serve/result_json.h"

#include "core/core.h"
#include "data/image.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define FIELD_MAX 4096      /* bytes of one form/JSON option (a question is the longest) */
#define QUESTION_MAX 1000   /* characters of a question */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

/* appends; false when the result would pass limit or memory runs out */
static bool sbuf_add(sbuf *b, const void *data, size_t n, size_t limit) {
    if (n > limit || b->n > limit - n) return false;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        if (cap > limit + 1) cap = limit + 1;
        char *q = realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}
static void sbuf_free(sbuf *b) { free(b->p); memset(b, 0, sizeof *b); }

enum { EP_CAPTION = 1, EP_VQA = 2 };
enum { BODY_RAW = 1, BODY_FORM = 2, BODY_JSON = 3 };
enum { ST_RECEIVING = 0, ST_QUEUED, ST_RUNNING, ST_DONE };
enum { F_QUESTION, F_BEAMS, F_MAX_LEN, F_STYLE, F_ASPECTS, F_RETRIEVAL, F_VIEWS, F_COUNT };
static const char *const g_field_names[F_COUNT] = {"question", "beams", "max_len", "style", "aspects", "retrieval", "views"};

typedef struct req {
    struct rs_server *srv;
    struct MHD_Connection *conn;
    int endpoint, body_kind, state;
    bool accepted;                    /* the headers passed: the body is read (else answered at once) */
    struct MHD_PostProcessor *pp;
    sbuf image, json;                 /* the image bytes; a JSON body */
    sbuf field[F_COUNT];
    bool field_set[F_COUNT];
    char image_name[128];
    const char *question;             /* /v1/vqa: resolved before queueing (MHD-owned or field) */
    size_t received;
    int err_code;                     /* an error found while receiving (0: none) */
    char err_msg[200];
    bool image_started, image_done;
    /* the job */
    rsmoe_generate_params gp;
    bool want_aspects;
    double t_arrive, t_queued, deadline;
    int code;                         /* the answer: status and JSON text */
    char *resp;
    bool retry_after;
    struct req *next;
} req;

typedef struct {
    struct rs_server *srv;
    rsmoe_context *ctx;
    pthread_t th;
    bool started;
} worker;

struct rs_server {
    const rsmoe_model *model;
    rs_serve_params p;
    char host[64];
    struct MHD_Daemon *d;
    int port;
    worker *workers;
    int n_workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    req *head, *tail;                 /* the queue */
    int queued, running;
    atomic_bool stopping;
    char *model_json;                 /* GET /v1/model, built once */
    double t_start;
    double avg_job_s;
    rs_serve_stats stats;
};

rs_serve_params rs_serve_default_params(void) {
    return (rs_serve_params){.host = "127.0.0.1", .port = 8080, .threads = 0, .workers = 1, .queue = 8,
                             .max_upload = (size_t)20 << 20, .max_dim = 8192, .max_pixels = (int64_t)64 << 20,
                             .timeout_s = 60, .io_timeout_s = 30, .max_connections = 64, .max_beams = 8, .max_views = 1,
                             .max_len = 512, .model_name = NULL};
}

/* ------------------------------------------------------------------ responses */
static char *error_json(int code, const char *msg) {
    cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static void count_status(struct rs_server *s, int code) {
    pthread_mutex_lock(&s->mu);
    s->stats.requests++;
    if (code < 400) s->stats.ok++;
    else if (code < 500) s->stats.client_errors++;
    else s->stats.server_errors++;
    if (code == 503) s->stats.rejected_busy++;
    if (code == 504) s->stats.timeouts++;
    pthread_mutex_unlock(&s->mu);
}

/* queues `body` (malloc'd, taken over; NULL -> a 500 text) with the JSON headers */
static enum MHD_Result send_body(struct rs_server *s, struct MHD_Connection *c, int code, char *body,
                                 const char *ctype, bool retry_after) {
    static char oom[] = "{\"error\":{\"code\":500,\"message\":\"out of memory\"}}";
    struct MHD_Response *r;
    if (body) r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    else { code = 500; r = MHD_create_response_from_buffer(sizeof oom - 1, oom, MHD_RESPMEM_PERSISTENT); }
    if (!r) { free(body); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype ? ctype : "application/json; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (retry_after) {
        char ra[32];
        pthread_mutex_lock(&s->mu);
        double avg = s->avg_job_s;
        pthread_mutex_unlock(&s->mu);
        double est = avg * (double)(s->p.queue + s->n_workers) / (double)s->n_workers;
        snprintf(ra, sizeof ra, "%d", est < 1 ? 1 : est > 60 ? 60 : (int)(est + 0.999));
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    count_status(s, code);
    return ret;
}

static enum MHD_Result send_error(struct rs_server *s, struct MHD_Connection *c, int code, const char *msg) {
    return send_body(s, c, code, error_json(code, msg), NULL, code == 503);
}

static enum MHD_Result send_page(struct rs_server *s, struct MHD_Connection *c) {
    struct MHD_Response *r = MHD_create_response_from_buffer(rs_web_index_html_len, (void *)rs_web_index_html,
                                                             MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; img-src 'self' blob: data:; style-src 'unsafe-inline'; "
                            "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    count_status(s, 200);
    return ret;
}

static char *health_json(struct rs_server *s) {
    cJSON *j = cJSON_CreateObject();
    pthread_mutex_lock(&s->mu);
    int q = s->queued, run = s->running;
    rs_serve_stats st = s->stats;
    pthread_mutex_unlock(&s->mu);
    cJSON_AddStringToObject(j, "status", atomic_load(&s->stopping) ? "stopping" : "ok");
    cJSON_AddNumberToObject(j, "queued", q);
    cJSON_AddNumberToObject(j, "running", run);
    cJSON_AddNumberToObject(j, "workers", s->n_workers);
    cJSON_AddNumberToObject(j, "uptime_s", rs_time_s() - s->t_start);
    cJSON_AddNumberToObject(j, "requests", (double)st.requests);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

/* ------------------------------------------------------------------ request parsing */
static void set_err(req *r, int code, const char *fmt, const char *arg) {
    if (r->err_code) return;
    r->err_code = code;
    snprintf(r->err_msg, sizeof r->err_msg, fmt, arg ? arg : "");
}

static int field_index(const char *key) {
    for (int i = 0; i < F_COUNT; i++)
        if (key && !strcmp(key, g_field_names[i])) return i;
    return -1;
}

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                 const char *content_type, const char *transfer_encoding, const char *data,
                                 uint64_t off, size_t size) {
    req *r = cls;
    if (r->err_code) return MHD_YES;
    bool is_image = filename != NULL || (key && (!strcmp(key, "image") || !strcmp(key, "file")));
    if (is_image) {
        if (off == 0) {
            if (r->image_done || (r->image_started && r->image.n > 0)) {
                set_err(r, 400, "one image per request%s", NULL);
                return MHD_YES;
            }
            r->image_started = true;
            if (filename) snprintf(r->image_name, sizeof r->image_name, "%s", filename);
        }
        if (size && !sbuf_add(&r->image, data, size, r->srv->p.max_upload))
            set_err(r, 413, "upload larger than the limit%s", NULL);
        return MHD_YES;
    }
    int f = field_index(key);
    if (f < 0) return MHD_YES;   /* unknown fields are ignored */
    r->field_set[f] = true;
    if (size && !sbuf_add(&r->field[f], data, size, FIELD_MAX)) set_err(r, 400, "form field '%s' too long", key);
    return MHD_YES;
}

static bool ctype_is(const char *ct, const char *prefix) {
    return ct && !strncasecmp(ct, prefix, strlen(prefix));
}

/* base64 (standard or URL alphabet, whitespace and a data: URL prefix allowed) -> bytes */
static bool base64_decode(const char *s, sbuf *out, size_t limit) {
    const char *comma = strncmp(s, "data:", 5) == 0 ? strchr(s, ',') : NULL;
    if (comma) s = comma + 1;
    uint32_t acc = 0;
    int bits = 0;
    uint8_t tmp[512];
    size_t nt = 0;
    for (; *s; s++) {
        int c = (unsigned char)*s, v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+' || c == '-') v = 62;
        else if (c == '/' || c == '_') v = 63;
        else if (c == '=') break;
        else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        else return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            tmp[nt++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
            if (nt == sizeof tmp) {
                if (!sbuf_add(out, tmp, nt, limit)) return false;
                nt = 0;
            }
        }
    }
    for (; *s; s++)
        if (*s != '=' && *s != ' ' && *s != '\n' && *s != '\r') return false;
    return nt == 0 || sbuf_add(out, tmp, nt, limit);
}

/* A JSON body: {"image": BASE64, "question": "...", "beams": 3, "max_len": 20, "style": "brief",
 * "aspects": false, "retrieval": true} */
static void parse_json_body(req *r) {
    cJSON *j = cJSON_ParseWithLength(r->json.p ? r->json.p : "", r->json.n);
    if (!j || !cJSON_IsObject(j)) {
        set_err(r, 400, "malformed JSON body%s", NULL);
        cJSON_Delete(j);
        return;
    }
    cJSON *img = cJSON_GetObjectItemCaseSensitive(j, "image");
    if (img && !cJSON_IsString(img)) set_err(r, 400, "JSON: \"image\" must be a base64 string%s", NULL);
    else if (img) {
        r->image_started = true;
        if (!base64_decode(img->valuestring, &r->image, r->srv->p.max_upload))
            set_err(r, 400, "JSON: \"image\" is not valid base64 (or is over the upload limit)%s", NULL);
    }
    for (int f = 0; f < F_COUNT && !r->err_code; f++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(j, g_field_names[f]);
        if (!v) continue;
        char tmp[64];
        const char *s = NULL;
        if (cJSON_IsString(v)) s = v->valuestring;
        else if (cJSON_IsBool(v)) s = cJSON_IsTrue(v) ? "true" : "false";
        else if (cJSON_IsNumber(v)) { snprintf(tmp, sizeof tmp, "%.17g", v->valuedouble); s = tmp; }
        else { set_err(r, 400, "JSON: bad type for \"%s\"", g_field_names[f]); break; }
        r->field_set[f] = true;
        if (!sbuf_add(&r->field[f], s, strlen(s), FIELD_MAX)) set_err(r, 400, "JSON: \"%s\" too long", g_field_names[f]);
    }
    cJSON_Delete(j);
}

/* the value of option f: a form/JSON field, else the query string, else NULL */
static const char *option(req *r, int f) {
    if (r->field_set[f]) return r->field[f].p ? r->field[f].p : "";
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, g_field_names[f]);
}

static bool parse_int(const char *s, int lo, int hi, int *out) {
    char *e;
    if (!s || !*s) return false;
    long v = strtol(s, &e, 10);
    if (*e == '.') {  /* JSON numbers print as e.g. "3" already; "3.0" is accepted */
        char *e2;
        double d = strtod(s, &e2);
        if (*e2 || d != (double)(long)d) return false;
        v = (long)d;
        e = e2;
    }
    if (*e || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static bool parse_bool(const char *s, bool *out) {
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) *out = true;
    else if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) *out = false;
    else return false;
    return true;
}

/* options -> r->gp / want_aspects; sets err on bad values */
static void parse_options(req *r) {
    struct rs_server *s = r->srv;
    r->gp = r->endpoint == EP_VQA ? rsmoe_vqa_default_params() : rsmoe_caption_default_params();
    r->want_aspects = true;
    const char *v;
    char msg[96];
    if ((v = option(r, F_BEAMS)) && !parse_int(v, 1, s->p.max_beams, &r->gp.beams)) {
        snprintf(msg, sizeof msg, "beams must be an integer 1..%d", s->p.max_beams);
        set_err(r, 400, "%s", msg);
    }
    if ((v = option(r, F_VIEWS)) && !parse_int(v, 1, s->p.max_views, &r->gp.views)) {
        snprintf(msg, sizeof msg, "views must be an integer 1..%d (the server's --max-views)", s->p.max_views);
        set_err(r, 400, "%s", msg);
    }
    if ((v = option(r, F_MAX_LEN)) && !parse_int(v, 1, s->p.max_len, &r->gp.max_len)) {
        snprintf(msg, sizeof msg, "max_len must be an integer 1..%d", s->p.max_len);
        set_err(r, 400, "%s", msg);
    }
    if (r->gp.min_len > r->gp.max_len) r->gp.min_len = r->gp.max_len;
    if ((v = option(r, F_STYLE))) {
        if (r->endpoint == EP_VQA) set_err(r, 400, "style applies to /v1/caption only%s", NULL);
        else if (!strcmp(v, "detailed")) r->gp.style = RSMOE_STYLE_DETAILED;
        else if (!strcmp(v, "brief")) r->gp.style = RSMOE_STYLE_BRIEF,
                                       r->gp.repetition_penalty = rsmoe_brief_default_params().repetition_penalty;
        else set_err(r, 400, "style must be 'detailed' or 'brief'%s", NULL);
    }
    if ((v = option(r, F_ASPECTS)) && !parse_bool(v, &r->want_aspects)) set_err(r, 400, "aspects must be true or false%s", NULL);
    if ((v = option(r, F_RETRIEVAL)) && !parse_bool(v, &r->gp.use_retrieval)) set_err(r, 400, "retrieval must be true or false%s", NULL);
    if (r->endpoint == EP_VQA) {
        v = r->question = option(r, F_QUESTION);
        if (!v || !*v) set_err(r, 400, "a question is required (form field, JSON key or ?question=)%s", NULL);
        else if (strlen(v) > QUESTION_MAX) set_err(r, 400, "question longer than 1000 bytes%s", NULL);
    } else if (option(r, F_QUESTION) && r->field_set[F_QUESTION]) {
        set_err(r, 400, "a question belongs to /v1/vqa%s", NULL);
    }
}

/* ------------------------------------------------------------------ workers */
static bool abort_cb(void *user) {
    req *r = user;
    return atomic_load(&r->srv->stopping) || rs_time_s() > r->deadline;
}

static int status_code(rsmoe_status st) {
    switch (st) {
    case RSMOE_ERR_INVALID_ARG: return 400;
    case RSMOE_ERR_FORMAT: return 400;
    case RSMOE_ERR_UNSUPPORTED: return 415;
    case RSMOE_ERR_NOMEM: return 503;
    case RSMOE_ERR_ABORTED: return 504;
    default: return 500;
    }
}

static cJSON *result_json(const req *r, const rsmoe_result *res, const rs_image *img, double queue_ms, double decode_ms,
                          double t_done) {
    cJSON *j = cJSON_CreateObject();
    bool vqa = r->endpoint == EP_VQA;
    if (vqa) cJSON_AddStringToObject(j, "question", r->question);
    cJSON_AddStringToObject(j, vqa ? "answer" : "caption", res->text ? res->text : "");
    if (!vqa) cJSON_AddStringToObject(j, "style", r->gp.style == RSMOE_STYLE_BRIEF ? "brief" : "detailed");
    if (r->want_aspects) cJSON_AddItemToObject(j, "aspects", rs_json_aspects(res));
    if (res->chosen >= 0 && res->chosen < res->n_aspects) cJSON_AddStringToObject(j, "chosen", res->aspects[res->chosen].name);
    else cJSON_AddNullToObject(j, "chosen");
    rs_json_add_retrieval(j, res);
    cJSON *im = cJSON_AddObjectToObject(j, "image");
    cJSON_AddStringToObject(im, "name", r->image_name);
    cJSON_AddNumberToObject(im, "width", img->w);
    cJSON_AddNumberToObject(im, "height", img->h);
    cJSON_AddNumberToObject(im, "bytes", (double)r->image.n);
    cJSON *p = cJSON_AddObjectToObject(j, "params");
    cJSON_AddNumberToObject(p, "beams", r->gp.beams);
    cJSON_AddNumberToObject(p, "max_len", r->gp.max_len);
    cJSON *t = cJSON_AddObjectToObject(j, "timings_ms");
    cJSON_AddNumberToObject(t, "queue", queue_ms);
    cJSON_AddNumberToObject(t, "image_decode", decode_ms);
    rs_json_add_stage_timings(t, &res->timings);
    cJSON_AddNumberToObject(t, "model", res->timings.total_ms);
    cJSON_AddNumberToObject(t, "server", (t_done - r->t_arrive) * 1e3);
    cJSON_AddNumberToObject(j, "prefill_tokens", res->timings.prefill_tokens);
    cJSON_AddNumberToObject(j, "decode_steps", res->timings.decode_steps);
    cJSON_AddNumberToObject(j, "decode_tokens", res->timings.decode_tokens);
    return j;
}

static void finish(req *r, int code, char *body) {
    r->code = code;
    r->resp = body;
    r->retry_after = code == 503;
}

static void run_job(worker *w, req *r) {
    struct rs_server *s = w->srv;
    double t0 = rs_time_s();
    double queue_ms = (t0 - r->t_queued) * 1e3;
    if (atomic_load(&s->stopping)) { finish(r, 503, error_json(503, "server is shutting down")); return; }
    if (t0 > r->deadline) { finish(r, 504, error_json(504, "timed out while waiting in the queue")); return; }
    rs_image_load_opts lo = {0};
    lo.max_dim = s->p.max_dim;
    lo.max_pixels = s->p.max_pixels;
    rs_image img = {0};
    rsmoe_status st = rs_image_decode(r->image.p, r->image.n, r->image_name, &lo, &img);
    double t1 = rs_time_s();
    if (st) {
        /* over the dimension caps -> 413; corrupt/truncated -> 400; not JPEG/PNG/TIFF -> 415 */
        int code = st == RSMOE_ERR_INVALID_ARG ? 413 : st == RSMOE_ERR_NOMEM ? 503 : st == RSMOE_ERR_FORMAT ? 400 : 415;
        char msg[400];
        snprintf(msg, sizeof msg, "%s: %s",
                 code == 413 ? "image too large" : code == 400 ? "corrupt or truncated image" : "not a JPEG, PNG or TIFF image",
                 rsmoe_last_error());
        finish(r, code, error_json(code, msg));
        return;
    }
    if (img.c != 3) {
        rs_image_free(&img);
        finish(r, 415, error_json(415, "image has no RGB form"));
        return;
    }
    rsmoe_image im = {.width = img.w, .height = img.h, .data = img.data};
    r->gp.abort_callback = abort_cb;
    r->gp.user_data = r;
    rsmoe_result res;
    memset(&res, 0, sizeof res);
    st = r->endpoint == EP_VQA ? rsmoe_answer(w->ctx, &im, r->question, &r->gp, &res)
                               : rsmoe_caption(w->ctx, &im, &r->gp, &res);
    double t2 = rs_time_s();
    if (st) {
        int code = status_code(st);
        char msg[400];
        if (st == RSMOE_ERR_ABORTED)
            snprintf(msg, sizeof msg, atomic_load(&s->stopping) ? "server is shutting down" : "timed out after %.1f s",
                     s->p.timeout_s);
        else snprintf(msg, sizeof msg, "%s", rsmoe_last_error());
        if (st == RSMOE_ERR_ABORTED && atomic_load(&s->stopping)) code = 503;
        finish(r, code, error_json(code, msg));
    } else {
        cJSON *j = result_json(r, &res, &img, queue_ms, (t1 - t0) * 1e3, t2);
        finish(r, 200, cJSON_PrintUnformatted(j));
        cJSON_Delete(j);
        pthread_mutex_lock(&s->mu);
        s->avg_job_s = s->avg_job_s > 0 ? 0.8 * s->avg_job_s + 0.2 * (t2 - t0) : (t2 - t0);
        pthread_mutex_unlock(&s->mu);
    }
    rsmoe_result_free(&res);
    rs_image_free(&img);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    struct rs_server *s = w->srv;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !atomic_load(&s->stopping)) pthread_cond_wait(&s->cv, &s->mu);
        req *r = s->head;
        if (!r) { pthread_mutex_unlock(&s->mu); break; }   /* stopping, queue drained */
        s->head = r->next;
        if (!s->head) s->tail = NULL;
        s->queued--;
        s->running++;
        r->state = ST_RUNNING;
        pthread_mutex_unlock(&s->mu);

        run_job(w, r);
        sbuf_free(&r->image);   /* the upload is not needed any more */

        pthread_mutex_lock(&s->mu);
        s->running--;
        r->state = ST_DONE;
        pthread_mutex_unlock(&s->mu);
        MHD_resume_connection(r->conn);
    }
    return NULL;
}

/* ------------------------------------------------------------------ the access handler */
static void req_free(req *r) {
    if (!r) return;
    if (r->pp) MHD_destroy_post_processor(r->pp);
    sbuf_free(&r->image);
    sbuf_free(&r->json);
    for (int i = 0; i < F_COUNT; i++) sbuf_free(&r->field[i]);
    free(r->resp);
    free(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    req_free(*con_cls);
    *con_cls = NULL;
}

/* every worker busy and `queue` jobs already waiting (call with mu held) */
static bool queue_full(const struct rs_server *s) { return s->queued + s->running >= s->p.queue + s->n_workers; }

static enum MHD_Result on_first_call(struct rs_server *s, req *r, struct MHD_Connection *c, const char *url,
                                     const char *method) {
    bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return send_error(s, c, 405, "use GET");
        return send_page(s, c);
    }
    if (!strcmp(url, "/healthz")) {
        if (!get) return send_error(s, c, 405, "use GET");
        return send_body(s, c, 200, health_json(s), NULL, false);
    }
    if (!strcmp(url, "/v1/model")) {
        if (!get) return send_error(s, c, 405, "use GET");
        return send_body(s, c, 200, strdup(s->model_json), NULL, false);
    }
    if (!strcmp(url, "/v1/caption")) r->endpoint = EP_CAPTION;
    else if (!strcmp(url, "/v1/vqa")) r->endpoint = EP_VQA;
    else return send_error(s, c, 404, "no such endpoint (GET /, /healthz, /v1/model; POST /v1/caption, /v1/vqa)");
    if (!post) return send_error(s, c, 405, "use POST");
    if (atomic_load(&s->stopping)) return send_error(s, c, 503, "server is shutting down");

    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *e;
        unsigned long long n = strtoull(cl, &e, 10);
        if (*e || n > s->p.max_upload) {
            char msg[96];
            snprintf(msg, sizeof msg, "request body larger than the limit of %zu bytes", s->p.max_upload);
            return send_error(s, c, 413, msg);
        }
    }
    pthread_mutex_lock(&s->mu);
    bool full = queue_full(s);
    pthread_mutex_unlock(&s->mu);
    if (full) return send_error(s, c, 503, "busy: the queue is full, retry later");

    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ctype_is(ct, "multipart/form-data") || ctype_is(ct, "application/x-www-form-urlencoded")) {
        r->body_kind = BODY_FORM;
        r->pp = MHD_create_post_processor(c, 64 * 1024, post_iter, r);
        if (!r->pp) return send_error(s, c, 400, "malformed multipart/form-data header (no boundary?)");
    } else if (ctype_is(ct, "image/") || ctype_is(ct, "application/octet-stream")) {
        r->body_kind = BODY_RAW;
        r->image_started = true;
        const char *fn = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Filename");
        if (fn) snprintf(r->image_name, sizeof r->image_name, "%s", fn);
    } else if (ctype_is(ct, "application/json")) {
        r->body_kind = BODY_JSON;
    } else {
        return send_error(s, c, 415, "Content-Type must be multipart/form-data, image/*, application/octet-stream "
                                     "or application/json");
    }
    if (cl && r->body_kind != BODY_FORM) {   /* reserve the whole body at once */
        unsigned long long n = strtoull(cl, NULL, 10);
        sbuf *b = r->body_kind == BODY_JSON ? &r->json : &r->image;
        if (n > 0 && (b->p = malloc((size_t)n + 1))) b->cap = (size_t)n + 1;
    }
    r->accepted = true;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    struct rs_server *s = cls;
    req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = s;
        r->conn = c;
        r->t_arrive = rs_time_s();
        r->deadline = r->t_arrive + s->p.timeout_s;
        snprintf(r->image_name, sizeof r->image_name, "upload");
        *con_cls = r;
        return on_first_call(s, r, c, url, method);
    }
    if (!r->accepted) {   /* answered from the headers alone: ignore any body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {   /* a piece of the body */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->err_code) return r->err_code == 413 ? MHD_NO : MHD_YES;   /* 413 on a chunked body: drop it */
        r->received += n;
        if (rs_time_s() > r->deadline) {   /* a client trickling its upload past the request timeout */
            set_err(r, 408, "upload too slow%s", NULL);
            return MHD_NO;
        }
        if (r->received > s->p.max_upload) {
            set_err(r, 413, "request body larger than the limit%s", NULL);
            return MHD_NO;
        }
        if (r->body_kind == BODY_FORM) {
            if (MHD_post_process(r->pp, upload_data, n) != MHD_YES) set_err(r, 400, "malformed form body%s", NULL);
        } else if (!sbuf_add(r->body_kind == BODY_JSON ? &r->json : &r->image, upload_data, n, s->p.max_upload)) {
            set_err(r, 413, "request body larger than the limit%s", NULL);
        }
        return MHD_YES;
    }
    /* the body is complete, or a worker resumed us */
    pthread_mutex_lock(&s->mu);
    int state = r->state;
    pthread_mutex_unlock(&s->mu);
    if (state == ST_DONE) {
        char *body = r->resp;
        r->resp = NULL;
        return send_body(s, c, r->code, body, NULL, r->retry_after);
    }
    if (state != ST_RECEIVING) return MHD_YES;   /* cannot happen: suspended meanwhile */
    if (r->pp) {
        if (MHD_destroy_post_processor(r->pp) != MHD_YES) set_err(r, 400, "malformed or truncated multipart body%s", NULL);
        r->pp = NULL;
    }
    if (r->body_kind == BODY_JSON && !r->err_code) parse_json_body(r);
    if (!r->err_code) parse_options(r);
    if (!r->err_code && (!r->image_started || r->image.n == 0))
        set_err(r, 400, "no image in the request (a multipart field 'image', an image/* body or JSON \"image\")%s", NULL);
    if (r->err_code) return send_error(s, c, r->err_code, r->err_msg);
    sbuf_free(&r->json);

    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->stopping) || queue_full(s)) {
        bool stop = atomic_load(&s->stopping);
        pthread_mutex_unlock(&s->mu);
        return send_error(s, c, 503, stop ? "server is shutting down" : "busy: the queue is full, retry later");
    }
    /* suspend before a worker can see the job, so its resume always follows this suspend */
    MHD_suspend_connection(c);
    r->state = ST_QUEUED;
    r->t_queued = rs_time_s();
    r->next = NULL;
    if (s->tail) s->tail->next = r;
    else s->head = r;
    s->tail = r;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return MHD_YES;
}

/* ------------------------------------------------------------------ start / stop */
static char *build_model_json(struct rs_server *s, size_t ctx_bytes) {
    size_t need = rsmoe_model_describe(s->model, NULL, 0);
    char *desc = malloc(need + 1);
    if (!desc) return NULL;
    rsmoe_model_describe(s->model, desc, need + 1);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", s->p.model_name ? s->p.model_name : "");
    cJSON_AddStringToObject(j, "description", desc);
    free(desc);
    cJSON *ex = cJSON_AddArrayToObject(j, "experts");
    for (int i = 0; i < rsmoe_model_n_experts(s->model); i++)
        cJSON_AddItemToArray(ex, cJSON_CreateString(rsmoe_model_expert_name(s->model, i)));
    cJSON_AddStringToObject(j, "system", rsmoe_system_info());
    cJSON *w = cJSON_AddObjectToObject(j, "server");
    cJSON_AddNumberToObject(w, "workers", s->n_workers);
    cJSON_AddNumberToObject(w, "threads_per_worker", s->p.threads);
    cJSON_AddNumberToObject(w, "queue", s->p.queue);
    cJSON_AddNumberToObject(w, "context_bytes", (double)ctx_bytes);
    cJSON *l = cJSON_AddObjectToObject(j, "limits");
    cJSON_AddNumberToObject(l, "max_upload_bytes", (double)s->p.max_upload);
    cJSON_AddNumberToObject(l, "max_dim", s->p.max_dim);
    cJSON_AddNumberToObject(l, "max_pixels", (double)s->p.max_pixels);
    cJSON_AddNumberToObject(l, "timeout_s", s->p.timeout_s);
    cJSON_AddNumberToObject(l, "max_beams", s->p.max_beams);
    cJSON_AddNumberToObject(l, "max_views", s->p.max_views);
    cJSON_AddNumberToObject(l, "max_len", s->p.max_len);
    cJSON_AddNumberToObject(l, "question_bytes", QUESTION_MAX);
    rsmoe_generate_params cd = rsmoe_caption_default_params(), vd = rsmoe_vqa_default_params();
    cJSON *d = cJSON_AddObjectToObject(j, "defaults");
    cJSON_AddNumberToObject(d, "caption_beams", cd.beams);
    cJSON_AddNumberToObject(d, "caption_max_len", cd.max_len);
    cJSON_AddNumberToObject(d, "vqa_beams", vd.beams);
    cJSON_AddNumberToObject(d, "vqa_max_len", vd.max_len);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static void server_free(struct rs_server *s) {
    if (!s) return;
    if (s->workers)
        for (int i = 0; i < s->n_workers; i++) rsmoe_context_free(s->workers[i].ctx);
    free(s->workers);
    free(s->model_json);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static void stop_workers(struct rs_server *s) {
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stopping, true);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].started) pthread_join(s->workers[i].th, NULL);
}

rsmoe_status rs_serve_start(const rsmoe_model *m, const rs_serve_params *pp, rs_server **out) {
    *out = NULL;
    rs_serve_params p = pp ? *pp : rs_serve_default_params();
    if (!m) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: no model");
    if (p.port < 0 || p.port > 65535) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: port %d out of range", p.port);
    if (p.workers < 1 || p.workers > 64) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: workers must be 1..64");
    if (p.queue < 0 || p.queue > 100000) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: queue must be 0..100000");
    if (p.threads < 0) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: threads must be >= 0");
    if (p.max_upload < 1024) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: upload limit below 1 KiB");
    if (p.max_dim < 1 || p.max_pixels < 1) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: bad image limits");
    if (!(p.timeout_s > 0)) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: timeout must be > 0");
    if (p.max_beams < 1 || p.max_beams > 16) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: max beams must be 1..16");
    if (p.max_views < 1 || p.max_views > RSMOE_MAX_VIEWS)
        return rs_error(RSMOE_ERR_INVALID_ARG, "serve: max views must be 1..%d", RSMOE_MAX_VIEWS);
    if (p.max_len < 1) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: max_len limit must be >= 1");
    if (p.io_timeout_s < 1) p.io_timeout_s = 1;
    if (p.max_connections < 1) p.max_connections = 1;
    if (!p.host || !*p.host) p.host = "127.0.0.1";

    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    socklen_t alen;
    bool v6 = strchr(p.host, ':') != NULL;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)p.port);
        if (inet_pton(AF_INET6, p.host, &a->sin6_addr) != 1) return rs_error(RSMOE_ERR_INVALID_ARG, "serve: bad address '%s'", p.host);
        alen = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)p.port);
        if (!strcmp(p.host, "localhost")) a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, p.host, &a->sin_addr) != 1)
            return rs_error(RSMOE_ERR_INVALID_ARG, "serve: bad address '%s' (give a numeric IPv4/IPv6 address)", p.host);
        alen = sizeof *a;
    }
    (void)alen;

    struct rs_server *s = calloc(1, sizeof *s);
    if (!s) return rs_error(RSMOE_ERR_NOMEM, "serve: out of memory");
    s->model = m;
    s->p = p;
    snprintf(s->host, sizeof s->host, "%s", p.host);
    s->p.host = s->host;
    s->t_start = rs_time_s();
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->n_workers = p.workers;
    s->workers = calloc((size_t)p.workers, sizeof *s->workers);
    if (!s->workers) { server_free(s); return rs_error(RSMOE_ERR_NOMEM, "serve: out of memory"); }
    rsmoe_context_params cp = rsmoe_context_default_params();
    cp.n_threads = p.threads;
    cp.max_beams = p.max_beams;
    cp.max_views = p.max_views;
    rsmoe_status st = RSMOE_OK;
    for (int i = 0; i < p.workers; i++) {
        s->workers[i].srv = s;
        s->workers[i].ctx = rsmoe_context_new(m, &cp, &st);
        if (!s->workers[i].ctx) { server_free(s); return st; }
    }
    s->model_json = build_model_json(s, rsmoe_context_bytes(s->workers[0].ctx));
    if (!s->model_json) { server_free(s); return rs_error(RSMOE_ERR_NOMEM, "serve: out of memory"); }
    for (int i = 0; i < p.workers; i++) {
        if (pthread_create(&s->workers[i].th, NULL, worker_main, &s->workers[i])) {
            stop_workers(s);
            server_free(s);
            return rs_error(RSMOE_ERR_INTERNAL, "serve: cannot start worker threads");
        }
        s->workers[i].started = true;
    }
    unsigned flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (v6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)p.port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p.io_timeout_s,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)p.max_connections,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                            MHD_OPTION_END);
    if (!s->d) {
        stop_workers(s);
        server_free(s);
        return rs_error(RSMOE_ERR_IO, "serve: cannot listen on %s port %d (in use? permission?)", p.host, p.port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di && di->port ? di->port : p.port;
    *out = s;
    return RSMOE_OK;
}

int rs_serve_port(const rs_server *s) { return s ? s->port : 0; }

rs_serve_stats rs_serve_get_stats(rs_server *s) {
    rs_serve_stats st;
    pthread_mutex_lock(&s->mu);
    st = s->stats;
    pthread_mutex_unlock(&s->mu);
    return st;
}

void rs_serve_stop(rs_server *s) {
    if (!s) return;
    if (s->d) {   /* no new connections; the listening socket is ours to close after quiescing */
        MHD_socket ls = MHD_quiesce_daemon(s->d);
        if (ls != MHD_INVALID_SOCKET) close(ls);
    }
    stop_workers(s);                        /* queued jobs answer 503, running ones abort */
    /* let the polling thread send the answers of the resumed connections */
    for (int i = 0; i < 50; i++) {
        const union MHD_DaemonInfo *di = s->d ? MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
        if (!di || di->num_connections == 0) break;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (s->d) MHD_stop_daemon(s->d);
    server_free(s);
}
