// core/schedule.h against brute force: for every (q-tile, kv-tile) pair of many small cases, the
// visible pairs are counted from the literal mask rule and compared with the schedule's ranges and
// classification, forward and backward, for the built-in band and for user-defined bands.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <random>
#include <vector>

#include "core/band.h"
#include "core/bound_bands.h"
#include "core/literal_band.h"
#include "core/schedule.h"

namespace ccattn::core {
namespace {

// Visible pairs of any rectangle of rows x keys in O(1), from 2-D prefix sums of a predicate.
class VisibilityTable {
public:
    template <class Visible>
    VisibilityTable(std::int64_t sq, std::int64_t sk, Visible visible)
        : sq_(sq), sk_(sk), sum_(std::size_t((sq + 1) * (sk + 1)), 0) {
        for (std::int64_t i = 0; i < sq; ++i)
            for (std::int64_t j = 0; j < sk; ++j)
                at(i + 1, j + 1) = at(i, j + 1) + at(i + 1, j) - at(i, j) + (visible(i, j) ? 1 : 0);
    }
    // Rows [i0, i1), keys [j0, j1) (clamped to the sequence).
    std::int64_t count(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const {
        i1 = clamp(i1, 0, sq_);
        j1 = clamp(j1, 0, sk_);
        i0 = clamp(i0, 0, i1);
        j0 = clamp(j0, 0, j1);
        return get(i1, j1) - get(i0, j1) - get(i1, j0) + get(i0, j0);
    }

private:
    std::int64_t& at(std::int64_t i, std::int64_t j) { return sum_[std::size_t(i * (sk_ + 1) + j)]; }
    std::int64_t get(std::int64_t i, std::int64_t j) const { return sum_[std::size_t(i * (sk_ + 1) + j)]; }
    std::int64_t sq_, sk_;
    std::vector<std::int64_t> sum_;
};

struct Tiling {
    std::int64_t group, tile_m, tile_n;
};
std::ostream& operator<<(std::ostream& os, const Tiling& t) {
    return os << "G=" << t.group << " tile_m=" << t.tile_m << " tile_n=" << t.tile_n;
}

// What a band guarantees beyond "never miss a visible tile, classify full exactly".
struct Guarantees {
    // classify says skip iff no pair is visible: for every kv tile, or for those of kv_tile_range
    // (rows whose window starts at Sk are empty, yet a ragged last tile is not "skip" for them)
    enum class ExactSkip { no, in_range, everywhere } exact_skip = ExactSkip::no;
    bool forward_no_waste = false;        // every kv tile of kv_tile_range holds a visible pair
    bool backward_no_waste = false;       // every q tile of q_tile_range holds a visible pair
    bool empty_rows_empty_range = false;  // a q-tile with no visible pair gets an empty kv range
};

// Every combination of these, tile sizes not powers of two included.
std::vector<Tiling> all_tilings() {
    std::vector<Tiling> tilings;
    for (std::int64_t group = 1; group <= 5; ++group)
        for (std::int64_t tile_m : {1, 3, 7, 24, 64})
            for (std::int64_t tile_n : {1, 3, 5, 24, 128}) tilings.push_back({group, tile_m, tile_n});
    return tilings;
}
const std::vector<Tiling> kTilings = all_tilings();

// The query positions packed rows [m*tile_m, (m+1)*tile_m) cover, from the definition of packing.
RowSpan packed_rows(std::int64_t m, const Tiling& t, std::int64_t sq) {
    std::int64_t r0 = m * t.tile_m, r1 = std::min(r0 + t.tile_m, sq * t.group);
    if (r1 <= r0) return {0, 0};
    return {r0 / t.group, (r1 - 1) / t.group + 1};
}

template <class Band>
void check_schedule(const Band& band, const VisibilityTable& vis, std::int64_t sq, std::int64_t sk, const Tiling& t,
                    const Guarantees& g) {
    const std::int64_t num_q = num_tiles(sq * t.group, t.tile_m), num_kv = num_tiles(sk, t.tile_n);
    // Forward: kv tiles of each q tile (one q tile past the end must be empty).
    std::vector<TileRange> forward(std::size_t(num_q + 1));
    for (std::int64_t m = 0; m <= num_q; ++m) {
        const RowSpan rows = packed_rows(m, t, sq);
        const RowSpan span = query_span(m, t.tile_m, t.group, sq);
        ASSERT_TRUE(span.empty() == rows.empty() &&
                    (rows.empty() || (span.begin == rows.begin && span.end == rows.end)))
            << t << " m=" << m << " query_span [" << span.begin << ", " << span.end << ")";
        const TileRange range = kv_tile_range(band, rows, t.tile_n);
        forward[std::size_t(m)] = range;
        if (!range.empty()) {
            ASSERT_GE(range.begin, 0) << t << " m=" << m;
            ASSERT_LE(range.end, num_kv) << t << " m=" << m;
            ASSERT_TRUE(range.begin <= range.full_begin && range.full_begin <= range.full_end &&
                        range.full_end <= range.end)
                << t << " m=" << m;
        }
        const std::int64_t row_count = rows.end - rows.begin;
        if (g.empty_rows_empty_range && vis.count(rows.begin, rows.end, 0, sk) == 0)
            ASSERT_TRUE(range.empty()) << t << " m=" << m << ": rows with nothing visible visit tiles";
        for (std::int64_t n = 0; n < num_kv; ++n) {
            const std::int64_t n0 = n * t.tile_n;
            const std::int64_t visible = vis.count(rows.begin, rows.end, n0, n0 + t.tile_n);
            const bool full = !rows.empty() && visible == row_count * t.tile_n;
            const bool in_range = range.begin <= n && n < range.end;
            const TileKind kind = classify(band, rows, n0, t.tile_n);
            ASSERT_TRUE(visible == 0 || in_range) << t << " m=" << m << " n=" << n << ": missed a visible tile";
            ASSERT_TRUE(visible == 0 || kind != TileKind::skip) << t << " m=" << m << " n=" << n << ": skipped";
            ASSERT_EQ(kind == TileKind::full, full) << t << " m=" << m << " n=" << n << " visible=" << visible;
            if (in_range) ASSERT_EQ(range.is_full(n), full) << t << " m=" << m << " n=" << n;
            if (g.exact_skip == Guarantees::ExactSkip::everywhere ||
                (g.exact_skip == Guarantees::ExactSkip::in_range && in_range))
                ASSERT_EQ(kind == TileKind::skip, visible == 0) << t << " m=" << m << " n=" << n;
            if (g.forward_no_waste && in_range) ASSERT_GT(visible, 0) << t << " m=" << m << " n=" << n << ": wasted";
        }
    }
    // Backward: q tiles of each kv tile, the mirror of the forward.
    for (std::int64_t n = 0; n < num_kv; ++n) {
        const std::int64_t n0 = n * t.tile_n;
        const TileRange range = q_tile_range(band, n0, t.tile_n, sq, t.tile_m, t.group);
        if (!range.empty()) {
            ASSERT_GE(range.begin, 0) << t << " n=" << n;
            ASSERT_LE(range.end, num_q) << t << " n=" << n;
            ASSERT_TRUE(range.begin <= range.full_begin && range.full_begin <= range.full_end &&
                        range.full_end <= range.end)
                << t << " n=" << n;
        }
        for (std::int64_t m = 0; m < num_q; ++m) {
            const RowSpan rows = packed_rows(m, t, sq);
            const std::int64_t visible = vis.count(rows.begin, rows.end, n0, n0 + t.tile_n);
            const bool full = visible == (rows.end - rows.begin) * t.tile_n;
            const bool in_range = range.begin <= m && m < range.end;
            ASSERT_TRUE(visible == 0 || in_range) << t << " n=" << n << " m=" << m << ": backward missed a tile";
            if (in_range) ASSERT_EQ(range.is_full(m), full) << t << " n=" << n << " m=" << m << " visible=" << visible;
            if (g.backward_no_waste) ASSERT_EQ(in_range, visible > 0) << t << " n=" << n << " m=" << m;
            if (g.forward_no_waste && g.backward_no_waste) {
                const TileRange& f = forward[std::size_t(m)];
                ASSERT_EQ(in_range, f.begin <= n && n < f.end) << t << " n=" << n << " m=" << m << ": not mirrored";
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The built-in band over a grid of lengths, offsets and windows; one test instance per cf.

struct MaskShape {
    bool causal;
    std::optional<std::int64_t> window;
};

class BuiltinBandSchedule : public ::testing::TestWithParam<std::int64_t> {};

TEST_P(BuiltinBandSchedule, MatchesBruteForce) {
    const std::int64_t cf = GetParam();
    const MaskShape shapes[] = {
        {false, std::nullopt}, {true, std::nullopt}, {true, 0}, {true, 3}, {false, 2}, {false, 0}};
    const std::optional<std::int64_t> deltas[] = {std::nullopt, -50, -9, -2, -1, 0, 1, 3, 40, 1000};
    for (std::int64_t sq : {0, 1, 2, 7, 33, 100})
        for (std::int64_t sk : {0, 1, 3, 5, 32, 77})
            for (const auto& delta : deltas)
                for (const MaskShape& shape : shapes) {
                    BandSpec spec;
                    spec.causal = shape.causal;
                    spec.compress_factor = cf;
                    spec.has_diag_offset = delta.has_value();
                    spec.diag_offset = delta.value_or(0);
                    spec.window_left = shape.window.value_or(kNoWindow);
                    const CompressedBand band = spec.for_sequence(sq, sk);
                    const test::LiteralBand rule{sk, shape.causal, cf, band.diag_offset, shape.window};
                    const VisibilityTable vis(sq, sk,
                                              [&](std::int64_t i, std::int64_t j) { return rule.visible(i, j); });
                    SCOPED_TRACE(::testing::Message()
                                 << "Sq=" << sq << " Sk=" << sk << " cf=" << cf << " delta=" << band.diag_offset
                                 << " causal=" << shape.causal << " window=" << shape.window.value_or(-1));
                    ASSERT_EQ(visible_pairs(band, sq), vis.count(0, sq, 0, sk));
                    Guarantees g;
                    g.exact_skip = shape.window ? Guarantees::ExactSkip::in_range : Guarantees::ExactSkip::everywhere;
                    g.empty_rows_empty_range = true;
                    // Windows of consecutive rows touch, so the forward range is tight even with a window.
                    // The backward's is not: rows whose window starts at Sk are empty, yet they fall in
                    // the range of a ragged last kv tile.
                    g.forward_no_waste = true;
                    g.backward_no_waste = !shape.window.has_value();
                    for (const Tiling& t : kTilings) {
                        check_schedule(band, vis, sq, sk, t, g);
                        if (HasFatalFailure()) return;
                    }
                }
}

INSTANTIATE_TEST_SUITE_P(CompressFactor, BuiltinBandSchedule, ::testing::Values(1, 2, 3, 4, 8));

// The packed rows that see each key are exactly those whose query sees it (the Hopper backward masks
// its transposed scores by them), on a grid of built-in bands and at the validation bounds.
TEST(PackedRowsSeeing, MatchesTheBand) {
    auto check = [](const CompressedBand& band, std::int64_t sq) {
        for (std::int64_t group : {1, 2, 3, 5})
            for (std::int64_t j = -1; j <= band.seqlen_k; ++j) {
                const RowSpan rows = packed_rows_seeing(band, j, sq, group);
                for (std::int64_t r = 0; r < sq * group; ++r)
                    ASSERT_EQ(rows.begin <= r && r < rows.end, visible(band, r / group, j))
                        << "r=" << r << " j=" << j << " group=" << group << " cf=" << band.compress_factor
                        << " delta=" << band.diag_offset << " window=" << band.window_left;
            }
    };
    for (std::int64_t cf = 1; cf <= 5; ++cf)
        for (std::int64_t delta : {-40, -7, -1, 0, 2, 9, 35})
            for (std::int64_t window : {kNoWindow, std::int64_t(0), std::int64_t(3)})
                for (bool causal : {false, true}) {
                    CompressedBand band;
                    band.seqlen_k = 13;
                    band.compress_factor = cf;
                    band.diag_offset = delta;
                    band.window_left = window;
                    band.causal = causal;
                    check(band, 37);
                    if (HasFatalFailure()) return;
                }
    for (const test::BoundBand& b : test::bands_at_validation_bounds()) {
        CompressedBand band;
        band.seqlen_k = 60;
        band.compress_factor = b.cf;
        band.diag_offset = b.delta;
        band.window_left = b.window.value_or(kNoWindow);
        band.causal = b.causal;
        check(band, 300);
        if (HasFatalFailure()) return;
    }
}

// The bands at the validation bounds through the whole schedule (kv_tile_range overflowed on the
// window's left edge when the window was unbounded).
TEST(BoundBandSchedule, MatchesBruteForce) {
    for (const test::BoundBand& b : test::bands_at_validation_bounds())
        for (std::int64_t sq : {1, 203})
            for (std::int64_t sk : {1, 113}) {
                CompressedBand bb;
                bb.seqlen_k = sk;
                bb.compress_factor = b.cf;
                bb.diag_offset = b.delta;
                bb.causal = b.causal;
                bb.window_left = b.window.value_or(kNoWindow);
                const test::LiteralBand rule{sk, b.causal, b.cf, b.delta, b.window};
                const VisibilityTable vis(sq, sk, [&](std::int64_t i, std::int64_t j) { return rule.visible(i, j); });
                SCOPED_TRACE(::testing::Message() << "Sq=" << sq << " Sk=" << sk << " cf=" << b.cf << " delta=" << b.delta
                                                  << " causal=" << b.causal << " window=" << b.window.value_or(-1));
                ASSERT_EQ(visible_pairs(bb, sq), vis.count(0, sq, 0, sk));
                for (const Tiling& t : {Tiling{1, 64, 64}, Tiling{3, 24, 5}, Tiling{4, 128, 128}}) {
                    check_schedule(bb, vis, sq, sk, t, Guarantees{});
                    if (HasFatalFailure()) return;
                }
            }
}

// ---------------------------------------------------------------------------------------------
// User-defined bands: arbitrary monotone lo / hi arrays through the same templates.

struct ArrayBand {
    std::vector<std::int64_t> lo_, hi_;
    std::int64_t lo(std::int64_t i) const { return lo_[std::size_t(i)]; }
    std::int64_t hi(std::int64_t i) const { return hi_[std::size_t(i)]; }
};

enum class ArrayKind {
    arbitrary,   // independent monotone lo and hi: empty rows, gaps between rows
    gapless,     // every row non-empty and touching the next: the union of any rows is one interval
    windowless,  // lo = 0
};

std::vector<std::int64_t> monotone(std::mt19937_64& rng, std::int64_t n, std::int64_t max_value, std::int64_t first) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    std::int64_t x = first;
    std::uniform_int_distribution<int> step(-4, 3);  // mostly flat, sometimes a jump
    for (auto& e : v) {
        x = std::min(max_value, x + std::max(0, step(rng)));
        e = x;
    }
    return v;
}

ArrayBand random_band(std::mt19937_64& rng, ArrayKind kind, std::int64_t sq, std::int64_t sk) {
    std::uniform_int_distribution<std::int64_t> start(0, sk);
    ArrayBand b;
    switch (kind) {
        case ArrayKind::arbitrary:
            b.lo_ = monotone(rng, sq, sk, start(rng) / 2);
            b.hi_ = monotone(rng, sq, sk, start(rng));
            break;
        case ArrayKind::windowless:
            b.lo_.assign(std::size_t(sq), 0);
            b.hi_ = monotone(rng, sq, sk, start(rng) / 3);
            break;
        case ArrayKind::gapless: {
            b.hi_ = monotone(rng, sq, sk, std::max<std::int64_t>(1, start(rng) / 3));
            b.lo_.resize(std::size_t(sq));
            std::int64_t prev_lo = 0, prev_hi = b.hi_.empty() ? 0 : b.hi_[0];
            for (std::size_t i = 0; i < b.lo_.size(); ++i) {
                // lo in [previous lo, min(previous hi, hi - 1)]: non-empty, touching the previous row.
                std::int64_t top = std::min(prev_hi, b.hi_[i] - 1);
                prev_lo = std::uniform_int_distribution<std::int64_t>(prev_lo, top)(rng);
                b.lo_[i] = prev_lo;
                prev_hi = b.hi_[i];
            }
            break;
        }
    }
    return b;
}

class ArrayBandSchedule : public ::testing::TestWithParam<ArrayKind> {};

TEST_P(ArrayBandSchedule, MatchesBruteForce) {
    const ArrayKind kind = GetParam();
    std::mt19937_64 rng(20240611 + int(kind));
    for (std::int64_t sq : {1, 7, 40, 97})
        for (std::int64_t sk : {1, 9, 50})
            for (int trial = 0; trial < 12; ++trial) {
                const ArrayBand band = random_band(rng, kind, sq, sk);
                const VisibilityTable vis(sq, sk, [&](std::int64_t i, std::int64_t j) { return visible(band, i, j); });
                SCOPED_TRACE(::testing::Message() << "Sq=" << sq << " Sk=" << sk << " trial=" << trial);
                Guarantees g;
                g.exact_skip =
                    kind == ArrayKind::arbitrary ? Guarantees::ExactSkip::no : Guarantees::ExactSkip::everywhere;
                g.forward_no_waste = kind != ArrayKind::arbitrary;
                g.backward_no_waste = kind != ArrayKind::arbitrary;
                g.empty_rows_empty_range = kind == ArrayKind::windowless;
                for (const Tiling& t : kTilings) {
                    check_schedule(band, vis, sq, sk, t, g);
                    if (HasFatalFailure()) return;
                }
            }
}

INSTANTIATE_TEST_SUITE_P(Kinds, ArrayBandSchedule,
                         ::testing::Values(ArrayKind::arbitrary, ArrayKind::gapless, ArrayKind::windowless));

// ---------------------------------------------------------------------------------------------
// Regressions for the bounds of flash-attention PR #2418 (shared/HOPPER-NOTES.md).

CompressedBand causal_band(std::int64_t sq, std::int64_t sk, std::int64_t cf, std::optional<std::int64_t> delta) {
    BandSpec spec;
    spec.causal = true;
    spec.compress_factor = cf;
    spec.has_diag_offset = delta.has_value();
    spec.diag_offset = delta.value_or(0);
    return spec.for_sequence(sq, sk);
}

// PR #2418 bounds the forward by m_idx_max / cf + 1 with m_idx_max the tile's exclusive row end:
// when cf divides it that is one key too many, and one tile too many at a tile boundary.
TEST(Pr2418Regression, NoExtraTileWhenCfDividesTheRowEnd) {
    const std::int64_t cf = 4, tile_m = 128, tile_n = 32, sq = 4096, sk = 1024;
    const CompressedBand band = causal_band(sq, sk, cf, std::nullopt);
    EXPECT_EQ(kv_tile_range(band, query_span(0, tile_m, 1, sq), tile_n).end, 1);  // rows 0..127 see keys 0..31
    int triggering = 0;
    for (std::int64_t m = 0; m < num_tiles(sq, tile_m); ++m) {
        const RowSpan rows = query_span(m, tile_m, 1, sq);
        const std::int64_t exact_end = ceil_div(floor_div(rows.end - 1, cf) + 1, tile_n);
        const std::int64_t pr_end = ceil_div(rows.end / cf + 1, tile_n);
        const TileRange range = kv_tile_range(band, rows, tile_n);
        EXPECT_EQ(range.end, exact_end) << "m=" << m;
        EXPECT_TRUE(visible(band, rows.end - 1, (range.end - 1) * tile_n)) << "m=" << m << ": last tile unused";
        triggering += pr_end != exact_end;
    }
    EXPECT_GT(triggering, 0) << "the case no longer exercises the over-count";
}

// PR #2418 ignores the diagonal offset for cf > 1 (top-left alignment only).
TEST(Pr2418Regression, OffsetShiftsTheRanges) {
    // NSA blocks (l = 32, d = 16): cf 16, delta -31. Rows 0..30 see nothing.
    const std::int64_t tile_m = 16, tile_n = 32, sq = 512, sk = 32;
    const CompressedBand nsa = causal_band(sq, sk, 16, -31);
    EXPECT_TRUE(kv_tile_range(nsa, query_span(0, tile_m, 1, sq), tile_n).empty());
    EXPECT_TRUE(kv_tile_range(nsa, query_span(1, tile_m, 1, sq), tile_n).empty() == false);
    EXPECT_EQ(q_tile_range(nsa, 0, tile_n, sq, tile_m, 1).begin, 1);
    // A chunk starting at absolute query 2048 (cf 4, delta 2048): its first q tile sees 544 keys.
    const CompressedBand chunk = causal_band(1024, 4096, 4, 2048);
    const TileRange first = kv_tile_range(chunk, query_span(0, 128, 1, 1024), 32);
    EXPECT_EQ(first.end, 17);
    EXPECT_EQ(first.full_end, 16);  // rows 0..127 all see keys 0..511
    EXPECT_EQ(q_tile_range(chunk, 512, 32, 1024, 128, 1).begin, 0);
    // Bottom-right default for cf = 1 with Sq < Sk: the first query already sees Sk - Sq + 1 keys.
    const CompressedBand br = causal_band(100, 300, 1, std::nullopt);
    EXPECT_EQ(kv_tile_range(br, query_span(0, 64, 1, 100), 64).end, 5);  // row 63 sees keys 0..263
}

// Positions beyond 2^32: the ranges follow the closed forms, and the binary search does not overflow.
TEST(Schedule, SixtyFourBitPositions) {
    const std::int64_t sq = std::int64_t(1) << 41, sk = std::int64_t(1) << 39, cf = 4;
    const CompressedBand band = causal_band(sq, sk, cf, 0);
    for (std::int64_t group : {1, 3})
        for (std::int64_t tile_m : {128, 176}) {
            const std::int64_t tile_n = 128;
            const std::int64_t m = (std::int64_t(1) << 33) + 5;
            const RowSpan rows = query_span(m, tile_m, group, sq);
            ASSERT_EQ(rows.begin, m * tile_m / group);
            const TileRange f = kv_tile_range(band, rows, tile_n);
            EXPECT_EQ(f.begin, 0);
            EXPECT_EQ(f.end, ceil_div(floor_div(rows.end - 1, cf) + 1, tile_n));
            EXPECT_EQ(f.full_end, floor_div(floor_div(rows.begin, cf) + 1, tile_n));
            const std::int64_t n = (std::int64_t(1) << 31) + 7, n0 = n * tile_n;
            const TileRange b = q_tile_range(band, n0, tile_n, sq, tile_m, group);
            // First row seeing key n0: i >= n0*cf; first row seeing the whole tile: i >= (n0 + tile_n - 1)*cf.
            EXPECT_EQ(b.begin, floor_div(n0 * cf * group, tile_m));
            EXPECT_EQ(b.full_begin, ceil_div((n0 + tile_n - 1) * cf * group, tile_m));
            EXPECT_EQ(b.end, num_tiles(sq * group, tile_m));
            EXPECT_EQ(b.full_end, b.end);
        }
}

}  // namespace
}  // namespace ccattn::core
