"""Context parallelism (ccattn.distributed, CompressedAttention(process_group=...)) on CPU gloo groups.

One group of 2, 3 and 4 processes each (torch.multiprocessing spawn, rendezvous through a FileStore,
traffic on 127.0.0.1 only) runs every case of cp_worker.py for both layouts; each test below checks
one case's result on every rank: out, lse and dq equal to the single-process call on the full
sequence, dk / dv (and NSA's parameter gradients, summed over the group) within a few roundings of
the dtype (the partial sums of the ranks are added in float32).
"""

import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import cp_worker  # noqa: E402

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is unavailable")

WORLD_SIZES = [2, 3, 4]
_results = {}


def group_results(world_size, tmp_path_factory, backend="gloo"):
    """Spawns the group once (the first test of a world size) and keeps its results, or its failure."""
    key = (backend, world_size)
    if key not in _results:
        import torch.multiprocessing as mp

        tmp = tmp_path_factory.mktemp(f"cp{backend}{world_size}")
        try:
            mp.spawn(cp_worker.run, args=(world_size, str(tmp / "store"), str(tmp), backend), nprocs=world_size,
                     join=True)
            _results[key] = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(world_size)]
        except Exception as e:  # noqa: BLE001 (every test of this group reports it)
            _results[key] = f"the {backend} group of {world_size} processes failed: {type(e).__name__}: {e}"
    result = _results[key]
    if isinstance(result, str):
        pytest.fail(result)
    return result


def check_case(per_rank, case):
    failures = [f"rank {r}: {e}" for r, res in enumerate(per_rank) if case in res for e in res[case]["errors"]]
    missing = [r for r, res in enumerate(per_rank) if case not in res]
    assert not missing, f"ranks {missing} did not run case {case}"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("case", cp_worker.CASE_NAMES)
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_context_parallel(world_size, case, tmp_path_factory):
    check_case(group_results(world_size, tmp_path_factory), case)


def nccl_world_sizes():
    """NCCL groups of one process per GPU: 1 (the path through NCCL on one device), and 2, 4, 8 where
    this machine has that many GPUs."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [w for w in (1, 2, 4, 8) if w <= gpus]


@pytest.mark.skipif(not (torch.cuda.is_available() and torch.distributed.is_nccl_available()),
                    reason="needs CUDA and torch.distributed with NCCL")
@pytest.mark.parametrize("case", cp_worker.NCCL_CASE_NAMES)
@pytest.mark.parametrize("world_size", nccl_world_sizes() or [1])
def test_context_parallel_nccl(world_size, case, tmp_path_factory):
    check_case(group_results(world_size, tmp_path_factory, backend="nccl"), case)


# ---- the layout helpers, in this process (no group needed) ----

from ccattn import distributed as cp  # noqa: E402


@pytest.mark.parametrize("layout", cp.LAYOUTS)
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_unshard_round_trip(layout, world):
    s = 4 * world * 3
    x = torch.arange(2 * s).view(2, s)
    shards = [cp.shard_sequence(x, r, world, layout=layout) for r in range(world)]
    assert torch.equal(cp.unshard_sequence(shards, layout=layout), x)
    held = torch.cat([torch.arange(a, b) for r in range(world) for a, b in cp.query_ranges(s, r, world, layout)])
    assert torch.equal(held.sort().values, torch.arange(s))  # every position exactly once
    if layout == "zigzag":
        assert cp.chunks_of_rank(0, world, layout) == (0, 2 * world - 1)


@pytest.mark.parametrize("layout", cp.LAYOUTS)
@pytest.mark.parametrize("world, cf, chunk, extra", [(2, 1, 5, 0), (3, 4, 6, 0), (4, 3, 5, -2), (3, 5, 4, 4)])
def test_key_j_lives_with_query_position_j_cf(layout, world, cf, chunk, extra):
    s = 2 * world * chunk if layout == "zigzag" else world * chunk
    sk = max(0, -(-s // cf) + extra)
    c = s // cp.num_chunks(world, layout)
    owner = {}
    for r in range(world):
        for i, (a, b) in zip(cp.chunks_of_rank(r, world, layout), cp.key_ranges(
                r, world, seqlen_q=s, seqlen_k=sk, compress_factor=cf, layout=layout)):
            for j in range(a, b):
                assert j not in owner
                owner[j] = i
    assert sorted(owner) == list(range(sk))
    assert all(owner[j] == min(j * cf, s - 1) // c for j in range(sk))
    k = torch.arange(sk)
    shards = [cp.shard_keys(k, r, world, seqlen_q=s, compress_factor=cf, layout=layout, dim=0) for r in range(world)]
    assert torch.equal(cp.unshard_keys(shards, seqlen_q=s, compress_factor=cf, layout=layout, dim=0), k)


def test_varlen_key_rule():
    # documents of 5, 0, 9, 1, 9 positions over 2 ranks (zigzag: 4 chunks of 6); keys per document
    cu_q, cu_k, cf = [0, 5, 5, 14, 15, 24], [0, 3, 5, 8, 10, 14], 2
    c = 6
    owner = {}
    for r in range(2):
        for i, (a, b) in zip(cp.chunks_of_rank(r, 2), cp.key_ranges(r, 2, seqlen_q=24, compress_factor=cf,
                                                                    cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)):
            owner.update({j: i for j in range(a, b)})
    for doc in range(5):
        q0, length = cu_q[doc], cu_q[doc + 1] - cu_q[doc]
        for j in range(cu_k[doc + 1] - cu_k[doc]):
            pos = q0 + min(j * cf, length - 1) if length else q0 - 1
            assert owner[cu_k[doc] + j] == max(pos, 0) // c, (doc, j)


def test_communicated_bytes_formula():
    fwd, bwd = cp.communicated_bytes(world_size=8, seqlen_k=65535, heads_kv=4, head_dim_qk=128, head_dim_v=128)
    assert fwd == 7 * 8192 * 4 * 256 * 2 and bwd == 2 * fwd
