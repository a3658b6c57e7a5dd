#!/usr/bin/env bash
# Which configuration should be the default (issue 14): candidate
# configurations x calibration seeds 0, 1, 2 on a real model, perplexity per
# seed and the mean, as a Markdown table (stdout and bench/defaults-MODEL.md).
#   bench/defaults_table.sh stories260K|smollm2 [build dir]
# stories260K: w4 g32 and w3 g32, 32 x 256 calibration tokens from the
#   TinyStories calibration slice, the demo's 64 x 256 held-out windows.
# smollm2: SmolLM2-135M w4 g128, 32 x 512 tokens of WikiText-2 test lines
#   1001 onwards, the first 16 x 512 windows of the same file
#   (bench/quality_smollm2.sh's protocol).
# Runs seed-major (every configuration at seed 0, then seed 1, ...), so a
# partial run still compares configurations on complete seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
which=$1
bin=${2:-build}/streamq
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
configs=(
  "gptq (the paper's: symmetric, no act-order)|--method gptq"
  "gptq act-order|--method gptq --act-order"
  "gptq act-order asym|--method gptq --act-order --asym"
  "loaq+gptq two-stage act-order|--method gptq --loaq --grid two-stage --act-order"
  "loaq+gptq two-stage act-order asym|--method gptq --loaq --grid two-stage --act-order --asym"
)
if [ "$which" = stories260K ]; then
  model=data/stories260K
  calib=(--calib data/tokens/tinystories_calib_tokens.bin --nsamples 32 --seqlen 256)
  evalf=(--data data/tokens/tinystories_valid_tokens.bin --seqlen 256 --windows 64 --quiet)
  settings=("4 32" "3 32")
else
  model=$(scripts/fetch-smollm2.sh)
  valid=../shared/fixtures/text/wiki.test.raw
  tail -n +1001 "$valid" >"$work/calib.txt"
  calib=(--calib-text "$work/calib.txt" --nsamples 32 --seqlen 512)
  evalf=(--eval-text "$valid" --seqlen 512 --windows 16 --quiet)
  settings=("4 128")
fi
out=bench/defaults-$which.md
fp=$("$bin" eval --model "$model" "${evalf[@]}" | awk '/^ppl/ {print $2}')
: >"$work/rows"
for seed in 0 1 2; do
  for setting in "${settings[@]}"; do
    read -r bits group <<<"$setting"
    for entry in "${configs[@]}"; do
      name=${entry%%|*}
      flags=${entry#*|}
      # shellcheck disable=SC2086
      "$bin" quantize --preset gptq-paper --model "$model" --out "$work/q" --overwrite "${calib[@]}" --seed "$seed" --bits "$bits" \
        --group "$group" $flags --quiet
      ppl=$("$bin" eval --model "$work/q" "${evalf[@]}" | awk '/^ppl/ {print $2}')
      printf '%s\t%s\t%s\t%s\n' "w$bits g$group" "$name" "$seed" "$ppl" >>"$work/rows"
      echo "w$bits g$group | $name | seed $seed | $ppl" >&2
    done
  done
  python3 - "$work/rows" "$fp" "$which" >"$out" <<'PY'
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
fp = float(sys.argv[2])
cells = collections.OrderedDict()
for setting, name, seed, ppl in rows:
    cells.setdefault((setting, name), {})[int(seed)] = float(ppl)
print(f"{sys.argv[3]}: perplexity per calibration seed (FP {fp:.4f}); mean over the seeds run\n")
print("| setting | configuration | seed 0 | seed 1 | seed 2 | mean | vs FP |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for (setting, name), by_seed in cells.items():
    vals = [by_seed.get(s) for s in (0, 1, 2)]
    have = [v for v in vals if v is not None]
    mean = sum(have) / len(have)
    cols = " | ".join(f"{v:.4f}" if v is not None else "" for v in vals)
    print(f"| {setting} | {name} | {cols} | {mean:.4f} | {100 * (mean / fp - 1):+.1f}% |")
PY
done
cat "$out"
