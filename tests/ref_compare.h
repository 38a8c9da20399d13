/* ref_compare.h - what the whole-model parity tests (test_model.c on the test preset,
 * test_hf_import.c on imported checkpoints) share: the comparison of one run's intermediate
 * tensors, first-step logits and greedy ids with the files a NumPy reference wrote, and the
 * greedy generation settings both sides use. */
#ifndef RSMOE_TESTS_REF_COMPARE_H
#define RSMOE_TESTS_REF_COMPARE_H
#include "model/pipeline_debug.h"
#include "rsmoe.h"
#include "test.h"

/* outdir holds enc/qf/prefix/gates/soft.bin, logits_E.bin and ids_E.txt per expert E (or
 * logits_NAME.bin / ids_NAME.txt for the LLM Block alone, llm_name != NULL: no router parts);
 * stream s of the run decoded expert stream_expert[s] */
static inline void ref_compare(const char *outdir, rsmoe_context *c, const rsmoe_result *r, const int *stream_expert,
                               int n_streams, const char *llm_name) {
    rs_ctx_debug d;
    rs_ctx_get_debug(c, &d);
    size_t n;
    double *ref;
    struct { const char *file; const float *got; } parts[] = {
        {"enc.bin", d.enc}, {"qf.bin", d.qout}, {"prefix.bin", d.prefix}, {"gates.bin", d.gates}, {"soft.bin", d.soft}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (llm_name && i >= 3) continue; /* no router on the LLM Block alone */
        ref = test_read_f64(outdir, parts[i].file, &n);
        if (!ref) { CHECK(0, "reference %s missing", parts[i].file); continue; }
        double e = test_nerr_f64ref(parts[i].got, ref, n);
        CHECK(e <= 1e-4, "%s: normalised error %.3g", parts[i].file, e);
        free(ref);
    }
    REQUIRE(d.first_logits && d.n_streams == n_streams, "first-step logits kept (%d streams)", d.n_streams);
    for (int s = 0; s < n_streams; s++) {
        char nm[64], idn[64];
        if (llm_name) { snprintf(nm, sizeof nm, "logits_%s.bin", llm_name); snprintf(idn, sizeof idn, "ids_%s.txt", llm_name);
        } else {
            snprintf(nm, sizeof nm, "logits_%d.bin", stream_expert[s]);
            snprintf(idn, sizeof idn, "ids_%d.txt", stream_expert[s]);
        }
        ref = test_read_f64(outdir, nm, &n);
        REQUIRE(ref && n == 260, "reference %s", nm);
        double e = test_nerr_f64ref(d.first_logits + (size_t)s * 260, ref, n);
        CHECK(e <= 1e-4, "%s: normalised error %.3g", nm, e);
        free(ref);
        int32_t want[64];
        int nw = test_read_ids(outdir, idn, want, 64);
        const rsmoe_aspect *a = &r->aspects[llm_name ? 0 : stream_expert[s]];
        REQUIRE(nw >= 0 && a->ids, "ids %s", idn);
        CHECK(a->n_tokens == nw, "%s: %d tokens, reference %d", idn, a->n_tokens, nw);
        for (int i = 0; i < nw && i < a->n_tokens; i++)
            CHECK(a->ids[i] == want[i], "%s: token %d is %d, reference %d", idn, i, a->ids[i], want[i]);
    }
}

static inline rsmoe_generate_params greedy(bool vqa) {
    rsmoe_generate_params p = vqa ? rsmoe_vqa_default_params() : rsmoe_caption_default_params();
    p.beams = 1;
    p.max_len = 8;
    p.min_len = 1;
    p.repetition_penalty = 1.0f;
    return p;
}
#endif
