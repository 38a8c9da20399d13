/* aspects.c - deterministic caption -> (theme | objects | relationships) splitter; the
 * rules are documented in docs/aspects.md (keep the two in step). */
#include "data/aspects.h"

#include <ctype.h>
#include <string.h>

const char *rs_aspect_name(rs_aspect a) {
    switch (a) {
    case RS_ASPECT_THEME: return "theme";
    case RS_ASPECT_OBJECTS: return "objects";
    case RS_ASPECT_RELATIONS: return "relationships";
    default: return "?";
    }
}

int rs_aspect_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "theme")) return RS_ASPECT_THEME;
    if (!strcmp(s, "objects")) return RS_ASPECT_OBJECTS;
    if (!strcmp(s, "relationships") || !strcmp(s, "relations")) return RS_ASPECT_RELATIONS;
    return -1;
}

/* ------------------------------------------------------------------ words */
int rs_words(const char *s, size_t len, rs_word *out, int max) {
    int n = 0;
    size_t i = 0;
    while (i < len && n < max) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '\'' || c == '-')) { i++; continue; }
        size_t b = i;
        while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '\'' || s[i] == '-')) i++;
        /* strip leading/trailing '-' and '\'' (quotes, dashes used as punctuation) */
        size_t e = i;
        while (b < e && (s[b] == '-' || s[b] == '\'')) b++;
        while (e > b && (s[e - 1] == '-' || s[e - 1] == '\'')) e--;
        if (e == b) continue;
        size_t k = e - b < 31 ? e - b : 31;
        for (size_t j = 0; j < k; j++) out[n].w[j] = (char)tolower((unsigned char)s[b + j]);
        out[n].w[k] = 0;
        out[n].begin = (int)b;
        out[n].end = (int)e;
        n++;
    }
    return n;
}

static bool in_list(const char *w, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(w, *list)) return true;
    return false;
}

/* ------------------------------------------------------------------ vocabulary */
static const rs_vocab_noun g_vocab[] = {
    /* multi-word first is not required: rs_vocab_match takes the longest match */
    {"airplane", "airplanes", 0, 0}, {"plane", "planes", 0, 0}, {"aircraft", "aircraft", 0, 0},
    {"airport", "airports", 0, 1}, {"runway", "runways", 0, 0}, {"terminal", "terminals", 0, 0},
    {"apron", "aprons", 0, 0},
    {"building", "buildings", 0, 0}, {"house", "houses", 0, 0}, {"villa", "villas", 0, 0},
    {"roof", "roofs", 0, 0}, {"factory", "factories", 0, 0}, {"church", "churches", 0, 1},
    {"school", "schools", 0, 1}, {"stadium", "stadiums", 0, 1}, {"tower", "towers", 0, 0},
    {"gymnasium", "gymnasiums", 0, 0}, {"skyscraper", "skyscrapers", 0, 0},
    {"apartment", "apartments", 0, 0}, {"greenhouse", "greenhouses", 0, 0}, {"dock", "docks", 0, 0},
    {"bush", "bushes", 0, 0}, {"shrub", "shrubs", 0, 0}, {"fountain", "fountains", 0, 0}, {"gym", "gyms", 0, 0}, {"edifice", "edifices", 0, 0},
    {"car", "cars", 0, 0}, {"vehicle", "vehicles", 0, 0}, {"truck", "trucks", 0, 0}, {"bus", "buses", 0, 0},
    {"train", "trains", 0, 0},
    {"road", "roads", 0, 0}, {"street", "streets", 0, 0}, {"highway", "highways", 0, 0},
    {"path", "paths", 0, 0}, {"railway", "railways", 0, 0}, {"railroad", "railroads", 0, 0},
    {"track", "tracks", 0, 0}, {"overpass", "overpasses", 0, 0}, {"viaduct", "viaducts", 0, 1},
    {"bridge", "bridges", 0, 1}, {"crossroads", "crossroads", 0, 0}, {"intersection", "intersections", 0, 0},
    {"river", "rivers", 0, 1}, {"lake", "lakes", 0, 0}, {"pond", "ponds", 0, 1}, {"pool", "pools", 0, 0},
    {"swimming pool", "swimming pools", 0, 0}, {"sea", "seas", 0, 0}, {"ocean", "oceans", 0, 0},
    {"beach", "beaches", 0, 1}, {"water", "waters", 1, 0}, {"wave", "waves", 0, 0},
    {"boat", "boats", 0, 0}, {"ship", "ships", 0, 0}, {"port", "ports", 0, 1}, {"harbour", "harbours", 0, 1},
    {"harbor", "harbors", 0, 1}, {"wharf", "wharves", 0, 0}, {"pier", "piers", 0, 0},
    {"island", "islands", 0, 0},
    {"tree", "trees", 0, 0}, {"plant", "plants", 0, 0}, {"vegetation", "vegetations", 1, 0},
    {"grass", "grasses", 1, 0}, {"lawn", "lawns", 0, 0}, {"meadow", "meadows", 0, 1},
    {"grassland", "grasslands", 1, 1}, {"forest", "forests", 0, 1}, {"woods", "woods", 1, 0},
    {"farmland", "farmlands", 1, 1}, {"field", "fields", 0, 0}, {"mountain", "mountains", 0, 1},
    {"hill", "hills", 0, 0}, {"desert", "deserts", 0, 1}, {"sand", "sands", 1, 0},
    {"bareland", "barelands", 1, 1}, {"bare land", "bare lands", 1, 1}, {"snow", "snows", 1, 0},
    {"playground", "playgrounds", 0, 1}, {"football field", "football fields", 0, 0},
    {"soccer field", "soccer fields", 0, 0}, {"baseball field", "baseball fields", 0, 0},
    {"baseballfield", "baseballfields", 0, 0}, {"basketball court", "basketball courts", 0, 0},
    {"basketball field", "basketball fields", 0, 0}, {"tennis court", "tennis courts", 0, 0},
    {"badminton court", "badminton courts", 0, 0}, {"volleyball court", "volleyball courts", 0, 0},
    {"court", "courts", 0, 0}, {"golf course", "golf courses", 0, 0},
    {"parking lot", "parking lots", 0, 1}, {"storage tank", "storage tanks", 0, 1},
    {"tank", "tanks", 0, 0}, {"container", "containers", 0, 0},
    {"square", "squares", 0, 1}, {"railway station", "railway stations", 0, 1},
    {"train station", "train stations", 0, 1}, {"station", "stations", 0, 0},
    {"person", "people", 0, 0},
};
#define VOCAB_N ((int)(sizeof g_vocab / sizeof g_vocab[0]))

int rs_vocab_size(void) { return VOCAB_N; }
const rs_vocab_noun *rs_vocab_get(int i) { return i >= 0 && i < VOCAB_N ? &g_vocab[i] : NULL; }

/* does form ("storage tanks") match words[i..]? returns word count or 0 */
static int form_match(const char *form, const char *const *words, int n, int i) {
    if (i >= n || words[i][0] != form[0]) return 0; /* fast reject */
    int k = 0;
    const char *p = form;
    while (*p) {
        const char *sp = strchr(p, ' ');
        size_t len = sp ? (size_t)(sp - p) : strlen(p);
        if (i + k >= n || strlen(words[i + k]) != len || strncmp(words[i + k], p, len)) return 0;
        k++;
        p += len;
        if (*p == ' ') p++;
    }
    return k;
}

static int vocab_match_raw(const char *const *words, int n, int i, int *len, bool *plural) {
    int best = -1, blen = 0;
    bool bpl = false;
    for (int v = 0; v < VOCAB_N; v++) {
        int k = form_match(g_vocab[v].plur, words, n, i);
        bool pl = k > 0;
        if (!k) k = form_match(g_vocab[v].sing, words, n, i);
        if (k > blen) { best = v; blen = k; bpl = pl && strcmp(g_vocab[v].plur, g_vocab[v].sing) != 0; }
    }
    *len = blen;
    *plural = bpl;
    return best;
}

int rs_vocab_match(const char *const *words, int n, int i, int *len, bool *plural) {
    int l = 0;
    bool pl = false;
    int v = vocab_match_raw(words, n, i, &l, &pl);
    if (v < 0) { *len = 0; *plural = false; return -1; }
    /* a one-word noun directly followed by another noun modifies it ("square buildings",
     * "school building"): the head is the second one */
    if (l == 1 && i + 1 < n) {
        int l2;
        bool p2;
        if (vocab_match_raw(words, n, i + 1, &l2, &p2) >= 0) { *len = 0; *plural = false; return -1; }
    }
    *len = l;
    *plural = pl;
    return v;
}

/* ------------------------------------------------------------------ rules */
static const char *const k_verbs[] = {
    "is", "are", "was", "were", "be", "been", "has", "have", "had", "can", "could", "will", "would",
    "lies", "lie", "lying", "sits", "sit", "stands", "stand", "standing", "locate", "includes", "include",
    "contains", "contain", "shows", "show", "seems", "seem", "see", "make", "makes", "form", "forms",
    "covers", "cover", "runs", "run", "running", "flows", "flow", "passes", "pass", "passing", "crosses",
    "cross", "surround", "surrounds", "embrace", "embraces", "rim", "rims", "spans", "span", "stretches",
    "stretch", "connects", "connect", "separates", "divides", "consists", "owns", "own", "there's",
    "it's", "here's", "looks", "look", "grow", "grows", "occupy", "occupies", "goes", "go", "stood", "join",
    "joins", "lay", "meet", "meets", "border", "borders", "face", "faces", "winds", "gather", "gathers", NULL};

static bool is_verb(const char *w) {
    if (in_list(w, k_verbs)) return true;
    /* past participles: parked, planted, surrounded, located; not adjectives such as
     * "l-shaped", "roofed", "coloured", "hundred" */
    size_t n = strlen(w);
    if (n <= 4 || strcmp(w + n - 2, "ed") || strchr(w, '-')) return false;
    return !in_list(w, (const char *const[]){"hundred", "shaped", "roofed", "colored", "coloured", "mixed",
                                             "crowded", "bald", NULL});
}

/* spatial relation phrases, longest first within a shared first word */
typedef struct { const char *phrase, *rule; } spatial_phrase;
#define SP(x) {x, "spatial:" x}
static const spatial_phrase k_spatial[] = {
    SP("on the left of"), SP("on the right of"), SP("on the top of"), SP("at the top of"),
    SP("at the bottom of"), SP("on the bottom of"), SP("in the middle of"), SP("in the center of"),
    SP("in the centre of"), SP("in the middle"), SP("in the center"), SP("in the centre"),
    SP("in front of"), SP("on top of"), SP("on both sides"), SP("on two sides"),
    SP("in two sides"), SP("on both side"), SP("on either side"), SP("on one side"),
    SP("on the other side"), SP("on the side of"), SP("on each side"), SP("by the side of"),
    SP("at the edge of"), SP("on the edge of"), SP("at the corner of"), SP("in the corner of"),
    SP("close to"), SP("next to"), SP("adjacent to"), SP("connected to"), SP("connected with"),
    SP("parallel to"), SP("parallel with"), SP("far from"), SP("away from"), SP("left of"), SP("right of"),
    SP("left"), SP("right"),
    SP("top of"), SP("bottom of"), SP("surrounded by"), SP("semi-surrounded by"), SP("semisurrounded by"),
    SP("near"), SP("nearby"), SP("beside"), SP("besides"), SP("alongside"), SP("aside"), SP("along"),
    SP("around"), SP("between"), SP("across"), SP("through"), SP("over"), SP("under"), SP("beneath"),
    SP("below"), SP("above"), SP("behind"), SP("opposite"), SP("among"), SP("amid"), SP("amidst"),
    SP("inside"), SP("outside"), SP("surround"), SP("surrounds"), SP("surrounding"), SP("surrounded"),
    SP("surroundeded"), SP("semi-surrounded"), SP("semisurrounded"), SP("encircled"), SP("encircle"),
    SP("encircles"), SP("enclosed"), SP("hemmed"), SP("lined"), SP("embrace"), SP("embraces"),
    SP("embraced"), SP("crosses"), SP("crossed"), SP("crossing"), SP("cross"), SP("connects"),
    SP("connecting"), SP("divides"), SP("divided"), SP("separates"), SP("separated"), SP("separating"),
    SP("by"), SP("sides"), SP("side"), SP("corner"), SP("coner"), SP("edge"), SP("rim"), SP("rims"),
    {NULL, NULL}};
#undef SP

static const char *const k_quantity[] = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "dozens",
    "dozen", "hundreds", "many", "some", "several", "few", "numerous", "plenty", "multiple", "countless",
    "lots", "lot", "number", "rows", "row", "pieces", "couple", "pair", NULL};

static const char *const k_scene_generic[] = {
    "area", "areas", "land", "lands", "scene", "region", "place", "city", "town", "district", "zone",
    "neighborhood", "neighbourhood", "community", "residential", "industrial", "commercial", "imagery",
    "image", "picture", "landscape", "view", "expanse", "suburb", "countryside", "village", "resort",
    "center", "centre", "park", "parking", "playfields", "space", NULL};

/* theme openers: the clause's subject is the scene itself */
static const char *theme_opener(const char *const *w, int n) {
    if (n >= 2 && !strcmp(w[0], "it") && in_list(w[1], (const char *const[]){"is", "was", "seems", "looks", NULL}))
        return "theme:opener it is";
    if (n >= 1 && (!strcmp(w[0], "it's") || !strcmp(w[0], "here's"))) return "theme:opener it is";
    if (n >= 2 && !strcmp(w[0], "is") && !strcmp(w[1], "is")) return "theme:opener it is"; /* a typo in RSICD */
    if (n >= 2 && (!strcmp(w[0], "this") || !strcmp(w[0], "here")) &&
        in_list(w[1], (const char *const[]){"is", "was", "are", NULL}))
        return "theme:opener this is";
    static const char *const scene_subj[] = {"land", "area", "scene", "image", "picture", "place", "region",
                                             "city", "whole", "landscape", "imagery", NULL};
    if (n >= 2 && in_list(w[0], (const char *const[]){"this", "the", "that", NULL}) && in_list(w[1], scene_subj))
        return "theme:opener the scene";
    if (n >= 3 && !strcmp(w[0], "we") && !strcmp(w[1], "can") && !strcmp(w[2], "see") && n <= 6)
        return "theme:opener we can see";
    return NULL;
}

/* spatial phrase at word i: the table entry and its length, or NULL */
static const spatial_phrase *spatial_at(const char *const *w, int n, int i, int *len) {
    for (int s = 0; k_spatial[s].phrase; s++) {
        int k = form_match(k_spatial[s].phrase, w, n, i);
        if (k) { *len = k; return &k_spatial[s]; }
    }
    return NULL;
}

rs_aspect rs_aspect_classify(const char *clause, size_t len, const char **rule) {
    rs_word ws[96];
    const char *w[96];
    int n = rs_words(clause, len, ws, 96);
    for (int i = 0; i < n; i++) w[i] = ws[i].w;
    const char *r = NULL;
    if (n == 0) { if (rule) *rule = "objects:empty"; return RS_ASPECT_OBJECTS; }
    /* 1. a spatial relation anywhere */
    for (int i = 0; i < n; i++) {
        int k;
        const spatial_phrase *sp = spatial_at(w, n, i, &k);
        if (!sp) continue;
        const char *ph = sp->phrase;
        /* "a lot of" / "lots of" are quantities, not places; "side" alone only as "sides"
         * of something ("on one side" is listed) */
        if ((!strcmp(ph, "side") || !strcmp(ph, "corner") || !strcmp(ph, "coner") || !strcmp(ph, "edge")) &&
            !(i + 1 < n && !strcmp(w[i + 1], "of")))
            continue;
        if (!strcmp(ph, "by") && i > 0 && in_list(w[i - 1], (const char *const[]){"made", "built", "planted", "formed", NULL}))
            continue;
        if (rule) *rule = sp->rule;
        return RS_ASPECT_RELATIONS;
    }
    /* 2. a clause whose subject is the scene */
    /* count object nouns (distinct), scene-class nouns (distinct), quantities */
    int nobj = 0, nscene = 0, objv[8], scenev[8];
    bool qty = false, generic = false;
    for (int i = 0; i < n; i++) {
        if (in_list(w[i], k_quantity) || isdigit((unsigned char)w[i][0])) qty = true;
        if (in_list(w[i], k_scene_generic)) generic = true;
        int k;
        bool pl;
        int v = rs_vocab_match(w, n, i, &k, &pl);
        if (v < 0) continue;
        int *arr = g_vocab[v].scene ? scenev : objv, *cnt = g_vocab[v].scene ? &nscene : &nobj;
        bool seen = false;
        for (int j = 0; j < *cnt && j < 8; j++) seen |= arr[j] == v;
        if (!seen) { if (*cnt < 8) arr[*cnt] = v; (*cnt)++; }
        i += k - 1;
    }
    /* 2. a clause whose subject is the scene, unless what follows is a list of objects */
    if ((r = theme_opener(w, n))) {
        if (nobj >= 2 || nobj + nscene >= 3) {
            if (rule) *rule = "objects:object list after opener";
            return RS_ASPECT_OBJECTS;
        }
        if (rule) *rule = r;
        return RS_ASPECT_THEME;
    }
    /* 3. scene words only: no object noun, no quantity, at most one scene-class noun */
    if ((generic || nscene > 0) && nobj == 0 && !qty && nscene <= 1) {
        if (rule) *rule = "theme:scene-only";
        return RS_ASPECT_THEME;
    }
    bool obj = nobj > 0 || nscene > 1;
    if (rule) *rule = obj ? "objects:object nouns" : qty ? "objects:quantity" : "objects:default";
    return RS_ASPECT_OBJECTS;
}

/* ------------------------------------------------------------------ splitting */
static bool has_verb(const rs_word *ws, int b, int e) {
    for (int i = b; i < e; i++)
        if (is_verb(ws[i].w)) return true;
    return false;
}

static const char *const k_preps[] = {
    "on", "in", "at", "near", "beside", "besides", "along", "around", "between", "across", "inside", "outside",
    "under", "over", "from", "with", "to", "by", "among", "behind", "next", "beyond", "through", "in", NULL};
static const char *const k_conj_drop[] = {"while", "whereas", "but", "and", "meanwhile", "besides", NULL};
static const char *const k_clause_start[] = {
    "there", "it", "they", "this", "these", "those", "the", "a", "an", "many", "some", "several", "which",
    "where", "we", "its", "there's", "it's", "few", "lots", "one", "two", "three", "four", "five", "six",
    "seven", "eight", "nine", "ten", "most", "all", "each", "both", "other", "others", "while", "whereas",
    "but", "and", NULL};

/* split one sentence [sb, se) of s into clauses */
static int split_sentence(const char *s, int sb, int se, rs_clause *out, int max, int nout) {
    rs_word ws[128];
    int n = rs_words(s + sb, (size_t)(se - sb), ws, 128);
    if (n == 0) return nout;
    for (int i = 0; i < n; i++) { ws[i].begin += sb; ws[i].end += sb; }
    /* candidate boundaries: start word index of each fragment */
    int starts[64], ns = 0;
    bool strong_at[64];
    strong_at[ns] = false;
    starts[ns++] = 0;
    for (int i = 1; i < n && ns < 64; i++) {
        bool comma = false;
        for (int c = ws[i - 1].end; c < ws[i].begin; c++)
            if (s[c] == ',') comma = true;
        const char *w = ws[i].w;
        /* "while"/"whereas" open a clause, except after a number or determiner, where
         * "while" is RSICD's typo for "white" ("two while buildings") */
        bool strong = (!strcmp(w, "while") || !strcmp(w, "whereas")) &&
                      !in_list(ws[i - 1].w, k_quantity) &&
                      !in_list(ws[i - 1].w, (const char *const[]){"a", "an", "the", "and", NULL});
        bool andthere = !strcmp(w, "and") && i + 1 < n &&
                        in_list(ws[i + 1].w, (const char *const[]){"there", "it", "they", "there's", "it's", NULL});
        if (strong || andthere || (comma && in_list(w, k_clause_start))) {
            strong_at[ns] = strong;
            starts[ns++] = i;
        }
    }
    /* a fragment is its own clause when it has a verb; else it joins the previous one */
    int keep[64], nk = 0;
    for (int f = 0; f < ns; f++) {
        int b = starts[f], e = f + 1 < ns ? starts[f + 1] : n;
        int vb = b;
        while (vb < e && in_list(ws[vb].w, k_conj_drop)) vb++;
        /* "while"/"whereas" always split; after a comma the new part needs a verb */
        bool clause = f == 0 || strong_at[f] || (vb + 1 < e && has_verb(ws, vb, e));
        /* a leading verbless prepositional phrase joins the clause after it ("on the
         * beach, there are some houses") */
        if (clause && f == 1 && nk == 1 && !strong_at[1] && !has_verb(ws, 0, starts[1]) && in_list(ws[0].w, k_preps))
            nk = 0;
        if (clause) keep[nk++] = f;
    }
    if (nk == 0) keep[nk++] = 0;
    keep[0] = 0;
    for (int k = 0; k < nk && nout < max; k++) {
        int b = starts[keep[k]];
        int e = k + 1 < nk ? starts[keep[k + 1]] : n;
        int vb = b;
        if (k > 0) while (vb < e - 1 && in_list(ws[vb].w, k_conj_drop)) vb++;
        int cb = ws[vb].begin, ce = ws[e - 1].end;
        /* keep a closing '?'/'%' etc. out; spans are word-aligned */
        out[nout].begin = cb;
        out[nout].end = ce;
        out[nout].aspect = rs_aspect_classify(s + cb, (size_t)(ce - cb), &out[nout].rule);
        nout++;
    }
    return nout;
}

int rs_aspect_split(const char *caption, rs_clause *out, int max) {
    if (!caption || max <= 0) return 0;
    int len = (int)strlen(caption), nout = 0, sb = 0;
    for (int i = 0; i <= len && nout < max; i++) {
        char c = i < len ? caption[i] : 0;
        bool end = c == 0 || c == '!' || c == '?' || c == ';' ||
                   (c == '.' && !(i > 0 && i + 1 < len && isdigit((unsigned char)caption[i - 1]) &&
                                  isdigit((unsigned char)caption[i + 1])));
        if (!end) continue;
        nout = split_sentence(caption, sb, i, out, max, nout);
        sb = i + 1;
    }
    return nout;
}

rs_aspect rs_aspect_dominant(const char *sentence) {
    rs_clause cl[RS_ASPECT_MAX_CLAUSES];
    int n = rs_aspect_split(sentence, cl, RS_ASPECT_MAX_CLAUSES);
    int words[RS_ASPECT_N] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        rs_word ws[128];
        words[cl[i].aspect] += rs_words(sentence + cl[i].begin, (size_t)(cl[i].end - cl[i].begin), ws, 128);
    }
    rs_aspect best = RS_ASPECT_RELATIONS;
    static const rs_aspect order[3] = {RS_ASPECT_RELATIONS, RS_ASPECT_OBJECTS, RS_ASPECT_THEME};
    for (int k = 1; k < 3; k++)
        if (words[order[k]] > words[best]) best = order[k];
    if (n == 0) return RS_ASPECT_OBJECTS;
    return best;
}

int rs_aspect_for_qtype(const char *t) {
    if (!t) return -1;
    static const char *const obj[] = {"presence", "count", "quantity", "number", "color", "colour", "area", NULL};
    static const char *const rel[] = {"comparison", "comp", "position", "ab_position", "re_position", "area_comp",
                                      "orientation", "road_ori", NULL};
    static const char *const theme[] = {"rural_urban", "scene", "image", "image_type", NULL};
    if (in_list(t, rel)) return RS_ASPECT_RELATIONS;
    if (in_list(t, obj)) return RS_ASPECT_OBJECTS;
    if (in_list(t, theme)) return RS_ASPECT_THEME;
    return -1;
}
