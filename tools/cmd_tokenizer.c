/* cmd_tokenizer.c - `rsmoe tokenizer`: train a byte-level BPE vocabulary on captions, encode
 * and decode with any GGUF vocabulary (llama / gpt2 / bert), show a vocabulary's facts. */
#include "cli.h"
#include "core/core.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: rsmoe tokenizer train --data FILE [--split S] [--vocab N] [--min-freq N]\n"
            "                             [--pre gpt2|llama3] [--bos] [--eos] -o OUT.gguf\n"
            "       rsmoe tokenizer encode -m VOCAB.gguf [--special] [--pieces] TEXT...\n"
            "       rsmoe tokenizer decode -m VOCAB.gguf ID...\n"
            "       rsmoe tokenizer info -m VOCAB.gguf\n\n"
            "train: byte-level BPE (GPT-2 pre-tokenizer and byte alphabet) on the captions of FILE:\n"
            "  a data set annotation (Karpathy dataset.json, RSICap, RSIEval; filtered by --split,\n"
            "  default train; \"\" = all) or a text file with one caption per line. Ids 0-3 are <unk> <s> </s>\n"
            "  <pad>, 4-259 the bytes. --vocab N (default 4096) tokens in all; merges stop early when\n"
            "  the best pair occurs fewer than --min-freq times (default 2). --bos/--eos: encode with\n"
            "  specials adds <s>/</s>. If OUT.gguf already is a GGUF (a model), its metadata and\n"
            "  tensors are kept and its tokenizer.* keys replaced; otherwise a vocabulary-only GGUF\n"
            "  is written.\n"
            "encode: prints the ids of the texts joined by spaces (--special: with BOS/EOS,\n"
            "  --pieces: also each token's text). decode: prints the text of the ids.\n");
}

/* ---------------------------------------------------------------- caption reading */
typedef struct {
    char **v;
    int64_t n, cap;
} strvec;

static int sv_push(strvec *s, const char *text, size_t n) {
    if (s->n == s->cap) {
        int64_t c = s->cap ? s->cap * 2 : 1024;
        char **q = realloc(s->v, (size_t)c * sizeof *q);
        if (!q) return -1;
        s->v = q;
        s->cap = c;
    }
    char *d = malloc(n + 1);
    if (!d) return -1;
    memcpy(d, text, n);
    d[n] = 0;
    s->v[s->n++] = d;
    return 0;
}

static void sv_free(strvec *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, len = 0;
    char *b = malloc(cap + 1);
    while (b) {
        size_t r = fread(b + len, 1, cap - len, f);
        len += r;
        if (len < cap) break;
        char *q = realloc(b, cap * 2 + 1);
        if (!q) { free(b); b = NULL; break; }
        b = q;
        cap *= 2;
    }
    if (b && ferror(f)) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[len] = 0; *n = len; }
    return b;
}

/* 0 ok, 1 error (printed) */
static int read_captions(const char *path, const char *split, strvec *out) {
    size_t n = 0;
    char *buf = slurp(path, &n);
    if (!buf) { fprintf(stderr, "rsmoe tokenizer: cannot read %s\n", path); return 1; }
    size_t i = 0;
    while (i < n && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t')) i++;
    if (i < n && buf[i] == '{') {   /* a data set annotation file */
        free(buf);
        rs_dataset ds;
        rs_dataset_opts o = {NULL, split, RS_DS_NO_CHECK};
        rsmoe_status st = rs_dataset_load(path, RS_DS_AUTO, &o, &ds);
        if (st) return cli_fail(path, st);
        for (int k = 0; k < ds.nitems; k++)
            for (int c = 0; c < ds.items[k].ncap; c++) {
                const char *cap = ds.items[k].captions[c];
                if (cap && *cap && sv_push(out, cap, strlen(cap))) {
                    rs_dataset_free(&ds);
                    fprintf(stderr, "rsmoe tokenizer: out of memory\n");
                    return 1;
                }
            }
        rs_dataset_free(&ds);
        return 0;
    }
    for (size_t s = 0; s < n;) {   /* one caption per line */
        char *e = memchr(buf + s, '\n', n - s);
        size_t l = e ? (size_t)(e - (buf + s)) : n - s;
        size_t k = l;
        if (k && buf[s + k - 1] == '\r') k--;
        if (k && sv_push(out, buf + s, k)) { free(buf); fprintf(stderr, "rsmoe tokenizer: out of memory\n"); return 1; }
        s += l + 1;
    }
    free(buf);
    return 0;
}

/* ---------------------------------------------------------------- GGUF output */
/* copies every kv of g except tokenizer.* and every tensor into w */
static rsmoe_status copy_gguf(const rs_gguf *g, rs_gguf_writer *w) {
    rsmoe_status st = RSMOE_OK;
    for (int64_t i = 0; i < rs_gguf_n_kv(g) && !st; i++) {
        const char *key = rs_gguf_key(g, i);
        if (!strncmp(key, "tokenizer.", 10)) continue;
        int type = rs_gguf_kv_type(g, i);
        if (type == RS_GGUF_STRING) {
            size_t len;
            const char *s = rs_gguf_kv_str(g, i, &len);
            st = rs_gguf_writer_set_strn(w, key, s, len);
        } else if (type == RS_GGUF_ARRAY) {
            int64_t n = rs_gguf_arr_n(g, i);
            if (rs_gguf_arr_type(g, i) == RS_GGUF_STRING) {
                const char **v = malloc((size_t)(n ? n : 1) * sizeof *v);
                size_t *l = malloc((size_t)(n ? n : 1) * sizeof *l);
                if (!v || !l) st = rs_error(RSMOE_ERR_NOMEM, "out of memory");
                for (int64_t j = 0; !st && j < n; j++) v[j] = rs_gguf_arr_str(g, i, j, &l[j]);
                if (!st) st = rs_gguf_writer_set_arr_str(w, key, v, l, n);
                free(v);
                free(l);
            } else {
                int et;
                int64_t m;
                const void *d = rs_gguf_arr_data(g, i, &et, &m);
                st = d ? rs_gguf_writer_set_arr_data(w, key, et, d, m) : rs_error(RSMOE_ERR_FORMAT, "%s: bad array", key);
            }
        } else {
            unsigned char v[16];
            st = rs_gguf_kv_scalar(g, i, v);
            if (!st) st = rs_gguf_writer_set_scalar(w, key, type, v);
        }
    }
    for (int64_t i = 0; i < rs_gguf_n_tensors(g) && !st; i++) st = rs_gguf_writer_add_tensor(w, rs_gguf_tensor(g, i));
    return st;
}

static int train(int argc, char **argv) {
    const char *data = NULL, *split = "train", *out = NULL;
    rs_tok_train_opts o = rs_tok_train_opts_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--data") && has) data = argv[++i];
        else if (!strcmp(a, "--split") && has) split = argv[++i];
        else if (!strcmp(a, "--vocab") && has) o.vocab_size = atoi(argv[++i]);
        else if (!strcmp(a, "--min-freq") && has) o.min_freq = atoi(argv[++i]);
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has) out = argv[++i];
        else if (!strcmp(a, "--bos")) o.add_bos = true;
        else if (!strcmp(a, "--eos")) o.add_eos = true;
        else if (!strcmp(a, "--pre") && has) {
            const char *p = argv[++i];
            if (!strcmp(p, "gpt2") || !strcmp(p, "gpt-2")) o.pre = RS_TOK_PRE_GPT2;
            else if (!strcmp(p, "llama3")) o.pre = RS_TOK_PRE_LLAMA3;
            else { fprintf(stderr, "rsmoe tokenizer train: unknown --pre '%s' (gpt2, llama3)\n", p); return 2; }
        } else {
            fprintf(stderr, "rsmoe tokenizer train: unknown or incomplete option '%s'\n", a);
            return 2;
        }
    }
    if (!data || !out) { fprintf(stderr, "rsmoe tokenizer train: --data and -o are required\n"); return 2; }
    strvec caps = {0};
    if (read_captions(data, split, &caps)) { sv_free(&caps); return 1; }
    if (!caps.n) {
        fprintf(stderr, "rsmoe tokenizer train: no captions in %s (split '%s')\n", data, split);
        sv_free(&caps);
        return 1;
    }
    double t0 = rs_time_s();
    rs_tokenizer *t = NULL;
    rsmoe_status st = rs_tokenizer_train_bpe((const char *const *)caps.v, caps.n, &o, &t);
    double dt = rs_time_s() - t0;
    if (st) { sv_free(&caps); return cli_fail("train", st); }
    int64_t bytes = 0, ids = 0;
    int32_t buf[4096];
    for (int64_t i = 0; i < caps.n; i++) {
        int k = 0;
        if (rs_tokenizer_encode(t, caps.v[i], false, buf, 4096, &k) == RSMOE_OK) ids += k;
        bytes += (int64_t)strlen(caps.v[i]);
    }
    printf("trained %d tokens (%d merges) on %lld captions in %.2f s; %.2f bytes per token on them\n",
           (int)rs_tokenizer_n_vocab(t), (int)rs_tokenizer_n_merges(t), (long long)caps.n, dt,
           ids ? (double)bytes / (double)ids : 0.0);
    sv_free(&caps);
    rs_gguf_writer *w = rs_gguf_writer_new();
    rs_gguf *g = NULL;
    if (!w) { rs_tokenizer_free(t); return cli_fail("writer", RSMOE_ERR_NOMEM); }
    bool into = access(out, F_OK) == 0;
    if (into) {
        st = rs_gguf_open(out, &g);
        if (st) {
            rs_tokenizer_free(t);
            rs_gguf_writer_free(w);
            fprintf(stderr, "rsmoe tokenizer train: %s exists and is not a readable GGUF (%s); not overwriting\n",
                    out, rsmoe_last_error());
            return 1;
        }
        st = copy_gguf(g, w);
    } else {
        st = rs_gguf_writer_set_str(w, "general.name", "rsmoe-bpe");
    }
    if (!st) st = rs_tokenizer_save_gguf(t, w);
    if (!st) st = rs_gguf_writer_write(w, out);
    rs_gguf_close(g);
    rs_gguf_writer_free(w);
    rs_tokenizer_free(t);
    if (st) return cli_fail(out, st);
    printf("%s %s\n", into ? "tokenizer written into" : "wrote", out);
    return 0;
}

static int load(const char *path, rs_tokenizer **t) {
    if (!path) { fprintf(stderr, "rsmoe tokenizer: -m VOCAB.gguf is required\n"); return 2; }
    rsmoe_status st = rs_tokenizer_load_gguf_file(path, t);
    return st ? cli_fail(path, st) : 0;
}

static int encode(int argc, char **argv) {
    const char *model = NULL;
    bool special = false, pieces = false;
    int first = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--special")) special = true;
        else if (!strcmp(argv[i], "--pieces")) pieces = true;
        else if (!strcmp(argv[i], "--")) { first = i + 1; break; }
        else if (argv[i][0] == '-' && argv[i][1]) { fprintf(stderr, "rsmoe tokenizer encode: unknown option '%s'\n", argv[i]); return 2; }
        else { first = i; break; }
    }
    rs_tokenizer *t = NULL;
    int rc = load(model, &t);
    if (rc) return rc;
    size_t len = 0;
    for (int i = first; i < argc; i++) len += strlen(argv[i]) + 1;
    char *text = calloc(len + 1, 1);
    for (int i = first; text && i < argc; i++) {
        if (i > first) strcat(text, " ");
        strcat(text, argv[i]);
    }
    int n = 0;
    rsmoe_status st = text ? rs_tokenizer_encode(t, text, special, NULL, 0, &n) : RSMOE_ERR_NOMEM;
    int32_t *ids = text ? malloc(((size_t)n + 1) * sizeof *ids) : NULL;
    st = ids ? rs_tokenizer_encode(t, text, special, ids, n, &n) : rs_error(RSMOE_ERR_NOMEM, "out of memory");
    if (st) { free(ids); free(text); rs_tokenizer_free(t); return cli_fail("encode", st); }
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
    putchar('\n');
    if (pieces)
        for (int i = 0; i < n; i++) {
            size_t l;
            const char *s = rs_tokenizer_token_text(t, ids[i], &l);
            printf("%6d  '%.*s'\n", (int)ids[i], (int)l, s);
        }
    free(ids);
    free(text);
    rs_tokenizer_free(t);
    return 0;
}

static int decode(int argc, char **argv) {
    const char *model = NULL;
    int32_t *ids = calloc((size_t)argc + 1, sizeof *ids);
    int n = 0;
    if (!ids) return cli_fail("decode", rs_error(RSMOE_ERR_NOMEM, "out of memory"));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) { model = argv[++i]; continue; }
        char *e;
        long v = strtol(argv[i], &e, 10);
        if (*e || e == argv[i]) { fprintf(stderr, "rsmoe tokenizer decode: '%s' is not a token id\n", argv[i]); free(ids); return 2; }
        ids[n++] = (int32_t)v;
    }
    rs_tokenizer *t = NULL;
    int rc = load(model, &t);
    if (rc) { free(ids); return rc; }
    size_t len = 0;
    rsmoe_status st = rs_tokenizer_decode(t, ids, n, NULL, 0, &len);
    char *out = st ? NULL : malloc(len + 1);
    if (!st) st = out ? rs_tokenizer_decode(t, ids, n, out, len + 1, &len) : rs_error(RSMOE_ERR_NOMEM, "out of memory");
    if (!st) { fwrite(out, 1, len, stdout); putchar('\n'); }
    free(out);
    free(ids);
    rs_tokenizer_free(t);
    return st ? cli_fail("decode", st) : 0;
}

static int info(int argc, char **argv) {
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else { fprintf(stderr, "rsmoe tokenizer info: unknown option '%s'\n", argv[i]); return 2; }
    }
    rs_tokenizer *t = NULL;
    int rc = load(model, &t);
    if (rc) return rc;
    static const char *const kinds[4] = {"?", "spm (SentencePiece BPE)", "bpe (byte-level)", "wpm (WordPiece)"};
    printf("kind %s, %d tokens, %d merges, bos %d, eos %d, unk %d, pad %d\n", kinds[rs_tokenizer_kind(t)],
           (int)rs_tokenizer_n_vocab(t), (int)rs_tokenizer_n_merges(t), (int)rs_tokenizer_bos(t),
           (int)rs_tokenizer_eos(t), (int)rs_tokenizer_unk(t), (int)rs_tokenizer_pad(t));
    rs_tokenizer_free(t);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "encode")) return encode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "decode")) return decode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return info(argc - 1, argv + 1);
    fprintf(stderr, "rsmoe tokenizer: unknown action '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
