#!/usr/bin/python3
"""Reference outputs of PIL's Image.resize(BICUBIC) and of the preprocessing
(bicubic to W x H, /255, (x - mean) / std, CHW float32) for test_image.c.

usage:
  /usr/bin/python3 tests/ref/pil_resize.py OUT_DIR [IMAGE ...]
      writes synthetic inputs (noise500.png: 500x500 RGB noise, grey256.png: 256x256 L,
      small37.png: 37x37 RGB) plus the given images, and for each input and target size
      OUT_DIR/NAME_WxH.u8 (HWC uint8 as PIL returns it) and OUT_DIR/NAME_t224.f32
      (the CLIP-normalised 3x224x224 tensor); OUT_DIR/manifest.txt lists
      "input mode W H output" lines ("tensor" lines for the .f32 files).
  /usr/bin/python3 tests/ref/pil_resize.py --committed
      rewrites the small committed references tests/ref/pil_rgb37_WxH.u8 from
      tests/data/rgb37.png (so the test has a PIL check even without Python).
"""
import os
import sys

import numpy as np
from PIL import Image

SIZES = [(224, 224), (384, 384), (16, 12), (301, 97)]
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
here = os.path.dirname(os.path.abspath(__file__))


def committed():
    im = Image.open(os.path.join(here, "..", "data", "rgb37.png")).convert("RGB")
    for w, h in [(16, 12), (53, 41), (5, 60)]:
        np.asarray(im.resize((w, h), Image.BICUBIC), dtype=np.uint8).tofile(
            os.path.join(here, "pil_rgb37_%dx%d.u8" % (w, h)))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--committed":
        committed()
        return
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(7)
    inputs = []
    noise = rng.randint(0, 256, size=(500, 500, 3)).astype(np.uint8)
    noise[100:300, 100:300] = 255 * (noise[100:300, 100:300] > 127)  # hard edges: clamping
    Image.fromarray(noise, "RGB").save(os.path.join(out, "noise500.png"))
    inputs.append((os.path.join(out, "noise500.png"), "RGB"))
    y, x = np.mgrid[0:256, 0:256]
    g = ((x * 3 + y * 5) % 256).astype(np.uint8) ^ rng.randint(0, 16, size=(256, 256)).astype(np.uint8)
    Image.fromarray(g, "L").save(os.path.join(out, "grey256.png"))
    inputs.append((os.path.join(out, "grey256.png"), "L"))
    Image.fromarray(rng.randint(0, 256, size=(37, 37, 3)).astype(np.uint8), "RGB").save(
        os.path.join(out, "small37.png"))
    inputs.append((os.path.join(out, "small37.png"), "RGB"))
    for path in sys.argv[2:]:
        inputs.append((path, "RGB"))
    lines = []
    for i, (path, mode) in enumerate(inputs):
        im = Image.open(path).convert(mode)
        stem = "in%d" % i
        for w, h in SIZES:
            o = os.path.join(out, "%s_%dx%d.u8" % (stem, w, h))
            np.asarray(im.resize((w, h), Image.BICUBIC), dtype=np.uint8).tofile(o)
            lines.append("%s %s %d %d %s" % (path, mode, w, h, o))
        if mode == "RGB":
            r = np.asarray(im.resize((224, 224), Image.BICUBIC), dtype=np.float32)
            t = ((r / np.float32(255.0) - CLIP_MEAN) / CLIP_STD).astype(np.float32).transpose(2, 0, 1)
            o = os.path.join(out, "%s_t224.f32" % stem)
            np.ascontiguousarray(t).tofile(o)
            lines.append("%s tensor 224 224 %s" % (path, o))
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


main()
