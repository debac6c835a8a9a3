"""The leak test, through autograd: does output position t depend on raw keys / values after t?

With pooled blocks the leak-free offsets make the gradient of out[t] with respect to every raw
position after t exactly zero. The seed's default (diag_offset = 0) lets query t read block
floor(t / d), whose pooled value averages positions up to floor(t / d)·d + l - 1 > t; the gradient
of out[t] with respect to those values is P(t, block) · dout / l, non-zero because softmax weights
are positive. That is the leak the documentation warns about.
"""

import pytest
import torch

import ccattn
from ccattn.nsa import CompressedAttention


def raw_inputs(device, s=53, hq=4, hkv=2, d=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # Small scores keep every softmax weight well above zero, so "non-zero" is robust in bf16.
    q = (0.1 * torch.randn(1, s, hq, d, generator=gen)).to(torch.bfloat16).to(device)
    k = (0.1 * torch.randn(1, s, hkv, d, generator=gen)).to(torch.bfloat16).to(device).requires_grad_()
    v = torch.randn(1, s, hkv, d, generator=gen).to(torch.bfloat16).to(device).requires_grad_()
    return q, k, v


def grads_of_row(out, t, k, v):
    """d(out[0, t] · g)/d(k, v) for a fixed random g: [S] max |grad| per raw position."""
    g = torch.randn(out.shape[2:], generator=torch.Generator().manual_seed(t)).to(out)
    dk, dv = torch.autograd.grad((out[0, t] * g).sum(), (k, v), retain_graph=True)
    return dk[0].abs().amax(dim=(1, 2)).float().cpu(), dv[0].abs().amax(dim=(1, 2)).float().cpu()


def mean_blocks(x, l, d):
    # [B, S, H, D] -> [B, n, H, D], block j = mean of positions j*d .. j*d + l - 1
    return x.unfold(1, l, d).mean(dim=-1)


@pytest.mark.parametrize("l, d", [(8, 4), (5, 5), (6, 2), (4, 3)])
def test_leak_free_offset_has_no_future_gradient(device, l, d):
    q, k, v = raw_inputs(device)
    out = ccattn.attention(q, mean_blocks(k, l, d), mean_blocks(v, l, d), causal=True, compress_factor=d,
                           diag_offset=-(l - 1))
    seen_past = False
    for t in range(q.shape[1]):
        gk, gv = grads_of_row(out, t, k, v)
        assert torch.all(gk[t + 1:] == 0) and torch.all(gv[t + 1:] == 0), f"out[{t}] depends on the future"
        seen_past |= bool(gv[: t + 1].gt(0).any())
    assert seen_past, "no gradient reached any position: the test would prove nothing"


@pytest.mark.parametrize("l, d", [(8, 4), (5, 5), (6, 2)])
def test_seed_default_offset_leaks_when_pooling(device, l, d):
    q, k, v = raw_inputs(device)
    out = ccattn.attention(q, mean_blocks(k, l, d), mean_blocks(v, l, d), causal=True, compress_factor=d)
    blocks = (k.shape[1] - l) // d + 1
    leaking = [t for t in range(k.shape[1]) if t // d < blocks and (t // d) * d + l - 1 > t]
    assert len(leaking) >= blocks  # every block leaks to at least its first query
    for t in leaking:
        _, gv = grads_of_row(out, t, k, v)
        last = (t // d) * d + l - 1  # last raw position of block floor(t / d), which query t reads
        assert torch.all(gv[t + 1: last + 1] > 0), f"out[{t}] should read positions {t + 1}..{last} (leak)"


@pytest.mark.parametrize("compression", ["mean", "mlp"])
def test_nsa_module_is_leak_free(device, compression):
    torch.manual_seed(0)
    branch = CompressedAttention(head_dim=64, block_size=8, stride=4, compression=compression).to(device)
    if compression == "mlp":  # leave the mean-pooling start: the MLP path must be exercised too
        torch.nn.init.normal_(branch.compress_k.fc2.weight, std=0.05)
        torch.nn.init.normal_(branch.compress_v.fc2.weight, std=0.05)
    q, k, v = raw_inputs(device, s=41)
    out, lse = branch(q, k, v)
    for t in range(q.shape[1]):
        gk, gv = grads_of_row(out, t, k, v)
        assert torch.all(gk[t + 1:] == 0) and torch.all(gv[t + 1:] == 0), f"out[{t}] depends on the future"
        if t >= 7:  # the first complete block ends at position l - 1 = 7
            assert gv[: t + 1].gt(0).any()
