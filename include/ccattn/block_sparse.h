// ccattn public API: building block-sparse tile lists (BlockSparseMask) on the host, from a band or
// from any predicate, to run or compare the block-sparse mechanism on a given mask.
#pragma once

#include <cstdint>
#include <vector>

#include "ccattn/mask.h"
#include "ccattn/status.h"

namespace ccattn {

// Owns int32 host lists in BlockSparseMask's layout ([B, H, num_q_tiles(, slots)]) and hands out
// views of them. num_q_tiles = ceil(seqlen_q / tile_m) with the longest sequence for varlen.
class BlockSparseLists {
public:
    struct Shape {
        int batch = 1;
        std::int64_t seqlen_q = 0, seqlen_k = 0;  // fixed length (unused when cu_seqlens are given)
        const std::int32_t* cu_seqlens_q = nullptr;  // varlen: host int32 [batch + 1], both or neither
        const std::int32_t* cu_seqlens_k = nullptr;
        std::int64_t tile_m = 128;  // query positions per q-tile (one head)
        std::int64_t tile_n = 128;  // keys per kv-tile
    };

    // From a band mask (kind == band), per sequence with its lengths: the kv tiles of each q-tile
    // from the library's tile schedule, full ones unmasked. One list shared by all heads (H = 1);
    // the mask_mod evaluates the same band per element.
    static Status from_band(const Mask& band, const Shape& shape, BlockSparseLists& out);

    // From a predicate over `heads` query heads, evaluated for every element (small cases): a tile
    // is full when every pair in it is visible and it ends inside the sequence, partial when some
    // are, skipped otherwise. The predicate is also the mask_mod of partial tiles.
    static Status from_predicate(const MaskModFn& visible, int heads, const Shape& shape, BlockSparseLists& out);

    // Views into this object (valid while it lives and is not rebuilt).
    BlockSparseMask view() const;
    Mask mask() const;

    std::int64_t num_q_tiles() const { return q_tiles_; }
    // Tiles listed over all (b, h, q-tile).
    std::int64_t total_full() const;
    std::int64_t total_partial() const;

private:
    // Lists of (b, h, q-tile) entries before packing; slots = the longest list.
    struct Builder;
    void pack(const Builder& b);

    int batch_ = 0, heads_ = 1;
    std::int64_t q_tiles_ = 0, full_slots_ = 1, partial_slots_ = 1, tile_m_ = 1, tile_n_ = 1;
    std::vector<std::int32_t> full_count_, full_index_, partial_count_, partial_index_;
    MaskModFn mask_mod_;
};

}  // namespace ccattn
