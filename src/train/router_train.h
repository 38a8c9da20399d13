/* router_train.h - training forward and backward of the Instruction Router (method.md §2.4,
 * docs/model.md; inference: rs_router_forward in model/model.h), for a batch of B samples:
 *
 *   pv     = mean over the Q rows of the visual prefix                       [B, D]
 *   logits = W_g·[instr; pv] + b_g,  gates = softmax(logits)                  [B, K]
 *   soft   = W_d·GELU(W_u·pv + b_u) + b_d, read as [K, M, D]                  [B, K·M·D]
 *
 * instr is the pooled instruction embedding (a mean of LLM token embeddings) given by the
 * caller. Losses are the caller's: the backward takes d(gates) and/or d(logits) (e.g. from
 * rs_router_route_ce) and d(soft); parameter gradients ACCUMULATE (+=) into the set's
 * gradients; d(prefix) [B, Q, D] and d(instr) [B, D] are WRITTEN (ops.h conventions).
 * Memory: B·(2D + 2K + 2H) saved + B·(2D + H) scratch floats; nothing is allocated per step. */
#ifndef RSMOE_TRAIN_ROUTER_TRAIN_H
#define RSMOE_TRAIN_ROUTER_TRAIN_H

#include "train/qformer_train.h"

typedef struct {
    int D, K, M, H;           /* LLM width, experts, soft prompts per expert (0: none), hidden */
    rs_tparams set;           /* router.gate.{weight,bias} (+ router.soft_up.*, router.soft_down.* when M > 0) */
    float *gate_w, *gate_b, *up_w, *up_b, *down_w, *down_b;          /* views of set.params */
    float *d_gate_w, *d_gate_b, *d_up_w, *d_up_b, *d_down_w, *d_down_b; /* views of set.grads */
} rs_router_params;

/* Reads the router of an RS-MoE GGUF (rsmoe.moe.* keys, shapes checked against the LLM width
 * llama.embedding_length); every tensor must be f32. A model without experts is an error. */
rsmoe_status rs_router_params_new(const rs_gguf *g, rs_router_params *out);
void rs_router_params_free(rs_router_params *p);

typedef struct rs_router_train rs_router_train;
rsmoe_status rs_router_train_new(const rs_router_params *p, int max_B, rs_router_train **out);
void rs_router_train_free(rs_router_train *t);

/* instr [B, D], prefix [B, Q, D] (Q >= 1); gates [B, K] written; soft [B, K·M·D] written
 * (may be NULL when not wanted: then the backward takes no d_soft). The inputs and the
 * parameters must stay unchanged until the backward. */
rsmoe_status rs_router_train_forward(rs_router_train *t, const rs_router_params *p, int B, const float *instr,
                                     const float *prefix, int Q, float *gates, float *soft, rs_pool *pool);
/* gate logits [B, K] of the last forward */
const float *rs_router_train_logits(const rs_router_train *t);

/* Backward of the last forward. d_gates [B, K], d_logits [B, K], d_soft [B, K·M·D] may each
 * be NULL (no loss on them); the logits' gradient is softmax_bwd(d_gates) + d_logits.
 * d_prefix [B, Q, D] (may be NULL) and d_instr [B, D] (may be NULL) are written. */
rsmoe_status rs_router_train_backward(rs_router_train *t, rs_router_params *p, const float *d_gates,
                                      const float *d_logits, const float *d_soft, float *d_prefix,
                                      float *d_instr, rs_pool *pool);

/* Routing-label cross-entropy: target [B, K] is a distribution over the experts per sample
 * (one-hot for a VQA question type, uniform for a description; each row non-negative with a
 * positive sum, normalised here). loss = mean_b Σ_k −y_bk·log softmax(logits_b)_k;
 * d_logits (may be NULL) [B, K] = scale·(softmax(logits_b) − y_b)/B is written. */
rsmoe_status rs_router_route_ce(const float *logits, const float *target, int B, int K, float scale, float *loss,
                                float *d_logits);
#endif
