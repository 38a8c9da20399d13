/* result_json.h - the JSON form of a caption/answer result, shared by the HTTP API and
 * `rsmoe caption --json` so that both print the same fields. */
#ifndef RSMOE_SERVE_RESULT_JSON_H
#define RSMOE_SERVE_RESULT_JSON_H
#include "rsmoe.h"

#include <cjson/cJSON.h>

/* [{"name", "text" (null when the expert did not run), "gate", "logprob", "tokens"}, ...] */
cJSON *rs_json_aspects(const rsmoe_result *r);
/* adds "retrieved" and, when the model's retrieval index named one, "scene" and "scene_prob" */
void rs_json_add_retrieval(cJSON *j, const rsmoe_result *r);
/* adds "encode", "qformer", "router", "prefill", "decode" (ms) to t */
void rs_json_add_stage_timings(cJSON *t, const rsmoe_timings *tm);
#endif
