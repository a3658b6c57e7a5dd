#!/usr/bin/env bash
# The papers' low-bit settings with and without QuaRot's rotation (issue 17):
# W2 g32 / g64 weight-only and W3 per-channel, each unrotated and with
# --rotate hadamard; W4A4KV16 and W4A4KV4 (W4 per-channel, activations per
# token, the KV cache per head) unrotated and with --rotate hadamard
# --online-hadamard --head-hadamard (QuaRot R1-R4), calibrated on quantized activations (--abits/--kv-bits at
# quantize) and evaluated the same way. Methods at the settings of the
# papers' runs (../shared/METHODS-NOTES.md: symmetric, MSE clip, act-order;
# --preset gptq-paper plus those): RTN, GPTQ, GPTAQ, GPTAQ+CAE, and LoaQ+GPTQ
# with its two-stage grid.
# Each cell: mean perplexity over the calibration seeds (min-max beside it).
# usage: bench/rotation_tables.sh [build dir] [stories260K|smollm2]
#   ROT_SEEDS="0 1 2" (default; calibration draws), ROT_ONLY=REGEX (methods),
#   ROT_COLS=REGEX (columns). Writes stdout and bench/rotation-<model>.md
#   (stdout only when ROT_ONLY or ROT_COLS is set).
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}  # the suite's and README's kernel family
bin=$(realpath "${1:-build}")/streamq
which=${2:-stories260K}
seeds=${ROT_SEEDS:-0 1 2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$which" = smollm2 ]; then
  model=$(scripts/fetch-smollm2.sh)
  valid=../shared/fixtures/text/wiki.test.raw
  tail -n +1001 "$valid" > "$work/calib.txt"
  calib=(--calib-text "$work/calib.txt" --nsamples 32 --seqlen 512)
  evalargs=(--eval-text "$valid" --seqlen 512 --windows 16)
  g2=64  # SmolLM2's widths (576, 1536) are multiples of 64, not 128
else
  model=data/stories260K
  calib=(--calib data/tokens/tinystories_calib_tokens.bin --nsamples 32 --seqlen 256)
  evalargs=(--data data/tokens/tinystories_valid_tokens.bin --seqlen 256 --windows 64)
  g2=64
fi
methods=(
  "RTN|--method rtn --grid mse"
  "GPTQ|--method gptq --grid mse --act-order"
  "GPTAQ|--method gptaq --grid mse --act-order"
  "GPTAQ+CAE|--method gptaq --cae --grid mse --act-order"
  "LoaQ+GPTQ two-stage|--method gptq --loaq --grid two-stage --act-order"
)
# column|quantize flags|eval flags
cols=(
  "W2 g32|--bits 2 --group 32|"
  "W2 g32 rot|--bits 2 --group 32 --rotate hadamard|"
  "W2 g$g2|--bits 2 --group $g2|"
  "W2 g$g2 rot|--bits 2 --group $g2 --rotate hadamard|"
  "W3 pc|--bits 3 --group -1|"
  "W3 pc rot|--bits 3 --group -1 --rotate hadamard|"
  "W4A4KV16|--bits 4 --group -1 --abits 4|--abits 4"
  "W4A4KV16 rot|--bits 4 --group -1 --abits 4 --rotate hadamard --online-hadamard --head-hadamard|--abits 4"
  "W4A4KV4|--bits 4 --group -1 --abits 4 --kv-bits 4|--abits 4 --kv-bits 4"
  "W4A4KV4 rot|--bits 4 --group -1 --abits 4 --kv-bits 4 --rotate hadamard --online-hadamard --head-hadamard|--abits 4 --kv-bits 4"
)
ppl() { "$bin" eval --model "$1" "${evalargs[@]}" --quiet "${@:2}" | awk '/^ppl/ {print $2}'; }
fp=$(ppl "$model")
results=$work/results.tsv
: > "$results"
for entry in "${methods[@]}"; do
  name=${entry%%|*}
  mflags=${entry#*|}
  [[ -z "${ROT_ONLY:-}" || $name =~ $ROT_ONLY ]] || continue
  for col in "${cols[@]}"; do
    IFS='|' read -r cname qflags eflags <<<"$col"
    [[ -z "${ROT_COLS:-}" || $cname =~ $ROT_COLS ]] || continue
    for seed in $seeds; do
      out=$work/q
      rm -rf "$out"
      # shellcheck disable=SC2086
      if "$bin" quantize --preset gptq-paper --model "$model" --out "$out" "${calib[@]}" --seed "$seed" \
          $mflags $qflags --quiet 2>"$work/err"; then
        # shellcheck disable=SC2086
        p=$(ppl "$out" $eflags)
      else
        p="failed:$(head -c 80 "$work/err" | tr '\t\n' '  ')"
      fi
      printf '%s\t%s\t%s\t%s\n' "$name" "$cname" "$seed" "$p" >> "$results"
      echo "$name | $cname | seed $seed | $p" >&2
    done
  done
done
md=bench/rotation-$which.md
[[ -n "${ROT_ONLY:-}${ROT_COLS:-}" ]] && md=/dev/null
python3 - "$results" "$fp" "$which" "$seeds" <<'PY' | tee "$md"
import sys
from collections import OrderedDict
path, fp, which, seeds = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split()
cells, rows, cols = {}, OrderedDict(), OrderedDict()
for line in open(path):
    m, c, s, p = line.rstrip("\n").split("\t")
    rows[m] = cols[c] = True
    cells.setdefault((m, c), []).append(p)
def fmt(vals):
    try:
        v = [float(x) for x in vals]
    except ValueError:
        return "failed"
    mean = sum(v) / len(v)
    big = lambda x: f"{x:.0f}" if x >= 1000 else (f"{x:.1f}" if x >= 100 else f"{x:.2f}")
    return big(mean) + (f" ({big(min(v))}-{big(max(v))})" if len(v) > 1 else "")
print(f"{which}: perplexity, mean over calibration seeds {' '.join(seeds)} (min-max); FP {fp:.4f}; "
      "symmetric, MSE clip (LoaQ: two-stage), act-order (not RTN); rot = --rotate hadamard (W4A4: plus --online-hadamard --head-hadamard)\n")
print("| method | " + " | ".join(cols) + " |")
print("| --- | " + " | ".join("---:" for _ in cols) + " |")
for m in rows:
    print(f"| {m} | " + " | ".join(fmt(cells.get((m, c), ["nan"])) for c in cols) + " |")
PY
