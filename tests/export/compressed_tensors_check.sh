#!/usr/bin/env bash
# ctest compressed_tensors_package: streamq quantize + export --format
# compressed-tensors on stories260K (4/8/2 bits, group and channel, sym and
# asym, act-order), then the `compressed-tensors` package itself
# (tests/export/compressed_tensors_check.py) decompresses every packed linear
# on the CPU and must reproduce the fake-quant weights exactly.
# The package (and torch) is a test-only dependency from the Python registry,
# installed into a venv on first use: $STREAMQ_CT_VENV, default
# ~/.cache/streamq/ct-venv. Without it the test prints SKIPPED and exits 77.
# usage: compressed_tensors_check.sh STREAMQ_BIN
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${STREAMQ_CT_VENV:-$HOME/.cache/streamq/ct-venv}
py=$venv/bin/python
if ! "$py" -c 'import compressed_tensors, torch, safetensors' 2>/dev/null; then
  echo "compressed_tensors_check: installing compressed-tensors into $venv (test-only dependency)" >&2
  if ! { python3 -m venv "$venv" && timeout 1500 "$venv/bin/pip" install -q compressed-tensors safetensors; } >&2 ||
     ! "$py" -c 'import compressed_tensors, torch, safetensors' 2>/dev/null; then
    echo "SKIPPED: compressed_tensors_package: the compressed-tensors package could not be installed from the registry"
    exit 77
  fi
fi
echo "compressed-tensors $("$py" -c 'import compressed_tensors; print(compressed_tensors.__version__)')"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
calib="$root/data/tokens/tinystories_calib_tokens.bin"
n=0
# The grids one at a time from the plain paper's settings, then the default
# preset (LoaQ, two-stage, act-order: fixed groups, actorder static).
p="--preset gptq-paper"
for flags in "$p --bits 4 --group 32 --asym --act-order" "$p --bits 4 --group 32 --sym --act-order --static-groups" \
             "$p --bits 4 --group -1 --sym" "$p --bits 8 --group 32 --sym" "$p --bits 8 --group -1 --asym" \
             "$p --bits 2 --group 32 --asym --grid two-stage" "--bits 4 --group 32"; do
  q="$work/q$n" c="$work/c$n"
  # shellcheck disable=SC2086
  "$bin" quantize --model "$root/data/stories260K" --out "$q" --calib "$calib" --nsamples 8 --seqlen 64 --seed 1 \
    $flags --threads 2 --quiet || { echo "FAIL quantize: $flags" >&2; exit 1; }
  "$bin" export --from "$q" --out "$c" --format compressed-tensors --quiet || { echo "FAIL export: $flags" >&2; exit 1; }
  "$py" "$root/tests/export/compressed_tensors_check.py" --ct "$c" --fakequant "$q" ||
    { echo "FAIL compressed-tensors decompression: $flags" >&2; exit 1; }
  echo "ok: $flags"
  rm -rf "$q" "$c"
  n=$((n + 1))
done
echo "compressed_tensors_check: $n configurations decompressed exactly by the compressed-tensors package"
