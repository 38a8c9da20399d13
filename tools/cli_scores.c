/* cli_scores.c - see cli_scores.h */
#include "cli_scores.h"

static const char *const k_names[7] = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR (no paraphrase)", "ROUGE-L", "CIDEr-D"};

static void values(const rs_score_result *r, double v[7]) {
    v[0] = r->bleu[0]; v[1] = r->bleu[1]; v[2] = r->bleu[2]; v[3] = r->bleu[3];
    v[4] = r->meteor; v[5] = r->rouge_l; v[6] = r->cider;
}

void cli_scores_json(cJSON *o, const rs_score_result *r) {
    double v[7];
    values(r, v);
    for (int k = 0; k < 7; k++) {
        if (k == 4 && !r->has_meteor) cJSON_AddNullToObject(o, k_names[k]);
        else cJSON_AddNumberToObject(o, k_names[k], v[k]);
    }
}

void cli_scores_table(FILE *f, const rs_score_result *r) {
    double v[7];
    values(r, v);
    fprintf(f, "%8s %8s %8s %8s %22s %8s %8s\n", k_names[0], k_names[1], k_names[2], k_names[3], k_names[4], k_names[5], k_names[6]);
    fprintf(f, "%8.2f %8.2f %8.2f %8.2f ", 100 * v[0], 100 * v[1], 100 * v[2], 100 * v[3]);
    if (r->has_meteor) fprintf(f, "%22.2f ", 100 * v[4]);
    else fprintf(f, "%22s ", "-");
    fprintf(f, "%8.2f %8.2f\n", 100 * v[5], 100 * v[6]);
}
