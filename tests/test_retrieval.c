/* Retrieval-consensus selection (model/retrieval.h, train/retrieval_index.h): sentence
 * normalisation, the scene probe's gradient against finite differences, and the whole index
 * (build, file, load, select) against an independent NumPy reference
 * (tests/ref/retrieval_ref.py) on a small synthetic data set; a damaged index is refused. */
#include "core/core.h"
#include "eval/eval.h"
#include "formats/gguf.h"
#include "formats/gguf_copy.h"
#include "model/retrieval.h"
#include "test.h"
#include "train/features.h"
#include "train/retrieval_index.h"

#include <stdbool.h>

static char g_dir[128];

TEST(words_normalise) {
    char out[64];
    rs_retrieval_words("  A Bridge, over 2 rivers . ", out, sizeof out);
    CHECK(!strcmp(out, "a bridge over 2 rivers"), "got '%s'", out);
    rs_retrieval_words("..,!", out, sizeof out);
    CHECK(!strcmp(out, ""), "got '%s'", out);
    rs_retrieval_words("caf\xc3\xa9-Bar", out, sizeof out);
    CHECK(!strcmp(out, "caf\xc3\xa9 bar"), "got '%s'", out);
    rs_retrieval_words("abcdef ghi", out, 5);
    CHECK(!strcmp(out, "abcd"), "truncated: got '%s'", out);
    char in[] = "Two  Planes,parked.";
    rs_retrieval_words(in, in, sizeof in);
    CHECK(!strcmp(in, "two planes parked"), "in place: got '%s'", in);
}

TEST(probe_gradient_matches_finite_differences) {
    enum { n = 7, D = 5, C = 3 };
    float Z[n * D], W[C * D], b[C], gW[C * D], gb[C], g2W[C * D], g2b[C];
    int32_t y[n] = {0, 2, 1, RS_IGNORE_INDEX, 2, 0, 1};
    rs_rng s;
    rs_rng_seed(&s, 7);
    for (int i = 0; i < n * D; i++) Z[i] = (float)(rs_rng_uniform(&s) * 2 - 1);
    for (int i = 0; i < C * D; i++) W[i] = (float)(rs_rng_uniform(&s) - 0.5);
    for (int i = 0; i < C; i++) b[i] = 0.1f * (float)i;
    float l0 = rs_probe_loss_grad(Z, y, n, D, C, W, b, gW, gb, NULL);
    REQUIRE(isfinite(l0), "loss %g", l0);
    double worst = 0;
    const float h = 1e-2f;
    for (int i = 0; i < C * D + C; i++) {
        float *p = i < C * D ? &W[i] : &b[i - C * D];
        float keep = *p;
        *p = keep + h;
        double lp = rs_probe_loss_grad(Z, y, n, D, C, W, b, g2W, g2b, NULL);
        *p = keep - h;
        double lm = rs_probe_loss_grad(Z, y, n, D, C, W, b, g2W, g2b, NULL);
        *p = keep;
        double fd = (lp - lm) / (2 * h), an = i < C * D ? gW[i] : gb[i - C * D];
        double e = fabs(fd - an) / (fabs(fd) + 1e-2);
        if (e > worst) worst = e;
    }
    CHECK(worst < 2e-3, "worst relative error %g", worst);
    /* the ignored row contributes nothing */
    float Z2[n * D];
    memcpy(Z2, Z, sizeof Z);
    for (int c = 0; c < D; c++) Z2[3 * D + c] += 5.0f;
    float l2 = rs_probe_loss_grad(Z2, y, n, D, C, W, b, g2W, g2b, NULL);
    CHECK(l2 == l0 && !memcmp(g2W, gW, sizeof gW), "the ignored row changed the loss: %g vs %g", l2, l0);
}

/* ------------------------------------------------------------------ synthetic data set */
enum { NCLS = 4, PER = 10, NTR = NCLS * PER, T = 2, D = 32, NQ = 6 };
static const char *g_labels[NCLS] = {"Airport", "Beach", "Bridge", "Forest"};
static const char *g_caps[NCLS][4] = {
    {"many planes are parked near a terminal in an airport.", "an airport with a long runway.",
     "several planes are parked in an airport.", "Many planes are parked near a terminal in an airport ."},
    {"yellow beach is near a piece of blue ocean.", "many people are on the beach.",
     "waves hit the beach near some green trees.", "a beach is near the ocean."},
    {"a bridge is over a river with some green trees.", "many cars are on a bridge over the river.",
     "a long bridge crosses a river.", "a bridge is over a river."},
    {"many green trees are in a dense forest.", "the forest is dark green.",
     "many trees are in a piece of forest near a river.", "green trees are in a forest."},
};
static const char *g_props[NQ][3] = {
    {"some planes are parked in an airport.", "a bridge is over a river.", ""},
    {"many people are on the yellow beach.", "the forest is dark green.", "a a a"},
    {"a long bridge is over a river.", "an airport with a runway.", NULL},
    {"the trees are green.", "many green trees are in a dense forest.", "planes planes"},
    {"a river.", "many planes are parked near a terminal in an airport.", "beach"},
    {"", NULL, NULL},
};

static float frand(rs_rng *s) { return (float)(rs_rng_uniform(s) * 2 - 1); }
static float f16r(float v) { return rs_f16_to_f32(rs_f32_to_f16(v)); }

typedef struct {
    float tr[NTR][T * D], q[NQ][T * D];
    int label[NTR];
    const char *caps[NTR][3];
} synth;

static void make_synth(synth *S) {
    float ctr[NCLS][D];
    rs_rng s;
    rs_rng_seed(&s, 42);
    for (int c = 0; c < NCLS; c++)
        for (int d = 0; d < D; d++) ctr[c][d] = 1.5f * frand(&s);
    for (int i = 0; i < NTR; i++) {
        int c = i % NCLS;
        S->label[i] = i == 5 || i == 22 ? -1 : c;   /* two images without a label */
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) S->tr[i][t * D + d] = f16r(ctr[c][d] + 0.9f * frand(&s));
        for (int k = 0; k < 3; k++) S->caps[i][k] = g_caps[c][(i / NCLS + k) % 4];
    }
    for (int q = 0; q < NQ; q++) {
        int c = q % NCLS;
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                float v = q < 4 ? ctr[c][d] + 0.9f * frand(&s) : 0.5f * (ctr[0][d] + ctr[2][d]) + 0.5f * frand(&s);
                S->q[q][t * D + d] = f16r(v);
            }
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void json_tokens(FILE *f, const float *x) {
    fputc('[', f);
    for (int t = 0; t < T; t++) {
        fprintf(f, "%s[", t ? "," : "");
        for (int d = 0; d < D; d++) fprintf(f, "%s%.17g", d ? "," : "", (double)x[t * D + d]);
        fputc(']', f);
    }
    fputc(']', f);
}

static const char *g_pairs[][2] = {
    {"many planes are parked near a terminal in an airport.", "several planes are parked in an airport."},
    {"a bridge is over a river.", "a long bridge crosses a river."},
    {"the forest is dark green.", "The forest is dark green !"},
    {"a a a", "a bridge is over a river."},
    {"planes planes planes are parked", "several planes are parked in an airport."},
    {"completely unseen words here", "an airport with a long runway."},
    {"", "a beach is near the ocean."},
};
#define NPAIRS ((int)(sizeof g_pairs / sizeof g_pairs[0]))

static bool write_case(const synth *S, const rs_retrieval_build_params *bp, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fprintf(f, "{\"k\": %d, \"gamma\": %.17g, \"bonus\": %.17g, \"probe_steps\": %d, \"probe_lr\": %.17g,\n\"train\": [",
            bp->k, (double)bp->gamma, (double)bp->bonus, bp->probe_steps, (double)bp->probe_lr);
    for (int i = 0; i < NTR; i++) {
        fprintf(f, "%s\n{\"tokens\": ", i ? "," : "");
        json_tokens(f, S->tr[i]);
        fprintf(f, ", \"label\": ");
        json_str(f, S->label[i] >= 0 ? g_labels[S->label[i]] : "");
        fprintf(f, ", \"captions\": [");
        for (int k = 0; k < 3; k++) { if (k) fputc(',', f); json_str(f, S->caps[i][k]); }
        fprintf(f, "]}");
    }
    fprintf(f, "],\n\"queries\": [");
    for (int q = 0; q < NQ; q++) {
        fprintf(f, "%s\n{\"tokens\": ", q ? "," : "");
        json_tokens(f, S->q[q]);
        fprintf(f, ", \"proposals\": [");
        for (int e = 0; e < 3; e++) {
            if (e) fputc(',', f);
            if (g_props[q][e]) json_str(f, g_props[q][e]);
            else fprintf(f, "\"\"");
        }
        fprintf(f, "]}");
    }
    fprintf(f, "],\n\"pairs\": [");
    for (int i = 0; i < NPAIRS; i++) {
        fprintf(f, "%s[", i ? "," : "");
        json_str(f, g_pairs[i][0]);
        fputc(',', f);
        json_str(f, g_pairs[i][1]);
        fputc(']', f);
    }
    fprintf(f, "]}\n");
    return fclose(f) == 0;
}

/* the feature cache of the synthetic training images (f16, as `rsmoe features` writes it) */
static rsmoe_status write_features(const synth *S, const char *path, char names[][24]) {
    static uint16_t h[NTR * T * D];
    const char *nm[NTR];
    for (int i = 0; i < NTR; i++) {
        snprintf(names[i], 24, "img%02d.jpg", i);
        nm[i] = names[i];
        for (int j = 0; j < T * D; j++) h[i * T * D + j] = rs_f32_to_f16(S->tr[i][j]);
    }
    rs_gguf_writer *w = rs_gguf_writer_new();
    rs_tensor t;
    int64_t ne[3] = {D, T, NTR};
    rsmoe_status st = w ? RSMOE_OK : RSMOE_ERR_NOMEM;
    if (!st) st = rs_gguf_writer_set_str(w, "general.architecture", "rsmoe-features");
    if (!st) st = rs_gguf_writer_set_u64(w, "rsmoe.features.encoder_hash", 1);
    if (!st) st = rs_gguf_writer_set_u32(w, "rsmoe.features.tokens", T);
    if (!st) st = rs_gguf_writer_set_u32(w, "rsmoe.features.width", D);
    if (!st) st = rs_gguf_writer_set_arr_str(w, "rsmoe.features.images", nm, NULL, NTR);
    if (!st) st = rs_tensor_init(&t, "features", RS_F16, 3, ne, h);
    if (!st) st = rs_gguf_writer_add_tensor(w, &t);
    if (!st) st = rs_gguf_writer_write(w, path);
    rs_gguf_writer_free(w);
    return st;
}

/* builds the index of the synthetic set into path */
static rsmoe_status build_index(const synth *S, const rs_retrieval_build_params *bp, bool q8, const char *path,
                                rs_retrieval_build_report *rep) {
    static char names[NTR][24];
    char fpath[256];
    snprintf(fpath, sizeof fpath, "%s/feat.gguf", g_dir);
    rsmoe_status st = write_features(S, fpath, names);
    if (st) return st;
    rs_features *f = NULL;
    if ((st = rs_features_open(fpath, NULL, &f))) return st;
    rs_ds_item items[NTR];
    char *caps[NTR][3];
    for (int i = 0; i < NTR; i++) {
        for (int k = 0; k < 3; k++) caps[i][k] = (char *)S->caps[i][k];
        items[i] = (rs_ds_item){.filename = names[i], .path = names[i], .split = (char *)"train",
                                .label = (char *)(S->label[i] >= 0 ? g_labels[S->label[i]] : ""), .id = i, .ncap = 3,
                                .captions = caps[i]};
    }
    rs_dataset ds = {.format = RS_DS_KARPATHY, .nitems = NTR, .items = items};
    rs_retrieval_build_params p = *bp;
    p.q8_keys = q8;
    rs_gguf_writer *w = rs_gguf_writer_new();
    rs_retrieval_bufs keep = {0};
    st = w ? rs_retrieval_build(&ds, f, &p, w, &keep, rep) : RSMOE_ERR_NOMEM;
    if (!st) st = rs_gguf_writer_write(w, path);
    rs_retrieval_bufs_free(&keep);
    rs_gguf_writer_free(w);
    rs_features_close(f);
    return st;
}

TEST(index_matches_numpy_reference) {
    if (!test_have_python("numpy")) SKIP("/usr/bin/python3 with NumPy is not installed (the reference needs it)");
    static synth S;
    make_synth(&S);
    rs_retrieval_build_params bp = rs_retrieval_build_default_params();
    bp.k = 7;
    bp.probe_steps = 60;
    bp.probe_lr = 0.05f;
    char cpath[256], opath[256], ipath[256], cmd[1024];
    snprintf(cpath, sizeof cpath, "%s/case.json", g_dir);
    snprintf(opath, sizeof opath, "%s/ref.txt", g_dir);
    snprintf(ipath, sizeof ipath, "%s/index.gguf", g_dir);
    REQUIRE(write_case(&S, &bp, cpath), "cannot write %s", cpath);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/retrieval_ref.py %s > %s", cpath, opath);
    REQUIRE(system(cmd) == 0, "the reference failed: %s", cmd);
    rs_retrieval_build_report rep;
    rsmoe_status st = build_index(&S, &bp, false, ipath, &rep);
    REQUIRE(!st, "build: %s", rsmoe_last_error());
    CHECK(rep.n_img == NTR && rep.n_class == NCLS && rep.skipped == 0, "report: %d images, %d classes", rep.n_img, rep.n_class);
    /* "Many planes ... airport ." normalises to the same sentence as the first: one of 16 */
    CHECK(rep.n_sent == 15, "%d distinct sentences (15 expected)", rep.n_sent);
    CHECK(rep.probe_loss < rep.probe_loss0, "probe loss %g -> %g", rep.probe_loss0, rep.probe_loss);
    rs_gguf *g = NULL;
    REQUIRE(!rs_gguf_open(ipath, &g), "open: %s", rsmoe_last_error());
    rs_retrieval r;
    bool present = false;
    REQUIRE(!rs_retrieval_load(g, D, &r, &present) && present, "load: %s", rsmoe_last_error());
    CHECK(r.k == 7 && r.n_img == NTR && r.n_class == NCLS, "k %d, %d images, %d classes", r.k, r.n_img, r.n_class);
    FILE *f = fopen(opath, "r");
    REQUIRE(f, "no reference output");
    char line[4096];
    int nq = 0, ns = 0, n_prop = 0, n_retr = 0;
    rs_retrieval_pick pick = {0};
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        int q, scene, prop, off = 0;
        if (sscanf(line, "Q %d %d %d %n", &q, &scene, &prop, &off) == 3 && q >= 0 && q < NQ) {
            free(pick.text);
            pick = (rs_retrieval_pick){0};
            const char *props[3] = {g_props[q][0], g_props[q][1], g_props[q][2]};
            st = rs_retrieval_select(&r, S.q[q], T, props, 3, 0, NULL, &pick);
            CHECK(!st, "query %d: %s", q, rsmoe_last_error());
            if (st) continue;
            nq++;
            CHECK(pick.scene == scene, "query %d: scene %d, reference %d", q, pick.scene, scene);
            CHECK(pick.proposal == prop, "query %d: proposal %d, reference %d", q, pick.proposal, prop);
            CHECK(pick.text && !strcmp(pick.text, line + off), "query %d: '%s', reference '%s'", q, pick.text, line + off);
            if (pick.proposal >= 0) n_prop++;
            else n_retr++;
        } else if (sscanf(line, "N %d %n", &q, &off) == 1) {
            CHECK(pick.n_neighbours == 7, "query %d: %d neighbours", q, pick.n_neighbours);
            char *e = line + off;
            double top = strtod(e, &e);
            CHECK(fabs(pick.top_sim - top) < 1e-5, "query %d: top similarity %.7g, reference %.7g", q, pick.top_sim, top);
            for (int i = 0; i < 7; i++) {
                long j = strtol(e, &e, 10);
                CHECK(pick.first[i] == j, "query %d: neighbour %d is %d, reference %ld", q, i, pick.first[i], j);
            }
        } else if (line[0] == 'S' && ns < NPAIRS) {
            double ref = strtod(line + 2, NULL);
            char a[256], b[256];
            rs_retrieval_words(g_pairs[ns][0], a, sizeof a);
            rs_retrieval_words(g_pairs[ns][1], b, sizeof b);
            double got = rs_consensus_sim(a, b, r.ng_hash, r.ng_df, r.n_ngram, r.n_docs);
            CHECK(fabs(got - ref) <= 1e-12 + 1e-9 * fabs(ref), "pair %d: %.17g, reference %.17g", ns, got, ref);
            ns++;
        }
    }
    free(pick.text);
    fclose(f);
    CHECK(nq == NQ && ns == NPAIRS, "%d queries, %d pairs compared", nq, ns);
    /* the case must exercise both outcomes, or it checks less than it claims */
    CHECK(n_prop > 0 && n_retr > 0, "%d proposals and %d indexed captions chosen", n_prop, n_retr);
    /* 8-bit keys: the same choices on this well-separated set */
    rs_retrieval_free(&r);
    rs_gguf_close(g);
    REQUIRE(!build_index(&S, &bp, true, ipath, &rep), "q8 build: %s", rsmoe_last_error());
    REQUIRE(!rs_gguf_open(ipath, &g), "open: %s", rsmoe_last_error());
    REQUIRE(!rs_retrieval_load(g, D, &r, &present) && present, "load: %s", rsmoe_last_error());
    CHECK(r.keys->type == RS_Q8_0, "keys %d", r.keys->type);
    rs_retrieval_free(&r);
    rs_gguf_close(g);
}

static bool skip_img_sent(const char *key) { return !strcmp(key, "rsmoe.retrieval.img_sent"); }

TEST(damaged_or_absent_index) {
    static synth S;
    make_synth(&S);
    rs_retrieval_build_params bp = rs_retrieval_build_default_params();
    bp.probe_steps = 5;
    char ipath[256], bpath[256];
    snprintf(ipath, sizeof ipath, "%s/index2.gguf", g_dir);
    snprintf(bpath, sizeof bpath, "%s/bad.gguf", g_dir);
    rs_retrieval_build_report rep;
    REQUIRE(!build_index(&S, &bp, false, ipath, &rep), "build: %s", rsmoe_last_error());
    rs_gguf *g = NULL;
    REQUIRE(!rs_gguf_open(ipath, &g), "open");
    /* the same file with one sentence id out of range */
    rs_gguf_writer *w = rs_gguf_writer_new();
    REQUIRE(w && !rs_gguf_copy_kvs(g, w, skip_img_sent), "copy");
    int32_t bad[NTR * 3];
    for (int i = 0; i < NTR * 3; i++) bad[i] = i == 17 ? 999 : 0;
    CHECK(!rs_gguf_writer_set_arr_data(w, "rsmoe.retrieval.img_sent", RS_GGUF_I32, bad, NTR * 3), "set");
    for (int64_t i = 0; i < rs_gguf_n_tensors(g); i++) CHECK(!rs_gguf_writer_add_tensor(w, rs_gguf_tensor(g, i)), "tensor");
    CHECK(!rs_gguf_writer_write(w, bpath), "write");
    rs_gguf_writer_free(w);
    rs_gguf_close(g);
    REQUIRE(!rs_gguf_open(bpath, &g), "open bad");
    rs_retrieval r;
    bool present = true;
    rsmoe_status st = rs_retrieval_load(g, D, &r, &present);
    CHECK(st == RSMOE_ERR_FORMAT && !present && strstr(rsmoe_last_error(), "img_sent"), "status %d: %s", st, rsmoe_last_error());
    /* the wrong encoder width */
    rs_gguf_close(g);
    REQUIRE(!rs_gguf_open(ipath, &g), "open");
    st = rs_retrieval_load(g, D + 32, &r, &present);
    CHECK(st == RSMOE_ERR_FORMAT && !present && strstr(rsmoe_last_error(), "retrieval.keys"), "status %d: %s", st, rsmoe_last_error());
    rs_gguf_close(g);
    /* no index at all: not present, no error */
    char fpath[256];
    snprintf(fpath, sizeof fpath, "%s/feat.gguf", g_dir);
    REQUIRE(!rs_gguf_open(fpath, &g), "open features");
    st = rs_retrieval_load(g, D, &r, &present);
    CHECK(!st && !present, "status %d present %d", st, present);
    rs_gguf_close(g);
}

/* rs_consensus_choose (inverted n-gram lists) picks what the pairwise definition picks: for
 * each candidate the weighted sum of rs_consensus_sim with every lent sentence (in order), the
 * proposals scaled by 1 + bonus, the first maximum. Random sentences over a small vocabulary,
 * with repeats, zero weights and a df table for some of their n-grams. */
TEST(consensus_choice_matches_pairwise_sums) {
    static const char *const vocab[] = {"a", "many", "green", "trees", "are", "around", "the", "pond",
                                        "some", "buildings", "in", "two", "sides", "of", "river", "bridge"};
    const int V = (int)(sizeof vocab / sizeof vocab[0]);
    rs_rng r;
    rs_rng_seed(&r, 11);
    /* df of every unigram and of a few bigrams, sorted by hash */
    uint64_t hash[64];
    uint32_t df[64];
    int64_t nh = 0;
    for (int i = 0; i < V; i++) {
        size_t l = strlen(vocab[i]);
        hash[nh++] = rs_retrieval_ngram_hash(&vocab[i], &l, 1);
    }
    for (int i = 0; i + 1 < V; i += 3) {
        const char *w2[2] = {vocab[i], vocab[i + 1]};
        size_t l2[2] = {strlen(vocab[i]), strlen(vocab[i + 1])};
        hash[nh++] = rs_retrieval_ngram_hash(w2, l2, 2);
    }
    for (int64_t i = 1; i < nh; i++) /* insertion sort */
        for (int64_t j = i; j > 0 && hash[j - 1] > hash[j]; j--) {
            uint64_t t = hash[j]; hash[j] = hash[j - 1]; hash[j - 1] = t;
        }
    for (int64_t i = 0; i < nh; i++) df[i] = 1 + (uint32_t)(rs_rng_uniform(&r) * 60.0f);
    int mismatches = 0, trials = 0, chose_prop = 0, chose_lent = 0;
    for (int t = 0; t < 60; t++) {
        enum { N = 24, NL = 18 };
        char buf[N][160];
        const char *sv[N];
        float w[NL];
        bool isp[N];
        for (int i = 0; i < N; i++) {
            if (i > 0 && rs_rng_uniform(&r) < 0.2f) { /* a repeat */
                strcpy(buf[i], buf[(int)(rs_rng_uniform(&r) * (float)i) % i]);
            } else {
                int nw = 3 + (int)(rs_rng_uniform(&r) * 10.0f), o = 0;
                for (int k = 0; k < nw; k++)
                    o += snprintf(buf[i] + o, sizeof buf[i] - (size_t)o, "%s%s", k ? " " : "",
                                  vocab[(int)(rs_rng_uniform(&r) * (float)V) % V]);
            }
            sv[i] = buf[i];
            isp[i] = i >= NL;
        }
        for (int j = 0; j < NL; j++) w[j] = rs_rng_uniform(&r) < 0.15f ? 0.f : rs_rng_uniform(&r);
        const float bonus = 0.6f;
        int want = -1;
        double best = -INFINITY;
        for (int i = 0; i < N; i++) {
            double sc = 0;
            for (int j = 0; j < NL; j++)
                if (w[j] > 0) sc += (double)w[j] * rs_consensus_sim(sv[i], sv[j], hash, df, nh, 100);
            if (isp[i]) sc *= 1.0 + (double)bonus;
            if (sc > best) { best = sc; want = i; }
        }
        int got = rs_consensus_choose(sv, isp, N, w, NL, bonus, hash, df, nh, 100);
        trials++;
        if (got != want) mismatches++;
        if (want >= NL) chose_prop++;
        else chose_lent++;
    }
    CHECK(mismatches == 0, "%d of %d choices differ from the pairwise sums", mismatches, trials);
    CHECK(chose_prop > 0 && chose_lent > 0, "the trials must pick both kinds: %d proposals, %d lent", chose_prop,
          chose_lent);
    CHECK(rs_consensus_choose(NULL, NULL, 0, NULL, 0, 0.f, hash, df, nh, 100) == -1, "no sentence: -1");
}

/* The self-critical reward: rs_cider_d_df with the document frequencies of a corpus' own
 * references equals the scorer's per-image CIDEr-D (eval/, pycocoevalcap's rules, tested against
 * its golden values) on every image, and the df table counts images, not sentences. */
TEST(cider_reward_matches_the_scorer) {
    char *c0[] = {"a bridge is over a river .", "a bridge crosses the river with trees .", "some cars are on the bridge ."};
    char *c1[] = {"many buildings are in a dense residential area .", "the residential area is dense with buildings .",
                  "many green trees are around the buildings .", "a road goes through the residential area ."};
    char *c2[] = {"it is a piece of bareland .", "the bareland is yellow .", "a road is beside the bareland ."};
    char *c3[] = {"a river is near a bridge .", "green trees are on both sides of the river ."};
    rs_ds_item items[4] = {{.ncap = 3, .captions = c0}, {.ncap = 4, .captions = c1}, {.ncap = 3, .captions = c2},
                           {.ncap = 2, .captions = c3}};
    rs_dataset ds = {.nitems = 4, .items = items};
    const char *hyps[4] = {"a bridge is over the river with some cars .", "many buildings are in a dense residential area .",
                           "a road is beside the yellow bareland .", "trees"};
    rs_ngram_df df;
    REQUIRE(rs_ngram_df_build(&ds, NULL, 4, &df) == RSMOE_OK, "df: %s", rsmoe_last_error());
    CHECK(df.n_docs == 4, "n_docs %u", df.n_docs);
    /* "bridge" is in images 0 and 3 (three sentences): df 2; "the" in 0, 1, 2, 3: 4 */
    const char *w1[1] = {"bridge"}, *w2[1] = {"the"};
    size_t l1[1] = {6}, l2[1] = {3};
    uint64_t hb = rs_retrieval_ngram_hash(w1, l1, 1), ht = rs_retrieval_ngram_hash(w2, l2, 1);
    uint32_t dfb = 0, dft = 0;
    for (int64_t i = 0; i < df.n; i++) {
        if (df.hash[i] == hb) dfb = df.df[i];
        if (df.hash[i] == ht) dft = df.df[i];
        if (i) CHECK(df.hash[i - 1] < df.hash[i], "hashes ascending at %lld", (long long)i);
    }
    CHECK(dfb == 2 && dft == 4, "df(bridge) %u (2), df(the) %u (4)", dfb, dft);
    size_t nrefs[4] = {3, 4, 3, 2};
    const char *const *refs[4] = {(const char *const *)c0, (const char *const *)c1, (const char *const *)c2,
                                  (const char *const *)c3};
    rs_caption_refs cr = {4, nrefs, refs};
    rs_score_opts so;
    rs_score_opts_default(&so);
    so.meteor = false;
    rs_score_result sr;
    REQUIRE(rs_score_captions(&cr, hyps, &so, &sr) == RSMOE_OK, "score: %s", rsmoe_last_error());
    for (int i = 0; i < 4; i++) {
        double r = rs_cider_d_df(hyps[i], refs[i], (int)nrefs[i], &df);
        CHECK(fabs(r - sr.cider_img[i]) < 1e-9, "image %d: reward %.12f scorer %.12f", i, r, sr.cider_img[i]);
    }
    CHECK(sr.cider_img[1] > 1.0 && sr.cider_img[3] < sr.cider_img[1], "the case discriminates (%.3f, %.3f)", sr.cider_img[1],
          sr.cider_img[3]);
    rs_score_result_free(&sr);
    rs_ngram_df_free(&df);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rsmoe_test_retrieval.XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    RUN(words_normalise);
    RUN(probe_gradient_matches_finite_differences);
    RUN(index_matches_numpy_reference);
    RUN(damaged_or_absent_index);
    RUN(consensus_choice_matches_pairwise_sums);
    RUN(cider_reward_matches_the_scorer);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_summary();
}
