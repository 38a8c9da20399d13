/* quant.h - quantised and half-precision weights: q8_0 (ggml's), f16, bf16.
 * Row conversions, and the linear-layer product y[M,N] = x[M,K] · Wᵀ with W stored as
 * f32 / f16 / bf16 / q8_0 (N rows of K values, ggml layout ne = {K, N}).
 *
 * Numerics of rs_matmul_w, with S = sum_k |x_k w_k| (w as stored), u = 2^-24; tested against
 * rs_matmul_w_ref per output element:
 *  - f32:  M <= RS_MATMUL_W_F32_SMALL_M (decode): a weight-streaming kernel like the f16 one
 *          (rs_sgemm is tuned for large products); larger M: rs_sgemm.  |err| <= (K+4) u S.
 *  - f16:  weights widened exactly to f32 (F16C), float FMA with the float activations:
 *          |err| <= (K+4) u S.
 *  - bf16: with AVX-512 BF16 the activations are rounded to bf16 (nearest even) and
 *          multiplied with _mm512_dpbf16_ps: |err| <= (2^-8 + (K+4) u) S; otherwise weights
 *          are widened exactly and FMA'd with the float activations: (K+4) u S.
 *  - q8_0: as ggml: each activation row is quantised to q8_0 too (d = amax/127 stored as
 *          f16, q = roundf(x/d)); block dot products are exact int32 (VNNI dpbusd /
 *          maddubs), scaled by d_w*d_x in float. Per 32-block b of x with step d_b the
 *          quantised x^ satisfies |x - x^| <= e_b = d_b/2 + 127 max(2^-11 d_b, 2^-25) (the
 *          second term: d stored as f16), so
 *          |err| <= sum_b e_b sum_{k in b} |w_k| + (K+4) u S^, and against the exact
 *          product with x^: |err| <= (K+4) u S^.
 * Activation scratch: the quantised / bf16 copies of x live in a 64 KiB buffer on the
 * caller's stack (RS_MATMUL_W_STACK); M is processed in tiles of as many rows as fit, and a
 * K too long for one row is processed in K chunks accumulated into y. Nothing is allocated.
 * All functions are thread-safe; the ISA choice is per call (or the process-wide default). */
#ifndef RSMOE_KERNELS_QUANT_H
#define RSMOE_KERNELS_QUANT_H

#include "core/core.h"

/* f32 -> q8_0, n % 32 == 0 (else an error is recorded and nothing written); ggml's
 * rounding: d = amax/127 (stored as f16), q = roundf(x * (1/d)) (ties away from zero); an
 * all-zero block has d = 0, q = 0. Every ISA variant gives the same bytes for finite input
 * (non-finite input gives unspecified q). */
void rs_quantize_row_q8_0(const float *x, rs_block_q8_0 *y, int64_t n);
void rs_dequantize_row_q8_0(const rs_block_q8_0 *x, float *y, int64_t n);
/* f32 -> f32 / f16 / bf16 / q8_0 (round to nearest even for f16 and bf16, as core.h) */
void rs_convert_row(rs_dtype to, const float *x, void *y, int64_t n);
/* any -> f32 */
void rs_row_to_f32(rs_dtype from, const void *x, float *y, int64_t n);

/* y[M,N] = x[M,K] · Wᵀ; W holds N rows of K values of type wt (K % 32 == 0 for q8_0);
 * x is row-major [M,K], y row-major [M,N] (overwritten). pool may be NULL.
 * An unknown wt, a q8_0 K not a multiple of 32, or M, N, K <= 0 leave y untouched
 * (with K <= 0 and M, N > 0, y is set to 0). */
void rs_matmul_w(rs_dtype wt, const void *W, const float *x, float *y,
                 int64_t M, int64_t N, int64_t K, rs_pool *pool);
/* plain C twin: weights dequantised to float, float activations, double accumulation */
void rs_matmul_w_ref(rs_dtype wt, const void *W, const float *x, float *y,
                     int64_t M, int64_t N, int64_t K);

/* ---------------------------------------------------------------- ISA variants */
typedef enum {
    RS_QUANT_AUTO = 0,       /* best the CPU supports (or the rs_quant_set_isa default) */
    RS_QUANT_C = 1,          /* plain C */
    RS_QUANT_AVX2 = 2,       /* AVX2 + FMA + F16C */
    RS_QUANT_AVX512 = 3,     /* AVX-512 F/BW/VL (q8_0 by maddubs, bf16 widened + FMA) */
    RS_QUANT_AVX512_EXT = 4, /* AVX-512 + VNNI dpbusd for q8_0 and/or BF16 dpbf16 for bf16,
                              * each where the CPU has it */
} rs_quant_isa;
bool rs_quant_isa_available(rs_quant_isa isa);   /* this CPU and build can run it */
const char *rs_quant_isa_name(rs_quant_isa isa);
rs_quant_isa rs_quant_isa_best(void);            /* what AUTO resolves to */
/* Process-wide default for RS_QUANT_AUTO (RS_QUANT_AUTO restores the best). Returns
 * false (and changes nothing) when the variant is not available. */
bool rs_quant_set_isa(rs_quant_isa isa);
/* rs_matmul_w forced onto one variant (AUTO when unavailable) */
void rs_matmul_w_isa(rs_quant_isa isa, rs_dtype wt, const void *W, const float *x, float *y,
                     int64_t M, int64_t N, int64_t K, rs_pool *pool);
/* rs_quantize_row_q8_0 forced onto one variant (results are identical on all) */
void rs_quantize_row_q8_0_isa(rs_quant_isa isa, const float *x, rs_block_q8_0 *y, int64_t n);

#define RS_MATMUL_W_STACK 65536 /* bytes of activation scratch on the caller's stack */
#define RS_MATMUL_W_F32_SMALL_M 8 /* f32 weights: own kernel up to this M, rs_sgemm above */

/* ---------------------------------------------------------------- internal
 * Shared by quant.c and the per-ISA quant_*.c files only. */
#ifdef RS_QUANT_INTERNAL
/* One call of a kernel computes y[m][n] (+)= dot(x row m, W row n) over one K chunk for
 * m < mr (mr <= RS_QK_MR) and n in [n0, n1). */
#define RS_QK_MR 4
typedef struct {
    const uint8_t *W;          /* weight row 0 at this K chunk */
    size_t wrow;               /* bytes between weight rows */
    int64_t kc;                /* values in this K chunk (q8_0: a multiple of 32) */
    const float *x;            /* f32 activations (f16 / bf16-widening paths) */
    int64_t ldx;
    const rs_block_q8_0 *xq;   /* q8_0 activations: row m at xq + m * xq_ld */
    const float *xd;           /* their scales as float: row m at xd + m * xq_ld */
    const float *xd16;         /* scales of block pairs, 8 lanes each: row m at xd16 + m * xd16_ld */
    const int8_t *xqs;         /* the q8_0 values contiguous, 64 per block pair (an odd last
                                * block padded with 0): row m at xqs + m * xqs_ld */
    int64_t xq_ld, xd16_ld, xqs_ld;
    const uint16_t *xb;        /* bf16 activations (dpbf16 path): row m at xb + m * xb_ld */
    int64_t xb_ld;
    float *y;                  /* y row 0 at column 0 */
    int64_t ldy;
    int accumulate;            /* add to y instead of storing */
} rs_qk_args;
typedef void (*rs_qk_fn)(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
typedef void (*rs_qquant_fn)(const float *x, rs_block_q8_0 *y, int64_t n);

/* one variant's kernels */
typedef struct {
    rs_quant_isa isa;
    rs_qk_fn q8, f16, bf16, f32;
    rs_qquant_fn quant;
    bool bf16_acts; /* the bf16 kernel takes bf16 activations (xb) instead of x */
    bool want_xd16; /* the q8 kernel reads xd16 and xqs */
} rs_quant_kernels;
void rs_quant_get_kernels(rs_quant_isa isa, rs_quant_kernels *k);
/* rs_matmul_w's driver on explicit kernels (f32 weights: always the own kernel) */
void rs_matmul_w_kernels(const rs_quant_kernels *k, rs_dtype wt, const void *W, const float *x,
                         float *y, int64_t M, int64_t N, int64_t K, rs_pool *pool);

void rs_qk_q8_avx2(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_qk_f16_avx2(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_qk_bf16_avx2(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_qk_f32_avx2(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_quantize_q8_avx2(const float *x, rs_block_q8_0 *y, int64_t n);
void rs_f32_to_f16_row_avx2(const float *x, uint16_t *y, int64_t n);
void rs_f16_to_f32_row_avx2(const uint16_t *x, float *y, int64_t n);

void rs_qk_q8_avx512(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_qk_q8_avx512vnni(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_qk_f16_avx512(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_qk_bf16_avx512(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_qk_f32_avx512(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
void rs_qk_bf16_avx512bf16(const rs_qk_args *a, int mr, int64_t n0, int64_t n1);
#endif

#endif
