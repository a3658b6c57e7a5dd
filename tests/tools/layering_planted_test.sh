#!/usr/bin/env bash
# The layering check must fail on a planted upward include (model -> pipeline)
# and a planted same-folder-relative include, and pass on the tree as it is.
set -euo pipefail
root="$1"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for d in src io kernels scheduler tools; do cp -r "$root/$d" "$tmp/$d"; done
python3 "$root/scripts/check_layering.py" "$tmp" >/dev/null
echo '#include "src/pipeline/quantize.h"' >> "$tmp/src/model/config.h"
if out=$(python3 "$root/scripts/check_layering.py" "$tmp"); then
  echo "FAIL: planted upward include not caught"; exit 1
fi
grep -q 'src/model/config.h: upward include of "src/pipeline/quantize.h"' <<<"$out" || { echo "FAIL: wrong message: $out"; exit 1; }
cp "$root/src/model/config.h" "$tmp/src/model/config.h"
echo '#include "architecture.h"' >> "$tmp/src/model/config.h"
if python3 "$root/scripts/check_layering.py" "$tmp" >/dev/null; then
  echo "FAIL: folder-relative include not caught"; exit 1
fi
echo "layering check catches planted includes"
