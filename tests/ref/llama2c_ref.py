#!/usr/bin/python3
"""Independent NumPy reference of a llama2.c model (float64), used by the tests.

Reads a llama2.c checkpoint and tokenizer directly (not through our GGUF import), encodes
the prompt with llama2.c's BPE rules, runs greedy decoding for `steps` positions (prompt
included, llama2.c semantics) and prints the token ids (BOS first) on one line, and, with
--logits FILE, writes the float64 logits of every position as raw little-endian doubles.

usage: llama2c_ref.py MODEL.bin TOKENIZER.bin PROMPT STEPS [--logits FILE]
"""
import struct
import sys

import numpy as np


def load_model(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, L, H, Hkv, vocab, seq = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    a = np.frombuffer(data, dtype="<f4", offset=28).astype(np.float64)
    hd = dim // H
    kvd = Hkv * hd
    o = 0

    def take(*shape):
        nonlocal o
        n = int(np.prod(shape))
        t = a[o:o + n].reshape(shape)
        o += n
        return t

    w = {}
    w["emb"] = take(vocab, dim)
    w["rms_att"] = take(L, dim)
    w["wq"] = take(L, dim, dim)
    w["wk"] = take(L, kvd, dim)
    w["wv"] = take(L, kvd, dim)
    w["wo"] = take(L, dim, dim)
    w["rms_ffn"] = take(L, dim)
    w["w1"] = take(L, hidden, dim)
    w["w2"] = take(L, dim, hidden)
    w["w3"] = take(L, hidden, dim)
    w["rms_final"] = take(dim)
    take(seq, hd // 2)
    take(seq, hd // 2)
    w["wcls"] = w["emb"] if shared else take(vocab, dim)
    assert o == a.size, "size mismatch"
    cfg = dict(dim=dim, hidden=hidden, L=L, H=H, Hkv=Hkv, vocab=vocab, seq=seq, hd=hd)
    return cfg, w


def load_tokenizer(path, vocab):
    with open(path, "rb") as f:
        data = f.read()
    o = 4
    toks, scores = [], []
    for _ in range(vocab):
        s, n = struct.unpack("<fi", data[o:o + 8])
        o += 8
        toks.append(data[o:o + n])
        o += n
        scores.append(s)
    return toks, scores


def encode(text, toks, scores):
    """llama2.c's encode(): BOS, dummy-prefix space, code points, byte fallback (+3),
    then repeatedly merge the adjacent pair with the best score."""
    lookup = {t: i for i, t in enumerate(toks)}
    ids = [1]
    if text:
        ids.append(lookup[b" "])
    for ch in text:
        b = ch.encode("utf-8")
        if b in lookup:
            ids.append(lookup[b])
        else:
            ids.extend(x + 3 for x in b)
    while True:
        best, best_i, best_id = -1e10, -1, -1
        for i in range(len(ids) - 1):
            if i == 0:
                continue  # never merge BOS
            cand = toks[ids[i]] + toks[ids[i + 1]]
            j = lookup.get(cand)
            if j is not None and scores[j] > best:
                best, best_i, best_id = scores[j], i, j
        if best_i < 0:
            break
        ids[best_i:best_i + 2] = [best_id]
    return ids


def rmsnorm(x, w, eps=1e-5):
    return x / np.sqrt(np.mean(x * x) + eps) * w


def rope(x, pos, hd):
    """llama2.c: rotate pairs (2i, 2i+1) of each head by pos * 10000^(-2i/hd)."""
    x = x.copy().reshape(-1, hd)
    i = np.arange(0, hd, 2)
    ang = pos * (1.0 / (10000.0 ** (i / hd)))
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = x[:, 0::2].copy(), x[:, 1::2].copy()
    x[:, 0::2] = x0 * c - x1 * s
    x[:, 1::2] = x0 * s + x1 * c
    return x.reshape(-1)


def forward(cfg, w, token, pos, kc, vc):
    x = w["emb"][token].copy()
    H, Hkv, hd = cfg["H"], cfg["Hkv"], cfg["hd"]
    for l in range(cfg["L"]):
        xb = rmsnorm(x, w["rms_att"][l])
        q = rope(w["wq"][l] @ xb, pos, hd)
        k = rope(w["wk"][l] @ xb, pos, hd)
        v = w["wv"][l] @ xb
        kc[l][pos] = k
        vc[l][pos] = v
        K = np.array(kc[l][:pos + 1]).reshape(pos + 1, Hkv, hd)
        V = np.array(vc[l][:pos + 1]).reshape(pos + 1, Hkv, hd)
        qh = q.reshape(H, hd)
        out = np.zeros((H, hd))
        for h in range(H):
            kh = h // (H // Hkv)
            sc = K[:, kh, :] @ qh[h] / np.sqrt(hd)
            p = np.exp(sc - sc.max())
            p /= p.sum()
            out[h] = p @ V[:, kh, :]
        x = x + w["wo"][l] @ out.reshape(-1)
        xb = rmsnorm(x, w["rms_ffn"][l])
        g = w["w1"][l] @ xb
        u = w["w3"][l] @ xb
        x = x + w["w2"][l] @ (g / (1 + np.exp(-g)) * u)
    x = rmsnorm(x, w["rms_final"])
    return w["wcls"] @ x


def main():
    args = sys.argv[1:]
    logits_file = None
    if "--logits" in args:
        i = args.index("--logits")
        logits_file = args[i + 1]
        del args[i:i + 2]
    model, tok, prompt, steps = args[0], args[1], args[2], int(args[3])
    cfg, w = load_model(model)
    toks, scores = load_tokenizer(tok, cfg["vocab"])
    ids = encode(prompt, toks, scores)
    steps = min(steps, cfg["seq"])
    kc = [[None] * cfg["seq"] for _ in range(cfg["L"])]
    vc = [[None] * cfg["seq"] for _ in range(cfg["L"])]
    out = [ids[0]]
    all_logits = []
    token = ids[0]
    for pos in range(steps - 1):
        logits = forward(cfg, w, token, pos, kc, vc)
        all_logits.append(logits)
        nxt = ids[pos + 1] if pos + 1 < len(ids) else int(np.argmax(logits))
        if nxt == 1 and pos + 1 >= len(ids):
            break
        out.append(nxt)
        token = nxt
    print(" ".join(str(i) for i in out))
    if logits_file:
        np.array(all_logits, dtype="<f8").tofile(logits_file)


if __name__ == "__main__":
    main()
