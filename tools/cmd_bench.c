/* cmd_bench.c - `rsmoe bench WHAT`: benchmark drivers (bench/bench_*.c). */
#include "cli.h"
#include "../bench/bench.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe bench WHAT [options]   (rsmoe bench WHAT --help)\n\n"
               "  kernels   FMA peak, read bandwidth, sgemm and quantised products vs those ceilings\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "kernels")) return bench_kernels_main(argc - 1, argv + 1);
    fprintf(stderr, "rsmoe bench: unknown benchmark '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
