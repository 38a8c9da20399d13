/* conv.h - forward CNN kernels on NHWC (here HWC, one image) float activations:
 * conv2d, depthwise conv2d, average pooling, element-wise add, ReLU/ReLU6.
 * Each has a plain reference twin (*_ref: direct loops, double accumulation) used by tests.
 *
 * Geometry follows TensorFlow: SAME padding gives out = ceil(in / stride) with
 * pad_before = max((out-1)*stride + (k-1)*dilation + 1 - in, 0) / 2 (the odd pixel goes
 * after); VALID gives out = floor((in - (k-1)*dilation - 1) / stride) + 1, no padding.
 * Padded input positions are zeros for convolutions and are left out of the average's
 * count for pooling (TFLite's AVERAGE_POOL_2D). */
#ifndef RSMOE_KERNELS_CONV_H
#define RSMOE_KERNELS_CONV_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* fused activation; values equal TFLite's ActivationFunctionType */
typedef enum { RS_ACT_NONE = 0, RS_ACT_RELU = 1, RS_ACT_RELU6 = 3 } rs_act;

typedef struct {
    int ih, iw, ic;        /* input H, W, C */
    int oh, ow, oc;        /* output H, W, C */
    int kh, kw;            /* kernel (or pooling window) */
    int sh, sw;            /* strides */
    int dh, dw;            /* dilations (1 = none) */
    int pad_top, pad_left; /* padding before; after is implied by the output size */
    int act;               /* rs_act */
    int depth_mult;        /* depthwise only: oc = ic * depth_mult */
} rs_conv_params;

/* Fills the output size and padding from input size, kernel, stride, dilation and
 * SAME/VALID; error for non-positive sizes or an empty output. */
rsmoe_status rs_conv_geometry(rs_conv_params *p, bool same);

/* Conv2d: x [ih, iw, ic], w [kh, kw, ic, oc] (HWIO: oc contiguous), b [oc] or NULL,
 * y [oh, ow, oc]. A 1x1, stride-1, unpadded conv is one matrix product y = x·w; other
 * shapes gather patches (im2col) into `scratch`, which must hold
 * rs_conv2d_scratch_floats(p) floats (0 for the 1x1 case: scratch may be NULL). */
size_t rs_conv2d_scratch_floats(const rs_conv_params *p);
void rs_conv2d(const rs_conv_params *p, const float *x, const float *w, const float *b,
               float *y, float *scratch, rs_pool *pool);
void rs_conv2d_ref(const rs_conv_params *p, const float *x, const float *w, const float *b,
                   float *y);

/* Depthwise conv2d: w [kh, kw, ic*depth_mult] (output channel c*depth_mult + k reads input
 * channel c, as TFLite), b [oc] or NULL. */
void rs_dwconv2d(const rs_conv_params *p, const float *x, const float *w, const float *b,
                 float *y, rs_pool *pool);
void rs_dwconv2d_ref(const rs_conv_params *p, const float *x, const float *w, const float *b,
                     float *y);

/* Average pooling over kh x kw windows (oc == ic), mean of the in-image elements only. */
void rs_avgpool2d(const rs_conv_params *p, const float *x, float *y, rs_pool *pool);
void rs_avgpool2d_ref(const rs_conv_params *p, const float *x, float *y);

/* y = act(a + b), n elements (y may alias a or b) */
void rs_add_act(const float *a, const float *b, float *y, int64_t n, int act);
void rs_add_act_ref(const float *a, const float *b, float *y, int64_t n, int act);

/* in-place activation */
void rs_act_inplace(float *x, int64_t n, int act);
void rs_relu6(float *x, int64_t n);
void rs_relu6_ref(float *x, int64_t n);

#endif
