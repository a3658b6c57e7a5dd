#!/usr/bin/env bash
# The 70B block (issue 13). Prints:
#  1. the device plan of a Llama-3-70B block for 128 x 2048 calibration tokens
#     under --gpu-mem-limit 44 GiB (GPTAQ+CAE and GPTQ, w4 g128) and the
#     projected 80-block time on an H100 and an RTX 6000 Ada from stated
#     rates, arithmetic shown (build/bench_70b_plan: a projection);
#  2. a measured run of the pipeline on a 2-block model of the 70B block's
#     shape: on DEVICE=cuda the real shape (streamq synth --preset llama3-70b
#     --layers 2, about 8 GB on disk, 16 x 2048 tokens, --gpu-mem-limit 48GiB);
#     elsewhere (DEVICE=emulated, the default here) the shape scaled down 16x
#     in width (hidden 512, intermediate 1792, 4 heads of 128, 1 kv head; at
#     1/8 width one block took 5 minutes on 2 loaded cores), which this
#     2-core, 24 GB machine runs in a few minutes. Either way: the
#     plan's predicted device peak against the device pool's high-water mark,
#     host peak RSS and per-stage times from the report.
#   DEVICE=cuda|emulated bench/bench_70b_block.sh
set -euo pipefail
cd "$(dirname "$0")/.."
device=${DEVICE:-emulated}
build=${BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target streamq bench_70b_plan >/dev/null
echo "## 70B block: plan and projection"
"$build/bench_70b_plan" --limit-gib 44 --method gptaq-cae
echo
echo "GPTQ w4 g128 (the quantized flow only), same device and tokens:"
"$build/bench_70b_plan" --limit-gib 44 --method gptq | sed -n '/^| device/,$p'
echo
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$device" = cuda ]; then
  shape=(--preset llama3-70b --layers 2)
  tokens=(--nsamples 16 --seqlen 2048)
  limit=48GiB
  label="Llama-3-70B shape, 2 blocks, 16 x 2048 tokens"
else
  shape=(--hidden 512 --intermediate 1792 --layers 2 --heads 4 --kv-heads 1 --vocab 32000)
  tokens=(--nsamples 16 --seqlen 512)
  limit=2GiB
  label="the 70B block's shape at 1/16 width, 2 blocks, 16 x 512 tokens"
fi
"$build/streamq" synth --out "$tmp/model" "${shape[@]}" --quiet >/dev/null
# Calibration ids below every vocabulary's size: a repeating ramp.
python3 - "$tmp/calib.bin" <<'PY'
import struct, sys
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<%dH" % 65536, *[(i * 7919) % 30000 for i in range(65536)]))
PY
echo "## measured: $label, GPTAQ+CAE w4 g128 on $device, --gpu-mem-limit $limit"
/usr/bin/time -f "wall %e s, host peak RSS %M KiB" "$build/streamq" quantize --preset gptq-paper --model "$tmp/model" --out "$tmp/q" \
  --calib "$tmp/calib.bin" "${tokens[@]}" --method gptaq --cae --bits 4 --group 128 --device "$device" \
  --gpu-mem-limit "$limit" --report "$tmp/report.json" --quiet
python3 - "$tmp/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["device"]
gib = lambda b: b / 2**30
print(f"device plan: {d['seqs_per_chunk']} sequences per chunk, predicted peak {gib(d['predicted_peak_bytes']):.3f} GiB "
      f"({d['predicted_peak_phase']}), measured high-water {gib(d['high_water_bytes']):.3f} GiB "
      f"(ratio {d['high_water_bytes'] / d['predicted_peak_bytes']:.3f})")
print(f"sweep: {d['sweep']}; factor: {d['factor']}; host peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB; "
      f"total {r['total_seconds']:.1f} s")
for b in r["blocks"]:
    print(f"block {b['index']}: stats {b['seconds_stats']:.1f} s, quantize {b['seconds_quantize']:.1f} s, "
          f"propagate {b['seconds_propagate']:.1f} s")
PY
