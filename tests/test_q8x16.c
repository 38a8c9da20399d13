/* test_q8x16.c - the 16-row packed q8_0 layout and its matmul: the layout against a formula
 * written here, the plain C twin against the exact product of the quantised operands
 * (quant.h's bound), the VNNI and AMX kernels bit for bit against the twin, tiles / K
 * chunks / threads / one or four weight streams (rs_q8x16_set_streams), and the refusals. */
#include "kernels/q8x16.h"
#include "kernels/quant.h"
#include "test.h"

#include <stdint.h>

static const double U = 1.0 / 16777216.0; /* 2^-24 */

static uint64_t g_s = 88172645463325252ull;
static float frand(void) {
    g_s ^= g_s << 13; g_s ^= g_s >> 7; g_s ^= g_s << 17;
    return (float)((double)(g_s >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static rs_block_q8_0 *rand_q8(int64_t N, int64_t K) {
    float *w = malloc(sizeof(float) * (size_t)(N * K));
    rs_block_q8_0 *q = malloc(sizeof(rs_block_q8_0) * (size_t)(N * K / 32));
    for (int64_t i = 0; i < N * K; i++) w[i] = frand() * (i % 7 == 0 ? 3.0f : 0.5f);
    for (int64_t n = 0; n < N; n++) rs_quantize_row_q8_0(w + n * K, q + n * (K / 32), K);
    free(w);
    return q;
}

static void *pack(const rs_block_q8_0 *q, int64_t N, int64_t K) {
    size_t bytes = rs_q8x16_bytes(N, K);
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p && rs_q8x16_pack(q, N, K, p, NULL)) { free(p); return NULL; }
    return p;
}

TEST(layout_matches_formula) {
    const int64_t N = 32, K = 96, nb = K / 32;
    rs_block_q8_0 *q = rand_q8(N, K);
    uint8_t *p = pack(q, N, K);
    REQUIRE(p, "pack");
    CHECK(rs_q8x16_bytes(N, K) == (size_t)(N / 16) * nb * (512 + 32), "bytes %zu", rs_q8x16_bytes(N, K));
    const uint16_t *d = (const uint16_t *)(p + (N / 16) * nb * 512);
    int bad = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            int64_t g = n / 16, r = n % 16, b = k / 32, kk = k % 32;
            uint8_t got = p[(g * nb + b) * 512 + (kk / 4) * 64 + r * 4 + kk % 4];
            bad += got != (uint8_t)(q[n * nb + b].qs[kk] + 128);
        }
    CHECK(bad == 0, "%d values misplaced", bad);
    /* threads share the groups: the same bytes */
    rs_pool *pool = rs_pool_new(3);
    uint8_t *p2 = aligned_alloc(64, rs_q8x16_bytes(N, K));
    REQUIRE(pool && p2, "pool");
    memset(p2, 0, rs_q8x16_bytes(N, K));
    CHECK(rs_q8x16_pack(q, N, K, p2, pool) == RSMOE_OK && !memcmp(p, p2, rs_q8x16_bytes(N, K)),
          "packing with a pool of 3 gives other bytes");
    rs_pool_free(pool);
    free(p2);
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++)
            CHECK(d[((n / 16) * nb + b) * 16 + n % 16] == q[n * nb + b].d, "scale of row %lld block %lld",
                  (long long)n, (long long)b);
    free(p);
    free(q);
}

/* y against the exact product of the quantised activations and weights: |err| <= (K+4) u S^ */
static int check_bound(const rs_block_q8_0 *q, const float *x, const float *y, int64_t M, int64_t N,
                       int64_t K, const char *what) {
    float *wf = malloc(sizeof(float) * (size_t)K), *xf = malloc(sizeof(float) * (size_t)K);
    rs_block_q8_0 *xq = malloc(sizeof(rs_block_q8_0) * (size_t)(K / 32));
    int bad = 0;
    for (int64_t m = 0; m < M; m++) {
        rs_quantize_row_q8_0(x + m * K, xq, K);
        rs_dequantize_row_q8_0(xq, xf, K);
        for (int64_t n = 0; n < N; n++) {
            rs_dequantize_row_q8_0(q + n * (K / 32), wf, K);
            double exact = 0, S = 0;
            for (int64_t k = 0; k < K; k++) {
                exact += (double)xf[k] * wf[k];
                S += fabs((double)xf[k] * wf[k]);
            }
            double err = fabs((double)y[m * N + n] - exact), tol = (double)(K + 4) * U * S + 1e-30;
            if (!(err <= tol)) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s: y[%lld][%lld] = %.9g, exact %.9g (err %.3g > %.3g)\n", what,
                            (long long)m, (long long)n, y[m * N + n], exact, err, tol);
            }
        }
    }
    free(wf);
    free(xf);
    free(xq);
    return bad;
}

TEST(c_twin_within_q8_bound) {
    const int64_t shapes[][3] = {{1, 16, 32}, {3, 48, 96}, {8, 32, 256}, {9, 64, 800}, {17, 16, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        rs_block_q8_0 *q = rand_q8(N, K);
        void *p = pack(q, N, K);
        float *x = malloc(sizeof(float) * (size_t)(M * K)), *y = malloc(sizeof(float) * (size_t)(M * N));
        REQUIRE(p && x && y, "alloc");
        for (int64_t i = 0; i < M * K; i++) x[i] = frand();
        rs_matmul_q8x16_isa(RS_QUANT_C, p, x, y, M, N, K, NULL, 0);
        CHECK(check_bound(q, x, y, M, N, K, "c") == 0, "M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
        /* forced small scratch: M tiles of one row and K chunks of 3 blocks */
        memset(y, 0xff, sizeof(float) * (size_t)(M * N));
        rs_matmul_q8x16_isa(RS_QUANT_C, p, x, y, M, N, K, NULL, 3 * 40);
        CHECK(check_bound(q, x, y, M, N, K, "c chunked") == 0, "chunked M=%lld N=%lld K=%lld", (long long)M,
              (long long)N, (long long)K);
        free(p); free(q); free(x); free(y);
    }
}

/* One shape against the C twin: for each (scratch, pool) variant, the C twin with that scratch
 * and `isa` with that scratch and pool must agree bit for bit; the last result must also be
 * within quant.h's bound. Returns the number of failed checks. */
typedef struct { size_t scratch; rs_pool *pool; } twin_variant;

static int twin_case(rs_quant_isa isa, const char *name, int64_t M, int64_t N, int64_t K, int big_every,
                     const twin_variant *v, int nv) {
    int fails = 0;
    rs_block_q8_0 *q = rand_q8(N, K);
    void *p = pack(q, N, K);
    float *x = malloc(sizeof(float) * (size_t)(M * K));
    float *yc = malloc(sizeof(float) * (size_t)(M * N)), *yk = malloc(sizeof(float) * (size_t)(M * N));
    if (!q || !p || !x || !yc || !yk) {
        fprintf(stderr, "  %s: alloc failed\n", name);
        fails++;
        goto out;
    }
    for (int64_t i = 0; i < M * K; i++) x[i] = frand() * (i % big_every ? 1.0f : 8.0f);
    for (int k = 0; k < nv; k++) {
        rs_matmul_q8x16_isa(RS_QUANT_C, p, x, yc, M, N, K, NULL, v[k].scratch);
        memset(yk, 0xff, sizeof(float) * (size_t)(M * N));
        rs_matmul_q8x16_isa(isa, p, x, yk, M, N, K, v[k].pool, v[k].scratch);
        if (memcmp(yc, yk, sizeof(float) * (size_t)(M * N))) {
            fprintf(stderr, "  %s != c at M=%lld N=%lld K=%lld scratch=%zu threads=%d\n", name, (long long)M,
                    (long long)N, (long long)K, v[k].scratch, rs_pool_size(v[k].pool));
            fails++;
        }
    }
    if (check_bound(q, x, yk, M, N, K, name)) {
        fprintf(stderr, "  %s bound at M=%lld N=%lld K=%lld\n", name, (long long)M, (long long)N, (long long)K);
        fails++;
    }
out:
    free(p); free(q); free(x); free(yc); free(yk);
    return fails;
}

TEST(vnni_equals_c_twin_bit_for_bit) {
    if (!rs_q8x16_native()) SKIP("this CPU has no AVX-512 VNNI");
    rs_pool *pool = rs_pool_new(2);
    REQUIRE(pool, "pool");
    rs_pool_set_min_work(pool, 0); /* small products on the threads too */
    /* the last three have enough groups of 16 columns per thread's chunk (35, 65, 33 in all) for
     * rows 1-3 to read them as four streams at once, with a remainder read one group at a time */
    const int64_t shapes[][3] = {{1, 16, 32},   {2, 48, 96},    {3, 64, 256},  {8, 32, 128}, {11, 80, 160},
                                 {197, 32, 768}, {1, 560, 64}, {2, 1040, 96}, {3, 528, 256}};
    /* the full scratch on 2 threads and on the caller's, and one forcing M tiles of one row and
     * K chunks of two blocks (the accumulate path) */
    const twin_variant v[] = {{0, pool}, {0, NULL}, {2 * 40, pool}};
    for (int streams = 1; streams <= 4; streams += 3) {
        rs_q8x16_set_streams(streams);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            CHECK(twin_case(RS_QUANT_AVX512_EXT, "vnni", shapes[s][0], shapes[s][1], shapes[s][2], 5, v, 3) == 0,
                  "vnni shape %zu, %d stream(s)", s, streams);
    }
    rs_q8x16_set_streams(0);
    rs_pool_free(pool);
}

/* AMX (16-row tiles, TDPBSUD) against the C twin: M >= 16 runs AMX tiles and finishes the
 * remainder rows with VNNI; K = 53,248 (1,664 blocks) does not fit the stack scratch, so it
 * takes the heap scratch and two K chunks (the accumulate path) */
TEST(amx_equals_c_twin_bit_for_bit) {
    if (!rs_q8x16_native() || !rs_cpu_amx_ready())
        SKIP("this CPU (or OS, or RSMOE_NO_AMX) gives no AMX-INT8");
    rs_pool *pool = rs_pool_new(2);
    REQUIRE(pool, "pool");
    rs_pool_set_min_work(pool, 0);
    const int64_t shapes[][3] = {{16, 16, 32}, {17, 48, 96}, {33, 64, 256}, {197, 32, 768}, {20, 32, 6144},
                                 {16, 16, 53248}};
    const twin_variant v[] = {{0, NULL}, {0, pool}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        CHECK(twin_case(RS_QUANT_AUTO, "amx", shapes[s][0], shapes[s][1], shapes[s][2], 7, v, 2) == 0,
              "amx shape %zu", s);
    rs_pool_free(pool);
}

/* the packed product and rs_matmul_w's q8_0 path quantise the activations the same way and
 * form the same exact block products; only the float summation order differs */
TEST(agrees_with_matmul_w_q8) {
    const int64_t M = 3, N = 64, K = 512;
    rs_block_q8_0 *q = rand_q8(N, K);
    void *p = pack(q, N, K);
    float *x = malloc(sizeof(float) * (size_t)(M * K));
    float *y1 = malloc(sizeof(float) * (size_t)(M * N)), *y2 = malloc(sizeof(float) * (size_t)(M * N));
    REQUIRE(p && x && y1 && y2, "alloc");
    for (int64_t i = 0; i < M * K; i++) x[i] = frand();
    rs_matmul_q8x16(p, x, y1, M, N, K, NULL);
    rs_matmul_w(RS_Q8_0, q, x, y2, M, N, K, NULL);
    double worst = 0;
    for (int64_t i = 0; i < M * N; i++) {
        double rel = fabs((double)y1[i] - y2[i]) / (fabs((double)y2[i]) + 1e-3);
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 1e-4, "packed vs rs_matmul_w q8_0: worst relative difference %.3g", worst);
    free(p); free(q); free(x); free(y1); free(y2);
}

/* several matrices sharing the input: each output bit for bit what its own rs_matmul_q8x16
 * gives, on 1 and 3 threads (threaded however small), over row counts that take the VNNI tiles
 * (1, 2, 3, 9) and AMX (17, where it is), and a K long enough to need two K chunks */
TEST(multi_equals_single_bit_for_bit) {
    const int64_t Ks[2] = {96, 32 * (RS_MATMUL_W_STACK / 40 + 40)};
    const int64_t Nsets[2][3] = {{48, 16, 80}, {272, 64, 400}};
    rs_pool *pool = rs_pool_new(3);
    REQUIRE(pool, "pool");
    rs_pool_set_min_work(pool, 0);
    /* the second set (46 groups of 16 columns) has chunks long enough for four streams, whose
     * runs cross from one matrix into the next; on one stream and on four */
    for (int cs = 0; cs < 4; cs++) {
        const int64_t *N = Nsets[cs & 1];
        const int kk = cs >> 1, streams = cs & 1 ? 4 : 1;
        rs_q8x16_set_streams(streams);
        const int64_t K = Ks[kk];
        rs_block_q8_0 *q[3];
        const void *p[3];
        for (int i = 0; i < 3; i++) { q[i] = rand_q8(N[i], K); p[i] = pack(q[i], N[i], K); }
        REQUIRE(p[0] && p[1] && p[2], "pack");
        const int Ms[5] = {1, 2, 3, 9, 17};
        for (int mi = 0; mi < 5; mi++) {
            const int64_t M = Ms[mi];
            float *x = malloc(sizeof(float) * (size_t)(M * K));
            for (int64_t t = 0; t < M * K; t++) x[t] = frand();
            for (int th = 0; th < 2; th++) {
                rs_pool *pl = th ? pool : NULL;
                float *ym[3], *ys[3];
                for (int i = 0; i < 3; i++) {
                    ym[i] = malloc(sizeof(float) * (size_t)(M * N[i]));
                    ys[i] = malloc(sizeof(float) * (size_t)(M * N[i]));
                    for (int64_t t = 0; t < M * N[i]; t++) ym[i][t] = NAN;
                    rs_matmul_q8x16(p[i], x, ys[i], M, N[i], K, pl);
                }
                rs_matmul_q8x16_multi(3, p, N, ym, x, M, K, pl);
                for (int i = 0; i < 3; i++) {
                    CHECK(!memcmp(ym[i], ys[i], sizeof(float) * (size_t)(M * N[i])),
                          "K %lld, M %lld, %d thread(s), %d stream(s): matrix %d differs from its single product",
                          (long long)K, (long long)M, th ? 3 : 1, streams, i);
                    free(ym[i]);
                    free(ys[i]);
                }
            }
            free(x);
        }
        /* the products are the right ones (not just equal): matrix 2 against rs_matmul_w's q8_0
         * (which sums in another order: as agrees_with_matmul_w_q8) */
        float x1[96], yw[80], *y3[3], y0[48], y1[16], y2[80];
        if (K == 96 && N[2] == 80) {
            for (int t = 0; t < 96; t++) x1[t] = frand();
            y3[0] = y0; y3[1] = y1; y3[2] = y2;
            rs_matmul_q8x16_multi(3, p, N, y3, x1, 1, K, NULL);
            rs_matmul_w(RS_Q8_0, q[2], x1, yw, 1, N[2], K, NULL);
            double worst = 0;
            for (int t = 0; t < 80; t++) {
                double rel = fabs((double)y2[t] - yw[t]) / (fabs((double)yw[t]) + 1e-3);
                if (rel > worst) worst = rel;
            }
            CHECK(worst < 1e-4, "matrix 2 against rs_matmul_w (q8_0): worst relative difference %.3g", worst);
        }
        for (int i = 0; i < 3; i++) { free(q[i]); free((void *)p[i]); }
    }
    rs_q8x16_set_streams(0);
    rs_pool_free(pool);
    /* refusals: no matrix, too many, a width not packable; the outputs untouched */
    rs_clear_error();
    float y[16], x[32] = {0};
    for (int i = 0; i < 16; i++) y[i] = 42.0f;
    float *yy[5] = {y, y, y, y, y};
    const void *pp[5] = {x, x, x, x, x};
    const int64_t NN[5] = {16, 16, 16, 16, 16}, Nbad[1] = {8};
    rs_matmul_q8x16_multi(0, pp, NN, yy, x, 1, 32, NULL);
    CHECK(rsmoe_last_error()[0], "0 matrices accepted");
    rs_clear_error();
    rs_matmul_q8x16_multi(RS_Q8X16_MAX_MATS + 1, pp, NN, yy, x, 1, 32, NULL);
    CHECK(rsmoe_last_error()[0], "%d matrices accepted", RS_Q8X16_MAX_MATS + 1);
    rs_clear_error();
    rs_matmul_q8x16_multi(1, pp, Nbad, yy, x, 1, 32, NULL);
    CHECK(rsmoe_last_error()[0], "N = 8 accepted");
    CHECK(y[0] == 42.0f && y[15] == 42.0f, "a refused call wrote its output");
}

TEST(refusals) {
    CHECK(rs_q8x16_bytes(17, 32) == 0, "N not a multiple of 16");
    CHECK(rs_q8x16_bytes(16, 48) == 0, "K not a multiple of 32");
    CHECK(rs_q8x16_bytes(0, 32) == 0, "N = 0");
    rs_block_q8_0 b[16];
    memset(b, 0, sizeof b);
    unsigned char out[1024];
    CHECK(rs_q8x16_pack(b, 15, 32, out, NULL) != RSMOE_OK, "pack of 15 rows refused");
    float x[32] = {0}, y[16];
    for (int i = 0; i < 16; i++) y[i] = 42.0f;
    rs_matmul_q8x16(out, x, y, 1, 15, 32, NULL);
    CHECK(y[0] == 42.0f, "a bad shape leaves y untouched");
}

int main(void) {
    RUN(layout_matches_formula);
    RUN(c_twin_within_q8_bound);
    RUN(vnni_equals_c_twin_bit_for_bit);
    RUN(amx_equals_c_twin_bit_for_bit);
    RUN(agrees_with_matmul_w_q8);
    RUN(multi_equals_single_bit_for_bit);
    RUN(refusals);
    return test_summary();
}
