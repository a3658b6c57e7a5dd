#!/usr/bin/env bash
# Copy/compute overlap on the emulated device (issue 13): a random-weight
# model with Llama-3-8B's head layout scaled to hidden 1024 / intermediate
# 3584, 2 blocks, GPTAQ w4 g128 (both flows stream through the device) on
# --device emulated with its copy engines throttled to PCIE_GBPS. Chunks pass
# through the task graph's chunk passes (src/pipeline/chunk_pass.h): uploads
# on the upload stream, compute on the compute stream, downloads on the
# download stream, ordered by events. Prints the trace summary's device
# lines (busy, idle, copies and how much of them overlapped device compute)
# and the wall time. The emulated device computes at CPU speed, so its
# timings mean nothing for a GPU; only the shape of the overlap does: the
# default 0.25 GB/s against this CPU's compute is about what 25 GB/s of PCIe
# is against a GPU a hundred times faster.
#   bench/device_overlap.sh [build dir]      env: PCIE_GBPS=0.25 NSAMPLES=16 SEQLEN=512 CHUNK_TOKENS=2048
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/streamq
pcie=${PCIE_GBPS:-0.25}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" synth --preset llama3-8b --layers 2 --hidden 1024 --intermediate 3584 --vocab 32000 --out "$work/model" --quiet
"$bin" quantize --preset gptq-paper --model "$work/model" --out "$work/q" --calib data/tokens/tinystories_calib_tokens.bin \
  --nsamples "${NSAMPLES:-16}" --seqlen "${SEQLEN:-512}" --chunk-tokens "${CHUNK_TOKENS:-2048}" --method gptaq --bits 4 \
  --group 128 --device emulated --gpu-mem-limit 8GiB --emulated-pcie-gbps "$pcie" --trace "$work/trace.json" --quiet
echo "emulated device, copy engines at $pcie GB/s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" profile "$work/trace.json" | grep -E "^wall|^device|^  device" || true
python3 - "$work/q/streamq_report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["device"]
print(f"wall {r['total_seconds']:.1f} s; device peak {d['high_water_bytes'] / 2**20:.0f} MiB "
      f"(plan {d['predicted_peak_bytes'] / 2**20:.0f} MiB); host peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB")
PY
