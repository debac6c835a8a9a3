// BlockSparseLists: lists built from a band (through the tile schedule) equal the lists found by
// brute force from the same band as a predicate; layout and argument errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "ccattn/block_sparse.h"
#include "literal_rule.h"

namespace ccattn::test {
namespace {

using TileSet = std::set<std::int32_t>;

// The tiles listed for (b, h, q-tile mt) in one of a view's lists.
TileSet listed(const Tensor& count, const Tensor& index, int b, int h, std::int64_t mt) {
    const auto* c = static_cast<const std::int32_t*>(count.data);
    const auto* x = static_cast<const std::int32_t*>(index.data);
    const std::int32_t n = c[b * count.stride[0] + h * count.stride[1] + mt * count.stride[2]];
    TileSet s;
    for (std::int32_t e = 0; e < n; ++e) {
        const bool fresh = s.insert(x[b * index.stride[0] + h * index.stride[1] + mt * index.stride[2] + e]).second;
        EXPECT_TRUE(fresh) << "tile listed twice";
    }
    return s;
}

struct BuildCase {
    std::string name;
    LiteralRule rule;
    std::vector<std::int32_t> lens_q, lens_k;  // one entry: fixed length
    std::int64_t tile_m, tile_n;
    friend void PrintTo(const BuildCase& c, std::ostream* os) { *os << c.name; }
};

class BuildFromBand : public ::testing::TestWithParam<BuildCase> {};

TEST_P(BuildFromBand, EqualsBruteForce) {
    const BuildCase& c = GetParam();
    const bool varlen = c.lens_q.size() > 1;
    std::vector<std::int32_t> cu_q{0}, cu_k{0};
    for (std::size_t b = 0; b < c.lens_q.size(); ++b) {
        cu_q.push_back(cu_q.back() + c.lens_q[b]);
        cu_k.push_back(cu_k.back() + c.lens_k[b]);
    }
    BlockSparseLists::Shape shape;
    shape.batch = int(c.lens_q.size());
    shape.seqlen_q = c.lens_q[0];
    shape.seqlen_k = c.lens_k[0];
    if (varlen) {
        shape.cu_seqlens_q = cu_q.data();
        shape.cu_seqlens_k = cu_k.data();
    }
    shape.tile_m = c.tile_m;
    shape.tile_n = c.tile_n;
    const LiteralRule rule = c.rule;
    const std::vector<std::int32_t> sk = c.lens_k;
    const MaskModFn literal = [rule, sk](int b, int, std::int64_t i, std::int64_t j) {
        return j < sk[std::size_t(b)] && rule(i, j);
    };

    BlockSparseLists fast, brute;
    ASSERT_TRUE(BlockSparseLists::from_band(Mask::band(true, rule.cf, rule.delta, rule.window), shape, fast).ok());
    ASSERT_TRUE(BlockSparseLists::from_predicate(literal, 1, shape, brute).ok());
    const std::int64_t longest = *std::max_element(c.lens_q.begin(), c.lens_q.end());
    ASSERT_EQ(fast.num_q_tiles(), (longest + c.tile_m - 1) / c.tile_m);
    const BlockSparseMask f = fast.view(), s = brute.view();
    ASSERT_EQ(f.full_count.shape[1], 1);  // one list for all heads

    for (int b = 0; b < shape.batch; ++b)
        for (std::int64_t mt = 0; mt < fast.num_q_tiles(); ++mt) {
            SCOPED_TRACE("b " + std::to_string(b) + " q-tile " + std::to_string(mt));
            EXPECT_EQ(listed(f.full_count, f.full_index, b, 0, mt), listed(s.full_count, s.full_index, b, 0, mt));
            const TileSet fp = listed(f.partial_count, f.partial_index, b, 0, mt);
            const TileSet sp = listed(s.partial_count, s.partial_index, b, 0, mt);
            if (!rule.window) {
                EXPECT_EQ(fp, sp);  // without a window no listed tile is wasted
            } else {
                // With a window the schedule may list partial tiles without a visible pair, never miss one.
                EXPECT_TRUE(std::includes(fp.begin(), fp.end(), sp.begin(), sp.end()));
            }
        }
    // The mask_mod of the band-built lists is the band.
    for (int b = 0; b < shape.batch; ++b)
        for (std::int64_t i = 0; i < c.lens_q[std::size_t(b)]; ++i)
            for (std::int64_t j = 0; j < c.lens_k[std::size_t(b)]; ++j)
                ASSERT_EQ(f.mask_mod(b, 0, i, j), literal(b, 0, i, j)) << b << " " << i << " " << j;
}

INSTANTIATE_TEST_SUITE_P(
    Cpu, BuildFromBand,
    ::testing::Values(BuildCase{"seed_cf4", {4, 0, {}}, {203}, {51}, 64, 64},
                      BuildCase{"seed_cf4_odd_tiles", {4, 0, {}}, {203}, {51}, 48, 7},
                      BuildCase{"nsa_negative_delta", {3, -6, {}}, {150}, {50}, 16, 16},
                      BuildCase{"positive_delta", {2, 40, {}}, {90}, {70}, 32, 8},
                      BuildCase{"window", {2, -1, 5}, {150}, {75}, 16, 8},
                      BuildCase{"window_cf1", {1, 0, 20}, {130}, {130}, 32, 32},
                      BuildCase{"varlen_empty", {3, 0, {}}, {0, 70, 1, 131}, {3, 24, 0, 44}, 32, 8},
                      BuildCase{"single_element_tiles", {2, 1, 3}, {20}, {12}, 1, 1}),
    [](const ::testing::TestParamInfo<BuildCase>& i) { return i.param.name; });

TEST(BlockSparseLists, PerHeadPredicateLayout) {
    BlockSparseLists::Shape shape;
    shape.batch = 2;
    shape.seqlen_q = 10;
    shape.seqlen_k = 9;
    shape.tile_m = 4;
    shape.tile_n = 3;
    // Head 0 sees everything, head 1 nothing, head 2 the key tile 1 only and half of it.
    const MaskModFn pred = [](int, int h, std::int64_t, std::int64_t j) { return h == 0 || (h == 2 && j == 4); };
    BlockSparseLists lists;
    ASSERT_TRUE(BlockSparseLists::from_predicate(pred, 3, shape, lists).ok());
    const BlockSparseMask m = lists.view();
    ASSERT_EQ(m.full_count.rank, 3);
    EXPECT_EQ(m.full_count.shape[0], 2);
    EXPECT_EQ(m.full_count.shape[1], 3);
    EXPECT_EQ(m.full_count.shape[2], 3);  // ceil(10 / 4)
    for (int b = 0; b < 2; ++b)
        for (std::int64_t mt = 0; mt < 3; ++mt) {
            EXPECT_EQ(listed(m.full_count, m.full_index, b, 0, mt), (TileSet{0, 1, 2}));
            EXPECT_EQ(listed(m.partial_count, m.partial_index, b, 0, mt), TileSet{});
            EXPECT_EQ(listed(m.full_count, m.full_index, b, 1, mt), TileSet{});
            EXPECT_EQ(listed(m.partial_count, m.partial_index, b, 1, mt), TileSet{});
            EXPECT_EQ(listed(m.full_count, m.full_index, b, 2, mt), TileSet{});
            EXPECT_EQ(listed(m.partial_count, m.partial_index, b, 2, mt), TileSet{1});
        }
    EXPECT_EQ(lists.total_full(), 2 * 3 * 3);
    EXPECT_EQ(lists.total_partial(), 2 * 3);
    const Mask mask = lists.mask();
    EXPECT_EQ(mask.kind, MaskKind::block_sparse);
    EXPECT_TRUE(mask.block_sparse.mask_mod(0, 2, 0, 4));
}

TEST(BlockSparseLists, RaggedLastTileIsNeverFull) {
    BlockSparseLists::Shape shape;
    shape.seqlen_q = 8;
    shape.seqlen_k = 10;
    shape.tile_m = 8;
    shape.tile_n = 4;
    BlockSparseLists lists;
    ASSERT_TRUE(BlockSparseLists::from_band(Mask::none(), shape, lists).ok());
    const BlockSparseMask m = lists.view();
    EXPECT_EQ(listed(m.full_count, m.full_index, 0, 0, 0), (TileSet{0, 1}));
    EXPECT_EQ(listed(m.partial_count, m.partial_index, 0, 0, 0), TileSet{2});
}

TEST(BlockSparseLists, RejectsBadArguments) {
    BlockSparseLists lists;
    BlockSparseLists::Shape shape;
    shape.seqlen_q = shape.seqlen_k = 16;
    shape.tile_m = 0;
    EXPECT_EQ(BlockSparseLists::from_band(Mask::band(true), shape, lists).argument, "tile_m");
    shape.tile_m = 16;
    shape.tile_n = -1;
    EXPECT_EQ(BlockSparseLists::from_band(Mask::band(true), shape, lists).argument, "tile_n");
    shape.tile_n = 16;
    EXPECT_EQ(BlockSparseLists::from_band(Mask::band(true, 0), shape, lists).argument, "mask.compress_factor");
    EXPECT_EQ(BlockSparseLists::from_band(Mask::band(true, 1, 0, -2), shape, lists).argument, "mask.window_left");
    Mask not_band;
    not_band.kind = MaskKind::mask_mod;
    EXPECT_EQ(BlockSparseLists::from_band(not_band, shape, lists).argument, "mask");
    EXPECT_EQ(BlockSparseLists::from_predicate({}, 1, shape, lists).argument, "visible");
    const MaskModFn all = [](int, int, std::int64_t, std::int64_t) { return true; };
    EXPECT_EQ(BlockSparseLists::from_predicate(all, 0, shape, lists).argument, "heads");
    shape.seqlen_q = -1;
    EXPECT_EQ(BlockSparseLists::from_band(Mask::band(true), shape, lists).argument, "seqlen_q");
    const std::int32_t cu_bad[3] = {0, 5, 3};
    shape.batch = 2;
    shape.cu_seqlens_q = cu_bad;
    EXPECT_EQ(BlockSparseLists::from_band(Mask::band(true), shape, lists).argument, "cu_seqlens_k");
    shape.cu_seqlens_k = cu_bad;
    EXPECT_EQ(BlockSparseLists::from_band(Mask::band(true), shape, lists).argument, "cu_seqlens_q");
}

}  // namespace
}  // namespace ccattn::test
