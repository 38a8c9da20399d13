/* ops.c - fp32 kernels: helpers, linear, LoRA, norms, activations, softmax, embedding,
 * patch embedding, cross-entropy, AdamW, gradient clipping. Attention is in attention.c,
 * RoPE in rope.c, the sigmoid-based forward activations (SiLU, SwiGLU, tanh-GELU) in
 * ops_act.c, the double twins in ops_ref.c. */
/* Let GCC if-convert the clamps and selects of the inline exp/erfc code so that the
 * elementwise loops vectorise (we never rely on floating-point exception flags). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-math-errno", "fp-contract=fast")
#endif
/* 512-bit vectors for the loops GCC vectorises (its -march=native default prefers 256 bits):
 * the exp/erfc-based activations 1.3-1.6x faster on an AVX-512 Xeon (`rsmoe bench kernels`,
 * activations). Each lane computes what a narrower one does: the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("prefer-vector-width=512")
#endif
#include "kernels/ops.h"
#include "kernels/ops_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if __has_include("kernels/gemm.h")
#include "kernels/gemm.h"
#else
/* temporary stand-in until gemm.h lands (row-major, beta == 0: C not read) */
static void rs_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc, rs_pool *pool) {
    (void)pool;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t p = 0; p < K; p++)
                s += (double)(transA ? A[p * lda + i] : A[i * lda + p]) *
                     (double)(transB ? B[j * ldb + p] : B[p * ldb + j]);
            C[i * ldc + j] = (float)(alpha * s + (beta == 0 ? 0.0 : (double)beta * C[i * ldc + j]));
        }
}
#endif

/* ================================================================ helpers */
void rs_vec_copy(float *dst, const float *src, int64_t n) {
    if (n > 0 && dst != src) memmove(dst, src, (size_t)n * sizeof(float));
}
void rs_vec_zero(float *y, int64_t n) {
    if (n > 0) memset(y, 0, (size_t)n * sizeof(float));
}
void rs_vec_add(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
void rs_vec_acc(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
void rs_vec_axpy(float *y, float alpha, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}
void rs_vec_mul(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}
void rs_vec_scale(float *y, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}
float rs_vec_dot(const float *a, const float *b, int64_t n) {
    return n > 0 ? rs__dot(a, b, n) : 0.0f;
}
void rs_add_bias_rows(float *y, const float *b, int64_t rows, int64_t cols) {
    for (int64_t t = 0; t < rows; t++) rs_vec_acc(y + t * cols, b, cols);
}

/* ================================================================ linear */
void rs_linear_fwd(float *y, const float *x, const float *W, const float *b, int64_t T,
                   int64_t in, int64_t out, rs_pool *pool) {
    if (T <= 0 || out <= 0) return;
    if (b) {
        for (int64_t t = 0; t < T; t++) memcpy(y + t * out, b, (size_t)out * sizeof(float));
        rs_sgemm(false, true, T, out, in, 1.0f, x, in, W, in, 1.0f, y, out, pool);
    } else {
        rs_sgemm(false, true, T, out, in, 1.0f, x, in, W, in, 0.0f, y, out, pool);
    }
}

/* db[o] += Σ_t dy[t, o] */
static void bias_grad(float *db, const float *dy, int64_t T, int64_t out) {
    for (int64_t t = 0; t < T; t++) rs_vec_acc(db, dy + t * out, out);
}

void rs_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                   const float *W, int64_t T, int64_t in, int64_t out, rs_pool *pool) {
    if (T <= 0 || in <= 0 || out <= 0) {
        if (dx && T > 0 && in > 0) rs_vec_zero(dx, T * in);
        return;
    }
    if (dx) rs_sgemm(false, false, T, in, out, 1.0f, dy, out, W, in, 0.0f, dx, in, pool);
    if (dW) rs_sgemm(true, false, out, in, T, 1.0f, dy, out, x, in, 1.0f, dW, in, pool);
    if (db) bias_grad(db, dy, T, out);
}

/* ================================================================ LoRA */
void rs_lora_fwd(float *y, float *h, const float *x, const float *W, const float *b,
                 const float *A, const float *B, float alpha, int64_t T, int64_t in,
                 int64_t out, int64_t r, rs_pool *pool) {
    rs_linear_fwd(y, x, W, b, T, in, out, pool);
    if (T <= 0 || r <= 0 || out <= 0) return;
    float s = alpha / (float)r;
    rs_sgemm(false, true, T, r, in, 1.0f, x, in, A, in, 0.0f, h, r, pool);
    rs_sgemm(false, true, T, out, r, s, h, r, B, r, 1.0f, y, out, pool);
}

void rs_lora_bwd(float *dx, float *dA, float *dB, float *scratch, const float *dy,
                 const float *x, const float *h, const float *W, const float *A,
                 const float *B, float alpha, int64_t T, int64_t in, int64_t out, int64_t r,
                 rs_pool *pool) {
    rs_linear_bwd(dx, NULL, NULL, dy, x, W, T, in, out, pool);
    if (T <= 0 || r <= 0 || out <= 0 || in <= 0) return;
    float s = alpha / (float)r;
    if (dB) rs_sgemm(true, false, out, r, T, s, dy, out, h, r, 1.0f, dB, r, pool);
    if (!dA && !dx) return;
    float *dh = scratch; /* [T, r] = s * dy·B */
    rs_sgemm(false, false, T, r, out, s, dy, out, B, r, 0.0f, dh, r, pool);
    if (dA) rs_sgemm(true, false, r, in, T, 1.0f, dh, r, x, in, 1.0f, dA, in, pool);
    if (dx) rs_sgemm(false, false, T, in, r, 1.0f, dh, r, A, in, 1.0f, dx, in, pool);
}

/* few-row LoRA: phase 1 the R·r dot products h = x·Aᵀ (items: (target, row, j)), phase 2 the
 * outputs y += scale·h·Bᵀ (items: 64-column chunks of each (target, row)) */
typedef struct {
    const float *x;
    int64_t in;
    int R, r_max;
    const rs_lora_rows_target *tg;
    float *h;
    int64_t cols[RS_LORA_ROWS_MAX_JOBS + 1]; /* phase 2: first flat column of each (target, row) */
    rs_chunks items;
} lora_rows_job;

/* NR dot products of a with the rows of B (row q at B + q * ldb), each in 16 lanes: lane t sums
 * the k = t (mod 16) terms in order, then the lanes are summed in order. NR = 8 reads a rank-8
 * A's rows side by side in one pass over a instead of one short (8 KiB) stream after another:
 * paper-1b q8_0 decoding on one thread (AMD EPYC, perf), this pass took 3.2 % of the time the
 * weight products took with one row at a time, 1.9 % with eight. The same bits for any NR. */
static inline __attribute__((always_inline)) void dot16_rows(const float *a, const float *B, int64_t ldb,
                                                             const int NR, int64_t n, float *out) {
    rs__v8 p[8][2];
    for (int q = 0; q < NR; q++) p[q][0] = p[q][1] = (rs__v8){0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const rs__v8 a0 = rs__ld8(a + k), a1 = rs__ld8(a + k + 8);
        for (int q = 0; q < NR; q++) {
            p[q][0] += a0 * rs__ld8(B + q * ldb + k);
            p[q][1] += a1 * rs__ld8(B + q * ldb + k + 8);
        }
    }
    for (int q = 0; q < NR; q++) {
        float pl[16];
        memcpy(pl, &p[q][0], sizeof p[q][0]);
        memcpy(pl + 8, &p[q][1], sizeof p[q][1]);
        for (int64_t kk = k; kk < n; kk++) pl[kk % 16] += a[kk] * B[q * ldb + kk];
        float sum = 0;
        for (int t = 0; t < 16; t++) sum += pl[t];
        out[q] = sum;
    }
}

/* items: (target, row) pairs, r_max dots each */
static void lora_rows_h(void *ctx, int ith, int nth) {
    lora_rows_job *j = ctx;
    (void)ith, (void)nth;
    int64_t b, e;
    while (rs_chunks_next(&j->items, &b, &e))
        for (int64_t it = b; it < e; it++) {
            const int g = (int)(it / j->R), i = (int)(it % j->R);
            const rs_lora_mat *m = &j->tg[g].m[i];
            if (!m->A) continue;
            const float *x = j->x + (int64_t)i * j->in;
            float *h = j->h + it * j->r_max;
            int q = 0;
            for (; q + 8 <= m->r; q += 8) dot16_rows(x, m->A + (int64_t)q * j->in, j->in, 8, j->in, h + q);
            for (; q < m->r; q++) dot16_rows(x, m->A + (int64_t)q * j->in, j->in, 1, j->in, h + q);
        }
}

static void lora_rows_y(void *ctx, int ith, int nth) {
    lora_rows_job *j = ctx;
    (void)ith, (void)nth;
    int64_t b, e;
    while (rs_chunks_next(&j->items, &b, &e)) {
        int gi = 0;
        while (j->cols[gi + 1] <= b) gi++;
        for (int64_t c = b; c < e;) {
            while (j->cols[gi + 1] <= c) gi++;
            const int g = gi / j->R, i = gi % j->R;
            const rs_lora_mat *m = &j->tg[g].m[i];
            const int64_t o0 = c - j->cols[gi], o1 = (e < j->cols[gi + 1] ? e : j->cols[gi + 1]) - j->cols[gi];
            c += o1 - o0;
            if (!m->A) continue;
            const float *hh = j->h + ((int64_t)g * j->R + i) * j->r_max;
            float *y = j->tg[g].y + (int64_t)i * j->tg[g].ldy;
            /* per output: acc = sum over q in order of h[q] B[o][q], then y += scale acc; the
             * transpose only changes where B[o][q] is read from */
            const int64_t out = j->tg[g].out;
            for (int64_t o = o0; o < o1; o += 64) {
                const int64_t n = o1 - o < 64 ? o1 - o : 64;
                if (n == 64 && m->Bt) {
                    /* the same sums with the 64 accumulators in registers (the variable-length
                     * loop below keeps them on the stack): Bt streamed at twice the rate */
                    rs__v8 a[8] = {{0}};
                    for (int q = 0; q < m->r; q++) {
                        const float *bt = m->Bt + q * out + o;
                        const rs__v8 hq = {hh[q], hh[q], hh[q], hh[q], hh[q], hh[q], hh[q], hh[q]};
                        for (int k = 0; k < 8; k++) a[k] += hq * rs__ld8(bt + 8 * k);
                    }
                    const rs__v8 sc = {m->scale, m->scale, m->scale, m->scale, m->scale, m->scale, m->scale, m->scale};
                    for (int k = 0; k < 8; k++) rs__st8(y + o + 8 * k, rs__ld8(y + o + 8 * k) + sc * a[k]);
                    continue;
                }
                float acc[64];
                for (int64_t t = 0; t < n; t++) acc[t] = 0;
                for (int q = 0; q < m->r; q++) {
                    const float hq = hh[q];
                    if (m->Bt) {
                        const float *bt = m->Bt + q * out + o;
                        for (int64_t t = 0; t < n; t++) acc[t] += hq * bt[t];
                    } else {
                        const float *bq = m->B + o * m->r + q;
                        for (int64_t t = 0; t < n; t++) acc[t] += hq * bq[t * m->r];
                    }
                }
                for (int64_t t = 0; t < n; t++) y[o + t] += m->scale * acc[t];
            }
        }
    }
}

void rs_lora_rows_fwd(const float *x, int64_t in, int R, const rs_lora_rows_target *tg, int n_targets,
                      int r_max, float *h, rs_pool *pool) {
    if (R <= 0 || n_targets <= 0 || in <= 0 || r_max <= 0) return;
    if ((int64_t)R * n_targets > RS_LORA_ROWS_MAX_JOBS) {
        rs_error(RSMOE_ERR_INVALID_ARG, "rs_lora_rows_fwd: %d rows x %d targets (at most %d)", R, n_targets,
                 RS_LORA_ROWS_MAX_JOBS);
        return;
    }
    lora_rows_job j = {.x = x, .in = in, .R = R, .r_max = r_max, .tg = tg, .h = h};
    double work = 0;
    for (int g = 0; g < n_targets; g++) work += (double)R * r_max * (double)(in + tg[g].out);
    pool = rs_pool_for_work(pool, work);
    const int nth = rs_pool_size(pool);
    rs_chunks_init(&j.items, (int64_t)n_targets * R, 1, nth);
    rs_pool_run(pool, lora_rows_h, &j);
    j.cols[0] = 0;
    for (int g = 0; g < n_targets; g++)
        for (int i = 0; i < R; i++) j.cols[g * R + i + 1] = j.cols[g * R + i] + tg[g].out;
    rs_chunks_init(&j.items, j.cols[n_targets * R], 64, nth);
    rs_pool_run(pool, lora_rows_y, &j);
}

void rs_lora_merge(float *W, const float *A, const float *B, float alpha, int64_t in,
                   int64_t out, int64_t r, rs_pool *pool) {
    if (r <= 0 || in <= 0 || out <= 0) return;
    rs_sgemm(false, false, out, in, r, alpha / (float)r, B, r, A, in, 1.0f, W, in, pool);
}

/* ================================================================ normalisation */
typedef struct {
    float *y, *mean, *rstd, *dx, *dw, *db;
    const float *x, *w, *b, *dy, *cmean, *crstd;
    int64_t T, C;
    float eps;
} norm_ctx;

static void layernorm_fwd_rows(void *vc, int64_t t0, int64_t t1, int ith) {
    norm_ctx *c = vc;
    int64_t C = c->C;
    for (int64_t t = t0; t < t1; t++) {
        const float *x = c->x + t * C;
        float *y = c->y + t * C;
        /* two passes (mean, then centred squares): no cancellation for large means */
        double m = rs__sum(x, C) / (double)C;
        double v = rs__sumsq_c(x, C, (float)m) / (double)C;
        float rs = (float)(1.0 / sqrt(v + (double)c->eps)), mf = (float)m;
        if (c->mean) c->mean[t] = mf;
        if (c->rstd) c->rstd[t] = rs;
        for (int64_t i = 0; i < C; i++) {
            float n = (x[i] - mf) * rs;
            if (c->w) n *= c->w[i];
            if (c->b) n += c->b[i];
            y[i] = n;
        }
    }
}

void rs_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                      const float *b, int64_t T, int64_t C, float eps, rs_pool *pool) {
    if (T <= 0 || C <= 0) return;
    norm_ctx c = { .y = y, .mean = mean, .rstd = rstd, .x = x, .w = w, .b = b, .T = T, .C = C,
                   .eps = eps };
    rs_par_for(pool, T, EW_MIN / C + 1, layernorm_fwd_rows, &c);
}

static void layernorm_bwd_rows(void *vc, int64_t t0, int64_t t1, int ith) {
    norm_ctx *c = vc;
    int64_t C = c->C;
    for (int64_t t = t0; t < t1; t++) {
        const float *x = c->x + t * C, *dy = c->dy + t * C;
        float m = c->cmean[t], rs = c->crstd[t];
        double s1 = 0, s2 = 0; /* Σ dxhat, Σ dxhat·xhat */
        for (int64_t i = 0; i < C; i++) {
            float xh = (x[i] - m) * rs, g = c->w ? dy[i] * c->w[i] : dy[i];
            s1 += g;
            s2 += (double)g * xh;
        }
        float a1 = (float)(s1 / (double)C), a2 = (float)(s2 / (double)C);
        float *dx = c->dx + t * C;
        for (int64_t i = 0; i < C; i++) {
            float xh = (x[i] - m) * rs, g = c->w ? dy[i] * c->w[i] : dy[i];
            dx[i] = rs * (g - a1 - xh * a2);
        }
    }
}

/* parameter gradients: columns split among workers, each loops over every row */
static void layernorm_bwd_cols(void *vc, int64_t i0, int64_t i1, int ith) {
    norm_ctx *c = vc;
    int64_t C = c->C;
    for (int64_t t = 0; t < c->T; t++) {
        const float *x = c->x + t * C, *dy = c->dy + t * C;
        float m = c->cmean ? c->cmean[t] : 0.0f, rs = c->crstd[t];
        if (c->dw) for (int64_t i = i0; i < i1; i++) c->dw[i] += dy[i] * (x[i] - m) * rs;
        if (c->db) for (int64_t i = i0; i < i1; i++) c->db[i] += dy[i];
    }
}

void rs_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *w, const float *mean, const float *rstd, int64_t T,
                      int64_t C, rs_pool *pool) {
    if (T <= 0 || C <= 0) return;
    norm_ctx c = { .dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .w = w, .cmean = mean,
                   .crstd = rstd, .T = T, .C = C };
    if (dx) rs_par_for(pool, T, EW_MIN / C + 1, layernorm_bwd_rows, &c);
    if (dw || db) rs_par_for(pool, C, EW_MIN / T + 16, layernorm_bwd_cols, &c);
}

static void rmsnorm_fwd_rows(void *vc, int64_t t0, int64_t t1, int ith) {
    norm_ctx *c = vc;
    int64_t C = c->C;
    for (int64_t t = t0; t < t1; t++) {
        const float *x = c->x + t * C;
        float *y = c->y + t * C;
        double s = rs__sumsq_c(x, C, 0.0f);
        float rs = (float)(1.0 / sqrt(s / (double)C + (double)c->eps));
        if (c->rstd) c->rstd[t] = rs;
        for (int64_t i = 0; i < C; i++) y[i] = c->w ? x[i] * rs * c->w[i] : x[i] * rs;
    }
}

void rs_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t T,
                    int64_t C, float eps, rs_pool *pool) {
    if (T <= 0 || C <= 0) return;
    norm_ctx c = { .y = y, .rstd = rstd, .x = x, .w = w, .T = T, .C = C, .eps = eps };
    rs_par_for(pool, T, EW_MIN / C + 1, rmsnorm_fwd_rows, &c);
}

static void rmsnorm_bwd_rows(void *vc, int64_t t0, int64_t t1, int ith) {
    norm_ctx *c = vc;
    int64_t C = c->C;
    for (int64_t t = t0; t < t1; t++) {
        const float *x = c->x + t * C, *dy = c->dy + t * C;
        float rs = c->crstd[t];
        double s2 = 0;
        for (int64_t i = 0; i < C; i++) {
            float g = c->w ? dy[i] * c->w[i] : dy[i];
            s2 += (double)g * x[i] * rs;
        }
        float a2 = (float)(s2 / (double)C);
        float *dx = c->dx + t * C;
        for (int64_t i = 0; i < C; i++) {
            float g = c->w ? dy[i] * c->w[i] : dy[i];
            dx[i] = rs * (g - x[i] * rs * a2);
        }
    }
}

void rs_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                    const float *rstd, int64_t T, int64_t C, rs_pool *pool) {
    if (T <= 0 || C <= 0) return;
    norm_ctx c = { .dx = dx, .dw = dw, .dy = dy, .x = x, .w = w, .cmean = NULL, .crstd = rstd,
                   .T = T, .C = C };
    if (dx) rs_par_for(pool, T, EW_MIN / C + 1, rmsnorm_bwd_rows, &c);
    if (dw) rs_par_for(pool, C, EW_MIN / T + 16, layernorm_bwd_cols, &c);
}

/* ================================================================ activations */
typedef struct {
    float *y, *y2;
    const float *x, *x2, *dy;
} ew_ctx;

#define INV_SQRT_2PI 0.3989422804014327f

static void gelu_fwd_r(void *vc, int64_t i0, int64_t i1, int ith) {
    ew_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) {
        float x = c->x[i];
        c->y[i] = x * rs__normcdf(x);
    }
}
static void gelu_bwd_r(void *vc, int64_t i0, int64_t i1, int ith) {
    ew_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) {
        float x = c->x[i];
        float pdf = INV_SQRT_2PI * rs__expf(-0.5f * x * x);
        c->y[i] = c->dy[i] * (rs__normcdf(x) + x * pdf);
    }
}
static void gelu_tanh_bwd_r(void *vc, int64_t i0, int64_t i1, int ith) {
    ew_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) {
        /* with s = σ(2u): d/dx = s + 2·x·s·(1−s)·u'(x); 1−s = e·s with e = exp(−2u),
         * exact where s rounds to 1 */
        float x = c->x[i];
        float e = rs__expf(-2.0f * SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
        float s = 1.0f / (1.0f + e);
        float d = s + 2.0f * x * s * (e * s) * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * x * x);
        c->y[i] = c->dy[i] * d;
    }
}
static void silu_bwd_r(void *vc, int64_t i0, int64_t i1, int ith) {
    ew_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) {
        float x = c->x[i], e = rs__expf(-x), s = 1.0f / (1.0f + e); /* 1−s = e·s */
        c->y[i] = c->dy[i] * s * (1.0f + x * (e * s));
    }
}
static void swiglu_bwd_r(void *vc, int64_t i0, int64_t i1, int ith) {
    ew_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) {
        float g = c->x[i], u = c->x2[i], dy = c->dy[i];
        float e = rs__expf(-g), s = 1.0f / (1.0f + e); /* 1−s = e·s */
        float dg = dy * u * s * (1.0f + g * (e * s)), du = dy * g * s;
        if (c->y) c->y[i] = dg;
        if (c->y2) c->y2[i] = du;
    }
}

#define EW_RUN(fn, ...) do { ew_ctx c_ = { __VA_ARGS__ }; \
    rs_par_for(pool, n, EW_MIN / 4, fn, &c_); } while (0)

void rs_gelu_fwd(float *y, const float *x, int64_t n, rs_pool *pool) {
    EW_RUN(gelu_fwd_r, .y = y, .x = x);
}
void rs_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n, rs_pool *pool) {
    EW_RUN(gelu_bwd_r, .y = dx, .x = x, .dy = dy);
}
void rs_gelu_tanh_bwd(float *dx, const float *dy, const float *x, int64_t n, rs_pool *pool) {
    EW_RUN(gelu_tanh_bwd_r, .y = dx, .x = x, .dy = dy);
}
void rs_silu_bwd(float *dx, const float *dy, const float *x, int64_t n, rs_pool *pool) {
    EW_RUN(silu_bwd_r, .y = dx, .x = x, .dy = dy);
}
void rs_swiglu_bwd(float *dg, float *du, const float *dy, const float *g, const float *u,
                   int64_t n, rs_pool *pool) {
    EW_RUN(swiglu_bwd_r, .y = dg, .y2 = du, .x = g, .x2 = u, .dy = dy);
}

/* ================================================================ softmax */
typedef struct {
    float *y;
    const float *x, *dy;
    int64_t cols;
    float scale;
} sm_ctx;

static void softmax_fwd_rows(void *vc, int64_t r0, int64_t r1, int ith) {
    sm_ctx *c = vc;
    int64_t n = c->cols;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        float mx = c->scale * rs__maxf(x, n);
        if (c->scale < 0) { mx = INFINITY; for (int64_t i = 0; i < n; i++) mx = fminf(mx, x[i]); mx *= c->scale; }
        float sc = c->scale;
        for (int64_t i = 0; i < n; i++) y[i] = rs__expf(sc * x[i] - mx);
        float inv = (float)(1.0 / rs__sum(y, n));
        for (int64_t i = 0; i < n; i++) y[i] *= inv;
    }
}

static void softmax_bwd_rows(void *vc, int64_t r0, int64_t r1, int ith) {
    sm_ctx *c = vc;
    int64_t n = c->cols;
    for (int64_t r = r0; r < r1; r++) {
        const float *y = c->x + r * n, *dy = c->dy + r * n;
        float *dx = c->y + r * n;
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)dy[i] * y[i];
        float sf = (float)s;
        for (int64_t i = 0; i < n; i++) dx[i] = c->scale * y[i] * (dy[i] - sf);
    }
}

void rs_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols, float scale,
                    rs_pool *pool) {
    if (rows <= 0 || cols <= 0) return;
    sm_ctx c = { .y = y, .x = x, .cols = cols, .scale = scale };
    rs_par_for(pool, rows, EW_MIN / (4 * cols) + 1, softmax_fwd_rows, &c);
}

void rs_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols,
                    float scale, rs_pool *pool) {
    if (rows <= 0 || cols <= 0) return;
    sm_ctx c = { .y = dx, .x = y, .dy = dy, .cols = cols, .scale = scale };
    rs_par_for(pool, rows, EW_MIN / (4 * cols) + 1, softmax_bwd_rows, &c);
}

/* ================================================================ embedding */
rsmoe_status rs_embedding_fwd(float *y, const float *table, const int32_t *ids, int64_t T,
                              int64_t V, int64_t C) {
    if (T < 0 || V <= 0 || C <= 0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "embedding: bad shape T=%lld V=%lld C=%lld",
                        (long long)T, (long long)V, (long long)C);
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return rs_error(RSMOE_ERR_INVALID_ARG, "embedding: id %d at %lld outside [0, %lld)",
                            (int)ids[t], (long long)t, (long long)V);
    for (int64_t t = 0; t < T; t++)
        memcpy(y + t * C, table + (int64_t)ids[t] * C, (size_t)C * sizeof(float));
    return RSMOE_OK;
}

rsmoe_status rs_embedding_bwd(float *dtable, const float *dy, const int32_t *ids, int64_t T,
                              int64_t V, int64_t C) {
    if (T < 0 || V <= 0 || C <= 0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "embedding: bad shape T=%lld V=%lld C=%lld",
                        (long long)T, (long long)V, (long long)C);
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return rs_error(RSMOE_ERR_INVALID_ARG, "embedding: id %d at %lld outside [0, %lld)",
                            (int)ids[t], (long long)t, (long long)V);
    for (int64_t t = 0; t < T; t++) rs_vec_acc(dtable + (int64_t)ids[t] * C, dy + t * C, C);
    return RSMOE_OK;
}

/* ================================================================ patch embedding */
static rsmoe_status patch_check(int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t P,
                                int64_t width) {
    if (B <= 0 || Cin <= 0 || H <= 0 || W <= 0 || P <= 0 || width <= 0)
        return rs_error(RSMOE_ERR_INVALID_ARG,
                        "patch embed: bad shape B=%lld Cin=%lld H=%lld W=%lld P=%lld width=%lld",
                        (long long)B, (long long)Cin, (long long)H, (long long)W, (long long)P,
                        (long long)width);
    if (H < P || W < P)
        return rs_error(RSMOE_ERR_INVALID_ARG, "patch embed: image %lldx%lld smaller than patch %lld",
                        (long long)H, (long long)W, (long long)P);
    return RSMOE_OK;
}

typedef struct {
    float *cols, *img;
    const float *cimg, *ccols;
    int64_t Cin, H, W, P, nph, npw;
} unfold_ctx;

/* rows = patches (over all images) */
static void unfold_rows(void *vc, int64_t r0, int64_t r1, int ith) {
    unfold_ctx *c = vc;
    int64_t P = c->P, np = c->nph * c->npw, K = c->Cin * P * P;
    for (int64_t r = r0; r < r1; r++) {
        int64_t bi = r / np, p = r % np, py = p / c->npw, px = p % c->npw;
        float *dst = c->cols + r * K;
        for (int64_t ch = 0; ch < c->Cin; ch++)
            for (int64_t ky = 0; ky < P; ky++) {
                const float *src = c->cimg + ((bi * c->Cin + ch) * c->H + py * P + ky) * c->W + px * P;
                memcpy(dst + (ch * P + ky) * P, src, (size_t)P * sizeof(float));
            }
    }
}

/* inverse: patches are disjoint, so a plain copy back; uncovered pixels were zeroed */
static void fold_rows(void *vc, int64_t r0, int64_t r1, int ith) {
    unfold_ctx *c = vc;
    int64_t P = c->P, np = c->nph * c->npw, K = c->Cin * P * P;
    for (int64_t r = r0; r < r1; r++) {
        int64_t bi = r / np, p = r % np, py = p / c->npw, px = p % c->npw;
        const float *src = c->ccols + r * K;
        for (int64_t ch = 0; ch < c->Cin; ch++)
            for (int64_t ky = 0; ky < P; ky++) {
                float *dst = c->img + ((bi * c->Cin + ch) * c->H + py * P + ky) * c->W + px * P;
                memcpy(dst, src + (ch * P + ky) * P, (size_t)P * sizeof(float));
            }
    }
}

rsmoe_status rs_patch_embed_fwd(float *out, float *cols, const float *img, int64_t B,
                                int64_t Cin, int64_t H, int64_t W, int64_t P, int64_t width,
                                const float *Wt, const float *b, rs_pool *pool) {
    rsmoe_status st = patch_check(B, Cin, H, W, P, width);
    if (st) return st;
    unfold_ctx c = { .cols = cols, .cimg = img, .Cin = Cin, .H = H, .W = W, .P = P,
                     .nph = H / P, .npw = W / P };
    int64_t rows = B * c.nph * c.npw, K = Cin * P * P;
    rs_par_for(pool, rows, 64, unfold_rows, &c);
    rs_linear_fwd(out, cols, Wt, b, rows, K, width, pool);
    return RSMOE_OK;
}

rsmoe_status rs_patch_embed_bwd(float *dimg, float *dWt, float *db, float *scratch,
                                const float *dout, const float *cols, const float *Wt,
                                int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t P,
                                int64_t width, rs_pool *pool) {
    rsmoe_status st = patch_check(B, Cin, H, W, P, width);
    if (st) return st;
    if (dimg && !scratch)
        return rs_error(RSMOE_ERR_INVALID_ARG, "patch embed bwd: dimg needs scratch");
    int64_t nph = H / P, npw = W / P, rows = B * nph * npw, K = Cin * P * P;
    rs_linear_bwd(dimg ? scratch : NULL, dWt, db, dout, cols, Wt, rows, K, width, pool);
    if (dimg) {
        if (H % P || W % P) rs_vec_zero(dimg, B * Cin * H * W);
        unfold_ctx c = { .img = dimg, .ccols = scratch, .Cin = Cin, .H = H, .W = W, .P = P,
                         .nph = nph, .npw = npw };
        rs_par_for(pool, rows, 64, fold_rows, &c);
    }
    return RSMOE_OK;
}

/* ================================================================ cross-entropy */
#define CE_MAX_THREADS 256
typedef struct {
    float *dlogits;
    const float *logits;
    const int32_t *targets;
    int64_t V;
    int32_t ignore;
    float gscale;
    double part[CE_MAX_THREADS];
    int bad[CE_MAX_THREADS];
} ce_ctx;

static void ce_fwd_rows(void *vc, int64_t t0, int64_t t1, int ith) {
    ce_ctx *c = vc;
    int64_t V = c->V;
    double acc = 0;
    for (int64_t t = t0; t < t1; t++) {
        int32_t tg = c->targets[t];
        if (tg == c->ignore) continue;
        const float *x = c->logits + t * V;
        float mx = rs__maxf(x, V);
        if (!isfinite(mx)) { c->bad[ith] = 1; continue; }
        double s = rs__sumexp(x, V, 1.0f, mx);
        acc += log(s) + (double)mx - (double)x[tg];
    }
    if (!isfinite(acc)) c->bad[ith] = 1;
    c->part[ith] += acc;
}

static void ce_bwd_rows(void *vc, int64_t t0, int64_t t1, int ith) {
    ce_ctx *c = vc;
    int64_t V = c->V;
    for (int64_t t = t0; t < t1; t++) {
        int32_t tg = c->targets[t];
        const float *x = c->logits + t * V;
        float *d = c->dlogits + t * V;
        if (tg == c->ignore) { memset(d, 0, (size_t)V * sizeof(float)); continue; }
        float mx = rs__maxf(x, V);
        float inv = (float)(1.0 / rs__sumexp(x, V, 1.0f, mx)) * c->gscale;
        for (int64_t i = 0; i < V; i++) d[i] = rs__expf(x[i] - mx) * inv; /* d may alias x */
        d[tg] -= c->gscale;
    }
}

static rsmoe_status ce_check(const int32_t *targets, int64_t T, int64_t V, int32_t ignore,
                             int64_t *nv) {
    if (T < 0 || V <= 0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "cross-entropy: bad shape T=%lld V=%lld",
                        (long long)T, (long long)V);
    int64_t n = 0;
    for (int64_t t = 0; t < T; t++) {
        int32_t tg = targets[t];
        if (tg == ignore) continue;
        if (tg < 0 || tg >= V)
            return rs_error(RSMOE_ERR_INVALID_ARG,
                            "cross-entropy: target %d at %lld outside [0, %lld)", (int)tg,
                            (long long)t, (long long)V);
        n++;
    }
    *nv = n;
    return RSMOE_OK;
}

rsmoe_status rs_cross_entropy_fwd(float *loss, int64_t *n_valid, const float *logits,
                                  const int32_t *targets, int64_t T, int64_t V,
                                  int32_t ignore_index, rs_pool *pool) {
    int64_t nv = 0;
    rsmoe_status st = ce_check(targets, T, V, ignore_index, &nv);
    if (st) return st;
    if (n_valid) *n_valid = nv;
    *loss = 0.0f;
    if (nv == 0) return RSMOE_OK;
    ce_ctx c;
    memset(&c, 0, sizeof c);
    c.logits = logits; c.targets = targets; c.V = V; c.ignore = ignore_index;
    if (pool && rs_pool_size(pool) > CE_MAX_THREADS) pool = NULL;
    rs_par_for_static(pool, T, EW_MIN / V + 1, ce_fwd_rows, &c);
    double s = 0;
    for (int i = 0; i < CE_MAX_THREADS; i++) {
        if (c.bad[i]) return rs_error(RSMOE_ERR_NUMERIC, "cross-entropy: non-finite logits");
        s += c.part[i];
    }
    *loss = (float)(s / (double)nv);
    return RSMOE_OK;
}

rsmoe_status rs_cross_entropy_bwd(float *dlogits, const float *logits, const int32_t *targets,
                                  int64_t T, int64_t V, int32_t ignore_index, float dloss,
                                  rs_pool *pool) {
    int64_t nv = 0;
    rsmoe_status st = ce_check(targets, T, V, ignore_index, &nv);
    if (st) return st;
    if (nv == 0) { rs_vec_zero(dlogits, T * V); return RSMOE_OK; }
    ce_ctx c;
    c.dlogits = dlogits; c.logits = logits; c.targets = targets; c.V = V;
    c.ignore = ignore_index; c.gscale = (float)((double)dloss / (double)nv);
    rs_par_for(pool, T, EW_MIN / V + 1, ce_bwd_rows, &c);
    return RSMOE_OK;
}

/* ================================================================ AdamW */
rs_adamw_cfg rs_adamw_default(void) {
    rs_adamw_cfg c = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                       .weight_decay = 0.01f };
    return c;
}

typedef struct {
    float *p, *m, *v;
    const float *g;
    float lr, b1, b2, eps, decay, step_size, rsqrt_bc2;
} adam_ctx;

static void adamw_range(void *vc, int64_t i0, int64_t i1, int ith) {
    adam_ctx *c = vc;
    int64_t i = i0;
    const rs__v8 one = {1, 1, 1, 1, 1, 1, 1, 1};
    const rs__v8 decay = one * c->decay, b1 = one * c->b1, b2 = one * c->b2;
    const rs__v8 ss = one * c->step_size, rb = one * c->rsqrt_bc2, eps = one * c->eps;
    for (; i + 8 <= i1; i += 8) {
        rs__v8 g = rs__ld8(c->g + i);
        rs__v8 m = b1 * rs__ld8(c->m + i) + (one - b1) * g;
        rs__v8 v = b2 * rs__ld8(c->v + i) + (one - b2) * g * g;
        rs__st8(c->m + i, m);
        rs__st8(c->v + i, v);
        rs__st8(c->p + i, rs__ld8(c->p + i) * decay - ss * m / (rs__sqrt8(v) * rb + eps));
    }
    for (; i < i1; i++) {
        float g = c->g[i];
        float p = c->p[i] * c->decay;
        float m = c->b1 * c->m[i] + (1.0f - c->b1) * g;
        float v = c->b2 * c->v[i] + (1.0f - c->b2) * g * g;
        c->m[i] = m;
        c->v[i] = v;
        c->p[i] = p - c->step_size * m / (sqrtf(v) * c->rsqrt_bc2 + c->eps);
    }
}

void rs_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, int64_t step,
                   const rs_adamw_cfg *cfg, rs_pool *pool) {
    if (n <= 0) return;
    if (step < 1) step = 1;
    double bc1 = 1.0 - pow((double)cfg->beta1, (double)step);
    double bc2 = 1.0 - pow((double)cfg->beta2, (double)step);
    adam_ctx c = { .p = p, .m = m, .v = v, .g = g, .lr = cfg->lr, .b1 = cfg->beta1,
                   .b2 = cfg->beta2, .eps = cfg->eps,
                   .decay = (float)(1.0 - (double)cfg->lr * (double)cfg->weight_decay),
                   .step_size = (float)((double)cfg->lr / bc1),
                   .rsqrt_bc2 = (float)(1.0 / sqrt(bc2)) };
    rs_par_for(pool, n, EW_MIN, adamw_range, &c);
}

/* ================================================================ gradient clipping */
double rs_grad_global_norm(float *const *grads, const int64_t *sizes, int n) {
    double s = 0;
    for (int k = 0; k < n; k++) {
        const float *g = grads[k];
        if (!g) continue;
        for (int64_t i = 0; i < sizes[k]; i++) s += (double)g[i] * g[i];
    }
    return sqrt(s);
}

rsmoe_status rs_clip_grad_norm(float *const *grads, const int64_t *sizes, int n,
                               float max_norm, double *norm_out) {
    double norm = rs_grad_global_norm(grads, sizes, n);
    if (norm_out) *norm_out = norm;
    if (!isfinite(norm))
        return rs_error(RSMOE_ERR_NUMERIC, "gradient clipping: non-finite gradient norm");
    if (norm > (double)max_norm) {
        float s = (float)((double)max_norm / (norm + 1e-6));
        for (int k = 0; k < n; k++)
            if (grads[k]) rs_vec_scale(grads[k], s, sizes[k]);
    }
    return RSMOE_OK;
}
