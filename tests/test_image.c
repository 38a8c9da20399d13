/* test_image.c - decoders against PIL's decoded pixels and libtiff-written files,
 * broken files, band selection, and the bicubic resize / preprocessing against PIL. */
#include "data/image.h"
#include "test.h"

#include <stdint.h>
#include <tiffio.h>

#define DATA "tests/data/"

static uint8_t *read_all(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static int max_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* decode `file` and compare with PIL's pixels in `ref` (c channels) */
static void check_vs_pil(const char *file, const char *ref, int c, int w, int h) {
    rs_image_load_opts o = {0};
    o.keep_grey = c == 1;
    rs_image im;
    rsmoe_status st = rs_image_load(file, &o, &im);
    REQUIRE(st == RSMOE_OK, "%s: %s", file, rsmoe_last_error());
    CHECK(im.w == w && im.h == h && im.c == c, "%s: got %dx%dx%d", file, im.w, im.h, im.c);
    size_t n = 0;
    uint8_t *r = read_all(ref, &n);
    CHECK(r && n == (size_t)w * h * c, "%s: reference size %zu", ref, n);
    if (r && n == (size_t)im.w * im.h * im.c) CHECK(max_diff(im.data, r, n) == 0, "%s differs from PIL by %d", file, max_diff(im.data, r, n));
    free(r);
    rs_image_free(&im);
}

TEST(png_decode_matches_pil) {
    check_vs_pil(DATA "rgb37.png", DATA "rgb37.png.rgb", 3, 37, 29);
    check_vs_pil(DATA "grey20.png", DATA "grey20.png.grey", 1, 20, 15);
    check_vs_pil(DATA "rgba12.png", DATA "rgba12.png.rgb", 3, 12, 10);
    check_vs_pil(DATA "pal12.png", DATA "pal12.png.rgb", 3, 12, 10);
    /* grey expanded to RGB by default, as convert("RGB") */
    rs_image im;
    REQUIRE(rs_image_load(DATA "grey20.png", NULL, &im) == RSMOE_OK, "%s", rsmoe_last_error());
    size_t n;
    uint8_t *g = read_all(DATA "grey20.png.grey", &n);
    REQUIRE(g && im.c == 3, "c=%d", im.c);
    int bad = 0;
    for (int i = 0; i < 300; i++)
        bad += im.data[3 * i] != g[i] || im.data[3 * i + 1] != g[i] || im.data[3 * i + 2] != g[i];
    CHECK(bad == 0, "%d grey pixels not replicated", bad);
    free(g);
    rs_image_free(&im);
}

TEST(png_16bit_scaled) {
    rs_image_load_opts o = {0};
    o.keep_grey = true;
    rs_image im;
    REQUIRE(rs_image_load(DATA "grey16_9x7.png", &o, &im) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(im.w == 9 && im.h == 7 && im.c == 1, "%dx%dx%d", im.w, im.h, im.c);
    int bad = 0;
    for (int i = 0; i < 63; i++) { /* the fixture holds v = 1000 i + 17 */
        int want = (int)floor((1000.0 * i + 17) * 255.0 / 65535.0 + 0.5);
        bad += im.data[i] != want;
    }
    CHECK(bad == 0, "%d samples wrong", bad);
    rs_image_free(&im);
}

TEST(jpeg_decode_matches_pil) {
    check_vs_pil(DATA "rgb40.jpg", DATA "rgb40.jpg.rgb", 3, 40, 30);
    check_vs_pil(DATA "grey24.jpg", DATA "grey24.jpg.grey", 1, 24, 16);
}

TEST(tiff_from_pil_lzw) { check_vs_pil(DATA "rgb37_lzw.tif", DATA "rgb37.png.rgb", 3, 37, 29); }

/* sample value of band b at (x, y) in the libtiff-written files */
static unsigned tv(int x, int y, int b, int bits) {
    unsigned v = (unsigned)(x * 37 + y * 101 + b * 1009 + (x * y) % 13);
    return bits == 8 ? v % 256 : (v * 7) % 65536;
}

static void write_tiff(const char *path, int w, int h, int spp, int bits, int photo, int comp, int planar, int tile,
                       int sfmt) {
    TIFF *t = TIFFOpen(path, "w");
    if (!t) return;
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bits);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, photo);
    TIFFSetField(t, TIFFTAG_COMPRESSION, comp);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, planar);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, sfmt);
    if (photo == PHOTOMETRIC_RGB && spp > 3) {
        uint16_t extra[16];
        for (int i = 0; i < spp - 3; i++) extra[i] = EXTRASAMPLE_UNSPECIFIED;
        TIFFSetField(t, TIFFTAG_EXTRASAMPLES, spp - 3, extra);
    } else if (photo != PHOTOMETRIC_RGB && spp > 1) {
        uint16_t extra[16];
        for (int i = 0; i < spp - 1; i++) extra[i] = EXTRASAMPLE_UNSPECIFIED;
        TIFFSetField(t, TIFFTAG_EXTRASAMPLES, spp - 1, extra);
    }
    int B = bits / 8, sep = planar == PLANARCONFIG_SEPARATE;
    int nsp = sep ? 1 : spp;
    if (tile) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, 16);
        TIFFSetField(t, TIFFTAG_TILELENGTH, 16);
        uint8_t *buf = calloc((size_t)16 * 16 * nsp, B);
        for (int s = 0; s < (sep ? spp : 1); s++)
            for (int ty = 0; ty < h; ty += 16)
                for (int tx = 0; tx < w; tx += 16) {
                    for (int y = 0; y < 16; y++)
                        for (int x = 0; x < 16; x++)
                            for (int k = 0; k < nsp; k++) {
                                int b = sep ? s : k;
                                unsigned v = tv(tx + x, ty + y, b, bits);
                                size_t i = ((size_t)y * 16 + x) * nsp + k;
                                if (B == 1) buf[i] = (uint8_t)v; else ((uint16_t *)buf)[i] = (uint16_t)v;
                            }
                    TIFFWriteTile(t, buf, tx, ty, 0, (uint16_t)s);
                }
        free(buf);
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 3);
        uint8_t *row = calloc((size_t)w * nsp, B);
        for (int s = 0; s < (sep ? spp : 1); s++)
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++)
                    for (int k = 0; k < nsp; k++) {
                        unsigned v = tv(x, y, sep ? s : k, bits);
                        size_t i = (size_t)x * nsp + k;
                        if (sfmt == SAMPLEFORMAT_IEEEFP) ((float *)row)[i] = (float)v;
                        else if (B == 1) row[i] = (uint8_t)v; else ((uint16_t *)row)[i] = (uint16_t)v;
                    }
                TIFFWriteScanline(t, row, y, (uint16_t)s);
            }
        free(row);
    }
    TIFFClose(t);
}

static char g_tmp[256];
static const char *tmpdir(void) {
    if (!g_tmp[0]) {
        snprintf(g_tmp, sizeof g_tmp, "/tmp/rsmoe_test_image_XXXXXX");
        if (!mkdtemp(g_tmp)) g_tmp[0] = 0;
    }
    return g_tmp;
}

/* load `path` with bands and compare with tv() through the expected 16->8 mapping */
static void check_tiff(const char *path, int w, int h, int bits, const int *bands, int nb, int want_c) {
    rs_image_load_opts o = {0};
    for (int i = 0; i < nb; i++) o.bands[i] = bands[i];
    o.nbands = nb;
    o.keep_grey = true;
    rs_image im;
    rsmoe_status st = rs_image_load(path, &o, &im);
    REQUIRE(st == RSMOE_OK, "%s: %s", path, rsmoe_last_error());
    REQUIRE(im.w == w && im.h == h && im.c == want_c, "%s: %dx%dx%d", path, im.w, im.h, im.c);
    int bad = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < want_c; k++) {
                unsigned v = tv(x, y, bands[k] - 1, bits);
                int want = bits == 8 ? (int)v : (int)floor(v * 255.0 / 65535.0 + 0.5);
                bad += im.data[((size_t)y * w + x) * want_c + k] != want;
            }
    CHECK(bad == 0, "%s: %d samples wrong", path, bad);
    rs_image_free(&im);
}

TEST(tiff_variants_from_libtiff) {
    const char *d = tmpdir();
    REQUIRE(d[0], "no temp dir");
    char p[512];
    int rgb[3] = {1, 2, 3}, one[1] = {1}, bgr[3] = {3, 2, 1}, b542[3] = {5, 4, 2};
    snprintf(p, sizeof p, "%s/rgb8_lzw.tif", d);
    write_tiff(p, 37, 23, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_LZW, PLANARCONFIG_CONTIG, 0, SAMPLEFORMAT_UINT);
    check_tiff(p, 37, 23, 8, rgb, 3, 3);
    check_tiff(p, 37, 23, 8, bgr, 3, 3);
    snprintf(p, sizeof p, "%s/grey8_packbits.tif", d);
    write_tiff(p, 30, 20, 1, 8, PHOTOMETRIC_MINISBLACK, COMPRESSION_PACKBITS, PLANARCONFIG_CONTIG, 0, SAMPLEFORMAT_UINT);
    check_tiff(p, 30, 20, 8, one, 1, 1);
    snprintf(p, sizeof p, "%s/grey16_deflate.tif", d);
    write_tiff(p, 33, 17, 1, 16, PHOTOMETRIC_MINISBLACK, COMPRESSION_ADOBE_DEFLATE, PLANARCONFIG_CONTIG, 0, SAMPLEFORMAT_UINT);
    check_tiff(p, 33, 17, 16, one, 1, 1);
    snprintf(p, sizeof p, "%s/ms5_16_sep_tiled.tif", d);
    write_tiff(p, 40, 35, 5, 16, PHOTOMETRIC_MINISBLACK, COMPRESSION_ADOBE_DEFLATE, PLANARCONFIG_SEPARATE, 1, SAMPLEFORMAT_UINT);
    check_tiff(p, 40, 35, 16, bgr, 3, 3);
    check_tiff(p, 40, 35, 16, b542, 3, 3);
    snprintf(p, sizeof p, "%s/ms4_8_contig_tiled.tif", d);
    write_tiff(p, 21, 19, 4, 8, PHOTOMETRIC_RGB, COMPRESSION_LZW, PLANARCONFIG_CONTIG, 1, SAMPLEFORMAT_UINT);
    check_tiff(p, 21, 19, 8, rgb, 3, 3);
    int b4[1] = {4};
    check_tiff(p, 21, 19, 8, b4, 1, 1);
    snprintf(p, sizeof p, "%s/ms6_8_sep_strips.tif", d);
    write_tiff(p, 26, 11, 6, 8, PHOTOMETRIC_MINISBLACK, COMPRESSION_PACKBITS, PLANARCONFIG_SEPARATE, 0, SAMPLEFORMAT_UINT);
    int b6[3] = {6, 1, 3};
    check_tiff(p, 26, 11, 8, b6, 3, 3);

    /* default band choice for > 3 bands: 1,2,3 */
    rs_image im;
    snprintf(p, sizeof p, "%s/ms5_16_sep_tiled.tif", d);
    REQUIRE(rs_image_load(p, NULL, &im) == RSMOE_OK, "%s", rsmoe_last_error());
    CHECK(im.c == 3 && im.data[0] == (int)floor(tv(0, 0, 0, 16) * 255.0 / 65535.0 + 0.5), "default bands");
    rs_image_free(&im);
    /* a band beyond the file's count */
    rs_image_load_opts o = {0};
    REQUIRE(rs_image_parse_bands("7,1,2", &o) == RSMOE_OK, "parse");
    rsmoe_status st = rs_image_load(p, &o, &im);
    CHECK(st == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "band 7") && strstr(rsmoe_last_error(), p),
          "got %d '%s'", st, rsmoe_last_error());
    /* per-band min-max stretch: band 2's minimum maps to 0 and its maximum to 255 */
    o.nbands = 1; o.bands[0] = 2; o.keep_grey = true; o.depth16 = RS_DEPTH16_MINMAX;
    REQUIRE(rs_image_load(p, &o, &im) == RSMOE_OK, "%s", rsmoe_last_error());
    unsigned lo = 65535, hi = 0;
    for (int y = 0; y < 35; y++)
        for (int x = 0; x < 40; x++) { unsigned v = tv(x, y, 1, 16); if (v < lo) lo = v; if (v > hi) hi = v; }
    int bad = 0;
    for (int y = 0; y < 35; y++)
        for (int x = 0; x < 40; x++) {
            int want = (int)floor((tv(x, y, 1, 16) - lo) * 255.0 / (hi - lo) + 0.5);
            bad += abs(im.data[y * 40 + x] - want) > 0;
        }
    CHECK(bad == 0, "minmax: %d wrong", bad);
    rs_image_free(&im);
    /* float samples: a clear "unsupported" naming the file */
    snprintf(p, sizeof p, "%s/float.tif", d);
    write_tiff(p, 8, 8, 1, 32, PHOTOMETRIC_MINISBLACK, COMPRESSION_NONE, PLANARCONFIG_CONTIG, 0, SAMPLEFORMAT_IEEEFP);
    st = rs_image_load(p, NULL, &im);
    CHECK(st == RSMOE_ERR_UNSUPPORTED && strstr(rsmoe_last_error(), p), "float tiff: %d %s", st, rsmoe_last_error());
}

/* palette and 1-bit TIFFs go through libtiff's RGBA reader */
TEST(tiff_palette_and_bilevel) {
    const char *d = tmpdir();
    REQUIRE(d[0], "no temp dir");
    char p[512];
    snprintf(p, sizeof p, "%s/pal.tif", d);
    TIFF *t = TIFFOpen(p, "w");
    REQUIRE(t, "TIFFOpen");
    uint16_t r[256], g[256], b[256];
    for (int i = 0; i < 256; i++) { r[i] = (uint16_t)(i * 257); g[i] = (uint16_t)((255 - i) * 257); b[i] = (uint16_t)((i * 7 % 256) * 257); }
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 10); TIFFSetField(t, TIFFTAG_IMAGELENGTH, 6);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1); TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_PALETTE); TIFFSetField(t, TIFFTAG_COLORMAP, r, g, b);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG); TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 6);
    uint8_t row[10];
    for (int y = 0; y < 6; y++) {
        for (int x = 0; x < 10; x++) row[x] = (uint8_t)(x * 20 + y * 3);
        TIFFWriteScanline(t, row, (uint32_t)y, 0);
    }
    TIFFClose(t);
    rs_image im;
    REQUIRE(rs_image_load(p, NULL, &im) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(im.w == 10 && im.h == 6 && im.c == 3, "%dx%dx%d", im.w, im.h, im.c);
    int bad = 0;
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 10; x++) {
            int i = x * 20 + y * 3;
            const uint8_t *px = im.data + (y * 10 + x) * 3;
            bad += px[0] != i || px[1] != 255 - i || px[2] != i * 7 % 256;
        }
    CHECK(bad == 0, "palette: %d pixels wrong", bad);
    rs_image_free(&im);
    snprintf(p, sizeof p, "%s/bilevel.tif", d);
    t = TIFFOpen(p, "w");
    REQUIRE(t, "TIFFOpen");
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 13); TIFFSetField(t, TIFFTAG_IMAGELENGTH, 5);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1); TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 1);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK); TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 5);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_PACKBITS);
    for (int y = 0; y < 5; y++) {
        uint8_t bits[2] = {0, 0};
        for (int x = 0; x < 13; x++)
            if ((x + y) % 3 == 0) bits[x / 8] |= (uint8_t)(0x80 >> (x % 8));
        TIFFWriteScanline(t, bits, (uint32_t)y, 0);
    }
    TIFFClose(t);
    rs_image_load_opts o = {0};
    o.keep_grey = true;
    REQUIRE(rs_image_load(p, &o, &im) == RSMOE_OK, "%s", rsmoe_last_error());
    REQUIRE(im.w == 13 && im.h == 5 && im.c == 1, "%dx%dx%d", im.w, im.h, im.c);
    bad = 0;
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 13; x++) bad += im.data[y * 13 + x] != ((x + y) % 3 == 0 ? 255 : 0);
    CHECK(bad == 0, "bilevel: %d pixels wrong", bad);
    rs_image_free(&im);
}

TEST(parse_bands) {
    rs_image_load_opts o = {0};
    CHECK(rs_image_parse_bands("3,2,1", &o) == RSMOE_OK && o.nbands == 3 && o.bands[0] == 3 && o.bands[2] == 1, "3,2,1");
    CHECK(rs_image_parse_bands("4", &o) == RSMOE_OK && o.nbands == 1 && o.bands[0] == 4, "4");
    CHECK(rs_image_parse_bands("", &o) == RSMOE_ERR_INVALID_ARG, "empty");
    CHECK(rs_image_parse_bands("0,1", &o) == RSMOE_ERR_INVALID_ARG, "0 is not a band");
    CHECK(rs_image_parse_bands("1,,2", &o) == RSMOE_ERR_INVALID_ARG, "1,,2");
    CHECK(rs_image_parse_bands("1,2,", &o) == RSMOE_ERR_INVALID_ARG, "trailing comma");
    CHECK(rs_image_parse_bands("a", &o) == RSMOE_ERR_INVALID_ARG, "a");
}

static void expect_fail(const char *file, rsmoe_status want, const char *needle) {
    rs_image im;
    memset(&im, 0x5a, sizeof im);
    rsmoe_status st = rs_image_load(file, NULL, &im);
    const char *m = rsmoe_last_error();
    CHECK(st == want, "%s: status %d (%s), want %d", file, st, m, want);
    CHECK(strstr(m, file) != NULL, "%s: message does not name the file: %s", file, m);
    if (needle) CHECK(strstr(m, needle) != NULL, "%s: message lacks '%s': %s", file, needle, m);
    CHECK(im.data == NULL && im.w == 0, "%s: output not left empty", file);
}

TEST(broken_files_fail_cleanly) {
    expect_fail(DATA "truncated.jpg", RSMOE_ERR_FORMAT, "truncated");
    expect_fail(DATA "truncated.png", RSMOE_ERR_FORMAT, "truncated");
    expect_fail(DATA "corrupt.png", RSMOE_ERR_FORMAT, NULL);
    expect_fail(DATA "truncated.tif", RSMOE_ERR_FORMAT, NULL);
    expect_fail(DATA "empty.png", RSMOE_ERR_FORMAT, "empty");
    expect_fail(DATA "notimage.jpg", RSMOE_ERR_UNSUPPORTED, "not a JPEG, PNG or TIFF");
    expect_fail(DATA "bomb.png", RSMOE_ERR_INVALID_ARG, "limit");
    expect_fail(DATA "bomb.tif", RSMOE_ERR_INVALID_ARG, "limit");
    expect_fail(DATA "no_such_file.png", RSMOE_ERR_IO, NULL);
    expect_fail(DATA, RSMOE_ERR_IO, NULL); /* a folder */
    /* every prefix of a valid file fails cleanly or decodes (never crashes) */
    const char *files[] = {DATA "rgb40.jpg", DATA "rgb37.png", DATA "rgb37_lzw.tif"};
    for (int f = 0; f < 3; f++) {
        size_t n;
        uint8_t *b = read_all(files[f], &n);
        REQUIRE(b, "%s", files[f]);
        for (size_t cut = 0; cut < n; cut += 1 + cut / 8) {
            rs_image im;
            rsmoe_status st = rs_image_decode(b, cut, "prefix", NULL, &im);
            if (st == RSMOE_OK) rs_image_free(&im);
            else CHECK(strstr(rsmoe_last_error(), "prefix"), "cut %zu: %s", cut, rsmoe_last_error());
        }
        free(b);
    }
    /* caller limits are applied before any pixel allocation */
    rs_image_load_opts o = {0};
    o.max_dim = 16;
    rs_image im;
    rsmoe_status st = rs_image_load(DATA "rgb37.png", &o, &im);
    CHECK(st == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "limit"), "max_dim: %s", rsmoe_last_error());
    o.max_dim = 0;
    o.max_pixels = 100;
    st = rs_image_load(DATA "rgb40.jpg", &o, &im);
    CHECK(st == RSMOE_ERR_INVALID_ARG && strstr(rsmoe_last_error(), "limit"), "max_pixels: %s", rsmoe_last_error());
}

TEST(resize_matches_committed_pil) {
    rs_image im;
    REQUIRE(rs_image_load(DATA "rgb37.png", NULL, &im) == RSMOE_OK, "%s", rsmoe_last_error());
    int sizes[3][2] = {{16, 12}, {53, 41}, {5, 60}};
    for (int i = 0; i < 3; i++) {
        char ref[128];
        snprintf(ref, sizeof ref, "tests/ref/pil_rgb37_%dx%d.u8", sizes[i][0], sizes[i][1]);
        size_t n;
        uint8_t *r = read_all(ref, &n);
        REQUIRE(r, "missing %s", ref);
        rs_image o;
        REQUIRE(rs_image_resize_bicubic_u8(&im, sizes[i][0], sizes[i][1], &o) == RSMOE_OK, "%s", rsmoe_last_error());
        CHECK(n == (size_t)o.w * o.h * 3, "%s size", ref);
        if (n == (size_t)o.w * o.h * 3) {
            int d = max_diff(o.data, r, n);
            CHECK(d == 0, "%s: max diff %d (PIL parity should be exact)", ref, d);
        }
        free(r);
        rs_image_free(&o);
    }
    rs_image_free(&im);
}

/* live comparison with PIL on synthetic images and real RSICD images */
TEST(resize_and_tensor_match_live_pil) {
    if (access("/usr/bin/python3", X_OK) != 0) SKIP("/usr/bin/python3 not found");
    const char *d = tmpdir();
    REQUIRE(d[0], "no temp dir");
    char cmd[2048], out[512];
    snprintf(out, sizeof out, "%s/pil", d);
    int len = snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/pil_resize.py %s", out);
    const char *sh = test_shared_dir();
    if (sh) {
        const char *imgs[] = {"airport_1.jpg", "00001.jpg", "river_10.jpg"};
        for (int i = 0; i < 3; i++) {
            char p[512];
            snprintf(p, sizeof p, "%s/data/rsicd/images/%s", sh, imgs[i]);
            if (access(p, R_OK) == 0) len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s", p);
        }
    }
    snprintf(cmd + len, sizeof cmd - (size_t)len, " 2>/dev/null");
    if (system(cmd) != 0) SKIP("tests/ref/pil_resize.py failed (python3 with numpy and PIL needed)");
    char man[600];
    snprintf(man, sizeof man, "%s/manifest.txt", out);
    FILE *f = fopen(man, "r");
    REQUIRE(f, "no manifest");
    char in[512], mode[16], ref[512];
    int W, H, checked = 0, worst = 0;
    double worst_t = 0;
    while (fscanf(f, "%511s %15s %d %d %511s", in, mode, &W, &H, ref) == 5) {
        rs_image_load_opts o = {0};
        o.keep_grey = !strcmp(mode, "L");
        rs_image im;
        rsmoe_status st = rs_image_load(in, &o, &im);
        CHECK(st == RSMOE_OK, "%s: %s", in, rsmoe_last_error());
        if (st) continue;
        size_t n;
        uint8_t *r = read_all(ref, &n);
        CHECK(r != NULL, "missing %s", ref);
        if (!strcmp(mode, "tensor")) {
            float *t = malloc(sizeof(float) * 3 * W * H);
            CHECK(rs_image_to_tensor(&im, W, rs_clip_mean, rs_clip_std, t) == RSMOE_OK, "%s", rsmoe_last_error());
            CHECK(n == sizeof(float) * 3 * W * H, "tensor size");
            if (r && n == sizeof(float) * 3 * W * H) {
                const float *rf = (const float *)(void *)r;
                double m = 0;
                for (int i = 0; i < 3 * W * H; i++) m = fmax(m, fabs((double)t[i] - rf[i]));
                if (m > worst_t) worst_t = m;
                CHECK(m < 1e-5, "%s: tensor max abs diff %g", in, m);
            }
            free(t);
        } else {
            rs_image o2;
            CHECK(rs_image_resize_bicubic_u8(&im, W, H, &o2) == RSMOE_OK, "%s", rsmoe_last_error());
            if (r && n == (size_t)W * H * o2.c) {
                int dd = max_diff(o2.data, r, n);
                if (dd > worst) worst = dd;
                CHECK(dd <= 1, "%s -> %dx%d: max diff %d gray levels", in, W, H, dd);
            } else CHECK(0, "%s: reference size %zu", ref, n);
            rs_image_free(&o2);
        }
        checked++;
        free(r);
        rs_image_free(&im);
    }
    fclose(f);
    CHECK(checked >= 14, "only %d comparisons", checked);
    printf("  live PIL parity: %d comparisons, max diff %d gray levels, tensor max abs diff %.3g\n", checked, worst, worst_t);
}

/* A plain double-precision twin of the bicubic resize: agrees within 1 level. */
static double cub(double x) {
    x = fabs(x);
    if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
    if (x < 2) return ((-0.5 * x + 2.5) * x - 4) * x + 2;
    return 0;
}
static void ref_resize_1d(const double *in, int n, int stride, double *out, int m, int ostride) {
    double scale = (double)n / m, fs = scale > 1 ? scale : 1;
    for (int i = 0; i < m; i++) {
        double c = (i + 0.5) * scale, s = 0, ws = 0;
        for (int j = 0; j < n; j++) {
            double w = cub((j + 0.5 - c) / fs);
            s += w * in[(size_t)j * stride];
            ws += w;
        }
        out[(size_t)i * ostride] = s / ws;
    }
}

TEST(resize_vs_double_twin) {
    rs_rng rng;
    rs_rng_seed(&rng, 99);
    int worst = 0;
    for (int trial = 0; trial < 60; trial++) {
        int w = 1 + (int)(rs_rng_u64(&rng) % 40), h = 1 + (int)(rs_rng_u64(&rng) % 40);
        int W = 1 + (int)(rs_rng_u64(&rng) % 50), H = 1 + (int)(rs_rng_u64(&rng) % 50);
        rs_image im;
        REQUIRE(rs_image_alloc(&im, w, h, 1) == RSMOE_OK, "alloc");
        int smooth = trial % 2;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                im.data[y * w + x] = smooth ? (uint8_t)(100 + 50 * sin(x * 0.3) + 40 * cos(y * 0.2)) : (uint8_t)(rs_rng_u64(&rng) & 255);
        rs_image o;
        REQUIRE(rs_image_resize_bicubic_u8(&im, W, H, &o) == RSMOE_OK, "%s", rsmoe_last_error());
        double *a = malloc(sizeof(double) * w * h), *t = malloc(sizeof(double) * W * h), *b = malloc(sizeof(double) * W * H);
        for (int i = 0; i < w * h; i++) a[i] = im.data[i];
        /* horizontal pass (rounded to 8 bits as PIL's intermediate image), then vertical */
        for (int y = 0; y < h; y++) {
            if (W == w) for (int x = 0; x < w; x++) t[y * W + x] = a[y * w + x];
            else ref_resize_1d(a + y * w, w, 1, t + y * W, W, 1);
        }
        for (int i = 0; i < W * h; i++) t[i] = fmin(255, fmax(0, floor(t[i] + 0.5)));
        for (int x = 0; x < W; x++) {
            if (H == h) for (int y = 0; y < h; y++) b[y * W + x] = t[y * W + x];
            else ref_resize_1d(t + x, h, W, b + x, H, W);
        }
        for (int i = 0; i < W * H; i++) {
            int want = (int)fmin(255, fmax(0, floor(b[i] + 0.5)));
            int d = abs(want - o.data[i]);
            if (d > worst) worst = d;
        }
        free(a); free(t); free(b);
        rs_image_free(&o);
        rs_image_free(&im);
    }
    /* fixed-point weights and the rounded intermediate allow a 1-2 level difference */
    CHECK(worst <= 2, "max diff vs double twin %d", worst);
}

TEST(resize_and_preprocess_args) {
    rs_image im, o;
    REQUIRE(rs_image_alloc(&im, 4, 3, 3) == RSMOE_OK, "alloc");
    for (int i = 0; i < 36; i++) im.data[i] = (uint8_t)(i * 7);
    CHECK(rs_image_resize_bicubic_u8(&im, 0, 5, &o) == RSMOE_ERR_INVALID_ARG, "zero width");
    CHECK(rs_image_resize_bicubic_u8(&im, 5, 100000, &o) == RSMOE_ERR_INVALID_ARG, "huge");
    REQUIRE(rs_image_resize_bicubic_u8(&im, 4, 3, &o) == RSMOE_OK, "identity");
    CHECK(!memcmp(o.data, im.data, 36), "same size is a copy");
    rs_image_free(&o);
    /* tensor: hand-computed values, no resize needed */
    float t[36];
    float mean[3] = {0.5f, 0.25f, 0.0f}, sd[3] = {0.5f, 0.25f, 2.0f};
    REQUIRE(rs_image_preprocess(&im, 4, 3, mean, sd, t) == RSMOE_OK, "%s", rsmoe_last_error());
    /* pixel (x=1, y=2) is index 9; channel 1 sample = data[9*3+1] = 28*7 = 196 */
    CHECK(fabsf(t[12 + 9] - ((196 / 255.0f - 0.25f) / 0.25f)) < 1e-6f, "channel 1 value %g", t[12 + 9]);
    CHECK(fabsf(t[24 + 0] - ((14 / 255.0f) / 2.0f)) < 1e-6f, "channel 2 value %g", t[24]);
    sd[1] = 0;
    CHECK(rs_image_preprocess(&im, 4, 3, mean, sd, t) == RSMOE_ERR_INVALID_ARG, "zero std");
    rs_image_free(&im);
    REQUIRE(rs_image_alloc(&im, 4, 3, 2) == RSMOE_OK, "alloc");
    CHECK(rs_image_to_tensor(&im, 4, rs_clip_mean, rs_clip_std, t) == RSMOE_ERR_INVALID_ARG, "2 channels");
    rs_image_free(&im);
}

/* The eight views of a 3x2 image against layouts written out by hand: pixel values are
 * 1..6 read row by row (1 2 3 / 4 5 6), one band */
TEST(dihedral_views_by_hand) {
    static const uint8_t expect[8][6] = {
        {1, 2, 3, 4, 5, 6}, /* id            3x2 */
        {3, 2, 1, 6, 5, 4}, /* hflip         3x2 */
        {4, 5, 6, 1, 2, 3}, /* vflip         3x2 */
        {6, 5, 4, 3, 2, 1}, /* rot180        3x2 */
        {1, 4, 2, 5, 3, 6}, /* transpose     2x3: 1 4 / 2 5 / 3 6 */
        {4, 1, 5, 2, 6, 3}, /* rot90 (cw)    2x3: 4 1 / 5 2 / 6 3 */
        {3, 6, 2, 5, 1, 4}, /* rot270        2x3: 3 6 / 2 5 / 1 4 */
        {6, 3, 5, 2, 4, 1}, /* antitranspose 2x3: 6 3 / 5 2 / 4 1 */
    };
    rs_image in;
    REQUIRE(rs_image_alloc(&in, 3, 2, 1) == RSMOE_OK, "alloc");
    for (int i = 0; i < 6; i++) in.data[i] = (uint8_t)(i + 1);
    for (int v = 0; v < RS_IMAGE_VIEWS; v++) {
        rs_image out;
        REQUIRE(rs_image_dihedral(&in, v, &out) == RSMOE_OK, "view %d: %s", v, rsmoe_last_error());
        CHECK(out.w == (v & 4 ? 2 : 3) && out.h == (v & 4 ? 3 : 2) && out.c == 1, "view %d: %dx%d", v, out.w, out.h);
        CHECK(!memcmp(out.data, expect[v], 6), "view %s: %d %d %d %d %d %d", rs_image_view_name(v), out.data[0], out.data[1],
              out.data[2], out.data[3], out.data[4], out.data[5]);
        CHECK(rs_image_view_parse(rs_image_view_name(v)) == v, "name of view %d", v);
        rs_image_free(&out);
    }
    CHECK(rs_image_view_parse("5") == 5 && rs_image_view_parse("8") == -1 && rs_image_view_parse("rot45") == -1 &&
          rs_image_view_parse("") == -1, "view names");
    rs_image bad;
    CHECK(rs_image_dihedral(&in, 8, &bad) != RSMOE_OK && !bad.data, "view 8 refused");
    rs_image_free(&in);
}

/* Multi-band pixels move whole; rot90 then rot270 gives the image back */
TEST(dihedral_round_trip_rgb) {
    rs_image in, a, b;
    REQUIRE(rs_image_alloc(&in, 5, 3, 3) == RSMOE_OK, "alloc");
    for (size_t i = 0; i < 45; i++) in.data[i] = (uint8_t)(i * 7 + 3);
    REQUIRE(rs_image_dihedral(&in, rs_image_view_parse("rot90"), &a) == RSMOE_OK, "rot90");
    /* rot90: output (x, y) is input (y, H-1-x); check pixel (0, 0) = input (0, 2), all bands */
    CHECK(!memcmp(a.data, in.data + (2 * 5 + 0) * 3, 3), "rot90 moves whole pixels");
    REQUIRE(rs_image_dihedral(&a, rs_image_view_parse("rot270"), &b) == RSMOE_OK, "rot270");
    CHECK(b.w == 5 && b.h == 3 && !memcmp(b.data, in.data, 45), "rot270(rot90(x)) = x");
    rs_image_free(&a);
    rs_image_free(&b);
    rs_image_free(&in);
}

int main(void) {
    RUN(png_decode_matches_pil);
    RUN(png_16bit_scaled);
    RUN(jpeg_decode_matches_pil);
    RUN(tiff_from_pil_lzw);
    RUN(tiff_variants_from_libtiff);
    RUN(tiff_palette_and_bilevel);
    RUN(parse_bands);
    RUN(broken_files_fail_cleanly);
    RUN(resize_matches_committed_pil);
    RUN(resize_and_tensor_match_live_pil);
    RUN(resize_vs_double_twin);
    RUN(resize_and_preprocess_args);
    RUN(dihedral_views_by_hand);
    RUN(dihedral_round_trip_rgb);
    if (g_tmp[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    }
    return test_summary();
}
