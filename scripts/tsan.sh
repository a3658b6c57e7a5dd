#!/usr/bin/env bash
# ThreadSanitizer over the concurrent parts of the engine: builds build-tsan
# (CPU targets, -fsanitize=thread) and runs the tests of the prefetch and
# mirrored stores, the compressed store and its I/O paths, trace recording,
# concurrent linears, the memory limit and resumable jobs (kill points, and
# the streamq subprocesses they start), failing on any report or failed test.
# Not part of .ci/run: about 15 minutes on 2 cores. Extra arguments go to the
# test binary (e.g. --gtest_filter=PrefetchStore.* to run a part).
#
# Runs under `taskset -c 0` so that oneTBB starts no worker threads: Debian's
# libtbb is not instrumented, and TSan would report every TBB hand-off as a
# race (tests/support/tsan.supp says why that is not suppressed instead). The project's
# own threads still interleave and are all checked.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=build-tsan

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTREAMQ_CUDA=OFF \
  -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null
cmake --build "$build" -j"$(nproc)" --target streamq_tests streamq

# Non-kill resume tests, and one kill-and-resume variant (the mirrored store's
# writer thread is the one killed mid-write).
filter="PrefetchStore.*:MirroredStoreTest.*:CompressedStore.*:Paths/StoreRoundTrip.*:Paths/StoreFaults.*"
filter+=":DamagedChunk.*:IoBackendChoice.*:ActivationStore.*:MemoryBudget.*:Trace.*"
filter+=":LinearConcurrency.*:MemoryLimit.*"
filter+=":Resume.*-Resume.KilledAtTwentyPlusPointsResumesToIdenticalBytes"

logs="$build/tsan-logs"
rm -rf "$logs"
mkdir -p "$logs"
# log_path: every process (the test binary and each streamq it starts) writes
# its reports to its own file; exitcode makes a process with reports fail.
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 history_size=4 exitcode=66 \
suppressions=$root/tests/support/tsan.supp log_path=$root/$logs/tsan"

start=$(date +%s)
rc=0
taskset -c 0 "$build/streamq_tests" --gtest_filter="$filter" "$@" || rc=$?
echo "tsan: tests took $(( $(date +%s) - start )) s"

reports=$(cat "$logs"/tsan.* 2>/dev/null | grep -c "WARNING: ThreadSanitizer" || true)
if [ "$reports" -gt 0 ]; then
  cat "$logs"/tsan.*
  echo "tsan: $reports report(s); logs in $logs" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "tsan: no report, but the tests failed (exit $rc)" >&2
  exit "$rc"
fi
echo "tsan: no reports"
