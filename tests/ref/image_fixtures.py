#!/usr/bin/python3
"""Writes the small image fixtures of tests/data/ with PIL (run with /usr/bin/python3).

Deterministic (seeded). Besides the images it writes what PIL decodes from them as raw
bytes (*.rgb: HWC uint8, RGB; *.grey: HW uint8) so test_image.c can check our decoders
against an independent implementation, plus corrupt / truncated / bomb files.

usage: /usr/bin/python3 tests/ref/image_fixtures.py [OUT_DIR=tests/data]
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data")
os.makedirs(out, exist_ok=True)
rng = np.random.RandomState(1234)


def smooth_noise(h, w, c):
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 7) % 256, 255 - (x * y) % 256]
    base = np.stack(planes[:c], -1)
    noise = rng.randint(-40, 41, size=(h, w, c))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def p(name):
    return os.path.join(out, name)


def dump_rgb(img, name):
    np.asarray(img.convert("RGB"), dtype=np.uint8).tofile(p(name))


# PNG: RGB, grey, RGBA, palette, 16-bit grey
rgb = Image.fromarray(smooth_noise(29, 37, 3), "RGB")
rgb.save(p("rgb37.png"))
dump_rgb(rgb, "rgb37.png.rgb")
grey = Image.fromarray(smooth_noise(15, 20, 1)[..., 0], "L")
grey.save(p("grey20.png"))
np.asarray(grey).tofile(p("grey20.png.grey"))
rgba = Image.fromarray(smooth_noise(10, 12, 4), "RGBA")
rgba.save(p("rgba12.png"))
dump_rgb(rgba, "rgba12.png.rgb")
pal = rgb.crop((0, 0, 12, 10)).convert("P", palette=Image.ADAPTIVE, colors=16)
pal.save(p("pal12.png"))
dump_rgb(pal, "pal12.png.rgb")
g16 = (np.arange(9 * 7, dtype=np.uint32).reshape(7, 9) * 1000 + 17).astype(np.uint16)
Image.fromarray(g16, "I;16").save(p("grey16_9x7.png"))

# JPEG: colour and grey (decoded pixels from PIL, i.e. the same libjpeg-turbo defaults)
rgb40 = Image.fromarray(smooth_noise(30, 40, 3), "RGB")
rgb40.save(p("rgb40.jpg"), quality=90)
dump_rgb(Image.open(p("rgb40.jpg")), "rgb40.jpg.rgb")
g24 = Image.fromarray(smooth_noise(16, 24, 1)[..., 0], "L")
g24.save(p("grey24.jpg"), quality=90)
np.asarray(Image.open(p("grey24.jpg"))).tofile(p("grey24.jpg.grey"))

# TIFF written by PIL (libtiff), LZW, to check interoperability
rgb.save(p("rgb37_lzw.tif"), compression="tiff_lzw")

# broken files
jpg = open(p("rgb40.jpg"), "rb").read()
open(p("truncated.jpg"), "wb").write(jpg[: len(jpg) // 2])
png = open(p("rgb37.png"), "rb").read()
open(p("truncated.png"), "wb").write(png[: len(png) // 2])
bad = bytearray(png)
i = bad.find(b"IDAT") + 20
bad[i : i + 16] = bytes(16)  # wrong data and CRC
open(p("corrupt.png"), "wb").write(bytes(bad))
open(p("empty.png"), "wb").write(b"")
open(p("notimage.jpg"), "wb").write(b"this is a text file, not an image\n")
tif = open(p("rgb37_lzw.tif"), "rb").read()
open(p("truncated.tif"), "wb").write(tif[: len(tif) // 3])


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


# a PNG whose header claims 100000 x 100000 RGB pixels (a decompression bomb's header)
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
idat = zlib.compress(b"\0" * 64)
open(p("bomb.png"), "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


# a TIFF whose header claims 100000 x 100000 grey pixels (with one byte of data)
def ifd_entry(tag, typ, count, value):
    return struct.pack("<HHII", tag, typ, count, value)


entries = [ifd_entry(256, 4, 1, 100000), ifd_entry(257, 4, 1, 100000), ifd_entry(258, 3, 1, 8),
           ifd_entry(259, 3, 1, 1), ifd_entry(262, 3, 1, 1), ifd_entry(273, 4, 1, 8),
           ifd_entry(277, 3, 1, 1), ifd_entry(278, 4, 1, 100000), ifd_entry(279, 4, 1, 1)]
ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
open(p("bomb.tif"), "wb").write(b"II*\0" + struct.pack("<I", 12) + b"\0\0\0\0" + ifd)
