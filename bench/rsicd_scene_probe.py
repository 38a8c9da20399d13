#!/usr/bin/python3
"""How well the frozen image encoder's features name RSICD's scene classes: a linear probe.

A softmax classifier (NumPy, full batch, Adam, L2) on the mean-pooled visual tokens of the
feature caches `rsmoe features` writes (the default model's: MobileNetV2's 7x7x1280 map), trained
on the train split's images whose file name carries a class (airport_61.jpg -> airport, as
bench/rsicd_class_oracle.py), scored on val and test. bench/rsicd_class_oracle.py shows that
naming every test scene right (plus the class's usual sentence) reaches CIDEr-D ~254; this shows
how many scenes the encoder's features let a classifier name at all.

  ./build/rsmoe features -m MODEL --data DATA --images IMG --split train -o feat-train.gguf  (and val, test)
  /usr/bin/python3 bench/rsicd_scene_probe.py feat-train.gguf feat-val.gguf feat-test.gguf
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
from gguf_np import GGUF  # noqa: E402


def scene(filename):
    return filename.rsplit("_", 1)[0] if "_" in filename else None


def load(path):
    g = GGUF(path)
    if g.kv.get("general.architecture") != "rsmoe-features":
        raise SystemExit("%s: not a feature cache" % path)
    names = g.kv["rsmoe.features.images"]
    T, W = g.kv["rsmoe.features.tokens"], g.kv["rsmoe.features.width"]
    f = g.get("features").astype(np.float32).reshape(len(names), T, W)
    return names, f.mean(1)


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    (tr_n, tr), (va_n, va), (te_n, te) = (load(p) for p in sys.argv[1:])
    classes = sorted({scene(n) for n in tr_n} - {None})
    ci = {c: i for i, c in enumerate(classes)}

    def xy(names, x):
        keep = [i for i, n in enumerate(names) if scene(n) in ci]
        return x[keep], np.array([ci[scene(names[i])] for i in keep])

    X, y = xy(tr_n, tr)
    mu, sd = X.mean(0), X.std(0) + 1e-6
    X = (X - mu) / sd
    C, D = len(classes), X.shape[1]
    rng = np.random.default_rng(0)
    Wt, b = rng.normal(0, 0.01, (D, C)).astype(np.float32), np.zeros(C, np.float32)
    m = [np.zeros_like(Wt), np.zeros_like(b)]
    v = [np.zeros_like(Wt), np.zeros_like(b)]
    Y = np.eye(C, dtype=np.float32)[y]
    lr, wd = 1e-3, 1e-2
    for step in range(1, 301):
        z = X @ Wt + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - Y) / len(X)
        grads = [X.T @ g + wd * Wt, g.sum(0)]
        for k, (par, gr) in enumerate(zip((Wt, b), grads)):
            m[k] = 0.9 * m[k] + 0.1 * gr
            v[k] = 0.999 * v[k] + 0.001 * gr * gr
            par -= lr * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
    train_acc = float(((X @ Wt + b).argmax(1) == y).mean())
    print("%d classes; %d labelled training images (train accuracy %.1f %%)" % (C, len(X), 100 * train_acc))
    for split, names, x in (("val", va_n, va), ("test", te_n, te)):
        Xs, ys = xy(names, x)
        acc = float((((Xs - mu) / sd @ Wt + b).argmax(1) == ys).mean())
        print("%-5s %4d labelled images: scene accuracy %.1f %%" % (split, len(Xs), 100 * acc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
