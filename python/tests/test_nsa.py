"""ccattn.nsa.CompressedAttention end to end: compression, the leak-free band, out, lse and every
gradient (inputs and parameters) against a float32 PyTorch re-implementation with a dense mask."""

import copy

import pytest
import torch
import torch.nn.functional as F

import reference
from ccattn.nsa import CompressedAttention
from conftest import skip_unsupported_dims


def reference_compress(x, compressor, l, d):
    """Independent float32 re-implementation of BlockCompressor on [B, S, H, D]."""
    blocks = x.unfold(1, l, d).transpose(-1, -2)  # [B, n, H, l, D]
    pooled = blocks.mean(dim=-2)
    if not compressor.mlp:
        return pooled
    hidden = F.gelu(F.linear((blocks + compressor.pos).flatten(-2), compressor.fc1.weight, compressor.fc1.bias))
    return pooled + F.linear(hidden, compressor.fc2.weight, compressor.fc2.bias)


def relative_error(a, b):
    a, b = a.float().cpu(), b.float().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def make_branch(device, dqk, dv, l, d, compression):
    torch.manual_seed(l * 100 + d)
    branch = CompressedAttention(head_dim=dqk, v_head_dim=dv, block_size=l, stride=d, compression=compression)
    if compression == "mlp":  # move off the mean-pooling start so the MLP matters
        for c in (branch.compress_k, branch.compress_v):
            torch.nn.init.normal_(c.fc2.weight, std=0.05)
    return branch.to(device)


@pytest.mark.parametrize("s, hq, hkv, dqk, dv, l, d, compression", [
    (97, 4, 2, 64, 64, 16, 8, "mlp"),
    (64, 8, 1, 128, 128, 8, 8, "mean"),     # non-overlapping blocks of size 8, MQA
    (53, 2, 2, 48, 32, 7, 3, "mlp"),        # odd l, d not dividing; Dqk != Dv (CPU)
])
def test_against_reference(device, s, hq, hkv, dqk, dv, l, d, compression):
    skip_unsupported_dims(device, dqk, dv)
    branch = make_branch(device, dqk, dv, l, d, compression)
    gen = torch.Generator().manual_seed(s)
    q, k, v = (torch.randn(2, s, h, dim, generator=gen).to(torch.bfloat16).to(device).requires_grad_()
               for h, dim in ((hq, dqk), (hkv, dqk), (hkv, dv)))
    dout = torch.randn(2, s, hq, dv, generator=gen).to(torch.bfloat16).to(device)

    out, lse = branch(q, k, v)
    out.backward(dout)

    # float32 reference: a copy of the parameters, raw inputs upcast, dense leak-free mask
    ref_branch = copy.deepcopy(branch)
    ref_branch.zero_grad()
    leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
    k_cmp = reference_compress(leaves[1], ref_branch.compress_k, l, d)
    v_cmp = reference_compress(leaves[2], ref_branch.compress_v, l, d)
    visible = reference.band_visible(s, k_cmp.shape[1], True, d, -(l - 1), None)
    ref_out, ref_lse = reference.attention(leaves[0], k_cmp, v_cmp, visible)
    ref_out.backward(dout.float())

    names = ["compress_k.fc1.weight", "compress_k.pos", "compress_v.fc1.bias", "compress_v.fc2.weight"] \
        if compression == "mlp" else []
    grads = [q.grad, k.grad, v.grad] + [branch.get_parameter(n).grad for n in names]
    ref_grads = [t.grad for t in leaves] + [ref_branch.get_parameter(n).grad for n in names]
    assert out.shape == (2, s, hq, dv) and lse.shape == (2, hq, s)
    assert relative_error(out, ref_out) < 2e-2
    assert torch.equal(torch.isinf(lse).cpu(), torch.isinf(ref_lse).cpu())
    assert torch.isinf(lse[:, :, : l - 1]).all() and torch.isfinite(lse[:, :, l - 1:]).all()
    assert torch.all(out[:, : l - 1] == 0)
    finite = torch.isfinite(ref_lse)
    assert (lse[finite] - ref_lse[finite]).abs().max().item() < 3e-2
    for name, g, rg in zip(["dq", "dk", "dv"] + names, grads, ref_grads):
        assert g is not None and relative_error(g, rg) < 3e-2, name


def test_varlen_matches_per_sequence(device):
    branch = make_branch(device, 64, 64, 8, 4, "mlp")
    lengths = [19, 0, 40, 5, 8]
    gen = torch.Generator().manual_seed(1)
    total = sum(lengths)
    q, k, v = (torch.randn(total, h, 64, generator=gen).to(torch.bfloat16).to(device) for h in (4, 2, 2))
    cu = torch.tensor([0] + lengths).cumsum(0).to(torch.int32).to(device)
    out, lse, k_cmp, _ = branch(q, k, v, cu_seqlens=cu, return_compressed=True)
    assert out.shape == (total, 4, 64) and lse.shape == (4, total)
    assert k_cmp.shape[0] == sum(max(0, (n - 8) // 4 + 1) for n in lengths)
    start = 0
    for n in lengths:
        if n:
            o, s = branch(q[None, start:start + n], k[None, start:start + n], v[None, start:start + n])
            torch.testing.assert_close(out[start:start + n], o[0], atol=2e-2, rtol=2e-2)
            torch.testing.assert_close(lse[:, start:start + n], s[0], atol=1e-3, rtol=1e-3)
        start += n


def test_short_sequence_has_no_blocks(device):
    branch = make_branch(device, 64, 64, 32, 16, "mlp")
    q, k, v = (torch.randn(1, 20, 2, 64, dtype=torch.bfloat16, device=device, requires_grad=True) for _ in range(3))
    out, lse, k_cmp, v_cmp = branch(q, k, v, return_compressed=True)
    assert k_cmp.shape == (1, 0, 2, 64) and v_cmp.shape == (1, 0, 2, 64)
    assert torch.all(out == 0) and torch.isinf(lse).all()
    out.float().sum().backward()
    assert torch.all(q.grad == 0) and torch.all(k.grad == 0) and torch.all(v.grad == 0)


def test_query_start_matches_the_full_sequence(device):
    """Chunked prefill: queries holding the last rows, with query_start, see what those rows of the
    full sequence see."""
    branch = make_branch(device, 64, 64, 8, 4, "mean")
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 70, 2, 64, generator=gen).to(torch.bfloat16).to(device) for _ in range(3))
    full, full_lse = branch(q, k, v)
    tail, tail_lse = branch(q[:, 45:], k, v, query_start=45)
    torch.testing.assert_close(tail, full[:, 45:], atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(tail_lse, full_lse[:, :, 45:], atol=1e-4, rtol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="'block_size'"):
        CompressedAttention(64, block_size=0)
    with pytest.raises(ValueError, match="'compression'"):
        CompressedAttention(64, compression="max")
    branch = CompressedAttention(64, block_size=8, stride=4)
    q = torch.randn(1, 16, 2, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="'k'"):
        branch(q, q[:, :8], q)
