// core/band_source.h and the row check of core/band_tensors.h: the band source equals the band it
// wraps, row by row and limit by limit, and edge_error names exactly the rows where an edge drops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "core/band.h"
#include "core/band_source.h"
#include "core/band_tensors.h"
#include "core/bound_bands.h"
#include "core/params.h"
#include "core/schedule.h"

namespace ccattn::core {
namespace {

void expect_same_rows(const SequenceBand& source, const CompressedBand& band, std::int64_t i) {
    const RowLimits l = source.limits(i);
    ASSERT_EQ(l.lo, band.lo(i)) << "i=" << i << " cf=" << band.compress_factor << " delta=" << band.diag_offset;
    ASSERT_EQ(l.hi, band.hi(i)) << "i=" << i << " cf=" << band.compress_factor << " delta=" << band.diag_offset;
    ASSERT_EQ(source.lo(i), band.lo(i));
    ASSERT_EQ(source.hi(i), band.hi(i));
}

TEST(FloorDivFast, MatchesFloorDiv) {
    std::mt19937_64 rng(3);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    for (std::int64_t a = -300; a <= 300; ++a)
        for (std::int64_t b = 1; b <= 40; ++b) ASSERT_EQ(floor_div_fast(a, b), floor_div(a, b)) << a << " / " << b;
    const std::int64_t k31 = std::int64_t(1) << 31;
    for (std::int64_t a : {-k31 - 1, -k31, -k31 + 1, k31 - 1, k31, k31 + 1})
        for (std::int64_t b : {std::int64_t(1), std::int64_t(7), k31 - 1, k31, k31 + 1})
            ASSERT_EQ(floor_div_fast(a, b), floor_div(a, b)) << a << " / " << b;
    for (int iter = 0; iter < 20000; ++iter) {
        const std::int64_t big = std::int64_t(1) << (iter % 2 ? 62 : 33);
        const std::int64_t a = pick(-big, big), b = pick(1, iter % 3 ? 100 : big);
        ASSERT_EQ(floor_div_fast(a, b), floor_div(a, b)) << a << " / " << b;
    }
}

// The built-in band through the source: every row of a grid of bands, windows and offsets.
TEST(SequenceBand, BuiltinBandRowByRow) {
    for (bool causal : {false, true})
        for (std::int64_t cf : {1, 2, 3, 7, 64})
            for (std::int64_t delta : {-70, -9, -1, 0, 1, 5, 33})
                for (std::int64_t window : {kNoWindow, std::int64_t(0), std::int64_t(1), std::int64_t(6)}) {
                    const CompressedBand band{23, cf, delta, window, causal};  // (Sk, cf, delta, window, causal)
                    const SequenceBand source = band;
                    ASSERT_FALSE(source.from_tensors);
                    for (std::int64_t i = 0; i < 200; ++i) {
                        expect_same_rows(source, band, i);
                        if (HasFatalFailure()) return;
                    }
                }
}

// At the validation bounds the 32-bit division does not apply; the limits stay exact.
TEST(SequenceBand, BuiltinBandAtValidationBounds) {
    for (const test::BoundBand& bb : test::bands_at_validation_bounds()) {
        const CompressedBand band{1000, bb.cf, bb.delta, bb.window.value_or(kNoWindow), bb.causal};
        for (std::int64_t i : {0, 1, 99, 100, 101, 299, 1 << 30}) {
            expect_same_rows(band, band, i);
            if (HasFatalFailure()) return;
        }
    }
}

// Band tensors through the source (and sequence_band): int32 and int64 edges, a batch stride, and
// varlen rows indexed from the sequence's first row; values outside [0, Sk] clamped.
TEST(SequenceBand, TensorsRowByRow) {
    const std::vector<std::int32_t> lo32 = {-5, 0, 0, 2, 2, 9, 40, 1, 1, 3, 3, 3};
    const std::vector<std::int64_t> hi64 = {0, 1, 4, 4, 9, 12, 50, 2, 3, 3, 8, 11};
    AttnParams p;
    p.mask_kind = MaskKind::band_tensors;
    p.batch = 2;
    p.seqlen_q = 6;
    p.seqlen_k = 10;
    p.band_rows.lo = {lo32.data(), false, 6, 1};
    p.band_rows.hi = {hi64.data(), true, 6, 1};
    for (int b = 0; b < 2; ++b) {
        const Sequence s = sequence(p, b);
        const SequenceBand source = sequence_band(p, b, s);
        ASSERT_TRUE(source.from_tensors);
        for (std::int64_t i = 0; i < 6; ++i) {
            const std::int64_t lo = clamp(lo32[std::size_t(b * 6 + i)], 0, 10), hi = clamp(hi64[std::size_t(b * 6 + i)], 0, 10);
            EXPECT_EQ(source.limits(i).lo, lo) << "b=" << b << " i=" << i;
            EXPECT_EQ(source.limits(i).hi, hi) << "b=" << b << " i=" << i;
            EXPECT_EQ(source.lo(i), lo);
            EXPECT_EQ(source.hi(i), hi);
        }
    }
    // Varlen: [Tq] edges, sequence 1 starts at row 5 and has 9 keys.
    const std::vector<std::int32_t> cu_q = {0, 5, 12}, cu_k = {0, 20, 29};
    p.cu_seqlens_q = cu_q.data();
    p.cu_seqlens_k = cu_k.data();
    p.band_rows.lo.batch_stride = p.band_rows.hi.batch_stride = 0;
    const Sequence s1 = sequence(p, 1);
    const SequenceBand source = sequence_band(p, 1, s1);
    for (std::int64_t i = 0; i < 7; ++i) {
        EXPECT_EQ(source.lo(i), clamp(lo32[std::size_t(5 + i)], 0, 9)) << i;
        EXPECT_EQ(source.hi(i), clamp(hi64[std::size_t(5 + i)], 0, 9)) << i;
    }
}

// Random non-decreasing edges in [-3, Sk + 3] (clamped by the band), runs of equal values and jumps.
std::vector<std::int64_t> monotone_edge(std::mt19937_64& rng, std::int64_t rows, std::int64_t sk) {
    std::vector<std::int64_t> e(static_cast<std::size_t>(rows));
    std::int64_t x = std::uniform_int_distribution<std::int64_t>(-3, 2)(rng);
    for (auto& v : e) {
        const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
        x += kind < 4 ? 0 : kind < 8 ? 1 : std::uniform_int_distribution<std::int64_t>(2, sk / 2 + 2)(rng);
        v = x > sk + 3 ? sk + 3 : x;
    }
    return e;
}

// Band tensors' key rows (core::KeyRows, filled per key by the same searches the device pass runs):
// the table's answers, the searches' and a scan over the rows agree for every key, before, inside
// and past the keys, and the backward's q-tile ranges (core::q_tile_range, now from the rows where
// the edges pass a tile's first and last key) equal a scan's for the built-in band and for band
// tensors with and without the table.
TEST(SequenceBand, KeyRowsMatchScans) {
    std::mt19937_64 rng(11);
    auto scan_above = [](const auto& edge, std::int64_t sq, std::int64_t j) {
        for (std::int64_t i = 0; i < sq; ++i)
            if (edge(i) > j) return i;
        return sq;
    };
    // q_tile_range by scanning the rows: seeing the tile (hi > n0, lo < n1), full (hi >= n1, lo <= n0).
    auto scan_range = [](const auto& band, std::int64_t n0, std::int64_t tn, std::int64_t sq, std::int64_t tm,
                         std::int64_t g) {
        std::int64_t ib = sq, ie = 0, fb = sq, fe = 0;
        for (std::int64_t i = 0; i < sq; ++i) {
            if (band.hi(i) > n0 && ib == sq) ib = i;
            if (band.lo(i) < n0 + tn) ie = i + 1;
            if (band.hi(i) >= n0 + tn && fb == sq) fb = i;
            if (band.lo(i) <= n0) fe = i + 1;
        }
        if (ie <= ib) return TileRange{};
        return make_range(floor_div(ib * g, tm), ceil_div(ie * g, tm), ceil_div(fb * g, tm),
                          fe >= sq ? num_tiles(sq * g, tm) : floor_div(fe * g, tm));
    };
    auto same = [](const TileRange& a, const TileRange& b) {
        return a.count() == b.count() && (a.empty() || (a.begin == b.begin && a.end == b.end &&
                                                        a.full_begin == b.full_begin && a.full_end == b.full_end));
    };
    for (int iter = 0; iter < 60; ++iter) {
        const std::int64_t sq = std::uniform_int_distribution<std::int64_t>(0, 90)(rng);
        const std::int64_t sk = std::uniform_int_distribution<std::int64_t>(0, 70)(rng);
        const int batch = 2;
        std::vector<std::int64_t> lo, hi;
        for (int b = 0; b < batch; ++b) {
            std::vector<std::int64_t> l = monotone_edge(rng, sq, sk), h = monotone_edge(rng, sq, sk);
            for (std::int64_t i = 0; i < sq; ++i) h[std::size_t(i)] = std::max(h[std::size_t(i)], l[std::size_t(i)] - 2);
            lo.insert(lo.end(), l.begin(), l.end());
            hi.insert(hi.end(), h.begin(), h.end());
        }
        AttnParams p;
        p.mask_kind = MaskKind::band_tensors;
        p.batch = batch;
        p.seqlen_q = sq;
        p.seqlen_k = sk;
        p.total_k = batch * sk;
        p.band_rows.lo = {lo.data(), true, sq, 1};
        p.band_rows.hi = {hi.data(), true, sq, 1};
        // What the device pass (src/cuda/band_key_rows.cu) writes, key row by key row.
        std::vector<std::int32_t> keys(std::size_t(2 * p.total_k), -1);
        for (int b = 0; b < batch; ++b) {
            const Sequence seq = sequence(p, b);
            const TensorBand t = tensor_band(p, b, seq);
            const std::int64_t k0 = key_row0(p.varlen(), b, seq.row_k, p.seqlen_k);
            for (std::int64_t j = 0; j < sk; ++j) {
                keys[std::size_t(2 * (k0 + j))] = std::int32_t(t.search_hi_above(j, sq));
                keys[std::size_t(2 * (k0 + j) + 1)] = std::int32_t(t.search_lo_above(j, sq));
            }
        }
        AttnParams with = p;
        with.band_rows.keys.rows = keys.data();
        for (int b = 0; b < batch; ++b) {
            const SequenceBand searched = sequence_band(p, b, sequence(p, b));
            const SequenceBand looked_up = sequence_band(with, b, sequence(with, b));
            ASSERT_EQ(looked_up.tensors.rows.keys.rows, keys.data() + 2 * b * sk);
            auto hi_of = [&](std::int64_t i) { return searched.hi(i); };
            auto lo_of = [&](std::int64_t i) { return searched.lo(i); };
            for (std::int64_t j = -3; j < sk + 4; ++j) {
                const std::int64_t want_hi = scan_above(hi_of, sq, j), want_lo = scan_above(lo_of, sq, j);
                ASSERT_EQ(first_row_hi_above(searched, j, sq), want_hi) << "iter " << iter << " b " << b << " j " << j;
                ASSERT_EQ(first_row_lo_above(searched, j, sq), want_lo) << "iter " << iter << " b " << b << " j " << j;
                ASSERT_EQ(first_row_hi_above(looked_up, j, sq), want_hi) << "iter " << iter << " b " << b << " j " << j;
                ASSERT_EQ(first_row_lo_above(looked_up, j, sq), want_lo) << "iter " << iter << " b " << b << " j " << j;
            }
            for (std::int64_t tn : {1, 3, 16})
                for (std::int64_t tm : {1, 4, 7})
                    for (std::int64_t g : {1, 3})
                        for (std::int64_t n0 = 0; n0 < sk; n0 += tn) {
                            const TileRange want = scan_range(searched, n0, tn, sq, tm, g);
                            ASSERT_TRUE(same(q_tile_range(searched, n0, tn, sq, tm, g), want)) << "iter " << iter << " n0 " << n0;
                            ASSERT_TRUE(same(q_tile_range(looked_up, n0, tn, sq, tm, g), want)) << "iter " << iter << " n0 " << n0;
                        }
        }
        // The built-in band through the same path.
        for (std::int64_t cf : {1, 3})
            for (std::int64_t delta : {-7, 0, 4}) {
                const CompressedBand band{sk, cf, delta, iter % 2 ? std::int64_t(5) : kNoWindow, true};
                for (std::int64_t tn : {1, 16})
                    for (std::int64_t n0 = 0; n0 < sk; n0 += tn) {
                        const TileRange want = scan_range(band, n0, tn, sq, 4, 2);
                        ASSERT_TRUE(same(q_tile_range(band, n0, tn, sq, 4, 2), want)) << "cf " << cf << " n0 " << n0;
                        ASSERT_TRUE(same(q_tile_range(SequenceBand(band), n0, tn, sq, 4, 2), want)) << "n0 " << n0;
                    }
            }
    }
}

// Every other mask kind reads the built-in band, with the sequence's default offset.
TEST(SequenceBand, OtherKindsReadTheBuiltinBand) {
    for (MaskKind kind : {MaskKind::band, MaskKind::mask_mod, MaskKind::block_sparse}) {
        AttnParams p;
        p.mask_kind = kind;
        p.batch = 1;
        p.seqlen_q = 40;
        p.seqlen_k = 30;
        p.band.causal = true;
        const SequenceBand source = sequence_band(p, 0, sequence(p, 0));
        ASSERT_FALSE(source.from_tensors);
        EXPECT_EQ(source.formula.diag_offset, -10);  // Sk - Sq for cf = 1
        for (std::int64_t i = 0; i < 40; ++i) expect_same_rows(source, p.band.for_sequence(40, 30), i);
    }
}

TEST(SequenceBand, LaterRowsSeeMore) {
    AttnParams p;
    EXPECT_FALSE(later_rows_see_more(p));
    p.band.causal = true;
    EXPECT_TRUE(later_rows_see_more(p));
    p.band.causal = false;
    p.mask_kind = MaskKind::band_tensors;
    EXPECT_TRUE(later_rows_see_more(p));
}

// Exhaustive over every pair of edges of 4 rows with values in [-1, 4] and Sk = 3: edge_error flags
// row i exactly when a clamped edge drops there, lo before hi, and describes it with clamped values.
TEST(EdgeError, ExhaustiveSmallTensors) {
    constexpr int kRows = 4, kValues = 6;  // values -1 .. 4
    constexpr std::int64_t kSk = 3;
    std::int64_t lo[kRows], hi[kRows];
    TensorBand band;
    band.rows.lo = {lo, true, 0, 1};
    band.rows.hi = {hi, true, 0, 1};
    band.seqlen_k = kSk;
    int count = 1;
    for (int r = 0; r < kRows; ++r) count *= kValues;
    std::int64_t flagged_lo = 0, flagged_hi = 0;
    for (int a = 0; a < count; ++a)
        for (int c = 0; c < count; ++c) {
            for (int r = 0, x = a, y = c; r < kRows; ++r, x /= kValues, y /= kValues) {
                lo[r] = x % kValues - 1;
                hi[r] = y % kValues - 1;
            }
            for (std::int64_t i = 1; i < kRows; ++i) {
                const std::int64_t l0 = clamp(lo[i - 1], 0, kSk), l1 = clamp(lo[i], 0, kSk);
                const std::int64_t h0 = clamp(hi[i - 1], 0, kSk), h1 = clamp(hi[i], 0, kSk);
                const EdgeError want = l1 < l0 ? EdgeError::lo : h1 < h0 ? EdgeError::hi : EdgeError::none;
                const EdgeError got = edge_error(band, i);
                ASSERT_EQ(int(got), int(want)) << "a=" << a << " c=" << c << " i=" << i;
                if (got == EdgeError::none) continue;
                flagged_lo += got == EdgeError::lo;
                flagged_hi += got == EdgeError::hi;
                const BandEdgeError e = describe_edge_error(band, 3, i, got);
                EXPECT_EQ(e.b, 3);
                EXPECT_EQ(e.row, i);
                EXPECT_EQ(e.now, got == EdgeError::lo ? l1 : h1);
                EXPECT_EQ(e.before, got == EdgeError::lo ? l0 : h0);
                EXPECT_EQ(e.seqlen_k, kSk);
            }
        }
    EXPECT_GT(flagged_lo, 0);
    EXPECT_GT(flagged_hi, 0);
}

}  // namespace
}  // namespace ccattn::core
