/* qformer.c - see qformer.h */
#include "model/qformer.h"

#include "kernels/ops.h"
#include "kernels/quant.h"
#include "model/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rsmoe_status bind_attn(const rs_gguf *g, rs_qf_attn *a, const char *kind, int l, int W, int kvin) {
    char f[96];
    rsmoe_status st;
#define B(field, ne0, ne1, f32, suffix) \
    snprintf(f, sizeof f, "qf.blk.%%d.%s%s", kind, suffix); \
    if ((st = rs_bind(g, &a->field, ne0, ne1, f32, f, l))) return st;
    B(q_w, W, W, false, "_q.weight") B(q_b, W, 1, true, "_q.bias")
    B(k_w, kvin, W, false, "_k.weight") B(k_b, W, 1, true, "_k.bias")
    B(v_w, kvin, W, false, "_v.weight") B(v_b, W, 1, true, "_v.bias")
    B(o_w, W, W, false, "_out.weight") B(o_b, W, 1, true, "_out.bias")
    B(ln_w, W, 1, true, "_ln.weight") B(ln_b, W, 1, true, "_ln.bias")
#undef B
    return RSMOE_OK;
}

static rsmoe_status bind_ffn(const rs_gguf *g, rs_qf_ffn *a, const char *kind, int l, int W, int F) {
    char f[96];
    rsmoe_status st;
#define B(field, ne0, ne1, f32, suffix) \
    snprintf(f, sizeof f, "qf.blk.%%d.%s%s", kind, suffix); \
    if ((st = rs_bind(g, &a->field, ne0, ne1, f32, f, l))) return st;
    B(up_w, W, F, false, "_up.weight") B(up_b, F, 1, true, "_up.bias")
    B(down_w, F, W, false, "_down.weight") B(down_b, W, 1, true, "_down.bias")
    B(ln_w, W, 1, true, "_ln.weight") B(ln_b, W, 1, true, "_ln.bias")
#undef B
    return RSMOE_OK;
}

rsmoe_status rs_qformer_bind(const rs_gguf *g, int enc_width, int out_width, rs_qformer *q) {
    memset(q, 0, sizeof *q);
    rs_qformer_config *c = &q->c;
    rsmoe_status st;
    if ((st = rs_key_int(g, "rsmoe.qformer.query_count", 1, 4096, -1, &c->n_query)) ||
        (st = rs_key_int(g, "rsmoe.qformer.embedding_length", 1, 1 << 16, -1, &c->width)) ||
        (st = rs_key_int(g, "rsmoe.qformer.block_count", 1, 256, -1, &c->layers)) ||
        (st = rs_key_int(g, "rsmoe.qformer.head_count", 1, 1024, -1, &c->heads)) ||
        (st = rs_key_int(g, "rsmoe.qformer.feed_forward_length", 1, 1 << 20, -1, &c->ffn)) ||
        (st = rs_key_int(g, "rsmoe.qformer.cross_attention_freq", 1, 256, 2, &c->cross_freq)) ||
        (st = rs_key_int(g, "rsmoe.qformer.context_length", 1, 1 << 16, 512, &c->max_pos)))
        return st;
    if (c->width % c->heads)
        return rs_error(RSMOE_ERR_FORMAT, "%s: Q-Former width %d not divisible by %d heads", rs_gguf_path(g), c->width, c->heads);
    c->eps = rs_gguf_get_f32_or(g, "rsmoe.qformer.layer_norm_epsilon", 1e-12f);
    c->enc_width = enc_width;
    c->out_width = out_width;
    int W = c->width;
    const rs_tensor *tok = rs_gguf_find_tensor(g, "qf.token_embd.weight");
    if (!tok || tok->ne[0] != W) return rs_error(RSMOE_ERR_FORMAT, "%s: missing or misshapen qf.token_embd.weight", rs_gguf_path(g));
    c->vocab = (int)tok->ne[1];
    if ((st = rs_bind(g, &q->query, W, c->n_query, true, "qf.query_embd", 0)) ||
        (st = rs_bind(g, &q->tok, W, c->vocab, false, "qf.token_embd.weight", 0)) ||
        (st = rs_bind(g, &q->pos, W, c->max_pos, true, "qf.position_embd.weight", 0)) ||
        (st = rs_bind(g, &q->eln_w, W, 1, true, "qf.embd_ln.weight", 0)) ||
        (st = rs_bind(g, &q->eln_b, W, 1, true, "qf.embd_ln.bias", 0)) ||
        (st = rs_bind(g, &q->proj_w, W, out_width, false, "proj.weight", 0)) ||
        (st = rs_bind(g, &q->proj_b, out_width, 1, true, "proj.bias", 0)))
        return st;
    q->layers = calloc((size_t)c->layers, sizeof *q->layers);
    if (!q->layers) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->layers; l++) {
        rs_qf_layer *L = &q->layers[l];
        L->has_cross = l % c->cross_freq == 0;
        if ((st = bind_attn(g, &L->self, "attn", l, W, W)) ||
            (L->has_cross && (st = bind_attn(g, &L->cross, "cross", l, W, enc_width))) ||
            (st = bind_ffn(g, &L->ffn_text, "ffn", l, W, c->ffn)) ||
            (st = bind_ffn(g, &L->ffn_query, "ffnq", l, W, c->ffn))) {
            rs_qformer_unbind(q);
            return st;
        }
    }
    return RSMOE_OK;
}

void rs_qformer_unbind(rs_qformer *q) {
    free(q->layers);
    q->layers = NULL;
}

static size_t attn_sc(const rs_qformer_config *c, int Tq, int Tk, int nthreads) {
    rs_attn_desc ad = {.Tq = Tq, .Tk = Tk, .Hq = c->heads, .Hkv = c->heads, .d = c->width / c->heads};
    return rs_attn_fwd_scratch_floats(&ad, nthreads);
}

size_t rs_qformer_scratch_floats(const rs_qformer_config *c, int n_img, int n_text, int nthreads) {
    size_t T = (size_t)(c->n_query + n_text), W = (size_t)c->width;
    size_t a1 = attn_sc(c, (int)T, (int)T, nthreads), a2 = attn_sc(c, c->n_query, n_img, nthreads);
    return T * W * 6 + (size_t)n_img * W * 2 + T * (size_t)c->ffn + (a1 > a2 ? a1 : a2) + 64;
}

/* x [T, W] <- LN(x + dense(h)) */
static void add_dense_ln(float *x, const float *h, float *tmp, const rs_tensor *w, const rs_tensor *b,
                         const rs_tensor *lw, const rs_tensor *lb, int T, int W, float eps, rs_pool *pool) {
    rs_tlinear(w, b, h, tmp, T, pool);
    rs_vec_acc(x, tmp, (int64_t)T * W);
    rs_layernorm_fwd(x, NULL, NULL, x, rs_f32(lw), rs_f32(lb), T, W, eps, pool);
}

static void ffn(float *x, const rs_qf_ffn *f, float *hid, float *tmp, int T, int W, int F, float eps, rs_pool *pool) {
    if (T <= 0) return;
    rs_tlinear(f->up_w, f->up_b, x, hid, T, pool);
    rs_gelu_fwd(hid, hid, (int64_t)T * F, pool);
    add_dense_ln(x, hid, tmp, f->down_w, f->down_b, f->ln_w, f->ln_b, T, W, eps, pool);
}

rsmoe_status rs_qformer_forward(const rs_qformer *q, const float *img, int n_img, const int32_t *ids,
                                int n_text, float *prefix, float *qout, float *scratch, rs_pool *pool) {
    const rs_qformer_config *c = &q->c;
    int nq = c->n_query, T = nq + n_text, W = c->width;
    if (n_text < 0 || n_text > c->max_pos)
        return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former: instruction of %d tokens (at most %d)", n_text, c->max_pos);
    float *x = scratch, *qb = x + (size_t)T * W, *kb = qb + (size_t)T * W, *vb = kb + (size_t)T * W;
    float *att = vb + (size_t)T * W, *tmp = att + (size_t)T * W;
    float *ik = tmp + (size_t)T * W, *iv = ik + (size_t)n_img * W, *hid = iv + (size_t)n_img * W;
    float *asc = hid + (size_t)T * c->ffn;
    memcpy(x, rs_f32(q->query), sizeof(float) * (size_t)nq * W);
    for (int t = 0; t < n_text; t++) {
        if (ids[t] < 0 || ids[t] >= c->vocab)
            return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former: token id %d outside its vocabulary (%d)", ids[t], c->vocab);
        float *row = x + (size_t)(nq + t) * W;
        rs_row_to_f32(q->tok->type, (const uint8_t *)q->tok->data + (size_t)ids[t] * q->tok->nb[1], row, W);
        rs_vec_acc(row, rs_f32(q->pos) + (size_t)t * W, W);
    }
    rs_layernorm_fwd(x, NULL, NULL, x, rs_f32(q->eln_w), rs_f32(q->eln_b), T, W, c->eps, pool);
    rs_attn_desc sa = {.Tq = T, .Tk = T, .Hq = c->heads, .Hkv = c->heads, .d = W / c->heads};
    rs_attn_desc ca = {.Tq = nq, .Tk = n_img, .Hq = c->heads, .Hkv = c->heads, .d = W / c->heads};
    rsmoe_status st;
    for (int l = 0; l < c->layers; l++) {
        const rs_qf_layer *L = &q->layers[l];
        rs_tlinear(L->self.q_w, L->self.q_b, x, qb, T, pool);
        rs_tlinear(L->self.k_w, L->self.k_b, x, kb, T, pool);
        rs_tlinear(L->self.v_w, L->self.v_b, x, vb, T, pool);
        if ((st = rs_attn_fwd(att, NULL, qb, kb, vb, &sa, asc, pool))) return st;
        add_dense_ln(x, att, tmp, L->self.o_w, L->self.o_b, L->self.ln_w, L->self.ln_b, T, W, c->eps, pool);
        if (L->has_cross) {
            rs_tlinear(L->cross.q_w, L->cross.q_b, x, qb, nq, pool);
            rs_tlinear(L->cross.k_w, L->cross.k_b, img, ik, n_img, pool);
            rs_tlinear(L->cross.v_w, L->cross.v_b, img, iv, n_img, pool);
            if ((st = rs_attn_fwd(att, NULL, qb, ik, iv, &ca, asc, pool))) return st;
            add_dense_ln(x, att, tmp, L->cross.o_w, L->cross.o_b, L->cross.ln_w, L->cross.ln_b, nq, W, c->eps, pool);
        }
        ffn(x, &L->ffn_query, hid, tmp, nq, W, c->ffn, c->eps, pool);
        ffn(x + (size_t)nq * W, &L->ffn_text, hid, tmp, n_text, W, c->ffn, c->eps, pool);
    }
    if (qout) memcpy(qout, x, sizeof(float) * (size_t)nq * W);
    rs_tlinear(q->proj_w, q->proj_b, x, prefix, nq, pool);
    return RSMOE_OK;
}
