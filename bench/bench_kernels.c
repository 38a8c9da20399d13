/* bench_kernels.c - `rsmoe bench kernels`: the machine's ceilings (FP32 FMA peak, read
 * bandwidth) and the kernels measured against them: rs_sgemm (BLAS and own paths) at the
 * model's shapes, the weight matrix products of kernels/quant.h (q8_0, bf16), and the
 * elementwise activations. Every figure is the median of R repetitions after a warm-up, with min/max/sd. */
#include "bench.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"

#if defined(__has_include)
#if __has_include("kernels/quant.h")
#include "kernels/bf16x3.h"
#include "kernels/q8x16.h"
#include "kernels/quant.h"
#define BENCH_HAVE_QUANT 1
#endif
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define BENCH_X86 1
#include <immintrin.h>
#define TGT_AVX2 __attribute__((target("avx2,fma")))
#define TGT_AVX512 __attribute__((target("avx512f,fma")))
#endif

/* ---------------------------------------------------------------- FMA peak */
/* Independent accumulator chains acc = acc * m + c (values stay bounded): with at least
 * latency x throughput chains in flight the FMA units are saturated. Flops per iteration:
 * chains * lanes * 2. */

#ifdef BENCH_X86
#define PEAK512_CHAINS 16
TGT_AVX512 static float fma_loop_avx512(int64_t iters) {
    __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    __m512 a0 = _mm512_set1_ps(0.1f), a1 = _mm512_set1_ps(0.2f), a2 = _mm512_set1_ps(0.3f);
    __m512 a3 = _mm512_set1_ps(0.4f), a4 = _mm512_set1_ps(0.5f), a5 = _mm512_set1_ps(0.6f);
    __m512 a6 = _mm512_set1_ps(0.7f), a7 = _mm512_set1_ps(0.8f), a8 = _mm512_set1_ps(0.9f);
    __m512 a9 = _mm512_set1_ps(1.0f), a10 = _mm512_set1_ps(1.1f), a11 = _mm512_set1_ps(1.2f);
    __m512 a12 = _mm512_set1_ps(1.3f), a13 = _mm512_set1_ps(1.4f), a14 = _mm512_set1_ps(1.5f);
    __m512 a15 = _mm512_set1_ps(1.6f);
    for (int64_t i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c);
        a2 = _mm512_fmadd_ps(a2, m, c); a3 = _mm512_fmadd_ps(a3, m, c);
        a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c);
        a8 = _mm512_fmadd_ps(a8, m, c); a9 = _mm512_fmadd_ps(a9, m, c);
        a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);
        a12 = _mm512_fmadd_ps(a12, m, c); a13 = _mm512_fmadd_ps(a13, m, c);
        a14 = _mm512_fmadd_ps(a14, m, c); a15 = _mm512_fmadd_ps(a15, m, c);
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3)); /* keep chains apart */
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                                       _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    return _mm512_reduce_add_ps(s);
}

#define PEAK256_CHAINS 12
TGT_AVX2 static float fma_loop_avx2(int64_t iters) {
    __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    __m256 a0 = _mm256_set1_ps(0.1f), a1 = _mm256_set1_ps(0.2f), a2 = _mm256_set1_ps(0.3f);
    __m256 a3 = _mm256_set1_ps(0.4f), a4 = _mm256_set1_ps(0.5f), a5 = _mm256_set1_ps(0.6f);
    __m256 a6 = _mm256_set1_ps(0.7f), a7 = _mm256_set1_ps(0.8f), a8 = _mm256_set1_ps(0.9f);
    __m256 a9 = _mm256_set1_ps(1.0f), a10 = _mm256_set1_ps(1.1f), a11 = _mm256_set1_ps(1.2f);
    for (int64_t i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c); a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c); a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}
#endif

#define PEAKC_CHAINS 12
static float fma_loop_c(int64_t iters) {
    float a[PEAKC_CHAINS];
    for (int j = 0; j < PEAKC_CHAINS; j++) a[j] = 0.1f * (float)(j + 1);
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < PEAKC_CHAINS; j++) a[j] = fmaf(a[j], 0.999999f, 1e-6f);
    float s = 0;
    for (int j = 0; j < PEAKC_CHAINS; j++) s += a[j];
    return s;
}

typedef struct {
    int kind; /* 2 = avx512, 1 = avx2, 0 = c */
    int64_t iters;
    rs_pool *pool;
    volatile float sink[256];
} peak_ctx;

static double peak_flops_per_iter(int kind) {
#ifdef BENCH_X86
    if (kind == 2) return PEAK512_CHAINS * 16 * 2.0;
    if (kind == 1) return PEAK256_CHAINS * 8 * 2.0;
#endif
    return PEAKC_CHAINS * 2.0;
}

static void peak_worker(void *ctx, int ith, int nth) {
    peak_ctx *p = ctx;
    float r;
#ifdef BENCH_X86
    if (p->kind == 2) r = fma_loop_avx512(p->iters);
    else if (p->kind == 1) r = fma_loop_avx2(p->iters);
    else
#endif
        r = fma_loop_c(p->iters);
    p->sink[ith & 255] = r;
}

static void peak_run(void *ctx) { rs_pool_run(((peak_ctx *)ctx)->pool, peak_worker, ctx); }

/* ---------------------------------------------------------------- sgemm */
typedef struct {
    int64_t M, N, K;
    const float *A, *W;
    float *C;
    rs_pool *pool;
    bool own;
    const void *packed; /* W repacked by rs_bf16x3_pack: timed through rs_matmul_bf16x3 */
} gemm_ctx;

/* the model's linear layer: C[M,N] = A[M,K] * W[N,K]^T */
static void gemm_run(void *ctx) {
    gemm_ctx *g = ctx;
    if (g->packed)
        rs_matmul_bf16x3(g->packed, g->A, g->C, g->M, g->N, g->K, g->pool);
    else if (g->own)
        rs_sgemm_own(false, true, g->M, g->N, g->K, 1.0f, g->A, g->K, g->W, g->K, 0.0f, g->C, g->N, g->pool);
    else
        rs_sgemm_blas(false, true, g->M, g->N, g->K, 1.0f, g->A, g->K, g->W, g->K, 0.0f, g->C, g->N, g->pool);
}

/* ---------------------------------------------------------------- quantised products */
#define BENCH_MAX_COPIES 128
#ifdef BENCH_HAVE_QUANT
typedef struct {
    rs_dtype wt;
    int64_t M, N, K;
    uint8_t **W; /* ncopies copies of the weights, each read once per repetition */
    int ncopies;
    const float *x;
    float *y;
    rs_pool *pool;
    bool packed; /* W holds q8_0 repacked by rs_q8x16_pack */
} quant_ctx;

static void quant_run(void *ctx) {
    quant_ctx *q = ctx;
    for (int c = 0; c < q->ncopies; c++) {
        if (q->packed) rs_matmul_q8x16(q->W[c], q->x, q->y, q->M, q->N, q->K, q->pool);
        else rs_matmul_w(q->wt, q->W[c], q->x, q->y, q->M, q->N, q->K, q->pool);
    }
}
#endif

/* ---------------------------------------------------------------- activations */
/* one thread, cache-resident: the arithmetic of the inline exp/erfc/sigmoid loops (a loop that
 * stops vectorising, or whose lanes hit denormal assists, shows up here ten times slower) */
typedef struct {
    int op;
    int64_t n;
    const float *x, *u;
    float *y;
} act_ctx;
static const char *const act_names[] = {"gelu (erf)", "gelu (tanh)", "silu", "swiglu", "softmax rows of 2048"};
static void act_run(void *ctx) {
    act_ctx *a = ctx;
    switch (a->op) {
    case 0: rs_gelu_fwd(a->y, a->x, a->n, NULL); break;
    case 1: rs_gelu_tanh_fwd(a->y, a->x, a->n, NULL); break;
    case 2: rs_silu_fwd(a->y, a->x, a->n, NULL); break;
    case 3: rs_swiglu_fwd(a->y, a->x, a->u, a->n, NULL); break;
    default: rs_softmax_fwd(a->y, a->x, a->n / 2048, 2048, 1.0f, NULL); break;
    }
}

/* ---------------------------------------------------------------- driver */
static void usage(FILE *f) {
    fprintf(f,
            "usage: rsmoe bench kernels [--threads N] [--reps R] [--json] [--cpu-time] [--bw-mib MIB]\n\n"
            "Measures the machine's FP32 FMA peak and read bandwidth on 1 and N threads, then\n"
            "rs_sgemm (BLAS and own paths) at the model's shapes and the q8_0/bf16 weight\n"
            "products (kernels/quant.h) against those ceilings. Median of R repetitions after a\n"
            "warm-up, with min/max/sd.\n\n"
            "  --threads N   the multi-thread count (default 2)\n"
            "  --reps R      repetitions per figure (default 5)\n"
            "  --json        machine-readable output instead of markdown tables\n"
            "  --cpu-time    time by process CPU time / threads instead of wall time (an\n"
            "                estimate for a machine shared with other jobs)\n"
            "  --bw-mib MIB  size of the bandwidth array (default: four times the last-level\n"
            "                cache, at least 1024 = 1 GiB)\n");
}

/* the pages a model's repacked weights and the bandwidth ceiling get (rs_alloc_stream) */
static void *xalloc(size_t bytes) { return rs_alloc_stream(bytes); }

int bench_kernels_main(int argc, char **argv) {
    int nthreads = 2, reps = 5, bw_mib = (int)(bench_uncached_bytes((size_t)1 << 30) >> 20);
    bool json = false, cpu_time = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--cpu-time")) cpu_time = true;
        else if (!strcmp(a, "--threads")) {
            if (!bench_parse_int("rsmoe bench kernels", a, i + 1 < argc ? argv[++i] : NULL, 1, 256, &nthreads)) return 2;
        } else if (!strcmp(a, "--reps")) {
            if (!bench_parse_int("rsmoe bench kernels", a, i + 1 < argc ? argv[++i] : NULL, 1, BENCH_MAX_REPS, &reps)) return 2;
        } else if (!strcmp(a, "--bw-mib")) {
            if (!bench_parse_int("rsmoe bench kernels", a, i + 1 < argc ? argv[++i] : NULL, 1, 65536, &bw_mib)) return 2;
        } else {
            fprintf(stderr, "rsmoe bench kernels: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    int tcounts[2] = {1, nthreads}, ntc = nthreads > 1 ? 2 : 1;
    rs_pool *pools[2] = {NULL, NULL};
    for (int t = 0; t < ntc; t++) {
        /* a pool even for one thread: rs_sgemm takes the BLAS path only with a pool */
        pools[t] = rs_pool_new(tcounts[t]);
        if (!pools[t]) {
            fprintf(stderr, "rsmoe bench kernels: cannot start %d threads: %s\n", tcounts[t], rsmoe_last_error());
            return 1;
        }
    }
    bench_report rep;
    bench_report_init(&rep, "rsmoe bench kernels", rsmoe_system_info());
    char line[256];
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        char buf[64] = "";
        if (fgets(buf, sizeof buf, la)) {
            buf[strcspn(buf, "\n")] = 0;
            snprintf(line, sizeof line, "Load average at start: %s (other processes share these cores; figures are noisy).", buf);
            bench_note(&rep, line);
        }
        fclose(la);
    }
    if (!json) fprintf(stderr, "measuring (a minute or two)...\n");

    /* (1) FMA peak */
    const rs_cpu_features *cpu = rs_cpu();
    peak_ctx pk;
    memset((void *)&pk, 0, sizeof pk);
#ifdef BENCH_X86
    pk.kind = (cpu->avx512f && cpu->fma) ? 2 : (cpu->avx2 && cpu->fma) ? 1 : 0;
#endif
    const char *peak_path = pk.kind == 2 ? "avx512 fma x16" : pk.kind == 1 ? "avx2 fma x12" : "scalar fmaf x12";
    pk.iters = 1 << 20;
    double t0 = rs_time_s();
    peak_run(&pk);
    double dt = rs_time_s() - t0;
    pk.iters = (int64_t)((double)pk.iters * 0.15 / (dt > 1e-6 ? dt : 1e-6)); /* ~0.15 s a call */
    if (pk.iters < 1000) pk.iters = 1000;
    double peak[2] = {0, 0};
    for (int t = 0; t < ntc; t++) {
        pk.pool = pools[t];
        bench_use_cpu_time(cpu_time ? tcounts[t] : 0);
        bench_stats st = bench_rate(peak_run, &pk, 1, reps,
                                    peak_flops_per_iter(pk.kind) * (double)pk.iters * tcounts[t], 1e9);
        peak[t] = st.med;
        bench_add(&rep, "FP32 FMA peak", "independent FMA chains", peak_path, tcounts[t], st, "GFLOP/s", -1, "");
    }

    /* (2) read bandwidth */
    double bw[2] = {0, 0};
    {
        size_t bytes = (size_t)bw_mib << 20;
        bench_bw_job b;
        memset((void *)&b, 0, sizeof b);
        b.n = (int64_t)(bytes / sizeof(float));
        float *x = xalloc(bytes);
        if (!x) {
            bench_note(&rep, "read bandwidth: could not allocate the array; skipped");
        } else {
            for (int64_t i = 0; i < b.n; i++) x[i] = (float)(i & 1023) * 1e-3f; /* touch every page */
            b.x = x;
            char bwname[48];
            snprintf(bwname, sizeof bwname, "sum of %d MiB", bw_mib);
            /* the ceiling: the better of one stream and several prefetched streams */
            char spath[48];
            snprintf(spath, sizeof spath, "avx2, %d streams + prefetch", BENCH_BW_STREAMS);
            for (int t = 0; t < ntc; t++) {
                b.pool = pools[t];
                bench_use_cpu_time(cpu_time ? tcounts[t] : 0);
                for (int m = 0; m < (cpu->avx2 ? 2 : 1); m++) {
                    b.streams = m ? BENCH_BW_STREAMS : 1;
                    bench_stats st = bench_rate(bench_bw_run, &b, 1, reps, (double)bytes, 1e9);
                    if (st.med > bw[t]) bw[t] = st.med;
                    bench_add(&rep, "read bandwidth", bwname, m ? spath : cpu->avx2 ? "avx2 loads" : "c", tcounts[t],
                              st, "GB/s", -1, "");
                }
            }
            bench_note(&rep, "Read bandwidth: the ceiling of the % columns below is the better of the two "
                             "reading patterns' medians.");
            free(x);
        }
    }

    /* (3) sgemm at the model's shapes, linear-layer layout C = A W^T */
    static const int64_t shapes[][3] = {
        {257, 1408, 1408}, {257, 1408, 6144}, {257, 6144, 1408},
        {32, 768, 3072},   {197, 768, 768},   {197, 768, 3072},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    char ownpath[32];
    snprintf(ownpath, sizeof ownpath, "own/%s", rs_gemm_isa_name(rs_gemm_isa_best()));
    char blaspath[48];
    snprintf(blaspath, sizeof blaspath, "openblas/%s", rs_sgemm_blas_core() ? rs_sgemm_blas_core() : "-");
    /* all one-thread figures first, then the multi-thread ones (OpenBLAS's idle workers
     * spin for a while after a threaded call) */
    for (int t = 0; t < ntc; t++) {
        bench_use_cpu_time(cpu_time ? tcounts[t] : 0);
        for (int s = 0; s < nshapes; s++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            float *A = xalloc((size_t)(M * K) * sizeof(float)), *W = xalloc((size_t)(N * K) * sizeof(float));
            float *C = xalloc((size_t)(M * N) * sizeof(float));
            if (!A || !W || !C) {
                free(A); free(W); free(C);
                bench_note(&rep, "sgemm: out of memory; some shapes skipped");
                continue;
            }
            rs_rng r;
            rs_rng_seed(&r, (uint64_t)s + 1);
            rs_rng_fill_uniform(&r, A, (size_t)(M * K), -1.f, 1.f);
            rs_rng_fill_uniform(&r, W, (size_t)(N * K), -1.f, 1.f);
            char name[64];
            snprintf(name, sizeof name, "%lldx%lldx%lld", (long long)M, (long long)N, (long long)K);
            for (int own = rs_sgemm_has_blas() ? 0 : 1; own < 2; own++) {
                gemm_ctx g = {M, N, K, A, W, C, pools[t], own != 0, NULL};
                bench_stats st = bench_rate(gemm_run, &g, 1, reps, 2.0 * (double)M * (double)N * (double)K, 1e9);
                bench_add(&rep, "sgemm (C = A W^T, MxNxK)", name, own ? ownpath : blaspath, tcounts[t], st,
                          "GFLOP/s", peak[t] > 0 ? 100.0 * st.med / peak[t] : -1, "fma peak");
            }
            /* the same product with W as bf16 pairs on AMX (kernels/bf16x3.h: 3 bf16 products
             * per term, ~1e-5 relative), as the model's f32 image-encoder matrices run */
            void *bx = rs_bf16x3_native() ? xalloc(rs_bf16x3_bytes(N, K)) : NULL;
            if (bx && rs_bf16x3_pack(W, N, K, bx, NULL) == RSMOE_OK) {
                gemm_ctx g = {M, N, K, A, W, C, pools[t], false, bx};
                bench_stats st = bench_rate(gemm_run, &g, 1, reps, 2.0 * (double)M * (double)N * (double)K, 1e9);
                bench_add(&rep, "sgemm (C = A W^T, MxNxK)", name, "amx bf16x3", tcounts[t], st, "GFLOP/s",
                          peak[t] > 0 ? 100.0 * st.med / peak[t] : -1, "fma peak");
            }
            free(bx);
            free(A); free(W); free(C);
        }
    }

    /* (4) quantised / bf16 weight products */
#ifdef BENCH_HAVE_QUANT
    {
        /* packed: the q8_0 weights repacked 16 rows at a time (kernels/q8x16.h), timed only
         * where the CPU runs that kernel natively; M = 3 is the three experts' batch */
        struct { int64_t M, N, K; rs_dtype wt; bool flops, packed; } qs[] = {
            {1, 2048, 8192, RS_Q8_0, false, false}, {1, 8192, 2048, RS_Q8_0, false, false},
            {1, 2048, 8192, RS_Q8_0, false, true}, {1, 8192, 2048, RS_Q8_0, false, true},
            {3, 2048, 8192, RS_Q8_0, false, false}, {3, 2048, 8192, RS_Q8_0, false, true},
            {1, 2048, 8192, RS_BF16, false, false}, {1, 8192, 2048, RS_BF16, false, false},
            {32, 2048, 8192, RS_Q8_0, true, false}, {32, 2048, 8192, RS_Q8_0, true, true},
            {32, 2048, 8192, RS_BF16, true, false},
        };
        for (size_t s = 0; s < sizeof qs / sizeof qs[0]; s++) {
            if (qs[s].packed && !rs_q8x16_native()) continue;
            quant_ctx q;
            memset(&q, 0, sizeof q);
            q.wt = qs[s].wt;
            q.packed = qs[s].packed;
            q.M = qs[s].M; q.N = qs[s].N; q.K = qs[s].K;
            size_t rowb = rs_row_bytes(q.wt, q.K), wbytes = rowb * (size_t)q.N;
            /* enough copies that the weights of one repetition exceed the last-level cache
             * (read cold from memory, as in decoding a model far larger than the cache) */
            q.ncopies = (int)(bench_uncached_bytes((size_t)256 << 20) / wbytes) + 1;
            if (q.ncopies > BENCH_MAX_COPIES) q.ncopies = BENCH_MAX_COPIES;
            if (qs[s].flops) q.ncopies = 2;
            uint8_t *Ws[BENCH_MAX_COPIES];
            q.W = Ws;
            float *row = xalloc((size_t)q.K * sizeof(float));
            q.x = xalloc((size_t)(q.M * q.K) * sizeof(float));
            q.y = xalloc((size_t)(q.M * q.N) * sizeof(float));
            int ok = row && q.x && q.y;
            int made = 0;
            rs_rng r;
            rs_rng_seed(&r, 100 + s);
            for (; ok && made < q.ncopies; made++) {
                Ws[made] = xalloc(wbytes);
                if (!Ws[made]) { ok = 0; break; }
                if (made == 0) {
                    for (int64_t n = 0; n < q.N; n++) {
                        rs_rng_fill_normal(&r, row, (size_t)q.K, 0.f, 0.02f);
                        rs_convert_row(q.wt, row, Ws[0] + (size_t)n * rowb, q.K);
                    }
                    if (q.packed) {
                        uint8_t *packed = xalloc(rs_q8x16_bytes(q.N, q.K));
                        if (!packed || rs_q8x16_pack(Ws[0], q.N, q.K, packed, NULL)) { free(packed); ok = 0; break; }
                        free(Ws[0]);
                        Ws[0] = packed; /* the same size as the q8_0 rows */
                    }
                } else {
                    memcpy(Ws[made], Ws[0], wbytes);
                }
            }
            if (ok) {
                rs_rng_fill_normal(&r, (float *)q.x, (size_t)(q.M * q.K), 0.f, 1.f);
                char name[64];
                snprintf(name, sizeof name, "%lldx%lldx%lld %s%s", (long long)q.M, (long long)q.N,
                         (long long)q.K, rs_dtype_name(q.wt), q.packed ? "x16 (packed)" : "");
                /* the packed product runs AMX tiles for 16+ rows where the CPU and OS allow */
                const char *path = q.packed && q.M >= 16 && rs_cpu_amx_ready() ? "amx-int8"
                                                                                  : rs_quant_isa_name(rs_quant_isa_best());
                for (int t = 0; t < ntc; t++) {
                    q.pool = pools[t];
                    bench_use_cpu_time(cpu_time ? tcounts[t] : 0);
                    if (qs[s].flops) {
                        bench_stats st = bench_rate(quant_run, &q, 1, reps,
                                                    2.0 * (double)q.M * q.N * q.K * q.ncopies, 1e9);
                        bench_add(&rep, "weight products: GFLOP/s", name, path,
                                  tcounts[t], st, "GFLOP/s", peak[t] > 0 ? 100.0 * st.med / peak[t] : -1,
                                  "fp32 fma peak");
                    } else {
                        bench_stats st = bench_rate(quant_run, &q, 1, reps, (double)wbytes * q.ncopies, 1e9);
                        bench_add(&rep, "weight products: GB/s of weights read", name, path, tcounts[t], st, "GB/s",
                                  bw[t] > 0 ? 100.0 * st.med / bw[t] : -1, "read bw");
                    }
                }
            } else {
                bench_note(&rep, "weight products: out of memory; a case was skipped");
            }
            for (int c = 0; c < made; c++) free(Ws[c]);
            free(row); free((void *)q.x); free(q.y);
        }
        bench_note(&rep, "Weight products: the matrix-vector cases cycle over copies of the weights "
                         "totalling four times the last-level cache (at least 256 MiB), so weights are read "
                         "from memory, not cache.");
    }
#else
    bench_note(&rep, "weight products: kernels/quant.h not in this build; skipped");
#endif
    /* (5) elementwise activations: 3 x 8192 values (a 3-expert step of a 8192-wide FFN) */
    {
        act_ctx a = {.n = 3 * 8192};
        float *x = xalloc((size_t)a.n * sizeof(float)), *u = xalloc((size_t)a.n * sizeof(float)),
              *y = xalloc((size_t)a.n * sizeof(float));
        if (x && u && y) {
            rs_rng r;
            rs_rng_seed(&r, 7);
            rs_rng_fill_normal(&r, x, (size_t)a.n, 0.f, 2.f);
            rs_rng_fill_normal(&r, u, (size_t)a.n, 0.f, 1.f);
            a.x = x, a.u = u, a.y = y;
            bench_use_cpu_time(cpu_time ? 1 : 0);
            for (int op = 0; op < (int)(sizeof act_names / sizeof act_names[0]); op++) {
                a.op = op;
                bench_stats st = bench_rate(act_run, &a, 3, reps * 20, (double)a.n, 1e6);
                bench_add(&rep, "activations: M values/s (cache-resident)", act_names[op], "C (vectorised)", 1, st,
                          "M/s", -1, "");
            }
        } else {
            bench_note(&rep, "activations: out of memory; skipped");
        }
        free(x); free(u); free(y);
    }
    if (rs_sgemm_has_blas()) {
        char note[256];
        snprintf(note, sizeof note,
                 "sgemm: '%s' is OpenBLAS with the core it chose for this CPU, '%s' "
                 "rs_sgemm_own; rs_sgemm runs large products on %s here.", blaspath, ownpath,
                 rs_sgemm_blas_preferred() ? "OpenBLAS" : "the own kernel");
        bench_note(&rep, note);
    }
    else
        bench_note(&rep, "sgemm: built without BLAS; rs_sgemm is the own kernel.");

    bench_note(&rep, cpu_time ? "Clock: process CPU time / threads (--cpu-time), an estimate for an unshared machine."
                              : "Clock: wall time.");
    if (json) bench_print_json(&rep, stdout);
    else bench_print_markdown(&rep, stdout);
    bench_report_free(&rep);
    for (int t = 0; t < ntc; t++) rs_pool_free(pools[t]);
    return 0;
}
