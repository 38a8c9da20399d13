/* cmd_import_hf.c - `rsmoe import hf [--vision DIR --qformer DIR] --llm DIR -o OUT.gguf`. */
#include "cli.h"
#include "core/core.h"
#include "formats/hf_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_usage =
    "usage: rsmoe import hf [--vision DIR --qformer DIR] --llm DIR -o OUT.gguf [--type f32|f16|bf16|q8_0]\n"
    "                       [--seed N] [--experts K] [--lora-rank R] [--lora-alpha A] [--soft-prompts M]\n"
    "                       [--router-hidden H] [--ctx N]\n";

int cmd_import_hf(int argc, char **argv) {
    rs_hf_params p = rs_hf_default_params();
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s\n"
                   "Imports Hugging Face checkpoints (*.safetensors, sharded via model.safetensors.index.json;\n"
                   "f32/f16/bf16) with their config.json:\n"
                   "  --llm DIR      a LLaMA-family LLM (Llama-3.2-1B/3B, Vicuna-7B, TinyLlama) + tokenizer.model\n"
                   "                 or tokenizer.json. Alone: an LLM-only GGUF for `rsmoe generate`.\n"
                   "  --vision DIR   the BLIP-2/InstructBLIP vision model (EVA ViT-g; vision_model.* tensors)\n"
                   "  --qformer DIR  the Q-Former (qformer.*, query_tokens, language_projection); a BERT\n"
                   "                 vocab.txt (or qformer_tokenizer/vocab.txt) there maps its word embeddings\n"
                   "                 onto the LLM vocabulary. The three may be the same directory.\n"
                   "With all three: a full RS-MoE model; the experts' LoRA (A random, B zero) and the router\n"
                   "are initialised as `rsmoe init` does (--experts 3 --lora-rank 8 --lora-alpha 16\n"
                   "--soft-prompts 4 --router-hidden 64 --seed 42). --type: matrices' type (vectors f32).\n"
                   "--ctx caps the stored context length. See docs/import_hf.md.\n",
                   k_usage);
            return 0;
        } else if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "--llm") && has) p.llm_dir = argv[++i];
        else if (!strcmp(a, "--vision") && has) p.vision_dir = argv[++i];
        else if (!strcmp(a, "--qformer") && has) p.qformer_dir = argv[++i];
        else if (!strcmp(a, "--seed") && has) p.seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--experts") && has) p.n_experts = atoi(argv[++i]);
        else if (!strcmp(a, "--lora-rank") && has) p.lora_rank = atoi(argv[++i]);
        else if (!strcmp(a, "--lora-alpha") && has) p.lora_alpha = (float)atof(argv[++i]);
        else if (!strcmp(a, "--soft-prompts") && has) p.n_soft = atoi(argv[++i]);
        else if (!strcmp(a, "--router-hidden") && has) p.router_hidden = atoi(argv[++i]);
        else if (!strcmp(a, "--ctx") && has) p.max_context = atoi(argv[++i]);
        else if (!strcmp(a, "--type") && has) {
            const char *t = argv[++i];
            if (!strcmp(t, "f32")) p.wtype = RS_F32;
            else if (!strcmp(t, "f16")) p.wtype = RS_F16;
            else if (!strcmp(t, "bf16")) p.wtype = RS_BF16;
            else if (!strcmp(t, "q8_0")) p.wtype = RS_Q8_0;
            else { fprintf(stderr, "rsmoe import hf: unknown --type '%s' (f32, f16, bf16, q8_0)\n", t); return 2; }
        } else { fprintf(stderr, "rsmoe import hf: unexpected argument '%s'\n%s", a, k_usage); return 2; }
    }
    if (!p.llm_dir || !out) { fprintf(stderr, "%s", k_usage); return 2; }
    rs_hf_report rep;
    rsmoe_status st = rs_hf_import(&p, out, &rep);
    if (st) return cli_fail("import hf", st);
    fprintf(stderr, "%s%s: %lld tensors imported, %lld initialised (%s)\n", rep.notes, out, (long long)rep.n_imported,
            (long long)rep.n_initialised, p.vision_dir ? "RS-MoE model" : "LLM-only");
    return 0;
}
