/* common.c - see common.h */
#include "model/common.h"

#include "kernels/bf16x3.h"
#include "kernels/ops.h"
#include "kernels/q8x16.h"
#include "kernels/quant.h"

#include <stdio.h>

static rsmoe_status bind(const rs_gguf *g, const rs_tensor **out, int64_t ne0, int64_t ne1, bool f32_only,
                         const char *fmt, int idx, bool optional) {
    char name[RS_NAME_MAX];
    snprintf(name, sizeof name, fmt, idx);
    const rs_tensor *t = rs_gguf_find_tensor(g, name);
    *out = NULL;
    if (!t) return optional ? RSMOE_OK : rs_error(RSMOE_ERR_FORMAT, "%s: missing tensor %s", rs_gguf_path(g), name);
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                        rs_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                        (long long)t->ne[3], (long long)ne0, (long long)ne1);
    if ((f32_only || ne1 == 1) && t->type != RS_F32)
        return rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s must be f32 (is %s)", rs_gguf_path(g), name,
                        rs_dtype_name(t->type));
    if (!rs_tensor_is_contiguous(t))
        return rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s is not contiguous", rs_gguf_path(g), name);
    *out = t;
    return RSMOE_OK;
}

rsmoe_status rs_bind(const rs_gguf *g, const rs_tensor **out, int64_t ne0, int64_t ne1, bool f32_only,
                     const char *fmt, int idx) {
    return bind(g, out, ne0, ne1, f32_only, fmt, idx, false);
}

rsmoe_status rs_bind_opt(const rs_gguf *g, const rs_tensor **out, int64_t ne0, int64_t ne1,
                         bool f32_only, const char *fmt, int idx) {
    return bind(g, out, ne0, ne1, f32_only, fmt, idx, true);
}

void rs_tlinear(const rs_tensor *W, const rs_tensor *b, const float *x, float *y, int64_t T, rs_pool *pool) {
    if (W->packed && W->type == RS_Q8_0) rs_matmul_q8x16(W->packed, x, y, T, W->ne[1], W->ne[0], pool);
    else if (W->packed && W->type == RS_F32 && T >= 16) rs_matmul_bf16x3(W->packed, x, y, T, W->ne[1], W->ne[0], pool);
    else rs_matmul_w(W->type, W->data, x, y, T, W->ne[1], W->ne[0], pool);
    if (b) rs_add_bias_rows(y, (const float *)b->data, T, W->ne[1]);
}

void rs_tlinear_multi(int n, const rs_tensor *const *W, float *const *y, const float *x, int64_t T, rs_pool *pool) {
    bool fuse = n >= 2 && n <= RS_Q8X16_MAX_MATS;
    for (int i = 0; fuse && i < n; i++) fuse = W[i]->packed && W[i]->type == RS_Q8_0 && W[i]->ne[0] == W[0]->ne[0];
    if (!fuse) {
        for (int i = 0; i < n; i++) rs_tlinear(W[i], NULL, x, y[i], T, pool);
        return;
    }
    const void *wp[RS_Q8X16_MAX_MATS];
    int64_t N[RS_Q8X16_MAX_MATS];
    for (int i = 0; i < n; i++) wp[i] = W[i]->packed, N[i] = W[i]->ne[1];
    rs_matmul_q8x16_multi(n, wp, N, y, x, T, W[0]->ne[0], pool);
}

rsmoe_status rs_key_int(const rs_gguf *g, const char *key, int lo, int hi, int dflt, int *out) {
    if (rs_gguf_find_key(g, key) < 0) {
        if (dflt < 0) return rs_error(RSMOE_ERR_FORMAT, "%s: missing key %s", rs_gguf_path(g), key);
        *out = dflt;
        return RSMOE_OK;
    }
    uint32_t v;
    rsmoe_status st = rs_gguf_get_u32(g, key, &v);
    if (st) return st;
    if ((int64_t)v < lo || (int64_t)v > hi)
        return rs_error(RSMOE_ERR_FORMAT, "%s: %s = %u outside [%d, %d]", rs_gguf_path(g), key, v, lo, hi);
    *out = (int)v;
    return RSMOE_OK;
}
