/* gemm.h - fp32 matrix product.
 * rs_sgemm: OpenBLAS for large products when built with RSMOE_USE_BLAS, else the own
 * cache-blocked, packed-panel SIMD kernel (AVX-512 / AVX2+FMA / plain C chosen at run time
 * from rs_cpu()). rs_sgemm_ref is the plain triple-loop twin used by tests. */
#ifndef RSMOE_KERNELS_GEMM_H
#define RSMOE_KERNELS_GEMM_H

#include "core/core.h"

/* C[M,N] = alpha * op(A) * op(B) + beta * C; row-major with leading dimensions;
 * With RSMOE_USE_BLAS, products of M*N*K >= 32768 with a pool (rs_pool_new(1) for one
 * thread) go to OpenBLAS, run on rs_pool_size(pool) OpenBLAS threads; with pool == NULL
 * (e.g. from inside a pool worker) or few rows (M <= 4, C = A B^T) the own kernel runs.
 * op(A) is M x K (A stored K x M when transA), op(B) is K x N (B stored N x K when transB).
 * beta == 0 means C is not read (may hold NaN). pool may be NULL.
 * The common linear layer y[M,N] = x[M,K] * W[N,K]^T is transA=false, transB=true.
 * K == 0 (or alpha == 0) only scales C by beta; M or N == 0 is a no-op. Negative sizes,
 * NULL operands or leading dimensions below the row width record an error (rs_error) and
 * leave C untouched. C must not overlap A or B.
 * Thread-safe: concurrent calls from different threads are fine (each thread packs into
 * its own workspace, about 1.5 MiB, allocated on its first call and kept until it exits);
 * from inside a pool worker pass pool = NULL. In BLAS builds a call with a pool sets
 * OpenBLAS's (process-wide) thread count to rs_pool_size(pool) when it differs from the
 * last one set, and OpenBLAS is only ever called from the calling thread. */
void rs_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc, rs_pool *pool);

/* the plain triple-loop reference twin (double accumulation) */
void rs_sgemm_ref(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc);

/* own implementation, bypassing BLAS (exposed so tests and bench can compare paths) */
void rs_sgemm_own(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc, rs_pool *pool);

/* The own kernel's instruction-set variants (for tests and bench). */
typedef enum {
    RS_GEMM_AUTO = 0,   /* best the CPU supports */
    RS_GEMM_C = 1,      /* plain C micro-kernel */
    RS_GEMM_AVX2 = 2,   /* AVX2 + FMA */
    RS_GEMM_AVX512 = 3, /* AVX-512F */
    /* for tests only: the AVX-512 kernel's code (and its blocking and packing) with each
     * 512-bit vector emulated by two AVX2 halves, so it is checked on CPUs without AVX-512 */
    RS_GEMM_AVX512_EMU = 4,
} rs_gemm_isa;
/* true when this CPU (and this build) can run the variant */
bool rs_gemm_isa_available(rs_gemm_isa isa);
const char *rs_gemm_isa_name(rs_gemm_isa isa);
/* the variant RS_GEMM_AUTO resolves to */
rs_gemm_isa rs_gemm_isa_best(void);
/* rs_sgemm_own forced onto one variant (falls back to AUTO when unavailable) */
void rs_sgemm_own_isa(rs_gemm_isa isa, bool transA, bool transB, int64_t M, int64_t N,
                      int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float beta, float *C, int64_t ldc, rs_pool *pool);
/* true when rs_sgemm was built with the OpenBLAS path and OpenBLAS could be opened (dlopen, on
 * the first call of this or of anything that needs it) */
bool rs_sgemm_has_blas(void);
/* the name of the core OpenBLAS chose for this CPU ("Haswell", "SkylakeX", ...), NULL in builds
 * without it or where it cannot be opened */
const char *rs_sgemm_blas_core(void);
/* true when rs_sgemm gives its large products to OpenBLAS on this CPU: built with it, and the
 * own kernel not AVX-512 (rs_gemm_isa_best), and OpenBLAS's core at least AVX2 where the own
 * kernel is AVX2 */
bool rs_sgemm_blas_preferred(void);
/* C = alpha op(A) op(B) + beta C by OpenBLAS whatever its core, with the pool's thread count
 * (one thread for pool == NULL); never from a pool worker. false, C untouched, in builds without
 * BLAS, where OpenBLAS cannot be opened, or when a size does not fit an int or the operands are
 * bad (error recorded). For benchmarks and tests; rs_sgemm chooses itself. */
bool rs_sgemm_blas(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc, rs_pool *pool);

#endif
