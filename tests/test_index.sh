#!/bin/sh
# rsmoe index end to end: a retrieval index of a small labelled data set added to a `test`
# preset model; brief captions then report the scene and whether an indexed caption won, and
# --no-retrieval gives the log-probability choice; the build does not depend on the thread
# count; bad input is refused with a clear message and no output file.
# usage: sh tests/test_index.sh BUILD_DIR
B=${1:-build}/rsmoe
T=$(mktemp -d /tmp/rsmoe_test_index.XXXXXX)
trap 'rm -rf "$T"' EXIT
. tests/lib.sh

"$B" init --preset test -o "$T/m.gguf" --lora-random >/dev/null 2>&1 || { no "init"; finish; exit 1; }
cat > "$T/ds.json" <<'JSON'
{"images": [
 {"filename": "rgb37.png", "split": "train", "label": "Residential", "sentences": [{"raw": "many buildings are in a dense residential area."}, {"raw": "two courts are near a road."}]},
 {"filename": "rgb40.jpg", "split": "train", "label": "BareLand", "sentences": [{"raw": "it is a piece of bareland."}, {"raw": "a piece of yellow bareland ."}]},
 {"filename": "grey24.jpg", "split": "train", "label": "Bridge", "sentences": [{"raw": "a bridge is over a river."}]},
 {"filename": "pal12.png", "split": "train", "label": "Bridge", "sentences": [{"raw": "a long bridge is over a green river."}]},
 {"filename": "rgba12.png", "split": "test", "label": "Bridge", "sentences": [{"raw": "a bridge."}]}
]}
JSON
"$B" features -m "$T/m.gguf" --data "$T/ds.json" --images tests/data --split train --threads 1 -o "$T/f.gguf" >/dev/null 2>&1
check "features of the training split" '[ -s "$T/f.gguf" ]'
"$B" index -m "$T/m.gguf" --data "$T/ds.json" --features "$T/f.gguf" --k 3 --probe-steps 20 -o "$T/mi.gguf" >"$T/o1" 2>&1; rc=$?
check "index built ($(head -c 200 "$T/o1"))" '[ $rc -eq 0 ] && grep -q "indexed 4 images of split train" "$T/o1" && grep -q "over 3 classes" "$T/o1"'
check "info still reads the model" '"$B" info "$T/mi.gguf" >/dev/null 2>&1'
"$B" caption -m "$T/mi.gguf" --brief --json --beams 1 --max-len 6 --threads 1 tests/data/rgba12.png >"$T/c1.json" 2>"$T/c1e"; rc=$?
check "brief caption with the index: scene and retrieved reported" '[ $rc -eq 0 ] && grep -q "\"scene\"" "$T/c1.json" && grep -q "\"retrieved\"" "$T/c1.json"'
# the caption is either one of the aspects (retrieved false) or an indexed training sentence (true)
/usr/bin/python3 - "$T/c1.json" >"$T/c1.check" 2>&1 <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r = r[0] if isinstance(r, list) else r
train = {"many buildings are in a dense residential area.", "two courts are near a road.", "it is a piece of bareland.",
         "a piece of yellow bareland .", "a bridge is over a river.", "a long bridge is over a green river."}
aspects = [a["text"] for a in r["aspects"]]
ok = (r["retrieved"] and r["caption"] in train and "chosen" not in r) or \
     (not r["retrieved"] and r["caption"] == aspects[[a["name"] for a in r["aspects"]].index(r["chosen"])])
ok = ok and r["scene"] in ("BareLand", "Bridge", "Residential") and 0 < r["scene_prob"] <= 1
print("ok" if ok else "bad: %r" % r)
EOF
check "the brief caption is an aspect or an indexed sentence ($(cat "$T/c1.check"))" 'grep -qx ok "$T/c1.check"'
"$B" caption -m "$T/mi.gguf" --brief --json --beams 1 --max-len 6 --threads 1 --no-retrieval tests/data/rgba12.png >"$T/c2.json" 2>&1
"$B" caption -m "$T/m.gguf" --brief --json --beams 1 --max-len 6 --threads 1 tests/data/rgba12.png >"$T/c3.json" 2>&1
cap() { sed -n 's/^[[:space:]]*"caption":[[:space:]]*\(".*"\),$/\1/p' "$1"; }
check "--no-retrieval: the model without the index's caption, no scene" '[ -n "$(cap "$T/c2.json")" ] && [ "$(cap "$T/c2.json")" = "$(cap "$T/c3.json")" ] && grep -q "\"retrieved\":[[:space:]]*false" "$T/c2.json" && ! grep -q "\"scene\"" "$T/c2.json"'
"$B" caption -m "$T/mi.gguf" --brief --json --beams 1 --max-len 6 --threads 1 --retrieval-only tests/data/rgba12.png >"$T/c5.json" 2>&1
check "--retrieval-only: an indexed sentence" 'grep -q "\"retrieved\":[[:space:]]*true" "$T/c5.json" && grep -qE "\"caption\":[[:space:]]*\"(many buildings are in a dense residential area.|two courts are near a road.|it is a piece of bareland.|a piece of yellow bareland .|a bridge is over a river.|a long bridge is over a green river.)\"" "$T/c5.json"'
"$B" index -m "$T/m.gguf" --data "$T/ds.json" --features "$T/f.gguf" --k 3 --probe-steps 20 -o "$T/mi2.gguf" >/dev/null 2>&1
check "the same index again: byte-identical" 'cmp -s "$T/mi.gguf" "$T/mi2.gguf"'
# an index replaces the one already there
"$B" index -m "$T/mi.gguf" --data "$T/ds.json" --features "$T/f.gguf" --k 2 --probe-steps 20 -o "$T/mi3.gguf" >/dev/null 2>&1; rc=$?
check "re-indexing an indexed model works" '[ $rc -eq 0 ] && "$B" gguf "$T/mi3.gguf" 2>/dev/null | grep -q "rsmoe.retrieval.k.*2"'
# no scene labels: the features alone, no scene reported
sed 's/"label": "[A-Za-z]*", //' "$T/ds.json" > "$T/ds-nolabel.json"
"$B" index -m "$T/m.gguf" --data "$T/ds-nolabel.json" --features "$T/f.gguf" --k 3 -o "$T/mn.gguf" >"$T/o4" 2>&1; rc=$?
"$B" caption -m "$T/mn.gguf" --brief --json --beams 1 --max-len 6 --threads 1 tests/data/rgba12.png >"$T/c4.json" 2>&1; rc2=$?
check "without labels: no probe, captions work, no scene" '[ $rc -eq 0 ] && grep -q "over 0 classes" "$T/o4" && [ $rc2 -eq 0 ] && grep -q "\"retrieved\"" "$T/c4.json" && ! grep -q "\"scene\"" "$T/c4.json"'
# bad input
"$B" index -m "$T/m.gguf" --data "$T/ds.json" --features /nonexistent.gguf -o "$T/x1.gguf" >/dev/null 2>"$T/e1"; rc=$?
check "missing feature cache: clear error, no file" '[ $rc -ne 0 ] && grep -q nonexistent "$T/e1" && [ ! -e "$T/x1.gguf" ]'
"$B" init --preset test --seed 9 -o "$T/other.gguf" >/dev/null 2>&1
"$B" index -m "$T/other.gguf" --data "$T/ds.json" --features "$T/f.gguf" -o "$T/x2.gguf" >/dev/null 2>"$T/e2"; rc=$?
check "features of another encoder refused" '[ $rc -ne 0 ] && grep -q "stale feature cache" "$T/e2" && [ ! -e "$T/x2.gguf" ]'
"$B" index -m "$T/m.gguf" --data "$T/ds.json" --features "$T/f.gguf" --split val -o "$T/x3.gguf" >/dev/null 2>"$T/e3"; rc=$?
check "a split without indexed images: clear error" '[ $rc -ne 0 ] && grep -q "images with captions and features" "$T/e3" && [ ! -e "$T/x3.gguf" ]'
"$B" index -m "$T/m.gguf" --data "$T/ds.json" --features "$T/f.gguf" --k 0 -o "$T/x4.gguf" >/dev/null 2>"$T/e4"; rc=$?
check "--k 0 refused" '[ $rc -eq 2 ] && grep -q "k >= 1" "$T/e4"'
"$B" index -m "$T/m.gguf" --data "$T/ds.json" --features "$T/f.gguf" --gamma half -o "$T/x6.gguf" >/dev/null 2>"$T/e6"; rc=$?
check "--gamma half refused, no file" '[ $rc -eq 2 ] && grep -q "gamma" "$T/e6" && [ ! -e "$T/x6.gguf" ]'
"$B" index -m "$T/m.gguf" --data "$T/ds.json" --features "$T/f.gguf" --k 2.5 -o "$T/x7.gguf" >/dev/null 2>"$T/e7"; rc=$?
check "--k 2.5 refused" '[ $rc -eq 2 ] && grep -q "integer" "$T/e7"'
"$B" index -m "$T/m.gguf" --data "$T/ds.json" --features "$T/f.gguf" -o "$T/m.gguf" >/dev/null 2>"$T/e5"; rc=$?
check "-o over the model refused" '[ $rc -eq 2 ] && grep -q "new file" "$T/e5"'
finish
