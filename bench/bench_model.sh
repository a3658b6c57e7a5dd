#!/usr/bin/env bash
# Whole-model CPU quantize time for stories260K (GPTQ w4 g32, 128 x 256 tokens),
# with the per-stage split from the run report. Run after building (scripts/test.sh or demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for threads in 1 2; do
  /usr/bin/time -f "wall %e s, max RSS %M KiB" ./build/streamq quantize --preset gptq-paper --model data/stories260K --out "$out/q$threads" \
    --calib data/tokens/tinystories_calib_tokens.bin --nsamples 128 --seqlen 256 --bits 4 --group 32 \
    --threads "$threads" --quiet --report "$out/r$threads.json"
  python3 - "$out/r$threads.json" "$threads" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = {k: sum(b[k] for b in r["blocks"]) for k in ("seconds_stats", "seconds_quantize", "seconds_propagate")}
print(f"threads {sys.argv[2]}: total {r['total_seconds']:.2f} s (stats {s['seconds_stats']:.2f}, quantize "
      f"{s['seconds_quantize']:.2f}, propagate {s['seconds_propagate']:.2f}), peak RSS {r['peak_rss_bytes']/2**20:.1f} MiB")
PY
done
