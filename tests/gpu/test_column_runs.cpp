// gpu::ColumnRuns and column_bits (src/gpu/column_runs.h): the closed-form count of a thread's columns
// below a key limit, its shift by whole kv tiles, and the bit masks built from the counts equal a
// column-by-column look, for the wgmma / mma.sync pattern (pairs every 8) and others, every limit
// from below the first column to past the last, and both 32-column words of a 64-column row.
#include <gtest/gtest.h>

#include <cstdint>

#include "gpu/column_runs.h"

namespace ccattn {
namespace {

template <int kRun, int kPeriod>
void expect_matches_columns(int columns) {
    using Runs = gpu::ColumnRuns<kRun, kPeriod>;
    const int span = Runs::offset(columns - 1) + kPeriod;
    for (int t = -2 * kPeriod; t <= span; ++t) {
        int below = 0;
        for (int i = 0; i < columns; ++i) below += Runs::offset(i) < t;
        // The formula counts an endless run of columns; a row has `columns` of them.
        const int counted = Runs::count_below(t) < columns ? Runs::count_below(t) : columns;
        ASSERT_EQ(counted, below) << "limit " << t;
        for (int p = 0; p <= 4; ++p) {  // kv tiles start at whole periods
            const int shifted = Runs::count_below(t) - p * kRun;
            ASSERT_EQ(Runs::count_below(t - p * kPeriod), shifted > 0 ? shifted : 0) << "limit " << t << " shift " << p;
        }
    }
    // Keys [lo, hi) as the thread's column indices: exactly the columns whose offsets lie inside.
    for (int lo = -kPeriod; lo <= span; lo += 3)
        for (int hi = lo - kPeriod; hi <= span; hi += 2)
            for (int base = 0; base < columns; base += 32) {
                const std::uint32_t bits = gpu::column_bits(Runs::count_below(lo), Runs::count_below(hi), base);
                for (int i = base; i < base + 32 && i < columns; ++i) {
                    const bool visible = lo <= Runs::offset(i) && Runs::offset(i) < hi;
                    ASSERT_EQ(((bits >> (i - base)) & 1u) != 0, visible)
                        << "lo " << lo << " hi " << hi << " column " << i;
                }
            }
}

TEST(ColumnRuns, PairsEveryEight) {
    expect_matches_columns<2, 8>(16);  // 64-key tiles
    expect_matches_columns<2, 8>(32);  // 128-key tiles
    expect_matches_columns<2, 8>(64);  // two words
}

TEST(ColumnRuns, OtherPatterns) {
    expect_matches_columns<1, 1>(32);
    expect_matches_columns<1, 4>(40);
    expect_matches_columns<4, 8>(48);
    expect_matches_columns<3, 3>(33);
}

TEST(ColumnRuns, LowBits) {
    EXPECT_EQ(gpu::low_bits(-5), 0u);
    EXPECT_EQ(gpu::low_bits(0), 0u);
    EXPECT_EQ(gpu::low_bits(1), 1u);
    EXPECT_EQ(gpu::low_bits(31), 0x7fffffffu);
    EXPECT_EQ(gpu::low_bits(32), 0xffffffffu);
    EXPECT_EQ(gpu::low_bits(100), 0xffffffffu);
    EXPECT_EQ(gpu::column_bits(3, 2, 0), 0u);  // an empty range, as rows that see nothing give
}

}  // namespace
}  // namespace ccattn
