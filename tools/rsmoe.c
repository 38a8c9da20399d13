/* rsmoe.c - the command-line tool: one sub-command per file under tools/. */
#include "cli.h"
#include "core/core.h"

#include <stdio.h>
#include <string.h>

int cmd_aspects(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_average(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_vqa(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_gguf(int argc, char **argv);
int cmd_graft(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_questions(int argc, char **argv);
int cmd_selfcheck(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);

/* sub-commands: name, function, one-line help. Keep sorted by name. */
static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *help;
} g_cmds[] = {
    {"aspects", cmd_aspects, "split captions into theme / objects / relationships clauses (docs/aspects.md)"},
    {"average", cmd_average, "average the f32 weights of several checkpoints of one training run"},
    {"bench", cmd_bench, "benchmarks that print figures: `bench kernels`, `bench infer -m MODEL`, `bench cnn -m ENC`"},
    {"caption", cmd_caption, "describe images (theme, objects, relationships)"},
    {"classify", cmd_classify, "classify images with a CNN image encoder (imported MobileNet check; --bench times it)"},
    {"eval", cmd_eval, "caption/answer a data set split, score it (BLEU, METEOR, ROUGE-L, CIDEr-D; VQA accuracy), resumable"},
    {"features", cmd_features, "cache the frozen image encoder's visual tokens for a data set"},
    {"generate", cmd_generate, "generate text with an LLM-only model (llama2.c semantics)"},
    {"gguf", cmd_gguf, "validate a GGUF file and dump its metadata and tensor list"},
    {"graft", cmd_graft, "move trained tensors into a model of another layout (e.g. another number of experts)"},
    {"import", cmd_import, "convert checkpoints to GGUF: `import hf` (safetensors), `import tflite` (MobileNet), `import llama2c`"},
    {"index", cmd_index, "add a retrieval index of training images and captions to a model (brief-caption selection)"},
    {"info", cmd_info, "print a model's configuration, parameter counts and memory"},
    {"init", cmd_init, "create a model with seeded random weights from a preset"},
    {"quantize", cmd_quantize, "rewrite a model's weight matrices as f32, f16, bf16 or q8_0"},
    {"questions", cmd_questions, "derive VQA (scene, presence, count) from captions + scene labels, RSVQA layout"},
    {"score", cmd_score, "score captions with BLEU-1..4, METEOR (no paraphrase), ROUGE-L, CIDEr-D (pycocoevalcap rules)"},
    {"selfcheck", cmd_selfcheck, "check this build: CPU features, kernels against their references"},
    {"serve", cmd_serve, "HTTP JSON API (caption, vqa) and a web page for analysts (docs/serve.md)"},
    {"tokenizer", cmd_tokenizer, "train a BPE vocabulary on captions; encode/decode with a GGUF vocabulary"},
    {"train", cmd_train, "train a stage: lm (the LLM from scratch), 1 (Q-Former + LoRA), 2 (experts + router)"},
    {"vqa", cmd_vqa, "answer a question about an image"},
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
