/* meteor.c - METEOR 1.5 (as run by the caption toolkit: -l en -norm) without the paraphrase
 * stage: exact, Snowball-stem and WordNet-synonym matches, the aligner's beam search,
 * function-word weighting, fragmentation penalty, and the corpus score from summed
 * statistics. Written from the published algorithm and the behaviour of the Java
 * implementation; where we may differ is listed in docs/metrics.md. */
#include "eval/eval_internal.h"
#include "core/core.h"

#include <ctype.h>
#include <libstemmer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* METEOR 1.5 English "rank" (default) task parameters */
#define MET_ALPHA 0.85
#define MET_BETA 0.20
#define MET_GAMMA 0.60
#define MET_DELTA 0.75
#define MET_NSTAGE 3
static const double g_stage_w[MET_NSTAGE] = {1.0, 0.6, 0.8};      /* scoring weights */
static const double g_align_w[MET_NSTAGE] = {1.0, 0.5, 0.5};      /* aligner's weights */
#define MET_BEAM 40

/* English function words (closed-class words: articles, determiners, pronouns, prepositions,
 * conjunctions, auxiliaries and modals, particles). Our list: Meteor's own english.words
 * file is not available here (docs/metrics.md). */
static const char *const g_function_words[] = {
    "a", "about", "above", "across", "after", "against", "all", "along", "also", "although",
    "am", "among", "amongst", "an", "and", "another", "any", "anybody", "anyone", "anything",
    "are", "around", "as", "at", "be", "been", "before", "behind", "being", "below", "beneath",
    "beside", "besides", "between", "beyond", "both", "but", "by", "can", "could", "did", "do",
    "does", "doing", "done", "down", "during", "each", "either", "every", "everybody",
    "everyone", "everything", "few", "for", "from", "had", "has", "have", "having", "he",
    "her", "hers", "herself", "him", "himself", "his", "how", "however", "i", "if", "in",
    "inside", "into", "is", "it", "its", "itself", "just", "may", "me", "might", "mine",
    "more", "most", "much", "must", "my", "myself", "near", "neither", "no", "nobody", "none",
    "nor", "not", "n't", "nothing", "of", "off", "on", "once", "one", "onto", "or", "other",
    "others", "our", "ours", "ourselves", "out", "outside", "over", "own", "per", "same",
    "several", "shall", "she", "should", "since", "so", "some", "somebody", "someone",
    "something", "such", "than", "that", "the", "their", "theirs", "them", "themselves",
    "then", "there", "these", "they", "this", "those", "though", "through", "throughout",
    "till", "to", "toward", "towards", "under", "underneath", "unless", "until", "up", "upon",
    "us", "very", "was", "we", "were", "what", "whatever", "when", "whenever", "where",
    "whereas", "wherever", "whether", "which", "while", "who", "whoever", "whom", "whose",
    "why", "will", "with", "within", "without", "would", "yet", "you", "your", "yours",
    "yourself", "yourselves", "'s", "'re", "'ve", "'d", "'ll", "'m",
};

/* WordNet morphology detachment rules (morphy): suffix -> ending, nouns, verbs, adjectives */
static const char *const g_sufx[20] = {"s", "ses", "xes", "zes", "ches", "shes", "men", "ies",
                                       "s", "ies", "es", "es", "ed", "ed", "ing", "ing",
                                       "er", "est", "er", "est"};
static const char *const g_addr[20] = {"", "s", "x", "z", "ch", "sh", "man", "y",
                                       "", "y", "e", "", "e", "", "e", "",
                                       "", "", "e", "e"};

struct rs_meteor {
    rs_evocab *wn;            /* WordNet strings (lemmas, inflected forms, bases) */
    int32_t *syn_off;        /* CSR: synsets of wn word id: syn[syn_off[id] .. syn_off[id+1]) */
    int32_t *syn;
    int32_t *exc_off;        /* CSR: exception-list bases of wn word id */
    int32_t *exc;
    size_t n_wn_csr;         /* ids covered by the CSR arrays */
    rs_evocab *fw;            /* function words */
    struct sb_stemmer *stemmer;
    /* scratch for the aligner (grown as needed, reused) */
    int *pa, *pb;            /* path pools (current, next) */
    size_t pa_cap, pb_cap;   /* in ints */
    int *order;
    size_t order_cap;
    int nstage;              /* stages in use (3 = exact, stem, synonym) */
};

/* ------------------------------------------------------------------ -norm */
/* Meteor's Normalizer (keep punctuation, as -norm does), after mteval-v13a: unescape the XML
 * entities, split off the characters { | } ~ [ \ ] ^ _ ` ! " # $ % & ( ) * + : ; < = > ? @ /,
 * split "." and "," unless between digits, split "-" after a digit; then single spaces. */
static bool met_punct(unsigned char c) {
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

char *rs_meteor_normalize(const char *text) {
    if (!text) text = "";
    size_t n = strlen(text);
    char *u = malloc(n + 1), *o = malloc(3 * n + 2);
    if (!u || !o) {
        free(u);
        free(o);
        rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory");
        return NULL;
    }
    /* newlines, entities */
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        static const char *const ent[4][2] = {{"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
        bool done = false;
        if (text[i] == '-' && text[i + 1] == '\n') { i += 2; continue; }
        for (int e = 0; e < 4 && !done; e++) {
            size_t l = strlen(ent[e][0]);
            if (!strncmp(text + i, ent[e][0], l)) { u[k++] = ent[e][1][0]; i += l; done = true; }
        }
        if (done) continue;
        u[k++] = text[i] == '\n' ? ' ' : text[i];
        i++;
    }
    u[k] = 0;
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)u[i];
        unsigned char prev = i ? (unsigned char)u[i - 1] : 0, next = (unsigned char)u[i + 1];
        bool split = met_punct(c);
        /* the text is padded with spaces first, so the ends count as non-digits */
        if (c == '.' || c == ',') split = !(i > 0 && isdigit(prev) && next && isdigit(next));
        if (c == '-' && i > 0 && isdigit(prev)) split = true;
        if (split) { o[m++] = ' '; o[m++] = (char)c; o[m++] = ' '; }
        else o[m++] = (char)c;
    }
    o[m] = 0;
    /* collapse whitespace, trim */
    size_t w = 0;
    bool space = true;
    for (size_t i = 0; i < m; i++) {
        if (isspace((unsigned char)o[i])) { if (!space) { o[w++] = ' '; space = true; } }
        else { o[w++] = o[i]; space = false; }
    }
    if (w && o[w - 1] == ' ') w--;
    o[w] = 0;
    free(u);
    return o;
}

/* ------------------------------------------------------------------ WordNet */
typedef struct {
    int32_t *a;
    size_t n, cap;
} ivec;

static bool iv_push2(ivec *v, int32_t x, int32_t y) {
    if (v->n + 2 > v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 1 << 16;
        int32_t *t = realloc(v->a, nc * sizeof *t);
        if (!t) return false;
        v->a = t;
        v->cap = nc;
    }
    v->a[v->n++] = x;
    v->a[v->n++] = y;
    return true;
}

static int cmp_pair(const void *a, const void *b) {
    const int32_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* pairs (id, value) -> CSR over ids [0, nid), duplicates removed */
static rsmoe_status to_csr(ivec *p, size_t nid, int32_t **off_out, int32_t **val_out) {
    size_t np = p->n / 2;
    if (np) qsort(p->a, np, 2 * sizeof(int32_t), cmp_pair);
    int32_t *off = calloc(nid + 1, sizeof *off);
    int32_t *val = malloc((np ? np : 1) * sizeof *val);
    if (!off || !val) { free(off); free(val); return rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory"); }
    size_t nv = 0;
    for (size_t i = 0; i < np; i++) {
        if (i && p->a[2 * i] == p->a[2 * i - 2] && p->a[2 * i + 1] == p->a[2 * i - 1]) continue;
        val[nv++] = p->a[2 * i + 1];
        off[p->a[2 * i] + 1]++;
    }
    for (size_t i = 0; i < nid; i++) off[i + 1] += off[i];
    *off_out = off;
    *val_out = val;
    return RSMOE_OK;
}

static rsmoe_status read_index(rs_meteor *m, const char *dir, const char *pos, int posno, ivec *pairs) {
    char path[1024];
    snprintf(path, sizeof path, "%s/index.%s", dir, pos);
    FILE *f = fopen(path, "r");
    if (!f) return rs_error(RSMOE_ERR_IO, "meteor: cannot open WordNet file %s (set RSMOE_WORDNET "
                            "to the WordNet dict folder; Debian package wordnet-base)", path);
    char line[8192];
    bool oom = false;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == ' ' || line[0] == '\n') continue;   /* licence header */
        /* lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offsets... */
        char *save = NULL;
        char *lemma = strtok_r(line, " \n", &save);
        char *p_pos = strtok_r(NULL, " \n", &save);
        char *s_cnt = strtok_r(NULL, " \n", &save);
        char *s_p = strtok_r(NULL, " \n", &save);
        if (!lemma || !p_pos || !s_cnt || !s_p) continue;
        int synset_cnt = atoi(s_cnt), p_cnt = atoi(s_p);
        for (int i = 0; i < p_cnt; i++) strtok_r(NULL, " \n", &save);
        strtok_r(NULL, " \n", &save); /* sense_cnt */
        strtok_r(NULL, " \n", &save); /* tagsense_cnt */
        int32_t wid = rs_evocab_lookup(m->wn, lemma, strlen(lemma), true, &oom);
        if (oom) break;
        for (int i = 0; i < synset_cnt; i++) {
            char *o = strtok_r(NULL, " \n", &save);
            if (!o) break;
            long off = atol(o);
            /* a synset is (pos, offset): offsets are unique within a data file */
            if (!iv_push2(pairs, wid, (int32_t)(off * 4 + posno))) { oom = true; break; }
        }
        if (oom) break;
    }
    fclose(f);
    if (oom) return rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory reading %s", path);
    return RSMOE_OK;
}

static rsmoe_status read_exc(rs_meteor *m, const char *dir, const char *pos, ivec *pairs) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.exc", dir, pos);
    FILE *f = fopen(path, "r");
    if (!f) return rs_error(RSMOE_ERR_IO, "meteor: cannot open WordNet file %s", path);
    char line[4096];
    bool oom = false;
    while (fgets(line, sizeof line, f)) {
        char *save = NULL;
        char *form = strtok_r(line, " \n", &save);
        if (!form) continue;
        int32_t fid = rs_evocab_lookup(m->wn, form, strlen(form), true, &oom);
        if (oom) break;
        char *base;
        while ((base = strtok_r(NULL, " \n", &save))) {
            int32_t bid = rs_evocab_lookup(m->wn, base, strlen(base), true, &oom);
            if (oom || !iv_push2(pairs, fid, bid)) { oom = true; break; }
        }
        if (oom) break;
    }
    fclose(f);
    if (oom) return rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory reading %s", path);
    return RSMOE_OK;
}


rsmoe_status rs_meteor_new(rs_meteor **out, const char *wordnet_dir) {
    *out = NULL;
    if (!wordnet_dir) wordnet_dir = getenv("RSMOE_WORDNET");
    if (!wordnet_dir || !*wordnet_dir) wordnet_dir = "/usr/share/wordnet";
    rs_meteor *m = calloc(1, sizeof *m);
    if (!m) return rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory");
    rsmoe_status st = RSMOE_OK;
    ivec syn = {0}, exc = {0};
    m->wn = rs_evocab_new();
    m->fw = rs_evocab_new();
    if (!m->wn || !m->fw) { st = rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory"); goto fail; }
    static const char *const pos[4] = {"noun", "verb", "adj", "adv"};
    for (int i = 0; i < 4 && !st; i++) st = read_index(m, wordnet_dir, pos[i], i, &syn);
    for (int i = 0; i < 4 && !st; i++) st = read_exc(m, wordnet_dir, pos[i], &exc);
    if (st) goto fail;
    m->n_wn_csr = rs_evocab_size(m->wn);
    if ((st = to_csr(&syn, m->n_wn_csr, &m->syn_off, &m->syn))) goto fail;
    if ((st = to_csr(&exc, m->n_wn_csr, &m->exc_off, &m->exc))) goto fail;
    bool oom = false;
    for (size_t i = 0; i < sizeof g_function_words / sizeof g_function_words[0] && !oom; i++)
        rs_evocab_lookup(m->fw, g_function_words[i], strlen(g_function_words[i]), true, &oom);
    if (oom) { st = rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory"); goto fail; }
    m->stemmer = sb_stemmer_new("english", NULL);
    if (!m->stemmer) { st = rs_error(RSMOE_ERR_UNSUPPORTED, "meteor: libstemmer has no English stemmer"); goto fail; }
    free(syn.a);
    free(exc.a);
    m->nstage = MET_NSTAGE;
    *out = m;
    return RSMOE_OK;
fail:
    free(syn.a);
    free(exc.a);
    rs_meteor_free(m);
    return st;
}

void rs_meteor_free(rs_meteor *m) {
    if (!m) return;
    rs_evocab_free(m->wn);
    rs_evocab_free(m->fw);
    free(m->syn_off);
    free(m->syn);
    free(m->exc_off);
    free(m->exc);
    if (m->stemmer) sb_stemmer_delete(m->stemmer);
    free(m->pa);
    free(m->pb);
    free(m->order);
    free(m);
}

rsmoe_status rs_meteor_set_stages(rs_meteor *m, int stages) {
    if (!m || stages < 1 || stages > MET_NSTAGE)
        return rs_error(RSMOE_ERR_INVALID_ARG, "meteor: stages must be 1..%d", MET_NSTAGE);
    m->nstage = stages;
    return RSMOE_OK;
}

const char *const *rs_meteor_function_words(size_t *n) {
    *n = sizeof g_function_words / sizeof g_function_words[0];
    return g_function_words;
}

static int32_t wn_id(rs_meteor *m, const char *w, size_t len) {
    bool oom = false;
    int32_t id = rs_evocab_lookup(m->wn, w, len, false, &oom);
    return (id >= 0 && (size_t)id < m->n_wn_csr) ? id : -1;
}

static bool wn_has_synsets(rs_meteor *m, int32_t id) {
    return id >= 0 && m->syn_off[id + 1] > m->syn_off[id];
}

static bool sv_push(ivec *v, int32_t x) {
    if (v->n + 1 > v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 16;
        int32_t *t = realloc(v->a, nc * sizeof *t);
        if (!t) return false;
        v->a = t;
        v->cap = nc;
    }
    v->a[v->n++] = x;
    return true;
}

static bool add_synsets(rs_meteor *m, int32_t id, ivec *out) {
    if (id < 0) return true;
    for (int32_t k = m->syn_off[id]; k < m->syn_off[id + 1]; k++)
        if (!sv_push(out, m->syn[k])) return false;
    return true;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Meteor's synonym sets of a word: its own synsets, plus those of its base forms (WordNet
 * exception lists, else the first morphy detachment that gives a WordNet word). */
static bool word_synsets(rs_meteor *m, const char *w, ivec *out) {
    out->n = 0;
    size_t len = strlen(w);
    int32_t id = wn_id(m, w, len);
    if (!add_synsets(m, id, out)) return false;
    if (id >= 0 && m->exc_off[id + 1] > m->exc_off[id]) {
        for (int32_t k = m->exc_off[id]; k < m->exc_off[id + 1]; k++)
            if (!add_synsets(m, m->exc[k], out)) return false;
    } else if ((len >= 2 && !strcmp(w + len - 2, "ss")) || len <= 2) {
        /* morph returns the word itself: nothing to add */
    } else {
        char buf[512];
        for (int r = 0; r < 20; r++) {
            size_t sl = strlen(g_sufx[r]);
            if (len < sl || strcmp(w + len - sl, g_sufx[r]) != 0) continue;
            size_t bl = len - sl, al = strlen(g_addr[r]);
            if (bl + al + 1 > sizeof buf) continue;
            memcpy(buf, w, bl);
            memcpy(buf + bl, g_addr[r], al + 1);
            int32_t bid = wn_id(m, buf, bl + al);
            if (wn_has_synsets(m, bid)) {
                if (!add_synsets(m, bid, out)) return false;
                break;
            }
        }
    }
    if (out->n > 1) {
        qsort(out->a, out->n, sizeof *out->a, cmp_i32);
        size_t u = 1;
        for (size_t i = 1; i < out->n; i++)
            if (out->a[i] != out->a[u - 1]) out->a[u++] = out->a[i];
        out->n = u;
    }
    return true;
}

/* ------------------------------------------------------------------ per-word data */
typedef struct {
    int32_t *stem;        /* [nvocab] stem id (in the stem vocab) */
    int32_t *syn_off;     /* [nvocab + 1] */
    int32_t *syn;
    bool *fw;             /* [nvocab] function word */
    size_t n;
} wordinfo;

static void wordinfo_free(wordinfo *wi) {
    free(wi->stem);
    free(wi->syn_off);
    free(wi->syn);
    free(wi->fw);
}

static rsmoe_status wordinfo_build(rs_meteor *m, const rs_evocab *v, wordinfo *wi) {
    memset(wi, 0, sizeof *wi);
    size_t n = rs_evocab_size(v);
    wi->n = n;
    wi->stem = malloc((n ? n : 1) * sizeof *wi->stem);
    wi->syn_off = calloc(n + 1, sizeof *wi->syn_off);
    wi->fw = calloc(n ? n : 1, sizeof *wi->fw);
    rs_evocab *stems = rs_evocab_new();
    ivec all = {0}, one = {0};
    rsmoe_status st = RSMOE_OK;
    if (!wi->stem || !wi->syn_off || !wi->fw || !stems) { st = rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory"); goto done; }
    bool oom = false;
    for (size_t i = 0; i < n; i++) {
        const char *w = rs_evocab_word(v, (int32_t)i);
        size_t len = strlen(w);
        const sb_symbol *s = sb_stemmer_stem(m->stemmer, (const sb_symbol *)w, (int)len);
        if (!s) { st = rs_error(RSMOE_ERR_NOMEM, "meteor: stemmer out of memory"); goto done; }
        wi->stem[i] = rs_evocab_lookup(stems, (const char *)s, (size_t)sb_stemmer_length(m->stemmer), true, &oom);
        wi->fw[i] = rs_evocab_lookup(m->fw, w, len, false, &oom) >= 0;
        if (oom || !word_synsets(m, w, &one)) { st = rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory"); goto done; }
        for (size_t k = 0; k < one.n; k++)
            if (!sv_push(&all, one.a[k])) { st = rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory"); goto done; }
        wi->syn_off[i + 1] = (int32_t)all.n;
    }
    wi->syn = all.a;
    all.a = NULL;
done:
    free(all.a);
    free(one.a);
    rs_evocab_free(stems);
    if (st) wordinfo_free(wi);
    return st;
}

static bool share_synset(const wordinfo *wi, int32_t a, int32_t b) {
    int32_t i = wi->syn_off[a], ie = wi->syn_off[a + 1], j = wi->syn_off[b], je = wi->syn_off[b + 1];
    while (i < ie && j < je) {
        if (wi->syn[i] == wi->syn[j]) return true;
        if (wi->syn[i] < wi->syn[j]) i++;
        else j++;
    }
    return false;
}

/* ------------------------------------------------------------------ the aligner */
/* Candidate matches of one reference position: hypothesis index and stage. */
typedef struct {
    int i, stage;
} cand;

/* path layout in ints: header then arrays */
enum { P_M1, P_M2, P_CHUNKS, P_IDX, P_LAST, P_DIST, P_HDR };

static bool grow(int **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need) nc *= 2;
    int *t = realloc(*p, nc * sizeof *t);
    if (!t) return false;
    *p = t;
    *cap = nc;
    return true;
}

/* Java's PARTIAL_COMPARE_TOTAL: more (weighted, int) matches, then fewer chunks, then less
 * distance. Returns <0 when x sorts first. */
static int path_cmp(const int *x, const int *y) {
    int md = (y[P_M1] + y[P_M2]) - (x[P_M1] + x[P_M2]);
    if (md > 0) return 1;
    if (md < 0) return -1;
    if (x[P_CHUNKS] != y[P_CHUNKS]) return x[P_CHUNKS] - y[P_CHUNKS];
    return x[P_DIST] - y[P_DIST];
}

/* Aligns hypothesis h (line 1) with reference r (line 2) and fills the stats. */
static rsmoe_status align_pair(rs_meteor *m, const wordinfo *wi, const rs_toks *h, const rs_toks *r,
                               rs_meteor_stats *st) {
    int n1 = h->n, n2 = r->n;
    memset(st, 0, sizeof *st);
    st->test_len = n1;
    st->ref_len = n2;
    for (int i = 0; i < n1; i++) st->test_fw += wi->fw[h->w[i]];
    for (int j = 0; j < n2; j++) st->ref_fw += wi->fw[r->w[j]];
    if (n1 == 0 || n2 == 0) { rs_meteor_stats_score(st); return RSMOE_OK; }

    bool identical = n1 == n2 && !memcmp(h->w, r->w, (size_t)n1 * sizeof *h->w);
    int nstage = identical ? 1 : m->nstage;
    /* candidate matches per reference position, in the Java order: stage, then i */
    size_t ncand_max = (size_t)n1 * n2 * MET_NSTAGE;
    size_t need_ints = (size_t)n2 + 1 + 2 * ncand_max + (size_t)n1 + (size_t)n2;
    if (!grow(&m->order, &m->order_cap, need_ints)) return rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory");
    int *coff = m->order;                                  /* [n2 + 1] */
    cand *cands = (cand *)(coff + n2 + 1);                 /* [ncand] */
    int *cov1 = (int *)(cands + ncand_max), *cov2 = cov1 + n1;
    memset(cov1, 0, (size_t)(n1 + n2) * sizeof *cov1);
    int nc = 0;
    for (int j = 0; j < n2; j++) {
        coff[j] = nc;
        for (int s = 0; s < nstage; s++)
            for (int i = 0; i < n1; i++) {
                int32_t a = h->w[i], b = r->w[j];
                bool ok = s == 0 ? a == b
                        : s == 1 ? (a != b && wi->stem[a] == wi->stem[b])
                                 : (a != b && share_synset(wi, a, b));
                if (!ok) continue;
                cands[nc].i = i;
                cands[nc].stage = s;
                nc++;
                cov1[i]++;
                cov2[j]++;
            }
    }
    coff[n2] = nc;

    /* path: header, mt[n2] (hyp index or -1), ms[n2] (stage), used1[n1], used2[n2] */
    size_t stride = P_HDR + 3 * (size_t)n2 + (size_t)n1;
    size_t maxc = 0;
    for (int j = 0; j < n2; j++)
        if ((size_t)(coff[j + 1] - coff[j]) > maxc) maxc = (size_t)(coff[j + 1] - coff[j]);
    size_t maxpaths = MET_BEAM * (maxc + 1) + 1;
    if (!grow(&m->pa, &m->pa_cap, maxpaths * stride) || !grow(&m->pb, &m->pb_cap, maxpaths * stride))
        return rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory");
    int *cur = m->pa, *nxt = m->pb;
    size_t ncur = 0, nnxt = 0;
#define MT(p) ((p) + P_HDR)
#define MS(p) ((p) + P_HDR + n2)
#define U1(p) ((p) + P_HDR + 2 * n2)
#define U2(p) ((p) + P_HDR + 2 * n2 + n1)
    int *p0 = nxt;
    memset(p0, 0, stride * sizeof *p0);
    for (int j = 0; j < n2; j++) MT(p0)[j] = -1;
    p0[P_LAST] = -1;
    /* one-to-one, non-overlapping matches are definite */
    for (int j = 0; j < n2; j++) {
        if (coff[j + 1] - coff[j] != 1) continue;
        const cand *c = &cands[coff[j]];
        if (cov2[j] != 1 || cov1[c->i] != 1) continue;
        MT(p0)[j] = c->i;
        MS(p0)[j] = c->stage;
        U2(p0)[j] = 1;
        U1(p0)[c->i] = 1;
    }
    nnxt = 1;
    for (int current = 0; current <= n2; current++) {
        int *t = cur; cur = nxt; nxt = t;
        ncur = nnxt;
        nnxt = 0;
        /* stable insertion sort of paths (Java's Collections.sort is stable) */
        for (size_t a = 1; a < ncur; a++) {
            size_t b = a;
            while (b > 0 && path_cmp(cur + (b - 1) * stride, cur + b * stride) > 0) {
                /* swap b-1 and b */
                int *x = cur + (b - 1) * stride, *y = cur + b * stride;
                for (size_t k = 0; k < stride; k++) { int tmp = x[k]; x[k] = y[k]; y[k] = tmp; }
                b--;
            }
        }
        size_t lim = ncur < MET_BEAM ? ncur : MET_BEAM;
        for (size_t rank = 0; rank < lim; rank++) {
            int *path = cur + rank * stride;
            if (current == n2) {
                if (path[P_LAST] != -1) path[P_CHUNKS]++;
                memcpy(nxt + nnxt++ * stride, path, stride * sizeof *path);
                continue;
            }
            if (U2(path)[current]) {
                if (current < path[P_IDX]) {
                    memcpy(nxt + nnxt++ * stride, path, stride * sizeof *path);
                } else if (MT(path)[path[P_IDX]] != -1) {
                    int j = path[P_IDX], i = MT(path)[j], s = MS(path)[j];
                    path[P_M1] = (int)(path[P_M1] + 1 * g_align_w[s]);
                    path[P_M2] = (int)(path[P_M2] + 1 * g_align_w[s]);
                    if (path[P_LAST] != -1 && i != path[P_LAST]) path[P_CHUNKS]++;
                    path[P_IDX] = j + 1;
                    path[P_LAST] = i + 1;
                    path[P_DIST] += abs(j - i);
                    memcpy(nxt + nnxt++ * stride, path, stride * sizeof *path);
                }
                continue;
            }
            for (int k = coff[current]; k < coff[current + 1]; k++) {
                const cand *c = &cands[k];
                if (U1(path)[c->i]) continue;
                int *np = nxt + nnxt++ * stride;
                memcpy(np, path, stride * sizeof *path);
                U2(np)[current] = 1;
                U1(np)[c->i] = 1;
                MT(np)[current] = c->i;
                MS(np)[current] = c->stage;
                np[P_M1] = (int)(np[P_M1] + 1 * g_align_w[c->stage]);
                np[P_M2] = (int)(np[P_M2] + 1 * g_align_w[c->stage]);
                if (np[P_LAST] != -1 && c->i != np[P_LAST]) np[P_CHUNKS]++;
                np[P_IDX] = current + 1;
                np[P_LAST] = c->i + 1;
                /* the Java code adds the distance to the path being extended, not the new
                 * one (later candidates and the skip path inherit it): kept as is */
                path[P_DIST] += abs(current - c->i);
            }
            if (path[P_LAST] != -1) {
                path[P_CHUNKS]++;
                path[P_LAST] = -1;
            }
            path[P_IDX]++;
            memcpy(nxt + nnxt++ * stride, path, stride * sizeof *path);
        }
        if (nnxt == 0) {
            memcpy(nxt, cur, stride * sizeof *cur);
            nnxt = 1;
        }
    }
    /* best = first after a stable sort */
    size_t best = 0;
    for (size_t a = 1; a < nnxt; a++)
        if (path_cmp(nxt + a * stride, nxt + best * stride) < 0) best = a;
    const int *bp = nxt + best * stride;
    /* totals by stage and word type; chunks over the final matches */
    int chunks = 0, last = -1;
    for (int j = 0; j < n2; j++) {
        int i = MT(bp)[j];
        if (i < 0) {
            if (last != -1) { chunks++; last = -1; }
            continue;
        }
        int s = MS(bp)[j];
        if (wi->fw[h->w[i]]) st->test_func[s] += 1; else st->test_content[s] += 1;
        if (wi->fw[r->w[j]]) st->ref_func[s] += 1; else st->ref_content[s] += 1;
        st->test_matches += 1;
        st->ref_matches += 1;
        if (last != -1 && i != last) chunks++;
        last = i + 1;
    }
    if (last != -1) chunks++;
    st->chunks = chunks;
#undef MT
#undef MS
#undef U1
#undef U2
    rs_meteor_stats_score(st);
    return RSMOE_OK;
}

double rs_meteor_stats_score(rs_meteor_stats *s) {
    const double a = MET_ALPHA, b = MET_BETA, g = MET_GAMMA, d = MET_DELTA;
    double tw_len = d * (s->test_len - s->test_fw) + (1.0 - d) * s->test_fw;
    double rw_len = d * (s->ref_len - s->ref_fw) + (1.0 - d) * s->ref_fw;
    double tw = 0, rw = 0;
    for (int i = 0; i < MET_NSTAGE; i++) tw += s->test_content[i] * g_stage_w[i] * d;
    for (int i = 0; i < MET_NSTAGE; i++) rw += s->ref_content[i] * g_stage_w[i] * d;
    for (int i = 0; i < MET_NSTAGE; i++) tw += s->test_func[i] * g_stage_w[i] * (1.0 - d);
    for (int i = 0; i < MET_NSTAGE; i++) rw += s->ref_func[i] * g_stage_w[i] * (1.0 - d);
    double p = tw / tw_len, r = rw / rw_len;
    double fmean = 1.0 / (((1.0 - a) / p) + (a / r));
    double test_total = 0, ref_total = 0;
    for (int i = 0; i < MET_NSTAGE; i++) {
        test_total += s->test_content[i] + s->test_func[i];
        ref_total += s->ref_content[i] + s->ref_func[i];
    }
    double frag;
    if (test_total == s->test_len && ref_total == s->ref_len && s->chunks == 1) frag = 0;
    else frag = s->chunks / ((s->test_matches + s->ref_matches) / 2);
    double pen = g * pow(frag, b);
    double score = fmean * (1.0 - pen);
    if (isnan(score)) score = 0;
    else if (score < 0) score = 0;
    s->score = score;
    return score;
}

static void stats_add(rs_meteor_stats *acc, const rs_meteor_stats *s) {
    acc->test_len += s->test_len;
    acc->ref_len += s->ref_len;
    acc->test_fw += s->test_fw;
    acc->ref_fw += s->ref_fw;
    for (int i = 0; i < MET_NSTAGE; i++) {
        acc->test_content[i] += s->test_content[i];
        acc->ref_content[i] += s->ref_content[i];
        acc->test_func[i] += s->test_func[i];
        acc->ref_func[i] += s->ref_func[i];
    }
    acc->chunks += s->chunks;
    acc->test_matches += s->test_matches;
    acc->ref_matches += s->ref_matches;
}

/* best reference by score (strictly greater, the first on ties), as Meteor's SCORE */
static rsmoe_status segment(rs_meteor *m, const wordinfo *wi, const rs_toks *h, const rs_toks *refs,
                            size_t nrefs, rs_meteor_stats *out) {
    double best = -1;
    memset(out, 0, sizeof *out);
    for (size_t j = 0; j < nrefs; j++) {
        rs_meteor_stats s;
        memset(&s, 0, sizeof s);
        rsmoe_status st = align_pair(m, wi, h, &refs[j], &s);
        if (st) return st;
        if (s.score > best) { best = s.score; *out = s; }
    }
    return RSMOE_OK;
}

rsmoe_status rs_meteor_corpus(rs_meteor *m, const rs_tok_corpus *c, double *score, double *per_img) {
    if (!m || !c || !c->n_img) return rs_error(RSMOE_ERR_INVALID_ARG, "meteor: empty corpus");
    wordinfo wi;
    rsmoe_status st = wordinfo_build(m, c->vocab, &wi);
    if (st) return st;
    rs_meteor_stats acc;
    memset(&acc, 0, sizeof acc);
    for (size_t i = 0; i < c->n_img; i++) {
        rs_meteor_stats s;
        if ((st = segment(m, &wi, &c->hyp[i], c->refs[i], c->nrefs[i], &s))) break;
        if (per_img) per_img[i] = s.score;
        stats_add(&acc, &s);
    }
    if (!st) *score = rs_meteor_stats_score(&acc);
    wordinfo_free(&wi);
    return st;
}

rsmoe_status rs_meteor_segment(rs_meteor *m, const char *hyp, const char *const *refs, size_t nrefs,
                               rs_meteor_stats *out) {
    if (!m || !refs || !nrefs) return rs_error(RSMOE_ERR_INVALID_ARG, "meteor: no references");
    rs_tok_corpus c;
    char **norm = calloc(nrefs + 1, sizeof *norm);
    if (!norm) return rs_error(RSMOE_ERR_NOMEM, "meteor: out of memory");
    rsmoe_status st = RSMOE_OK;
    for (size_t j = 0; j <= nrefs && !st; j++)
        if (!(norm[j] = rs_meteor_normalize(j < nrefs ? refs[j] : hyp))) st = RSMOE_ERR_NOMEM;
    const char *const *rr[1] = {(const char *const *)norm};
    const char *hh[1] = {norm[nrefs]};
    size_t nr[1] = {nrefs};
    if (!st) st = rs_tok_corpus_build(&c, 1, hh, rr, nr);
    for (size_t j = 0; j <= nrefs; j++) free(norm[j]);
    free(norm);
    if (st) return st;
    wordinfo wi;
    if (!(st = wordinfo_build(m, c.vocab, &wi))) {
        st = segment(m, &wi, &c.hyp[0], c.refs[0], c.nrefs[0], out);
        wordinfo_free(&wi);
    }
    rs_tok_corpus_free(&c);
    return st;
}
