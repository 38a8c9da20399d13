#!/usr/bin/python3
"""Independent reference of the caption metrics (pycocoevalcap semantics as written in
/work/shared/docs/metrics.md), used by tests/test_metrics.c on generated cases.

usage: metrics_ref.py IN.json OUT.json
IN:  {"function_words": [...], "cases": [{"hyps": [str], "refs": [[str]]}]}   (tokenised text)
OUT: {"results": [{"bleu": [4], "rouge": x, "rouge_img": [...], "cider": x, "cider_img": [...],
                   "meteor_exact": x, "meteor_exact_img": [...]}]}
METEOR here is the exact-match stage only (the C side is run with stages=1): the beam search
of Meteor 1.5's aligner and its scoring, written from the algorithm's description.
"""
import json
import math
import sys
from collections import Counter, defaultdict


def ngrams(words, n):
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(hyps, refs):
    testlen = reflen = 0
    guess = [0] * 4
    correct = [0] * 4
    for h, rs in zip(hyps, refs):
        hw = h.split()
        rws = [r.split() for r in rs]
        c = len(hw)
        # closest reference length, ties to the shorter
        reflen += min((len(r) for r in rws), key=lambda L: (abs(L - c), L))
        testlen += c
        for n in range(1, 5):
            maxref = Counter()
            for r in rws:
                for g, k in ngrams(r, n).items():
                    maxref[g] = max(maxref[g], k)
            hc = ngrams(hw, n)
            correct[n - 1] += sum(min(k, maxref[g]) for g, k in hc.items())
            guess[n - 1] += max(0, c - n + 1)
    tiny, small = 1e-15, 1e-9
    out = []
    p = 1.0
    for n in range(4):
        p *= (correct[n] + tiny) / (guess[n] + small)
        out.append(p ** (1.0 / (n + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        out = [b * math.exp(1 - 1 / ratio) for b in out]
    return out


def lcs(a, b):
    m = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            m[i][j] = m[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(m[i - 1][j], m[i][j - 1])
    return m[len(a)][len(b)]


def rouge(hyps, refs, beta=1.2):
    scores = []
    for h, rs in zip(hyps, refs):
        c = h.split(" ")
        P = []
        R = []
        for r in rs:
            t = r.split(" ")
            L = lcs(t, c)
            P.append(L / len(c))
            R.append(L / len(t))
        p, r = max(P), max(R)
        scores.append(((1 + beta ** 2) * p * r) / (r + beta ** 2 * p) if p != 0 and r != 0 else 0.0)
    return sum(scores) / len(scores), scores


def cider(hyps, refs, sigma=6.0):
    def counts(s):
        w = s.split()
        c = Counter()
        for n in range(1, 5):
            c.update(ngrams(w, n))
        return c
    ctest = [counts(h) for h in hyps]
    crefs = [[counts(r) for r in rs] for rs in refs]
    df = Counter()
    for rs in crefs:
        for g in set(g for r in rs for g in r):
            df[g] += 1
    logn = math.log(float(len(crefs)))

    def vec(cnt):
        v = [dict() for _ in range(4)]
        norm = [0.0] * 4
        length = 0
        for g, tf in cnt.items():
            n = len(g) - 1
            x = float(tf) * (logn - math.log(max(1.0, df[g])))
            v[n][g] = x
            norm[n] += x * x
            if n == 1:
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    scores = []
    for t, rs in zip(ctest, crefs):
        vh, nh, lh = vec(t)
        acc = [0.0] * 4
        for r in rs:
            vr, nr, lr = vec(r)
            d = float(lh - lr)
            for n in range(4):
                val = sum(min(x, vr[n].get(g, 0.0)) * vr[n].get(g, 0.0) for g, x in vh[n].items())
                if nh[n] != 0 and nr[n] != 0:
                    val /= nh[n] * nr[n]
                acc[n] += val * math.exp(-(d * d) / (2 * sigma * sigma))
        scores.append(sum(acc) / 4.0 / len(rs) * 10.0)
    return sum(scores) / len(scores), scores


# ---------------------------------------------------------------- METEOR, exact stage only
ALPHA, BETA, GAMMA, DELTA = 0.85, 0.20, 0.60, 0.75
BEAM = 40


def meteor_align(test, ref):
    """Meteor 1.5's aligner restricted to exact matches. Returns the chosen match list
    (ref index -> test index or None)."""
    n1, n2 = len(test), len(ref)
    cands = [[i for i in range(n1) if test[i] == ref[j]] for j in range(n2)]
    cov1 = [0] * n1
    cov2 = [0] * n2
    for j in range(n2):
        for i in cands[j]:
            cov1[i] += 1
            cov2[j] += 1
    start = {"m": [None] * n2, "u1": [False] * n1, "u2": [False] * n2,
             "score": 0, "chunks": 0, "idx": 0, "last": -1, "dist": 0}
    for j in range(n2):
        if len(cands[j]) == 1 and cov2[j] == 1 and cov1[cands[j][0]] == 1:
            i = cands[j][0]
            start["m"][j] = i
            start["u1"][i] = True
            start["u2"][j] = True

    def copy(p):
        q = dict(p)
        q["m"] = list(p["m"])
        q["u1"] = list(p["u1"])
        q["u2"] = list(p["u2"])
        return q

    def key(p):
        return (-p["score"], p["chunks"], p["dist"])

    nxt = [start]
    for cur in range(n2 + 1):
        paths = sorted(nxt, key=key)   # Python's sort is stable, like Java's
        nxt = []
        for p in paths[:BEAM]:
            if cur == n2:
                if p["last"] != -1:
                    p["chunks"] += 1
                nxt.append(p)
                continue
            if p["u2"][cur]:
                if cur < p["idx"]:
                    nxt.append(p)
                elif p["m"][p["idx"]] is not None:
                    i = p["m"][p["idx"]]
                    p["score"] += 2
                    if p["last"] != -1 and i != p["last"]:
                        p["chunks"] += 1
                    p["dist"] += abs(p["idx"] - i)
                    p["idx"] += 1
                    p["last"] = i + 1
                    nxt.append(p)
                continue
            for i in cands[cur]:
                if p["u1"][i]:
                    continue
                q = copy(p)
                q["u1"][i] = True
                q["u2"][cur] = True
                q["m"][cur] = i
                q["score"] += 2
                if q["last"] != -1 and i != q["last"]:
                    q["chunks"] += 1
                q["idx"] = cur + 1
                q["last"] = i + 1
                p["dist"] += abs(cur - i)   # as the Java code does
                nxt.append(q)
            if p["last"] != -1:
                p["chunks"] += 1
                p["last"] = -1
            p["idx"] += 1
            nxt.append(p)
        if not nxt:
            nxt = [paths[0]]
    return sorted(nxt, key=key)[0]["m"]


def meteor_stats(test, ref, fw):
    m = meteor_align(test, ref) if test and ref else [None] * len(ref)
    s = {"tl": len(test), "rl": len(ref), "tf": sum(w in fw for w in test),
         "rf": sum(w in fw for w in ref), "tc": 0, "rc": 0, "tfm": 0, "rfm": 0, "ch": 0, "mt": 0}
    last = -1
    for j, i in enumerate(m):
        if i is None:
            if last != -1:
                s["ch"] += 1
                last = -1
            continue
        if test[i] in fw:
            s["tfm"] += 1
        else:
            s["tc"] += 1
        if ref[j] in fw:
            s["rfm"] += 1
        else:
            s["rc"] += 1
        s["mt"] += 1
        if last != -1 and i != last:
            s["ch"] += 1
        last = i + 1
    if last != -1:
        s["ch"] += 1
    return s


def meteor_score(s):
    try:
        tw = DELTA * s["tc"] + (1 - DELTA) * s["tfm"]
        rw = DELTA * s["rc"] + (1 - DELTA) * s["rfm"]
        P = tw / (DELTA * (s["tl"] - s["tf"]) + (1 - DELTA) * s["tf"])
        R = rw / (DELTA * (s["rl"] - s["rf"]) + (1 - DELTA) * s["rf"])
        fmean = P * R / ((1 - ALPHA) * R + ALPHA * P)
    except ZeroDivisionError:
        return 0.0
    if s["mt"] == s["tl"] and s["mt"] == s["rl"] and s["ch"] == 1:
        frag = 0.0
    else:
        frag = s["ch"] / s["mt"] if s["mt"] else 0.0
    sc = fmean * (1 - GAMMA * frag ** BETA)
    return max(sc, 0.0)


def meteor(hyps, refs, fw):
    tot = defaultdict(float)
    per = []
    for h, rs in zip(hyps, refs):
        best, bs = None, -1.0
        for r in rs:
            s = meteor_stats(h.split(), r.split(), fw)
            sc = meteor_score(s)
            if sc > bs:
                best, bs = s, sc
        per.append(bs)
        for k, v in best.items():
            tot[k] += v
    return meteor_score(tot), per


def main():
    d = json.load(open(sys.argv[1]))
    fw = set(d.get("function_words", []))
    res = []
    for case in d["cases"]:
        h, r = case["hyps"], case["refs"]
        ro, ri = rouge(h, r)
        ci, cimg = cider(h, r)
        me, mimg = meteor(h, r, fw)
        res.append({"bleu": bleu(h, r), "rouge": ro, "rouge_img": ri, "cider": ci,
                    "cider_img": cimg, "meteor_exact": me, "meteor_exact_img": mimg})
    json.dump({"results": res}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
