/* cmd_gguf.c - `rsmoe gguf FILE`: validate a GGUF file and dump its metadata and tensors. */
#include "cli.h"
#include "core/core.h"
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* prints a string quoted, control bytes escaped, cut after max bytes (0: no cut) */
static void print_str(const char *s, size_t len, size_t max) {
    size_t n = max && len > max ? max : len;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (n < len) printf("...(%zu bytes)", len);
}

static void print_scalar(int type, const void *p) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
            uint64_t u64; int64_t i64; double f64; } v;
    memcpy(&v, p, rs_gguf_type_size(type));
    switch (type) {
    case RS_GGUF_U8: printf("%u", v.u8); break;
    case RS_GGUF_I8: printf("%d", v.i8); break;
    case RS_GGUF_U16: printf("%u", v.u16); break;
    case RS_GGUF_I16: printf("%d", v.i16); break;
    case RS_GGUF_U32: printf("%u", v.u32); break;
    case RS_GGUF_I32: printf("%d", v.i32); break;
    case RS_GGUF_F32: printf("%.9g", v.f32); break;
    case RS_GGUF_BOOL: printf("%s", v.u8 ? "true" : "false"); break;
    case RS_GGUF_U64: printf("%llu", (unsigned long long)v.u64); break;
    case RS_GGUF_I64: printf("%lld", (long long)v.i64); break;
    case RS_GGUF_F64: printf("%.17g", v.f64); break;
    }
}

int cmd_gguf(int argc, char **argv) {
    const char *path = NULL;
    int64_t show = 8;
    size_t maxstr = 120;
    bool want_kv = true, want_tensors = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rsmoe gguf [options] FILE\n\n"
                   "Opens a GGUF v3 file with full validation and prints its header, metadata\n"
                   "(key, type, value) and tensor list (name, type, shape, offset, bytes).\n"
                   "Exit status 1 with the reason if the file is invalid.\n\n"
                   "options:\n"
                   "  --all          print every array element and whole strings\n"
                   "  --n N          array elements to print (default 8)\n"
                   "  --kv-only      metadata only\n"
                   "  --tensors-only tensor list only\n");
            return 0;
        } else if (!strcmp(argv[i], "--all")) {
            show = INT64_MAX;
            maxstr = 0;
        } else if (!strcmp(argv[i], "--n") && i + 1 < argc) {
            char *end;
            long long v = strtoll(argv[++i], &end, 10);
            if (*end || v < 0) {
                fprintf(stderr, "rsmoe gguf: bad --n '%s'\n", argv[i]);
                return 2;
            }
            show = v;
        } else if (!strcmp(argv[i], "--kv-only")) {
            want_tensors = false;
        } else if (!strcmp(argv[i], "--tensors-only")) {
            want_kv = false;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "rsmoe gguf: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "rsmoe gguf: one FILE only\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: rsmoe gguf [--all] [--n N] [--kv-only|--tensors-only] FILE\n");
        return 2;
    }
    rs_gguf *g = NULL;
    rsmoe_status st = rs_gguf_open(path, &g);
    if (st) return cli_fail("gguf", st);

    printf("file: %s\n", path);
    printf("version %u, %zu bytes, alignment %zu, data at %zu, %lld kv, %lld tensors\n",
           rs_gguf_version(g), rs_gguf_file_size(g), rs_gguf_alignment(g), rs_gguf_data_offset(g),
           (long long)rs_gguf_n_kv(g), (long long)rs_gguf_n_tensors(g));
    if (want_kv) {
        printf("\nmetadata:\n");
        for (int64_t i = 0; i < rs_gguf_n_kv(g); i++) {
            int t = rs_gguf_kv_type(g, i);
            printf("  %-40s ", rs_gguf_key(g, i));
            if (t == RS_GGUF_STRING) {
                size_t len;
                const char *s = rs_gguf_kv_str(g, i, &len);
                printf("%-6s ", "string");
                print_str(s, len, maxstr);
            } else if (t == RS_GGUF_ARRAY) {
                int et = rs_gguf_arr_type(g, i);
                int64_t n = rs_gguf_arr_n(g, i);
                printf("%s[%lld] [", rs_gguf_type_name(et), (long long)n);
                const uint8_t *d = et == RS_GGUF_STRING ? NULL : rs_gguf_arr_data(g, i, NULL, NULL);
                for (int64_t j = 0; j < n && j < show; j++) {
                    if (j) fputs(", ", stdout);
                    if (et == RS_GGUF_STRING) {
                        size_t len;
                        const char *s = rs_gguf_arr_str(g, i, j, &len);
                        print_str(s, len, maxstr);
                    } else {
                        print_scalar(et, d + (size_t)j * rs_gguf_type_size(et));
                    }
                }
                if (n > show) printf(", ... %lld more", (long long)(n - show));
                putchar(']');
            } else {
                uint8_t v[8];
                rs_gguf_kv_scalar(g, i, v);
                printf("%-6s ", rs_gguf_type_name(t));
                print_scalar(t, v);
            }
            putchar('\n');
        }
    }
    if (want_tensors && rs_gguf_n_tensors(g)) {
        size_t total = 0;
        printf("\ntensors:\n");
        for (int64_t i = 0; i < rs_gguf_n_tensors(g); i++) {
            const rs_tensor *t = rs_gguf_tensor(g, i);
            char shape[128];
            int at = snprintf(shape, sizeof shape, "[");
            for (int d = 0; d < t->ndim; d++)
                at += snprintf(shape + at, sizeof shape - (size_t)at, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
            snprintf(shape + at, sizeof shape - (size_t)at, "]");
            size_t nb = rs_tensor_nbytes(t);
            total += nb;
            printf("  %-48s %-5s %-24s offset %-12llu %zu bytes\n", t->name, rs_dtype_name(t->type), shape,
                   (unsigned long long)rs_gguf_tensor_offset(g, i), nb);
        }
        printf("total tensor data: %zu bytes (%.2f MiB)\n", total, total / 1048576.0);
    }
    rs_gguf_close(g);
    return 0;
}
