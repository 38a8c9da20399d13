/* attention.c - scaled dot-product attention (multi-head, grouped-query, causal with
 * offset, key padding mask), forward and backward.
 *
 * Two forward paths with the same result:
 *  - few query rows (decoding, Tq < ATTN_GEMM_MIN_TQ): one work item per (kv head, query
 *    row) covering the kv head's group of query heads, all items spread over the pool in
 *    one run; keys in blocks of four, SIMD-friendly dot / axpy loops;
 *  - many query rows (prefill, encoders, training): per head, S = scale·Q_h·K_gᵀ and
 *    O_h = P_h·V_g with rs_sgemm (threaded inside), masked softmax rows in between.
 * The backward always goes head by head with rs_sgemm:
 *    dP = dO_h·V_gᵀ, dS = scale·P⊙(dP − rowsum(P⊙dP)), dQ_h = dS·K_g,
 *    dK_g += dSᵀ·Q_h, dV_g += P_hᵀ·dO_h. */
/* Let GCC if-convert the clamps and selects of the inline exp/erfc code so that the
 * elementwise loops vectorise (we never rely on floating-point exception flags). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#endif
#include "kernels/ops.h"
#include "kernels/ops_internal.h"
#include "kernels/gemm.h"

#include <math.h>
#include <string.h>

#define ATTN_GEMM_MIN_TQ 16

rsmoe_status rs_attn_check(const rs_attn_desc *a) {
    if (!a) return rs_error(RSMOE_ERR_INVALID_ARG, "attention: NULL descriptor");
    if (a->Tq <= 0 || a->Tk <= 0 || a->Hq <= 0 || a->Hkv <= 0 || a->d <= 0)
        return rs_error(RSMOE_ERR_INVALID_ARG,
                        "attention: bad shape Tq=%lld Tk=%lld Hq=%lld Hkv=%lld d=%lld",
                        (long long)a->Tq, (long long)a->Tk, (long long)a->Hq,
                        (long long)a->Hkv, (long long)a->d);
    if (a->Hq % a->Hkv)
        return rs_error(RSMOE_ERR_INVALID_ARG,
                        "attention: %lld query heads not a multiple of %lld kv heads",
                        (long long)a->Hq, (long long)a->Hkv);
    if ((a->ldq && a->ldq < a->Hq * a->d) || (a->ldo && a->ldo < a->Hq * a->d) ||
        (a->ldk && a->ldk < a->Hkv * a->d) || (a->ldv && a->ldv < a->Hkv * a->d))
        return rs_error(RSMOE_ERR_INVALID_ARG, "attention: row stride shorter than a row");
    if (a->q_offset < 0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "attention: negative causal offset %lld",
                        (long long)a->q_offset);
    if (!(a->scale >= 0) || isinf(a->scale))
        return rs_error(RSMOE_ERR_INVALID_ARG, "attention: bad scale %g", (double)a->scale);
    return RSMOE_OK;
}

size_t rs_attn_fwd_scratch_floats(const rs_attn_desc *a, int nthreads) {
    /* direct path: a [Hq/Hkv, Tk] block per worker; gemm path: one [Tq, Tk] plane. The max keeps
     * the size non-decreasing in Tq, so sizing for the largest Tq covers smaller ones. */
    if (nthreads < 1) nthreads = 1;
    int64_t direct = (int64_t)nthreads * (a->Hkv > 0 ? a->Hq / a->Hkv : 1);
    int64_t rows = a->Tq >= ATTN_GEMM_MIN_TQ && a->Tq > direct ? a->Tq : direct;
    return (size_t)rows * (size_t)a->Tk;
}

size_t rs_attn_bwd_scratch_floats(const rs_attn_desc *a) { return (size_t)(a->Tq * a->Tk); }

typedef struct {
    float *out, *probs, *scratch;
    const float *q, *k, *v;
    const rs_attn_desc *a;
    int64_t ldq, ldk, ldv, ldo, group;
    float scale;
    int64_t h;            /* gemm path: current head */
    float *P;             /* gemm path: current probability plane [Tq, Tk] */
    const float *dP;      /* backward: dO·Vᵀ plane */
} attn_ctx;

/* number of keys row i may see because of causality */
static inline int64_t attn_jmax(const rs_attn_desc *a, int64_t i) {
    if (!a->causal) return a->Tk;
    int64_t m = i + a->q_offset + 1;
    return m < a->Tk ? m : a->Tk;
}

/* p[0..Tk) holds scaled scores for j < jmax; turns it into masked probabilities.
 * Returns false when no key is visible (row zeroed). */
static bool masked_softmax_row(float *p, int64_t Tk, int64_t jmax, const uint8_t *valid) {
    float mx = -INFINITY;
    if (valid) {
        for (int64_t j = 0; j < jmax; j++)
            if (valid[j] && p[j] > mx) mx = p[j];
    } else if (jmax > 0) {
        mx = rs__maxf(p, jmax);
    }
    if (mx == -INFINITY) { memset(p, 0, (size_t)Tk * sizeof(float)); return false; }
    for (int64_t j = 0; j < jmax; j++) p[j] = rs__expf(p[j] - mx);
    if (valid)
        for (int64_t j = 0; j < jmax; j++) p[j] = valid[j] ? p[j] : 0.0f;
    for (int64_t j = jmax; j < Tk; j++) p[j] = 0.0f;
    float inv = (float)(1.0 / rs__sum(p, jmax));
    for (int64_t j = 0; j < jmax; j++) p[j] *= inv;
    return true;
}

/* ---------------------------------------------------------------- direct path */
/* four dot products sharing the loads of q */
static inline void dot4(const float *q, const float *k0, const float *k1, const float *k2,
                        const float *k3, int64_t d, float *out) {
    rs__v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int64_t e = 0;
    for (; e + 8 <= d; e += 8) {
        rs__v8 qv = rs__ld8(q + e);
        a0 += qv * rs__ld8(k0 + e);
        a1 += qv * rs__ld8(k1 + e);
        a2 += qv * rs__ld8(k2 + e);
        a3 += qv * rs__ld8(k3 + e);
    }
    float s[4];
    const rs__v8 *acc[4] = { &a0, &a1, &a2, &a3 };
    for (int r = 0; r < 4; r++) {
        rs__v8 x = *acc[r];
        s[r] = ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
    }
    for (; e < d; e++) {
        s[0] += q[e] * k0[e];
        s[1] += q[e] * k1[e];
        s[2] += q[e] * k2[e];
        s[3] += q[e] * k3[e];
    }
    memcpy(out, s, sizeof s);
}

/* o += p0·v0 + p1·v1 + p2·v2 + p3·v3 (one pass over o for four keys) */
static inline void axpy4(float *o, const float *p, const float *v0, const float *v1,
                         const float *v2, const float *v3, int64_t d) {
    rs__v8 p0, p1, p2, p3;
    for (int l = 0; l < 8; l++) { p0[l] = p[0]; p1[l] = p[1]; p2[l] = p[2]; p3[l] = p[3]; }
    int64_t e = 0;
    for (; e + 8 <= d; e += 8)
        rs__st8(o + e, rs__ld8(o + e) + ((p0 * rs__ld8(v0 + e) + p1 * rs__ld8(v1 + e)) +
                                         (p2 * rs__ld8(v2 + e) + p3 * rs__ld8(v3 + e))));
    for (; e < d; e++) o[e] += (p[0] * v0[e] + p[1] * v1[e]) + (p[2] * v2[e] + p[3] * v3[e]);
}

/* One item = one query row i and one kv head g, for all the query heads of g, in blocks
 * of four keys so that each key / value row is read once per group from L1. */
static void attn_fwd_items(void *vc, int64_t b, int64_t e, int ith) {
    attn_ctx *c = vc;
    const rs_attn_desc *a = c->a;
    const uint8_t *valid = a->key_valid;
    int64_t Tq = a->Tq, Tk = a->Tk, d = a->d, G = c->group;
    for (int64_t it = b; it < e; it++) {
        int64_t g = it / Tq, i = it % Tq, jmax = attn_jmax(a, i);
        const float *kg = c->k + g * d, *vg = c->v + g * d;
        float *P0 = c->probs ? NULL : c->scratch + (int64_t)ith * G * Tk;
#define ROWP(hh) (c->probs ? c->probs + ((g * G + (hh)) * Tq + i) * Tk : P0 + (hh) * Tk)
#define ROWQ(hh) (c->q + i * c->ldq + (g * G + (hh)) * d)
#define ROWO(hh) (c->out + i * c->ldo + (g * G + (hh)) * d)
        /* scores (masked keys too; the softmax ignores them) */
        int64_t j = 0;
        for (; j + 4 <= jmax; j += 4) {
            const float *k0 = kg + j * c->ldk, *k1 = k0 + c->ldk, *k2 = k1 + c->ldk, *k3 = k2 + c->ldk;
            for (int64_t hh = 0; hh < G; hh++) dot4(ROWQ(hh), k0, k1, k2, k3, d, ROWP(hh) + j);
        }
        for (; j < jmax; j++)
            for (int64_t hh = 0; hh < G; hh++) ROWP(hh)[j] = rs__dot(ROWQ(hh), kg + j * c->ldk, d);
        bool any = false;
        for (int64_t hh = 0; hh < G; hh++) {
            float *p = ROWP(hh);
            for (int64_t jj = 0; jj < jmax; jj++) p[jj] *= c->scale;
            any |= masked_softmax_row(p, Tk, jmax, valid);
            memset(ROWO(hh), 0, (size_t)d * sizeof(float));
        }
        if (!any) continue; /* no visible key: rows and outputs are zero */
        /* out = P·V; masked keys are skipped (their rows may hold anything) */
        j = 0;
        for (; j + 4 <= jmax; j += 4) {
            if (valid && !(valid[j] && valid[j + 1] && valid[j + 2] && valid[j + 3])) {
                for (int64_t jj = j; jj < j + 4; jj++)
                    if (valid[jj])
                        for (int64_t hh = 0; hh < G; hh++)
                            rs__axpy(ROWO(hh), ROWP(hh)[jj], vg + jj * c->ldv, d);
                continue;
            }
            const float *v0 = vg + j * c->ldv, *v1 = v0 + c->ldv, *v2 = v1 + c->ldv, *v3 = v2 + c->ldv;
            for (int64_t hh = 0; hh < G; hh++) axpy4(ROWO(hh), ROWP(hh) + j, v0, v1, v2, v3, d);
        }
        for (; j < jmax; j++)
            if (!valid || valid[j])
                for (int64_t hh = 0; hh < G; hh++) rs__axpy(ROWO(hh), ROWP(hh)[j], vg + j * c->ldv, d);
#undef ROWP
#undef ROWQ
#undef ROWO
    }
}

/* ---------------------------------------------------------------- gemm path */
static void attn_softmax_rows(void *vc, int64_t b, int64_t e, int ith) {
    attn_ctx *c = vc;
    for (int64_t i = b; i < e; i++)
        masked_softmax_row(c->P + i * c->a->Tk, c->a->Tk, attn_jmax(c->a, i), c->a->key_valid);
}

rsmoe_status rs_attn_fwd(float *out, float *probs, const float *q, const float *k,
                         const float *v, const rs_attn_desc *a, float *scratch, rs_pool *pool) {
    rsmoe_status st = rs_attn_check(a);
    if (st) return st;
    if (!out || !q || !k || !v || (!probs && !scratch))
        return rs_error(RSMOE_ERR_INVALID_ARG, "attention: NULL buffer");
    attn_ctx c = { .out = out, .probs = probs, .scratch = scratch, .q = q, .k = k, .v = v,
                   .a = a, .group = a->Hq / a->Hkv };
    int64_t d = a->d;
    c.ldq = a->ldq ? a->ldq : a->Hq * d;
    c.ldo = a->ldo ? a->ldo : a->Hq * d;
    c.ldk = a->ldk ? a->ldk : a->Hkv * d;
    c.ldv = a->ldv ? a->ldv : a->Hkv * d;
    c.scale = a->scale > 0 ? a->scale : (float)(1.0 / sqrt((double)d));
    if (a->Tq < ATTN_GEMM_MIN_TQ) {
        rs_par_for(rs_pool_for_work(pool, 2.0 * (double)a->Hq * (double)a->Tq * (double)a->Tk * (double)d),
                   a->Hkv * a->Tq, 1, attn_fwd_items, &c);
        return RSMOE_OK;
    }
    int64_t Tq = a->Tq, Tk = a->Tk;
    for (int64_t h = 0; h < a->Hq; h++) {
        int64_t g = h / c.group;
        c.h = h;
        c.P = probs ? probs + h * Tq * Tk : scratch;
        rs_sgemm(false, true, Tq, Tk, d, c.scale, q + h * d, c.ldq, k + g * d, c.ldk, 0.0f,
                 c.P, Tk, pool);
        rs_par_for(pool, Tq, 8, attn_softmax_rows, &c);
        rs_sgemm(false, false, Tq, d, Tk, 1.0f, c.P, Tk, v + g * d, c.ldv, 0.0f, out + h * d,
                 c.ldo, pool);
    }
    return RSMOE_OK;
}

/* dS = scale·P⊙(dP − Σ_j P⊙dP), in place on the dP plane (c->P points at it) */
static void attn_ds_rows(void *vc, int64_t b, int64_t e, int ith) {
    attn_ctx *c = vc;
    int64_t Tk = c->a->Tk;
    const float *P = c->probs + c->h * c->a->Tq * Tk;
    for (int64_t i = b; i < e; i++) {
        const float *p = P + i * Tk;
        float *ds = c->P + i * Tk;
        double s = 0;
        for (int64_t j = 0; j < Tk; j++) s += (double)p[j] * ds[j];
        float sf = (float)s;
        for (int64_t j = 0; j < Tk; j++) ds[j] = c->scale * p[j] * (ds[j] - sf);
    }
}

rsmoe_status rs_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *probs,
                         const rs_attn_desc *a, float *scratch, rs_pool *pool) {
    rsmoe_status st = rs_attn_check(a);
    if (st) return st;
    if (!dout || !q || !k || !v || !probs || ((dq || dk) && !scratch))
        return rs_error(RSMOE_ERR_INVALID_ARG, "attention bwd: NULL buffer");
    int64_t d = a->d, Tq = a->Tq, Tk = a->Tk, group = a->Hq / a->Hkv;
    int64_t ldq = a->ldq ? a->ldq : a->Hq * d, ldk = a->ldk ? a->ldk : a->Hkv * d;
    int64_t ldv = a->ldv ? a->ldv : a->Hkv * d;
    int64_t lddq = a->Hq * d, lddo = a->Hq * d, lddkv = a->Hkv * d;
    attn_ctx c = { .probs = (float *)probs, .a = a, .group = group };
    c.scale = a->scale > 0 ? a->scale : (float)(1.0 / sqrt((double)d));
    for (int64_t h = 0; h < a->Hq; h++) {
        int64_t g = h / group;
        float beta = (h % group) ? 1.0f : 0.0f; /* first head of a group writes dk/dv */
        const float *P = probs + h * Tq * Tk, *dOh = dout + h * d;
        if (dv)
            rs_sgemm(true, false, Tk, d, Tq, 1.0f, P, Tk, dOh, lddo, beta, dv + g * d, lddkv,
                     pool);
        if (!dq && !dk) continue;
        c.h = h;
        c.P = scratch;
        rs_sgemm(false, true, Tq, Tk, d, 1.0f, dOh, lddo, v + g * d, ldv, 0.0f, scratch, Tk,
                 pool);
        rs_par_for(pool, Tq, 8, attn_ds_rows, &c);
        if (dq)
            rs_sgemm(false, false, Tq, d, Tk, 1.0f, scratch, Tk, k + g * d, ldk, 0.0f,
                     dq + h * d, lddq, pool);
        if (dk)
            rs_sgemm(true, false, Tk, d, Tq, 1.0f, scratch, Tk, q + h * d, ldq, beta,
                     dk + g * d, lddkv, pool);
    }
    return RSMOE_OK;
}
