"""The results tables of bench/rotation_tables.sh and bench/learn_tables.sh:
reading their results.tsv (method, column, seed, perplexity, then any
per-job fields) and printing markdown tables of method rows by column."""
from collections import OrderedDict


def read_results(path):
    """rows and cols in first-seen order, and per (method, column) the list
    of each seed's fields after the seed (perplexity first)."""
    cells, rows, cols = {}, OrderedDict(), OrderedDict()
    for line in open(path):
        m, c, _seed, *fields = line.rstrip("\n").split("\t")
        rows[m] = cols[c] = True
        cells.setdefault((m, c), []).append(fields)
    return rows, cols, cells


def fmt(vals):
    """Mean perplexity over the seeds, (min-max) beside it; "failed" where any failed."""
    try:
        v = [float(x) for x in vals]
    except ValueError:
        return "failed"
    mean = sum(v) / len(v)
    big = lambda x: f"{x:.0f}" if x >= 1000 else (f"{x:.1f}" if x >= 100 else f"{x:.2f}")
    return big(mean) + (f" ({big(min(v))}-{big(max(v))})" if len(v) > 1 else "")


def print_table(rows, cols, text):
    """One markdown table: a row per method, text(method, column) in each cell."""
    print("| method | " + " | ".join(cols) + " |")
    print("| --- | " + " | ".join("---:" for _ in cols) + " |")
    for m in rows:
        print(f"| {m} | " + " | ".join(text(m, c) for c in cols) + " |")
