/* features.c - see features.h */
#include "train/features.h"

#include "data/image.h"
#include "formats/gguf.h"
#include "kernels/quant.h"

#include <stdlib.h>
#include <string.h>

rsmoe_status rs_features_build(const rs_model *m, const rs_dataset *ds, const char *out_path, int view, rs_pool *pool,
                               void (*progress)(const rs_features_progress *, void *),
                               void (*bad)(const char *path, const char *msg, void *), void *ud,
                               rs_features_progress *final) {
    int N = ds->nitems, T = m->enc_tokens, W = m->enc_width;
    rs_features_progress pr = {.total = N};
    if (N < 1) return rs_error(RSMOE_ERR_INVALID_ARG, "feature cache: the data set has no images");
    if (!rs_image_view_name(view)) return rs_error(RSMOE_ERR_INVALID_ARG, "feature cache: view %d is not one of 0..7", view);
    size_t per = (size_t)T * W;
    uint16_t *data = malloc(sizeof(uint16_t) * per * (size_t)N);
    float *tok = malloc(sizeof(float) * per);
    const char **names = malloc(sizeof(char *) * (size_t)N);
    rs_enc_scratch es;
    rsmoe_status st = rs_enc_scratch_init(m, rs_pool_size(pool), &es);
    rs_gguf_writer *w = NULL;
    if (!data || !tok || !names) { st = rs_error(RSMOE_ERR_NOMEM, "feature cache: out of memory for %d images", N); goto done; }
    if (st) goto done;
    double t0 = rs_time_s();
    int n = 0;
    for (int i = 0; i < N; i++) {
        const rs_ds_item *it = &ds->items[i];
        rs_image img;
        rsmoe_status s2 = rs_image_load(it->path, NULL, &img);
        if (!s2 && img.c != 3) { rs_image_free(&img); s2 = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: not an RGB image", it->path); }
        if (!s2 && view) {
            rs_image v;
            s2 = rs_image_dihedral(&img, view, &v);
            rs_image_free(&img);
            img = v;
        }
        if (!s2) {
            s2 = rs_model_encode(m, &img, tok, &es, pool);
            rs_image_free(&img);
        }
        if (s2) {
            pr.failed++;
            if (bad) bad(it->path, rsmoe_last_error(), ud);
        } else {
            rs_convert_row(RS_F16, tok, data + per * (size_t)n, (int64_t)per);
            names[n++] = it->filename;
        }
        pr.done = i + 1;
        pr.seconds = rs_time_s() - t0;
        if (progress) progress(&pr, ud);
    }
    if (n == 0) { st = rs_error(RSMOE_ERR_IO, "feature cache: no image could be encoded"); goto done; }
    w = rs_gguf_writer_new();
    int64_t ne[3] = {W, T, n};
    rs_tensor t;
    if (!w) { st = RSMOE_ERR_NOMEM; goto done; }
    if ((st = rs_tensor_init(&t, "features", RS_F16, 3, ne, data)) ||
        (st = rs_gguf_writer_set_str(w, "general.architecture", "rsmoe-features")) ||
        (st = rs_gguf_writer_set_u64(w, "rsmoe.features.encoder_hash", rs_model_encoder_hash(m))) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.features.tokens", (uint32_t)T)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.features.width", (uint32_t)W)) ||
        (st = rs_gguf_writer_set_u32(w, "rsmoe.features.view", (uint32_t)view)) ||
        (st = rs_gguf_writer_set_str(w, "rsmoe.features.model", m->path)) ||
        (st = rs_gguf_writer_set_arr_str(w, "rsmoe.features.images", names, NULL, n)) ||
        (st = rs_gguf_writer_add_tensor(w, &t)) || (st = rs_gguf_writer_write(w, out_path)))
        goto done;
done:
    if (final) *final = pr;
    rs_gguf_writer_free(w);
    rs_enc_scratch_free(&es);
    free(data);
    free(tok);
    free(names);
    return st;
}

struct rs_features {
    rs_gguf *g;
    const rs_tensor *t;
    int64_t kv_names;
    int n, tokens, width, view;
    /* sorted index of names for lookup */
    int *order;
};

static _Thread_local const rs_features *g_sort_f; /* qsort has no context argument */
static int cmp_name(const void *a, const void *b) {
    size_t l;
    return strcmp(rs_gguf_arr_str(g_sort_f->g, g_sort_f->kv_names, *(const int *)a, &l),
                  rs_gguf_arr_str(g_sort_f->g, g_sort_f->kv_names, *(const int *)b, &l));
}

rsmoe_status rs_features_open(const char *path, const rs_model *m, rs_features **out) {
    *out = NULL;
    rs_features *f = calloc(1, sizeof *f);
    if (!f) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    rsmoe_status st = rs_gguf_open(path, &f->g);
    if (st) { free(f); return st; }
    uint64_t h = 0;
    uint32_t T = 0, W = 0;
    if (strcmp(rs_gguf_get_str_or(f->g, "general.architecture", ""), "rsmoe-features")) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: not a feature cache (made by `rsmoe features`)", path);
        goto fail;
    }
    if ((st = rs_gguf_get_u64(f->g, "rsmoe.features.encoder_hash", &h)) || (st = rs_gguf_get_u32(f->g, "rsmoe.features.tokens", &T)) ||
        (st = rs_gguf_get_u32(f->g, "rsmoe.features.width", &W)))
        goto fail;
    f->kv_names = rs_gguf_find_key(f->g, "rsmoe.features.images");
    f->t = rs_gguf_find_tensor(f->g, "features");
    if (f->kv_names < 0 || !f->t || f->t->type != RS_F16 || f->t->ne[0] != W || f->t->ne[1] != T ||
        f->t->ne[2] != rs_gguf_arr_n(f->g, f->kv_names)) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: feature cache tensor and image list do not agree", path);
        goto fail;
    }
    if (m && (h != rs_model_encoder_hash(m) || (int)T != m->enc_tokens || (int)W != m->enc_width)) {
        st = rs_error(RSMOE_ERR_FORMAT, "%s: stale feature cache: it was made by another image encoder than %s's "
                      "(rebuild it with `rsmoe features`)", path, m->path);
        goto fail;
    }
    uint32_t view = 0;
    if (rs_gguf_find_key(f->g, "rsmoe.features.view") >= 0 && (st = rs_gguf_get_u32(f->g, "rsmoe.features.view", &view))) goto fail;
    if (view >= RS_IMAGE_VIEWS) { st = rs_error(RSMOE_ERR_FORMAT, "%s: feature cache of an unknown image view %u", path, view); goto fail; }
    f->view = (int)view;
    f->n = (int)f->t->ne[2];
    f->tokens = (int)T;
    f->width = (int)W;
    f->order = malloc(sizeof(int) * (size_t)(f->n ? f->n : 1));
    if (!f->order) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < f->n; i++) f->order[i] = i;
    g_sort_f = f;
    qsort(f->order, (size_t)f->n, sizeof(int), cmp_name);
    *out = f;
    return RSMOE_OK;
fail:
    rs_features_close(f);
    return st;
}

void rs_features_close(rs_features *f) {
    if (!f) return;
    rs_gguf_close(f->g);
    free(f->order);
    free(f);
}

int rs_features_count(const rs_features *f) { return f->n; }
int rs_features_tokens(const rs_features *f) { return f->tokens; }
int rs_features_width(const rs_features *f) { return f->width; }
int rs_features_view(const rs_features *f) { return f->view; }

const char *rs_features_name(const rs_features *f, int i) {
    size_t l;
    return i >= 0 && i < f->n ? rs_gguf_arr_str(f->g, f->kv_names, i, &l) : NULL;
}

int rs_features_find(const rs_features *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(rs_features_name(f, f->order[mid]), name);
        if (!c) return f->order[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

void rs_features_get(const rs_features *f, int i, float *out) {
    size_t per = (size_t)f->tokens * f->width;
    rs_row_to_f32(RS_F16, (const uint16_t *)f->t->data + per * (size_t)i, out, (int64_t)per);
}
