// Which work tiles each CTA of the persistent grid processes. Band masks make the work per q-tile
// uneven (under a causal band the last q-tile visits the most kv tiles), so tiles are handed out
// longest first: all (head, batch) pairs of the last q-tile, then of the one before, and so on.
// CTA c takes tiles c, c + grid, c + 2 grid, ... of that order: a static longest-first
// round-robin, which both roles of a CTA follow without communicating. Each q-tile level starts
// its (head, batch) pairs one further on: otherwise a CTA would meet only the pairs congruent to c
// modulo gcd(grid, pairs), e.g. 2 of 6 varlen sequences (24 pairs, 132 CTAs), and the CTAs given
// the longest sequence would do most of the work.
// Split-KV (flash-decoding, few work tiles for the SMs): each (q-tile, head, batch) becomes `splits`
// work tiles, split k taking the k-th equal share of the tile's kv steps (WorkInfo).
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/params.h"
#include "core/schedule.h"
#include "sm90/work_tile.h"

namespace ccattn::sm90 {

struct TileScheduler {
    std::int64_t num_m_blocks = 0;
    int heads = 0;  // KV heads (packed GQA rows) or query heads (block-sparse)
    int batch = 0;
    int splits = 1;

    static TileScheduler make(const core::AttnParams& p, int block_m, int splits = 1) {
        TileScheduler s;
        const bool sparse = p.mask_kind == MaskKind::block_sparse;
        const int pack = sparse ? 1 : p.group;
        s.num_m_blocks = core::num_tiles(p.seqlen_q * pack, block_m);
        s.heads = sparse ? p.heads_q : p.heads_kv;
        s.batch = p.batch;
        s.splits = splits;
        return s;
    }

    CCATTN_HD std::int64_t num_tiles() const { return num_m_blocks * heads * batch * splits; }

    // Every thread of a CTA maps each of its tiles: in 32-bit arithmetic when the tiles allow it (a
    // 64-bit division is a long instruction sequence, and short work tiles pay it often).
    CCATTN_HD WorkTile tile(std::int64_t w) const {
        const std::int64_t per_m = std::int64_t(heads) * batch * splits;
        if (num_tiles() < (std::int64_t(1) << 31)) return tile_as<std::uint32_t>(std::uint32_t(w), std::uint32_t(per_m));
        return tile_as<std::int64_t>(w, per_m);
    }

  private:
    template <class I>
    CCATTN_HD WorkTile tile_as(I w, I per_m) const {
        const I level = w / per_m;
        const I rest = (w - level * per_m + level) % per_m;
        const I pair = rest / I(splits);
        return {num_m_blocks - 1 - std::int64_t(level), int(pair % I(heads)), int(pair / I(heads)), int(rest % I(splits))};
    }
};

}  // namespace ccattn::sm90
