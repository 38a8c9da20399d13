/* llm_train.c - training forward/backward of the LLM Block with per-sequence LoRA adapters
 * and optional full-weight gradients. See llm_train.h. */
#include "train/llm_train.h"

#include "kernels/gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows are PACKED: sequence b's valid positions 0..len[b]-1 are rows off[b]..off[b+1]-1, so
 * every row-wise operation costs the real tokens, not B·T. With right padding and causal
 * attention the padding never reaches a valid position, so it is simply left out.
 * saved activations of one decoder layer (all [N, ...] with N = Σ len rows) */
typedef struct {
    float *x;      /* [N, D] residual stream into the layer */
    float *xn1;    /* [N, D] attn_norm output */
    float *rstd1;  /* [N] */
    float *q;      /* [N, qd] after RoPE */
    float *k, *v;  /* [N, kvd] (k after RoPE) */
    float *probs;  /* per sequence [H, len, len], at poff[b] */
    float *att;    /* [N, qd] attention output (input of wo) */
    float *xmid;   /* [N, D] residual after attention */
    float *xn2;    /* [N, D] ffn_norm output */
    float *rstd2;  /* [N] */
    float *g, *u;  /* [N, F] gate and up pre-activations */
    float *lh[RS_LT_COUNT]; /* [N, max_rank] LoRA x·Aᵀ of each target (rows of adapted seqs) */
} layer_act;

struct rs_llm_train {
    rs_llm_config c;
    int max_B, max_T, max_rank;
    rs_arena arena;
    layer_act *L;
    float *xf, *xnf, *rstdf, *logits;
    /* scratch */
    float *dx, *dxn, *tmp, *dq, *datt, *dk, *dv, *dg, *du, *hbuf, *dlh, *attn_sc;
    int32_t *pos32, *tgt, *len;
    int32_t *srow, *stgt; /* scored rows (tgt != ignore) and their targets, n_scored of them */
    int *adapter;
    int32_t *off; /* [B+1] first packed row of each sequence */
    size_t *poff; /* [B] offset of each sequence's attention probabilities */
    int64_t N;    /* packed rows of the last forward */
    /* the last forward */
    bool ready;
    const rs_llm_weights *w;
    rs_llm_train_batch b;
    int64_t n_scored;
};

/* ------------------------------------------------------------------ layout */
/* a bump allocation on the arena, or (arena NULL) a count of the bytes it would take */
static void *take(rs_arena *a, size_t *count, size_t bytes) {
    if (!a) {
        *count += (bytes + 63) & ~(size_t)63;
        return NULL;
    }
    return rs_arena_alloc(a, bytes);
}
#define TAKEF(n) ((float *)take(a, &count, (size_t)(n) * sizeof(float)))

/* lays out every buffer of t (a NULL: only counts); returns the byte count */
static size_t layout(rs_llm_train *t, const rs_llm_config *c, int maxB, int maxT, int maxr, rs_arena *a) {
    size_t count = 0;
    size_t N = (size_t)maxB * (size_t)maxT, D = (size_t)c->dim, F = (size_t)c->ffn;
    size_t qd = (size_t)c->n_heads * (size_t)c->head_dim, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t TT = (size_t)maxT * (size_t)maxT;
    layer_act *L = take(a, &count, (size_t)c->n_layers * sizeof(layer_act));
    for (int l = 0; l < c->n_layers; l++) {
        layer_act la;
        memset(&la, 0, sizeof la);
        la.x = TAKEF(N * D);
        la.xn1 = TAKEF(N * D);
        la.rstd1 = TAKEF(N);
        la.q = TAKEF(N * qd);
        la.k = TAKEF(N * kvd);
        la.v = TAKEF(N * kvd);
        la.probs = TAKEF((size_t)maxB * (size_t)c->n_heads * TT);
        la.att = TAKEF(N * qd);
        la.xmid = TAKEF(N * D);
        la.xn2 = TAKEF(N * D);
        la.rstd2 = TAKEF(N);
        la.g = TAKEF(N * F);
        la.u = TAKEF(N * F);
        for (int k = 0; k < RS_LT_COUNT; k++) la.lh[k] = maxr > 0 ? TAKEF(N * (size_t)maxr) : NULL;
        if (L) L[l] = la;
    }
    float *xf = TAKEF(N * D), *xnf = TAKEF(N * D), *rstdf = TAKEF(N), *logits = TAKEF(N * (size_t)c->vocab);
    float *dx = TAKEF(N * D), *dxn = TAKEF(N * D), *tmp = TAKEF(N * D);
    float *dq = TAKEF(N * qd), *datt = TAKEF(N * qd), *dk = TAKEF(N * kvd), *dv = TAKEF(N * kvd);
    float *dg = TAKEF(N * F), *du = TAKEF(N * F), *hbuf = TAKEF(N * F);
    float *dlh = maxr > 0 ? TAKEF(N * (size_t)maxr) : NULL;
    float *attn_sc = TAKEF(TT);
    int32_t *pos32 = take(a, &count, N * sizeof(int32_t)), *tgt = take(a, &count, N * sizeof(int32_t));
    int32_t *srow = take(a, &count, N * sizeof(int32_t)), *stgt = take(a, &count, N * sizeof(int32_t));
    int32_t *off = take(a, &count, (size_t)(maxB + 1) * sizeof(int32_t));
    size_t *poff = take(a, &count, (size_t)maxB * sizeof(size_t));
    int32_t *len = take(a, &count, (size_t)maxB * sizeof(int32_t));
    int *adapter = take(a, &count, (size_t)maxB * sizeof(int));
    if (t) {
        t->L = L;
        t->xf = xf; t->xnf = xnf; t->rstdf = rstdf; t->logits = logits;
        t->dx = dx; t->dxn = dxn; t->tmp = tmp; t->dq = dq; t->datt = datt; t->dk = dk; t->dv = dv;
        t->dg = dg; t->du = du; t->hbuf = hbuf; t->dlh = dlh; t->attn_sc = attn_sc;
        t->pos32 = pos32; t->tgt = tgt; t->srow = srow; t->stgt = stgt; t->off = off; t->poff = poff; t->len = len; t->adapter = adapter;
    }
    return count;
}

static rsmoe_status check_config(const rs_llm_config *c, int maxB, int maxT, int maxr) {
    if (c->vocab <= 0 || c->dim <= 0 || c->n_layers <= 0 || c->n_layers > RS_LLM_MAX_LAYERS ||
        c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim <= 0 ||
        c->head_dim % 2 || c->head_dim > RS_ROPE_MAX_D || c->ffn <= 0 || c->max_seq <= 0 || !(c->rms_eps > 0))
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: bad configuration");
    if (maxB < 1 || maxT < 1 || maxT > c->max_seq || maxr < 0)
        return rs_error(RSMOE_ERR_INVALID_ARG,
                        "LLM training: bad sizes (batch %d, length %d of at most %d, rank %d)", maxB, maxT,
                        c->max_seq, maxr);
    return RSMOE_OK;
}

size_t rs_llm_train_bytes(const rs_llm_config *c, int max_B, int max_T, int max_rank) {
    if (check_config(c, max_B, max_T, max_rank)) return 0;
    return layout(NULL, c, max_B, max_T, max_rank, NULL);
}

rsmoe_status rs_llm_train_new(const rs_llm_config *c, int max_B, int max_T, int max_rank, rs_llm_train **out) {
    *out = NULL;
    rsmoe_status st = check_config(c, max_B, max_T, max_rank);
    if (st) return st;
    rs_llm_train *t = calloc(1, sizeof *t);
    if (!t) return rs_error(RSMOE_ERR_NOMEM, "LLM training: out of memory");
    t->c = *c;
    t->max_B = max_B;
    t->max_T = max_T;
    t->max_rank = max_rank;
    size_t bytes = layout(NULL, c, max_B, max_T, max_rank, NULL);
    if ((st = rs_arena_init(&t->arena, bytes))) {
        free(t);
        return rs_error(RSMOE_ERR_NOMEM, "LLM training: cannot allocate %zu MiB of activations", bytes >> 20);
    }
    layout(t, c, max_B, max_T, max_rank, &t->arena);
    if (!t->adapter) {
        rs_llm_train_free(t);
        return rs_error(RSMOE_ERR_INTERNAL, "LLM training: arena sizing");
    }
    *out = t;
    return RSMOE_OK;
}

void rs_llm_train_free(rs_llm_train *t) {
    if (!t) return;
    rs_arena_free(&t->arena);
    free(t);
}

const float *rs_llm_train_logits(const rs_llm_train *t) { return t->logits; }

/* ------------------------------------------------------------------ gradient sets */
static void target_dims(const rs_llm_config *c, int tg, int64_t *in, int64_t *out) {
    int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    switch (tg) {
    case RS_LT_Q: *in = D; *out = qd; break;
    case RS_LT_K: case RS_LT_V: *in = D; *out = kvd; break;
    case RS_LT_O: *in = qd; *out = D; break;
    case RS_LT_GATE: case RS_LT_UP: *in = D; *out = c->ffn; break;
    default: *in = c->ffn; *out = D; break;
    }
}

rsmoe_status rs_lora_train_new(const rs_llm_config *c, int rank, float alpha, unsigned targets,
                               rs_lora_train *o) {
    memset(o, 0, sizeof *o);
    if (check_config(c, 1, 1, rank)) return rs_error(RSMOE_ERR_INVALID_ARG, "LoRA: bad configuration");
    if (rank < 1 || !(alpha > 0) || !(targets & 0x7fu) || (targets & ~0x7fu))
        return rs_error(RSMOE_ERR_INVALID_ARG, "LoRA: bad rank %d, alpha %g or target mask 0x%x", rank,
                        (double)alpha, targets);
    int64_t n = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int tg = 0; tg < RS_LT_COUNT; tg++)
            if (targets >> tg & 1) {
                int64_t in, out;
                target_dims(c, tg, &in, &out);
                n += (int64_t)rank * (in + out);
            }
    o->params = calloc((size_t)n, sizeof(float));
    o->grads = calloc((size_t)n, sizeof(float));
    if (!o->params || !o->grads) {
        rs_lora_train_free(o);
        return rs_error(RSMOE_ERR_NOMEM, "LoRA: cannot allocate %lld parameters", (long long)n);
    }
    o->n = n;
    o->n_layers = c->n_layers;
    o->rank = rank;
    o->targets = targets;
    o->set.rank = rank;
    o->set.scale = alpha / (float)rank;
    for (int tg = 0; tg < RS_LT_COUNT; tg++) target_dims(c, tg, &o->in[tg], &o->out[tg]);
    int64_t off = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int tg = 0; tg < RS_LT_COUNT; tg++)
            if (targets >> tg & 1) {
                int64_t in, out;
                target_dims(c, tg, &in, &out);
                o->set.A[l][tg] = o->params + off;
                o->grad.dA[l][tg] = o->grads + off;
                off += (int64_t)rank * in;
                o->set.B[l][tg] = o->params + off;
                o->grad.dB[l][tg] = o->grads + off;
                off += (int64_t)rank * out;
            }
    return RSMOE_OK;
}

void rs_lora_train_init(rs_lora_train *t, rs_rng *rng, float b_std) {
    for (int l = 0; l < t->n_layers; l++)
        for (int tg = 0; tg < RS_LT_COUNT; tg++) {
            float *A = (float *)t->set.A[l][tg], *B = (float *)t->set.B[l][tg];
            if (!A) continue;
            int64_t in = t->in[tg], out = t->out[tg];
            float bound = 1.0f / sqrtf((float)in);
            rs_rng_fill_uniform(rng, A, (size_t)(t->rank * in), -bound, bound);
            if (b_std > 0) rs_rng_fill_normal(rng, B, (size_t)(t->rank * out), 0.0f, b_std);
            else memset(B, 0, (size_t)(t->rank * out) * sizeof(float));
        }
}

void rs_lora_train_zero_grad(rs_lora_train *t) {
    if (t->grads) memset(t->grads, 0, (size_t)t->n * sizeof(float));
}

void rs_lora_train_free(rs_lora_train *t) {
    free(t->params);
    free(t->grads);
    memset(t, 0, sizeof *t);
}

rsmoe_status rs_llm_grads_new(const rs_llm_config *c, rs_llm_grads *g) {
    memset(g, 0, sizeof *g);
    if (check_config(c, 1, 1, 0)) return rs_error(RSMOE_ERR_INVALID_ARG, "LLM gradients: bad configuration");
    int64_t D = c->dim, F = c->ffn, V = c->vocab;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t per = 2 * D + D * qd * 2 + D * kvd * 2 + 3 * D * F;
    int64_t n = V * D + D + (c->tied ? 0 : V * D) + per * c->n_layers;
    g->block = calloc((size_t)n, sizeof(float));
    if (!g->block) return rs_error(RSMOE_ERR_NOMEM, "LLM gradients: cannot allocate %lld floats", (long long)n);
    g->n = n;
    g->c = *c;
    float *p = g->block;
    g->tok_embd = p; p += V * D;
    g->out_norm = p; p += D;
    if (!c->tied) { g->output = p; p += V * D; }
    for (int l = 0; l < c->n_layers; l++) {
        rs_llm_layer_grad *L = &g->layers[l];
        L->attn_norm = p; p += D;
        L->wq = p; p += D * qd;
        L->wk = p; p += D * kvd;
        L->wv = p; p += D * kvd;
        L->wo = p; p += qd * D;
        L->ffn_norm = p; p += D;
        L->w_gate = p; p += D * F;
        L->w_up = p; p += D * F;
        L->w_down = p; p += F * D;
    }
    return RSMOE_OK;
}

void rs_llm_grads_zero(rs_llm_grads *g) {
    if (g->block) memset(g->block, 0, (size_t)g->n * sizeof(float));
}

void rs_llm_grads_free(rs_llm_grads *g) {
    free(g->block);
    memset(g, 0, sizeof *g);
}

int rs_llm_param_list(const rs_llm_weights *w, const rs_llm_grads *g, float **params, float **grads,
                      int64_t *sizes, int max) {
    int n = 0;
    const rs_llm_config *c = &w->c;
    if (c->n_layers > RS_LLM_MAX_LAYERS || c->n_layers != g->c.n_layers || c->tied != g->c.tied ||
        c->dim != g->c.dim || c->vocab != g->c.vocab || c->ffn != g->c.ffn) {
        rs_error(RSMOE_ERR_INVALID_ARG, "LLM parameter list: gradients for another configuration");
        return -1;
    }
#define PUT(T, G)                                                                                    \
    do {                                                                                             \
        if (!(T) || (T)->type != RS_F32) {                                                           \
            rs_error(RSMOE_ERR_INVALID_ARG, "LLM parameter list: weight %s missing or not f32",      \
                     (T) ? (T)->name : "?");                                                         \
            return -1;                                                                               \
        }                                                                                            \
        if (n >= max) {                                                                              \
            rs_error(RSMOE_ERR_INVALID_ARG, "LLM parameter list: more than %d entries", max);        \
            return -1;                                                                               \
        }                                                                                            \
        params[n] = (float *)(T)->data; grads[n] = (G); sizes[n] = rs_tensor_nelements(T); n++;       \
    } while (0)
    PUT(w->tok_embd, g->tok_embd);
    PUT(w->out_norm, g->out_norm);
    if (!c->tied) PUT(w->output, g->output);
    for (int l = 0; l < c->n_layers; l++) {
        const rs_llm_layer *L = &w->layers[l];
        const rs_llm_layer_grad *G = &g->layers[l];
        PUT(L->attn_norm, G->attn_norm);
        PUT(L->wq, G->wq);
        PUT(L->wk, G->wk);
        PUT(L->wv, G->wv);
        PUT(L->wo, G->wo);
        PUT(L->ffn_norm, G->ffn_norm);
        PUT(L->w_gate, G->w_gate);
        PUT(L->w_up, G->w_up);
        PUT(L->w_down, G->w_down);
    }
#undef PUT
    return n;
}

/* ------------------------------------------------------------------ forward */
static const float *F32(const rs_tensor *t) { return (const float *)t->data; }

static rsmoe_status check_weights(const rs_llm_train *t, const rs_llm_weights *w) {
    const rs_llm_config *c = &w->c, *tc = &t->c;
    if (c->vocab != tc->vocab || c->dim != tc->dim || c->n_layers != tc->n_layers || c->n_heads != tc->n_heads ||
        c->n_kv_heads != tc->n_kv_heads || c->head_dim != tc->head_dim || c->ffn != tc->ffn || c->tied != tc->tied)
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: weights of another configuration than the state's");
    rsmoe_status st = rs_llm_check(w);
    if (st) return st;
    if (c->tied && w->output != w->tok_embd)
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: tied model whose output is not token_embd");
    const rs_tensor *all[3] = {w->tok_embd, w->out_norm, w->output};
    for (int i = 0; i < 3; i++)
        if (all[i]->type != RS_F32)
            return rs_error(RSMOE_ERR_UNSUPPORTED, "LLM training: weight %s is %s; training needs f32 weights",
                            all[i]->name, rs_dtype_name(all[i]->type));
    for (int l = 0; l < c->n_layers; l++) {
        const rs_llm_layer *L = &w->layers[l];
        const rs_tensor *m[9] = {L->attn_norm, L->wq, L->wk, L->wv, L->wo, L->ffn_norm, L->w_gate, L->w_up, L->w_down};
        for (int i = 0; i < 9; i++)
            if (m[i]->type != RS_F32)
                return rs_error(RSMOE_ERR_UNSUPPORTED,
                                "LLM training: weight %s (layer %d) is %s; training needs f32 weights", m[i]->name, l,
                                rs_dtype_name(m[i]->type));
    }
    return RSMOE_OK;
}

/* the adapter set of sequence b with target tg present, or NULL */
static const rs_lora_set *seq_set(const rs_llm_train *t, int b, int layer, int tg) {
    int a = t->adapter[b];
    if (a < 0 || !t->b.adapters) return NULL;
    const rs_lora_set *s = t->b.adapters[a];
    if (!s || s->rank <= 0 || !s->A[layer][tg] || !s->B[layer][tg]) return NULL;
    return s;
}

/* the next run of consecutive sequences [*b0, *b1) sharing one adapter (their packed rows
 * are contiguous, so one GEMM covers them); returns false at the end */
static bool next_run(const rs_llm_train *t, int *b0, int *b1) {
    int b = *b1;
    while (b < t->b.B && t->adapter[b] < 0) b++;
    if (b >= t->b.B) return false;
    int e = b + 1;
    while (e < t->b.B && t->adapter[e] == t->adapter[b]) e++;
    *b0 = b;
    *b1 = e;
    return true;
}

/* y[rows] += scale·(x·Aᵀ)·Bᵀ over the valid rows of the adapted sequences; keeps x·Aᵀ in lh
 * (rows of a run from its first row on, row stride r) */
static void lora_fwd(rs_llm_train *t, int layer, int tg, const float *x, float *y, int64_t in, int64_t out,
                     rs_pool *pool) {
    for (int b0 = 0, b1 = 0; next_run(t, &b0, &b1);) {
        const rs_lora_set *s = seq_set(t, b0, layer, tg);
        size_t row = (size_t)t->off[b0];
        int n = t->off[b1] - t->off[b0];
        if (!s || n == 0) continue;
        int r = s->rank;
        float *h = t->L[layer].lh[tg] + row * (size_t)t->max_rank;
        rs_sgemm(false, true, n, r, in, 1.0f, x + row * (size_t)in, in, s->A[layer][tg], in, 0.0f, h, r, pool);
        rs_sgemm(false, true, n, out, r, s->scale, h, r, s->B[layer][tg], r, 1.0f, y + row * (size_t)out, out,
                 pool);
    }
}

/* dB += scale·dyᵀ·h; dA += (scale·dy·B)ᵀ·x; dx += (scale·dy·B)·A over the adapted sequences */
static void lora_bwd(rs_llm_train *t, const rs_llm_bwd_out *o, int layer, int tg, const float *x, const float *dy,
                     float *dx, int64_t in, int64_t out, rs_pool *pool) {
    for (int b0 = 0, b1 = 0; next_run(t, &b0, &b1);) {
        const rs_lora_set *s = seq_set(t, b0, layer, tg);
        size_t row = (size_t)t->off[b0];
        int n = t->off[b1] - t->off[b0];
        if (!s || n == 0) continue;
        int r = s->rank;
        rs_lora_grad *lg = o->lora ? o->lora[t->adapter[b0]] : NULL;
        float *dA = lg ? lg->dA[layer][tg] : NULL, *dB = lg ? lg->dB[layer][tg] : NULL;
        const float *h = t->L[layer].lh[tg] + row * (size_t)t->max_rank;
        const float *dyb = dy + row * (size_t)out, *xb = x + row * (size_t)in;
        if (dB) rs_sgemm(true, false, out, r, n, s->scale, dyb, out, h, r, 1.0f, dB, r, pool);
        rs_sgemm(false, false, n, r, out, s->scale, dyb, out, s->B[layer][tg], r, 0.0f, t->dlh, r, pool);
        if (dA) rs_sgemm(true, false, r, in, n, 1.0f, t->dlh, r, xb, in, 1.0f, dA, in, pool);
        rs_sgemm(false, false, n, in, r, 1.0f, t->dlh, r, s->A[layer][tg], in, 1.0f, dx + row * (size_t)in, in, pool);
    }
}

static rs_attn_desc attn_desc(const rs_llm_train *t, int b) {
    const rs_llm_config *c = &t->c;
    rs_attn_desc ad = {.Tq = t->len[b], .Tk = t->len[b], .Hq = c->n_heads, .Hkv = c->n_kv_heads, .d = c->head_dim,
                       .causal = true, .q_offset = 0};
    return ad;
}

rsmoe_status rs_llm_train_forward(rs_llm_train *t, const rs_llm_weights *w, const rs_llm_train_batch *b,
                                  float *loss, int64_t *n_scored, rs_pool *pool) {
    t->ready = false;
    rsmoe_status st = check_weights(t, w);
    if (st) return st;
    if (!b || b->B < 1 || b->B > t->max_B || b->T < 1 || b->T > t->max_T || !b->emb || !b->targets)
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: batch of %d x %d (at most %d x %d) or NULL arrays",
                        b ? b->B : 0, b ? b->T : 0, t->max_B, t->max_T);
    const rs_llm_config *c = &t->c;
    int B = b->B, T = b->T;
    int64_t D = c->dim, F = c->ffn, V = c->vocab, H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim,
            qd = H * hd, kvd = Hkv * hd;
    for (int i = 0; i < B; i++) {
        int len = b->len ? b->len[i] : T;
        if (len < 0 || len > T)
            return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: sequence %d has length %d (0..%d allowed)", i, len, T);
        int a = b->adapter ? b->adapter[i] : -1;
        if (a < 0) a = -1;
        if (a >= 0 && (!b->adapters || a >= b->n_adapters))
            return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: sequence %d uses adapter %d of %d", i, a,
                            b->adapters ? b->n_adapters : 0);
        if (a >= 0 && b->adapters[a] && b->adapters[a]->rank > t->max_rank)
            return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: adapter %d has rank %d, above the state's %d", a,
                            b->adapters[a]->rank, t->max_rank);
        if (b->weight && !isfinite(b->weight[i]))
            return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: sequence %d has weight %g (not finite)", i, (double)b->weight[i]);
        t->len[i] = len;
        t->adapter[i] = a;
    }
    int64_t N = 0;
    size_t pacc = 0;
    for (int i = 0; i < B; i++) {
        t->off[i] = (int32_t)N;
        t->poff[i] = pacc;
        pacc += (size_t)H * (size_t)t->len[i] * (size_t)t->len[i];
        for (int p = 0; p < t->len[i]; p++, N++) {
            size_t src = (size_t)i * (size_t)T + (size_t)p;
            int32_t tg = b->targets[src];
            if (tg != RS_IGNORE_INDEX && (tg < 0 || tg >= V))
                return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: target %d at [%d, %d] outside the vocabulary (%lld)",
                                tg, i, p, (long long)V);
            t->tgt[N] = tg;
            t->pos32[N] = p;
            memcpy(t->L[0].x + N * D, b->emb + src * (size_t)D, (size_t)D * sizeof(float));
        }
    }
    t->off[B] = (int32_t)N;
    t->N = N;
    t->b = *b;
    t->w = w;

    for (int l = 0; l < c->n_layers && N > 0; l++) {
        const rs_llm_layer *Lw = &w->layers[l];
        layer_act *A = &t->L[l];
        float *xnext = l + 1 < c->n_layers ? t->L[l + 1].x : t->xf;
        /* attention */
        rs_rmsnorm_fwd(A->xn1, A->rstd1, A->x, F32(Lw->attn_norm), N, D, c->rms_eps, pool);
        rs_linear_fwd(A->q, A->xn1, F32(Lw->wq), NULL, N, D, qd, pool);
        rs_linear_fwd(A->k, A->xn1, F32(Lw->wk), NULL, N, D, kvd, pool);
        rs_linear_fwd(A->v, A->xn1, F32(Lw->wv), NULL, N, D, kvd, pool);
        lora_fwd(t, l, RS_LT_Q, A->xn1, A->q, D, qd, pool);
        lora_fwd(t, l, RS_LT_K, A->xn1, A->k, D, kvd, pool);
        lora_fwd(t, l, RS_LT_V, A->xn1, A->v, D, kvd, pool);
        if ((st = rs_rope_fwd(A->q, t->pos32, 0, N, H, hd, 0, &c->rope, pool))) return st;
        if ((st = rs_rope_fwd(A->k, t->pos32, 0, N, Hkv, hd, 0, &c->rope, pool))) return st;
        for (int i = 0; i < B; i++) {
            if (t->len[i] == 0) continue;
            rs_attn_desc ad = attn_desc(t, i);
            size_t row = (size_t)t->off[i];
            st = rs_attn_fwd(A->att + row * (size_t)qd, A->probs + t->poff[i],
                             A->q + row * (size_t)qd, A->k + row * (size_t)kvd, A->v + row * (size_t)kvd, &ad, NULL,
                             pool);
            if (st) return st;
        }
        rs_linear_fwd(A->xmid, A->att, F32(Lw->wo), NULL, N, qd, D, pool);
        lora_fwd(t, l, RS_LT_O, A->att, A->xmid, qd, D, pool);
        rs_vec_acc(A->xmid, A->x, N * D);
        /* feed-forward */
        rs_rmsnorm_fwd(A->xn2, A->rstd2, A->xmid, F32(Lw->ffn_norm), N, D, c->rms_eps, pool);
        rs_linear_fwd(A->g, A->xn2, F32(Lw->w_gate), NULL, N, D, F, pool);
        rs_linear_fwd(A->u, A->xn2, F32(Lw->w_up), NULL, N, D, F, pool);
        lora_fwd(t, l, RS_LT_GATE, A->xn2, A->g, D, F, pool);
        lora_fwd(t, l, RS_LT_UP, A->xn2, A->u, D, F, pool);
        rs_swiglu_fwd(t->hbuf, A->g, A->u, N * F, pool);
        rs_linear_fwd(xnext, t->hbuf, F32(Lw->w_down), NULL, N, F, D, pool);
        lora_fwd(t, l, RS_LT_DOWN, t->hbuf, xnext, F, D, pool);
        rs_vec_acc(xnext, A->xmid, N * D);
    }
    rs_rmsnorm_fwd(t->xnf, t->rstdf, t->xf, F32(w->out_norm), N, D, c->rms_eps, pool);
    /* logits only for the scored rows (prefix and prompt rows are usually most of a row set) */
    int64_t ns = 0;
    for (int64_t r = 0; r < N; r++)
        if (t->tgt[r] != RS_IGNORE_INDEX) {
            t->srow[ns] = (int32_t)r;
            t->stgt[ns] = t->tgt[r];
            memcpy(t->tmp + ns * D, t->xnf + r * D, (size_t)D * sizeof(float));
            ns++;
        }
    t->n_scored = ns;
    float l0 = 0;
    if (ns > 0) {
        rs_linear_fwd(t->logits, t->tmp, F32(w->output), NULL, ns, D, V, pool);
        if ((st = rs_cross_entropy_fwd(&l0, NULL, t->logits, t->stgt, ns, V, RS_IGNORE_INDEX, pool))) return st;
    }
    *loss = l0;
    if (n_scored) *n_scored = t->n_scored;
    t->ready = true;
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ backward */
rsmoe_status rs_llm_train_backward(rs_llm_train *t, const rs_llm_weights *w, const rs_llm_bwd_out *o,
                                   rs_pool *pool) {
    if (!t->ready || w != t->w)
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: backward without a forward of these weights");
    if (o->weights && (o->weights->c.n_layers != t->c.n_layers || o->weights->c.dim != t->c.dim ||
                       o->weights->c.vocab != t->c.vocab || o->weights->c.ffn != t->c.ffn ||
                       o->weights->c.tied != t->c.tied || o->weights->c.n_heads != t->c.n_heads ||
                       o->weights->c.n_kv_heads != t->c.n_kv_heads || o->weights->c.head_dim != t->c.head_dim))
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM training: weight gradients of another configuration");
    t->ready = false; /* the logits become their gradient below */
    const rs_llm_config *c = &t->c;
    int B = t->b.B, T = t->b.T;
    int64_t N = t->N, D = c->dim, F = c->ffn, V = c->vocab, H = c->n_heads, Hkv = c->n_kv_heads,
            hd = c->head_dim, qd = H * hd, kvd = Hkv * hd;
    rs_llm_grads *G = o->weights;
    float scale = o->loss_scale != 0 ? o->loss_scale : 1.0f;
    rsmoe_status st;
    float *dlogits = t->logits;
    int64_t ns = t->n_scored;
    rs_vec_zero(t->dxn, N * D);
    if (ns > 0) {
        if ((st = rs_cross_entropy_bwd(dlogits, t->logits, t->stgt, ns, V, RS_IGNORE_INDEX, scale, pool))) return st;
        if (t->b.weight) /* scored rows are in packed order: sequence i owns rows off[i] .. off[i+1]-1 */
            for (int64_t i = 0, seq = 0; i < ns; i++) {
                while (t->srow[i] >= t->off[seq + 1]) seq++;
                rs_vec_scale(dlogits + i * V, t->b.weight[seq], V);
            }
        for (int64_t i = 0; i < ns; i++)
            memcpy(t->tmp + i * D, t->xnf + (int64_t)t->srow[i] * D, (size_t)D * sizeof(float));
        float *gout = G ? (c->tied ? G->tok_embd : G->output) : NULL;
        /* compact input gradient into dx (free here), scattered to the rows of dxn */
        rs_linear_bwd(t->dx, gout, NULL, dlogits, t->tmp, F32(w->output), ns, D, V, pool);
        for (int64_t i = 0; i < ns; i++)
            memcpy(t->dxn + (int64_t)t->srow[i] * D, t->dx + i * D, (size_t)D * sizeof(float));
    }
    rs_rmsnorm_bwd(t->dx, G ? G->out_norm : NULL, t->dxn, t->xf, F32(w->out_norm), t->rstdf, N, D, pool);

    for (int l = c->n_layers - 1; l >= 0 && N > 0; l--) {
        const rs_llm_layer *Lw = &w->layers[l];
        rs_llm_layer_grad *LG = G ? &G->layers[l] : NULL;
        layer_act *A = &t->L[l];
        /* feed-forward: dx is the gradient of the layer's output */
        rs_swiglu_fwd(t->hbuf, A->g, A->u, N * F, pool);
        rs_linear_bwd(t->dg, LG ? LG->w_down : NULL, NULL, t->dx, t->hbuf, F32(Lw->w_down), N, F, D, pool);
        lora_bwd(t, o, l, RS_LT_DOWN, t->hbuf, t->dx, t->dg, F, D, pool);
        rs_swiglu_bwd(t->dg, t->du, t->dg, A->g, A->u, N * F, pool);
        rs_linear_bwd(t->dxn, LG ? LG->w_gate : NULL, NULL, t->dg, A->xn2, F32(Lw->w_gate), N, D, F, pool);
        lora_bwd(t, o, l, RS_LT_GATE, A->xn2, t->dg, t->dxn, D, F, pool);
        rs_linear_bwd(t->tmp, LG ? LG->w_up : NULL, NULL, t->du, A->xn2, F32(Lw->w_up), N, D, F, pool);
        lora_bwd(t, o, l, RS_LT_UP, A->xn2, t->du, t->tmp, D, F, pool);
        rs_vec_acc(t->dxn, t->tmp, N * D);
        rs_rmsnorm_bwd(t->tmp, LG ? LG->ffn_norm : NULL, t->dxn, A->xmid, F32(Lw->ffn_norm), A->rstd2, N, D, pool);
        rs_vec_acc(t->dx, t->tmp, N * D);
        /* attention: dx is now the gradient of xmid */
        rs_linear_bwd(t->datt, LG ? LG->wo : NULL, NULL, t->dx, A->att, F32(Lw->wo), N, qd, D, pool);
        lora_bwd(t, o, l, RS_LT_O, A->att, t->dx, t->datt, qd, D, pool);
        for (int i = 0; i < B; i++) {
            if (t->len[i] == 0) continue;
            rs_attn_desc ad = attn_desc(t, i);
            size_t row = (size_t)t->off[i];
            st = rs_attn_bwd(t->dq + row * (size_t)qd, t->dk + row * (size_t)kvd, t->dv + row * (size_t)kvd,
                             t->datt + row * (size_t)qd, A->q + row * (size_t)qd, A->k + row * (size_t)kvd,
                             A->v + row * (size_t)kvd, A->probs + t->poff[i], &ad, t->attn_sc,
                             pool);
            if (st) return st;
        }
        if ((st = rs_rope_bwd(t->dq, t->pos32, 0, N, H, hd, 0, &c->rope, pool))) return st;
        if ((st = rs_rope_bwd(t->dk, t->pos32, 0, N, Hkv, hd, 0, &c->rope, pool))) return st;
        rs_linear_bwd(t->dxn, LG ? LG->wq : NULL, NULL, t->dq, A->xn1, F32(Lw->wq), N, D, qd, pool);
        lora_bwd(t, o, l, RS_LT_Q, A->xn1, t->dq, t->dxn, D, qd, pool);
        rs_linear_bwd(t->tmp, LG ? LG->wk : NULL, NULL, t->dk, A->xn1, F32(Lw->wk), N, D, kvd, pool);
        lora_bwd(t, o, l, RS_LT_K, A->xn1, t->dk, t->tmp, D, kvd, pool);
        rs_vec_acc(t->dxn, t->tmp, N * D);
        rs_linear_bwd(t->tmp, LG ? LG->wv : NULL, NULL, t->dv, A->xn1, F32(Lw->wv), N, D, kvd, pool);
        lora_bwd(t, o, l, RS_LT_V, A->xn1, t->dv, t->tmp, D, kvd, pool);
        rs_vec_acc(t->dxn, t->tmp, N * D);
        rs_rmsnorm_bwd(t->tmp, LG ? LG->attn_norm : NULL, t->dxn, A->x, F32(Lw->attn_norm), A->rstd1, N, D, pool);
        rs_vec_acc(t->dx, t->tmp, N * D);
    }
    if (o->d_emb) {
        for (int i = 0; i < B; i++)
            for (int p = 0; p < T; p++) {
                size_t row = (size_t)i * (size_t)T + (size_t)p;
                if (p < t->len[i])
                    memcpy(o->d_emb + row * (size_t)D, t->dx + ((size_t)t->off[i] + (size_t)p) * (size_t)D,
                           (size_t)D * sizeof(float));
                else memset(o->d_emb + row * (size_t)D, 0, (size_t)D * sizeof(float));
            }
    }
    return RSMOE_OK;
}
