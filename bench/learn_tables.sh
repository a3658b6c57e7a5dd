#!/usr/bin/env bash
# CQE+'s learned adjustment (issue 18): each method of the papers' runs
# (symmetric, MSE clip, act-order; LoaQ with its two-stage grid) alone, with
# --learn sde (no cross-layer term: --cl-lambda 0) and with SDE+CL
# (--cl-lambda 0.05, the paper's), at low-bit weight-only settings and at
# W4A4 with QuaRot's rotations (R1-R4; activations per token, calibrated
# and evaluated on quantized activations). One more row, "LoaQ+GPTQ
# two-stage asym", is what `--preset best` (quantize's default) runs with
# --method gptq: the LoaQ row with an asymmetric grid; it decides whether the
# default should learn. "GPTAQ+CAE asym" with +SDE is what `--preset best`
# runs when --abits is below 16 (the lowest W4A4 row measured, 3 seeds).
# Each cell: mean perplexity over the calibration seeds (min-max beside it);
# a second table gives the mean seconds and peak RSS of each job.
# usage: bench/learn_tables.sh [build dir] [stories260K|smollm2]
#   LEARN_SEEDS="0 1 2" (default), LEARN_ONLY=REGEX (rows), LEARN_COLS=REGEX
#   (columns), LEARN_FLAGS="..." (extra --learn flags, e.g. --learn-epochs 4).
#   Writes stdout and bench/learn-<model>.md (stdout only when a filter or
#   LEARN_FLAGS is set).
set -euo pipefail
keep=${LEARN_KEEP:+$(realpath -m "$LEARN_KEEP")}
cd "$(dirname "$0")/.."
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}  # the suite's and README's kernel family
bin=$(realpath "${1:-build}")/streamq
which=${2:-stories260K}
seeds=${LEARN_SEEDS:-0 1 2}
extra=${LEARN_FLAGS:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=bench/lib/tables.sh
source bench/lib/tables.sh
g=32
[ "$which" = smollm2 ] && g=64  # SmolLM2's widths (576, 1536) are multiples of 64, not 128
methods=(
  "RTN|--method rtn --grid mse"
  "GPTQ|--method gptq --grid mse --act-order"
  "GPTAQ+CAE|--method gptaq --cae --grid mse --act-order"
  "LoaQ+GPTQ two-stage|--method gptq --loaq --grid two-stage --act-order"
  "LoaQ+GPTQ two-stage asym|--method gptq --loaq --grid two-stage --act-order --asym"
  "GPTAQ+CAE asym|--method gptaq --cae --grid mse --act-order --asym"
)
learns=(
  "|"
  " +SDE|--learn sde --cl-lambda 0"
  " +SDE+CL|--learn sde --cl-lambda 0.05"
)
# column|quantize flags|eval flags
cols=(
  "W2 g$g|--bits 2 --group $g|"
  "W3 g$g|--bits 3 --group $g|"
  "W3 pc|--bits 3 --group -1|"
  "W4A4 rot|--bits 4 --group -1 --abits 4 --rotate hadamard --online-hadamard --head-hadamard|--abits 4"
)
results=$work/results.tsv
if [[ -n "$keep" ]]; then
  touch "$keep"
  results=$keep
else
  : > "$results"
fi
# The keep file's FP row: method "FP", no column, no seed.
fp=$(awk -F'\t' '$1 == "FP" {print $4; exit}' "$results")
if [[ -z "$fp" ]]; then
  fp=$(ppl "$model")
  printf 'FP\t\t\t%s\n' "$fp" >> "$results"
fi
for entry in "${methods[@]}"; do
  mname=${entry%%|*}
  mflags=${entry#*|}
  for lentry in "${learns[@]}"; do
    name=$mname${lentry%%|*}
    lflags=${lentry#*|}
    [[ -z "${LEARN_ONLY:-}" || $name =~ $LEARN_ONLY ]] || continue
    [[ -n "$lflags" ]] && lflags="$lflags $extra"
    for col in "${cols[@]}"; do
      IFS='|' read -r cname qflags eflags <<<"$col"
      [[ -z "${LEARN_COLS:-}" || $cname =~ $LEARN_COLS ]] || continue
      for seed in $seeds; do
        if [[ -n "$keep" ]] && awk -F'\t' -v m="$name" -v c="$cname" -v s="$seed" '$1 == m && $2 == c && $3 == s {found = 1} END {exit !found}' "$results"; then
          echo "$name | $cname | seed $seed | kept in $keep" >&2
          continue
        fi
        # shellcheck disable=SC2086
        quantize_cell "$seed" "$eflags" $mflags $lflags $qflags
        if [[ $p == failed:* ]]; then
          cost=$'nan\tnan'
        else
          cost=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.1f\t%.0f" % (r["total_seconds"], r["peak_rss_bytes"] / 2**20))' "$work/q/streamq_report.json")
        fi
        echo "$name | $cname | seed $seed | $p | $cost" >&2
        # A keep file holds only finished cells: a failed one runs again next time.
        [[ -n "$keep" && $p == failed:* ]] && continue
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$cname" "$seed" "$p" "$cost" >> "$results"
      done
    done
  done
done
md=bench/learn-$which.md
# A filtered run's table is partial, unless it prints a keep file's whole
# grid; extra flags change what every cell means.
[[ ( -n "${LEARN_ONLY:-}${LEARN_COLS:-}" && -z "$keep" ) || -n "$extra" ]] && md=/dev/null
# The tables' rows and columns in this script's order (a keep file's cells
# arrive in whatever order the runs took).
order=()
for entry in "${methods[@]}"; do
  for lentry in "${learns[@]}"; do order+=("${entry%%|*}${lentry%%|*}"); done
done
colorder=()
for col in "${cols[@]}"; do colorder+=("${col%%|*}"); done
python3 - "$results" "$fp" "$which" "$seeds" "$extra" "$keep" "$(IFS=$'\n'; echo "${order[*]}")" "$(IFS=$'\n'; echo "${colorder[*]}")" <<'PY' | tee "$md"
import sys
sys.path.insert(0, "bench/lib")
from tables import fmt, print_table, read_results
path, fp, which, seeds, extra, keep = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split(), sys.argv[5], sys.argv[6]
_, _, cells = read_results(path)
cells = {k: v for k, v in cells.items() if k[0] != "FP"}
rows = [m for m in sys.argv[7].split("\n") if any(k[0] == m for k in cells)]
cols = [c for c in sys.argv[8].split("\n") if any(k[1] == c for k in cells)]
def fmt_cost(vals):
    try:
        sec = [float(a) for a, _ in vals]
        rss = [float(b) for _, b in vals]
    except ValueError:
        return "failed"
    return f"{sum(sec) / len(sec):.1f} s, {max(rss):.0f} MiB"
seed_text = ("mean over the seeds each cell ran (count in brackets; min-max where more than one)"
             if keep else f"mean over calibration seeds {' '.join(seeds)} (min-max)")
print(f"{which}: perplexity, {seed_text}; FP {fp:.4f}; "
      "symmetric (asym: --preset best's asymmetric grid), MSE clip (LoaQ: two-stage), act-order (not RTN); +SDE = --learn sde --cl-lambda 0, "
      "+SDE+CL = --learn sde --cl-lambda 0.05 (band 100, 2 epochs, lr 2.5e-4, batch 1 unless said)"
      + (f"; extra flags: {extra}" if extra else "") + "\n")
def cell(m, c, text):
    if (m, c) not in cells:
        return "-" if keep else text([["nan", "nan", "nan"]])
    vals = cells[(m, c)]
    return text(vals) + (f" [{len(vals)}]" if keep else "")
print_table(rows, cols, lambda m, c: cell(m, c, lambda v: fmt([f[0] for f in v])))
print("\nCost per job (mean seconds of the whole quantize job, highest peak RSS):\n")
print_table(rows, cols, lambda m, c: cell(m, c, lambda v: fmt_cost([f[1:] for f in v])))
PY
