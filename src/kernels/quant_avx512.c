/* quant_avx512.c - AVX-512 (F/BW/VL) variants of the weight kernels, plus the VNNI q8_0 and
 * the BF16 (dpbf16) kernels. Compiled for their targets by function attributes, so they
 * exist in any x86-64 build; quant.c picks them at run time (rs_cpu()).
 * q8_0: two 32-value blocks per zmm; dot(w, x) = dpbusd(|w|, x * sign(w)) (or maddubs +
 * madd without VNNI), exact in int32, then scaled by d_w * d_x in float.
 * With RS_QUANT_SIMDE defined (tests only) the same code is built on SIMDe's portable
 * emulation of the AVX-512 intrinsics under emu_-prefixed names, so machines without
 * AVX-512 can still check the logic. */
#define RS_QUANT_INTERNAL
#include "kernels/quant.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)

#ifdef RS_QUANT_SIMDE
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define T512
#define T512V
#define T512B
#define TI static inline
#define RS_Q512(name) emu_##name
/* intrinsics this SIMDe release lacks: element-wise twins */
static inline __m512 emu_cvtepi32_ps(__m512i v) {
    int32_t a[16]; float f[16];
    memcpy(a, &v, 64);
    for (int i = 0; i < 16; i++) f[i] = (float)a[i];
    __m512 r; memcpy(&r, f, 64); return r;
}
static inline __m512 emu_cvtph_ps(__m256i h) {
    uint16_t a[16]; float f[16];
    memcpy(a, &h, 32);
    for (int i = 0; i < 16; i++) f[i] = rs_f16_to_f32(a[i]);
    __m512 r; memcpy(&r, f, 64); return r;
}
static inline __m512i emu_cvtepu16_epi32(__m256i h) {
    uint16_t a[16]; uint32_t u[16];
    memcpy(a, &h, 32);
    for (int i = 0; i < 16; i++) u[i] = a[i];
    __m512i r; memcpy(&r, u, 64); return r;
}
static inline float emu_reduce_add_ps(__m512 v) {
    float f[16], s = 0;
    memcpy(f, &v, 64);
    for (int i = 0; i < 16; i++) s += f[i];
    return s;
}
#undef _mm512_madd_epi16 /* this SIMDe release's alias takes the wrong arguments */
#define _mm512_madd_epi16 simde_mm512_madd_epi16
#undef _mm512_cvtepi32_ps
#undef _mm512_cvtph_ps
#undef _mm512_cvtepu16_epi32
#undef _mm512_reduce_add_ps
#define _mm512_cvtepi32_ps emu_cvtepi32_ps
#define _mm512_cvtph_ps emu_cvtph_ps
#define _mm512_cvtepu16_epi32 emu_cvtepu16_epi32
#define _mm512_reduce_add_ps emu_reduce_add_ps
#define F16_TO_F32(h) rs_f16_to_f32(h)
#else
#include <immintrin.h>
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define T512V __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c,avx512vnni")))
#define T512B __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c,avx512bf16")))
#define TI static inline __attribute__((always_inline))
#define RS_Q512(name) name
#define F16_TO_F32(h) _cvtsh_ss(h)
#endif

T512 TI void put(const rs_qk_args *a, int m, int64_t n, float v) {
    float *p = a->y + m * a->ldy + n;
    *p = a->accumulate ? *p + v : v;
}

/* ---------------------------------------------------------------- q8_0 x q8_0 */
/* two consecutive blocks' values in one zmm (the second zero when two == 0) */
T512 TI __m512i load_pair(const rs_block_q8_0 *b, const int two) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)b[0].qs);
    const __m256i hi = two ? _mm256_loadu_si256((const __m256i *)b[1].qs) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Q8_ROWS(name, target, vnni): the kernel body for MR rows, instantiated twice so that the
 * non-VNNI variant never carries the VNNI target. */
#define Q8_STEP(TGTATTR, VNNI)                                                                   \
    TGTATTR TI void q8_step_##VNNI(const rs_qk_args *a, const int MR, const rs_block_q8_0 *wb,   \
                                   int64_t p, const int two, __m512 *acc) {                      \
        const __m512i wv = load_pair(wb, two);                                                   \
        const __m512i wa = _mm512_abs_epi8(wv);                                                  \
        const uint64_t neg = _mm512_movepi8_mask(wv);                                            \
        const float d0 = F16_TO_F32(wb[0].d), d1 = two ? F16_TO_F32(wb[1].d) : 0.0f;             \
        const __m512 dw = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));  \
        for (int m = 0; m < MR; m++) {                                                           \
            const __m512i xv = _mm512_loadu_si512(a->xqs + m * a->xqs_ld + 64 * p);              \
            const __m512i xs = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);        \
            __m512i dot;                                                                         \
            if (VNNI) dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wa, xs);                 \
            else dot = _mm512_madd_epi16(_mm512_maddubs_epi16(wa, xs), _mm512_set1_epi16(1));    \
            const __m512 sc = _mm512_mul_ps(dw, _mm512_loadu_ps(a->xd16 + m * a->xd16_ld + 16 * p)); \
            acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sc, acc[m]);                       \
        }                                                                                        \
    }                                                                                            \
    TGTATTR TI void q8_rows_##VNNI(const rs_qk_args *a, const int MR, int64_t n0, int64_t n1) {  \
        const int64_t nb = a->kc / RS_QK8_0, np = nb / 2;                                        \
        for (int64_t n = n0; n < n1; n++) {                                                      \
            const rs_block_q8_0 *w = (const rs_block_q8_0 *)(a->W + (size_t)n * a->wrow);        \
            __m512 acc[RS_QK_MR];                                                                \
            for (int m = 0; m < MR; m++) acc[m] = _mm512_setzero_ps();                           \
            for (int64_t p = 0; p < np; p++) {                                                   \
                _mm_prefetch((const char *)(w + 2 * p) + 1536, _MM_HINT_T0);                     \
                q8_step_##VNNI(a, MR, w + 2 * p, p, 1, acc);                                     \
            }                                                                                    \
            if (nb & 1) q8_step_##VNNI(a, MR, w + 2 * np, np, 0, acc);                           \
            for (int m = 0; m < MR; m++) put(a, m, n, _mm512_reduce_add_ps(acc[m]));             \
        }                                                                                        \
    }

Q8_STEP(T512, 0)
Q8_STEP(T512V, 1)

T512 void RS_Q512(rs_qk_q8_avx512)(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: q8_rows_0(a, 1, n0, n1); break;
    case 2: q8_rows_0(a, 2, n0, n1); break;
    case 3: q8_rows_0(a, 3, n0, n1); break;
    default: q8_rows_0(a, 4, n0, n1); break;
    }
}

/* VNNI, four weight rows at once, for two to four activation rows (batched decode of several
 * experts / sequences). The activations enter dpbusd as unsigned bytes x + 128 (one xor per
 * block pair, shared by the four rows), and dpbusd's accumulator starts at -128 * sum(w) (one dpbusd per weight block,
 * shared by every activation row), so each (activation row, weight row, block pair) costs one
 * dpbusd + convert + scale + FMA, without the per-pair sign fix-up of q8_step; still exact in
 * int32. Each row keeps its own float accumulator, reduced once at the end. The four rows are
 * contiguous, so the group is one stream and is prefetched linearly, RS_QUANT512_PF_LIN bytes
 * ahead (as quant_avx2.c's q8_group4). Measured on a 2-core AMD EPYC with AVX-512 VNNI, one
 * thread, 71 MB of weights (K = 4096), best of 7, two runs: three activation rows 6.5-6.9 ms
 * against 7.3-7.5 ms for q8_rows_1, four rows 7.0-7.6 against 8.0-8.1; one row is faster on
 * q8_rows_1 (4.2 against 4.9-5.2 ms), which therefore keeps it. */
#ifndef RS_QUANT512_PF_LIN
#define RS_QUANT512_PF_LIN 8192
#endif
T512V TI void q8v_group4(const rs_qk_args *a, const int MR, int64_t n, int64_t nb) {
    const int64_t np = (nb + 1) / 2;
    const rs_block_q8_0 *w[4];
    w[0] = (const rs_block_q8_0 *)(a->W + (size_t)n * a->wrow);
    for (int r = 1; r < 4; r++) w[r] = (const rs_block_q8_0 *)((const uint8_t *)w[r - 1] + a->wrow);
    const bool whole = (size_t)nb * sizeof(rs_block_q8_0) == a->wrow;
    const char *pf = (const char *)w[0] + RS_QUANT512_PF_LIN;
    const size_t pf_step = (whole ? 4 : 1) * 2 * sizeof(rs_block_q8_0);
    const __m512i bias = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    __m512 acc[RS_QK_MR][4];
    for (int m = 0; m < MR; m++)
        for (int r = 0; r < 4; r++) acc[m][r] = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++, pf += pf_step) {
        for (size_t o = 0; o < pf_step; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
        const int two = 2 * p + 1 < nb;
        __m512i wv[4], negc[4];
        __m512 dw[4];
        for (int r = 0; r < 4; r++) {
            const rs_block_q8_0 *b = w[r] + 2 * p;
            wv[r] = load_pair(b, two);
            negc[r] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias, wv[r]));
            const float d0 = F16_TO_F32(b[0].d), d1 = two ? F16_TO_F32(b[1].d) : 0.0f;
            dw[r] = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
        }
        for (int m = 0; m < MR; m++) {
            const __m512i xu = _mm512_xor_si512(_mm512_loadu_si512(a->xqs + m * a->xqs_ld + 64 * p), bias);
            const __m512 xd = _mm512_loadu_ps(a->xd16 + m * a->xd16_ld + 16 * p);
            for (int r = 0; r < 4; r++) {
                const __m512i dot = _mm512_dpbusd_epi32(negc[r], xu, wv[r]);
                acc[m][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw[r], xd), acc[m][r]);
            }
        }
    }
    for (int m = 0; m < MR; m++)
        for (int r = 0; r < 4; r++) put(a, m, n + r, _mm512_reduce_add_ps(acc[m][r]));
}

T512V TI void q8v_rows(const rs_qk_args *a, const int MR, int64_t n0, int64_t n1) {
    const int64_t nb = a->kc / RS_QK8_0;
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) q8v_group4(a, MR, n, nb);
    if (n < n1) q8_rows_1(a, MR, n, n1);
}

T512V void RS_Q512(rs_qk_q8_avx512vnni)(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: q8_rows_1(a, 1, n0, n1); break; /* one row streams faster alone (see above) */
    case 2: q8v_rows(a, 2, n0, n1); break;
    case 3: q8v_rows(a, 3, n0, n1); break;
    default: q8v_rows(a, 4, n0, n1); break;
    }
}

/* ---------------------------------------------------------------- f16 / bf16 x f32 */
/* weight values k..k+15 as floats; kind 0 = f16, 1 = bf16, 2 = f32 */
T512 TI __m512 widen16(const uint8_t *w, int64_t k, const int kind) {
    if (kind == 2) return _mm512_loadu_ps((const float *)w + k);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k));
    if (kind == 1) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

T512 TI float wat(const uint8_t *w, int64_t k, const int kind) {
    if (kind == 2) return ((const float *)w)[k];
    if (kind == 1) return rs_bf16_to_f32(((const uint16_t *)w)[k]);
    return F16_TO_F32(((const uint16_t *)w)[k]);
}

T512 TI void half_tile(const rs_qk_args *a, const int MR, const int NR, int64_t n,
                       const int kind) {
    /* NR (1 or 2) weight rows against MR activation rows, 64 values a step: each weight
     * vector is loaded once for all MR rows, each activation vector once for both weight
     * rows; NACC independent accumulator chains per (row, weight row) hide FMA latency */
    const int NACC = MR * NR == 1 ? 4 : MR * NR <= 6 ? 2 : 1;
    const int64_t kc = a->kc;
    const uint8_t *w0 = a->W + (size_t)n * a->wrow, *w1 = NR == 2 ? w0 + a->wrow : w0;
    __m512 acc[RS_QK_MR][2][4];
    for (int m = 0; m < MR; m++)
        for (int r = 0; r < NR; r++)
            for (int j = 0; j < NACC; j++) acc[m][r][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 64 <= kc; k += 64)
        for (int j = 0; j < 4; j++) {
            const __m512 wa = widen16(w0, k + 16 * j, kind);
            const __m512 wb = NR == 2 ? widen16(w1, k + 16 * j, kind) : wa;
            for (int m = 0; m < MR; m++) {
                const __m512 xv = _mm512_loadu_ps(a->x + m * a->ldx + k + 16 * j);
                acc[m][0][j % NACC] = _mm512_fmadd_ps(wa, xv, acc[m][0][j % NACC]);
                if (NR == 2) acc[m][1][j % NACC] = _mm512_fmadd_ps(wb, xv, acc[m][1][j % NACC]);
            }
        }
    for (; k + 16 <= kc; k += 16) {
        const __m512 wa = widen16(w0, k, kind);
        const __m512 wb = NR == 2 ? widen16(w1, k, kind) : wa;
        for (int m = 0; m < MR; m++) {
            const __m512 xv = _mm512_loadu_ps(a->x + m * a->ldx + k);
            acc[m][0][0] = _mm512_fmadd_ps(wa, xv, acc[m][0][0]);
            if (NR == 2) acc[m][1][0] = _mm512_fmadd_ps(wb, xv, acc[m][1][0]);
        }
    }
    float tail[RS_QK_MR][2] = {{0}};
    for (; k < kc; k++) {
        const float wfa = wat(w0, k, kind), wfb = NR == 2 ? wat(w1, k, kind) : 0.0f;
        for (int m = 0; m < MR; m++) {
            tail[m][0] += wfa * a->x[m * a->ldx + k];
            tail[m][1] += wfb * a->x[m * a->ldx + k];
        }
    }
    for (int m = 0; m < MR; m++)
        for (int r = 0; r < NR; r++) {
            __m512 s = acc[m][r][0];
            for (int j = 1; j < NACC; j++) s = _mm512_add_ps(s, acc[m][r][j]);
            put(a, m, n + r, _mm512_reduce_add_ps(s) + tail[m][r]);
        }
}

T512 TI void half_rows(const rs_qk_args *a, const int MR, int64_t n0, int64_t n1, const int kind) {
    int64_t n = n0;
    for (; n + 2 <= n1; n += 2) half_tile(a, MR, 2, n, kind);
    if (n < n1) half_tile(a, MR, 1, n, kind);
}

T512 void RS_Q512(rs_qk_f32_avx512)(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: half_rows(a, 1, n0, n1, 2); break;
    case 2: half_rows(a, 2, n0, n1, 2); break;
    case 3: half_rows(a, 3, n0, n1, 2); break;
    default: half_rows(a, 4, n0, n1, 2); break;
    }
}

T512 void RS_Q512(rs_qk_f16_avx512)(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: half_rows(a, 1, n0, n1, 0); break;
    case 2: half_rows(a, 2, n0, n1, 0); break;
    case 3: half_rows(a, 3, n0, n1, 0); break;
    default: half_rows(a, 4, n0, n1, 0); break;
    }
}

T512 void RS_Q512(rs_qk_bf16_avx512)(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: half_rows(a, 1, n0, n1, 1); break;
    case 2: half_rows(a, 2, n0, n1, 1); break;
    case 3: half_rows(a, 3, n0, n1, 1); break;
    default: half_rows(a, 4, n0, n1, 1); break;
    }
}

/* ---------------------------------------------------------------- bf16 x bf16 (dpbf16) */
T512B TI __m512bh load_bh(const uint16_t *p) {
    __m512bh v;
    memcpy(&v, p, 64);
    return v;
}

T512B TI void bf16dot_rows(const rs_qk_args *a, const int MR, int64_t n0, int64_t n1) {
    const int64_t kc = a->kc;
    for (int64_t n = n0; n < n1; n++) {
        const uint16_t *w = (const uint16_t *)(a->W + (size_t)n * a->wrow);
        __m512 acc[RS_QK_MR][2];
        for (int m = 0; m < MR; m++) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 64 <= kc; k += 64) {
            const __m512bh w0 = load_bh(w + k), w1 = load_bh(w + k + 32);
            for (int m = 0; m < MR; m++) {
                const uint16_t *xr = a->xb + m * a->xb_ld + k;
                acc[m][0] = _mm512_dpbf16_ps(acc[m][0], w0, load_bh(xr));
                acc[m][1] = _mm512_dpbf16_ps(acc[m][1], w1, load_bh(xr + 32));
            }
        }
        for (; k + 32 <= kc; k += 32) {
            const __m512bh w0 = load_bh(w + k);
            for (int m = 0; m < MR; m++)
                acc[m][0] = _mm512_dpbf16_ps(acc[m][0], w0, load_bh(a->xb + m * a->xb_ld + k));
        }
        float tail[RS_QK_MR] = {0};
        for (; k < kc; k++) {
            const float wf = rs_bf16_to_f32(w[k]);
            for (int m = 0; m < MR; m++) tail[m] += wf * rs_bf16_to_f32(a->xb[m * a->xb_ld + k]);
        }
        for (int m = 0; m < MR; m++)
            put(a, m, n, _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1])) + tail[m]);
    }
}

T512B void RS_Q512(rs_qk_bf16_avx512bf16)(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: bf16dot_rows(a, 1, n0, n1); break;
    case 2: bf16dot_rows(a, 2, n0, n1); break;
    case 3: bf16dot_rows(a, 3, n0, n1); break;
    default: bf16dot_rows(a, 4, n0, n1); break;
    }
}

#endif
