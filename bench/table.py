"""The README's performance tables from one benchmark CSV (bench/rows.py), as Markdown on stdout:
ccattn's TFLOP/s per case beside its ratio to flex_flash (the compressed cases: FlexAttention on FA4's
kernels with a BlockMask) and to fa4 (plain causal); the decode cases in µs and GB/s against FA4; the
training shapes as % of their roofline floor. Only rows with a finite TFLOP/s count: a peer that ran
but has none shows `error` or `mismatch` (against ccattn). Ratios are speed ratios: above 1, ccattn
is faster.

usage: python3 bench/table.py results.csv
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as bench_cases  # noqa: E402
import rows  # noqa: E402

CCATTN = ("ccattn", ["native"])
CCATTN_BAND = ("ccattn", ["band_tensors"])  # cases whose mask only band tensors give
FLEX_FLASH = ("flex_flash", ["block_mask", "block_mask_128x96"])
FA4_CAUSAL = ("fa4", ["causal"])
FA4_DECODE = ("fa4", ["none", "none_splits_auto", "paged", "paged_splits_auto"])


def present(table, kind):
    """Case names of cases.py (in its order) with a ccattn or peer row, decode or not."""
    names = {k[0] for k in table}
    return [n for n, c in bench_cases.CASES.items() if n in names and (bench_cases.full(c)["metric"] == "gbps") == kind]


def tflops(table, case, series, direction):
    r = rows.best(table, case, *series, direction)
    return rows.number(r["tflops"]) if r else math.nan


def ms(table, case, series, direction):
    r = rows.best(table, case, *series, direction)
    return rows.number(r["ms"]) if r else math.nan


def fmt(x, digits=0):
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def ratio(mine, peer):
    """'0.87 (612)': mine / peer with the peer's figure, or '–'."""
    if not (math.isfinite(mine) and math.isfinite(peer)):
        return "–"
    return f"{mine / peer:.2f} ({fmt(peer)})"


def attention_table(table):
    out = ["| case | fwd TFLOP/s | ÷ flex_flash | ÷ fa4 | bwd TFLOP/s | ÷ flex_flash | ÷ fa4 |",
           "|---|---|---|---|---|---|---|"]
    for name in present(table, False):
        cells = [name]
        ours = CCATTN_BAND if bench_cases.full(bench_cases.CASES[name])["band"] else CCATTN
        for d in ("fwd", "bwd"):
            mine = tflops(table, name, ours, d)
            cells.append(rows.failure(table, name, *ours, d) or fmt(mine))
            for peer in (FLEX_FLASH, FA4_CAUSAL):
                cells.append(rows.failure(table, name, *peer, d) or ratio(mine, tflops(table, name, peer, d)))
        out.append("| " + " | ".join(cells) + " |")
    return out


def decode_table(table):
    out = ["| case | ccattn µs | ccattn GB/s | fa4 µs | fa4 GB/s | speed ÷ fa4 |", "|---|---|---|---|---|---|"]
    for name in present(table, True):
        case = bench_cases.CASES[name]
        mine, peer = ms(table, name, CCATTN, "fwd"), ms(table, name, FA4_DECODE, "fwd")
        gb = [bench_cases.gbps(case, t) if math.isfinite(t) else math.nan for t in (mine, peer)]
        speed = f"{peer / mine:.2f}" if math.isfinite(mine) and math.isfinite(peer) else "–"
        mine_us = rows.failure(table, name, *CCATTN, "fwd") or fmt(mine * 1e3)
        peer_us = rows.failure(table, name, *FA4_DECODE, "fwd") or fmt(peer * 1e3)
        out.append(f"| {name} | {mine_us} | {fmt(gb[0])} | {peer_us} | {fmt(gb[1])} | {speed} |")
    return out


def roofline_table(table):
    out = ["| case | floor fwd / bwd ms | ccattn fwd / bwd % | flex_flash fwd / bwd % |", "|---|---|---|---|"]
    for name in present(table, False):
        case = bench_cases.CASES[name]
        if bench_cases.full(case)["metric"] != "roofline":
            continue
        floor = bench_cases.roofline_ms(case)
        cells = [name, f"{floor[0]:.2f} / {floor[1]:.2f}"]
        for series in (CCATTN, FLEX_FLASH):
            pct = [100 * f / ms(table, name, series, d) for f, d in zip(floor, ("fwd", "bwd"))]
            cells.append(" / ".join(fmt(p) for p in pct))
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(path):
    table = rows.latest(rows.read(path))
    mine = [r for k, r in table.items() if k[1] == "ccattn"]
    dates = sorted({r["date"] for r in mine})
    cards = sorted({r["card"] for r in mine if r["card"]})
    when = "date unknown" if not dates else dates[0] if len(dates) == 1 else f"{dates[0]} – {dates[-1]}"
    print(f"bf16, {', '.join(cards) or 'card unknown'}, {when}, "
          f"one run (`{os.path.basename(path)}`). Cells: ccattn's figure; ÷ peer = ccattn / peer (above 1: ccattn "
          "faster), the peer's figure in brackets; a peer's best configuration counts.\n")
    print("\n".join(attention_table(table)))
    print(f"\nDecode (forward, no mask; GB/s of K/V read; copy bandwidth this run: "
          f"{fmt(rows.copy_bandwidth(table) / 1e3, 2)} TB/s):\n")
    print("\n".join(decode_table(table)))
    print(f"\nTraining shapes: % of the roofline floor max(FLOPs / {bench_cases.PEAK_FLOPS / 1e12:.0f} TFLOP/s, "
          f"bytes / {bench_cases.PEAK_BYTES / 1e12:.1f} TB/s):\n")
    print("\n".join(roofline_table(table)))


if __name__ == "__main__":
    main(sys.argv[1])
