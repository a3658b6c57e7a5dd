#!/usr/bin/env bash
# What --learn sde costs (issue 18): SmolLM2-135M quantized with GPTQ (the
# papers' settings, W3 g64) alone, with --learn sde and with SDE+CL, on the
# same calibration; per job: wall seconds, peak RSS; per block: GPTQ's
# seconds (stats + quantize + propagate) against the training's seconds,
# seconds per training step, and the per-step floor (FLOPs of the step over
# the machine's measured GEMM rate), and the protocol's cost extrapolated
# to bench/learn_tables.sh's 32 x 512 calibration at 2 epochs (64 steps a
# block: the steps scale, the SVD and the two epochs' grid fits do not; the
# rest of the job is not measured at that size here).
# usage: bench/learn_cost.sh [build dir]   (LEARN_COST_SAMPLES=4: sequences of 512 tokens)
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
bin=$(realpath "${1:-build}")/streamq
nsamples=${LEARN_COST_SAMPLES:-4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$(scripts/fetch-smollm2.sh)
tail -n +1001 ../shared/fixtures/text/wiki.test.raw > "$work/calib.txt"
common=(--preset gptq-paper --model "$model" --calib-text "$work/calib.txt" --nsamples "$nsamples" --seqlen 512
        --method gptq --grid mse --act-order --bits 3 --group 64 --quiet)
for v in "GPTQ|" "GPTQ +SDE|--learn sde --cl-lambda 0" "GPTQ +SDE+CL|--learn sde --cl-lambda 0.05"; do
  name=${v%%|*}
  # shellcheck disable=SC2086
  "$bin" quantize "${common[@]}" --out "$work/q" --overwrite --report "$work/$(echo "$name" | tr ' +' '__').json" ${v#*|}
done
python3 - "$work" "$nsamples" <<'PY'
import glob, json, os, sys
work, nsamples = sys.argv[1], int(sys.argv[2])
# One SmolLM2 block's training step, batch 1 x 512 tokens (bench/RESULTS.md
# derives it): two forwards (target, taped) and a backward of the linears
# (3 x 2 x 3.54M params x 512 tokens), attention, W' = (U D) V^T and U^T dW
# (2 x 2 x 1.95G multiply-adds) and the banded parts.
step_gflop = 25.7
print(f"SmolLM2-135M, GPTQ W3 g64 (papers' settings), {nsamples} x 512 calibration tokens, "
      "--learn defaults (band 100, 2 epochs, batch 1, lr 2.5e-4)\n")
# A block's training: the SVD once, a grid fit per epoch (W' formed and the
# MSE grid fit on it: the same count at any calibration size), and the
# steps; only the steps scale with the calibration.
print("| job | wall s | peak RSS MiB | s/block (non-training) | training s/block | SVD s | grid fits s | steps/block | s/step | GFLOP/s in steps | protocol (32 x 512) training s/block |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in ["GPTQ", "GPTQ +SDE", "GPTQ +SDE+CL"]:
    r = json.load(open(os.path.join(work, name.replace(" ", "_").replace("+", "_") + ".json")))
    blocks = r["blocks"]
    learn = [b.get("learn") for b in blocks if b.get("learn")]
    rest = sum(b["seconds"] - (b["learn"]["seconds"] if b.get("learn") else 0) for b in blocks) / len(blocks)
    row = f"| {name} | {r['total_seconds']:.0f} | {r['peak_rss_bytes'] / 2**20:.0f} | {rest:.1f} |"
    if learn:
        ts = sum(l["seconds"] for l in learn) / len(learn)
        svd = sum(l["seconds_svd"] for l in learn) / len(learn)
        grids = sum(l["seconds_grid"] for l in learn) / len(learn)
        st = sum(l["steps"] for l in learn) / len(learn)
        per_step = (ts - svd - grids) / st
        cl = (25.7 + 12.3) / 25.7 if "CL" in name else 1.0  # CL: the next block's two forwards and its dx backward, 12.3 GFLOP
        row += (f" {ts:.1f} | {svd:.1f} | {grids:.1f} | {st:.0f} | {per_step:.2f} | {step_gflop * cl / per_step:.0f} |"
                f" {svd + grids + per_step * 64:.0f} |")
    else:
        row += " - | - | - | - | - | - | - |"
    print(row)
PY
