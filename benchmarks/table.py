"""Print the Markdown table of benchmark results (run.py's JSON), as in the README's Performance section.

    python benchmarks/table.py benchmarks/results/latest.json benchmarks/results/latest-cnn.json
"""

from __future__ import annotations

import json
import sys


def rows(path: str):
    data = json.load(open(path, encoding="utf-8"))
    for r in data["results"]:
        w, a, b = r["workload"], r["ntkdsl"], r["neural_tangents"]
        if "median_s" not in a or "median_s" not in b:
            why = a.get('skipped') or a.get('error') or b.get('skipped') or b.get('error')
            yield f"| {w['name']} | {w['n']} | {w['dtype']} | {why} | | | | | | |"
            continue
        entries = w["n"] ** 2  # the 21-layer CNN in ms per kernel entry, as neural-tangents publishes it
        per_entry = "" if w.get("depth", 0) < 21 else (f"<br>ms an entry: {1e3 * a['median_s'] / entries:.3g} vs "
                                                       f"{1e3 * b['median_s'] / entries:.3g}")
        mem = lambda s: "-" if s.get("call_peak_mb") is None else f"{s['call_peak_mb']:.0f} ({s['call_arrays']:.3g})"  # noqa: E731
        diff = r.get("ntk_relative_difference")
        yield (f"| {w['name']}{per_entry} | {w['n']} | {w['dtype']} | {a['median_s']:.3g} | {b['median_s']:.3g} | "
               f"**{r['ratio_nt_over_ntkdsl']:.2f}×** | {mem(a)} | {mem(b)} | "
               f"{'-' if diff is None else f'{diff:.1e}'} | {r.get('load_average_1min_before', float('nan')):.1f} |")


def main(paths) -> None:
    print("| workload | N | dtype | ntkdsl s | neural-tangents s | NT / ntkdsl | ntkdsl MB (N×N arrays) "
          "| neural-tangents MB (arrays) | NTK rel. diff | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        for line in rows(path):
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:] or ["benchmarks/results/latest.json"])
