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
# shellcheck source=bench/lib/tables.sh
source bench/lib/tables.sh
g2=64  # both models; SmolLM2's widths (576, 1536) are multiples of 64, not 128
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
      # shellcheck disable=SC2086
      quantize_cell "$seed" "$eflags" $mflags $qflags
      printf '%s\t%s\t%s\t%s\n' "$name" "$cname" "$seed" "$p" >> "$results"
      echo "$name | $cname | seed $seed | $p" >&2
    done
  done
done
md=bench/rotation-$which.md
[[ -n "${ROT_ONLY:-}${ROT_COLS:-}" ]] && md=/dev/null
python3 - "$results" "$fp" "$which" "$seeds" <<'PY' | tee "$md"
import sys
sys.path.insert(0, "bench/lib")
from tables import fmt, print_table, read_results
path, fp, which, seeds = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split()
rows, cols, cells = read_results(path)
print(f"{which}: perplexity, mean over calibration seeds {' '.join(seeds)} (min-max); FP {fp:.4f}; "
      "symmetric, MSE clip (LoaQ: two-stage), act-order (not RTN); rot = --rotate hadamard (W4A4: plus --online-hadamard --head-hadamard)\n")
print_table(rows, cols, lambda m, c: fmt([f[0] for f in cells.get((m, c), [["nan"]])]))
PY
