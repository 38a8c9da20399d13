/* test_ops.c - the fp32 NN kernels (kernels/ops.h) against
 *  (1) hand-computed values,
 *  (2) their double-precision reference twins (kernels/ops_ref.h) on odd shapes:
 *      normalised error (max|a-b| / max|b|) <= FWD_TOL,
 *  (3) for every backward: central finite differences of a double loss
 *      L = Σ dy·ref(inputs) taken through the double twin (h = 1e-5, so truncation
 *      ~1e-10 and rounding ~1e-11): normalised error <= BWD_TOL,
 *  (4) threaded runs (a 2-thread pool) against single-threaded ones,
 *  (5) bad arguments returning errors, and documented edge cases.
 * Backward semantics checked too: parameter gradients start from random values and must
 * come out as start + gradient (+=); input gradients start as NaN and must be fully
 * written. */
#include "test.h"
#include "core/core.h"
#include "kernels/ops.h"
#include "kernels/ops_internal.h"
#include "kernels/ops_ref.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* f32 kernel vs double twin. 1e-6 holds for these sizes (reductions <= ~100 terms,
 * float rounding ~6e-8 per op) and for libm's erff/expf/tanhf (<= 2 ulp). */
#ifndef FWD_TOL
#define FWD_TOL 1e-6
#endif
/* float backward vs double finite differences: the backward itself is computed in
 * float from float-rounded intermediates (e.g. softmax probabilities, normalised
 * activations) and its long sums cancel (Σ dy·y terms in softmax / norm backward),
 * so a few float ulps of the largest terms (measured max 4e-7): 2e-6. A 0.1% error in a
 * formula fails (checked by mutating the kernels). */
#ifndef BWD_TOL
#define BWD_TOL 2e-6
#endif
#define FD_H 1e-5

static rs_rng g_rng;

static float *frand(int64_t n, float lo, float hi) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    rs_rng_fill_uniform(&g_rng, x, (size_t)n, lo, hi);
    return x;
}
static float *fnan(int64_t n) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}
static float *fcopy(const float *a, int64_t n) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(x, a, (size_t)n * sizeof(float));
    return x;
}
static double *dcopy(const float *a, int64_t n) {
    double *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) x[i] = a[i];
    return x;
}
static double *dalloc(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

/* nerr: tests/test.h's test_nerr_f64ref (max|a-b| / max|b|, NaN infinite) */
static double nerr(const float *a, const double *b, int64_t n) { return test_nerr_f64ref(a, b, (size_t)(n > 0 ? n : 0)); }
/* same for an accumulated gradient: (got - start) vs expected */
static double nerr_acc(const float *got, const float *start, const double *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(((double)got[i] - (double)start[i]) - b[i]);
        if (!(e <= md)) md = isnan(e) ? INFINITY : e;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}

/* ------------------------------------------------------------ finite differences */
typedef struct fd_op fd_op;
struct fd_op {
    void (*ref)(fd_op *o, double *y);  /* y = twin(o->p[...]) */
    double *p[8];                      /* double inputs (perturbed in place) */
    int64_t n[8];                      /* shape numbers for ref */
    const void *extra;                 /* descriptor / config / ids */
    const int32_t *ids;
    double f;                          /* a scalar (eps, alpha, scale) */
    int64_t ny;
    double *w;                         /* dy as double */
    double *y;                         /* buffer [ny] */
};

static double fd_loss(fd_op *o) {
    o->ref(o, o->y);
    double s = 0;
    for (int64_t i = 0; i < o->ny; i++) s += o->w[i] * o->y[i];
    return s;
}
/* g[i] = dL/dp[which][i] for i < count */
static void fd_grad(fd_op *o, int which, int64_t count, double *g) {
    double *p = o->p[which];
    for (int64_t i = 0; i < count; i++) {
        double save = p[i];
        p[i] = save + FD_H;
        double lp = fd_loss(o);
        p[i] = save - FD_H;
        double lm = fd_loss(o);
        p[i] = save;
        g[i] = (lp - lm) / (2 * FD_H);
    }
}
/* error of a written gradient */
static double fd_check(fd_op *o, int which, int64_t count, const float *got) {
    double *g = dalloc(count);
    fd_grad(o, which, count, g);
    double e = nerr(got, g, count);
    free(g);
    return e;
}
/* error of an accumulated gradient */
static double fd_check_acc(fd_op *o, int which, int64_t count, const float *got,
                           const float *start) {
    double *g = dalloc(count);
    fd_grad(o, which, count, g);
    double e = nerr_acc(got, start, g, count);
    free(g);
    return e;
}

/* ================================================================ hand values */
TEST(hand_values) {
    float x[2] = { 0.0f, (float)log(2.0) }, y[2];
    rs_softmax_fwd(y, x, 1, 2, 1.0f, NULL);
    CHECK(fabs(y[0] - 1.0 / 3) < 1e-7 && fabs(y[1] - 2.0 / 3) < 1e-7, "softmax [0,ln2] = %g %g", y[0], y[1]);
    float one = 1.0f, g;
    rs_gelu_fwd(&g, &one, 1, NULL);
    CHECK(fabs(g - 0.8413447460685429) < 1e-7, "gelu(1) = %.9g", g);
    rs_gelu_tanh_fwd(&g, &one, 1, NULL);
    CHECK(fabs(g - 0.8411919906082768) < 1e-7, "gelu_tanh(1) = %.9g", g);
    rs_silu_fwd(&g, &one, 1, NULL);
    CHECK(fabs(g - 0.7310585786300049) < 1e-7, "silu(1) = %.9g", g);
    /* layernorm [1,2,3]: mean 2, var 2/3 -> ±sqrt(3/2) */
    float l[3] = { 1, 2, 3 }, ly[3], mean, rstd;
    rs_layernorm_fwd(ly, &mean, &rstd, l, NULL, NULL, 1, 3, 0.0f, NULL);
    CHECK(fabs(ly[0] + 1.224744871391589) < 1e-6 && fabs(ly[1]) < 1e-7 &&
          fabs(ly[2] - 1.224744871391589) < 1e-6 && mean == 2.0f,
          "layernorm [1,2,3] = %g %g %g", ly[0], ly[1], ly[2]);
    /* rmsnorm [3,4]: rms sqrt(12.5) */
    float r[2] = { 3, 4 }, ry[2];
    rs_rmsnorm_fwd(ry, NULL, r, NULL, 1, 2, 0.0f, NULL);
    CHECK(fabs(ry[0] - 0.848528137423857) < 1e-6 && fabs(ry[1] - 1.131370849898476) < 1e-6,
          "rmsnorm [3,4] = %g %g", ry[0], ry[1]);
    /* CE of [0,0] -> ln 2; gradient (0.5-1, 0.5) */
    float lg[2] = { 0, 0 }, loss, dl[2];
    int32_t tg = 0;
    CHECK(rs_cross_entropy_fwd(&loss, NULL, lg, &tg, 1, 2, RS_IGNORE_INDEX, NULL) == RSMOE_OK, "ce");
    CHECK(fabs(loss - log(2.0)) < 1e-7, "ce([0,0]) = %g", loss);
    rs_cross_entropy_bwd(dl, lg, &tg, 1, 2, RS_IGNORE_INDEX, 1.0f, NULL);
    CHECK(fabs(dl[0] + 0.5) < 1e-7 && fabs(dl[1] - 0.5) < 1e-7, "dce = %g %g", dl[0], dl[1]);
    /* RoPE d=2: frequency 1, position 1 rotates (1,0) by 1 radian */
    rs_rope_cfg rc = rs_rope_default();
    float v[2] = { 1, 0 };
    CHECK(rs_rope_fwd(v, NULL, 1, 1, 1, 2, 0, &rc, NULL) == RSMOE_OK, "rope");
    CHECK(fabs(v[0] - cos(1.0)) < 1e-7 && fabs(v[1] - sin(1.0)) < 1e-7, "rope = %g %g", v[0], v[1]);
    /* Llama-3 scaling, theta 500000, d 16: pair 7 (wavelength ~6e5 > 8192) is divided by
     * 32; pair 0 (wavelength 2π < 2048) unchanged; pair 4 (wavelength ~4443) blended */
    rc.theta = 500000; rc.llama3 = true;
    double f[8];
    CHECK(rs_rope_inv_freq(f, 16, &rc) == RSMOE_OK, "inv_freq");
    double f7 = pow(500000.0, -14.0 / 16), f4 = pow(500000.0, -8.0 / 16);
    double sm = (8192.0 / (2 * M_PI / f4) - 1) / 3;
    CHECK(fabs(f[0] - 1.0) < 1e-15 && fabs(f[7] - f7 / 32) < 1e-18 &&
          fabs(f[4] - ((1 - sm) * f4 / 32 + sm * f4)) < 1e-15,
          "llama3 inv_freq %g %g %g", f[0], f[4], f[7]);
    /* AdamW first step from zero moments: p -= lr·g/(|g|+eps) after the decay */
    rs_adamw_cfg ac = rs_adamw_default();
    float p = 1.0f, gr = 0.5f, m = 0, vv = 0;
    rs_adamw_step(&p, &gr, &m, &vv, 1, 1, &ac, NULL);
    double expect = 1.0 * (1 - 1e-3 * 0.01) - 1e-3 * 0.5 / (0.5 + 1e-8);
    CHECK(fabs(p - expect) < 1e-7, "adamw step 1: %.9g vs %.9g", p, expect);
}

/* ================================================================ linear */
static void ref_linear(fd_op *o, double *y) {
    rs_linear_ref(y, o->p[0], o->p[1], o->p[2], o->n[0], o->n[1], o->n[2]);
}

static void linear_case(int64_t T, int64_t in, int64_t out, bool bias) {
    float *x = frand(T * in, -1, 1), *W = frand(out * in, -1, 1), *b = bias ? frand(out, -1, 1) : NULL;
    float *y = fnan(T * out), *dy = frand(T * out, -1, 1);
    rs_linear_fwd(y, x, W, b, T, in, out, NULL);
    fd_op o = { .ref = ref_linear, .p = { dcopy(x, T * in), dcopy(W, out * in), bias ? dcopy(b, out) : NULL },
                .n = { T, in, out }, .ny = T * out, .w = dcopy(dy, T * out), .y = dalloc(T * out) };
    o.ref(&o, o.y);
    double e = nerr(y, o.y, T * out);
    CHECK(e <= FWD_TOL, "linear fwd T=%lld in=%lld out=%lld: %g", (long long)T, (long long)in, (long long)out, e);
    float *dx = fnan(T * in), *dW0 = frand(out * in, -1, 1), *db0 = frand(out, -1, 1);
    float *dW = fcopy(dW0, out * in), *db = fcopy(db0, out);
    rs_linear_bwd(dx, dW, bias ? db : NULL, dy, x, W, T, in, out, NULL);
    CHECK((e = fd_check(&o, 0, T * in, dx)) <= BWD_TOL, "linear dx %g", e);
    CHECK((e = fd_check_acc(&o, 1, out * in, dW, dW0)) <= BWD_TOL, "linear dW %g", e);
    if (bias) CHECK((e = fd_check_acc(&o, 2, out, db, db0)) <= BWD_TOL, "linear db %g", e);
    for (int i = 0; i < 3; i++) free(o.p[i]);
    free(o.w); free(o.y); free(x); free(W); free(b); free(y); free(dy); free(dx);
    free(dW0); free(db0); free(dW); free(db);
}

TEST(linear) {
    linear_case(5, 7, 6, true);
    linear_case(1, 13, 3, false);
    linear_case(17, 33, 19, true);
}

/* ================================================================ LoRA */
static void ref_lora(fd_op *o, double *y) {
    rs_lora_ref(y, o->p[0], o->p[1], o->p[2], o->p[3], o->p[4], o->f, o->n[0], o->n[1], o->n[2], o->n[3]);
}

/* few-row LoRA of several targets at once (decoding) against its double twin; B and its
 * transpose give the same bits; 1 and 3 threads the same bits; rows without an adapter and
 * rows sharing one (R = 16: runs of 5 rows per adapter, as 3 experts x 5 beams decode). Rank 9:
 * its first 8 dots are taken together (dot16_rows, 8 rows), the ninth alone (1 row); A's ninth
 * row is a copy of its first, so the two ways must give the same bits. */
#define LORA_ROWS_MAX 16
static void lora_rows_case(const int R) {
    const int NT = 3;
    const int64_t in = 70, outs[3] = {33, 16, 129};
    const int ranks[2] = {4, 9}, RMAX = 9;
    float *x = frand(R * in, -1, 1);
    float *A[2], *B[2][3], *Bt[2][3];
    for (int a = 0; a < 2; a++) {
        A[a] = frand(ranks[a] * in, -1, 1);
        if (ranks[a] == 9) memcpy(A[a] + 8 * in, A[a], sizeof(float) * (size_t)in);
        for (int g = 0; g < NT; g++) {
            B[a][g] = frand(outs[g] * ranks[a], -1, 1);
            Bt[a][g] = malloc(sizeof(float) * (size_t)(outs[g] * ranks[a]));
            for (int64_t o = 0; o < outs[g]; o++)
                for (int q = 0; q < ranks[a]; q++) Bt[a][g][q * outs[g] + o] = B[a][g][o * ranks[a] + q];
        }
    }
    /* row 0: adapter 1, row 1: none, then runs of adapter 0 and 1 (scale 2 / 0.5) */
    int row_ad[LORA_ROWS_MAX];
    for (int i = 0; i < R; i++) row_ad[i] = i == 0 ? 1 : i == 1 ? -1 : ((i - 2) / 5) % 2;
    float *y0[3], *y[4][3];
    rs_lora_mat m[2][3][LORA_ROWS_MAX]; /* [with Bt][target][row] */
    for (int g = 0; g < NT; g++) {
        y0[g] = frand(R * outs[g], -1, 1);
        for (int v = 0; v < 4; v++) y[v][g] = fcopy(y0[g], R * outs[g]);
        for (int i = 0; i < R; i++)
            for (int w = 0; w < 2; w++) {
                const int a = row_ad[i];
                m[w][g][i] = a < 0 ? (rs_lora_mat){0}
                                   : (rs_lora_mat){.A = A[a], .B = B[a][g], .Bt = w ? Bt[a][g] : NULL,
                                                   .scale = a ? 0.5f : 2.0f, .r = ranks[a]};
            }
    }
    rs_pool *pool = rs_pool_new(3);
    rs_pool_set_min_work(pool, 0); /* threaded, however small */
    float *h = fnan(NT * R * RMAX);
    for (int v = 0; v < 4; v++) {
        rs_lora_rows_target tg[3];
        for (int g = 0; g < NT; g++) tg[g] = (rs_lora_rows_target){.y = y[v][g], .out = outs[g], .ldy = outs[g], .m = m[v >= 2][g]};
        if (v == 0) rs_lora_rows_fwd_ref(x, in, R, tg, NT);
        else rs_lora_rows_fwd(x, in, R, tg, NT, RMAX, h, v == 3 ? pool : NULL);
        if (v == 1)
            for (int g = 0; g < NT; g++)
                for (int i = 0; i < R; i++) {
                    const float *hh = h + ((int64_t)g * R + i) * RMAX;
                    if (row_ad[i] == 1)
                        CHECK(!memcmp(&hh[8], &hh[0], sizeof(float)), "R %d target %d row %d: dot of 8 rows %.9g, alone %.9g",
                              R, g, i, hh[0], hh[8]);
                }
    }
    for (int g = 0; g < NT; g++) {
        double num = 0, den = 0;
        for (int64_t k = 0; k < R * outs[g]; k++) {
            num += ((double)y[1][g][k] - y[0][g][k]) * ((double)y[1][g][k] - y[0][g][k]);
            den += ((double)y[0][g][k] - y0[g][k]) * ((double)y[0][g][k] - y0[g][k]);
        }
        CHECK(den > 0 && sqrt(num / den) < 1e-5, "R %d target %d: the update is off by %.3g (normalised)", R, g,
              sqrt(num / den));
        CHECK(!memcmp(y[1][g] + outs[g], y0[g] + outs[g], sizeof(float) * (size_t)outs[g]),
              "R %d target %d: the row without an adapter changed", R, g);
        CHECK(!memcmp(y[1][g], y[2][g], sizeof(float) * (size_t)(R * outs[g])), "R %d target %d: B and Bt differ", R, g);
        CHECK(!memcmp(y[2][g], y[3][g], sizeof(float) * (size_t)(R * outs[g])), "R %d target %d: 3 threads differ", R, g);
    }
    /* too many rows x targets: refused, nothing written */
    rs_lora_mat big[65];
    for (int i = 0; i < 65; i++) big[i] = m[0][0][0];
    float *yb = frand(65 * outs[0], -1, 1), *yc = fcopy(yb, 65 * outs[0]);
    float *xb = frand(65 * in, -1, 1), *hb = fnan(65 * RMAX);
    rs_lora_rows_target tb = {.y = yb, .out = outs[0], .ldy = outs[0], .m = big};
    rs_lora_rows_fwd(xb, in, 65, &tb, 1, RMAX, hb, NULL);
    CHECK(!memcmp(yb, yc, sizeof(float) * (size_t)(65 * outs[0])) && strstr(rsmoe_last_error(), "at most"),
          "65 rows accepted: %s", rsmoe_last_error());
    rs_pool_free(pool);
    free(yb), free(yc), free(xb), free(hb), free(h), free(x);
    for (int a = 0; a < 2; a++) {
        free(A[a]);
        for (int g = 0; g < NT; g++) free(B[a][g]), free(Bt[a][g]);
    }
    for (int g = 0; g < NT; g++) {
        free(y0[g]);
        for (int v = 0; v < 4; v++) free(y[v][g]);
    }
}

TEST(lora_rows) {
    lora_rows_case(3);
    lora_rows_case(LORA_ROWS_MAX);
}

TEST(lora) {
    int64_t T = 4, in = 9, out = 7, r = 3;
    float alpha = 2.0f;
    float *x = frand(T * in, -1, 1), *W = frand(out * in, -1, 1), *b = frand(out, -1, 1);
    float *A = frand(r * in, -1, 1), *B = frand(out * r, -1, 1), *dy = frand(T * out, -1, 1);
    float *y = fnan(T * out), *h = fnan(T * r);
    rs_lora_fwd(y, h, x, W, b, A, B, alpha, T, in, out, r, NULL);
    fd_op o = { .ref = ref_lora, .p = { dcopy(x, T * in), dcopy(W, out * in), dcopy(b, out), dcopy(A, r * in), dcopy(B, out * r) },
                .n = { T, in, out, r }, .f = alpha, .ny = T * out, .w = dcopy(dy, T * out), .y = dalloc(T * out) };
    o.ref(&o, o.y);
    double e = nerr(y, o.y, T * out);
    CHECK(e <= FWD_TOL, "lora fwd %g", e);
    float *dx = fnan(T * in), *dA0 = frand(r * in, -1, 1), *dB0 = frand(out * r, -1, 1);
    float *dA = fcopy(dA0, r * in), *dB = fcopy(dB0, out * r), *scratch = fnan(T * r);
    float *Wc = fcopy(W, out * in);
    rs_lora_bwd(dx, dA, dB, scratch, dy, x, h, W, A, B, alpha, T, in, out, r, NULL);
    CHECK((e = fd_check(&o, 0, T * in, dx)) <= BWD_TOL, "lora dx %g", e);
    CHECK((e = fd_check_acc(&o, 3, r * in, dA, dA0)) <= BWD_TOL, "lora dA %g", e);
    CHECK((e = fd_check_acc(&o, 4, out * r, dB, dB0)) <= BWD_TOL, "lora dB %g", e);
    CHECK(memcmp(W, Wc, (size_t)(out * in) * sizeof(float)) == 0, "lora bwd touched W");
    /* merge: x·(W + (alpha/r)·B·A)ᵀ + b equals the LoRA output */
    rs_lora_merge(Wc, A, B, alpha, in, out, r, NULL);
    float *ym = fnan(T * out);
    rs_linear_fwd(ym, x, Wc, b, T, in, out, NULL);
    o.ref(&o, o.y); /* (the finite differences left o.y perturbed) */
    CHECK((e = nerr(ym, o.y, T * out)) <= FWD_TOL, "lora merge %g", e);
    for (int i = 0; i < 5; i++) free(o.p[i]);
    free(o.w); free(o.y); free(x); free(W); free(b); free(A); free(B); free(dy); free(y); free(h);
    free(dx); free(dA0); free(dB0); free(dA); free(dB); free(scratch); free(Wc); free(ym);
}

/* ================================================================ norms */
static void ref_ln(fd_op *o, double *y) {
    rs_layernorm_ref(y, o->p[0], o->p[1], o->p[2], o->n[0], o->n[1], o->f);
}
static void ref_rms(fd_op *o, double *y) {
    rs_rmsnorm_ref(y, o->p[0], o->p[1], o->n[0], o->n[1], o->f);
}

static void norm_case(bool rms, bool affine, int64_t T, int64_t C, float offset) {
    float eps = 1e-5f;
    float *x = frand(T * C, -2, 2), *w = affine ? frand(C, 0.5f, 1.5f) : NULL;
    float *b = affine && !rms ? frand(C, -1, 1) : NULL, *dy = frand(T * C, -1, 1);
    for (int64_t i = 0; i < T * C; i++) x[i] += offset;
    float *y = fnan(T * C), *mean = fnan(T), *rstd = fnan(T);
    if (rms) rs_rmsnorm_fwd(y, rstd, x, w, T, C, eps, NULL);
    else rs_layernorm_fwd(y, mean, rstd, x, w, b, T, C, eps, NULL);
    fd_op o = { .ref = rms ? ref_rms : ref_ln, .p = { dcopy(x, T * C), w ? dcopy(w, C) : NULL, b ? dcopy(b, C) : NULL },
                .n = { T, C }, .f = eps, .ny = T * C, .w = dcopy(dy, T * C), .y = dalloc(T * C) };
    o.ref(&o, o.y);
    double e = nerr(y, o.y, T * C);
    CHECK(e <= FWD_TOL, "%s fwd affine=%d T=%lld C=%lld: %g", rms ? "rmsnorm" : "layernorm", affine,
          (long long)T, (long long)C, e);
    float *dx = fnan(T * C), *dw0 = frand(C, -1, 1), *db0 = frand(C, -1, 1);
    float *dw = fcopy(dw0, C), *db = fcopy(db0, C);
    if (rms) rs_rmsnorm_bwd(dx, w ? dw : NULL, dy, x, w, rstd, T, C, NULL);
    else rs_layernorm_bwd(dx, w ? dw : NULL, b ? db : NULL, dy, x, w, mean, rstd, T, C, NULL);
    CHECK((e = fd_check(&o, 0, T * C, dx)) <= BWD_TOL, "norm dx %g", e);
    if (w) CHECK((e = fd_check_acc(&o, 1, C, dw, dw0)) <= BWD_TOL, "norm dw %g", e);
    if (b) CHECK((e = fd_check_acc(&o, 2, C, db, db0)) <= BWD_TOL, "norm db %g", e);
    /* in place forward gives the same */
    float *xi = fcopy(x, T * C);
    if (rms) rs_rmsnorm_fwd(xi, NULL, xi, w, T, C, eps, NULL);
    else rs_layernorm_fwd(xi, NULL, NULL, xi, w, b, T, C, eps, NULL);
    CHECK(memcmp(xi, y, (size_t)(T * C) * sizeof(float)) == 0, "in-place norm differs");
    for (int i = 0; i < 3; i++) free(o.p[i]);
    free(o.w); free(o.y); free(x); free(w); free(b); free(dy); free(y); free(mean); free(rstd);
    free(dx); free(dw0); free(db0); free(dw); free(db); free(xi);
}

TEST(norms) {
    norm_case(false, true, 5, 11, 3.0f);
    norm_case(false, false, 3, 8, 0.0f);
    norm_case(false, true, 2, 67, -1.0f);
    norm_case(true, true, 5, 11, 0.5f);
    norm_case(true, false, 3, 9, 0.0f);
    norm_case(true, true, 1, 70, 0.0f);
    /* long rows (blocked sums) with a large mean */
    norm_case(false, true, 2, 1500, 50.0f);
    norm_case(true, true, 2, 1500, 0.0f);
}

/* ================================================================ activations */
typedef enum { ACT_GELU, ACT_GELU_TANH, ACT_SILU } act_kind;
static double act_ref(act_kind k, double x) {
    return k == ACT_GELU ? rs_gelu_ref(x) : k == ACT_GELU_TANH ? rs_gelu_tanh_ref(x) : rs_silu_ref(x);
}
static void ref_act(fd_op *o, double *y) {
    for (int64_t i = 0; i < o->n[0]; i++) y[i] = act_ref((act_kind)o->n[1], o->p[0][i]);
}
static void ref_swiglu(fd_op *o, double *y) {
    for (int64_t i = 0; i < o->n[0]; i++) y[i] = rs_silu_ref(o->p[0][i]) * o->p[1][i];
}

TEST(activations) {
    int64_t n = 301;
    const char *names[3] = { "gelu", "gelu_tanh", "silu" };
    for (int k = 0; k < 3; k++) {
        float *x = frand(n, -6, 6), *dy = frand(n, -1, 1), *y = fnan(n), *dx = fnan(n);
        x[0] = 0; x[1] = -20; x[2] = 20;
        if (k == 0) { rs_gelu_fwd(y, x, n, NULL); rs_gelu_bwd(dx, dy, x, n, NULL); }
        if (k == 1) { rs_gelu_tanh_fwd(y, x, n, NULL); rs_gelu_tanh_bwd(dx, dy, x, n, NULL); }
        if (k == 2) { rs_silu_fwd(y, x, n, NULL); rs_silu_bwd(dx, dy, x, n, NULL); }
        fd_op o = { .ref = ref_act, .p = { dcopy(x, n) }, .n = { n, k }, .ny = n, .w = dcopy(dy, n), .y = dalloc(n) };
        o.ref(&o, o.y);
        double e = nerr(y, o.y, n);
        CHECK(e <= FWD_TOL, "%s fwd %g", names[k], e);
        /* elementwise: each element's FD only through its own output */
        CHECK((e = fd_check(&o, 0, n, dx)) <= BWD_TOL, "%s bwd %g", names[k], e);
        free(o.p[0]); free(o.w); free(o.y); free(x); free(dy); free(y); free(dx);
    }
    float *g = frand(n, -6, 6), *u = frand(n, -2, 2), *dy = frand(n, -1, 1), *y = fnan(n);
    float *dg = fnan(n), *du = fnan(n);
    rs_swiglu_fwd(y, g, u, n, NULL);
    rs_swiglu_bwd(dg, du, dy, g, u, n, NULL);
    fd_op o = { .ref = ref_swiglu, .p = { dcopy(g, n), dcopy(u, n) }, .n = { n }, .ny = n, .w = dcopy(dy, n), .y = dalloc(n) };
    o.ref(&o, o.y);
    double e = nerr(y, o.y, n);
    CHECK(e <= FWD_TOL, "swiglu fwd %g", e);
    CHECK((e = fd_check(&o, 0, n, dg)) <= BWD_TOL, "swiglu dg %g", e);
    CHECK((e = fd_check(&o, 1, n, du)) <= BWD_TOL, "swiglu du %g", e);
    /* aliasing dg == dy */
    float *dy2 = fcopy(dy, n);
    rs_swiglu_bwd(dy2, NULL, dy2, g, u, n, NULL);
    CHECK(memcmp(dy2, dg, (size_t)n * sizeof(float)) == 0, "swiglu aliased dg differs");
    free(o.p[0]); free(o.p[1]); free(o.w); free(o.y);
    free(g); free(u); free(dy); free(y); free(dg); free(du); free(dy2);
}

/* Dense grid, pointwise: |kernel − twin| <= 1e-6·max(1, |twin|) for the forward and the
 * derivative (dy = 1; derivative twin by central differences in double). Covers the tails
 * where the own exp / erfc / sigmoid code could lose accuracy. And the private exp itself:
 * relative error <= 3e-7 (about 2 ulp) over its whole unclamped range. */
TEST(activations_grid) {
    int64_t n = 24001;
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4), *d = malloc((size_t)n * 4), *one = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) { x[i] = -12.0f + 24.0f * (float)i / (float)(n - 1); one[i] = 1.0f; }
    const char *names[4] = { "gelu", "gelu_tanh", "silu", "swiglu(u=1)" };
    for (int k = 0; k < 4; k++) {
        if (k == 0) { rs_gelu_fwd(y, x, n, NULL); rs_gelu_bwd(d, one, x, n, NULL); }
        if (k == 1) { rs_gelu_tanh_fwd(y, x, n, NULL); rs_gelu_tanh_bwd(d, one, x, n, NULL); }
        if (k == 2) { rs_silu_fwd(y, x, n, NULL); rs_silu_bwd(d, one, x, n, NULL); }
        if (k == 3) { rs_swiglu_fwd(y, x, one, n, NULL); rs_swiglu_bwd(d, NULL, one, x, one, n, NULL); }
        act_kind ak = k == 0 ? ACT_GELU : k == 1 ? ACT_GELU_TANH : ACT_SILU;
        double ef = 0, eb = 0;
        for (int64_t i = 0; i < n; i++) {
            double r = act_ref(ak, x[i]);
            double rd = (act_ref(ak, x[i] + 1e-5) - act_ref(ak, x[i] - 1e-5)) / 2e-5;
            double e1 = fabs(y[i] - r) / fmax(1.0, fabs(r)), e2 = fabs(d[i] - rd) / fmax(1.0, fabs(rd));
            if (!(e1 <= ef)) ef = isnan(e1) ? INFINITY : e1;
            if (!(e2 <= eb)) eb = isnan(e2) ? INFINITY : e2;
        }
        CHECK(ef <= 1e-6, "%s forward pointwise error %g", names[k], ef);
        CHECK(eb <= 1e-6, "%s derivative pointwise error %g", names[k], eb);
    }
    double ee = 0;
    for (int64_t i = 0; i <= 100000; i++) {
        float v = -87.0f + 175.0f * (float)i / 100000.0f;
        double r = exp((double)v), e = fabs(rs__expf(v) - r) / r;
        if (!(e <= ee)) ee = e;
    }
    CHECK(ee <= 3e-7, "exp relative error %g", ee);
    float nan = NAN;
    CHECK(isnan(rs__expf(nan)), "exp(NaN) not NaN");
    free(x); free(y); free(d); free(one);
}

/* ================================================================ softmax */
static void ref_softmax(fd_op *o, double *y) { rs_softmax_ref(y, o->p[0], o->n[0], o->n[1], o->f); }

TEST(softmax) {
    int64_t R = 4, C = 9;
    float scale = 0.7f;
    float *x = frand(R * C, -4, 4), *dy = frand(R * C, -1, 1), *y = fnan(R * C), *dx = fnan(R * C);
    x[0] = 80; /* large logits stay finite */
    rs_softmax_fwd(y, x, R, C, scale, NULL);
    rs_softmax_bwd(dx, dy, y, R, C, scale, NULL);
    fd_op o = { .ref = ref_softmax, .p = { dcopy(x, R * C) }, .n = { R, C }, .f = scale, .ny = R * C, .w = dcopy(dy, R * C), .y = dalloc(R * C) };
    o.ref(&o, o.y);
    double e = nerr(y, o.y, R * C);
    CHECK(e <= FWD_TOL, "softmax fwd %g", e);
    CHECK((e = fd_check(&o, 0, R * C, dx)) <= BWD_TOL, "softmax bwd %g", e);
    free(o.p[0]); free(o.w); free(o.y); free(x); free(dy); free(y); free(dx);
    /* long rows (vocabulary-sized): the blocked sums stay accurate */
    int64_t V = 32003, T = 3;
    float *lx = frand(T * V, -8, 8), *ly = fnan(T * V);
    double *dx2 = dcopy(lx, T * V), *dy2 = dalloc(T * V);
    rs_softmax_fwd(ly, lx, T, V, 1.0f, NULL);
    rs_softmax_ref(dy2, dx2, T, V, 1.0);
    CHECK((e = nerr(ly, dy2, T * V)) <= FWD_TOL, "softmax V=32003 %g", e);
    int32_t tg[3] = { 0, 17, 32002 };
    float loss;
    REQUIRE(rs_cross_entropy_fwd(&loss, NULL, lx, tg, T, V, RS_IGNORE_INDEX, NULL) == RSMOE_OK, "ce");
    double rl = rs_cross_entropy_ref(dx2, tg, T, V, RS_IGNORE_INDEX);
    CHECK(fabs(loss - rl) <= FWD_TOL * rl, "ce V=32003: %.9g vs %.9g", loss, rl);
    free(lx); free(ly); free(dx2); free(dy2);
}

/* ================================================================ attention */
static void ref_attn(fd_op *o, double *y) {
    rs_attn_ref(y, NULL, o->p[0], o->p[1], o->p[2], (const rs_attn_desc *)o->extra);
}

/* fwd vs twin (output and probabilities), bwd vs FD, optionally threaded */
static void attn_case(const char *name, rs_attn_desc a, rs_pool *pool) {
    int64_t nq = a.Tq * a.Hq * a.d, nk = a.Tk * a.Hkv * a.d;
    float *q = frand(nq, -1.5f, 1.5f), *k = frand(nk, -1.5f, 1.5f), *v = frand(nk, -1, 1);
    float *out = fnan(nq), *probs = fnan(a.Hq * a.Tq * a.Tk), *dout = frand(nq, -1, 1);
    float *out2 = fnan(nq);
    size_t sf = rs_attn_fwd_scratch_floats(&a, rs_pool_size(pool));
    size_t sb = rs_attn_bwd_scratch_floats(&a);
    float *scratch = fnan((int64_t)(sf > sb ? sf : sb));
    REQUIRE(rs_attn_fwd(out, probs, q, k, v, &a, NULL, pool) == RSMOE_OK, "%s: %s", name, rsmoe_last_error());
    REQUIRE(rs_attn_fwd(out2, NULL, q, k, v, &a, scratch, pool) == RSMOE_OK, "%s", rsmoe_last_error());
    fd_op o = { .ref = ref_attn, .p = { dcopy(q, nq), dcopy(k, nk), dcopy(v, nk) }, .extra = &a,
                .ny = nq, .w = dcopy(dout, nq), .y = dalloc(nq) };
    double *pr = dalloc(a.Hq * a.Tq * a.Tk);
    rs_attn_ref(o.y, pr, o.p[0], o.p[1], o.p[2], &a);
    double e = nerr(out, o.y, nq);
    CHECK(e <= FWD_TOL, "%s fwd %g", name, e);
    CHECK((e = nerr(probs, pr, a.Hq * a.Tq * a.Tk)) <= FWD_TOL, "%s probs %g", name, e);
    CHECK((e = nerr(out2, o.y, nq)) <= FWD_TOL, "%s fwd without probs %g", name, e);
    float *dq = fnan(nq), *dk = fnan(nk), *dv = fnan(nk);
    REQUIRE(rs_attn_bwd(dq, dk, dv, dout, q, k, v, probs, &a, scratch, pool) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK((e = fd_check(&o, 0, nq, dq)) <= BWD_TOL, "%s dq %g", name, e);
    CHECK((e = fd_check(&o, 1, nk, dk)) <= BWD_TOL, "%s dk %g", name, e);
    CHECK((e = fd_check(&o, 2, nk, dv)) <= BWD_TOL, "%s dv %g", name, e);
    for (int i = 0; i < 3; i++) free(o.p[i]);
    free(o.w); free(o.y); free(pr); free(q); free(k); free(v); free(out); free(out2); free(probs);
    free(dout); free(scratch); free(dq); free(dk); free(dv);
}

static rs_attn_desc attn_desc(int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t d,
                              bool causal, int64_t off) {
    rs_attn_desc a = { .Tq = Tq, .Tk = Tk, .Hq = Hq, .Hkv = Hkv, .d = d, .causal = causal, .q_offset = off };
    return a;
}

static void attn_all(rs_pool *pool) {
    static const uint8_t valid[25] = { 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1 };
    static const uint8_t valid0[8] = { 0, 1, 1, 0, 1, 1, 1, 1 };
    /* direct path (Tq < 16) */
    attn_case("bidir gqa", attn_desc(6, 6, 4, 2, 8, false, 0), pool);
    attn_case("causal gqa", attn_desc(6, 6, 4, 2, 8, true, 0), pool);
    attn_case("causal offset", attn_desc(3, 7, 2, 1, 5, true, 4), pool);
    attn_case("decode p=9", attn_desc(1, 10, 4, 2, 8, true, 9), pool);
    rs_attn_desc m = attn_desc(5, 9, 3, 1, 7, false, 0);
    m.key_valid = valid;
    attn_case("cross mqa + padding", m, pool);
    rs_attn_desc e = attn_desc(4, 8, 2, 2, 4, true, 0);
    e.key_valid = valid0; /* row 0 sees only key 0, which is padding: empty row */
    attn_case("causal + padding, empty row", e, pool);
    rs_attn_desc s = attn_desc(4, 5, 2, 1, 6, false, 0);
    s.scale = 0.3f;
    attn_case("explicit scale", s, pool);
    /* gemm path (Tq >= 16) */
    attn_case("gemm causal gqa", attn_desc(20, 20, 4, 2, 8, true, 0), pool);
    rs_attn_desc g = attn_desc(18, 25, 2, 2, 9, false, 0);
    g.key_valid = valid;
    attn_case("gemm cross + padding", g, pool);
    rs_attn_desc ge = attn_desc(16, 19, 3, 1, 4, true, 3);
    ge.key_valid = valid;
    attn_case("gemm causal offset + padding", ge, pool);
}

TEST(attention) { attn_all(NULL); }

/* views into a fused [T, (Hq+2·Hkv)·d] qkv buffer and a wider output give the same as
 * dense buffers, on both paths, forward and backward */
TEST(attention_strides) {
    int64_t Ts[2] = { 5, 21 };
    for (int c = 0; c < 2; c++) {
        int64_t T = Ts[c], Hq = 4, Hkv = 2, d = 6, W = (Hq + 2 * Hkv) * d, ldo = Hq * d + 3;
        rs_attn_desc a = attn_desc(T, T, Hq, Hkv, d, true, 0);
        float *qkv = frand(T * W, -1, 1), *q = fnan(T * Hq * d), *k = fnan(T * Hkv * d), *v = fnan(T * Hkv * d);
        for (int64_t t = 0; t < T; t++) {
            memcpy(q + t * Hq * d, qkv + t * W, (size_t)(Hq * d) * sizeof(float));
            memcpy(k + t * Hkv * d, qkv + t * W + Hq * d, (size_t)(Hkv * d) * sizeof(float));
            memcpy(v + t * Hkv * d, qkv + t * W + (Hq + Hkv) * d, (size_t)(Hkv * d) * sizeof(float));
        }
        float *o1 = fnan(T * Hq * d), *o2 = fnan(T * ldo), *p1 = fnan(Hq * T * T), *p2 = fnan(Hq * T * T);
        float *dout = frand(T * Hq * d, -1, 1), *sc = fnan(T * T);
        REQUIRE(rs_attn_fwd(o1, p1, q, k, v, &a, NULL, NULL) == RSMOE_OK, "dense");
        rs_attn_desc b = a;
        b.ldq = b.ldk = b.ldv = W; b.ldo = ldo;
        REQUIRE(rs_attn_fwd(o2, p2, qkv, qkv + Hq * d, qkv + (Hq + Hkv) * d, &b, NULL, NULL) == RSMOE_OK, "strided");
        double md = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < Hq * d; i++) {
                double df = fabs((double)o1[t * Hq * d + i] - o2[t * ldo + i]);
                if (!(df <= md)) md = isnan(df) ? INFINITY : df;
            }
        CHECK(md <= 1e-6, "T=%lld strided fwd differs by %g", (long long)T, md);
        float *dq1 = fnan(T * Hq * d), *dk1 = fnan(T * Hkv * d), *dv1 = fnan(T * Hkv * d);
        float *dq2 = fnan(T * Hq * d), *dk2 = fnan(T * Hkv * d), *dv2 = fnan(T * Hkv * d);
        rs_attn_bwd(dq1, dk1, dv1, dout, q, k, v, p1, &a, sc, NULL);
        rs_attn_bwd(dq2, dk2, dv2, dout, qkv, qkv + Hq * d, qkv + (Hq + Hkv) * d, p2, &b, sc, NULL);
        CHECK(test_nerr_f32(dq2, dq1, (size_t)(T * Hq * d)) <= 1e-6, "strided dq");
        CHECK(test_nerr_f32(dk2, dk1, (size_t)(T * Hkv * d)) <= 1e-6, "strided dk");
        CHECK(test_nerr_f32(dv2, dv1, (size_t)(T * Hkv * d)) <= 1e-6, "strided dv");
        free(qkv); free(q); free(k); free(v); free(o1); free(o2); free(p1); free(p2); free(dout); free(sc);
        free(dq1); free(dk1); free(dv1); free(dq2); free(dk2); free(dv2);
    }
}

/* decoding with a KV cache, one token at a time, equals the causal prompt pass */
TEST(attention_kv_cache) {
    int64_t T = 7, Hq = 4, Hkv = 2, d = 8;
    float *q = frand(T * Hq * d, -1, 1), *k = frand(T * Hkv * d, -1, 1), *v = frand(T * Hkv * d, -1, 1);
    float *full = fnan(T * Hq * d), *step = fnan(T * Hq * d), *sc = fnan(T * T);
    rs_attn_desc a = attn_desc(T, T, Hq, Hkv, d, true, 0);
    REQUIRE(rs_attn_fwd(full, NULL, q, k, v, &a, sc, NULL) == RSMOE_OK, "full");
    for (int64_t p = 0; p < T; p++) {
        rs_attn_desc s = attn_desc(1, p + 1, Hq, Hkv, d, true, p);
        REQUIRE(rs_attn_fwd(step + p * Hq * d, NULL, q + p * Hq * d, k, v, &s, sc, NULL) == RSMOE_OK, "step");
    }
    CHECK(test_nerr_f32(step, full, (size_t)(T * Hq * d)) <= 1e-6, "kv-cache decode differs");
    /* a prompt continuing a cache: last 3 queries with offset Tk - Tq */
    rs_attn_desc c = attn_desc(3, T, Hq, Hkv, d, true, T - 3);
    REQUIRE(rs_attn_fwd(step, NULL, q + (T - 3) * Hq * d, k, v, &c, sc, NULL) == RSMOE_OK, "chunk");
    CHECK(test_nerr_f32(step, full + (T - 3) * Hq * d, (size_t)(3 * Hq * d)) <= 1e-6, "chunked prefill differs");
    free(q); free(k); free(v); free(full); free(step); free(sc);
    /* scratch sized for the largest Tq covers every smaller one */
    int nths[3] = { 1, 2, 64 };
    for (int t = 0; t < 3; t++) {
        size_t prev = 0;
        for (int64_t tq = 1; tq <= 80; tq++) {
            rs_attn_desc s = attn_desc(tq, 33, 4, 2, 8, true, 0);
            size_t z = rs_attn_fwd_scratch_floats(&s, nths[t]);
            CHECK(z >= prev, "scratch shrinks at Tq=%lld nthreads=%d", (long long)tq, nths[t]);
            prev = z;
        }
    }
}

/* ================================================================ RoPE */
static void ref_rope(fd_op *o, double *y) {
    rs_rope_ref(y, o->p[0], o->ids, 0, o->n[0], o->n[1], o->n[2], (const rs_rope_cfg *)o->extra);
}

TEST(rope) {
    int64_t T = 5, H = 3, d = 16, n = T * H * d;
    int32_t pos[5] = { 0, 1, 17, 5000, 100000 };
    for (int form = 0; form < 4; form++) {
        rs_rope_cfg c = rs_rope_default();
        c.interleaved = form & 1;
        c.llama3 = form & 2;
        c.theta = form & 2 ? 500000.0 : 10000.0;
        float *x = frand(n, -1, 1), *dy = frand(n, -1, 1), *y = fcopy(x, n), *dx = fcopy(dy, n);
        REQUIRE(rs_rope_fwd(y, pos, 0, T, H, d, 0, &c, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        REQUIRE(rs_rope_bwd(dx, pos, 0, T, H, d, 0, &c, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        fd_op o = { .ref = ref_rope, .p = { dcopy(x, n) }, .n = { T, H, d }, .extra = &c, .ids = pos,
                    .ny = n, .w = dcopy(dy, n), .y = dalloc(n) };
        o.ref(&o, o.y);
        double e = nerr(y, o.y, n);
        CHECK(e <= FWD_TOL, "rope interleaved=%d llama3=%d fwd %g", c.interleaved, c.llama3, e);
        CHECK((e = fd_check(&o, 0, n, dx)) <= BWD_TOL, "rope interleaved=%d llama3=%d bwd %g", c.interleaved, c.llama3, e);
        /* pos NULL with pos0, and a row stride */
        int64_t ld = H * d + 5;
        float *xs = fnan(T * ld);
        for (int64_t t = 0; t < T; t++) memcpy(xs + t * ld, x + t * H * d, (size_t)(H * d) * sizeof(float));
        int32_t pp[5] = { 7, 8, 9, 10, 11 };
        REQUIRE(rs_rope_fwd(xs, NULL, 7, T, H, d, ld, &c, NULL) == RSMOE_OK, "strided");
        o.ids = pp;
        o.ref(&o, o.y);
        double md = 0, mb = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < H * d; i++) {
                double df = fabs(xs[t * ld + i] - o.y[t * H * d + i]);
                if (!(df <= md)) md = df;
                if (fabs(o.y[t * H * d + i]) > mb) mb = fabs(o.y[t * H * d + i]);
            }
        CHECK(md / mb <= FWD_TOL, "rope pos0 + stride %g", md / mb);
        free(o.p[0]); free(o.w); free(o.y); free(x); free(dy); free(y); free(dx); free(xs);
    }
    /* the two forms are related by the permutation llama.cpp's converter applies */
    rs_rope_cfg c = rs_rope_default();
    float *x = frand(d, -1, 1), *xi = fnan(d);
    for (int64_t i = 0; i < d / 2; i++) { xi[2 * i] = x[i]; xi[2 * i + 1] = x[i + d / 2]; }
    c.interleaved = false;
    rs_rope_fwd(x, NULL, 3, 1, 1, d, 0, &c, NULL);
    c.interleaved = true;
    rs_rope_fwd(xi, NULL, 3, 1, 1, d, 0, &c, NULL);
    int same = 1;
    for (int64_t i = 0; i < d / 2; i++) same &= xi[2 * i] == x[i] && xi[2 * i + 1] == x[i + d / 2];
    CHECK(same, "permuted interleaved rope differs from neox rope");
    free(x); free(xi);
}

/* ================================================================ embedding */
static void ref_emb(fd_op *o, double *y) { rs_embedding_ref(y, o->p[0], o->ids, o->n[0], o->n[1]); }

TEST(embedding) {
    int64_t T = 6, V = 5, C = 7;
    int32_t ids[6] = { 3, 0, 3, 4, 1, 3 };
    float *tab = frand(V * C, -1, 1), *y = fnan(T * C), *dy = frand(T * C, -1, 1);
    REQUIRE(rs_embedding_fwd(y, tab, ids, T, V, C) == RSMOE_OK, "fwd");
    fd_op o = { .ref = ref_emb, .p = { dcopy(tab, V * C) }, .n = { T, C }, .ids = ids, .ny = T * C,
                .w = dcopy(dy, T * C), .y = dalloc(T * C) };
    o.ref(&o, o.y);
    CHECK(nerr(y, o.y, T * C) == 0, "embedding fwd not exact");
    float *dt0 = frand(V * C, -1, 1), *dt = fcopy(dt0, V * C);
    REQUIRE(rs_embedding_bwd(dt, dy, ids, T, V, C) == RSMOE_OK, "bwd");
    double e = fd_check_acc(&o, 0, V * C, dt, dt0);
    CHECK(e <= BWD_TOL, "embedding bwd %g", e);
    int32_t bad[2] = { 1, 5 };
    CHECK(rs_embedding_fwd(y, tab, bad, 2, V, C) == RSMOE_ERR_INVALID_ARG, "id 5 of 5 accepted");
    bad[1] = -1;
    CHECK(rs_embedding_bwd(dt, dy, bad, 2, V, C) == RSMOE_ERR_INVALID_ARG, "id -1 accepted");
    free(o.p[0]); free(o.w); free(o.y); free(tab); free(y); free(dy); free(dt0); free(dt);
}

/* ================================================================ patch embedding */
static void ref_patch(fd_op *o, double *y) {
    rs_patch_embed_ref(y, o->p[0], o->n[0], o->n[1], o->n[2], o->n[3], o->n[4], o->n[5], o->p[1], o->p[2]);
}

static void patch_case(int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t P, int64_t width, rs_pool *pool) {
    int64_t np = (H / P) * (W / P), K = Cin * P * P, ni = B * Cin * H * W;
    float *img = frand(ni, 0, 1), *Wt = frand(width * K, -0.5f, 0.5f), *b = frand(width, -1, 1);
    float *out = fnan(B * np * width), *cols = fnan(B * np * K), *dout = frand(B * np * width, -1, 1);
    REQUIRE(rs_patch_embed_fwd(out, cols, img, B, Cin, H, W, P, width, Wt, b, pool) == RSMOE_OK, "%s", rsmoe_last_error());
    fd_op o = { .ref = ref_patch, .p = { dcopy(img, ni), dcopy(Wt, width * K), dcopy(b, width) },
                .n = { B, Cin, H, W, P, width }, .ny = B * np * width, .w = dcopy(dout, B * np * width),
                .y = dalloc(B * np * width) };
    o.ref(&o, o.y);
    double e = nerr(out, o.y, B * np * width);
    CHECK(e <= FWD_TOL, "patch fwd %lldx%lld P=%lld: %g", (long long)H, (long long)W, (long long)P, e);
    float *dimg = fnan(ni), *dW0 = frand(width * K, -1, 1), *db0 = frand(width, -1, 1);
    float *dW = fcopy(dW0, width * K), *db = fcopy(db0, width), *scratch = fnan(B * np * K);
    REQUIRE(rs_patch_embed_bwd(dimg, dW, db, scratch, dout, cols, Wt, B, Cin, H, W, P, width, pool) == RSMOE_OK, "bwd");
    CHECK((e = fd_check(&o, 0, ni, dimg)) <= BWD_TOL, "patch dimg %g", e);
    CHECK((e = fd_check_acc(&o, 1, width * K, dW, dW0)) <= BWD_TOL, "patch dW %g", e);
    CHECK((e = fd_check_acc(&o, 2, width, db, db0)) <= BWD_TOL, "patch db %g", e);
    for (int i = 0; i < 3; i++) free(o.p[i]);
    free(o.w); free(o.y); free(img); free(Wt); free(b); free(out); free(cols); free(dout);
    free(dimg); free(dW0); free(db0); free(dW); free(db); free(scratch);
}

TEST(patch_embed) {
    patch_case(2, 3, 10, 9, 3, 5, NULL);  /* last pixel row outside every patch */
    patch_case(1, 3, 8, 8, 4, 7, NULL);
    float x[16] = { 0 }, w[16] = { 0 }, y[4], cols[16];
    CHECK(rs_patch_embed_fwd(y, cols, x, 1, 1, 2, 2, 3, 1, w, NULL, NULL) == RSMOE_ERR_INVALID_ARG,
          "image smaller than patch accepted");
    CHECK(rs_patch_embed_fwd(y, cols, x, 1, 0, 4, 4, 2, 1, w, NULL, NULL) == RSMOE_ERR_INVALID_ARG,
          "0 channels accepted");
}

/* ================================================================ cross-entropy */
static void ref_ce(fd_op *o, double *y) {
    y[0] = rs_cross_entropy_ref(o->p[0], o->ids, o->n[0], o->n[1], RS_IGNORE_INDEX);
}

TEST(cross_entropy) {
    int64_t T = 6, V = 7;
    int32_t tg[6] = { 2, RS_IGNORE_INDEX, 0, 6, RS_IGNORE_INDEX, 3 };
    float *lg = frand(T * V, -5, 5), *dl = fnan(T * V);
    lg[0] = 1000; lg[1] = 1001; /* stability: no overflow */
    float loss = NAN, dloss = 1.3f;
    int64_t nv = -1;
    REQUIRE(rs_cross_entropy_fwd(&loss, &nv, lg, tg, T, V, RS_IGNORE_INDEX, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(nv == 4, "n_valid %lld", (long long)nv);
    double w = dloss;
    fd_op o = { .ref = ref_ce, .p = { dcopy(lg, T * V) }, .n = { T, V }, .ids = tg, .ny = 1, .w = &w, .y = dalloc(1) };
    o.ref(&o, o.y);
    CHECK(fabs(loss - o.y[0]) <= FWD_TOL * fabs(o.y[0]), "ce %g vs %g", loss, o.y[0]);
    REQUIRE(rs_cross_entropy_bwd(dl, lg, tg, T, V, RS_IGNORE_INDEX, dloss, NULL) == RSMOE_OK, "bwd");
    double e = fd_check(&o, 0, T * V, dl);
    CHECK(e <= BWD_TOL, "ce bwd %g", e);
    /* in place (dlogits == logits) */
    float *al = fcopy(lg, T * V);
    rs_cross_entropy_bwd(al, al, tg, T, V, RS_IGNORE_INDEX, dloss, NULL);
    CHECK(memcmp(al, dl, (size_t)(T * V) * sizeof(float)) == 0, "in-place ce bwd differs");
    /* all ignored: loss 0, zero gradient */
    int32_t ig[6];
    for (int i = 0; i < 6; i++) ig[i] = RS_IGNORE_INDEX;
    loss = NAN;
    CHECK(rs_cross_entropy_fwd(&loss, &nv, lg, ig, T, V, RS_IGNORE_INDEX, NULL) == RSMOE_OK && loss == 0 && nv == 0,
          "all-ignored loss %g n %lld", loss, (long long)nv);
    rs_cross_entropy_bwd(dl, lg, ig, T, V, RS_IGNORE_INDEX, 1.0f, NULL);
    int zero = 1;
    for (int64_t i = 0; i < T * V; i++) zero &= dl[i] == 0.0f;
    CHECK(zero, "all-ignored gradient not zero");
    /* bad target, NaN logits */
    int32_t bad[6] = { 0, 1, 7, 0, 0, 0 };
    CHECK(rs_cross_entropy_fwd(&loss, NULL, lg, bad, T, V, RS_IGNORE_INDEX, NULL) == RSMOE_ERR_INVALID_ARG, "target 7 of 7 accepted");
    CHECK(rs_cross_entropy_bwd(dl, lg, bad, T, V, RS_IGNORE_INDEX, 1.0f, NULL) == RSMOE_ERR_INVALID_ARG, "bwd target 7 accepted");
    lg[2 * V + 1] = NAN;
    CHECK(rs_cross_entropy_fwd(&loss, NULL, lg, tg, T, V, RS_IGNORE_INDEX, NULL) == RSMOE_ERR_NUMERIC, "NaN logits accepted");
    free(o.p[0]); free(o.y); free(lg); free(dl); free(al);
}

/* ================================================================ AdamW, clipping */
TEST(adamw) {
    int64_t n = 53;
    rs_adamw_cfg c = { .lr = 0.01f, .beta1 = 0.8f, .beta2 = 0.95f, .eps = 1e-6f, .weight_decay = 0.1f };
    float *p = frand(n, -1, 1), *m = calloc((size_t)n, sizeof(float)), *v = calloc((size_t)n, sizeof(float));
    double *pd = dcopy(p, n), *md = dalloc(n), *vd = dalloc(n);
    for (int step = 1; step <= 6; step++) {
        float *g = frand(n, -2, 2);
        if (step == 3) g[0] = 0; /* zero gradient with live moments */
        double *gd = dcopy(g, n);
        rs_adamw_step(p, g, m, v, n, step, &c, NULL);
        rs_adamw_ref(pd, gd, md, vd, n, step, &c);
        free(g); free(gd);
    }
    double e = nerr(p, pd, n);
    CHECK(e <= FWD_TOL, "adamw params after 6 steps %g", e);
    CHECK((e = nerr(m, md, n)) <= FWD_TOL, "adamw m %g", e);
    CHECK((e = nerr(v, vd, n)) <= FWD_TOL, "adamw v %g", e);
    free(p); free(m); free(v); free(pd); free(md); free(vd);
}

TEST(clip_grad_norm) {
    float a[3] = { 3, 0, 0 }, b[2] = { 0, 4 };
    float *gs[2] = { a, b };
    int64_t sz[2] = { 3, 2 };
    double norm = 0;
    CHECK(rs_clip_grad_norm(gs, sz, 2, 10.0f, &norm) == RSMOE_OK && norm == 5.0 && a[0] == 3 && b[1] == 4,
          "no clip below max: norm %g", norm);
    CHECK(rs_clip_grad_norm(gs, sz, 2, 1.0f, &norm) == RSMOE_OK && norm == 5.0, "clip");
    CHECK(fabs(a[0] - 3 / (5 + 1e-6)) < 1e-7 && fabs(b[1] - 4 / (5 + 1e-6)) < 1e-7, "clipped %g %g", a[0], b[1]);
    CHECK(fabs(rs_grad_global_norm(gs, sz, 2) - 5 / (5 + 1e-6)) < 1e-6, "norm after clip");
    b[0] = INFINITY;
    float a0 = a[0];
    CHECK(rs_clip_grad_norm(gs, sz, 2, 1.0f, &norm) == RSMOE_ERR_NUMERIC && a[0] == a0, "inf gradient");
}

/* ================================================================ threads */
TEST(threaded) {
    rs_pool *pool = rs_pool_new(2);
    REQUIRE(pool, "pool");
    rs_pool_set_min_work(pool, 0); /* threaded, however small */
    attn_all(pool);
    patch_case(2, 3, 10, 9, 3, 5, pool);
    /* larger elementwise / row ops that cross the threading thresholds: pool vs none */
    int64_t T = 64, C = 600, n = T * C;
    float *x = frand(n, -3, 3), *dy = frand(n, -1, 1), *w = frand(C, 0.5f, 1.5f), *b = frand(C, -1, 1);
    float *y1 = fnan(n), *y2 = fnan(n), *m1 = fnan(T), *r1 = fnan(T), *m2 = fnan(T), *r2 = fnan(T);
    rs_layernorm_fwd(y1, m1, r1, x, w, b, T, C, 1e-5f, NULL);
    rs_layernorm_fwd(y2, m2, r2, x, w, b, T, C, 1e-5f, pool);
    CHECK(memcmp(y1, y2, (size_t)n * sizeof(float)) == 0, "threaded layernorm fwd differs");
    float *dx1 = fnan(n), *dx2 = fnan(n), *dw1 = calloc((size_t)C, 4), *dw2 = calloc((size_t)C, 4);
    float *db1 = calloc((size_t)C, 4), *db2 = calloc((size_t)C, 4);
    rs_layernorm_bwd(dx1, dw1, db1, dy, x, w, m1, r1, T, C, NULL);
    rs_layernorm_bwd(dx2, dw2, db2, dy, x, w, m1, r1, T, C, pool);
    CHECK(memcmp(dx1, dx2, (size_t)n * sizeof(float)) == 0 && memcmp(dw1, dw2, (size_t)C * 4) == 0 &&
          memcmp(db1, db2, (size_t)C * 4) == 0, "threaded layernorm bwd differs");
    rs_gelu_fwd(y1, x, n, NULL);
    rs_gelu_fwd(y2, x, n, pool);
    CHECK(memcmp(y1, y2, (size_t)n * sizeof(float)) == 0, "threaded gelu differs");
    rs_softmax_fwd(y1, x, T, C, 1.0f, NULL);
    rs_softmax_fwd(y2, x, T, C, 1.0f, pool);
    CHECK(memcmp(y1, y2, (size_t)n * sizeof(float)) == 0, "threaded softmax differs");
    int32_t *tg = malloc((size_t)T * sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) tg[t] = t % 5 == 0 ? RS_IGNORE_INDEX : (int32_t)((t * 37) % C);
    float l1, l2;
    rs_cross_entropy_fwd(&l1, NULL, x, tg, T, C, RS_IGNORE_INDEX, NULL);
    rs_cross_entropy_fwd(&l2, NULL, x, tg, T, C, RS_IGNORE_INDEX, pool);
    CHECK(fabs(l1 - l2) <= 1e-6 * fabs(l1), "threaded ce %g vs %g", l1, l2);
    rs_rope_cfg rc = rs_rope_default();
    memcpy(y1, x, (size_t)n * 4); memcpy(y2, x, (size_t)n * 4);
    rs_rope_fwd(y1, NULL, 0, T, 10, 60, 0, &rc, NULL);
    rs_rope_fwd(y2, NULL, 0, T, 10, 60, 0, &rc, pool);
    CHECK(memcmp(y1, y2, (size_t)n * sizeof(float)) == 0, "threaded rope differs");
    free(x); free(dy); free(w); free(b); free(y1); free(y2); free(m1); free(r1); free(m2); free(r2);
    free(dx1); free(dx2); free(dw1); free(dw2); free(db1); free(db2); free(tg);
    rs_pool_free(pool);
}

/* ================================================================ bad arguments */
TEST(bad_arguments) {
    float buf[64] = { 0 };
    rs_attn_desc a = attn_desc(2, 2, 3, 2, 4, false, 0);
    CHECK(rs_attn_fwd(buf, buf, buf, buf, buf, &a, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "Hq 3 / Hkv 2 accepted");
    CHECK(strstr(rsmoe_last_error(), "multiple") != NULL, "message: %s", rsmoe_last_error());
    a = attn_desc(2, 2, 2, 2, 4, true, -1);
    CHECK(rs_attn_fwd(buf, buf, buf, buf, buf, &a, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "negative offset accepted");
    a = attn_desc(0, 2, 2, 2, 4, false, 0);
    CHECK(rs_attn_fwd(buf, buf, buf, buf, buf, &a, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "Tq 0 accepted");
    a = attn_desc(2, 2, 2, 2, 4, false, 0);
    a.ldq = 3;
    CHECK(rs_attn_fwd(buf, buf, buf, buf, buf, &a, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "short stride accepted");
    a.ldq = 0;
    CHECK(rs_attn_fwd(buf, NULL, buf, buf, buf, &a, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "no probs and no scratch accepted");
    CHECK(rs_attn_bwd(buf, buf, buf, buf, buf, buf, buf, NULL, &a, buf, NULL) == RSMOE_ERR_INVALID_ARG, "bwd without probs accepted");
    rs_rope_cfg c = rs_rope_default();
    CHECK(rs_rope_fwd(buf, NULL, 0, 1, 1, 5, 0, &c, NULL) == RSMOE_ERR_INVALID_ARG, "odd head dim accepted");
    CHECK(rs_rope_fwd(buf, NULL, 0, 1, 1, RS_ROPE_MAX_D + 2, 0, &c, NULL) == RSMOE_ERR_INVALID_ARG, "huge head dim accepted");
    c.theta = 0;
    CHECK(rs_rope_fwd(buf, NULL, 0, 1, 1, 4, 0, &c, NULL) == RSMOE_ERR_INVALID_ARG, "theta 0 accepted");
    c = rs_rope_default();
    c.llama3 = true; c.high_freq_factor = c.low_freq_factor;
    CHECK(rs_rope_fwd(buf, NULL, 0, 1, 1, 4, 0, &c, NULL) == RSMOE_ERR_INVALID_ARG, "bad llama3 factors accepted");
    int32_t id = 0;
    CHECK(rs_embedding_fwd(buf, buf, &id, 1, 0, 4) == RSMOE_ERR_INVALID_ARG, "V 0 accepted");
    float loss;
    CHECK(rs_cross_entropy_fwd(&loss, NULL, buf, &id, 1, 0, RS_IGNORE_INDEX, NULL) == RSMOE_ERR_INVALID_ARG, "V 0 accepted");
}

int main(void) {
    rs_rng_seed(&g_rng, 20261204);
    RUN(hand_values);
    RUN(linear);
    RUN(lora);
    RUN(lora_rows);
    RUN(norms);
    RUN(activations);
    RUN(activations_grid);
    RUN(softmax);
    RUN(attention);
    RUN(attention_strides);
    RUN(attention_kv_cache);
    RUN(rope);
    RUN(embedding);
    RUN(patch_embed);
    RUN(cross_entropy);
    RUN(adamw);
    RUN(clip_grad_norm);
    RUN(threaded);
    RUN(bad_arguments);
    return test_summary();
}
