#!/usr/bin/python3
"""Independent NumPy (float64) reference of the whole RS-MoE forward path, written from
docs/model.md and ../shared/docs/method.md, for the parity test (tests/test_model.c).

usage: rsmoe_ref.py MODEL.gguf IMAGE.rgb W H OUTDIR INSTRUCTION [QUESTION] [--max-len N] [--views N]

IMAGE.rgb holds W*H*3 raw bytes that must already be the encoder's input size (no resize).
Writes to OUTDIR (little-endian float64 unless noted):
  enc.bin      image-encoder output [tokens, width]
  qf.bin       Q-Former query outputs [n_query, width]
  prefix.bin   visual prefix [n_query, dim]
  gates.bin    router gates [K]          (MoE models)
  soft.bin     soft prompts [K, M, dim]   (MoE models)
  logits_E.bin first-step logits of stream E (E = expert index, or 'llm' for the LLM alone)
  ids_E.txt    greedy token ids of stream E (end token excluded)
  sumlp_E.bin  the sum of those tokens' log-probabilities (the end token's included when it ended)

--views N (test-time views, docs/model.md): the first N of the image as given, mirrored
left-right, rotated 90 degrees clockwise, rotated 270, mirrored top-bottom, rotated 180,
transposed, anti-transposed each go through encoder, Q-Former and router; the gates are their
mean; each stream decodes all N prefixes together, its next-token log-probabilities being the
log-softmax of the mean of the views' log-softmaxes. enc/qf/prefix/soft/logits files are then
those of the image as given, gates.bin the mean.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_np import GGUF  # noqa: E402
from bytelevel import bytes_to_unicode  # noqa: E402

_erf = np.vectorize(math.erf)


def log_softmax(x):
    m = np.max(x)
    return x - m - np.log(np.sum(np.exp(x - m)))


# test-time views in their order of use; view number bits: 4 transposes, then 1 mirrors
# left-right, 2 top-bottom (src/data/image.h)
VIEW_ORDER = [0, 1, 5, 6, 2, 3, 4, 7]


def dihedral(img, view):
    if view & 4:
        img = img.transpose(1, 0, 2)
    if view & 1:
        img = img[:, ::-1]
    if view & 2:
        img = img[::-1, :]
    return np.ascontiguousarray(img)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def mha(q, k, v, heads, kv_heads=None, causal_offset=None):
    """q [Tq, H*d], k/v [Tk, Hkv*d]; causal_offset: query i sees keys j <= i + offset."""
    kv_heads = kv_heads or heads
    Tq, Tk = q.shape[0], k.shape[0]
    d = q.shape[1] // heads
    out = np.zeros((Tq, heads * d))
    for h in range(heads):
        g = h // (heads // kv_heads)
        s = q[:, h * d:(h + 1) * d] @ k[:, g * d:(g + 1) * d].T / math.sqrt(d)
        if causal_offset is not None:
            mask = np.arange(Tk)[None, :] > (np.arange(Tq)[:, None] + causal_offset)
            s = np.where(mask, -np.inf, s)
        out[:, h * d:(h + 1) * d] = softmax(s) @ v[:, g * d:(g + 1) * d]
    return out


class Model:
    def __init__(self, path):
        self.g = g = GGUF(path)
        self.kv = kv = g.kv
        self.t = g.get
        self.vit = dict(size=kv["rsmoe.vit.image_size"], patch=kv["rsmoe.vit.patch_size"],
                        width=kv["rsmoe.vit.embedding_length"], layers=kv["rsmoe.vit.block_count"],
                        heads=kv["rsmoe.vit.head_count"], eps=kv.get("rsmoe.vit.layer_norm_epsilon", 1e-6))
        self.mean = np.array(kv.get("rsmoe.vit.image_mean", [0.48145466, 0.4578275, 0.40821073]))
        self.std = np.array(kv.get("rsmoe.vit.image_std", [0.26862954, 0.26130258, 0.27577711]))
        self.qf = dict(nq=kv["rsmoe.qformer.query_count"], width=kv["rsmoe.qformer.embedding_length"],
                       layers=kv["rsmoe.qformer.block_count"], heads=kv["rsmoe.qformer.head_count"],
                       freq=kv.get("rsmoe.qformer.cross_attention_freq", 2),
                       eps=kv.get("rsmoe.qformer.layer_norm_epsilon", 1e-12))
        self.llm = dict(dim=kv["llama.embedding_length"], layers=kv["llama.block_count"],
                        heads=kv["llama.attention.head_count"],
                        kv_heads=kv.get("llama.attention.head_count_kv", kv["llama.attention.head_count"]),
                        eps=kv.get("llama.attention.layer_norm_rms_epsilon", 1e-5),
                        theta=kv.get("llama.rope.freq_base", 10000.0),
                        neox=kv.get("rsmoe.llm.rope_neox", False))
        self.llm["hd"] = kv.get("llama.rope.dimension_count", self.llm["dim"] // self.llm["heads"])
        self.K = kv.get("rsmoe.moe.expert_count", 0)
        self.M = kv.get("rsmoe.moe.soft_prompt_count", 0)
        self.rank = kv.get("rsmoe.moe.lora_rank", 0)
        self.alpha = kv.get("rsmoe.moe.lora_alpha", 0.0)
        self.prompts = kv.get("rsmoe.moe.expert_prompts", [])
        self.vqa_suffix = kv.get("rsmoe.instruction.vqa_suffix", "Answer the question using a single word or phrase.")
        toks = kv["tokenizer.ggml.tokens"]
        self.tok_id = {t: i for i, t in enumerate(toks)}
        self.bos = kv.get("tokenizer.ggml.bos_token_id", -1)
        self.eos = kv.get("tokenizer.ggml.eos_token_id", -1)
        self.add_bos = kv.get("tokenizer.ggml.add_bos_token", False)
        assert kv["tokenizer.ggml.model"] == "gpt2" and len(kv.get("tokenizer.ggml.merges", [])) == 0, \
            "the reference handles byte-level vocabularies without merges"
        self.byte_char = bytes_to_unicode()

    # ---------------------------------------------------------------- tokenizer (bytes, no merges)
    def encode(self, text, special):
        ids = [self.bos] if special and self.add_bos and self.bos >= 0 else []
        ids += [self.tok_id[self.byte_char[b]] for b in text.encode("utf-8")]
        return ids

    # ---------------------------------------------------------------- image encoder
    def encode_image(self, img):
        c, t = self.vit, self.t
        P, W = c["patch"], c["width"]
        x = (img / 255.0 - self.mean) / self.std           # HWC
        H = x.shape[0] // P
        patches = x.reshape(H, P, H, P, 3).transpose(0, 2, 4, 1, 3).reshape(H * H, 3 * P * P)  # (c, ky, kx)
        h = patches @ t("v.patch_embd.weight").T + t("v.patch_embd.bias")
        h = np.vstack([t("v.class_embd")[None, :], h]) + t("v.position_embd")
        for l in range(c["layers"]):
            p = "v.blk.%d." % l
            y = layernorm(h, t(p + "ln1.weight"), t(p + "ln1.bias"), c["eps"])
            qkv = y @ t(p + "attn_qkv.weight").T + t(p + "attn_qkv.bias")
            a = mha(qkv[:, :W], qkv[:, W:2 * W], qkv[:, 2 * W:], c["heads"])
            h = h + a @ t(p + "attn_out.weight").T + t(p + "attn_out.bias")
            y = layernorm(h, t(p + "ln2.weight"), t(p + "ln2.bias"), c["eps"])
            y = gelu(y @ t(p + "ffn_up.weight").T + t(p + "ffn_up.bias"))
            h = h + y @ t(p + "ffn_down.weight").T + t(p + "ffn_down.bias")
        return layernorm(h, t("v.ln_vision.weight"), t("v.ln_vision.bias"), c["eps"])

    # ---------------------------------------------------------------- Q-Former
    def qformer(self, enc, ids):
        c, t = self.qf, self.t
        nq, eps = c["nq"], c["eps"]

        def lin(x, name):
            return x @ t(name + ".weight").T + t(name + ".bias")

        txt = t("qf.token_embd.weight")[ids] + t("qf.position_embd.weight")[:len(ids)]
        x = np.vstack([t("qf.query_embd"), txt]) if len(ids) else t("qf.query_embd").copy()
        x = layernorm(x, t("qf.embd_ln.weight"), t("qf.embd_ln.bias"), eps)
        for l in range(c["layers"]):
            p = "qf.blk.%d." % l
            a = mha(lin(x, p + "attn_q"), lin(x, p + "attn_k"), lin(x, p + "attn_v"), c["heads"])
            x = layernorm(lin(a, p + "attn_out") + x, t(p + "attn_ln.weight"), t(p + "attn_ln.bias"), eps)
            q = x[:nq]
            if l % c["freq"] == 0:
                a = mha(lin(q, p + "cross_q"), lin(enc, p + "cross_k"), lin(enc, p + "cross_v"), c["heads"])
                q = layernorm(lin(a, p + "cross_out") + q, t(p + "cross_ln.weight"), t(p + "cross_ln.bias"), eps)
            q = layernorm(lin(gelu(lin(q, p + "ffnq_up")), p + "ffnq_down") + q,
                          t(p + "ffnq_ln.weight"), t(p + "ffnq_ln.bias"), eps)
            rest = x[nq:]
            if len(rest):
                rest = layernorm(lin(gelu(lin(rest, p + "ffn_up")), p + "ffn_down") + rest,
                                 t(p + "ffn_ln.weight"), t(p + "ffn_ln.bias"), eps)
            x = np.vstack([q, rest])
        qout = x[:nq]
        return qout, lin(qout, "proj")

    # ---------------------------------------------------------------- router
    def router(self, instr_ids, prefix):
        t, D = self.t, self.llm["dim"]
        pi = t("token_embd.weight")[instr_ids].mean(0) if len(instr_ids) else np.zeros(D)
        pv = prefix.mean(0)
        gates = softmax(t("router.gate.weight") @ np.concatenate([pi, pv]) + t("router.gate.bias"))
        soft = None
        if self.M > 0:
            h = gelu(t("router.soft_up.weight") @ pv + t("router.soft_up.bias"))
            soft = (t("router.soft_down.weight") @ h + t("router.soft_down.bias")).reshape(self.K, self.M, D)
        return gates, soft

    # ---------------------------------------------------------------- LLM with an expert's LoRA merged
    def llm_weights(self, expert):
        t = self.t
        w = {}
        names = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
        for l in range(self.llm["layers"]):
            for n in names:
                W = t("blk.%d.%s.weight" % (l, n))
                if expert is not None and self.g.has("expert.%d.blk.%d.%s.lora_a" % (expert, l, n)):
                    A = t("expert.%d.blk.%d.%s.lora_a" % (expert, l, n))
                    B = t("expert.%d.blk.%d.%s.lora_b" % (expert, l, n))
                    W = W + (self.alpha / self.rank) * B @ A
                w[(l, n)] = W
        return w

    def rope(self, x, pos, heads):
        hd, theta = self.llm["hd"], self.llm["theta"]
        x = x.reshape(x.shape[0], heads, hd).copy()
        inv = theta ** (-np.arange(0, hd, 2) / hd)
        ang = np.asarray(pos)[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        if self.llm["neox"]:
            a, b = x[..., :hd // 2].copy(), x[..., hd // 2:].copy()
            x[..., :hd // 2], x[..., hd // 2:] = a * c - b * s, a * s + b * c
        else:
            a, b = x[..., 0::2].copy(), x[..., 1::2].copy()
            x[..., 0::2], x[..., 1::2] = a * c - b * s, a * s + b * c
        return x.reshape(x.shape[0], -1)

    def llm_logits(self, w, emb):
        """full causal forward over the embeddings [T, dim]; logits of the last row"""
        c, t = self.llm, self.t
        x = emb.copy()
        pos = np.arange(x.shape[0])
        for l in range(c["layers"]):
            p = "blk.%d." % l
            y = rmsnorm(x, t(p + "attn_norm.weight"), c["eps"])
            q = self.rope(y @ w[(l, "attn_q")].T, pos, c["heads"])
            k = self.rope(y @ w[(l, "attn_k")].T, pos, c["kv_heads"])
            v = y @ w[(l, "attn_v")].T
            x = x + mha(q, k, v, c["heads"], c["kv_heads"], causal_offset=0) @ w[(l, "attn_output")].T
            y = rmsnorm(x, t(p + "ffn_norm.weight"), c["eps"])
            g = y @ w[(l, "ffn_gate")].T
            u = y @ w[(l, "ffn_up")].T
            x = x + (g / (1 + np.exp(-g)) * u) @ w[(l, "ffn_down")].T
        y = rmsnorm(x[-1], t("output_norm.weight"), c["eps"])
        out = t("output.weight") if self.g.has("output.weight") else t("token_embd.weight")
        return out @ y

    def greedy(self, w, prefix_embs, max_len):
        """greedy decoding of one stream over its views (a list of prefixes): the views' log-softmaxes
        averaged and renormalised; returns the first view's first logits, the ids, their log-prob"""
        emb_table = self.t("token_embd.weight")
        embs = [p.copy() for p in prefix_embs]
        ids, first, sumlp = [], None, 0.0
        for step in range(max_len):
            lps = []
            for v, emb in enumerate(embs):
                logits = self.llm_logits(w, emb)
                if first is None:
                    first = logits.copy()
                if step < 1 and self.eos >= 0:
                    logits[self.eos] = -np.inf   # min_len 1
                lps.append(log_softmax(logits))
            lp = log_softmax(np.mean(lps, axis=0)) if len(lps) > 1 else lps[0]
            nxt = int(np.argmax(lp))
            sumlp += lp[nxt]
            if nxt == self.eos:
                break
            ids.append(nxt)
            embs = [np.vstack([e, emb_table[nxt][None, :]]) for e in embs]
        return first, ids, sumlp


def main():
    args = sys.argv[1:]
    max_len, n_views = 8, 1
    if "--max-len" in args:
        i = args.index("--max-len")
        max_len = int(args[i + 1])
        del args[i:i + 2]
    if "--views" in args:
        i = args.index("--views")
        n_views = int(args[i + 1])
        del args[i:i + 2]
    model_path, img_path, W, H, outdir, instruction = args[:6]
    question = args[6] if len(args) > 6 else None
    W, H = int(W), int(H)
    m = Model(model_path)
    img = np.frombuffer(open(img_path, "rb").read(), np.uint8).reshape(H, W, 3).astype(np.float64)
    assert W == H == m.vit["size"], "the reference takes images already at the encoder size"
    os.makedirs(outdir, exist_ok=True)

    def save(name, a):
        np.asarray(a, dtype="<f8").tofile(os.path.join(outdir, name))

    instr = question.rstrip(" \n") if question else instruction
    instr_ids = m.encode(instr, special=False)
    D = m.llm["dim"]
    prefixes, softs, gate_list = [], [], []
    for v in range(n_views):
        enc = m.encode_image(dihedral(img, VIEW_ORDER[v]))
        qout, prefix = m.qformer(enc, instr_ids)
        if v == 0:
            save("enc.bin", enc)
            save("qf.bin", qout)
            save("prefix.bin", prefix)
        prefixes.append(prefix)
        if m.K > 0:
            gates, soft = m.router(instr_ids, prefix)
            gate_list.append(gates)
            softs.append(soft)
    streams = []
    if m.K > 0:
        save("gates.bin", np.mean(gate_list, axis=0))
        if softs[0] is not None:
            save("soft.bin", softs[0])
        for e in range(m.K):
            prompt = (instr + " " + m.vqa_suffix) if question else m.prompts[e]
            pe = m.t("token_embd.weight")[m.encode(prompt, special=True)]
            streams.append((str(e), e, [np.vstack([p] + ([s[e]] if s is not None else []) + [pe])
                                        for p, s in zip(prefixes, softs)]))
    pe = m.t("token_embd.weight")[m.encode((instr + " " + m.vqa_suffix) if question else instr, special=True)]
    streams.append(("llm", None, [np.vstack([p, pe]) for p in prefixes]))
    for name, expert, embs in streams:
        first, ids, sumlp = m.greedy(m.llm_weights(expert), embs, max_len)
        save("logits_%s.bin" % name, first)
        save("sumlp_%s.bin" % name, [sumlp])
        with open(os.path.join(outdir, "ids_%s.txt" % name), "w") as f:
            f.write(" ".join(str(i) for i in ids) + "\n")
    assert D == prefix.shape[1]


if __name__ == "__main__":
    main()
