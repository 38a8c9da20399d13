#!/bin/sh
# Latency of `rsmoe caption` as a user runs it: N fresh processes one after another, each
# captioning one image with the model's --json timings; prints the median / min / max of every
# phase and of the whole command's wall time.
#   usage: sh bench/caption_latency.sh [-n RUNS] [-t THREADS] [-m MODEL] [IMAGE] [-- CAPTION OPTIONS]
# Nothing else should run meanwhile: the JSON of each run is written to a file and read only
# after all runs (parsing it in a pipeline would start a second process beside every caption,
# which on a 2-core machine takes a core from the second thread).
set -eu
n=10; t=2; model=models/rsmoe-rsicd.gguf; img=examples/bridge_58.jpg
B=${RSMOE:-./build/rsmoe}
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n=$2; shift 2 ;;
    -t) t=$2; shift 2 ;;
    -m) model=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) img=$1; shift ;;
  esac
done
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
i=1
while [ $i -le "$n" ]; do
  s=$(date +%s%N)
  "$B" caption -m "$model" "$img" --brief --json --threads "$t" "$@" > "$dir/$i.json"
  e=$(date +%s%N)
  echo "$(( (e - s) / 1000 ))" > "$dir/$i.wall"
  i=$((i + 1))
done
# one line per run: phase value pairs, then the wall time
for f in "$dir"/*.json; do
  w=$(cat "${f%.json}.wall")
  sed -n '/"timings_ms"/,/}/p' "$f" | tr -d '\t",{}' | awk -v w="$w" -F: 'NF == 2 && $1 != "timings_ms" { printf "%s %s ", $1, $2 } END { printf "wall %.3f\n", w / 1000 }'
done | awk -v n="$n" -v t="$t" '
  { for (i = 1; i < NF; i += 2) { k = $i; if (!(k in seen)) { seen[k] = 1; keys[++nk] = k } v[k, NR] = $(i + 1) } }
  END {
    printf "%d runs, %d thread(s), ms: median (min-max)\n", n, t
    for (j = 1; j <= nk; j++) {
      k = keys[j]; m = 0
      for (r = 1; r <= NR; r++) a[++m] = v[k, r] + 0
      for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] < a[x]) { z = a[x]; a[x] = a[y]; a[y] = z }
      med = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
      printf "  %-8s %8.1f  (%.1f-%.1f)\n", k, med, a[1], a[m]
    }
  }'
