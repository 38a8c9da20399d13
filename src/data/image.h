/* image.h - image decoding (JPEG, PNG, TIFF through Debian's libjpeg-turbo, libpng,
 * libtiff) and the preprocessing of the reference pipeline: PIL-exact bicubic resize,
 * then per-model mean/std normalisation into a CHW float tensor, RGB order.
 *
 * Every failure returns a status and records a message that names the file. */
#ifndef RSMOE_DATA_IMAGE_H
#define RSMOE_DATA_IMAGE_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 8-bit image, interleaved HWC: pixel (x, y) channel k at data[(y*w + x)*c + k]. */
typedef struct {
    int w, h, c;
    uint8_t *data;   /* malloc'd, w*h*c bytes; free with rs_image_free */
} rs_image;

/* How 16-bit samples (TIFF, PNG) become 8-bit. */
typedef enum {
    RS_DEPTH16_SCALE = 0,   /* round(v * 255 / 65535), the full range (default) */
    RS_DEPTH16_MINMAX = 1,  /* per band: (v - min) * 255 / (max - min), rounded; for
                               multispectral data that uses a small part of the range */
} rs_depth16_mode;

#define RS_IMAGE_MAX_BANDS 16
#define RS_IMAGE_DEFAULT_MAX_DIM 32768
#define RS_IMAGE_DEFAULT_MAX_PIXELS ((int64_t)1 << 28)      /* 268 M pixels */
#define RS_IMAGE_DEFAULT_MAX_FILE ((int64_t)1 << 31)        /* 2 GiB */

typedef struct {
    /* 1-based band numbers to keep, in output order (e.g. {3,2,1} for a false/true
     * colour composite of a multispectral TIFF); nbands = 0 keeps the default: grey
     * stays grey, RGB(A) gives RGB, more than 3 bands give bands 1,2,3. */
    int bands[RS_IMAGE_MAX_BANDS];
    int nbands;
    /* true: a 1-band result stays c = 1; false (default): it is expanded to RGB (c = 3)
     * as PIL's convert("RGB") does, which is what the image encoders need. */
    bool keep_grey;
    rs_depth16_mode depth16;
    int max_dim;          /* 0 = RS_IMAGE_DEFAULT_MAX_DIM; larger width/height is refused */
    int64_t max_pixels;   /* 0 = RS_IMAGE_DEFAULT_MAX_PIXELS; larger w*h is refused */
} rs_image_load_opts;

/* Parses "3,2,1" into opts->bands. */
rsmoe_status rs_image_parse_bands(const char *s, rs_image_load_opts *opts);

/* Decodes a JPEG, PNG or TIFF file (recognised by its first bytes, not its name).
 * opts may be NULL. On failure *out is left empty ({0}) and the message names path.
 * Errors: RSMOE_ERR_IO (missing/unreadable), RSMOE_ERR_FORMAT (empty, corrupt,
 * truncated), RSMOE_ERR_UNSUPPORTED (other formats, CMYK JPEG, float TIFF, ...),
 * RSMOE_ERR_INVALID_ARG (bad band selection, dimensions over the limits). */
rsmoe_status rs_image_load(const char *path, const rs_image_load_opts *opts, rs_image *out);
/* The same from a buffer; name is used in messages (e.g. an upload's file name). */
rsmoe_status rs_image_decode(const void *buf, size_t n, const char *name,
                             const rs_image_load_opts *opts, rs_image *out);

/* Allocates a w x h x c zeroed image. */
rsmoe_status rs_image_alloc(rs_image *img, int w, int h, int c);
void rs_image_free(rs_image *img);

/* The eight symmetries of the square (the dihedral group; remote-sensing scenes have no
 * preferred orientation, so they serve as training views): view bit 2 transposes (x <-> y),
 * then bit 0 mirrors left-right and bit 1 top-bottom. 0 identity, 1 hflip, 2 vflip, 3 rot180,
 * 4 transpose, 5 rot90 (clockwise), 6 rot270, 7 anti-transpose. Allocates *out (its width and
 * height swap for views 4-7). */
#define RS_IMAGE_VIEWS 8
rsmoe_status rs_image_dihedral(const rs_image *in, int view, rs_image *out);
/* "id", "hflip", "vflip", "rot180", "transpose", "rot90", "rot270", "antitranspose"; NULL
 * for a view outside 0..7 */
const char *rs_image_view_name(int view);
/* the view of a name above (or of its number "0".."7"), -1 if none */
int rs_image_view_parse(const char *name);

/* Resize exactly as PIL's Image.resize((W, H), Image.BICUBIC) on an 8-bit image
 * ("L", "RGB", any band count): separable, horizontal pass then vertical, cubic
 * convolution a = -0.5 with the support widened by the downscale factor, 22-bit
 * fixed-point coefficients and rounding, clamping to 0..255. Allocates *out. */
rsmoe_status rs_image_resize_bicubic_u8(const rs_image *in, int W, int H, rs_image *out);

/* Preprocessing of the reference pipeline for one image: bicubic resize to
 * W x H (skipped when the size already matches), x/255, (x - mean[k]) / std[k] in
 * float32, written planar CHW (3 x H x W floats) in RGB order. img must have c = 3
 * (or c = 1, which is replicated to 3 channels). */
rsmoe_status rs_image_preprocess(const rs_image *img, int W, int H, const float mean[3],
                                 const float std[3], float *chw_out);
/* Square size x size (BLIP-2 / EVA-CLIP: bicubic to 224 x 224 without crop). */
rsmoe_status rs_image_to_tensor(const rs_image *img, int size, const float mean[3],
                                const float std[3], float *chw_out);

/* Normalisation constants. */
extern const float rs_clip_mean[3], rs_clip_std[3];   /* EVA-CLIP / BLIP-2 */
extern const float rs_half_mean[3], rs_half_std[3];   /* 0.5/0.5: inputs in [-1, 1] (MobileNet float) */
extern const float rs_imagenet_mean[3], rs_imagenet_std[3];

#endif
