"""NSA's compressed branch over one long sequence split across the ranks of torchrun (context parallelism).

Each rank generates only its own chunks of q and the raw k / v (zigzag layout by default), runs
``ccattn.nsa.CompressedAttention(process_group=...)`` forward and backward, and reports the time
(slowest rank), the per-GPU TFLOP/s from the exact visible pairs, and the bytes the collectives move.
NCCL on CUDA (one GPU per process, ``LOCAL_RANK``), gloo on CPU.

    torchrun --nproc-per-node 4 examples/context_parallel_nsa.py --check            # CPU: small case, checked
    torchrun --nproc-per-node 2 examples/context_parallel_nsa.py --check --docs 5   # packed documents (varlen)
    torchrun --nproc-per-node 8 examples/context_parallel_nsa.py \\
        --seq 1048576 --heads-q 64 --heads-kv 4 --dim 128 --block 32 --stride 16    # GPUs: the 1M target
    torchrun --nproc-per-node 1 examples/context_parallel_nsa.py --baseline ...     # the same without CP

``--check`` also runs the single-process module on the full sequence on every rank and compares
this rank's out, lse and q / k / v gradient shards, and the compressor's parameter gradients summed
over the group (small sizes only). ``--json FILE`` appends the figures (rank 0); ``--profile DIR``
writes one torch.profiler trace per rank of one forward + backward (the collectives' overlap).
docs/context_parallel.md has the layout and the GPU commands.
"""

import argparse
import copy
import json
import os
import time

import torch
import torch.distributed as dist

from ccattn import distributed as cp
from ccattn.nsa import CompressedAttention


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq", type=int, default=None, help="total positions (default: 256 per chunk)")
    p.add_argument("--seq-per-rank", type=int, default=None, help="positions per rank (weak scaling)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads-q", type=int, default=8)
    p.add_argument("--heads-kv", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--block", type=int, default=32, help="l, raw positions per block")
    p.add_argument("--stride", type=int, default=16, help="d, positions between blocks (compress_factor)")
    p.add_argument("--compression", choices=["mlp", "mean"], default="mlp")
    p.add_argument("--layout", choices=list(cp.LAYOUTS), default="zigzag")
    p.add_argument("--docs", type=int, default=0, help="pack this many documents (varlen; batch 1)")
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--check", action="store_true", help="compare with the single-process call")
    p.add_argument("--cpu", action="store_true", help="gloo on CPU even when a GPU is present")
    p.add_argument("--baseline", action="store_true",
                   help="one process, the module without a process group (the one-GPU time for scaling figures)")
    p.add_argument("--json", default=None, help="append the figures to this file (rank 0)")
    p.add_argument("--profile", default=None, help="write a torch.profiler trace per rank into this folder")
    return p.parse_args()


def chunk_inputs(i, c, args, device, dtype, varlen):
    """Chunk i of the full q, raw k, raw v, dout: the same on whichever rank makes it."""
    g = torch.Generator(device=device).manual_seed(1_000_003 * 7 + i)
    lead = (c,) if varlen else (args.batch, c)

    def rnd(h):
        return torch.randn(*lead, h, args.dim, generator=g, device=device).to(dtype)

    return rnd(args.heads_q), rnd(args.heads_kv), rnd(args.heads_kv), rnd(args.heads_q)


def document_offsets(total, docs):
    gen = torch.Generator().manual_seed(5)
    cuts = torch.randperm(total - 1, generator=gen)[:docs - 1].add(1).sort().values.tolist()
    return torch.tensor([0] + cuts + [total], dtype=torch.int32)


def visible_pairs(cu, l, d):
    """Exact (query, block) pairs of the leak-free NSA band, summed over documents."""
    total = 0
    for a, b in zip(cu[:-1], cu[1:]):
        t = torch.arange(b - a, dtype=torch.int64)
        blocks = max(0, (b - a - l) // d + 1)
        total += int(torch.clamp(torch.div(t - (l - 1), d, rounding_mode="floor") + 1, 0, blocks).sum())
    return total


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    args = parse()
    cuda = torch.cuda.is_available() and not args.cpu
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    varlen = args.docs > 0
    if varlen and args.batch != 1:
        raise SystemExit("--docs packs documents into one sequence: use --batch 1")
    n_chunks = 1 if args.baseline else cp.num_chunks(world, args.layout)
    total = args.seq or (args.seq_per_rank * world if args.seq_per_rank else 256 * n_chunks)
    if total % n_chunks:
        raise SystemExit(f"--seq {total} must be a multiple of {n_chunks} ({args.layout} over {world} ranks)")
    c = total // n_chunks
    l, d = args.block, args.stride
    cu = document_offsets(total, args.docs) if varlen else None
    cu_list = cu.tolist() if varlen else [0, total]

    if args.baseline and (world != 1 or args.check):
        raise SystemExit("--baseline runs one process (--nproc-per-node 1) and has nothing to --check against")
    torch.manual_seed(0)  # the same compressor weights on every rank
    branch = CompressedAttention(head_dim=args.dim, block_size=l, stride=d, compression=args.compression,
                                 process_group=None if args.baseline else dist.group.WORLD,
                                 cp_layout=args.layout).to(device)
    if args.compression == "mlp":  # leave the mean-pooling start so the MLP matters
        for m in (branch.compress_k, branch.compress_v):
            torch.nn.init.normal_(m.fc2.weight, std=0.02)

    held = (0,) if args.baseline else cp.chunks_of_rank(rank, world, args.layout)
    mine = [chunk_inputs(i, c, args, device, dtype, varlen) for i in held]
    dim = 0 if varlen else 1
    q, k, v, dout = (torch.cat([m[t] for m in mine], dim) for t in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def step():
        for t in (q, k, v):
            t.grad = None
        branch.zero_grad(set_to_none=True)
        out, lse = branch(q, k, v, cu_seqlens=cu)
        out.backward(dout)
        return out, lse

    times = []
    for it in range(args.warmup + args.iters):
        dist.barrier()
        sync(device)
        t0 = time.perf_counter()
        out, lse = step()
        sync(device)
        if it >= args.warmup:
            times.append(time.perf_counter() - t0)
    fwd_times = []
    with torch.no_grad():
        for it in range(args.warmup + args.iters):
            dist.barrier()
            sync(device)
            t0 = time.perf_counter()
            branch(q, k, v, cu_seqlens=cu)
            sync(device)
            if it >= args.warmup:
                fwd_times.append(time.perf_counter() - t0)

    slowest = torch.tensor([min(fwd_times), min(times)], dtype=torch.float64, device=device)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    t_fwd, t_all = slowest.tolist()
    pairs = visible_pairs(cu_list, l, d)
    per_gpu = pairs * args.batch * args.heads_q / world
    fwd_flops = 2 * per_gpu * (2 * args.dim)
    bwd_flops = 2 * per_gpu * (5 * args.dim)
    n_blocks = sum(max(0, (b - a - l) // d + 1) for a, b in zip(cu_list[:-1], cu_list[1:]))
    bytes_fwd, bytes_bwd = cp.communicated_bytes(world_size=world, seqlen_k=n_blocks, heads_kv=args.heads_kv,
                                                 head_dim_qk=args.dim, head_dim_v=args.dim, batch=args.batch)
    figures = dict(world_size=world, backend=dist.get_backend(), device=str(device), seq=total, batch=args.batch,
                   heads_q=args.heads_q, heads_kv=args.heads_kv, dim=args.dim, block=l, stride=d,
                   compression=args.compression, layout="none (baseline)" if args.baseline else args.layout,
                   docs=args.docs, blocks=n_blocks,
                   fwd_ms=1e3 * t_fwd, fwd_bwd_ms=1e3 * t_all, fwd_tflops_per_gpu=fwd_flops / t_fwd / 1e12,
                   fwd_bwd_tflops_per_gpu=(fwd_flops + bwd_flops) / t_all / 1e12,
                   gather_bytes_per_rank=bytes_fwd, reduce_scatter_bytes_per_rank=bytes_bwd)
    if cuda:
        figures["gpu"] = torch.cuda.get_device_name(device)
    if rank == 0:
        print(f"{world} ranks ({figures['backend']}), {figures['layout']}, S={total}, {n_blocks} blocks, "
              f"{args.heads_q}/{args.heads_kv} heads, d{args.dim}: forward {figures['fwd_ms']:.2f} ms "
              f"({figures['fwd_tflops_per_gpu']:.3g} TFLOP/s per rank), forward+backward {figures['fwd_bwd_ms']:.2f} ms "
              f"({figures['fwd_bwd_tflops_per_gpu']:.3g} TFLOP/s per rank); per rank and call the all-gather "
              f"moves {bytes_fwd / 2**20:.2f} MiB, the reduce-scatter {bytes_bwd / 2**20:.2f} MiB")
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(figures) + "\n")

    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=activities) as prof:
            step()
            sync(device)
        prof.export_chrome_trace(os.path.join(args.profile, f"rank{rank}.json"))

    failed = False
    if args.check:
        failed = check(args, branch, q, k, v, dout, cu, n_chunks, c, device, dtype, varlen, rank, world)
    dist.barrier()
    dist.destroy_process_group()
    raise SystemExit(1 if failed else 0)


def check(args, branch, q, k, v, dout, cu, n_chunks, c, device, dtype, varlen, rank, world):
    """This rank's results against the single-process module on the full sequence. The loss also
    reaches k_cmp / v_cmp directly (as through NSA's selection branch), so the compressors' bias
    gradients are not sums of attention dK that cancel to rounding noise."""
    dim = 0 if varlen else 1
    full = [chunk_inputs(i, c, args, device, dtype, varlen) for i in range(n_chunks)]
    fq, fk, fv, fdout = (torch.cat([m[t] for m in full], dim) for t in range(4))
    fq, fk, fv = (t.requires_grad_() for t in (fq, fk, fv))
    single = copy.deepcopy(branch)
    single.process_group = None
    single.zero_grad(set_to_none=True)
    ref_out, ref_lse, ref_k_cmp, ref_v_cmp = single(fq, fk, fv, cu_seqlens=cu, return_compressed=True)
    g = torch.Generator(device=device).manual_seed(11)
    gk = torch.randn(ref_k_cmp.shape, generator=g, device=device).to(dtype)
    gv = torch.randn(ref_v_cmp.shape, generator=g, device=device).to(dtype)
    torch.autograd.backward([ref_out, ref_k_cmp, ref_v_cmp], [fdout, gk, gv])

    for t in (q, k, v):
        t.grad = None
    branch.zero_grad(set_to_none=True)
    out, lse, k_cmp, v_cmp = branch(q, k, v, cu_seqlens=cu, return_compressed=True)
    keys = dict(seqlen_q=fq.shape[dim], compress_factor=args.stride, rank=rank, world_size=world,
                layout=args.layout, dim=dim)
    if varlen:
        blocks = [max(0, (b - a - args.block) // args.stride + 1) for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())]
        keys.update(cu_seqlens_q=cu, cu_seqlens_k=[sum(blocks[:i]) for i in range(len(blocks) + 1)])
    torch.autograd.backward([out, k_cmp, v_cmp], [dout, cp.shard_keys(gk, **keys), cp.shard_keys(gv, **keys)])
    shard = dict(rank=rank, world_size=world, layout=args.layout)
    worst = {}

    def compare(name, got, want):
        got, want = got.detach().float(), want.detach().float()
        finite = torch.isfinite(want)
        same_inf = torch.equal(torch.isinf(got), torch.isinf(want))
        diff = float((got - want)[finite].abs().max()) if finite.any() else 0.0
        scale = float(want[finite].abs().max()) if finite.any() else 1.0
        worst[name] = diff / max(scale, 1e-30) / torch.finfo(dtype).eps if same_inf else float("inf")

    compare("k_cmp", k_cmp, cp.shard_keys(ref_k_cmp, **keys))
    compare("out", out, cp.shard_sequence(ref_out, dim=dim, **shard))
    compare("lse", lse, cp.shard_sequence(ref_lse, dim=1 if varlen else 2, **shard))
    for name, mine, ref in (("dq", q, fq), ("dk_raw", k, fk), ("dv_raw", v, fv)):
        compare(name, mine.grad, cp.shard_sequence(ref.grad, dim=dim, **shard))
    for (name, p), (_, p_ref) in zip(branch.named_parameters(), single.named_parameters()):
        g = p.grad.detach().float().clone()
        dist.all_reduce(g)
        compare(f"param {name}", g, p_ref.grad)
    # out, lse, dq: the same numbers as the single call; gradients of keys and values and parameters:
    # partial sums added in float32, within a few roundings of the dtype
    limits = {"k_cmp": 1, "out": 1, "lse": 1, "dq": 1}
    bad = {n: r for n, r in worst.items() if r > limits.get(n, 8)}
    summary = torch.tensor([float(len(bad))], device=device)
    dist.all_reduce(summary)
    if rank == 0 or bad:
        detail = ", ".join(f"{n} {r:.2f}" for n, r in worst.items())
        print(f"check rank {rank}: largest |difference| / (eps x largest value): {detail}"
              + (f" -- FAILED: {sorted(bad)}" if bad else ""))
    if rank == 0:
        print("check: " + ("passed on every rank" if summary.item() == 0 else "FAILED"))
    return summary.item() != 0


if __name__ == "__main__":
    main()
