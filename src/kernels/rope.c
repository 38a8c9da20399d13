/* rope.c - rotary position embeddings, NeoX/HF ("rotate_half", pairs (i, i+d/2)) and
 * interleaved (pairs (2i, 2i+1)) forms, optional Llama-3 frequency scaling. */
#include "kernels/ops.h"
#include "kernels/ops_internal.h"

#include <math.h>

rs_rope_cfg rs_rope_default(void) {
    rs_rope_cfg c = { .theta = 10000.0, .interleaved = false, .llama3 = false, .factor = 32.0,
                      .low_freq_factor = 1.0, .high_freq_factor = 4.0,
                      .original_max_pos = 8192.0 };
    return c;
}

rsmoe_status rs_rope_inv_freq(double *inv_freq, int64_t d, const rs_rope_cfg *c) {
    if (!c || d < 2 || d % 2 || d > RS_ROPE_MAX_D)
        return rs_error(RSMOE_ERR_INVALID_ARG, "rope: head dim %lld must be even, 2..%d",
                        (long long)d, RS_ROPE_MAX_D);
    if (!(c->theta > 0))
        return rs_error(RSMOE_ERR_INVALID_ARG, "rope: bad theta %g", c->theta);
    if (c->llama3 && (!(c->factor > 0) || !(c->high_freq_factor > c->low_freq_factor) ||
                      !(c->low_freq_factor > 0) || !(c->original_max_pos > 0)))
        return rs_error(RSMOE_ERR_INVALID_ARG,
                        "rope: bad Llama-3 scaling factor=%g low=%g high=%g orig=%g",
                        c->factor, c->low_freq_factor, c->high_freq_factor,
                        c->original_max_pos);
    for (int64_t i = 0; i < d / 2; i++) {
        double f = 1.0 / pow(c->theta, (double)(2 * i) / (double)d);
        if (c->llama3) {
            double wavelen = 2.0 * M_PI / f;
            double low_wl = c->original_max_pos / c->low_freq_factor;
            double high_wl = c->original_max_pos / c->high_freq_factor;
            if (wavelen > low_wl) {
                f /= c->factor;                       /* low frequencies: interpolate */
            } else if (wavelen >= high_wl) {          /* medium: smooth blend */
                double sm = (c->original_max_pos / wavelen - c->low_freq_factor) /
                            (c->high_freq_factor - c->low_freq_factor);
                f = (1.0 - sm) * f / c->factor + sm * f;
            }                                         /* high frequencies: unchanged */
        }
        inv_freq[i] = f;
    }
    return RSMOE_OK;
}

typedef struct {
    float *x;
    const int32_t *pos;
    const double *inv_freq;
    int64_t pos0, H, d, ld;
    bool interleaved;
    float sign; /* +1 forward, -1 backward (inverse rotation) */
} rope_ctx;

static void rope_rows(void *vc, int64_t t0, int64_t t1, int ith) {
    rope_ctx *c = vc;
    int64_t half = c->d / 2;
    float cs[RS_ROPE_MAX_D / 2], sn[RS_ROPE_MAX_D / 2];
    for (int64_t t = t0; t < t1; t++) {
        double p = c->pos ? (double)c->pos[t] : (double)(c->pos0 + t);
        for (int64_t i = 0; i < half; i++) {
            double ang = p * c->inv_freq[i];
            cs[i] = (float)cos(ang);
            sn[i] = c->sign * (float)sin(ang);
        }
        for (int64_t h = 0; h < c->H; h++) {
            float *x = c->x + t * c->ld + h * c->d;
            if (c->interleaved) {
                for (int64_t i = 0; i < half; i++) {
                    float a = x[2 * i], b = x[2 * i + 1];
                    x[2 * i] = a * cs[i] - b * sn[i];
                    x[2 * i + 1] = b * cs[i] + a * sn[i];
                }
            } else {
                for (int64_t i = 0; i < half; i++) {
                    float a = x[i], b = x[i + half];
                    x[i] = a * cs[i] - b * sn[i];
                    x[i + half] = b * cs[i] + a * sn[i];
                }
            }
        }
    }
}

static rsmoe_status rope_run(float *x, const int32_t *pos, int64_t pos0, int64_t T, int64_t H,
                             int64_t d, int64_t ld, const rs_rope_cfg *c, float sign,
                             rs_pool *pool) {
    double inv_freq[RS_ROPE_MAX_D / 2];
    rsmoe_status st = rs_rope_inv_freq(inv_freq, d, c);
    if (st) return st;
    if (T < 0 || H <= 0 || (ld && ld < H * d))
        return rs_error(RSMOE_ERR_INVALID_ARG, "rope: bad shape T=%lld H=%lld ld=%lld",
                        (long long)T, (long long)H, (long long)ld);
    rope_ctx rc = { .x = x, .pos = pos, .inv_freq = inv_freq, .pos0 = pos0, .H = H, .d = d,
                    .ld = ld ? ld : H * d, .interleaved = c->interleaved, .sign = sign };
    rs_par_for(pool, T, 16, rope_rows, &rc);
    return RSMOE_OK;
}

rsmoe_status rs_rope_fwd(float *x, const int32_t *pos, int64_t pos0, int64_t T, int64_t H,
                         int64_t d, int64_t ld, const rs_rope_cfg *c, rs_pool *pool) {
    return rope_run(x, pos, pos0, T, H, d, ld, c, 1.0f, pool);
}

rsmoe_status rs_rope_bwd(float *dx, const int32_t *pos, int64_t pos0, int64_t T, int64_t H,
                         int64_t d, int64_t ld, const rs_rope_cfg *c, rs_pool *pool) {
    return rope_run(dx, pos, pos0, T, H, d, ld, c, -1.0f, pool);
}
