#!/usr/bin/env python3
# The peers' side of bench/peers.sh, run with the bench venv's python:
#   draw  STREAM.bin NSAMPLES SEQLEN SEED OUT.bin   streamq's calibration draw (src/pipeline/tokens.cpp
#         sample_windows: splitmix64, rejection-sampled starts) reproduced on the same int32 id stream;
#         prints the drawn tokens' xxh64, the hash streamq's --workdir manifest records
#   gptq  MODEL WINDOWS.bin SEQLEN OUT GROUP        llm-compressor oneshot GPTQModifier on those windows
#   ppl   MODEL TOKENS.bin SEQLEN WINDOWS           transformers perplexity (fp32, sdpa, batch 1)
# Ids are little-endian int32 files without header (what `streamq tokenize` writes).
# Threads: torch.set_num_threads(THREADS env, default 2); OMP/MKL_NUM_THREADS come from the caller.
import os
import sys
import time

MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def draw_below(state, n):
    # streamq's draw_below: rejection keeps the draw exactly uniform.
    limit = MASK - MASK % n
    while True:
        state, r = splitmix64(state)
        if r < limit:
            return state, r % n


def read_ids(path):
    import numpy as np
    return np.fromfile(path, dtype="<i4")


def cmd_draw(stream_path, nsamples, seqlen, seed, out_path):
    import numpy as np
    import xxhash
    stream = read_ids(stream_path)
    nsamples, seqlen, state = int(nsamples), int(seqlen), int(seed)
    starts = len(stream) - seqlen + 1
    rows = []
    for _ in range(nsamples):
        state, start = draw_below(state, starts)
        rows.append(stream[start:start + seqlen])
    windows = np.stack(rows).astype("<i4")
    windows.tofile(out_path)
    print(f"drawn {nsamples} x {seqlen} xxh64 {xxhash.xxh64(windows.tobytes(), seed=0).hexdigest()}")


def set_threads():
    import torch
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    return torch


def cmd_gptq(model_dir, windows_path, seqlen, out_dir, group):
    t0 = time.time()
    torch = set_threads()
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier
    from transformers import AutoModelForCausalLM
    seqlen = int(seqlen)
    windows = read_ids(windows_path).reshape(-1, seqlen)
    t_import = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    t_load = time.time()
    ids = [w.tolist() for w in windows]
    data = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * seqlen for _ in ids]})
    # streamq's --preset gptq-paper --bits 4 --group G --asym --act-order --static-groups: min-max
    # asymmetric grid per group, columns by descending diag(H) with groups fixed up front in column
    # order (compressed-tensors' actorder "static" = "weight"), damping 0.01, 128-column blocks.
    weights = QuantizationArgs(num_bits=4, type="int", symmetric=False, strategy="group",
                               group_size=int(group), actorder="static")
    recipe = GPTQModifier(config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)},
                          ignore=["lm_head"], block_size=128, dampening_frac=0.01)
    oneshot(model=model, dataset=data, recipe=recipe, num_calibration_samples=len(ids), max_seq_length=seqlen,
            shuffle_calibration_samples=False, batch_size=1)
    t_oneshot = time.time()
    model.save_pretrained(out_dir, save_compressed=True)
    t_save = time.time()
    print(f"peer_seconds import {t_import - t0:.1f} load {t_load - t_import:.1f} oneshot {t_oneshot - t_load:.1f} "
          f"save {t_save - t_oneshot:.1f}")


def cmd_ppl(model_dir, tokens_path, seqlen, nwindows):
    t0 = time.time()
    torch = set_threads()
    from transformers import AutoModelForCausalLM
    seqlen, nwindows = int(seqlen), int(nwindows)
    # streamq eval's windows: the first N non-overlapping seqlen windows, each from position 0.
    windows = torch.from_numpy(read_ids(tokens_path)[:nwindows * seqlen].astype("int64")).reshape(nwindows, seqlen)
    t_import = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    t_load = time.time()
    total = 0.0
    with torch.inference_mode():
        for w in windows:
            ids = w.unsqueeze(0)
            # Mean next-token loss over seqlen - 1 predictions, as streamq's sum_nll / (seqlen - 1).
            total += model(input_ids=ids, labels=ids).loss.double().item() * (seqlen - 1)
    t_eval = time.time()
    mean_nll = total / (nwindows * (seqlen - 1))
    print(f"peer_seconds import {t_import - t0:.1f} load {t_load - t_import:.1f} eval {t_eval - t_load:.1f}")
    print(f"ppl {torch.tensor(mean_nll, dtype=torch.float64).exp().item():.6f}")


if __name__ == "__main__":
    commands = {"draw": cmd_draw, "gptq": cmd_gptq, "ppl": cmd_ppl}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} draw|gptq|ppl ARGS (see the header)")
    commands[sys.argv[1]](*sys.argv[2:])
