/* test_qformer_train.c - training forward/backward of the Q-Former (+ proj) and of the
 * Instruction Router (src/train/qformer_train.h, src/train/router_train.h).
 *
 * The `test` preset is written with seeded random weights; a batch of 3 images with padded
 * instructions of 6, 2 and 0 tokens runs through Q-Former -> prefix -> router, and
 *  - the forward equals the inference rs_qformer_forward / rs_router_forward per sample;
 *  - every gradient equals a double-precision finite difference of a plain double twin of
 *    the forward written here (no torch needed);
 *  - every gradient, d(image tokens) and d(instr) equal PyTorch autograd in float64
 *    (tests/ref/qformer_train_torch.py, per sample without padding), and 5 AdamW steps give
 *    the same losses;
 *  - bad inputs are refused with errors, a checkpoint round-trips through GGUF. */
#include "test.h"

#include "kernels/ops.h"
#include "model/model.h"
#include "train/qformer_train.h"
#include "train/router_train.h"

#include <stdint.h>

#define NB 3
#define NT 6

static struct {
    bool ok;
    char dir[64], path[160];
    rs_model *m;
    rs_gguf *g;
    rs_qformer_params qp;
    rs_router_params rp;
    int B, Tt, Ni, We, nq, W, D, K, M;
    int32_t len[NB];
    int32_t ids[NB * NT];
    float *img, *instr, *dP, *dG, *dS, *route;
    /* C results of the gradient run */
    float *prefix, *gates, *soft, *d_img, *d_instr;
} F;

static float *fnew(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static bool setup(void) {
    if (F.ok) return true;
    snprintf(F.dir, sizeof F.dir, "/tmp/rsmoe_qft_XXXXXX");
    if (!mkdtemp(F.dir)) return false;
    snprintf(F.path, sizeof F.path, "%s/test.gguf", F.dir);
    rs_init_params ip = rs_init_default_params();
    ip.seed = 7;
    ip.init_std = 0.2f; /* attention scores of order 1, so that their gradients matter (0.02: near-uniform softmax) */
    if (rs_model_init_preset(rs_preset_find("test"), &ip, F.path, NULL, NULL)) return false;
    if (rs_model_load(F.path, &F.m) || rs_gguf_open(F.path, &F.g)) return false;
    F.nq = F.m->qf.c.n_query, F.W = F.m->qf.c.width, F.D = F.m->llm.c.dim, F.K = F.m->moe.n_experts;
    F.M = F.m->moe.n_soft, F.Ni = F.m->enc_tokens, F.We = F.m->enc_width;
    F.B = NB, F.Tt = NT;
    if (rs_qformer_params_new(F.g, F.We, F.D, &F.qp) || rs_router_params_new(F.g, &F.rp)) return false;
    rs_rng r;
    rs_rng_seed(&r, 1234);
    F.len[0] = 6, F.len[1] = 2, F.len[2] = 0;
    for (int b = 0; b < NB; b++)
        for (int t = 0; t < NT; t++)
            F.ids[b * NT + t] = t < F.len[b] ? (int32_t)(rs_rng_u64(&r) % (uint64_t)F.qp.c.vocab) : -5; /* never read */
    size_t nimg = (size_t)NB * F.Ni * F.We, np = (size_t)NB * F.nq * F.D, ns = (size_t)NB * F.K * F.M * F.D;
    F.img = fnew(nimg), F.instr = fnew((size_t)NB * F.D), F.dP = fnew(np), F.dG = fnew((size_t)NB * F.K);
    F.dS = fnew(ns), F.route = fnew((size_t)NB * F.K);
    rs_rng_fill_normal(&r, F.img, nimg, 0.0f, 1.0f);
    rs_rng_fill_normal(&r, F.instr, (size_t)NB * F.D, 0.0f, 0.05f);
    rs_rng_fill_normal(&r, F.dP, np, 0.0f, 1.0f);
    rs_rng_fill_normal(&r, F.dG, (size_t)NB * F.K, 0.0f, 1.0f);
    rs_rng_fill_normal(&r, F.dS, ns, 0.0f, 1.0f);
    /* routing labels: one-hot, uniform, and a two-expert mix (unnormalised) */
    for (int k = 0; k < F.K; k++) {
        F.route[k] = k == 1;
        F.route[F.K + k] = 1.0f;
        F.route[2 * F.K + k] = k == 0 ? 3.0f : k == 2 ? 1.0f : 0.0f;
    }
    F.prefix = fnew(np), F.gates = fnew((size_t)NB * F.K), F.soft = fnew(ns), F.d_img = fnew(nimg);
    F.d_instr = fnew((size_t)NB * F.D);
    F.ok = true;
    return true;
}

/* forward Q-Former -> router, backward of L = Σ prefix·dP + Σ gates·dG + Σ soft·dS into qp/rp */
static rsmoe_status run_grads(rs_qformer_params *qp, rs_router_params *rp, rs_pool *pool) {
    rs_qformer_train *qt = NULL;
    rs_router_train *rt = NULL;
    rsmoe_status st;
    size_t np = (size_t)NB * F.nq * F.D;
    float *dpre = fnew(np);
    if ((st = rs_qformer_train_new(&qp->c, NB, NT, F.Ni, &qt)) || (st = rs_router_train_new(rp, NB, &rt))) goto out;
    rs_tparams_zero_grad(&qp->set);
    rs_tparams_zero_grad(&rp->set);
    rs_qformer_batch b = {.B = NB, .n_text = NT, .n_img = F.Ni, .img = F.img, .ids = F.ids, .len = F.len};
    if ((st = rs_qformer_train_forward(qt, qp, &b, F.prefix, NULL, pool)) ||
        (st = rs_router_train_forward(rt, rp, NB, F.instr, F.prefix, F.nq, F.gates, F.soft, pool)) ||
        (st = rs_router_train_backward(rt, rp, F.dG, NULL, F.dS, dpre, F.d_instr, pool)))
        goto out;
    rs_vec_acc(dpre, F.dP, (int64_t)np);
    st = rs_qformer_train_backward(qt, qp, dpre, F.d_img, pool);
out:
    free(dpre);
    rs_qformer_train_free(qt);
    rs_router_train_free(rt);
    return st;
}

/* ------------------------------------------------------------------ forward = inference */
TEST(forward_matches_inference) {
    REQUIRE(setup(), "setup: %s", rsmoe_last_error());
    rs_pool *pool = rs_pool_new(2);
    REQUIRE(run_grads(&F.qp, &F.rp, pool) == RSMOE_OK, "%s", rsmoe_last_error());
    rs_qformer_train *qt = NULL;
    REQUIRE(rs_qformer_train_new(&F.qp.c, NB, NT, F.Ni, &qt) == RSMOE_OK, "%s", rsmoe_last_error());
    float *qout = fnew((size_t)NB * F.nq * F.W), *prefix = fnew((size_t)NB * F.nq * F.D);
    rs_qformer_batch b = {.B = NB, .n_text = NT, .n_img = F.Ni, .img = F.img, .ids = F.ids, .len = F.len};
    CHECK(rs_qformer_train_forward(qt, &F.qp, &b, prefix, qout, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    size_t sc = rs_qformer_scratch_floats(&F.m->qf.c, F.Ni, NT, 1);
    float *scratch = fnew(sc), *p1 = fnew((size_t)F.nq * F.D), *q1 = fnew((size_t)F.nq * F.W);
    float *g1 = fnew((size_t)F.K), *s1 = fnew((size_t)F.K * F.M * F.D), *rsc = fnew((size_t)4 * F.D + 64);
    for (int s = 0; s < NB; s++) {
        CHECK(rs_qformer_forward(&F.m->qf, F.img + (size_t)s * F.Ni * F.We, F.Ni, F.ids + s * NT, F.len[s], p1, q1,
                                 scratch, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        double e1 = test_nerr_f32(prefix + (size_t)s * F.nq * F.D, p1, (size_t)F.nq * F.D);
        double e2 = test_nerr_f32(qout + (size_t)s * F.nq * F.W, q1, (size_t)F.nq * F.W);
        double e3 = test_nerr_f32(F.prefix + (size_t)s * F.nq * F.D, p1, (size_t)F.nq * F.D); /* threaded run */
        CHECK(e1 <= 1e-5 && e2 <= 1e-5 && e3 <= 1e-5, "sample %d (%d tokens): prefix %.3g qout %.3g pooled %.3g", s,
              F.len[s], e1, e2, e3);
        rs_router_forward(F.m, F.instr + (size_t)s * F.D, p1, F.nq, g1, s1, rsc, NULL);
        double e4 = test_nerr_f32(F.gates + (size_t)s * F.K, g1, (size_t)F.K);
        double e5 = test_nerr_f32(F.soft + (size_t)s * F.K * F.M * F.D, s1, (size_t)F.K * F.M * F.D);
        CHECK(e4 <= 1e-5 && e5 <= 1e-5, "sample %d: gates %.3g soft %.3g", s, e4, e5);
    }
    free(scratch), free(p1), free(q1), free(g1), free(s1), free(rsc), free(qout), free(prefix);
    rs_qformer_train_free(qt);
    rs_pool_free(pool);
}

/* ------------------------------------------------------------------ double twin + finite differences */
static double *Gq, *Gr; /* double copies of the parameter blocks */

static const double *P(const char *fmt, int l) {
    char name[RS_NAME_MAX];
    snprintf(name, sizeof name, fmt, l);
    int i = rs_tparams_find(&F.qp.set, name);
    if (i >= 0) return Gq + (F.qp.set.p[i].param - F.qp.set.params);
    i = rs_tparams_find(&F.rp.set, name);
    if (i >= 0) return Gr + (F.rp.set.p[i].param - F.rp.set.params);
    fprintf(stderr, "twin: no tensor %s\n", name);
    abort();
}

/* y[T,out] = x·Wᵀ + b with W, b named NAME.weight / NAME.bias */
static void dlin(double *y, const double *x, int T, int in, int out, const char *fmt, int l) {
    char wn[RS_NAME_MAX], bn[RS_NAME_MAX];
    snprintf(wn, sizeof wn, "%s.weight", fmt);
    snprintf(bn, sizeof bn, "%s.bias", fmt);
    const double *W = P(wn, l), *b = P(bn, l);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++) s += x[(size_t)t * in + i] * W[(size_t)o * in + i];
            y[(size_t)t * out + o] = s;
        }
}

static void dln(double *x, int T, int C, const char *fmt, int l) {
    char wn[RS_NAME_MAX], bn[RS_NAME_MAX];
    snprintf(wn, sizeof wn, "%s.weight", fmt);
    snprintf(bn, sizeof bn, "%s.bias", fmt);
    const double *w = P(wn, l), *b = P(bn, l);
    for (int t = 0; t < T; t++) {
        double *r = x + (size_t)t * C, mu = 0, var = 0;
        for (int i = 0; i < C; i++) mu += r[i];
        mu /= C;
        for (int i = 0; i < C; i++) var += (r[i] - mu) * (r[i] - mu);
        double rs = 1.0 / sqrt(var / C + 1e-12);
        for (int i = 0; i < C; i++) r[i] = (r[i] - mu) * rs * w[i] + b[i];
    }
}

static double dgelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

static void dmha(double *out, const double *q, const double *k, const double *v, int Tq, int Tk, int H, int W) {
    int d = W / H;
    double *p = malloc(sizeof(double) * (size_t)Tk);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < Tq; i++) {
            double mx = -INFINITY, se = 0;
            for (int j = 0; j < Tk; j++) {
                double s = 0;
                for (int e = 0; e < d; e++) s += q[(size_t)i * W + h * d + e] * k[(size_t)j * W + h * d + e];
                p[j] = s / sqrt((double)d);
                if (p[j] > mx) mx = p[j];
            }
            for (int j = 0; j < Tk; j++) se += (p[j] = exp(p[j] - mx));
            for (int e = 0; e < d; e++) {
                double s = 0;
                for (int j = 0; j < Tk; j++) s += p[j] / se * v[(size_t)j * W + h * d + e];
                out[(size_t)i * W + h * d + e] = s;
            }
        }
    free(p);
}

/* L = Σ prefix·dP + Σ gates·dG + Σ soft·dS of the whole batch, in double, one sample at a time
 * on its valid tokens only */
static double twin_loss(void) {
    const rs_qformer_config *c = &F.qp.c;
    int nq = F.nq, W = F.W, Fh = c->ffn, D = F.D, K = F.K, M = F.M, H = c->heads, Ni = F.Ni, We = F.We;
    int Hr = F.rp.H;
    size_t T = (size_t)nq + NT, big = T * (size_t)(Fh > W ? Fh : W);
    double *x = malloc(sizeof(double) * big), *q = malloc(sizeof(double) * big), *k = malloc(sizeof(double) * big);
    double *v = malloc(sizeof(double) * big), *a = malloc(sizeof(double) * big), *h = malloc(sizeof(double) * big);
    double *img = malloc(sizeof(double) * (size_t)Ni * We), *ik = malloc(sizeof(double) * (size_t)Ni * W);
    double *iv = malloc(sizeof(double) * (size_t)Ni * W), *pre = malloc(sizeof(double) * (size_t)nq * D);
    double *in = malloc(sizeof(double) * 2 * (size_t)D), *soft = malloc(sizeof(double) * (size_t)K * M * D);
    double *hr = malloc(sizeof(double) * (size_t)Hr), lg[RS_MAX_EXPERTS];
    double L = 0;
    for (int s = 0; s < NB; s++) {
        int Ts = nq + F.len[s];
        for (size_t i = 0; i < (size_t)Ni * We; i++) img[i] = F.img[(size_t)s * Ni * We + i];
        const double *qe = P("qf.query_embd", 0), *tok = P("qf.token_embd.weight", 0), *pos = P("qf.position_embd.weight", 0);
        for (int r = 0; r < Ts; r++)
            for (int i = 0; i < W; i++)
                x[(size_t)r * W + i] = r < nq ? qe[(size_t)r * W + i]
                                              : tok[(size_t)F.ids[s * NT + r - nq] * W + i] + pos[(size_t)(r - nq) * W + i];
        dln(x, Ts, W, "qf.embd_ln", 0);
        for (int l = 0; l < c->layers; l++) {
            dlin(q, x, Ts, W, W, "qf.blk.%d.attn_q", l);
            dlin(k, x, Ts, W, W, "qf.blk.%d.attn_k", l);
            dlin(v, x, Ts, W, W, "qf.blk.%d.attn_v", l);
            dmha(a, q, k, v, Ts, Ts, H, W);
            dlin(q, a, Ts, W, W, "qf.blk.%d.attn_out", l);
            for (size_t i = 0; i < (size_t)Ts * W; i++) x[i] += q[i];
            dln(x, Ts, W, "qf.blk.%d.attn_ln", l);
            if (l % c->cross_freq == 0) {
                dlin(q, x, nq, W, W, "qf.blk.%d.cross_q", l);
                dlin(ik, img, Ni, We, W, "qf.blk.%d.cross_k", l);
                dlin(iv, img, Ni, We, W, "qf.blk.%d.cross_v", l);
                dmha(a, q, ik, iv, nq, Ni, H, W);
                dlin(q, a, nq, W, W, "qf.blk.%d.cross_out", l);
                for (size_t i = 0; i < (size_t)nq * W; i++) x[i] += q[i];
                dln(x, nq, W, "qf.blk.%d.cross_ln", l);
            }
            for (int part = 0; part < 2; part++) {
                int r0 = part ? nq : 0, R = part ? Ts - nq : nq;
                if (R == 0) continue;
                double *xr = x + (size_t)r0 * W;
                dlin(h, xr, R, W, Fh, part ? "qf.blk.%d.ffn_up" : "qf.blk.%d.ffnq_up", l);
                for (size_t i = 0; i < (size_t)R * Fh; i++) h[i] = dgelu(h[i]);
                dlin(q, h, R, Fh, W, part ? "qf.blk.%d.ffn_down" : "qf.blk.%d.ffnq_down", l);
                for (size_t i = 0; i < (size_t)R * W; i++) xr[i] += q[i];
                dln(xr, R, W, part ? "qf.blk.%d.ffn_ln" : "qf.blk.%d.ffnq_ln", l);
            }
        }
        dlin(pre, x, nq, W, D, "proj", 0);
        for (size_t i = 0; i < (size_t)nq * D; i++) L += pre[i] * F.dP[(size_t)s * nq * D + i];
        /* router */
        for (int i = 0; i < D; i++) {
            double m = 0;
            for (int r = 0; r < nq; r++) m += pre[(size_t)r * D + i];
            in[i] = F.instr[(size_t)s * D + i];
            in[D + i] = m / nq;
        }
        dlin(lg, in, 1, 2 * D, K, "router.gate", 0);
        double mx = -INFINITY, se = 0;
        for (int e = 0; e < K; e++) mx = lg[e] > mx ? lg[e] : mx;
        for (int e = 0; e < K; e++) se += exp(lg[e] - mx);
        for (int e = 0; e < K; e++) L += exp(lg[e] - mx) / se * F.dG[s * K + e];
        dlin(hr, in + D, 1, D, Hr, "router.soft_up", 0);
        for (int i = 0; i < Hr; i++) hr[i] = dgelu(hr[i]);
        dlin(soft, hr, 1, Hr, K * M * D, "router.soft_down", 0);
        for (size_t i = 0; i < (size_t)K * M * D; i++) L += soft[i] * F.dS[(size_t)s * K * M * D + i];
    }
    free(x), free(q), free(k), free(v), free(a), free(h), free(img), free(ik), free(iv), free(pre), free(in);
    free(soft), free(hr);
    return L;
}

/* error normalised by the tensor's largest gradient, at least floor (key biases: see cmp_set) */
static double fd_check_set(const rs_tparams *set, double *G, rs_rng *r, double floor, int *n_checked, int *n_bad) {
    double worst = 0;
    for (int i = 0; i < set->n; i++) {
        const rs_tparam *p = &set->p[i];
        double gmax = 0;
        int64_t imax = 0;
        for (int64_t j = 0; j < p->n; j++)
            if (fabs(p->grad[j]) > gmax) gmax = fabs(p->grad[j]), imax = j;
        int64_t picks[3] = {imax, (int64_t)(rs_rng_u64(r) % (uint64_t)p->n), (int64_t)(rs_rng_u64(r) % (uint64_t)p->n)};
        double *base = G + (p->param - set->params);
        for (int k = 0; k < 3; k++) {
            int64_t j = picks[k];
            double orig = base[j], hstep = 1e-4 * (fabs(orig) > 1 ? fabs(orig) : 1);
            base[j] = orig + hstep;
            double lp = twin_loss();
            base[j] = orig - hstep;
            double lm = twin_loss();
            base[j] = orig;
            double fd = (lp - lm) / (2 * hstep), err = fabs(fd - p->grad[j]) / (gmax > floor ? gmax : floor);
            (*n_checked)++;
            if (err > worst) worst = err;
            if (err > 2e-3) {
                (*n_bad)++;
                fprintf(stderr, "  %s[%lld]: analytic %.8g fd %.8g (tensor max %.3g)\n", p->tensor.name, (long long)j,
                        p->grad[j], fd, gmax);
            }
        }
    }
    return worst;
}

TEST(gradients_match_finite_differences) {
    REQUIRE(setup(), "setup: %s", rsmoe_last_error());
    REQUIRE(run_grads(&F.qp, &F.rp, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    Gq = malloc(sizeof(double) * (size_t)F.qp.set.total);
    Gr = malloc(sizeof(double) * (size_t)F.rp.set.total);
    for (int64_t i = 0; i < F.qp.set.total; i++) Gq[i] = F.qp.set.params[i];
    for (int64_t i = 0; i < F.rp.set.total; i++) Gr[i] = F.rp.set.params[i];
    /* the twin's loss equals the C forward's */
    double Lc = 0;
    for (size_t i = 0; i < (size_t)NB * F.nq * F.D; i++) Lc += (double)F.prefix[i] * F.dP[i];
    for (size_t i = 0; i < (size_t)NB * F.K; i++) Lc += (double)F.gates[i] * F.dG[i];
    for (size_t i = 0; i < (size_t)NB * F.K * F.M * F.D; i++) Lc += (double)F.soft[i] * F.dS[i];
    double Lt = twin_loss();
    CHECK(fabs(Lc - Lt) <= 1e-4 * (1 + fabs(Lt)), "loss: C %.9g twin %.9g", Lc, Lt);
    rs_rng r;
    rs_rng_seed(&r, 99);
    int n = 0, bad = 0;
    double gscale = 0;
    for (int64_t i = 0; i < F.qp.set.total; i++) gscale = fabs(F.qp.set.grads[i]) > gscale ? fabs(F.qp.set.grads[i]) : gscale;
    for (int64_t i = 0; i < F.rp.set.total; i++) gscale = fabs(F.rp.set.grads[i]) > gscale ? fabs(F.rp.set.grads[i]) : gscale;
    double w1 = fd_check_set(&F.qp.set, Gq, &r, 1e-3 * gscale, &n, &bad);
    double w2 = fd_check_set(&F.rp.set, Gr, &r, 1e-3 * gscale, &n, &bad);
    printf("  finite differences: %d entries of %d tensors, worst normalised error %.2g\n", n,
           F.qp.set.n + F.rp.set.n, w1 > w2 ? w1 : w2);
    CHECK(bad == 0, "%d of %d entries differ from the finite difference", bad, n);
    free(Gq), free(Gr);
}

/* ------------------------------------------------------------------ PyTorch */
static void put(FILE *f, const char *name, const float *x, const int32_t *xi, int64_t n) {
    char nm[32] = {0};
    snprintf(nm, sizeof nm, "%s", name);
    fwrite(nm, 1, 32, f);
    fwrite(&n, 8, 1, f);
    for (int64_t i = 0; i < n; i++) {
        double v = x ? (double)x[i] : (double)xi[i];
        fwrite(&v, 8, 1, f);
    }
}

typedef struct {
    char name[32];
    int64_t n;
    double *v;
} rec;
static rec *R;
static int nR;
static bool torch_ran, torch_ok;

static const rec *get(const char *name) {
    for (int i = 0; i < nR; i++)
        if (!strcmp(R[i].name, name)) return &R[i];
    return NULL;
}

static double nerr_fd(const float *a, const double *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}

#define ADAM_STEPS 5
#define ADAM_LR 2e-3f
#define ADAM_WD 0.01f

/* runs the reference once; false with a reason when torch is absent */
static int run_torch(void) {
    if (torch_ran) return torch_ok ? 1 : 0;
    torch_ran = true;
    if (!test_have_python("torch")) return -1;
    char in[200], out[200], cmd[700];
    snprintf(in, sizeof in, "%s/in.bin", F.dir);
    snprintf(out, sizeof out, "%s/out.bin", F.dir);
    FILE *f = fopen(in, "wb");
    if (!f) return 0;
    float cfg[6] = {NB, NT, (float)F.Ni, ADAM_STEPS, ADAM_LR, ADAM_WD};
    put(f, "cfg", cfg, NULL, 6);
    put(f, "img", F.img, NULL, (int64_t)NB * F.Ni * F.We);
    int32_t ids[NB * NT];
    for (int i = 0; i < NB * NT; i++) ids[i] = F.ids[i] < 0 ? 0 : F.ids[i];
    put(f, "ids", NULL, ids, NB * NT);
    put(f, "len", NULL, F.len, NB);
    put(f, "instr", F.instr, NULL, (int64_t)NB * F.D);
    put(f, "dP", F.dP, NULL, (int64_t)NB * F.nq * F.D);
    put(f, "dG", F.dG, NULL, (int64_t)NB * F.K);
    put(f, "dS", F.dS, NULL, (int64_t)NB * F.K * F.M * F.D);
    put(f, "route", F.route, NULL, (int64_t)NB * F.K);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/qformer_train_torch.py %s %s %s", F.path, in, out);
    if (system(cmd) != 0) return 0;
    f = fopen(out, "rb");
    if (!f) return 0;
    rec r;
    while (fread(r.name, 1, 32, f) == 32 && fread(&r.n, 8, 1, f) == 1 && r.n >= 0 && r.n < (1 << 26)) {
        r.name[31] = 0;
        r.v = malloc(sizeof(double) * (size_t)(r.n ? r.n : 1));
        if (fread(r.v, 8, (size_t)r.n, f) != (size_t)r.n) { free(r.v); break; }
        R = realloc(R, sizeof *R * (size_t)(nR + 1));
        R[nR++] = r;
    }
    fclose(f);
    torch_ok = nR > 0;
    return torch_ok ? 1 : 0;
}

/* normalised by the tensor's largest reference gradient, but at least floor: a key bias's
 * gradient is zero in exact arithmetic (softmax ignores a shift common to all keys), so both
 * sides hold only rounding noise there and are compared against the gradients' overall scale */
static double cmp_set(const rs_tparams *set, int *missing, int *bad, double tol, double floor) {
    double worst = 0;
    for (int i = 0; i < set->n; i++) {
        char nm[RS_NAME_MAX + 2];
        snprintf(nm, sizeof nm, "g.%s", set->p[i].tensor.name);
        const rec *r = get(nm);
        if (!r || r->n != set->p[i].n) {
            (*missing)++;
            fprintf(stderr, "  %s: missing in the reference output\n", nm);
            continue;
        }
        double md = 0, mb = floor;
        for (int64_t j = 0; j < r->n; j++) {
            double d = fabs((double)set->p[i].grad[j] - r->v[j]);
            if (!(d <= md)) md = d;
            if (fabs(r->v[j]) > mb) mb = fabs(r->v[j]);
        }
        double e = md / mb;
        if (e > worst) worst = e;
        if (e > tol) {
            (*bad)++;
            fprintf(stderr, "  %s: normalised error %.3g\n", nm, e);
        }
    }
    return worst;
}

TEST(gradients_match_torch) {
    REQUIRE(setup(), "setup: %s", rsmoe_last_error());
    int tr = run_torch();
    if (tr < 0) SKIP("/usr/bin/python3 with torch is absent");
    REQUIRE(tr == 1, "reference script failed");
    rs_pool *pool = rs_pool_new(2); /* the threaded kernels (the finite-difference test runs single-threaded) */
    rsmoe_status st = run_grads(&F.qp, &F.rp, pool);
    rs_pool_free(pool);
    REQUIRE(st == RSMOE_OK, "%s", rsmoe_last_error());
    const rec *rp = get("prefix"), *rg = get("gates"), *rs = get("soft"), *ri = get("d_img"), *rn = get("d_instr");
    REQUIRE(rp && rg && rs && ri && rn, "reference output incomplete");
    double e1 = nerr_fd(F.prefix, rp->v, rp->n), e2 = nerr_fd(F.gates, rg->v, rg->n), e3 = nerr_fd(F.soft, rs->v, rs->n);
    CHECK(e1 <= 1e-5 && e2 <= 1e-5 && e3 <= 1e-5, "forward: prefix %.3g gates %.3g soft %.3g", e1, e2, e3);
    double e4 = nerr_fd(F.d_img, ri->v, ri->n), e5 = nerr_fd(F.d_instr, rn->v, rn->n);
    CHECK(e4 <= 1e-4 && e5 <= 1e-4, "d_img %.3g d_instr %.3g", e4, e5);
    /* the overall scale: the largest reference gradient of any tensor */
    double gscale = 0;
    for (int i = 0; i < nR; i++)
        if (!strncmp(R[i].name, "g.", 2))
            for (int64_t j = 0; j < R[i].n; j++) gscale = fabs(R[i].v[j]) > gscale ? fabs(R[i].v[j]) : gscale;
    REQUIRE(gscale > 0, "all reference gradients are zero");
    int missing = 0, bad = 0;
    double w1 = cmp_set(&F.qp.set, &missing, &bad, 1e-4, 1e-3 * gscale);
    double w2 = cmp_set(&F.rp.set, &missing, &bad, 1e-4, 1e-3 * gscale);
    /* key biases: zero gradient up to rounding */
    double kb = 0;
    for (int l = 0; l < F.qp.c.layers; l++)
        for (int c = 0; c < 2; c++) {
            char nm[64];
            snprintf(nm, sizeof nm, c ? "qf.blk.%d.cross_k.bias" : "qf.blk.%d.attn_k.bias", l);
            int i = rs_tparams_find(&F.qp.set, nm);
            if (i < 0) continue;
            for (int64_t j = 0; j < F.qp.set.p[i].n; j++)
                kb = fabs(F.qp.set.p[i].grad[j]) > kb ? fabs(F.qp.set.p[i].grad[j]) : kb;
        }
    CHECK(kb <= 1e-5 * gscale, "key-bias gradients %.3g (scale %.3g) should vanish", kb, gscale);
    printf("  torch: %d gradient tensors, worst normalised error %.2g (d_img %.2g, d_instr %.2g); key-bias "
           "gradients %.2g of the scale %.3g\n", F.qp.set.n + F.rp.set.n, w1 > w2 ? w1 : w2, e4, e5, kb / gscale, gscale);
    CHECK(missing == 0 && bad == 0, "%d tensors missing, %d over 1e-4", missing, bad);
}

TEST(adamw_losses_match_torch) {
    REQUIRE(setup(), "setup: %s", rsmoe_last_error());
    int tr = run_torch();
    if (tr < 0) SKIP("/usr/bin/python3 with torch is absent");
    REQUIRE(tr == 1, "reference script failed");
    const rec *ref = get("adam_loss");
    REQUIRE(ref && ref->n == ADAM_STEPS, "reference output incomplete");
    rs_qformer_params qp;
    rs_router_params rp;
    REQUIRE(rs_qformer_params_new(F.g, F.We, F.D, &qp) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(rs_router_params_new(F.g, &rp) == RSMOE_OK, "%s", rsmoe_last_error());
    rs_qformer_train *qt = NULL;
    rs_router_train *rt = NULL;
    REQUIRE(rs_qformer_train_new(&qp.c, NB, NT, F.Ni, &qt) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(rs_router_train_new(&rp, NB, &rt) == RSMOE_OK, "%s", rsmoe_last_error());
    size_t np = (size_t)NB * F.nq * F.D, ns = (size_t)NB * F.K * F.M * F.D;
    float *pre = fnew(np), *gates = fnew((size_t)NB * F.K), *soft = fnew(ns), *dpre = fnew(np), *dpre_r = fnew(np);
    float *dsoft = fnew(ns), *dlog = fnew((size_t)NB * F.K);
    float *mq = fnew((size_t)qp.set.total), *vq = fnew((size_t)qp.set.total);
    float *mr = fnew((size_t)rp.set.total), *vr = fnew((size_t)rp.set.total);
    rs_adamw_cfg ac = rs_adamw_default();
    ac.lr = ADAM_LR, ac.weight_decay = ADAM_WD;
    rs_qformer_batch b = {.B = NB, .n_text = NT, .n_img = F.Ni, .img = F.img, .ids = F.ids, .len = F.len};
    double worst = 0;
    for (int step = 1; step <= ADAM_STEPS; step++) {
        rs_tparams_zero_grad(&qp.set);
        rs_tparams_zero_grad(&rp.set);
        REQUIRE(rs_qformer_train_forward(qt, &qp, &b, pre, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        REQUIRE(rs_router_train_forward(rt, &rp, NB, F.instr, pre, F.nq, gates, soft, NULL) == RSMOE_OK, "%s",
                rsmoe_last_error());
        float ce;
        REQUIRE(rs_router_route_ce(rs_router_train_logits(rt), F.route, NB, F.K, 1.0f, &ce, dlog) == RSMOE_OK, "%s",
                rsmoe_last_error());
        double lp = 0, ls = 0;
        for (size_t i = 0; i < np; i++) {
            double d = (double)pre[i] - F.dP[i];
            lp += d * d;
            dpre[i] = (float)(2 * d / (double)np);
        }
        for (size_t i = 0; i < ns; i++) {
            ls += (double)soft[i] * soft[i];
            dsoft[i] = (float)(2.0 * soft[i] / (double)ns);
        }
        double loss = ce + lp / (double)np + ls / (double)ns;
        double rel = fabs(loss - ref->v[step - 1]) / fabs(ref->v[step - 1]);
        if (rel > worst) worst = rel;
        CHECK(rel <= 1e-4, "step %d: loss %.9g torch %.9g", step, loss, ref->v[step - 1]);
        REQUIRE(rs_router_train_backward(rt, &rp, NULL, dlog, dsoft, dpre_r, NULL, NULL) == RSMOE_OK, "%s",
                rsmoe_last_error());
        rs_vec_acc(dpre, dpre_r, (int64_t)np);
        REQUIRE(rs_qformer_train_backward(qt, &qp, dpre, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        rs_tparams_adamw(&qp.set, mq, vq, step, &ac, NULL);
        rs_tparams_adamw(&rp.set, mr, vr, step, &ac, NULL);
    }
    printf("  AdamW: %d steps, losses %.6f -> %.6f (torch %.6f -> %.6f), worst relative difference %.2g\n", ADAM_STEPS,
           ref->v[0], ref->v[ADAM_STEPS - 1], ref->v[0], ref->v[ADAM_STEPS - 1], worst);
    CHECK(ref->v[ADAM_STEPS - 1] < ref->v[0], "the loss did not decrease (%g -> %g)", ref->v[0], ref->v[ADAM_STEPS - 1]);
    free(pre), free(gates), free(soft), free(dpre), free(dpre_r), free(dsoft), free(dlog);
    free(mq), free(vq), free(mr), free(vr);
    rs_qformer_train_free(qt);
    rs_router_train_free(rt);
    rs_qformer_params_free(&qp);
    rs_router_params_free(&rp);
}

/* ------------------------------------------------------------------ routing loss by hand */
TEST(route_ce_by_hand) {
    /* logits ln1, ln2, ln3: softmax = 1/6, 2/6, 3/6 */
    float z[6] = {0.0f, (float)log(2.0), (float)log(3.0), 0.0f, (float)log(2.0), (float)log(3.0)};
    float y[6] = {0, 0, 1, 1, 1, 1}; /* one-hot expert 2; uniform */
    float loss, d[6];
    CHECK(rs_router_route_ce(z, y, 2, 3, 1.0f, &loss, d) == RSMOE_OK, "%s", rsmoe_last_error());
    double want = (log(2.0) + (log(6.0) + log(3.0) + log(2.0)) / 3.0) / 2.0;
    CHECK(fabs(loss - want) < 1e-6, "loss %.9g want %.9g", loss, want);
    double wd[6] = {1.0 / 6, 2.0 / 6, 3.0 / 6 - 1, 1.0 / 6 - 1.0 / 3, 2.0 / 6 - 1.0 / 3, 3.0 / 6 - 1.0 / 3};
    for (int i = 0; i < 6; i++) CHECK(fabs(d[i] - wd[i] / 2) < 1e-6, "d[%d] = %.9g want %.9g", i, d[i], wd[i] / 2);
    float bad[3] = {0, 0, 0}, neg[3] = {1, -1, 0};
    CHECK(rs_router_route_ce(z, bad, 1, 3, 1.0f, &loss, d) == RSMOE_ERR_INVALID_ARG, "all-zero target accepted");
    CHECK(rs_router_route_ce(z, neg, 1, 3, 1.0f, &loss, d) == RSMOE_ERR_INVALID_ARG, "negative target accepted");
}

/* ------------------------------------------------------------------ errors */
TEST(bad_inputs_refused) {
    REQUIRE(setup(), "setup: %s", rsmoe_last_error());
    rs_qformer_train *qt = NULL;
    rs_router_train *rt = NULL;
    REQUIRE(rs_qformer_train_new(&F.qp.c, 2, 4, F.Ni, &qt) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(rs_router_train_new(&F.rp, 2, &rt) == RSMOE_OK, "%s", rsmoe_last_error());
    float *pre = fnew((size_t)2 * F.nq * F.D);
    CHECK(rs_qformer_train_backward(qt, &F.qp, pre, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "backward before forward");
    CHECK(rs_router_train_backward(rt, &F.rp, NULL, NULL, NULL, pre, NULL, NULL) == RSMOE_ERR_INVALID_ARG,
          "router backward before forward");
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8}, len[2] = {4, 5};
    rs_qformer_batch b = {.B = 2, .n_text = 4, .n_img = F.Ni, .img = F.img, .ids = ids, .len = len};
    CHECK(rs_qformer_train_forward(qt, &F.qp, &b, pre, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "len > n_text accepted");
    len[1] = 4;
    ids[5] = F.qp.c.vocab;
    CHECK(rs_qformer_train_forward(qt, &F.qp, &b, pre, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "id outside the vocabulary");
    CHECK(strstr(rsmoe_last_error(), "vocabulary") != NULL, "message: %s", rsmoe_last_error());
    ids[5] = 0;
    b.B = 3;
    CHECK(rs_qformer_train_forward(qt, &F.qp, &b, pre, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "batch over max accepted");
    b.B = 2, b.n_text = 5;
    CHECK(rs_qformer_train_forward(qt, &F.qp, &b, pre, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "text over max accepted");
    b.n_text = 4, b.n_img = F.Ni + 1;
    CHECK(rs_qformer_train_forward(qt, &F.qp, &b, pre, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "image tokens over max");
    b.n_img = F.Ni;
    CHECK(rs_qformer_train_forward(qt, &F.qp, &b, pre, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    float g[2 * RS_MAX_EXPERTS];
    CHECK(rs_router_train_forward(rt, &F.rp, 2, F.instr, pre, 0, g, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "Q = 0");
    CHECK(rs_router_train_forward(rt, &F.rp, 2, F.instr, pre, F.nq, g, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(rs_router_train_backward(rt, &F.rp, g, NULL, F.dS, pre, NULL, NULL) == RSMOE_ERR_INVALID_ARG,
          "d_soft without soft prompts");
    rs_qformer_train *big = NULL;
    CHECK(rs_qformer_train_new(&F.qp.c, 1, F.qp.c.max_pos + 1, F.Ni, &big) == RSMOE_ERR_INVALID_ARG && !big,
          "text longer than the positions accepted");
    free(pre);
    rs_qformer_train_free(qt);
    rs_router_train_free(rt);
    /* a model with f16 matrices cannot be trained */
    char p16[200];
    snprintf(p16, sizeof p16, "%s/f16.gguf", F.dir);
    rs_init_params ip = rs_init_default_params();
    ip.wtype = RS_F16;
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, p16, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    rs_gguf *g16 = NULL;
    REQUIRE(rs_gguf_open(p16, &g16) == RSMOE_OK, "%s", rsmoe_last_error());
    rs_qformer_params qp;
    CHECK(rs_qformer_params_new(g16, F.We, F.D, &qp) == RSMOE_ERR_FORMAT, "f16 Q-Former accepted");
    CHECK(strstr(rsmoe_last_error(), "f32") != NULL, "message: %s", rsmoe_last_error());
    CHECK(qp.set.n == 0 && qp.set.params == NULL, "set not left empty");
    rs_qformer_params_free(&qp);
    rs_gguf_close(g16);
    remove(p16);
}

/* ------------------------------------------------------------------ checkpoint */
TEST(checkpoint_roundtrip) {
    REQUIRE(setup(), "setup: %s", rsmoe_last_error());
    rs_qformer_params qp;
    REQUIRE(rs_qformer_params_new(F.g, F.We, F.D, &qp) == RSMOE_OK, "%s", rsmoe_last_error());
    for (int64_t i = 0; i < qp.set.total; i++) qp.set.params[i] += 0.25f * (float)((i % 7) - 3);
    char ck[200];
    snprintf(ck, sizeof ck, "%s/ck.gguf", F.dir);
    const rs_tparams *sets[2] = {&qp.set, &F.rp.set};
    REQUIRE(rs_tparams_save_gguf(sets, 2, F.g, ck) == RSMOE_OK, "%s", rsmoe_last_error());
    rs_gguf *g2 = NULL;
    REQUIRE(rs_gguf_open(ck, &g2) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(rs_gguf_n_tensors(g2) == rs_gguf_n_tensors(F.g) && rs_gguf_n_kv(g2) == rs_gguf_n_kv(F.g), "counts differ");
    int bad = 0;
    for (int i = 0; i < qp.set.n; i++) {
        const rs_tensor *t = rs_gguf_find_tensor(g2, qp.set.p[i].tensor.name);
        if (!t || t->type != RS_F32 || memcmp(t->data, qp.set.p[i].param, sizeof(float) * (size_t)qp.set.p[i].n)) bad++;
    }
    CHECK(bad == 0, "%d trained tensors not saved", bad);
    const rs_tensor *a = rs_gguf_find_tensor(F.g, "token_embd.weight"), *b = rs_gguf_find_tensor(g2, "token_embd.weight");
    CHECK(a && b && !memcmp(a->data, b->data, rs_tensor_nbytes(a)), "untrained tensor changed");
    /* the checkpoint loads as a model and gives the trained parameters' prefix */
    rs_model *m2 = NULL;
    CHECK(rs_model_load(ck, &m2) == RSMOE_OK, "%s", rsmoe_last_error());
    if (m2) {
        rs_qformer_train *qt = NULL;
        REQUIRE(rs_qformer_train_new(&qp.c, 1, NT, F.Ni, &qt) == RSMOE_OK, "%s", rsmoe_last_error());
        float *p1 = fnew((size_t)F.nq * F.D), *p2 = fnew((size_t)F.nq * F.D);
        float *sc = fnew(rs_qformer_scratch_floats(&m2->qf.c, F.Ni, NT, 1));
        rs_qformer_batch bb = {.B = 1, .n_text = NT, .n_img = F.Ni, .img = F.img, .ids = F.ids, .len = F.len};
        CHECK(rs_qformer_train_forward(qt, &qp, &bb, p1, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        CHECK(rs_qformer_forward(&m2->qf, F.img, F.Ni, F.ids, F.len[0], p2, NULL, sc, NULL) == RSMOE_OK, "%s",
              rsmoe_last_error());
        double e = test_nerr_f32(p1, p2, (size_t)F.nq * F.D);
        CHECK(e <= 1e-5, "prefix from the checkpoint differs: %.3g", e);
        /* the inference view of the trained parameters gives it too */
        rs_qformer view;
        CHECK(rs_qformer_params_view(&qp, &view) == RSMOE_OK, "%s", rsmoe_last_error());
        CHECK(rs_qformer_forward(&view, F.img, F.Ni, F.ids, F.len[0], p2, NULL, sc, NULL) == RSMOE_OK, "%s",
              rsmoe_last_error());
        e = test_nerr_f32(p1, p2, (size_t)F.nq * F.D);
        CHECK(e <= 1e-5, "prefix from the view differs: %.3g", e);
        rs_qformer_unbind(&view);
        /* a batch without instruction tokens (ids NULL) equals the inference with none */
        bb.n_text = 0, bb.ids = NULL, bb.len = NULL;
        CHECK(rs_qformer_train_forward(qt, &qp, &bb, p1, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        CHECK(rs_qformer_forward(&m2->qf, F.img, F.Ni, NULL, 0, p2, NULL, sc, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        e = test_nerr_f32(p1, p2, (size_t)F.nq * F.D);
        CHECK(e <= 1e-5, "prefix without instruction differs: %.3g", e);
        CHECK(rs_qformer_train_backward(qt, &qp, p1, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
        free(p1), free(p2), free(sc);
        rs_qformer_train_free(qt);
        rs_model_free(m2);
    }
    rs_gguf_close(g2);
    rs_qformer_params_free(&qp);
    remove(ck);
}

/* ------------------------------------------------------------------ accumulation */
TEST(gradients_accumulate) {
    REQUIRE(setup(), "setup: %s", rsmoe_last_error());
    REQUIRE(run_grads(&F.qp, &F.rp, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    float *g1 = malloc(sizeof(float) * (size_t)F.qp.set.total);
    memcpy(g1, F.qp.set.grads, sizeof(float) * (size_t)F.qp.set.total);
    /* a second backward of the same forward adds the same gradient */
    rs_qformer_train *qt = NULL;
    REQUIRE(rs_qformer_train_new(&F.qp.c, NB, NT, F.Ni, &qt) == RSMOE_OK, "%s", rsmoe_last_error());
    rs_qformer_batch b = {.B = NB, .n_text = NT, .n_img = F.Ni, .img = F.img, .ids = F.ids, .len = F.len};
    float *pre = fnew((size_t)NB * F.nq * F.D);
    rs_tparams_zero_grad(&F.qp.set);
    CHECK(rs_qformer_train_forward(qt, &F.qp, &b, pre, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(rs_qformer_train_backward(qt, &F.qp, F.dP, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(rs_qformer_train_backward(qt, &F.qp, F.dP, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    float *g2 = malloc(sizeof(float) * (size_t)F.qp.set.total);
    memcpy(g2, F.qp.set.grads, sizeof(float) * (size_t)F.qp.set.total);
    rs_tparams_zero_grad(&F.qp.set);
    CHECK(rs_qformer_train_backward(qt, &F.qp, F.dP, NULL, NULL) == RSMOE_OK, "%s", rsmoe_last_error());
    rs_vec_scale(F.qp.set.grads, 2.0f, F.qp.set.total);
    double e = test_nerr_f32(g2, F.qp.set.grads, (size_t)F.qp.set.total);
    CHECK(e <= 1e-6, "two backwards != twice one: %.3g", e);
    /* the padded instruction positions get no gradient: unused position rows stay zero */
    int pi = rs_tparams_find(&F.qp.set, "qf.position_embd.weight");
    REQUIRE(pi >= 0, "no position table");
    const float *gp = F.qp.set.p[pi].grad;
    double outside = 0;
    for (int64_t i = (int64_t)NT * F.W; i < F.qp.set.p[pi].n; i++) outside += fabs(gp[i]);
    CHECK(outside == 0, "position rows past the longest instruction got gradient %g", outside);
    (void)g1;
    free(g1), free(g2), free(pre);
    rs_qformer_train_free(qt);
}

static void teardown(void) {
    char p[220];
    snprintf(p, sizeof p, "%s/in.bin", F.dir);
    remove(p);
    snprintf(p, sizeof p, "%s/out.bin", F.dir);
    remove(p);
    if (F.path[0]) remove(F.path);
    if (F.dir[0]) rmdir(F.dir);
    for (int i = 0; i < nR; i++) free(R[i].v);
    free(R);
    rs_qformer_params_free(&F.qp);
    rs_router_params_free(&F.rp);
    rs_gguf_close(F.g);
    rs_model_free(F.m);
    free(F.img), free(F.instr), free(F.dP), free(F.dG), free(F.dS), free(F.route);
    free(F.prefix), free(F.gates), free(F.soft), free(F.d_img), free(F.d_instr);
}

int main(void) {
    RUN(forward_matches_inference);
    RUN(gradients_match_finite_differences);
    RUN(gradients_match_torch);
    RUN(adamw_losses_match_torch);
    RUN(route_ce_by_hand);
    RUN(bad_inputs_refused);
    RUN(checkpoint_roundtrip);
    RUN(gradients_accumulate);
    teardown();
    return test_summary();
}
