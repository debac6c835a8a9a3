"""Peers on the benchmark cases, timed in the same GPU call as ccattn (bench/run.py) so that the
comparison is a ratio from one run: FlexAttention with a BlockMask, FlexAttention with mask_mod only
(every block partial), SDPA with the cuDNN and flash backends (plain causal only), SDPA with a dense
boolean mask (where it fits). Medians of triton.testing.do_bench. Writes CSV rows to --csv.

usage: python3 bench/peers.py --csv FILE [--cases a,b] [--rep-ms 200]
"""
import argparse
import csv
import datetime
import os
import sys
import time

import torch
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as bench_cases  # noqa: E402

import torch._dynamo  # noqa: E402

torch._dynamo.config.cache_size_limit = 256
torch._dynamo.config.accumulated_cache_size_limit = 4096
DEV = "cuda"
FIELDS = ["date", "card", "case", "impl", "mask", "direction", "ms", "tflops", "note"]


def timed(fn, rep_ms):
    return triton.testing.do_bench(fn, warmup=50, rep=rep_ms, return_mode="median")


def band_mask_mod(c):
    """The case's mask as a FlexAttention mask_mod (documents packed along the sequence for varlen)."""
    cf, delta = c["cf"], c["delta"]
    if not c["docs"]:
        return lambda b, h, qi, ki: ki * cf <= qi + delta
    qdoc = torch.cat([torch.full((q,), d, device=DEV) for d, (q, _) in enumerate(c["docs"])])
    kdoc = torch.cat([torch.full((k,), d, device=DEV) for d, (_, k) in enumerate(c["docs"])])
    qstart = torch.tensor([0] + [q for q, _ in c["docs"]], device=DEV).cumsum(0)
    kstart = torch.tensor([0] + [k for _, k in c["docs"]], device=DEV).cumsum(0)
    qloc = torch.arange(c["nq"], device=DEV) - qstart[qdoc]
    kloc = torch.arange(c["nk"], device=DEV) - kstart[kdoc]
    return lambda b, h, qi, ki: (qdoc[qi] == kdoc[ki]) & (kloc[ki] * cf <= qloc[qi] + delta)


def every_block_partial(bm, mask_mod, nq, nk):
    nqb, nkb = bm.kv_num_blocks.shape[-1], bm.kv_indices.shape[-1]
    num = torch.full((1, 1, nqb), nkb, device=DEV, dtype=torch.int32)
    idx = torch.arange(nkb, device=DEV, dtype=torch.int32).expand(1, 1, nqb, nkb).contiguous()
    return BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=bm.BLOCK_SIZE, mask_mod=mask_mod, seq_lengths=(nq, nk))


def run_case(name, case, rep_ms, emit):
    c = bench_cases.full(case)
    f_fwd, f_bwd = bench_cases.flops(case)
    B, Hq, Hkv, nq, nk = c["B"], c["Hq"], c["Hkv"], c["nq"], c["nk"]
    q = torch.randn(B, Hq, nq, c["dk"], device=DEV, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(B, Hkv, nk, c["dk"], device=DEV, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(B, Hkv, nk, c["dv"], device=DEV, dtype=torch.bfloat16, requires_grad=True)
    gqa = Hq != Hkv
    mask_mod = band_mask_mod(c)
    flex = torch.compile(flex_attention, dynamic=False)
    # The block mask is setup, not timed. Built eagerly (a dense mask of nq x nk booleans, a few GB at
    # most) where that fits, since compiling the builder took minutes per case; compiled (as the
    # anchors do, no dense mask) for the 1M-query case.
    block_mask_of = create_block_mask if nq * nk <= 2**32 else torch.compile(create_block_mask)

    def time_pair(impl, mask, fwd):
        try:
            t = timed(fwd, rep_ms)
            emit(name, impl, mask, "fwd", t, f_fwd / t / 1e9)
            if c["bwd"]:
                g = torch.randn_like(fwd())

                def fwd_bwd():
                    fwd().backward(g)

                t2 = timed(fwd_bwd, rep_ms) - t
                emit(name, impl, mask, "bwd", t2, f_bwd / t2 / 1e9)
        except Exception as e:  # a peer that cannot run a case is reported, not fatal
            emit(name, impl, mask, "fwd", float("nan"), float("nan"), repr(e)[:160])

    t0 = time.time()
    bm = block_mask_of(mask_mod, None, None, nq, nk, device=DEV)
    build_s = time.time() - t0
    emit(name, "flex", "block_mask_build", "setup", build_s * 1e3, float("nan"))
    time_pair("flex", "block_mask", lambda: flex(q, k, v, block_mask=bm, enable_gqa=gqa))
    bm_partial = every_block_partial(bm, mask_mod, nq, nk)
    time_pair("flex", "mask_mod", lambda: flex(q, k, v, block_mask=bm_partial, enable_gqa=gqa))
    del bm, bm_partial
    if c["cf"] == 1 and nq == nk and c["delta"] == 0 and not c["docs"]:
        for backend, impl in ((SDPBackend.CUDNN_ATTENTION, "sdpa_cudnn"), (SDPBackend.FLASH_ATTENTION, "sdpa_flash")):
            def sdpa(backend=backend):
                with sdpa_kernel([backend]):
                    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
            time_pair(impl, "causal", sdpa)
    elif not c["docs"] and B * Hq * nq * nk <= 2**31:
        qi = torch.arange(nq, device=DEV)[:, None]
        ki = torch.arange(nk, device=DEV)[None, :]
        dense = ki * c["cf"] <= qi + c["delta"]
        time_pair("sdpa_dense", "dense_mask",
                  lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=gqa))
    del q, k, v
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--cases", default="")
    ap.add_argument("--rep-ms", type=float, default=200)
    args = ap.parse_args()
    card = torch.cuda.get_device_name()
    today = datetime.date.today().isoformat()
    new = not os.path.exists(args.csv)
    with open(args.csv, "a", newline="") as fh:
        out = csv.writer(fh)
        if new:
            out.writerow(FIELDS)

        def emit(case, impl, mask, direction, ms, tflops, note=""):
            out.writerow([today, card, case, impl, mask, direction, f"{ms:.4f}", f"{tflops:.1f}", note])
            fh.flush()
            print(f"{case:22s} {impl:11s} {mask:16s} {direction:5s} {ms:10.3f} ms {tflops:7.1f} TFLOP/s {note}", flush=True)

        # in the order given (most important first when the call has a time limit)
        wanted = [s for s in args.cases.split(",") if s] or list(bench_cases.CASES)
        for name in wanted:
            case = bench_cases.CASES[name]
            t0 = time.time()
            run_case(name, case, args.rep_ms, emit)
            print(f"# {name}: {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
