// Block-sparse lists for the backward: the forward's lists name, per (b, query head, q-tile), the kv-tiles
// to visit; the backward walks kv-tiles, so this kernel turns them into per (b, query head, kv-tile) bit
// sets over q-tiles (SparseBits). Bits keep the q-tile order ascending and need no scan or host sync.
#pragma once

#include <cstdint>

#include "core/params.h"

namespace ccattn::sm80 {

// One thread per (b, query head, sparse q-tile): sets bit t of row (b, h, kt) for each kv-tile kt its
// lists name. `visit` and `full` are zeroed beforehand; kv indices outside [0, kv_tiles) are ignored.
__global__ void sparse_bits_kernel(core::TileLists full_lists, core::TileLists partial_lists, int batch, int heads_q,
                                   std::int64_t q_tiles, std::int64_t kv_tiles, std::int64_t words,
                                   unsigned long long* visit, unsigned long long* full) {
    const std::int64_t total = std::int64_t(batch) * heads_q * q_tiles;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t t = idx % q_tiles;
        const int h = int(idx / q_tiles % heads_q);
        const int b = int(idx / q_tiles / heads_q);
        const unsigned long long bit = 1ull << (t & 63);
        for (int is_full = 0; is_full < 2; ++is_full) {
            const core::TileLists& l = is_full ? full_lists : partial_lists;
            const std::int32_t n = l.count[b * l.count_batch_stride + h * l.count_head_stride + t * l.count_tile_stride];
            const std::int32_t* index = l.index + b * l.index_batch_stride + h * l.index_head_stride + t * l.index_tile_stride;
            for (std::int32_t e = 0; e < n; ++e) {
                const std::int32_t kt = index[e];
                if (kt < 0 || kt >= kv_tiles) continue;
                const std::int64_t word = ((std::int64_t(b) * heads_q + h) * kv_tiles + kt) * words + (t >> 6);
                atomicOr(visit + word, bit);
                if (is_full) atomicOr(full + word, bit);
            }
        }
    }
}

}  // namespace ccattn::sm80
