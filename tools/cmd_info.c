/* cmd_info.c - `rsmoe info MODEL`: configuration, parameter counts, dtypes, memory. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rsmoe info MODEL.gguf\n\nPrints the model's configuration, parameter counts per part, "
                   "weight types and the memory a context needs.\n");
            return 0;
        }
        if (argv[i][0] == '-' && strcmp(argv[i], "-m")) { fprintf(stderr, "rsmoe info: unknown option '%s'\n", argv[i]); return 2; }
        if (!strcmp(argv[i], "-m")) continue;
        path = argv[i];
    }
    if (!path) { fprintf(stderr, "usage: rsmoe info MODEL.gguf\n"); return 2; }
    rsmoe_status st;
    rsmoe_model *m = rsmoe_model_load(path, NULL, &st);
    if (!m) return cli_fail(path, st);
    char buf[4096];
    rsmoe_model_describe(m, buf, sizeof buf);
    fputs(buf, stdout);
    rsmoe_context_params cp = rsmoe_context_default_params();
    cp.n_threads = 1;
    rsmoe_context *c = rsmoe_context_new(m, &cp, &st);
    if (c) {
        printf("context:        %.1f MiB (KV cache for %d beams per expert, scratch)\n", (double)rsmoe_context_bytes(c) / 1048576.0, cp.max_beams);
        rsmoe_context_free(c);
    }
    rsmoe_model_free(m);
    return 0;
}
