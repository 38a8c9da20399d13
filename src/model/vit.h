/* vit.h - the image encoder in the EVA-CLIP / BLIP-2 layout: conv patch embedding, [CLS],
 * learned absolute position embeddings (bicubically interpolated for other input sizes),
 * pre-LN blocks (LN -> MHA with qkv bias -> residual; LN -> GELU MLP -> residual), then
 * BLIP-2's `ln_vision`. Inference only (the encoder is frozen in every training stage). */
#ifndef RSMOE_MODEL_VIT_H
#define RSMOE_MODEL_VIT_H
#include "core/core.h"
#include "formats/gguf.h"

typedef struct {
    int image_size, patch, width, layers, heads, mlp;
    float eps;
    bool gelu_tanh;
    float mean[3], std[3];
} rs_vit_config;

typedef struct {
    const rs_tensor *ln1_w, *ln1_b, *qkv_w, *qkv_b, *out_w, *out_b, *ln2_w, *ln2_b, *up_w, *up_b, *down_w, *down_b;
} rs_vit_layer;

typedef struct {
    rs_vit_config c;
    const rs_tensor *patch_w, *patch_b, *cls, *pos, *lnv_w, *lnv_b;
    rs_vit_layer *layers;
} rs_vit;

/* reads rsmoe.vit.* keys and binds v.* tensors (see docs/model.md) */
rsmoe_status rs_vit_bind(const rs_gguf *g, rs_vit *v);
void rs_vit_unbind(rs_vit *v);
/* tokens produced for a side x side input: (side/patch)^2 + 1 */
int rs_vit_n_tokens(const rs_vit_config *c, int side);
/* floats of scratch rs_vit_forward needs for a side x side input with nthreads threads */
size_t rs_vit_scratch_floats(const rs_vit_config *c, int side, int nthreads);
/* img: normalised CHW [3, side, side]; out [n_tokens, width]. side must be a multiple of
 * patch; when it differs from image_size the position grid is interpolated bicubically
 * (PyTorch's F.interpolate(mode="bicubic", align_corners=False)). */
rsmoe_status rs_vit_forward(const rs_vit *v, const float *img, int side, float *out, float *scratch,
                            rs_pool *pool);
/* position embeddings [1 + n*n, width] for an n x n patch grid from the stored grid */
void rs_vit_interp_pos(const float *pos, int width, int g_in, int g_out, float *out);
#endif
