#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer over the test suite (run by
# .ci/run after the Release build): builds build-asan with g++ and
# STREAMQ_SANITIZE (UBSan fatal), STREAMQ_FUZZ (the fuzz targets linked with
# the corpus-replay main) and runs, failing on any report or failed test:
#   1. every fuzz target over its committed corpus (ctest label "fuzz"), and
#   2. the CPU test suite (the streamq subprocesses the tests start are
#      instrumented too), except the tests listed in `excluded` below.
# Extra arguments go to ctest (e.g. -R Tokenizer to run a part).
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-asan

# Tests whose assertions are about this process's memory, which ASan changes
# by design (shadow memory, a quarantine of freed blocks, redzones), so their
# bounds do not hold under it; they run in the Release build:
#   MemoryLimit.*   streamq subprocesses' peak RSS against --host-mem-limit
#   MemoryPlan.*    measured peaks of the memory plan's stages
#   MappedRelease.* pages dropped from RSS after madvise
excluded="MemoryLimit\.|MemoryPlan\.|MappedRelease\."

./scripts/install-deps.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O1 -g1: the build, not the suite, is most of the time here. Measured on
# four test sources: ASan+UBSan compiles cost 1.45x the Release CPU time at
# -O1 and 2.4x at -O2, while the whole Release suite is ~160 s of test time
# (bench/RESULTS.md). -g1: line tables for the reports. No NDEBUG: any assert runs.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DSTREAMQ_SANITIZE=ON -DSTREAMQ_FUZZ=ON -DSTREAMQ_CUDA=OFF -DSTREAMQ_CUDA_ON_CPU=OFF "${launcher[@]}" >/dev/null
start=$(date +%s)
cmake --build "$build" -j"$(nproc)" --target streamq_tests streamq streamq_fuzz
echo "sanitize: build took $(( $(date +%s) - start )) s"

# halt_on_error/exitcode: a report fails the process that made it (UBSan is
# also compiled non-recoverable). detect_leaks: leaks are reports too.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87"

start=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" -L fuzz "$@"
echo "sanitize: fuzz corpus replay took $(( $(date +%s) - start )) s"
start=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" -LE "gpu|fuzz" -E "$excluded" "$@"
echo "sanitize: test suite took $(( $(date +%s) - start )) s"
