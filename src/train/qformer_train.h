/* qformer_train.h - training forward and backward of the VLM Encoder (InstructBLIP's
 * instruction-aware Q-Former + the projection to the LLM width), in the style of llm.c's
 * train_gpt2.c: an explicit forward that keeps every activation the backward needs in
 * buffers sized once from the configuration, an explicit backward, no allocation per step.
 * Same semantics as the inference forward (model/qformer.h, docs/model.md).
 *
 * A batch is B images, each with n_img image tokens [n_img, enc_width] (the frozen encoder's
 * output, e.g. from a feature cache) and an instruction of len[b] <= n_text token ids padded
 * to n_text. Sample b runs on T = n_query + n_text rows [queries ; instruction]; the padded
 * instruction rows are masked as keys (their ids are never read, their embeddings are zero),
 * so the visual prefix of sample b equals rs_qformer_forward with the len[b] valid tokens.
 * Output: the visual prefix [B, n_query, out_width] (after proj).
 *
 * Backward from d(prefix): ACCUMULATES (+=) the gradient of every Q-Former parameter and of
 * proj into the parameter set's gradients (ops.h conventions), so gradient accumulation over
 * micro-batches is: zero, then several backwards. Optionally WRITES d(image tokens).
 *
 * Memory (floats), N = B·T, Nq = B·n_query, Ni = B·n_img, W width, F ffn, H heads, L layers,
 * Lc = layers with cross-attention (T, B at their maxima):
 *   saved:   N·(2W+2) + L·[N·(8W + 2F + 4) + B·H·T²] + Lc·[Nq·(3W+2) + N·W + 2·Ni·W + B·H·n_query·n_img]
 *   scratch: N·(7W + F) + Ni·(2W + enc_width) + max(T², n_query·n_img)
 * plus N + 4·B bytes and 64-byte alignment of each buffer; rs_qformer_train_bytes() gives the
 * exact figure. */
#ifndef RSMOE_TRAIN_QFORMER_TRAIN_H
#define RSMOE_TRAIN_QFORMER_TRAIN_H

#include "core/core.h"
#include "formats/gguf.h"
#include "kernels/ops.h"
#include "model/qformer.h"

/* ------------------------------------------------------------ trainable tensor sets */
/* One trainable tensor: a mutable f32 copy of a GGUF tensor and its gradient.
 * `tensor` describes the parameter (name, f32, ggml shape, data = param) so that it can be
 * handed to rs_gguf_writer_add_tensor or used where an rs_tensor is expected. */
typedef struct {
    rs_tensor tensor;
    float *param, *grad;
    int64_t n;
} rs_tparam;

/* A list of trainable tensors whose parameters and gradients each live in one flat block
 * (params[0..total), grads[0..total)), so AdamW and clipping can run over one buffer or over
 * the list (e.g. rs_clip_grad_norm(&s.grads, &s.total, 1, ...), or the blocks of several
 * sets). */
typedef struct {
    rs_tparam *p;
    int n;
    float *params, *grads;
    int64_t total;
} rs_tparams;

/* Copies the named tensors of g (in this order) into a new set; gradients zeroed. Every
 * tensor must exist and be f32 (RSMOE_ERR_FORMAT naming it otherwise: quantised or half
 * weights are for inference). On failure the set is left empty. */
rsmoe_status rs_tparams_from_gguf(const rs_gguf *g, const char *const *names, int n, rs_tparams *out);
void rs_tparams_free(rs_tparams *s);
void rs_tparams_zero_grad(rs_tparams *s);
/* index of the tensor called name, -1 if absent */
int rs_tparams_find(const rs_tparams *s, const char *name);
/* one AdamW step over every tensor (step is 1-based; m and v are total floats each, zero at
 * the start) */
void rs_tparams_adamw(rs_tparams *s, float *m, float *v, int64_t step, const rs_adamw_cfg *c,
                      rs_pool *pool);
/* Adds every tensor of the set to a GGUF writer (data not copied: the set must outlive
 * rs_gguf_writer_write). */
rsmoe_status rs_tparams_add_to_writer(const rs_tparams *s, rs_gguf_writer *w);
/* Writes a copy of src (all its metadata and tensors) to path, with each tensor named in one
 * of the n sets replaced by the set's current parameters (a checkpoint). Atomic. */
rsmoe_status rs_tparams_save_gguf(const rs_tparams *const *sets, int n, const rs_gguf *src, const char *path);

/* ------------------------------------------------------------ Q-Former parameters */
typedef struct {
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b, *ln_w, *ln_b;
} rs_qft_attn;
typedef struct {
    float *up_w, *up_b, *down_w, *down_b, *ln_w, *ln_b;
} rs_qft_ffn;
typedef struct {
    rs_qft_attn self, cross; /* cross all NULL when the layer has none */
    rs_qft_ffn ffn_text, ffn_query;
    bool has_cross;
} rs_qft_layer;
/* Pointers into a parameter (or gradient) block; matrices in PyTorch layout [out, in]. */
typedef struct {
    float *query, *tok, *pos, *eln_w, *eln_b, *proj_w, *proj_b;
    rs_qft_layer *layers;
} rs_qft_weights;

typedef struct {
    rs_qformer_config c;
    rs_tparams set;   /* every qf.* tensor and proj.*, docs/model.md names */
    rs_qft_weights w; /* views of set.params */
    rs_qft_weights g; /* views of set.grads */
} rs_qformer_params;

/* Reads the Q-Former configuration (rsmoe.qformer.* keys, as rs_qformer_bind) and copies its
 * tensors; out_width is the LLM width (proj's output), enc_width the image tokens' width. */
rsmoe_status rs_qformer_params_new(const rs_gguf *g, int enc_width, int out_width, rs_qformer_params *out);
void rs_qformer_params_free(rs_qformer_params *p);
/* An inference view (model/qformer.h) of the current parameters, e.g. to run
 * rs_qformer_forward on them during training: q's tensors are the set's (no copy, they follow
 * later updates); q->layers is allocated: release it with rs_qformer_unbind. */
rsmoe_status rs_qformer_params_view(const rs_qformer_params *p, rs_qformer *q);

/* ------------------------------------------------------------ training state */
typedef struct rs_qformer_train rs_qformer_train;

/* Buffers for batches of up to max_B images of n_img tokens and instructions of up to
 * max_text tokens (<= c->max_pos). */
rsmoe_status rs_qformer_train_new(const rs_qformer_config *c, int max_B, int max_text, int n_img,
                                  rs_qformer_train **out);
void rs_qformer_train_free(rs_qformer_train *t);
size_t rs_qformer_train_bytes(const rs_qformer_config *c, int max_B, int max_text, int n_img);

typedef struct {
    int B, n_text, n_img;
    const float *img;     /* [B, n_img, enc_width] */
    const int32_t *ids;   /* [B, n_text]; entries at t >= len[b] are not read */
    const int32_t *len;   /* [B] valid lengths 0..n_text; NULL: all n_text */
} rs_qformer_batch;

/* Forward: prefix [B, n_query, out_width] written; qout (may be NULL) [B, n_query, width]
 * the query outputs before proj. The batch's arrays and the parameters must stay unchanged
 * until the backward. */
rsmoe_status rs_qformer_train_forward(rs_qformer_train *t, const rs_qformer_params *p,
                                      const rs_qformer_batch *b, float *prefix, float *qout,
                                      rs_pool *pool);
/* Backward of the last forward from d_prefix [B, n_query, out_width]: p->g += every
 * parameter gradient; d_img (may be NULL) [B, n_img, enc_width] written. */
rsmoe_status rs_qformer_train_backward(rs_qformer_train *t, rs_qformer_params *p,
                                       const float *d_prefix, float *d_img, rs_pool *pool);
#endif
