/* cmd_features.c - `rsmoe features -m MODEL --data D -o FILE`: the feature cache. */
#include "cli.h"
#include "core/core.h"
#include "data/dataset.h"
#include "data/image.h"
#include "train/features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe features -m MODEL.gguf --data DATASET.json -o CACHE.gguf [--images DIR] [--split S]\n"
               "                      [--view V] [--threads N]\n\n"
               "Runs the model's frozen image encoder once over a data set and stores the visual tokens (f16)\n"
               "in one memory-mapped file keyed by image file name, with the encoder's fingerprint (a cache made\n"
               "by another encoder is refused by training and evaluation). Unreadable images are skipped and\n"
               "listed. Prints progress and the throughput (images/s) at the end.\n"
               "  --images DIR  image folder (default: images/ beside the data set file)\n"
               "  --split S     only this split (default: all)\n"
               "  --view V      flip or rotate every image first: id (default), hflip, vflip, rot180,\n"
               "                transpose, rot90, rot270, antitranspose (or 0-7); caches of other views\n"
               "                are training augmentations (rsmoe train --aug-features)\n");
}

static void on_progress(const rs_features_progress *p, void *ud) {
    (void)ud;
    if (p->done % 50 == 0 || p->done == p->total) {
        double rate = p->seconds > 0 ? p->done / p->seconds : 0;
        fprintf(stderr, "\r  %d/%d images, %.1f images/s, ETA %.0f s   ", p->done, p->total, rate,
                rate > 0 ? (p->total - p->done) / rate : 0);
    }
}

static void on_bad(const char *path, const char *msg, void *ud) {
    (void)ud;
    fprintf(stderr, "\n  skipped %s: %s\n", path, msg);
}

int cmd_features(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *out = NULL, *images = NULL, *split = NULL;
    int threads = rs_default_threads(), view = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && has) model = argv[++i];
        else if (!strcmp(a, "--data") && has) data = argv[++i];
        else if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "--images") && has) images = argv[++i];
        else if (!strcmp(a, "--split") && has) split = argv[++i];
        else if (!strcmp(a, "--view") && has) {
            view = rs_image_view_parse(argv[++i]);
            if (view < 0) { fprintf(stderr, "rsmoe features: unknown --view '%s' (id, hflip, vflip, rot180, transpose, rot90, rot270, antitranspose)\n", argv[i]); return 2; }
        }
        else if (!strcmp(a, "--threads") && has) { threads = atoi(argv[++i]); if (threads < 1) { fprintf(stderr, "rsmoe features: bad --threads\n"); return 2; } }
        else { fprintf(stderr, "rsmoe features: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!model || !data || !out) { usage(stderr); return 2; }
    char root[4096];
    if (!images) {
        const char *slash = strrchr(data, '/');
        snprintf(root, sizeof root, "%.*simages", slash ? (int)(slash - data + 1) : 0, data);
        images = root;
    }
    rs_model *m;
    rsmoe_status st = rs_model_load(model, &m);
    if (st) return cli_fail(model, st);
    rs_dataset ds;
    rs_dataset_opts o = {.image_root = images, .split = split};
    if ((st = rs_dataset_load(data, RS_DS_AUTO, &o, &ds))) { rs_model_free(m); return cli_fail(data, st); }
    rs_pool *pool = rs_pool_new(threads);
    rs_features_progress fin;
    fprintf(stderr, "encoding %d images of %s with %s's encoder (%d tokens x %d)%s%s\n", ds.nitems, data, model, m->enc_tokens,
            m->enc_width, view ? ", view " : "", view ? rs_image_view_name(view) : "");
    st = rs_features_build(m, &ds, out, view, pool, on_progress, on_bad, NULL, &fin);
    fprintf(stderr, "\n");
    int rc = 0;
    if (st) rc = cli_fail("features", st);
    else
        printf("wrote %s: %d images (%d skipped) in %.1f s: %.1f images/s on %d threads\n", out, fin.done - fin.failed,
               fin.failed, fin.seconds, fin.seconds > 0 ? fin.done / fin.seconds : 0, rs_pool_size(pool));
    rs_pool_free(pool);
    rs_dataset_free(&ds);
    rs_model_free(m);
    return rc;
}
