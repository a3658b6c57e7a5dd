#!/usr/bin/env bash
# ctest gguf_package: streamq quantize on each GGUF grid (Q4_0, Q8_0, Q4_1;
# RTN and GPTQ) + export --format gguf on stories260K, then the `gguf`
# package (gguf-py, llama.cpp's Python reader; tests/export/gguf_check.py)
# reads the file and its dequantized tensors must equal the fake-quant model
# exactly; `streamq eval` of the .gguf must print the fake-quant perplexity.
# The package is a test-only dependency from the Python registry, installed
# into a venv on first use ($STREAMQ_GGUF_VENV, default
# ~/.cache/streamq/gguf-venv); without it the test prints SKIPPED and exits 77.
# usage: gguf_check.sh STREAMQ_BIN
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${STREAMQ_GGUF_VENV:-$HOME/.cache/streamq/gguf-venv}
py=$venv/bin/python
if ! "$py" -c 'import gguf, numpy' 2>/dev/null; then
  echo "gguf_check: installing gguf into $venv (test-only dependency)" >&2
  if ! { python3 -m venv "$venv" && timeout 600 "$venv/bin/pip" install -q gguf numpy; } >&2 ||
     ! "$py" -c 'import gguf, numpy' 2>/dev/null; then
    echo "SKIPPED: gguf_package: the gguf package could not be installed from the registry"
    exit 77
  fi
fi
echo "gguf $("$py" -c 'import importlib.metadata as m; print(m.version("gguf"))')"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
calib="$root/data/tokens/tinystories_calib_tokens.bin"
valid="$root/data/tokens/tinystories_valid_tokens.bin"
ppl() { "$bin" eval --model "$1" --data "$valid" --seqlen 64 --windows 8 --quiet | awk '/^ppl/ {print $2}'; }
n=0
# From the plain paper's settings, then the default preset on each grid
# (Q4_0: two-stage with act-order; Q4_1: min-max with act-order and static groups).
p="--preset gptq-paper"
for entry in "Q4_0|$p --method rtn" "Q4_0|$p --method gptq --act-order --static-groups" "Q8_0|$p --method gptq" \
             "Q4_1|$p --method gptq" "Q4_1|$p --method rtn --grid mse" "Q4_0|" "Q4_1|"; do
  type=${entry%%|*} flags=${entry#*|}
  q="$work/q$n"
  # shellcheck disable=SC2086
  "$bin" quantize --model "$root/data/stories260K" --out "$q" --calib "$calib" --nsamples 8 --seqlen 64 --seed 1 \
    --format gguf --gguf-type "$type" $flags --threads 2 --quiet || { echo "FAIL quantize: $entry" >&2; exit 1; }
  "$py" "$root/tests/export/gguf_check.py" --gguf "$q/model.gguf" --fakequant "$q" --type "$type" ||
    { echo "FAIL gguf-py reading: $entry" >&2; exit 1; }
  # streamq export of the same quantize output writes the same bytes.
  "$bin" export --from "$q" --out "$work/x.gguf" --format gguf --gguf-type "$type" --quiet
  cmp "$q/model.gguf" "$work/x.gguf" || { echo "FAIL export differs from quantize --format gguf: $entry" >&2; exit 1; }
  a=$(ppl "$q") b=$(ppl "$q/model.gguf")
  [ -n "$a" ] && [ "$a" = "$b" ] || { echo "FAIL eval: fake-quant ppl $a, gguf ppl $b: $entry" >&2; exit 1; }
  echo "ok: $type $flags (ppl $a)"
  rm -rf "$q" "$work/x.gguf"
  n=$((n + 1))
done
echo "gguf_check: $n GGUF exports read exactly by the gguf package"
