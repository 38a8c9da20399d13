/* test_conv.c - CNN kernels (kernels/conv.h): the geometry against TensorFlow's SAME/VALID
 * rule worked by hand, the reference twins against hand-computed cases, and the fast
 * kernels against their twins on random shapes (strides, padding, dilation, depth
 * multiplier, 1x1 fast path), single- and multi-threaded. */
#include "kernels/conv.h"
#include "test.h"

static float *rnd(rs_rng *r, size_t n, float lo, float hi) {
    float *x = malloc(n * sizeof(float));
    rs_rng_fill_uniform(r, x, n, lo, hi);
    return x;
}

TEST(geometry_tf_rule) {
    /* MobileNet's first conv: 224, k3, s2, SAME -> 112; need = 111*2+3-224 = 1 -> pad 0 before */
    rs_conv_params p = {.ih = 224, .iw = 224, .ic = 3, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .dh = 1, .dw = 1};
    REQUIRE(rs_conv_geometry(&p, true) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(p.oh == 112 && p.ow == 112 && p.pad_top == 0 && p.pad_left == 0, "%d %d %d", p.oh, p.ow, p.pad_top);
    /* 112, k3, s1, SAME -> 112, need 2 -> pad 1 */
    rs_conv_params q = {.ih = 112, .iw = 7, .ic = 1, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
    REQUIRE(rs_conv_geometry(&q, true) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(q.oh == 112 && q.ow == 7 && q.pad_top == 1 && q.pad_left == 1, "%d %d", q.oh, q.pad_top);
    /* MobileNetV1 head: 4x4, k4, s2, VALID -> 1 */
    rs_conv_params v = {.ih = 4, .iw = 4, .ic = 8, .kh = 4, .kw = 4, .sh = 2, .sw = 2, .dh = 1, .dw = 1};
    REQUIRE(rs_conv_geometry(&v, false) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(v.oh == 1 && v.ow == 1 && v.pad_top == 0, "%d", v.oh);
    /* 10, k3, s3, VALID -> floor((10-3)/3)+1 = 3;  dilation 2: effective k 5 -> (10-5)/3+1 = 2 */
    rs_conv_params w = {.ih = 10, .iw = 10, .ic = 1, .kh = 3, .kw = 3, .sh = 3, .sw = 3, .dh = 1, .dw = 2};
    REQUIRE(rs_conv_geometry(&w, false) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(w.oh == 3 && w.ow == 2, "%d %d", w.oh, w.ow);
    /* errors, not crashes */
    rs_conv_params e = {.ih = 3, .iw = 3, .ic = 1, .kh = 5, .kw = 5, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
    CHECK(rs_conv_geometry(&e, false) == RSMOE_ERR_INVALID_ARG, "kernel larger than input");
    rs_conv_params z = {.ih = 3, .iw = 3, .ic = 1, .kh = 1, .kw = 1, .sh = 0, .sw = 1, .dh = 1, .dw = 1};
    CHECK(rs_conv_geometry(&z, true) == RSMOE_ERR_INVALID_ARG, "zero stride");
}

TEST(ref_hand_cases) {
    /* 3x3x1 input 1..9, 2x2 all-ones kernel, VALID stride 1: window sums */
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 1, 1, 1}, b[1] = {0.5f}, y[9];
    rs_conv_params p = {.ih = 3, .iw = 3, .ic = 1, .oc = 1, .kh = 2, .kw = 2, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .depth_mult = 1};
    REQUIRE(rs_conv_geometry(&p, false) == RSMOE_OK, "geom");
    rs_conv2d_ref(&p, x, w, b, y);
    CHECK(y[0] == 12.5f && y[1] == 16.5f && y[2] == 24.5f && y[3] == 28.5f, "%g %g %g %g", y[0], y[1], y[2], y[3]);
    /* SAME 3x3 ones kernel: centre sums 45, corner (1+2+4+5)=12 */
    float w9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    rs_conv_params s = p;
    s.kh = s.kw = 3;
    REQUIRE(rs_conv_geometry(&s, true) == RSMOE_OK, "geom");
    rs_conv2d_ref(&s, x, w9, NULL, y);
    CHECK(y[4] == 45.f && y[0] == 12.f && y[8] == 28.f, "%g %g %g", y[4], y[0], y[8]);
    /* with RELU6 the big sums clamp at 6 */
    s.act = RS_ACT_RELU6;
    rs_conv2d_ref(&s, x, w9, NULL, y);
    CHECK(y[4] == 6.f, "%g", y[4]);
    /* depthwise, 2 channels, multiplier 2: output 2c+k = x[c] * w[2c+k] for a 1x1 kernel */
    float xd[2] = {2, 3}, wd[4] = {1, -1, 10, 0.5f}, yd[4];
    rs_conv_params d = {.ih = 1, .iw = 1, .ic = 2, .oc = 4, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .depth_mult = 2};
    REQUIRE(rs_conv_geometry(&d, true) == RSMOE_OK, "geom");
    rs_dwconv2d_ref(&d, xd, wd, NULL, yd);
    CHECK(yd[0] == 2 && yd[1] == -2 && yd[2] == 30 && yd[3] == 1.5f, "%g %g %g %g", yd[0], yd[1], yd[2], yd[3]);
    /* average pool SAME 3x3 on the 3x3 image: corner mean of 4 in-image values = 3 */
    rs_conv_params a = {.ih = 3, .iw = 3, .ic = 1, .oc = 1, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
    REQUIRE(rs_conv_geometry(&a, true) == RSMOE_OK, "geom");
    rs_avgpool2d_ref(&a, x, y);
    CHECK(y[0] == 3.f && y[4] == 5.f && y[1] == 3.5f, "%g %g %g", y[0], y[4], y[1]);
    float r6[4] = {-1, 3, 7, 6};
    rs_relu6_ref(r6, 4);
    CHECK(r6[0] == 0 && r6[1] == 3 && r6[2] == 6 && r6[3] == 6, "relu6");
}

typedef struct { int ih, iw, ic, oc, k, s, d, same, act, dm; } shape;

TEST(fast_vs_ref) {
    const shape cases[] = {
        {17, 13, 3, 32, 3, 2, 1, 1, RS_ACT_RELU6, 1},   /* first conv, odd sizes (direct path) */
        {10, 9, 4, 16, 3, 1, 2, 0, RS_ACT_NONE, 1},     /* direct path, dilated VALID */
        {9, 9, 3, 12, 3, 2, 1, 1, RS_ACT_RELU, 1},      /* 3 channels but oc not a multiple of 8: im2col */
        {14, 14, 24, 40, 1, 1, 1, 1, RS_ACT_NONE, 1},   /* 1x1 GEMM fast path */
        {9, 11, 16, 24, 1, 2, 1, 1, RS_ACT_RELU, 1},    /* strided 1x1 via im2col */
        {12, 12, 8, 5, 5, 1, 2, 0, RS_ACT_RELU6, 1},    /* dilated VALID */
        {16, 16, 33, 33, 3, 1, 1, 1, RS_ACT_RELU6, 1},  /* dw 3x3 s1 */
        {15, 16, 19, 19, 3, 2, 1, 1, RS_ACT_NONE, 1},   /* dw 3x3 s2 odd */
        {8, 7, 6, 12, 3, 1, 1, 0, RS_ACT_RELU6, 2},     /* dw multiplier 2, VALID */
        {7, 7, 64, 64, 7, 1, 1, 0, RS_ACT_NONE, 1},     /* pool 7x7 VALID */
        {6, 5, 10, 10, 3, 2, 1, 1, RS_ACT_RELU6, 1},    /* pool SAME partial windows */
        /* above CONV_MIN_PARALLEL_WORK, so the pool really splits the work */
        {56, 56, 32, 32, 1, 1, 1, 1, RS_ACT_RELU6, 1},  /* 1x1 GEMM, dw 1x1, pool 1x1 */
        {64, 64, 32, 32, 3, 1, 1, 1, RS_ACT_RELU6, 1},  /* 3x3 conv (im2col), dw, pool */
        {60, 60, 3, 32, 3, 2, 1, 1, RS_ACT_RELU6, 1},   /* direct stem conv */
    };
    rs_rng r;
    rs_rng_seed(&r, 7);
    rs_pool *pool = rs_pool_new(3);
    REQUIRE(pool, "pool");
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const shape *c = &cases[ci];
        for (int kind = 0; kind < 3; kind++) {   /* 0 conv, 1 depthwise, 2 pool */
            if (kind == 1 && c->oc != c->ic * c->dm) continue;
            if (kind == 2 && (c->oc != c->ic || c->d != 1 || c->dm != 1)) continue;
            if (kind == 0 && c->dm != 1) continue;
            rs_conv_params p = {.ih = c->ih, .iw = c->iw, .ic = c->ic, .oc = c->oc, .kh = c->k, .kw = c->k,
                                .sh = c->s, .sw = c->s, .dh = c->d, .dw = c->d, .act = c->act, .depth_mult = c->dm};
            REQUIRE(rs_conv_geometry(&p, c->same) == RSMOE_OK, "%s", rsmoe_last_error());
            size_t nx = (size_t)p.ih * p.iw * p.ic, ny = (size_t)p.oh * p.ow * p.oc;
            size_t nw = kind == 0 ? (size_t)p.kh * p.kw * p.ic * p.oc : (size_t)p.kh * p.kw * p.oc;
            float *x = rnd(&r, nx, -1.5f, 3.f), *w = rnd(&r, nw, -1.f, 1.f), *b = rnd(&r, p.oc, -1.f, 1.f);
            float *y0 = malloc(ny * 4), *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
            size_t ns = rs_conv2d_scratch_floats(&p);
            float *scr = malloc((ns ? ns : 1) * 4);
            if (kind == 0) {
                rs_conv2d_ref(&p, x, w, b, y0);
                rs_conv2d(&p, x, w, b, y1, scr, NULL);
                rs_conv2d(&p, x, w, b, y2, scr, pool);
            } else if (kind == 1) {
                rs_dwconv2d_ref(&p, x, w, b, y0);
                rs_dwconv2d(&p, x, w, b, y1, NULL);
                rs_dwconv2d(&p, x, w, b, y2, pool);
            } else {
                rs_avgpool2d_ref(&p, x, y0);
                rs_avgpool2d(&p, x, y1, NULL);
                rs_avgpool2d(&p, x, y2, pool);
            }
            double e1 = test_nerr_f32(y1, y0, ny), e2 = test_nerr_f32(y2, y0, ny);
            CHECK(e1 < 1e-5 && e2 < 1e-5, "case %zu kind %d: nerr %.3g / %.3g", ci, kind, e1, e2);
            free(x); free(w); free(b); free(y0); free(y1); free(y2); free(scr);
        }
    }
    /* add + activation */
    float *a = rnd(&r, 1000, -4, 8), *bb = rnd(&r, 1000, -4, 4), *o0 = malloc(4000), *o1 = malloc(4000);
    rs_add_act_ref(a, bb, o0, 1000, RS_ACT_RELU6);
    rs_add_act(a, bb, o1, 1000, RS_ACT_RELU6);
    CHECK(test_nerr_f32(o1, o0, 1000) < 1e-6, "add");
    rs_add_act(a, bb, a, 1000, RS_ACT_RELU6);   /* aliasing */
    CHECK(test_nerr_f32(a, o0, 1000) < 1e-6, "add aliased");
    free(a); free(bb); free(o0); free(o1);
    rs_pool_free(pool);
}

int main(void) {
    RUN(geometry_tf_rule);
    RUN(ref_hand_cases);
    RUN(fast_vs_ref);
    return test_summary();
}
