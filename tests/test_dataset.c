/* test_dataset.c - the data-set loaders on hand-made files of every format, their error
 * messages, image checks, the RSVQA writer round trip, and the full RSICD benchmark. */
#include "data/dataset.h"
#include "data/qgen.h"
#include "test.h"

#define DS "tests/data/ds/"

static rs_dataset_opts opts_root(const char *split) {
    rs_dataset_opts o = {"tests/data", split, RS_DS_NO_CHECK};
    return o;
}

TEST(karpathy_fixture) {
    rs_dataset ds;
    rs_dataset_opts o = opts_root(NULL);
    REQUIRE(rs_dataset_load(DS "karpathy.json", RS_DS_AUTO, &o, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.format == RS_DS_KARPATHY, "format %d", ds.format);
    CHECK(!strcmp(ds.name, "tiny"), "name %s", ds.name);
    REQUIRE(ds.nitems == 3, "items %d", ds.nitems);
    CHECK(ds.nqa == 0, "qa %d", ds.nqa);
    const rs_ds_item *a = &ds.items[0], *b = &ds.items[1], *c = &ds.items[2];
    CHECK(!strcmp(a->path, "tests/data/rgb37.png") && a->id == 7, "path %s id %lld", a->path, (long long)a->id);
    CHECK(!strcmp(a->split, "train") && !strcmp(a->label, "DenseResidential"), "split/label");
    REQUIRE(a->ncap == 2, "ncap %d", a->ncap);
    CHECK(!strcmp(a->captions[0], "many buildings and green trees are in a dense residential area."), "trimmed: '%s'",
          a->captions[0]);
    CHECK(!strcmp(b->filename, "sub/grey20.png") && !strcmp(b->path, "tests/data/sub/grey20.png"), "filepath: %s", b->path);
    REQUIRE(b->ncap == 1, "ncap");
    CHECK(!strcmp(b->captions[0], "a bridge is over a river"), "tokens fallback: '%s'", b->captions[0]);
    CHECK(c->id == 2 && !strcmp(c->label, ""), "defaults: id %lld", (long long)c->id);
    CHECK(rs_dataset_ncaptions(&ds) == 4, "ncaptions");
    rs_dataset_free(&ds);
    o = opts_root("train");
    REQUIRE(rs_dataset_load(DS "karpathy.json", RS_DS_KARPATHY, &o, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.nitems == 2 && !strcmp(ds.items[1].filename, "rgb40.jpg"), "split filter: %d", ds.nitems);
    rs_dataset_free(&ds);
}

static void expect_error(const char *file, rs_ds_format f, const rs_dataset_opts *o, rsmoe_status want,
                         const char *n1, const char *n2) {
    rs_dataset ds;
    rsmoe_status st = rs_dataset_load(file, f, o, &ds);
    const char *m = rsmoe_last_error();
    CHECK(st == want, "%s: status %d want %d (%s)", file, st, want, m);
    CHECK(strstr(m, file) != NULL, "%s: message does not name the file: %s", file, m);
    if (n1) CHECK(strstr(m, n1) != NULL, "%s: message lacks '%s': %s", file, n1, m);
    if (n2) CHECK(strstr(m, n2) != NULL, "%s: message lacks '%s': %s", file, n2, m);
    CHECK(ds.nitems == 0 && ds.items == NULL, "%s: output not empty", file);
}

TEST(errors_name_file_and_entry) {
    rs_dataset_opts o = opts_root(NULL);
    expect_error(DS "karpathy_missing_field.json", RS_DS_AUTO, &o, RSMOE_ERR_FORMAT, "images[1]", "sentences");
    expect_error(DS "karpathy_bad.json", RS_DS_AUTO, &o, RSMOE_ERR_FORMAT, "malformed JSON", "line 3");
    expect_error(DS "rsicap_missing.json", RS_DS_AUTO, &o, RSMOE_ERR_FORMAT, "annotations[1]", "text_output");
    expect_error(DS "rsieval_missing.json", RS_DS_RSIEVAL, &o, RSMOE_ERR_FORMAT, "qa_pairs[1]", "answer");
    expect_error(DS "rsivqa_bad.txt", RS_DS_AUTO, &o, RSMOE_ERR_FORMAT, ":2:", "image:question?answer");
    expect_error(DS "BAD_split_val_questions.json", RS_DS_AUTO, &o, RSMOE_ERR_FORMAT, "questions[1]", "img_id 9");
    expect_error(DS "no_such_file.json", RS_DS_AUTO, &o, RSMOE_ERR_IO, NULL, NULL);
    expect_error(DS "rsivqa.txt", RS_DS_KARPATHY, &o, RSMOE_ERR_FORMAT, "not a JSON", NULL);
    expect_error(DS "rsicap.json", RS_DS_KARPATHY, &o, RSMOE_ERR_FORMAT, "images", NULL);
    o.check = RS_DS_REQUIRE_IMAGES;
    expect_error(DS "karpathy_missing_image.json", RS_DS_AUTO, &o, RSMOE_ERR_IO, "no_such_image.png", "entry 1");
}

TEST(missing_images_skipped) {
    rs_dataset ds;
    rs_dataset_opts o = opts_root(NULL);
    o.check = RS_DS_SKIP_MISSING;
    REQUIRE(rs_dataset_load(DS "karpathy_missing_image.json", RS_DS_AUTO, &o, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.nitems == 2 && ds.nmissing == 1, "items %d missing %d", ds.nitems, ds.nmissing);
    CHECK(ds.nitems == 2 && !strcmp(ds.items[1].filename, "rgb40.jpg") && !strcmp(ds.items[1].captions[0], "c"), "kept order");
    rs_dataset_free(&ds);
}

typedef struct { int n; int items[8]; char msg[8][256]; } bad_log;
static void on_bad(void *ud, int item, const char *path, rsmoe_status st, const char *msg) {
    bad_log *l = ud;
    (void)st;
    if (l->n < 8) { l->items[l->n] = item; snprintf(l->msg[l->n], 256, "%s|%s", path, msg); }
    l->n++;
}

TEST(batch_image_check_skips_and_reports) {
    rs_dataset ds;
    rs_dataset_opts o = opts_root(NULL);
    o.check = RS_DS_REQUIRE_IMAGES; /* all four files exist; two do not decode */
    REQUIRE(rs_dataset_load(DS "karpathy_broken_files.json", RS_DS_AUTO, &o, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    bad_log l = {0};
    int bad = rs_dataset_check_images(&ds, NULL, on_bad, &l);
    CHECK(bad == 2 && l.n == 2, "bad %d", bad);
    CHECK(l.items[0] == 1 && strstr(l.msg[0], "corrupt.png"), "first: %s", l.msg[0]);
    CHECK(l.items[1] == 2 && strstr(l.msg[1], "truncated.jpg"), "second: %s", l.msg[1]);
    rs_dataset_free(&ds);
}

TEST(rsicap_and_rsieval) {
    rs_dataset ds;
    REQUIRE(rs_dataset_load(DS "rsicap.json", RS_DS_AUTO, NULL, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.format == RS_DS_RSICAP && ds.nitems == 2, "rsicap %d %d", ds.format, ds.nitems);
    if (ds.nitems == 2) {
        CHECK(!strcmp(ds.items[0].split, "train") && ds.items[0].ncap == 1, "split");
        CHECK(strstr(ds.items[0].captions[0], "Many ships are docked along the pier.") != NULL, "caption");
        CHECK(ds.items[1].id == 12, "image_id %lld", (long long)ds.items[1].id);
        CHECK(!strcmp(ds.items[0].path, "tests/data/ds/P0001_0001.png"), "default root: %s", ds.items[0].path);
    }
    rs_dataset_free(&ds);
    REQUIRE(rs_dataset_load(DS "rsieval.json", RS_DS_AUTO, NULL, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.format == RS_DS_RSIEVAL && ds.nitems == 2 && ds.nqa == 3, "rsieval %d %d %d", ds.format, ds.nitems, ds.nqa);
    if (ds.nqa == 3) {
        CHECK(ds.qa[0].item == 0 && !strcmp(ds.qa[0].type, "quantity") && !strcmp(ds.qa[0].answer, "2"), "qa0");
        CHECK(ds.qa[2].item == 1 && !strcmp(ds.qa[2].type, "color") && !strcmp(ds.qa[2].answer, "green"), "qa2");
        CHECK(!strcmp(ds.items[1].captions[0], "A river crosses farmland."), "caption");
    }
    rs_dataset_free(&ds);
}

static void check_rsvqa_fixture(const char *file) {
    rs_dataset ds;
    rs_dataset_opts o = {"/data/Images_LR", NULL, RS_DS_NO_CHECK};
    REQUIRE(rs_dataset_load(file, RS_DS_AUTO, &o, &ds) == RSMOE_OK, "%s: %s", file, rsmoe_last_error());
    CHECK(ds.format == RS_DS_RSVQA && !ds.derived, "format");
    /* image 7 is inactive; question 13 is inactive */
    REQUIRE(ds.nitems == 2 && ds.nqa == 3, "%s: items %d qa %d", file, ds.nitems, ds.nqa);
    CHECK(!strcmp(ds.items[0].path, "/data/Images_LR/5.tif") && !strcmp(ds.items[0].split, "train"), "path %s split %s",
          ds.items[0].path, ds.items[0].split);
    CHECK(ds.qa[1].id == 11 && !strcmp(ds.qa[1].answer, "no") && !strcmp(ds.qa[1].type, "comparison") && ds.qa[1].item == 0,
          "q11");
    CHECK(ds.qa[2].id == 12 && !strcmp(ds.qa[2].answer, "rural") && ds.qa[2].item == 1, "q12");
    rs_dataset_free(&ds);
}

TEST(rsvqa_split_files) {
    check_rsvqa_fixture(DS "LR_split_train_questions.json");
    check_rsvqa_fixture(DS "LR_split_train_answers.json");
    check_rsvqa_fixture(DS "LR_split_train_images.json");
    rs_dataset ds;
    rs_dataset_opts o = {NULL, "val", RS_DS_NO_CHECK};
    REQUIRE(rs_dataset_load(DS "LR_split_train_questions.json", RS_DS_RSVQA, &o, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.nitems == 0 && ds.nqa == 0, "split filter: %d %d", ds.nitems, ds.nqa);
    rs_dataset_free(&ds);
}

TEST(rsivqa_lines) {
    rs_dataset ds;
    REQUIRE(rs_dataset_load(DS "rsivqa.txt", RS_DS_AUTO, NULL, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.format == RS_DS_RSIVQA, "format");
    REQUIRE(ds.nitems == 3 && ds.nqa == 4, "items %d qa %d", ds.nitems, ds.nqa);
    CHECK(ds.qa[0].item == 0 && ds.qa[1].item == 0 && ds.qa[2].item == 1 && ds.qa[3].item == 2, "grouping");
    CHECK(!strcmp(ds.qa[1].question, "how many planes are there?") && !strcmp(ds.qa[1].answer, "3"), "q1 '%s' '%s'",
          ds.qa[1].question, ds.qa[1].answer);
    CHECK(!strcmp(ds.qa[2].question, "what color is the roof?") && !strcmp(ds.qa[2].answer, "red"), "trim '%s' '%s'",
          ds.qa[2].question, ds.qa[2].answer);
    CHECK(!strcmp(ds.qa[0].type, "presence") && !strcmp(ds.qa[1].type, "count") && !strcmp(ds.qa[2].type, "color") &&
              !strcmp(ds.qa[3].type, "position"),
          "types %s %s %s %s", ds.qa[0].type, ds.qa[1].type, ds.qa[2].type, ds.qa[3].type);
    rs_dataset_free(&ds);
}

TEST(rsvqa_writer_round_trip) {
    rs_dataset ds, dq, back;
    rs_dataset_opts o = opts_root(NULL);
    REQUIRE(rs_dataset_load(DS "karpathy.json", RS_DS_AUTO, &o, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(rs_qgen_derive(&ds, NULL, &dq) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(dq.nqa > 0, "no questions");
    char path[] = "/tmp/rsmoe_test_ds_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    REQUIRE(rs_dataset_write_rsvqa(&dq, path, "derived for a test") == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(rs_dataset_load(path, RS_DS_AUTO, &o, &back) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(back.format == RS_DS_RSVQA && back.derived, "format %d derived %d", back.format, back.derived);
    CHECK(back.nitems == dq.nitems && back.nqa == dq.nqa, "%d/%d items %d/%d qa", back.nitems, dq.nitems, back.nqa, dq.nqa);
    for (int k = 0; k < back.nqa && k < dq.nqa; k++) {
        CHECK(!strcmp(back.qa[k].question, dq.qa[k].question) && !strcmp(back.qa[k].answer, dq.qa[k].answer) &&
                  !strcmp(back.qa[k].type, dq.qa[k].type) && back.qa[k].item == dq.qa[k].item,
              "qa %d differs", k);
    }
    for (int i = 0; i < back.nitems && i < dq.nitems; i++)
        CHECK(!strcmp(back.items[i].path, dq.items[i].path) && !strcmp(back.items[i].split, dq.items[i].split) &&
                  !strcmp(back.items[i].label, dq.items[i].label),
              "item %d differs", i);
    /* the split filter works on the combined file's per-image split */
    rs_dataset t;
    o.split = "test";
    REQUIRE(rs_dataset_load(path, RS_DS_RSVQA, &o, &t) == RSMOE_OK, "%s", rsmoe_last_error());
    int want = 0;
    for (int k = 0; k < dq.nqa; k++) want += !strcmp(dq.items[dq.qa[k].item].split, "test");
    CHECK(t.nitems == 1 && t.nqa == want, "test split: %d items %d qa (want %d)", t.nitems, t.nqa, want);
    rs_dataset_free(&t);
    unlink(path);
    rs_dataset_free(&back);
    rs_dataset_free(&dq);
    rs_dataset_free(&ds);
}

TEST(format_names) {
    CHECK(rs_ds_format_parse("rsicd") == RS_DS_KARPATHY && rs_ds_format_parse("rsivqa") == RS_DS_RSIVQA, "parse");
    CHECK(rs_ds_format_parse("coco") == -1, "unknown");
    CHECK(!strcmp(rs_ds_format_name(RS_DS_RSVQA), "rsvqa"), "name");
}

/* the full RSICD benchmark; the expected counts are those of its README */
TEST(rsicd_full) {
    const char *sh = test_shared_dir();
    if (!sh) SKIP("../shared (RSICD) not present");
    char path[512];
    snprintf(path, sizeof path, "%s/data/rsicd/dataset_rsicd.json", sh);
    if (access(path, R_OK) != 0) SKIP("%s not present", path);
    rs_dataset ds;
    rs_dataset_opts o = {NULL, NULL, RS_DS_REQUIRE_IMAGES}; /* default root: rsicd/images */
    REQUIRE(rs_dataset_load(path, RS_DS_AUTO, &o, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.format == RS_DS_KARPATHY && !strcmp(ds.name, "rsicd"), "format/name %s", ds.name);
    CHECK(ds.nitems == 10921, "images %d", ds.nitems);
    int ntr = 0, nva = 0, nte = 0, five = 0, single = 0;
    char labels[64][32];
    int nl = 0;
    for (int i = 0; i < ds.nitems; i++) {
        const rs_ds_item *it = &ds.items[i];
        ntr += !strcmp(it->split, "train"); nva += !strcmp(it->split, "val"); nte += !strcmp(it->split, "test");
        five += it->ncap == 5;
        bool all_same = true;
        for (int c = 1; c < it->ncap; c++) all_same &= !strcmp(it->captions[c], it->captions[0]);
        single += all_same;
        int k = 0;
        while (k < nl && strcmp(labels[k], it->label)) k++;
        if (k == nl && nl < 64) snprintf(labels[nl++], 32, "%s", it->label);
    }
    CHECK(ntr == 8734 && nva == 1093 && nte == 1094, "splits %d/%d/%d", ntr, nva, nte);
    CHECK(five == 10921, "five sentences each: %d", five);
    CHECK(single == 4853, "images with a single distinct sentence: %d", single);
    CHECK(nl == 31, "scene labels %d", nl);
    CHECK(!strcmp(ds.items[0].filename, "airport_1.jpg") &&
              !strcmp(ds.items[0].captions[0], "many planes are parked next to a long building in an airport."),
          "first item %s", ds.items[0].filename);
    rs_dataset_free(&ds);
    o.split = "test";
    o.check = RS_DS_NO_CHECK;
    REQUIRE(rs_dataset_load(path, RS_DS_KARPATHY, &o, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(ds.nitems == 1094, "test split %d", ds.nitems);
    /* the first 100 test images all decode to 224 x 224 RGB */
    int nb = ds.nitems;
    ds.nitems = nb < 100 ? nb : 100;
    bad_log l = {0};
    CHECK(rs_dataset_check_images(&ds, NULL, on_bad, &l) == 0, "%d bad, first %s", l.n, l.msg[0]);
    rs_image im;
    CHECK(rs_image_load(ds.items[0].path, NULL, &im) == RSMOE_OK && im.w == 224 && im.h == 224 && im.c == 3, "size");
    rs_image_free(&im);
    ds.nitems = nb;
    rs_dataset_free(&ds);
}

int main(void) {
    RUN(karpathy_fixture);
    RUN(errors_name_file_and_entry);
    RUN(missing_images_skipped);
    RUN(batch_image_check_skips_and_reports);
    RUN(rsicap_and_rsieval);
    RUN(rsvqa_split_files);
    RUN(rsivqa_lines);
    RUN(rsvqa_writer_round_trip);
    RUN(format_names);
    RUN(rsicd_full);
    return test_summary();
}
