"""Plots of one benchmark CSV (bench/rows.py), as PNGs named <prefix><date>-<card>-<figure>.png:
  forward, backward  TFLOP/s per case, grouped bars ccattn / flex_flash / fa4 / flex (Triton) / sdpa_cudnn,
                     each group headed by ccattn's ratio to its strongest peer there (green: ccattn leads)
  decode             GB/s of K/V read per decode case, with the measured copy bandwidth as a line
  roofline           the training shapes' % of their roofline floor, forward and backward
A peer that ran a case but has no figure (an error, or a MISMATCH against ccattn) gets a red cross
and a label instead of a bar; a peer that does not apply to a case has nothing. A peer's best
configuration counts (e.g. flex_flash's 128 x 96 blocks at Dqk 192).

usage: python3 bench/plot.py results.csv PREFIX
       (PREFIX bench/results/ writes bench/results/2026-12-02-h200-forward.png and so on)
"""
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as bench_cases  # noqa: E402
import rows  # noqa: E402

ATTENTION = [  # (label, impl, masks, colour)
    ("ccattn", "ccattn", ["native"], "#1f77b4"),
    ("flex_flash (FA4 kernels, BlockMask)", "flex_flash", ["block_mask", "block_mask_128x96"], "#d62728"),
    ("fa4 (causal)", "fa4", ["causal"], "#ff7f0e"),
    ("flex (Triton, BlockMask)", "flex", ["block_mask"], "#2ca02c"),
    ("sdpa_cudnn (causal)", "sdpa_cudnn", ["causal"], "#9467bd"),
]
DECODE = [
    ("ccattn", "ccattn", ["native"], "#1f77b4"),
    ("fa4", "fa4", ["none", "none_splits_auto", "paged", "paged_splits_auto"], "#ff7f0e"),
    ("sdpa_flash (FA2)", "sdpa_flash", ["none"], "#8c564b"),
    ("sdpa_cudnn", "sdpa_cudnn", ["none"], "#9467bd"),
]
ROOFLINE = [ATTENTION[0], ATTENTION[1], ATTENTION[3]]
LEAD = "above each group: ccattn ÷ its strongest peer there (green: ccattn leads; grey *: a peer failed)"


def grouped_bars(ax, table, names, series, direction, value):
    """Bars of value(case, row) per case and series; a red cross where a series failed. Returns
    {case: [value per series: None where it does not apply, nan where it failed]}."""
    width = 0.8 / len(series)
    found = {}
    for k, (label, impl, series_masks, colour) in enumerate(series):
        for i, name in enumerate(names):
            x = i + (k - (len(series) - 1) / 2) * width
            # ccattn's bar is its native band; where only band tensors give the mask, those
            masks = ["band_tensors"] if impl == "ccattn" and bench_cases.full(bench_cases.CASES[name])["band"] else series_masks
            r = rows.best(table, name, impl, masks, direction)
            y = value(name, r) if r else None
            failed = rows.failure(table, name, impl, masks, direction)
            found.setdefault(name, []).append(math.nan if failed else y)
            if y is not None:
                new = label not in ax.get_legend_handles_labels()[1]
                ax.bar(x, y, width, color=colour, label=label if new else None)
            elif failed:
                ax.plot(x, 0, marker="x", color="red", markersize=9, mew=2, clip_on=False, zorder=5)
                ax.annotate(failed, (x, 0), xytext=(0, 8),
                            textcoords="offset points", rotation=90, ha="center", va="bottom", fontsize=7, color="red")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return found


def lead_labels(ax, found):
    """ccattn (the first series) over its strongest peer, above each group; grey with * where a peer failed."""
    top = ax.get_ylim()[1]
    for i, values in enumerate(found.values()):
        mine, peers = values[0], [v for v in values[1:] if v is not None]
        measured = [v for v in peers if math.isfinite(v)]
        if mine is None or not math.isfinite(mine) or not measured:
            continue
        lead = mine / max(measured)
        colour = "grey" if len(measured) < len(peers) else "green" if lead >= 1 else "firebrick"
        ax.text(i, top * 0.97, f"{lead:.2f}×" + ("*" if colour == "grey" else ""), ha="center", va="top",
                fontsize=8, fontweight="bold", color=colour)


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(path)


def attention_figure(table, names, direction, title, path):
    fig, ax = plt.subplots(figsize=(max(10, 1.1 * len(names)), 5.5))
    found = grouped_bars(ax, table, names, ATTENTION, direction, lambda n, r: rows.number(r["tflops"]))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.12)  # room for the ratios
    lead_labels(ax, found)
    ax.set_ylabel(f"{'forward' if direction == 'fwd' else 'backward'} TFLOP/s (exact visible pairs)")
    ax.set_title(f"{title}\n{LEAD}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    save(fig, path)


def decode_figure(table, names, title, path):
    fig, ax = plt.subplots(figsize=(max(11, 2.2 * len(names)), 5))
    found = grouped_bars(ax, table, names, DECODE, "fwd",
                         lambda n, r: bench_cases.gbps(bench_cases.CASES[n], rows.number(r["ms"])) / 1e3)
    copy = rows.copy_bandwidth(table)
    label = f"copy bandwidth, measured: {copy / 1e3:.2f} TB/s"
    if not math.isfinite(copy):
        copy, label = bench_cases.PEAK_BYTES / 1e9, "copy bandwidth 4.2 TB/s (not measured in this run)"
    ax.axhline(copy / 1e3, color="black", linestyle="--", linewidth=1, label=label)
    ax.set_ylim(0, max(ax.get_ylim()[1], copy / 1e3) * 1.15)
    lead_labels(ax, found)
    ax.set_ylabel("TB/s of K/V read (2·B·Sk·Hkv·D·2 bytes / time)")
    ax.set_title(f"{title}, decode (forward, no mask)\n{LEAD}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    save(fig, path)


def roofline_figure(table, names, title, path):
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.4 * len(names)), 5), sharey=True)
    for ax, direction in zip(axes, ("fwd", "bwd")):
        grouped_bars(ax, table, names, ROOFLINE, direction, lambda n, r: bench_cases.roofline_percent(
            bench_cases.CASES[n], direction, rows.number(r["ms"])))
        ax.set_title(f"{'forward' if direction == 'fwd' else 'backward'}", fontsize=10)
    axes[0].set_ylabel("% of the roofline floor max(FLOPs / 790 TFLOP/s, bytes / 4.2 TB/s)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title + " — NSA compressed branch at training shapes", fontsize=10)
    save(fig, path)


def card_slug(card):
    """'NVIDIA H200' -> 'h200' (the model number), else the name in lower case with dashes."""
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", card)
    return (m.group(1) if m else re.sub(r"\W+", "-", card).strip("-") or "gpu").lower()


def main(path, prefix):
    all_rows = rows.read(path)
    if not all_rows:
        sys.exit(f"plot.py: no rows in {path}")
    table = rows.latest(all_rows)
    mine = [r for r in all_rows if r["impl"] == "ccattn"] or all_rows
    date, card = max(r["date"] for r in mine), mine[-1]["card"] or "gpu"
    title = f"ccattn vs peers, bf16, {card}, {date}"
    stem = f"{prefix}{date}-{card_slug(card)}-"
    present = {k[0] for k in table}
    kind = {n: bench_cases.full(c) for n, c in bench_cases.CASES.items() if n in present}
    attention = [n for n, c in kind.items() if c["metric"] != "gbps"]
    if attention:
        attention_figure(table, attention, "fwd", title, stem + "forward.png")
        with_bwd = [n for n in attention if kind[n]["bwd"]]
        if with_bwd:
            attention_figure(table, with_bwd, "bwd", title, stem + "backward.png")
    decode = [n for n, c in kind.items() if c["metric"] == "gbps"]
    if decode:
        decode_figure(table, decode, title, stem + "decode.png")
    training = [n for n, c in kind.items() if c["metric"] == "roofline"]
    if training:
        roofline_figure(table, training, title, stem + "roofline.png")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
