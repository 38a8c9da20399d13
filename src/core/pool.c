/* pool.c - a fixed pool of worker threads.
 * A run publishes (fn, ctx) and bumps a generation counter; workers spin briefly on the
 * counter (runs come in quick succession during decoding) and then sleep on a condition
 * variable. The caller's thread does share 0; then every share that no worker has claimed
 * yet it claims and runs itself, and it waits only for the shares workers are running.
 * Each share is claimed once per run with a compare-and-swap of its generation, so a worker
 * that is slow to wake (asleep, or its vCPU descheduled by the host) costs the run at most
 * the caller doing that share too, never the caller waiting idle for it; a worker that
 * wakes after its share was taken skips it. */
#include "core/core.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct rs_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rs_pool_fn fn;
    void *ctx;
    atomic_uint_fast64_t gen;
    atomic_uint_fast64_t *claim; /* claim[i]: the last run whose share i someone took */
    atomic_uint_fast64_t *done;  /* done[i]: the last run whose share i a worker finished */
    atomic_int stop;
    atomic_int hold; /* rs_pool_hold_workers: workers wait before claiming */
    double min_work; /* rs_pool_for_work's threshold */
};

/* take share i of run g if nobody has; true when this thread must run it */
static bool claim_share(rs_pool *p, int i, uint64_t g) {
    uint64_t c = atomic_load_explicit(&p->claim[i], memory_order_acquire);
    return c < g && atomic_compare_exchange_strong_explicit(&p->claim[i], &c, g, memory_order_acq_rel,
                                                            memory_order_acquire);
}

typedef struct { rs_pool *p; int ith; } worker_arg;

/* Spin before sleeping: long enough to catch back-to-back runs (decoding), short enough that
 * an idle worker soon gives its vCPU back. On a 2-vCPU VM whose vCPUs the host sometimes
 * time-slices on one core, a spinning worker takes the caller's CPU time: 2,000 spins gave
 * caption maxima of 140-154 ms, 500 gave 115-133 ms with the same ~88 ms medians, 100 raised
 * the medians (bench/caption_latency.sh, interleaved batches, 2026-12-05). On a Xeon VM with
 * a core per vCPU, 2,000 took 2 ms (4 %) off the default model's 2-thread caption (decode
 * 27.3-27.6 -> 25.3-26.7 ms, three interleaved batches, maxima no worse): the better count
 * depends on how the host schedules the vCPUs, so 500 stays; -DSPIN_ITERS=N to try another. */
#ifndef SPIN_ITERS
#define SPIN_ITERS 500
#endif

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    rs_pool *p = wa.p;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        while (atomic_load(&p->hold) && !atomic_load(&p->stop)) sched_yield();
        /* the run cannot end (and fn/ctx cannot change) while a claimed share is unfinished */
        if (claim_share(p, wa.ith, g)) {
            p->fn(p->ctx, wa.ith, p->n);
            atomic_store_explicit(&p->done[wa.ith], g, memory_order_release);
        }
    }
}

rs_pool *rs_pool_new(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 256) nthreads = 256;
    rs_pool *p = calloc(1, sizeof *p);
    if (!p) { rs_error(RSMOE_ERR_NOMEM, "thread pool: out of memory"); return NULL; }
    p->n = nthreads;
    p->min_work = RS_POOL_MIN_WORK;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->hold, 0);
    if (nthreads > 1) {
        p->threads = calloc((size_t)nthreads, sizeof(pthread_t));
        p->claim = calloc((size_t)nthreads, sizeof *p->claim);
        p->done = calloc((size_t)nthreads, sizeof *p->done);
        if (!p->threads || !p->claim || !p->done) {
            free(p->threads);
            free(p->claim);
            free(p->done);
            free(p);
            rs_error(RSMOE_ERR_NOMEM, "thread pool: out of memory");
            return NULL;
        }
        for (int i = 0; i < nthreads; i++) {
            atomic_init(&p->claim[i], 0);
            atomic_init(&p->done[i], 0);
        }
        for (int i = 1; i < nthreads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) { wa->p = p; wa->ith = i; }
            if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
                free(wa);
                p->n = i; /* shut down the ones started */
                rs_pool_free(p);
                rs_error(RSMOE_ERR_INTERNAL, "thread pool: cannot start thread %d", i);
                return NULL;
            }
        }
    }
    return p;
}

void rs_pool_free(rs_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free((void *)p->claim);
    free((void *)p->done);
    free(p);
}

int rs_pool_size(const rs_pool *p) { return p ? p->n : 1; }

rs_pool *rs_pool_for_work(rs_pool *p, double work) { return p && work >= p->min_work ? p : NULL; }

void rs_pool_set_min_work(rs_pool *p, double work) {
    if (p) p->min_work = work;
}

void rs_pool_hold_workers(rs_pool *p, bool hold) {
    if (p) atomic_store(&p->hold, hold ? 1 : 0);
}

void rs_pool_run(rs_pool *p, rs_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    pthread_mutex_lock(&p->mu);
    const uint64_t g = atomic_fetch_add_explicit(&p->gen, 1, memory_order_release) + 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    bool mine[256] = {false};
    for (int i = 1; i < p->n; i++)
        if (claim_share(p, i, g)) {
            mine[i] = true;
            fn(ctx, i, p->n);
        }
    for (int i = 1; i < p->n; i++) {
        if (mine[i]) continue;
        int spins = 0;
        while (atomic_load_explicit(&p->done[i], memory_order_acquire) != g) {
            if (++spins < SPIN_ITERS) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
            } else {
                sched_yield();
            }
        }
    }
}

void rs_split_range(int64_t n, int ith, int nth, int64_t align, int64_t *begin, int64_t *end) {
    if (align < 1) align = 1;
    int64_t chunks = (n + align - 1) / align;
    int64_t per = chunks / nth, rem = chunks % nth;
    int64_t c0 = ith * per + (ith < rem ? ith : rem);
    int64_t c1 = c0 + per + (ith < rem ? 1 : 0);
    int64_t b = c0 * align, e = c1 * align;
    if (b > n) b = n;
    if (e > n) e = n;
    *begin = b;
    *end = e;
}

void rs_chunks_init(rs_chunks *c, int64_t n, int64_t align, int nth) {
    if (align < 1) align = 1;
    if (nth < 1) nth = 1;
    int64_t ch = (n + 4 * (int64_t)nth - 1) / (4 * (int64_t)nth);
    ch = (ch + align - 1) / align * align;
    c->n = n;
    c->chunk = ch < align ? align : ch;
    atomic_init(&c->next, 0);
}

bool rs_chunks_next(rs_chunks *c, int64_t *begin, int64_t *end) {
    if (atomic_load_explicit(&c->next, memory_order_relaxed) >= c->n) return false;
    const int64_t b = atomic_fetch_add_explicit(&c->next, c->chunk, memory_order_relaxed);
    if (b >= c->n) return false;
    *begin = b;
    *end = b + c->chunk < c->n ? b + c->chunk : c->n;
    return true;
}

int rs_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

double rs_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t rs_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024;
}
