/* tokenizer.h - text tokenizers: SentencePiece-style BPE (LLaMA/Vicuna), byte-level BPE
 * (GPT-2 / Llama-3 style) and WordPiece (BERT, the Q-Former's), built from in-memory
 * vocabularies or GGUF files (llama.cpp's key names), plus byte-level BPE training.
 * See docs/tokenizers.md.
 *
 * Thread safety: a built rs_tokenizer is read-only; encode/decode may run concurrently.
 * Each encode call allocates one scratch block sized from the text (never per token). */
#ifndef RSMOE_TOKENIZER_H
#define RSMOE_TOKENIZER_H

#include "core/core.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    RS_TOK_SPM = 1, /* SentencePiece BPE by piece score, "▁" for spaces, <0xXX> byte fallback */
    RS_TOK_BPE = 2, /* byte-level BPE by merge rank (GPT-2 bytes-to-unicode alphabet) */
    RS_TOK_WPM = 3, /* WordPiece, greedy longest match (BERT uncased normalisation) */
} rs_tok_kind;

/* token types: llama.cpp / GGUF values */
typedef enum {
    RS_TOKT_UNDEFINED = 0,
    RS_TOKT_NORMAL = 1,
    RS_TOKT_UNKNOWN = 2,
    RS_TOKT_CONTROL = 3,
    RS_TOKT_USER_DEFINED = 4,
    RS_TOKT_UNUSED = 5,
    RS_TOKT_BYTE = 6,
} rs_tok_type;

/* pre-tokenizer of a byte-level BPE vocabulary (GGUF "tokenizer.ggml.pre") */
typedef enum {
    RS_TOK_PRE_GPT2 = 0,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    RS_TOK_PRE_LLAMA3 = 1, /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
                              ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ ; whole-word tokens
                              skip the merges ("ignore_merges") */
} rs_tok_pre;

/* A vocabulary in memory, as GGUF stores it. Strings need not be NUL-terminated when their
 * lengths are given. WordPiece vocabularies use llama.cpp's "phantom space" form: a
 * word-initial piece is "▁word", a continuation piece (BERT's "##ing") is plain "ing",
 * special tokens ("[CLS]") are kept as they are. Merges are "left right" strings. */
typedef struct {
    rs_tok_kind kind;
    int32_t n_tokens;
    const char *const *tokens;
    const size_t *token_lens;     /* NULL: strlen */
    const float *scores;          /* NULL: all 0 (SPM needs them) */
    const int32_t *types;         /* NULL: all RS_TOKT_NORMAL */
    int32_t n_merges;             /* BPE only */
    const char *const *merges;
    const size_t *merge_lens;     /* NULL: strlen */
    rs_tok_pre pre;
    int32_t bos, eos, unk, pad, sep, cls, mask; /* -1: none */
    bool add_bos, add_eos;
    bool add_space_prefix;        /* SPM: encode " "+text (LLaMA: true) */
} rs_tok_vocab;

/* An rs_tok_vocab with every special id -1, add_space_prefix true, the rest zero. */
rs_tok_vocab rs_tok_vocab_default(rs_tok_kind kind);

typedef struct rs_tokenizer rs_tokenizer;

/* Builds a tokenizer (copies everything it needs from v). Errors: bad kind, empty vocab,
 * ids out of range, an SPM vocab without byte tokens is accepted (falls back to unk). */
rsmoe_status rs_tokenizer_build(const rs_tok_vocab *v, rs_tokenizer **out);
void rs_tokenizer_free(rs_tokenizer *t);

rs_tok_kind rs_tokenizer_kind(const rs_tokenizer *t);
int32_t rs_tokenizer_n_vocab(const rs_tokenizer *t);
int32_t rs_tokenizer_bos(const rs_tokenizer *t);  /* -1 if none (WPM: [CLS]) */
int32_t rs_tokenizer_eos(const rs_tokenizer *t);  /* -1 if none (WPM: [SEP]) */
int32_t rs_tokenizer_pad(const rs_tokenizer *t);
int32_t rs_tokenizer_unk(const rs_tokenizer *t);
int32_t rs_tokenizer_n_merges(const rs_tokenizer *t);
/* id of an exact token text, -1 if absent */
int32_t rs_tokenizer_find(const rs_tokenizer *t, const char *text, size_t len);
/* stored text and type of a token (NULL / -1 for a bad id) */
const char *rs_tokenizer_token_text(const rs_tokenizer *t, int32_t id, size_t *len);
int rs_tokenizer_token_type(const rs_tokenizer *t, int32_t id);

/* Encodes NUL-terminated UTF-8 text (invalid UTF-8 is accepted: SPM/BPE keep stray bytes
 * as byte tokens, WPM drops them). add_special: BOS first when the vocab says add_bos and
 * EOS last when it says add_eos (WPM: always [CLS] ... [SEP]). Special-token texts inside
 * `text` are NOT parsed as specials. Writes at most max ids and sets *n to the number of ids
 * of the whole encoding; when that exceeds max the result is RSMOE_ERR_INVALID_ARG with a
 * message naming the size needed (ids then holds the first max ids). */
rsmoe_status rs_tokenizer_encode(const rs_tokenizer *t, const char *text, bool add_special,
                                 int32_t *ids, int max, int *n);
/* same for text with an explicit length (may contain NUL bytes) */
rsmoe_status rs_tokenizer_encode_n(const rs_tokenizer *t, const char *text, size_t len,
                                   bool add_special, int32_t *ids, int max, int *n);

/* The bytes a token stands for when streamed after token prev (prev = -1 at the start of a
 * sequence; SPM drops the leading space of the first piece, WPM joins "##" pieces). Control
 * tokens (BOS, EOS, [CLS], ...) give nothing. Writes up to cap bytes (no NUL) and returns
 * the full length, or -1 for a bad id. A byte-level token may be part of a UTF-8 sequence. */
int rs_tokenizer_piece(const rs_tokenizer *t, int32_t prev, int32_t id, char *out, size_t cap);

/* Decodes ids into NUL-terminated text. *len (optional) receives the text length needed
 * (without the NUL). Error if cap is too small (the message names the size) or an id is bad.
 * For SPM and BPE, decode(encode(text)) == text for ordinary text (see docs). */
rsmoe_status rs_tokenizer_decode(const rs_tokenizer *t, const int32_t *ids, int n, char *out,
                                 size_t cap, size_t *len);

/* ---------------------------------------------------------------- BPE training */
typedef struct {
    int32_t vocab_size;  /* total tokens: 4 specials + 256 bytes + merges (>= 260) */
    int32_t min_freq;    /* stop when the best pair occurs fewer times (default 2) */
    rs_tok_pre pre;      /* pre-tokenizer (default GPT-2) */
    bool add_bos;        /* stored in the vocab: encode's add_special puts <s> first */
    bool add_eos;
} rs_tok_train_opts;

rs_tok_train_opts rs_tok_train_opts_default(void);

/* Trains a byte-level BPE vocabulary on n texts: ids 0..3 are <unk> <s> </s> <pad>, ids
 * 4..259 the 256 bytes (GPT-2 alphabet, byte order), then one token per merge. Each step merges
 * the most frequent adjacent pair (counted over pre-tokenized words); ties go to the pair
 * with the smaller left id, then the smaller right id. Deterministic. */
rsmoe_status rs_tokenizer_train_bpe(const char *const *texts, int64_t n,
                                    const rs_tok_train_opts *opts, rs_tokenizer **out);

/* ---------------------------------------------------------------- GGUF */
/* forward declarations of src/formats/gguf.h's types */
typedef struct rs_gguf rs_gguf;
typedef struct rs_gguf_writer rs_gguf_writer;

/* Loads tokenizer.ggml.* from an opened GGUF (model "llama" -> SPM, "gpt2" -> BPE, "bert" ->
 * WPM; pre "llama-bpe"/"llama3" -> Llama-3 pre-tokenizer, others GPT-2). */
rsmoe_status rs_tokenizer_load_gguf(const rs_gguf *g, rs_tokenizer **out);
/* Convenience: opens path, loads, closes. */
rsmoe_status rs_tokenizer_load_gguf_file(const char *path, rs_tokenizer **out);
/* Writes the tokenizer.ggml.* keys of t into a GGUF being written. */
rsmoe_status rs_tokenizer_save_gguf(const rs_tokenizer *t, rs_gguf_writer *w);

#endif
