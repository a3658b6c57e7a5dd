#!/usr/bin/env bash
# streamq beside its peers on the same cores (issue 16): whole-model GPTQ against llm-compressor 0.14
# `oneshot` with GPTQModifier, and perplexity against HF transformers, interleaved, ROUNDS rounds.
# Every tool runs on the same float32 SmolLM2-135M directory, the same token windows, 2 threads.
#  - The float32 directory is streamq's own GGUF converter's output (gguf_to_hf_dir, what quantize and
#    eval read when --model is a GGUF). No command writes it on purpose, so it is copied out of the
#    temporary directory a `streamq tokenize --model X.gguf` run keeps while it reads its text: the text
#    is a FIFO, opened by streamq only once the conversion is complete, and written after the copy.
#    That same run tokenizes the calibration text (WikiText-2 test lines 1001 on, as
#    bench/bench_group_inputs.sh).
#  - Calibration: streamq draws NSAMPLES x SEQLEN windows (seed 0) from those ids; bench/peers_torch.py
#    reproduces the draw (splitmix64, src/pipeline/tokens.cpp) for llm-compressor, and the script checks
#    the drawn tokens' xxh64 against the one streamq records in a --workdir manifest (an RTN job started
#    for that and stopped once the manifest is written; not timed).
#  - GPTQ w4 g64 asymmetric min-max, act-order with static groups, damping 0.01, 128-column blocks;
#    lm_head (tied to the embedding) not quantized on either side.
#  - Perplexity: the first WINDOWS non-overlapping 512-token windows of WikiText-2 test (streamq
#    tokenize ids), `streamq eval --data` against transformers fp32, sdpa, batch 1, labels = inputs.
#  - Wall time and peak RSS of each whole process from /usr/bin/time (model load and output writing
#    included on both sides). Before each run the script waits (up to LOAD_WAIT_S, default 600 s)
#    for the 1-minute load average to fall under LOAD_MAX (2.2), and says when it gave up.
# Prints one row per run, then per pair the medians and streamq / peer; after the rounds, the
# perplexity of both quantized models (not timed).
#   bench/peers.sh [build dir]        the binary is copied once to /tmp/peers-bin/streamq for all rounds
#   ROUNDS=3 NSAMPLES=32 SEQLEN=512 WINDOWS=16 LOAD_MAX=2.2 LOAD_WAIT_S=600 (cheap check:
#   ROUNDS=1 NSAMPLES=4 WINDOWS=2). PYTHON=/path/to/python with llmcompressor 0.14, torch,
#   transformers, datasets and xxhash; without it a venv is made in ~/.cache/streamq/peers-venv
#   from the package registry (bench-only; where that fails the script says what and exits 0, skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${ROUNDS:-3}
nsamples=${NSAMPLES:-32}
seqlen=${SEQLEN:-512}
windows=${WINDOWS:-16}
eval_seqlen=512
group=64
load_max=${LOAD_MAX:-2.2}
load_wait_s=${LOAD_WAIT_S:-600}
fixtures=../shared/fixtures/text
skip() { echo "peers: skipped: $*"; exit 0; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
free_gib() { df -Pk "$1" | awk 'NR == 2 {print int($4 / 1048576)}'; }

# The peers, bench-only, from the Python registry.
modules='import llmcompressor, compressed_tensors, torch, transformers, datasets, xxhash, numpy'
py=${PYTHON:-}
if [ -z "$py" ]; then
  venv=$HOME/.cache/streamq/peers-venv
  if ! "$venv/bin/python" -c "$modules" >/dev/null 2>&1; then
    mkdir -p "$(dirname "$venv")"
    [ "$(free_gib "$(dirname "$venv")")" -ge 12 ] ||
      skip "the peers' venv needs about 12 GiB free in $(dirname "$venv") (torch with its CUDA wheels), $(free_gib "$(dirname "$venv")") GiB there"
    echo "peers: installing llmcompressor==0.14.* (torch, transformers, datasets) into $venv" >&2
    log=$(mktemp)
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check "llmcompressor==0.14.*" xxhash; } >"$log" 2>&1; then
      skip "llmcompressor 0.14 could not be installed from the package registry: $(grep -v '^\s*$' "$log" | tail -1)"
    fi
    rm -f "$log"
  fi
  py=$venv/bin/python
fi
"$py" -c "$modules" >/dev/null 2>&1 || skip "$py cannot import llmcompressor, compressed_tensors, torch, transformers, datasets, xxhash and numpy"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ "$(free_gib "$work")" -ge 3 ] || skip "needs 3 GiB free in $work, $(free_gib "$work") GiB there"

# One binary for every round: the build dir's, copied once (waits for a build in progress).
waited=0
until [ -x "$build/streamq" ]; do
  [ "$waited" -lt "${BIN_WAIT_S:-1800}" ] || { echo "peers: $build/streamq did not appear in $waited s" >&2; exit 1; }
  echo "peers: waiting for $build/streamq" >&2
  sleep 60
  waited=$((waited + 60))
done
mkdir -p /tmp/peers-bin
cp "$build/streamq" /tmp/peers-bin/streamq.tmp.$$
mv -f /tmp/peers-bin/streamq.tmp.$$ /tmp/peers-bin/streamq
bin=/tmp/peers-bin/streamq

export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 THREADS=2 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1

gguf=$(scripts/fetch-smollm2.sh) || skip "SmolLM2-135M's GGUF could not be fetched"
model=$work/smollm2-f32
# The float32 directory and the calibration ids in one `streamq tokenize` (see the header).
fifo=$work/calib-fifo.txt
mkfifo "$fifo"
mkdir "$work/convert"
tail -n +1001 "$fixtures/wiki.test.raw" >"$work/calib.txt"
TMPDIR=$work/convert "$bin" tokenize --model "$gguf" --text "$fifo" --out "$work/calib.bin" >"$work/tokenize.log" 2>&1 &
tokenize_pid=$!
timeout 600 bash -c 'exec 3>"$1" && cp -a "$2"/.streamq-gguf-* "$3" && cat "$4" >&3' _ \
  "$fifo" "$work/convert" "$model" "$work/calib.txt" || { kill "$tokenize_pid" 2>/dev/null || true; }
wait "$tokenize_pid" || { cat "$work/tokenize.log" >&2; echo "peers: making the float32 directory failed" >&2; exit 1; }
"$bin" tokenize --model "$model" --text "$fixtures/wiki.test.raw" --out "$work/wiki.bin" >/dev/null
"$py" -c 'import json, sys; c = json.load(open(sys.argv[1])); assert c["torch_dtype"] == "float32", c' "$model/config.json"

# The peer's calibration windows: streamq's seed-0 draw, checked against streamq's own record of it.
drawn=$("$py" bench/peers_torch.py draw "$work/calib.bin" "$nsamples" "$seqlen" 0 "$work/windows.bin")
calib=(--calib "$work/calib.bin" --tokens-dtype int32 --nsamples "$nsamples" --seqlen "$seqlen" --seed 0)
"$bin" quantize --model "$model" --out "$work/check-out" --workdir "$work/check-wd" "${calib[@]}" \
  --preset gptq-paper --method rtn --threads 2 --quiet 2>/dev/null &
check_pid=$!
for _ in $(seq 1 240); do
  [ -s "$work/check-wd/manifest.json" ] && break
  sleep 0.5
done
kill "$check_pid" 2>/dev/null || true
wait "$check_pid" 2>/dev/null || true
streamq_hash=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["identity"]["calibration"]["tokens_xxh64"])' \
  "$work/check-wd/manifest.json")
[ "${drawn##* }" = "$streamq_hash" ] ||
  { echo "FAIL: the peer's windows ($drawn) are not streamq's draw (xxh64 $streamq_hash)" >&2; exit 1; }
rm -rf "$work/check-out" "$work/check-out".partial-* "$work/check-wd"

echo "peers: streamq $bin (copied from $build/streamq, built $(date -r "$build/streamq" '+%F %T'), sha256 $(sha256sum "$bin" | cut -c1-12)); tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' with uncommitted changes')"
echo "peers: $("$py" -c 'import llmcompressor, compressed_tensors, torch, transformers, sys; print(f"versions: llmcompressor {llmcompressor.__version__}, compressed-tensors {compressed_tensors.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, python {sys.version.split()[0]}")' 2>/dev/null | grep '^versions: ')"
echo "peers: SmolLM2-135M float32 directory from streamq's GGUF converter; calibration $nsamples x $seqlen tokens, the same bytes on both sides (xxh64 $streamq_hash); perplexity on $windows x $eval_seqlen WikiText-2 windows; 2 threads each"
echo "load average at start: $(loadavg)"

wait_quiet() {  # sets load_note: the load average before a run, and how long it waited
  local waited=0 l
  while :; do
    l=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$l" -v m="$load_max" 'BEGIN {exit !(l < m)}'; then
      load_note=$(loadavg)
      [ "$waited" -eq 0 ] || load_note="$load_note (waited $waited s)"
      return
    fi
    if [ "$waited" -ge "$load_wait_s" ]; then
      load_note="$(loadavg) (NOT QUIET: gave up waiting for load < $load_max after $waited s)"
      return
    fi
    sleep 10
    waited=$((waited + 10))
  done
}

rows=$work/rows.tsv
sq_out=$work/streamq-gptq
peer_out=$work/llmc-gptq
run() {  # round, work, tool, log file, command...: one timed run, one row
  local r=$1 what=$2 tool=$3 log=$4
  shift 4
  wait_quiet
  rm -rf "$sq_out" "$peer_out"
  /usr/bin/time -f '%e %M %U %S %R' -o "$work/time" "$@" >"$log" 2>&1 ||
    { tail -20 "$log" >&2; echo "FAIL: $tool $what (round $r)" >&2; exit 1; }
  local wall rss user sys minflt ppl="" note=""
  read -r wall rss user sys minflt <"$work/time"
  ppl=$(awk '/^ppl / {print $2}' "$log")
  if [ "$tool" = streamq ] && [ "$what" = gptq ]; then
    note=$("$py" bench/peers_summary.py report "$sq_out/streamq_report.json")
  elif [ "$tool" != streamq ]; then
    note=$(awk '/^peer_seconds/ {$1 = "in-process s:"; print}' "$log")
  fi
  note="${note:+$note; }user $user s, sys $sys s, $minflt minor faults"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$what" "$tool" "$wall" "$rss" "${ppl:--}" "$load_note" >>"$rows"
  printf '| %s | %s | %s | %s | %.0f | %s | %s | %s |\n' "$r" "$what" "$tool" "$wall" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" \
    "${ppl:-}" "$load_note" "$note"
}

echo
echo "| round | work | tool | wall s | peak RSS MiB | ppl | load before (1/5/15 min) | notes |"
echo "| ---: | --- | --- | ---: | ---: | ---: | --- | --- |"
for r in $(seq 1 "$rounds"); do
  run "$r" gptq streamq "$work/sq-gptq.log" "$bin" quantize --model "$model" --out "$sq_out" "${calib[@]}" \
    --preset gptq-paper --bits 4 --group "$group" --asym --act-order --static-groups --threads 2 --quiet
  [ "$r" = "$rounds" ] && mv "$sq_out" "$work/streamq-gptq-kept"
  run "$r" gptq llm-compressor "$work/llmc-gptq.log" "$py" bench/peers_torch.py gptq "$model" "$work/windows.bin" \
    "$seqlen" "$peer_out" "$group"
  [ "$r" = "$rounds" ] && mv "$peer_out" "$work/llmc-gptq-kept"
  run "$r" ppl streamq "$work/sq-ppl.log" "$bin" eval --model "$model" --data "$work/wiki.bin" --tokens-dtype int32 \
    --seqlen "$eval_seqlen" --windows "$windows" --threads 2 --quiet
  run "$r" ppl transformers "$work/hf-ppl.log" "$py" bench/peers_torch.py ppl "$model" "$work/wiki.bin" "$eval_seqlen" "$windows"
done
echo "load average at end of the rounds: $(loadavg)"
echo
"$py" bench/peers_summary.py table "$rows"

# Quality of the two GPTQ results (not timed): streamq's fake-quant output through both evaluators,
# llm-compressor's compressed-tensors checkpoint through transformers (streamq eval does not read it yet:
# it refuses the checkpoint's int64 weight_shape tensors).
echo
echo "perplexity of the quantized models (the last round's outputs; $windows x $eval_seqlen windows):"
ppl_of() { awk '/^ppl / {print $2}'; }
echo "  streamq GPTQ, streamq eval:         $("$bin" eval --model "$work/streamq-gptq-kept" --data "$work/wiki.bin" --tokens-dtype int32 --seqlen "$eval_seqlen" --windows "$windows" --threads 2 --quiet | ppl_of)"
echo "  streamq GPTQ, transformers:         $("$py" bench/peers_torch.py ppl "$work/streamq-gptq-kept" "$work/wiki.bin" "$eval_seqlen" "$windows" 2>/dev/null | ppl_of)"
echo "  llm-compressor GPTQ, transformers:  $("$py" bench/peers_torch.py ppl "$work/llmc-gptq-kept" "$work/wiki.bin" "$eval_seqlen" "$windows" 2>/dev/null | ppl_of)"
echo "load average at end: $(loadavg)"
