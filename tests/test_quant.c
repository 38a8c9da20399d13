/* test_quant.c - q8_0 / f16 / bf16 conversions and weight matmul, every ISA variant against
 * the plain reference twin, with error bounds derived from the data (see bounds below).
 * AVX-512 variants run natively where the CPU has them; where SIMDe is installed they also
 * run on its portable emulation of the AVX-512 intrinsics, so the logic is checked on any
 * x86-64 machine. */
#define RS_QUANT_INTERNAL
#include "kernels/quant.h"
#include "test.h"

#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) && __has_include(<simde/x86/avx512.h>)
#define HAVE_EMU 1
#define RS_QUANT_SIMDE 1
/* SIMDe's emulated 512-bit types are GCC vectors passed without AVX-512: only this file */
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../src/kernels/quant_avx512.c"
#pragma GCC diagnostic pop
#endif

static const double U = 1.0 / 16777216.0; /* 2^-24, float unit roundoff */

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void quant_with(rs_quant_isa isa, const float *x, rs_block_q8_0 *y, int64_t n) {
    rs_quantize_row_q8_0_isa(isa, x, y, n);
}

/* ---------------------------------------------------------------- q8_0 rounding */
TEST(q8_rounding_hand_made) {
    for (int isa = RS_QUANT_C; isa <= RS_QUANT_AVX512_EXT; isa++) {
        if (!rs_quant_isa_available((rs_quant_isa)isa)) continue;
        /* block 0: amax 127 -> d = 1, so q = roundf(x), ties away from zero */
        float x[96] = {127.0f, -127.0f, 0.5f, 1.5f, -0.5f, -2.5f, 2.4999f, 3.6f, -3.6f, 0.49f,
                       -0.49f, 126.5f, -126.5f, 0.0f, -0.0f, 64.5f};
        const int8_t want0[16] = {127, -127, 1, 2, -1, -3, 2, 4, -4, 0, 0, 127, -127, 0, 0, 65};
        /* block 1: all zero -> d = 0, q = 0.  block 2: amax 254 -> d = 2 */
        float *x2 = x + 64;
        const float v2[8] = {-254.0f, 3.0f, 1.0f, -5.0f, 5.0f, 0.9f, -1.0f, 253.0f};
        const int8_t want2[8] = {-127, 2, 1, -3, 3, 0, -1, 127}; /* 1.5->2, 0.5->1, -2.5->-3 */
        memcpy(x2, v2, sizeof v2);
        rs_block_q8_0 q[3];
        memset(q, 0x55, sizeof q);
        quant_with((rs_quant_isa)isa, x, q, 96);
        const char *nm = rs_quant_isa_name((rs_quant_isa)isa);
        CHECK(q[0].d == 0x3C00, "%s: d of amax 127 = %#x, want 0x3c00 (1.0)", nm, q[0].d);
        for (int j = 0; j < 16; j++)
            CHECK(q[0].qs[j] == want0[j], "%s: x=%g q=%d want %d", nm, x[j], q[0].qs[j], want0[j]);
        for (int j = 16; j < 32; j++) CHECK(q[0].qs[j] == 0, "%s: zero -> %d", nm, q[0].qs[j]);
        CHECK(q[1].d == 0, "%s: zero block d = %#x", nm, q[1].d);
        for (int j = 0; j < 32; j++) CHECK(q[1].qs[j] == 0, "%s: zero block q = %d", nm, q[1].qs[j]);
        CHECK(q[2].d == 0x4000, "%s: d of amax 254 = %#x, want 0x4000 (2.0)", nm, q[2].d);
        for (int j = 0; j < 8; j++)
            CHECK(q[2].qs[j] == want2[j], "%s: x=%g q=%d want %d", nm, x2[j], q[2].qs[j], want2[j]);
        float back[96];
        rs_dequantize_row_q8_0(q, back, 96);
        CHECK(back[0] == 127.0f && back[2] == 1.0f && back[64] == -254.0f && back[65] == 4.0f &&
                  back[40] == 0.0f, "%s: dequantised %g %g %g %g", nm, back[0], back[2], back[64], back[65]);
    }
}

/* Quantise -> dequantise: with d = amax/127 the rounding error |x - d q| <= d/2; with the
 * stored scale d16 = f16(d) the dequantised error is <= d/2 + |q| |d16 - d|. Every ISA's
 * quantiser must give exactly the plain C bytes. */
TEST(q8_roundtrip_and_isa_identity) {
    enum { N = 32 * 257 };
    static float x[N], back[N];
    static rs_block_q8_0 q[N / 32], qc[N / 32];
    rs_rng r;
    rs_rng_seed(&r, 11);
    rs_rng_fill_normal(&r, x, N, 0.0f, 1.0f);
    for (int b = 0; b < N / 32; b++) { /* blocks of very different scales, some with ties */
        float s = (float)pow(10.0, (double)(b % 9) - 4.0);
        for (int j = 0; j < 32; j++) x[b * 32 + j] *= s;
        if (b % 5 == 0) { /* amax 127 and half-integer values: exact ties */
            x[b * 32] = 127.0f;
            for (int j = 1; j < 32; j++) x[b * 32 + j] = (float)(j - 16) + 0.5f;
        }
    }
    quant_with(RS_QUANT_C, x, qc, N);
    rs_dequantize_row_q8_0(qc, back, N);
    double worst = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        const double d = (double)(amax / 127.0f), d16 = rs_f16_to_f32(qc[b].d);
        for (int j = 0; j < 32; j++) {
            const double xv = x[b * 32 + j], qv = qc[b].qs[j];
            const double e1 = fabs(xv - d * qv), e2 = fabs(xv - (double)back[b * 32 + j]);
            CHECK(e1 <= d / 2 * (1 + 1e-6), "block %d: |x - d q| = %g > d/2 = %g", b, e1, d / 2);
            CHECK(e2 <= d / 2 * (1 + 1e-6) + fabs(qv) * fabs(d16 - d) + 1e-7 * fabs(xv),
                  "block %d: dequantised error %g", b, e2);
            if (d > 0 && e1 / d > worst) worst = e1 / d;
        }
    }
    CHECK(worst > 0.45, "rounding never near half a step (%g): data not exercising rounding", worst);
    for (int isa = RS_QUANT_AVX2; isa <= RS_QUANT_AVX512_EXT; isa++) {
        if (!rs_quant_isa_available((rs_quant_isa)isa)) continue;
        memset(q, 0, sizeof q);
        quant_with((rs_quant_isa)isa, x, q, N);
        CHECK(!memcmp(q, qc, sizeof q), "%s quantiser differs from plain C",
              rs_quant_isa_name((rs_quant_isa)isa));
    }
    rs_block_q8_0 q2[N / 32];
    rs_quantize_row_q8_0(x, q2, N);
    CHECK(!memcmp(q2, qc, sizeof q2), "rs_quantize_row_q8_0 differs from plain C");
    rs_convert_row(RS_Q8_0, x, q2, N);
    CHECK(!memcmp(q2, qc, sizeof q2), "rs_convert_row(q8_0) differs");
    float back2[64];
    rs_row_to_f32(RS_Q8_0, qc, back2, 64);
    CHECK(!memcmp(back2, back, sizeof back2), "rs_row_to_f32(q8_0) differs from dequantize");
}

/* ---------------------------------------------------------------- f16 / bf16 rows */
TEST(half_row_conversions_match_core) {
    enum { N = 65536 + 7 };
    static uint16_t h[N], h2[N];
    static float f[N], g[N];
    /* every f16 / bf16 bit pattern -> f32 */
    for (int i = 0; i < N; i++) h[i] = (uint16_t)i;
    rs_row_to_f32(RS_F16, h, f, N);
    for (int i = 0; i < N; i++) {
        const float w = rs_f16_to_f32(h[i]);
        if (w != w) CHECK(f[i] != f[i], "f16 %#x: NaN -> %g", h[i], f[i]);
        else CHECK(f2u(f[i]) == f2u(w), "f16 %#x -> %g, core %g", h[i], f[i], w);
    }
    rs_row_to_f32(RS_BF16, h, f, N);
    for (int i = 0; i < N; i++) CHECK(f2u(f[i]) == f2u(rs_bf16_to_f32(h[i])), "bf16 %#x", h[i]);
    /* f32 -> f16 / bf16: random bit patterns, every f16 rounding boundary and specials */
    rs_rng r;
    rs_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) {
        switch (i % 4) {
        case 0: f[i] = u2f((uint32_t)rs_rng_u64(&r)); break;              /* any pattern */
        case 1: f[i] = u2f(((uint32_t)(i / 4) << 13) + 0x1000u); break;    /* f16 ties */
        case 2: f[i] = u2f(0x33000000u + (uint32_t)(rs_rng_u64(&r) % 0x14800000u)); break;
        default: f[i] = (float)rs_rng_normal(&r) * 1000.0f; break;
        }
    }
    const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.99f, 65520.0f,
                        -65520.0f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 6.1e-5f, 1e-45f};
    memcpy(f, sp, sizeof sp);
    rs_convert_row(RS_F16, f, h, N);
    rs_convert_row(RS_BF16, f, h2, N);
    for (int i = 0; i < N; i++) {
        CHECK(h[i] == rs_f32_to_f16(f[i]), "f32 %a (%#x) -> f16 %#x, core %#x", f[i], f2u(f[i]),
              h[i], rs_f32_to_f16(f[i]));
        CHECK(h2[i] == rs_f32_to_bf16(f[i]), "f32 %#x -> bf16 %#x, core %#x", f2u(f[i]), h2[i],
              rs_f32_to_bf16(f[i]));
    }
    rs_convert_row(RS_F32, f, g, N);
    CHECK(!memcmp(f, g, sizeof(float) * N), "f32 -> f32 copy");
}

/* ---------------------------------------------------------------- matmul */
typedef struct {
    const char *name;
    rs_quant_isa isa;             /* for rs_matmul_w_isa, or */
    const rs_quant_kernels *kern; /* explicit kernels (emulation) */
} variant;

static void run_variant(const variant *v, rs_dtype wt, const void *W, const float *x, float *y,
                        int64_t M, int64_t N, int64_t K, rs_pool *pool) {
    if (v->kern) rs_matmul_w_kernels(v->kern, wt, W, x, y, M, N, K, pool);
    else rs_matmul_w_isa(v->isa, wt, W, x, y, M, N, K, pool);
}

static bool bf16_acts_of(const variant *v) {
    if (v->kern) return v->kern->bf16_acts;
    rs_quant_kernels k;
    rs_quant_get_kernels(v->isa, &k);
    return k.bf16_acts;
}

/* Per-element bounds, with S = sum_k |x_k| |w_k| (w as stored, dequantised), u = 2^-24:
 *  f32, f16, bf16 (widened): |y - ref| <= (K + 4) u S   (float accumulation of K products)
 *  bf16 with dpbf16: x rounded to bf16 adds <= 2^-8 S:  (2^-8 + (K + 4) u) S
 *  q8_0: x is quantised per 32-block b (step d_b = amax_b/127, scale stored as f16, whose
 *        error is <= max(2^-11 d_b, 2^-25) with subnormals):
 *        |x - x^| <= e_b = d_b/2 + 127 max(2^-11 d_b, 2^-25), so
 *        |y - ref| <= sum_b e_b sum_{k in b} |w_k| + (K + 4) u S^
 *        and against the exact product with x^ (emulated, double): <= (K + 4) u S^. */
static double g_xscale = 1.0; /* activation scale (tiny / huge blocks) */
static int check_matmul(const variant *v, rs_dtype wt, int64_t M, int64_t N, int64_t K,
                        uint64_t seed, rs_pool *pool, double *worst_norm) {
    float *xf = malloc(sizeof(float) * (size_t)(M * K));
    float *wf = malloc(sizeof(float) * (size_t)(N * K));
    float *wd = malloc(sizeof(float) * (size_t)(N * K));
    float *xh = malloc(sizeof(float) * (size_t)(M * K));
    void *W = malloc(rs_row_bytes(wt, K) * (size_t)N + 64);
    float *y = malloc(sizeof(float) * (size_t)(M * N));
    float *yr = malloc(sizeof(float) * (size_t)(M * N));
    rs_block_q8_0 *xq = malloc(sizeof(rs_block_q8_0) * (size_t)(M * K / 32 + 1));
    rs_rng r;
    rs_rng_seed(&r, seed);
    rs_rng_fill_normal(&r, xf, (size_t)(M * K), 0.0f, 1.0f);
    rs_rng_fill_normal(&r, wf, (size_t)(N * K), 0.0f, 0.5f);
    for (int64_t i = 0; i < M * K; i += 7) xf[i] *= 10.0f; /* some outliers per block */
    for (int64_t i = 0; i < M * K; i++) xf[i] *= (float)g_xscale;
    for (int64_t n = 0; n < N; n++) {
        rs_convert_row(wt, wf + n * K, (uint8_t *)W + rs_row_bytes(wt, K) * (size_t)n, K);
        rs_row_to_f32(wt, (uint8_t *)W + rs_row_bytes(wt, K) * (size_t)n, wd + n * K, K);
    }
    const bool bfa = wt == RS_BF16 && bf16_acts_of(v);
    /* x^: the activations as the kernel sees them */
    if (wt == RS_Q8_0) {
        for (int64_t m = 0; m < M; m++) {
            rs_quantize_row_q8_0_isa(RS_QUANT_C, xf + m * K, xq, K);
            rs_dequantize_row_q8_0(xq, xh + m * K, K);
        }
    } else if (bfa) {
        for (int64_t i = 0; i < M * K; i++) xh[i] = rs_bf16_to_f32(rs_f32_to_bf16(xf[i]));
    } else {
        memcpy(xh, xf, sizeof(float) * (size_t)(M * K));
    }
    for (int64_t i = 0; i < M * N; i++) y[i] = NAN;
    run_variant(v, wt, W, xf, y, M, N, K, pool);
    rs_matmul_w_ref(wt, W, xf, yr, M, N, K);
    int bad = 0;
    for (int64_t m = 0; m < M && bad < 5; m++)
        for (int64_t n = 0; n < N && bad < 5; n++) {
            double S = 0, Sh = 0, Eq = 0, exact_h = 0;
            for (int64_t k = 0; k < K; k++) {
                S += fabs((double)xf[m * K + k] * wd[n * K + k]);
                Sh += fabs((double)xh[m * K + k] * wd[n * K + k]);
                exact_h += (double)xh[m * K + k] * wd[n * K + k];
            }
            if (wt == RS_Q8_0)
                for (int64_t b = 0; b < K / 32; b++) {
                    double amax = 0, sw = 0;
                    for (int j = 0; j < 32; j++) {
                        amax = fmax(amax, fabs((double)xf[m * K + b * 32 + j]));
                        sw += fabs((double)wd[n * K + b * 32 + j]);
                    }
                    const double db = (double)((float)amax / 127.0f);
                    Eq += (db / 2 + 127.0 * fmax(db / 2048.0, ldexp(1.0, -25))) * sw;
                }
            double bound;
            switch (wt) {
            case RS_Q8_0: bound = Eq + (K + 4) * U * Sh; break;
            case RS_BF16: bound = (bfa ? 1.0 / 256.0 : 0.0) * S + (K + 4) * U * S; break;
            default: bound = (K + 4) * U * S; break;
            }
            const double got = y[m * N + n], ref = yr[m * N + n];
            const double err = fabs(got - ref);
            if (!(err <= bound + 1e-30)) {
                bad++;
                fprintf(stderr, "  %s %s M=%lld N=%lld K=%lld y[%lld,%lld] = %.9g ref %.9g err %.3g > bound %.3g\n",
                        v->name, rs_dtype_name(wt), (long long)M, (long long)N, (long long)K,
                        (long long)m, (long long)n, got, ref, err, bound);
            }
            /* the tight check against the product with the activations as quantised */
            const double eh = fabs(got - exact_h), bh = (K + 4) * U * Sh + 1e-30;
            if (wt == RS_Q8_0 && !(eh <= bh)) {
                bad++;
                fprintf(stderr, "  %s q8_0 M=%lld N=%lld K=%lld y[%lld,%lld] = %.9g, with x^ %.9g: err %.3g > %.3g\n",
                        v->name, (long long)M, (long long)N, (long long)K, (long long)m,
                        (long long)n, got, exact_h, eh, bh);
            }
        }
    double ne = test_nerr_f32(y, yr, (size_t)(M * N));
    /* f32: also <= 1e-6 normalised by max|y| (needs a few outputs: one output can cancel
     * to near zero, which the per-element bound above covers) */
    if (wt == RS_F32 && M * N >= 9 && ne > 1e-6) {
        bad++;
        fprintf(stderr, "  %s f32 M=%lld N=%lld K=%lld: normalised error %.3g > 1e-6\n", v->name,
                (long long)M, (long long)N, (long long)K, ne);
    }
    if (worst_norm && M * N >= 9 && ne > *worst_norm) *worst_norm = ne;
    free(xf); free(wf); free(wd); free(xh); free(W); free(y); free(yr); free(xq);
    return bad;
}

static void matmul_suite(const variant *v) {
    static const int64_t Ms[] = {1, 3, 7, 33}, Ns[] = {1, 3, 7, 33}, Ks[] = {32, 64, 96, 2048};
    static const rs_dtype dts[] = {RS_F32, RS_F16, RS_BF16, RS_Q8_0};
    double worst[4] = {0};
    uint64_t seed = 100;
    for (int d = 0; d < 4; d++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 4; k++) {
                    if (Ks[k] == 2048 && Ms[i] * Ns[j] > 300) continue; /* keep ASan fast */
                    int bad = check_matmul(v, dts[d], Ms[i], Ns[j], Ks[k], seed++, NULL, &worst[d]);
                    CHECK(bad == 0, "%s %s M=%lld N=%lld K=%lld", v->name, rs_dtype_name(dts[d]),
                          (long long)Ms[i], (long long)Ns[j], (long long)Ks[k]);
                }
    /* f32 / f16 / bf16 rows of any length (tails) */
    static const int64_t oddK[] = {1, 17, 50, 127, 200};
    for (int d = 0; d <= 2; d++)
        for (int k = 0; k < 5; k++) {
            int bad = check_matmul(v, dts[d], 5, 9, oddK[k], seed++, NULL, &worst[d]);
            CHECK(bad == 0, "%s %s K=%lld", v->name, rs_dtype_name(dts[d]), (long long)oddK[k]);
        }
    printf("  %-22s worst normalised error vs ref: f32 %.2g  f16 %.2g  bf16 %.2g  q8_0 %.2g\n",
           v->name, worst[0], worst[1], worst[2], worst[3]);
}

static void isa_suite(rs_quant_isa isa) {
    variant v = {rs_quant_isa_name(isa), isa, NULL};
    matmul_suite(&v);
}

TEST(matmul_c) { isa_suite(RS_QUANT_C); }
TEST(matmul_avx2) {
    if (!rs_quant_isa_available(RS_QUANT_AVX2)) SKIP("this CPU has no AVX2+FMA+F16C");
    isa_suite(RS_QUANT_AVX2);
}
TEST(matmul_avx512) {
    if (!rs_quant_isa_available(RS_QUANT_AVX512)) SKIP("this CPU has no AVX-512 F/BW/VL (see the emulated tests)");
    isa_suite(RS_QUANT_AVX512);
}
TEST(matmul_avx512_ext) {
    if (!rs_quant_isa_available(RS_QUANT_AVX512_EXT))
        SKIP("this CPU has no AVX-512 VNNI or BF16 (see the emulated tests)");
    isa_suite(RS_QUANT_AVX512_EXT);
}

#ifdef HAVE_EMU
static const rs_quant_kernels emu512 = {
    .isa = RS_QUANT_AVX512, .q8 = emu_rs_qk_q8_avx512, .f16 = emu_rs_qk_f16_avx512,
    .bf16 = emu_rs_qk_bf16_avx512, .f32 = emu_rs_qk_f32_avx512, .want_xd16 = true};
static const rs_quant_kernels emu512x = {
    .isa = RS_QUANT_AVX512_EXT, .q8 = emu_rs_qk_q8_avx512vnni, .f16 = emu_rs_qk_f16_avx512,
    .bf16 = emu_rs_qk_bf16_avx512bf16, .f32 = emu_rs_qk_f32_avx512, .bf16_acts = true,
    .want_xd16 = true};
static rs_quant_kernels with_quant(rs_quant_kernels k) {
    rs_quant_kernels c;
    rs_quant_get_kernels(RS_QUANT_C, &c);
    k.quant = c.quant;
    return k;
}
#endif

TEST(matmul_avx512_emulated) {
#ifdef HAVE_EMU
    rs_quant_kernels k = with_quant(emu512);
    variant v = {"avx512 (SIMDe)", RS_QUANT_C, &k};
    matmul_suite(&v);
#else
    SKIP("SIMDe (libsimde-dev) not installed: AVX-512 kernels not emulated");
#endif
}

TEST(matmul_avx512_ext_emulated) {
#ifdef HAVE_EMU
    rs_quant_kernels k = with_quant(emu512x);
    variant v = {"avx512-vnni/bf16 (SIMDe)", RS_QUANT_C, &k};
    matmul_suite(&v);
#else
    SKIP("SIMDe (libsimde-dev) not installed: AVX-512 kernels not emulated");
#endif
}

/* M tiles (activation scratch holds fewer rows than M), K chunks (one row does not fit)
 * and threads: results must match the reference bounds; threaded == single-threaded. */
TEST(matmul_tiling_chunks_threads) {
    rs_pool *pool = rs_pool_new(3);
    REQUIRE(pool, "pool");
    rs_pool_set_min_work(pool, 0); /* threaded, however small */
    variant best = {"auto", RS_QUANT_AUTO, NULL};
    CHECK(check_matmul(&best, RS_Q8_0, 70, 19, 2048, 7, pool, NULL) == 0, "q8_0 M tiles");
    CHECK(check_matmul(&best, RS_Q8_0, 2, 5, 32 * 2100, 8, pool, NULL) == 0, "q8_0 K chunks");
    CHECK(check_matmul(&best, RS_BF16, 3, 40, 33000, 9, pool, NULL) == 0, "bf16 long K");
    CHECK(check_matmul(&best, RS_F16, 9, 77, 300, 10, pool, NULL) == 0, "f16 threads");
#ifdef HAVE_EMU
    rs_quant_kernels k = with_quant(emu512x);
    variant ve = {"avx512-ext (SIMDe)", RS_QUANT_C, &k};
    CHECK(check_matmul(&ve, RS_BF16, 3, 5, 33000, 11, pool, NULL) == 0, "emulated bf16 K chunks");
    CHECK(check_matmul(&ve, RS_Q8_0, 40, 5, 2048, 12, pool, NULL) == 0, "emulated q8_0 M tiles");
#endif
    /* threaded result is bit-identical to the single-threaded one */
    const int64_t M = 5, N = 37, K = 256;
    float *x = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K);
    float *y1 = malloc(sizeof(float) * M * N), *y2 = malloc(sizeof(float) * M * N);
    rs_block_q8_0 *wq = malloc(sizeof(rs_block_q8_0) * N * K / 32);
    uint16_t *wh = malloc(2 * N * K);
    rs_rng r;
    rs_rng_seed(&r, 3);
    rs_rng_fill_normal(&r, x, M * K, 0, 1);
    rs_rng_fill_normal(&r, wf, N * K, 0, 1);
    rs_convert_row(RS_Q8_0, wf, wq, N * K);
    rs_convert_row(RS_F16, wf, wh, N * K);
    rs_matmul_w(RS_Q8_0, wq, x, y1, M, N, K, NULL);
    rs_matmul_w(RS_Q8_0, wq, x, y2, M, N, K, pool);
    CHECK(!memcmp(y1, y2, sizeof(float) * M * N), "q8_0: threads change the result");
    rs_matmul_w(RS_F16, wh, x, y1, M, N, K, NULL);
    rs_matmul_w(RS_F16, wh, x, y2, M, N, K, pool);
    CHECK(!memcmp(y1, y2, sizeof(float) * M * N), "f16: threads change the result");
    free(x); free(wf); free(y1); free(y2); free(wq); free(wh);
    rs_pool_free(pool);
}

/* q8_0 activations whose block scales are f16 subnormal or flush to 0, and huge ones */
TEST(matmul_q8_tiny_and_huge_activations) {
    static const double scales[] = {1e-9, 3e-6, 1e-4, 1e4};
    for (int isa = RS_QUANT_C; isa <= RS_QUANT_AVX512_EXT; isa++) {
        if (!rs_quant_isa_available((rs_quant_isa)isa)) continue;
        variant v = {rs_quant_isa_name((rs_quant_isa)isa), (rs_quant_isa)isa, NULL};
        for (int s = 0; s < 4; s++) {
            g_xscale = scales[s];
            CHECK(check_matmul(&v, RS_Q8_0, 3, 7, 96, 40 + s, NULL, NULL) == 0, "%s x scale %g",
                  v.name, scales[s]);
        }
    }
#ifdef HAVE_EMU
    rs_quant_kernels k = with_quant(emu512x);
    variant ve = {"avx512-ext (SIMDe)", RS_QUANT_C, &k};
    for (int s = 0; s < 4; s++) {
        g_xscale = scales[s];
        CHECK(check_matmul(&ve, RS_Q8_0, 3, 7, 96, 50 + s, NULL, NULL) == 0, "emulated x scale %g",
              scales[s]);
    }
#endif
    g_xscale = 1.0;
}

TEST(bad_input_is_reported_not_crashed) {
    float x[64] = {0}, y[4] = {7, 7, 7, 7};
    rs_block_q8_0 w[4];
    memset(w, 0, sizeof w);
    rs_clear_error();
    rs_matmul_w(RS_Q8_0, w, x, y, 1, 1, 48, NULL);
    CHECK(y[0] == 7, "y written for K = 48 q8_0");
    CHECK(strstr(rsmoe_last_error(), "32") != NULL, "error: '%s'", rsmoe_last_error());
    rs_clear_error();
    rs_matmul_w((rs_dtype)5, w, x, y, 1, 1, 32, NULL);
    CHECK(y[0] == 7 && *rsmoe_last_error(), "unknown dtype: y %g, error '%s'", y[0], rsmoe_last_error());
    rs_matmul_w(RS_F16, w, x, y, 0, 1, 32, NULL);
    rs_matmul_w(RS_F16, NULL, x, y, 1, 1, 32, NULL);
    CHECK(y[0] == 7, "M = 0 or NULL W wrote y");
    rs_matmul_w(RS_F16, w, x, y, 2, 2, 0, NULL);
    CHECK(y[0] == 0 && y[3] == 0, "K = 0 gives zeros");
    rs_clear_error();
    rs_block_q8_0 q[2];
    rs_quantize_row_q8_0(x, q, 33);
    CHECK(*rsmoe_last_error(), "n = 33 not reported");
    CHECK(!rs_quant_set_isa((rs_quant_isa)99), "bogus ISA accepted");
    CHECK(rs_quant_set_isa(RS_QUANT_C) && rs_quant_set_isa(RS_QUANT_AUTO), "set C / AUTO");
    CHECK(rs_quant_isa_available(rs_quant_isa_best()), "best ISA unavailable");
}

int main(void) {
    printf("quant: best ISA %s\n", rs_quant_isa_name(rs_quant_isa_best()));
    RUN(q8_rounding_hand_made);
    RUN(q8_roundtrip_and_isa_identity);
    RUN(half_row_conversions_match_core);
    RUN(matmul_c);
    RUN(matmul_avx2);
    RUN(matmul_avx512);
    RUN(matmul_avx512_ext);
    RUN(matmul_avx512_emulated);
    RUN(matmul_avx512_ext_emulated);
    RUN(matmul_tiling_chunks_threads);
    RUN(matmul_q8_tiny_and_huge_activations);
    RUN(bad_input_is_reported_not_crashed);
    return test_summary();
}
