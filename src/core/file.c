/* file.c - whole-file reads (see core.h) */
#include "core/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *rs_read_file(const char *path, size_t max, size_t *len, rsmoe_status *st) {
    FILE *f = fopen(path, "rb");
    if (!f) { *st = rs_error(RSMOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || (size_t)n > max) {
        fclose(f);
        *st = rs_error(RSMOE_ERR_FORMAT, "%s: %ld bytes (at most %zu)", path, n, max);
        return NULL;
    }
    char *b = malloc((size_t)n + 1);
    if (!b) { fclose(f); *st = rs_error(RSMOE_ERR_NOMEM, "out of memory"); return NULL; }
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) { free(b); *st = rs_error(RSMOE_ERR_IO, "%s: read error", path); return NULL; }
    b[n] = 0;
    if (len) *len = (size_t)n;
    *st = RSMOE_OK;
    return b;
}
