/* test_metrics_vqa.c - VQA accuracy: vqaEval answer normalisation, OA/AA, count bins
 * (hand-computed cases). */
#include "test.h"
#include "eval/eval.h"

TEST(normalize) {
    static const char *cases[][2] = {
        {"Yes", "yes"}, {"yes.", "yes"}, {"yes!", "yes"}, {"Two", "2"}, {"the two", "2"},
        {"a dog", "dog"}, {"10,000", "10000"}, {"3.5", "3.5"}, {"dont", "don't"},
        {"between 10m2 and 100m2", "between 10m2 and 100m2"}, {" no\n", "no"},
        {"rural/urban", "rural urban"}, {"left - right", "left right"}, {"none", "0"},
        {"", ""}, {"An  Apple", "apple"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *n = rs_vqa_normalize(cases[i][0]);
        REQUIRE(n, "NULL");
        CHECK(!strcmp(n, cases[i][1]), "'%s' -> '%s', expected '%s'", cases[i][0], n, cases[i][1]);
        free(n);
    }
}

TEST(accuracy) {
    /* presence: 2 of 3 right; count: 1 of 2; comparison: 0 of 1 */
    const char *types[6] = {"presence", "count", "presence", "comparison", "presence", "count"};
    const char *pred[6] = {"Yes", "two", "no", "yes", "yes.", "3"};
    const char *gt[6] = {"yes", "2", "yes", "no", "yes", "4"};
    rs_vqa_result r;
    REQUIRE(rs_vqa_accuracy(6, types, pred, gt, &r) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(r.n_types == 3, "types %zu", r.n_types);
    CHECK(!strcmp(r.type_names[0], "comparison") && !strcmp(r.type_names[1], "count") &&
          !strcmp(r.type_names[2], "presence"), "sorted names");
    CHECK(r.type_correct[0] == 0 && r.type_total[0] == 1, "comparison");
    CHECK(r.type_correct[1] == 1 && r.type_total[1] == 2, "count");
    CHECK(r.type_correct[2] == 2 && r.type_total[2] == 3, "presence");
    CHECK(fabs(r.oa - 3.0 / 6) < 1e-15, "OA %g", r.oa);
    CHECK(fabs(r.aa - (0 + 0.5 + 2.0 / 3) / 3) < 1e-15, "AA %g", r.aa);
    rs_vqa_result_free(&r);
    CHECK(rs_vqa_accuracy(0, types, pred, gt, &r) != RSMOE_OK, "empty must fail");
    const char *badgt[1] = {NULL};
    CHECK(rs_vqa_accuracy(1, types, pred, badgt, &r) != RSMOE_OK, "NULL answer must fail");
}

TEST(count_bins) {
    const double b[4] = {0, 10, 100, 1000};   /* 0, 1-10, 11-100, 101-1000, >1000 */
    CHECK(rs_vqa_count_bin("0", b, 4) == 0, "0");
    CHECK(rs_vqa_count_bin("none", b, 4) == 0, "none");
    CHECK(rs_vqa_count_bin("seven", b, 4) == 1, "seven");
    CHECK(rs_vqa_count_bin("10", b, 4) == 1, "10");
    CHECK(rs_vqa_count_bin("11", b, 4) == 2, "11");
    CHECK(rs_vqa_count_bin("1,000", b, 4) == 3, "1,000");
    CHECK(rs_vqa_count_bin("5000", b, 4) == 4, "5000");
    CHECK(rs_vqa_count_bin("yes", b, 4) == -1, "not a number");
}

int main(void) {
    RUN(normalize);
    RUN(accuracy);
    RUN(count_bins);
    return test_summary();
}
