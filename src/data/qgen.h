/* qgen.h - derived VQA for data sets that have captions and scene labels but no questions
 * (RSICD, UCM, Sydney), and a question-type guesser for sets without types (RSIVQA).
 *
 * Derived questions (all answers come from the captions or the scene label, never from
 * the pixels, so they are weak labels; the output says so: rs_dataset.derived = true):
 *  - scene:    "What is the scene?" -> the scene label in words ("DenseResidential" ->
 *              "dense residential"), one per labelled image;
 *  - presence: "Is there a bridge?" -> "yes" for an object of the vocabulary that a caption
 *              of the image names; "no" for objects that no caption of any image with the same
 *              scene label names (absent from one caption is not evidence of absence, but
 *              never named in a whole scene class is); at most as many "no" as "yes";
 *  - count:    "How many tennis courts are there?" -> "2" only where a caption states the
 *              number ("two tennis courts"), and no caption of that image states another.
 * Types are RSVQA's names: "scene", "presence", "count". */
#ifndef RSMOE_DATA_QGEN_H
#define RSMOE_DATA_QGEN_H

#include "data/dataset.h"

typedef struct {
    bool scene, presence, count;   /* which kinds to generate (all when all false) */
    int max_presence_per_image;    /* positive presence questions per image; 0 = 4 */
    uint64_t seed;                 /* picks the negatives; same seed, same output */
} rs_qgen_opts;

/* Builds a new data set (format RS_DS_RSVQA, derived = true) whose items are in's items
 * (copied, same order, captions kept) and whose QA are the derived questions. */
rsmoe_status rs_qgen_derive(const rs_dataset *in, const rs_qgen_opts *opts, rs_dataset *out);

/* Scene label in words: "DenseResidential" -> "dense residential", "playfields" ->
 * "playfields", "bare_land" -> "bare land". Writes at most n bytes (NUL included). */
void rs_scene_label_words(const char *label, char *out, size_t n);

/* Question type from the wording: "count", "color", "comparison", "rural_urban", "area",
 * "position", "orientation", "scene", "presence" or "other". */
const char *rs_qtype_guess(const char *question);

#endif
