/* ops_ref.c - plain double-precision reference twins of ops.h (see ops_ref.h).
 * Written from the textbook / PyTorch definitions, not from the optimised kernels. */
#include "kernels/ops_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rs_linear_ref(double *y, const double *x, const double *W, const double *b, int64_t T,
                   int64_t in, int64_t out) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) s += x[t * in + i] * W[o * in + i];
            y[t * out + o] = s;
        }
}

void rs_lora_ref(double *y, const double *x, const double *W, const double *b,
                 const double *A, const double *B, double alpha, int64_t T, int64_t in,
                 int64_t out, int64_t r) {
    /* effective weight W + (alpha/r)·B·A, then a plain linear */
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) {
                double w = W[o * in + i];
                for (int64_t k = 0; k < r; k++) w += alpha / (double)r * B[o * r + k] * A[k * in + i];
                s += x[t * in + i] * w;
            }
            y[t * out + o] = s;
        }
}

void rs_layernorm_ref(double *y, const double *x, const double *w, const double *b,
                      int64_t T, int64_t C, double eps) {
    for (int64_t t = 0; t < T; t++) {
        const double *xr = x + t * C;
        double m = 0, v = 0;
        for (int64_t i = 0; i < C; i++) m += xr[i];
        m /= (double)C;
        for (int64_t i = 0; i < C; i++) v += (xr[i] - m) * (xr[i] - m);
        v /= (double)C;
        for (int64_t i = 0; i < C; i++) {
            double n = (xr[i] - m) / sqrt(v + eps);
            y[t * C + i] = n * (w ? w[i] : 1.0) + (b ? b[i] : 0.0);
        }
    }
}

void rs_rmsnorm_ref(double *y, const double *x, const double *w, int64_t T, int64_t C,
                    double eps) {
    for (int64_t t = 0; t < T; t++) {
        double ms = 0;
        for (int64_t i = 0; i < C; i++) ms += x[t * C + i] * x[t * C + i];
        ms /= (double)C;
        for (int64_t i = 0; i < C; i++)
            y[t * C + i] = x[t * C + i] / sqrt(ms + eps) * (w ? w[i] : 1.0);
    }
}

/* 0.5·x·(1+erf(x/√2)) written with erfc, which does not cancel for very negative x */
double rs_gelu_ref(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
/* 0.5·x·(1+tanh(u)) = x/(1+e^(−2u)), the same without cancellation for very negative x */
double rs_gelu_tanh_ref(double x) {
    return x / (1.0 + exp(-2.0 * sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
double rs_silu_ref(double x) { return x / (1.0 + exp(-x)); }

void rs_softmax_ref(double *y, const double *x, int64_t rows, int64_t cols, double scale) {
    for (int64_t r = 0; r < rows; r++) {
        double mx = -INFINITY, s = 0;
        for (int64_t i = 0; i < cols; i++) if (scale * x[r * cols + i] > mx) mx = scale * x[r * cols + i];
        for (int64_t i = 0; i < cols; i++) s += exp(scale * x[r * cols + i] - mx);
        for (int64_t i = 0; i < cols; i++) y[r * cols + i] = exp(scale * x[r * cols + i] - mx) / s;
    }
}

void rs_attn_ref(double *out, double *probs, const double *q, const double *k,
                 const double *v, const rs_attn_desc *a) {
    int64_t Tq = a->Tq, Tk = a->Tk, d = a->d, Hq = a->Hq, Hkv = a->Hkv;
    int64_t ldq = a->ldq ? a->ldq : Hq * d, ldk = a->ldk ? a->ldk : Hkv * d;
    int64_t ldv = a->ldv ? a->ldv : Hkv * d, ldo = a->ldo ? a->ldo : Hq * d;
    double scale = a->scale > 0 ? (double)a->scale : 1.0 / sqrt((double)d);
    int64_t per = Hq / Hkv;
    if (Tk > 4096) { /* beyond the reference's fixed row buffer: poison the output */
        for (int64_t i = 0; i < Tq; i++)
            for (int64_t e = 0; e < Hq * d; e++) out[i * ldo + e] = NAN;
        return;
    }
    for (int64_t h = 0; h < Hq; h++) {
        int64_t g = h / per;
        for (int64_t i = 0; i < Tq; i++) {
            double p[4096]; /* reference: Tk <= 4096 */
            bool allowed[4096];
            double mx = -INFINITY;
            for (int64_t j = 0; j < Tk; j++) {
                allowed[j] = (!a->causal || j <= i + a->q_offset) &&
                             (!a->key_valid || a->key_valid[j]);
                double s = 0;
                for (int64_t e = 0; e < d; e++)
                    s += q[i * ldq + h * d + e] * k[j * ldk + g * d + e];
                p[j] = s * scale;
                if (allowed[j] && p[j] > mx) mx = p[j];
            }
            double z = 0;
            for (int64_t j = 0; j < Tk; j++) { p[j] = allowed[j] ? exp(p[j] - mx) : 0.0; z += p[j]; }
            for (int64_t j = 0; j < Tk; j++) p[j] = z > 0 ? p[j] / z : 0.0;
            for (int64_t e = 0; e < d; e++) {
                double s = 0;
                for (int64_t j = 0; j < Tk; j++) s += p[j] * v[j * ldv + g * d + e];
                out[i * ldo + h * d + e] = s;
            }
            if (probs) memcpy(probs + (h * Tq + i) * Tk, p, (size_t)Tk * sizeof(double));
        }
    }
}

/* HF transformers: _compute_default_rope_parameters + _compute_llama3_parameters,
 * written as the torch.where chain there */
static void ref_inv_freq(double *f, int64_t d, const rs_rope_cfg *c) {
    for (int64_t i = 0; i < d / 2; i++) {
        double inv = 1.0 / pow(c->theta, (double)(2 * i) / (double)d);
        if (c->llama3) {
            double low_wl = c->original_max_pos / c->low_freq_factor;
            double high_wl = c->original_max_pos / c->high_freq_factor;
            double wl = 2 * M_PI / inv;
            double inv_l = wl > low_wl ? inv / c->factor : inv;
            double smooth = (c->original_max_pos / wl - c->low_freq_factor) /
                            (c->high_freq_factor - c->low_freq_factor);
            double smoothed = (1 - smooth) * inv_l / c->factor + smooth * inv_l;
            bool medium = !(wl < high_wl) && !(wl > low_wl);
            inv = medium ? smoothed : inv_l;
        }
        f[i] = inv;
    }
}

void rs_rope_ref(double *y, const double *x, const int32_t *pos, int64_t pos0, int64_t T,
                 int64_t H, int64_t d, const rs_rope_cfg *c) {
    double f[RS_ROPE_MAX_D / 2];
    ref_inv_freq(f, d, c);
    int64_t half = d / 2;
    for (int64_t t = 0; t < T; t++) {
        double p = pos ? pos[t] : (double)(pos0 + t);
        for (int64_t h = 0; h < H; h++) {
            const double *xr = x + t * H * d + h * d;
            double *yr = y + t * H * d + h * d;
            for (int64_t e = 0; e < d; e++) {
                if (c->interleaved) {
                    /* pair (2i, 2i+1) as a complex number times e^{i·p·f_i} */
                    int64_t i = e / 2;
                    double cs = cos(p * f[i]), sn = sin(p * f[i]);
                    yr[e] = (e % 2 == 0) ? xr[e] * cs - xr[e + 1] * sn : xr[e] * cs + xr[e - 1] * sn;
                } else {
                    /* HF: x·cos(emb) + rotate_half(x)·sin(emb), emb = cat(freqs, freqs),
                     * rotate_half(x) = cat(-x2, x1) */
                    int64_t i = e % half;
                    double cs = cos(p * f[i]), sn = sin(p * f[i]);
                    double rot = e < half ? -xr[e + half] : xr[e - half];
                    yr[e] = xr[e] * cs + rot * sn;
                }
            }
        }
    }
}

void rs_embedding_ref(double *y, const double *table, const int32_t *ids, int64_t T,
                      int64_t C) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < C; i++) y[t * C + i] = table[(int64_t)ids[t] * C + i];
}

void rs_patch_embed_ref(double *out, const double *img, int64_t B, int64_t Cin, int64_t H,
                        int64_t W, int64_t P, int64_t width, const double *Wt,
                        const double *b) {
    int64_t oh = (H - P) / P + 1, ow = (W - P) / P + 1; /* PyTorch Conv2d output size */
    for (int64_t n = 0; n < B; n++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++)
                for (int64_t o = 0; o < width; o++) {
                    double s = b ? b[o] : 0.0;
                    for (int64_t c = 0; c < Cin; c++)
                        for (int64_t ky = 0; ky < P; ky++)
                            for (int64_t kx = 0; kx < P; kx++)
                                s += Wt[((o * Cin + c) * P + ky) * P + kx] *
                                     img[((n * Cin + c) * H + oy * P + ky) * W + ox * P + kx];
                    out[((n * oh + oy) * ow + ox) * width + o] = s;
                }
}

double rs_cross_entropy_ref(const double *logits, const int32_t *targets, int64_t T,
                            int64_t V, int32_t ignore_index) {
    double sum = 0;
    int64_t n = 0;
    for (int64_t t = 0; t < T; t++) {
        if (targets[t] == ignore_index) continue;
        double mx = -INFINITY, z = 0;
        for (int64_t i = 0; i < V; i++) if (logits[t * V + i] > mx) mx = logits[t * V + i];
        for (int64_t i = 0; i < V; i++) z += exp(logits[t * V + i] - mx);
        sum += -(logits[t * V + targets[t]] - mx - log(z));
        n++;
    }
    return n ? sum / (double)n : 0.0;
}

void rs_adamw_ref(double *p, const double *g, double *m, double *v, int64_t n, int64_t step,
                  const rs_adamw_cfg *c) {
    double b1 = c->beta1, b2 = c->beta2;
    for (int64_t i = 0; i < n; i++) {
        p[i] -= (double)c->lr * (double)c->weight_decay * p[i];
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        double mh = m[i] / (1 - pow(b1, (double)step)), vh = v[i] / (1 - pow(b2, (double)step));
        p[i] -= (double)c->lr * mh / (sqrt(vh) + (double)c->eps);
    }
}

void rs_lora_rows_fwd_ref(const float *x, int64_t in, int R, const rs_lora_rows_target *tg, int n_targets) {
    for (int g = 0; g < n_targets; g++)
        for (int i = 0; i < R; i++) {
            const rs_lora_mat *m = &tg[g].m[i];
            if (!m->A) continue;
            double *h = malloc(sizeof(double) * (size_t)(m->r > 0 ? m->r : 1));
            if (!h) return; /* a test's reference: y left partly updated, the comparison fails */
            for (int q = 0; q < m->r; q++) {
                double s = 0;
                for (int64_t k = 0; k < in; k++) s += (double)x[(int64_t)i * in + k] * m->A[(int64_t)q * in + k];
                h[q] = s;
            }
            for (int64_t o = 0; o < tg[g].out; o++) {
                double s = 0;
                for (int q = 0; q < m->r; q++) s += h[q] * m->B[o * m->r + q];
                tg[g].y[(int64_t)i * tg[g].ldy + o] += (float)((double)m->scale * s);
            }
            free(h);
        }
}
