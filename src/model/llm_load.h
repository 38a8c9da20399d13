/* llm_load.h - binding an LLM Block to GGUF tensors (llama.cpp key and tensor names). */
#ifndef RSMOE_MODEL_LLM_LOAD_H
#define RSMOE_MODEL_LLM_LOAD_H
#include "formats/gguf.h"
#include "model/llm.h"

/* Reads `<arch>.*` configuration keys ("llama" for llama.cpp files) and binds the tensors
 * named `<prefix>token_embd.weight`, `<prefix>blk.N.attn_q.weight`, ... (prefix may be
 * NULL). The tensors stay in g, which must outlive w. rs_llm_unbind frees the layer table. */
rsmoe_status rs_llm_bind_gguf(const rs_gguf *g, const char *arch, const char *prefix, rs_llm_weights *w);
void rs_llm_unbind(rs_llm_weights *w);
#endif
