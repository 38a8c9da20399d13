#!/usr/bin/python3
"""Tiny Hugging Face checkpoints for tests/test_hf_import.c, written with NumPy only: the real
tensor names of transformers' InstructBlip* / Llama* classes with scaled-down shapes,
config.json, tokenizer files, a sharded LLM, and broken variants.

usage: hf_make.py OUTDIR
  OUTDIR/blip/   InstructBLIP vision model + Q-Former + query_tokens + language_projection
                 (F32/F16/BF16 tensors), config.json, preprocessor_config.json, vocab.txt (BERT)
  OUTDIR/llm/    LLaMA (Llama-3 RoPE scaling, untied lm_head), two shards + index,
                 tokenizer.json (byte-level BPE, 260 tokens), tokenizer_config.json
  OUTDIR/blip2/  the same weights in BLIP-2's layout (fused qkv.bias; no Q-Former text side)
  OUTDIR/bad_*/  broken copies: missing tensor, shape mismatch, truncated file, huge header,
                 wrong architecture, config.json disagreeing with the tensors, index naming the wrong shard, vision without a tensor
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bytelevel import bytes_to_unicode  # noqa: E402

VIS = dict(W=32, L=2, H=4, MLP=64, P=8, IMG=32)
QF = dict(W=24, L=3, H=3, F=40, NQ=4, FREQ=2, POS=64)
LLM = dict(D=64, L=2, H=4, KV=2, HD=16, F=96, V=260, CTX=160)
BERT = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + \
       [str(d) for d in range(10)] + [".", ",", "?", "the", "##s"]


def bf16_bits(a):
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def write_st(path, tensors):
    """tensors: list of (name, array, dtype 'F32'|'F16'|'BF16')"""
    header, blobs, off = {}, [], 0
    for name, a, dt in tensors:
        a = np.asarray(a, np.float32)
        if dt == "F32":
            b = a.astype("<f4").tobytes()
        elif dt == "F16":
            b = a.astype("<f2").tobytes()
        else:
            b = bf16_bits(a).astype("<u2").tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def blip_tensors(rng):
    t = []
    W, P, G, M = VIS["W"], VIS["P"], VIS["IMG"] // VIS["P"], VIS["MLP"]

    def r(*shape, s=0.3):
        return rng.standard_normal(shape) * s

    v = "vision_model."
    t += [(v + "embeddings.class_embedding", r(1, 1, W), "F32"),
          (v + "embeddings.patch_embedding.weight", r(W, 3, P, P, s=0.1), "F16"),
          (v + "embeddings.patch_embedding.bias", r(W), "F32"),
          (v + "embeddings.position_embedding", r(1, 1 + G * G, W), "BF16")]
    for l in range(VIS["L"]):
        p = v + "encoder.layers.%d." % l
        t += [(p + "layer_norm1.weight", 1 + r(W, s=0.1), "F32"), (p + "layer_norm1.bias", r(W, s=0.1), "F32"),
              (p + "self_attn.qkv.weight", r(3 * W, W, s=0.2), "BF16"),
              (p + "self_attn.q_bias", r(W), "F32"), (p + "self_attn.v_bias", r(W), "F16"),
              (p + "self_attn.projection.weight", r(W, W, s=0.2), "F32"), (p + "self_attn.projection.bias", r(W), "F32"),
              (p + "layer_norm2.weight", 1 + r(W, s=0.1), "F32"), (p + "layer_norm2.bias", r(W, s=0.1), "F32"),
              (p + "mlp.fc1.weight", r(M, W, s=0.2), "F16"), (p + "mlp.fc1.bias", r(M), "F32"),
              (p + "mlp.fc2.weight", r(W, M, s=0.2), "F32"), (p + "mlp.fc2.bias", r(W), "F32")]
    t += [(v + "post_layernorm.weight", 1 + r(W, s=0.1), "F32"), (v + "post_layernorm.bias", r(W, s=0.1), "F32")]
    Q, F = QF["W"], QF["F"]
    q = "qformer."
    t += [("query_tokens", r(1, QF["NQ"], Q), "F32"),
          (q + "embeddings.word_embeddings.weight", r(len(BERT), Q), "F32"),
          (q + "embeddings.position_embeddings.weight", r(QF["POS"], Q), "BF16"),
          (q + "embeddings.layernorm.weight", 1 + r(Q, s=0.1), "F32"), (q + "embeddings.layernorm.bias", r(Q, s=0.1), "F32")]

    def lin(name, o, i, dt="F32"):
        return [(name + ".weight", r(o, i, s=0.25), dt), (name + ".bias", r(o, s=0.2), "F32")]

    def ln(name):
        return [(name + ".weight", 1 + r(Q, s=0.1), "F32"), (name + ".bias", r(Q, s=0.1), "F32")]

    for l in range(QF["L"]):
        p = q + "encoder.layer.%d." % l
        for k in ("query", "key", "value"):
            t += lin(p + "attention.attention." + k, Q, Q, "F16" if k == "key" else "F32")
        t += lin(p + "attention.output.dense", Q, Q) + ln(p + "attention.output.LayerNorm")
        if l % QF["FREQ"] == 0:
            for k in ("query", "key", "value"):
                t += lin(p + "crossattention.attention." + k, Q, Q if k == "query" else W)
            t += lin(p + "crossattention.output.dense", Q, Q) + ln(p + "crossattention.output.LayerNorm")
        t += lin(p + "intermediate.dense", F, Q) + lin(p + "output.dense", Q, F) + ln(p + "output.LayerNorm")
        t += lin(p + "intermediate_query.dense", F, Q, "BF16") + lin(p + "output_query.dense", Q, F) + \
            ln(p + "output_query.LayerNorm")
    t += lin("language_projection", LLM["D"], Q)
    return t


def llm_tensors(rng):
    D, H, KV, HD, F, V = LLM["D"], LLM["H"], LLM["KV"], LLM["HD"], LLM["F"], LLM["V"]

    def r(*shape, s=0.3):
        return rng.standard_normal(shape) * s

    t = [("model.embed_tokens.weight", r(V, D, s=0.5), "BF16")]
    for l in range(LLM["L"]):
        p = "model.layers.%d." % l
        t += [(p + "self_attn.q_proj.weight", r(H * HD, D), "F32"), (p + "self_attn.k_proj.weight", r(KV * HD, D), "F16"),
              (p + "self_attn.v_proj.weight", r(KV * HD, D), "F32"), (p + "self_attn.o_proj.weight", r(D, H * HD), "F32"),
              (p + "mlp.gate_proj.weight", r(F, D), "BF16"), (p + "mlp.up_proj.weight", r(F, D), "F32"),
              (p + "mlp.down_proj.weight", r(D, F), "F32"),
              (p + "input_layernorm.weight", 1 + r(D, s=0.1), "F32"), (p + "post_attention_layernorm.weight", 1 + r(D, s=0.1), "F32")]
    t += [("model.norm.weight", 1 + r(D, s=0.1), "F32"), ("lm_head.weight", r(V, D, s=0.5), "F32")]
    return t


def llm_config(model_type="llama"):
    return {"architectures": ["LlamaForCausalLM"], "model_type": model_type, "hidden_size": LLM["D"],
            "intermediate_size": LLM["F"], "num_hidden_layers": LLM["L"], "num_attention_heads": LLM["H"],
            "num_key_value_heads": LLM["KV"], "head_dim": LLM["HD"], "vocab_size": LLM["V"],
            "max_position_embeddings": LLM["CTX"], "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64},
            "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
            "torch_dtype": "bfloat16"}


def write_tokenizer(d):
    b2u = bytes_to_unicode()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for b in range(256):
        vocab[b2u[b]] = 4 + b
    tj = {"version": "1.0", "added_tokens": [{"id": i, "content": s, "special": True} for s, i in list(vocab.items())[:4]],
          "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
          "decoder": {"type": "ByteLevel"},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "byte_fallback": False, "vocab": vocab, "merges": []}}
    json.dump(tj, open(os.path.join(d, "tokenizer.json"), "w"))
    json.dump({"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>"}, open(os.path.join(d, "tokenizer_config.json"), "w"))


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(1234)
    blip = os.path.join(out, "blip")
    llm = os.path.join(out, "llm")
    for d in (blip, llm):
        os.makedirs(d, exist_ok=True)
    bt = blip_tensors(rng)
    write_st(os.path.join(blip, "model.safetensors"), bt)
    cfg = {"architectures": ["InstructBlipForConditionalGeneration"], "model_type": "instructblip",
           "num_query_tokens": QF["NQ"],
           "vision_config": {"model_type": "instructblip_vision_model", "hidden_size": VIS["W"],
                             "intermediate_size": VIS["MLP"], "num_hidden_layers": VIS["L"],
                             "num_attention_heads": VIS["H"], "image_size": VIS["IMG"], "patch_size": VIS["P"],
                             "layer_norm_eps": 1e-6, "hidden_act": "gelu", "qkv_bias": True},
           "qformer_config": {"model_type": "instructblip_qformer", "hidden_size": QF["W"], "num_hidden_layers": QF["L"],
                              "num_attention_heads": QF["H"], "intermediate_size": QF["F"],
                              "cross_attention_frequency": QF["FREQ"], "encoder_hidden_size": VIS["W"],
                              "vocab_size": len(BERT), "max_position_embeddings": QF["POS"], "layer_norm_eps": 1e-12,
                              "hidden_act": "gelu"},
           "text_config": llm_config()}
    json.dump(cfg, open(os.path.join(blip, "config.json"), "w"))
    json.dump({"image_mean": [0.5, 0.45, 0.4], "image_std": [0.25, 0.3, 0.35]},
              open(os.path.join(blip, "preprocessor_config.json"), "w"))
    with open(os.path.join(blip, "vocab.txt"), "w") as f:
        f.write("\n".join(BERT) + "\n")

    lt = llm_tensors(rng)
    half = len(lt) // 2
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    write_st(os.path.join(llm, shards[0]), lt[:half])
    write_st(os.path.join(llm, shards[1]), lt[half:])
    wm = {n: shards[0 if i < half else 1] for i, (n, _, _) in enumerate(lt)}
    json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, open(os.path.join(llm, "model.safetensors.index.json"), "w"))
    json.dump(llm_config(), open(os.path.join(llm, "config.json"), "w"))
    write_tokenizer(llm)

    # ---- BLIP-2 layout: fused qkv.bias, Q-Former without text embeddings / text feed-forward
    # (qformer.layernorm), a language_projection to another LLM width
    d = os.path.join(out, "blip2")
    os.makedirs(d, exist_ok=True)
    b2, W = [], VIS["W"]
    bd = {n: a for n, a, _ in bt}
    for n, a, dt in bt:
        if n.endswith("self_attn.q_bias"):
            b2.append((n[:-len("q_bias")] + "qkv.bias", np.concatenate([a, np.zeros(W), bd[n[:-6] + "v_bias"].astype(np.float16)]), "F32"))
        elif n.endswith("self_attn.v_bias") or "word_embeddings" in n or "position_embeddings" in n or \
                ".intermediate.dense" in n or ".output.dense" in n and "attention" not in n and "output_query" not in n or \
                ".output.LayerNorm" in n and "attention" not in n and "output_query" not in n:
            continue
        elif n.startswith("qformer.embeddings.layernorm"):
            b2.append((n.replace("embeddings.layernorm", "layernorm"), a, dt))
        elif n.startswith("language_projection"):
            b2.append((n, np.ones((48,) + a.shape[1:]) if n.endswith("weight") else np.ones(48), dt))
        else:
            b2.append((n, a, dt))
    write_st(os.path.join(d, "model.safetensors"), b2)
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["model_type"] = "blip-2"
    cfg2["vision_config"]["model_type"] = "blip_2_vision_model"
    json.dump(cfg2, open(os.path.join(d, "config.json"), "w"))
    json.dump({"image_mean": [0.5, 0.45, 0.4], "image_std": [0.25, 0.3, 0.35]},
              open(os.path.join(d, "preprocessor_config.json"), "w"))

    # ---- broken variants (single-file LLMs unless noted)
    def bad_llm(name, tensors, cfg=None):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        write_st(os.path.join(d, "model.safetensors"), tensors)
        json.dump(cfg or llm_config(), open(os.path.join(d, "config.json"), "w"))
        write_tokenizer(d)
        return d

    bad_llm("bad_missing", [x for x in lt if x[0] != "model.layers.1.mlp.up_proj.weight"])
    bad_llm("bad_shape", [(n, a[:, :-1] if n == "model.layers.0.self_attn.k_proj.weight" else a, dt) for n, a, dt in lt])
    d = bad_llm("bad_trunc", lt)
    p = os.path.join(d, "model.safetensors")
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 100)
    d = bad_llm("bad_header", lt)
    with open(os.path.join(d, "model.safetensors"), "r+b") as f:
        f.write(struct.pack("<Q", 1 << 40))
    bad_llm("bad_arch", lt, llm_config("gpt2"))
    c = llm_config()
    c["hidden_size"] = LLM["D"] + 1
    bad_llm("bad_config", lt, c)
    # index that names the wrong shard for one tensor
    d = os.path.join(out, "bad_index")
    shutil.copytree(llm, d, dirs_exist_ok=True)
    wm2 = dict(wm)
    wm2["model.norm.weight"] = shards[0] if wm["model.norm.weight"] == shards[1] else shards[1]
    json.dump({"weight_map": wm2}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    # vision model without post_layernorm.weight
    d = os.path.join(out, "bad_vision")
    os.makedirs(d, exist_ok=True)
    write_st(os.path.join(d, "model.safetensors"), [x for x in bt if x[0] != "vision_model.post_layernorm.weight"])
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))


if __name__ == "__main__":
    main()
