/* conv.c - fast CNN forward kernels (see conv.h): im2col + GEMM convolutions, channel-
 * vectorised depthwise convolution and pooling, threaded over output rows. */
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

#include "kernels/gemm.h"

static int conv_out(int in, int k, int s, int d, bool same, int *pad) {
    int ek = (k - 1) * d + 1;
    if (same) {
        int out = (in + s - 1) / s;
        int need = (out - 1) * s + ek - in;
        *pad = need > 0 ? need / 2 : 0;
        return out;
    }
    *pad = 0;
    return in >= ek ? (in - ek) / s + 1 : 0;
}

rsmoe_status rs_conv_geometry(rs_conv_params *p, bool same) {
    if (p->ih <= 0 || p->iw <= 0 || p->ic <= 0 || p->kh <= 0 || p->kw <= 0 || p->sh <= 0 ||
        p->sw <= 0 || p->dh <= 0 || p->dw <= 0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "conv geometry: non-positive size, kernel, stride or dilation "
                        "(in %dx%dx%d, kernel %dx%d, stride %dx%d, dilation %dx%d)", p->ih, p->iw, p->ic,
                        p->kh, p->kw, p->sh, p->sw, p->dh, p->dw);
    if (p->ih > (1 << 16) || p->iw > (1 << 16) || p->kh > 64 || p->kw > 64 || p->dh > 64 || p->dw > 64)
        return rs_error(RSMOE_ERR_INVALID_ARG, "conv geometry: sizes out of range");
    p->oh = conv_out(p->ih, p->kh, p->sh, p->dh, same, &p->pad_top);
    p->ow = conv_out(p->iw, p->kw, p->sw, p->dw, same, &p->pad_left);
    if (p->oh <= 0 || p->ow <= 0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "conv geometry: kernel %dx%d larger than the input %dx%d",
                        p->kh, p->kw, p->ih, p->iw);
    return RSMOE_OK;
}

/* Work (multiply-adds or element visits) below which a kernel runs on the calling thread:
 * waking the pool costs more than it saves, and much more when the cores are shared. */
#define CONV_MIN_PARALLEL_WORK (1 << 19)
static inline rs_pool *pool_for(rs_pool *pool, double work) {
    return work >= CONV_MIN_PARALLEL_WORK ? pool : NULL;
}

static inline void act_row(float *y, int64_t n, int act) {
    if (act == RS_ACT_RELU6) {
        for (int64_t i = 0; i < n; i++) {
            float v = y[i] < 0.f ? 0.f : y[i];
            y[i] = v > 6.f ? 6.f : v;
        }
    } else if (act == RS_ACT_RELU) {
        for (int64_t i = 0; i < n; i++) y[i] = y[i] < 0.f ? 0.f : y[i];
    }
}

void rs_act_inplace(float *x, int64_t n, int act) { act_row(x, n, act); }
void rs_relu6(float *x, int64_t n) { act_row(x, n, RS_ACT_RELU6); }

void rs_add_act(const float *a, const float *b, float *y, int64_t n, int act) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    act_row(y, n, act);
}

#define DW_CB 16   /* channels per register block: two 8-float vectors */
typedef float v8f __attribute__((vector_size(32)));
static inline v8f v8_load(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* valid kernel tap range [k0, k1) for output coordinate o */
static inline void tap_range(int o, int stride, int pad, int dil, int k, int in, int *k0, int *k1) {
    int base = o * stride - pad;
    int a = 0, b = k;
    while (a < k && base + a * dil < 0) a++;
    while (b > a && base + (b - 1) * dil >= in) b--;
    *k0 = a;
    *k1 = b;
}

/* ---------------------------------------------------------------- conv2d */

static bool use_direct(const rs_conv_params *p);

size_t rs_conv2d_scratch_floats(const rs_conv_params *p) {
    if (use_direct(p)) return 0;
    bool direct = p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->pad_top == 0 &&
                  p->pad_left == 0 && p->oh == p->ih && p->ow == p->iw;
    return direct ? 0 : (size_t)p->oh * p->ow * p->kh * p->kw * p->ic;
}

typedef struct {
    const rs_conv_params *p;
    const float *x, *w, *b;
    float *y, *col;
    int64_t M, N, K;
} conv_ctx;

static void im2col_rows(const rs_conv_params *p, const float *x, float *col, int64_t r0, int64_t r1) {
    const int64_t K = (int64_t)p->kh * p->kw * p->ic;
    for (int64_t r = r0; r < r1; r++) {
        int oy = (int)(r / p->ow), ox = (int)(r % p->ow);
        float *dst = col + r * K;
        for (int ky = 0; ky < p->kh; ky++) {
            int iy = oy * p->sh - p->pad_top + ky * p->dh;
            for (int kx = 0; kx < p->kw; kx++) {
                int ix = ox * p->sw - p->pad_left + kx * p->dw;
                if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw)
                    memset(dst, 0, (size_t)p->ic * sizeof(float));
                else
                    memcpy(dst, x + ((int64_t)iy * p->iw + ix) * p->ic, (size_t)p->ic * sizeof(float));
                dst += p->ic;
            }
        }
    }
}

static void im2col_task(void *vctx, int ith, int nth) {
    conv_ctx *c = vctx;
    int64_t r0, r1;
    rs_split_range(c->M, ith, nth, 1, &r0, &r1);
    im2col_rows(c->p, c->x, c->col, r0, r1);
}

static void bias_act_task(void *vctx, int ith, int nth) {
    conv_ctx *c = vctx;
    int64_t r0, r1;
    rs_split_range(c->M, ith, nth, 1, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        float *yr = c->y + r * c->N;
        if (c->b)
            for (int64_t n = 0; n < c->N; n++) yr[n] += c->b[n];
        act_row(yr, c->N, c->p->act);
    }
}

/* Direct convolution for few input channels (a network's RGB stem): per output pixel the
 * oc outputs are accumulated in vector registers over the kh*kw*ic taps, so no patch matrix
 * is built. Used when ic <= 4 and oc is a multiple of 8 (at most 64). */
static void direct_task(void *vctx, int ith, int nth) {
    conv_ctx *c = vctx;
    const rs_conv_params *p = c->p;
    const int OC = p->oc, IC = p->ic, nb = OC / 8;
    int64_t r0, r1;
    rs_split_range(p->oh, ith, nth, 1, &r0, &r1);
    for (int64_t oy = r0; oy < r1; oy++) {
        int ky0, ky1;
        tap_range((int)oy, p->sh, p->pad_top, p->dh, p->kh, p->ih, &ky0, &ky1);
        for (int ox = 0; ox < p->ow; ox++) {
            int kx0, kx1;
            tap_range(ox, p->sw, p->pad_left, p->dw, p->kw, p->iw, &kx0, &kx1);
            const int iy0 = (int)oy * p->sh - p->pad_top, ix0 = ox * p->sw - p->pad_left;
            v8f acc[8];
            for (int j = 0; j < nb; j++) acc[j] = c->b ? v8_load(c->b + 8 * j) : (v8f){0};
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++) {
                    const float *xv = c->x + ((int64_t)(iy0 + ky * p->dh) * p->iw + ix0 + kx * p->dw) * IC;
                    const float *wv = c->w + ((int64_t)ky * p->kw + kx) * IC * OC;
                    for (int i = 0; i < IC; i++) {
                        v8f xs = (v8f){0} + xv[i];
                        for (int j = 0; j < nb; j++) acc[j] += xs * v8_load(wv + (int64_t)i * OC + 8 * j);
                    }
                }
            float *out = c->y + (oy * p->ow + ox) * OC;
            memcpy(out, acc, (size_t)OC * sizeof(float));
            act_row(out, OC, p->act);
        }
    }
}

static bool use_direct(const rs_conv_params *p) {
    return p->ic <= 4 && p->oc % 8 == 0 && p->oc <= 64;
}

void rs_conv2d(const rs_conv_params *p, const float *x, const float *w, const float *b,
               float *y, float *scratch, rs_pool *pool) {
    conv_ctx c = {p, x, w, b, y, NULL, (int64_t)p->oh * p->ow, p->oc, (int64_t)p->kh * p->kw * p->ic};
    rs_pool *mpool = pool_for(pool, (double)c.M * c.N * c.K);   /* the products */
    if (use_direct(p)) {
        rs_pool_run(mpool, direct_task, &c);
        return;
    }
    if (rs_conv2d_scratch_floats(p) > 0) {
        c.col = scratch;
        rs_pool_run(pool_for(pool, (double)c.M * c.K * 4), im2col_task, &c);
    }
    /* y[M, N] = patches[M, K] w[K, N], then bias and activation per row. The own kernel,
     * not the BLAS route of rs_sgemm: on MobileNet's skinny products (K, N <= 1280, M from
     * 49 to 12544) it measured 1.35-1.5x faster single-threaded, and it threads on our pool
     * instead of starting OpenBLAS threads next to it. */
    rs_sgemm_own(false, false, c.M, c.N, c.K, 1.f, c.col ? c.col : x, c.K, w, c.N, 0.f, y, c.N, mpool);
    rs_pool_run(pool_for(pool, (double)c.M * c.N * 4), bias_act_task, &c);
}

/* ---------------------------------------------------------------- depthwise */

typedef struct {
    const rs_conv_params *p;
    const float *x, *w, *b;
    float *y;
} dw_ctx;

static void dw_task(void *vctx, int ith, int nth) {
    dw_ctx *c = vctx;
    const rs_conv_params *p = c->p;
    const int C = p->ic, OC = p->oc, dm = p->depth_mult;
    const float lo = p->act == RS_ACT_NONE ? -INFINITY : 0.f, hi = p->act == RS_ACT_RELU6 ? 6.f : INFINITY;
    int64_t r0, r1;
    rs_split_range(p->oh, ith, nth, 1, &r0, &r1);
    for (int64_t oy = r0; oy < r1; oy++) {
        int ky0, ky1;
        tap_range((int)oy, p->sh, p->pad_top, p->dh, p->kh, p->ih, &ky0, &ky1);
        for (int ox = 0; ox < p->ow; ox++) {
            int kx0, kx1;
            tap_range(ox, p->sw, p->pad_left, p->dw, p->kw, p->iw, &kx0, &kx1);
            float *out = c->y + (oy * p->ow + ox) * OC;
            const int iy0 = (int)oy * p->sh - p->pad_top, ix0 = ox * p->sw - p->pad_left;
            if (dm == 1) {
                int ch = 0;
                /* blocks of DW_CB channels accumulated in registers over all taps */
                for (; ch + DW_CB <= C; ch += DW_CB) {
                    v8f a0, a1;
                    if (c->b) { a0 = v8_load(c->b + ch); a1 = v8_load(c->b + ch + 8); }
                    else { a0 = (v8f){0}; a1 = (v8f){0}; }
                    for (int ky = ky0; ky < ky1; ky++) {
                        const float *xr = c->x + ((int64_t)(iy0 + ky * p->dh) * p->iw) * C + ch;
                        const float *wr = c->w + (int64_t)ky * p->kw * OC + ch;
                        for (int kx = kx0; kx < kx1; kx++) {
                            const float *xv = xr + (int64_t)(ix0 + kx * p->dw) * C;
                            const float *wv = wr + (int64_t)kx * OC;
                            a0 += v8_load(xv) * v8_load(wv);
                            a1 += v8_load(xv + 8) * v8_load(wv + 8);
                        }
                    }
                    memcpy(out + ch, &a0, sizeof a0);
                    memcpy(out + ch + 8, &a1, sizeof a1);
                }
                act_row(out, ch, p->act);
                for (; ch < C; ch++) {
                    float acc = c->b ? c->b[ch] : 0.f;
                    for (int ky = ky0; ky < ky1; ky++)
                        for (int kx = kx0; kx < kx1; kx++)
                            acc += c->x[((int64_t)(iy0 + ky * p->dh) * p->iw + ix0 + kx * p->dw) * C + ch] *
                                   c->w[((int64_t)ky * p->kw + kx) * OC + ch];
                    out[ch] = fminf(fmaxf(acc, lo), hi);
                }
            } else {
                if (c->b) memcpy(out, c->b, (size_t)OC * sizeof(float));
                else memset(out, 0, (size_t)OC * sizeof(float));
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float *xin = c->x + ((int64_t)(iy0 + ky * p->dh) * p->iw + ix0 + kx * p->dw) * C;
                        const float *wk = c->w + ((int64_t)ky * p->kw + kx) * OC;
                        for (int ch = 0; ch < C; ch++)
                            for (int k = 0; k < dm; k++) out[ch * dm + k] += xin[ch] * wk[ch * dm + k];
                    }
                act_row(out, OC, p->act);
            }
        }
    }
}

void rs_dwconv2d(const rs_conv_params *p, const float *x, const float *w, const float *b,
                 float *y, rs_pool *pool) {
    dw_ctx c = {p, x, w, b, y};
    rs_pool_run(pool_for(pool, (double)p->oh * p->ow * p->oc * p->kh * p->kw), dw_task, &c);
}

/* ---------------------------------------------------------------- pooling */

static void pool_task(void *vctx, int ith, int nth) {
    dw_ctx *c = vctx;
    const rs_conv_params *p = c->p;
    const int C = p->ic;
    int64_t r0, r1;
    rs_split_range(p->oh, ith, nth, 1, &r0, &r1);
    for (int64_t oy = r0; oy < r1; oy++) {
        for (int ox = 0; ox < p->ow; ox++) {
            float *out = c->y + (oy * p->ow + ox) * C;
            memset(out, 0, (size_t)C * sizeof(float));
            int cnt = 0;
            for (int ky = 0; ky < p->kh; ky++) {
                int iy = (int)oy * p->sh - p->pad_top + ky;
                if (iy < 0 || iy >= p->ih) continue;
                for (int kx = 0; kx < p->kw; kx++) {
                    int ix = ox * p->sw - p->pad_left + kx;
                    if (ix < 0 || ix >= p->iw) continue;
                    const float *xin = c->x + ((int64_t)iy * p->iw + ix) * C;
                    for (int ch = 0; ch < C; ch++) out[ch] += xin[ch];
                    cnt++;
                }
            }
            float inv = cnt ? 1.f / (float)cnt : 0.f;
            for (int ch = 0; ch < C; ch++) out[ch] *= inv;
            act_row(out, C, p->act);
        }
    }
}

void rs_avgpool2d(const rs_conv_params *p, const float *x, float *y, rs_pool *pool) {
    dw_ctx c = {p, x, NULL, NULL, y};
    rs_pool_run(pool_for(pool, (double)p->oh * p->ow * p->oc * p->kh * p->kw), pool_task, &c);
}
