/* features.h - the feature cache: the frozen image encoder's visual tokens for every image of
 * a data set, computed once and stored as f16 in one memory-mapped GGUF keyed by image file
 * name, with the encoder's fingerprint so a cache made by another encoder is refused.
 *
 * File: general.architecture = "rsmoe-features"; rsmoe.features.encoder_hash (u64),
 * rsmoe.features.tokens, rsmoe.features.width (u32), rsmoe.features.images (string array,
 * the data set's file names), rsmoe.features.view (u32, the image view encoded: 0 the image as
 * it is, 1..7 a flip or rotation, see rs_image_dihedral; absent = 0); tensor "features" f16,
 * ne = {width, tokens, n_images}. */
#ifndef RSMOE_TRAIN_FEATURES_H
#define RSMOE_TRAIN_FEATURES_H
#include "data/dataset.h"
#include "model/model.h"

typedef struct {
    int done, total, failed;
    double seconds;
} rs_features_progress;

/* Encodes every item of ds (bad images are skipped, reported through bad(), and left out of
 * the cache) and writes the cache atomically. view (0..7) flips or rotates every image before
 * it is encoded (rs_image_dihedral; 0 = as it is): caches of other views are training
 * augmentations. progress (may be NULL) is called after each image. */
rsmoe_status rs_features_build(const rs_model *m, const rs_dataset *ds, const char *out_path, int view, rs_pool *pool,
                               void (*progress)(const rs_features_progress *, void *),
                               void (*bad)(const char *path, const char *msg, void *), void *ud,
                               rs_features_progress *final);

typedef struct rs_features rs_features;
/* Opens a cache; when m is not NULL the cache must come from m's encoder (same fingerprint,
 * token count and width), else RSMOE_ERR_FORMAT says it is stale. */
rsmoe_status rs_features_open(const char *path, const rs_model *m, rs_features **out);
void rs_features_close(rs_features *f);
int rs_features_count(const rs_features *f);
int rs_features_tokens(const rs_features *f);
int rs_features_width(const rs_features *f);
int rs_features_view(const rs_features *f); /* the view its images were encoded in (0..7) */
/* index of an image file name (as in the data set), -1 if absent */
int rs_features_find(const rs_features *f, const char *filename);
const char *rs_features_name(const rs_features *f, int i);
/* visual tokens of entry i as f32 [tokens, width] */
void rs_features_get(const rs_features *f, int i, float *out);
#endif
