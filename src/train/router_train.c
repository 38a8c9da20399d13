/* router_train.c - training forward/backward of the Instruction Router. See router_train.h. */
#include "train/router_train.h"

#include "model/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rsmoe_status rs_router_params_new(const rs_gguf *g, rs_router_params *out) {
    memset(out, 0, sizeof *out);
    rsmoe_status st;
    int D, K, M, H;
    if ((st = rs_key_int(g, "llama.embedding_length", 1, 1 << 20, -1, &D)) ||
        (st = rs_key_int(g, "rsmoe.moe.expert_count", 0, 1 << 16, 0, &K)))
        return st;
    if (K < 1) return rs_error(RSMOE_ERR_FORMAT, "%s: a model without experts has no router to train", rs_gguf_path(g));
    if ((st = rs_key_int(g, "rsmoe.moe.soft_prompt_count", 0, 256, 0, &M)) ||
        (st = rs_key_int(g, "rsmoe.moe.router_hidden", 1, 1 << 16, 64, &H)))
        return st;
    const rs_tensor *tt;
    if ((st = rs_bind(g, &tt, 2 * (int64_t)D, K, true, "router.gate.weight", 0)) ||
        (st = rs_bind(g, &tt, K, 1, true, "router.gate.bias", 0)))
        return st;
    if (M > 0 && ((st = rs_bind(g, &tt, D, H, true, "router.soft_up.weight", 0)) ||
                  (st = rs_bind(g, &tt, H, 1, true, "router.soft_up.bias", 0)) ||
                  (st = rs_bind(g, &tt, H, (int64_t)K * M * D, true, "router.soft_down.weight", 0)) ||
                  (st = rs_bind(g, &tt, (int64_t)K * M * D, 1, true, "router.soft_down.bias", 0))))
        return st;
    static const char *const names[6] = {"router.gate.weight", "router.gate.bias", "router.soft_up.weight",
                                         "router.soft_up.bias", "router.soft_down.weight", "router.soft_down.bias"};
    if ((st = rs_tparams_from_gguf(g, names, M > 0 ? 6 : 2, &out->set))) return st;
    out->D = D, out->K = K, out->M = M, out->H = H;
    rs_tparam *p = out->set.p;
    out->gate_w = p[0].param, out->d_gate_w = p[0].grad;
    out->gate_b = p[1].param, out->d_gate_b = p[1].grad;
    if (M > 0) {
        out->up_w = p[2].param, out->d_up_w = p[2].grad;
        out->up_b = p[3].param, out->d_up_b = p[3].grad;
        out->down_w = p[4].param, out->d_down_w = p[4].grad;
        out->down_b = p[5].param, out->d_down_b = p[5].grad;
    }
    return RSMOE_OK;
}

void rs_router_params_free(rs_router_params *p) {
    rs_tparams_free(&p->set);
    memset(p, 0, sizeof *p);
}

struct rs_router_train {
    int D, K, M, H, max_B;
    float *block;
    float *in;      /* [B, 2D] saved: [instr ; pv] */
    float *pv;      /* [B, D] saved: pv again, contiguous */
    float *logits;  /* [B, K] */
    float *gates;   /* [B, K] */
    float *h, *hg;  /* [B, H] */
    float *din;     /* [B, 2D] scratch */
    float *dpv;     /* [B, D] */
    float *dh;      /* [B, H] */
    float *dlog;    /* [B, K] */
    int B, Q;
    bool ready, have_soft;
};

rsmoe_status rs_router_train_new(const rs_router_params *p, int max_B, rs_router_train **out) {
    *out = NULL;
    if (max_B < 1) return rs_error(RSMOE_ERR_INVALID_ARG, "router training: batch of %d", max_B);
    rs_router_train *t = calloc(1, sizeof *t);
    if (!t) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    t->D = p->D, t->K = p->K, t->M = p->M, t->H = p->H, t->max_B = max_B;
    size_t B = (size_t)max_B, D = (size_t)p->D, K = (size_t)p->K, H = (size_t)p->H;
    size_t n = B * (3 * D + 2 * K + 2 * H) + B * (3 * D + H + K);
    t->block = malloc(n * sizeof(float));
    if (!t->block) {
        free(t);
        return rs_error(RSMOE_ERR_NOMEM, "router training: out of memory");
    }
    float *q = t->block;
    t->in = q, q += B * 2 * D;
    t->pv = q, q += B * D;
    t->logits = q, q += B * K;
    t->gates = q, q += B * K;
    t->h = q, q += B * H;
    t->hg = q, q += B * H;
    t->din = q, q += B * 2 * D;
    t->dpv = q, q += B * D;
    t->dh = q, q += B * H;
    t->dlog = q;
    *out = t;
    return RSMOE_OK;
}

void rs_router_train_free(rs_router_train *t) {
    if (!t) return;
    free(t->block);
    free(t);
}

const float *rs_router_train_logits(const rs_router_train *t) { return t->logits; }

rsmoe_status rs_router_train_forward(rs_router_train *t, const rs_router_params *p, int B, const float *instr,
                                     const float *prefix, int Q, float *gates, float *soft, rs_pool *pool) {
    t->ready = false;
    if (p->D != t->D || p->K != t->K || p->M != t->M || p->H != t->H)
        return rs_error(RSMOE_ERR_INVALID_ARG, "router training: parameters of another configuration");
    if (B < 1 || B > t->max_B || Q < 1 || !instr || !prefix || !gates)
        return rs_error(RSMOE_ERR_INVALID_ARG, "router training: bad batch (%d samples of at most %d, %d prefix rows)", B,
                        t->max_B, Q);
    int D = t->D, K = t->K, M = t->M, H = t->H;
    for (int s = 0; s < B; s++) {
        float *pv = t->pv + (size_t)s * D;
        memset(pv, 0, sizeof(float) * (size_t)D);
        const float *pr = prefix + (size_t)s * Q * D;
        for (int i = 0; i < Q; i++) rs_vec_acc(pv, pr + (size_t)i * D, D);
        rs_vec_scale(pv, 1.0f / (float)Q, D);
        float *in = t->in + (size_t)s * 2 * D;
        memcpy(in, instr + (size_t)s * D, sizeof(float) * (size_t)D);
        memcpy(in + D, pv, sizeof(float) * (size_t)D);
    }
    rs_linear_fwd(t->logits, t->in, p->gate_w, p->gate_b, B, 2 * D, K, pool);
    rs_softmax_fwd(t->gates, t->logits, B, K, 1.0f, pool);
    memcpy(gates, t->gates, sizeof(float) * (size_t)B * K);
    t->have_soft = soft && M > 0;
    if (t->have_soft) {
        rs_linear_fwd(t->h, t->pv, p->up_w, p->up_b, B, D, H, pool);
        rs_gelu_fwd(t->hg, t->h, (int64_t)B * H, pool);
        rs_linear_fwd(soft, t->hg, p->down_w, p->down_b, B, H, (int64_t)K * M * D, pool);
    }
    t->B = B, t->Q = Q;
    t->ready = true;
    return RSMOE_OK;
}

rsmoe_status rs_router_train_backward(rs_router_train *t, rs_router_params *p, const float *d_gates,
                                      const float *d_logits, const float *d_soft, float *d_prefix, float *d_instr,
                                      rs_pool *pool) {
    if (!t->ready) return rs_error(RSMOE_ERR_INVALID_ARG, "router training: backward without a forward");
    if (d_soft && !t->have_soft)
        return rs_error(RSMOE_ERR_INVALID_ARG, "router training: d_soft given but the forward made no soft prompts");
    int B = t->B, Q = t->Q, D = t->D, K = t->K, M = t->M, H = t->H;
    /* gate logits -> [instr ; pv] */
    if (d_gates) rs_softmax_bwd(t->dlog, d_gates, t->gates, B, K, 1.0f, pool);
    else rs_vec_zero(t->dlog, (int64_t)B * K);
    if (d_logits) rs_vec_acc(t->dlog, d_logits, (int64_t)B * K);
    rs_linear_bwd(t->din, p->d_gate_w, p->d_gate_b, t->dlog, t->in, p->gate_w, B, 2 * D, K, pool);
    /* soft prompts -> pv */
    if (d_soft) {
        rs_linear_bwd(t->dh, p->d_down_w, p->d_down_b, d_soft, t->hg, p->down_w, B, H, (int64_t)K * M * D, pool);
        rs_gelu_bwd(t->dh, t->dh, t->h, (int64_t)B * H, pool);
        rs_linear_bwd(t->dpv, p->d_up_w, p->d_up_b, t->dh, t->pv, p->up_w, B, D, H, pool);
    } else {
        rs_vec_zero(t->dpv, (int64_t)B * D);
    }
    for (int s = 0; s < B; s++) {
        float *dpv = t->dpv + (size_t)s * D;
        rs_vec_acc(dpv, t->din + (size_t)s * 2 * D + D, D);
        rs_vec_scale(dpv, 1.0f / (float)Q, D); /* pv is the mean of the Q rows */
        if (d_prefix)
            for (int i = 0; i < Q; i++) memcpy(d_prefix + ((size_t)s * Q + i) * D, dpv, sizeof(float) * (size_t)D);
        if (d_instr) memcpy(d_instr + (size_t)s * D, t->din + (size_t)s * 2 * D, sizeof(float) * (size_t)D);
    }
    return RSMOE_OK;
}

rsmoe_status rs_router_route_ce(const float *logits, const float *target, int B, int K, float scale, float *loss,
                                float *d_logits) {
    if (B < 1 || K < 1 || !logits || !target)
        return rs_error(RSMOE_ERR_INVALID_ARG, "routing loss: bad sizes (%d x %d)", B, K);
    double total = 0;
    for (int s = 0; s < B; s++) {
        const float *z = logits + (size_t)s * K, *y = target + (size_t)s * K;
        double ys = 0, mx = -INFINITY;
        for (int k = 0; k < K; k++) {
            if (!(y[k] >= 0) || !isfinite(y[k]))
                return rs_error(RSMOE_ERR_INVALID_ARG, "routing loss: sample %d has target %g for expert %d", s, y[k], k);
            if (!isfinite(z[k])) return rs_error(RSMOE_ERR_NUMERIC, "routing loss: non-finite logit (sample %d)", s);
            ys += y[k];
            if (z[k] > mx) mx = z[k];
        }
        if (!(ys > 0)) return rs_error(RSMOE_ERR_INVALID_ARG, "routing loss: sample %d has an all-zero target", s);
        double se = 0;
        for (int k = 0; k < K; k++) se += exp((double)z[k] - mx);
        double lse = mx + log(se);
        for (int k = 0; k < K; k++) {
            double yk = y[k] / ys;
            total += yk * (lse - z[k]);
            if (d_logits) d_logits[(size_t)s * K + k] = (float)(scale * (exp((double)z[k] - lse) - yk) / B);
        }
    }
    if (loss) *loss = (float)(total / B);
    return RSMOE_OK;
}
