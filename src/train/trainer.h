/* trainer.h - the training stages of RS-MoE (method.md §3, docs/training.md):
 *   lm  the LLM Block from scratch on the training captions (all its weights; ours, for a model
 *       without a pretrained LLM),
 *   1   stage I: Q-Former + projection + a LoRA adapter on the LLM Block (base frozen; the
 *       image encoder frozen: its tokens come from a feature cache),
 *   2   stage II: one LoRA adapter per expert on the stage-I weights (which the stage-I output
 *       has merged into the base) + the Instruction Router (gates and soft prompts); everything
 *       of stage I frozen.
 *   scst (ours, after stage II) self-critical sequence training (Rennie et al. 2017) of the
 *       stage-II model's expert adapters and router: each expert samples scst_samples captions
 *       of each image; a caption's reward is its CIDEr-D against the image's references
 *       (document frequencies of the training split), its advantage the reward minus the mean
 *       reward of the other samples of that image and expert, and the gradient that of
 *       -Σ advantage·log p(caption) (REINFORCE with a leave-one-out baseline).
 * AdamW (decoupled weight decay), linear warm-up then cosine decay, gradient clipping,
 * gradient accumulation, seeded sample order (a function of the seed and the step, so a
 * resumed run continues bit-exactly), periodic validation loss and validation CIDEr-D,
 * checkpoints written atomically. */
#ifndef RSMOE_TRAIN_TRAINER_H
#define RSMOE_TRAIN_TRAINER_H
#include "core/core.h"

typedef struct {
    char stage[8];            /* "lm", "1", "2", "scst" */
    char model[1024];         /* input model (f32 weights) */
    char out[1024];           /* output model; the resumable state goes to OUT.state */
    char data[1024];          /* Karpathy data set */
    char images[1024];        /* image root ("" = images/ beside data) */
    char features[1024];      /* feature cache of the training split (stages 1, 2) */
    char val_features[1024];  /* feature cache of the validation split ("" = none: no val loss) */
    char train_split[32], val_split[32];
    int steps, batch, accum, warmup, log_every, eval_every, save_every, val_batches, val_images;
    int threads, max_caption_tokens, lora_rank;
    float lr, min_lr, weight_decay, clip, beta1, beta2, eps, lora_alpha, gate_loss;
    float gate_lr_mult;       /* stages 2, scst: the router's gate (router.gate.*) learns at lr × this
                               * (default 30; 1 = the rate of everything else) */
    uint64_t seed;
    int resume;               /* 1: continue from OUT.state */
    int limit;                /* use only the first N training images (0 = all) */
    int train_llm;            /* stage 1: train every LLM weight (instead of a LoRA adapter) with the
                               * Q-Former: for an LLM trained from scratch, so that it learns to use
                               * the visual prefix from the start */
    int stop_at;              /* stop after this step as an interruption would (0 = run to steps);
                               * with save_every dividing it, --resume continues from there */
    char vqa_data[1024];      /* stages 1, 2: a VQA data set whose questions are mixed into every
                               * micro-batch ("" = captions only) */
    char vqa_images[1024];    /* its image root ("" = images/ beside it) */
    char vqa_features[1024];  /* its feature cache ("" = features: e.g. questions on the same images) */
    char vqa_split[32];       /* its split ("" = train_split) */
    float vqa_ratio;          /* share of each micro-batch that is questions (default 0.25; at least one) */
    char aug_features[4096];  /* stages 1, 2: comma-separated feature caches of the same training images
                               * in other views (`rsmoe features --view`); each training sample's
                               * image tokens come from one of features + these, picked by the seed
                               * and the sample's position ("" = none) */
    int scst_samples;         /* stage scst: captions sampled per image and expert (default 5, >= 2);
                               * batch counts images there, so a micro-batch holds
                               * batch × experts × scst_samples sequences */
    float scst_vqa_weight;    /* stage scst: weight of the questions' mean cross-entropy beside the
                               * captions' policy gradient (default 0.1) */
    float feat_dropout;       /* stages 1, 2: dropout on the cached image-encoder tokens (each value
                               * zeroed with this probability, the rest scaled by 1/(1-p)) while
                               * training: against memorising images by their exact features */
} rs_train_config;

rs_train_config rs_train_default_config(void);
/* sets one option by its name (the config file's keys and the flags without "--") */
rsmoe_status rs_train_config_set(rs_train_config *c, const char *key, const char *value);
/* reads "key = value" lines ('#' starts a comment) */
rsmoe_status rs_train_config_load(rs_train_config *c, const char *path);
/* checks the values; the message names the option */
rsmoe_status rs_train_config_check(const rs_train_config *c);

typedef struct {
    int64_t step, steps;
    double loss, lr, tokens_per_s, eta_s, elapsed_s, grad_norm;
    int kind;                 /* 0 train, 1 validation, 2 checkpoint */
    double val_loss, val_cider;
    double reward;            /* stage scst: mean CIDEr-D of the sampled captions since the last
                               * event (kind 0); -1 for the other stages */
    const char *path;         /* checkpoint written */
} rs_train_event;

typedef void (*rs_train_log_fn)(const rs_train_event *e, void *ud);
/* Runs the configured stage. Errors (bad data, NaN/inf loss, I/O) stop it with a message;
 * the last checkpoint written stays valid. */
rsmoe_status rs_train_run(const rs_train_config *c, rs_train_log_fn log, void *ud);
#endif
