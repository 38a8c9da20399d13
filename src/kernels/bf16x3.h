/* bf16x3.h - f32 weight matrices repacked as bf16 pairs for AMX-BF16: y = x . W^T with three
 * bf16 products per term, close to f32 and over twice as fast as the f32 FMA path.
 *
 * Every f32 value v (weight or activation) is split into two bf16 values: hi = bf16(v) and
 * lo = bf16(v - hi) (round to nearest even both times; v - hi is exact in f32). Then
 *     x w  ~  xh wh + xh wl + xl wh
 * (the fourth product xl wl, at most 2^-18 |x w|, is dropped). Each bf16 product is exact in
 * f32 and AMX's TDPBF16PS accumulates them in f32. Per output element, with S = sum_k |x_k w_k|
 * and u = 2^-24:
 *     |y - exact| <= 2^-16 S + (3K + 4) u S      (about 1.5e-5 S; f32 FMA: (K + 4) u S)
 * for finite values below 3.3e38 in magnitude (bf16's largest finite value; the AVX-512 BF16
 * conversion and AMX also treat f32 values below 2^-126 in magnitude, denormals, as zero, an
 * absolute change below 2^-126 |w| per term).
 *
 * Packed layout (same bytes as f32: N * K * 4): groups of 16 weight rows (output columns); for
 * each group g and 32-value block b a record of 1024 bf16 values at (g * K/32 + b) * 1024: the
 * hi values as an AMX B tile (16 rows = value pairs p of the block, 16 columns = weight rows r,
 * element [p][r][e] = hi(W[16g + r][32b + 2p + e])), then the lo values the same way.
 *
 * The product runs on AMX where the CPU has AMX-BF16 and AVX-512 BF16 (rs_bf16x3_native);
 * elsewhere rs_matmul_bf16x3 runs the plain C twin on the same packed values (same terms,
 * double accumulation), so a packed matrix works on any CPU. M is processed in balanced chunks
 * of at most 384 rows and K in chunks of 768 values (so that the activation slab and the weight
 * panel stay in L2); the activations' hi/lo copies live in a per-thread buffer (4 * 384 * K
 * bytes at most) kept between calls. Thread-safe. */
#ifndef RSMOE_KERNELS_BF16X3_H
#define RSMOE_KERNELS_BF16X3_H

#include "core/core.h"

#define RS_BF16X3_ROWS 16

/* bytes of the packed form of an N x K f32 matrix; 0 when N % 16 or K % 32 (not packable) */
size_t rs_bf16x3_bytes(int64_t N, int64_t K);
/* W: N rows of K f32 values. out: rs_bf16x3_bytes(N, K) bytes, 64-byte aligned. pool may be
 * NULL. */
rsmoe_status rs_bf16x3_pack(const float *W, int64_t N, int64_t K, void *out, rs_pool *pool);
/* true when the AMX kernel runs here (AMX-BF16 + AVX-512 BF16, tile state granted by Linux;
 * RSMOE_NO_AMX=1 turns it off), so packing pays */
bool rs_bf16x3_native(void);

/* y[M,N] = x[M,K] . W^T with W packed by rs_bf16x3_pack (y overwritten); pool may be NULL */
void rs_matmul_bf16x3(const void *Wp, const float *x, float *y, int64_t M, int64_t N, int64_t K,
                      rs_pool *pool);
/* forced variant: native = false runs the plain C twin (also where AMX is missing) */
void rs_matmul_bf16x3_isa(bool native, const void *Wp, const float *x, float *y, int64_t M,
                          int64_t N, int64_t K, rs_pool *pool);
/* the split of one value as used by both variants (hi, lo as bf16 bits) */
void rs_bf16x3_split(float v, uint16_t *hi, uint16_t *lo);

#endif
