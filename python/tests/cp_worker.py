"""The body of test_distributed.py: runs in every process of a spawned gloo group (CPU, 127.0.0.1),
or of an NCCL group on CUDA devices (one per rank; the tensors' default device is the rank's GPU).

Every case builds the full problem from a fixed seed (the same on every rank), runs the
single-process call on the full sequence, runs the context-parallel call on this rank's shard, and
compares this rank's rows of out and lse and its shards of dq, dk, dv. A case returns a list of
failures (empty: passed) and the worst error ratios it saw; the parent collects them per rank.
"""

import copy
import json
import math
import os
import time
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist

import ccattn
from ccattn import distributed as cp
from ccattn.nsa import CompressedAttention

LAYOUTS = ("zigzag", "contiguous")


class Check:
    """Collects mismatches. Tolerances are multiples of the dtype's epsilon relative to the largest
    magnitude of the single-process tensor: out, lse and dq are computed from the same keys in the
    same order as the full call (0 expected); dk and dv add P float32 partial sums of values the
    kernel rounded to the dtype, so they may differ by a few roundings."""

    def __init__(self, dtype, world_size):
        self.eps = torch.finfo(dtype).eps
        self.world_size = world_size
        self.errors, self.worst = [], {}

    def close(self, name, got, want, ulps):
        got, want = got.detach().float(), want.detach().float()
        if got.shape != want.shape:
            self.errors.append(f"{name}: shape {tuple(got.shape)}, want {tuple(want.shape)}")
            return
        if not torch.equal(torch.isinf(got), torch.isinf(want)) or torch.isnan(got).any() or torch.isnan(want).any():
            self.errors.append(f"{name}: infinities or NaNs differ")
            return
        finite = torch.isfinite(want)
        if not finite.any():
            return
        diff = float((got - want)[finite].abs().max())
        scale = max(float(want[finite].abs().max()), 1e-30)
        ratio = diff / (scale * self.eps)
        key = name.split("[")[0]
        self.worst[key] = max(self.worst.get(key, 0.0), ratio)
        if ratio > ulps:
            self.errors.append(f"{name}: max |diff| {diff:.3g} = {ratio:.2f} eps x max |ref| {scale:.3g} "
                               f"(allowed {ulps})")

    def true(self, name, cond):
        if not cond:
            self.errors.append(name)


def rand(gen, *shape, dtype, scale=1.0):
    # drawn on the CPU (the generator's device), so that every backend sees the same numbers
    return (scale * torch.randn(*shape, generator=gen, device="cpu")).to(device=torch.get_default_device(), dtype=dtype)


def leaves(*ts):
    return [t.detach().clone().requires_grad_() for t in ts]


GRAD_ULPS = 4  # dk / dv: a few roundings of the dtype (see Check)


# ------------------------------------------------------------------------------------------------
# Fixed length
# ------------------------------------------------------------------------------------------------

def fixed_case(rank, world, *, seed, b=2, chunk=6, hq=4, hkv=2, dqk=16, dv=16, causal=True, cf=1, delta=None,
               window=None, sk=None, scale=None, dtype=torch.bfloat16, expect_empty_rows=False):
    check = Check(dtype, world)
    s = 2 * world * chunk  # a multiple of 2P (zigzag) and of P (contiguous)
    sk = sk if sk is not None else math.ceil(s / cf)
    gen = torch.Generator().manual_seed(seed)
    q, k, v = rand(gen, b, s, hq, dqk, dtype=dtype), rand(gen, b, sk, hkv, dqk, dtype=dtype), \
        rand(gen, b, sk, hkv, dv, dtype=dtype)
    dout = rand(gen, b, s, hq, dv, dtype=dtype)
    mask = dict(causal=causal, compress_factor=cf, diag_offset=delta, window_left=window, scale=scale)
    fq, fk, fv = leaves(q, k, v)
    out, lse = ccattn.attention(fq, fk, fv, return_lse=True, **mask)
    out.backward(dout)
    empty_rows = 0
    for layout in LAYOUTS:
        shard = dict(rank=rank, world_size=world, layout=layout)
        keys = dict(seqlen_q=s, compress_factor=cf, **shard)
        lq, = leaves(cp.shard_sequence(q, **shard))
        lk, lv = leaves(cp.shard_keys(k, **keys), cp.shard_keys(v, **keys))
        lout, llse = cp.context_parallel_attention(lq, lk, lv, group=None, layout=layout, seqlen_k=sk,
                                                   return_lse=True, **mask)
        lout.backward(cp.shard_sequence(dout, **shard))
        tag = f"[{layout}]"
        check.close(f"out{tag}", lout, cp.shard_sequence(out, **shard), 0)
        check.close(f"lse{tag}", llse, cp.shard_sequence(lse, dim=2, **shard), 0)
        check.close(f"dq{tag}", lq.grad, cp.shard_sequence(fq.grad, **shard), 0)
        check.close(f"dk{tag}", lk.grad, cp.shard_keys(fk.grad, **keys), GRAD_ULPS)
        check.close(f"dv{tag}", lv.grad, cp.shard_keys(fv.grad, **keys), GRAD_ULPS)
        # the collective helper puts the shards back together
        check.close(f"all_gather_sequence{tag}", cp.all_gather_sequence(lout.detach(), layout=layout), out, 0)
        empty_rows += int(torch.isinf(llse).all(dim=(0, 1)).sum())
    if expect_empty_rows:
        # some rank holds rows that see no key at all: the case is what it claims to be
        total = torch.tensor([empty_rows])
        dist.all_reduce(total)
        check.true(f"no empty rows anywhere ({int(total)})", int(total) > 0)
    return check


# ------------------------------------------------------------------------------------------------
# Varlen: packed documents that cross shard edges
# ------------------------------------------------------------------------------------------------

def doc_lengths(world, chunk, seed):
    """Lengths of documents packed into T = 2P·chunk positions: one longer than two chunks, empty
    documents, single-token ones, the rest random; edges fall anywhere."""
    total = 2 * world * chunk
    gen = torch.Generator().manual_seed(seed)
    lengths = [0, 2 * chunk + 3, 1, 0]
    while sum(lengths) < total:
        lengths.append(min(int(torch.randint(1, chunk + 4, (1,), generator=gen)), total - sum(lengths)))
        if len(lengths) % 4 == 0:
            lengths.append(0)
    lengths[-1] = total - sum(lengths[:-1])
    return lengths


def cumsum(xs):
    out = [0]
    for x in xs:
        out.append(out[-1] + x)
    return out


def varlen_case(rank, world, *, seed, chunk=7, hq=4, hkv=2, dqk=16, dv=16, causal=True, cf=1, delta=None,
                window=None, extra_keys=(0, 2, -1, 1), lengths=None, dtype=torch.bfloat16):
    check = Check(dtype, world)
    lengths = lengths or doc_lengths(world, chunk, seed)
    nks = [max(0, math.ceil(n / cf) + extra_keys[i % len(extra_keys)]) for i, n in enumerate(lengths)]
    if len(nks) > 5:
        nks[5] = 0  # a document with queries and no key
    cu_q, cu_k = cumsum(lengths), cumsum(nks)
    t, tk = cu_q[-1], cu_k[-1]
    gen = torch.Generator().manual_seed(seed)
    q, k, v = rand(gen, t, hq, dqk, dtype=dtype), rand(gen, tk, hkv, dqk, dtype=dtype), rand(gen, tk, hkv, dv, dtype=dtype)
    dout = rand(gen, t, hq, dv, dtype=dtype)
    mask = dict(causal=causal, compress_factor=cf, diag_offset=delta, window_left=window)
    fq, fk, fv = leaves(q, k, v)
    cq, ck = torch.tensor(cu_q, dtype=torch.int32), torch.tensor(cu_k, dtype=torch.int32)
    out, lse = ccattn.attention_varlen(fq, fk, fv, cq, ck, max(lengths), max(nks), return_lse=True, **mask)
    out.backward(dout)
    for layout in LAYOUTS:
        shard = dict(rank=rank, world_size=world, layout=layout, dim=0)
        keys = dict(seqlen_q=t, compress_factor=cf, cu_seqlens_q=cq, cu_seqlens_k=ck, **shard)
        lq, = leaves(cp.shard_sequence(q, **shard))
        lk, lv = leaves(cp.shard_keys(k, **keys), cp.shard_keys(v, **keys))
        lout, llse = cp.context_parallel_attention_varlen(lq, lk, lv, cq, ck, layout=layout, return_lse=True, **mask)
        lout.backward(cp.shard_sequence(dout, **shard))
        tag = f"[{layout}]"
        check.close(f"out{tag}", lout, cp.shard_sequence(out, **shard), 0)
        check.close(f"lse{tag}", llse, cp.shard_sequence(lse, rank=rank, world_size=world, layout=layout, dim=1), 0)
        check.close(f"dq{tag}", lq.grad, cp.shard_sequence(fq.grad, **shard), 0)
        check.close(f"dk{tag}", lk.grad, cp.shard_keys(fk.grad, **keys), GRAD_ULPS)
        check.close(f"dv{tag}", lv.grad, cp.shard_keys(fv.grad, **keys), GRAD_ULPS)
    return check


# ------------------------------------------------------------------------------------------------
# NSA's compressed branch with process_group=
# ------------------------------------------------------------------------------------------------

def nsa_module(seed, d_head, l, d, compression):
    torch.manual_seed(seed)
    ref = CompressedAttention(head_dim=d_head, block_size=l, stride=d, compression=compression)
    if compression == "mlp":  # leave the mean-pooling start so the MLP path matters
        for m in (ref.compress_k, ref.compress_v):
            torch.nn.init.normal_(m.fc2.weight, std=0.05)
    return ref


def nsa_case(rank, world, *, seed, l, d, chunk, varlen=False, compression="mlp", b=2, hq=4, hkv=2, d_head=16,
             dtype=torch.bfloat16):
    check = Check(dtype, world)
    total = 2 * world * chunk
    gen = torch.Generator().manual_seed(seed)
    shape = (total,) if varlen else (b, total)
    q, k, v = rand(gen, *shape, hq, d_head, dtype=dtype), rand(gen, *shape, hkv, d_head, dtype=dtype), \
        rand(gen, *shape, hkv, d_head, dtype=dtype)
    dout = rand(gen, *shape, hq, d_head, dtype=dtype)
    cu = torch.tensor(cumsum(doc_lengths(world, chunk, seed)), dtype=torch.int32) if varlen else None
    dim = 0 if varlen else 1
    ref = nsa_module(seed, d_head, l, d, compression).to(dtype)
    fq, fk, fv = leaves(q, k, v)
    out, lse, k_cmp, v_cmp = ref(fq, fk, fv, cu_seqlens=cu, return_compressed=True)
    # Gradient also reaches k_cmp / v_cmp directly (as from NSA's selection branch): without it the
    # compressors' bias gradients are sums of attention dK that cancel to near zero, and comparing
    # them would compare rounding noise.
    gk, gv = rand(gen, *k_cmp.shape, dtype=dtype), rand(gen, *v_cmp.shape, dtype=dtype)
    torch.autograd.backward([out, k_cmp, v_cmp], [dout, gk, gv])
    for layout in LAYOUTS:
        mod = copy.deepcopy(ref)
        mod.zero_grad()
        mod.process_group, mod.cp_layout = dist.group.WORLD, layout
        shard = dict(rank=rank, world_size=world, layout=layout, dim=dim)
        lq, lk, lv = leaves(*(cp.shard_sequence(t, **shard) for t in (q, k, v)))
        lout, llse, lk_cmp, lv_cmp = mod(lq, lk, lv, cu_seqlens=cu, return_compressed=True)
        tag = f"[{layout}]"
        keys = dict(seqlen_q=total, compress_factor=d, **shard)
        if varlen:
            blocks = [max(0, (n - l) // d + 1) for n in doc_lengths(world, chunk, seed)]
            keys.update(cu_seqlens_q=cu, cu_seqlens_k=torch.tensor(cumsum(blocks), dtype=torch.int32))
        torch.autograd.backward([lout, lk_cmp, lv_cmp], [cp.shard_sequence(dout, **shard), cp.shard_keys(gk, **keys),
                                                        cp.shard_keys(gv, **keys)])
        check.close(f"k_cmp{tag}", lk_cmp, cp.shard_keys(k_cmp, **keys), 1)
        check.close(f"v_cmp{tag}", lv_cmp, cp.shard_keys(v_cmp, **keys), 1)
        check.close(f"out{tag}", lout, cp.shard_sequence(out, **shard), 1)
        lse_shard = dict(rank=rank, world_size=world, layout=layout, dim=1 if varlen else 2)
        check.close(f"lse{tag}", llse, cp.shard_sequence(lse, **lse_shard), 1)
        check.close(f"dq{tag}", lq.grad, cp.shard_sequence(fq.grad, **shard), 1)
        check.close(f"dk_raw{tag}", lk.grad, cp.shard_sequence(fk.grad, **shard), GRAD_ULPS)
        check.close(f"dv_raw{tag}", lv.grad, cp.shard_sequence(fv.grad, **shard), GRAD_ULPS)
        for (name, p), (_, p_ref) in zip(mod.named_parameters(), ref.named_parameters()):
            g = p.grad.detach().float().clone()
            dist.all_reduce(g)  # each rank holds its blocks' part of the parameter gradient
            check.close(f"param {name}{tag}", g, p_ref.grad, 2 * GRAD_ULPS)
    return check


def nsa_leak_case(rank, world, *, seed=3, l=8, d=4, chunk=5, hq=4, hkv=2, d_head=16):
    """The leak test of test_leak.py through the distributed path: the gradient of out[t] (global t)
    with respect to every raw key and value after t is exactly zero on every rank's shard, and
    positions before t do get gradient."""
    check = Check(torch.bfloat16, world)
    total = 2 * world * chunk
    gen = torch.Generator().manual_seed(seed)
    q = rand(gen, 1, total, hq, d_head, dtype=torch.bfloat16, scale=0.1)
    k = rand(gen, 1, total, hkv, d_head, dtype=torch.bfloat16, scale=0.1)
    v = rand(gen, 1, total, hkv, d_head, dtype=torch.bfloat16)
    for layout in LAYOUTS:
        mod = nsa_module(seed, d_head, l, d, "mlp").to(torch.bfloat16)
        mod.process_group, mod.cp_layout = dist.group.WORLD, layout
        shard = dict(rank=rank, world_size=world, layout=layout)
        lk, lv = leaves(cp.shard_sequence(k, **shard), cp.shard_sequence(v, **shard))
        out, _ = mod(cp.shard_sequence(q, **shard), lk, lv)
        positions = torch.cat([torch.arange(a, b) for a, b in cp.query_ranges(total, rank, world, layout)])
        seen_past = 0
        for t in range(total):
            g = torch.randn(out.shape[2:], generator=torch.Generator().manual_seed(t), device="cpu").to(out)
            sel = (positions == t).to(out.dtype)[None, :, None, None]  # only the rank holding t contributes
            dk, dv = torch.autograd.grad((out * sel * g).sum(), (lk, lv), retain_graph=True)
            future = positions > t
            gk = dk[0].abs().amax(dim=(1, 2))
            gv = dv[0].abs().amax(dim=(1, 2))
            if bool(gk[future].ne(0).any()) or bool(gv[future].ne(0).any()):
                check.errors.append(f"[{layout}] out[{t}] depends on a future raw position")
            seen_past += int(gv[~future].gt(0).any())
        total_seen = torch.tensor([seen_past])
        dist.all_reduce(total_seen)
        # rows t >= l - 1 read a block; each such t puts gradient on some rank's past positions
        check.true(f"[{layout}] too few rows reached past positions ({int(total_seen)})",
                   int(total_seen) >= total - (l - 1))
    return check


def errors_case(rank, world):
    """Bad arguments raise ValueError naming them, on every rank, before any collective."""
    check = Check(torch.bfloat16, world)
    q = torch.zeros(1, 3, 2, 16, dtype=torch.bfloat16)
    k = torch.zeros(1, 1, 2, 16, dtype=torch.bfloat16)
    expect = [
        ("'q'", lambda: cp.context_parallel_attention(q, k, k, causal=True, layout="zigzag")),  # 3P % 2P != 0
        ("'layout'", lambda: cp.context_parallel_attention(q, k, k, layout="ring")),
        ("'k'", lambda: cp.context_parallel_attention(torch.zeros(1, 4, 2, 16, dtype=torch.bfloat16), k, k,
                                                      compress_factor=1, seqlen_k=4 * world + 5, layout="contiguous")),
        ("'cu_seqlens_q'", lambda: cp.context_parallel_attention_varlen(
            q[0], k[0], k[0], [0, 2, 1], [0, 1, 1])),
    ]
    for name, call in expect:
        try:
            call()
            check.errors.append(f"no error for {name}")
        except ValueError as e:
            check.true(f"error {e} does not name {name}", name in str(e))
    return check


def cases(world):
    """name -> callable(rank, world) -> Check; the same on every rank, run in this order."""
    return {
        "cf1_causal_gqa": lambda r, w: fixed_case(r, w, seed=1, causal=True, cf=1),
        "cf4_blocks_negative_delta_mqa_dv": lambda r, w: fixed_case(r, w, seed=2, cf=4, delta=-3, hq=4, hkv=1,
                                                                    dqk=16, dv=24, chunk=8),
        "cf3_window_shards_without_keys": lambda r, w: fixed_case(r, w, seed=3, cf=3, delta=-5 * w, window=2,
                                                                  hq=2, hkv=2, expect_empty_rows=True),
        "cf1_noncausal_window": lambda r, w: fixed_case(r, w, seed=4, causal=False, cf=1, delta=2, window=3),
        "cf5_positive_delta_extra_keys_scale": lambda r, w: fixed_case(r, w, seed=5, cf=5, delta=7,
                                                                       sk=math.ceil(12 * w / 5) + 3, scale=0.3),
        "cf2_fewer_keys_window_fp16": lambda r, w: fixed_case(r, w, seed=6, cf=2, delta=-1, window=4,
                                                              sk=6 * w - 3, dtype=torch.float16),
        "cf2_noncausal": lambda r, w: fixed_case(r, w, seed=7, causal=False, cf=2),
        "varlen_cf1_default_delta": lambda r, w: varlen_case(r, w, seed=8, cf=1),
        "varlen_cf2_window_negative_delta": lambda r, w: varlen_case(r, w, seed=9, cf=2, delta=-1, window=3),
        "varlen_cf4_nsa_rule_gqa": lambda r, w: varlen_case(r, w, seed=10, cf=4, delta=-7, hq=8, hkv=2,
                                                            extra_keys=(0, -1)),
        "varlen_cf3_noncausal": lambda r, w: varlen_case(r, w, seed=11, causal=False, cf=3),
        # documents of one chunk each: a zigzag rank's two chunks become one varlen call, the documents
        # between them sequences without queries
        "varlen_docs_on_chunk_edges": lambda r, w: varlen_case(r, w, seed=17, cf=2, delta=-1, chunk=6,
                                                               lengths=[6] * (2 * w), extra_keys=(0, 1)),
        "nsa_l8_d4": lambda r, w: nsa_case(r, w, seed=12, l=8, d=4, chunk=8),
        "nsa_l7_d3_ragged_chunks": lambda r, w: nsa_case(r, w, seed=13, l=7, d=3, chunk=5),
        "nsa_l10_d3_halo_longer_than_chunk": lambda r, w: nsa_case(r, w, seed=14, l=10, d=3, chunk=4,
                                                                   compression="mean"),
        "nsa_l4_d4_no_halo": lambda r, w: nsa_case(r, w, seed=15, l=4, d=4, chunk=8, compression="mean"),
        "nsa_varlen_l6_d2": lambda r, w: nsa_case(r, w, seed=16, l=6, d=2, chunk=7, varlen=True),
        "nsa_leak": lambda r, w: nsa_leak_case(r, w),
        "errors": errors_case,
    }


CASE_NAMES = list(cases(2))


def nccl_cases(world):
    """The NCCL path on CUDA tensors: head dims the GPU kernels run (64), fixed length, varlen, NSA."""
    return {
        "nccl_cf1_causal_gqa": lambda r, w: fixed_case(r, w, seed=1, cf=1, dqk=64, dv=64),
        "nccl_cf4_negative_delta_mqa": lambda r, w: fixed_case(r, w, seed=2, cf=4, delta=-3, hq=4, hkv=1, dqk=64,
                                                               dv=64, chunk=8),
        # doc_lengths needs two ranks or more (its first documents span more than two chunks)
        "nccl_varlen_cf4_gqa": lambda r, w: varlen_case(r, w, seed=10, cf=4, delta=-7, hq=8, hkv=2, dqk=64, dv=64,
                                                        extra_keys=(0, -1), lengths=None if w > 1 else [0, 9, 1, 0, 4]),
        "nccl_nsa_l8_d4": lambda r, w: nsa_case(r, w, seed=12, l=8, d=4, chunk=8, d_head=64),
    }


NCCL_CASE_NAMES = list(nccl_cases(1))


def run(rank, world_size, store_path, out_dir, backend="gloo"):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # no NVLink multicast (the device machines' rule)
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
        torch.set_default_device(f"cuda:{rank}")
    dist.init_process_group(backend, init_method=f"file://{store_path}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))
    results = {}
    try:
        for name, case in (nccl_cases if backend == "nccl" else cases)(world_size).items():
            start = time.perf_counter()
            try:
                check = case(rank, world_size)
                errors, worst = check.errors, check.worst
            except Exception:  # noqa: BLE001 (reported to the parent)
                errors, worst = [traceback.format_exc()], {}
            results[name] = {"errors": errors, "worst": worst, "seconds": time.perf_counter() - start}
        dist.barrier()
    finally:
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
        dist.destroy_process_group()
