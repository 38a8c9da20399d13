/* retrieval.h - retrieval-consensus caption selection: an index of the training images
 * (their pooled encoder features, a linear scene probe on them, and their captions) stored
 * in the model file, used to pick a brief caption by consensus (Devlin et al. 2015,
 * "Exploring nearest neighbor approaches for image captioning").
 *
 * For an image: its visual tokens are mean-pooled, standardised (the training images' mean
 * and standard deviation) and scaled to unit length (u); the scene probe's softmax over u's
 * standardised form, scaled to unit length, is p. Its similarity to training image j is
 *     s_j = (u·U_j + g²·p·P_j) / (1 + g²)           (the cosine of [u, g·p] and [U_j, g·P_j])
 * The K most similar training images lend their captions, each weighted by max(s_j, 0)
 * (a sentence several neighbours share adds up). Candidates: those sentences and the experts'
 * proposals. A candidate's score is its weighted mean consensus with the lent sentences,
 * times (1 + bonus) for a proposal of the model; the highest wins (ties: the first).
 *
 * Consensus of sentences a and b (both as rs_retrieval_words writes them): for n = 1..4,
 * TF-IDF vectors of their n-grams (tf × log(n_docs / max(1, df)), df = the number of training
 * images whose captions hold the n-gram), the clipped cosine Σ_g min(a_g, b_g)·b_g / (|a||b|)
 * (CIDEr-D's), averaged over n and multiplied by exp(-(len_a - len_b)² / 72).
 *
 * File (all optional; present together): rsmoe.retrieval.k (u32), .gamma (f32), .bonus (f32),
 * .n_docs (u32), .classes (string array, the probe's scene labels), .sentences (string array,
 * distinct normalised training sentences), .ngram_hash (u64 array, sorted), .ngram_df (u32
 * array); tensors retrieval.mean, retrieval.istd [W] f32, retrieval.probe_w [C, W] f32,
 * retrieval.probe_b [C] f32, retrieval.keys [N, W] q8_0 or f32 (U), retrieval.keys_p [N, C]
 * f32 (P); rsmoe.retrieval.img_off (i32 array, N + 1) and .img_sent (i32 array): image j's
 * sentences are img_sent[img_off[j] .. img_off[j+1]). */
#ifndef RSMOE_MODEL_RETRIEVAL_H
#define RSMOE_MODEL_RETRIEVAL_H
#include "core/core.h"
#include "formats/gguf.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int n_img, width, n_class, k;
    float gamma, bonus;
    uint32_t n_docs;
    const rs_gguf *g;
    int64_t kv_sent, kv_class;
    int64_t n_sent, n_ngram;
    uint64_t *ng_hash;       /* owned copies of the file's arrays */
    uint32_t *ng_df;
    int32_t *img_off, *img_sent;
    const float *mean, *istd, *probe_w, *probe_b, *keys_p;
    const rs_tensor *keys;
} rs_retrieval;

/* *present = false (and OK) when the file has no index; an index that is there but
 * inconsistent is RSMOE_ERR_FORMAT. width: the encoder's token width. */
rsmoe_status rs_retrieval_load(const rs_gguf *g, int width, rs_retrieval *r, bool *present);
void rs_retrieval_free(rs_retrieval *r);

/* The lower-case ASCII words of text (letters and digits; anything else separates words;
 * bytes >= 0x80 count as letters) joined by single spaces, at most cap - 1 bytes. */
void rs_retrieval_words(const char *text, char *out, size_t cap);

/* The words of a normalised sentence (split at spaces): at most max of them as pointers into s
 * and lengths (w, len may be NULL with max 0); returns how many words s has in all. */
int rs_retrieval_split(const char *s, const char **w, size_t *len, int max);

/* FNV-1a 64 of an n-gram: its words joined by single spaces. */
uint64_t rs_retrieval_ngram_hash(const char *const *w, const size_t *len, int n);

/* The consensus similarity of normalised sentences a and b (see above); df(hash) from the
 * sorted table (n entries; an absent n-gram has df 0). */
double rs_consensus_sim(const char *a, const char *b, const uint64_t *hash, const uint32_t *df, int64_t n,
                        uint32_t n_docs);

/* Chooses among s[0..n) (normalised sentences) by weighted consensus with the first n_lent of
 * them, the lent sentences (weights w[0..n_lent); sum > 0), a candidate i with is_prop[i]
 * scaled by 1 + bonus. Returns the index of the winner, -1 when n is 0 or on out-of-memory. */
int rs_consensus_choose(const char *const *s, const bool *is_prop, int n, const float *w, int n_lent,
                        float bonus, const uint64_t *hash, const uint32_t *df, int64_t n_ngram,
                        uint32_t n_docs);

/* Softmax of z[0..C) in place (exp(z - max), summed in double); returns the arg max (-1 for
 * C <= 0). The index build and the run time both use it, so their posteriors agree. */
int rs_retrieval_softmax(float *z, int C);

typedef struct {
    char *text;         /* the chosen sentence (malloc'd) */
    int proposal;       /* index into the proposals when one of them won, else -1 */
    int scene;          /* the probe's top class */
    float scene_prob;
    int n_neighbours;
    int first[8];       /* the first min(n_neighbours, 8) neighbours, most similar first */
    float top_sim;      /* the most similar one's similarity */
} rs_retrieval_pick;

/* The full selection for one image: tokens [n_tok, width] the encoder's output, proposals
 * the experts' texts (NULL entries skipped). k <= 0: the index's K. n_prop < 0: the scene
 * probe only (out->text NULL, no neighbours). */
rsmoe_status rs_retrieval_select(const rs_retrieval *r, const float *tokens, int n_tok,
                                 const char *const *proposals, int n_prop, int k, rs_pool *pool,
                                 rs_retrieval_pick *out);
/* scene class name i ("" if out of range) */
const char *rs_retrieval_class(const rs_retrieval *r, int i, size_t *len);
#endif
