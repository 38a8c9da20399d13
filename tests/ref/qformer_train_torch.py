#!/usr/bin/python3
"""PyTorch reference for the Q-Former + projection + Instruction Router training path
(src/train/qformer_train.h, src/train/router_train.h), run by tests/test_qformer_train.c.

usage: /usr/bin/python3 tests/ref/qformer_train_torch.py MODEL.gguf IN OUT

MODEL.gguf is read with tests/ref/gguf_np.py (every qf.*, proj.* and router.* tensor becomes
a float64 leaf). IN and OUT hold records   char name[32] (NUL padded) | int64 n | float64 data[n]
(the format of tests/ref/ops_torch.bin). IN, written by the C test, carries

  cfg     [B, n_text, n_img, adam_steps, lr, weight_decay]
  img     [B, n_img, enc_width]  image tokens
  ids     [B, n_text]            instruction ids (only the first len[b] are read)
  len     [B]
  instr   [B, D]                 pooled instruction embeddings
  dP, dG, dS                     [B, Q, D], [B, K], [B, K, M, D]
  route   [B, K]                 routing-label distributions (AdamW loss)

The model is written here from the InstructBLIP Q-Former description (docs/model.md), one
sample at a time on its len[b] valid tokens (no padding at all), in float64, and
differentiated with autograd. OUT gets

  prefix, gates, soft          forward outputs
  g.NAME                       gradient of every tensor of  L = Σ prefix·dP + Σ gates·dG + Σ soft·dS
                               (the router reads the same prefix, so its gradient flows back)
  d_img, d_instr               gradients of the inputs
  adam_loss [adam_steps]       loss before each torch.optim.AdamW step on every tensor, for
                               loss = CE(logits, route) + mean((prefix - dP)^2) + mean(soft^2)
"""
import math
import os
import sys

import torch
import torch.nn.functional as Fn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_np import GGUF  # noqa: E402
from records import read, write  # noqa: E402


def mha(q, k, v, heads):
    Tq, Tk = q.shape[0], k.shape[0]
    d = q.shape[1] // heads
    qh = q.reshape(Tq, heads, d).transpose(0, 1)
    kh = k.reshape(Tk, heads, d).transpose(0, 1)
    vh = v.reshape(Tk, heads, d).transpose(0, 1)
    p = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(d), dim=-1)
    return (p @ vh).transpose(0, 1).reshape(Tq, heads * d)


class Model:
    def __init__(self, path):
        g = GGUF(path)
        kv = g.kv
        self.nq = kv["rsmoe.qformer.query_count"]
        self.W = kv["rsmoe.qformer.embedding_length"]
        self.layers = kv["rsmoe.qformer.block_count"]
        self.heads = kv["rsmoe.qformer.head_count"]
        self.freq = kv.get("rsmoe.qformer.cross_attention_freq", 2)
        self.eps = kv.get("rsmoe.qformer.layer_norm_epsilon", 1e-12)
        self.K = kv["rsmoe.moe.expert_count"]
        self.M = kv.get("rsmoe.moe.soft_prompt_count", 0)
        self.D = kv["llama.embedding_length"]
        self.names = [n for n in g.tensors if n.startswith(("qf.", "proj.", "router."))]
        self.p = {n: torch.tensor(g.get(n), dtype=torch.float64, requires_grad=True) for n in self.names}

    def t(self, name):
        return self.p[name]

    def lin(self, x, name):
        return x @ self.t(name + ".weight").T + self.t(name + ".bias")

    def ln(self, x, name):
        return Fn.layer_norm(x, (x.shape[-1],), self.t(name + ".weight"), self.t(name + ".bias"), self.eps)

    def qformer(self, enc, ids):
        nq = self.nq
        query = self.t("qf.query_embd")
        txt = self.t("qf.token_embd.weight")[ids] + self.t("qf.position_embd.weight")[: len(ids)]
        x = torch.cat([query, txt], 0)
        x = self.ln(x, "qf.embd_ln")
        for l in range(self.layers):
            p = "qf.blk.%d." % l
            a = mha(self.lin(x, p + "attn_q"), self.lin(x, p + "attn_k"), self.lin(x, p + "attn_v"), self.heads)
            x = self.ln(self.lin(a, p + "attn_out") + x, p + "attn_ln")
            q, rest = x[:nq], x[nq:]
            if l % self.freq == 0:
                a = mha(self.lin(q, p + "cross_q"), self.lin(enc, p + "cross_k"), self.lin(enc, p + "cross_v"),
                        self.heads)
                q = self.ln(self.lin(a, p + "cross_out") + q, p + "cross_ln")
            q = self.ln(self.lin(Fn.gelu(self.lin(q, p + "ffnq_up")), p + "ffnq_down") + q, p + "ffnq_ln")
            if len(rest):
                rest = self.ln(self.lin(Fn.gelu(self.lin(rest, p + "ffn_up")), p + "ffn_down") + rest, p + "ffn_ln")
            x = torch.cat([q, rest], 0)
        return self.lin(x[:nq], "proj")

    def router(self, instr, prefix):
        pv = prefix.mean(0)
        logits = self.lin(torch.cat([instr, pv]), "router.gate")
        soft = None
        if self.M > 0:
            h = Fn.gelu(self.lin(pv, "router.soft_up"))
            soft = self.lin(h, "router.soft_down").reshape(self.K, self.M, self.D)
        return logits, soft

    def run(self, img, ids, lens, instr):
        prefix, logits, soft = [], [], []
        for b in range(img.shape[0]):
            pr = self.qformer(img[b], ids[b, : lens[b]])
            lg, so = self.router(instr[b], pr)
            prefix.append(pr)
            logits.append(lg)
            soft.append(so)
        return torch.stack(prefix), torch.stack(logits), torch.stack(soft)


def main():
    m = Model(sys.argv[1])
    R = read(sys.argv[2])
    cfg = R["cfg"].tolist()
    B, Tt, Ni, steps = (int(v) for v in cfg[:4])
    lr, wd = cfg[4], cfg[5]
    img = R["img"].reshape(B, Ni, -1).clone().requires_grad_(True)
    ids = R["ids"].reshape(B, Tt).long()
    lens = [int(v) for v in R["len"].tolist()]
    instr = R["instr"].reshape(B, m.D).clone().requires_grad_(True)
    dP = R["dP"].reshape(B, m.nq, m.D)
    dG = R["dG"].reshape(B, m.K)
    dS = R["dS"].reshape(B, m.K, m.M, m.D)
    route = R["route"].reshape(B, m.K)

    prefix, logits, soft = m.run(img, ids, lens, instr)
    gates = torch.softmax(logits, -1)
    L = (prefix * dP).sum() + (gates * dG).sum() + (soft * dS).sum()
    L.backward()
    out = [("prefix", prefix), ("gates", gates), ("soft", soft), ("d_img", img.grad), ("d_instr", instr.grad)]
    for n in m.names:
        out.append(("g." + n, m.p[n].grad.detach().clone()))

    opt = torch.optim.AdamW([m.p[n] for n in m.names], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    img = img.detach()
    instr = instr.detach()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        prefix, logits, soft = m.run(img, ids, lens, instr)
        y = route / route.sum(-1, keepdim=True)
        ce = -(y * torch.log_softmax(logits, -1)).sum(-1).mean()
        loss = ce + ((prefix - dP) ** 2).mean() + (soft ** 2).mean()
        losses.append(loss.detach())
        loss.backward()
        opt.step()
    out.append(("adam_loss", torch.stack(losses)))
    write(sys.argv[3], out)


if __name__ == "__main__":
    main()
