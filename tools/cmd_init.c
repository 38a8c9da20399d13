/* cmd_init.c - `rsmoe init --preset NAME -o FILE`: a model with seeded random weights. */
#include "cli.h"
#include "core/core.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe init --preset NAME -o FILE.gguf [--type f32|f16|bf16|q8_0] [--seed N]\n"
               "                  [--tokenizer TOK.gguf] [--encoder CNN.gguf] [--lora-random]\n\n"
               "Creates an RS-MoE model with seeded random weights.\n"
               "  --preset NAME     %s\n"
               "  --type T          storage type of the weight matrices (default f32; vectors stay f32)\n"
               "  --seed N          random seed (default 42)\n"
               "  --tokenizer FILE  take the vocabulary from this GGUF (e.g. from `rsmoe tokenizer train`);\n"
               "                    default: byte-level BPE without merges (260 tokens)\n"
               "  --encoder FILE    a CNN image encoder GGUF (`rsmoe import tflite`) instead of the preset's ViT\n"
               "  --lora-random     random (not zero) LoRA B matrices, so that experts differ (tests)\n",
            rs_preset_names());
}

int rs_cli_parse_dtype(const char *s, rs_dtype *t);
int rs_cli_parse_dtype(const char *s, rs_dtype *t) {
    if (!strcmp(s, "f32")) *t = RS_F32;
    else if (!strcmp(s, "f16")) *t = RS_F16;
    else if (!strcmp(s, "bf16")) *t = RS_BF16;
    else if (!strcmp(s, "q8_0")) *t = RS_Q8_0;
    else return 0;
    return 1;
}

static void on_progress(float f, void *ud) {
    int *last = ud, pct = (int)(f * 100);
    if (pct > 100) pct = 100;
    if (pct >= *last + 10) { fprintf(stderr, "\r  %3d%%", pct); *last = pct; }
}

int cmd_init(int argc, char **argv) {
    const char *preset = NULL, *out = NULL;
    rs_init_params ip = rs_init_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--preset") && has) preset = argv[++i];
        else if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "--type") && has) {
            if (!rs_cli_parse_dtype(argv[++i], &ip.wtype)) { fprintf(stderr, "rsmoe init: unknown type '%s'\n", argv[i]); return 2; }
        } else if (!strcmp(a, "--seed") && has) {
            char *e;
            ip.seed = strtoull(argv[++i], &e, 10);
            if (*e) { fprintf(stderr, "rsmoe init: bad seed '%s'\n", argv[i]); return 2; }
        } else if (!strcmp(a, "--tokenizer") && has) ip.tokenizer = argv[++i];
        else if (!strcmp(a, "--lora-random")) ip.lora_random_b = true;
        else if (!strcmp(a, "--encoder") && has) ip.encoder = argv[++i];
        else if (!strcmp(a, "--experts") && has) {
            char *e;
            long k = strtol(argv[++i], &e, 10);
            if (*e || k < 1 || k > RS_MAX_EXPERTS) {
                fprintf(stderr, "rsmoe init: --experts takes 1..%d (got '%s')\n", RS_MAX_EXPERTS, argv[i]);
                return 2;
            }
            ip.n_experts = (int)k;
        }
        else { fprintf(stderr, "rsmoe init: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!preset || !out) { usage(stderr); return 2; }
    const rs_preset *p = rs_preset_find(preset);
    if (!p) { fprintf(stderr, "rsmoe init: unknown preset '%s' (have: %s)\n", preset, rs_preset_names()); return 2; }
    int last = -10;
    double t0 = rs_time_s();
    rsmoe_status st = rs_model_init_preset(p, &ip, out, on_progress, &last);
    if (last >= 0) fprintf(stderr, "\n");
    if (st) return cli_fail("init", st);
    fprintf(stderr, "wrote %s (preset %s, %s weights, seed %llu) in %.1f s\n", out, preset, rs_dtype_name(ip.wtype),
            (unsigned long long)ip.seed, rs_time_s() - t0);
    return 0;
}
