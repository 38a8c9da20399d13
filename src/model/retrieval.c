/* retrieval.c - see retrieval.h */
#include "model/retrieval.h"
#include "model/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rs_retrieval_words(const char *text, char *out, size_t cap) {
    size_t n = 0;
    bool gap = false;
    if (!cap) return;
    for (const unsigned char *s = (const unsigned char *)text; *s; s++) {
        unsigned char ch = *s;
        bool word = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch >= 0x80;
        if (!word) { gap = n > 0; continue; }
        if (gap) {
            if (n + 1 >= cap) break;
            out[n++] = ' ';
            gap = false;
        }
        if (n + 1 >= cap) break;
        out[n++] = (char)((ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch);
    }
    out[n] = 0;
}

int rs_retrieval_split(const char *s, const char **w, size_t *len, int max) {
    int n = 0;
    for (const char *p = s; *p;) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *b = p;
        while (*p && *p != ' ') p++;
        if (n < max) { w[n] = b; len[n] = (size_t)(p - b); }
        n++;
    }
    return n;
}

uint64_t rs_retrieval_ngram_hash(const char *const *w, const size_t *len, int n) {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) {
        if (i) { h ^= (unsigned char)' '; h *= 1099511628211ULL; }
        for (size_t j = 0; j < len[i]; j++) { h ^= (unsigned char)w[i][j]; h *= 1099511628211ULL; }
    }
    return h;
}

/* ------------------------------------------------------------ sentence vectors */
typedef struct {
    uint64_t h;
    double v;
} ngv;

typedef struct {
    ngv *g[4];
    int n[4];
    double norm[4];
    int len;   /* words */
} svec;

static int cmp_ngv(const void *a, const void *b) {
    uint64_t x = ((const ngv *)a)->h, y = ((const ngv *)b)->h;
    return (x > y) - (x < y);
}

static uint32_t df_of(uint64_t h, const uint64_t *hash, const uint32_t *df, int64_t n) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (hash[mid] < h) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && hash[lo] == h ? df[lo] : 0;
}

static void svec_free(svec *v) {
    for (int k = 0; k < 4; k++) free(v->g[k]);
    memset(v, 0, sizeof *v);
}

static bool svec_make(const char *s, const uint64_t *hash, const uint32_t *df, int64_t n, uint32_t n_docs, svec *v) {
    memset(v, 0, sizeof *v);
    int nw = rs_retrieval_split(s, NULL, NULL, 0);
    v->len = nw;
    if (!nw) return true;
    const char **w = malloc(sizeof(char *) * (size_t)nw);
    size_t *wl = malloc(sizeof(size_t) * (size_t)nw);
    if (!w || !wl) { free(w); free(wl); return false; }
    rs_retrieval_split(s, w, wl, nw);
    bool ok = true;
    for (int k = 0; k < 4 && ok; k++) {
        int m = nw - k;
        if (m <= 0) break;
        ngv *g = malloc(sizeof(ngv) * (size_t)m);
        if (!g) { ok = false; break; }
        for (int j = 0; j < m; j++) g[j] = (ngv){rs_retrieval_ngram_hash(w + j, wl + j, k + 1), 1.0};
        qsort(g, (size_t)m, sizeof *g, cmp_ngv);
        int u = 0;
        for (int j = 0; j < m; j++) {
            if (u && g[u - 1].h == g[j].h) g[u - 1].v += 1.0;
            else g[u++] = g[j];
        }
        double nn = 0;
        for (int j = 0; j < u; j++) {
            uint32_t d = df_of(g[j].h, hash, df, n);
            g[j].v *= log((double)n_docs / (d > 1 ? (double)d : 1.0));
            nn += g[j].v * g[j].v;
        }
        v->g[k] = g;
        v->n[k] = u;
        v->norm[k] = sqrt(nn);
    }
    free(w);
    free(wl);
    if (!ok) svec_free(v);
    return ok;
}

/* the similarity from the four orders' clipped dot products dot[k] (stride `stride`) */
static double svec_sim_of_dots(const svec *a, const svec *b, const double *dot, size_t stride) {
    double total = 0;
    for (int k = 0; k < 4; k++) {
        if (a->norm[k] == 0 || b->norm[k] == 0) continue;
        total += dot[(size_t)k * stride] / (a->norm[k] * b->norm[k]);
    }
    double dl = (double)(a->len - b->len);
    return total / 4.0 * exp(-dl * dl / 72.0);
}

static double svec_sim(const svec *a, const svec *b) {
    double dot[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4; k++) {
        if (a->norm[k] == 0 || b->norm[k] == 0) continue;
        int i = 0, j = 0;
        while (i < a->n[k] && j < b->n[k]) {
            uint64_t x = a->g[k][i].h, y = b->g[k][j].h;
            if (x < y) i++;
            else if (y < x) j++;
            else {
                double va = a->g[k][i].v, vb = b->g[k][j].v;
                dot[k] += (va < vb ? va : vb) * vb;
                i++;
                j++;
            }
        }
    }
    return svec_sim_of_dots(a, b, dot, 1);
}

double rs_consensus_sim(const char *a, const char *b, const uint64_t *hash, const uint32_t *df, int64_t n,
                        uint32_t n_docs) {
    svec va, vb;
    if (!svec_make(a, hash, df, n, n_docs, &va)) return NAN;
    if (!svec_make(b, hash, df, n, n_docs, &vb)) { svec_free(&va); return NAN; }
    double s = svec_sim(&va, &vb);
    svec_free(&va);
    svec_free(&vb);
    return s;
}

/* one n-gram occurrence for the inverted lists of rs_consensus_choose */
typedef struct {
    uint64_t h;
    int s;      /* sentence */
    double v;
} ngocc;

static int cmp_ngocc(const void *a, const void *b) {
    const ngocc *x = a, *y = b;
    if (x->h != y->h) return (x->h > y->h) - (x->h < y->h);
    return (x->s > y->s) - (x->s < y->s);
}

/* Every candidate against every lent sentence, as svec_sim computes each pair, but through
 * inverted lists: for each n-gram order k the occurrences of all sentences sorted by hash, and
 * each pair that shares an n-gram gets min(va, vb)·vb added to its dot product. The pairs' sums
 * see the same terms in the same (ascending hash) order as svec_sim's merge of two sorted lists,
 * so the similarities are the same bits; the merge spent its time stepping past n-grams two
 * sentences do not share (6-7 ms of a 50 ms caption, 60 neighbours' ~150 distinct captions). */
int rs_consensus_choose(const char *const *s, const bool *is_prop, int n, const float *w, int n_lent,
                        float bonus, const uint64_t *hash, const uint32_t *df, int64_t n_ngram,
                        uint32_t n_docs) {
    if (n <= 0) return -1;
    if (n_lent > n) n_lent = n;
    svec *v = calloc((size_t)n, sizeof *v);   /* every sentence's vector once; lent ones first */
    double *dot = calloc((size_t)4 * (size_t)n * (size_t)(n_lent > 0 ? n_lent : 1), sizeof(double));
    bool ok = v && dot;
    for (int i = 0; ok && i < n; i++) ok = svec_make(s[i], hash, df, n_ngram, n_docs, &v[i]);
    for (int k = 0; ok && k < 4 && n_lent > 0; k++) {
        int64_t m = 0;
        for (int i = 0; i < n; i++) m += v[i].n[k];
        ngocc *o = malloc(sizeof(ngocc) * (size_t)(m > 0 ? m : 1));
        if (!o) { ok = false; break; }
        m = 0;
        for (int i = 0; i < n; i++)
            for (int q = 0; q < v[i].n[k]; q++) o[m++] = (ngocc){v[i].g[k][q].h, i, v[i].g[k][q].v};
        qsort(o, (size_t)m, sizeof *o, cmp_ngocc);
        double *dk = dot + (size_t)k * (size_t)n * (size_t)n_lent;
        for (int64_t g0 = 0, g1; g0 < m; g0 = g1) {
            for (g1 = g0 + 1; g1 < m && o[g1].h == o[g0].h;) g1++;
            /* sentences ascend within the group: the lent ones (j < n_lent) come first */
            for (int64_t b = g0; b < g1 && o[b].s < n_lent; b++) {
                const double vb = o[b].v;
                for (int64_t a = g0; a < g1; a++) {
                    const double va = o[a].v;
                    dk[(size_t)o[a].s * (size_t)n_lent + (size_t)o[b].s] += (va < vb ? va : vb) * vb;
                }
            }
        }
        free(o);
    }
    int best = -1;
    double best_s = -INFINITY;
    for (int i = 0; ok && i < n; i++) {
        double sc = 0;
        for (int j = 0; j < n_lent; j++)
            if (w[j] > 0)
                sc += (double)w[j] * svec_sim_of_dots(&v[i], &v[j], dot + (size_t)i * (size_t)n_lent + (size_t)j,
                                                      (size_t)n * (size_t)n_lent);
        if (is_prop && is_prop[i]) sc *= 1.0 + (double)bonus;
        if (sc > best_s) { best_s = sc; best = i; }
    }
    for (int i = 0; v && i < n; i++) svec_free(&v[i]);
    free(v);
    free(dot);
    return ok ? best : -1;
}

int rs_retrieval_softmax(float *z, int C) {
    float mx = -INFINITY;
    int am = -1;
    for (int i = 0; i < C; i++)
        if (z[i] > mx) { mx = z[i]; am = i; }
    double se = 0;
    for (int i = 0; i < C; i++) se += (z[i] = expf(z[i] - mx));
    for (int i = 0; i < C; i++) z[i] = (float)(z[i] / se);
    return am;
}

/* ------------------------------------------------------------ the index in a model file */
/* a numeric array kv copied out of the file (aligned; malloc'd), NULL if absent or of another type */
static void *arr_copy(const rs_gguf *g, const char *key, int type, int64_t *n) {
    int64_t i = rs_gguf_find_key(g, key);
    int et;
    *n = 0;
    if (i < 0 || !rs_gguf_arr_data(g, i, &et, n) || et != type) return NULL;
    void *p = malloc(rs_gguf_type_size(type) * (size_t)(*n + 1));
    if (p && rs_gguf_arr_copy(g, i, type, p, *n)) { free(p); p = NULL; }
    return p;
}

void rs_retrieval_free(rs_retrieval *r) {
    free(r->ng_hash);
    free(r->ng_df);
    free(r->img_off);
    free(r->img_sent);
    memset(r, 0, sizeof *r);
}

static const float *f32_tensor(const rs_gguf *g, const char *name, int64_t ne0, int64_t ne1) {
    const rs_tensor *t = rs_gguf_find_tensor(g, name);
    if (!t || t->type != RS_F32 || t->ne[0] != ne0 || (ne1 > 0 ? t->ne[1] != ne1 : rs_tensor_nelements(t) != ne0))
        return NULL;
    return (const float *)t->data;
}

rsmoe_status rs_retrieval_load(const rs_gguf *g, int width, rs_retrieval *r, bool *present) {
    memset(r, 0, sizeof *r);
    *present = false;
    if (rs_gguf_find_key(g, "rsmoe.retrieval.k") < 0 && !rs_gguf_find_tensor(g, "retrieval.keys")) return RSMOE_OK;
    const char *bad = NULL;
    r->g = g;
    r->k = (int)rs_gguf_get_u32_or(g, "rsmoe.retrieval.k", 0);
    r->n_docs = rs_gguf_get_u32_or(g, "rsmoe.retrieval.n_docs", 0);
    if (rs_gguf_get_f32(g, "rsmoe.retrieval.gamma", &r->gamma) || rs_gguf_get_f32(g, "rsmoe.retrieval.bonus", &r->bonus))
        bad = "rsmoe.retrieval.gamma / .bonus";
    r->kv_sent = rs_gguf_find_key(g, "rsmoe.retrieval.sentences");
    r->kv_class = rs_gguf_find_key(g, "rsmoe.retrieval.classes");
    r->n_sent = r->kv_sent >= 0 && rs_gguf_arr_type(g, r->kv_sent) == RS_GGUF_STRING ? rs_gguf_arr_n(g, r->kv_sent) : -1;
    r->n_class = r->kv_class >= 0 && rs_gguf_arr_type(g, r->kv_class) == RS_GGUF_STRING ? (int)rs_gguf_arr_n(g, r->kv_class) : 0;
    int64_t nh = 0, nd = 0, no = 0, ns = 0;
    r->ng_hash = arr_copy(g, "rsmoe.retrieval.ngram_hash", RS_GGUF_U64, &nh);
    r->ng_df = arr_copy(g, "rsmoe.retrieval.ngram_df", RS_GGUF_U32, &nd);
    r->img_off = arr_copy(g, "rsmoe.retrieval.img_off", RS_GGUF_I32, &no);
    r->img_sent = arr_copy(g, "rsmoe.retrieval.img_sent", RS_GGUF_I32, &ns);
    r->n_ngram = nh;
    r->keys = rs_gguf_find_tensor(g, "retrieval.keys");
    r->width = width;
    if (!bad && (r->k <= 0 || r->n_docs == 0)) bad = "rsmoe.retrieval.k / .n_docs";
    if (!bad && r->n_sent <= 0) bad = "rsmoe.retrieval.sentences";
    if (!bad && (!r->ng_hash || !r->ng_df || nh != nd)) bad = "rsmoe.retrieval.ngram_hash / .ngram_df";
    if (!bad && (!r->keys || (r->keys->type != RS_F32 && r->keys->type != RS_Q8_0) || r->keys->ne[0] != width || r->keys->ndim != 2))
        bad = "retrieval.keys";
    if (!bad) {
        r->n_img = (int)r->keys->ne[1];
        r->mean = f32_tensor(g, "retrieval.mean", width, 0);
        r->istd = f32_tensor(g, "retrieval.istd", width, 0);
        if (!r->mean || !r->istd) bad = "retrieval.mean / .istd";
    }
    if (!bad && r->n_class > 0) {
        r->probe_w = f32_tensor(g, "retrieval.probe_w", width, r->n_class);
        r->probe_b = f32_tensor(g, "retrieval.probe_b", r->n_class, 0);
        r->keys_p = f32_tensor(g, "retrieval.keys_p", r->n_class, r->n_img);
        if (!r->probe_w || !r->probe_b || !r->keys_p) bad = "retrieval.probe_w / .probe_b / .keys_p";
    }
    if (!bad) {
        if (!r->img_off || !r->img_sent || no != r->n_img + 1) bad = "rsmoe.retrieval.img_off / .img_sent";
        for (int j = 0; j < r->n_img && !bad; j++)
            if (r->img_off[j] < 0 || r->img_off[j] > r->img_off[j + 1] || r->img_off[j + 1] > ns) bad = "rsmoe.retrieval.img_off";
        for (int64_t i = 0; i < ns && !bad; i++)
            if (r->img_sent[i] < 0 || r->img_sent[i] >= r->n_sent) bad = "rsmoe.retrieval.img_sent";
    }
    for (int64_t i = 1; !bad && i < r->n_ngram; i++)
        if (r->ng_hash[i - 1] >= r->ng_hash[i]) bad = "rsmoe.retrieval.ngram_hash (not sorted)";
    if (bad) {
        rs_retrieval_free(r);
        return rs_error(RSMOE_ERR_FORMAT, "%s: the retrieval index is damaged (%s)", rs_gguf_path(g), bad);
    }
    *present = true;
    return RSMOE_OK;
}

const char *rs_retrieval_class(const rs_retrieval *r, int i, size_t *len) {
    if (i < 0 || i >= r->n_class) { if (len) *len = 0; return ""; }
    return rs_gguf_arr_str(r->g, r->kv_class, i, len);
}

/* sentence i of the index as written (raw: malloc'd copy) or normalised (norm: malloc'd) */
static char *sentence(const rs_retrieval *r, int i, bool norm) {
    size_t len;
    const char *s = rs_gguf_arr_str(r->g, r->kv_sent, i, &len);
    char *c = malloc(len + 1);
    if (!c) return NULL;
    memcpy(c, s, len);
    c[len] = 0;
    if (norm) rs_retrieval_words(c, c, len + 1);
    return c;
}

rsmoe_status rs_retrieval_select(const rs_retrieval *r, const float *tokens, int n_tok,
                                 const char *const *proposals, int n_prop, int k, rs_pool *pool,
                                 rs_retrieval_pick *out) {
    memset(out, 0, sizeof *out);
    out->proposal = -1;
    out->scene = -1;
    if (k <= 0) k = r->k;
    if (k > r->n_img) k = r->n_img;
    const int W = r->width, C = r->n_class, N = r->n_img;
    float *x = malloc(sizeof(float) * (size_t)(2 * W + C + N + 2 * k));
    int *nb = malloc(sizeof(int) * (size_t)k);
    if (!x || !nb) { free(x); free(nb); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
    float *u = x + W, *p = u + W, *sims = p + C, *best = sims + N;
    /* pooled, standardised (x), unit (u) */
    for (int c = 0; c < W; c++) {
        double s = 0;
        for (int t = 0; t < n_tok; t++) s += tokens[(size_t)t * W + c];
        x[c] = (float)((s / (n_tok > 0 ? n_tok : 1) - r->mean[c]) * r->istd[c]);
    }
    double nn = 0;
    for (int c = 0; c < W; c++) nn += (double)x[c] * x[c];
    float inv = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.f;
    for (int c = 0; c < W; c++) u[c] = x[c] * inv;
    if (C > 0) {
        for (int i = 0; i < C; i++) {
            double z = r->probe_b[i];
            for (int c = 0; c < W; c++) z += (double)r->probe_w[(size_t)i * W + c] * x[c];
            p[i] = (float)z;
        }
        out->scene = rs_retrieval_softmax(p, C);
        out->scene_prob = p[out->scene];
    }
    if (n_prop < 0) { free(x); free(nb); return RSMOE_OK; }   /* the scene only */
    rs_tlinear(r->keys, NULL, u, sims, 1, pool);
    if (C > 0) {
        double pn = 0;
        for (int i = 0; i < C; i++) pn += (double)p[i] * p[i];
        float pi = (float)(1.0 / sqrt(pn));
        float g2 = r->gamma * r->gamma;
        for (int i = 0; i < C; i++) p[i] *= pi;
        for (int j = 0; j < N; j++) {
            double d = 0;
            for (int i = 0; i < C; i++) d += (double)p[i] * r->keys_p[(size_t)j * C + i];
            sims[j] = (float)((sims[j] + g2 * d) / (1.0 + g2));
        }
    }
    /* the k most similar (descending) */
    int nk = 0;
    for (int j = 0; j < N; j++) {
        if (nk == k && sims[j] <= best[k - 1]) continue;
        int pos = nk < k ? nk++ : k - 1;
        while (pos > 0 && best[pos - 1] < sims[j]) { best[pos] = best[pos - 1]; nb[pos] = nb[pos - 1]; pos--; }
        best[pos] = sims[j];
        nb[pos] = j;
    }
    out->n_neighbours = nk;
    for (int i = 0; i < nk && i < 8; i++) out->first[i] = nb[i];
    out->top_sim = nk ? best[0] : 0.f;
    /* lent sentences (distinct ids, weights summed), then candidates */
    int max_lent = 0;
    for (int i = 0; i < nk; i++) max_lent += r->img_off[nb[i] + 1] - r->img_off[nb[i]];
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(max_lent + 1));
    float *w = malloc(sizeof(float) * (size_t)(max_lent + 1));
    char **txt = calloc((size_t)(max_lent + n_prop + 1), sizeof(char *));
    bool *isp = calloc((size_t)(max_lent + n_prop + 1), sizeof(bool));
    int *prop_of = malloc(sizeof(int) * (size_t)(max_lent + n_prop + 1));
    rsmoe_status st = RSMOE_OK;
    int nl = 0, nc = 0;
    if (!ids || !w || !txt || !isp || !prop_of) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < nk; i++) {
        float wt = best[i] > 0 ? best[i] : 0.f;
        for (int q = r->img_off[nb[i]]; q < r->img_off[nb[i] + 1]; q++) {
            int s = r->img_sent[q], l = 0;
            while (l < nl && ids[l] != s) l++;
            if (l == nl) {
                if (!(txt[nl] = sentence(r, s, true))) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
                ids[nl] = s;
                w[nl] = 0;
                prop_of[nl] = -1;
                nl++;
            }
            w[l] += wt;
        }
    }
    nc = nl;
    for (int e = 0; e < n_prop; e++) {
        if (!proposals[e]) continue;
        char norm[1024];
        rs_retrieval_words(proposals[e], norm, sizeof norm);
        if (!norm[0]) continue;
        int l = 0;
        while (l < nc && strcmp(txt[l], norm)) l++;
        if (l == nc) {
            if (!(txt[nc] = strdup(norm))) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
            prop_of[nc++] = e;
        } else if (prop_of[l] < 0) prop_of[l] = e;
        isp[l] = true;
    }
    int win = rs_consensus_choose((const char *const *)txt, isp, nc, w, nl, r->bonus, r->ng_hash, r->ng_df,
                                  r->n_ngram, r->n_docs);
    if (win < 0) { st = nc ? rs_error(RSMOE_ERR_NOMEM, "out of memory") : rs_error(RSMOE_ERR_INVALID_ARG, "retrieval: no candidate sentence"); goto done; }
    out->proposal = prop_of[win];
    out->text = out->proposal >= 0 ? strdup(proposals[out->proposal]) : sentence(r, ids[win], false);
    if (!out->text) st = rs_error(RSMOE_ERR_NOMEM, "out of memory");
done:
    for (int i = 0; txt && i < nc; i++) free(txt[i]);
    free(txt);
    free(isp);
    free(prop_of);
    free(ids);
    free(w);
    free(x);
    free(nb);
    return st;
}
