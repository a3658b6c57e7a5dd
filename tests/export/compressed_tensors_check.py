"""Independent check of a streamq compressed-tensors export with the
`compressed-tensors` package itself: the config validates as the package's
QuantizationConfig, the package's PackedQuantizationCompressor decompresses
every packed linear on the CPU to exactly the fake-quant weight of the
quantize output, dense tensors are copied byte for byte, and `ignore` names
exactly the linears left dense (plus lm_head).

usage: compressed_tensors_check.py --ct DIR --fakequant QUANT_DIR
"""
import argparse
import copy
import json
import os
import sys

import torch
from safetensors import safe_open
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
from compressed_tensors.quantization import QuantizationConfig


def tensors(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for f in files:
        with safe_open(os.path.join(d, f), framework="pt") as h:
            for k in h.keys():
                out[k] = h.get_tensor(k)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ct", required=True)
    ap.add_argument("--fakequant", required=True)
    a = ap.parse_args()
    qc = json.load(open(os.path.join(a.ct, "config.json")))["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized", qc
    assert qc["quantization_status"] == "compressed"
    group = qc["config_groups"]["group_0"]
    actorder_group = group["weights"].get("actorder") == "group"
    # Current releases refuse actorder "group" (removed 2026-08); validate the
    # rest of the config as the package parses it, and apply g_idx below as
    # the older decompressor and vLLM do.
    qc_valid = copy.deepcopy(qc)
    if actorder_group:
        qc_valid["config_groups"]["group_0"]["weights"]["actorder"] = None
    config = QuantizationConfig.model_validate(qc_valid)
    scheme = config.config_groups["group_0"]
    compressor = BaseCompressor.get_value_from_registry(config.format)

    ct = tensors(a.ct)
    fq = tensors(a.fakequant)
    packed = sorted(k[: -len(".weight_packed")] for k in ct if k.endswith(".weight_packed"))
    assert packed, "no packed linears"
    params = ("weight_packed", "weight_scale", "weight_shape", "weight_zero_point", "weight_g_idx")
    for m in packed:
        sd = {p: ct[m + "." + p] for p in params if m + "." + p in ct}
        g_idx = sd.pop("weight_g_idx", None)
        assert (g_idx is not None) == actorder_group, m
        want = fq[m + ".weight"]
        if g_idx is None:
            got = compressor.decompress(sd, scheme)["weight"]
        else:
            # The package's unpacker, then scale[o, g_idx[i]] * (q - zp[o, g_idx[i]]).
            w = scheme.weights
            shape = torch.Size(sd["weight_shape"].tolist())
            q = unpack_from_int32(sd["weight_packed"], w.num_bits, shape).to(torch.float32)
            scale = sd["weight_scale"]
            zp = torch.zeros_like(scale, dtype=torch.float32)
            if not w.symmetric:
                zp = unpack_from_int32(sd["weight_zero_point"], w.num_bits, (shape[0], scale.shape[1]), packed_dim=0).to(torch.float32)
            gi = g_idx.long()
            got = ((q - zp[:, gi]) * scale.to(torch.float32)[:, gi]).to(scale.dtype)
        got = got.to(want.dtype)
        if got.shape != want.shape or not torch.equal(got, want):
            diff = (got.float() - want.float()).abs().max().item() if got.shape == want.shape else "shape"
            sys.exit(f"MISMATCH {m}: decompressed weight differs from the fake-quant weight (max abs diff {diff})")
    dense_linears = sorted(k[: -len(".weight")] for k in ct
                           if k.endswith("_proj.weight") and ct[k].ndim == 2)
    for k, v in ct.items():
        if any(k.endswith("." + p) for p in params):
            continue
        if not torch.equal(v, fq[k]):
            sys.exit(f"MISMATCH dense tensor {k}")
    ignore = set(qc["ignore"])
    assert "lm_head" in ignore
    for m in packed:
        assert m not in ignore, f"{m} is packed but ignored"
    for m in dense_linears:
        assert m in ignore, f"{m} is dense but not in ignore"
    assert ignore == set(dense_linears) | {"lm_head"}, ignore ^ (set(dense_linears) | {"lm_head"})
    print(f"ok: {len(packed)} packed linears decompressed exactly, {len(dense_linears)} dense linears ignored")


if __name__ == "__main__":
    main()
