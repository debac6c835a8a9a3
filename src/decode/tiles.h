// The split-KV decode kernel's tiles per head-dim pair: one table, one line of reason per entry.
// Host-visible without CuTe (the driver sizes grids, shared memory and the split heuristic from it).
#pragma once

namespace ccattn::decode {

// One warp computes 16 packed query rows (one mma.sync row slice: decode has few rows per KV head, and
// a wider q-tile would multiply tensor-core work that memory-bound decode cannot hide) against key tiles
// of tile_n keys, with `stages` K/V tiles in flight (cp.async).
constexpr int kTileM = 16;
constexpr int kThreads = 32;

struct DecodeTile {
    int tile_n = 0, stages = 0;
};

template <int kDqk, int kDv>
constexpr DecodeTile decode_tile() {
    // Every stage is 32 KB of K and V (40 KB for 192/128): 3 stages + Q keep ~100 KB per CTA, so two CTAs
    // fit an SM with 4 stages' worth of loads in flight, far above what hides DRAM latency. tile_n as the
    // forward's (no spills at 255 registers: O and S of 16 rows are the forward's per-warp share).
    if constexpr (kDqk == 64 && kDv == 64) return {128, 3};
    else if constexpr (kDqk == 128 && kDv == 128) return {64, 3};
    else if constexpr (kDqk == 192 && kDv == 128) return {64, 3};
    else if constexpr (kDqk == 256 && kDv == 256) return {32, 3};
    else static_assert(kDqk < 0, "unsupported head dims");
}

inline bool decode_tile_for(int dqk, int dv, DecodeTile& t) {
    if (dqk == 64 && dv == 64) t = decode_tile<64, 64>();
    else if (dqk == 128 && dv == 128) t = decode_tile<128, 128>();
    else if (dqk == 192 && dv == 128) t = decode_tile<192, 128>();
    else if (dqk == 256 && dv == 256) t = decode_tile<256, 256>();
    else return false;
    return true;
}

// Bytes of shared memory: Q, then `stages` (K, V) tiles; 16-bit elements.
constexpr int smem_bytes(const DecodeTile& t, int dqk, int dv) { return (kTileM * dqk + t.stages * t.tile_n * (dqk + dv)) * 2; }

}  // namespace ccattn::decode
