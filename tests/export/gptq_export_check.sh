#!/usr/bin/env bash
# ctest gptq_export_numpy: streamq quantize + export on stories260K for every
# bit width, per-channel and g32, sym/asym, act-order on/off, then the
# independent numpy reader (tests/export/gptq_unpack.py) reconstructs every packed
# linear and must reproduce the fake-quant weights bit for bit.
# usage: gptq_export_check.sh STREAMQ_BIN
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
# The first python3 that has numpy (a pyenv shim on PATH may lack it).
py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import numpy' 2>/dev/null; then py=$cand; break; fi
done
[ -n "$py" ] || { echo "gptq_export_check: no python3 with numpy (scripts/install-deps.sh installs python3-numpy)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
calib="$root/data/tokens/tinystories_calib_tokens.bin"
n=0
for bits in 2 3 4 8; do
  for group in -1 32; do
    for symflag in --sym --asym; do
      for act in "" --act-order; do
        fmt=gptq
        # Some asymmetric runs go through gptq_v2 end to end (zero points 0 allowed).
        if [ "$symflag" = --asym ] && [ -n "$act" ] && [ "$group" = 32 ]; then fmt=gptq_v2; fi
        tag="w$bits g$group $symflag ${act:-no-act-order} $fmt"
        q="$work/q$n" g="$work/g$n"
        "$bin" quantize --model "$root/data/stories260K" --out "$q" --calib "$calib" --nsamples 8 --seqlen 64 \
          --seed 1 --preset gptq-paper --bits "$bits" --group "$group" $symflag $act --checkpoint-format "$fmt" \
          --threads 2 --quiet \
          || { echo "FAIL quantize: $tag" >&2; exit 1; }
        "$bin" export --from "$q" --out "$g" --checkpoint-format "$fmt" --quiet \
          || { echo "FAIL export: $tag" >&2; exit 1; }
        "$py" "$root/tests/export/gptq_unpack.py" --gptq "$g" --fakequant "$q" >/dev/null \
          || { echo "FAIL numpy reconstruction: $tag" >&2; exit 1; }
        echo "ok: $tag"
        rm -rf "$q" "$g"
        n=$((n + 1))
      done
    done
  done
done
# The default preset (LoaQ, two-stage, act-order; asymmetric in the fake-quant
# output, so a classic GPTQ export with zero points kept >= 1), then
# quantize --format gptq, whose default is symmetric.
q="$work/qd" g="$work/gd"
"$bin" quantize --model "$root/data/stories260K" --out "$q" --calib "$calib" --nsamples 8 --seqlen 64 --seed 1 \
  --bits 4 --group 32 --threads 2 --quiet || { echo "FAIL quantize: default preset" >&2; exit 1; }
"$bin" export --from "$q" --out "$g" --quiet || { echo "FAIL export: default preset" >&2; exit 1; }
"$py" "$root/tests/export/gptq_unpack.py" --gptq "$g" --fakequant "$q" >/dev/null \
  || { echo "FAIL numpy reconstruction: default preset" >&2; exit 1; }
echo "ok: default preset (w4 g32)"
n=$((n + 1))
echo "gptq_export_check: $n configurations reconstructed exactly"
