/* tok_wordpiece.c - WordPiece (BERT uncased, the Q-Former's tokenizer).
 *
 * Normalisation and pre-tokenization follow Hugging Face's BertNormalizer +
 * BertPreTokenizer (the golden vectors come from it):
 *  - drop U+0000, U+FFFD and "other" code points (Cc, Cf, Cs, Co, Cn) except \t \n \r;
 *    White_Space code points separate words;
 *  - CJK ideographs become words of their own;
 *  - strip accents: canonical decomposition (NFD, without reordering), drop Mn marks;
 *    then lower case each code point;
 *  - punctuation (ASCII punctuation/symbols, or a P* category) is a word of its own.
 * Each word (more than 100 code points -> [UNK]) is split greedily into the longest vocabulary
 * pieces from the left; the first piece must be a word-initial one. The vocabulary uses
 * llama.cpp's phantom-space form ("▁word" word-initial, "ing" for BERT's "##ing"), so the word
 * is looked up as "▁" + word. If some position has no piece, the whole word is [UNK]. */
#include "data/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#define MAX_WORD_CHARS 100

typedef struct {
    const rs_tokenizer *t;
    rs_tok_out *o;
    char *buf;       /* "▁" + current word */
    size_t n, cap;   /* bytes used (3 = empty word) */
    int chars;
} wpm_ctx;

static bool is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool is_punct(uint32_t c, int cat) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
        return true;
    return rs_uni_is_punct(cat);
}

static void finish_word(wpm_ctx *w) {
    if (w->n <= 3) return;
    const rs_tokenizer *t = w->t;
    size_t mark = (size_t)w->o->n;
    bool ok = w->chars <= MAX_WORD_CHARS;
    for (size_t i = 0; ok && i < w->n;) {
        size_t end = w->n;
        if (end - i > t->max_len) end = i + t->max_len;
        int32_t id = -1;
        for (; end > i; end--) {
            if (end < w->n && ((unsigned char)w->buf[end] & 0xC0) == 0x80) continue;
            if ((id = rs_tok_find(t, w->buf + i, end - i)) >= 0) break;
        }
        if (id < 0) { ok = false; break; }
        rs_tok_emit(w->o, id);
        i = end;
    }
    if (!ok) {
        w->o->n = (int)mark;
        if (t->unk >= 0) rs_tok_emit(w->o, t->unk);
    }
    w->n = 3;
    w->chars = 0;
}

static bool append(wpm_ctx *w, uint32_t cp) {
    if (w->n + 4 > w->cap) {
        size_t c = w->cap * 2;
        char *b = realloc(w->buf, c);
        if (!b) return false;
        w->buf = b;
        w->cap = c;
    }
    w->n += (size_t)rs_utf8_put(cp, w->buf + w->n);
    w->chars++;
    return true;
}

rsmoe_status rs_tok_encode_wpm(const rs_tokenizer *t, const char *text, size_t len, rs_tok_out *o) {
    wpm_ctx w = {t, o, NULL, 3, 64, 0};
    w.buf = malloc(w.cap);
    if (!w.buf) return rs_error(RSMOE_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(w.buf, "\xe2\x96\x81", 3);
    for (size_t i = 0; i < len;) {
        int l;
        uint32_t cp = rs_utf8_next((const unsigned char *)text + i, len - i, &l);
        i += (size_t)l;
        int cat = rs_uni_cat(cp);
        if (cp == '\t' || cp == '\n' || cp == '\r' || rs_uni_is_space(cp)) { finish_word(&w); continue; }
        if (cp == 0 || cp == 0xFFFD || cat == RS_UC_CC || cat == RS_UC_CF || cat == RS_UC_CS ||
            cat == RS_UC_CO || cat == RS_UC_CN)
            continue;
        bool alone = is_chinese(cp);
        if (alone) finish_word(&w);
        uint32_t d[4], lo[4];
        int nd = rs_uni_nfd(cp, d);
        for (int k = 0; k < nd; k++) {
            int dc = rs_uni_cat(d[k]);
            if (dc == RS_UC_MN) continue;
            int nl = rs_uni_lower(d[k], lo);
            for (int j = 0; j < nl; j++) {
                bool p = is_punct(lo[j], rs_uni_cat(lo[j]));
                if (p) finish_word(&w);
                if (!append(&w, lo[j])) { free(w.buf); return rs_error(RSMOE_ERR_NOMEM, "tokenizer: out of memory"); }
                if (p) finish_word(&w);
            }
        }
        if (alone) finish_word(&w);
    }
    finish_word(&w);
    free(w.buf);
    return RSMOE_OK;
}
