#!/usr/bin/env bash
# README's demo table is the demo's output, not a hand copy: runs
# scripts/demo_table.sh and compares its table with the one between README's
# <!-- demo-table --> markers, byte for byte.
#   tests/tools/readme_demo_table.sh STREAMQ_BIN
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$root/scripts/demo_table.sh" "$1" "$work/demo" >"$work/printed.md" 2>"$work/log" || { cat "$work/log"; exit 1; }
sed -n '/<!-- demo-table:begin -->/,/<!-- demo-table:end -->/p' "$root/README.md" | sed '1d;$d' >"$work/readme.md"
if [ ! -s "$work/readme.md" ]; then
  echo "README.md has no table between <!-- demo-table:begin --> and <!-- demo-table:end -->"
  exit 1
fi
if ! diff -u "$work/readme.md" "$work/printed.md"; then
  echo "README.md's demo table differs from what scripts/demo_table.sh prints (above: - README, + printed);"
  echo "paste the printed table into README.md"
  exit 1
fi
echo "README's demo table matches scripts/demo_table.sh ($(wc -l <"$work/printed.md") lines)"
