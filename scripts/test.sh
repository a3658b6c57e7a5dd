#!/usr/bin/env bash
# Installs dependencies, builds streamq (CUDA code too when nvcc is present)
# and runs the whole test suite. GPU tests report SKIPPED without a device.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" -LE gpu "$@"
# GPU tests run verbosely so a machine without a device shows "SKIPPED: no CUDA device (...)".
if [ -x build/streamq_gpu_tests ]; then
  rc=0
  ctest --test-dir build -L gpu --output-on-failure -V "$@" >build/gpu-tests.log 2>&1 || rc=$?
  grep -E "SKIPPED|\[  (PASSED|FAILED) |tests passed" build/gpu-tests.log || true
  if [ "$rc" -ne 0 ]; then cat build/gpu-tests.log; exit "$rc"; fi
fi
