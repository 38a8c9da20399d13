/* cmd_graft.c - `rsmoe graft --into MODEL --from TRAINED -o OUT`: trained tensors moved into a
 * model of another layout (e.g. stage-I weights into a model with another number of experts). */
#include "cli.h"
#include "formats/gguf_copy.h"
#include "rsmoe.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe graft --into MODEL.gguf --from TRAINED.gguf -o OUT.gguf\n\n"
               "Writes OUT: MODEL's configuration and tensors, every tensor replaced by TRAINED's tensor of\n"
               "the same name when that has the same type and shape. For example, the stage-I weights of a\n"
               "trained model moved into a model made by `rsmoe init --experts 1` (an ablation), before\n"
               "training stage 2 on it. Prints how many tensors were taken and kept; OUT is checked to\n"
               "load as a model.\n");
}

int cmd_graft(int argc, char **argv) {
    const char *into = NULL, *from = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--into") && has) into = argv[++i];
        else if (!strcmp(a, "--from") && has) from = argv[++i];
        else if (!strcmp(a, "-o") && has) out = argv[++i];
        else { fprintf(stderr, "rsmoe graft: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!into || !from || !out) { usage(stderr); return 2; }
    /* the model must be one before anything is written */
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(into, NULL, &st);
    if (!m) return cli_fail("graft: --into must be an RS-MoE model", st);
    rsmoe_model_free(m);
    rs_graft_report r;
    st = rs_gguf_graft(into, from, out, &r);
    if (st) return cli_fail("graft", st);
    printf("%s: %d tensors from %s, %d kept from %s (absent from the other)", out, r.taken, from, r.absent, into);
    if (r.mismatched) printf(", %d kept because their type or shape differ (first: %s)", r.mismatched, r.mismatch);
    if (r.unused) printf("; %d tensors of %s not in the model", r.unused, from);
    printf("\n");
    if (!(m = rsmoe_model_load(out, NULL, &st))) {
        int rc = cli_fail("graft: the result does not load as a model (removed)", st);
        unlink(out);
        return rc;
    }
    rsmoe_model_free(m);
    return 0;
}
