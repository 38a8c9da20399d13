/* tok_spm.c - SentencePiece-style BPE (LLaMA / Vicuna vocabularies).
 *
 * The text gets a leading space (add_space_prefix), every ' ' becomes "▁" (U+2581), and the
 * result is split into UTF-8 characters. Adjacent symbols whose concatenation is a vocabulary
 * piece are merged, always the pair whose piece has the highest score first (ties: the
 * leftmost pair), until no pair is a piece. A final symbol that is not a piece (a character
 * outside the vocabulary) is written as its bytes' <0xXX> tokens (byte fallback), or <unk>
 * when the vocabulary has no byte tokens. This is the behaviour of SentencePiece's BPE
 * model and llama.cpp's llm_tokenizer_spm; invalid UTF-8 bytes are single symbols (so any
 * byte string decodes back exactly). */
#include "data/tokenizer_impl.h"

#include <string.h>

static void try_add(const rs_tokenizer *t, rs_tok_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    uint32_t size = w->sym[l].n + w->sym[r].n;
    int32_t id = rs_tok_find(t, w->buf + w->sym[l].pos, size);
    if (id < 0) return;
    rs_tok_heap_push(w, (rs_tok_bigram){-(double)t->score[id], l, r, size});
}

rsmoe_status rs_tok_encode_spm(const rs_tokenizer *t, const char *text, size_t len, rs_tok_out *o) {
    rs_tok_work w;
    memset(&w, 0, sizeof w);
    size_t cap = 3 * (len + 1);
    rsmoe_status st = rs_tok_work_reserve(&w, cap, cap);
    if (st) return st;
    /* escape: optional leading space, ' ' -> U+2581 */
    size_t n = 0;
    if (t->add_space_prefix) { memcpy(w.buf, "\xe2\x96\x81", 3); n = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(w.buf + n, "\xe2\x96\x81", 3); n += 3; }
        else w.buf[n++] = text[i];
    }
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        /* validated UTF-8 characters; every byte of an invalid sequence is a symbol of its
         * own (llama.cpp goes by the lead byte alone, which can swallow the "▁" after a
         * truncated sequence; for valid UTF-8 both agree) */
        int cl;
        rs_utf8_next((const unsigned char *)w.buf + i, n - i, &cl);
        size_t l = (size_t)cl;
        w.sym[ns] = (rs_tok_sym){ns - 1, -1, (uint32_t)i, (uint32_t)l, -1};
        if (ns > 0) w.sym[ns - 1].next = ns;
        ns++;
        i += l;
    }
    w.n_heap = 0;
    for (int32_t i = 1; i < ns; i++) try_add(t, &w, i - 1, i);
    while (w.n_heap) {
        rs_tok_bigram b = rs_tok_heap_pop(&w);
        rs_tok_sym *L = &w.sym[b.left], *R = &w.sym[b.right];
        if (!L->n || !R->n || L->n + R->n != b.size) continue;   /* outdated */
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) w.sym[R->next].prev = b.left;
        try_add(t, &w, L->prev, b.left);
        try_add(t, &w, b.left, L->next);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = w.sym[i].next) {
        const rs_tok_sym *s = &w.sym[i];
        int32_t id = rs_tok_find(t, w.buf + s->pos, s->n);
        if (id >= 0) { rs_tok_emit(o, id); continue; }
        for (uint32_t k = 0; k < s->n; k++) {
            int32_t bt = t->byte_tok[(unsigned char)w.buf[s->pos + k]];
            if (bt >= 0) rs_tok_emit(o, bt);
            else if (t->unk >= 0) { rs_tok_emit(o, t->unk); break; }
        }
    }
    rs_tok_work_free(&w);
    return RSMOE_OK;
}
