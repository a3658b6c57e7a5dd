#!/usr/bin/env bash
# The device factor's precision (issue 13): SmolLM2-135M GPTAQ w4 g128
# act-order on the emulated device with --factor-precision f64 and f32 (the
# float32 sweep in both), 3 calibration seeds, WikiText-2 perplexity (16 x 512
# windows, evaluated on the CPU). The emulated device runs the CPU's float
# kernels, so the figures are the arithmetic a GPU's float32 factor would
# give up to its own rounding, not GPU timings.
#   bench/factor_precision.sh [build-dir]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin="$build/streamq"
smol="${STREAMQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamq}/SmolLM2-135M-Instruct.Q4_1.gguf"
wiki=../shared/fixtures/text/wiki.test.raw
if [ ! -s "$smol" ] || [ ! -s "$wiki" ]; then
  echo "SKIPPED: $smol or $wiki is not on this machine (scripts/fetch-smollm2.sh needs PyPI)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tail -n +1001 "$wiki" >"$tmp/calib.txt"
echo "| seed | factor f64: ppl | factor f32: ppl | codes equal | f32 / f64 |"
echo "|---|---|---|---|---|"
for seed in 0 1 2; do
  declare -A ppl=()
  for prec in f64 f32; do
    "$bin" quantize --preset gptq-paper --model "$smol" --calib-text "$tmp/calib.txt" --nsamples 16 --seqlen 512 \
      --seed "$seed" --method gptaq --act-order --bits 4 --group 128 --device emulated --gpu-mem-limit 4GiB \
      --factor-precision "$prec" --out "$tmp/$prec-$seed" --quiet >/dev/null
    ppl[$prec]=$("$bin" eval --model "$tmp/$prec-$seed" --eval-text "$wiki" --seqlen 512 --windows 16 --quiet |
                 awk '/^ppl/ {print $2}')
  done
  same=$(python3 - "$tmp/f64-$seed/streamq_quant.safetensors" "$tmp/f32-$seed/streamq_quant.safetensors" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items()
            if k.endswith(".codes")}
a, b = load(sys.argv[1]), load(sys.argv[2])
same = sum(sum(x == y for x, y in zip(a[k], b[k])) for k in a)
print(f"{same / sum(len(a[k]) for k in a):.5f}")
PY
)
  echo "| $seed | ${ppl[f64]} | ${ppl[f32]} | $same | $(python3 -c "print(f'{${ppl[f32]} / ${ppl[f64]}:.5f}')") |"
done
