/* gguf_copy.c - see gguf_copy.h */
#include "formats/gguf_copy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rsmoe_status rs_gguf_copy_kvs(const rs_gguf *g, rs_gguf_writer *w, bool (*skip)(const char *key)) {
    int64_t n = rs_gguf_n_kv(g);
    for (int64_t i = 0; i < n; i++) {
        const char *key = rs_gguf_key(g, i);
        if (!strcmp(key, "general.alignment") || (skip && skip(key))) continue;
        int t = rs_gguf_kv_type(g, i);
        rsmoe_status st;
        if (t == RS_GGUF_STRING) {
            size_t len;
            const char *s = rs_gguf_kv_str(g, i, &len);
            st = rs_gguf_writer_set_strn(w, key, s, len);
        } else if (t == RS_GGUF_ARRAY) {
            int et = rs_gguf_arr_type(g, i);
            int64_t an = rs_gguf_arr_n(g, i);
            if (et == RS_GGUF_STRING) {
                const char **ss = malloc(sizeof(char *) * (size_t)(an ? an : 1));
                size_t *ls = malloc(sizeof(size_t) * (size_t)(an ? an : 1));
                if (!ss || !ls) { free(ss); free(ls); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
                for (int64_t j = 0; j < an; j++) ss[j] = rs_gguf_arr_str(g, i, j, &ls[j]);
                st = rs_gguf_writer_set_arr_str(w, key, ss, ls, an);
                free(ss);
                free(ls);
            } else {
                size_t es = rs_gguf_type_size(et);
                void *buf = malloc(es * (size_t)(an ? an : 1));
                if (!buf) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
                st = rs_gguf_arr_copy(g, i, et, buf, an);
                if (!st) st = rs_gguf_writer_set_arr_data(w, key, et, buf, an);
                free(buf);
            }
        } else {
            uint8_t v[16];
            st = rs_gguf_kv_scalar(g, i, v);
            if (!st) st = rs_gguf_writer_set_scalar(w, key, t, v);
        }
        if (st) return st;
    }
    return RSMOE_OK;
}

/* b exists and has a's type and shape */
static bool same_layout(const rs_tensor *a, const rs_tensor *b) {
    bool same = b && b->type == a->type && b->ndim == a->ndim;
    for (int d = 0; same && d < RS_MAX_DIMS; d++) same = b->ne[d] == a->ne[d];
    return same;
}

rsmoe_status rs_gguf_graft(const char *into, const char *from, const char *out, rs_graft_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (!strcmp(out, into) || !strcmp(out, from))
        return rs_error(RSMOE_ERR_INVALID_ARG, "graft: the output must be a new file (not %s)", out);
    rs_gguf *gi = NULL, *gf = NULL;
    rs_gguf_writer *w = NULL;
    rsmoe_status st;
    if ((st = rs_gguf_open(into, &gi)) || (st = rs_gguf_open(from, &gf))) goto done;
    if (!(w = rs_gguf_writer_new())) { st = RSMOE_ERR_NOMEM; goto done; }
    if ((st = rs_gguf_copy_kvs(gi, w, NULL))) goto done;
    for (int64_t i = 0; i < rs_gguf_n_tensors(gi) && !st; i++) {
        const rs_tensor *t = rs_gguf_tensor(gi, i), *f = rs_gguf_find_tensor(gf, t->name);
        const bool same = same_layout(t, f);
        if (same) rep->taken++;
        else if (f) {
            if (!rep->mismatched++) snprintf(rep->mismatch, sizeof rep->mismatch, "%s", t->name);
        } else rep->absent++;
        st = rs_gguf_writer_add_tensor(w, same ? f : t);
    }
    for (int64_t i = 0; i < rs_gguf_n_tensors(gf); i++)
        if (!rs_gguf_find_tensor(gi, rs_gguf_tensor(gf, i)->name)) rep->unused++;
    if (!st) st = rs_gguf_writer_write(w, out);
done:
    rs_gguf_writer_free(w);
    rs_gguf_close(gi);
    rs_gguf_close(gf);
    return st;
}

rsmoe_status rs_gguf_average(const char *const *in, int n, const char *out, rs_average_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (!in || !out || n < 2 || n > 64)
        return rs_error(RSMOE_ERR_INVALID_ARG, "average: needs 2 to 64 input files and an output");
    for (int k = 0; k < n; k++)
        if (!in[k] || !strcmp(in[k], out))
            return rs_error(RSMOE_ERR_INVALID_ARG, "average: the output must be a new file (not %s)", out);
    rs_gguf *g[64] = {0};
    rs_gguf_writer *w = NULL;
    rs_tensor *mean = NULL; /* the averaged tensors (their data owned here until written) */
    int64_t nt = 0;
    rsmoe_status st = RSMOE_OK;
    for (int k = 0; k < n && !st; k++) st = rs_gguf_open(in[k], &g[k]);
    if (st) goto done;
    nt = rs_gguf_n_tensors(g[0]);
    for (int k = 1; k < n && !st; k++)
        if (rs_gguf_n_tensors(g[k]) != nt)
            st = rs_error(RSMOE_ERR_INVALID_ARG, "average: %s has %lld tensors, %s %lld", in[k],
                          (long long)rs_gguf_n_tensors(g[k]), in[0], (long long)nt);
    if (st) goto done;
    if (!(mean = calloc((size_t)(nt ? nt : 1), sizeof *mean)) || !(w = rs_gguf_writer_new())) {
        st = rs_error(RSMOE_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = rs_gguf_copy_kvs(g[0], w, NULL))) goto done;
    for (int64_t i = 0; i < nt && !st; i++) {
        const rs_tensor *t = rs_gguf_tensor(g[0], i), *o[64];
        const size_t bytes = rs_tensor_nbytes(t);
        bool differ = false;
        for (int k = 1; k < n && !st; k++) {
            o[k] = rs_gguf_find_tensor(g[k], t->name);
            if (!same_layout(t, o[k]))
                st = rs_error(RSMOE_ERR_INVALID_ARG, "average: tensor %s is %s in %s", t->name,
                              o[k] ? "of another type or shape" : "missing", in[k]);
            else if (memcmp(o[k]->data, t->data, bytes))
                differ = true;
        }
        if (st) break;
        if (!differ) {
            rep->same++;
            st = rs_gguf_writer_add_tensor(w, t);
            continue;
        }
        if (t->type != RS_F32) {
            st = rs_error(RSMOE_ERR_INVALID_ARG,
                          "average: tensor %s (%s) differs between the files; only f32 tensors are averaged "
                          "(average the f32 checkpoints, then quantize)", t->name, rs_dtype_name(t->type) ? rs_dtype_name(t->type) : "?");
            break;
        }
        const int64_t ne = (int64_t)(bytes / sizeof(float));
        float *d = malloc(bytes ? bytes : 1);
        if (!d) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); break; }
        const float *src0 = t->data;
        for (int64_t e = 0; e < ne; e++) {
            double acc = src0[e];
            for (int k = 1; k < n; k++) acc += ((const float *)o[k]->data)[e];
            d[e] = (float)(acc / n);
        }
        mean[i] = *t;
        mean[i].data = d;
        mean[i].packed = NULL;
        rep->averaged++;
        st = rs_gguf_writer_add_tensor(w, &mean[i]);
    }
    if (!st) st = rs_gguf_writer_write(w, out);
done:
    if (mean)
        for (int64_t i = 0; i < nt; i++) free(mean[i].data);
    free(mean);
    rs_gguf_writer_free(w);
    for (int k = 0; k < n; k++) rs_gguf_close(g[k]);
    return st;
}
