// Hopper forward tile sizes: one entry per instantiated (Dqk, Dv), each with the reason for it.
// kBlockM packed query rows per work tile (64 per consumer warp group), kBlockN keys per kv tile.
// The limits are shared memory (227 KB per CTA: Q once, K and V kStages deep) and registers
// (the S and O accumulators of one warp group row slice must fit the consumers' 240 / 160).
#pragma once

namespace ccattn::sm90 {

struct TileSize {
    int dim_qk, dim_v;
    int block_m, block_n;
    int stages;
    // Consumer warp groups take turns issuing their matmuls, so one's softmax overlaps the
    // other's wgmma (FA3 does this up to d 128; above, the matmuls dominate).
    bool ping_pong;
};

// Band masks (causal, compressed, windowed) are the workload this library is for: FA3's causal
// choices are used for every mask, since narrow kv tiles keep the partial (masked) diagonal cheap.
inline constexpr TileSize kTileSizes[] = {
    // 3 consumer warp groups: at d 64 the softmax per key is large next to the matmul, and a third
    // warp group hides it; 128-key tiles as FA3 uses for causal d64.
    {64, 64, 192, 128, 2, true},
    // FA3's causal / local tile for d128, three stages deep (224 KB of shared memory): decode streams
    // K and V at the copy rate only with more bytes in flight than two stages keep.
    {128, 128, 128, 128, 3, true},
    // DeepSeek-style Dqk 192 / Dv 128: 128 keys still fit (Q 48 KB + K 96 KB + V 64 KB = 208 KB).
    {192, 128, 128, 128, 2, false},
    // d256: FA3's 80 keys needs CuTe's extended wgmma shapes (not enabled in this build); 64 is the
    // widest standard shape with two K and two V stages in 227 KB (Q 64 + K 64 + V 64 KB).
    {256, 256, 128, 64, 2, false},
};

constexpr TileSize tile_size(int dim_qk, int dim_v) {
    for (const TileSize& t : kTileSizes)
        if (t.dim_qk == dim_qk && t.dim_v == dim_v) return t;
    return {0, 0, 0, 0, 0, false};
}

}  // namespace ccattn::sm90
