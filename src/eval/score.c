/* score.c - rs_score_captions: tokenise, then BLEU, METEOR (no paraphrase), ROUGE-L, CIDEr-D. */
#include "eval/eval_internal.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

void rs_score_opts_default(rs_score_opts *o) {
    memset(o, 0, sizeof *o);
    o->tokenize = true;
    o->meteor = true;
}

void rs_score_result_free(rs_score_result *r) {
    if (!r) return;
    free(r->rouge_img);
    free(r->cider_img);
    free(r->meteor_img);
    memset(r, 0, sizeof *r);
}

rsmoe_status rs_score_captions(const rs_caption_refs *refs, const char *const *hyps,
                               const rs_score_opts *opts, rs_score_result *out) {
    rs_score_opts def;
    if (!opts) { rs_score_opts_default(&def); opts = &def; }
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "score: NULL result");
    memset(out, 0, sizeof *out);
    if (!refs || !hyps || !refs->nrefs || !refs->refs)
        return rs_error(RSMOE_ERR_INVALID_ARG, "score: NULL references or hypotheses");
    size_t n = refs->n_img;
    if (!n) return rs_error(RSMOE_ERR_INVALID_ARG, "score: no images to score");
    for (size_t i = 0; i < n; i++) {
        if (refs->nrefs[i] < 1 || !refs->refs[i])
            return rs_error(RSMOE_ERR_INVALID_ARG, "score: image %zu has no reference caption", i);
        for (size_t j = 0; j < refs->nrefs[i]; j++)
            if (!refs->refs[i][j])
                return rs_error(RSMOE_ERR_INVALID_ARG, "score: image %zu reference %zu is NULL", i, j);
    }
    double t0 = rs_time_s();
    rsmoe_status st = RSMOE_OK;
    size_t total_refs = 0;
    for (size_t i = 0; i < n; i++) total_refs += refs->nrefs[i];
    char **hs = calloc(n, sizeof *hs);
    char **rs = calloc(total_refs ? total_refs : 1, sizeof *rs);
    const char **rptr = calloc(total_refs ? total_refs : 1, sizeof *rptr);
    const char *const **rrows = calloc(n, sizeof *rrows);
    rs_tok_corpus c = {0};
    rs_meteor *mctx = NULL;
    out->rouge_img = calloc(n, sizeof *out->rouge_img);
    out->cider_img = calloc(n, sizeof *out->cider_img);
    out->meteor_img = calloc(n, sizeof *out->meteor_img);
    if (!hs || !rs || !rptr || !rrows || !out->rouge_img || !out->cider_img || !out->meteor_img) {
        st = rs_error(RSMOE_ERR_NOMEM, "score: out of memory");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *h = hyps[i] ? hyps[i] : "";
        hs[i] = opts->tokenize ? rs_ptb_tokenize(h) : strdup(h);
        if (!hs[i]) { st = rs_error(RSMOE_ERR_NOMEM, "score: out of memory"); goto done; }
        rrows[i] = rptr + k;
        for (size_t j = 0; j < refs->nrefs[i]; j++, k++) {
            rs[k] = opts->tokenize ? rs_ptb_tokenize(refs->refs[i][j]) : strdup(refs->refs[i][j]);
            if (!rs[k]) { st = rs_error(RSMOE_ERR_NOMEM, "score: out of memory"); goto done; }
            rptr[k] = rs[k];
        }
    }
    st = rs_tok_corpus_build(&c, n, (const char *const *)hs, rrows, refs->nrefs);
    if (st) goto done;
    out->n_img = n;
    if ((st = rs_bleu(&c, out->bleu))) goto done;
    if ((st = rs_rouge_l(&c, &out->rouge_l, out->rouge_img))) goto done;
    if ((st = rs_cider_d(&c, &out->cider, out->cider_img))) goto done;
    out->seconds_other = rs_time_s() - t0;
    if (opts->meteor) {
        double t1 = rs_time_s();
        mctx = opts->meteor_ctx;
        if (!mctx && (st = rs_meteor_new(&mctx, opts->wordnet_dir))) { mctx = NULL; goto done; }
        /* METEOR sees the tokenised text again through its own -norm step */
        for (size_t i = 0; i < n; i++) {
            char *t = rs_meteor_normalize(hs[i]);
            if (!t) { st = RSMOE_ERR_NOMEM; goto done; }
            free(hs[i]);
            hs[i] = t;
        }
        for (size_t j = 0; j < total_refs; j++) {
            char *t = rs_meteor_normalize(rs[j]);
            if (!t) { st = RSMOE_ERR_NOMEM; goto done; }
            free(rs[j]);
            rs[j] = t;
            rptr[j] = t;
        }
        rs_tok_corpus_free(&c);
        st = rs_tok_corpus_build(&c, n, (const char *const *)hs, rrows, refs->nrefs);
        if (st) goto done;
        if ((st = rs_meteor_corpus(mctx, &c, &out->meteor, out->meteor_img))) goto done;
        out->has_meteor = true;
        out->seconds_meteor = rs_time_s() - t1;
    }
done:
    if (mctx && mctx != opts->meteor_ctx) rs_meteor_free(mctx);
    rs_tok_corpus_free(&c);
    if (hs) for (size_t i = 0; i < n; i++) free(hs[i]);
    if (rs) for (size_t i = 0; i < total_refs; i++) free(rs[i]);
    free(hs);
    free(rs);
    free(rptr);
    free(rrows);
    if (st) rs_score_result_free(out);
    return st;
}
