/* cli_scores.h - how `rsmoe score` and `rsmoe eval` print caption scores (one table, one JSON form). */
#ifndef RSMOE_CLI_SCORES_H
#define RSMOE_CLI_SCORES_H
#include "eval/eval.h"

#include <cjson/cJSON.h>
#include <stdio.h>

/* adds "BLEU-1" .. "CIDEr-D" (raw values; METEOR null when not computed) to o */
void cli_scores_json(cJSON *o, const rs_score_result *r);
/* the papers' table: a header line and the scores x100 */
void cli_scores_table(FILE *f, const rs_score_result *r);
#endif
