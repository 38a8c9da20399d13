/* ops_internal.h - private helpers shared by the kernel files (not a public API). */
#ifndef RSMOE_KERNELS_OPS_INTERNAL_H
#define RSMOE_KERNELS_OPS_INTERNAL_H

#include "core/core.h"
#include <string.h>

/* ---- parallel for over [0, n): fn(ctx, begin, end, ith) with ith the worker index */
typedef void (*rs_range_fn)(void *ctx, int64_t begin, int64_t end, int ith);
typedef struct { rs_range_fn fn; void *ctx; int64_t n, align; } rs__par_ctx;

static inline void rs__par_worker(void *c, int ith, int nth) {
    rs__par_ctx *p = (rs__par_ctx *)c;
    int64_t b, e;
    rs_split_range(p->n, ith, nth, p->align, &b, &e);
    if (b < e) p->fn(p->ctx, b, e, ith);
}

/* Runs on the calling thread (ith 0) when there is no pool or fewer than 2*min_items. */
static inline void rs_par_for(rs_pool *pool, int64_t n, int64_t min_items, rs_range_fn fn,
                              void *ctx) {
    if (n <= 0) return;
    if (!pool || rs_pool_size(pool) <= 1 || n < 2 * min_items) { fn(ctx, 0, n, 0); return; }
    rs__par_ctx p = { fn, ctx, n, 1 };
    rs_pool_run(pool, rs__par_worker, &p);
}

/* ---- SIMD-friendly dot / axpy (GCC vector extensions; no -ffast-math needed) */
typedef float rs__v8 __attribute__((vector_size(32)));

static inline rs__v8 rs__ld8(const float *p) { rs__v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void rs__st8(float *p, rs__v8 v) { memcpy(p, &v, sizeof v); }

static inline float rs__dot(const float *a, const float *b, int64_t n) {
    rs__v8 s0 = {0}, s1 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 += rs__ld8(a + i) * rs__ld8(b + i);
        s1 += rs__ld8(a + i + 8) * rs__ld8(b + i + 8);
    }
    for (; i + 8 <= n; i += 8) s0 += rs__ld8(a + i) * rs__ld8(b + i);
    s0 += s1;
    float s = ((s0[0] + s0[4]) + (s0[1] + s0[5])) + ((s0[2] + s0[6]) + (s0[3] + s0[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y += a*x */
static inline void rs__axpy(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    rs__v8 av = {a, a, a, a, a, a, a, a};
    for (; i + 8 <= n; i += 8) rs__st8(y + i, rs__ld8(y + i) + av * rs__ld8(x + i));
    for (; i < n; i++) y[i] += a * x[i];
}

#endif
