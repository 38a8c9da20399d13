/* vit.c - see vit.h */
#include "model/vit.h"

#include "kernels/ops.h"
#include "model/common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rsmoe_status rs_vit_bind(const rs_gguf *g, rs_vit *v) {
    memset(v, 0, sizeof *v);
    rs_vit_config *c = &v->c;
    rsmoe_status st;
    if ((st = rs_key_int(g, "rsmoe.vit.image_size", 1, 8192, -1, &c->image_size)) ||
        (st = rs_key_int(g, "rsmoe.vit.patch_size", 1, 1024, -1, &c->patch)) ||
        (st = rs_key_int(g, "rsmoe.vit.embedding_length", 1, 1 << 16, -1, &c->width)) ||
        (st = rs_key_int(g, "rsmoe.vit.block_count", 1, 1024, -1, &c->layers)) ||
        (st = rs_key_int(g, "rsmoe.vit.head_count", 1, 1024, -1, &c->heads)) ||
        (st = rs_key_int(g, "rsmoe.vit.feed_forward_length", 1, 1 << 20, -1, &c->mlp)))
        return st;
    if (c->width % c->heads || c->image_size % c->patch)
        return rs_error(RSMOE_ERR_FORMAT, "%s: ViT width %d / heads %d or image %d / patch %d not whole",
                        rs_gguf_path(g), c->width, c->heads, c->image_size, c->patch);
    c->eps = rs_gguf_get_f32_or(g, "rsmoe.vit.layer_norm_epsilon", 1e-6f);
    c->gelu_tanh = !strcmp(rs_gguf_get_str_or(g, "rsmoe.vit.gelu", "erf"), "tanh");
    static const float m0[3] = {0.48145466f, 0.4578275f, 0.40821073f}, s0[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(c->mean, m0, sizeof m0);
    memcpy(c->std, s0, sizeof s0);
    int64_t k;
    if ((k = rs_gguf_find_key(g, "rsmoe.vit.image_mean")) >= 0 && (st = rs_gguf_arr_copy(g, k, 6, c->mean, 3))) return st;
    if ((k = rs_gguf_find_key(g, "rsmoe.vit.image_std")) >= 0 && (st = rs_gguf_arr_copy(g, k, 6, c->std, 3))) return st;
    int W = c->width, G = c->image_size / c->patch;
    if ((st = rs_bind(g, &v->patch_w, 3 * c->patch * c->patch, W, true, "v.patch_embd.weight", 0)) ||
        (st = rs_bind(g, &v->patch_b, W, 1, true, "v.patch_embd.bias", 0)) ||
        (st = rs_bind(g, &v->cls, W, 1, true, "v.class_embd", 0)) ||
        (st = rs_bind(g, &v->pos, W, 1 + G * G, true, "v.position_embd", 0)) ||
        (st = rs_bind(g, &v->lnv_w, W, 1, true, "v.ln_vision.weight", 0)) ||
        (st = rs_bind(g, &v->lnv_b, W, 1, true, "v.ln_vision.bias", 0)))
        return st;
    v->layers = calloc((size_t)c->layers, sizeof *v->layers);
    if (!v->layers) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->layers; l++) {
        rs_vit_layer *L = &v->layers[l];
        if ((st = rs_bind(g, &L->ln1_w, W, 1, true, "v.blk.%d.ln1.weight", l)) ||
            (st = rs_bind(g, &L->ln1_b, W, 1, true, "v.blk.%d.ln1.bias", l)) ||
            (st = rs_bind(g, &L->qkv_w, W, 3 * W, false, "v.blk.%d.attn_qkv.weight", l)) ||
            (st = rs_bind(g, &L->qkv_b, 3 * W, 1, true, "v.blk.%d.attn_qkv.bias", l)) ||
            (st = rs_bind(g, &L->out_w, W, W, false, "v.blk.%d.attn_out.weight", l)) ||
            (st = rs_bind(g, &L->out_b, W, 1, true, "v.blk.%d.attn_out.bias", l)) ||
            (st = rs_bind(g, &L->ln2_w, W, 1, true, "v.blk.%d.ln2.weight", l)) ||
            (st = rs_bind(g, &L->ln2_b, W, 1, true, "v.blk.%d.ln2.bias", l)) ||
            (st = rs_bind(g, &L->up_w, W, c->mlp, false, "v.blk.%d.ffn_up.weight", l)) ||
            (st = rs_bind(g, &L->up_b, c->mlp, 1, true, "v.blk.%d.ffn_up.bias", l)) ||
            (st = rs_bind(g, &L->down_w, c->mlp, W, false, "v.blk.%d.ffn_down.weight", l)) ||
            (st = rs_bind(g, &L->down_b, W, 1, true, "v.blk.%d.ffn_down.bias", l))) {
            rs_vit_unbind(v);
            return st;
        }
    }
    return RSMOE_OK;
}

void rs_vit_unbind(rs_vit *v) {
    free(v->layers);
    v->layers = NULL;
}

int rs_vit_n_tokens(const rs_vit_config *c, int side) {
    int g = side / c->patch;
    return g * g + 1;
}

static size_t attn_scratch(const rs_vit_config *c, int T, int nthreads) {
    rs_attn_desc ad = {.Tq = T, .Tk = T, .Hq = c->heads, .Hkv = c->heads, .d = c->width / c->heads};
    return rs_attn_fwd_scratch_floats(&ad, nthreads);
}

size_t rs_vit_scratch_floats(const rs_vit_config *c, int side, int nthreads) {
    size_t T = (size_t)rs_vit_n_tokens(c, side), W = (size_t)c->width, np = T - 1;
    size_t cols = np * 3 * (size_t)c->patch * (size_t)c->patch;
    return cols + T * W * 3 /* xb, att, tmp */ + T * 3 * W + T * (size_t)c->mlp + T * W /* pos */ +
           attn_scratch(c, (int)T, nthreads) + 64;
}

/* PyTorch's bicubic kernel (A = -0.75) */
static double cubic(double x) {
    const double A = -0.75;
    x = fabs(x);
    if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0;
}

void rs_vit_interp_pos(const float *pos, int width, int gi, int go, float *out) {
    memcpy(out, pos, sizeof(float) * (size_t)width); /* [CLS] position kept */
    const float *grid = pos + width;
    double scale = (double)gi / go;
    for (int oy = 0; oy < go; oy++)
        for (int ox = 0; ox < go; ox++) {
            double sy = (oy + 0.5) * scale - 0.5, sx = (ox + 0.5) * scale - 0.5;
            int iy = (int)floor(sy), ix = (int)floor(sx);
            double ty = sy - iy, tx = sx - ix;
            double wy[4], wx[4];
            for (int k = 0; k < 4; k++) { wy[k] = cubic(ty - (k - 1)); wx[k] = cubic(tx - (k - 1)); }
            float *o = out + (size_t)width * (size_t)(1 + oy * go + ox);
            for (int ch = 0; ch < width; ch++) {
                double acc = 0;
                for (int a = 0; a < 4; a++) {
                    int yy = iy - 1 + a;
                    yy = yy < 0 ? 0 : yy >= gi ? gi - 1 : yy; /* border replicate, as PyTorch */
                    for (int bb = 0; bb < 4; bb++) {
                        int xx = ix - 1 + bb;
                        xx = xx < 0 ? 0 : xx >= gi ? gi - 1 : xx;
                        acc += wy[a] * wx[bb] * grid[(size_t)(yy * gi + xx) * width + ch];
                    }
                }
                o[ch] = (float)acc;
            }
        }
}

rsmoe_status rs_vit_forward(const rs_vit *v, const float *img, int side, float *out, float *scratch,
                            rs_pool *pool) {
    const rs_vit_config *c = &v->c;
    if (side <= 0 || side % c->patch)
        return rs_error(RSMOE_ERR_INVALID_ARG, "ViT: input side %d is not a multiple of the patch size %d", side, c->patch);
    int T = rs_vit_n_tokens(c, side), W = c->width, np = T - 1, G = side / c->patch, G0 = c->image_size / c->patch;
    float *cols = scratch;
    float *xb = cols + (size_t)np * 3 * c->patch * c->patch;
    float *att = xb + (size_t)T * W;
    float *tmp = att + (size_t)T * W;
    float *qkv = tmp + (size_t)T * W;
    float *hid = qkv + (size_t)T * 3 * W;
    float *pos = hid + (size_t)T * c->mlp;
    float *asc = pos + (size_t)T * W;
    rsmoe_status st = rs_patch_embed_fwd(out + W, cols, img, 1, 3, side, side, c->patch, W, rs_f32(v->patch_w),
                                         rs_f32(v->patch_b), pool);
    if (st) return st;
    memcpy(out, rs_f32(v->cls), sizeof(float) * (size_t)W);
    const float *pe = rs_f32(v->pos);
    if (G != G0) {
        rs_vit_interp_pos(pe, W, G0, G, pos);
        pe = pos;
    }
    rs_vec_acc(out, pe, (int64_t)T * W);
    int hd = W / c->heads;
    rs_attn_desc ad = {.Tq = T, .Tk = T, .Hq = c->heads, .Hkv = c->heads, .d = hd, .ldq = 3 * W,
                       .ldk = 3 * W, .ldv = 3 * W, .ldo = W};
    for (int l = 0; l < c->layers; l++) {
        const rs_vit_layer *L = &v->layers[l];
        rs_layernorm_fwd(xb, NULL, NULL, out, rs_f32(L->ln1_w), rs_f32(L->ln1_b), T, W, c->eps, pool);
        rs_tlinear(L->qkv_w, L->qkv_b, xb, qkv, T, pool);
        if ((st = rs_attn_fwd(att, NULL, qkv, qkv + W, qkv + 2 * W, &ad, asc, pool))) return st;
        rs_tlinear(L->out_w, L->out_b, att, tmp, T, pool);
        rs_vec_acc(out, tmp, (int64_t)T * W);
        rs_layernorm_fwd(xb, NULL, NULL, out, rs_f32(L->ln2_w), rs_f32(L->ln2_b), T, W, c->eps, pool);
        rs_tlinear(L->up_w, L->up_b, xb, hid, T, pool);
        if (c->gelu_tanh) rs_gelu_tanh_fwd(hid, hid, (int64_t)T * c->mlp, pool);
        else rs_gelu_fwd(hid, hid, (int64_t)T * c->mlp, pool);
        rs_tlinear(L->down_w, L->down_b, hid, tmp, T, pool);
        rs_vec_acc(out, tmp, (int64_t)T * W);
    }
    rs_layernorm_fwd(out, NULL, NULL, out, rs_f32(v->lnv_w), rs_f32(v->lnv_b), T, W, c->eps, pool);
    return RSMOE_OK;
}
