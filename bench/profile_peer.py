"""One peer unit of bench/peers.py run under Nsight Compute's NVTX filter: warmed up (FA4 and Flex
compile on first use), then run once inside the NVTX range "profile" (for bwd only the backward: the
forward runs before the range), so that `ncu --nvtx --nvtx-include profile/` sees just those kernels.
Used by device_build.sh's profile_peer, for issue 11's like-for-like profile of ccattn and FA4 on one
card.

usage: python3 bench/profile_peer.py IMPL MASK CASE fwd|bwd      (e.g. fa4 causal causal_16k_h16 fwd)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as bench_cases  # noqa: E402
import flexmasks  # noqa: E402
import peers  # noqa: E402


def main():
    if len(sys.argv) != 5 or sys.argv[4] not in ("fwd", "bwd"):
        sys.exit(__doc__)
    impl, mask, name, direction = sys.argv[1:]
    c = bench_cases.full(bench_cases.CASES[name])
    if direction == "bwd" and not c["bwd"]:
        sys.exit(f"profile_peer.py: {name} has no backward")
    if impl in peers.NEEDS_FA4 and peers.FA4_ERROR is not None:
        sys.exit(f"profile_peer.py: FA4 not importable ({peers.FA4_ERROR!r}); stage it with bench/fa4.sh")
    x = peers.Inputs(c)
    masks = flexmasks.BlockMasks(name, c, lambda *row: print("block mask:", *row))
    layout, call = peers.peer_call(impl, mask, c, x, masks)
    leaves, dout = x.leaves(layout), x.dout[layout]

    for _ in range(3):  # compile, then steady state
        out = peers.first_tensor(call())
        if direction == "bwd":
            torch.autograd.grad(out, leaves, dout)
    out = peers.first_tensor(call())  # the backward's forward, outside the range
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push("profile")
    if direction == "bwd":
        torch.autograd.grad(out, leaves, dout)
    else:
        peers.first_tensor(call())
    torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
    print(f"profile_peer.py: {impl} {mask} {name} {direction} done")


if __name__ == "__main__":
    main()
