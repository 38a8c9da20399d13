/* resize.c - bicubic resize with the semantics of PIL's Image.resize(..., BICUBIC) on
 * 8-bit images, and the normalisation into a CHW float tensor.
 *
 * PIL's algorithm (libImaging/Resample.c), re-implemented from its description:
 *  - separable: a horizontal pass (only over the source rows the vertical pass will
 *    read), then a vertical pass; a pass whose size does not change is skipped;
 *  - for output index i the filter centre in input coordinates is (i + 0.5) * scale,
 *    scale = in / out; the kernel is the cubic convolution with a = -0.5, support 2,
 *    widened by scale when downscaling (filterscale = max(scale, 1));
 *  - taps are the integer inputs j in [(int)(centre - support + 0.5), (int)(centre +
 *    support + 0.5)) clipped to the image, weight cubic((j - centre + 0.5) / filterscale),
 *    normalised to sum 1 in double precision;
 *  - weights are converted to 22-bit fixed point, rounded half away from zero; each output
 *    sample is (2^21 + sum v*w) >> 22 clamped to 0..255.
 * The arithmetic is written in the same order so the double results are bit-identical. */
#include "data/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PREC_BITS 22

static double cubic_a05(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    int ksize;
    int *bounds;  /* per output: first input index, tap count */
    int32_t *k;   /* per output: ksize fixed-point weights */
} coeffs;

static void coeffs_free(coeffs *c) { free(c->bounds); free(c->k); c->bounds = NULL; c->k = NULL; }

static rsmoe_status coeffs_make(int in_size, int out_size, coeffs *c) {
    memset(c, 0, sizeof *c);
    double scale = (double)in_size / out_size;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->k = malloc(sizeof(int32_t) * (size_t)ksize * (size_t)out_size);
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!c->bounds || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return rs_error(RSMOE_ERR_NOMEM, "resize: cannot allocate coefficients");
    }
    for (int i = 0; i < out_size; i++) {
        double centre = 0.0 + (i + 0.5) * scale;
        double inv = 1.0 / fscale;
        int lo = (int)(centre - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(centre + support + 0.5);
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            w[j] = cubic_a05((j + lo - centre + 0.5) * inv);
            sum += w[j];
        }
        int32_t *kk = c->k + (size_t)i * ksize;
        for (int j = 0; j < ksize; j++) {
            double v = 0.0;
            if (j < n) v = sum != 0.0 ? w[j] / sum : w[j];
            kk[j] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC_BITS)) : (int32_t)(0.5 + v * (1 << PREC_BITS));
        }
        c->bounds[2 * i] = lo;
        c->bounds[2 * i + 1] = n;
    }
    free(w);
    return RSMOE_OK;
}

static inline uint8_t clamp8(int32_t s) {
    if (s < 0) return 0;
    s >>= PREC_BITS;
    return (uint8_t)(s > 255 ? 255 : s);
}

/* out: W x rows x ch from in rows [row0, row0 + rows). Integer sums do not depend on the
 * order of the taps (no overflow: |sum| < 2^31), so the loops are ordered for speed. */
static void pass_h(const uint8_t *in, int in_w, int ch, int row0, int rows, const coeffs *c, uint8_t *out, int W) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *src = in + (size_t)(row0 + y) * in_w * ch;
        uint8_t *dst = out + (size_t)y * W * ch;
        for (int x = 0; x < W; x++) {
            int lo = c->bounds[2 * x], n = c->bounds[2 * x + 1];
            const int32_t *k = c->k + (size_t)x * c->ksize;
            const uint8_t *p = src + (size_t)lo * ch;
            if (ch == 3) {
                int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
                for (int j = 0; j < n; j++) {
                    s0 += (int32_t)p[3 * j] * k[j];
                    s1 += (int32_t)p[3 * j + 1] * k[j];
                    s2 += (int32_t)p[3 * j + 2] * k[j];
                }
                dst[3 * x] = clamp8(s0); dst[3 * x + 1] = clamp8(s1); dst[3 * x + 2] = clamp8(s2);
            } else {
                for (int ci = 0; ci < ch; ci++) {
                    int32_t s = 1 << (PREC_BITS - 1);
                    for (int j = 0; j < n; j++) s += (int32_t)p[(size_t)j * ch + ci] * k[j];
                    dst[(size_t)x * ch + ci] = clamp8(s);
                }
            }
        }
    }
}

/* out: width x H x ch; the bounds are relative to in's first row; acc: width*ch ints */
static void pass_v(const uint8_t *in, int width, int ch, const coeffs *c, int shift, uint8_t *out, int H,
                   int32_t *acc) {
    size_t stride = (size_t)width * ch;
    for (int y = 0; y < H; y++) {
        int lo = c->bounds[2 * y] - shift, n = c->bounds[2 * y + 1];
        const int32_t *k = c->k + (size_t)y * c->ksize;
        for (size_t i = 0; i < stride; i++) acc[i] = 1 << (PREC_BITS - 1);
        for (int j = 0; j < n; j++) {
            const uint8_t *row = in + (size_t)(lo + j) * stride;
            int32_t kj = k[j];
            for (size_t i = 0; i < stride; i++) acc[i] += (int32_t)row[i] * kj;
        }
        uint8_t *dst = out + (size_t)y * stride;
        for (size_t i = 0; i < stride; i++) dst[i] = clamp8(acc[i]);
    }
}

rsmoe_status rs_image_resize_bicubic_u8(const rs_image *in, int W, int H, rs_image *out) {
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "resize: NULL output");
    memset(out, 0, sizeof *out);
    if (!in || !in->data || in->w <= 0 || in->h <= 0 || in->c <= 0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "resize: empty input image");
    if (W <= 0 || H <= 0 || W > RS_IMAGE_DEFAULT_MAX_DIM || H > RS_IMAGE_DEFAULT_MAX_DIM)
        return rs_error(RSMOE_ERR_INVALID_ARG, "resize: bad target size %dx%d", W, H);
    int ch = in->c;
    rsmoe_status st = rs_image_alloc(out, W, H, ch);
    if (st) return st;
    bool need_h = W != in->w, need_v = H != in->h;
    if (!need_h && !need_v) {
        memcpy(out->data, in->data, (size_t)W * H * ch);
        return RSMOE_OK;
    }
    coeffs cv = {0}, chz = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    st = coeffs_make(in->h, H, &cv);
    if (st) goto fail;
    int first = cv.bounds[0], last = cv.bounds[2 * (H - 1)] + cv.bounds[2 * (H - 1) + 1];
    const uint8_t *src = in->data;
    int shift = 0;
    if (need_h) {
        st = coeffs_make(in->w, W, &chz);
        if (st) goto fail;
        if (!need_v) {
            pass_h(in->data, in->w, ch, 0, H, &chz, out->data, W);
            goto done;
        }
        tmp = malloc((size_t)W * (size_t)(last - first) * ch);
        if (!tmp) { st = rs_error(RSMOE_ERR_NOMEM, "resize: cannot allocate the intermediate image"); goto fail; }
        pass_h(in->data, in->w, ch, first, last - first, &chz, tmp, W);
        src = tmp;
        shift = first;
    }
    acc = malloc(sizeof(int32_t) * (size_t)W * ch);
    if (!acc) { st = rs_error(RSMOE_ERR_NOMEM, "resize: cannot allocate a row"); goto fail; }
    pass_v(src, W, ch, &cv, shift, out->data, H, acc);
done:
    free(acc);
    free(tmp);
    coeffs_free(&cv);
    coeffs_free(&chz);
    return RSMOE_OK;
fail:
    free(acc);
    free(tmp);
    coeffs_free(&cv);
    coeffs_free(&chz);
    rs_image_free(out);
    return st;
}

rsmoe_status rs_image_preprocess(const rs_image *img, int W, int H, const float mean[3], const float std[3],
                                 float *chw_out) {
    if (!img || !img->data || !mean || !std || !chw_out)
        return rs_error(RSMOE_ERR_INVALID_ARG, "preprocess: NULL argument");
    if (img->c != 3 && img->c != 1)
        return rs_error(RSMOE_ERR_INVALID_ARG, "preprocess: image has %d channels; need 1 or 3 (choose bands)", img->c);
    for (int k = 0; k < 3; k++)
        if (!(std[k] > 0.0f) || !isfinite(mean[k]))
            return rs_error(RSMOE_ERR_INVALID_ARG, "preprocess: bad mean/std for channel %d", k);
    rs_image r = {0};
    const rs_image *src = img;
    if (img->w != W || img->h != H) {
        rsmoe_status st = rs_image_resize_bicubic_u8(img, W, H, &r);
        if (st) return st;
        src = &r;
    }
    size_t plane = (size_t)W * H;
    for (int k = 0; k < 3; k++) {
        int sk = src->c == 3 ? k : 0;
        float m = mean[k], s = std[k];
        float *dst = chw_out + (size_t)k * plane;
        for (size_t i = 0; i < plane; i++) dst[i] = ((float)src->data[i * src->c + sk] / 255.0f - m) / s;
    }
    rs_image_free(&r);
    return RSMOE_OK;
}

rsmoe_status rs_image_to_tensor(const rs_image *img, int size, const float mean[3], const float std[3],
                                float *chw_out) {
    return rs_image_preprocess(img, size, size, mean, std, chw_out);
}
