"""Band tensors for common masks: ``(lo, hi)`` pairs for ``ccattn.attention(..., band=(lo, hi))``.

Row ``i`` sees keys ``[lo[i], hi[i])`` (clamped to ``[0, Sk)`` by the library). Each helper returns
int32 tensors of one row space ``[S]``; use ``lo.expand(B, -1)`` for a batch of equal sequences
(no copy), or pass them as they are to ``attention_varlen`` when they cover every packed row.
Pictures of each mask: docs/band_tensors.md. C++ twins: ``ccattn/band_helpers.h``.

Pure PyTorch on purpose (no extension import), so scripts can draw the masks from these tensors.
"""

import torch

__all__ = ["prefix_lm", "chunked", "documents", "nsa_documents", "nsa_blocks"]


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ccattn.bands: argument '{name}' must be an int >= 1, got {value!r}")


def _lengths(lengths):
    lengths = [int(n) for n in lengths]
    if any(n < 0 for n in lengths):
        raise ValueError(f"ccattn.bands: argument 'lengths' must be >= 0, got {lengths}")
    return lengths


def prefix_lm(seqlen, prefix, *, device=None):
    """Prefix-LM: the first ``prefix`` positions see each other, later ones are causal.

    Row ``i`` sees ``[0, max(i + 1, prefix))``.
    """
    i = torch.arange(seqlen, dtype=torch.int32, device=device)
    return torch.zeros_like(i), torch.clamp(i + 1, min=prefix)


def chunked(seqlen, chunk, *, device=None):
    """Chunked attention: blocks of ``chunk`` positions see only their own block, causal inside it.

    Row ``i`` sees ``[floor(i / chunk) * chunk, i + 1)``.
    """
    _positive("chunk", chunk)
    i = torch.arange(seqlen, dtype=torch.int32, device=device)
    return torch.div(i, chunk, rounding_mode="floor") * chunk, i + 1


def documents(lengths, *, causal=True, device=None):
    """Documents packed into one sequence (no cu_seqlens): a row sees only its own document,
    causally, or all of it with ``causal=False``. ``lengths`` in packing order."""
    lengths = torch.tensor(_lengths(lengths), dtype=torch.int32, device=device)
    start = torch.cumsum(lengths, 0, dtype=torch.int32) - lengths
    lo = torch.repeat_interleave(start, lengths)
    hi = torch.arange(lo.numel(), dtype=torch.int32, device=device) + 1 if causal else \
        torch.repeat_interleave(start + lengths, lengths)
    return lo, hi


def nsa_blocks(length, block, stride):
    """Compressed keys of one document of ``length`` positions: complete blocks only."""
    return 0 if length < block else (length - block) // stride + 1


def nsa_documents(lengths, block, stride, *, device=None):
    """NSA compressed keys of packed documents, each with its own offset.

    Document ``d`` has ``lengths[d]`` queries and ``nsa_blocks(lengths[d], block, stride)`` compressed
    keys, laid out one document after another. Query ``t`` of a document sees the blocks of its own
    document that end at or before ``t`` (block ``j`` covers ``[j * stride, j * stride + block)``),
    so nothing leaks across documents or from the future.
    """
    _positive("block", block)
    _positive("stride", stride)
    lengths = _lengths(lengths)
    los, his = [], []
    first_key = 0
    for n in lengths:
        t = torch.arange(n, dtype=torch.int32, device=device)
        seen = torch.where(t + 1 < block, 0, torch.div(t + 1 - block, stride, rounding_mode="floor") + 1)
        los.append(torch.full((n,), first_key, dtype=torch.int32, device=device))
        his.append(first_key + seen.to(torch.int32))
        first_key += nsa_blocks(n, block, stride)
    empty = torch.zeros(0, dtype=torch.int32, device=device)
    return torch.cat(los) if los else empty, torch.cat(his) if his else empty
