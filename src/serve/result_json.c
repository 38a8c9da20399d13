/* result_json.c - see result_json.h */
#include "serve/result_json.h"

cJSON *rs_json_aspects(const rsmoe_result *r) {
    cJSON *as = cJSON_CreateArray();
    for (int i = 0; as && i < r->n_aspects; i++) {
        const rsmoe_aspect *a = &r->aspects[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", a->name);
        if (a->text) cJSON_AddStringToObject(o, "text", a->text);
        else cJSON_AddNullToObject(o, "text");
        cJSON_AddNumberToObject(o, "gate", a->gate);
        if (a->text) {
            cJSON_AddNumberToObject(o, "logprob", a->logprob);
            cJSON_AddNumberToObject(o, "tokens", a->n_tokens);
        }
        cJSON_AddItemToArray(as, o);
    }
    return as;
}

void rs_json_add_retrieval(cJSON *j, const rsmoe_result *r) {
    cJSON_AddBoolToObject(j, "retrieved", r->retrieved);
    if (r->scene[0]) {
        cJSON_AddStringToObject(j, "scene", r->scene);
        cJSON_AddNumberToObject(j, "scene_prob", r->scene_prob);
    }
}

void rs_json_add_stage_timings(cJSON *t, const rsmoe_timings *tm) {
    cJSON_AddNumberToObject(t, "encode", tm->encode_ms);
    cJSON_AddNumberToObject(t, "qformer", tm->qformer_ms);
    cJSON_AddNumberToObject(t, "router", tm->router_ms);
    cJSON_AddNumberToObject(t, "prefill", tm->prefill_ms);
    cJSON_AddNumberToObject(t, "decode", tm->decode_ms);
    cJSON_AddNumberToObject(t, "retrieval", tm->retrieval_ms);
}
