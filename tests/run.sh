#!/bin/sh
# Runs every test program of a build folder and sums their "N passed, N failed" lines.
# usage: tests/run.sh [BUILD_DIR] [NAME_FILTER]
# A script test gets the build folder as its argument and ends with "N passed, N failed".
dir=${1:-build-asan}
filter=${2:-}
total_p=0; total_f=0; total_s=0; broken=""
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# C test programs of the build, then script tests (tests/test_*.sh, run as `sh SCRIPT BUILD_DIR`)
for t in "$dir"/tests/test_* tests/test_*.sh; do
  [ -f "$t" ] || continue
  case "$t" in *.sh) ;; *) [ -x "$t" ] || continue ;; esac
  case "$t" in *"$filter"*) ;; *) continue ;; esac
  name=$(basename "$t")
  start=$(date +%s)
  case "$t" in
    *.sh) out=$(sh "$t" "$dir" 2>&1); rc=$? ;;
    *) out=$("$t" 2>&1); rc=$? ;;
  esac
  end=$(date +%s)
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  p=$(printf '%s' "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
  f=$(printf '%s' "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  s=$(printf '%s' "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
  [ -n "$p" ] || p=0; [ -n "$f" ] || f=0; [ -n "$s" ] || s=0
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  if [ $rc -ne 0 ] || [ "$f" -ne 0 ]; then
    broken="$broken $name"
    printf '%s\n' "$out" | grep -v '^ok ' | tail -n 60
  fi
  printf '%-28s %4s passed, %s failed, %s skipped (%ss)\n' "$name" "$p" "$f" "$s" "$((end-start))"
  total_p=$((total_p+p)); total_f=$((total_f+f)); total_s=$((total_s+s))
done
[ -n "$broken" ] && echo "failing:$broken"
echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ]
