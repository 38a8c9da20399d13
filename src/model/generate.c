/* generate.c - see generate.h */
#include "model/generate.h"

#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int slot;
    double score;
    int32_t *toks; /* [max_new] */
} beam;

typedef struct {
    double score, sum;  /* normalised and raw */
    int n;
    bool ended;
    int32_t *toks;
} hyp;

typedef struct {
    double score;
    int parent, token;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    if (x->parent != y->parent) return x->parent - y->parent;
    return x->token - y->token;
}

/* index of the worst candidate (cand_cmp order) in cands[base, end) */
static int worst_cand(const cand *cands, int base, int end) {
    int worst = base;
    for (int k = base + 1; k < end; k++)
        if (cand_cmp(&cands[k], &cands[worst]) > 0) worst = k;
    return worst;
}

static bool is_stop(const rs_gen_params *p, int t) {
    for (int i = 0; i < p->n_stop; i++)
        if (p->stop[i] == t) return true;
    return false;
}

/* a stream's views (0 means one) */
static int views_of(const rs_gen_stream *s) { return s->n_views < 1 ? 1 : s->n_views; }

static double norm(double sum, int len, float lp) { return sum / pow(len > 0 ? len : 1, lp); }

/* keep the best `cap` hypotheses of a stream */
static void add_hyp(hyp *h, int *nh, int cap, const int32_t *toks, int n, double sum, bool ended, float lp, int max_new) {
    double sc = norm(sum, n + (ended ? 1 : 0), lp);
    int at;
    if (*nh < cap) at = (*nh)++;
    else {
        at = 0;
        for (int i = 1; i < *nh; i++)
            if (h[i].score < h[at].score) at = i;
        if (h[at].score >= sc) return;
    }
    h[at].score = sc;
    h[at].sum = sum;
    h[at].n = n;
    h[at].ended = ended;
    memcpy(h[at].toks, toks, sizeof(int32_t) * (size_t)(n < max_new ? n : max_new));
}

rsmoe_status rs_generate(const rs_llm_weights *w, rs_llm_state *s, const rs_lora_set *const *adapters,
                         const rs_gen_stream *streams, int n_streams, const rs_gen_params *p,
                         rs_gen_result *res, rs_gen_stats *stats, rs_pool *pool, rs_abort_fn abort_cb, void *ud) {
    rs_gen_stats stl = {0};
    double t0 = rs_time_s();
    const int B = p->beams < 1 ? 1 : p->beams, S = n_streams, V = w->c.vocab, D = w->c.dim;
    int max_new = p->max_new;
    if (S < 1 || max_new < 1) return rs_error(RSMOE_ERR_INVALID_ARG, "generate: %d streams, max_new %d", S, max_new);
    int total_prefix = 0, NV = 1;
    for (int i = 0; i < S; i++) {
        int nv = views_of(&streams[i]);
        if (nv > RS_GEN_MAX_VIEWS) return rs_error(RSMOE_ERR_INVALID_ARG, "generate: stream %d has %d views (at most %d)", i, nv, RS_GEN_MAX_VIEWS);
        if (nv > NV) NV = nv;
        if (streams[i].prefix_len < 1) return rs_error(RSMOE_ERR_INVALID_ARG, "generate: stream %d has an empty prefix", i);
        if (streams[i].prefix_len >= rs_llm_state_max_seq(s))
            return rs_error(RSMOE_ERR_INVALID_ARG, "generate: a prompt of %d positions does not fit the context of %d",
                            streams[i].prefix_len, rs_llm_state_max_seq(s));
        total_prefix += nv * streams[i].prefix_len;
        if (streams[i].prefix_len + max_new > rs_llm_state_max_seq(s))
            max_new = rs_llm_state_max_seq(s) - streams[i].prefix_len;
    }
    if (B > 64) return rs_error(RSMOE_ERR_INVALID_ARG, "generate: at most 64 beams");
    rsmoe_status st = RSMOE_OK;
    size_t nbeam = (size_t)S * B, nrow = nbeam * (size_t)NV; /* live rows per step at most */
    /* one allocation per call (not per step) */
    float *logits = malloc(sizeof(float) * nrow * (size_t)V);
    float *lp = malloc(sizeof(float) * (size_t)V), *acc = malloc(sizeof(float) * (size_t)V);
    float *sp = malloc(sizeof(float) * (size_t)V);
    int *si = malloc(sizeof(int) * (size_t)V);
    cand *cands = malloc(sizeof(cand) * (size_t)B * 2 * (size_t)B + sizeof(cand));
    beam *beams = calloc(nbeam, sizeof(beam)), *nbeams = calloc(nbeam, sizeof(beam));
    int32_t *tokbuf = malloc(sizeof(int32_t) * nbeam * 2 * (size_t)max_new);
    hyp *hyps = calloc(nbeam, sizeof(hyp));
    int32_t *hyptok = malloc(sizeof(int32_t) * nbeam * (size_t)max_new);
    int *n_alive = calloc((size_t)S, sizeof(int)), *n_hyp = calloc((size_t)S, sizeof(int));
    bool *done = calloc((size_t)S, sizeof(bool)), *slot_used = calloc(nbeam, sizeof(bool));
    int *row_slot = malloc(sizeof(int) * (nrow + (size_t)total_prefix)), *row_pos = malloc(sizeof(int) * (nrow + (size_t)total_prefix));
    int *row_ad = malloc(sizeof(int) * (nrow + (size_t)total_prefix)), *logit_rows = malloc(sizeof(int) * nrow);
    int *row_of = malloc(sizeof(int) * nbeam); /* logits row of each live beam's first view */
    float *emb = malloc(sizeof(float) * (size_t)D * (nrow + (size_t)total_prefix));
    if (!logits || !lp || !acc || !sp || !si || !cands || !beams || !nbeams || !tokbuf || !hyps || !hyptok || !n_alive ||
        !n_hyp || !done || !slot_used || !row_slot || !row_pos || !row_ad || !logit_rows || !row_of || !emb) {
        st = rs_error(RSMOE_ERR_NOMEM, "generate: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nbeam; i++) {
        beams[i].toks = tokbuf + i * 2 * (size_t)max_new;
        nbeams[i].toks = tokbuf + i * 2 * (size_t)max_new + max_new;
        hyps[i].toks = hyptok + i * (size_t)max_new;
    }
    rs_rng rng;
    rs_rng_seed(&rng, p->seed);

    /* prefill every stream (every view of it) in one forward call */
    {
        int r = 0, nl = 0;
        for (int i = 0; i < S; i++) {
            int nv = views_of(&streams[i]), L = streams[i].prefix_len;
            row_of[(size_t)i * B] = nl;
            for (int v = 0; v < nv; v++) {
                memcpy(emb + (size_t)r * D, streams[i].prefix + (size_t)v * L * D, sizeof(float) * (size_t)D * (size_t)L);
                for (int t = 0; t < L; t++, r++) {
                    row_slot[r] = i * B * NV + v;
                    row_pos[r] = t;
                    row_ad[r] = streams[i].adapter;
                }
                logit_rows[nl++] = r - 1;
            }
            n_alive[i] = 1;
            beams[(size_t)i * B].slot = i * B;
            beams[(size_t)i * B].score = 0;
        }
        rs_llm_batch b = {.n_rows = r, .emb = emb, .slot = row_slot, .pos = row_pos, .adapter = row_ad,
                          .adapters = adapters, .n_logit_rows = nl, .logit_rows = logit_rows, .logits = logits};
        if ((st = rs_llm_forward(w, s, &b, pool))) goto out;
        stl.prefill_rows = r;
        if (stats && stats->prefill_logits) /* each stream's first view */
            for (int i = 0; i < S; i++)
                memcpy(stats->prefill_logits + (size_t)i * V, logits + (size_t)row_of[(size_t)i * B] * V, sizeof(float) * (size_t)V);
    }
    double t1 = rs_time_s();
    stl.prefill_s = t1 - t0;

    for (int step = 0; step < max_new; step++) {
        if (abort_cb && abort_cb(ud)) { st = rs_error(RSMOE_ERR_ABORTED, "generation aborted"); goto out; }
        int nrows = 0;
        for (int i = 0; i < S; i++) {
            if (done[i]) continue;
            int nc = 0, nv = views_of(&streams[i]);
            beam *bs = beams + (size_t)i * B;
            for (int bi = 0; bi < n_alive[i]; bi++) {
                float *lg = logits + (size_t)row_of[(size_t)i * B + bi] * V; /* the first view's */
                for (int v = 0; v < nv; v++) {
                    float *lv = lg + (size_t)v * V;
                    rs_repetition_penalty(lv, V, bs[bi].toks, step, p->rep_penalty);
                    if (step < p->min_new)
                        for (int k = 0; k < p->n_stop; k++)
                            if (p->stop[k] >= 0 && p->stop[k] < V) lv[p->stop[k]] = -INFINITY;
                }
                if (nv > 1) { /* views: log-softmax of the mean of their log-softmaxes; sampled from that mean */
                    const float inv = 1.0f / (float)nv;
                    for (int v = 0; v < nv; v++) {
                        memcpy(lp, lg + (size_t)v * V, sizeof(float) * (size_t)V);
                        rs_log_softmax(lp, V);
                        if (v == 0) memcpy(acc, lp, sizeof(float) * (size_t)V);
                        else
                            for (int j = 0; j < V; j++) acc[j] += lp[j];
                    }
                    for (int j = 0; j < V; j++) acc[j] *= inv;
                    lg = acc;
                }
                memcpy(lp, lg, sizeof(float) * (size_t)V);
                rs_log_softmax(lp, V);
                if (B == 1) { /* greedy or sampling: one continuation */
                    int t = p->temperature > 0 ? rs_sample(lg, V, p->temperature, p->top_p, &rng, sp, si)
                                               : rs_argmax(lp, V);
                    cands[nc++] = (cand){bs[bi].score + lp[t], bi, t};
                    continue;
                }
                /* this beam's best 2B tokens */
                int want = 2 * B < V ? 2 * B : V;
                int base = nc, worst = base;
                for (int v = 0; v < V; v++) {
                    cand c = {bs[bi].score + lp[v], bi, v};
                    if (nc - base < want) {
                        cands[nc++] = c;
                        if (nc - base == want) worst = worst_cand(cands, base, nc);
                    } else if (cand_cmp(&c, &cands[worst]) < 0) {
                        /* the worst of the kept set is found again only when it changes (it
                         * used to be searched for every token: 15 % of a 5-beam caption) */
                        cands[worst] = c;
                        worst = worst_cand(cands, base, nc);
                    }
                }
            }
            qsort(cands, (size_t)nc, sizeof(cand), cand_cmp);
            /* walk the candidates */
            int nn = 0;
            for (int k = 0; k < nc && nn < B; k++) {
                const beam *par = &bs[cands[k].parent];
                if (is_stop(p, cands[k].token)) {
                    if (k < B) add_hyp(hyps + (size_t)i * B, &n_hyp[i], B, par->toks, step, cands[k].score, true, p->len_penalty, max_new);
                    continue;
                }
                beam *nb = &nbeams[(size_t)i * B + nn++];
                nb->slot = cands[k].parent; /* parent index for now */
                nb->score = cands[k].score;
                memcpy(nb->toks, par->toks, sizeof(int32_t) * (size_t)step);
                nb->toks[step] = cands[k].token;
            }
            /* stream done? */
            bool fin = false;
            if (nn == 0) fin = true;
            else if (step + 1 >= max_new) {
                for (int k = 0; k < nn; k++) {
                    beam *nb = &nbeams[(size_t)i * B + k];
                    add_hyp(hyps + (size_t)i * B, &n_hyp[i], B, nb->toks, step + 1, nb->score, false, p->len_penalty, max_new);
                }
                fin = true;
            } else if (n_hyp[i] >= B) {
                double worst = INFINITY;
                for (int k = 0; k < n_hyp[i]; k++)
                    if (hyps[(size_t)i * B + k].score < worst) worst = hyps[(size_t)i * B + k].score;
                double best_alive = norm(nbeams[(size_t)i * B].score, step + 1, p->len_penalty);
                if (best_alive <= worst) fin = true;
            }
            if (fin) { done[i] = true; n_alive[i] = 0; continue; }
            /* slots: the first child of a parent keeps its slot; others take the slots of
             * parents without children, copying the parent's cache */
            int prefix = streams[i].prefix_len;
            for (int k = 0; k < B; k++) slot_used[(size_t)i * B + k] = false;
            int first_child[64];
            for (int k = 0; k < B && k < 64; k++) first_child[k] = -1;
            for (int k = 0; k < nn; k++) {
                int par = nbeams[(size_t)i * B + k].slot;
                if (first_child[par] < 0) {
                    first_child[par] = k;
                    slot_used[(size_t)bs[par].slot] = true;
                }
            }
            for (int k = 0; k < nn; k++) {
                beam *nb = &nbeams[(size_t)i * B + k];
                int par = nb->slot;
                if (first_child[par] == k) nb->slot = bs[par].slot;
                else {
                    int free_slot = -1;
                    for (int q = 0; q < B; q++)
                        if (!slot_used[(size_t)i * B + q]) { free_slot = i * B + q; break; }
                    slot_used[free_slot] = true;
                    for (int v = 0; v < nv; v++)
                        rs_llm_state_copy_slot(s, free_slot * NV + v, bs[par].slot * NV + v, prefix + step);
                    nb->slot = free_slot;
                }
            }
            /* commit the new beams (swap, so each beam index keeps its two token buffers) */
            for (int k = 0; k < nn; k++) {
                beam tmp = bs[k];
                bs[k] = nbeams[(size_t)i * B + k];
                nbeams[(size_t)i * B + k] = tmp;
            }
            n_alive[i] = nn;
            for (int k = 0; k < nn; k++) {
                row_of[(size_t)i * B + k] = nrows;
                for (int v = 0; v < nv; v++) {
                    row_slot[nrows] = bs[k].slot * NV + v;
                    row_pos[nrows] = prefix + step;
                    row_ad[nrows] = streams[i].adapter;
                    if (v == 0) {
                        if ((st = rs_llm_embed(w, &bs[k].toks[step], 1, emb + (size_t)nrows * D))) goto out;
                    } else {
                        memcpy(emb + (size_t)nrows * D, emb + (size_t)(nrows - v) * D, sizeof(float) * (size_t)D);
                    }
                    logit_rows[nrows] = nrows;
                    nrows++;
                }
            }
        }
        if (nrows == 0) break;
        /* rows of one slot must be consecutive: they are (one row per slot) */
        rs_llm_batch b = {.n_rows = nrows, .emb = emb, .slot = row_slot, .pos = row_pos, .adapter = row_ad,
                          .adapters = adapters, .n_logit_rows = nrows, .logit_rows = logit_rows, .logits = logits};
        if ((st = rs_llm_forward(w, s, &b, pool))) goto out;
        stl.steps++;
        stl.decoded_rows += nrows;
    }
    stl.decode_s = rs_time_s() - t1;
    if (stats) { stl.prefill_logits = stats->prefill_logits; *stats = stl; }
    for (int i = 0; i < S; i++) {
        rs_gen_result *r = &res[i];
        r->n = 0;
        r->sum_logprob = 0;
        r->score = -INFINITY;
        r->ended = false;
        const hyp *best = NULL;
        for (int k = 0; k < n_hyp[i]; k++)
            if (!best || hyps[(size_t)i * B + k].score > best->score) best = &hyps[(size_t)i * B + k];
        if (best) {
            r->n = best->n < max_new ? best->n : max_new;
            memcpy(r->ids, best->toks, sizeof(int32_t) * (size_t)r->n);
            r->sum_logprob = best->sum;
            r->score = best->score;
            r->ended = best->ended;
        }
    }
out:
    free(logits); free(lp); free(acc); free(sp); free(si); free(cands); free(beams); free(nbeams); free(tokbuf);
    free(hyps); free(hyptok); free(n_alive); free(n_hyp); free(done); free(slot_used); free(row_slot);
    free(row_pos); free(row_ad); free(logit_rows); free(row_of); free(emb);
    return st;
}
