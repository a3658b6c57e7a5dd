#!/usr/bin/env python3
"""Writes tests/data/gguf/smollm2_golden.safetensors: reference values for the
C++ GGUF reader, produced by an independent implementation (llama.cpp's own
`gguf` Python package: GGUFReader + gguf.quants.dequantize) from the real
SmolLM2-135M-Instruct.Q4_1.gguf. Not run in CI; rerun by hand:

    python3 -m venv /tmp/v && /tmp/v/bin/pip install gguf numpy
    /tmp/v/bin/python tools/make_gguf_fixture.py "$(scripts/fetch-smollm2.sh)"

Contents (format_version 1), all float32 unless noted:
  gguf.<gguf name>        [k, ne0]  rows of the dequantized tensor in GGUF order
  gguf.<gguf name>.rows   [k] int32 which rows (of the [ne1, ne0] matrix)
  hf.<hf name>            [k, in]   rows of the HF-layout q/k projection, the
                                    RoPE permutation undone here by numpy
  hf.<hf name>.rows       [k] int32 which HF rows
__metadata__ names the source file, its sha256 and the gguf package version.
"""
import hashlib
import importlib.metadata
import json
import os
import struct
import sys

import gguf
import numpy as np

# Rows chosen to cover both ends of each tensor and, for q/k, both halves of
# the first and last heads (head_dim 64: rows 31/32 straddle a half boundary).
GGUF_ROWS = {
    "token_embd.weight": [0, 1, 2, 1000, 49151],                  # Q8_0
    "blk.0.attn_q.weight": [0, 1, 2, 575],                       # Q4_1
    "blk.0.ffn_down.weight": [0, 287, 575],                      # Q4_1, ne0 = 1536
    "blk.29.ffn_up.weight": [0, 1535],                           # Q4_1, last layer
    "blk.0.attn_norm.weight": [0],                               # F32 vector
    "output_norm.weight": [0],                                   # F32 vector
}
HF_ROWS = {
    # (gguf name, hf name, heads): heads is n_head for q, n_head_kv for k
    ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", 9):
        [0, 1, 31, 32, 33, 63, 64, 95, 96, 543, 575],
    ("blk.7.attn_k.weight", "model.layers.7.self_attn.k_proj.weight", 3):
        [0, 1, 31, 32, 63, 64, 127, 128, 160, 191],
}


def hf_from_gguf(w, n_head):
    """Inverse of convert_hf_to_gguf.py LlamaModel.permute:
    gguf = hf.reshape(n_head, 2, r // n_head // 2, c).swapaxes(1, 2).reshape(r, c)."""
    r, c = w.shape
    return w.reshape(n_head, r // n_head // 2, 2, c).swapaxes(1, 2).reshape(r, c)


def main():
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "data", "gguf", "smollm2_golden.safetensors")
    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}

    def dequant(name):
        t = by_name[name]
        d = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        return d.reshape(-1, int(t.shape[0]))  # t.shape is ne: ne[0] is the row length

    tensors = {}
    for name, rows in GGUF_ROWS.items():
        d = dequant(name)
        tensors["gguf." + name] = d[rows]
        tensors["gguf." + name + ".rows"] = np.array(rows, dtype=np.int32)
    for (name, hf, heads), rows in HF_ROWS.items():
        d = hf_from_gguf(dequant(name), heads)
        tensors["hf." + hf] = d[rows]
        tensors["hf." + hf + ".rows"] = np.array(rows, dtype=np.int32)

    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    meta = {"format_version": "1", "source": os.path.basename(path), "source_sha256": sha,
            "generator": "tools/make_gguf_fixture.py", "gguf_py_version": importlib.metadata.version("gguf")}
    write_safetensors(out, tensors, meta)
    print(f"wrote {out}: {len(tensors)} tensors, {os.path.getsize(out)} bytes")


def write_safetensors(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


if __name__ == "__main__":
    main()
