#!/usr/bin/python3
"""Independent reference of retrieval-consensus selection (src/model/retrieval.h,
src/train/retrieval_index.c) in NumPy float64, for tests/test_retrieval.c.

Reads a JSON case {"k", "gamma", "bonus", "probe_steps", "probe_lr",
  "train": [{"tokens": [[...], ...], "label": str, "captions": [str, ...]}, ...],
  "queries": [{"tokens": [[...], ...], "proposals": [str, ...]}, ...],
  "pairs": [[a, b], ...]}
and prints one line per query "Q i <scene index> <chosen proposal or -1> <chosen text>",
then "N i <top similarity> <neighbour indices in order>" and one line per pair "S <consensus similarity>".
The consensus is bench/rsicd_knn_consensus.py's (its own n-gram code), the probe a softmax
regression trained by Adam here.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from rsicd_knn_consensus import Consensus, words  # noqa: E402


def main():
    case = json.load(open(sys.argv[1]))
    tr = case["train"]
    X = np.array([np.mean(np.array(t["tokens"], np.float64), 0) for t in tr])
    mu = X.mean(0)
    sd = X.std(0) + 1e-6
    Z = (X - mu) / sd
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    classes = sorted({t["label"] for t in tr if t["label"]})
    C = len(classes) if len(classes) >= 2 else 0
    g2 = case["gamma"] ** 2
    if C:
        y = np.array([classes.index(t["label"]) if t["label"] else -1 for t in tr])
        lab = y >= 0
        W = np.zeros((C, Z.shape[1]))
        b = np.zeros(C)
        mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
        Y = np.eye(C)[y[lab]]
        lr = case["probe_lr"]
        for s in range(1, case["probe_steps"] + 1):
            z = Z[lab] @ W.T + b
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            g = (p - Y) / lab.sum()
            gW, gb = g.T @ Z[lab], g.sum(0)
            for par, gr, m, v in ((W, gW, mW, vW), (b, gb, mb, vb)):
                m[...] = 0.9 * m + 0.1 * gr
                v[...] = 0.999 * v + 0.001 * gr * gr
                par -= lr * (m / (1 - 0.9 ** s)) / (np.sqrt(v / (1 - 0.999 ** s)) + 1e-8)

        def post(z):
            q = z @ W.T + b
            q = np.exp(q - q.max())
            q /= q.sum()
            return q
        P = np.array([post(z) for z in Z])
        P /= np.linalg.norm(P, axis=1, keepdims=True)
    caps = [[words(c) for c in t["captions"] if words(c)] for t in tr]
    raw = {}
    for t in tr:
        for c in t["captions"]:
            if words(c):
                raw.setdefault(words(c), c.strip())
    cons = Consensus(caps)
    for qi, q in enumerate(case["queries"]):
        x = np.mean(np.array(q["tokens"], np.float64), 0)
        z = (x - mu) / sd
        u = z / np.linalg.norm(z)
        s = U @ u
        scene = -1
        if C:
            p = post(z)
            scene = int(p.argmax())
            s = (s + g2 * (P @ (p / np.linalg.norm(p)))) / (1 + g2)
        k = min(case["k"], len(tr))
        nb = list(np.argsort(-s, kind="stable")[:k])
        pool = {}
        for j in nb:
            for c in caps[j]:
                pool[c] = pool.get(c, 0.0) + max(float(s[j]), 0.0)
        cands = list(pool)
        prop_of = {}
        for e, ptxt in enumerate(q["proposals"]):
            w = words(ptxt)
            if not w:
                continue
            if w not in cands:
                cands.append(w)
            prop_of.setdefault(w, e)
        best, best_s = None, -np.inf
        for c in cands:
            sc = sum(wt * cons.sim(c, o) for o, wt in pool.items() if wt > 0)
            if c in prop_of:
                sc *= 1 + case["bonus"]
            if sc > best_s:
                best, best_s = c, sc
        e = prop_of.get(best, -1)
        text = q["proposals"][e] if e >= 0 else raw[best]
        print("Q %d %d %d %s" % (qi, scene, e, text))
        print("N %d %.17g %s" % (qi, float(s[nb[0]]), " ".join(str(int(j)) for j in nb)))
    for a, b2 in case["pairs"]:
        print("S %.17g" % cons.sim(words(a), words(b2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
