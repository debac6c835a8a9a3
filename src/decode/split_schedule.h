// Which key tiles (of the split kernel's kTileN keys) one split-KV CTA's rows visit, before the split
// takes its share, and which of them need masking; one interface over the three mask mechanisms:
//   band:         core::kv_tile_range of the rows, in order; tiles in [full_begin, full_end) unmasked
//   mask_mod:     every tile of the sequence, all masked per element
//   block_sparse: the lists of the rows' (query head, list q-tile): partial entries, then full ones,
//                 each list tile (tile_n a multiple of kTileN) visited as tile_n / kTileN key tiles;
//                 full ones unmasked unless they run past the sequence end
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/host_device.h"
#include "core/params.h"
#include "core/schedule.h"

namespace ccattn::decode {

class SplitSchedule {
  public:
    CCATTN_HD static SplitSchedule dense(core::TileRange range, bool per_element, int seqlen_k, int tile_n) {
        SplitSchedule s;
        s.range_ = range;
        s.per_element_ = per_element;
        s.count_ = int(range.count());
        s.seqlen_k_ = seqlen_k;
        s.tile_n_ = tile_n;
        return s;
    }
    // Lists of (b, query head h, list q-tile mt); p.sparse_tile_n is a multiple of tile_n (host check).
    CCATTN_HD static SplitSchedule sparse(const core::AttnParams& p, int b, int h, std::int64_t mt, int seqlen_k,
                                           int tile_n) {
        SplitSchedule s;
        s.sparse_ = true;
        s.n_partial_ = p.sparse_partial.length(b, h, mt);
        const int n_full = p.sparse_full.length(b, h, mt);
        s.partial_ = p.sparse_partial.entries(b, h, mt);
        s.full_ = p.sparse_full.entries(b, h, mt);
        s.sub_ = int(p.sparse_tile_n / tile_n);
        s.count_ = (s.n_partial_ + n_full) * s.sub_;
        s.seqlen_k_ = seqlen_k;
        s.tile_n_ = tile_n;
        return s;
    }

    CCATTN_HD int count() const { return count_; }
    CCATTN_HD bool sparse() const { return sparse_; }

    // The k-th key tile visited, k in [0, count()).
    CCATTN_HD int tile(int k) const {
        if (!sparse_) return int(range_.begin) + k;
        const int entry = k / sub_;
        const int listed = entry < n_partial_ ? partial_[entry] : full_[entry - n_partial_];
        return listed * sub_ + k % sub_;
    }

    // Whether the k-th visited tile, t = tile(k), needs the mask (per element for mask_mod and
    // block-sparse partial tiles, by row limits for the band).
    CCATTN_HD bool masked(int k, int t) const {
        if (!sparse_) return per_element_ || !range_.is_full(t);  // a ragged last tile is never full
        return k / sub_ < n_partial_ || std::int64_t(t + 1) * tile_n_ > seqlen_k_;
    }

  private:
    bool sparse_ = false, per_element_ = false;
    core::TileRange range_;
    int count_ = 0, n_partial_ = 0, sub_ = 1;
    const std::int32_t* partial_ = nullptr;
    const std::int32_t* full_ = nullptr;
    std::int64_t seqlen_k_ = 0;
    int tile_n_ = 0;
};

}  // namespace ccattn::decode
