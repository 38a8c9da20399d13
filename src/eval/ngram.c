/* ngram.c - n-gram interning shared by BLEU and CIDEr-D. */
#include "eval/eval_internal.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t key[5];      /* n, w0..w3 (unused = -1) */
} ngkey;

typedef struct {
    ngkey *keys;
    int32_t *slots;
    size_t n, cap, nslots;
} ngtab;

static uint64_t key_hash(const ngkey *k) { return rs_eval_hash(k->key, sizeof k->key, 1469598103934665603ULL); }

static bool tab_grow(ngtab *t) {
    size_t ns = t->nslots ? t->nslots * 2 : 4096;
    int32_t *s = malloc(ns * sizeof *s);
    if (!s) return false;
    memset(s, 0xff, ns * sizeof *s);
    for (size_t i = 0; i < t->n; i++) {
        size_t k = (size_t)key_hash(&t->keys[i]) & (ns - 1);
        while (s[k] >= 0) k = (k + 1) & (ns - 1);
        s[k] = (int32_t)i;
    }
    free(t->slots);
    t->slots = s;
    t->nslots = ns;
    return true;
}

static int32_t tab_id(ngtab *t, const ngkey *key) {
    if ((t->n + 1) * 2 > t->nslots && !tab_grow(t)) return -1;
    size_t k = (size_t)key_hash(key) & (t->nslots - 1);
    while (t->slots[k] >= 0) {
        if (!memcmp(t->keys[t->slots[k]].key, key->key, sizeof key->key)) return t->slots[k];
        k = (k + 1) & (t->nslots - 1);
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 4096;
        ngkey *nk = realloc(t->keys, nc * sizeof *nk);
        if (!nk) return -1;
        t->keys = nk;
        t->cap = nc;
    }
    t->keys[t->n] = *key;
    t->slots[k] = (int32_t)t->n;
    return (int32_t)t->n++;
}

static int cmp_ng(const void *a, const void *b) {
    const rs_ng *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static rsmoe_status vec_of(ngtab *t, const rs_toks *s, rs_ngvec *v) {
    memset(v, 0, sizeof *v);
    for (int n = 1; n <= 4; n++) {
        int m = s->n - n + 1;
        if (m <= 0) continue;
        rs_ng *g = malloc((size_t)m * sizeof *g);
        if (!g) return rs_error(RSMOE_ERR_NOMEM, "metrics: out of memory");
        for (int i = 0; i < m; i++) {
            ngkey k;
            k.key[0] = n;
            for (int j = 0; j < 4; j++) k.key[1 + j] = j < n ? s->w[i + j] : -1;
            int32_t id = tab_id(t, &k);
            if (id < 0) { free(g); return rs_error(RSMOE_ERR_NOMEM, "metrics: out of memory"); }
            g[i].id = id;
            g[i].cnt = 1;
        }
        qsort(g, (size_t)m, sizeof *g, cmp_ng);
        int u = 0;
        for (int i = 0; i < m; i++) {
            if (u && g[u - 1].id == g[i].id) g[u - 1].cnt++;
            else g[u++] = g[i];
        }
        v->g[n - 1] = g;
        v->n[n - 1] = u;
    }
    return RSMOE_OK;
}

static void vec_free(rs_ngvec *v) {
    for (int n = 0; n < 4; n++) free(v->g[n]);
}

rsmoe_status rs_ngram_corpus_build(rs_ngram_corpus *g, const rs_tok_corpus *c) {
    memset(g, 0, sizeof *g);
    ngtab t = {0};
    g->n_img = c->n_img;
    g->nrefs = c->nrefs;
    g->hyp = calloc(c->n_img, sizeof *g->hyp);
    g->refs = calloc(c->n_img, sizeof *g->refs);
    rsmoe_status st = RSMOE_OK;
    if (!g->hyp || !g->refs) { st = rs_error(RSMOE_ERR_NOMEM, "metrics: out of memory"); goto done; }
    for (size_t i = 0; i < c->n_img && !st; i++) {
        g->refs[i] = calloc(c->nrefs[i], sizeof **g->refs);
        if (!g->refs[i]) { st = rs_error(RSMOE_ERR_NOMEM, "metrics: out of memory"); break; }
        st = vec_of(&t, &c->hyp[i], &g->hyp[i]);
        for (size_t j = 0; !st && j < c->nrefs[i]; j++) st = vec_of(&t, &c->refs[i][j], &g->refs[i][j]);
    }
    g->n_ngrams = t.n;
done:
    free(t.keys);
    free(t.slots);
    if (st) rs_ngram_corpus_free(g);
    return st;
}

void rs_ngram_corpus_free(rs_ngram_corpus *g) {
    for (size_t i = 0; i < g->n_img; i++) {
        if (g->hyp) vec_free(&g->hyp[i]);
        if (g->refs && g->refs[i]) {
            for (size_t j = 0; j < g->nrefs[i]; j++) vec_free(&g->refs[i][j]);
            free(g->refs[i]);
        }
    }
    free(g->hyp);
    free(g->refs);
    memset(g, 0, sizeof *g);
}
