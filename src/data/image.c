/* image.c - JPEG/PNG/TIFF decoding with error handlers that record instead of printing or
 * exiting, size limits against decompression bombs, band selection and 16->8 bit. */
#include "data/image.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <tiffio.h>

const float rs_clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float rs_clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
const float rs_half_mean[3] = {0.5f, 0.5f, 0.5f};
const float rs_half_std[3] = {0.5f, 0.5f, 0.5f};
const float rs_imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
const float rs_imagenet_std[3] = {0.229f, 0.224f, 0.225f};

/* Decoded samples before band selection: w*h*c samples, 8-bit (uint8) or 16-bit
 * (uint16, native order), interleaved. */
typedef struct {
    int w, h, c, bits;
    void *buf;
} raw_image;

static void raw_free(raw_image *r) { free(r->buf); r->buf = NULL; }

rsmoe_status rs_image_alloc(rs_image *img, int w, int h, int c) {
    memset(img, 0, sizeof *img);
    if (w <= 0 || h <= 0 || c <= 0 || c > RS_IMAGE_MAX_BANDS)
        return rs_error(RSMOE_ERR_INVALID_ARG, "image: bad size %dx%dx%d", w, h, c);
    size_t n = (size_t)w * (size_t)h * (size_t)c;
    if (n / (size_t)w / (size_t)h != (size_t)c) return rs_error(RSMOE_ERR_NOMEM, "image: size overflow");
    img->data = calloc(n, 1);
    if (!img->data) return rs_error(RSMOE_ERR_NOMEM, "image: cannot allocate %dx%dx%d", w, h, c);
    img->w = w; img->h = h; img->c = c;
    return RSMOE_OK;
}

static const char *const k_view_names[RS_IMAGE_VIEWS] = {"id", "hflip", "vflip", "rot180",
                                                        "transpose", "rot90", "rot270", "antitranspose"};

const char *rs_image_view_name(int view) {
    return view >= 0 && view < RS_IMAGE_VIEWS ? k_view_names[view] : NULL;
}

int rs_image_view_parse(const char *name) {
    if (!name) return -1;
    for (int v = 0; v < RS_IMAGE_VIEWS; v++)
        if (!strcmp(name, k_view_names[v])) return v;
    if (name[0] >= '0' && name[0] < '0' + RS_IMAGE_VIEWS && !name[1]) return name[0] - '0';
    return -1;
}

rsmoe_status rs_image_dihedral(const rs_image *in, int view, rs_image *out) {
    memset(out, 0, sizeof *out);
    if (!in || !in->data || in->w < 1 || in->h < 1 || in->c < 1)
        return rs_error(RSMOE_ERR_INVALID_ARG, "image view: empty image");
    if (view < 0 || view >= RS_IMAGE_VIEWS)
        return rs_error(RSMOE_ERR_INVALID_ARG, "image view: %d is not one of 0..7", view);
    const bool tr = view & 4;
    const int W = tr ? in->h : in->w, H = tr ? in->w : in->h, C = in->c;
    rsmoe_status st = rs_image_alloc(out, W, H, C);
    if (st) return st;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sx = view & 1 ? W - 1 - x : x, sy = view & 2 ? H - 1 - y : y;
            int ix = tr ? sy : sx, iy = tr ? sx : sy;
            memcpy(out->data + ((size_t)y * W + x) * C, in->data + ((size_t)iy * in->w + ix) * C, (size_t)C);
        }
    return RSMOE_OK;
}

void rs_image_free(rs_image *img) {
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

rsmoe_status rs_image_parse_bands(const char *s, rs_image_load_opts *opts) {
    opts->nbands = 0;
    if (!s || !*s) return rs_error(RSMOE_ERR_INVALID_ARG, "--bands: empty band list");
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > 65535)
            return rs_error(RSMOE_ERR_INVALID_ARG, "--bands '%s': expected 1-based band numbers like 3,2,1", s);
        if (opts->nbands >= RS_IMAGE_MAX_BANDS)
            return rs_error(RSMOE_ERR_INVALID_ARG, "--bands '%s': at most %d bands", s, RS_IMAGE_MAX_BANDS);
        opts->bands[opts->nbands++] = (int)v;
        p = end;
        if (*p == ',') { p++; if (!*p) return rs_error(RSMOE_ERR_INVALID_ARG, "--bands '%s': trailing comma", s); }
        else if (*p) return rs_error(RSMOE_ERR_INVALID_ARG, "--bands '%s': expected 1-based band numbers like 3,2,1", s);
    }
    return RSMOE_OK;
}

typedef struct {
    const char *name;
    int max_dim;
    int64_t max_pixels;
} limits;

static rsmoe_status check_dims(const limits *L, int64_t w, int64_t h) {
    if (w <= 0 || h <= 0) return rs_error(RSMOE_ERR_FORMAT, "%s: bad image size %lldx%lld", L->name, (long long)w, (long long)h);
    if (w > L->max_dim || h > L->max_dim)
        return rs_error(RSMOE_ERR_INVALID_ARG, "%s: image %lldx%lld exceeds the %d-pixel side limit (decompression bomb?)",
                        L->name, (long long)w, (long long)h, L->max_dim);
    if (w * h > L->max_pixels)
        return rs_error(RSMOE_ERR_INVALID_ARG, "%s: image %lldx%lld exceeds the %lld-pixel limit (decompression bomb?)",
                        L->name, (long long)w, (long long)h, (long long)L->max_pixels);
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ JPEG */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int eof;
} jpeg_err;

static void jpeg_err_exit(j_common_ptr ci) {
    jpeg_err *e = (jpeg_err *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_emit(j_common_ptr ci, int level) {
    jpeg_err *e = (jpeg_err *)ci->err;
    /* warnings (level -1): a premature end of data is a truncated file, an error for us;
     * other corrupt-data warnings are tolerated as PIL does */
    if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) e->eof = 1;
}

static void jpeg_silent(j_common_ptr ci) { (void)ci; }

static rsmoe_status decode_jpeg(const uint8_t *buf, size_t n, const limits *L, raw_image *out) {
    struct jpeg_decompress_struct ci;
    jpeg_err e;
    uint8_t *volatile pix = NULL;
    memset(&e, 0, sizeof e);
    ci.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_err_exit;
    e.pub.emit_message = jpeg_emit;
    e.pub.output_message = jpeg_silent;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&ci);
        free(pix);
        return rs_error(RSMOE_ERR_FORMAT, "%s: corrupt JPEG: %s", L->name, e.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, buf, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    if (e.eof) {
        jpeg_destroy_decompress(&ci);
        return rs_error(RSMOE_ERR_FORMAT, "%s: truncated JPEG (file ends inside the header)", L->name);
    }
    rsmoe_status st = check_dims(L, ci.image_width, ci.image_height);
    if (st) { jpeg_destroy_decompress(&ci); return st; }
    int c;
    if (ci.jpeg_color_space == JCS_GRAYSCALE) { ci.out_color_space = JCS_GRAYSCALE; c = 1; }
    else if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&ci);
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: CMYK JPEG is not supported (convert it to RGB)", L->name);
    } else { ci.out_color_space = JCS_RGB; c = 3; }
    jpeg_start_decompress(&ci);
    int w = (int)ci.output_width, h = (int)ci.output_height;
    size_t stride = (size_t)w * (size_t)c;
    pix = malloc(stride * (size_t)h);
    if (!pix) {
        jpeg_destroy_decompress(&ci);
        return rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate %dx%d image", L->name, w, h);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = pix + stride * ci.output_scanline;
        jpeg_read_scanlines(&ci, &row, 1);
        if (e.eof) break;
    }
    if (e.eof) {
        jpeg_destroy_decompress(&ci);
        free(pix);
        return rs_error(RSMOE_ERR_FORMAT, "%s: truncated JPEG (data ends before the last row)", L->name);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    out->w = w; out->h = h; out->c = c; out->bits = 8; out->buf = pix;
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ PNG */
typedef struct {
    const uint8_t *p;
    size_t n, off;
    jmp_buf jb;
    char msg[256];
} png_ctx;

static void png_err_fn(png_structp png, png_const_charp msg) {
    png_ctx *c = (png_ctx *)png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "error");
    longjmp(c->jb, 1);
}
static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_fn(png_structp png, png_bytep dst, png_size_t len) {
    png_ctx *c = (png_ctx *)png_get_io_ptr(png);
    if (len > c->n - c->off) png_error(png, "file is truncated");
    memcpy(dst, c->p + c->off, len);
    c->off += len;
}

static rsmoe_status decode_png(const uint8_t *buf, size_t n, const limits *L, raw_image *out) {
    png_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.p = buf; ctx.n = n;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_err_fn, png_warn_fn);
    if (!png) return rs_error(RSMOE_ERR_NOMEM, "%s: cannot create a PNG reader", L->name);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    volatile rsmoe_status st = RSMOE_OK;
    if (!info) { png_destroy_read_struct(&png, NULL, NULL); return rs_error(RSMOE_ERR_NOMEM, "%s: cannot create a PNG reader", L->name); }
    if (setjmp(ctx.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        if (st) return st;
        return rs_error(RSMOE_ERR_FORMAT, "%s: corrupt PNG: %s", L->name, ctx.msg);
    }
    png_set_read_fn(png, &ctx, png_read_fn);
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu); /* our own limits below */
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, ilace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &ilace, NULL, NULL);
    st = check_dims(L, w, h);
    if (st) png_error(png, "size limit");
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_swap(png); /* PNG is big-endian; we want native uint16 */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = png_get_channels(png, info);
    int bits = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if ((bits != 8 && bits != 16) || rowbytes != (size_t)w * (size_t)c * (size_t)(bits / 8)) {
        ctx.msg[0] = 0;
        st = rs_error(RSMOE_ERR_UNSUPPORTED, "%s: PNG layout (%d-bit, %d channels) not supported", L->name, bits, c);
        png_error(png, "unsupported");
    }
    pix = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pix || !rows) {
        st = rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate %ux%u image", L->name, (unsigned)w, (unsigned)h);
        png_error(png, "nomem");
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pix + rowbytes * y;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    out->w = (int)w; out->h = (int)h; out->c = c; out->bits = bits; out->buf = pix;
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ TIFF */
typedef struct {
    const uint8_t *p;
    toff_t n, off;
    char msg[512];
} tiff_mem;

static tmsize_t t_read(thandle_t h, void *dst, tmsize_t sz) {
    tiff_mem *m = (tiff_mem *)h;
    if (sz < 0) return -1;
    toff_t left = m->off < m->n ? m->n - m->off : 0;
    toff_t k = (toff_t)sz < left ? (toff_t)sz : left;
    if (k) memcpy(dst, m->p + m->off, (size_t)k);
    m->off += k;
    return (tmsize_t)k;
}
static tmsize_t t_write(thandle_t h, void *src, tmsize_t sz) { (void)h; (void)src; (void)sz; return -1; }
static toff_t t_seek(thandle_t h, toff_t off, int whence) {
    tiff_mem *m = (tiff_mem *)h;
    toff_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->off : m->n;
    m->off = base + off; /* toff_t is unsigned: negative offsets wrap, as with lseek misuse */
    return m->off;
}
static int t_close(thandle_t h) { (void)h; return 0; }
static toff_t t_size(thandle_t h) { return ((tiff_mem *)h)->n; }
static int t_map(thandle_t h, void **base, toff_t *size) {
    tiff_mem *m = (tiff_mem *)h;
    *base = (void *)m->p; *size = m->n;
    return 1;
}
static void t_unmap(thandle_t h, void *base, toff_t size) { (void)h; (void)base; (void)size; }

static int t_err(TIFF *tif, void *ud, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    tiff_mem *m = (tiff_mem *)ud;
    if (!m->msg[0]) { /* keep the first error: it is the cause */
        char tmp[400];
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        snprintf(m->msg, sizeof m->msg, "%s%s%s", module ? module : "", module ? ": " : "", tmp);
    }
    return 1;
}
static int t_warn(TIFF *tif, void *ud, const char *module, const char *fmt, va_list ap) {
    (void)tif; (void)ud; (void)module; (void)fmt; (void)ap;
    return 1;
}

static rsmoe_status tiff_fail(TIFF *tif, tiff_mem *m, const limits *L, const char *what) {
    rsmoe_status st = rs_error(RSMOE_ERR_FORMAT, "%s: corrupt or truncated TIFF (%s%s%s)", L->name, what,
                               m->msg[0] ? ": " : "", m->msg);
    if (tif) TIFFClose(tif);
    return st;
}

static rsmoe_status decode_tiff(const uint8_t *buf, size_t n, const limits *L, bool want_raw_bands,
                                raw_image *out) {
    tiff_mem m;
    memset(&m, 0, sizeof m);
    m.p = buf; m.n = n;
    TIFFOpenOptions *to = TIFFOpenOptionsAlloc();
    if (!to) return rs_error(RSMOE_ERR_NOMEM, "%s: cannot create a TIFF reader", L->name);
    TIFFOpenOptionsSetErrorHandlerExtR(to, t_err, &m);
    TIFFOpenOptionsSetWarningHandlerExtR(to, t_warn, &m);
    TIFFOpenOptionsSetMaxSingleMemAlloc(to, (tmsize_t)1 << 31);
    TIFF *tif = TIFFClientOpenExt(L->name, "rm", (thandle_t)&m, t_read, t_write, t_seek, t_close, t_size,
                                  t_map, t_unmap, to);
    TIFFOpenOptionsFree(to);
    if (!tif) return tiff_fail(NULL, &m, L, "cannot read the header");
    uint32_t w = 0, h = 0;
    uint16_t spp = 1, bps = 1, fmt = SAMPLEFORMAT_UINT, photo = PHOTOMETRIC_MINISBLACK, planar = PLANARCONFIG_CONTIG;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h))
        return tiff_fail(tif, &m, L, "no image size");
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photo)) photo = spp >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
    rsmoe_status st = check_dims(L, w, h);
    if (st) { TIFFClose(tif); return st; }
    if (spp < 1 || spp > 64) { TIFFClose(tif); return rs_error(RSMOE_ERR_FORMAT, "%s: TIFF with %u samples per pixel", L->name, spp); }
    if (fmt != SAMPLEFORMAT_UINT) {
        TIFFClose(tif);
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: TIFF sample format %s is not supported (only unsigned integers)",
                        L->name, fmt == SAMPLEFORMAT_IEEEFP ? "float" : fmt == SAMPLEFORMAT_INT ? "signed" : "other");
    }
    bool direct = (bps == 8 || bps == 16) &&
                  (photo == PHOTOMETRIC_MINISBLACK || photo == PHOTOMETRIC_MINISWHITE || photo == PHOTOMETRIC_RGB ||
                   (photo == PHOTOMETRIC_SEPARATED && want_raw_bands));
    uint16_t comp = COMPRESSION_NONE;
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &comp);
    if (photo == PHOTOMETRIC_SEPARATED && !want_raw_bands) {
        TIFFClose(tif);
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: CMYK (separated) TIFF: choose bands explicitly (e.g. --bands 1,2,3)", L->name);
    }
    if (!direct) {
        if (bps > 8) {
            TIFFClose(tif);
            return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: %u-bit TIFF with photometric %u is not supported", L->name, bps, photo);
        }
        /* palette, YCbCr, 1/2/4-bit: libtiff's RGBA interface converts them */
        uint32_t *rgba = malloc((size_t)w * h * 4);
        if (!rgba) { TIFFClose(tif); return rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate %ux%u image", L->name, w, h); }
        char emsg[1024] = "";
        if (!TIFFRGBAImageOK(tif, emsg)) {
            free(rgba);
            TIFFClose(tif);
            return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: TIFF layout not supported: %s", L->name, emsg);
        }
        if (!TIFFReadRGBAImageOriented(tif, w, h, rgba, ORIENTATION_TOPLEFT, 0)) {
            free(rgba);
            return tiff_fail(tif, &m, L, "reading pixels");
        }
        TIFFClose(tif);
        uint8_t *pix = malloc((size_t)w * h * 4);
        if (!pix) { free(rgba); return rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate %ux%u image", L->name, w, h); }
        for (size_t i = 0; i < (size_t)w * h; i++) {
            uint32_t v = rgba[i];
            pix[4 * i + 0] = (uint8_t)TIFFGetR(v); pix[4 * i + 1] = (uint8_t)TIFFGetG(v);
            pix[4 * i + 2] = (uint8_t)TIFFGetB(v); pix[4 * i + 3] = (uint8_t)TIFFGetA(v);
        }
        free(rgba);
        bool grey = photo == PHOTOMETRIC_MINISBLACK || photo == PHOTOMETRIC_MINISWHITE;
        if (grey) for (size_t i = 0; i < (size_t)w * h; i++) pix[i] = pix[4 * i];
        out->w = (int)w; out->h = (int)h; out->c = grey ? 1 : 4; out->bits = 8; out->buf = pix;
        return RSMOE_OK;
    }
    int bytes = bps / 8;
    size_t npix = (size_t)w * h;
    uint8_t *pix = malloc(npix * spp * bytes);
    uint8_t *tmp = NULL;
    if (!pix) { TIFFClose(tif); return rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate %ux%u image", L->name, w, h); }
    size_t pstride = (size_t)spp * bytes; /* bytes per pixel in pix */
    if (TIFFIsTiled(tif)) {
        uint32_t tw = 0, th = 0;
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
        tmsize_t tsz = TIFFTileSize(tif);
        if (!tw || !th || tsz <= 0) { free(pix); return tiff_fail(tif, &m, L, "bad tile size"); }
        tmp = malloc((size_t)tsz);
        if (!tmp) { free(pix); TIFFClose(tif); return rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate a tile", L->name); }
        int nplanes = planar == PLANARCONFIG_SEPARATE ? spp : 1;
        int tspp = planar == PLANARCONFIG_SEPARATE ? 1 : spp;
        for (int s = 0; s < nplanes; s++)
            for (uint32_t ty = 0; ty < h; ty += th)
                for (uint32_t tx = 0; tx < w; tx += tw) {
                    if (TIFFReadTile(tif, tmp, tx, ty, 0, (uint16_t)s) < 0) {
                        free(pix); free(tmp);
                        return tiff_fail(tif, &m, L, "reading a tile");
                    }
                    uint32_t cw = tx + tw > w ? w - tx : tw, ch = ty + th > h ? h - ty : th;
                    for (uint32_t yy = 0; yy < ch; yy++) {
                        const uint8_t *src = tmp + (size_t)yy * tw * tspp * bytes;
                        uint8_t *dst = pix + ((size_t)(ty + yy) * w + tx) * pstride;
                        if (tspp == spp) memcpy(dst, src, (size_t)cw * pstride);
                        else
                            for (uint32_t xx = 0; xx < cw; xx++)
                                memcpy(dst + xx * pstride + (size_t)s * bytes, src + (size_t)xx * bytes, bytes);
                    }
                }
    } else {
        tmsize_t lsz = TIFFScanlineSize(tif);
        if (lsz <= 0) { free(pix); return tiff_fail(tif, &m, L, "bad scanline size"); }
        tmp = malloc((size_t)lsz);
        if (!tmp) { free(pix); TIFFClose(tif); return rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate a row", L->name); }
        if (planar == PLANARCONFIG_SEPARATE) {
            for (int s = 0; s < spp; s++)
                for (uint32_t y = 0; y < h; y++) {
                    if (TIFFReadScanline(tif, tmp, y, (uint16_t)s) < 0) {
                        free(pix); free(tmp);
                        return tiff_fail(tif, &m, L, "reading a row");
                    }
                    uint8_t *dst = pix + (size_t)y * w * pstride + (size_t)s * bytes;
                    for (uint32_t x = 0; x < w; x++) memcpy(dst + x * pstride, tmp + (size_t)x * bytes, bytes);
                }
        } else {
            if ((size_t)lsz < (size_t)w * pstride) { free(pix); free(tmp); return tiff_fail(tif, &m, L, "short scanline"); }
            for (uint32_t y = 0; y < h; y++) {
                if (TIFFReadScanline(tif, tmp, y, 0) < 0) {
                    free(pix); free(tmp);
                    return tiff_fail(tif, &m, L, "reading a row");
                }
                memcpy(pix + (size_t)y * w * pstride, tmp, (size_t)w * pstride);
            }
        }
    }
    free(tmp);
    TIFFClose(tif);
    if (photo == PHOTOMETRIC_MINISWHITE) {
        if (bytes == 1) for (size_t i = 0; i < npix * spp; i++) pix[i] = (uint8_t)(255 - pix[i]);
        else {
            uint16_t *p16 = (uint16_t *)(void *)pix;
            for (size_t i = 0; i < npix * spp; i++) p16[i] = (uint16_t)(65535 - p16[i]);
        }
    }
    out->w = (int)w; out->h = (int)h; out->c = spp; out->bits = bps; out->buf = pix;
    return RSMOE_OK;
}

/* ------------------------------------------------------------------ common */
static rsmoe_status finish(const raw_image *r, const rs_image_load_opts *o, const char *name, rs_image *out) {
    int sel[RS_IMAGE_MAX_BANDS], ns = 0;
    if (o && o->nbands > 0) {
        for (int i = 0; i < o->nbands; i++) {
            if (o->bands[i] < 1 || o->bands[i] > r->c)
                return rs_error(RSMOE_ERR_INVALID_ARG, "%s: band %d requested but the image has %d band%s", name,
                                o->bands[i], r->c, r->c == 1 ? "" : "s");
            sel[ns++] = o->bands[i] - 1;
        }
    } else if (r->c <= 2) {
        sel[ns++] = 0; /* grey, or grey + alpha */
    } else {
        sel[0] = 0; sel[1] = 1; sel[2] = 2; ns = 3; /* RGB, RGBA or bands 1,2,3 */
    }
    int oc = (ns == 1 && !(o && o->keep_grey)) ? 3 : ns;
    rsmoe_status st = rs_image_alloc(out, r->w, r->h, oc);
    if (st) return rs_error(st, "%s: cannot allocate %dx%dx%d image", name, r->w, r->h, oc);
    size_t npix = (size_t)r->w * r->h;
    if (r->bits == 8) {
        const uint8_t *src = r->buf;
        for (int k = 0; k < ns; k++)
            for (size_t i = 0; i < npix; i++) out->data[i * oc + k] = src[i * r->c + sel[k]];
    } else {
        const uint16_t *src = r->buf;
        for (int k = 0; k < ns; k++) {
            uint32_t lo = 0, hi = 65535;
            if (o && o->depth16 == RS_DEPTH16_MINMAX) {
                lo = 65535; hi = 0;
                for (size_t i = 0; i < npix; i++) {
                    uint32_t v = src[i * r->c + sel[k]];
                    if (v < lo) lo = v;
                    if (v > hi) hi = v;
                }
            }
            uint32_t range = hi > lo ? hi - lo : 1;
            for (size_t i = 0; i < npix; i++) {
                uint32_t v = src[i * r->c + sel[k]] - lo;
                out->data[i * oc + k] = (uint8_t)((v * 255u + range / 2) / range);
            }
        }
    }
    if (oc != ns) /* grey -> RGB */
        for (size_t i = 0; i < npix; i++) out->data[i * 3 + 1] = out->data[i * 3 + 2] = out->data[i * 3];
    return RSMOE_OK;
}

rsmoe_status rs_image_decode(const void *buf, size_t n, const char *name, const rs_image_load_opts *opts,
                             rs_image *out) {
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_image_decode: NULL output");
    memset(out, 0, sizeof *out);
    if (!name) name = "(buffer)";
    if (!buf && n) return rs_error(RSMOE_ERR_INVALID_ARG, "%s: NULL buffer", name);
    limits L = {name, opts && opts->max_dim > 0 ? opts->max_dim : RS_IMAGE_DEFAULT_MAX_DIM,
                opts && opts->max_pixels > 0 ? opts->max_pixels : RS_IMAGE_DEFAULT_MAX_PIXELS};
    const uint8_t *p = buf;
    if (n == 0) return rs_error(RSMOE_ERR_FORMAT, "%s: empty file (0 bytes)", name);
    raw_image r = {0};
    rsmoe_status st;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) st = decode_jpeg(p, n, &L, &r);
    else if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) st = decode_png(p, n, &L, &r);
    else if (n >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4) || !memcmp(p, "II+\0", 4) ||
                        !memcmp(p, "MM\0+", 4)))
        st = decode_tiff(p, n, &L, opts && opts->nbands > 0, &r);
    else if (n < 8) return rs_error(RSMOE_ERR_FORMAT, "%s: file too short (%zu bytes) to be an image", name, n);
    else return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: not a JPEG, PNG or TIFF file", name);
    if (st) return st;
    st = finish(&r, opts, name, out);
    raw_free(&r);
    return st;
}

rsmoe_status rs_image_load(const char *path, const rs_image_load_opts *opts, rs_image *out) {
    if (!out) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_image_load: NULL output");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return rs_error(RSMOE_ERR_INVALID_ARG, "rs_image_load: empty path");
    FILE *f = fopen(path, "rb");
    if (!f) return rs_error(RSMOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return rs_error(RSMOE_ERR_IO, "%s: not a regular file", path);
    }
    if ((int64_t)sb.st_size > RS_IMAGE_DEFAULT_MAX_FILE) {
        fclose(f);
        return rs_error(RSMOE_ERR_INVALID_ARG, "%s: file of %lld bytes is over the 2 GiB limit", path, (long long)sb.st_size);
    }
    size_t n = (size_t)sb.st_size;
    if (n == 0) { fclose(f); return rs_error(RSMOE_ERR_FORMAT, "%s: empty file (0 bytes)", path); }
    uint8_t *buf = malloc(n);
    if (!buf) { fclose(f); return rs_error(RSMOE_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n); }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) { free(buf); return rs_error(RSMOE_ERR_IO, "%s: read error", path); }
    rsmoe_status st = rs_image_decode(buf, n, path, opts, out);
    free(buf);
    return st;
}
