/* safetensors.h - reader of Hugging Face safetensors checkpoints (one file, or shards listed
 * by a `model.safetensors.index.json`), memory-mapped read-only.
 *
 * File layout: header length N (u64 little-endian) | N bytes of JSON
 *   {"NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {...}} | data (offsets relative to the start of the data section).
 * Shapes are in PyTorch order (d0 outermost); the data is row-major, little-endian.
 *
 * Validation (RSMOE_ERR_FORMAT naming the file and tensor, never a crash): header length
 * <= RS_ST_MAX_HEADER and inside the file; valid JSON object; each tensor has a known dtype,
 * 0..8 non-negative dims, offsets begin <= end inside the data section with end - begin =
 * elements x dtype size, no two tensors overlapping; names unique across shards. A shard
 * index must list only tensors its shard holds. */
#ifndef RSMOE_FORMATS_SAFETENSORS_H
#define RSMOE_FORMATS_SAFETENSORS_H
#include "core/core.h"

#include <stddef.h>
#include <stdint.h>

#define RS_ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB: real headers are < 1 MiB */
#define RS_ST_MAX_DIMS 8

typedef enum {
    RS_ST_F32, RS_ST_F16, RS_ST_BF16, RS_ST_F64, RS_ST_I64, RS_ST_I32, RS_ST_I16, RS_ST_I8,
    RS_ST_U8, RS_ST_U16, RS_ST_U32, RS_ST_U64, RS_ST_BOOL, RS_ST_F8_E4M3, RS_ST_F8_E5M2,
} rs_st_dtype;

const char *rs_st_dtype_name(rs_st_dtype t); /* "F32", ... */

typedef struct {
    char *name;
    rs_st_dtype dtype;
    int ndim;
    int64_t shape[RS_ST_MAX_DIMS]; /* PyTorch order */
    int64_t n;                     /* elements */
    const uint8_t *data;           /* inside the mapping; may be unaligned */
    size_t nbytes;
    int file;                      /* index of the file holding it */
} rs_st_tensor;

typedef struct rs_safetensors rs_safetensors;

/* path: a .safetensors file, a *.index.json shard index, or a directory holding
 * model.safetensors.index.json, model.safetensors, or else every *.safetensors in it. */
rsmoe_status rs_st_open(const char *path, rs_safetensors **out);
void rs_st_close(rs_safetensors *s);                      /* NULL is fine */

int64_t rs_st_n_tensors(const rs_safetensors *s);
const rs_st_tensor *rs_st_tensor_at(const rs_safetensors *s, int64_t i);
const rs_st_tensor *rs_st_find(const rs_safetensors *s, const char *name);   /* NULL if absent */
const char *rs_st_file_path(const rs_safetensors *s, int file);
const char *rs_st_path(const rs_safetensors *s);          /* what was opened */

/* Converts elements [first, first + n) of a float tensor (F32, F16, BF16, F64) to f32.
 * Other dtypes: RSMOE_ERR_UNSUPPORTED naming the tensor. */
rsmoe_status rs_st_read_f32(const rs_st_tensor *t, int64_t first, int64_t n, float *dst);
#endif
