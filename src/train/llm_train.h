/* llm_train.h - training forward and backward of the LLM Block (LLaMA decoder: RMSNorm,
 * RoPE, SwiGLU, grouped-query attention, tied or untied output) in the style of llm.c's
 * train_gpt2.c: an explicit forward that keeps every activation the backward needs in
 * buffers sized once from the configuration, an explicit backward, no allocation per step.
 *
 * A batch is B sequences of T positions (padded). Sequence b has valid length len[b]
 * (positions 0..len[b]-1); its INPUT is a block of embeddings emb[b, t, :] (the caller puts
 * the visual prefix, soft prompts and token embeddings there) and its targets[b, t] are the
 * next-token ids (RS_IGNORE_INDEX = not scored: prefix, prompt, padding). Attention is causal
 * and sees only the valid positions of the same sequence; RoPE positions are 0..T-1.
 * Padded positions (t >= len[b]) take no part at all: their targets are ignored whatever
 * they hold, their input rows are not read (their d_emb rows are written as zeros), and
 * the valid rows are packed internally so that compute and attention memory follow Σ len[b]
 * (with right padding and causal attention, padding never reaches a valid position).
 * The loss is the mean cross-entropy over all non-ignored targets of the batch.
 *
 * LoRA: sequence b uses adapter set adapters[adapter[b]] (adapter[b] < 0: base weights only),
 * so several stage-II experts train in one batch. An adapter covers any subset of the seven
 * targets (A [r, in], B [out, r] f32, NULL where not adapted), y += scale·(x·Aᵀ)·Bᵀ with the
 * set's scale (= alpha/r).
 *
 * Backward (after the forward of the same batch, weights and adapters unchanged):
 *  - LoRA gradients dA, dB of each adapter given a gradient set (base weights frozen);
 *  - full-weight mode (rs_llm_bwd_out.weights != NULL): the gradients of every matrix, norm
 *    and of the token embedding (through the tied output only: the caller scatters d_emb
 *    rows of token positions into it with rs_embedding_bwd when the table is trained);
 *  - d_emb [B, T, D], the gradient of the input embeddings (for the Q-Former, projection,
 *    soft prompts, token table).
 * Parameter gradients ACCUMULATE (+=), d_emb is WRITTEN (ops.h conventions), so gradient
 * accumulation over micro-batches is: zero, then backward with loss_scale = 1/k k times.
 *
 * Weights must be f32 (other dtypes are refused: quantised bases are for inference).
 *
 * Activation memory (floats), sized once for full-length batches: B = max_B, T = max_T,
 * N = B·T, qd = n_heads·head_dim, kvd = n_kv_heads·head_dim, F = ffn, V = vocab,
 * r = max LoRA rank, H = n_heads, L = n_layers:
 *   saved:   L·[N·(4D + 2qd + 2kvd + 2F + 2 + 7r) + B·H·T²] + N·(2D + 1 + V)
 *   scratch: N·(3D + 2qd + 2kvd + 3F + r) + T²
 * plus 16·N + 20·B + 4 bytes of indices (and up to 64 bytes of alignment per buffer);
 * rs_llm_train_bytes() gives the exact figure. The T² term (attention probabilities) and N·V
 * (logits) dominate for long sequences and large vocabularies. Logits are computed only for
 * the scored rows (target not ignored), so the output layer and the cross-entropy cost
 * n_scored·V, not N·V; the buffer is sized for N scored rows. */
#ifndef RSMOE_TRAIN_LLM_TRAIN_H
#define RSMOE_TRAIN_LLM_TRAIN_H

#include "core/core.h"
#include "kernels/ops.h"
#include "model/llm.h"

/* ------------------------------------------------------------ gradient sets */
/* Gradients of one LoRA adapter, laid out as rs_lora_set (NULL: that target not trained). */
typedef struct {
    float *dA[RS_LLM_MAX_LAYERS][RS_LT_COUNT];
    float *dB[RS_LLM_MAX_LAYERS][RS_LT_COUNT];
} rs_lora_grad;

/* A trainable LoRA adapter: parameters and gradients in two flat blocks (n floats each,
 * per layer then per target: A then B), so AdamW and clipping run over one buffer each.
 * set/grad are views into them, usable by rs_llm_forward (inference) as well. */
typedef struct {
    int n_layers, rank;
    unsigned targets;   /* bit t set: target t adapted */
    float *params, *grads;
    int64_t n;
    int64_t in[RS_LT_COUNT], out[RS_LT_COUNT]; /* each target's input and output sizes */
    rs_lora_set set;
    rs_lora_grad grad;
} rs_lora_train;
/* targets: bit mask over rs_lora_target (0x7f = all seven); scale = alpha / rank.
 * Parameters zeroed; rs_lora_train_init fills them. */
rsmoe_status rs_lora_train_new(const rs_llm_config *c, int rank, float alpha, unsigned targets,
                               rs_lora_train *out);
/* PEFT's initialisation: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)),
 * B = 0 (b_std > 0: B ~ N(0, b_std), for tests). */
void rs_lora_train_init(rs_lora_train *t, rs_rng *rng, float b_std);
void rs_lora_train_zero_grad(rs_lora_train *t);
void rs_lora_train_free(rs_lora_train *t);

/* Full-weight gradients, one allocation; shapes as the weights (PyTorch [out, in] rows).
 * output is NULL for a tied model (its gradient goes to tok_embd). */
typedef struct {
    float *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w_gate, *w_up, *w_down;
} rs_llm_layer_grad;
typedef struct {
    rs_llm_config c;
    float *tok_embd, *out_norm, *output;
    rs_llm_layer_grad layers[RS_LLM_MAX_LAYERS];
    float *block;
    int64_t n;
} rs_llm_grads;
rsmoe_status rs_llm_grads_new(const rs_llm_config *c, rs_llm_grads *g);
void rs_llm_grads_zero(rs_llm_grads *g);
void rs_llm_grads_free(rs_llm_grads *g);
/* Lists (parameter, gradient, size) triples of every trainable weight for the optimiser:
 * fills up to max entries and returns the count (3 + 9·n_layers, minus 1 when tied), or -1
 * with an error when a weight is not f32 or max is too small. */
int rs_llm_param_list(const rs_llm_weights *w, const rs_llm_grads *g, float **params,
                      float **grads, int64_t *sizes, int max);

/* ------------------------------------------------------------ training state */
typedef struct rs_llm_train rs_llm_train;

/* Buffers for batches of up to max_B sequences of up to max_T positions and adapters of
 * rank up to max_rank (0: no LoRA). max_T <= c->max_seq. */
rsmoe_status rs_llm_train_new(const rs_llm_config *c, int max_B, int max_T, int max_rank,
                              rs_llm_train **out);
void rs_llm_train_free(rs_llm_train *t);
/* bytes rs_llm_train_new allocates for these sizes (the formula above, exactly) */
size_t rs_llm_train_bytes(const rs_llm_config *c, int max_B, int max_T, int max_rank);

typedef struct {
    int B, T;
    const float *emb;        /* [B, T, dim] */
    const int32_t *len;      /* [B] valid lengths 0..T; NULL: all T */
    const int32_t *targets;  /* [B, T] next-token ids or RS_IGNORE_INDEX */
    const int *adapter;      /* [B] index into adapters or -1; NULL: all base */
    const rs_lora_set *const *adapters; /* [n_adapters] (entries may be NULL = base) */
    int n_adapters;
    const float *weight;     /* [B] per-sequence factor of the gradient (NULL: all 1): the backward
                              * differentiates Σ_b weight[b]·Σ_t CE(b,t) / n_scored, e.g. with
                              * REINFORCE advantages (self-critical training); the forward's *loss
                              * stays the unweighted mean */
} rs_llm_train_batch;

/* Forward: keeps the activations, writes *loss (mean CE over scored targets; 0 when none)
 * and *n_scored (may be NULL). The batch's arrays, the weights and the adapters must stay
 * unchanged until the backward. */
rsmoe_status rs_llm_train_forward(rs_llm_train *t, const rs_llm_weights *w,
                                  const rs_llm_train_batch *b, float *loss, int64_t *n_scored,
                                  rs_pool *pool);

typedef struct {
    float loss_scale;             /* gradients of loss_scale·loss; 0 is taken as 1 */
    rs_llm_grads *weights;        /* full-weight mode: += every weight's gradient; NULL: frozen */
    rs_lora_grad *const *lora;    /* [n_adapters] (array or entry NULL: adapter frozen) */
    float *d_emb;                 /* [B, T, dim] written; NULL: not wanted */
} rs_llm_bwd_out;
/* Backward of the last forward. */
rsmoe_status rs_llm_train_backward(rs_llm_train *t, const rs_llm_weights *w,
                                   const rs_llm_bwd_out *o, rs_pool *pool);

/* logits [n_scored, vocab] of the last forward, the scored rows (target not ignored) in
 * row order (before the backward overwrites them with their gradient), for inspection */
const float *rs_llm_train_logits(const rs_llm_train *t);
#endif
