/* cmd_caption.c - `rsmoe caption` and `rsmoe vqa`. */
#include "cli.h"
#include "serve/result_json.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model;
    const char *files[4096];
    int n_files;
    bool json, aspects;
    int threads;
    rsmoe_generate_params gp;
} opts;

static void usage(FILE *f, bool vqa) {
    if (vqa)
        fprintf(f, "usage: rsmoe vqa -m MODEL.gguf IMAGE \"QUESTION\" [options]\n\n"
                   "Answers a question about a remote-sensing image (the router picks the expert).\n");
    else
        fprintf(f, "usage: rsmoe caption -m MODEL.gguf IMAGE... [options]\n\n"
                   "Describes remote-sensing images: theme, objects and relationships (one expert each).\n");
    fprintf(f, "options:\n"
               "  -m FILE            the model (GGUF)\n"
               "  --json             JSON output with each aspect, its gate weight and the timings\n"
               "  --aspects          print each expert's part on its own line\n"
               "  --brief            one sentence: the best expert's proposal, or with a retrieval index the\n"
               "                     best of those and the nearest indexed images' captions (caption only)\n"
               "  --beams N          beam width (default 5; 1 = greedy)\n"
               "  --max-len N        generated tokens per expert (default %d)\n"
               "  --min-len N        minimum generated tokens (default 1)\n"
               "  --rep-penalty F    repetition penalty (default %s)\n"
               "  --len-penalty F    length penalty exponent (default 1.0)\n"
               "  --temp T           temperature; > 0 samples (needs --beams 1)\n"
               "  --top-p P          nucleus mass when sampling (default 0.9)\n"
               "  --seed N           sampling seed (default 42)\n"
               "  --top-k N          questions: consult the N highest-gated experts (default 1)\n"
               "  --views N          test-time views 1..8 (default 1): the image, mirrored, rotated 90 and\n"
               "                     270 degrees, ...; each expert decodes the first N as one ensemble\n"
               "  --no-experts       the LLM Block alone (stage-I path)\n"
               "  --uniform-gates    every expert weighted 1/K (ablation)\n"
               "  --no-retrieval     --brief: pick by log-probability even when the model has a\n"
               "                     retrieval index (`rsmoe index`; default: by consensus with it)\n"
               "  --retrieval-only   --brief, ablation: the index's captions alone (no expert proposal)\n"
               "  --instruction TEXT the global instruction (caption; default: the model's)\n"
               "  --threads N        threads (default: all cores)\n",
            vqa ? 10 : 256, vqa ? "1.0" : "1.5; 1.0 with --brief");
}

static int parse(int argc, char **argv, bool vqa, opts *o) {
    memset(o, 0, sizeof *o);
    o->gp = vqa ? rsmoe_vqa_default_params() : rsmoe_caption_default_params();
    const char *cmd = vqa ? "vqa" : "caption";
    bool rep_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        char *e = NULL;
#define NUM_I(field, lo) do { long v = has ? strtol(argv[++i], &e, 10) : 0; if (!e || *e || v < (lo) || v > 1000000) goto bad; field = (int)v; } while (0)
#define NUM_F(field) do { double v = has ? strtod(argv[++i], &e) : 0; if (!e || *e || !(v >= 0)) goto bad; field = (float)v; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout, vqa); return 0; }
        else if (!strcmp(a, "-m")) { if (!has) goto bad; o->model = argv[++i]; }
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "--aspects")) o->aspects = true;
        else if (!strcmp(a, "--brief") && !vqa) o->gp.style = RSMOE_STYLE_BRIEF;
        else if (!strcmp(a, "--beams")) NUM_I(o->gp.beams, 1);
        else if (!strcmp(a, "--max-len")) NUM_I(o->gp.max_len, 1);
        else if (!strcmp(a, "--min-len")) NUM_I(o->gp.min_len, 0);
        else if (!strcmp(a, "--top-k")) NUM_I(o->gp.top_k_experts, 1);
        else if (!strcmp(a, "--views")) { NUM_I(o->gp.views, 1); if (o->gp.views > RSMOE_MAX_VIEWS) goto bad; }
        else if (!strcmp(a, "--threads")) NUM_I(o->threads, 1);
        else if (!strcmp(a, "--rep-penalty")) { NUM_F(o->gp.repetition_penalty); rep_set = true; }
        else if (!strcmp(a, "--len-penalty")) NUM_F(o->gp.length_penalty);
        else if (!strcmp(a, "--temp")) NUM_F(o->gp.temperature);
        else if (!strcmp(a, "--top-p")) NUM_F(o->gp.top_p);
        else if (!strcmp(a, "--seed")) { if (!has) goto bad; o->gp.seed = strtoull(argv[++i], &e, 10); if (*e) goto bad; }
        else if (!strcmp(a, "--no-experts")) o->gp.use_experts = false;
        else if (!strcmp(a, "--uniform-gates")) o->gp.uniform_gates = true;
        else if (!strcmp(a, "--no-retrieval")) o->gp.use_retrieval = false;
        else if (!strcmp(a, "--retrieval-only")) o->gp.retrieval_only = true;
        else if (!strcmp(a, "--instruction") && !vqa) { if (!has) goto bad; o->gp.instruction = argv[++i]; }
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "rsmoe %s: unknown option '%s'\n", cmd, a); usage(stderr, vqa); return 2; }
        else if (o->n_files < (int)(sizeof o->files / sizeof o->files[0])) o->files[o->n_files++] = a;
        else { fprintf(stderr, "rsmoe %s: too many inputs\n", cmd); return 2; }
        continue;
    bad:
        fprintf(stderr, "rsmoe %s: missing or bad value for %s\n", cmd, a);
        return 2;
#undef NUM_I
#undef NUM_F
    }
    if (o->gp.style == RSMOE_STYLE_BRIEF && !vqa && !rep_set)
        o->gp.repetition_penalty = rsmoe_brief_default_params().repetition_penalty;
    if (!o->model) { fprintf(stderr, "rsmoe %s: -m MODEL is required\n", cmd); usage(stderr, vqa); return 2; }
    if (vqa && o->n_files != 2) { fprintf(stderr, "rsmoe vqa: give one IMAGE and one QUESTION\n"); usage(stderr, vqa); return 2; }
    if (!vqa && o->n_files < 1) { fprintf(stderr, "rsmoe caption: give at least one IMAGE\n"); usage(stderr, vqa); return 2; }
    if (o->gp.temperature > 0 && o->gp.beams != 1) { fprintf(stderr, "rsmoe %s: --temp needs --beams 1\n", cmd); return 2; }
    if (o->gp.min_len > o->gp.max_len) { fprintf(stderr, "rsmoe %s: --min-len above --max-len\n", cmd); return 2; }
    return -1;
}

static cJSON *result_json(const char *file, const char *question, const rsmoe_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "image", file);
    if (question) cJSON_AddStringToObject(j, "question", question);
    cJSON_AddStringToObject(j, question ? "answer" : "caption", r->text);
    cJSON_AddItemToObject(j, "aspects", rs_json_aspects(r));
    if (r->chosen >= 0) cJSON_AddStringToObject(j, "chosen", r->aspects[r->chosen].name);
    rs_json_add_retrieval(j, r);
    cJSON *t = cJSON_AddObjectToObject(j, "timings_ms");
    rs_json_add_stage_timings(t, &r->timings);
    cJSON_AddNumberToObject(t, "total", r->timings.total_ms);
    cJSON_AddNumberToObject(j, "prefill_tokens", r->timings.prefill_tokens);
    cJSON_AddNumberToObject(j, "decode_steps", r->timings.decode_steps);
    return j;
}

static int run(int argc, char **argv, bool vqa) {
    opts *o = malloc(sizeof *o);
    if (!o) return 1;
    int rc = parse(argc, argv, vqa, o);
    if (rc >= 0) { free(o); return rc; }
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(o->model, NULL, &st);
    if (!m) { rc = cli_fail(o->model, st); free(o); return rc; }
    rsmoe_context_params cp = rsmoe_context_default_params();
    cp.n_threads = o->threads;
    if (o->gp.beams > cp.max_beams) cp.max_beams = o->gp.beams;
    cp.max_views = o->gp.views;
    rsmoe_context *c = rsmoe_context_new(m, &cp, &st);
    if (!c) { rsmoe_model_free(m); free(o); return cli_fail("context", st); }
    cJSON *arr = o->json ? cJSON_CreateArray() : NULL;
    int n_img = vqa ? 1 : o->n_files, failed = 0;
    for (int i = 0; i < n_img; i++) {
        const char *file = o->files[i];
        rsmoe_image img;
        if ((st = rsmoe_image_load(file, &img))) { cli_fail(file, st); failed++; continue; }
        rsmoe_result r;
        st = vqa ? rsmoe_answer(c, &img, o->files[1], &o->gp, &r) : rsmoe_caption(c, &img, &o->gp, &r);
        rsmoe_image_free(&img);
        if (st) { cli_fail(file, st); failed++; continue; }
        if (arr) cJSON_AddItemToArray(arr, result_json(file, vqa ? o->files[1] : NULL, &r));
        else {
            if (n_img > 1) printf("%s\t", file);
            printf("%s\n", r.text);
            if (o->aspects)
                for (int k = 0; k < r.n_aspects; k++)
                    if (r.aspects[k].text)
                        printf("  [%s, gate %.3f] %s\n", r.aspects[k].name, r.aspects[k].gate, r.aspects[k].text);
        }
        fflush(stdout);
        rsmoe_result_free(&r);
    }
    if (arr) {
        char *s = cJSON_Print(n_img == 1 && cJSON_GetArraySize(arr) == 1 ? cJSON_GetArrayItem(arr, 0) : arr);
        if (s) { puts(s); free(s); }
        cJSON_Delete(arr);
    }
    rsmoe_context_free(c);
    rsmoe_model_free(m);
    free(o);
    return failed ? 1 : 0;
}

int cmd_caption(int argc, char **argv) { return run(argc, argv, false); }
int cmd_vqa(int argc, char **argv) { return run(argc, argv, true); }
