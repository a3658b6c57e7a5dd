#!/usr/bin/env bash
# --device-weights f32 vs bf16 on the emulated device (issue 13): the device
# pool's high-water mark and the plan's predicted peak for a GPTQ w4 g128
# quantize, its summed layer objective, and FP perplexity evaluated with each
# weight dtype, on stories260K and SmolLM2-135M (its Q4_1 GGUF dequantized to
# float32: not exact in bf16, so bf16 rounds it). Prints a markdown table
# (bench/RESULTS.md has a copy). Small calibration (16 x 256 tokens) so the
# weights' share of the device peak shows; timings mean nothing here.
# usage: bench/device_weights.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/streamq
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wiki=../shared/fixtures/text/wiki.test.raw
smol=$(scripts/fetch-smollm2.sh)
tail -n +1001 "$wiki" > "$work/calib.txt"
dev=(--device emulated --gpu-mem-limit 4GiB)

echo "| model | device weights | predicted peak (MiB) | high-water (MiB) | layer objective (sum) | FP perplexity |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
run() {  # name model calib-flags eval-flags
  local name=$1 model=$2 calib=$3 evalf=$4
  for w in f32 bf16; do
    # shellcheck disable=SC2086
    "$bin" quantize --preset gptq-paper --method gptq --bits 4 --group 128 --model "$model" --out "$work/$name-$w" \
      $calib --nsamples 16 --seqlen 256 --seed 0 --quiet --report "$work/$name-$w.json" "${dev[@]}" --device-weights "$w"
    # shellcheck disable=SC2086
    ppl=$("$bin" eval --model "$model" $evalf --quiet "${dev[@]}" --device-weights "$w" | awk '/^ppl/ {print $2}')
    python3 - "$work/$name-$w.json" "$name" "$w" "$ppl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); d = r["device"]
mib = lambda b: b / 2**20
obj = sum(l["objective"] for b in r["blocks"] for l in b["linears"])
print(f"| {sys.argv[2]} | {sys.argv[3]} | {mib(d['predicted_peak_bytes']):.2f} | {mib(d['high_water_bytes']):.2f} | "
      f"{obj:.6g} | {sys.argv[4]} |")
PY
  done
}
run stories260K data/stories260K "--calib data/tokens/tinystories_calib_tokens.bin" \
  "--data data/tokens/tinystories_valid_tokens.bin --seqlen 256 --windows 64"
run SmolLM2-135M "$smol" "--calib-text $work/calib.txt" "--eval-text $wiki --seqlen 512 --windows 16"
