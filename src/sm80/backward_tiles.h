// The backward kernel's tile sizes per head-dim pair: one table, one line of reason per entry.
// Host-visible without CuTe, so the dispatch can check block-sparse tile sizes and size workspaces.
#pragma once

namespace ccattn::sm80 {

// A backward main kernel's tiles as the shared host driver sees them (chunks, block-sparse checks,
// direct dQ, deterministic turns) and the band-tensor check counts visits with: packed query rows per
// q-tile, keys per CTA. sm80's come from backward_tile, the Hopper kernel's from its own table.
struct KernelTiles {
    int q_tile, kv_tile;
};

// A CTA owns kv_tile keys of one KV head and walks q-tiles of q_tile packed rows. Warps split each
// of the three MMA shapes differently: S/dP (q_tile x kv_tile), dK/dV (kv_tile x D), dQ (q_tile x Dqk);
// atom_m_* is the number of warps stacked along M in each. stages = buffers for Q and dO (2 overlaps
// the next tile's load with this tile's math).
struct BackwardTile {
    int q_tile, kv_tile, warps, atom_m_sdp, atom_m_dkv, atom_m_dq, stages;

    constexpr KernelTiles kernel_tiles() const { return {q_tile, kv_tile}; }
};

template <int kDqk, int kDv>
constexpr BackwardTile backward_tile() {
    // hdim 64: dK+dV cost 64 fp32 registers a thread, so a 128-key tile halves Q/dO reloads; 96 KB smem.
    if constexpr (kDqk == 64 && kDv == 64) return {64, 128, 8, 2, 4, 4, 2};
    // hdim 128: dK+dV take 128 registers a thread (FA2's sm80 choice); 160 KB smem fits A100 and H100.
    else if constexpr (kDqk == 128 && kDv == 128) return {64, 128, 8, 2, 4, 2, 2};
    // 192/128: a 128-key tile would need 160 accumulator registers; 64 keys keep 80 and 136 KB smem.
    else if constexpr (kDqk == 192 && kDv == 128) return {64, 64, 8, 4, 2, 2, 2};
    // hdim 256: 128 accumulator registers at 64 keys; single-buffered Q/dO (144 KB) still fits A100.
    else if constexpr (kDqk == 256 && kDv == 256) return {64, 64, 8, 4, 2, 2, 1};
    else static_assert(kDqk < 0, "unsupported head dims");
}

// Shared memory for the CTA's schedule state (coordinates, scheduler, q-tile ring), after the tiles.
constexpr int kBackwardStateBytes = 1024;  // two band sources (CTA, schedule) since band tensors

// Dynamic shared memory of one CTA: Q and dO per stage, K, V, P and dS (all 16-bit), then the state.
constexpr int backward_smem_bytes(BackwardTile t, int dqk, int dv) {
    return 2 * (t.stages * t.q_tile * (dqk + dv) + t.kv_tile * (dqk + dv) + 2 * t.q_tile * t.kv_tile) +
           kBackwardStateBytes;
}

// Runtime view of the same table: false for unsupported head dims.
inline bool backward_tile_for(int dqk, int dv, BackwardTile& t) {
    if (dqk == 64 && dv == 64) t = backward_tile<64, 64>();
    else if (dqk == 128 && dv == 128) t = backward_tile<128, 128>();
    else if (dqk == 192 && dv == 128) t = backward_tile<192, 128>();
    else if (dqk == 256 && dv == 256) t = backward_tile<256, 256>();
    else return false;
    return true;
}

}  // namespace ccattn::sm80
