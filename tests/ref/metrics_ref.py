#!/usr/bin/python3
"""Independent reference of the caption metrics (pycocoevalcap semantics as written in
/work/shared/docs/metrics.md), used by tests/test_metrics.c on generated cases.

usage: metrics_ref.py IN.json OUT.json
IN:  {"function_words": [...], "wordnet": DIR,
      "cases": [{"hyps": [str], "refs": [[str]], "stems": {word: stem}}]}   (tokenised text)
OUT: {"results": [{"bleu": [4], "rouge": x, "rouge_img": [...], "cider": x, "cider_img": [...],
                   "meteor_exact": x, "meteor_exact_img": [...],
                   "meteor_full": x, "meteor_full_img": [...]}]}
METEOR: the beam search of Meteor 1.5's aligner and its scoring, written from the algorithm's
description; "exact" uses the exact stage only, "full" adds the stem stage (stems given by the
caller: Snowball is not available to Python here) and the WordNet synonym stage (WordNet read
here, independently of the C code). "full" is omitted when "wordnet" is not given.
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


STAGE_W = [1.0, 0.6, 0.8]     # scoring weights
ALIGN_W = [1.0, 0.5, 0.5]     # the aligner's weights (added to an int: stem/syn add nothing)


def meteor_align(test, ref, stages=1, stem=None, syn=None):
    """Meteor 1.5's aligner. Returns (ref index -> (test index, stage) or None)."""
    n1, n2 = len(test), len(ref)
    if test == ref:
        stages = 1
    cands = []
    for j in range(n2):
        c = []
        for st in range(stages):
            for i in range(n1):
                a, b = test[i], ref[j]
                if st == 0:
                    ok = a == b
                elif st == 1:
                    ok = a != b and stem[a] == stem[b]
                else:
                    ok = a != b and bool(syn(a) & syn(b))
                if ok:
                    c.append((i, st))
        cands.append(c)
    cov1 = [0] * n1
    cov2 = [0] * n2
    for j in range(n2):
        for i, _ in cands[j]:
            cov1[i] += 1
            cov2[j] += 1
    start = {"m": [None] * n2, "u1": [False] * n1, "u2": [False] * n2,
             "m1": 0, "m2": 0, "chunks": 0, "idx": 0, "last": -1, "dist": 0}
    for j in range(n2):
        if len(cands[j]) == 1 and cov2[j] == 1 and cov1[cands[j][0][0]] == 1:
            i, st = cands[j][0]
            start["m"][j] = (i, st)
            start["u1"][i] = True
            start["u2"][j] = True

    def copy(p):
        q = dict(p)
        q["m"] = list(p["m"])
        q["u1"] = list(p["u1"])
        q["u2"] = list(p["u2"])
        return q

    def key(p):
        return (-(p["m1"] + p["m2"]), p["chunks"], p["dist"])

    def add(p, st):
        p["m1"] = int(p["m1"] + ALIGN_W[st])
        p["m2"] = int(p["m2"] + ALIGN_W[st])

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
                    i, st = p["m"][p["idx"]]
                    add(p, st)
                    if p["last"] != -1 and i != p["last"]:
                        p["chunks"] += 1
                    p["dist"] += abs(p["idx"] - i)
                    p["idx"] += 1
                    p["last"] = i + 1
                    nxt.append(p)
                continue
            for i, st in cands[cur]:
                if p["u1"][i]:
                    continue
                q = copy(p)
                q["u1"][i] = True
                q["u2"][cur] = True
                q["m"][cur] = (i, st)
                add(q, st)
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


def meteor_stats(test, ref, fw, stages=1, stem=None, syn=None):
    m = meteor_align(test, ref, stages, stem, syn) if test and ref else [None] * len(ref)
    s = {"tl": len(test), "rl": len(ref), "tf": sum(w in fw for w in test),
         "rf": sum(w in fw for w in ref), "ch": 0, "mt": 0}
    for st in range(3):
        s["tc%d" % st] = s["rc%d" % st] = s["tfm%d" % st] = s["rfm%d" % st] = 0
    last = -1
    for j, x in enumerate(m):
        if x is None:
            if last != -1:
                s["ch"] += 1
                last = -1
            continue
        i, st = x
        s[("tfm%d" if test[i] in fw else "tc%d") % st] += 1
        s[("rfm%d" if ref[j] in fw else "rc%d") % st] += 1
        s["mt"] += 1
        if last != -1 and i != last:
            s["ch"] += 1
        last = i + 1
    if last != -1:
        s["ch"] += 1
    return s


def meteor_score(s):
    tw = sum(STAGE_W[k] * (DELTA * s["tc%d" % k] + (1 - DELTA) * s["tfm%d" % k]) for k in range(3))
    rw = sum(STAGE_W[k] * (DELTA * s["rc%d" % k] + (1 - DELTA) * s["rfm%d" % k]) for k in range(3))
    try:
        P = tw / (DELTA * (s["tl"] - s["tf"]) + (1 - DELTA) * s["tf"])
        R = rw / (DELTA * (s["rl"] - s["rf"]) + (1 - DELTA) * s["rf"])
        fmean = P * R / ((1 - ALPHA) * R + ALPHA * P)
    except ZeroDivisionError:
        return 0.0
    if s["mt"] == s["tl"] and s["mt"] == s["rl"] and s["ch"] == 1:
        frag = 0.0
    else:
        frag = s["ch"] / s["mt"] if s["mt"] else 0.0
    return max(fmean * (1 - GAMMA * frag ** BETA), 0.0)


def meteor(hyps, refs, fw, stages=1, stem=None, syn=None):
    tot = defaultdict(float)
    per = []
    for h, rs in zip(hyps, refs):
        best, bs = None, -1.0
        for r in rs:
            s = meteor_stats(h.split(), r.split(), fw, stages, stem, syn)
            sc = meteor_score(s)
            if sc > bs:
                best, bs = s, sc
        per.append(bs)
        for k, v in best.items():
            tot[k] += v
    meteor.nonexact = sum(tot["tc%d" % k] + tot["tfm%d" % k] for k in (1, 2))
    return meteor_score(tot), per


# ---------------------------------------------------------------- WordNet synonyms
SUFX = ["s", "ses", "xes", "zes", "ches", "shes", "men", "ies",
        "s", "ies", "es", "es", "ed", "ed", "ing", "ing", "er", "est", "er", "est"]
ADDR = ["", "s", "x", "z", "ch", "sh", "man", "y",
        "", "y", "e", "", "e", "", "e", "", "", "", "e", "e"]


class WordNet:
    def __init__(self, d):
        self.syn = defaultdict(set)
        self.exc = defaultdict(list)
        for k, pos in enumerate(["noun", "verb", "adj", "adv"]):
            with open("%s/index.%s" % (d, pos)) as f:
                for line in f:
                    if line.startswith(" "):
                        continue
                    t = line.split()
                    n_syn, n_ptr = int(t[2]), int(t[3])
                    offs = t[4 + n_ptr + 2:4 + n_ptr + 2 + n_syn]
                    self.syn[t[0]].update((k, int(o)) for o in offs)
            with open("%s/%s.exc" % (d, pos)) as f:
                for line in f:
                    t = line.split()
                    if t:
                        self.exc[t[0]].extend(t[1:])
        self.cache = {}

    def morph(self, w):
        if w.endswith("ss") or len(w) <= 2:
            return w
        for sx, ad in zip(SUFX, ADDR):
            if w.endswith(sx):
                c = w[:len(w) - len(sx)] + ad
                if c in self.syn:
                    return c
        return ""

    def __call__(self, w):
        if w not in self.cache:
            s = set(self.syn.get(w, ()))
            if w in self.exc:
                for b in self.exc[w]:
                    s |= self.syn.get(b, set())
            else:
                s |= self.syn.get(self.morph(w), set())
            self.cache[w] = s
        return self.cache[w]


def main():
    d = json.load(open(sys.argv[1]))
    fw = set(d.get("function_words", []))
    wn = WordNet(d["wordnet"]) if d.get("wordnet") else None
    res = []
    for case in d["cases"]:
        h, r = case["hyps"], case["refs"]
        ro, ri = rouge(h, r)
        ci, cimg = cider(h, r)
        me, mimg = meteor(h, r, fw)
        out = {"bleu": bleu(h, r), "rouge": ro, "rouge_img": ri, "cider": ci,
               "cider_img": cimg, "meteor_exact": me, "meteor_exact_img": mimg}
        if wn:
            out["meteor_full"], out["meteor_full_img"] = meteor(h, r, fw, 3, case["stems"], wn)
            out["meteor_full_nonexact"] = meteor.nonexact   # stem + synonym matches used
        res.append(out)
    json.dump({"results": res}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
