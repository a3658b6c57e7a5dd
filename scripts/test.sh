#!/usr/bin/env bash
# Installs dependencies, builds streamq (CUDA code too when nvcc is present)
# and runs the whole test suite. GPU tests report SKIPPED without a device.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
