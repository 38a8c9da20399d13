/* arena.c - one block, pointer-bump allocation, 64-byte alignment. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#define RS_ALIGN 64

rsmoe_status rs_arena_init(rs_arena *a, size_t bytes) {
    memset(a, 0, sizeof *a);
    size_t sz = (bytes + RS_ALIGN - 1) & ~(size_t)(RS_ALIGN - 1);
    if (sz == 0) sz = RS_ALIGN;
    a->base = aligned_alloc(RS_ALIGN, sz);
    if (!a->base) return rs_error(RSMOE_ERR_NOMEM, "arena: cannot allocate %zu bytes", sz);
    a->size = sz;
    return RSMOE_OK;
}

void rs_arena_free(rs_arena *a) {
    free(a->base);
    memset(a, 0, sizeof *a);
}

void *rs_arena_alloc(rs_arena *a, size_t bytes) {
    size_t start = (a->used + RS_ALIGN - 1) & ~(size_t)(RS_ALIGN - 1);
    if (start > a->size || bytes > a->size - start) {
        rs_error(RSMOE_ERR_NOMEM, "arena full: %zu bytes requested, %zu of %zu used", bytes,
                 a->used, a->size);
        return NULL;
    }
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + start;
}

float *rs_arena_floats(rs_arena *a, size_t n) {
    if (n > SIZE_MAX / sizeof(float)) return NULL;
    return rs_arena_alloc(a, n * sizeof(float));
}
