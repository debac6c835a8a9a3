"""Band tensors (``band=(lo, hi)``) on CPU tensors: equal to the built-in band bit for bit, the
helpers of ``ccattn.bands`` against literal masks and the float32 reference, random monotone bands,
varlen, errors, and the operator's fake and autograd registrations.

The CUDA tests (skipped without a device) run the same masks through the GPU kernels: the built-in
band's bits from tensors describing it, the helpers and random bands against the reference, varlen,
and the device check's errors.
"""

import pytest
import torch

import ccattn
import reference
from test_attention import check_against_reference, randn


def grads_of(q, k, v, dout, **kwargs):
    """out, lse, dq, dk, dv of one call (fresh leaves)."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out, lse = ccattn.attention(*leaves, return_lse=True, **kwargs) if leaves[0].dim() == 4 else \
        ccattn.attention_varlen(*leaves, return_lse=True, **kwargs)
    out.backward(dout)
    return [out.detach(), lse] + [t.grad for t in leaves]


def inputs(b, sq, sk, hq, hkv, d, seed, dtype=torch.bfloat16):
    gen = torch.Generator().manual_seed(seed)
    return (randn((b, sq, hq, d), dtype, "cpu", gen), randn((b, sk, hkv, d), dtype, "cpu", gen),
            randn((b, sk, hkv, d), dtype, "cpu", gen),
            torch.randn((b, sq, hq, d), generator=gen).to(dtype))


def builtin_edges(sq, sk, causal, cf, delta, window):
    """lo, hi of the built-in band, from docs/semantics.md (not clamped: the library clamps)."""
    if delta is None:
        delta = sk - sq if cf == 1 else 0
    diag = torch.div(torch.arange(sq) + delta, cf, rounding_mode="floor")
    hi = diag + 1 if causal else torch.full((sq,), sk)
    lo = diag - window if window is not None else torch.zeros(sq, dtype=torch.int64)
    return lo, hi


@pytest.mark.parametrize("band", [(True, 1, None, None), (True, 4, -3, 5), (False, 1, None, 20), (True, 3, 40, None)])
@pytest.mark.parametrize("edge_dtype", [torch.int32, torch.int64])
def test_equals_builtin_band_bitwise(band, edge_dtype):
    causal, cf, delta, window = band
    q, k, v, dout = inputs(2, 203, 91, 4, 2, 64, 1)
    want = grads_of(q, k, v, dout, causal=causal, compress_factor=cf, diag_offset=delta, window_left=window)
    lo, hi = (e.to(edge_dtype).expand(2, -1) for e in builtin_edges(203, 91, *band))
    got = grads_of(q, k, v, dout, band=(lo, hi))
    for name, g, w in zip(("out", "lse", "dq", "dk", "dv"), got, want):
        assert torch.equal(g, w), name


def dense(lo, hi, sk):
    j = torch.arange(sk)
    return (lo.long()[:, None] <= j) & (j < hi.long()[:, None])


def document_ids(lengths):
    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))


def literal_masks():
    """(name, (lo, hi), Sk, visible [S, Sk]) with the masks written out literally."""
    s = 150
    i, j = torch.arange(s)[:, None], torch.arange(s)[None, :]
    docs = [37, 1, 0, 70, 42]
    doc = document_ids(docs)
    nsa_lens, block, stride = [37, 0, 90, 23], 16, 8
    keys = [ccattn.bands.nsa_blocks(n, block, stride) for n in nsa_lens]
    qdoc, kdoc = document_ids(nsa_lens), document_ids(keys)
    qpos = torch.arange(sum(nsa_lens)) - torch.repeat_interleave(
        torch.tensor([sum(nsa_lens[:d]) for d in range(len(nsa_lens))]), torch.tensor(nsa_lens))
    kpos = torch.arange(sum(keys)) - torch.repeat_interleave(
        torch.tensor([sum(keys[:d]) for d in range(len(keys))]), torch.tensor(keys))
    return [
        ("prefix_lm", ccattn.bands.prefix_lm(s, 40), s, (j <= i) | (j < 40)),
        ("chunked", ccattn.bands.chunked(s, 64), s, (j // 64 == i // 64) & (j <= i)),
        ("documents", ccattn.bands.documents(docs), s, (doc[:, None] == doc[None, :]) & (j <= i)),
        ("documents_bidirectional", ccattn.bands.documents(docs, causal=False), s, doc[:, None] == doc[None, :]),
        ("nsa_documents", ccattn.bands.nsa_documents(nsa_lens, block, stride), sum(keys),
         (qdoc[:, None] == kdoc[None, :]) & (kpos[None, :] * stride + block - 1 <= qpos[:, None])),
    ]


@pytest.mark.parametrize("case", literal_masks(), ids=lambda c: c[0])
def test_helpers_against_literal_masks_and_reference(case):
    _, (lo, hi), sk, visible = case
    assert lo.dtype == torch.int32 and hi.dtype == torch.int32
    assert torch.equal(dense(lo, hi, sk), visible)
    q, k, v, dout = inputs(2, lo.numel(), sk, 4, 2, 32, 2)
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out, lse = ccattn.attention(*leaves, band=(lo.expand(2, -1), hi.expand(2, -1)), return_lse=True)
    out.backward(dout)
    check_against_reference(q.detach(), k.detach(), v.detach(), visible, dout, None, out, lse,
                            [t.grad for t in leaves], torch.bfloat16)


def random_edges(sq, sk, gen):
    """Non-decreasing edges with steps past a 64-key tile, values outside [0, Sk] and empty rows."""
    def walk(start, jump):
        steps = torch.randint(0, 3, (sq,), generator=gen)
        steps = torch.where(torch.rand(sq, generator=gen) < jump, steps + 70, steps)
        return start + torch.cumsum(steps, 0) - steps[0]
    lo = walk(-20, 0.01)
    hi = walk(int(torch.randint(-10, 30, (1,), generator=gen)), 0.03)
    return lo, hi


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_monotone_bands(seed):
    gen = torch.Generator().manual_seed(seed)
    sq, sk = 211, 173
    lo, hi = random_edges(sq, sk, gen)
    q, k, v, dout = inputs(1, sq, sk, 3, 1, 48, seed, torch.float16)
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out, lse = ccattn.attention(*leaves, band=(lo[None], hi[None]), return_lse=True)
    out.backward(dout)
    check_against_reference(q.detach(), k.detach(), v.detach(), dense(lo.clamp(0, sk), hi.clamp(0, sk), sk), dout,
                            None, out, lse, [t.grad for t in leaves], torch.float16)


def test_varlen_band():
    """[Tq] edges, positions local to each sequence: chunked per sequence equals the reference."""
    lens = [70, 0, 133]
    cu = torch.tensor([0] + lens).cumsum(0).to(torch.int32)
    gen = torch.Generator().manual_seed(4)
    t = sum(lens)
    q, k, v = (randn((t, 2, 32), torch.bfloat16, "cpu", gen) for _ in range(3))
    dout = torch.randn((t, 2, 32), generator=gen).to(torch.bfloat16)
    parts = [ccattn.bands.chunked(n, 50) for n in lens]
    lo, hi = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    out, lse = ccattn.attention_varlen(q, k, v, cu, cu, max(lens), max(lens), band=(lo, hi), return_lse=True)
    out.backward(dout)
    visible = torch.zeros(t, t, dtype=torch.bool)
    for b in range(len(lens)):
        a, e = int(cu[b]), int(cu[b + 1])
        visible[a:e, a:e] = dense(parts[b][0], parts[b][1], e - a)
    batched = [x.detach().unsqueeze(0) for x in (q, k, v, dout)]
    check_against_reference(*batched[:3], visible, batched[3], None, out.unsqueeze(0), lse.unsqueeze(0),
                            [g.unsqueeze(0) for g in (q.grad, k.grad, v.grad)], torch.bfloat16)


def raises(exc, words, f, *args, **kwargs):
    with pytest.raises(exc) as e:
        f(*args, **kwargs)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_errors():
    q, k, v, _ = inputs(2, 30, 20, 2, 1, 16, 5)
    lo, hi = (e.expand(2, -1) for e in ccattn.bands.chunked(30, 8))
    falling = hi.clone()
    falling[1, 12] = 0
    raises(ValueError, ["band[1]", "row 12 of sequence 1"], ccattn.attention, q, k, v, band=(lo, falling))
    ccattn.attention(q, k, v, band=(lo, falling), validate=False)  # the caller's guarantee: not checked
    raises(ValueError, ["band[0]", "int32 or int64"], ccattn.attention, q, k, v, band=(lo.float(), hi))
    raises(ValueError, ["band[0]", "[B, Sq]"], ccattn.attention, q, k, v, band=(lo[0], hi))
    raises(ValueError, ["band[1]", "30"], ccattn.attention, q, k, v, band=(lo, hi[:, :29]))
    raises(ValueError, ["band", "causal"], ccattn.attention, q, k, v, band=(lo, hi), causal=True)
    raises(TypeError, ["band"], ccattn.attention, q, k, v, band=lo)
    cu = torch.tensor([0, 30, 60], dtype=torch.int32)
    qv, kv = q.detach().reshape(60, 2, 16), k.detach().reshape(40, 1, 16)
    raises(ValueError, ["band[0]", "[Tq]"], ccattn.attention_varlen, qv, kv, kv, cu, torch.tensor([0, 20, 40],
           dtype=torch.int32), 30, 20, band=(lo, hi))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("band", [(True, 1, None, None), (True, 16, -31, None), (False, 1, None, 40)])
def test_cuda_forward_equals_builtin_band(band):
    """The same kernel, tiles and per-row limits: the built-in band's out and lse bit for bit."""
    q, k, v, _ = (t.detach().cuda() for t in inputs(2, 301, 227, 4, 2, 128, 9))
    want = ccattn.attention(q, k, v, causal=band[0], compress_factor=band[1], diag_offset=band[2],
                            window_left=band[3], return_lse=True)
    lo, hi = (e.to(torch.int32).expand(2, -1).cuda() for e in builtin_edges(301, 227, *band))
    got = ccattn.attention(q, k, v, band=(lo, hi), return_lse=True)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@cuda
@pytest.mark.parametrize("case", literal_masks()[:3], ids=lambda c: c[0])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_helpers_against_reference(case, dtype):
    _, (lo, hi), sk, visible = case
    q, k, v, dout = (t.detach().cuda() for t in inputs(2, lo.numel(), sk, 4, 2, 64, 10, dtype))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, lse = ccattn.attention(*leaves, band=(lo.expand(2, -1).cuda(), hi.expand(2, -1).cuda()), return_lse=True)
    out.backward(dout)
    check_against_reference(q, k, v, visible.cuda(), dout, None, out, lse, [t.grad for t in leaves], dtype)


@cuda
@pytest.mark.parametrize("seed", [1, 2])
def test_cuda_random_monotone_bands(seed):
    gen = torch.Generator().manual_seed(seed)
    sq, sk = 411, 373
    lo, hi = random_edges(sq, sk, gen)
    q, k, v, dout = (t.detach().cuda() for t in inputs(1, sq, sk, 6, 2, 128, seed))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, lse = ccattn.attention(*leaves, band=(lo[None].cuda(), hi[None].cuda()), return_lse=True)
    out.backward(dout)
    visible = dense(lo.clamp(0, sk), hi.clamp(0, sk), sk).cuda()
    check_against_reference(q, k, v, visible, dout, None, out, lse, [t.grad for t in leaves], torch.bfloat16)


@cuda
def test_cuda_varlen_band():
    lens = [70, 0, 133]
    cu = torch.tensor([0] + lens).cumsum(0).to(torch.int32)
    gen = torch.Generator().manual_seed(11)
    t = sum(lens)
    q, k, v = (randn((t, 2, 64), torch.bfloat16, "cpu", gen).detach().cuda() for _ in range(3))
    dout = torch.randn((t, 2, 64), generator=gen).to(torch.bfloat16).cuda()
    parts = [ccattn.bands.prefix_lm(n, 30) for n in lens]
    lo, hi = (torch.cat([p[i] for p in parts]).cuda() for i in (0, 1))
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out, lse = ccattn.attention_varlen(*leaves, cu.cuda(), cu.cuda(), max(lens), max(lens), band=(lo, hi),
                                       return_lse=True)
    out.backward(dout)
    visible = torch.zeros(t, t, dtype=torch.bool)
    for b in range(len(lens)):
        a, e = int(cu[b]), int(cu[b + 1])
        visible[a:e, a:e] = dense(parts[b][0], parts[b][1], e - a)
    batched = [x.unsqueeze(0) for x in (q, k, v, dout)]
    check_against_reference(*batched[:3], visible.cuda(), batched[3], None, out.unsqueeze(0), lse.unsqueeze(0),
                            [x.grad.unsqueeze(0) for x in leaves], torch.bfloat16)


@cuda
def test_cuda_errors():
    """The device check names the same edge and row as the host check; validate=False skips it."""
    q, k, v, _ = (t.detach().cuda() for t in inputs(2, 30, 20, 2, 1, 64, 5))
    lo, hi = (e.expand(2, -1).cuda() for e in ccattn.bands.chunked(30, 8))
    falling = hi.clone()
    falling[1, 12] = 0
    raises(ValueError, ["band[1]", "row 12 of sequence 1 has 0 after 12"], ccattn.attention, q, k, v,
           band=(lo, falling))
    ccattn.attention(q, k, v, band=(lo, falling), validate=False)
    torch.cuda.synchronize()


def test_opcheck_with_band():
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(s, generator=gen).to(torch.bfloat16).requires_grad_()
               for s in ((2, 23, 4, 64), (2, 23, 2, 64), (2, 23, 2, 64)))
    lo, hi = (e.expand(2, -1) for e in ccattn.bands.prefix_lm(23, 5))
    args = (q, k, v, None, None, False, 1, None, None, None, None, None, True, lo, hi)
    torch.library.opcheck(torch.ops.ccattn.fwd.default, args)
    out, lse = torch.ops.ccattn.fwd(*(x.detach() if isinstance(x, torch.Tensor) else x for x in args))
    torch.library.opcheck(torch.ops.ccattn.bwd.default, (torch.randn_like(out), q.detach(), k.detach(), v.detach(),
                                                         out, lse, None, None, False, 1, None, None, None, None,
                                                         None, True, lo, hi))


def test_compile_fullgraph_with_band():
    q, k, v, _ = inputs(2, 37, 37, 2, 1, 32, 8)
    lo, hi = (e.expand(2, -1) for e in ccattn.bands.chunked(37, 10))

    def f(q, k, v, lo, hi):
        return ccattn.attention(q, k, v, band=(lo, hi))

    eager = f(q, k, v, lo, hi)
    (gq,) = torch.autograd.grad(eager.float().sum(), q)
    torch._dynamo.reset()
    out = torch.compile(f, fullgraph=True, backend="aot_eager")(q, k, v, lo, hi)
    (cq,) = torch.autograd.grad(out.float().sum(), q)
    assert torch.equal(out, eager) and torch.equal(cq, gq)
