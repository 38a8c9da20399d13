/* test_vit.c - the ViT's position-grid interpolation against PyTorch's
 * F.interpolate(mode="bicubic", align_corners=False) (tests/ref/interp_torch.py), and a
 * forward pass at a non-native input size. */
#include "model/model.h"
#include "model/vit.h"
#include "test.h"

#include <sys/stat.h>

TEST(pos_interp_matches_torch) {
    if (!test_have_python("torch")) SKIP("/usr/bin/python3 with torch is absent");
    const int C = 5;
    int cases[3][2] = {{4, 6}, {4, 3}, {5, 9}};
    for (int k = 0; k < 3; k++) {
        int gi = cases[k][0], go = cases[k][1];
        size_t nin = (size_t)(1 + gi * gi) * C, nout = (size_t)(1 + go * go) * C;
        float *in = malloc(nin * 4), *got = malloc(nout * 4), *want = malloc(nout * 4);
        rs_rng r;
        rs_rng_seed(&r, 3 + k);
        rs_rng_fill_normal(&r, in, nin, 0, 1);
        char fin[128], fout[128], cmd[512];
        snprintf(fin, sizeof fin, "/tmp/rsmoe_interp_%d_in.f32", (int)getpid());
        snprintf(fout, sizeof fout, "/tmp/rsmoe_interp_%d_out.f32", (int)getpid());
        FILE *f = fopen(fin, "wb");
        fwrite(in, 4, nin, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/interp_torch.py %s %d %d %d %s", fin, gi, go, C, fout);
        REQUIRE(system(cmd) == 0, "reference script failed");
        f = fopen(fout, "rb");
        REQUIRE(f && fread(want, 4, nout, f) == nout, "reference output");
        fclose(f);
        rs_vit_interp_pos(in, C, gi, go, got);
        double e = test_nerr_f32(got, want, nout);
        CHECK(e <= 1e-5, "%d -> %d: normalised error %.3g", gi, go, e);
        remove(fin);
        remove(fout);
        free(in); free(got); free(want);
    }
}

TEST(forward_at_other_sizes) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/rsmoe_test_vit_%d.gguf", (int)getpid());
    rs_init_params ip = rs_init_default_params();
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, path, NULL, NULL) == RSMOE_OK, "init");
    rs_model *m;
    REQUIRE(rs_model_load(path, &m) == RSMOE_OK, "load: %s", rsmoe_last_error());
    int sides[3] = {32, 48, 16};
    for (int k = 0; k < 3; k++) {
        int side = sides[k], T = rs_vit_n_tokens(&m->vit.c, side);
        CHECK(T == (side / 8) * (side / 8) + 1, "tokens at %d px", side);
        float *img = malloc(sizeof(float) * 3 * side * side), *out = malloc(sizeof(float) * (size_t)T * 32);
        float *sc = malloc(sizeof(float) * rs_vit_scratch_floats(&m->vit.c, side, 1));
        rs_rng r;
        rs_rng_seed(&r, 1);
        rs_rng_fill_normal(&r, img, 3 * (size_t)side * side, 0, 1);
        CHECK(rs_vit_forward(&m->vit, img, side, out, sc, NULL) == RSMOE_OK, "forward at %d: %s", side, rsmoe_last_error());
        int finite = 1;
        for (int i = 0; i < T * 32; i++) finite &= isfinite(out[i]);
        CHECK(finite, "finite output at %d px", side);
        free(img); free(out); free(sc);
    }
    float dummy[4];
    CHECK(rs_vit_forward(&m->vit, dummy, 30, dummy, dummy, NULL) == RSMOE_ERR_INVALID_ARG, "30 px is not a multiple of the patch");
    rs_model_free(m);
    remove(path);
}

int main(void) {
    RUN(pos_interp_matches_torch);
    RUN(forward_at_other_sizes);
    return test_summary();
}
