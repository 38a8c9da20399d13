/* pipeline_debug.h - a view of a context's intermediate results for the parity tests. */
#ifndef RSMOE_MODEL_PIPELINE_DEBUG_H
#define RSMOE_MODEL_PIPELINE_DEBUG_H
#include "rsmoe.h"

typedef struct {
    const float *enc;          /* image-encoder output [tokens, width] */
    const float *qout;         /* Q-Former query outputs [n_query, width] */
    const float *prefix;       /* visual prefix [n_query, dim] */
    const float *gates;        /* [K] */
    const float *soft;         /* [K, M, dim] */
    const float *first_logits; /* [n_streams, vocab] logits of the first generated position */
    int n_streams;
} rs_ctx_debug;

/* keep the first-step logits of every stream of the next runs */
void rs_ctx_set_debug(rsmoe_context *c, bool on);
void rs_ctx_get_debug(const rsmoe_context *c, rs_ctx_debug *d);
#endif
