# Sourced by the results-table benches (bench/rotation_tables.sh,
# bench/learn_tables.sh) from the repository root, with $bin (the streamq
# binary), $which (stories260K|smollm2) and $work (a scratch folder) set.
# Sets model, calib and evalargs for $which; defines ppl and quantize_cell.
# The tables themselves are printed by bench/lib/tables.py.
if [ "$which" = smollm2 ]; then
  model=$(scripts/fetch-smollm2.sh)
  valid=../shared/fixtures/text/wiki.test.raw
  tail -n +1001 "$valid" > "$work/calib.txt"
  calib=(--calib-text "$work/calib.txt" --nsamples 32 --seqlen 512)
  evalargs=(--eval-text "$valid" --seqlen 512 --windows 16)
else
  model=data/stories260K
  calib=(--calib data/tokens/tinystories_calib_tokens.bin --nsamples 32 --seqlen 256)
  evalargs=(--data data/tokens/tinystories_valid_tokens.bin --seqlen 256 --windows 64)
fi

# ppl MODEL [eval flags...]: the perplexity line's value.
ppl() { "$bin" eval --model "$1" "${evalargs[@]}" --quiet "${@:2}" | awk '/^ppl/ {print $2}'; }

# quantize_cell SEED EVAL_FLAGS QUANTIZE_FLAGS...: quantizes $model
# (--preset gptq-paper, $calib, the seed) into $work/q and sets p to its
# perplexity under the eval flags (a string, split on spaces); where quantize
# fails, p is "failed:" and its first 80 bytes of stderr. Call it as a plain
# command, not in a condition, so that set -e still stops on a failing eval.
quantize_cell() {
  local seed=$1 eflags=$2
  shift 2
  rm -rf "$work/q"
  if "$bin" quantize --preset gptq-paper --model "$model" --out "$work/q" "${calib[@]}" --seed "$seed" \
      "$@" --quiet 2>"$work/err"; then
    # shellcheck disable=SC2086
    p=$(ppl "$work/q" $eflags)
  else
    p="failed:$(head -c 80 "$work/err" | tr '\t\n' '  ')"
  fi
}
