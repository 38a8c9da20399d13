/* qgen.c - derived VQA (scene / presence / count) from captions and scene labels, and the
 * question-type guesser. */
#include "data/qgen.h"
#include "data/aspects.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rs_scene_label_words(const char *label, char *out, size_t n) {
    if (!out || n == 0) return;
    size_t k = 0;
    out[0] = 0;
    if (!label) return;
    for (size_t i = 0; label[i] && k + 1 < n; i++) {
        unsigned char c = (unsigned char)label[i];
        if (c == '_' || c == '-' || c == ' ') {
            if (k > 0 && out[k - 1] != ' ') out[k++] = ' ';
            continue;
        }
        if (isupper(c) && i > 0 && islower((unsigned char)label[i - 1]) && k > 0 && out[k - 1] != ' ') {
            out[k++] = ' ';
            if (k + 1 >= n) break;
        }
        out[k++] = (char)tolower(c);
    }
    while (k > 0 && out[k - 1] == ' ') k--;
    out[k] = 0;
}

static bool starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

const char *rs_qtype_guess(const char *question) {
    if (!question) return "other";
    char q[512];
    size_t k = 0;
    for (const char *p = question; *p && k + 1 < sizeof q; p++) q[k++] = (char)tolower((unsigned char)*p);
    q[k] = 0;
    const char *s = q;
    while (*s == ' ') s++;
    if (strstr(s, "rural") && strstr(s, "urban")) return "rural_urban";
    if (starts(s, "how many") || starts(s, "what is the number") || starts(s, "what number")) return "count";
    if (strstr(s, "what color") || strstr(s, "what colour") || strstr(s, "which color") || strstr(s, "which colour"))
        return "color";
    if (strstr(s, " than ") || strstr(s, "equal to") || strstr(s, "the same as")) return "comparison";
    if (strstr(s, "area of") || strstr(s, "how large") || strstr(s, "how big") || strstr(s, "what is the area"))
        return "area";
    if (strstr(s, "direction") || strstr(s, "orientation") || strstr(s, "oriented")) return "orientation";
    if (starts(s, "where") || strstr(s, " left ") || strstr(s, " right ") || strstr(s, "position") ||
        strstr(s, " located"))
        return "position";
    if (strstr(s, "scene") || strstr(s, "what kind of area") || strstr(s, "what type of area") ||
        strstr(s, "what is this area") || strstr(s, "what is this image") || strstr(s, "what is the image"))
        return "scene";
    if (starts(s, "is there") || starts(s, "are there") || starts(s, "is a ") || starts(s, "are any") ||
        starts(s, "does the image contain") || starts(s, "is it possible to see") || strstr(s, "present in"))
        return "presence";
    return "other";
}

/* ------------------------------------------------------------------ derive */
static char *xstrdup(const char *s) {
    size_t n = strlen(s ? s : "");
    char *d = malloc(n + 1);
    if (d) memcpy(d, s ? s : "", n + 1);
    return d;
}

static int number_word(const char *w) {
    static const char *const nums[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                       "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                                       "seventeen", "eighteen", "nineteen", "twenty", NULL};
    for (int i = 1; nums[i]; i++)
        if (!strcmp(w, nums[i])) return i;
    if (isdigit((unsigned char)w[0])) {
        char *e;
        long v = strtol(w, &e, 10);
        if (!*e && v > 0 && v <= 1000) return (int)v;
    }
    return 0;
}

static const char *const k_count_stop[] = {
    "and", "or", "of", "in", "on", "at", "with", "near", "by", "is", "are", "was", "were", "to", "from",
    "which", "that", "while", "side", "sides", "rows", "row", "pieces", "piece", "kinds", "parts", "part",
    "lines", "line", "types", "sizes", "colors", "colours", NULL};

static bool in_list(const char *w, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(w, *list)) return true;
    return false;
}

#define MAXV 160

/* nouns named by the captions of item (mention[v] = 1) and stated counts (count[v]: 0 none,
 * > 0 a number, -1 conflicting numbers) */
static void scan_item(const rs_ds_item *it, unsigned char *mention, int *count) {
    int nv = rs_vocab_size();
    memset(mention, 0, (size_t)nv);
    for (int v = 0; v < nv; v++) count[v] = 0;
    for (int c = 0; c < it->ncap; c++) {
        rs_word ws[160];
        const char *w[160];
        int n = rs_words(it->captions[c], strlen(it->captions[c]), ws, 160);
        for (int i = 0; i < n; i++) w[i] = ws[i].w;
        for (int i = 0; i < n; i++) {
            int len;
            bool pl;
            int v = rs_vocab_match(w, n, i, &len, &pl);
            if (v >= 0) {
                mention[v] = 1;
                i += len - 1; /* "storage tanks" is not also a "tank" */
                continue;
            }
            int num = number_word(w[i]);
            if (!num) continue;
            /* "two (large white) storage tanks": the first noun within 3 words */
            for (int j = i + 1; j < n && j <= i + 4; j++) {
                if (in_list(w[j], k_count_stop) || number_word(w[j])) break;
                int v2 = rs_vocab_match(w, n, j, &len, &pl);
                if (v2 < 0) continue;
                const rs_vocab_noun *nn = rs_vocab_get(v2);
                bool same = !strcmp(nn->sing, nn->plur);
                if (!nn->mass && (same || (num == 1) == !pl)) {
                    if (count[v2] == 0) count[v2] = num;
                    else if (count[v2] != num) count[v2] = -1;
                }
                break;
            }
        }
    }
}

typedef struct {
    rs_dataset *ds;
    int cap;
} qa_out;

static rsmoe_status push_qa(qa_out *o, int item, const char *q, const char *a, const char *type) {
    rs_dataset *ds = o->ds;
    if (ds->nqa == o->cap) {
        int nc = o->cap ? o->cap * 2 : 1024;
        rs_ds_qa *nq = realloc(ds->qa, sizeof *nq * (size_t)nc);
        if (!nq) return rs_error(RSMOE_ERR_NOMEM, "questions: out of memory");
        ds->qa = nq; o->cap = nc;
    }
    rs_ds_qa *x = &ds->qa[ds->nqa];
    x->item = item;
    x->id = ds->nqa;
    x->question = xstrdup(q); x->answer = xstrdup(a); x->type = xstrdup(type);
    ds->nqa++;
    if (!x->question || !x->answer || !x->type) return rs_error(RSMOE_ERR_NOMEM, "questions: out of memory");
    return RSMOE_OK;
}

static void presence_question(const rs_vocab_noun *nn, char *buf, size_t n) {
    if (nn->mass) snprintf(buf, n, "Is there %s?", nn->sing);
    else snprintf(buf, n, "Is there %s %s?", strchr("aeiou", nn->sing[0]) ? "an" : "a", nn->sing);
}

static void shuffle(int *a, int n, rs_rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rs_rng_u64(r) % (uint64_t)(i + 1));
        int t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

rsmoe_status rs_qgen_derive(const rs_dataset *in, const rs_qgen_opts *opts, rs_dataset *out) {
    if (!in || !out) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_qgen_derive: NULL argument");
    memset(out, 0, sizeof *out);
    rs_qgen_opts o = opts ? *opts : (rs_qgen_opts){0};
    if (!o.scene && !o.presence && !o.count) o.scene = o.presence = o.count = true;
    if (o.max_presence_per_image <= 0) o.max_presence_per_image = 4;
    int nv = rs_vocab_size();
    if (nv > MAXV) return rs_error(RSMOE_ERR_INTERNAL, "questions: vocabulary larger than %d", MAXV);
    out->format = RS_DS_RSVQA;
    out->derived = true;
    snprintf(out->name, sizeof out->name, "%s", in->name);
    rsmoe_status st = RSMOE_OK;
    /* copy the items */
    out->items = calloc((size_t)(in->nitems > 0 ? in->nitems : 1), sizeof *out->items);
    if (!out->items) return rs_error(RSMOE_ERR_NOMEM, "questions: out of memory");
    for (int i = 0; i < in->nitems; i++) {
        const rs_ds_item *a = &in->items[i];
        rs_ds_item *b = &out->items[i];
        out->nitems = i + 1;
        b->filename = xstrdup(a->filename); b->path = xstrdup(a->path);
        b->split = xstrdup(a->split); b->label = xstrdup(a->label);
        b->id = a->id;
        b->captions = calloc((size_t)(a->ncap > 0 ? a->ncap : 1), sizeof(char *));
        if (!b->filename || !b->path || !b->split || !b->label || !b->captions) { st = RSMOE_ERR_NOMEM; break; }
        for (int c = 0; c < a->ncap; c++) {
            b->captions[c] = xstrdup(a->captions[c]);
            if (!b->captions[c]) { st = RSMOE_ERR_NOMEM; break; }
            b->ncap = c + 1;
        }
        if (st) break;
    }
    if (st) { rs_dataset_free(out); return rs_error(st, "questions: out of memory"); }

    /* nouns named anywhere in each scene class (the evidence for "no" answers) */
    int nlab = 0, caplab = 16;
    char **labels = malloc(sizeof(char *) * (size_t)caplab);
    unsigned char *lab_mention = calloc((size_t)caplab * MAXV, 1);
    int *item_lab = malloc(sizeof(int) * (size_t)(in->nitems > 0 ? in->nitems : 1));
    unsigned char *mention = malloc(MAXV);
    int *count = malloc(sizeof(int) * MAXV);
    int *cand = malloc(sizeof(int) * MAXV);
    if (!labels || !lab_mention || !item_lab || !mention || !count || !cand) { st = RSMOE_ERR_NOMEM; goto done; }
    for (int i = 0; i < in->nitems; i++) {
        const char *l = in->items[i].label;
        item_lab[i] = -1;
        if (!l || !*l) continue;
        int k = 0;
        while (k < nlab && strcmp(labels[k], l)) k++;
        if (k == nlab) {
            if (nlab == caplab) {
                caplab *= 2;
                char **nl = realloc(labels, sizeof(char *) * (size_t)caplab);
                unsigned char *nm = nl ? realloc(lab_mention, (size_t)caplab * MAXV) : NULL;
                if (nl) labels = nl;
                if (!nl || !nm) { st = RSMOE_ERR_NOMEM; goto done; }
                lab_mention = nm;
                memset(lab_mention + (size_t)nlab * MAXV, 0, (size_t)(caplab - nlab) * MAXV);
            }
            labels[nlab++] = (char *)l;
        }
        item_lab[i] = k;
        scan_item(&in->items[i], mention, count);
        for (int v = 0; v < nv; v++) lab_mention[(size_t)k * MAXV + v] |= mention[v];
    }

    rs_rng rng;
    rs_rng_seed(&rng, o.seed);
    qa_out qo = {out, 0};
    char q[160], a[96];
    for (int i = 0; i < in->nitems && !st; i++) {
        const rs_ds_item *it = &in->items[i];
        if (o.scene && it->label && *it->label) {
            rs_scene_label_words(it->label, a, sizeof a);
            if ((st = push_qa(&qo, i, "What is the scene?", a, "scene"))) break;
        }
        scan_item(it, mention, count);
        if (o.presence) {
            int np = 0;
            for (int v = 0; v < nv; v++) if (mention[v]) cand[np++] = v;
            shuffle(cand, np, &rng);
            if (np > o.max_presence_per_image) np = o.max_presence_per_image;
            for (int k = 0; k < np && !st; k++) {
                presence_question(rs_vocab_get(cand[k]), q, sizeof q);
                st = push_qa(&qo, i, q, "yes", "presence");
            }
            if (st) break;
            if (item_lab[i] >= 0) {
                const unsigned char *lm = lab_mention + (size_t)item_lab[i] * MAXV;
                int nn = 0;
                for (int v = 0; v < nv; v++)
                    if (!lm[v] && !mention[v]) cand[nn++] = v;
                shuffle(cand, nn, &rng);
                if (nn > np) nn = np;
                for (int k = 0; k < nn && !st; k++) {
                    presence_question(rs_vocab_get(cand[k]), q, sizeof q);
                    st = push_qa(&qo, i, q, "no", "presence");
                }
                if (st) break;
            }
        }
        if (o.count) {
            for (int v = 0; v < nv && !st; v++) {
                if (count[v] <= 0) continue;
                snprintf(q, sizeof q, "How many %s are there?", rs_vocab_get(v)->plur);
                snprintf(a, sizeof a, "%d", count[v]);
                st = push_qa(&qo, i, q, a, "count");
            }
        }
    }
done:
    free(labels); free(lab_mention); free(item_lab); free(mention); free(count); free(cand);
    if (st) {
        rs_dataset_free(out);
        if (st == RSMOE_ERR_NOMEM) return rs_error(st, "questions: out of memory");
        return st;
    }
    return RSMOE_OK;
}
