#!/usr/bin/env bash
# Memory plan vs measured peak RSS (issue 4): runs the calibration jobs of
# bench/RESULTS.md ("Memory plan vs measured peak RSS") and prints one
# markdown row per job: the plan's estimate must bound the measurement.
# Usage: bench/plan_calibration.sh   (env: BUILD=build WORK=/tmp/streamq-plancal ONLY=regex over the row label)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}/streamq
W=${WORK:-/tmp/streamq-plancal}
mkdir -p "$W"
# 400000 random token ids below 512 (every synth model's vocab), fixed seed.
[ -s "$W/calib.bin" ] || python3 - "$W/calib.bin" <<'PY'
import random, struct, sys
random.seed(11)
ids = [random.randrange(512) for _ in range(400000)]
open(sys.argv[1], "wb").write(struct.pack("<%dH" % len(ids), *ids))
PY
synth() {  # hidden intermediate layers
  local d="$W/synth-$1-$2-$3"
  [ -s "$d/config.json" ] || "$B" synth --out "$d" --hidden "$1" --intermediate "$2" --layers "$3" \
    --heads $(($1 / 64)) --kv-heads $(($1 / 64)) --vocab 512 --dtype f32 --seed 4 --overwrite --quiet >/dev/null
  echo "$d"
}
echo "| model | nsamples x seqlen | chunk tokens | activations | method | measured | estimate | ratio | peak phase | seconds |"
echo "|---|---|---:|---|---|---:|---:|---:|---|---:|"
row() {  # label model calib nsamples seqlen chunk activations group method-flags...
  local label=$1 model=$2 calib=$3 ns=$4 sl=$5 chunk=$6 act=$7 group=$8
  shift 8
  if [ -n "${ONLY:-}" ] && ! [[ "$label $*" =~ $ONLY ]]; then return; fi
  rm -rf "$W/out"
  "$B" quantize --preset gptq-paper --model "$model" --out "$W/out" --overwrite --calib "$calib" --nsamples "$ns" --seqlen "$sl" \
    --chunk-tokens "$chunk" --activations "$act" --bits 4 --group "$group" --threads 2 --quiet "$@"
  python3 - "$W/out/streamq_report.json" "$label" "$ns x $sl" "$chunk" "$act" "$* g$group" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["memory"]
meas, est = m["measured_peak_rss_bytes"], m["estimated_peak_bytes"]
f = lambda b: f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"
label, toks, chunk, act, method = sys.argv[2:7]
method = method.replace("--method ", "").replace(" --cae", "+cae").replace("--loaq", "+loaq").strip()
print(f"| {label} | {toks} | {chunk} | {act} | {method} | {f(meas)} | {f(est)} | {est / meas:.2f}"
      f"{'' if est >= meas else ' (UNDER)'} | {m['estimated_peak_phase']} | {r['total_seconds']:.1f} |")
PY
}
STORIES=data/stories260K
STOK=data/tokens/tinystories_calib_tokens.bin
S256=$(synth 256 768 4)
S512=$(synth 512 1536 2)
row stories260K "$STORIES" "$STOK" 32 256 4096 memory 32 --method gptq
row stories260K "$STORIES" "$STOK" 32 256 4096 memory 32 --method gptaq --cae
row stories260K "$STORIES" "$STOK" 16 128 512 disk 32 --method gptq
row "synth 256/768, 4 layers" "$S256" "$W/calib.bin" 16 256 1024 memory 128 --method gptq
row "synth 256/768, 4 layers" "$S256" "$W/calib.bin" 32 256 2048 disk 128 --method gptaq
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 16 256 1024 memory 128 --method gptq
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 32 256 4096 memory 128 --method gptq
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 64 512 4096 disk 128 --method gptq
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 32 512 2048 disk 128 --method rtn
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 32 256 4096 memory 128 --method gptq --loaq
# The large rows of the first calibration, before the allocator policy:
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 64 512 4096 memory 128 --method gptq
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 64 512 16384 memory 128 --method gptaq
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 128 512 8192 disk 128 --method gptaq
row "synth 512/1536, 2 layers" "$S512" "$W/calib.bin" 128 1024 32768 memory 128 --method gptq
