// Which kv tiles one forward CTA visits, in which order, and which of them need masking; one interface
// over the three mask mechanisms:
//   band:         core::kv_tile_range of the sequence's band (core::SequenceBand: built-in or band
//                 tensors), visited from the last tile down (the diagonal, masked, comes first); tiles
//                 in [full_begin, full_end) unmasked
//   mask_mod:     every tile of the sequence, all masked per element (no skipping)
//   block_sparse: the caller's partial tiles (masked per element), then its full tiles (unmasked unless
//                 they run past the sequence end)
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/host_device.h"
#include "core/params.h"
#include "core/schedule.h"

namespace ccattn::sm80 {

class KvSchedule {
  public:
    // Band and mask_mod: `range` from core::kv_tile_range (band) or all tiles (mask_mod).
    CCATTN_HD static KvSchedule dense(core::TileRange range, std::int64_t seqlen_k, int tile_n) {
        KvSchedule s;
        s.full_begin_ = int(range.full_begin);
        s.full_end_ = int(range.full_end);
        s.count_ = int(range.count());
        s.end_ = int(range.end);
        s.seqlen_k_ = seqlen_k;
        s.tile_n_ = tile_n;
        return s;
    }
    // Block-sparse lists of (b, query head h, q-tile mt).
    CCATTN_HD static KvSchedule sparse(const core::AttnParams& p, int b, int h, std::int64_t mt,
                                        std::int64_t seqlen_k, int tile_n) {
        KvSchedule s;
        s.sparse_ = true;
        s.n_partial_ = p.sparse_partial.length(b, h, mt);
        const int n_full = p.sparse_full.length(b, h, mt);
        s.partial_ = p.sparse_partial.entries(b, h, mt);
        s.full_ = p.sparse_full.entries(b, h, mt);
        s.count_ = s.n_partial_ + n_full;
        s.seqlen_k_ = seqlen_k;
        s.tile_n_ = tile_n;
        return s;
    }

    CCATTN_HD int count() const { return count_; }

    // The k-th tile visited, k in [0, count()).
    CCATTN_HD int tile(int k) const {
        if (!sparse_) return end_ - 1 - k;
        return k < n_partial_ ? partial_[k] : full_[k - n_partial_];
    }

    // Whether the k-th visited tile, t = tile(k), needs the in-register mask.
    CCATTN_HD bool masked(int k, int t) const {
        if (!sparse_) return !(full_begin_ <= t && t < full_end_);  // a ragged last tile is never full
        // A listed full tile that runs past the last key (or a bad index) still needs the key bound.
        return k < n_partial_ || t < 0 || std::int64_t(t + 1) * tile_n_ > seqlen_k_;
    }

  private:
    bool sparse_ = false;
    int count_ = 0;
    int full_begin_ = 0, full_end_ = 0, end_ = 0;  // dense
    int n_partial_ = 0;                                       // sparse
    const std::int32_t* partial_ = nullptr;
    const std::int32_t* full_ = nullptr;
    std::int64_t seqlen_k_ = 0;
    int tile_n_ = 0;
};

}  // namespace ccattn::sm80
