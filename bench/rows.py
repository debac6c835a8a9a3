"""The benchmark CSV, shared by every script: one row per (case, impl, mask, direction) measurement.

Columns: date, card, case, impl, mask, direction (fwd, bwd, bwd_det for the deterministic backward;
setup for a block mask's build time, peak for the card's ceilings), ms, tflops, note. A row that could not be measured has ms = nan and
its error in note; a peer whose output disagrees with ccattn's keeps its ms but has tflops = nan
(and MISMATCH in note), so it never enters a table or a plot. Several calls append to one CSV:
later rows replace earlier ones of the same key, except that an error never hides a measurement.
"""
import csv
import math
import os

FIELDS = ["date", "card", "case", "impl", "mask", "direction", "ms", "tflops", "note"]


def number(text):
    """The float in a CSV cell; nan for '' or anything unreadable."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def measured(row):
    return math.isfinite(number(row["ms"]))


def one_line(text, limit=200):
    """An error message fit for the note column: one line, no commas to quote, at most limit characters."""
    return " ".join(str(text).split()).replace(",", ";")[:limit]


class Writer:
    """Appends rows to a CSV (header when new), flushing each so a call cut short keeps what it measured,
    and prints one progress line per row."""

    def __init__(self, path, date, card):
        self.date, self.card = date, card
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        self.fh = open(path, "a", newline="")
        self.out = csv.writer(self.fh)
        if new:
            self.out.writerow(FIELDS)

    def row(self, case, impl, mask, direction, ms, tflops, note=""):
        self.out.writerow([self.date, self.card, case, impl, mask, direction, f"{ms:.4f}", f"{tflops:.1f}", note])
        self.fh.flush()
        print(f"{case:20s} {impl:11s} {mask:18s} {direction:7s} {ms:10.4f} ms {tflops:7.1f} TFLOP/s  {note}",
              flush=True)


def read(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def latest(rows):
    """{(case, impl, mask, direction): row}: the last measured row of each key, else its last error row."""
    best = {}
    for r in rows:
        key = (r["case"], r["impl"], r["mask"], r["direction"])
        if measured(r) or key not in best or not measured(best[key]):
            best[key] = r
    return best


def done(rows, case, impl, mask, backward, backward_direction="bwd"):
    """Whether a unit of work is in the CSV already (to resume a run cut short): its forward failed
    (the error is recorded; a fresh CSV retries it), or it was measured and, when the case times the
    backward, has a backward row (measured or its error) in backward_direction (bwd, or bwd_det)."""
    have = latest(r for r in rows if r["case"] == case and r["impl"] == impl and r["mask"] == mask)
    fwd = have.get((case, impl, mask, "fwd"))
    if fwd is None:
        return False
    return not measured(fwd) or not backward or (case, impl, mask, backward_direction) in have


def best(table, case, impl, masks, direction):
    """The row of impl's fastest finite TFLOP/s over masks (a peer's best configuration), or None.
    table is latest()'s dict."""
    found = [table.get((case, impl, m, direction)) for m in masks]
    found = [r for r in found if r is not None and math.isfinite(number(r["tflops"]))]
    return max(found, key=lambda r: number(r["tflops"]), default=None)


def failure(table, case, impl, masks, direction):
    """'mismatch' or 'error' when impl was run on the case but has no figure for direction (a forward
    that failed counts for its backward too), else None (measured, or not run on this case)."""
    if best(table, case, impl, masks, direction) is not None:
        return None
    found = [table.get((case, impl, m, direction)) for m in masks]
    if direction == "bwd":
        found += [table.get((case, impl, m, "fwd")) for m in masks]
    found = [r for r in found if r is not None and not math.isfinite(number(r["tflops"]))]
    if not found:
        return None
    return "mismatch" if any("MISMATCH" in r["note"] for r in found) else "error"


def copy_bandwidth(table):
    """The copy ceiling's GB/s from its note (bench/ceilings.py), or nan. table is latest()'s dict."""
    r = table.get(("copy_d2d", "ceiling", "copy_", "peak"))
    for token in (r["note"].split() if r else []):
        if token.startswith("gbps="):
            return number(token[5:])
    return math.nan
