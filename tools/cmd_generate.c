/* cmd_generate.c - `rsmoe generate`: plain text generation with an LLM-only GGUF
 * (llama2.c semantics: -n counts positions including the prompt; prints the prompt followed
 * by the generated text). */
#include "cli.h"
#include "core/core.h"
#include "data/tokenizer.h"
#include "formats/gguf.h"
#include "model/llm_load.h"
#include "model/sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: rsmoe generate -m MODEL.gguf [-p PROMPT] [-n STEPS] [--temp T] [--top-p P]\n"
            "                      [--seed S] [--threads N]\n\n"
            "Generates text with an LLM-only model (e.g. one made by `rsmoe import llama2c`).\n"
            "  -m FILE      the model (GGUF with llama.* keys and a tokenizer)\n"
            "  -p TEXT      prompt (default: empty)\n"
            "  -n N         positions in all, prompt included, as llama2.c counts (default 256;\n"
            "               at most the model's context length)\n"
            "  --temp T     temperature, 0 = greedy (default 1.0)\n"
            "  --top-p P    nucleus sampling mass (default 0.9)\n"
            "  --seed S     random seed (default 42)\n"
            "  --threads N  threads (default: all cores)\n"
            "  --ids        also print the token ids to stderr\n");
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = "";
    int steps = 256, threads = rs_default_threads(), print_ids = 0;
    float temp = 1.0f, top_p = 0.9f;
    unsigned long long seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && has) model = argv[++i];
        else if (!strcmp(a, "-p") && has) prompt = argv[++i];
        else if (!strcmp(a, "-n") && has) { steps = (int)strtol(argv[++i], &end, 10); if (*end || steps < 1) goto bad; }
        else if (!strcmp(a, "--temp") && has) { temp = strtof(argv[++i], &end); if (*end || temp < 0) goto bad; }
        else if (!strcmp(a, "--top-p") && has) { top_p = strtof(argv[++i], &end); if (*end || !(top_p > 0)) goto bad; }
        else if (!strcmp(a, "--seed") && has) { seed = strtoull(argv[++i], &end, 10); if (*end) goto bad; }
        else if (!strcmp(a, "--threads") && has) { threads = (int)strtol(argv[++i], &end, 10); if (*end || threads < 1) goto bad; }
        else if (!strcmp(a, "--ids")) print_ids = 1;
        else { fprintf(stderr, "rsmoe generate: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
        continue;
    bad:
        fprintf(stderr, "rsmoe generate: bad value '%s' for %s\n", argv[i], a);
        return 2;
    }
    if (!model) { fprintf(stderr, "rsmoe generate: -m MODEL is required\n"); usage(stderr); return 2; }

    int rc = 1;
    rs_gguf *g = NULL;
    rs_tokenizer *tok = NULL;
    rs_llm_weights w = {0};
    rs_llm_state *s = NULL;
    rs_pool *pool = NULL;
    int32_t *ids = NULL;
    float *emb = NULL, *logits = NULL, *sp = NULL;
    int *si = NULL;
    rsmoe_status st;
    if ((st = rs_gguf_open(model, &g))) { rc = cli_fail(model, st); goto done; }
    const char *arch = rs_gguf_get_str_or(g, "general.architecture", "");
    if (strcmp(arch, "llama")) {
        fprintf(stderr, "rsmoe generate: %s: architecture '%s' is not an LLM-only model (need 'llama')\n", model, arch);
        goto done;
    }
    if ((st = rs_llm_bind_gguf(g, "llama", NULL, &w))) { rc = cli_fail(model, st); goto done; }
    if ((st = rs_tokenizer_load_gguf(g, &tok))) { rc = cli_fail(model, st); goto done; }
    if (steps > w.c.max_seq) steps = w.c.max_seq;
    int cap = (int)strlen(prompt) + 8;
    ids = malloc(sizeof(int32_t) * (size_t)(cap > steps ? cap : steps));
    int n_prompt = 0;
    if (!ids) { fprintf(stderr, "rsmoe generate: out of memory\n"); goto done; }
    if ((st = rs_tokenizer_encode(tok, prompt, true, ids, cap, &n_prompt))) { rc = cli_fail("encoding the prompt", st); goto done; }
    if (n_prompt < 1) { ids[0] = rs_tokenizer_bos(tok) >= 0 ? rs_tokenizer_bos(tok) : 0; n_prompt = 1; }
    if (n_prompt > steps) {
        fprintf(stderr, "rsmoe generate: the prompt has %d tokens, more than -n %d\n", n_prompt, steps);
        rc = 2;
        goto done;
    }
    pool = rs_pool_new(threads);
    if ((st = rs_llm_state_new(&w.c, steps, 1, 1, 1, 0, &s))) { rc = cli_fail("state", st); goto done; }
    emb = malloc(sizeof(float) * (size_t)w.c.dim);
    logits = malloc(sizeof(float) * (size_t)w.c.vocab);
    sp = malloc(sizeof(float) * (size_t)w.c.vocab);
    si = malloc(sizeof(int) * (size_t)w.c.vocab);
    if (!pool || !emb || !logits || !sp || !si) { fprintf(stderr, "rsmoe generate: out of memory\n"); goto done; }
    rs_rng rng;
    rs_rng_seed(&rng, seed);
    int token = ids[0], slot = 0, zero = 0;
    double t0 = rs_time_s(), t_first = 0;
    int n_gen = 0;
    char piece[256];
    for (int pos = 0; pos < steps; pos++) {
        if ((st = rs_llm_embed(&w, &token, 1, emb))) { rc = cli_fail("embedding", st); goto done; }
        rs_llm_batch b = {.n_rows = 1, .emb = emb, .slot = &slot, .pos = &pos, .n_logit_rows = 1,
                          .logit_rows = &zero, .logits = logits};
        if ((st = rs_llm_forward(&w, s, &b, pool))) { rc = cli_fail("forward", st); goto done; }
        int next;
        if (pos + 1 < n_prompt) next = ids[pos + 1];
        else { next = rs_sample(logits, w.c.vocab, temp, top_p, &rng, sp, si); n_gen++; }
        if (pos == 0) t_first = rs_time_s();
        if (pos + 1 < steps) ids[pos + 1] = next;
        if (next == rs_tokenizer_bos(tok) && pos + 1 >= n_prompt) break; /* llama2.c stops on BOS */
        int len = rs_tokenizer_piece(tok, token, next, piece, sizeof piece);
        if (len > 0) fwrite(piece, 1, (size_t)(len < (int)sizeof piece ? len : (int)sizeof piece), stdout);
        fflush(stdout);
        if (print_ids) fprintf(stderr, "%d ", next);
        token = next;
    }
    printf("\n");
    double t1 = rs_time_s();
    if (n_gen > 0)
        fprintf(stderr, "achieved tok/s: %.1f (%d tokens, %d threads)\n",
                (t1 - t_first > 0 ? (double)(n_gen) / (t1 - t_first) : 0), n_gen, rs_pool_size(pool));
    (void)t0;
    rc = 0;
done:
    free(ids); free(emb); free(logits); free(sp); free(si);
    rs_llm_state_free(s);
    rs_pool_free(pool);
    rs_tokenizer_free(tok);
    rs_llm_unbind(&w);
    rs_gguf_close(g);
    return rc;
}
