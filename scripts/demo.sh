#!/usr/bin/env bash
# Installs dependencies, builds streamq, and quantizes the bundled stories260K
# model (RTN and GPTQ at 4-bit g32 and 3-bit per-channel) on TinyStories
# calibration tokens, printing held-out perplexity before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target streamq >/dev/null

model=data/stories260K
calib=data/tokens/tinystories_calib_tokens.bin
valid=data/tokens/tinystories_valid_tokens.bin
work=${DEMO_OUT:-build/demo}
mkdir -p "$work"
ppl() { ./build/streamq eval --model "$1" --data "$valid" --seqlen 256 --windows 64 --quiet | awk '/^ppl/ {print $2}'; }

fp=$(ppl "$model")
rows=("| model | perplexity | vs FP |" "| --- | ---: | ---: |" "| FP (float32) | $fp | |")
# The last row is the recommended configuration (bench/RESULTS.md).
for cfg in "gptq 4 32" "rtn 4 32" "gptq 3 -1" "rtn 3 -1" "gptq 3 32 --loaq --grid two-stage"; do
  read -r method bits group extra <<<"$cfg"
  out="$work/${method}-w${bits}g${group}${extra:+-recommended}"
  echo "== streamq quantize --method $method --bits $bits --group $group $extra" >&2
  # shellcheck disable=SC2086
  ./build/streamq quantize --model "$model" --out "$out" --overwrite --calib "$calib" \
    --nsamples 32 --seqlen 256 --seed 0 --method "$method" --bits "$bits" --group "$group" $extra \
    --report "$out.report.json"
  q=$(ppl "$out")
  label="$method w${bits} $([ "$group" = -1 ] && echo per-channel || echo "g$group")${extra:+ $extra}"
  rows+=("| $label | $q | $(awk -v a="$q" -v b="$fp" 'BEGIN {printf "%+.1f%%", 100 * (a / b - 1)}') |")
done
echo
echo "stories260K, TinyStories held-out, 64 windows x 256 tokens:"
printf '%s\n' "${rows[@]}"
