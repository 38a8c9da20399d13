/* llm.c - LLaMA-family decoder forward over a batch of rows from several cache slots, with
 * per-row LoRA adapters. See llm.h. */
#include "model/llm.h"

#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "model/common.h"

#include <stdlib.h>
#include <string.h>

/* rows up to which LoRA runs grouped (decoding: 3 experts x 5 beams = 15 rows; 16 x 3 targets
 * within RS_LORA_ROWS_MAX_JOBS). Above it, per run of rows sharing an adapter, two rs_sgemm
 * calls per target: with 5 beams per expert that was 2,900 packed products of K = 8 or N = 8
 * per caption, 11 % of the default model's caption time in packing alone. */
#define LORA_FEW_ROWS 16

const char *const rs_lora_target_names[RS_LT_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                       "ffn_gate", "ffn_up", "ffn_down"};

struct rs_llm_state {
    rs_llm_config c;
    int n_slots, max_rows, max_logits, max_rank;
    float *kcache, *vcache; /* [slot][layer][max_seq][kv_dim] */
    int *filled;            /* positions present per slot (informative) */
    rs_arena arena;
    float *x, *xb, *xb2, *q, *k, *v, *att, *hg, *hu, *lora_h, *attn_scratch, *normed;
    int32_t *pos32;
    size_t bytes;
};

static size_t cache_index(const rs_llm_state *s, int slot, int layer, int pos) {
    int kvd = s->c.n_kv_heads * s->c.head_dim;
    return (((size_t)slot * (size_t)s->c.n_layers + (size_t)layer) * (size_t)s->c.max_seq + (size_t)pos) *
           (size_t)kvd;
}

static rsmoe_status check_mat(const rs_tensor *t, const char *what, int layer, int64_t in, int64_t out) {
    if (!t) return rs_error(RSMOE_ERR_FORMAT, "LLM: missing tensor %s (layer %d)", what, layer);
    if (t->ndim != 2 || t->ne[0] != in || t->ne[1] != out)
        return rs_error(RSMOE_ERR_FORMAT,
                        "LLM: tensor %s has shape [%lld, %lld], expected [%lld, %lld] (ggml order)",
                        t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)in, (long long)out);
    if (!rs_tensor_is_contiguous(t))
        return rs_error(RSMOE_ERR_FORMAT, "LLM: tensor %s is not contiguous", t->name);
    return RSMOE_OK;
}

static rsmoe_status check_vec(const rs_tensor *t, const char *what, int layer, int64_t n) {
    if (!t) return rs_error(RSMOE_ERR_FORMAT, "LLM: missing tensor %s (layer %d)", what, layer);
    if (t->type != RS_F32 || rs_tensor_nelements(t) != n)
        return rs_error(RSMOE_ERR_FORMAT, "LLM: tensor %s must be f32 with %lld values", t->name,
                        (long long)n);
    return RSMOE_OK;
}

rsmoe_status rs_llm_check(const rs_llm_weights *w) {
    const rs_llm_config *c = &w->c;
    if (c->vocab <= 0 || c->dim <= 0 || c->n_layers <= 0 || c->n_layers > RS_LLM_MAX_LAYERS ||
        c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim <= 0 ||
        c->head_dim % 2 || c->ffn <= 0 || c->max_seq <= 0 || !(c->rms_eps > 0))
        return rs_error(RSMOE_ERR_FORMAT,
                        "LLM: bad configuration (vocab %d, dim %d, layers %d, heads %d/%d, head_dim %d, "
                        "ffn %d, max_seq %d)",
                        c->vocab, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn,
                        c->max_seq);
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    rsmoe_status st;
    if ((st = check_mat(w->tok_embd, "token_embd", -1, c->dim, c->vocab))) return st;
    if ((st = check_vec(w->out_norm, "output_norm", -1, c->dim))) return st;
    if ((st = check_mat(w->output, "output", -1, c->dim, c->vocab))) return st;
    for (int l = 0; l < c->n_layers; l++) {
        const rs_llm_layer *L = &w->layers[l];
        if ((st = check_vec(L->attn_norm, "attn_norm", l, c->dim))) return st;
        if ((st = check_vec(L->ffn_norm, "ffn_norm", l, c->dim))) return st;
        if ((st = check_mat(L->wq, "attn_q", l, c->dim, qd))) return st;
        if ((st = check_mat(L->wk, "attn_k", l, c->dim, kvd))) return st;
        if ((st = check_mat(L->wv, "attn_v", l, c->dim, kvd))) return st;
        if ((st = check_mat(L->wo, "attn_output", l, qd, c->dim))) return st;
        if ((st = check_mat(L->w_gate, "ffn_gate", l, c->dim, c->ffn))) return st;
        if ((st = check_mat(L->w_up, "ffn_up", l, c->dim, c->ffn))) return st;
        if ((st = check_mat(L->w_down, "ffn_down", l, c->ffn, c->dim))) return st;
    }
    return RSMOE_OK;
}

rsmoe_status rs_llm_state_new(const rs_llm_config *c0, int n_ctx, int n_slots, int max_rows, int max_logits,
                              int max_lora_rank, rs_llm_state **out) {
    rs_llm_config cc = *c0, *c = &cc;
    if (n_ctx > 0 && n_ctx < c->max_seq) c->max_seq = n_ctx;
    *out = NULL;
    if (n_slots < 1 || max_rows < 1 || max_logits < 0 || max_lora_rank < 0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM state: bad sizes");
    rs_llm_state *s = calloc(1, sizeof *s);
    if (!s) return rs_error(RSMOE_ERR_NOMEM, "LLM state: out of memory");
    s->c = *c;
    s->n_slots = n_slots;
    s->max_rows = max_rows;
    s->max_logits = max_logits;
    s->max_rank = max_lora_rank;
    size_t kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t qd = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t cache = (size_t)n_slots * (size_t)c->n_layers * (size_t)c->max_seq * kvd;
    s->kcache = calloc(cache ? cache : 1, sizeof(float));
    s->vcache = calloc(cache ? cache : 1, sizeof(float));
    s->filled = calloc((size_t)n_slots, sizeof(int));
    if (!s->kcache || !s->vcache || !s->filled) {
        rs_llm_state_free(s);
        return rs_error(RSMOE_ERR_NOMEM, "LLM state: cannot allocate a KV cache of %zu MiB",
                        2 * cache * sizeof(float) >> 20);
    }
    rs_attn_desc ad = {.Tq = max_rows, .Tk = c->max_seq, .Hq = c->n_heads, .Hkv = c->n_kv_heads,
                       .d = c->head_dim, .causal = true};
    size_t attn_sc = rs_attn_fwd_scratch_floats(&ad, 64);
    size_t R = (size_t)max_rows, D = (size_t)c->dim, F = (size_t)c->ffn;
    size_t nfl = R * D * 3 + R * qd * 2 + R * kvd * 2 + R * F * 2 + (R + LORA_FEW_ROWS * 3) * (size_t)(max_lora_rank + 1) +
                 attn_sc + (size_t)(max_logits + 1) * D;
    rsmoe_status st = rs_arena_init(&s->arena, nfl * sizeof(float) + R * sizeof(int32_t) + 64 * 20);
    if (st) { rs_llm_state_free(s); return st; }
    s->x = rs_arena_floats(&s->arena, R * D);
    s->xb = rs_arena_floats(&s->arena, R * D);
    s->xb2 = rs_arena_floats(&s->arena, R * D);
    s->q = rs_arena_floats(&s->arena, R * qd);
    s->att = rs_arena_floats(&s->arena, R * qd);
    s->k = rs_arena_floats(&s->arena, R * kvd);
    s->v = rs_arena_floats(&s->arena, R * kvd);
    s->hg = rs_arena_floats(&s->arena, R * F);
    s->hu = rs_arena_floats(&s->arena, R * F);
    s->lora_h = rs_arena_floats(&s->arena, (R + LORA_FEW_ROWS * 3) * (size_t)(max_lora_rank + 1));
    s->attn_scratch = rs_arena_floats(&s->arena, attn_sc ? attn_sc : 1);
    s->normed = rs_arena_floats(&s->arena, (size_t)(max_logits + 1) * D);
    s->pos32 = rs_arena_alloc(&s->arena, R * sizeof(int32_t));
    if (!s->pos32) { rs_llm_state_free(s); return rs_error(RSMOE_ERR_INTERNAL, "LLM state: arena sizing"); }
    s->bytes = 2 * cache * sizeof(float) + s->arena.size;
    *out = s;
    return RSMOE_OK;
}

void rs_llm_state_free(rs_llm_state *s) {
    if (!s) return;
    free(s->kcache);
    free(s->vcache);
    free(s->filled);
    rs_arena_free(&s->arena);
    free(s);
}

size_t rs_llm_state_bytes(const rs_llm_state *s) { return s->bytes; }

int rs_llm_state_max_seq(const rs_llm_state *s) { return s->c.max_seq; }

void rs_llm_state_copy_slot(rs_llm_state *s, int dst, int src, int n) {
    if (dst == src || n <= 0) return;
    if (n > s->c.max_seq) n = s->c.max_seq;
    size_t kvd = (size_t)s->c.n_kv_heads * (size_t)s->c.head_dim;
    for (int l = 0; l < s->c.n_layers; l++) {
        memcpy(s->kcache + cache_index(s, dst, l, 0), s->kcache + cache_index(s, src, l, 0),
               (size_t)n * kvd * sizeof(float));
        memcpy(s->vcache + cache_index(s, dst, l, 0), s->vcache + cache_index(s, src, l, 0),
               (size_t)n * kvd * sizeof(float));
    }
    s->filled[dst] = n;
}

rsmoe_status rs_llm_embed(const rs_llm_weights *w, const int32_t *ids, int n, float *emb) {
    const rs_tensor *t = w->tok_embd;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= w->c.vocab)
            return rs_error(RSMOE_ERR_INVALID_ARG, "token id %d outside the vocabulary (%d)", ids[i],
                            w->c.vocab);
        rs_row_to_f32(t->type, (const uint8_t *)t->data + (size_t)ids[i] * t->nb[1],
                      emb + (size_t)i * (size_t)w->c.dim, w->c.dim);
    }
    return RSMOE_OK;
}

/* y[rows] += scale · (x·Aᵀ)·Bᵀ for each run of rows sharing an adapter */
static void lora_add(const rs_llm_batch *b, int layer, rs_lora_target t, const float *x, float *y,
                     int64_t in, int64_t out, float *h, rs_pool *pool) {
    if (!b->adapters || !b->adapter) return;
    int R = b->n_rows;
    for (int i = 0; i < R;) {
        int a = b->adapter[i], j = i + 1;
        while (j < R && b->adapter[j] == a) j++;
        if (a >= 0) {
            const rs_lora_set *ls = b->adapters[a];
            if (ls && ls->A[layer][t] && ls->B[layer][t] && ls->rank > 0) {
                int r = ls->rank;
                rs_sgemm(false, true, j - i, r, in, 1.0f, x + (size_t)i * in, in, ls->A[layer][t], in,
                         0.0f, h, r, pool);
                rs_sgemm(false, true, j - i, out, r, ls->scale, h, r, ls->B[layer][t], r, 1.0f,
                         y + (size_t)i * out, out, pool);
            }
        }
        i = j;
    }
}

/* The LoRA updates of up to three targets that read the same input x (q, k, v; gate, up): with
 * few rows (decoding, each row its expert's adapter) one grouped kernel for all of them
 * (kernels/ops.h rs_lora_rows_fwd: two pool runs; per row and target two small products
 * cost more in calls than in bytes), else lora_add per target. */
static void lora_targets(const rs_llm_batch *b, int layer, int n, const rs_lora_target *ts, const float *x,
                         float *const *ys, const int64_t *outs, int64_t in, float *h, int r_max, rs_pool *pool) {
    if (!b->adapters || !b->adapter) return;
    const int R = b->n_rows;
    if (R > LORA_FEW_ROWS || r_max < 1) {
        for (int g = 0; g < n; g++) lora_add(b, layer, ts[g], x, ys[g], in, outs[g], h, pool);
        return;
    }
    rs_lora_mat m[3][LORA_FEW_ROWS];
    rs_lora_rows_target tg[3];
    bool any = false;
    for (int g = 0; g < n; g++) {
        for (int i = 0; i < R; i++) {
            const int a = b->adapter[i];
            const rs_lora_set *ls = a >= 0 ? b->adapters[a] : NULL;
            m[g][i] = (rs_lora_mat){0};
            if (ls && ls->A[layer][ts[g]] && ls->B[layer][ts[g]] && ls->rank > 0) {
                m[g][i] = (rs_lora_mat){.A = ls->A[layer][ts[g]], .B = ls->B[layer][ts[g]], .Bt = ls->Bt[layer][ts[g]],
                                        .scale = ls->scale, .r = ls->rank};
                any = true;
            }
        }
        tg[g] = (rs_lora_rows_target){.y = ys[g], .out = outs[g], .ldy = outs[g], .m = m[g]};
    }
    if (any) rs_lora_rows_fwd(x, in, R, tg, n, r_max, h, pool);
}

/* n projections of the same input x: the base products (rs_tlinear_multi: one fused product
 * where the weights allow), then their LoRA updates */
static void proj(const rs_llm_batch *b, rs_llm_state *s, int layer, int n, const rs_tensor *const *ws,
                 const rs_lora_target *ts, const float *x, float *const *ys, const int64_t *outs, int64_t in,
                 rs_pool *pool) {
    rs_tlinear_multi(n, ws, ys, x, b->n_rows, pool);
    lora_targets(b, layer, n, ts, x, ys, outs, in, s->lora_h, s->max_rank, pool);
}

rsmoe_status rs_llm_forward(const rs_llm_weights *w, rs_llm_state *s, const rs_llm_batch *b,
                            rs_pool *pool) {
    const rs_llm_config *c = &w->c;
    int R = b->n_rows;
    if (R < 1 || R > s->max_rows)
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM forward: %d rows (1..%d allowed)", R, s->max_rows);
    if (rs_pool_size(pool) > 64)
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM forward: at most 64 threads");
    if (b->n_logit_rows < 0 || b->n_logit_rows > s->max_logits || (b->n_logit_rows && !b->logits))
        return rs_error(RSMOE_ERR_INVALID_ARG, "LLM forward: %d logit rows (max %d)", b->n_logit_rows,
                        s->max_logits);
    for (int i = 0; i < R; i++) {
        if (b->slot[i] < 0 || b->slot[i] >= s->n_slots)
            return rs_error(RSMOE_ERR_INVALID_ARG, "LLM forward: slot %d out of range", b->slot[i]);
        if (b->pos[i] < 0 || b->pos[i] >= s->c.max_seq)
            return rs_error(RSMOE_ERR_INVALID_ARG,
                            "LLM forward: position %d beyond the context length %d", b->pos[i], s->c.max_seq);
        if (i > 0 && b->slot[i] == b->slot[i - 1] && b->pos[i] != b->pos[i - 1] + 1)
            return rs_error(RSMOE_ERR_INVALID_ARG, "LLM forward: rows of slot %d not consecutive",
                            b->slot[i]);
        if (b->adapter && b->adapter[i] >= 0 && b->adapters && b->adapters[b->adapter[i]] &&
            b->adapters[b->adapter[i]]->rank > s->max_rank)
            return rs_error(RSMOE_ERR_INVALID_ARG, "LLM forward: LoRA rank above the state's %d",
                            s->max_rank);
    }
    for (int i = 0; i < b->n_logit_rows; i++)
        if (b->logit_rows[i] < 0 || b->logit_rows[i] >= R)
            return rs_error(RSMOE_ERR_INVALID_ARG, "LLM forward: logit row %d out of range", b->logit_rows[i]);

    int64_t D = c->dim, hd = c->head_dim, H = c->n_heads, Hkv = c->n_kv_heads, F = c->ffn;
    int64_t qd = H * hd, kvd = Hkv * hd;
    float *x = s->x, *xb = s->xb, *xb2 = s->xb2;
    memcpy(x, b->emb, (size_t)R * (size_t)D * sizeof(float));
    for (int i = 0; i < R; i++) s->pos32[i] = b->pos[i];

    for (int l = 0; l < c->n_layers; l++) {
        const rs_llm_layer *L = &w->layers[l];
        rs_rmsnorm_fwd(xb, NULL, x, (const float *)L->attn_norm->data, R, D, c->rms_eps, pool);
        {
            const rs_tensor *const ws[3] = {L->wq, L->wk, L->wv};
            const rs_lora_target ts[3] = {RS_LT_Q, RS_LT_K, RS_LT_V};
            float *const ys[3] = {s->q, s->k, s->v};
            const int64_t outs[3] = {qd, kvd, kvd};
            proj(b, s, l, 3, ws, ts, xb, ys, outs, D, pool);
        }
        rs_rope_fwd(s->q, s->pos32, 0, R, H, hd, 0, &c->rope, pool);
        rs_rope_fwd(s->k, s->pos32, 0, R, Hkv, hd, 0, &c->rope, pool);
        for (int i = 0; i < R; i++) {
            memcpy(s->kcache + cache_index(s, b->slot[i], l, b->pos[i]), s->k + (size_t)i * kvd,
                   (size_t)kvd * sizeof(float));
            memcpy(s->vcache + cache_index(s, b->slot[i], l, b->pos[i]), s->v + (size_t)i * kvd,
                   (size_t)kvd * sizeof(float));
        }
        for (int i = 0; i < R;) {
            int j = i + 1;
            while (j < R && b->slot[j] == b->slot[i]) j++;
            rs_attn_desc ad = {.Tq = j - i, .Tk = b->pos[j - 1] + 1, .Hq = H, .Hkv = Hkv, .d = hd,
                               .causal = true, .q_offset = b->pos[i]};
            rsmoe_status st = rs_attn_fwd(s->att + (size_t)i * qd, NULL, s->q + (size_t)i * qd,
                                          s->kcache + cache_index(s, b->slot[i], l, 0),
                                          s->vcache + cache_index(s, b->slot[i], l, 0), &ad,
                                          s->attn_scratch, pool);
            if (st) return st;
            i = j;
        }
        {
            const rs_tensor *const ws[1] = {L->wo};
            const rs_lora_target ts[1] = {RS_LT_O};
            float *const ys[1] = {xb2};
            const int64_t outs[1] = {D};
            proj(b, s, l, 1, ws, ts, s->att, ys, outs, qd, pool);
        }
        rs_vec_acc(x, xb2, (int64_t)R * D);

        rs_rmsnorm_fwd(xb, NULL, x, (const float *)L->ffn_norm->data, R, D, c->rms_eps, pool);
        {
            const rs_tensor *const ws[2] = {L->w_gate, L->w_up};
            const rs_lora_target ts[2] = {RS_LT_GATE, RS_LT_UP};
            float *const ys[2] = {s->hg, s->hu};
            const int64_t outs[2] = {F, F};
            proj(b, s, l, 2, ws, ts, xb, ys, outs, D, pool);
        }
        rs_swiglu_fwd(s->hg, s->hg, s->hu, (int64_t)R * F, pool);
        {
            const rs_tensor *const ws[1] = {L->w_down};
            const rs_lora_target ts[1] = {RS_LT_DOWN};
            float *const ys[1] = {xb2};
            const int64_t outs[1] = {D};
            proj(b, s, l, 1, ws, ts, s->hg, ys, outs, F, pool);
        }
        rs_vec_acc(x, xb2, (int64_t)R * D);
    }
    for (int i = 0; i < R; i++)
        if (s->filled[b->slot[i]] < b->pos[i] + 1) s->filled[b->slot[i]] = b->pos[i] + 1;
    if (b->n_logit_rows) {
        for (int i = 0; i < b->n_logit_rows; i++)
            memcpy(s->normed + (size_t)i * D, x + (size_t)b->logit_rows[i] * D, (size_t)D * sizeof(float));
        rs_rmsnorm_fwd(s->normed, NULL, s->normed, (const float *)w->out_norm->data, b->n_logit_rows, D,
                       c->rms_eps, pool);
        if (b->hidden_out)
            memcpy(b->hidden_out, s->normed, (size_t)b->n_logit_rows * (size_t)D * sizeof(float));
        rs_tlinear(w->output, NULL, s->normed, b->logits, b->n_logit_rows, pool);
    }
    return RSMOE_OK;
}

size_t rs_llm_weight_bytes(const rs_llm_weights *w) {
    size_t n = rs_tensor_nbytes(w->out_norm) + rs_tensor_nbytes(w->output);
    for (int l = 0; l < w->c.n_layers; l++) {
        const rs_llm_layer *L = &w->layers[l];
        n += rs_tensor_nbytes(L->attn_norm) + rs_tensor_nbytes(L->ffn_norm) + rs_tensor_nbytes(L->wq) +
             rs_tensor_nbytes(L->wk) + rs_tensor_nbytes(L->wv) + rs_tensor_nbytes(L->wo) +
             rs_tensor_nbytes(L->w_gate) + rs_tensor_nbytes(L->w_up) + rs_tensor_nbytes(L->w_down);
    }
    return n;
}

void rs_lora_target_dims(const rs_llm_config *c, int64_t in[RS_LT_COUNT], int64_t out[RS_LT_COUNT]) {
    const int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
                  F = c->ffn;
    const int64_t ins[RS_LT_COUNT] = {D, D, D, qd, D, D, F}, outs[RS_LT_COUNT] = {qd, kvd, kvd, D, F, F, D};
    memcpy(in, ins, sizeof ins);
    memcpy(out, outs, sizeof outs);
}

size_t rs_lora_set_bytes(const rs_lora_set *ls, const rs_llm_config *c) {
    if (!ls) return 0;
    int64_t ins[RS_LT_COUNT], outs[RS_LT_COUNT];
    rs_lora_target_dims(c, ins, outs);
    size_t n = 0;
    for (int l = 0; l < c->n_layers && l < 64; l++)
        for (int t = 0; t < RS_LT_COUNT; t++)
            if (ls->A[l][t] && ls->B[l][t]) n += (size_t)ls->rank * (size_t)(ins[t] + outs[t]) * sizeof(float);
    return n;
}
