/* cmd_average.c - `rsmoe average -o OUT CKPT...`: checkpoint averaging (the mean of the f32
 * weights of several checkpoints of one training run). */
#include "cli.h"
#include "formats/gguf_copy.h"
#include "rsmoe.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe average -o OUT.gguf CKPT1.gguf CKPT2.gguf [CKPT...]\n\n"
               "Writes OUT: the first checkpoint's configuration and tensors, every f32 tensor replaced by\n"
               "its element-wise mean over all the checkpoints (2 to 64 of them, e.g. the model files a\n"
               "training run wrote at several steps). The checkpoints must hold the same tensors with the\n"
               "same types and shapes, and a tensor that is not f32 must be equal in all of them: average\n"
               "the f32 checkpoints, then quantize. Prints how many tensors were averaged; OUT is checked\n"
               "to load as a model. docs/training.md, \"Checkpoint averaging\".\n");
}

int cmd_average(int argc, char **argv) {
    const char *out = NULL, *in[64];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-o") && i + 1 < argc) out = argv[++i];
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "rsmoe average: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
        else if (n == 64) { fprintf(stderr, "rsmoe average: at most 64 checkpoints\n"); return 2; }
        else in[n++] = a;
    }
    if (!out || n < 2) {
        fprintf(stderr, "rsmoe average: needs -o OUT and at least two checkpoints\n");
        usage(stderr);
        return 2;
    }
    rs_average_report r;
    rsmoe_status st = rs_gguf_average(in, n, out, &r);
    if (st) return cli_fail("average", st);
    printf("%s: %d f32 tensors averaged over %d checkpoints, %d equal in all of them\n", out, r.averaged, n, r.same);
    rsmoe_model *m = rsmoe_model_load(out, NULL, &st);
    if (!m) {
        int rc = cli_fail("average: the result does not load as a model (removed)", st);
        unlink(out);
        return rc;
    }
    rsmoe_model_free(m);
    return 0;
}
