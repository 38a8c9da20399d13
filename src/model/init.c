/* init.c - model presets and `rsmoe init`: a complete RS-MoE GGUF with seeded random weights. */
#include "model/model.h"

#include "kernels/quant.h"
#include "model/encoder_cnn.h"
#include "model/llm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALL_TARGETS ((1u << RS_LT_COUNT) - 1)

static const rs_preset k_presets[] = {
    {.name = "test",
     .vit = {.image_size = 32, .patch = 8, .width = 32, .layers = 2, .heads = 4, .mlp = 64, .eps = 1e-6f},
     .qf = {.n_query = 4, .width = 32, .layers = 2, .heads = 4, .ffn = 64, .cross_freq = 2, .max_pos = 64, .eps = 1e-12f},
     .llm = {.dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8, .ffn = 64, .max_seq = 128,
             .rms_eps = 1e-5f, .rope = {.theta = 10000, .interleaved = true}},
     .moe = {.n_experts = 3, .lora_rank = 4, .lora_alpha = 8, .lora_targets = ALL_TARGETS, .n_soft = 2, .router_hidden = 16}},
    {.name = "tiny",
     .vit = {.image_size = 224, .patch = 16, .width = 192, .layers = 4, .heads = 3, .mlp = 768, .eps = 1e-6f},
     .qf = {.n_query = 16, .width = 192, .layers = 2, .heads = 3, .ffn = 768, .cross_freq = 2, .max_pos = 128, .eps = 1e-12f},
     .llm = {.dim = 256, .n_layers = 4, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .ffn = 688, .max_seq = 256,
             .rms_eps = 1e-5f, .rope = {.theta = 10000, .interleaved = true}},
     .moe = {.n_experts = 3, .lora_rank = 8, .lora_alpha = 16, .lora_targets = ALL_TARGETS, .n_soft = 4, .router_hidden = 64}},
    {.name = "paper-1b", /* EVA ViT-g/14 224 px, BERT-base Q-Former, Llama-3.2-1B */
     .vit = {.image_size = 224, .patch = 14, .width = 1408, .layers = 39, .heads = 16, .mlp = 6144, .eps = 1e-6f},
     .qf = {.n_query = 32, .width = 768, .layers = 12, .heads = 12, .ffn = 3072, .cross_freq = 2, .vocab = 30522,
            .max_pos = 512, .eps = 1e-12f},
     .llm = {.vocab = 128256, .dim = 2048, .n_layers = 16, .n_heads = 32, .n_kv_heads = 8, .head_dim = 64, .ffn = 8192,
             .max_seq = 131072, .rms_eps = 1e-5f, .tied = true,
             .rope = {.theta = 500000, .interleaved = true, .llama3 = true, .factor = 32, .low_freq_factor = 1,
                      .high_freq_factor = 4, .original_max_pos = 8192}},
     .moe = {.n_experts = 3, .lora_rank = 8, .lora_alpha = 16, .lora_targets = ALL_TARGETS, .n_soft = 4, .router_hidden = 64}},
    {.name = "paper-7b", /* EVA ViT-g/14 224 px, BERT-base Q-Former, Vicuna-7B */
     .vit = {.image_size = 224, .patch = 14, .width = 1408, .layers = 39, .heads = 16, .mlp = 6144, .eps = 1e-6f},
     .qf = {.n_query = 32, .width = 768, .layers = 12, .heads = 12, .ffn = 3072, .cross_freq = 2, .vocab = 30522,
            .max_pos = 512, .eps = 1e-12f},
     .llm = {.vocab = 32000, .dim = 4096, .n_layers = 32, .n_heads = 32, .n_kv_heads = 32, .head_dim = 128, .ffn = 11008,
             .max_seq = 2048, .rms_eps = 1e-6f, .rope = {.theta = 10000, .interleaved = true}},
     .moe = {.n_experts = 3, .lora_rank = 8, .lora_alpha = 16, .lora_targets = ALL_TARGETS, .n_soft = 4, .router_hidden = 64}},
};

const rs_preset *rs_preset_find(const char *name) {
    for (size_t i = 0; i < sizeof k_presets / sizeof k_presets[0]; i++)
        if (!strcmp(k_presets[i].name, name)) return &k_presets[i];
    return NULL;
}

const char *rs_preset_names(void) { return "test, tiny, paper-1b, paper-7b"; }

rs_init_params rs_init_default_params(void) {
    return (rs_init_params){.wtype = RS_F32, .seed = 42, .init_std = 0.02f};
}

/* ------------------------------------------------------------ a writer of generated tensors */
typedef struct {
    rs_gguf_writer *w;
    rs_rng rng;
    void **bufs;
    int n, cap;
    rs_dtype wtype;
    float std;
    float *row;
    int64_t row_cap;
    int64_t total, done;
    void (*progress)(float, void *);
    void *ud;
} builder;

enum { FILL_NORMAL, FILL_ONES, FILL_ZEROS, FILL_UNIFORM };

/* a [ne1 rows of ne0] tensor; matrices in the builder's dtype unless f32 is forced */
static rsmoe_status add(builder *b, const char *name, int64_t ne0, int64_t ne1, int fill, float scale, bool force_f32) {
    rs_dtype t = (force_f32 || ne1 == 1) ? RS_F32 : b->wtype;
    if (t == RS_Q8_0 && ne0 % RS_QK8_0) t = RS_F16;
    int64_t ne[2] = {ne0, ne1};
    rs_tensor tt;
    rsmoe_status st = rs_tensor_init(&tt, name, t, ne1 > 1 ? 2 : 1, ne, NULL);
    if (st) return st;
    if (b->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 256;
        void **nb = realloc(b->bufs, sizeof(void *) * (size_t)nc);
        if (!nb) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
        b->bufs = nb;
        b->cap = nc;
    }
    void *buf = malloc(rs_tensor_nbytes(&tt));
    if (!buf) return rs_error(RSMOE_ERR_NOMEM, "out of memory for tensor %s (%zu MiB)", name, rs_tensor_nbytes(&tt) >> 20);
    b->bufs[b->n++] = buf;
    if (ne0 > b->row_cap) {
        float *r = realloc(b->row, sizeof(float) * (size_t)ne0);
        if (!r) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
        b->row = r;
        b->row_cap = ne0;
    }
    for (int64_t r = 0; r < ne1; r++) {
        for (int64_t i = 0; i < ne0; i++)
            b->row[i] = fill == FILL_ONES ? 1.0f : fill == FILL_ZEROS ? 0.0f
                        : fill == FILL_UNIFORM ? (float)((2 * rs_rng_uniform(&b->rng) - 1) * scale)
                                               : (float)(rs_rng_normal(&b->rng) * scale);
        rs_convert_row(t, b->row, (uint8_t *)buf + (size_t)r * tt.nb[1], ne0);
    }
    tt.data = buf;
    b->done += ne0 * ne1;
    if (b->progress && b->total > 0) b->progress((float)b->done / (float)b->total, b->ud);
    return rs_gguf_writer_add_tensor(b->w, &tt);
}

#define ADD(name, ne0, ne1, fill, scale, f32) \
    do { if ((st = add(b, name, ne0, ne1, fill, scale, f32))) return st; } while (0)

static rsmoe_status add_ln(builder *b, const char *base, int64_t n) {
    rsmoe_status st;
    char nm[RS_NAME_MAX];
    snprintf(nm, sizeof nm, "%s.weight", base);
    ADD(nm, n, 1, FILL_ONES, 0, true);
    snprintf(nm, sizeof nm, "%s.bias", base);
    ADD(nm, n, 1, FILL_ZEROS, 0, true);
    return RSMOE_OK;
}

static rsmoe_status add_lin(builder *b, const char *base, int64_t in, int64_t out, bool bias) {
    rsmoe_status st;
    char nm[RS_NAME_MAX];
    snprintf(nm, sizeof nm, "%s.weight", base);
    ADD(nm, in, out, FILL_NORMAL, b->std, false);
    if (bias) {
        snprintf(nm, sizeof nm, "%s.bias", base);
        ADD(nm, out, 1, FILL_NORMAL, b->std, true);
    }
    return RSMOE_OK;
}

static int64_t count_params(const rs_preset *p, int V, int Vq) {
    const rs_vit_config *v = &p->vit;
    int64_t W = v->width, G = v->image_size / v->patch;
    int64_t n = 3 * v->patch * v->patch * W + W * (2 + 1 + G * G) + 2 * W;
    n += v->layers * (4 * W + 3 * W * W + 3 * W + W * W + W + 2 * W * v->mlp + v->mlp + W);
    const rs_qformer_config *q = &p->qf;
    int64_t Q = q->width;
    n += Q * (q->n_query + Vq + q->max_pos + 2) + Q * p->llm.dim + p->llm.dim;
    n += q->layers * (8 * Q * Q + 2 * (2 * Q * q->ffn)) + (q->layers + 1) / 2 * (2 * Q * Q + 2 * Q * W);
    const rs_llm_config *l = &p->llm;
    int64_t D = l->dim, hd = l->head_dim;
    n += (int64_t)V * D * (l->tied ? 1 : 2) + D;
    n += l->n_layers * (2 * D + D * l->n_heads * hd * 2 + 2 * D * l->n_kv_heads * hd + 3 * D * l->ffn);
    return n;
}

rsmoe_status rs_model_init_preset(const rs_preset *p, const rs_init_params *ip, const char *out_path,
                                  void (*progress)(float, void *), void *ud) {
    rsmoe_status st = RSMOE_OK;
    rs_tokenizer *tok = NULL;
    rs_cnn_encoder *cnn = NULL;
    builder bb = {0}, *b = &bb;
    rs_preset pk;
    if (ip->n_experts) {
        if (ip->n_experts < 0 || ip->n_experts > RS_MAX_EXPERTS)
            return rs_error(RSMOE_ERR_INVALID_ARG, "init: %d experts (1..%d allowed)", ip->n_experts, RS_MAX_EXPERTS);
        pk = *p;
        pk.moe.n_experts = ip->n_experts;
        p = &pk;
    }
    if (ip->encoder && (st = rs_cnn_load_gguf(ip->encoder, &cnn))) return st;
    if (ip->tokenizer) {
        if ((st = rs_tokenizer_load_gguf_file(ip->tokenizer, &tok))) { rs_cnn_free(cnn); return st; }
    } else {
        rs_tok_train_opts to = rs_tok_train_opts_default();
        to.vocab_size = 260; /* 4 specials + 256 bytes: byte-level, no merges */
        to.add_bos = true;
        const char *corpus[1] = {"a"};
        if ((st = rs_tokenizer_train_bpe(corpus, 1, &to, &tok))) { rs_cnn_free(cnn); return st; }
    }
    int Vt = rs_tokenizer_n_vocab(tok);
    int V = p->llm.vocab > Vt ? p->llm.vocab : Vt;
    int Vq = p->qf.vocab > Vt ? p->qf.vocab : Vt;
    b->w = rs_gguf_writer_new();
    if (!b->w) { rs_tokenizer_free(tok); rs_cnn_free(cnn); return RSMOE_ERR_NOMEM; }
    rs_rng_seed(&b->rng, ip->seed);
    b->wtype = ip->wtype;
    b->std = ip->init_std > 0 ? ip->init_std : 0.02f;
    b->progress = progress;
    b->ud = ud;
    b->total = count_params(p, V, Vq);
    rs_gguf_writer *w = b->w;
    const rs_vit_config *vc = &p->vit;
    const rs_qformer_config *qc = &p->qf;
    const rs_llm_config *lc = &p->llm;
    const rs_moe_config *mc = &p->moe;
    char nm[RS_NAME_MAX];
    if ((st = rs_gguf_writer_set_str(w, "general.architecture", "rsmoe")) ||
        (st = rs_gguf_writer_set_str(w, "general.name", p->name)) ||
        (st = rs_gguf_writer_set_str(w, "rsmoe.preset", p->name)) ||
        (st = rs_gguf_writer_set_u64(w, "rsmoe.init.seed", ip->seed)) ||
        (st = rs_gguf_writer_set_str(w, "rsmoe.vision.kind", cnn ? "cnn" : "vit")) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.query_count", (uint32_t)qc->n_query)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.embedding_length", (uint32_t)qc->width)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.block_count", (uint32_t)qc->layers)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.head_count", (uint32_t)qc->heads)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.feed_forward_length", (uint32_t)qc->ffn)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.cross_attention_freq", (uint32_t)qc->cross_freq)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.context_length", (uint32_t)qc->max_pos)) ||
        (st = rs_gguf_writer_set_f32(w, "rsmoe.qformer.layer_norm_epsilon", qc->eps)) ||
        (st = rs_gguf_writer_set_str(w, "rsmoe.qformer.tokenizer", "llm")) ||
        (st = rs_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)lc->max_seq)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)lc->dim)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)lc->n_layers)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)lc->ffn)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)lc->n_heads)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)lc->n_kv_heads)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)lc->head_dim)) ||
        (st = rs_gguf_writer_set_f32(w, "llama.rope.freq_base", (float)lc->rope.theta)) ||
        (st = rs_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", lc->rms_eps)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)V)) ||
        (st = rs_gguf_writer_set_bool(w, "rsmoe.llm.rope_neox", !lc->rope.interleaved)) ||
        (st = rs_gguf_writer_set_bool(w, "rsmoe.llm.rope_llama3", lc->rope.llama3)))
        goto done;
    if (lc->rope.llama3 &&
        ((st = rs_gguf_writer_set_f32(w, "rsmoe.llm.rope_llama3.factor", (float)lc->rope.factor)) ||
         (st = rs_gguf_writer_set_f32(w, "rsmoe.llm.rope_llama3.low_freq_factor", (float)lc->rope.low_freq_factor)) ||
         (st = rs_gguf_writer_set_f32(w, "rsmoe.llm.rope_llama3.high_freq_factor", (float)lc->rope.high_freq_factor)) ||
         (st = rs_gguf_writer_set_f32(w, "rsmoe.llm.rope_llama3.original_context_length", (float)lc->rope.original_max_pos))))
        goto done;
    if (!cnn &&
        ((st = rs_gguf_writer_set_u32(w, "rsmoe.vit.image_size", (uint32_t)vc->image_size)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.patch_size", (uint32_t)vc->patch)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.embedding_length", (uint32_t)vc->width)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.block_count", (uint32_t)vc->layers)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.head_count", (uint32_t)vc->heads)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.feed_forward_length", (uint32_t)vc->mlp)) ||
        (st = rs_gguf_writer_set_f32(w, "rsmoe.vit.layer_norm_epsilon", vc->eps)) ||
         (st = rs_gguf_writer_set_str(w, "rsmoe.vit.gelu", "erf"))))
        goto done;
    if ((st = rs_tokenizer_save_gguf(tok, w))) goto done;

    /* image encoder: the preset's ViT with random weights, or the given pretrained CNN */
    int W = cnn ? cnn->token_dim : vc->width, G = vc->image_size / vc->patch;
    if (cnn) {
        if ((st = rs_cnn_gguf_add(cnn, w, NULL, 0))) goto done;
        goto qformer;
    }
    /* the patch embedding stays f32 (the convolution kernel reads f32) */
    if ((st = add(b, "v.patch_embd.weight", 3 * vc->patch * vc->patch, W, FILL_NORMAL, b->std, true)) ||
        (st = add(b, "v.patch_embd.bias", W, 1, FILL_NORMAL, b->std, true)))
        goto done;
    if ((st = add(b, "v.class_embd", W, 1, FILL_NORMAL, b->std, true))) goto done;
    if ((st = add(b, "v.position_embd", W, 1 + G * G, FILL_NORMAL, b->std, true))) goto done;
    for (int l = 0; l < vc->layers; l++) {
        char base[64];
#define L(fmt) (snprintf(base, sizeof base, fmt, l), base)
        if ((st = add_ln(b, L("v.blk.%d.ln1"), W)) || (st = add_lin(b, L("v.blk.%d.attn_qkv"), W, 3 * W, true)) ||
            (st = add_lin(b, L("v.blk.%d.attn_out"), W, W, true)) || (st = add_ln(b, L("v.blk.%d.ln2"), W)) ||
            (st = add_lin(b, L("v.blk.%d.ffn_up"), W, vc->mlp, true)) ||
            (st = add_lin(b, L("v.blk.%d.ffn_down"), vc->mlp, W, true)))
            goto done;
    }
    if ((st = add_ln(b, "v.ln_vision", W))) goto done;

qformer:;
    /* Q-Former */
    int Q = qc->width;
    if ((st = add(b, "qf.query_embd", Q, qc->n_query, FILL_NORMAL, b->std, true)) ||
        (st = add(b, "qf.token_embd.weight", Q, Vq, FILL_NORMAL, b->std, false)) ||
        (st = add(b, "qf.position_embd.weight", Q, qc->max_pos, FILL_NORMAL, b->std, true)) ||
        (st = add_ln(b, "qf.embd_ln", Q)))
        goto done;
    for (int l = 0; l < qc->layers; l++) {
        char base[64];
        if ((st = add_lin(b, L("qf.blk.%d.attn_q"), Q, Q, true)) || (st = add_lin(b, L("qf.blk.%d.attn_k"), Q, Q, true)) ||
            (st = add_lin(b, L("qf.blk.%d.attn_v"), Q, Q, true)) || (st = add_lin(b, L("qf.blk.%d.attn_out"), Q, Q, true)) ||
            (st = add_ln(b, L("qf.blk.%d.attn_ln"), Q)))
            goto done;
        if (l % qc->cross_freq == 0 &&
            ((st = add_lin(b, L("qf.blk.%d.cross_q"), Q, Q, true)) || (st = add_lin(b, L("qf.blk.%d.cross_k"), W, Q, true)) ||
             (st = add_lin(b, L("qf.blk.%d.cross_v"), W, Q, true)) || (st = add_lin(b, L("qf.blk.%d.cross_out"), Q, Q, true)) ||
             (st = add_ln(b, L("qf.blk.%d.cross_ln"), Q))))
            goto done;
        if ((st = add_lin(b, L("qf.blk.%d.ffn_up"), Q, qc->ffn, true)) ||
            (st = add_lin(b, L("qf.blk.%d.ffn_down"), qc->ffn, Q, true)) || (st = add_ln(b, L("qf.blk.%d.ffn_ln"), Q)) ||
            (st = add_lin(b, L("qf.blk.%d.ffnq_up"), Q, qc->ffn, true)) ||
            (st = add_lin(b, L("qf.blk.%d.ffnq_down"), qc->ffn, Q, true)) || (st = add_ln(b, L("qf.blk.%d.ffnq_ln"), Q)))
            goto done;
    }
    int D = lc->dim;
    if ((st = add_lin(b, "proj", Q, D, true))) goto done;

    /* LLM */
    int qd = lc->n_heads * lc->head_dim, kvd = lc->n_kv_heads * lc->head_dim, F = lc->ffn;
    if ((st = add(b, "token_embd.weight", D, V, FILL_NORMAL, b->std, false))) goto done;
    for (int l = 0; l < lc->n_layers; l++) {
        char base[64];
        if ((st = add(b, L("blk.%d.attn_norm.weight"), D, 1, FILL_ONES, 0, true)) ||
            (st = add(b, L("blk.%d.attn_q.weight"), D, qd, FILL_NORMAL, b->std, false)) ||
            (st = add(b, L("blk.%d.attn_k.weight"), D, kvd, FILL_NORMAL, b->std, false)) ||
            (st = add(b, L("blk.%d.attn_v.weight"), D, kvd, FILL_NORMAL, b->std, false)) ||
            (st = add(b, L("blk.%d.attn_output.weight"), qd, D, FILL_NORMAL, b->std, false)) ||
            (st = add(b, L("blk.%d.ffn_norm.weight"), D, 1, FILL_ONES, 0, true)) ||
            (st = add(b, L("blk.%d.ffn_gate.weight"), D, F, FILL_NORMAL, b->std, false)) ||
            (st = add(b, L("blk.%d.ffn_up.weight"), D, F, FILL_NORMAL, b->std, false)) ||
            (st = add(b, L("blk.%d.ffn_down.weight"), F, D, FILL_NORMAL, b->std, false)))
            goto done;
    }
#undef L
    if ((st = add(b, "output_norm.weight", D, 1, FILL_ONES, 0, true))) goto done;
    if (!lc->tied && (st = add(b, "output.weight", D, V, FILL_NORMAL, b->std, false))) goto done;

    /* MoE: experts' LoRA (A random, B zero unless asked) and the router */
    if (mc->n_experts > 0) {
        int K = mc->n_experts, r = mc->lora_rank;
        const char *names[RS_MAX_EXPERTS], *prompts[RS_MAX_EXPERTS];
        static const char *const dn[3] = {"theme", "objects", "relationships"};
        static const char *const dp[3] = {
            "Describe the overall theme of this remote sensing image.",
            "Describe the objects in this remote sensing image: what they are, how many, their colour and size.",
            "Describe the spatial relationships between the objects in this remote sensing image."};
        for (int e = 0; e < K; e++) { names[e] = dn[e % 3]; prompts[e] = dp[e % 3]; }
        if (K == 1) { /* one expert for every aspect */
            names[0] = "all";
            prompts[0] = "Describe this remote sensing image.";
        }
        if ((st = rs_gguf_writer_set_u32(w, "rsmoe.moe.expert_count", (uint32_t)K)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.moe.lora_rank", (uint32_t)r)) ||
            (st = rs_gguf_writer_set_f32(w, "rsmoe.moe.lora_alpha", mc->lora_alpha)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.moe.soft_prompt_count", (uint32_t)mc->n_soft)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.moe.router_hidden", (uint32_t)mc->router_hidden)) ||
            (st = rs_gguf_writer_set_arr_str(w, "rsmoe.moe.expert_names", names, NULL, K)) ||
            (st = rs_gguf_writer_set_arr_str(w, "rsmoe.moe.expert_prompts", prompts, NULL, K)))
            goto done;
        int64_t ins[RS_LT_COUNT], outs[RS_LT_COUNT];
        rs_lora_target_dims(lc, ins, outs);
        for (int e = 0; e < K; e++)
            for (int l = 0; l < lc->n_layers; l++)
                for (int t = 0; t < RS_LT_COUNT; t++) {
                    if (!(mc->lora_targets & (1u << t))) continue;
                    snprintf(nm, sizeof nm, "expert.%d.blk.%d.%s.lora_a", e, l, rs_lora_target_names[t]);
                    if ((st = add(b, nm, ins[t], r, FILL_UNIFORM, 1.0f / sqrtf((float)ins[t]), true))) goto done;
                    snprintf(nm, sizeof nm, "expert.%d.blk.%d.%s.lora_b", e, l, rs_lora_target_names[t]);
                    if ((st = add(b, nm, r, outs[t], ip->lora_random_b ? FILL_NORMAL : FILL_ZEROS, b->std, true))) goto done;
                }
        if ((st = add(b, "router.gate.weight", 2 * D, K, FILL_NORMAL, b->std, true)) ||
            (st = add(b, "router.gate.bias", K, 1, FILL_ZEROS, 0, true)))
            goto done;
        if (mc->n_soft > 0 &&
            ((st = add(b, "router.soft_up.weight", D, mc->router_hidden, FILL_NORMAL, b->std, true)) ||
             (st = add(b, "router.soft_up.bias", mc->router_hidden, 1, FILL_ZEROS, 0, true)) ||
             (st = add(b, "router.soft_down.weight", mc->router_hidden, (int64_t)K * mc->n_soft * D, FILL_NORMAL, b->std, false)) ||
             (st = add(b, "router.soft_down.bias", (int64_t)K * mc->n_soft * D, 1, FILL_NORMAL, b->std, true))))
            goto done;
    }
    st = rs_gguf_writer_write(w, out_path);
done:
    rs_gguf_writer_free(b->w);
    for (int i = 0; i < b->n; i++) free(b->bufs[i]);
    free(b->bufs);
    free(b->row);
    rs_tokenizer_free(tok);
    rs_cnn_free(cnn);
    return st;
}
