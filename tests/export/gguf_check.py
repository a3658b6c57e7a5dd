"""Independent check of a streamq GGUF export with the `gguf` package (gguf-py,
llama.cpp's own Python reader): the file parses, its llama metadata agrees
with the quantize output's config.json, every tensor dequantized by
gguf.quants.dequantize (numpy ports of ggml's dequantize_row_*) and with
llama.cpp's q/k row permutation undone equals the fake-quant tensor of the
quantize output exactly, and the linears are in the expected block type.

usage: gguf_check.py --gguf FILE --fakequant QUANT_DIR --type Q4_0|Q4_1|Q8_0
"""
import argparse
import json
import os
import sys

import numpy as np
import gguf


def load_safetensors(d):
    """A minimal safetensors reader (F32/F16/BF16), independent of streamq."""
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for f in files:
        raw = open(os.path.join(d, f), "rb").read()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            buf = raw[base + a:base + b]
            dt = info["dtype"]
            if dt == "F32":
                v = np.frombuffer(buf, dtype="<f4")
            elif dt == "F16":
                v = np.frombuffer(buf, dtype="<f2").astype(np.float32)
            elif dt == "BF16":
                v = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                continue
            out[name] = v.reshape(info["shape"])
    return out


def unpermute(w, heads):
    """llama.cpp stores q/k as w.reshape(heads, 2, hd/2, ...).swapaxes(1, 2); undo it."""
    rows = w.shape[0]
    hd = rows // heads
    return w.reshape(heads, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--fakequant", required=True)
    ap.add_argument("--type", required=True, choices=["Q4_0", "Q4_1", "Q8_0"])
    a = ap.parse_args()
    r = gguf.GGUFReader(a.gguf)
    cfg = json.load(open(os.path.join(a.fakequant, "config.json")))

    def field(key):
        f = r.get_field(key)
        assert f is not None, f"missing metadata {key}"
        return f.contents()

    assert field("general.architecture") == "llama"
    assert field("llama.embedding_length") == cfg["hidden_size"]
    assert field("llama.block_count") == cfg["num_hidden_layers"]
    assert field("llama.feed_forward_length") == cfg["intermediate_size"]
    heads = field("llama.attention.head_count")
    kv_heads = field("llama.attention.head_count_kv")
    assert heads == cfg["num_attention_heads"]
    assert kv_heads == cfg.get("num_key_value_heads", heads)
    assert abs(field("llama.attention.layer_norm_rms_epsilon") - cfg["rms_norm_eps"]) <= 1e-6 * cfg["rms_norm_eps"]
    qtype = getattr(gguf.GGMLQuantizationType, a.type)
    assert field("general.file_type") == {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7}[a.type]

    fq = load_safetensors(a.fakequant)
    roles = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    seen = set()
    quantized = 0
    for t in r.tensors:
        name = t.name
        if name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            hf = "model.norm.weight"
        elif name == "output.weight":
            hf = "lm_head.weight"
        else:
            _, layer, role, kind = name.split(".")
            hf = f"model.layers.{layer}.{roles[role]}.{kind}"
        want = fq[hf]
        rows_first = tuple(int(x) for x in reversed(t.shape))  # ggml ne reversed = HF shape
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(rows_first).astype(np.float32)
        if ".attn_q." in name:
            w = unpermute(w, heads)
        elif ".attn_k." in name:
            w = unpermute(w, kv_heads)
        if t.tensor_type == qtype:
            quantized += 1
        elif name.endswith("_proj") or any(k in name for k in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")):
            # a linear left dense must have inputs that do not split into 32-wide blocks
            assert want.shape[1] % 32 != 0, f"{name} is {t.tensor_type.name}, expected {a.type}"
        if w.shape != want.shape or not np.array_equal(w, want.astype(np.float32)):
            diff = np.abs(w - want).max() if w.shape == want.shape else "shape"
            sys.exit(f"MISMATCH {name} ({t.tensor_type.name}) vs {hf}: max abs diff {diff}")
        seen.add(hf)
    missing = set(fq) - seen
    assert not missing, f"tensors not in the GGUF: {sorted(missing)[:5]}"
    assert quantized > 0, "no tensor in the block type"
    print(f"ok: {len(seen)} tensors equal the fake-quant model, {quantized} in {a.type}")


if __name__ == "__main__":
    main()
