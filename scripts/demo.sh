#!/usr/bin/env bash
# Installs dependencies, builds streamq, and quantizes the bundled stories260K
# model (RTN and the GPTQ paper's settings at 4-bit g32 and 3-bit per-channel,
# then streamq's defaults at 4 and 3 bits g32) on TinyStories calibration
# tokens, printing held-out perplexity before and after
# (scripts/demo_table.sh; README shows its output).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target streamq >/dev/null
table=$(./scripts/demo_table.sh build/streamq "${DEMO_OUT:-build/demo}")
echo
echo "stories260K, TinyStories held-out, 64 windows x 256 tokens:"
echo "$table"
