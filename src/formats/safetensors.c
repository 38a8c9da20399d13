/* safetensors.c - see safetensors.h */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *path;
    uint8_t *map;
    size_t size;
} st_file;

struct rs_safetensors {
    char *path;
    st_file *files;
    int n_files;
    rs_st_tensor *t;
    int64_t n, cap;
    int64_t *order; /* indices sorted by name, for lookup */
};

static const struct { const char *name; size_t size; } k_dt[] = {
    [RS_ST_F32] = {"F32", 4}, [RS_ST_F16] = {"F16", 2}, [RS_ST_BF16] = {"BF16", 2}, [RS_ST_F64] = {"F64", 8},
    [RS_ST_I64] = {"I64", 8}, [RS_ST_I32] = {"I32", 4}, [RS_ST_I16] = {"I16", 2}, [RS_ST_I8] = {"I8", 1},
    [RS_ST_U8] = {"U8", 1},   [RS_ST_U16] = {"U16", 2}, [RS_ST_U32] = {"U32", 4}, [RS_ST_U64] = {"U64", 8},
    [RS_ST_BOOL] = {"BOOL", 1}, [RS_ST_F8_E4M3] = {"F8_E4M3", 1}, [RS_ST_F8_E5M2] = {"F8_E5M2", 1},
};
#define N_DT ((int)(sizeof k_dt / sizeof k_dt[0]))

const char *rs_st_dtype_name(rs_st_dtype t) { return (int)t >= 0 && (int)t < N_DT ? k_dt[t].name : "?"; }

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void rs_st_close(rs_safetensors *s) {
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) {
        if (s->files[i].map && s->files[i].size) munmap(s->files[i].map, s->files[i].size);
        free(s->files[i].path);
    }
    for (int64_t i = 0; i < s->n; i++) free(s->t[i].name);
    free(s->files);
    free(s->t);
    free(s->order);
    free(s->path);
    free(s);
}

int64_t rs_st_n_tensors(const rs_safetensors *s) { return s->n; }
const rs_st_tensor *rs_st_tensor_at(const rs_safetensors *s, int64_t i) { return i >= 0 && i < s->n ? &s->t[i] : NULL; }
const char *rs_st_file_path(const rs_safetensors *s, int f) { return f >= 0 && f < s->n_files ? s->files[f].path : NULL; }
const char *rs_st_path(const rs_safetensors *s) { return s->path; }

static int cmp_name(const void *a, const void *b, void *ctx) {
    const rs_safetensors *s = ctx;
    return strcmp(s->t[*(const int64_t *)a].name, s->t[*(const int64_t *)b].name);
}

const rs_st_tensor *rs_st_find(const rs_safetensors *s, const char *name) {
    int64_t lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        int c = strcmp(s->t[s->order[mid]].name, name);
        if (!c) return &s->t[s->order[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

typedef struct { uint64_t b, e; int64_t i; } span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b ? 1 : x->e < y->e ? -1 : x->e > y->e;
}

/* maps one file and appends its tensors */
static rsmoe_status add_file(rs_safetensors *s, const char *path) {
    st_file *nf = realloc(s->files, sizeof *nf * (size_t)(s->n_files + 1));
    if (!nf) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    s->files = nf;
    int fi = s->n_files++;
    st_file *f = &s->files[fi];
    memset(f, 0, sizeof *f);
    if (!(f->path = xstrdup(path))) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rs_error(RSMOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) { close(fd); return rs_error(RSMOE_ERR_IO, "%s: not a regular file", path); }
    f->size = (size_t)sb.st_size;
    if (f->size < 8) {
        close(fd);
        return rs_error(RSMOE_ERR_FORMAT, "%s: truncated safetensors file (%zu bytes, no header length)", path, f->size);
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) { f->size = 0; return rs_error(RSMOE_ERR_IO, "%s: mmap failed: %s", path, strerror(errno)); }
    f->map = m;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f->map[i];
    if (hl > RS_ST_MAX_HEADER)
        return rs_error(RSMOE_ERR_FORMAT, "%s: header of %llu bytes is over the sane limit (%llu): not a safetensors file?",
                        path, (unsigned long long)hl, (unsigned long long)RS_ST_MAX_HEADER);
    if (hl < 2 || hl > f->size - 8)
        return rs_error(RSMOE_ERR_FORMAT, "%s: truncated: header of %llu bytes but the file has %zu", path,
                        (unsigned long long)hl, f->size);
    const uint8_t *data = f->map + 8 + hl;
    uint64_t dsize = f->size - 8 - hl;
    cJSON *root = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)hl);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rs_error(RSMOE_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    rsmoe_status st = RSMOE_OK;
    int64_t first = s->n;
    for (cJSON *e = root->child; e; e = e->next) {
        if (!e->string) continue;
        if (!strcmp(e->string, "__metadata__")) continue;
        if (!e->string[0] || strlen(e->string) > 1000) { st = rs_error(RSMOE_ERR_FORMAT, "%s: bad tensor name", path); break; }
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *sh = cJSON_GetObjectItemCaseSensitive(e, "shape"),
                    *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s: needs dtype, shape and data_offsets [begin, end]", path, e->string);
            break;
        }
        if (s->n == s->cap) {
            int64_t nc = s->cap ? s->cap * 2 : 256;
            rs_st_tensor *nt = realloc(s->t, sizeof *nt * (size_t)nc);
            if (!nt) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); break; }
            s->t = nt;
            s->cap = nc;
        }
        rs_st_tensor *t = &s->t[s->n];
        memset(t, 0, sizeof *t);
        int d = -1;
        for (int k = 0; k < N_DT; k++)
            if (!strcmp(dt->valuestring, k_dt[k].name)) d = k;
        if (d < 0) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s: unknown dtype '%s'", path, e->string, dt->valuestring);
            break;
        }
        t->dtype = (rs_st_dtype)d;
        t->ndim = cJSON_GetArraySize(sh);
        if (t->ndim > RS_ST_MAX_DIMS) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s: %d dims (at most %d)", path, e->string, t->ndim, RS_ST_MAX_DIMS);
            break;
        }
        uint64_t n = 1;
        int k = 0;
        bool bad = false;
        for (const cJSON *x = sh->child; x; x = x->next, k++) {
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9.0e15 ||
                x->valuedouble != (double)(int64_t)x->valuedouble) {
                bad = true;
                break;
            }
            t->shape[k] = (int64_t)x->valuedouble;
            if (t->shape[k] && n > (UINT64_MAX / 16) / (uint64_t)t->shape[k]) { bad = true; break; }
            n *= (uint64_t)t->shape[k];
        }
        if (bad) { st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s: bad shape", path, e->string); break; }
        const cJSON *b0 = of->child, *b1 = b0->next;
        if (!cJSON_IsNumber(b0) || !cJSON_IsNumber(b1) || b0->valuedouble < 0 || b1->valuedouble < b0->valuedouble ||
            b1->valuedouble > 1.8e19) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s: bad data_offsets", path, e->string);
            break;
        }
        uint64_t beg = (uint64_t)b0->valuedouble, end = (uint64_t)b1->valuedouble;
        if (end - beg != n * k_dt[d].size) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s: %llu bytes of data for %llu %s values", path, e->string,
                          (unsigned long long)(end - beg), (unsigned long long)n, k_dt[d].name);
            break;
        }
        if (end > dsize) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: truncated: tensor %s ends at byte %llu of the data but the file holds %llu",
                          path, e->string, (unsigned long long)end, (unsigned long long)dsize);
            break;
        }
        if (!(t->name = xstrdup(e->string))) { st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); break; }
        t->n = (int64_t)n;
        t->data = data + beg;
        t->nbytes = (size_t)(end - beg);
        t->file = fi;
        s->n++;
    }
    cJSON_Delete(root);
    if (st) return st;
    /* no overlaps within this file */
    int64_t m2 = s->n - first;
    if (m2 > 1) {
        span *sp = malloc(sizeof *sp * (size_t)m2);
        if (!sp) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < m2; i++) {
            const rs_st_tensor *t = &s->t[first + i];
            sp[i] = (span){(uint64_t)(t->data - data), (uint64_t)(t->data - data) + t->nbytes, first + i};
        }
        qsort(sp, (size_t)m2, sizeof *sp, cmp_span);
        for (int64_t i = 1; i < m2 && !st; i++)
            if (sp[i].b < sp[i - 1].e)
                st =
                    rs_error(RSMOE_ERR_FORMAT, "%s: tensors %s and %s overlap", path, s->t[sp[i - 1].i].name, s->t[sp[i].i].name);
        free(sp);
    }
    return st;
}

static rsmoe_status build_index(rs_safetensors *s) {
    s->order = malloc(sizeof *s->order * (size_t)(s->n ? s->n : 1));
    if (!s->order) return rs_error(RSMOE_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < s->n; i++) s->order[i] = i;
    qsort_r(s->order, (size_t)s->n, sizeof *s->order, cmp_name, s);
    for (int64_t i = 1; i < s->n; i++)
        if (!strcmp(s->t[s->order[i]].name, s->t[s->order[i - 1]].name))
            return rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s appears twice (in %s and %s)", s->path, s->t[s->order[i]].name,
                            s->files[s->t[s->order[i - 1]].file].path, s->files[s->t[s->order[i]].file].path);
    return RSMOE_OK;
}

static rsmoe_status open_index(rs_safetensors *s, const char *path) {
    rsmoe_status st;
    char *txt = rs_read_file(path, (size_t)256 << 20, NULL, &st);
    if (!txt) return st;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return rs_error(RSMOE_ERR_FORMAT, "%s: not a shard index (no weight_map object)", path);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) sl[1] = 0;
    else dir[0] = 0;
    st = RSMOE_OK;
    for (const cJSON *e = wm->child; e && !st; e = e->next) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || !e->valuestring[0]) {
            st = rs_error(RSMOE_ERR_FORMAT, "%s: bad shard name for tensor %s", path, e->string ? e->string : "?");
            break;
        }
        char fp[8192];
        snprintf(fp, sizeof fp, "%s%s", dir, e->valuestring);
        bool have = false;
        for (int i = 0; i < s->n_files; i++) have |= !strcmp(s->files[i].path, fp);
        if (!have) st = add_file(s, fp);
    }
    if (!st) st = build_index(s);
    for (const cJSON *e = wm->child; e && !st; e = e->next) {
        const rs_st_tensor *t = rs_st_find(s, e->string);
        if (!t || strcmp(strrchr(s->files[t->file].path, '/') ? strrchr(s->files[t->file].path, '/') + 1 : s->files[t->file].path,
                         e->valuestring))
            st = rs_error(RSMOE_ERR_FORMAT, "%s: tensor %s is listed in shard %s but that file does not hold it", path,
                          e->string, e->valuestring);
    }
    cJSON_Delete(root);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

rsmoe_status rs_st_open(const char *path, rs_safetensors **out) {
    *out = NULL;
    rs_safetensors *s = calloc(1, sizeof *s);
    if (!s || !(s->path = xstrdup(path))) { free(s); return rs_error(RSMOE_ERR_NOMEM, "out of memory"); }
    rsmoe_status st = RSMOE_OK;
    struct stat sb;
    size_t pl = strlen(path);
    if (stat(path, &sb)) {
        st = rs_error(RSMOE_ERR_IO, "%s: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        char p[8192];
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
        if (!access(p, R_OK)) st = open_index(s, p);
        else {
            snprintf(p, sizeof p, "%s/model.safetensors", path);
            if (!access(p, R_OK)) {
                if (!(st = add_file(s, p))) st = build_index(s);
            } else {
                DIR *d = opendir(path);
                char **names = NULL;
                int nn = 0;
                struct dirent *de;
                while (d && (de = readdir(d))) {
                    size_t l = strlen(de->d_name);
                    if (l > 12 && !strcmp(de->d_name + l - 12, ".safetensors")) {
                        char **nv = realloc(names, sizeof *nv * (size_t)(nn + 1));
                        if (!nv) break;
                        names = nv;
                        if (!(names[nn] = xstrdup(de->d_name))) break;
                        nn++;
                    }
                }
                if (d) closedir(d);
                if (nn) qsort(names, (size_t)nn, sizeof *names, cmp_str);
                if (!nn) st = rs_error(RSMOE_ERR_IO, "%s: no *.safetensors file in this directory", path);
                for (int i = 0; i < nn && !st; i++) {
                    snprintf(p, sizeof p, "%s/%s", path, names[i]);
                    st = add_file(s, p);
                }
                for (int i = 0; i < nn; i++) free(names[i]);
                free(names);
                if (!st) st = build_index(s);
            }
        }
    } else if (pl > 5 && !strcmp(path + pl - 5, ".json")) {
        st = open_index(s, path);
    } else {
        if (!(st = add_file(s, path))) st = build_index(s);
    }
    if (st) { rs_st_close(s); return st; }
    *out = s;
    return RSMOE_OK;
}

rsmoe_status rs_st_read_f32(const rs_st_tensor *t, int64_t first, int64_t n, float *dst) {
    if (first < 0 || n < 0 || first + n > t->n)
        return rs_error(RSMOE_ERR_INVALID_ARG, "tensor %s: elements [%lld, %lld) outside its %lld", t->name,
                        (long long)first, (long long)(first + n), (long long)t->n);
    switch (t->dtype) {
    case RS_ST_F32: memcpy(dst, t->data + 4 * first, sizeof(float) * (size_t)n); break;
    case RS_ST_F16:
    case RS_ST_BF16: {
        const uint8_t *p = t->data + 2 * first;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            dst[i] = t->dtype == RS_ST_F16 ? rs_f16_to_f32(h) : rs_bf16_to_f32(h);
        }
        break;
    }
    case RS_ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, t->data + 8 * (first + i), 8);
            dst[i] = (float)v;
        }
        break;
    default:
        return rs_error(RSMOE_ERR_UNSUPPORTED, "tensor %s: dtype %s is not a float type (F32, F16, BF16, F64)", t->name,
                        rs_st_dtype_name(t->dtype));
    }
    return RSMOE_OK;
}
