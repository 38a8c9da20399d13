/* q8x16.c - see q8x16.h. The plain C twin and the AVX-512 VNNI kernel share the driver
 * (activation quantisation, tiles, chunks, threads); each computes one group of 16 output
 * columns for up to Q16_MR activation rows over one K chunk. */
#include "kernels/q8x16.h"

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

typedef struct q16_job q16_job;
typedef void (*q16_fn)(const q16_job *j, int64_t g, int64_t m0, int mr);

struct q16_job {
    const uint8_t *wq;    /* records: (group g, block b) at wq + (g * nb + b) * 512 */
    const uint16_t *wd;   /* f16 scales: (g, b) at wd + (g * nb + b) * 16 */
    int64_t nb;           /* blocks per weight row (K / 32) */
    int64_t b0, nbk;      /* this K chunk: blocks [b0, b0 + nbk) */
    const int8_t *xq;     /* quantised activations of the chunk: row m at xq + m * ldq */
    const float *xd;      /* their block scales: row m at xd + m * ldb */
    const int32_t *xc;    /* -128 * (sum of each block's values): row m at xc + m * ldb */
    int64_t ldq, ldb, M;
    float *y;             /* row m of the tile at y + m * ldy */
    int64_t ldy;
    int accumulate;
    q16_fn fn;
    rs_chunks cols;       /* output columns, in groups of 16 */
};

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
            const int8_t *x = j->xq + m * j->ldq + b * RS_QK8_0;
            const float dx = j->xd[m * j->ldb + b];
            for (int r = 0; r < RS_Q8X16_ROWS; r++) {
                int32_t s = j->xc[m * j->ldb + b];
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

T512V TI void q16_tile_vnni(const q16_job *j, int64_t g, int64_t m0, const int MR) {
    __m512 acc[Q16_MR];
    for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();
    const uint8_t *w = j->wq + (g * j->nb + j->b0) * Q16_REC;
    const uint16_t *wd = j->wd + (g * j->nb + j->b0) * RS_Q8X16_ROWS;
    for (int64_t b = 0; b < j->nbk; b++, w += Q16_REC, wd += RS_Q8X16_ROWS) {
        for (int o = 0; o < Q16_REC; o += 64) _mm_prefetch((const char *)w + Q16_PF * Q16_REC + o, Q16_PF_HINT);
        __m512i wv[8];
        for (int q = 0; q < 8; q++) wv[q] = _mm512_load_si512((const void *)(w + 64 * q));
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)wd));
        for (int i = 0; i < MR; i++) {
            const int64_t m = m0 + i;
            const int8_t *x = j->xq + m * j->ldq + b * RS_QK8_0;
            __m512i s = _mm512_set1_epi32(j->xc[m * j->ldb + b]);
            for (int q = 0; q < 8; q++) {
                int32_t quad;
                memcpy(&quad, x + 4 * q, 4);
                s = _mm512_dpbusd_epi32(s, wv[q], _mm512_set1_epi32(quad));
            }
            const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(j->xd[m * j->ldb + b]));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[i]);
        }
    }
    for (int i = 0; i < MR; i++) {
        float *yp = j->y + (m0 + i) * j->ldy + g * RS_Q8X16_ROWS;
        _mm512_storeu_ps(yp, j->accumulate ? _mm512_add_ps(_mm512_loadu_ps(yp), acc[i]) : acc[i]);
    }
}

T512V static void q16_group_vnni(const q16_job *j, int64_t g, int64_t m0, int mr) {
    switch (mr) {
    case 1: q16_tile_vnni(j, g, m0, 1); break;
    case 2: q16_tile_vnni(j, g, m0, 2); break;
    case 3: q16_tile_vnni(j, g, m0, 3); break;
    case 4: q16_tile_vnni(j, g, m0, 4); break;
    case 5: q16_tile_vnni(j, g, m0, 5); break;
    case 6: q16_tile_vnni(j, g, m0, 6); break;
    case 7: q16_tile_vnni(j, g, m0, 7); break;
    default: q16_tile_vnni(j, g, m0, 8); break;
    }
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
    q16_job *j = ctx;
    (void)ith;
    (void)nth;
    int64_t n0, n1;
    while (rs_chunks_next(&j->cols, &n0, &n1))
        for (int64_t g = n0 / RS_Q8X16_ROWS; g < n1 / RS_Q8X16_ROWS; g++)
            for (int64_t m = 0; m < j->M; m += Q16_MR)
                j->fn(j, g, m, j->M - m < Q16_MR ? (int)(j->M - m) : Q16_MR);
}

void rs_matmul_q8x16_isa(rs_quant_isa isa, const void *Wp, const float *x, float *y, int64_t M,
                         int64_t N, int64_t K, rs_pool *pool, size_t scratch_bytes) {
    if (M <= 0 || !Wp || !x || !y || !rs_q8x16_bytes(N, K)) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_q8x16: bad arguments");
        return;
    }
    q16_job j;
    memset(&j, 0, sizeof j);
    j.fn = q16_group_c;
#if defined(__x86_64__)
    if (isa != RS_QUANT_C && rs_q8x16_native()) j.fn = q16_group_vnni;
#else
    (void)isa;
#endif
    const int64_t nb = K / RS_QK8_0;
    j.wq = Wp;
    j.wd = scales_of(Wp, N / RS_Q8X16_ROWS, nb);
    j.nb = nb;
    j.ldy = N;
    /* scratch per row and block: 32 values + a float scale + an int32 correction */
    _Alignas(64) unsigned char buf[RS_MATMUL_W_STACK];
    size_t avail = scratch_bytes && scratch_bytes < sizeof buf ? scratch_bytes : sizeof buf;
    const size_t per_block = RS_QK8_0 + sizeof(float) + sizeof(int32_t);
    int64_t nbk = (int64_t)(avail / per_block);
    if (nbk < 1) nbk = 1;
    if (nbk > nb) nbk = nb;
    int64_t mt = (int64_t)(avail / ((size_t)nbk * per_block));
    if (mt < 1) mt = 1;
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
                    memcpy(xq + m * nbk * RS_QK8_0 + b * RS_QK8_0, blk.qs, RS_QK8_0);
                    xd[m * nbk + b] = h2f(blk.d);
                    xc[m * nbk + b] = -128 * sum;
                }
            j.b0 = b0;
            j.nbk = bn;
            j.xq = xq;
            j.xd = xd;
            j.xc = xc;
            j.ldq = nbk * RS_QK8_0;
            j.ldb = nbk;
            j.M = mc;
            j.y = y + m0 * N;
            j.accumulate = b0 > 0;
            rs_chunks_init(&j.cols, N, RS_Q8X16_ROWS, rs_pool_size(pool));
            rs_pool_run(pool, q16_worker, &j);
        }
    }
}

void rs_matmul_q8x16(const void *Wp, const float *x, float *y, int64_t M, int64_t N, int64_t K,
                     rs_pool *pool) {
    rs_matmul_q8x16_isa(RS_QUANT_AUTO, Wp, x, y, M, N, K, pool, 0);
}
