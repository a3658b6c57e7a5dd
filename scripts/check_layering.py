#!/usr/bin/env python3
"""The layering rule, checked on #include lines: each module includes only
itself, modules of a lower level, and the few same-level modules named in
ALLOWED_SAME_LEVEL. Exit 1 naming every upward include; 0 when clean.

Usage: scripts/check_layering.py [REPO_ROOT]
The table below is the one README's "Architecture" section shows; the CMake
library targets (one per module) link the same way.
"""
import os
import re
import sys

# module -> level. A module is a folder; its files are the folder's own files.
LEVELS = {
    "src/core": 0,
    "io/file": 1, "scheduler": 1, "io/store": 1, "io/formats": 1,
    "kernels": 1, "kernels/cpu": 1, "kernels/emulated": 1, "kernels/cuda": 1, "kernels/cuda_on_cpu": 1,
    "src/tokenizer": 2, "src/model": 2, "src/methods": 2,
    "src/job": 3, "src/export": 3,
    "src/pipeline": 4, "src/report": 4,
    "tools": 5,
}
# Same-level edges, each with its reason. Anything else at the same level is
# an error, so this list is the whole story of the sideways dependencies.
ALLOWED_SAME_LEVEL = {
    ("scheduler", "io/file"): "the trace recorder writes its JSON atomically",
    ("io/store", "io/file"): "stores write through the I/O engine",
    ("io/store", "scheduler"): "store decorators draw on the memory budget and trace",
    ("io/formats", "io/file"): "format readers map files",
    ("kernels/cpu", "kernels"): "the CPU backend implements kernels/backend.h",
    ("kernels/cuda", "kernels"): "the CUDA backend implements kernels/backend.h",
    ("kernels/cuda", "kernels/cpu"): "CUDA ops fall back to / are tested against CPU twins",
    ("kernels/cuda_on_cpu", "kernels/cuda"): "the CPU runtime builds the CUDA sources",
    ("kernels/cuda_on_cpu", "kernels"): "the CPU runtime builds the CUDA sources",
    ("kernels/cuda_on_cpu", "kernels/cpu"): "cuBLAS/cuSOLVER stand-ins call the CPU BLAS",
    ("kernels", "kernels/cpu"): "make_cpu_backend lives with the interface",
    ("kernels/emulated", "kernels"): "the emulated device implements kernels/backend.h",
    ("kernels/emulated", "kernels/cpu"): "the emulated device computes with the CPU kernels",
    ("kernels/emulated", "scheduler"): "the emulated device records its queue on a trace lane",
    ("kernels/cuda", "scheduler"): "the CUDA backend records its stream on a trace lane",
    ("src/export", "src/job"): "a finished workdir is exported",
    ("src/pipeline", "src/report"): "the pipeline reports progress and writes reports",
}
SOURCE_EXT = (".h", ".cpp", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(path):
    d = os.path.dirname(path)
    while d:
        if d in LEVELS:
            return d
        d = os.path.dirname(d)
    return None


def vendored(root, path):
    """True inside a vendored copy: a folder (or parent) holding VENDORED.md,
    or the HIP-CPU copy (kernels/cuda_on_cpu/hip-cpu, described beside it)."""
    if "/hip-cpu/" in "/" + path:
        return True
    d = os.path.dirname(path)
    while d:
        if os.path.exists(os.path.join(root, d, "VENDORED.md")):
            return True
        d = os.path.dirname(d)
    return False


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    errors = []
    checked = 0
    for top in sorted({m.split("/")[0] for m in LEVELS}):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(SOURCE_EXT):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                mod = module_of(path)
                if mod is None or vendored(root, path):
                    continue  # vendored third-party code keeps its own includes
                checked += 1
                text = open(os.path.join(root, path), encoding="utf-8", errors="replace").read()
                for inc in INCLUDE.findall(text):
                    target = module_of(inc)
                    if target is None:
                        if not os.path.exists(os.path.join(root, inc)):
                            # Same-folder includes and generated headers are
                            # not allowed: one include root (the repository).
                            if not os.path.exists(os.path.join(root, os.path.dirname(path), inc)):
                                continue  # a system header given with quotes
                            errors.append(f"{path}: includes \"{inc}\" relative to its folder; "
                                          "include it from the repository root")
                        continue
                    if target == mod:
                        continue
                    lo, lt = LEVELS[mod], LEVELS[target]
                    if lt < lo or (mod, target) in ALLOWED_SAME_LEVEL:
                        continue
                    kind = "same-level" if lt == lo else "upward"
                    errors.append(f"{path}: {kind} include of \"{inc}\" ({mod} is level {lo}, "
                                  f"{target} is level {lt})")
    for e in errors:
        print("layering:", e)
    if errors:
        print(f"layering: {len(errors)} violation(s) in {checked} files")
        return 1
    print(f"layering: {checked} files follow the rule")
    return 0


if __name__ == "__main__":
    sys.exit(main())
