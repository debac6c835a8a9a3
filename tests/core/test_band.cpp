// core/band.h against the literal rules and conventions of docs/semantics.md.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "core/band.h"
#include "core/bound_bands.h"
#include "core/literal_band.h"

namespace ccattn::core {
namespace {

using test::LiteralBand;

CompressedBand make_band(std::int64_t sk, bool causal, std::int64_t cf, std::int64_t delta,
                         std::optional<std::int64_t> window = {}) {
    CompressedBand b;
    b.seqlen_k = sk;
    b.causal = causal;
    b.compress_factor = cf;
    b.diag_offset = delta;
    b.window_left = window.value_or(kNoWindow);
    return b;
}

// Every (i, j) of a grid: the band's visibility equals the rule's, and lo, hi stay monotone in [0, Sk].
void expect_same_visibility(const CompressedBand& band, const LiteralBand& rule, std::int64_t sq) {
    for (std::int64_t i = 0; i < sq; ++i) {
        ASSERT_GE(band.lo(i), 0);
        ASSERT_LE(band.hi(i), band.seqlen_k);
        if (i > 0) {
            ASSERT_LE(band.lo(i - 1), band.lo(i)) << "i=" << i;
            ASSERT_LE(band.hi(i - 1), band.hi(i)) << "i=" << i;
        }
        for (std::int64_t j = -2; j < band.seqlen_k + 3; ++j)
            ASSERT_EQ(visible(band, i, j), rule.visible(i, j))
                << "i=" << i << " j=" << j << " cf=" << band.compress_factor << " delta=" << band.diag_offset
                << " window=" << band.window_left << " causal=" << band.causal;
    }
}

TEST(FloorCeilDiv, MatchDefinitionForBothSigns) {
    for (std::int64_t b = 1; b <= 9; ++b)
        for (std::int64_t a = -60; a <= 60; ++a) {
            std::int64_t f = floor_div(a, b), c = ceil_div(a, b);
            EXPECT_TRUE(f * b <= a && a < (f + 1) * b) << a << " / " << b << " floor " << f;
            EXPECT_TRUE(c * b >= a && (c - 1) * b < a) << a << " / " << b << " ceil " << c;
        }
    EXPECT_EQ(floor_div(-1, 4), -1);
    EXPECT_EQ(floor_div(-4, 4), -1);
    EXPECT_EQ(floor_div(-5, 4), -2);
    EXPECT_EQ(ceil_div(-5, 4), -1);
    EXPECT_EQ(ceil_div(5, 4), 2);
    EXPECT_EQ(ceil_div(0, 4), 0);
}

TEST(FloorCeilDiv, LargeMagnitudes) {
    const std::int64_t big = std::int64_t(1) << 62;
    for (std::int64_t b : {std::int64_t(1), std::int64_t(3), std::int64_t(7), std::int64_t(1) << 20})
        for (std::int64_t a : {big - 1, big - 2, -big + 1, -big + 2, -(std::int64_t(1) << 40) - 1}) {
            __int128 f = floor_div(a, b), c = ceil_div(a, b);
            EXPECT_TRUE(f * b <= a && a < (f + 1) * b) << a << " / " << b;
            EXPECT_TRUE(c * b >= a && (c - 1) * b < a) << a << " / " << b;
        }
}

TEST(CompressedBand, NoMaskSeesEveryKey) {
    for (std::int64_t cf : {1, 3})
        for (std::int64_t delta : {-9, 0, 9}) {
            CompressedBand band = make_band(11, false, cf, delta);
            for (std::int64_t i = 0; i < 30; ++i) {
                EXPECT_EQ(band.lo(i), 0);
                EXPECT_EQ(band.hi(i), 11);
            }
        }
}

TEST(CompressedBand, HandValues) {
    // causal, cf 1: j <= i + delta
    CompressedBand c1 = make_band(8, true, 1, 0);
    EXPECT_EQ(c1.hi(0), 1);
    EXPECT_EQ(c1.hi(5), 6);
    EXPECT_EQ(c1.hi(20), 8);                        // clamped to Sk
    EXPECT_EQ(make_band(8, true, 1, -3).hi(2), 0);  // i + delta < 0: empty row
    EXPECT_EQ(make_band(8, true, 1, 2).hi(0), 3);
    // causal, cf 4: j*4 <= i
    CompressedBand c4 = make_band(100, true, 4, 0);
    EXPECT_EQ(c4.hi(0), 1);
    EXPECT_EQ(c4.hi(3), 1);
    EXPECT_EQ(c4.hi(4), 2);
    EXPECT_EQ(c4.hi(7), 2);
    EXPECT_EQ(c4.hi(8), 3);
    // cf 4, delta -3 (blocks of 4): key j once the whole block 4j..4j+3 is seen
    CompressedBand blocks = make_band(100, true, 4, -3);
    EXPECT_EQ(blocks.hi(2), 0);
    EXPECT_EQ(blocks.hi(3), 1);
    EXPECT_EQ(blocks.hi(6), 1);
    EXPECT_EQ(blocks.hi(7), 2);
    // window: lo = floor((i + delta)/cf) - w
    CompressedBand w1 = make_band(100, true, 1, 0, 2);
    EXPECT_EQ(w1.lo(5), 3);
    EXPECT_EQ(w1.hi(5), 6);
    EXPECT_EQ(w1.lo(1), 0);  // clamped
    CompressedBand w3 = make_band(100, true, 3, 1, 1);
    EXPECT_EQ(w3.lo(10), 2);  // floor(11/3) - 1
    EXPECT_EQ(w3.hi(10), 4);
    // window without causal: only the left edge
    CompressedBand nc = make_band(50, false, 2, 0, 3);
    EXPECT_EQ(nc.lo(20), 7);
    EXPECT_EQ(nc.hi(20), 50);
    EXPECT_EQ(make_band(50, false, 1, 0, 0).lo(70), 50);  // left edge beyond Sk: empty row
}

TEST(CompressedBand, MatchesLiteralRuleOnGrid) {
    const std::optional<std::int64_t> windows[] = {std::nullopt, 0, 1, 4};
    for (std::int64_t sk : {0, 1, 5, 13})
        for (std::int64_t cf = 1; cf <= 5; ++cf)
            for (std::int64_t delta = -23; delta <= 23; delta += 2)
                for (const auto& w : windows)
                    for (bool causal : {false, true}) {
                        CompressedBand band = make_band(sk, causal, cf, delta, w);
                        expect_same_visibility(band, LiteralBand{sk, causal, cf, delta, w}, 41);
                    }
}

// rows_seeing(j) is exactly the set of rows whose band holds key j, for every key of the sequence.
TEST(CompressedBand, RowsSeeingSolvesTheBandForRows) {
    const std::optional<std::int64_t> windows[] = {std::nullopt, 0, 1, 4};
    constexpr std::int64_t kSq = 41;
    for (std::int64_t sk : {1, 5, 13})
        for (std::int64_t cf = 1; cf <= 5; ++cf)
            for (std::int64_t delta = -23; delta <= 23; delta += 3)
                for (const auto& w : windows)
                    for (bool causal : {false, true}) {
                        CompressedBand band = make_band(sk, causal, cf, delta, w);
                        for (std::int64_t j = 0; j < sk; ++j) {
                            std::int64_t begin = -1, end = -1;
                            band.rows_seeing(j, kSq, begin, end);
                            ASSERT_GE(begin, 0);
                            ASSERT_LE(end, kSq);
                            for (std::int64_t i = 0; i < kSq; ++i)
                                ASSERT_EQ(visible(band, i, j), begin <= i && i < end)
                                    << "i=" << i << " j=" << j << " cf=" << cf << " delta=" << delta
                                    << " causal=" << causal;
                        }
                    }
}

// The host's divider (BandSpec::cf_div, as api::band_spec sets it) gives the diagonal floor_div gives,
// for negative and large i + delta alike (the divider covers [0, 2^31), floor_div_fast the rest).
TEST(CompressedBand, DividerMatchesFloorDiv) {
    std::mt19937_64 rng(23);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    for (int iter = 0; iter < 20000; ++iter) {
        BandSpec spec;
        spec.causal = true;
        spec.compress_factor = pick(0, 3) ? pick(1, 80) : pick(1, (std::int64_t(1) << 31) - 1);
        spec.cf_div = FastDiv(std::uint32_t(spec.compress_factor));
        spec.has_diag_offset = true;
        spec.diag_offset = pick(0, 3) ? pick(-300, 300) : pick(-(std::int64_t(1) << 40), std::int64_t(1) << 40);
        const CompressedBand band = spec.for_sequence(1000, std::int64_t(1) << 40);
        ASSERT_EQ(band.cf_div.divisor, spec.compress_factor);
        for (std::int64_t i : {std::int64_t(0), pick(0, 1000), pick(0, std::int64_t(1) << 33),
                               (std::int64_t(1) << 31) - 1 - spec.diag_offset, (std::int64_t(1) << 31) - spec.diag_offset}) {
            if (i < 0) continue;
            ASSERT_EQ(band.diag(i), floor_div(i + spec.diag_offset, spec.compress_factor))
                << "i " << i << " delta " << spec.diag_offset << " cf " << spec.compress_factor;
        }
    }
}

TEST(BandSpec, DefaultDiagonalOffset) {
    BandSpec spec;
    spec.causal = true;
    spec.compress_factor = 1;
    EXPECT_EQ(spec.for_sequence(7, 10).diag_offset, 3);  // flash-attn bottom-right
    EXPECT_EQ(spec.for_sequence(10, 10).diag_offset, 0);
    EXPECT_EQ(spec.for_sequence(10, 7).diag_offset, -3);
    EXPECT_EQ(spec.for_sequence(0, 5).diag_offset, 5);
    for (std::int64_t cf : {2, 4, 16}) {
        spec.compress_factor = cf;
        EXPECT_EQ(spec.for_sequence(7, 10).diag_offset, 0) << "cf " << cf;
        EXPECT_EQ(spec.for_sequence(4096, 1024).diag_offset, 0) << "cf " << cf;
    }
    EXPECT_EQ(default_diag_offset(1, 3, 9), 6);
    EXPECT_EQ(default_diag_offset(5, 3, 9), 0);
    // An explicit offset wins, zero included.
    spec.compress_factor = 1;
    spec.has_diag_offset = true;
    spec.diag_offset = 0;
    EXPECT_EQ(spec.for_sequence(7, 10).diag_offset, 0);
    spec.diag_offset = -5;
    EXPECT_EQ(spec.for_sequence(7, 10).diag_offset, -5);
    // Every other field passes through.
    spec.compress_factor = 3;
    spec.window_left = 9;
    CompressedBand b = spec.for_sequence(7, 10);
    EXPECT_EQ(b.seqlen_k, 10);
    EXPECT_EQ(b.compress_factor, 3);
    EXPECT_EQ(b.window_left, 9);
    EXPECT_TRUE(b.causal);
}

// A convention: its rule as the literature writes it, checked against the (cf, delta) of the table.
template <class Rule>
void expect_convention(std::int64_t cf, std::int64_t delta, std::int64_t sq, std::int64_t sk, Rule rule) {
    CompressedBand band = make_band(sk, true, cf, delta);
    for (std::int64_t i = 0; i < sq; ++i)
        for (std::int64_t j = 0; j < sk; ++j)
            ASSERT_EQ(visible(band, i, j), rule(i, j)) << "cf=" << cf << " delta=" << delta << " i=" << i << " j=" << j;
}

TEST(Conventions, SeedRule) {  // kv*cf <= q; the default for cf > 1
    for (std::int64_t cf : {2, 4, 7}) {
        expect_convention(cf, 0, 80, 30, [&](std::int64_t i, std::int64_t j) { return j * cf <= i; });
        BandSpec spec;
        spec.causal = true;
        spec.compress_factor = cf;
        CompressedBand by_default = spec.for_sequence(80, 30);
        for (std::int64_t i = 0; i < 80; ++i)
            for (std::int64_t j = 0; j < 30; ++j) ASSERT_EQ(visible(by_default, i, j), j * cf <= i);
    }
}

TEST(Conventions, NsaCompleteBlocks) {  // block length l, stride d: j*d + l - 1 <= i
    const std::int64_t shapes[][2] = {{32, 16}, {4, 2}, {3, 3}, {5, 2}, {8, 4}, {1, 1}};
    for (const auto& s : shapes) {
        std::int64_t l = s[0], d = s[1];
        expect_convention(d, -(l - 1), 150, 40, [&](std::int64_t i, std::int64_t j) { return j * d + l - 1 <= i; });
    }
}

TEST(Conventions, NonOverlappingBlocks) {  // blocks of B: (j + 1)*B - 1 <= i
    for (std::int64_t blk : {1, 2, 4, 64})
        expect_convention(blk, -(blk - 1), 300, 20,
                          [&](std::int64_t i, std::int64_t j) { return (j + 1) * blk - 1 <= i; });
}

TEST(Conventions, FlashAttnBottomRightCausal) {  // j <= i + Sk - Sq, the default for cf = 1
    const std::int64_t lengths[][2] = {{5, 9}, {9, 5}, {8, 8}, {1, 7}, {7, 1}};
    for (const auto& l : lengths) {
        std::int64_t sq = l[0], sk = l[1];
        BandSpec spec;
        spec.causal = true;
        CompressedBand band = spec.for_sequence(sq, sk);
        for (std::int64_t i = 0; i < sq; ++i)
            for (std::int64_t j = 0; j < sk; ++j) ASSERT_EQ(visible(band, i, j), j <= i + sk - sq) << sq << "x" << sk;
        if (sq <= sk) EXPECT_EQ(band.hi(sq - 1), sk) << "the last query sees every key";
    }
}

TEST(Conventions, ChunkedPrefillShiftsTheOffset) {  // a shard starting at absolute position p: delta + p
    for (std::int64_t cf : {1, 3, 4})
        for (std::int64_t delta : {std::int64_t(0), -(cf - 1), std::int64_t(5)})
            for (std::int64_t p : {0, 5, 64, 1000}) {
                CompressedBand whole = make_band(400, true, cf, delta, std::int64_t(6));
                CompressedBand shard = make_band(400, true, cf, delta + p, std::int64_t(6));
                for (std::int64_t i = 0; i < 16; ++i)
                    for (std::int64_t j = 0; j < 400; ++j)
                        ASSERT_EQ(visible(shard, i, j), visible(whole, i + p, j)) << cf << " " << delta << " " << p;
            }
}

// The seed's rule lets query i see compressed token floor(i/cf), which summarizes positions up to
// floor(i/cf)*cf + cf - 1 > i; delta = -(cf - 1) only sees tokens whose whole block is in the past.
TEST(Conventions, SeedRuleLeaksAndBlockRuleDoesNot) {
    const std::int64_t cf = 4, sq = 64, sk = 16;
    auto sees_future = [&](std::int64_t delta) {
        CompressedBand band = make_band(sk, true, cf, delta);
        for (std::int64_t i = 0; i < sq; ++i)
            for (std::int64_t j = band.lo(i); j < band.hi(i); ++j)
                if (j * cf + cf - 1 > i) return true;
        return false;
    };
    EXPECT_TRUE(sees_future(0));
    EXPECT_FALSE(sees_future(-(cf - 1)));
}

TEST(CompressedBand, SixtyFourBitPositions) {
    const std::int64_t p40 = std::int64_t(1) << 40, sk = std::int64_t(1) << 41;
    for (std::int64_t cf : {1, 3, 16, 1000})
        for (std::int64_t delta : {std::int64_t(0), -(p40 / 2) - 5, std::int64_t(12345), -(cf - 1)})
            for (std::int64_t w : {std::int64_t(0), std::int64_t(1) << 30}) {
                CompressedBand band = make_band(sk, true, cf, delta, w);
                LiteralBand rule{sk, true, cf, delta, w};
                for (std::int64_t i = p40 - 3; i <= p40 + 3; ++i) {
                    std::int64_t lo = band.lo(i), hi = band.hi(i);
                    ASSERT_LT(lo, hi);
                    // hi is the first invisible key on the right, lo the first visible one.
                    EXPECT_TRUE(rule.visible(i, hi - 1)) << i;
                    EXPECT_FALSE(rule.visible(i, hi)) << i;
                    EXPECT_TRUE(rule.visible(i, lo)) << i;
                    if (lo > 0) EXPECT_FALSE(rule.visible(i, lo - 1)) << i;
                    EXPECT_GT(hi, (i + delta) / cf - 1);  // no 32-bit truncation
                }
            }
}

// The bands at the validation bounds: lo and hi equal the literal rule (which multiplies instead of
// dividing) and nothing overflows (the UBSan run checks the arithmetic itself).
TEST(CompressedBand, AtTheValidationBounds) {
    for (const test::BoundBand& b : test::bands_at_validation_bounds())
        for (std::int64_t sk : {0, 1, 113}) {
            const CompressedBand band = make_band(sk, b.causal, b.cf, b.delta, b.window);
            expect_same_visibility(band, LiteralBand{sk, b.causal, b.cf, b.delta, b.window}, 203);
            // Rows far from 0 too: any position below 2^62 (the largest extent) keeps i + delta in int64.
            for (std::int64_t i : {std::int64_t(1) << 31, (std::int64_t(1) << 62) - 1})
                for (std::int64_t j : {std::int64_t(0), sk - 1})
                    ASSERT_EQ(visible(band, i, j), (LiteralBand{sk, b.causal, b.cf, b.delta, b.window}.visible(i, j)))
                        << "i=" << i << " j=" << j;
        }
}

}  // namespace
}  // namespace ccattn::core
