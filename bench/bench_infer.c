/* bench_infer.c - `rsmoe bench infer -m MODEL`: where the time of a caption goes.
 * Image encoder ms/image, Q-Former ms, LLM prefill tokens/s, decode tokens/s of one expert
 * alone and of all experts decoding as one batch (aggregate), the decode rate against the
 * memory-bandwidth limit (weight bytes per step / measured read bandwidth), end-to-end caption
 * latency, and peak RSS. */
#include "bench.h"
#include "../tools/cli.h"
#include "data/image.h"
#include "kernels/ops.h"
#include "model/encoder_cnn.h"
#include "model/model.h"
#include "rsmoe.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const rs_model *m;
    rs_pool *pool;
    rs_image img;      /* random pixels at the encoder's input size */
    rs_enc_scratch es; /* ViT or CNN scratch */
    float *enc, *qsc, *prefix;
    int32_t ids[32];
    int n_ids;
} enc_ctx;

static void run_encoder(void *p) {
    enc_ctx *c = p;
    rs_model_encode(c->m, &c->img, c->enc, &c->es, c->pool);
}
static void run_qf(void *p) {
    enc_ctx *c = p;
    rs_qformer_forward(&c->m->qf, c->enc, c->m->enc_tokens, c->ids, c->n_ids, c->prefix, NULL, c->qsc, c->pool);
}

typedef struct {
    const rs_model *m;
    rs_llm_state *s;
    rs_pool *pool;
    int rows, n_streams, prefill, steps;
    float *emb, *logits;
    int *slot, *pos, *adapter, *lrows;
    const rs_lora_set *ad[RS_MAX_EXPERTS];
} llm_ctx;

/* prefill `rows` positions of slot 0 */
static void run_prefill(void *p) {
    llm_ctx *c = p;
    for (int i = 0; i < c->rows; i++) { c->slot[i] = 0; c->pos[i] = i; c->adapter[i] = c->m->moe.n_experts ? 0 : -1; }
    c->lrows[0] = c->rows - 1;
    rs_llm_batch b = {.n_rows = c->rows, .emb = c->emb, .slot = c->slot, .pos = c->pos, .adapter = c->adapter,
                      .adapters = c->ad, .n_logit_rows = 1, .logit_rows = c->lrows, .logits = c->logits};
    rs_llm_forward(&c->m->llm, c->s, &b, c->pool);
}

/* `steps` decode steps of n_streams sequences (one row each), after a prefill of `prefill` */
static void run_decode(void *p) {
    llm_ctx *c = p;
    for (int t = 0; t < c->steps; t++) {
        for (int i = 0; i < c->n_streams; i++) {
            c->slot[i] = i;
            c->pos[i] = c->prefill + t;
            c->adapter[i] = c->m->moe.n_experts ? i % c->m->moe.n_experts : -1;
            c->lrows[i] = i;
        }
        rs_llm_batch b = {.n_rows = c->n_streams, .emb = c->emb, .slot = c->slot, .pos = c->pos, .adapter = c->adapter,
                          .adapters = c->ad, .n_logit_rows = c->n_streams, .logit_rows = c->lrows, .logits = c->logits};
        rs_llm_forward(&c->m->llm, c->s, &b, c->pool);
    }
}

typedef struct {
    rsmoe_context *ctx;
    rsmoe_image *img;
    rsmoe_generate_params gp;
} cap_ctx;
static void run_caption(void *p) {
    cap_ctx *c = p;
    rsmoe_result r;
    if (rsmoe_caption(c->ctx, c->img, &c->gp, &r) == RSMOE_OK) rsmoe_result_free(&r);
}

/* fn timed after one warm-up call; the statistics of its milliseconds per call */
static bench_stats time_ms(bench_fn fn, void *ctx, int reps, double *t) {
    bench_time(fn, ctx, 1, reps, t);
    for (int i = 0; i < reps; i++) t[i] *= 1e3;
    return bench_stats_of(t, reps);
}

static void usage(FILE *f) {
    fprintf(f, "usage: rsmoe bench infer -m MODEL.gguf [--threads N[,N..]] [--reps R] [--steps S] [--parts LIST]\n"
               "                         [--no-repack] [--exact-f32] [--json]\n\n"
               "Times the parts of a caption: image encoder, Q-Former, LLM prefill, decoding of one expert\n"
               "and of all experts as one batch, and a whole greedy caption; prints peak RSS.\n"
               "  --threads LIST  thread counts to run (default 1,2)\n"
               "  --reps R        repetitions per figure (default 3; median reported)\n"
               "  --steps S       decode steps timed (default 32)\n"
               "  --caption-len N tokens per expert in the end-to-end caption (default 32)\n"
               "  --parts LIST    comma-separated parts to time: encoder, qformer, prefill, decode, caption\n"
               "                  (default all; e.g. --parts decode for the decode rates and their ratio)\n"
               "  --no-repack     keep q8_0 weights as stored (row-wise kernels) instead of repacking\n"
               "                  them for the AVX-512 VNNI kernel, which is the default where the CPU has it\n"
               "  --exact-f32     keep the image encoder's f32 matrices exact f32 instead of packing them\n"
               "                  as bf16 pairs for AMX (kernels/bf16x3.h), the default where the CPU has AMX-BF16\n");
}

int bench_infer_main(int argc, char **argv) {
    const char *path = NULL;
    int reps = 3, steps = 32, cap_len = 32, json = 0, nthr = 0, thr[8], repack = 1, amx_f32 = 1;
    enum { P_ENC = 1, P_QF = 2, P_PRE = 4, P_DEC = 8, P_CAP = 16 };
    int parts = P_ENC | P_QF | P_PRE | P_DEC | P_CAP;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-repack")) repack = 0;
        else if (!strcmp(a, "--exact-f32")) amx_f32 = 0;
        else if (!strcmp(a, "--reps") && i + 1 < argc) { reps = atoi(argv[++i]); if (reps < 1 || reps > 100) goto bad; }
        else if (!strcmp(a, "--steps") && i + 1 < argc) { steps = atoi(argv[++i]); if (steps < 1 || steps > 4096) goto bad; }
        else if (!strcmp(a, "--caption-len") && i + 1 < argc) { cap_len = atoi(argv[++i]); if (cap_len < 1 || cap_len > 1024) goto bad; }
        else if (!strcmp(a, "--parts") && i + 1 < argc) {
            static const char *const names[] = {"encoder", "qformer", "prefill", "decode", "caption"};
            char buf[128];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            parts = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                int k = 0;
                while (k < 5 && strcmp(tok, names[k])) k++;
                if (k == 5) {
                    fprintf(stderr, "rsmoe bench infer: unknown part '%s' (encoder, qformer, prefill, decode, caption)\n", tok);
                    return 2;
                }
                parts |= 1 << k;
            }
            if (!parts) goto bad;
        }
        else if (!strcmp(a, "--threads") && i + 1 < argc) {
            char *s = argv[++i], *e;
            nthr = 0;
            while (*s && nthr < 8) { long v = strtol(s, &e, 10); if (e == s || v < 1 || v > 256) goto bad; thr[nthr++] = (int)v; s = *e == ',' ? e + 1 : e; if (*e && *e != ',') goto bad; }
        } else { fprintf(stderr, "rsmoe bench infer: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
        continue;
    bad:
        fprintf(stderr, "rsmoe bench infer: bad value for %s\n", a);
        return 2;
    }
    if (!path) { usage(stderr); return 2; }
    if (!nthr) { thr[0] = 1; thr[1] = 2; nthr = 2; }
    rsmoe_status st;
    rsmoe_model_params mp = rsmoe_model_default_params();
    mp.repack_q8 = repack;
    mp.amx_f32 = amx_f32;
    double t_load = rs_time_s();
    rsmoe_model *pm = rsmoe_model_load(path, &mp, &st);
    if (!pm) return cli_fail(path, st);
    t_load = rs_time_s() - t_load;
    const rs_model *m = rs_model_of(pm); /* one copy of the weights for every figure */
    int n_packed = 0, n_bx = 0;
    for (int64_t i = 0; i < rs_gguf_n_tensors(m->g); i++) {
        const rs_tensor *t = rs_gguf_tensor(m->g, i);
        n_packed += t->packed && t->type == RS_Q8_0;
        n_bx += t->packed && t->type == RS_F32;
    }
    bench_report rep;
    char title[256], hdr[512];
    snprintf(title, sizeof title, "rsmoe bench infer: %s (%s)", path, rs_gguf_get_str_or(m->g, "general.name", "?"));
    snprintf(hdr, sizeof hdr, "%s", rsmoe_system_info());
    bench_report_init(&rep, title, hdr);
    const rs_llm_config *lc = &m->llm.c;
    int K = m->moe.n_experts > 0 ? m->moe.n_experts : 1;
    /* the encoder's native input (a CNN's fixed size, a ViT's trained size) */
    int side_w = m->vision_kind == RS_VISION_CNN ? m->cnn->in_w : m->vit.c.image_size;
    int side_h = m->vision_kind == RS_VISION_CNN ? m->cnn->in_h : m->vit.c.image_size;
    int prefill = m->qf.c.n_query + m->moe.n_soft + 24;
    if (prefill + steps + 1 > lc->max_seq) steps = lc->max_seq - prefill - 1;
    size_t wbytes = rs_llm_weight_bytes(&m->llm);
    /* each stream also reads its expert's adapter (the same size for every expert) */
    const size_t abytes = m->moe.n_experts > 0 ? rs_lora_set_bytes(&m->experts[0], &m->llm.c) : 0;
    int rc = 0;
    for (int ti = 0; ti < nthr; ti++) {
        int nt = thr[ti];
        rs_pool *pool = rs_pool_new(nt);
        enc_ctx ec = {.m = m, .pool = pool};
        if (rs_image_alloc(&ec.img, side_w, side_h, 3) || rs_enc_scratch_init(m, nt, &ec.es)) rc = 1;
        ec.enc = malloc(sizeof(float) * (size_t)m->enc_tokens * m->enc_width);
        ec.qsc = malloc(sizeof(float) * rs_qformer_scratch_floats(&m->qf.c, m->enc_tokens, 32, nt));
        ec.prefix = malloc(sizeof(float) * (size_t)m->qf.c.n_query * lc->dim);
        llm_ctx lx = {.m = m, .pool = pool};
        size_t rows_max = (size_t)(prefill > K ? prefill : K);
        lx.emb = malloc(sizeof(float) * rows_max * lc->dim);
        lx.logits = malloc(sizeof(float) * (size_t)K * lc->vocab);
        lx.slot = malloc(sizeof(int) * rows_max);
        lx.pos = malloc(sizeof(int) * rows_max);
        lx.adapter = malloc(sizeof(int) * rows_max);
        lx.lrows = malloc(sizeof(int) * rows_max);
        for (int e = 0; e < m->moe.n_experts; e++) lx.ad[e] = &m->experts[e];
        if (rc || !pool || !ec.img.data || !ec.enc || !ec.qsc || !ec.prefix || !lx.emb || !lx.logits || !lx.slot || !lx.pos ||
            !lx.adapter || !lx.lrows) {
            fprintf(stderr, "rsmoe bench infer: out of memory\n");
            rc = 1;
        }
        st = rc ? RSMOE_ERR_NOMEM : rs_llm_state_new(lc, prefill + steps + 2, K, (int)rows_max, K,
                                                     m->moe.n_experts ? m->moe.lora_rank : 0, &lx.s);
        if (!rc && st) rc = cli_fail("state", st);
        if (!rc) {
            rs_rng rng;
            rs_rng_seed(&rng, 1);
            for (size_t i = 0; i < 3 * (size_t)side_w * side_h; i++) ec.img.data[i] = (uint8_t)(rs_rng_u64(&rng) & 255);
            rs_rng_fill_normal(&rng, lx.emb, rows_max * lc->dim, 0, 1);
            for (int i = 0; i < 12; i++) ec.ids[i] = 4 + i;
            ec.n_ids = 12;
            char name[64];
            double t[128];
            bench_stats s;
            if (parts & P_ENC) {
                s = time_ms(run_encoder, &ec, reps, t);
                snprintf(name, sizeof name, "%s %dx%d px, %d tokens", m->vision_kind == RS_VISION_CNN ? "CNN" : "ViT",
                         side_w, side_h, m->enc_tokens);
                bench_add(&rep, "image encoder", name, "ms/image", nt, s, "ms", -1, "");
            }
            if (parts & P_QF) {
                s = time_ms(run_qf, &ec, reps, t);
                snprintf(name, sizeof name, "%d queries + 12 tokens", m->qf.c.n_query);
                bench_add(&rep, "q-former", name, "ms", nt, s, "ms", -1, "");
            }
            lx.rows = prefill;
            if (parts & P_PRE) {
                s = bench_rate(run_prefill, &lx, 1, reps, prefill, 1.0);
                snprintf(name, sizeof name, "%d positions", prefill);
                bench_add(&rep, "prefill", name, "tokens/s", nt, s, "tok/s", -1, "");
            }
            /* decode: fill the caches of K slots, then time steps */
            if (parts & P_DEC) {
                double bw = bench_read_bandwidth_gbs(pool, bench_uncached_bytes((size_t)1 << 30), 3);
                double limit = bw * 1e9 / (double)(wbytes + abytes); /* steps/s of one stream */
                for (int ns = 1; ns <= K; ns += (K > 1 ? K - 1 : 1)) {
                    lx.n_streams = ns;
                    lx.prefill = prefill;
                    lx.steps = steps;
                    s = bench_rate(run_decode, &lx, 0, reps, (double)steps * ns, 1.0);
                    snprintf(name, sizeof name, "%d stream%s (aggregate)", ns, ns > 1 ? "s batched" : "");
                    /* % of the steps/s that reading the base weights and ns adapters allows */
                    const double lim_ns = bw * 1e9 / (double)(wbytes + (size_t)ns * abytes);
                    bench_add(&rep, "decode", name, "tokens/s", nt, s, "tok/s", 100.0 * s.med / ns / lim_ns, "bw limit");
                }
                double one = 0, many = 0;
                for (int i = 0; i < rep.n; i++)
                    if (!strcmp(rep.r[i].section, "decode") && rep.r[i].threads == nt) {
                        if (strstr(rep.r[i].name, "1 stream ")) one = rep.r[i].st.med;
                        else many = rep.r[i].st.med;
                    }
                /* the same ratio from interleaved pairs (one expert, then the batch, reps times): on a
                 * shared machine the load drifts between the two figures above; a pair sees the same */
                double pr[BENCH_MAX_REPS];
                int npr = 0;
                for (int i = 0; K > 1 && i < reps && i < BENCH_MAX_REPS; i++) {
                    lx.n_streams = 1;
                    double t1 = rs_time_s();
                    run_decode(&lx);
                    t1 = rs_time_s() - t1;
                    lx.n_streams = K;
                    double tk = rs_time_s();
                    run_decode(&lx);
                    tk = rs_time_s() - tk;
                    if (t1 > 0 && tk > 0) pr[npr++] = K * t1 / tk;
                }
                bench_stats ps = bench_stats_of(pr, npr);
                char note[512];
                snprintf(note, sizeof note,
                         "%d thread(s): weights read per decode step %.1f MiB + %.1f MiB per expert's adapter; measured "
                         "read bandwidth %.1f GB/s -> limit %.1f steps/s for one stream; %d-expert batch = %.2fx the "
                         "aggregate rate of one expert alone (interleaved pairs: median %.2fx, %.2f-%.2f over %d)",
                         nt, wbytes / 1048576.0, abytes / 1048576.0, bw, limit, K, one > 0 ? many / one : 0, ps.med,
                         ps.min, ps.max, npr);
                bench_note(&rep, note);
            }
            /* end to end: greedy caption through the public API */
            rsmoe_context_params cp = rsmoe_context_default_params();
            cp.n_threads = nt;
            cp.max_beams = 1;
            cp.n_ctx = prefill + 256 + cap_len;
            rsmoe_context *ctx = (parts & P_CAP) ? rsmoe_context_new(pm, &cp, &st) : NULL;
            if (ctx) {
                /* the encoder's random image, through the public API */
                rsmoe_image img = {.width = side_w, .height = side_h, .data = ec.img.data};
                cap_ctx cc = {.ctx = ctx, .img = &img, .gp = rsmoe_caption_default_params()};
                cc.gp.beams = 1;
                cc.gp.max_len = cc.gp.min_len = cap_len;
                s = time_ms(run_caption, &cc, reps, t);
                snprintf(name, sizeof name, "greedy, %d experts x %d tokens", K, cap_len);
                bench_add(&rep, "caption", name, "end to end", nt, s, "ms", -1, "");
                rsmoe_context_free(ctx);
            }
        }
        rs_llm_state_free(lx.s);
        rs_image_free(&ec.img); rs_enc_scratch_free(&ec.es); free(ec.enc); free(ec.qsc); free(ec.prefix);
        free(lx.emb); free(lx.logits); free(lx.slot); free(lx.pos); free(lx.adapter); free(lx.lrows);
        rs_pool_free(pool);
        if (rc) break;
    }
    char note[192];
    snprintf(note, sizeof note, "peak RSS %.1f MiB; model load %.2f s (%d q8_0 matrices repacked, %d f32 as bf16 pairs)",
             rs_peak_rss_bytes() / 1048576.0, t_load, n_packed, n_bx);
    bench_note(&rep, note);
    if (json) bench_print_json(&rep, stdout);
    else bench_print_markdown(&rep, stdout);
    bench_report_free(&rep);
    rsmoe_model_free(pm);
    return rc;
}
