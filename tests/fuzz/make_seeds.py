#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets, tests/fuzz/corpus/<target>/seed-*,
from the fixtures and from small jobs run with the streamq binary:

    python3 tests/fuzz/make_seeds.py build/streamq

Seeds are small valid inputs (a few KB) so that mutation starts inside each
format; the fuzzer adds what it finds to its own working corpus, and inputs
that once crashed a parser are kept beside the seeds as crash-<what>
(scripts/fuzz.sh). Pure Python (no numpy): the formats are written here byte
by byte, independently of the C++ writers, except the files only streamq
writes (chunk files, workdir manifests, block files, GPTQ exports).
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures")
SEP = b"\n--streamq-fuzz-part--\n"  # fuzz_util.h kPartSeparator


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- safetensors ---------------------------------------------------------------
ST_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape)], data filled with a pattern."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        n = ST_SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        blobs.append(bytes((i * 37 + 11) % 251 for i in range(n)))
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors_seeds():
    put("fuzz_safetensors", "dtypes", safetensors(
        [("f32", "F32", [2, 3]), ("f16", "F16", [4]), ("bf16", "BF16", [2, 2]), ("f64", "F64", [1]),
         ("i32", "I32", [3]), ("u8", "U8", [5]), ("scalar", "F32", []), ("empty", "F16", [0, 4])],
        {"format": "pt"}))
    put("fuzz_safetensors", "one", safetensors([("w", "F32", [1])]))
    put("fuzz_safetensors", "empty", safetensors([]))
    idx = lambda wm: json.dumps({"metadata": {"total_size": 0}, "weight_map": wm}, indent=1)
    put("fuzz_safetensors_index", "two-shards", idx({"a.weight": "a.safetensors", "b.weight": "b.safetensors"}))
    put("fuzz_safetensors_index", "subdir", idx({"a.weight": "a.safetensors", "c.weight": "sub/c.safetensors"}))
    put("fuzz_safetensors_index", "dotdot", idx({"outside.secret": "../outside.safetensors"}))
    put("fuzz_safetensors_index", "symlink", idx({"outside.secret": "link.safetensors"}))
    put("fuzz_safetensors_index", "dot-segments", idx({"b.weight": "sub/../b.safetensors"}))
    put("fuzz_safetensors_index", "missing-tensor", idx({"z.weight": "a.safetensors"}))


# ---- npy -------------------------------------------------------------------------
def npy(descr, shape, fortran=False, version=1, data=None):
    shp = "(%s,)" % shape[0] if len(shape) == 1 else "(" + ", ".join(str(d) for d in shape) + ")"
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False", shp)
    lenb = 2 if version == 1 else 4
    pad = -(6 + 2 + lenb + len(h) + 1) % 64
    hb = (h + " " * pad + "\n").encode()
    n = 1
    for d in shape:
        n *= d
    size = {"<f4": 4, "<f8": 8, "<i4": 4, "|u1": 1}[descr]
    body = data if data is not None else bytes((i * 13 + 7) % 256 for i in range(n * size))
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<H" if version == 1 else "<I", len(hb)) + hb + body


def npy_seeds():
    put("fuzz_npy", "f32-2d", npy("<f4", [3, 4], data=struct.pack("<12f", *[i / 4 for i in range(12)])))
    put("fuzz_npy", "f64-1d", npy("<f8", [5], data=struct.pack("<5d", *[1.5 * i for i in range(5)])))
    put("fuzz_npy", "f64-fortran", npy("<f8", [2, 3], fortran=True, data=struct.pack("<6d", *range(6))))
    put("fuzz_npy", "i32-v2", npy("<i4", [2, 2], version=2))
    put("fuzz_npy", "u8-v3", npy("|u1", [7], version=3))
    put("fuzz_npy", "scalar", npy("<f4", [], data=struct.pack("<f", 1.0)))


# ---- gguf ------------------------------------------------------------------------
GT = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9,
      "u64": 10, "i64": 11, "f64": 12}
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q8_0": (8, 32, 34),
        "BF16": (30, 1, 2)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(kind, v):
    if kind == "str":
        return gstr(v)
    if kind.startswith("arr:"):
        ek = kind[4:]
        return struct.pack("<IQ", GT["arr"] if ek.startswith("arr:") else GT[ek], len(v)) + b"".join(
            gval(ek, x) for x in v)
    fmt = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f", "bool": "<?",
           "u64": "<Q", "i64": "<q", "f64": "<d"}[kind]
    return struct.pack(fmt, v)


def gguf(kvs, tensors, version=3, align=32, rng=None):
    """kvs: [(key, kind, value)]; tensors: [(name, ne, type name)]."""
    rng = rng or random.Random(0)
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, kind, v in kvs:
        out += gstr(key) + struct.pack("<I", GT["arr"] if kind.startswith("arr:") else GT[kind]) + gval(kind, v)
    blobs, off = [], 0
    for name, ne, tname in tensors:
        tid, block, nbytes = GGML[tname]
        n = 1
        for d in ne:
            n *= d
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", tid, off)
        if tname in ("F32",):
            data = struct.pack(f"<{n}f", *[rng.uniform(-1, 1) for _ in range(n)])
        elif tname in ("F16",):
            data = struct.pack(f"<{n}e", *[rng.uniform(-1, 1) for _ in range(n)])
        elif tname == "BF16":  # the high halves of f32 values
            data = b"".join(struct.pack("<f", rng.uniform(-1, 1))[2:] for _ in range(n))
        else:  # quantized blocks: small f16 scale (and Q4_1's min), random codes
            data = b""
            for _ in range(n // block):
                data += struct.pack("<e", 0.01) + (struct.pack("<e", -0.05) if tname == "Q4_1" else b"")
                data += bytes(rng.randrange(256) for _ in range(nbytes - (4 if tname == "Q4_1" else 2)))
        blobs.append(data + b"\0" * (-len(data) % align))
        off += len(blobs[-1])
    out += b"\0" * (-len(out) % align)
    return out + b"".join(blobs)


def tiny_llama(pre="smollm", tied=True, version=3, tokmodel="gpt2"):
    hidden, inter, heads, kv, layers = 32, 64, 2, 1, 1
    hd = hidden // heads
    toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    toks += ["\u0120", "ab", "\u0120a", "ba", "abc", "\u0120ab", "0", "1", "2", "\u00e9"]
    types = [3, 3, 3, 4] + [1] * (len(toks) - 4)
    kvs = [("general.architecture", "str", "llama"), ("general.name", "str", "tiny"),
           ("llama.embedding_length", "u32", hidden), ("llama.feed_forward_length", "u32", inter),
           ("llama.block_count", "u32", layers), ("llama.attention.head_count", "u32", heads),
           ("llama.attention.head_count_kv", "u32", kv), ("llama.context_length", "u32", 256),
           ("llama.rope.freq_base", "f32", 10000.0), ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
           ("llama.rope.dimension_count", "u32", hd), ("llama.vocab_size", "u32", len(toks)),
           ("tokenizer.ggml.model", "str", tokmodel), ("tokenizer.ggml.pre", "str", pre),
           ("tokenizer.ggml.tokens", "arr:str", toks), ("tokenizer.ggml.token_type", "arr:i32", types),
           ("tokenizer.ggml.merges", "arr:str", ["a b", "\u0120 a", "b a", "ab c", "\u0120 ab"]),
           ("tokenizer.ggml.bos_token_id", "u32", 1), ("tokenizer.ggml.eos_token_id", "u32", 2),
           ("tokenizer.ggml.add_bos_token", "bool", True),
           ("tokenizer.chat_template", "str", "{% for m in messages %}{{ m.content }}{% endfor %}")]
    if version == 3:
        kvs.append(("general.alignment", "u32", 32))
    t = [("token_embd.weight", [hidden, len(toks)], "F16")]
    for l in range(layers):
        g = f"blk.{l}."
        t += [(g + "attn_norm.weight", [hidden], "F32"), (g + "attn_q.weight", [hidden, heads * hd], "Q4_1"),
              (g + "attn_k.weight", [hidden, kv * hd], "F32"), (g + "attn_v.weight", [hidden, kv * hd], "Q8_0"),
              (g + "attn_output.weight", [heads * hd, hidden], "BF16"), (g + "ffn_norm.weight", [hidden], "F32"),
              (g + "ffn_gate.weight", [hidden, inter], "Q4_0"), (g + "ffn_up.weight", [hidden, inter], "F16"),
              (g + "ffn_down.weight", [inter, hidden], "Q4_1")]
    t.append(("output_norm.weight", [hidden], "F32"))
    if not tied:
        t.append(("output.weight", [hidden, len(toks)], "Q8_0"))
    return gguf(kvs, t, version=version)


def gguf_seeds():
    put("fuzz_gguf", "llama-smollm", tiny_llama())
    put("fuzz_gguf", "llama-gpt2-untied-v2", tiny_llama(pre="gpt2", tied=False, version=2))
    put("fuzz_gguf", "llama-llama3", tiny_llama(pre="llama-bpe"))
    put("fuzz_gguf", "llama-qwen2", tiny_llama(pre="qwen2"))
    put("fuzz_gguf", "llama-spm", tiny_llama(tokmodel="llama"))
    put("fuzz_gguf", "container-only", gguf(
        [("general.architecture", "str", "other"), ("u8", "u8", 7), ("i64", "i64", -3), ("f64", "f64", 0.5),
         ("nested", "arr:arr:u16", [[1, 2], [3]])], [("t", [32, 2], "Q8_0"), ("v", [3], "F32")]))


# ---- tokenizer.json --------------------------------------------------------------
TEXT = "Hello world! It's 2024: caf\u00e9 na\u00efve \u4f60\u597d <s> <|endoftext|>\n  tabs\tand   spaces 12345"


def shrink_tokenizer(j, keep_ids):
    m = j["model"]
    vocab = {t: i for t, i in m["vocab"].items() if i < keep_ids}
    merges = []
    for mg in m.get("merges", []):
        a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    return j


def tokenizer_seeds():
    tokdir = os.path.join(FIXTURES, "tokenizers")
    bases = {}
    for name in sorted(os.listdir(tokdir)):
        p = os.path.join(tokdir, name, "tokenizer.json")
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as f:
                bases[name] = json.load(f)
    for name, j in bases.items():
        j = shrink_tokenizer(json.loads(json.dumps(j)), 400)
        cfg = b""
        cp = os.path.join(tokdir, name, "tokenizer_config.json")
        if os.path.isfile(cp) and os.path.getsize(cp) < 4096:
            cfg = open(cp, "rb").read()
        put("fuzz_tokenizer", name, json.dumps(j, ensure_ascii=False).encode() + SEP + TEXT.encode() + SEP + cfg)
    vdir = os.path.join(ROOT, "tests", "data", "tokenizers", "variants")
    for fn in sorted(os.listdir(vdir)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(vdir, fn), encoding="utf-8") as f:
            v = json.load(f)
        j = json.loads(json.dumps(bases[v["base"]]))
        j.update(v.get("replace", {}))
        j["model"].update(v.get("model", {}))
        if v.get("merges_as_pairs"):
            j["model"]["merges"] = [m.split(" ", 1) if isinstance(m, str) else m for m in j["model"]["merges"]]
        j["added_tokens"] = j.get("added_tokens", []) + v.get("append_added_tokens", [])
        j = shrink_tokenizer(j, 400)
        text = (v.get("extra_texts") or [TEXT])[0]
        put("fuzz_tokenizer", "variant-" + fn[:-5], json.dumps(j, ensure_ascii=False).encode() + SEP + text.encode())


# ---- files only streamq writes: a tiny job, its workdir and exports ------------------
def streamq_seeds(streamq):
    tmp = tempfile.mkdtemp(prefix="streamq-seeds-")
    try:
        run = lambda *a: subprocess.run([streamq, *a], check=True, cwd=tmp, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        run("synth", "--out", "tiny", "--hidden", "32", "--intermediate", "64", "--layers", "1", "--heads", "1",
            "--kv-heads", "1", "--vocab", "16", "--dtype", "f16", "--quiet")
        rng = random.Random(0)
        with open(os.path.join(tmp, "calib.bin"), "wb") as f:
            f.write(struct.pack("<256H", *[rng.randrange(16) for _ in range(256)]))
        for tag, flags in [("w4g32", ["--bits", "4", "--group", "32"]),
                           ("w3-act-order-asym", ["--bits", "3", "--group", "-1", "--act-order", "--asym"]),
                           ("w8g32-v2", ["--bits", "8", "--group", "32", "--checkpoint-format", "gptq_v2"]),
                           ("w2g32", ["--bits", "2", "--group", "32"])]:
            fmt = ["--checkpoint-format", "gptq_v2"] if "v2" in tag else []
            run("quantize", "--model", "tiny", "--out", "q-" + tag, "--calib", "calib.bin", "--nsamples", "2",
                "--seqlen", "8", "--workdir", "wd-" + tag, "--quiet", *flags)
            run("export", "--from", "q-" + tag, "--out", "g-" + tag, "--quiet", *fmt)
            g = lambda f: open(os.path.join(tmp, "g-" + tag, f), "rb").read()
            put("fuzz_gptq_import", tag, g("config.json") + SEP + g("model.safetensors"))
            wd = os.path.join(tmp, "wd-" + tag)
            manifest = open(os.path.join(wd, "manifest.json"), "rb").read()
            block = open(os.path.join(wd, "blocks", "block-00000.safetensors"), "rb").read()
            put("fuzz_workdir", tag, manifest + SEP + block)
            quant = json.loads(manifest)["identity"]["method"]["quant"]
            put("fuzz_quant_config", tag, json.dumps(quant, indent=1))
            acts = os.path.join(wd, "acts")
            for fn in sorted(os.listdir(acts)):
                put("fuzz_chunk", tag + "-" + fn, open(os.path.join(acts, fn), "rb").read())
        put("fuzz_workdir", "manifest-only", manifest)
        put("fuzz_safetensors", "gptq-export", g("model.safetensors"))
    finally:
        shutil.rmtree(tmp)


# ---- dictionaries: the formats' keywords, taken from the parsers' own string
# literals (so a new key is in the next regeneration) plus format tokens ------
JSON_TOKENS = ["{", "}", "[", "]", ":", ",", '""', "null", "true", "false", "0", "-1", "1e308", "4294967296",
               "18446744073709551616", "\\u0000", "\\ud800"]
DICTS = {  # name: (parser sources, extra entries: str as UTF-8, bytes as they are)
    "safetensors": (["io/formats/safetensors.cpp", "src/core/dtype.cpp"], JSON_TOKENS + list(ST_SIZES)),
    "safetensors_index": (["io/formats/safetensors.cpp"], JSON_TOKENS + [
        "weight_map", "a.safetensors", "b.safetensors", "sub/c.safetensors", "link.safetensors",
        "../outside.safetensors", "outside.secret", "a.weight", "b.weight", "c.weight", "/", "..", "./", "//"]),
    "npy": (["io/formats/npy.cpp"], [b"\x93NUMPY", b"\x01\x00", b"\x02\x00", b"\x03\x00", "'descr'",
                                      "'fortran_order'", "'shape'", "True", "False", "'<f4'", "'<f8'", "'<i4'",
                                      "'|u1'", "(", ")", ",", "}"]),
    "gguf": (["io/formats/gguf_file.cpp", "io/formats/gguf_value.cpp", "io/formats/gguf_llama.cpp",
              "io/formats/gguf_tokenizer.cpp"], [b"GGUF", b"\x03\x00\x00\x00", b"\x02\x00\x00\x00",
                                                 b"\x08\x00\x00\x00", b"\x09\x00\x00\x00"]),
    "tokenizer": (["src/tokenizer/" + f for f in sorted(os.listdir(os.path.join(ROOT, "src", "tokenizer")))
                   if f.endswith(".cpp")], JSON_TOKENS + [SEP, "\\p{L}", "\\s+", "(?i:", "(?!\\S)", "\u0120",
                                                          "\u2581", "<0x0A>", "<s>", "</s>"]),
    "quant_config": (["src/methods/quant_config_json.cpp", "src/methods/quant_config.cpp"], JSON_TOKENS),
    "workdir": (["src/job/workdir.cpp", "src/job/block_files.cpp"], JSON_TOKENS + [SEP, "blocks/",
                                                                                  "block-00000.safetensors"]),
    "gptq_import": (["src/export/gptq_import.cpp", "io/formats/gptq_pack.cpp"], JSON_TOKENS + [
        SEP, "qweight", "qzeros", "scales", "g_idx", ".weight", "I32", "F16", "float16", "bfloat16", "gptq_v2",
        "quantization_config", "group_size", "bits", "checkpoint_format"]),
    "chunk": (["io/store/chunk_header.cpp"], [b"SQACTZST", b"\x28\xb5\x2f\xfd", b"\x00\x10\x00\x00",
                                               b"\x01\x00\x00\x00", b"\x02\x00\x00\x00"]),
}


def dict_entry(word):
    """One libFuzzer dictionary line: printable ASCII as is, other bytes as \\xNN."""
    raw = word if isinstance(word, bytes) else word.encode()
    return '"' + "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else "\\x%02x" % c for c in raw) + '"'


def dictionaries():
    import re
    os.makedirs(os.path.join(ROOT, "tests", "fuzz", "dict"), exist_ok=True)
    for name, (sources, extra) in DICTS.items():
        words = set()
        for src in sources:
            with open(os.path.join(ROOT, src), encoding="utf-8") as f:
                words |= set(re.findall(r'"([A-Za-z_][A-Za-z0-9_.-]{1,40})"', f.read()))
        lines = dict.fromkeys([dict_entry(w) for w in sorted(words)] + [dict_entry(w) for w in extra])
        with open(os.path.join(ROOT, "tests", "fuzz", "dict", name + ".dict"), "w") as f:
            f.write("# generated by tests/fuzz/make_seeds.py from the string literals of %s\n" % ", ".join(sources))
            f.write("\n".join(lines) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dictionaries()
    safetensors_seeds()
    npy_seeds()
    gguf_seeds()
    tokenizer_seeds()
    streamq_seeds(os.path.abspath(sys.argv[1]))


if __name__ == "__main__":
    main()
