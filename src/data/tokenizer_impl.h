/* tokenizer_impl.h - internals shared by the tokenizer sources (not a public API). */
#ifndef RSMOE_TOKENIZER_IMPL_H
#define RSMOE_TOKENIZER_IMPL_H

#include "data/tokenizer.h"

/* ---------------------------------------------------------------- Unicode */
/* general categories; the order is the generator's (tools/gen/gen_tok_unicode.py) */
enum {
    RS_UC_CN, RS_UC_LU, RS_UC_LL, RS_UC_LT, RS_UC_LM, RS_UC_LO, RS_UC_MN, RS_UC_MC, RS_UC_ME,
    RS_UC_ND, RS_UC_NL, RS_UC_NO, RS_UC_PC, RS_UC_PD, RS_UC_PS, RS_UC_PE, RS_UC_PI, RS_UC_PF,
    RS_UC_PO, RS_UC_SM, RS_UC_SC, RS_UC_SK, RS_UC_SO, RS_UC_ZS, RS_UC_ZL, RS_UC_ZP, RS_UC_CC,
    RS_UC_CF, RS_UC_CS, RS_UC_CO,
};
typedef struct { uint32_t first; uint8_t cat; } rs_tok_cat_range;
typedef struct { uint32_t cp, off, len; } rs_tok_cp_map;
extern const char rs_tok_unicode_version[];
extern const rs_tok_cat_range rs_tok_cat_ranges[];
extern const int rs_tok_n_cat_ranges;
extern const rs_tok_cp_map rs_tok_nfd_map[], rs_tok_lower_map[];
extern const int rs_tok_n_nfd_map, rs_tok_n_lower_map;
extern const uint32_t rs_tok_nfd_data[], rs_tok_lower_data[];

/* Decodes one code point at s (n > 0 bytes left); *len = bytes used (>= 1). Invalid or
 * truncated sequences, overlongs and surrogates give 0xFFFD with *len = 1. */
uint32_t rs_utf8_next(const unsigned char *s, size_t n, int *len);
int rs_utf8_put(uint32_t cp, char *out);            /* 1..4 bytes written */
int rs_uni_cat(uint32_t cp);                        /* RS_UC_* */
static inline bool rs_uni_is_letter(int c) { return c >= RS_UC_LU && c <= RS_UC_LO; }
static inline bool rs_uni_is_number(int c) { return c >= RS_UC_ND && c <= RS_UC_NO; }
static inline bool rs_uni_is_punct(int c) { return c >= RS_UC_PC && c <= RS_UC_PO; }
static inline bool rs_uni_is_symbol(int c) { return c >= RS_UC_SM && c <= RS_UC_SO; }
/* Unicode White_Space (= regex \s, Rust char::is_whitespace) */
bool rs_uni_is_space(uint32_t cp);
/* full canonical decomposition of one code point: n code points into out[0..3] */
int rs_uni_nfd(uint32_t cp, uint32_t out[4]);
/* per-character lower case: n code points into out[0..3] */
int rs_uni_lower(uint32_t cp, uint32_t out[4]);

/* ---------------------------------------------------------------- tokenizer */
typedef struct { int32_t a, b, res; } rs_tok_merge;

struct rs_tokenizer {
    rs_tok_kind kind;
    rs_tok_pre pre;
    int32_t n;                 /* tokens */
    char *blob;                /* all token texts, each NUL-terminated */
    uint32_t *off, *len;
    float *score;
    int32_t *type;
    uint32_t *hslot;           /* text hash: id + 1, 0 = empty */
    uint32_t hmask;
    int32_t n_merges;          /* BPE merges kept (both parts and the result in the vocab) */
    rs_tok_merge *merges;      /* in rank order */
    uint64_t *mkey;            /* (a,b) hash: key (a << 32 | b) + 1, 0 = empty */
    int32_t *mrank;
    uint32_t mmask;
    int32_t byte_tok[256];     /* SPM: "<0xXX>"; BPE: the byte's GPT-2 character; -1 none */
    int32_t bos, eos, unk, pad, sep, cls, mask;
    bool add_bos, add_eos, add_space_prefix;
    uint32_t max_len;          /* longest token text in bytes */
};

uint64_t rs_tok_hash(const char *s, size_t n);
int32_t rs_tok_find(const rs_tokenizer *t, const char *s, size_t n);
int32_t rs_tok_merge_rank(const rs_tokenizer *t, int32_t a, int32_t b); /* -1 none */

/* GPT-2 bytes_to_unicode: byte -> code point, and code point (< 324) -> byte or -1 */
uint32_t rs_tok_byte_cp(int byte);
int rs_tok_cp_byte(uint32_t cp);

/* Output buffer for an encoding: writes ids while room, always counts. */
typedef struct { int32_t *ids; int max, n; } rs_tok_out;
static inline void rs_tok_emit(rs_tok_out *o, int32_t id) {
    if (o->n < o->max) o->ids[o->n] = id;
    o->n++;
}

/* Pre-tokenizer: splits text[0..len) into words; calls fn(ctx, begin, end) for each word in
 * order (byte offsets). Returns the first non-OK status of fn. */
typedef rsmoe_status (*rs_tok_word_fn)(void *ctx, size_t begin, size_t end);
rsmoe_status rs_tok_pretokenize(rs_tok_pre pre, const char *text, size_t len,
                                rs_tok_word_fn fn, void *ctx);

/* Workspace of the merge loops (heap + symbols), grown as needed by the caller. */
typedef struct {
    int32_t prev, next;   /* neighbours, -1 none */
    uint32_t pos, n;      /* byte span in the text; n = 0: merged away */
    int32_t id;           /* BPE: token id of the span, -1 none */
} rs_tok_sym;
typedef struct {
    double key;           /* smaller pops first (SPM: -score, BPE: rank) */
    int32_t left, right;  /* symbol indices */
    uint32_t size;        /* SPM: byte size of the pair when queued */
} rs_tok_bigram;
typedef struct {
    rs_tok_sym *sym;
    rs_tok_bigram *heap;
    size_t cap_sym, cap_heap, n_heap;
    char *buf;            /* scratch text */
    size_t cap_buf;
} rs_tok_work;
rsmoe_status rs_tok_work_reserve(rs_tok_work *w, size_t n_sym, size_t n_buf);
void rs_tok_work_free(rs_tok_work *w);
void rs_tok_heap_push(rs_tok_work *w, rs_tok_bigram b);
rs_tok_bigram rs_tok_heap_pop(rs_tok_work *w);

/* The per-kind encoders (text without specials); they append to o. */
rsmoe_status rs_tok_encode_spm(const rs_tokenizer *t, const char *text, size_t len, rs_tok_out *o);
rsmoe_status rs_tok_encode_bpe(const rs_tokenizer *t, const char *text, size_t len, rs_tok_out *o);
rsmoe_status rs_tok_encode_wpm(const rs_tokenizer *t, const char *text, size_t len, rs_tok_out *o);
/* BPE-merges one word given as initial symbol ids; writes the final ids into o */
void rs_tok_bpe_word(const rs_tokenizer *t, rs_tok_work *w, const unsigned char *word,
                     size_t n, rs_tok_out *o);

#endif
