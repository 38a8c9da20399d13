/* test_model.c - the whole RS-MoE forward path against the independent NumPy reference
 * (tests/ref/rsmoe_ref.py) on the `test` preset with seeded random weights (LoRA B random so
 * that the experts differ): image-encoder output, Q-Former output, visual prefix, router gates
 * and soft prompts, first-step logits of each expert and of the LLM Block alone (1e-4
 * normalised), and the greedy token ids of every stream (identical). Also error handling of
 * the public API. */
#include "formats/tflite.h"
#include "model/encoder_cnn.h"
#include "kernels/bf16x3.h"
#include "kernels/q8x16.h"
#include "model/model.h"
#include "model/pipeline_debug.h"
#include "rsmoe.h"
#include "ref_compare.h"
#include "test.h"

#include <sys/stat.h>

static char g_dir[256], g_model[300], g_model_views[300], g_img[300];
static rsmoe_image g_image;
static const char *k_instr = "Describe this remote sensing image.";
static const char *k_question = "Is there a bridge?";

static int run_ref_model(const char *model, const char *outdir, const char *question, int views) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/rsmoe_ref.py %s %s 32 32 %s '%s' %s%s%s --max-len 8 --views %d >/dev/null 2>%s/err.txt",
             model, g_img, outdir, k_instr, question ? "'" : "", question ? question : "", question ? "'" : "", views, outdir);
    mkdir(outdir, 0755);
    return system(cmd);
}

static int run_ref(const char *outdir, const char *question) { return run_ref_model(g_model, outdir, question, 1); }

/* 8 tokens per expert, scored by their raw sum of log-probabilities (length penalty 0): beam
 * search with `beams` beams can only do as well as greedy or better (p: greedy settings) */
static void beams_vs_greedy(rsmoe_context *c, rsmoe_generate_params p, int beams) {
    p.length_penalty = 0.0f;
    p.min_len = 8;
    rsmoe_result g, b;
    REQUIRE(rsmoe_caption(c, &g_image, &p, &g) == RSMOE_OK, "greedy: %s", rsmoe_last_error());
    p.beams = beams;
    if (rsmoe_caption(c, &g_image, &p, &b) != RSMOE_OK) { rsmoe_result_free(&g); REQUIRE(0, "beams: %s", rsmoe_last_error()); }
    for (int e = 0; e < 3; e++) {
        CHECK(b.aspects[e].n_tokens == 8 && g.aspects[e].n_tokens == 8, "8 tokens each");
        CHECK(b.aspects[e].logprob >= g.aspects[e].logprob - 1e-4, "expert %d: beam %.4f < greedy %.4f", e,
              b.aspects[e].logprob, g.aspects[e].logprob);
    }
    rsmoe_result_free(&g);
    rsmoe_result_free(&b);
}

/* an answer: the expert of the reference's top gate answered, as the reference's */
static void answer_compare(const char *outdir, rsmoe_context *c, const rsmoe_result *r) {
    size_t n;
    double *gates = test_read_f64(outdir, "gates.bin", &n);
    REQUIRE(gates && n == 3, "gates");
    int top = 0;
    for (int e = 1; e < 3; e++) if (gates[e] > gates[top]) top = e;
    free(gates);
    CHECK(r->chosen == top, "router picked expert %d, reference top gate %d", r->chosen, top);
    int one[1] = {top};
    ref_compare(outdir, c, r, one, 1, NULL);
}

TEST(parity_caption_and_vqa) {
    if (!test_have_python("numpy")) SKIP("/usr/bin/python3 with numpy is not available for the reference");
    char out1[320], out2[320];
    snprintf(out1, sizeof out1, "%s/ref_caption", g_dir);
    snprintf(out2, sizeof out2, "%s/ref_vqa", g_dir);
    REQUIRE(run_ref(out1, NULL) == 0, "reference script failed (see %s/err.txt)", out1);
    REQUIRE(run_ref(out2, k_question) == 0, "reference script failed (see %s/err.txt)", out2);
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(g_model, NULL, &st);
    REQUIRE(m, "load: %s", rsmoe_last_error());
    for (int threads = 1; threads <= 2; threads++) {
        rsmoe_context_params cp = rsmoe_context_default_params();
        cp.n_threads = threads;
        rsmoe_context *c = rsmoe_context_new(m, &cp, &st);
        REQUIRE(c, "context: %s", rsmoe_last_error());
        rs_ctx_set_debug(c, true);
        /* detailed caption: every expert */
        rsmoe_generate_params p = greedy(false);
        rsmoe_result r;
        REQUIRE(rsmoe_caption(c, &g_image, &p, &r) == RSMOE_OK, "caption: %s", rsmoe_last_error());
        int all[3] = {0, 1, 2};
        ref_compare(out1, c, &r, all, 3, NULL);
        CHECK(r.n_aspects == 3 && r.chosen == -1, "3 aspects joined");
        rsmoe_result_free(&r);
        /* the LLM Block alone */
        p.use_experts = false;
        REQUIRE(rsmoe_caption(c, &g_image, &p, &r) == RSMOE_OK, "caption (no experts): %s", rsmoe_last_error());
        ref_compare(out1, c, &r, NULL, 1, "llm");
        rsmoe_result_free(&r);
        /* a question: the top-gated expert */
        p = greedy(true);
        REQUIRE(rsmoe_answer(c, &g_image, k_question, &p, &r) == RSMOE_OK, "answer: %s", rsmoe_last_error());
        answer_compare(out2, c, &r);
        rsmoe_result_free(&r);
        rsmoe_context_free(c);
    }
    rsmoe_model_free(m);
}

/* test-time views: three views of the image (as given, mirrored, rotated), their gates averaged and
 * each expert's next token from the mean of the views' log-softmaxes, against the reference run
 * the same way (the tokens and their summed log-probability); the reference's sums must also
 * differ from the one-view run's by well over the tolerance (else the check could not tell views
 * from none), and beam search over the ensemble must score at least its greedy path */
TEST(parity_views) {
    if (!test_have_python("numpy")) SKIP("/usr/bin/python3 with numpy is not available for the reference");
    char out[320], outq[320];
    snprintf(out, sizeof out, "%s/ref_views", g_dir);
    snprintf(outq, sizeof outq, "%s/ref_views_vqa", g_dir);
    /* weights drawn wider than the test model's, so that the image moves the logits */
    rs_init_params ip = rs_init_default_params();
    ip.seed = 9;
    ip.init_std = 0.15f;
    ip.lora_random_b = true;
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, g_model_views, NULL, NULL) == RSMOE_OK, "init: %s", rsmoe_last_error());
    REQUIRE(run_ref_model(g_model_views, out, NULL, 3) == 0, "reference script failed (see %s/err.txt)", out);
    REQUIRE(run_ref_model(g_model_views, outq, k_question, 3) == 0, "reference script failed (see %s/err.txt)", outq);
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(g_model_views, NULL, &st);
    REQUIRE(m, "load: %s", rsmoe_last_error());
    rsmoe_context_params cp = rsmoe_context_default_params();
    cp.n_threads = 2;
    cp.max_views = 3;
    rsmoe_context *c = rsmoe_context_new(m, &cp, &st);
    REQUIRE(c, "context: %s", rsmoe_last_error());
    rs_ctx_set_debug(c, true);
    rsmoe_generate_params p = greedy(false);
    rsmoe_result one, r;
    REQUIRE(rsmoe_caption(c, &g_image, &p, &one) == RSMOE_OK, "caption: %s", rsmoe_last_error());
    p.views = 3;
    REQUIRE(rsmoe_caption(c, &g_image, &p, &r) == RSMOE_OK, "caption, 3 views: %s", rsmoe_last_error());
    int all[3] = {0, 1, 2};
    ref_compare(out, c, &r, all, 3, NULL);
    double apart = 0;
    for (int e = 0; e < 3; e++) {
        char nm[32];
        snprintf(nm, sizeof nm, "sumlp_%d.bin", e);
        size_t n;
        double *lp = test_read_f64(out, nm, &n);
        REQUIRE(lp && n == 1, "reference %s", nm);
        CHECK(fabs(r.aspects[e].logprob - lp[0]) <= 1e-4 * (1 + fabs(lp[0])), "expert %d: log-probability %.6f, reference %.6f",
              e, r.aspects[e].logprob, lp[0]);
        apart = fmax(apart, fabs(one.aspects[e].logprob - lp[0]) / (1 + fabs(lp[0])));
        free(lp);
    }
    CHECK(apart > 1e-2, "the reference's three views score like one view (%.3g apart): the check cannot fail", apart);
    beams_vs_greedy(c, p, 3); /* beam search over the ensemble */
    /* a question: the top expert by the views' mean gate */
    rsmoe_result q;
    p = greedy(true);
    p.views = 3;
    REQUIRE(rsmoe_answer(c, &g_image, k_question, &p, &q) == RSMOE_OK, "answer, 3 views: %s", rsmoe_last_error());
    answer_compare(outq, c, &q);
    rsmoe_result_free(&q);
    /* more views than the context was made for, and a context for too many */
    p.views = 4;
    CHECK(rsmoe_answer(c, &g_image, k_question, &p, &q) == RSMOE_ERR_INVALID_ARG, "4 views in a 3-view context refused");
    rsmoe_result_free(&one);
    rsmoe_result_free(&r);
    rsmoe_context_free(c);
    cp.max_views = 9;
    CHECK(!rsmoe_context_new(m, &cp, &st) && st == RSMOE_ERR_INVALID_ARG, "9 views refused");
    rsmoe_model_free(m);
}

TEST(beam_search_finds_at_least_greedy_score) {
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(g_model, NULL, &st);
    REQUIRE(m, "load");
    rsmoe_context *c = rsmoe_context_new(m, NULL, &st);
    REQUIRE(c, "context");
    rsmoe_generate_params p = greedy(false);
    beams_vs_greedy(c, p, 4);
    p.length_penalty = 0.0f;
    p.min_len = 8;
    /* sampling with a seed is reproducible */
    p.beams = 1;
    p.temperature = 1.0f;
    p.seed = 5;
    rsmoe_result s1, s2;
    REQUIRE(rsmoe_caption(c, &g_image, &p, &s1) == RSMOE_OK && rsmoe_caption(c, &g_image, &p, &s2) == RSMOE_OK, "sampling");
    CHECK(!strcmp(s1.text, s2.text), "same seed, same caption");
    rsmoe_result_free(&s1);
    rsmoe_result_free(&s2);
    rsmoe_context_free(c);
    rsmoe_model_free(m);
}

/* every preset dtype loads and runs (the patch embedding and norms must stay f32) */
TEST(quantised_presets_run) {
    rs_dtype types[3] = {RS_F16, RS_BF16, RS_Q8_0};
    for (int k = 0; k < 3; k++) {
        char path[320];
        snprintf(path, sizeof path, "%s/q%d.gguf", g_dir, k);
        rs_init_params ip = rs_init_default_params();
        ip.wtype = types[k];
        REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, path, NULL, NULL) == RSMOE_OK, "init: %s", rsmoe_last_error());
        rsmoe_status st;
        rsmoe_model *m = rsmoe_model_load(path, NULL, &st);
        REQUIRE(m, "load %s: %s", rs_dtype_name(types[k]), rsmoe_last_error());
        rsmoe_context *c = rsmoe_context_new(m, NULL, &st);
        REQUIRE(c, "context");
        rsmoe_generate_params p = greedy(false);
        rsmoe_result r;
        CHECK(rsmoe_caption(c, &g_image, &p, &r) == RSMOE_OK, "caption with %s weights: %s", rs_dtype_name(types[k]), rsmoe_last_error());
        rsmoe_result_free(&r);
        rsmoe_context_free(c);
        rsmoe_model_free(m);
    }
}

/* One greedy caption of g_image by the model at path loaded with mp: the first-step logits of
 * every stream (*logits, malloc'd, *n floats), the text (strdup'd), and how many q8_0 / f32
 * tensors were packed at load (*n_f32_other: packed f32 tensors outside the ViT's blocks). */
static bool caption_loaded(const char *path, const rsmoe_model_params *mp, float **logits, size_t *n, char **text,
                           int *n_q8, int *n_f32, int *n_f32_other) {
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(path, mp, &st);
    if (!m) return false;
    const rs_model *im = rs_model_of(m);
    *n_q8 = *n_f32 = *n_f32_other = 0;
    for (int64_t i = 0; i < rs_gguf_n_tensors(im->g); i++) {
        const rs_tensor *t = rs_gguf_tensor(im->g, i);
        if (!t->packed) continue;
        if (t->type == RS_Q8_0) (*n_q8)++;
        if (t->type == RS_F32) (*n_f32)++, *n_f32_other += strncmp(t->name, "v.blk.", 6) != 0;
    }
    rsmoe_context *c = rsmoe_context_new(m, NULL, &st);
    bool ok = c != NULL;
    rsmoe_result r;
    rsmoe_generate_params p = greedy(false);
    if (ok) rs_ctx_set_debug(c, true);
    if (ok && (ok = rsmoe_caption(c, &g_image, &p, &r) == RSMOE_OK)) {
        rs_ctx_debug d;
        rs_ctx_get_debug(c, &d);
        *n = (size_t)d.n_streams * (size_t)im->llm.c.vocab;
        *logits = malloc(sizeof(float) * *n);
        if (*logits) memcpy(*logits, d.first_logits, sizeof(float) * *n);
        *text = strdup(r.text);
        ok = *logits && *text;
        rsmoe_result_free(&r);
    }
    rsmoe_context_free(c);
    rsmoe_model_free(m);
    return ok;
}

static double logits_nerr(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den + 1e-30));
}

/* q8_0 weights repacked for the VNNI kernel (the default where the CPU has it) give the
 * same logits as the row-wise q8_0 kernels up to float summation order, and the same caption */
TEST(q8_repack_matches_rowwise) {
    char path[320];
    snprintf(path, sizeof path, "%s/q8repack.gguf", g_dir);
    rs_init_params ip = rs_init_default_params();
    ip.wtype = RS_Q8_0;
    ip.lora_random_b = true;
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, path, NULL, NULL) == RSMOE_OK, "init: %s", rsmoe_last_error());
    float *logits[2] = {NULL, NULL};
    size_t n_logits = 0;
    char *text[2] = {NULL, NULL};
    int n_packed[2] = {0, 0}, nf, nfo;
    for (int k = 0; k < 2; k++) {
        rsmoe_model_params mp = rsmoe_model_default_params();
        mp.repack_q8 = k == 0;
        REQUIRE(caption_loaded(path, &mp, &logits[k], &n_logits, &text[k], &n_packed[k], &nf, &nfo), "caption: %s",
                rsmoe_last_error());
    }
    CHECK(n_packed[1] == 0, "repack_q8 = 0 packed %d tensors", n_packed[1]);
    if (rs_q8x16_native()) CHECK(n_packed[0] > 0, "repack_q8 = 1 packed no tensor on a VNNI CPU");
    else CHECK(n_packed[0] == 0, "packed %d tensors without VNNI", n_packed[0]);
    double e = logits_nerr(logits[0], logits[1], n_logits);
    CHECK(n_logits > 0 && e < 1e-4, "first-step logits differ: normalised error %.3g", e);
    CHECK(!strcmp(text[0], text[1]), "captions differ: '%s' vs '%s'", text[0], text[1]);
    free(logits[0]); free(logits[1]); free(text[0]); free(text[1]);
}

/* amx_f32: the f32 ViT's block matrices packed as bf16 pairs (kernels/bf16x3.h) where the CPU
 * has AMX-BF16: first-step logits within 1e-4 (normalised) of the exact f32 load, the same
 * caption; amx_f32 = 0 packs nothing. The test preset's 17 image tokens take the AMX path. */
TEST(f32_amx_matches_exact) {
    float *logits[2] = {NULL, NULL};
    size_t n_logits = 0;
    char *text[2] = {NULL, NULL};
    int n_packed[2] = {0, 0}, nq, other = 0;
    for (int k = 0; k < 2; k++) {
        rsmoe_model_params mp = rsmoe_model_default_params();
        mp.amx_f32 = k == 0;
        int o;
        REQUIRE(caption_loaded(g_model, &mp, &logits[k], &n_logits, &text[k], &nq, &n_packed[k], &o), "caption: %s",
                rsmoe_last_error());
        other += o;
    }
    CHECK(other == 0, "%d packed f32 tensors are not image-encoder matrices", other);
    CHECK(n_packed[1] == 0, "amx_f32 = 0 packed %d tensors", n_packed[1]);
    /* 2 blocks x (qkv, out, up, down) */
    if (rs_bf16x3_native()) CHECK(n_packed[0] == 8, "amx_f32 = 1 packed %d tensors, not 8", n_packed[0]);
    else CHECK(n_packed[0] == 0, "packed %d tensors without AMX-BF16", n_packed[0]);
    double e = logits_nerr(logits[0], logits[1], n_logits);
    CHECK(n_logits > 0 && e < 1e-4, "first-step logits differ: normalised error %.3g", e);
    if (rs_bf16x3_native()) CHECK(e > 0, "the AMX path gave the exact path's logits bit for bit: not taken?");
    CHECK(!strcmp(text[0], text[1]), "captions differ: '%s' vs '%s'", text[0], text[1]);
    free(logits[0]); free(logits[1]); free(text[0]); free(text[1]);
}

TEST(api_errors) {
    rsmoe_status st;
    CHECK(rsmoe_model_load("/nonexistent/model.gguf", NULL, &st) == NULL && st == RSMOE_ERR_IO, "missing file: %d", st);
    CHECK(strstr(rsmoe_last_error(), "/nonexistent/model.gguf") != NULL, "message names the file: %s", rsmoe_last_error());
    rsmoe_model *m = rsmoe_model_load(g_model, NULL, &st);
    REQUIRE(m, "load");
    rsmoe_context *c = rsmoe_context_new(m, NULL, &st);
    REQUIRE(c, "context");
    rsmoe_generate_params p = greedy(true);
    rsmoe_result r;
    CHECK(rsmoe_answer(c, &g_image, "   ", &p, &r) == RSMOE_ERR_INVALID_ARG, "empty question refused");
    CHECK(rsmoe_answer(c, &g_image, NULL, &p, &r) == RSMOE_ERR_INVALID_ARG, "NULL question refused");
    p.beams = 99;
    CHECK(rsmoe_caption(c, &g_image, &p, &r) == RSMOE_ERR_INVALID_ARG, "too many beams refused");
    rsmoe_image empty = {0};
    p.beams = 1;
    CHECK(rsmoe_caption(c, &empty, &p, &r) == RSMOE_ERR_INVALID_ARG, "empty image refused");
    rsmoe_image img;
    CHECK(rsmoe_image_load(g_model, &img) != RSMOE_OK, "a GGUF is not an image");
    rsmoe_context_free(c);
    rsmoe_model_free(m);
}

/* rs_lora_set_bytes (bench infer's bytes per decode step) counts what the file holds for an
 * expert: every lora_a / lora_b tensor of expert e, as f32 */
TEST(lora_set_bytes_counts_expert_tensors) {
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(g_model, NULL, &st);
    REQUIRE(m, "load: %s", rsmoe_last_error());
    const rs_model *im = rs_model_of(m);
    REQUIRE(im->moe.n_experts >= 2, "%d experts", im->moe.n_experts);
    for (int e = 0; e < im->moe.n_experts; e++) {
        char pre[32];
        snprintf(pre, sizeof pre, "expert.%d.", e);
        size_t want = 0;
        for (int64_t i = 0; i < rs_gguf_n_tensors(im->g); i++) {
            const rs_tensor *t = rs_gguf_tensor(im->g, i);
            if (!strncmp(t->name, pre, strlen(pre)) && (strstr(t->name, ".lora_a") || strstr(t->name, ".lora_b")))
                want += (size_t)rs_tensor_nelements(t) * sizeof(float);
        }
        size_t got = rs_lora_set_bytes(&im->experts[e], &im->llm.c);
        CHECK(want > 0 && got == want, "expert %d: %zu bytes counted, the file holds %zu", e, got, want);
    }
    CHECK(rs_lora_set_bytes(NULL, &im->llm.c) == 0, "NULL adapter: 0 bytes");
    rsmoe_model_free(m);
}

/* the model with a pretrained CNN encoder (MobileNet v1 0.25 from TFLite) in place of the ViT:
 * the visual tokens the pipeline feeds the Q-Former equal the encoder's own forward on the
 * resized image, and captioning runs */
TEST(cnn_encoder_model) {
    const char *sh = test_shared_dir();
    if (!sh) SKIP("../shared (the TFLite MobileNet) is absent");
    char tfl[512], enc[320], model[320];
    snprintf(tfl, sizeof tfl, "%s/data/weights/mobilenet_v1_0.25_128_quant.tflite", sh);
    snprintf(enc, sizeof enc, "%s/enc.gguf", g_dir);
    snprintf(model, sizeof model, "%s/cnn_model.gguf", g_dir);
    rs_tflite *t = NULL;
    rs_cnn_encoder *e = NULL;
    REQUIRE(rs_tflite_load(tfl, &t) == RSMOE_OK, "tflite: %s", rsmoe_last_error());
    REQUIRE(rs_cnn_from_tflite(t, &e) == RSMOE_OK, "cnn: %s", rsmoe_last_error());
    rs_tflite_free(t);
    REQUIRE(rs_cnn_save_gguf(e, enc, NULL, 0) == RSMOE_OK, "save: %s", rsmoe_last_error());
    rs_init_params ip = rs_init_default_params();
    ip.encoder = enc;
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, model, NULL, NULL) == RSMOE_OK, "init: %s", rsmoe_last_error());
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(model, NULL, &st);
    REQUIRE(m, "load: %s", rsmoe_last_error());
    rsmoe_context *c = rsmoe_context_new(m, NULL, &st);
    REQUIRE(c, "context");
    rs_ctx_set_debug(c, true);
    /* an image already at the encoder's size (no resize): tokens must equal the encoder's */
    int W = e->in_w, H = e->in_h;
    rsmoe_image img = {.width = W, .height = H, .data = malloc((size_t)W * H * 3)};
    for (int i = 0; i < W * H * 3; i++) img.data[i] = (uint8_t)((i * 37) & 255);
    rsmoe_generate_params p = greedy(false);
    rsmoe_result r;
    REQUIRE(rsmoe_caption(c, &img, &p, &r) == RSMOE_OK, "caption: %s", rsmoe_last_error());
    CHECK(r.n_aspects == 3 && r.text, "caption made");
    rsmoe_result_free(&r);
    rs_ctx_debug d;
    rs_ctx_get_debug(c, &d);
    size_t n = (size_t)e->ntokens * e->token_dim;
    float *want = malloc(sizeof(float) * n);
    rs_arena ar;
    REQUIRE(rs_arena_init(&ar, rs_cnn_scratch_bytes(e) + 4096) == RSMOE_OK, "arena");
    REQUIRE(rs_cnn_forward_u8(e, img.data, want, NULL, &ar, NULL) == RSMOE_OK, "cnn forward");
    CHECK(test_nerr_f32(d.enc, want, n) <= 1e-6, "visual tokens equal the encoder's (err %.3g)", test_nerr_f32(d.enc, want, n));
    /* other sizes are resized */
    rsmoe_image big = {.width = 300, .height = 200, .data = calloc(300 * 200 * 3, 1)};
    CHECK(rsmoe_caption(c, &big, &p, &r) == RSMOE_OK, "caption of a 300x200 image: %s", rsmoe_last_error());
    rsmoe_result_free(&r);
    free(big.data);
    rs_arena_free(&ar);
    free(want);
    free(img.data);
    rsmoe_context_free(c);
    rsmoe_model_free(m);
    rs_cnn_free(e);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rsmoe_test_model_%d", (int)getpid());
    mkdir(g_dir, 0755);
    snprintf(g_model, sizeof g_model, "%s/test.gguf", g_dir);
    snprintf(g_img, sizeof g_img, "%s/img.rgb", g_dir);
    snprintf(g_model_views, sizeof g_model_views, "%s/views.gguf", g_dir);
    rs_init_params ip = rs_init_default_params();
    ip.seed = 7;
    ip.lora_random_b = true;
    if (rs_model_init_preset(rs_preset_find("test"), &ip, g_model, NULL, NULL) != RSMOE_OK) {
        fprintf(stderr, "init: %s\n", rsmoe_last_error());
        return 1;
    }
    g_image.width = g_image.height = 32;
    g_image.data = malloc(32 * 32 * 3);
    rs_rng rng;
    rs_rng_seed(&rng, 11);
    for (int i = 0; i < 32 * 32 * 3; i++) g_image.data[i] = (uint8_t)(rs_rng_u64(&rng) & 255);
    FILE *f = fopen(g_img, "wb");
    fwrite(g_image.data, 1, 32 * 32 * 3, f);
    fclose(f);
    RUN(parity_caption_and_vqa);
    RUN(parity_views);
    RUN(beam_search_finds_at_least_greedy_score);
    RUN(quantised_presets_run);
    RUN(q8_repack_matches_rowwise);
    RUN(f32_amx_matches_exact);
    RUN(api_errors);
    RUN(lora_set_bytes_counts_expert_tensors);
    RUN(cnn_encoder_model);
    free(g_image.data);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_summary();
}
