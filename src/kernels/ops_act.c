/* ops_act.c - the forward activations built on the logistic sigmoid: SiLU, SwiGLU (the
 * LLM's feed-forward) and tanh-GELU. Their backward passes are in ops.c.
 *
 * They live apart from ops.c because of one compiler option. ops.c turns off trapping math
 * (`-fno-trapping-math`) so that GCC if-converts the clamps of its inline exp and erfc and
 * vectorises those loops. Here that goes wrong: GCC folds rs__expf's upper clamp (argument
 * > 88) into the constant result x·1/(1+e^88), whose factor 6e-39 is a denormal, and, free to
 * speculate, multiplies every lane by it before blending the product away. On Intel cores
 * (without flush-to-zero, which a library should not set for its caller) each such multiply
 * is a microcode assist: SwiGLU took 5.3 ns an element instead of 0.4, a tenth of a `tiny`
 * caption's time (Xeon with AVX-512, 2026-12-05). With trapping math left on, GCC masks the
 * speculative product, and masked-off lanes cost nothing. Per-function optimize attributes are
 * no way out: GCC then refuses to inline rs__sigmoidf and the loops run scalar calls.
 * Same operations, same contraction (fp-contract=fast, as ops.c), so the same results. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-math-errno", "fp-contract=fast")
#endif
/* 512-bit vectors for the loops GCC vectorises (its -march=native default prefers 256 bits):
 * the exp/erfc-based activations 1.3-1.6x faster on an AVX-512 Xeon (`rsmoe bench kernels`,
 * activations). Each lane computes what a narrower one does: the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("prefer-vector-width=512")
#endif
#include "kernels/ops.h"
#include "kernels/ops_internal.h"

typedef struct {
    float *y;
    const float *x, *x2;
} act_ctx;

static void gelu_tanh_fwd_r(void *vc, int64_t i0, int64_t i1, int ith) {
    act_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) {
        /* 0.5·(1 + tanh(u)) = σ(2u): no cancellation for negative x */
        float x = c->x[i];
        c->y[i] = x * rs__sigmoidf(2.0f * SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
    }
}
static void silu_fwd_r(void *vc, int64_t i0, int64_t i1, int ith) {
    act_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) { float x = c->x[i]; c->y[i] = x * rs__sigmoidf(x); }
}
static void swiglu_fwd_r(void *vc, int64_t i0, int64_t i1, int ith) {
    act_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) {
        float g = c->x[i];
        c->y[i] = g * rs__sigmoidf(g) * c->x2[i];
    }
}

void rs_gelu_tanh_fwd(float *y, const float *x, int64_t n, rs_pool *pool) {
    act_ctx c = {.y = y, .x = x};
    rs_par_for(pool, n, EW_MIN / 4, gelu_tanh_fwd_r, &c);
}
void rs_silu_fwd(float *y, const float *x, int64_t n, rs_pool *pool) {
    act_ctx c = {.y = y, .x = x};
    rs_par_for(pool, n, EW_MIN / 4, silu_fwd_r, &c);
}
void rs_swiglu_fwd(float *y, const float *g, const float *u, int64_t n, rs_pool *pool) {
    act_ctx c = {.y = y, .x = g, .x2 = u};
    rs_par_for(pool, n, EW_MIN / 4, swiglu_fwd_r, &c);
}
