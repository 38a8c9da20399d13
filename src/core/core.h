/* core.h - internal foundation: errors, dtypes, tensors, arena, thread pool, RNG, timers.
 * Nothing here knows about RS-MoE. */
#ifndef RSMOE_CORE_H
#define RSMOE_CORE_H

#include "rsmoe.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */
/* Records a formatted message as this thread's last error and returns st, so that
 * failing paths read:  return rs_error(RSMOE_ERR_FORMAT, "%s: bad magic", path); */
rsmoe_status rs_error(rsmoe_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rs_clear_error(void);

/* ---------------------------------------------------------------- dtypes */
/* Values equal ggml's type ids, so GGUF files carry them unchanged. */
typedef enum {
    RS_F32 = 0,
    RS_F16 = 1,
    RS_Q8_0 = 8,
    RS_BF16 = 30,
} rs_dtype;

#define RS_QK8_0 32 /* values per q8_0 block */
typedef struct {
    uint16_t d;           /* scale, IEEE half */
    int8_t qs[RS_QK8_0];  /* values = d * qs[i] */
} rs_block_q8_0;          /* 34 bytes, as in ggml */

const char *rs_dtype_name(rs_dtype t);       /* "f32", ..., NULL if unknown */
bool rs_dtype_valid(int t);
size_t rs_dtype_block(rs_dtype t);           /* values per block: 1, or 32 for q8_0 */
size_t rs_dtype_block_bytes(rs_dtype t);     /* bytes per block: 4, 2, 2, 34 */
/* bytes of a row of n values; n must be a multiple of the block size */
size_t rs_row_bytes(rs_dtype t, int64_t n);

float rs_f16_to_f32(uint16_t h);
uint16_t rs_f32_to_f16(float f);             /* round to nearest even */
static inline float rs_bf16_to_f32(uint16_t b) {
    union { uint32_t u; float f; } v; v.u = (uint32_t)b << 16; return v.f;
}
uint16_t rs_f32_to_bf16(float f);            /* round to nearest even, NaN kept */

/* ---------------------------------------------------------------- tensors */
#define RS_MAX_DIMS 4
#define RS_NAME_MAX 96
/* ggml order: ne[0] is the innermost (contiguous) dimension. A weight matrix of a
 * linear layer with `in` inputs and `out` outputs has ne = {in, out}: row o holds the
 * `in` weights of output o (PyTorch's [out, in] layout). nb[] are byte strides. */
typedef struct {
    char name[RS_NAME_MAX];
    rs_dtype type;
    int ndim;
    int64_t ne[RS_MAX_DIMS];
    size_t nb[RS_MAX_DIMS];
    void *data;
    const void *packed; /* run time only: a q8_0 matrix repacked for the VNNI kernel
                         * (kernels/q8x16.h) or an f32 matrix packed as bf16 pairs for AMX
                         * (kernels/bf16x3.h; type says which), owned by whoever packed it;
                         * NULL if none */
} rs_tensor;

/* Fills ne/nb for a contiguous tensor; ne beyond ndim are 1. Returns RSMOE_OK or an
 * error for a bad dtype, non-positive dims, overflow or a q8_0 row not a multiple of 32. */
rsmoe_status rs_tensor_init(rs_tensor *t, const char *name, rs_dtype type, int ndim,
                            const int64_t *ne, void *data);
int64_t rs_tensor_nelements(const rs_tensor *t);
size_t rs_tensor_nbytes(const rs_tensor *t);
bool rs_tensor_is_contiguous(const rs_tensor *t);

/* ---------------------------------------------------------------- arena */
/* One block sized once from a config; allocation is a pointer bump (64-byte aligned),
 * never a malloc in a hot loop. Full arena -> NULL with RSMOE_ERR_NOMEM recorded. */
typedef struct {
    uint8_t *base;
    size_t size, used, peak;
} rs_arena;

rsmoe_status rs_arena_init(rs_arena *a, size_t bytes);
void rs_arena_free(rs_arena *a);
void *rs_arena_alloc(rs_arena *a, size_t bytes);
float *rs_arena_floats(rs_arena *a, size_t n);       /* n floats, uninitialised */
static inline size_t rs_arena_mark(const rs_arena *a) { return a->used; }
static inline void rs_arena_reset_to(rs_arena *a, size_t mark) { a->used = mark; }

/* A large block read over and over as a stream (repacked weights, the bandwidth benchmark's
 * array): 64-byte aligned; from 2 MiB on, 2 MiB aligned with its whole 2 MiB pages advised as
 * transparent huge pages (Linux; the tail stays in small pages, so RSS grows by nothing).
 * Freed with free(); NULL when out of memory. */
void *rs_alloc_stream(size_t bytes);

/* ---------------------------------------------------------------- per-thread scratch */
/* Kernels that pack operands keep one scratch buffer per thread and kind, grown as needed
 * and freed when the thread exits (never in a hot loop). */
typedef enum { RS_TLS_GEMM = 0, RS_TLS_BF16X3, RS_TLS_COUNT } rs_tls_slot;
/* this thread's buffer `slot` of at least `bytes` (64-byte aligned; its contents are not kept
 * when it grows); NULL when out of memory */
void *rs_tls_scratch(rs_tls_slot slot, size_t bytes);

/* ---------------------------------------------------------------- threads */
/* A fixed pool of worker threads; rs_pool_run calls fn(ctx, i, n) for i = 0..n-1 where n
 * is the pool size, the caller's thread doing i = 0, and returns when all are done.
 * A NULL pool runs fn(ctx, 0, 1) inline. */
/* A share that no worker has claimed when the caller finishes its own is run by the
 * caller (a worker slow to wake is never waited for); fn must not care which thread runs
 * which share. */
typedef struct rs_pool rs_pool;
typedef void (*rs_pool_fn)(void *ctx, int ith, int nth);
rs_pool *rs_pool_new(int nthreads);               /* NULL on failure (error recorded) */
void rs_pool_free(rs_pool *p);
int rs_pool_size(const rs_pool *p);               /* 1 for NULL */
/* tests: while held, workers that see a run wait before claiming their share, so the
 * caller runs every share itself (as with workers the host has not scheduled) */
void rs_pool_hold_workers(rs_pool *p, bool hold);
void rs_pool_run(rs_pool *p, rs_pool_fn fn, void *ctx);
/* p, or NULL (run on the calling thread) when `work` (multiply-adds) is below the pool's
 * minimum, RS_POOL_MIN_WORK unless set: waking the workers costs more than they save on
 * smaller jobs. For kernels whose result does not depend on the thread count. The default
 * model's decoding (width 256: products of 0.2-1.5 M multiply-adds for 3 rows) took 34-36 ms
 * per caption on 2 threads with every product threaded, 30-33 ms with this minimum, 29-30 ms
 * on 1 thread (bench/caption_latency.sh, 2-vCPU AMD EPYC, interleaved). */
#define RS_POOL_MIN_WORK (1 << 20)
rs_pool *rs_pool_for_work(rs_pool *p, double work);
/* tests: 0 makes every kernel that asks rs_pool_for_work use the threads */
void rs_pool_set_min_work(rs_pool *p, double work);
/* the [begin,end) share of n items for worker ith of nth, in chunks of `align` */
void rs_split_range(int64_t n, int ith, int nth, int64_t align, int64_t *begin, int64_t *end);
/* Dynamic shares of n items: the threads of one run take chunks (multiples of `align`,
 * about n / (4 nth) items) from a shared counter until none is left, so a thread the host
 * runs slowly takes fewer. rs_chunks_init before rs_pool_run; rs_chunks_next in each
 * share returns false when all are taken. Which thread computes which chunk varies from
 * run to run, so each chunk's result must not depend on it. */
typedef struct { _Atomic int64_t next; int64_t n, chunk; } rs_chunks;
void rs_chunks_init(rs_chunks *c, int64_t n, int64_t align, int nth);
bool rs_chunks_next(rs_chunks *c, int64_t *begin, int64_t *end);
int rs_default_threads(void);                     /* online CPUs, >= 1 */

/* ---------------------------------------------------------------- RNG */
/* xoshiro256** seeded through splitmix64: the same seed gives the same stream everywhere. */
typedef struct { uint64_t s[4]; } rs_rng;
void rs_rng_seed(rs_rng *r, uint64_t seed);
uint64_t rs_rng_u64(rs_rng *r);
double rs_rng_uniform(rs_rng *r);                 /* [0, 1) with 53 bits */
double rs_rng_normal(rs_rng *r);                  /* N(0, 1), Box-Muller */
void rs_rng_fill_normal(rs_rng *r, float *x, size_t n, float mean, float std);
void rs_rng_fill_uniform(rs_rng *r, float *x, size_t n, float lo, float hi);

/* ---------------------------------------------------------------- CPU, time */
typedef struct {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16, avx_vnni;
    bool amx_int8; /* AMX tiles + int8 in the CPU and enabled by the OS (XCR0); a process must
                    * still ask Linux for the tile state: rs_cpu_amx_ready() */
    bool amx_bf16; /* AMX-BF16 as well (same conditions) */
    bool amd;      /* vendor "AuthenticAMD" (or "HygonGenuine"): kernels whose best memory access
                    * pattern was measured to differ between vendors choose by it */
} rs_cpu_features;
const rs_cpu_features *rs_cpu(void);              /* detected once (cpuid + xgetbv) */
/* true when this process may run AMX tile instructions: the CPU has AMX-INT8 or AMX-BF16 (check
 * rs_cpu() for which) and Linux granted
 * the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, asked once; process-wide). The
 * environment variable RSMOE_NO_AMX=1 makes it false (to compare against the AVX-512 path). */
bool rs_cpu_amx_ready(void);
double rs_time_s(void);                            /* monotonic seconds */
size_t rs_peak_rss_bytes(void);                    /* from getrusage */

/* ---------------------------------------------------------------- files */
/* A whole file in memory, NUL-terminated (len excludes the NUL; len may be NULL). NULL with
 * *st set when it cannot be opened or read (RSMOE_ERR_IO), is over max bytes
 * (RSMOE_ERR_FORMAT) or memory runs out. Free with free(). */
char *rs_read_file(const char *path, size_t max, size_t *len, rsmoe_status *st);

#endif
