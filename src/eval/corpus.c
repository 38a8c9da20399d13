/* corpus.c - tokenised caption corpus: words interned to ids (open-addressing hash). */
#include "eval/eval_internal.h"
#include "core/core.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct rs_evocab {
    char **words;        /* [n] */
    size_t n, cap;
    int32_t *slots;      /* [nslots], -1 empty */
    size_t nslots;
};

uint64_t rs_eval_hash(const void *p, size_t n, uint64_t h) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ULL; }
    return h;
}

rs_evocab *rs_evocab_new(void) {
    rs_evocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->nslots = 1024;
    v->slots = malloc(v->nslots * sizeof *v->slots);
    if (!v->slots) { free(v); return NULL; }
    memset(v->slots, 0xff, v->nslots * sizeof *v->slots);
    return v;
}

void rs_evocab_free(rs_evocab *v) {
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) free(v->words[i]);
    free(v->words);
    free(v->slots);
    free(v);
}

static bool vocab_grow(rs_evocab *v) {
    size_t ns = v->nslots * 2;
    int32_t *s = malloc(ns * sizeof *s);
    if (!s) return false;
    memset(s, 0xff, ns * sizeof *s);
    for (size_t i = 0; i < v->n; i++) {
        uint64_t h = rs_eval_hash(v->words[i], strlen(v->words[i]), 1469598103934665603ULL);
        size_t k = (size_t)h & (ns - 1);
        while (s[k] >= 0) k = (k + 1) & (ns - 1);
        s[k] = (int32_t)i;
    }
    free(v->slots);
    v->slots = s;
    v->nslots = ns;
    return true;
}

/* id of word (len bytes), added if new when add; -1 if absent (or on OOM, error recorded
 * and *oom set). */
int32_t rs_evocab_lookup(rs_evocab *v, const char *w, size_t len, bool add, bool *oom) {
    uint64_t h = rs_eval_hash(w, len, 1469598103934665603ULL);
    size_t k = (size_t)h & (v->nslots - 1);
    while (v->slots[k] >= 0) {
        const char *x = v->words[v->slots[k]];
        if (strlen(x) == len && !memcmp(x, w, len)) return v->slots[k];
        k = (k + 1) & (v->nslots - 1);
    }
    if (!add) return -1;
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 256;
        char **t = realloc(v->words, nc * sizeof *t);
        if (!t) { *oom = true; return -1; }
        v->words = t;
        v->cap = nc;
    }
    char *c = malloc(len + 1);
    if (!c) { *oom = true; return -1; }
    memcpy(c, w, len);
    c[len] = 0;
    v->words[v->n] = c;
    v->slots[k] = (int32_t)v->n;
    v->n++;
    if (v->n * 2 > v->nslots && !vocab_grow(v)) { *oom = true; return -1; }
    return (int32_t)(v->n - 1);
}

const char *rs_evocab_word(const rs_evocab *v, int32_t id) {
    return (v && id >= 0 && (size_t)id < v->n) ? v->words[id] : NULL;
}
size_t rs_evocab_size(const rs_evocab *v) { return v ? v->n : 0; }

static rsmoe_status tokens_of(rs_evocab *v, const char *s, rs_toks *t) {
    t->w = NULL;
    t->n = 0;
    if (!s) return RSMOE_OK;
    size_t cnt = 0;
    for (const char *p = s; *p;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        cnt++;
        while (*p && !isspace((unsigned char)*p)) p++;
    }
    if (!cnt) return RSMOE_OK;
    t->w = malloc(cnt * sizeof *t->w);
    if (!t->w) return rs_error(RSMOE_ERR_NOMEM, "metrics: out of memory");
    bool oom = false;
    for (const char *p = s; *p;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *b = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        int32_t id = rs_evocab_lookup(v, b, (size_t)(p - b), true, &oom);
        if (oom) return rs_error(RSMOE_ERR_NOMEM, "metrics: out of memory");
        t->w[t->n++] = id;
    }
    return RSMOE_OK;
}

rsmoe_status rs_tok_corpus_build(rs_tok_corpus *c, size_t n_img, const char *const *hyps,
                                 const char *const *const *refs, const size_t *nrefs) {
    memset(c, 0, sizeof *c);
    if (!n_img) return rs_error(RSMOE_ERR_INVALID_ARG, "metrics: no images to score");
    if (!hyps || !refs || !nrefs) return rs_error(RSMOE_ERR_INVALID_ARG, "metrics: NULL input");
    for (size_t i = 0; i < n_img; i++)
        if (nrefs[i] < 1 || !refs[i])
            return rs_error(RSMOE_ERR_INVALID_ARG, "metrics: image %zu has no reference", i);
    c->n_img = n_img;
    c->vocab = rs_evocab_new();
    c->hyp = calloc(n_img, sizeof *c->hyp);
    c->refs = calloc(n_img, sizeof *c->refs);
    c->nrefs = calloc(n_img, sizeof *c->nrefs);
    if (!c->vocab || !c->hyp || !c->refs || !c->nrefs) goto oom;
    for (size_t i = 0; i < n_img; i++) {
        c->refs[i] = calloc(nrefs[i], sizeof **c->refs);
        if (!c->refs[i]) goto oom;
        c->nrefs[i] = nrefs[i];
        rsmoe_status st = tokens_of(c->vocab, hyps[i], &c->hyp[i]);
        for (size_t j = 0; !st && j < nrefs[i]; j++) st = tokens_of(c->vocab, refs[i][j], &c->refs[i][j]);
        if (st) { rs_tok_corpus_free(c); return st; }
    }
    return RSMOE_OK;
oom:
    rs_tok_corpus_free(c);
    return rs_error(RSMOE_ERR_NOMEM, "metrics: out of memory");
}

void rs_tok_corpus_free(rs_tok_corpus *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_img; i++) {
        if (c->hyp) free(c->hyp[i].w);
        if (c->refs && c->refs[i]) {
            for (size_t j = 0; j < c->nrefs[i]; j++) free(c->refs[i][j].w);
            free(c->refs[i]);
        }
    }
    free(c->hyp);
    free(c->refs);
    free(c->nrefs);
    rs_evocab_free(c->vocab);
    memset(c, 0, sizeof *c);
}
