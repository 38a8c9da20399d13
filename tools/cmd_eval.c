/* cmd_eval.c - `rsmoe eval`: caption (or answer) every image of a data set split, score with
 * the literature's metrics, write hypotheses and scores to files, resume an interrupted run. */
#include "cli.h"
#include "cli_scores.h"
#include "core/core.h"
#include "data/dataset.h"
#include "eval/eval.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: rsmoe eval -m MODEL.gguf --data DATASET.json [--split test] [options]\n\n"
            "Captions every image of the split (or answers every question of a VQA data set) with progress and\n"
            "ETA, scores the result (BLEU-1..4, METEOR (no paraphrase), ROUGE-L, CIDEr-D as the COCO caption\n"
            "toolkit; VQA: accuracy per question type, OA and AA), prints the table and writes\n"
            "PREFIX.hyps.tsv (one line per image: file<TAB>caption, written as it goes) and PREFIX.scores.json.\n"
            "Run it again with the same PREFIX to resume an interrupted run.\n"
            "options:\n"
            "  --images DIR      image folder (default: images/ beside the data set file)\n"
            "  --split S         split to evaluate (default test; \"\" = all)\n"
            "  --out PREFIX      output prefix (default: eval-<split>)\n"
            "  --limit N         only the first N images (or questions)\n"
            "  --style S         brief (default: one sentence, the protocol of the RSICD/UCM/Sydney tables) or detailed\n"
            "  --beams N, --max-len N, --no-experts, --uniform-gates, --threads N\n"
            "  --views N         test-time views 1..8 (default 1; see rsmoe caption --help)\n"
            "  --rep-penalty F   repetition penalty (default: 1.0 brief, 1.5 detailed; questions 1.0)\n"
            "  --no-retrieval    brief captions chosen by log-probability even when the model has a\n"
            "                    retrieval index (`rsmoe index`)\n"
            "  --retrieval-only  ablation: brief captions from the index's captions alone (no expert proposal)\n"
            "  --no-meteor       skip METEOR (needs WordNet: /usr/share/wordnet or $RSMOE_WORDNET)\n"
            "  --json            print the scores as JSON\n");
}

typedef struct { char **key, **val; int n, cap; } kvlist;

static void kv_add(kvlist *l, const char *k, const char *v) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->key = realloc(l->key, sizeof(char *) * (size_t)l->cap);
        l->val = realloc(l->val, sizeof(char *) * (size_t)l->cap);
    }
    l->key[l->n] = strdup(k);
    l->val[l->n] = strdup(v);
    l->n++;
}

static const char *kv_get(const kvlist *l, const char *k) {
    for (int i = l->n - 1; i >= 0; i--)
        if (!strcmp(l->key[i], k)) return l->val[i];
    return NULL;
}

static void kv_free(kvlist *l) {
    for (int i = 0; i < l->n; i++) { free(l->key[i]); free(l->val[i]); }
    free(l->key);
    free(l->val);
}

/* reads complete lines "key<TAB>value\n" after a header line that must equal `header`;
 * *good_end receives the byte offset after the last complete line */
static int read_done(const char *path, const char *header, kvlist *done, long *good_end) {
    *good_end = 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[n - 1] != '\n') break; /* a line cut by an interruption: redone */
        *good_end += (long)n;
        line[n - 1] = 0;
        if (lineno == 1) {
            if (strcmp(line, header)) {
                fprintf(stderr, "rsmoe eval: %s was written with other settings:\n  %s\nnow:\n  %s\n"
                                "use another --out or remove the file\n", path, line, header);
                rc = -1;
                break;
            }
            continue;
        }
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        kv_add(done, line, tab + 1);
    }
    free(line);
    fclose(f);
    return rc;
}

static void clean_field(char *s) {
    for (; *s; s++)
        if (*s == '\t' || *s == '\n' || *s == '\r') *s = ' ';
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *images = NULL, *split = "test", *prefix = NULL;
    int limit = 0, threads = 0, json = 0, meteor = 1;
    rsmoe_generate_params gp = rsmoe_caption_default_params();
    gp.style = RSMOE_STYLE_BRIEF;
    bool vqa_beams_set = false, rep_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && has) model = argv[++i];
        else if (!strcmp(a, "--data") && has) data = argv[++i];
        else if (!strcmp(a, "--images") && has) images = argv[++i];
        else if (!strcmp(a, "--split") && has) split = argv[++i];
        else if (!strcmp(a, "--out") && has) prefix = argv[++i];
        else if (!strcmp(a, "--limit") && has) { limit = atoi(argv[++i]); if (limit < 1) goto bad; }
        else if (!strcmp(a, "--threads") && has) { threads = atoi(argv[++i]); if (threads < 1) goto bad; }
        else if (!strcmp(a, "--beams") && has) { gp.beams = atoi(argv[++i]); vqa_beams_set = true; if (gp.beams < 1 || gp.beams > 16) goto bad; }
        else if (!strcmp(a, "--views") && has) { gp.views = atoi(argv[++i]); if (gp.views < 1 || gp.views > RSMOE_MAX_VIEWS) goto bad; }
        else if (!strcmp(a, "--max-len") && has) { gp.max_len = atoi(argv[++i]); if (gp.max_len < 1) goto bad; }
        else if (!strcmp(a, "--rep-penalty") && has) { gp.repetition_penalty = (float)atof(argv[++i]); rep_set = true; if (!(gp.repetition_penalty > 0)) goto bad; }
        else if (!strcmp(a, "--style") && has) {
            const char *s = argv[++i];
            if (!strcmp(s, "brief")) gp.style = RSMOE_STYLE_BRIEF;
            else if (!strcmp(s, "detailed")) gp.style = RSMOE_STYLE_DETAILED;
            else goto bad;
        } else if (!strcmp(a, "--no-experts")) gp.use_experts = false;
        else if (!strcmp(a, "--uniform-gates")) gp.uniform_gates = true;
        else if (!strcmp(a, "--no-retrieval")) gp.use_retrieval = false;
        else if (!strcmp(a, "--retrieval-only")) gp.retrieval_only = true;
        else if (!strcmp(a, "--no-meteor")) meteor = 0;
        else if (!strcmp(a, "--json")) json = 1;
        else { fprintf(stderr, "rsmoe eval: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
        continue;
    bad:
        fprintf(stderr, "rsmoe eval: bad value for %s\n", a);
        return 2;
    }
    if (!model || !data) { usage(stderr); return 2; }
    /* brief captions: no repetition penalty unless one is given (the rule of `rsmoe caption --brief`) */
    if (gp.style == RSMOE_STYLE_BRIEF && !rep_set)
        gp.repetition_penalty = rsmoe_brief_default_params().repetition_penalty;
    char root[4096], pfx[4096], hyp_path[4200], score_path[4200];
    if (!images) {
        const char *slash = strrchr(data, '/');
        snprintf(root, sizeof root, "%.*simages", slash ? (int)(slash - data + 1) : 0, data);
        images = root;
    }
    snprintf(pfx, sizeof pfx, "%s", prefix ? prefix : "");
    if (!prefix) snprintf(pfx, sizeof pfx, "eval-%s", *split ? split : "all");
    snprintf(hyp_path, sizeof hyp_path, "%s.hyps.tsv", pfx);
    snprintf(score_path, sizeof score_path, "%s.scores.json", pfx);

    rs_dataset ds;
    rs_dataset_opts o = {.image_root = images, .split = split};
    rsmoe_status st = rs_dataset_load(data, RS_DS_AUTO, &o, &ds);
    if (st) return cli_fail(data, st);
    bool vqa = ds.nqa > 0;
    if (vqa) {
        rsmoe_generate_params v = rsmoe_vqa_default_params();
        v.use_experts = gp.use_experts;
        v.uniform_gates = gp.uniform_gates;
        v.views = gp.views;
        if (vqa_beams_set) v.beams = gp.beams;
        gp = v;
    }
    int n_units = vqa ? ds.nqa : ds.nitems;
    if (limit && limit < n_units) n_units = limit;
    if (n_units == 0) { fprintf(stderr, "rsmoe eval: %s has nothing in split '%s'\n", data, split); rs_dataset_free(&ds); return 1; }

    char header[8192];
    char views[32] = "";
    if (gp.views > 1) snprintf(views, sizeof views, " views=%d", gp.views);
    snprintf(header, sizeof header, "# rsmoe eval model=%s data=%s split=%s style=%s beams=%d max_len=%d rep=%.3g experts=%d uniform=%d%s%s",
             model, data, split, gp.style == RSMOE_STYLE_BRIEF ? "brief" : "detailed", gp.beams, gp.max_len,
             gp.repetition_penalty, gp.use_experts, gp.uniform_gates, gp.use_retrieval ? (gp.retrieval_only ? " retrieval=only" : "") : " retrieval=0",
             views);
    kvlist done = {0};
    long good_end = 0;
    if (read_done(hyp_path, header, &done, &good_end) < 0) { rs_dataset_free(&ds); kv_free(&done); return 1; }
    int rc = 0;
    rsmoe_model *m = NULL;
    rsmoe_context *c = NULL;
    FILE *out = NULL;
    int todo = 0;
    for (int u = 0; u < n_units; u++) {
        char key[64];
        snprintf(key, sizeof key, "%d", u);
        const char *k = vqa ? key : ds.items[u].filename;
        if (!kv_get(&done, k)) todo++;
    }
    if (done.n) fprintf(stderr, "resuming %s: %d of %d done\n", hyp_path, n_units - todo, n_units);
    if (todo) {
        m = rsmoe_model_load(model, NULL, &st);
        if (!m) { rc = cli_fail(model, st); goto finish; }
        rsmoe_context_params cp = rsmoe_context_default_params();
        cp.n_threads = threads;
        if (gp.beams > cp.max_beams) cp.max_beams = gp.beams;
        cp.max_views = gp.views;
        c = rsmoe_context_new(m, &cp, &st);
        if (!c) { rc = cli_fail("context", st); goto finish; }
        bool fresh = access(hyp_path, F_OK) != 0 || good_end == 0;
        /* drop a line cut by an interruption before appending */
        if (!fresh && truncate(hyp_path, good_end) != 0) { fprintf(stderr, "rsmoe eval: cannot truncate %s\n", hyp_path); rc = 1; goto finish; }
        out = fopen(hyp_path, fresh ? "w" : "a");
        if (!out) { fprintf(stderr, "rsmoe eval: cannot write %s\n", hyp_path); rc = 1; goto finish; }
        if (fresh) fprintf(out, "%s\n", header);
        fflush(out);
        double t0 = rs_time_s();
        int did = 0, failed = 0, cached_img = -1;
        rsmoe_image img = {0};
        for (int u = 0; u < n_units; u++) {
            char key[64];
            snprintf(key, sizeof key, "%d", u);
            const char *k = vqa ? key : ds.items[u].filename;
            if (kv_get(&done, k)) continue;
            int item = vqa ? ds.qa[u].item : u;
            if (item != cached_img) {
                rsmoe_image_free(&img);
                cached_img = -1;
                if ((st = rsmoe_image_load(ds.items[item].path, &img))) {
                    cli_fail(ds.items[item].path, st);
                    failed++;
                    continue;
                }
                cached_img = item;
            }
            rsmoe_result r;
            st = vqa ? rsmoe_answer(c, &img, ds.qa[u].question, &gp, &r) : rsmoe_caption(c, &img, &gp, &r);
            if (st) { cli_fail(ds.items[item].path, st); failed++; continue; }
            clean_field(r.text);
            fprintf(out, "%s\t%s\n", k, r.text);
            fflush(out);
            kv_add(&done, k, r.text);
            rsmoe_result_free(&r);
            did++;
            double el = rs_time_s() - t0, rate = did / el;
            if (!json || isatty(2))
                fprintf(stderr, "\r  %d/%d %s, %.2f/s, ETA %.0f s   ", n_units - todo + did, n_units, vqa ? "questions" : "images",
                        rate, (todo - did) / (rate > 0 ? rate : 1));
        }
        rsmoe_image_free(&img);
        fprintf(stderr, "\n");
        if (failed) { fprintf(stderr, "rsmoe eval: %d %s failed (see above); scoring the rest\n", failed, vqa ? "questions" : "images"); }
    }

    /* score */
    {
        int n = 0;
        size_t nu = n_units > 0 ? (size_t)n_units : 1;
        const char **hyps = malloc(sizeof(char *) * nu);
        const char **types = malloc(sizeof(char *) * nu), **gts = malloc(sizeof(char *) * nu);
        size_t *nrefs = malloc(sizeof(size_t) * nu);
        const char *const **refs = malloc(sizeof(char **) * nu);
        if (!hyps || !types || !gts || !nrefs || !refs) { fprintf(stderr, "rsmoe eval: out of memory\n"); rc = 1; n_units = 0; }
        for (int u = 0; u < n_units; u++) {
            char key[64];
            snprintf(key, sizeof key, "%d", u);
            const char *h = kv_get(&done, vqa ? key : ds.items[u].filename);
            if (!h) continue;
            hyps[n] = h;
            if (vqa) { types[n] = ds.qa[u].type; gts[n] = ds.qa[u].answer; }
            else { nrefs[n] = (size_t)ds.items[u].ncap; refs[n] = (const char *const *)ds.items[u].captions; }
            n++;
        }
        cJSON *jo = cJSON_CreateObject();
        cJSON_AddStringToObject(jo, "model", model);
        cJSON_AddStringToObject(jo, "data", data);
        cJSON_AddStringToObject(jo, "split", split);
        cJSON_AddStringToObject(jo, "style", gp.style == RSMOE_STYLE_BRIEF ? "brief" : "detailed");
        /* brief captions chosen by the model's retrieval index or not (known when this run loaded it) */
        if (!vqa && gp.style == RSMOE_STYLE_BRIEF && m)
            cJSON_AddBoolToObject(jo, "retrieval", gp.use_retrieval && rsmoe_model_has_retrieval(m));
        if (gp.views > 1) cJSON_AddNumberToObject(jo, "views", gp.views);
        cJSON_AddNumberToObject(jo, "scored", n);
        cJSON_AddNumberToObject(jo, "total", n_units);
        if (n == 0) { fprintf(stderr, "rsmoe eval: nothing to score\n"); rc = 1; }
        else if (vqa) {
            rs_vqa_result vr;
            if ((st = rs_vqa_accuracy((size_t)n, types, hyps, gts, &vr))) rc = cli_fail("vqa accuracy", st);
            else {
                cJSON *t = cJSON_AddObjectToObject(jo, "accuracy_by_type");
                for (size_t k = 0; k < vr.n_types; k++) cJSON_AddNumberToObject(t, vr.type_names[k], vr.type_acc[k]);
                cJSON_AddNumberToObject(jo, "OA", vr.oa);
                cJSON_AddNumberToObject(jo, "AA", vr.aa);
                if (!json) {
                    printf("VQA accuracy on %d questions of %s (%s):\n", n, data, split);
                    for (size_t k = 0; k < vr.n_types; k++)
                        printf("  %-20s %6.2f  (%zu/%zu)\n", vr.type_names[k], 100 * vr.type_acc[k], vr.type_correct[k], vr.type_total[k]);
                    printf("  %-20s %6.2f\n  %-20s %6.2f\n", "OA", 100 * vr.oa, "AA", 100 * vr.aa);
                }
                rs_vqa_result_free(&vr);
            }
        } else {
            rs_caption_refs cr = {(size_t)n, nrefs, refs};
            rs_score_opts so;
            rs_score_opts_default(&so);
            so.meteor = meteor;
            rs_score_result sr;
            if ((st = rs_score_captions(&cr, hyps, &so, &sr))) rc = cli_fail("scoring", st);
            else {
                cli_scores_json(jo, &sr);
                if (!json) {
                    printf("%d of %d images of %s (%s), %s captions; scores x100:\n", n, n_units, data, split,
                           gp.style == RSMOE_STYLE_BRIEF ? "brief" : "detailed");
                    cli_scores_table(stdout, &sr);
                }
                rs_score_result_free(&sr);
            }
        }
        if (!rc) {
            char *s = cJSON_Print(jo);
            FILE *f = fopen(score_path, "w");
            if (!f || fputs(s, f) < 0) { fprintf(stderr, "rsmoe eval: cannot write %s\n", score_path); rc = 1; }
            if (f) fclose(f);
            if (json) printf("%s\n", s);
            else printf("hypotheses: %s\nscores: %s\n", hyp_path, score_path);
            free(s);
        }
        cJSON_Delete(jo);
        free(hyps); free(types); free(gts); free(nrefs); free(refs);
    }
finish:
    if (out) fclose(out);
    rsmoe_context_free(c);
    rsmoe_model_free(m);
    kv_free(&done);
    rs_dataset_free(&ds);
    return rc;
}
