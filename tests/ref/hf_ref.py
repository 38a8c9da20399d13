#!/usr/bin/python3
"""Independent NumPy reference for `rsmoe import hf` (tests/test_hf_import.c): reads the
Hugging Face safetensors + config.json itself (its own safetensors reader, its own mapping of
transformers' InstructBlip*/Llama* names to the forward path) and runs the float64 forward of
tests/ref/rsmoe_ref.py on those weights. From the imported GGUF it takes only what the import
initialises (expert LoRA and router: random by design) and the expert prompts/settings.

The LLM follows HF: rotate-half RoPE with the Llama-3 frequency rule, q/k unpermuted. The
Q-Former's word embeddings are mapped onto the LLM's byte-level vocabulary as documented
(mean of the BERT rows of the WordPiece tokens of each token's text; [UNK]'s row if none),
computed here for single-byte tokens by BERT's rules (lower-case ASCII letters/digits/punct).

usage: hf_ref.py caption BLIPDIR LLMDIR MODEL.gguf IMAGE.rgb W H OUTDIR INSTRUCTION [QUESTION] [--max-len N]
       hf_ref.py llm LLMDIR OUT.bin ID...      (logits [V] of the last of the ids, float64)
"""
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rsmoe_ref  # noqa: E402


def read_safetensors(path):
    out = {}
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack_from("<Q", buf, 0)[0]
    hdr = json.loads(buf[8:8 + n])
    base = 8 + n
    for name, e in hdr.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = buf[base + b:base + end]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float64)
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raise ValueError(e["dtype"])
        out[name] = a.reshape(e["shape"])
    return out


def read_dir(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = [f for f in sorted(os.listdir(d)) if f.endswith(".safetensors")]
    t = {}
    for f in files:
        t.update(read_safetensors(os.path.join(d, f)))
    return t


def llama3_inv_freq(hd, theta, rs):
    inv = theta ** (-np.arange(0, hd, 2) / hd)
    if not rs:
        return inv
    factor, lo, hi, orig = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    low_wl, high_wl = orig / lo, orig / hi
    wl = 2 * math.pi / inv
    inv_l = np.where(wl > low_wl, inv / factor, inv)
    smooth = (orig / wl - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = ~(wl < high_wl) & ~(wl > low_wl)
    return np.where(medium, smoothed, inv_l)


def map_llm(h, cfg, T):
    L = cfg["num_hidden_layers"]
    T["token_embd.weight"] = h["model.embed_tokens.weight"]
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for l in range(L):
        for ours, hf in names.items():
            T["blk.%d.%s.weight" % (l, ours)] = h["model.layers.%d.%s.weight" % (l, hf)]
        T["blk.%d.attn_norm.weight" % l] = h["model.layers.%d.input_layernorm.weight" % l]
        T["blk.%d.ffn_norm.weight" % l] = h["model.layers.%d.post_attention_layernorm.weight" % l]
    T["output_norm.weight"] = h["model.norm.weight"]
    if not cfg.get("tie_word_embeddings", False):
        T["output.weight"] = h["lm_head.weight"]


def llm_dict(cfg):
    return dict(dim=cfg["hidden_size"], layers=cfg["num_hidden_layers"], heads=cfg["num_attention_heads"],
                kv_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]), eps=cfg.get("rms_norm_eps", 1e-6),
                theta=cfg.get("rope_theta", 10000.0), neox=True,
                hd=cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"]))


class Weights:
    """the tensor source: HF-derived T first; from the GGUF only what the import initialises"""

    def __init__(self, T, gguf):
        self.T, self.gguf = T, gguf

    def has(self, n):
        return n in self.T or (self.gguf is not None and n.startswith(("expert.", "router.")) and self.gguf.has(n))

    def get(self, n):
        if n in self.T:
            return self.T[n]
        if self.gguf is not None and n.startswith(("expert.", "router.")):
            return self.gguf.get(n)
        raise KeyError(n)


def bert_row_for_byte_token(tid, words, vocab):
    """BERT (uncased WordPiece) ids of the text of a byte-level token id (4 + byte)"""
    if tid < 4:
        return []
    b = tid - 4
    if b >= 128:
        return []                      # a lone non-ASCII byte: invalid UTF-8, dropped
    c = chr(b)
    if c.isspace() or b < 32 or b == 127:
        return []
    c = c.lower()
    return [vocab.get(c, vocab["[UNK]"])]


class HFModel(rsmoe_ref.Model):
    def __init__(self, path):
        super().__init__(path)          # metadata, prompts, tokenizer (checked below)
        blip, llm = os.environ["HF_BLIP"], os.environ["HF_LLM"]
        bc = json.load(open(os.path.join(blip, "config.json")))
        lc = json.load(open(os.path.join(llm, "config.json")))
        vc, qc = bc["vision_config"], bc["qformer_config"]
        h = read_dir(blip)
        T = {}
        # ---- vision
        W, P = vc["hidden_size"], vc["patch_size"]
        v = "vision_model."
        T["v.patch_embd.weight"] = h[v + "embeddings.patch_embedding.weight"].reshape(W, -1)
        T["v.patch_embd.bias"] = h[v + "embeddings.patch_embedding.bias"]
        T["v.class_embd"] = h[v + "embeddings.class_embedding"].reshape(W)
        T["v.position_embd"] = h[v + "embeddings.position_embedding"].reshape(-1, W)
        for l in range(vc["num_hidden_layers"]):
            p, o = v + "encoder.layers.%d." % l, "v.blk.%d." % l
            T[o + "ln1.weight"], T[o + "ln1.bias"] = h[p + "layer_norm1.weight"], h[p + "layer_norm1.bias"]
            T[o + "attn_qkv.weight"] = h[p + "self_attn.qkv.weight"]
            T[o + "attn_qkv.bias"] = np.concatenate([h[p + "self_attn.q_bias"], np.zeros(W), h[p + "self_attn.v_bias"]])
            T[o + "attn_out.weight"], T[o + "attn_out.bias"] = h[p + "self_attn.projection.weight"], h[p + "self_attn.projection.bias"]
            T[o + "ln2.weight"], T[o + "ln2.bias"] = h[p + "layer_norm2.weight"], h[p + "layer_norm2.bias"]
            T[o + "ffn_up.weight"], T[o + "ffn_up.bias"] = h[p + "mlp.fc1.weight"], h[p + "mlp.fc1.bias"]
            T[o + "ffn_down.weight"], T[o + "ffn_down.bias"] = h[p + "mlp.fc2.weight"], h[p + "mlp.fc2.bias"]
        T["v.ln_vision.weight"], T["v.ln_vision.bias"] = h[v + "post_layernorm.weight"], h[v + "post_layernorm.bias"]
        # ---- Q-Former
        q = "qformer."
        Q = qc["hidden_size"]
        T["qf.query_embd"] = h["query_tokens"].reshape(-1, Q)
        T["qf.position_embd.weight"] = h[q + "embeddings.position_embeddings.weight"]
        T["qf.embd_ln.weight"], T["qf.embd_ln.bias"] = h[q + "embeddings.layernorm.weight"], h[q + "embeddings.layernorm.bias"]
        words = h[q + "embeddings.word_embeddings.weight"]
        bert = [x.rstrip("\r\n") for x in open(os.path.join(blip, "vocab.txt"))]
        bvocab = {w: i for i, w in enumerate(bert)}
        V = lc["vocab_size"]
        te = np.zeros((V, Q))
        for tid in range(V):
            ids = bert_row_for_byte_token(tid, words, bvocab)
            te[tid] = words[ids].mean(0) if ids else words[bvocab["[UNK]"]]
        T["qf.token_embd.weight"] = te

        def lin(ours, hf):
            T[ours + ".weight"], T[ours + ".bias"] = h[hf + ".weight"], h[hf + ".bias"]

        for l in range(qc["num_hidden_layers"]):
            p, o = q + "encoder.layer.%d." % l, "qf.blk.%d." % l
            for a, b in (("q", "query"), ("k", "key"), ("v", "value")):
                lin(o + "attn_" + a, p + "attention.attention." + b)
            lin(o + "attn_out", p + "attention.output.dense")
            lin(o + "attn_ln", p + "attention.output.LayerNorm")
            if l % qc.get("cross_attention_frequency", 2) == 0:
                for a, b in (("q", "query"), ("k", "key"), ("v", "value")):
                    lin(o + "cross_" + a, p + "crossattention.attention." + b)
                lin(o + "cross_out", p + "crossattention.output.dense")
                lin(o + "cross_ln", p + "crossattention.output.LayerNorm")
            lin(o + "ffn_up", p + "intermediate.dense")
            lin(o + "ffn_down", p + "output.dense")
            lin(o + "ffn_ln", p + "output.LayerNorm")
            lin(o + "ffnq_up", p + "intermediate_query.dense")
            lin(o + "ffnq_down", p + "output_query.dense")
            lin(o + "ffnq_ln", p + "output_query.LayerNorm")
        lin("proj", "language_projection")
        # ---- LLM
        map_llm(read_dir(llm), lc, T)
        self.w = Weights(T, self.g)
        self.t = self.w.get
        self.g = self.w
        # ---- configuration from the HF configs; the GGUF's must agree
        pre = json.load(open(os.path.join(blip, "preprocessor_config.json")))
        vit = dict(size=vc["image_size"], patch=P, width=W, layers=vc["num_hidden_layers"], heads=vc["num_attention_heads"],
                   eps=vc["layer_norm_eps"])
        qf = dict(nq=T["qf.query_embd"].shape[0], width=Q, layers=qc["num_hidden_layers"], heads=qc["num_attention_heads"],
                  freq=qc["cross_attention_frequency"], eps=qc["layer_norm_eps"])
        llmd = llm_dict(lc)
        for name, mine, theirs in (("vit", vit, self.vit), ("qformer", qf, self.qf), ("llm", llmd, self.llm)):
            for k, val in mine.items():
                assert np.isclose(val, theirs[k], rtol=1e-6), "%s.%s: GGUF says %r, HF config %r" % (name, k, theirs[k], val)
        assert np.allclose(self.mean, pre["image_mean"]) and np.allclose(self.std, pre["image_std"]), "image mean/std"
        self.vit, self.qf, self.llm = vit, qf, llmd
        self.mean, self.std = np.array(pre["image_mean"]), np.array(pre["image_std"])
        self.inv_freq = llama3_inv_freq(llmd["hd"], llmd["theta"], lc.get("rope_scaling"))
        tok = json.load(open(os.path.join(llm, "tokenizer.json")))["model"]["vocab"]
        assert all(self.tok_id[s] == i for s, i in tok.items()), "the GGUF vocabulary is tokenizer.json's"
        assert self.bos == lc["bos_token_id"] and self.eos == lc["eos_token_id"] and self.add_bos

    def rope(self, x, pos, heads):
        hd = self.llm["hd"]
        x = x.reshape(x.shape[0], heads, hd).copy()
        ang = np.asarray(pos)[:, None] * self.inv_freq[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., :hd // 2].copy(), x[..., hd // 2:].copy()       # HF rotate_half
        x[..., :hd // 2], x[..., hd // 2:] = a * c - b * s, a * s + b * c
        return x.reshape(x.shape[0], -1)


class LLMOnly(HFModel):
    def __init__(self, llm):
        lc = json.load(open(os.path.join(llm, "config.json")))
        T = {}
        map_llm(read_dir(llm), lc, T)
        self.w = Weights(T, None)
        self.g = self.w
        self.t = self.w.get
        self.llm = llm_dict(lc)
        self.inv_freq = llama3_inv_freq(self.llm["hd"], self.llm["theta"], lc.get("rope_scaling"))


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "llm":
        m = LLMOnly(args[0])
        ids = [int(x) for x in args[2:]]
        emb = m.t("token_embd.weight")[ids]
        w = {(l, n): m.t("blk.%d.%s.weight" % (l, n)) for l in range(m.llm["layers"])
             for n in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]}
        np.asarray(m.llm_logits(w, emb), "<f8").tofile(args[1])
        return
    assert mode == "caption"
    os.environ["HF_BLIP"], os.environ["HF_LLM"] = args[0], args[1]
    rsmoe_ref.Model = HFModel
    sys.argv = [sys.argv[0]] + args[2:]
    rsmoe_ref.main()


if __name__ == "__main__":
    main()
