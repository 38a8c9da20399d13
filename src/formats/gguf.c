/* gguf.c - GGUF v3 reader (mmap, zero-copy, every field validated) and atomic writer.
 * The policy (what is refused and why) is documented in gguf.h. */
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_KEY 65535u
#define GGUF_MAX_ALIGN ((uint64_t)1 << 20)
#define GGUF_MAX_DIM ((uint64_t)1 << 40)   /* as rs_tensor_init */

/* ---------------------------------------------------------------- types */
const char *rs_gguf_type_name(int type) {
    static const char *names[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return type >= 0 && type <= RS_GGUF_F64 ? names[type] : "?";
}

size_t rs_gguf_type_size(int type) {
    switch (type) {
    case RS_GGUF_U8: case RS_GGUF_I8: case RS_GGUF_BOOL: return 1;
    case RS_GGUF_U16: case RS_GGUF_I16: return 2;
    case RS_GGUF_U32: case RS_GGUF_I32: case RS_GGUF_F32: return 4;
    case RS_GGUF_U64: case RS_GGUF_I64: case RS_GGUF_F64: return 8;
    }
    return 0;
}

static bool is_int_type(int t) {
    return t == RS_GGUF_U8 || t == RS_GGUF_I8 || t == RS_GGUF_U16 || t == RS_GGUF_I16 ||
           t == RS_GGUF_U32 || t == RS_GGUF_I32 || t == RS_GGUF_U64 || t == RS_GGUF_I64;
}
static bool is_signed_type(int t) {
    return t == RS_GGUF_I8 || t == RS_GGUF_I16 || t == RS_GGUF_I32 || t == RS_GGUF_I64;
}

static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ---------------------------------------------------------------- reader state */
typedef struct { size_t off, len; } gstr;   /* a NUL-terminated copy in the pool */

typedef struct {
    size_t key;        /* index into strs */
    int type, arr_type;
    int64_t n;         /* array length (1 for scalars and strings) */
    size_t val_off;    /* file offset of a scalar value or of numeric array data */
    size_t str0;       /* index into strs of the string value / first array string */
} gkv;

struct rs_gguf {
    char *path;
    const uint8_t *base;
    size_t size;
    void *map;          /* mmap'd region (NULL for open_memory) */
    uint32_t version;
    size_t alignment, data_off;
    int64_t n_kv, n_tensors;
    gkv *kv;
    int64_t *kv_sorted;     /* kv indices sorted by key */
    rs_tensor *t;
    uint64_t *t_off;
    int64_t *t_sorted;      /* tensor indices sorted by name */
    char *pool;
    size_t pool_len, pool_cap;
    gstr *strs;
    size_t n_strs, cap_strs;
};

static rsmoe_status gfail(const rs_gguf *g, rsmoe_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rsmoe_status gfail(const rs_gguf *g, rsmoe_status st, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rs_error(st, "%s: %s", g && g->path ? g->path : "gguf", msg);
}

typedef struct { rs_gguf *g; size_t pos; } rd;

static size_t rd_left(const rd *r) { return r->g->size - r->pos; }

static rsmoe_status rd_need(rd *r, uint64_t n, const char *what) {
    if (n > rd_left(r))
        return gfail(r->g, RSMOE_ERR_FORMAT,
                     "truncated: %s needs %llu bytes at offset %zu, only %zu left", what,
                     (unsigned long long)n, r->pos, rd_left(r));
    return RSMOE_OK;
}
static rsmoe_status rd_u32(rd *r, uint32_t *v, const char *what) {
    rsmoe_status st = rd_need(r, 4, what);
    if (st) return st;
    *v = le32(r->g->base + r->pos);
    r->pos += 4;
    return RSMOE_OK;
}
static rsmoe_status rd_u64(rd *r, uint64_t *v, const char *what) {
    rsmoe_status st = rd_need(r, 8, what);
    if (st) return st;
    *v = le64(r->g->base + r->pos);
    r->pos += 8;
    return RSMOE_OK;
}

/* Reads a string and copies it into the pool; *idx = its index in strs. */
static rsmoe_status rd_str(rd *r, size_t *idx, const char *what) {
    rs_gguf *g = r->g;
    uint64_t len;
    rsmoe_status st = rd_u64(r, &len, what);
    if (st) return st;
    if (len > RS_GGUF_MAX_STRING)
        return gfail(g, RSMOE_ERR_FORMAT, "%s: string length %llu at offset %zu exceeds the 1 GiB cap",
                     what, (unsigned long long)len, r->pos - 8);
    if ((st = rd_need(r, len, what))) return st;
    if (g->n_strs == g->cap_strs) {
        size_t cap = g->cap_strs ? g->cap_strs * 2 : 64;
        gstr *s = realloc(g->strs, cap * sizeof *s);
        if (!s) return gfail(g, RSMOE_ERR_NOMEM, "out of memory for %zu strings", cap);
        g->strs = s;
        g->cap_strs = cap;
    }
    if (g->pool_cap - g->pool_len < len + 1) {
        /* total pool <= file size + one NUL per string: both bounded, no overflow */
        size_t cap = g->pool_cap ? g->pool_cap : 4096;
        while (cap - g->pool_len < len + 1) cap *= 2;
        char *p = realloc(g->pool, cap);
        if (!p) return gfail(g, RSMOE_ERR_NOMEM, "out of memory for %zu bytes of strings", cap);
        g->pool = p;
        g->pool_cap = cap;
    }
    memcpy(g->pool + g->pool_len, g->base + r->pos, (size_t)len);
    g->pool[g->pool_len + len] = 0;
    g->strs[g->n_strs] = (gstr){g->pool_len, (size_t)len};
    *idx = g->n_strs++;
    g->pool_len += (size_t)len + 1;
    r->pos += (size_t)len;
    return RSMOE_OK;
}

static const char *gs(const rs_gguf *g, size_t idx) { return g->pool + g->strs[idx].off; }
static size_t gslen(const rs_gguf *g, size_t idx) { return g->strs[idx].len; }

/* --- sorting helpers (qsort has no context argument in C11: use a file-static) */
static _Thread_local const rs_gguf *g_sort_ctx;
static int cmp_kv_key(const void *a, const void *b) {
    const rs_gguf *g = g_sort_ctx;
    return strcmp(gs(g, g->kv[*(const int64_t *)a].key), gs(g, g->kv[*(const int64_t *)b].key));
}
static int cmp_t_name(const void *a, const void *b) {
    const rs_gguf *g = g_sort_ctx;
    return strcmp(g->t[*(const int64_t *)a].name, g->t[*(const int64_t *)b].name);
}
static int cmp_t_off(const void *a, const void *b) {
    const rs_gguf *g = g_sort_ctx;
    uint64_t x = g->t_off[*(const int64_t *)a], y = g->t_off[*(const int64_t *)b];
    return x < y ? -1 : x > y;
}

static rsmoe_status parse_kv(rd *r, int64_t i) {
    rs_gguf *g = r->g;
    gkv *kv = &g->kv[i];
    rsmoe_status st;
    size_t key_at = r->pos;
    if ((st = rd_str(r, &kv->key, "key"))) return st;
    const char *key = gs(g, kv->key);
    size_t klen = gslen(g, kv->key);
    if (klen == 0) return gfail(g, RSMOE_ERR_FORMAT, "kv %lld at offset %zu: empty key", (long long)i, key_at);
    if (klen > GGUF_MAX_KEY)
        return gfail(g, RSMOE_ERR_FORMAT, "kv %lld at offset %zu: key of %zu bytes (max %u)", (long long)i,
                     key_at, klen, GGUF_MAX_KEY);
    if (strlen(key) != klen)
        return gfail(g, RSMOE_ERR_FORMAT, "kv %lld at offset %zu: key contains a NUL byte", (long long)i, key_at);
    uint32_t type;
    if ((st = rd_u32(r, &type, "value type"))) return st;
    if (type > RS_GGUF_F64)
        return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s': unknown value type %u", key, type);
    kv->type = (int)type;
    kv->arr_type = -1;
    kv->n = 1;
    if (type == RS_GGUF_STRING) return rd_str(r, &kv->str0, key);
    if (type != RS_GGUF_ARRAY) {
        if ((st = rd_need(r, rs_gguf_type_size((int)type), key))) return st;
        kv->val_off = r->pos;
        if (type == RS_GGUF_BOOL && g->base[r->pos] > 1)
            return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s': bool value %u (must be 0 or 1)", key,
                         g->base[r->pos]);
        r->pos += rs_gguf_type_size((int)type);
        return RSMOE_OK;
    }
    uint32_t et;
    uint64_t n;
    if ((st = rd_u32(r, &et, "array element type"))) return st;
    if (et == RS_GGUF_ARRAY)
        return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s': nested arrays (array of arrays) are not supported", key);
    if (et > RS_GGUF_F64)
        return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s': unknown array element type %u", key, et);
    if ((st = rd_u64(r, &n, "array length"))) return st;
    kv->arr_type = (int)et;
    size_t esize = et == RS_GGUF_STRING ? 8 : rs_gguf_type_size((int)et); /* a string is >= 8 bytes */
    if (n > rd_left(r) / esize)
        return gfail(g, RSMOE_ERR_FORMAT,
                     "key '%.200s': array of %llu %s elements at offset %zu cannot fit in the %zu bytes left",
                     key, (unsigned long long)n, rs_gguf_type_name((int)et), r->pos - 12, rd_left(r));
    kv->n = (int64_t)n;
    if (et == RS_GGUF_STRING) {
        kv->str0 = g->n_strs;
        for (uint64_t j = 0; j < n; j++) {
            size_t idx;
            if ((st = rd_str(r, &idx, key))) return st;
        }
        return RSMOE_OK;
    }
    kv->val_off = r->pos;
    if (et == RS_GGUF_BOOL)
        for (uint64_t j = 0; j < n; j++)
            if (g->base[r->pos + j] > 1)
                return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s': bool element %llu is %u (must be 0 or 1)",
                             key, (unsigned long long)j, g->base[r->pos + j]);
    r->pos += (size_t)n * esize;
    return RSMOE_OK;
}

static rsmoe_status parse_tensor_info(rd *r, int64_t i) {
    rs_gguf *g = r->g;
    rsmoe_status st;
    size_t at = r->pos, idx;
    if ((st = rd_str(r, &idx, "tensor name"))) return st;
    const char *name = gs(g, idx);
    size_t len = gslen(g, idx);
    if (len == 0) return gfail(g, RSMOE_ERR_FORMAT, "tensor %lld at offset %zu: empty name", (long long)i, at);
    if (len >= RS_NAME_MAX)
        return gfail(g, RSMOE_ERR_FORMAT, "tensor %lld at offset %zu: name of %zu bytes (max %d)", (long long)i,
                     at, len, RS_NAME_MAX - 1);
    if (strlen(name) != len)
        return gfail(g, RSMOE_ERR_FORMAT, "tensor %lld at offset %zu: name contains a NUL byte", (long long)i, at);
    uint32_t nd, type;
    if ((st = rd_u32(r, &nd, "tensor n_dims"))) return st;
    if (nd < 1 || nd > RS_MAX_DIMS)
        return gfail(g, RSMOE_ERR_FORMAT, "tensor '%s': n_dims %u (1..%d allowed)", name, nd, RS_MAX_DIMS);
    int64_t ne[RS_MAX_DIMS];
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        if ((st = rd_u64(r, &v, "tensor dimension"))) return st;
        if (v == 0 || v > GGUF_MAX_DIM)
            return gfail(g, RSMOE_ERR_FORMAT, "tensor '%s': dimension %u is %llu (1..2^40 allowed)", name, d,
                         (unsigned long long)v);
        ne[d] = (int64_t)v;
    }
    if ((st = rd_u32(r, &type, "tensor type"))) return st;
    if (!rs_dtype_valid((int)type))
        return gfail(g, RSMOE_ERR_UNSUPPORTED,
                     "unsupported tensor type %u (%s); supported: f32, f16, q8_0, bf16", type, name);
    if ((st = rd_u64(r, &g->t_off[i], "tensor offset"))) return st;
    if (rs_tensor_init(&g->t[i], name, (rs_dtype)type, (int)nd, ne, NULL)) {
        char why[512];
        snprintf(why, sizeof why, "%s", rsmoe_last_error());
        return gfail(g, RSMOE_ERR_FORMAT, "%s", why);
    }
    return RSMOE_OK;
}

static rsmoe_status parse(rs_gguf *g) {
    rd r = {g, 0};
    rsmoe_status st;
    if ((st = rd_need(&r, 4, "magic"))) return st;
    if (memcmp(g->base, "GGUF", 4)) {
        const uint8_t *m = g->base;
        return gfail(g, RSMOE_ERR_FORMAT, "not a GGUF file (magic %02x %02x %02x %02x, expected 'GGUF')",
                     m[0], m[1], m[2], m[3]);
    }
    r.pos = 4;
    uint32_t ver;
    if ((st = rd_u32(&r, &ver, "version"))) return st;
    if (ver == 1 || ver == 2)
        return gfail(g, RSMOE_ERR_UNSUPPORTED, "GGUF version %u is not supported (only version 3)", ver);
    if (ver == 0x03000000u)
        return gfail(g, RSMOE_ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
    if (ver != 3) return gfail(g, RSMOE_ERR_FORMAT, "bad GGUF version %u (expected 3)", ver);
    g->version = ver;
    uint64_t nt, nkv;
    if ((st = rd_u64(&r, &nt, "tensor count"))) return st;
    if ((st = rd_u64(&r, &nkv, "kv count"))) return st;
    /* a kv takes >= 14 bytes (key len 8 + key 1 + type 4 + value 1), a tensor info
     * >= 33 (name len 8 + name 1 + n_dims 4 + dim 8 + type 4 + offset 8) */
    size_t left = rd_left(&r);
    if (nkv > left / 14 || nt > left / 33 || nkv * 14 + nt * 33 > left)
        return gfail(g, RSMOE_ERR_FORMAT,
                     "%llu kv pairs and %llu tensors cannot fit in a file of %zu bytes",
                     (unsigned long long)nkv, (unsigned long long)nt, g->size);
    g->n_kv = (int64_t)nkv;
    g->n_tensors = (int64_t)nt;
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->kv_sorted = malloc((nkv ? nkv : 1) * sizeof *g->kv_sorted);
    g->t = calloc(nt ? nt : 1, sizeof *g->t);
    g->t_off = calloc(nt ? nt : 1, sizeof *g->t_off);
    g->t_sorted = malloc((nt ? nt : 1) * sizeof *g->t_sorted);
    if (!g->kv || !g->kv_sorted || !g->t || !g->t_off || !g->t_sorted)
        return gfail(g, RSMOE_ERR_NOMEM, "out of memory for %llu kv pairs and %llu tensors",
                     (unsigned long long)nkv, (unsigned long long)nt);
    for (int64_t i = 0; i < g->n_kv; i++)
        if ((st = parse_kv(&r, i))) return st;
    for (int64_t i = 0; i < g->n_kv; i++) g->kv_sorted[i] = i;
    g_sort_ctx = g;
    qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, cmp_kv_key);
    for (int64_t i = 1; i < g->n_kv; i++)
        if (!strcmp(gs(g, g->kv[g->kv_sorted[i]].key), gs(g, g->kv[g->kv_sorted[i - 1]].key)))
            return gfail(g, RSMOE_ERR_FORMAT, "duplicate key '%.200s'", gs(g, g->kv[g->kv_sorted[i]].key));

    g->alignment = RS_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = rs_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        if (g->kv[ai].type != RS_GGUF_U32)
            return gfail(g, RSMOE_ERR_FORMAT, "general.alignment is a %s (must be u32)",
                         rs_gguf_type_name(g->kv[ai].type));
        uint32_t a = le32(g->base + g->kv[ai].val_off);
        if (a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGN)
            return gfail(g, RSMOE_ERR_FORMAT, "general.alignment %u is not a power of two in [1, 2^20]", a);
        g->alignment = a;
    }

    for (int64_t i = 0; i < g->n_tensors; i++)
        if ((st = parse_tensor_info(&r, i))) return st;

    /* data section: starts at the next multiple of the alignment (pos <= size < 2^63) */
    size_t al = g->alignment;
    g->data_off = (r.pos + al - 1) / al * al;
    if (g->n_tensors == 0) return RSMOE_OK;
    if (g->data_off > g->size)
        return gfail(g, RSMOE_ERR_FORMAT, "truncated: tensor data section starts at %zu, past the end (%zu bytes)",
                     g->data_off, g->size);
    size_t data_size = g->size - g->data_off;
    size_t palign = al < 64 ? al : 64;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        rs_tensor *t = &g->t[i];
        uint64_t off = g->t_off[i];
        size_t nb = rs_tensor_nbytes(t);
        if (off % al)
            return gfail(g, RSMOE_ERR_FORMAT, "tensor '%s': offset %llu is not a multiple of the alignment %zu",
                         t->name, (unsigned long long)off, al);
        if (off > data_size || nb > data_size - off)
            return gfail(g, RSMOE_ERR_FORMAT,
                         "tensor '%s': data [%llu, +%zu) runs past the end of the file (data section of %zu bytes)",
                         t->name, (unsigned long long)off, nb, data_size);
        const uint8_t *p = g->base + g->data_off + off;
        if ((uintptr_t)p % palign)
            return gfail(g, RSMOE_ERR_INVALID_ARG, "tensor '%s': data address not %zu-byte aligned (buffer misaligned)",
                         t->name, palign);
        t->data = (void *)p; /* read-only mapping: documented */
    }
    for (int64_t i = 0; i < g->n_tensors; i++) g->t_sorted[i] = i;
    qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, cmp_t_off);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        int64_t a = g->t_sorted[i - 1], b = g->t_sorted[i];
        if (g->t_off[a] + rs_tensor_nbytes(&g->t[a]) > g->t_off[b])
            return gfail(g, RSMOE_ERR_FORMAT, "tensors '%s' and '%s' overlap", g->t[a].name, g->t[b].name);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) g->t_sorted[i] = i;
    qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, cmp_t_name);
    for (int64_t i = 1; i < g->n_tensors; i++)
        if (!strcmp(g->t[g->t_sorted[i]].name, g->t[g->t_sorted[i - 1]].name))
            return gfail(g, RSMOE_ERR_FORMAT, "duplicate tensor name '%s'", g->t[g->t_sorted[i]].name);
    return RSMOE_OK;
}

static rs_gguf *gguf_alloc(const char *path) {
    rs_gguf *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->path = strdup(path);
    if (!g->path) { free(g); return NULL; }
    return g;
}

void rs_gguf_close(rs_gguf *g) {
    if (!g) return;
    if (g->map) munmap(g->map, g->size);
    free(g->path);
    free(g->kv);
    free(g->kv_sorted);
    free(g->t);
    free(g->t_off);
    free(g->t_sorted);
    free(g->pool);
    free(g->strs);
    free(g);
}

rsmoe_status rs_gguf_open_memory(const void *data, size_t size, rs_gguf **out) {
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_gguf_open_memory: NULL out");
    *out = NULL;
    if (!data && size) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_gguf_open_memory: NULL data");
    rs_gguf *g = gguf_alloc("<memory>");
    if (!g) return rs_error(RSMOE_ERR_NOMEM, "rs_gguf_open_memory: out of memory");
    g->base = data ? data : (const uint8_t *)"";
    g->size = size;
    rsmoe_status st = parse(g);
    if (st) { rs_gguf_close(g); return st; }
    *out = g;
    return RSMOE_OK;
}

rsmoe_status rs_gguf_open(const char *path, rs_gguf **out) {
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_gguf_open: NULL out");
    *out = NULL;
    if (!path) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_gguf_open: NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rs_error(RSMOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return rs_error(RSMOE_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return rs_error(RSMOE_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 24) {
        close(fd);
        return rs_error(RSMOE_ERR_FORMAT, "%s: truncated: %lld bytes, a GGUF header needs 24", path,
                        (long long)sb.st_size);
    }
    rs_gguf *g = gguf_alloc(path);
    if (!g) {
        close(fd);
        return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path);
    }
    g->size = (size_t)sb.st_size;
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        rs_gguf_close(g);
        return rs_error(RSMOE_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    }
    g->map = m;
    g->base = m;
    rsmoe_status st = parse(g);
    if (st) { rs_gguf_close(g); return st; }
    *out = g;
    return RSMOE_OK;
}

/* ---------------------------------------------------------------- reader accessors */
const char *rs_gguf_path(const rs_gguf *g) { return g->path; }
uint32_t rs_gguf_version(const rs_gguf *g) { return g->version; }
size_t rs_gguf_alignment(const rs_gguf *g) { return g->alignment; }
size_t rs_gguf_data_offset(const rs_gguf *g) { return g->data_off; }
size_t rs_gguf_file_size(const rs_gguf *g) { return g->size; }
int64_t rs_gguf_n_kv(const rs_gguf *g) { return g->n_kv; }
int64_t rs_gguf_n_tensors(const rs_gguf *g) { return g->n_tensors; }

static bool kv_ok(const rs_gguf *g, int64_t i) { return g && i >= 0 && i < g->n_kv; }

const char *rs_gguf_key(const rs_gguf *g, int64_t i) { return kv_ok(g, i) ? gs(g, g->kv[i].key) : NULL; }

int64_t rs_gguf_find_key(const rs_gguf *g, const char *key) {
    if (!g || !key) return -1;
    int64_t lo = 0, hi = g->n_kv - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2, k = g->kv_sorted[mid];
        int c = strcmp(key, gs(g, g->kv[k].key));
        if (!c) return k;
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return -1;
}

int rs_gguf_kv_type(const rs_gguf *g, int64_t i) { return kv_ok(g, i) ? g->kv[i].type : -1; }
int rs_gguf_arr_type(const rs_gguf *g, int64_t i) {
    return kv_ok(g, i) && g->kv[i].type == RS_GGUF_ARRAY ? g->kv[i].arr_type : -1;
}
int64_t rs_gguf_arr_n(const rs_gguf *g, int64_t i) {
    return kv_ok(g, i) && g->kv[i].type == RS_GGUF_ARRAY ? g->kv[i].n : -1;
}

rsmoe_status rs_gguf_kv_scalar(const rs_gguf *g, int64_t i, void *out) {
    if (!kv_ok(g, i)) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf: kv index %lld out of range", (long long)i);
    size_t sz = rs_gguf_type_size(g->kv[i].type);
    if (!sz)
        return gfail(g, RSMOE_ERR_INVALID_ARG, "key '%.200s' is a %s, not a scalar", gs(g, g->kv[i].key),
                     rs_gguf_type_name(g->kv[i].type));
    memcpy(out, g->base + g->kv[i].val_off, sz);
    return RSMOE_OK;
}

const char *rs_gguf_kv_str(const rs_gguf *g, int64_t i, size_t *len) {
    if (!kv_ok(g, i) || g->kv[i].type != RS_GGUF_STRING) return NULL;
    if (len) *len = gslen(g, g->kv[i].str0);
    return gs(g, g->kv[i].str0);
}

/* integer value of kv k as a sign flag plus magnitude-preserving 64-bit forms */
static void kv_int(const rs_gguf *g, int64_t k, int64_t *sv, uint64_t *uv, bool *neg) {
    const uint8_t *p = g->base + g->kv[k].val_off;
    int t = g->kv[k].type;
    int64_t s = 0;
    uint64_t u = 0;
    switch (t) {
    case RS_GGUF_U8: u = p[0]; break;
    case RS_GGUF_I8: s = (int8_t)p[0]; break;
    case RS_GGUF_U16: u = (uint16_t)(p[0] | p[1] << 8); break;
    case RS_GGUF_I16: s = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case RS_GGUF_U32: u = le32(p); break;
    case RS_GGUF_I32: s = (int32_t)le32(p); break;
    case RS_GGUF_U64: u = le64(p); break;
    case RS_GGUF_I64: s = (int64_t)le64(p); break;
    }
    if (is_signed_type(t)) {
        *neg = s < 0;
        *uv = s < 0 ? 0 : (uint64_t)s;
        *sv = s;
    } else {
        *neg = false;
        *uv = u;
        *sv = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
    }
}

/* finds key with an integer type; range-checks into [lo, hi] (signed) or [0, uhi] */
static rsmoe_status get_int(const rs_gguf *g, const char *key, bool want_signed, int64_t lo, int64_t hi,
                            uint64_t uhi, int64_t *sout, uint64_t *uout, const char *tname) {
    if (!g || !key) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf: NULL argument");
    int64_t k = rs_gguf_find_key(g, key);
    if (k < 0) return gfail(g, RSMOE_ERR_FORMAT, "missing key '%.200s'", key);
    if (!is_int_type(g->kv[k].type))
        return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s' is a %s, expected %s", key,
                     rs_gguf_type_name(g->kv[k].type), tname);
    int64_t sv;
    uint64_t uv;
    bool neg;
    kv_int(g, k, &sv, &uv, &neg);
    bool big_unsigned = !neg && !is_signed_type(g->kv[k].type) && uv > (uint64_t)INT64_MAX;
    if (want_signed) {
        if (big_unsigned || sv < lo || sv > hi)
            return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s' value out of range for %s", key, tname);
        *sout = sv;
    } else {
        if (neg || uv > uhi)
            return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s' value out of range for %s", key, tname);
        *uout = uv;
    }
    return RSMOE_OK;
}

rsmoe_status rs_gguf_get_u32(const rs_gguf *g, const char *key, uint32_t *out) {
    uint64_t v = 0;
    rsmoe_status st = get_int(g, key, false, 0, 0, UINT32_MAX, NULL, &v, "u32");
    if (!st) *out = (uint32_t)v;
    return st;
}
rsmoe_status rs_gguf_get_u64(const rs_gguf *g, const char *key, uint64_t *out) {
    return get_int(g, key, false, 0, 0, UINT64_MAX, NULL, out, "u64");
}
rsmoe_status rs_gguf_get_i32(const rs_gguf *g, const char *key, int32_t *out) {
    int64_t v = 0;
    rsmoe_status st = get_int(g, key, true, INT32_MIN, INT32_MAX, 0, &v, NULL, "i32");
    if (!st) *out = (int32_t)v;
    return st;
}
rsmoe_status rs_gguf_get_i64(const rs_gguf *g, const char *key, int64_t *out) {
    return get_int(g, key, true, INT64_MIN, INT64_MAX, 0, out, NULL, "i64");
}

static rsmoe_status find_typed(const rs_gguf *g, const char *key, int type, int64_t *k) {
    if (!g || !key) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf: NULL argument");
    *k = rs_gguf_find_key(g, key);
    if (*k < 0) return gfail(g, RSMOE_ERR_FORMAT, "missing key '%.200s'", key);
    if (g->kv[*k].type != type)
        return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s' is a %s, expected %s", key,
                     rs_gguf_type_name(g->kv[*k].type), rs_gguf_type_name(type));
    return RSMOE_OK;
}

rsmoe_status rs_gguf_get_f32(const rs_gguf *g, const char *key, float *out) {
    int64_t k = g && key ? rs_gguf_find_key(g, key) : -1;
    if (k >= 0 && g->kv[k].type == RS_GGUF_F64) {
        double d;
        uint64_t u = le64(g->base + g->kv[k].val_off);
        memcpy(&d, &u, 8);
        *out = (float)d;
        return RSMOE_OK;
    }
    rsmoe_status st = find_typed(g, key, RS_GGUF_F32, &k);
    if (st) return st;
    uint32_t u = le32(g->base + g->kv[k].val_off);
    memcpy(out, &u, 4);
    return RSMOE_OK;
}
rsmoe_status rs_gguf_get_bool(const rs_gguf *g, const char *key, bool *out) {
    int64_t k = -1;
    rsmoe_status st = find_typed(g, key, RS_GGUF_BOOL, &k);
    if (!st) *out = g->base[g->kv[k].val_off] != 0;
    return st;
}
rsmoe_status rs_gguf_get_str(const rs_gguf *g, const char *key, const char **out) {
    int64_t k = -1;
    rsmoe_status st = find_typed(g, key, RS_GGUF_STRING, &k);
    if (!st) *out = gs(g, g->kv[k].str0);
    return st;
}

/* The _or forms must not clobber a caller's pending error message: save and restore. */
#define GET_OR(T, fn)                                                        \
    T v = dflt;                                                              \
    char saved[1024];                                                        \
    snprintf(saved, sizeof saved, "%s", rsmoe_last_error());                 \
    if (fn(g, key, &v)) { v = dflt; rs_error(RSMOE_OK, "%s", saved); }       \
    return v;
uint32_t rs_gguf_get_u32_or(const rs_gguf *g, const char *key, uint32_t dflt) { GET_OR(uint32_t, rs_gguf_get_u32) }
int32_t rs_gguf_get_i32_or(const rs_gguf *g, const char *key, int32_t dflt) { GET_OR(int32_t, rs_gguf_get_i32) }
uint64_t rs_gguf_get_u64_or(const rs_gguf *g, const char *key, uint64_t dflt) { GET_OR(uint64_t, rs_gguf_get_u64) }
float rs_gguf_get_f32_or(const rs_gguf *g, const char *key, float dflt) { GET_OR(float, rs_gguf_get_f32) }
bool rs_gguf_get_bool_or(const rs_gguf *g, const char *key, bool dflt) { GET_OR(bool, rs_gguf_get_bool) }
const char *rs_gguf_get_str_or(const rs_gguf *g, const char *key, const char *dflt) {
    GET_OR(const char *, rs_gguf_get_str)
}

const char *rs_gguf_arr_str(const rs_gguf *g, int64_t i, int64_t j, size_t *len) {
    if (!kv_ok(g, i) || g->kv[i].type != RS_GGUF_ARRAY || g->kv[i].arr_type != RS_GGUF_STRING) return NULL;
    if (j < 0 || j >= g->kv[i].n) return NULL;
    size_t idx = g->kv[i].str0 + (size_t)j;
    if (len) *len = gslen(g, idx);
    return gs(g, idx);
}

const void *rs_gguf_arr_data(const rs_gguf *g, int64_t i, int *elem_type, int64_t *n) {
    if (!kv_ok(g, i) || g->kv[i].type != RS_GGUF_ARRAY || g->kv[i].arr_type == RS_GGUF_STRING) return NULL;
    if (elem_type) *elem_type = g->kv[i].arr_type;
    if (n) *n = g->kv[i].n;
    return g->base + g->kv[i].val_off;
}

rsmoe_status rs_gguf_arr_copy(const rs_gguf *g, int64_t i, int elem_type, void *dst, int64_t n) {
    if (!kv_ok(g, i)) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf: kv index %lld out of range", (long long)i);
    const char *key = gs(g, g->kv[i].key);
    if (g->kv[i].type != RS_GGUF_ARRAY || g->kv[i].arr_type != elem_type || elem_type == RS_GGUF_STRING)
        return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s' is a %s%s%s, expected an array of %s", key,
                     rs_gguf_type_name(g->kv[i].type), g->kv[i].type == RS_GGUF_ARRAY ? " of " : "",
                     g->kv[i].type == RS_GGUF_ARRAY ? rs_gguf_type_name(g->kv[i].arr_type) : "",
                     rs_gguf_type_name(elem_type));
    if (g->kv[i].n != n)
        return gfail(g, RSMOE_ERR_FORMAT, "key '%.200s' has %lld elements, expected %lld", key,
                     (long long)g->kv[i].n, (long long)n);
    if (n) memcpy(dst, g->base + g->kv[i].val_off, (size_t)n * rs_gguf_type_size(elem_type));
    return RSMOE_OK;
}

const rs_tensor *rs_gguf_tensor(const rs_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->t[i] : NULL;
}
rs_tensor *rs_gguf_tensor_mut(rs_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->t[i] : NULL;
}

void rs_gguf_release_pages(const rs_gguf *g, const void *p, size_t n) {
    if (!g || !g->map || !p || !n) return;
    const uintptr_t lo = (uintptr_t)g->map, hi = lo + g->size, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) / page * page, e = ((uintptr_t)p + n) / page * page;
    if (a < lo || e > hi || a >= e) return;
    (void)madvise((void *)a, e - a, MADV_DONTNEED); /* advice only: a failure changes nothing */
}

uint64_t rs_gguf_tensor_offset(const rs_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? g->t_off[i] : 0;
}

const rs_tensor *rs_gguf_find_tensor(const rs_gguf *g, const char *name) {
    if (!g || !name) return NULL;
    int64_t lo = 0, hi = g->n_tensors - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2, k = g->t_sorted[mid];
        int c = strcmp(name, g->t[k].name);
        if (!c) return &g->t[k];
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

/* ---------------------------------------------------------------- writer */
typedef struct {
    char *key;
    int type, arr_type;
    int64_t n;
    uint8_t *data;      /* scalar bytes, numeric array bytes, or concatenated string bytes */
    size_t data_len;
    size_t *lens;       /* string lengths (string value: 1; string array: n) */
} wkv;

struct rs_gguf_writer {
    wkv *kv;
    int64_t n_kv, cap_kv;
    rs_tensor *t;
    int64_t n_t, cap_t;
};

rs_gguf_writer *rs_gguf_writer_new(void) {
    rs_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) rs_error(RSMOE_ERR_NOMEM, "gguf writer: out of memory");
    return w;
}

static void wkv_free_payload(wkv *k) {
    free(k->data);
    free(k->lens);
    k->data = NULL;
    k->lens = NULL;
}

void rs_gguf_writer_free(rs_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        wkv_free_payload(&w->kv[i]);
        free(w->kv[i].key);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

/* Installs a new payload for key (taking ownership of data/lens, freed on failure). */
static rsmoe_status w_set(rs_gguf_writer *w, const char *key, int type, int arr_type, int64_t n,
                          uint8_t *data, size_t data_len, size_t *lens) {
    rsmoe_status st = RSMOE_OK;
    if (!w || !key) { st = rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: NULL argument"); goto fail; }
    size_t kl = strlen(key);
    if (kl == 0 || kl > GGUF_MAX_KEY) {
        st = rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: key length %zu (1..%u allowed)", kl, GGUF_MAX_KEY);
        goto fail;
    }
    wkv *k = NULL;
    for (int64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) { k = &w->kv[i]; break; }
    if (!k) {
        if (w->n_kv == w->cap_kv) {
            int64_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
            wkv *p = realloc(w->kv, (size_t)cap * sizeof *p);
            if (!p) { st = rs_error(RSMOE_ERR_NOMEM, "gguf writer: out of memory"); goto fail; }
            w->kv = p;
            w->cap_kv = cap;
        }
        char *kc = strdup(key);
        if (!kc) { st = rs_error(RSMOE_ERR_NOMEM, "gguf writer: out of memory"); goto fail; }
        k = &w->kv[w->n_kv++];
        memset(k, 0, sizeof *k);
        k->key = kc;
    }
    wkv_free_payload(k);
    k->type = type;
    k->arr_type = arr_type;
    k->n = n;
    k->data = data;
    k->data_len = data_len;
    k->lens = lens;
    return RSMOE_OK;
fail:
    free(data);
    free(lens);
    return st;
}

static uint8_t *dup_bytes(const void *p, size_t n) {
    uint8_t *d = malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

rsmoe_status rs_gguf_writer_set_scalar(rs_gguf_writer *w, const char *key, int type, const void *val) {
    size_t sz = rs_gguf_type_size(type);
    if (!sz) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: key '%.200s': %s is not a scalar type",
                             key ? key : "", rs_gguf_type_name(type));
    if (!val) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: NULL value");
    if (type == RS_GGUF_BOOL && *(const uint8_t *)val > 1)
        return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: bool value must be 0 or 1");
    uint8_t *d = dup_bytes(val, sz);
    if (!d) return rs_error(RSMOE_ERR_NOMEM, "gguf writer: out of memory");
    return w_set(w, key, type, -1, 1, d, sz, NULL);
}
rsmoe_status rs_gguf_writer_set_u32(rs_gguf_writer *w, const char *key, uint32_t v) {
    return rs_gguf_writer_set_scalar(w, key, RS_GGUF_U32, &v);
}
rsmoe_status rs_gguf_writer_set_i32(rs_gguf_writer *w, const char *key, int32_t v) {
    return rs_gguf_writer_set_scalar(w, key, RS_GGUF_I32, &v);
}
rsmoe_status rs_gguf_writer_set_u64(rs_gguf_writer *w, const char *key, uint64_t v) {
    return rs_gguf_writer_set_scalar(w, key, RS_GGUF_U64, &v);
}
rsmoe_status rs_gguf_writer_set_i64(rs_gguf_writer *w, const char *key, int64_t v) {
    return rs_gguf_writer_set_scalar(w, key, RS_GGUF_I64, &v);
}
rsmoe_status rs_gguf_writer_set_f32(rs_gguf_writer *w, const char *key, float v) {
    return rs_gguf_writer_set_scalar(w, key, RS_GGUF_F32, &v);
}
rsmoe_status rs_gguf_writer_set_bool(rs_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return rs_gguf_writer_set_scalar(w, key, RS_GGUF_BOOL, &b);
}
rsmoe_status rs_gguf_writer_set_strn(rs_gguf_writer *w, const char *key, const char *s, size_t len) {
    if (!s && len) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: NULL string");
    if (len > RS_GGUF_MAX_STRING) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: string too long");
    uint8_t *d = dup_bytes(s, len);
    size_t *l = malloc(sizeof *l);
    if (!d || !l) {
        free(d);
        free(l);
        return rs_error(RSMOE_ERR_NOMEM, "gguf writer: out of memory");
    }
    *l = len;
    return w_set(w, key, RS_GGUF_STRING, -1, 1, d, len, l);
}
rsmoe_status rs_gguf_writer_set_str(rs_gguf_writer *w, const char *key, const char *s) {
    if (!s) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: NULL string");
    return rs_gguf_writer_set_strn(w, key, s, strlen(s));
}

rsmoe_status rs_gguf_writer_set_arr_str(rs_gguf_writer *w, const char *key, const char *const *s,
                                        const size_t *lens, int64_t n) {
    if (n < 0 || (n && !s)) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: bad string array");
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!s[i]) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: NULL string %lld", (long long)i);
        size_t l = lens ? lens[i] : strlen(s[i]);
        if (l > RS_GGUF_MAX_STRING) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: string too long");
        total += l;
    }
    uint8_t *d = malloc(total ? total : 1);
    size_t *ls = malloc((size_t)(n ? n : 1) * sizeof *ls);
    if (!d || !ls) {
        free(d);
        free(ls);
        return rs_error(RSMOE_ERR_NOMEM, "gguf writer: out of memory");
    }
    size_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        ls[i] = lens ? lens[i] : strlen(s[i]);
        memcpy(d + at, s[i], ls[i]);
        at += ls[i];
    }
    return w_set(w, key, RS_GGUF_ARRAY, RS_GGUF_STRING, n, d, total, ls);
}

rsmoe_status rs_gguf_writer_set_arr_data(rs_gguf_writer *w, const char *key, int elem_type,
                                         const void *data, int64_t n) {
    size_t sz = rs_gguf_type_size(elem_type);
    if (!sz)
        return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: %s is not a numeric element type",
                        rs_gguf_type_name(elem_type));
    if (n < 0 || (n && !data) || (uint64_t)n > SIZE_MAX / 8)
        return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: bad array");
    if (elem_type == RS_GGUF_BOOL)
        for (int64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: bool element must be 0 or 1");
    uint8_t *d = dup_bytes(data, (size_t)n * sz);
    if (!d) return rs_error(RSMOE_ERR_NOMEM, "gguf writer: out of memory");
    return w_set(w, key, RS_GGUF_ARRAY, elem_type, n, d, (size_t)n * sz, NULL);
}

rsmoe_status rs_gguf_writer_add_tensor(rs_gguf_writer *w, const rs_tensor *t) {
    if (!w || !t) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: NULL argument");
    size_t nl = strnlen(t->name, RS_NAME_MAX);
    if (nl == 0 || nl >= RS_NAME_MAX)
        return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: tensor name empty or too long");
    if (!rs_dtype_valid((int)t->type))
        return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: tensor '%s': unsupported type %d", t->name,
                        (int)t->type);
    if (!t->data) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: tensor '%s' has no data", t->name);
    rs_tensor chk;
    if (rs_tensor_init(&chk, t->name, t->type, t->ndim, t->ne, t->data)) return RSMOE_ERR_INVALID_ARG;
    if (memcmp(chk.nb, t->nb, sizeof chk.nb))
        return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: tensor '%s' is not contiguous", t->name);
    for (int64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, t->name))
            return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: duplicate tensor name '%s'", t->name);
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? w->cap_t * 2 : 16;
        rs_tensor *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return rs_error(RSMOE_ERR_NOMEM, "gguf writer: out of memory");
        w->t = p;
        w->cap_t = cap;
    }
    w->t[w->n_t++] = chk;
    return RSMOE_OK;
}

typedef struct { FILE *f; int err; uint64_t pos; } wout;

static void wbytes(wout *o, const void *p, size_t n) {
    if (o->err || !n) return;
    if (fwrite(p, 1, n, o->f) != n) o->err = errno ? errno : EIO;
    o->pos += n;
}
static void wu32(wout *o, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wbytes(o, b, 4);
}
static void wu64(wout *o, uint64_t v) {
    wu32(o, (uint32_t)v);
    wu32(o, (uint32_t)(v >> 32));
}
static void wstr(wout *o, const void *s, size_t n) {
    wu64(o, n);
    wbytes(o, s, n);
}
static void wpad(wout *o, size_t align) {
    static const uint8_t zeros[64];
    size_t pad = (size_t)((align - o->pos % align) % align);
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        wbytes(o, zeros, k);
        pad -= k;
    }
}

/* Writes scalars in little-endian order whatever the host (this build targets x86, where
 * it is a plain copy, but keep the file format explicit). */
static void wscalars(wout *o, const uint8_t *d, size_t sz, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = d + (size_t)i * sz;
        if (sz == 1) wbytes(o, p, 1);
        else if (sz == 2) { uint16_t v; memcpy(&v, p, 2); uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; wbytes(o, b, 2); }
        else if (sz == 4) { uint32_t v; memcpy(&v, p, 4); wu32(o, v); }
        else { uint64_t v; memcpy(&v, p, 8); wu64(o, v); }
    }
}

rsmoe_status rs_gguf_writer_write(rs_gguf_writer *w, const char *path) {
    if (!w || !path) return rs_error(RSMOE_ERR_INVALID_ARG, "gguf writer: NULL argument");
    size_t align = RS_GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment")) continue;
        uint32_t a = 0;
        if (w->kv[i].type == RS_GGUF_U32) memcpy(&a, w->kv[i].data, 4);
        if (w->kv[i].type != RS_GGUF_U32 || a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGN)
            return rs_error(RSMOE_ERR_INVALID_ARG,
                            "%s: general.alignment must be a u32 power of two in [1, 2^20]", path);
        align = a;
    }
    uint64_t *offs = malloc((size_t)(w->n_t ? w->n_t : 1) * sizeof *offs);
    if (!offs) return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path);
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        offs[i] = off;
        off += (rs_tensor_nbytes(&w->t[i]) + align - 1) / align * align;
    }

    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) { free(offs); return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path); }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(offs);
        free(tmp);
        return rs_error(RSMOE_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    wout o = {fdopen(fd, "wb"), 0, 0};
    if (!o.f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(offs);
        free(tmp);
        return rs_error(RSMOE_ERR_IO, "%s: fdopen: %s", path, strerror(e));
    }
    errno = 0;
    wbytes(&o, "GGUF", 4);
    wu32(&o, 3);
    wu64(&o, (uint64_t)w->n_t);
    wu64(&o, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        const wkv *k = &w->kv[i];
        wstr(&o, k->key, strlen(k->key));
        wu32(&o, (uint32_t)k->type);
        if (k->type == RS_GGUF_STRING) {
            wstr(&o, k->data, k->lens[0]);
        } else if (k->type == RS_GGUF_ARRAY) {
            wu32(&o, (uint32_t)k->arr_type);
            wu64(&o, (uint64_t)k->n);
            if (k->arr_type == RS_GGUF_STRING) {
                size_t at = 0;
                for (int64_t j = 0; j < k->n; j++) {
                    wstr(&o, k->data + at, k->lens[j]);
                    at += k->lens[j];
                }
            } else {
                wscalars(&o, k->data, rs_gguf_type_size(k->arr_type), k->n);
            }
        } else {
            wscalars(&o, k->data, rs_gguf_type_size(k->type), 1);
        }
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        const rs_tensor *t = &w->t[i];
        wstr(&o, t->name, strlen(t->name));
        wu32(&o, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) wu64(&o, (uint64_t)t->ne[d]);
        wu32(&o, (uint32_t)t->type);
        wu64(&o, offs[i]);
    }
    wpad(&o, align);
    for (int64_t i = 0; i < w->n_t; i++) {
        wbytes(&o, w->t[i].data, rs_tensor_nbytes(&w->t[i]));
        wpad(&o, align);
    }
    if (!o.err && fflush(o.f) != 0) o.err = errno ? errno : EIO;
    if (!o.err && fsync(fileno(o.f)) != 0) o.err = errno ? errno : EIO;
    if (fclose(o.f) != 0 && !o.err) o.err = errno ? errno : EIO;
    free(offs);
    if (o.err) {
        unlink(tmp);
        free(tmp);
        return rs_error(RSMOE_ERR_IO, "%s: write failed: %s", path, strerror(o.err));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return rs_error(RSMOE_ERR_IO, "%s: rename from temporary file failed: %s", path, strerror(e));
    }
    free(tmp);
    /* make the rename durable: fsync the directory (best effort) */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = ".";
        if (slash) {
            if (slash == dir) slash[1] = 0; else *slash = 0;
            d = dir;
        }
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    return RSMOE_OK;
}
