/* ops.h - fp32 neural-network kernels, forward and backward.
 *
 * Conventions (all functions):
 *  - row-major float buffers: an activation is [rows, cols] with cols contiguous;
 *    a linear weight W is [out, in] (out rows of `in` values, PyTorch layout) and
 *    y = x·Wᵀ + b.
 *  - Backward functions ACCUMULATE (+=) into PARAMETER gradients (dW, db, dA, dB, dw,
 *    dtable) and WRITE (overwrite) INPUT gradients (dx, dq, dk, dv, dg, du, dlogits).
 *    Any gradient pointer documented "may be NULL" is then skipped (frozen parameter,
 *    or an input that needs no gradient).
 *  - No allocation inside: where a kernel needs scratch, the caller passes it and the
 *    size is documented (or given by a *_scratch_floats() helper).
 *  - pool: an rs_pool (NULL = run on the calling thread).
 *  - Functions returning rsmoe_status check their arguments (shapes, ids) and record a
 *    message with rs_error() on failure, leaving outputs unspecified; void functions
 *    assume valid shapes (n >= 0, non-NULL buffers) and do nothing for empty sizes.
 *  - Unless stated, an output may not alias an input. Elementwise functions allow
 *    exact aliasing (y == x).
 * The plain double-precision reference twins are in kernels/ops_ref.h. */
#ifndef RSMOE_KERNELS_OPS_H
#define RSMOE_KERNELS_OPS_H

#include "core/core.h"

/* ------------------------------------------------------------ small helpers */
void rs_vec_copy(float *dst, const float *src, int64_t n);
void rs_vec_zero(float *y, int64_t n);
void rs_vec_add(float *y, const float *a, const float *b, int64_t n);   /* y = a + b */
void rs_vec_acc(float *y, const float *x, int64_t n);                   /* y += x (residual) */
void rs_vec_axpy(float *y, float alpha, const float *x, int64_t n);     /* y += alpha*x */
void rs_vec_mul(float *y, const float *a, const float *b, int64_t n);   /* y = a*b */
void rs_vec_scale(float *y, float s, int64_t n);                        /* y *= s */
float rs_vec_dot(const float *a, const float *b, int64_t n);
/* y[t, :] += b for each of rows rows of cols values */
void rs_add_bias_rows(float *y, const float *b, int64_t rows, int64_t cols);

/* ------------------------------------------------------------ linear */
/* y[T,out] = x[T,in]·W[out,in]ᵀ + b[out]; b may be NULL. */
void rs_linear_fwd(float *y, const float *x, const float *W, const float *b,
                   int64_t T, int64_t in, int64_t out, rs_pool *pool);
/* dx[T,in] = dy·W (written); dW[out,in] += dyᵀ·x; db[out] += Σ_t dy.
 * dx, dW, db may each be NULL. */
void rs_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                   const float *W, int64_t T, int64_t in, int64_t out, rs_pool *pool);

/* ------------------------------------------------------------ LoRA linear */
/* y = x·Wᵀ + b + (alpha/r)·(x·Aᵀ)·Bᵀ with A [r,in], B [out,r]; W and b frozen (b may be NULL).
 * h [T,r] receives x·Aᵀ and must be kept for the backward. */
void rs_lora_fwd(float *y, float *h, const float *x, const float *W, const float *b,
                 const float *A, const float *B, float alpha, int64_t T, int64_t in,
                 int64_t out, int64_t r, rs_pool *pool);
/* dB[out,r] += (alpha/r)·dyᵀ·h; dA[r,in] += (alpha/r)·(dy·B)ᵀ·x;
 * dx[T,in] = dy·W + (alpha/r)·(dy·B)·A (written). Never touches W's gradient.
 * scratch: T*r floats. dx, dA, dB may each be NULL. */
void rs_lora_bwd(float *dx, float *dA, float *dB, float *scratch, const float *dy,
                 const float *x, const float *h, const float *W, const float *A,
                 const float *B, float alpha, int64_t T, int64_t in, int64_t out, int64_t r,
                 rs_pool *pool);
/* LoRA updates of a few rows (decoding: each row may have its own adapter), several targets
 * sharing the input x at once, in two pool runs instead of two products per row and target:
 * for each target g and row i with m[i].A != NULL,
 *     y_g[i, :out_g] += m[i].scale · (x[i, :in] · m[i].Aᵀ) · m[i].Bᵀ
 * with A [r, in] and B [out_g, r] row-major f32, r = m[i].r (1..r_max). Each of the r dot
 * products of length in, and each output's sum over r, is computed by one thread in a fixed
 * order (16 interleaved partial sums, then added in order), so the result does not depend on
 * the thread count. h: n_targets · R · r_max floats of scratch. */
typedef struct {
    const float *A, *B;
    const float *Bt; /* B transposed [r, out] or NULL; when given it is read instead of B (the
                      * same sums in the same order: the same result, vectorised over outputs) */
    float scale;
    int r;
} rs_lora_mat;
#define RS_LORA_ROWS_MAX_JOBS 64 /* rows x targets per call */
typedef struct {
    float *y;             /* [R, ldy]; out_g columns updated per row */
    int64_t out, ldy;
    const rs_lora_mat *m; /* [R] one row's adapter for this target (A == NULL: none) */
} rs_lora_rows_target;
void rs_lora_rows_fwd(const float *x, int64_t in, int R, const rs_lora_rows_target *tg, int n_targets,
                      int r_max, float *h, rs_pool *pool);

/* W[out,in] += (alpha/r)·B·A (merge an adapter into its base weight). */
void rs_lora_merge(float *W, const float *A, const float *B, float alpha, int64_t in,
                   int64_t out, int64_t r, rs_pool *pool);

/* ------------------------------------------------------------ normalisation */
/* LayerNorm over the last dim of x[T,C]: y = (x-mean)·rstd·w + b, rstd = 1/sqrt(var+eps)
 * (biased variance). w, b may be NULL (no affine). mean, rstd [T] receive the statistics
 * for the backward; may be NULL (inference). y may alias x. */
void rs_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                      const float *b, int64_t T, int64_t C, float eps, rs_pool *pool);
/* dx written (may be NULL); dw, db += (may be NULL). mean/rstd from the forward. */
void rs_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *w, const float *mean, const float *rstd, int64_t T,
                      int64_t C, rs_pool *pool);
/* RMSNorm: y = x·rstd·w, rstd = 1/sqrt(mean(x²)+eps); w may be NULL; rstd [T] may be NULL.
 * y may alias x. */
void rs_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t T,
                    int64_t C, float eps, rs_pool *pool);
void rs_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                    const float *rstd, int64_t T, int64_t C, rs_pool *pool);

/* ------------------------------------------------------------ activations (n values) */
/* GELU exact: x·Φ(x) = 0.5·x·(1+erf(x/√2)). */
void rs_gelu_fwd(float *y, const float *x, int64_t n, rs_pool *pool);
void rs_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n, rs_pool *pool);
/* GELU tanh approximation: 0.5·x·(1+tanh(√(2/π)·(x+0.044715·x³))). */
void rs_gelu_tanh_fwd(float *y, const float *x, int64_t n, rs_pool *pool);
void rs_gelu_tanh_bwd(float *dx, const float *dy, const float *x, int64_t n, rs_pool *pool);
/* SiLU: x·σ(x). */
void rs_silu_fwd(float *y, const float *x, int64_t n, rs_pool *pool);
void rs_silu_bwd(float *dx, const float *dy, const float *x, int64_t n, rs_pool *pool);
/* SwiGLU: y = silu(g)·u; bwd writes dg and du (either may be NULL; either may alias dy). */
void rs_swiglu_fwd(float *y, const float *g, const float *u, int64_t n, rs_pool *pool);
void rs_swiglu_bwd(float *dg, float *du, const float *dy, const float *g, const float *u,
                   int64_t n, rs_pool *pool);

/* ------------------------------------------------------------ softmax over rows */
/* y[r,:] = softmax(scale·x[r,:]); scale 1 for a plain softmax. y may alias x. */
void rs_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols, float scale,
                    rs_pool *pool);
/* dx = scale·y⊙(dy − Σ dy⊙y) with y the forward output. dx may alias dy. */
void rs_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols,
                    float scale, rs_pool *pool);

/* ------------------------------------------------------------ attention */
/* Scaled dot-product attention, multi-head, grouped-query.
 *  q [Tq, Hq*d], k and v [Tk, Hkv*d], out [Tq, Hq*d] (head h in columns h*d..h*d+d-1);
 *  Hq % Hkv == 0 and query head h uses kv head h / (Hq/Hkv).
 *  Row strides ldq/ldk/ldv/ldo (in floats) allow views into fused buffers; 0 = dense
 *  (Hq*d or Hkv*d).
 *  causal: query i may see key j only when j <= i + q_offset (q_offset = number of keys
 *  before query 0: Tk - Tq for a prompt continuing a KV cache, p for one token at
 *  position p with Tk = p+1).
 *  key_valid [Tk]: nonzero = may be attended; NULL = all valid (padding mask).
 *  scale: 0 means 1/sqrt(d).
 * A query row that sees no key at all gets out = 0 and all-zero probabilities (and zero
 * gradients). Self and cross attention are the same call with different Tk.
 * Every one of the Tk rows of k and v must hold finite values, masked ones included
 * (zeros are fine): the many-query path multiplies them by zero probabilities. */
typedef struct {
    int64_t Tq, Tk, Hq, Hkv, d;
    int64_t ldq, ldk, ldv, ldo;
    bool causal;
    int64_t q_offset;
    const uint8_t *key_valid;
    float scale;
} rs_attn_desc;

/* Checks a descriptor (records an error): dims > 0, Hq % Hkv, strides, offset >= 0. */
rsmoe_status rs_attn_check(const rs_attn_desc *a);
/* scratch floats rs_attn_fwd needs when probs == NULL, for a pool of at most nthreads
 * threads. Non-decreasing in Tq and Tk: sizing once for the largest Tq and Tk (and the
 * pool's size) covers every smaller call. */
size_t rs_attn_fwd_scratch_floats(const rs_attn_desc *a, int nthreads);
/* probs [Hq, Tq, Tk] receives the attention probabilities (keep for the backward), or
 * NULL (inference) in which case scratch must hold rs_attn_fwd_scratch_floats() floats;
 * scratch may be NULL when probs is given. */
rsmoe_status rs_attn_fwd(float *out, float *probs, const float *q, const float *k,
                         const float *v, const rs_attn_desc *a, float *scratch, rs_pool *pool);
/* scratch floats rs_attn_bwd needs (when dq or dk is wanted): Tq*Tk */
size_t rs_attn_bwd_scratch_floats(const rs_attn_desc *a);
/* dq [Tq,Hq*d], dk, dv [Tk,Hkv*d] written. dout and the gradients are dense rows (Hq*d,
 * Hkv*d: the descriptor's strides apply to q, k, v only). Needs probs from rs_attn_fwd.
 * dq, dk, dv may each be NULL. */
rsmoe_status rs_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *probs,
                         const rs_attn_desc *a, float *scratch, rs_pool *pool);

/* ------------------------------------------------------------ rotary embeddings */
/* Rotary position embedding applied in place to x [T, H*d] (row stride ld, 0 = H*d),
 * position of row t = pos[t] (or pos0 + t when pos is NULL).
 * Pair form: interleaved = false is the NeoX / HF LLaMA form, rotating pairs (i, i+d/2)
 * ("rotate_half"); interleaved = true rotates pairs (2i, 2i+1) (GPT-J / original Meta
 * LLaMA / llama.cpp GGUF LLaMA, whose converter permutes q and k weights into this form).
 * Pair i uses frequency inv_freq[i] = theta^(-2i/d), optionally rescaled by Llama-3's rule
 * (HF _compute_llama3_parameters). Angles and sin/cos are computed in double. */
typedef struct {
    double theta;            /* base, e.g. 10000 or 500000 */
    bool interleaved;
    bool llama3;             /* apply the Llama-3 frequency scaling below */
    double factor;           /* 32 (Llama 3.2) */
    double low_freq_factor;  /* 1 */
    double high_freq_factor; /* 4 */
    double original_max_pos; /* 8192 */
} rs_rope_cfg;
/* theta 10000, NeoX pairs, no scaling; Llama-3 fields preset to 32 / 1 / 4 / 8192 */
rs_rope_cfg rs_rope_default(void);
/* max head dim the RoPE kernels accept */
#define RS_ROPE_MAX_D 1024
/* inv_freq [d/2] after optional Llama-3 scaling; d even, 2 <= d <= RS_ROPE_MAX_D */
rsmoe_status rs_rope_inv_freq(double *inv_freq, int64_t d, const rs_rope_cfg *c);
rsmoe_status rs_rope_fwd(float *x, const int32_t *pos, int64_t pos0, int64_t T, int64_t H,
                         int64_t d, int64_t ld, const rs_rope_cfg *c, rs_pool *pool);
/* backward = the inverse rotation, in place on the gradient */
rsmoe_status rs_rope_bwd(float *dx, const int32_t *pos, int64_t pos0, int64_t T, int64_t H,
                         int64_t d, int64_t ld, const rs_rope_cfg *c, rs_pool *pool);

/* ------------------------------------------------------------ embedding */
/* y[t,:] = table[ids[t], :], table [V, C]. Error for an id outside [0, V). */
rsmoe_status rs_embedding_fwd(float *y, const float *table, const int32_t *ids, int64_t T,
                              int64_t V, int64_t C);
/* dtable[ids[t], :] += dy[t, :] (single-threaded: ids may repeat) */
rsmoe_status rs_embedding_bwd(float *dtable, const float *dy, const int32_t *ids, int64_t T,
                              int64_t V, int64_t C);

/* ------------------------------------------------------------ patch embedding */
/* Conv2d(Cin -> width, kernel P, stride P, bias) on B images img [B, Cin, H, W] (CHW each),
 * out [B*np, width] with np = (H/P)*(W/P) patches in row-major patch order (pixels past the
 * last whole patch are ignored, as PyTorch's floor). Weight Wt [width, Cin*P*P] is PyTorch's
 * [width, Cin, P, P] flattened; b [width] may be NULL.
 * cols [B*np, Cin*P*P] receives the unfolded patches (keep for the backward). */
rsmoe_status rs_patch_embed_fwd(float *out, float *cols, const float *img, int64_t B,
                                int64_t Cin, int64_t H, int64_t W, int64_t P, int64_t width,
                                const float *Wt, const float *b, rs_pool *pool);
/* dWt += doutᵀ·cols, db += Σ dout (either may be NULL); dimg [B,Cin,H,W] written when not
 * NULL (needs scratch of B*np*Cin*P*P floats, else scratch may be NULL). */
rsmoe_status rs_patch_embed_bwd(float *dimg, float *dWt, float *db, float *scratch,
                                const float *dout, const float *cols, const float *Wt,
                                int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t P,
                                int64_t width, rs_pool *pool);

/* ------------------------------------------------------------ cross-entropy */
#define RS_IGNORE_INDEX (-100)
/* Mean softmax cross-entropy over the rows of logits [T, V] whose target != ignore_index.
 * *loss receives the mean (0 when every row is ignored), *n_valid (may be NULL) the count.
 * Error for a target outside [0, V) that is not ignore_index, or non-finite logits. */
rsmoe_status rs_cross_entropy_fwd(float *loss, int64_t *n_valid, const float *logits,
                                  const int32_t *targets, int64_t T, int64_t V,
                                  int32_t ignore_index, rs_pool *pool);
/* dlogits = dloss·(softmax(logits) − onehot(target)) / n_valid for valid rows, 0 for
 * ignored rows (all zero when every row is ignored). dlogits may alias logits. */
rsmoe_status rs_cross_entropy_bwd(float *dlogits, const float *logits, const int32_t *targets,
                                  int64_t T, int64_t V, int32_t ignore_index, float dloss,
                                  rs_pool *pool);

/* ------------------------------------------------------------ optimiser */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} rs_adamw_cfg;
/* lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01 (PyTorch's AdamW defaults) */
rs_adamw_cfg rs_adamw_default(void);
/* One AdamW step, as torch.optim.AdamW: p -= lr·wd·p; m = β1·m + (1−β1)·g;
 * v = β2·v + (1−β2)·g²; p -= lr·(m/(1−β1^t)) / (sqrt(v/(1−β2^t)) + eps).
 * step t is 1-based (the count including this step). m, v start at zero. */
void rs_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, int64_t step,
                   const rs_adamw_cfg *c, rs_pool *pool);
/* Global L2 norm over n gradient buffers (double accumulation). */
double rs_grad_global_norm(float *const *grads, const int64_t *sizes, int n);
/* torch.nn.utils.clip_grad_norm_: when norm > max_norm, scale every gradient by
 * max_norm/(norm+1e-6). *norm_out (may be NULL) receives the norm before clipping.
 * A non-finite norm leaves the gradients untouched and returns RSMOE_ERR_NUMERIC. */
rsmoe_status rs_clip_grad_norm(float *const *grads, const int64_t *sizes, int n,
                               float max_norm, double *norm_out);

#endif
