/* cmd_score.c - `rsmoe score`: scores existing captions with the caption toolkit's metrics
 * (BLEU-1..4, METEOR (no paraphrase), ROUGE-L, CIDEr-D). Rules: docs/metrics.md. */
#include "cli.h"
#include "cli_scores.h"
#include "core/core.h"
#include "eval/eval.h"
#include "eval/eval_internal.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: rsmoe score --refs REFS --hyps HYPS [options]\n\n"
        "Scores captions as the COCO caption toolkit (pycocoevalcap) does: PTB tokenisation,\n"
        "BLEU-1..4, METEOR (no paraphrase), ROUGE-L, CIDEr-D; the table prints them x100.\n\n"
        "  --refs FILE       references: a Karpathy dataset file (dataset_*.json, with --split)\n"
        "                    or COCO-format references ({\"annotations\": [{image_id, caption}]})\n"
        "  --split NAME      Karpathy split to score (default: test)\n"
        "  --hyps FILE       hypotheses: COCO result JSON ([{\"image_id\", \"caption\"}]) or\n"
        "                    lines \"ID<TAB>caption\". With a Karpathy file an ID is the filename\n"
        "                    (airport_1.jpg), the filename without extension, or the imgid\n"
        "  --allow-missing   score only the images that have a hypothesis (default: error)\n"
        "  --no-meteor       skip METEOR (it needs WordNet)\n"
        "  --wordnet DIR     WordNet dict folder (default $RSMOE_WORDNET or /usr/share/wordnet)\n"
        "  --json            print the scores as JSON (raw values: x1, CIDEr-D up to 10)\n");
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (n + 1 < cap) break;
        cap *= 2;
        char *t = realloc(b, cap);
        if (!t) { free(b); b = NULL; }
        else b = t;
    }
    fclose(f);
    if (!b) return NULL;
    b[n] = 0;
    if (len) *len = n;
    return b;
}

/* ---------------------------------------------------------------- references */
typedef struct {
    size_t n;
    char **name;           /* display id of image i */
    char ***refs;          /* [n][nrefs[i]] */
    size_t *nrefs;
    rs_evocab *keys;        /* accepted ids -> key id */
    int32_t *key_img;      /* key id -> image (-2 ambiguous) */
    size_t key_cap;
} refset;

static void refset_free(refset *r) {
    for (size_t i = 0; i < r->n; i++) {
        for (size_t j = 0; j < r->nrefs[i]; j++) free(r->refs[i][j]);
        free(r->refs[i]);
        free(r->name[i]);
    }
    free(r->name);
    free(r->refs);
    free(r->nrefs);
    rs_evocab_free(r->keys);
    free(r->key_img);
}

static bool add_key(refset *r, const char *key, int32_t img) {
    bool oom = false;
    int32_t id = rs_evocab_lookup(r->keys, key, strlen(key), true, &oom);
    if (oom) return false;
    if ((size_t)id >= r->key_cap) {
        size_t nc = r->key_cap ? r->key_cap * 2 : 1024;
        while (nc <= (size_t)id) nc *= 2;
        int32_t *t = realloc(r->key_img, nc * sizeof *t);
        if (!t) return false;
        for (size_t k = r->key_cap; k < nc; k++) t[k] = -1;
        r->key_img = t;
        r->key_cap = nc;
    }
    if (r->key_img[id] == -1) r->key_img[id] = img;
    else if (r->key_img[id] != img) r->key_img[id] = -2;
    return true;
}

static int32_t find_img(const refset *r, const char *key) {
    bool oom = false;
    int32_t id = rs_evocab_lookup(r->keys, key, strlen(key), false, &oom);
    return id < 0 ? -1 : r->key_img[id];
}

static int new_image(refset *r, const char *name) {
    size_t i = r->n;
    char **nm = realloc(r->name, (i + 1) * sizeof *nm);
    if (!nm) return -1;
    r->name = nm;
    char ***rf = realloc(r->refs, (i + 1) * sizeof *rf);
    if (!rf) return -1;
    r->refs = rf;
    size_t *nr = realloc(r->nrefs, (i + 1) * sizeof *nr);
    if (!nr) return -1;
    r->nrefs = nr;
    r->name[i] = strdup(name);
    r->refs[i] = NULL;
    r->nrefs[i] = 0;
    r->n++;
    return r->name[i] ? (int)i : -1;
}

static bool add_ref(refset *r, size_t i, const char *cap) {
    char **t = realloc(r->refs[i], (r->nrefs[i] + 1) * sizeof *t);
    if (!t) return false;
    r->refs[i] = t;
    t[r->nrefs[i]] = strdup(cap);
    return t[r->nrefs[i]++] != NULL;
}

/* id of a JSON value (number or string) as text */
static bool json_id(const cJSON *v, char *buf, size_t cap) {
    if (cJSON_IsString(v)) { snprintf(buf, cap, "%s", v->valuestring); return true; }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == (double)(long long)d) snprintf(buf, cap, "%lld", (long long)d);
        else snprintf(buf, cap, "%.17g", d);
        return true;
    }
    return false;
}

static int load_refs(const char *path, const char *split, refset *r, const char **kind) {
    memset(r, 0, sizeof *r);
    r->keys = rs_evocab_new();
    size_t len;
    char *txt = slurp(path, &len);
    if (!txt || !r->keys) { fprintf(stderr, "rsmoe score: cannot read %s\n", path); free(txt); return 1; }
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!j) { fprintf(stderr, "rsmoe score: %s is not valid JSON\n", path); return 1; }
    int rc = 0;
    cJSON *images = cJSON_GetObjectItem(j, "images"), *anns = cJSON_GetObjectItem(j, "annotations");
    char idb[512];
    if (cJSON_IsArray(images) && !cJSON_IsArray(anns)) {
        *kind = "Karpathy";
        cJSON *im;
        size_t seen = 0;
        cJSON_ArrayForEach(im, images) {
            seen++;
            cJSON *sp = cJSON_GetObjectItem(im, "split"), *fn = cJSON_GetObjectItem(im, "filename");
            cJSON *iid = cJSON_GetObjectItem(im, "imgid"), *ss = cJSON_GetObjectItem(im, "sentences");
            if (!cJSON_IsString(sp) || strcmp(sp->valuestring, split)) continue;
            if (!cJSON_IsString(fn) || !cJSON_IsArray(ss)) {
                fprintf(stderr, "rsmoe score: %s: image %zu lacks filename or sentences\n", path, seen);
                rc = 1;
                break;
            }
            int i = new_image(r, fn->valuestring);
            if (i < 0) { rc = 1; break; }
            char base[512];
            snprintf(base, sizeof base, "%s", fn->valuestring);
            char *dot = strrchr(base, '.');
            if (dot && dot != base) *dot = 0;
            bool ok = add_key(r, fn->valuestring, i) && add_key(r, base, i);
            if (ok && json_id(iid, idb, sizeof idb)) ok = add_key(r, idb, i);
            cJSON *s;
            cJSON_ArrayForEach(s, ss) {
                cJSON *raw = cJSON_GetObjectItem(s, "raw");
                if (!cJSON_IsString(raw)) {
                    /* fall back on the token list */
                    cJSON *toks = cJSON_GetObjectItem(s, "tokens"), *t;
                    char line[4096] = "";
                    cJSON_ArrayForEach(t, toks) if (cJSON_IsString(t)) {
                        if (*line) strncat(line, " ", sizeof line - strlen(line) - 1);
                        strncat(line, t->valuestring, sizeof line - strlen(line) - 1);
                    }
                    ok = ok && add_ref(r, (size_t)i, line);
                } else ok = ok && add_ref(r, (size_t)i, raw->valuestring);
            }
            if (!ok) { fprintf(stderr, "rsmoe score: out of memory\n"); rc = 1; break; }
            if (!r->nrefs[i]) {
                fprintf(stderr, "rsmoe score: %s: image %s has no reference sentence\n", path, fn->valuestring);
                rc = 1;
                break;
            }
        }
        if (!rc && !r->n) {
            fprintf(stderr, "rsmoe score: %s has no image in split '%s'\n", path, split);
            rc = 1;
        }
    } else if (cJSON_IsArray(anns)) {
        *kind = "COCO";
        cJSON *a;
        size_t k = 0;
        cJSON_ArrayForEach(a, anns) {
            k++;
            cJSON *cap = cJSON_GetObjectItem(a, "caption");
            if (!json_id(cJSON_GetObjectItem(a, "image_id"), idb, sizeof idb) || !cJSON_IsString(cap)) {
                fprintf(stderr, "rsmoe score: %s: annotation %zu lacks image_id or caption\n", path, k);
                rc = 1;
                break;
            }
            int32_t i = find_img(r, idb);
            if (i < 0) {
                i = new_image(r, idb);
                if (i < 0 || !add_key(r, idb, i)) { rc = 1; break; }
            }
            if (!add_ref(r, (size_t)i, cap->valuestring)) { rc = 1; break; }
        }
        if (!rc && !r->n) { fprintf(stderr, "rsmoe score: %s has no annotations\n", path); rc = 1; }
    } else {
        fprintf(stderr, "rsmoe score: %s is neither a Karpathy dataset file (\"images\") nor COCO "
                        "references (\"annotations\")\n", path);
        rc = 1;
    }
    cJSON_Delete(j);
    return rc;
}

/* ---------------------------------------------------------------- hypotheses */
typedef struct {
    char **hyp;           /* [n images], NULL = missing */
    size_t n_empty, n_given;
} hypset;

static int put_hyp(const refset *r, hypset *h, const char *id, const char *cap, const char *where,
                   size_t *n_unknown) {
    int32_t i = find_img(r, id);
    if (i == -2) {
        fprintf(stderr, "rsmoe score: %s: id '%s' names more than one image\n", where, id);
        return 1;
    }
    if (i < 0) {
        if (*n_unknown < 5) fprintf(stderr, "rsmoe score: %s: unknown image id '%s'\n", where, id);
        (*n_unknown)++;
        return 0;
    }
    if (h->hyp[i]) {
        fprintf(stderr, "rsmoe score: %s: duplicate hypothesis for image %s\n", where, r->name[i]);
        return 1;
    }
    h->hyp[i] = strdup(cap);
    if (!h->hyp[i]) return 1;
    h->n_given++;
    const char *p = cap;
    while (*p && isspace((unsigned char)*p)) p++;
    if (!*p) {
        if (h->n_empty < 5) fprintf(stderr, "rsmoe score: warning: %s: empty hypothesis for image %s "
                                            "(scored as empty: zero)\n", where, r->name[i]);
        h->n_empty++;
    }
    return 0;
}

static int load_hyps(const char *path, const refset *r, hypset *h) {
    h->hyp = calloc(r->n, sizeof *h->hyp);
    h->n_empty = h->n_given = 0;
    size_t len;
    char *txt = slurp(path, &len);
    if (!txt || !h->hyp) { fprintf(stderr, "rsmoe score: cannot read %s\n", path); free(txt); return 1; }
    int rc = 0;
    size_t n_unknown = 0;
    const char *p = txt;
    while (*p && isspace((unsigned char)*p)) p++;
    char where[600], idb[512];
    if (*p == '{') {
        fprintf(stderr, "rsmoe score: %s: hypotheses JSON must be a list [{\"image_id\", \"caption\"}, ...]\n", path);
        free(txt);
        return 1;
    }
    if (*p == '[') {
        cJSON *j = cJSON_Parse(txt);
        if (!j) { fprintf(stderr, "rsmoe score: %s is not valid JSON\n", path); free(txt); return 1; }
        cJSON *e;
        size_t k = 0;
        cJSON_ArrayForEach(e, j) {
            k++;
            snprintf(where, sizeof where, "%s entry %zu", path, k);
            cJSON *cap = cJSON_GetObjectItem(e, "caption");
            if (!json_id(cJSON_GetObjectItem(e, "image_id"), idb, sizeof idb) || !cJSON_IsString(cap)) {
                fprintf(stderr, "rsmoe score: %s: needs \"image_id\" and a string \"caption\"\n", where);
                rc = 1;
                break;
            }
            if ((rc = put_hyp(r, h, idb, cap->valuestring, where, &n_unknown))) break;
        }
        cJSON_Delete(j);
    } else {
        size_t lineno = 0;
        char *save = NULL;
        for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            lineno++;
            size_t l = strlen(line);
            if (l && line[l - 1] == '\r') line[--l] = 0;
            const char *q = line;
            while (*q && isspace((unsigned char)*q)) q++;
            if (!*q) continue;
            snprintf(where, sizeof where, "%s line %zu", path, lineno);
            char *tab = strchr(line, '\t');
            if (!tab) {
                fprintf(stderr, "rsmoe score: %s: expected \"ID<TAB>caption\"\n", where);
                rc = 1;
                break;
            }
            *tab = 0;
            char *id = line;                       /* the id without surrounding blanks */
            while (*id == ' ') id++;
            for (char *e = tab; e > id && e[-1] == ' ';) *--e = 0;
            if ((rc = put_hyp(r, h, id, tab + 1, where, &n_unknown))) break;
        }
    }
    free(txt);
    if (!rc && n_unknown) {
        fprintf(stderr, "rsmoe score: %zu hypotheses name images that are not in the references%s\n",
                n_unknown, n_unknown > 5 ? " (first 5 shown)" : "");
        rc = 1;
    }
    if (!rc && h->n_empty > 5) fprintf(stderr, "rsmoe score: warning: %zu empty hypotheses in all\n", h->n_empty);
    return rc;
}

/* ---------------------------------------------------------------- command */
int cmd_score(int argc, char **argv) {
    const char *refs_path = NULL, *hyps_path = NULL, *split = "test", *wordnet = NULL;
    bool json = false, allow_missing = false, meteor = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--refs") && has) refs_path = argv[++i];
        else if (!strcmp(a, "--hyps") && has) hyps_path = argv[++i];
        else if (!strcmp(a, "--split") && has) split = argv[++i];
        else if (!strcmp(a, "--wordnet") && has) wordnet = argv[++i];
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--allow-missing")) allow_missing = true;
        else if (!strcmp(a, "--no-meteor")) meteor = false;
        else {
            fprintf(stderr, "rsmoe score: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!refs_path || !hyps_path) {
        fprintf(stderr, "rsmoe score: --refs and --hyps are required\n\n");
        usage(stderr);
        return 2;
    }
    double t0 = rs_time_s();
    refset r;
    const char *kind = "";
    if (load_refs(refs_path, split, &r, &kind)) { refset_free(&r); return 1; }
    hypset h;
    if (load_hyps(hyps_path, &r, &h)) {
        if (h.hyp) for (size_t i = 0; i < r.n; i++) free(h.hyp[i]);
        free(h.hyp);
        refset_free(&r);
        return 1;
    }
    /* missing hypotheses */
    size_t missing = 0;
    for (size_t i = 0; i < r.n; i++) missing += h.hyp[i] == NULL;
    int rc = 0;
    if (missing && !allow_missing) {
        fprintf(stderr, "rsmoe score: %zu of %zu reference images have no hypothesis, e.g.", missing, r.n);
        size_t shown = 0;
        for (size_t i = 0; i < r.n && shown < 5; i++)
            if (!h.hyp[i]) { fprintf(stderr, " %s", r.name[i]); shown++; }
        fprintf(stderr, "%s\n(use --allow-missing to score only the images that have one)\n", missing > 5 ? " ..." : "");
        rc = 1;
    }
    size_t n = r.n - missing;
    if (!rc && n == 0) { fprintf(stderr, "rsmoe score: no image has a hypothesis\n"); rc = 1; }
    const char **hy = NULL;
    const char *const **rf = NULL;
    size_t *nr = NULL;
    rs_score_result res;
    memset(&res, 0, sizeof res);
    if (!rc) {
        hy = calloc(n, sizeof *hy);
        rf = calloc(n, sizeof *rf);
        nr = calloc(n, sizeof *nr);
        if (!hy || !rf || !nr) { fprintf(stderr, "rsmoe score: out of memory\n"); rc = 1; }
    }
    double t_load = rs_time_s() - t0, t_wn = 0;
    rs_meteor *mctx = NULL;
    if (!rc) {
        size_t k = 0;
        for (size_t i = 0; i < r.n; i++) {
            if (!h.hyp[i]) continue;
            hy[k] = h.hyp[i];
            rf[k] = (const char *const *)r.refs[i];
            nr[k] = r.nrefs[i];
            k++;
        }
        if (missing && !json)
            printf("scoring %zu of %zu images (%zu without a hypothesis left out: --allow-missing)\n", n, r.n, missing);
        else if (missing)
            fprintf(stderr, "rsmoe score: scoring %zu of %zu images (%zu without a hypothesis left out)\n", n, r.n, missing);
        if (meteor) {
            double tw = rs_time_s();
            rsmoe_status st = rs_meteor_new(&mctx, wordnet);
            if (st) { rc = cli_fail("METEOR", st); mctx = NULL; }
            t_wn = rs_time_s() - tw;
        }
    }
    if (!rc) {
        rs_caption_refs cr = {n, nr, rf};
        rs_score_opts o;
        rs_score_opts_default(&o);
        o.meteor = meteor;
        o.meteor_ctx = mctx;
        rsmoe_status st = rs_score_captions(&cr, hy, &o, &res);
        if (st) rc = cli_fail("score", st);
    }
    if (!rc) {
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "references", refs_path);
            cJSON_AddStringToObject(o, "reference_format", kind);
            if (!strcmp(kind, "Karpathy")) cJSON_AddStringToObject(o, "split", split);
            cJSON_AddNumberToObject(o, "images", (double)n);
            cJSON_AddNumberToObject(o, "images_missing", (double)missing);
            cJSON_AddNumberToObject(o, "empty_hypotheses", (double)h.n_empty);
            cli_scores_json(o, &res);
            cJSON_AddStringToObject(o, "scale", "raw: 0..1 (CIDEr-D 0..10); tables print x100");
            cJSON_AddNumberToObject(o, "seconds", rs_time_s() - t0);
            char *s = cJSON_Print(o);
            printf("%s\n", s);
            free(s);
            cJSON_Delete(o);
        } else {
            printf("%s references %s%s%s: %zu images\n", kind, refs_path, !strcmp(kind, "Karpathy") ? ", split " : "",
                   !strcmp(kind, "Karpathy") ? split : "", n);
            cli_scores_table(stdout, &res);
            printf("time: %.3f s in all (reading %.3f s, tokenising + BLEU + ROUGE-L + CIDEr-D %.3f s, "
                   "METEOR %.3f s + WordNet load %.3f s)\n", rs_time_s() - t0, t_load, res.seconds_other,
                   res.seconds_meteor, t_wn);
        }
    }
    rs_score_result_free(&res);
    rs_meteor_free(mctx);
    free(hy);
    free(rf);
    free(nr);
    for (size_t i = 0; i < r.n; i++) free(h.hyp[i]);
    free(h.hyp);
    refset_free(&r);
    return rc;
}
