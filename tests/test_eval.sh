#!/bin/sh
# rsmoe eval end to end: captions a small Karpathy data set with the `test` preset, writes the
# hypotheses and scores, resumes an interrupted run (nothing redone, nothing lost), refuses to
# resume with other settings, and its scores equal `rsmoe score` on the same hypotheses.
# usage: sh tests/test_eval.sh BUILD_DIR
B=${1:-build}/rsmoe
T=$(mktemp -d /tmp/rsmoe_test_eval.XXXXXX)
trap 'rm -rf "$T"' EXIT
. tests/lib.sh

"$B" init --preset test -o "$T/m.gguf" --lora-random >/dev/null 2>&1 || { no "init"; finish; exit 1; }
cat > "$T/ds.json" <<'JSON'
{"images": [
 {"filename": "rgb37.png", "split": "test", "sentences": [{"raw": "many buildings are in a dense residential area."}, {"raw": "two courts are near a road."}]},
 {"filename": "rgb40.jpg", "split": "test", "sentences": [{"raw": "it is a piece of bareland."}]},
 {"filename": "grey24.jpg", "split": "test", "sentences": [{"raw": "a bridge is over a river."}]},
 {"filename": "pal12.png", "split": "train", "sentences": [{"raw": "not in the test split."}]}
]}
JSON
E="$B eval -m $T/m.gguf --data $T/ds.json --images tests/data --beams 1 --max-len 6 --no-meteor --out $T/run"
$E --limit 2 >"$T/o1" 2>"$T/e1"
check "first run writes 2 hypotheses" '[ "$(grep -avc "^#" "$T/run.hyps.tsv")" = 2 ]'
$E >"$T/o2" 2>"$T/e2"
check "resumes: 2 of 3 done" 'grep -q "resuming .*: 2 of 3 done" "$T/e2"'
check "all 3 test images captioned once, one header" '[ "$(grep -avc "^#" "$T/run.hyps.tsv")" = 3 ] && [ "$(grep -ac "^#" "$T/run.hyps.tsv")" = 1 ]'
check "train image not evaluated" '! grep -aq pal12 "$T/run.hyps.tsv"'
check "scores file written" 'grep -q "\"CIDEr-D\"" "$T/run.scores.json" && grep -q "\"scored\":[[:space:]]*3" "$T/run.scores.json"'
$E --beams 2 >"$T/o3" 2>"$T/e3"; rc=$?
check "other settings refused for resume" '[ $rc -ne 0 ] && grep -q "other settings" "$T/e3"'
# a cut last line (interruption mid-write) is redone
head -c -3 "$T/run.hyps.tsv" > "$T/cut" && cp "$T/cut" "$T/run.hyps.tsv"
$E >"$T/o4" 2>"$T/e4"
check "a cut line is redone" 'grep -q "2 of 3 done" "$T/e4" && [ "$(grep -avc "^#" "$T/run.hyps.tsv")" = 3 ]'
# the same scores as rsmoe score on the hypotheses
grep -av '^#' "$T/run.hyps.tsv" > "$T/h.tsv"
"$B" score --refs "$T/ds.json" --split test --hyps "$T/h.tsv" --json --no-meteor >"$T/s.json" 2>"$T/se"
c1=$(sed -n 's/.*"BLEU-4":[[:space:]]*\([-0-9.e]*\).*/\1/p' "$T/run.scores.json" | head -1)
c2=$(sed -n 's/.*"BLEU-4":[[:space:]]*\([-0-9.e]*\).*/\1/p' "$T/s.json" | head -1)
check "BLEU-4 equals rsmoe score ($c1 vs $c2)" '[ -n "$c1" ] && [ "$c1" = "$c2" ]'
"$B" eval -m "$T/m.gguf" --data /nonexistent.json >/dev/null 2>"$T/e5"; rc=$?
check "missing data set: clear error" '[ $rc -ne 0 ] && grep -q nonexistent "$T/e5"'
# repetition penalty defaults: brief captions 1.0 (rsmoe_brief_default_params), detailed 1.5,
# an explicit --rep-penalty wins either way; `rsmoe caption --brief` the same
check "brief run's header: rep=1" 'head -1 "$T/run.hyps.tsv" | grep -q " style=brief .* rep=1 "'
"$B" eval -m "$T/m.gguf" --data "$T/ds.json" --images tests/data --beams 1 --max-len 6 --no-meteor --style detailed --out "$T/det" >/dev/null 2>&1
"$B" eval -m "$T/m.gguf" --data "$T/ds.json" --images tests/data --beams 1 --max-len 6 --no-meteor --rep-penalty 1.3 --out "$T/r13" >/dev/null 2>&1
check "detailed run's header: rep=1.5; --rep-penalty 1.3 kept" 'head -1 "$T/det.hyps.tsv" | grep -q " style=detailed .* rep=1.5 " && head -1 "$T/r13.hyps.tsv" | grep -q " rep=1.3 "'
C="$B caption -m $T/m.gguf --brief --beams 1 --max-len 24 --threads 1 tests/data/rgb37.png"
$C >"$T/cb" 2>&1; $C --rep-penalty 1 >"$T/cb1" 2>&1; $C --rep-penalty 3 >"$T/cb3" 2>&1
check "caption --brief = --rep-penalty 1, and the penalty changes this caption" 'cmp -s "$T/cb" "$T/cb1" && ! cmp -s "$T/cb" "$T/cb3"'
# the feature cache of a flipped view, and a view that does not exist refused before any work
"$B" features -m "$T/m.gguf" --data "$T/ds.json" --images tests/data --view hflip --threads 1 -o "$T/f-hflip.gguf" >"$T/fo" 2>&1; rc=$?
check "features --view hflip writes a cache" '[ $rc -eq 0 ] && [ -s "$T/f-hflip.gguf" ] && grep -q "view hflip" "$T/fo"'
"$B" features -m "$T/m.gguf" --data "$T/ds.json" --images tests/data --view rot45 -o "$T/f-bad.gguf" >/dev/null 2>"$T/fe"; rc=$?
check "features --view rot45: clear error, no file" '[ $rc -eq 2 ] && grep -q "unknown --view" "$T/fe" && [ ! -e "$T/f-bad.gguf" ]'
finish
