#!/usr/bin/env bash
# What the memory plan's allocator policy (a fixed 1 MiB glibc mmap
# threshold, src/pipeline/memory_plan.h kPlanMmapThresholdBytes, set by the
# streamq binary at start-up in tools/streamq_main.cpp, with freed large
# buffers kept for reuse within a stage's peak, src/core/large_blocks.h)
# costs in speed and saves in peak RSS: the same job as it is ("kept"), with
# every large buffer unmapped when freed (STREAMQ_KEEP_LARGE_BLOCKS=0,
# "unkept") and with glibc's dynamic threshold (STREAMQ_GLIBC_DYNAMIC_MMAP=1)
# on top ("dynamic": it now moves only what does not go through operator new
# or the CPU backend, C libraries' own buffers, since large blocks are mapped
# by streamq itself), interleaved ROUNDS times so that a machine's changing
# load hits all alike. Prints one line per run (wall, peak RSS, the plan's
# estimate, minor page faults, system seconds) and the medians.
# Usage: bench/allocator_cost.sh   (env: BUILD=build WORK=/tmp/streamq-alloc ROUNDS=3 NSAMPLES=64 SEQLEN=512)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}/streamq
W=${WORK:-/tmp/streamq-alloc}
ROUNDS=${ROUNDS:-3}
mkdir -p "$W"
[ -s "$W/calib.bin" ] || python3 - "$W/calib.bin" <<'PY'
import random, struct, sys
random.seed(11)
ids = [random.randrange(512) for _ in range(400000)]
open(sys.argv[1], "wb").write(struct.pack("<%dH" % len(ids), *ids))
PY
[ -s "$W/model/config.json" ] || "$B" synth --out "$W/model" --hidden 512 --intermediate 1536 --layers 2 --heads 8 \
  --kv-heads 8 --vocab 512 --dtype f32 --seed 4 --overwrite --quiet >/dev/null
: > "$W/runs.txt"
for round in $(seq "$ROUNDS"); do
  for policy in kept unkept dynamic; do
    env=()
    [ "$policy" = unkept ] && env=(STREAMQ_KEEP_LARGE_BLOCKS=0)
    [ "$policy" = dynamic ] && env=(STREAMQ_KEEP_LARGE_BLOCKS=0 STREAMQ_GLIBC_DYNAMIC_MMAP=1)
    env "${env[@]}" "$B" quantize --preset gptq-paper --model "$W/model" --out "$W/out" --overwrite --calib "$W/calib.bin" \
      --nsamples "${NSAMPLES:-64}" --seqlen "${SEQLEN:-512}" --chunk-tokens 4096 --activations memory --bits 4 \
      --group 128 --method gptq --threads 2 --quiet
    python3 - "$W/out/streamq_report.json" "$policy" "$round" <<'PY' | tee -a "$W/runs.txt"
import json, sys
r = json.load(open(sys.argv[1]))
p = r["process"]
print(f"round {sys.argv[3]} {sys.argv[2]:7s} wall {r['total_seconds']:.2f} s  peak RSS {r['peak_rss_bytes'] / 2**20:.1f} MiB  "
      f"estimate {r['memory']['estimated_peak_bytes'] / 2**20:.1f} MiB  minor faults {p['minor_page_faults']}  "
      f"system {p['system_seconds']:.2f} s")
PY
  done
done
python3 - "$W/runs.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault(f[2], []).append((float(f[4]), float(f[8]), int(f[15]), float(f[17])))
med = lambda v, i: statistics.median(x[i] for x in v)
for p, v in runs.items():
    print(f"{p}: median wall {med(v, 0):.2f} s, peak RSS {med(v, 1):.1f} MiB, minor faults {med(v, 2):.0f}, "
          f"system {med(v, 3):.2f} s")
wall = {k: med(v, 0) for k, v in runs.items()}
print(f"kept / unkept wall: {wall['kept'] / wall['unkept']:.3f}; kept / dynamic wall: {wall['kept'] / wall['dynamic']:.3f}")
PY
