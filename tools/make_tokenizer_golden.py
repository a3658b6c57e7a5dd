#!/usr/bin/env python3
"""Writes tests/data/tokenizers/<name>.golden.jsonl.zst: reference token ids for
streamq's C++ tokenizer tests, produced by Hugging Face's own `tokenizers`
library (pip install tokenizers zstandard). Not run in CI; rerun by hand when
the fixtures or the line selection change:

    python3 tools/make_tokenizer_golden.py            # everything
    python3 tools/make_tokenizer_golden.py --only qwen2-nfc nfkc-llama   # just these variants

For each of the four tokenizers in ../shared/fixtures/tokenizers/ it encodes
(add_special_tokens=False, matching streamq's encode(text, false)):
  * lines of ../shared/fixtures/text/wiki.test.raw and tinystories_valid_head.txt,
    each with its trailing "\n", referenced by 0-based line index (the text is
    not copied here);
  * hand-written edge cases and seeded random strings over a pool of awkward
    characters (emoji, ZWJ, CJK, accents, combining marks, NBSP, digit and
    whitespace runs, tabs, CR LF, control characters, special-token text),
    stored verbatim.

It also writes tests/data/tokenizers/variants/<variant>.golden.jsonl.zst for
each variant patch there (<variant>.json: a fixture's tokenizer.json with some
components replaced, to cover Llama-3-style Split regexes, ignore_merges,
[left, right] merges, added-token flags, Metaspace splitting, unk fusing and
the other split behaviours the four files do not use, and the NFC/NFD/NFKC/
NFKD/Lowercase normalizers). The C++ test applies the same patch; see
apply_variant() for its keys. A variant with "normalizer_cases": true also gets
NORMALIZER_CASES and seeded random strings over NORMALIZER_POOL.

File format: zstd-compressed JSON lines. Line 1 is a header
{"tokenizer", "generator", "add_special_tokens", "sources": {file: sha256}};
every other line is {"src": file, "line": i, "ids": [...]} or
{"text": "...", "ids": [...]}, plus "decoded": "..." when the reference's
decode(ids) differs from the text (otherwise decode must give the text back).
"""
import argparse
import hashlib
import json
import os
import random
import sys

import tokenizers
import zstandard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures")
OUT_DIR = os.path.join(ROOT, "tests", "data", "tokenizers")
NAMES = ["gpt2", "mistral-7b-v0.1", "smollm2-135m-instruct", "tinyllama-1.1b-chat-v1.0"]
# Which lines of the real text files to use: (file, first line, line count).
SOURCES = [("wiki.test.raw", 0, 2000), ("tinystories_valid_head.txt", 0, 2000)]
RANDOM_STRINGS = 400
SEED = 20240606

EDGE_CASES = [
    "", " ", "  ", "\n", "\r\n", "\t", " \t \n ", "a", " a", "a ", "  a  b   c    ",
    "Hello, world!", "  leading two", "\tleading tab", "trailing tab\t", "line\r\nwindows\r\n",
    "\r\r\n\n\r", "mixed \t\n\r\n whitespace \u00a0 run", "x" + " " * 40 + "y", "\n" * 12,
    "0", "12", "123", "1234", "12345678901234567890", "3.14159 2.71828 -1e-10 +42",
    "1,000,000 and 10 000 and 1_000", "phone 555-0123 ext. 42", "v1.2.3-rc4",
    "caf\u00e9 r\u00e9sum\u00e9 na\u00efve \u00fcber Stra\u00dfe \u00e5ngstr\u00f6m",
    "cafe\u0301 (combining acute) n\u0303", "\u00c0\u00c9\u00ce\u00d5\u00dc \u0141\u00f3d\u017a",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002", "\u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5\uff0c\u6807\u70b9\u3002",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u05e2\u05d1\u05e8\u05d9\u05ea", "\u0939\u093f\u0928\u094d\u0926\u0940",
    "\u0e44\u0e17\u0e22", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "emoji \U0001F917\U0001F680\U0001F389", "\U0001F468\u200d\U0001F469\u200d\U0001F467 family",
    "\U0001F44D\U0001F3FD skin tone", "flags \U0001F1FA\U0001F1F8\U0001F1EF\U0001F1F5", "\u2764\ufe0f",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom", "soft\u00adhyphen", "\u2009thin\u2002en\u202fnarrow",
    "control \x01\x02\x07\x08\x0b\x0c\x1b\x7f chars", "\u0092\u0085 c1",
    "don't I'M we'll they've CAN'T she'd you're", "'s 't 're 've 'm 'll 'd",
    "punctuation!!! ...??? (a+b)*c = {x: [1, 2]};", "\u201cquotes\u201d \u2018single\u2019 \u00abguillemets\u00bb",
    "em\u2014dash en\u2013dash \u2026 ellipsis", "#hashtag @mention $100 50% a&b <tag>",
    "<s>", "</s>", "<unk>", "<s>[INST] hi [/INST]", "<|endoftext|>", "text<|endoftext|>text",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|><|im_end|><|im_start|>", " <s> spaced </s> ", "<s<s>>", "<|endoftext|",
    "\u2581already\u2581metaspace \u2581", "\u2581", "\u0120G\u0120", "<0x41> literal byte token text",
    "def f(x):\n    return x ** 2  # comment\n", "int main() {\n\treturn 0;\n}\n",
    "https://example.com/path?q=1&r=2#frag", "user@example.org", "C:\\Windows\\System32",
    "\u00bd \u00b2 \u2167 \u0663 \uff11\uff12 digits of other scripts", "ALLCAPS lowercase MiXeD",
    "a" * 300, "ab" * 150, " " * 100, "\u00a0" * 10, "\u3000full-width\u3000space",
]

# Strings where the Unicode forms and lowercasing differ from the identity:
# precomposed vs decomposed accents, canonical reordering of combining marks,
# Hangul syllables vs conjoining jamo, singletons (U+2126, U+212B, U+F900),
# composition exclusions (U+0958), compatibility characters (ligatures,
# full-width and half-width forms, super/subscripts, math letters, U+3000),
# the full lowercase mapping (U+0130 -> i + U+0307) and capital sigma, which
# the reference lowercases without the final-sigma rule. The last lines hold
# characters newer than the reference's normalization tables (Unicode 9.0),
# which it leaves alone, and case pairs newer than Unicode 15 (Debian's ICU).
NORMALIZER_CASES = [
    "e\u0301", "\u00e9", "cafe\u0301 vs caf\u00e9", "E\u0301COLE \u00c9COLE \u00e9cole", "n\u0303 \u00f1 N\u0303",
    "a\u0328\u0301 \u0105\u0301", "q\u0307\u0323 q\u0323\u0307", "\u1e0b\u0323 d\u0323\u0307", "\u1e9b\u0323",
    "A\u030a \u212b \u00c5 \u00e5", "\u2126 \u03a9 \u03c9 \u212a K", "\u0344 \u0308\u0301", "\u2000\u2001 quad",
    "\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "\ud55c\uad6d\uc5b4 \u1112\u1161\u11ab\u1100\u116e\u11a8",
    "\u3131\u314f \uffa1", "\ufb01le \ufb02ow \ufb00 \ufb03 \ufb06", "\uff11\uff12\uff13 \uff21\uff22\uff23 \uff41\uff42\uff43\uff01",
    "\uff76\uff9e \u30ab\u3099 \u30ac", "\u00bd \u00b2 \u2167 \u2460 \u33a1 \u2122 \u00aa \u2082", "\U0001d400\U0001d41a \u210c",
    "\u3000\u00a0\u2009\u202f spaces", "\u0958 \u0915\u093c \u0929", "\uf900 \u2f00 \u3250 \u32ff",
    "\u0130stanbul \u0130I\u0131i \u0049\u0307", "\u0130", "i\u0307",
    "\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3 \u03a3", "\u039f\u0394\u039f\u03a3.", "\u03c2\u03c3\u03a3\u03c2",
    "\u1f08\u0399 \u1f88 \u1fbc \u0386\u0388", "\u00df \u1e9e STRASSE", "\u01c4 \u01c5 \u01c6 \u01f1",
    "\u0416\u0401\u0419 \u0418\u0306", "\u0587 \u0535\u0552", "\u13a0\u13a1 \uab70", "\u0100\u0101\u0178\u00ff",
    "emoji \U0001F917\U0001F680 \U0001F468\u200d\U0001F469\u200d\U0001F467 \u2764\ufe0f \U0001F44D\U0001F3FD",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0 \u4e2d\u6587\uff0c\u6807\u70b9\u3002", "ALL CAPS \u00c0\u00c9\u00ce\u00d5\u00dc TEXT",
    "\U0001f16c \u32ff \U0001fbf0 \ua7f2 \uab69", "a\u1df6\u0323 a\U00010d24\u0323 a\ufe2e\u0323 a\U0001e944\u0323",
    "\U00011935\U00011930 \U00011347\U0001133e", "\u1c89\ua7cb\ua7dc \U00010d50\U00010d65 \U00016ea0\U00016eb8",
]

NORMALIZER_POOL = (
    list("aeiouAEIOUnNcCsSkK") * 2 + [" "] * 8
    + ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a", "\u0323", "\u0327", "\u0328", "\u0307", "\u0345"]
    + ["\u00e9", "\u00c9", "\u00f1", "\u00c5", "\u212b", "\u2126", "\u0130", "\u03a3", "\u03c3", "\u03c2", "\u0391"]
    + ["\u1100", "\u1161", "\u11a8", "\uac00", "\ud55c", "\ufb01", "\uff21", "\uff11", "\u00bd", "\u3000", "\u2460"]
    + ["\u65e5", "\u4e2d", "\uf900", "\u30ab", "\u3099", "\uff76", "\uff9e", "\U0001F917", "\u200d", "\ufe0f", "\u00df"]
)
NORMALIZER_RANDOM_STRINGS = 200
NORMALIZER_SEED = 20240607

POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 4
    + list("0123456789") * 3
    + [" "] * 20 + ["\t", "\n", "\r\n", "\r", "  ", "   ", "\u00a0", "\u3000", "\u2009"]
    + list(".,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`")
    + ["\u00e9", "\u00fc", "\u00df", "\u00e7", "\u0301", "\u0303", "\u00f1", "\u00c5"]
    + ["\u65e5", "\u672c", "\u8a9e", "\u306e", "\u4e2d", "\ud55c", "\u0416", "\u03a9", "\u05d0", "\u0628"]
    + ["\U0001F917", "\U0001F680", "\u200d", "\U0001F468", "\ufe0f", "\u200b", "\ufeff", "\u2581", "\u0120"]
    + ["\x01", "\x07", "\x1b", "\x7f", "\u00ad", "\u0085"]
    + ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "'s", "'ll", "n't"]
)


def read_lines(name):
    """Lines of a shared text fixture, each with its "\\n"; split on "\\n" only."""
    with open(os.path.join(FIXTURES, "text", name), "rb") as f:
        data = f.read()
    parts = data.decode("utf-8").split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def random_strings():
    rng = random.Random(SEED)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))) for _ in range(RANDOM_STRINGS)]


def normalizer_random_strings():
    rng = random.Random(NORMALIZER_SEED)
    return ["".join(rng.choice(NORMALIZER_POOL) for _ in range(rng.randint(1, 24)))
            for _ in range(NORMALIZER_RANDOM_STRINGS)]


def apply_variant(patch):
    """The base fixture's tokenizer.json with the patch applied: "replace" sets
    top-level keys, "model" sets model keys, "merges_as_pairs" rewrites
    "a b" merges as ["a", "b"], "append_added_tokens" extends added_tokens."""
    with open(os.path.join(FIXTURES, "tokenizers", patch["base"], "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    j.update(patch.get("replace", {}))
    j["model"].update(patch.get("model", {}))
    if patch.get("merges_as_pairs"):
        j["model"]["merges"] = [m.split(" ") for m in j["model"]["merges"]]
    j["added_tokens"] = j.get("added_tokens", []) + patch.get("append_added_tokens", [])
    return json.dumps(j, ensure_ascii=False)


def write_golden(tok, name, path, lines_per_source, texts, sources):
    header = {
        "tokenizer": name,
        "generator": "tokenizers (Python) " + tokenizers.__version__,
        "add_special_tokens": False,
        "sources": {f: sha256(os.path.join(FIXTURES, "text", f)) for f, _, _ in SOURCES},
    }
    rows = [json.dumps(header, ensure_ascii=False)]

    def record(text, extra):
        ids = tok.encode(text, add_special_tokens=False).ids
        row = dict(extra)
        row["ids"] = ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        if decoded != text:
            row["decoded"] = decoded
        rows.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))

    for f, first, count in SOURCES:
        for i in range(first, min(first + min(count, lines_per_source), len(sources[f]))):
            record(sources[f][i], {"src": f, "line": i})
    for t in texts:
        record(t, {"text": t})
    blob = zstandard.ZstdCompressor(level=19).compress(("\n".join(rows) + "\n").encode("utf-8"))
    with open(path, "wb") as f:
        f.write(blob)
    print(f"{path}: {len(rows) - 1} lines, {len(blob)} bytes", file=sys.stderr)
    return len(blob)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="VARIANT",
                        help="regenerate only these variants (names of variants/<name>.json), nothing else")
    args = parser.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    texts = EDGE_CASES + random_strings()
    sources = {name: read_lines(name) for name, _, _ in SOURCES}
    total = 0
    for name in NAMES if args.only is None else []:
        tok = tokenizers.Tokenizer.from_file(os.path.join(FIXTURES, "tokenizers", name, "tokenizer.json"))
        total += write_golden(tok, name, os.path.join(OUT_DIR, name + ".golden.jsonl.zst"), 10**9, texts, sources)
    variants_dir = os.path.join(OUT_DIR, "variants")
    variants = sorted(f[: -len(".json")] for f in os.listdir(variants_dir) if f.endswith(".json"))
    for variant in args.only or []:
        if variant not in variants:
            sys.exit(f"no variant {variant!r} in {variants_dir} (have {', '.join(variants)})")
    for variant in args.only or variants:
        with open(os.path.join(variants_dir, variant + ".json"), encoding="utf-8") as f:
            patch = json.load(f)
        tok = tokenizers.Tokenizer.from_str(apply_variant(patch))
        path = os.path.join(variants_dir, variant + ".golden.jsonl.zst")
        extra = patch.get("extra_texts", [])
        if patch.get("normalizer_cases"):
            extra = extra + NORMALIZER_CASES + normalizer_random_strings()
        total += write_golden(tok, variant, path, patch["lines_per_source"], extra + texts, sources)
    print(f"total {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
