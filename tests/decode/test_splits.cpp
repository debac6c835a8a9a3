// The split-count heuristic of the split-KV decode (src/decode/splits.h), on the benchmark's decode
// shapes as an H200 presents them (132 SMs, two resident CTAs, 60 MB L2).
#include <gtest/gtest.h>

#include "decode/splits.h"

namespace ccattn::decode {
namespace {

SplitProblem h200(std::int64_t ctas, std::int64_t kv_tiles, std::int64_t rows) {
    SplitProblem w;
    w.ctas = ctas;
    w.kv_tiles = kv_tiles;
    w.rows = rows;
    w.dim_v = 128;
    w.sms = 132;
    w.ctas_per_sm = 2;
    w.l2_bytes = 60 << 20;
    return w;
}

TEST(Splits, FillWholeWavesWhenTheGridIsSmall) {
    // decode_b1_sk64k: 1 sequence x 4 KV heads, 1024 key tiles of 64: 66 splits would fill the 264
    // slots exactly; 63 (252 CTAs) is the smallest count within 5% of that.
    EXPECT_EQ(choose_splits(h200(4, 1024, 64)), 63);
    // decode_b32_sk4k: 128 CTAs, 64 tiles: 2 splits fill 97% of a wave (3 would leave a second wave
    // half empty).
    EXPECT_EQ(choose_splits(h200(128, 64, 32 * 64)), 2);
}

TEST(Splits, NoSplitWhenTheGridFillsTheMachine) {
    EXPECT_EQ(choose_splits(h200(512, 32, 64 * 32 * 4)), 1);  // decode_b64_sq4_sk2k
    EXPECT_EQ(choose_splits(h200(220, 1000, 1000)), 1);       // >= 80% of 264 slots
    EXPECT_EQ(choose_splits(h200(0, 10, 0)), 1);
}

TEST(Splits, BoundedByTilesAndL2) {
    EXPECT_EQ(choose_splits(h200(1, 8, 16)), 2);  // 4 tiles per split at least
    EXPECT_EQ(choose_splits(h200(1, 3, 16)), 1);
    EXPECT_EQ(choose_splits(h200(1, 1 << 20, 16)), 122);  // within 5% of kMaxSplits' 128 / 264 of a wave
    // Partials of 1M rows x 129 floats take 516 MB per split: beyond half the L2, no split.
    EXPECT_EQ(choose_splits(h200(1, 1 << 20, 1 << 20)), 1);
}

}  // namespace
}  // namespace ccattn::decode
