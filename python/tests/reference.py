"""The float32 reference: attention with a dense boolean mask, built from PyTorch ops.

The mask is written from docs/semantics.md directly (no code shared with the library), so the tests
check the band arithmetic as well as the attention.
"""

import torch


def band_visible(sq, sk, causal, compress_factor, diag_offset, window_left, device="cpu"):
    """bool [sq, sk]: is key j visible to query i (positions local to one sequence)."""
    if diag_offset is None:
        diag_offset = sk - sq if compress_factor == 1 else 0
    i = torch.arange(sq, device=device)[:, None]
    j = torch.arange(sk, device=device)[None, :]
    diag = torch.div(i + diag_offset, compress_factor, rounding_mode="floor")  # floor, also below zero
    visible = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if causal:
        visible &= j <= diag
    if window_left is not None:
        visible &= j >= diag - window_left
    return visible


def varlen_visible(cu_seqlens_q, cu_seqlens_k, causal, compress_factor, diag_offset, window_left):
    """bool [Tq, Tk]: block diagonal, each sequence's band with its own lengths."""
    cu_q, cu_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    visible = torch.zeros(cu_q[-1], cu_k[-1], dtype=torch.bool)
    for b in range(len(cu_q) - 1):
        q0, q1, k0, k1 = cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1]
        visible[q0:q1, k0:k1] = band_visible(q1 - q0, k1 - k0, causal, compress_factor, diag_offset, window_left)
    return visible


def attention(q, k, v, visible, scale=None):
    """q [B, Sq, Hq, Dqk], k [B, Sk, Hkv, Dqk], v [B, Sk, Hkv, Dv], visible bool [Sq, Sk].

    Returns out [B, Sq, Hq, Dv] and lse [B, Hq, Sq] in the inputs' dtype; differentiable. A row with
    no visible key gives out 0, lse -inf and no gradient.
    """
    group = q.shape[2] // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    visible = visible.to(q.device)
    empty = ~visible.any(dim=-1)  # [Sq]
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    # Empty rows get finite scores and a zero weight, so softmax and its gradient stay NaN-free.
    s = s.masked_fill(~visible, float("-inf")).masked_fill(empty[:, None], 0.0)
    p = torch.softmax(s, dim=-1) * visible
    out = torch.einsum("bhij,bjhd->bihd", p, v)
    lse = torch.logsumexp(s, dim=-1).masked_fill(empty, float("-inf"))
    return out, lse


def run(q, k, v, visible, dout, scale=None, dtype=torch.float32):
    """Reference out, lse and (dq, dk, dv) for dout, computed in dtype on the inputs' device."""
    # These problems are small: on a busy CPU, PyTorch's intra-op threads wait on each other far
    # longer than they compute, so the reference runs on one (ccattn keeps its threads).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        out, lse = attention(*leaves, visible, scale)
        out.backward(dout.to(dtype))
    finally:
        torch.set_num_threads(threads)
    return out.detach(), lse.detach(), [t.grad for t in leaves]
