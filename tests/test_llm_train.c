/* test_llm_train.c - training forward/backward of the LLM Block (src/train/llm_train.h).
 *
 *  - torch parity: the test writes a tiny seeded model, adapters and batch to a temporary
 *    file, runs tests/ref/llm_train_torch.py (float64 autograd, /usr/bin/python3) and
 *    compares loss (<= 1e-5 relative), d_emb and every gradient (<= 1e-4 normalised error):
 *    LoRA mode (two adapters over different target subsets and ranks + a base-only sequence,
 *    untied, GQA 4/2, NeoX RoPE; adapter 0 on two consecutive sequences) with 5 AdamW steps
 *    (losses <= 1e-4 relative at each step), and full-weight mode (tied and untied, GQA 4/1,
 *    interleaved RoPE, theta 500). Padding (different valid lengths, random embeddings and
 *    scored-looking targets in the padding) and ignored targets in all. SKIPs when torch is
 *    absent.
 *  - finite differences in double on a plain double twin of the model written here (no
 *    kernels, no torch): loss equality and a few gradient coordinates of every kind.
 *  - the training forward's logits equal the inference path's (rs_llm_forward).
 *  - edge cases: an empty sequence, NaN in the padding, nothing scored, all empty.
 *  - errors: non-f32 weights, bad lengths, adapter indices, ranks, targets, backward
 *    without forward; memory formula against rs_llm_train_bytes.
 * Run from the repository root. */
#include "test.h"
#include "core/core.h"
#include "kernels/ops.h"
#include "model/llm.h"
#include "train/llm_train.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LOSS_TOL 1e-5
#define GRAD_TOL 1e-4
#define ADAM_TOL 1e-4

static const char *const LW_NAMES[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                        "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};

/* ------------------------------------------------------------------ a tiny model */
typedef struct {
    rs_llm_config c;
    rs_tensor tok, onorm, out, lt[4][9];
    rs_llm_layer layers[4];
    rs_llm_weights w;
    float *block;
} model;

static float *tensor_data(model *m, rs_tensor *t, const char *name, int64_t in, int64_t out, float **p) {
    int64_t ne[2] = {in, out};
    rs_tensor_init(t, name, RS_F32, out > 1 ? 2 : 1, ne, *p);
    float *d = *p;
    *p += in * out;
    (void)m;
    return d;
}

static void model_new(model *m, const rs_llm_config *c, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    int64_t V = c->vocab, D = c->dim, F = c->ffn, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t n = V * D * 2 + D + c->n_layers * (2 * D + 2 * D * qd + 2 * D * kvd + 3 * D * F);
    m->block = malloc((size_t)n * sizeof(float));
    float *p = m->block;
    rs_rng rng;
    rs_rng_seed(&rng, seed);
    float *d = tensor_data(m, &m->tok, "token_embd.weight", D, V, &p);
    rs_rng_fill_normal(&rng, d, (size_t)(V * D), 0, 1.0f);
    d = tensor_data(m, &m->onorm, "output_norm.weight", D, 1, &p);
    rs_rng_fill_uniform(&rng, d, (size_t)D, 0.7f, 1.3f);
    if (!c->tied) {
        d = tensor_data(m, &m->out, "output.weight", D, V, &p);
        rs_rng_fill_normal(&rng, d, (size_t)(V * D), 0, 0.3f);
    }
    for (int l = 0; l < c->n_layers; l++) {
        int64_t dims[9][2] = {{D, 1}, {D, qd}, {D, kvd}, {D, kvd}, {qd, D}, {D, 1}, {D, F}, {D, F}, {F, D}};
        for (int k = 0; k < 9; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, LW_NAMES[k]);
            d = tensor_data(m, &m->lt[l][k], name, dims[k][0], dims[k][1], &p);
            if (dims[k][1] == 1) rs_rng_fill_uniform(&rng, d, (size_t)D, 0.7f, 1.3f);
            else rs_rng_fill_normal(&rng, d, (size_t)(dims[k][0] * dims[k][1]), 0, 1.0f / sqrtf((float)dims[k][0]));
        }
        rs_llm_layer *L = &m->layers[l];
        L->attn_norm = &m->lt[l][0]; L->wq = &m->lt[l][1]; L->wk = &m->lt[l][2]; L->wv = &m->lt[l][3];
        L->wo = &m->lt[l][4]; L->ffn_norm = &m->lt[l][5]; L->w_gate = &m->lt[l][6]; L->w_up = &m->lt[l][7];
        L->w_down = &m->lt[l][8];
    }
    m->w.c = *c;
    m->w.tok_embd = &m->tok;
    m->w.out_norm = &m->onorm;
    m->w.output = c->tied ? &m->tok : &m->out;
    m->w.layers = m->layers;
}

static rs_llm_config cfg_lora(void) {
    rs_llm_config c = {.vocab = 37, .dim = 16, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4,
                       .ffn = 24, .max_seq = 16, .rms_eps = 1e-5f, .tied = false};
    c.rope = rs_rope_default();
    c.rope.interleaved = false;
    return c;
}
static rs_llm_config cfg_full(bool tied) {
    rs_llm_config c = {.vocab = 29, .dim = 16, .n_layers = 2, .n_heads = 4, .n_kv_heads = 1, .head_dim = 4,
                       .ffn = 20, .max_seq = 16, .rms_eps = 1e-5f, .tied = tied};
    c.rope = rs_rope_default();
    c.rope.interleaved = true;
    c.rope.theta = 500.0;
    return c;
}

/* a batch with padding: embeddings random everywhere (padding included), targets random
 * with the first `prefix` positions ignored, and a few more ignored inside */
typedef struct {
    int B, T;
    float *emb;
    int32_t len[8], *targets;
    int adapter[8];
    const float *weight; /* [B] per-sequence gradient factors, NULL: all 1 */
} batch;

static void batch_new(batch *bt, int B, int T, const int *len, const int *adapter, int V, int D, uint64_t seed) {
    rs_rng rng;
    rs_rng_seed(&rng, seed);
    bt->B = B;
    bt->weight = NULL;
    bt->T = T;
    bt->emb = malloc((size_t)B * T * D * sizeof(float));
    bt->targets = malloc((size_t)B * T * sizeof(int32_t));
    rs_rng_fill_normal(&rng, bt->emb, (size_t)B * T * D, 0, 1.0f);
    for (int b = 0; b < B; b++) {
        bt->len[b] = len[b];
        bt->adapter[b] = adapter[b];
        for (int t = 0; t < T; t++) {
            int32_t v = (int32_t)(rs_rng_u64(&rng) % (uint64_t)V);
            if (t < 2 || (t == 4 && b == 0)) v = RS_IGNORE_INDEX; /* prefix / prompt / a hole */
            bt->targets[b * T + t] = v;                          /* padding keeps a real id */
        }
    }
}
static void batch_free(batch *bt) { free(bt->emb); free(bt->targets); }

/* ------------------------------------------------------------------ record files */
static FILE *g_f;
static void put(const char *name, const float *x, int64_t n) {
    char nm[32] = {0};
    size_t ln = strlen(name);
    memcpy(nm, name, ln < 31 ? ln : 31); /* names here are all shorter */
    fwrite(nm, 1, 32, g_f);
    fwrite(&n, 8, 1, g_f);
    for (int64_t i = 0; i < n; i++) { double d = x[i]; fwrite(&d, 8, 1, g_f); }
}
static void putd(const char *name, const double *x, int64_t n) {
    char nm[32] = {0};
    size_t ln = strlen(name);
    memcpy(nm, name, ln < 31 ? ln : 31); /* names here are all shorter */
    fwrite(nm, 1, 32, g_f);
    fwrite(&n, 8, 1, g_f);
    fwrite(x, 8, (size_t)n, g_f);
}

typedef struct { char name[32]; int64_t n; double *d; } rec;
static rec g_recs[256];
static int g_nrec;
static void recs_free(void) {
    for (int i = 0; i < g_nrec; i++) free(g_recs[i].d);
    g_nrec = 0;
}
static bool recs_load(const char *path) {
    recs_free();
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    while (g_nrec < 256) {
        rec r;
        if (fread(r.name, 1, 32, f) != 32 || fread(&r.n, 8, 1, f) != 1) break;
        if (r.n < 0 || r.n > 10000000) break;
        r.d = malloc((size_t)(r.n ? r.n : 1) * sizeof(double));
        if (fread(r.d, sizeof(double), (size_t)r.n, f) != (size_t)r.n) { free(r.d); break; }
        r.name[31] = 0;
        g_recs[g_nrec++] = r;
    }
    fclose(f);
    return g_nrec > 0;
}
static const rec *get(const char *name) {
    for (int i = 0; i < g_nrec; i++)
        if (!strcmp(g_recs[i].name, name)) return &g_recs[i];
    return NULL;
}
static double g_worst;
/* normalised error of a against record name: max|a-ref| / max|ref| */
static double E(const float *a, int64_t n, const char *name) {
    const rec *r = get(name);
    if (!r || r->n != n) {
        fprintf(stderr, "record %s missing or of size %lld (want %lld)\n", name, r ? (long long)r->n : -1LL,
                (long long)n);
        return INFINITY;
    }
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - r->d[i]);
        if (!(d <= md)) md = isnan(d) ? INFINITY : d;
        if (fabs(r->d[i]) > mb) mb = fabs(r->d[i]);
    }
    double e = md / (mb > 1e-30 ? mb : 1e-30);
    if (e > g_worst) g_worst = e;
    return e;
}

static char g_dir[256];
static bool have_torch(void) {
    static int have = -1;
    if (have < 0)
        have = test_have_python("torch");
    return have == 1;
}

static void write_inputs(const char *path, const model *m, const batch *bt, rs_lora_train *ads, int n_ad, bool full,
                         int steps, float lr, float wd) {
    const rs_llm_config *c = &m->c;
    g_f = fopen(path, "wb");
    double cfg[18] = {c->vocab, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn, c->rms_eps,
                      c->rope.theta, c->rope.interleaved, c->tied, bt->B, bt->T, full, n_ad, steps, lr, wd};
    putd("cfg", cfg, 18);
    put("tok_embd", m->tok.data, rs_tensor_nelements(&m->tok));
    put("out_norm", m->onorm.data, c->dim);
    if (!c->tied) put("output", m->out.data, rs_tensor_nelements(&m->out));
    char name[64];
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < 9; k++) {
            snprintf(name, sizeof name, "blk%d.%s", l, LW_NAMES[k]);
            put(name, m->lt[l][k].data, rs_tensor_nelements(&m->lt[l][k]));
        }
    for (int i = 0; i < n_ad; i++) {
        double meta[3] = {ads[i].rank, ads[i].set.scale, ads[i].targets};
        snprintf(name, sizeof name, "a%d.meta", i);
        putd(name, meta, 3);
        for (int l = 0; l < c->n_layers; l++)
            for (int tg = 0; tg < RS_LT_COUNT; tg++) {
                if (!ads[i].set.A[l][tg]) continue;
                snprintf(name, sizeof name, "a%d.%d.%s.A", i, l, rs_lora_target_names[tg]);
                put(name, ads[i].set.A[l][tg], ads[i].rank * ads[i].in[tg]);
                snprintf(name, sizeof name, "a%d.%d.%s.B", i, l, rs_lora_target_names[tg]);
                put(name, ads[i].set.B[l][tg], ads[i].rank * ads[i].out[tg]);
            }
    }
    put("emb", bt->emb, (int64_t)bt->B * bt->T * c->dim);
    double v[64];
    for (int b = 0; b < bt->B; b++) v[b] = bt->len[b];
    putd("len", v, bt->B);
    for (int b = 0; b < bt->B; b++) v[b] = bt->adapter[b];
    putd("adapter", v, bt->B);
    double *tg = malloc((size_t)bt->B * bt->T * sizeof(double));
    for (int i = 0; i < bt->B * bt->T; i++) tg[i] = bt->targets[i];
    putd("targets", tg, (int64_t)bt->B * bt->T);
    free(tg);
    fclose(g_f);
}

static bool run_torch(const char *in, const char *out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/llm_train_torch.py %s %s", in, out);
    if (system(cmd) != 0) return false;
    return recs_load(out);
}

/* ------------------------------------------------------------------ the double twin */
/* Plain double forward of the same model (valid rows only), written from the definition. */
typedef struct {
    const float *which; /* perturb this array ... */
    int64_t idx;        /* ... at this index ... */
    double delta;       /* ... by this much */
} perturb;

static double *dcopy(const float *x, int64_t n, const perturb *pt) {
    double *d = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    if (pt && pt->which == x) d[pt->idx] += pt->delta;
    return d;
}

/* y[n,out] (+)= x[n,in]·Wᵀ */
static void dlin(double *y, const double *x, const double *W, int n, int in, int out, bool acc, double s) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double a = 0;
            for (int k = 0; k < in; k++) a += x[i * in + k] * W[o * in + k];
            y[i * out + o] = (acc ? y[i * out + o] : 0) + s * a;
        }
}
static void drms(double *y, const double *x, const double *w, int n, int D, double eps) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < D; k++) s += x[i * D + k] * x[i * D + k];
        double r = 1.0 / sqrt(s / D + eps);
        for (int k = 0; k < D; k++) y[i * D + k] = x[i * D + k] * r * w[k];
    }
}
static void drope(double *x, int n, int H, int d, const rs_rope_cfg *rc) {
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) {
            double *v = x + ((size_t)t * H + h) * d;
            for (int i = 0; i < d / 2; i++) {
                double ang = t * pow(rc->theta, -2.0 * i / d), cs = cos(ang), sn = sin(ang);
                int a = rc->interleaved ? 2 * i : i, b = rc->interleaved ? 2 * i + 1 : i + d / 2;
                double x1 = v[a], x2 = v[b];
                v[a] = x1 * cs - x2 * sn;
                v[b] = x1 * sn + x2 * cs;
            }
        }
}

/* y += lora of (adapter set s, layer l, target tg), perturbation applied */
static void dlora(double *y, const double *x, const rs_lora_train *s, int l, int tg, int n, const perturb *pt) {
    if (!s || !s->set.A[l][tg]) return;
    int r = s->rank, in = (int)s->in[tg], out = (int)s->out[tg];
    double *A = dcopy(s->set.A[l][tg], r * in, pt), *B = dcopy(s->set.B[l][tg], out * r, pt);
    double *h = malloc((size_t)n * r * sizeof(double));
    dlin(h, x, A, n, in, r, false, 1.0);
    dlin(y, h, B, n, r, out, true, s->set.scale);
    free(A); free(B); free(h);
}

static double twin_loss(const model *m, const batch *bt, const rs_lora_train *ads, const perturb *pt) {
    const rs_llm_config *c = &m->c;
    int D = c->dim, H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim, F = c->ffn, V = c->vocab;
    int qd = H * hd, kvd = Hkv * hd;
    double tot = 0;
    int cnt = 0;
    for (int b = 0; b < bt->B; b++) {
        int n = bt->len[b];
        const rs_lora_train *s = bt->adapter[b] >= 0 ? &ads[bt->adapter[b]] : NULL;
        double *x = dcopy(bt->emb + (size_t)b * bt->T * D, (int64_t)n * D, NULL);
        if (pt && pt->which == bt->emb && pt->idx / D / bt->T == b && (pt->idx / D) % bt->T < n)
            x[pt->idx - (int64_t)b * bt->T * D] += pt->delta;
        double *xn = malloc(sizeof(double) * n * D), *q = malloc(sizeof(double) * n * qd),
               *k = malloc(sizeof(double) * n * kvd), *v = malloc(sizeof(double) * n * kvd),
               *o = malloc(sizeof(double) * n * qd), *g = malloc(sizeof(double) * n * F),
               *u = malloc(sizeof(double) * n * F), *y = malloc(sizeof(double) * n * D),
               *lg = malloc(sizeof(double) * V);
        for (int l = 0; l < c->n_layers; l++) {
            double *W[9];
            for (int kk = 0; kk < 9; kk++) W[kk] = dcopy(m->lt[l][kk].data, rs_tensor_nelements(&m->lt[l][kk]), pt);
            drms(xn, x, W[0], n, D, c->rms_eps);
            dlin(q, xn, W[1], n, D, qd, false, 1);
            dlin(k, xn, W[2], n, D, kvd, false, 1);
            dlin(v, xn, W[3], n, D, kvd, false, 1);
            dlora(q, xn, s, l, RS_LT_Q, n, pt);
            dlora(k, xn, s, l, RS_LT_K, n, pt);
            dlora(v, xn, s, l, RS_LT_V, n, pt);
            drope(q, n, H, hd, &c->rope);
            drope(k, n, Hkv, hd, &c->rope);
            for (int h = 0; h < H; h++) {
                int kh = h / (H / Hkv);
                for (int t = 0; t < n; t++) {
                    double sc[64], mx = -1e300, z = 0;
                    for (int j = 0; j <= t; j++) {
                        double a = 0;
                        for (int i = 0; i < hd; i++) a += q[t * qd + h * hd + i] * k[j * kvd + kh * hd + i];
                        sc[j] = a / sqrt((double)hd);
                        if (sc[j] > mx) mx = sc[j];
                    }
                    for (int j = 0; j <= t; j++) { sc[j] = exp(sc[j] - mx); z += sc[j]; }
                    for (int i = 0; i < hd; i++) {
                        double a = 0;
                        for (int j = 0; j <= t; j++) a += sc[j] / z * v[j * kvd + kh * hd + i];
                        o[t * qd + h * hd + i] = a;
                    }
                }
            }
            dlin(y, o, W[4], n, qd, D, false, 1);
            dlora(y, o, s, l, RS_LT_O, n, pt);
            for (int i = 0; i < n * D; i++) x[i] += y[i];
            drms(xn, x, W[5], n, D, c->rms_eps);
            dlin(g, xn, W[6], n, D, F, false, 1);
            dlin(u, xn, W[7], n, D, F, false, 1);
            dlora(g, xn, s, l, RS_LT_GATE, n, pt);
            dlora(u, xn, s, l, RS_LT_UP, n, pt);
            for (int i = 0; i < n * F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            dlin(y, g, W[8], n, F, D, false, 1);
            dlora(y, g, s, l, RS_LT_DOWN, n, pt);
            for (int i = 0; i < n * D; i++) x[i] += y[i];
            for (int kk = 0; kk < 9; kk++) free(W[kk]);
        }
        double *on = dcopy(m->onorm.data, D, pt), *Wout = dcopy(m->w.output->data, (int64_t)V * D, pt);
        drms(xn, x, on, n, D, c->rms_eps);
        for (int t = 0; t < n; t++) {
            int32_t tg = bt->targets[b * bt->T + t];
            if (tg == RS_IGNORE_INDEX) continue;
            dlin(lg, xn + t * D, Wout, 1, D, V, false, 1);
            double mx = -1e300, z = 0;
            for (int i = 0; i < V; i++) if (lg[i] > mx) mx = lg[i];
            for (int i = 0; i < V; i++) z += exp(lg[i] - mx);
            tot += (bt->weight ? bt->weight[b] : 1.0) * (log(z) + mx - lg[tg]);
            cnt++;
        }
        free(on); free(Wout);
        free(x); free(xn); free(q); free(k); free(v); free(o); free(g); free(u); free(y); free(lg);
    }
    return cnt ? tot / cnt : 0;
}

/* ------------------------------------------------------------------ the LoRA-mode setup */
typedef struct {
    model m;
    batch bt;
    rs_lora_train ads[2];
    const rs_lora_set *sets[2];
    rs_lora_grad *grads[2];
    rs_llm_train *t;
    float *d_emb;
} lora_case;

static void lora_case_new(lora_case *L) {
    memset(L, 0, sizeof *L);
    rs_llm_config c = cfg_lora();
    model_new(&L->m, &c, 11);
    /* adapter 0 on two sequences (one run: their rows share the GEMMs; gradients sum over
     * both), adapter 1, base only */
    int len[4] = {8, 5, 7, 6}, adapter[4] = {0, 0, 1, -1};
    batch_new(&L->bt, 4, 8, len, adapter, c.vocab, c.dim, 12);
    rs_rng rng;
    rs_rng_seed(&rng, 13);
    rs_lora_train_new(&c, 4, 8.0f, 0x7f, &L->ads[0]);                                         /* all 7, r 4 */
    rs_lora_train_new(&c, 2, 3.0f, 1u << RS_LT_Q | 1u << RS_LT_V | 1u << RS_LT_DOWN, &L->ads[1]); /* r 2 */
    for (int i = 0; i < 2; i++) {
        rs_lora_train_init(&L->ads[i], &rng, 0.2f); /* B random so that every gradient is non-trivial */
        L->sets[i] = &L->ads[i].set;
        L->grads[i] = &L->ads[i].grad;
    }
    rs_llm_train_new(&c, 4, 8, 4, &L->t);
    L->d_emb = malloc((size_t)4 * 8 * c.dim * sizeof(float));
}
static void lora_case_free(lora_case *L) {
    rs_llm_train_free(L->t);
    for (int i = 0; i < 2; i++) rs_lora_train_free(&L->ads[i]);
    batch_free(&L->bt);
    free(L->m.block);
    free(L->d_emb);
}
static rs_llm_train_batch lora_batch(lora_case *L) {
    rs_llm_train_batch b = {.B = L->bt.B, .T = L->bt.T, .emb = L->bt.emb, .len = L->bt.len,
                            .targets = L->bt.targets, .adapter = L->bt.adapter, .adapters = L->sets, .n_adapters = 2,
                            .weight = L->bt.weight};
    return b;
}
static rsmoe_status lora_step(lora_case *L, float *loss, rs_pool *pool) {
    rs_llm_train_batch b = lora_batch(L);
    for (int i = 0; i < 2; i++) rs_lora_train_zero_grad(&L->ads[i]);
    rsmoe_status st = rs_llm_train_forward(L->t, &L->m.w, &b, loss, NULL, pool);
    if (st) return st;
    rs_llm_bwd_out o = {.loss_scale = 1.0f, .lora = L->grads, .d_emb = L->d_emb};
    return rs_llm_train_backward(L->t, &L->m.w, &o, pool);
}

/* ------------------------------------------------------------------ tests */
TEST(torch_lora_mode_and_adamw) {
    if (!have_torch()) SKIP("/usr/bin/python3 with torch is absent");
    lora_case L;
    lora_case_new(&L);
    REQUIRE(L.t, "state: %s", rsmoe_last_error());
    char in[300], out[300];
    snprintf(in, sizeof in, "%s/lora_in.bin", g_dir);
    snprintf(out, sizeof out, "%s/lora_out.bin", g_dir);
    const int steps = 5;
    const float lr = 1e-2f, wd = 0.01f;
    write_inputs(in, &L.m, &L.bt, L.ads, 2, false, steps, lr, wd);
    REQUIRE(run_torch(in, out), "tests/ref/llm_train_torch.py failed");
    rs_pool *pool = rs_pool_new(2);
    float loss = 0;
    rsmoe_status st = lora_step(&L, &loss, pool);
    REQUIRE(st == RSMOE_OK, "step: %s", rsmoe_last_error());
    const rec *rl = get("loss");
    REQUIRE(rl, "no loss");
    double lerr = fabs(loss - rl->d[0]) / fabs(rl->d[0]);
    CHECK(lerr <= LOSS_TOL, "loss %.9g torch %.9g rel %.2e", loss, rl->d[0], lerr);
    g_worst = 0;
    double e = E(L.d_emb, (int64_t)4 * 8 * 16, "d_emb");
    CHECK(e <= GRAD_TOL, "d_emb nerr %.2e", e);
    int n_checked = 0;
    char name[64];
    for (int i = 0; i < 2; i++)
        for (int l = 0; l < 2; l++)
            for (int tg = 0; tg < RS_LT_COUNT; tg++) {
                if (!L.ads[i].set.A[l][tg]) continue;
                snprintf(name, sizeof name, "g.a%d.%d.%s.A", i, l, rs_lora_target_names[tg]);
                e = E(L.ads[i].grad.dA[l][tg], L.ads[i].rank * L.ads[i].in[tg], name);
                CHECK(e <= GRAD_TOL, "%s nerr %.2e", name, e);
                snprintf(name, sizeof name, "g.a%d.%d.%s.B", i, l, rs_lora_target_names[tg]);
                e = E(L.ads[i].grad.dB[l][tg], L.ads[i].rank * L.ads[i].out[tg], name);
                CHECK(e <= GRAD_TOL, "%s nerr %.2e", name, e);
                n_checked += 2;
            }
    CHECK(n_checked == 2 * 2 * (7 + 3), "%d LoRA gradients checked", n_checked);
    printf("info: LoRA mode loss %.7f (rel err %.1e), worst gradient nerr %.2e over %d tensors + d_emb\n", loss,
           lerr, g_worst, n_checked);

    /* 5 AdamW steps on both adapters' parameters */
    const rec *al = get("adam_loss");
    REQUIRE(al && al->n == steps, "no adam_loss");
    rs_adamw_cfg ac = rs_adamw_default();
    ac.lr = lr;
    ac.weight_decay = wd;
    float *mom[2], *var[2];
    for (int i = 0; i < 2; i++) {
        mom[i] = calloc((size_t)L.ads[i].n, sizeof(float));
        var[i] = calloc((size_t)L.ads[i].n, sizeof(float));
    }
    double worst = 0;
    for (int s = 0; s < steps; s++) {
        st = lora_step(&L, &loss, pool);
        REQUIRE(st == RSMOE_OK, "step %d: %s", s, rsmoe_last_error());
        double r = fabs(loss - al->d[s]) / fabs(al->d[s]);
        if (r > worst) worst = r;
        CHECK(r <= ADAM_TOL, "AdamW step %d: loss %.9g torch %.9g rel %.2e", s + 1, loss, al->d[s], r);
        for (int i = 0; i < 2; i++)
            rs_adamw_step(L.ads[i].params, L.ads[i].grads, mom[i], var[i], L.ads[i].n, s + 1, &ac, pool);
    }
    CHECK(al->d[steps - 1] < al->d[0], "training should lower the loss (%g -> %g)", al->d[0], al->d[steps - 1]);
    printf("info: AdamW 5 steps, losses %.6f -> %.6f, worst rel err %.2e\n", al->d[0], al->d[steps - 1], worst);
    for (int i = 0; i < 2; i++) { free(mom[i]); free(var[i]); }
    rs_pool_free(pool);
    lora_case_free(&L);
}

typedef struct {
    model m;
    batch bt;
    rs_llm_grads g;
    rs_llm_train *t;
    float *d_emb;
} full_case;

static void full_case_new(full_case *F, bool tied) {
    memset(F, 0, sizeof *F);
    rs_llm_config c = cfg_full(tied);
    model_new(&F->m, &c, 21);
    int len[2] = {6, 9}, adapter[2] = {-1, -1};
    batch_new(&F->bt, 2, 9, len, adapter, c.vocab, c.dim, 22);
    rs_llm_grads_new(&c, &F->g);
    rs_llm_train_new(&c, 2, 9, 0, &F->t);
    F->d_emb = malloc((size_t)2 * 9 * c.dim * sizeof(float));
}
static void full_case_free(full_case *F) {
    rs_llm_train_free(F->t);
    rs_llm_grads_free(&F->g);
    batch_free(&F->bt);
    free(F->m.block);
    free(F->d_emb);
}
static rsmoe_status full_step(full_case *F, float *loss, float loss_scale, rs_pool *pool) {
    rs_llm_train_batch b = {.B = F->bt.B, .T = F->bt.T, .emb = F->bt.emb, .len = F->bt.len, .targets = F->bt.targets};
    rsmoe_status st = rs_llm_train_forward(F->t, &F->m.w, &b, loss, NULL, pool);
    if (st) return st;
    rs_llm_bwd_out o = {.loss_scale = loss_scale, .weights = &F->g, .d_emb = F->d_emb};
    return rs_llm_train_backward(F->t, &F->m.w, &o, pool);
}

static void torch_full(bool tied) {
    if (!have_torch()) SKIP("/usr/bin/python3 with torch is absent");
    full_case F;
    full_case_new(&F, tied);
    REQUIRE(F.t && F.g.block, "setup: %s", rsmoe_last_error());
    char in[300], out[300];
    snprintf(in, sizeof in, "%s/full_in.bin", g_dir);
    snprintf(out, sizeof out, "%s/full_out.bin", g_dir);
    write_inputs(in, &F.m, &F.bt, NULL, 0, true, 0, 0, 0);
    int nw = tied ? 20 : 21;
    REQUIRE(run_torch(in, out), "tests/ref/llm_train_torch.py failed");
    rs_pool *pool = rs_pool_new(2);
    float loss = 0;
    rs_llm_grads_zero(&F.g);
    rsmoe_status st = full_step(&F, &loss, 1.0f, pool);
    REQUIRE(st == RSMOE_OK, "step: %s", rsmoe_last_error());
    const rec *rl = get("loss");
    REQUIRE(rl, "no loss");
    double lerr = fabs(loss - rl->d[0]) / fabs(rl->d[0]);
    CHECK(lerr <= LOSS_TOL, "loss %.9g torch %.9g rel %.2e", loss, rl->d[0], lerr);
    g_worst = 0;
    double e = E(F.d_emb, (int64_t)2 * 9 * 16, "d_emb");
    CHECK(e <= GRAD_TOL, "d_emb nerr %.2e", e);
    float *params[64], *grads[64];
    int64_t sizes[64];
    int np = rs_llm_param_list(&F.m.w, &F.g, params, grads, sizes, 64);
    CHECK(np == nw, "param list: %d (%s)", np, rsmoe_last_error());
    /* untied: token_embd gets nothing here (the caller scatters d_emb), torch's is zero */
    e = E(F.g.tok_embd, rs_tensor_nelements(&F.m.tok), "g.tok_embd");
    CHECK(e <= GRAD_TOL, "tok_embd nerr %.2e", e);
    if (!tied) {
        e = E(F.g.output, rs_tensor_nelements(&F.m.out), "g.output");
        CHECK(e <= GRAD_TOL, "output nerr %.2e", e);
    }
    e = E(F.g.out_norm, 16, "g.out_norm");
    CHECK(e <= GRAD_TOL, "out_norm nerr %.2e", e);
    for (int l = 0; l < 2; l++) {
        float *gl[9] = {F.g.layers[l].attn_norm, F.g.layers[l].wq, F.g.layers[l].wk, F.g.layers[l].wv,
                        F.g.layers[l].wo, F.g.layers[l].ffn_norm, F.g.layers[l].w_gate, F.g.layers[l].w_up,
                        F.g.layers[l].w_down};
        for (int k = 0; k < 9; k++) {
            char name[64];
            snprintf(name, sizeof name, "g.blk%d.%s", l, LW_NAMES[k]);
            e = E(gl[k], rs_tensor_nelements(&F.m.lt[l][k]), name);
            CHECK(e <= GRAD_TOL, "%s nerr %.2e", name, e);
        }
    }
    printf("info: full mode (%s) loss rel err %.1e, worst gradient nerr %.2e over %d weights + d_emb\n",
           tied ? "tied" : "untied", lerr, g_worst, nw);
    /* accumulation: a second backward with loss_scale 1 doubles every parameter gradient */
    float *g1 = malloc((size_t)F.g.n * sizeof(float));
    memcpy(g1, F.g.block, (size_t)F.g.n * sizeof(float));
    st = full_step(&F, &loss, 1.0f, pool);
    REQUIRE(st == RSMOE_OK, "step: %s", rsmoe_last_error());
    double md = 0, mg = 0;
    for (int64_t i = 0; i < F.g.n; i++) {
        md = fmax(md, fabs(F.g.block[i] - 2 * g1[i]));
        mg = fmax(mg, fabs(g1[i]));
    }
    CHECK(md <= 1e-6 * mg, "gradients accumulate: %.2e", md / mg);
    free(g1);
    rs_pool_free(pool);
    full_case_free(&F);
}

TEST(torch_full_mode_tied) { torch_full(true); }
TEST(torch_full_mode_untied) { torch_full(false); }

/* central differences (h = 1e-4, double twin) against the f32 analytic gradient; the
 * error is normalised by the largest gradient of that tensor */
static int g_fd_fail;
static void fd_check(const char *what, const model *m, const batch *bt, const rs_lora_train *ads, const float *arr,
                     int64_t idx, float analytic, double tensor_max) {
    const double h = 1e-4;
    perturb p = {arr, idx, h}, q = {arr, idx, -h};
    double fd = (twin_loss(m, bt, ads, &p) - twin_loss(m, bt, ads, &q)) / (2 * h);
    double err = fabs(fd - analytic) / fmax(tensor_max, 1e-12);
    if (!(err <= 1e-3)) {
        g_fd_fail++;
        fprintf(stderr, "FD %s[%lld]: analytic %.8g finite difference %.8g (err %.2e of max %.3g)\n", what,
                (long long)idx, analytic, fd, err, tensor_max);
    }
}
static double amax(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* finite differences of both LoRA factors of a few (adapter, layer, target) picks, two
 * coordinates each */
typedef struct { int a, l, tg; } lora_pick;
static void fd_lora_picks(const char *what, lora_case *L, const lora_pick *picks, size_t n) {
    char nm[64];
    for (size_t i = 0; i < n; i++) {
        const rs_lora_train *a = &L->ads[picks[i].a];
        int l = picks[i].l, tg = picks[i].tg;
        int64_t nA = a->rank * a->in[tg], nB = a->rank * a->out[tg];
        for (int j = 0; j < 2; j++) {
            int64_t ia = (int64_t)(j * 7919 + 3) % nA, ib = (int64_t)(j * 104729 + 5) % nB;
            snprintf(nm, sizeof nm, "%s A", what);
            fd_check(nm, &L->m, &L->bt, L->ads, a->set.A[l][tg], ia, a->grad.dA[l][tg][ia], amax(a->grad.dA[l][tg], nA));
            snprintf(nm, sizeof nm, "%s B", what);
            fd_check(nm, &L->m, &L->bt, L->ads, a->set.B[l][tg], ib, a->grad.dB[l][tg][ib], amax(a->grad.dB[l][tg], nB));
        }
    }
}

TEST(finite_differences_double_twin) {
    /* LoRA case: LoRA A/B of both adapters, d_emb (valid and padded rows) */
    lora_case L;
    lora_case_new(&L);
    REQUIRE(L.t, "state: %s", rsmoe_last_error());
    float loss = 0;
    REQUIRE(lora_step(&L, &loss, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    double tl = twin_loss(&L.m, &L.bt, L.ads, NULL);
    CHECK(fabs(loss - tl) <= LOSS_TOL * fabs(tl), "loss %.9g twin %.9g", loss, tl);
    g_fd_fail = 0;
    const lora_pick picks[] = {{0, 0, RS_LT_Q}, {0, 1, RS_LT_K}, {0, 0, RS_LT_O}, {0, 1, RS_LT_UP},
                               {1, 0, RS_LT_V}, {1, 1, RS_LT_DOWN}};
    fd_lora_picks("lora", &L, picks, sizeof picks / sizeof picks[0]);
    int64_t ne = (int64_t)4 * 8 * 16;
    double em = amax(L.d_emb, ne);
    int64_t eidx[5] = {5, 1 * 8 * 16 + 3 * 16 + 7, 2 * 8 * 16 + 6 * 16 + 1, 0 * 8 * 16 + 7 * 16 + 15,
                       3 * 8 * 16 + 2 * 16 + 4};
    for (int j = 0; j < 5; j++) fd_check("d_emb", &L.m, &L.bt, L.ads, L.bt.emb, eidx[j], L.d_emb[eidx[j]], em);
    /* a padded row: gradient exactly zero */
    int64_t pad = 1 * 8 * 16 + 6 * 16 + 2;
    CHECK(L.d_emb[pad] == 0.0f, "padded d_emb row %g", L.d_emb[pad]);
    CHECK(g_fd_fail == 0, "%d LoRA-mode finite differences off", g_fd_fail);
    lora_case_free(&L);

    /* full cases, tied and untied: a few coordinates of every weight kind */
    for (int tied = 1; tied >= 0; tied--) {
        full_case F;
        full_case_new(&F, tied);
        REQUIRE(F.t && F.g.block, "setup: %s", rsmoe_last_error());
        rs_llm_grads_zero(&F.g);
        REQUIRE(full_step(&F, &loss, 1.0f, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        tl = twin_loss(&F.m, &F.bt, NULL, NULL);
        CHECK(fabs(loss - tl) <= LOSS_TOL * fabs(tl), "full loss %.9g twin %.9g", loss, tl);
        g_fd_fail = 0;
        int64_t nt = rs_tensor_nelements(&F.m.tok);
        for (int j = 0; j < 3; j++) {
            int64_t i = (j * 131 + 7) % nt;
            if (tied) fd_check("tok_embd", &F.m, &F.bt, NULL, F.m.tok.data, i, F.g.tok_embd[i], amax(F.g.tok_embd, nt));
            else fd_check("output", &F.m, &F.bt, NULL, F.m.out.data, i, F.g.output[i], amax(F.g.output, nt));
        }
        fd_check("out_norm", &F.m, &F.bt, NULL, F.m.onorm.data, 3, F.g.out_norm[3], amax(F.g.out_norm, 16));
        for (int l = 0; l < 2; l++) {
            float *gl[9] = {F.g.layers[l].attn_norm, F.g.layers[l].wq, F.g.layers[l].wk, F.g.layers[l].wv,
                            F.g.layers[l].wo, F.g.layers[l].ffn_norm, F.g.layers[l].w_gate, F.g.layers[l].w_up,
                            F.g.layers[l].w_down};
            for (int k = 0; k < 9; k++) {
                int64_t n = rs_tensor_nelements(&F.m.lt[l][k]), i = (int64_t)(l * 37 + k * 11 + 2) % n;
                fd_check(LW_NAMES[k], &F.m, &F.bt, NULL, F.m.lt[l][k].data, i, gl[k][i], amax(gl[k], n));
            }
        }
        CHECK(g_fd_fail == 0, "%d full-mode (tied %d) finite differences off", g_fd_fail, tied);
        full_case_free(&F);
    }
}

/* per-sequence weights (REINFORCE advantages, negative and zero ones included): the gradients
 * are those of Σ_b w_b·Σ_t CE / n_scored (the double twin weighted alike), the reported loss
 * stays the unweighted mean, and a non-finite weight is refused */
TEST(sequence_weights_finite_differences) {
    lora_case L;
    lora_case_new(&L);
    REQUIRE(L.t, "state: %s", rsmoe_last_error());
    float loss0 = 0, loss = 0;
    REQUIRE(lora_step(&L, &loss0, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    float dq0 = L.ads[0].grad.dA[0][RS_LT_Q][3];
    const float w[4] = {0.7f, -1.3f, 2.0f, 0.0f};
    L.bt.weight = w;
    REQUIRE(lora_step(&L, &loss, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(loss == loss0, "reported loss unweighted: %.9g vs %.9g", loss, loss0);
    CHECK(L.ads[0].grad.dA[0][RS_LT_Q][3] != dq0, "weights change the gradient");
    g_fd_fail = 0;
    const lora_pick picks[] = {{0, 0, RS_LT_Q}, {0, 1, RS_LT_O}, {1, 0, RS_LT_V}, {1, 1, RS_LT_DOWN}};
    fd_lora_picks("weighted lora", &L, picks, sizeof picks / sizeof picks[0]);
    int64_t ne = (int64_t)4 * 8 * 16;
    double em = amax(L.d_emb, ne);
    int64_t eidx[4] = {5, 1 * 8 * 16 + 3 * 16 + 7, 2 * 8 * 16 + 6 * 16 + 1, 0 * 8 * 16 + 7 * 16 + 15};
    for (int j = 0; j < 4; j++) fd_check("weighted d_emb", &L.m, &L.bt, L.ads, L.bt.emb, eidx[j], L.d_emb[eidx[j]], em);
    /* sequence 3 has weight 0: no gradient reaches its inputs */
    double z = 0;
    for (int64_t i = 3 * 8 * 16; i < 4 * 8 * 16; i++) z = fmax(z, fabs(L.d_emb[i]));
    CHECK(z == 0.0, "zero-weight sequence's d_emb max %g", z);
    CHECK(g_fd_fail == 0, "%d weighted finite differences off", g_fd_fail);
    const float bad[4] = {1, NAN, 1, 1};
    L.bt.weight = bad;
    CHECK(lora_step(&L, &loss, NULL) == RSMOE_ERR_INVALID_ARG, "NaN weight refused");
    lora_case_free(&L);
}

/* the training forward's logits equal the inference forward's (rs_llm_forward, KV cache,
 * per-row LoRA) on every scored row */
TEST(matches_inference_forward) {
    lora_case L;
    lora_case_new(&L);
    REQUIRE(L.t, "state: %s", rsmoe_last_error());
    rs_llm_train_batch b = lora_batch(&L);
    float loss = 0;
    int64_t ns = 0;
    REQUIRE(rs_llm_train_forward(L.t, &L.m.w, &b, &loss, &ns, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    const float *tl = rs_llm_train_logits(L.t);
    rs_llm_state *s = NULL;
    REQUIRE(rs_llm_state_new(&L.m.c, 0, L.bt.B, 32, 32, 4, &s) == RSMOE_OK, "%s", rsmoe_last_error());
    int V = L.m.c.vocab, T = L.bt.T, D = L.m.c.dim;
    int slot[32], pos[32], ad[32], lrow[32], nr = 0;
    float *emb = malloc(32 * (size_t)D * sizeof(float)), *logits = malloc(32 * (size_t)V * sizeof(float));
    for (int bb = 0; bb < L.bt.B; bb++)
        for (int t = 0; t < L.bt.len[bb]; t++) {
            slot[nr] = bb; pos[nr] = t; ad[nr] = L.bt.adapter[bb]; lrow[nr] = nr;
            memcpy(emb + (size_t)nr * D, L.bt.emb + ((size_t)bb * T + t) * D, (size_t)D * sizeof(float));
            nr++;
        }
    rs_llm_batch ib = {.n_rows = nr, .emb = emb, .slot = slot, .pos = pos, .adapter = ad, .adapters = L.sets,
                       .n_logit_rows = nr, .logit_rows = lrow, .logits = logits};
    REQUIRE(rs_llm_forward(&L.m.w, s, &ib, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    int64_t k = 0;
    double worst = 0;
    for (int r = 0; r < nr; r++) {
        int32_t tg = L.bt.targets[slot[r] * T + pos[r]];
        if (tg == RS_IGNORE_INDEX) continue;
        REQUIRE(k < ns, "more scored rows than the forward's %lld", (long long)ns);
        double e = test_nerr_f32(tl + k * V, logits + (size_t)r * V, (size_t)V);
        if (e > worst) worst = e;
        k++;
    }
    CHECK(k == ns, "scored rows %lld vs %lld", (long long)k, (long long)ns);
    CHECK(worst <= 1e-5, "training vs inference logits nerr %.2e", worst);
    free(emb);
    free(logits);
    rs_llm_state_free(s);
    lora_case_free(&L);
}

/* an empty sequence in the batch; a batch with nothing scored; NaN in the padding is never read */
TEST(empty_sequences_and_nothing_scored) {
    lora_case L;
    lora_case_new(&L);
    REQUIRE(L.t, "state: %s", rsmoe_last_error());
    L.bt.len[2] = 0;
    for (int k = 0; k < 16; k++) L.bt.emb[(1 * 8 + 7) * 16 + k] = NAN; /* padding of sequence 1 */
    float loss = 0;
    REQUIRE(lora_step(&L, &loss, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    double tl = twin_loss(&L.m, &L.bt, L.ads, NULL);
    CHECK(fabs(loss - tl) <= LOSS_TOL * fabs(tl), "loss %.9g twin %.9g", loss, tl);
    bool zero = true, finite = true;
    for (int i = 0; i < 8 * 16; i++) zero &= L.d_emb[2 * 8 * 16 + i] == 0.0f;
    for (int i = 0; i < 4 * 8 * 16; i++) finite &= isfinite(L.d_emb[i]) != 0;
    CHECK(zero && finite, "d_emb of the empty sequence zero (%d), all finite (%d)", zero, finite);
    /* adapter 1 only on the empty sequence: its gradients stay zero */
    bool z1 = true;
    for (int64_t i = 0; i < L.ads[1].n; i++) z1 &= L.ads[1].grads[i] == 0.0f;
    CHECK(z1, "adapter 1 gradients zero");
    for (int i = 0; i < 4 * 8; i++) L.bt.targets[i] = RS_IGNORE_INDEX;
    int64_t ns = -1;
    rs_llm_train_batch b = lora_batch(&L);
    REQUIRE(rs_llm_train_forward(L.t, &L.m.w, &b, &loss, &ns, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(loss == 0 && ns == 0, "nothing scored: loss %g, %lld scored", loss, (long long)ns);
    rs_lora_train_zero_grad(&L.ads[0]);
    rs_llm_bwd_out o = {.loss_scale = 1.0f, .lora = L.grads, .d_emb = L.d_emb};
    REQUIRE(rs_llm_train_backward(L.t, &L.m.w, &o, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    double m0 = amax(L.d_emb, 4 * 8 * 16) + amax(L.ads[0].grads, L.ads[0].n);
    CHECK(m0 == 0, "nothing scored: gradients %g", m0);
    int32_t zl[4] = {0, 0, 0, 0};
    b.len = zl;
    REQUIRE(rs_llm_train_forward(L.t, &L.m.w, &b, &loss, &ns, NULL) == RSMOE_OK, "all empty: %s", rsmoe_last_error());
    REQUIRE(rs_llm_train_backward(L.t, &L.m.w, &o, NULL) == RSMOE_OK, "all empty: %s", rsmoe_last_error());
    CHECK(loss == 0 && amax(L.d_emb, 4 * 8 * 16) == 0, "all empty");
    lora_case_free(&L);
}

TEST(errors_and_memory) {
    lora_case L;
    lora_case_new(&L);
    REQUIRE(L.t, "state: %s", rsmoe_last_error());
    float loss = 0;
    rs_llm_train_batch b = lora_batch(&L);
    rs_llm_bwd_out o = {.loss_scale = 1.0f, .lora = L.grads};
    /* backward before any forward */
    CHECK(rs_llm_train_backward(L.t, &L.m.w, &o, NULL) == RSMOE_ERR_INVALID_ARG, "backward without forward");
    rs_llm_train_batch bb = b;
    bb.B = 5;
    CHECK(rs_llm_train_forward(L.t, &L.m.w, &bb, &loss, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "B above max");
    bb = b;
    bb.T = 9;
    CHECK(rs_llm_train_forward(L.t, &L.m.w, &bb, &loss, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "T above max");
    int32_t badlen[4] = {8, 9, 1, 1};
    bb = b;
    bb.len = badlen;
    CHECK(rs_llm_train_forward(L.t, &L.m.w, &bb, &loss, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "len > T");
    int badad[4] = {0, 2, -1, 0};
    bb = b;
    bb.adapter = badad;
    CHECK(rs_llm_train_forward(L.t, &L.m.w, &bb, &loss, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "adapter index");
    L.bt.targets[3] = 37;
    CHECK(rs_llm_train_forward(L.t, &L.m.w, &b, &loss, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "target id");
    L.bt.targets[3] = 1;
    /* a target outside the vocabulary in the padding is ignored */
    L.bt.targets[1 * 8 + 6] = 1000;
    CHECK(rs_llm_train_forward(L.t, &L.m.w, &b, &loss, NULL, NULL) == RSMOE_OK, "padding target: %s",
          rsmoe_last_error());
    /* rank above the state's */
    rs_llm_train *t2 = NULL;
    rs_llm_config c = cfg_lora();
    REQUIRE(rs_llm_train_new(&c, 4, 8, 2, &t2) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(rs_llm_train_forward(t2, &L.m.w, &b, &loss, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "rank 4 > 2");
    rs_llm_train_free(t2);
    /* non-f32 weights refused with a clear error */
    rs_tensor saved = *L.m.layers[1].wk;
    rs_tensor_init(&L.m.lt[1][2], "blk.1.attn_k.weight", RS_F16, 2, saved.ne, saved.data);
    rsmoe_status st = rs_llm_train_forward(L.t, &L.m.w, &b, &loss, NULL, NULL);
    CHECK(st == RSMOE_ERR_UNSUPPORTED && strstr(rsmoe_last_error(), "f32"), "f16 weight: %d %s", st,
          rsmoe_last_error());
    L.m.lt[1][2] = saved;
    /* sizes */
    CHECK(rs_llm_train_new(&c, 0, 8, 0, &t2) == RSMOE_ERR_INVALID_ARG && !t2, "B 0");
    CHECK(rs_llm_train_new(&c, 1, 17, 0, &t2) == RSMOE_ERR_INVALID_ARG, "T above max_seq");
    /* the documented formula against the exact byte count */
    for (int r = 0; r <= 8; r += 4) {
        int B = 4, T = 8;
        size_t N = (size_t)B * T, D = c.dim, F = c.ffn, V = c.vocab, H = c.n_heads,
               qd = (size_t)c.n_heads * c.head_dim, kvd = (size_t)c.n_kv_heads * c.head_dim;
        size_t fl = (size_t)c.n_layers * (N * (4 * D + 2 * qd + 2 * kvd + 2 * F + 2 + 7 * (size_t)r) + B * H * T * T) +
                    N * (2 * D + 1 + V) + N * (3 * D + 2 * qd + 2 * kvd + 3 * F + (size_t)r) + (size_t)T * T;
        size_t formula = fl * 4 + 16 * N + 20 * (size_t)B + 4;
        size_t exact = rs_llm_train_bytes(&c, B, T, r);
        CHECK(exact >= formula && exact <= formula + 64 * 160 + 4096, "rank %d: bytes %zu formula %zu", r, exact,
              formula);
    }
    lora_case_free(&L);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rsmoe_llm_train_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    RUN(finite_differences_double_twin);
    RUN(sequence_weights_finite_differences);
    RUN(matches_inference_forward);
    RUN(empty_sequences_and_nothing_scored);
    RUN(errors_and_memory);
    RUN(torch_lora_mode_and_adamw);
    RUN(torch_full_mode_tied);
    RUN(torch_full_mode_untied);
    recs_free();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_summary();
}
