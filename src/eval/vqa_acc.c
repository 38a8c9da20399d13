/* vqa_acc.c - VQA accuracy: exact match after the VQAv2 vqaEval answer normalisation, per
 * question type, overall (OA) and average (AA) accuracy, and count range bins. */
#include "eval/eval.h"
#include "core/core.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* vqaEval's punctuation list */
static const char g_punct[] = ";/[]\"{}()=+\\_-><@`,?!";

static const char *const g_numbers[][2] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"}, {"three", "3"}, {"four", "4"},
    {"five", "5"}, {"six", "6"}, {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"},
};

/* vqaEval's contraction map (apostrophe-less forms -> contracted), the common part */
static const char *const g_contractions[][2] = {
    {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"},
    {"couldnt", "couldn't"}, {"didnt", "didn't"}, {"doesnt", "doesn't"}, {"dont", "don't"},
    {"hadnt", "hadn't"}, {"hasnt", "hasn't"}, {"havent", "haven't"}, {"hed", "he'd"},
    {"hes", "he's"}, {"howd", "how'd"}, {"howll", "how'll"}, {"hows", "how's"}, {"Im", "I'm"},
    {"Ive", "I've"}, {"isnt", "isn't"}, {"itd", "it'd"}, {"itll", "it'll"}, {"lets", "let's"},
    {"mightve", "might've"}, {"mustve", "must've"}, {"mustnt", "mustn't"}, {"shant", "shan't"},
    {"shes", "she's"}, {"shouldve", "should've"}, {"shouldnt", "shouldn't"}, {"thats", "that's"},
    {"thered", "there'd"}, {"theres", "there's"}, {"theyd", "they'd"}, {"theyll", "they'll"},
    {"theyre", "they're"}, {"theyve", "they've"}, {"wasnt", "wasn't"}, {"wed", "we'd"},
    {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"}, {"whatre", "what're"},
    {"whats", "what's"}, {"whatve", "what've"}, {"whens", "when's"}, {"whered", "where'd"},
    {"wheres", "where's"}, {"whereve", "where've"}, {"whod", "who'd"}, {"wholl", "who'll"},
    {"whos", "who's"}, {"whove", "who've"}, {"whyll", "why'll"}, {"whyre", "why're"},
    {"whys", "why's"}, {"wont", "won't"}, {"wouldve", "would've"}, {"wouldnt", "wouldn't"},
    {"yall", "y'all"}, {"youd", "you'd"}, {"youll", "you'll"}, {"youre", "you're"},
    {"youve", "you've"},
};

static bool has_digit_comma_digit(const char *s) {
    if (!s[0]) return false;
    for (size_t i = 1; s[i] && s[i + 1]; i++)
        if (s[i] == ',' && isdigit((unsigned char)s[i - 1]) && isdigit((unsigned char)s[i + 1])) return true;
    return false;
}

char *rs_vqa_normalize(const char *answer) {
    if (!answer) answer = "";
    size_t n = strlen(answer);
    char *a = malloc(n + 1), *b = malloc(2 * n + 2);
    if (!a || !b) {
        free(a);
        free(b);
        rs_error(RSMOE_ERR_NOMEM, "vqa: out of memory");
        return NULL;
    }
    /* newlines and tabs to spaces, strip */
    for (size_t i = 0; i <= n; i++) a[i] = (answer[i] == '\n' || answer[i] == '\t') ? ' ' : answer[i];
    char *s = a;
    while (*s == ' ') s++;
    size_t l = strlen(s);
    while (l && s[l - 1] == ' ') s[--l] = 0;
    /* processPunctuation: a punctuation mark is removed when it touches a space (or when
     * the answer has a digit,digit comma), else replaced by a space */
    bool comma = has_digit_comma_digit(s);
    char *t = malloc(l + 1);
    if (!t) { free(a); free(b); rs_error(RSMOE_ERR_NOMEM, "vqa: out of memory"); return NULL; }
    memcpy(t, s, l + 1);
    for (const char *p = g_punct; *p; p++) {
        char c = *p;
        if (!strchr(t, c)) continue;
        bool spaced = false;   /* vqaEval tests the original answer for "p " or " p" */
        for (size_t i = 0; s[i]; i++)
            if (s[i] == c && ((s[i + 1] == ' ') || (i > 0 && s[i - 1] == ' '))) spaced = true;
        size_t k = 0;
        for (size_t i = 0; t[i]; i++) {
            if (t[i] != c) t[k++] = t[i];
            else if (!(spaced || comma)) t[k++] = ' ';
        }
        t[k] = 0;
    }
    /* periodStrip: drop periods not followed by a digit */
    size_t k = 0;
    for (size_t i = 0; t[i]; i++)
        if (!(t[i] == '.' && !isdigit((unsigned char)t[i + 1]))) t[k++] = t[i];
    t[k] = 0;
    /* processDigitArticle: lower case, number words -> digits, articles dropped, contractions */
    size_t o = 0;
    b[0] = 0;
    char *save = NULL;
    for (char *w = strtok_r(t, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        for (char *q = w; *q; q++) *q = (char)tolower((unsigned char)*q);
        const char *out = w;
        for (size_t i = 0; i < sizeof g_numbers / sizeof g_numbers[0]; i++)
            if (!strcmp(w, g_numbers[i][0])) out = g_numbers[i][1];
        if (!strcmp(out, "a") || !strcmp(out, "an") || !strcmp(out, "the")) continue;
        for (size_t i = 0; i < sizeof g_contractions / sizeof g_contractions[0]; i++)
            if (!strcmp(out, g_contractions[i][0])) out = g_contractions[i][1];
        size_t ol = strlen(out);
        if (o) b[o++] = ' ';
        memcpy(b + o, out, ol);
        o += ol;
        b[o] = 0;
    }
    free(t);
    free(a);
    return b;
}

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

void rs_vqa_result_free(rs_vqa_result *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_types; i++) free(r->type_names[i]);
    free(r->type_names);
    free(r->type_total);
    free(r->type_correct);
    free(r->type_acc);
    memset(r, 0, sizeof *r);
}

rsmoe_status rs_vqa_accuracy(size_t n, const char *const *types, const char *const *pred,
                             const char *const *gt, rs_vqa_result *out) {
    memset(out, 0, sizeof *out);
    if (!n) return rs_error(RSMOE_ERR_INVALID_ARG, "vqa: no questions");
    if (!types || !pred || !gt) return rs_error(RSMOE_ERR_INVALID_ARG, "vqa: NULL input");
    for (size_t i = 0; i < n; i++)
        if (!types[i] || !gt[i]) return rs_error(RSMOE_ERR_INVALID_ARG, "vqa: question %zu has no type or answer", i);
    /* distinct types, sorted */
    const char **sorted = malloc(n * sizeof *sorted);
    if (!sorted) return rs_error(RSMOE_ERR_NOMEM, "vqa: out of memory");
    memcpy(sorted, types, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    size_t nt = 0;
    for (size_t i = 0; i < n; i++)
        if (!i || strcmp(sorted[i], sorted[i - 1])) sorted[nt++] = sorted[i];
    out->n_types = nt;
    out->type_names = calloc(nt, sizeof *out->type_names);
    out->type_total = calloc(nt, sizeof *out->type_total);
    out->type_correct = calloc(nt, sizeof *out->type_correct);
    out->type_acc = calloc(nt, sizeof *out->type_acc);
    rsmoe_status st = RSMOE_OK;
    if (!out->type_names || !out->type_total || !out->type_correct || !out->type_acc) {
        st = rs_error(RSMOE_ERR_NOMEM, "vqa: out of memory");
        goto done;
    }
    for (size_t k = 0; k < nt; k++)
        if (!(out->type_names[k] = strdup(sorted[k]))) { st = rs_error(RSMOE_ERR_NOMEM, "vqa: out of memory"); goto done; }
    for (size_t i = 0; i < n; i++) {
        const char **hit = bsearch(&types[i], sorted, nt, sizeof *sorted, cmp_str);
        size_t k = (size_t)(hit - sorted);
        char *p = rs_vqa_normalize(pred[i] ? pred[i] : ""), *g = rs_vqa_normalize(gt[i]);
        if (!p || !g) { free(p); free(g); st = rs_error(RSMOE_ERR_NOMEM, "vqa: out of memory"); goto done; }
        bool ok = !strcmp(p, g);
        free(p);
        free(g);
        out->type_total[k]++;
        out->type_correct[k] += ok;
        out->total++;
        out->correct += ok;
    }
    double sum = 0;
    for (size_t k = 0; k < nt; k++) {
        out->type_acc[k] = (double)out->type_correct[k] / (double)out->type_total[k];
        sum += out->type_acc[k];
    }
    out->aa = sum / (double)nt;
    out->oa = (double)out->correct / (double)out->total;
done:
    free(sorted);
    if (st) rs_vqa_result_free(out);
    return st;
}

int rs_vqa_count_bin(const char *answer, const double *bounds, int n_bounds) {
    char *a = rs_vqa_normalize(answer);
    if (!a) return -1;
    char *end = NULL;
    double v = strtod(a, &end);
    bool ok = end && end != a && *end == 0 && isfinite(v);
    free(a);
    if (!ok) return -1;
    for (int k = 0; k < n_bounds; k++)
        if (v <= bounds[k]) return k;
    return n_bounds;
}
