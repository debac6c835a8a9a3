"""ccattn.attention_with_kvcache against the float32 reference of each sequence's logical keys, on CPU
and CUDA: contiguous and paged caches (pages in random order), appended rows, per-sequence lengths
(an empty one), query positions with compressed keys, split counts; the fake impl and opcheck; on CUDA,
capture in a CUDA graph and replay with new lengths and new rows."""

import pytest
import torch

import ccattn
from reference import attention, band_visible

HKV, HQ, D = 2, 8, 64


def make_cache(batch, capacity, page_size, device, dtype, gen):
    """(k_cache, v_cache, page_table or None): the cache storage, NaN where no key was written."""
    if page_size:
        max_pages = -(-capacity // page_size)
        num_pages = batch * max_pages + 2
        page_table = torch.randperm(num_pages, generator=gen)[: batch * max_pages].view(batch, max_pages)
        shape = (num_pages, page_size, HKV, D)
        page_table = page_table.to(torch.int32).to(device)
    else:
        shape, page_table = (batch, capacity, HKV, D), None
    k_cache = torch.full(shape, float("nan"), dtype=dtype, device=device)
    return k_cache, k_cache.clone(), page_table


def rows_of(page_table, page_size, b, n):
    """(page, row) of keys 0..n-1 of sequence b (page = b for a contiguous cache)."""
    j = torch.arange(n)
    if page_table is None:
        return torch.full((n,), b), j
    return page_table[b].cpu()[j // page_size].long(), j % page_size


def expected(q, keys, values, causal, cf, delta, window, pos):
    outs, lses = [], []
    for b in range(q.shape[0]):
        sk = keys[b].shape[0]
        d = delta if delta is not None else (sk - q.shape[1] if cf == 1 else 0)
        visible = band_visible(q.shape[1], sk, causal, cf, d + (pos[b] if pos is not None else 0), window)
        out, lse = attention(q[b : b + 1].float().cpu(), keys[b][None].float(), values[b][None].float(), visible)
        outs.append(out)
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def run_case(device, dtype, page_size, sq, lens, new, causal=True, cf=1, delta=None, window=None, pos=None,
             num_splits=0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch, capacity = len(lens), 160
    k_cache, v_cache, page_table = make_cache(batch, capacity, page_size, device, dtype, gen)
    keys = [torch.randn(n + new, HKV, D, generator=gen).to(dtype) for n in lens]
    values = [torch.randn(n + new, HKV, D, generator=gen).to(dtype) for n in lens]
    for b, n in enumerate(lens):
        page, row = rows_of(page_table, page_size, b, n)
        k_cache[page.to(device), row.to(device)] = keys[b][:n].to(device)
        v_cache[page.to(device), row.to(device)] = values[b][:n].to(device)
    q = torch.randn(batch, sq, HQ, D, generator=gen).to(dtype)
    k_new = torch.stack([x[n:] for x, n in zip(keys, lens)]).to(device) if new else None
    v_new = torch.stack([x[n:] for x, n in zip(values, lens)]).to(device) if new else None
    seqlens = torch.tensor(lens, dtype=torch.int32, device=device)
    qpos = torch.tensor(pos, dtype=torch.int32, device=device) if pos is not None else None
    out, lse = ccattn.attention_with_kvcache(
        q.to(device), k_cache, v_cache, seqlens, k=k_new, v=v_new, page_table=page_table, query_pos=qpos,
        causal=causal, compress_factor=cf, diag_offset=delta, window_left=window, num_splits=num_splits,
        return_lse=True)
    want_out, want_lse = expected(q, keys, values, causal, cf, delta, window, pos)
    tol = 2e-2 if dtype == torch.bfloat16 else 4e-3
    torch.testing.assert_close(out.float().cpu(), want_out, atol=tol, rtol=tol)
    torch.testing.assert_close(lse.cpu(), want_lse, atol=1e-3, rtol=1e-3)
    for b, n in enumerate(lens):  # the appended rows landed in the cache
        page, row = rows_of(page_table, page_size, b, n + new)
        assert torch.equal(k_cache[page.to(device), row.to(device)].cpu(), keys[b])
        assert torch.equal(v_cache[page.to(device), row.to(device)].cpu(), values[b])


@pytest.mark.parametrize("page_size", [0, 16, 64], ids=["contiguous", "paged16", "paged64"])
def test_decode(device, dtype, page_size):
    run_case(device, dtype, page_size, sq=1, lens=[0, 1, 70, 159], new=1)
    run_case(device, dtype, page_size, sq=1, lens=[40, 100], new=0, causal=False, num_splits=3)


@pytest.mark.parametrize("page_size", [0, 32])
def test_chunked_prefill_with_positions(device, page_size):
    run_case(device, torch.bfloat16, page_size, sq=12, lens=[0, 30, 100], new=12)
    run_case(device, torch.bfloat16, page_size, sq=12, lens=[0, 30, 100], new=12, cf=4, delta=-3, pos=[11, 300, 500])
    run_case(device, torch.bfloat16, page_size, sq=12, lens=[5, 30, 100], new=12, cf=2, delta=0, window=9,
             pos=[7, 60, 200], num_splits=64)


def test_errors():
    q = torch.randn(2, 1, HQ, D, dtype=torch.bfloat16)
    cache = torch.zeros(2, 32, HKV, D, dtype=torch.bfloat16)
    seqlens = torch.tensor([3, 40], dtype=torch.int32)
    with pytest.raises(ValueError, match="cache_seqlens"):  # 40 rows do not fit a cache of 32
        ccattn.attention_with_kvcache(q, cache, cache.clone(), seqlens)
    with pytest.raises(ValueError, match="'k' and 'v'"):
        ccattn.attention_with_kvcache(q, cache, cache.clone(), seqlens, k=q)
    with pytest.raises(ValueError, match="k_cache"):  # a page size that is no multiple of 16
        ccattn.attention_with_kvcache(q, cache[:, :24], cache[:, :24].clone(), seqlens,
                                      page_table=torch.zeros(2, 2, dtype=torch.int32))


def test_opcheck(device):
    q = torch.randn(2, 1, HQ, D, dtype=torch.bfloat16, device=device)
    cache = torch.randn(2, 48, HKV, D, dtype=torch.bfloat16, device=device)
    k_new = torch.randn(2, 1, HKV, D, dtype=torch.bfloat16, device=device)
    seqlens = torch.tensor([3, 40], dtype=torch.int32, device=device)
    args = (q, cache, cache.clone(), seqlens, None, k_new, k_new.clone(), None, True, 1, None, None, None, 0)
    torch.library.opcheck(torch.ops.ccattn.kvcache.default, args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("page_size", [0, 64], ids=["contiguous", "paged64"])
def test_cuda_graph_capture_and_replay(page_size):
    """Captured once with fixed buffers; each replay appends one row per sequence and attends."""
    device, dtype, batch, capacity = "cuda", torch.bfloat16, 3, 256
    gen = torch.Generator().manual_seed(5)
    k_cache, v_cache, page_table = make_cache(batch, capacity, page_size, device, dtype, gen)
    keys = [torch.randn(capacity, HKV, D, generator=gen).to(dtype) for _ in range(batch)]
    values = [torch.randn(capacity, HKV, D, generator=gen).to(dtype) for _ in range(batch)]
    lens = [0, 17, 200]
    for b, n in enumerate(lens):
        page, row = rows_of(page_table, page_size, b, n)
        k_cache[page.to(device), row.to(device)] = keys[b][:n].to(device)
        v_cache[page.to(device), row.to(device)] = values[b][:n].to(device)
    q = torch.zeros(batch, 1, HQ, D, dtype=dtype, device=device)
    k_new = torch.zeros(batch, 1, HKV, D, dtype=dtype, device=device)
    v_new = torch.zeros_like(k_new)
    seqlens = torch.tensor(lens, dtype=torch.int32, device=device)

    def step():
        return ccattn.attention_with_kvcache(q, k_cache, v_cache, seqlens, k=k_new, v=v_new, page_table=page_table,
                                             causal=True)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph; the first replay rewrites the rows it appended
        step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    for _ in range(3):
        qs = torch.randn(batch, 1, HQ, D, generator=gen).to(dtype)
        q.copy_(qs)
        k_new.copy_(torch.stack([keys[b][n : n + 1] for b, n in enumerate(lens)]))
        v_new.copy_(torch.stack([values[b][n : n + 1] for b, n in enumerate(lens)]))
        seqlens.copy_(torch.tensor(lens, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        lens = [n + 1 for n in lens]
        want, _ = expected(qs, [keys[b][:n] for b, n in enumerate(lens)], [values[b][:n] for b, n in enumerate(lens)],
                           True, 1, None, None, None)
        torch.testing.assert_close(out.float().cpu(), want, atol=2e-2, rtol=2e-2)
