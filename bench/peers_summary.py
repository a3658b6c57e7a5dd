#!/usr/bin/env python3
# bench/peers.sh's summaries (standard library only):
#   report STREAMQ_REPORT.json   where a streamq GPTQ run's time went (the report's per-block sums)
#   table  ROWS.tsv              per pair (GPTQ: streamq / llm-compressor, perplexity: streamq /
#                                transformers) the medians over the rounds and streamq / peer
# ROWS.tsv: round, work, tool, wall s, peak RSS KiB, ppl or -, load note (one run a line).
import json
import statistics
import sys


def cmd_report(path):
    r = json.load(open(path))
    blocks = r["blocks"]
    total = {k: sum(b[k] for b in blocks) for k in ("seconds_stats", "seconds_quantize", "seconds_propagate")}
    factor = sum(l["seconds_factor"] for b in blocks for l in b["linears"])
    sweep = sum(l["seconds_sweep"] for b in blocks for l in b["linears"])
    print(f"report: total {r['total_seconds']:.1f} s, statistics {total['seconds_stats']:.1f}, "
          f"quantize {total['seconds_quantize']:.1f} (factor {factor:.1f}, sweep {sweep:.1f}), "
          f"propagation {total['seconds_propagate']:.1f}")


def cmd_table(path):
    runs = {}
    for line in open(path):
        _, work, tool, wall, rss_kib, ppl, _load = line.rstrip("\n").split("\t")
        runs.setdefault((work, tool), []).append((float(wall), float(rss_kib) / 1024, ppl))
    pairs = [("GPTQ w4 g64 asym, act-order static groups, whole model", ("gptq", "streamq"),
              ("gptq", "llm-compressor")),
             ("perplexity, WikiText-2 windows", ("ppl", "streamq"), ("ppl", "transformers"))]
    print("| work | streamq median s | streamq peak RSS MiB | peer | peer median s | peer peak RSS MiB | "
          "streamq / peer time | streamq / peer memory | ppl streamq | ppl peer |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, ours, theirs in pairs:
        if ours not in runs or theirs not in runs:
            continue
        a, b = runs[ours], runs[theirs]
        wall_a, wall_b = statistics.median(x[0] for x in a), statistics.median(x[0] for x in b)
        rss_a, rss_b = statistics.median(x[1] for x in a), statistics.median(x[1] for x in b)
        ppl_a = "/".join(sorted({x[2] for x in a if x[2] != "-"})) or ""
        ppl_b = "/".join(sorted({x[2] for x in b if x[2] != "-"})) or ""
        print(f"| {name} ({len(a)} rounds) | {wall_a:.1f} | {rss_a:.0f} | {theirs[1]} | {wall_b:.1f} | {rss_b:.0f} | "
              f"{wall_a / wall_b:.2f}x | {rss_a / rss_b:.2f}x | {ppl_a} | {ppl_b} |")


if __name__ == "__main__":
    commands = {"report": cmd_report, "table": cmd_table}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} report STREAMQ_REPORT.json | table ROWS.tsv")
    commands[sys.argv[1]](sys.argv[2])
