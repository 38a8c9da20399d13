/* tokenizer.c - the tokenizer object: building from a vocabulary, lookups, the merge-loop
 * workspace, encode dispatch, pieces and decoding. The per-kind algorithms live in
 * tok_spm.c, tok_bpe.c and tok_wordpiece.c; training in tok_train.c; GGUF in tok_gguf.c. */
#include "data/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rs_tok_vocab rs_tok_vocab_default(rs_tok_kind kind) {
    rs_tok_vocab v;
    memset(&v, 0, sizeof v);
    v.kind = kind;
    v.pre = RS_TOK_PRE_GPT2;
    v.bos = v.eos = v.unk = v.pad = v.sep = v.cls = v.mask = -1;
    v.add_space_prefix = true;
    if (kind == RS_TOK_SPM) v.add_bos = true;
    if (kind == RS_TOK_WPM) v.add_bos = v.add_eos = true;
    return v;
}

uint64_t rs_tok_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;                 /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t rs_tok_find(const rs_tokenizer *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)rs_tok_hash(s, n) & t->hmask;
    for (;;) {
        uint32_t v = t->hslot[i];
        if (!v) return -1;
        int32_t id = (int32_t)(v - 1);
        if (t->len[id] == n && !memcmp(t->blob + t->off[id], s, n)) return id;
        i = (i + 1) & t->hmask;
    }
}

static uint32_t mhash(uint64_t key) {
    key ^= key >> 33; key *= 0xff51afd7ed558ccdull; key ^= key >> 33;
    return (uint32_t)key;
}

int32_t rs_tok_merge_rank(const rs_tokenizer *t, int32_t a, int32_t b) {
    if (!t->mkey || a < 0 || b < 0) return -1;
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = mhash(key) & t->mmask;
    for (;;) {
        if (!t->mkey[i]) return -1;
        if (t->mkey[i] == key) return t->mrank[i];
        i = (i + 1) & t->mmask;
    }
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order. */
uint32_t rs_tok_byte_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
    return 256u + (uint32_t)k;
}

int rs_tok_cp_byte(uint32_t cp) {
    static int table[324];
    static int ready;   /* benign: every thread computes the same values */
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        int tmp[324];
        for (int i = 0; i < 324; i++) tmp[i] = -1;
        for (int b = 0; b < 256; b++) tmp[rs_tok_byte_cp(b)] = b;
        for (int i = 0; i < 324; i++) __atomic_store_n(&table[i], tmp[i], __ATOMIC_RELAXED);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return cp < 324 ? table[cp] : -1;
}

static uint32_t pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n) p <<= 1;
    return (uint32_t)p;
}

void rs_tokenizer_free(rs_tokenizer *t) {
    if (!t) return;
    free(t->blob); free(t->off); free(t->len); free(t->score); free(t->type); free(t->hslot);
    free(t->merges); free(t->mkey); free(t->mrank);
    free(t);
}

static rsmoe_status add_merges(rs_tokenizer *t, const rs_tok_vocab *v) {
    if (v->n_merges <= 0) return RSMOE_OK;
    if (!v->merges) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: %d merges but no merge strings", v->n_merges);
    uint32_t cap = pow2_at_least((uint64_t)v->n_merges * 2);
    t->merges = malloc((size_t)v->n_merges * sizeof *t->merges);
    t->mkey = calloc(cap, sizeof *t->mkey);
    t->mrank = malloc((size_t)cap * sizeof *t->mrank);
    char *tmp = malloc((size_t)t->max_len * 2 + 2);
    if (!t->merges || !t->mkey || !t->mrank || !tmp) {
        free(tmp);
        return rs_error(RSMOE_ERR_NOMEM, "tokenizer: out of memory for %d merges", v->n_merges);
    }
    t->mmask = cap - 1;
    for (int32_t r = 0; r < v->n_merges; r++) {
        const char *m = v->merges[r];
        if (!m) continue;
        size_t n = v->merge_lens ? v->merge_lens[r] : strlen(m);
        const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
        if (!sp) continue;
        size_t na = (size_t)(sp - m), nb = n - na - 1;
        if (na + nb > (size_t)t->max_len) continue;
        int32_t a = rs_tok_find(t, m, na), b = rs_tok_find(t, sp + 1, nb);
        memcpy(tmp, m, na);
        memcpy(tmp + na, sp + 1, nb);
        int32_t res = rs_tok_find(t, tmp, na + nb);
        if (a < 0 || b < 0 || res < 0) continue;  /* unusable merge: ignored (documented) */
        uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
        uint32_t i = mhash(key) & t->mmask;
        while (t->mkey[i] && t->mkey[i] != key) i = (i + 1) & t->mmask;
        if (t->mkey[i]) continue;                 /* a duplicate pair keeps its first rank */
        t->mkey[i] = key;
        t->mrank[i] = t->n_merges;
        t->merges[t->n_merges++] = (rs_tok_merge){a, b, res};
    }
    free(tmp);
    return RSMOE_OK;
}

rsmoe_status rs_tokenizer_build(const rs_tok_vocab *v, rs_tokenizer **out) {
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: NULL output");
    *out = NULL;
    if (!v) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: NULL vocabulary");
    if (v->kind != RS_TOK_SPM && v->kind != RS_TOK_BPE && v->kind != RS_TOK_WPM)
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: unknown kind %d", (int)v->kind);
    if (v->n_tokens <= 0 || !v->tokens || v->n_tokens > (1 << 30))
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: empty or oversized vocabulary (%d tokens)", (int)v->n_tokens);
    if (v->pre != RS_TOK_PRE_GPT2 && v->pre != RS_TOK_PRE_LLAMA3)
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: unknown pre-tokenizer %d", (int)v->pre);
    const int32_t sp[7] = {v->bos, v->eos, v->unk, v->pad, v->sep, v->cls, v->mask};
    static const char *const spn[7] = {"bos", "eos", "unk", "pad", "sep", "cls", "mask"};
    for (int i = 0; i < 7; i++)
        if (sp[i] < -1 || sp[i] >= v->n_tokens)
            return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: %s id %d outside the vocabulary of %d",
                            spn[i], (int)sp[i], (int)v->n_tokens);
    rs_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return rs_error(RSMOE_ERR_NOMEM, "tokenizer: out of memory");
    t->kind = v->kind;
    t->pre = v->pre;
    t->n = v->n_tokens;
    size_t total = 0;
    for (int32_t i = 0; i < t->n; i++) {
        if (!v->tokens[i]) { rs_tokenizer_free(t); return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: token %d is NULL", (int)i); }
        size_t n = v->token_lens ? v->token_lens[i] : strlen(v->tokens[i]);
        if (n > (1u << 20)) { rs_tokenizer_free(t); return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: token %d is %zu bytes long", (int)i, n); }
        total += n + 1;
    }
    if (total > UINT32_MAX) { rs_tokenizer_free(t); return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: token texts too large"); }
    uint32_t hcap = pow2_at_least((uint64_t)t->n * 2);
    t->blob = malloc(total ? total : 1);
    t->off = malloc((size_t)t->n * sizeof *t->off);
    t->len = malloc((size_t)t->n * sizeof *t->len);
    t->score = malloc((size_t)t->n * sizeof *t->score);
    t->type = malloc((size_t)t->n * sizeof *t->type);
    t->hslot = calloc(hcap, sizeof *t->hslot);
    if (!t->blob || !t->off || !t->len || !t->score || !t->type || !t->hslot) {
        rs_tokenizer_free(t);
        return rs_error(RSMOE_ERR_NOMEM, "tokenizer: out of memory for %d tokens", (int)v->n_tokens);
    }
    t->hmask = hcap - 1;
    size_t pos = 0;
    for (int32_t i = 0; i < t->n; i++) {
        size_t n = v->token_lens ? v->token_lens[i] : strlen(v->tokens[i]);
        memcpy(t->blob + pos, v->tokens[i], n);
        t->blob[pos + n] = 0;
        t->off[i] = (uint32_t)pos;
        t->len[i] = (uint32_t)n;
        pos += n + 1;
        if (n > t->max_len) t->max_len = (uint32_t)n;
        t->score[i] = v->scores ? v->scores[i] : 0.f;
        t->type[i] = v->types ? v->types[i] : RS_TOKT_NORMAL;
        /* text -> id; a duplicated text maps to its last id (as llama.cpp does) */
        uint32_t h = (uint32_t)rs_tok_hash(t->blob + t->off[i], n) & t->hmask;
        for (;;) {
            uint32_t s = t->hslot[h];
            if (!s) { t->hslot[h] = (uint32_t)i + 1; break; }
            int32_t j = (int32_t)(s - 1);
            if (t->len[j] == n && !memcmp(t->blob + t->off[j], t->blob + t->off[i], n)) {
                t->hslot[h] = (uint32_t)i + 1;
                break;
            }
            h = (h + 1) & t->hmask;
        }
    }
    t->bos = v->bos; t->eos = v->eos; t->unk = v->unk; t->pad = v->pad;
    t->sep = v->sep; t->cls = v->cls; t->mask = v->mask;
    t->add_bos = v->add_bos; t->add_eos = v->add_eos; t->add_space_prefix = v->add_space_prefix;
    if (t->kind == RS_TOK_WPM) {
        if (t->unk < 0) t->unk = rs_tok_find(t, "[UNK]", 5);
        if (t->cls < 0) t->cls = rs_tok_find(t, "[CLS]", 5);
        if (t->sep < 0) t->sep = rs_tok_find(t, "[SEP]", 5);
        if (t->bos < 0) t->bos = t->cls;
        if (t->eos < 0) t->eos = t->sep;
    }
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int n;
        if (t->kind == RS_TOK_SPM) n = snprintf(buf, sizeof buf, "<0x%02X>", b);
        else n = rs_utf8_put(rs_tok_byte_cp(b), buf);
        t->byte_tok[b] = rs_tok_find(t, buf, (size_t)n);
    }
    rsmoe_status st = t->kind == RS_TOK_BPE ? add_merges(t, v) : RSMOE_OK;
    if (st) { rs_tokenizer_free(t); return st; }
    *out = t;
    return RSMOE_OK;
}

rs_tok_kind rs_tokenizer_kind(const rs_tokenizer *t) { return t ? t->kind : (rs_tok_kind)0; }
int32_t rs_tokenizer_n_vocab(const rs_tokenizer *t) { return t ? t->n : 0; }
int32_t rs_tokenizer_bos(const rs_tokenizer *t) { return t ? t->bos : -1; }
int32_t rs_tokenizer_eos(const rs_tokenizer *t) { return t ? t->eos : -1; }
int32_t rs_tokenizer_pad(const rs_tokenizer *t) { return t ? t->pad : -1; }
int32_t rs_tokenizer_unk(const rs_tokenizer *t) { return t ? t->unk : -1; }
int32_t rs_tokenizer_n_merges(const rs_tokenizer *t) { return t ? t->n_merges : 0; }

int32_t rs_tokenizer_find(const rs_tokenizer *t, const char *text, size_t len) {
    return t && text ? rs_tok_find(t, text, len) : -1;
}

const char *rs_tokenizer_token_text(const rs_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n) return NULL;
    if (len) *len = t->len[id];
    return t->blob + t->off[id];
}

int rs_tokenizer_token_type(const rs_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n ? t->type[id] : -1;
}

/* ---------------------------------------------------------------- workspace, heap */
rsmoe_status rs_tok_work_reserve(rs_tok_work *w, size_t n_sym, size_t n_buf) {
    if (n_sym > w->cap_sym) {
        size_t c = n_sym + n_sym / 2 + 16;
        rs_tok_sym *s = realloc(w->sym, c * sizeof *s);
        rs_tok_bigram *h = realloc(w->heap, 3 * c * sizeof *h);
        if (s) w->sym = s;
        if (h) w->heap = h;
        if (!s || !h) return rs_error(RSMOE_ERR_NOMEM, "tokenizer: out of memory for %zu symbols", n_sym);
        w->cap_sym = c;
        w->cap_heap = 3 * c;
    }
    if (n_buf > w->cap_buf) {
        size_t c = n_buf + n_buf / 2 + 64;
        char *b = realloc(w->buf, c);
        if (!b) return rs_error(RSMOE_ERR_NOMEM, "tokenizer: out of memory for %zu bytes", n_buf);
        w->buf = b;
        w->cap_buf = c;
    }
    return RSMOE_OK;
}

void rs_tok_work_free(rs_tok_work *w) {
    free(w->sym); free(w->heap); free(w->buf);
    memset(w, 0, sizeof *w);
}

static inline bool bg_less(const rs_tok_bigram *x, const rs_tok_bigram *y) {
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}

/* the caller guarantees room: at most n-1 initial pairs + 2 per merge < 3 per symbol */
void rs_tok_heap_push(rs_tok_work *w, rs_tok_bigram b) {
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_less(&b, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = b;
}

rs_tok_bigram rs_tok_heap_pop(rs_tok_work *w) {
    rs_tok_bigram top = w->heap[0], last = w->heap[--w->n_heap];
    size_t n = w->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bg_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* ---------------------------------------------------------------- encode */
rsmoe_status rs_tokenizer_encode_n(const rs_tokenizer *t, const char *text, size_t len,
                                   bool add_special, int32_t *ids, int max, int *n) {
    if (n) *n = 0;
    if (!t || !n || (!text && len) || max < 0 || (!ids && max > 0))
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer encode: bad arguments");
    if (len > (size_t)1 << 30)
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer encode: text of %zu bytes is too long", len);
    rs_tok_out o = {ids, max, 0};
    if (add_special && t->add_bos && t->bos >= 0) rs_tok_emit(&o, t->bos);
    rsmoe_status st = RSMOE_OK;
    if (len) {
        switch (t->kind) {
        case RS_TOK_SPM: st = rs_tok_encode_spm(t, text, len, &o); break;
        case RS_TOK_BPE: st = rs_tok_encode_bpe(t, text, len, &o); break;
        case RS_TOK_WPM: st = rs_tok_encode_wpm(t, text, len, &o); break;
        }
    }
    if (st) return st;
    if (add_special && t->add_eos && t->eos >= 0) rs_tok_emit(&o, t->eos);
    *n = o.n;
    if (o.n > max)
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer encode: %d ids needed, the buffer holds %d", o.n, max);
    return RSMOE_OK;
}

rsmoe_status rs_tokenizer_encode(const rs_tokenizer *t, const char *text, bool add_special,
                                 int32_t *ids, int max, int *n) {
    if (!text) {
        if (n) *n = 0;
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer encode: NULL text");
    }
    return rs_tokenizer_encode_n(t, text, strlen(text), add_special, ids, max, n);
}

/* ---------------------------------------------------------------- pieces, decode */
static size_t put(char *out, size_t cap, size_t pos, const char *s, size_t n) {
    if (pos < cap) memcpy(out + pos, s, n <= cap - pos ? n : cap - pos);
    return pos + n;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int rs_tokenizer_piece(const rs_tokenizer *t, int32_t prev, int32_t id, char *out, size_t cap) {
    if (!t || id < 0 || id >= t->n || (!out && cap)) return -1;
    const char *s = t->blob + t->off[id];
    size_t n = t->len[id], pos = 0;
    int type = t->type[id];
    if (type == RS_TOKT_CONTROL) return 0;
    bool first = prev < 0 || prev >= t->n || t->type[prev] == RS_TOKT_CONTROL;
    if (type == RS_TOKT_BYTE && n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
        hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
        char b = (char)(hexval(s[3]) * 16 + hexval(s[4]));
        return (int)put(out, cap, 0, &b, 1);
    }
    if (type == RS_TOKT_UNKNOWN || type == RS_TOKT_USER_DEFINED || type == RS_TOKT_UNUSED)
        return (int)put(out, cap, 0, s, n);
    switch (t->kind) {
    case RS_TOK_SPM:
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
                if (!(first && t->add_space_prefix && i == 0)) pos = put(out, cap, pos, " ", 1);
                i += 3;
            } else {
                pos = put(out, cap, pos, s + i, 1);
                i++;
            }
        }
        break;
    case RS_TOK_BPE:
        for (size_t i = 0; i < n;) {
            int l;
            uint32_t cp = rs_utf8_next((const unsigned char *)s + i, n - i, &l);
            int b = rs_tok_cp_byte(cp);
            if (b >= 0) { char c = (char)b; pos = put(out, cap, pos, &c, 1); }
            else pos = put(out, cap, pos, s + i, (size_t)l);
            i += (size_t)l;
        }
        break;
    case RS_TOK_WPM:
        if (n >= 3 && !memcmp(s, "\xe2\x96\x81", 3)) {
            if (!first) pos = put(out, cap, pos, " ", 1);
            pos = put(out, cap, pos, s + 3, n - 3);
        } else {
            pos = put(out, cap, pos, s, n);
        }
        break;
    }
    return (int)pos;
}

rsmoe_status rs_tokenizer_decode(const rs_tokenizer *t, const int32_t *ids, int n, char *out,
                                 size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!t || n < 0 || (!ids && n) || (!out && cap))
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer decode: bad arguments");
    size_t pos = 0;
    int32_t prev = -1;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n)
            return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer decode: id %d at %d outside the vocabulary of %d",
                            (int)ids[i], i, (int)t->n);
        int k = rs_tokenizer_piece(t, prev, ids[i], pos < cap ? out + pos : NULL, pos < cap ? cap - pos : 0);
        pos += (size_t)k;
        prev = ids[i];
    }
    if (len) *len = pos;
    if (!out && !cap) return RSMOE_OK;   /* size query */
    if (pos + 1 > cap) {
        if (cap) out[cap - 1] = 0;
        return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer decode: %zu bytes needed, the buffer holds %zu", pos + 1, cap);
    }
    out[pos] = 0;
    return RSMOE_OK;
}
