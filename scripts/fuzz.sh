#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside files (tests/fuzz/): builds
# build-fuzz with clang (libFuzzer, ASan, UBSan on the whole library), then runs
# each target for SECONDS (default 600) on one core, from its committed seeds
# (tests/fuzz/corpus/<target>) plus the working corpus kept in
# build-fuzz/corpus/<target> between runs, with the format's dictionary
# (tests/fuzz/dict). Prints a Markdown table (executions, coverage, crashes)
# for bench/RESULTS.md and fails when any target crashed; crash inputs are in
# build-fuzz/crashes/<target>/. Each fixed crash's input goes into the committed
# corpus as crash-<what>, where ctest replays it from then on.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 60 fuzz_npy
#   FUZZ_JOBS=2 scripts/fuzz.sh               targets two at a time
#   FUZZ_NO_BUILD=1 scripts/fuzz.sh 60 ...     without (re)building first
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
build=build-fuzz

build_fuzz_targets() {
  # The newest clang Debian installed; libFuzzer ships with clang's runtime.
  cxx=""
  for v in 19 18 17 16 15 14; do
    if command -v "clang++-$v" >/dev/null; then cxx="clang++-$v" cc="clang-$v"; break; fi
  done
  [ -n "$cxx" ] || { echo "fuzz: no clang++ found (scripts/install-deps.sh --fuzz installs it)" >&2; exit 1; }
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=$cc CXX=$cxx cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTREAMQ_FUZZ=ON \
    -DSTREAMQ_CUDA=OFF -DSTREAMQ_CUDA_ON_CPU=OFF "${launcher[@]}" >/dev/null
  nice cmake --build "$build" -j"$(nproc)" --target streamq_fuzz
}
# FUZZ_NO_BUILD=1: run the targets as last built (e.g. while the tree is mid-edit).
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  ./scripts/install-deps.sh --fuzz
  build_fuzz_targets
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd tests/fuzz && ls fuzz_*.cpp | grep -v fuzz_util | sed 's/\.cpp$//')
fi

run_one() {
  local t=$1 corpus="$build/corpus/$1" crashes="$build/crashes/$1" log="$build/logs/$1.log"
  mkdir -p "$corpus" "$crashes/previous" "$(dirname "$log")"
  # Crashes of earlier runs are kept aside, so the table counts this run's.
  find "$crashes" -maxdepth 1 -type f -exec mv -t "$crashes/previous" {} +
  # -rss_limit_mb/-malloc_limit_mb: a parser that believes a length field and
  # allocates gigabytes is a finding, not a machine to wait for. -timeout: an
  # input taking 10 s is a hang. -use_value_profile: comparisons guide the
  # search towards magic numbers and checksums' neighbours.
  "$build/$t" "$corpus" "tests/fuzz/corpus/$t" -dict="tests/fuzz/dict/${t#fuzz_}.dict" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -use_value_profile=1 -print_final_stats=1 -artifact_prefix="$crashes/" >"$log" 2>&1 || true
}

export -f run_one
export build seconds
printf '%s\n' "${targets[@]}" | xargs -P "${FUZZ_JOBS:-1}" -I{} bash -c 'run_one {}'

echo "| target | seconds | executions | exec/s | coverage (edges) | features | corpus | crashes |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
failed=0
for t in "${targets[@]}"; do
  log="$build/logs/$t.log"
  stat() { awk -v k="stat::$1:" '$1 == k {print $2}' "$log" | tail -1; }
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$last")
  ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$last")
  corp=$(sed -E 's/.*corp: ([0-9]+).*/\1/' <<<"$last")
  crashes=$(find "$build/crashes/$t" -maxdepth 1 -type f | wc -l)
  echo "| $t | $seconds | $(stat number_of_executed_units) | $(stat average_exec_per_sec) | $cov | $ft | $corp | $crashes |"
  if [ "$crashes" -gt 0 ]; then
    failed=1
    echo "fuzz: $t: $crashes crash input(s) in $build/crashes/$t (log $log)" >&2
  fi
done
exit "$failed"
