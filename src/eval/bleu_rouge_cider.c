/* bleu_rouge_cider.c - BLEU-1..4, ROUGE-L and CIDEr-D as pycocoevalcap computes them
 * (docs/metrics.md §2-4). */
#include "eval/eval_internal.h"
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ BLEU */
rsmoe_status rs_bleu(const rs_tok_corpus *c, double bleu[4]) {
    if (!c || !c->n_img) return rs_error(RSMOE_ERR_INVALID_ARG, "bleu: empty corpus");
    rs_ngram_corpus g;
    rsmoe_status st = rs_ngram_corpus_build(&g, c);
    if (st) return st;
    int32_t *maxref = calloc(g.n_ngrams ? g.n_ngrams : 1, sizeof *maxref);
    if (!maxref) { rs_ngram_corpus_free(&g); return rs_error(RSMOE_ERR_NOMEM, "bleu: out of memory"); }
    double testlen = 0, reflen = 0, guess[4] = {0}, correct[4] = {0};
    for (size_t i = 0; i < c->n_img; i++) {
        int hl = c->hyp[i].n;
        /* closest reference length, ties to the shorter */
        int best = -1;
        for (size_t j = 0; j < c->nrefs[i]; j++) {
            int rl = c->refs[i][j].n;
            if (best < 0 || abs(rl - hl) < abs(best - hl) || (abs(rl - hl) == abs(best - hl) && rl < best))
                best = rl;
        }
        testlen += hl;
        reflen += best;
        for (int n = 0; n < 4; n++) {
            for (size_t j = 0; j < c->nrefs[i]; j++) {
                const rs_ngvec *r = &g.refs[i][j];
                for (int k = 0; k < r->n[n]; k++)
                    if (r->g[n][k].cnt > maxref[r->g[n][k].id]) maxref[r->g[n][k].id] = r->g[n][k].cnt;
            }
            const rs_ngvec *h = &g.hyp[i];
            for (int k = 0; k < h->n[n]; k++) {
                int m = maxref[h->g[n][k].id];
                correct[n] += h->g[n][k].cnt < m ? h->g[n][k].cnt : m;
            }
            guess[n] += hl - n > 0 ? hl - n : 0;
            for (size_t j = 0; j < c->nrefs[i]; j++) {
                const rs_ngvec *r = &g.refs[i][j];
                for (int k = 0; k < r->n[n]; k++) maxref[r->g[n][k].id] = 0;
            }
        }
    }
    const double tiny = 1e-15, small = 1e-9;
    double p = 1.0;
    for (int n = 0; n < 4; n++) {
        p *= (correct[n] + tiny) / (guess[n] + small);
        bleu[n] = pow(p, 1.0 / (n + 1));
    }
    double ratio = (testlen + tiny) / (reflen + small);
    if (ratio < 1)
        for (int n = 0; n < 4; n++) bleu[n] *= exp(1 - 1 / ratio);
    free(maxref);
    rs_ngram_corpus_free(&g);
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ ROUGE-L */
static int lcs_len(const rs_toks *a, const rs_toks *b, int *row) {
    /* row: b->n + 1 ints of scratch */
    for (int j = 0; j <= b->n; j++) row[j] = 0;
    for (int i = 1; i <= a->n; i++) {
        int diag = 0;
        for (int j = 1; j <= b->n; j++) {
            int up = row[j];
            row[j] = a->w[i - 1] == b->w[j - 1] ? diag + 1 : (row[j] > row[j - 1] ? row[j] : row[j - 1]);
            diag = up;
        }
    }
    return row[b->n];
}

rsmoe_status rs_rouge_l(const rs_tok_corpus *c, double *score, double *per_img) {
    if (!c || !c->n_img) return rs_error(RSMOE_ERR_INVALID_ARG, "rouge: empty corpus");
    int maxlen = 1;
    for (size_t i = 0; i < c->n_img; i++)
        if (c->hyp[i].n > maxlen) maxlen = c->hyp[i].n;
    int *row = malloc(((size_t)maxlen + 1) * sizeof *row);
    if (!row) return rs_error(RSMOE_ERR_NOMEM, "rouge: out of memory");
    const double beta = 1.2;
    double sum = 0;
    for (size_t i = 0; i < c->n_img; i++) {
        const rs_toks *h = &c->hyp[i];
        double pmax = 0, rmax = 0;
        for (size_t j = 0; j < c->nrefs[i]; j++) {
            const rs_toks *r = &c->refs[i][j];
            /* the toolkit splits "" into one empty token: lengths are at least 1, and an
             * empty hypothesis matches an empty reference (LCS 1) */
            int l = (h->n == 0 && r->n == 0) ? 1 : lcs_len(r, h, row);
            double p = (double)l / (double)(h->n ? h->n : 1);
            double rc = (double)l / (double)(r->n ? r->n : 1);
            if (p > pmax) pmax = p;
            if (rc > rmax) rmax = rc;
        }
        double s = 0;
        if (pmax != 0 && rmax != 0) s = ((1 + beta * beta) * pmax * rmax) / (rmax + beta * beta * pmax);
        if (per_img) per_img[i] = s;
        sum += s;
    }
    *score = sum / (double)c->n_img;
    free(row);
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ CIDEr-D */
typedef struct {
    double *w[4];
    double norm[4];
    int len;
} cvec;

static void cvec_fill(const rs_ngvec *v, const double *logdf, double logn, int ntok, cvec *o) {
    for (int n = 0; n < 4; n++) {
        double s = 0;
        for (int k = 0; k < v->n[n]; k++) {
            double x = (double)v->g[n][k].cnt * (logn - logdf[v->g[n][k].id]);
            o->w[n][k] = x;
            s += x * x;
        }
        o->norm[n] = sqrt(s);
    }
    o->len = ntok > 1 ? ntok - 1 : 0;  /* bigram count: the toolkit's "length" */
}

rsmoe_status rs_cider_d(const rs_tok_corpus *c, double *score, double *per_img) {
    if (!c || !c->n_img) return rs_error(RSMOE_ERR_INVALID_ARG, "cider: empty corpus");
    rs_ngram_corpus g;
    rsmoe_status st = rs_ngram_corpus_build(&g, c);
    if (st) return st;
    size_t ng = g.n_ngrams ? g.n_ngrams : 1;
    double *logdf = calloc(ng, sizeof *logdf);
    int32_t *df = calloc(ng, sizeof *df);
    size_t *stamp = calloc(ng, sizeof *stamp);
    int maxlen = 1;
    for (size_t i = 0; i < c->n_img; i++) {
        if (c->hyp[i].n > maxlen) maxlen = c->hyp[i].n;
        for (size_t j = 0; j < c->nrefs[i]; j++)
            if (c->refs[i][j].n > maxlen) maxlen = c->refs[i][j].n;
    }
    double *buf = malloc(8 * (size_t)maxlen * sizeof *buf);
    if (!logdf || !df || !stamp || !buf) {
        st = rs_error(RSMOE_ERR_NOMEM, "cider: out of memory");
        goto done;
    }
    /* document frequency over the references: images whose reference set holds g */
    for (size_t i = 0; i < c->n_img; i++)
        for (size_t j = 0; j < c->nrefs[i]; j++)
            for (int n = 0; n < 4; n++)
                for (int k = 0; k < g.refs[i][j].n[n]; k++) {
                    int32_t id = g.refs[i][j].g[n][k].id;
                    if (stamp[id] != i + 1) { stamp[id] = i + 1; df[id]++; }
                }
    for (size_t k = 0; k < g.n_ngrams; k++) logdf[k] = log(df[k] > 1 ? (double)df[k] : 1.0);
    double logn = log((double)c->n_img);
    const double sigma = 6.0;
    cvec vh, vr;
    for (int n = 0; n < 4; n++) {
        vh.w[n] = buf + (size_t)n * maxlen;
        vr.w[n] = buf + (size_t)(4 + n) * maxlen;
    }
    double sum = 0;
    for (size_t i = 0; i < c->n_img; i++) {
        cvec_fill(&g.hyp[i], logdf, logn, c->hyp[i].n, &vh);
        double acc[4] = {0, 0, 0, 0};
        for (size_t j = 0; j < c->nrefs[i]; j++) {
            const rs_ngvec *rv = &g.refs[i][j];
            cvec_fill(rv, logdf, logn, c->refs[i][j].n, &vr);
            double delta = (double)(vh.len - vr.len);
            double pen = exp(-(delta * delta) / (2 * sigma * sigma));
            for (int n = 0; n < 4; n++) {
                const rs_ngvec *hv = &g.hyp[i];
                double val = 0;
                int a = 0, b = 0;
                while (a < hv->n[n] && b < rv->n[n]) {
                    int32_t ia = hv->g[n][a].id, ib = rv->g[n][b].id;
                    if (ia < ib) a++;
                    else if (ib < ia) b++;
                    else {
                        double wh = vh.w[n][a], wr = vr.w[n][b];
                        val += (wh < wr ? wh : wr) * wr;
                        a++;
                        b++;
                    }
                }
                if (vh.norm[n] != 0 && vr.norm[n] != 0) val /= vh.norm[n] * vr.norm[n];
                acc[n] += val * pen;
            }
        }
        double s = (acc[0] + acc[1] + acc[2] + acc[3]) / 4.0;
        s /= (double)c->nrefs[i];
        s *= 10.0;
        if (per_img) per_img[i] = s;
        sum += s;
    }
    *score = sum / (double)c->n_img;
done:
    free(logdf);
    free(df);
    free(stamp);
    free(buf);
    rs_ngram_corpus_free(&g);
    return st;
}
