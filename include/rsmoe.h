/* rsmoe.h - the public C API of the RS-MoE engine (the only header users include).
 *
 * Conventions (after whisper.cpp / llama.cpp):
 *  - every call that can fail returns an rsmoe_status (or NULL plus a status out-parameter);
 *  - rsmoe_last_error() gives a human-readable message for the last failure on this thread;
 *  - the library never calls exit() and never prints unless asked to (log callback);
 *  - the model (immutable weights, shareable across threads) is separate from a context
 *    (per-run state: caches, scratch, threads).
 */
#ifndef RSMOE_H
#define RSMOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RSMOE_VERSION_MAJOR 0
#define RSMOE_VERSION_MINOR 1
#define RSMOE_VERSION_PATCH 0

typedef enum {
    RSMOE_OK = 0,
    RSMOE_ERR_INVALID_ARG = 1,  /* a bad argument or option */
    RSMOE_ERR_IO = 2,           /* a file could not be opened, read or written */
    RSMOE_ERR_FORMAT = 3,       /* a file is malformed, truncated or of the wrong kind */
    RSMOE_ERR_NOMEM = 4,        /* out of memory (or an arena is full) */
    RSMOE_ERR_UNSUPPORTED = 5,  /* a valid request this build cannot do */
    RSMOE_ERR_ABORTED = 6,      /* stopped by the caller's abort callback */
    RSMOE_ERR_NUMERIC = 7,      /* NaN/inf where a finite number was needed */
    RSMOE_ERR_INTERNAL = 8,     /* a bug: please report */
} rsmoe_status;

/* Short name of a status ("ok", "i/o error", ...). Never NULL. */
const char *rsmoe_status_str(rsmoe_status st);

/* The message of the last failure on the calling thread ("" if none). */
const char *rsmoe_last_error(void);

/* One line describing this build and CPU: version, BLAS, SIMD features in use. */
const char *rsmoe_system_info(void);

/* ------------------------------------------------------------------ model and context */
typedef struct rsmoe_model rsmoe_model;      /* immutable weights (mmap); share across threads */
typedef struct rsmoe_context rsmoe_context;  /* per-run state: KV cache, scratch, threads */

typedef struct {
    int repack_q8;  /* 1 (default): where the CPU has AVX-512 VNNI, q8_0 weight matrices are
                     * repacked at load for a kernel that serves several rows (experts, image
                     * tokens) per weight read (load time: ~1 s per GB); 0: used as stored */
    int amx_f32;    /* 1 (default): where the CPU has AMX-BF16, the image encoder's f32 weight
                     * matrices are packed at load as bf16 pairs (hi + lo) and its products run
                     * on AMX with three bf16 products per term: about 2.4x the f32 speed, with
                     * an error of about 1e-5 of sum |x w| per output instead of f32's ~1e-7;
                     * 0: exact f32 */
} rsmoe_model_params;
rsmoe_model_params rsmoe_model_default_params(void);

/* Loads an RS-MoE GGUF (memory-mapped). NULL on failure, with *st (may be NULL) set and
 * rsmoe_last_error() saying why. */
rsmoe_model *rsmoe_model_load(const char *path, const rsmoe_model_params *p, rsmoe_status *st);
void rsmoe_model_free(rsmoe_model *m);

/* A multi-line human-readable description: configuration, parameter counts per part, dtypes,
 * file size. Writes at most cap bytes (NUL-terminated); returns the length needed. */
size_t rsmoe_model_describe(const rsmoe_model *m, char *buf, size_t cap);
int rsmoe_model_n_experts(const rsmoe_model *m);
/* whether the model holds a retrieval index (`rsmoe index`; brief-caption selection) */
bool rsmoe_model_has_retrieval(const rsmoe_model *m);
const char *rsmoe_model_expert_name(const rsmoe_model *m, int i);   /* NULL if out of range */

#define RSMOE_MAX_VIEWS 8  /* test-time views: the eight symmetries of the square */
typedef struct {
    int n_threads;   /* 0: all online CPUs */
    int n_ctx;       /* positions per sequence (0: min(model context, 1024)) */
    int max_beams;   /* largest beam count this context accepts (default 5) */
    int max_views;   /* most test-time views a call may ask for (default 1; 1..RSMOE_MAX_VIEWS);
                        the KV cache grows with max_beams x max_views */
} rsmoe_context_params;
rsmoe_context_params rsmoe_context_default_params(void);
rsmoe_context *rsmoe_context_new(const rsmoe_model *m, const rsmoe_context_params *p, rsmoe_status *st);
void rsmoe_context_free(rsmoe_context *c);
/* bytes held by the context (KV cache and scratch) */
size_t rsmoe_context_bytes(const rsmoe_context *c);

/* ------------------------------------------------------------------ images */
/* An 8-bit RGB image, rows top to bottom, pixels R,G,B interleaved. */
typedef struct {
    int width, height;
    uint8_t *data;   /* width*height*3 bytes */
} rsmoe_image;
/* Decodes a JPEG, PNG or TIFF file (grey is expanded to RGB; TIFF bands: see the CLI). */
rsmoe_status rsmoe_image_load(const char *path, rsmoe_image *out);
/* Decodes an image held in memory; name is used in error messages. */
rsmoe_status rsmoe_image_decode(const void *data, size_t size, const char *name, rsmoe_image *out);
void rsmoe_image_free(rsmoe_image *img);

/* ------------------------------------------------------------------ captions and answers */
typedef enum {
    RSMOE_STYLE_DETAILED = 0,  /* every expert writes its aspect; joined theme -> objects -> relationships */
    RSMOE_STYLE_BRIEF = 1,     /* every expert proposes one sentence; the best by gate-weighted,
                                  length-normalised log-probability wins, or, when the model has a
                                  retrieval index (`rsmoe index`) and use_retrieval is set, the best
                                  of the proposals and the nearest indexed images' captions by
                                  consensus with those captions (docs/model.md) */
} rsmoe_caption_style;

typedef bool (*rsmoe_abort_callback)(void *user_data);             /* return true to stop */
typedef void (*rsmoe_progress_callback)(const char *stage, void *user_data);

typedef struct {
    rsmoe_caption_style style;
    int beams;                  /* 1 = greedy / sampling */
    int max_len, min_len;       /* generated tokens per expert */
    float repetition_penalty;   /* 1 = off */
    float length_penalty;
    float temperature;          /* > 0 (with beams 1): sampling */
    float top_p;
    uint64_t seed;
    const char *instruction;    /* NULL: the model's description instruction */
    bool use_experts;           /* false: the LLM Block alone (the stage-I path) */
    bool uniform_gates;         /* ablation: every expert weighted 1/K */
    bool use_retrieval;         /* brief captions: use the model's retrieval index if it has one (default true) */
    bool retrieval_only;        /* ablation: with the index, choose among its captions only (no proposal) */
    int top_k_experts;          /* questions: experts consulted (1 = top-1 by gate) */
    int views;                  /* test-time views (default 1, at most the context's max_views):
                                   the image as given, then mirrored left-right, rotated 90 and
                                   270 degrees, mirrored top-bottom, rotated 180, transposed,
                                   anti-transposed; the first `views` of those are encoded, the
                                   router's gates averaged, and each expert decodes all of them
                                   as one stream whose next-token log-probabilities are the
                                   (renormalised) mean of theirs. The index, if used, sees the
                                   image as given. */
    rsmoe_abort_callback abort_callback;
    rsmoe_progress_callback progress_callback;
    void *user_data;
} rsmoe_generate_params;
/* method.md §4: 5 beams, max 256, repetition penalty 1.5, length penalty 1.0, detailed */
rsmoe_generate_params rsmoe_caption_default_params(void);
/* brief captions (one sentence): the caption defaults with style brief and no repetition penalty.
 * RSICD val, the default model alone, greedy: 79.11 CIDEr-D without the penalty, 78.57 with
 * 1.5 (5 beams: 77.96 / 77.02); the self-critical stage trains the experts on exactly this
 * policy, sampled without a penalty, and RSICD's sentences repeat words ("many green trees and
 * many buildings") that a penalty steers away from. `rsmoe caption --brief`, `rsmoe eval` and
 * the server's style=brief start from these unless a penalty is given. */
rsmoe_generate_params rsmoe_brief_default_params(void);
/* method.md §4: max 10 tokens, 5 beams, top-1 expert */
rsmoe_generate_params rsmoe_vqa_default_params(void);

#define RSMOE_MAX_ASPECTS 8
typedef struct {
    char name[32];       /* "theme", "objects", "relationships", or "llm" for the LLM Block alone */
    char *text;          /* NULL when this expert did not run */
    float gate;          /* router weight */
    double logprob;      /* sum of token log-probabilities */
    int n_tokens;
    int32_t *ids;        /* the n_tokens generated token ids (end token excluded) */
} rsmoe_aspect;

typedef struct {
    double encode_ms, qformer_ms, router_ms, prefill_ms, decode_ms, retrieval_ms, total_ms;
    int prefill_tokens, decode_steps, decode_tokens;
} rsmoe_timings;

typedef struct {
    char *text;          /* the caption or answer */
    int n_aspects;
    rsmoe_aspect aspects[RSMOE_MAX_ASPECTS];
    int chosen;          /* the aspect that gave `text` (brief/VQA), -1 when joined or retrieved */
    bool retrieved;      /* brief: `text` is an indexed image's caption chosen by retrieval consensus */
    char scene[64];      /* with a retrieval index (and use_retrieval): the scene probe's class, any
                          * style ("" otherwise) */
    float scene_prob;    /* its softmax probability */
    rsmoe_timings timings;
} rsmoe_result;
void rsmoe_result_free(rsmoe_result *r);

rsmoe_status rsmoe_caption(rsmoe_context *c, const rsmoe_image *img, const rsmoe_generate_params *p,
                           rsmoe_result *out);
rsmoe_status rsmoe_answer(rsmoe_context *c, const rsmoe_image *img, const char *question,
                          const rsmoe_generate_params *p, rsmoe_result *out);

#ifdef __cplusplus
}
#endif
#endif /* RSMOE_H */
