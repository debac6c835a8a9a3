"""A GPU-free check of bench/peers.py's plumbing: layouts, varlen documents, block sizes, gradients,
the comparison with ccattn, MISMATCH and error rows, resume. Runs peers.py's main on tiny cases on
the CPU, with stand-ins where the real peer needs a GPU: FlexAttention by SDPA over the dense mask its
BlockMask and mask_mod describe (both Flex backends), FA4 by SDPA returning (out, lse), do_bench by
fixed times. With --mismatch the FA4 and FLASH stand-ins compute the wrong mask (as pytorch#188322 did)
and every one of their rows must be flagged. Needs torch and the ccattn package (any build).

usage: python3 bench/check_peers_cpu.py [--mismatch]
"""
import math
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flexmasks  # noqa: E402

flexmasks.DEV = "cpu"  # before peers.py reads it
import cases as bench_cases  # noqa: E402
import peers  # noqa: E402
import rows  # noqa: E402

TINY = {
    "tiny_causal": dict(B=2, Hq=4, Hkv=2, nq=256, nk=256),
    "tiny_nsa": dict(B=2, Hq=8, Hkv=2, nq=512, nk=bench_cases.nsa_keys(512), cf=16, delta=-31, metric="roofline"),
    "tiny_varlen": dict(B=1, Hq=4, Hkv=2, cf=16, delta=-31, docs=[(300, 18), (200, 11), (130, 7)]),
    "tiny_d192": dict(B=1, Hq=4, Hkv=1, nq=384, nk=bench_cases.nsa_keys(384), cf=16, delta=-31, dk=192, dv=128),
    "tiny_decode": dict(B=4, Hq=8, Hkv=2, nq=2, nk=300, causal=False, bwd=False, metric="gbps"),
    "tiny_decode_paged64": dict(B=4, Hq=8, Hkv=2, nq=2, nk=300, causal=False, bwd=False, metric="gbps", page=64),
    "tiny_prefix_lm": dict(B=2, Hq=4, Hkv=4, nq=256, nk=256, band=("prefix_lm", 64)),
    "tiny_chunked": dict(B=1, Hq=2, Hkv=2, nq=300, nk=300, band=("chunked", 128)),
}
WRONG = "--mismatch" in sys.argv


def flex_stand_in(q, k, v, block_mask, enable_gqa=False, kernel_options=None):
    """What flex computes: the BlockMask's blocks and its mask_mod, per element (differentiable on the CPU)."""
    nq, nk = q.shape[2], k.shape[2]
    bq, bk = block_mask.BLOCK_SIZE
    blocks = block_mask.to_dense()[0, 0].bool()
    dense = blocks.repeat_interleave(bq, 0)[:nq].repeat_interleave(bk, 1)[:, :nk]
    qi, ki = torch.arange(nq)[:, None].expand(nq, nk), torch.arange(nk)[None, :].expand(nq, nk)
    dense = dense & block_mask.mask_mod(0, 0, qi, ki)
    if WRONG and kernel_options:
        dense = torch.ones_like(dense)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=enable_gqa)


def fa4_stand_in(q, k, v, causal=False, num_splits=1):
    if num_splits == 0:
        raise AssertionError("SplitKV not supported on SM 9.0")
    out = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), is_causal=causal != WRONG,
                                         enable_gqa=True)
    return out.transpose(1, 2), None


def fa4_paged_stand_in(q, k, v, seqused_k=None, page_table=None, causal=False, num_splits=1):
    """FA4's varlen entry over a paged cache: the pages gathered back into [B, Sk, H, D]."""
    nk = int(seqused_k[0])
    k, v = (x[page_table.long()].flatten(1, 2)[:, :nk] for x in (k, v))
    return fa4_stand_in(q, k, v, causal, num_splits)


def main():
    bench_cases.CASES.clear()
    bench_cases.CASES.update(TINY)
    peers.flex, peers.flash_attn_func, peers.FA4_ERROR = flex_stand_in, fa4_stand_in, None
    peers.flash_attn_varlen_func = fa4_paged_stand_in
    peers.timed = lambda fn, rep: (fn(), 3.0 if fn.__name__ == "fwd_bwd" else 1.0)[1]
    peers.cuda_alive = lambda: True
    torch.cuda.synchronize = lambda *a: None
    torch.cuda.get_device_name = lambda *a: "cpu"
    path = os.path.join(tempfile.mkdtemp(), "peers.csv")
    sys.argv = ["peers.py", "--csv", path]
    peers.main()
    table = rows.latest(rows.read(path))
    passed = failed = 0

    def expect(ok, what):
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        if not ok:
            print("FAILED:", what)

    for name, case in TINY.items():
        c = bench_cases.full(case)
        for impl, mask in peers.units(c):
            for d in ("fwd", "bwd") if c["bwd"] else ("fwd",):
                r = table.get((name, impl, mask, d))
                flagged = WRONG and impl in peers.NEEDS_FA4
                if mask in ("none_splits_auto", "paged_splits_auto") or impl == "sdpa_cudnn":  # stand-in raises; no CPU cuDNN
                    if d == "fwd":  # a failed forward leaves no backward row
                        expect(r is not None and r["note"].startswith("error"), f"{name} {impl} {mask}: error row")
                elif flagged:
                    expect(r is not None and "MISMATCH" in r["note"] and not math.isfinite(rows.number(r["tflops"])),
                           f"{name} {impl} {mask} {d}: MISMATCH, no TFLOP/s")
                else:
                    expect(r is not None and "MISMATCH" not in r["note"] and "relerr=" in r["note"]
                           and math.isfinite(rows.number(r["tflops"])), f"{name} {impl} {mask} {d}: checked figure")
    sys.argv = ["peers.py", "--csv", path, "--resume"]
    before = len(rows.read(path))
    peers.main()
    expect(len(rows.read(path)) == before, "--resume on a complete CSV adds no row")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
