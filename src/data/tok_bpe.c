/* tok_bpe.c - byte-level BPE (GPT-2, Llama-3 style) and its pre-tokenizers.
 *
 * The text is split into words by the pre-tokenizer (the GPT-2 or Llama-3 regex, written out
 * by hand as llama.cpp does, over Unicode general categories). Each word's bytes start as one
 * symbol each (the byte's GPT-2 "bytes_to_unicode" character token); the adjacent pair with
 * the lowest merge rank is merged first (ties: leftmost), until no adjacent pair has a merge.
 * Llama-3 vocabularies emit a word that is itself a token directly ("ignore_merges").
 * Invalid UTF-8 is classified as U+FFFD but its bytes are kept, so any byte string encodes
 * and decodes back exactly. */
#include "data/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- pre-tokenizers */
typedef struct {
    const uint32_t *cp;
    const uint8_t *cat;
    int64_t m;
} cps_t;

#define F_LETTER 1
#define F_NUMBER 2
#define F_SPACE 4
#define F_ANY 8   /* an assigned code point (llama.cpp's non-empty flags) */

static inline unsigned flags_at(const cps_t *c, int64_t i) {
    if (i < 0 || i >= c->m) return 0;
    unsigned f = 0;
    int k = c->cat[i];
    if (rs_uni_is_letter(k)) f |= F_LETTER;
    if (rs_uni_is_number(k)) f |= F_NUMBER;
    if (rs_uni_is_space(c->cp[i])) f |= F_SPACE;
    if (k != RS_UC_CN || (f & F_SPACE)) f |= F_ANY;
    return f;
}

static inline uint32_t cp_at(const cps_t *c, int64_t i) {
    return i >= 0 && i < c->m ? c->cp[i] : 0xFFFFFFFFu;
}

static inline uint32_t lower1(uint32_t cp) {
    uint32_t o[4];
    rs_uni_lower(cp, o);
    return o[0];
}

/* splits code points [0, m) into words; emits [start, end) in code point indices */
#define EMIT(end_) do { int64_t e_ = (end_); \
        if (e_ > start) { st = fn(ctx, offs[start], offs[e_]); if (st) goto done; } \
        start = e_; pos = e_; } while (0)

rsmoe_status rs_tok_pretokenize(rs_tok_pre pre, const char *text, size_t len,
                                rs_tok_word_fn fn, void *ctx) {
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    size_t *offs = malloc((len + 1) * sizeof *offs);
    uint8_t *cat = malloc(len + 1);
    rsmoe_status st = RSMOE_OK;
    if (!cp || !offs || !cat) {
        st = rs_error(RSMOE_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
        goto done;
    }
    int64_t m = 0;
    for (size_t i = 0; i < len;) {
        int l;
        cp[m] = rs_utf8_next((const unsigned char *)text + i, len - i, &l);
        cat[m] = (uint8_t)rs_uni_cat(cp[m]);
        offs[m++] = i;
        i += (size_t)l;
    }
    offs[m] = len;
    cps_t c = {cp, cat, m};
    int64_t pos = 0, start = 0;
    while (pos < m) {
        uint32_t cpt = cp[pos];
        unsigned flags = flags_at(&c, pos);
        if (pre == RS_TOK_PRE_GPT2) {
            /* 's|'t|'re|'ve|'m|'ll|'d */
            if (cpt == '\'' && pos + 1 < m) {
                uint32_t n1 = cp[pos + 1];
                if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') { EMIT(pos + 2); continue; }
                if (pos + 2 < m) {
                    uint32_t n2 = cp[pos + 2];
                    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                        EMIT(pos + 3);
                        continue;
                    }
                }
            }
            unsigned f2 = cpt == ' ' ? flags_at(&c, pos + 1) : flags;
            if (f2 & F_LETTER) {                    /*  ?\p{L}+ */
                pos += cpt == ' ';
                while (flags_at(&c, pos) & F_LETTER) pos++;
                EMIT(pos);
                continue;
            }
            if (f2 & F_NUMBER) {                    /*  ?\p{N}+ */
                pos += cpt == ' ';
                while (flags_at(&c, pos) & F_NUMBER) pos++;
                EMIT(pos);
                continue;
            }
            if (!(f2 & (F_SPACE | F_LETTER | F_NUMBER)) && (f2 & F_ANY)) {  /*  ?[^\s\p{L}\p{N}]+ */
                pos += cpt == ' ';
                for (;;) {
                    unsigned f = flags_at(&c, pos);
                    if ((f & (F_SPACE | F_LETTER | F_NUMBER)) || !(f & F_ANY)) break;
                    pos++;
                }
                EMIT(pos);
                continue;
            }
            int64_t nws = 0;
            while (flags_at(&c, pos + nws) & F_SPACE) nws++;
            if (nws > 1 && pos + nws < m) { EMIT(pos + nws - 1); continue; }  /* \s+(?!\S) */
            if (nws > 0) { EMIT(pos + nws); continue; }                       /* \s+ */
            EMIT(pos + 1);
        } else {
            /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
            if (cpt == '\'' && pos + 1 < m) {
                uint32_t n1 = lower1(cp[pos + 1]);
                if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') { EMIT(pos + 2); continue; }
                if (pos + 2 < m) {
                    uint32_t n2 = lower1(cp[pos + 2]);
                    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                        EMIT(pos + 3);
                        continue;
                    }
                }
            }
            /* [^\r\n\p{L}\p{N}]?\p{L}+ */
            if (!(cpt == '\r' || cpt == '\n' || (flags & F_NUMBER))) {
                if ((flags & F_LETTER) || (flags_at(&c, pos + 1) & F_LETTER)) {
                    pos++;
                    while (flags_at(&c, pos) & F_LETTER) pos++;
                    EMIT(pos);
                    continue;
                }
            }
            if (flags & F_NUMBER) {                 /* \p{N}{1,3} */
                int64_t ini = pos;
                while (flags_at(&c, pos) & F_NUMBER) {
                    if (++pos - ini >= 3) { EMIT(pos); ini = pos; }
                }
                EMIT(pos);
                continue;
            }
            unsigned f2 = cpt == ' ' ? flags_at(&c, pos + 1) : flags;
            if (!(f2 & (F_SPACE | F_LETTER | F_NUMBER)) && (flags & F_ANY)) { /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
                pos += cpt == ' ';
                for (;;) {
                    unsigned f = flags_at(&c, pos);
                    if ((f & (F_SPACE | F_LETTER | F_NUMBER)) || !(f & F_ANY)) break;
                    pos++;
                }
                while (cp_at(&c, pos) == '\r' || cp_at(&c, pos) == '\n') pos++;
                EMIT(pos);
                continue;
            }
            int64_t nws = 0, last_rn = 0;
            while (flags_at(&c, pos + nws) & F_SPACE) {
                uint32_t c2 = cp[pos + nws];
                if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
                nws++;
            }
            if (last_rn > 0) { EMIT(last_rn); continue; }                     /* \s*[\r\n]+ */
            if (nws > 1 && pos + nws < m) { EMIT(pos + nws - 1); continue; }  /* \s+(?!\S) */
            if (nws > 0) { EMIT(pos + nws); continue; }                       /* \s+ */
            EMIT(pos + 1);
        }
    }
done:
    free(cp);
    free(offs);
    free(cat);
    return st;
}

/* ---------------------------------------------------------------- BPE */
static void add_pair(const rs_tokenizer *t, rs_tok_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    int32_t rank = rs_tok_merge_rank(t, w->sym[l].id, w->sym[r].id);
    if (rank < 0) return;
    rs_tok_heap_push(w, (rs_tok_bigram){(double)rank, l, r, w->sym[l].n + w->sym[r].n});
}

void rs_tok_bpe_word(const rs_tokenizer *t, rs_tok_work *w, const unsigned char *word,
                     size_t n, rs_tok_out *o) {
    if (t->pre == RS_TOK_PRE_LLAMA3) {            /* ignore_merges: whole word first */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += (size_t)rs_utf8_put(rs_tok_byte_cp(word[i]), w->buf + k);
        int32_t id = rs_tok_find(t, w->buf, k);
        if (id >= 0) { rs_tok_emit(o, id); return; }
    }
    int32_t ns = (int32_t)n;
    for (int32_t i = 0; i < ns; i++)
        w->sym[i] = (rs_tok_sym){i - 1, i + 1 < ns ? i + 1 : -1, (uint32_t)i, 1, t->byte_tok[word[i]]};
    w->n_heap = 0;
    for (int32_t i = 1; i < ns; i++) add_pair(t, w, i - 1, i);
    while (w->n_heap) {
        rs_tok_bigram b = rs_tok_heap_pop(w);
        rs_tok_sym *L = &w->sym[b.left], *R = &w->sym[b.right];
        if (!L->n || !R->n || L->n + R->n != b.size) continue;   /* outdated */
        L->id = t->merges[(int32_t)b.key].res;
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) w->sym[R->next].prev = b.left;
        add_pair(t, w, L->prev, b.left);
        add_pair(t, w, b.left, L->next);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = w->sym[i].next) {
        if (w->sym[i].id >= 0) rs_tok_emit(o, w->sym[i].id);
        else if (t->unk >= 0) rs_tok_emit(o, t->unk);
    }
}

typedef struct {
    const rs_tokenizer *t;
    const char *text;
    rs_tok_work w;
    rs_tok_out *o;
} bpe_ctx;

static rsmoe_status bpe_on_word(void *ctx, size_t begin, size_t end) {
    bpe_ctx *c = ctx;
    rs_tok_bpe_word(c->t, &c->w, (const unsigned char *)c->text + begin, end - begin, c->o);
    return RSMOE_OK;
}

rsmoe_status rs_tok_encode_bpe(const rs_tokenizer *t, const char *text, size_t len, rs_tok_out *o) {
    bpe_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.text = text;
    c.o = o;
    rsmoe_status st = rs_tok_work_reserve(&c.w, len + 1, 2 * len + 4);
    if (!st) st = rs_tok_pretokenize(t->pre, text, len, bpe_on_word, &c);
    rs_tok_work_free(&c.w);
    return st;
}
