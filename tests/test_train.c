/* test_train.c - the training stages end to end on the `test` preset:
 *  - stage lm, I and II each lower the training loss (margins stated below);
 *  - an interrupted run resumed from its checkpoint continues bit-exactly (same losses as an
 *    uninterrupted run), and the exported model loads and captions;
 *  - 50 steps (stage lm) on the captions of 200 RSICD images lower the loss by 40% (skipped
 *    without ../shared);
 *  - other image views (aug_features) change the training, resume exactly, and a cache of the
 *    same view or of other images is refused;
 *  - bad configurations give clear errors. */
#include "data/dataset.h"
#include "model/model.h"
#include "rsmoe.h"
#include "test.h"
#include "train_fixture.h"
#include "train/features.h"
#include "train/trainer.h"

#include <math.h>
#include <sys/stat.h>

static char g_dir[128], g_model[200], g_data[200], g_feat[200];

typedef struct { double loss[512]; int n; double val; } losses;
static void on_log(const rs_train_event *e, void *ud) {
    losses *l = ud;
    if (e->kind == 0 && l->n < 512) l->loss[l->n++] = e->loss;
    if (e->kind == 1) l->val = e->val_loss;
}

static rs_train_config base_config(const char *stage, const char *model, const char *out, int steps) {
    return fixture_config(stage, model, out, g_data, g_feat, steps);
}

/* whether files a and b exist and hold the same bytes */
static bool same_files(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    int ca, cb;
    if (same) do { ca = fgetc(fa); cb = fgetc(fb); same &= ca == cb; } while (ca != EOF && cb != EOF);
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static double mean(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    return s / n;
}

TEST(stages_lower_the_loss_and_chain) {
    char lm[200], s1[200], s2[200];
    snprintf(lm, sizeof lm, "%s/lm.gguf", g_dir);
    snprintf(s1, sizeof s1, "%s/s1.gguf", g_dir);
    snprintf(s2, sizeof s2, "%s/s2.gguf", g_dir);
    losses L = {0};
    rs_train_config c = base_config("lm", g_model, lm, 40);
    REQUIRE(rs_train_run(&c, on_log, &L) == RSMOE_OK, "stage lm: %s", rsmoe_last_error());
    REQUIRE(L.n == 40, "40 steps logged");
    /* memorising six captions: the last 5 steps average under half the first 5 */
    CHECK(mean(L.loss + 35, 5) < 0.5 * mean(L.loss, 5), "stage lm: %.3f -> %.3f", mean(L.loss, 5), mean(L.loss + 35, 5));
    memset(&L, 0, sizeof L);
    c = base_config("1", lm, s1, 30);
    REQUIRE(rs_train_run(&c, on_log, &L) == RSMOE_OK, "stage 1: %s", rsmoe_last_error());
    CHECK(mean(L.loss + 25, 5) < 0.9 * mean(L.loss, 5), "stage 1: %.3f -> %.3f", mean(L.loss, 5), mean(L.loss + 25, 5));
    memset(&L, 0, sizeof L);
    c = base_config("2", s1, s2, 30);
    c.max_caption_tokens = 16; /* the byte-level expert prompts are long for the preset's 128 positions */
    REQUIRE(rs_train_run(&c, on_log, &L) == RSMOE_OK, "stage 2: %s", rsmoe_last_error());
    CHECK(mean(L.loss + 25, 5) < 0.95 * mean(L.loss, 5), "stage 2: %.3f -> %.3f", mean(L.loss, 5), mean(L.loss + 25, 5));
    /* the exported models load and caption */
    const char *paths[3] = {lm, s1, s2};
    for (int k = 1; k < 3; k++) {
        rsmoe_status st;
        rsmoe_model *m = rsmoe_model_load(paths[k], NULL, &st);
        REQUIRE(m, "load %s: %s", paths[k], rsmoe_last_error());
        rsmoe_context *cx = rsmoe_context_new(m, NULL, &st);
        REQUIRE(cx, "context");
        rsmoe_image img;
        REQUIRE(rsmoe_image_load("tests/data/rgb37.png", &img) == RSMOE_OK, "image");
        rsmoe_generate_params p = rsmoe_caption_default_params();
        p.beams = 1;
        p.max_len = 12;
        rsmoe_result r;
        CHECK(rsmoe_caption(cx, &img, &p, &r) == RSMOE_OK && r.text, "caption with %s", paths[k]);
        rsmoe_result_free(&r);
        rsmoe_image_free(&img);
        rsmoe_context_free(cx);
        rsmoe_model_free(m);
    }
}

/* n floats of tensor `name` of the GGUF at path (f32); false when missing */
static bool read_f32(const char *path, const char *name, float *out, int64_t n) {
    rs_gguf *g = NULL;
    if (rs_gguf_open(path, &g)) return false;
    const rs_tensor *t = rs_gguf_find_tensor(g, name);
    bool ok = t && t->type == RS_F32 && rs_tensor_nelements(t) == n;
    if (ok) memcpy(out, t->data, sizeof(float) * (size_t)n);
    rs_gguf_close(g);
    return ok;
}

/* gate_lr_mult: the router's gate learns at lr × the factor (AdamW's step, its decoupled decay
 * included, is proportional to the learning rate), the soft-prompt network at lr itself; after
 * one stage-2 step from the same start, the gate moved twice as far with factor 2 as with 1,
 * not at all with 0, and the soft-prompt network the same with either */
TEST(gate_lr_mult_scales_the_gate_step) {
    char s1[200], out[3][200];
    snprintf(s1, sizeof s1, "%s/s1.gguf", g_dir);
    const float mult[3] = {1, 2, 0};
    for (int k = 0; k < 3; k++) {
        snprintf(out[k], sizeof out[k], "%s/glr%d.gguf", g_dir, k);
        rs_train_config c = base_config("2", s1, out[k], 1);
        c.max_caption_tokens = 16;
        c.gate_lr_mult = mult[k];
        REQUIRE(rs_train_run(&c, NULL, NULL) == RSMOE_OK, "stage 2, gate_lr_mult %g: %s", mult[k], rsmoe_last_error());
    }
    rs_gguf *g = NULL;
    REQUIRE(rs_gguf_open(s1, &g) == RSMOE_OK, "open %s", s1);
    const rs_tensor *gw = rs_gguf_find_tensor(g, "router.gate.weight"), *su = rs_gguf_find_tensor(g, "router.soft_up.weight");
    const int64_t ng = gw ? rs_tensor_nelements(gw) : 0, ns = su ? rs_tensor_nelements(su) : 0;
    rs_gguf_close(g);
    REQUIRE(ng > 0 && ns > 0, "the preset has a gate and a soft-prompt network");
    float *w0 = malloc(sizeof(float) * (size_t)ng * 4), *s = malloc(sizeof(float) * (size_t)ns * 3);
    REQUIRE(w0 && s, "memory");
    bool ok = read_f32(s1, "router.gate.weight", w0, ng) && read_f32(s1, "router.soft_up.weight", s, ns);
    for (int k = 0; k < 3; k++) ok = ok && read_f32(out[k], "router.gate.weight", w0 + (k + 1) * ng, ng);
    for (int k = 0; k < 2; k++) ok = ok && read_f32(out[k], "router.soft_up.weight", s + (k + 1) * ns, ns);
    REQUIRE(ok, "router tensors readable");
    double d1 = 0, err = 0, d0 = 0;
    for (int64_t i = 0; i < ng; i++) {
        const double a = (double)w0[ng + i] - w0[i], b = (double)w0[2 * ng + i] - w0[i];
        d1 = fmax(d1, fabs(a));
        err = fmax(err, fabs(b - 2 * a));
        d0 = fmax(d0, fabs((double)w0[3 * ng + i] - w0[i]));
    }
    CHECK(d1 > 0, "the gate did not move");
    CHECK(err <= 1e-3 * d1, "factor 2 vs 1: max |step2 - 2 step1| = %g (step %g)", err, d1);
    CHECK(d0 == 0, "factor 0 moved the gate by %g", d0);
    bool soft_same = !memcmp(s + ns, s + 2 * ns, sizeof(float) * (size_t)ns), soft_moved = memcmp(s, s + ns, sizeof(float) * (size_t)ns) != 0;
    CHECK(soft_same && soft_moved, "soft-prompt network: same step with either factor (%d), moved (%d)", soft_same, soft_moved);
    free(w0);
    free(s);
}

/* stage I with every LLM weight trained (an LLM from scratch): the loss falls, the exported
 * model's LLM weights changed and it captions */
TEST(stage1_full_llm) {
    char out[200];
    snprintf(out, sizeof out, "%s/s1full.gguf", g_dir);
    losses L = {0};
    rs_train_config c = base_config("1", g_model, out, 30);
    c.train_llm = 1;
    REQUIRE(rs_train_run(&c, on_log, &L) == RSMOE_OK, "stage 1 full: %s", rsmoe_last_error());
    CHECK(mean(L.loss + 25, 5) < 0.6 * mean(L.loss, 5), "loss %.3f -> %.3f", mean(L.loss, 5), mean(L.loss + 25, 5));
    rs_model *a, *b;
    REQUIRE(rs_model_load(g_model, &a) == RSMOE_OK && rs_model_load(out, &b) == RSMOE_OK, "load");
    const rs_tensor *ta = a->llm.layers[0].wq, *tb = b->llm.layers[0].wq;
    CHECK(memcmp(ta->data, tb->data, rs_tensor_nbytes(ta)) != 0, "LLM weights trained");
    rs_model_free(a);
    rs_model_free(b);
}

TEST(resume_is_bit_exact) {
    char a[200], b[200];
    snprintf(a, sizeof a, "%s/a.gguf", g_dir);
    snprintf(b, sizeof b, "%s/b.gguf", g_dir);
    losses LA = {0}, LB = {0};
    rs_train_config c = base_config("1", g_model, a, 8);
    REQUIRE(rs_train_run(&c, on_log, &LA) == RSMOE_OK, "uninterrupted: %s", rsmoe_last_error());
    c = base_config("1", g_model, b, 8);
    c.save_every = 4;
    c.stop_at = 4; /* "killed" after step 4 (its checkpoint written) */
    REQUIRE(rs_train_run(&c, on_log, &LB) == RSMOE_OK, "first half: %s", rsmoe_last_error());
    CHECK(LB.n == 4, "stopped after 4 steps (%d)", LB.n);
    c.stop_at = 0;
    c.resume = 1;
    REQUIRE(rs_train_run(&c, on_log, &LB) == RSMOE_OK, "resumed: %s", rsmoe_last_error());
    REQUIRE(LB.n == 8, "8 steps in all (%d)", LB.n);
    for (int i = 0; i < 8; i++) CHECK(LA.loss[i] == LB.loss[i], "step %d: %.9g vs %.9g", i + 1, LA.loss[i], LB.loss[i]);
    /* the two final models are identical files */
    CHECK(same_files(a, b), "resumed model equals the uninterrupted one byte for byte");
}

/* c interrupted after step 3 (checkpoint every 3) and resumed: its 6 losses in *L */
static void run_interrupted(rs_train_config c, losses *L) {
    c.save_every = 3;
    c.stop_at = 3;
    REQUIRE(rs_train_run(&c, on_log, L) == RSMOE_OK, "first half: %s", rsmoe_last_error());
    c.stop_at = 0;
    c.resume = 1;
    REQUIRE(rs_train_run(&c, on_log, L) == RSMOE_OK, "resumed: %s", rsmoe_last_error());
}

/* feat_dropout changes the training (the inputs differ, so every step's loss does), and it is a
 * function of the seed and the sample's position, so a resumed run repeats it exactly */
TEST(feature_dropout_resumes_exactly) {
    char a[200], b[200], z[200];
    snprintf(a, sizeof a, "%s/da.gguf", g_dir);
    snprintf(b, sizeof b, "%s/db.gguf", g_dir);
    snprintf(z, sizeof z, "%s/dz.gguf", g_dir);
    losses LA = {0}, LB = {0}, LZ = {0};
    rs_train_config c = base_config("1", g_model, z, 6);
    REQUIRE(rs_train_run(&c, on_log, &LZ) == RSMOE_OK, "no dropout: %s", rsmoe_last_error());
    c = base_config("1", g_model, a, 6);
    c.feat_dropout = 0.3f;
    REQUIRE(rs_train_run(&c, on_log, &LA) == RSMOE_OK, "uninterrupted: %s", rsmoe_last_error());
    int differ = 0;
    for (int i = 0; i < 6; i++) differ += LA.loss[i] != LZ.loss[i];
    CHECK(differ == 6, "dropout changes every step's loss (%d of 6 differ)", differ);
    c = base_config("1", g_model, b, 6);
    c.feat_dropout = 0.3f;
    run_interrupted(c, &LB);
    REQUIRE(LB.n == 6, "6 steps in all (%d)", LB.n);
    for (int i = 0; i < 6; i++) CHECK(LA.loss[i] == LB.loss[i], "step %d: %.9g vs %.9g", i + 1, LA.loss[i], LB.loss[i]);
    rs_train_config d = rs_train_default_config();
    CHECK(rs_train_config_set(&d, "feat_dropout", "0.25") == RSMOE_OK && d.feat_dropout == 0.25f, "feat_dropout key");
    d = base_config("1", g_model, z, 2);
    d.feat_dropout = 1.0f;
    CHECK(rs_train_run(&d, NULL, NULL) == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "feat_dropout"),
          "feat_dropout 1 refused: %s", rsmoe_last_error());
}

/* aug_features: the training samples' image tokens come from the base cache or from a cache of
 * the same images in another view (here rot90), picked by the seed and the sample's position:
 * the losses change, a resumed run repeats them exactly; a cache of the base's own view, or of
 * other images, is refused with a message. */
TEST(aug_views_resume_exactly) {
    char a[200], b[200], z[200], rot[200], hf[200], same[200], other[200], odata[200];
    snprintf(a, sizeof a, "%s/va.gguf", g_dir);
    snprintf(b, sizeof b, "%s/vb.gguf", g_dir);
    snprintf(z, sizeof z, "%s/vz.gguf", g_dir);
    snprintf(rot, sizeof rot, "%s/feat-rot90.gguf", g_dir);
    snprintf(hf, sizeof hf, "%s/feat-hflip.gguf", g_dir);
    snprintf(same, sizeof same, "%s/feat-id.gguf", g_dir);
    snprintf(other, sizeof other, "%s/feat-other.gguf", g_dir);
    snprintf(odata, sizeof odata, "%s/other.json", g_dir);
    REQUIRE(fixture_features_view(g_data, g_model, rot, 5) && fixture_features_view(g_data, g_model, hf, 1) &&
            fixture_features_view(g_data, g_model, same, 0), "aug caches");
    FILE *f = fopen(odata, "w");
    fprintf(f, "{\"images\": [{\"filename\": \"rgb40.jpg\", \"split\": \"train\", \"sentences\": [{\"raw\": \"a\"}]},"
               "{\"filename\": \"rgb37.png\", \"split\": \"train\", \"sentences\": [{\"raw\": \"b\"}]}]}");
    fclose(f);
    REQUIRE(fixture_features_view(odata, g_model, other, 1), "cache of other images");
    losses LA = {0}, LB = {0}, LZ = {0};
    rs_train_config c = base_config("1", g_model, z, 6);
    REQUIRE(rs_train_run(&c, on_log, &LZ) == RSMOE_OK, "no views: %s", rsmoe_last_error());
    c = base_config("1", g_model, a, 6);
    snprintf(c.aug_features, sizeof c.aug_features, "%s,%s", rot, hf);
    REQUIRE(rs_train_run(&c, on_log, &LA) == RSMOE_OK, "uninterrupted: %s", rsmoe_last_error());
    int differ = 0;
    for (int i = 0; i < 6; i++) differ += LA.loss[i] != LZ.loss[i];
    CHECK(differ >= 4, "other views change the steps' losses (%d of 6 differ)", differ);
    c = base_config("1", g_model, b, 6);
    snprintf(c.aug_features, sizeof c.aug_features, "%s,%s", rot, hf);
    run_interrupted(c, &LB);
    REQUIRE(LB.n == 6, "6 steps in all (%d)", LB.n);
    for (int i = 0; i < 6; i++) CHECK(LA.loss[i] == LB.loss[i], "step %d: %.9g vs %.9g", i + 1, LA.loss[i], LB.loss[i]);
    rs_train_config d = base_config("1", g_model, z, 2);
    snprintf(d.aug_features, sizeof d.aug_features, "%s", same);
    CHECK(rs_train_run(&d, NULL, NULL) == RSMOE_ERR_FORMAT && strstr(rsmoe_last_error(), "same view"),
          "a cache of the base's view refused: %s", rsmoe_last_error());
    snprintf(d.aug_features, sizeof d.aug_features, "%s", other);
    CHECK(rs_train_run(&d, NULL, NULL) == RSMOE_ERR_FORMAT && strstr(rsmoe_last_error(), "same order"),
          "a cache of other images refused: %s", rsmoe_last_error());
    snprintf(d.aug_features, sizeof d.aug_features, "%s/missing.gguf", g_dir);
    CHECK(rs_train_run(&d, NULL, NULL) == RSMOE_ERR_IO, "a missing cache refused: %s", rsmoe_last_error());
    d = rs_train_default_config();
    CHECK(rs_train_config_set(&d, "aug_features", "x.gguf,y.gguf") == RSMOE_OK && !strcmp(d.aug_features, "x.gguf,y.gguf"),
          "aug_features key");
}

/* Questions mixed into the batches (vqa_data): the same question about three images with three
 * different answers, so only a model that reads the image can learn them. Stage 1 learns them,
 * stage 2 runs on them, and an interrupted mixed run resumes bit-exactly. */
static char g_vqa[200];
#ifndef VQA_LR
#define VQA_LR 3e-3f
#endif
#ifndef VQA_STEPS
#define VQA_STEPS 500
#endif
TEST(vqa_mixed_batches) {
    char s1[200], s2[200], a[200], b[200];
    snprintf(s1, sizeof s1, "%s/vq1.gguf", g_dir);
    snprintf(s2, sizeof s2, "%s/vq2.gguf", g_dir);
    snprintf(a, sizeof a, "%s/vqa_a.gguf", g_dir);
    snprintf(b, sizeof b, "%s/vqa_b.gguf", g_dir);
    losses L = {0};
    rs_train_config c = base_config("1", g_model, s1, VQA_STEPS);
    snprintf(c.vqa_data, sizeof c.vqa_data, "%s", g_vqa);
    snprintf(c.vqa_images, sizeof c.vqa_images, "tests/data");
    c.vqa_ratio = 0.5f;
    c.train_llm = 1;
    c.lr = VQA_LR;
    c.min_lr = VQA_LR / 10;
    REQUIRE(rs_train_run(&c, on_log, &L) == RSMOE_OK, "stage 1 with questions: %s", rsmoe_last_error());
    CHECK(mean(L.loss + VQA_STEPS - 5, 5) < 0.5 * mean(L.loss, 5), "loss %.3f -> %.3f", mean(L.loss, 5), mean(L.loss + VQA_STEPS - 5, 5));
    /* the trained model answers from the image */
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(s1, NULL, &st);
    REQUIRE(m, "load: %s", rsmoe_last_error());
    rsmoe_context_params cp = rsmoe_context_default_params();
    cp.n_threads = 1;
    rsmoe_context *ctx = rsmoe_context_new(m, &cp, &st);
    REQUIRE(ctx, "context: %s", rsmoe_last_error());
    static const char *const img[3] = {"tests/data/rgb37.png", "tests/data/rgb40.jpg", "tests/data/grey24.jpg"};
    static const char *const ans[3] = {"houses", "sand", "river"};
    int right = 0;
    for (int i = 0; i < 3; i++) {
        rsmoe_image im;
        REQUIRE(rsmoe_image_load(img[i], &im) == RSMOE_OK, "image %s", img[i]);
        rsmoe_generate_params gp = rsmoe_vqa_default_params();
        gp.use_experts = false;
        gp.beams = 1;
        rsmoe_result r;
        st = rsmoe_answer(ctx, &im, "what is the scene?", &gp, &r);
        rsmoe_image_free(&im);
        REQUIRE(st == RSMOE_OK, "answer: %s", rsmoe_last_error());
        printf("  %s: \"%s\" (trained on \"%s\")\n", img[i], r.text, ans[i]);
        right += !strcmp(r.text, ans[i]);
        rsmoe_result_free(&r);
    }
    CHECK(right == 3, "%d of 3 answers right", right);
    rsmoe_context_free(ctx);
    rsmoe_model_free(m);
    /* stage 2 on captions + questions */
    losses L2 = {0};
    rs_train_config c2 = base_config("2", s1, s2, 10);
    c2.max_caption_tokens = 16;
    snprintf(c2.vqa_data, sizeof c2.vqa_data, "%s", g_vqa);
    snprintf(c2.vqa_images, sizeof c2.vqa_images, "tests/data");
    REQUIRE(rs_train_run(&c2, on_log, &L2) == RSMOE_OK, "stage 2 with questions: %s", rsmoe_last_error());
    CHECK(L2.n == 10 && isfinite(L2.loss[9]), "stage 2 ran (%d steps)", L2.n);
    /* resume */
    losses LA = {0}, LB = {0};
    c = base_config("1", g_model, a, 6);
    snprintf(c.vqa_data, sizeof c.vqa_data, "%s", g_vqa);
    snprintf(c.vqa_images, sizeof c.vqa_images, "tests/data");
    REQUIRE(rs_train_run(&c, on_log, &LA) == RSMOE_OK, "uninterrupted: %s", rsmoe_last_error());
    snprintf(c.out, sizeof c.out, "%s", b);
    run_interrupted(c, &LB);
    REQUIRE(LB.n == 6, "6 steps (%d)", LB.n);
    for (int i = 0; i < 6; i++) CHECK(LA.loss[i] == LB.loss[i], "step %d: %.9g vs %.9g", i + 1, LA.loss[i], LB.loss[i]);
    /* refusals */
    c = base_config("lm", g_model, a, 2);
    snprintf(c.vqa_data, sizeof c.vqa_data, "%s", g_vqa);
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "vqa_data"), "stage lm: %s",
          rsmoe_last_error());
    c = base_config("1", g_model, a, 2);
    snprintf(c.vqa_data, sizeof c.vqa_data, "%s/none.json", g_dir);
    CHECK(rs_train_run(&c, NULL, NULL) != RSMOE_OK && strstr(rsmoe_last_error(), "none.json"), "missing file: %s", rsmoe_last_error());
    c = base_config("1", g_model, a, 2);
    snprintf(c.vqa_data, sizeof c.vqa_data, "%s", g_vqa);
    c.vqa_ratio = 0;
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "vqa_ratio"), "ratio 0: %s",
          rsmoe_last_error());
}

/* stage scst on the stage-II model of stages_lower_the_loss_and_chain: rewards are logged and in
 * range, the experts' adapters start from stage II's and change, an interrupted run resumes
 * bit-exactly, and options the stage cannot honour are refused. (That it raises the reward is
 * tests/test_scst.sh, on RSICD: the test preset's byte-level samples score ~0.) */
static double g_reward[512];
static int g_nreward;
static void on_reward(const rs_train_event *e, void *ud) {
    on_log(e, ud);
    if (e->kind == 0 && g_nreward < 512) g_reward[g_nreward++] = e->reward;
}
static rs_train_config scst_config(const char *model, const char *out, int steps) {
    rs_train_config c = base_config("scst", model, out, steps);
    c.max_caption_tokens = 16;
    c.batch = 3;
    c.scst_samples = 4;
    return c;
}
TEST(scst_trains_the_experts_and_resumes) {
    char s2[200], a[200], b[200];
    snprintf(s2, sizeof s2, "%s/s2.gguf", g_dir);
    snprintf(a, sizeof a, "%s/scst_a.gguf", g_dir);
    snprintf(b, sizeof b, "%s/scst_b.gguf", g_dir);
    struct stat sb;
    REQUIRE(stat(s2, &sb) == 0, "the stage-II model of stages_lower_the_loss_and_chain");
    losses LA = {0}, LB = {0};
    rs_train_config c = scst_config(s2, a, 6);
    g_nreward = 0;
    REQUIRE(rs_train_run(&c, on_reward, &LA) == RSMOE_OK, "scst: %s", rsmoe_last_error());
    REQUIRE(g_nreward == 6 && LA.n == 6, "6 steps logged (%d)", g_nreward);
    for (int i = 0; i < 6; i++)
        CHECK(g_reward[i] >= 0 && g_reward[i] < 10 && isfinite(LA.loss[i]), "step %d: reward %g loss %g", i + 1, g_reward[i],
              LA.loss[i]);
    /* the adapters changed from stage II's, the gate did not (no routing gradient but the gate loss's) */
    rs_model *m2, *ma;
    REQUIRE(rs_model_load(s2, &m2) == RSMOE_OK && rs_model_load(a, &ma) == RSMOE_OK, "load");
    const rs_tensor *t2 = rs_gguf_find_tensor(m2->g, "expert.1.blk.0.attn_q.lora_b"),
                    *ta = rs_gguf_find_tensor(ma->g, "expert.1.blk.0.attn_q.lora_b");
    REQUIRE(t2 && ta && rs_tensor_nbytes(t2) == rs_tensor_nbytes(ta), "expert tensors");
    CHECK(memcmp(t2->data, ta->data, rs_tensor_nbytes(t2)) != 0, "adapters trained");
    double d = 0;
    for (int64_t i = 0; i < rs_tensor_nelements(t2); i++) d = fmax(d, fabs(((const float *)t2->data)[i] - ((const float *)ta->data)[i]));
    CHECK(d < 0.1, "adapters moved from stage II's (max change %g), not re-initialised", d);
    rs_model_free(m2);
    rs_model_free(ma);
    /* interrupted after step 3 and resumed: the same 6 losses and the same file as 6 steps at once */
    run_interrupted(scst_config(s2, b, 6), &LB);
    REQUIRE(LB.n == 6, "6 steps in all (%d)", LB.n);
    for (int i = 0; i < 6; i++) CHECK(LA.loss[i] == LB.loss[i], "step %d: %.9g vs %.9g", i + 1, LA.loss[i], LB.loss[i]);
    CHECK(same_files(a, b), "resumed scst model equals the uninterrupted one byte for byte");
    /* questions mixed in (trained by their cross-entropy beside the sampled captions) change
     * what the run writes; the captions' samples stay those of the run without them (same
     * seed, same images), so the difference is the questions' gradient */
    c = scst_config(s2, a, 3);
    snprintf(c.vqa_data, sizeof c.vqa_data, "%s", g_vqa);
    c.vqa_ratio = 1.0f;
    REQUIRE(rs_train_run(&c, NULL, NULL) == RSMOE_OK, "scst with questions: %s", rsmoe_last_error());
    c = scst_config(s2, b, 3);
    REQUIRE(rs_train_run(&c, NULL, NULL) == RSMOE_OK, "scst without: %s", rsmoe_last_error());
    CHECK(!same_files(a, b), "the questions' gradient reaches the model");
    /* what the stage cannot honour */
    c = scst_config(s2, a, 2);
    c.scst_samples = 1;
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "scst_samples"), "1 sample: %s",
          rsmoe_last_error());
    c = scst_config(s2, a, 2);
    c.feat_dropout = 0.1f;
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "feat_dropout"), "dropout: %s",
          rsmoe_last_error());
    c = scst_config(s2, a, 2);
    c.batch = 400;
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "4096"), "too many sequences: %s",
          rsmoe_last_error());
}

TEST(rsicd_50_steps) {
    const char *sh = test_shared_dir();
    if (!sh) SKIP("../shared (RSICD) is absent");
    char data[512], imgs[512], feat[200], out[200];
    snprintf(data, sizeof data, "%s/data/rsicd/dataset_rsicd.json", sh);
    snprintf(imgs, sizeof imgs, "%s/data/rsicd/images", sh);
    snprintf(feat, sizeof feat, "%s/rsicd_feat.gguf", g_dir);
    snprintf(out, sizeof out, "%s/rsicd.gguf", g_dir);
    (void)feat;
    rs_train_config c = base_config("lm", g_model, out, 50);
    snprintf(c.data, sizeof c.data, "%s", data);
    snprintf(c.images, sizeof c.images, "%s", imgs);
    c.batch = 8;
    c.limit = 200;
    c.threads = 2;
    losses L = {0};
    REQUIRE(rs_train_run(&c, on_log, &L) == RSMOE_OK, "train: %s", rsmoe_last_error());
    REQUIRE(L.n == 50, "50 steps");
    double first = mean(L.loss, 5), last = mean(L.loss + 45, 5);
    printf("  RSICD stage lm, captions of 200 images, 50 steps of 8: loss %.3f -> %.3f\n", first, last);
    CHECK(last < 0.6 * first, "the loss falls by at least 40%% (%.3f -> %.3f)", first, last);
}

TEST(bad_configs) {
    rs_train_config c = base_config("3", g_model, "/tmp/x.gguf", 5);
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "stage 3 refused");
    c = base_config("1", g_model, "/tmp/x.gguf", 5);
    c.features[0] = 0;
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "feature cache"),
          "stage 1 without features: %s", rsmoe_last_error());
    c = base_config("1", g_model, g_model, 5);
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "out = model refused");
    c = base_config("1", g_model, "/tmp/x.gguf", 5);
    snprintf(c.data, sizeof c.data, "/nonexistent.json");
    CHECK(rs_train_run(&c, NULL, NULL) != RSMOE_OK && strstr(rsmoe_last_error(), "nonexistent"), "missing data: %s", rsmoe_last_error());
    c = base_config("1", g_model, "/tmp/x.gguf", 5);
    c.resume = 1;
    snprintf(c.out, sizeof c.out, "%s/never.gguf", g_dir);
    CHECK(rs_train_run(&c, NULL, NULL) == RSMOE_ERR_IO, "resume without a state: %s", rsmoe_last_error());
    rs_train_config d = rs_train_default_config();
    CHECK(rs_train_config_set(&d, "bogus", "1") == RSMOE_ERR_INVALID_ARG, "unknown key");
    CHECK(rs_train_config_set(&d, "lr", "fast") == RSMOE_ERR_INVALID_ARG, "bad number");
    char cfg[200];
    snprintf(cfg, sizeof cfg, "%s/cfg.txt", g_dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "# a comment\nstage = 2\nbatch=3 # trailing comment\nlr = 0.5\nnot a line\n");
    fclose(f);
    CHECK(rs_train_config_load(&d, cfg) == RSMOE_ERR_FORMAT && strstr(rsmoe_last_error(), ":5:"), "line 5 named: %s", rsmoe_last_error());
    CHECK(!strcmp(d.stage, "2") && d.batch == 3 && d.lr == 0.5f, "values before the bad line read");
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rsmoe_test_train_%d", (int)getpid());
    mkdir(g_dir, 0755);
    snprintf(g_model, sizeof g_model, "%s/m.gguf", g_dir);
    snprintf(g_data, sizeof g_data, "%s/ds.json", g_dir);
    snprintf(g_feat, sizeof g_feat, "%s/feat.gguf", g_dir);
    rs_init_params ip = rs_init_default_params();
    if (rs_model_init_preset(rs_preset_find("test"), &ip, g_model, NULL, NULL)) { fprintf(stderr, "%s\n", rsmoe_last_error()); return 1; }
    FILE *f = fopen(g_data, "w");
    fprintf(f, "{\"images\": ["
               "{\"filename\": \"rgb37.png\", \"split\": \"train\", \"sentences\": [{\"raw\": \"many buildings are in a dense residential area.\"}, {\"raw\": \"a road is beside the buildings.\"}]},"
               "{\"filename\": \"rgb40.jpg\", \"split\": \"train\", \"sentences\": [{\"raw\": \"it is a piece of bareland.\"}, {\"raw\": \"two white tanks are near a road.\"}]},"
               "{\"filename\": \"grey24.jpg\", \"split\": \"train\", \"sentences\": [{\"raw\": \"a bridge is over a river.\"}, {\"raw\": \"green trees are around a pond.\"}]}]}");
    fclose(f);
    if (!fixture_features(g_data, g_model, g_feat)) return 1;
    snprintf(g_vqa, sizeof g_vqa, "%s/vqa.json", g_dir);
    f = fopen(g_vqa, "w");
    fprintf(f, "{\"images\": [{\"id\": 0, \"filename\": \"rgb37.png\", \"split\": \"train\", \"active\": true, \"questions_ids\": [0]},"
               "{\"id\": 1, \"filename\": \"rgb40.jpg\", \"split\": \"train\", \"active\": true, \"questions_ids\": [1]},"
               "{\"id\": 2, \"filename\": \"grey24.jpg\", \"split\": \"train\", \"active\": true, \"questions_ids\": [2]}],"
               "\"questions\": [{\"id\": 0, \"img_id\": 0, \"type\": \"scene\", \"question\": \"what is the scene?\", \"answers_ids\": [0], \"active\": true},"
               "{\"id\": 1, \"img_id\": 1, \"type\": \"scene\", \"question\": \"what is the scene?\", \"answers_ids\": [1], \"active\": true},"
               "{\"id\": 2, \"img_id\": 2, \"type\": \"scene\", \"question\": \"what is the scene?\", \"answers_ids\": [2], \"active\": true}],"
               "\"answers\": [{\"id\": 0, \"question_id\": 0, \"answer\": \"houses\", \"active\": true},"
               "{\"id\": 1, \"question_id\": 1, \"answer\": \"sand\", \"active\": true},"
               "{\"id\": 2, \"question_id\": 2, \"answer\": \"river\", \"active\": true}]}");
    fclose(f);
    RUN(stages_lower_the_loss_and_chain);
    RUN(gate_lr_mult_scales_the_gate_step);
    RUN(scst_trains_the_experts_and_resumes);
    RUN(stage1_full_llm);
    RUN(resume_is_bit_exact);
    RUN(feature_dropout_resumes_exactly);
    RUN(aug_views_resume_exactly);
    RUN(vqa_mixed_batches);
    RUN(rsicd_50_steps);
    RUN(bad_configs);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_summary();
}
