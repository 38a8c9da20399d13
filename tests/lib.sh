# lib.sh - helpers of the script tests, sourced from the repository root (`. tests/lib.sh`):
# pass / fail counters, ok NAME, no NAME, check NAME CONDITION (a shell condition, evaluated),
# and finish (the "N passed, N failed, 0 skipped" line tests/run.sh sums; its status is the
# script's).
pass=0; fail=0
ok() { echo "ok $1"; pass=$((pass+1)); }
no() { echo "FAILED $1"; fail=$((fail+1)); }
check() { if eval "$2"; then ok "$1"; else no "$1"; fi; }
finish() { echo "$pass passed, $fail failed, 0 skipped"; [ "$fail" -eq 0 ]; }
