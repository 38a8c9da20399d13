/* gguf_copy.h - copying metadata between GGUF files (quantize, training checkpoints). */
#ifndef RSMOE_FORMATS_GGUF_COPY_H
#define RSMOE_FORMATS_GGUF_COPY_H
#include "formats/gguf.h"

/* Copies every key/value of g into w, except keys for which skip(key) is true (skip may be NULL). */
rsmoe_status rs_gguf_copy_kvs(const rs_gguf *g, rs_gguf_writer *w, bool (*skip)(const char *key));

/* What rs_gguf_graft did: tensors taken from `from`, kept from `into` because `from` lacks
 * them, kept because `from` has them with another type or shape (the first such name kept in
 * `mismatch`), and tensors of `from` that `into` does not have (ignored). */
typedef struct {
    int taken, absent, mismatched, unused;
    char mismatch[128];
} rs_graft_report;
/* Writes OUT = INTO's metadata and tensors, each tensor replaced by FROM's tensor of the same
 * name when FROM has one of the same type and shape. For moving trained weights into a model
 * of another layout (e.g. the stage-I weights into a model with another number of experts).
 * Atomic (temporary file + rename); out must differ from both inputs. */
rsmoe_status rs_gguf_graft(const char *into, const char *from, const char *out, rs_graft_report *rep);

/* Checkpoint averaging: OUT = the first file's metadata and tensors, every f32 tensor replaced by
 * the element-wise mean over the n files (summed in double in file order, divided by n, rounded
 * to float once). The files must hold the same tensor names, types and shapes; a tensor of any
 * other type must be byte-identical in all of them (quantise after averaging, not before).
 * `averaged` counts the f32 tensors that differed between the files, `same` the tensors equal in
 * all of them. Atomic; out must differ from every input; 2 <= n <= 64. */
typedef struct {
    int averaged, same;
} rs_average_report;
rsmoe_status rs_gguf_average(const char *const *in, int n, const char *out, rs_average_report *rep);
#endif
