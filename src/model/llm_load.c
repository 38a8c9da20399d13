/* llm_load.c - binds an rs_llm_weights to the tensors of an opened GGUF (llama.cpp naming). */
#include "model/llm_load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const rs_tensor *find(const rs_gguf *g, const char *prefix, const char *fmt, int l) {
    char tail[RS_NAME_MAX], name[RS_NAME_MAX];
    snprintf(tail, sizeof tail, fmt, l);
    snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", tail);
    return rs_gguf_find_tensor(g, name);
}

static rsmoe_status get_u32(const rs_gguf *g, const char *arch, const char *key, int *out, bool required,
                            int dflt) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    uint32_t v;
    if (rs_gguf_find_key(g, k) < 0) {
        if (required) return rs_error(RSMOE_ERR_FORMAT, "%s: missing key %s", rs_gguf_path(g), k);
        *out = dflt;
        return RSMOE_OK;
    }
    rsmoe_status st = rs_gguf_get_u32(g, k, &v);
    if (st) return st;
    if (v > (1u << 30)) return rs_error(RSMOE_ERR_FORMAT, "%s: %s = %u is not plausible", rs_gguf_path(g), k, v);
    *out = (int)v;
    return RSMOE_OK;
}

rsmoe_status rs_llm_bind_gguf(const rs_gguf *g, const char *arch, const char *prefix, rs_llm_weights *w) {
    memset(w, 0, sizeof *w);
    rs_llm_config *c = &w->c;
    rsmoe_status st;
    if ((st = get_u32(g, arch, "embedding_length", &c->dim, true, 0)) ||
        (st = get_u32(g, arch, "block_count", &c->n_layers, true, 0)) ||
        (st = get_u32(g, arch, "feed_forward_length", &c->ffn, true, 0)) ||
        (st = get_u32(g, arch, "attention.head_count", &c->n_heads, true, 0)) ||
        (st = get_u32(g, arch, "context_length", &c->max_seq, true, 0)))
        return st;
    if ((st = get_u32(g, arch, "attention.head_count_kv", &c->n_kv_heads, false, c->n_heads))) return st;
    if (c->n_heads <= 0 || c->dim % c->n_heads)
        return rs_error(RSMOE_ERR_FORMAT, "%s: %d heads do not divide width %d", rs_gguf_path(g), c->n_heads, c->dim);
    if ((st = get_u32(g, arch, "rope.dimension_count", &c->head_dim, false, c->dim / c->n_heads))) return st;
    char k[160];
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    c->rms_eps = rs_gguf_get_f32_or(g, k, 1e-5f);
    c->rope = rs_rope_default();
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    c->rope.theta = rs_gguf_get_f32_or(g, k, 10000.0f);
    /* llama.cpp's LLaMA GGUFs rotate interleaved pairs (its converter permutes q/k) */
    c->rope.interleaved = !rs_gguf_get_bool_or(g, "rsmoe.llm.rope_neox", false);
    c->rope.llama3 = rs_gguf_get_bool_or(g, "rsmoe.llm.rope_llama3", false);
    if (c->rope.llama3) {
        c->rope.factor = rs_gguf_get_f32_or(g, "rsmoe.llm.rope_llama3.factor", 32.0f);
        c->rope.low_freq_factor = rs_gguf_get_f32_or(g, "rsmoe.llm.rope_llama3.low_freq_factor", 1.0f);
        c->rope.high_freq_factor = rs_gguf_get_f32_or(g, "rsmoe.llm.rope_llama3.high_freq_factor", 4.0f);
        c->rope.original_max_pos = rs_gguf_get_f32_or(g, "rsmoe.llm.rope_llama3.original_context_length", 8192.0f);
    }
    w->tok_embd = find(g, prefix, "token_embd.weight", 0);
    if (!w->tok_embd) return rs_error(RSMOE_ERR_FORMAT, "%s: missing tensor %stoken_embd.weight", rs_gguf_path(g), prefix ? prefix : "");
    c->vocab = (int)w->tok_embd->ne[1];
    w->out_norm = find(g, prefix, "output_norm.weight", 0);
    w->output = find(g, prefix, "output.weight", 0);
    c->tied = w->output == NULL;
    if (c->tied) w->output = w->tok_embd;
    if (c->n_layers <= 0 || c->n_layers > RS_LLM_MAX_LAYERS)
        return rs_error(RSMOE_ERR_FORMAT, "%s: %d layers (1..%d supported)", rs_gguf_path(g), c->n_layers, RS_LLM_MAX_LAYERS);
    w->layers = calloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->layers) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        rs_llm_layer *L = &w->layers[l];
        L->attn_norm = find(g, prefix, "blk.%d.attn_norm.weight", l);
        L->wq = find(g, prefix, "blk.%d.attn_q.weight", l);
        L->wk = find(g, prefix, "blk.%d.attn_k.weight", l);
        L->wv = find(g, prefix, "blk.%d.attn_v.weight", l);
        L->wo = find(g, prefix, "blk.%d.attn_output.weight", l);
        L->ffn_norm = find(g, prefix, "blk.%d.ffn_norm.weight", l);
        L->w_gate = find(g, prefix, "blk.%d.ffn_gate.weight", l);
        L->w_up = find(g, prefix, "blk.%d.ffn_up.weight", l);
        L->w_down = find(g, prefix, "blk.%d.ffn_down.weight", l);
    }
    st = rs_llm_check(w);
    if (st) { free(w->layers); w->layers = NULL; }
    return st;
}

void rs_llm_unbind(rs_llm_weights *w) {
    free(w->layers);
    w->layers = NULL;
}
