#!/usr/bin/python3
"""PyTorch reference for the LLM Block training path (src/train/llm_train.h), run by
tests/test_llm_train.c at test time.

usage: /usr/bin/python3 tests/ref/llm_train_torch.py IN OUT

IN and OUT hold records   char name[32] (NUL padded) | int64 n | float64 data[n]
(the format of tests/ref/ops_torch.bin). IN, written by the C test, carries

  cfg        [vocab, dim, layers, heads, kv_heads, head_dim, ffn, rms_eps, rope_theta,
              rope_interleaved, tied, B, T, full, n_adapters, adam_steps, lr, weight_decay]
  tok_embd, out_norm, output (untied only), blkL.attn_norm, blkL.attn_q, blkL.attn_k,
  blkL.attn_v, blkL.attn_output, blkL.ffn_norm, blkL.ffn_gate, blkL.ffn_up, blkL.ffn_down
             weights, PyTorch layout [out, in]
  aI.meta    [rank, scale, target bit mask] of adapter I; aI.L.TARGET.A [r, in], .B [out, r]
  emb [B, T, dim], len [B], targets [B, T] (-100 ignored), adapter [B] (-1 base)

The model is written here from the HF LLaMA formulation in float64 (RMSNorm, rotary
embeddings in the rotate-half or interleaved pair form, grouped-query attention with a
causal + key-padding mask, SwiGLU, LoRA y += scale·(x·Aᵀ)·Bᵀ) and differentiated with
autograd. Targets at padded positions (t >= len) are not scored, as documented in
llm_train.h. OUT gets

  loss, d_emb, g.NAME for every weight (full mode) or g.aI.L.TARGET.A/B (LoRA mode),
  adam_loss [adam_steps]: the loss before each of that many torch.optim.AdamW steps
  (lr, weight decay from cfg) on the LoRA parameters.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from records import read, write  # noqa: E402

TARGETS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
LAYER_W = ["attn_norm"] + TARGETS[:4] + ["ffn_norm"] + TARGETS[4:]


def main():
    R = read(sys.argv[1])
    cfg = R["cfg"].tolist()
    V, D, L, H, Hkv, hd, F = (int(v) for v in cfg[:7])
    eps, theta = cfg[7], cfg[8]
    interleaved, tied = bool(cfg[9]), bool(cfg[10])
    B, T, full, n_ad, steps = (int(v) for v in cfg[11:16])
    lr, wd = cfg[16], cfg[17]

    def P(name, *shape):
        return R[name].reshape(*shape).clone().requires_grad_(True)

    W = {"tok_embd": P("tok_embd", V, D), "out_norm": P("out_norm", D)}
    if not tied:
        W["output"] = P("output", V, D)
    qd, kvd = H * hd, Hkv * hd
    shapes = {"attn_norm": (D,), "attn_q": (qd, D), "attn_k": (kvd, D), "attn_v": (kvd, D),
              "attn_output": (D, qd), "ffn_norm": (D,), "ffn_gate": (F, D), "ffn_up": (F, D),
              "ffn_down": (D, F)}
    for l in range(L):
        for n in LAYER_W:
            W["blk%d.%s" % (l, n)] = P("blk%d.%s" % (l, n), *shapes[n])
    ads = []
    for i in range(n_ad):
        rank, scale, mask = R["a%d.meta" % i].tolist()
        rank, mask = int(rank), int(mask)
        ab = {}
        for l in range(L):
            for ti, tn in enumerate(TARGETS):
                if mask >> ti & 1:
                    o, n_in = shapes[tn]
                    ab[(l, tn)] = (P("a%d.%d.%s.A" % (i, l, tn), rank, n_in),
                                   P("a%d.%d.%s.B" % (i, l, tn), o, rank))
        ads.append((scale, ab))
    emb = R["emb"].reshape(B, T, D).clone().requires_grad_(True)
    lens = [int(v) for v in R["len"].tolist()]
    tg = R["targets"].reshape(B, T).long().clone()
    adapter = [int(v) for v in R["adapter"].tolist()]
    for b in range(B):
        tg[b, lens[b]:] = -100  # padding is not scored

    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]  # [T, 1, hd/2]

    def rope(x):  # x [T, heads, hd]
        if interleaved:
            x1, x2 = x[..., 0::2], x[..., 1::2]
            return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def lin(x, l, name, a):
        y = x @ W["blk%d.%s" % (l, name)].T
        if a >= 0 and (l, name) in ads[a][1]:
            A, Bm = ads[a][1][(l, name)]
            y = y + ads[a][0] * ((x @ A.T) @ Bm.T)
        return y

    def loss_fn():
        tot, cnt = 0.0, 0
        for b in range(B):
            a, n = adapter[b], lens[b]
            x = emb[b]
            causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
            keyok = (torch.arange(T) < n)[None, :]
            allowed = causal & keyok
            for l in range(L):
                xn = rms(x, W["blk%d.attn_norm" % l])
                q = rope(lin(xn, l, "attn_q", a).view(T, H, hd))
                k = rope(lin(xn, l, "attn_k", a).view(T, Hkv, hd))
                v = lin(xn, l, "attn_v", a).view(T, Hkv, hd)
                k = k.repeat_interleave(H // Hkv, dim=1)
                v = v.repeat_interleave(H // Hkv, dim=1)
                s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
                s = s.masked_fill(~allowed[None], float("-inf"))
                p = torch.softmax(s, dim=-1)
                o = torch.einsum("hts,shd->thd", p, v).reshape(T, qd)
                x = x + lin(o, l, "attn_output", a)
                xn = rms(x, W["blk%d.ffn_norm" % l])
                g, u = lin(xn, l, "ffn_gate", a), lin(xn, l, "ffn_up", a)
                x = x + lin(torch.nn.functional.silu(g) * u, l, "ffn_down", a)
            x = rms(x, W["out_norm"])
            logits = x @ (W["tok_embd"] if tied else W["output"]).T
            tot = tot + torch.nn.functional.cross_entropy(logits, tg[b], ignore_index=-100, reduction="sum")
            cnt += int((tg[b] != -100).sum())
        return tot / cnt

    out = []
    loss = loss_fn()
    wl = list(W.items())
    al = [("a%d.%d.%s.%s" % (i, l, tn, m), t) for i, (_, ab) in enumerate(ads)
          for (l, tn), pair in ab.items() for m, t in zip("AB", pair)]
    leaves = [emb] + [t for _, t in wl] + [t for _, t in al]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    out.append(("loss", loss.reshape(1)))
    out.append(("d_emb", grads[0]))
    names = [n for n, _ in wl] + [n for n, _ in al]
    for n, g, t in zip(names, grads[1:], leaves[1:]):
        out.append(("g." + n, g if g is not None else torch.zeros_like(t)))

    if steps > 0:
        params = [t for _, t in al]
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
        losses = []
        for _ in range(steps):
            opt.zero_grad()
            lo = loss_fn()
            lo.backward()
            losses.append(lo.item())
            opt.step()
        out.append(("adam_loss", torch.tensor(losses, dtype=torch.float64)))
    write(sys.argv[2], out)


if __name__ == "__main__":
    main()
