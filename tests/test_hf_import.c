/* test_hf_import.c - `rsmoe import hf`: tiny Hugging Face checkpoints with the real tensor names
 * (tests/ref/hf_make.py: InstructBLIP vision + Q-Former, a sharded LLaMA with Llama-3 RoPE
 * scaling, F32/F16/BF16 tensors, tokenizer.json) are imported, and our forward is compared with
 * tests/ref/hf_ref.py, a float64 NumPy reference that reads the safetensors itself: image
 * encoder, Q-Former, prefix, gates, soft prompts, first-step logits (1e-4 normalised) and every
 * greedy token; the LLM-only import's logits likewise, and its bf16/q8_0 outputs within their
 * rounding. The safetensors reader on hand-made files; SentencePiece tokenizer.model against
 * llama.cpp's vocabulary (../shared); bad inputs give errors naming the tensor or file. */
#include "formats/gguf.h"
#include "formats/hf_import.h"
#include "formats/safetensors.h"
#include "model/llm_load.h"
#include "rsmoe.h"
#include "ref_compare.h"
#include "test.h"

#include <sys/stat.h>
#include <sys/wait.h>

static char g_dir[256];
static bool g_have;   /* fixtures made (numpy present) */
static const char *k_instr = "Describe this remote sensing image.";
static const char *k_question = "Is there a bridge?";





static void path(char *out, size_t cap, const char *sub) { snprintf(out, cap, "%s/%s", g_dir, sub); }

/* ------------------------------------------------------------------ safetensors reader */
static void put_u64(FILE *f, uint64_t v) {
    for (int i = 0; i < 8; i++) fputc((int)(v >> (8 * i)) & 255, f);
}

static void write_st(const char *p, const char *hdr, const void *data, size_t n) {
    FILE *f = fopen(p, "wb");
    put_u64(f, strlen(hdr));
    fwrite(hdr, 1, strlen(hdr), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

TEST(safetensors_reader) {
    char p[320];
    path(p, sizeof p, "hand.safetensors");
    /* a: F32 [2] {1, -2}; b: F16 [2] {1.5, -0.25}; c: BF16 [1,2] {1.5, 3.0}; d: I64 [1] */
    uint8_t data[8 + 4 + 4 + 8] = {0};
    float fa[2] = {1.0f, -2.0f};
    memcpy(data, fa, 8);
    uint16_t fb[2] = {0x3E00, 0xB400}, fc[2] = {0x3FC0, 0x4040};
    memcpy(data + 8, fb, 4);
    memcpy(data + 12, fc, 4);
    int64_t one = 7;
    memcpy(data + 16, &one, 8);
    write_st(p, "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                "\"c\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[12,16]},"
                "\"d\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]}}",
             data, sizeof data);
    rs_safetensors *s = NULL;
    REQUIRE(rs_st_open(p, &s) == RSMOE_OK, "open: %s", rsmoe_last_error());
    CHECK(rs_st_n_tensors(s) == 4, "4 tensors, got %lld", (long long)rs_st_n_tensors(s));
    const rs_st_tensor *a = rs_st_find(s, "a"), *b = rs_st_find(s, "b"), *c = rs_st_find(s, "c"), *d = rs_st_find(s, "d");
    REQUIRE(a && b && c && d && !rs_st_find(s, "e"), "lookup");
    CHECK(c->ndim == 2 && c->shape[0] == 1 && c->shape[1] == 2 && c->dtype == RS_ST_BF16, "c's shape/dtype");
    float v[2];
    CHECK(rs_st_read_f32(a, 0, 2, v) == RSMOE_OK && v[0] == 1.0f && v[1] == -2.0f, "F32 values");
    CHECK(rs_st_read_f32(b, 0, 2, v) == RSMOE_OK && v[0] == 1.5f && v[1] == -0.25f, "F16 values %g %g", v[0], v[1]);
    CHECK(rs_st_read_f32(c, 1, 1, v) == RSMOE_OK && v[0] == 3.0f, "BF16 value %g", v[0]);
    CHECK(rs_st_read_f32(d, 0, 1, v) == RSMOE_ERR_UNSUPPORTED && strstr(rsmoe_last_error(), "d"), "I64 is not float");
    CHECK(rs_st_read_f32(a, 1, 2, v) == RSMOE_ERR_INVALID_ARG, "range checked");
    rs_st_close(s);
    /* malformed files */
    static const struct { const char *hdr; size_t n; const char *msg;
    } bad[] = {
        {"not json", 0, "JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "truncated"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "a"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_st(p, bad[i].hdr, data, bad[i].n);
        s = NULL;
        rsmoe_status st = rs_st_open(p, &s);
        CHECK(st == RSMOE_ERR_FORMAT && !s, "case %zu refused (%d)", i, st);
        CHECK(strstr(rsmoe_last_error(), bad[i].msg) && strstr(rsmoe_last_error(), p), "case %zu: message '%s'", i,
              rsmoe_last_error());
    }
    FILE *f = fopen(p, "wb");
    fputs("abc", f);
    fclose(f);
    CHECK(rs_st_open(p, &s) == RSMOE_ERR_FORMAT, "3-byte file refused");
    CHECK(rs_st_open("/nonexistent/x.safetensors", &s) == RSMOE_ERR_IO, "missing file");
}

/* ------------------------------------------------------------------ full model parity */
static int run_ref(const char *model, const char *img, const char *outdir, const char *question) {
    char cmd[3072], blip[300], llm[300];
    path(blip, sizeof blip, "blip");
    path(llm, sizeof llm, "llm");
    mkdir(outdir, 0755);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/ref/hf_ref.py caption %s %s %s %s 32 32 %s '%s' %s%s%s --max-len 8 >/dev/null 2>%s/err.txt",
             blip, llm, model, img, outdir, k_instr, question ? "'" : "", question ? question : "", question ? "'" : "", outdir);
    return system(cmd);
}

TEST(full_model_parity) {
    if (!g_have) SKIP("/usr/bin/python3 with numpy is not available for the fixtures and the reference");
    char blip[300], llm[300], model[300], img[300], out1[300], out2[300];
    path(blip, sizeof blip, "blip");
    path(llm, sizeof llm, "llm");
    path(model, sizeof model, "full.gguf");
    path(img, sizeof img, "img.rgb");
    path(out1, sizeof out1, "ref_caption");
    path(out2, sizeof out2, "ref_vqa");
    rs_hf_params p = rs_hf_default_params();
    p.vision_dir = blip;
    p.qformer_dir = blip;
    p.llm_dir = llm;
    p.lora_random_b = true;
    p.seed = 3;
    rs_hf_report rep;
    REQUIRE(rs_hf_import(&p, model, &rep) == RSMOE_OK, "import: %s", rsmoe_last_error());
    CHECK(rep.n_imported > 100 && strstr(rep.notes, "qf.token_embd"), "report: %lld imported; notes %s",
          (long long)rep.n_imported, rep.notes);
    rsmoe_image im = {.width = 32, .height = 32, .data = malloc(32 * 32 * 3)};
    rs_rng rng;
    rs_rng_seed(&rng, 5);
    for (int i = 0; i < 32 * 32 * 3; i++) im.data[i] = (uint8_t)(rs_rng_u64(&rng) & 255);
    FILE *f = fopen(img, "wb");
    fwrite(im.data, 1, 32 * 32 * 3, f);
    fclose(f);
    int r1 = run_ref(model, img, out1, NULL), r2 = run_ref(model, img, out2, k_question);
    if (r1 || r2) { free(im.data); REQUIRE(0, "reference script failed (see %s/err.txt, %s/err.txt)", out1, out2); }
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(model, NULL, &st);
    if (!m) { free(im.data); REQUIRE(0, "load: %s", rsmoe_last_error()); }
    rsmoe_context_params cp = rsmoe_context_default_params();
    cp.n_threads = 2;
    rsmoe_context *c = rsmoe_context_new(m, &cp, &st);
    if (c) {
        rs_ctx_set_debug(c, true);
        rsmoe_generate_params gp = greedy(false);
        rsmoe_result r;
        if (rsmoe_caption(c, &im, &gp, &r) == RSMOE_OK) {
            int all[3] = {0, 1, 2};
            ref_compare(out1, c, &r, all, 3, NULL);
            rsmoe_result_free(&r);
        } else CHECK(0, "caption: %s", rsmoe_last_error());
        gp.use_experts = false;
        if (rsmoe_caption(c, &im, &gp, &r) == RSMOE_OK) {
            ref_compare(out1, c, &r, NULL, 1, "llm");
            rsmoe_result_free(&r);
        } else CHECK(0, "caption (no experts): %s", rsmoe_last_error());
        gp = greedy(true);
        if (rsmoe_answer(c, &im, k_question, &gp, &r) == RSMOE_OK) {
            size_t n;
            double *gates = test_read_f64(out2, "gates.bin", &n);
            if (gates && n == 3) {
                int top = 0;
                for (int e = 1; e < 3; e++) if (gates[e] > gates[top]) top = e;
                CHECK(r.chosen == top, "router picked expert %d, reference top gate %d", r.chosen, top);
                int one[1] = {top};
                ref_compare(out2, c, &r, one, 1, NULL);
            } else CHECK(0, "reference gates");
            free(gates);
            rsmoe_result_free(&r);
        } else CHECK(0, "answer: %s", rsmoe_last_error());
        rsmoe_context_free(c);
    } else CHECK(0, "context: %s", rsmoe_last_error());
    rsmoe_model_free(m);
    free(im.data);
}

/* BLIP-2's layout (fused qkv.bias; a Q-Former without text embeddings and text feed-forward;
 * language_projection to another width): the same vision weights give the same image-encoder
 * output as the InstructBLIP checkpoint (the reference of full_model_parity), the missing parts
 * are initialised and reported, and the model captions. */
TEST(blip2_layout) {
    if (!g_have) SKIP("/usr/bin/python3 with numpy is not available for the fixtures and the reference");
    char blip2[300], llm[300], model[300], img[300], out1[300];
    path(blip2, sizeof blip2, "blip2");
    path(llm, sizeof llm, "llm");
    path(model, sizeof model, "blip2.gguf");
    path(img, sizeof img, "img.rgb");
    path(out1, sizeof out1, "ref_caption");
    size_t n;
    double *enc = test_read_f64(out1, "enc.bin", &n);
    if (!enc) SKIP("full_model_parity's reference is absent");
    rs_hf_params p = rs_hf_default_params();
    p.vision_dir = blip2;
    p.qformer_dir = blip2;
    p.llm_dir = llm;
    rs_hf_report rep;
    if (rs_hf_import(&p, model, &rep)) { free(enc); REQUIRE(0, "import: %s", rsmoe_last_error()); }
    CHECK(strstr(rep.notes, "has no word embeddings") && strstr(rep.notes, "no position embeddings") &&
              strstr(rep.notes, "text feed-forward") && strstr(rep.notes, "proj: random"), "notes: %s", rep.notes);
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(model, NULL, &st);
    if (!m) { free(enc); REQUIRE(0, "load: %s", rsmoe_last_error()); }
    rsmoe_context *c = rsmoe_context_new(m, NULL, &st);
    rsmoe_image im = {.width = 32, .height = 32, .data = malloc(32 * 32 * 3)};
    FILE *f = fopen(img, "rb");
    size_t got = f ? fread(im.data, 1, 32 * 32 * 3, f) : 0;
    if (f) fclose(f);
    if (c && got == 32 * 32 * 3) {
        rs_ctx_set_debug(c, true);
        rsmoe_generate_params gp = greedy(false);
        rsmoe_result r;
        if (rsmoe_caption(c, &im, &gp, &r) == RSMOE_OK) {
            rs_ctx_debug d;
            rs_ctx_get_debug(c, &d);
            double e = test_nerr_f64ref(d.enc, enc, n);
            CHECK(e <= 1e-4, "image encoder from BLIP-2's layout: normalised error %.3g", e);
            CHECK(r.n_aspects == 3 && r.text, "captioned");
            rsmoe_result_free(&r);
        } else CHECK(0, "caption: %s", rsmoe_last_error());
    } else CHECK(0, "context / image: %s", rsmoe_last_error());
    rsmoe_context_free(c);
    rsmoe_model_free(m);
    free(im.data);
    free(enc);
}

/* ------------------------------------------------------------------ LLM-only */
static const int32_t k_ids[5] = {1, 76, 105, 110, 36};

/* last-position logits of k_ids through our LLM on a GGUF file */
static rsmoe_status llm_logits(const char *file, float *logits, int *vocab, rs_dtype *q_type) {
    rs_gguf *g = NULL;
    rsmoe_status st = rs_gguf_open(file, &g);
    if (st) return st;
    rs_llm_weights w;
    rs_llm_state *s = NULL;
    if ((st = rs_llm_bind_gguf(g, "llama", NULL, &w))) { rs_gguf_close(g); return st; }
    *vocab = w.c.vocab;
    *q_type = w.layers[0].wq->type;
    int D = w.c.dim, n = 5;
    float *emb = malloc(sizeof(float) * (size_t)n * D);
    int slot[5] = {0}, pos[5] = {0, 1, 2, 3, 4}, lr = 4;
    if (!(st = rs_llm_state_new(&w.c, 16, 1, n, 1, 0, &s)) && !(st = rs_llm_embed(&w, k_ids, n, emb))) {
        rs_llm_batch b = {
            .n_rows = n, .emb = emb, .slot = slot, .pos = pos, .n_logit_rows = 1, .logit_rows = &lr, .logits = logits};
        st = rs_llm_forward(&w, s, &b, NULL);
    }
    rs_llm_state_free(s);
    free(emb);
    rs_llm_unbind(&w);
    rs_gguf_close(g);
    return st;
}

TEST(llm_only_parity_and_types) {
    if (!g_have) SKIP("/usr/bin/python3 with numpy is not available for the fixtures and the reference");
    char llm[300], out[300], ref[300], cmd[1024];
    path(llm, sizeof llm, "llm");
    path(ref, sizeof ref, "llm_ref.bin");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/hf_ref.py llm %s %s %d %d %d %d %d", llm, ref, k_ids[0], k_ids[1],
             k_ids[2], k_ids[3], k_ids[4]);
    REQUIRE(system(cmd) == 0, "reference failed: %s", cmd);
    size_t n;
    double *want = test_read_f64(g_dir, "llm_ref.bin", &n);
    REQUIRE(want && n == 260, "reference logits");
    static const struct { rs_dtype t; double tol; } types[] = {{RS_F32, 1e-4}, {RS_BF16, 3e-2}, {RS_Q8_0, 0.1}, {RS_F16, 3e-3}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        path(out, sizeof out, i == 0 ? "llm_f32.gguf" : "llm_only.gguf");
        rs_hf_params p = rs_hf_default_params();
        p.llm_dir = llm;
        p.wtype = types[i].t;
        if (rs_hf_import(&p, out, NULL)) { CHECK(0, "import %s: %s", rs_dtype_name(types[i].t), rsmoe_last_error()); continue; }
        rs_gguf *g = NULL;
        if (rs_gguf_open(out, &g) == RSMOE_OK) {
            CHECK(!strcmp(rs_gguf_get_str_or(g, "general.architecture", ""), "llama"), "architecture llama");
            CHECK(rs_gguf_get_bool_or(g, "rsmoe.llm.rope_neox", false) && rs_gguf_get_bool_or(g, "rsmoe.llm.rope_llama3", false),
                  "rotate-half RoPE with Llama-3 scaling");
            CHECK(rs_gguf_get_f32_or(g, "rsmoe.llm.rope_llama3.original_context_length", 0) == 64.0f, "llama3 keys");
            const rs_tensor *nt = rs_gguf_find_tensor(g, "blk.1.ffn_norm.weight"), *ot = rs_gguf_find_tensor(g, "output.weight");
            CHECK(nt && nt->type == RS_F32 && ot, "norms f32, untied output present");
            CHECK(!rs_gguf_find_tensor(g, "v.class_embd") && !rs_gguf_find_tensor(g, "router.gate.weight"), "LLM-only");
            /* q8_0: every weight within half a quantisation step of the f32 import's */
            const rs_tensor *q = rs_gguf_find_tensor(g, "blk.1.ffn_down.weight");
            rs_gguf *g32 = NULL;
            if (types[i].t == RS_Q8_0 && q && q->type == RS_Q8_0 &&
                (path(out, sizeof out, "llm_f32.gguf"), rs_gguf_open(out, &g32)) == RSMOE_OK) {
                const rs_tensor *f = rs_gguf_find_tensor(g32, "blk.1.ffn_down.weight");
                int64_t nel = rs_tensor_nelements(q), bad = 0;
                const rs_block_q8_0 *bl = q->data;
                for (int64_t b = 0; f && b < nel / 32; b++) {
                    const float *x = (const float *)f->data + b * 32;
                    float amax = 0, d = rs_f16_to_f32(bl[b].d);
                    for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[k]));
                    for (int k = 0; k < 32; k++)
                        bad += fabsf(d * bl[b].qs[k] - x[k]) >
                            0.5f * amax / 127 * 1.01f + 5e-4f * amax + 1e-7f; /* + the f16 scale's rounding */
                }
                CHECK(f && bad == 0, "q8_0: %lld of %lld weights off by more than half a step", (long long)bad, (long long)nel);
                rs_gguf_close(g32);
            } else
                CHECK(types[i].t != RS_Q8_0, "q8_0 tensor and the f32 import");
            path(out, sizeof out, i == 0 ? "llm_f32.gguf" : "llm_only.gguf");
            rs_gguf_close(g);
        } else CHECK(0, "open: %s", rsmoe_last_error());
        float got[260];
        int V = 0;
        rs_dtype qt = RS_F32;
        if (llm_logits(out, got, &V, &qt)) {
            CHECK(0, "forward %s: %s", rs_dtype_name(types[i].t), rsmoe_last_error());
            continue;
        }
        CHECK(V == 260 && qt == types[i].t, "%s: vocab %d, attn_q type %s", rs_dtype_name(types[i].t), V, rs_dtype_name(qt));
        double e = test_nerr_f64ref(got, want, 260);
        CHECK(e <= types[i].tol, "%s: logits normalised error %.3g (tolerance %g)", rs_dtype_name(types[i].t), e, types[i].tol);
    }
    free(want);
}

/* ------------------------------------------------------------------ tokenizers */
TEST(tokenizer_json) {
    if (!g_have) SKIP("/usr/bin/python3 with numpy is not available for the fixtures");
    char llm[300];
    path(llm, sizeof llm, "llm");
    rs_tokenizer *t = NULL;
    REQUIRE(rs_hf_tokenizer_load(llm, &t) == RSMOE_OK, "load: %s", rsmoe_last_error());
    CHECK(rs_tokenizer_kind(t) == RS_TOK_BPE && rs_tokenizer_n_vocab(t) == 260, "byte-level BPE of 260");
    CHECK(rs_tokenizer_bos(t) == 1 && rs_tokenizer_eos(t) == 2, "bos/eos from config.json");
    int32_t ids[8];
    int n = 0;
    CHECK(rs_tokenizer_encode(t, "Hi", true, ids, 8, &n) == RSMOE_OK && n == 3 && ids[0] == 1 && ids[1] == 4 + 'H' &&
              ids[2] == 4 + 'i', "encode 'Hi' -> <s> H i (%d ids)", n);
    rs_tokenizer_free(t);
}

/* tokenizer.json with merges: the same tokenizer as llama.cpp's GPT-2 vocabulary GGUF (whose
 * encodings tests/test_tokenizer.c checks against HF's golden vectors) on its test strings */
TEST(tokenizer_json_gpt2) {
    const char *sh = test_shared_dir();
    if (!sh) SKIP("../shared (ggml-vocab-gpt-2.gguf) is absent");
    if (!test_have_python("numpy")) SKIP("/usr/bin/python3 with numpy is not available");
    char gp[512], dir[320], cmd[1200], inp[520];
    snprintf(gp, sizeof gp, "%s/data/tokenizers/ggml-vocab-gpt-2.gguf", sh);
    snprintf(inp, sizeof inp, "%s.inp", gp);
    path(dir, sizeof dir, "gpt2");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/hf_tokjson.py %s %s", gp, dir);
    REQUIRE(system(cmd) == 0, "hf_tokjson.py failed");
    rs_tokenizer *a = NULL, *b = NULL;
    REQUIRE(rs_hf_tokenizer_load(dir, &a) == RSMOE_OK, "tokenizer.json: %s", rsmoe_last_error());
    REQUIRE(rs_tokenizer_load_gguf_file(gp, &b) == RSMOE_OK, "gguf: %s", rsmoe_last_error());
    CHECK(rs_tokenizer_n_vocab(a) == rs_tokenizer_n_vocab(b) && rs_tokenizer_n_merges(a) == rs_tokenizer_n_merges(b) &&
              rs_tokenizer_n_merges(a) > 40000, "vocab %d/%d, merges %d/%d", rs_tokenizer_n_vocab(a), rs_tokenizer_n_vocab(b),
          rs_tokenizer_n_merges(a), rs_tokenizer_n_merges(b));
    CHECK(rs_tokenizer_eos(a) == 50256 && rs_tokenizer_token_type(a, 50256) == RS_TOKT_CONTROL, "<|endoftext|> control, eos");
    FILE *f = fopen(inp, "rb");
    REQUIRE(f, "open %s", inp);
    static char buf[1 << 16];
    size_t nb = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[nb] = 0;
    int cases = 0, same = 0;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    for (char *p = buf, *e; *p; p = e + sizeof sep - 1) {
        e = strstr(p, sep);
        if (!e) break;
        *e = 0;
        int32_t x[512], y[512];
        int nx = 0, ny = 0;
        if (rs_tokenizer_encode(a, p, false, x, 512, &nx) == RSMOE_OK &&
            rs_tokenizer_encode(b, p, false, y, 512, &ny) == RSMOE_OK && nx == ny && !memcmp(x, y, sizeof(int32_t) * (size_t)nx))
            same++;
        cases++;
    }
    CHECK(cases >= 40 && same == cases, "%d of %d test strings encode the same", same, cases);
    rs_tokenizer_free(a);
    rs_tokenizer_free(b);
}

TEST(spm_tokenizer_model) {
    const char *sh = test_shared_dir();
    if (!sh) SKIP("../shared (llama2-tokenizer.model) is absent");
    char mp[512], gp[512];
    snprintf(mp, sizeof mp, "%s/data/tokenizers/llama2-tokenizer.model", sh);
    snprintf(gp, sizeof gp, "%s/data/tokenizers/ggml-vocab-llama-spm.gguf", sh);
    rs_tokenizer *a = NULL, *b = NULL;
    REQUIRE(rs_hf_spm_load(mp, &a) == RSMOE_OK, "tokenizer.model: %s", rsmoe_last_error());
    REQUIRE(rs_tokenizer_load_gguf_file(gp, &b) == RSMOE_OK, "gguf vocab: %s", rsmoe_last_error());
    CHECK(rs_tokenizer_n_vocab(a) == 32000 && rs_tokenizer_n_vocab(b) == 32000, "32000 pieces");
    int diff = 0, tdiff = 0;
    for (int i = 0; i < 32000 && i < rs_tokenizer_n_vocab(a) && i < rs_tokenizer_n_vocab(b); i++) {
        size_t la, lb;
        const char *sa = rs_tokenizer_token_text(a, i, &la), *sb = rs_tokenizer_token_text(b, i, &lb);
        diff += !(la == lb && !memcmp(sa, sb, la));
        tdiff += rs_tokenizer_token_type(a, i) != rs_tokenizer_token_type(b, i);
    }
    CHECK(diff == 0 && tdiff == 0, "%d pieces and %d types differ", diff, tdiff);
    CHECK(rs_tokenizer_bos(a) == 1 && rs_tokenizer_eos(a) == 2 && rs_tokenizer_unk(a) == 0, "special ids");
    static const char *texts[] = {"Hello world", " many planes are parked near the terminal", "Ünïcödé 日本 🚀", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t x[128], y[128];
        int nx = 0, ny = 0;
        CHECK(rs_tokenizer_encode(a, texts[i], true, x, 128, &nx) == RSMOE_OK &&
                  rs_tokenizer_encode(b, texts[i], true, y, 128, &ny) == RSMOE_OK && nx == ny &&
                  !memcmp(x, y, sizeof(int32_t) * (size_t)nx),
              "same encoding of '%s'", texts[i]);
    }
    rs_tokenizer_free(a);
    rs_tokenizer_free(b);
    /* a truncated model is refused */
    char tp[320];
    path(tp, sizeof tp, "trunc.model");
    FILE *in = fopen(mp, "rb"), *out = fopen(tp, "wb");
    REQUIRE(in && out, "copy");
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, got > 1001 ? 1001 : got, out);
    fclose(in);
    fclose(out);
    CHECK(rs_hf_spm_load(tp, &a) == RSMOE_ERR_FORMAT && strstr(rsmoe_last_error(), tp), "truncated model: %s",
          rsmoe_last_error());
}

/* ------------------------------------------------------------------ bad inputs */
TEST(bad_inputs) {
    if (!g_have) SKIP("/usr/bin/python3 with numpy is not available for the fixtures");
    char out[300];
    path(out, sizeof out, "bad.gguf");
    static const struct { const char *llm, *vision; rsmoe_status st; const char *msg[2]; } cases[] = {
        {"bad_missing", NULL, RSMOE_ERR_FORMAT, {"missing tensor", "model.layers.1.mlp.up_proj.weight"}},
        {"bad_shape", NULL, RSMOE_ERR_FORMAT, {"model.layers.0.self_attn.k_proj.weight", "shape [32, 63], expected [32, 64]"}},
        {"bad_trunc", NULL, RSMOE_ERR_FORMAT, {"truncated", "bad_trunc/model.safetensors"}},
        {"bad_header", NULL, RSMOE_ERR_FORMAT, {"sane", "bad_header/model.safetensors"}},
        {"bad_arch", NULL, RSMOE_ERR_UNSUPPORTED, {"gpt2", "bad_arch/config.json"}},
        {"bad_config", NULL, RSMOE_ERR_FORMAT, {"bad_config/config.json", "hidden_size = 65 but the tensors have 64"}},
        {"bad_index", NULL, RSMOE_ERR_FORMAT, {"model.norm.weight", "model.safetensors.index.json"}},
        {"llm", "bad_vision", RSMOE_ERR_FORMAT, {"missing tensor", "vision_model.post_layernorm.weight"}},
        {"llm", "llm", RSMOE_ERR_UNSUPPORTED, {"llm/config.json", "not a BLIP-2/InstructBLIP vision model"}},
        {"blip", NULL, RSMOE_ERR_FORMAT, {"blip", "embed_tokens"}},
        {"nonexistent", NULL, RSMOE_ERR_IO, {"nonexistent/config.json", ""}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char llm[300], vis[300], blip[300];
        path(llm, sizeof llm, cases[i].llm);
        path(blip, sizeof blip, "blip");
        rs_hf_params p = rs_hf_default_params();
        p.llm_dir = llm;
        if (cases[i].vision) {
            path(vis, sizeof vis, cases[i].vision);
            p.vision_dir = vis;
            p.qformer_dir = blip;
        }
        unlink(out);
        rsmoe_status st = rs_hf_import(&p, out, NULL);
        CHECK(st == cases[i].st, "%s: status %d, expected %d (%s)", cases[i].llm, st, cases[i].st, rsmoe_last_error());
        for (int k = 0; k < 2; k++)
            CHECK(strstr(rsmoe_last_error(), cases[i].msg[k]), "%s: message '%s' lacks '%s'", cases[i].llm, rsmoe_last_error(),
                  cases[i].msg[k]);
        CHECK(access(out, F_OK) != 0, "%s: no output left behind", cases[i].llm);
    }
    /* argument errors */
    char llm[300];
    path(llm, sizeof llm, "llm");
    rs_hf_params p = rs_hf_default_params();
    CHECK(rs_hf_import(&p, out, NULL) == RSMOE_ERR_INVALID_ARG, "no LLM");
    p.llm_dir = llm;
    p.vision_dir = llm;
    CHECK(rs_hf_import(&p, out, NULL) == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "Q-Former"),
          "vision without Q-Former");
    p.vision_dir = NULL;
    p.wtype = (rs_dtype)2;
    CHECK(rs_hf_import(&p, out, NULL) == RSMOE_ERR_INVALID_ARG, "bad output type");
}

/* the command line: `rsmoe import hf` of this build (beside the tests folder) */
TEST(cli) {
    if (!g_have) SKIP("/usr/bin/python3 with numpy is not available for the fixtures");
    char exe[512], bin[600], cmd[4096], llm[300], blip[300], out[300], log[300];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0, "readlink");
    exe[n] = 0;
    char *sl = strrchr(exe, '/');
    if (sl) *sl = 0; /* .../tests */
    snprintf(bin, sizeof bin, "%s/../rsmoe", exe);
    if (access(bin, X_OK)) SKIP("%s is not built", bin);
    path(llm, sizeof llm, "llm");
    path(blip, sizeof blip, "blip");
    path(out, sizeof out, "cli.gguf");
    path(log, sizeof log, "cli.log");
    snprintf(cmd, sizeof cmd, "%s import hf --vision %s --qformer %s --llm %s -o %s --type bf16 --experts 2 --lora-rank 4 >%s 2>&1",
             bin, blip, blip, llm, out, log);
    CHECK(system(cmd) == 0, "full import: see %s", log);
    rs_gguf *g = NULL;
    if (rs_gguf_open(out, &g) == RSMOE_OK) {
        CHECK(rs_gguf_get_u32_or(g, "rsmoe.moe.expert_count", 0) == 2 && rs_gguf_get_u32_or(g, "rsmoe.moe.lora_rank", 0) == 4,
              "--experts / --lora-rank stored");
        const rs_tensor *t = rs_gguf_find_tensor(g, "blk.0.ffn_up.weight");
        CHECK(t && t->type == RS_BF16, "--type bf16");
        rs_gguf_close(g);
    } else CHECK(0, "open: %s", rsmoe_last_error());
    snprintf(cmd, sizeof cmd, "%s import hf --llm %s >%s 2>&1", bin, llm, log);
    CHECK(WEXITSTATUS(system(cmd)) == 2, "no -o: usage error");
    snprintf(cmd, sizeof cmd, "%s import hf --llm %s/bad_missing -o %s >%s 2>&1", bin, g_dir, out, log);
    CHECK(WEXITSTATUS(system(cmd)) == 1, "bad checkpoint: exit 1");
    FILE *f = fopen(log, "r");
    char msg[1024] = {0};
    if (f) { size_t r = fread(msg, 1, sizeof msg - 1, f); msg[r] = 0; fclose(f); }
    CHECK(strstr(msg, "model.layers.1.mlp.up_proj.weight"), "message names the tensor: %s", msg);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rsmoe_test_hf_%d", (int)getpid());
    mkdir(g_dir, 0755);
    if (test_have_python("numpy")) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/hf_make.py %s", g_dir);
        g_have = system(cmd) == 0;
        if (!g_have) fprintf(stderr, "tests/ref/hf_make.py failed\n");
    }
    RUN(safetensors_reader);
    RUN(full_model_parity);
    RUN(blip2_layout);
    RUN(llm_only_parity_and_types);
    RUN(tokenizer_json);
    RUN(tokenizer_json_gpt2);
    RUN(spm_tokenizer_model);
    RUN(bad_inputs);
    RUN(cli);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    int rc = test_summary();
    if (test_have_python("numpy") && !g_have) return 1;
    return rc;
}
