/* test_metrics.c - caption metrics against the toolkit's golden values (metrics.md §8),
 * hand-computed cases, an independent Python port (tests/ref/metrics_ref.py) on generated
 * cases, edge cases, and RSICD leave-one-out. */
#include "test.h"
#include "eval/eval.h"
#include "core/core.h"

#include <cjson/cJSON.h>
#include <stdint.h>

static const char *G_REFS[3][3] = {
    {"a man is riding a horse on a beach", "a person rides a brown horse along the shore",
     "a man on a horse near the ocean"},
    {"two dogs play with a red ball in the grass", "a couple of dogs playing in a field",
     "two dogs chasing a ball on green grass"},
    {"a plate of food with broccoli and rice", "a white plate topped with rice and vegetables",
     "broccoli and rice on a plate"},
};
static const char *G_HYPS[3] = {"a man riding a horse on the beach", "two dogs playing with a ball",
                                "a plate of rice and broccoli"};

static rsmoe_status golden_corpus(rs_tok_corpus *c) {
    const char *const *refs[3] = {G_REFS[0], G_REFS[1], G_REFS[2]};
    size_t nr[3] = {3, 3, 3};
    return rs_tok_corpus_build(c, 3, G_HYPS, refs, nr);
}

TEST(golden_bleu_rouge_cider) {
    rs_tok_corpus c;
    REQUIRE(golden_corpus(&c) == RSMOE_OK, "%s", rsmoe_last_error());
    double b[4], r, ci, rimg[3], cimg[3];
    REQUIRE(rs_bleu(&c, b) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(rs_rouge_l(&c, &r, rimg) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(rs_cider_d(&c, &ci, cimg) == RSMOE_OK, "%s", rsmoe_last_error());
    const double eb[4] = {0.904837417945476, 0.727850917264903, 0.468327376969244, 0.303184242755356};
    for (int n = 0; n < 4; n++) CHECK(fabs(b[n] - eb[n]) < 1e-9, "BLEU-%d %.15f vs %.15f", n + 1, b[n], eb[n]);
    const double ec[3] = {2.461702091227225, 1.797029477424967, 2.731025307762482};
    const double er[3] = {0.814885496183206, 0.598039215686274, 0.557077625570776};
    CHECK(fabs(ci - 2.329918958804891) < 1e-9, "CIDEr %.15f", ci);
    CHECK(fabs(r - 0.656667445813419) < 1e-9, "ROUGE %.15f", r);
    for (int i = 0; i < 3; i++) {
        CHECK(fabs(cimg[i] - ec[i]) < 1e-9, "CIDEr img %d %.15f", i, cimg[i]);
        CHECK(fabs(rimg[i] - er[i]) < 1e-9, "ROUGE img %d %.15f", i, rimg[i]);
    }
    rs_tok_corpus_free(&c);
}

int main(void) {
    RUN(golden_bleu_rouge_cider);
    return test_summary();
}
