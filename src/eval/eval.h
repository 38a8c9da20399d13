/* eval.h - caption metrics exactly as the COCO caption toolkit (pycocoevalcap) computes them,
 * and VQA accuracy. See docs/metrics.md for the scoring rules.
 *
 * Typical use (what `rsmoe score` and `rsmoe eval` do):
 *     rs_caption_refs refs = {n, nrefs, refs};          // raw reference strings per image
 *     rs_score_opts o; rs_score_opts_default(&o);
 *     rs_score_result r;
 *     if (rs_score_captions(&refs, hyps, &o, &r)) ...   // hyps[i]: raw hypothesis of image i
 *     ... r.bleu[3], r.meteor, r.rouge_l, r.cider ...
 *     rs_score_result_free(&r);
 * Every score is in [0, 1] (CIDEr-D in [0, 10]); tables print them x100. */
#ifndef RSMOE_EVAL_H
#define RSMOE_EVAL_H

#include "rsmoe.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ tokenisation */
/* The toolkit's PTBTokenizer step (-preserveLines -lowerCase, British->American spelling) and
 * its punctuation-token removal; returns a malloc'd string of tokens joined by single spaces
 * (caller frees), NULL when out of memory (error recorded). */
char *rs_ptb_tokenize(const char *text);

/* ------------------------------------------------------------ tokenised corpus */
/* Captions as word ids (interned); built from strings already tokenised (split on spaces). */
typedef struct {
    int32_t *w;
    int n;
} rs_toks;

typedef struct rs_evocab rs_evocab;     /* string <-> id interning table */

typedef struct {
    size_t n_img;
    rs_toks *hyp;        /* [n_img] */
    rs_toks **refs;      /* [n_img][nrefs[i]] */
    size_t *nrefs;       /* [n_img], each >= 1 */
    rs_evocab *vocab;
} rs_tok_corpus;

/* Builds a corpus from already-tokenised strings (tokens separated by runs of whitespace).
 * refs[i] holds nrefs[i] >= 1 strings. hyps[i] may be "" (an empty hypothesis). */
rsmoe_status rs_tok_corpus_build(rs_tok_corpus *c, size_t n_img, const char *const *hyps,
                                 const char *const *const *refs, const size_t *nrefs);
void rs_tok_corpus_free(rs_tok_corpus *c);
const char *rs_evocab_word(const rs_evocab *v, int32_t id);
size_t rs_evocab_size(const rs_evocab *v);

/* ------------------------------------------------------------ the scorers */
/* BLEU-1..4, corpus level, "closest" reference length, smoothing 1e-15 / 1e-9. */
rsmoe_status rs_bleu(const rs_tok_corpus *c, double bleu[4]);
/* ROUGE-L (beta 1.2): mean over images; per_img (may be NULL) gets n_img values. */
rsmoe_status rs_rouge_l(const rs_tok_corpus *c, double *score, double *per_img);
/* CIDEr-D (sigma 6, x10, df from the references, bigram "length"); per_img may be NULL. */
rsmoe_status rs_cider_d(const rs_tok_corpus *c, double *score, double *per_img);

/* METEOR 1.5 (-l en -norm) without the paraphrase stage: exact, Snowball stem, WordNet
 * synonym. The resources (WordNet dict folder, stemmer) are loaded once into a context. */
typedef struct rs_meteor rs_meteor;   /* holds scratch space: one per thread */
/* wordnet_dir: NULL = $RSMOE_WORDNET, else /usr/share/wordnet. */
rsmoe_status rs_meteor_new(rs_meteor **out, const char *wordnet_dir);
void rs_meteor_free(rs_meteor *m);
/* Stages used: 1 = exact only, 2 = + stem, 3 = + synonym (the default), like Meteor's -m. */
rsmoe_status rs_meteor_set_stages(rs_meteor *m, int stages);
/* The function-word list (n words). */
const char *const *rs_meteor_function_words(size_t *n);

/* Meteor's -norm text normalisation (mteval-v13a style punctuation splitting, keeping the
 * punctuation); malloc'd result, NULL on OOM. rs_meteor_segment applies it; callers of
 * rs_meteor_corpus build the corpus from normalised strings (rs_score_captions does). */
char *rs_meteor_normalize(const char *text);

/* Sufficient statistics of one hypothesis/reference alignment (summed for a corpus). */
typedef struct {
    double test_len, ref_len, test_fw, ref_fw;    /* lengths and function-word counts */
    double test_content[3], ref_content[3];       /* matched content words per stage */
    double test_func[3], ref_func[3];             /* matched function words per stage */
    double chunks, test_matches, ref_matches;     /* chunks; unweighted matched words */
    double score;                                 /* filled by rs_meteor_stats_score */
} rs_meteor_stats;

/* Stats of a hypothesis against the best-scoring reference (as Meteor's SCORE command). */
rsmoe_status rs_meteor_segment(rs_meteor *m, const char *hyp, const char *const *refs,
                               size_t nrefs, rs_meteor_stats *out);
/* Meteor's computeMetrics: fills s->score (and returns it). */
double rs_meteor_stats_score(rs_meteor_stats *s);
/* Corpus METEOR: per-image segment stats summed, scored once (what the toolkit reports);
 * per_img (may be NULL) gets each image's segment score. The corpus' strings should have
 * gone through rs_meteor_normalize. */
rsmoe_status rs_meteor_corpus(rs_meteor *m, const rs_tok_corpus *c, double *score,
                              double *per_img);

/* ------------------------------------------------------------ all at once */
typedef struct {
    bool tokenize;            /* apply rs_ptb_tokenize to refs and hyps first (default true) */
    bool meteor;              /* compute METEOR (no paraphrase) (default true) */
    const char *wordnet_dir;  /* for METEOR; NULL = $RSMOE_WORDNET or /usr/share/wordnet */
    rs_meteor *meteor_ctx;    /* optional preloaded METEOR context (not owned) */
} rs_score_opts;

typedef struct {
    size_t n_img;
    double bleu[4], meteor, rouge_l, cider;
    bool has_meteor;
    /* per image [n_img] (owned; freed by rs_score_result_free) */
    double *rouge_img, *cider_img, *meteor_img;
    double seconds_meteor, seconds_other;         /* time taken */
} rs_score_result;

typedef struct {
    size_t n_img;
    const size_t *nrefs;                /* [n_img], each >= 1 */
    const char *const *const *refs;     /* [n_img][nrefs[i]] raw (or tokenised) strings */
} rs_caption_refs;

void rs_score_opts_default(rs_score_opts *o);
/* hyps[i] is the hypothesis of image i (NULL is treated as ""). */
rsmoe_status rs_score_captions(const rs_caption_refs *refs, const char *const *hyps,
                               const rs_score_opts *opts, rs_score_result *out);
void rs_score_result_free(rs_score_result *r);

/* ------------------------------------------------------------ VQA accuracy */
/* VQAv2 vqaEval answer normalisation (punctuation, lower case, number words -> digits,
 * articles dropped, contractions); returns a malloc'd string (NULL on OOM). */
char *rs_vqa_normalize(const char *answer);

typedef struct {
    size_t n_types;
    char **type_names;        /* [n_types], sorted by name */
    size_t *type_total, *type_correct;
    double *type_acc;
    double oa, aa;            /* overall accuracy, average of per-type accuracies */
    size_t total, correct;
} rs_vqa_result;

/* n questions with their type, prediction and ground-truth answer; exact match after
 * normalisation. */
rsmoe_status rs_vqa_accuracy(size_t n, const char *const *types, const char *const *pred,
                             const char *const *gt, rs_vqa_result *out);
void rs_vqa_result_free(rs_vqa_result *r);

/* Counting by range bins: maps a count answer to its bin index given ascending upper bounds
 * (bin k holds values <= bounds[k], the last bin everything above); -1 if not a number. */
int rs_vqa_count_bin(const char *answer, const double *bounds, int n_bounds);

#endif
