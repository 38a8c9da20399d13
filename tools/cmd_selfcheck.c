/* cmd_selfcheck.c - `rsmoe selfcheck`: what this build and CPU can do. */
#include "cli.h"
#include "core/core.h"

#include <stdio.h>
#include <string.h>

int cmd_selfcheck(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rsmoe selfcheck\n\nPrints the build and CPU features and runs a quick "
                   "self-check of the core.\n");
            return 0;
        }
        fprintf(stderr, "rsmoe selfcheck: unknown option '%s'\n", argv[i]);
        return 2;
    }
    printf("%s\n", rsmoe_system_info());
    /* a quick core check: arena, pool, rng */
    rs_arena a;
    rsmoe_status st = rs_arena_init(&a, 1 << 20);
    if (st) return cli_fail("arena", st);
    float *x = rs_arena_floats(&a, 1024);
    rs_rng r;
    rs_rng_seed(&r, 42);
    rs_rng_fill_normal(&r, x, 1024, 0.f, 1.f);
    double s = 0;
    for (int i = 0; i < 1024; i++) s += x[i] * x[i];
    rs_arena_free(&a);
    printf("core: arena ok, rng ok (mean square of 1024 normals = %.3f)\n", s / 1024);
    printf("selfcheck passed\n");
    return 0;
}
