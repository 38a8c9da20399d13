/* sample.h - choosing the next token from logits: greedy, temperature, top-p (nucleus),
 * repetition penalty. */
#ifndef RSMOE_MODEL_SAMPLE_H
#define RSMOE_MODEL_SAMPLE_H
#include "core/core.h"

/* index of the largest value (the first one on ties) */
int rs_argmax(const float *x, int n);
/* CTRL-style repetition penalty (HF's RepetitionPenaltyLogitsProcessor): for each distinct
 * id in prev, a positive logit is divided by penalty and a negative one multiplied. */
void rs_repetition_penalty(float *logits, int n_vocab, const int32_t *prev, int n_prev, float penalty);
/* log-softmax in place; returns the log of the partition function */
double rs_log_softmax(float *x, int n);
/* temperature <= 0: greedy. Otherwise softmax(logits/temperature), then nucleus sampling
 * keeping the smallest set of most probable tokens whose mass reaches top_p (top_p >= 1:
 * all). scratch: n floats + n ints. logits are modified. */
int rs_sample(float *logits, int n, float temperature, float top_p, rs_rng *rng, float *scratch_p,
              int *scratch_idx);
#endif
