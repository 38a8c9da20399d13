/* encoder_cnn.h - a float CNN image encoder (MobileNet v1/v2 imported from TensorFlow Lite):
 * a straight-line graph of conv2d / depthwise conv2d / add / average pool / fully
 * connected / reshape operations on HWC float activations.
 *
 * Outputs of one forward pass on an H x W RGB image:
 *  - tokens: the last feature map before the final average pool, as rows of a row-major
 *    [ntokens, token_dim] matrix (7x7x1280 at 224 px for MobileNetV2 -> 49 tokens of 1280),
 *    which is what the Q-Former reads as visual tokens;
 *  - logits: the classifier's pre-softmax outputs ([nclasses], 1001 for these ImageNet
 *    models), for checking the import.
 *
 * Float semantics of an imported uint8 model (see docs/encoder_cnn.md): weights are
 * dequantised w = s_w (q - z_w), biases b = s_b q_b, and the uint8 input pixel p is read
 * as s_in (p - z_in) with the model's own input quantisation (1/128, 128 -> [-1, 1));
 * everything else is float32 without the per-layer requantisation to 8 bits of the integer
 * model, so logits differ from the integer model's by that rounding noise (a few % of the
 * logit range), not by a different computation. */
#ifndef RSMOE_MODEL_ENCODER_CNN_H
#define RSMOE_MODEL_ENCODER_CNN_H

#include "core/core.h"
#include "formats/gguf.h"
#include "formats/tflite.h"
#include "kernels/conv.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    RS_CNN_CONV = 0,     /* conv2d, weight [kh, kw, ic, oc] (ggml ne {oc, ic, kw, kh}) */
    RS_CNN_DWCONV = 1,   /* depthwise, weight [kh, kw, oc] (ne {oc, kw, kh}) */
    RS_CNN_ADD = 2,      /* element-wise sum of two values of the same shape */
    RS_CNN_AVGPOOL = 3,  /* average pool */
    RS_CNN_FC = 4,       /* fully connected on the flattened input, weight [out, in] (ne {in, out}) */
    RS_CNN_RESHAPE = 5,  /* same data, new (h, w, c) */
} rs_cnn_kind;

typedef struct {
    int kind;
    int in0, in1;        /* value ids (value 0 is the image; op i produces value i+1); in1 = -1 unless ADD */
    int kh, kw, sh, sw, dh, dw;
    int same;            /* padding: 1 SAME, 0 VALID */
    int act;             /* rs_act */
    int depth_mult;
    int oc;              /* output channels (conv, dwconv, fc), target c of a reshape */
    int rh, rw;          /* target h, w of a reshape; rh = inputs per output of an FC */
    const float *w, *b;  /* weights (b may be NULL) */
    rs_conv_params p;    /* geometry, filled when the graph is finalised */
} rs_cnn_op;

typedef struct { int h, w, c; } rs_cnn_shape;

typedef struct rs_cnn_encoder rs_cnn_encoder;
struct rs_cnn_encoder {
    int nops;
    rs_cnn_op *ops;
    rs_cnn_shape *vals;          /* nops + 1 value shapes */
    int in_h, in_w, in_c;
    float in_scale, in_zero;     /* uint8 pixel p -> in_scale * (p - in_zero) */
    int tokens_val, logits_val;  /* logits_val -1 when the graph has no classifier */
    int ntokens, token_dim, nclasses;
    char name[128];
    /* labels (may be absent) */
    int nlabels;
    char **labels;
    /* private: weight storage, value -> buffer slot plan, the GGUF it was loaded from */
    float *store;
    int *base, *slot;
    int nslots;
    size_t *slot_floats;
    size_t col_floats;
    void *gguf;
};

/* Builds the float encoder from a parsed quantised (or float) TFLite model: checks every
 * operator is supported (refusing others by name), dequantises and re-lays weights,
 * checks every shape against the file's. */
rsmoe_status rs_cnn_from_tflite(const rs_tflite *m, rs_cnn_encoder **out);
/* Writes the encoder as GGUF (f32 weights + the op list as metadata, see
 * docs/encoder_cnn.md); labels (may be NULL) are stored as cnn.labels. */
rsmoe_status rs_cnn_save_gguf(const rs_cnn_encoder *e, const char *path, const char *const *labels,
                              int nlabels);
rsmoe_status rs_cnn_load_gguf(const char *path, rs_cnn_encoder **out);
/* For a GGUF holding more than the encoder (a whole model): adds the encoder's cnn.* keys
 * and tensors to a writer (weights not copied: e must outlive rs_gguf_writer_write), and
 * builds an encoder from the cnn.* keys of an open GGUF (g not owned: it must outlive the
 * encoder; weights point into it). */
rsmoe_status rs_cnn_gguf_add(const rs_cnn_encoder *e, rs_gguf_writer *w, const char *const *labels,
                             int nlabels);
rsmoe_status rs_cnn_from_gguf(const rs_gguf *g, rs_cnn_encoder **out);
/* The same storing weights as f16 or bf16 (biases stay f32; q8_0 is refused, see
 * docs/encoder_cnn.md); loading expands them to f32 (and also accepts q8_0). The typed add
 * returns in *converted a buffer holding the converted weights, to free() after
 * rs_gguf_writer_write (NULL for f32). */
rsmoe_status rs_cnn_save_gguf_typed(const rs_cnn_encoder *e, const char *path, rs_dtype wtype,
                                    const char *const *labels, int nlabels);
rsmoe_status rs_cnn_gguf_add_typed(const rs_cnn_encoder *e, rs_gguf_writer *w, rs_dtype wtype,
                                   const char *const *labels, int nlabels, void **converted);
void rs_cnn_free(rs_cnn_encoder *e);   /* NULL is fine */

/* Bytes of scratch one forward needs (allocate an arena of at least this + 4 KiB). */
size_t rs_cnn_scratch_bytes(const rs_cnn_encoder *e);

/* Forward on an in_h x in_w x in_c uint8 image (HWC, RGB). tokens [ntokens*token_dim] and
 * logits [nclasses] may each be NULL. Scratch comes from `scratch` and is released before
 * returning. use_ref selects the plain reference kernels (slow; for tests). */
rsmoe_status rs_cnn_forward_u8(const rs_cnn_encoder *e, const uint8_t *rgb, float *tokens,
                               float *logits, rs_arena *scratch, rs_pool *pool);
/* The same on an already-scaled float image (in_h x in_w x in_c, values as the network
 * reads them, e.g. in [-1, 1] for MobileNet). */
rsmoe_status rs_cnn_forward(const rs_cnn_encoder *e, const float *x, float *tokens, float *logits,
                            rs_arena *scratch, rs_pool *pool, bool use_ref);

/* Label of class i, or NULL. */
const char *rs_cnn_label(const rs_cnn_encoder *e, int i);

#endif
