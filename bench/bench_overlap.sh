#!/usr/bin/env bash
# Overlap benchmark (issue 4): a random-weight model with Llama-3-8B block
# shapes (hidden 4096, intermediate 14336, 32 heads, 8 kv heads), a few
# blocks, quantized with the activation store on disk, with the background
# read-ahead/write-behind (depth 2) and without it (depth 0). Prints wall time,
# the compute stages' total, the I/O time, how much of it compute hid, and how
# long compute waited; the goal is I/O adding at most 10% to wall time.
# Usage: bench/bench_overlap.sh   (env: BUILD=build LAYERS=2 NSAMPLES=16 SEQLEN=512 WORK=/tmp/streamq-overlap
#        SHAPE="--hidden 1024 --intermediate 3584" to scale the blocks down: on a 2-core CPU one full
#        8B block takes about 10 minutes, 2.5 of them factoring down_proj's 14336 x 14336 Hessian)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}/streamq
W=${WORK:-/tmp/streamq-overlap}
LAYERS=${LAYERS:-2}
NSAMPLES=${NSAMPLES:-16}
SEQLEN=${SEQLEN:-512}
mkdir -p "$W"
# The vocabulary only sizes the embedding, which the block loop never touches.
# shellcheck disable=SC2086
"$B" synth --preset llama3-8b --layers "$LAYERS" --vocab 32000 ${SHAPE:-} --out "$W/model" --overwrite --quiet
for depth in 2 0; do
  "$B" quantize --preset gptq-paper --model "$W/model" --out "$W/q$depth" --overwrite --calib data/tokens/tinystories_calib_tokens.bin \
    --nsamples "$NSAMPLES" --seqlen "$SEQLEN" --chunk-tokens 2048 --activations disk --prefetch-depth "$depth" \
    --method gptq --bits 4 --group 128 --trace "$W/trace$depth.json" --quiet
  python3 - "$W/q$depth/streamq_report.json" "$depth" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["profile"]
cats = {c["category"]: c for c in p["categories"]}
compute = p["compute_seconds"]
io = p["io_seconds"]
wait = cats.get("wait", {}).get("active_seconds", 0.0)
wall = r["total_seconds"]
print(f"depth {sys.argv[2]}: wall {wall:.1f} s, compute stages {compute:.1f} s, I/O {io:.2f} s "
      f"({p.get('io_hidden_fraction') or 0:.0%} hidden), compute waited {wait:.2f} s, "
      f"wall/compute {wall / compute:.3f}, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB, "
      f"activations {r['activations']}")
PY
done
