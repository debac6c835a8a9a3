"""``ccattn.attention``, ``ccattn.attention_varlen`` and ``ccattn.attention_with_kvcache``: flash-attn's
layout, ccattn's band mask.

The exact contract is docs/semantics.md. Query ``i`` sees (compressed) key ``j`` iff
``lo(i) <= j < hi(i)`` with, for ``d(i) = floor((i + diag_offset) / compress_factor)``::

    hi(i) = clamp(d(i) + 1, 0, Sk)            if causal, else Sk
    lo(i) = clamp(d(i) - window_left, 0, Sk)   if window_left is set, else 0

``diag_offset`` (δ) defaults to ``Sk - Sq`` when ``compress_factor == 1`` (flash-attn's bottom-right
causal alignment) and to ``0`` when ``compress_factor > 1`` (the seed's rule ``j·cf <= i``).

Conventions as (compress_factor, diag_offset):

====================================================  ==========  ============
convention                                            cf          δ
====================================================  ==========  ============
seed / flash-attn PR #2418 (default for cf > 1)       cf          0
NSA: blocks of length l, stride d, complete only      d           -(l - 1)
non-overlapping blocks of size B (fla-org NSA)        B           -(B - 1)
plain causal, bottom-right (default for cf = 1)       1           Sk - Sq
queries starting at absolute position p (prefill)     cf          δ + p
====================================================  ==========  ============

Warning: the default δ = 0 leaks future tokens when the keys are pooled blocks. Query ``i`` then sees
compressed token ``floor(i / cf)``, which summarizes raw positions up to ``floor(i / cf)·cf + cf - 1``
(``+ l - 1`` for NSA blocks of length l), past ``i`` unless ``i`` ends the block. For causal training
on pooled blocks use the leak-free δ of the NSA or non-overlapping-block rows
(``ccattn.nsa.CompressedAttention`` does).

A row that sees no key (an *empty row*) has ``out = 0`` and ``lse = -inf`` and contributes no gradient.

Any other monotone band is given as band tensors, ``band=(lo, hi)``: row ``i`` sees keys
``[lo[i], hi[i])`` clamped to ``[0, Sk)``, both non-decreasing in ``i`` within a sequence
(docs/band_tensors.md; ``ccattn.bands`` builds them for prefix-LM, chunked attention, packed documents
and NSA compressed keys per document), on CPU and CUDA tensors alike.
"""

import math

import torch

from . import _ops

_FLOAT32_MAX = 3.4028234663852886e38


def _check_tensor(t, name, rank, layout):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"ccattn: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != rank:
        raise ValueError(f"ccattn: argument '{name}' must be {layout}, got shape {tuple(t.shape)}")


def _check_int(name, value, minimum=None, optional=False):
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        raise TypeError(f"ccattn: argument '{name}' must be an int{' or None' if optional else ''}, "
                        f"got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"ccattn: argument '{name}' must be >= {minimum}, got {value}")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"ccattn: argument '{name}' must be a bool, got {type(value).__name__}")


def _check_mask(causal, compress_factor, diag_offset, window_left, scale):
    _check_bool("causal", causal)
    _check_int("compress_factor", compress_factor, minimum=1)
    _check_int("diag_offset", diag_offset, optional=True)
    _check_int("window_left", window_left, minimum=0, optional=True)
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f"ccattn: argument 'scale' must be a float or None, got {type(scale).__name__}")
        if not math.isfinite(scale):
            raise ValueError(f"ccattn: argument 'scale' must be finite, got {scale}")
        if abs(scale) > _FLOAT32_MAX:
            raise ValueError(f"ccattn: argument 'scale' = {scale} overflows float32 (the kernels' scale type)")
        scale = float(scale)
    return scale


def _check_band(band, rank, layout, causal, compress_factor, diag_offset, window_left):
    """(lo, hi) of band tensors, or (None, None) without; the band arguments must then keep their defaults."""
    if band is None:
        return None, None
    if not isinstance(band, (tuple, list)) or len(band) != 2:
        raise TypeError(f"ccattn: argument 'band' must be a pair (lo, hi) of integer tensors, got {type(band).__name__}")
    if causal or compress_factor != 1 or diag_offset is not None or window_left is not None:
        raise ValueError("ccattn: argument 'band' replaces causal, compress_factor, diag_offset and window_left; "
                         "leave those at their defaults")
    for t, name in zip(band, ("band[0]", "band[1]")):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"ccattn: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"ccattn: argument '{name}' must be int32 or int64, got {t.dtype}")
        if t.dim() != rank:
            raise ValueError(f"ccattn: argument '{name}' must be {layout}, got shape {tuple(t.shape)}")
    return band[0], band[1]


def attention(q, k, v, *, causal=False, compress_factor=1, diag_offset=None, window_left=None, scale=None,
              return_lse=False, band=None, validate=True, deterministic=False):
    """Attention of ``q`` over (compressed) ``k``, ``v`` under ccattn's band mask, differentiable.

    Args:
        q: ``[B, Sq, Hq, Dqk]``, bfloat16 or float16, on the CPU or a CUDA device.
        k: ``[B, Sk, Hkv, Dqk]``, same dtype and device; ``Hq % Hkv == 0`` (GQA: query head ``h``
            reads KV head ``h // (Hq // Hkv)``).
        v: ``[B, Sk, Hkv, Dv]``.
        causal: key ``j`` visible iff ``j·compress_factor <= i + diag_offset``.
        compress_factor: cf >= 1, how many raw positions one key stands for.
        diag_offset: δ (any sign); ``None`` = ``Sk - Sq`` for cf = 1, ``0`` for cf > 1 (the seed's
            rule). **The default 0 leaks future tokens when k / v are pooled blocks**: use
            ``-(l - 1)`` for NSA blocks of length l and stride cf, ``-(cf - 1)`` for
            non-overlapping blocks of size cf, and add p for queries starting at position p.
        window_left: keys further than this many (compressed) positions left of the diagonal are
            hidden; ``None`` = unlimited. For cf = 1 this is flash-attn's ``window_size=(w, 0)``.
        scale: softmax scale, default ``1 / sqrt(Dqk)``.
        return_lse: also return the log-sum-exp of the scores.
        band: band tensors ``(lo, hi)`` instead of the band arguments: int32 or int64 ``[B, Sq]`` on
            q's device (``lo.expand(B, -1)`` shares one row of edges across the batch); row ``i`` of
            sequence ``b`` sees keys ``[lo[b, i], hi[b, i])`` clamped to ``[0, Sk)``, both
            non-decreasing in ``i``. CPU only so far.
        validate: check that band tensors are non-decreasing (default); ``False`` trusts the caller.
        deterministic: a backward that adds in a fixed order, so that repeated calls give
            bitwise-identical gradients. On CUDA it is slower (thread blocks take turns on the
            shared fp32 sums of dq and, for few keys, of dk and dv) and is not available for
            block-sparse masks; the CPU backward is deterministic either way.

    Returns:
        ``out [B, Sq, Hq, Dv]`` in q's dtype, and with ``return_lse`` also ``lse [B, Hq, Sq]``
        (float32, natural log, ``-inf`` for empty rows). ``lse`` carries no gradient.

    A tensor whose last dimension is not contiguous is copied; other strides are used as they are.
    Bad arguments raise ``ValueError`` (``TypeError`` for wrong types, ``NotImplementedError`` for
    head dims the device's kernels do not support) naming the argument.
    ``help(ccattn.functional)`` has the table of conventions.
    """
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        _check_tensor(t, name, 4, "[B, S, H, D]")
    scale = _check_mask(causal, compress_factor, diag_offset, window_left, scale)
    lo, hi = _check_band(band, 2, "[B, Sq]", causal, compress_factor, diag_offset, window_left)
    _check_bool("validate", validate)
    _check_bool("deterministic", deterministic)
    out, lse = _ops.fwd(q, k, v, None, None, causal, compress_factor, diag_offset, window_left, scale, None, None,
                        validate, lo, hi, deterministic)
    return (out, lse) if return_lse else out


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=False,
                     compress_factor=1, diag_offset=None, window_left=None, scale=None, return_lse=False,
                     validate=True, band=None, deterministic=False):
    """Attention over packed sequences of different lengths (flash-attn's varlen layout).

    Args:
        q: ``[Tq, Hq, Dqk]``; sequence ``b`` owns rows ``cu_seqlens_q[b]:cu_seqlens_q[b + 1]``.
        k: ``[Tk, Hkv, Dqk]``; sequence ``b`` owns rows ``cu_seqlens_k[b]:cu_seqlens_k[b + 1]``.
        v: ``[Tk, Hkv, Dv]``.
        cu_seqlens_q, cu_seqlens_k: int32 ``[B + 1]`` on q's device: non-decreasing, first 0, last
            ``Tq`` / ``Tk``. A sequence may be empty.
        max_seqlen_q, max_seqlen_k: ints, at least the longest query / key sequence. With
            ``validate=True`` ccattn reads the lengths from ``cu_seqlens`` itself and checks these
            against them; with ``validate=False`` it launches with them.
        causal, compress_factor, diag_offset, window_left, scale, return_lse: as in
            :func:`attention`; positions ``i``, ``j`` and the default δ are per sequence.
        validate: check ``cu_seqlens`` before running (default). On a CUDA device that is a copy to
            the host, which synchronizes the stream and cannot be captured in a CUDA graph.
            ``validate=False`` copies nothing (capture-safe); the caller then guarantees that
            ``cu_seqlens`` are as described above and that no sequence is longer than
            ``max_seqlen_q`` / ``max_seqlen_k``. Breaking that is undefined behaviour (out-of-bounds
            memory accesses on the device). CPU tensors are checked either way. Band tensors'
            monotonicity is checked only with ``validate=True``.
        band: band tensors ``(lo, hi)``, int32 or int64 ``[Tq]`` (one entry per packed query row),
            as in :func:`attention`, positions local to each sequence. CPU only so far.
        deterministic: as in :func:`attention`.

    Returns:
        ``out [Tq, Hq, Dv]``, and with ``return_lse`` also ``lse [Hq, Tq]`` (float32, no gradient).
    """
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        _check_tensor(t, name, 3, "[T, H, D] (varlen)")
    for t, name in ((cu_seqlens_q, "cu_seqlens_q"), (cu_seqlens_k, "cu_seqlens_k")):
        _check_tensor(t, name, 1, "int32 [B + 1]")
    _check_int("max_seqlen_q", max_seqlen_q, minimum=0)
    _check_int("max_seqlen_k", max_seqlen_k, minimum=0)
    _check_bool("validate", validate)
    _check_bool("deterministic", deterministic)
    scale = _check_mask(causal, compress_factor, diag_offset, window_left, scale)
    lo, hi = _check_band(band, 1, "[Tq]", causal, compress_factor, diag_offset, window_left)
    out, lse = _ops.fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, causal, compress_factor, diag_offset, window_left,
                        scale, max_seqlen_q, max_seqlen_k, validate, lo, hi, deterministic)
    return (out, lse) if return_lse else out


def attention_with_kvcache(q, k_cache, v_cache, cache_seqlens, *, k=None, v=None, page_table=None, query_pos=None,
                           causal=False, compress_factor=1, diag_offset=None, window_left=None, scale=None,
                           num_splits=0, return_lse=False):
    """Attention of new queries over a KV cache, after flash-attn's ``flash_attn_with_kvcache`` (inference).

    Args:
        q: ``[B, Sq, Hq, Dqk]``, the new queries (decode: ``Sq = 1``).
        k_cache, v_cache: ``[B, S_cache, Hkv, Dqk | Dv]``, or paged ``[num_pages, page_size, Hkv, D]``
            with ``page_table``; ``page_size`` a multiple of 16, at most 256. Written in place at the
            appended rows.
        cache_seqlens: int32 ``[B]``, valid rows of each sequence before this call.
        k, v: optional ``[B, S_new, Hkv, Dqk | Dv]``, written to rows ``cache_seqlens[b] ..
            cache_seqlens[b] + S_new`` first; sequence ``b`` then has ``cache_seqlens[b] + S_new`` keys.
        page_table: int32 ``[B, max_pages]``: key ``j`` of sequence ``b`` is row ``j % page_size`` of
            page ``page_table[b, j // page_size]``.
        query_pos: optional int32 ``[B]``, absolute position ``p_b`` of the first new query: sequence
            ``b`` uses ``diag_offset + p_b`` (chunked prefill, see the table above). With compressed
            keys (cf > 1) this places the queries; with cf = 1 the default δ = ``Sk_b - Sq`` already
            aligns them bottom-right.
        causal, compress_factor, diag_offset, window_left, scale: as in :func:`attention`, per
            sequence with its key count.
        num_splits: CUDA split-KV CTAs per sequence: 0 = heuristic, 1 = no split (at most 256).
        return_lse: also return ``lse [B, Hq, Sq]`` (float32).

    Shapes, dtypes and devices are checked on the host. The contents of CUDA tensors
    (``cache_seqlens``, ``page_table``, ``query_pos``) are the caller's contract and never read on
    the host, so the call can be captured in a CUDA graph and replayed with new lengths: ``0 <=
    cache_seqlens[b]``, ``cache_seqlens[b] + S_new`` at most the capacity (``S_cache`` or
    ``max_pages * page_size``), page indices valid for the pages in use. Breaking it is undefined
    behaviour. CPU tensors are checked.

    Returns:
        ``out [B, Sq, Hq, Dv]``, and with ``return_lse`` also ``lse``.
    """
    _check_tensor(q, "q", 4, "[B, Sq, Hq, D]")
    for t, name in ((k_cache, "k_cache"), (v_cache, "v_cache")):
        _check_tensor(t, name, 4, "[B, S_cache, Hkv, D] or [num_pages, page_size, Hkv, D]")
    _check_tensor(cache_seqlens, "cache_seqlens", 1, "int32 [B]")
    for t, name in ((k, "k"), (v, "v")):
        if t is not None:
            _check_tensor(t, name, 4, "[B, S_new, Hkv, D]")
    if (k is None) != (v is None):
        raise ValueError("ccattn: arguments 'k' and 'v' come together")
    if page_table is not None:
        _check_tensor(page_table, "page_table", 2, "int32 [B, max_pages]")
    if query_pos is not None:
        _check_tensor(query_pos, "query_pos", 1, "int32 [B]")
    _check_int("num_splits", num_splits, minimum=0)
    scale = _check_mask(causal, compress_factor, diag_offset, window_left, scale)
    out, lse = _ops.kvcache(q, k_cache, v_cache, cache_seqlens, page_table, k, v, query_pos, causal, compress_factor,
                            diag_offset, window_left, scale, num_splits)
    return (out, lse) if return_lse else out
