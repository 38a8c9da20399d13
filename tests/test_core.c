/* test_core.c - dtype conversions, tensor shapes, arena, thread pool, RNG. */
#include "core/core.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TEST(f16_roundtrip_exact) {
    /* every finite half converts to float and back unchanged */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* nan */
        float f = rs_f16_to_f32((uint16_t)h);
        if (rs_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d halves did not round-trip", bad);
    CHECK(rs_f16_to_f32(0x3c00) == 1.0f, "1.0");
    CHECK(rs_f16_to_f32(0xc000) == -2.0f, "-2.0");
    CHECK(rs_f16_to_f32(0x0001) == 5.9604644775390625e-8f, "min subnormal");
    CHECK(rs_f32_to_f16(65520.f) == 0x7c00, "overflow to inf");
    CHECK(rs_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "tie to even (down)");
    CHECK(rs_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "tie to even (up)");
}

TEST(bf16_rounding) {
    CHECK(rs_f32_to_bf16(1.0f) == 0x3f80, "1.0");
    CHECK(rs_bf16_to_f32(0x3f80) == 1.0f, "back");
    /* 1 + 2^-8 is a tie between 1 and 1+2^-7: to even (1.0) */
    CHECK(rs_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80, "tie down");
    CHECK(rs_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82, "tie up");
    float nan = NAN;
    uint16_t b = rs_f32_to_bf16(nan);
    CHECK(isnan(rs_bf16_to_f32(b)), "nan stays nan");
}

TEST(tensor_shapes) {
    rs_tensor t;
    int64_t ne[2] = {64, 3};
    REQUIRE(rs_tensor_init(&t, "w", RS_Q8_0, 2, ne, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(t.nb[1] == 2 * 34, "q8_0 row bytes %zu", t.nb[1]);
    CHECK(rs_tensor_nbytes(&t) == 3 * 68, "bytes");
    CHECK(rs_tensor_nelements(&t) == 192, "elements");
    CHECK(rs_tensor_is_contiguous(&t), "contiguous");
    int64_t bad[2] = {33, 3};
    CHECK(rs_tensor_init(&t, "w", RS_Q8_0, 2, bad, NULL) == RSMOE_ERR_INVALID_ARG, "33 not /32");
    CHECK(strstr(rsmoe_last_error(), "multiple of 32") != NULL, "message: %s", rsmoe_last_error());
    int64_t neg[1] = {-1};
    CHECK(rs_tensor_init(&t, "w", RS_F32, 1, neg, NULL) != RSMOE_OK, "negative dim");
    CHECK(rs_tensor_init(&t, "w", (rs_dtype)77, 1, ne, NULL) != RSMOE_OK, "bad dtype");
    int64_t huge[4] = {1 << 20, 1 << 20, 1 << 20, 1 << 20};
    CHECK(rs_tensor_init(&t, "w", RS_F32, 4, huge, NULL) != RSMOE_OK, "overflow");
}

TEST(arena) {
    rs_arena a;
    REQUIRE(rs_arena_init(&a, 1000) == RSMOE_OK, "init");
    void *p = rs_arena_alloc(&a, 10);
    void *q = rs_arena_alloc(&a, 10);
    CHECK(p && q && ((uintptr_t)p % 64) == 0 && ((uintptr_t)q % 64) == 0, "aligned");
    size_t m = rs_arena_mark(&a);
    CHECK(rs_arena_alloc(&a, 100000) == NULL, "over-size allocation refused");
    CHECK(rs_arena_mark(&a) == m, "failed allocation leaves arena as it was");
    rs_arena_reset_to(&a, 0);
    CHECK(rs_arena_alloc(&a, 10) == p, "reset reuses");
    rs_arena_free(&a);
}

/* kB of AnonHugePages in the mapping of /proc/self/smaps that holds p (-1: not found) */
static long huge_kb_at(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    long kb = -1;
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        } else if (in && !strncmp(line, "AnonHugePages:", 14)) {
            kb = strtol(line + 14, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* rs_alloc_stream: 64-byte aligned below 2 MiB, 2 MiB aligned from there, all of it writable
 * (ASan checks the bounds); where the kernel gives transparent huge pages on request
 * ("[madvise]" or "[always]"), a touched 8 MiB block holds some (without the advice, in
 * "madvise" mode, it would hold none) */
TEST(alloc_stream) {
    unsigned char *s = rs_alloc_stream(100), *b = rs_alloc_stream(((size_t)8 << 20) + 100);
    REQUIRE(s && b, "allocation failed");
    CHECK((uintptr_t)s % 64 == 0, "small block not 64-byte aligned");
    CHECK((uintptr_t)b % ((size_t)2 << 20) == 0, "large block not 2 MiB aligned");
    memset(s, 1, 100);
    memset(b, 1, ((size_t)8 << 20) + 100);
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char mode[128] = "";
    if (f) {
        if (!fgets(mode, sizeof mode, f)) mode[0] = 0;
        mode[strcspn(mode, "\n")] = 0;
        fclose(f);
    }
    const bool thp = strstr(mode, "[madvise]") || strstr(mode, "[always]");
    const long kb = thp ? huge_kb_at(b) : -1;
    free(s);
    free(b);
    if (!thp) SKIP("no transparent huge pages here (%s)", mode[0] ? "mode never" : "no THP in sysfs");
    CHECK(kb > 0, "no huge pages in the advised block (AnonHugePages %ld kB; THP mode %s)", kb, mode);
}

typedef struct { atomic_int hits[8]; atomic_int sum; } pool_ctx;
static void pool_fn(void *c, int ith, int nth) {
    pool_ctx *pc = c;
    atomic_fetch_add(&pc->hits[ith], 1);
    int64_t b, e;
    rs_split_range(1000, ith, nth, 7, &b, &e);
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&pc->sum, (int)i);
}

/* 200 runs of pool_fn on a pool of n: every share runs once and the range is summed once */
static void check_runs_once(rs_pool *p, int n, const char *what) {
    for (int rep = 0; rep < 200; rep++) {
        pool_ctx c;
        memset(&c, 0, sizeof c);
        rs_pool_run(p, pool_fn, &c);
        for (int i = 0; i < n; i++) CHECK(c.hits[i] == 1, "%s n=%d share %d ran %d times", what, n, i, (int)c.hits[i]);
        CHECK(c.sum == 999 * 1000 / 2, "%s n=%d sum %d", what, n, (int)c.sum);
    }
}

TEST(pool_runs_every_share_once) {
    for (int n = 1; n <= 4; n++) {
        rs_pool *p = rs_pool_new(n);
        REQUIRE(p, "pool");
        check_runs_once(p, n, "fresh");
        rs_pool_free(p);
    }
}

typedef struct { atomic_int hits[8]; pthread_t who[8]; } pool_who_ctx;
static void pool_who_fn(void *c, int ith, int nth) {
    (void)nth;
    pool_who_ctx *pc = c;
    atomic_fetch_add(&pc->hits[ith], 1);
    pc->who[ith] = pthread_self();
}

/* a worker that has not woken when the caller finishes its share is not waited for: the
 * caller claims and runs that share, and the late worker skips it */
TEST(pool_caller_runs_unclaimed_shares) {
    for (int n = 2; n <= 4; n++) {
        rs_pool *p = rs_pool_new(n);
        REQUIRE(p, "pool");
        for (int round = 0; round < 3; round++) {
            rs_pool_hold_workers(p, true);
            for (int rep = 0; rep < 50; rep++) {
                pool_who_ctx c;
                memset(&c, 0, sizeof c);
                rs_pool_run(p, pool_who_fn, &c);
                for (int i = 0; i < n; i++) {
                    CHECK(c.hits[i] == 1, "held n=%d share %d ran %d times", n, i, (int)c.hits[i]);
                    CHECK(pthread_equal(c.who[i], pthread_self()), "held n=%d: share %d ran on a worker", n, i);
                }
            }
            rs_pool_hold_workers(p, false);
            check_runs_once(p, n, "released");
        }
        rs_pool_free(p);
    }
}

/* small jobs run on the calling thread: rs_pool_for_work gives NULL below the pool's minimum */
TEST(pool_for_work) {
    rs_pool *p = rs_pool_new(2);
    REQUIRE(p, "pool");
    CHECK(rs_pool_for_work(p, RS_POOL_MIN_WORK - 1.0) == NULL, "below the default minimum: threaded");
    CHECK(rs_pool_for_work(p, RS_POOL_MIN_WORK) == p, "at the default minimum: not threaded");
    CHECK(rs_pool_for_work(NULL, 1e12) == NULL, "no pool: a pool appeared");
    rs_pool_set_min_work(p, 0);
    CHECK(rs_pool_for_work(p, 0) == p, "minimum 0: a job ran inline");
    rs_pool_set_min_work(p, 1e9);
    CHECK(rs_pool_for_work(p, 1e9 - 1) == NULL && rs_pool_for_work(p, 1e9) == p, "minimum 1e9 not honoured");
    rs_pool_free(p);
}

TEST(split_range_covers) {
    for (int nth = 1; nth <= 5; nth++)
        for (int64_t n = 0; n < 100; n++) {
            int64_t prev = 0;
            for (int i = 0; i < nth; i++) {
                int64_t b, e;
                rs_split_range(n, i, nth, 4, &b, &e);
                CHECK(b == prev && e >= b, "contiguous shares");
                CHECK(b % 4 == 0 || b == n, "aligned start");
                prev = e;
            }
            CHECK(prev == n, "covers n=%lld", (long long)n);
        }
}

TEST(rng_reproducible_and_normal) {
    rs_rng a, b;
    rs_rng_seed(&a, 123);
    rs_rng_seed(&b, 123);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= rs_rng_u64(&a) == rs_rng_u64(&b);
    CHECK(same, "same seed, same stream");
    rs_rng_seed(&b, 124);
    CHECK(rs_rng_u64(&a) != rs_rng_u64(&b), "different seeds differ");
    double s = 0, s2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) { double x = rs_rng_normal(&a); s += x; s2 += x * x; }
    CHECK(fabs(s / n) < 0.01, "mean %g", s / n);
    CHECK(fabs(s2 / n - 1) < 0.02, "variance %g", s2 / n);
}

TEST(errors) {
    rs_clear_error();
    CHECK(rsmoe_last_error()[0] == 0, "cleared");
    rsmoe_status st = rs_error(RSMOE_ERR_IO, "file %s missing", "x.gguf");
    CHECK(st == RSMOE_ERR_IO, "returns status");
    CHECK(!strcmp(rsmoe_last_error(), "file x.gguf missing"), "message");
    CHECK(!strcmp(rsmoe_status_str(RSMOE_ERR_FORMAT), "bad file format"), "status name");
}

TEST(read_file) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/rsmoe_test_core_%d.txt", (int)getpid());
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "temp file");
    fputs("abc\ndef", f);
    fclose(f);
    rsmoe_status st;
    size_t len = 0;
    char *b = rs_read_file(path, 100, &len, &st);
    CHECK(b && st == RSMOE_OK && len == 7 && !strcmp(b, "abc\ndef"), "content and length (%zu)", len);
    free(b);
    b = rs_read_file(path, 6, &len, &st);
    CHECK(!b && st == RSMOE_ERR_FORMAT && strstr(rsmoe_last_error(), "at most 6"), "over the limit: %s", rsmoe_last_error());
    unlink(path);
    b = rs_read_file(path, 100, NULL, &st);
    CHECK(!b && st == RSMOE_ERR_IO && strstr(rsmoe_last_error(), path), "missing file named: %s", rsmoe_last_error());
}

/* per-thread scratch: aligned, kept while big enough, grown on demand, one per slot and thread */
static void *tls_other(void *arg) { (void)arg; return rs_tls_scratch(RS_TLS_GEMM, 100); }
TEST(tls_scratch) {
    char *a = rs_tls_scratch(RS_TLS_GEMM, 1000), *b = rs_tls_scratch(RS_TLS_BF16X3, 1000);
    REQUIRE(a && b, "allocation");
    CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0, "not 64-byte aligned");
    CHECK(a != b, "two slots share a buffer");
    memset(a, 1, 1000);
    CHECK(rs_tls_scratch(RS_TLS_GEMM, 500) == a, "a smaller request moved the buffer");
    char *c = rs_tls_scratch(RS_TLS_GEMM, 1 << 20);
    REQUIRE(c, "growth");
    memset(c, 2, 1 << 20); /* ASan checks the size */
    pthread_t th;
    void *other = NULL;
    REQUIRE(pthread_create(&th, NULL, tls_other, NULL) == 0, "thread");
    pthread_join(th, &other);
    CHECK(other && other != c, "another thread got this thread's buffer");
    CHECK(rs_tls_scratch(RS_TLS_COUNT, 10) == NULL, "a slot out of range gave a buffer");
}

/* the vendor flag some kernels choose by agrees with the kernel's own report */
TEST(cpu_vendor) {
#if defined(__x86_64__)
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) {
        SKIP("no /proc/cpuinfo to compare with");
        return;
    }
    char line[512], vendor[64] = "";
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "vendor_id", 9)) {
            const char *v = strchr(line, ':');
            if (v) sscanf(v + 1, "%63s", vendor);
            break;
        }
    fclose(f);
    REQUIRE(vendor[0], "no vendor_id line in /proc/cpuinfo");
    const bool amd = !strcmp(vendor, "AuthenticAMD") || !strcmp(vendor, "HygonGenuine");
    CHECK(rs_cpu()->amd == amd, "rs_cpu()->amd = %d, /proc/cpuinfo says %s", rs_cpu()->amd, vendor);
#else
    CHECK(!rs_cpu()->amd, "amd set off x86");
#endif
}

int main(void) {
    RUN(tls_scratch);
    RUN(f16_roundtrip_exact);
    RUN(bf16_rounding);
    RUN(tensor_shapes);
    RUN(arena);
    RUN(alloc_stream);
    RUN(pool_runs_every_share_once);
    RUN(pool_caller_runs_unclaimed_shares);
    RUN(pool_for_work);
    RUN(split_range_covers);
    RUN(rng_reproducible_and_normal);
    RUN(errors);
    RUN(read_file);
    RUN(cpu_vendor);
    return test_summary();
}
