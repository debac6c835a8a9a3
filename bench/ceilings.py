"""The card's two ceilings, measured in the same session as the benchmark: the bf16 GEMM rate
(torch.matmul, 8192^3, random data) and the device-to-device copy bandwidth (bytes read + written).
Rows with impl `ceiling`, direction `peak`: gemm_bf16_8192 (TFLOP/s, also `tflops=N` in note) and
copy_d2d (`gbps=N` in note). Medians of triton.testing.do_bench.

usage: python3 bench/ceilings.py --csv FILE
"""
import argparse
import datetime
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rows  # noqa: E402

GEMM_N = 8192
COPY_BYTES = 4 << 30  # far above the 60 MB L2


def gemm_ms():
    a, b = (torch.randn(GEMM_N, GEMM_N, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    return triton.testing.do_bench(lambda: torch.matmul(a, b), warmup=100, rep=500, return_mode="median")


def copy_ms():
    src = torch.empty(COPY_BYTES, device="cuda", dtype=torch.uint8).random_()
    dst = torch.empty_like(src)
    return triton.testing.do_bench(lambda: dst.copy_(src), warmup=100, rep=500, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    args = ap.parse_args()
    out = rows.Writer(args.csv, datetime.date.today().isoformat(), torch.cuda.get_device_name())
    ms = gemm_ms()
    tflops = 2 * GEMM_N**3 / ms / 1e9
    out.row(f"gemm_bf16_{GEMM_N}", "ceiling", "torch.matmul", "peak", ms, tflops, f"tflops={tflops:.0f}")
    ms = copy_ms()
    out.row("copy_d2d", "ceiling", "copy_", "peak", ms, float("nan"), f"gbps={2 * COPY_BYTES / ms / 1e6:.0f}")


if __name__ == "__main__":
    main()
