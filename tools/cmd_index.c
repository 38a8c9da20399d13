/* cmd_index.c - `rsmoe index -m MODEL --data DATA --features FEAT -o OUT`: adds a retrieval
 * index of the training images and captions (model/retrieval.h) to a model. */
#include "cli.h"
#include "core/core.h"
#include "formats/gguf_copy.h"
#include "model/model.h"
#include "rsmoe.h"
#include "train/retrieval_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: rsmoe index -m MODEL.gguf --data DATA --features FEAT.gguf -o OUT.gguf [options]\n\n"
            "Writes OUT: MODEL with a retrieval index of a data split's images and captions (docs/model.md,\n"
            "\"Retrieval-consensus selection\"). With it, brief captions are chosen among the experts'\n"
            "proposals and the captions of the K most similar indexed images, by consensus with those\n"
            "captions (`rsmoe caption --no-retrieval` turns it off). Similarity: the images' mean-pooled\n"
            "encoder features (FEAT: `rsmoe features` of the same split with MODEL) and a linear scene probe\n"
            "trained here on the images' scene labels (a data set with fewer than two labels: the features\n"
            "alone). An index already in MODEL is replaced.\n\n"
            "options:\n"
            "  --split NAME     the split to index (default: train)\n"
            "  --images DIR     image folder of DATA (only its file names are used)\n"
            "  --k N            neighbours (default 60)\n"
            "  --gamma G        weight of the scene probe in the similarity (default 0.5)\n"
            "  --bonus B        the experts' proposals' score factor 1 + B (default 0.6)\n"
            "  --probe-steps N  Adam steps of the scene probe (default 300)\n"
            "  --f32-keys       keys as f32 (default q8_0: 4x smaller)\n"
            "The build runs on one thread (about 10 s for RSICD's 8,734 training images), so that OUT does\n"
            "not depend on the thread count.\n");
}

/* a whole-string number >= lo (integral when want_int), else false */
static bool number(const char *s, double lo, bool want_int, double *out) {
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e || !(v >= lo) || v > 1e9 || (want_int && v != (double)(long)v)) return false;
    *out = v;
    return true;
}

static bool skip_key(const char *key) { return !strncmp(key, "rsmoe.retrieval.", 16); }

int cmd_index(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *feat = NULL, *out = NULL, *split = "train", *images = NULL;
    rs_retrieval_build_params bp = rs_retrieval_build_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && has) model = argv[++i];
        else if (!strcmp(a, "--data") && has) data = argv[++i];
        else if (!strcmp(a, "--features") && has) feat = argv[++i];
        else if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "--split") && has) split = argv[++i];
        else if (!strcmp(a, "--images") && has) images = argv[++i];
        else if ((!strcmp(a, "--k") || !strcmp(a, "--gamma") || !strcmp(a, "--bonus") || !strcmp(a, "--probe-steps")) && has) {
            bool is_k = !strcmp(a, "--k"), is_steps = !strcmp(a, "--probe-steps");
            double v;
            if (!number(argv[++i], is_k ? 1 : 0, is_k || is_steps, &v)) {
                fprintf(stderr, "rsmoe index: %s '%s': --k >= 1 and --probe-steps >= 0 (integers), --gamma >= 0 "
                                "and --bonus >= 0\n", a, argv[i]);
                return 2;
            }
            if (is_k) bp.k = (int)v;
            else if (is_steps) bp.probe_steps = (int)v;
            else if (!strcmp(a, "--gamma")) bp.gamma = (float)v;
            else bp.bonus = (float)v;
        }
        else if (!strcmp(a, "--f32-keys")) bp.q8_keys = false;
        else { fprintf(stderr, "rsmoe index: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!model || !data || !feat || !out) { usage(stderr); return 2; }
    if (!strcmp(out, model)) { fprintf(stderr, "rsmoe index: -o must be a new file (not the model)\n"); return 2; }
    rs_model *m = NULL;
    rsmoe_status st = rs_model_load_ex(model, false, false, &m);
    if (st) return cli_fail(model, st);
    rs_features *f = NULL;
    if ((st = rs_features_open(feat, m, &f))) { rs_model_free(m); return cli_fail(feat, st); }
    rs_dataset ds = {0};
    rs_dataset_opts o = {.image_root = images, .split = split};
    if ((st = rs_dataset_load(data, RS_DS_AUTO, &o, &ds))) { rs_features_close(f); rs_model_free(m); return cli_fail(data, st); }
    rs_gguf_writer *w = rs_gguf_writer_new();
    rs_retrieval_bufs keep = {0};
    rs_retrieval_build_report rep;
    double t0 = rs_time_s();
    if (!w) st = RSMOE_ERR_NOMEM;
    if (!st) st = rs_gguf_copy_kvs(m->g, w, skip_key);
    for (int64_t i = 0; !st && i < rs_gguf_n_tensors(m->g); i++) {
        const rs_tensor *t = rs_gguf_tensor(m->g, i);
        if (strncmp(t->name, "retrieval.", 10)) st = rs_gguf_writer_add_tensor(w, t);
    }
    if (!st) st = rs_retrieval_build(&ds, f, &bp, w, &keep, &rep);
    if (!st) st = rs_gguf_writer_write(w, out);
    rs_retrieval_bufs_free(&keep);
    rs_gguf_writer_free(w);
    rs_dataset_free(&ds);
    rs_features_close(f);
    rs_model_free(m);
    if (st) return cli_fail("index", st);
    printf("%s: indexed %d images of split %s (%d skipped: no features or captions), %d distinct sentences, "
           "%lld n-grams; scene probe over %d classes: loss %.3f -> %.3f, training accuracy %.1f %%; %.1f s\n",
           out, rep.n_img, split, rep.skipped, rep.n_sent, (long long)rep.n_ngram, rep.n_class, rep.probe_loss0,
           rep.probe_loss, 100.0 * rep.probe_acc, rs_time_s() - t0);
    rsmoe_model *chk = rsmoe_model_load(out, NULL, &st);
    if (!chk) {
        int rc = cli_fail("index: the result does not load as a model (removed)", st);
        unlink(out);
        return rc;
    }
    rsmoe_model_free(chk);
    return 0;
}
