"""Context parallelism on ``torch.distributed``: one long sequence over the ranks of a process group.

Each rank of ``group`` (``P`` ranks) holds a *shard* of the queries and the matching shard of the
compressed keys / values. The full sequence of ``S`` query positions is cut into ``N`` equal chunks
of ``C = S / N`` positions:

- ``layout="contiguous"``: ``N = P``, rank ``r`` holds chunk ``r``;
- ``layout="zigzag"`` (default): ``N = 2P``, rank ``r`` holds chunks ``r`` and ``2P - 1 - r`` (in
  that order), so under a causal mask every rank gets the same amount of work.

**Keys** (docs/context_parallel.md, "How compressed keys are sharded"): compressed key ``j`` stands
for raw positions from ``j·cf`` on, so it lives with the chunk that holds query position ``j·cf``
(``min(j·cf, S - 1)``; keys past the queries go to the last chunk). Chunk ``c`` owns keys
``[min(ceil(c·C / cf), Sk), min(ceil((c + 1)·C / cf), Sk))``, the last chunk up to ``Sk``. For NSA
blocks that is "block ``j`` lives with the rank holding its first raw position ``j·d``". Varlen:
key ``j`` of document ``b`` lives with the chunk holding packed position
``cu_seqlens_q[b] + min(j·cf, len_b - 1)`` (a document without queries: position
``cu_seqlens_q[b] - 1``).

**Forward**: the compressed K/V shards are all-gathered (one collective, asynchronous), every rank
rebuilds the full compressed K/V in key order, and runs ccattn on its query chunks; the queries of
a chunk (or piece of a document) starting at absolute position ``p`` see the keys through the band
with ``diag_offset + p`` (docs/semantics.md, the chunked-prefill / context-parallel row). Each rank's
rows therefore see exactly the keys the single call on the full sequence lets them see, and compute
the same numbers.

**Backward**: dQ stays local; each rank's dK/dV over the full compressed sequence (partial sums over
its queries, accumulated in float32) is reduce-scattered (float32) to the owners of the key shards.

Every rank of the group must call these functions with the same arguments (they are collectives),
and must run the backward through them (as with DDP).
"""

import bisect
import functools
import math

import torch
import torch.distributed as dist

from . import _ops
from .functional import _check_int, _check_mask, _check_tensor

__all__ = [
    "LAYOUTS", "context_parallel_attention", "context_parallel_attention_varlen", "chunks_of_rank",
    "query_ranges", "key_ranges", "shard_sequence", "unshard_sequence", "shard_keys", "unshard_keys",
    "all_gather_sequence", "communicated_bytes",
]

LAYOUTS = ("zigzag", "contiguous")


# ----------------------------------------------------------------------------------------------
# Layouts: which chunks a rank holds, where the keys of a chunk are
# ----------------------------------------------------------------------------------------------

def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"ccattn.distributed: argument 'layout' must be 'zigzag' or 'contiguous', got {layout!r}")


def num_chunks(world_size, layout="zigzag"):
    """How many equal chunks the sequence is cut into: ``2P`` (zigzag) or ``P`` (contiguous)."""
    _check_layout(layout)
    return 2 * world_size if layout == "zigzag" else world_size


def chunks_of_rank(rank, world_size, layout="zigzag"):
    """The chunk indices rank ``rank`` holds, in the order they are stored in its shard."""
    _check_layout(layout)
    if not 0 <= rank < world_size:
        raise ValueError(f"ccattn.distributed: rank {rank} is not in a group of {world_size}")
    return (rank, 2 * world_size - 1 - rank) if layout == "zigzag" else (rank,)


def _owner(chunk, world_size, layout):
    """(rank, index among that rank's chunks) of a chunk."""
    if layout == "contiguous":
        return chunk, 0
    return (chunk, 0) if chunk < world_size else (2 * world_size - 1 - chunk, 1)


def _chunk_size(seqlen, world_size, layout, name="q"):
    n = num_chunks(world_size, layout)
    if seqlen <= 0 or seqlen % n:
        raise ValueError(f"ccattn.distributed: the full sequence of argument '{name}' ({seqlen} positions) must be "
                         f"a positive multiple of {n} ({layout} layout over {world_size} ranks: {n} equal chunks)")
    return seqlen // n


def query_ranges(seqlen, rank, world_size, layout="zigzag"):
    """``[(start, end), ...]``: the absolute query positions of rank ``rank``'s chunks, in shard order."""
    c = _chunk_size(seqlen, world_size, layout)
    return [(i * c, (i + 1) * c) for i in chunks_of_rank(rank, world_size, layout)]


def _ceil_div(a, b):
    return -(-a // b)


@functools.lru_cache(maxsize=512)
def _key_bounds(cu_q, cu_k, cf, n, c):
    """Key boundaries kb[0..n]: chunk i owns global keys [kb[i], kb[i + 1]).

    Key j of document b lives at packed position q0 + min(j·cf, L - 1) (L = its query count; a
    document without queries at q0 - 1), and belongs to the chunk holding that position. The count
    of keys at positions < x is cu_k[b*] (documents ending at or before x) plus, for the document
    b* straddling x, the keys with q0 + j·cf < x.
    """
    kb = [0] * (n + 1)
    kb[n] = cu_k[-1]
    docs = len(cu_q) - 1
    for i in range(1, n):
        x = i * c
        b = bisect.bisect_right(cu_q, x, 1) - 1  # documents 0..b-1 have cu_q[b + 1] <= x
        count = cu_k[b]
        if b < docs and cu_q[b] < x:
            count += min(cu_k[b + 1] - cu_k[b], _ceil_div(x - cu_q[b], cf))
        kb[i] = count
    return tuple(kb)


def _as_list(x, name):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        if x.dim() != 1:
            raise ValueError(f"ccattn.distributed: argument '{name}' must be int32 [B + 1], got shape {tuple(x.shape)}")
        x = x.tolist()  # a synchronization for device tensors (pass host tensors or lists to avoid it)
    x = tuple(int(t) for t in x)
    if len(x) < 1 or x[0] != 0 or any(b < a for a, b in zip(x, x[1:])):
        raise ValueError(f"ccattn.distributed: argument '{name}' must be non-decreasing and start at 0, got {list(x)}")
    return x


def _bounds(seqlen_q, seqlen_k, compress_factor, world_size, layout, cu_seqlens_q=None, cu_seqlens_k=None):
    c = _chunk_size(seqlen_q, world_size, layout)
    n = num_chunks(world_size, layout)
    if cu_seqlens_q is None:
        cu_q, cu_k = (0, seqlen_q), (0, seqlen_k)
    else:
        cu_q, cu_k = cu_seqlens_q, cu_seqlens_k
    return _key_bounds(cu_q, cu_k, compress_factor, n, c)


def key_ranges(rank, world_size, *, seqlen_q, seqlen_k=None, compress_factor=1, layout="zigzag",
               cu_seqlens_q=None, cu_seqlens_k=None):
    """``[(start, end), ...]``: the global (compressed) key indices of rank ``rank``'s shard, one
    range per chunk it holds, in shard order.

    Fixed length: ``seqlen_q`` query positions, ``seqlen_k`` keys (default ``ceil(seqlen_q / cf)``).
    Varlen: the full ``cu_seqlens_q`` / ``cu_seqlens_k`` (``seqlen_q`` = their last query offset).
    """
    _check_int("compress_factor", compress_factor, minimum=1)
    cu_q, cu_k = _as_list(cu_seqlens_q, "cu_seqlens_q"), _as_list(cu_seqlens_k, "cu_seqlens_k")
    if cu_q is not None:
        seqlen_q, seqlen_k = cu_q[-1], cu_k[-1]
    elif seqlen_k is None:
        seqlen_k = _ceil_div(seqlen_q, compress_factor)
    kb = _bounds(seqlen_q, seqlen_k, compress_factor, world_size, layout, cu_q, cu_k)
    return [(kb[i], kb[i + 1]) for i in chunks_of_rank(rank, world_size, layout)]


def _take(x, ranges, dim):
    parts = [x.narrow(dim, a, b - a) for a, b in ranges]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _place(shards, rank_ranges, dim):
    pieces = []
    for shard, ranges in zip(shards, rank_ranges):
        offset = 0
        for a, b in ranges:
            pieces.append((a, shard.narrow(dim, offset, b - a)))
            offset += b - a
        if offset != shard.shape[dim]:
            raise ValueError(f"ccattn.distributed: a shard has {shard.shape[dim]} rows along dim {dim}, "
                             f"its ranges {ranges} need {offset}")
    pieces.sort(key=lambda t: t[0])
    return torch.cat([p for _, p in pieces], dim)


def shard_sequence(x, rank, world_size, *, layout="zigzag", dim=1):
    """Rank ``rank``'s shard of a full sequence ``x`` (queries, or raw keys / values that share the
    query positions): its chunks along ``dim`` (1 for ``[B, S, H, D]``, 0 for varlen ``[T, H, D]``),
    concatenated in shard order."""
    return _take(x, query_ranges(x.shape[dim], rank, world_size, layout), dim)


def unshard_sequence(shards, *, layout="zigzag", dim=1):
    """The full sequence from the list of every rank's shard (``shards[r]`` from rank ``r``)."""
    world_size = len(shards)
    seqlen = sum(s.shape[dim] for s in shards)
    return _place(shards, [query_ranges(seqlen, r, world_size, layout) for r in range(world_size)], dim)


def shard_keys(k, rank, world_size, *, seqlen_q, compress_factor=1, layout="zigzag", dim=1,
               cu_seqlens_q=None, cu_seqlens_k=None):
    """Rank ``rank``'s shard of the full compressed keys (or values) ``k`` (``Sk = k.shape[dim]``):
    the keys of its chunks, by the rule of :func:`key_ranges`."""
    ranges = key_ranges(rank, world_size, seqlen_q=seqlen_q, seqlen_k=k.shape[dim], compress_factor=compress_factor,
                        layout=layout, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    return _take(k, ranges, dim)


def unshard_keys(shards, *, seqlen_q, compress_factor=1, layout="zigzag", dim=1, cu_seqlens_q=None,
                 cu_seqlens_k=None):
    """The full compressed keys (or values) from the list of every rank's key shard."""
    world_size = len(shards)
    seqlen_k = sum(s.shape[dim] for s in shards)
    ranges = [key_ranges(r, world_size, seqlen_q=seqlen_q, seqlen_k=seqlen_k, compress_factor=compress_factor,
                         layout=layout, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
              for r in range(world_size)]
    return _place(shards, ranges, dim)


def _group_info(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("ccattn.distributed: torch.distributed is not initialized (init_process_group first)")
    group = group if group is not None else dist.group.WORLD
    return group, dist.get_rank(group), dist.get_world_size(group)


def all_gather_sequence(x, *, group=None, layout="zigzag", dim=1):
    """Collective, no autograd: every rank gets the full sequence from the ranks' query shards."""
    group, _, world_size = _group_info(group)
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return unshard_sequence(parts, layout=layout, dim=dim)


def communicated_bytes(*, world_size, seqlen_k, heads_kv, head_dim_qk, head_dim_v, batch=1, element_size=2,
                       reduce_element_size=4):
    """Bytes one rank receives per attention call (ring algorithms), forward and backward, with key
    shards of at most ``M = max keys per rank`` (about ``Sk / P``):

    - forward all-gather of K and V: ``(P - 1) · M · B · Hkv · (Dqk + Dv) · element_size``;
    - backward reduce-scatter of dK and dV in float32: ``(P - 1) · M · B · Hkv · (Dqk + Dv) · 4``.

    Returned for evenly split keys, ``M = ceil(Sk / P)``, as ``(forward, backward)``.
    """
    m = _ceil_div(seqlen_k, world_size)
    row = batch * heads_kv * (head_dim_qk + head_dim_v)
    return (world_size - 1) * m * row * element_size, (world_size - 1) * m * row * reduce_element_size


# ----------------------------------------------------------------------------------------------
# The plan of one rank's calls
# ----------------------------------------------------------------------------------------------

class _Call:
    """One ccattn call: local query rows [q0, q1), full-key rows [k0, k1), its diag_offset, and for
    varlen its host cu_seqlens (relative to q0 / k0) and max lengths."""
    __slots__ = ("q0", "q1", "k0", "k1", "delta", "cu_q", "cu_k", "max_q", "max_k")

    def __init__(self, q0, q1, k0, k1, delta, cu_q=None, cu_k=None, max_q=None, max_k=None):
        self.q0, self.q1, self.k0, self.k1, self.delta = q0, q1, k0, k1, delta
        self.cu_q, self.cu_k, self.max_q, self.max_k = cu_q, cu_k, max_q, max_k


class _Plan:
    """Everything one rank needs, from host integers only (cached)."""

    def __init__(self, rank, world_size, layout, kb, calls, chunk):
        self.rank, self.world_size, self.layout, self.kb, self.calls, self.chunk = \
            rank, world_size, layout, kb, calls, chunk
        self.n = len(kb) - 1
        # per rank: [(chunk, key start, key end, offset in that rank's shard)]
        self.rank_keys = []
        for r in range(world_size):
            offset, ranges = 0, []
            for i in chunks_of_rank(r, world_size, layout):
                ranges.append((i, kb[i], kb[i + 1], offset))
                offset += kb[i + 1] - kb[i]
            self.rank_keys.append(ranges)
        self.counts = [sum(b - a for _, a, b, _ in ranges) for ranges in self.rank_keys]
        self.max_count = max(self.counts)
        self.seqlen_k = kb[-1]
        # (rank, offset, start, end) per chunk, in key order
        self.key_order = sorted((a, b, r, off) for r, ranges in enumerate(self.rank_keys)
                                for _, a, b, off in ranges)


@functools.lru_cache(maxsize=256)
def _fixed_plan(rank, world_size, layout, seqlen_q, seqlen_k, cf, delta):
    c = _chunk_size(seqlen_q, world_size, layout)
    kb = _key_bounds((0, seqlen_q), (0, seqlen_k), cf, num_chunks(world_size, layout), c)
    calls = [_Call(li * c, (li + 1) * c, 0, seqlen_k, delta + i * c)
             for li, i in enumerate(chunks_of_rank(rank, world_size, layout))]
    return _Plan(rank, world_size, layout, kb, calls, c)


@functools.lru_cache(maxsize=256)
def _varlen_plan(rank, world_size, layout, cu_q, cu_k, cf, delta):
    total = cu_q[-1]
    c = _chunk_size(total, world_size, layout, "q (varlen: cu_seqlens_q[-1])")
    kb = _key_bounds(cu_q, cu_k, cf, num_chunks(world_size, layout), c)
    # Pieces: (document, local start, local end, position of the piece's first row in its document)
    pieces = []
    for li, i in enumerate(chunks_of_rank(rank, world_size, layout)):
        s, e = i * c, (i + 1) * c
        b = bisect.bisect_right(cu_q, s) - 1
        while b < len(cu_q) - 1 and cu_q[b] < e:
            a0, a1 = max(cu_q[b], s), min(cu_q[b + 1], e)
            if a1 > a0:
                pieces.append((b, a0 - s + li * c, a1 - s + li * c, a0 - cu_q[b]))
            b += 1
    # Adjacent pieces (in local order, documents increasing) with the same effective offset are one
    # varlen call; documents between them that hold no local rows become sequences without queries.
    calls, run = [], []

    def effective(piece):
        b, _, _, p = piece
        base = delta if delta is not None else ((cu_k[b + 1] - cu_k[b]) - (cu_q[b + 1] - cu_q[b]) if cf == 1 else 0)
        return base + p

    def flush():
        if not run:
            return
        b0, b1 = run[0][0], run[-1][0]
        rows = {b: hi - lo for b, lo, hi, _ in run}
        lengths_q = [rows.get(b, 0) for b in range(b0, b1 + 1)]
        cu_q_call = [0]
        for n in lengths_q:
            cu_q_call.append(cu_q_call[-1] + n)
        cu_k_call = [cu_k[b] - cu_k[b0] for b in range(b0, b1 + 2)]
        max_k = max(cu_k_call[t + 1] - cu_k_call[t] for t in range(len(lengths_q)))
        calls.append(_Call(run[0][1], run[-1][2], cu_k[b0], cu_k[b1 + 1], effective(run[0]),
                           tuple(cu_q_call), tuple(cu_k_call), max(lengths_q), max_k))
        run.clear()

    for piece in pieces:
        if run and not (piece[0] > run[-1][0] and piece[1] == run[-1][2] and effective(piece) == effective(run[0])):
            flush()
        run.append(piece)
    flush()
    assert calls[0].q0 == 0 and calls[-1].q1 == c * len(chunks_of_rank(rank, world_size, layout))
    return _Plan(rank, world_size, layout, kb, calls, c)


# ----------------------------------------------------------------------------------------------
# Collectives on key shards: gather (forward), reduce-scatter (backward)
# ----------------------------------------------------------------------------------------------

def _padded(x, dim, rows):
    if x.shape[dim] == rows:
        return x.contiguous()
    shape = list(x.shape)
    shape[dim] = rows
    out = x.new_zeros(shape)
    out.narrow(dim, 0, x.shape[dim]).copy_(x)
    return out


class _PendingKeys:
    """An all-gather of key shards in flight (``async_op=True``); ``wait()`` gives the full keys.

    ``x`` is this rank's shard, ``[B, n, ...]`` (``dim=1``) or ``[n, ...]`` (``dim=0``); it is padded
    to ``plan.max_count`` rows so every rank sends the same number of bytes.
    """

    def __init__(self, x, plan, group, dim):
        self.plan, self.dim = plan, dim
        if x.shape[dim] != plan.counts[plan.rank]:
            raise ValueError(f"ccattn.distributed: this rank's key shard has {x.shape[dim]} keys, the key sharding "
                             f"rule gives it {plan.counts[plan.rank]} (of {plan.seqlen_k}; see key_ranges)")
        send = _padded(x.detach(), dim, plan.max_count)
        self.buffer = send.new_empty((plan.world_size * send.shape[0], *send.shape[1:]))
        self.work = dist.all_gather_into_tensor(self.buffer, send, group=group, async_op=True)
        self.send = send  # kept alive until the collective is done

    def wait(self):
        self.work.wait()
        per_rank = self.buffer.view(self.plan.world_size, *self.send.shape)
        parts = [per_rank[r].narrow(self.dim, off, b - a) for a, b, r, off in self.plan.key_order if b > a]
        if not parts:
            return per_rank[0].narrow(self.dim, 0, 0).contiguous()
        return torch.cat(parts, self.dim) if len(parts) > 1 else parts[0].contiguous()


def _reduce_scatter_keys(full, plan, group, dim):
    """Sum ``full`` (every rank's gradient over all keys, float32) over the group and give each rank
    the rows of its key shard (one reduce-scatter)."""
    shape = list(full.shape)
    shape[dim] = plan.max_count
    send = full.new_zeros((plan.world_size, *shape))
    for a, b, r, off in plan.key_order:
        if b > a:
            send[r].narrow(dim, off, b - a).copy_(full.narrow(dim, a, b - a))
    out = full.new_empty(shape)
    dist.reduce_scatter_tensor(out, send.view(plan.world_size * shape[0], *shape[1:]), group=group)
    return out.narrow(dim, 0, plan.counts[plan.rank])


# ----------------------------------------------------------------------------------------------
# The autograd function
# ----------------------------------------------------------------------------------------------

def _device_ints(values, device):
    return torch.tensor(values, dtype=torch.int32).to(device, non_blocking=True)


class _ContextParallelAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, plan, mask, group, varlen, pending_k, pending_v):
        dim = 0 if varlen else 1
        dqk = k.shape[-1]
        if pending_k is None and pending_v is None:  # one collective for both
            kv = _PendingKeys(torch.cat([k, v], -1), plan, group, dim).wait()
            k_full, v_full = kv[..., :dqk].contiguous(), kv[..., dqk:].contiguous()
        else:
            pending_k = pending_k or _PendingKeys(k, plan, group, dim)
            pending_v = pending_v or _PendingKeys(v, plan, group, dim)
            k_full, v_full = pending_k.wait(), pending_v.wait()
        causal, cf, window, scale = mask
        outs, lses, cus = [], [], []
        for call in plan.calls:
            kc, vc = k_full.narrow(dim, call.k0, call.k1 - call.k0), v_full.narrow(dim, call.k0, call.k1 - call.k0)
            qc = q.narrow(dim, call.q0, call.q1 - call.q0)
            if varlen:
                cu = (_device_ints(call.cu_q, q.device), _device_ints(call.cu_k, q.device))
                o, lse = _ops.fwd(qc, kc, vc, *cu, causal, cf, call.delta, window, scale, call.max_q, call.max_k,
                                  False)
            else:
                cu = (None, None)
                o, lse = _ops.fwd(qc, kc, vc, None, None, causal, cf, call.delta, window, scale, None, None, True)
            outs.append(o)
            lses.append(lse)
            cus.append(cu)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim)
        lse = lses[0] if len(lses) == 1 else torch.cat(lses, -1)
        ctx.save_for_backward(q, k_full, v_full, out, lse)
        ctx.plan, ctx.mask, ctx.group, ctx.varlen, ctx.cus = plan, mask, group, varlen, cus
        ctx.dtypes = (k.dtype, v.dtype)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k_full, v_full, out, lse = ctx.saved_tensors
        plan, (causal, cf, window, scale), varlen = ctx.plan, ctx.mask, ctx.varlen
        dim = 0 if varlen else 1
        dqk = k_full.shape[-1]
        # dK and dV of all keys, accumulated in float32, packed [.., Dqk + Dv] for one reduce-scatter
        dkv = torch.zeros((*k_full.shape[:-1], dqk + v_full.shape[-1]), dtype=torch.float32, device=q.device)
        dqs = []
        for call, cu in zip(plan.calls, ctx.cus):
            rows, keys = (call.q0, call.q1 - call.q0), (call.k0, call.k1 - call.k0)
            dq, dk, dv = _ops.bwd(dout.narrow(dim, *rows), q.narrow(dim, *rows), k_full.narrow(dim, *keys),
                                  v_full.narrow(dim, *keys), out.narrow(dim, *rows), lse.narrow(-1, *rows), *cu,
                                  causal, cf, call.delta, window, scale, call.max_q, call.max_k, not varlen)
            dqs.append(dq)
            acc = dkv.narrow(dim, *keys)
            acc[..., :dqk] += dk
            acc[..., dqk:] += dv
        dq = dqs[0] if len(dqs) == 1 else torch.cat(dqs, dim)
        local = _reduce_scatter_keys(dkv, plan, ctx.group, dim)
        dk = local[..., :dqk].to(ctx.dtypes[0])
        dv = local[..., dqk:].to(ctx.dtypes[1])
        return dq, dk, dv, None, None, None, None, None, None


def _resolve(q, k, v, group, causal, compress_factor, diag_offset, window_left, scale, layout, varlen):
    rank_dim = 3 if varlen else 4
    what = "[T, H, D] (varlen)" if varlen else "[B, S, H, D]"
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        _check_tensor(t, name, rank_dim, what)
    scale = _check_mask(causal, compress_factor, diag_offset, window_left, scale)
    _check_layout(layout)
    if k.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"ccattn.distributed: arguments 'k' {tuple(k.shape)} and 'v' {tuple(v.shape)} must agree "
                         "in all but the last dimension")
    if k.dtype != v.dtype:
        raise ValueError(f"ccattn.distributed: arguments 'k' ({k.dtype}) and 'v' ({v.dtype}) must have one dtype")
    group, rank, world_size = _group_info(group)
    return group, rank, world_size, scale


def context_parallel_attention(q, k, v, *, group=None, causal=False, compress_factor=1, diag_offset=None,
                               window_left=None, scale=None, layout="zigzag", seqlen_k=None, return_lse=False,
                               _pending=(None, None)):
    """:func:`ccattn.attention` over a sequence sharded across the ranks of ``group``; differentiable.

    Args:
        q: this rank's query shard ``[B, S / P, Hq, Dqk]``: its chunks of the full ``[B, S, Hq, Dqk]``
            (:func:`shard_sequence`), ``S`` a multiple of the chunk count (``2P`` zigzag, ``P``
            contiguous).
        k, v: this rank's shard of the full compressed ``[B, Sk, Hkv, D]`` (:func:`shard_keys`).
        group: the process group (default: the world).
        causal, compress_factor, diag_offset, window_left, scale: the mask of the *full* sequence, as in
            :func:`ccattn.attention` (the default ``diag_offset`` is resolved with the full lengths:
            ``Sk - S`` for cf = 1, ``0`` for cf > 1).
        layout: ``"zigzag"`` or ``"contiguous"``.
        seqlen_k: ``Sk``, the total number of compressed keys (default ``ceil(S / cf)``); every rank
            must pass the same value, and its ``k`` must have the rows :func:`key_ranges` gives it.
        return_lse: also return this rank's ``lse [B, Hq, S / P]``.

    Returns this rank's ``out [B, S / P, Hq, Dv]`` (rows in shard order), and its lse with ``return_lse``.
    Row for row, the numbers are those of the single call on the full sequence.
    """
    group, rank, world_size, scale = _resolve(q, k, v, group, causal, compress_factor, diag_offset, window_left,
                                              scale, layout, varlen=False)
    seqlen_q = q.shape[1] * world_size
    if seqlen_k is None:
        seqlen_k = _ceil_div(seqlen_q, compress_factor)
    _check_int("seqlen_k", seqlen_k, minimum=0)
    delta = diag_offset if diag_offset is not None else (seqlen_k - seqlen_q if compress_factor == 1 else 0)
    plan = _fixed_plan(rank, world_size, layout, seqlen_q, seqlen_k, compress_factor, delta)
    if k.shape[1] != plan.counts[rank]:
        raise ValueError(f"ccattn.distributed: argument 'k' holds {k.shape[1]} keys on rank {rank}; with "
                         f"seqlen_k={seqlen_k} the key sharding rule gives it {plan.counts[rank]} (see key_ranges)")
    out, lse = _ContextParallelAttention.apply(q, k, v, plan, (causal, compress_factor, window_left, scale), group,
                                               False, *_pending)
    return (out, lse) if return_lse else out


def context_parallel_attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, *, group=None, causal=False,
                                      compress_factor=1, diag_offset=None, window_left=None, scale=None,
                                      layout="zigzag", return_lse=False, _pending=(None, None)):
    """:func:`ccattn.attention_varlen` over a packed sequence sharded across the ranks of ``group``.

    Args:
        q: this rank's shard ``[T / P, Hq, Dqk]`` of the packed queries ``[T, Hq, Dqk]``
            (:func:`shard_sequence` with ``dim=0``); ``T`` a multiple of the chunk count. Documents may
            cross chunk edges anywhere.
        k, v: this rank's shard of the packed compressed ``[Tk, Hkv, D]`` (:func:`shard_keys` with the
            cu_seqlens and ``dim=0``).
        cu_seqlens_q, cu_seqlens_k: the *full* sequence's offsets (int32 ``[B + 1]``, or lists), the
            same on every rank. They are read on the host: pass CPU tensors or lists to avoid a
            synchronization; the per-rank plan is cached.
        Other arguments as in :func:`context_parallel_attention`; positions, the default
        ``diag_offset`` and the band are per document, as in :func:`ccattn.attention_varlen`.

    Returns this rank's ``out [T / P, Hq, Dv]`` (and ``lse [Hq, T / P]`` with ``return_lse``).
    """
    group, rank, world_size, scale = _resolve(q, k, v, group, causal, compress_factor, diag_offset, window_left,
                                              scale, layout, varlen=True)
    cu_q, cu_k = _as_list(cu_seqlens_q, "cu_seqlens_q"), _as_list(cu_seqlens_k, "cu_seqlens_k")
    if len(cu_q) != len(cu_k):
        raise ValueError(f"ccattn.distributed: arguments 'cu_seqlens_q' and 'cu_seqlens_k' must have one length, got "
                         f"{len(cu_q)} and {len(cu_k)}")
    if cu_q[-1] != q.shape[0] * world_size:
        raise ValueError(f"ccattn.distributed: argument 'cu_seqlens_q' ends at {cu_q[-1]}, the shards of 'q' hold "
                         f"{q.shape[0]} x {world_size} = {q.shape[0] * world_size} rows")
    plan = _varlen_plan(rank, world_size, layout, cu_q, cu_k, compress_factor, diag_offset)
    if k.shape[0] != plan.counts[rank]:
        raise ValueError(f"ccattn.distributed: argument 'k' holds {k.shape[0]} keys on rank {rank}; cu_seqlens_k "
                         f"and the key sharding rule give it {plan.counts[rank]} (see key_ranges)")
    out, lse = _ContextParallelAttention.apply(q, k, v, plan, (causal, compress_factor, window_left, scale), group,
                                               True, *_pending)
    return (out, lse) if return_lse else out


# ----------------------------------------------------------------------------------------------
# NSA's compressed branch over a sharded sequence (ccattn.nsa.CompressedAttention(process_group=...))
# ----------------------------------------------------------------------------------------------

class _Holder:
    __slots__ = ("work", "send")


class _AllGatherAsync(torch.autograd.Function):
    """Starts an all-gather of ``x`` (the same shape on every rank) and returns its output buffer
    ``[P · x.shape[0], ...]`` *before* it is filled: pass it through ``_Wait`` before reading it.
    Backward: the gradient of the buffer is reduce-scattered (float32) back to the senders."""

    @staticmethod
    def forward(ctx, x, group, world_size, holder):
        send = x.contiguous()
        buf = send.new_empty((world_size * send.shape[0], *send.shape[1:]))
        holder.work = dist.all_gather_into_tensor(buf, send, group=group, async_op=True)
        holder.send = send
        ctx.group, ctx.rows = group, send.shape[0]
        return buf

    @staticmethod
    def backward(ctx, grad):
        out = torch.empty((ctx.rows, *grad.shape[1:]), dtype=torch.float32, device=grad.device)
        dist.reduce_scatter_tensor(out, grad.float().contiguous(), group=ctx.group)
        return out.to(grad.dtype), None, None, None


class _Wait(torch.autograd.Function):
    @staticmethod
    def forward(ctx, buf, holder):
        holder.work.wait()
        holder.send = None
        return buf.view_as(buf)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _DependOn(torch.autograd.Function):
    """``x`` unchanged, and a zero gradient for ``anchor``: the backward of the collective that made
    ``anchor`` then runs on every rank, also on one whose chunks read nothing from it (a collective
    in a backward must run everywhere or nowhere)."""

    @staticmethod
    def forward(ctx, x, anchor):
        ctx.anchor = (anchor.shape, anchor.dtype, anchor.device)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, device = ctx.anchor
        return grad, torch.zeros(shape, dtype=dtype, device=device)


class _NsaChunk:
    __slots__ = ("local", "start", "end", "g0", "g_int", "g1", "starts", "halo")


@functools.lru_cache(maxsize=128)
def _nsa_geometry(rank, world_size, layout, cu, cu_blocks, l, d):
    """Per local chunk: its owned blocks [g0, g1) (global block indices), the interior ones
    [g0, g_int) that end inside the chunk, their first raw positions, and how many raw positions past
    the chunk's end its edge blocks need (``halo``); and ``h``, the largest halo of any chunk."""
    c = _chunk_size(cu[-1], world_size, layout, "k (raw)")
    n = num_chunks(world_size, layout)
    kb = _key_bounds(cu, cu_blocks, d, n, c)
    cu_t, cu_b_t = torch.tensor(cu, dtype=torch.int64), torch.tensor(cu_blocks, dtype=torch.int64)

    def starts_of(g0, g1):
        g = torch.arange(g0, g1, dtype=torch.int64)
        b = torch.searchsorted(cu_b_t, g, right=True) - 1
        return cu_t[b] + (g - cu_b_t[b]) * d

    h = 0
    for i in range(n):
        if kb[i + 1] > kb[i]:
            h = max(h, int(starts_of(kb[i + 1] - 1, kb[i + 1])[0]) + l - (i + 1) * c)
    chunks = []
    for li, i in enumerate(chunks_of_rank(rank, world_size, layout)):
        ch = _NsaChunk()
        ch.local, ch.start, ch.end, ch.g0, ch.g1 = li, i * c, (i + 1) * c, kb[i], kb[i + 1]
        ch.starts = starts_of(ch.g0, ch.g1)
        ends = ch.starts + l
        ch.g_int = ch.g0 + int((ends <= ch.end).sum())
        ch.halo = max(0, int(ends.max()) - ch.end) if ch.g1 > ch.g0 else 0
        chunks.append(ch)
    return tuple(chunks), h, c


def _blocks_of(x, seg_start, starts, l, d, varlen):
    """Blocks starting at absolute ``starts`` (a run of the owned blocks) from ``x``, a segment of raw
    positions beginning at ``seg_start``: ``[B, n, H, l, D]`` (fixed) or ``[n, H, l, D]`` (varlen),
    the layout ``CompressedAttention`` compresses."""
    n = starts.numel()
    if varlen:
        rows = (starts - seg_start)[:, None] + torch.arange(l)
        return x[rows.to(x.device)].transpose(1, 2)  # [n, l, H, D] -> [n, H, l, D]
    if n == 0:
        return x[:, :0, :, None, :].expand(-1, -1, -1, l, -1)
    off = int(starts[0]) - seg_start
    return x.narrow(1, off, (n - 1) * d + l).unfold(1, l, d).transpose(-1, -2)


def compressed_attention(module, q, k, v, *, group, layout="zigzag", cu_seqlens=None, scale=None,
                         return_compressed=False):
    """``CompressedAttention.forward`` over a sharded sequence (what ``process_group=`` runs).

    ``q``, ``k``, ``v``: this rank's shards (:func:`shard_sequence`) of the full queries and *raw*
    keys / values, which share the positions. Each rank compresses the blocks whose first raw
    position it holds; a block that runs past its chunk's end reads the first raw positions of the
    following chunk(s) from an all-gather of every chunk's first ``h`` raw positions (``h`` = the
    longest overhang, at most ``l - 1``; ``l - d`` when chunks are multiples of ``d``), overlapped
    with the compression of the blocks inside the chunk. The compressed keys are gathered while the
    values are compressed. Returns this rank's ``(out, lse)`` (and its compressed shards ``k_cmp``,
    ``v_cmp`` with ``return_compressed``). Parameter gradients of the compressors are this rank's
    part: sum them over the group (a data-parallel all-reduce over the CP group does).
    """
    group, rank, world_size = _group_info(group)
    _check_layout(layout)
    l, d = module.block_size, module.stride
    varlen = cu_seqlens is not None
    dim = 0 if varlen else 1
    if k.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"ccattn.nsa: arguments 'k' {tuple(k.shape)} and 'v' {tuple(v.shape)} must agree "
                         "in all but the last dimension")
    if k.dim() != (3 if varlen else 4) or q.dim() != k.dim() or q.shape[dim] != k.shape[dim]:
        raise ValueError(f"ccattn.nsa: with a process group, 'q' {tuple(q.shape)} and the raw 'k' {tuple(k.shape)} "
                         "must be shards of one sequence (same positions)")
    total = k.shape[dim] * world_size
    if varlen:
        cu = _as_list(cu_seqlens, "cu_seqlens")
        if cu[-1] != total:
            raise ValueError(f"ccattn.nsa: argument 'cu_seqlens' ends at {cu[-1]}, the shards hold {total} rows")
        blocks = [max(0, (b - a - l) // d + 1) for a, b in zip(cu, cu[1:])]
        cu_b = [0]
        for n_b in blocks:
            cu_b.append(cu_b[-1] + n_b)
        cu_b = tuple(cu_b)
    else:
        cu, cu_b = (0, total), (0, max(0, (total - l) // d + 1))
    chunks, h, c = _nsa_geometry(rank, world_size, layout, cu, cu_b, l, d)
    dqk = k.shape[-1]

    def local(ch, t):
        return t.narrow(dim, ch.local * c, c)

    # 1. start the halo exchange: every chunk's first min(C, h) raw positions (padded to h)
    if h > 0:
        x = torch.cat([k, v], -1)  # raw k and v packed: one exchange
        heads = torch.stack([_padded(local(ch, x).narrow(dim, 0, min(c, h)), dim, h) for ch in chunks])
        holder = _Holder()
        gathered = _AllGatherAsync.apply(heads, group, world_size, holder)

    raw = (k, v)

    def interior(ch, which, compressor):
        return compressor(_blocks_of(local(ch, raw[which]), ch.start, ch.starts[:ch.g_int - ch.g0], l, d, varlen))

    def halo_of(ch):
        parts, need, i = [], ch.halo, ch.end // c
        while need > 0:
            r, li = _owner(i, world_size, layout)
            part = gathered[r * len(chunks) + li].narrow(dim, 0, min(c, h, need))
            parts.append(part)
            need -= part.shape[dim]
            i += 1
        return parts

    def edge(ch, which, compressor, halos):
        if ch.g1 == ch.g_int:
            return None
        parts = [p[..., :dqk] if which == 0 else p[..., dqk:] for p in halos[ch.local]]
        seg = torch.cat([local(ch, raw[which])] + parts, dim)
        return compressor(_blocks_of(seg, ch.start, ch.starts[ch.g_int - ch.g0:], l, d, varlen))

    def assemble(inner, edges):
        parts = []
        for a, b in zip(inner, edges):
            parts.append(a)
            if b is not None:
                parts.append(b)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim)

    # 2. compress the keys' interior blocks while the halo travels, then the edge blocks
    inner_k = [interior(ch, 0, module.compress_k) for ch in chunks]
    if h > 0:
        gathered = _Wait.apply(gathered, holder)
    halos = [halo_of(ch) if h > 0 else [] for ch in chunks]
    k_cmp = assemble(inner_k, [edge(ch, 0, module.compress_k, halos) for ch in chunks])
    if h > 0:
        k_cmp = _DependOn.apply(k_cmp, gathered)
    if varlen:
        plan = _varlen_plan(rank, world_size, layout, cu, cu_b, d, -(l - 1))
    else:
        plan = _fixed_plan(rank, world_size, layout, total, cu_b[-1], d, -(l - 1))
    # 3. gather the compressed keys while the values are compressed
    pending_k = _PendingKeys(k_cmp, plan, group, dim)
    v_cmp = assemble([interior(ch, 1, module.compress_v) for ch in chunks],
                     [edge(ch, 1, module.compress_v, halos) for ch in chunks])
    pending_v = _PendingKeys(v_cmp, plan, group, dim)
    mask = dict(group=group, causal=True, compress_factor=d, diag_offset=-(l - 1), scale=scale, layout=layout,
                return_lse=True, _pending=(pending_k, pending_v))
    if varlen:
        out, lse = context_parallel_attention_varlen(q, k_cmp, v_cmp, cu, cu_b, **mask)
    else:
        out, lse = context_parallel_attention(q, k_cmp, v_cmp, seqlen_k=cu_b[-1], **mask)
    return (out, lse, k_cmp, v_cmp) if return_compressed else (out, lse)
