/* cmd_aspects.c - `rsmoe aspects`: the aspect split (theme / objects / relationships) of
 * every caption of a data set, and a summary of counts. */
#include "cli.h"
#include "core/core.h"
#include "data/aspects.h"
#include "data/dataset.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: rsmoe aspects --data FILE [options]\n"
            "Splits each caption into clauses, gives each the aspect theme / objects / relationships\n"
            "(rules: docs/aspects.md) and the sentence its dominant aspect; ends with a summary.\n\n"
            "  --data FILE      annotation file (Karpathy dataset.json, RSICap, RSIEval, ...)\n"
            "  --format F       auto (default), karpathy, rsicap, rsieval, rsvqa, rsivqa\n"
            "  --split S        only this split (train, val, test)\n"
            "  --limit N        only the first N captions (the summary counts the same ones)\n"
            "  --json           one JSON object per caption instead of text\n"
            "  --summary        print only the summary\n");
}

int cmd_aspects(int argc, char **argv) {
    const char *data = NULL, *split = NULL, *fmt = "auto";
    long limit = -1;
    int json = 0, summary_only = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--summary")) summary_only = 1;
        else if (i + 1 < argc && !strcmp(a, "--data")) data = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--split")) split = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--format")) fmt = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--limit")) {
            char *e;
            limit = strtol(argv[++i], &e, 10);
            if (*e || limit < 0) { fprintf(stderr, "rsmoe aspects: --limit needs a number >= 0\n"); return 2; }
        } else {
            fprintf(stderr, "rsmoe aspects: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!data) { fprintf(stderr, "rsmoe aspects: --data is required\n"); usage(stderr); return 2; }
    int f = rs_ds_format_parse(fmt);
    if (f < 0) { fprintf(stderr, "rsmoe aspects: unknown --format '%s'\n", fmt); return 2; }
    rs_dataset ds;
    rs_dataset_opts o = {NULL, split, RS_DS_NO_CHECK};
    rsmoe_status st = rs_dataset_load(data, (rs_ds_format)f, &o, &ds);
    if (st) return cli_fail("aspects", st);

    long nsent = 0, clauses[RS_ASPECT_N] = {0}, dom[RS_ASPECT_N] = {0}, multi = 0;
    rs_clause cl[RS_ASPECT_MAX_CLAUSES];
    for (int i = 0; i < ds.nitems && (limit < 0 || nsent < limit); i++) {
        const rs_ds_item *it = &ds.items[i];
        for (int c = 0; c < it->ncap && (limit < 0 || nsent < limit); c++) {
            const char *cap = it->captions[c];
            int n = rs_aspect_split(cap, cl, RS_ASPECT_MAX_CLAUSES);
            rs_aspect d = rs_aspect_dominant(cap);
            nsent++;
            dom[d]++;
            if (n > 1) multi++;
            for (int k = 0; k < n; k++) clauses[cl[k].aspect]++;
            if (summary_only) continue;
            if (json) {
                cJSON *j = cJSON_CreateObject(), *arr = NULL;
                if (j) {
                    cJSON_AddStringToObject(j, "image", it->filename);
                    cJSON_AddStringToObject(j, "caption", cap);
                    cJSON_AddStringToObject(j, "dominant", rs_aspect_name(d));
                    arr = cJSON_AddArrayToObject(j, "clauses");
                }
                for (int k = 0; arr && k < n; k++) {
                    cJSON *x = cJSON_CreateObject();
                    if (!x) break;
                    char *t = strndup(cap + cl[k].begin, (size_t)(cl[k].end - cl[k].begin));
                    cJSON_AddStringToObject(x, "text", t ? t : "");
                    free(t);
                    cJSON_AddStringToObject(x, "aspect", rs_aspect_name(cl[k].aspect));
                    cJSON_AddStringToObject(x, "rule", cl[k].rule);
                    cJSON_AddItemToArray(arr, x);
                }
                char *s = j ? cJSON_PrintUnformatted(j) : NULL;
                if (s) { puts(s); cJSON_free(s); }
                cJSON_Delete(j);
            } else {
                printf("%s\t%s\t[dominant: %s]\n", it->filename, cap, rs_aspect_name(d));
                for (int k = 0; k < n; k++)
                    printf("    %-13s %.*s   (%s)\n", rs_aspect_name(cl[k].aspect), cl[k].end - cl[k].begin,
                           cap + cl[k].begin, cl[k].rule);
            }
        }
    }
    long ncl = clauses[0] + clauses[1] + clauses[2];
    FILE *out = json ? stderr : stdout;
    fprintf(out, "# %s (%s)%s%s: %ld captions, %ld clauses (%ld captions with more than one clause)\n", data,
            ds.name, split ? ", split " : "", split ? split : "", nsent, ncl, multi);
    for (int a = 0; a < RS_ASPECT_N; a++)
        fprintf(out, "# %-13s dominant in %6ld captions (%5.1f%%), %6ld clauses (%5.1f%%)\n",
                rs_aspect_name((rs_aspect)a), dom[a], nsent ? 100.0 * dom[a] / nsent : 0.0, clauses[a],
                ncl ? 100.0 * clauses[a] / ncl : 0.0);
    rs_dataset_free(&ds);
    return 0;
}
