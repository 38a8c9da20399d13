/* conv_ref.c - plain reference twins of the CNN kernels in conv.c: direct loops over
 * every output element, double accumulation, bounds tested per tap. */
#include "kernels/conv.h"

static double act_d(double v, int act) {
    if (act == RS_ACT_RELU || act == RS_ACT_RELU6) v = v < 0 ? 0 : v;
    if (act == RS_ACT_RELU6) v = v > 6 ? 6 : v;
    return v;
}

void rs_conv2d_ref(const rs_conv_params *p, const float *x, const float *w, const float *b,
                   float *y) {
    for (int oy = 0; oy < p->oh; oy++)
        for (int ox = 0; ox < p->ow; ox++)
            for (int o = 0; o < p->oc; o++) {
                double s = b ? b[o] : 0.0;
                for (int ky = 0; ky < p->kh; ky++)
                    for (int kx = 0; kx < p->kw; kx++) {
                        int iy = oy * p->sh - p->pad_top + ky * p->dh;
                        int ix = ox * p->sw - p->pad_left + kx * p->dw;
                        if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw) continue;
                        for (int i = 0; i < p->ic; i++)
                            s += (double)x[((size_t)iy * p->iw + ix) * p->ic + i] *
                                 (double)w[(((size_t)ky * p->kw + kx) * p->ic + i) * p->oc + o];
                    }
                y[((size_t)oy * p->ow + ox) * p->oc + o] = (float)act_d(s, p->act);
            }
}

void rs_dwconv2d_ref(const rs_conv_params *p, const float *x, const float *w, const float *b,
                     float *y) {
    int dm = p->depth_mult;
    for (int oy = 0; oy < p->oh; oy++)
        for (int ox = 0; ox < p->ow; ox++)
            for (int o = 0; o < p->oc; o++) {
                int i = o / dm;
                double s = b ? b[o] : 0.0;
                for (int ky = 0; ky < p->kh; ky++)
                    for (int kx = 0; kx < p->kw; kx++) {
                        int iy = oy * p->sh - p->pad_top + ky * p->dh;
                        int ix = ox * p->sw - p->pad_left + kx * p->dw;
                        if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw) continue;
                        s += (double)x[((size_t)iy * p->iw + ix) * p->ic + i] *
                             (double)w[((size_t)ky * p->kw + kx) * p->oc + o];
                    }
                y[((size_t)oy * p->ow + ox) * p->oc + o] = (float)act_d(s, p->act);
            }
}

void rs_avgpool2d_ref(const rs_conv_params *p, const float *x, float *y) {
    for (int oy = 0; oy < p->oh; oy++)
        for (int ox = 0; ox < p->ow; ox++)
            for (int c = 0; c < p->ic; c++) {
                double s = 0;
                int n = 0;
                for (int ky = 0; ky < p->kh; ky++)
                    for (int kx = 0; kx < p->kw; kx++) {
                        int iy = oy * p->sh - p->pad_top + ky;
                        int ix = ox * p->sw - p->pad_left + kx;
                        if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw) continue;
                        s += x[((size_t)iy * p->iw + ix) * p->ic + c];
                        n++;
                    }
                y[((size_t)oy * p->ow + ox) * p->ic + c] = (float)act_d(n ? s / n : 0.0, p->act);
            }
}

void rs_add_act_ref(const float *a, const float *b, float *y, int64_t n, int act) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)act_d((double)a[i] + (double)b[i], act);
}

void rs_relu6_ref(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)act_d(x[i], RS_ACT_RELU6);
}
