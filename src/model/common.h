/* common.h - helpers shared by the model parts: binding GGUF tensors with shape checks, and
 * linear layers over weights of any dtype. */
#ifndef RSMOE_MODEL_COMMON_H
#define RSMOE_MODEL_COMMON_H
#include "core/core.h"
#include "formats/gguf.h"

/* Finds tensor `name` (printf-style with one int, e.g. "v.blk.%d.ln1.weight") and checks it
 * holds ne0 x ne1 values (ne1 = 1 for a vector) in a contiguous layout; vectors and
 * tensors with f32_only must be f32. Missing or misshapen: RSMOE_ERR_FORMAT naming it. */
rsmoe_status rs_bind(const rs_gguf *g, const rs_tensor **out, int64_t ne0, int64_t ne1, bool f32_only,
                     const char *fmt, int idx);
/* same, but a missing tensor is not an error (*out = NULL) */
rsmoe_status rs_bind_opt(const rs_gguf *g, const rs_tensor **out, int64_t ne0, int64_t ne1,
                         bool f32_only, const char *fmt, int idx);

/* y[T, out] = x[T, in]·Wᵀ (+ b) for W of any dtype (ne = {in, out}); b f32 or NULL. */
void rs_tlinear(const rs_tensor *W, const rs_tensor *b, const float *x, float *y, int64_t T, rs_pool *pool);
/* y[i] = x W[i]^T (no bias) for n matrices with the same input width: where all are packed q8_0,
 * one rs_matmul_q8x16_multi (the input quantised once, one pool run); else rs_tlinear each.
 * The same results as n rs_tlinear calls. */
void rs_tlinear_multi(int n, const rs_tensor *const *W, float *const *y, const float *x, int64_t T, rs_pool *pool);
static inline const float *rs_f32(const rs_tensor *t) { return t ? (const float *)t->data : NULL; }

/* reads a u32 key into an int, with a range check; missing -> dflt (or an error if dflt < 0) */
rsmoe_status rs_key_int(const rs_gguf *g, const char *key, int lo, int hi, int dflt, int *out);
#endif
