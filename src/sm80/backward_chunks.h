// How the backward cuts each kv-tile's q range into chunks, one CTA each (QChunks): host code, no CuTe,
// so that tests can check the choice.
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/params.h"
#include "core/schedule.h"
#include "sm80/backward_params.h"
#include "sm80/backward_tiles.h"

namespace ccattn::sm80 {

// Chunks of the q range (QChunks). None while the kv-tiles of all (batch, KV head) pairs give every SM
// kWaves CTAs; otherwise chunks of equal length such that the whole backward makes about kWaves CTAs
// per SM, none shorter than kMinChunk q-tiles (its dK, dV atomics then cost little next to its math).
// The work is estimated per (batch, KV head) from the largest sequence: the band's q-tile ranges; for
// band tensors the visits the backend's device check counted (p.band_visits; unchecked tensors, not
// read on the host, like mask_mod); every q-tile for mask_mod, every q-tile of every query head for
// block-sparse lists (a dense bound).
inline QChunks q_chunks(const core::AttnParams& p, KernelTiles tile, const SparseBits& sparse, int sms) {
    constexpr int kWaves = 4;
    constexpr std::int64_t kMinChunk = 8;
    const std::int64_t kv_tiles = core::num_tiles(p.seqlen_k, tile.kv_tile);
    const std::int64_t pairs = std::int64_t(p.batch) * p.heads_kv;
    const std::int64_t target = std::int64_t(kWaves) * sms;
    if (kv_tiles == 0 || pairs == 0 || kv_tiles * pairs >= target) return {};
    std::int64_t positions = core::num_tiles(p.seqlen_q * p.group, tile.q_tile);  // chunked units
    std::int64_t visits_per_position = 1;  // q-tiles a CTA visits per unit (upper bound)
    std::int64_t work = 0;                 // q-tile visits of all kv-tiles of one (batch, KV head)
    if (p.mask_kind == MaskKind::band) {
        const core::CompressedBand band = p.band.for_sequence(p.seqlen_q, p.seqlen_k);
        for (std::int64_t n = 0; n < kv_tiles; ++n)
            work += core::q_tile_range(band, n * tile.kv_tile, tile.kv_tile, p.seqlen_q, tile.q_tile, p.group).count();
    } else if (p.mask_kind == MaskKind::band_tensors && p.band_visits > 0) {
        work = core::ceil_div(p.band_visits, p.batch);  // counted on the device over every sequence
    } else if (p.mask_kind == MaskKind::block_sparse) {
        positions = core::ceil_div(p.seqlen_q, std::int64_t(tile.q_tile) * sparse.q_subtiles);
        visits_per_position = std::int64_t(p.group) * sparse.q_subtiles;
        work = kv_tiles * positions * visits_per_position;
    } else {
        work = kv_tiles * positions;
    }
    const std::int64_t visits = core::max(kMinChunk, core::ceil_div(work * pairs, target));
    QChunks c;
    c.length = core::max(1, visits / visits_per_position);
    const std::int64_t count = core::min(core::ceil_div(positions, c.length), 0x7fffffff / kv_tiles);
    if (count <= 1) return {};
    c.count = int(count);
    c.length = core::ceil_div(positions, count);
    return c;
}

}  // namespace ccattn::sm80
