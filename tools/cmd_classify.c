/* cmd_classify.c - `rsmoe classify -m ENC.gguf IMAGE...`: the CNN image encoder's classifier
 * (a check of an imported MobileNet), and its timing (`--bench`, also callable as a bench
 * driver through bench_cnn_main). */
#include "cli.h"
#include "core/core.h"
#include "data/image.h"
#include "formats/tflite.h"
#include "model/encoder_cnn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_cnn_main(int argc, char **argv);

static bool is_tflite(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char h[8] = {0};
    size_t n = fread(h, 1, 8, f);
    fclose(f);
    return n == 8 && !memcmp(h + 4, "TFL3", 4);
}

/* a GGUF from `rsmoe import tflite`, or a .tflite directly */
static rsmoe_status load_encoder(const char *path, rs_cnn_encoder **e) {
    if (!is_tflite(path)) return rs_cnn_load_gguf(path, e);
    rs_tflite *m = NULL;
    rsmoe_status st = rs_tflite_load(path, &m);
    if (st) return st;
    st = rs_cnn_from_tflite(m, e);
    rs_tflite_free(m);
    return st;
}

/* decode, then PIL-exact bicubic to the encoder's input size when it differs */
static rsmoe_status load_image(const char *path, const rs_cnn_encoder *e, rs_image *img) {
    rs_image raw = {0};
    rsmoe_status st = rs_image_load(path, NULL, &raw);
    if (st) return st;
    if (raw.c != 3) {
        rs_image_free(&raw);
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: %d channels (RGB needed)", path, raw.c);
    }
    if (raw.w == e->in_w && raw.h == e->in_h) {
        *img = raw;
        return RSMOE_OK;
    }
    st = rs_image_resize_bicubic_u8(&raw, e->in_w, e->in_h, img);
    rs_image_free(&raw);
    return st;
}

static int usage_classify(FILE *f) {
    fprintf(f, "usage: rsmoe classify -m ENCODER IMAGE... [--top K] [--threads N]\n"
               "       rsmoe classify --bench -m ENCODER [IMAGE] [--reps N] [--threads-list 1,2]\n\n"
               "Runs the CNN image encoder (a GGUF from `rsmoe import tflite`, or the .tflite itself)\n"
               "and prints the top K classes (default 5) with their softmax probability and label.\n"
               "Images are resized (PIL-exact bicubic) to the encoder's input size when needed.\n"
               "--bench times the forward pass (tokens + logits) per image: median of --reps runs\n"
               "(default 10) after one warm-up, for each thread count of --threads-list.\n");
    return f == stdout ? 0 : 2;
}

int cmd_classify(int argc, char **argv) {
    const char *model = NULL;
    const char *images[256];
    int nimg = 0, top = 5, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage_classify(stdout);
        if (!strcmp(argv[i], "--bench")) return bench_cnn_main(argc, argv);
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--top") && i + 1 < argc) top = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (argv[i][0] != '-' && nimg < 256) images[nimg++] = argv[i];
        else { fprintf(stderr, "rsmoe classify: unexpected argument '%s'\n", argv[i]); return 2; }
    }
    if (!model || nimg == 0 || top < 1 || threads < 1 || threads > 256) return usage_classify(stderr);
    rs_cnn_encoder *e = NULL;
    rsmoe_status st = load_encoder(model, &e);
    if (st) return cli_fail("classify", st);
    if (e->nclasses <= 0) {
        rs_cnn_free(e);
        fprintf(stderr, "rsmoe classify: %s has no classifier\n", model);
        return 1;
    }
    if (top > e->nclasses) top = e->nclasses;
    rs_arena a = {0};
    rs_pool *pool = threads > 1 ? rs_pool_new(threads) : NULL;
    float *logits = malloc((size_t)e->nclasses * sizeof(float));
    int *idx = malloc((size_t)top * sizeof(int));
    int rc = 0;
    if (!logits || !idx || (threads > 1 && !pool) || (st = rs_arena_init(&a, rs_cnn_scratch_bytes(e) + 4096))) {
        rc = cli_fail("classify", st ? st : RSMOE_ERR_NOMEM);
        goto done;
    }
    for (int k = 0; k < nimg; k++) {
        rs_image img = {0};
        if ((st = load_image(images[k], e, &img))) { rc = cli_fail("classify", st); continue; }
        double t0 = rs_time_s();
        st = rs_cnn_forward_u8(e, img.data, NULL, logits, &a, pool);
        double ms = 1e3 * (rs_time_s() - t0);
        rs_image_free(&img);
        if (st) { rc = cli_fail("classify", st); continue; }
        double mx = logits[0], z = 0;
        for (int i = 1; i < e->nclasses; i++) mx = fmax(mx, logits[i]);
        for (int i = 0; i < e->nclasses; i++) z += exp(logits[i] - mx);
        for (int j = 0; j < top; j++) {
            int best = -1;
            for (int i = 0; i < e->nclasses; i++) {
                bool used = false;
                for (int q = 0; q < j; q++) used |= idx[q] == i;
                if (!used && (best < 0 || logits[i] > logits[best])) best = i;
            }
            idx[j] = best;
        }
        printf("%s (%.1f ms)\n", images[k], ms);
        for (int j = 0; j < top; j++) {
            const char *l = rs_cnn_label(e, idx[j]);
            printf("  %d. %4d  p=%.4f  logit=%7.3f  %s\n", j + 1, idx[j], exp(logits[idx[j]] - mx) / z,
                   logits[idx[j]], l ? l : "");
        }
    }
done:
    free(logits);
    free(idx);
    rs_pool_free(pool);
    rs_arena_free(&a);
    rs_cnn_free(e);
    return rc;
}

static int cmp_d(const void *x, const void *y) {
    double p = *(const double *)x, q = *(const double *)y;
    return p < q ? -1 : p > q;
}

/* `rsmoe classify --bench -m ENC [IMAGE] [--reps N] [--threads-list 1,2]` (argv[0] ignored) */
int bench_cnn_main(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *tl = "1,2";
    int reps = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bench")) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage_classify(stdout);
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads-list") && i + 1 < argc) tl = argv[++i];
        else if (argv[i][0] != '-' && !image) image = argv[i];
        else { fprintf(stderr, "rsmoe classify --bench: unexpected argument '%s'\n", argv[i]); return 2; }
    }
    if (!model || reps < 1 || reps > 1000) return usage_classify(stderr);
    rs_cnn_encoder *e = NULL;
    rsmoe_status st = load_encoder(model, &e);
    if (st) return cli_fail("bench cnn", st);
    size_t n0 = (size_t)e->in_h * e->in_w * e->in_c;
    uint8_t *px = malloc(n0);
    float *tokens = malloc((size_t)e->ntokens * e->token_dim * sizeof(float) + 4);
    float *logits = malloc((size_t)(e->nclasses > 0 ? e->nclasses : 1) * sizeof(float));
    double *t = malloc((size_t)reps * sizeof(double));
    rs_arena a = {0};
    int rc = 0;
    if (!px || !tokens || !logits || !t || (st = rs_arena_init(&a, rs_cnn_scratch_bytes(e) + 4096))) {
        rc = cli_fail("bench cnn", st ? st : RSMOE_ERR_NOMEM);
        goto done;
    }
    if (image) {
        rs_image img = {0};
        if ((st = load_image(image, e, &img))) { rc = cli_fail("bench cnn", st); goto done; }
        memcpy(px, img.data, n0);
        rs_image_free(&img);
    } else {
        rs_rng r;
        rs_rng_seed(&r, 1);
        for (size_t i = 0; i < n0; i++) px[i] = (uint8_t)(rs_rng_u64(&r) & 255);
    }
    double macs = 0;
    for (int i = 0; i < e->nops; i++) {
        const rs_cnn_op *op = &e->ops[i];
        if (op->kind == RS_CNN_CONV) macs += (double)op->p.oh * op->p.ow * op->p.oc * op->p.kh * op->p.kw * op->p.ic;
        else if (op->kind == RS_CNN_DWCONV) macs += (double)op->p.oh * op->p.ow * op->p.oc * op->p.kh * op->p.kw;
        else if (op->kind == RS_CNN_FC) macs += (double)op->p.ic * op->p.oc;
    }
    printf("%s: %dx%d input, %.0f M multiply-adds per image, %d runs after 1 warm-up\n", e->name, e->in_w,
           e->in_h, macs / 1e6, reps);
    printf("| threads | median ms/image | min ms | max ms | GFLOP/s (median) |\n|---:|---:|---:|---:|---:|\n");
    for (const char *p = tl; *p;) {
        int nt = atoi(p);
        if (nt < 1 || nt > 256) { fprintf(stderr, "rsmoe classify --bench: bad --threads-list\n"); rc = 2; break; }
        rs_pool *pool = nt > 1 ? rs_pool_new(nt) : NULL;
        if (nt > 1 && !pool) { rc = cli_fail("bench cnn", RSMOE_ERR_NOMEM); break; }
        for (int i = -1; i < reps && !st; i++) {
            double t0 = rs_time_s();
            st = rs_cnn_forward_u8(e, px, tokens, e->nclasses > 0 ? logits : NULL, &a, pool);
            if (i >= 0) t[i] = 1e3 * (rs_time_s() - t0);
        }
        rs_pool_free(pool);
        if (st) { rc = cli_fail("bench cnn", st); break; }
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
        printf("| %d | %.2f | %.2f | %.2f | %.1f |\n", nt, med, t[0], t[reps - 1], 2 * macs / (med * 1e-3) / 1e9);
        const char *c = strchr(p, ',');
        p = c ? c + 1 : p + strlen(p);
    }
done:
    free(px);
    free(tokens);
    free(logits);
    free(t);
    rs_arena_free(&a);
    rs_cnn_free(e);
    return rc;
}
