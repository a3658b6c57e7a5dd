#!/usr/bin/env bash
# CQE+'s learned adjustment (issue 18): each method of the papers' runs
# (symmetric, MSE clip, act-order; LoaQ with its two-stage grid) alone, with
# --learn sde (no cross-layer term: --cl-lambda 0) and with SDE+CL
# (--cl-lambda 0.05, the paper's), at low-bit weight-only settings and at
# W4A4 with QuaRot's rotations (R1-R4; activations per token, calibrated
# and evaluated on quantized activations).
# Each cell: mean perplexity over the calibration seeds (min-max beside it);
# a second table gives the mean seconds and peak RSS of each job.
# usage: bench/learn_tables.sh [build dir] [stories260K|smollm2]
#   LEARN_SEEDS="0 1 2" (default), LEARN_ONLY=REGEX (rows), LEARN_COLS=REGEX
#   (columns), LEARN_FLAGS="..." (extra --learn flags, e.g. --learn-epochs 4).
#   Writes stdout and bench/learn-<model>.md (stdout only when a filter or
#   LEARN_FLAGS is set).
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}  # the suite's and README's kernel family
bin=$(realpath "${1:-build}")/streamq
which=${2:-stories260K}
seeds=${LEARN_SEEDS:-0 1 2}
extra=${LEARN_FLAGS:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$which" = smollm2 ]; then
  model=$(scripts/fetch-smollm2.sh)
  valid=../shared/fixtures/text/wiki.test.raw
  tail -n +1001 "$valid" > "$work/calib.txt"
  calib=(--calib-text "$work/calib.txt" --nsamples 32 --seqlen 512)
  evalargs=(--eval-text "$valid" --seqlen 512 --windows 16)
  g=64  # SmolLM2's widths (576, 1536) are multiples of 64, not 128
else
  model=data/stories260K
  calib=(--calib data/tokens/tinystories_calib_tokens.bin --nsamples 32 --seqlen 256)
  evalargs=(--data data/tokens/tinystories_valid_tokens.bin --seqlen 256 --windows 64)
  g=32
fi
methods=(
  "RTN|--method rtn --grid mse"
  "GPTQ|--method gptq --grid mse --act-order"
  "GPTAQ+CAE|--method gptaq --cae --grid mse --act-order"
  "LoaQ+GPTQ two-stage|--method gptq --loaq --grid two-stage --act-order"
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
ppl() { "$bin" eval --model "$1" "${evalargs[@]}" --quiet "${@:2}" | awk '/^ppl/ {print $2}'; }
fp=$(ppl "$model")
results=$work/results.tsv
: > "$results"
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
        out=$work/q
        rm -rf "$out"
        # shellcheck disable=SC2086
        if "$bin" quantize --preset gptq-paper --model "$model" --out "$out" "${calib[@]}" --seed "$seed" \
            $mflags $lflags $qflags --quiet 2>"$work/err"; then
          # shellcheck disable=SC2086
          p=$(ppl "$out" $eflags)
          cost=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.1f\t%.0f" % (r["total_seconds"], r["peak_rss_bytes"] / 2**20))' "$out/streamq_report.json")
        else
          p="failed:$(head -c 80 "$work/err" | tr '\t\n' '  ')"
          cost=$'nan\tnan'
        fi
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$cname" "$seed" "$p" "$cost" >> "$results"
        echo "$name | $cname | seed $seed | $p | $cost" >&2
      done
    done
  done
done
md=bench/learn-$which.md
[[ -n "${LEARN_ONLY:-}${LEARN_COLS:-}$extra" ]] && md=/dev/null
python3 - "$results" "$fp" "$which" "$seeds" "$extra" <<'PY' | tee "$md"
import sys
from collections import OrderedDict
path, fp, which, seeds, extra = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split(), sys.argv[5]
cells, cost, rows, cols = {}, {}, OrderedDict(), OrderedDict()
for line in open(path):
    m, c, s, p, sec, rss = line.rstrip("\n").split("\t")
    rows[m] = cols[c] = True
    cells.setdefault((m, c), []).append(p)
    cost.setdefault((m, c), []).append((sec, rss))
def fmt(vals):
    try:
        v = [float(x) for x in vals]
    except ValueError:
        return "failed"
    mean = sum(v) / len(v)
    big = lambda x: f"{x:.0f}" if x >= 1000 else (f"{x:.1f}" if x >= 100 else f"{x:.2f}")
    return big(mean) + (f" ({big(min(v))}-{big(max(v))})" if len(v) > 1 else "")
def fmt_cost(vals):
    try:
        sec = [float(a) for a, _ in vals]
        rss = [float(b) for _, b in vals]
    except ValueError:
        return "failed"
    return f"{sum(sec) / len(sec):.1f} s, {max(rss):.0f} MiB"
print(f"{which}: perplexity, mean over calibration seeds {' '.join(seeds)} (min-max); FP {fp:.4f}; "
      "symmetric, MSE clip (LoaQ: two-stage), act-order (not RTN); +SDE = --learn sde --cl-lambda 0, "
      "+SDE+CL = --learn sde --cl-lambda 0.05 (band 100, 2 epochs, lr 2.5e-4, batch 1 unless said)"
      + (f"; extra flags: {extra}" if extra else "") + "\n")
print("| method | " + " | ".join(cols) + " |")
print("| --- | " + " | ".join("---:" for _ in cols) + " |")
for m in rows:
    print(f"| {m} | " + " | ".join(fmt(cells.get((m, c), ["nan"])) for c in cols) + " |")
print("\nCost per job (mean seconds of the whole quantize job, highest peak RSS):\n")
print("| method | " + " | ".join(cols) + " |")
print("| --- | " + " | ".join("---:" for _ in cols) + " |")
for m in rows:
    print(f"| {m} | " + " | ".join(fmt_cost(cost.get((m, c), [("nan", "nan")])) for c in cols) + " |")
PY
