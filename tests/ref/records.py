"""The record files the C tests and the PyTorch references exchange (tests/test.h reads them):
a sequence of [name: 32 bytes, NUL-padded][n: int64 LE][n float64 LE] records."""
import struct

import torch


def read(path):
    """{name: float64 tensor (flat)} of every record in path"""
    recs = {}
    with open(path, "rb") as f:
        while True:
            h = f.read(40)
            if len(h) < 40:
                break
            name = h[:32].split(b"\0")[0].decode()
            (n,) = struct.unpack("<q", h[32:])
            recs[name] = torch.tensor(struct.unpack("<%dd" % n, f.read(8 * n)), dtype=torch.float64)
    return recs


def write(path, recs):
    """recs: (name, tensor) pairs, written flat as float64"""
    with open(path, "wb") as f:
        for name, t in recs:
            t = t.detach().to(torch.float64).reshape(-1)
            assert len(name) < 32, name
            f.write(name.encode().ljust(32, b"\0"))
            f.write(struct.pack("<q", t.numel()))
            f.write(struct.pack("<%dd" % t.numel(), *t.tolist()))
