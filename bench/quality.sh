#!/usr/bin/env bash
# The end-to-end quality table: every method and variant x {4, 3, 2} bits x
# {per-channel, g32} on stories260K, fixed calibration (32 x 256 tokens, seed 0)
# and held-out evaluation (first 64 windows of 256 tokens). Writes a markdown
# table (perplexity, mean relative layer objective, seconds) to stdout and to
# bench/quality-stories260K.md.  usage: bench/quality.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/streamq
model=data/stories260K
calib=data/tokens/tinystories_calib_tokens.bin
valid=data/tokens/tinystories_valid_tokens.bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

methods=(
  "rtn|--method rtn"
  "gptq|--method gptq"
  "gptq official|--method gptq --variant official"
  "gptq+cae (xx)|--method gptq --cae"
  "gptq+cae (xfx)|--method gptq --cae --cae-source xfx"
  "gptaq|--method gptaq"
  "gptaq official|--method gptaq --variant official"
  "gptaq+cae|--method gptaq --cae"
  "gptaq+cae official|--method gptaq --cae --variant official"
  "gptaq a=1 p1-original|--method gptaq --gptaq-alpha 1 --p1-original"
  "gptq mse|--method gptq --grid mse"
  "gptq two-stage|--method gptq --grid two-stage"
  "gptaq two-stage|--method gptaq --grid two-stage"
  "loaq+gptq|--method gptq --loaq"
  "loaq-norm+gptq|--method gptq --loaq --loaq-norm"
  "gptaq+cae two-stage|--method gptaq --cae --grid two-stage"
  "loaq+gptq two-stage|--method gptq --loaq --grid two-stage"
  "loaq+gptaq two-stage|--method gptaq --loaq --grid two-stage"
)
# QUALITY_ONLY=REGEX runs only the methods whose name matches (rows go to stdout only).
if [[ -n "${QUALITY_ONLY:-}" ]]; then
  keep=()
  for entry in "${methods[@]}"; do [[ ${entry%%|*} =~ $QUALITY_ONLY ]] && keep+=("$entry"); done
  methods=("${keep[@]}")
fi
fp=$("$bin" eval --model "$model" --data "$valid" --seqlen 256 --windows 64 --quiet | awk '/^ppl/ {print $2}')
out=bench/quality-stories260K.md
[[ -n "${QUALITY_ONLY:-}" ]] && out=/dev/null
{
  echo "| method | bits | group | perplexity | vs FP | mean rel. objective | seconds |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| FP | 32 | | $fp | | | |"
  for entry in "${methods[@]}"; do
    name=${entry%%|*}
    flags=${entry#*|}
    for bits in 4 3 2; do
      for group in -1 32; do
        dir="$work/q"
        rm -rf "$dir"
        # shellcheck disable=SC2086
        if ! "$bin" quantize --preset gptq-paper --model "$model" --out "$dir" --calib "$calib" --nsamples 32 --seqlen 256 --seed 0 \
            --bits "$bits" --group "$group" $flags --quiet --report "$work/r.json" 2>"$work/err"; then
          echo "| $name | $bits | $group | failed: $(head -c 120 "$work/err") | | | |"
          continue
        fi
        ppl=$("$bin" eval --model "$dir" --data "$valid" --seqlen 256 --windows 64 --quiet | awk '/^ppl/ {print $2}')
        python3 - "$work/r.json" "$name" "$bits" "$group" "$ppl" "$fp" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rel = [l["relative_objective"] for b in r["blocks"] for l in b["linears"]]
name, bits, group, ppl, fp = sys.argv[2:7]
g = "per-ch" if group == "-1" else "g" + group
print(f"| {name} | {bits} | {g} | {float(ppl):.4f} | {100 * (float(ppl) / float(fp) - 1):+.1f}% | "
      f"{sum(rel) / len(rel):.4e} | {r['total_seconds']:.1f} |")
PY
      done
    done
  done
} | tee "$out"
