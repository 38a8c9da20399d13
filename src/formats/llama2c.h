/* llama2c.h - import of llama.2c checkpoints (Karpathy's llama2.c format) into GGUF.
 *
 * Model file: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len; vocab_size < 0 means an unshared classifier), then float32 tensors:
 * token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv, dim],
 * wv [L, kv, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim],
 * w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim], freq_cis_real and _imag
 * [seq, head_dim/2] (skipped), wcls [vocab, dim] when unshared.
 * Tokenizer file: int32 max_token_length, then per token: float score, int32 length, bytes.
 *
 * The output is an LLM-only GGUF (general.architecture = "llama", llama.cpp key and tensor
 * names, interleaved-pair RoPE with theta 10000 as llama2.c computes it) with the
 * vocabulary as a SentencePiece ("llama") tokenizer. */
#ifndef RSMOE_FORMATS_LLAMA2C_H
#define RSMOE_FORMATS_LLAMA2C_H
#include "core/core.h"

rsmoe_status rs_llama2c_import(const char *model_path, const char *tokenizer_path,
                               const char *out_path, rs_dtype wtype);
#endif
