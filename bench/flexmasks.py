"""A case's band as the masks PyTorch's peers take: FlexAttention's mask_mod and BlockMasks, and a dense
boolean mask for SDPA. Varlen documents are packed along one sequence and masked against each other.
"""
import time

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

import rows

DEV = "cuda"
# Above this many (query, key) elements the eager builder's dense intermediates do not fit (1M x 16K
# asked for 128 GiB); the compiled builder needs none but compiles for a while.
EAGER_LIMIT = 2**32


def band_mask_mod(c):
    """The case's mask as a FlexAttention mask_mod (documents packed along the sequence for varlen)."""
    cf, delta = c["cf"], c["delta"]
    if c["band"]:  # the masks of cases.row_edges, stated per element
        kind, n = c["band"]
        if kind == "prefix_lm":
            return lambda b, h, qi, ki: (ki <= qi) | (ki < n)
        return lambda b, h, qi, ki: (ki <= qi) & (ki // n == qi // n)  # chunked
    if not c["docs"]:
        return lambda b, h, qi, ki: ki * cf <= qi + delta
    qdoc = torch.cat([torch.full((q,), d, device=DEV) for d, (q, _) in enumerate(c["docs"])])
    kdoc = torch.cat([torch.full((k,), d, device=DEV) for d, (_, k) in enumerate(c["docs"])])
    qstart = torch.tensor([0] + [q for q, _ in c["docs"]], device=DEV).cumsum(0)
    kstart = torch.tensor([0] + [k for _, k in c["docs"]], device=DEV).cumsum(0)
    qloc = torch.arange(c["nq"], device=DEV) - qstart[qdoc]
    kloc = torch.arange(c["nk"], device=DEV) - kstart[kdoc]
    return lambda b, h, qi, ki: (qdoc[qi] == kdoc[ki]) & (kloc[ki] * cf <= qloc[qi] + delta)


def dense_mask(c):
    """[nq, nk] booleans, True where visible (fixed-length cases, the same band for every sequence)."""
    qi = torch.arange(c["nq"], device=DEV)[:, None]
    ki = torch.arange(c["nk"], device=DEV)[None, :]
    return band_mask_mod(c)(0, 0, qi, ki)


class BlockMasks:
    """The case's BlockMasks by block size, built on first use. The (128, 128) build is timed and
    reported as the `flex` / `block_mask_build` row (setup, not part of any attention time)."""

    def __init__(self, name, c, emit):
        self.name, self.c, self.emit = name, c, emit
        self.mask_mod = band_mask_mod(c)
        self.built = {}

    def get(self, block_size=(128, 128)):
        if block_size not in self.built:
            self.built[block_size] = self._build(block_size)
        if isinstance(self.built[block_size], Exception):
            raise self.built[block_size]
        return self.built[block_size]

    def _build(self, block_size):
        nq, nk = self.c["nq"], self.c["nk"]
        eager = nq * nk <= EAGER_LIMIT
        builder = create_block_mask if eager else torch.compile(create_block_mask)
        how = "builder=eager" if eager else "builder=compiled (compile time included)"
        t0 = time.time()
        try:
            bm = builder(self.mask_mod, None, None, nq, nk, device=DEV, BLOCK_SIZE=block_size)
            torch.cuda.synchronize()
            ms, note = (time.time() - t0) * 1e3, how
        except Exception as e:  # raised to every peer that needs this mask; a copy, so no frames hold memory
            bm = RuntimeError(f"BlockMask {block_size[0]}x{block_size[1]}: {rows.one_line(repr(e), 300)}")
            ms, note = float("nan"), f"error: {rows.one_line(repr(e), 160)} ({how})"
        if block_size == (128, 128):
            self.emit(self.name, "flex", "block_mask_build", "setup", ms, float("nan"), note)
        return bm

    def every_block_partial(self):
        """The (128, 128) mask with every block partial: mask_mod evaluated on every element, no skipping."""
        bm = self.get()
        nqb, nkb = bm.kv_num_blocks.shape[-1], bm.kv_indices.shape[-1]
        num = torch.full((1, 1, nqb), nkb, device=DEV, dtype=torch.int32)
        idx = torch.arange(nkb, device=DEV, dtype=torch.int32).expand(1, 1, nqb, nkb).contiguous()
        return BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=bm.BLOCK_SIZE, mask_mod=self.mask_mod,
                                        seq_lengths=(self.c["nq"], self.c["nk"]))
