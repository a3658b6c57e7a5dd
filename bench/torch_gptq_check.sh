#!/usr/bin/env bash
# Loads streamq's GPTQ exports in HF transformers (a stock LlamaForCausalLM, the
# GPTQ dequantization done by bench/torch_gptq_check.py, a plain-PyTorch loader
# written from docs/gptq-format.md) and checks its logits and perplexity against
# `streamq eval` of the same export: stories260K at 2/3/4/8 bits, per-channel and
# g32, sym and asym, act-order, classic and gptq_v2 zero points, a --rotate hadamard
# model; SmolLM2-135M at 4 bits g64 (plain and rotated, its tied head untied) when
# its GGUF can be fetched. Runs on the GPU when torch sees one.
# Writes the table to stdout and bench/torch-gptq-check.md.
# usage: bench/torch_gptq_check.sh [build dir]   (TORCH_CHECK_ONLY=REGEX: those rows only, stdout only)
#   PYTHON=/path/to/python with torch, transformers, safetensors and numpy; without
#   it a venv is made in ~/.cache/streamq/torch-venv from the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build}")/streamq
py=${PYTHON:-}
if [ -z "$py" ]; then
  venv=$HOME/.cache/streamq/torch-venv
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, transformers, safetensors' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch transformers safetensors numpy >&2
  fi
  py=$venv/bin/python
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=data/stories260K
calib=data/tokens/tinystories_calib_tokens.bin
valid=data/tokens/tinystories_valid_tokens.bin
fail=0
run() {  # name, model, eval args (tokens file, dtype, seqlen, windows), quantize flags...
  local name=$1 m=$2 tokens=$3 dtype=$4 seqlen=$5 windows=$6
  shift 6
  [[ -z "${TORCH_CHECK_ONLY:-}" || $name =~ $TORCH_CHECK_ONLY ]] || return 0
  local q=$work/q g=$work/g
  rm -rf "$q" "$g"
  "$bin" quantize --preset gptq-paper --model "$m" --out "$q" "$@" --quiet
  "$bin" export --from "$q" --out "$g" --checkpoint-format "$fmt" --quiet
  local ppl
  ppl=$("$bin" eval --model "$g" --data "$tokens" --tokens-dtype "$dtype" --seqlen "$seqlen" --windows "$windows" \
    --logits-out "$work/logits.npy" --quiet | awk '/^ppl/ {print $2}')
  local line rc=0
  line=$("$py" bench/torch_gptq_check.py --gptq "$g" --tokens "$tokens" --tokens-dtype "$dtype" --seqlen "$seqlen" \
    --windows "$windows" --streamq-logits "$work/logits.npy" --streamq-ppl "$ppl" 2>&1 | tail -1) || rc=$?
  [ "$rc" -eq 0 ] || fail=1
  echo "| $name | $(echo "$line" | awk '{for (i = 1; i < NF; i += 2) v[$i] = $(i + 1); print v["device"] " | " v["packed_linears"] " | " v["max_abs_logit_diff"] " | " v["logit_scale"] " | " v["streamq_ppl"] " | " v["torch_ppl"] " | " v["ppl_rel_diff"]}') | $([ "$rc" -eq 0 ] && echo ok || echo "MISMATCH: $line") |"
}
{
  echo "| export | device | packed linears | max abs logit diff | logit scale | streamq ppl | transformers ppl | rel. diff | |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for bits in 2 3 4 8; do
    for group in -1 32; do
      for sym in --sym --asym; do
        fmt=gptq
        act=""
        if [ "$bits" = 4 ] || [ "$bits" = 3 ]; then act=--act-order; fi
        if [ "$sym" = --asym ] && [ "$group" = 32 ] && [ "$bits" = 4 ]; then fmt=gptq_v2; fi
        run "stories260K w$bits g$group ${sym#--} ${act:-no-act-order} $fmt" "$model" "$valid" uint16 256 8 \
          --calib "$calib" --nsamples 32 --seqlen 256 --seed 0 --bits "$bits" --group "$group" $sym $act \
          --method gptq --checkpoint-format "$fmt"
      done
    done
  done
  # A rotated model (quantize --rotate: norms folded to ones, every weight rotated) is a stock checkpoint.
  fmt=gptq_v2
  run "stories260K w4 g32 asym act-order gptq_v2 --rotate hadamard" "$model" "$valid" uint16 256 8 \
    --calib "$calib" --nsamples 32 --seqlen 256 --seed 0 --bits 4 --group 32 --asym --act-order \
    --method gptq --checkpoint-format "$fmt" --rotate hadamard
  if [[ -z "${TORCH_CHECK_ONLY:-}" || SmolLM2 =~ $TORCH_CHECK_ONLY ]] && smol=$(scripts/fetch-smollm2.sh 2>/dev/null); then
    # SmolLM2's evaluation tokens: WikiText-2 test through its own tokenizer.json (streamq's, checked
    # against HF tokenizers in the test suite), as int32 ids for both sides.
    "$bin" tokenize --model "$smol" --text ../shared/fixtures/text/wiki.test.raw --out "$work/wiki.bin" >/dev/null 2>&1
    fmt=gptq
    # g64: every SmolLM2 linear's input width (576, 1536) is a multiple of 64, not of 128.
    run "SmolLM2-135M w4 g64 asym act-order gptq" "$smol" "$work/wiki.bin" int32 512 2 \
      --calib-text ../shared/fixtures/text/tinystories_valid_head.txt --nsamples 16 --seqlen 512 --seed 0 \
      --bits 4 --group 64 --asym --act-order --method gptq --checkpoint-format gptq
    # Tied embeddings: the rotated head (final norm folded) is its own lm_head.weight, untied in config.json.
    run "SmolLM2-135M w4 g64 asym act-order gptq --rotate hadamard (tied head untied)" "$smol" "$work/wiki.bin" \
      int32 512 2 --calib-text ../shared/fixtures/text/tinystories_valid_head.txt --nsamples 16 --seqlen 512 \
      --seed 0 --bits 4 --group 64 --asym --act-order --method gptq --checkpoint-format gptq --rotate hadamard
  fi
} | tee "$([[ -n "${TORCH_CHECK_ONLY:-}" ]] && echo /dev/null || echo bench/torch-gptq-check.md)"
exit $fail
