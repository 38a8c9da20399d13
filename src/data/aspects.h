/* aspects.h - the aspect splitter of method.md §3: each sentence or clause of a caption goes
 * to theme (scene-level statements), objects (noun phrases with counts, colours, sizes) or
 * relationships (spatial relations between things), by the deterministic rules documented
 * in docs/aspects.md. Also: the dominant aspect of a sentence (RSICD captions are single
 * sentences: each expert trains on the sentences of its aspect), the routing label of a
 * VQA question type, and the remote-sensing object vocabulary shared with qgen.c. */
#ifndef RSMOE_DATA_ASPECTS_H
#define RSMOE_DATA_ASPECTS_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    RS_ASPECT_THEME = 0,
    RS_ASPECT_OBJECTS = 1,
    RS_ASPECT_RELATIONS = 2,
    RS_ASPECT_N = 3,
} rs_aspect;

const char *rs_aspect_name(rs_aspect a);   /* "theme", "objects", "relationships" */
int rs_aspect_parse(const char *name);     /* the above (also "relations"), or -1 */

/* One clause: the byte span [begin, end) of the caption (trimmed, without the joining
 * punctuation or conjunction), its aspect and the rule that decided it (a static string
 * such as "spatial:surrounded by", "theme:opener it is", "theme:scene-only",
 * "objects:default"). */
typedef struct {
    int begin, end;
    rs_aspect aspect;
    const char *rule;
} rs_clause;

#define RS_ASPECT_MAX_CLAUSES 32

/* Splits caption into clauses (sentences at . ! ? ;, then clauses at ", while", "while",
 * "whereas", ", but", ", and", ", which", ", where" and commas that open a new
 * subject-verb clause; verbless fragments stay with the clause before them) and
 * classifies each. Returns the number of clauses written (at most max; 0 for an empty
 * caption). */
int rs_aspect_split(const char *caption, rs_clause *out, int max);

/* Aspect of one clause of len bytes; *rule (may be NULL) receives the deciding rule. */
rs_aspect rs_aspect_classify(const char *clause, size_t len, const char **rule);

/* The dominant aspect of a sentence or caption: the aspect whose clauses hold the most
 * words; ties go to relationships, then objects, then theme (the more specific first). */
rs_aspect rs_aspect_dominant(const char *sentence);

/* Routing label of a VQA question type (method.md §3): presence, count/quantity, colour,
 * area -> objects; comparison, position (ab_position, re_position), orientation
 * (road_ori) -> relationships; rural_urban, scene, image -> theme; others -> -1. */
int rs_aspect_for_qtype(const char *type);

/* ---- remote-sensing object vocabulary (lower-case, one or two words) */
typedef struct {
    const char *sing, *plur;   /* "storage tank", "storage tanks" */
    bool mass;                 /* uncountable ("water", "grass"): "Is there water?" */
    bool scene;                /* also names a scene class / the whole scene ("airport", "river") */
} rs_vocab_noun;

int rs_vocab_size(void);
const rs_vocab_noun *rs_vocab_get(int i);
/* Matches a vocabulary noun starting at word i of words[0..n) (lower-case words). Returns
 * its index or -1; *len receives the number of words used, *plural whether the plural
 * form matched. Longest match wins ("parking lot" before "lot"). */
int rs_vocab_match(const char *const *words, int n, int i, int *len, bool *plural);

/* Lower-case word tokenizer shared by the splitter and the question generator:
 * letters, digits, '-' and '\'' form words. Writes up to max words into buf (each at most
 * 31 bytes, longer words truncated) with their byte offsets; returns the count. */
typedef struct { char w[32]; int begin, end; } rs_word;
int rs_words(const char *s, size_t len, rs_word *out, int max);

#endif
