#!/usr/bin/python3
"""Writes a Hugging Face tokenizer.json (+ config.json with the special ids) from a llama.cpp
byte-level BPE vocabulary GGUF (tests/test_hf_import.c: the loader of tokenizer.json must give
the same tokenizer as the GGUF). Half of the merges are written as "a b" strings, half as
["a", "b"] pairs (both forms occur in real files); control tokens go to added_tokens.

usage: hf_tokjson.py VOCAB.gguf OUTDIR
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_np import GGUF  # noqa: E402


def main():
    g = GGUF(sys.argv[1])
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    kv = g.kv
    toks, types, merges = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"], kv["tokenizer.ggml.merges"]
    vocab = {t: i for i, t in enumerate(toks) if types[i] != 3}
    added = [{"id": i, "content": t, "special": True} for i, t in enumerate(toks) if types[i] == 3]
    h = len(merges) // 2
    mj = merges[:h] + [m.split(" ", 1) for m in merges[h:]]
    pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tj = {"version": "1.0", "added_tokens": added, "pre_tokenizer": pre, "post_processor": pre,
          "model": {"type": "BPE", "vocab": vocab, "merges": mj}}
    json.dump(tj, open(os.path.join(out, "tokenizer.json"), "w"))
    json.dump({"model_type": "llama", "bos_token_id": kv.get("tokenizer.ggml.bos_token_id", -1),
               "eos_token_id": kv.get("tokenizer.ggml.eos_token_id", -1)}, open(os.path.join(out, "config.json"), "w"))


if __name__ == "__main__":
    main()
