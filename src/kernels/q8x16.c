/* q8x16.c - see q8x16.h. The plain C twin and the AVX-512 VNNI kernel share the driver
 * (activation quantisation, tiles, chunks, threads); each computes one group of 16 output
 * columns for up to Q16_MR activation rows over one K chunk. */
#include "kernels/q8x16.h"
#include "kernels/amx.h"

#include <math.h>
#include <string.h>

#define Q16_MR 8          /* activation rows per kernel call */
#define Q16_REC 512       /* bytes of one (group, block) record of values */
#ifndef Q16_PF
#define Q16_PF 16         /* records prefetched ahead (8 KiB) */
#endif
/* into L2, not L1: with _MM_HINT_T0 the three rows of a 3-expert batch took 1.14-1.18x one
 * row's time on a 2048x8192 matrix streamed from memory, with _MM_HINT_T1 1.01-1.08x, and one
 * row itself got 3-7 % faster (1 and 2 threads; 8 and 32 rows faster too). Filling L1 ahead
 * ties up its few line-fill buffers; the L2 has room for the 8 KiB in flight. */
#ifndef Q16_PF_HINT
#define Q16_PF_HINT _MM_HINT_T1
#endif
/* ...except for one activation row on AMD: there the hardware prefetcher alone streams the
 * weights faster. paper-1b q8_0, one expert decoding (2-vCPU AMD EPYC, Zen 4, `rsmoe bench
 * infer`, two interleaved rounds on a quiet machine): one thread 16.4-17.0 tok/s (66-67 % of the
 * bandwidth limit) with the prefetch, 20.1-20.4 (77-86 %) without; two threads 22.0-23.7 against
 * 22.9-24.8. Batches of rows gained nothing from dropping it or from other hints (T0, NTA, 32
 * records ahead: 42.7-47.1 tok/s for 3 rows on one thread, within the noise), so they keep it;
 * the Intel Xeons measured before keep it for every row count.
 * -1: by vendor (rs_cpu()->amd), 0: off for one row, 1: on for one row. */
#ifndef Q16_PF_ONE_ROW
#define Q16_PF_ONE_ROW -1
#endif

/* Rows 1..Q16_STREAM_MAX_MR read a thread's chunk of columns as four sequential weight streams at
 * once on AMD (the chunk cut into four runs of groups; each tile call computes one group of each
 * run), without the long software prefetch: one stream (one group after another) left the Zen 4's
 * memory system idle for part of each record. 2-vCPU AMD EPYC (Zen 4), one thread, weights
 * streamed from memory, variants interleaved in one process (medians of 11 runs, GB/s of weights
 * for 1 / 3 activation rows): 8192x2048 21.6 / 20.9 with one stream, 28.5 / 24.0 with four;
 * 2048x8192 23.7 / 21.5 -> 30.4 / 29.0; 3072x2048 22.0 / 21.3 -> 28.6 / 23.9. Four streams with
 * the one-stream prefetch (16 records ahead, T1) kept gave 3 rows only 22.1-23.1; two and three
 * streams fell in between; eight ran out of registers (19-23 / 16-19). The Intel Xeons measured
 * before keep one stream and the prefetch. Each output's operations and their order are
 * unchanged: the same bits either way.
 * -1: by vendor (4 on AMD, else 1); rs_q8x16_set_streams overrides it (tests). */
#ifndef Q16_STREAMS
#define Q16_STREAMS -1
#endif
/* ...with a short software prefetch in each stream: two records (1 KiB) ahead, into L2 only
 * (_MM_HINT_T2). Same machine, both variants in one process, medians of 9 interleaved runs,
 * GB/s of weights for 1 / 3 rows, five rounds over four shapes: 3 rows 3-18 % faster on the
 * K = 2048 shapes that hold most of a LLaMA's weights (8192x2048 21.6 -> 23.1, 16.8 -> 19.9;
 * 2048x2048 19.6 -> 22.5; 512x2048 18.4 -> 19.8), one row -1..+6 %, 2048x8192 within the noise
 * (25.6 -> 24.6 once, +1-2 % in two other rounds). One or three records ahead gained nothing
 * over two; T0 (into L1, four records ahead), NTA (eight ahead) and the one-stream prefetch
 * (16 ahead, T1) were slower than no prefetch. */
#ifndef Q16_SPF
#define Q16_SPF 2
#endif
#ifndef Q16_SPF_HINT_S
#define Q16_SPF_HINT_S _MM_HINT_T2
#endif
#define Q16_STREAM_MAX 4
#define Q16_STREAM_MAX_MR 3
static _Atomic int q16_streams_forced = 0;
void rs_q8x16_set_streams(int n) { q16_streams_forced = n < 0 ? 0 : n; } /* q16_run makes it 1 or 4 */

typedef struct q16_job q16_job;
typedef void (*q16_fn)(const q16_job *j, int64_t g, int64_t m0, int mr);

struct q16_job {
    const uint8_t *wq;    /* records: (group g, block b) at wq + (g * nb + b) * 512 */
    const uint16_t *wd;   /* f16 scales: (g, b) at wd + (g * nb + b) * 16 */
    int64_t nb;           /* blocks per weight row (K / 32) */
    int64_t b0, nbk;      /* this K chunk: blocks [b0, b0 + nbk) */
    /* the chunk's activations block-major (an AMX A tile, 16 rows of one block, is then 512
     * contiguous bytes): row m, block b at xq + (b * ldm + m) * 32, its scale at xd[b * ldm + m],
     * -128 * (sum of its values) at xc[b * ldm + m] */
    const int8_t *xq;
    const float *xd;
    const int32_t *xc;
    int64_t ldm, M;
    float *y;             /* row m of the tile at y + m * ldy */
    int64_t ldy;
    int accumulate;
    int amx;              /* 16-row tiles by AMX (TDPBSUD), the rest by fn */
    int pf_one;           /* software prefetch in one-row tiles (Q16_PF_ONE_ROW) */
    int streams;          /* 1, or Q16_STREAM_MAX groups at once for rows <= Q16_STREAM_MAX_MR */
    q16_fn fn;
    /* the matrices sharing these activations: matrix i holds the global groups
     * [g0[i], g0[i + 1]); the worker points wq, wd, y, ldy at it */
    int nmat;
    const uint8_t *mwq[RS_Q8X16_MAX_MATS];
    const uint16_t *mwd[RS_Q8X16_MAX_MATS];
    float *my[RS_Q8X16_MAX_MATS];
    int64_t mldy[RS_Q8X16_MAX_MATS], g0[RS_Q8X16_MAX_MATS + 1];
};

/* one pool run: the job (each worker works on its own copy) and the shared column counter */
typedef struct {
    q16_job job;
    rs_chunks cols;       /* output columns, in groups of 16 (of all matrices, one after another) */
} q16_run_ctx;

static float h2f(uint16_t h) { return rs_f16_to_f32(h); }

/* the packed layout: ng * nb records of 512 value bytes, then ng * nb * 16 f16 scales */
static uint16_t *scales_of(const void *packed, int64_t ng, int64_t nb) {
    return (uint16_t *)((uintptr_t)packed + (size_t)ng * (size_t)nb * Q16_REC);
}

static void store16(const q16_job *j, int64_t m, int64_t g, const float *acc) {
    float *yp = j->y + m * j->ldy + g * RS_Q8X16_ROWS;
    for (int r = 0; r < RS_Q8X16_ROWS; r++) yp[r] = j->accumulate ? yp[r] + acc[r] : acc[r];
}

/* ---------------------------------------------------------------- plain C twin */
static void q16_group_c(const q16_job *j, int64_t g, int64_t m0, int mr) {
    for (int i = 0; i < mr; i++) {
        const int64_t m = m0 + i;
        float acc[RS_Q8X16_ROWS] = {0};
        for (int64_t b = 0; b < j->nbk; b++) {
            const int64_t rec = g * j->nb + j->b0 + b;
            const uint8_t *w = j->wq + rec * Q16_REC;
            const uint16_t *wd = j->wd + rec * RS_Q8X16_ROWS;
            const int8_t *x = j->xq + (b * j->ldm + m) * RS_QK8_0;
            const float dx = j->xd[b * j->ldm + m];
            for (int r = 0; r < RS_Q8X16_ROWS; r++) {
                int32_t s = j->xc[b * j->ldm + m];
                for (int q = 0; q < 8; q++)
                    for (int t = 0; t < 4; t++) s += (int32_t)w[q * 64 + r * 4 + t] * (int32_t)x[4 * q + t];
                acc[r] = fmaf((float)s, h2f(wd[r]) * dx, acc[r]);
            }
        }
        store16(j, m, g, acc);
    }
}

/* ---------------------------------------------------------------- AVX-512 VNNI */
#if defined(__x86_64__)
#include <immintrin.h>
#define T512V __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c,avx512vnni")))
#define TI static inline __attribute__((always_inline))
#define T512F __attribute__((target("avx512f")))

/* shared by the VNNI and AMX tiles: the prefetch ahead of record w, one block's finish of a
 * row (int32 block product s -> float, times d_w * d_x, FMA into acc: the C twin's order),
 * and a row's 16 outputs written or added */
/* every line of the record dist records ahead of w (a macro: the hint must be a constant) */
#define Q16_PREFETCH_AT(w, dist, hint)                                                             \
    do {                                                                                           \
        for (int o_ = 0; o_ < Q16_REC; o_ += 64)                                                   \
            _mm_prefetch((const char *)(w) + (dist) * Q16_REC + o_, hint);                         \
    } while (0)
TI void q16_prefetch(const uint8_t *w) { Q16_PREFETCH_AT(w, Q16_PF, Q16_PF_HINT); }
T512F TI __m512 q16_finish(__m512i s, __m512 dw, float dx, __m512 acc) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(dx)), acc);
}
T512F TI void q16_store_at(const q16_job *j, float *yp, __m512 acc) {
    _mm512_storeu_ps(yp, j->accumulate ? _mm512_add_ps(_mm512_loadu_ps(yp), acc) : acc);
}
T512F TI void q16_store(const q16_job *j, int64_t m, int64_t g, __m512 acc) {
    q16_store_at(j, j->y + m * j->ldy + g * RS_Q8X16_ROWS, acc);
}

/* s + dpbusd(w, the 4 signed bytes at x broadcast to all 16 lanes), the broadcast taken by the
 * instruction itself ({1to16} memory operand): GCC keeps _mm512_set1_epi32 of a loaded quad as a
 * separate vpbroadcastd, and the fused form ran 3 rows of a cache-resident 256x2048 matrix at
 * 60-64 against 52-54 GB/s (one thread, AMD EPYC). Same operation, same bits. */
T512V TI __m512i q16_dpbusd_bcast(__m512i s, __m512i w, const int8_t *x) {
    __asm__("vpdpbusd %[m]%{1to16%}, %[w], %[s]" : [s] "+v"(s) : [w] "v"(w), [m] "m"(*(const int32_t(*)[1])x));
    return s;
}

/* one record for one activation row m of block b: the 8 dpbusd in two chains, their sum finished
 * into acc (shared by the one-stream and the four-stream tiles: the same operations, same order) */
T512V TI __m512 q16_row_record(const q16_job *j, int64_t b, int64_t m, const __m512i *wv, __m512 dw, __m512 acc) {
    const int8_t *x = j->xq + (b * j->ldm + m) * RS_QK8_0;
    __m512i s0 = _mm512_set1_epi32(j->xc[b * j->ldm + m]), s1 = _mm512_setzero_si512();
    for (int q = 0; q < 8; q += 2) {
        s0 = q16_dpbusd_bcast(s0, wv[q], x + 4 * q);
        s1 = q16_dpbusd_bcast(s1, wv[q + 1], x + 4 * q + 4);
    }
    return q16_finish(_mm512_add_epi32(s0, s1), dw, j->xd[b * j->ldm + m], acc);
}

T512V TI void q16_tile_vnni(const q16_job *j, int64_t g, int64_t m0, const int MR, const bool PF) {
    __m512 acc[Q16_MR];
    for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();
    const uint8_t *w = j->wq + (g * j->nb + j->b0) * Q16_REC;
    const uint16_t *wd = j->wd + (g * j->nb + j->b0) * RS_Q8X16_ROWS;
    for (int64_t b = 0; b < j->nbk; b++, w += Q16_REC, wd += RS_Q8X16_ROWS) {
        if (PF) q16_prefetch(w);
        __m512i wv[8];
        for (int q = 0; q < 8; q++) wv[q] = _mm512_load_si512((const void *)(w + 64 * q));
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)wd));
        for (int i = 0; i < MR; i++) acc[i] = q16_row_record(j, b, m0 + i, wv, dw, acc[i]);
    }
    for (int i = 0; i < MR; i++) q16_store(j, m0 + i, g, acc[i]);
}

T512V static void q16_group_vnni(const q16_job *j, int64_t g, int64_t m0, int mr) {
    switch (mr) {
    case 1:
        if (j->pf_one) q16_tile_vnni(j, g, m0, 1, true);
        else q16_tile_vnni(j, g, m0, 1, false);
        break;
    case 2: q16_tile_vnni(j, g, m0, 2, true); break;
    case 3: q16_tile_vnni(j, g, m0, 3, true); break;
    case 4: q16_tile_vnni(j, g, m0, 4, true); break;
    case 5: q16_tile_vnni(j, g, m0, 5, true); break;
    case 6: q16_tile_vnni(j, g, m0, 6, true); break;
    case 7: q16_tile_vnni(j, g, m0, 7, true); break;
    default: q16_tile_vnni(j, g, m0, 8, true); break;
    }
}

/* S groups at once (S sequential weight streams), each with its own records, scales and outputs
 * (the groups may belong to different matrices of a multi product); per group exactly the
 * operations of q16_tile_vnni, in the same order, with the short prefetch (Q16_SPF) instead
 * of the long one */
typedef struct {
    const uint8_t *w;     /* the group's first record of the K chunk */
    const uint16_t *wd;   /* its scales */
    float *y;             /* output row 0, the group's first column */
    int64_t ldy;
} q16_stream;

T512V TI void q16_tiles_vnni(const q16_job *j, const q16_stream *st, const int S, const int MR) {
    __m512 acc[Q16_STREAM_MAX][Q16_STREAM_MAX_MR];
    const uint8_t *w[Q16_STREAM_MAX];
    const uint16_t *wd[Q16_STREAM_MAX];
    _Pragma("GCC unroll 4") for (int h = 0; h < S; h++) {
        _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) acc[h][i] = _mm512_setzero_ps();
        w[h] = st[h].w;
        wd[h] = st[h].wd;
    }
    for (int64_t b = 0; b < j->nbk; b++) {
        _Pragma("GCC unroll 4") for (int h = 0; h < S; h++) {
            __m512i wv[8];
            for (int q = 0; q < 8; q++) wv[q] = _mm512_load_si512((const void *)(w[h] + 64 * q));
            Q16_PREFETCH_AT(w[h], Q16_SPF, Q16_SPF_HINT_S);
            const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)wd[h]));
            w[h] += Q16_REC;
            wd[h] += RS_Q8X16_ROWS;
            _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++) acc[h][i] = q16_row_record(j, b, i, wv, dw, acc[h][i]);
        }
    }
    _Pragma("GCC unroll 4") for (int h = 0; h < S; h++) _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
        q16_store_at(j, st[h].y + i * st[h].ldy, acc[h][i]);
}

/* the four-stream tile for rows 0..mr-1, mr 1..3 (the only S the driver uses: one instance per
 * row count) */
T512V static void q16_tiles4_vnni(const q16_job *j, const q16_stream *st, int mr) {
    switch (mr) {
    case 1: q16_tiles_vnni(j, st, Q16_STREAM_MAX, 1); break;
    case 2: q16_tiles_vnni(j, st, Q16_STREAM_MAX, 2); break;
    default: q16_tiles_vnni(j, st, Q16_STREAM_MAX, 3); break;
    }
}

/* ---------------------------------------------------------------- AMX-INT8
 * 16 activation rows at a time. A record (one group of 16 weight rows, one 32-block) is
 * already in the layout of an AMX B tile: 8 rows (k-quads) of 64 bytes (16 columns x 4
 * bytes). The A tile is the 16 rows' quantised block (16 x 32 signed bytes), and one TDPBSUD
 * (signed A x unsigned B) gives the 16 x 16 exact int32 block products; they are stored and
 * finished as the VNNI kernel finishes its own (the int32 correction added, the float scale
 * and FMA in the same order), so the result is the same bit for bit. */
#define TAMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

TAMX static void q16_amx_begin(void) {
    _Alignas(64) rs_amx_tilecfg cfg;
    rs_amx_tilecfg_init(&cfg);
    for (int t = 0; t < 6; t += 3) {
        cfg.rows[t] = 16;     cfg.colsb[t] = 64;     /* C: 16 activation rows x 16 int32 columns */
        cfg.rows[t + 1] = 16; cfg.colsb[t + 1] = 32; /* A: 16 activation rows x one 32-byte block */
        cfg.rows[t + 2] = 8;  cfg.colsb[t + 2] = 64; /* B: one record */
    }
    _tile_loadconfig(&cfg);
}

TAMX static void q16_amx_end(void) { _tile_release(); }

/* block b's 16 x 16 int32 products into cb through tiles C, A, B (literal tile numbers: the
 * intrinsics paste them into the instruction text) */
#define Q16_AMX_ISSUE(TC, TA, TB, b, cb)                                                           \
    do {                                                                                           \
        const uint8_t *wb_ = w0 + (b) * Q16_REC;                                                   \
        q16_prefetch(wb_);                                                                         \
        _tile_zero(TC);                                                                            \
        _tile_loadd(TA, x + (b) * j->ldm * RS_QK8_0, RS_QK8_0);                                    \
        _tile_loadd(TB, wb_, 64);                                                                  \
        _tile_dpbsud(TC, TA, TB);                                                                  \
        _tile_stored(TC, cb, 64);                                                                  \
    } while (0)

TAMX TI void q16_amx_finish(const q16_job *j, int64_t m0, int64_t b, const uint16_t *wd, int32_t (*c)[16],
                            __m512 *acc) {
    const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(wd + b * RS_Q8X16_ROWS)));
    const int32_t *xc = j->xc + b * j->ldm + m0;
    const float *xd = j->xd + b * j->ldm + m0;
    for (int i = 0; i < 16; i++)
        acc[i] = q16_finish(_mm512_add_epi32(_mm512_load_si512((const void *)c[i]), _mm512_set1_epi32(xc[i])), dw,
                            xd[i], acc[i]);
}

/* two tile sets in turn: block b + 1's product runs while block b's is finished */
TAMX static void q16_tile16_amx(const q16_job *j, int64_t g, int64_t m0) {
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    _Alignas(64) int32_t c0[16][16], c1[16][16];
    const uint8_t *w0 = j->wq + (g * j->nb + j->b0) * Q16_REC;
    const uint16_t *wd = j->wd + (g * j->nb + j->b0) * RS_Q8X16_ROWS;
    const int8_t *x = j->xq + m0 * RS_QK8_0;
    const int64_t nbk = j->nbk;
    Q16_AMX_ISSUE(0, 1, 2, 0, c0);
    for (int64_t b = 0; b < nbk; b += 2) {
        if (b + 1 < nbk) Q16_AMX_ISSUE(3, 4, 5, b + 1, c1);
        q16_amx_finish(j, m0, b, wd, c0, acc);
        if (b + 1 < nbk) {
            if (b + 2 < nbk) Q16_AMX_ISSUE(0, 1, 2, b + 2, c0);
            q16_amx_finish(j, m0, b + 1, wd, c1, acc);
        }
    }
    for (int i = 0; i < 16; i++) q16_store(j, m0 + i, g, acc[i]);
}
#endif

bool rs_q8x16_native(void) {
#if defined(__x86_64__)
    const rs_cpu_features *f = rs_cpu();
    return f->avx512f && f->avx512bw && f->avx512vl && f->avx512_vnni && f->avx2 && f->fma && f->f16c;
#else
    return false;
#endif
}

/* ---------------------------------------------------------------- packing */
size_t rs_q8x16_bytes(int64_t N, int64_t K) {
    if (N <= 0 || K <= 0 || N % RS_Q8X16_ROWS || K % RS_QK8_0) return 0;
    const size_t recs = (size_t)(N / RS_Q8X16_ROWS) * (size_t)(K / RS_QK8_0);
    return recs * (Q16_REC + RS_Q8X16_ROWS * sizeof(uint16_t));
}

typedef struct {
    const rs_block_q8_0 *src;
    uint8_t *wq;
    uint16_t *wd;
    int64_t nb;
    rs_chunks groups;
} pack_job;

static void pack_worker(void *ctx, int ith, int nth) {
    pack_job *pj = ctx;
    (void)ith;
    (void)nth;
    const int64_t nb = pj->nb;
    int64_t g0, g1;
    while (rs_chunks_next(&pj->groups, &g0, &g1))
        for (int64_t g = g0; g < g1; g++)
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *rec = pj->wq + ((size_t)g * (size_t)nb + (size_t)b) * Q16_REC;
                uint16_t *d = pj->wd + ((size_t)g * (size_t)nb + (size_t)b) * RS_Q8X16_ROWS;
                for (int r = 0; r < RS_Q8X16_ROWS; r++) {
                    const rs_block_q8_0 *blk = pj->src + (g * RS_Q8X16_ROWS + r) * nb + b;
                    d[r] = blk->d;
                    for (int q = 0; q < 8; q++)
                        for (int t = 0; t < 4; t++)
                            rec[q * 64 + r * 4 + t] = (uint8_t)((int)blk->qs[4 * q + t] + 128);
                }
            }
}

rsmoe_status rs_q8x16_pack(const void *W, int64_t N, int64_t K, void *out, rs_pool *pool) {
    const size_t bytes = rs_q8x16_bytes(N, K);
    if (!bytes || !W || !out)
        return rs_error(RSMOE_ERR_INVALID_ARG, "q8x16 pack: %lld x %lld is not a multiple of 16 x 32",
                        (long long)N, (long long)K);
    const int64_t nb = K / RS_QK8_0, ng = N / RS_Q8X16_ROWS;
    pack_job pj;
    pj.src = W;
    pj.wq = out;
    pj.wd = scales_of(out, ng, nb);
    pj.nb = nb;
    rs_chunks_init(&pj.groups, ng, 1, rs_pool_size(pool));
    rs_pool_run(pool, pack_worker, &pj);
    return RSMOE_OK;
}

/* ---------------------------------------------------------------- driver */
static void q16_worker(void *ctx, int ith, int nth) {
    q16_run_ctx *const rc = ctx;
    const q16_job *const jall = &rc->job;
    (void)ith;
    (void)nth;
    int64_t n0, n1;
#if defined(__x86_64__)
    bool amx_on = false; /* tile configuration is per thread: set on first use, released at the end */
#endif
    q16_job mat = *jall, *const j = &mat; /* this thread's view: one matrix at a time */
    int cur = -1;
    while (rs_chunks_next(&rc->cols, &n0, &n1)) {
        int64_t ga = n0 / RS_Q8X16_ROWS;
#if defined(__x86_64__)
        if (jall->streams > 1 && jall->M <= Q16_STREAM_MAX_MR && jall->fn == q16_group_vnni) {
            /* four runs of hs groups: tile k reads group k of each run */
            const int64_t hs = (n1 / RS_Q8X16_ROWS - ga) / Q16_STREAM_MAX;
            for (int64_t k = 0; k < hs; k++) {
                q16_stream st[Q16_STREAM_MAX];
                for (int t = 0; t < Q16_STREAM_MAX; t++) {
                    const int64_t gg = ga + t * hs + k;
                    int i = 0;
                    while (gg >= jall->g0[i + 1]) i++;
                    const int64_t g = gg - jall->g0[i], rec = g * jall->nb + jall->b0;
                    st[t] = (q16_stream){.w = jall->mwq[i] + rec * Q16_REC, .wd = jall->mwd[i] + rec * RS_Q8X16_ROWS,
                                         .y = jall->my[i] + g * RS_Q8X16_ROWS, .ldy = jall->mldy[i]};
                }
                q16_tiles4_vnni(jall, st, (int)jall->M);
            }
            ga += Q16_STREAM_MAX * hs; /* the rest one group at a time */
        }
#endif
        for (int64_t gg = ga; gg < n1 / RS_Q8X16_ROWS; gg++) {
            int i = cur < 0 ? 0 : cur;
            while (gg >= jall->g0[i + 1]) i++;
            while (gg < jall->g0[i]) i--;
            if (i != cur) {
                cur = i;
                mat.wq = jall->mwq[i];
                mat.wd = jall->mwd[i];
                mat.y = jall->my[i];
                mat.ldy = jall->mldy[i];
            }
            const int64_t g = gg - jall->g0[i];
            int64_t m = 0;
#if defined(__x86_64__)
            if (j->amx && j->M >= 16) {
                if (!amx_on) q16_amx_begin();
                amx_on = true;
                for (; m + 16 <= j->M; m += 16) q16_tile16_amx(j, g, m);
            }
#endif
            for (; m < j->M; m += Q16_MR) j->fn(j, g, m, j->M - m < Q16_MR ? (int)(j->M - m) : Q16_MR);
        }
    }
#if defined(__x86_64__)
    if (amx_on) q16_amx_end();
#endif
}

static void q16_run(rs_quant_isa isa, int nmat, const void *const *Wp, const int64_t *Ns, float *const *ys,
                    const float *x, int64_t M, int64_t K, rs_pool *pool, size_t scratch_bytes) {
    int64_t N = 0; /* all matrices' columns */
    for (int i = 0; i < nmat; i++) N += Ns[i];
    pool = rs_pool_for_work(pool, (double)M * (double)N * (double)K);
    q16_job j;
    memset(&j, 0, sizeof j);
    j.fn = q16_group_c;
    j.streams = 1;
#if defined(__x86_64__)
    if (isa != RS_QUANT_C && rs_q8x16_native()) {
        j.fn = q16_group_vnni;
        /* AMX for batches of 16+ rows (the encoder's tokens, prefill) unless VNNI is asked for */
        j.amx = isa != RS_QUANT_AVX512_EXT && M >= 16 && rs_cpu()->amx_int8 && rs_cpu_amx_ready();
        j.pf_one = Q16_PF_ONE_ROW < 0 ? !rs_cpu()->amd : Q16_PF_ONE_ROW;
        const int ns = q16_streams_forced ? q16_streams_forced : Q16_STREAMS < 0 ? (rs_cpu()->amd ? Q16_STREAM_MAX : 1) : Q16_STREAMS;
        j.streams = ns > 1 ? Q16_STREAM_MAX : 1;
    }
#else
    (void)isa;
#endif
    const int64_t nb = K / RS_QK8_0;
    j.nmat = nmat;
    for (int i = 0; i < nmat; i++) {
        j.mwq[i] = Wp[i];
        j.mwd[i] = scales_of(Wp[i], Ns[i] / RS_Q8X16_ROWS, nb);
        j.mldy[i] = Ns[i];
        j.g0[i + 1] = j.g0[i] + Ns[i] / RS_Q8X16_ROWS;
    }
    j.nb = nb;
    /* scratch per row and block: 32 values + a float scale + an int32 correction */
    _Alignas(64) unsigned char sbuf[RS_MATMUL_W_STACK];
    unsigned char *buf = sbuf, *heap = NULL;
    size_t avail = scratch_bytes && scratch_bytes < sizeof sbuf ? scratch_bytes : sizeof sbuf;
    const size_t per_block = RS_QK8_0 + sizeof(float) + sizeof(int32_t);
    int64_t nbk = (int64_t)(avail / per_block);
    if (nbk < 1) nbk = 1;
    if (nbk > nb) nbk = nb;
    int64_t mt = (int64_t)(avail / ((size_t)nbk * per_block));
    if (mt < 1) mt = 1;
    if (j.amx && mt < 16 && !scratch_bytes) {
        /* 16 rows of a long K do not fit the stack scratch: 16 rows on the heap instead (the K
         * chunks stay as above, so the sums, and the result, are unchanged) */
        heap = aligned_alloc(64, ((size_t)16 * (size_t)nbk * per_block + 63) / 64 * 64);
        if (heap) buf = heap, mt = 16;
    }
    if (j.amx && mt > 16) mt -= mt % 16; /* whole AMX tiles; rows are independent */
    if (mt > M) mt = M;
    int8_t *xq = (int8_t *)buf;
    float *xd = (float *)(buf + (size_t)mt * (size_t)nbk * RS_QK8_0);
    int32_t *xc = (int32_t *)(xd + mt * nbk);
    for (int64_t m0 = 0; m0 < M; m0 += mt) {
        const int64_t mc = M - m0 < mt ? M - m0 : mt;
        for (int64_t b0 = 0; b0 < nb; b0 += nbk) {
            const int64_t bn = nb - b0 < nbk ? nb - b0 : nbk;
            for (int64_t m = 0; m < mc; m++)
                for (int64_t b = 0; b < bn; b++) {
                    rs_block_q8_0 blk;
                    rs_quantize_row_q8_0(x + (m0 + m) * K + (b0 + b) * RS_QK8_0, &blk, RS_QK8_0);
                    int32_t sum = 0;
                    for (int t = 0; t < RS_QK8_0; t++) sum += blk.qs[t];
                    memcpy(xq + (b * mt + m) * RS_QK8_0, blk.qs, RS_QK8_0);
                    xd[b * mt + m] = h2f(blk.d);
                    xc[b * mt + m] = -128 * sum;
                }
            j.b0 = b0;
            j.nbk = bn;
            j.xq = xq;
            j.xd = xd;
            j.xc = xc;
            j.ldm = mt;
            j.M = mc;
            for (int i = 0; i < nmat; i++) j.my[i] = ys[i] + m0 * Ns[i];
            j.accumulate = b0 > 0;
            q16_run_ctx rc;
            rc.job = j;
            rs_chunks_init(&rc.cols, N, RS_Q8X16_ROWS, rs_pool_size(pool));
            rs_pool_run(pool, q16_worker, &rc);
        }
    }
    free(heap);
}

void rs_matmul_q8x16_isa(rs_quant_isa isa, const void *Wp, const float *x, float *y, int64_t M,
                         int64_t N, int64_t K, rs_pool *pool, size_t scratch_bytes) {
    if (M <= 0 || !Wp || !x || !y || !rs_q8x16_bytes(N, K)) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_q8x16: bad arguments");
        return;
    }
    q16_run(isa, 1, &Wp, &N, &y, x, M, K, pool, scratch_bytes);
}

void rs_matmul_q8x16_multi(int n, const void *const *Wp, const int64_t *N, float *const *y, const float *x,
                           int64_t M, int64_t K, rs_pool *pool) {
    bool ok = n >= 1 && n <= RS_Q8X16_MAX_MATS && M > 0 && x && Wp && N && y;
    for (int i = 0; ok && i < n; i++) ok = Wp[i] && y[i] && rs_q8x16_bytes(N[i], K);
    if (!ok) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_q8x16_multi: bad arguments");
        return;
    }
    q16_run(RS_QUANT_AUTO, n, Wp, N, y, x, M, K, pool, 0);
}

void rs_matmul_q8x16(const void *Wp, const float *x, float *y, int64_t M, int64_t N, int64_t K,
                     rs_pool *pool) {
    rs_matmul_q8x16_isa(RS_QUANT_AUTO, Wp, x, y, M, N, K, pool, 0);
}
