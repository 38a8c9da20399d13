/* bench.h - helpers shared by the benchmark drivers (`rsmoe bench ...`), header-only:
 * repeated timing with warm-up, robust statistics, and a result list printed as a markdown
 * table or as JSON. A driver fills a bench_report with bench_add() and prints it once. */
#ifndef RSMOE_BENCH_H
#define RSMOE_BENCH_H

#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- statistics */
typedef struct {
    double med, min, max, mean, sd; /* of the per-repetition values */
    int n;
} bench_stats;

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* statistics of x[0..n) (x is sorted in place) */
static inline bench_stats bench_stats_of(double *x, int n) {
    bench_stats s = {0, 0, 0, 0, 0, n};
    if (n <= 0) return s;
    qsort(x, (size_t)n, sizeof *x, bench_cmp_double);
    s.min = x[0];
    s.max = x[n - 1];
    s.med = n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
    double sum = 0, sq = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    s.mean = sum / n;
    for (int i = 0; i < n; i++) sq += (x[i] - s.mean) * (x[i] - s.mean);
    s.sd = n > 1 ? sqrt(sq / (n - 1)) : 0;
    return s;
}

/* ---------------------------------------------------------------- timing */
#define BENCH_MAX_REPS 1000
typedef void (*bench_fn)(void *ctx);

/* The clock: wall time (default), or this process's CPU time divided by the number of
 * threads working (bench_use_cpu_time): on a machine shared with other jobs this estimates
 * the wall time the work would take with the cores to itself (time-slicing is not counted;
 * cache and memory contention still are, and pool workers' spin-waits count as work). */
static int bench_cpu_threads; /* 0 = wall clock */
static inline void bench_use_cpu_time(int threads) { bench_cpu_threads = threads; }
static inline double bench_now(void) {
    if (!bench_cpu_threads) return rs_time_s();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ((double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec) / bench_cpu_threads;
}

/* Calls fn `warmup` times untimed, then `reps` times timed; seconds per call in t[0..reps). */
static inline void bench_time(bench_fn fn, void *ctx, int warmup, int reps, double *t) {
    for (int i = 0; i < warmup; i++) fn(ctx);
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        fn(ctx);
        t[i] = bench_now() - t0;
    }
}

/* Times fn and converts each repetition to a rate `work / seconds / scale` (e.g. flops and
 * 1e9 for GFLOP/s); the statistics are of the rates (higher is better). */
static inline bench_stats bench_rate(bench_fn fn, void *ctx, int warmup, int reps, double work,
                                     double scale) {
    double t[BENCH_MAX_REPS];
    if (reps > BENCH_MAX_REPS) reps = BENCH_MAX_REPS;
    if (reps < 1) reps = 1;
    bench_time(fn, ctx, warmup, reps, t);
    for (int i = 0; i < reps; i++) t[i] = work / (t[i] > 1e-12 ? t[i] : 1e-12) / scale;
    return bench_stats_of(t, reps);
}

/* ---------------------------------------------------------------- results */
/* bounded string copy (truncates; always terminated) */
static inline void bench_copy(char *dst, size_t size, const char *src) {
    size_t i = 0;
    if (!size) return;
    for (; src && src[i] && i + 1 < size; i++) dst[i] = src[i];
    dst[i] = 0;
}

typedef struct {
    char section[48]; /* e.g. "fma peak", "sgemm" */
    char name[64];    /* e.g. "257x1408x1408" */
    char path[32];    /* e.g. "blas", "own/avx2", "" */
    int threads;
    bench_stats st;   /* of the rate */
    char unit[16];    /* "GFLOP/s", "GB/s", "ms", ... */
    double pct;       /* median as % of a measured ceiling, < 0 when none */
    char ref[24];     /* what pct is relative to, e.g. "fma peak" */
} bench_result;

typedef struct {
    bench_result *r;
    int n, cap;
    char title[128];
    char header[512]; /* e.g. rsmoe_system_info() */
    char notes[4096];
} bench_report;

static inline void bench_report_init(bench_report *rep, const char *title, const char *header) {
    memset(rep, 0, sizeof *rep);
    bench_copy(rep->title, sizeof rep->title, title);
    bench_copy(rep->header, sizeof rep->header, header);
}

static inline void bench_report_free(bench_report *rep) {
    free(rep->r);
    rep->r = NULL;
    rep->n = rep->cap = 0;
}

/* appends a result; pct < 0 for none. Returns the stored record (NULL when out of memory). */
static inline bench_result *bench_add(bench_report *rep, const char *section, const char *name,
                                      const char *path, int threads, bench_stats st,
                                      const char *unit, double pct, const char *ref) {
    if (rep->n == rep->cap) {
        int cap = rep->cap ? rep->cap * 2 : 32;
        bench_result *r = realloc(rep->r, (size_t)cap * sizeof *r);
        if (!r) return NULL;
        rep->r = r;
        rep->cap = cap;
    }
    bench_result *b = &rep->r[rep->n++];
    memset(b, 0, sizeof *b);
    bench_copy(b->section, sizeof b->section, section);
    bench_copy(b->name, sizeof b->name, name);
    bench_copy(b->path, sizeof b->path, path);
    bench_copy(b->unit, sizeof b->unit, unit);
    bench_copy(b->ref, sizeof b->ref, ref);
    b->threads = threads;
    b->st = st;
    b->pct = pct;
    return b;
}

/* the median of the first result matching section (and threads when > 0), or 0 */
static inline double bench_find(const bench_report *rep, const char *section, int threads) {
    for (int i = 0; i < rep->n; i++)
        if (!strcmp(rep->r[i].section, section) && (threads <= 0 || rep->r[i].threads == threads))
            return rep->r[i].st.med;
    return 0;
}

static inline void bench_note(bench_report *rep, const char *line) {
    size_t l = strlen(rep->notes);
    snprintf(rep->notes + l, sizeof rep->notes - l, "%s%s", l ? "\n" : "", line);
}

/* markdown: one table per section, in the order sections first appear */
static inline void bench_print_markdown(const bench_report *rep, FILE *f) {
    if (rep->title[0]) fprintf(f, "# %s\n\n", rep->title);
    if (rep->header[0]) fprintf(f, "`%s`\n\n", rep->header);
    for (int i = 0; i < rep->n; i++) {
        bool first = true;
        for (int j = 0; j < i; j++)
            if (!strcmp(rep->r[j].section, rep->r[i].section)) { first = false; break; }
        if (!first) continue;
        fprintf(f, "## %s\n\n| case | path | threads | median | min | max | sd | unit | %% of ceiling |\n"
                   "|---|---|---:|---:|---:|---:|---:|---|---:|\n", rep->r[i].section);
        for (int j = i; j < rep->n; j++) {
            const bench_result *b = &rep->r[j];
            if (strcmp(b->section, rep->r[i].section)) continue;
            fprintf(f, "| %s | %s | %d | %.2f | %.2f | %.2f | %.2f | %s | ", b->name,
                    b->path[0] ? b->path : "-", b->threads, b->st.med, b->st.min, b->st.max,
                    b->st.sd, b->unit);
            if (b->pct >= 0) fprintf(f, "%.1f%% (%s) |\n", b->pct, b->ref);
            else fprintf(f, "- |\n");
        }
        fputc('\n', f);
    }
    if (rep->notes[0]) fprintf(f, "%s\n", rep->notes);
}

static inline void bench_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static inline void bench_print_json(const bench_report *rep, FILE *f) {
    fputs("{\"title\": ", f);
    bench_json_str(f, rep->title);
    fputs(", \"system\": ", f);
    bench_json_str(f, rep->header);
    fputs(", \"notes\": ", f);
    bench_json_str(f, rep->notes);
    fputs(", \"results\": [", f);
    for (int i = 0; i < rep->n; i++) {
        const bench_result *b = &rep->r[i];
        fputs(i ? ",\n  {" : "\n  {", f);
        fputs("\"section\": ", f); bench_json_str(f, b->section);
        fputs(", \"case\": ", f); bench_json_str(f, b->name);
        fputs(", \"path\": ", f); bench_json_str(f, b->path);
        fprintf(f, ", \"threads\": %d, \"median\": %.6g, \"min\": %.6g, \"max\": %.6g, "
                   "\"mean\": %.6g, \"sd\": %.6g, \"reps\": %d, \"unit\": ",
                b->threads, b->st.med, b->st.min, b->st.max, b->st.mean, b->st.sd, b->st.n);
        bench_json_str(f, b->unit);
        if (b->pct >= 0) {
            fprintf(f, ", \"pct\": %.3f, \"pct_of\": ", b->pct);
            bench_json_str(f, b->ref);
        }
        fputc('}', f);
    }
    fputs("\n]}\n", f);
}

/* ---------------------------------------------------------------- option parsing */
/* parses a positive int option value; returns false (after printing) when malformed */
static inline bool bench_parse_int(const char *prog, const char *opt, const char *v, int lo,
                                   int hi, int *out) {
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "%s: %s needs an integer in [%d, %d]\n", prog, opt, lo, hi);
        return false;
    }
    *out = (int)x;
    return true;
}

/* ---------------------------------------------------------------- read bandwidth (bench_bw.c) */
/* One streaming pass: every pool thread sums its share of x[0..n) (a bench_fn), as one
 * stream (streams 0 or 1) or as BENCH_BW_STREAMS parts read in lockstep with software
 * prefetch (streams > 1): the way the packed q8_0 kernel reads, and up to a fifth faster than
 * one stream on some machines (an Intel Xeon VM: 16.5 against 13-14.7 GB/s on one thread). */
#define BENCH_BW_STREAMS 4
typedef struct {
    const float *x;
    int64_t n;
    rs_pool *pool;
    int streams;
    volatile float sink[256];
} bench_bw_job;
void bench_bw_run(void *job);
/* the last-level cache's size in bytes (0 when the system does not say) */
size_t bench_llc_bytes(void);
/* Bytes an array must have to be read from memory rather than the last-level cache: four
 * times that cache and at least `floor` (some server VMs have 480 MiB of L3, so a 256 MiB
 * array was partly read from cache). */
size_t bench_uncached_bytes(size_t floor);
/* best GB/s of `reps` passes of either reading pattern over a fresh array of `bytes` (0 when
 * it cannot be allocated) */
double bench_read_bandwidth_gbs(rs_pool *pool, size_t bytes, int reps);

/* the benchmark drivers (bench_*.c), dispatched by tools/cmd_bench.c */
int bench_kernels_main(int argc, char **argv);

#endif
