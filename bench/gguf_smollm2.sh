#!/usr/bin/env bash
# GGUF Q4_0 of SmolLM2-135M-Instruct: llama.cpp's own Q4_0 quantizer (RTN,
# d = max / -8; gguf-py's numpy port of quantize_row_q4_0_ref, applied to the
# same linears) against streamq's methods on the Q4_0 grid (--format gguf
# --gguf-type Q4_0), each evaluated from its .gguf file by `streamq eval`
# (which must equal the fake-quant perplexity). Calibration and evaluation
# as bench/quality_smollm2.sh (WikiText-2: 32 x 512 calibration tokens from
# line 1001 on, the first 16 x 512 tokens evaluated). Prints a markdown table.
# usage: bench/gguf_smollm2.sh [build dir]   (GGUF_ONLY=REGEX: those rows only)
#   PYTHON: a python with the gguf package (default ~/.cache/streamq/gguf-venv, made by tests/export/gguf_check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/streamq
py=${PYTHON:-$HOME/.cache/streamq/gguf-venv/bin/python}
model=$(scripts/fetch-smollm2.sh)
valid=../shared/fixtures/text/wiki.test.raw
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tail -n +1001 "$valid" > "$work/calib.txt"
evalf=(--eval-text "$valid" --seqlen 512 --windows 16 --quiet)
ppl() { "$bin" eval --model "$1" "${evalf[@]}" | awk '/^ppl/ {print $2}'; }
fp=$(ppl "$model")
echo "| Q4_0 model (linears in Q4_0, embeddings/norms/lm_head as in the source) | perplexity (.gguf) | fake-quant | vs FP | seconds |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| FP (the dequantized Q4_1 source) | $fp | | | |"
p="--preset gptq-paper"
rows=("rtn|$p --method rtn" "gptq|$p --method gptq" "gptq act-order static-groups|$p --method gptq --act-order --static-groups"
      "loaq+gptq two-stage|$p --method gptq --loaq --grid two-stage"
      "defaults (--preset best: loaq+gptq two-stage act-order)|--preset best")
for entry in "${rows[@]}"; do
  name=${entry%%|*} flags=${entry#*|}
  [[ -z "${GGUF_ONLY:-}" || $name =~ $GGUF_ONLY ]] || continue
  q="$work/q"
  rm -rf "$q"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$bin" quantize --model "$model" --out "$q" --calib-text "$work/calib.txt" --nsamples 32 --seqlen 512 --seed 0 \
    --format gguf --gguf-type Q4_0 $flags --quiet
  secs=$(( $(date +%s) - start ))
  g=$(ppl "$q/model.gguf") f=$(ppl "$q")
  echo "| streamq $name | $g | $f | $(python3 -c "print(f'{100 * ($g / $fp - 1):+.1f}%')") | $secs |"
  if [[ $name == rtn ]]; then
    # llama.cpp's quantizer on the same tensors: the rtn file with each Q4_0
    # tensor's blocks replaced by gguf.quants.quantize of the source weights
    # (both files hold q/k in llama.cpp's permuted row order).
    cp "$q/model.gguf" "$work/llamacpp.gguf"
    "$py" - "$model" "$work/llamacpp.gguf" <<'PY'
import sys
import numpy as np
import gguf
src, dst = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2], "r+")
by_name = {t.name: t for t in src.tensors}
n = 0
for t in dst.tensors:
    if t.tensor_type != gguf.GGMLQuantizationType.Q4_0:
        continue
    s = by_name[t.name]
    w = gguf.quants.dequantize(s.data, s.tensor_type).astype(np.float32)
    q = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q4_0)
    assert q.shape == t.data.shape and q.dtype == t.data.dtype, (t.name, q.shape, t.data.shape)
    t.data[...] = q
    n += 1
dst.data.flush()
print(f"{n} tensors requantized by llama.cpp's Q4_0", file=sys.stderr)
PY
    echo "| llama.cpp Q4_0 (quantize_row_q4_0_ref) | $(ppl "$work/llamacpp.gguf") | | $(python3 -c "print(f'{100 * ($(ppl "$work/llamacpp.gguf") / $fp - 1):+.1f}%')") | |"
  fi
done
