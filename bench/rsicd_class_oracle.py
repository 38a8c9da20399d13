#!/usr/bin/env python3
"""What a scene classifier alone would score on RSICD test (a yardstick for the default model).

For every test image whose file name carries its scene class (airport_61.jpg -> airport; 1,027
of the 1,094 test images), the hypothesis is the most frequent training caption of that class;
the 67 images with numeric names get one fixed generic sentence. Scoring the output with
`rsmoe score` shows how much of RSICD's CIDEr-D comes from naming the scene with the
class's usual sentence: a perfect classifier + a caption look-up table.

  python3 bench/rsicd_class_oracle.py ../shared/data/rsicd/dataset_rsicd.json > oracle.tsv
  ./build/rsmoe score --refs ../shared/data/rsicd/dataset_rsicd.json --hyps oracle.tsv

With --check HYPS.tsv (an `rsmoe eval` output) it instead measures a model's scene accuracy
through its captions: a hypothesis that is word for word a training sentence is assigned the
class that sentence is most often written for, and compared with the image's class.
"""
import collections
import json
import sys


def scene(filename):
    return filename.rsplit("_", 1)[0] if "_" in filename else None


def words(text):
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def check(d, hyps_path):
    sent_class = collections.defaultdict(collections.Counter)
    for im in d["images"]:
        c = scene(im["filename"])
        if im["split"] == "train" and c:
            for s in im["sentences"]:
                sent_class[words(s["raw"])][c] += 1
    known = right = novel = 0
    distinct = set()
    for line in open(hyps_path):
        if line.startswith("#") or "\t" not in line:
            continue
        f, cap = line.rstrip("\n").split("\t", 1)
        distinct.add(cap)
        c = scene(f)
        if not c:
            continue
        k = words(cap)
        if k not in sent_class:
            novel += 1
            continue
        known += 1
        right += sent_class[k].most_common(1)[0][0] == c
    print("%d distinct captions; of %d captions that are training sentences, %.1f %% name the image's class "
          "(%d other captions are new sentences)" % (len(distinct), known, 100.0 * right / max(known, 1), novel))


def main():
    if len(sys.argv) == 4 and sys.argv[2] == "--check":
        check(json.load(open(sys.argv[1])), sys.argv[3])
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = json.load(open(sys.argv[1]))
    by_class = collections.defaultdict(collections.Counter)
    for im in d["images"]:
        c = scene(im["filename"])
        if im["split"] == "train" and c:
            for s in im["sentences"]:
                by_class[c][s["raw"].strip().lower()] += 1
    for im in d["images"]:
        if im["split"] != "test":
            continue
        c = scene(im["filename"])
        cap = by_class[c].most_common(1)[0][0] if c in by_class else "there are many buildings."
        print(im["filename"] + "\t" + cap)


if __name__ == "__main__":
    main()
