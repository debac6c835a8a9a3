"""The compressed branch of Native Sparse Attention (NSA; Yuan et al., 2025) as a ``torch.nn.Module``.

NSA summarizes raw keys and values into blocks of length ``l`` taken every ``d`` positions (stride
``d <= l``; ``d == l`` gives non-overlapping blocks): block ``j`` covers raw positions
``[j·d, j·d + l)`` and becomes one compressed key and one compressed value. A sequence of ``S``
positions has ``max(0, (S - l) // d + 1)`` complete blocks; an incomplete tail block is not formed.

Which blocks may query ``t`` read without seeing the future? Only complete ones,
``j·d + l - 1 <= t``, which is ccattn's causal band with ``compress_factor = d`` and
``diag_offset = -(l - 1)`` (for non-overlapping blocks of size ``B``: ``B`` and ``-(B - 1)``).
:class:`CompressedAttention` always uses this leak-free rule.

Warning: ``ccattn.attention``'s *default* for ``compress_factor > 1`` is the seed's rule
``diag_offset = 0`` (``j·cf <= t``). With pooled blocks it lets query ``t`` read block
``floor(t / d)``, which summarizes positions up to ``floor(t / d)·d + l - 1``, past ``t`` unless ``t``
is that block's last position: in causal training the model learns from future tokens, and the loss it
reaches is not achievable at inference. Pass the leak-free ``diag_offset`` whenever the keys are
pooled blocks.

Queries before the first complete block (``t < l - 1``) see no block: their output is 0 and their
lse ``-inf``. NSA's gates combine this branch with the selected-block and sliding-window branches,
which do see those positions.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .functional import attention, attention_varlen


class BlockCompressor(nn.Module):
    """Maps each block ``[..., l, D]`` of raw keys (or values) to one vector ``[..., D]``.

    ``"mean"``: mean pooling, no parameters. ``"mlp"``: mean pooling plus a learned MLP of the block
    with an intra-block position embedding, ``mean(x) + W2 · gelu(W1 · flatten(x + pos))``, shared by
    all heads. ``W2`` starts at zero, so an untrained compressor is mean pooling.
    """

    def __init__(self, dim, block_size, compression="mlp", hidden=None):
        super().__init__()
        if compression not in ("mean", "mlp"):
            raise ValueError(f"ccattn.nsa: argument 'compression' must be 'mean' or 'mlp', got {compression!r}")
        self.mlp = compression == "mlp"
        if self.mlp:
            hidden = hidden or 2 * dim
            self.pos = nn.Parameter(torch.randn(block_size, dim) * 0.02)
            self.fc1 = nn.Linear(block_size * dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def forward(self, blocks):
        pooled = blocks.mean(dim=-2)
        if not self.mlp:
            return pooled
        x = (blocks.to(self.pos.dtype) + self.pos).flatten(-2)
        return pooled + self.fc2(F.gelu(self.fc1(x))).to(blocks.dtype)


class CompressedAttention(nn.Module):
    """NSA's compressed attention branch: compress raw K/V into blocks, attend with the leak-free rule.

    Args:
        head_dim: ``Dqk``, the head dim of q and k.
        v_head_dim: ``Dv``, the head dim of v (default ``head_dim``).
        block_size: ``l``, raw positions per block (NSA's default 32).
        stride: ``d``, positions between block starts (NSA's default 16); ``d == l`` gives
            non-overlapping blocks.
        compression: ``"mlp"`` (learned, with intra-block position embedding; starts as mean
            pooling) or ``"mean"`` (parameter-free).
        mlp_hidden: hidden width of the compression MLPs (default ``2 * head_dim``).
        process_group: a ``torch.distributed`` process group (``torch.distributed.group.WORLD`` for
            all ranks) for context parallelism: ``forward`` then takes this rank's *shards* of one
            long sequence (``ccattn.distributed.shard_sequence``; q and the raw k / v share the
            positions, ``cu_seqlens`` is the full sequence's) and returns this rank's rows. The
            blocks are compressed where their first raw position lives, blocks that straddle a
            shard edge exactly (a halo of raw positions from the next chunk); see
            ``ccattn.distributed.compressed_attention`` and docs/context_parallel.md. ``None``
            (default): one process holds the whole sequence.
        cp_layout: ``"zigzag"`` (default) or ``"contiguous"``, the layout of the shards.

    ``forward(q, k, v)`` with ``q [B, Sq, Hq, Dqk]`` and *raw* ``k [B, S, Hkv, Dqk]``,
    ``v [B, S, Hkv, Dv]`` (bfloat16 or float16; ``Hq % Hkv == 0``) returns ``(out, lse)``:
    ``out [B, Sq, Hq, Dv]`` and ``lse [B, Hq, Sq]`` (float32, no gradient). NSA's selection branch
    scores blocks with ``p = exp(scale · q · k_cmp - lse)``; ``return_compressed=True`` also returns
    ``k_cmp`` and ``v_cmp``.

    Keyword arguments of ``forward``:
        cu_seqlens: int32 ``[B + 1]`` for packed sequences (q ``[T, Hq, Dqk]``, k/v ``[T, Hkv, D]``
            sharing the packing; blocks never cross a sequence boundary). Reading the block counts
            needs the lengths on the host: one synchronization, and a graph break under
            ``torch.compile``. ``lse`` is then ``[Hq, T]``.
        query_start: absolute position of q's first row in the raw sequence (fixed length only), for
            chunked prefill or decoding where q holds the last ``Sq`` positions: the band's
            ``diag_offset`` becomes ``query_start - (l - 1)``.
        scale: softmax scale, default ``1 / sqrt(Dqk)``.

    The mask is ``causal=True, compress_factor=d, diag_offset=query_start - (l - 1)``: query ``t``
    reads block ``j`` iff ``j·d + l - 1 <= t``, never a block holding a position after ``t``. (The
    seed's default ``diag_offset = 0`` would leak; see the module docstring.)
    """

    def __init__(self, head_dim, v_head_dim=None, block_size=32, stride=16, compression="mlp", mlp_hidden=None,
                 process_group=None, cp_layout="zigzag"):
        super().__init__()
        if cp_layout not in ("zigzag", "contiguous"):
            raise ValueError(f"ccattn.nsa: argument 'cp_layout' must be 'zigzag' or 'contiguous', got {cp_layout!r}")
        self.process_group = process_group
        self.cp_layout = cp_layout
        for name, value in (("block_size", block_size), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ccattn.nsa: argument '{name}' must be an int >= 1, got {value!r}")
        self.block_size = block_size
        self.stride = stride
        self.compress_k = BlockCompressor(head_dim, block_size, compression, mlp_hidden)
        self.compress_v = BlockCompressor(v_head_dim or head_dim, block_size, compression, mlp_hidden)

    def extra_repr(self):
        return f"block_size={self.block_size}, stride={self.stride}"

    def __deepcopy__(self, memo):
        # A process group cannot be copied: the copy shares it (parameters and buffers are copied).
        if self.process_group is not None:
            memo.setdefault(id(self.process_group), self.process_group)
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            new.__dict__[name] = copy.deepcopy(value, memo)
        return new

    def _blocks(self, x):
        # [B, S, H, D] -> [B, n, H, l, D], block j = positions j*d .. j*d + l - 1
        if x.shape[1] < self.block_size:  # no complete block; stay in the graph (zero gradients)
            return x[:, :0, :, None, :].expand(-1, -1, -1, self.block_size, -1)
        return x.unfold(1, self.block_size, self.stride).transpose(-1, -2)

    def _varlen_rows(self, cu_seqlens):
        # Rows of every complete block of every sequence, packed: [N, l]; the compressed cu_seqlens;
        # the longest compressed and the longest raw sequence (one host synchronization).
        lengths = cu_seqlens[1:] - cu_seqlens[:-1]
        counts = torch.clamp(torch.div(lengths - self.block_size, self.stride, rounding_mode="floor") + 1, min=0)
        cu_blocks = F.pad(torch.cumsum(counts, 0), (1, 0)).to(torch.int32)
        zero = lengths.new_zeros(1)
        total, longest_blocks, longest = torch.stack(
            [cu_blocks[-1].to(lengths.dtype), torch.cat([counts, zero]).max(), torch.cat([lengths, zero]).max()]).tolist()
        device = cu_seqlens.device
        seq = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts, output_size=total)
        first = (torch.arange(total, device=device) - cu_blocks[seq]) * self.stride + cu_seqlens[seq]
        rows = first[:, None] + torch.arange(self.block_size, device=device)
        return rows.long(), cu_blocks, longest_blocks, longest

    def compress(self, k, v, cu_seqlens=None):
        """Compressed ``(k_cmp, v_cmp)``, ``[B, n, Hkv, D]``. Varlen (``k``, ``v`` ``[T, Hkv, D]``):
        ``(k_cmp, v_cmp, cu_seqlens_cmp, max_seqlen_cmp)`` with ``k_cmp``, ``v_cmp`` ``[N, Hkv, D]``."""
        if cu_seqlens is None:
            return self.compress_k(self._blocks(k)), self.compress_v(self._blocks(v))
        return self._compress_varlen(k, v, cu_seqlens)[:4]

    def _compress_varlen(self, k, v, cu_seqlens):
        rows, cu_blocks, longest_blocks, longest = self._varlen_rows(cu_seqlens)
        # x[rows]: [N, l, H, D] -> [N, H, l, D]
        k_cmp = self.compress_k(k[rows].transpose(1, 2))
        v_cmp = self.compress_v(v[rows].transpose(1, 2))
        return k_cmp, v_cmp, cu_blocks, longest_blocks, longest

    def forward(self, q, k, v, *, cu_seqlens=None, query_start=0, scale=None, return_compressed=False):
        if k.shape[:-1] != v.shape[:-1]:
            raise ValueError(f"ccattn.nsa: arguments 'k' {tuple(k.shape)} and 'v' {tuple(v.shape)} must agree "
                             "in all but the last dimension")
        if self.process_group is not None:
            if query_start != 0:
                raise ValueError("ccattn.nsa: argument 'query_start' must be 0 with a process group (the shards' "
                                 "positions come from the layout)")
            from .distributed import compressed_attention
            return compressed_attention(self, q, k, v, group=self.process_group, layout=self.cp_layout,
                                        cu_seqlens=cu_seqlens, scale=scale, return_compressed=return_compressed)
        mask = dict(causal=True, compress_factor=self.stride, diag_offset=query_start - (self.block_size - 1),
                    scale=scale, return_lse=True)
        if cu_seqlens is None:
            k_cmp, v_cmp = self.compress(k, v)
            out, lse = attention(q, k_cmp, v_cmp, **mask)
        else:
            if query_start != 0:
                raise ValueError("ccattn.nsa: argument 'query_start' is for fixed-length inputs only")
            k_cmp, v_cmp, cu_blocks, longest_blocks, longest = self._compress_varlen(k, v, cu_seqlens)
            out, lse = attention_varlen(q, k_cmp, v_cmp, cu_seqlens, cu_blocks, longest, longest_blocks, **mask)
        return (out, lse, k_cmp, v_cmp) if return_compressed else (out, lse)
