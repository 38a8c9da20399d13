/* eval_internal.h - shared internals of src/eval (not part of the API). */
#ifndef RSMOE_EVAL_INTERNAL_H
#define RSMOE_EVAL_INTERNAL_H
#include "eval/eval.h"

uint64_t rs_eval_hash(const void *p, size_t n, uint64_t h);
int32_t rs_evocab_lookup(rs_evocab *v, const char *w, size_t len, bool add, bool *oom);
void rs_evocab_free(rs_evocab *v);
rs_evocab *rs_evocab_new(void);

/* n-grams (n = 1..4) of every caption, interned to global ids; each caption's n-grams of
 * order n as (id, count) pairs. */
typedef struct {
    int32_t id, cnt;
} rs_ng;

typedef struct {
    rs_ng *g[4];
    int n[4];      /* distinct n-grams per order */
} rs_ngvec;

typedef struct {
    size_t n_img, n_ngrams;
    rs_ngvec *hyp;       /* [n_img] */
    rs_ngvec **refs;     /* [n_img][nrefs[i]] */
    const size_t *nrefs;
} rs_ngram_corpus;

rsmoe_status rs_ngram_corpus_build(rs_ngram_corpus *g, const rs_tok_corpus *c);
void rs_ngram_corpus_free(rs_ngram_corpus *g);

#endif
