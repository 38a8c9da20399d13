/* encoder_cnn.c - the float CNN image encoder: building it from TFLite, GGUF save/load,
 * buffer planning and the forward pass. */
#include "model/encoder_cnn.h"
#include "formats/gguf.h"
#include "kernels/gemm.h"
#include "kernels/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(int k) {
    static const char *n[] = {"conv", "dwconv", "add", "avgpool", "fc", "reshape"};
    return k >= 0 && k <= RS_CNN_RESHAPE ? n[k] : NULL;
}
static const char *act_name(int a) {
    return a == RS_ACT_NONE ? "none" : a == RS_ACT_RELU ? "relu" : a == RS_ACT_RELU6 ? "relu6" : NULL;
}

void rs_cnn_free(rs_cnn_encoder *e) {
    if (!e) return;
    free(e->ops);
    free(e->vals);
    free(e->store);
    free(e->base);
    free(e->slot);
    free(e->slot_floats);
    if (e->labels) {
        for (int i = 0; i < e->nlabels; i++) free(e->labels[i]);
        free(e->labels);
    }
    rs_gguf_close(e->gguf);
    free(e);
}

const char *rs_cnn_label(const rs_cnn_encoder *e, int i) {
    return e && e->labels && i >= 0 && i < e->nlabels ? e->labels[i] : NULL;
}

/* ---------------------------------------------------------------- graph finalisation */

/* Computes value shapes and geometry, checks the graph, plans buffers. */
static rsmoe_status cnn_finalize(rs_cnn_encoder *e) {
    const char *nm = e->name;
    if (e->in_h <= 0 || e->in_w <= 0 || e->in_c <= 0 || e->in_h > 8192 || e->in_w > 8192 || e->in_c > 64)
        return rs_error(RSMOE_ERR_FORMAT, "%s: bad input shape %dx%dx%d", nm, e->in_h, e->in_w, e->in_c);
    int nv = e->nops + 1;
    e->vals = calloc((size_t)nv, sizeof *e->vals);
    e->base = calloc((size_t)nv, sizeof(int));
    e->slot = calloc((size_t)nv, sizeof(int));
    int *last = calloc((size_t)nv, sizeof(int));
    int *slot_busy = calloc((size_t)nv, sizeof(int));
    e->slot_floats = calloc((size_t)nv, sizeof(size_t));
    rsmoe_status st = RSMOE_OK;
    if (!e->vals || !e->base || !e->slot || !last || !slot_busy || !e->slot_floats) {
        st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", nm);
        goto out;
    }
    e->vals[0] = (rs_cnn_shape){e->in_h, e->in_w, e->in_c};
    e->col_floats = 0;
    for (int i = 0; i < e->nops; i++) {
        rs_cnn_op *op = &e->ops[i];
        if (op->in0 < 0 || op->in0 > i || (op->kind == RS_CNN_ADD && (op->in1 < 0 || op->in1 > i))) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d reads a value that is not computed before it", nm, i);
            goto out;
        }
        if (!act_name(op->act)) {
            st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: op %d has unsupported activation %d", nm, i, op->act);
            goto out;
        }
        rs_cnn_shape x = e->vals[op->in0], y = x;
        int64_t xn = (int64_t)x.h * x.w * x.c;
        rs_conv_params *p = &op->p;
        memset(p, 0, sizeof *p);
        if (op->kind == RS_CNN_CONV || op->kind == RS_CNN_DWCONV || op->kind == RS_CNN_AVGPOOL) {
            *p = (rs_conv_params){.ih = x.h, .iw = x.w, .ic = x.c, .kh = op->kh, .kw = op->kw, .sh = op->sh,
                                  .sw = op->sw, .dh = op->dh, .dw = op->dw, .act = op->act,
                                  .depth_mult = op->depth_mult};
            if (op->kind == RS_CNN_AVGPOOL) p->dh = p->dw = 1;
            if (rs_conv_geometry(p, op->same)) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d (%s): %s", nm, i, kind_name(op->kind), rsmoe_last_error());
                goto out;
            }
            p->oc = op->kind == RS_CNN_AVGPOOL ? x.c : op->oc;
            if (op->kind == RS_CNN_DWCONV && (op->depth_mult < 1 || (int64_t)x.c * op->depth_mult != op->oc)) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d: depthwise %d -> %d channels with multiplier %d", nm, i,
                              x.c, op->oc, op->depth_mult);
                goto out;
            }
            if (p->oc <= 0 || (op->kind != RS_CNN_AVGPOOL && !op->w)) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d: missing weights or channels", nm, i);
                goto out;
            }
            y = (rs_cnn_shape){p->oh, p->ow, p->oc};
            if (op->kind == RS_CNN_CONV) {
                size_t cf = rs_conv2d_scratch_floats(p);
                if (cf > e->col_floats) e->col_floats = cf;
            }
        } else if (op->kind == RS_CNN_ADD) {
            rs_cnn_shape z = e->vals[op->in1];
            if (z.h != x.h || z.w != x.w || z.c != x.c) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d: ADD of %dx%dx%d and %dx%dx%d", nm, i, x.h, x.w, x.c, z.h, z.w, z.c);
                goto out;
            }
        } else if (op->kind == RS_CNN_FC) {
            if (op->oc <= 0 || !op->w || xn > (1 << 26) || (op->rh && op->rh != xn)) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d: bad fully connected layer", nm, i);
                goto out;
            }
            p->ic = (int)xn;
            p->oc = op->oc;
            p->act = op->act;
            y = (rs_cnn_shape){1, 1, op->oc};
        } else if (op->kind == RS_CNN_RESHAPE) {
            if (op->rh <= 0 || op->rw <= 0 || op->oc <= 0 || (int64_t)op->rh * op->rw * op->oc != xn) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d: reshape of %lld values to %dx%dx%d", nm, i, (long long)xn,
                              op->rh, op->rw, op->oc);
                goto out;
            }
            y = (rs_cnn_shape){op->rh, op->rw, op->oc};
        } else {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d has unknown kind %d", nm, i, op->kind);
            goto out;
        }
        if ((int64_t)y.h * y.w * y.c > ((int64_t)1 << 28)) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d: output too large", nm, i);
            goto out;
        }
        e->vals[i + 1] = y;
    }
    if (e->tokens_val < 0 || e->tokens_val > e->nops || e->logits_val < -1 || e->logits_val > e->nops) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: token or logit value out of range", nm);
        goto out;
    }
    /* buffer plan: reshapes alias their input; a value lives until its last reader; the
     * outputs live to the end; a free slot is reused (grown if needed) */
    for (int v = 0; v < nv; v++) {
        e->base[v] = v;
        if (v > 0 && e->ops[v - 1].kind == RS_CNN_RESHAPE) e->base[v] = e->base[e->ops[v - 1].in0];
        last[v] = v == 0 ? 0 : v - 1;
    }
    for (int i = 0; i < e->nops; i++) {
        last[e->base[e->ops[i].in0]] = i;
        if (e->ops[i].kind == RS_CNN_ADD) last[e->base[e->ops[i].in1]] = i;
    }
    last[e->base[e->tokens_val]] = e->nops;
    if (e->logits_val >= 0) last[e->base[e->logits_val]] = e->nops;
    e->nslots = 0;
    for (int v = 0; v < nv; v++) {
        if (e->base[v] != v) {
            e->slot[v] = e->slot[e->base[v]];
            continue;
        }
        /* free the slots of values whose last reader is before the op producing v */
        for (int s = 0; s < e->nslots; s++)
            if (slot_busy[s] >= 0 && last[slot_busy[s]] < v - 1 + (v == 0)) slot_busy[s] = -1;
        size_t need = (size_t)e->vals[v].h * e->vals[v].w * e->vals[v].c;
        int best = -1;
        for (int s = 0; s < e->nslots; s++)
            if (slot_busy[s] < 0 && (best < 0 || e->slot_floats[s] > e->slot_floats[best])) best = s;
        if (best < 0) {
            best = e->nslots++;
            e->slot_floats[best] = 0;
        }
        if (need > e->slot_floats[best]) e->slot_floats[best] = need;
        slot_busy[best] = v;
        e->slot[v] = best;
    }
    rs_cnn_shape t = e->vals[e->tokens_val];
    e->ntokens = t.h * t.w;
    e->token_dim = t.c;
    e->nclasses = 0;
    if (e->logits_val >= 0) {
        rs_cnn_shape l = e->vals[e->logits_val];
        e->nclasses = l.h * l.w * l.c;
    }
out:
    free(last);
    free(slot_busy);
    return st;
}

size_t rs_cnn_scratch_bytes(const rs_cnn_encoder *e) {
    size_t b = 0;
    for (int s = 0; s < e->nslots; s++) b += e->slot_floats[s] * sizeof(float) + 64;
    return b + e->col_floats * sizeof(float) + 64;
}

/* ---------------------------------------------------------------- forward */

static void fc_ref(const float *x, const float *w, const float *b, float *y, int in, int out, int act) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0.0;
        for (int i = 0; i < in; i++) s += (double)x[i] * (double)w[(size_t)o * in + i];
        if (act == RS_ACT_RELU || act == RS_ACT_RELU6) s = s < 0 ? 0 : s;
        if (act == RS_ACT_RELU6) s = s > 6 ? 6 : s;
        y[o] = (float)s;
    }
}

static rsmoe_status cnn_run(const rs_cnn_encoder *e, const uint8_t *rgb, const float *x, float *tokens,
                            float *logits, rs_arena *a, rs_pool *pool, bool use_ref) {
    if (!e || (!rgb && !x) || !a) return rs_error(RSMOE_ERR_INVALID_ARG, "cnn forward: NULL argument");
    size_t mark = rs_arena_mark(a);
    float *slots[512];
    if (e->nslots > 512) return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: too many live buffers", e->name);
    for (int s = 0; s < e->nslots; s++) {
        slots[s] = rs_arena_floats(a, e->slot_floats[s]);
        if (!slots[s]) {
            rs_arena_reset_to(a, mark);
            return rs_error(RSMOE_ERR_NOMEM, "%s: scratch arena too small (need %zu bytes)", e->name,
                            rs_cnn_scratch_bytes(e));
        }
    }
    float *col = e->col_floats ? rs_arena_floats(a, e->col_floats) : NULL;
    if (e->col_floats && !col) {
        rs_arena_reset_to(a, mark);
        return rs_error(RSMOE_ERR_NOMEM, "%s: scratch arena too small (need %zu bytes)", e->name, rs_cnn_scratch_bytes(e));
    }
#define VBUF(v) (slots[e->slot[(v)]])
    size_t n0 = (size_t)e->in_h * e->in_w * e->in_c;
    float *x0 = VBUF(0);
    if (rgb) {
        float lut[256];
        for (int i = 0; i < 256; i++) lut[i] = e->in_scale * ((float)i - e->in_zero);
        for (size_t i = 0; i < n0; i++) x0[i] = lut[rgb[i]];
    } else {
        memcpy(x0, x, n0 * sizeof(float));
    }
    for (int i = 0; i < e->nops; i++) {
        const rs_cnn_op *op = &e->ops[i];
        const float *in = VBUF(op->in0);
        float *y = VBUF(i + 1);
        switch (op->kind) {
        case RS_CNN_CONV:
            if (use_ref) rs_conv2d_ref(&op->p, in, op->w, op->b, y);
            else rs_conv2d(&op->p, in, op->w, op->b, y, col, pool);
            break;
        case RS_CNN_DWCONV:
            if (use_ref) rs_dwconv2d_ref(&op->p, in, op->w, op->b, y);
            else rs_dwconv2d(&op->p, in, op->w, op->b, y, pool);
            break;
        case RS_CNN_AVGPOOL:
            if (use_ref) rs_avgpool2d_ref(&op->p, in, y);
            else rs_avgpool2d(&op->p, in, y, pool);
            break;
        case RS_CNN_ADD: {
            int64_t n = (int64_t)e->vals[i + 1].h * e->vals[i + 1].w * e->vals[i + 1].c;
            if (use_ref) rs_add_act_ref(in, VBUF(op->in1), y, n, op->act);
            else rs_add_act(in, VBUF(op->in1), y, n, op->act);
            break;
        }
        case RS_CNN_FC:
            if (use_ref) {
                fc_ref(in, op->w, op->b, y, op->p.ic, op->p.oc, op->act);
            } else {
                rs_sgemm(false, true, 1, op->p.oc, op->p.ic, 1.f, in, op->p.ic, op->w, op->p.ic, 0.f, y, op->p.oc, pool);
                if (op->b)
                    for (int o = 0; o < op->p.oc; o++) y[o] += op->b[o];
                rs_act_inplace(y, op->p.oc, op->act);
            }
            break;
        case RS_CNN_RESHAPE:
            break;   /* aliased buffer */
        default:
            rs_arena_reset_to(a, mark);
            return rs_error(RSMOE_ERR_INTERNAL, "%s: op %d of unknown kind", e->name, i);
        }
    }
    if (tokens) memcpy(tokens, VBUF(e->tokens_val), (size_t)e->ntokens * e->token_dim * sizeof(float));
    if (logits && e->logits_val >= 0) memcpy(logits, VBUF(e->logits_val), (size_t)e->nclasses * sizeof(float));
#undef VBUF
    rs_arena_reset_to(a, mark);
    return RSMOE_OK;
}

rsmoe_status rs_cnn_forward_u8(const rs_cnn_encoder *e, const uint8_t *rgb, float *tokens, float *logits,
                               rs_arena *scratch, rs_pool *pool) {
    return cnn_run(e, rgb, NULL, tokens, logits, scratch, pool, false);
}

rsmoe_status rs_cnn_forward(const rs_cnn_encoder *e, const float *x, float *tokens, float *logits,
                            rs_arena *scratch, rs_pool *pool, bool use_ref) {
    return cnn_run(e, NULL, x, tokens, logits, scratch, pool, use_ref);
}

/* ---------------------------------------------------------------- from TFLite */

static const rs_tfl_tensor *const_tensor(const rs_tflite *m, int ti, int ndim, const char *what, int opi) {
    if (ti < 0 || ti >= m->ntensors) {
        rs_error(RSMOE_ERR_FORMAT, "%s: operator %d has no %s", m->path, opi, what);
        return NULL;
    }
    const rs_tfl_tensor *t = &m->tensors[ti];
    if (!t->data || t->ndim != ndim) {
        rs_error(RSMOE_ERR_FORMAT, "%s: operator %d: %s %s is not a constant %d-d tensor", m->path, opi, what, t->name, ndim);
        return NULL;
    }
    return t;
}

/* h, w, c of a tensor shape [1, h, w, c], [1, n], [n], ... */
static rs_cnn_shape tfl_shape(const rs_tfl_tensor *t) {
    rs_cnn_shape s = {1, 1, 1};
    int64_t n = rs_tflite_tensor_elements(t);
    if (t->ndim >= 1) s.c = t->shape[t->ndim - 1];
    if (t->ndim >= 3) s.w = t->shape[t->ndim - 2];
    if (s.c > 0 && s.w > 0) s.h = (int)(n / ((int64_t)s.c * s.w));
    return s;
}

rsmoe_status rs_cnn_from_tflite(const rs_tflite *m, rs_cnn_encoder **out) {
    *out = NULL;
    rsmoe_status st = rs_tflite_check_ops(m);
    if (st) return st;
    if (m->ninputs != 1 || m->noutputs < 1)
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: %d inputs: the CNN encoder needs one image input", m->path, m->ninputs);
    const rs_tfl_tensor *it = &m->tensors[m->inputs[0]];
    if (it->ndim != 4 || it->shape[0] != 1 || (it->type != RS_TFL_UINT8 && it->type != RS_TFL_FLOAT32))
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: the input must be a [1, H, W, C] uint8 or float32 image", m->path);
    rs_cnn_encoder *e = calloc(1, sizeof *e);
    int *tv = malloc((size_t)m->ntensors * sizeof(int));
    int *outt = malloc((size_t)(m->nops + 1) * sizeof(int));
    float *tmp = NULL, *fb = NULL;
    if (!e || !tv || !outt) {
        st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", m->path);
        goto fail;
    }
    const char *base = strrchr(m->path, '/');
    snprintf(e->name, sizeof e->name, "%.127s", base ? base + 1 : m->path);
    e->in_h = it->shape[1];
    e->in_w = it->shape[2];
    e->in_c = it->shape[3];
    if (it->type == RS_TFL_UINT8) {
        if (it->nq != 1) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: uint8 input without a (single) quantisation scale", m->path);
            goto fail;
        }
        e->in_scale = it->scale[0];
        e->in_zero = (float)it->zero_point[0];
    } else {   /* float models of this family read [-1, 1] */
        e->in_scale = 1.f / 127.5f;
        e->in_zero = 127.5f;
    }
    for (int i = 0; i < m->ntensors; i++) tv[i] = -1;
    tv[m->inputs[0]] = 0;
    /* weight storage: every constant weight and bias, dequantised */
    size_t total = 0;
    for (int i = 0; i < m->nops; i++) {
        const rs_tfl_op *o = &m->ops[i];
        if (o->builtin == RS_TFL_OP_CONV_2D || o->builtin == RS_TFL_OP_DEPTHWISE_CONV_2D ||
            o->builtin == RS_TFL_OP_FULLY_CONNECTED)
            for (int k = 1; k < 3 && k < o->ninputs; k++)
                if (o->inputs[k] >= 0) total += (size_t)rs_tflite_tensor_elements(&m->tensors[o->inputs[k]]);
    }
    e->store = malloc((total ? total : 1) * sizeof(float));
    e->ops = calloc((size_t)m->nops + 1, sizeof *e->ops);
    if (!e->store || !e->ops) {
        st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", m->path);
        goto fail;
    }
    size_t used = 0;
    e->logits_val = -1;
    e->tokens_val = -1;
    int softmax_out = -1;
    for (int i = 0; i < m->nops; i++) {
        const rs_tfl_op *o = &m->ops[i];
        const char *opn = rs_tflite_op_name(o->builtin);
        if (o->ninputs < 1 || o->noutputs != 1 || o->inputs[0] < 0 || o->outputs[0] < 0) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: operator %d (%s) has bad inputs/outputs", m->path, i, opn);
            goto fail;
        }
        int xin = tv[o->inputs[0]];
        if (xin < 0 || o->inputs[0] == softmax_out) {
            st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: operator %d (%s) reads tensor %s, which is not computed by a "
                          "supported operator before it", m->path, i, opn, m->tensors[o->inputs[0]].name);
            goto fail;
        }
        if (o->activation != RS_TFL_ACT_NONE && o->activation != RS_TFL_ACT_RELU && o->activation != RS_TFL_ACT_RELU6) {
            st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: operator %d (%s) has fused activation %d (only RELU and RELU6 are supported)",
                          m->path, i, opn, o->activation);
            goto fail;
        }
        if (o->builtin == RS_TFL_OP_SOFTMAX) {
            e->logits_val = xin;
            softmax_out = o->outputs[0];
            continue;
        }
        rs_cnn_op *op = &e->ops[e->nops];
        *op = (rs_cnn_op){.in0 = xin, .in1 = -1, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                          .same = o->padding == 0, .act = o->activation, .depth_mult = 1};
        const rs_tfl_tensor *xt = &m->tensors[o->inputs[0]];
        switch (o->builtin) {
        case RS_TFL_OP_CONV_2D:
        case RS_TFL_OP_DEPTHWISE_CONV_2D:
        case RS_TFL_OP_FULLY_CONNECTED: {
            bool fc = o->builtin == RS_TFL_OP_FULLY_CONNECTED, dw = o->builtin == RS_TFL_OP_DEPTHWISE_CONV_2D;
            const rs_tfl_tensor *wt = const_tensor(m, o->ninputs > 1 ? o->inputs[1] : -1, fc ? 2 : 4, "weights", i);
            if (!wt) { st = RSMOE_ERR_FORMAT; goto fail; }
            int64_t nw = rs_tflite_tensor_elements(wt);
            int oc = fc ? wt->shape[0] : dw ? wt->shape[3] : wt->shape[0];
            if (oc <= 0 || nw <= 0) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: operator %d: empty weights", m->path, i);
                goto fail;
            }
            op->kind = fc ? RS_CNN_FC : dw ? RS_CNN_DWCONV : RS_CNN_CONV;
            op->oc = oc;
            if (fc) op->rh = wt->shape[1];   /* inputs per output, checked against the flattened input */
            if (dw && wt->shape[0] != 1) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: operator %d: depthwise weights must be [1, kh, kw, c]", m->path, i);
                goto fail;
            }
            if (!fc) {
                op->kh = wt->shape[1];
                op->kw = wt->shape[2];
                op->sh = o->stride_h;
                op->sw = o->stride_w;
                op->dh = o->dilation_h;
                op->dw = o->dilation_w;
            }
            free(tmp);
            tmp = malloc((size_t)nw * sizeof(float));
            if (!tmp) { st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", m->path); goto fail; }
            if ((st = rs_tflite_dequantize(m, o->inputs[1], NULL, tmp, nw))) goto fail;
            float *w = e->store + used;
            used += (size_t)nw;
            if (op->kind == RS_CNN_CONV) {
                /* OHWI -> HWIO: w[((ky*kw + kx)*ic + i)*oc + o] */
                int kh = wt->shape[1], kw = wt->shape[2], ic = wt->shape[3];
                for (int oo = 0; oo < oc; oo++)
                    for (int ky = 0; ky < kh; ky++)
                        for (int kx = 0; kx < kw; kx++)
                            for (int ii = 0; ii < ic; ii++)
                                w[(((size_t)ky * kw + kx) * ic + ii) * oc + oo] =
                                    tmp[(((size_t)oo * kh + ky) * kw + kx) * ic + ii];
                if (ic != xt->shape[xt->ndim - 1]) {
                    st = rs_error(RSMOE_ERR_FORMAT, "%s: operator %d: weights for %d input channels, input has %d",
                                  m->path, i, ic, xt->shape[xt->ndim - 1]);
                    goto fail;
                }
            } else {
                memcpy(w, tmp, (size_t)nw * sizeof(float));   /* [1,kh,kw,oc] and [out,in] as they are */
            }
            if (dw) {
                int ic = xt->shape[xt->ndim - 1];
                op->depth_mult = ic > 0 && oc % ic == 0 ? oc / ic : 0;
                if (o->depth_multiplier > 0 && o->depth_multiplier != op->depth_mult) {
                    st = rs_error(RSMOE_ERR_FORMAT, "%s: operator %d: depth multiplier %d but %d -> %d channels",
                                  m->path, i, o->depth_multiplier, ic, oc);
                    goto fail;
                }
            }
            op->w = w;
            if (o->ninputs > 2 && o->inputs[2] >= 0) {
                const rs_tfl_tensor *bt = const_tensor(m, o->inputs[2], 1, "bias", i);
                if (!bt) { st = RSMOE_ERR_FORMAT; goto fail; }
                if (bt->shape[0] != oc) {
                    st = rs_error(RSMOE_ERR_FORMAT, "%s: operator %d: bias of %d for %d outputs", m->path, i, bt->shape[0], oc);
                    goto fail;
                }
                /* int32 bias without its own scale: s_in * s_w[c] */
                free(fb);
                fb = malloc((size_t)oc * sizeof(float));
                if (!fb) { st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", m->path); goto fail; }
                for (int c = 0; c < oc; c++)
                    fb[c] = (xt->nq ? xt->scale[0] : 1.f) * (wt->nq > 1 ? wt->scale[c] : wt->nq ? wt->scale[0] : 1.f);
                float *b = e->store + used;
                used += (size_t)oc;
                if ((st = rs_tflite_dequantize(m, o->inputs[2], fb, b, oc))) goto fail;
                op->b = b;
            }
            break;
        }
        case RS_TFL_OP_ADD: {
            int yin = o->ninputs == 2 && o->inputs[1] >= 0 ? tv[o->inputs[1]] : -1;
            if (yin < 0 || o->inputs[1] == softmax_out) {
                st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: operator %d (ADD): only the sum of two computed tensors is supported",
                              m->path, i);
                goto fail;
            }
            op->kind = RS_CNN_ADD;
            op->in1 = yin;
            break;
        }
        case RS_TFL_OP_AVERAGE_POOL_2D:
            op->kind = RS_CNN_AVGPOOL;
            op->kh = o->filter_h;
            op->kw = o->filter_w;
            op->sh = o->stride_h;
            op->sw = o->stride_w;
            e->tokens_val = xin;   /* the feature map before the (last) global pool */
            break;
        case RS_TFL_OP_RESHAPE:
        case RS_TFL_OP_SQUEEZE: {
            rs_cnn_shape s = tfl_shape(&m->tensors[o->outputs[0]]);
            op->kind = RS_CNN_RESHAPE;
            op->rh = s.h;
            op->rw = s.w;
            op->oc = s.c;
            op->act = RS_ACT_NONE;
            break;
        }
        default:
            st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: operator %d (%s) is not supported", m->path, i, opn);
            goto fail;
        }
        outt[e->nops] = o->outputs[0];
        e->nops++;
        tv[o->outputs[0]] = e->nops;
    }
    if (e->tokens_val < 0) {
        st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: no AVERAGE_POOL_2D: cannot tell which feature map gives the tokens", m->path);
        goto fail;
    }
    if (e->logits_val < 0) {
        int ov = tv[m->outputs[0]];
        if (ov > 0) e->logits_val = ov;
    }
    if ((st = cnn_finalize(e))) goto fail;
    /* every computed shape must match the file's */
    for (int i = 0; i < e->nops; i++) {
        rs_cnn_shape a = e->vals[i + 1], b = tfl_shape(&m->tensors[outt[i]]);
        if (a.h != b.h || a.w != b.w || a.c != b.c) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s is %dx%dx%d in the file but computes to %dx%dx%d", m->path,
                          m->tensors[outt[i]].name, b.h, b.w, b.c, a.h, a.w, a.c);
            goto fail;
        }
    }
    free(tv);
    free(outt);
    free(tmp);
    free(fb);
    *out = e;
    return RSMOE_OK;
fail:
    free(tv);
    free(outt);
    free(tmp);
    free(fb);
    rs_cnn_free(e);
    return st ? st : RSMOE_ERR_FORMAT;
}

/* ---------------------------------------------------------------- GGUF */

#define KEYF(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), buf)

static void weight_ne(const rs_cnn_op *op, int64_t *ne, int *nd) {
    const rs_conv_params *p = &op->p;
    if (op->kind == RS_CNN_CONV) { ne[0] = p->oc; ne[1] = p->ic; ne[2] = p->kw; ne[3] = p->kh; *nd = 4; }
    else if (op->kind == RS_CNN_DWCONV) { ne[0] = p->oc; ne[1] = p->kw; ne[2] = p->kh; *nd = 3; }
    else { ne[0] = p->ic; ne[1] = p->oc; *nd = 2; }
}

/* the type a weight is stored in: wtype, or f32 when its rows do not fit wtype's blocks */
static rs_dtype stored_type(const rs_cnn_op *op, rs_dtype wtype) {
    int64_t ne[4];
    int nd;
    weight_ne(op, ne, &nd);
    return ne[0] % (int64_t)rs_dtype_block(wtype) == 0 ? wtype : RS_F32;
}

rsmoe_status rs_cnn_gguf_add(const rs_cnn_encoder *e, rs_gguf_writer *w, const char *const *labels, int nlabels) {
    return rs_cnn_gguf_add_typed(e, w, RS_F32, labels, nlabels, NULL);
}

rsmoe_status rs_cnn_gguf_add_typed(const rs_cnn_encoder *e, rs_gguf_writer *w, rs_dtype wtype,
                                   const char *const *labels, int nlabels, void **converted) {
    rsmoe_status st = RSMOE_OK;
    char k[128];
    rs_tensor ts;
    uint8_t *conv = NULL;
    size_t conv_used = 0;
    if (converted) *converted = NULL;
    /* q8_0 is refused: conv weights are HWIO (output channels contiguous), so a q8_0 block
     * would share one scale across 32 output channels whose folded batch-norm scales differ,
     * and re-rounding the 8-bit QAT grid that way moved MobileNetV2's logits by 30 %. */
    if (wtype == RS_Q8_0)
        return rs_error(RSMOE_ERR_UNSUPPORTED, "cnn gguf: q8_0 weights are not supported for the CNN encoder "
                        "(its blocks would span output channels: large accuracy loss); use f16");
    if (wtype != RS_F32 && wtype != RS_F16 && wtype != RS_BF16)
        return rs_error(RSMOE_ERR_INVALID_ARG, "cnn gguf: unsupported weight type %d", (int)wtype);
    if (wtype != RS_F32) {
        if (!converted) return rs_error(RSMOE_ERR_INVALID_ARG, "cnn gguf: converted weights need a buffer to keep");
        size_t need = 0;
        for (int i = 0; i < e->nops; i++)
            if (e->ops[i].w) {
                int64_t ne[4];
                int nd;
                weight_ne(&e->ops[i], ne, &nd);
                int64_t n = 1;
                for (int d = 0; d < nd; d++) n *= ne[d];
                need += rs_row_bytes(stored_type(&e->ops[i], wtype), n) + 64;
            }
        conv = malloc(need ? need : 1);
        if (!conv) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
        *converted = conv;
    }
#define TRY(x) do { if ((st = (x))) goto done; } while (0)
    TRY(rs_gguf_writer_set_str(w, "cnn.name", e->name));
    TRY(rs_gguf_writer_set_u32(w, "cnn.input.height", (uint32_t)e->in_h));
    TRY(rs_gguf_writer_set_u32(w, "cnn.input.width", (uint32_t)e->in_w));
    TRY(rs_gguf_writer_set_u32(w, "cnn.input.channels", (uint32_t)e->in_c));
    TRY(rs_gguf_writer_set_f32(w, "cnn.input.scale", e->in_scale));
    TRY(rs_gguf_writer_set_f32(w, "cnn.input.zero_point", e->in_zero));
    TRY(rs_gguf_writer_set_u32(w, "cnn.op_count", (uint32_t)e->nops));
    TRY(rs_gguf_writer_set_i32(w, "cnn.tokens_value", e->tokens_val));
    TRY(rs_gguf_writer_set_i32(w, "cnn.logits_value", e->logits_val));
    for (int i = 0; i < e->nops; i++) {
        const rs_cnn_op *op = &e->ops[i];
        TRY(rs_gguf_writer_set_str(w, KEYF(k, "cnn.op.%d.kind", i), kind_name(op->kind)));
        int32_t ins[2] = {op->in0, op->in1};
        TRY(rs_gguf_writer_set_arr_data(w, KEYF(k, "cnn.op.%d.inputs", i), RS_GGUF_I32, ins, op->kind == RS_CNN_ADD ? 2 : 1));
        if (op->kind == RS_CNN_CONV || op->kind == RS_CNN_DWCONV || op->kind == RS_CNN_AVGPOOL) {
            int32_t kk[2] = {op->kh, op->kw}, ss[2] = {op->sh, op->sw}, dd[2] = {op->dh, op->dw};
            TRY(rs_gguf_writer_set_arr_data(w, KEYF(k, "cnn.op.%d.kernel", i), RS_GGUF_I32, kk, 2));
            TRY(rs_gguf_writer_set_arr_data(w, KEYF(k, "cnn.op.%d.stride", i), RS_GGUF_I32, ss, 2));
            TRY(rs_gguf_writer_set_arr_data(w, KEYF(k, "cnn.op.%d.dilation", i), RS_GGUF_I32, dd, 2));
            TRY(rs_gguf_writer_set_str(w, KEYF(k, "cnn.op.%d.padding", i), op->same ? "same" : "valid"));
        }
        if (op->kind != RS_CNN_RESHAPE) TRY(rs_gguf_writer_set_str(w, KEYF(k, "cnn.op.%d.activation", i), act_name(op->act)));
        if (op->kind == RS_CNN_DWCONV) TRY(rs_gguf_writer_set_u32(w, KEYF(k, "cnn.op.%d.depth_multiplier", i), (uint32_t)op->depth_mult));
        if (op->kind == RS_CNN_RESHAPE) {
            int32_t sh[3] = {op->rh, op->rw, op->oc};
            TRY(rs_gguf_writer_set_arr_data(w, KEYF(k, "cnn.op.%d.shape", i), RS_GGUF_I32, sh, 3));
        }
        if (op->w) {
            int64_t ne[4], n = 1;
            int nd;
            weight_ne(op, ne, &nd);
            for (int d = 0; d < nd; d++) n *= ne[d];
            rs_dtype t = stored_type(op, wtype);
            void *data = (void *)op->w;
            if (t != RS_F32) {
                data = conv + conv_used;
                rs_convert_row(t, op->w, data, n);   /* rows are contiguous: one long row */
                conv_used += (rs_row_bytes(t, n) + 63) / 64 * 64;
            }
            TRY(rs_tensor_init(&ts, KEYF(k, "cnn.op.%d.weight", i), t, nd, ne, data));
            TRY(rs_gguf_writer_add_tensor(w, &ts));
        }
        if (op->b) {
            int64_t ne[1] = {op->p.oc};
            TRY(rs_tensor_init(&ts, KEYF(k, "cnn.op.%d.bias", i), RS_F32, 1, ne, (void *)op->b));
            TRY(rs_gguf_writer_add_tensor(w, &ts));
        }
    }
    if (labels && nlabels > 0) TRY(rs_gguf_writer_set_arr_str(w, "cnn.labels", labels, NULL, nlabels));
done:
#undef TRY
    return st;
}

rsmoe_status rs_cnn_save_gguf_typed(const rs_cnn_encoder *e, const char *path, rs_dtype wtype,
                                    const char *const *labels, int nlabels) {
    rs_gguf_writer *w = rs_gguf_writer_new();
    if (!w) return RSMOE_ERR_NOMEM;
    void *conv = NULL;
    rsmoe_status st = rs_gguf_writer_set_str(w, "general.architecture", "cnn");
    if (!st) st = rs_gguf_writer_set_str(w, "general.name", e->name);
    if (!st) st = rs_cnn_gguf_add_typed(e, w, wtype, labels, nlabels, &conv);
    if (!st) st = rs_gguf_writer_write(w, path);
    rs_gguf_writer_free(w);
    free(conv);
    return st;
}

rsmoe_status rs_cnn_save_gguf(const rs_cnn_encoder *e, const char *path, const char *const *labels, int nlabels) {
    return rs_cnn_save_gguf_typed(e, path, RS_F32, labels, nlabels);
}

static rsmoe_status get_i32_arr(const rs_gguf *g, const char *key, int32_t *dst, int n) {
    int64_t i = rs_gguf_find_key(g, key);
    if (i < 0) return rs_error(RSMOE_ERR_FORMAT, "%s: missing key %s", rs_gguf_path(g), key);
    return rs_gguf_arr_copy(g, i, RS_GGUF_I32, dst, n);
}

/* A weight of the expected shape: f32 in place, or f16/bf16/q8_0 expanded to f32 into
 * store (when store is NULL only the floats needed are counted in *need). */
static const float *get_weight(const rs_gguf *g, const char *name, int nd, const int64_t *ne, rsmoe_status *st,
                               float *store, size_t *used) {
    const rs_tensor *t = rs_gguf_find_tensor(g, name);
    if (!t) { *st = rs_error(RSMOE_ERR_FORMAT, "%s: missing tensor %s", rs_gguf_path(g), name); return NULL; }
    for (int d = 0; d < RS_MAX_DIMS; d++)
        if (t->ne[d] != (d < nd ? ne[d] : 1)) {
            *st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s has the wrong shape", rs_gguf_path(g), name);
            return NULL;
        }
    if (t->type == RS_F32) return t->data;
    if (t->type != RS_F16 && t->type != RS_BF16 && t->type != RS_Q8_0) {
        *st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: tensor %s is %s", rs_gguf_path(g), name, rs_dtype_name(t->type));
        return NULL;
    }
    int64_t n = rs_tensor_nelements(t);
    float *dst = store ? store + *used : NULL;
    if (dst) rs_row_to_f32(t->type, t->data, dst, n);
    *used += (size_t)n;
    return dst ? dst : t->data;   /* counting pass: any non-NULL */
}

rsmoe_status rs_cnn_load_gguf(const char *path, rs_cnn_encoder **out) {
    *out = NULL;
    rs_gguf *g = NULL;
    rsmoe_status st = rs_gguf_open(path, &g);
    if (st) return st;
    const char *arch = rs_gguf_get_str_or(g, "general.architecture", "");
    if (strcmp(arch, "cnn") != 0) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: architecture is '%s', not 'cnn' (not a CNN encoder GGUF)", path, arch);
        rs_gguf_close(g);
        return st;
    }
    st = rs_cnn_from_gguf(g, out);
    if (st) rs_gguf_close(g);
    else (*out)->gguf = g;
    return st;
}

rsmoe_status rs_cnn_from_gguf(const rs_gguf *g, rs_cnn_encoder **out) {
    *out = NULL;
    rsmoe_status st = RSMOE_OK;
    const char *path = rs_gguf_path(g);
    rs_cnn_encoder *e = calloc(1, sizeof *e);
    if (!e) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    char k[128];
    const char *s;
    uint32_t u;
#define TRY(x) do { if ((st = (x))) goto fail; } while (0)
    snprintf(e->name, sizeof e->name, "%.127s", rs_gguf_get_str_or(g, "cnn.name", path));
    TRY(rs_gguf_get_u32(g, "cnn.input.height", &u)); e->in_h = (int)(u > 8192 ? 0 : u);
    TRY(rs_gguf_get_u32(g, "cnn.input.width", &u)); e->in_w = (int)(u > 8192 ? 0 : u);
    TRY(rs_gguf_get_u32(g, "cnn.input.channels", &u)); e->in_c = (int)(u > 64 ? 0 : u);
    TRY(rs_gguf_get_f32(g, "cnn.input.scale", &e->in_scale));
    TRY(rs_gguf_get_f32(g, "cnn.input.zero_point", &e->in_zero));
    TRY(rs_gguf_get_u32(g, "cnn.op_count", &u));
    if (u < 1 || u > 100000) { st = rs_error(RSMOE_ERR_FORMAT, "%s: bad cnn.op_count %u", path, u); goto fail; }
    e->nops = (int)u;
    int32_t tv, lv;
    TRY(rs_gguf_get_i32(g, "cnn.tokens_value", &tv));
    TRY(rs_gguf_get_i32(g, "cnn.logits_value", &lv));
    e->tokens_val = tv;
    e->logits_val = lv;
    e->ops = calloc((size_t)e->nops, sizeof *e->ops);
    if (!e->ops) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto fail; }
    /* first pass: the op list (shapes are needed to check the weights, so weights come after
     * finalisation, which does not read them except for their presence) */
    for (int i = 0; i < e->nops; i++) {
        rs_cnn_op *op = &e->ops[i];
        *op = (rs_cnn_op){.in1 = -1, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .depth_mult = 1};
        TRY(rs_gguf_get_str(g, KEYF(k, "cnn.op.%d.kind", i), &s));
        op->kind = -1;
        for (int kd = 0; kd <= RS_CNN_RESHAPE; kd++)
            if (!strcmp(s, kind_name(kd))) op->kind = kd;
        if (op->kind < 0) { st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: op %d has unknown kind '%s'", path, i, s); goto fail; }
        int32_t ins[2] = {-1, -1};
        TRY(get_i32_arr(g, KEYF(k, "cnn.op.%d.inputs", i), ins, op->kind == RS_CNN_ADD ? 2 : 1));
        op->in0 = ins[0];
        op->in1 = ins[1];
        if (op->kind == RS_CNN_CONV || op->kind == RS_CNN_DWCONV || op->kind == RS_CNN_AVGPOOL) {
            int32_t kk[2], ss[2], dd[2];
            TRY(get_i32_arr(g, KEYF(k, "cnn.op.%d.kernel", i), kk, 2));
            TRY(get_i32_arr(g, KEYF(k, "cnn.op.%d.stride", i), ss, 2));
            TRY(get_i32_arr(g, KEYF(k, "cnn.op.%d.dilation", i), dd, 2));
            op->kh = kk[0]; op->kw = kk[1]; op->sh = ss[0]; op->sw = ss[1]; op->dh = dd[0]; op->dw = dd[1];
            TRY(rs_gguf_get_str(g, KEYF(k, "cnn.op.%d.padding", i), &s));
            if (strcmp(s, "same") && strcmp(s, "valid")) { st = rs_error(RSMOE_ERR_FORMAT, "%s: op %d: padding '%s'", path, i, s); goto fail; }
            op->same = !strcmp(s, "same");
        }
        if (op->kind != RS_CNN_RESHAPE) {
            TRY(rs_gguf_get_str(g, KEYF(k, "cnn.op.%d.activation", i), &s));
            op->act = !strcmp(s, "none") ? RS_ACT_NONE : !strcmp(s, "relu") ? RS_ACT_RELU : !strcmp(s, "relu6") ? RS_ACT_RELU6 : -1;
        }
        if (op->kind == RS_CNN_DWCONV) {
            TRY(rs_gguf_get_u32(g, KEYF(k, "cnn.op.%d.depth_multiplier", i), &u));
            op->depth_mult = (int)(u > 4096 ? 0 : u);
        }
        if (op->kind == RS_CNN_RESHAPE) {
            int32_t sh[3];
            TRY(get_i32_arr(g, KEYF(k, "cnn.op.%d.shape", i), sh, 3));
            op->rh = sh[0]; op->rw = sh[1]; op->oc = sh[2];
        }
        /* output channels of weighted ops come from their weight tensor */
        if (op->kind == RS_CNN_CONV || op->kind == RS_CNN_DWCONV || op->kind == RS_CNN_FC) {
            const rs_tensor *t = rs_gguf_find_tensor(g, KEYF(k, "cnn.op.%d.weight", i));
            if (!t) { st = rs_error(RSMOE_ERR_FORMAT, "%s: missing tensor %s", path, k); goto fail; }
            op->oc = (int)(op->kind == RS_CNN_FC ? t->ne[1] : t->ne[0]);
            if (op->kind == RS_CNN_FC) op->rh = (int)t->ne[0];
            op->w = t->data;   /* checked below */
        }
    }
    TRY(cnn_finalize(e));
    /* pass 0 checks shapes and counts the floats of non-f32 weights; pass 1 expands them */
    for (int pass = 0; pass < 2; pass++) {
        size_t used = 0;
        for (int i = 0; i < e->nops; i++) {
            rs_cnn_op *op = &e->ops[i];
            if (!op->w) continue;
            int64_t ne[4];
            int nd;
            weight_ne(op, ne, &nd);
            if (!(op->w = get_weight(g, KEYF(k, "cnn.op.%d.weight", i), nd, ne, &st, e->store, &used))) goto fail;
            if (rs_gguf_find_tensor(g, KEYF(k, "cnn.op.%d.bias", i))) {
                int64_t nb[1] = {op->p.oc};
                if (!(op->b = get_weight(g, k, 1, nb, &st, e->store, &used))) goto fail;
            }
        }
        if (pass == 1 || used == 0) break;
        e->store = malloc(used * sizeof(float));
        if (!e->store) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto fail; }
    }
    int64_t li = rs_gguf_find_key(g, "cnn.labels");
    if (li >= 0) {
        int64_t n = rs_gguf_arr_n(g, li);
        if (rs_gguf_arr_type(g, li) != RS_GGUF_STRING || n < 0 || n > 1000000) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: cnn.labels is not a string array", path);
            goto fail;
        }
        e->labels = calloc((size_t)n + 1, sizeof(char *));
        if (!e->labels) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto fail; }
        for (int64_t j = 0; j < n; j++) {
            const char *l = rs_gguf_arr_str(g, li, j, NULL);
            e->labels[j] = strdup(l ? l : "");
            if (!e->labels[j]) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto fail; }
            e->nlabels = (int)j + 1;
        }
    }
#undef TRY
    *out = e;
    return RSMOE_OK;
fail:
    rs_cnn_free(e);
    return st ? st : RSMOE_ERR_FORMAT;
}
