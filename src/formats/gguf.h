/* gguf.h - GGUF v3 reader (read-only mmap, zero-copy tensors, full validation) and writer.
 *
 * File layout (little-endian, as in ggml's docs/gguf.md):
 *   "GGUF" | version u32 = 3 | n_tensors u64 | n_kv u64
 *   n_kv x  { key: string | type u32 | value }
 *   n_tensors x { name: string | n_dims u32 | dims u64[n_dims] | type u32 | offset u64 }
 *   padding to `general.alignment` (u32, default 32) | tensor data (each offset relative to
 *   the start of the data section and a multiple of the alignment)
 *   string = len u64 + bytes (NOT NUL-terminated in the file);
 *   array  = elem type u32 + n u64 + n values.
 *
 * Reader policy (every violation -> RSMOE_ERR_FORMAT, or RSMOE_ERR_UNSUPPORTED where
 * noted, with a message naming the file and what is wrong; never a crash or an
 * out-of-bounds read):
 *  - only version 3, little-endian (versions 1/2 and byte-swapped files are refused);
 *  - counts, lengths and offsets are checked against the bytes left before any use or
 *    allocation; strings <= 1 GiB; keys non-empty, without NUL bytes, unique;
 *  - arrays of arrays are refused (the spec allows nesting in principle, but ggml itself
 *    refuses them and no model uses them); bool values must be 0 or 1;
 *  - `general.alignment`, when present, must be a u32 power of two in [1, 1<<20];
 *  - tensors: name 1..RS_NAME_MAX-1 bytes, unique; n_dims 1..4; dims >= 1 and total size
 *    sane (see rs_tensor_init); type one of f32, f16, q8_0, bf16 (other ggml types ->
 *    RSMOE_ERR_UNSUPPORTED "unsupported tensor type N (name)": the whole file is refused);
 *    q8_0 rows a multiple of 32; offset a multiple of the alignment; data inside the file;
 *    no two tensors overlapping.
 * After open the object is immutable and may be shared by threads. Tensor data points into
 * a PROT_READ mapping: writing through rs_tensor.data faults. All strings handed out (keys,
 * string values, array strings) are NUL-terminated copies owned by the rs_gguf; their
 * length is also given since a GGUF string may contain NUL bytes. */
#ifndef RSMOE_GGUF_H
#define RSMOE_GGUF_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* metadata value types; values are GGUF's */
typedef enum {
    RS_GGUF_U8 = 0,
    RS_GGUF_I8 = 1,
    RS_GGUF_U16 = 2,
    RS_GGUF_I16 = 3,
    RS_GGUF_U32 = 4,
    RS_GGUF_I32 = 5,
    RS_GGUF_F32 = 6,
    RS_GGUF_BOOL = 7,
    RS_GGUF_STRING = 8,
    RS_GGUF_ARRAY = 9,
    RS_GGUF_U64 = 10,
    RS_GGUF_I64 = 11,
    RS_GGUF_F64 = 12,
} rs_gguf_type;

#define RS_GGUF_DEFAULT_ALIGNMENT 32
#define RS_GGUF_MAX_STRING ((uint64_t)1 << 30)

const char *rs_gguf_type_name(int type);   /* "u8", ..., "array"; "?" if unknown */
size_t rs_gguf_type_size(int type);        /* bytes of a scalar value; 0 for string/array/unknown */

/* ---------------------------------------------------------------- reader */
typedef struct rs_gguf rs_gguf;

/* mmap(PROT_READ) + full validation. On failure *out = NULL and an error is recorded. */
rsmoe_status rs_gguf_open(const char *path, rs_gguf **out);
/* Same on a caller's buffer, which is NOT copied and must outlive the rs_gguf (tensor data
 * points into it). If the file has tensors the buffer must be aligned to
 * min(alignment, 64) bytes (e.g. from aligned_alloc(64, ...)). */
rsmoe_status rs_gguf_open_memory(const void *data, size_t size, rs_gguf **out);
void rs_gguf_close(rs_gguf *g);                      /* NULL is fine */

const char *rs_gguf_path(const rs_gguf *g);          /* "<memory>" for open_memory */
uint32_t rs_gguf_version(const rs_gguf *g);          /* 3 */
size_t rs_gguf_alignment(const rs_gguf *g);
size_t rs_gguf_data_offset(const rs_gguf *g);        /* file offset of the data section */
size_t rs_gguf_file_size(const rs_gguf *g);

/* metadata: kv index i in 0..n_kv-1, file order */
int64_t rs_gguf_n_kv(const rs_gguf *g);
const char *rs_gguf_key(const rs_gguf *g, int64_t i);           /* NULL if i out of range */
int64_t rs_gguf_find_key(const rs_gguf *g, const char *key);    /* -1 if absent */
int rs_gguf_kv_type(const rs_gguf *g, int64_t i);               /* rs_gguf_type, -1 if bad i */
int rs_gguf_arr_type(const rs_gguf *g, int64_t i);              /* element type; -1 if not an array */
int64_t rs_gguf_arr_n(const rs_gguf *g, int64_t i);             /* elements; -1 if not an array */

/* Raw scalar value of kv i (any numeric/bool type) copied into out, which must hold
 * rs_gguf_type_size(type) bytes. Error if i is bad or kv i is a string/array. */
rsmoe_status rs_gguf_kv_scalar(const rs_gguf *g, int64_t i, void *out);
/* String value of kv i (NUL-terminated copy, *len = its length if len != NULL);
 * NULL if kv i is not a string. */
const char *rs_gguf_kv_str(const rs_gguf *g, int64_t i, size_t *len);

/* Typed getters by key. Absent key -> RSMOE_ERR_FORMAT "FILE: missing key K";
 * wrong type -> RSMOE_ERR_FORMAT naming both types; *out untouched on error.
 * The integer getters accept any integer kv type whose value fits the target
 * (u32 accepts u8/u16/u32/u64/i* when in range); f32 accepts f32 and f64; bool and str
 * accept exactly their type. */
rsmoe_status rs_gguf_get_u32(const rs_gguf *g, const char *key, uint32_t *out);
rsmoe_status rs_gguf_get_i32(const rs_gguf *g, const char *key, int32_t *out);
rsmoe_status rs_gguf_get_u64(const rs_gguf *g, const char *key, uint64_t *out);
rsmoe_status rs_gguf_get_i64(const rs_gguf *g, const char *key, int64_t *out);
rsmoe_status rs_gguf_get_f32(const rs_gguf *g, const char *key, float *out);
rsmoe_status rs_gguf_get_bool(const rs_gguf *g, const char *key, bool *out);
rsmoe_status rs_gguf_get_str(const rs_gguf *g, const char *key, const char **out);
/* The same returning dflt when the key is absent OR of an unusable type (use the
 * rs_gguf_get_* forms when a wrong type must be reported). */
uint32_t rs_gguf_get_u32_or(const rs_gguf *g, const char *key, uint32_t dflt);
int32_t rs_gguf_get_i32_or(const rs_gguf *g, const char *key, int32_t dflt);
uint64_t rs_gguf_get_u64_or(const rs_gguf *g, const char *key, uint64_t dflt);
float rs_gguf_get_f32_or(const rs_gguf *g, const char *key, float dflt);
bool rs_gguf_get_bool_or(const rs_gguf *g, const char *key, bool dflt);
const char *rs_gguf_get_str_or(const rs_gguf *g, const char *key, const char *dflt);

/* Arrays. String element j of array kv i: NUL-terminated copy, *len its length (may be
 * NULL); NULL if kv i is not a string array or j is out of range. */
const char *rs_gguf_arr_str(const rs_gguf *g, int64_t i, int64_t j, size_t *len);
/* Numeric/bool array kv i: pointer to its n elements INSIDE THE FILE (zero-copy; may be
 * unaligned: read elements with memcpy, or use rs_gguf_arr_copy). NULL if kv i is not a
 * numeric array. An empty array gives a non-NULL pointer with *n = 0. */
const void *rs_gguf_arr_data(const rs_gguf *g, int64_t i, int *elem_type, int64_t *n);
/* Copies the n elements of numeric array kv i into dst (aligned, n elements of
 * elem_type); error unless the array's element type is elem_type and its length is n. */
rsmoe_status rs_gguf_arr_copy(const rs_gguf *g, int64_t i, int elem_type, void *dst, int64_t n);

/* tensors: index i in 0..n_tensors-1, file order. data points into the read-only file
 * image, aligned to min(alignment, 64) bytes; ne/nb are filled as by rs_tensor_init. */
int64_t rs_gguf_n_tensors(const rs_gguf *g);
const rs_tensor *rs_gguf_tensor(const rs_gguf *g, int64_t i);          /* NULL if bad i */
const rs_tensor *rs_gguf_find_tensor(const rs_gguf *g, const char *name); /* NULL if absent */
/* the tensor for its owner to attach run-time data (rs_tensor.packed) before sharing it */
rs_tensor *rs_gguf_tensor_mut(rs_gguf *g, int64_t i);
/* Gives the mmap'd file pages wholly inside [p, p + n) back to the kernel (MADV_DONTNEED):
 * they are read from the file again if touched. For data the owner has copied into another
 * form; no effect on open_memory files or ranges outside the map. */
void rs_gguf_release_pages(const rs_gguf *g, const void *p, size_t n);
uint64_t rs_gguf_tensor_offset(const rs_gguf *g, int64_t i);           /* within data section */

/* ---------------------------------------------------------------- writer */
/* Collects metadata and tensors, then writes a GGUF v3 file. Keys keep the order of their
 * first set; setting a key again replaces its value (and type). Values and strings are
 * copied; tensor data is NOT copied and must stay valid until rs_gguf_writer_write.
 * The alignment is `general.alignment` if set (u32 power of two), else 32. */
typedef struct rs_gguf_writer rs_gguf_writer;

rs_gguf_writer *rs_gguf_writer_new(void);            /* NULL on out of memory (recorded) */
void rs_gguf_writer_free(rs_gguf_writer *w);         /* NULL is fine */

/* any scalar type (not string/array): val points to rs_gguf_type_size(type) bytes */
rsmoe_status rs_gguf_writer_set_scalar(rs_gguf_writer *w, const char *key, int type, const void *val);
rsmoe_status rs_gguf_writer_set_u32(rs_gguf_writer *w, const char *key, uint32_t v);
rsmoe_status rs_gguf_writer_set_i32(rs_gguf_writer *w, const char *key, int32_t v);
rsmoe_status rs_gguf_writer_set_u64(rs_gguf_writer *w, const char *key, uint64_t v);
rsmoe_status rs_gguf_writer_set_i64(rs_gguf_writer *w, const char *key, int64_t v);
rsmoe_status rs_gguf_writer_set_f32(rs_gguf_writer *w, const char *key, float v);
rsmoe_status rs_gguf_writer_set_bool(rs_gguf_writer *w, const char *key, bool v);
rsmoe_status rs_gguf_writer_set_str(rs_gguf_writer *w, const char *key, const char *s);
/* a string of explicit length (may contain NUL bytes) */
rsmoe_status rs_gguf_writer_set_strn(rs_gguf_writer *w, const char *key, const char *s, size_t len);
/* array of n strings; lens may be NULL (then strlen is used) */
rsmoe_status rs_gguf_writer_set_arr_str(rs_gguf_writer *w, const char *key, const char *const *s,
                                        const size_t *lens, int64_t n);
/* array of n scalars of elem_type (not string/array), copied from data */
rsmoe_status rs_gguf_writer_set_arr_data(rs_gguf_writer *w, const char *key, int elem_type,
                                         const void *data, int64_t n);

/* t must be contiguous, of a supported dtype, with a unique name and non-NULL data */
rsmoe_status rs_gguf_writer_add_tensor(rs_gguf_writer *w, const rs_tensor *t);

/* Atomic: writes PATH.tmp.XXXXXX in the same directory, fsyncs, renames over path; on any
 * failure the temp file is removed and path is left as it was. The writer stays usable. */
rsmoe_status rs_gguf_writer_write(rs_gguf_writer *w, const char *path);

#endif
