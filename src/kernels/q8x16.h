/* q8x16.h - q8_0 weights repacked sixteen rows at a time for AVX-512 VNNI.
 *
 * rs_matmul_w's q8_0 kernels read a weight row's 32-value blocks one row at a time, so every
 * (activation row, weight row, block pair) costs a dpbusd plus a convert, a scale multiply
 * and an FMA, and a batch of M activation rows (the experts decoding together, or the
 * ViT's tokens) costs nearly M times one. The packed layout interleaves 16 weight rows:
 * for each group of 16 rows and each 32-block, 8 x 64 bytes hold, for k-quad q (values
 * 4q..4q+3) and row r, those 4 values of row r as unsigned bytes (q + 128); the 16 rows'
 * f16 scales of the block are stored in a second array. One dpbusd then multiplies the 16
 * rows' quads by one broadcast activation quad: 8 dpbusd + a convert, a multiply and an FMA
 * per (activation row, 16 weight rows, block), and each weight byte loaded serves every
 * activation row of the tile. Bytes are the same as q8_0 (16 x 34 per group and block).
 *
 * Numerics are those of rs_matmul_w's q8_0 path (quant.h): activations quantised to q8_0
 * (the same bytes), each block's dot product exact in int32 (sum (q_w + 128) q_x minus the
 * exact int32 128 sum q_x), scaled by d_w * d_x in float and summed over blocks in order
 * with an FMA. The plain C twin does the same operations in the same order, so the two
 * agree bit for bit; both are within quant.h's q8_0 bound of rs_matmul_w_ref.
 * With 16 or more activation rows and AMX-INT8 (rs_cpu_amx_ready), 16-row tiles run on AMX
 * (a record is an AMX B tile; TDPBSUD gives the same exact int32 block products, finished in
 * the same order): bit for bit the same result again.
 * On AMD, 1-3 activation rows (an expert batch) read each thread's chunk of groups as four
 * sequential weight streams at once (q8x16.c says why); the operations per output are unchanged.
 * Activation scratch lives on the caller's stack (RS_MATMUL_W_STACK bytes), M in tiles and
 * K in chunks as rs_matmul_w; only when 16 rows of a long K do not fit it and AMX runs are
 * 16 rows' scratch allocated. */
#ifndef RSMOE_KERNELS_Q8X16_H
#define RSMOE_KERNELS_Q8X16_H

#include "core/core.h"
#include "kernels/quant.h"

#define RS_Q8X16_ROWS 16

/* bytes of the packed form of an N x K q8_0 matrix; 0 when N % 16 or K % 32 (not packable) */
size_t rs_q8x16_bytes(int64_t N, int64_t K);
/* W: N rows of K q8_0 values (ggml layout). out: rs_q8x16_bytes(N, K) bytes, 64-byte aligned.
 * pool (may be NULL) shares the groups of 16 rows among its threads. */
rsmoe_status rs_q8x16_pack(const void *W, int64_t N, int64_t K, void *out, rs_pool *pool);
/* true when this CPU runs the packed kernel natively (AVX-512 F/BW/VL + VNNI), so packing
 * pays; elsewhere rs_matmul_q8x16 runs the plain C twin */
bool rs_q8x16_native(void);

/* y[M,N] = x[M,K] . W^T with W packed by rs_q8x16_pack; pool may be NULL */
void rs_matmul_q8x16(const void *Wp, const float *x, float *y, int64_t M, int64_t N, int64_t K,
                     rs_pool *pool);
/* y[i][M, N[i]] = x[M,K] . W_i^T for n <= RS_Q8X16_MAX_MATS matrices sharing the input (q, k
 * and v; gate and up): the activations quantised once and all matrices' columns shared among
 * the threads in one pool run. Each y[i] is bit for bit what rs_matmul_q8x16 gives. */
#define RS_Q8X16_MAX_MATS 4
void rs_matmul_q8x16_multi(int n, const void *const *Wp, const int64_t *N, float *const *y, const float *x,
                           int64_t M, int64_t K, rs_pool *pool);
/* forced variant: RS_QUANT_C = the plain C twin, RS_QUANT_AVX512_EXT = VNNI (C when the CPU
 * lacks it), anything else = the best available; scratch_bytes (0 = RS_MATMUL_W_STACK, at
 * most that) bounds the activation scratch, so tests can force M tiles and K chunks */
void rs_matmul_q8x16_isa(rs_quant_isa isa, const void *Wp, const float *x, float *y, int64_t M,
                         int64_t N, int64_t K, rs_pool *pool, size_t scratch_bytes);
/* how the VNNI kernel reads the weights for 1-3 activation rows: 0 = by CPU (four sequential
 * streams at once on AMD, one elsewhere), 1 = one stream, 2+ = four streams. The same bits
 * either way; for tests and benchmarks (process-wide, set it before products run). */
void rs_q8x16_set_streams(int n);

#endif
