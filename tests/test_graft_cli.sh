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
finish
