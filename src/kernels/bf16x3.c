/* bf16x3.c - see bf16x3.h. One driver (M chunks, activation split, K chunks, threads) for the
 * AMX kernel and the plain C twin; each computes, for one or two groups of 16 output columns
 * and 16 activation rows, the chunk's three products per term. */
#include "kernels/bf16x3.h"
#include "kernels/amx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BX_REC 1024 /* bf16 values of one (group, block) record: 512 hi, 512 lo */
#define BX_MC 384   /* most activation rows per M chunk (chunks are balanced) */
#define BX_KCB 24   /* 32-value blocks per K chunk (768 values) */

/* ---------------------------------------------------------------- the split */
/* f32 -> bf16, round to nearest even, an f32 denormal read as zero (as VCVTNEPS2BF16) */
static uint16_t to_bf16_daz(float v) {
    if (fabsf(v) < 0x1p-126f) v = v < 0 || (v == 0 && signbit(v)) ? -0.0f : 0.0f;
    return rs_f32_to_bf16(v);
}

void rs_bf16x3_split(float v, uint16_t *hi, uint16_t *lo) {
    *hi = to_bf16_daz(v);
    float r = v - rs_bf16_to_f32(*hi);
    if (isnan(r) && !isnan(v)) r = 0.0f; /* v infinite: hi carries it */
    *lo = to_bf16_daz(r);
}

/* ---------------------------------------------------------------- packing */
size_t rs_bf16x3_bytes(int64_t N, int64_t K) {
    if (N <= 0 || K <= 0 || N % RS_BF16X3_ROWS || K % 32) return 0;
    return (size_t)N * (size_t)K * 4;
}

typedef struct {
    const float *W;
    uint16_t *out;
    int64_t K, nkb;
    bool avx; /* split with AVX-512 BF16 (the same values as rs_bf16x3_split) */
    rs_chunks groups;
} pack_job;

#if defined(__x86_64__)
static void bx_split_avx512(const float *x, uint16_t *hi, uint16_t *lo, int64_t n);
#endif

static void pack_worker(void *ctx, int ith, int nth) {
    pack_job *pj = ctx;
    (void)ith;
    (void)nth;
    int64_t g0, g1;
    while (rs_chunks_next(&pj->groups, &g0, &g1))
        for (int64_t g = g0; g < g1; g++)
            for (int64_t b = 0; b < pj->nkb; b++) {
                uint16_t *rec = pj->out + ((size_t)g * (size_t)pj->nkb + (size_t)b) * BX_REC;
                for (int r = 0; r < RS_BF16X3_ROWS; r++) {
                    const float *w = pj->W + (g * RS_BF16X3_ROWS + r) * pj->K + b * 32;
                    uint16_t hi[32], lo[32];
#if defined(__x86_64__)
                    if (pj->avx) bx_split_avx512(w, hi, lo, 32);
                    else
#endif
                        for (int k = 0; k < 32; k++) rs_bf16x3_split(w[k], &hi[k], &lo[k]);
                    for (int k = 0; k < 32; k++) {
                        const int at = (k / 2) * 32 + r * 2 + (k & 1);
                        rec[at] = hi[k];
                        rec[512 + at] = lo[k];
                    }
                }
            }
}

rsmoe_status rs_bf16x3_pack(const float *W, int64_t N, int64_t K, void *out, rs_pool *pool) {
    if (!rs_bf16x3_bytes(N, K) || !W || !out)
        return rs_error(RSMOE_ERR_INVALID_ARG, "bf16x3 pack: %lld x %lld is not a multiple of 16 x 32",
                        (long long)N, (long long)K);
    pack_job pj = {.W = W, .out = out, .K = K, .nkb = K / 32, .avx = rs_bf16x3_native()};
    rs_chunks_init(&pj.groups, N / RS_BF16X3_ROWS, 1, rs_pool_size(pool));
    rs_pool_run(pool, pack_worker, &pj);
    return RSMOE_OK;
}

/* ---------------------------------------------------------------- the job */
typedef struct {
    const uint16_t *wp; /* records */
    int64_t nkb;        /* blocks per weight row */
    int64_t kb0, kb1;   /* this K chunk's blocks */
    const uint16_t *ah, *al; /* the M chunk's split rows, K values each, padded to 16 rows with zeros */
    int64_t K;
    float *y;           /* row 0 of the M chunk */
    int64_t ldy, rows;  /* rows: valid rows of the chunk */
    bool accumulate;    /* add to y (a K chunk after the first) */
    bool amx;           /* the AMX tiles, else the plain C twin */
    rs_chunks groups;   /* groups of 16 output columns, two at a time */
} bx_job;

/* plain C twin: groups g (and g + 1 when two), rows [m, m + 16) of the chunk */
static void bx_tile_c(const bx_job *j, int64_t g, bool two, int64_t m) {
    const int ng = two ? 2 : 1;
    const int64_t rows = j->rows - m < 16 ? j->rows - m : 16;
    for (int i = 0; i < rows; i++) {
        const uint16_t *ah = j->ah + (m + i) * j->K, *al = j->al + (m + i) * j->K;
        float *yr = j->y + (m + i) * j->ldy + g * RS_BF16X3_ROWS;
        for (int c = 0; c < ng * RS_BF16X3_ROWS; c++) {
            const uint16_t *rec0 = j->wp + ((size_t)(g + c / RS_BF16X3_ROWS) * (size_t)j->nkb) * BX_REC;
            const int r = c % RS_BF16X3_ROWS;
            double s = 0;
            for (int64_t b = j->kb0; b < j->kb1; b++) {
                const uint16_t *rec = rec0 + b * BX_REC;
                for (int k = 0; k < 32; k++) {
                    const int at = (k / 2) * 32 + r * 2 + (k & 1);
                    const double xh = rs_bf16_to_f32(ah[b * 32 + k]), xl = rs_bf16_to_f32(al[b * 32 + k]);
                    const double wh = rs_bf16_to_f32(rec[at]), wl = rs_bf16_to_f32(rec[512 + at]);
                    s += xh * wh + xh * wl + xl * wh;
                }
            }
            yr[c] = j->accumulate ? yr[c] + (float)s : (float)s;
        }
    }
}

#if defined(__x86_64__)
#define TAMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

TAMX static void bx_amx_begin(void) {
    _Alignas(64) rs_amx_tilecfg cfg;
    rs_amx_tilecfg_init(&cfg);
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64; /* 16 x 16 f32, 16 x 32 bf16 */
    _tile_loadconfig(&cfg);
}

TAMX static void bx_amx_end(void) { _tile_release(); }

/* tiles: 0, 1 = C of groups g, g + 1; 2, 3 = A hi, lo; 4, 5 = B hi, lo of g; 6, 7 = of g + 1 */
TAMX static void bx_tile_amx(const bx_job *j, int64_t g, bool two, int64_t m) {
    const int64_t rows = j->rows - m < 16 ? j->rows - m : 16;
    float *c = j->y + m * j->ldy + g * RS_BF16X3_ROWS;
    _Alignas(64) float tmp[16][32];
    const bool full = rows == 16;
    if (j->accumulate) {
        if (full) {
            _tile_loadd(0, c, j->ldy * 4);
            if (two) _tile_loadd(1, c + 16, j->ldy * 4);
        } else {
            memset(tmp, 0, sizeof tmp);
            for (int i = 0; i < rows; i++) memcpy(tmp[i], c + i * j->ldy, (two ? 32 : 16) * sizeof(float));
            _tile_loadd(0, tmp[0], sizeof tmp[0]);
            if (two) _tile_loadd(1, tmp[0] + 16, sizeof tmp[0]);
        }
    } else {
        _tile_zero(0);
        if (two) _tile_zero(1);
    }
    const uint16_t *ah = j->ah + m * j->K, *al = j->al + m * j->K;
    const uint16_t *b0 = j->wp + (size_t)g * (size_t)j->nkb * BX_REC, *b1 = b0 + (size_t)j->nkb * BX_REC;
    const size_t lda = (size_t)j->K * sizeof(uint16_t);
    if (two) {
        for (int64_t b = j->kb0; b < j->kb1; b++) {
            _tile_loadd(2, ah + b * 32, lda);
            _tile_loadd(3, al + b * 32, lda);
            _tile_loadd(4, b0 + b * BX_REC, 64);
            _tile_loadd(5, b0 + b * BX_REC + 512, 64);
            _tile_loadd(6, b1 + b * BX_REC, 64);
            _tile_loadd(7, b1 + b * BX_REC + 512, 64);
            _tile_dpbf16ps(0, 2, 4);
            _tile_dpbf16ps(1, 2, 6);
            _tile_dpbf16ps(0, 2, 5);
            _tile_dpbf16ps(1, 2, 7);
            _tile_dpbf16ps(0, 3, 4);
            _tile_dpbf16ps(1, 3, 6);
        }
    } else {
        for (int64_t b = j->kb0; b < j->kb1; b++) {
            _tile_loadd(2, ah + b * 32, lda);
            _tile_loadd(3, al + b * 32, lda);
            _tile_loadd(4, b0 + b * BX_REC, 64);
            _tile_loadd(5, b0 + b * BX_REC + 512, 64);
            _tile_dpbf16ps(0, 2, 4);
            _tile_dpbf16ps(0, 2, 5);
            _tile_dpbf16ps(0, 3, 4);
        }
    }
    if (full) {
        _tile_stored(0, c, j->ldy * 4);
        if (two) _tile_stored(1, c + 16, j->ldy * 4);
    } else {
        _tile_stored(0, tmp[0], sizeof tmp[0]);
        if (two) _tile_stored(1, tmp[0] + 16, sizeof tmp[0]);
        for (int i = 0; i < rows; i++) memcpy(c + i * j->ldy, tmp[i], (two ? 32 : 16) * sizeof(float));
    }
}

/* n values (n % 16 == 0) split into hi / lo */
TAMX static void bx_split_avx512(const float *x, uint16_t *hi, uint16_t *lo, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
        const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        __m512 r = _mm512_sub_ps(v, hf);
        r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, r, _CMP_ORD_Q), r); /* inf - inf: 0 */
        _mm256_storeu_si256((__m256i *)(hi + i), h);
        _mm256_storeu_si256((__m256i *)(lo + i), (__m256i)_mm512_cvtneps_pbh(r));
    }
}
#endif

bool rs_bf16x3_native(void) {
#if defined(__x86_64__)
    const rs_cpu_features *f = rs_cpu();
    return f->amx_bf16 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512_bf16 && rs_cpu_amx_ready();
#else
    return false;
#endif
}

static void bx_worker(void *ctx, int ith, int nth) {
    bx_job *j = ctx;
    (void)ith;
    (void)nth;
    int64_t g0, g1;
#if defined(__x86_64__)
    bool on = false; /* the tile configuration is per thread: set at the first chunk */
#endif
    while (rs_chunks_next(&j->groups, &g0, &g1)) {
        for (int64_t g = g0; g < g1; g += 2) {
            const bool two = g + 1 < g1;
            for (int64_t m = 0; m < j->rows; m += 16) {
#if defined(__x86_64__)
                if (j->amx) {
                    if (!on) bx_amx_begin();
                    on = true;
                    bx_tile_amx(j, g, two, m);
                    continue;
                }
#endif
                bx_tile_c(j, g, two, m);
            }
        }
    }
#if defined(__x86_64__)
    if (on) bx_amx_end();
#endif
}

void rs_matmul_bf16x3_isa(bool native, const void *Wp, const float *x, float *y, int64_t M,
                          int64_t N, int64_t K, rs_pool *pool) {
    if (M <= 0 || !Wp || !x || !y || !rs_bf16x3_bytes(N, K)) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_bf16x3: bad arguments");
        return;
    }
    const bool amx = native && rs_bf16x3_native();
    /* balanced M chunks of whole tiles: 257 rows are one chunk, 400 two of 208 and 192 (a
     * chunk of a few rows would read all of W again for them) */
    const int64_t n_mc = (M + BX_MC - 1) / BX_MC;
    const int64_t mc_max = ((M + n_mc - 1) / n_mc + 15) / 16 * 16;
    uint16_t *ws = rs_tls_scratch(RS_TLS_BF16X3, sizeof(uint16_t) * 2 * (size_t)mc_max * (size_t)K), *heap = NULL;
    if (!ws) {
        /* no per-thread buffer (out of memory or no key): 16 rows at a time on the heap */
        heap = malloc((size_t)2 * 16 * (size_t)K * sizeof(uint16_t));
        if (!heap) {
            rs_error(RSMOE_ERR_NOMEM, "rs_matmul_bf16x3: out of memory");
            return;
        }
    }
    const int64_t mstep = ws ? mc_max : 16;
    uint16_t *ah = ws ? ws : heap, *al = ah + (size_t)mstep * (size_t)K;
    bx_job j = {.wp = Wp, .nkb = K / 32, .K = K, .ldy = N, .ah = ah, .al = al, .amx = amx};
    for (int64_t m0 = 0; m0 < M; m0 += mstep) {
        const int64_t rows = M - m0 < mstep ? M - m0 : mstep, padded = (rows + 15) / 16 * 16;
#if defined(__x86_64__)
        if (amx) bx_split_avx512(x + m0 * K, ah, al, rows * K);
        else
#endif
            for (int64_t i = 0; i < rows * K; i++) rs_bf16x3_split(x[m0 * K + i], &ah[i], &al[i]);
        memset(ah + rows * K, 0, (size_t)(padded - rows) * (size_t)K * sizeof(uint16_t));
        memset(al + rows * K, 0, (size_t)(padded - rows) * (size_t)K * sizeof(uint16_t));
        j.y = y + m0 * N;
        j.rows = rows;
        for (int64_t kb0 = 0; kb0 < j.nkb; kb0 += BX_KCB) {
            j.kb0 = kb0;
            j.kb1 = kb0 + BX_KCB < j.nkb ? kb0 + BX_KCB : j.nkb;
            j.accumulate = kb0 > 0;
            rs_chunks_init(&j.groups, N / RS_BF16X3_ROWS, 2, rs_pool_size(pool));
            rs_pool_run(pool, bx_worker, &j);
        }
    }
    free(heap);
}

void rs_matmul_bf16x3(const void *Wp, const float *x, float *y, int64_t M, int64_t N, int64_t K,
                      rs_pool *pool) {
    rs_matmul_bf16x3_isa(true, Wp, x, y, M, N, K, pool);
}
