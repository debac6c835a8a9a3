"""Plot a benchmark CSV (bench/run.py and bench/peers.py rows): TFLOP/s by case, ccattn's paths beside
the peers, forward and backward panels.

usage: python3 bench/plot.py results.csv out.png
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SERIES = [  # (impl, mask) in legend order
    ("ccattn", "native"), ("ccattn", "block_sparse"), ("ccattn", "mask_mod"),
    ("ccattn_sm80", "native"), ("ccattn_sm80", "block_sparse"), ("ccattn_sm80", "mask_mod"),
    ("flex", "block_mask"), ("flex", "mask_mod"), ("sdpa_cudnn", "causal"), ("sdpa_flash", "causal"),
    ("sdpa_dense", "dense_mask"),
]


def main(path, out):
    rows = list(csv.DictReader(open(path)))  # later rows of a (case, impl, mask) replace earlier ones
    value = defaultdict(dict)  # (direction) -> {(case, impl, mask): tflops}
    cases, meta = [], {}
    for r in rows:
        if r["direction"] not in ("fwd", "bwd") or r["tflops"] in ("", "nan"):
            continue
        if r["case"] not in cases:
            cases.append(r["case"])
        value[r["direction"]][(r["case"], r["impl"], r["mask"])] = (float(r["tflops"]), r.get("run") == "anchors")
        meta = (r["date"], r["card"])
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 1.6 * len(cases)), 9), sharex=True)
    present = [s for s in SERIES if any((c,) + s in v for v in value.values() for c in cases)]
    width = 0.8 / max(1, len(present))
    for ax, direction in zip(axes, ("fwd", "bwd")):
        for k, (impl, mask) in enumerate(present):
            xs, ys, hatch = [], [], []
            for i, c in enumerate(cases):
                y = value[direction].get((c, impl, mask))
                if y is not None:
                    xs.append(i + (k - (len(present) - 1) / 2) * width)
                    ys.append(y[0])
                    hatch.append("//" if y[1] else "")
            bars = ax.bar(xs, ys, width, label=f"{impl} {mask}", color=f"C{k}")
            for bar, h in zip(bars, hatch):
                bar.set_hatch(h)
        ax.set_ylabel(f"{'forward' if direction == 'fwd' else 'backward'} TFLOP/s")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=4, fontsize=8)
    axes[1].set_xticks(range(len(cases)))
    axes[1].set_xticklabels(cases, rotation=30, ha="right", fontsize=8)
    anchors = any(y[1] for v in value.values() for y in v.values())
    fig.suptitle(f"ccattn vs peers, bf16, {meta[1]}, {meta[0]} (FLOPs from exact visible pairs"
                 + ("; hatched: peer figures from the anchor runs of the same day, not the same call)" if anchors else ")"),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
