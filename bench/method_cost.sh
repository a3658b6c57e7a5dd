#!/usr/bin/env bash
# Whole-model cost of GPTAQ+CAE against streamq's own GPTQ (issue 16's goal:
# <= 1.3x), on SmolLM2-135M in the configuration of bench/peers.sh: w4 g64
# asymmetric, act-order with static groups, 32 x 512 WikiText-2 calibration
# tokens (lines 1001 on, seed 0), 2 threads. The two jobs run interleaved
# ROUNDS times, each waiting (up to LOAD_WAIT_S) for the 1-minute load
# average to fall under LOAD_MAX. Prints per run the wall time and the
# report's stages (statistics, quantize with its factor and sweep,
# propagation: the FP flow's forward runs for GPTAQ only, as the report's
# flows say) and peak RSS; then the medians and GPTAQ+CAE / GPTQ per stage.
#   bench/method_cost.sh [build dir]   ROUNDS=3 LOAD_MAX=2.2 LOAD_WAIT_S=600
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${ROUNDS:-3}
load_max=${LOAD_MAX:-2.2}
load_wait_s=${LOAD_WAIT_S:-600}
model=$(scripts/fetch-smollm2.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$build/streamq" "$work/streamq"  # one binary for every run
tail -n +1001 ../shared/fixtures/text/wiki.test.raw >"$work/calib.txt"
flags=(--preset gptq-paper --bits 4 --group 64 --asym --act-order --static-groups --calib-text "$work/calib.txt"
       --nsamples 32 --seqlen 512 --seed 0 --threads 2 --quiet)
wait_quiet() {
  local waited=0
  while awk -v m="$load_max" '{exit !($1 >= m)}' /proc/loadavg; do
    [ "$waited" -ge "$load_wait_s" ] && { echo "(NOT QUIET: gave up after $waited s)"; return; }
    sleep 10
    waited=$((waited + 10))
  done
  echo "(waited $waited s)"
}
echo "| round | method | wall s | statistics s | quantize s (factor, sweep) | propagation s | peak RSS MiB | flows | load before |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"
for r in $(seq 1 "$rounds"); do
  for method in gptq gptaq+cae; do
    extra=(--method gptq)
    [ "$method" = gptaq+cae ] && extra=(--method gptaq --cae)
    note=$(wait_quiet)
    load="$(cut -d' ' -f1-3 /proc/loadavg) $note"
    rm -rf "$work/out"
    "$work/streamq" quantize --model "$model" --out "$work/out" "${flags[@]}" "${extra[@]}"
    python3 - "$work/out/streamq_report.json" "$r" "$method" "$load" >>"$work/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b = r["blocks"]
lin = [l for x in b for l in x.get("linears", [])]
s = lambda k: sum(x.get(k, 0.0) for x in b)
factor = sum(l.get("seconds_factor", 0.0) for l in lin)
sweep = sum(l.get("seconds_sweep", 0.0) for l in lin)
flows = ",".join(r.get("flows", []))  # which activation flows ran: quant, and fp where the method reads it
print("\t".join([sys.argv[2], sys.argv[3], f"{r['total_seconds']:.1f}", f"{s('seconds_stats'):.1f}",
                 f"{s('seconds_quantize'):.1f}", f"{factor:.1f}", f"{sweep:.1f}", f"{s('seconds_propagate'):.1f}",
                 f"{r['peak_rss_bytes'] / 2**20:.0f}", flows or "-", sys.argv[4]]))
PY
    tail -1 "$work/rows" | awk -F'\t' '{printf "| %s | %s | %s | %s | %s (%s, %s) | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11}'
  done
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
cols = {"wall": 2, "statistics": 3, "quantize": 4, "propagation": 7}
med = {m: {c: statistics.median(float(r[i]) for r in rows if r[1] == m) for c, i in cols.items()}
       for m in ("gptq", "gptaq+cae")}
print()
print("| stage | GPTQ median s | GPTAQ+CAE median s | GPTAQ+CAE / GPTQ |")
print("| --- | ---: | ---: | ---: |")
for c in cols:
    g, a = med["gptq"][c], med["gptaq+cae"][c]
    print(f"| {c} | {g:.1f} | {a:.1f} | {a / g:.2f}x |" if g > 0 else f"| {c} | {g:.1f} | {a:.1f} | - |")
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
