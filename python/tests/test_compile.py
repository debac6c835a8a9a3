"""torch.compile(fullgraph=True) through the operators, and torch.library.opcheck of their
registrations (schema, fake kernels, autograd)."""

import pytest
import torch
from torch import nn

import ccattn
from ccattn.nsa import CompressedAttention


class TinyBlock(nn.Module):
    """Projections around the compressed attention and a sliding window: what a model does with it."""

    def __init__(self, dim=128, heads=2, kv_heads=1, head_dim=64):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q = nn.Linear(dim, heads * head_dim)
        self.kv = nn.Linear(dim, 2 * kv_heads * head_dim)
        self.o = nn.Linear(heads * head_dim, dim)
        self.branch = CompressedAttention(head_dim, block_size=8, stride=4)

    def forward(self, x):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.heads, self.head_dim).to(torch.bfloat16)
        k, v = self.kv(x).view(b, s, 2, self.kv_heads, self.head_dim).to(torch.bfloat16).unbind(2)
        compressed, lse = self.branch(q, k, v)
        local = ccattn.attention(q, k, v, causal=True, window_left=16)
        y = (compressed + local).float() + torch.sigmoid(lse.transpose(1, 2)).unsqueeze(-1)
        return self.o(y.reshape(b, s, -1))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fullgraph_matches_eager(device, backend):
    torch.manual_seed(0)
    model = TinyBlock().to(device)
    x = torch.randn(2, 67, 128, device=device)
    eager_out = model(x)
    eager_out.square().mean().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    out = compiled(x)
    out.square().mean().backward()
    torch.testing.assert_close(out, eager_out, atol=2e-2, rtol=2e-2)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, atol=2e-2, rtol=5e-2)


def test_varlen_fullgraph(device):
    torch.manual_seed(1)
    q, k, v = (torch.randn(50, h, 64, dtype=torch.bfloat16, device=device, requires_grad=True) for h in (4, 2, 2))
    cu = torch.tensor([0, 20, 20, 50], dtype=torch.int32, device=device)

    def f(q, k, v, cu):
        return ccattn.attention_varlen(q, k, v, cu, cu, 30, 30, causal=True, compress_factor=3, diag_offset=-2)

    eager = f(q, k, v, cu)
    (gq,) = torch.autograd.grad(eager.float().sum(), q)
    torch._dynamo.reset()
    out = torch.compile(f, fullgraph=True, backend="aot_eager")(q, k, v, cu)
    (cq,) = torch.autograd.grad(out.float().sum(), q)
    assert torch.equal(out, eager) and torch.equal(cq, gq)


def test_opcheck(device):
    gen = torch.Generator().manual_seed(2)

    def t(*shape, grad=True):
        return torch.randn(shape, generator=gen).to(torch.bfloat16).to(device).requires_grad_(grad)

    fixed = (t(2, 23, 4, 64), t(2, 9, 2, 64), t(2, 9, 2, 64), None, None, True, 3, -2, None, None)
    torch.library.opcheck(torch.ops.ccattn.fwd.default, fixed)
    cu_q = torch.tensor([0, 10, 23], dtype=torch.int32, device=device)
    cu_k = torch.tensor([0, 4, 9], dtype=torch.int32, device=device)
    varlen = (t(23, 4, 64), t(9, 2, 64), t(9, 2, 64), cu_q, cu_k, True, 3, None, 2, 0.2)
    torch.library.opcheck(torch.ops.ccattn.fwd.default, varlen)
    torch.library.opcheck(torch.ops.ccattn.fwd.default, varlen + (13, 5, False))  # validate=False
    q, k, v = (x.detach() for x in fixed[:3])
    out, lse = torch.ops.ccattn.fwd(q, k, v, *fixed[3:])
    torch.library.opcheck(torch.ops.ccattn.bwd.default,
                          (torch.randn_like(out), q, k, v, out, lse, None, None, True, 3, -2, None, None))
