#!/usr/bin/env python3
"""Loads a streamq GPTQ export in HF transformers and compares its logits with streamq's.

The GPTQ dequantization is a plain-PyTorch loader written from docs/gptq-format.md
(not streamq's code, not a GPTQ kernel library): each packed dimension is one
little-endian bit stream, value j at stream bits [j*bits, (j+1)*bits), so 3-bit
values may straddle int32 words; W[o, i] = scales[g, o] * (code[i, o] - zero[g, o])
with g = g_idx[i] and zero = stored + 1 for checkpoint_format "gptq", stored for
"gptq_v2". The dequantized weights go into a stock `LlamaForCausalLM` built from
the checkpoint's config.json (its quantization_config removed, so transformers
does not look for a GPTQ kernel package), which then runs on the GPU when there
is one, else on the CPU.

    torch_gptq_check.py --gptq DIR --tokens FILE.bin --seqlen N --windows W \
        --streamq-logits FIRST_WINDOW.npy --streamq-ppl P [--device cuda|cpu]

Prints one line of figures and exits 1 when the logits or the perplexity differ
by more than float32 evaluation noise (see TOLERANCES below).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

# Both sides evaluate in float32 with different summation orders (streamq: tiled
# OpenBLAS + its own attention; torch: MKL/cuBLAS + SDPA). On stories260K the
# unquantized model already differs from the numpy float64 reference by < 1e-4
# (tests/model/test_model_forward.cpp), so logits agreeing to 1e-3 of their own scale
# and perplexities to 1e-4 relative leave room only for rounding, not for a
# misread code, zero or group (each of which moves logits by >= 1e-2 here).
LOGIT_REL_TOL = 1e-3
PPL_REL_TOL = 1e-4


def unpack_stream(words: torch.Tensor, bits: int, count: int, dim: int) -> torch.Tensor:
    """Values of a bit stream packed along `dim` of an int32 tensor, as int64."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    w = w.movedim(dim, 0)
    j = torch.arange(count, dtype=torch.int64)
    bit = j * bits
    word = bit // 32
    shift = (bit % 32).view(-1, *([1] * (w.dim() - 1)))
    lo = w[word] >> shift
    # The part of a value that spills into the next word (3-bit packing only).
    spill = (shift + bits - 32).clamp(min=0)
    nxt = torch.clamp(word + 1, max=w.shape[0] - 1)
    hi = torch.where(spill > 0, w[nxt] << (bits - spill), torch.zeros_like(lo))
    vals = (lo | hi) & ((1 << bits) - 1)
    return vals.movedim(0, dim)


def dequantize(prefix: str, t: dict, bits: int, v2: bool) -> torch.Tensor:
    qweight, qzeros = t[prefix + ".qweight"], t[prefix + ".qzeros"]
    scales, g_idx = t[prefix + ".scales"].to(torch.float64), t[prefix + ".g_idx"].to(torch.int64)
    n_in, n_out = g_idx.numel(), scales.shape[1]
    codes = unpack_stream(qweight, bits, n_in, 0)            # [in, out]
    zeros = unpack_stream(qzeros, bits, n_out, 1)            # [groups, out]
    if not v2:
        zeros = zeros + 1
    w = scales[g_idx] * (codes - zeros[g_idx]).to(torch.float64)  # [in, out]
    return w.t().contiguous()                                   # [out, in]


def load_gptq_state(d: str) -> tuple:
    cfg = json.load(open(os.path.join(d, "config.json")))
    qc = cfg.pop("quantization_config")
    assert qc["quant_method"] == "gptq", qc
    bits, v2 = qc["bits"], qc.get("checkpoint_format", "gptq") == "gptq_v2"
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    t = {}
    for f in files:
        t.update(load_file(os.path.join(d, f)))
    state, packed = {}, 0
    for name in sorted(t):
        if name.endswith(".qweight"):
            p = name[: -len(".qweight")]
            state[p + ".weight"] = dequantize(p, t, bits, v2).to(torch.float32)
            packed += 1
        elif not name.endswith((".qzeros", ".scales", ".g_idx")):
            state[name] = t[name].to(torch.float32)
    return cfg, state, packed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gptq", required=True)
    ap.add_argument("--tokens", required=True, help="little-endian token ids (see --tokens-dtype)")
    ap.add_argument("--tokens-dtype", default="uint16", choices=["uint16", "int32"])
    ap.add_argument("--seqlen", type=int, required=True)
    ap.add_argument("--windows", type=int, required=True)
    ap.add_argument("--streamq-logits", required=True, help="streamq eval --logits-out of the same export")
    ap.add_argument("--streamq-ppl", type=float, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()

    from transformers import LlamaConfig, LlamaForCausalLM

    cfg, state, packed = load_gptq_state(a.gptq)
    config = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "torch_dtype", "dtype")})
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).to(torch.float32)
    if config.tie_word_embeddings and "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "rotary_emb" not in m]
    if missing or unexpected:
        print(f"state dict mismatch: missing {missing[:5]} unexpected {unexpected[:5]}")
        return 1
    model.to(a.device).eval()

    ids = np.fromfile(a.tokens, dtype=np.uint16 if a.tokens_dtype == "uint16" else np.int32).astype(np.int64)
    windows = torch.from_numpy(ids[: a.windows * a.seqlen].reshape(a.windows, a.seqlen))
    nll, first = 0.0, None
    with torch.no_grad():
        for w in range(a.windows):
            x = windows[w : w + 1].to(a.device)
            logits = model(input_ids=x).logits[0].to(torch.float64).cpu()
            if first is None:
                first = logits
            lp = torch.log_softmax(logits[:-1], dim=-1)
            nll -= lp.gather(1, windows[w, 1:].view(-1, 1)).sum().item()
    ppl = math.exp(nll / (a.windows * (a.seqlen - 1)))
    ref = torch.from_numpy(np.load(a.streamq_logits)).to(torch.float64)
    diff = (first - ref).abs().max().item()
    scale = ref.abs().max().item()
    ppl_rel = abs(ppl / a.streamq_ppl - 1)
    ok = diff <= LOGIT_REL_TOL * scale and ppl_rel <= PPL_REL_TOL
    print(f"device {a.device} packed_linears {packed} max_abs_logit_diff {diff:.3e} logit_scale {scale:.3e} "
          f"torch_ppl {ppl:.6f} streamq_ppl {a.streamq_ppl:.6f} ppl_rel_diff {ppl_rel:.2e} {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
