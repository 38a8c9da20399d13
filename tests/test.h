/* Minimal test harness shared by the test programs (header-only).
 * Each test program: TEST(name) { ... CHECK(cond, "fmt", ...); } and
 * int main(void) { RUN(name); ...; return test_summary(); }
 * The last line printed is "N passed, N failed, N skipped" (tests/run.sh sums them). */
#ifndef RSMOE_TEST_H
#define RSMOE_TEST_H
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int t_passed, t_failed, t_skipped, t_cur_failed, t_cur_skipped;
static const char *t_cur_name;

#define TEST(name) static void name(void)
#define CHECK(cond, ...) do { if (!(cond)) { t_cur_failed = 1; \
    fprintf(stderr, "FAIL %s (%s:%d): %s: ", t_cur_name, __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define REQUIRE(cond, ...) do { if (!(cond)) { t_cur_failed = 1; \
    fprintf(stderr, "FAIL %s (%s:%d): %s: ", t_cur_name, __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return; } } while (0)
/* Mark the current test skipped, saying why, and leave it. */
#define SKIP(...) do { t_cur_skipped = 1; printf("skip %s: ", t_cur_name); \
    printf(__VA_ARGS__); putchar('\n'); return; } while (0)
#define RUN(name) do { t_cur_name = #name; t_cur_failed = 0; t_cur_skipped = 0; name(); \
    if (t_cur_failed) { t_failed++; printf("FAILED %s\n", #name); } \
    else if (t_cur_skipped) t_skipped++; \
    else { t_passed++; printf("ok %s\n", #name); } fflush(stdout); } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed, %d skipped\n", t_passed, t_failed, t_skipped);
    return t_failed ? 1 : 0;
}

/* ../shared (read-only data) or $RSMOE_SHARED; NULL when absent. */
static inline const char *test_shared_dir(void) {
    const char *e = getenv("RSMOE_SHARED");
    if (e && access(e, R_OK) == 0) return e;
    if (access("../shared/data", R_OK) == 0) return "../shared";
    return NULL;
}

/* Whether Debian's /usr/bin/python3 can import module (the independent references need
 * numpy or torch); a test that needs it SKIPs, saying so, when it cannot. */
static inline bool test_have_python(const char *module) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import %s' >/dev/null 2>&1", module);
    return access("/usr/bin/python3", X_OK) == 0 && system(cmd) == 0;
}

/* max |a-b| / max(max|b|, tiny): the normalised error used by kernel tests */
static inline double test_nerr_f32(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}
/* max |a-b| / max |b| with a float and b a double reference (NaN in a counts as infinite) */
static inline double test_nerr_f64ref(const float *a, const double *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}

/* dir/name read as little-endian doubles (malloc'd; *n = count), NULL if unreadable */
static inline double *test_read_f64(const char *dir, const char *name, size_t *n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    double *d = malloc((size_t)(sz > 0 ? sz : 0) + 8);
    *n = d ? fread(d, 8, (size_t)(sz > 0 ? sz : 0) / 8, f) : 0;
    fclose(f);
    return d;
}

/* whitespace-separated integers of dir/name into ids (at most cap); -1 if unreadable */
static inline int test_read_ids(const char *dir, const char *name, int32_t *ids, int cap) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    int n = 0, v;
    while (n < cap && fscanf(f, "%d", &v) == 1) ids[n++] = v;
    fclose(f);
    return n;
}
#endif
