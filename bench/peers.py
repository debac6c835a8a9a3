"""Peers on the benchmark cases, timed in the same GPU session as ccattn (bench/run.py) so that the
comparison is a ratio from one run. impl / mask labels:
  fa4 / causal              FlashAttention-4 (flash_attn.cute) on the plain causal cases
  fa4 / none, none_splits_auto   FA4 on the decode cases (num_splits 1, and 0 = its own heuristic)
  fa4 / paged, paged_splits_auto FA4 on the `_paged64` decode cases: flash_attn_varlen_func with the
                            same pages (page_table, seqused_k) as ccattn's cache
  flex_flash / block_mask   FlexAttention on FA4's kernels (BACKEND FLASH), BlockMask of 128 x 128
  flex_flash / block_mask_128x96   the same with kv blocks of 96 (Dqk 192: what FA4's backward takes)
  flex / block_mask         FlexAttention's Triton kernels, BlockMask of 128 x 128
  flex / mask_mod           the same with every block partial (mask_mod on every element)
  sdpa_cudnn, sdpa_flash / causal, none   SDPA's cuDNN and flash (FA2) backends: plain causal, decode
  sdpa_dense / dense_mask   SDPA with a boolean mask, where the mask is small enough
Before a peer is timed its output (and gradients) are compared with ccattn's (bench/reference.py);
a mismatch keeps its ms but gets tflops = nan. Backward time = time(fwd + bwd) - time(fwd).
Medians of triton.testing.do_bench. A peer that fails writes its error in note and the run goes on.

usage: python3 bench/peers.py --csv FILE [--cases a,b] [--impls fa4,flex_flash,...] [--rep-ms 200]
                              [--resume] [--stop-at EPOCH]
Exit status 3: work left (deadline or FA4 missing; run again with --resume), 4: the CUDA context
was lost (the failing peer has its error row; run again with --resume to go on).
"""
import argparse
import datetime
import gc
import os
import sys
import time

import torch
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import flex_attention

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as bench_cases  # noqa: E402
import flexmasks  # noqa: E402
import reference  # noqa: E402
import rows  # noqa: E402

try:
    from flash_attn.cute import flash_attn_func, flash_attn_varlen_func
    FA4_ERROR = None
except Exception as e:  # FA4 (and Flex's FLASH backend, which runs its kernels) is staged by bench/fa4.sh
    flash_attn_func, flash_attn_varlen_func, FA4_ERROR = None, None, e

import torch._dynamo  # noqa: E402

torch._dynamo.config.cache_size_limit = 256
torch._dynamo.config.accumulated_cache_size_limit = 4096
DEV = flexmasks.DEV
NEEDS_FA4 = {"fa4", "flex_flash"}
BLOCK_SIZES = {"block_mask": (128, 128), "block_mask_128x96": (128, 96)}
DENSE_LIMIT = 2**31  # B * Hq * Sq * Sk of the SDPA dense-mask peer
flex = torch.compile(flex_attention, dynamic=False)


def units(c):
    """The (impl, mask) pairs that apply to a filled-in case, most important first."""
    if c["page"]:  # a paged cache: only FA4 takes one
        return [("fa4", "paged"), ("fa4", "paged_splits_auto")]
    if not c["causal"]:
        return [("fa4", "none"), ("fa4", "none_splits_auto"), ("sdpa_flash", "none"), ("sdpa_cudnn", "none")]
    u = [("flex_flash", "block_mask")]
    if c["dk"] == 192:
        u.append(("flex_flash", "block_mask_128x96"))
    if bench_cases.is_plain_causal(c):
        u.append(("fa4", "causal"))
    u += [("flex", "block_mask"), ("flex", "mask_mod")]
    if bench_cases.is_plain_causal(c):
        u += [("sdpa_cudnn", "causal"), ("sdpa_flash", "causal")]
    elif not c["docs"] and c["B"] * c["Hq"] * c["nq"] * c["nk"] <= DENSE_LIMIT:
        u.append(("sdpa_dense", "dense_mask"))
    return u


class Inputs:
    """One case's random q, k, v (and dout when it times the backward) in two layouts: [B, S, H, D]
    (ccattn, FA4) and contiguous [B, H, S, D] copies (FlexAttention, SDPA)."""

    def __init__(self, c):
        torch.manual_seed(0)
        B, nq, nk, grad = c["B"], c["nq"], c["nk"], c["bwd"]

        def randn(*shape):
            return torch.randn(*shape, device=DEV, dtype=torch.bfloat16)

        q, k, v = randn(B, nq, c["Hq"], c["dk"]), randn(B, nk, c["Hkv"], c["dk"]), randn(B, nk, c["Hkv"], c["dv"])
        self.bshd = tuple(x.requires_grad_(grad) for x in (q, k, v))
        self.bhsd = tuple(x.detach().transpose(1, 2).contiguous().requires_grad_(grad) for x in self.bshd)
        self.dout = {"bshd": randn(B, nq, c["Hq"], c["dv"]) if grad else None}
        self.dout["bhsd"] = self.dout["bshd"].transpose(1, 2).contiguous() if grad else None

    def leaves(self, layout):
        return self.bshd if layout == "bshd" else self.bhsd

    def paged(self, page):
        """(k_pages, v_pages, page_table): k, v in pages of `page` rows in random order; page_table
        int32 [B, pages per sequence] names the storage page of each logical page."""
        _, k, v = self.bshd
        B, nk = k.shape[:2]
        n = -(-nk // page)
        perm = torch.randperm(B * n, generator=torch.Generator().manual_seed(1)).to(k.device)

        def to_pages(x):
            padded = torch.zeros(B, n * page, *x.shape[2:], dtype=x.dtype, device=x.device)
            padded[:, :nk] = x.detach()
            storage = torch.empty_like(padded).view(B * n, page, *x.shape[2:])
            storage[perm] = padded.view(B * n, page, *x.shape[2:])
            return storage
        return to_pages(k), to_pages(v), perm.to(torch.int32).view(B, n)


def as_bshd(x, layout):
    return x if layout == "bshd" else x.transpose(1, 2)


def first_tensor(result):
    """The attention output of a peer's result: FA4 returns (out, lse)."""
    while isinstance(result, (tuple, list)):
        result = result[0]
    return result


def peer_call(impl, mask, c, x, masks):
    """(layout, a function running the peer once) for one unit; raises when it cannot be set up."""
    q, k, v = x.leaves("bhsd")
    gqa = c["Hq"] != c["Hkv"]
    if impl == "fa4":
        qs, ks, vs = x.leaves("bshd")
        if mask in ("paged", "paged_splits_auto"):
            kp, vp, table = x.paged(c["page"])
            used = torch.full((c["B"],), c["nk"], dtype=torch.int32, device=kp.device)
            splits = 0 if mask == "paged_splits_auto" else 1
            return "bshd", lambda: flash_attn_varlen_func(qs, kp, vp, seqused_k=used, page_table=table, causal=False,
                                                          num_splits=splits)
        if mask == "causal":
            return "bshd", lambda: flash_attn_func(qs, ks, vs, causal=True)
        splits = 0 if mask == "none_splits_auto" else 1
        return "bshd", lambda: flash_attn_func(qs, ks, vs, causal=False, num_splits=splits)
    if impl == "flex_flash":
        bm = masks.get(BLOCK_SIZES[mask])
        return "bhsd", lambda: flex(q, k, v, block_mask=bm, enable_gqa=gqa, kernel_options={"BACKEND": "FLASH"})
    if impl == "flex":
        bm = masks.get() if mask == "block_mask" else masks.every_block_partial()
        return "bhsd", lambda: flex(q, k, v, block_mask=bm, enable_gqa=gqa)
    if impl in ("sdpa_cudnn", "sdpa_flash"):
        backend = SDPBackend.CUDNN_ATTENTION if impl == "sdpa_cudnn" else SDPBackend.FLASH_ATTENTION

        def sdpa():
            with sdpa_kernel([backend]):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=c["causal"], enable_gqa=gqa)
        return "bhsd", sdpa
    if impl == "sdpa_dense":
        dense = flexmasks.dense_mask(c)
        return "bhsd", lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense,
                                                                                enable_gqa=gqa)
    raise ValueError(f"unknown peer {impl}")


def timed(fn, rep_ms):
    return triton.testing.do_bench(fn, warmup=50, rep=rep_ms, return_mode="median")


def cuda_alive():
    """False once a kernel fault has poisoned the CUDA context (every later call would fail)."""
    try:
        torch.cuda.synchronize()
        return torch.ones(1, device=DEV).add_(1).item() == 2
    except Exception:
        return False


def note_of(*parts):
    return " ".join(p for p in parts if p)


def measure(name, case, impl, mask, layout, call, x, ref, emit, rep_ms):
    """Checks, then times one unit: its fwd row, and its bwd row when the case times the backward."""
    c = bench_cases.full(case)
    f_fwd, f_bwd = bench_cases.flops(case)
    nan = float("nan")
    leaves, dout = x.leaves(layout), x.dout[layout]
    try:
        fwd_ok, check = ref.check_out(as_bshd(first_tensor(call()), layout))
        ms = timed(call, rep_ms)
    except Exception as e:
        emit(name, impl, mask, "fwd", nan, nan, "error: " + rows.one_line(repr(e)))
        return
    emit(name, impl, mask, "fwd", ms, f_fwd / ms / 1e9 if fwd_ok else nan,
         note_of(check, bench_cases.metric_note(case, "fwd", ms)))
    if not c["bwd"]:
        return

    def fwd_bwd():
        return torch.autograd.grad(first_tensor(call()), leaves, dout)  # fresh gradients: no accumulation
    try:
        grad_ok, grad_check = ref.check_grads([as_bshd(g, layout) for g in fwd_bwd()])
        ms_bwd = timed(fwd_bwd, rep_ms) - ms
    except Exception as e:
        emit(name, impl, mask, "bwd", nan, nan, "error: " + rows.one_line(repr(e)))
        return
    ok = fwd_ok and grad_ok and ms_bwd > 0  # timing noise could leave nothing for a tiny backward
    emit(name, impl, mask, "bwd", ms_bwd, f_bwd / ms_bwd / 1e9 if ok else nan,
         note_of(grad_check, "" if fwd_ok else "(forward MISMATCH)", bench_cases.metric_note(case, "bwd", ms_bwd)))


def run_case(name, todo, args, emit):
    """Every unit of todo on one case; False when the CUDA context was lost."""
    case = bench_cases.CASES[name]
    c = bench_cases.full(case)
    try:
        x = Inputs(c)
        ref = reference.Reference(c, *x.leaves("bshd"), x.dout["bshd"])
        masks = flexmasks.BlockMasks(name, c, emit)
    except Exception as e:  # e.g. out of memory: every unit of the case reports it
        for impl, mask in todo:
            emit(name, impl, mask, "fwd", float("nan"), float("nan"), "error: inputs: " + rows.one_line(repr(e)))
        return cuda_alive()
    for impl, mask in todo:
        if time.time() > args.stop_at:
            return True
        print(f"# {name} {impl} {mask}", flush=True)
        try:
            layout, call = peer_call(impl, mask, c, x, masks)
        except Exception as e:
            emit(name, impl, mask, "fwd", float("nan"), float("nan"), "error: " + rows.one_line(repr(e)))
            continue
        measure(name, case, impl, mask, layout, call, x, ref, emit, args.rep_ms)
        if not cuda_alive():
            print(f"peers.py: CUDA context lost after {name} {impl} {mask}", flush=True)
            return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--cases", default="", help="comma-separated, in this order (default: all, cases.py's order)")
    ap.add_argument("--impls", default="", help="comma-separated impls to run (default: all)")
    ap.add_argument("--rep-ms", type=float, default=200)
    ap.add_argument("--resume", action="store_true", help="skip units the CSV already holds")
    ap.add_argument("--stop-at", type=float, default=float("inf"), help="start nothing after this epoch time")
    args = ap.parse_args()
    names = [s for s in args.cases.split(",") if s] or list(bench_cases.CASES)
    impls = set(s for s in args.impls.split(",") if s)
    if reference.IMPORT_ERROR is not None:
        print(f"peers.py: import ccattn failed ({reference.IMPORT_ERROR!r}): rows are unchecked", flush=True)
    if FA4_ERROR is not None:
        print(f"peers.py: FA4 not importable ({FA4_ERROR!r}): fa4 and flex_flash are left for a later run", flush=True)
    before = rows.read(args.csv) if args.resume else []
    out = rows.Writer(args.csv, datetime.date.today().isoformat(), torch.cuda.get_device_name())
    left = []
    for name in names:
        c = bench_cases.full(bench_cases.CASES[name])
        todo = [(i, m) for i, m in units(c) if (not impls or i in impls)
                and not rows.done(before, name, i, m, c["bwd"])]
        if FA4_ERROR is not None:
            left += [f"{name}/{i}/{m}" for i, m in todo if i in NEEDS_FA4]
            todo = [(i, m) for i, m in todo if i not in NEEDS_FA4]
        if not todo:
            continue
        if time.time() > args.stop_at:
            left += [f"{name}/{i}/{m}" for i, m in todo]
            continue
        t0 = time.time()
        alive = run_case(name, todo, args, out.row)
        gc.collect()
        torch.cuda.empty_cache()
        if not alive:
            sys.exit(4)
        print(f"# {name}: {time.time() - t0:.0f} s", flush=True)
        now = rows.read(args.csv)
        left += [f"{name}/{i}/{m}" for i, m in todo if not rows.done(now, name, i, m, c["bwd"])]
    if left:
        print(f"peers.py: left for the next call ({len(left)}): {' '.join(left)}", flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
