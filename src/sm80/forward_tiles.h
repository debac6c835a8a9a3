// The forward kernel's tile sizes per head-dim pair: one table, one line of reason per entry.
// Host-visible without CuTe: the dispatch checks block-sparse tile sizes against it.
#pragma once

namespace ccattn::sm80 {

// A CTA computes tile_m (packed) query rows against kv tiles of tile_n keys with `warps` warps, each
// warp owning whole 16-row MMA slices. Shared memory: (tile_m * Dqk + tile_n * (Dqk + Dv)) * 2 bytes.
struct ForwardTile {
    int tile_m = 0, tile_n = 0, warps = 0;
};

template <int kDqk, int kDv>
constexpr ForwardTile forward_tile() {
    // Chosen with ptxas -v (sm_80) so that no variant spills: a thread's accumulators (O and S) plus
    // operand fragments and addresses must fit 255 registers. Warps of 32 rows (FA2's 4-warp tiles)
    // spilled for every head dim, so warps own 16 rows each.
    // hdim 64: 128-key S tiles halve the per-tile overhead (syncs, softmax) at 255 registers; 48 KB.
    if constexpr (kDqk == 64 && kDv == 64) return {128, 128, 8};
    // hdim 128: O and S take 64 + 32 registers a thread (216 in all); 64 KB.
    else if constexpr (kDqk == 128 && kDv == 128) return {128, 64, 8};
    // 192/128: as hdim 128 with wider Q/K rows (224 registers); 88 KB.
    else if constexpr (kDqk == 192 && kDv == 128) return {128, 64, 8};
    // hdim 256: O alone takes 128 registers a thread, so 32-key S tiles (64-key tiles spilled); 64 KB.
    else if constexpr (kDqk == 256 && kDv == 256) return {64, 32, 4};
    else static_assert(kDqk < 0, "unsupported head dims");
}

// Runtime view of the same table: false for unsupported head dims.
inline bool forward_tile_for(int dqk, int dv, ForwardTile& t) {
    if (dqk == 64 && dv == 64) t = forward_tile<64, 64>();
    else if (dqk == 128 && dv == 128) t = forward_tile<128, 128>();
    else if (dqk == 192 && dv == 128) t = forward_tile<192, 128>();
    else if (dqk == 256 && dv == 256) t = forward_tile<256, 256>();
    else return false;
    return true;
}

}  // namespace ccattn::sm80
