/* cmd_import.c - `rsmoe import KIND ...`: convert an external checkpoint to GGUF.
 * A dispatcher: one entry per kind in g_kinds (add yours with a one-line entry). */
#include "cli.h"
#include "core/core.h"
#include "formats/tflite.h"
#include "model/encoder_cnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- tflite */

/* reads a label file, one label per line (trailing \r and \n stripped) */
static int read_labels(const char *path, char ***out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char **v = NULL, line[4096];
    int n = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            char **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[n] = strdup(line);
        if (!v[n]) break;
        n++;
    }
    fclose(f);
    *out = v;
    return n;
}

static int import_tflite(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *labels = NULL;
    rs_dtype wtype = RS_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rsmoe import tflite MODEL.tflite -o OUT.gguf [--labels LABELS.txt] [--type f32|f16|bf16]\n\n"
                   "Converts a TensorFlow Lite CNN (uint8/int8 quantised or float; MobileNet v1/v2: CONV_2D,\n"
                   "DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D, FULLY_CONNECTED, RESHAPE, SQUEEZE, SOFTMAX) into\n"
                   "a float CNN image encoder GGUF: weights dequantised to f32, the op list as metadata\n"
                   "(docs/encoder_cnn.md). --labels stores one class name per line (e.g.\n"
                   "imagenet_labels.txt) for `rsmoe classify`. --type stores the weights as f16 (half the\n"
                   "size, logits within ~0.3 %%) or bf16 (within ~5 %%); they are expanded to f32 at load.\n");
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--labels") && i + 1 < argc) labels = argv[++i];
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            const char *t = argv[++i];
            if (!strcmp(t, "f32")) wtype = RS_F32;
            else if (!strcmp(t, "f16")) wtype = RS_F16;
            else if (!strcmp(t, "bf16")) wtype = RS_BF16;
            else { fprintf(stderr, "rsmoe import tflite: unknown --type '%s' (f32, f16, bf16)\n", t); return 2; }
        } else if (argv[i][0] != '-' && !in) in = argv[i];
        else { fprintf(stderr, "rsmoe import tflite: unexpected argument '%s'\n", argv[i]); return 2; }
    }
    if (!in || !out) {
        fprintf(stderr, "usage: rsmoe import tflite MODEL.tflite -o OUT.gguf [--labels LABELS.txt]\n");
        return 2;
    }
    rs_tflite *m = NULL;
    rsmoe_status st = rs_tflite_load(in, &m);
    if (st) return cli_fail("import tflite", st);
    rs_cnn_encoder *e = NULL;
    st = rs_cnn_from_tflite(m, &e);
    rs_tflite_free(m);
    if (st) return cli_fail("import tflite", st);
    char **lab = NULL;
    int nlab = 0, rc = 0;
    if (labels) {
        nlab = read_labels(labels, &lab);
        if (nlab < 0) {
            fprintf(stderr, "rsmoe import tflite: cannot read labels '%s'\n", labels);
            rc = 1;
            goto done;
        }
        if (nlab != e->nclasses) {
            fprintf(stderr, "rsmoe import tflite: %s has %d labels but the model has %d classes\n", labels, nlab,
                    e->nclasses);
            rc = 1;
            goto done;
        }
    }
    st = rs_cnn_save_gguf_typed(e, out, wtype, (const char *const *)lab, nlab);
    if (st) { rc = cli_fail("import tflite", st); goto done; }
    int nconv = 0;
    for (int i = 0; i < e->nops; i++) nconv += e->ops[i].kind == RS_CNN_CONV || e->ops[i].kind == RS_CNN_DWCONV;
    printf("%s -> %s (%s): %d ops (%d convolutions), input %dx%dx%d (pixel -> %.6g * (p - %g)), %d tokens x %d, "
           "%d classes%s\n", in, out, rs_dtype_name(wtype), e->nops, nconv, e->in_h, e->in_w, e->in_c, e->in_scale, e->in_zero,
           e->ntokens, e->token_dim, e->nclasses, nlab ? ", labels stored" : "");
done:
    for (int i = 0; i < nlab; i++) free(lab[i]);
    free(lab);
    rs_cnn_free(e);
    return rc;
}

/* ---------------------------------------------------------------- dispatcher */
int cmd_import_llama2c(int argc, char **argv); /* tools/cmd_import_llama2c.c */
int cmd_import_hf(int argc, char **argv);      /* tools/cmd_import_hf.c */

static const struct {
    const char *kind;
    cli_cmd_fn fn;
    const char *help;
} g_kinds[] = {
    {"hf", cmd_import_hf, "Hugging Face safetensors: BLIP-2/InstructBLIP vision + Q-Former, LLaMA LLM -> GGUF"},
    {"llama2c", cmd_import_llama2c, "llama2.c checkpoint + tokenizer -> LLM-only GGUF (`rsmoe generate`)"},
    {"tflite", import_tflite, "TensorFlow Lite CNN (MobileNet) -> float CNN image encoder GGUF"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe import KIND ...   (rsmoe import KIND --help)\n\nkinds:\n");
    for (size_t i = 0; i < sizeof g_kinds / sizeof g_kinds[0]; i++)
        fprintf(f, "  %-10s %s\n", g_kinds[i].kind, g_kinds[i].help);
}

int cmd_import(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(stdout); return 0; }
    for (size_t i = 0; i < sizeof g_kinds / sizeof g_kinds[0]; i++)
        if (!strcmp(argv[1], g_kinds[i].kind)) return g_kinds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "rsmoe import: unknown kind '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
