#!/usr/bin/python3
"""PyTorch reference for the fp32 kernels (src/kernels/ops.h), read by tests/test_ops_torch.c.

usage: /usr/bin/python3 tests/ref/ops_torch.py [OUT]      (default tests/ref/ops_torch.bin)

Every case draws float32 inputs from a seeded generator, computes outputs and gradients
with PyTorch's own operators and autograd in float64 (so the file holds exact references
for the float32 inputs), and writes records

    char name[32] (NUL padded) | int64 n | float64 data[n]

The shapes are fixed here and repeated in the C test. Where PyTorch 1.13 has no operator
(RMSNorm, rotary embeddings, Llama-3 frequency scaling, grouped-query attention), the
code follows the HF transformers / Meta llama reference formulations written in torch.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from records import write  # noqa: E402

torch.manual_seed(1234)
recs = []


def put(name, t):
    t = t.detach().to(torch.float64).reshape(-1)
    assert len(name) < 32, name
    recs.append((name, t))


def rnd(*shape, lo=-1.0, hi=1.0):
    """float32 uniform values, returned as float64 leaf tensors requiring grad"""
    x = torch.rand(*shape, dtype=torch.float32) * (hi - lo) + lo
    return x.to(torch.float64).requires_grad_(True)


def grads(y, dy, *xs):
    return torch.autograd.grad(y, xs, grad_outputs=dy)


# ---------------------------------------------------------------- linear
x, W, b, dy = rnd(5, 7), rnd(6, 7), rnd(6), rnd(5, 6)
y = F.linear(x, W, b)
dx, dW, db = grads(y, dy, x, W, b)
for n, t in [("lin.x", x), ("lin.W", W), ("lin.b", b), ("lin.dy", dy), ("lin.y", y),
             ("lin.dx", dx), ("lin.dW", dW), ("lin.db", db)]:
    put(n, t)

# ---------------------------------------------------------------- layernorm / rmsnorm
x, w, b, dy = rnd(4, 10, lo=1.0, hi=4.0), rnd(10, lo=0.5, hi=1.5), rnd(10), rnd(4, 10)
y = F.layer_norm(x, (10,), w, b, eps=1e-5)
dx, dw, db = grads(y, dy, x, w, b)
for n, t in [("ln.x", x), ("ln.w", w), ("ln.b", b), ("ln.dy", dy), ("ln.y", y),
             ("ln.dx", dx), ("ln.dw", dw), ("ln.db", db)]:
    put(n, t)
x, w, dy = rnd(4, 10), rnd(10, lo=0.5, hi=1.5), rnd(4, 10)
# HF LlamaRMSNorm
y = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
dx, dw = grads(y, dy, x, w)
for n, t in [("rms.x", x), ("rms.w", w), ("rms.dy", dy), ("rms.y", y), ("rms.dx", dx),
             ("rms.dw", dw)]:
    put(n, t)

# ---------------------------------------------------------------- activations
x, dy = rnd(64, lo=-6, hi=6), rnd(64)
put("act.x", x)
put("act.dy", dy)
for name, fn in [("gelu", lambda t: F.gelu(t)),
                 ("gelu_tanh", lambda t: F.gelu(t, approximate="tanh")),
                 ("silu", F.silu)]:
    y = fn(x)
    (dx,) = grads(y, dy, x)
    put(name + ".y", y)
    put(name + ".dx", dx)
g, u = rnd(64, lo=-6, hi=6), rnd(64, lo=-2, hi=2)
y = F.silu(g) * u
dg, du = grads(y, dy, g, u)
for n, t in [("swiglu.g", g), ("swiglu.u", u), ("swiglu.y", y), ("swiglu.dg", dg),
             ("swiglu.du", du)]:
    put(n, t)

# ---------------------------------------------------------------- softmax (scale 0.7)
x, dy = rnd(3, 9, lo=-4, hi=4), rnd(3, 9)
y = torch.softmax(0.7 * x, dim=-1)
(dx,) = grads(y, dy, x)
for n, t in [("sm.x", x), ("sm.dy", dy), ("sm.y", y), ("sm.dx", dx)]:
    put(n, t)

# ---------------------------------------------------------------- attention
# Tq 5, Tk 8, Hq 4, Hkv 2, d 8, causal with offset 3, key 1 and 6 padding
Tq, Tk, Hq, Hkv, d, off = 5, 8, 4, 2, 8, 3
q, k, v, dout = rnd(Tq, Hq * d), rnd(Tk, Hkv * d), rnd(Tk, Hkv * d), rnd(Tq, Hq * d)
valid = torch.tensor([1, 0, 1, 1, 1, 1, 0, 1], dtype=torch.bool)
qh = q.view(Tq, Hq, d).transpose(0, 1)                                  # [Hq, Tq, d]
kh = k.view(Tk, Hkv, d).transpose(0, 1).repeat_interleave(Hq // Hkv, 0)  # [Hq, Tk, d]
vh = v.view(Tk, Hkv, d).transpose(0, 1).repeat_interleave(Hq // Hkv, 0)
allowed = (torch.arange(Tk)[None, :] <= torch.arange(Tq)[:, None] + off) & valid[None, :]
s = (qh @ kh.transpose(1, 2)) / math.sqrt(d)
s = s.masked_fill(~allowed, float("-inf"))
p = torch.softmax(s, dim=-1)
o = (p @ vh).transpose(0, 1).reshape(Tq, Hq * d)
dq, dk, dv = grads(o, dout, q, k, v)
for n, t in [("att.q", q), ("att.k", k), ("att.v", v), ("att.dout", dout), ("att.out", o),
             ("att.p", p), ("att.dq", dq), ("att.dk", dk), ("att.dv", dv)]:
    put(n, t)


# ---------------------------------------------------------------- RoPE
def inv_freq_default(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))


def inv_freq_llama3(base, dim, factor=32.0, low=1.0, high=4.0, old=8192):
    """transformers.modeling_rope_utils._compute_llama3_parameters"""
    inv_freq = inv_freq_default(base, dim)
    low_freq_wavelen = old / low
    high_freq_wavelen = old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


T, H, D = 5, 3, 16
pos = torch.tensor([0, 1, 17, 5000, 100000], dtype=torch.float64)
put("rope.pos", pos)
for tag, base, l3 in [("a", 10000.0, False), ("b", 500000.0, True)]:
    f = inv_freq_llama3(base, D) if l3 else inv_freq_default(base, D)
    x, dy = rnd(T, H * D), rnd(T, H * D)
    ang = pos[:, None] * f[None, :]                       # [T, D/2]
    # HF LLaMA (NeoX pairs): x*cos + rotate_half(x)*sin with emb = cat(freqs, freqs)
    emb = torch.cat((ang, ang), dim=-1)[:, None, :]        # [T, 1, D]
    xv = x.view(T, H, D)
    y = (xv * emb.cos() + rotate_half(xv) * emb.sin()).reshape(T, H * D)
    (dx,) = grads(y, dy, x)
    put("rope%s.x" % tag, x)
    put("rope%s.dy" % tag, dy)
    put("rope%s.neox" % tag, y)
    put("rope%s.neox_dx" % tag, dx)
    # Meta llama reference (interleaved pairs): view as complex, multiply by polar(1, ang)
    fc = torch.polar(torch.ones_like(ang), ang)[:, None, :]  # [T, 1, D/2]
    xc = torch.view_as_complex(xv.reshape(T, H, D // 2, 2).contiguous())
    y = torch.view_as_real(xc * fc).reshape(T, H * D)
    (dx,) = grads(y, dy, x)
    put("rope%s.inter" % tag, y)
    put("rope%s.inter_dx" % tag, dx)

# ---------------------------------------------------------------- embedding
table, dy = rnd(5, 7), rnd(6, 7)
ids = torch.tensor([3, 0, 3, 4, 1, 3])
y = F.embedding(ids, table)
(dt,) = grads(y, dy, table)
for n, t in [("emb.table", table), ("emb.ids", ids), ("emb.dy", dy), ("emb.y", y),
             ("emb.dtable", dt)]:
    put(n, t)

# ---------------------------------------------------------------- patch conv
B, C, Hh, Ww, P, width = 2, 3, 10, 9, 3, 5
img, Wt, bias = rnd(B, C, Hh, Ww, lo=0, hi=1), rnd(width, C, P, P, lo=-0.5, hi=0.5), rnd(width)
y = F.conv2d(img, Wt, bias, stride=P).flatten(2).transpose(1, 2)    # [B, np, width]
dy = rnd(*y.shape)
dimg, dWt, dbias = grads(y, dy, img, Wt, bias)
for n, t in [("pe.img", img), ("pe.W", Wt), ("pe.b", bias), ("pe.dy", dy), ("pe.y", y),
             ("pe.dimg", dimg), ("pe.dW", dWt), ("pe.db", dbias)]:
    put(n, t)

# ---------------------------------------------------------------- cross-entropy
logits = rnd(6, 7, lo=-5, hi=5)
targets = torch.tensor([2, -100, 0, 6, -100, 3])
loss = F.cross_entropy(logits, targets, ignore_index=-100)
(dl,) = grads(loss, torch.tensor(1.3, dtype=torch.float64), logits)
for n, t in [("ce.logits", logits), ("ce.targets", targets), ("ce.loss", loss),
             ("ce.dlogits", dl)]:
    put(n, t)

# ---------------------------------------------------------------- AdamW, clipping
p0 = rnd(11)
put("adam.p0", p0)
p = torch.nn.Parameter(p0.detach().clone())
opt = torch.optim.AdamW([p], lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
for step in range(3):
    g = rnd(11, lo=-2, hi=2).detach()
    put("adam.g%d" % step, g)
    p.grad = g.clone()
    opt.step()
put("adam.p3", p)
ga, gb = rnd(4, lo=-3, hi=3).detach(), rnd(3, lo=-3, hi=3).detach()
put("clip.a", ga)
put("clip.b", gb)
pa, pb = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64)), torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
pa.grad, pb.grad = ga.clone(), gb.clone()
norm = torch.nn.utils.clip_grad_norm_([pa, pb], max_norm=1.5)
put("clip.norm", norm)
put("clip.a_out", pa.grad)
put("clip.b_out", pb.grad)

out = sys.argv[1] if len(sys.argv) > 1 else __file__.replace("ops_torch.py", "ops_torch.bin")
write(out, recs)
print("wrote %d records to %s" % (len(recs), out))
