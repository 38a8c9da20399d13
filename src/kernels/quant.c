/* quant.c - q8_0 / f16 / bf16 row conversions, the weight-matmul driver (activation
 * preparation, tiling, threading), run-time ISA dispatch, the plain C kernels and the
 * reference twin. The SIMD kernels live in quant_avx2.c and quant_avx512.c. */
#define RS_QUANT_INTERNAL
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

#if __has_include("kernels/gemm.c")
#include "kernels/gemm.h"
#define RS_QUANT_HAVE_SGEMM 1
#endif

#if defined(__x86_64__) || defined(__i386__)
#define RS_QUANT_X86 1
#endif

/* ---------------------------------------------------------------- scalar helpers */
static inline uint16_t f32_to_bf16(float f) { /* same rule as core's rs_f32_to_bf16 */
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static inline int8_t q8_round(float v) { /* roundf, clamped; NaN -> 0 */
    float r = roundf(v);
    if (!(r == r)) return 0;
    if (r > 127.0f) return 127;
    if (r < -128.0f) return -128;
    return (int8_t)r;
}

/* ---------------------------------------------------------------- plain C variant */
static void quant_q8_c(const float *x, rs_block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / RS_QK8_0; b++) {
        const float *xb = x + b * RS_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < RS_QK8_0; j++) {
            float v = fabsf(xb[j]);
            if (v > amax) amax = v;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = rs_f32_to_f16(d);
        for (int j = 0; j < RS_QK8_0; j++) y[b].qs[j] = q8_round(xb[j] * id);
    }
}

static void qk_q8_c(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    const int64_t nb = a->kc / RS_QK8_0;
    for (int64_t n = n0; n < n1; n++) {
        const rs_block_q8_0 *w = (const rs_block_q8_0 *)(a->W + (size_t)n * a->wrow);
        float acc[RS_QK_MR] = {0};
        for (int64_t b = 0; b < nb; b++) {
            const float dw = rs_f16_to_f32(w[b].d);
            for (int m = 0; m < mr; m++) {
                const rs_block_q8_0 *xb = a->xq + m * a->xq_ld + b;
                int32_t s = 0;
                for (int j = 0; j < RS_QK8_0; j++) s += (int32_t)w[b].qs[j] * (int32_t)xb->qs[j];
                acc[m] += (dw * a->xd[m * a->xq_ld + b]) * (float)s;
            }
        }
        for (int m = 0; m < mr; m++) {
            float *yp = a->y + m * a->ldy + n;
            *yp = a->accumulate ? *yp + acc[m] : acc[m];
        }
    }
}

#define C_CHUNK 64
static void qk_f32_c(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
        const float *w = (const float *)(a->W + (size_t)n * a->wrow);
        for (int m = 0; m < mr; m++) {
            const float *xr = a->x + m * a->ldx;
            double s = 0.0; /* the plain fallback: accuracy over speed */
            for (int64_t k = 0; k < a->kc; k++) s += (double)w[k] * (double)xr[k];
            float *yp = a->y + m * a->ldy + n;
            *yp = a->accumulate ? *yp + (float)s : (float)s;
        }
    }
}

static void qk_half_c(const rs_qk_args *a, int mr, int64_t n0, int64_t n1, bool bf16) {
    float wf[C_CHUNK];
    for (int64_t n = n0; n < n1; n++) {
        const uint16_t *w = (const uint16_t *)(a->W + (size_t)n * a->wrow);
        float acc[RS_QK_MR] = {0};
        for (int64_t k0 = 0; k0 < a->kc; k0 += C_CHUNK) {
            int64_t kn = a->kc - k0 < C_CHUNK ? a->kc - k0 : C_CHUNK;
            for (int64_t k = 0; k < kn; k++)
                wf[k] = bf16 ? rs_bf16_to_f32(w[k0 + k]) : rs_f16_to_f32(w[k0 + k]);
            for (int m = 0; m < mr; m++) {
                const float *xr = a->x + m * a->ldx + k0;
                float s = 0.0f;
                for (int64_t k = 0; k < kn; k++) s += wf[k] * xr[k];
                acc[m] += s;
            }
        }
        for (int m = 0; m < mr; m++) {
            float *yp = a->y + m * a->ldy + n;
            *yp = a->accumulate ? *yp + acc[m] : acc[m];
        }
    }
}
static void qk_f16_c(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    qk_half_c(a, mr, n0, n1, false);
}
static void qk_bf16_c(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    qk_half_c(a, mr, n0, n1, true);
}

/* ---------------------------------------------------------------- dispatch */
typedef rs_quant_kernels quant_vt;

static int g_default_isa; /* RS_QUANT_AUTO = best */

static bool have_avx2(const rs_cpu_features *f) { return f->avx2 && f->fma && f->f16c; }
static bool have_avx512(const rs_cpu_features *f) {
    return have_avx2(f) && f->avx512f && f->avx512bw && f->avx512vl;
}

bool rs_quant_isa_available(rs_quant_isa isa) {
    const rs_cpu_features *f = rs_cpu();
    switch (isa) {
    case RS_QUANT_AUTO: case RS_QUANT_C: return true;
#ifdef RS_QUANT_X86
    case RS_QUANT_AVX2: return have_avx2(f);
    case RS_QUANT_AVX512: return have_avx512(f);
    case RS_QUANT_AVX512_EXT: return have_avx512(f) && (f->avx512_vnni || f->avx512_bf16);
#else
    default: (void)f; return false;
#endif
    }
    return false;
}

const char *rs_quant_isa_name(rs_quant_isa isa) {
    switch (isa) {
    case RS_QUANT_AUTO: return "auto";
    case RS_QUANT_C: return "c";
    case RS_QUANT_AVX2: return "avx2";
    case RS_QUANT_AVX512: return "avx512";
    case RS_QUANT_AVX512_EXT: return "avx512-vnni/bf16";
    }
    return "unknown";
}

rs_quant_isa rs_quant_isa_best(void) {
    for (int i = RS_QUANT_AVX512_EXT; i > RS_QUANT_C; i--)
        if (rs_quant_isa_available((rs_quant_isa)i)) return (rs_quant_isa)i;
    return RS_QUANT_C;
}

bool rs_quant_set_isa(rs_quant_isa isa) {
    if ((int)isa < RS_QUANT_AUTO || (int)isa > RS_QUANT_AVX512_EXT || !rs_quant_isa_available(isa))
        return false;
    __atomic_store_n(&g_default_isa, (int)isa, __ATOMIC_RELAXED);
    return true;
}

static rs_quant_isa resolve(rs_quant_isa isa) {
    if (isa == RS_QUANT_AUTO) isa = (rs_quant_isa)__atomic_load_n(&g_default_isa, __ATOMIC_RELAXED);
    if ((int)isa <= RS_QUANT_AUTO || (int)isa > RS_QUANT_AVX512_EXT || !rs_quant_isa_available(isa))
        isa = rs_quant_isa_best();
    return isa;
}

void rs_quant_get_kernels(rs_quant_isa isa, quant_vt *vt) {
    memset(vt, 0, sizeof *vt);
    vt->isa = RS_QUANT_C;
    vt->q8 = qk_q8_c;
    vt->f16 = qk_f16_c;
    vt->bf16 = qk_bf16_c;
    vt->f32 = qk_f32_c;
    vt->quant = quant_q8_c;
#ifdef RS_QUANT_X86
    isa = resolve(isa);
    vt->isa = isa;
    if (isa >= RS_QUANT_AVX2) {
        vt->q8 = rs_qk_q8_avx2;
        vt->f16 = rs_qk_f16_avx2;
        vt->bf16 = rs_qk_bf16_avx2;
        vt->f32 = rs_qk_f32_avx2;
        vt->quant = rs_quantize_q8_avx2;
    }
    if (isa >= RS_QUANT_AVX512) {
        vt->q8 = rs_qk_q8_avx512;
        vt->f16 = rs_qk_f16_avx512;
        vt->bf16 = rs_qk_bf16_avx512;
        vt->f32 = rs_qk_f32_avx512;
        vt->want_xd16 = true;
    }
    if (isa == RS_QUANT_AVX512_EXT) {
        const rs_cpu_features *f = rs_cpu();
        if (f->avx512_vnni) vt->q8 = rs_qk_q8_avx512vnni;
        if (f->avx512_bf16) {
            vt->bf16 = rs_qk_bf16_avx512bf16;
            vt->bf16_acts = true;
        }
    }
#else
    (void)isa;
#endif
}

/* ---------------------------------------------------------------- row conversions */
void rs_quantize_row_q8_0_isa(rs_quant_isa isa, const float *x, rs_block_q8_0 *y, int64_t n) {
    if (n <= 0) return;
    if (n % RS_QK8_0) {
        rs_error(RSMOE_ERR_INVALID_ARG, "q8_0 row of %lld values: not a multiple of 32",
                 (long long)n);
        return;
    }
    quant_vt vt;
    rs_quant_get_kernels(isa, &vt);
    vt.quant(x, y, n);
}

void rs_quantize_row_q8_0(const float *x, rs_block_q8_0 *y, int64_t n) {
    rs_quantize_row_q8_0_isa(RS_QUANT_AUTO, x, y, n);
}

void rs_dequantize_row_q8_0(const rs_block_q8_0 *x, float *y, int64_t n) {
    if (n <= 0) return;
    if (n % RS_QK8_0) {
        rs_error(RSMOE_ERR_INVALID_ARG, "q8_0 row of %lld values: not a multiple of 32",
                 (long long)n);
        return;
    }
    for (int64_t b = 0; b < n / RS_QK8_0; b++) {
        const float d = rs_f16_to_f32(x[b].d);
        for (int j = 0; j < RS_QK8_0; j++) y[b * RS_QK8_0 + j] = d * (float)x[b].qs[j];
    }
}

void rs_convert_row(rs_dtype to, const float *x, void *y, int64_t n) {
    if (n <= 0) return;
    switch (to) {
    case RS_F32: memmove(y, x, (size_t)n * sizeof(float)); return;
    case RS_F16: {
        uint16_t *h = y;
#ifdef RS_QUANT_X86
        if (have_avx2(rs_cpu())) { rs_f32_to_f16_row_avx2(x, h, n); return; }
#endif
        for (int64_t i = 0; i < n; i++) h[i] = rs_f32_to_f16(x[i]);
        return;
    }
    case RS_BF16: {
        uint16_t *h = y;
        for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(x[i]);
        return;
    }
    case RS_Q8_0: rs_quantize_row_q8_0(x, y, n); return;
    }
    rs_error(RSMOE_ERR_INVALID_ARG, "rs_convert_row: unknown dtype %d", (int)to);
}

void rs_row_to_f32(rs_dtype from, const void *x, float *y, int64_t n) {
    if (n <= 0) return;
    switch (from) {
    case RS_F32: memmove(y, x, (size_t)n * sizeof(float)); return;
    case RS_F16: {
        const uint16_t *h = x;
#ifdef RS_QUANT_X86
        if (have_avx2(rs_cpu())) { rs_f16_to_f32_row_avx2(h, y, n); return; }
#endif
        for (int64_t i = 0; i < n; i++) y[i] = rs_f16_to_f32(h[i]);
        return;
    }
    case RS_BF16: {
        const uint16_t *h = x;
        for (int64_t i = 0; i < n; i++) y[i] = rs_bf16_to_f32(h[i]);
        return;
    }
    case RS_Q8_0: rs_dequantize_row_q8_0(x, y, n); return;
    }
    rs_error(RSMOE_ERR_INVALID_ARG, "rs_row_to_f32: unknown dtype %d", (int)from);
}

/* ---------------------------------------------------------------- matmul driver */
#define NB_ROWS 16 /* weight rows per L1/L2 block when M spans several row groups */

typedef struct {
    rs_qk_fn fn;
    rs_qk_args a;
    int64_t M, N;
    rs_chunks rows; /* weight rows, taken dynamically by the threads */
} mm_job;

static void mm_worker(void *ctx, int ith, int nth) {
    mm_job *j = ctx;
    (void)ith;
    (void)nth;
    int64_t n0, n1;
    while (rs_chunks_next(&j->rows, &n0, &n1))
    for (int64_t nb = n0; nb < n1; nb += NB_ROWS) {
        const int64_t ne = nb + NB_ROWS < n1 ? nb + NB_ROWS : n1;
        for (int64_t m = 0; m < j->M; m += RS_QK_MR) {
            rs_qk_args a = j->a;
            if (a.x) a.x += m * a.ldx;
            if (a.xq) a.xq += m * a.xq_ld;
            if (a.xd) a.xd += m * a.xq_ld;
            if (a.xd16) a.xd16 += m * a.xd16_ld;
            if (a.xqs) a.xqs += m * a.xqs_ld;
            if (a.xb) a.xb += m * a.xb_ld;
            a.y += m * a.ldy;
            const int mr = j->M - m < RS_QK_MR ? (int)(j->M - m) : RS_QK_MR;
            j->fn(&a, mr, nb, ne);
        }
    }
}

#ifndef RS_QUANT_HAVE_SGEMM
static void f32_fallback(const float *W, const float *x, float *y, int64_t M, int64_t N,
                         int64_t K) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += x[m * K + k] * W[n * K + k];
            y[m * N + n] = s;
        }
}
#endif

/* bytes of prepared activations per row of kc values (q8_0 or bf16 path) */
static size_t act_row_bytes(bool q8, bool xd16, int64_t kc) {
    if (!q8) return (size_t)kc * 2;
    const size_t nb = (size_t)kc / RS_QK8_0, np = (nb + 1) / 2;
    return nb * (sizeof(rs_block_q8_0) + sizeof(float)) +
           (xd16 ? np * (16 * sizeof(float) + 64) : 0);
}

static inline size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

void rs_matmul_w_isa(rs_quant_isa isa, rs_dtype wt, const void *W, const float *x, float *y,
                     int64_t M, int64_t N, int64_t K, rs_pool *pool) {
    if (M <= 0 || N <= 0) return;
    if (!y) { rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_w: NULL output"); return; }
    if (K <= 0) { memset(y, 0, (size_t)M * (size_t)N * sizeof(float)); return; }
    if (!W || !x) { rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_w: NULL weight or input"); return; }
    if (!rs_dtype_valid((int)wt)) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_w: unknown weight dtype %d", (int)wt);
        return;
    }
    if (wt == RS_Q8_0 && K % RS_QK8_0) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_w: q8_0 weights need K %% 32 == 0 (K = %lld)",
                 (long long)K);
        return;
    }
    if (wt == RS_F32 && M > RS_MATMUL_W_F32_SMALL_M) {
#ifdef RS_QUANT_HAVE_SGEMM
        rs_sgemm(false, true, M, N, K, 1.0f, x, K, W, K, 0.0f, y, N, pool);
#else
        f32_fallback(W, x, y, M, N, K);
#endif
        return;
    }
    quant_vt vt;
    rs_quant_get_kernels(isa, &vt);
    rs_matmul_w_kernels(&vt, wt, W, x, y, M, N, K, pool);
}

void rs_matmul_w_kernels(const rs_quant_kernels *kern, rs_dtype wt, const void *W,
                         const float *x, float *y, int64_t M, int64_t N, int64_t K,
                         rs_pool *pool) {
    if (M <= 0 || N <= 0 || K <= 0 || !W || !x || !y || !rs_dtype_valid((int)wt) ||
        (wt == RS_Q8_0 && K % RS_QK8_0)) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_w_kernels: bad arguments");
        return;
    }
    pool = rs_pool_for_work(pool, (double)M * (double)N * (double)K);
    const quant_vt vt = *kern;
    mm_job job;
    memset(&job, 0, sizeof job);
    job.N = N;
    job.a.wrow = rs_row_bytes(wt, K);
    job.a.ldy = N;
    if (wt == RS_F32 || wt == RS_F16 || (wt == RS_BF16 && !vt.bf16_acts)) {
        /* float activations used as they are: one pass over all of M */
        job.fn = wt == RS_F32 ? vt.f32 : wt == RS_F16 ? vt.f16 : vt.bf16;
        job.M = M;
        job.a.W = W;
        job.a.kc = K;
        job.a.x = x;
        job.a.ldx = K;
        job.a.y = y;
        rs_chunks_init(&job.rows, N, 16, rs_pool_size(pool));
        rs_pool_run(pool, mm_worker, &job);
        return;
    }
    /* q8_0 (activations quantised) or bf16 with dpbf16 (activations rounded to bf16):
     * prepared activations in a stack buffer, M in tiles of mt rows, K in chunks of kc */
    _Alignas(64) unsigned char buf[RS_MATMUL_W_STACK];
    const bool q8 = wt == RS_Q8_0, xd16 = q8 && vt.want_xd16;
    const size_t avail = RS_MATMUL_W_STACK - 4 * 64;
    int64_t kc = K;
    if (act_row_bytes(q8, xd16, kc) > avail) {
        kc = 64;
        while (act_row_bytes(q8, xd16, kc + 64) <= avail) kc += 64;
    }
    int64_t mt = (int64_t)(avail / act_row_bytes(q8, xd16, kc));
    if (mt > M) mt = M;
    const int64_t nbk = kc / RS_QK8_0, npk = (nbk + 1) / 2;
    rs_block_q8_0 *xq = (rs_block_q8_0 *)buf;
    float *xd = (float *)(buf + align64((size_t)mt * (size_t)nbk * sizeof(rs_block_q8_0)));
    float *xdp = (float *)((unsigned char *)xd + align64((size_t)mt * (size_t)nbk * sizeof(float)));
    int8_t *xqs = (int8_t *)((unsigned char *)xdp + align64((size_t)mt * (size_t)npk * 16 * sizeof(float)));
    uint16_t *xb = (uint16_t *)buf;
    job.fn = q8 ? vt.q8 : vt.bf16;
    for (int64_t m0 = 0; m0 < M; m0 += mt) {
        const int64_t mc = M - m0 < mt ? M - m0 : mt;
        for (int64_t k0 = 0; k0 < K; k0 += kc) {
            const int64_t kn = K - k0 < kc ? K - k0 : kc;
            for (int64_t m = 0; m < mc; m++) {
                const float *xr = x + (m0 + m) * K + k0;
                if (q8) {
                    vt.quant(xr, xq + m * nbk, kn);
                    for (int64_t b = 0; b < kn / RS_QK8_0; b++)
                        xd[m * nbk + b] = rs_f16_to_f32(xq[m * nbk + b].d);
                    if (xd16)
                        for (int64_t p = 0; p < (kn / RS_QK8_0 + 1) / 2; p++) {
                            const float d0 = xd[m * nbk + 2 * p];
                            const float d1 = 2 * p + 1 < kn / RS_QK8_0 ? xd[m * nbk + 2 * p + 1] : 0.0f;
                            float *o = xdp + m * npk * 16 + p * 16;
                            for (int l = 0; l < 8; l++) { o[l] = d0; o[8 + l] = d1; }
                            int8_t *qo = xqs + m * npk * 64 + p * 64;
                            memcpy(qo, xq[m * nbk + 2 * p].qs, RS_QK8_0);
                            if (2 * p + 1 < kn / RS_QK8_0) memcpy(qo + 32, xq[m * nbk + 2 * p + 1].qs, RS_QK8_0);
                            else memset(qo + 32, 0, RS_QK8_0);
                        }
                } else {
                    for (int64_t k = 0; k < kn; k++) xb[m * kc + k] = f32_to_bf16(xr[k]);
                }
            }
            job.M = mc;
            job.a.W = (const uint8_t *)W + (q8 ? (size_t)(k0 / RS_QK8_0) * sizeof(rs_block_q8_0)
                                               : (size_t)k0 * 2);
            job.a.kc = kn;
            if (q8) {
                job.a.xq = xq;
                job.a.xd = xd;
                job.a.xq_ld = nbk;
                job.a.xd16 = xd16 ? xdp : NULL;
                job.a.xd16_ld = npk * 16;
                job.a.xqs = xd16 ? xqs : NULL;
                job.a.xqs_ld = npk * 64;
            } else {
                job.a.xb = xb;
                job.a.xb_ld = kc;
            }
            job.a.y = y + m0 * N;
            job.a.accumulate = k0 > 0;
            rs_chunks_init(&job.rows, N, 16, rs_pool_size(pool));
            rs_pool_run(pool, mm_worker, &job);
        }
    }
}

void rs_matmul_w(rs_dtype wt, const void *W, const float *x, float *y, int64_t M, int64_t N,
                 int64_t K, rs_pool *pool) {
    rs_matmul_w_isa(RS_QUANT_AUTO, wt, W, x, y, M, N, K, pool);
}

/* ---------------------------------------------------------------- reference twin */
static double w_at(rs_dtype wt, const void *W, int64_t K, int64_t n, int64_t k) {
    switch (wt) {
    case RS_F32: return ((const float *)W)[n * K + k];
    case RS_F16: return rs_f16_to_f32(((const uint16_t *)W)[n * K + k]);
    case RS_BF16: return rs_bf16_to_f32(((const uint16_t *)W)[n * K + k]);
    case RS_Q8_0: {
        const rs_block_q8_0 *b = (const rs_block_q8_0 *)W + n * (K / RS_QK8_0) + k / RS_QK8_0;
        return (double)rs_f16_to_f32(b->d) * (double)b->qs[k % RS_QK8_0];
    }
    }
    return 0.0;
}

void rs_matmul_w_ref(rs_dtype wt, const void *W, const float *x, float *y, int64_t M,
                     int64_t N, int64_t K) {
    if (M <= 0 || N <= 0 || !y) return;
    if (!rs_dtype_valid((int)wt) || (wt == RS_Q8_0 && K % RS_QK8_0) || (K > 0 && (!W || !x))) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_matmul_w_ref: bad arguments");
        return;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)x[m * K + k] * w_at(wt, W, K, n, k);
            y[m * N + n] = (float)s;
        }
}
