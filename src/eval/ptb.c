/* ptb.c - the caption toolkit's tokenisation step: Stanford PTBTokenizer 3.4.1 with
 * -preserveLines -lowerCase, then removal of the punctuation tokens
 * '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;
 * A caption-focused port of the rules captions exercise (see docs/metrics.md §1). */
#include "eval/eval.h"
#include "core/core.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_putn(sbuf *b, const char *p, size_t n) {
    if (b->oom) return;
    if (b->n + n + 2 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        while (nc < b->n + n + 2) nc *= 2;
        char *t = realloc(b->s, nc);
        if (!t) { b->oom = true; return; }
        b->s = t;
        b->cap = nc;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
}

/* British -> American word table (after Stanford's Americanize list; lower case). */
static const char *const g_brit[][2] = {
    {"aeroplane", "airplane"}, {"aeroplanes", "airplanes"}, {"aluminium", "aluminum"},
    {"analyse", "analyze"}, {"analysed", "analyzed"}, {"analysing", "analyzing"},
    {"analogue", "analog"}, {"analogues", "analogs"}, {"cancelled", "canceled"},
    {"cancelling", "canceling"}, {"catalogue", "catalog"}, {"centre", "center"},
    {"centres", "centers"}, {"centred", "centered"}, {"defence", "defense"},
    {"encyclopaedia", "encyclopedia"}, {"fibre", "fiber"}, {"fibres", "fibers"},
    {"grey", "gray"}, {"greyish", "grayish"}, {"jewellery", "jewelry"}, {"kerb", "curb"},
    {"kerbs", "curbs"}, {"labelled", "labeled"}, {"labelling", "labeling"},
    {"learnt", "learned"}, {"leant", "leaned"}, {"licence", "license"},
    {"manoeuvre", "maneuver"}, {"manoeuvres", "maneuvers"}, {"meagre", "meager"},
    {"metre", "meter"}, {"metres", "meters"}, {"litre", "liter"}, {"litres", "liters"},
    {"modelled", "modeled"}, {"modelling", "modeling"}, {"neighbourhood", "neighborhood"},
    {"neighbourhoods", "neighborhoods"}, {"offence", "offense"}, {"organisation", "organization"},
    {"organisations", "organizations"}, {"organise", "organize"}, {"organised", "organized"},
    {"practise", "practice"}, {"programme", "program"}, {"programmes", "programs"},
    {"pyjamas", "pajamas"}, {"realise", "realize"}, {"realised", "realized"},
    {"recognise", "recognize"}, {"recognised", "recognized"}, {"theatre", "theater"},
    {"theatres", "theaters"}, {"travelled", "traveled"}, {"travelling", "traveling"},
    {"tyre", "tire"}, {"tyres", "tires"}, {"colourful", "colorful"}, {"coloured", "colored"},
    {"colouring", "coloring"}, {"favourite", "favorite"}, {"favourites", "favorites"},
    {"harboured", "harbored"}, {"honourable", "honorable"}, {"armoured", "armored"},
    {"flavoured", "flavored"}, {"rumoured", "rumored"}, {"paralysed", "paralyzed"},
};

/* words that look like ^[a-z]{3,}our(s)?$ but are the same in American spelling */
static const char *const g_our_except[] = {
    "contour", "contours", "glamour", "detour", "detours", "devour", "devours", "velour",
    "velours", "paramour", "paramours", "troubadour", "troubadours", "tambour", "tambours",
    "amour", "amours", "scour", "scours", "flour", "flours", "hour", "hours", "your", "yours",
    "four", "fours", "tour", "tours", "pour", "pours", "sour", "sours", "dour", "lour",
};

/* Rewrites w (NUL-terminated, in a buffer of at least strlen+1) in American spelling. */
static void americanize(char *w) {
    size_t n = strlen(w);
    for (size_t i = 0; i < sizeof g_brit / sizeof g_brit[0]; i++)
        if (!strcmp(w, g_brit[i][0])) { strcpy(w, g_brit[i][1]); return; }
    /* ^([a-z]{3,})our(s?)$ -> $1or$2 */
    size_t stem = n;
    bool plural = false;
    if (n >= 1 && w[n - 1] == 's') { plural = true; stem = n - 1; }
    if (stem < 6 || memcmp(w + stem - 3, "our", 3) != 0) return;
    (void)plural;
    for (size_t i = 0; i < stem - 3; i++)
        if (w[i] < 'a' || w[i] > 'z') return;
    for (size_t i = 0; i < sizeof g_our_except / sizeof g_our_except[0]; i++)
        if (!strcmp(w, g_our_except[i])) return;
    /* drop the 'u' of "our" */
    memmove(w + stem - 2, w + stem - 1, n - stem + 2);
}

static bool is_removed(const char *t) {
    /* the toolkit's list; its -LRB- -RRB- -LCB- -RCB- never match because PTBTokenizer's
     * -lowerCase lower-cases those tokens too: "(" survives as "-lrb-" */
    static const char *const rm[] = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                                     ".", "?", "!", ",", ":", "-", "--", "...", ";"};
    for (size_t i = 0; i < sizeof rm / sizeof rm[0]; i++)
        if (!strcmp(t, rm[i])) return true;
    return false;
}

static void out_token(sbuf *o, const char *t, size_t n) {
    if (!n) return;
    char tmp[8];
    if (n < sizeof tmp) {
        memcpy(tmp, t, n);
        tmp[n] = 0;
        if (is_removed(tmp)) return;
    }
    if (o->n) sb_putn(o, " ", 1);
    sb_putn(o, t, n);
}

static bool is_clitic(const char *w, size_t n) {
    static const char *const cl[] = {"'s", "'re", "'ve", "'d", "'ll", "'m", "n't"};
    for (size_t i = 0; i < sizeof cl / sizeof cl[0]; i++)
        if (n == strlen(cl[i]) && !memcmp(w, cl[i], n)) return true;
    return false;
}

/* A word token (no spaces, apostrophes normalised to '): clitics split, quotes dropped,
 * spelling americanised. */
static void flush_word(sbuf *o, sbuf *w) {
    if (w->oom) { o->oom = true; }
    if (!w->n) return;
    char *s = w->s;
    size_t n = w->n;
    w->n = 0;
    if (is_clitic(s, n)) { out_token(o, s, n); return; }
    while (n && s[0] == '\'') { s++; n--; }           /* opening single quotes */
    size_t tail = 0;                                   /* closing quotes */
    while (n && s[n - 1] == '\'') { n--; tail++; }
    (void)tail;
    if (!n) return;
    size_t cut = n;
    if (n > 3 && !memcmp(s + n - 3, "n't", 3)) cut = n - 3;
    else {
        static const char *const cl[] = {"'s", "'re", "'ve", "'d", "'ll", "'m"};
        for (size_t i = 0; i < sizeof cl / sizeof cl[0]; i++) {
            size_t k = strlen(cl[i]);
            if (n > k && !memcmp(s + n - k, cl[i], k)) { cut = n - k; break; }
        }
    }
    char tmp[256];
    if (cut < sizeof tmp - 8) {
        memcpy(tmp, s, cut);
        tmp[cut] = 0;
        americanize(tmp);
        out_token(o, tmp, strlen(tmp));
    } else {
        out_token(o, s, cut);
    }
    if (cut < n) out_token(o, s + cut, n - cut);
}

char *rs_ptb_tokenize(const char *text) {
    sbuf o = {0}, w = {0};
    sb_putn(&o, "", 0);
    if (!text) text = "";
    const unsigned char *p = (const unsigned char *)text;
    size_t len = strlen(text);
    for (size_t i = 0; i < len; i++) {
        unsigned c = p[i];
        unsigned next = i + 1 < len ? p[i + 1] : 0;
        unsigned prev = w.n ? (unsigned char)w.s[w.n - 1] : 0;
        if (c == 0xE2 && next == 0x80 && i + 2 < len && (p[i + 2] == 0x98 || p[i + 2] == 0x99)) {
            /* ' and ' (curly single quotes) -> apostrophe */
            sb_putn(&w, "'", 1);
            i += 2;
            continue;
        }
        if (c == 0xE2 && next == 0x80 && i + 2 < len && (p[i + 2] == 0x9C || p[i + 2] == 0x9D)) {
            flush_word(&o, &w); /* curly double quotes */
            i += 2;
            continue;
        }
        if (isspace(c)) { flush_word(&o, &w); continue; }
        if (c < 0x80) c = (unsigned)tolower((int)c);
        switch (c) {
        case '(': case ')': case '[': case ']': case '{': case '}': {
            static const char brk[] = "()[]{}";
            static const char *const name[] = {"-lrb-", "-rrb-", "-lsb-", "-rsb-", "-lcb-", "-rcb-"};
            flush_word(&o, &w);
            const char *nm = name[strchr(brk, (int)c) - brk];
            out_token(&o, nm, strlen(nm));
            continue;
        }
        case '"': case ';': case '!': case '?': case '`':
            flush_word(&o, &w);
            continue;
        case ':': case ',':
            if (isdigit((int)prev) && isdigit((int)next)) { sb_putn(&w, (const char *)&p[i], 1); continue; }
            flush_word(&o, &w);
            continue;
        case '.': {
            size_t run = 1;
            while (i + run < len && p[i + run] == '.') run++;
            if (run >= 2) { flush_word(&o, &w); i += run - 1; continue; }
            if (isalnum((int)next) && (w.n || isdigit((int)next))) { sb_putn(&w, ".", 1); continue; }
            flush_word(&o, &w);
            continue;
        }
        case '-':
            if (next == '-') {
                flush_word(&o, &w);
                while (i + 1 < len && p[i + 1] == '-') i++;
                continue;
            }
            if (!w.n && !isalnum((int)next)) { continue; } /* a lone "-" */
            sb_putn(&w, "-", 1);
            continue;
        case '/': case '*': {   /* PTB3 escaping: \/ and \* */
            char esc[2] = {'\\', (char)c};
            sb_putn(&w, esc, 2);
            continue;
        }
        case '%': case '$':
            flush_word(&o, &w);
            out_token(&o, (const char *)&p[i], 1);
            continue;
        default: {
            char ch = (char)c;
            sb_putn(&w, &ch, 1);
        }
        }
    }
    flush_word(&o, &w);
    free(w.s);
    if (o.oom) {
        free(o.s);
        rs_error(RSMOE_ERR_NOMEM, "ptb tokenizer: out of memory");
        return NULL;
    }
    return o.s;
}
