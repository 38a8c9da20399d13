/* qformer_train.c - training forward/backward of the Q-Former + projection, and the
 * trainable tensor sets. See qformer_train.h. */
#include "train/qformer_train.h"

#include "formats/gguf_copy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ tensor sets */
rsmoe_status rs_tparams_from_gguf(const rs_gguf *g, const char *const *names, int n, rs_tparams *out) {
    memset(out, 0, sizeof *out);
    if (n <= 0) return rs_error(RSMOE_ERR_INVALID_ARG, "trainable set: no tensors");
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const rs_tensor *t = rs_gguf_find_tensor(g, names[i]);
        if (!t) return rs_error(RSMOE_ERR_FORMAT, "%s: missing tensor %s", rs_gguf_path(g), names[i]);
        if (t->type != RS_F32)
            return rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s is %s; training needs f32 weights (quantised or half "
                            "weights are for inference)", rs_gguf_path(g), names[i], rs_dtype_name(t->type));
        total += rs_tensor_nelements(t);
    }
    out->p = calloc((size_t)n, sizeof *out->p);
    out->params = malloc((size_t)total * sizeof(float));
    out->grads = calloc((size_t)total, sizeof(float));
    if (!out->p || !out->params || !out->grads) {
        rs_tparams_free(out);
        return rs_error(RSMOE_ERR_NOMEM, "trainable set: out of memory (%lld floats)", (long long)total);
    }
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        const rs_tensor *t = rs_gguf_find_tensor(g, names[i]);
        rs_tparam *p = &out->p[i];
        p->n = rs_tensor_nelements(t);
        p->param = out->params + off;
        p->grad = out->grads + off;
        memcpy(p->param, t->data, (size_t)p->n * sizeof(float));
        rsmoe_status st = rs_tensor_init(&p->tensor, names[i], RS_F32, t->ndim, t->ne, p->param);
        if (st) { rs_tparams_free(out); return st; }
        off += p->n;
    }
    out->n = n;
    out->total = total;
    return RSMOE_OK;
}

void rs_tparams_free(rs_tparams *s) {
    free(s->p);
    free(s->params);
    free(s->grads);
    memset(s, 0, sizeof *s);
}

void rs_tparams_zero_grad(rs_tparams *s) {
    if (s->grads) memset(s->grads, 0, (size_t)s->total * sizeof(float));
}

int rs_tparams_find(const rs_tparams *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->p[i].tensor.name, name)) return i;
    return -1;
}

void rs_tparams_adamw(rs_tparams *s, float *m, float *v, int64_t step, const rs_adamw_cfg *c, rs_pool *pool) {
    rs_adamw_step(s->params, s->grads, m, v, s->total, step, c, pool);
}

rsmoe_status rs_tparams_add_to_writer(const rs_tparams *s, rs_gguf_writer *w) {
    for (int i = 0; i < s->n; i++) {
        rsmoe_status st = rs_gguf_writer_add_tensor(w, &s->p[i].tensor);
        if (st) return st;
    }
    return RSMOE_OK;
}

static const rs_tparam *find_in_sets(const rs_tparams *const *sets, int n, const char *name) {
    for (int k = 0; k < n; k++) {
        int i = rs_tparams_find(sets[k], name);
        if (i >= 0) return &sets[k]->p[i];
    }
    return NULL;
}

rsmoe_status rs_tparams_save_gguf(const rs_tparams *const *sets, int n, const rs_gguf *src, const char *path) {
    rs_gguf_writer *w = rs_gguf_writer_new();
    if (!w) return RSMOE_ERR_NOMEM;
    rsmoe_status st = rs_gguf_copy_kvs(src, w, NULL);
    int64_t nt = rs_gguf_n_tensors(src);
    for (int64_t i = 0; !st && i < nt; i++) {
        const rs_tensor *t = rs_gguf_tensor(src, i);
        const rs_tparam *p = find_in_sets(sets, n, t->name);
        if (p && (p->tensor.ndim != t->ndim || memcmp(p->tensor.ne, t->ne, sizeof t->ne))) {
            st = rs_error(RSMOE_ERR_INVALID_ARG, "checkpoint: trained tensor %s has another shape than in %s", t->name,
                          rs_gguf_path(src));
            break;
        }
        st = rs_gguf_writer_add_tensor(w, p ? &p->tensor : t);
    }
    /* trained tensors the source lacks (new ones) */
    for (int k = 0; !st && k < n; k++)
        for (int i = 0; !st && i < sets[k]->n; i++)
            if (!rs_gguf_find_tensor(src, sets[k]->p[i].tensor.name)) st = rs_gguf_writer_add_tensor(w, &sets[k]->p[i].tensor);
    if (!st) st = rs_gguf_writer_write(w, path);
    rs_gguf_writer_free(w);
    return st;
}

/* ================================================================ Q-Former parameters */
typedef void (*walk_fn)(void *ctx, const char *name, float **wp, float **gp);

static void walk_attn(const char *kind, int l, rs_qft_attn *w, rs_qft_attn *g, walk_fn fn, void *ctx) {
    static const char *const sfx[10] = {"_q.weight", "_q.bias", "_k.weight", "_k.bias", "_v.weight",
                                        "_v.bias", "_out.weight", "_out.bias", "_ln.weight", "_ln.bias"};
    float **wp[10] = {&w->q_w, &w->q_b, &w->k_w, &w->k_b, &w->v_w, &w->v_b, &w->o_w, &w->o_b, &w->ln_w, &w->ln_b};
    float **gp[10] = {&g->q_w, &g->q_b, &g->k_w, &g->k_b, &g->v_w, &g->v_b, &g->o_w, &g->o_b, &g->ln_w, &g->ln_b};
    char name[RS_NAME_MAX];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "qf.blk.%d.%s%s", l, kind, sfx[i]);
        fn(ctx, name, wp[i], gp[i]);
    }
}

static void walk_ffn(const char *kind, int l, rs_qft_ffn *w, rs_qft_ffn *g, walk_fn fn, void *ctx) {
    static const char *const sfx[6] = {"_up.weight", "_up.bias", "_down.weight", "_down.bias", "_ln.weight", "_ln.bias"};
    float **wp[6] = {&w->up_w, &w->up_b, &w->down_w, &w->down_b, &w->ln_w, &w->ln_b};
    float **gp[6] = {&g->up_w, &g->up_b, &g->down_w, &g->down_b, &g->ln_w, &g->ln_b};
    char name[RS_NAME_MAX];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "qf.blk.%d.%s%s", l, kind, sfx[i]);
        fn(ctx, name, wp[i], gp[i]);
    }
}

/* calls fn for every trainable tensor in a fixed order (the set's order) */
static void walk(const rs_qformer_config *c, rs_qft_weights *w, rs_qft_weights *g, walk_fn fn, void *ctx) {
    fn(ctx, "qf.query_embd", &w->query, &g->query);
    fn(ctx, "qf.token_embd.weight", &w->tok, &g->tok);
    fn(ctx, "qf.position_embd.weight", &w->pos, &g->pos);
    fn(ctx, "qf.embd_ln.weight", &w->eln_w, &g->eln_w);
    fn(ctx, "qf.embd_ln.bias", &w->eln_b, &g->eln_b);
    for (int l = 0; l < c->layers; l++) {
        rs_qft_layer *wl = &w->layers[l], *gl = &g->layers[l];
        walk_attn("attn", l, &wl->self, &gl->self, fn, ctx);
        if (wl->has_cross) walk_attn("cross", l, &wl->cross, &gl->cross, fn, ctx);
        walk_ffn("ffn", l, &wl->ffn_text, &gl->ffn_text, fn, ctx);
        walk_ffn("ffnq", l, &wl->ffn_query, &gl->ffn_query, fn, ctx);
    }
    fn(ctx, "proj.weight", &w->proj_w, &g->proj_w);
    fn(ctx, "proj.bias", &w->proj_b, &g->proj_b);
}

typedef struct {
    char (*names)[RS_NAME_MAX];
    const rs_tparams *set;
    int n;
} walk_ctx;

static void collect_name(void *vc, const char *name, float **wp, float **gp) {
    walk_ctx *c = vc;
    (void)wp, (void)gp;
    if (c->names) snprintf(c->names[c->n], RS_NAME_MAX, "%s", name);
    c->n++;
}

static void assign_ptr(void *vc, const char *name, float **wp, float **gp) {
    walk_ctx *c = vc;
    (void)name;
    *wp = c->set->p[c->n].param;
    *gp = c->set->p[c->n].grad;
    c->n++;
}

void rs_qformer_params_free(rs_qformer_params *p) {
    rs_tparams_free(&p->set);
    free(p->w.layers);
    free(p->g.layers);
    memset(p, 0, sizeof *p);
}

rsmoe_status rs_qformer_params_new(const rs_gguf *g, int enc_width, int out_width, rs_qformer_params *out) {
    memset(out, 0, sizeof *out);
    rs_qformer q;
    rsmoe_status st = rs_qformer_bind(g, enc_width, out_width, &q); /* configuration and shapes */
    if (st) return st;
    out->c = q.c;
    rs_qformer_unbind(&q);
    int L = out->c.layers;
    out->w.layers = calloc((size_t)L, sizeof *out->w.layers);
    out->g.layers = calloc((size_t)L, sizeof *out->g.layers);
    if (!out->w.layers || !out->g.layers) {
        rs_qformer_params_free(out);
        return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    }
    for (int l = 0; l < L; l++) out->w.layers[l].has_cross = out->g.layers[l].has_cross = l % out->c.cross_freq == 0;
    walk_ctx wc = {0};
    walk(&out->c, &out->w, &out->g, collect_name, &wc);
    wc.names = calloc((size_t)wc.n, sizeof *wc.names);
    if (!wc.names) {
        rs_qformer_params_free(out);
        return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    }
    int n = wc.n;
    wc.n = 0;
    walk(&out->c, &out->w, &out->g, collect_name, &wc);
    const char **np = malloc((size_t)n * sizeof *np);
    if (!np) {
        free(wc.names);
        rs_qformer_params_free(out);
        return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) np[i] = wc.names[i];
    st = rs_tparams_from_gguf(g, np, n, &out->set);
    free(np);
    free(wc.names);
    if (st) {
        rs_qformer_params_free(out);
        return st;
    }
    walk_ctx ac = {.set = &out->set};
    walk(&out->c, &out->w, &out->g, assign_ptr, &ac);
    return RSMOE_OK;
}

static const rs_tensor *tp(const rs_qformer_params *p, const char *fmt, int l) {
    char name[RS_NAME_MAX];
    snprintf(name, sizeof name, fmt, l);
    int i = rs_tparams_find(&p->set, name);
    return i >= 0 ? &p->set.p[i].tensor : NULL;
}

static void view_attn(const rs_qformer_params *p, rs_qf_attn *a, const char *kind, int l) {
    char f[10][64];
    static const char *const sfx[10] = {"_q.weight", "_q.bias", "_k.weight", "_k.bias", "_v.weight",
                                        "_v.bias", "_out.weight", "_out.bias", "_ln.weight", "_ln.bias"};
    for (int i = 0; i < 10; i++) snprintf(f[i], sizeof f[i], "qf.blk.%%d.%s%s", kind, sfx[i]);
    a->q_w = tp(p, f[0], l), a->q_b = tp(p, f[1], l), a->k_w = tp(p, f[2], l), a->k_b = tp(p, f[3], l);
    a->v_w = tp(p, f[4], l), a->v_b = tp(p, f[5], l), a->o_w = tp(p, f[6], l), a->o_b = tp(p, f[7], l);
    a->ln_w = tp(p, f[8], l), a->ln_b = tp(p, f[9], l);
}

static void view_ffn(const rs_qformer_params *p, rs_qf_ffn *a, const char *kind, int l) {
    char f[6][64];
    static const char *const sfx[6] = {"_up.weight", "_up.bias", "_down.weight", "_down.bias", "_ln.weight", "_ln.bias"};
    for (int i = 0; i < 6; i++) snprintf(f[i], sizeof f[i], "qf.blk.%%d.%s%s", kind, sfx[i]);
    a->up_w = tp(p, f[0], l), a->up_b = tp(p, f[1], l), a->down_w = tp(p, f[2], l), a->down_b = tp(p, f[3], l);
    a->ln_w = tp(p, f[4], l), a->ln_b = tp(p, f[5], l);
}

rsmoe_status rs_qformer_params_view(const rs_qformer_params *p, rs_qformer *q) {
    memset(q, 0, sizeof *q);
    if (!p->set.n) return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former view: empty parameter set");
    q->c = p->c;
    q->query = tp(p, "qf.query_embd", 0), q->tok = tp(p, "qf.token_embd.weight", 0);
    q->pos = tp(p, "qf.position_embd.weight", 0), q->eln_w = tp(p, "qf.embd_ln.weight", 0);
    q->eln_b = tp(p, "qf.embd_ln.bias", 0), q->proj_w = tp(p, "proj.weight", 0), q->proj_b = tp(p, "proj.bias", 0);
    q->layers = calloc((size_t)p->c.layers, sizeof *q->layers);
    if (!q->layers) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    for (int l = 0; l < p->c.layers; l++) {
        rs_qf_layer *L = &q->layers[l];
        L->has_cross = p->w.layers[l].has_cross;
        view_attn(p, &L->self, "attn", l);
        if (L->has_cross) view_attn(p, &L->cross, "cross", l);
        view_ffn(p, &L->ffn_text, "ffn", l);
        view_ffn(p, &L->ffn_query, "ffnq", l);
    }
    return RSMOE_OK;
}

/* ================================================================ training state */
typedef struct {
    float *q, *k, *v;       /* [N, W] self-attention projections */
    float *P;               /* [B, H, T, T] */
    float *att;             /* [N, W] attention output (input of the dense) */
    float *s1, *m1, *r1;    /* [N, W] residual sum before attn_ln, its mean/rstd [N] */
    float *x1;              /* [N, W] after attn_ln */
    float *cq, *catt;       /* [Nq, W] cross queries and cross-attention output */
    float *ck, *cv;         /* [B·n_img, W] */
    float *cP;              /* [B, H, nq, n_img] */
    float *s2, *m2, *r2;    /* [Nq, W], [Nq] before cross_ln */
    float *x2;              /* [N, W] FFN input (= x1 with query rows after cross_ln); x1 without cross */
    float *h, *hg;          /* [N, F] up projection before and after GELU */
    float *s3, *m3, *r3;    /* [N, W], [N] before ffn_ln */
} qf_layer_act;

struct rs_qformer_train {
    rs_qformer_config c;
    int max_B, max_text, n_img;
    rs_arena arena;
    qf_layer_act *la;
    float *emb, *m0, *r0;   /* [N, W] embeddings before embd_ln, its statistics */
    float **x;              /* [L+1] of [N, W]: x[0] after embd_ln, x[l+1] output of layer l */
    /* scratch */
    float *dx, *dtmp, *dsum, *datt, *dq, *dk, *dv, *dh, *dck, *dcv, *dimg, *asc;
    uint8_t *kv;            /* [B, T] key valid */
    int32_t *len;           /* [max_B] */
    /* the last forward */
    bool ready;
    int B, Tt, T, Ni;
    const float *img;
    const int32_t *ids;
};

static void *take(rs_arena *a, size_t *count, size_t bytes) {
    if (!a) {
        *count += (bytes + 63) & ~(size_t)63;
        return NULL;
    }
    return rs_arena_alloc(a, bytes);
}
#define TAKEF(n) ((float *)take(a, &count, (size_t)(n) * sizeof(float)))

static size_t layout(rs_qformer_train *t, const rs_qformer_config *c, int maxB, int maxText, int nImg, rs_arena *a) {
    size_t count = 0;
    size_t nq = (size_t)c->n_query, T = nq + (size_t)maxText, B = (size_t)maxB;
    size_t N = B * T, Nq = B * nq, Ni = B * (size_t)nImg, W = (size_t)c->width, F = (size_t)c->ffn;
    size_t H = (size_t)c->heads, L = (size_t)c->layers;
    qf_layer_act *la = take(a, &count, L * sizeof *la);
    float **x = take(a, &count, (L + 1) * sizeof *x);
    for (size_t l = 0; l < L; l++) {
        qf_layer_act A;
        memset(&A, 0, sizeof A);
        A.q = TAKEF(N * W);
        A.k = TAKEF(N * W);
        A.v = TAKEF(N * W);
        A.P = TAKEF(B * H * T * T);
        A.att = TAKEF(N * W);
        A.s1 = TAKEF(N * W);
        A.m1 = TAKEF(N);
        A.r1 = TAKEF(N);
        A.x1 = TAKEF(N * W);
        if (l % (size_t)c->cross_freq == 0) {
            A.cq = TAKEF(Nq * W);
            A.catt = TAKEF(Nq * W);
            A.ck = TAKEF(Ni * W);
            A.cv = TAKEF(Ni * W);
            A.cP = TAKEF(B * H * nq * (size_t)nImg);
            A.s2 = TAKEF(Nq * W);
            A.m2 = TAKEF(Nq);
            A.r2 = TAKEF(Nq);
            A.x2 = TAKEF(N * W);
        } else {
            A.x2 = A.x1;
        }
        A.h = TAKEF(N * F);
        A.hg = TAKEF(N * F);
        A.s3 = TAKEF(N * W);
        A.m3 = TAKEF(N);
        A.r3 = TAKEF(N);
        if (la) la[l] = A;
    }
    float *emb = TAKEF(N * W), *m0 = TAKEF(N), *r0 = TAKEF(N);
    for (size_t l = 0; l <= L; l++) {
        float *xl = TAKEF(N * W);
        if (x) x[l] = xl;
    }
    size_t TT = T * T, QI = nq * (size_t)nImg;
    float *dx = TAKEF(N * W), *dtmp = TAKEF(N * W), *dsum = TAKEF(N * W), *datt = TAKEF(N * W);
    float *dq = TAKEF(N * W), *dk = TAKEF(N * W), *dv = TAKEF(N * W), *dh = TAKEF(N * F);
    float *dck = TAKEF(Ni * W), *dcv = TAKEF(Ni * W);
    float *dimg = TAKEF(Ni * (size_t)c->enc_width), *asc = TAKEF(TT > QI ? TT : QI);
    uint8_t *kv = take(a, &count, N);
    int32_t *len = take(a, &count, B * sizeof(int32_t));
    if (a) {
        t->la = la;
        t->x = x;
        t->emb = emb, t->m0 = m0, t->r0 = r0;
        t->dx = dx, t->dtmp = dtmp, t->dsum = dsum, t->datt = datt, t->dq = dq, t->dk = dk, t->dv = dv, t->dh = dh;
        t->dck = dck, t->dcv = dcv, t->dimg = dimg, t->asc = asc, t->kv = kv, t->len = len;
    }
    return count + 64 * 4;
}

static rsmoe_status check_sizes(const rs_qformer_config *c, int max_B, int max_text, int n_img) {
    if (max_B < 1 || max_text < 0 || max_text > c->max_pos || n_img < 1 || c->n_query < 1 || c->width < 1 ||
        c->heads < 1 || c->width % c->heads || c->cross_freq < 1 || c->layers < 1 || c->enc_width < 1 || c->out_width < 1)
        return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former training: bad sizes (batch %d, text %d of at most %d, %d image tokens)",
                        max_B, max_text, c->max_pos, n_img);
    return RSMOE_OK;
}

size_t rs_qformer_train_bytes(const rs_qformer_config *c, int max_B, int max_text, int n_img) {
    if (check_sizes(c, max_B, max_text, n_img)) return 0;
    return layout(NULL, c, max_B, max_text, n_img, NULL);
}

rsmoe_status rs_qformer_train_new(const rs_qformer_config *c, int max_B, int max_text, int n_img, rs_qformer_train **out) {
    *out = NULL;
    rsmoe_status st = check_sizes(c, max_B, max_text, n_img);
    if (st) return st;
    rs_qformer_train *t = calloc(1, sizeof *t);
    if (!t) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    t->c = *c;
    t->max_B = max_B, t->max_text = max_text, t->n_img = n_img;
    size_t bytes = layout(NULL, c, max_B, max_text, n_img, NULL);
    if ((st = rs_arena_init(&t->arena, bytes))) {
        free(t);
        return st;
    }
    layout(t, c, max_B, max_text, n_img, &t->arena);
    *out = t;
    return RSMOE_OK;
}

void rs_qformer_train_free(rs_qformer_train *t) {
    if (!t) return;
    rs_arena_free(&t->arena);
    free(t);
}

/* ------------------------------------------------------------------ forward */
rsmoe_status rs_qformer_train_forward(rs_qformer_train *t, const rs_qformer_params *p, const rs_qformer_batch *b,
                                      float *prefix, float *qout, rs_pool *pool) {
    const rs_qformer_config *c = &t->c;
    t->ready = false;
    if (memcmp(&p->c, c, sizeof *c))
        return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former training: parameters of another configuration");
    if (!b || !prefix || b->B < 1 || b->B > t->max_B || b->n_text < 0 || b->n_text > t->max_text || b->n_img < 1 ||
        b->n_img > t->n_img || !b->img || (b->n_text > 0 && !b->ids))
        return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former training: bad batch (%d images of at most %d, %d tokens of at "
                        "most %d, %d image tokens of at most %d)", b ? b->B : 0, t->max_B, b ? b->n_text : 0,
                        t->max_text, b ? b->n_img : 0, t->n_img);
    int B = b->B, nq = c->n_query, Tt = b->n_text, T = nq + Tt, W = c->width, F = c->ffn, H = c->heads;
    int Ni = b->n_img, We = c->enc_width, D = c->out_width, dh = W / H;
    int64_t N = (int64_t)B * T, Nq = (int64_t)B * nq;
    for (int s = 0; s < B; s++) {
        int32_t L = b->len ? b->len[s] : Tt;
        if (L < 0 || L > Tt)
            return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former training: sample %d has %d valid tokens of %d", s, L, Tt);
        for (int i = 0; i < L; i++)
            if (b->ids[(size_t)s * Tt + i] < 0 || b->ids[(size_t)s * Tt + i] >= c->vocab)
                return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former training: token id %d outside its vocabulary (%d)",
                                b->ids[(size_t)s * Tt + i], c->vocab);
        t->len[s] = L;
    }
    t->B = B, t->Tt = Tt, t->T = T, t->Ni = Ni, t->img = b->img, t->ids = b->ids;
    const rs_qft_weights *w = &p->w;
    /* embeddings */
    for (int s = 0; s < B; s++) {
        for (int r = 0; r < T; r++) {
            float *row = t->emb + ((size_t)s * T + r) * W;
            int ti = r - nq;
            bool valid = r < nq || ti < t->len[s];
            t->kv[(size_t)s * T + r] = valid;
            if (r < nq) memcpy(row, w->query + (size_t)r * W, sizeof(float) * W);
            else if (valid) rs_vec_add(row, w->tok + (size_t)b->ids[(size_t)s * Tt + ti] * W, w->pos + (size_t)ti * W, W);
            else memset(row, 0, sizeof(float) * W);
        }
    }
    rs_layernorm_fwd(t->x[0], t->m0, t->r0, t->emb, w->eln_w, w->eln_b, N, W, c->eps, pool);
    rsmoe_status st;
    for (int l = 0; l < c->layers; l++) {
        const rs_qft_layer *wl = &w->layers[l];
        qf_layer_act *A = &t->la[l];
        const float *xin = t->x[l];
        /* self-attention over [queries ; instruction] of each sample */
        rs_linear_fwd(A->q, xin, wl->self.q_w, wl->self.q_b, N, W, W, pool);
        rs_linear_fwd(A->k, xin, wl->self.k_w, wl->self.k_b, N, W, W, pool);
        rs_linear_fwd(A->v, xin, wl->self.v_w, wl->self.v_b, N, W, W, pool);
        for (int s = 0; s < B; s++) {
            size_t o = (size_t)s * T * W;
            rs_attn_desc sa = {.Tq = T, .Tk = T, .Hq = H, .Hkv = H, .d = dh, .key_valid = t->kv + (size_t)s * T};
            if ((st = rs_attn_fwd(A->att + o, A->P + (size_t)s * H * T * T, A->q + o, A->k + o, A->v + o, &sa, NULL, pool)))
                return st;
        }
        rs_linear_fwd(A->s1, A->att, wl->self.o_w, wl->self.o_b, N, W, W, pool);
        rs_vec_acc(A->s1, xin, N * W);
        rs_layernorm_fwd(A->x1, A->m1, A->r1, A->s1, wl->self.ln_w, wl->self.ln_b, N, W, c->eps, pool);
        /* cross-attention of the query rows to the image tokens */
        if (wl->has_cross) {
            memcpy(A->x2, A->x1, sizeof(float) * (size_t)N * W);
            rs_linear_fwd(A->ck, b->img, wl->cross.k_w, wl->cross.k_b, (int64_t)B * Ni, We, W, pool);
            rs_linear_fwd(A->cv, b->img, wl->cross.v_w, wl->cross.v_b, (int64_t)B * Ni, We, W, pool);
            rs_attn_desc ca = {.Tq = nq, .Tk = Ni, .Hq = H, .Hkv = H, .d = dh};
            for (int s = 0; s < B; s++) {
                size_t oq = (size_t)s * nq * W, oi = (size_t)s * Ni * W;
                rs_linear_fwd(A->cq + oq, A->x1 + (size_t)s * T * W, wl->cross.q_w, wl->cross.q_b, nq, W, W, pool);
                if ((st = rs_attn_fwd(A->catt + oq, A->cP + (size_t)s * H * nq * Ni, A->cq + oq, A->ck + oi, A->cv + oi,
                                      &ca, NULL, pool)))
                    return st;
            }
            rs_linear_fwd(A->s2, A->catt, wl->cross.o_w, wl->cross.o_b, Nq, W, W, pool);
            for (int s = 0; s < B; s++) {
                size_t oq = (size_t)s * nq * W, ox = (size_t)s * T * W;
                rs_vec_acc(A->s2 + oq, A->x1 + ox, (int64_t)nq * W);
                rs_layernorm_fwd(A->x2 + ox, A->m2 + (size_t)s * nq, A->r2 + (size_t)s * nq, A->s2 + oq,
                                 wl->cross.ln_w, wl->cross.ln_b, nq, W, c->eps, pool);
            }
        }
        /* feed-forward: query rows and instruction rows with their own weights */
        for (int s = 0; s < B; s++)
            for (int part = 0; part < 2; part++) {
                const rs_qft_ffn *f = part ? &wl->ffn_text : &wl->ffn_query;
                int64_t r0 = (int64_t)s * T + (part ? nq : 0), R = part ? Tt : nq;
                if (R == 0) continue;
                const float *in = A->x2 + r0 * W;
                rs_linear_fwd(A->h + r0 * F, in, f->up_w, f->up_b, R, W, F, pool);
                rs_gelu_fwd(A->hg + r0 * F, A->h + r0 * F, R * F, pool);
                rs_linear_fwd(A->s3 + r0 * W, A->hg + r0 * F, f->down_w, f->down_b, R, F, W, pool);
                rs_vec_acc(A->s3 + r0 * W, in, R * W);
                rs_layernorm_fwd(t->x[l + 1] + r0 * W, A->m3 + r0, A->r3 + r0, A->s3 + r0 * W, f->ln_w, f->ln_b, R, W,
                                 c->eps, pool);
            }
    }
    const float *xl = t->x[c->layers];
    for (int s = 0; s < B; s++) {
        const float *xq = xl + (size_t)s * T * W;
        rs_linear_fwd(prefix + (size_t)s * nq * D, xq, w->proj_w, w->proj_b, nq, W, D, pool);
        if (qout) memcpy(qout + (size_t)s * nq * W, xq, sizeof(float) * (size_t)nq * W);
    }
    t->ready = true;
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ backward */
rsmoe_status rs_qformer_train_backward(rs_qformer_train *t, rs_qformer_params *p, const float *d_prefix, float *d_img,
                                       rs_pool *pool) {
    const rs_qformer_config *c = &t->c;
    if (!t->ready) return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former training: backward without a forward");
    if (memcmp(&p->c, c, sizeof *c))
        return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former training: parameters of another configuration");
    if (!d_prefix) return rs_error(RSMOE_ERR_INVALID_ARG, "Q-Former training: NULL d_prefix");
    int B = t->B, nq = c->n_query, Tt = t->Tt, T = t->T, W = c->width, F = c->ffn, H = c->heads;
    int Ni = t->Ni, We = c->enc_width, D = c->out_width, dh = W / H;
    int64_t N = (int64_t)B * T, Nq = (int64_t)B * nq;
    const rs_qft_weights *w = &p->w;
    rs_qft_weights *g = &p->g;
    rsmoe_status st;
    if (d_img) rs_vec_zero(d_img, (int64_t)B * Ni * We);
    /* proj: only the query rows reach the prefix */
    rs_vec_zero(t->dx, N * W);
    for (int s = 0; s < B; s++) {
        size_t ox = (size_t)s * T * W;
        rs_linear_bwd(t->dx + ox, g->proj_w, g->proj_b, d_prefix + (size_t)s * nq * D, t->x[c->layers] + ox,
                      w->proj_w, nq, W, D, pool);
    }
    for (int l = c->layers - 1; l >= 0; l--) {
        const rs_qft_layer *wl = &w->layers[l];
        rs_qft_layer *gl = &g->layers[l];
        qf_layer_act *A = &t->la[l];
        /* feed-forward: dx = d x[l+1] -> d x2 */
        for (int s = 0; s < B; s++)
            for (int part = 0; part < 2; part++) {
                const rs_qft_ffn *f = part ? &wl->ffn_text : &wl->ffn_query;
                rs_qft_ffn *gf = part ? &gl->ffn_text : &gl->ffn_query;
                int64_t r0 = (int64_t)s * T + (part ? nq : 0), R = part ? Tt : nq;
                if (R == 0) continue;
                float *dsum = t->dsum + r0 * W, *dhid = t->dh + r0 * F, *dtmp = t->dtmp + r0 * W, *dx = t->dx + r0 * W;
                rs_layernorm_bwd(dsum, gf->ln_w, gf->ln_b, dx, A->s3 + r0 * W, f->ln_w, A->m3 + r0, A->r3 + r0, R, W, pool);
                rs_linear_bwd(dhid, gf->down_w, gf->down_b, dsum, A->hg + r0 * F, f->down_w, R, F, W, pool);
                rs_gelu_bwd(dhid, dhid, A->h + r0 * F, R * F, pool);
                rs_linear_bwd(dtmp, gf->up_w, gf->up_b, dhid, A->x2 + r0 * W, f->up_w, R, W, F, pool);
                rs_vec_add(dx, dsum, dtmp, R * W);
            }
        /* cross-attention: d x2 (query rows) -> d x1 */
        if (wl->has_cross) {
            rs_attn_desc ca = {.Tq = nq, .Tk = Ni, .Hq = H, .Hkv = H, .d = dh};
            for (int s = 0; s < B; s++) {
                size_t oq = (size_t)s * nq * W, ox = (size_t)s * T * W;
                rs_layernorm_bwd(t->dsum + oq, gl->cross.ln_w, gl->cross.ln_b, t->dx + ox, A->s2 + oq, wl->cross.ln_w,
                                 A->m2 + (size_t)s * nq, A->r2 + (size_t)s * nq, nq, W, pool);
            }
            rs_linear_bwd(t->datt, gl->cross.o_w, gl->cross.o_b, t->dsum, A->catt, wl->cross.o_w, Nq, W, W, pool);
            for (int s = 0; s < B; s++) {
                size_t oq = (size_t)s * nq * W, oi = (size_t)s * Ni * W, ox = (size_t)s * T * W;
                if ((st = rs_attn_bwd(t->dq + oq, t->dck + oi, t->dcv + oi, t->datt + oq, A->cq + oq, A->ck + oi,
                                      A->cv + oi, A->cP + (size_t)s * H * nq * Ni, &ca, t->asc, pool)))
                    return st;
                rs_linear_bwd(t->dtmp, gl->cross.q_w, gl->cross.q_b, t->dq + oq, A->x1 + ox, wl->cross.q_w, nq, W, W, pool);
                rs_vec_add(t->dx + ox, t->dsum + oq, t->dtmp, (int64_t)nq * W);
            }
            /* image-token projections: one product over the B·n_img rows of the batch */
            int64_t NI = (int64_t)B * Ni;
            rs_linear_bwd(d_img ? t->dimg : NULL, gl->cross.k_w, gl->cross.k_b, t->dck, t->img, wl->cross.k_w, NI, We, W, pool);
            if (d_img) rs_vec_acc(d_img, t->dimg, NI * We);
            rs_linear_bwd(d_img ? t->dimg : NULL, gl->cross.v_w, gl->cross.v_b, t->dcv, t->img, wl->cross.v_w, NI, We, W, pool);
            if (d_img) rs_vec_acc(d_img, t->dimg, NI * We);
        }
        /* self-attention: d x1 -> d x[l] */
        rs_layernorm_bwd(t->dsum, gl->self.ln_w, gl->self.ln_b, t->dx, A->s1, wl->self.ln_w, A->m1, A->r1, N, W, pool);
        rs_linear_bwd(t->datt, gl->self.o_w, gl->self.o_b, t->dsum, A->att, wl->self.o_w, N, W, W, pool);
        for (int s = 0; s < B; s++) {
            size_t o = (size_t)s * T * W;
            rs_attn_desc sa = {.Tq = T, .Tk = T, .Hq = H, .Hkv = H, .d = dh, .key_valid = t->kv + (size_t)s * T};
            if ((st = rs_attn_bwd(t->dq + o, t->dk + o, t->dv + o, t->datt + o, A->q + o, A->k + o, A->v + o,
                                  A->P + (size_t)s * H * T * T, &sa, t->asc, pool)))
                return st;
        }
        const float *xin = t->x[l];
        rs_linear_bwd(t->dtmp, gl->self.q_w, gl->self.q_b, t->dq, xin, wl->self.q_w, N, W, W, pool);
        rs_vec_add(t->dx, t->dsum, t->dtmp, N * W);
        rs_linear_bwd(t->dtmp, gl->self.k_w, gl->self.k_b, t->dk, xin, wl->self.k_w, N, W, W, pool);
        rs_vec_acc(t->dx, t->dtmp, N * W);
        rs_linear_bwd(t->dtmp, gl->self.v_w, gl->self.v_b, t->dv, xin, wl->self.v_w, N, W, W, pool);
        rs_vec_acc(t->dx, t->dtmp, N * W);
    }
    /* embeddings */
    rs_layernorm_bwd(t->dsum, g->eln_w, g->eln_b, t->dx, t->emb, w->eln_w, t->m0, t->r0, N, W, pool);
    for (int s = 0; s < B; s++) {
        const float *d = t->dsum + (size_t)s * T * W;
        rs_vec_acc(g->query, d, (int64_t)nq * W);
        for (int i = 0; i < t->len[s]; i++) {
            const float *row = d + (size_t)(nq + i) * W;
            rs_vec_acc(g->tok + (size_t)t->ids[(size_t)s * Tt + i] * W, row, W);
            rs_vec_acc(g->pos + (size_t)i * W, row, W);
        }
    }
    return RSMOE_OK;
}
