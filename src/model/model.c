/* model.c - loading the whole RS-MoE model from one GGUF, the Instruction Router, presets. */
#include "model/model.h"

#include "kernels/ops.h"
#include "kernels/bf16x3.h"
#include "kernels/q8x16.h"
#include "kernels/quant.h"
#include "model/common.h"
#include "model/encoder_cnn.h"
#include "model/llm_load.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_default_names[3] = {"theme", "objects", "relationships"};
static const char *const k_default_prompts[3] = {
    "Describe the overall theme of this remote sensing image.",
    "Describe the objects in this remote sensing image: what they are, how many, their colour and size.",
    "Describe the spatial relationships between the objects in this remote sensing image."};
#define DEFAULT_INSTR "Describe this remote sensing image."
#define DEFAULT_VQA_SUFFIX "Answer the question using a single word or phrase."

static rsmoe_status copy_str_key(const rs_gguf *g, const char *key, char *dst, size_t cap, const char *dflt) {
    const char *s = rs_gguf_get_str_or(g, key, dflt);
    if (strlen(s) >= cap) return rs_error(RSMOE_ERR_FORMAT, "%s: %s longer than %zu bytes", rs_gguf_path(g), key, cap - 1);
    strcpy(dst, s);
    return RSMOE_OK;
}

static rsmoe_status bind_moe(rs_model *m) {
    const rs_gguf *g = m->g;
    rs_moe_config *c = &m->moe;
    rsmoe_status st;
    if ((st = rs_key_int(g, "rsmoe.moe.expert_count", 0, RS_MAX_EXPERTS, 0, &c->n_experts))) return st;
    if (c->n_experts == 0) return RSMOE_OK;
    if ((st = rs_key_int(g, "rsmoe.moe.lora_rank", 1, 4096, -1, &c->lora_rank)) ||
        (st = rs_key_int(g, "rsmoe.moe.soft_prompt_count", 0, 256, 0, &c->n_soft)) ||
        (st = rs_key_int(g, "rsmoe.moe.router_hidden", 1, 1 << 16, 64, &c->router_hidden)))
        return st;
    c->lora_alpha = rs_gguf_get_f32_or(g, "rsmoe.moe.lora_alpha", 2.0f * c->lora_rank);
    int64_t kn = rs_gguf_find_key(g, "rsmoe.moe.expert_names"), kp = rs_gguf_find_key(g, "rsmoe.moe.expert_prompts");
    for (int e = 0; e < c->n_experts; e++) {
        size_t len;
        const char *s = kn >= 0 && rs_gguf_arr_n(g, kn) > e ? rs_gguf_arr_str(g, kn, e, &len) : NULL;
        snprintf(c->names[e], RS_EXPERT_NAME_MAX, "%s", s ? s : e < 3 ? k_default_names[e] : "expert");
        s = kp >= 0 && rs_gguf_arr_n(g, kp) > e ? rs_gguf_arr_str(g, kp, e, &len) : NULL;
        if (!s && e >= 3) return rs_error(RSMOE_ERR_FORMAT, "%s: no prompt for expert %d", rs_gguf_path(g), e);
        snprintf(c->prompts[e], RS_EXPERT_PROMPT_MAX, "%s", s ? s : k_default_prompts[e]);
    }
    const rs_llm_config *lc = &m->llm.c;
    const int D = lc->dim, r = c->lora_rank;
    int64_t ins[RS_LT_COUNT], outs[RS_LT_COUNT];
    rs_lora_target_dims(lc, ins, outs);
    c->lora_targets = 0;
    for (int e = 0; e < c->n_experts; e++) {
        rs_lora_set *ls = &m->experts[e];
        memset(ls, 0, sizeof *ls);
        ls->rank = r;
        ls->scale = c->lora_alpha / (float)r;
        for (int l = 0; l < lc->n_layers; l++)
            for (int t = 0; t < RS_LT_COUNT; t++) {
                char fa[96], fb[96];
                snprintf(fa, sizeof fa, "expert.%d.blk.%%d.%s.lora_a", e, rs_lora_target_names[t]);
                snprintf(fb, sizeof fb, "expert.%d.blk.%%d.%s.lora_b", e, rs_lora_target_names[t]);
                const rs_tensor *A, *B;
                if ((st = rs_bind_opt(g, &A, ins[t], r, true, fa, l)) || (st = rs_bind_opt(g, &B, r, outs[t], true, fb, l)))
                    return st;
                if (!A != !B) return rs_error(RSMOE_ERR_FORMAT, "%s: expert %d layer %d %s has only one of lora_a/lora_b",
                                              rs_gguf_path(g), e, l, rs_lora_target_names[t]);
                ls->A[l][t] = rs_f32(A);
                ls->B[l][t] = rs_f32(B);
                if (A) c->lora_targets |= 1u << t;
            }
    }
    /* each expert's B matrices transposed once, for decoding (rs_lora_rows_fwd) */
    for (int e = 0; e < c->n_experts; e++) {
        rs_lora_set *ls = &m->experts[e];
        size_t n = 0;
        for (int l = 0; l < lc->n_layers; l++)
            for (int t = 0; t < RS_LT_COUNT; t++)
                if (ls->B[l][t]) n += (size_t)r * (size_t)outs[t];
        if (!n) continue;
        float *bt = malloc(n * sizeof(float));
        if (!bt) return rs_error(RSMOE_ERR_NOMEM, "out of memory (expert %d's transposed LoRA, %zu floats)", e, n);
        m->lora_bt[e] = bt;
        for (int l = 0; l < lc->n_layers; l++)
            for (int t = 0; t < RS_LT_COUNT; t++) {
                const float *B = ls->B[l][t];
                if (!B) continue;
                for (int q = 0; q < r; q++)
                    for (int o = 0; o < outs[t]; o++) bt[(size_t)q * outs[t] + o] = B[(size_t)o * r + q];
                ls->Bt[l][t] = bt;
                bt += (size_t)r * outs[t];
            }
    }
    int K = c->n_experts, M = c->n_soft, H = c->router_hidden;
    if ((st = rs_bind(g, &m->gate_w, 2 * D, K, true, "router.gate.weight", 0)) ||
        (st = rs_bind(g, &m->gate_b, K, 1, true, "router.gate.bias", 0)))
        return st;
    if (M > 0 && ((st = rs_bind(g, &m->soft_up_w, D, H, true, "router.soft_up.weight", 0)) ||
                  (st = rs_bind(g, &m->soft_up_b, H, 1, true, "router.soft_up.bias", 0)) ||
                  (st = rs_bind(g, &m->soft_down_w, H, (int64_t)K * M * D, false, "router.soft_down.weight", 0)) ||
                  (st = rs_bind(g, &m->soft_down_b, (int64_t)K * M * D, 1, true, "router.soft_down.bias", 0))))
        return st;
    return RSMOE_OK;
}

/* Weight matrices repacked at load (see rs_model_load_ex): q8_0 matrices for the VNNI / AMX-INT8
 * kernel (q8x16.h) when q8 and this CPU has VNNI; the f32 matrices of the ViT's blocks, every
 * product of which has one row per image token, as bf16 pairs for AMX (bf16x3.h) when f32 and
 * this CPU has AMX-BF16. The mmap'd pages of each original are given back once packed. */
static rsmoe_status repack(rs_model *m, bool q8, bool f32) {
    q8 = q8 && rs_q8x16_native();
    f32 = f32 && rs_bf16x3_native();
    if (!q8 && !f32) return RSMOE_OK;
    rs_pool *pool = NULL; /* started at the first big tensor: all CPUs share the copying */
    rsmoe_status st = RSMOE_OK;
    for (int64_t i = 0; i < rs_gguf_n_tensors(m->g) && !st; i++) {
        rs_tensor *t = rs_gguf_tensor_mut(m->g, i);
        if (t->packed || t->ne[2] != 1 || t->ne[3] != 1 || t->ne[1] == 1 || !rs_tensor_is_contiguous(t)) continue;
        size_t bytes = 0;
        if (q8 && t->type == RS_Q8_0) bytes = rs_q8x16_bytes(t->ne[1], t->ne[0]);
        else if (f32 && t->type == RS_F32 && !strncmp(t->name, "v.blk.", 6)) bytes = rs_bf16x3_bytes(t->ne[1], t->ne[0]);
        if (!bytes) continue;
        if (!pool && bytes >= ((size_t)1 << 20)) pool = rs_pool_new(rs_default_threads());
        void *p = rs_alloc_stream(bytes);
        if (!p) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory repacking %s (%zu bytes)", t->name, bytes); break; }
        st = t->type == RS_Q8_0 ? rs_q8x16_pack(t->data, t->ne[1], t->ne[0], p, pool)
                                : rs_bf16x3_pack(t->data, t->ne[1], t->ne[0], p, pool);
        if (st) { free(p); break; }
        t->packed = p;
        rs_gguf_release_pages(m->g, t->data, rs_tensor_nbytes(t));
    }
    rs_pool_free(pool);
    return st;
}

rsmoe_status rs_model_load(const char *path, rs_model **out) { return rs_model_load_ex(path, true, true, out); }

rsmoe_status rs_model_load_ex(const char *path, bool repack_q8, bool amx_f32, rs_model **out) {
    *out = NULL;
    rs_model *m = calloc(1, sizeof *m);
    if (!m) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    snprintf(m->path, sizeof m->path, "%s", path);
    rsmoe_status st = rs_gguf_open(path, &m->g);
    if (st) { free(m); return st; }
    const char *arch = rs_gguf_get_str_or(m->g, "general.architecture", "");
    if (strcmp(arch, "rsmoe")) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: not an RS-MoE model (general.architecture is '%s'; "
                      "an LLM-only file runs with `rsmoe generate`)", path, arch);
        goto fail;
    }
    const char *vk = rs_gguf_get_str_or(m->g, "rsmoe.vision.kind", "vit");
    if (!strcmp(vk, "vit")) {
        m->vision_kind = RS_VISION_VIT;
        if ((st = rs_vit_bind(m->g, &m->vit))) goto fail;
        m->enc_tokens = rs_vit_n_tokens(&m->vit.c, m->vit.c.image_size);
        m->enc_width = m->vit.c.width;
    } else if (!strcmp(vk, "cnn")) {
        m->vision_kind = RS_VISION_CNN;
        if ((st = rs_cnn_from_gguf(m->g, &m->cnn))) goto fail;
        m->enc_tokens = m->cnn->ntokens;
        m->enc_width = m->cnn->token_dim;
        if (m->cnn->in_c != 3) { st = rs_error(RSMOE_ERR_FORMAT, "%s: the CNN encoder reads %d channels (need 3)", path, m->cnn->in_c); goto fail; }
    } else {
        st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: image encoder kind '%s' is not supported by this build", path, vk);
        goto fail;
    }
    if ((st = rs_llm_bind_gguf(m->g, "llama", NULL, &m->llm))) goto fail;
    if ((st = rs_qformer_bind(m->g, m->enc_width, m->llm.c.dim, &m->qf))) goto fail;
    if ((st = rs_tokenizer_load_gguf(m->g, &m->tok))) goto fail;
    if (rs_tokenizer_n_vocab(m->tok) > m->llm.c.vocab || rs_tokenizer_n_vocab(m->tok) > m->qf.c.vocab) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: tokenizer has %d tokens but the LLM has %d and the Q-Former %d embeddings",
                      path, rs_tokenizer_n_vocab(m->tok), m->llm.c.vocab, m->qf.c.vocab);
        goto fail;
    }
    if ((st = bind_moe(m))) goto fail;
    if ((st = rs_retrieval_load(m->g, m->enc_width, &m->retr, &m->has_retrieval))) goto fail;
    if ((st = repack(m, repack_q8, amx_f32))) goto fail;
    if ((st = copy_str_key(m->g, "rsmoe.instruction.caption", m->instr_caption, sizeof m->instr_caption, DEFAULT_INSTR)) ||
        (st = copy_str_key(m->g, "rsmoe.instruction.vqa_suffix", m->vqa_suffix, sizeof m->vqa_suffix, DEFAULT_VQA_SUFFIX)))
        goto fail;
    *out = m;
    return RSMOE_OK;
fail:
    rs_model_free(m);
    return st;
}

void rs_model_free(rs_model *m) {
    if (!m) return;
    rs_vit_unbind(&m->vit);
    rs_cnn_free(m->cnn);
    rs_qformer_unbind(&m->qf);
    rs_llm_unbind(&m->llm);
    rs_tokenizer_free(m->tok);
    rs_retrieval_free(&m->retr);
    for (int64_t i = 0; m->g && i < rs_gguf_n_tensors(m->g); i++) free((void *)rs_gguf_tensor(m->g, i)->packed);
    for (int e = 0; e < RS_MAX_EXPERTS; e++) free(m->lora_bt[e]);
    rs_gguf_close(m->g);
    free(m);
}

void rs_router_forward(const rs_model *m, const float *instr_pool, const float *prefix, int n_prefix,
                       float *gates, float *soft, float *scratch, rs_pool *pool) {
    int D = m->llm.c.dim, K = m->moe.n_experts, M = m->moe.n_soft, H = m->moe.router_hidden;
    float *in = scratch; /* [2D]: pooled instruction ; pooled visual prefix */
    memcpy(in, instr_pool, sizeof(float) * (size_t)D);
    float *pv = in + D;
    memset(pv, 0, sizeof(float) * (size_t)D);
    for (int i = 0; i < n_prefix; i++) rs_vec_acc(pv, prefix + (size_t)i * D, D);
    if (n_prefix > 0) rs_vec_scale(pv, 1.0f / (float)n_prefix, D);
    rs_tlinear(m->gate_w, m->gate_b, in, gates, 1, pool);
    rs_softmax_fwd(gates, gates, 1, K, 1.0f, pool);
    if (M > 0 && soft) {
        float *h = in + 2 * D;
        rs_tlinear(m->soft_up_w, m->soft_up_b, pv, h, 1, pool);
        rs_gelu_fwd(h, h, H, pool);
        rs_tlinear(m->soft_down_w, m->soft_down_b, h, soft, 1, pool);
    }
}

static int64_t nel(const rs_tensor *t) { return t ? rs_tensor_nelements(t) : 0; }

rs_param_counts rs_model_param_counts(const rs_model *m) {
    rs_param_counts pc = {0};
    int64_t n = rs_gguf_n_tensors(m->g);
    for (int64_t i = 0; i < n; i++) {
        const rs_tensor *t = rs_gguf_tensor(m->g, i);
        int64_t e = rs_tensor_nelements(t);
        if (!strncmp(t->name, "v.", 2) || !strncmp(t->name, "cnn.", 4)) pc.vision += e;
        else if (!strncmp(t->name, "qf.", 3) || !strncmp(t->name, "proj.", 5)) pc.qformer += e;
        else if (!strncmp(t->name, "expert.", 7)) pc.experts += e;
        else if (!strncmp(t->name, "router.", 7)) pc.router += e;
        else if (!strncmp(t->name, "retrieval.", 10)) pc.retrieval += e;
        else pc.llm += e;
    }
    (void)nel;
    return pc;
}

/* ------------------------------------------------------------------ image encoder */
rsmoe_status rs_enc_scratch_init(const rs_model *m, int nthreads, rs_enc_scratch *s) {
    memset(s, 0, sizeof *s);
    if (m->vision_kind == RS_VISION_CNN) {
        size_t nb = rs_cnn_scratch_bytes(m->cnn) + 4096;
        s->bytes = nb;
        return rs_arena_init(&s->cnn, nb);
    }
    int side = m->vit.c.image_size;
    size_t a = 3 * (size_t)side * side, b = rs_vit_scratch_floats(&m->vit.c, side, nthreads);
    s->chw = malloc(sizeof(float) * a);
    s->vit = malloc(sizeof(float) * b);
    s->bytes = sizeof(float) * (a + b);
    if (!s->chw || !s->vit) { rs_enc_scratch_free(s); return rs_error(RSMOE_ERR_NOMEM, "out of memory for the image encoder"); }
    return RSMOE_OK;
}

void rs_enc_scratch_free(rs_enc_scratch *s) {
    free(s->chw);
    free(s->vit);
    rs_arena_free(&s->cnn);
    memset(s, 0, sizeof *s);
}

rsmoe_status rs_model_encode(const rs_model *m, const rs_image *img, float *tokens, rs_enc_scratch *s, rs_pool *pool) {
    if (!img || !img->data || img->w < 1 || img->h < 1 || img->c != 3)
        return rs_error(RSMOE_ERR_INVALID_ARG, "image encoder: need a non-empty RGB image");
    rsmoe_status st;
    if (m->vision_kind == RS_VISION_CNN) {
        rs_image rz = {0};
        const uint8_t *px = img->data;
        if (img->w != m->cnn->in_w || img->h != m->cnn->in_h) {
            if ((st = rs_image_resize_bicubic_u8(img, m->cnn->in_w, m->cnn->in_h, &rz))) return st;
            px = rz.data;
        }
        st = rs_cnn_forward_u8(m->cnn, px, tokens, NULL, &s->cnn, pool);
        rs_image_free(&rz);
        return st;
    }
    int side = m->vit.c.image_size;
    if ((st = rs_image_to_tensor(img, side, m->vit.c.mean, m->vit.c.std, s->chw))) return st;
    return rs_vit_forward(&m->vit, s->chw, side, tokens, s->vit, pool);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}

void rs_model_question(const rs_model *m, const char *question, int *text_len, char *prompt, size_t cap) {
    size_t ql = strlen(question);
    while (ql && (question[ql - 1] == ' ' || question[ql - 1] == '\n')) ql--;
    *text_len = (int)ql;
    snprintf(prompt, cap, "%.*s %s", (int)ql, question, m->vqa_suffix);
}

uint64_t rs_model_encoder_hash(const rs_model *m) {
    uint64_t h = 1469598103934665603ull;
    const char *prefix = m->vision_kind == RS_VISION_CNN ? "cnn." : "v.";
    h = fnv(h, prefix, strlen(prefix));
    int64_t n = rs_gguf_n_tensors(m->g);
    for (int64_t i = 0; i < n; i++) {
        const rs_tensor *t = rs_gguf_tensor(m->g, i);
        if (strncmp(t->name, prefix, strlen(prefix))) continue;
        h = fnv(h, t->name, strlen(t->name));
        h = fnv(h, t->ne, sizeof t->ne);
        h = fnv(h, &t->type, sizeof t->type);
        h = fnv(h, t->data, rs_tensor_nbytes(t));
    }
    return h;
}
