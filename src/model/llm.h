/* llm.h - the LLM Block: a LLaMA-family decoder (RMSNorm, RoPE, SwiGLU, grouped-query
 * attention, tied or untied output), a KV cache of several sequence slots, and LoRA
 * adapters selectable per row so that several experts sharing the base weights run as ONE
 * batch (each base weight read once per step for all of them).
 *
 * Tensor names follow llama.cpp's LLaMA naming (see docs/model.md). Weights are rs_tensor
 * views (f32, f16, bf16 or q8_0) owned by whoever loaded them; this module never copies them. */
#ifndef RSMOE_MODEL_LLM_H
#define RSMOE_MODEL_LLM_H

#include "core/core.h"
#include "kernels/ops.h"

typedef struct {
    int vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn, max_seq;
    float rms_eps;
    rs_rope_cfg rope;
    bool tied;  /* output projection = token embedding */
} rs_llm_config;

/* LoRA target matrices of a decoder layer */
typedef enum { RS_LT_Q, RS_LT_K, RS_LT_V, RS_LT_O, RS_LT_GATE, RS_LT_UP, RS_LT_DOWN, RS_LT_COUNT } rs_lora_target;
extern const char *const rs_lora_target_names[RS_LT_COUNT]; /* "attn_q", ..., "ffn_down" */

typedef struct {
    const rs_tensor *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w_gate, *w_up, *w_down;
} rs_llm_layer;

typedef struct {
    rs_llm_config c;
    const rs_tensor *tok_embd, *out_norm, *output; /* output == tok_embd when tied */
    rs_llm_layer *layers;                           /* [n_layers] */
} rs_llm_weights;

/* One LoRA adapter over the decoder: per layer and target an A [r, in] and B [out, r]
 * (f32), NULL where the target is not adapted. scale = alpha / r. Bt: optionally B
 * transposed ([r, out]; NULL: none), which decoding reads faster (kernels/ops.h
 * rs_lora_rows_fwd); same values. */
typedef struct {
    int rank;
    float scale;
    const float *A[/*layer*/ 64][RS_LT_COUNT];
    const float *B[64][RS_LT_COUNT];
    const float *Bt[64][RS_LT_COUNT];
} rs_lora_set;
#define RS_LLM_MAX_LAYERS 64

/* Checks shapes and types of the weights against the config (records an error). */
rsmoe_status rs_llm_check(const rs_llm_weights *w);

/* Run state: KV cache for n_slots sequences of up to max_seq positions, scratch for up to
 * max_rows rows per forward call and up to max_logits logit rows. */
typedef struct rs_llm_state rs_llm_state;
/* n_ctx: positions per slot (0 or more than the model's context: the model's context). */
rsmoe_status rs_llm_state_new(const rs_llm_config *c, int n_ctx, int n_slots, int max_rows, int max_logits,
                              int max_lora_rank, rs_llm_state **out);
int rs_llm_state_max_seq(const rs_llm_state *s);   /* positions per slot */
void rs_llm_state_free(rs_llm_state *s);
size_t rs_llm_state_bytes(const rs_llm_state *s);
/* copy slot src's cache positions [0, n) into slot dst (beam search reordering) */
void rs_llm_state_copy_slot(rs_llm_state *s, int dst, int src, int n);

/* One forward call over R rows. Row i is position pos[i] of slot slot[i]; its input is the
 * embedding emb[i*dim ..] (see rs_llm_embed), its adapter adapters[adapter[i]] (adapter[i]
 * < 0 or adapters NULL: base weights only). Rows of one slot must be consecutive with
 * consecutive positions, and every earlier position of that slot must already be in its
 * cache. Logits [n_logit_rows, vocab] are computed for the rows listed in logit_rows.
 * Returns a status (bad slot/position/row counts). */
typedef struct {
    int n_rows;
    const float *emb;
    const int *slot, *pos, *adapter;
    const rs_lora_set *const *adapters;
    int n_logit_rows;
    const int *logit_rows;
    float *logits;
    float *hidden_out; /* optional [n_logit_rows, dim]: final-normed hidden of those rows */
} rs_llm_batch;
rsmoe_status rs_llm_forward(const rs_llm_weights *w, rs_llm_state *s, const rs_llm_batch *b,
                            rs_pool *pool);

/* token embeddings of ids into emb [n, dim] (any weight dtype). */
rsmoe_status rs_llm_embed(const rs_llm_weights *w, const int32_t *ids, int n, float *emb);

/* bytes of weights one decode step reads (all matrices + norms, the output once) */
size_t rs_llm_weight_bytes(const rs_llm_weights *w);
/* input and output widths of each LoRA target (rs_lora_target order): A is [r, in], B [out, r] */
void rs_lora_target_dims(const rs_llm_config *c, int64_t in[RS_LT_COUNT], int64_t out[RS_LT_COUNT]);
/* Bytes of one adapter's matrices that a decode step reads: A and B (or its transpose) of every
 * adapted layer and target, f32. 0 for NULL. */
size_t rs_lora_set_bytes(const rs_lora_set *ls, const rs_llm_config *c);
#endif
