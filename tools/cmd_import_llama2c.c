/* cmd_import_llama2c.c - `rsmoe import llama2c MODEL.bin TOKENIZER.bin -o OUT.gguf`. */
#include "cli.h"
#include "core/core.h"
#include "formats/llama2c.h"

#include <stdio.h>
#include <string.h>

int cmd_import_llama2c(int argc, char **argv) {
    const char *in[2] = {NULL, NULL}, *out = NULL;
    rs_dtype type = RS_F32;
    int n_in = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rsmoe import llama2c MODEL.bin TOKENIZER.bin -o OUT.gguf [--type f32|f16|bf16|q8_0]\n\n"
                   "Converts a llama2.c checkpoint (shared or unshared classifier) and its tokenizer\n"
                   "into an LLM-only GGUF (llama.cpp names) that `rsmoe generate` runs.\n");
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            const char *t = argv[++i];
            if (!strcmp(t, "f32")) type = RS_F32;
            else if (!strcmp(t, "f16")) type = RS_F16;
            else if (!strcmp(t, "bf16")) type = RS_BF16;
            else if (!strcmp(t, "q8_0")) type = RS_Q8_0;
            else { fprintf(stderr, "rsmoe import llama2c: unknown --type '%s'\n", t); return 2; }
        } else if (argv[i][0] != '-' && n_in < 2) in[n_in++] = argv[i];
        else { fprintf(stderr, "rsmoe import llama2c: unexpected argument '%s'\n", argv[i]); return 2; }
    }
    if (n_in != 2 || !out) {
        fprintf(stderr, "usage: rsmoe import llama2c MODEL.bin TOKENIZER.bin -o OUT.gguf [--type f32|f16|bf16|q8_0]\n");
        return 2;
    }
    rsmoe_status st = rs_llama2c_import(in[0], in[1], out, type);
    if (st) return cli_fail("import llama2c", st);
    fprintf(stderr, "wrote %s\n", out);
    return 0;
}
