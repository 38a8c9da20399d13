/* qformer.h - the VLM Encoder: InstructBLIP's instruction-aware Q-Former and the projection
 * to the LLM width.
 *
 * Embeddings: rows 0..nq-1 are the learned queries; rows nq.. the instruction tokens (word +
 * absolute position embeddings, positions from 0); LayerNorm over all rows.
 * Each BERT layer (post-LN, eps 1e-12): self-attention over [queries ; instruction]
 * (bidirectional) -> dense -> LN(+residual); in layers l % cross_freq == 0 the query rows
 * then cross-attend to the image tokens -> dense -> LN(+residual); then a feed-forward
 * network (dense -> GELU -> dense -> LN(+residual)), one for query rows and another for
 * instruction rows. The nq query outputs go through `proj` to the LLM width: the visual
 * prefix. */
#ifndef RSMOE_MODEL_QFORMER_H
#define RSMOE_MODEL_QFORMER_H
#include "core/core.h"
#include "formats/gguf.h"

typedef struct {
    int n_query, width, layers, heads, ffn, cross_freq, vocab, max_pos, enc_width, out_width;
    float eps;
} rs_qformer_config;

typedef struct {
    const rs_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b, *ln_w, *ln_b;
} rs_qf_attn;
typedef struct {
    const rs_tensor *up_w, *up_b, *down_w, *down_b, *ln_w, *ln_b;
} rs_qf_ffn;
typedef struct {
    rs_qf_attn self, cross; /* cross unused (NULL) when the layer has none */
    rs_qf_ffn ffn_text, ffn_query;
    bool has_cross;
} rs_qf_layer;

typedef struct {
    rs_qformer_config c;
    const rs_tensor *query, *tok, *pos, *eln_w, *eln_b, *proj_w, *proj_b;
    rs_qf_layer *layers;
} rs_qformer;

/* reads rsmoe.qformer.* keys; out_width is the LLM width the projection maps to */
rsmoe_status rs_qformer_bind(const rs_gguf *g, int enc_width, int out_width, rs_qformer *q);
void rs_qformer_unbind(rs_qformer *q);
size_t rs_qformer_scratch_floats(const rs_qformer_config *c, int n_img, int n_text, int nthreads);
/* img [n_img, enc_width] image tokens; ids [n_text] instruction token ids (may be 0 of them);
 * prefix [n_query, out_width] receives the visual prefix; qout (optional) [n_query, width]
 * the Q-Former's query outputs before the projection. */
rsmoe_status rs_qformer_forward(const rs_qformer *q, const float *img, int n_img, const int32_t *ids,
                                int n_text, float *prefix, float *qout, float *scratch, rs_pool *pool);
#endif
