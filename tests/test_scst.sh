#!/bin/sh
# Self-critical training (`rsmoe train --stage scst`) on real data: the default model (an f32 copy
# of models/rsmoe-rsicd.gguf) trained for 24 steps on four RSICD training images raises the mean
# CIDEr-D of its own sampled captions of them (the reward the stage maximises) by 10 points at
# least, and the trained model loads and captions. Skipped (and says so) without ../shared.
# usage: sh tests/test_scst.sh BUILD_DIR
B=${1:-build}/rsmoe
SH=${RSMOE_SHARED:-../shared}
DATA=$SH/data/rsicd/dataset_rsicd.json
if [ ! -r "$DATA" ]; then
  echo "skip: $DATA is absent (RSICD, in ../shared)"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
T=$(mktemp -d /tmp/rsmoe_test_scst.XXXXXX)
trap 'rm -rf "$T"' EXIT
. tests/lib.sh

# the first four training images of RSICD, with their five references each
/usr/bin/python3 - "$DATA" "$T/ds.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
imgs = [i for i in d["images"] if i["split"] == "train"][:4]
json.dump({"images": imgs}, open(sys.argv[2], "w"))
PY
check "a four-image training set" '[ -s "$T/ds.json" ]'
"$B" quantize models/rsmoe-rsicd.gguf "$T/m.gguf" f32 >/dev/null 2>&1
"$B" features -m "$T/m.gguf" --data "$T/ds.json" --images "$SH/data/rsicd/images" --split train --threads 2 -o "$T/f.gguf" >/dev/null 2>&1
check "an f32 copy of the default model and its feature cache" '[ -s "$T/m.gguf" ] && [ -s "$T/f.gguf" ]'
"$B" train --stage scst --model "$T/m.gguf" --out "$T/s.gguf" --data "$T/ds.json" --images "$SH/data/rsicd/images" \
    --features "$T/f.gguf" --val-split "" --steps 24 --batch 2 --scst-samples 4 --lr 3e-4 --min-lr 3e-4 --warmup 0 \
    --log-every 1 --threads 2 --max-caption-tokens 40 --save-every 0 --eval-every 0 >"$T/log" 2>&1; rc=$?
sed -n 's/.*reward (CIDEr-D of the samples) \([0-9.]*\).*/\1/p' "$T/log" >"$T/r"
first=$(head -n 8 "$T/r" | awk '{s += $1} END {if (NR) printf "%.2f", s / NR}')
last=$(tail -n 8 "$T/r" | awk '{s += $1} END {if (NR) printf "%.2f", s / NR}')
echo "  mean reward (CIDEr-D of the sampled captions) of steps 1-8: $first, of steps 17-24: $last"
check "24 steps logged with their reward" '[ $rc -eq 0 ] && [ "$(wc -l <"$T/r")" -eq 24 ]'
check "the reward rises by 10 points at least ($first -> $last)" 'awk -v a="$first" -v b="$last" "BEGIN {exit !(b > a + 10)}"'
"$B" caption -m "$T/s.gguf" --threads 1 --beams 1 examples/bridge_58.jpg >"$T/cap" 2>&1; rc=$?
check "the trained model captions ($(head -c 120 "$T/cap"))" '[ $rc -eq 0 ] && [ -s "$T/cap" ]'
finish
