/* test_metrics_cli.c - `rsmoe score` end to end: formats, id rules, errors, and that its
 * --json numbers equal the library's rs_score_captions on the same captions. Needs the
 * rsmoe binary of the same build folder (skipped when absent). */
#include "test.h"
#include "eval/eval.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char g_rsmoe[1024];
static char g_dir[256];

static void put(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    if (f) { fputs(text, f); fclose(f); }
}

/* runs rsmoe score with args; returns the exit code, output in out (stdout+stderr) */
static int run(const char *args, char *out, size_t cap) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s score %s 2>&1", g_dir, g_rsmoe, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *REFS_COCO =
    "{\"annotations\": ["
    "{\"image_id\": 1, \"caption\": \"Many planes are parked next to a long building in an airport.\"},"
    "{\"image_id\": 1, \"caption\": \"Some planes are parked in an airport.\"},"
    "{\"image_id\": 2, \"caption\": \"A river goes through the green forest.\"},"
    "{\"image_id\": 2, \"caption\": \"There is a river in the forest.\"},"
    "{\"image_id\": 3, \"caption\": \"A bridge is over the river (grey).\"}]}";

static const char *KARPATHY =
    "{\"dataset\": \"x\", \"images\": ["
    "{\"filename\": \"a_1.jpg\", \"imgid\": 7, \"split\": \"test\", \"sentences\": [{\"raw\": \"a large airport.\"}, {\"raw\": \"many planes in an airport.\"}]},"
    "{\"filename\": \"b_2.jpg\", \"imgid\": 8, \"split\": \"test\", \"sentences\": [{\"raw\": \"green trees near a river.\"}]},"
    "{\"filename\": \"c_3.jpg\", \"imgid\": 9, \"split\": \"train\", \"sentences\": [{\"raw\": \"a beach.\"}]}]}";

TEST(json_matches_library) {
    put("refs.json", REFS_COCO);
    put("hyps.json", "[{\"image_id\": 1, \"caption\": \"Many planes parked in an airport.\"},"
                     "{\"image_id\": 2, \"caption\": \"A river in a green forest\"},"
                     "{\"image_id\": \"3\", \"caption\": \"A bridge over a river.\"}]");
    static char out[65536];
    int rc = run("--refs refs.json --hyps hyps.json --json", out, sizeof out);
    REQUIRE(rc == 0, "rc %d: %s", rc, out);
    cJSON *j = cJSON_Parse(strchr(out, '{'));
    REQUIRE(j, "bad json: %s", out);
    const char *r1[2] = {"Many planes are parked next to a long building in an airport.", "Some planes are parked in an airport."};
    const char *r2[2] = {"A river goes through the green forest.", "There is a river in the forest."};
    const char *r3[1] = {"A bridge is over the river (grey)."};
    const char *const *refs[3] = {r1, r2, r3};
    size_t nr[3] = {2, 2, 1};
    const char *hyps[3] = {"Many planes parked in an airport.", "A river in a green forest", "A bridge over a river."};
    rs_caption_refs cr = {3, nr, refs};
    rs_score_opts o;
    rs_score_opts_default(&o);
    rs_score_result r;
    REQUIRE(rs_score_captions(&cr, hyps, &o, &r) == RSMOE_OK, "%s", rsmoe_last_error());
    const char *names[7] = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR (no paraphrase)", "ROUGE-L", "CIDEr-D"};
    double v[7] = {r.bleu[0], r.bleu[1], r.bleu[2], r.bleu[3], r.meteor, r.rouge_l, r.cider};
    for (int k = 0; k < 7; k++) {
        cJSON *x = cJSON_GetObjectItem(j, names[k]);
        CHECK(cJSON_IsNumber(x) && fabs(x->valuedouble - v[k]) < 1e-12, "%s: %s vs %.15g", names[k],
              x ? cJSON_Print(x) : "missing", v[k]);
    }
    CHECK(cJSON_GetObjectItem(j, "images")->valuedouble == 3, "images");
    rs_score_result_free(&r);
    cJSON_Delete(j);
    /* the table */
    rc = run("--refs refs.json --hyps hyps.json", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "METEOR (no paraphrase)") && strstr(out, "CIDEr-D") && strstr(out, "time:"),
          "table: %s", out);
}

TEST(karpathy_ids_and_rules) {
    static char out[65536];
    put("k.json", KARPATHY);
    /* filename, filename without extension and imgid are all accepted */
    put("ok.tsv", "a_1.jpg\tan airport with planes\n8\tgreen trees near the river\n");
    put("ok2.tsv", "a_1\tan airport with planes\r\nb_2.jpg\tgreen trees\n\n");
    CHECK(run("--refs k.json --hyps ok.tsv --no-meteor", out, sizeof out) == 0, "%s", out);
    CHECK(run("--refs k.json --hyps ok2.tsv --no-meteor", out, sizeof out) == 0, "%s", out);
    /* split */
    CHECK(run("--refs k.json --split train --hyps ok.tsv --no-meteor", out, sizeof out) == 1 &&
          strstr(out, "not in the references"), "train split has other images: %s", out);
    CHECK(run("--refs k.json --split val --hyps ok.tsv", out, sizeof out) == 1 && strstr(out, "no image in split"),
          "empty split: %s", out);
    /* missing hypothesis: error, or scored without it */
    put("miss.tsv", "a_1.jpg\tan airport\n");
    CHECK(run("--refs k.json --hyps miss.tsv --no-meteor", out, sizeof out) == 1 && strstr(out, "b_2.jpg") &&
          strstr(out, "--allow-missing"), "missing: %s", out);
    CHECK(run("--refs k.json --hyps miss.tsv --no-meteor --allow-missing", out, sizeof out) == 0 &&
          strstr(out, "1 of 2"), "allow-missing: %s", out);
    /* unknown id, duplicate (under two names), bad line */
    put("unk.tsv", "a_1.jpg\tx\nb_2.jpg\ty\nzzz.jpg\tz\n");
    CHECK(run("--refs k.json --hyps unk.tsv --no-meteor", out, sizeof out) == 1 && strstr(out, "unknown image id 'zzz.jpg'"),
          "unknown: %s", out);
    put("dup.tsv", "a_1.jpg\tx\n7\ty\nb_2.jpg\tz\n");
    CHECK(run("--refs k.json --hyps dup.tsv --no-meteor", out, sizeof out) == 1 && strstr(out, "duplicate"), "dup: %s", out);
    put("bad.tsv", "a_1.jpg an airport\n");
    CHECK(run("--refs k.json --hyps bad.tsv --no-meteor", out, sizeof out) == 1 && strstr(out, "line 1"), "bad: %s", out);
    /* empty hypothesis: warned, scored */
    put("empty.tsv", "a_1.jpg\t\nb_2.jpg\tgreen trees\n");
    CHECK(run("--refs k.json --hyps empty.tsv --no-meteor", out, sizeof out) == 0 && strstr(out, "empty hypothesis"),
          "empty: %s", out);
    /* bad files and options */
    put("notjson.json", "{nope");
    CHECK(run("--refs notjson.json --hyps ok.tsv", out, sizeof out) == 1, "bad json: %s", out);
    CHECK(run("--refs nosuch.json --hyps ok.tsv", out, sizeof out) == 1 && strstr(out, "cannot read"), "no file: %s", out);
    CHECK(run("--hyps ok.tsv", out, sizeof out) == 2, "usage: %s", out);
    put("badhyp.json", "[{\"image_id\": \"a_1.jpg\", \"caption\": 5}]");
    CHECK(run("--refs k.json --hyps badhyp.json", out, sizeof out) == 1 && strstr(out, "caption"), "bad hyp: %s", out);
    put("obj.json", "{\"image_id\": \"a_1.jpg\", \"caption\": \"x\"}");
    CHECK(run("--refs k.json --hyps obj.json", out, sizeof out) == 1 && strstr(out, "must be a list"), "obj: %s", out);
    CHECK(run("--refs k.json --hyps ok.tsv --wordnet /nonexistent", out, sizeof out) == 1 && strstr(out, "WordNet"),
          "no wordnet: %s", out);
}

int main(int argc, char **argv) {
    (void)argc;
    /* the rsmoe of this build folder: BUILD/tests/test_metrics_cli -> BUILD/rsmoe */
    snprintf(g_rsmoe, sizeof g_rsmoe, "%s", argv[0]);
    char *slash = strrchr(g_rsmoe, '/');
    if (slash) *slash = 0;
    slash = strrchr(g_rsmoe, '/');
    if (slash) strcpy(slash + 1, "rsmoe");
    else snprintf(g_rsmoe, sizeof g_rsmoe, "../rsmoe");
    char *abs = realpath(g_rsmoe, NULL);
    snprintf(g_dir, sizeof g_dir, "/tmp/rsmoe_cli_XXXXXX");
    if (!abs || access(abs, X_OK) != 0 || !mkdtemp(g_dir)) {
        printf("skip all: no rsmoe binary next to this test (%s)\n", g_rsmoe);
        t_skipped = 2;
        free(abs);
        return test_summary();
    }
    snprintf(g_rsmoe, sizeof g_rsmoe, "%s", abs);
    free(abs);
    RUN(json_matches_library);
    RUN(karpathy_ids_and_rules);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_summary();
}
