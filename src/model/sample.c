/* sample.c - see sample.h */
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>

int rs_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void rs_repetition_penalty(float *logits, int n_vocab, const int32_t *prev, int n_prev, float penalty) {
    if (penalty == 1.0f || !(penalty > 0)) return;
    for (int i = 0; i < n_prev; i++) {
        int id = prev[i];
        if (id < 0 || id >= n_vocab) continue;
        bool seen = false; /* apply once per distinct id */
        for (int j = 0; j < i && !seen; j++) seen = prev[j] == id;
        if (seen) continue;
        logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
    }
}

double rs_log_softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    double lz = mx + log(s);
    for (int i = 0; i < n; i++) x[i] = (float)((double)x[i] - lz);
    return lz;
}

static _Thread_local const float *g_sort_p; /* qsort has no context argument */
static int cmp_desc(const void *a, const void *b) {
    float pa = g_sort_p[*(const int *)a], pb = g_sort_p[*(const int *)b];
    if (pa != pb) return pa < pb ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

int rs_sample(float *logits, int n, float temperature, float top_p, rs_rng *rng, float *p, int *idx) {
    if (!(temperature > 0)) return rs_argmax(logits, n);
    float mx = logits[0];
    for (int i = 1; i < n; i++) if (logits[i] > mx) mx = logits[i];
    double s = 0;
    for (int i = 0; i < n; i++) { p[i] = expf((logits[i] - mx) / temperature); s += p[i]; }
    for (int i = 0; i < n; i++) p[i] = (float)(p[i] / s);
    double u = rs_rng_uniform(rng);
    if (!(top_p < 1.0f)) {
        double c = 0;
        for (int i = 0; i < n; i++) { c += p[i]; if (u < c) return i; }
        return n - 1;
    }
    /* nucleus: sort candidates (only those above a cutoff that cannot be in the set) */
    float cutoff = (1.0f - top_p) / (float)(n > 1 ? n - 1 : 1);
    int m = 0;
    for (int i = 0; i < n; i++) if (p[i] >= cutoff) idx[m++] = i;
    g_sort_p = p;
    qsort(idx, (size_t)m, sizeof *idx, cmp_desc);
    double c = 0;
    int last = m - 1;
    for (int i = 0; i < m; i++) { c += p[idx[i]]; if (c > top_p) { last = i; break; } }
    double r = u * c, acc = 0;
    for (int i = 0; i <= last; i++) { acc += p[idx[i]]; if (r < acc) return idx[i]; }
    return idx[last];
}
