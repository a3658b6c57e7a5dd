#!/usr/bin/env bash
# Every name in CMakeLists.txt's STREAMQ_SLOW_TESTS still names a test: a
# renamed one would otherwise silently lose its `slow` label.
# Usage: slow_test_names.sh STREAMQ_TESTS_BINARY FILTER COUNT
set -euo pipefail
found=$("$1" --gtest_list_tests --gtest_filter="$2" | grep -c '^  ' || true)
if [ "$found" != "$3" ]; then
  echo "STREAMQ_SLOW_TESTS lists $3 tests, the binary has $found of them: rename or remove the stale ones" >&2
  exit 1
fi
