/* gguf_copy.h - copying metadata between GGUF files (quantize, training checkpoints). */
#ifndef RSMOE_FORMATS_GGUF_COPY_H
#define RSMOE_FORMATS_GGUF_COPY_H
#include "formats/gguf.h"

/* Copies every key/value of g into w, except keys for which skip(key) is true (skip may be NULL). */
rsmoe_status rs_gguf_copy_kvs(const rs_gguf *g, rs_gguf_writer *w, bool (*skip)(const char *key));
#endif
