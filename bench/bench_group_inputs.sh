#!/usr/bin/env bash
# Whole-model GPTQ on SmolLM2-135M with each sub-layer group's input staged
# (the default) and recomputed (--recompute-group-inputs), interleaved, the
# configuration of issue 16's peer table: w4 g64 asymmetric, act-order with
# static groups, 32 x 512 WikiText-2 calibration tokens (lines 1001 on), 2
# threads. Prints per run: wall, statistics and propagation seconds (the
# report's), peak RSS; then the medians and the ratio. Outputs must be the
# same bytes (checked).
#   bench/bench_group_inputs.sh [build dir]     ROUNDS=3 by default
#   ACTIVATIONS=disk: both runs with --activations disk, so the staged run
#   spills each group's input through a compressed store of its own
#   (float32 zstd, lossless) instead of keeping it in memory.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/streamq
rounds=${ROUNDS:-3}
model=$(scripts/fetch-smollm2.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tail -n +1001 ../shared/fixtures/text/wiki.test.raw >"$work/calib.txt"
flags=(--preset gptq-paper --bits 4 --group 64 --asym --act-order --static-groups --calib-text "$work/calib.txt"
       --nsamples 32 --seqlen 512 --seed 0 --threads 2 --quiet --activations "${ACTIVATIONS:-auto}")
echo "activations: ${ACTIVATIONS:-auto}; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| round | group inputs | wall s | statistics s | propagation s | peak RSS MiB |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"
for r in $(seq 1 "$rounds"); do
  for mode in staged recomputed; do
    extra=()
    [ "$mode" = recomputed ] && extra=(--recompute-group-inputs)
    out="$work/$mode"
    rm -rf "$out"
    "$bin" quantize --model "$model" --out "$out" "${flags[@]}" "${extra[@]}"
    python3 - "$out/streamq_report.json" "$r" "$mode" >>"$work/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b = r["blocks"]
print(f"{sys.argv[2]} {sys.argv[3]} {r['total_seconds']:.1f} {sum(x['seconds_stats'] for x in b):.1f} "
      f"{sum(x['seconds_propagate'] for x in b):.1f} {r['peak_rss_bytes'] / 2**20:.0f}")
PY
    tail -1 "$work/rows" | awk '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}'
  done
  for f in model.safetensors streamq_quant.safetensors; do
    cmp -s "$work/staged/$f" "$work/recomputed/$f" || { echo "FAIL: $f differs between staged and recomputed" >&2; exit 1; }
  done
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {m: statistics.median(float(r[2]) for r in rows if r[1] == m) for m in ("staged", "recomputed")}
print(f"median wall: staged {med['staged']:.1f} s, recomputed {med['recomputed']:.1f} s, "
      f"staged / recomputed {med['staged'] / med['recomputed']:.2f}")
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
