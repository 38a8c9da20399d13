#!/usr/bin/python3
"""A retrieval yardstick for RSICD: caption each image with a training sentence, chosen by
consensus among the captions of its nearest training images (Devlin et al. 2015, "Exploring
nearest neighbor approaches for image captioning"), on the same frozen encoder features the
default model reads.

Neighbours: cosine similarity of the standardised, mean-pooled visual tokens of the feature
caches `rsmoe features` writes (the default model's: MobileNetV2's 7x7x1280 map). Candidates:
the 5 sentences of each of the K nearest training images, each weighted by its image's
similarity. The output is the candidate with the highest weighted mean similarity to the
others, where similarity is a CIDEr-D-like score (1..4-gram TF-IDF vectors with the training
images as documents, clipped cosine, Gaussian length penalty, sigma 6). No model is involved,
so this shows how far the frozen features alone carry a caption-by-lookup on each split.

  ./build/rsmoe features -m MODEL --data DATA --images IMG --split train -o feat-train.gguf  (and val, test)
  /usr/bin/python3 bench/rsicd_knn_consensus.py DATA feat-train.gguf feat-val.gguf --k 15 > knn-val.tsv
  ./build/rsmoe score --refs DATA --split val --hyps knn-val.tsv

With --rerank CAPTIONS.json (an `rsmoe caption --json --brief` list for the same images) it
instead picks, for every image, among the experts' proposals ("aspects") the one with the highest
consensus with the neighbours' captions.
"""
import argparse
import collections
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rsicd_scene_probe import load  # noqa: E402  (image names, mean-pooled visual tokens)


def words(text):
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def ngrams(sentence):
    w = sentence.split()
    c = collections.Counter()
    for n in range(1, 5):
        for i in range(len(w) - n + 1):
            c[tuple(w[i:i + n])] += 1
    return c


class Consensus:
    def __init__(self, train_caps):
        self.df = collections.Counter()
        for caps in train_caps:
            seen = set()
            for c in caps:
                seen |= set(ngrams(c))
            self.df.update(seen)
        self.n_docs = len(train_caps)
        self.cache = {}

    def vec(self, s):
        if s not in self.cache:
            per_n = [{} for _ in range(4)]
            for g, tf in ngrams(s).items():
                per_n[len(g) - 1][g] = tf * math.log(self.n_docs / max(1.0, self.df[g]))
            norms = [math.sqrt(sum(v * v for v in d.values())) for d in per_n]
            self.cache[s] = (per_n, norms, len(s.split()))
        return self.cache[s]

    def sim(self, a, b):
        (va, na, la), (vb, nb, lb) = self.vec(a), self.vec(b)
        total = 0.0
        for n in range(4):
            if na[n] == 0 or nb[n] == 0:
                continue
            dot = sum(min(x, vb[n][g]) * vb[n][g] for g, x in va[n].items() if g in vb[n])
            total += dot / (na[n] * nb[n])
        return total / 4 * math.exp(-((la - lb) ** 2) / 72.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="dataset_rsicd.json (Karpathy format)")
    ap.add_argument("train_features")
    ap.add_argument("features", help="feature cache of the split to caption")
    ap.add_argument("--k", type=int, default=15, help="neighbours (default 15)")
    ap.add_argument("--rerank", help="rsmoe caption --json output: pick among its aspects instead")
    a = ap.parse_args()
    d = json.load(open(a.data))
    caps = {im["filename"]: [words(s["raw"]) for s in im["sentences"]] for im in d["images"]}
    tr_names, tr = load(a.train_features)
    names, x = load(a.features)
    mu, sd = tr.mean(0), tr.std(0) + 1e-6

    def unit(v):
        v = (v - mu) / sd
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    sims = unit(x) @ unit(tr).T
    cons = Consensus([caps[n] for n in tr_names])
    proposals = None
    if a.rerank:
        proposals = {os.path.basename(r["image"]): [words(p["text"]) for p in r["aspects"]]
                     for r in json.load(open(a.rerank))}
    for i, name in enumerate(names):
        pool = collections.defaultdict(float)
        for j in np.argsort(-sims[i])[:a.k]:
            for c in caps[tr_names[j]]:
                pool[c] += float(sims[i, j])
        cands = proposals.get(name) if proposals is not None else list(pool)
        if not cands:
            continue
        best = max(cands, key=lambda c: sum(w * cons.sim(c, o) for o, w in pool.items()))
        print("%s\t%s" % (name, best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
