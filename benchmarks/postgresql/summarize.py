"""Turns run.sh's CSV into the Markdown table of benchmarks/RESULTS.md: TPS per run, tuned/stock per pair, median."""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict


def main(path: str, hardware: str) -> None:
    tps: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    buffers: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            tps[row["workload"]][int(row["pair"])][row["mode"]] = float(row["tps"])
            buffers[row["mode"]] = row["shared_buffers"]
    print(f"Hardware: {hardware}; shared_buffers tuned {buffers.get('tuned')} / stock {buffers.get('stock')}.\n")
    print("| workload | pair | tuned TPS | stock TPS | tuned/stock |")
    print("|---|---|---|---|---|")
    medians = {}
    for workload, pairs in tps.items():
        ratios = []
        for pair, runs in sorted(pairs.items()):
            ratio = runs["tuned"] / runs["stock"]
            ratios.append(ratio)
            print(f"| {workload} | {pair} | {runs['tuned']:.0f} | {runs['stock']:.0f} | {ratio:.3f} |")
        medians[workload] = statistics.median(ratios)
    print()
    for workload, median in medians.items():
        print(f"- {workload}: median tuned/stock = **{median:.3f}**")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
