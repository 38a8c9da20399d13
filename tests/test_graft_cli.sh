#!/bin/sh
# rsmoe graft from the command line: bad input is refused with a message and a non-zero exit
# before anything is written (an --into that is not a model, a --from that is not GGUF), and a
# good graft writes an output that loads.
# usage: sh tests/test_graft_cli.sh BUILD_DIR
B=${1:-build}/rsmoe
T=$(mktemp -d /tmp/rsmoe_test_graft.XXXXXX)
trap 'rm -rf "$T"' EXIT
. tests/lib.sh

"$B" init --preset test --seed 1 -o "$T/a.gguf" >/dev/null 2>&1 &&
"$B" init --preset test --seed 2 --experts 1 -o "$T/b.gguf" >/dev/null 2>&1 ||
  { no "init"; finish; exit 1; }
"$B" tokenizer train --data tests/data/ds/karpathy.json --split "" --vocab 260 -o "$T/tok.gguf" >/dev/null 2>&1 ||
  { no "tokenizer train"; finish; exit 1; }
echo "not a model" > "$T/text.gguf"

"$B" graft --into "$T/text.gguf" --from "$T/a.gguf" -o "$T/o1.gguf" >"$T/out1" 2>&1; rc=$?
check "--into a text file: refused" '[ $rc -ne 0 ] && grep -q "into must be an RS-MoE model" "$T/out1"'
check "--into a text file: nothing written" '[ ! -e "$T/o1.gguf" ]'
"$B" graft --into "$T/tok.gguf" --from "$T/a.gguf" -o "$T/o2.gguf" >"$T/out2" 2>&1; rc=$?
check "--into a GGUF that is not a model: refused" '[ $rc -ne 0 ] && grep -q "into must be an RS-MoE model" "$T/out2"'
check "--into a GGUF that is not a model: nothing written" '[ ! -e "$T/o2.gguf" ]'
"$B" graft --into "$T/b.gguf" --from "$T/text.gguf" -o "$T/o3.gguf" >"$T/out3" 2>&1; rc=$?
check "--from a text file: refused with a message" '[ $rc -ne 0 ] && [ -s "$T/out3" ]'
check "--from a text file: nothing written" '[ ! -e "$T/o3.gguf" ]'
"$B" graft --into "$T/b.gguf" --from "$T/a.gguf" >"$T/out4" 2>&1; rc=$?
check "missing -o: usage, exit 2" '[ $rc -eq 2 ] && grep -q "usage: rsmoe graft" "$T/out4"'
"$B" graft --into "$T/b.gguf" --from "$T/a.gguf" -o "$T/o5.gguf" >"$T/out5" 2>&1; rc=$?
check "a good graft succeeds and reports what it took" '[ $rc -eq 0 ] && grep -q "tensors from" "$T/out5"'
check "its output loads as a 1-expert model" '"$B" info "$T/o5.gguf" 2>&1 | grep -q "1 expert"'

# rsmoe average: two models of one layout (other seeds: every f32 tensor differs) average into a
# model that loads; one checkpoint, another layout, or a file that is not a model are refused
"$B" init --preset test --seed 3 -o "$T/c.gguf" >/dev/null 2>&1 || no "init seed 3"
"$B" average -o "$T/avg.gguf" "$T/a.gguf" "$T/c.gguf" >"$T/out6" 2>&1; rc=$?
check "average of two checkpoints: averaged and loads" '[ $rc -eq 0 ] && grep -q "f32 tensors averaged over 2 checkpoints" "$T/out6" && "$B" info "$T/avg.gguf" >/dev/null 2>&1'
"$B" average -o "$T/avg2.gguf" "$T/a.gguf" >"$T/out7" 2>&1; rc=$?
check "average of one checkpoint: usage, exit 2" '[ $rc -eq 2 ] && grep -q "at least two" "$T/out7" && [ ! -e "$T/avg2.gguf" ]'
"$B" average -o "$T/avg3.gguf" "$T/a.gguf" "$T/b.gguf" >"$T/out8" 2>&1; rc=$?
check "average across layouts (3 vs 1 experts): refused, nothing written" '[ $rc -ne 0 ] && grep -q "average:" "$T/out8" && [ ! -e "$T/avg3.gguf" ]'
"$B" average -o "$T/avg4.gguf" "$T/tok.gguf" "$T/tok.gguf" >"$T/out9" 2>&1; rc=$?
check "average of files that are not models: refused, removed" '[ $rc -ne 0 ] && grep -q "does not load as a model" "$T/out9" && [ ! -e "$T/avg4.gguf" ]'
finish
