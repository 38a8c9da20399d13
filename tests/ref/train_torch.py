#!/usr/bin/python3
"""Float64 PyTorch reference of one training run of stage I or stage II (docs/training.md,
docs/model.md), for tests/test_train_parity.c. Written from the documents and from the NumPy
forward tests/ref/rsmoe_ref.py (ported to torch for autograd), not from src/train/.

usage: /usr/bin/python3 tests/ref/train_torch.py STAGE MODEL.gguf DATA.json FEATURES.gguf OUT.txt
           KEY=VALUE...

STAGE is 1 or 2. KEY=VALUE gives the run's configuration (rs_train_config names): steps batch
accum warmup lr min_lr weight_decay clip beta1 beta2 eps lora_rank lora_alpha gate_loss gate_lr_mult
max_caption_tokens seed, and aspects=A,B,... the aspect (0 theme, 1 objects, 2 relationships)
of every training caption in data-set order (stage II; labelled by hand in the C test).

What the run is (each point from docs/training.md unless noted):
  - samples: every non-empty caption of the `train` split, in data-set order, tokenized
    byte-level without BOS and cut to max_caption_tokens;
  - order: a seeded permutation per epoch: Fisher-Yates driven by xoshiro256** seeded through
    splitmix64 with seed·1000003 + epoch (src/core/rng.c's generator, ported below);
  - image tokens: the f16 feature cache (tensor "features" [images, tokens, width]);
  - stage I: Q-Former + proj (all qf.* and proj.* tensors) and one LoRA adapter on all seven
    LLM matrices (rank lora_rank, alpha lora_alpha) are trained; input
    [visual prefix ; BOS + instruction ; caption ; EOS], loss = mean next-token cross-entropy
    over the caption tokens and EOS of the whole micro-batch;
  - stage II: the Q-Former and LLM base are frozen; per expert a LoRA adapter (rsmoe.moe.*
    rank, alpha) and the router (router.*) train; sample k-th expert input
    [prefix ; soft prompts S_k ; BOS + prompt_k ; caption ; EOS] with adapter k;
    loss = LM loss + gate_loss · mean_b CE(gate logits_b, share of image b's captions per aspect);
  - LoRA init (PEFT): A ~ U(-1/sqrt(in), 1/sqrt(in)) drawn in float32 from the generator seeded
    with seed ^ 0x10e4, adapter by adapter, layer by layer, target by target (q k v o gate up
    down), B = 0;
  - optimiser: torch.optim.AdamW (decoupled decay on every trained tensor but the Q-Former's
    vectors), lr with linear
    warm-up over `warmup` steps then cosine from lr to min_lr at `steps`, global gradient-norm
    clipping at `clip` (torch.nn.utils.clip_grad_norm_), gradients averaged over `accum`
    micro-batches.
OUT.txt gets one line per step: "step loss grad_norm" (loss before the update, grad norm
before clipping). With export=DIR, the final parameters as the exported model holds them go to
DIR/NAME.f64 (little-endian float64, PyTorch layout), and their names to DIR/names.txt:
stage I: every qf.* / proj.* tensor and the LLM matrices with the LoRA merged
(W + (alpha/r)·B·A); stage II: router.* and expert.E.blk.L.T.lora_a / lora_b."""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_np import GGUF  # noqa: E402
from rsmoe_ref import Model as RefModel  # noqa: E402  (metadata + byte-level tokenizer)

torch.set_default_dtype(torch.float64)
TARGETS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
M64 = (1 << 64) - 1


# ---------------------------------------------------------------- the project's RNG (exact port)
class Rng:
    def __init__(self, seed):
        x = seed & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def u64(self):
        s = self.s
        res = (self._rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return res

    def uniform_f32(self, n, lo, hi):
        """n float32 values lo + (hi - lo)·u, u = 53-bit double rounded to float32"""
        u = np.array([(self.u64() >> 11) * 2.0 ** -53 for _ in range(n)]).astype(np.float32)
        return (np.float32(lo) + (np.float32(hi) - np.float32(lo)) * u).astype(np.float32)


def permutation(n, seed, epoch):
    perm = list(range(n))
    r = Rng((seed * 1000003 + epoch) & M64)
    for i in range(n - 1, 0, -1):
        j = r.u64() % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


# ---------------------------------------------------------------- building blocks
def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def mha(q, k, v, heads, kv_heads, causal):
    Tq, Tk = q.shape[0], k.shape[0]
    d = q.shape[1] // heads
    outs = []
    for h in range(heads):
        g = h // (heads // kv_heads)
        s = q[:, h * d:(h + 1) * d] @ k[:, g * d:(g + 1) * d].T / math.sqrt(d)
        if causal:
            mask = torch.arange(Tk)[None, :] > torch.arange(Tq)[:, None]
            s = s.masked_fill(mask, float("-inf"))
        outs.append(torch.softmax(s, -1) @ v[:, g * d:(g + 1) * d])
    return torch.cat(outs, 1)


class Run:
    def __init__(self, stage, model_path, data_path, feat_path, cfg):
        self.stage, self.cfg = stage, cfg
        self.ref = ref = RefModel(model_path)
        g = ref.g
        self.W = {n: torch.tensor(g.get(n)) for n in g.tensors}
        self.qf, self.llm = ref.qf, ref.llm
        self.instr_text = ref.kv.get("rsmoe.instruction.caption", "Describe this remote sensing image.")
        self.instr = ref.encode(self.instr_text, special=False)
        # feature cache
        fg = GGUF(feat_path)
        names = fg.kv["rsmoe.features.images"]
        feats = fg.get("features")  # [images, tokens, width]
        self.feat = {n: torch.tensor(feats[i]) for i, n in enumerate(names)}
        # samples
        import json
        ds = json.load(open(data_path))
        self.samples = []
        self.route = []
        aspects = cfg.get("aspects", [])
        ci = 0
        for it in ds["images"]:
            if it.get("split", "train") != "train":
                continue
            counts = [0, 0, 0]
            for s in it["sentences"]:
                ids = ref.encode(s["raw"].strip(" \t\r\n"), special=False)
                if not ids:
                    continue
                ids = ids[:int(cfg["max_caption_tokens"])]
                k = aspects[ci] % max(ref.K, 1) if stage == 2 else 0
                ci += 1
                counts[k] += 1
                self.samples.append(dict(img=it["filename"], item=len(self.route), ids=ids, expert=k))
            self.route.append([c / max(sum(counts), 1) for c in counts])
        if stage == 2:
            assert ci == len(aspects), "one aspect per caption"
        # trained parameters
        self.params = []
        if stage == 1:
            self.qnames = [n for n in g.tensors if n.startswith("qf.") or n.startswith("proj.")]
            for n in self.qnames:
                self.W[n].requires_grad_(True)
                self.params.append(self.W[n])
            n_lora, rank, alpha = 1, int(cfg["lora_rank"]), float(np.float32(cfg["lora_alpha"]))
        else:
            assert ref.K > 0, "stage 2 needs a model with experts"
            self.rnames = [n for n in g.tensors if n.startswith("router.")]
            for n in self.rnames:
                self.W[n].requires_grad_(True)
                self.params.append(self.W[n])
            n_lora, rank, alpha = ref.K, ref.rank, float(np.float32(ref.alpha))
            self.prompts = [ref.encode(p, special=True) for p in ref.prompts]
        self.scale = float(np.float32(alpha) / np.float32(rank))
        D, qd, kvd, F = self.llm["dim"], self.llm["heads"] * self.llm["hd"], self.llm["kv_heads"] * self.llm["hd"], \
            self.W["blk.0.ffn_up.weight"].shape[0]
        dims = {"attn_q": (D, qd), "attn_k": (D, kvd), "attn_v": (D, kvd), "attn_output": (qd, D),
                "ffn_gate": (D, F), "ffn_up": (D, F), "ffn_down": (F, D)}
        rng = Rng(int(cfg["seed"]) ^ 0x10E4)
        self.lora = []
        for _ in range(n_lora):
            ad = {}
            for l in range(self.llm["layers"]):
                for tn in TARGETS:  # stage II: rsmoe.moe targets; the test preset adapts all seven
                    i, o = dims[tn]
                    bound = np.float32(1.0) / np.sqrt(np.float32(i), dtype=np.float32)
                    A = torch.tensor(rng.uniform_f32(rank * i, -bound, bound).astype(np.float64).reshape(rank, i),
                                     requires_grad=True)
                    B = torch.zeros(o, rank, requires_grad=True)
                    ad[(l, tn)] = (A, B)
                    self.params += [A, B]
            self.lora.append(ad)

    # ------------------------------------------------------------ Q-Former (rsmoe_ref.qformer in torch)
    def qformer(self, enc):
        c, t = self.qf, self.W
        nq, eps = c["nq"], c["eps"]

        def lin(x, name):
            return x @ t[name + ".weight"].T + t[name + ".bias"]

        ids = torch.tensor(self.instr, dtype=torch.long)
        txt = t["qf.token_embd.weight"][ids] + t["qf.position_embd.weight"][:len(self.instr)]
        x = torch.cat([t["qf.query_embd"], txt], 0)
        x = layernorm(x, t["qf.embd_ln.weight"], t["qf.embd_ln.bias"], eps)
        for l in range(c["layers"]):
            p = "qf.blk.%d." % l
            a = mha(lin(x, p + "attn_q"), lin(x, p + "attn_k"), lin(x, p + "attn_v"), c["heads"], c["heads"], False)
            x = layernorm(lin(a, p + "attn_out") + x, t[p + "attn_ln.weight"], t[p + "attn_ln.bias"], eps)
            q = x[:nq]
            if l % c["freq"] == 0:
                a = mha(lin(q, p + "cross_q"), lin(enc, p + "cross_k"), lin(enc, p + "cross_v"), c["heads"], c["heads"], False)
                q = layernorm(lin(a, p + "cross_out") + q, t[p + "cross_ln.weight"], t[p + "cross_ln.bias"], eps)
            q = layernorm(lin(gelu(lin(q, p + "ffnq_up")), p + "ffnq_down") + q,
                          t[p + "ffnq_ln.weight"], t[p + "ffnq_ln.bias"], eps)
            rest = x[nq:]
            rest = layernorm(lin(gelu(lin(rest, p + "ffn_up")), p + "ffn_down") + rest,
                             t[p + "ffn_ln.weight"], t[p + "ffn_ln.bias"], eps)
            x = torch.cat([q, rest], 0)
        return lin(x[:nq], "proj")

    # ------------------------------------------------------------ LLM with a LoRA adapter, per row
    def rope(self, x, heads):
        hd, theta = self.llm["hd"], self.llm["theta"]
        T = x.shape[0]
        x = x.reshape(T, heads, hd)
        inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
        if self.llm["neox"]:
            a, b = x[..., :hd // 2], x[..., hd // 2:]
            x = torch.cat([a * c - b * s, a * s + b * c], -1)
        else:
            a, b = x[..., 0::2], x[..., 1::2]
            x = torch.stack([a * c - b * s, a * s + b * c], -1).reshape(T, heads, hd)
        return x.reshape(T, heads * hd)

    def llm_logits(self, emb, ad):
        c, t = self.llm, self.W

        def lin(x, l, tn):
            y = x @ t["blk.%d.%s.weight" % (l, tn)].T
            A, B = ad[(l, tn)]
            return y + self.scale * (x @ A.T) @ B.T

        x = emb
        for l in range(c["layers"]):
            p = "blk.%d." % l
            y = rmsnorm(x, t[p + "attn_norm.weight"], c["eps"])
            q = self.rope(lin(y, l, "attn_q"), c["heads"])
            k = self.rope(lin(y, l, "attn_k"), c["kv_heads"])
            v = lin(y, l, "attn_v")
            x = x + lin(mha(q, k, v, c["heads"], c["kv_heads"], True), l, "attn_output")
            y = rmsnorm(x, t[p + "ffn_norm.weight"], c["eps"])
            gt, up = lin(y, l, "ffn_gate"), lin(y, l, "ffn_up")
            x = x + lin(gt * torch.sigmoid(gt) * up, l, "ffn_down")
        y = rmsnorm(x, t["output_norm.weight"], c["eps"])
        out = t["output.weight"] if "output.weight" in t else t["token_embd.weight"]
        return y @ out.T

    # ------------------------------------------------------------ one micro-batch
    def batch_loss(self, idx):
        ref, t = self.ref, self.W
        tok = t["token_embd.weight"]
        nll, n_scored, gate_ce = 0.0, 0, 0.0
        for i in idx:
            s = self.samples[i]
            enc = self.feat[s["img"]]
            if self.stage == 1:
                prefix = self.qformer(enc)
                head = [prefix]
                prompt = ([ref.bos] if ref.add_bos and ref.bos >= 0 else []) + self.instr
                ad = self.lora[0]
            else:
                with torch.no_grad():
                    prefix = self.qformer(enc)
                k = s["expert"]
                pi = tok[torch.tensor(self.instr)].mean(0)
                pv = prefix.mean(0)
                logits = t["router.gate.weight"] @ torch.cat([pi, pv]) + t["router.gate.bias"]
                y = torch.tensor(self.route[s["item"]][:ref.K])
                gate_ce = gate_ce - (y / y.sum() * torch.log_softmax(logits, -1)).sum()
                head = [prefix]
                if ref.M > 0:
                    h = gelu(t["router.soft_up.weight"] @ pv + t["router.soft_up.bias"])
                    soft = (t["router.soft_down.weight"] @ h + t["router.soft_down.bias"]).reshape(ref.K, ref.M, -1)
                    head.append(soft[k])
                prompt = self.prompts[k]
                ad = self.lora[k]
            ids = prompt + s["ids"] + [ref.eos]
            emb = torch.cat(head + [tok[torch.tensor(ids)]], 0)
            logits = self.llm_logits(emb, ad)
            h0 = emb.shape[0] - len(ids)           # rows before the first prompt token
            first = h0 + len(prompt) - 1            # row predicting the first caption token
            tgt = torch.tensor(s["ids"] + [ref.eos])
            lp = torch.log_softmax(logits[first:first + len(tgt)], -1)
            nll = nll - lp.gather(1, tgt[:, None]).sum()
            n_scored += len(tgt)
        loss = nll / n_scored
        if self.stage == 2:
            loss = loss + float(np.float32(self.cfg["gate_loss"])) * gate_ce / len(idx)
        return loss

    def lr_at(self, step):
        c = self.cfg
        lr, min_lr, warm, steps = (float(np.float32(c["lr"])), float(np.float32(c["min_lr"])), int(c["warmup"]),
                                   int(c["steps"]))
        if warm > 0 and step < warm:
            return lr * (step + 1) / warm
        span = steps - warm - 1 if steps - warm > 1 else 1.0
        p = min((step - warm) / span, 1.0)
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))

    def train(self):
        c = self.cfg
        f32 = lambda k: float(np.float32(c[k]))  # noqa: E731  (the C config holds floats)
        # weight decay on every trained tensor except the Q-Former's vectors (LayerNorm weights,
        # biases: one row in the GGUF's layout), as the C trainer groups them
        nodecay = {id(self.W[n]) for n in getattr(self, "qnames", []) if self.W[n].dim() < 2 or self.W[n].shape[0] < 2}
        # the router's gate (router.gate.*) learns at lr × gate_lr_mult, as the C trainer's group
        gate = {id(self.W[n]) for n in getattr(self, "rnames", []) if n.startswith("router.gate.")}
        rest = [p for p in self.params if id(p) not in gate]
        groups = [{"params": [p for p in rest if id(p) not in nodecay], "weight_decay": f32("weight_decay"), "mult": 1.0},
                  {"params": [p for p in rest if id(p) in nodecay], "weight_decay": 0.0, "mult": 1.0}]
        if gate:
            groups.append({"params": [p for p in self.params if id(p) in gate], "weight_decay": f32("weight_decay"),
                           "mult": f32("gate_lr_mult")})
        opt = torch.optim.AdamW(groups, lr=f32("lr"), betas=(f32("beta1"), f32("beta2")), eps=f32("eps"))
        steps, B, accum, seed = int(c["steps"]), int(c["batch"]), int(c["accum"]), int(c["seed"])
        n = len(self.samples)
        perms = {}

        def order(pos):
            e = pos // n
            if e not in perms:
                perms[e] = permutation(n, seed, e)
            return perms[e][pos % n]

        out = []
        for step in range(steps):
            opt.zero_grad(set_to_none=False)
            step_loss = 0.0
            for a in range(accum):
                idx = [order((step * accum + a) * B + b) for b in range(B)]
                loss = self.batch_loss(idx)
                (loss / accum).backward()
                step_loss += loss.item() / accum
            for p in self.params:  # every trained tensor decays, used this step or not
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            clip = f32("clip")
            gn = torch.nn.utils.clip_grad_norm_(self.params, clip if clip > 0 else float("inf")).item()
            for pg in opt.param_groups:
                pg["lr"] = self.lr_at(step) * pg["mult"]
            opt.step()
            out.append((step + 1, step_loss, gn))
        return out

    def final_params(self):
        res = {}
        with torch.no_grad():
            if self.stage == 1:
                for n in self.qnames:
                    res[n] = self.W[n]
                for (l, tn), (A, B) in self.lora[0].items():
                    res["blk.%d.%s.weight" % (l, tn)] = self.W["blk.%d.%s.weight" % (l, tn)] + self.scale * B @ A
            else:
                for n in self.rnames:
                    res[n] = self.W[n]
                for e, ad in enumerate(self.lora):
                    for (l, tn), (A, B) in ad.items():
                        res["expert.%d.blk.%d.%s.lora_a" % (e, l, tn)] = A
                        res["expert.%d.blk.%d.%s.lora_b" % (e, l, tn)] = B
        return res


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    stage, model, data, feats, outp = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    cfg = dict(steps=5, batch=4, accum=1, warmup=2, lr=1e-3, min_lr=1e-4, weight_decay=0.05, clip=1.0, beta1=0.9,
               beta2=0.999, eps=1e-8, lora_rank=8, lora_alpha=16, gate_loss=0.1, gate_lr_mult=30, max_caption_tokens=48, seed=42)
    for kv in sys.argv[6:]:
        k, v = kv.split("=", 1)
        cfg[k] = [int(x) for x in v.split(",") if x] if k == "aspects" else v if k == "export" else float(v)
    assert stage in (1, 2), "stage 1 or 2"
    run = Run(stage, model, data, feats, cfg)
    res = run.train()
    with open(outp, "w") as f:
        for s, l, g in res:
            f.write("%d %.17g %.17g\n" % (s, l, g))
    if "export" in cfg:
        os.makedirs(cfg["export"], exist_ok=True)
        params = run.final_params()
        for n, t in params.items():
            t.detach().numpy().astype("<f8").tofile(os.path.join(cfg["export"], n + ".f64"))
        with open(os.path.join(cfg["export"], "names.txt"), "w") as f:
            f.write("\n".join(params) + "\n")


if __name__ == "__main__":
    main()
