#!/usr/bin/python3
"""Bicubic interpolation of a ViT position grid with PyTorch (the reference the ViT follows).
usage: interp_torch.py IN.f32 G_IN G_OUT C OUT.f32 — IN holds (1 + G_IN²)·C floats ([CLS] first)."""
import sys

import numpy as np
import torch

inp, gi, go, c, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
x = np.fromfile(inp, dtype="<f4").astype(np.float64).reshape(1 + gi * gi, c)
grid = torch.from_numpy(x[1:]).reshape(1, gi, gi, c).permute(0, 3, 1, 2)
y = torch.nn.functional.interpolate(grid, size=(go, go), mode="bicubic", align_corners=False)
y = y.permute(0, 2, 3, 1).reshape(go * go, c).numpy()
np.vstack([x[:1], y]).astype("<f4").tofile(out)
