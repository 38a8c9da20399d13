/* test_aspects.c - the aspect splitter on real RSICD captions with hand-checked aspects,
 * clause splitting, routing labels, and the derived-question generator. */
#include "data/aspects.h"
#include "data/dataset.h"
#include "data/qgen.h"
#include "test.h"

/* Real RSICD captions (dataset_rsicd.json, train) and the aspect a person gives them
 * (checked by hand against method.md §3's definitions). */
static const struct { const char *caption; rs_aspect want; } g_hand[] = {
    {"it is a piece of irregular green mountain.", RS_ASPECT_THEME},
    {"this is a vast meadow.", RS_ASPECT_THEME},
    {"a very dense residential area.", RS_ASPECT_THEME},
    {"it is a large piece of bareland.", RS_ASPECT_THEME},
    {"the vast land is a large airport.", RS_ASPECT_THEME},
    {"this land is a pasture.", RS_ASPECT_THEME},
    {"is is a satellite imagery.", RS_ASPECT_THEME},
    {"many buildings and green trees are in a dense residential area.", RS_ASPECT_OBJECTS},
    {"many storage tanks are in a factory.", RS_ASPECT_OBJECTS},
    {"a lot of broken stone and waste are in the bare land.", RS_ASPECT_OBJECTS},
    {"many planes are in two lines in an airport.", RS_ASPECT_OBJECTS},
    {"there are roads, grassland buildings and trees.", RS_ASPECT_OBJECTS},
    {"they are black, white, brown buildings, gray roads, green trees and grassland.", RS_ASPECT_OBJECTS},
    {"many cars are parked in a parking lot with a line of green trees.", RS_ASPECT_OBJECTS},
    {"it is a gray bridge,white cars, green grassland and river.", RS_ASPECT_OBJECTS},
    {"many square buildings are in an industrial area.", RS_ASPECT_OBJECTS},
    {"many planes are parked next to a long building in an airport.", RS_ASPECT_RELATIONS},
    {"a church is near several buildings and a road with some cars.", RS_ASPECT_RELATIONS},
    {"eight white storage tanks are next to a road.", RS_ASPECT_RELATIONS},
    {"the building is encircled by the lush plants.", RS_ASPECT_RELATIONS},
    {"many green trees are around an irregular dark green pond.", RS_ASPECT_RELATIONS},
    {"a stadium with a football field in it is between two parallel roads.", RS_ASPECT_RELATIONS},
    {"two gray boats are next to a rectangular dock.", RS_ASPECT_RELATIONS},
    {"the stretch of river is across the dense forest.", RS_ASPECT_RELATIONS},
    {"many green trees are in two sides of a curved green river.", RS_ASPECT_RELATIONS},
    {"on both sides of this wharf, there is a ship.", RS_ASPECT_RELATIONS},
};

TEST(hand_checked_rsicd_captions) {
    int n = (int)(sizeof g_hand / sizeof g_hand[0]), ok = 0;
    for (int i = 0; i < n; i++) {
        rs_aspect got = rs_aspect_dominant(g_hand[i].caption);
        const char *rule = "";
        rs_aspect_classify(g_hand[i].caption, strlen(g_hand[i].caption), &rule);
        CHECK(got == g_hand[i].want, "'%s': got %s (%s), want %s", g_hand[i].caption, rs_aspect_name(got), rule,
              rs_aspect_name(g_hand[i].want));
        ok += got == g_hand[i].want;
    }
    /* the captions are RSICD's own: check they are in the file when it is at hand */
    const char *sh = test_shared_dir();
    if (!sh) return;
    char path[512];
    snprintf(path, sizeof path, "%s/data/rsicd/dataset_rsicd.json", sh);
    rs_dataset ds;
    if (rs_dataset_load(path, RS_DS_KARPATHY, NULL, &ds) != RSMOE_OK) return;
    for (int i = 0; i < n; i++) {
        bool found = false;
        for (int k = 0; k < ds.nitems && !found; k++)
            for (int c = 0; c < ds.items[k].ncap && !found; c++) found = !strcmp(ds.items[k].captions[c], g_hand[i].caption);
        CHECK(found, "'%s' is not an RSICD caption", g_hand[i].caption);
    }
    rs_dataset_free(&ds);
}

static void check_split(const char *cap, int n, const char *const *texts, const rs_aspect *asp) {
    rs_clause cl[RS_ASPECT_MAX_CLAUSES];
    int got = rs_aspect_split(cap, cl, RS_ASPECT_MAX_CLAUSES);
    CHECK(got == n, "'%s': %d clauses, want %d", cap, got, n);
    for (int k = 0; k < got && k < n; k++) {
        int len = cl[k].end - cl[k].begin;
        CHECK((int)strlen(texts[k]) == len && !strncmp(cap + cl[k].begin, texts[k], (size_t)len),
              "'%s' clause %d: '%.*s', want '%s'", cap, k, len, cap + cl[k].begin, texts[k]);
        CHECK(cl[k].aspect == asp[k], "'%s' clause %d: %s (%s), want %s", cap, k, rs_aspect_name(cl[k].aspect), cl[k].rule,
              rs_aspect_name(asp[k]));
    }
}

TEST(clause_splitting) {
    const rs_aspect T = RS_ASPECT_THEME, O = RS_ASPECT_OBJECTS, R = RS_ASPECT_RELATIONS;
    check_split("many planes are near a terminal while a plane is on the runway in an airport.", 2,
                (const char *[]){"many planes are near a terminal", "a plane is on the runway in an airport"},
                (rs_aspect[]){R, O});
    check_split("two brown rivers join together in this forest while several black ponds lies inside it.", 2,
                (const char *[]){"two brown rivers join together in this forest", "several black ponds lies inside it"},
                (rs_aspect[]){O, R});
    check_split("the two bridges stood on top of the river, and both banks of the river had dense houses, and there "
                "was an island in the middle of the river.",
                3,
                (const char *[]){"the two bridges stood on top of the river", "both banks of the river had dense houses",
                                 "there was an island in the middle of the river"},
                (rs_aspect[]){R, O, R});
    /* RSICD's typo "while" for "white" after a number does not split */
    check_split("the configuration here is complicated and two while buildings are eye-watching.", 1,
                (const char *[]){"the configuration here is complicated and two while buildings are eye-watching"},
                (rs_aspect[]){O});
    /* a verbless fragment joins its clause; sentences split at '.' */
    check_split("on the beach, there are some houses. it is a resort.", 2,
                (const char *[]){"on the beach, there are some houses", "it is a resort"}, (rs_aspect[]){O, T});
    check_split("a big bareland.", 1, (const char *[]){"a big bareland"}, (rs_aspect[]){T});
    check_split("", 0, NULL, NULL);
    check_split(" ... ", 0, NULL, NULL);
    /* a long caption of the RSICap kind: theme, objects, relationships */
    check_split("This is a high-resolution aerial image of a port. Many white ships are docked along the pier. "
                "Three large storage tanks stand in the industrial area.",
                3,
                (const char *[]){"This is a high-resolution aerial image of a port", "Many white ships are docked along the pier",
                                 "Three large storage tanks stand in the industrial area"},
                (rs_aspect[]){T, R, O});
    rs_clause cl[2];
    CHECK(rs_aspect_split("a. b. c. d.", cl, 2) == 2, "max respected");
}

TEST(dominant_and_ties) {
    /* 5 words of relationships vs 9 of objects */
    CHECK(rs_aspect_dominant("many planes are near a terminal while a plane is on the runway in an airport.") ==
              RS_ASPECT_OBJECTS, "longer clause wins");
    /* 3 words each: relationships first */
    CHECK(rs_aspect_dominant("trees are near; there are cars.") == RS_ASPECT_RELATIONS, "tie -> relationships");
    CHECK(rs_aspect_dominant("") == RS_ASPECT_OBJECTS, "empty");
}

TEST(routing_labels) {
    CHECK(rs_aspect_for_qtype("presence") == RS_ASPECT_OBJECTS && rs_aspect_for_qtype("count") == RS_ASPECT_OBJECTS &&
              rs_aspect_for_qtype("quantity") == RS_ASPECT_OBJECTS && rs_aspect_for_qtype("color") == RS_ASPECT_OBJECTS &&
              rs_aspect_for_qtype("area") == RS_ASPECT_OBJECTS,
          "objects");
    CHECK(rs_aspect_for_qtype("comparison") == RS_ASPECT_RELATIONS && rs_aspect_for_qtype("ab_position") == RS_ASPECT_RELATIONS &&
              rs_aspect_for_qtype("re_position") == RS_ASPECT_RELATIONS && rs_aspect_for_qtype("road_ori") == RS_ASPECT_RELATIONS,
          "relationships");
    CHECK(rs_aspect_for_qtype("rural_urban") == RS_ASPECT_THEME && rs_aspect_for_qtype("scene") == RS_ASPECT_THEME &&
              rs_aspect_for_qtype("image") == RS_ASPECT_THEME,
          "theme");
    CHECK(rs_aspect_for_qtype("reasoning") == -1 && rs_aspect_for_qtype(NULL) == -1, "unknown");
    CHECK(rs_aspect_parse("relationships") == RS_ASPECT_RELATIONS && rs_aspect_parse("x") == -1, "parse");
}

TEST(vocabulary_and_words) {
    rs_word ws[16];
    int n = rs_words("Two 'storage-tanks', a Parking lot!", 35, ws, 16);
    CHECK(n == 5 && !strcmp(ws[0].w, "two") && !strcmp(ws[1].w, "storage-tanks") && !strcmp(ws[3].w, "parking"), "words %d", n);
    CHECK(n == 5 && ws[1].begin == 5 && ws[1].end == 18, "offsets %d %d", ws[1].begin, ws[1].end);
    const char *w1[] = {"many", "square", "buildings"};
    int len;
    bool pl;
    CHECK(rs_vocab_match(w1, 3, 1, &len, &pl) == -1, "'square' modifying a noun is not a square");
    int v = rs_vocab_match(w1, 3, 2, &len, &pl);
    CHECK(v >= 0 && !strcmp(rs_vocab_get(v)->sing, "building") && pl && len == 1, "buildings");
    const char *w2[] = {"a", "parking", "lot", "near"};
    v = rs_vocab_match(w2, 4, 1, &len, &pl);
    CHECK(v >= 0 && !strcmp(rs_vocab_get(v)->sing, "parking lot") && !pl && len == 2, "parking lot");
    const char *w3[] = {"people"};
    v = rs_vocab_match(w3, 1, 0, &len, &pl);
    CHECK(v >= 0 && pl, "people is plural");
}

/* every RSICD caption: clauses in order, inside the caption, non-empty */
TEST(rsicd_split_invariants) {
    const char *sh = test_shared_dir();
    if (!sh) SKIP("../shared (RSICD) not present");
    char path[512];
    snprintf(path, sizeof path, "%s/data/rsicd/dataset_rsicd.json", sh);
    rs_dataset ds;
    if (rs_dataset_load(path, RS_DS_KARPATHY, NULL, &ds) != RSMOE_OK) SKIP("%s: %s", path, rsmoe_last_error());
    long bad = 0, total = 0, counts[3] = {0, 0, 0};
    rs_clause cl[RS_ASPECT_MAX_CLAUSES];
    for (int i = 0; i < ds.nitems; i++)
        for (int c = 0; c < ds.items[i].ncap; c++) {
            const char *s = ds.items[i].captions[c];
            if (c > 0 && !strcmp(s, ds.items[i].captions[c - 1])) continue; /* repeated sentence */
            int n = rs_aspect_split(s, cl, RS_ASPECT_MAX_CLAUSES);
            int len = (int)strlen(s), prev = 0;
            total++;
            rs_word tmp[4];
            bool okc = n >= 1 || rs_words(s, strlen(s), tmp, 4) == 0; /* RSICD has captions "." */
            for (int k = 0; k < n; k++) {
                okc &= cl[k].begin >= prev && cl[k].end > cl[k].begin && cl[k].end <= len && cl[k].rule != NULL;
                prev = cl[k].end;
            }
            rs_aspect d = rs_aspect_dominant(s);
            bool in = false;
            for (int k = 0; k < n; k++) in |= cl[k].aspect == d;
            if (n == 0) in = true;
            okc &= in;
            if (!okc && bad++ < 5) fprintf(stderr, "bad split: '%s'\n", s);
            counts[d]++;
        }
    CHECK(bad == 0, "%ld of %ld captions badly split", bad, total);
    /* every aspect is present in real captions (the experts all get data) */
    CHECK(counts[0] > 0 && counts[1] > 0 && counts[2] > 0, "counts %ld %ld %ld", counts[0], counts[1], counts[2]);
    rs_dataset_free(&ds);
}

TEST(scene_words_and_qtypes) {
    char b[64];
    const char *in[] = {"DenseResidential", "BaseballField", "playfields", "bare_land", "StorageTanks", ""};
    const char *want[] = {"dense residential", "baseball field", "playfields", "bare land", "storage tanks", ""};
    for (int i = 0; i < 6; i++) {
        rs_scene_label_words(in[i], b, sizeof b);
        CHECK(!strcmp(b, want[i]), "'%s' -> '%s'", in[i], b);
    }
    rs_scene_label_words("DenseResidential", b, 6);
    CHECK(!strcmp(b, "dense"), "truncation '%s'", b);
    const char *q[] = {"Is there a bridge?", "How many planes are there?", "What color is the roof?",
                       "Is it a rural or an urban area?", "Are there more buildings than water areas?",
                       "What is the scene?", "Where is the pond?", "What is the area of the lake?", "Why?"};
    const char *t[] = {"presence", "count", "color", "rural_urban", "comparison", "scene", "position", "area", "other"};
    for (int i = 0; i < 9; i++) CHECK(!strcmp(rs_qtype_guess(q[i]), t[i]), "'%s' -> %s", q[i], rs_qtype_guess(q[i]));
}

static int find_qa(const rs_dataset *d, int item, const char *q, const char *a) {
    int n = 0;
    for (int k = 0; k < d->nqa; k++)
        if (d->qa[k].item == item && !strcmp(d->qa[k].question, q) && (!a || !strcmp(d->qa[k].answer, a))) n++;
    return n;
}

TEST(derived_questions) {
    rs_dataset ds, dq;
    REQUIRE(rs_dataset_load("tests/data/ds/qgen.json", RS_DS_AUTO, NULL, &ds) == RSMOE_OK, "%s", rsmoe_last_error());
    rs_qgen_opts o = {0};
    o.seed = 5;
    REQUIRE(rs_qgen_derive(&ds, &o, &dq) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(dq.derived && dq.format == RS_DS_RSVQA && dq.nitems == 5, "header");
    /* scene */
    CHECK(find_qa(&dq, 0, "What is the scene?", "storage tanks") == 1, "scene a");
    CHECK(find_qa(&dq, 2, "What is the scene?", "playfields") == 1, "scene c");
    CHECK(find_qa(&dq, 3, "What is the scene?", "desert") == 1, "scene d");
    CHECK(find_qa(&dq, 4, "What is the scene?", NULL) == 0, "no label, no scene question");
    /* counts stated by captions; conflicting counts give none; "a building" is not a count */
    CHECK(find_qa(&dq, 0, "How many storage tanks are there?", "2") == 1, "count a");
    CHECK(find_qa(&dq, 1, "How many storage tanks are there?", "3") == 1, "count b");
    CHECK(find_qa(&dq, 1, "How many buildings are there?", NULL) == 0, "no count from 'a building'");
    CHECK(find_qa(&dq, 2, "How many tennis courts are there?", NULL) == 0, "conflicting counts");
    /* presence: positives are the named nouns */
    CHECK(find_qa(&dq, 0, "Is there a storage tank?", "yes") == 1 && find_qa(&dq, 0, "Is there a road?", "yes") == 1, "a yes");
    CHECK(find_qa(&dq, 1, "Is there a building?", "yes") == 1 && find_qa(&dq, 1, "Is there a river?", "yes") == 1, "b yes");
    CHECK(find_qa(&dq, 2, "Is there a tennis court?", "yes") == 1, "c yes");
    CHECK(find_qa(&dq, 4, "Is there a boat?", "yes") == 1 && find_qa(&dq, 4, "Is there a port?", "yes") == 1, "e yes");
    /* negatives: as many as positives, never a noun named in the same scene class, none without a label */
    const char *tanks_class[] = {"Is there a storage tank?", "Is there a road?", "Is there a building?", "Is there a river?"};
    int yes[5] = {0}, no[5] = {0};
    for (int k = 0; k < dq.nqa; k++) {
        const rs_ds_qa *x = &dq.qa[k];
        CHECK(x->item >= 0 && x->item < 5, "item");
        if (strcmp(x->type, "presence")) continue;
        if (!strcmp(x->answer, "yes")) yes[x->item]++;
        else {
            no[x->item]++;
            if (x->item <= 1)
                for (int j = 0; j < 4; j++) CHECK(strcmp(x->question, tanks_class[j]), "negative '%s' named in class", x->question);
            if (x->item == 3) CHECK(strcmp(x->question, "Is there a desert?"), "negative desert");
        }
    }
    CHECK(yes[0] == 2 && no[0] == 2 && yes[1] == 3 && no[1] == 3 && yes[3] == 1 && no[3] == 1 && no[4] == 0,
          "yes %d %d %d no %d %d %d %d", yes[0], yes[1], yes[3], no[0], no[1], no[3], no[4]);
    /* same seed, same output */
    rs_dataset d2;
    REQUIRE(rs_qgen_derive(&ds, &o, &d2) == RSMOE_OK, "%s", rsmoe_last_error());
    bool same = d2.nqa == dq.nqa;
    for (int k = 0; same && k < dq.nqa; k++) same = !strcmp(d2.qa[k].question, dq.qa[k].question);
    CHECK(same, "not deterministic");
    rs_dataset_free(&d2);
    /* only one kind */
    o.count = true;
    REQUIRE(rs_qgen_derive(&ds, &o, &d2) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(d2.nqa == 2, "count only: %d", d2.nqa);
    rs_dataset_free(&d2);
    rs_dataset_free(&dq);
    rs_dataset_free(&ds);
}

int main(void) {
    RUN(hand_checked_rsicd_captions);
    RUN(clause_splitting);
    RUN(dominant_and_ties);
    RUN(routing_labels);
    RUN(vocabulary_and_words);
    RUN(rsicd_split_invariants);
    RUN(scene_words_and_qtypes);
    RUN(derived_questions);
    return test_summary();
}
