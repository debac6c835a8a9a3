"""ccattn on the benchmark cases (bench/cases.py): `ccattn bench` per case and mask mechanism
(native band, block-sparse lists built from the band, mask_mod = the band evaluated per element),
forward and backward, appended to one CSV in the same format as bench/peers.py.

usage: python3 bench/run.py --ccattn build/src/cli/ccattn --csv FILE [--cases a,b] [--masks native,...]
                           [--kernels sm80] [--no-bwd]
--kernels sm80 keeps Hopper on the portable kernels (CCATTN_KERNELS=sm80); its rows are labelled
ccattn_sm80. The backward always runs the sm80 kernels.
"""
import argparse
import csv
import datetime
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as bench_cases  # noqa: E402

FIELDS = ["date", "card", "case", "impl", "mask", "direction", "ms", "tflops", "note"]


def case_arguments(case, backward=True):
    c = bench_cases.full(case)
    args = ["--heads-q", c["Hq"], "--heads-kv", c["Hkv"], "--dim-qk", c["dk"], "--dim-v", c["dv"],
            "--causal", "--compress-factor", c["cf"], "--diag-offset", c["delta"]]
    if c["docs"]:
        args += ["--documents", ",".join(f"{q}:{k}" for q, k in c["docs"])]
    else:
        args += ["--batch", c["B"], "--seqlen-q", c["nq"], "--seqlen-k", c["nk"]]
    if c["bwd"] and backward:
        args.append("--bwd")
    return [str(a) for a in args]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ccattn", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--cases", default="")
    ap.add_argument("--masks", default="native,block_sparse,mask_mod")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--card", default="")
    ap.add_argument("--kernels", default="", help="sm80: keep Hopper on the portable kernels")
    ap.add_argument("--no-bwd", action="store_true")
    args = ap.parse_args()
    wanted = [s for s in args.cases.split(",") if s]
    impl = "ccattn_sm80" if args.kernels == "sm80" else "ccattn"
    env = dict(os.environ, CCATTN_KERNELS=args.kernels)
    new = not os.path.exists(args.csv)
    with open(args.csv, "a", newline="") as fh:
        out = csv.writer(fh)
        if new:
            out.writerow(FIELDS)
        for name, case in bench_cases.CASES.items():
            if wanted and name not in wanted:
                continue
            for mask in args.masks.split(","):
                with tempfile.NamedTemporaryFile(suffix=".csv") as tmp:
                    cmd = [args.ccattn, "bench", "--backend", "cuda", "--mask", mask, "--iters", str(args.iters),
                           "--csv", tmp.name] + case_arguments(case, not args.no_bwd)
                    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    print(run.stdout, end="", flush=True)
                    if run.returncode != 0:
                        note = (run.stderr.strip().splitlines() or ["failed"])[-1][:160]
                        print(f"{name} {mask}: {note}", flush=True)
                        out.writerow([datetime.date.today().isoformat(), args.card, name, impl, mask, "fwd",
                                      "nan", "nan", note])
                        continue
                    for row in csv.DictReader(open(tmp.name)):
                        direction = "fwd" if row["direction"] == "forward" else "bwd"
                        out.writerow([row["date"][:10], args.card, name, impl, mask, direction,
                                      f"{float(row['ms']):.4f}", f"{float(row['tflops']):.1f}", ""])
                fh.flush()


if __name__ == "__main__":
    main()
