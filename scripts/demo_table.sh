#!/usr/bin/env bash
# The demo's table: quantizes the bundled stories260K (RTN and GPTQ at 4-bit
# g32 and 3-bit per-channel, and the recommended LoaQ + two-stage) on
# TinyStories calibration tokens and prints held-out perplexity before and
# after as the Markdown table README shows (README's copy is checked against
# this output by the `readme_demo_table` test).
#   scripts/demo_table.sh STREAMQ_BIN WORKDIR
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1
work=$2
mkdir -p "$work"
model=data/stories260K
calib=data/tokens/tinystories_calib_tokens.bin
valid=data/tokens/tinystories_valid_tokens.bin
ppl() { "$bin" eval --model "$1" --data "$valid" --seqlen 256 --windows 64 --quiet | awk '/^ppl/ {print $2}'; }

fp=$(ppl "$model")
rows=("| model | perplexity | vs FP |" "| --- | ---: | ---: |" "| FP (float32) | $fp | |")
# The last row is the recommended configuration (bench/RESULTS.md).
for cfg in "gptq 4 32" "rtn 4 32" "gptq 3 -1" "rtn 3 -1" "gptq 3 32 --loaq --grid two-stage"; do
  read -r method bits group extra <<<"$cfg"
  out="$work/${method}-w${bits}g${group}${extra:+-recommended}"
  echo "== streamq quantize --method $method --bits $bits --group $group $extra" >&2
  # shellcheck disable=SC2086
  "$bin" quantize --model "$model" --out "$out" --overwrite --calib "$calib" \
    --nsamples 32 --seqlen 256 --seed 0 --method "$method" --bits "$bits" --group "$group" $extra \
    --report "$out.report.json" --quiet
  q=$(ppl "$out")
  name=$(echo "$method" | tr a-z A-Z)
  label="$name w${bits} $([ "$group" = -1 ] && echo per-channel || echo "g$group")${extra:+ \`$extra\` (recommended)}"
  rows+=("| $label | $q | $(awk -v a="$q" -v b="$fp" 'BEGIN {printf "%+.1f%%", 100 * (a / b - 1)}') |")
done
printf '%s\n' "${rows[@]}"
