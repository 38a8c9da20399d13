/* hf_import.h - Hugging Face checkpoints (safetensors + config.json + tokenizer) to our GGUF:
 * the BLIP-2 / InstructBLIP vision model (EVA ViT-g) and Q-Former, and LLaMA-family LLMs
 * (Llama-3.2, Vicuna, TinyLlama). See docs/import_hf.md.
 *
 * --llm alone gives an LLM-only GGUF (general.architecture "llama", for `rsmoe generate`);
 * vision + qformer + llm give a full RS-MoE model whose experts (LoRA A random, B zero) and
 * router (random) are initialised as `rsmoe init` does. HF's rotate-half RoPE is kept as is
 * (rsmoe.llm.rope_neox = true) so q/k weights are copied unpermuted. */
#ifndef RSMOE_FORMATS_HF_IMPORT_H
#define RSMOE_FORMATS_HF_IMPORT_H
#include "core/core.h"
#include "data/tokenizer.h"

typedef struct {
    const char *vision_dir;   /* config.json + *.safetensors holding the vision model (or NULL) */
    const char *qformer_dir;  /* the Q-Former (+ query_tokens, language_projection), or NULL */
    const char *llm_dir;      /* the LLaMA-family LLM + tokenizer (required) */
    rs_dtype wtype;           /* matrices: f32, f16, bf16 or q8_0; vectors stay f32 */
    uint64_t seed;            /* experts, router and anything initialised */
    int n_experts;            /* 3 */
    int lora_rank;            /* 8 */
    float lora_alpha;         /* 16 */
    int n_soft;               /* 4 */
    int router_hidden;        /* 64 */
    bool lora_random_b;       /* tests: B random so that experts differ */
    int max_context;          /* 0: config's max_position_embeddings */
} rs_hf_params;
rs_hf_params rs_hf_default_params(void);

/* what the import did (for the CLI to print) */
typedef struct {
    int64_t n_imported;       /* tensors taken from the checkpoints */
    int64_t n_initialised;    /* tensors written with initial values */
    char notes[2048];         /* one line per thing initialised instead of imported */
} rs_hf_report;

/* Writes out_path. Errors name the directory, file and tensor (missing tensor, shape
 * mismatch, wrong architecture, truncated or malformed file). rep may be NULL. */
rsmoe_status rs_hf_import(const rs_hf_params *p, const char *out_path, rs_hf_report *rep);

/* The tokenizer of an HF LLM directory: tokenizer.model (SentencePiece protobuf) when present,
 * else tokenizer.json (byte-level BPE, GPT-2 / Llama-3 pre-tokenizer); BOS/EOS from
 * config.json / tokenizer_config.json. */
rsmoe_status rs_hf_tokenizer_load(const char *dir, rs_tokenizer **out);
/* A SentencePiece tokenizer.model (protobuf ModelProto: pieces, scores, types, special ids). */
rsmoe_status rs_hf_spm_load(const char *path, rs_tokenizer **out);
#endif
