#!/usr/bin/env bash
# Installs dependencies, builds streamq (CUDA code too when nvcc is present)
# and runs the whole test suite, the tests labelled `slow` included. GPU tests
# report SKIPPED without a device.
#   ./scripts/test.sh [--quick] [ctest arguments...]
# --quick leaves the `slow` tests out: the edit-and-test loop. The exclusions
# are one regex because ctest ANDs repeated -LE (a test is left out only when
# every -LE matches one of its labels), so `-LE gpu -LE slow` would run them.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=gpu
quick=0
if [ "${1:-}" = --quick ]; then
  exclude='gpu|slow'
  quick=1
  shift
fi
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" -LE "$exclude" "$@"
# GPU tests run verbosely so a machine without a device shows "SKIPPED: no CUDA device (...)".
if [ -x build/streamq_gpu_tests ]; then
  rc=0
  ctest --test-dir build -L '^gpu$' --output-on-failure -V "$@" >build/gpu-tests.log 2>&1 || rc=$?
  grep -E "SKIPPED|\[  (PASSED|FAILED) |tests passed" build/gpu-tests.log || true
  if [ "$rc" -ne 0 ]; then cat build/gpu-tests.log; exit "$rc"; fi
fi
# The same kernels and GPU tests on the CPU runtime (kernels/cuda_on_cpu, HIP-CPU):
# kernel logic without a GPU, minutes on 2 cores; --quick leaves them out.
if [ -x build/streamq_gpu_emu_tests ] && [ "$quick" -eq 0 ]; then
  rc=0
  ctest --test-dir build -L '^gpu-emu$' --output-on-failure -V "$@" 2>&1 | tee build/gpu-emu-tests.log || rc=$?
  grep -E "\[  (PASSED|FAILED) |tests passed" build/gpu-emu-tests.log || true
  if [ "$rc" -ne 0 ]; then exit "$rc"; fi
fi
