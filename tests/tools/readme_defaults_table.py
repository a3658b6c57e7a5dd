#!/usr/bin/env python3
"""README's defaults table is bench/defaults_table.sh's output, not a hand copy:
each mean in bench/defaults-<model>.md (written by that script) must be the
figure README's row shows for that setting and configuration, to the digits
README prints. Fails naming the cell that differs.
   tests/tools/readme_defaults_table.py REPO_ROOT"""
import re
import sys

root = sys.argv[1]
readme = open(f"{root}/README.md", encoding="utf-8").read()
# The README columns, in order, and the script's configuration names.
columns = ["gptq (the paper's: symmetric, no act-order)", "gptq act-order", "gptq act-order asym",
           "loaq+gptq two-stage act-order", "loaq+gptq two-stage act-order asym"]
rows = {("stories260K", "w4 g32"): "stories260K w4 g32", ("stories260K", "w3 g32"): "stories260K w3 g32",
        ("smollm2", "w4 g128"): "SmolLM2-135M w4 g128"}
failed = 0
for (model, setting), label in rows.items():
    means = {}
    for line in open(f"{root}/bench/defaults-{model}.md", encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] == setting:
            means[cells[1]] = float(cells[5])
    line = next((l for l in readme.splitlines() if l.startswith(f"| {label} (")), None)
    if line is None:
        print(f"README has no defaults row '{label}'")
        failed = 1
        continue
    shown = [c.strip().strip("*") for c in line.strip().strip("|").split("|")][1:]
    for col, text in zip(columns, shown):
        digits = len(text.split(".")[1]) if "." in text else 0
        want = f"{means[col]:.{digits}f}"
        if want != text:
            print(f"README defaults table, {label}, '{col}': shows {text}, bench/defaults-{model}.md says {want}")
            failed = 1
print("README's defaults table matches bench/defaults-*.md" if not failed else "paste the means from bench/defaults-*.md")
sys.exit(failed)
