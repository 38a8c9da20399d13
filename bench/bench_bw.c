/* bench_bw.c - the machine's read bandwidth, measured as a streaming sum over a large array
 * split across the pool's threads (shared by the benchmark drivers). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#if defined(__unix__)
#include <sys/wait.h>
#include <unistd.h>
#endif
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

/* BENCH_BW_STREAMS equal parts of x[0..n) summed in lockstep, each prefetched 2 KiB ahead */
__attribute__((target("avx2")))
static float sum_streams_avx2(const float *x, int64_t n) {
    enum { S = BENCH_BW_STREAMS };
    __m256 acc[S];
    for (int k = 0; k < S; k++) acc[k] = _mm256_setzero_ps();
    const int64_t part = n / S / 16 * 16;
    for (int64_t i = 0; i < part; i += 16)
        for (int k = 0; k < S; k++) {
            const float *p = x + k * part + i;
            _mm_prefetch((const char *)p + 2048, _MM_HINT_T0);
            acc[k] = _mm256_add_ps(acc[k], _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)));
        }
    __m256 t = acc[0];
    for (int k = 1; k < S; k++) t = _mm256_add_ps(t, acc[k]);
    float v[8], r = 0;
    _mm256_storeu_ps(v, t);
    for (int j = 0; j < 8; j++) r += v[j];
    for (int64_t i = part * S; i < n; i++) r += x[i];
    return r;
}
#endif

static void bw_worker(void *ctx, int ith, int nth) {
    bench_bw_job *b = ctx;
    int64_t s, e;
    rs_split_range(b->n, ith, nth, 1024, &s, &e);
    float r = 0;
#if defined(__x86_64__)
    if (rs_cpu()->avx2) r = b->streams > 1 ? sum_streams_avx2(b->x + s, e - s) : sum_avx2(b->x + s, e - s);
    else
#endif
        for (int64_t i = s; i < e; i++) r += b->x[i];
    b->sink[ith & 255] = r;
}

void bench_bw_run(void *job) { rs_pool_run(((bench_bw_job *)job)->pool, bw_worker, job); }

size_t bench_llc_bytes(void) {
    size_t best = 0;
    for (int i = 0; i < 8; i++) { /* the largest cache cpu0 lists */
        char path[96], buf[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        size_t v = 0;
        if (fgets(buf, sizeof buf, f)) {
            char *end = NULL;
            unsigned long long n = strtoull(buf, &end, 10);
            v = (size_t)n * (end && *end == 'M' ? (1u << 20) : end && *end == 'K' ? 1024u : 1u);
        }
        fclose(f);
        if (v > best) best = v;
    }
    return best;
}

size_t bench_uncached_bytes(size_t floor) {
    size_t b = 4 * bench_llc_bytes();
    return b > floor ? b : floor;
}

static double read_bandwidth_here(rs_pool *pool, size_t bytes, int reps) {
    int64_t n = (int64_t)(bytes / sizeof(float));
    float *x = rs_alloc_stream((size_t)n * sizeof(float)); /* the pages the weights get */
    if (!x) return 0;
    for (int64_t i = 0; i < n; i++) x[i] = (float)(i & 7);
    bench_bw_job job = {.x = x, .n = n, .pool = pool};
    double best = 0;
    bench_bw_run(&job); /* warm-up */
    for (int r = 0; r < 2 * reps; r++) {
        job.streams = r % 2 ? BENCH_BW_STREAMS : 1;
        double t0 = rs_time_s();
        bench_bw_run(&job);
        double gbs = (double)n * sizeof(float) / (rs_time_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(x);
    return best;
}

/* In a child process with a pool of its own (the parent's workers do not exist there): the
 * array, four times the last-level cache, would otherwise count in the caller's peak RSS,
 * which `rsmoe bench infer` reports as the model's. In-process where fork fails. */
double bench_read_bandwidth_gbs(rs_pool *pool, size_t bytes, int reps) {
#if defined(__unix__)
    int fd[2];
    if (pipe(fd) == 0) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            rs_pool *p = rs_pool_size(pool) > 1 ? rs_pool_new(rs_pool_size(pool)) : NULL;
            double gbs = rs_pool_size(pool) > 1 && !p ? 0 : read_bandwidth_here(p, bytes, reps);
            ssize_t w = write(fd[1], &gbs, sizeof gbs);
            _exit(w == (ssize_t)sizeof gbs ? 0 : 1);
        }
        close(fd[1]);
        if (pid > 0) {
            double gbs = 0;
            ssize_t r = read(fd[0], &gbs, sizeof gbs);
            int status = 0;
            waitpid(pid, &status, 0);
            close(fd[0]);
            if (r == (ssize_t)sizeof gbs && WIFEXITED(status) && WEXITSTATUS(status) == 0) return gbs;
            return read_bandwidth_here(pool, bytes, reps);
        }
        close(fd[0]);
    }
#endif
    return read_bandwidth_here(pool, bytes, reps);
}
