// One unit of work of the Hopper forward, and the kv tiles it visits in order. The producer
// describes each tile once and hands the description to the consumer warp groups (tile_queue.h), so
// both roles walk the same steps.
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/band.h"
#include "core/band_source.h"
#include "core/params.h"
#include "core/schedule.h"
#include "sm90/tile_scheduler.h"

namespace ccattn::sm90 {

// How a kv tile's scores are masked in registers: not at all (full tile), by the band
// lo(i) <= j < hi(i), or only by the end of the sequence (a block-sparse full tile that
// overhangs it).
enum class Masking : std::uint8_t { none, band, seqlen };

struct KvStep {
    int n = 0;  // kv tile index within the sequence
    Masking masking = Masking::none;
};

template <int kBlockM, int kBlockN>
struct WorkInfo {
    core::Sequence seq;
    std::int64_t row_begin = 0;  // first packed row of the tile
    int pack = 1;                // packed rows per query position
    core::FastDiv pack_div;      // the scheduler's divider by pack
    int head0 = 0;               // query head of packed row 0; row r has head head0 + r % pack
    int kv_head = 0;
    int num_steps = 0;           // 0: nothing visible (or the tile lies past the sequence)
    int first_step = 0;          // split-KV: this split's steps are [first_step, first_step + num_steps)
    bool in_sequence = false;    // the tile holds at least one row of the sequence

    // kv tiles, band and mask_mod: [begin, end) walked from the end, so the diagonal (partial)
    // tiles come first, then the full ones [full_begin, full_end), then the left edge. 32-bit:
    // they stay live through the mainloop.
    int tile_end = 0, full_begin = 0, full_end = 0;
    // block-sparse: the partial list, then the full list
    const std::int32_t* partial = nullptr;
    const std::int32_t* full = nullptr;
    int num_partial = 0;
    int seqlen_k = 0;
    // The sequence's band: the tile classification's, and the consumers' rows' limits (RegisterMask),
    // also for block-sparse lists, whose partial tiles it masks.
    core::SequenceBand band;

    WorkInfo() = default;
    // s: the scheduler that handed out w (its splits and its divider by the pack).
    CCATTN_HD WorkInfo(const core::AttnParams& p, WorkTile w, const TileScheduler& s) {
        seq = core::sequence(p, w.batch);
        band = core::sequence_band(p, w.batch, seq);
        const bool sparse = p.mask_kind == MaskKind::block_sparse;
        const int splits = s.splits;
        pack_div = s.pack;
        pack = int(pack_div.divisor);
        head0 = sparse ? w.head : w.head * p.group;
        kv_head = sparse ? w.head / p.group : w.head;
        row_begin = w.m_block * kBlockM;
        in_sequence = row_begin < seq.seqlen_q * pack;
        seqlen_k = int(seq.seqlen_k);
        if (!in_sequence || seqlen_k == 0) return;  // no keys: every row is empty
        if (sparse) {
            const core::TileLists& pl = p.sparse_partial;
            const core::TileLists& fl = p.sparse_full;
            std::int64_t pc = w.batch * pl.count_batch_stride + w.head * pl.count_head_stride + w.m_block * pl.count_tile_stride;
            std::int64_t fc = w.batch * fl.count_batch_stride + w.head * fl.count_head_stride + w.m_block * fl.count_tile_stride;
            num_partial = pl.count[pc];
            num_steps = num_partial + fl.count[fc];
            partial = pl.index + w.batch * pl.index_batch_stride + w.head * pl.index_head_stride + w.m_block * pl.index_tile_stride;
            full = fl.index + w.batch * fl.index_batch_stride + w.head * fl.index_head_stride + w.m_block * fl.index_tile_stride;
            take_split(w.split, splits);
            return;
        }
        // mask_mod: every tile of the sequence, each masked per element by the band.
        const core::TileRange range = p.mask_kind == MaskKind::mask_mod
                                          ? core::make_range(0, core::num_tiles(seq.seqlen_k, kBlockN), 0, 0)
                                          : core::kv_tile_range(band, query_span(), kBlockN);
        tile_end = int(range.end);
        full_begin = int(range.full_begin);
        full_end = int(range.full_end);
        num_steps = int(range.count());
        take_split(w.split, splits);
    }

    // Split k of `splits` keeps the k-th equal contiguous share of the steps (the last may be empty).
    CCATTN_HD void take_split(int split, int splits) {
        if (splits <= 1) return;
        const int chunk = (num_steps + splits - 1) / splits;
        first_step = int(core::min(num_steps, split * chunk));
        num_steps = int(core::min(num_steps, first_step + chunk)) - first_step;
    }

    // Band and mask_mod: the keys [key_begin, key_end) of the kv tiles this work tile visits.
    CCATTN_HD int key_begin() const { return (tile_end - first_step - num_steps) * kBlockN; }
    CCATTN_HD int key_end() const { return int(core::min((tile_end - first_step) * kBlockN, seqlen_k)); }

    CCATTN_HD KvStep step(int s) const {
        s += first_step;
        if (partial != nullptr) {
            if (s < num_partial) return {partial[s], Masking::band};
            int n = full[s - num_partial];
            bool overhangs = std::int64_t(n + 1) * kBlockN > seqlen_k;
            return {n, overhangs ? Masking::seqlen : Masking::none};
        }
        int n = tile_end - 1 - s;
        return {n, full_begin <= n && n < full_end ? Masking::none : Masking::band};
    }

    // The query positions of the tile's rows (core::query_span, by the divider).
    CCATTN_HD core::RowSpan query_span() const {
        const std::int64_t end = core::min(row_begin + kBlockM, seq.seqlen_q * pack);
        return {pack_div.div(std::uint32_t(row_begin)), std::int64_t(pack_div.div(std::uint32_t(end - 1))) + 1};
    }

    // Whether packed row r of the tile is a row of the sequence.
    CCATTN_HD bool holds_row(int r) const { return row_begin + r < seq.seqlen_q * pack; }
    // Packed row r of the tile (0-based within the tile) -> query position and query head. Packed
    // rows stay below 2^31 (sm90::unsupported_reason), so the host's divider applies.
    CCATTN_HD std::int64_t query_of(int r) const { return pack_div.div(std::uint32_t(row_begin + r)); }
    CCATTN_HD int head_of(int r) const { return head0 + int(pack_div.mod(std::uint32_t(row_begin + r))); }
};

// A work tile as the producer hands it to the consumers (tile_queue.h): its index (>= the tile count
// past the last one), where it lies and what it visits.
template <int kBlockM, int kBlockN>
struct TileEntry {
    std::int64_t index = 0;
    WorkTile work;
    WorkInfo<kBlockM, kBlockN> info;
};

}  // namespace ccattn::sm90
