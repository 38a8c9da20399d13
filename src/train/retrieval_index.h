/* retrieval_index.h - builds the retrieval index of model/retrieval.h from a data set's
 * training images (their cached encoder features) and captions, including the linear scene
 * probe it uses (softmax regression on the standardised pooled features, full batch, Adam,
 * trained on the images that carry a scene label). */
#ifndef RSMOE_TRAIN_RETRIEVAL_INDEX_H
#define RSMOE_TRAIN_RETRIEVAL_INDEX_H
#include "data/dataset.h"
#include "formats/gguf.h"
#include "train/features.h"

typedef struct {
    int k;              /* neighbours (default 60) */
    float gamma;        /* weight of the probe's posterior in the similarity (default 0.5) */
    float bonus;        /* proposals' score factor 1 + bonus (default 0.6) */
    int probe_steps;    /* default 300 */
    float probe_lr;     /* default 1e-3 */
    bool q8_keys;       /* keys as q8_0 (when the width is a multiple of 32; default true) */
} rs_retrieval_build_params;
rs_retrieval_build_params rs_retrieval_build_default_params(void);

typedef struct {
    int n_img, n_sent, n_class, skipped;   /* skipped: items without features or captions */
    int64_t n_ngram;
    float probe_loss0, probe_loss, probe_acc;   /* training loss first/last step, accuracy */
} rs_retrieval_build_report;

/* Probe loss and gradients (tests): mean cross-entropy of softmax(Z·Wᵀ + b) over the rows
 * with y >= 0; gW [C, D] and gb [C] overwritten. Z [n, D]. Returns NAN on out-of-memory. */
float rs_probe_loss_grad(const float *Z, const int32_t *y, int64_t n, int D, int C, const float *W,
                         const float *b, float *gW, float *gb, rs_pool *pool);

/* Document frequencies of the 1..4-grams of captions, as CIDEr-D counts them over a corpus:
 * df[i] = how many of the n images (items[0..n), or the first n items when items is NULL) hold
 * the n-gram hash[i] (rs_retrieval_ngram_hash of the words rs_retrieval_words writes) in any of
 * their captions; hash ascending; n_docs = n. The retrieval index's table, and the reward of
 * self-critical training (train/trainer.c). */
typedef struct {
    uint64_t *hash;
    uint32_t *df;
    int64_t n;
    uint32_t n_docs;
} rs_ngram_df;
rsmoe_status rs_ngram_df_build(const rs_dataset *ds, const int *items, int n, rs_ngram_df *out);
void rs_ngram_df_free(rs_ngram_df *d);
/* CIDEr-D of one caption against its references (pycocoevalcap's per-image score: ×10, σ 6,
 * clipped counts; words as rs_retrieval_words writes them) with the document frequencies of a
 * corpus; NAN on out-of-memory. Equals rs_score_captions' per-image CIDEr-D when df is built
 * from that corpus' references and the text needs no PTB tokenisation beyond word splitting. */
double rs_cider_d_df(const char *hyp, const char *const *refs, int n_refs, const rs_ngram_df *df);

/* The buffers behind the tensors rs_retrieval_build adds (valid until the writer has written) */
typedef struct {
    void *buf[16];
    int n;
} rs_retrieval_bufs;
void rs_retrieval_bufs_free(rs_retrieval_bufs *b);

/* Adds the index's keys and tensors to w (their data held in *keep: free it after writing).
 * Runs on one thread: the file does not depend on the machine's thread count. ds: the items to index (every item with captions
 * and an entry in f; its label, when not empty, is its scene class). */
rsmoe_status rs_retrieval_build(const rs_dataset *ds, const rs_features *f, const rs_retrieval_build_params *p,
                                rs_gguf_writer *w, rs_retrieval_bufs *keep,
                                rs_retrieval_build_report *rep);
#endif
