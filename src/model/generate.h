/* generate.h - decoding several streams (one per expert) as ONE batch per step: greedy,
 * beam search (beams, min/max length, repetition and length penalties, stop tokens) and
 * temperature / top-p sampling.
 *
 * Each stream has its own prefix of input embeddings (visual prefix, soft prompts, prompt
 * tokens) and its own LoRA adapter; stream i's beams use cache slots i*beams .. i*beams+beams-1.
 * Every step runs one rs_llm_forward over the live beams of every stream, so each base weight
 * is read once per step for all of them.
 *
 * Beam search follows Hugging Face's BeamSearchScorer: per step the 2·beams best
 * (beam, token) continuations by summed log-probability are walked in order; an end token
 * among the first `beams` closes a hypothesis scored sum_logprob / length^length_penalty
 * (length = generated tokens, the end token included); the others continue. A stream is done
 * when it holds `beams` hypotheses and no live beam can beat the worst of them, or at
 * max_new tokens. The repetition penalty (HF's, on the stream's generated tokens) is applied to
 * the logits before the log-softmax; the end token is masked until min_new tokens.
 *
 * Views (test-time augmentation): a stream may hold n_views prefixes of the same length (the
 * same prompt over transformed copies of the image). Each view keeps its own cache, all of them
 * receive the same tokens, and the stream's next-token log-probabilities are the log-softmax of
 * the mean of its views' log-softmaxed (penalised, masked) logits: a normalised geometric mean,
 * the product-of-experts ensemble. Beams, sampling and scores then work on that distribution.
 * One view is the plain path, bit for bit. */
#ifndef RSMOE_MODEL_GENERATE_H
#define RSMOE_MODEL_GENERATE_H
#include "model/llm.h"

#define RS_GEN_MAX_STOP 8

typedef struct {
    int beams;            /* 1 = greedy or sampling */
    int max_new, min_new; /* generated tokens, end token included */
    float rep_penalty;    /* 1 = off */
    float len_penalty;    /* exponent of the length normalisation */
    float temperature;    /* > 0 with beams == 1: sampling */
    float top_p;
    uint64_t seed;
    int n_stop;
    int32_t stop[RS_GEN_MAX_STOP]; /* end tokens (EOS first) */
} rs_gen_params;

#define RS_GEN_MAX_VIEWS 8

typedef struct {
    const float *prefix;  /* [n_views, prefix_len, dim] input embeddings */
    int prefix_len;
    int adapter;          /* index into adapters, -1: base weights */
    int n_views;          /* 0 or 1: one prefix; up to RS_GEN_MAX_VIEWS */
} rs_gen_stream;

typedef struct {
    int32_t *ids;         /* caller's buffer of max_new ids; end token not included */
    int n;
    double sum_logprob;   /* log-probability of ids (+ the end token when it ended) */
    double score;         /* sum_logprob / length^len_penalty */
    bool ended;           /* closed by a stop token (else max_new was reached) */
} rs_gen_result;

typedef bool (*rs_abort_fn)(void *user_data);

typedef struct {
    double prefill_s, decode_s;
    int prefill_rows, steps, decoded_rows;
    float *prefill_logits; /* in: optional [n_streams, vocab] buffer for the first-step logits */
} rs_gen_stats;

/* slots needed: n_streams * beams * NV, where NV is the largest n_views (stream i, beam slot b,
 * view v use cache slot (i * beams + b) * NV + v); rows: max(Σ n_views * prefix_len,
 * n_streams * beams * NV) */
rsmoe_status rs_generate(const rs_llm_weights *w, rs_llm_state *s, const rs_lora_set *const *adapters,
                         const rs_gen_stream *streams, int n_streams, const rs_gen_params *p,
                         rs_gen_result *res, rs_gen_stats *stats /* may be NULL */, rs_pool *pool, rs_abort_fn abort_cb, void *ud);
#endif
