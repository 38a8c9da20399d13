/* dataset.c - loaders for Karpathy, RSICap, RSIEval, RSVQA and RSIVQA annotation files. */
#include "data/dataset.h"
#include "data/qgen.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_ANN_FILE ((size_t)1 << 31)

const char *rs_ds_format_name(rs_ds_format f) {
    switch (f) {
    case RS_DS_AUTO: return "auto";
    case RS_DS_KARPATHY: return "karpathy";
    case RS_DS_RSICAP: return "rsicap";
    case RS_DS_RSIEVAL: return "rsieval";
    case RS_DS_RSVQA: return "rsvqa";
    case RS_DS_RSIVQA: return "rsivqa";
    }
    return "unknown";
}

int rs_ds_format_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "auto")) return RS_DS_AUTO;
    if (!strcmp(s, "karpathy") || !strcmp(s, "rsicd") || !strcmp(s, "ucm") || !strcmp(s, "sydney")) return RS_DS_KARPATHY;
    if (!strcmp(s, "rsicap")) return RS_DS_RSICAP;
    if (!strcmp(s, "rsieval")) return RS_DS_RSIEVAL;
    if (!strcmp(s, "rsvqa")) return RS_DS_RSVQA;
    if (!strcmp(s, "rsivqa")) return RS_DS_RSIVQA;
    return -1;
}

/* ------------------------------------------------------------------ helpers */
static char *xstrdup(const char *s) {
    size_t n = strlen(s ? s : "");
    char *d = malloc(n + 1);
    if (d) memcpy(d, s ? s : "", n + 1);
    return d;
}

static char *xstrndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) { memcpy(d, s, n); d[n] = 0; }
    return d;
}

static void trim_inplace(char *s) {
    size_t n = strlen(s), i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    memmove(s, s + i, n - i);
    s[n - i] = 0;
}

static rsmoe_status read_file(const char *path, char **buf, size_t *n) {
    *buf = NULL; *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rs_error(RSMOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) { fclose(f); return rs_error(RSMOE_ERR_IO, "%s: not a regular file", path); }
    if ((size_t)sb.st_size > MAX_ANN_FILE) { fclose(f); return rs_error(RSMOE_ERR_INVALID_ARG, "%s: annotation file over 2 GiB", path); }
    size_t sz = (size_t)sb.st_size;
    char *b = malloc(sz + 1);
    if (!b) { fclose(f); return rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, sz); }
    size_t got = fread(b, 1, sz, f);
    int err = ferror(f);
    fclose(f);
    if (got != sz || err) { free(b); return rs_error(RSMOE_ERR_IO, "%s: read error", path); }
    b[sz] = 0;
    *buf = b; *n = sz;
    return RSMOE_OK;
}

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static char *path_join(const char *a, const char *b) {
    if (!a || !*a || b[0] == '/') return xstrdup(b);
    size_t na = strlen(a), nb = strlen(b);
    char *d = malloc(na + nb + 2);
    if (!d) return NULL;
    memcpy(d, a, na);
    size_t k = na;
    if (a[na - 1] != '/') d[k++] = '/';
    memcpy(d + k, b, nb + 1);
    return d;
}

static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return xstrdup(".");
    if (s == path) return xstrdup("/");
    return xstrndup(path, (size_t)(s - path));
}

/* ------------------------------------------------------------------ building */
typedef struct {
    rs_dataset *ds;
    int cap_items, cap_qa;
    const char *file;     /* for messages */
    const char *root;
    const char *split;    /* filter */
} builder;

static rsmoe_status oom(const builder *b) { return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", b->file); }

/* appends an item; returns its index or -1 (error recorded) */
static int add_item(builder *b, const char *filename, const char *split, const char *label, int64_t id) {
    rs_dataset *ds = b->ds;
    if (ds->nitems == b->cap_items) {
        int nc = b->cap_items ? b->cap_items * 2 : 256;
        rs_ds_item *ni = realloc(ds->items, sizeof *ni * (size_t)nc);
        if (!ni) { oom(b); return -1; }
        ds->items = ni; b->cap_items = nc;
    }
    rs_ds_item *it = &ds->items[ds->nitems];
    memset(it, 0, sizeof *it);
    it->filename = xstrdup(filename);
    it->path = path_join(b->root, filename);
    it->split = xstrdup(split ? split : "");
    it->label = xstrdup(label ? label : "");
    it->id = id;
    ds->nitems++;
    if (!it->filename || !it->path || !it->split || !it->label) { oom(b); return -1; }
    return ds->nitems - 1;
}

static rsmoe_status add_caption(builder *b, int item, const char *text) {
    rs_ds_item *it = &b->ds->items[item];
    char **nc = realloc(it->captions, sizeof(char *) * (size_t)(it->ncap + 1));
    if (!nc) return oom(b);
    it->captions = nc;
    char *s = xstrdup(text);
    if (!s) return oom(b);
    trim_inplace(s);
    it->captions[it->ncap++] = s;
    return RSMOE_OK;
}

static rsmoe_status add_qa(builder *b, int item, int64_t id, const char *q, const char *a, const char *type) {
    rs_dataset *ds = b->ds;
    if (ds->nqa == b->cap_qa) {
        int nc = b->cap_qa ? b->cap_qa * 2 : 256;
        rs_ds_qa *nq = realloc(ds->qa, sizeof *nq * (size_t)nc);
        if (!nq) return oom(b);
        ds->qa = nq; b->cap_qa = nc;
    }
    rs_ds_qa *x = &ds->qa[ds->nqa++];
    x->item = item; x->id = id;
    x->question = xstrdup(q); x->answer = xstrdup(a); x->type = xstrdup(type ? type : "");
    if (!x->question || !x->answer || !x->type) return oom(b);
    trim_inplace(x->question); trim_inplace(x->answer);
    return RSMOE_OK;
}

static bool keep_split(const builder *b, const char *split) {
    return !b->split || !*b->split || !strcmp(b->split, split ? split : "");
}

static void free_item(rs_ds_item *it) {
    free(it->filename); free(it->path); free(it->split); free(it->label);
    for (int k = 0; k < it->ncap; k++) free(it->captions[k]);
    free(it->captions);
}

void rs_dataset_free(rs_dataset *ds) {
    if (!ds) return;
    for (int i = 0; i < ds->nitems; i++) free_item(&ds->items[i]);
    for (int i = 0; i < ds->nqa; i++) { free(ds->qa[i].question); free(ds->qa[i].answer); free(ds->qa[i].type); }
    free(ds->items); free(ds->qa);
    memset(ds, 0, sizeof *ds);
}

int64_t rs_dataset_ncaptions(const rs_dataset *ds) {
    int64_t n = 0;
    for (int i = 0; i < ds->nitems; i++) n += ds->items[i].ncap;
    return n;
}

/* ------------------------------------------------------------------ JSON */
static rsmoe_status json_parse(const char *path, const char *text, size_t n, cJSON **out) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!j) {
        int line = 1, col = 1;
        const char *e = end && end >= text && end <= text + n ? end : text;
        for (const char *p = text; p < e; p++) { if (*p == '\n') { line++; col = 1; } else col++; }
        return rs_error(RSMOE_ERR_FORMAT, "%s: malformed JSON at line %d, column %d", path, line, col);
    }
    *out = j;
    return RSMOE_OK;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* number or numeric string -> id; returns false if absent/invalid */
static bool jid(const cJSON *o, const char *key, int64_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(v)) { *id = (int64_t)v->valuedouble; return true; }
    if (cJSON_IsString(v) && v->valuestring && *v->valuestring) {
        char *e;
        long long x = strtoll(v->valuestring, &e, 10);
        if (!*e) { *id = x; return true; }
    }
    return false;
}

static bool jactive(const cJSON *o) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "active");
    return !v || !cJSON_IsFalse(v);
}

static const cJSON *jarray(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsArray(v) ? v : NULL;
}

static rsmoe_status load_karpathy(builder *b, const cJSON *root) {
    const cJSON *imgs = jarray(root, "images");
    if (!imgs) return rs_error(RSMOE_ERR_FORMAT, "%s: no \"images\" array (Karpathy dataset.json)", b->file);
    const char *dsname = jstr(root, "dataset");
    if (dsname) snprintf(b->ds->name, sizeof b->ds->name, "%s", dsname);
    int idx = 0;
    const cJSON *im;
    cJSON_ArrayForEach(im, imgs) {
        int i = idx++;
        if (!cJSON_IsObject(im)) return rs_error(RSMOE_ERR_FORMAT, "%s: images[%d]: not an object", b->file, i);
        const char *fn = jstr(im, "filename");
        if (!fn || !*fn) return rs_error(RSMOE_ERR_FORMAT, "%s: images[%d]: missing \"filename\"", b->file, i);
        const char *split = jstr(im, "split");
        if (!split) return rs_error(RSMOE_ERR_FORMAT, "%s: images[%d] (%s): missing \"split\"", b->file, i, fn);
        const cJSON *sents = jarray(im, "sentences");
        if (!sents) return rs_error(RSMOE_ERR_FORMAT, "%s: images[%d] (%s): missing \"sentences\" array", b->file, i, fn);
        if (!keep_split(b, split)) continue;
        int64_t id = i;
        jid(im, "imgid", &id);
        const char *fp = jstr(im, "filepath");
        char *name = fp && *fp ? path_join(fp, fn) : xstrdup(fn);
        if (!name) return oom(b);
        int it = add_item(b, name, split, jstr(im, "label"), id);
        free(name);
        if (it < 0) return RSMOE_ERR_NOMEM;
        int si = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, sents) {
            int k = si++;
            const char *raw = jstr(s, "raw");
            char *joined = NULL;
            if (!raw) { /* fall back to the tokens */
                const cJSON *toks = jarray(s, "tokens");
                if (!toks)
                    return rs_error(RSMOE_ERR_FORMAT, "%s: images[%d] (%s): sentences[%d]: missing \"raw\"", b->file, i, fn, k);
                size_t len = 1;
                const cJSON *t;
                cJSON_ArrayForEach(t, toks) if (cJSON_IsString(t)) len += strlen(t->valuestring) + 1;
                joined = calloc(len, 1);
                if (!joined) return oom(b);
                cJSON_ArrayForEach(t, toks) if (cJSON_IsString(t)) {
                    if (*joined) strcat(joined, " ");
                    strcat(joined, t->valuestring);
                }
                raw = joined;
            }
            rsmoe_status st = add_caption(b, it, raw);
            free(joined);
            if (st) return st;
        }
    }
    return RSMOE_OK;
}

static rsmoe_status load_rsicap(builder *b, const cJSON *root) {
    const cJSON *ann = jarray(root, "annotations");
    if (!ann) return rs_error(RSMOE_ERR_FORMAT, "%s: no \"annotations\" array (RSICap captions.json)", b->file);
    snprintf(b->ds->name, sizeof b->ds->name, "rsicap");
    int idx = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, ann) {
        int i = idx++;
        if (!cJSON_IsObject(a)) return rs_error(RSMOE_ERR_FORMAT, "%s: annotations[%d]: not an object", b->file, i);
        const char *fn = jstr(a, "filename");
        if (!fn || !*fn) return rs_error(RSMOE_ERR_FORMAT, "%s: annotations[%d]: missing \"filename\"", b->file, i);
        const char *cap = jstr(a, "text_output");
        if (!cap) return rs_error(RSMOE_ERR_FORMAT, "%s: annotations[%d] (%s): missing \"text_output\"", b->file, i, fn);
        if (!keep_split(b, "train")) continue;
        int64_t id = i;
        jid(a, "image_id", &id);
        int it = add_item(b, fn, "train", "", id);
        if (it < 0) return RSMOE_ERR_NOMEM;
        rsmoe_status st = add_caption(b, it, cap);
        if (st) return st;
    }
    return RSMOE_OK;
}

static rsmoe_status load_rsieval(builder *b, const cJSON *root) {
    const cJSON *ann = jarray(root, "annotations");
    if (!ann) return rs_error(RSMOE_ERR_FORMAT, "%s: no \"annotations\" array (RSIEval annotations.json)", b->file);
    snprintf(b->ds->name, sizeof b->ds->name, "rsieval");
    int idx = 0, qid = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, ann) {
        int i = idx++;
        if (!cJSON_IsObject(a)) return rs_error(RSMOE_ERR_FORMAT, "%s: annotations[%d]: not an object", b->file, i);
        const char *fn = jstr(a, "filename");
        if (!fn || !*fn) return rs_error(RSMOE_ERR_FORMAT, "%s: annotations[%d]: missing \"filename\"", b->file, i);
        const char *cap = jstr(a, "caption");
        const cJSON *qa = jarray(a, "qa_pairs");
        if (!cap && !qa)
            return rs_error(RSMOE_ERR_FORMAT, "%s: annotations[%d] (%s): neither \"caption\" nor \"qa_pairs\"", b->file, i, fn);
        if (!keep_split(b, "test")) continue;
        int it = add_item(b, fn, "test", "", i);
        if (it < 0) return RSMOE_ERR_NOMEM;
        if (cap) { rsmoe_status st = add_caption(b, it, cap); if (st) return st; }
        int qi = 0;
        const cJSON *q;
        if (qa) cJSON_ArrayForEach(q, qa) {
            int k = qi++;
            const char *qs = jstr(q, "question"), *as = jstr(q, "answer"), *ty = jstr(q, "type");
            if (!qs || !as)
                return rs_error(RSMOE_ERR_FORMAT, "%s: annotations[%d] (%s): qa_pairs[%d]: missing \"%s\"", b->file, i, fn, k,
                                !qs ? "question" : "answer");
            rsmoe_status st = add_qa(b, it, qid++, qs, as, ty ? ty : rs_qtype_guess(qs));
            if (st) return st;
        }
    }
    return RSMOE_OK;
}

/* ---- RSVQA */
typedef struct { int64_t id; const cJSON *obj; } id_ref;

static int cmp_id(const void *a, const void *b) {
    int64_t x = ((const id_ref *)a)->id, y = ((const id_ref *)b)->id;
    return x < y ? -1 : x > y;
}

/* sorted (id, object) table of an array of objects with "id" */
static rsmoe_status index_by_id(const char *file, const char *what, const cJSON *arr, id_ref **out, int *n) {
    int cnt = cJSON_GetArraySize(arr), k = 0;
    id_ref *t = malloc(sizeof *t * (size_t)(cnt > 0 ? cnt : 1));
    if (!t) return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", file);
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        int64_t id;
        if (!cJSON_IsObject(o) || !jid(o, "id", &id)) {
            free(t);
            return rs_error(RSMOE_ERR_FORMAT, "%s: %s[%d]: missing \"id\"", file, what, k);
        }
        t[k].id = id; t[k].obj = o; k++;
    }
    qsort(t, (size_t)k, sizeof *t, cmp_id);
    *out = t; *n = k;
    return RSMOE_OK;
}

static const cJSON *find_id(const id_ref *t, int n, int64_t id) {
    id_ref key = {id, NULL};
    const id_ref *r = bsearch(&key, t, (size_t)n, sizeof *t, cmp_id);
    return r ? r->obj : NULL;
}

static char *rsvqa_sibling(const char *path, const char *kind) {
    static const char *kinds[] = {"_questions.json", "_answers.json", "_images.json"};
    size_t n = strlen(path);
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(kinds[i]);
        if (n > k && !strcmp(path + n - k, kinds[i])) {
            size_t nk = strlen(kind);
            char *d = malloc(n - k + nk + 1);
            if (!d) return NULL;
            memcpy(d, path, n - k);
            memcpy(d + n - k, kind, nk + 1);
            return d;
        }
    }
    return NULL;
}

/* "X_split_train_questions.json" -> "train" */
static void split_from_name(const char *path, char *out, size_t n) {
    out[0] = 0;
    const char *s = strstr(path, "split_");
    if (!s) return;
    s += 6;
    size_t k = 0;
    while (s[k] && s[k] != '_' && s[k] != '.' && k + 1 < n) { out[k] = s[k]; k++; }
    out[k] = 0;
}

static rsmoe_status load_rsvqa(builder *b, const char *path, const cJSON *root) {
    cJSON *own[3] = {NULL, NULL, NULL};
    const cJSON *qs = jarray(root, "questions"), *as = jarray(root, "answers"), *is = jarray(root, "images");
    char fsplit[32] = "";
    rsmoe_status st = RSMOE_OK;
    const char *files[3] = {path, path, path};
    char *sib[3] = {NULL, NULL, NULL};
    if (!(qs && as && is)) { /* separate files: load the missing siblings */
        split_from_name(path, fsplit, sizeof fsplit);
        static const char *kind[3] = {"_questions.json", "_answers.json", "_images.json"};
        const cJSON **slot[3] = {&qs, &as, &is};
        static const char *key[3] = {"questions", "answers", "images"};
        for (int k = 0; k < 3; k++) {
            if (*slot[k]) continue;
            sib[k] = rsvqa_sibling(path, kind[k]);
            if (!sib[k]) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: RSVQA file without \"%s\"; expected a name ending in _questions.json, "
                                                "_answers.json or _images.json to find its companions", path, key[k]);
                goto done;
            }
            files[k] = sib[k];
            char *text;
            size_t n;
            st = read_file(sib[k], &text, &n);
            if (st) goto done;
            st = json_parse(sib[k], text, n, &own[k]);
            free(text);
            if (st) goto done;
            *slot[k] = jarray(own[k], key[k]);
            if (!*slot[k]) { st = rs_error(RSMOE_ERR_FORMAT, "%s: no \"%s\" array", sib[k], key[k]); goto done; }
        }
    }
    const cJSON *der = cJSON_GetObjectItemCaseSensitive(root, "derived");
    if (cJSON_IsTrue(der)) b->ds->derived = true;
    const char *src = jstr(root, "source");
    snprintf(b->ds->name, sizeof b->ds->name, "%s", src && *src ? src : "rsvqa");

    id_ref *ai = NULL, *ii = NULL;
    int na = 0, ni = 0;
    st = index_by_id(files[1], "answers", as, &ai, &na);
    if (st) goto done;
    st = index_by_id(files[2], "images", is, &ii, &ni);
    if (st) { free(ai); goto done; }
    /* items: active images of the kept split, in id order; item index per image id */
    int *item_of = malloc(sizeof(int) * (size_t)(ni > 0 ? ni : 1));
    if (!item_of) { st = oom(b); goto done2; }
    for (int k = 0; k < ni; k++) {
        item_of[k] = -1;
        const cJSON *im = ii[k].obj;
        if (!jactive(im)) continue;
        const char *sp = jstr(im, "split");
        if (!sp) sp = fsplit;
        if (!keep_split(b, sp)) continue;
        const char *fn = jstr(im, "filename");
        char tmp[64];
        if (!fn) { snprintf(tmp, sizeof tmp, "%" PRId64 ".tif", ii[k].id); fn = tmp; }
        item_of[k] = add_item(b, fn, sp, jstr(im, "label"), ii[k].id);
        if (item_of[k] < 0) { st = RSMOE_ERR_NOMEM; goto done3; }
    }
    {
        int qi = 0;
        const cJSON *q;
        cJSON_ArrayForEach(q, qs) {
            int k = qi++;
            if (!cJSON_IsObject(q)) { st = rs_error(RSMOE_ERR_FORMAT, "%s: questions[%d]: not an object", files[0], k); goto done3; }
            if (!jactive(q)) continue;
            int64_t qid = k, img;
            jid(q, "id", &qid);
            const char *text = jstr(q, "question");
            if (!text) { st = rs_error(RSMOE_ERR_FORMAT, "%s: questions[%d] (id %" PRId64 "): missing \"question\"", files[0], k, qid); goto done3; }
            if (!jid(q, "img_id", &img)) { st = rs_error(RSMOE_ERR_FORMAT, "%s: questions[%d] (id %" PRId64 "): missing \"img_id\"", files[0], k, qid); goto done3; }
            id_ref key = {img, NULL};
            const id_ref *r = bsearch(&key, ii, (size_t)ni, sizeof *ii, cmp_id);
            if (!r) { st = rs_error(RSMOE_ERR_FORMAT, "%s: questions[%d] (id %" PRId64 "): img_id %" PRId64 " is not in %s", files[0], k, qid, img, files[2]); goto done3; }
            int item = item_of[r - ii];
            if (item < 0) continue; /* inactive image or other split */
            const cJSON *aids = jarray(q, "answers_ids");
            const char *ans = NULL;
            const cJSON *aid;
            if (aids) cJSON_ArrayForEach(aid, aids) {
                if (!cJSON_IsNumber(aid)) continue;
                const cJSON *ao = find_id(ai, na, (int64_t)aid->valuedouble);
                if (ao && jactive(ao) && jstr(ao, "answer")) { ans = jstr(ao, "answer"); break; }
            }
            if (!ans) { st = rs_error(RSMOE_ERR_FORMAT, "%s: questions[%d] (id %" PRId64 "): no active answer in %s", files[0], k, qid, files[1]); goto done3; }
            const char *ty = jstr(q, "type");
            st = add_qa(b, item, qid, text, ans, ty ? ty : rs_qtype_guess(text));
            if (st) goto done3;
        }
    }
done3:
    free(item_of);
done2:
    free(ai);
    free(ii);
done:
    for (int k = 0; k < 3; k++) { cJSON_Delete(own[k]); free(sib[k]); }
    return st;
}

/* ---- RSIVQA: "image:question?answer" lines; items keyed by image through a hash */
typedef struct { int *slot; int cap; } str_index;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static rsmoe_status load_rsivqa(builder *b, char *text) {
    snprintf(b->ds->name, sizeof b->ds->name, "rsivqa");
    str_index ix = {NULL, 0};
    rsmoe_status st = RSMOE_OK;
    int line = 0, qid = 0;
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        char *next = nl ? nl + 1 : p + strlen(p);
        if (nl) *nl = 0;
        line++;
        trim_inplace(p);
        if (*p && *p != '#') {
            char *colon = strchr(p, ':');
            char *q = colon ? strchr(colon + 1, '?') : NULL;
            if (!colon || !q || colon == p) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s:%d: expected \"image:question?answer\", got \"%.60s\"", b->file, line, p);
                break;
            }
            *colon = 0;
            char *img = p, *question = colon + 1, *answer = q + 1;
            char saved = q[1];
            q[1] = 0;
            char *qcopy = xstrdup(question);
            q[1] = saved;
            trim_inplace(img);
            if (!qcopy) { st = oom(b); break; }
            trim_inplace(answer);
            if (!*answer) { free(qcopy); st = rs_error(RSMOE_ERR_FORMAT, "%s:%d: empty answer", b->file, line); break; }
            /* find or add the item */
            if (b->ds->nitems * 2 + 2 > ix.cap) {
                int nc = ix.cap ? ix.cap * 2 : 1024;
                while (nc < b->ds->nitems * 2 + 2) nc *= 2;
                int *ns = malloc(sizeof(int) * (size_t)nc);
                if (!ns) { free(qcopy); st = oom(b); break; }
                for (int k = 0; k < nc; k++) ns[k] = -1;
                for (int k = 0; k < b->ds->nitems; k++) {
                    uint64_t h = hash_str(b->ds->items[k].filename) & (uint64_t)(nc - 1);
                    while (ns[h] >= 0) h = (h + 1) & (uint64_t)(nc - 1);
                    ns[h] = k;
                }
                free(ix.slot);
                ix.slot = ns; ix.cap = nc;
            }
            uint64_t h = hash_str(img) & (uint64_t)(ix.cap - 1);
            while (ix.slot[h] >= 0 && strcmp(b->ds->items[ix.slot[h]].filename, img)) h = (h + 1) & (uint64_t)(ix.cap - 1);
            int item = ix.slot[h];
            if (item < 0) {
                item = add_item(b, img, "", "", b->ds->nitems);
                if (item < 0) { free(qcopy); st = RSMOE_ERR_NOMEM; break; }
                ix.slot[h] = item;
            }
            st = add_qa(b, item, qid++, qcopy, answer, rs_qtype_guess(qcopy));
            free(qcopy);
            if (st) break;
        }
        p = next;
    }
    free(ix.slot);
    return st;
}

/* ------------------------------------------------------------------ entry */
static rsmoe_status check_images(builder *b, rs_ds_image_check mode) {
    rs_dataset *ds = b->ds;
    if (mode == RS_DS_NO_CHECK) return RSMOE_OK;
    int *map = malloc(sizeof(int) * (size_t)(ds->nitems > 0 ? ds->nitems : 1));
    if (!map) return oom(b);
    int w = 0;
    for (int i = 0; i < ds->nitems; i++) {
        if (is_file(ds->items[i].path)) {
            map[i] = w;
            if (w != i) ds->items[w] = ds->items[i];
            w++;
            continue;
        }
        if (mode == RS_DS_REQUIRE_IMAGES) {
            rsmoe_status st = rs_error(RSMOE_ERR_IO, "%s: entry %d (%s): image file %s not found", b->file, i,
                                       ds->items[i].filename, ds->items[i].path);
            /* nothing was moved (w == i in this mode): the caller frees all items */
            free(map);
            return st;
        }
        map[i] = -1;
        free_item(&ds->items[i]);
        ds->nmissing++;
    }
    ds->nitems = w;
    int wq = 0;
    for (int k = 0; k < ds->nqa; k++) {
        int m = map[ds->qa[k].item];
        if (m < 0) { free(ds->qa[k].question); free(ds->qa[k].answer); free(ds->qa[k].type); continue; }
        ds->qa[wq] = ds->qa[k];
        ds->qa[wq].item = m;
        wq++;
    }
    ds->nqa = wq;
    free(map);
    return RSMOE_OK;
}

rsmoe_status rs_dataset_load(const char *path, rs_ds_format fmt, const rs_dataset_opts *opts, rs_dataset *ds) {
    if (!ds) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_dataset_load: NULL output");
    memset(ds, 0, sizeof *ds);
    if (!path || !*path) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_dataset_load: empty path");
    char *text;
    size_t n;
    rsmoe_status st = read_file(path, &text, &n);
    if (st) return st;
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    if (p == text + n) { free(text); return rs_error(RSMOE_ERR_FORMAT, "%s: empty annotation file", path); }
    bool json = *p == '{' || *p == '[';
    char *root_dir = NULL;
    if (opts && opts->image_root && *opts->image_root) root_dir = xstrdup(opts->image_root);
    else {
        char *d = dir_of(path);
        char *im = d ? path_join(d, "images") : NULL;
        if (im && is_dir(im)) { root_dir = im; free(d); }
        else { root_dir = d; free(im); }
    }
    if (!root_dir) { free(text); return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path); }
    builder b = {ds, 0, 0, path, root_dir, opts ? opts->split : NULL};
    cJSON *root = NULL;
    if (json) {
        st = json_parse(path, text, n, &root);
        if (st) goto out;
        if (fmt == RS_DS_AUTO) {
            const cJSON *im0 = jarray(root, "images") ? cJSON_GetArrayItem(jarray(root, "images"), 0) : NULL;
            if (jarray(root, "questions") || jarray(root, "answers") ||
                (im0 && !cJSON_GetObjectItemCaseSensitive(im0, "sentences") && strstr(path, "_images.json")))
                fmt = RS_DS_RSVQA;
            else if (jarray(root, "images")) fmt = RS_DS_KARPATHY;
            else if (jarray(root, "annotations")) {
                const cJSON *first = cJSON_GetArrayItem(jarray(root, "annotations"), 0);
                fmt = first && cJSON_GetObjectItemCaseSensitive(first, "text_output") ? RS_DS_RSICAP : RS_DS_RSIEVAL;
            } else {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: unrecognised annotation file (expected \"images\", \"annotations\" "
                                                "or \"questions\")", path);
                goto out;
            }
        }
    } else if (fmt == RS_DS_AUTO) fmt = RS_DS_RSIVQA;
    if (fmt != RS_DS_RSIVQA && !root) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: not a JSON file (%s expected)", path, rs_ds_format_name(fmt));
        goto out;
    }
    ds->format = fmt;
    snprintf(ds->name, sizeof ds->name, "%s", rs_ds_format_name(fmt));
    switch (fmt) {
    case RS_DS_KARPATHY: st = load_karpathy(&b, root); break;
    case RS_DS_RSICAP: st = load_rsicap(&b, root); break;
    case RS_DS_RSIEVAL: st = load_rsieval(&b, root); break;
    case RS_DS_RSVQA: st = load_rsvqa(&b, path, root); break;
    case RS_DS_RSIVQA: st = load_rsivqa(&b, text); break;
    default: st = rs_error(RSMOE_ERR_INVALID_ARG, "%s: unknown format %d", path, (int)fmt);
    }
    if (!st) st = check_images(&b, opts ? opts->check : RS_DS_NO_CHECK);
out:
    cJSON_Delete(root);
    free(text);
    free(root_dir);
    if (st) rs_dataset_free(ds);
    return st;
}

int rs_dataset_check_images(const rs_dataset *ds, const rs_image_load_opts *opts, rs_ds_bad_image_fn cb, void *ud) {
    int bad = 0;
    for (int i = 0; i < ds->nitems; i++) {
        rs_image im;
        rsmoe_status st = rs_image_load(ds->items[i].path, opts, &im);
        if (st) {
            bad++;
            if (cb) cb(ud, i, ds->items[i].path, st, rsmoe_last_error());
        } else rs_image_free(&im);
    }
    return bad;
}

/* ------------------------------------------------------------------ writer */
rsmoe_status rs_dataset_write_rsvqa(const rs_dataset *ds, const char *path, const char *note) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path);
    cJSON_AddBoolToObject(root, "derived", ds->derived);
    if (note) cJSON_AddStringToObject(root, "note", note);
    cJSON_AddStringToObject(root, "source", ds->name);
    cJSON *imgs = cJSON_AddArrayToObject(root, "images");
    cJSON *qs = cJSON_AddArrayToObject(root, "questions");
    cJSON *as = cJSON_AddArrayToObject(root, "answers");
    bool ok = imgs && qs && as;
    /* questions_ids per image: QA are grouped by scanning once per item via a count pass */
    int *first = calloc((size_t)ds->nitems + 1, sizeof(int));
    int *order = malloc(sizeof(int) * (size_t)(ds->nqa > 0 ? ds->nqa : 1));
    ok = ok && first && order;
    if (ok) {
        for (int k = 0; k < ds->nqa; k++) first[ds->qa[k].item + 1]++;
        for (int i = 0; i < ds->nitems; i++) first[i + 1] += first[i];
        int *fill = calloc((size_t)ds->nitems + 1, sizeof(int));
        ok = fill != NULL;
        if (ok) for (int k = 0; k < ds->nqa; k++) { int it = ds->qa[k].item; order[first[it] + fill[it]++] = k; }
        free(fill);
    }
    for (int i = 0; ok && i < ds->nitems; i++) {
        const rs_ds_item *it = &ds->items[i];
        cJSON *o = cJSON_CreateObject();
        ok = o != NULL;
        if (!ok) break;
        cJSON_AddItemToArray(imgs, o);
        cJSON_AddNumberToObject(o, "id", i);
        cJSON_AddStringToObject(o, "filename", it->filename);
        cJSON_AddStringToObject(o, "split", it->split);
        cJSON_AddStringToObject(o, "label", it->label);
        cJSON_AddBoolToObject(o, "active", 1);
        cJSON *ids = cJSON_AddArrayToObject(o, "questions_ids");
        ok = ids != NULL;
        for (int k = first[i]; ok && k < first[i + 1]; k++) {
            cJSON *v = cJSON_CreateNumber(order[k]);
            ok = v != NULL;
            if (v) cJSON_AddItemToArray(ids, v);
        }
    }
    for (int k = 0; ok && k < ds->nqa; k++) {
        const rs_ds_qa *x = &ds->qa[k];
        cJSON *q = cJSON_CreateObject(), *a = cJSON_CreateObject();
        if (q) cJSON_AddItemToArray(qs, q);
        if (a) cJSON_AddItemToArray(as, a);
        ok = q && a;
        if (!ok) break;
        cJSON_AddNumberToObject(q, "id", k);
        cJSON_AddNumberToObject(q, "img_id", x->item);
        cJSON_AddStringToObject(q, "type", x->type);
        cJSON_AddStringToObject(q, "question", x->question);
        cJSON *aids = cJSON_AddArrayToObject(q, "answers_ids");
        cJSON *v = cJSON_CreateNumber(k);
        ok = aids && v;
        if (v) cJSON_AddItemToArray(aids, v);
        cJSON_AddBoolToObject(q, "active", 1);
        cJSON_AddNumberToObject(a, "id", k);
        cJSON_AddNumberToObject(a, "question_id", k);
        cJSON_AddStringToObject(a, "answer", x->answer);
        cJSON_AddBoolToObject(a, "active", 1);
    }
    free(first);
    free(order);
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory building the JSON", path);
    FILE *f = fopen(path, "wb");
    if (!f) { cJSON_free(text); return rs_error(RSMOE_ERR_IO, "%s: cannot create: %s", path, strerror(errno)); }
    size_t len = strlen(text);
    bool wok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
    wok = (fclose(f) == 0) && wok;
    cJSON_free(text);
    if (!wok) return rs_error(RSMOE_ERR_IO, "%s: write error", path);
    return RSMOE_OK;
}
