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

/* Stanford's Americanize (as PTBTokenizer applies it to word tokens, before -lowerCase):
 * a fixed word table, then for words of 6+ characters the patterns haem(at)?o -> hem$1o,
 * aemia$ -> emia, leukaem -> leukem, programme(s?)$ -> program$1 and
 * ^([a-z]{3,})our(s?)$ -> $1or$2 unless the word contains one of the -our exceptions.
 * (Month/day capitalisation is undone by the lower-casing.) */
static const char *const g_brit[][2] = {
    {"anaesthetic", "anesthetic"}, {"analogue", "analog"}, {"analogues", "analogs"},
    {"analyse", "analyze"}, {"analysed", "analyzed"}, {"analysing", "analyzing"},
    {"armoured", "armored"}, {"cancelled", "canceled"}, {"cancelling", "canceling"},
    {"candour", "candor"}, {"capitalise", "capitalize"}, {"capitalised", "capitalized"},
    {"capitalisation", "capitalization"}, {"centre", "center"}, {"chimaeric", "chimeric"},
    {"clamour", "clamor"}, {"coloured", "colored"}, {"colouring", "coloring"},
    {"colourful", "colorful"}, {"defence", "defense"}, {"discolour", "discolor"},
    {"discolours", "discolors"}, {"discoloured", "discolored"}, {"discolouring", "discoloring"},
    {"encyclopaedia", "encyclopedia"}, {"endeavour", "endeavor"}, {"endeavours", "endeavors"},
    {"endeavoured", "endeavored"}, {"endeavouring", "endeavoring"}, {"fervour", "fervor"},
    {"favour", "favor"}, {"favours", "favors"}, {"favoured", "favored"},
    {"favouring", "favoring"}, {"favourite", "favorite"}, {"favourites", "favorites"},
    {"fibre", "fiber"}, {"fibres", "fibers"}, {"finalise", "finalize"},
    {"finalised", "finalized"}, {"finalising", "finalizing"}, {"flavour", "flavor"},
    {"flavours", "flavors"}, {"flavoured", "flavored"}, {"flavouring", "flavoring"},
    {"glamour", "glamour"}, {"grey", "gray"}, {"harbour", "harbor"}, {"harbours", "harbors"},
    {"homologue", "homolog"}, {"homologues", "homologs"}, {"honour", "honor"},
    {"honours", "honors"}, {"honoured", "honored"}, {"honouring", "honoring"},
    {"honourable", "honorable"}, {"humour", "humor"}, {"humours", "humors"},
    {"humoured", "humored"}, {"humouring", "humoring"}, {"kerb", "curb"},
    {"labelled", "labeled"}, {"labelling", "labeling"}, {"labour", "labor"},
    {"labours", "labors"}, {"laboured", "labored"}, {"labouring", "laboring"},
    {"leant", "leaned"}, {"learnt", "learned"}, {"localise", "localize"},
    {"localised", "localized"}, {"manoeuvre", "maneuver"}, {"manoeuvres", "maneuvers"},
    {"maximise", "maximize"}, {"maximised", "maximized"}, {"maximising", "maximizing"},
    {"meagre", "meager"}, {"minimise", "minimize"}, {"minimised", "minimized"},
    {"minimising", "minimizing"}, {"modernise", "modernize"}, {"modernised", "modernized"},
    {"modernising", "modernizing"}, {"misdemeanour", "misdemeanor"},
    {"misdemeanours", "misdemeanors"}, {"neighbour", "neighbor"}, {"neighbours", "neighbors"},
    {"neighbourhood", "neighborhood"}, {"neighbourhoods", "neighborhoods"},
    {"oestrogen", "estrogen"}, {"oestrogens", "estrogens"}, {"organisation", "organization"},
    {"organisations", "organizations"}, {"penalise", "penalize"}, {"penalised", "penalized"},
    {"popularise", "popularize"}, {"popularised", "popularized"},
    {"popularises", "popularizes"}, {"popularising", "popularizing"}, {"practise", "practice"},
    {"practised", "practiced"}, {"pressurise", "pressurize"}, {"pressurised", "pressurized"},
    {"pressurises", "pressurizes"}, {"pressurising", "pressurizing"}, {"realise", "realize"},
    {"realised", "realized"}, {"realising", "realizing"}, {"realises", "realizes"},
    {"recognise", "recognize"}, {"recognised", "recognized"}, {"recognising", "recognizing"},
    {"recognises", "recognizes"}, {"rumoured", "rumored"}, {"rumouring", "rumoring"},
    {"savour", "savor"}, {"savours", "savors"}, {"savoured", "savored"},
    {"savouring", "savoring"}, {"splendour", "splendor"}, {"splendours", "splendors"},
    {"theatre", "theater"}, {"theatres", "theaters"}, {"titre", "titer"}, {"titres", "titers"},
    {"travelled", "traveled"}, {"travelling", "traveling"},
};

static const char *const g_our_except[] = {
    "abatjour", "beflour", "bonjour", "calambour", "carrefour", "cornflour", "contour", "detour",
    "devour", "dortour", "dyvour", "downpour", "giaour", "glamour", "holour", "inpour", "outpour",
    "pandour", "paramour", "pompadour", "recontour", "repour", "ryeflour", "sompnour", "tambour",
    "troubadour", "tregetour", "velour",
};

/* replaces w[at, at+len) by rep (w has room: results never grow) */
static void splice(char *w, size_t at, size_t len, const char *rep) {
    size_t rl = strlen(rep), n = strlen(w);
    memmove(w + at + rl, w + at + len, n - at - len + 1);
    memcpy(w + at, rep, rl);
}

/* Rewrites w (NUL-terminated) in American spelling, in place. */
static void americanize(char *w) {
    size_t n = strlen(w);
    if (n < 4) return;
    for (size_t i = 0; i < sizeof g_brit / sizeof g_brit[0]; i++)
        if (!strcmp(w, g_brit[i][0])) { strcpy(w, g_brit[i][1]); return; }
    if (n < 6) return;
    char *p;
    /* the first pattern that matches is applied (all its matches), then return */
    if ((p = strstr(w, "haem"))) {
        if (!strncmp(p + 4, "ato", 3) || p[4] == 'o') {
            for (p = strstr(w, "haem"); p; p = strstr(p + 1, "haem")) {
                if (!strncmp(p + 4, "ato", 3)) splice(w, (size_t)(p - w), 7, "hemato");
                else if (p[4] == 'o') splice(w, (size_t)(p - w), 5, "hemo");
            }
            return;
        }
    }
    if (n >= 5 && !strcmp(w + n - 5, "aemia")) { splice(w, n - 5, 5, "emia"); return; }
    if ((p = strstr(w, "leukaem")) || (p = strstr(w, "Leukaem"))) {
        for (; p; p = strstr(p + 1, "eukaem")) splice(w, (size_t)(p - w) + (p[0] == 'e' ? 0 : 1), 6, "eukem");
        return;
    }
    if (n >= 9 && !strcmp(w + n - 9, "programme")) { w[n - 2] = 0; return; }
    if (n >= 10 && !strcmp(w + n - 10, "programmes")) { strcpy(w + n - 3, "s"); return; }
    /* ^([a-z]{3,})our(s?)$ */
    size_t stem = (w[n - 1] == 's') ? n - 1 : n;
    bool ours = stem >= 6 && !memcmp(w + stem - 3, "our", 3);
    if (!ours && stem != n) { stem = n; ours = !memcmp(w + n - 3, "our", 3); }
    if (!ours) return;
    for (size_t i = 0; i < stem - 3; i++)
        if (w[i] < 'a' || w[i] > 'z') return;
    for (size_t i = 0; i < sizeof g_our_except / sizeof g_our_except[0]; i++)
        if (strstr(w, g_our_except[i])) return;
    splice(w, stem - 2, 1, "");   /* drop the u of "our" */
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
    while (n && s[n - 1] == '\'') { n--; tail++; }   /* dropped */
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
    if (n == 6 && !memcmp(s, "cannot", 6)) {   /* PTB splits cannot -> can not */
        out_token(o, "can", 3);
        out_token(o, "not", 3);
        return;
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
