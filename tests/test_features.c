/* test_features.c - the feature cache: what it stores equals the encoder's output (to f16
 * precision), lookup by file name, unreadable images skipped and reported, a cache from
 * another encoder refused as stale, malformed files refused. Uses the fixtures of tests/data. */
#include "model/model.h"
#include "test.h"
#include "train/features.h"

#include <sys/stat.h>

static char g_dir[128];

static void on_bad(const char *path, const char *msg, void *ud) {
    int *n = ud;
    (*n)++;
    (void)path;
    (void)msg;
}

TEST(cache_roundtrip_and_staleness) {
    char m1[200], m2[200], ds_path[200], cache[200];
    snprintf(m1, sizeof m1, "%s/m1.gguf", g_dir);
    snprintf(m2, sizeof m2, "%s/m2.gguf", g_dir);
    snprintf(ds_path, sizeof ds_path, "%s/ds.json", g_dir);
    snprintf(cache, sizeof cache, "%s/cache.gguf", g_dir);
    rs_init_params ip = rs_init_default_params();
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, m1, NULL, NULL) == RSMOE_OK, "init");
    ip.seed = 43;
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, m2, NULL, NULL) == RSMOE_OK, "init 2");
    FILE *f = fopen(ds_path, "w");
    fprintf(f, "{\"images\": [{\"filename\": \"rgb40.jpg\", \"split\": \"test\", \"sentences\": [{\"raw\": \"a\"}]},"
               "{\"filename\": \"truncated.png\", \"split\": \"test\", \"sentences\": [{\"raw\": \"b\"}]},"
               "{\"filename\": \"rgb37.png\", \"split\": \"test\", \"sentences\": [{\"raw\": \"c\"}]}]}");
    fclose(f);
    rs_dataset ds;
    rs_dataset_opts o = {.image_root = "tests/data"};
    REQUIRE(rs_dataset_load(ds_path, RS_DS_AUTO, &o, &ds) == RSMOE_OK, "dataset: %s", rsmoe_last_error());
    rs_model *m;
    REQUIRE(rs_model_load(m1, &m) == RSMOE_OK, "load");
    int nbad = 0;
    rs_features_progress fin;
    REQUIRE(rs_features_build(m, &ds, cache, 0, NULL, NULL, on_bad, &nbad, &fin) == RSMOE_OK, "build: %s", rsmoe_last_error());
    CHECK(nbad == 1 && fin.failed == 1 && fin.done == 3, "the truncated image is skipped and reported (%d)", nbad);
    rs_features *fc;
    REQUIRE(rs_features_open(cache, m, &fc) == RSMOE_OK, "open: %s", rsmoe_last_error());
    CHECK(rs_features_count(fc) == 2, "2 entries");
    CHECK(rs_features_find(fc, "truncated.png") < 0, "bad image absent");
    int i = rs_features_find(fc, "rgb37.png");
    REQUIRE(i >= 0, "lookup");
    size_t n = (size_t)m->enc_tokens * m->enc_width;
    float *got = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
    rs_features_get(fc, i, got);
    rs_image img;
    REQUIRE(rs_image_load("tests/data/rgb37.png", NULL, &img) == RSMOE_OK, "image");
    rs_enc_scratch es;
    REQUIRE(rs_enc_scratch_init(m, 1, &es) == RSMOE_OK, "scratch");
    REQUIRE(rs_model_encode(m, &img, want, &es, NULL) == RSMOE_OK, "encode");
    double e = test_nerr_f32(got, want, n);
    CHECK(e <= 1e-3, "cached tokens equal the encoder's to f16 precision (err %.3g)", e);
    CHECK(rs_features_view(fc) == 0, "view id recorded");
    /* a rotated view: the entries are the encoder's tokens of the rotated image */
    char cache90[220];
    snprintf(cache90, sizeof cache90, "%s/cache-rot90.gguf", g_dir);
    nbad = 0;
    REQUIRE(rs_features_build(m, &ds, cache90, 5, NULL, NULL, on_bad, &nbad, &fin) == RSMOE_OK, "build rot90: %s",
            rsmoe_last_error());
    rs_features *f90;
    REQUIRE(rs_features_open(cache90, m, &f90) == RSMOE_OK, "open rot90: %s", rsmoe_last_error());
    CHECK(rs_features_view(f90) == 5 && rs_features_count(f90) == 2, "view rot90 recorded, 2 entries");
    int j = rs_features_find(f90, "rgb37.png");
    REQUIRE(j >= 0, "lookup rot90");
    float *got90 = malloc(sizeof(float) * n), *want90 = malloc(sizeof(float) * n);
    rs_features_get(f90, j, got90);
    rs_image rot;
    REQUIRE(rs_image_dihedral(&img, 5, &rot) == RSMOE_OK, "rotate");
    REQUIRE(rs_model_encode(m, &rot, want90, &es, NULL) == RSMOE_OK, "encode rotated");
    e = test_nerr_f32(got90, want90, n);
    CHECK(e <= 1e-3, "rot90 cache holds the rotated image's tokens (err %.3g)", e);
    e = test_nerr_f32(got90, want, n);
    CHECK(e > 1e-2, "and they differ from the unrotated image's (err %.3g)", e);
    CHECK(rs_features_build(m, &ds, cache90, 8, NULL, NULL, on_bad, &nbad, &fin) == RSMOE_ERR_INVALID_ARG, "view 8 refused");
    rs_image_free(&rot);
    free(got90);
    free(want90);
    rs_features_close(f90);
    rs_enc_scratch_free(&es);
    rs_image_free(&img);
    rs_features_close(fc);
    rs_model_free(m);
    /* another encoder: stale */
    REQUIRE(rs_model_load(m2, &m) == RSMOE_OK, "load 2");
    CHECK(rs_features_open(cache, m, &fc) == RSMOE_ERR_FORMAT, "stale cache refused");
    CHECK(strstr(rsmoe_last_error(), "stale") != NULL, "message: %s", rsmoe_last_error());
    CHECK(rs_features_open(m1, NULL, &fc) == RSMOE_ERR_FORMAT, "a model is not a cache");
    CHECK(rs_features_open("/nonexistent", NULL, &fc) == RSMOE_ERR_IO, "missing file");
    rs_model_free(m);
    free(got);
    free(want);
    rs_dataset_free(&ds);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rsmoe_test_features_%d", (int)getpid());
    mkdir(g_dir, 0755);
    RUN(cache_roundtrip_and_staleness);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_summary();
}
