/* cmd_selfcheck.c - `rsmoe selfcheck`: this build and CPU, and a quick run of the optimised
 * kernels against their plain reference twins. */
#include "cli.h"
#include "core/core.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double nerr(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

int cmd_selfcheck(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rsmoe selfcheck\n\nPrints the build and CPU features, then runs the matrix products (fp32 and the\n"
                   "quantised weight types, on every thread count up to 2) against their reference twins.\n"
                   "Exit status 1 if a result is outside its bound.\n");
            return 0;
        }
        fprintf(stderr, "rsmoe selfcheck: unknown option '%s'\n", argv[i]);
        return 2;
    }
    printf("%s\n", rsmoe_system_info());
    const int M = 7, N = 67, K = 256;
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K);
    float *y = malloc(sizeof(float) * M * N), *r = malloc(sizeof(float) * M * N);
    void *wq = malloc(rs_row_bytes(RS_F32, (int64_t)N * K));
    if (!x || !w || !y || !r || !wq) { fprintf(stderr, "rsmoe selfcheck: out of memory\n"); return 1; }
    rs_rng g;
    rs_rng_seed(&g, 7);
    rs_rng_fill_normal(&g, x, (size_t)M * K, 0, 1);
    rs_rng_fill_normal(&g, w, (size_t)N * K, 0, 1);
    int bad = 0;
    for (int nt = 1; nt <= 2; nt++) {
        rs_pool *pool = rs_pool_new(nt);
        rs_sgemm(false, true, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N, pool);
        rs_sgemm_ref(false, true, M, N, K, 1.0f, x, K, w, K, 0.0f, r, N);
        double e = nerr(y, r, (size_t)M * N);
        printf("sgemm %dx%dx%d, %d thread(s): error %.2g %s\n", M, N, K, nt, e, e <= 1e-6 ? "ok" : "FAILED");
        bad += !(e <= 1e-6);
        const rs_dtype types[3] = {RS_F16, RS_BF16, RS_Q8_0};
        const double bounds[3] = {2e-3, 2e-2, 3e-2}; /* half/bfloat16/8-bit rounding of weights (and activations) */
        for (int k = 0; k < 3; k++) {
            for (int n = 0; n < N; n++)
                rs_convert_row(types[k], w + (size_t)n * K, (uint8_t *)wq + rs_row_bytes(types[k], K) * n, K);
            rs_matmul_w(types[k], wq, x, y, M, N, K, pool);
            rs_matmul_w_ref(RS_F32, w, x, r, M, N, K);
            e = nerr(y, r, (size_t)M * N);
            printf("%-5s weights %dx%dx%d, %d thread(s): error %.2g (bound %.0e) %s\n", rs_dtype_name(types[k]), M, N, K, nt, e,
                   bounds[k], e <= bounds[k] ? "ok" : "FAILED");
            bad += !(e <= bounds[k]);
        }
        rs_pool_free(pool);
    }
    free(x); free(w); free(y); free(r); free(wq);
    printf(bad ? "selfcheck FAILED\n" : "selfcheck passed\n");
    return bad ? 1 : 0;
}
