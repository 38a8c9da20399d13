/* ops_internal.h - private helpers shared by the kernel files (not a public API). */
#ifndef RSMOE_KERNELS_OPS_INTERNAL_H
#define RSMOE_KERNELS_OPS_INTERNAL_H

#include "core/core.h"
#include <math.h>
#include <string.h>

/* elementwise work below this many items stays on the calling thread */
#define EW_MIN 16384

/* ---- parallel for over [0, n): fn(ctx, begin, end, ith) with ith the worker index */
typedef void (*rs_range_fn)(void *ctx, int64_t begin, int64_t end, int ith);
typedef struct { rs_range_fn fn; void *ctx; rs_chunks items; } rs__par_ctx;

/* chunks taken dynamically (rs_chunks): a thread the host runs slowly does fewer */
static inline void rs__par_worker(void *c, int ith, int nth) {
    rs__par_ctx *p = (rs__par_ctx *)c;
    (void)nth;
    int64_t b, e;
    while (rs_chunks_next(&p->items, &b, &e)) p->fn(p->ctx, b, e, ith);
}

typedef struct { rs_range_fn fn; void *ctx; int64_t n; } rs__par_static_ctx;
static inline void rs__par_static_worker(void *c, int ith, int nth) {
    rs__par_static_ctx *p = (rs__par_static_ctx *)c;
    int64_t b, e;
    rs_split_range(p->n, ith, nth, 1, &b, &e);
    if (b < e) p->fn(p->ctx, b, e, ith);
}

/* As rs_par_for, but share ith always gets the same fixed range: for reductions into
 * per-share partials, whose sum must not depend on which thread was faster. */
static inline void rs_par_for_static(rs_pool *pool, int64_t n, int64_t min_items, rs_range_fn fn,
                                     void *ctx) {
    if (n <= 0) return;
    if (!pool || rs_pool_size(pool) <= 1 || n < 2 * min_items) { fn(ctx, 0, n, 0); return; }
    rs__par_static_ctx p = { fn, ctx, n };
    rs_pool_run(pool, rs__par_static_worker, &p);
}

/* Runs on the calling thread (ith 0) when there is no pool or fewer than 2*min_items;
 * chunks of at least min_items go dynamically to the threads (rs_chunks), so fn must
 * write only its own range (per-ith scratch is fine; per-ith partial sums are not: use
 * rs_par_for_static). */
static inline void rs_par_for(rs_pool *pool, int64_t n, int64_t min_items, rs_range_fn fn,
                              void *ctx) {
    if (n <= 0) return;
    if (!pool || rs_pool_size(pool) <= 1 || n < 2 * min_items) { fn(ctx, 0, n, 0); return; }
    rs__par_ctx p;
    p.fn = fn;
    p.ctx = ctx;
    rs_chunks_init(&p.items, n, min_items, rs_pool_size(pool)); /* align >= 1 there */
    rs_pool_run(pool, rs__par_worker, &p);
}

/* ---- SIMD-friendly dot / axpy (GCC vector extensions; no -ffast-math needed).
 * The helpers are static inline, so the note GCC gives about the ABI of 32-byte vector
 * arguments on non-AVX targets does not concern us. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
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


/* ---- vectorisable transcendental functions (no libm calls, no branches, so loops
 * calling them vectorise at -O3 without -ffast-math). NaN in gives NaN out. */
static inline uint32_t rs__f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float rs__u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* e^x, relative error ~1 ulp (Cephes expf polynomial, Cody-Waite reduction); x is
 * clamped to [-87, 88] (so e^-inf gives ~1.6e-38, not 0: callers that need an exact
 * zero, like masked attention, set it themselves). */
static inline float rs__expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f; /* 1.5·2^23: adding it rounds to an integer */
    float v = x * 1.44269504088896341f + magic;
    float n = v - magic;
    uint32_t ni = rs__f2u(v) - rs__f2u(magic); /* n as an integer, two's complement */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * rs__u2f((ni + 127u) << 23);
}

/* the tanh-GELU's constants (ops.c's backward, ops_act.c's forward) */
#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_C 0.044715f

/* 1/(1+e^-x) */
static inline float rs__sigmoidf(float x) { return 1.0f / (1.0f + rs__expf(-x)); }

/* erfc(x) for x >= 0 (Numerical Recipes' erfcc Chebyshev fit, fractional error
 * < 1.2e-7 everywhere) */
static inline float rs__erfc_pos(float z) {
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    return t * rs__expf(-z * z + p);
}

/* Φ(x) = 0.5·erfc(−x/√2), the standard normal CDF, without cancellation for x < 0 */
static inline float rs__normcdf(float x) {
    float z = x * 0.70710678118654752f;
    float az = z < 0 ? -z : z;
    float e = rs__erfc_pos(az);
    return z < 0 ? 0.5f * e : 1.0f - 0.5f * e;
}


/* Σ x[i] in float SIMD lanes, blocks of 256 carried into a double total */
static inline double rs__sum(const float *x, int64_t n) {
    double total = 0;
    for (int64_t b = 0; b < n; b += 256) {
        int64_t e = b + 256 < n ? b + 256 : n, i = b;
        rs__v8 a0 = {0}, a1 = {0};
        for (; i + 16 <= e; i += 16) { a0 += rs__ld8(x + i); a1 += rs__ld8(x + i + 8); }
        a0 += a1;
        float s = ((a0[0] + a0[4]) + (a0[1] + a0[5])) + ((a0[2] + a0[6]) + (a0[3] + a0[7]));
        for (; i < e; i++) s += x[i];
        total += s;
    }
    return total;
}

/* max of x[0..n) (n >= 1); NaNs are skipped unless all are NaN */
static inline float rs__maxf(const float *x, int64_t n) {
    float m[8];
    for (int k = 0; k < 8; k++) m[k] = -INFINITY;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
    float r = -INFINITY;
    for (int k = 0; k < 8; k++) r = m[k] > r ? m[k] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

/* Σ e^(scale·x[i] − shift) without storing the terms */
static inline double rs__sumexp(const float *x, int64_t n, float scale, float shift) {
    double total = 0;
    for (int64_t b = 0; b < n; b += 256) {
        int64_t e = b + 256 < n ? b + 256 : n, i = b;
        rs__v8 acc = {0};
        for (; i + 8 <= e; i += 8) {
            float t[8];
            for (int k = 0; k < 8; k++) t[k] = rs__expf(scale * x[i + k] - shift);
            acc += rs__ld8(t);
        }
        float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (; i < e; i++) s += rs__expf(scale * x[i] - shift);
        total += s;
    }
    return total;
}


/* Σ (x[i] − m)² in float SIMD lanes, blocks of 256 carried into a double total */
static inline double rs__sumsq_c(const float *x, int64_t n, float m) {
    double total = 0;
    rs__v8 mv = {m, m, m, m, m, m, m, m};
    for (int64_t b = 0; b < n; b += 256) {
        int64_t e = b + 256 < n ? b + 256 : n, i = b;
        rs__v8 a0 = {0}, a1 = {0};
        for (; i + 16 <= e; i += 16) {
            rs__v8 d0 = rs__ld8(x + i) - mv, d1 = rs__ld8(x + i + 8) - mv;
            a0 += d0 * d0;
            a1 += d1 * d1;
        }
        a0 += a1;
        float s = ((a0[0] + a0[4]) + (a0[1] + a0[5])) + ((a0[2] + a0[6]) + (a0[3] + a0[7]));
        for (; i < e; i++) s += (x[i] - m) * (x[i] - m);
        total += s;
    }
    return total;
}


/* sqrt of 8 lanes (libm's sqrtf cannot be vectorised while it may set errno) */
#if defined(__AVX__)
#include <immintrin.h>
static inline rs__v8 rs__sqrt8(rs__v8 x) { return (rs__v8)_mm256_sqrt_ps((__m256)x); }
#else
static inline rs__v8 rs__sqrt8(rs__v8 x) {
    for (int k = 0; k < 8; k++) x[k] = sqrtf(x[k]);
    return x;
}
#endif

#endif
