/* dataset.h - loaders for the captioning and VQA data sets of method.md §5 into one
 * in-memory form: items (an image with its split, scene label and captions) and QA pairs
 * (question, answer, type) that point at an item.
 *
 *   Karpathy dataset.json (RSICD, UCM-Captions, Sydney-Captions):
 *       {"images": [{"filename", "filepath"?, "split", "label"?, "imgid"?,
 *                    "sentences": [{"raw", "tokens"}]}]}
 *   RSICap captions.json:      {"annotations": [{"image_id", "filename", "text_input", "text_output"}]}
 *                              (split "train": RSICap is the paper's training set)
 *   RSIEval annotations.json:  {"annotations": [{"filename", "caption", "qa_pairs": [{"question", "answer", "type"}]}]}
 *                              (split "test")
 *   RSVQA-LR/HR: X_split_S_questions.json + X_split_S_answers.json + X_split_S_images.json
 *       (any one of the three may be given; the others are found by name; split S from the
 *        name), or one combined file with the three arrays (what `rsmoe questions` writes;
 *        its image entries carry "filename" and "split"). Image files are "<id>.tif" unless
 *        an image entry has "filename". Entries with "active": false are skipped.
 *   RSIVQA: text, one "image:question?answer" per line (no type: it is guessed from the
 *        question with rs_qtype_guess).
 *
 * Image paths are resolved against a root folder given by the user. Every error names the
 * file and the entry (e.g. "captions.json: annotations[12]: missing \"filename\""). */
#ifndef RSMOE_DATA_DATASET_H
#define RSMOE_DATA_DATASET_H

#include "core/core.h"
#include "data/image.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    RS_DS_AUTO = 0,   /* detect from the content */
    RS_DS_KARPATHY,
    RS_DS_RSICAP,
    RS_DS_RSIEVAL,
    RS_DS_RSVQA,
    RS_DS_RSIVQA,
} rs_ds_format;

const char *rs_ds_format_name(rs_ds_format f);       /* "karpathy", ..., "auto" */
/* "auto", "karpathy" (also "rsicd", "ucm", "sydney"), "rsicap", "rsieval", "rsvqa", "rsivqa";
 * -1 for an unknown name */
int rs_ds_format_parse(const char *name);

typedef struct {
    char *filename;   /* as written in the annotation (with "filepath/" when given) */
    char *path;       /* resolved: image_root/filename */
    char *split;      /* "train", "val", "test", ... or "" */
    char *label;      /* scene label or "" */
    int64_t id;       /* imgid / image_id / RSVQA id; else the position in the file */
    int ncap;
    char **captions;  /* raw caption sentences as written */
} rs_ds_item;

typedef struct {
    int item;         /* index into rs_dataset.items */
    int64_t id;
    char *question, *answer;
    char *type;       /* question type as in the data set ("presence", "count", ...) or guessed */
} rs_ds_qa;

typedef struct {
    rs_ds_format format;
    char name[64];        /* "rsicd" etc. when the file says, else the format name */
    bool derived;         /* the QA were derived from captions (rsmoe questions), not written by people */
    int nitems, nqa;
    rs_ds_item *items;
    rs_ds_qa *qa;
    int nmissing;         /* items dropped by RS_DS_SKIP_MISSING */
} rs_dataset;

typedef enum {
    RS_DS_NO_CHECK = 0,       /* do not look at the image files */
    RS_DS_REQUIRE_IMAGES,     /* a missing image file is an error naming the entry */
    RS_DS_SKIP_MISSING,       /* drop items whose image file is missing (counted in nmissing) */
} rs_ds_image_check;

typedef struct {
    /* folder that image file names are relative to; NULL: the annotation file's folder,
     * or its "images" subfolder when that exists (RSICD's layout) */
    const char *image_root;
    const char *split;        /* keep only this split; NULL or "" = all */
    rs_ds_image_check check;
} rs_dataset_opts;

/* Loads path (fmt RS_DS_AUTO detects the format). opts may be NULL. On failure *ds is
 * empty and the message names the file and the entry. */
rsmoe_status rs_dataset_load(const char *path, rs_ds_format fmt, const rs_dataset_opts *opts, rs_dataset *ds);
void rs_dataset_free(rs_dataset *ds);

/* Total number of captions over all items. */
int64_t rs_dataset_ncaptions(const rs_dataset *ds);

/* Batch check that every item's image decodes: bad ones are reported through cb (may be
 * NULL) and counted, never fatal. Returns the number of images that failed. */
typedef void (*rs_ds_bad_image_fn)(void *ud, int item, const char *path, rsmoe_status st, const char *msg);
int rs_dataset_check_images(const rs_dataset *ds, const rs_image_load_opts *opts, rs_ds_bad_image_fn cb, void *ud);

/* Writes ds's QA in the RSVQA layout as one combined JSON file:
 *   {"derived": bool, "note": note, "source": name,
 *    "images":    [{"id", "filename", "split", "label", "active", "questions_ids"}],
 *    "questions": [{"id", "img_id", "type", "question", "answers_ids", "active"}],
 *    "answers":   [{"id", "question_id", "answer", "active"}]}
 * which rs_dataset_load reads back (RS_DS_RSVQA). */
rsmoe_status rs_dataset_write_rsvqa(const rs_dataset *ds, const char *path, const char *note);

#endif
