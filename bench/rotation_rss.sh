#!/usr/bin/env bash
# The streaming engine stays out of core with rotation on (issue 17): the same
# SmolLM2-135M GPTQ job (--preset gptq-paper, W4 g64, 128 x 512 WikiText-2 calibration tokens)
# unrotated and with --rotate hadamard --online-hadamard, in one run; prints
# each job's wall time, peak RSS (the report's measured peak) and the ratios.
# usage: bench/rotation_rss.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build}")/streamq
model=$(scripts/fetch-smollm2.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tail -n +1001 ../shared/fixtures/text/wiki.test.raw > "$work/calib.txt"
run() {  # label, extra flags...
  local label=$1
  shift
  "$bin" quantize --model "$model" --out "$work/$label" --calib-text "$work/calib.txt" --nsamples 128 --seqlen 512 \
    --preset gptq-paper --method gptq --bits 4 --group 64 --report "$work/$label.json" --quiet "$@"
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["total_seconds"], r["peak_rss_bytes"])' \
    "$work/$label.json"
}
read -r t0 m0 < <(run plain)
read -r t1 m1 < <(run rotated --rotate hadamard --online-hadamard)
awk -v t0="$t0" -v m0="$m0" -v t1="$t1" -v m1="$m1" 'BEGIN {
  printf "| job | seconds | peak RSS (MiB) |\n| --- | ---: | ---: |\n"
  printf "| unrotated | %.1f | %.0f |\n", t0, m0 / 1048576
  printf "| --rotate hadamard --online-hadamard | %.1f | %.0f |\n", t1, m1 / 1048576
  printf "| ratio | %.3f | %.3f |\n", t1 / t0, m1 / m0
}'
