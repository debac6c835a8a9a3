// Which work tiles each CTA of the persistent grid processes. Band masks make the work per q-tile
// uneven (under a causal band the last q-tile visits the most kv tiles), so tiles are handed out
// longest first: all (head, batch) pairs of the last q-tile, then of the one before, and so on.
// CTA c takes tile c, then the next index nobody has taken (tile_queue.h), or, for split-KV
// launches, tiles c + grid, c + 2 grid, ... (a static round-robin). Each q-tile level starts its
// (head, batch) pairs one further on: otherwise the static order would give a CTA only the pairs
// congruent to c modulo gcd(grid, pairs), e.g. 2 of 6 varlen sequences (24 pairs, 132 CTAs).
// Split-KV (flash-decoding, few work tiles for the SMs): each (q-tile, head, batch) becomes `splits`
// work tiles, split k taking the k-th equal share of the tile's kv steps (WorkInfo).
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/fast_div.h"
#include "core/params.h"
#include "core/schedule.h"

namespace ccattn::sm90 {

// q-tile m_block of (batch, head). For the band and mask_mod paths `head` is a KV head and the
// tile holds kBlockM packed rows of its G query heads (packed row r = query r / G of head
// head * G + r % G). Block-sparse lists are per query head, so there `head` is a query head and
// rows are not packed.
struct WorkTile {
    std::int64_t m_block = 0;
    int head = 0;
    int batch = 0;
    int split = 0;  // split-KV: which share of the tile's kv steps (TileScheduler::splits)
};

struct TileScheduler {
    std::int64_t num_m_blocks = 0;
    int heads = 0;  // KV heads (packed GQA rows) or query heads (block-sparse)
    int batch = 0;
    int splits = 1;
    // The divisors of the tile mapping and of the packed rows (WorkInfo), computed on the host: every
    // thread of a CTA maps each of its work tiles, and at the training shapes a tile sees one or two
    // kv tiles, so its integer set-up costs as much as its math.
    core::FastDiv per_m_div, heads_div, splits_div;
    core::FastDiv pack;  // packed rows per query position: G, or 1 for block-sparse lists

    static TileScheduler make(const core::AttnParams& p, int block_m, int splits = 1) {
        TileScheduler s;
        const bool sparse = p.mask_kind == MaskKind::block_sparse;
        const int pack = sparse ? 1 : p.group;
        s.num_m_blocks = core::num_tiles(p.seqlen_q * pack, block_m);
        s.heads = sparse ? p.heads_q : p.heads_kv;
        s.batch = p.batch;
        s.splits = splits;
        s.pack = core::FastDiv(std::uint32_t(pack));
        const std::int64_t per_m = std::int64_t(s.heads) * s.batch * splits;
        if (s.num_tiles() < (std::int64_t(1) << 31) && per_m > 0) {
            s.per_m_div = core::FastDiv(std::uint32_t(per_m));
            s.heads_div = core::FastDiv(std::uint32_t(s.heads));
            s.splits_div = core::FastDiv(std::uint32_t(splits));
        }
        return s;
    }

    CCATTN_HD std::int64_t num_tiles() const { return num_m_blocks * heads * batch * splits; }

    // Every thread of a CTA maps each of its tiles: by the host's dividers when the tiles stay below
    // 2^31 (the usual case), else in 64-bit arithmetic.
    CCATTN_HD WorkTile tile(std::int64_t w) const {
        if (num_tiles() >= (std::int64_t(1) << 31)) return tile_64(w);
        const std::uint32_t level = per_m_div.div(std::uint32_t(w));
        const std::uint32_t rest = per_m_div.mod(std::uint32_t(w) - level * per_m_div.divisor + level);
        const std::uint32_t pair = splits_div.div(rest);
        const std::uint32_t batch_of_pair = heads_div.div(pair);
        return {num_m_blocks - 1 - std::int64_t(level), int(pair - batch_of_pair * heads_div.divisor), int(batch_of_pair),
                int(rest - pair * splits_div.divisor)};
    }

  private:
    CCATTN_HD WorkTile tile_64(std::int64_t w) const {
        const std::int64_t per_m = std::int64_t(heads) * batch * splits;
        const std::int64_t level = w / per_m;
        const std::int64_t rest = (w - level * per_m + level) % per_m;
        const std::int64_t pair = rest / splits;
        return {num_m_blocks - 1 - level, int(pair % heads), int(pair / heads), int(rest % splits)};
    }
};

}  // namespace ccattn::sm90
