/* hf_import.c - see hf_import.h. Tensor names follow the transformers library's Blip2* /
 * InstructBlip* and Llama* classes (any leading prefix such as "model." or
 * "language_model." is found from a marker tensor). */
#include "formats/hf_import.h"

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/quant.h"
#include "model/llm.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

rs_hf_params rs_hf_default_params(void) {
    return (rs_hf_params){.wtype = RS_F32, .seed = 42, .n_experts = 3, .lora_rank = 8, .lora_alpha = 16,
                          .n_soft = 4, .router_hidden = 64};
}

/* ------------------------------------------------------------------ small helpers */
static cJSON *load_json(const char *path, bool required, rsmoe_status *st) {
    *st = RSMOE_OK;
    if (!required && access(path, R_OK)) return NULL;
    char *txt = rs_read_file(path, (size_t)512 << 20, NULL, st);
    if (!txt) return NULL;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        *st = rs_error(RSMOE_ERR_FORMAT, "%s: not a JSON object", path);
        return NULL;
    }
    return j;
}

static const cJSON *jget(const cJSON *o, const char *k) { return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL; }
static double jnum(const cJSON *o, const char *k, double dflt) {
    const cJSON *v = jget(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}
/* an integer value (non-integral or out of int range: -1, which every caller refuses) */
static int jint(const cJSON *o, const char *k, double dflt) {
    double v = jnum(o, k, dflt);
    return v >= -2147483648.0 && v <= 2147483647.0 && v == (double)(long long)v ? (int)v : -1;
}
static const char *jstr(const cJSON *o, const char *k, const char *dflt) {
    const cJSON *v = jget(o, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* prefix of the first tensor whose name ends with marker (and contains `must`, if given);
 * false if none */
static bool find_prefix(const rs_safetensors *s, const char *marker, const char *must, char *prefix, size_t cap) {
    for (int64_t i = 0; i < rs_st_n_tensors(s); i++) {
        const char *n = rs_st_tensor_at(s, i)->name;
        if (!ends_with(n, marker) || (must && !strstr(n, must))) continue;
        size_t pl = strlen(n) - strlen(marker);
        if (pl && n[pl - 1] != '.') continue;
        if (pl >= cap) continue;
        memcpy(prefix, n, pl);
        prefix[pl] = 0;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ output builder */
typedef struct {
    rs_gguf_writer *w;
    void **bufs;
    int n, cap;
    rs_dtype wtype;
    rs_rng rng;
    float *row;
    int64_t row_cap;
    rs_hf_report *rep;
} outb;

static rsmoe_status keep(outb *o, void *p) {
    if (o->n == o->cap) {
        int nc = o->cap ? o->cap * 2 : 512;
        void **nb = realloc(o->bufs, sizeof *nb * (size_t)nc);
        if (!nb) { free(p); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
        o->bufs = nb;
        o->cap = nc;
    }
    o->bufs[o->n++] = p;
    return RSMOE_OK;
}

static void note(outb *o, const char *fmt, const char *a) {
    size_t l = strlen(o->rep->notes);
    if (l + 2 >= sizeof o->rep->notes) return;
    snprintf(o->rep->notes + l, sizeof o->rep->notes - l, fmt, a);
    l = strlen(o->rep->notes);
    if (l + 1 < sizeof o->rep->notes) { o->rep->notes[l] = '\n'; o->rep->notes[l + 1] = 0; }
}

static rs_dtype out_type(const outb *o, int64_t ne0, int64_t ne1, bool force_f32) {
    if (force_f32 || ne1 == 1) return RS_F32;
    if (o->wtype == RS_Q8_0 && ne0 % RS_QK8_0) return RS_F16;
    return o->wtype;
}

/* a tensor from rows produced by fill(ctx, r, row[ne0]) */
typedef rsmoe_status (*row_fn)(void *ctx, int64_t r, float *row, int64_t ne0);

static rsmoe_status add_rows(outb *o, const char *name, int64_t ne0, int64_t ne1, bool force_f32, row_fn fn, void *ctx) {
    rs_dtype t = out_type(o, ne0, ne1, force_f32);
    int64_t ne[2] = {ne0, ne1};
    rs_tensor tt;
    rsmoe_status st = rs_tensor_init(&tt, name, t, ne1 > 1 ? 2 : 1, ne, NULL);
    if (st) return st;
    void *buf = malloc(rs_tensor_nbytes(&tt));
    if (!buf) return rs_error(RSMOE_ERR_NOMEM, "out of memory for tensor %s (%zu MiB)", name, rs_tensor_nbytes(&tt) >> 20);
    if ((st = keep(o, buf))) return st;
    if (ne0 > o->row_cap) {
        float *r = realloc(o->row, sizeof(float) * (size_t)ne0);
        if (!r) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
        o->row = r;
        o->row_cap = ne0;
    }
    for (int64_t r = 0; r < ne1; r++) {
        if ((st = fn(ctx, r, o->row, ne0))) return st;
        rs_convert_row(t, o->row, (uint8_t *)buf + (size_t)r * tt.nb[1], ne0);
    }
    tt.data = buf;
    return rs_gguf_writer_add_tensor(o->w, &tt);
}

static rsmoe_status rows_of_st(void *ctx, int64_t r, float *row, int64_t ne0) {
    return rs_st_read_f32((const rs_st_tensor *)ctx, r * ne0, ne0, row);
}
/* a checkpoint tensor: its bytes are passed to the writer as they are (no copy) when the
 * source dtype is the output type, else converted row by row */
static rsmoe_status add_st(outb *o, const char *name, int64_t ne0, int64_t ne1, bool force_f32, const rs_st_tensor *src) {
    rs_dtype t = out_type(o, ne0, ne1, force_f32);
    int same = t == RS_F32 ? (int)RS_ST_F32 : t == RS_F16 ? (int)RS_ST_F16 : t == RS_BF16 ? (int)RS_ST_BF16 : -1;
    if ((int)src->dtype == same && src->n == ne0 * ne1) {
        int64_t ne[2] = {ne0, ne1};
        rs_tensor tt;
        rsmoe_status st = rs_tensor_init(&tt, name, t, ne1 > 1 ? 2 : 1, ne, (void *)src->data);
        return st ? st : rs_gguf_writer_add_tensor(o->w, &tt);
    }
    return add_rows(o, name, ne0, ne1, force_f32, rows_of_st, (void *)src);
}

static rsmoe_status rows_of_f32(void *ctx, int64_t r, float *row, int64_t ne0) {
    memcpy(row, (const float *)ctx + r * ne0, sizeof(float) * (size_t)ne0);
    return RSMOE_OK;
}

typedef struct { outb *o; int kind; float a; } fill_ctx;
enum { F_NORMAL, F_ONES, F_ZEROS, F_UNIFORM };
static rsmoe_status rows_fill(void *ctx, int64_t r, float *row, int64_t ne0) {
    fill_ctx *f = ctx;
    (void)r;
    for (int64_t i = 0; i < ne0; i++)
        row[i] = f->kind == F_ONES ? 1.0f : f->kind == F_ZEROS ? 0.0f
                 : f->kind == F_UNIFORM ? (float)((2 * rs_rng_uniform(&f->o->rng) - 1) * f->a)
                                        : (float)(rs_rng_normal(&f->o->rng) * f->a);
    return RSMOE_OK;
}

static rsmoe_status add_init(outb *o, const char *name, int64_t ne0, int64_t ne1, bool force_f32, int kind, float a) {
    fill_ctx f = {o, kind, a};
    o->rep->n_initialised++;
    return add_rows(o, name, ne0, ne1, force_f32, rows_fill, &f);
}

/* ------------------------------------------------------------------ checkpoint side */
typedef struct {
    const char *dir;
    rs_safetensors *s;
    char pre[256];
} ckpt;

static const char *shape_str(const int64_t *sh, int nd, char *buf, size_t cap) {
    size_t l = 0;
    buf[l++] = '[';
    for (int i = 0; i < nd && l < cap - 24; i++)
        l += (size_t)snprintf(buf + l, cap - l, "%s%lld", i ? ", " : "", (long long)sh[i]);
    snprintf(buf + l, cap - l, "]");
    return buf;
}

/* finds prefix+name and checks its PyTorch shape: d0 x d1 (d1 = 0: a vector of d0; dims
 * of size 1 are ignored so [1, 1, W] matches a vector of W) */
static rsmoe_status get(const ckpt *c, const char *name, int64_t d0, int64_t d1, bool required, const rs_st_tensor **out) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", c->pre, name);
    const rs_st_tensor *t = rs_st_find(c->s, full);
    *out = NULL;
    if (!t) return required ? rs_error(RSMOE_ERR_FORMAT, "%s: missing tensor %s", c->dir, full) : RSMOE_OK;
    int64_t sh[RS_ST_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) sh[nd++] = t->shape[i];
    int64_t want[2] = {d0, d1};
    int wn = d1 ? 2 : 1;
    int64_t w2[2];
    int wn2 = 0;
    for (int i = 0; i < wn; i++)
        if (want[i] != 1) w2[wn2++] = want[i];
    bool ok = nd == wn2;
    for (int i = 0; ok && i < nd; i++) ok = sh[i] == w2[i];
    if (!ok) {
        char a[128], b[128];
        return rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s", rs_st_file_path(c->s, t->file), full,
                        shape_str(t->shape, t->ndim, a, sizeof a), shape_str(want, wn, b, sizeof b));
    }
    *out = t;
    return RSMOE_OK;
}

/* copies HF tensor `name` [d0, d1] (PyTorch order) into our tensor `ours` (ne = {d1, d0}) */
static rsmoe_status put(outb *o, const ckpt *c, const char *ours, const char *name, int64_t d0, int64_t d1, bool force_f32) {
    const rs_st_tensor *t;
    rsmoe_status st = get(c, name, d0, d1, true, &t);
    if (st) return st;
    o->rep->n_imported++;
    return d1 ? add_st(o, ours, d1, d0, force_f32, t)
              : add_st(o, ours, d0, 1, true, t);
}

/* linear layer: HF name.weight [out, in] + name.bias [out] */
static rsmoe_status put_lin(outb *o, const ckpt *c, const char *ours, const char *name, int64_t in, int64_t out, bool bias) {
    char a[256], b[256];
    snprintf(a, sizeof a, "%s.weight", ours);
    snprintf(b, sizeof b, "%s.weight", name);
    rsmoe_status st = put(o, c, a, b, out, in, false);
    if (st || !bias) return st;
    snprintf(a, sizeof a, "%s.bias", ours);
    snprintf(b, sizeof b, "%s.bias", name);
    return put(o, c, a, b, out, 0, true);
}

static rsmoe_status put_norm(outb *o, const ckpt *c, const char *ours, const char *name, int64_t n) {
    char a[256], b[256];
    rsmoe_status st;
    snprintf(a, sizeof a, "%s.weight", ours);
    snprintf(b, sizeof b, "%s.weight", name);
    if ((st = put(o, c, a, b, n, 0, true))) return st;
    snprintf(a, sizeof a, "%s.bias", ours);
    snprintf(b, sizeof b, "%s.bias", name);
    return put(o, c, a, b, n, 0, true);
}

static rsmoe_status open_ckpt(const char *dir, ckpt *c) {
    memset(c, 0, sizeof *c);
    c->dir = dir;
    return rs_st_open(dir, &c->s);
}

/* config.json of dir; sub: the nested config to use when present ("vision_config", ...) */
static rsmoe_status load_config(const char *dir, cJSON **root) {
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    rsmoe_status st;
    *root = load_json(p, true, &st);
    return st;
}

/* ------------------------------------------------------------------ LLM */
typedef struct {
    int vocab, dim, layers, heads, kv_heads, head_dim, ffn, ctx;
    float eps, theta;
    bool tied, llama3;
    float factor, lo, hi, orig;
} llm_cfg;

static rsmoe_status llm_arch(const char *dir, const cJSON *root) {
    const cJSON *cfg = jget(root, "text_config") ? jget(root, "text_config") : root;
    const char *mt = jstr(cfg, "model_type", NULL);
    const cJSON *arch = jget(cfg, "architectures");
    const char *a0 = cJSON_IsArray(arch) && cJSON_IsString(arch->child) ? arch->child->valuestring : "";
    if (!mt || (strcmp(mt, "llama") && strcmp(mt, "mistral")))
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s/config.json: model_type '%s' (%s) is not a LLaMA-family LLM (need 'llama')",
                        dir, mt ? mt : "(none)", a0);
    return RSMOE_OK;
}

static const rs_st_tensor *find2d(const ckpt *c, const char *fmt, int l) {
    char tail[200], nm[512];
    snprintf(tail, sizeof tail, fmt, l);
    snprintf(nm, sizeof nm, "%s%s", c->pre, tail);
    const rs_st_tensor *t = rs_st_find(c->s, nm);
    return t && t->ndim == 2 ? t : NULL;
}

/* sizes from the tensors (config.json's, when given, must agree); heads and the rest from
 * config.json with LlamaConfig's defaults */
static rsmoe_status llm_config(const char *dir, const cJSON *root, const ckpt *ck, llm_cfg *c) {
    const cJSON *cfg = jget(root, "text_config") ? jget(root, "text_config") : root;
    const rs_st_tensor *emb = find2d(ck, "embed_tokens.weight", 0), *gate = find2d(ck, "layers.0.mlp.gate_proj.weight", 0),
                       *kp = find2d(ck, "layers.0.self_attn.k_proj.weight", 0);
    if (!emb || !gate || !kp)
        return rs_error(RSMOE_ERR_FORMAT, "%s: missing or misshapen %sembed_tokens.weight, %slayers.0.mlp.gate_proj.weight or "
                        "%slayers.0.self_attn.k_proj.weight", dir, ck->pre, ck->pre, ck->pre);
    c->vocab = (int)emb->shape[0];
    c->dim = (int)emb->shape[1];
    c->ffn = (int)gate->shape[0];
    char nm[512];
    for (c->layers = 0; c->layers <= RS_LLM_MAX_LAYERS; c->layers++) {
        snprintf(nm, sizeof nm, "%slayers.%d.input_layernorm.weight", ck->pre, c->layers);
        if (!rs_st_find(ck->s, nm)) break;
    }
    static const struct { const char *key; size_t off; } chk[] = {
        {"hidden_size", offsetof(llm_cfg, dim)}, {"vocab_size", offsetof(llm_cfg, vocab)},
        {"intermediate_size", offsetof(llm_cfg, ffn)}, {"num_hidden_layers", offsetof(llm_cfg, layers)}};
    for (size_t i = 0; i < sizeof chk / sizeof chk[0]; i++) {
        const cJSON *v = jget(cfg, chk[i].key);
        int have = *(const int *)((const char *)c + chk[i].off);
        if (cJSON_IsNumber(v) && jint(cfg, chk[i].key, 0) != have)
            return rs_error(RSMOE_ERR_FORMAT, "%s/config.json: %s = %d but the tensors have %d", dir, chk[i].key,
                            jint(cfg, chk[i].key, 0), have);
    }
    c->heads = jint(cfg, "num_attention_heads", 32);
    c->ctx = jint(cfg, "max_position_embeddings", 2048);
    c->eps = (float)jnum(cfg, "rms_norm_eps", 1e-6);
    c->theta = (float)jnum(cfg, "rope_theta", 10000);
    c->tied = cJSON_IsTrue(jget(cfg, "tie_word_embeddings"));
    if (c->heads <= 0 || c->layers <= 0 || c->layers > RS_LLM_MAX_LAYERS || c->dim % c->heads || c->ctx <= 0)
        return rs_error(RSMOE_ERR_FORMAT, "%s: bad LLM configuration (hidden_size %d, %d layers (1..%d), %d heads)", dir, c->dim,
                        c->layers, RS_LLM_MAX_LAYERS, c->heads);
    c->head_dim = jint(cfg, "head_dim", c->dim / c->heads);
    if (c->head_dim <= 0 || c->head_dim % 2 || kp->shape[0] % c->head_dim)
        return rs_error(RSMOE_ERR_FORMAT, "%s: head_dim %d does not divide k_proj's %lld rows", dir, c->head_dim,
                        (long long)kp->shape[0]);
    c->kv_heads = jint(cfg, "num_key_value_heads", (double)(kp->shape[0] / c->head_dim));
    if (c->kv_heads <= 0 || c->heads % c->kv_heads)
        return rs_error(RSMOE_ERR_FORMAT, "%s/config.json: %d key/value heads do not divide %d heads", dir, c->kv_heads,
                        c->heads);
    if (cJSON_IsString(jget(cfg, "hidden_act")) && strcmp(jstr(cfg, "hidden_act", ""), "silu"))
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s/config.json: hidden_act '%s' (only silu)", dir, jstr(cfg, "hidden_act", ""));
    const cJSON *rs = jget(cfg, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        const char *ty = jstr(rs, "rope_type", jstr(rs, "type", ""));
        if (strcmp(ty, "llama3"))
            return rs_error(RSMOE_ERR_UNSUPPORTED, "%s/config.json: rope_scaling type '%s' (only llama3)", dir, ty);
        c->llama3 = true;
        c->factor = (float)jnum(rs, "factor", 32);
        c->lo = (float)jnum(rs, "low_freq_factor", 1);
        c->hi = (float)jnum(rs, "high_freq_factor", 4);
        c->orig = (float)jnum(rs, "original_max_position_embeddings", 8192);
    }
    return RSMOE_OK;
}

static rsmoe_status import_llm(outb *o, const ckpt *c0, const llm_cfg *lc) {
    ckpt c = *c0;
    int D = lc->dim, qd = lc->heads * lc->head_dim, kvd = lc->kv_heads * lc->head_dim, F = lc->ffn, V = lc->vocab;
    rsmoe_status st;
    char a[128], b[128];
    if ((st = put(o, &c, "token_embd.weight", "embed_tokens.weight", V, D, false))) return st;
    for (int l = 0; l < lc->layers; l++) {
        static const struct { const char *ours, *hf; int kind; } m[] = {
            {"attn_q", "self_attn.q_proj", 0}, {"attn_k", "self_attn.k_proj", 1}, {"attn_v", "self_attn.v_proj", 1},
            {"attn_output", "self_attn.o_proj", 2}, {"ffn_gate", "mlp.gate_proj", 3}, {"ffn_up", "mlp.up_proj", 3},
            {"ffn_down", "mlp.down_proj", 4}};
        for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
            int in = m[i].kind == 2 ? qd : m[i].kind == 4 ? F : D;
            int out = m[i].kind == 0 ? qd : m[i].kind == 1 ? kvd : m[i].kind == 3 ? F : D;
            snprintf(a, sizeof a, "blk.%d.%s.weight", l, m[i].ours);
            snprintf(b, sizeof b, "layers.%d.%s.weight", l, m[i].hf);
            if ((st = put(o, &c, a, b, out, in, false))) return st;
        }
        snprintf(a, sizeof a, "blk.%d.attn_norm.weight", l);
        snprintf(b, sizeof b, "layers.%d.input_layernorm.weight", l);
        if ((st = put(o, &c, a, b, D, 0, true))) return st;
        snprintf(a, sizeof a, "blk.%d.ffn_norm.weight", l);
        snprintf(b, sizeof b, "layers.%d.post_attention_layernorm.weight", l);
        if ((st = put(o, &c, a, b, D, 0, true))) return st;
    }
    if ((st = put(o, &c, "output_norm.weight", "norm.weight", D, 0, true))) return st;
    if (!lc->tied) {
        /* lm_head sits beside the "model." part: strip its last component */
        char root[256];
        snprintf(root, sizeof root, "%s", c0->pre);
        size_t l = strlen(root);
        if (l && root[l - 1] == '.') root[--l] = 0;
        char *dot = strrchr(root, '.');
        if (dot) dot[1] = 0;
        else root[0] = 0;
        snprintf(c.pre, sizeof c.pre, "%s", root);
        char lm[300];
        snprintf(lm, sizeof lm, "%slm_head.weight", root);
        /* newer layouts put it elsewhere ("model.language_model." + top-level "lm_head") */
        if (!rs_st_find(c.s, lm) && !find_prefix(c.s, "lm_head.weight", NULL, c.pre, sizeof c.pre))
            snprintf(c.pre, sizeof c.pre, "%s", root);
        if ((st = put(o, &c, "output.weight", "lm_head.weight", V, D, false))) return st;
    }
    return RSMOE_OK;
}

static rsmoe_status llm_keys(rs_gguf_writer *w, const llm_cfg *c, int ctx) {
    rsmoe_status st;
    if ((st = rs_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)ctx)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->dim)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->layers)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->ffn)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->heads)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->kv_heads)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim)) ||
        (st = rs_gguf_writer_set_f32(w, "llama.rope.freq_base", c->theta)) ||
        (st = rs_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->eps)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab)) ||
        (st = rs_gguf_writer_set_bool(w, "rsmoe.llm.rope_neox", true)) ||
        (st = rs_gguf_writer_set_bool(w, "rsmoe.llm.rope_llama3", c->llama3)))
        return st;
    if (c->llama3 &&
        ((st = rs_gguf_writer_set_f32(w, "rsmoe.llm.rope_llama3.factor", c->factor)) ||
         (st = rs_gguf_writer_set_f32(w, "rsmoe.llm.rope_llama3.low_freq_factor", c->lo)) ||
         (st = rs_gguf_writer_set_f32(w, "rsmoe.llm.rope_llama3.high_freq_factor", c->hi)) ||
         (st = rs_gguf_writer_set_f32(w, "rsmoe.llm.rope_llama3.original_context_length", c->orig))))
        return st;
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ tokenizers */
/* protobuf reading (wire types 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) */
typedef struct { const uint8_t *p, *end; bool bad; } pb;

static uint64_t pb_varint(pb *b) {
    uint64_t v = 0;
    for (int s = 0; s < 70; s += 7) {
        if (b->p >= b->end) { b->bad = true; return 0; }
        uint8_t c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) return v;
    }
    b->bad = true;
    return 0;
}

/* next field: returns false at the end; *len_data for wire type 2 */
static bool pb_next(pb *b, uint32_t *field, int *wt, uint64_t *val, pb *sub) {
    if (b->bad || b->p >= b->end) return false;
    uint64_t key = pb_varint(b);
    *field = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case 0: *val = pb_varint(b); break;
    case 1: if (b->end - b->p < 8) { b->bad = true; return false; } memcpy(val, b->p, 8); b->p += 8; break;
    case 5: {
        if (b->end - b->p < 4) { b->bad = true; return false; }
        uint32_t u;
        memcpy(&u, b->p, 4);
        *val = u;
        b->p += 4;
        break;
    }
    case 2: {
        uint64_t n = pb_varint(b);
        if (b->bad || n > (uint64_t)(b->end - b->p)) { b->bad = true; return false; }
        sub->p = b->p;
        sub->end = b->p + n;
        sub->bad = false;
        b->p += n;
        break;
    }
    default: b->bad = true; return false;
    }
    return !b->bad;
}

rsmoe_status rs_hf_spm_load(const char *path, rs_tokenizer **out) {
    *out = NULL;
    rsmoe_status st;
    size_t len = 0;
    uint8_t *buf = (uint8_t *)rs_read_file(path, (size_t)64 << 20, &len, &st);
    if (!buf) return st;
    int cap = 0, n = 0;
    char **toks = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    int unk = 0, bos = 1, eos = 2, pad = -1;
    bool dummy = true;
    pb b = {buf, buf + len, false}, sub, s2;
    uint32_t f;
    int wt;
    uint64_t v;
    st = RSMOE_OK;
    while (!st && pb_next(&b, &f, &wt, &v, &sub)) {
        if (f == 1 && wt == 2) {
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                char **nt = realloc(toks, sizeof *nt * (size_t)cap);
                if (nt) toks = nt;
                size_t *nl = realloc(lens, sizeof *nl * (size_t)cap);
                if (nl) lens = nl;
                float *ns = realloc(scores, sizeof *ns * (size_t)cap);
                if (ns) scores = ns;
                int32_t *ny = realloc(types, sizeof *ny * (size_t)cap);
                if (ny) types = ny;
                if (!nt || !nl || !ns || !ny) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); break; }
            }
            toks[n] = NULL;
            lens[n] = 0;
            scores[n] = 0;
            types[n] = RS_TOKT_NORMAL;
            while (pb_next(&sub, &f, &wt, &v, &s2)) {
                if (f == 1 && wt == 2) {
                    free(toks[n]);
                    size_t l = (size_t)(s2.end - s2.p);
                    if (!(toks[n] = malloc(l + 1))) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); break; }
                    memcpy(toks[n], s2.p, l);
                    toks[n][l] = 0;
                    lens[n] = l;
                } else if (f == 2 && wt == 5) {
                    uint32_t u = (uint32_t)v;
                    memcpy(&scores[n], &u, 4);
                } else if (f == 3 && wt == 0) {
                    types[n] = (int32_t)v;
                }
            }
            n++;
            if (sub.bad || !toks[n - 1]) {
                if (!st) st = rs_error(RSMOE_ERR_FORMAT, "%s: piece %d is malformed", path, n - 1);
                break;
            }
            if (types[n - 1] < 1 || types[n - 1] > 6) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: piece %d has type %d", path, n - 1, types[n - 1]);
                break;
            }
        } else if (f == 2 && wt == 2) { /* TrainerSpec */
            while (pb_next(&sub, &f, &wt, &v, &s2)) {
                if (wt != 0) continue;
                if (f == 40) unk = (int)(int32_t)v;
                else if (f == 41) bos = (int)(int32_t)v;
                else if (f == 42) eos = (int)(int32_t)v;
                else if (f == 43) pad = (int)(int32_t)v;
            }
        } else if (f == 3 && wt == 2) { /* NormalizerSpec */
            while (pb_next(&sub, &f, &wt, &v, &s2))
                if (f == 3 && wt == 0) dummy = v != 0;
        }
    }
    if (!st && b.bad) st = rs_error(RSMOE_ERR_FORMAT, "%s: not a SentencePiece model (malformed protobuf)", path);
    if (!st && n == 0) st = rs_error(RSMOE_ERR_FORMAT, "%s: no pieces: not a SentencePiece model", path);
    if (!st) {
        rs_tok_vocab vb = rs_tok_vocab_default(RS_TOK_SPM);
        vb.n_tokens = n;
        vb.tokens = (const char *const *)toks;
        vb.token_lens = lens;
        vb.scores = scores;
        vb.types = types;
        vb.unk = unk < n ? unk : -1;
        vb.bos = bos < n ? bos : -1;
        vb.eos = eos < n ? eos : -1;
        vb.pad = pad < n ? pad : -1;
        vb.add_bos = true;
        vb.add_space_prefix = dummy;
        st = rs_tokenizer_build(&vb, out);
    }
    for (int i = 0; i < n; i++) free(toks[i]);
    free(toks);
    free(lens);
    free(scores);
    free(types);
    free(buf);
    return st;
}

static int tok_id(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 2147483647.0 ? (int)v->valuedouble : -1;
}

/* tokenizer.json: byte-level BPE */
static rsmoe_status load_tokenizer_json(const char *dir, const char *path, rs_tokenizer **out) {
    rsmoe_status st;
    cJSON *root = load_json(path, true, &st);
    if (!root) return st;
    const cJSON *model = jget(root, "model"), *vocab = jget(model, "vocab"), *merges = jget(model, "merges");
    char **toks = NULL, **mg = NULL;
    int32_t *types = NULL;
    int n = 0, nm = 0;
    st = RSMOE_OK;
    if (strcmp(jstr(model, "type", ""), "BPE") || !cJSON_IsObject(vocab)) {
        st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: model type '%s' (only byte-level BPE; SentencePiece needs tokenizer.model)",
                      path, jstr(model, "type", "?"));
        goto done;
    }
    if (cJSON_IsTrue(jget(model, "byte_fallback"))) {
        st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: a SentencePiece-style BPE (byte_fallback): put its tokenizer.model beside it",
                      path);
        goto done;
    }
    for (const cJSON *e = vocab->child; e; e = e->next)
        if (tok_id(e) + 1 > n) n = tok_id(e) + 1;
    const cJSON *added = jget(root, "added_tokens");
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next)
        if (tok_id(jget(e, "id")) + 1 > n) n = tok_id(jget(e, "id")) + 1;
    if (n <= 0 || n > (1 << 24)) { st = rs_error(RSMOE_ERR_FORMAT, "%s: bad vocabulary size %d", path, n); goto done; }
    toks = calloc((size_t)n, sizeof *toks);
    types = calloc((size_t)n, sizeof *types);
    if (!toks || !types) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int id = tok_id(e);
        if (id < 0) { st = rs_error(RSMOE_ERR_FORMAT, "%s: token '%s' has a bad id", path, e->string); goto done; }
        toks[id] = e->string;
        types[id] = RS_TOKT_NORMAL;
    }
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
        int id = tok_id(jget(e, "id"));
        const char *s = jstr(e, "content", NULL);
        if (id < 0 || !s) { st = rs_error(RSMOE_ERR_FORMAT, "%s: bad added token", path); goto done; }
        toks[id] = (char *)s;
        types[id] = cJSON_IsTrue(jget(e, "special")) ? RS_TOKT_CONTROL : RS_TOKT_USER_DEFINED;
    }
    for (int i = 0; i < n; i++)
        if (!toks[i]) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: no token has id %d (ids must be 0..%d without gaps)", path, i, n - 1);
            goto done;
        }
    nm = cJSON_IsArray(merges) ? cJSON_GetArraySize(merges) : 0;
    if (nm) {
        mg = calloc((size_t)nm, sizeof *mg);
        if (!mg) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
        int i = 0;
        for (const cJSON *e = merges->child; e; e = e->next, i++) {
            if (cJSON_IsString(e)) mg[i] = strdup(e->valuestring);
            else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                     cJSON_IsString(e->child->next)) {
                size_t la = strlen(e->child->valuestring), lb = strlen(e->child->next->valuestring);
                if ((mg[i] = malloc(la + lb + 2))) {
                    memcpy(mg[i], e->child->valuestring, la);
                    mg[i][la] = ' ';
                    memcpy(mg[i] + la + 1, e->child->next->valuestring, lb + 1);
                }
            } else {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: merge %d is malformed", path, i);
                goto done;
            }
            if (!mg[i]) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
        }
    }
    {
        rs_tok_vocab vb = rs_tok_vocab_default(RS_TOK_BPE);
        vb.n_tokens = n;
        vb.tokens = (const char *const *)toks;
        vb.types = types;
        vb.n_merges = nm;
        vb.merges = (const char *const *)mg;
        char *pre = cJSON_PrintUnformatted(jget(root, "pre_tokenizer"));
        vb.pre = pre && strstr(pre, "\\\\p{N}{1,3}") ? RS_TOK_PRE_LLAMA3 : RS_TOK_PRE_GPT2;
        free(pre);
        /* special ids: config.json, else tokenizer_config.json's token texts */
        char p[4096];
        snprintf(p, sizeof p, "%s/config.json", dir);
        cJSON *cfg = load_json(p, false, &st);
        st = RSMOE_OK;
        const cJSON *tc = jget(cfg, "text_config") ? jget(cfg, "text_config") : cfg;
        const cJSON *eos = jget(tc, "eos_token_id");
        vb.bos = jint(tc, "bos_token_id", -1);
        vb.eos = cJSON_IsArray(eos) ? tok_id(eos->child) : tok_id(eos);
        vb.pad = jint(tc, "pad_token_id", -1);
        snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
        cJSON *tcfg = load_json(p, false, &st);
        st = RSMOE_OK;
        const cJSON *ab = jget(tcfg, "add_bos_token");
        char *post = cJSON_PrintUnformatted(jget(root, "post_processor"));
        if (cJSON_IsBool(ab)) vb.add_bos = cJSON_IsTrue(ab);
        else vb.add_bos = vb.bos >= 0 && vb.bos < n && post && toks[vb.bos][0] && strstr(post, toks[vb.bos]);
        free(post);
        if (vb.bos >= n || vb.eos >= n) vb.bos = vb.eos = -1;
        if (vb.pad >= n) vb.pad = -1;
        st = rs_tokenizer_build(&vb, out);
        cJSON_Delete(cfg);
        cJSON_Delete(tcfg);
    }
done:
    for (int i = 0; i < nm && mg; i++) free(mg[i]);
    free(mg);
    free(toks);
    free(types);
    cJSON_Delete(root);
    return st;
}

rsmoe_status rs_hf_tokenizer_load(const char *dir, rs_tokenizer **out) {
    *out = NULL;
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    if (!access(p, R_OK)) return rs_hf_spm_load(p, out);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    if (!access(p, R_OK)) return load_tokenizer_json(dir, p, out);
    return rs_error(RSMOE_ERR_IO, "%s: no tokenizer.model or tokenizer.json", dir);
}

/* BERT vocab.txt -> WordPiece tokenizer (phantom-space form) */
static rsmoe_status load_bert_vocab(const char *path, rs_tokenizer **out) {
    rsmoe_status st;
    char *txt = rs_read_file(path, (size_t)64 << 20, NULL, &st);
    if (!txt) return st;
    int n = 0, cap = 0;
    char **toks = NULL;
    int32_t *types = NULL;
    st = RSMOE_OK;
    for (char *line = txt, *nl; line && *line; line = nl) {
        nl = strchr(line, '\n');
        if (nl) *nl++ = 0;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            char **nt = realloc(toks, sizeof *nt * (size_t)cap);
            int32_t *ny = nt ? realloc(types, sizeof *ny * (size_t)cap) : NULL;
            if (nt) toks = nt;
            if (ny) types = ny;
            if (!nt || !ny) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); break; }
        }
        bool special = l >= 3 && line[0] == '[' && line[l - 1] == ']';
        if (special || !strncmp(line, "##", 2)) toks[n] = strdup(special ? line : line + 2);
        else if ((toks[n] = malloc(l + 4))) { memcpy(toks[n], "\xe2\x96\x81", 3); memcpy(toks[n] + 3, line, l + 1); }
        if (!toks[n]) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); break; }
        types[n] = special ? RS_TOKT_CONTROL : RS_TOKT_NORMAL;
        n++;
    }
    if (!st) {
        rs_tok_vocab vb = rs_tok_vocab_default(RS_TOK_WPM);
        vb.n_tokens = n;
        vb.tokens = (const char *const *)toks;
        vb.types = types;
        for (int i = 0; i < n; i++) {
            if (!strcmp(toks[i], "[UNK]")) vb.unk = i;
            else if (!strcmp(toks[i], "[CLS]")) vb.cls = vb.bos = i;
            else if (!strcmp(toks[i], "[SEP]")) vb.sep = vb.eos = i;
            else if (!strcmp(toks[i], "[PAD]")) vb.pad = i;
            else if (!strcmp(toks[i], "[MASK]")) vb.mask = i;
        }
        st = rs_tokenizer_build(&vb, out);
    }
    for (int i = 0; i < n; i++) free(toks[i]);
    free(toks);
    free(types);
    free(txt);
    return st;
}

/* ------------------------------------------------------------------ vision */
typedef struct { int size, patch, width, layers, heads, mlp; float eps; bool tanh; } vis_cfg;

static const cJSON *sub_config(const cJSON *root, const char *key) { return jget(root, key) ? jget(root, key) : root; }

static rsmoe_status check_arch(const char *dir, const cJSON *root, const char *what, const char *const *ok) {
    const char *mt = jstr(root, "model_type", "");
    for (int i = 0; ok[i]; i++)
        if (!strcmp(mt, ok[i])) return RSMOE_OK;
    return rs_error(RSMOE_ERR_UNSUPPORTED, "%s/config.json: model_type '%s' is not a BLIP-2/InstructBLIP %s", dir, mt, what);
}

static const char *const k_vision_types[] = {"instructblip",        "blip-2", "blip_2", "instructblip_vision_model",
                                             "blip_2_vision_model", NULL};
static const char *const k_qformer_types[] = {"instructblip", "blip-2", "blip_2", "instructblip_qformer", "blip_2_qformer", NULL};

static rsmoe_status import_vision(outb *o, const ckpt *c, const cJSON *root, vis_cfg *vc) {
    rsmoe_status st;
    const cJSON *cfg = sub_config(root, "vision_config");
    const rs_st_tensor *pe, *pos;
    char nm[512];
    snprintf(nm, sizeof nm, "%sembeddings.patch_embedding.weight", c->pre);
    pe = rs_st_find(c->s, nm);
    if (!pe || pe->ndim != 4 || pe->shape[1] != 3 || pe->shape[2] != pe->shape[3])
        return rs_error(RSMOE_ERR_FORMAT, "%s: missing or misshapen %s (need [width, 3, P, P])", c->dir, nm);
    vc->width = (int)pe->shape[0];
    vc->patch = (int)pe->shape[2];
    snprintf(nm, sizeof nm, "%sembeddings.position_embedding", c->pre);
    pos = rs_st_find(c->s, nm);
    if (!pos || pos->n % vc->width) return rs_error(RSMOE_ERR_FORMAT, "%s: missing or misshapen %s", c->dir, nm);
    int64_t np = pos->n / vc->width - 1, G = (int64_t)llround(sqrt((double)np));
    if (G * G != np)
        return rs_error(RSMOE_ERR_FORMAT, "%s: %s holds %lld patch positions, not a square grid", c->dir, nm, (long long)np);
    vc->size = (int)G * vc->patch;
    for (vc->layers = 0;; vc->layers++) {
        snprintf(nm, sizeof nm, "%sencoder.layers.%d.layer_norm1.weight", c->pre, vc->layers);
        if (!rs_st_find(c->s, nm)) break;
    }
    if (!vc->layers)
        return rs_error(RSMOE_ERR_FORMAT, "%s: missing tensor %sencoder.layers.0.layer_norm1.weight", c->dir, c->pre);
    snprintf(nm, sizeof nm, "%sencoder.layers.0.mlp.fc1.weight", c->pre);
    const rs_st_tensor *fc1 = rs_st_find(c->s, nm);
    if (!fc1 || fc1->ndim != 2) return rs_error(RSMOE_ERR_FORMAT, "%s: missing or misshapen %s", c->dir, nm);
    vc->mlp = (int)fc1->shape[0];
    vc->heads = jint(cfg, "num_attention_heads", 16);
    vc->eps = (float)jnum(cfg, "layer_norm_eps", 1e-6);
    const char *act = jstr(cfg, "hidden_act", "gelu");
    vc->tanh = strcmp(act, "gelu") != 0;
    if (strcmp(act, "gelu") && strcmp(act, "gelu_pytorch_tanh") && strcmp(act, "gelu_new"))
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s/config.json: vision hidden_act '%s'", c->dir, act);
    if (vc->heads <= 0 || vc->width % vc->heads)
        return rs_error(RSMOE_ERR_FORMAT, "%s/config.json: %d heads do not divide the vision width %d", c->dir, vc->heads,
                        vc->width);
    if (jnum(cfg, "hidden_size", vc->width) != vc->width || jnum(cfg, "num_hidden_layers", vc->layers) != vc->layers ||
        jnum(cfg, "patch_size", vc->patch) != vc->patch || jnum(cfg, "image_size", vc->size) != vc->size)
        return rs_error(
            RSMOE_ERR_FORMAT,
            "%s: config.json's vision sizes (hidden %g, layers %g, patch %g, image %g) disagree with the tensors (%d, %d, %d, %d)",
            c->dir, jnum(cfg, "hidden_size", 0), jnum(cfg, "num_hidden_layers", 0), jnum(cfg, "patch_size", 0),
            jnum(cfg, "image_size", 0), vc->width, vc->layers, vc->patch, vc->size);
    int W = vc->width, P = vc->patch;
    /* the conv weight [W, 3, P, P] read flat: rows of (channel, ky, kx) */
    o->rep->n_imported++;
    if ((st = add_st(o, "v.patch_embd.weight", 3 * P * P, W, true, pe))) return st;
    if ((st = put(o, c, "v.patch_embd.bias", "embeddings.patch_embedding.bias", W, 0, true)) ||
        (st = put(o, c, "v.class_embd", "embeddings.class_embedding", W, 0, true)) ||
        (st = put(o, c, "v.position_embd", "embeddings.position_embedding", 1 + G * G, W, true)))
        return st;
    for (int l = 0; l < vc->layers; l++) {
        char ours[128], hf[128];
#define N2(fo, fh) (snprintf(ours, sizeof ours, fo, l), snprintf(hf, sizeof hf, fh, l))
        N2("v.blk.%d.ln1", "encoder.layers.%d.layer_norm1");
        if ((st = put_norm(o, c, ours, hf, W))) return st;
        N2("v.blk.%d.attn_qkv.weight", "encoder.layers.%d.self_attn.qkv.weight");
        if ((st = put(o, c, ours, hf, 3 * W, W, false))) return st;
        /* bias: qkv.bias [3W] (newer transformers) or q_bias + zeros + v_bias (EVA) */
        const rs_st_tensor *qb, *vb, *qkvb;
        N2("v.blk.%d.attn_qkv.bias", "encoder.layers.%d.self_attn.qkv.bias");
        if ((st = get(c, hf, 3 * W, 0, false, &qkvb))) return st;
        if (qkvb) {
            if ((st = put(o, c, ours, hf, 3 * W, 0, true))) return st;
        } else {
            float *bias = calloc((size_t)3 * W, sizeof *bias);
            if (!bias || (st = keep(o, bias))) return bias ? st : rs_error(RSMOE_ERR_NOMEM, "out of memory");
            snprintf(hf, sizeof hf, "encoder.layers.%d.self_attn.q_bias", l);
            if ((st = get(c, hf, W, 0, false, &qb))) return st;
            snprintf(hf, sizeof hf, "encoder.layers.%d.self_attn.v_bias", l);
            if ((st = get(c, hf, W, 0, false, &vb))) return st;
            if (!qb != !vb)
                return rs_error(RSMOE_ERR_FORMAT, "%s: layer %d has only one of %sencoder.layers.%d.self_attn.q_bias / v_bias",
                                c->dir, l, c->pre, l);
            if (qb && ((st = rs_st_read_f32(qb, 0, W, bias)) || (st = rs_st_read_f32(vb, 0, W, bias + 2 * W)))) return st;
            o->rep->n_imported += qb ? 2 : 0;
            if ((st = add_rows(o, ours, 3 * W, 1, true, rows_of_f32, bias))) return st;
        }
        N2("v.blk.%d.attn_out", "encoder.layers.%d.self_attn.projection");
        if ((st = put_lin(o, c, ours, hf, W, W, true))) return st;
        N2("v.blk.%d.ln2", "encoder.layers.%d.layer_norm2");
        if ((st = put_norm(o, c, ours, hf, W))) return st;
        N2("v.blk.%d.ffn_up", "encoder.layers.%d.mlp.fc1");
        if ((st = put_lin(o, c, ours, hf, W, vc->mlp, true))) return st;
        N2("v.blk.%d.ffn_down", "encoder.layers.%d.mlp.fc2");
        if ((st = put_lin(o, c, ours, hf, vc->mlp, W, true))) return st;
#undef N2
    }
    return put_norm(o, c, "v.ln_vision", "post_layernorm", W);
}

/* ------------------------------------------------------------------ Q-Former */
typedef struct { int nq, width, layers, heads, ffn, freq, max_pos, enc_width; float eps; } qf_cfg;

typedef struct {
    const rs_st_tensor *bert;   /* word_embeddings [Vb, Wq] */
    const rs_tokenizer *llm_tok, *wpm;
    int32_t *ids;
    int ids_cap;
    float *tmp;
} map_ctx;

/* row r of qf.token_embd: the mean of the BERT embeddings of LLM token r's text
 * (WordPiece-tokenised); [UNK]'s row when the text gives no BERT token */
static rsmoe_status rows_mapped(void *ctx, int64_t r, float *row, int64_t W) {
    map_ctx *m = ctx;
    char text[512];
    int len = rs_tokenizer_piece(m->llm_tok, -1, (int32_t)r, text, sizeof text - 1);
    if (len < 0) len = 0;
    if (len > (int)sizeof text - 1) len = (int)sizeof text - 1;
    text[len] = 0;
    int n = 0;
    rsmoe_status st = rs_tokenizer_encode_n(m->wpm, text, (size_t)len, false, m->ids, m->ids_cap, &n);
    if (st) return st;
    int64_t Vb = m->bert->shape[0];
    int cnt = 0;
    memset(row, 0, sizeof(float) * (size_t)W);
    for (int i = 0; i < n; i++) {
        if (m->ids[i] < 0 || m->ids[i] >= Vb) continue;
        if ((st = rs_st_read_f32(m->bert, (int64_t)m->ids[i] * W, W, m->tmp))) return st;
        for (int64_t j = 0; j < W; j++) row[j] += m->tmp[j];
        cnt++;
    }
    if (!cnt) {
        int32_t u = rs_tokenizer_unk(m->wpm);
        if (u < 0 || u >= Vb) u = 0;
        return rs_st_read_f32(m->bert, (int64_t)u * W, W, row);
    }
    for (int64_t j = 0; j < W; j++) row[j] /= (float)cnt;
    return RSMOE_OK;
}

static rsmoe_status import_qformer(outb *o, const ckpt *c, const ckpt *top, const cJSON *root, int enc_width, int D,
                                   const rs_tokenizer *llm_tok, qf_cfg *qc) {
    rsmoe_status st;
    const cJSON *cfg = sub_config(root, "qformer_config");
    char nm[512];
    snprintf(nm, sizeof nm, "%sencoder.layer.0.attention.attention.query.weight", c->pre);
    const rs_st_tensor *q0 = rs_st_find(c->s, nm);
    if (!q0 || q0->ndim != 2 || q0->shape[0] != q0->shape[1])
        return rs_error(RSMOE_ERR_FORMAT, "%s: missing or misshapen %s", c->dir, nm);
    qc->width = (int)q0->shape[0];
    for (qc->layers = 0;; qc->layers++) {
        snprintf(nm, sizeof nm, "%sencoder.layer.%d.attention.attention.query.weight", c->pre, qc->layers);
        if (!rs_st_find(c->s, nm)) break;
    }
    snprintf(nm, sizeof nm, "%sencoder.layer.0.intermediate_query.dense.weight", c->pre);
    const rs_st_tensor *iq = rs_st_find(c->s, nm);
    if (!iq || iq->ndim != 2) return rs_error(RSMOE_ERR_FORMAT, "%s: missing or misshapen %s", c->dir, nm);
    qc->ffn = (int)iq->shape[0];
    qc->heads = jint(cfg, "num_attention_heads", 12);
    qc->freq = jint(cfg, "cross_attention_frequency", 2);
    qc->eps = (float)jnum(cfg, "layer_norm_eps", 1e-12);
    qc->enc_width = jint(cfg, "encoder_hidden_size", enc_width);
    if (qc->enc_width != enc_width)
        return rs_error(RSMOE_ERR_FORMAT, "%s/config.json: the Q-Former reads %d-wide image tokens but the vision model gives %d",
                        c->dir, qc->enc_width, enc_width);
    if (qc->heads <= 0 || qc->width % qc->heads || qc->freq <= 0)
        return rs_error(RSMOE_ERR_FORMAT, "%s/config.json: bad Q-Former heads %d / cross_attention_frequency %d", c->dir,
                        qc->heads, qc->freq);
    const char *act = jstr(cfg, "hidden_act", "gelu");
    if (strcmp(act, "gelu"))
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s/config.json: Q-Former hidden_act '%s' (only gelu)", c->dir, act);
    int W = qc->width, F = qc->ffn;
    /* query tokens [1, Q, W] sit beside the qformer: search the whole checkpoint */
    const rs_st_tensor *qt = NULL;
    for (int64_t i = 0; i < rs_st_n_tensors(c->s) && !qt; i++) {
        const rs_st_tensor *t = rs_st_tensor_at(c->s, i);
        if (!strcmp(t->name, "query_tokens") || ends_with(t->name, ".query_tokens")) qt = t;
    }
    if (!qt || qt->n % W) return rs_error(RSMOE_ERR_FORMAT, "%s: missing or misshapen tensor query_tokens", c->dir);
    qc->nq = (int)(qt->n / W);
    o->rep->n_imported++;
    if ((st = add_st(o, "qf.query_embd", W, qc->nq, true, qt))) return st;
    /* text side: InstructBLIP has word/position embeddings, BLIP-2 does not */
    const rs_st_tensor *we, *pe;
    snprintf(nm, sizeof nm, "%sembeddings.word_embeddings.weight", c->pre);
    we = rs_st_find(c->s, nm);
    if (we && (we->ndim != 2 || we->shape[1] != W)) return rs_error(RSMOE_ERR_FORMAT, "%s: %s is misshapen", c->dir, nm);
    snprintf(nm, sizeof nm, "%sembeddings.position_embeddings.weight", c->pre);
    pe = rs_st_find(c->s, nm);
    if (pe && (pe->ndim != 2 || pe->shape[1] != W)) return rs_error(RSMOE_ERR_FORMAT, "%s: %s is misshapen", c->dir, nm);
    qc->max_pos = pe ? (int)pe->shape[0] : jint(cfg, "max_position_embeddings", 512);
    int Vt = rs_tokenizer_n_vocab(llm_tok);
    rs_tokenizer *wpm = NULL;
    char vp[4096];
    snprintf(vp, sizeof vp, "%s/qformer_tokenizer/vocab.txt", c->dir);
    if (access(vp, R_OK)) snprintf(vp, sizeof vp, "%s/vocab.txt", c->dir);
    if (we && !access(vp, R_OK)) {
        if ((st = load_bert_vocab(vp, &wpm))) return st;
        map_ctx m = {we, llm_tok, wpm, malloc(sizeof(int32_t) * 1024), 1024, malloc(sizeof(float) * (size_t)W)};
        if (!m.ids || !m.tmp) st = rs_error(RSMOE_ERR_NOMEM, "out of memory");
        else st = add_rows(o, "qf.token_embd.weight", W, Vt, false, rows_mapped, &m);
        free(m.ids);
        free(m.tmp);
        rs_tokenizer_free(wpm);
        if (st) return st;
        o->rep->n_imported++;
        note(o, "qf.token_embd: each LLM token's row is the mean of the BERT word embeddings of its WordPiece tokens (%s)", vp);
    } else {
        if ((st = add_init(o, "qf.token_embd.weight", W, Vt, false, F_NORMAL, 0.02f))) return st;
        note(o, "qf.token_embd: random (%s); train it in stage I",
             we ? "no BERT vocab.txt beside the Q-Former to map the LLM vocabulary" : "the Q-Former has no word embeddings");
    }
    if (pe) {
        o->rep->n_imported++;
        if ((st = add_st(o, "qf.position_embd.weight", W, qc->max_pos, true, pe))) return st;
    } else {
        if ((st = add_init(o, "qf.position_embd.weight", W, qc->max_pos, true, F_NORMAL, 0.02f))) return st;
        note(o, "%s", "qf.position_embd: random (the Q-Former has no position embeddings)");
    }
    snprintf(nm, sizeof nm, "%sembeddings.layernorm.weight", c->pre);
    if ((st = put_norm(o, c, "qf.embd_ln", rs_st_find(c->s, nm) ? "embeddings.layernorm" : "layernorm", W))) return st;
    bool text_ffn_missing = false;
    for (int l = 0; l < qc->layers; l++) {
        char ours[128], hf[160];
#define N2(fo, fh) (snprintf(ours, sizeof ours, fo, l), snprintf(hf, sizeof hf, fh, l))
        static const char *const qkv[3][2] = {{"q", "query"}, {"k", "key"}, {"v", "value"}};
        for (int k = 0; k < 3; k++) {
            snprintf(ours, sizeof ours, "qf.blk.%d.attn_%s", l, qkv[k][0]);
            snprintf(hf, sizeof hf, "encoder.layer.%d.attention.attention.%s", l, qkv[k][1]);
            if ((st = put_lin(o, c, ours, hf, W, W, true))) return st;
        }
        N2("qf.blk.%d.attn_out", "encoder.layer.%d.attention.output.dense");
        if ((st = put_lin(o, c, ours, hf, W, W, true))) return st;
        N2("qf.blk.%d.attn_ln", "encoder.layer.%d.attention.output.LayerNorm");
        if ((st = put_norm(o, c, ours, hf, W))) return st;
        if (l % qc->freq == 0) {
            for (int k = 0; k < 3; k++) {
                snprintf(ours, sizeof ours, "qf.blk.%d.cross_%s", l, qkv[k][0]);
                snprintf(hf, sizeof hf, "encoder.layer.%d.crossattention.attention.%s", l, qkv[k][1]);
                if ((st = put_lin(o, c, ours, hf, k ? enc_width : W, W, true))) return st;
            }
            N2("qf.blk.%d.cross_out", "encoder.layer.%d.crossattention.output.dense");
            if ((st = put_lin(o, c, ours, hf, W, W, true))) return st;
            N2("qf.blk.%d.cross_ln", "encoder.layer.%d.crossattention.output.LayerNorm");
            if ((st = put_norm(o, c, ours, hf, W))) return st;
        }
        N2("qf.blk.%d.ffnq_up", "encoder.layer.%d.intermediate_query.dense");
        if ((st = put_lin(o, c, ours, hf, W, F, true))) return st;
        N2("qf.blk.%d.ffnq_down", "encoder.layer.%d.output_query.dense");
        if ((st = put_lin(o, c, ours, hf, F, W, true))) return st;
        N2("qf.blk.%d.ffnq_ln", "encoder.layer.%d.output_query.LayerNorm");
        if ((st = put_norm(o, c, ours, hf, W))) return st;
        snprintf(nm, sizeof nm, "%sencoder.layer.%d.intermediate.dense.weight", c->pre, l);
        if (rs_st_find(c->s, nm)) {
            N2("qf.blk.%d.ffn_up", "encoder.layer.%d.intermediate.dense");
            if ((st = put_lin(o, c, ours, hf, W, F, true))) return st;
            N2("qf.blk.%d.ffn_down", "encoder.layer.%d.output.dense");
            if ((st = put_lin(o, c, ours, hf, F, W, true))) return st;
            N2("qf.blk.%d.ffn_ln", "encoder.layer.%d.output.LayerNorm");
            if ((st = put_norm(o, c, ours, hf, W))) return st;
        } else {
            /* BLIP-2 checkpoints drop the text feed-forward */
            text_ffn_missing = true;
            char a[160];
            snprintf(ours, sizeof ours, "qf.blk.%d.ffn_up", l);
            snprintf(a, sizeof a, "%s.weight", ours);
            if ((st = add_init(o, a, W, F, false, F_NORMAL, 0.02f))) return st;
            snprintf(a, sizeof a, "%s.bias", ours);
            if ((st = add_init(o, a, F, 1, true, F_ZEROS, 0))) return st;
            snprintf(ours, sizeof ours, "qf.blk.%d.ffn_down", l);
            snprintf(a, sizeof a, "%s.weight", ours);
            if ((st = add_init(o, a, F, W, false, F_NORMAL, 0.02f))) return st;
            snprintf(a, sizeof a, "%s.bias", ours);
            if ((st = add_init(o, a, W, 1, true, F_ZEROS, 0))) return st;
            snprintf(ours, sizeof ours, "qf.blk.%d.ffn_ln", l);
            snprintf(a, sizeof a, "%s.weight", ours);
            if ((st = add_init(o, a, W, 1, true, F_ONES, 0))) return st;
            snprintf(a, sizeof a, "%s.bias", ours);
            if ((st = add_init(o, a, W, 1, true, F_ZEROS, 0))) return st;
        }
#undef N2
    }
    if (text_ffn_missing) note(o, "%s", "qf.blk.*.ffn_*: random (the checkpoint has no text feed-forward, as BLIP-2's)");
    /* language_projection: imported when it maps to this LLM's width */
    const rs_st_tensor *lp = NULL, *lpb = NULL;
    for (int64_t i = 0; i < rs_st_n_tensors(top->s) && !lp; i++) {
        const rs_st_tensor *t = rs_st_tensor_at(top->s, i);
        if (ends_with(t->name, "language_projection.weight")) {
            lp = t;
            snprintf(nm, sizeof nm, "%.*sbias", (int)(strlen(t->name) - 6), t->name);
            lpb = rs_st_find(top->s, nm);
        }
    }
    if (lp && lp->ndim == 2 && lp->shape[0] == D && lp->shape[1] == W && lpb && lpb->n == D) {
        o->rep->n_imported += 2;
        if ((st = add_st(o, "proj.weight", W, D, false, lp)) ||
            (st = add_st(o, "proj.bias", D, 1, true, lpb)))
            return st;
    } else {
        if ((st = add_init(o, "proj.weight", W, D, false, F_NORMAL, 0.02f)) ||
            (st = add_init(o, "proj.bias", D, 1, true, F_ZEROS, 0)))
            return st;
        note(o, "%s",
             lp ? "proj: random (language_projection maps to another LLM width)" : "proj: random (no language_projection)");
    }
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ MoE */
static rsmoe_status add_moe(outb *o, const rs_hf_params *p, const llm_cfg *lc) {
    rs_gguf_writer *w = o->w;
    int K = p->n_experts, r = p->lora_rank, D = lc->dim;
    int qd = lc->heads * lc->head_dim, kvd = lc->kv_heads * lc->head_dim, F = lc->ffn;
    static const char *const dn[3] = {"theme", "objects", "relationships"};
    static const char *const dp[3] = {
        "Describe the overall theme of this remote sensing image.",
        "Describe the objects in this remote sensing image: what they are, how many, their colour and size.",
        "Describe the spatial relationships between the objects in this remote sensing image."};
    const char *names[8], *prompts[8];
    for (int e = 0; e < K; e++) { names[e] = dn[e % 3]; prompts[e] = dp[e % 3]; }
    rsmoe_status st;
    if ((st = rs_gguf_writer_set_u32(w, "rsmoe.moe.expert_count", (uint32_t)K))) return st;
    if (K == 0) return RSMOE_OK;
    if ((st = rs_gguf_writer_set_u32(w, "rsmoe.moe.lora_rank", (uint32_t)r)) ||
        (st = rs_gguf_writer_set_f32(w, "rsmoe.moe.lora_alpha", p->lora_alpha)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.moe.soft_prompt_count", (uint32_t)p->n_soft)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.moe.router_hidden", (uint32_t)p->router_hidden)) ||
        (st = rs_gguf_writer_set_arr_str(w, "rsmoe.moe.expert_names", names, NULL, K)) ||
        (st = rs_gguf_writer_set_arr_str(w, "rsmoe.moe.expert_prompts", prompts, NULL, K)))
        return st;
    const int ins[RS_LT_COUNT] = {D, D, D, qd, D, D, F}, outs[RS_LT_COUNT] = {qd, kvd, kvd, D, F, F, D};
    char nm[RS_NAME_MAX];
    for (int e = 0; e < K; e++)
        for (int l = 0; l < lc->layers; l++)
            for (int t = 0; t < RS_LT_COUNT; t++) {
                snprintf(nm, sizeof nm, "expert.%d.blk.%d.%s.lora_a", e, l, rs_lora_target_names[t]);
                if ((st = add_init(o, nm, ins[t], r, true, F_UNIFORM, 1.0f / sqrtf((float)ins[t])))) return st;
                snprintf(nm, sizeof nm, "expert.%d.blk.%d.%s.lora_b", e, l, rs_lora_target_names[t]);
                if ((st = add_init(o, nm, r, outs[t], true, p->lora_random_b ? F_NORMAL : F_ZEROS, 0.02f))) return st;
            }
    if ((st = add_init(o, "router.gate.weight", 2 * D, K, true, F_NORMAL, 0.02f)) ||
        (st = add_init(o, "router.gate.bias", K, 1, true, F_ZEROS, 0)))
        return st;
    if (p->n_soft > 0 &&
        ((st = add_init(o, "router.soft_up.weight", D, p->router_hidden, true, F_NORMAL, 0.02f)) ||
         (st = add_init(o, "router.soft_up.bias", p->router_hidden, 1, true, F_ZEROS, 0)) ||
         (st = add_init(o, "router.soft_down.weight", p->router_hidden, (int64_t)K * p->n_soft * D, false, F_NORMAL, 0.02f)) ||
         (st = add_init(o, "router.soft_down.bias", (int64_t)K * p->n_soft * D, 1, true, F_NORMAL, 0.02f))))
        return st;
    return RSMOE_OK;
}

/* image mean/std from preprocessor_config.json when present */
static rsmoe_status vision_norm_keys(rs_gguf_writer *w, const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/preprocessor_config.json", dir);
    rsmoe_status st;
    cJSON *pc = load_json(p, false, &st);
    if (!pc) return st;
    static const char *const keys[2][2] = {{"image_mean", "rsmoe.vit.image_mean"}, {"image_std", "rsmoe.vit.image_std"}};
    for (int k = 0; k < 2 && !st; k++) {
        const cJSON *a = jget(pc, keys[k][0]);
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3) continue;
        float v[3];
        int i = 0;
        for (const cJSON *e = a->child; e; e = e->next) v[i++] = (float)(cJSON_IsNumber(e) ? e->valuedouble : 0);
        st = rs_gguf_writer_set_arr_data(w, keys[k][1], RS_GGUF_F32, v, 3);
    }
    cJSON_Delete(pc);
    return st;
}

/* ------------------------------------------------------------------ driver */
rsmoe_status rs_hf_import(const rs_hf_params *p, const char *out_path, rs_hf_report *rep) {
    rs_hf_report rep0;
    if (!rep) rep = &rep0;
    memset(rep, 0, sizeof *rep);
    if (!p->llm_dir) return rs_error(RSMOE_ERR_INVALID_ARG, "HF import: the LLM directory is required");
    if (!p->vision_dir != !p->qformer_dir)
        return rs_error(RSMOE_ERR_INVALID_ARG,
                        "HF import: a full model needs both the vision model and the Q-Former (or neither for an LLM-only file)");
    if (p->wtype != RS_F32 && p->wtype != RS_F16 && p->wtype != RS_BF16 && p->wtype != RS_Q8_0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "HF import: output type must be f32, f16, bf16 or q8_0");
    bool full = p->vision_dir != NULL;
    if (full &&
        (p->n_experts < 0 || p->n_experts > 8 || (p->n_experts && (p->lora_rank < 1 || p->n_soft < 0 || p->router_hidden < 1))))
        return rs_error(RSMOE_ERR_INVALID_ARG,
                        "HF import: bad MoE settings (experts %d (0..8), rank %d, soft prompts %d, router hidden %d)",
                        p->n_experts, p->lora_rank, p->n_soft, p->router_hidden);
    rsmoe_status st;
    outb ob = {0}, *o = &ob;
    o->rep = rep;
    o->wtype = p->wtype;
    rs_rng_seed(&o->rng, p->seed);
    ckpt cl = {0}, cv = {0}, cq = {0};
    cJSON *jl = NULL, *jv = NULL, *jq = NULL;
    rs_tokenizer *tok = NULL;
    llm_cfg lc = {0};
    if (!(o->w = rs_gguf_writer_new())) return RSMOE_ERR_NOMEM;
    if ((st = load_config(p->llm_dir, &jl)) || (st = llm_arch(p->llm_dir, jl)) || (st = open_ckpt(p->llm_dir, &cl))) goto done;
    if (!find_prefix(cl.s, "embed_tokens.weight", NULL, cl.pre, sizeof cl.pre)) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: missing tensor model.embed_tokens.weight (not a LLaMA checkpoint?)", p->llm_dir);
        goto done;
    }
    if ((st = llm_config(p->llm_dir, jl, &cl, &lc))) goto done;
    if ((st = rs_hf_tokenizer_load(p->llm_dir, &tok))) goto done;
    if (rs_tokenizer_n_vocab(tok) > lc.vocab) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: the tokenizer has %d tokens but the LLM only %d embeddings", p->llm_dir,
                      rs_tokenizer_n_vocab(tok), lc.vocab);
        goto done;
    }
    int ctx = p->max_context > 0 && p->max_context < lc.ctx ? p->max_context : lc.ctx;
    rs_gguf_writer *w = o->w;
    if ((st = rs_gguf_writer_set_str(w, "general.architecture", full ? "rsmoe" : "llama")) ||
        (st = rs_gguf_writer_set_str(w, "general.name", "hf import")) || (st = llm_keys(w, &lc, ctx)) ||
        (st = rs_tokenizer_save_gguf(tok, w)))
        goto done;
    if (full) {
        vis_cfg vc = {0};
        qf_cfg qc = {0};
        if ((st = load_config(p->vision_dir, &jv)) || (st = check_arch(p->vision_dir, jv, "vision model", k_vision_types)) ||
            (st = open_ckpt(p->vision_dir, &cv)))
            goto done;
        if (!find_prefix(cv.s, "embeddings.class_embedding", NULL, cv.pre, sizeof cv.pre)) {
            st = rs_error(RSMOE_ERR_FORMAT,
                          "%s: missing tensor vision_model.embeddings.class_embedding (not a BLIP-2/InstructBLIP vision model?)",
                          p->vision_dir);
            goto done;
        }
        if ((st = import_vision(o, &cv, jv, &vc))) goto done;
        if ((st = load_config(p->qformer_dir, &jq)) || (st = check_arch(p->qformer_dir, jq, "Q-Former", k_qformer_types)) ||
            (st = open_ckpt(p->qformer_dir, &cq)))
            goto done;
        if (!find_prefix(cq.s, "encoder.layer.0.attention.attention.query.weight", NULL, cq.pre, sizeof cq.pre)) {
            st = rs_error(RSMOE_ERR_FORMAT,
                          "%s: missing tensor qformer.encoder.layer.0.attention.attention.query.weight (not a Q-Former?)",
                          p->qformer_dir);
            goto done;
        }
        if ((st = import_qformer(o, &cq, &cq, jq, vc.width, lc.dim, tok, &qc))) goto done;
        if ((st = rs_gguf_writer_set_str(w, "rsmoe.vision.kind", "vit")) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.image_size", (uint32_t)vc.size)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.patch_size", (uint32_t)vc.patch)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.embedding_length", (uint32_t)vc.width)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.block_count", (uint32_t)vc.layers)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.head_count", (uint32_t)vc.heads)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.vit.feed_forward_length", (uint32_t)vc.mlp)) ||
            (st = rs_gguf_writer_set_f32(w, "rsmoe.vit.layer_norm_epsilon", vc.eps)) ||
            (st = rs_gguf_writer_set_str(w, "rsmoe.vit.gelu", vc.tanh ? "tanh" : "erf")) ||
            (st = vision_norm_keys(w, p->vision_dir)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.query_count", (uint32_t)qc.nq)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.embedding_length", (uint32_t)qc.width)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.block_count", (uint32_t)qc.layers)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.head_count", (uint32_t)qc.heads)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.feed_forward_length", (uint32_t)qc.ffn)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.cross_attention_freq", (uint32_t)qc.freq)) ||
            (st = rs_gguf_writer_set_u32(w, "rsmoe.qformer.context_length", (uint32_t)qc.max_pos)) ||
            (st = rs_gguf_writer_set_f32(w, "rsmoe.qformer.layer_norm_epsilon", qc.eps)) ||
            (st = rs_gguf_writer_set_str(w, "rsmoe.qformer.tokenizer", "llm")))
            goto done;
    }
    if ((st = import_llm(o, &cl, &lc))) goto done;
    if (full && (st = add_moe(o, p, &lc))) goto done;
    st = rs_gguf_writer_write(o->w, out_path);
done:
    rs_gguf_writer_free(o->w);
    for (int i = 0; i < o->n; i++) free(o->bufs[i]);
    free(o->bufs);
    free(o->row);
    rs_tokenizer_free(tok);
    rs_st_close(cl.s);
    rs_st_close(cv.s);
    rs_st_close(cq.s);
    cJSON_Delete(jl);
    cJSON_Delete(jv);
    cJSON_Delete(jq);
    return st;
}
