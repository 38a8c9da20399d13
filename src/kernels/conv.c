/* conv.c - fast CNN forward kernels (see conv.h): im2col + GEMM convolutions, channel-
 * vectorised depthwise convolution and pooling, threaded over output rows. */
#include "kernels/conv.h"

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

/* ---------------------------------------------------------------- conv2d */

size_t rs_conv2d_scratch_floats(const rs_conv_params *p) {
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

void rs_conv2d(const rs_conv_params *p, const float *x, const float *w, const float *b,
               float *y, float *scratch, rs_pool *pool) {
    conv_ctx c = {p, x, w, b, y, NULL, (int64_t)p->oh * p->ow, p->oc, (int64_t)p->kh * p->kw * p->ic};
    if (rs_conv2d_scratch_floats(p) > 0) {
        c.col = scratch;
        rs_pool_run(pool, im2col_task, &c);
    }
    /* y[M, N] = patches[M, K] w[K, N], then bias and activation per row */
    rs_sgemm(false, false, c.M, c.N, c.K, 1.f, c.col ? c.col : x, c.K, w, c.N, 0.f, y, c.N, pool);
    rs_pool_run(pool, bias_act_task, &c);
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
    int64_t r0, r1;
    rs_split_range(p->oh, ith, nth, 1, &r0, &r1);
    for (int64_t oy = r0; oy < r1; oy++) {
        for (int ox = 0; ox < p->ow; ox++) {
            float *out = c->y + (oy * p->ow + ox) * OC;
            if (c->b) memcpy(out, c->b, (size_t)OC * sizeof(float));
            else memset(out, 0, (size_t)OC * sizeof(float));
            for (int ky = 0; ky < p->kh; ky++) {
                int iy = (int)oy * p->sh - p->pad_top + ky * p->dh;
                if (iy < 0 || iy >= p->ih) continue;
                for (int kx = 0; kx < p->kw; kx++) {
                    int ix = ox * p->sw - p->pad_left + kx * p->dw;
                    if (ix < 0 || ix >= p->iw) continue;
                    const float *xin = c->x + ((int64_t)iy * p->iw + ix) * C;
                    const float *wk = c->w + ((int64_t)ky * p->kw + kx) * OC;
                    if (dm == 1) {
                        for (int ch = 0; ch < C; ch++) out[ch] += xin[ch] * wk[ch];
                    } else {
                        for (int ch = 0; ch < C; ch++)
                            for (int k = 0; k < dm; k++) out[ch * dm + k] += xin[ch] * wk[ch * dm + k];
                    }
                }
            }
            act_row(out, OC, p->act);
        }
    }
}

void rs_dwconv2d(const rs_conv_params *p, const float *x, const float *w, const float *b,
                 float *y, rs_pool *pool) {
    dw_ctx c = {p, x, w, b, y};
    rs_pool_run(pool, dw_task, &c);
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
    rs_pool_run(pool, pool_task, &c);
}
