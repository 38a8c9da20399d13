/* rsmoe.c - the command-line tool: one sub-command per file under tools/. */
#include "cli.h"
#include "core/core.h"

#include <stdio.h>
#include <string.h>

int cmd_bench(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_gguf(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_selfcheck(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);

/* sub-commands: name, function, one-line help. Keep sorted by name. */
static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *help;
} g_cmds[] = {
    {"bench", cmd_bench, "benchmarks: `bench kernels` (FMA peak, bandwidth, sgemm, quantised products)"},
    {"classify", cmd_classify, "classify images with a CNN image encoder (imported MobileNet check; --bench times it)"},
    {"gguf", cmd_gguf, "validate a GGUF file and dump its metadata and tensor list"},
    {"import", cmd_import, "convert an external checkpoint to GGUF: `import tflite` (MobileNet CNN encoder)"},
    {"score", cmd_score, "score captions with BLEU-1..4, METEOR (no paraphrase), ROUGE-L, CIDEr-D (pycocoevalcap rules)"},
    {"selfcheck", cmd_selfcheck, "check this build: CPU features, kernels against their references"},
    {"tokenizer", cmd_tokenizer, "train a BPE vocabulary on captions; encode/decode with a GGUF vocabulary"},
};

int cli_fail(const char *what, rsmoe_status st) {
    const char *msg = rsmoe_last_error();
    fprintf(stderr, "rsmoe: %s: %s\n", what, msg && *msg ? msg : rsmoe_status_str(st));
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe COMMAND [options]   (rsmoe COMMAND --help for its options)\n\n"
               "RS-MoE: remote-sensing image captioning and VQA with a mixture of expert LLMs.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        fprintf(f, "  %-12s %s\n", g_cmds[i].name, g_cmds[i].help);
    fprintf(f, "  %-12s %s\n", "version", "print the version and build information");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("%s\n", rsmoe_system_info());
        return 0;
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (!strcmp(argv[1], g_cmds[i].name)) return g_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "rsmoe: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
