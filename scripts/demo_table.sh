#!/usr/bin/env bash
# The demo's table: quantizes the bundled stories260K (RTN and the GPTQ
# paper's plain settings at 4-bit g32 and 3-bit per-channel, then streamq's
# defaults, --preset best, at 4 and 3 bits g32) on TinyStories calibration
# tokens and prints held-out perplexity before and after as the Markdown table
# README shows (README's copy is checked against this output by the
# `readme_demo_table` test).
#   scripts/demo_table.sh STREAMQ_BIN WORKDIR
set -euo pipefail
cd "$(dirname "$0")/.."
# The table's digits are those of OpenBLAS's Haswell (AVX2) kernels, which
# every AVX2 machine runs: other kernel families round differently, and
# GPTQ's decisions carry last-bit differences into the fourth digit.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
bin=$1
work=$2
mkdir -p "$work"
model=data/stories260K
calib=data/tokens/tinystories_calib_tokens.bin
valid=data/tokens/tinystories_valid_tokens.bin
ppl() { "$bin" eval --model "$1" --data "$valid" --seqlen 256 --windows 64 --quiet | awk '/^ppl/ {print $2}'; }

fp=$(ppl "$model")
rows=("| model | perplexity | vs FP |" "| --- | ---: | ---: |" "| FP (float32) | $fp | |")
# "preset method bits group": the papers' settings, then the defaults.
for cfg in "gptq-paper gptq 4 32" "gptq-paper rtn 4 32" "gptq-paper gptq 3 -1" "gptq-paper rtn 3 -1" \
           "best gptq 4 32" "best gptq 3 32"; do
  read -r preset method bits group <<<"$cfg"
  out="$work/${preset}-${method}-w${bits}g${group}"
  echo "== streamq quantize --preset $preset --method $method --bits $bits --group $group" >&2
  "$bin" quantize --model "$model" --out "$out" --overwrite --calib "$calib" --nsamples 32 --seqlen 256 --seed 0 \
    --preset "$preset" --method "$method" --bits "$bits" --group "$group" --report "$out.report.json" --quiet
  q=$(ppl "$out")
  grouping=$([ "$group" = -1 ] && echo per-channel || echo "g$group")
  if [ "$preset" = best ]; then
    label="streamq's defaults w${bits} ${grouping} (LoaQ + two-stage + act-order + asym)"
  else
    label="$(echo "$method" | tr a-z A-Z) w${bits} ${grouping}"
  fi
  rows+=("| $label | $q | $(awk -v a="$q" -v b="$fp" 'BEGIN {printf "%+.1f%%", 100 * (a / b - 1)}') |")
done
printf '%s\n' "${rows[@]}"
