"""ccattn on the benchmark cases (bench/cases.py): `ccattn bench` per case and mask mechanism
(native band, block-sparse lists built from the band, mask_mod = the band evaluated per element,
band_tensors = the band as per-row lo / hi tensors, --band-lo / --band-hi), forward and backward,
appended to one CSV in the format of bench/rows.py. Non-causal (decode) cases run the native path
only: without a mask there is nothing for the other mechanisms to skip; they go through the KV-cache
call (`--kv-cache 0`, or `--kv-cache 64` for the `_paged64` twins: split-KV). Cases whose mask only
band tensors give (prefix-LM, chunked) run band_tensors only.
Decode rows carry `gbps=N` in note, training-shape rows `roofline=N%`. --deterministic measures the
backward in deterministic mode instead (direction `bwd_det`, beside the default's `bwd` of another run).

usage: python3 bench/run.py --ccattn build/src/cli/ccattn --csv FILE [--cases a,b] [--masks native,...]
                           [--kernels sm80] [--no-bwd] [--deterministic] [--resume] [--stop-at EPOCH]
                           [--impl LABEL]
--kernels sm80 keeps Hopper on the portable kernels (CCATTN_KERNELS=sm80); its rows are labelled
ccattn_sm80. --resume skips what the CSV already holds;
--stop-at starts nothing after that time (seconds since the epoch) and stops a run 60 s past it.
--impl labels the rows (A/B runs of two builds or settings in one call: ccattn@before, ccattn@after).
"""
import argparse
import array
import csv
import datetime
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as bench_cases  # noqa: E402
import rows  # noqa: E402

GRACE_S = 60  # a `ccattn bench` started before --stop-at may run this long past it
DIRECTIONS = {"forward": "fwd", "backward": "bwd", "backward_deterministic": "bwd_det"}  # the CLI's -> the CSV's


def write_npy(path, values, shape):
    """An int64 .npy file (format 1.0, little-endian) of `values` in row-major `shape`."""
    header = f"{{'descr': '<i8', 'fortran_order': False, 'shape': ({', '.join(map(str, shape))},), }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"  # the data starts 64-byte aligned
    data = array.array("q", values)
    if sys.byteorder != "little":
        data.byteswap()
    with open(path, "wb") as fh:
        fh.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1"))
        fh.write(data.tobytes())


def case_arguments(case, backward=True, band_files=None):
    """CLI arguments of a case; band_files = (LO.npy, HI.npy) replaces its band by band tensors."""
    c = bench_cases.full(case)
    args = ["--heads-q", c["Hq"], "--heads-kv", c["Hkv"], "--dim-qk", c["dk"], "--dim-v", c["dv"]]
    if band_files:
        args += ["--band-lo", band_files[0], "--band-hi", band_files[1]]
    elif c["causal"]:
        args += ["--causal", "--compress-factor", c["cf"], "--diag-offset", c["delta"]]
    if c["docs"]:
        args += ["--documents", ",".join(f"{q}:{k}" for q, k in c["docs"])]
    else:
        args += ["--batch", c["B"], "--seqlen-q", c["nq"], "--seqlen-k", c["nk"]]
    if c["bwd"] and backward:
        args.append("--bwd")
    if c["page"] is not None:  # decode: the KV-cache call (0: contiguous cache, else the page size)
        args += ["--kv-cache", c["page"]]
    return [str(a) for a in args]


def masks_for(case, masks):
    c = bench_cases.full(case)
    if c["band"]:
        return [m for m in masks if m == "band_tensors"]
    return masks if c["causal"] else [m for m in masks if m == "native"]


def bench_one(args, env, case, mask, timeout):
    """Runs `ccattn bench` once; returns its CSV rows, or raises with the CLI's last error line."""
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = os.path.join(tmp, "rows.csv")
        band_files = None
        if mask == "band_tensors":  # the case's band as tensors: the CLI's native path reads them
            lo, hi, shape = bench_cases.edges(case)
            band_files = (os.path.join(tmp, "lo.npy"), os.path.join(tmp, "hi.npy"))
            write_npy(band_files[0], lo, shape)
            write_npy(band_files[1], hi, shape)
        cmd = [args.ccattn, "bench", "--backend", "cuda", "--mask", "native" if band_files else mask,
               "--iters", str(args.iters), "--csv", csv_path] + case_arguments(case, not args.no_bwd, band_files)
        if args.deterministic:
            cmd.append("--deterministic")
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        print(run.stdout, end="", flush=True)
        if run.returncode != 0:
            raise RuntimeError((run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1])
        with open(csv_path, newline="") as fh:
            return list(csv.DictReader(fh))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ccattn", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--cases", default="", help="comma-separated, in this order (default: all, cases.py's order)")
    ap.add_argument("--masks", default="native,block_sparse,mask_mod,band_tensors")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--card", default="")
    ap.add_argument("--kernels", default="", help="sm80: keep Hopper on the portable kernels")
    ap.add_argument("--no-bwd", action="store_true")
    ap.add_argument("--deterministic", action="store_true", help="the backward in deterministic mode (rows bwd_det)")
    ap.add_argument("--resume", action="store_true", help="skip (case, mask) pairs the CSV already holds")
    ap.add_argument("--stop-at", type=float, default=float("inf"), help="start nothing after this epoch time")
    ap.add_argument("--impl", default="", help="the rows' impl label (A/B runs: ccattn@LABEL)")
    args = ap.parse_args()
    if not os.access(args.ccattn, os.X_OK):
        sys.exit(f"run.py: {args.ccattn} is not an executable (build first)")
    names = [s for s in args.cases.split(",") if s] or list(bench_cases.CASES)
    impl = args.impl or ("ccattn_sm80" if args.kernels == "sm80" else "ccattn")
    env = dict(os.environ, CCATTN_KERNELS=args.kernels)
    before = rows.read(args.csv) if args.resume else []
    out = rows.Writer(args.csv, datetime.date.today().isoformat(), args.card)
    left = []
    for name in names:
        case = bench_cases.CASES[name]
        backward = bench_cases.full(case)["bwd"] and not args.no_bwd
        for mask in masks_for(case, args.masks.split(",")):
            if rows.done(before, name, impl, mask, backward, "bwd_det" if args.deterministic else "bwd"):
                continue
            if time.time() > args.stop_at:
                left.append(f"{name}/{mask}")
                continue
            try:
                timeout = args.stop_at + GRACE_S - time.time() if args.stop_at < float("inf") else None
                measured = bench_one(args, env, case, mask, timeout)
            except subprocess.TimeoutExpired:
                print(f"{name} {mask}: stopped at the deadline", flush=True)
                left.append(f"{name}/{mask}")
                continue
            except RuntimeError as e:  # the CLI ran and failed: its error is the row
                out.row(name, impl, mask, "fwd", float("nan"), float("nan"), "error: " + rows.one_line(e))
                continue
            for r in measured:
                direction = DIRECTIONS[r["direction"]]
                ms = float(r["ms"])
                note = bench_cases.metric_note(case, direction, ms)
                out.row(name, impl, mask, direction, ms, float(r["tflops"]), note)
    if left:
        print(f"run.py: left for the next call ({len(left)}): {' '.join(left)}", flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
