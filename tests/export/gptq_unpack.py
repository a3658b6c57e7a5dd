#!/usr/bin/env python3
"""Independent reader of GPTQ checkpoints, for testing streamq export.

Parses safetensors with numpy alone (8-byte header length, JSON header, raw
little-endian data), unpacks qweight/qzeros by expanding every int32 word into
its 32 bits (a different route from streamq's accumulator loop), dequantizes
scale * (code - zero) with the checkpoint's zero convention (classic "gptq":
stored + 1; "gptq_v2": stored) as loaders do, and checks the result against
the fake-quant model streamq quantize wrote:

    gptq_unpack.py --gptq EXPORT_DIR --fakequant QUANTIZE_OUT_DIR

Exit 0 when every packed linear reconstructs the fake-quant weight bit for
bit (float32 models: fp16 scale times an integer of at most 9 bits is exact
in float64 and in float32, so no tolerance is needed) and every other tensor
is byte-identical; 1 with a message otherwise.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8}


def read_safetensors(path):
    """name -> (dtype string, shape, raw bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], data[base + a:base + b])
    return out


def read_model(d):
    index = os.path.join(d, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for f in files:
        for k, v in read_safetensors(os.path.join(d, f)).items():
            if k in tensors:
                raise SystemExit(f"{d}: tensor {k} appears twice")
            tensors[k] = v
    return tensors


def array(t):
    dtype, shape, raw = t
    return np.frombuffer(raw, dtype=DTYPES[dtype]).reshape(shape)


def to_f32(t):
    dtype = t[0]
    a = array(t)
    if dtype == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def unpack_bits(words, bits, n, axis):
    """Values of n `bits`-wide fields packed LSB-first along `axis` of an int32 array."""
    w = np.moveaxis(words.view(np.uint32), axis, -1)          # [..., nwords]
    shifts = np.arange(32, dtype=np.uint32)
    bitplane = (w[..., :, None] >> shifts) & 1                  # [..., nwords, 32]
    stream = bitplane.reshape(w.shape[:-1] + (w.shape[-1] * 32,))[..., :n * bits]
    fields = stream.reshape(w.shape[:-1] + (n, bits)).astype(np.int64)
    values = (fields << np.arange(bits, dtype=np.int64)).sum(axis=-1)
    return np.moveaxis(values, -1, axis)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gptq", required=True)
    ap.add_argument("--fakequant", required=True)
    args = ap.parse_args()
    qc = json.load(open(os.path.join(args.gptq, "config.json")))["quantization_config"]
    bits, group = qc["bits"], qc["group_size"]
    offset = 0 if qc.get("checkpoint_format", "gptq") == "gptq_v2" else 1
    g = read_model(args.gptq)
    fq = read_model(args.fakequant)
    prefixes = [k[:-len(".qweight")] for k in g if k.endswith(".qweight")]
    packed_parts = {p + s for p in prefixes for s in (".qweight", ".qzeros", ".scales", ".g_idx")}
    errors = []
    for p in prefixes:
        qweight = array(g[p + ".qweight"])
        out = qweight.shape[1]
        n_in = qweight.shape[0] * 32 // bits
        codes = unpack_bits(qweight, bits, n_in, axis=0)            # [in, out]
        qzeros = array(g[p + ".qzeros"])
        zeros = unpack_bits(qzeros, bits, out, axis=1) + offset     # [ngroups, out]
        scales = array(g[p + ".scales"]).astype(np.float64)         # fp16 -> exact float64
        g_idx = array(g[p + ".g_idx"]).astype(np.int64)
        if g[p + ".scales"][0] != "F16" or g[p + ".qweight"][0] != "I32":
            errors.append(f"{p}: scales must be F16 and qweight I32")
        ngroups = scales.shape[0]
        if group > 0 and ngroups != -(-n_in // group):
            errors.append(f"{p}: {ngroups} groups for in={n_in}, group_size={group}")
        w = (scales[g_idx, :] * (codes - zeros[g_idx, :])).T.astype(np.float32)  # [out, in]
        want = p + ".weight"
        if want not in fq:
            errors.append(f"{p}: no {want} in the fake-quant model")
            continue
        ref = to_f32(fq[want])
        if ref.shape != w.shape or not np.array_equal(ref.view(np.uint32), w.view(np.uint32)):
            bad = np.argwhere(ref != w)
            errors.append(f"{p}: reconstruction differs from {want} at {len(bad)} entries, first {bad[:1].tolist()}")
        if p + ".weight" in g:
            errors.append(f"{p}: both qweight and weight in the export")
    for k, t in g.items():
        if k in packed_parts:
            continue
        if k not in fq:
            errors.append(f"{k}: in the export but not in the fake-quant model")
        elif fq[k] != t:
            errors.append(f"{k}: differs from the fake-quant model's tensor")
    for k in fq:
        if k not in g and k[:-len(".weight")] not in prefixes:
            errors.append(f"{k}: missing from the export")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    print(f"ok: {len(prefixes)} packed linears, {len(g) - len(packed_parts)} other tensors, w{bits} "
          f"group {group} offset {offset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
