/* cmd_quantize.c - `rsmoe quantize IN.gguf OUT.gguf TYPE`: weight matrices to f32/f16/bf16/q8_0. */
#include "cli.h"
#include "core/core.h"
#include "formats/gguf.h"
#include "formats/gguf_copy.h"
#include "kernels/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rs_cli_parse_dtype(const char *s, rs_dtype *t);

/* matrices that the model reads in any dtype; everything else (vectors, norms, position and
 * query embeddings, the patch embedding, LoRA adapters, the router gate) stays f32 */
static bool quantizable(const rs_tensor *t) {
    static const char *const keep[] = {"v.patch_embd.", "v.position_embd", "v.class_embd", "qf.position_embd.",
                                       "qf.query_embd", "expert.", "router.gate.", "router.soft_up.", "cnn.", NULL};
    if (t->ndim != 2 || t->ne[1] < 2) return false;
    for (int i = 0; keep[i]; i++)
        if (!strncmp(t->name, keep[i], strlen(keep[i]))) return false;
    if (strstr(t->name, "norm") || strstr(t->name, "_ln.")) return false;
    return true;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *ty = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rsmoe quantize IN.gguf OUT.gguf f32|f16|bf16|q8_0\n\n"
                   "Rewrites the weight matrices (ViT encoder, Q-Former, LLM, token embeddings) in the given type;\n"
                   "vectors, norms, embeddings of positions and queries, LoRA adapters, the router gate and a CNN\n"
                   "encoder (imported from TFLite) stay f32.\n"
                   "Matrices whose rows are not a multiple of 32 fall back to f16 for q8_0.\n");
            return 0;
        }
        if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else if (!ty) ty = argv[i];
        else { fprintf(stderr, "rsmoe quantize: unexpected argument '%s'\n", argv[i]); return 2; }
    }
    rs_dtype to;
    if (!in || !out || !ty) { fprintf(stderr, "usage: rsmoe quantize IN.gguf OUT.gguf f32|f16|bf16|q8_0\n"); return 2; }
    if (!rs_cli_parse_dtype(ty, &to)) { fprintf(stderr, "rsmoe quantize: unknown type '%s'\n", ty); return 2; }
    if (!strcmp(in, out)) { fprintf(stderr, "rsmoe quantize: output must differ from input\n"); return 2; }
    rs_gguf *g = NULL;
    rsmoe_status st = rs_gguf_open(in, &g);
    if (st) return cli_fail(in, st);
    rs_gguf_writer *w = rs_gguf_writer_new();
    int64_t n = rs_gguf_n_tensors(g);
    void **bufs = calloc((size_t)(n ? n : 1), sizeof(void *));
    float *row = NULL;
    size_t before = 0, after = 0;
    int rc = 1;
    if (!w || !bufs) { fprintf(stderr, "rsmoe quantize: out of memory\n"); goto done; }
    if ((st = rs_gguf_copy_kvs(g, w, NULL))) { rc = cli_fail("metadata", st); goto done; }
    for (int64_t i = 0; i < n; i++) {
        const rs_tensor *t = rs_gguf_tensor(g, i);
        rs_tensor o = *t;
        before += rs_tensor_nbytes(t);
        if (quantizable(t) && t->type != to) {
            rs_dtype tt = (to == RS_Q8_0 && t->ne[0] % RS_QK8_0) ? RS_F16 : to;
            if ((st = rs_tensor_init(&o, t->name, tt, t->ndim, t->ne, NULL))) { rc = cli_fail(t->name, st); goto done; }
            bufs[i] = malloc(rs_tensor_nbytes(&o));
            float *r = realloc(row, sizeof(float) * (size_t)t->ne[0]);
            if (!bufs[i] || !r) { fprintf(stderr, "rsmoe quantize: out of memory\n"); free(r ? NULL : row); row = r; goto done; }
            row = r;
            int64_t rows = rs_tensor_nelements(t) / t->ne[0];
            for (int64_t k = 0; k < rows; k++) {
                rs_row_to_f32(t->type, (const uint8_t *)t->data + (size_t)k * t->nb[1], row, t->ne[0]);
                rs_convert_row(tt, row, (uint8_t *)bufs[i] + (size_t)k * o.nb[1], t->ne[0]);
            }
            o.data = bufs[i];
        }
        after += rs_tensor_nbytes(&o);
        if ((st = rs_gguf_writer_add_tensor(w, &o))) { rc = cli_fail(t->name, st); goto done; }
    }
    if ((st = rs_gguf_writer_write(w, out))) { rc = cli_fail(out, st); goto done; }
    fprintf(stderr, "wrote %s: tensor data %.1f MiB -> %.1f MiB (%s)\n", out, before / 1048576.0, after / 1048576.0, ty);
    rc = 0;
done:
    if (bufs) for (int64_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(row);
    rs_gguf_writer_free(w);
    rs_gguf_close(g);
    return rc;
}
