/* llama2c.c - llama2.c checkpoint + tokenizer -> GGUF. See llama2c.h. */
#include "formats/llama2c.h"

#include "formats/gguf.h"
#include "kernels/quant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint8_t *data; size_t size; } blob;

static rsmoe_status read_file(const char *path, blob *b, size_t max) {
    b->data = NULL;
    b->size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rs_error(RSMOE_ERR_IO, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return rs_error(RSMOE_ERR_IO, "%s: cannot seek", path); }
    long n = ftell(f);
    if (n < 0 || (size_t)n > max) { fclose(f); return rs_error(RSMOE_ERR_FORMAT, "%s: size %ld not plausible", path, n); }
    rewind(f);
    b->data = malloc(n ? (size_t)n : 1);
    if (!b->data) { fclose(f); return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path); }
    if (fread(b->data, 1, (size_t)n, f) != (size_t)n) {
        fclose(f); free(b->data); b->data = NULL;
        return rs_error(RSMOE_ERR_IO, "%s: read failed", path);
    }
    fclose(f);
    b->size = (size_t)n;
    return RSMOE_OK;
}

/* a tensor of the output: f32 source converted to the requested type (norms stay f32) */
typedef struct { void *buf; } owned;

static rsmoe_status add_tensor(rs_gguf_writer *w, owned *own, int *n_own, const char *name,
                               const float *src, int64_t in, int64_t out, rs_dtype type) {
    if (type == RS_Q8_0 && in % RS_QK8_0) type = RS_F32; /* rows not a multiple of 32 stay f32 */
    int64_t ne[2] = {in, out};
    rs_tensor t;
    rsmoe_status st = rs_tensor_init(&t, name, type, out > 1 ? 2 : 1, ne, NULL);
    if (st) return st;
    void *buf = malloc(rs_tensor_nbytes(&t));
    if (!buf) return rs_error(RSMOE_ERR_NOMEM, "out of memory converting %s", name);
    for (int64_t r = 0; r < out; r++)
        rs_convert_row(type, src + r * in, (uint8_t *)buf + (size_t)r * t.nb[1], in);
    own[(*n_own)++].buf = buf;
    t.data = buf;
    return rs_gguf_writer_add_tensor(w, &t);
}

rsmoe_status rs_llama2c_import(const char *model_path, const char *tokenizer_path,
                               const char *out_path, rs_dtype wtype) {
    if (wtype != RS_F32 && wtype != RS_F16 && wtype != RS_BF16 && wtype != RS_Q8_0)
        return rs_error(RSMOE_ERR_INVALID_ARG, "llama2c import: unknown weight type");
    blob mb, tb;
    rsmoe_status st = read_file(model_path, &mb, (size_t)1 << 36);
    if (st) return st;
    st = read_file(tokenizer_path, &tb, (size_t)1 << 30);
    if (st) { free(mb.data); return st; }
    rs_gguf_writer *w = NULL;
    owned *own = NULL;
    int n_own = 0;
    char **toks = NULL;
    size_t *tok_lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    int32_t hdr[7];
    int vocab = 0;

    if (mb.size < sizeof hdr) { st = rs_error(RSMOE_ERR_FORMAT, "%s: too short for a llama2.c header", model_path); goto done; }
    memcpy(hdr, mb.data, sizeof hdr);
    int dim = hdr[0], hidden = hdr[1], L = hdr[2], H = hdr[3], Hkv = hdr[4], seq = hdr[6];
    bool shared = hdr[5] > 0;
    vocab = hdr[5] < 0 ? -hdr[5] : hdr[5];
    if (dim <= 0 || dim > 65536 || hidden <= 0 || hidden > 1 << 20 || L <= 0 || L > 256 || H <= 0 ||
        Hkv <= 0 || H % Hkv || dim % H || vocab <= 0 || vocab > 1 << 22 || seq <= 0 || seq > 1 << 20 ||
        (dim / H) % 2) {
        st = rs_error(RSMOE_ERR_FORMAT,
                      "%s: not a llama2.c checkpoint (header dim %d hidden %d layers %d heads %d/%d vocab %d seq %d)",
                      model_path, hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6]);
        goto done;
    }
    int hd = dim / H, kvd = Hkv * hd;
    size_t nfloats = (size_t)vocab * dim + (size_t)L * dim * 2 + (size_t)L * dim * dim * 2 +
                     (size_t)L * kvd * dim * 2 + (size_t)L * hidden * dim * 3 + dim + (size_t)seq * hd +
                     (shared ? 0 : (size_t)vocab * dim);
    if (mb.size != sizeof hdr + nfloats * 4) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: %zu bytes, but its header implies %zu", model_path, mb.size,
                      sizeof hdr + nfloats * 4);
        goto done;
    }
    const float *p = (const float *)(mb.data + sizeof hdr);
    const float *emb = p; p += (size_t)vocab * dim;
    const float *rms_att = p; p += (size_t)L * dim;
    const float *wq = p; p += (size_t)L * dim * dim;
    const float *wk = p; p += (size_t)L * kvd * dim;
    const float *wv = p; p += (size_t)L * kvd * dim;
    const float *wo = p; p += (size_t)L * dim * dim;
    const float *rms_ffn = p; p += (size_t)L * dim;
    const float *w1 = p; p += (size_t)L * hidden * dim;
    const float *w2 = p; p += (size_t)L * dim * hidden;
    const float *w3 = p; p += (size_t)L * hidden * dim;
    const float *rms_final = p; p += dim;
    p += (size_t)seq * hd; /* freq_cis real + imag */
    const float *wcls = shared ? emb : p;

    /* tokenizer */
    toks = calloc((size_t)vocab, sizeof *toks);
    tok_lens = calloc((size_t)vocab, sizeof *tok_lens);
    scores = calloc((size_t)vocab, sizeof *scores);
    types = calloc((size_t)vocab, sizeof *types);
    own = calloc((size_t)(L * 9 + 8), sizeof *own);
    if (!toks || !tok_lens || !scores || !types || !own) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
    size_t off = 4;
    if (tb.size < 4) { st = rs_error(RSMOE_ERR_FORMAT, "%s: too short", tokenizer_path); goto done; }
    for (int i = 0; i < vocab; i++) {
        int32_t len;
        if (off + 8 > tb.size) { st = rs_error(RSMOE_ERR_FORMAT, "%s: truncated at token %d of %d", tokenizer_path, i, vocab); goto done; }
        memcpy(&scores[i], tb.data + off, 4);
        memcpy(&len, tb.data + off + 4, 4);
        off += 8;
        if (len < 0 || len > 1 << 16 || off + (size_t)len > tb.size) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: bad length %d of token %d", tokenizer_path, len, i);
            goto done;
        }
        /* llama2.c's export wrote SentencePiece's "▁" as a plain space: restore it */
        size_t spaces = 0;
        for (int j = 0; j < len; j++) spaces += tb.data[off + j] == ' ';
        char *s = malloc((size_t)len + 2 * spaces + 1);
        if (!s) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto done; }
        size_t k = 0;
        for (int j = 0; j < len; j++) {
            uint8_t ch = tb.data[off + j];
            if (ch == ' ') { s[k++] = (char)0xe2; s[k++] = (char)0x96; s[k++] = (char)0x81; }
            else s[k++] = (char)ch;
        }
        s[k] = 0;
        toks[i] = s;
        tok_lens[i] = k;
        off += (size_t)len;
        if (i == 0) types[i] = 2;           /* <unk>: unknown */
        else if (i == 1 || i == 2) types[i] = 3;              /* <s>, </s>: control */
        else if (len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') types[i] = 6; /* byte */
        else types[i] = 1;
    }
    if (off != tb.size) { st = rs_error(RSMOE_ERR_FORMAT, "%s: %zu trailing bytes after %d tokens (vocabulary size mismatch with the model?)", tokenizer_path, tb.size - off, vocab); goto done; }

    w = rs_gguf_writer_new();
    if (!w) { st = RSMOE_ERR_NOMEM; goto done; }
    if ((st = rs_gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (st = rs_gguf_writer_set_str(w, "general.name", "llama2.c import")) ||
        (st = rs_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)seq)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)dim)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)L)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)hidden)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)H)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)Hkv)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hd)) ||
        (st = rs_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f)) ||
        (st = rs_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (st = rs_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)vocab)) ||
        (st = rs_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (st = rs_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, tok_lens, vocab)) ||
        (st = rs_gguf_writer_set_arr_data(w, "tokenizer.ggml.scores", RS_GGUF_F32, scores, vocab)) ||
        (st = rs_gguf_writer_set_arr_data(w, "tokenizer.ggml.token_type", RS_GGUF_I32, types, vocab)) ||
        (st = rs_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
        (st = rs_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (st = rs_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (st = rs_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)) ||
        (st = rs_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", true)))
        goto done;
    if ((st = add_tensor(w, own, &n_own, "token_embd.weight", emb, dim, vocab, wtype))) goto done;
    char name[RS_NAME_MAX];
    for (int l = 0; l < L; l++) {
#define T(fmt, src, in, out, ty) \
    do { snprintf(name, sizeof name, fmt, l); \
         if ((st = add_tensor(w, own, &n_own, name, src, in, out, ty))) goto done; } while (0)
        T("blk.%d.attn_norm.weight", rms_att + (size_t)l * dim, dim, 1, RS_F32);
        T("blk.%d.attn_q.weight", wq + (size_t)l * dim * dim, dim, dim, wtype);
        T("blk.%d.attn_k.weight", wk + (size_t)l * kvd * dim, dim, kvd, wtype);
        T("blk.%d.attn_v.weight", wv + (size_t)l * kvd * dim, dim, kvd, wtype);
        T("blk.%d.attn_output.weight", wo + (size_t)l * dim * dim, dim, dim, wtype);
        T("blk.%d.ffn_norm.weight", rms_ffn + (size_t)l * dim, dim, 1, RS_F32);
        T("blk.%d.ffn_gate.weight", w1 + (size_t)l * hidden * dim, dim, hidden, wtype);
        T("blk.%d.ffn_down.weight", w2 + (size_t)l * dim * hidden, hidden, dim, wtype);
        T("blk.%d.ffn_up.weight", w3 + (size_t)l * hidden * dim, dim, hidden, wtype);
#undef T
    }
    if ((st = add_tensor(w, own, &n_own, "output_norm.weight", rms_final, dim, 1, RS_F32))) goto done;
    if (!shared && (st = add_tensor(w, own, &n_own, "output.weight", wcls, dim, vocab, wtype))) goto done;
    st = rs_gguf_writer_write(w, out_path);

done:
    rs_gguf_writer_free(w);
    if (own) for (int i = 0; i < n_own; i++) free(own[i].buf);
    free(own);
    if (toks) for (int i = 0; i < vocab; i++) free(toks[i]);
    free(toks);
    free(tok_lens);
    free(scores);
    free(types);
    free(mb.data);
    free(tb.data);
    return st;
}
