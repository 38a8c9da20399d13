/* train_fixture.h - what the training tests (test_train.c, test_train_parity.c) share: a small
 * run configuration on the test images, and the feature cache of a data set's train split. */
#ifndef RSMOE_TESTS_TRAIN_FIXTURE_H
#define RSMOE_TESTS_TRAIN_FIXTURE_H
#include "data/dataset.h"
#include "model/model.h"
#include "train/features.h"
#include "train/trainer.h"

#include <stdio.h>

/* STAGE on MODEL -> OUT for STEPS steps of 4 samples from DATA (images in tests/data, tokens in
 * FEAT), one thread, no validation, no checkpoints but the last, a loss logged every step */
static inline rs_train_config fixture_config(const char *stage, const char *model, const char *out, const char *data,
                                             const char *feat, int steps) {
    rs_train_config c = rs_train_default_config();
    snprintf(c.stage, sizeof c.stage, "%s", stage);
    snprintf(c.model, sizeof c.model, "%s", model);
    snprintf(c.out, sizeof c.out, "%s", out);
    snprintf(c.data, sizeof c.data, "%s", data);
    snprintf(c.images, sizeof c.images, "tests/data");
    snprintf(c.features, sizeof c.features, "%s", feat);
    c.steps = steps;
    c.batch = 4;
    c.log_every = 1;
    c.eval_every = 0;
    c.save_every = 0;
    c.val_images = 0;
    c.val_split[0] = 0; /* the fixtures have no validation split */
    c.warmup = 2;
    c.lr = 1e-2f;
    c.min_lr = 1e-3f;
    c.threads = 1;
    return c;
}

/* the feature cache FEAT of DATA's train split (images in tests/data) under MODEL's encoder,
 * the images in view VIEW (rs_image_dihedral); false (the error printed) when it cannot be made */
static inline bool fixture_features_view(const char *data, const char *model, const char *feat, int view) {
    rs_dataset ds = {0};
    rs_dataset_opts o = {.image_root = "tests/data", .split = "train"};
    rs_model *m = NULL;
    bool ok = rs_dataset_load(data, RS_DS_AUTO, &o, &ds) == RSMOE_OK;
    if (ok && rs_model_load(model, &m) == RSMOE_OK) ok = rs_features_build(m, &ds, feat, view, NULL, NULL, NULL, NULL, NULL) == RSMOE_OK;
    else ok = false;
    if (!ok) fprintf(stderr, "setup: %s\n", rsmoe_last_error());
    rs_model_free(m);
    rs_dataset_free(&ds);
    return ok;
}
static inline bool fixture_features(const char *data, const char *model, const char *feat) {
    return fixture_features_view(data, model, feat, 0);
}
#endif
