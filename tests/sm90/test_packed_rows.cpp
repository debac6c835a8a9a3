// PackedRowWalk (src/sm90/packed_rows.h): the (query, head) of every row a thread visits, stepped
// without division, equals the division's for every pack the library allows (GQA groups 1..64 and
// block-sparse's 1), any first row, and tiles up to the 2^31 packed-row limit.
#include <gtest/gtest.h>

#include <cstdint>

#include "core/fast_div.h"
#include "sm90/packed_rows.h"

namespace ccattn {
namespace {

struct TileRows {  // the two WorkInfo fields the walk reads
    std::int64_t row_begin;
    core::FastDiv pack_div;
};

template <int kStep>
void expect_walk_matches_division(std::int64_t row_begin, int pack, int r0, int steps) {
    sm90::PackedRowWalk<kStep> walk(TileRows{row_begin, core::FastDiv(std::uint32_t(pack))}, r0);
    for (int k = 0; k < steps; ++k, walk.next()) {
        const std::int64_t row = row_begin + r0 + std::int64_t(k) * kStep;
        ASSERT_EQ(walk.query, std::uint32_t(row / pack)) << "pack " << pack << " row " << row;
        ASSERT_EQ(walk.lane, std::uint32_t(row % pack)) << "pack " << pack << " row " << row;
    }
}

TEST(Sm90PackedRows, WalkMatchesDivision) {
    const std::int64_t kLastTile = (std::int64_t(1) << 31) - 1024 - 128;
    for (int pack = 1; pack <= 64; ++pack)
        for (std::int64_t row_begin : {std::int64_t(0), std::int64_t(128), std::int64_t(128) * 977, kLastTile})
            for (int r0 = 0; r0 < 16; ++r0) {
                expect_walk_matches_division<16>(row_begin, pack, r0, 4);   // the forward's 64-row slices
                expect_walk_matches_division<16>(row_begin, pack, 64 + r0, 4);
                expect_walk_matches_division<5>(row_begin, pack, r0, 40);   // steps below and above the pack
            }
}

}  // namespace
}  // namespace ccattn
