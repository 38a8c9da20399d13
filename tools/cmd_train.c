/* cmd_train.c - `rsmoe train`: the training stages (docs/training.md). */
#include "cli.h"
#include "train/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: rsmoe train --stage lm|1|2|scst [--config FILE] [--OPTION VALUE ...]\n\n"
            "Trains one stage of RS-MoE (docs/training.md). Every config key is also a flag (--batch 8 sets\n"
            "batch = 8); flags override the config file.\n"
            "  stage lm  the LLM Block from scratch on the training captions (all its weights)\n"
            "  stage 1   Q-Former + projection + LoRA on the LLM Block (image tokens from a feature cache)\n"
            "  stage 2   one LoRA per expert (from the stage-I model) + the Instruction Router\n"
            "  stage scst  self-critical training of a stage-II model's experts and router: each expert\n"
            "            samples --scst-samples captions (default 5) of each of --batch images; reward =\n"
            "            CIDEr-D against the image's references, baseline = the other samples' mean;\n"
            "            with --vqa-data, vqa_ratio x batch questions per step keep their cross-entropy\n"
            "            (weighted by --scst-vqa-weight, default 0.1)\n"
            "keys: model out data images features val_features train_split val_split steps batch accum warmup\n"
            "      lr min_lr weight_decay clip beta1 beta2 eps lora_rank lora_alpha gate_loss gate_lr_mult\n"
            "      max_caption_tokens\n"
            "      log_every eval_every save_every val_batches val_images threads seed limit stop_at resume\n"
            "      train_llm feat_dropout aug_features vqa_data vqa_images vqa_features vqa_split vqa_ratio\n"
            "      scst_samples scst_vqa_weight\n"
            "  --resume        continue from OUT.state (written with every checkpoint) exactly where it stopped\n"
            "  --train-llm 1   stage 1: train every LLM weight with the Q-Former instead of a LoRA (for an\n"
            "                  LLM trained from scratch, as the default model's recipe does)\n"
            "  --feat-dropout P  stages 1, 2: dropout on the cached image tokens while training (default 0)\n"
            "  --aug-features A,B,...  stages 1, 2: caches of the training images in other views\n"
            "                  (`rsmoe features --view`); each sample's tokens come from --features or\n"
            "                  one of these, picked by the seed and the sample's position\n"
            "  --gate-lr-mult F  stages 2, scst: the router's gate learns at lr x F (default 30: at 1 the\n"
            "                  gate barely reads the question; docs/training.md)\n"
            "  --stop-at N     stop after step N as an interruption would (continue with --resume)\n"
            "  --limit N       use only the first N training images\n"
            "  --vqa-data FILE stages 1, 2: mix the questions of a VQA data set (RSVQA layout, e.g. from\n"
            "                  `rsmoe questions`) into every batch: --vqa-ratio of it (default 0.25);\n"
            "                  their images' tokens come from --vqa-features (default: --features)\n"
            "Prints a progress line (step, loss, tokens/s, learning rate, ETA), validation loss and CIDEr-D,\n"
            "and writes OUT (the model) and OUT.state (parameters + optimiser) atomically every save_every\n"
            "steps and at the end.\n");
}

static void on_event(const rs_train_event *e, void *ud) {
    (void)ud;
    if (e->kind == 0) {
        printf("step %6lld/%lld  loss %.4f", (long long)e->step, (long long)e->steps, e->loss);
        if (e->reward >= 0) printf("  reward (CIDEr-D of the samples) %.2f", 100 * e->reward);
        printf("  grad-norm %.3f  lr %.3g  %.0f tok/s  elapsed %.0f s  ETA %.0f s\n", e->grad_norm, e->lr, e->tokens_per_s,
               e->elapsed_s, e->eta_s);
    }
    else if (e->kind == 1) {
        printf("step %6lld  validation loss %.4f", (long long)e->step, e->val_loss);
        if (e->val_cider >= 0) printf("  validation CIDEr-D %.2f", 100 * e->val_cider);
        printf("\n");
    } else
        printf("step %6lld  checkpoint %s\n", (long long)e->step, e->path);
    fflush(stdout);
}

int cmd_train(int argc, char **argv) {
    rs_train_config c = rs_train_default_config();
    /* the config file first, then flags over it */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            rsmoe_status st = rs_train_config_load(&c, argv[i + 1]);
            if (st) return cli_fail("config", st);
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) { i++; continue; }
        if (!strcmp(a, "--resume")) { c.resume = 1; continue; }
        if (strncmp(a, "--", 2) || i + 1 >= argc) { fprintf(stderr, "rsmoe train: unexpected argument '%s'\n", a); usage(stderr); return 2; }
        char key[64];
        snprintf(key, sizeof key, "%s", a + 2);
        for (char *p = key; *p; p++) if (*p == '-') *p = '_';
        if (rs_train_config_set(&c, key, argv[++i])) { fprintf(stderr, "rsmoe train: %s\n", rsmoe_last_error()); return 2; }
    }
    if (rs_train_config_check(&c)) { fprintf(stderr, "rsmoe train: %s\n", rsmoe_last_error()); return 2; }
    rsmoe_status st = rs_train_run(&c, on_event, NULL);
    if (st) {
        fprintf(stderr, "rsmoe train: %s\n", rsmoe_last_error());
        fprintf(stderr, "rsmoe train: stopped; the last checkpoint (%s, %s.state) is kept\n", c.out, c.out);
        return 1;
    }
    return 0;
}
