/* bench_bw.c - the machine's read bandwidth, measured as a streaming sum over a large array
 * split across the pool's threads (shared by the benchmark drivers). */
#include "bench.h"

#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif


#if defined(__x86_64__)
__attribute__((target("avx2")))
static float sum_avx2(const float *x, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 24));
    }
    float v[8], r = 0;
    _mm256_storeu_ps(v, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (int j = 0; j < 8; j++) r += v[j];
    for (; i < n; i++) r += x[i];
    return r;
}
#endif

static void bw_worker(void *ctx, int ith, int nth) {
    bench_bw_job *b = ctx;
    int64_t s, e;
    rs_split_range(b->n, ith, nth, 1024, &s, &e);
    float r = 0;
#if defined(__x86_64__)
    if (rs_cpu()->avx2) r = sum_avx2(b->x + s, e - s);
    else
#endif
        for (int64_t i = s; i < e; i++) r += b->x[i];
    b->sink[ith & 255] = r;
}

void bench_bw_run(void *job) { rs_pool_run(((bench_bw_job *)job)->pool, bw_worker, job); }

double bench_read_bandwidth_gbs(rs_pool *pool, size_t bytes, int reps) {
    int64_t n = (int64_t)(bytes / sizeof(float));
    float *x = malloc((size_t)n * sizeof(float));
    if (!x) return 0;
    for (int64_t i = 0; i < n; i++) x[i] = (float)(i & 7);
    bench_bw_job job = {.x = x, .n = n, .pool = pool};
    double best = 0;
    bench_bw_run(&job); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = rs_time_s();
        bench_bw_run(&job);
        double gbs = (double)n * sizeof(float) / (rs_time_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(x);
    return best;
}
