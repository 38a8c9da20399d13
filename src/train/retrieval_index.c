/* retrieval_index.c - see retrieval_index.h; the file layout is model/retrieval.h's. */
#include "train/retrieval_index.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "model/retrieval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rs_retrieval_build_params rs_retrieval_build_default_params(void) {
    return (rs_retrieval_build_params){.k = 60, .gamma = 0.5f, .bonus = 0.6f, .probe_steps = 300, .probe_lr = 1e-3f,
                                       .q8_keys = true};
}

void rs_retrieval_bufs_free(rs_retrieval_bufs *b) {
    for (int i = 0; i < b->n; i++) free(b->buf[i]);
    b->n = 0;
}

static void *keep_alloc(rs_retrieval_bufs *b, size_t bytes) {
    if (b->n == (int)(sizeof b->buf / sizeof b->buf[0])) return NULL;
    void *p = calloc(1, bytes ? bytes : 1);
    if (p) b->buf[b->n++] = p;
    return p;
}

float rs_probe_loss_grad(const float *Z, const int32_t *y, int64_t n, int D, int C, const float *W,
                         const float *b, float *gW, float *gb, rs_pool *pool) {
    float *logits = malloc(sizeof(float) * (size_t)n * (size_t)C);
    if (!logits) return NAN;
    float loss = NAN;
    rs_linear_fwd(logits, Z, W, b, n, D, C, pool);
    if (!rs_cross_entropy_fwd(&loss, NULL, logits, y, n, C, RS_IGNORE_INDEX, pool) &&
        !rs_cross_entropy_bwd(logits, logits, y, n, C, RS_IGNORE_INDEX, 1.0f, pool)) {
        memset(gW, 0, sizeof(float) * (size_t)C * (size_t)D);
        memset(gb, 0, sizeof(float) * (size_t)C);
        rs_linear_bwd(NULL, gW, gb, logits, Z, W, n, D, C, pool);
    } else loss = NAN;
    free(logits);
    return loss;
}

/* ------------------------------------------------------------ small hash tables */
typedef struct {
    uint64_t *key;
    uint32_t *val;
    size_t n, cap;   /* cap: power of two */
} u64map;

static bool map_put(u64map *m, uint64_t key, uint32_t add, uint32_t *out_val) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 1 << 16;
        uint64_t *k = malloc(sizeof(uint64_t) * nc);
        uint32_t *v = malloc(sizeof(uint32_t) * nc);
        if (!k || !v) { free(k); free(v); return false; }
        /* val UINT32_MAX marks an empty slot */
        for (size_t i = 0; i < nc; i++) v[i] = UINT32_MAX;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->val[i] == UINT32_MAX) continue;
            size_t s = (size_t)(m->key[i] * 0x9E3779B97F4A7C15ULL >> 20) & (nc - 1);
            while (v[s] != UINT32_MAX) s = (s + 1) & (nc - 1);
            k[s] = m->key[i];
            v[s] = m->val[i];
        }
        free(m->key);
        free(m->val);
        m->key = k;
        m->val = v;
        m->cap = nc;
    }
    size_t s = (size_t)(key * 0x9E3779B97F4A7C15ULL >> 20) & (m->cap - 1);
    while (m->val[s] != UINT32_MAX && m->key[s] != key) s = (s + 1) & (m->cap - 1);
    if (m->val[s] == UINT32_MAX) { m->key[s] = key; m->val[s] = 0; m->n++; }
    m->val[s] += add;
    if (out_val) *out_val = m->val[s];
    return true;
}

static void map_free(u64map *m) {
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* hashes of the 1..4-grams of a normalised sentence appended to *h (grown as needed) */
static bool sentence_ngrams(const char *s, uint64_t **h, size_t *n, size_t *cap) {
    const char *w[512];
    size_t wl[512];
    int nw = rs_retrieval_split(s, w, wl, 512);
    if (nw > 512) nw = 512;   /* longer captions: their first 512 words */
    for (int k = 1; k <= 4; k++)
        for (int i = 0; i + k <= nw; i++) {
            if (*n == *cap) {
                size_t nc = *cap ? *cap * 2 : 256;
                uint64_t *t = realloc(*h, nc * sizeof *t);
                if (!t) return false;
                *h = t;
                *cap = nc;
            }
            (*h)[(*n)++] = rs_retrieval_ngram_hash(w + i, wl + i, k);
        }
    return true;
}

rsmoe_status rs_ngram_df_build(const rs_dataset *ds, const int *items, int n, rs_ngram_df *out) {
    memset(out, 0, sizeof *out);
    u64map dfmap = {0};
    uint64_t *hs = NULL;
    size_t nhs = 0, caphs = 0;
    char norm[2048];
    rsmoe_status st = RSMOE_OK;
    for (int i = 0; i < n && !st; i++) {
        const rs_ds_item *it = &ds->items[items ? items[i] : i];
        nhs = 0;
        for (int c = 0; c < it->ncap && !st; c++) {
            rs_retrieval_words(it->captions[c], norm, sizeof norm);
            if (norm[0] && !sentence_ngrams(norm, &hs, &nhs, &caphs)) st = rs_error(RSMOE_ERR_NOMEM, "out of memory");
        }
        qsort(hs, nhs, sizeof *hs, cmp_u64);
        for (size_t j = 0; j < nhs && !st; j++)
            if ((!j || hs[j] != hs[j - 1]) && !map_put(&dfmap, hs[j], 1, NULL)) st = rs_error(RSMOE_ERR_NOMEM, "out of memory");
    }
    free(hs);
    if (!st) {
        out->hash = malloc(sizeof(uint64_t) * (dfmap.n + 1));
        out->df = malloc(sizeof(uint32_t) * (dfmap.n + 1));
        if (!out->hash || !out->df) st = rs_error(RSMOE_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        size_t m = 0;
        for (size_t i = 0; i < dfmap.cap; i++)
            if (dfmap.val[i] != UINT32_MAX) out->hash[m++] = dfmap.key[i];
        qsort(out->hash, m, sizeof *out->hash, cmp_u64);
        for (size_t i = 0; i < m; i++) {
            uint32_t v = 0;
            map_put(&dfmap, out->hash[i], 0, &v);
            out->df[i] = v;
        }
        out->n = (int64_t)m;
        out->n_docs = (uint32_t)n;
    }
    map_free(&dfmap);
    if (st) rs_ngram_df_free(out);
    return st;
}

void rs_ngram_df_free(rs_ngram_df *d) {
    free(d->hash);
    free(d->df);
    memset(d, 0, sizeof *d);
}

double rs_cider_d_df(const char *hyp, const char *const *refs, int n_refs, const rs_ngram_df *df) {
    if (n_refs < 1) return 0;
    char h[2048], r[2048];
    rs_retrieval_words(hyp, h, sizeof h);
    double sum = 0;
    for (int i = 0; i < n_refs; i++) {
        rs_retrieval_words(refs[i], r, sizeof r);
        double v = rs_consensus_sim(h, r, df->hash, df->df, df->n, df->n_docs);
        if (isnan(v)) return NAN;
        sum += v;
    }
    return 10.0 * sum / n_refs;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static rsmoe_status add_tensor(rs_gguf_writer *w, const char *name, int ndim, int64_t ne0, int64_t ne1, void *data,
                            rs_dtype type) {
    rs_tensor t;
    int64_t ne[2] = {ne0, ne1};
    rsmoe_status st = rs_tensor_init(&t, name, type, ndim, ne, data);
    return st ? st : rs_gguf_writer_add_tensor(w, &t);
}

rsmoe_status rs_retrieval_build(const rs_dataset *ds, const rs_features *f, const rs_retrieval_build_params *p,
                                rs_gguf_writer *w, rs_retrieval_bufs *keep,
                                rs_retrieval_build_report *rep) {
    memset(rep, 0, sizeof *rep);
    rs_retrieval_build_params P = p ? *p : rs_retrieval_build_default_params();
    if (P.k < 1 || !(P.gamma >= 0) || !(P.bonus >= 0) || P.probe_steps < 0 || !(P.probe_lr > 0))
        return rs_error(RSMOE_ERR_INVALID_ARG, "retrieval index: k >= 1, gamma >= 0, bonus >= 0, probe steps >= 0, lr > 0");
    const int T = rs_features_tokens(f), D = rs_features_width(f);
    int *items = malloc(sizeof(int) * (size_t)(ds->nitems + 1)), *fidx = malloc(sizeof(int) * (size_t)(ds->nitems + 1));
    float *tok = malloc(sizeof(float) * (size_t)T * (size_t)D);
    const char **classes = malloc(sizeof(char *) * (size_t)(ds->nitems + 1));
    rsmoe_status st = RSMOE_OK;
    u64map smap = {0};
    rs_ngram_df df = {0};
    const char **sents = NULL;
    float *Z = NULL, *gW = NULL, *gb = NULL, *mW = NULL, *vW = NULL, *mb = NULL, *vb = NULL;
    int32_t *y = NULL;
    if (!items || !fidx || !tok || !classes) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    int N = 0;
    for (int i = 0; i < ds->nitems; i++) {
        int j = ds->items[i].ncap > 0 ? rs_features_find(f, ds->items[i].filename) : -1;
        if (j < 0) { rep->skipped++; continue; }
        items[N] = i;
        fidx[N++] = j;
    }
    if (N < 2) { st = rs_error(RSMOE_ERR_INVALID_ARG, "retrieval index: %d images with captions and features (2 or more needed)", N); goto done; }
    if (P.k > N) P.k = N;
    /* pooled features, their mean and standard deviation (over images), standardised Z */
    Z = malloc(sizeof(float) * (size_t)N * (size_t)D);
    float *mean = keep_alloc(keep, sizeof(float) * (size_t)D), *istd = keep_alloc(keep, sizeof(float) * (size_t)D);
    if (!Z || !mean || !istd) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    double *acc = calloc((size_t)D * 2, sizeof(double));
    if (!acc) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    for (int n = 0; n < N; n++) {
        rs_features_get(f, fidx[n], tok);
        for (int c = 0; c < D; c++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += tok[(size_t)t * D + c];
            Z[(size_t)n * D + c] = (float)(s / T);
            acc[c] += Z[(size_t)n * D + c];
        }
    }
    for (int c = 0; c < D; c++) mean[c] = (float)(acc[c] / N);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < D; c++) {
            double d = (double)Z[(size_t)n * D + c] - mean[c];
            acc[D + c] += d * d;
        }
    for (int c = 0; c < D; c++) istd[c] = (float)(1.0 / (sqrt(acc[D + c] / N) + 1e-6));
    free(acc);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < D; c++) Z[(size_t)n * D + c] = (Z[(size_t)n * D + c] - mean[c]) * istd[c];
    /* keys: unit rows of Z */
    bool q8 = P.q8_keys && D % RS_QK8_0 == 0;
    float *unit = malloc(sizeof(float) * (size_t)D);
    void *keys = keep_alloc(keep, q8 ? (size_t)N * rs_row_bytes(RS_Q8_0, D) : sizeof(float) * (size_t)N * D);
    if (!unit || !keys) { free(unit); st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    for (int n = 0; n < N; n++) {
        double nn = 0;
        for (int c = 0; c < D; c++) nn += (double)Z[(size_t)n * D + c] * Z[(size_t)n * D + c];
        float inv = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.f;
        for (int c = 0; c < D; c++) unit[c] = Z[(size_t)n * D + c] * inv;
        if (q8) rs_quantize_row_q8_0(unit, (rs_block_q8_0 *)((char *)keys + (size_t)n * rs_row_bytes(RS_Q8_0, D)), D);
        else memcpy((float *)keys + (size_t)n * D, unit, sizeof(float) * (size_t)D);
    }
    free(unit);
    /* scene classes (sorted distinct labels) and the probe */
    int C = 0;
    for (int n = 0; n < N; n++)
        if (ds->items[items[n]].label[0]) classes[C++] = ds->items[items[n]].label;
    qsort(classes, (size_t)C, sizeof *classes, cmp_str);
    int u = 0;
    for (int i = 0; i < C; i++)
        if (!u || strcmp(classes[u - 1], classes[i])) classes[u++] = classes[i];
    C = u >= 2 ? u : 0;
    rep->n_class = C;
    float *Wp = NULL, *bp = NULL, *keys_p = NULL;
    if (C) {
        y = malloc(sizeof(int32_t) * (size_t)N);
        Wp = keep_alloc(keep, sizeof(float) * (size_t)C * D);
        bp = keep_alloc(keep, sizeof(float) * (size_t)C);
        keys_p = keep_alloc(keep, sizeof(float) * (size_t)N * C);
        gW = calloc((size_t)C * D, sizeof(float));
        mW = calloc((size_t)C * D, sizeof(float));
        vW = calloc((size_t)C * D, sizeof(float));
        gb = calloc((size_t)C, sizeof(float));
        mb = calloc((size_t)C, sizeof(float));
        vb = calloc((size_t)C, sizeof(float));
        if (!y || !Wp || !bp || !keys_p || !gW || !mW || !vW || !gb || !mb || !vb) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
        for (int n = 0; n < N; n++) {
            const char *l = ds->items[items[n]].label;
            y[n] = RS_IGNORE_INDEX;
            if (!l[0]) continue;
            const char **hit = bsearch(&l, classes, (size_t)C, sizeof *classes, cmp_str);
            y[n] = (int32_t)(hit - classes);
        }
        rs_adamw_cfg ac = rs_adamw_default();
        ac.lr = P.probe_lr;
        ac.weight_decay = 0;
        for (int s = 1; s <= P.probe_steps; s++) {
            float loss = rs_probe_loss_grad(Z, y, N, D, C, Wp, bp, gW, gb, NULL);
            if (!isfinite(loss)) { st = rs_error(RSMOE_ERR_NUMERIC, "retrieval index: the scene probe's loss is not finite at step %d", s); goto done; }
            if (s == 1) rep->probe_loss0 = loss;
            rep->probe_loss = loss;
            rs_adamw_step(Wp, gW, mW, vW, (int64_t)C * D, s, &ac, NULL);
            rs_adamw_step(bp, gb, mb, vb, C, s, &ac, NULL);
        }
        /* posteriors of every indexed image, unit rows */
        rs_linear_fwd(keys_p, Z, Wp, bp, N, D, C, NULL);
        int right = 0, lab = 0;
        for (int n = 0; n < N; n++) {
            float *r = keys_p + (size_t)n * C;
            int am = rs_retrieval_softmax(r, C);
            if (y[n] >= 0) { lab++; right += am == y[n]; }
            double nn = 0;
            for (int c = 0; c < C; c++) nn += (double)r[c] * r[c];
            for (int c = 0; c < C; c++) r[c] = (float)(r[c] / sqrt(nn));
        }
        rep->probe_acc = lab ? (float)right / lab : 0.f;
    }
    /* sentences: distinct normalised forms (the first as written is kept), per image its ids;
     * df: images whose captions hold each n-gram */
    int64_t ncap = 0;
    for (int n = 0; n < N; n++) ncap += ds->items[items[n]].ncap;
    int32_t *img_off = keep_alloc(keep, sizeof(int32_t) * (size_t)(N + 1));
    int32_t *img_sent = keep_alloc(keep, sizeof(int32_t) * (size_t)ncap);
    sents = malloc(sizeof(char *) * (size_t)ncap);
    if (!img_off || !img_sent || !sents) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    int ns = 0;
    int64_t q = 0;
    char norm[2048];
    for (int n = 0; n < N; n++) {
        const rs_ds_item *it = &ds->items[items[n]];
        img_off[n] = (int32_t)q;
        for (int c = 0; c < it->ncap; c++) {
            rs_retrieval_words(it->captions[c], norm, sizeof norm);
            if (!norm[0]) continue;
            const char *ws[1] = {norm};
            size_t wl[1] = {strlen(norm)};
            uint64_t h = rs_retrieval_ngram_hash(ws, wl, 1);
            uint32_t id1 = 0;
            /* ids are stored + 1 so that a new key (value 0) is told apart */
            if (!map_put(&smap, h, 0, &id1)) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
            if (id1 == 0) {
                sents[ns++] = it->captions[c];
                if (!map_put(&smap, h, (uint32_t)ns, &id1)) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
            }
            img_sent[q++] = (int32_t)(id1 - 1);
        }
    }
    img_off[N] = (int32_t)q;
    if (q == 0) { st = rs_error(RSMOE_ERR_INVALID_ARG, "retrieval index: no caption has a word"); goto done; }
    if ((st = rs_ngram_df_build(ds, items, N, &df))) goto done;
    rep->n_img = N;
    rep->n_sent = ns;
    rep->n_ngram = df.n;
    /* sentences as written, trimmed of surrounding spaces */
    size_t *lens = malloc(sizeof(size_t) * (size_t)ns);
    if (!lens) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < ns; i++) {
        while (*sents[i] == ' ') sents[i]++;
        lens[i] = strlen(sents[i]);
        while (lens[i] && (sents[i][lens[i] - 1] == ' ' || sents[i][lens[i] - 1] == '\n')) lens[i]--;
    }
    if (!st) st = rs_gguf_writer_set_u32(w, "rsmoe.retrieval.k", (uint32_t)P.k);
    if (!st) st = rs_gguf_writer_set_f32(w, "rsmoe.retrieval.gamma", P.gamma);
    if (!st) st = rs_gguf_writer_set_f32(w, "rsmoe.retrieval.bonus", P.bonus);
    if (!st) st = rs_gguf_writer_set_u32(w, "rsmoe.retrieval.n_docs", (uint32_t)N);
    if (!st && C) st = rs_gguf_writer_set_arr_str(w, "rsmoe.retrieval.classes", classes, NULL, C);
    if (!st) st = rs_gguf_writer_set_arr_str(w, "rsmoe.retrieval.sentences", sents, lens, ns);
    if (!st) st = rs_gguf_writer_set_arr_data(w, "rsmoe.retrieval.ngram_hash", RS_GGUF_U64, df.hash, df.n);
    if (!st) st = rs_gguf_writer_set_arr_data(w, "rsmoe.retrieval.ngram_df", RS_GGUF_U32, df.df, df.n);
    free(lens);
    if (!st) st = add_tensor(w, "retrieval.mean", 1, D, 1, mean, RS_F32);
    if (!st) st = add_tensor(w, "retrieval.istd", 1, D, 1, istd, RS_F32);
    if (!st) st = add_tensor(w, "retrieval.keys", 2, D, N, keys, q8 ? RS_Q8_0 : RS_F32);
    if (!st && C) st = add_tensor(w, "retrieval.probe_w", 2, D, C, Wp, RS_F32);
    if (!st && C) st = add_tensor(w, "retrieval.probe_b", 1, C, 1, bp, RS_F32);
    if (!st && C) st = add_tensor(w, "retrieval.keys_p", 2, C, N, keys_p, RS_F32);
    if (!st) st = rs_gguf_writer_set_arr_data(w, "rsmoe.retrieval.img_off", RS_GGUF_I32, img_off, N + 1);
    if (!st) st = rs_gguf_writer_set_arr_data(w, "rsmoe.retrieval.img_sent", RS_GGUF_I32, img_sent, q);
done:
    map_free(&smap);
    rs_ngram_df_free(&df);
    free(sents);
    free(items);
    free(fidx);
    free(tok);
    free(classes);
    free(Z);
    free(y);
    free(gW); free(mW); free(vW); free(gb); free(mb); free(vb);
    return st;
}
