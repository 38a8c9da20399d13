/* model.h - the whole RS-MoE model (immutable after load) and its presets.
 *
 * Image Encoder (ViT, or a CNN imported from TFLite) -> Q-Former (instruction-aware) ->
 * visual prefix -> LLM Block (stage I) or the MoE Block: K experts = the LLM base weights +
 * each expert's LoRA adapter, with an Instruction Router that gives each expert a gate weight
 * and M soft-prompt vectors computed from the visual prefix. See docs/model.md. */
#ifndef RSMOE_MODEL_MODEL_H
#define RSMOE_MODEL_MODEL_H
#include "core/core.h"
#include "data/image.h"
#include "data/tokenizer.h"
#include "formats/gguf.h"
#include "model/llm.h"
#include "model/qformer.h"
#include "model/retrieval.h"
#include "model/vit.h"

#define RS_MAX_EXPERTS 8
#define RS_EXPERT_NAME_MAX 32
#define RS_EXPERT_PROMPT_MAX 256

typedef enum { RS_VISION_VIT = 0, RS_VISION_CNN = 1 } rs_vision_kind;

typedef struct {
    int n_experts;              /* 0: a stage-I model (LLM Block only) */
    int lora_rank;
    float lora_alpha;
    unsigned lora_targets;      /* bit t set: rs_lora_target t adapted */
    int n_soft;                 /* soft-prompt vectors per expert */
    int router_hidden;
    char names[RS_MAX_EXPERTS][RS_EXPERT_NAME_MAX];
    char prompts[RS_MAX_EXPERTS][RS_EXPERT_PROMPT_MAX];
} rs_moe_config;

typedef struct rs_cnn_encoder rs_cnn_encoder;

typedef struct {
    rs_gguf *g;
    char path[1024];
    rs_vision_kind vision_kind;
    rs_vit vit;
    rs_cnn_encoder *cnn;
    int enc_tokens, enc_width;  /* visual tokens per image at the native size */
    rs_qformer qf;
    rs_llm_weights llm;
    rs_tokenizer *tok;
    rs_moe_config moe;
    rs_lora_set experts[RS_MAX_EXPERTS];
    float *lora_bt[RS_MAX_EXPERTS];            /* owned: the experts' B matrices transposed */
    const rs_tensor *gate_w, *gate_b, *soft_up_w, *soft_up_b, *soft_down_w, *soft_down_b;
    bool has_retrieval;                        /* a retrieval index (model/retrieval.h) */
    rs_retrieval retr;
    char instr_caption[RS_EXPERT_PROMPT_MAX];  /* the global description instruction */
    char vqa_suffix[RS_EXPERT_PROMPT_MAX];     /* appended to questions */
} rs_model;

rsmoe_status rs_model_load(const char *path, rs_model **out);
/* repack: every q8_0 matrix with rows a multiple of 16 is also repacked for the AVX-512
 * VNNI kernel (kernels/q8x16.h) when this CPU has it, and its mmap'd pages released (the
 * default of rs_model_load); false keeps rs_matmul_w's row-wise q8_0 kernels.
 * amx_f32: where the CPU has AMX-BF16 (rs_bf16x3_native), the f32 matrices of the ViT's blocks
 * are also packed as bf16 pairs (kernels/bf16x3.h: three bf16 products per term, about 1e-5 S
 * instead of f32's K u S) and their mmap'd pages given back (the default of rs_model_load);
 * false keeps every f32 product exact f32 */
rsmoe_status rs_model_load_ex(const char *path, bool repack, bool amx_f32, rs_model **out);
void rs_model_free(rs_model *m);
/* the internal model behind a public handle (benchmarks); NULL for NULL */
const rs_model *rs_model_of(const rsmoe_model *m);

/* A question as the model reads it, the same in inference and training: its text without
 * trailing spaces / newlines (the Q-Former's instruction; *text_len its length, 0 for an empty
 * question) and the LLM prompt "question vqa_suffix" written to prompt (cap bytes). */
void rs_model_question(const rs_model *m, const char *question, int *text_len, char *prompt, size_t cap);

/* ---------------------------------------------------------------- image encoder */
/* Scratch of one image-encoder run (ViT or CNN), sized once. */
typedef struct {
    float *chw, *vit;
    rs_arena cnn;
    size_t bytes;
} rs_enc_scratch;
rsmoe_status rs_enc_scratch_init(const rs_model *m, int nthreads, rs_enc_scratch *s);
void rs_enc_scratch_free(rs_enc_scratch *s);
/* Visual tokens [enc_tokens, enc_width] of an RGB image of any size (resized with PIL's
 * bicubic filter to the encoder's input, normalised as the encoder expects). */
rsmoe_status rs_model_encode(const rs_model *m, const rs_image *img, float *tokens, rs_enc_scratch *s, rs_pool *pool);
/* FNV-1a 64 over the encoder's kind, shapes and weight bytes: identifies cached features */
uint64_t rs_model_encoder_hash(const rs_model *m);

/* Router: gates [K] (softmax) and soft prompts [K, n_soft, dim] from the pooled instruction
 * embedding instr [dim] and the visual prefix [n_query, dim]. scratch: dim + hidden floats. */
void rs_router_forward(const rs_model *m, const float *instr_pool, const float *prefix, int n_prefix,
                       float *gates, float *soft, float *scratch, rs_pool *pool);

/* ---------------------------------------------------------------- presets */
typedef struct {
    const char *name;
    rs_vit_config vit;
    rs_qformer_config qf;   /* vocab 0: the tokenizer's size */
    rs_llm_config llm;      /* vocab 0: the tokenizer's size */
    rs_moe_config moe;
} rs_preset;
const rs_preset *rs_preset_find(const char *name);   /* NULL if unknown */
const char *rs_preset_names(void);                    /* "test, tiny, paper-1b, paper-7b" */

typedef struct {
    rs_dtype wtype;          /* matrices; vectors stay f32 */
    uint64_t seed;
    float init_std;          /* 0.02 */
    bool lora_random_b;      /* B random instead of zero (tests: make adapters matter) */
    const char *tokenizer;   /* GGUF holding a tokenizer, or NULL: byte-level BPE, no merges */
    const char *encoder;     /* GGUF of a CNN image encoder (`rsmoe import tflite`) replacing the
                              * preset's ViT, or NULL */
    int n_experts;           /* 0: the preset's; else 1..RS_MAX_EXPERTS experts (ablations). The
                              * experts' tensors are drawn last, so the other weights do not
                              * depend on it */
} rs_init_params;
rs_init_params rs_init_default_params(void);
/* Writes a model with seeded random weights; progress (may be NULL) gets fractions 0..1. */
rsmoe_status rs_model_init_preset(const rs_preset *p, const rs_init_params *ip, const char *out_path,
                                  void (*progress)(float, void *), void *ud);

/* parameter counts per part (elements) */
/* retrieval: the retrieval index's values (keys, probe), not parameters of the network */
typedef struct { int64_t vision, qformer, llm, experts, router, retrieval; } rs_param_counts;
rs_param_counts rs_model_param_counts(const rs_model *m);
#endif
