/* test_gemm.c - rs_sgemm (BLAS path when built with it), rs_sgemm_own and each of its ISA
 * variants this CPU can run, against the double-accumulating triple loop rs_sgemm_ref:
 * odd shapes, all four transpose combinations, alpha/beta, padded leading dimensions,
 * blocking edges (K > KC, N > NC, M > MC), 1 and 2 pool threads, beta == 0 over NaN.
 * RS_GEMM_AVX512_EMU runs the AVX-512 kernel's code on AVX2, so it is tested everywhere. */
#include "test.h"
#include "core/core.h"
#include "kernels/gemm.h"

#include <math.h>
#include <stdint.h>

/* Normalised error bound (max|C - ref| / max|ref|, see run_case for few outputs). 1e-6 up
 * to K = 128. Beyond that it grows as sqrt(K/128): a sum of K random-sign fp32 terms
 * accumulated in sequence (OpenBLAS's order) has a rounding error that grows like a random
 * walk, about eps/2 * sigma * K / sqrt(2) against a sum of size sigma * sqrt(K), i.e. as
 * sqrt(K) relative to the result. Measured over 30 seeds: OpenBLAS reaches 1.01e-6 at
 * K = 257 (the own kernel, whose K blocks shorten the chains, stays lower). A wrong kernel
 * (a lost K block, a transposed operand, beta applied twice) gives errors near 1. */
static double tol_for(int64_t K) { return K <= 128 ? 1e-6 : 1e-6 * sqrt((double)K / 128.0); }

typedef enum { V_SGEMM, V_OWN, V_ISA, V_BLAS } variant;

typedef struct {
    variant v;
    rs_gemm_isa isa;
    const char *name;
} impl;

static rs_rng g_rng;
static double g_worst_ratio; /* largest error / bound seen, printed at the end */
static char g_worst[160];

static float *rnd(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    rs_rng_fill_uniform(&g_rng, x, n, -1.f, 1.f);
    return x;
}

static void call(const impl *im, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc, rs_pool *pool) {
    switch (im->v) {
    case V_SGEMM: rs_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool); break;
    case V_OWN: rs_sgemm_own(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool); break;
    case V_BLAS: rs_sgemm_blas(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool); break;
    case V_ISA:
        rs_sgemm_own_isa(im->isa, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool);
        break;
    }
}

/* one case; returns the normalised error (INFINITY when C outside the product changed) */
static double run_case(const impl *im, bool tA, bool tB, int64_t M, int64_t N, int64_t K,
                       float alpha, float beta, int pad, rs_pool *pool) {
    int64_t lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    int64_t arows = tA ? K : M, brows = tB ? N : K;
    float *A = rnd((size_t)(arows * lda)), *B = rnd((size_t)(brows * ldb));
    float *C = rnd((size_t)(M * ldc)), *R = malloc((size_t)(M * ldc) * sizeof(float));
    if (beta == 0.0f) /* C must not be read: fill the product area with NaN */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = NAN;
    memcpy(R, C, (size_t)(M * ldc) * sizeof(float));
    rs_sgemm_ref(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    call(im, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool);
    /* compare the M x N product; padding columns must be untouched */
    float *c = malloc((size_t)(M * N + 1) * sizeof(float)), *r = malloc((size_t)(M * N + 1) * sizeof(float));
    bool pad_ok = true;
    for (int64_t i = 0; i < M; i++) {
        memcpy(c + i * N, C + i * ldc, (size_t)N * sizeof(float));
        memcpy(r + i * N, R + i * ldc, (size_t)N * sizeof(float));
        for (int64_t j = N; j < ldc; j++)
            if (memcmp(&C[i * ldc + j], &R[i * ldc + j], sizeof(float))) pad_ok = false;
    }
    double e = test_nerr_f32(c, r, (size_t)(M * N));
    /* With few outputs, max|ref| can be a cancellation-small value, far below the size of
     * the rounding errors of its terms. Then normalise instead by the natural scale of each
     * random-sign sum, |alpha| sqrt(sum_k (a_ik b_kj)^2) (its RMS value), computed as the
     * reference product of the squared operands. With many outputs max|ref| exceeds it. */
    if (e > 0 && M * N < 64) {
        float *A2 = malloc((size_t)(arows * lda) * sizeof(float)), *B2 = malloc((size_t)(brows * ldb) * sizeof(float));
        float *S = malloc((size_t)(M * ldc) * sizeof(float));
        for (int64_t i = 0; i < arows * lda; i++) A2[i] = A[i] * A[i];
        for (int64_t i = 0; i < brows * ldb; i++) B2[i] = B[i] * B[i];
        rs_sgemm_ref(tA, tB, M, N, K, 1.0f, A2, lda, B2, ldb, 0.0f, S, ldc);
        double scale = 0, md = 0, mr = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double v = fabs(alpha) * sqrt((double)S[i * ldc + j]);
                if (v > scale) scale = v;
                double d = fabs((double)c[i * N + j] - (double)r[i * N + j]);
                if (d > md || d != d) md = d != d ? INFINITY : d;
                if (fabs((double)r[i * N + j]) > mr) mr = fabs((double)r[i * N + j]);
            }
        double den = mr > scale ? mr : scale;
        e = md / (den > 1e-30 ? den : 1e-30);
        free(A2); free(B2); free(S);
    }
    free(A); free(B); free(C); free(R); free(c); free(r);
    if (e / tol_for(K) > g_worst_ratio) {
        g_worst_ratio = e / tol_for(K);
        snprintf(g_worst, sizeof g_worst, "%s %s%s M=%lld N=%lld K=%lld: nerr %.3g",
                 im->name, tA ? "T" : "N", tB ? "T" : "N", (long long)M, (long long)N, (long long)K, e);
    }
    return pad_ok ? e : INFINITY;
}

static impl g_impls[8];
static int g_nimpl;

static void setup_impls(void) {
    g_impls[g_nimpl++] = (impl){V_SGEMM, RS_GEMM_AUTO, rs_sgemm_blas_preferred() ? "rs_sgemm(blas)" : "rs_sgemm"};
    /* OpenBLAS itself, whichever core it chose, whether or not rs_sgemm prefers it here */
    if (rs_sgemm_has_blas()) g_impls[g_nimpl++] = (impl){V_BLAS, RS_GEMM_AUTO, "rs_sgemm_blas"};
    g_impls[g_nimpl++] = (impl){V_OWN, RS_GEMM_AUTO, "rs_sgemm_own"};
    /* RS_GEMM_AVX512_EMU runs the AVX-512 kernel's code with emulated 512-bit vectors, so
     * that code is checked even where the CPU lacks AVX-512 */
    const rs_gemm_isa isas[] = {RS_GEMM_C, RS_GEMM_AVX2, RS_GEMM_AVX512, RS_GEMM_AVX512_EMU};
    for (int i = 0; i < 4; i++) {
        if (rs_gemm_isa_available(isas[i]))
            g_impls[g_nimpl++] = (impl){V_ISA, isas[i], rs_gemm_isa_name(isas[i])};
        else
            printf("note: ISA variant %s not available on this CPU, not tested\n",
                   rs_gemm_isa_name(isas[i]));
    }
}

/* hand-computed 2x2 case, so the reference itself is checked */
TEST(reference_by_hand) {
    const float A[] = {1, 2, 3, 4}, B[] = {5, 6, 7, 8};
    float C[4] = {1, 1, 1, 1};
    rs_sgemm_ref(false, false, 2, 2, 2, 2.0f, A, 2, B, 2, 0.5f, C, 2);
    /* A*B = [[19, 22], [43, 50]] -> 2*AB + 0.5 */
    CHECK(C[0] == 38.5f && C[1] == 44.5f && C[2] == 86.5f && C[3] == 100.5f, "%g %g %g %g",
          C[0], C[1], C[2], C[3]);
    float D[4];
    rs_sgemm_ref(true, true, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, D, 2); /* A^T B^T = (BA)^T */
    CHECK(D[0] == 23 && D[1] == 31 && D[2] == 34 && D[3] == 46, "%g %g %g %g", D[0], D[1], D[2], D[3]);
    for (int i = 0; i < g_nimpl; i++) {
        float E[4] = {1, 1, 1, 1};
        call(&g_impls[i], false, false, 2, 2, 2, 2.0f, A, 2, B, 2, 0.5f, E, 2, NULL);
        CHECK(E[0] == 38.5f && E[1] == 44.5f && E[2] == 86.5f && E[3] == 100.5f, "%s: %g %g %g %g",
              g_impls[i].name, E[0], E[1], E[2], E[3]);
    }
}

static void sweep(rs_pool *pool, const int64_t *sizes, int ns, int stride) {
    int n = 0;
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b++)
            for (int c = 0; c < ns; c++) {
                if ((n++ % stride) != 0) continue;
                int64_t M = sizes[a], N = sizes[b], K = sizes[c];
                int t = n % 4;
                bool tA = t & 1, tB = t & 2;
                float alpha = (n % 3 == 0) ? 1.0f : -0.75f;
                float beta = (n % 5 == 0) ? 0.0f : (n % 5 == 1 ? 1.0f : 0.5f);
                int pad = (n % 2) ? 3 : 0;
                for (int i = 0; i < g_nimpl; i++) {
                    double e = run_case(&g_impls[i], tA, tB, M, N, K, alpha, beta, pad, pool);
                    CHECK(e <= tol_for(K),
                          "%s %s%s M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%d threads=%d: nerr %.3g",
                          g_impls[i].name, tA ? "T" : "N", tB ? "T" : "N", (long long)M,
                          (long long)N, (long long)K, alpha, beta, pad, rs_pool_size(pool), e);
                }
            }
}

static const int64_t g_odd[] = {1, 7, 31, 33, 65, 257};

/* a pool of 1 (rs_sgemm may take the BLAS path), and NULL (always the own kernel) */
TEST(odd_shapes_1_thread) {
    rs_pool *p1 = rs_pool_new(1);
    REQUIRE(p1, "pool");
    sweep(p1, g_odd, 6, 1);
    rs_pool_free(p1);
    sweep(NULL, g_odd, 6, 3);
}

TEST(odd_shapes_2_threads) {
    rs_pool *p = rs_pool_new(2);
    REQUIRE(p, "pool");
    sweep(p, g_odd, 6, 2);
    rs_pool_free(p);
}

/* every transpose combination and alpha/beta on one mid-size shape, pool of 1 and 2 */
TEST(transposes_alpha_beta) {
    rs_pool *p1 = rs_pool_new(1), *p2 = rs_pool_new(2);
    REQUIRE(p1 && p2, "pool");
    const float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, -0.3f};
    for (int t = 0; t < 4; t++)
        for (int ab = 0; ab < 3; ab++)
            for (int pi = 0; pi < 2; pi++)
                for (int i = 0; i < g_nimpl; i++) {
                    rs_pool *p = pi ? p2 : p1;
                    double e = run_case(&g_impls[i], t & 1, t & 2, 45, 83, 97, alphas[ab],
                                        betas[ab], 5, p);
                    CHECK(e <= tol_for(97), "%s t=%d alpha=%g beta=%g threads=%d: nerr %.3g",
                          g_impls[i].name, t, alphas[ab], betas[ab], rs_pool_size(p), e);
                }
    rs_pool_free(p1);
    rs_pool_free(p2);
}

/* shapes that cross the block sizes: K > KC (beta applied once, then accumulate), N > NC,
 * M > MC, and a narrow N that makes two threads split M */
TEST(blocking_edges) {
    rs_pool *p2 = rs_pool_new(2);
    REQUIRE(p2, "pool");
    struct { int64_t M, N, K; } s[] = {
        {29, 37, 700}, {13, 600, 40}, {1100, 40, 17}, {257, 7, 65}, {70, 1100, 33}, {3, 5, 1100},
    };
    for (size_t c = 0; c < sizeof s / sizeof s[0]; c++)
        for (int t = 0; t < 4; t++)
            for (int i = 0; i < g_nimpl; i++) {
                rs_pool *p = (c + t) % 2 ? p2 : NULL;
                float beta = t == 1 ? 0.0f : 0.7f;
                double e = run_case(&g_impls[i], t & 1, t & 2, s[c].M, s[c].N, s[c].K, 1.25f,
                                    beta, t == 2 ? 9 : 0, p);
                CHECK(e <= tol_for(s[c].K), "%s t=%d M=%lld N=%lld K=%lld threads=%d: nerr %.3g",
                      g_impls[i].name, t, (long long)s[c].M, (long long)s[c].N,
                      (long long)s[c].K, rs_pool_size(p), e);
            }
    rs_pool_free(p2);
}

/* the model's linear layer y = x W^T at a ViT-like shape, threaded */
TEST(linear_layer_shape) {
    rs_pool *p2 = rs_pool_new(2);
    REQUIRE(p2, "pool");
    for (int i = 0; i < g_nimpl; i++) {
        double e = run_case(&g_impls[i], false, true, 197, 96, 384, 1.0f, 0.0f, 0, p2);
        CHECK(e <= tol_for(384), "%s: nerr %.3g", g_impls[i].name, e);
    }
    rs_pool_free(p2);
}

/* the few-row linear layer (decoding: M <= 4, C = A B^T) takes an unpacked dot-product path;
 * M = 5 is the first packed one */
TEST(few_rows_linear) {
    rs_pool *p2 = rs_pool_new(2);
    REQUIRE(p2, "pool");
    const int64_t Ns[] = {1, 3, 17, 100, 700}, Ks[] = {1, 7, 8, 33, 300};
    int n = 0;
    for (int64_t M = 1; M <= 5; M++)
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++, n++)
                for (int i = 0; i < g_nimpl; i++) {
                    rs_pool *p = n % 2 ? p2 : NULL;
                    float beta = n % 3 == 0 ? 0.0f : 0.5f;
                    double e = run_case(&g_impls[i], false, true, M, Ns[a], Ks[b], 0.8f, beta,
                                        n % 4 == 1 ? 2 : 0, p);
                    CHECK(e <= tol_for(Ks[b]), "%s M=%lld N=%lld K=%lld threads=%d: nerr %.3g",
                          g_impls[i].name, (long long)M, (long long)Ns[a], (long long)Ks[b],
                          rs_pool_size(p), e);
                }
    rs_pool_free(p2);
}

/* degenerate sizes: K == 0 or alpha == 0 only scale C by beta; M or N == 0 touch nothing;
 * bad arguments record an error and leave C alone */
TEST(degenerate_and_errors) {
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 1, 1, 1, 1, 1};
    for (int i = 0; i < g_nimpl; i++) {
        float C[4] = {1, 2, 3, 4};
        call(&g_impls[i], false, false, 2, 2, 0, 1.0f, A, 1, B, 2, 0.5f, C, 2, NULL);
        CHECK(C[0] == 0.5f && C[3] == 2.0f, "%s K=0: %g %g", g_impls[i].name, C[0], C[3]);
        float D[4] = {NAN, NAN, NAN, NAN};
        call(&g_impls[i], false, false, 2, 2, 3, 0.0f, A, 3, B, 2, 0.0f, D, 2, NULL);
        CHECK(D[0] == 0.0f && D[3] == 0.0f, "%s alpha=0 beta=0: %g %g", g_impls[i].name, D[0], D[3]);
        float E[4] = {1, 2, 3, 4};
        call(&g_impls[i], false, false, 0, 2, 3, 1.0f, A, 3, B, 2, 0.0f, E, 2, NULL);
        CHECK(E[0] == 1 && E[3] == 4, "%s M=0 changed C", g_impls[i].name);
        rs_clear_error();
        call(&g_impls[i], false, false, 2, 2, 3, 1.0f, A, 2 /* < K */, B, 2, 0.0f, E, 2, NULL);
        CHECK(E[0] == 1 && E[3] == 4, "%s bad lda changed C", g_impls[i].name);
        CHECK(rsmoe_last_error()[0] != 0, "%s bad lda: no error recorded", g_impls[i].name);
        rs_clear_error();
        call(&g_impls[i], false, false, -1, 2, 3, 1.0f, A, 3, B, 2, 0.0f, E, 2, NULL);
        CHECK(rsmoe_last_error()[0] != 0, "%s negative M: no error recorded", g_impls[i].name);
    }
}

/* rs_sgemm called concurrently from inside pool workers (pool = NULL there): each thread
 * packs into its own workspace; results must match the reference */
typedef struct {
    const float *A[2], *B[2];
    float *C[2];
    int64_t M[2], N[2], K[2];
} conc_ctx;

static void conc_worker(void *ctx, int ith, int nth) {
    conc_ctx *c = ctx;
    for (int i = ith; i < 2; i += nth)
        for (int r = 0; r < 3; r++) /* repeated: workspace reuse while the other thread runs */
            rs_sgemm(false, true, c->M[i], c->N[i], c->K[i], 1.0f, c->A[i], c->K[i], c->B[i],
                     c->K[i], 0.0f, c->C[i], c->N[i], NULL);
}

TEST(concurrent_calls_from_workers) {
    rs_pool *p2 = rs_pool_new(2);
    REQUIRE(p2, "pool");
    conc_ctx c;
    const int64_t Ms[2] = {70, 9}, Ns[2] = {130, 300}, Ks[2] = {90, 120};
    float *R[2];
    for (int i = 0; i < 2; i++) {
        c.M[i] = Ms[i]; c.N[i] = Ns[i]; c.K[i] = Ks[i];
        c.A[i] = rnd((size_t)(Ms[i] * Ks[i]));
        c.B[i] = rnd((size_t)(Ns[i] * Ks[i]));
        c.C[i] = malloc((size_t)(Ms[i] * Ns[i]) * sizeof(float));
        R[i] = malloc((size_t)(Ms[i] * Ns[i]) * sizeof(float));
        rs_sgemm_ref(false, true, Ms[i], Ns[i], Ks[i], 1.0f, c.A[i], Ks[i], c.B[i], Ks[i], 0.0f,
                     R[i], Ns[i]);
    }
    rs_pool_run(p2, conc_worker, &c);
    for (int i = 0; i < 2; i++) {
        double e = test_nerr_f32(c.C[i], R[i], (size_t)(Ms[i] * Ns[i]));
        CHECK(e <= tol_for(Ks[i]), "product %d: nerr %.3g", i, e);
        free((void *)c.A[i]); free((void *)c.B[i]); free(c.C[i]); free(R[i]);
    }
    rs_pool_free(p2);
}

/* repeated calls from several pool sizes reuse the per-thread workspace (and must agree) */
TEST(repeat_deterministic) {
    rs_pool *p2 = rs_pool_new(2);
    REQUIRE(p2, "pool");
    float *A = rnd(64 * 200), *B = rnd(200 * 300);
    float *C1 = malloc(64 * 300 * sizeof(float)), *C2 = malloc(64 * 300 * sizeof(float));
    rs_sgemm_own(false, false, 64, 300, 200, 1.0f, A, 200, B, 300, 0.0f, C1, 300, NULL);
    for (int r = 0; r < 3; r++) {
        rs_sgemm_own(false, false, 64, 300, 200, 1.0f, A, 200, B, 300, 0.0f, C2, 300, p2);
        CHECK(!memcmp(C1, C2, 64 * 300 * sizeof(float)), "run %d: 2 threads differ from 1", r);
    }
    free(A); free(B); free(C1); free(C2);
    rs_pool_free(p2);
}

int main(void) {
    const char *seed = getenv("RSMOE_TEST_SEED"); /* to try other random cases */
    rs_rng_seed(&g_rng, seed ? strtoull(seed, NULL, 10) : 1234);
    setup_impls();
    RUN(reference_by_hand);
    RUN(odd_shapes_1_thread);
    RUN(odd_shapes_2_threads);
    RUN(transposes_alpha_beta);
    RUN(blocking_edges);
    RUN(linear_layer_shape);
    RUN(few_rows_linear);
    RUN(degenerate_and_errors);
    RUN(concurrent_calls_from_workers);
    RUN(repeat_deterministic);
    printf("largest error relative to its bound: %.3f (%s)\n", g_worst_ratio, g_worst);
    return test_summary();
}
