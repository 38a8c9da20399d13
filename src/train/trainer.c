/* trainer.c - see trainer.h and docs/training.md */
#include "train/trainer.h"

#include "data/aspects.h"
#include "data/dataset.h"
#include "eval/eval.h"
#include "formats/gguf.h"
#include "kernels/ops.h"
#include "model/generate.h"
#include "model/llm_load.h"
#include "model/model.h"
#include "rsmoe.h"
#include "train/features.h"
#include "train/llm_train.h"
#include "train/qformer_train.h"
#include "train/retrieval_index.h"
#include "train/router_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ configuration */
rs_train_config rs_train_default_config(void) {
    rs_train_config c;
    memset(&c, 0, sizeof c);
    strcpy(c.stage, "1");
    strcpy(c.train_split, "train");
    strcpy(c.val_split, "val");
    c.steps = 1000;
    c.batch = 8;
    c.accum = 1;
    c.warmup = 50;
    c.log_every = 10;
    c.eval_every = 200;
    c.save_every = 100;
    c.val_batches = 4;
    c.val_images = 50;
    c.max_caption_tokens = 48;
    c.lora_rank = 8;
    c.lora_alpha = 16;
    c.lr = 1e-3f;
    c.min_lr = 1e-4f;
    c.weight_decay = 0.05f;
    c.clip = 1.0f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.gate_loss = 0.1f;
    c.gate_lr_mult = 30.0f; /* docs/training.md "The router's learning rate" */
    c.vqa_ratio = 0.25f;
    c.scst_samples = 5;
    c.scst_vqa_weight = 0.1f;
    c.seed = 42;
    return c;
}

static rsmoe_status set_str(char *dst, size_t cap, const char *key, const char *v) {
    if (strlen(v) >= cap) return rs_error(RSMOE_ERR_INVALID_ARG, "train: %s is too long", key);
    strcpy(dst, v);
    return RSMOE_OK;
}

rsmoe_status rs_train_config_set(rs_train_config *c, const char *key, const char *v) {
    char *e = NULL;
#define STR(name) if (!strcmp(key, #name)) return set_str(c->name, sizeof c->name, key, v);
#define INT(name) if (!strcmp(key, #name)) { long x = strtol(v, &e, 10); if (!*v || *e || x < 0 || x > 100000000) goto bad; c->name = (int)x; return RSMOE_OK; }
#define FLT(name) if (!strcmp(key, #name)) { double x = strtod(v, &e); if (!*v || *e || !(x >= 0) || !isfinite(x)) goto bad; c->name = (float)x; return RSMOE_OK; }
    STR(stage) STR(model) STR(out) STR(data) STR(images) STR(features) STR(val_features) STR(train_split) STR(val_split)
    STR(vqa_data) STR(vqa_images) STR(vqa_features) STR(vqa_split) STR(aug_features)
    INT(steps) INT(batch) INT(accum) INT(warmup) INT(log_every) INT(eval_every) INT(save_every) INT(val_batches)
    INT(val_images) INT(threads) INT(max_caption_tokens) INT(lora_rank) INT(resume) INT(limit) INT(stop_at) INT(train_llm) INT(scst_samples)
    FLT(lr) FLT(min_lr) FLT(weight_decay) FLT(clip) FLT(beta1) FLT(beta2) FLT(eps) FLT(lora_alpha) FLT(gate_loss) FLT(gate_lr_mult) FLT(feat_dropout) FLT(vqa_ratio) FLT(scst_vqa_weight)
    if (!strcmp(key, "seed")) { unsigned long long x = strtoull(v, &e, 10); if (!*v || *e) goto bad; c->seed = x; return RSMOE_OK; }
#undef STR
#undef INT
#undef FLT
    return rs_error(RSMOE_ERR_INVALID_ARG, "train: unknown option '%s'", key);
bad:
    return rs_error(RSMOE_ERR_INVALID_ARG, "train: bad value '%s' for %s", v, key);
}

rsmoe_status rs_train_config_load(rs_train_config *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return rs_error(RSMOE_ERR_IO, "%s: cannot open the training config", path);
    char line[4096];
    int n = 0;
    rsmoe_status st = RSMOE_OK;
    while (!st && fgets(line, sizeof line, f)) {
        n++;
        char *h = strchr(line, '#');
        if (h) *h = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        size_t l = strlen(s);
        while (l && (s[l - 1] == '\n' || s[l - 1] == '\r' || s[l - 1] == ' ' || s[l - 1] == '\t')) s[--l] = 0;
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) { st = rs_error(RSMOE_ERR_FORMAT, "%s:%d: expected key = value", path, n); break; }
        *eq = 0;
        char *k = s, *v = eq + 1;
        size_t kl = strlen(k);
        while (kl && (k[kl - 1] == ' ' || k[kl - 1] == '\t')) k[--kl] = 0;
        while (*v == ' ' || *v == '\t') v++;
        if ((st = rs_train_config_set(c, k, v))) st = rs_error(st, "%s:%d: %s", path, n, rsmoe_last_error());
    }
    fclose(f);
    return st;
}

rsmoe_status rs_train_config_check(const rs_train_config *c) {
    if (strcmp(c->stage, "lm") && strcmp(c->stage, "1") && strcmp(c->stage, "2") && strcmp(c->stage, "scst"))
        return rs_error(RSMOE_ERR_INVALID_ARG, "train: stage must be lm, 1, 2 or scst (is '%s')", c->stage);
    if (!c->model[0]) return rs_error(RSMOE_ERR_INVALID_ARG, "train: no model (--model)");
    if (!c->out[0]) return rs_error(RSMOE_ERR_INVALID_ARG, "train: no output path (--out)");
    if (!c->data[0]) return rs_error(RSMOE_ERR_INVALID_ARG, "train: no data set (--data)");
    if (strcmp(c->stage, "lm") && !c->features[0])
        return rs_error(RSMOE_ERR_INVALID_ARG, "train: stage %s needs a feature cache of the training images (--features; "
                        "make it with `rsmoe features`)", c->stage);
    if (c->steps < 1 || c->batch < 1 || c->accum < 1 || c->max_caption_tokens < 1 || c->lora_rank < 1)
        return rs_error(RSMOE_ERR_INVALID_ARG, "train: steps, batch, accum, max_caption_tokens and lora_rank must be >= 1");
    if (!(c->lr > 0) || c->min_lr > c->lr || c->beta1 >= 1 || c->beta2 >= 1)
        return rs_error(RSMOE_ERR_INVALID_ARG, "train: need 0 < min_lr <= lr and betas < 1");
    if (!strcmp(c->out, c->model)) return rs_error(RSMOE_ERR_INVALID_ARG, "train: --out must differ from --model");
    if (c->vqa_data[0] && !(c->vqa_ratio > 0 && c->vqa_ratio <= 1))
        return rs_error(RSMOE_ERR_INVALID_ARG, "train: vqa_ratio must be in (0, 1] (is %g)", (double)c->vqa_ratio);
    if (!(c->feat_dropout >= 0 && c->feat_dropout < 1))
        return rs_error(RSMOE_ERR_INVALID_ARG, "train: feat_dropout must be in [0, 1) (is %g)", (double)c->feat_dropout);
    if (c->aug_features[0] && !strcmp(c->stage, "lm"))
        return rs_error(RSMOE_ERR_INVALID_ARG, "train: aug_features is for stages 1 and 2 (stage lm reads no image)");
    if (!strcmp(c->stage, "scst")) {
        /* the captions are sampled from the model as it sees the image: no other view, no
         * dropout (the sample and its gradient must come from the same policy); captions only */
        if (c->scst_samples < 2) return rs_error(RSMOE_ERR_INVALID_ARG, "train: scst_samples must be >= 2 (the baseline is the other samples' mean)");
        if (c->feat_dropout > 0 || c->aug_features[0])
            return rs_error(RSMOE_ERR_INVALID_ARG, "train: stage scst takes no feat_dropout or aug_features (it samples captions "
                            "of the training images as the model sees them)");
    }
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ parameter groups */
typedef struct {
    char name[64];
    float *p, *g, *m, *v;
    int64_t n;
    bool decay;
    float lr_mult;        /* this group's learning rate = the schedule's × lr_mult */
} group;

typedef struct {
    group *g;
    int n, cap;
} groups;

static rsmoe_status add_group(groups *gs, const char *name, float *p, float *g, int64_t n, bool decay) {
    if (gs->n == gs->cap) {
        int nc = gs->cap ? 2 * gs->cap : 64;
        group *ng = realloc(gs->g, sizeof(group) * (size_t)nc);
        if (!ng) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
        gs->g = ng;
        gs->cap = nc;
    }
    group *x = &gs->g[gs->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->p = p;
    x->g = g;
    x->n = n;
    x->decay = decay;
    x->lr_mult = 1.0f;
    x->m = calloc((size_t)n, sizeof(float));
    x->v = calloc((size_t)n, sizeof(float));
    if (!x->m || !x->v) return rs_error(RSMOE_ERR_NOMEM, "out of memory for the optimiser");
    return RSMOE_OK;
}

static void free_groups(groups *gs) {
    for (int i = 0; i < gs->n; i++) { free(gs->g[i].m); free(gs->g[i].v); }
    free(gs->g);
    memset(gs, 0, sizeof *gs);
}

/* ------------------------------------------------------------------ samples */
#define RS_MAX_AUG 15 /* caches of other views (aug_features) */
typedef struct {
    int item;       /* data-set item (image) */
    int feat;       /* feature-cache index, -1 for stage lm */
    const rs_features *fc; /* the cache feat indexes */
    rs_features *const *aug; /* the same images in other views (index feat in each too) */
    int n_aug;
    int expert;     /* stage 2: the caption's dominant aspect; the expert of a question's type */
    int32_t *ids;   /* target tokens (no BOS/EOS): the caption, or the answer */
    int n;
    /* questions only (NULL for captions, which use the model's caption instruction and the
     * expert prompts): the Q-Former text and the LLM prompt (BOS + question + vqa_suffix) */
    int32_t *qids, *pids;
    int nq, np;
    const float *route; /* stage 2: routing target over the experts */
    bool no_eos;    /* stage scst: a sampled caption cut at max_caption_tokens (no end token to score) */
} sample;

typedef struct {
    rs_dataset ds;
    rs_features *feat;
    rs_features *aug[RS_MAX_AUG]; /* other views of feat's images, in feat's order */
    int n_aug;
    sample *s;
    int n;
    float (*route)[RS_MAX_EXPERTS]; /* per item (captions) or per question: routing target */
} dataset_t;

static void free_data(dataset_t *d) {
    for (int i = 0; i < d->n; i++) { free(d->s[i].ids); free(d->s[i].qids); free(d->s[i].pids); }
    free(d->s);
    free(d->route);
    rs_features_close(d->feat);
    for (int i = 0; i < d->n_aug; i++) rs_features_close(d->aug[i]);
    rs_dataset_free(&d->ds);
    memset(d, 0, sizeof *d);
}

/* the image folder: the one given, else images/ beside the data set file */
static void image_root(const char *given, const char *data, char *root, size_t cap) {
    if (given[0]) snprintf(root, cap, "%s", given);
    else {
        const char *slash = strrchr(data, '/');
        snprintf(root, cap, "%.*simages", slash ? (int)(slash - data + 1) : 0, data);
    }
}

/* Opens the caches of aug_features (comma-separated) into d->aug: each must come from the
 * model's encoder and hold d->feat's images in the same order (built from the same data set
 * and split with another --view). */
static rsmoe_status open_aug(const rs_train_config *c, const rs_model *m, const char *base, dataset_t *d) {
    char list[sizeof c->aug_features];
    snprintf(list, sizeof list, "%s", c->aug_features);
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (!*p) continue;
        if (d->n_aug == RS_MAX_AUG)
            return rs_error(RSMOE_ERR_INVALID_ARG, "train: at most %d aug_features caches", RS_MAX_AUG);
        rsmoe_status st = rs_features_open(p, m, &d->aug[d->n_aug]);
        if (st) return st;
        const rs_features *a = d->aug[d->n_aug++];
        int n = rs_features_count(d->feat);
        bool same = rs_features_count(a) == n;
        for (int i = 0; same && i < n; i++) same = !strcmp(rs_features_name(a, i), rs_features_name(d->feat, i));
        if (!same)
            return rs_error(RSMOE_ERR_FORMAT, "%s: not the images of %s in the same order (build both from the same data "
                            "set and split, with another --view)", p, base);
        if (rs_features_view(a) == rs_features_view(d->feat))
            return rs_error(RSMOE_ERR_FORMAT, "%s: the same view (%s) as %s: an augmentation cache holds another view", p,
                            rs_image_view_name(rs_features_view(a)), base);
    }
    return RSMOE_OK;
}

static rsmoe_status load_data(const rs_train_config *c, const rs_model *m, const char *split, const char *features, bool need_feat,
                              bool aug, int limit, dataset_t *d) {
    memset(d, 0, sizeof *d);
    char root[1200];
    image_root(c->images, c->data, root, sizeof root);
    rs_dataset_opts o = {.image_root = root, .split = split};
    rsmoe_status st = rs_dataset_load(c->data, RS_DS_AUTO, &o, &d->ds);
    if (st) return st;
    if (need_feat && (st = rs_features_open(features, m, &d->feat))) { free_data(d); return st; }
    if (need_feat && aug && (st = open_aug(c, m, features, d))) { free_data(d); return st; }
    int64_t ncap = rs_dataset_ncaptions(&d->ds);
    d->s = calloc((size_t)(ncap > 0 ? ncap : 1), sizeof(sample));
    d->route = calloc((size_t)(d->ds.nitems > 0 ? d->ds.nitems : 1), sizeof *d->route);
    if (!d->s || !d->route) { free_data(d); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
    int nitems = limit > 0 && limit < d->ds.nitems ? limit : d->ds.nitems, no_feat = 0;
    int32_t *buf = malloc(sizeof(int32_t) * 4096);
    if (!buf) { free_data(d); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < nitems; i++) {
        const rs_ds_item *it = &d->ds.items[i];
        int fi = -1;
        if (need_feat) {
            fi = rs_features_find(d->feat, it->filename);
            if (fi < 0) { no_feat++; continue; }
        }
        int counts[RS_MAX_EXPERTS] = {0}, total = 0;
        for (int k = 0; k < it->ncap; k++) {
            int n = 0;
            if (rs_tokenizer_encode(m->tok, it->captions[k], false, buf, 4096, &n) != RSMOE_OK || n == 0) continue;
            if (n > c->max_caption_tokens) n = c->max_caption_tokens;
            sample *s = &d->s[d->n];
            s->item = i;
            s->feat = fi;
            s->fc = d->feat;
            s->aug = d->aug;
            s->n_aug = d->n_aug;
            s->route = d->route[i];
            s->expert = (int)rs_aspect_dominant(it->captions[k]);
            if (m->moe.n_experts > 0) s->expert %= m->moe.n_experts;
            s->ids = malloc(sizeof(int32_t) * (size_t)n);
            if (!s->ids) { free(buf); free_data(d); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
            memcpy(s->ids, buf, sizeof(int32_t) * (size_t)n);
            s->n = n;
            d->n++;
            counts[s->expert]++;
            total++;
        }
        for (int e = 0; e < RS_MAX_EXPERTS; e++) d->route[i][e] = total ? (float)counts[e] / total : 0;
    }
    free(buf);
    if (no_feat && need_feat && no_feat == nitems) {
        free_data(d);
        return rs_error(RSMOE_ERR_FORMAT, "%s: none of the %d images of split '%s' is in the feature cache %s", c->data, nitems,
                        split, features);
    }
    if (d->n == 0) { free_data(d); return rs_error(RSMOE_ERR_FORMAT, "%s: no caption in split '%s'", c->data, split); }
    return RSMOE_OK;
}

/* The expert a question trains in stage 2 (its routing target; the model's own router picks
 * at inference): the aspect of its type (rs_aspect_for_qtype, method.md §3), theme for a type
 * it does not know; modulo the experts. */
static int vqa_expert(const rs_ds_qa *q, int K) {
    int e = rs_aspect_for_qtype(q->type);
    if (e < 0) e = RS_ASPECT_THEME;
    return K > 0 ? e % K : 0;
}

/* The questions of vqa_data (split vqa_split, else train_split) as samples: the question is the
 * Q-Former's text, "question vqa_suffix" the LLM prompt, the answer the target. */
static rsmoe_status load_vqa(const rs_train_config *c, const rs_model *m, dataset_t *d, int *max_q, int *max_head) {
    memset(d, 0, sizeof *d);
    char root[1200];
    image_root(c->vqa_images, c->vqa_data, root, sizeof root);
    rs_dataset_opts o = {.image_root = root, .split = c->vqa_split[0] ? c->vqa_split : c->train_split};
    rsmoe_status st = rs_dataset_load(c->vqa_data, RS_DS_AUTO, &o, &d->ds);
    if (st) return st;
    const char *fp = c->vqa_features[0] ? c->vqa_features : c->features;
    if ((st = rs_features_open(fp, m, &d->feat))) { free_data(d); return st; }
    /* questions on the training images (no cache of their own) get the same other views */
    if (!c->vqa_features[0] && (st = open_aug(c, m, fp, d))) { free_data(d); return st; }
    int nqa = d->ds.nqa;
    d->s = calloc((size_t)(nqa > 0 ? nqa : 1), sizeof(sample));
    d->route = calloc((size_t)(nqa > 0 ? nqa : 1), sizeof *d->route);
    if (!d->s || !d->route) { free_data(d); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
    int32_t q[256], p[256], a[256];
    int no_feat = 0, too_long = 0;
    *max_q = *max_head = 0;
    for (int i = 0; i < nqa; i++) {
        const rs_ds_qa *qa = &d->ds.qa[i];
        const rs_ds_item *it = &d->ds.items[qa->item];
        int fi = rs_features_find(d->feat, it->filename);
        if (fi < 0) { no_feat++; continue; }
        char prompt[2048], text[1024];
        int ql;
        rs_model_question(m, qa->question, &ql, prompt, sizeof prompt);
        snprintf(text, sizeof text, "%.*s", ql, qa->question);
        int nq = 0, np = 0, na = 0;
        if (rs_tokenizer_encode(m->tok, text, false, q, 256, &nq) || rs_tokenizer_encode(m->tok, prompt, true, p, 256, &np) ||
            rs_tokenizer_encode(m->tok, qa->answer, false, a, 256, &na) || nq == 0 || na == 0 || nq > m->qf.c.max_pos) {
            too_long++;
            continue;
        }
        if (na > c->max_caption_tokens) na = c->max_caption_tokens;
        sample *s = &d->s[d->n];
        s->item = qa->item;
        s->feat = fi;
        s->fc = d->feat;
        s->aug = d->aug;
        s->n_aug = d->n_aug;
        s->expert = vqa_expert(qa, m->moe.n_experts);
        d->route[d->n][s->expert] = 1.0f;
        s->route = d->route[d->n];
        s->ids = malloc(sizeof(int32_t) * (size_t)na);
        s->qids = malloc(sizeof(int32_t) * (size_t)nq);
        s->pids = malloc(sizeof(int32_t) * (size_t)np);
        if (!s->ids || !s->qids || !s->pids) { d->n++; free_data(d); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
        memcpy(s->ids, a, sizeof(int32_t) * (size_t)na);
        memcpy(s->qids, q, sizeof(int32_t) * (size_t)nq);
        memcpy(s->pids, p, sizeof(int32_t) * (size_t)np);
        s->n = na;
        s->nq = nq;
        s->np = np;
        if (nq > *max_q) *max_q = nq;
        if (np + na > *max_head) *max_head = np + na;
        d->n++;
    }
    if (d->n == 0) {
        int n = d->ds.nqa;
        free_data(d);
        return rs_error(RSMOE_ERR_FORMAT, "%s: no usable question in split '%s' (%d questions; %d without features in %s, "
                        "%d empty or longer than the Q-Former's %d positions)", c->vqa_data, o.split, n, no_feat, fp, too_long,
                        m->qf.c.max_pos);
    }
    return RSMOE_OK;
}

/* sample index j of epoch e: a seeded permutation (Fisher-Yates), recomputed per epoch */
typedef struct {
    int *perm, n, epoch;
    uint64_t seed;
} order_t;

static int order_get(order_t *o, int64_t pos) {
    int e = (int)(pos / o->n);
    if (e != o->epoch) {
        for (int i = 0; i < o->n; i++) o->perm[i] = i;
        rs_rng r;
        rs_rng_seed(&r, o->seed * 1000003ull + (uint64_t)e);
        for (int i = o->n - 1; i > 0; i--) {
            int j = (int)(rs_rng_u64(&r) % (uint64_t)(i + 1));
            int t = o->perm[i]; o->perm[i] = o->perm[j]; o->perm[j] = t;
        }
        o->epoch = e;
    }
    return o->perm[pos % o->n];
}

/* ------------------------------------------------------------------ the trainer */
typedef struct {
    const rs_train_config *c;
    rs_model *m;
    rs_pool *pool;
    int stage;                  /* 0 = lm, 1, 2, 3 = scst (stages 2 and 3 train the experts and the router) */
    bool full;                  /* every LLM weight trained (stage lm; stage 1 with train_llm) */
    int K, Q, M, D, V;
    rs_llm_weights lw;          /* weights the LLM trains/runs with */
    rs_tparams llm_set;         /* stage lm: mutable LLM weights */
    rs_llm_grads llm_grads;     /* stage lm */
    rs_qformer_params qfp;      /* stage 1 */
    rs_qformer_train *qft;
    rs_lora_train lora[RS_MAX_EXPERTS]; /* stage 1: [0]; stage 2: one per expert */
    int n_lora;
    rs_router_params rp;        /* stage 2 */
    rs_router_train *rt;
    rs_llm_train *lt;
    groups gs;
    int32_t instr[256], prompt[RS_MAX_EXPERTS][256];
    int n_instr, n_prompt[RS_MAX_EXPERTS];
    int max_q;       /* longest Q-Former text: the caption instruction or a question */
    int vqa_max_q;   /* longest question (0: no questions); set before trainer_init */
    int n_vqa;       /* questions per micro-batch (0: none); set before trainer_init */
    int max_T;
    /* batch buffers */
    float *img, *prefix, *d_prefix, *emb, *d_emb, *instr_pool, *gates, *soft, *d_soft, *route_t, *d_logits;
    int32_t *targets, *len, *qids, *qlen, *tok_ids;
    int *adapter;
    const rs_lora_set *adapters[RS_MAX_EXPERTS];
    rs_lora_grad *lgrads[RS_MAX_EXPERTS];
    float *qsc, *ie; /* stage 2: frozen Q-Former scratch; instruction embeddings */
    int64_t sample0; /* position of the micro-batch's first sample in the run (seeds feat_dropout) */
    const float *seq_w; /* per-sequence gradient factors of the next micro_batch (scst), NULL: none */
    /* stage scst, each sized for a micro-batch's sequences (batch × K × scst_samples + questions) */
    rs_llm_state *gen;  /* the sampling's KV cache: a slot per sequence */
    rs_ngram_df df;     /* the training captions' document frequencies (CIDEr-D reward) */
    sample *ss;         /* the sampled captions as training samples */
    const sample **sp;
    int32_t *sids;      /* [sequences, max_caption_tokens + 1] their tokens */
    rs_gen_stream *streams;
    rs_gen_result *gres;
    float *adv;         /* advantages, then the sequences' gradient factors */
} trainer;

/* Dropout on one sample's cached encoder tokens: a pure function of the seed and the sample's
 * position in the run, so that --resume repeats it exactly. */
static void feature_dropout(float *x, size_t n, float p, uint64_t seed, int64_t pos) {
    rs_rng r;
    rs_rng_seed(&r, seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(pos + 1)) ^ 0xfeedULL);
    float keep = 1.0f / (1.0f - p);
    uint64_t thr = (uint64_t)((double)p * 4294967296.0);
    for (size_t i = 0; i < n; i += 2) {
        uint64_t u = rs_rng_u64(&r);
        x[i] = (u & 0xffffffffu) < thr ? 0.0f : x[i] * keep;
        if (i + 1 < n) x[i + 1] = (u >> 32) < thr ? 0.0f : x[i + 1] * keep;
    }
}

/* The cache a training sample's image tokens come from: its own or one of the other views,
 * uniformly, as a function of the seed and the sample's position in the run (so a resumed run
 * picks the same) */
static const rs_features *sample_view(const sample *s, uint64_t seed, int64_t pos) {
    if (s->n_aug < 1) return s->fc;
    uint64_t h = (seed ^ 0x5bd1e9955bd1e995ULL) + 0x9e3779b97f4a7c15ULL * (uint64_t)(pos + 1);
    h ^= h >> 31; h *= 0xbf58476d1ce4e5b9ULL; h ^= h >> 27; h *= 0x94d049bb133111ebULL; h ^= h >> 31;
    int v = (int)(h % (uint64_t)(s->n_aug + 1));
    return v == 0 ? s->fc : s->aug[v - 1];
}

static void trainer_free(trainer *t) {
    rs_llm_train_free(t->lt);
    rs_qformer_train_free(t->qft);
    rs_router_train_free(t->rt);
    for (int i = 0; i < t->n_lora; i++) rs_lora_train_free(&t->lora[i]);
    if (t->stage >= 2) rs_router_params_free(&t->rp);
    rs_llm_state_free(t->gen);
    rs_ngram_df_free(&t->df);
    free(t->ss); free(t->sp); free(t->sids); free(t->streams); free(t->gres); free(t->adv);
    if (t->stage == 1) rs_qformer_params_free(&t->qfp);
    if (t->full) { rs_llm_grads_free(&t->llm_grads); rs_tparams_free(&t->llm_set); rs_llm_unbind(&t->lw); }
    free_groups(&t->gs);
    free(t->img); free(t->prefix); free(t->d_prefix); free(t->emb); free(t->d_emb); free(t->instr_pool); free(t->gates);
    free(t->soft); free(t->d_soft); free(t->route_t); free(t->d_logits); free(t->targets); free(t->len); free(t->qids);
    free(t->qlen); free(t->tok_ids); free(t->adapter); free(t->qsc); free(t->ie);
    rs_pool_free(t->pool);
    rs_model_free(t->m);
}

/* the LLM weights as mutable f32 copies (stage lm) */
static rsmoe_status bind_mutable_llm(trainer *t) {
    const rs_llm_weights *w = &t->m->llm;
    int L = w->c.n_layers, n = 0;
    const char **names = malloc(sizeof(char *) * (size_t)(3 + 9 * L));
    if (!names) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    names[n++] = w->tok_embd->name;
    names[n++] = w->out_norm->name;
    if (!w->c.tied) names[n++] = w->output->name;
    for (int l = 0; l < L; l++) {
        const rs_llm_layer *y = &w->layers[l];
        const rs_tensor *ts[9] = {y->attn_norm, y->wq, y->wk, y->wv, y->wo, y->ffn_norm, y->w_gate, y->w_up, y->w_down};
        for (int k = 0; k < 9; k++) names[n++] = ts[k]->name;
    }
    rsmoe_status st = rs_tparams_from_gguf(t->m->g, names, n, &t->llm_set);
    free(names);
    if (st) return st;
    t->lw = *w;
    t->lw.layers = malloc(sizeof(rs_llm_layer) * (size_t)L);
    if (!t->lw.layers) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    int i = 0;
    t->lw.tok_embd = &t->llm_set.p[i++].tensor;
    t->lw.out_norm = &t->llm_set.p[i++].tensor;
    t->lw.output = w->c.tied ? t->lw.tok_embd : &t->llm_set.p[i++].tensor;
    for (int l = 0; l < L; l++) {
        rs_llm_layer *y = &t->lw.layers[l];
        const rs_tensor **ts[9] = {&y->attn_norm, &y->wq, &y->wk, &y->wv, &y->wo, &y->ffn_norm, &y->w_gate, &y->w_up, &y->w_down};
        for (int k = 0; k < 9; k++) *ts[k] = &t->llm_set.p[i++].tensor;
    }
    return RSMOE_OK;
}

/* stage scst: expert e's adapter as stage II left it (f32 tensors expert.E.blk.L.TARGET.lora_a/b) */
static rsmoe_status load_expert(trainer *t, int e) {
    rs_lora_train *lt = &t->lora[e];
    for (int l = 0; l < lt->n_layers; l++)
        for (int k = 0; k < RS_LT_COUNT; k++) {
            if (!lt->set.A[l][k]) continue;
            for (int ab = 0; ab < 2; ab++) {
                char nm[RS_NAME_MAX];
                snprintf(nm, sizeof nm, "expert.%d.blk.%d.%s.lora_%c", e, l, rs_lora_target_names[k], ab ? 'b' : 'a');
                const rs_tensor *x = rs_gguf_find_tensor(t->m->g, nm);
                int64_t n = (int64_t)lt->rank * (ab ? lt->out[k] : lt->in[k]);
                if (!x || x->type != RS_F32 || rs_tensor_nelements(x) != n)
                    return rs_error(RSMOE_ERR_FORMAT, "%s: stage scst starts from a stage-II model with f32 expert adapters; "
                                    "tensor %s is %s", t->c->model, nm, !x ? "missing" : x->type != RS_F32 ? "not f32" : "of another size");
                memcpy(ab ? (float *)lt->set.B[l][k] : (float *)lt->set.A[l][k], x->data, sizeof(float) * (size_t)n);
            }
        }
    return RSMOE_OK;
}

static rsmoe_status trainer_init(trainer *t, const rs_train_config *c, int max_T) {
    rsmoe_status st;
    t->c = c;
    t->stage = !strcmp(c->stage, "lm") ? 0 : !strcmp(c->stage, "1") ? 1 : !strcmp(c->stage, "2") ? 2 : 3;
    t->pool = rs_pool_new(c->threads > 0 ? c->threads : rs_default_threads());
    if (!t->pool) return RSMOE_ERR_NOMEM;
    const rs_model *m = t->m;
    t->D = m->llm.c.dim;
    t->V = m->llm.c.vocab;
    t->Q = m->qf.c.n_query;
    t->K = m->moe.n_experts;
    t->M = t->stage >= 2 ? m->moe.n_soft : 0;
    if (t->stage >= 2 && t->K < 1) return rs_error(RSMOE_ERR_INVALID_ARG, "train: stage %s needs a model with experts", c->stage);
    t->max_T = max_T;
    int64_t Bl = t->stage == 3 ? (int64_t)c->batch * t->K * c->scst_samples + t->n_vqa : c->batch;
    if (Bl > 4096)
        return rs_error(RSMOE_ERR_INVALID_ARG, "train: stage scst: batch × experts × scst_samples (+ questions) = %lld sequences "
                        "(at most 4096)", (long long)Bl);
    int B = (int)Bl, D = t->D;
    t->lw = m->llm;
    /* instruction and prompts */
    if ((st = rs_tokenizer_encode(m->tok, m->instr_caption, false, t->instr, 256, &t->n_instr))) return st;
    t->max_q = t->n_instr > t->vqa_max_q ? t->n_instr : t->vqa_max_q;
    for (int e = 0; e < (t->stage >= 2 ? t->K : 1); e++) {
        const char *p = t->stage >= 2 ? m->moe.prompts[e] : m->instr_caption;
        if ((st = rs_tokenizer_encode(m->tok, p, true, t->prompt[e], 256, &t->n_prompt[e]))) return st;
    }
    t->full = t->stage == 0 || (t->stage == 1 && c->train_llm);
    if (t->full) {
        if ((st = bind_mutable_llm(t)) || (st = rs_llm_grads_new(&t->lw.c, &t->llm_grads))) return st;
        float *ps[4 + 9 * RS_LLM_MAX_LAYERS], *gs[4 + 9 * RS_LLM_MAX_LAYERS];
        int64_t sz[4 + 9 * RS_LLM_MAX_LAYERS];
        int n = rs_llm_param_list(&t->lw, &t->llm_grads, ps, gs, sz, 4 + 9 * RS_LLM_MAX_LAYERS);
        if (n < 0) return RSMOE_ERR_INTERNAL;
        for (int i = 0; i < n; i++) {
            char nm[32];
            snprintf(nm, sizeof nm, "llm.%d", i);
            /* no weight decay on the norm vectors (their rows are one) */
            bool decay = true;
            for (int k = 0; k < t->llm_set.n; k++)
                if (t->llm_set.p[k].param == ps[i]) decay = t->llm_set.p[k].tensor.ndim > 1 && t->llm_set.p[k].tensor.ne[1] > 1;
            if ((st = add_group(&t->gs, nm, ps[i], gs[i], sz[i], decay))) return st;
        }
    }
    if (t->stage == 1) {
        if ((st = rs_qformer_params_new(m->g, m->enc_width, D, &t->qfp))) return st;
        if ((st = rs_qformer_train_new(&t->qfp.c, B, t->max_q, m->enc_tokens, &t->qft))) return st;
        /* one group per tensor: weight decay on the matrices only (not on the LayerNorm
         * vectors and biases, which decay would pull towards zero) */
        for (int k = 0; k < t->qfp.set.n; k++) {
            const rs_tparam *p = &t->qfp.set.p[k];
            char nm[64];
            snprintf(nm, sizeof nm, "qformer.%d", k);
            if ((st = add_group(&t->gs, nm, p->param, p->grad, p->n, p->tensor.ndim > 1 && p->tensor.ne[1] > 1))) return st;
        }
        t->n_lora = t->full ? 0 : 1;
    } else if (t->stage >= 2) {
        if ((st = rs_router_params_new(m->g, &t->rp))) return st;
        if ((st = rs_router_train_new(&t->rp, B, &t->rt))) return st;
        /* the gate (router.gate.weight, .bias: the set's first two tensors, contiguous) in a group
         * of its own with its learning-rate factor, the soft-prompt network in another */
        const int64_t ng = t->rp.set.p[0].n + t->rp.set.p[1].n;
        if ((st = add_group(&t->gs, "router.gate", t->rp.set.params, t->rp.set.grads, ng, true))) return st;
        t->gs.g[t->gs.n - 1].lr_mult = c->gate_lr_mult;
        if (t->rp.set.total > ng &&
            (st = add_group(&t->gs, "router.soft", t->rp.set.params + ng, t->rp.set.grads + ng, t->rp.set.total - ng, true)))
            return st;
        t->n_lora = t->K;
    }
    rs_rng rng;
    rs_rng_seed(&rng, c->seed ^ 0x10e4);
    for (int i = 0; i < t->n_lora; i++) {
        int r = t->stage >= 2 ? m->moe.lora_rank : c->lora_rank;
        float a = t->stage >= 2 ? m->moe.lora_alpha : c->lora_alpha;
        unsigned targets = t->stage >= 2 && m->moe.lora_targets ? m->moe.lora_targets : (1u << RS_LT_COUNT) - 1;
        if ((st = rs_lora_train_new(&m->llm.c, r, a, targets, &t->lora[i]))) return st;
        rs_lora_train_init(&t->lora[i], &rng, 0.0f);
        if (t->stage == 3 && (st = load_expert(t, i))) return st;
        char nm[32];
        snprintf(nm, sizeof nm, "lora.%d", i);
        if ((st = add_group(&t->gs, nm, t->lora[i].params, t->lora[i].grads, t->lora[i].n, true))) return st;
        t->adapters[i] = &t->lora[i].set;
        t->lgrads[i] = &t->lora[i].grad;
    }
    int max_rank = t->n_lora ? t->lora[0].rank : 0;
    if ((st = rs_llm_train_new(&t->lw.c, B, max_T, max_rank, &t->lt))) return st;
    size_t BT = (size_t)B * max_T;
    t->img = malloc(sizeof(float) * (size_t)B * m->enc_tokens * m->enc_width);
    t->prefix = malloc(sizeof(float) * (size_t)B * t->Q * D);
    t->d_prefix = malloc(sizeof(float) * (size_t)B * t->Q * D);
    t->emb = malloc(sizeof(float) * BT * D);
    t->d_emb = malloc(sizeof(float) * BT * D);
    t->instr_pool = malloc(sizeof(float) * (size_t)B * D);
    t->gates = malloc(sizeof(float) * (size_t)B * (t->K + 1));
    t->soft = malloc(sizeof(float) * (size_t)B * (t->K + 1) * (t->M + 1) * D);
    t->d_soft = malloc(sizeof(float) * (size_t)B * (t->K + 1) * (t->M + 1) * D);
    t->route_t = malloc(sizeof(float) * (size_t)B * (t->K + 1));
    t->d_logits = malloc(sizeof(float) * (size_t)B * (t->K + 1));
    t->targets = malloc(sizeof(int32_t) * BT);
    t->len = malloc(sizeof(int32_t) * (size_t)B);
    t->qids = malloc(sizeof(int32_t) * (size_t)B * (t->max_q + 1));
    t->qlen = malloc(sizeof(int32_t) * (size_t)B);
    t->tok_ids = malloc(sizeof(int32_t) * BT);
    t->adapter = malloc(sizeof(int) * (size_t)B);
    if (t->stage >= 2) {
        t->qsc = malloc(sizeof(float) * rs_qformer_scratch_floats(&m->qf.c, m->enc_tokens, t->max_q, rs_pool_size(t->pool)));
        t->ie = malloc(sizeof(float) * 256 * (size_t)D);
        if (!t->qsc || !t->ie) return rs_error(RSMOE_ERR_NOMEM, "train: out of memory");
    }
    if (t->stage == 3) {
        /* sampling: one cache slot per sampled caption; the prefill runs every stream's head */
        int max_new = c->max_caption_tokens + 1, head = 0;
        for (int e = 0; e < t->K; e++)
            if (t->Q + t->M + t->n_prompt[e] > head) head = t->Q + t->M + t->n_prompt[e];
        if ((st = rs_llm_state_new(&m->llm.c, max_T, B, B * head > B ? B * head : B, B, t->lora[0].rank, &t->gen))) return st;
        t->ss = calloc((size_t)B, sizeof *t->ss);
        t->sp = calloc((size_t)B, sizeof *t->sp);
        t->sids = malloc(sizeof(int32_t) * (size_t)B * (size_t)max_new);
        t->streams = calloc((size_t)B, sizeof *t->streams);
        t->gres = calloc((size_t)B, sizeof *t->gres);
        t->adv = malloc(sizeof(float) * (size_t)B);
        if (!t->ss || !t->sp || !t->sids || !t->streams || !t->gres || !t->adv) return rs_error(RSMOE_ERR_NOMEM, "train: out of memory");
    }
    if (!t->img || !t->prefix || !t->d_prefix || !t->emb || !t->d_emb || !t->instr_pool || !t->gates || !t->soft || !t->d_soft ||
        !t->route_t || !t->d_logits || !t->targets || !t->len || !t->qids || !t->qlen || !t->tok_ids || !t->adapter)
        return rs_error(RSMOE_ERR_NOMEM, "train: out of memory for the batch buffers");
    return RSMOE_OK;
}

/* a sample's Q-Former text and LLM prompt (BOS + prompt tokens) */
static const int32_t *sample_text(const trainer *t, const sample *s, int *n) {
    *n = s->qids ? s->nq : t->n_instr;
    return s->qids ? s->qids : t->instr;
}
static const int32_t *sample_prompt(const trainer *t, const sample *s, int *n) {
    int k = t->stage >= 2 ? s->expert : 0;
    *n = s->pids ? s->np : t->n_prompt[k];
    return s->pids ? s->pids : t->prompt[k];
}

/* rows of a sample before its target: prefix (+ soft prompts) + BOS/prompt tokens */
static int head_rows(const trainer *t, const sample *s) {
    if (t->stage == 0) return rs_tokenizer_bos(t->m->tok) >= 0 ? 1 : 0;
    int np;
    sample_prompt(t, s, &np);
    return t->Q + t->M + np;
}

/* A micro-batch's inputs: the image tokens (train: in the sample's view, with dropout), the
 * visual prefix, the router's gates and soft prompts (stages 2, scst), and per sequence its
 * input embeddings t->emb [B, *T, D], targets, lengths and token ids. */
static rsmoe_status build_inputs(trainer *t, const sample *const *S, int B, bool train, int *T_out) {
    const rs_model *m = t->m;
    int D = t->D, Q = t->Q, M = t->M, T = 0;
    rsmoe_status st;
    size_t per_img = (size_t)m->enc_tokens * m->enc_width;
    int eos = rs_tokenizer_eos(m->tok), bos = rs_tokenizer_bos(m->tok);
    for (int b = 0; b < B; b++) {
        const sample *s = S[b];
        int rows = head_rows(t, s) + s->n + (eos >= 0 && !s->no_eos ? 1 : 0);
        if (rows > T) T = rows;
    }
    if (T > t->max_T) return rs_error(RSMOE_ERR_INTERNAL, "train: sequence of %d rows over the %d planned", T, t->max_T);
    /* visual prefix */
    int n_text = 0;
    if (t->stage >= 1) {
        for (int b = 0; b < B; b++) {
            int nq;
            sample_text(t, S[b], &nq);
            if (nq > n_text) n_text = nq;
        }
        for (int b = 0; b < B; b++) {
            rs_features_get(train ? sample_view(S[b], t->c->seed, t->sample0 + b) : S[b]->fc, S[b]->feat, t->img + per_img * b);
            if (train && t->c->feat_dropout > 0)
                feature_dropout(t->img + per_img * b, per_img, t->c->feat_dropout, t->c->seed, t->sample0 + b);
            int nq;
            const int32_t *q = sample_text(t, S[b], &nq);
            memcpy(t->qids + (size_t)b * n_text, q, sizeof(int32_t) * (size_t)nq);
            t->qlen[b] = nq;
        }
        if (t->stage == 1) {
            rs_qformer_batch qb = {.B = B, .n_text = n_text, .n_img = m->enc_tokens, .img = t->img, .ids = t->qids, .len = t->qlen};
            if ((st = rs_qformer_train_forward(t->qft, &t->qfp, &qb, t->prefix, NULL, t->pool))) return st;
        } else {
            /* frozen Q-Former: the inference forward, one image at a time */
            float *qsc = t->qsc;
            for (int b = 0; b < B; b++) {
                /* stage scst: a sampled caption of the image before it (same tokens, no dropout,
                 * caption instruction) has the same prefix */
                if (t->stage == 3 && b > 0 && S[b]->item == S[b - 1]->item && S[b]->fc == S[b - 1]->fc && !S[b]->qids &&
                    !S[b - 1]->qids) {
                    memcpy(t->prefix + (size_t)b * Q * D, t->prefix + (size_t)(b - 1) * Q * D, sizeof(float) * (size_t)Q * D);
                    continue;
                }
                if ((st = rs_qformer_forward(&m->qf, t->img + per_img * b, m->enc_tokens, t->qids + (size_t)b * n_text, t->qlen[b],
                                             t->prefix + (size_t)b * Q * D, NULL, qsc, t->pool)))
                    return st;
            }
        }
    }
    if (t->stage >= 2) {
        /* router: pooled instruction embedding, gates, soft prompts */
        float *ie = t->ie;
        for (int b = 0; b < B; b++) {
            int nq = t->qlen[b];
            if ((st = rs_llm_embed(&t->lw, t->qids + (size_t)b * n_text, nq, ie))) return st;
            float *p = t->instr_pool + (size_t)b * D;
            memset(p, 0, sizeof(float) * D);
            for (int i = 0; i < nq; i++) rs_vec_acc(p, ie + (size_t)i * D, D);
            rs_vec_scale(p, 1.0f / (float)(nq ? nq : 1), D);
        }
        if ((st = rs_router_train_forward(t->rt, &t->rp, B, t->instr_pool, t->prefix, Q, t->gates, M > 0 ? t->soft : NULL, t->pool))) return st;
    }
    /* sequences */
    memset(t->emb, 0, sizeof(float) * (size_t)B * T * D);
    for (int b = 0; b < B; b++) {
        const sample *s = S[b];
        float *e = t->emb + (size_t)b * T * D;
        int32_t *tg = t->targets + (size_t)b * T, *ids = t->tok_ids + (size_t)b * T;
        for (int i = 0; i < T; i++) { tg[i] = RS_IGNORE_INDEX; ids[i] = -1; }
        int r = 0;
        if (t->stage >= 1) {
            memcpy(e, t->prefix + (size_t)b * Q * D, sizeof(float) * (size_t)Q * D);
            r = Q;
            if (M > 0) {
                memcpy(e + (size_t)r * D, t->soft + ((size_t)b * t->K + s->expert) * M * D, sizeof(float) * (size_t)M * D);
                r += M;
            }
            int np;
            const int32_t *pp = sample_prompt(t, s, &np);
            for (int i = 0; i < np; i++) ids[r + i] = pp[i];
            r += np;
        } else if (bos >= 0) {
            ids[r++] = bos;
        }
        int cap0 = r;
        for (int i = 0; i < s->n; i++) ids[r++] = s->ids[i];
        if (eos >= 0 && !s->no_eos) ids[r++] = eos;
        t->len[b] = r;
        /* row j predicts token j+1 from the caption's first token on */
        for (int j = cap0 - 1; j + 1 < r; j++)
            if (j >= 0) tg[j] = ids[j + 1];
        for (int j = 0; j < r; j++)
            if (ids[j] >= 0 && (st = rs_llm_embed(&t->lw, &ids[j], 1, e + (size_t)j * D))) return st;
        t->adapter[b] = t->n_lora == 0 ? -1 : t->stage == 1 ? 0 : s->expert;
    }
    *T_out = T;
    return RSMOE_OK;
}

/* One micro-batch: forward + backward; returns the loss and the scored tokens. train=false:
 * forward only (validation). */
static rsmoe_status micro_batch(trainer *t, const sample *const *S, int B, bool train, float loss_scale,
                                double *loss_out, int64_t *n_scored) {
    int D = t->D, Q = t->Q, M = t->M, T = 0;
    rsmoe_status st;
    if ((st = build_inputs(t, S, B, train, &T))) return st;
    rs_llm_train_batch lb = {.B = B, .T = T, .emb = t->emb, .len = t->len, .targets = t->targets,
                             .adapter = t->n_lora ? t->adapter : NULL, .adapters = t->adapters, .n_adapters = t->n_lora,
                             .weight = t->seq_w};
    float loss;
    if ((st = rs_llm_train_forward(t->lt, &t->lw, &lb, &loss, n_scored, t->pool))) return st;
    if (!isfinite(loss)) return rs_error(RSMOE_ERR_NUMERIC, "train: the loss is %g (not finite)", (double)loss);
    double gate_loss = 0;
    if (t->stage >= 2) {
        for (int b = 0; b < B; b++)
            for (int k = 0; k < t->K; k++) t->route_t[b * t->K + k] = S[b]->route[k];
        float gl = 0;
        if ((st = rs_router_route_ce(rs_router_train_logits(t->rt), t->route_t, B, t->K, t->c->gate_loss * loss_scale, &gl, t->d_logits)))
            return st;
        gate_loss = gl;
    }
    *loss_out = loss + t->c->gate_loss * gate_loss;
    if (!train) return RSMOE_OK;
    rs_llm_bwd_out o = {.loss_scale = loss_scale, .weights = t->full ? &t->llm_grads : NULL,
                        .lora = t->n_lora ? t->lgrads : NULL, .d_emb = t->d_emb};
    if ((st = rs_llm_train_backward(t->lt, &t->lw, &o, t->pool))) return st;
    if (t->full) {
        /* token rows (not the visual prefix) feed the token-embedding table */
        for (int b = 0; b < B; b++)
            for (int j = 0; j < t->len[b]; j++) {
                const int32_t *id = t->tok_ids + (size_t)b * T + j;
                if (*id >= 0 && (st = rs_embedding_bwd(t->llm_grads.tok_embd, t->d_emb + ((size_t)b * T + j) * D, id, 1, t->V, D)))
                    return st;
            }
    }
    if (t->stage == 1) {
        for (int b = 0; b < B; b++)
            memcpy(t->d_prefix + (size_t)b * Q * D, t->d_emb + (size_t)b * T * D, sizeof(float) * (size_t)Q * D);
        if ((st = rs_qformer_train_backward(t->qft, &t->qfp, t->d_prefix, NULL, t->pool))) return st;
    } else if (t->stage >= 2) {
        memset(t->d_soft, 0, sizeof(float) * (size_t)B * t->K * M * D);
        for (int b = 0; b < B; b++)
            if (M > 0)
                memcpy(t->d_soft + ((size_t)b * t->K + S[b]->expert) * M * D, t->d_emb + ((size_t)b * T + Q) * D,
                       sizeof(float) * (size_t)M * D);
        if ((st = rs_router_train_backward(t->rt, &t->rp, NULL, t->d_logits, M > 0 ? t->d_soft : NULL, NULL, NULL, t->pool)))
            return st;
    }
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ stage scst */
/* One micro-batch of stage scst on the images whose first caption sample in d is img[0..nb):
 * each expert samples scst_samples captions of each image from the current model (temperature
 * 1, no other view, no dropout: the policy as it is), each is scored by CIDEr-D against the
 * image's references (t->df: the training split's document frequencies), and one forward and
 * backward runs over them with the advantages (reward - mean reward of the image and expert's
 * other samples) as the sequences' gradient factors: the gradient of -Σ advantage·log p / the
 * scored tokens. *loss: the mean negative log-likelihood of the sampled tokens (+ gate loss);
 * *reward: the samples' mean CIDEr-D. */
static rsmoe_status scst_micro(trainer *t, const dataset_t *d, const int *img, int nb, const sample *const *qs, int nq,
                               int64_t mb, float loss_scale, double *loss, int64_t *n_scored, double *reward) {
    const rs_train_config *c = t->c;
    const int K = t->K, n = c->scst_samples, H = nb * K, Bs = H * n, D = t->D, max_new = c->max_caption_tokens + 1;
    int T = 0;
    rsmoe_status st;
    sample *heads = malloc(sizeof(sample) * (size_t)H);
    if (!heads) return rs_error(RSMOE_ERR_NOMEM, "train: out of memory");
    /* heads: one sequence per (image, expert) without a caption; their rows prefix the sampling */
    for (int i = 0; i < nb; i++)
        for (int k = 0; k < K; k++) {
            sample *h = &heads[i * K + k];
            *h = d->s[img[i]];
            h->expert = k;
            h->ids = h->qids = h->pids = NULL;
            h->n = h->nq = h->np = 0;
            h->no_eos = true;
            t->sp[i * K + k] = h;
        }
    if ((st = build_inputs(t, t->sp, H, false, &T))) goto out;
    for (int h = 0; h < H; h++) {
        int rows = head_rows(t, &heads[h]);
        for (int j = 0; j < n; j++) {
            int q = h * n + j;
            t->streams[q] = (rs_gen_stream){.prefix = t->emb + (size_t)h * T * D, .prefix_len = rows, .adapter = heads[h].expert};
            t->gres[q].ids = t->sids + (size_t)q * max_new;
        }
    }
    rs_gen_params gp = {.beams = 1, .max_new = max_new, .min_new = 0, .rep_penalty = 1, .len_penalty = 1, .temperature = 1,
                        .top_p = 1, .seed = c->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)mb + 1};
    int eos = rs_tokenizer_eos(t->m->tok);
    if (eos >= 0) gp.stop[gp.n_stop++] = eos;
    if ((st = rs_generate(&t->lw, t->gen, t->adapters, t->streams, Bs, &gp, t->gres, NULL, t->pool, NULL, NULL))) goto out;
    /* rewards, then advantages against the leave-one-out mean of each (image, expert) */
    double rsum = 0;
    for (int q = 0; q < Bs; q++) {
        char txt[4096];
        const rs_ds_item *it = &d->ds.items[heads[q / n].item];
        if ((st = rs_tokenizer_decode(t->m->tok, t->gres[q].ids, t->gres[q].n, txt, sizeof txt, NULL))) goto out;
        double r = rs_cider_d_df(txt, (const char *const *)it->captions, it->ncap, &t->df);
        if (isnan(r)) { st = rs_error(RSMOE_ERR_NOMEM, "train: out of memory"); goto out; }
        t->adv[q] = (float)r;
        rsum += r;
    }
    for (int h = 0; h < H; h++) {
        float *a = t->adv + (size_t)h * n;
        double sum = 0;
        for (int j = 0; j < n; j++) sum += a[j];
        for (int j = 0; j < n; j++) a[j] = (float)(a[j] - (sum - a[j]) / (n - 1));
    }
    int64_t n_cap = 0, n_q = 0; /* scored tokens of the captions and of the questions' answers */
    for (int q = 0; q < Bs; q++) {
        t->ss[q] = heads[q / n];
        t->ss[q].ids = t->gres[q].ids;
        t->ss[q].n = t->gres[q].n;
        t->ss[q].no_eos = !t->gres[q].ended;
        t->sp[q] = &t->ss[q];
        n_cap += t->ss[q].n + (t->ss[q].no_eos ? 0 : 1);
    }
    /* questions (vqa_data) keep their cross-entropy, so that answering is not forgotten: the
     * gradient is that of Σ advantage·CE / n_cap + w·Σ CE / n_q (w = scst_vqa_weight), each
     * part per token of its own */
    for (int i = 0; i < nq; i++) {
        t->sp[Bs + i] = qs[i];
        n_q += qs[i]->n + (eos >= 0 ? 1 : 0);
    }
    double n_all = (double)(n_cap + n_q);
    for (int q = 0; q < Bs; q++) t->adv[q] = n_cap ? (float)(t->adv[q] * n_all / (double)n_cap) : 0.f;
    for (int i = 0; i < nq; i++) t->adv[Bs + i] = n_q ? (float)(c->scst_vqa_weight * n_all / (double)n_q) : 0.f;
    t->seq_w = t->adv;
    st = micro_batch(t, t->sp, Bs + nq, true, loss_scale, loss, n_scored);
    t->seq_w = NULL;
    *reward = rsum / Bs;
out:
    free(heads);
    return st;
}

/* ------------------------------------------------------------------ schedule, optimiser */
static double lr_at(const rs_train_config *c, int64_t step) { /* step is 0-based */
    if (c->warmup > 0 && step < c->warmup) return c->lr * (double)(step + 1) / c->warmup;
    double span = c->steps - c->warmup > 1 ? (double)(c->steps - c->warmup - 1) : 1.0;
    double p = (double)(step - c->warmup) / span;
    if (p > 1) p = 1;
    return c->min_lr + 0.5 * (c->lr - c->min_lr) * (1 + cos(3.14159265358979323846 * p));
}

static void zero_grads(trainer *t) {
    for (int i = 0; i < t->gs.n; i++) memset(t->gs.g[i].g, 0, sizeof(float) * (size_t)t->gs.g[i].n);
}

static rsmoe_status optimiser_step(trainer *t, int64_t step, double lr, double *gnorm) {
    float **g = malloc(sizeof(float *) * (size_t)t->gs.n);
    int64_t *n = malloc(sizeof(int64_t) * (size_t)t->gs.n);
    if (!g || !n) { free(g); free(n); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < t->gs.n; i++) { g[i] = t->gs.g[i].g; n[i] = t->gs.g[i].n; }
    rsmoe_status st = rs_clip_grad_norm(g, n, t->gs.n, t->c->clip > 0 ? t->c->clip : INFINITY, gnorm);
    free(g);
    free(n);
    if (st) return rs_error(RSMOE_ERR_NUMERIC, "train: the gradient norm is not finite at step %lld", (long long)step + 1);
    rs_adamw_cfg ac = {.lr = (float)lr, .beta1 = t->c->beta1, .beta2 = t->c->beta2, .eps = t->c->eps, .weight_decay = t->c->weight_decay};
    for (int i = 0; i < t->gs.n; i++) {
        group *x = &t->gs.g[i];
        rs_adamw_cfg gc = ac;
        gc.lr = (float)(lr * x->lr_mult);
        if (!x->decay) gc.weight_decay = 0;
        rs_adamw_step(x->p, x->g, x->m, x->v, x->n, step + 1, &gc, t->pool);
    }
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ checkpoints */
/* the model file: the input model with the trained tensors (stage I: its LoRA merged into
 * the LLM base; stage II: the experts' adapters and the router) */
static rsmoe_status export_model(trainer *t, const char *path) {
    const rs_model *m = t->m;
    rsmoe_status st;
    if (t->stage == 0) {
        const rs_tparams *sets[1] = {&t->llm_set};
        return rs_tparams_save_gguf(sets, 1, m->g, path);
    }
    if (t->stage == 1 && t->full) {
        const rs_tparams *sets[2] = {&t->qfp.set, &t->llm_set};
        return rs_tparams_save_gguf(sets, 2, m->g, path);
    }
    if (t->stage == 1) {
        /* LLM matrices + merged stage-I LoRA */
        const rs_llm_weights *w = &m->llm;
        int L = w->c.n_layers, n = 0;
        const char **names = calloc((size_t)(7 * L) + 1, sizeof(char *));
        if (!names) return RSMOE_ERR_NOMEM;
        for (int l = 0; l < L; l++) {
            const rs_llm_layer *y = &w->layers[l];
            const rs_tensor *ts[7] = {y->wq, y->wk, y->wv, y->wo, y->w_gate, y->w_up, y->w_down};
            for (int k = 0; k < 7; k++) names[n++] = ts[k]->name;
        }
        rs_tparams merged;
        st = rs_tparams_from_gguf(m->g, names, n, &merged);
        free(names);
        if (st) return st;
        const rs_lora_train *lt = &t->lora[0];
        for (int l = 0; l < L; l++)
            for (int k = 0; k < RS_LT_COUNT; k++)
                if (lt->set.A[l][k])
                    rs_lora_merge(merged.p[l * 7 + k].param, lt->set.A[l][k], lt->set.B[l][k], lt->set.scale * lt->rank,
                                  lt->in[k], lt->out[k], lt->rank, t->pool);
        const rs_tparams *sets[2] = {&t->qfp.set, &merged};
        st = rs_tparams_save_gguf(sets, 2, m->g, path);
        rs_tparams_free(&merged);
        return st;
    }
    /* stage 2: experts' adapters under their GGUF names, and the router */
    rs_tparams ex = {0};
    int cap = t->K * m->llm.c.n_layers * RS_LT_COUNT * 2;
    ex.p = calloc((size_t)cap, sizeof(rs_tparam));
    if (!ex.p) return RSMOE_ERR_NOMEM;
    for (int e = 0; e < t->K; e++)
        for (int l = 0; l < m->llm.c.n_layers; l++)
            for (int k = 0; k < RS_LT_COUNT; k++) {
                const rs_lora_train *lt = &t->lora[e];
                if (!lt->set.A[l][k]) continue;
                for (int ab = 0; ab < 2; ab++) {
                    rs_tparam *p = &ex.p[ex.n++];
                    char nm[RS_NAME_MAX];
                    snprintf(nm, sizeof nm, "expert.%d.blk.%d.%s.lora_%c", e, l, rs_lora_target_names[k], ab ? 'b' : 'a');
                    int64_t ne[2] = {ab ? lt->rank : lt->in[k], ab ? lt->out[k] : lt->rank};
                    float *data = (float *)(ab ? lt->set.B[l][k] : lt->set.A[l][k]);
                    if ((st = rs_tensor_init(&p->tensor, nm, RS_F32, 2, ne, data))) { free(ex.p); return st; }
                    p->param = data;
                    p->n = ne[0] * ne[1];
                }
            }
    const rs_tparams *sets[2] = {&t->rp.set, &ex};
    st = rs_tparams_save_gguf(sets, 2, m->g, path);
    free(ex.p);
    return st;
}

/* the resumable state: every group's parameters and AdamW moments, and the step */
static rsmoe_status save_state(trainer *t, const char *path, int64_t step) {
    rs_gguf_writer *w = rs_gguf_writer_new();
    if (!w) return RSMOE_ERR_NOMEM;
    rsmoe_status st;
    if ((st = rs_gguf_writer_set_str(w, "general.architecture", "rsmoe-train-state")) ||
        (st = rs_gguf_writer_set_str(w, "train.stage", t->c->stage)) ||
        (st = rs_gguf_writer_set_u64(w, "train.step", (uint64_t)step)) ||
        (st = rs_gguf_writer_set_u64(w, "train.seed", t->c->seed)) ||
        (st = rs_gguf_writer_set_u32(w, "train.groups", (uint32_t)t->gs.n)))
        goto done;
    for (int i = 0; i < t->gs.n && !st; i++) {
        group *x = &t->gs.g[i];
        float *bufs[3] = {x->p, x->m, x->v};
        const char *what[3] = {"p", "m", "v"};
        for (int k = 0; k < 3 && !st; k++) {
            char nm[RS_NAME_MAX];
            snprintf(nm, sizeof nm, "%s.%s", x->name, what[k]);
            rs_tensor tt;
            int64_t ne[1] = {x->n};
            if (!(st = rs_tensor_init(&tt, nm, RS_F32, 1, ne, bufs[k]))) st = rs_gguf_writer_add_tensor(w, &tt);
        }
    }
    if (!st) st = rs_gguf_writer_write(w, path);
done:
    rs_gguf_writer_free(w);
    return st;
}

static rsmoe_status load_state(trainer *t, const char *path, int64_t *step) {
    rs_gguf *g;
    rsmoe_status st = rs_gguf_open(path, &g);
    if (st) return st;
    uint64_t s = 0, seed = 0;
    uint32_t ng = 0;
    if (strcmp(rs_gguf_get_str_or(g, "general.architecture", ""), "rsmoe-train-state") ||
        strcmp(rs_gguf_get_str_or(g, "train.stage", ""), t->c->stage) || rs_gguf_get_u64(g, "train.step", &s) ||
        rs_gguf_get_u64(g, "train.seed", &seed) || rs_gguf_get_u32(g, "train.groups", &ng) || ng != (uint32_t)t->gs.n) {
        rs_gguf_close(g);
        return rs_error(RSMOE_ERR_FORMAT, "%s: not a training state of stage %s with this model's %d parameter groups", path,
                        t->c->stage, t->gs.n);
    }
    if (seed != t->c->seed) {
        rs_gguf_close(g);
        return rs_error(RSMOE_ERR_INVALID_ARG, "%s: written with seed %llu, now %llu: resuming needs the same seed", path,
                        (unsigned long long)seed, (unsigned long long)t->c->seed);
    }
    for (int i = 0; i < t->gs.n && !st; i++) {
        group *x = &t->gs.g[i];
        float *bufs[3] = {x->p, x->m, x->v};
        const char *what[3] = {"p", "m", "v"};
        for (int k = 0; k < 3; k++) {
            char nm[RS_NAME_MAX];
            snprintf(nm, sizeof nm, "%s.%s", x->name, what[k]);
            const rs_tensor *tt = rs_gguf_find_tensor(g, nm);
            if (!tt || tt->type != RS_F32 || rs_tensor_nelements(tt) != x->n) {
                st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s missing or of another size", path, nm);
                break;
            }
            memcpy(bufs[k], tt->data, sizeof(float) * (size_t)x->n);
        }
    }
    rs_gguf_close(g);
    *step = (int64_t)s;
    return st;
}

/* ------------------------------------------------------------------ validation */
static rsmoe_status val_loss(trainer *t, const dataset_t *v, double *out) {
    int B = t->c->batch;
    const sample *S[1024];
    double sum = 0;
    int64_t toks = 0;
    for (int k = 0; k < t->c->val_batches; k++) {
        /* fixed samples spread over the whole split (data sets are often ordered by class) */
        for (int b = 0; b < B; b++) S[b] = &v->s[(int)(((uint64_t)(k * B + b) * 2654435761u + 17) % (uint64_t)v->n)];
        double l;
        int64_t n;
        rsmoe_status st = micro_batch(t, S, B, false, 1.0f, &l, &n);
        if (st) return st;
        sum += l * (double)n;
        toks += n;
    }
    *out = toks ? sum / (double)toks : 0;
    return RSMOE_OK;
}

/* greedy captions of the first val_images validation images with the exported model; CIDEr-D */
static rsmoe_status val_cider(trainer *t, const dataset_t *v, const char *model_path, double *out) {
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(model_path, NULL, &st);
    if (!m) return st;
    rsmoe_context_params cp = rsmoe_context_default_params();
    cp.n_threads = rs_pool_size(t->pool);
    cp.max_beams = 1;
    rsmoe_context *c = rsmoe_context_new(m, &cp, &st);
    if (!c) { rsmoe_model_free(m); return st; }
    int n = t->c->val_images < v->ds.nitems ? t->c->val_images : v->ds.nitems;
    char **hyps = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    size_t *nrefs = calloc((size_t)(n > 0 ? n : 1), sizeof(size_t));
    const char *const **refs = calloc((size_t)(n > 0 ? n : 1), sizeof(char **));
    int k = 0;
    rsmoe_generate_params gp = rsmoe_brief_default_params();
    gp.beams = 1;
    gp.max_len = t->c->max_caption_tokens + 2;
    gp.use_experts = t->stage >= 2;
    st = hyps && nrefs && refs ? RSMOE_OK : RSMOE_ERR_NOMEM;
    for (int i = 0; i < n && !st; i++) {
        const rs_ds_item *it = &v->ds.items[i];
        rsmoe_image img;
        if (rsmoe_image_load(it->path, &img)) continue;
        rsmoe_result r;
        st = rsmoe_caption(c, &img, &gp, &r);
        rsmoe_image_free(&img);
        if (st) break;
        hyps[k] = strdup(r.text);
        nrefs[k] = (size_t)it->ncap;
        refs[k] = (const char *const *)it->captions;
        k++;
        rsmoe_result_free(&r);
    }
    if (!st && k > 0) {
        rs_caption_refs cr = {(size_t)k, nrefs, refs};
        rs_score_opts so;
        rs_score_opts_default(&so);
        so.meteor = false;
        rs_score_result sr;
        if (!(st = rs_score_captions(&cr, (const char *const *)hyps, &so, &sr))) {
            *out = sr.cider;
            rs_score_result_free(&sr);
        }
    }
    for (int i = 0; i < k; i++) free(hyps[i]);
    free(hyps);
    free(nrefs);
    free(refs);
    rsmoe_context_free(c);
    rsmoe_model_free(m);
    return st;
}

/* ------------------------------------------------------------------ the run */
rsmoe_status rs_train_run(const rs_train_config *c, rs_train_log_fn log, void *ud) {
    rsmoe_status st = rs_train_config_check(c);
    if (st) return st;
    trainer tr, *t = &tr;
    memset(t, 0, sizeof *t);
    dataset_t train = {0}, val = {0}, vqa = {0};
    order_t ord = {0}, vord = {0};
    int *img_first = NULL, n_img = 0; /* stage scst: each image's first caption sample */
    char state_path[1100], tmp_path[1100];
    snprintf(state_path, sizeof state_path, "%s.state", c->out);
    snprintf(tmp_path, sizeof tmp_path, "%s.val.gguf", c->out);
    if ((st = rs_model_load(c->model, &t->m))) return st;
    bool feats = strcmp(c->stage, "lm") != 0;
    if ((st = load_data(c, t->m, c->train_split, c->features, feats, true, c->limit, &train))) goto out;
    /* validation: stage lm reads the captions of val_split (none when it is ""); stages 1 and 2
     * also need the feature cache of that split */
    bool have_val = c->val_split[0] && (!feats || c->val_features[0]);
    if (have_val && (st = load_data(c, t->m, c->val_split, c->val_features, feats, false, 0, &val))) goto out;
    /* questions mixed into the batches: vqa_ratio of each micro-batch (at least one sample) */
    int Bv = 0, vqa_head = 0;
    if (c->vqa_data[0]) {
        if (!feats) { st = rs_error(RSMOE_ERR_INVALID_ARG, "train: stage lm reads captions only (vqa_data is for stages 1 and 2)"); goto out; }
        if ((st = load_vqa(c, t->m, &vqa, &t->vqa_max_q, &vqa_head))) goto out;
        Bv = (int)lround((double)c->batch * c->vqa_ratio);
        if (Bv < 1) Bv = 1;
        if (Bv > c->batch) Bv = c->batch;
    }
    /* longest sequence: head + caption + EOS */
    int max_T = 0;
    {
        int st_ = !strcmp(c->stage, "lm") ? 0 : !strcmp(c->stage, "1") ? 1 : 2;
        int Q = t->m->qf.c.n_query, Mx = st_ == 2 ? t->m->moe.n_soft : 0, np = 0;
        int32_t tmp[256];
        for (int e = 0; e < (st_ == 2 ? t->m->moe.n_experts : 1); e++) {
            int n = 0;
            rs_tokenizer_encode(t->m->tok, st_ == 2 ? t->m->moe.prompts[e] : t->m->instr_caption, true, tmp, 256, &n);
            if (n > np) np = n;
        }
        max_T = (st_ ? Q + Mx + np : 1) + c->max_caption_tokens + 1;
        if (Bv && Q + Mx + vqa_head + 1 > max_T) max_T = Q + Mx + vqa_head + 1;
        if (max_T > t->m->llm.c.max_seq) {
            st = rs_error(RSMOE_ERR_INVALID_ARG, "train: sequences of %d positions exceed the LLM's context %d (lower max_caption_tokens)",
                          max_T, t->m->llm.c.max_seq);
            goto out;
        }
    }
    t->n_vqa = Bv;
    if ((st = trainer_init(t, c, max_T))) goto out;
    if (c->batch > 1024) { st = rs_error(RSMOE_ERR_INVALID_ARG, "train: batch above 1024"); goto out; }
    ord.n = train.n;
    if (t->stage == 3) {
        /* scst draws images, not sentences: load_data lists an image's captions together */
        img_first = malloc(sizeof(int) * (size_t)train.n);
        int *img_item = malloc(sizeof(int) * (size_t)train.n);
        if (!img_first || !img_item) { free(img_item); st = RSMOE_ERR_NOMEM; goto out; }
        for (int i = 0; i < train.n; i++)
            if (!i || train.s[i].item != train.s[i - 1].item) { img_first[n_img] = i; img_item[n_img++] = train.s[i].item; }
        st = rs_ngram_df_build(&train.ds, img_item, n_img, &t->df);
        free(img_item);
        if (st) goto out;
        ord.n = n_img;
    }
    ord.seed = c->seed;
    ord.epoch = -1;
    ord.perm = malloc(sizeof(int) * (size_t)train.n);
    if (!ord.perm) { st = RSMOE_ERR_NOMEM; goto out; }
    if (Bv) {
        vord.n = vqa.n;
        vord.seed = c->seed ^ 0x5eedf00dULL;
        vord.epoch = -1;
        vord.perm = malloc(sizeof(int) * (size_t)vqa.n);
        if (!vord.perm) { st = RSMOE_ERR_NOMEM; goto out; }
    }
    int64_t step0 = 0;
    if (c->resume) {
        if (access(state_path, F_OK) != 0) { st = rs_error(RSMOE_ERR_IO, "train: --resume but %s does not exist", state_path); goto out; }
        if ((st = load_state(t, state_path, &step0))) goto out;
    }
    double t0 = rs_time_s(), tok_acc = 0, loss_acc = 0, t_log = t0, rew_acc = 0;
    int n_acc = 0;
    const sample *S[1024];
    const int Bc = c->batch - Bv; /* captions per micro-batch */
    for (int64_t step = step0; step < c->steps; step++) {
        if (c->stop_at > 0 && step >= c->stop_at) break;
        zero_grads(t);
        double step_loss = 0;
        int64_t step_tok = 0;
        for (int a = 0; a < c->accum; a++) {
            /* captions, then questions; each list in its own seeded order */
            int64_t mb = step * c->accum + a;
            double l;
            int64_t n;
            t->sample0 = mb * (int64_t)c->batch;
            if (t->stage == 3) {
                int img[1024];
                double r = 0;
                for (int b = 0; b < c->batch; b++) img[b] = img_first[order_get(&ord, mb * (int64_t)c->batch + b)];
                for (int b = 0; b < Bv; b++) S[b] = &vqa.s[order_get(&vord, mb * (int64_t)Bv + b)];
                if ((st = scst_micro(t, &train, img, c->batch, S, Bv, mb, 1.0f / (float)c->accum, &l, &n, &r))) goto out;
                rew_acc += r / c->accum;
            } else {
                for (int b = 0; b < Bc; b++) S[b] = &train.s[order_get(&ord, mb * (int64_t)Bc + b)];
                for (int b = 0; b < Bv; b++) S[Bc + b] = &vqa.s[order_get(&vord, mb * (int64_t)Bv + b)];
                if ((st = micro_batch(t, S, c->batch, true, 1.0f / (float)c->accum, &l, &n))) goto out;
            }
            step_loss += l / c->accum;
            step_tok += n;
        }
        double lr = lr_at(c, step), gn = 0;
        if ((st = optimiser_step(t, step, lr, &gn))) goto out;
        loss_acc += step_loss;
        tok_acc += (double)step_tok;
        n_acc++;
        double now = rs_time_s();
        if (log && ((step + 1) % (c->log_every > 0 ? c->log_every : 1) == 0 || step + 1 == c->steps)) {
            rs_train_event e = {.step = step + 1, .steps = c->steps, .loss = loss_acc / n_acc, .lr = lr,
                                .tokens_per_s = tok_acc / (now - t_log > 1e-9 ? now - t_log : 1e-9),
                                .elapsed_s = now - t0, .grad_norm = gn, .reward = t->stage == 3 ? rew_acc / n_acc : -1};
            e.eta_s = (now - t0) / (double)(step + 1 - step0) * (double)(c->steps - step - 1);
            log(&e, ud);
            loss_acc = tok_acc = rew_acc = 0;
            n_acc = 0;
            t_log = now;
        }
        bool last = step + 1 == c->steps;
        if (last || (c->save_every > 0 && (step + 1) % c->save_every == 0)) {
            if ((st = export_model(t, c->out)) || (st = save_state(t, state_path, step + 1))) goto out;
            if (log) { rs_train_event e = {.step = step + 1, .steps = c->steps, .kind = 2, .path = c->out, .reward = -1}; log(&e, ud); }
        }
        if (have_val && (last || (c->eval_every > 0 && (step + 1) % c->eval_every == 0))) {
            rs_train_event e = {.step = step + 1, .steps = c->steps, .kind = 1, .val_cider = -1, .reward = -1};
            if ((st = val_loss(t, &val, &e.val_loss))) goto out;
            if (c->val_images > 0) {
                if ((st = export_model(t, tmp_path)) || (st = val_cider(t, &val, tmp_path, &e.val_cider))) goto out;
                unlink(tmp_path);
            }
            if (log) log(&e, ud);
        }
    }
out:
    free(img_first);
    free(ord.perm);
    free(vord.perm);
    free_data(&train);
    free_data(&val);
    free_data(&vqa);
    trainer_free(t);
    return st;
}
