/* tok_train.c - training a byte-level BPE vocabulary (GPT-2 style) on a corpus.
 *
 * 1. Pre-tokenize every text (GPT-2 or Llama-3 regex) and count distinct words.
 * 2. Every word starts as its bytes: token 4 + byte (ids 0..3 are <unk> <s> </s> <pad>).
 * 3. Repeat until vocab_size tokens: take the adjacent pair with the highest count (summed
 *    over word occurrences); ties go to the smaller left id, then the smaller right id. If
 *    its count is below min_freq, stop. The pair becomes a merge (rank = merge order) and,
 *    unless its text is already a token, a new token. Merge it in every word that holds it
 *    (left to right, non-overlapping).
 * Pair counts are kept in a hash table and updated incrementally: only the words holding the
 * merged pair are visited (each pair keeps a list of the words it occurred in), and the best
 * pair comes from a max-heap with lazy deletion (an entry whose count is out of date is
 * re-queued with the current count when it surfaces). */
#include "data/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#define N_SPECIAL 4

rs_tok_train_opts rs_tok_train_opts_default(void) {
    rs_tok_train_opts o;
    memset(&o, 0, sizeof o);
    o.vocab_size = 4096;
    o.min_freq = 2;
    o.pre = RS_TOK_PRE_GPT2;
    return o;
}

/* growable arrays */
#define GROW(ptr, n, cap, need) (((need) <= (cap)) ? 1 : grow_((void **)&(ptr), &(cap), (need), sizeof *(ptr)))
static int grow_(void **p, size_t *cap, size_t need, size_t elem) {
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

typedef struct {
    int32_t *w;
    uint32_t n, cap;
} wlist;

typedef struct {
    int64_t count;
    int32_t a, b;
} hent;

typedef struct {
    /* words */
    char *wblob;
    size_t n_wblob, cap_wblob;
    size_t *woff;
    uint32_t *wlen;
    int64_t *wcnt;
    size_t n_words, cap_words, cap_woff, cap_wlen, cap_wcnt;
    uint32_t *whash;     /* word index + 1 */
    uint32_t whmask;
    /* symbol sequences of the words: seq[wseq[w] .. wseq[w] + wn[w]) */
    int32_t *seq;
    size_t *wseq;
    uint32_t *wn;
    uint32_t *stamp;
    /* tokens (GPT-2 alphabet texts) */
    char *tblob;
    size_t n_tblob, cap_tblob;
    size_t *toff, cap_toff;
    uint32_t *tlen;
    size_t cap_tlen;
    int32_t n_tok;
    uint32_t *thash;     /* id + 1; normal tokens only */
    uint32_t thmask;
    /* merges */
    rs_tok_merge *merges;
    size_t n_merges, cap_merges;
    /* pairs */
    uint64_t *pkey;      /* (a << 32 | b) + 1 */
    int64_t *pcount;
    wlist *pwords;
    uint32_t pmask, n_pairs;
    /* heap */
    hent *heap;
    size_t n_heap, cap_heap;
    /* touched pairs of one merge */
    uint32_t *touched;
    size_t n_touched, cap_touched;
} trainer;

static uint32_t h64(uint64_t k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ull; k ^= k >> 33;
    return (uint32_t)k;
}

/* ---------------------------------------------------------------- words */
static rsmoe_status word_grow_hash(trainer *T) {
    uint32_t cap = (T->whmask + 1) * 2;
    uint32_t *h = calloc(cap, sizeof *h);
    if (!h) return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory");
    for (size_t w = 0; w < T->n_words; w++) {
        uint32_t i = (uint32_t)rs_tok_hash(T->wblob + T->woff[w], T->wlen[w]) & (cap - 1);
        while (h[i]) i = (i + 1) & (cap - 1);
        h[i] = (uint32_t)w + 1;
    }
    free(T->whash);
    T->whash = h;
    T->whmask = cap - 1;
    return RSMOE_OK;
}

typedef struct { trainer *T; const char *text; } word_ctx;

static rsmoe_status on_word(void *ctx, size_t begin, size_t end) {
    word_ctx *c = ctx;
    trainer *T = c->T;
    const char *s = c->text + begin;
    size_t n = end - begin;
    if (n > UINT32_MAX / 2) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer train: word too long");
    uint32_t i = (uint32_t)rs_tok_hash(s, n) & T->whmask;
    for (;;) {
        uint32_t v = T->whash[i];
        if (!v) break;
        uint32_t w = v - 1;
        if (T->wlen[w] == n && !memcmp(T->wblob + T->woff[w], s, n)) { T->wcnt[w]++; return RSMOE_OK; }
        i = (i + 1) & T->whmask;
    }
    size_t w = T->n_words;
    if (!GROW(T->wblob, n, T->cap_wblob, T->n_wblob + n + 1) || !GROW(T->woff, w, T->cap_woff, w + 1) ||
        !GROW(T->wlen, w, T->cap_wlen, w + 1) || !GROW(T->wcnt, w, T->cap_wcnt, w + 1) || w >= INT32_MAX - 1)
        return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory for words");
    memcpy(T->wblob + T->n_wblob, s, n);
    T->woff[w] = T->n_wblob;
    T->wlen[w] = (uint32_t)n;
    T->wcnt[w] = 1;
    T->n_wblob += n;
    T->n_words++;
    T->whash[i] = (uint32_t)w + 1;
    if (T->n_words * 2 > T->whmask) return word_grow_hash(T);
    return RSMOE_OK;
}

/* ---------------------------------------------------------------- tokens */
static rsmoe_status tok_add(trainer *T, const char *s, size_t n, bool hashed, int32_t *id) {
    int32_t k = T->n_tok;
    if (!GROW(T->tblob, 0, T->cap_tblob, T->n_tblob + n + 1) || !GROW(T->toff, 0, T->cap_toff, (size_t)k + 1) ||
        !GROW(T->tlen, 0, T->cap_tlen, (size_t)k + 1))
        return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory for tokens");
    memcpy(T->tblob + T->n_tblob, s, n);
    T->tblob[T->n_tblob + n] = 0;
    T->toff[k] = T->n_tblob;
    T->tlen[k] = (uint32_t)n;
    T->n_tblob += n + 1;
    T->n_tok++;
    if (hashed) {
        uint32_t i = (uint32_t)rs_tok_hash(s, n) & T->thmask;
        while (T->thash[i]) i = (i + 1) & T->thmask;
        T->thash[i] = (uint32_t)k + 1;
    }
    *id = k;
    return RSMOE_OK;
}

static int32_t tok_find(const trainer *T, const char *s, size_t n) {
    uint32_t i = (uint32_t)rs_tok_hash(s, n) & T->thmask;
    for (;;) {
        uint32_t v = T->thash[i];
        if (!v) return -1;
        int32_t k = (int32_t)(v - 1);
        if (T->tlen[k] == n && !memcmp(T->tblob + T->toff[k], s, n)) return k;
        i = (i + 1) & T->thmask;
    }
}

/* ---------------------------------------------------------------- pairs, heap */
static rsmoe_status pair_grow(trainer *T) {
    uint32_t cap = T->pmask ? (T->pmask + 1) * 2 : 1024;
    uint64_t *k = calloc(cap, sizeof *k);
    int64_t *c = malloc((size_t)cap * sizeof *c);
    wlist *l = malloc((size_t)cap * sizeof *l);
    if (!k || !c || !l) { free(k); free(c); free(l); return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory for pairs"); }
    if (T->pkey) {
        for (uint32_t i = 0; i <= T->pmask; i++) {
            if (!T->pkey[i]) continue;
            uint32_t j = h64(T->pkey[i]) & (cap - 1);
            while (k[j]) j = (j + 1) & (cap - 1);
            k[j] = T->pkey[i];
            c[j] = T->pcount[i];
            l[j] = T->pwords[i];
        }
    }
    free(T->pkey); free(T->pcount); free(T->pwords);
    T->pkey = k; T->pcount = c; T->pwords = l;
    T->pmask = cap - 1;
    return RSMOE_OK;
}

/* slot of pair (a,b), created when absent; -1 on out of memory (error recorded) */
static int64_t pair_slot(trainer *T, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = h64(key) & T->pmask;
    while (T->pkey[i] && T->pkey[i] != key) i = (i + 1) & T->pmask;
    if (T->pkey[i]) return i;
    if ((T->n_pairs + 1) * 2 > T->pmask) {
        if (pair_grow(T)) return -1;
        return pair_slot(T, a, b);
    }
    T->pkey[i] = key;
    T->pcount[i] = 0;
    T->pwords[i] = (wlist){NULL, 0, 0};
    T->n_pairs++;
    return i;
}

static inline bool hent_better(const hent *x, const hent *y) {   /* x pops before y */
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static rsmoe_status heap_push(trainer *T, hent e) {
    if (!GROW(T->heap, 0, T->cap_heap, T->n_heap + 1)) return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory");
    size_t i = T->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hent_better(&e, &T->heap[p])) break;
        T->heap[i] = T->heap[p];
        i = p;
    }
    T->heap[i] = e;
    return RSMOE_OK;
}

static hent heap_pop(trainer *T) {
    hent top = T->heap[0], last = T->heap[--T->n_heap];
    size_t n = T->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hent_better(&T->heap[c + 1], &T->heap[c])) c++;
        if (!hent_better(&T->heap[c], &last)) break;
        T->heap[i] = T->heap[c];
        i = c;
    }
    if (n) T->heap[i] = last;
    return top;
}

/* adds delta to the count of every adjacent pair of word w; when adding, records w in the
 * pair's word list and the pair as touched */
static rsmoe_status word_pairs(trainer *T, size_t w, int64_t delta) {
    const int32_t *s = T->seq + T->wseq[w];
    for (uint32_t k = 1; k < T->wn[w]; k++) {
        int64_t i = pair_slot(T, s[k - 1], s[k]);
        if (i < 0) return RSMOE_ERR_NOMEM;
        T->pcount[i] += delta;
        if (delta > 0) {
            wlist *l = &T->pwords[i];
            if (!l->n || l->w[l->n - 1] != (int32_t)w) {
                if (l->n == l->cap) {
                    uint32_t c = l->cap ? l->cap * 2 : 4;
                    int32_t *q = realloc(l->w, c * sizeof *q);
                    if (!q) return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory");
                    l->w = q;
                    l->cap = c;
                }
                l->w[l->n++] = (int32_t)w;
            }
            if (!GROW(T->touched, 0, T->cap_touched, T->n_touched + 1))
                return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory");
            T->touched[T->n_touched++] = (uint32_t)i;
        }
    }
    return RSMOE_OK;
}

static void trainer_free(trainer *T) {
    free(T->wblob); free(T->woff); free(T->wlen); free(T->wcnt); free(T->whash);
    free(T->seq); free(T->wseq); free(T->wn); free(T->stamp);
    free(T->tblob); free(T->toff); free(T->tlen); free(T->thash); free(T->merges);
    if (T->pwords)
        for (uint32_t i = 0; i <= T->pmask; i++)
            if (T->pkey[i]) free(T->pwords[i].w);
    free(T->pkey); free(T->pcount); free(T->pwords); free(T->heap); free(T->touched);
}

static rsmoe_status train(trainer *T, const char *const *texts, int64_t n, const rs_tok_train_opts *o) {
    rsmoe_status st;
    /* 1. words */
    T->whmask = 1023;
    if (!(T->whash = calloc(T->whmask + 1, sizeof *T->whash))) return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (!texts[i]) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer train: text %lld is NULL", (long long)i);
        word_ctx c = {T, texts[i]};
        if ((st = rs_tok_pretokenize(o->pre, texts[i], strlen(texts[i]), on_word, &c))) return st;
    }
    /* 2. sequences and the initial tokens */
    size_t nw = T->n_words;
    T->seq = malloc((T->n_wblob ? T->n_wblob : 1) * sizeof *T->seq);
    T->wseq = malloc((nw ? nw : 1) * sizeof *T->wseq);
    T->wn = malloc((nw ? nw : 1) * sizeof *T->wn);
    T->stamp = calloc(nw ? nw : 1, sizeof *T->stamp);
    uint32_t tcap = 1024;
    while (tcap < (uint32_t)o->vocab_size * 2u) tcap *= 2;
    T->thash = calloc(tcap, sizeof *T->thash);
    T->thmask = tcap - 1;
    if (!T->seq || !T->wseq || !T->wn || !T->stamp || !T->thash) return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory");
    for (size_t w = 0; w < nw; w++) {
        T->wseq[w] = T->woff[w];
        T->wn[w] = T->wlen[w];
        for (uint32_t k = 0; k < T->wlen[w]; k++) T->seq[T->woff[w] + k] = N_SPECIAL + (unsigned char)T->wblob[T->woff[w] + k];
    }
    static const char *const specials[N_SPECIAL] = {"<unk>", "<s>", "</s>", "<pad>"};
    int32_t id;
    for (int i = 0; i < N_SPECIAL; i++)
        if ((st = tok_add(T, specials[i], strlen(specials[i]), false, &id))) return st;
    for (int b = 0; b < 256; b++) {
        char buf[4];
        int l = rs_utf8_put(rs_tok_byte_cp(b), buf);
        if ((st = tok_add(T, buf, (size_t)l, true, &id))) return st;
    }
    /* 3. initial pair counts */
    if ((st = pair_grow(T))) return st;
    for (size_t w = 0; w < nw; w++)
        if ((st = word_pairs(T, w, T->wcnt[w]))) return st;
    for (uint32_t i = 0; i <= T->pmask; i++)
        if (T->pkey[i] && T->pcount[i] > 0)
            if ((st = heap_push(T, (hent){T->pcount[i], (int32_t)((T->pkey[i] - 1) >> 32), (int32_t)(uint32_t)(T->pkey[i] - 1)})))
                return st;
    T->n_touched = 0;
    /* 4. merges */
    char *tmp = NULL;
    size_t cap_tmp = 0;
    uint32_t merge_no = 0;
    while (T->n_tok < o->vocab_size && T->n_heap) {
        hent e = heap_pop(T);
        int64_t slot = pair_slot(T, e.a, e.b);
        if (slot < 0) { free(tmp); return RSMOE_ERR_NOMEM; }
        int64_t cur = T->pcount[slot];
        if (cur != e.count) {
            if (cur > 0 && (st = heap_push(T, (hent){cur, e.a, e.b}))) { free(tmp); return st; }
            continue;
        }
        if (e.count < o->min_freq || e.count <= 0) break;
        /* the new token */
        size_t na = T->tlen[e.a], nb = T->tlen[e.b];
        if (!GROW(tmp, 0, cap_tmp, na + nb + 1)) return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory");
        memcpy(tmp, T->tblob + T->toff[e.a], na);
        memcpy(tmp + na, T->tblob + T->toff[e.b], nb);
        int32_t res = tok_find(T, tmp, na + nb);
        if (res < 0 && (st = tok_add(T, tmp, na + nb, true, &res))) { free(tmp); return st; }
        if (!GROW(T->merges, 0, T->cap_merges, T->n_merges + 1)) { free(tmp); return rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory"); }
        T->merges[T->n_merges++] = (rs_tok_merge){e.a, e.b, res};
        merge_no++;
        /* merge it in every word that holds it */
        T->n_touched = 0;
        for (uint32_t k = 0; k < T->pwords[slot].n; k++) {
            size_t w = (size_t)T->pwords[slot].w[k];
            if (T->stamp[w] == merge_no) continue;
            T->stamp[w] = merge_no;
            int32_t *s = T->seq + T->wseq[w];
            uint32_t m = T->wn[w], j;
            for (j = 1; j < m; j++)
                if (s[j - 1] == e.a && s[j] == e.b) break;
            if (j >= m) continue;                      /* no longer holds the pair */
            if ((st = word_pairs(T, w, -T->wcnt[w]))) { free(tmp); return st; }
            uint32_t r = 0;
            for (j = 0; j < m; j++) {
                if (j + 1 < m && s[j] == e.a && s[j + 1] == e.b) { s[r++] = res; j++; }
                else s[r++] = s[j];
            }
            T->wn[w] = r;
            if ((st = word_pairs(T, w, T->wcnt[w]))) { free(tmp); return st; }
            slot = pair_slot(T, e.a, e.b);             /* the table may have grown */
        }
        for (size_t k = 0; k < T->n_touched; k++) {
            uint32_t i = T->touched[k];
            if (T->pcount[i] > 0 &&
                (st = heap_push(T, (hent){T->pcount[i], (int32_t)((T->pkey[i] - 1) >> 32), (int32_t)(uint32_t)(T->pkey[i] - 1)})))
            { free(tmp); return st; }
        }
    }
    free(tmp);
    return RSMOE_OK;
}

rsmoe_status rs_tokenizer_train_bpe(const char *const *texts, int64_t n, const rs_tok_train_opts *opts,
                                    rs_tokenizer **out) {
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer train: NULL output");
    *out = NULL;
    rs_tok_train_opts o = opts ? *opts : rs_tok_train_opts_default();
    if (n < 0 || (n > 0 && !texts)) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer train: bad texts");
    if (o.vocab_size < N_SPECIAL + 256 || o.vocab_size > (1 << 24))
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer train: vocab size %d outside [%d, %d]",
                        (int)o.vocab_size, N_SPECIAL + 256, 1 << 24);
    if (o.min_freq < 1) o.min_freq = 1;
    if (o.pre != RS_TOK_PRE_GPT2 && o.pre != RS_TOK_PRE_LLAMA3)
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer train: unknown pre-tokenizer %d", (int)o.pre);
    trainer T;
    memset(&T, 0, sizeof T);
    rsmoe_status st = train(&T, texts, n, &o);
    if (st) { trainer_free(&T); return st; }
    /* build the tokenizer */
    const char **toks = malloc((size_t)T.n_tok * sizeof *toks);
    size_t *lens = malloc((size_t)T.n_tok * sizeof *lens);
    int32_t *types = malloc((size_t)T.n_tok * sizeof *types);
    char **mer = calloc(T.n_merges ? T.n_merges : 1, sizeof *mer);
    if (!toks || !lens || !types || !mer) { st = rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory"); goto done; }
    for (int32_t i = 0; i < T.n_tok; i++) {
        toks[i] = T.tblob + T.toff[i];
        lens[i] = T.tlen[i];
        types[i] = i < N_SPECIAL ? RS_TOKT_CONTROL : RS_TOKT_NORMAL;
    }
    for (size_t r = 0; r < T.n_merges; r++) {
        const rs_tok_merge *m = &T.merges[r];
        size_t na = T.tlen[m->a], nb = T.tlen[m->b];
        if (!(mer[r] = malloc(na + nb + 2))) { st = rs_error(RSMOE_ERR_NOMEM, "tokenizer train: out of memory"); goto done; }
        memcpy(mer[r], T.tblob + T.toff[m->a], na);
        mer[r][na] = ' ';
        memcpy(mer[r] + na + 1, T.tblob + T.toff[m->b], nb);
        mer[r][na + nb + 1] = 0;
    }
    rs_tok_vocab v = rs_tok_vocab_default(RS_TOK_BPE);
    v.n_tokens = T.n_tok;
    v.tokens = toks;
    v.token_lens = lens;
    v.types = types;
    v.n_merges = (int32_t)T.n_merges;
    v.merges = (const char *const *)mer;
    v.pre = o.pre;
    v.unk = 0; v.bos = 1; v.eos = 2; v.pad = 3;
    v.add_bos = o.add_bos;
    v.add_eos = o.add_eos;
    st = rs_tokenizer_build(&v, out);
done:
    if (mer)
        for (size_t r = 0; r < T.n_merges; r++) free(mer[r]);
    free(mer); free(toks); free(lens); free(types);
    trainer_free(&T);
    return st;
}
