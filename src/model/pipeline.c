/* pipeline.c - the public API (include/rsmoe.h): model, context, captioning and VQA.
 * image -> encoder -> Q-Former(instruction) -> visual prefix -> router -> K expert streams
 * decoded as one batch -> joined caption / chosen answer. */
#include "rsmoe.h"

#include "data/image.h"
#include "data/tokenizer.h"
#include "kernels/ops.h"
#include "model/encoder_cnn.h"
#include "model/generate.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROMPT 256

struct rsmoe_model {
    rs_model *m;
};

struct rsmoe_context {
    const rs_model *m;
    bool debug;
    float *qout, *dbg_logits; /* debug: Q-Former query outputs, first-step logits per stream */
    int dbg_streams;
    rs_pool *pool;
    rs_llm_state *st;
    int n_ctx, max_beams, max_views, n_streams_max;
    rs_enc_scratch es;
    float *enc, *qf_scratch, *prefix, *soft, *gates, *router_scratch, *stream_emb, *instr_emb;
    int32_t *ids;
    size_t bytes;
};

static void set_st(rsmoe_status *st, rsmoe_status v) { if (st) *st = v; }

rsmoe_model_params rsmoe_model_default_params(void) { return (rsmoe_model_params){.repack_q8 = 1, .amx_f32 = 1}; }

rsmoe_model *rsmoe_model_load(const char *path, const rsmoe_model_params *p, rsmoe_status *st) {
    const rsmoe_model_params dp = rsmoe_model_default_params();
    if (!p) p = &dp;
    if (!path) { set_st(st, rs_error(RSMOE_ERR_INVALID_ARG, "no model path")); return NULL; }
    rsmoe_model *mm = calloc(1, sizeof *mm);
    if (!mm) { set_st(st, rs_error(RSMOE_ERR_NOMEM, "out of memory")); return NULL; }
    rsmoe_status s = rs_model_load_ex(path, p->repack_q8 != 0, p->amx_f32 != 0, &mm->m);
    if (s) { free(mm); set_st(st, s); return NULL; }
    set_st(st, RSMOE_OK);
    return mm;
}

const rs_model *rs_model_of(const rsmoe_model *m) { return m ? m->m : NULL; }

void rsmoe_model_free(rsmoe_model *m) {
    if (!m) return;
    rs_model_free(m->m);
    free(m);
}

int rsmoe_model_n_experts(const rsmoe_model *m) { return m->m->moe.n_experts; }
bool rsmoe_model_has_retrieval(const rsmoe_model *m) { return m && m->m->has_retrieval; }

const char *rsmoe_model_expert_name(const rsmoe_model *m, int i) {
    return i >= 0 && i < m->m->moe.n_experts ? m->m->moe.names[i] : NULL;
}

static const char *dtype_of(const rs_tensor *t) { return t ? rs_dtype_name(t->type) : "-"; }

size_t rsmoe_model_describe(const rsmoe_model *mm, char *buf, size_t cap) {
    const rs_model *m = mm->m;
    rs_param_counts pc = rs_model_param_counts(m);
    const rs_vit_config *v = &m->vit.c;
    const rs_qformer_config *q = &m->qf.c;
    const rs_llm_config *l = &m->llm.c;
    size_t file = rs_gguf_file_size(m->g);
    char encdesc[256];
    if (m->vision_kind == RS_VISION_CNN)
        snprintf(encdesc, sizeof encdesc, "CNN %s %dx%d px -> %d tokens of %d; %.2f M params (f32)", m->cnn->name,
                 m->cnn->in_w, m->cnn->in_h, m->enc_tokens, m->enc_width, (double)pc.vision / 1e6);
    else
        snprintf(encdesc, sizeof encdesc, "ViT %dx%d px, patch %d, width %d, %d blocks, %d heads, MLP %d -> %d tokens; %.2f M params (%s)",
                 v->image_size, v->image_size, v->patch, v->width, v->layers, v->heads, v->mlp, m->enc_tokens,
                 (double)pc.vision / 1e6, dtype_of(m->vit.layers ? m->vit.layers[0].qkv_w : NULL));
    int n = snprintf(buf, cap,
        "model:          %s (%s)\n"
        "file size:      %.1f MiB\n"
        "image encoder:  %s\n"
        "Q-Former:       %d queries, width %d, %d layers, %d heads, FFN %d, cross-attention every %d; %.2f M params (%s)\n"
        "LLM Block:      vocab %d, width %d, %d layers, %d/%d heads (head %d), FFN %d, context %d, RoPE theta %g%s%s; %.2f M params (%s)\n"
        "MoE Block:      %d experts",
        m->path, rs_gguf_get_str_or(m->g, "general.name", "?"), (double)file / 1048576.0,
        encdesc, q->n_query, q->width, q->layers, q->heads, q->ffn, q->cross_freq, (double)pc.qformer / 1e6,
        dtype_of(m->qf.layers ? m->qf.layers[0].self.q_w : NULL),
        l->vocab, l->dim, l->n_layers, l->n_heads, l->n_kv_heads, l->head_dim, l->ffn, l->max_seq, l->rope.theta,
        l->rope.llama3 ? ", Llama-3 scaling" : "", l->tied ? ", tied output" : "", (double)pc.llm / 1e6,
        dtype_of(m->llm.layers[0].wq), m->moe.n_experts);
    if (n < 0) return 0;
    size_t len = (size_t)n;
    if (m->moe.n_experts > 0) {
        for (int e = 0; e < m->moe.n_experts; e++) {
            int k = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "%s%s", e ? ", " : " (", m->moe.names[e]);
            len += (size_t)(k > 0 ? k : 0);
        }
        int k = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
                         "); LoRA rank %d, alpha %g; %d soft prompts; %.2f M expert + %.2f M router params\n",
                         m->moe.lora_rank, m->moe.lora_alpha, m->moe.n_soft, (double)pc.experts / 1e6, (double)pc.router / 1e6);
        len += (size_t)(k > 0 ? k : 0);
    } else {
        int k = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, " (a stage-I model: the LLM Block alone)\n");
        len += (size_t)(k > 0 ? k : 0);
    }
    if (m->has_retrieval) {
        const rs_retrieval *r = &m->retr;
        int k = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
                         "retrieval:      %d indexed images, %lld distinct captions, %d scene classes; brief captions by "
                         "consensus with the %d nearest (probe weight %g, proposal bonus %g); %.2f M values (%s keys)\n",
                         r->n_img, (long long)r->n_sent, r->n_class, r->k, (double)r->gamma, (double)r->bonus,
                         (double)pc.retrieval / 1e6, rs_dtype_name(r->keys->type));
        len += (size_t)(k > 0 ? k : 0);
    }
    int k = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "tokenizer:      %d tokens\ntotal:          %.2f M params\n",
                     rs_tokenizer_n_vocab(m->tok), (double)(pc.vision + pc.qformer + pc.llm + pc.experts + pc.router) / 1e6);
    len += (size_t)(k > 0 ? k : 0);
    /* what the load repacked for this CPU's kernels (rs_model_load_ex) */
    int nq = 0, nf = 0;
    for (int64_t i = 0; i < rs_gguf_n_tensors(m->g); i++) {
        const rs_tensor *t = rs_gguf_tensor(m->g, i);
        nq += t->packed && t->type == RS_Q8_0;
        nf += t->packed && t->type == RS_F32;
    }
    if (nq) {
        k = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
                     "this CPU:       %d q8_0 matrices repacked 16 rows at a time (VNNI%s)\n", nq,
                     rs_cpu_amx_ready() && rs_cpu()->amx_int8 ? ", AMX-INT8 for 16+ rows" : "");
        len += (size_t)(k > 0 ? k : 0);
    }
    if (nf) {
        k = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
                     "this CPU:       %d f32 image-encoder matrices as bf16 pairs on AMX (about 1e-5 relative; "
                     "RSMOE_NO_AMX=1 keeps exact f32)\n", nf);
        len += (size_t)(k > 0 ? k : 0);
    }
    return len;
}

rsmoe_context_params rsmoe_context_default_params(void) {
    return (rsmoe_context_params){.n_threads = 0, .n_ctx = 0, .max_beams = 5, .max_views = 1};
}

void rsmoe_context_free(rsmoe_context *c) {
    if (!c) return;
    rs_llm_state_free(c->st);
    rs_pool_free(c->pool);
    rs_enc_scratch_free(&c->es);
    free(c->enc); free(c->qf_scratch); free(c->prefix); free(c->soft);
    free(c->qout); free(c->dbg_logits);
    free(c->gates); free(c->router_scratch); free(c->stream_emb); free(c->instr_emb); free(c->ids);
    free(c);
}

static float *falloc(rsmoe_context *c, size_t n) {
    c->bytes += n * sizeof(float);
    return malloc(sizeof(float) * (n ? n : 1));
}

rsmoe_context *rsmoe_context_new(const rsmoe_model *mm, const rsmoe_context_params *p, rsmoe_status *st) {
    rsmoe_context_params dp = rsmoe_context_default_params();
    if (!p) p = &dp;
    if (!mm) { set_st(st, rs_error(RSMOE_ERR_INVALID_ARG, "no model")); return NULL; }
    if (p->max_beams < 1 || p->max_beams > 16 || p->n_threads < 0 || p->n_ctx < 0 || p->max_views < 0 ||
        p->max_views > RSMOE_MAX_VIEWS) {
        set_st(st, rs_error(RSMOE_ERR_INVALID_ARG, "context: beams must be 1..16, views 1..%d, threads and n_ctx >= 0",
                            RSMOE_MAX_VIEWS));
        return NULL;
    }
    const rs_model *m = mm->m;
    rsmoe_context *c = calloc(1, sizeof *c);
    if (!c) { set_st(st, rs_error(RSMOE_ERR_NOMEM, "out of memory")); return NULL; }
    c->m = m;
    c->pool = rs_pool_new(p->n_threads > 0 ? p->n_threads : rs_default_threads());
    int nth = rs_pool_size(c->pool);
    c->max_beams = p->max_beams;
    c->max_views = p->max_views < 1 ? 1 : p->max_views;
    const int NV = c->max_views;
    c->n_ctx = p->n_ctx > 0 ? p->n_ctx : 1024;
    if (c->n_ctx > m->llm.c.max_seq) c->n_ctx = m->llm.c.max_seq;
    int K = m->moe.n_experts > 0 ? m->moe.n_experts : 1;
    c->n_streams_max = K;
    int D = m->llm.c.dim, nq = m->qf.c.n_query, M = m->moe.n_soft;
    int stream_rows = nq + M + MAX_PROMPT + 2;
    c->enc = falloc(c, (size_t)m->enc_tokens * m->enc_width);
    if (rs_enc_scratch_init(m, nth, &c->es) != RSMOE_OK) { rsmoe_context_free(c); set_st(st, RSMOE_ERR_NOMEM); return NULL; }
    c->bytes += c->es.bytes;
    c->qf_scratch = falloc(c, rs_qformer_scratch_floats(&m->qf.c, m->enc_tokens, MAX_PROMPT, nth));
    c->prefix = falloc(c, (size_t)NV * nq * D);
    c->qout = falloc(c, (size_t)nq * m->qf.c.width);
    c->soft = falloc(c, (size_t)NV * K * (M > 0 ? M : 1) * D);
    c->gates = falloc(c, (size_t)(1 + NV) * K); /* the mean, then each view's */
    c->router_scratch = falloc(c, 2 * (size_t)D + (size_t)m->moe.router_hidden + 1);
    c->stream_emb = falloc(c, (size_t)K * NV * stream_rows * D);
    c->instr_emb = falloc(c, (size_t)MAX_PROMPT * D);
    c->ids = malloc(sizeof(int32_t) * MAX_PROMPT);
    rsmoe_status s = RSMOE_OK;
    if (!c->pool || !c->enc || !c->qf_scratch || !c->prefix || !c->soft || !c->gates ||
        !c->router_scratch || !c->stream_emb || !c->instr_emb || !c->ids)
        s = rs_error(RSMOE_ERR_NOMEM, "context: out of memory");
    int slots = K * c->max_beams * NV;
    if (!s) s = rs_llm_state_new(&m->llm.c, c->n_ctx, slots, K * NV * stream_rows > slots ? K * NV * stream_rows : slots, slots,
                                 m->moe.n_experts > 0 ? m->moe.lora_rank : 0, &c->st);
    if (s) { rsmoe_context_free(c); set_st(st, s); return NULL; }
    c->bytes += rs_llm_state_bytes(c->st);
    set_st(st, RSMOE_OK);
    return c;
}

size_t rsmoe_context_bytes(const rsmoe_context *c) { return c->bytes; }

/* ------------------------------------------------------------------ images */
rsmoe_status rsmoe_image_load(const char *path, rsmoe_image *out) {
    memset(out, 0, sizeof *out);
    rs_image img;
    rsmoe_status st = rs_image_load(path, NULL, &img);
    if (st) return st;
    if (img.c != 3) { rs_image_free(&img); return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: %d channels after decoding (need RGB)", path, img.c); }
    out->width = img.w;
    out->height = img.h;
    out->data = img.data;
    return RSMOE_OK;
}

rsmoe_status rsmoe_image_decode(const void *data, size_t size, const char *name, rsmoe_image *out) {
    memset(out, 0, sizeof *out);
    rs_image img;
    rsmoe_status st = rs_image_decode(data, size, name ? name : "<memory>", NULL, &img);
    if (st) return st;
    if (img.c != 3) { rs_image_free(&img); return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: %d channels (need RGB)", name, img.c); }
    out->width = img.w;
    out->height = img.h;
    out->data = img.data;
    return RSMOE_OK;
}

void rsmoe_image_free(rsmoe_image *img) {
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

/* ------------------------------------------------------------------ generation */
rsmoe_generate_params rsmoe_caption_default_params(void) {
    return (rsmoe_generate_params){.style = RSMOE_STYLE_DETAILED, .beams = 5, .max_len = 256, .min_len = 1,
                                   .repetition_penalty = 1.5f, .length_penalty = 1.0f, .temperature = 0.0f,
                                   .top_p = 0.9f, .seed = 42, .use_experts = true, .top_k_experts = 1,
                                   .use_retrieval = true, .views = 1};
}

rsmoe_generate_params rsmoe_brief_default_params(void) {
    rsmoe_generate_params p = rsmoe_caption_default_params();
    p.style = RSMOE_STYLE_BRIEF;
    p.repetition_penalty = 1.0f;
    return p;
}

rsmoe_generate_params rsmoe_vqa_default_params(void) {
    rsmoe_generate_params p = rsmoe_caption_default_params();
    p.max_len = 10;
    p.repetition_penalty = 1.0f;
    p.style = RSMOE_STYLE_BRIEF;
    return p;
}

void rsmoe_result_free(rsmoe_result *r) {
    if (!r) return;
    free(r->text);
    for (int i = 0; i < RSMOE_MAX_ASPECTS; i++) {
        free(r->aspects[i].text);
        free(r->aspects[i].ids);
    }
    memset(r, 0, sizeof *r);
}

static void progress(const rsmoe_generate_params *p, const char *stage) {
    if (p->progress_callback) p->progress_callback(stage, p->user_data);
}

/* valid UTF-8 copy of s: each byte that does not start a well-formed sequence becomes U+FFFD
 * (a byte-level model can emit partial sequences; JSON and terminals need valid text) */
static char *utf8_clean(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1), *q = o;
    if (!o) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        bool ok = len > 0;
        for (int k = 1; ok && k < len; k++) ok = (p[k] & 0xc0) == 0x80;
        if (ok && len == 2) ok = *p >= 0xc2;
        if (ok && len == 3) ok = !(p[0] == 0xe0 && p[1] < 0xa0) && !(p[0] == 0xed && p[1] >= 0xa0);
        if (ok && len == 4) ok = *p <= 0xf4 && !(p[0] == 0xf0 && p[1] < 0x90) && !(p[0] == 0xf4 && p[1] >= 0x90);
        if (ok) { memcpy(q, p, (size_t)len); q += len; p += len; }
        else { memcpy(q, "\xef\xbf\xbd", 3); q += 3; p++; }
    }
    *q = 0;
    return o;
}

static char *decode_ids(const rs_tokenizer *tok, const int32_t *ids, int n) {
    size_t need = 0;
    char dummy[1];
    rs_tokenizer_decode(tok, ids, n, dummy, 1, &need);
    char *s = malloc(need + 1);
    if (!s) return NULL;
    if (rs_tokenizer_decode(tok, ids, n, s, need + 1, NULL) != RSMOE_OK) { free(s); return NULL; }
    /* trim surrounding white space */
    size_t a = 0, b = strlen(s);
    while (a < b && (s[a] == ' ' || s[a] == '\n' || s[a] == '\t')) a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\n' || s[b - 1] == '\t')) b--;
    memmove(s, s + a, b - a);
    s[b - a] = 0;
    char *clean = utf8_clean(s);
    free(s);
    return clean;
}

/* tokens of text (no specials) into ids; error if longer than max */
static rsmoe_status tokens_of(const rs_tokenizer *tok, const char *text, bool special, int32_t *ids, int max, int *n) {
    rsmoe_status st = rs_tokenizer_encode(tok, text, special, ids, max, n);
    if (st) return rs_error(st, "the text is too long (%d tokens at most): %.60s", max, text);
    return RSMOE_OK;
}

/* question == NULL: a description */
static rsmoe_status run(rsmoe_context *c, const rsmoe_image *img, const char *question, const rsmoe_generate_params *p,
                        rsmoe_result *out) {
    memset(out, 0, sizeof *out);
    out->chosen = -1;
    if (!c || !img || !p) return rs_error(RSMOE_ERR_INVALID_ARG, "NULL argument");
    if (!img->data || img->width < 1 || img->height < 1) return rs_error(RSMOE_ERR_INVALID_ARG, "empty image");
    if (p->beams < 1 || p->beams > c->max_beams)
        return rs_error(RSMOE_ERR_INVALID_ARG, "beams must be 1..%d for this context", c->max_beams);
    if (p->max_len < 1 || p->min_len < 0 || p->min_len > p->max_len)
        return rs_error(RSMOE_ERR_INVALID_ARG, "bad lengths (max %d, min %d)", p->max_len, p->min_len);
    if (!(p->repetition_penalty > 0) || !(p->temperature >= 0) || !(p->top_p > 0))
        return rs_error(RSMOE_ERR_INVALID_ARG, "bad sampling parameters");
    const rs_model *m = c->m;
    const rs_tokenizer *tok = m->tok;
    int D = m->llm.c.dim, nq = m->qf.c.n_query, M = m->moe.n_soft;
    bool moe = p->use_experts && m->moe.n_experts > 0;
    int K = moe ? m->moe.n_experts : 1;
    double t0 = rs_time_s();
    rsmoe_status st;

    const int NV = p->views < 1 ? 1 : p->views;
    if (NV > c->max_views) return rs_error(RSMOE_ERR_INVALID_ARG, "views must be 1..%d for this context", c->max_views);

    /* the instruction: the question, or the global description instruction */
    char instr[1024], qprompt[1400];
    if (question) {
        int ql;
        rs_model_question(m, question, &ql, qprompt, sizeof qprompt);
        if (!ql) return rs_error(RSMOE_ERR_INVALID_ARG, "empty question");
        snprintf(instr, sizeof instr, "%.*s", ql, question);
    } else {
        snprintf(instr, sizeof instr, "%s", p->instruction ? p->instruction : m->instr_caption);
    }
    int n_instr;
    if ((st = tokens_of(tok, instr, false, c->ids, MAX_PROMPT, &n_instr))) return st;
    if (n_instr > m->qf.c.max_pos) return rs_error(RSMOE_ERR_INVALID_ARG, "instruction of %d tokens is longer than the Q-Former's %d", n_instr, m->qf.c.max_pos);
    float *ip = c->stream_emb; /* temporary (overwritten in 4.): the pooled instruction */
    if (moe) {
        if ((st = rs_llm_embed(&m->llm, c->ids, n_instr, c->instr_emb))) return st;
        memset(ip, 0, sizeof(float) * (size_t)D);
        for (int i = 0; i < n_instr; i++) rs_vec_acc(ip, c->instr_emb + (size_t)i * D, D);
        if (n_instr > 0) rs_vec_scale(ip, 1.0f / (float)n_instr, D);
    }

    /* 1.-3. per view (the image as given last, so that c->enc holds its tokens for retrieval):
     * image encoder, Q-Former on the instruction, router (gates and soft prompts) */
    _Static_assert(RSMOE_MAX_VIEWS == RS_IMAGE_VIEWS && RSMOE_MAX_VIEWS <= RS_GEN_MAX_VIEWS, "one view per symmetry");
    static const int view_order[RSMOE_MAX_VIEWS] = {0, 1, 5, 6, 2, 3, 4, 7};
    double enc_s = 0, qf_s = 0, router_s = 0;
    for (int v = NV - 1; v >= 0; v--) {
        double ta = rs_time_s();
        progress(p, "encode");
        rs_image ri = {.w = img->width, .h = img->height, .c = 3, .data = img->data}, vi = {0};
        if (view_order[v] && (st = rs_image_dihedral(&ri, view_order[v], &vi))) return st;
        st = rs_model_encode(m, view_order[v] ? &vi : &ri, c->enc, &c->es, c->pool);
        rs_image_free(&vi);
        if (st) return st;
        double tb = rs_time_s();
        progress(p, "qformer");
        float *prefix = c->prefix + (size_t)v * nq * D;
        if ((st = rs_qformer_forward(&m->qf, c->enc, m->enc_tokens, c->ids, n_instr, prefix, c->qout, c->qf_scratch, c->pool)))
            return st;
        double tc = rs_time_s();
        progress(p, "router");
        float *gv = c->gates + (size_t)(1 + v) * K;
        if (moe) rs_router_forward(m, ip, prefix, nq, gv, M > 0 ? c->soft + (size_t)v * K * M * D : NULL, c->router_scratch, c->pool);
        else gv[0] = 1.0f;
        enc_s += tb - ta;
        qf_s += tc - tb;
        router_s += rs_time_s() - tc;
    }
    for (int e = 0; e < K; e++) { /* the views' mean gate */
        float g = 0;
        for (int v = 0; v < NV; v++) g += c->gates[(size_t)(1 + v) * K + e];
        c->gates[e] = g / (float)NV;
    }
    if (moe && p->uniform_gates)
        for (int e = 0; e < K; e++) c->gates[e] = 1.0f / (float)K;
    double t1 = t0 + enc_s, t2 = t1 + qf_s, t3 = t2 + router_s;

    /* which streams run: all for descriptions; the top-k gates for questions */
    int order[RS_MAX_EXPERTS], n_run = K;
    for (int e = 0; e < K; e++) order[e] = e;
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++)
            if (c->gates[order[b]] > c->gates[order[a]]) { int t = order[a]; order[a] = order[b]; order[b] = t; }
    if (question && moe) n_run = p->top_k_experts < 1 ? 1 : p->top_k_experts > K ? K : p->top_k_experts;
    int run_ids[RS_MAX_EXPERTS];
    for (int i = 0; i < n_run; i++) run_ids[i] = question && moe ? order[i] : i;

    /* 4. stream prefixes: [visual prefix ; soft prompts ; embed(BOS + prompt)] */
    rs_gen_stream streams[RS_MAX_EXPERTS];
    int stream_rows = nq + M + MAX_PROMPT + 2;
    int32_t pids[MAX_PROMPT + 2];
    for (int i = 0; i < n_run; i++) {
        int e = run_ids[i];
        const char *prompt = question ? qprompt : moe ? m->moe.prompts[e] : instr;
        int np;
        if ((st = tokens_of(tok, prompt, true, pids, MAX_PROMPT, &np))) return st;
        int rows = nq + (moe && M > 0 ? M : 0) + np;
        float *dst = c->stream_emb + (size_t)i * NV * stream_rows * D; /* its views one after the other */
        for (int v = 0; v < NV; v++) {
            float *vd = dst + (size_t)v * rows * D;
            memcpy(vd, c->prefix + (size_t)v * nq * D, sizeof(float) * (size_t)nq * D);
            int r = nq;
            if (moe && M > 0) {
                memcpy(vd + (size_t)r * D, c->soft + ((size_t)v * K + e) * M * D, sizeof(float) * (size_t)M * D);
                r += M;
            }
            /* the prompt's embeddings: looked up once, copied into the other views */
            if (v == 0) { if ((st = rs_llm_embed(&m->llm, pids, np, vd + (size_t)r * D))) return st; }
            else memcpy(vd + (size_t)r * D, dst + (size_t)r * D, sizeof(float) * (size_t)np * D);
        }
        streams[i] = (rs_gen_stream){.prefix = dst, .prefix_len = rows, .adapter = moe ? e : -1, .n_views = NV};
    }
    const rs_lora_set *adapters[RS_MAX_EXPERTS];
    for (int e = 0; e < m->moe.n_experts; e++) adapters[e] = &m->experts[e];

    /* 5. decode every stream as one batch */
    progress(p, "decode");
    rs_gen_params gp = {.beams = p->beams, .max_new = p->max_len, .min_new = p->min_len,
                        .rep_penalty = p->repetition_penalty, .len_penalty = p->length_penalty,
                        .temperature = p->temperature, .top_p = p->top_p, .seed = p->seed};
    if (rs_tokenizer_eos(tok) >= 0) gp.stop[gp.n_stop++] = rs_tokenizer_eos(tok);
    int32_t *gen = malloc(sizeof(int32_t) * (size_t)n_run * (size_t)p->max_len);
    if (!gen) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    rs_gen_result res[RS_MAX_EXPERTS];
    for (int i = 0; i < n_run; i++) res[i].ids = gen + (size_t)i * p->max_len;
    rs_gen_stats gs = {0};
    if (c->debug) {
        free(c->dbg_logits);
        c->dbg_logits = malloc(sizeof(float) * (size_t)n_run * (size_t)m->llm.c.vocab);
        c->dbg_streams = c->dbg_logits ? n_run : 0;
        gs.prefill_logits = c->dbg_logits;
    }
    st = rs_generate(&m->llm, c->st, moe ? adapters : NULL, streams, n_run, &gp, res, &gs, c->pool,
                     p->abort_callback, p->user_data);
    if (st) { free(gen); return st; }

    /* 6. results: each aspect, then the joined / chosen text */
    out->n_aspects = K;
    for (int e = 0; e < K; e++) {
        snprintf(out->aspects[e].name, sizeof out->aspects[e].name, "%s", moe ? m->moe.names[e] : "llm");
        out->aspects[e].gate = c->gates[e];
    }
    int best = -1;
    double best_score = -INFINITY;
    for (int i = 0; i < n_run; i++) {
        int e = run_ids[i];
        rsmoe_aspect *a = &out->aspects[e];
        a->text = decode_ids(tok, res[i].ids, res[i].n);
        a->logprob = res[i].sum_logprob;
        a->n_tokens = res[i].n;
        a->ids = malloc(sizeof(int32_t) * (size_t)(res[i].n + 1));
        if (a->ids) memcpy(a->ids, res[i].ids, sizeof(int32_t) * (size_t)res[i].n);
        if (!a->text || !a->ids) { free(gen); rsmoe_result_free(out); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
        /* gate-weighted, length-normalised log-probability (brief captions, top-k answers) */
        double sc = log(c->gates[e] > 1e-30f ? c->gates[e] : 1e-30) + res[i].sum_logprob / (res[i].n + (res[i].ended ? 1 : 0) > 0 ? res[i].n + (res[i].ended ? 1 : 0) : 1);
        if (sc > best_score) { best_score = sc; best = e; }
    }
    free(gen);
    if (question || !moe || p->style == RSMOE_STYLE_BRIEF) {
        out->chosen = best;
        out->text = strdup(out->aspects[best].text);
    } else {
        size_t len = 1;
        for (int e = 0; e < K; e++) len += strlen(out->aspects[e].text) + 1;
        out->text = malloc(len);
        if (out->text) {
            out->text[0] = 0;
            for (int e = 0; e < K; e++) {
                if (!out->aspects[e].text[0]) continue;
                if (out->text[0]) strcat(out->text, " ");
                strcat(out->text, out->aspects[e].text);
            }
        }
    }
    if (!out->text) { rsmoe_result_free(out); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
    double t_r = rs_time_s();
    if (!question && m->has_retrieval && p->use_retrieval) {
        /* the scene probe for every caption (cheap); for brief ones the consensus choice, which
         * replaces the log-probability choice above */
        const char *props[RSMOE_MAX_ASPECTS];
        for (int e = 0; e < K; e++) props[e] = out->aspects[e].text;
        rs_retrieval_pick pick;
        bool choose = p->style == RSMOE_STYLE_BRIEF;
        st = rs_retrieval_select(&m->retr, c->enc, m->enc_tokens, props, !choose ? -1 : p->retrieval_only ? 0 : K,
                                 0, c->pool, &pick);
        if (st) { rsmoe_result_free(out); return st; }
        size_t len;
        const char *sc = rs_retrieval_class(&m->retr, pick.scene, &len);
        snprintf(out->scene, sizeof out->scene, "%.*s", (int)len, sc);
        out->scene_prob = pick.scene_prob;
        if (choose) {
            free(out->text);
            out->text = pick.text;
            out->chosen = pick.proposal;
            out->retrieved = pick.proposal < 0;
        }
    }
    double t4 = rs_time_s();
    out->timings = (rsmoe_timings){.encode_ms = (t1 - t0) * 1e3, .qformer_ms = (t2 - t1) * 1e3, .router_ms = (t3 - t2) * 1e3,
                                   .prefill_ms = gs.prefill_s * 1e3, .decode_ms = gs.decode_s * 1e3, .retrieval_ms = (t4 - t_r) * 1e3, .total_ms = (t4 - t0) * 1e3,
                                   .prefill_tokens = gs.prefill_rows, .decode_steps = gs.steps, .decode_tokens = gs.decoded_rows};
    return RSMOE_OK;
}

rsmoe_status rsmoe_caption(rsmoe_context *c, const rsmoe_image *img, const rsmoe_generate_params *p, rsmoe_result *out) {
    return run(c, img, NULL, p, out);
}

rsmoe_status rsmoe_answer(rsmoe_context *c, const rsmoe_image *img, const char *question, const rsmoe_generate_params *p,
                          rsmoe_result *out) {
    if (!question) return rs_error(RSMOE_ERR_INVALID_ARG, "no question");
    return run(c, img, question, p, out);
}

/* ------------------------------------------------------------------ debug view (tests) */
#include "model/pipeline_debug.h"

void rs_ctx_set_debug(rsmoe_context *c, bool on) { c->debug = on; }

void rs_ctx_get_debug(const rsmoe_context *c, rs_ctx_debug *d) {
    d->enc = c->enc;
    d->qout = c->qout;
    d->prefix = c->prefix;
    d->gates = c->gates;
    d->soft = c->soft;
    d->first_logits = c->dbg_logits;
    d->n_streams = c->dbg_streams;
}
