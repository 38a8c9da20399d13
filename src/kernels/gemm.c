/* gemm.c - fp32 matrix product C = alpha * op(A) * op(B) + beta * C (row-major).
 *
 * rs_sgemm sends large products given a pool to OpenBLAS when built with RSMOE_USE_BLAS,
 * and everything else to the own kernel. The own kernel (rs_sgemm_own) is a BLIS-style blocked product,
 * arranged for row-major C with the vector dimension along N:
 *
 *   for m0 in M step MC            (A block, MC x KC, packed in MR-row panels)
 *     for k0 in K step KC
 *       pack A[m0.., k0..]
 *       for n0 in N step NC        (B block, KC x NC, packed in NR-column panels, in L2)
 *         pack B[k0.., n0..]
 *         for each MR-row panel    (its KC x MR A micro-panel stays in L1)
 *           for each NR-col panel: micro-kernel, an MR x NR tile of C in registers
 *
 * The micro-kernels are AVX-512 (6 x 32), AVX2+FMA (6 x 16) and plain C (4 x 16); the
 * ISA-specific ones are compiled with target attributes and chosen at run time from rs_cpu(),
 * so the dispatch is real whatever -march says. Threads split N (or M when N is narrow) into
 * disjoint rectangles of C; each thread packs into its own workspace, cached per thread
 * (allocated on first use and grown, never per call). Edge tiles are computed whole into a
 * small buffer (the packs are zero-padded) and merged.
 *
 * The few-row linear layer (M <= 4, C = A B^T: decoding) skips packing: dot products along
 * K straight from the rows of A and B, threads splitting N. In BLAS builds rs_sgemm keeps
 * that case too (OpenBLAS 0.3.21 is 3-4x slower on it). */
#include "kernels/gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define GEMM_X86 1
#include <immintrin.h>
#endif

#ifdef RSMOE_USE_BLAS
#include <cblas.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#ifndef RSMOE_OPENBLAS_SO
#define RSMOE_OPENBLAS_SO "libopenblas.so.0"
#endif

/* OpenBLAS opened on first need (see the Makefile): the one the build found, else by soname;
 * absent or incomplete, rs_sgemm keeps everything on the own kernel. */
static struct {
    void *lib;
    __typeof__(cblas_sgemm) *sgemm;
    void (*set_num_threads)(int);
    char *(*get_corename)(void);
} g_ob;
static pthread_once_t g_ob_once = PTHREAD_ONCE_INIT;

static void ob_open(void) {
    void *h = dlopen(RSMOE_OPENBLAS_SO, RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    g_ob.sgemm = (__typeof__(g_ob.sgemm))dlsym(h, "cblas_sgemm");
    g_ob.set_num_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    g_ob.get_corename = (char *(*)(void))dlsym(h, "openblas_get_corename");
    if (g_ob.sgemm && g_ob.set_num_threads && g_ob.get_corename) g_ob.lib = h;
    else dlclose(h);
}

static bool ob_ready(void) {
    pthread_once(&g_ob_once, ob_open);
    return g_ob.lib != NULL;
}
#endif

/* ---------------------------------------------------------------- reference */

void rs_sgemm_ref(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = transA ? A[k * lda + i] : A[i * lda + k];
                double b = transB ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            double c = (double)alpha * s;
            if (beta != 0.0f) c += (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)c;
        }
    }
}

/* ---------------------------------------------------------------- ISA descriptions */

/* micro-kernel: the mr x NR tile (mr <= MR rows; the rest of the panel is not computed)
 * C = alpha * Ap * Bp + beta * C over kc steps, where Ap is kc x MR (k-major) and Bp
 * kc x NR (k-major); beta == 0 does not read C. */
typedef void (*gemm_kern_fn)(int64_t kc, const float *Ap, const float *Bp, float *C,
                             int64_t ldc, float alpha, float beta, int mr);
/* packers: op(A)[m0+r, k0+k] -> dst[p*kc*MR + k*MR + r], op(B)[k0+k, n0+c] -> dst[p*kc*NR + k*NR + c] */
typedef void (*gemm_pack_fn)(bool trans, const float *X, int64_t ldx, int64_t r0, int64_t nr,
                             int64_t k0, int64_t kc, int width, float *dst);

typedef struct {
    rs_gemm_isa isa;
    int mr, nr;
    int64_t kc, mc, nc;
    gemm_kern_fn kern;
    gemm_pack_fn packA, packB;
} gemm_isa_desc;

#define GEMM_MAX_MR 16
#define GEMM_MAX_NR 32

/* --- plain C --- */

#define C_MR 4
#define C_NR 16

static void kern_c(int64_t kc, const float *restrict Ap, const float *restrict Bp,
                   float *restrict C, int64_t ldc, float alpha, float beta, int mr) {
    float acc[C_MR][C_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < mr; i++) {
            float a = Ap[i];
            for (int j = 0; j < C_NR; j++) acc[i][j] += a * Bp[j];
        }
        Ap += C_MR;
        Bp += C_NR;
    }
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < C_NR; j++) c[j] = alpha * acc[i][j];
        else
            for (int j = 0; j < C_NR; j++) c[j] = alpha * acc[i][j] + beta * c[j];
    }
}

/* Packs rows r0..r0+nr of op(X) (op(X)[r,k] = trans ? X[k*ldx+r] : X[r*ldx+k]) over columns
 * k0..k0+kc into panels of `width` rows, k-major, zero-padded. Used for A (width MR) and, with
 * trans flipped, for B (op(B)[k,c] = op'(B)[c,k]; width NR). */
static void pack_c(bool trans, const float *X, int64_t ldx, int64_t r0, int64_t nr, int64_t k0,
                   int64_t kc, int width, float *dst) {
    for (int64_t p = 0; p < nr; p += width) {
        int w = (int)(nr - p < width ? nr - p : width);
        float *d = dst + (p / width) * kc * width;
        if (trans) {
            /* row r of op(X) is column r of X: for each k, w contiguous values */
            for (int64_t k = 0; k < kc; k++) {
                const float *s = X + (k0 + k) * ldx + r0 + p;
                float *dk = d + k * width;
                int r = 0;
                for (; r < w; r++) dk[r] = s[r];
                for (; r < width; r++) dk[r] = 0.0f;
            }
        } else {
            for (int r = 0; r < w; r++) {
                const float *s = X + (r0 + p + r) * ldx + k0;
                for (int64_t k = 0; k < kc; k++) d[k * width + r] = s[k];
            }
            for (int r = w; r < width; r++)
                for (int64_t k = 0; k < kc; k++) d[k * width + r] = 0.0f;
        }
    }
}

#ifdef GEMM_X86
/* --- AVX2 + FMA: 6 x 16 (its kernel is defined below with the AVX-512 one) --- */

#define AVX2_MR 6
#define AVX2_NR 16
#define TGT_AVX2 __attribute__((target("avx2,fma")))
#define TGT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

/* in-register 8 x 8 transpose: t[i] holds row i on entry, column i on return */
TGT_AVX2 static inline void tr8_regs_avx2(__m256 t[8]) {
    __m256 a0 = _mm256_unpacklo_ps(t[0], t[1]), a1 = _mm256_unpackhi_ps(t[0], t[1]);
    __m256 a2 = _mm256_unpacklo_ps(t[2], t[3]), a3 = _mm256_unpackhi_ps(t[2], t[3]);
    __m256 a4 = _mm256_unpacklo_ps(t[4], t[5]), a5 = _mm256_unpackhi_ps(t[4], t[5]);
    __m256 a6 = _mm256_unpacklo_ps(t[6], t[7]), a7 = _mm256_unpackhi_ps(t[6], t[7]);
    __m256 u0 = _mm256_shuffle_ps(a0, a2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u1 = _mm256_shuffle_ps(a0, a2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u2 = _mm256_shuffle_ps(a1, a3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u3 = _mm256_shuffle_ps(a1, a3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u4 = _mm256_shuffle_ps(a4, a6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u5 = _mm256_shuffle_ps(a4, a6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u6 = _mm256_shuffle_ps(a5, a7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u7 = _mm256_shuffle_ps(a5, a7, _MM_SHUFFLE(3, 2, 3, 2));
    t[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    t[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    t[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    t[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    t[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    t[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    t[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    t[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* 8 x 8 transpose of rows s[0..7] (stride lds) into d[0..7] (stride ldd) */
TGT_AVX2 static inline void tr8x8_avx2(const float *s, int64_t lds, float *d, int64_t ldd) {
    __m256 r0 = _mm256_loadu_ps(s + 0 * lds), r1 = _mm256_loadu_ps(s + 1 * lds);
    __m256 r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds);
    __m256 r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    _mm256_storeu_ps(d + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* As pack_c, with the row-gathering (!trans) case of full panels done by 8 x 8 AVX2
 * transposes when width is a multiple of 8 (the B side: NR = 16 or 32), and the trans case
 * by vector copies. */
TGT_AVX2 static void pack_avx2(bool trans, const float *X, int64_t ldx, int64_t r0, int64_t nr,
                               int64_t k0, int64_t kc, int width, float *dst) {
    for (int64_t p = 0; p < nr; p += width) {
        int w = (int)(nr - p < width ? nr - p : width);
        float *d = dst + (p / width) * kc * width;
        if (trans) {
            for (int64_t k = 0; k < kc; k++) {
                const float *s = X + (k0 + k) * ldx + r0 + p;
                float *dk = d + k * width;
                int r = 0;
                for (; r + 8 <= w; r += 8) _mm256_storeu_ps(dk + r, _mm256_loadu_ps(s + r));
                for (; r < w; r++) dk[r] = s[r];
                for (; r < width; r++) dk[r] = 0.0f;
            }
        } else if (w == width && (width & 7) == 0) {
            const float *s = X + (r0 + p) * ldx + k0;
            int64_t k = 0, kc8 = kc & ~(int64_t)7;
            /* one group of 8 rows at a time (8 read streams), prefetching each row a few
             * cache lines ahead */
            for (int r = 0; r < width; r += 8) {
                const float *sr = s + r * ldx;
                for (k = 0; k < kc8; k += 8) {
                    if ((k & 15) == 0)
                        for (int i = 0; i < 8; i++)
                            _mm_prefetch((const char *)(sr + i * ldx + k + 64), _MM_HINT_T0);
                    tr8x8_avx2(sr + k, ldx, d + k * width + r, width);
                }
            }
            for (k = kc8; k < kc; k++)
                for (int r = 0; r < width; r++) d[k * width + r] = s[r * ldx + k];
        } else if (w == width && width < 8) {
            /* the A side (MR = 6): 8 x 8 transposes of `width` rows (the rest zero); each
             * transposed row is stored as 8 floats whose tail the next row overwrites, the
             * last one with a mask */
            const float *s = X + (r0 + p) * ldx + k0;
            const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(width),
                                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            int64_t k = 0, kc8 = kc & ~(int64_t)7;
            for (; k < kc8; k += 8) {
                __m256 t[8];
                for (int i = 0; i < 8; i++)
                    t[i] = i < width ? _mm256_loadu_ps(s + i * ldx + k) : _mm256_setzero_ps();
                tr8_regs_avx2(t);
                float *dk = d + k * width;
                for (int j = 0; j < 7; j++) _mm256_storeu_ps(dk + j * width, t[j]);
                _mm256_maskstore_ps(dk + 7 * width, mask, t[7]);
            }
            for (; k < kc; k++)
                for (int r = 0; r < width; r++) d[k * width + r] = s[r * ldx + k];
        } else {
            for (int r = 0; r < w; r++) {
                const float *s = X + (r0 + p + r) * ldx + k0;
                for (int64_t k = 0; k < kc; k++) d[k * width + r] = s[k];
            }
            for (int r = w; r < width; r++)
                for (int64_t k = 0; k < kc; k++) d[k * width + r] = 0.0f;
        }
    }
}

/* --- The 6 x (2 vectors) micro-kernel: AVX2 6 x 16, AVX-512 6 x 32 ---
 * 12 accumulators: independent FMA chains covering latency x throughput (4 x 2) on
 * two-FMA-unit cores. MR = 6 wastes little on the model's row counts (257 = 43 x 6 - 1,
 * 197 = 33 x 6 - 1) and a last panel of fewer rows computes only those (`rows`, a constant
 * in each specialisation). The body is one macro instantiated with AVX2 intrinsics, with
 * AVX-512 ones, and with a 512-bit vector emulated by two AVX2 halves (RS_GEMM_AVX512_EMU)
 * so that the AVX-512 instantiation's exact code is tested on CPUs without AVX-512. */

#define AVX512_MR 6
#define AVX512_NR 32

#define K6_ROW(i, x0, x1, o, SET1, FMA)                                                         \
    if (rows > (i)) {                                                                            \
        a = SET1(Ap[(o) * 6 + (i)]);                                                             \
        x0 = FMA(a, b0, x0);                                                                     \
        x1 = FMA(a, b1, x1);                                                                     \
    }
#define K6_STEP(o, VT, VL, LOAD, SET1, FMA)                                                     \
    do {                                                                                         \
        VT b0 = LOAD(Bp + (o) * 2 * (VL)), b1 = LOAD(Bp + (o) * 2 * (VL) + (VL)), a;             \
        K6_ROW(0, c00, c01, o, SET1, FMA) K6_ROW(1, c10, c11, o, SET1, FMA)                      \
        K6_ROW(2, c20, c21, o, SET1, FMA) K6_ROW(3, c30, c31, o, SET1, FMA)                      \
        K6_ROW(4, c40, c41, o, SET1, FMA) K6_ROW(5, c50, c51, o, SET1, FMA)                      \
    } while (0)
/* row i of the tile: C = alpha * acc + beta * C (C not read when beta == 0) */
#define K6_OUT(i, x0, x1, VT, VL, LOADU, STOREU, FMA, MUL)                                      \
    if (rows > (i)) {                                                                            \
        float *ci = C + (i) * ldc;                                                               \
        VT r0 = MUL(va, x0), r1 = MUL(va, x1);                                                   \
        if (beta != 0.0f) {                                                                      \
            r0 = FMA(vb, LOADU(ci), r0);                                                         \
            r1 = FMA(vb, LOADU(ci + (VL)), r1);                                                  \
        }                                                                                        \
        STOREU(ci, r0);                                                                          \
        STOREU(ci + (VL), r1);                                                                   \
    }

#define DEFINE_KERN_6X2V_ROWS(NAME, ATTR, VT, VL, LOAD, LOADU, STOREU, SET1, ZERO, FMA, MUL, PREFETCH) \
    ATTR static inline __attribute__((always_inline)) void NAME##_rows(                          \
        int64_t kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,       \
        int64_t ldc, float alpha, float beta, const int rows) {                                  \
        VT c00 = ZERO(), c01 = ZERO(), c10 = ZERO(), c11 = ZERO(), c20 = ZERO(), c21 = ZERO();   \
        VT c30 = ZERO(), c31 = ZERO(), c40 = ZERO(), c41 = ZERO(), c50 = ZERO(), c51 = ZERO();   \
        for (int i = 0; i < rows; i++) {                                                         \
            PREFETCH(C + i * ldc);                                                               \
            PREFETCH(C + i * ldc + 2 * (VL) - 1);                                                \
        }                                                                                        \
        int64_t k = 0;                                                                           \
        for (; k + 4 <= kc; k += 4) {                                                            \
            /* the next 4 steps' B, 8 steps ahead */                                             \
            for (int l = 0; l < 2 * (VL) * 4 / 16; l++) PREFETCH(Bp + 2 * (VL) * 8 + 16 * l);    \
            K6_STEP(0, VT, VL, LOAD, SET1, FMA);                                                 \
            K6_STEP(1, VT, VL, LOAD, SET1, FMA);                                                 \
            K6_STEP(2, VT, VL, LOAD, SET1, FMA);                                                 \
            K6_STEP(3, VT, VL, LOAD, SET1, FMA);                                                 \
            Ap += 4 * 6;                                                                         \
            Bp += 4 * 2 * (VL);                                                                  \
        }                                                                                        \
        for (; k < kc; k++) {                                                                    \
            K6_STEP(0, VT, VL, LOAD, SET1, FMA);                                                 \
            Ap += 6;                                                                             \
            Bp += 2 * (VL);                                                                      \
        }                                                                                        \
        VT va = SET1(alpha), vb = SET1(beta);                                                    \
        K6_OUT(0, c00, c01, VT, VL, LOADU, STOREU, FMA, MUL)                                     \
        K6_OUT(1, c10, c11, VT, VL, LOADU, STOREU, FMA, MUL)                                     \
        K6_OUT(2, c20, c21, VT, VL, LOADU, STOREU, FMA, MUL)                                     \
        K6_OUT(3, c30, c31, VT, VL, LOADU, STOREU, FMA, MUL)                                     \
        K6_OUT(4, c40, c41, VT, VL, LOADU, STOREU, FMA, MUL)                                     \
        K6_OUT(5, c50, c51, VT, VL, LOADU, STOREU, FMA, MUL)                                     \
    }

#define DEFINE_KERN_6X2V_DISPATCH(NAME, ATTR)                                                  \
    /* the full panel on its own (not inlined with the partial ones: better register use) */  \
    ATTR __attribute__((noinline)) static void NAME##_full(                                      \
        int64_t kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,       \
        int64_t ldc, float alpha, float beta) {                                                  \
        NAME##_rows(kc, Ap, Bp, C, ldc, alpha, beta, 6);                                         \
    }                                                                                            \
    ATTR static void NAME(int64_t kc, const float *restrict Ap, const float *restrict Bp,         \
                          float *restrict C, int64_t ldc, float alpha, float beta, int mr) {     \
        if (mr >= 6) {                                                                           \
            NAME##_full(kc, Ap, Bp, C, ldc, alpha, beta);                                        \
            return;                                                                              \
        }                                                                                        \
        switch (mr) {                                                                            \
        case 1: NAME##_rows(kc, Ap, Bp, C, ldc, alpha, beta, 1); break;                          \
        case 2: NAME##_rows(kc, Ap, Bp, C, ldc, alpha, beta, 2); break;                          \
        case 3: NAME##_rows(kc, Ap, Bp, C, ldc, alpha, beta, 3); break;                          \
        case 4: NAME##_rows(kc, Ap, Bp, C, ldc, alpha, beta, 4); break;                          \
        default: NAME##_rows(kc, Ap, Bp, C, ldc, alpha, beta, 5); break;                         \
        }                                                                                        \
    }

#define PF_T0(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
/* AVX2: the partial panels from the macro; the full one hand-written (GCC allocates its
 * 16 registers better there: 15% faster than the macro's, which spills) */
DEFINE_KERN_6X2V_ROWS(kern_avx2, TGT_AVX2, __m256, 8, _mm256_load_ps, _mm256_loadu_ps, _mm256_storeu_ps,
                 _mm256_set1_ps, _mm256_setzero_ps, _mm256_fmadd_ps, _mm256_mul_ps, PF_T0)

TGT_AVX2 static void kern_avx2_full(int64_t kc, const float *restrict Ap, const float *restrict Bp,
                               float *restrict C, int64_t ldc, float alpha, float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < AVX2_MR; i++) _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
#define AVX2_STEP(o)                                                         \
    do {                                                                     \
        __m256 b0 = _mm256_load_ps(Bp + (o) * 16), b1 = _mm256_load_ps(Bp + (o) * 16 + 8); \
        __m256 a;                                                            \
        a = _mm256_broadcast_ss(Ap + (o) * 6 + 0);                           \
        c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01); \
        a = _mm256_broadcast_ss(Ap + (o) * 6 + 1);                           \
        c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11); \
        a = _mm256_broadcast_ss(Ap + (o) * 6 + 2);                           \
        c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21); \
        a = _mm256_broadcast_ss(Ap + (o) * 6 + 3);                           \
        c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31); \
        a = _mm256_broadcast_ss(Ap + (o) * 6 + 4);                           \
        c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41); \
        a = _mm256_broadcast_ss(Ap + (o) * 6 + 5);                           \
        c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51); \
    } while (0)
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        _mm_prefetch((const char *)(Bp + 64 * 4), _MM_HINT_T0);
        AVX2_STEP(0); AVX2_STEP(1); AVX2_STEP(2); AVX2_STEP(3);
        Ap += 4 * 6;
        Bp += 4 * 16;
    }
    for (; k < kc; k++) {
        AVX2_STEP(0);
        Ap += 6;
        Bp += 16;
    }
#undef AVX2_STEP
    __m256 va = _mm256_set1_ps(alpha);
#define AVX2_OUT(i, x0, x1)                                                           \
    do {                                                                              \
        float *ci = C + (i) * ldc;                                                    \
        __m256 r0 = _mm256_mul_ps(va, x0), r1 = _mm256_mul_ps(va, x1);                \
        if (beta != 0.0f) {                                                           \
            __m256 vb = _mm256_set1_ps(beta);                                         \
            r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);                        \
            r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);                    \
        }                                                                             \
        _mm256_storeu_ps(ci, r0);                                                     \
        _mm256_storeu_ps(ci + 8, r1);                                                 \
    } while (0)
    AVX2_OUT(0, c00, c01); AVX2_OUT(1, c10, c11); AVX2_OUT(2, c20, c21);
    AVX2_OUT(3, c30, c31); AVX2_OUT(4, c40, c41); AVX2_OUT(5, c50, c51);
#undef AVX2_OUT
}

TGT_AVX2 static void kern_avx2(int64_t kc, const float *restrict Ap, const float *restrict Bp,
                               float *restrict C, int64_t ldc, float alpha, float beta, int mr) {
    switch (mr) {
    case 1: kern_avx2_rows(kc, Ap, Bp, C, ldc, alpha, beta, 1); break;
    case 2: kern_avx2_rows(kc, Ap, Bp, C, ldc, alpha, beta, 2); break;
    case 3: kern_avx2_rows(kc, Ap, Bp, C, ldc, alpha, beta, 3); break;
    case 4: kern_avx2_rows(kc, Ap, Bp, C, ldc, alpha, beta, 4); break;
    case 5: kern_avx2_rows(kc, Ap, Bp, C, ldc, alpha, beta, 5); break;
    default: kern_avx2_full(kc, Ap, Bp, C, ldc, alpha, beta); break;
    }
}

DEFINE_KERN_6X2V_ROWS(kern_avx512, TGT_AVX512, __m512, 16, _mm512_load_ps, _mm512_loadu_ps, _mm512_storeu_ps,
                 _mm512_set1_ps, _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_mul_ps, PF_T0)
DEFINE_KERN_6X2V_DISPATCH(kern_avx512, TGT_AVX512)

/* the emulation: a 16-float vector as two __m256 */
typedef struct { __m256 lo, hi; } emu512;
TGT_AVX2 static inline emu512 emu_loadu(const float *p) {
    emu512 r = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
    return r;
}
TGT_AVX2 static inline emu512 emu_load(const float *p) {
    /* as _mm512_load_ps: the address must be 64-byte aligned */
    if ((uintptr_t)p & 63) __builtin_trap();
    return emu_loadu(p);
}
TGT_AVX2 static inline void emu_storeu(float *p, emu512 v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
}
TGT_AVX2 static inline emu512 emu_set1(float x) {
    emu512 r = {_mm256_set1_ps(x), _mm256_set1_ps(x)};
    return r;
}
TGT_AVX2 static inline emu512 emu_zero(void) { return emu_set1(0.0f); }
TGT_AVX2 static inline emu512 emu_fma(emu512 a, emu512 b, emu512 c) {
    emu512 r = {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
    return r;
}
TGT_AVX2 static inline emu512 emu_mul(emu512 a, emu512 b) {
    emu512 r = {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)};
    return r;
}
#define PF_NONE(p) ((void)(p))
DEFINE_KERN_6X2V_ROWS(kern_avx512_emu, TGT_AVX2, emu512, 16, emu_load, emu_loadu, emu_storeu, emu_set1,
                 emu_zero, emu_fma, emu_mul, PF_NONE)
DEFINE_KERN_6X2V_DISPATCH(kern_avx512_emu, TGT_AVX2)
#endif /* GEMM_X86 */

static const gemm_isa_desc g_desc_c = {RS_GEMM_C, C_MR, C_NR, 256, 512, 256, kern_c, pack_c, pack_c};
#ifdef GEMM_X86
/* KC x MR A micro-panel in L1 (6 KiB); KC x NC B block in L2 (256 / 512 KiB) */
#ifndef GEMM_AVX2_KC /* overridable at compile time for tuning experiments */
#define GEMM_AVX2_KC 256
#endif
#ifndef GEMM_AVX2_NC
#define GEMM_AVX2_NC 256
#endif
static const gemm_isa_desc g_desc_avx2 = {RS_GEMM_AVX2, AVX2_MR, AVX2_NR, GEMM_AVX2_KC, 1020, GEMM_AVX2_NC,
                                          kern_avx2, pack_avx2, pack_avx2};
static const gemm_isa_desc g_desc_avx512 = {RS_GEMM_AVX512, AVX512_MR, AVX512_NR, 256, 1020, 512,
                                            kern_avx512, pack_avx2, pack_avx2};
static const gemm_isa_desc g_desc_avx512_emu = {RS_GEMM_AVX512_EMU, AVX512_MR, AVX512_NR, 256, 1020,
                                                512, kern_avx512_emu, pack_avx2, pack_avx2};
#endif

bool rs_gemm_isa_available(rs_gemm_isa isa) {
    const rs_cpu_features *f = rs_cpu();
    switch (isa) {
    case RS_GEMM_AUTO:
    case RS_GEMM_C: return true;
#ifdef GEMM_X86
    case RS_GEMM_AVX2: return f->avx2 && f->fma;
    case RS_GEMM_AVX512: return f->avx512f && f->avx512bw && f->avx512vl && f->avx2 && f->fma;
    case RS_GEMM_AVX512_EMU: return f->avx2 && f->fma;
#else
    default: (void)f; return false;
#endif
    }
    return false;
}

const char *rs_gemm_isa_name(rs_gemm_isa isa) {
    switch (isa) {
    case RS_GEMM_AUTO: return "auto";
    case RS_GEMM_C: return "c";
    case RS_GEMM_AVX2: return "avx2";
    case RS_GEMM_AVX512: return "avx512";
    case RS_GEMM_AVX512_EMU: return "avx512-emulated";
    }
    return "?";
}

rs_gemm_isa rs_gemm_isa_best(void) {
    if (rs_gemm_isa_available(RS_GEMM_AVX512)) return RS_GEMM_AVX512;
    if (rs_gemm_isa_available(RS_GEMM_AVX2)) return RS_GEMM_AVX2;
    return RS_GEMM_C;
}

static const gemm_isa_desc *desc_for(rs_gemm_isa isa) {
    if (isa == RS_GEMM_AUTO || !rs_gemm_isa_available(isa)) isa = rs_gemm_isa_best();
#ifdef GEMM_X86
    if (isa == RS_GEMM_AVX512) return &g_desc_avx512;
    if (isa == RS_GEMM_AVX512_EMU) return &g_desc_avx512_emu;
    if (isa == RS_GEMM_AVX2) return &g_desc_avx2;
#endif
    return &g_desc_c;
}

/* ---------------------------------------------------------------- per-thread workspace */
/* this thread's workspace of at least n floats (64-byte aligned), NULL when out of memory */
static float *ws_get(size_t n) { return rs_tls_scratch(RS_TLS_GEMM, n * sizeof(float)); }

/* ---------------------------------------------------------------- the blocked product */

typedef struct {
    const gemm_isa_desc *d;
    bool transA, transB;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    bool split_n;
} gemm_job;

static void scale_c(int64_t m, int64_t n, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)n * sizeof(float));
        else if (beta != 1.0f) for (int64_t j = 0; j < n; j++) c[j] *= beta;
    }
}

/* unblocked fallback when no workspace can be had (float accumulation, any shape) */
static void gemm_unblocked(const gemm_job *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    for (int64_t i = m0; i < m1; i++)
        for (int64_t j = n0; j < n1; j++) {
            float s = 0;
            for (int64_t k = 0; k < g->K; k++)
                s += (g->transA ? g->A[k * g->lda + i] : g->A[i * g->lda + k]) *
                     (g->transB ? g->B[j * g->ldb + k] : g->B[k * g->ldb + j]);
            float *c = g->C + i * g->ldc + j;
            *c = g->beta == 0.0f ? g->alpha * s : g->alpha * s + g->beta * *c;
        }
}

/* C[m0:m1, n0:n1] on one thread */
static void gemm_rect(const gemm_job *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const gemm_isa_desc *d = g->d;
    const int MR = d->mr, NR = d->nr;
    int64_t m = m1 - m0, n = n1 - n0, K = g->K;
    if (m <= 0 || n <= 0) return;
    /* balanced blocks: the fewest blocks of at most KC/MC/NC, sized evenly */
    int64_t nkb = (K + d->kc - 1) / d->kc, kcb = (K + nkb - 1) / nkb;
    int64_t nmb = (m + d->mc - 1) / d->mc, mcb = (m + nmb - 1) / nmb;
    mcb = (mcb + MR - 1) / MR * MR;
    int64_t nnb = (n + d->nc - 1) / d->nc, ncb = (n + nnb - 1) / nnb;
    ncb = (ncb + NR - 1) / NR * NR;
    size_t a_fl = (size_t)mcb * (size_t)kcb, b_fl = (size_t)ncb * (size_t)kcb;
    a_fl = (a_fl + 15) & ~(size_t)15;
    float *ws = ws_get(a_fl + b_fl + (size_t)GEMM_MAX_MR * GEMM_MAX_NR);
    if (!ws) { gemm_unblocked(g, m0, m1, n0, n1); return; }
    float *Ap = ws, *Bp = ws + a_fl, *tile = Bp + b_fl;

    for (int64_t mb = m0; mb < m1; mb += mcb) {
        int64_t mc = m1 - mb < mcb ? m1 - mb : mcb;
        for (int64_t kb = 0; kb < K; kb += kcb) {
            int64_t kc = K - kb < kcb ? K - kb : kcb;
            float beta = kb == 0 ? g->beta : 1.0f;
            d->packA(g->transA, g->A, g->lda, mb, mc, kb, kc, MR, Ap);
            for (int64_t nb = n0; nb < n1; nb += ncb) {
                int64_t nc = n1 - nb < ncb ? n1 - nb : ncb;
                /* op(B)[k, j] seen as rows j of op'(B): B itself when transB, else B^T */
                d->packB(!g->transB, g->B, g->ldb, nb, nc, kb, kc, NR, Bp);
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    int mr = (int)(mc - ir < MR ? mc - ir : MR);
                    const float *ap = Ap + (ir / MR) * kc * MR;
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        int nr = (int)(nc - jr < NR ? nc - jr : NR);
                        const float *bp = Bp + (jr / NR) * kc * NR;
                        float *c = g->C + (mb + ir) * g->ldc + nb + jr;
                        if (nr == NR) {
                            d->kern(kc, ap, bp, c, g->ldc, g->alpha, beta, mr);
                        } else {
                            d->kern(kc, ap, bp, tile, NR, 1.0f, 0.0f, mr);
                            for (int i = 0; i < mr; i++) {
                                float *ci = c + i * g->ldc;
                                const float *ti = tile + i * NR;
                                if (beta == 0.0f)
                                    for (int j = 0; j < nr; j++) ci[j] = g->alpha * ti[j];
                                else
                                    for (int j = 0; j < nr; j++) ci[j] = g->alpha * ti[j] + beta * ci[j];
                            }
                        }
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- few rows, C = A B^T */
/* The linear layer with M <= SMALL_M rows (decoding): dot products along K straight from A
 * and B's rows, no packing (which would cost as much as the product). Threads split N. */
#define SMALL_M 4

static void small_nt_c(const gemm_job *g, int64_t n0, int64_t n1) {
    for (int64_t j = n0; j < n1; j++) {
        const float *b = g->B + j * g->ldb;
        for (int64_t i = 0; i < g->M; i++) {
            const float *a = g->A + i * g->lda;
            float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t k = 0;
            for (; k + 8 <= g->K; k += 8)
                for (int l = 0; l < 8; l++) p[l] += a[k + l] * b[k + l];
            float sum = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
            for (; k < g->K; k++) sum += a[k] * b[k];
            float *c = g->C + i * g->ldc + j;
            *c = g->beta == 0.0f ? g->alpha * sum : g->alpha * sum + g->beta * *c;
        }
    }
}

#ifdef GEMM_X86
TGT_AVX2 static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* an m x nb tile (m <= 4, nb <= 4, m * nb <= 8) of dot products; constant m, nb after inlining */
TGT_AVX2 static inline __attribute__((always_inline)) void
small_nt_tile_avx2(const gemm_job *g, int64_t j, int m, int nb) {
    __m256 acc[4][4];
    const float *a[4], *b[4];
    for (int i = 0; i < m; i++) a[i] = g->A + i * g->lda;
    for (int jj = 0; jj < nb; jj++) b[jj] = g->B + (j + jj) * g->ldb;
    for (int i = 0; i < m; i++)
        for (int jj = 0; jj < nb; jj++) acc[i][jj] = _mm256_setzero_ps();
    const int64_t K = g->K;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 bv[4];
        for (int jj = 0; jj < nb; jj++) bv[jj] = _mm256_loadu_ps(b[jj] + k);
        for (int i = 0; i < m; i++) {
            __m256 av = _mm256_loadu_ps(a[i] + k);
            for (int jj = 0; jj < nb; jj++) acc[i][jj] = _mm256_fmadd_ps(av, bv[jj], acc[i][jj]);
        }
    }
    for (int i = 0; i < m; i++)
        for (int jj = 0; jj < nb; jj++) {
            float sum = hsum_avx2(acc[i][jj]);
            for (int64_t kk = k; kk < K; kk++) sum += a[i][kk] * b[jj][kk];
            float *c = g->C + i * g->ldc + j + jj;
            *c = g->beta == 0.0f ? g->alpha * sum : g->alpha * sum + g->beta * *c;
        }
}

TGT_AVX2 static void small_nt_avx2(const gemm_job *g, int64_t n0, int64_t n1) {
    const int m = (int)g->M;
    const int nb = m <= 2 ? 4 : 2;
    int64_t j = n0;
    for (; j + nb <= n1; j += nb) {
        switch (m) {
        case 1: small_nt_tile_avx2(g, j, 1, 4); break;
        case 2: small_nt_tile_avx2(g, j, 2, 4); break;
        case 3: small_nt_tile_avx2(g, j, 3, 2); break;
        default: small_nt_tile_avx2(g, j, 4, 2); break;
        }
    }
    for (; j < n1; j++) {
        switch (m) {
        case 1: small_nt_tile_avx2(g, j, 1, 1); break;
        case 2: small_nt_tile_avx2(g, j, 2, 1); break;
        case 3: small_nt_tile_avx2(g, j, 3, 1); break;
        default: small_nt_tile_avx2(g, j, 4, 1); break;
        }
    }
}
#endif

static void small_nt(const gemm_job *g, int64_t n0, int64_t n1) {
#ifdef GEMM_X86
    if (g->d->isa != RS_GEMM_C) { small_nt_avx2(g, n0, n1); return; }
#endif
    small_nt_c(g, n0, n1);
}

static void small_nt_worker(void *ctx, int ith, int nth) {
    const gemm_job *g = ctx;
    int64_t b, e;
    rs_split_range(g->N, ith, nth, 16, &b, &e);
    if (b < e) small_nt(g, b, e);
}

static void gemm_worker(void *ctx, int ith, int nth) {
    const gemm_job *g = ctx;
    int64_t b, e;
    if (g->split_n) {
        rs_split_range(g->N, ith, nth, g->d->nr, &b, &e);
        gemm_rect(g, 0, g->M, b, e);
    } else {
        rs_split_range(g->M, ith, nth, g->d->mr, &b, &e);
        gemm_rect(g, b, e, 0, g->N);
    }
}

static bool check_args(const char *who, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                       const float *A, int64_t lda, const float *B, int64_t ldb, const float *C,
                       int64_t ldc) {
    if (M < 0 || N < 0 || K < 0) {
        rs_error(RSMOE_ERR_INVALID_ARG, "%s: negative size %lldx%lldx%lld", who, (long long)M,
                 (long long)N, (long long)K);
        return false;
    }
    if (M == 0 || N == 0) return true;
    int64_t wa = transA ? M : K, wb = transB ? K : N;
    if (!C || ldc < N || (K > 0 && (!A || !B || lda < (wa > 1 ? wa : 1) || ldb < (wb > 1 ? wb : 1)))) {
        rs_error(RSMOE_ERR_INVALID_ARG,
                 "%s: bad operands (M=%lld N=%lld K=%lld lda=%lld ldb=%lld ldc=%lld)", who,
                 (long long)M, (long long)N, (long long)K, (long long)lda, (long long)ldb,
                 (long long)ldc);
        return false;
    }
    return true;
}

void rs_sgemm_own_isa(rs_gemm_isa isa, bool transA, bool transB, int64_t M, int64_t N,
                      int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float beta, float *C, int64_t ldc, rs_pool *pool) {
    if (!check_args("rs_sgemm", transA, transB, M, N, K, A, lda, B, ldb, C, ldc)) return;
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return; }
    gemm_job g = {desc_for(isa), transA, transB, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, true};
    int nth = rs_pool_size(pool);
    /* not worth waking threads for tiny products */
    if ((double)M * (double)N * (double)K < 65536.0) nth = 1;
    if (M <= SMALL_M && transB && !transA) {
        if (nth > 1) rs_pool_run(pool, small_nt_worker, &g);
        else small_nt(&g, 0, N);
        return;
    }
    if (nth > 1) {
        int64_t npan = (N + g.d->nr - 1) / g.d->nr, mpan = (M + g.d->mr - 1) / g.d->mr;
        g.split_n = npan >= 2 * nth || npan >= mpan;
        rs_pool_run(pool, gemm_worker, &g);
    } else {
        gemm_rect(&g, 0, M, 0, N);
    }
}

void rs_sgemm_own(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc, rs_pool *pool) {
    rs_sgemm_own_isa(RS_GEMM_AUTO, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                     pool);
}

bool rs_sgemm_has_blas(void) {
#ifdef RSMOE_USE_BLAS
    return ob_ready();
#else
    return false;
#endif
}

#ifdef RSMOE_USE_BLAS
static int g_blas_threads; /* last value given to openblas_set_num_threads (0 = never) */

/* Does OpenBLAS get the large products on this CPU? Not where the own kernel is AVX-512: there
 * it was as fast or faster everywhere it was measured. Debian's OpenBLAS 0.3.21 picks an older
 * core on CPUs it does not know ("Prescott", SSE3, on a Sapphire-Rapids-class VM: 31 GFLOP/s
 * against 137 at 197x768x768; "Haswell", AVX2, on an AMD EPYC with AVX-512 at full width: 115-124
 * against 217-239, `rsmoe bench kernels`). Where it does pick its AVX-512 core (SkylakeX, on an
 * Intel Xeon with AMX, 2026-12-05), the own kernel still ran the ViT-B/16-sized encoder in exact
 * f32 in 246-248 ms against 280-282 on one thread and 136-138 against 153-159 on two, and stage-I
 * training steps in the same time (20.0-20.9 s for 100 steps, one thread); and with OpenBLAS out
 * of the way only one thread pool runs: OpenBLAS's workers spin (sched_yield) for a while after
 * each call, on the cores the pool's workers need (the bf16-pair encoder on two threads:
 * 81-82 ms without OpenBLAS calls, 92-126 ms with them for its attention products). Where the
 * own kernel is AVX2, OpenBLAS keeps the large products if its core is AVX2 or AVX-512 (on an
 * AVX2-only AMD EPYC it was 6 % faster on two threads, README rows (A)); below AVX2 always. */
static bool blas_is_wide(void) {
    static int cached = -1; /* -1 unknown, 0 no, 1 yes */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c >= 0) return c == 1;
    static const char *const wide_cores[] = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"};
    rs_gemm_isa own = rs_gemm_isa_best();
    bool wide = own != RS_GEMM_AVX512;
    if (own == RS_GEMM_AVX2) {
        const char *name = ob_ready() ? g_ob.get_corename() : NULL;
        wide = false;
        for (size_t i = 0; name && i < sizeof wide_cores / sizeof wide_cores[0]; i++)
            wide |= !strcasecmp(name, wide_cores[i]);
    }
    __atomic_store_n(&cached, wide ? 1 : 0, __ATOMIC_RELAXED);
    return wide;
}
#endif

const char *rs_sgemm_blas_core(void) {
#ifdef RSMOE_USE_BLAS
    return ob_ready() ? g_ob.get_corename() : NULL;
#else
    return NULL;
#endif
}

bool rs_sgemm_blas_preferred(void) {
#ifdef RSMOE_USE_BLAS
    return blas_is_wide() && ob_ready();
#else
    return false;
#endif
}

bool rs_sgemm_blas(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc, rs_pool *pool) {
#ifdef RSMOE_USE_BLAS
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX ||
        !ob_ready())
        return false;
    if (!check_args("rs_sgemm_blas", transA, transB, M, N, K, A, lda, B, ldb, C, ldc)) return false;
    int nt = pool ? rs_pool_size(pool) : 1;
    if (__atomic_load_n(&g_blas_threads, __ATOMIC_RELAXED) != nt) {
        g_ob.set_num_threads(nt);
        __atomic_store_n(&g_blas_threads, nt, __ATOMIC_RELAXED);
    }
    g_ob.sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    return true;
#else
    (void)transA; (void)transB; (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)lda;
    (void)B; (void)ldb; (void)beta; (void)C; (void)ldc; (void)pool;
    return false;
#endif
}

void rs_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc, rs_pool *pool) {
#ifdef RSMOE_USE_BLAS
    /* large products go to OpenBLAS (where blas_is_wide says so), called from this
     * thread only (never from our pool's workers), with its thread count set to the pool's size.
     * Only with a pool: pool == NULL is how code running inside a pool worker calls (a
     * worker cannot use its own pool), and such calls stay with the own kernel, so OpenBLAS
     * is never entered from a worker nor its global thread count changed under another call.
     * The few-row linear layer stays with the own kernel too: OpenBLAS 0.3.21's sgemm runs
     * it 3-4x slower than the own unpacked dot products. */
    if (pool && (double)M * (double)N * (double)K >= 32768.0 && blas_is_wide() &&
        !(M <= SMALL_M && transB && !transA) &&
        rs_sgemm_blas(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool))
        return;
#endif
    rs_sgemm_own(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool);
}
