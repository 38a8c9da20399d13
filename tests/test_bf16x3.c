/* test_bf16x3.c - f32 weights as bf16 pairs (kernels/bf16x3.h): the split, the packed layout
 * against a formula written here, the plain C twin against the exact f64 product of the f32
 * operands within the header's bound (which a two-term or one-term product exceeds), the AMX
 * kernel against the twin (tiles, row tails, M and K chunks, odd group counts, threads), and
 * the refusals. */
#include "kernels/bf16x3.h"
#include "test.h"

#include <stdint.h>

static const double U = 1.0 / 16777216.0; /* 2^-24 */

static uint64_t g_s = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    g_s ^= g_s << 13; g_s ^= g_s >> 7; g_s ^= g_s << 17;
    return (float)((double)(g_s >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static float *rand_mat(int64_t n, float scale) {
    float *a = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) a[i] = frand() * (i % 11 == 0 ? 4.0f * scale : scale);
    return a;
}

static void *pack(const float *W, int64_t N, int64_t K, rs_pool *pool) {
    size_t bytes = rs_bf16x3_bytes(N, K);
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p && rs_bf16x3_pack(W, N, K, p, pool)) { free(p); return NULL; }
    return p;
}

static double bf(uint16_t h) { return rs_bf16_to_f32(h); }

TEST(split_is_close_and_exactly_rounded) {
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        float v = frand() * ldexpf(1.0f, (i % 200) - 100);
        if (fabsf(v) < 0x1p-110f) continue; /* far from the denormals, read as zero (below) */
        uint16_t h, l;
        rs_bf16x3_split(v, &h, &l);
        /* hi is v rounded to bf16 (nearest even), lo the rest rounded again */
        bad += h != rs_f32_to_bf16(v);
        bad += l != rs_f32_to_bf16(v - rs_bf16_to_f32(h));
        bad += fabs((bf(h) + bf(l)) - (double)v) > 0x1p-17 * fabs((double)v);
    }
    CHECK(bad == 0, "%d of 100000 splits wrong", bad);
    uint16_t h, l;
    rs_bf16x3_split(INFINITY, &h, &l);
    CHECK(isinf(bf(h)) && bf(h) > 0 && bf(l) == 0, "inf splits into %g + %g", bf(h), bf(l));
    rs_bf16x3_split(NAN, &h, &l);
    CHECK(isnan(bf(h)), "NaN's hi is %g", bf(h));
    rs_bf16x3_split(0x1p-130f, &h, &l); /* an f32 denormal reads as zero, as on the hardware */
    CHECK(bf(h) == 0 && bf(l) == 0, "denormal splits into %g + %g", bf(h), bf(l));
    rs_bf16x3_split(1.0f + 0x1p-20f, &h, &l);
    CHECK(bf(h) == 1.0 && bf(l) == 0x1p-20, "1 + 2^-20 splits into %g + %g", bf(h), bf(l));
}

TEST(layout_matches_formula) {
    const int64_t N = 48, K = 96, nkb = K / 32;
    float *W = rand_mat(N * K, 0.1f);
    /* values the vector split (used where AMX is) must treat as the C split does */
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, 0x1p-130f, -0x1p-140f, 0x1p-126f, 3.0e38f,
                             1.0f + 0x1p-8f, 1.0f + 0x1p-9f, -1.0f - 0x1p-9f - 0x1p-20f, 0x1.fffffep127f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) W[i * 37] = special[i];
    uint16_t *p = pack(W, N, K, NULL);
    REQUIRE(p, "pack");
    CHECK(rs_bf16x3_bytes(N, K) == (size_t)N * K * 4, "bytes %zu", rs_bf16x3_bytes(N, K));
    int bad = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            const int64_t g = n / 16, r = n % 16, b = k / 32, kk = k % 32;
            const uint16_t *rec = p + (g * nkb + b) * 1024;
            const int64_t at = (kk / 2) * 32 + r * 2 + kk % 2;
            uint16_t h, l;
            rs_bf16x3_split(W[n * K + k], &h, &l);
            bad += rec[at] != h || rec[512 + at] != l;
        }
    CHECK(bad == 0, "%d values misplaced", bad);
    rs_pool *pool = rs_pool_new(3);
    uint16_t *p2 = pack(W, N, K, pool);
    REQUIRE(pool && p2, "pool");
    CHECK(!memcmp(p, p2, rs_bf16x3_bytes(N, K)), "packing with a pool of 3 gives other bytes");
    rs_pool_free(pool);
    free(p2);
    free(p);
    free(W);
}

/* y against the exact f64 product of the f32 operands: |err| <= 2^-16 S + (3K + 4) u S
 * (+ 2^-126 sum |w| for denormal flushes). Returns the number of elements outside, and the
 * largest err / S seen. */
static int check_exact(const float *W, const float *x, const float *y, int64_t M, int64_t N, int64_t K,
                       double *worst) {
    int bad = 0;
    *worst = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double e = 0, S = 0, Sw = 0;
            for (int64_t k = 0; k < K; k++) {
                e += (double)x[m * K + k] * W[n * K + k];
                S += fabs((double)x[m * K + k] * W[n * K + k]);
                Sw += fabs((double)W[n * K + k]);
            }
            const double err = fabs(y[m * N + n] - e);
            if (S > 0 && err / S > *worst) *worst = err / S;
            if (err > 0x1p-16 * S + (3.0 * K + 4) * U * S + 0x1p-126 * Sw) bad++;
        }
    return bad;
}

TEST(c_twin_within_bound) {
    const int64_t shapes[][3] = {{1, 16, 32}, {17, 48, 96}, {5, 32, 800}, {33, 16, 1600}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *W = rand_mat(N * K, 0.05f), *x = rand_mat(M * K, 1.0f), *y = malloc(sizeof(float) * (size_t)(M * N));
        void *p = pack(W, N, K, NULL);
        REQUIRE(p && y, "alloc");
        rs_matmul_bf16x3_isa(false, p, x, y, M, N, K, NULL);
        double worst;
        int bad = check_exact(W, x, y, M, N, K, &worst);
        CHECK(bad == 0, "%lldx%lldx%lld: %d elements outside the bound (worst err/S %.3g)", (long long)M,
              (long long)N, (long long)K, bad, worst);
        /* the bound is tight enough to matter: one bf16 product per term (hi x hi) is
         * outside it, the dropped lo x lo term well inside */
        float *y1 = malloc(sizeof(float) * (size_t)(M * N)), *W1 = malloc(sizeof(float) * (size_t)(N * K)),
              *x1 = malloc(sizeof(float) * (size_t)(M * K));
        for (int64_t i = 0; i < N * K; i++) W1[i] = rs_bf16_to_f32(rs_f32_to_bf16(W[i]));
        for (int64_t i = 0; i < M * K; i++) x1[i] = rs_bf16_to_f32(rs_f32_to_bf16(x[i]));
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double a = 0;
                for (int64_t k = 0; k < K; k++) a += (double)x1[m * K + k] * W1[n * K + k];
                y1[m * N + n] = (float)a;
            }
        double worst1;
        CHECK(check_exact(W, x, y1, M, N, K, &worst1) > 0, "a plain bf16 product passes the bound (worst %.3g)",
              worst1);
        CHECK(worst < 0x1p-18, "worst err/S %.3g not below 2^-18", worst);
        free(y1), free(W1), free(x1);
        free(p), free(W), free(x), free(y);
    }
}

/* the AMX kernel against the twin: both sum the same three products of the same bf16 values
 * (the twin in f64, AMX in f32): |diff| <= (3K + 4) u S; and the same bits on 1 and 3 threads */
TEST(amx_agrees_with_c_twin) {
    if (!rs_bf16x3_native()) SKIP("this CPU has no AMX-BF16 (or Linux refused the tile state)");
    /* M: below a tile, a tile, tails, two M chunks (at most 384 rows each); N: odd group counts;
     * K: one block, one K chunk (768) plus a block, several chunks */
    const int64_t shapes[][3] = {{1, 16, 32},    {16, 32, 64},  {17, 48, 96},  {197, 96, 800},
                                 {400, 80, 1600}, {40, 16, 768}, {3, 272, 2336}};
    rs_pool *pool = rs_pool_new(3);
    REQUIRE(pool, "pool");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *W = rand_mat(N * K, 0.05f), *x = rand_mat(M * K, 1.0f);
        float *yc = malloc(sizeof(float) * (size_t)(M * N)), *ya = malloc(sizeof(float) * (size_t)(M * N)),
              *yt = malloc(sizeof(float) * (size_t)(M * N));
        void *p = pack(W, N, K, NULL);
        REQUIRE(p && yc && ya && yt, "alloc");
        rs_matmul_bf16x3_isa(false, p, x, yc, M, N, K, NULL);
        rs_matmul_bf16x3_isa(true, p, x, ya, M, N, K, NULL);
        rs_matmul_bf16x3_isa(true, p, x, yt, M, N, K, pool);
        int bad = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double S = 0;
                for (int64_t k = 0; k < K; k++) S += fabs((double)x[m * K + k] * W[n * K + k]);
                bad += fabs((double)ya[m * N + n] - yc[m * N + n]) > (3.0 * K + 4) * U * S * 1.01 + 1e-30;
            }
        CHECK(bad == 0, "%lldx%lldx%lld: %d elements differ from the twin beyond (3K+4)uS", (long long)M,
              (long long)N, (long long)K, bad);
        CHECK(!memcmp(ya, yt, sizeof(float) * (size_t)(M * N)), "%lldx%lldx%lld: 3 threads give other bits",
              (long long)M, (long long)N, (long long)K);
        double worst;
        CHECK(check_exact(W, x, ya, M, N, K, &worst) == 0, "%lldx%lldx%lld: AMX outside the bound (worst %.3g)",
              (long long)M, (long long)N, (long long)K, worst);
        free(p), free(W), free(x), free(yc), free(ya), free(yt);
    }
    rs_pool_free(pool);
}

TEST(refusals) {
    CHECK(rs_bf16x3_bytes(15, 32) == 0 && rs_bf16x3_bytes(16, 48) == 0 && rs_bf16x3_bytes(0, 32) == 0,
          "unpackable shapes have a size");
    float W[16 * 48] = {0};
    _Alignas(64) uint16_t out[16 * 48 * 2];
    CHECK(rs_bf16x3_pack(W, 16, 48, out, NULL) == RSMOE_ERR_INVALID_ARG, "K = 48 packed");
    CHECK(strstr(rsmoe_last_error(), "16 x 32") != NULL, "message: %s", rsmoe_last_error());
    float y[4] = {7, 7, 7, 7};
    rs_matmul_bf16x3(out, W, y, 1, 16, 48, NULL);
    CHECK(y[0] == 7 && y[3] == 7, "a bad shape wrote y");
    rs_matmul_bf16x3(out, W, y, 0, 16, 32, NULL);
    CHECK(y[0] == 7, "M = 0 wrote y");
}

int main(void) {
    RUN(split_is_close_and_exactly_rounded);
    RUN(layout_matches_formula);
    RUN(c_twin_within_bound);
    RUN(amx_agrees_with_c_twin);
    RUN(refusals);
    return test_summary();
}
