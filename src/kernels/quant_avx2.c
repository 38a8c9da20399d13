/* quant_avx2.c - AVX2 + FMA + F16C variants of the q8_0 / f16 / bf16 weight kernels and of
 * the q8_0 quantiser. Compiled for that target by function attributes, so they exist in
 * any x86-64 build and quant.c picks them at run time (rs_cpu()).
 * Kernel shape: four (then two, then one) weight rows at a time against mr <= 4 activation
 * rows, so each weight block is loaded once for all rows (decode of several sequences /
 * experts at once); q8_group4 explains the four-row pass and its linear prefetch. */
#define RS_QUANT_INTERNAL
#include "kernels/quant.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#ifndef RS_QUANT_PF
#define RS_QUANT_PF 1536 /* q8_0 weight prefetch distance in bytes */
#endif
#define TGTI static inline __attribute__((target("avx2,fma,f16c"), always_inline))

TGTI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TGTI void put(const rs_qk_args *a, int m, int64_t n, float v) {
    float *p = a->y + m * a->ldy + n;
    *p = a->accumulate ? *p + v : v;
}

/* ---------------------------------------------------------------- q8_0 x q8_0 */
TGTI void q8_step(const rs_qk_args *a, const int MR, const rs_block_q8_0 *wb, int64_t b,
                  __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i wv = _mm256_loadu_si256((const __m256i *)wb->qs);
    const __m256i wa = _mm256_sign_epi8(wv, wv); /* |w| as unsigned bytes */
    const __m256 dw = _mm256_set1_ps(_cvtsh_ss(wb->d));
    for (int m = 0; m < MR; m++) {
        const rs_block_q8_0 *xb = a->xq + m * a->xq_ld + b;
        const __m256i xs = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xb->qs), wv);
        const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xs), ones);
        const __m256 sc = _mm256_mul_ps(dw, _mm256_broadcast_ss(a->xd + m * a->xq_ld + b));
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), sc, acc[m]);
    }
}

/* Two weight rows at once: their 8-lane block dots are folded into one vector by hadd
 * (lanes 0,1,4,5 row n; 2,3,6,7 row n+1), so the int->float conversion, the scale and the
 * FMA are paid once for both rows. */
TGTI void q8_step2(const rs_qk_args *a, const int MR, const rs_block_q8_0 *wb0,
                   const rs_block_q8_0 *wb1, int64_t b, __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i wv0 = _mm256_loadu_si256((const __m256i *)wb0->qs);
    const __m256i wv1 = _mm256_loadu_si256((const __m256i *)wb1->qs);
    const __m256i wa0 = _mm256_sign_epi8(wv0, wv0), wa1 = _mm256_sign_epi8(wv1, wv1);
    const float d0 = _cvtsh_ss(wb0->d), d1 = _cvtsh_ss(wb1->d);
    const __m256 dw = _mm256_setr_ps(d0, d0, d1, d1, d0, d0, d1, d1);
    for (int m = 0; m < MR; m++) {
        const rs_block_q8_0 *xb = a->xq + m * a->xq_ld + b;
        const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
        const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(wa0, _mm256_sign_epi8(xv, wv0)), ones);
        const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(wa1, _mm256_sign_epi8(xv, wv1)), ones);
        const __m256 sc = _mm256_mul_ps(dw, _mm256_broadcast_ss(a->xd + m * a->xq_ld + b));
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(p0, p1)), sc, acc[m]);
    }
}

/* Four weight rows at once. Their block dots are folded by two hadds into one vector (lanes
 * 0-3 and 4-7 each hold rows n..n+3), so conversion, scale and FMA are paid once for four
 * rows; the four scales are converted together (F16C). The four rows are contiguous in memory,
 * so the group is one sequential stream: it is prefetched linearly, RS_QUANT_PF_LIN bytes
 * ahead of the bytes consumed so far (measured on a 2-core EPYC, one thread, 143 MB of
 * weights: 16-17 GB/s = 86-92 % of a plain streaming sum for K = 2048 and 8192, against
 * 10-14 GB/s for two rows with per-row prefetch). */
#ifndef RS_QUANT_PF_LIN
#define RS_QUANT_PF_LIN 8192
#endif
TGTI __m256i q8_bdot(__m256i w, __m256i x, __m256i ones) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones);
}

TGTI void q8_group4(const rs_qk_args *a, const int MR, int64_t n, int64_t nb) {
    const __m256i ones = _mm256_set1_epi16(1);
    const rs_block_q8_0 *w0 = (const rs_block_q8_0 *)(a->W + (size_t)n * a->wrow);
    const rs_block_q8_0 *w1 = (const rs_block_q8_0 *)((const uint8_t *)w0 + a->wrow);
    const rs_block_q8_0 *w2 = (const rs_block_q8_0 *)((const uint8_t *)w1 + a->wrow);
    const rs_block_q8_0 *w3 = (const rs_block_q8_0 *)((const uint8_t *)w2 + a->wrow);
    /* a K chunk of longer rows (kc < the row) is not one stream: prefetch row 0's next bytes then */
    const bool whole = (size_t)nb * sizeof(rs_block_q8_0) == a->wrow;
    const char *pf = (const char *)w0 + RS_QUANT_PF_LIN;
    __m256 acc[RS_QK_MR];
    for (int m = 0; m < MR; m++) acc[m] = _mm256_setzero_ps();
    const size_t pf_step = whole ? 4 * sizeof(rs_block_q8_0) : sizeof(rs_block_q8_0);
    for (int64_t b = 0; b < nb; b++, pf += pf_step) {
        _mm_prefetch(pf, _MM_HINT_T0);
        _mm_prefetch(pf + 64, _MM_HINT_T0);
        _mm_prefetch(pf + 128, _MM_HINT_T0);
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)w0[b].qs);
        const __m256i v1 = _mm256_loadu_si256((const __m256i *)w1[b].qs);
        const __m256i v2 = _mm256_loadu_si256((const __m256i *)w2[b].qs);
        const __m256i v3 = _mm256_loadu_si256((const __m256i *)w3[b].qs);
        const __m128 dw4 = _mm_cvtph_ps(_mm_setr_epi16((short)w0[b].d, (short)w1[b].d, (short)w2[b].d, (short)w3[b].d, 0, 0, 0, 0));
        const __m256 dw = _mm256_set_m128(dw4, dw4);
        for (int m = 0; m < MR; m++) {
            const rs_block_q8_0 *xb = a->xq + m * a->xq_ld + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
            const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(q8_bdot(v0, xv, ones), q8_bdot(v1, xv, ones)),
                                                _mm256_hadd_epi32(q8_bdot(v2, xv, ones), q8_bdot(v3, xv, ones)));
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw, _mm256_broadcast_ss(a->xd + m * a->xq_ld + b)), acc[m]);
        }
    }
    for (int m = 0; m < MR; m++) {
        const __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc[m]), _mm256_extractf128_ps(acc[m], 1));
        float *p = a->y + m * a->ldy + n;
        _mm_storeu_ps(p, a->accumulate ? _mm_add_ps(_mm_loadu_ps(p), r) : r);
    }
}

TGTI void q8_rows(const rs_qk_args *a, const int MR, int64_t n0, int64_t n1) {
    const int64_t nb = a->kc / RS_QK8_0;
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) q8_group4(a, MR, n, nb);
    for (; n + 2 <= n1; n += 2) {
        const rs_block_q8_0 *w0 = (const rs_block_q8_0 *)(a->W + (size_t)n * a->wrow);
        const rs_block_q8_0 *w1 = (const rs_block_q8_0 *)(a->W + (size_t)(n + 1) * a->wrow);
        __m256 acc0[RS_QK_MR], acc1[RS_QK_MR];
        for (int m = 0; m < MR; m++) acc0[m] = acc1[m] = _mm256_setzero_ps();
        int64_t b = 0;
        for (; b + 1 < nb; b += 2) {
            _mm_prefetch((const char *)(w0 + b) + RS_QUANT_PF, _MM_HINT_T0);
            _mm_prefetch((const char *)(w1 + b) + RS_QUANT_PF, _MM_HINT_T0);
            q8_step2(a, MR, w0 + b, w1 + b, b, acc0);
            q8_step2(a, MR, w0 + b + 1, w1 + b + 1, b + 1, acc1);
        }
        if (b < nb) q8_step2(a, MR, w0 + b, w1 + b, b, acc0);
        for (int m = 0; m < MR; m++) {
            const __m256 s = _mm256_add_ps(acc0[m], acc1[m]);
            const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
            /* h = [r0, r0, r1, r1] */
            const __m128 t = _mm_add_ps(h, _mm_movehdup_ps(h)); /* t0 = row n, t2 = row n+1 */
            put(a, m, n, _mm_cvtss_f32(t));
            put(a, m, n + 1, _mm_cvtss_f32(_mm_movehl_ps(t, t)));
        }
    }
    for (; n < n1; n++) {
        const rs_block_q8_0 *w = (const rs_block_q8_0 *)(a->W + (size_t)n * a->wrow);
        __m256 acc0[RS_QK_MR], acc1[RS_QK_MR];
        for (int m = 0; m < MR; m++) acc0[m] = acc1[m] = _mm256_setzero_ps();
        int64_t b = 0;
        for (; b + 1 < nb; b += 2) {
            /* the hardware prefetcher alone leaves this compute-heavy stream short of
             * misses in flight: ask for the weights 1.5 KiB ahead (measured: ~+10% cold) */
            _mm_prefetch((const char *)(w + b) + RS_QUANT_PF, _MM_HINT_T0);
            q8_step(a, MR, w + b, b, acc0);
            q8_step(a, MR, w + b + 1, b + 1, acc1);
        }
        if (b < nb) q8_step(a, MR, w + b, b, acc0);
        for (int m = 0; m < MR; m++) put(a, m, n, hsum8(_mm256_add_ps(acc0[m], acc1[m])));
    }
}

TGT void rs_qk_q8_avx2(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: q8_rows(a, 1, n0, n1); break;
    case 2: q8_rows(a, 2, n0, n1); break;
    case 3: q8_rows(a, 3, n0, n1); break;
    default: q8_rows(a, 4, n0, n1); break;
    }
}

/* ---------------------------------------------------------------- f16 / bf16 x f32 */
/* weight values k..k+7 as floats; kind 0 = f16, 1 = bf16, 2 = f32 */
TGTI __m256 widen8(const uint8_t *w, int64_t k, const int kind) {
    if (kind == 2) return _mm256_loadu_ps((const float *)w + k);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (kind == 1) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

TGTI float wat(const uint8_t *w, int64_t k, const int kind) {
    if (kind == 2) return ((const float *)w)[k];
    if (kind == 1) return rs_bf16_to_f32(((const uint16_t *)w)[k]);
    return _cvtsh_ss(((const uint16_t *)w)[k]);
}

TGTI void half_tile(const rs_qk_args *a, const int MR, const int NR, int64_t n,
                       const int kind) {
    /* NR (1 or 2) weight rows against MR activation rows, 32 values a step: each weight
     * vector is loaded once for all MR rows, each activation vector once for both weight
     * rows; NACC independent accumulator chains per (row, weight row) hide FMA latency */
    const int NACC = MR * NR == 1 ? 4 : MR * NR <= 6 ? 2 : 1;
    const int64_t kc = a->kc;
    const uint8_t *w0 = a->W + (size_t)n * a->wrow, *w1 = NR == 2 ? w0 + a->wrow : w0;
    __m256 acc[RS_QK_MR][2][4];
    for (int m = 0; m < MR; m++)
        for (int r = 0; r < NR; r++)
            for (int j = 0; j < NACC; j++) acc[m][r][j] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= kc; k += 32)
        for (int j = 0; j < 4; j++) {
            const __m256 wa = widen8(w0, k + 8 * j, kind);
            const __m256 wb = NR == 2 ? widen8(w1, k + 8 * j, kind) : wa;
            for (int m = 0; m < MR; m++) {
                const __m256 xv = _mm256_loadu_ps(a->x + m * a->ldx + k + 8 * j);
                acc[m][0][j % NACC] = _mm256_fmadd_ps(wa, xv, acc[m][0][j % NACC]);
                if (NR == 2) acc[m][1][j % NACC] = _mm256_fmadd_ps(wb, xv, acc[m][1][j % NACC]);
            }
        }
    for (; k + 8 <= kc; k += 8) {
        const __m256 wa = widen8(w0, k, kind);
        const __m256 wb = NR == 2 ? widen8(w1, k, kind) : wa;
        for (int m = 0; m < MR; m++) {
            const __m256 xv = _mm256_loadu_ps(a->x + m * a->ldx + k);
            acc[m][0][0] = _mm256_fmadd_ps(wa, xv, acc[m][0][0]);
            if (NR == 2) acc[m][1][0] = _mm256_fmadd_ps(wb, xv, acc[m][1][0]);
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
            __m256 s = acc[m][r][0];
            for (int j = 1; j < NACC; j++) s = _mm256_add_ps(s, acc[m][r][j]);
            put(a, m, n + r, hsum8(s) + tail[m][r]);
        }
}

TGTI void half_rows(const rs_qk_args *a, const int MR, int64_t n0, int64_t n1, const int kind) {
    int64_t n = n0;
    for (; n + 2 <= n1; n += 2) half_tile(a, MR, 2, n, kind);
    if (n < n1) half_tile(a, MR, 1, n, kind);
}

TGT void rs_qk_f32_avx2(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: half_rows(a, 1, n0, n1, 2); break;
    case 2: half_rows(a, 2, n0, n1, 2); break;
    case 3: half_rows(a, 3, n0, n1, 2); break;
    default: half_rows(a, 4, n0, n1, 2); break;
    }
}

TGT void rs_qk_f16_avx2(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: half_rows(a, 1, n0, n1, 0); break;
    case 2: half_rows(a, 2, n0, n1, 0); break;
    case 3: half_rows(a, 3, n0, n1, 0); break;
    default: half_rows(a, 4, n0, n1, 0); break;
    }
}

TGT void rs_qk_bf16_avx2(const rs_qk_args *a, int mr, int64_t n0, int64_t n1) {
    switch (mr) {
    case 1: half_rows(a, 1, n0, n1, 1); break;
    case 2: half_rows(a, 2, n0, n1, 1); break;
    case 3: half_rows(a, 3, n0, n1, 1); break;
    default: half_rows(a, 4, n0, n1, 1); break;
    }
}

/* ---------------------------------------------------------------- quantiser, rows */
/* Bit-identical to the plain C quantiser: d = amax/127, id = 1/d, q = roundf(x*id). */
TGT void rs_quantize_q8_avx2(const float *x, rs_block_q8_0 *y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f),
                 one = _mm256_set1_ps(1.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / RS_QK8_0; b++) {
        const float *xb = x + b * RS_QK8_0;
        __m256 v[4];
        for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(xb + 8 * j);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                  _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = rs_f32_to_f16(d);
        const __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++) {
            const __m256 s = _mm256_mul_ps(v[j], idv);
            /* roundf: truncate, then step away from zero when the dropped part is >= 0.5 */
            const __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 r = _mm256_andnot_ps(sign, _mm256_sub_ps(s, t));
            const __m256 step = _mm256_or_ps(_mm256_and_ps(s, sign), one);
            const __m256 rr = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(r, half, _CMP_GE_OQ), step));
            q[j] = _mm256_cvtps_epi32(rr);
        }
        const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
        const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), perm);
        _mm256_storeu_si256((__m256i *)y[b].qs, p8);
    }
}

TGT void rs_f32_to_f16_row_avx2(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = rs_f32_to_f16(x[i]);
}

TGT void rs_f16_to_f32_row_avx2(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = rs_f16_to_f32(x[i]);
}

#endif
