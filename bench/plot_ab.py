"""Bars of ccattn builds measured side by side in one call (A/B): for every (case, mask, direction) the
CSV holds for each impl label, each label's figure ÷ the first label's (the baseline), with the
figures themselves (TFLOP/s; TB/s of K/V for decode rows) written on the bars. The full peer
comparison is plot.py's; this is for a change measured against its baseline.

usage: python3 bench/plot_ab.py CSV OUT.png LABEL [LABEL ...] [--title TEXT]
"""
import argparse
import csv
import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rows  # noqa: E402


def figure_of(row):
    """(value, unit) of a row: GB/s for decode rows (note gbps=N), else TFLOP/s."""
    for part in row["note"].split():
        if part.startswith("gbps="):
            return rows.number(part[5:]) / 1000.0, "TB/s"
    return rows.number(row["tflops"]), "TFLOP/s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("out")
    ap.add_argument("labels", nargs="+")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    data, keys = {}, []
    with open(a.csv, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["impl"] not in a.labels or not rows.measured(row):
                continue
            key = (row["case"], row["mask"], row["direction"])
            if key not in keys:
                keys.append(key)
            data[key, row["impl"]] = figure_of(row)
    keys = [k for k in keys if all((k, label) in data for label in a.labels)]
    if not keys:
        sys.exit("plot_ab.py: no (case, mask, direction) measured for every label")
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(keys)), 4.5))
    width = 0.8 / len(a.labels)
    for i, label in enumerate(a.labels):
        xs = [x + i * width for x in range(len(keys))]
        ratios = [data[k, label][0] / data[k, a.labels[0]][0] for k in keys]
        ax.bar(xs, ratios, width, label=label)
        for x, k, r in zip(xs, keys, ratios):
            ax.text(x, r, f"{data[k, label][0]:.3g}", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(keys))])
    names = [f"{c}\n{m} {d}" + (" (TB/s)" if data[(c, m, d), a.labels[0]][1] == "TB/s" else "") for c, m, d in keys]
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"÷ {a.labels[0]}")
    ax.set_ylim(0, 1.25 * max(data[k, l][0] / data[k, a.labels[0]][0] for k in keys for l in a.labels))
    ax.set_title("\n".join(textwrap.wrap(a.title, 110)), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)


if __name__ == "__main__":
    main()
