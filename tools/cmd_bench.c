/* cmd_bench.c - `rsmoe bench WHAT`: benchmark drivers (bench/bench_*.c). */
#include "cli.h"
#include "../bench/bench.h"

#include <stdio.h>
#include <string.h>

int bench_infer_main(int argc, char **argv);
int bench_cnn_main(int argc, char **argv); /* tools/cmd_classify.c */

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe bench WHAT [options]   (rsmoe bench WHAT --help)\n\n"
               "  kernels   FMA peak, read bandwidth, sgemm and quantised products vs those ceilings\n"
               "  cnn       a CNN image encoder (imported MobileNet): ms per image on 1 and 2 threads\n"
               "  infer     a model: encoder, Q-Former, prefill, decode (1 expert vs the batch), caption latency\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "kernels")) return bench_kernels_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "infer")) return bench_infer_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "cnn")) return bench_cnn_main(argc - 1, argv + 1);
    fprintf(stderr, "rsmoe bench: unknown benchmark '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
