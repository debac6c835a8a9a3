"""Python-side registrations of the torch operators ``ccattn::fwd``, ``ccattn::bwd`` and ``ccattn::kvcache``.

The C++ extension (``ccattn._C``, python/csrc/ops.cpp) defines the operators and their CPU and CUDA
kernels. Here they get fake (meta) kernels, so ``torch.compile`` can trace them without running
them, and an autograd formula, so ``fwd`` is differentiable through ``bwd`` (``kvcache`` is
inference only).
"""

import torch

from . import _C  # noqa: F401  (loading the extension registers torch.ops.ccattn)

fwd = torch.ops.ccattn.fwd
bwd = torch.ops.ccattn.bwd
kvcache = torch.ops.ccattn.kvcache


@torch.library.register_fake("ccattn::fwd")
def _fwd_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, causal, compress_factor, diag_offset, window_left, scale,
              max_seqlen_q=None, max_seqlen_k=None, validate=True, band_lo=None, band_hi=None, deterministic=False):
    # The kernels allocate contiguous outputs: out like q with v's head dim, lse float32
    # [B, Hq, Sq] (fixed length) or [Hq, Tq] (varlen).
    out = q.new_empty((*q.shape[:-1], v.shape[-1]))
    if cu_seqlens_q is None and cu_seqlens_k is None:
        lse = q.new_empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
    else:
        lse = q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)
    return out, lse


@torch.library.register_fake("ccattn::bwd")
def _bwd_fake(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, causal, compress_factor, diag_offset,
              window_left, scale, max_seqlen_q=None, max_seqlen_k=None, validate=True, band_lo=None, band_hi=None,
              deterministic=False):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


@torch.library.register_fake("ccattn::kvcache")
def _kvcache_fake(q, k_cache, v_cache, cache_seqlens, page_table, k_new, v_new, query_pos, causal, compress_factor,
                  diag_offset, window_left, scale, num_splits=0):
    # out like q with v_cache's head dim, lse float32 [B, Hq, Sq]; the caches are mutated in place.
    out = q.new_empty((*q.shape[:-1], v_cache.shape[-1]))
    lse = q.new_empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
    return out, lse


def _setup_context(ctx, inputs, output):
    q, k, v, cu_seqlens_q, cu_seqlens_k, *mask = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k)
    # causal, compress_factor, diag_offset, window_left, scale (and the varlen arguments, validate, the
    # band tensors and deterministic: inputs without gradients, passed to bwd as they came, in bwd's order)
    ctx.mask = mask
    # lse is an output for inspection and for NSA's block selection (a top-k, not differentiable);
    # the kernels compute no gradient through it.
    ctx.mark_non_differentiable(lse)


def _backward(ctx, dout, _dlse):
    q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k = ctx.saved_tensors
    dq, dk, dv = bwd(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, *ctx.mask)
    return (dq, dk, dv) + (None,) * (len(ctx.needs_input_grad) - 3)


torch.library.register_autograd("ccattn::fwd", _backward, setup_context=_setup_context)
