/* tok_gguf.c - tokenizers from / into GGUF metadata (llama.cpp's tokenizer.ggml.* keys). */
#include "data/tokenizer_impl.h"
#include "formats/gguf.h"

#include <stdlib.h>
#include <string.h>

static int32_t get_id(const rs_gguf *g, const char *key, int32_t n, int32_t dflt) {
    int64_t v = dflt;
    if (rs_gguf_find_key(g, key) >= 0 && rs_gguf_get_i64(g, key, &v) != RSMOE_OK) {
        rs_clear_error();
        v = dflt;
    }
    return v >= 0 && v < n ? (int32_t)v : -1;   /* out of range: treated as absent */
}

rsmoe_status rs_tokenizer_load_gguf(const rs_gguf *g, rs_tokenizer **out) {
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: NULL output");
    *out = NULL;
    if (!g) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer: NULL gguf");
    const char *path = rs_gguf_path(g);
    const char *model = rs_gguf_get_str_or(g, "tokenizer.ggml.model", NULL);
    if (!model) return rs_error(RSMOE_ERR_FORMAT, "%s: no tokenizer (key tokenizer.ggml.model)", path);
    rs_tok_kind kind;
    if (!strcmp(model, "llama")) kind = RS_TOK_SPM;
    else if (!strcmp(model, "gpt2")) kind = RS_TOK_BPE;
    else if (!strcmp(model, "bert")) kind = RS_TOK_WPM;
    else return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: tokenizer model '%s' is not supported (llama, gpt2, bert)", path, model);
    rs_tok_vocab v = rs_tok_vocab_default(kind);
    int64_t ki = rs_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ki < 0 || rs_gguf_arr_type(g, ki) != RS_GGUF_STRING)
        return rs_error(RSMOE_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or not a string array", path);
    int64_t n = rs_gguf_arr_n(g, ki);
    if (n <= 0 || n > (1 << 30)) return rs_error(RSMOE_ERR_FORMAT, "%s: %lld tokens", path, (long long)n);
    const char **toks = malloc((size_t)n * sizeof *toks);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    float *scores = NULL;
    int32_t *types = NULL;
    const char **merges = NULL;
    size_t *mlens = NULL;
    rsmoe_status st = RSMOE_OK;
    if (!toks || !lens) { st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory for %lld tokens", path, (long long)n); goto done; }
    for (int64_t j = 0; j < n; j++) toks[j] = rs_gguf_arr_str(g, ki, j, &lens[j]);
    int64_t ks = rs_gguf_find_key(g, "tokenizer.ggml.scores");
    if (ks >= 0) {
        if (!(scores = malloc((size_t)n * sizeof *scores))) { st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path); goto done; }
        if ((st = rs_gguf_arr_copy(g, ks, RS_GGUF_F32, scores, n))) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tokenizer.ggml.scores must be %lld f32", path, (long long)n);
            goto done;
        }
    } else if (kind == RS_TOK_SPM) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: a llama (SentencePiece) vocabulary needs tokenizer.ggml.scores", path);
        goto done;
    }
    int64_t kt = rs_gguf_find_key(g, "tokenizer.ggml.token_type");
    if (kt >= 0) {
        if (!(types = malloc((size_t)n * sizeof *types))) { st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path); goto done; }
        if ((st = rs_gguf_arr_copy(g, kt, RS_GGUF_I32, types, n))) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tokenizer.ggml.token_type must be %lld i32", path, (long long)n);
            goto done;
        }
    }
    int64_t km = rs_gguf_find_key(g, "tokenizer.ggml.merges");
    if (km >= 0 && kind == RS_TOK_BPE) {
        int64_t nm = rs_gguf_arr_n(g, km);
        if (rs_gguf_arr_type(g, km) != RS_GGUF_STRING || nm < 0 || nm > (1 << 30)) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tokenizer.ggml.merges is not a string array", path);
            goto done;
        }
        merges = malloc((size_t)(nm ? nm : 1) * sizeof *merges);
        mlens = malloc((size_t)(nm ? nm : 1) * sizeof *mlens);
        if (!merges || !mlens) { st = rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path); goto done; }
        for (int64_t j = 0; j < nm; j++) merges[j] = rs_gguf_arr_str(g, km, j, &mlens[j]);
        v.n_merges = (int32_t)nm;
    } else if (kind == RS_TOK_BPE) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: a gpt2 (BPE) vocabulary needs tokenizer.ggml.merges", path);
        goto done;
    }
    const char *pre = rs_gguf_get_str_or(g, "tokenizer.ggml.pre", "default");
    v.pre = (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3"))
                ? RS_TOK_PRE_LLAMA3 : RS_TOK_PRE_GPT2;
    v.n_tokens = (int32_t)n;
    v.tokens = toks;
    v.token_lens = lens;
    v.scores = scores;
    v.types = types;
    v.merges = merges;
    v.merge_lens = mlens;
    int32_t dbos = kind == RS_TOK_SPM ? 1 : -1, deos = kind == RS_TOK_SPM ? 2 : -1, dunk = kind == RS_TOK_SPM ? 0 : -1;
    v.bos = get_id(g, "tokenizer.ggml.bos_token_id", v.n_tokens, dbos);
    v.eos = get_id(g, "tokenizer.ggml.eos_token_id", v.n_tokens, deos);
    v.unk = get_id(g, "tokenizer.ggml.unknown_token_id", v.n_tokens, dunk);
    v.pad = get_id(g, "tokenizer.ggml.padding_token_id", v.n_tokens, -1);
    v.sep = get_id(g, "tokenizer.ggml.seperator_token_id", v.n_tokens, -1);
    v.cls = get_id(g, "tokenizer.ggml.cls_token_id", v.n_tokens, -1);
    v.mask = get_id(g, "tokenizer.ggml.mask_token_id", v.n_tokens, -1);
    v.add_bos = rs_gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", v.add_bos);
    v.add_eos = rs_gguf_get_bool_or(g, "tokenizer.ggml.add_eos_token", v.add_eos);
    v.add_space_prefix = rs_gguf_get_bool_or(g, "tokenizer.ggml.add_space_prefix", v.add_space_prefix);
    for (int64_t j = 0; j < n; j++)
        if (!toks[j]) { st = rs_error(RSMOE_ERR_FORMAT, "%s: token %lld unreadable", path, (long long)j); goto done; }
    st = rs_tokenizer_build(&v, out);
done:
    free(toks); free(lens); free(scores); free(types); free(merges); free(mlens);
    return st;
}

rsmoe_status rs_tokenizer_load_gguf_file(const char *path, rs_tokenizer **out) {
    if (out) *out = NULL;
    rs_gguf *g = NULL;
    rsmoe_status st = rs_gguf_open(path, &g);
    if (st) return st;
    st = rs_tokenizer_load_gguf(g, out);
    rs_gguf_close(g);
    return st;
}

rsmoe_status rs_tokenizer_save_gguf(const rs_tokenizer *t, rs_gguf_writer *w) {
    if (!t || !w) return rs_error(RSMOE_ERR_INVALID_ARG, "tokenizer save: NULL argument");
    const char *model = t->kind == RS_TOK_SPM ? "llama" : t->kind == RS_TOK_BPE ? "gpt2" : "bert";
    const char *pre = t->kind == RS_TOK_BPE ? (t->pre == RS_TOK_PRE_LLAMA3 ? "llama-bpe" : "gpt-2") : "default";
    const char **toks = malloc((size_t)t->n * sizeof *toks);
    size_t *lens = malloc((size_t)t->n * sizeof *lens);
    int32_t nm = t->n_merges;
    char **merges = calloc((size_t)(nm ? nm : 1), sizeof *merges);
    size_t *mlens = malloc((size_t)(nm ? nm : 1) * sizeof *mlens);
    rsmoe_status st = RSMOE_OK;
    if (!toks || !lens || !merges || !mlens) { st = rs_error(RSMOE_ERR_NOMEM, "tokenizer save: out of memory"); goto done; }
    for (int32_t i = 0; i < t->n; i++) { toks[i] = t->blob + t->off[i]; lens[i] = t->len[i]; }
    for (int32_t r = 0; r < nm; r++) {
        const rs_tok_merge *m = &t->merges[r];
        size_t na = t->len[m->a], nb = t->len[m->b];
        if (!(merges[r] = malloc(na + nb + 2))) { st = rs_error(RSMOE_ERR_NOMEM, "tokenizer save: out of memory"); goto done; }
        memcpy(merges[r], t->blob + t->off[m->a], na);
        merges[r][na] = ' ';
        memcpy(merges[r] + na + 1, t->blob + t->off[m->b], nb);
        merges[r][na + nb + 1] = 0;
        mlens[r] = na + nb + 1;
    }
    if ((st = rs_gguf_writer_set_str(w, "tokenizer.ggml.model", model))) goto done;
    if ((st = rs_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre))) goto done;
    if ((st = rs_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, t->n))) goto done;
    if ((st = rs_gguf_writer_set_arr_data(w, "tokenizer.ggml.scores", RS_GGUF_F32, t->score, t->n))) goto done;
    if ((st = rs_gguf_writer_set_arr_data(w, "tokenizer.ggml.token_type", RS_GGUF_I32, t->type, t->n))) goto done;
    if (t->kind == RS_TOK_BPE &&
        (st = rs_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, mlens, nm)))
        goto done;
    static const char *const keys[7] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.cls_token_id",
        "tokenizer.ggml.mask_token_id"};
    const int32_t ids[7] = {t->bos, t->eos, t->unk, t->pad, t->sep, t->cls, t->mask};
    for (int i = 0; i < 7; i++)
        if (ids[i] >= 0 && (st = rs_gguf_writer_set_u32(w, keys[i], (uint32_t)ids[i]))) goto done;
    if ((st = rs_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos))) goto done;
    if ((st = rs_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", t->add_eos))) goto done;
    if (t->kind == RS_TOK_SPM &&
        (st = rs_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix)))
        goto done;
done:
    if (merges)
        for (int32_t r = 0; r < nm; r++) free(merges[r]);
    free(toks); free(lens); free(merges); free(mlens);
    return st;
}
